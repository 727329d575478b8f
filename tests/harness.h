/*
 * harness.h -- a tiny unit-test harness.
 *
 *   TEST(name) { CHECK(x); CHECK_EQ(a, b); CHECK_STREQ(s, t); }
 *   int main(void) { RUN(name); ...; return harness_report("test_x"); }
 *
 * Each failed check prints file:line and the expression; a test fails when
 * any of its checks failed. SKIP("reason") ends a test that cannot run here
 * (a missing tool): it prints "skip name: reason" and counts as skipped,
 * neither passed nor failed. harness_report() prints
 * "<name>: N passed, M failed, K skipped" and returns the process exit code.
 * With an argument, main can run only the tests whose names contain it
 * (see RUN).
 */
#ifndef AD_HARNESS_H
#define AD_HARNESS_H

#include <stdio.h>
#include <string.h>

static int harness_passed, harness_failed, harness_skipped, harness_cur_failed;
static const char *harness_filter, *harness_cur_skip;

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        if (harness_filter && !strstr(#name, harness_filter))                                      \
            break;                                                                                 \
        harness_cur_failed = 0;                                                                    \
        harness_cur_skip = NULL;                                                                   \
        test_##name();                                                                             \
        if (harness_cur_skip && !harness_cur_failed) {                                             \
            harness_skipped++;                                                                     \
            printf("skip %s: %s\n", #name, harness_cur_skip);                                      \
        } else if (harness_cur_failed) {                                                           \
            harness_failed++;                                                                      \
            fprintf(stderr, "FAIL %s\n", #name);                                                   \
        } else {                                                                                   \
            harness_passed++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);                 \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, \
                    a_, b_);                                                                       \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STREQ(a, b)                                                                          \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "%s:%d: %s == %s failed:\n  got:  \"%s\"\n  want: \"%s\"\n", __FILE__, \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
            harness_cur_failed = 1;                                                                \
        }                                                                                          \
    } while (0)

/* Ends the current test as skipped; only inside a TEST body. */
#define SKIP(reason)                                                                               \
    do {                                                                                           \
        harness_cur_skip = (reason);                                                               \
        return;                                                                                    \
    } while (0)

#define HARNESS_INIT(argc, argv) (harness_filter = (argc) > 1 ? (argv)[1] : NULL)

static inline int harness_report(const char *name)
{
    printf("%s: %d passed, %d failed, %d skipped\n", name, harness_passed, harness_failed,
           harness_skipped);
    return harness_failed ? 1 : 0;
}

#endif /* AD_HARNESS_H */

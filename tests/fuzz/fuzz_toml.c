/* fuzz-sources: runtime/base/toml.c runtime/base/buf.c */
/*
 * fuzz_toml.c -- libFuzzer target for the TOML parser.
 *
 * Feeds arbitrary bytes to ad_toml_parse() and, when they parse, walks the
 * whole tree through the public accessors and checks invariants a caller
 * relies on: every key is found again by ad_toml_get(), lengths agree with
 * the accessors, strings are NUL-terminated, positions are 1-based. On
 * failure the message must start with "LINE:COLUMN: " (toml.h), both
 * numbers from 1. Any violation traps, so the
 * fuzzer reports it like a crash. Built by mk/fuzz.mk.
 */
#include "base/toml.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static void walk(const ad_toml *v, int depth)
{
    ENSURE(depth < 1000);
    ENSURE(ad_toml_line(v) >= 1 && ad_toml_column(v) >= 1);
    ad_toml_type t = ad_toml_type_of(v);
    ENSURE(ad_toml_type_name(t) != NULL);
    size_t n = ad_toml_len(v);
    if (t == AD_TOML_TABLE) {
        for (size_t i = 0; i < n; i++) {
            const char *k = ad_toml_key_at(v, i);
            size_t klen = ad_toml_key_len(v, i);
            ENSURE(k != NULL && k[klen] == '\0');
            if (strlen(k) == klen)
                ENSURE(ad_toml_get(v, k) == ad_toml_at(v, i));
            walk(ad_toml_at(v, i), depth + 1);
        }
        ENSURE(ad_toml_at(v, n) == NULL && ad_toml_key_at(v, n) == NULL);
    } else if (t == AD_TOML_ARRAY) {
        for (size_t i = 0; i < n; i++)
            walk(ad_toml_at(v, i), depth + 1);
        ENSURE(ad_toml_at(v, n) == NULL);
    } else {
        ENSURE(n == 0);
        size_t len = 1;
        const char *s = ad_toml_string(v, &len);
        if (t == AD_TOML_STRING)
            ENSURE(s != NULL && s[len] == '\0');
        else
            ENSURE(s == NULL && len == 0);
        const char *dt = ad_toml_datetime(v);
        ENSURE((dt != NULL) == (t >= AD_TOML_DATETIME));
        (void)ad_toml_int(v);
        (void)ad_toml_float(v);
        (void)ad_toml_bool(v);
    }
}

/* err starts with "LINE:COLUMN: ", both positive. */
static bool at_position(const char *err)
{
    for (int part = 0; part < 2; part++) {
        if (*err < '1' || *err > '9')
            return false;
        while (*err >= '0' && *err <= '9')
            err++;
        if (*err++ != ':')
            return false;
    }
    return *err == ' ';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ad_toml *root = NULL;
    char err[256];
    err[0] = '\0';
    int rc = ad_toml_parse((const char *)data, size, &root, err, sizeof err);
    if (rc == 0) {
        ENSURE(root != NULL && ad_toml_type_of(root) == AD_TOML_TABLE);
        walk(root, 0);
        ad_toml_free(root);
    } else {
        ENSURE(rc < 0 && root == NULL && at_position(err));
    }
    return 0;
}

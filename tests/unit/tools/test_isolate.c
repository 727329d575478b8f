/*
 * test_isolate.c -- process isolation: the child runner (proc.c) with
 * /bin/sh children, and isolated tool calls (tools.c) against the hostile
 * test plugin.
 *
 * Isolated calls start this very test program again as a worker
 * (`test_isolate --tool-worker PPID`), which is why main() hands that mode
 * to ad_tools_worker_main() first. Every case also checks that no child of
 * this process is left over, zombie or running.
 */
#include "base/buf.h"
#include "../../harness.h"
#include "tools/proc.h"
#include "tools/tools.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Processes whose parent is this one (any state). */
static int count_children(void)
{
    long me = (long)getpid();
    int kids = 0;
    DIR *dir = opendir("/proc");
    if (dir == NULL)
        return -1;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], st[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t got = fread(st, 1, sizeof st - 1, f);
        fclose(f);
        st[got] = '\0';
        char *rp = strrchr(st, ')');
        char state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == me)
            kids++;
    }
    closedir(dir);
    return kids;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs `sh -c script` with the given timeout and bounds. */
static int sh(const char *script, const char *input, double timeout_s, size_t result_max,
              size_t output_max, ad_proc_result *r)
{
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)script, NULL};
    ad_proc_opts o = {"/bin/sh", argv, environ, input, input ? strlen(input) : 0,
                      timeout_s, result_max, output_max};
    char err[256];
    return ad_proc_run(&o, r, err, sizeof err);
}

/* ---- proc.c ------------------------------------------------------------- */

TEST(proc_result_output_and_input)
{
    ad_proc_result r;
    CHECK_EQ(sh("cat >&3; echo out; echo err >&2; exit 0", "hello", 5, 100, 100, &r), 0);
    CHECK_EQ(r.exit_status, 0);
    CHECK_EQ(r.term_signal, 0);
    CHECK(!r.timed_out);
    CHECK_STREQ(r.result.data, "hello");
    CHECK(r.output.data && strstr(r.output.data, "out\n") && strstr(r.output.data, "err\n"));
    ad_proc_result_free(&r);
    CHECK_EQ(count_children(), 0);
}

TEST(proc_exit_status_and_signal)
{
    ad_proc_result r;
    CHECK_EQ(sh("exit 3", NULL, 5, 100, 100, &r), 0);
    CHECK_EQ(r.exit_status, 3);
    CHECK_EQ(r.term_signal, 0);
    ad_proc_result_free(&r);
    CHECK_EQ(sh("kill -SEGV $$", NULL, 5, 100, 100, &r), 0);
    CHECK_EQ(r.exit_status, -1);
    CHECK_EQ(r.term_signal, SIGSEGV);
    CHECK_STREQ(ad_proc_signame(SIGSEGV), "SEGV");
    ad_proc_result_free(&r);
    CHECK_EQ(count_children(), 0);
}

TEST(proc_timeout_kills_the_group)
{
    ad_proc_result r;
    double t0 = now_s();
    /* A grandchild in the same group that would outlive the child. */
    CHECK_EQ(sh("sleep 60 & sleep 60", NULL, 0.3, 100, 100, &r), 0);
    double took = now_s() - t0;
    CHECK(r.timed_out);
    CHECK_EQ(r.term_signal, SIGKILL);
    CHECK(took >= 0.3 && took < 5);
    ad_proc_result_free(&r);
    CHECK_EQ(count_children(), 0);
}

TEST(proc_grandchild_holding_pipes_does_not_block)
{
    ad_proc_result r;
    double t0 = now_s();
    /* The child exits at once; its child keeps stdout and fd 3 open. */
    CHECK_EQ(sh("(sleep 60) & printf done >&3; exit 0", NULL, 30, 100, 100, &r), 0);
    CHECK(now_s() - t0 < 5);
    CHECK_EQ(r.exit_status, 0);
    CHECK(!r.timed_out);
    CHECK_STREQ(r.result.data, "done");
    ad_proc_result_free(&r);
}

TEST(proc_bounds_and_descriptors)
{
    ad_proc_result r;
    /* 3 MiB on each channel; only the bounds are kept. */
    CHECK_EQ(sh("head -c 3145728 /dev/zero >&3; head -c 3145728 /dev/zero", NULL, 10, 1000, 10,
                &r),
             0);
    CHECK_EQ(r.exit_status, 0);
    CHECK_EQ(r.result.len, 1000);
    CHECK_EQ(r.result_dropped, 3145728 - 1000);
    CHECK_EQ(r.output.len, 10);
    CHECK_EQ(r.output_dropped, 3145728 - 10);
    ad_proc_result_free(&r);
    /* The child holds fds 0-3 and nothing else (ls's own directory fd aside). */
    CHECK_EQ(sh("ls /proc/self/fd >&3", NULL, 10, 1000, 1000, &r), 0);
    CHECK_STREQ(r.result.data, "0\n1\n2\n3\n4\n");
    ad_proc_result_free(&r);
}

TEST(proc_start_failure)
{
    char *argv[] = {(char *)"nope", NULL};
    ad_proc_opts o = {"/nonexistent/agentd-nope", argv, environ, NULL, 0, 1, 10, 10};
    ad_proc_result r;
    char err[256];
    CHECK_EQ(ad_proc_run(&o, &r, err, sizeof err), AD_ERR);
    CHECK(strstr(err, "cannot start /nonexistent/agentd-nope") != NULL);
    CHECK_EQ(count_children(), 0);
}

/* ---- isolated tool calls ------------------------------------------------ */

static ad_tools *load(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/tests/plugins/%s", root && *root ? root : ".", file);
    ad_tools *t = ad_tools_new();
    if (t && ad_tools_load_file(t, path, NULL, err, sizeof err) != AD_OK) {
        fprintf(stderr, "test_isolate: %s\n", err);
        ad_tools_free(t);
        return NULL;
    }
    return t;
}

/* An isolated call of `name`; the result's text, or NULL. Caller frees. */
static char *iso(ad_tools *t, const char *name, double timeout_s, bool *is_error)
{
    ad_isolate_opts o = {timeout_s, NULL};
    ad_tool_result r;
    if (ad_tools_invoke_isolated(t, name, "{}", 2, &o, &r) != AD_OK)
        return NULL;
    *is_error = r.is_error;
    return r.content;
}

TEST(isolated_failures_are_named)
{
    ad_tools *t = load("hostile.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    static const struct {
        const char *tool, *want;
    } cases[] = {
        {"crash", "tool 'crash' was killed by signal 11 (SIGSEGV)"},
        {"abort", "tool 'abort' was killed by signal 6 (SIGABRT)"},
        {"exit3", "tool 'exit3' exited with status 3 without a result"},
        {"hang", "tool 'hang' timed out after 0.5 s and was killed"},
        {"nosuch", "unknown tool 'nosuch'; available tools: crash, abort, exit3, hang, flood, "
                   "big, grandchild, showkey, children"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool is_error = false;
        char *got = iso(t, cases[i].tool, 0.5, &is_error);
        CHECK_STREQ(got, cases[i].want);
        CHECK(is_error);
        free(got);
    }
    CHECK_EQ(count_children(), 0);
    ad_tools_free(t);
}

TEST(isolated_results)
{
    ad_tools *t = load("hostile.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    bool is_error = true;
    char *got = iso(t, "flood", 20, &is_error);
    CHECK_STREQ(got, "flooded");
    CHECK(!is_error);
    free(got);
    got = iso(t, "big", 20, &is_error);
    CHECK(got != NULL && strlen(got) == (1u << 20) + strlen("\n[... 19922944 bytes cut]"));
    CHECK(got && strstr(got, "\n[... 19922944 bytes cut]") != NULL);
    CHECK(!is_error);
    free(got);
    /* The grandchild is killed with the worker's process group. */
    got = iso(t, "grandchild", 20, &is_error);
    CHECK(got != NULL && !is_error);
    long pid = got ? strtol(got, NULL, 10) : 0;
    CHECK(pid > 0);
    if (pid > 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        bool gone = false;
        for (int i = 0; i < 500 && !gone; i++) {
            FILE *f = fopen(path, "r");
            char st[256] = "";
            if (f) {
                size_t n = fread(st, 1, sizeof st - 1, f);
                st[n] = '\0';
                fclose(f);
            }
            char *rp = strrchr(st, ')');
            gone = f == NULL || (rp && (rp[2] == 'Z' || rp[2] == 'X'));
            if (!gone) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        CHECK(gone);
    }
    free(got);
    CHECK_EQ(count_children(), 0);
    ad_tools_free(t);
}

TEST(isolated_scrubs_the_key_and_repairs_text)
{
    ad_tools *t = load("hostile.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    setenv("AGENTD_TEST_KEY", "sk-secret", 1);
    ad_isolate_opts keep = {10, NULL}, scrub = {10, "AGENTD_TEST_KEY"};
    ad_tool_result r;
    CHECK_EQ(ad_tools_invoke_isolated(t, "showkey", "{}", 2, &keep, &r), 0);
    CHECK_STREQ(r.content, "sk-secret");
    ad_tool_result_free(&r);
    CHECK_EQ(ad_tools_invoke_isolated(t, "showkey", "{}", 2, &scrub, &r), 0);
    CHECK_STREQ(r.content, "(unset)");
    ad_tool_result_free(&r);
    unsetenv("AGENTD_TEST_KEY");
    /* Arguments are checked before any worker starts. */
    CHECK_EQ(ad_tools_invoke_isolated(t, "crash", "[1]", 3, &keep, &r), 0);
    CHECK_STREQ(r.content, "invalid arguments for tool 'crash': expected a JSON object, got an array");
    ad_tool_result_free(&r);
    ad_tools_free(t);

    /* Broken text comes out the same as in-process: valid UTF-8, no NUL. */
    t = load("badutf8.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    ad_tool_result a, b;
    CHECK_EQ(ad_tools_invoke(t, "badutf8", "{}", 2, &a), 0);
    CHECK_EQ(ad_tools_invoke_isolated(t, "badutf8", "{}", 2, &keep, &b), 0);
    CHECK_EQ(a.len, b.len);
    CHECK(a.content && b.content && memcmp(a.content, b.content, a.len) == 0);
    CHECK(b.content && strlen(b.content) == b.len);
    ad_tool_result_free(&a);
    ad_tool_result_free(&b);
    ad_tools_free(t);
    CHECK_EQ(count_children(), 0);
}

TEST(isolated_missing_worker_program)
{
    ad_tools *t = load("hostile.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    CHECK_EQ(ad_tools_set_worker_exe(t, "/nonexistent/agentd"), 0);
    bool is_error = false;
    char *got = iso(t, "flood", 5, &is_error);
    CHECK(got && strstr(got, "tool 'flood' could not be started in a worker process: cannot "
                             "start /nonexistent/agentd") == got);
    CHECK(is_error);
    free(got);
    ad_tools_free(t);
}

/* ---- plugins described by a worker -------------------------------------- */

static bool only_crash_in_process(void *ud, const char *name)
{
    (void)ud;
    return strcmp(name, "crash") != 0;
}

static bool all_isolated(void *ud, const char *name)
{
    (void)ud, (void)name;
    return true;
}

static char *plugin_path(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/plugins/%s", root && *root ? root : ".", file);
    return ad_strdup(path);
}

TEST(described_plugins_are_not_loaded)
{
    char *path = plugin_path("hostile.so");
    char err[512];
    ad_isolate_opts o = {10, NULL};
    /* Every tool isolated: registered from the description alone. */
    ad_tools *t = ad_tools_new();
    ad_tools_set_isolation(t, all_isolated, NULL, &o);
    CHECK_EQ(ad_tools_load_file(t, path, NULL, err, sizeof err), 0);
    CHECK_EQ(ad_tools_count(t), 9);
    const ad_tool *hang = ad_tools_find(t, "hang");
    CHECK(hang != NULL && !ad_tool_in_process(hang) && ad_tool_threadsafe(hang));
    CHECK(!ad_tool_threadsafe(ad_tools_find(t, "crash")));
    CHECK_STREQ(ad_tool_description(ad_tools_find(t, "exit3")), "misbehaves");
    /* An isolated call runs as ever; the plugin cannot be called here. */
    bool is_error = false;
    char *got = iso(t, "crash", 5, &is_error);
    CHECK_STREQ(got, "tool 'crash' was killed by signal 11 (SIGSEGV)");
    free(got);
    ad_tool_result r;
    CHECK_EQ(ad_tools_invoke(t, "crash", "{}", 2, &r), 0);
    CHECK(r.is_error && strstr(r.content, "is not loaded into agentd") != NULL);
    ad_tool_result_free(&r);
    /* Arguments are still checked here, against the described schema. */
    got = iso(t, "nosuch", 5, &is_error);
    CHECK(got && strstr(got, "unknown tool 'nosuch'") == got);
    free(got);
    ad_tools_free(t);
    /* One tool in-process: the plugin is loaded here. */
    t = ad_tools_new();
    ad_tools_set_isolation(t, only_crash_in_process, NULL, &o);
    CHECK_EQ(ad_tools_load_file(t, path, NULL, err, sizeof err), 0);
    CHECK(ad_tool_in_process(ad_tools_find(t, "hang")));
    ad_tools_free(t);
    free(path);
    CHECK_EQ(count_children(), 0);
}

TEST(described_plugin_failures_read_as_load_failures)
{
    static const struct {
        const char *file, *want;
    } cases[] = {
        {"init_fail.so", "plugin init_fail.so: init failed: cannot reach the license server"},
        {"no_tools.so", "plugin no_tools.so: registers no tools"},
        {"no_init.so", "plugin no_init.so: not an agentd plugin (missing agentd_plugin_init_v1)"},
        {"dup_add.so", NULL},
    };
    ad_isolate_opts o = {10, NULL};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = plugin_path(cases[i].file);
        char err[512] = "";
        ad_tools *t = ad_tools_new();
        ad_tools_set_isolation(t, all_isolated, NULL, &o);
        int rc = ad_tools_load_file(t, path, NULL, err, sizeof err);
        if (cases[i].want) {
            CHECK(rc < 0);
            CHECK_STREQ(err, cases[i].want);
            CHECK_EQ(ad_tools_count(t), 0);
        } else {
            /* Loads fine alone; twice, its names clash as in-process. */
            CHECK_EQ(rc, 0);
            CHECK(ad_tools_load_file(t, path, NULL, err, sizeof err) < 0);
            CHECK(strstr(err, "duplicate tool name") != NULL);
        }
        ad_tools_free(t);
        free(path);
    }
    /* A worker that does not answer in time is named. */
    char *path = plugin_path("hostile.so");
    char err[512] = "";
    ad_tools *t = ad_tools_new();
    ad_tools_set_isolation(t, all_isolated, NULL, &o);
    CHECK_EQ(ad_tools_set_worker_exe(t, "/bin/true"), 0);
    CHECK(ad_tools_load_file(t, path, NULL, err, sizeof err) < 0);
    CHECK_STREQ(err, "plugin hostile.so: init failed in a worker process: it exited with status 0");
    ad_tools_free(t);
    free(path);
    CHECK_EQ(count_children(), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], AD_TOOLS_WORKER_FLAG) == 0)
        return ad_tools_worker_main(argc, argv);
    HARNESS_INIT(argc, argv);
    RUN(proc_result_output_and_input);
    RUN(proc_exit_status_and_signal);
    RUN(proc_timeout_kills_the_group);
    RUN(proc_grandchild_holding_pipes_does_not_block);
    RUN(proc_bounds_and_descriptors);
    RUN(proc_start_failure);
    RUN(isolated_failures_are_named);
    RUN(isolated_results);
    RUN(isolated_scrubs_the_key_and_repairs_text);
    RUN(isolated_missing_worker_program);
    RUN(described_plugins_are_not_loaded);
    RUN(described_plugin_failures_read_as_load_failures);
    return harness_report("test_isolate");
}

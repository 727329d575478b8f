/*
 * test_isolate.c -- process isolation: the child runner (proc.c) with
 * /bin/sh children, and isolated tool calls (isolate.c, through the plugin
 * provider and a tool host on a real loop) against the hostile test plugin.
 *
 * Isolated calls start this very test program again as a worker
 * (`test_isolate --tool-worker PPID`), which is why main() hands that mode
 * to ad_isolate_worker_main() first. Every case also checks that no child of
 * this process is left over, zombie or running.
 */
#include "base/buf.h"
#include "../../harness.h"
#include "tools_test.h"
#include "tools/host.h"
#include "tools/isolate.h"
#include "tools/plugin.h"
#include "tools/proc.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

static uv_loop_t loop;

static int all_isolated(void *ud, const char *name)
{
    (void)ud, (void)name;
    return AD_TOOL_PER_CALL;
}

/* Every tool but "children": the plugin is loaded here too, and its other
 * tools' calls run in workers. */
static int all_but_children(void *ud, const char *name)
{
    (void)ud;
    return strcmp(name, "children") != 0 ? AD_TOOL_PER_CALL : AD_TOOL_IN_PROCESS;
}

static int only_crash_in_process(void *ud, const char *name)
{
    (void)ud;
    return strcmp(name, "crash") != 0 ? AD_TOOL_PER_CALL : AD_TOOL_IN_PROCESS;
}

static void free_host(ad_tool_host *h)
{
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* A host with plugin file loaded, the tools iso says isolated; o may be
 * NULL. NULL with the error printed when it does not load. */
static ad_tool_host *load_with(const char *file, ad_plugin_mode_fn iso_fn,
                               const ad_isolate_opts *o)
{
    char *path = plugin_path(file), err[512];
    ad_tool_host *t = ad_tool_host_new(&loop);
    ad_plugin_opts po = {.mode = iso_fn, .isolate = o};
    if (t && ad_plugin_load_file(t, path, NULL, &po, err, sizeof err) != AD_OK) {
        fprintf(stderr, "test_isolate: %s\n", err);
        free_host(t);
        t = NULL;
    }
    free(path);
    return t;
}

static ad_tool_host *load(const char *file)
{
    static const ad_isolate_opts o = {NULL, NULL, 10, NULL};
    return load_with(file, all_but_children, &o);
}

typedef struct one {
    bool done;
    ad_tool_result r;
} one;

static void one_done(void *ud, const ad_call_outcome *o, size_t n)
{
    one *x = ud;
    x->done = true;
    if (n == 1) {
        x->r = o[0].result;
        x->r.content = ad_strndup(o[0].result.content, o[0].result.len);
    }
}

/* Runs one call (args JSON text) to its end; fills *r (caller frees). */
static int run_one(ad_tool_host *t, const char *name, const char *args, double timeout_s,
                   ad_tool_result *r)
{
    one x = {0};
    ad_call_req q = {"call_1", name, args, strlen(args), timeout_s};
    static const ad_batch_cb cb = {.on_done = one_done};
    if (ad_tool_host_run(t, "conv", &q, 1, &cb, &x) == NULL)
        return AD_ENOMEM;
    while (!x.done)
        uv_run(&loop, UV_RUN_ONCE);
    *r = x.r;
    return r->content ? AD_OK : AD_ENOMEM;
}

/* An isolated call of `name`; the result's text, or NULL. Caller frees. */
static char *iso(ad_tool_host *t, const char *name, double timeout_s, bool *is_error)
{
    ad_tool_result r;
    if (run_one(t, name, "{}", timeout_s, &r) != AD_OK)
        return NULL;
    *is_error = r.is_error;
    return r.content;
}

/* Whether this process has file mapped (a loaded plugin). */
static bool mapped(const char *file)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, file) != NULL;
    if (f)
        fclose(f);
    return found;
}

TEST(isolated_failures_are_named)
{
    ad_tool_host *t = load("hostile.so");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    CHECK(ad_plugin_in_process(ad_tool_host_owner(t, 0)));
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
    free_host(t);
}

TEST(isolated_results)
{
    ad_tool_host *t = load("hostile.so");
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
    free_host(t);
}

TEST(isolated_scrubs_the_key_and_repairs_text)
{
    setenv("AGENTD_TEST_KEY", "sk-secret", 1);
    /* Workers get a short list of variables, and those passed on by name;
     * never the key's, even when it is named. */
    static const char *const pass[] = {"AGENTD_TEST_KEY", NULL};
    static const ad_isolate_opts keep = {NULL, NULL, 10, pass},
                                 scrub = {NULL, "AGENTD_TEST_KEY", 10, pass};
    ad_tool_host *t = load_with("hostile.so", all_but_children, &keep);
    ad_tool_host *u = load_with("hostile.so", all_but_children, &scrub);
    CHECK(t != NULL && u != NULL);
    if (t == NULL || u == NULL) {
        free_host(t);
        free_host(u);
        return;
    }
    ad_tool_result r;
    CHECK_EQ(run_one(t, "showkey", "{}", 10, &r), 0);
    CHECK_STREQ(r.content, "sk-secret");
    ad_tool_result_free(&r);
    CHECK_EQ(run_one(u, "showkey", "{}", 10, &r), 0);
    CHECK_STREQ(r.content, "(unset)");
    ad_tool_result_free(&r);
    unsetenv("AGENTD_TEST_KEY");
    /* Arguments are checked before any worker starts. */
    CHECK_EQ(run_one(t, "crash", "[1]", 10, &r), 0);
    CHECK_STREQ(r.content, "invalid arguments for tool 'crash': expected a JSON object, got an array");
    ad_tool_result_free(&r);
    free_host(t);
    free_host(u);

    /* Broken text comes out the same as in-process: valid UTF-8, no NUL. */
    t = load_with("badutf8.so", NULL, NULL);
    u = load_with("badutf8.so", all_isolated, &keep);
    CHECK(t != NULL && u != NULL);
    if (t == NULL || u == NULL) {
        free_host(t);
        free_host(u);
        return;
    }
    ad_tool_result a, b;
    CHECK_EQ(run_one(t, "badutf8", "{}", 10, &a), 0);
    CHECK_EQ(run_one(u, "badutf8", "{}", 10, &b), 0);
    CHECK_EQ(a.len, b.len);
    CHECK(a.content && b.content && memcmp(a.content, b.content, a.len) == 0);
    CHECK(b.content && strlen(b.content) == b.len);
    ad_tool_result_free(&a);
    ad_tool_result_free(&b);
    free_host(t);
    free_host(u);
    CHECK_EQ(count_children(), 0);
}

TEST(isolated_missing_worker_program)
{
    /* The worker program is there when the plugin is described, and gone
     * when the call is made. */
    char tmpl[] = "/tmp/agentd-isolate-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    char exe[PATH_MAX], self[PATH_MAX];
    snprintf(exe, sizeof exe, "%s/agentd", dir);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0)
        return;
    self[n] = '\0';
    CHECK_EQ(symlink(self, exe), 0);
    ad_isolate_opts o = {exe, NULL, 10, NULL};
    ad_tool_host *t = load_with("hostile.so", all_but_children, &o);
    unlink(exe);
    rmdir(dir);
    CHECK(t != NULL);
    if (t == NULL)
        return;
    bool is_error = false;
    char *got = iso(t, "flood", 5, &is_error);
    char want[PATH_MAX + 100];
    snprintf(want, sizeof want,
             "tool 'flood' could not be started in a worker process: cannot start %s", exe);
    CHECK(got && strstr(got, want) == got);
    CHECK(is_error);
    free(got);
    free_host(t);
}

/* ---- plugins described by a worker -------------------------------------- */

TEST(described_plugins_are_not_loaded)
{
    static const ad_isolate_opts o = {NULL, NULL, 10, NULL};
    /* Earlier cases load it here; unloaded again unless under ASan, which
     * keeps every plugin mapped (plugin.c). */
    bool was_mapped = mapped("hostile.so");
    /* Every tool isolated: registered from the description alone. */
    ad_tool_host *t = load_with("hostile.so", all_isolated, &o);
    CHECK(t != NULL);
    if (t == NULL)
        return;
    CHECK_EQ(ad_tool_host_count(t), 9);
    const ad_tool_desc *hang = ad_tool_host_find(t, "hang");
    CHECK(hang != NULL && (hang->flags & AD_TOOL_THREADSAFE));
    CHECK(!(ad_tool_host_find(t, "crash")->flags & AD_TOOL_THREADSAFE));
    CHECK_STREQ(ad_tool_host_find(t, "exit3")->description, "misbehaves");
    CHECK(!ad_plugin_in_process(ad_tool_host_owner(t, 0)));
    /* Not a byte of it in this process. */
    CHECK(was_mapped || !mapped("hostile.so"));
    /* An isolated call runs as ever. */
    bool is_error = false;
    char *got = iso(t, "crash", 5, &is_error);
    CHECK_STREQ(got, "tool 'crash' was killed by signal 11 (SIGSEGV)");
    free(got);
    /* Arguments are still checked here, against the described schema. */
    got = iso(t, "nosuch", 5, &is_error);
    CHECK(got && strstr(got, "unknown tool 'nosuch'") == got);
    free(got);
    free_host(t);
    /* One tool in-process: the plugin is loaded here. */
    t = load_with("hostile.so", only_crash_in_process, &o);
    CHECK(t != NULL);
    if (t) {
        CHECK(ad_plugin_in_process(ad_tool_host_owner(t, 0)));
        CHECK(mapped("hostile.so"));
    }
    free_host(t);
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
    ad_isolate_opts o = {NULL, NULL, 10, NULL};
    ad_plugin_opts po = {.mode = all_isolated, .isolate = &o};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = plugin_path(cases[i].file);
        char err[512] = "";
        ad_tool_host *t = ad_tool_host_new(&loop);
        int rc = ad_plugin_load_file(t, path, NULL, &po, err, sizeof err);
        if (cases[i].want) {
            CHECK(rc < 0);
            CHECK_STREQ(err, cases[i].want);
            CHECK_EQ(ad_tool_host_count(t), 0);
        } else {
            /* Loads fine alone; twice, its names clash as in-process. */
            CHECK_EQ(rc, 0);
            CHECK(ad_plugin_load_file(t, path, NULL, &po, err, sizeof err) < 0);
            CHECK(strstr(err, "duplicate tool name") != NULL);
        }
        free_host(t);
        free(path);
    }
    /* A worker that does not answer is named. */
    char *path = plugin_path("hostile.so");
    char err[512] = "";
    o.exe = "/bin/true";
    ad_tool_host *t = ad_tool_host_new(&loop);
    CHECK(ad_plugin_load_file(t, path, NULL, &po, err, sizeof err) < 0);
    CHECK_STREQ(err, "plugin hostile.so: init failed in a worker process: it exited with status 0");
    free_host(t);
    free(path);
    CHECK_EQ(count_children(), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], AD_ISOLATE_WORKER_FLAG) == 0)
        return ad_isolate_worker_main(argc, argv);
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
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
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "test_isolate: the loop has handles left\n");
        harness_failed++;
    }
    return harness_report("test_isolate");
}

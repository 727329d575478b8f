/*
 * test_plugin_worker.c -- persistent plugin workers (worker.c, serve.c, wire.c)
 * through the plugin provider and a tool host on a real loop, against the
 * test plugins (hostile.so, v11.so, noisy.so), and against fake workers
 * (a Python script speaking the frames) for what a real worker never
 * sends: garbage, oversized results, unknown ids.
 *
 * Workers start this very test program again (`test_plugin_worker --tool-worker
 * PPID serve FILE`), which is why main() hands that mode to
 * ad_isolate_worker_main() first. Cases end by closing their host and
 * reaping its workers; the last checks that no child is left.
 */
#define _GNU_SOURCE
#include "base/buf.h"
#include "../../harness.h"
#include "tools_test.h"
#include "tools/host.h"
#include "tools/isolate.h"
#include "tools/plugin.h"
#include "tools/worker.h"

#include <agentd/plugin.h>

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t loop;

static int all_worker(void *ud, const char *name)
{
    (void)ud, (void)name;
    return AD_TOOL_WORKER;
}

static void free_host(ad_tool_host *h)
{
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    ad_plugin_worker_reap(10);
}

/* Log lines the host does not hand to a batch. */
static char host_lines[65536];

static void on_host_log(void *ud, const ad_tool_log_line *l)
{
    (void)ud;
    size_t at = strlen(host_lines);
    snprintf(host_lines + at, sizeof host_lines - at, "%s|%s|%.*s\n", l->origin, l->tool,
             (int)l->len, l->text);
}

static ad_tool_host *load_with(const char *file, const ad_isolate_opts *o)
{
    char *path = plugin_path(file), err[512];
    ad_tool_host *t = ad_tool_host_new(&loop);
    ad_tool_host_set_log(t, on_host_log, NULL, AGENTD_LOG_DEBUG);
    static const ad_isolate_opts dflt = {NULL, NULL, 10, NULL};
    ad_plugin_opts po = {.mode = all_worker, .isolate = o ? o : &dflt};
    if (t && ad_plugin_load_file(t, path, NULL, &po, err, sizeof err) != AD_OK) {
        fprintf(stderr, "test_plugin_worker: %s\n", err);
        free_host(t);
        t = NULL;
    }
    free(path);
    return t;
}

/* The worker provider of the host's first plugin. */
static ad_tool_provider *worker_of(ad_tool_host *t)
{
    return ad_plugin_worker_provider(ad_tool_host_provider_at(t, 0));
}

typedef struct batch {
    bool done;
    size_t n;
    ad_call_outcome o[8];
    char *text[8];
    char log[8][16384];
    int progress;
    char progress_msg[64];
} batch;

static void b_done(void *ud, const ad_call_outcome *o, size_t n)
{
    batch *b = ud;
    b->done = true;
    b->n = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        b->o[i] = o[i];
        b->text[i] = ad_strndup(o[i].result.content, o[i].result.len);
        b->o[i].result.content = b->text[i];
    }
}

static void b_log(void *ud, size_t i, int level, const char *text, size_t len)
{
    batch *b = ud;
    if (i >= 8)
        return;
    size_t at = strlen(b->log[i]);
    snprintf(b->log[i] + at, sizeof b->log[i] - at, "%d:%.*s\n", level, (int)len, text);
}

static void b_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    batch *b = ud;
    (void)i;
    b->progress++;
    snprintf(b->progress_msg, sizeof b->progress_msg, "%g/%g %s", done, total, msg ? msg : "");
}

static const ad_batch_cb bcb = {.on_progress = b_progress, .on_log = b_log, .on_done = b_done};

static ad_tool_batch *start_batch(ad_tool_host *t, const ad_call_req *q, size_t n, batch *b)
{
    memset(b, 0, sizeof *b);
    return ad_tool_host_run(t, "conv-1", q, n, &bcb, b);
}

static void wait_batch(batch *b)
{
    while (!b->done)
        uv_run(&loop, UV_RUN_ONCE);
}

static void run_batch(ad_tool_host *t, const ad_call_req *q, size_t n, batch *b)
{
    if (start_batch(t, q, n, b))
        wait_batch(b);
}

static void free_batch(batch *b)
{
    for (size_t i = 0; i < b->n && i < 8; i++)
        free(b->text[i]);
    memset(b, 0, sizeof *b);
}

/* One call; its result text (caller frees) and is_error. */
static char *call1(ad_tool_host *t, const char *name, const char *args, double timeout_s,
                   bool *is_error)
{
    batch b;
    ad_call_req q = {"call_1", name, args, strlen(args), timeout_s};
    run_batch(t, &q, 1, &b);
    char *s = b.text[0];
    b.text[0] = NULL;
    if (is_error)
        *is_error = b.o[0].result.is_error;
    free_batch(&b);
    return s;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until cond(ud) or secs pass. */
static bool wait_for(bool (*cond)(void *), void *ud, double secs)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    double end = now_s() + secs;
    bool ok = cond(ud);
    while (!ok && now_s() < end) {
        uv_timer_start(&tick, tick_cb, 20, 0);
        uv_run(&loop, UV_RUN_ONCE);
        ok = cond(ud);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

/* ---- a real worker ------------------------------------------------------- */

TEST(state_survives_calls_and_restarts_after_a_crash)
{
    ad_tool_host *t = load_with("v11.so", NULL);
    CHECK(t != NULL);
    if (t == NULL)
        return;
    ad_tool_provider *w = worker_of(t);
    CHECK(w != NULL);
    CHECK_EQ(ad_plugin_worker_pid(w), 0); /* none before the first call */
    const char *want[] = {"1", "2", "3"};
    long pid = 0;
    for (int i = 0; i < 3; i++) {
        bool e = true;
        char *got = call1(t, "count", "{}", 10, &e);
        CHECK_STREQ(got, want[i]);
        CHECK(!e);
        free(got);
        if (i == 0)
            pid = ad_plugin_worker_pid(w);
        CHECK_EQ(ad_plugin_worker_pid(w), pid); /* the same process */
    }
    CHECK(pid > 0);
    bool e = false;
    char *got = call1(t, "count_crash", "{}", 10, &e);
    CHECK_STREQ(got, "tool 'count_crash' crashed: SIGSEGV");
    CHECK(e);
    free(got);
    got = call1(t, "count", "{}", 10, &e);
    CHECK_STREQ(got, "1"); /* init ran again */
    free(got);
    CHECK(ad_plugin_worker_pid(w) != pid && ad_plugin_worker_pid(w) > 0);
    CHECK(strstr(host_lines, "its worker process crashed (SIGSEGV in a call of 'count_crash')"));
    host_lines[0] = '\0';
    free_host(t);
}

TEST(each_fate_is_named)
{
    ad_tool_host *t = load_with("hostile.so", NULL);
    CHECK(t != NULL);
    if (t == NULL)
        return;
    static const struct {
        const char *tool, *want;
        double timeout_s;
    } cases[] = {
        {"abort", "tool 'abort' crashed: SIGABRT", 10},
        {"exit3", "tool 'exit3' exited with status 3 without a result", 10},
        {"hang", "tool 'hang' timed out after 0.3 s and was killed", 0.3},
        {"showkey", "(unset)", 10},
    };
    setenv("AGENTD_TEST_KEY", "sk-unit", 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool e;
        double t0 = now_s();
        char *got = call1(t, cases[i].tool, "{}", cases[i].timeout_s, &e);
        CHECK_STREQ(got, cases[i].want);
        free(got);
        CHECK(now_s() - t0 < 8);
    }
    unsetenv("AGENTD_TEST_KEY");
    free_host(t);
}

TEST(neighbours_of_a_crash_are_interrupted)
{
    ad_tool_host *t = load_with("hostile.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    batch b;
    ad_call_req q[] = {{"c1", "crash", "{}", 2, 10}, {"c2", "hang", "{}", 2, 30}};
    double t0 = now_s();
    run_batch(t, q, 2, &b);
    CHECK(now_s() - t0 < 10);
    CHECK_EQ(b.n, 2);
    CHECK_STREQ(b.text[0], "tool 'crash' crashed: SIGSEGV");
    CHECK_STREQ(b.text[1], "tool 'hang' was interrupted: its worker process (hostile.so) crashed "
                           "(SIGSEGV in a call of 'crash')");
    free_batch(&b);
    /* ... and the timed-out call's: killed with it. */
    ad_call_req r[] = {{"c3", "hang", "{}", 2, 0.3}, {"c4", "hang", "{}", 2, 30}};
    run_batch(t, r, 2, &b);
    CHECK_STREQ(b.text[0], "tool 'hang' timed out after 0.3 s and was killed");
    CHECK_STREQ(b.text[1], "tool 'hang' was interrupted: its worker process (hostile.so) was "
                           "killed because a call of 'hang' timed out");
    free_batch(&b);
    free_host(t);
}

TEST(calls_run_side_by_side_and_report_progress)
{
    ad_tool_host *t = load_with("v11.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    batch b;
    ad_call_req q[] = {{"r1", "rendezvous", "{\"n\":3}", 7, 30},
                       {"r2", "rendezvous", "{\"n\":3}", 7, 30},
                       {"r3", "rendezvous", "{\"n\":3}", 7, 30}};
    run_batch(t, q, 3, &b);
    for (int i = 0; i < 3; i++)
        CHECK_STREQ(b.text[i], "met 3");
    free_batch(&b);
    ad_call_req l = {"l1", "later", "{\"ms\":20}", 9, 30};
    run_batch(t, &l, 1, &b);
    CHECK_STREQ(b.text[0], "later l1 conv-1");
    CHECK_EQ(b.progress, 1);
    CHECK_STREQ(b.progress_msg, "1/2 halfway");
    free_batch(&b);
    ad_call_req v = {"v1", "values",
                     "{\"i\":-9223372036854775808,\"big\":9223372036854775808,\"x\":12345678901234567890e-1,"
                     "\"d\":2.5,\"s\":\"a\\u0000b\",\"t\":true,\"n\":null,\"arr\":[{}],\"o\":{\"k\":1,\"l\":2}}",
                     0, 30};
    v.args_len = strlen(v.args);
    run_batch(t, &v, 1, &b);
    CHECK_STREQ(b.text[0], "i int int64=-9223372036854775808\n"
                           "big int int64=ERANGE\n"
                           "x double int64=1234567890123456789\n"
                           "d double double=2.5\n"
                           "s string len=3\n"
                           "t bool bool=1\n"
                           "n null \n"
                           "arr array len=1 first=object\n"
                           "o object len=2 keys=k,l\n"
                           "absent none \n");
    free_batch(&b);
    /* Below INT64_MIN json-c clamps: never read as an exact integer. */
    ad_call_req c = {"v2", "values", "{\"i\":-9223372036854775809}", 0, 30};
    c.args_len = strlen(c.args);
    run_batch(t, &c, 1, &b);
    CHECK_STREQ(b.text[0], "i int int64=ERANGE\nabsent none \n");
    free_batch(&b);
    ad_call_req d[] = {{"d1", "deadline", "{}", 2, 30}, {"d2", "deadline", "{}", 2, 0}};
    run_batch(t, d, 2, &b);
    CHECK_STREQ(b.text[0], "some");
    CHECK_STREQ(b.text[1], "none");
    free_batch(&b);
    free_host(t);
}

static bool pid_gone(void *ud)
{
    return ad_plugin_worker_pid(ud) == 0;
}

TEST(a_cancelled_call_is_stopped_or_its_worker_killed)
{
    ad_tool_host *t = load_with("v11.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    ad_tool_provider *w = worker_of(t);
    /* spin notices cancelled(); later's cancel() ends it: the worker stays. */
    char *got = call1(t, "count", "{}", 30, NULL);
    free(got);
    long pid = ad_plugin_worker_pid(w);
    batch b;
    ad_call_req q[] = {{"s1", "spin", "{\"ms\":60000}", 12, 0},
                       {"l1", "later", "{\"ms\":60000}", 12, 0}};
    ad_tool_batch *tb = start_batch(t, q, 2, &b);
    uv_run(&loop, UV_RUN_NOWAIT);
    ad_tool_batch_cancel(tb);
    wait_batch(&b);
    CHECK_EQ(b.o[0].state, AD_CALL_CANCELLED);
    CHECK_EQ(b.o[1].state, AD_CALL_CANCELLED);
    free_batch(&b);
    got = call1(t, "count", "{}", 30, NULL);
    CHECK_STREQ(got, "2"); /* the same worker, its state kept */
    free(got);
    CHECK_EQ(ad_plugin_worker_pid(w), pid);
    free_host(t);

    /* hostile's hang (ABI 1.0) cannot notice: its worker is killed after
     * the grace, and the next call runs in a new one. */
    t = load_with("hostile.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    w = worker_of(t);
    got = call1(t, "showkey", "{}", 30, NULL); /* the worker is up: the next call runs at once */
    free(got);
    ad_call_req h = {"h1", "hang", "{}", 2, 0};
    tb = start_batch(t, &h, 1, &b);
    uv_run(&loop, UV_RUN_NOWAIT);
    ad_tool_batch_cancel(tb);
    wait_batch(&b);
    free_batch(&b);
    CHECK(ad_plugin_worker_pid(w) > 0);
    CHECK(wait_for(pid_gone, w, 10));
    bool e = true;
    got = call1(t, "showkey", "{}", 30, &e);
    CHECK_STREQ(got, "(unset)");
    CHECK(!e);
    free(got);
    free_host(t);
}

/* Outcomes of a batch of up to MANY calls. */
#define MANY 40

typedef struct many {
    bool done;
    size_t n;
    char *text[MANY];
    ad_call_state state[MANY];
    int progress[MANY];
} many;

static void m_done(void *ud, const ad_call_outcome *o, size_t n)
{
    many *m = ud;
    m->done = true;
    m->n = n;
    for (size_t i = 0; i < n && i < MANY; i++) {
        m->text[i] = ad_strndup(o[i].result.content, o[i].result.len);
        m->state[i] = o[i].state;
    }
}

static void m_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    many *m = ud;
    (void)done, (void)total, (void)msg;
    if (i < MANY)
        m->progress[i]++;
}

static const ad_batch_cb mcb = {.on_progress = m_progress, .on_done = m_done};

static void free_many(many *m)
{
    for (size_t i = 0; i < m->n && i < MANY; i++)
        free(m->text[i]);
}

TEST(many_calls_in_flight_each_get_their_own_result)
{
    ad_tool_host *t = load_with("v11.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    char *got = call1(t, "count", "{}", 30, NULL); /* the worker is up: what follows goes at once */
    CHECK_STREQ(got, "1");
    free(got);
    /* One worker, every call in flight at once. a: later calls that answer
     * in the reverse order of their sending, each with its progress, in
     * two batches around the others; b: a call cancelled while it runs;
     * c: calls of a tool that is not thread-safe, waiting behind each
     * other and run in order; d: calls that never end by themselves,
     * interrupted when e's timeout kills the worker (long after a's have
     * answered). */
    static char ids[MANY][16], args[MANY][32];
    ad_call_req a[MANY];
    for (int i = 0; i < MANY; i++) {
        snprintf(ids[i], sizeof ids[i], "a%d", i);
        snprintf(args[i], sizeof args[i], "{\"ms\":%d}", 20 + 5 * (MANY - i));
        a[i] = (ad_call_req){ids[i], "later", args[i], strlen(args[i]), 30};
    }
    ad_call_req b = {"b0", "spin", "{\"ms\":60000}", 12, 0};
    ad_call_req c[5];
    static const char *const cids[] = {"c0", "c1", "c2", "c3", "c4"};
    for (int i = 0; i < 5; i++)
        c[i] = (ad_call_req){cids[i], "count", "{}", 2, 30};
    ad_call_req d[2] = {{"d0", "later", "{\"ms\":60000}", 12, 0},
                        {"d1", "later", "{\"ms\":60000}", 12, 0}};
    ad_call_req e = {"e0", "later", "{\"ms\":60000}", 12, 2};
    many ma = {0}, mb = {0}, mc = {0}, md = {0}, me = {0};
    CHECK(ad_tool_host_run(t, "conv-a", a, 20, &mcb, &ma) != NULL);
    ad_tool_batch *bb = ad_tool_host_run(t, "conv-b", &b, 1, &mcb, &mb);
    CHECK(bb != NULL);
    CHECK(ad_tool_host_run(t, "conv-c", c, 5, &mcb, &mc) != NULL);
    CHECK(ad_tool_host_run(t, "conv-d", d, 2, &mcb, &md) != NULL);
    CHECK(ad_tool_host_run(t, "conv-e", &e, 1, &mcb, &me) != NULL);
    many ma2 = {0};
    CHECK(ad_tool_host_run(t, "conv-a", a + 20, MANY - 20, &mcb, &ma2) != NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    ad_tool_batch_cancel(bb);
    while (!(ma.done && ma2.done && mb.done && mc.done && md.done && me.done))
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(ma.n + ma2.n, MANY);
    for (int i = 0; i < MANY; i++) {
        many *m = i < 20 ? &ma : &ma2;
        size_t k = (size_t)(i < 20 ? i : i - 20);
        char want[64];
        snprintf(want, sizeof want, "later a%d conv-a", i);
        CHECK_EQ(m->state[k], AD_CALL_DONE);
        CHECK_STREQ(m->text[k], want);
        CHECK_EQ(m->progress[k], 1);
    }
    CHECK_EQ(mb.state[0], AD_CALL_CANCELLED);
    static const char *const counts[] = {"2", "3", "4", "5", "6"};
    for (int i = 0; i < 5; i++)
        CHECK_STREQ(mc.text[i], counts[i]);
    for (int i = 0; i < 2; i++)
        CHECK_STREQ(md.text[i], "tool 'later' was interrupted: its worker process (v11.so) was "
                                "killed because a call of 'later' timed out");
    CHECK_STREQ(me.text[0], "tool 'later' timed out after 2 s and was killed");
    free_many(&ma);
    free_many(&ma2);
    free_many(&mb);
    free_many(&mc);
    free_many(&md);
    free_many(&me);
    got = call1(t, "count", "{}", 30, NULL);
    CHECK_STREQ(got, "1"); /* a new worker */
    free(got);
    free_host(t);
}

TEST(output_belongs_to_the_call_and_is_bounded)
{
    ad_tool_host *t = load_with("hostile.so", NULL);
    if (t == NULL) {
        CHECK(t != NULL);
        return;
    }
    batch b;
    ad_call_req q = {"f1", "flood", "{}", 2, 30};
    run_batch(t, &q, 1, &b);
    CHECK_STREQ(b.text[0], "flooded");
    /* -1 is AD_TOOL_LOG_OUTPUT: the worker's output, not a log() line. */
    CHECK(strncmp(b.log[0], "-1:oooo", 7) == 0);
    CHECK(strstr(b.log[0], "more bytes of output dropped]") != NULL);
    CHECK(strlen(b.log[0]) < 4096 + 200);
    if (strlen(b.log[0]) >= 4096 + 200)
        fprintf(stderr, "%zu bytes: ...%s\n", strlen(b.log[0]), b.log[0] + strlen(b.log[0]) - 300);
    free_batch(&b);
    free_host(t);
}

TEST(starts_are_bounded_and_a_plugin_that_never_starts_is_disabled)
{
    /* /bin/true as the worker program: it exits before saying hello. The
     * description comes from a real describing worker first. */
    ad_tool_host *t = ad_tool_host_new(&loop);
    char *path = plugin_path("v11.so"), err[512];
    static const ad_isolate_opts real = {NULL, NULL, 10, NULL};
    char dir[] = "/tmp/agentd-test-worker-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    ad_plugin_opts po = {.mode = all_worker, .isolate = &real, .cache_dir = dir};
    CHECK_EQ(ad_plugin_load_file(t, path, NULL, &po, err, sizeof err), 0);
    free_host(t);
    t = ad_tool_host_new(&loop);
    ad_tool_host_set_log(t, on_host_log, NULL, AGENTD_LOG_DEBUG);
    static const ad_isolate_opts fake = {"/bin/true", NULL, 10, NULL};
    po.isolate = &fake; /* the cache answers: no describing worker */
    CHECK_EQ(ad_plugin_load_file(t, path, NULL, &po, err, sizeof err), 0);
    CHECK_STREQ(ad_plugin_source(ad_tool_host_provider_at(t, 0)), "cache");
    double t0 = now_s();
    bool e = false;
    char *got = call1(t, "count", "{}", 30, &e);
    const char *want = "tool 'count' is not available: its plugin v11.so failed to start 3 times "
                       "in a row (last: it exited with status 0 during init)";
    CHECK_STREQ(got, want);
    CHECK(e);
    free(got);
    CHECK(now_s() - t0 < 5);
    got = call1(t, "greet", "{\"name\":\"x\"}", 30, &e);
    CHECK(got && strstr(got, "tool 'greet' is not available: its plugin v11.so failed to start 3"));
    free(got);
    CHECK(strstr(host_lines, "disabled: its worker process failed to start 3 times in a row"));
    host_lines[0] = '\0';
    free_host(t);
    free(path);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    CHECK_EQ(system(rm), 0);
}

/* ---- fake workers --------------------------------------------------------- */

static const char fake_py[] =
    "#!/usr/bin/env python3\n"
    "import os, struct, sys, time\n"
    "mode = os.environ.get('FAKE_MODE', '')\n"
    "def rd(n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        c = os.read(3, n - len(b))\n"
    "        if not c: sys.exit(0)\n"
    "        b += c\n"
    "    return b\n"
    "def frame(t, i, p): os.write(5, struct.pack('<IHHQ', len(p), t, 0, i) + p)\n"
    "def s(b): return struct.pack('<I', len(b)) + b\n"
    "def take():\n"
    "    n, t, z, i = struct.unpack('<IHHQ', rd(16))\n"
    "    return t, i, rd(n)\n"
    "take()\n"
    "if mode == 'garbage':\n"
    "    os.write(5, b'garbage, not a frame at all')\n"
    "    time.sleep(30)\n"
    "frame(6, 0, b'\\x09' + s(b'from init at level nine'))\n"
    "frame(2, 0, b'\\x01' + s(b'{\"tools\":[]}'))\n"
    "t, i, p = take()\n"
    "if mode == 'big':\n"
    "    frame(5, i, b'\\x00' + s(b'y' * (1024 + 4097)))\n"
    "    time.sleep(30)\n"
    "frame(5, 999, b'\\x00' + s(b'for a call that never was'))\n"
    "frame(5, i, b'\\x00' + s(b'ok'))\n"
    "time.sleep(30)\n";

/* A host whose hostile.so tools (from a real description, cached) run in
 * the fake worker, with FAKE_MODE=mode passed on. */
static ad_tool_host *fake_host(const char *mode, const char *dir)
{
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/fake.py", dir);
    FILE *f = fopen(script, "w");
    if (f == NULL)
        return NULL;
    fputs(fake_py, f);
    fclose(f);
    chmod(script, 0700);
    setenv("FAKE_MODE", mode, 1);
    char *path = plugin_path("hostile.so"), err[512];
    static const ad_isolate_opts real = {NULL, NULL, 10, NULL};
    ad_plugin_opts po = {.mode = all_worker, .isolate = &real, .cache_dir = dir,
                         .refresh_cache = true};
    ad_tool_host *t = ad_tool_host_new(&loop);
    ad_plugin_load_file(t, path, NULL, &po, err, sizeof err);
    free_host(t);
    po.refresh_cache = false;
    static const char *const pass[] = {"FAKE_MODE", NULL};
    static ad_isolate_opts fake = {NULL, NULL, 10, pass};
    static char exe[PATH_MAX];
    snprintf(exe, sizeof exe, "%s", script);
    fake.exe = exe;
    po.isolate = &fake;
    t = ad_tool_host_new(&loop);
    ad_tool_host_set_log(t, on_host_log, NULL, AGENTD_LOG_DEBUG);
    ad_tool_host_set_result_max(t, 1024);
    if (ad_plugin_load_file(t, path, NULL, &po, err, sizeof err) != 0) {
        fprintf(stderr, "test_plugin_worker: %s\n", err);
        free_host(t);
        t = NULL;
    }
    free(path);
    return t;
}

TEST(what_a_fake_worker_sends_is_checked)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        SKIP("no /usr/bin/python3 for the fake worker");
    char dir[] = "/tmp/agentd-test-worker-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    ad_tool_host *t = fake_host("", dir);
    CHECK(t != NULL);
    if (t) {
        bool e = true;
        char *got = call1(t, "showkey", "{}", 10, &e);
        CHECK_STREQ(got, "ok"); /* a result for an id never sent is dropped */
        CHECK(!e);
        free(got);
        /* Its init line's level 9 counts as debug; its tool list differs
         * from the one registered: said. */
        CHECK(strstr(host_lines, "hostile.so||from init at level nine") != NULL);
        CHECK(strstr(host_lines, "registers other tools than agentd listed at start-up") != NULL);
        host_lines[0] = '\0';
        free_host(t);
    }
    t = fake_host("big", dir);
    if (t) {
        char *got = call1(t, "showkey", "{}", 10, NULL);
        CHECK_STREQ(got, "tool 'showkey' failed: its worker process sent a result of 5121 bytes "
                         "(the bound is 1024) and was killed");
        free(got);
        host_lines[0] = '\0';
        free_host(t);
    }
    t = fake_host("garbage", dir);
    if (t) {
        char *got = call1(t, "showkey", "{}", 10, NULL);
        CHECK_STREQ(got, "tool 'showkey' is not available: its plugin hostile.so failed to start "
                         "3 times in a row (last: it sent a malformed or oversized frame)");
        free(got);
        host_lines[0] = '\0';
        free_host(t);
    }
    unsetenv("FAKE_MODE");
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    CHECK_EQ(system(rm), 0);
}

TEST(no_child_is_left)
{
    CHECK_EQ(ad_plugin_worker_reap(10), 0);
    CHECK_EQ(count_children(), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], AD_ISOLATE_WORKER_FLAG) == 0)
        return ad_isolate_worker_main(argc, argv);
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    RUN(state_survives_calls_and_restarts_after_a_crash);
    RUN(each_fate_is_named);
    RUN(neighbours_of_a_crash_are_interrupted);
    RUN(calls_run_side_by_side_and_report_progress);
    RUN(a_cancelled_call_is_stopped_or_its_worker_killed);
    RUN(many_calls_in_flight_each_get_their_own_result);
    RUN(output_belongs_to_the_call_and_is_bounded);
    RUN(starts_are_bounded_and_a_plugin_that_never_starts_is_disabled);
    RUN(what_a_fake_worker_sends_is_checked);
    RUN(no_child_is_left);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "test_plugin_worker: the loop has handles left\n");
        harness_failed++;
    }
    return harness_report("test_plugin_worker");
}

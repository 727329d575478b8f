/*
 * test_host.c -- the tool host (tools/host.c) with a fake provider written
 * here, on a real loop; the plugin provider's serial chain across
 * conversations with the gate test plugin; and the agent's request tools
 * following the host's list (against the mock server).
 *
 * The fake provider's tools:
 *   manual  held until the test reports it started and ends it (fake_*),
 *           from uv timers of the test
 *   echo    started at once, ends on the next turn of the loop (a uv timer)
 *           with its argument text
 *   queued  never starts (it waits for a thread that never comes); cancel
 *           takes it back
 *   raw     ends inside start() with raw_result (bytes, bounded or not)
 * No test asserts how long anything takes: deadlines are checked by order
 * (a test timer that fires long after a deadline would have passed).
 */
#include "../../harness.h"
#include "../mock.h"
#include "base/buf.h"
#include "core/agent.h"
#include "provider/curl.h"
#include "sinks/jsonl.h"
#include "tools/host.h"
#include "tools/plugin.h"

#include <agentd/plugin.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uv_loop_t loop;
static int in_api; /* inside ad_tool_host_run / ad_tool_batch_cancel */

/* ---- the fake provider -------------------------------------------------- */

#define MAXJOBS 16

typedef struct fake {
    ad_tool_provider base;
    ad_tool_desc tools[6];
    size_t ntools;
    json_object *schema;
    ad_tool_job *held[MAXJOBS]; /* jobs it holds, in start order */
    size_t nheld;
    ad_tool_job *echo[MAXJOBS]; /* echo jobs to end on the next tick */
    size_t necho;
    uv_timer_t tick;
    int starts, cancels, last_stop;
    bool grow_on_echo; /* ending an echo adds the tool "extra" */
} fake;

static ad_tool_result raw_result;

static bool is(const ad_tool_job *job, const char *name)
{
    return strcmp(job->tool->name, name) == 0;
}

static void drop_held(fake *f, ad_tool_job *job)
{
    for (size_t i = 0; i < f->nheld; i++)
        if (f->held[i] == job) {
            memmove(&f->held[i], &f->held[i + 1], (f->nheld - i - 1) * sizeof f->held[0]);
            f->nheld--;
            return;
        }
}

static void end_job(fake *f, ad_tool_job *job, const char *text)
{
    drop_held(f, job);
    ad_tool_result r = {0};
    if (text) {
        r.content = ad_strdup(text);
        r.len = strlen(text);
    }
    ad_tool_job_done(job, text ? &r : NULL);
}

static void on_tick(uv_timer_t *t)
{
    fake *f = t->data;
    size_t n = f->necho;
    f->necho = 0;
    for (size_t i = 0; i < n; i++) {
        ad_tool_job *job = f->echo[i];
        if (f->grow_on_echo && f->ntools < 6) {
            f->tools[f->ntools++] = (ad_tool_desc){"extra", "appeared later", f->schema, 0,
                                                   "fake"};
            ad_tool_host_changed(f->base.host);
        }
        end_job(f, job, job->args);
    }
}

static size_t fake_count(ad_tool_provider *p)
{
    return ((fake *)p)->ntools;
}

static const ad_tool_desc *fake_get(ad_tool_provider *p, size_t i)
{
    fake *f = (fake *)p;
    return i < f->ntools ? &f->tools[i] : NULL;
}

static int fake_start(ad_tool_provider *p, ad_tool_job *job)
{
    fake *f = (fake *)p;
    f->starts++;
    /* Arguments come checked and parsed. */
    if (!json_object_is_type(job->args_obj, json_type_object))
        return AD_EINVAL;
    if (is(job, "raw")) {
        ad_tool_job_started(job);
        ad_tool_result r = raw_result;
        r.content = malloc(raw_result.len + 1);
        memcpy(r.content, raw_result.content, raw_result.len);
        r.content[r.len] = '\0';
        ad_tool_job_done(job, &r);
        return AD_OK;
    }
    f->held[f->nheld++] = job;
    if (is(job, "echo")) {
        ad_tool_job_started(job);
        f->echo[f->necho++] = job;
        uv_timer_start(&f->tick, on_tick, 0, 0);
    }
    return AD_OK;
}

static bool fake_cancel(ad_tool_provider *p, ad_tool_job *job)
{
    fake *f = (fake *)p;
    f->cancels++;
    f->last_stop = job->stop;
    if (is(job, "queued") || (is(job, "manual") && job->pdata == NULL)) {
        end_job(f, job, NULL); /* never began: taken back */
        return true;
    }
    return false; /* runs on; its end comes later and is dropped */
}

static void fake_close(ad_tool_provider *p)
{
    fake *f = (fake *)p;
    while (f->nheld)
        end_job(f, f->held[0], NULL);
    json_object_put(f->schema);
    f->schema = NULL;
    uv_close((uv_handle_t *)&f->tick, NULL);
}

static const ad_tool_provider_vt fake_vt = {
    .kind = "fake",
    .count = fake_count,
    .get = fake_get,
    .start = fake_start,
    .cancel = fake_cancel,
    .close = fake_close,
};

static void fake_init(fake *f)
{
    memset(f, 0, sizeof *f);
    f->base.vt = &fake_vt;
    f->base.origin = "fake";
    f->schema = json_tokener_parse(
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}}");
    static const char *const names[] = {"manual", "echo", "queued", "raw"};
    for (size_t i = 0; i < 4; i++)
        f->tools[f->ntools++] = (ad_tool_desc){names[i], "a fake tool", f->schema, 0, "fake"};
    uv_timer_init(&loop, &f->tick);
    f->tick.data = f;
}

/* A manual job reports it started (pdata marks it for fake_cancel). */
static void fake_started(ad_tool_job *job)
{
    job->pdata = job;
    ad_tool_job_started(job);
}

static ad_tool_host *host_with(fake *f)
{
    ad_tool_host *h = ad_tool_host_new(&loop);
    char err[256];
    if (h && ad_tool_host_add(h, &f->base, err, sizeof err) != AD_OK) {
        fprintf(stderr, "test_host: %s\n", err);
        return NULL;
    }
    return h;
}

static void free_host(ad_tool_host *h)
{
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- what a batch reported ---------------------------------------------- */

typedef struct rec {
    size_t order[MAXJOBS]; /* on_result's i, in the order it came */
    size_t nres;
    bool done, done_inside;
    size_t n;
    char *text[MAXJOBS];
    ad_call_state state[MAXJOBS];
    bool started[MAXJOBS];
    double secs[MAXJOBS];
    int progress;
    char logs[1024]; /* on_log: "i:level:text;" */
} rec;

static void rec_result(void *ud, size_t i, const ad_call_outcome *o)
{
    rec *r = ud;
    (void)o;
    if (r->nres < MAXJOBS)
        r->order[r->nres++] = i;
}

static void rec_done(void *ud, const ad_call_outcome *o, size_t n)
{
    rec *r = ud;
    r->done = true;
    r->done_inside = in_api > 0;
    r->n = n;
    for (size_t i = 0; i < n && i < MAXJOBS; i++) {
        r->text[i] = ad_strndup(o[i].result.content, o[i].result.len);
        r->state[i] = o[i].state;
        r->started[i] = o[i].started;
        r->secs[i] = o[i].seconds;
    }
}

static void rec_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    (void)i, (void)done, (void)total, (void)msg;
    ((rec *)ud)->progress++;
}

static void rec_log(void *ud, size_t i, int level, const char *text, size_t len)
{
    rec *r = ud;
    size_t at = strlen(r->logs);
    snprintf(r->logs + at, sizeof r->logs - at, "%zu:%d:%.*s;", i, level, (int)len, text);
}

static void rec_free(rec *r)
{
    for (size_t i = 0; i < MAXJOBS; i++)
        free(r->text[i]);
    memset(r, 0, sizeof *r);
}

static const ad_batch_cb rec_cb = {rec_progress, NULL, rec_result, rec_done};
static const ad_batch_cb rec_log_cb = {rec_progress, rec_log, rec_result, rec_done};

static ad_tool_batch *run(ad_tool_host *h, const char *conv, const ad_call_req *q, size_t n,
                          const ad_batch_cb *cb, rec *r)
{
    in_api++;
    ad_tool_batch *b = ad_tool_host_run(h, conv, q, n, cb, r);
    in_api--;
    return b;
}

static void cancel(ad_tool_batch *b)
{
    in_api++;
    ad_tool_batch_cancel(b);
    in_api--;
}

static void wait_done(rec *r)
{
    while (!r->done)
        uv_run(&loop, UV_RUN_ONCE);
}

/* ---- timers of the test ------------------------------------------------- */

typedef struct later_t {
    uv_timer_t t;
    void (*fn)(void *);
    void *arg;
} later_t;

static void on_later(uv_timer_t *t)
{
    later_t *l = t->data;
    l->fn(l->arg);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

/* Calls fn(arg) from a timer ms from now. Timers of the same ms fire in
 * the order they were set. */
static void later(uint64_t ms, void (*fn)(void *), void *arg)
{
    later_t *l = calloc(1, sizeof *l);
    l->fn = fn;
    l->arg = arg;
    uv_timer_init(&loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, on_later, ms, 0);
}

static fake F;

static void finish_a(void *job)
{
    ad_tool_job_progress(job, 1, 1, "done");
    end_job(&F, job, "a");
}
static void finish_b(void *job)
{
    end_job(&F, job, "b");
}
static void finish_c(void *job)
{
    end_job(&F, job, "c");
}

/* ---- the host ----------------------------------------------------------- */

TEST(results_come_as_they_finish_and_all_in_call_order)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    rec r = {0};
    ad_call_req q[3] = {{"c1", "manual", "{}", 2, 0}, {"c2", "manual", "{}", 2, 0},
                        {"c3", "manual", "{}", 2, 0}};
    CHECK(run(h, "conv", q, 3, &rec_cb, &r) != NULL);
    CHECK_EQ(F.nheld, 3);
    CHECK_EQ(r.nres, 0);
    ad_tool_job *j0 = F.held[0], *j1 = F.held[1], *j2 = F.held[2];
    CHECK_STREQ(j0->call_id, "c1");
    CHECK_STREQ(j0->conv_id, "conv");
    for (size_t i = 0; i < 3; i++)
        fake_started(F.held[i]);
    /* The third ends first, then the first, then the second. */
    later(0, finish_c, j2);
    later(0, finish_a, j0);
    later(0, finish_b, j1);
    wait_done(&r);
    CHECK_EQ(r.nres, 3);
    CHECK(r.order[0] == 2 && r.order[1] == 0 && r.order[2] == 1);
    CHECK_EQ(r.n, 3);
    CHECK_STREQ(r.text[0], "a");
    CHECK_STREQ(r.text[1], "b");
    CHECK_STREQ(r.text[2], "c");
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(r.state[i], AD_CALL_DONE);
        CHECK(r.started[i]);
    }
    CHECK_EQ(r.progress, 1);
    CHECK(!r.done_inside);
    rec_free(&r);
    free_host(h);
}

static void check_not_timed_out_then_start(void *arg)
{
    rec *r = arg;
    /* Long past the 0.05 s timeout: it has not started, so its time has
     * not begun. */
    CHECK_EQ(r->nres, 0);
    CHECK_EQ(F.nheld, 1);
    if (F.nheld)
        fake_started(F.held[0]);
}

TEST(a_timeout_counts_from_the_start_and_a_late_end_is_dropped)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    rec r = {0};
    ad_call_req q = {"c1", "manual", "{}", 2, 0.05};
    CHECK(run(h, "conv", &q, 1, &rec_cb, &r) != NULL);
    later(200, check_not_timed_out_then_start, &r);
    wait_done(&r);
    CHECK_EQ(r.state[0], AD_CALL_TIMED_OUT);
    CHECK_STREQ(r.text[0], "tool 'manual' timed out after 0.05 s (its result will be ignored)");
    CHECK(r.started[0]);
    CHECK(r.secs[0] >= 0.05);
    CHECK_EQ(F.cancels, 1);
    CHECK_EQ(F.last_stop, AD_TOOL_STOP_TIMEOUT);
    /* The provider still holds the call; its end comes late and is dropped. */
    CHECK_EQ(F.nheld, 1);
    if (F.nheld)
        end_job(&F, F.held[0], "too late");
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ(r.nres, 1);
    CHECK_STREQ(r.text[0], "tool 'manual' timed out after 0.05 s (its result will be ignored)");
    rec_free(&r);
    free_host(h);
}

static void cancel_later(void *arg)
{
    void **v = arg;
    rec *r = v[0];
    CHECK_EQ(r->nres, 0); /* never started: never timed out */
    cancel(v[1]);
    /* Its outcome comes at once; on_done from the loop. */
    CHECK_EQ(r->nres, 1);
    CHECK(!r->done);
}

TEST(a_call_never_started_is_not_timed_out)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    rec r = {0};
    ad_call_req q = {"c1", "queued", "{}", 2, 0.01};
    ad_tool_batch *b = run(h, "conv", &q, 1, &rec_cb, &r);
    void *v[2] = {&r, b};
    later(200, cancel_later, v);
    wait_done(&r);
    CHECK_EQ(r.state[0], AD_CALL_CANCELLED);
    CHECK_STREQ(r.text[0], "cancelled by user before it started; it was not run");
    CHECK(!r.started[0]);
    CHECK(r.secs[0] == 0);
    CHECK_EQ(F.last_stop, AD_TOOL_STOP_CANCEL);
    CHECK_EQ(F.nheld, 0);
    CHECK(!r.done_inside);
    rec_free(&r);
    free_host(h);
}

TEST(cancel_before_the_start_and_while_running)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    rec r = {0};
    ad_call_req q[3] = {{"c1", "manual", "{}", 2, 0}, {"c2", "manual", "{}", 2, 0},
                        {"c3", "nosuch", "{}", 2, 0}};
    ad_tool_batch *b = run(h, "conv", q, 3, &rec_cb, &r);
    CHECK(b != NULL);
    CHECK_EQ(r.nres, 1); /* the unknown tool, answered inside run() */
    fake_started(F.held[0]);
    cancel(b);
    CHECK_EQ(r.nres, 3);
    CHECK(!r.done);
    wait_done(&r);
    CHECK(!r.done_inside);
    CHECK_STREQ(r.text[0], "cancelled by user while it was running (its result will be ignored)");
    CHECK_STREQ(r.text[1], "cancelled by user before it started; it was not run");
    CHECK(strncmp(r.text[2], "unknown tool 'nosuch'", 21) == 0);
    CHECK_EQ(r.state[0], AD_CALL_CANCELLED);
    CHECK_EQ(r.state[2], AD_CALL_REFUSED);
    CHECK_EQ(F.cancels, 2);
    /* The running one is still the provider's; its end is dropped. */
    CHECK_EQ(F.nheld, 1);
    if (F.nheld)
        end_job(&F, F.held[0], "late");
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ(r.nres, 3);
    rec_free(&r);
    free_host(h);
}

TEST(unknown_tools_and_bad_arguments_are_answered_without_the_provider)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    rec r = {0};
    ad_call_req q[6] = {
        {"c1", "nosuch", "{}", 2, 0},
        {"c2", "echo", "[1]", 3, 0},
        {"c3", "echo", "{\"x\":\"s\"}", 9, 0},
        {"c4", "echo", "{", 1, 0},
        {"c5", "echo", "{\"x\":1} x", 9, 0},
        {"c6", "echo", " \n", 2, 0},
    };
    CHECK(run(h, "conv", q, 6, &rec_cb, &r) != NULL);
    CHECK_EQ(F.starts, 1); /* only the last one, whose blank arguments are {} */
    CHECK_EQ(r.nres, 5);
    CHECK(!r.done);
    wait_done(&r);
    CHECK_STREQ(r.text[0], "unknown tool 'nosuch'; available tools: manual, echo, queued, raw");
    CHECK_STREQ(r.text[1], "invalid arguments for tool 'echo': expected a JSON object, got an array");
    CHECK_STREQ(r.text[2], "invalid arguments for tool 'echo': $.x: expected integer, got string");
    CHECK_STREQ(r.text[3], "invalid arguments for tool 'echo': not valid JSON (unexpected end of "
                           "input)");
    CHECK(strncmp(r.text[4], "invalid arguments for tool 'echo': not valid JSON (", 50) == 0);
    CHECK_STREQ(r.text[5], "{}");
    for (size_t i = 0; i < 5; i++)
        CHECK_EQ(r.state[i], AD_CALL_REFUSED);
    CHECK_EQ(r.state[5], AD_CALL_DONE);
    rec_free(&r);
    free_host(h);
}

/* One raw call; its text (caller frees). */
static char *raw_call(ad_tool_host *h, const char *content, size_t len, bool bounded)
{
    raw_result = (ad_tool_result){(char *)content, len, false, bounded, NULL};
    rec r = {0};
    ad_call_req q = {"c1", "raw", "{}", 2, 0};
    run(h, "conv", &q, 1, &rec_cb, &r);
    CHECK_EQ(r.nres, 1); /* it ended inside start() */
    wait_done(&r);
    CHECK(!r.done_inside);
    char *t = r.text[0];
    r.text[0] = NULL;
    rec_free(&r);
    return t;
}

TEST(results_are_capped_and_repaired)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    ad_tool_host_set_result_max(h, 10);
    char *t = raw_call(h, "0123456789abcdef", 16, false);
    CHECK_STREQ(t, "0123456789\n[... 6 bytes cut]");
    free(t);
    /* Cut on a character boundary: é is bytes 9 and 10. */
    t = raw_call(h, "012345678\xC3\xA9xyz", 14, false);
    CHECK_STREQ(t, "012345678\n[... 5 bytes cut]");
    free(t);
    /* A provider that bounded its result itself is not cut again. */
    t = raw_call(h, "0123456789\n[... 6 bytes cut]", 28, true);
    CHECK_STREQ(t, "0123456789\n[... 6 bytes cut]");
    free(t);
    /* Invalid UTF-8 and NUL become U+FFFD. */
    t = raw_call(h, "ab\xFF" "c\0d", 6, false);
    CHECK(t && memcmp(t, "ab\xEF\xBF\xBD" "c\xEF\xBF\xBD" "d", 10) == 0 && strlen(t) == 10);
    free(t);
    free_host(h);
}

/* ---- two conversations on one host -------------------------------------- */

static char host_log[2048];

static void log_into(void *ud, const ad_tool_log_line *l)
{
    (void)ud;
    size_t at = strlen(host_log);
    snprintf(host_log + at, sizeof host_log - at, "%s/%s/%s/%s:%d:%.*s;", l->conv_id, l->call_id,
             l->tool, l->origin, l->level, (int)l->len, l->text);
}

static void *log_from_thread(void *job)
{
    ad_tool_job_log(job, AGENTD_LOG_INFO, "thread", 6);
    return NULL;
}

/* Ends a manual job after a line logged on another thread and one on the
 * loop thread: both must come before its result. */
static void finish_logged(void *job)
{
    pthread_t th;
    pthread_create(&th, NULL, log_from_thread, job);
    pthread_join(th, NULL);
    ad_tool_job_log(job, AGENTD_LOG_WARN, "loop", 4);
    ad_tool_job_log(job, AGENTD_LOG_DEBUG, "dropped", 7); /* above the host's level */
    end_job(&F, job, ((ad_tool_job *)job)->conv_id);
}

TEST(two_conversations_batches_in_flight_on_one_host)
{
    fake_init(&F);
    ad_tool_host *h = host_with(&F);
    host_log[0] = '\0';
    ad_tool_host_set_log(h, log_into, NULL, AGENTD_LOG_INFO);
    rec a = {0}, b = {0};
    ad_call_req qa[2] = {{"a1", "manual", "{}", 2, 0}, {"a2", "echo", "{\"x\":1}", 7, 0}};
    ad_call_req qb[2] = {{"b1", "echo", "{\"x\":2}", 7, 0}, {"b2", "manual", "{}", 2, 0}};
    CHECK(run(h, "conv-a", qa, 2, &rec_log_cb, &a) != NULL);
    CHECK(run(h, "conv-b", qb, 2, &rec_cb, &b) != NULL);
    ad_tool_job *ja = NULL, *jb = NULL;
    for (size_t i = 0; i < F.nheld; i++) {
        if (strcmp(F.held[i]->call_id, "a1") == 0)
            ja = F.held[i];
        if (strcmp(F.held[i]->call_id, "b2") == 0)
            jb = F.held[i];
    }
    CHECK(ja && jb);
    if (!ja || !jb)
        return;
    fake_started(ja);
    fake_started(jb);
    /* b's manual ends first, then a's. */
    later(0, finish_logged, jb);
    later(0, finish_logged, ja);
    ad_tool_host_log(h, "fake", AGENTD_LOG_WARN, "outside", 7);
    wait_done(&b);
    wait_done(&a);
    CHECK_STREQ(a.text[0], "conv-a");
    CHECK_STREQ(a.text[1], "{\"x\":1}");
    CHECK_STREQ(b.text[0], "{\"x\":2}");
    CHECK_STREQ(b.text[1], "conv-b");
    /* a takes its calls' lines itself; b's go to the host's log, tagged. */
    CHECK_STREQ(a.logs, "0:2:thread;0:1:loop;");
    CHECK_STREQ(host_log, "///fake:1:outside;conv-b/b2/manual/fake:2:thread;"
                          "conv-b/b2/manual/fake:1:loop;");
    rec_free(&a);
    rec_free(&b);
    free_host(h);
}

/* ---- the plugin provider's serial chain --------------------------------- */

static char *plugin_path(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/plugins/%s", root && *root ? root : ".", file);
    return ad_strdup(path);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

static void gate_args(char *out, size_t n, const char *path)
{
    snprintf(out, n, "{\"path\":\"%s\"}", path);
}

TEST(serial_calls_of_one_plugin_are_serialised_across_conversations)
{
    char dir[] = "/tmp/agentd-host-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char pa[128], pb[128], pa_s[160], pb_s[160], aa[256], ab[256];
    snprintf(pa, sizeof pa, "%s/a", dir);
    snprintf(pb, sizeof pb, "%s/b", dir);
    snprintf(pa_s, sizeof pa_s, "%s.started", pa);
    snprintf(pb_s, sizeof pb_s, "%s.started", pb);
    gate_args(aa, sizeof aa, pa);
    gate_args(ab, sizeof ab, pb);
    touch(pb); /* b's gate is open: run, it would answer at once */
    char *path = plugin_path("gate.so"), err[512];
    ad_tool_host *h = ad_tool_host_new(&loop);
    CHECK_EQ(ad_plugin_load_file(h, path, NULL, NULL, err, sizeof err), 0);
    free(path);

    /* Conversation a's call holds the plugin's chain and times out there;
     * conversation b's call of the same plugin waits behind it, and is
     * refused once the call that holds the chain is given up. */
    rec a = {0}, b = {0};
    ad_call_req qa = {"a1", "gate_serial", aa, strlen(aa), 0.2};
    ad_call_req qb = {"b1", "gate_serial", ab, strlen(ab), 0};
    CHECK(run(h, "conv-a", &qa, 1, &rec_cb, &a) != NULL);
    CHECK(run(h, "conv-b", &qb, 1, &rec_cb, &b) != NULL);
    wait_done(&a);
    wait_done(&b);
    CHECK_STREQ(a.text[0], "tool 'gate_serial' timed out after 0.2 s (its result will be ignored)");
    CHECK_STREQ(b.text[0], "tool 'gate_serial' was not run: an earlier call of a tool that is "
                           "not thread-safe timed out and is still running");
    CHECK(!exists(pb_s));
    /* Its thread is still inside the plugin. */
    CHECK(ad_tool_host_busy(h));
    touch(pa);
    while (ad_tool_host_busy(h))
        uv_run(&loop, UV_RUN_ONCE);
    rec_free(&a);
    rec_free(&b);

    /* A waiting call whose batch is cancelled never runs. */
    unlink(pa);
    unlink(pa_s);
    qa.timeout_s = 0;
    CHECK(run(h, "conv-a", &qa, 1, &rec_cb, &a) != NULL);
    ad_tool_batch *bb = run(h, "conv-b", &qb, 1, &rec_cb, &b);
    cancel(bb);
    wait_done(&b);
    CHECK_STREQ(b.text[0], "cancelled by user before it started; it was not run");
    touch(pa);
    wait_done(&a);
    CHECK_STREQ(a.text[0], "opened");
    while (ad_tool_host_busy(h))
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(!exists(pb_s));
    rec_free(&a);
    rec_free(&b);
    free_host(h);
    unlink(pa);
    unlink(pa_s);
    unlink(pb);
    rmdir(dir);
}

/* ---- the agent's request follows the host's list ------------------------ */

#define CHUNK(delta, fin)                                                                          \
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"    \
    delta ",\"finish_reason\":" fin "}]}"

static const char grow_script[] =
    "{\"responses\": ["
    "{\"status\": 200, \"sse\": ["
    CHUNK("{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"e1\",\"type\":"
          "\"function\",\"function\":{\"name\":\"echo\",\"arguments\":\"{}\"}}]}", "null") ","
    CHUNK("{}", "\"tool_calls\"") ", \"[DONE]\"]},"
    "{\"status\": 200, \"sse\": ["
    CHUNK("{\"role\":\"assistant\",\"content\":\"done\"}", "\"stop\"") ", \"[DONE]\"]}]}";

static void agent_done(void *ud, int status)
{
    *(int *)ud = status;
}

/* The names of the tools of request n (0-based) in the mock's log. */
static void request_tools(const char *log, int n, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *line = log;
    for (int i = 0; line && i < n; i++) {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    if (!line)
        return;
    const char *nl = strchr(line, '\n');
    char *one = ad_strndup(line, nl ? (size_t)(nl - line) : strlen(line));
    json_object *req = json_tokener_parse(one), *body, *tools;
    free(one);
    if (json_object_object_get_ex(req, "json", &body) &&
        json_object_object_get_ex(body, "tools", &tools))
        for (size_t i = 0; i < json_object_array_length(tools); i++) {
            json_object *fn = json_object_object_get(json_object_array_get_idx(tools, i),
                                                     "function");
            size_t at = strlen(out);
            snprintf(out + at, outlen - at, "%s%s", at ? "," : "",
                     json_object_get_string(json_object_object_get(fn, "name")));
        }
    json_object_put(req);
}

TEST(a_list_change_reaches_the_next_request)
{
    mock_proc m;
    if (mock_start(&m, grow_script) != 0) {
        CHECK(!"mock server did not start");
        return;
    }
    fake_init(&F);
    F.grow_on_echo = true;
    ad_tool_host *h = host_with(&F);
    uint64_t gen = ad_tool_host_generation(h);
    ad_config cfg;
    ad_config_init(&cfg);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", m.port);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("test/model");
    cfg.max_retries = 0;
    FILE *devnull = fopen("/dev/null", "w");
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_jsonl_sink_new(devnull, devnull));
    ad_transport *http = ad_curl_new(&loop);
    ad_agent_opts o = {&loop, http, &cfg, h, ev};
    ad_agent *agent = ad_agent_new(&o);
    int status = -1;
    CHECK_EQ(ad_agent_run(agent, "go", agent_done, &status), 0);
    while (status < 0)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(status, AD_RUN_OK);
    CHECK(ad_tool_host_generation(h) != gen);
    char *log = mock_log(&m);
    char t1[256], t2[256];
    request_tools(log ? log : "", 0, t1, sizeof t1);
    request_tools(log ? log : "", 1, t2, sizeof t2);
    CHECK_STREQ(t1, "manual,echo,queued,raw");
    CHECK_STREQ(t2, "manual,echo,queued,raw,extra");
    free(log);
    ad_agent_free(agent);
    ad_transport_close(http);
    free_host(h);
    ad_events_free(ev);
    fclose(devnull);
    ad_config_free(&cfg);
    mock_stop(&m);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(results_come_as_they_finish_and_all_in_call_order);
    RUN(a_timeout_counts_from_the_start_and_a_late_end_is_dropped);
    RUN(a_call_never_started_is_not_timed_out);
    RUN(cancel_before_the_start_and_while_running);
    RUN(unknown_tools_and_bad_arguments_are_answered_without_the_provider);
    RUN(results_are_capped_and_repaired);
    RUN(two_conversations_batches_in_flight_on_one_host);
    RUN(serial_calls_of_one_plugin_are_serialised_across_conversations);
    RUN(a_list_change_reaches_the_next_request);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "test_host: the loop has handles left\n");
        harness_failed++;
    }
    curl_global_cleanup();
    return harness_report("test_host");
}

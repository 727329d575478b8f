/*
 * test_run.c -- jobs as conversations (worker/run.c) in one process: two
 * workers on one loop against a real redis-server, the mock provider and a
 * tool provider written here that records what each call's provider job
 * carried. The first worker's call is held and the worker is abandoned as
 * by a crash; the second one takes the job over. A tool that declares
 * itself idempotent runs again with the same idempotency key (the job's id
 * as conv_id, the call's id as call_id); any other is answered as
 * interrupted and never runs twice.
 */
#include "../../harness.h"
#include "../mock.h"
#include "redis_server.h"

#include "base/buf.h"
#include "provider/curl.h"
#include "tools/host.h"
#include "worker/queue.h"
#include "worker/run.h"
#include "worker/worker.h"

#include <curl/curl.h>
#include <uv.h>

static uv_loop_t loop;

/* ---- a tool provider that records its calls ------------------------------ */

typedef struct rec {
    ad_tool_provider base;
    ad_tool_desc tools[2];
    json_object *schema;
    int starts;
    bool hold_first;
    ad_tool_job *held;
    char conv[4][64], call[4][64];
} rec;

static size_t rec_count(ad_tool_provider *p)
{
    (void)p;
    return 2;
}

static const ad_tool_desc *rec_get(ad_tool_provider *p, size_t i)
{
    return &((rec *)p)->tools[i];
}

static void rec_end(ad_tool_job *job, const char *text)
{
    ad_tool_result r = {ad_strdup(text), strlen(text), false, false, NULL};
    ad_tool_job_done(job, &r);
}

static int rec_start(ad_tool_provider *p, ad_tool_job *job)
{
    rec *f = (rec *)p;
    if (f->starts < 4) {
        snprintf(f->conv[f->starts], 64, "%s", job->conv_id);
        snprintf(f->call[f->starts], 64, "%s", job->call_id);
    }
    f->starts++;
    ad_tool_job_started(job);
    if (f->hold_first && f->starts == 1) {
        f->held = job; /* the worker dies with the call running */
        return 0;
    }
    rec_end(job, "it happened");
    return 0;
}

static bool rec_cancel(ad_tool_provider *p, ad_tool_job *job)
{
    rec *f = (rec *)p;
    if (f->held == job) {
        f->held = NULL;
        rec_end(job, "late");
    }
    return false;
}

static void rec_close(ad_tool_provider *p)
{
    json_object_put(((rec *)p)->schema);
}

static const ad_tool_provider_vt rec_vt = {"test", rec_count, rec_get, rec_start, rec_cancel,
                                           NULL, rec_close};

/* ---- helpers --------------------------------------------------------------- */

static void stop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void spin(double s)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, stop_cb, (uint64_t)(s * 1000), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

typedef struct reply {
    bool done;
    char text[4096];
} reply;

static void on_reply(void *ud, redisReply *r)
{
    reply *x = ud;
    x->done = true;
    x->text[0] = '\0';
    const char *s = ad_redis_str(r, NULL);
    if (!s && r && r->type == REDIS_REPLY_ARRAY && r->elements)
        s = ad_redis_str(r->element[0], NULL);
    if (s)
        snprintf(x->text, sizeof x->text, "%s", s);
}

static void call(ad_redis *c, reply *x, int argc, const char **argv, const ad_redis_script *s,
                 int nkeys)
{
    x->done = false;
    if (s)
        ad_redis_eval(c, s, AD_REDIS_RETRY, on_reply, x, nkeys, argc, argv, NULL);
    else
        ad_redis_command(c, AD_REDIS_RETRY, on_reply, x, argc, argv, NULL);
    for (int i = 0; i < 400 && !x->done; i++)
        spin(0.025);
}

static bool job_state_is(ad_redis *c, const char *id, const char *want, double max_s)
{
    char key[AD_Q_KEY_MAX];
    ad_q_job(key, "agentd", id);
    const char *argv[] = {"HGET", key, "state"};
    reply x;
    for (double t = 0; t < max_s; t += 0.05) {
        call(c, &x, 3, argv, NULL, 0);
        if (strcmp(x.text, want) == 0)
            return true;
        spin(0.05);
    }
    fprintf(stderr, "  job %s: state %s, want %s\n", id, x.text, want);
    return false;
}

static const char script_tpl[] =
    "{\"by_turn\": true, \"responses\": ["
    "{\"body\": {\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": null, "
    "\"tool_calls\": [{\"id\": \"call_a\", \"type\": \"function\", \"function\": "
    "{\"name\": \"%s\", \"arguments\": \"{}\"}}]}, \"finish_reason\": \"tool_calls\"}]}},"
    "{\"body\": {\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": \"ok\"}, "
    "\"finish_reason\": \"stop\"}]}}]}";

static ad_worker *start_worker(const rsrv *s, ad_jobrunner *runner, const char *name)
{
    char err[512];
    ad_redis_url u;
    ad_redis_url_parse(&u, s->url, err, sizeof err);
    ad_worker_opts o = {.loop = &loop,
                        .url = &u,
                        .consumer = name,
                        .concurrency = 1,
                        .lease_s = 0.3,
                        .keep_s = 0,
                        .runner = ad_jobrunner_vt(),
                        .runner_ud = runner};
    ad_worker *w = ad_worker_new(&o, err, sizeof err);
    ad_redis_url_free(&u);
    return w;
}

/* Runs one job whose first worker dies while its call of `tool` runs; a
 * second worker ends it. Returns the provider's record. */
static bool crash_during(const char *tool, rec *f, char *ledger, size_t ledger_len)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        return false;
    char script[2048];
    snprintf(script, sizeof script, script_tpl, tool);
    mock_proc m;
    if (mock_start(&m, script) != 0) {
        rsrv_stop(&s);
        return false;
    }
    uv_loop_init(&loop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", m.port);
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("test/model");
    cfg.stream = false;
    cfg.max_retries = 0;
    ad_tool_host *host = ad_tool_host_new(&loop);
    f->base.vt = &rec_vt;
    f->base.origin = "test";
    f->schema = json_tokener_parse("{\"type\":\"object\"}");
    f->tools[0] = (ad_tool_desc){"idem", "", f->schema, AD_TOOL_IDEMPOTENT, "test"};
    f->tools[1] = (ad_tool_desc){"once", "", f->schema, 0, "test"};
    char err[512];
    CHECK_EQ(ad_tool_host_add(host, &f->base, err, sizeof err), 0);
    ad_transport *tr = ad_curl_new(&loop);
    ad_jobrunner_opts ro = {&loop, tr, &cfg, host, true};

    ad_redis_url u;
    ad_redis_url_parse(&u, s.url, err, sizeof err);
    ad_redis_opts co = {.loop = &loop, .url = &u, .reconnect = true, .scripts = ad_q_scripts,
                        .nscripts = AD_Q_NSCRIPTS};
    ad_redis *c = ad_redis_new(&co, err, sizeof err);
    ad_redis_url_free(&u);
    const char *sub[] = {"agentd:jobs", "agentd:job:jk", "agentd:index", "agentd", "jk", "go",
                         "", "1000"};
    reply x;
    call(c, &x, 8, sub, ad_q_scripts[AD_Q_SUBMIT], 3);
    CHECK_STREQ(x.text, "queued");

    ad_jobrunner *ra = ad_jobrunner_new(&ro);
    ad_worker *a = start_worker(&s, ra, "A");
    for (int i = 0; i < 400 && f->starts < 1; i++)
        spin(0.025);
    CHECK_EQ(f->starts, 1);
    /* A dies with the call running (its leases simply stop). */
    ad_worker_free(a);
    ad_jobrunner_free(ra);
    spin(0.05);
    ad_jobrunner *rb = ad_jobrunner_new(&ro);
    ad_worker *b = start_worker(&s, rb, "B");
    CHECK(job_state_is(c, "jk", "done", 20));
    const char *hg[] = {"HGET", "agentd:job:jk:ledger", "1:call_a"};
    call(c, &x, 3, hg, NULL, 0);
    snprintf(ledger, ledger_len, "%s", x.text);
    ad_worker_free(b);
    ad_jobrunner_free(rb);
    ad_redis_close(c);
    ad_transport_close(tr);
    ad_tool_host_free(host);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    ad_config_free(&cfg);
    curl_global_cleanup();
    mock_stop(&m);
    rsrv_stop(&s);
    return true;
}

TEST(idempotent_call_runs_again_with_the_same_key)
{
    rec f = {.hold_first = true};
    char ledger[4096];
    if (!crash_during("idem", &f, ledger, sizeof ledger))
        SKIP(rsrv_why[0] ? rsrv_why : "the mock provider did not start");
    CHECK_EQ(f.starts, 2);
    /* The idempotency key, JOB:CALL, as the provider's job carries it. */
    CHECK_STREQ(f.conv[0], "jk");
    CHECK_STREQ(f.call[0], "call_a");
    CHECK_STREQ(f.conv[1], "jk");
    CHECK_STREQ(f.call[1], "call_a");
    CHECK(strstr(ledger, "\"it happened\"") && strstr(ledger, "\"attempt\":2"));
}

TEST(other_call_is_answered_interrupted_and_not_run_again)
{
    rec f = {.hold_first = true};
    char ledger[4096];
    if (!crash_during("once", &f, ledger, sizeof ledger))
        SKIP(rsrv_why[0] ? rsrv_why : "the mock provider did not start");
    CHECK_EQ(f.starts, 1);
    CHECK(strstr(ledger, "interrupted") && strstr(ledger, "\"is_error\":true"));
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(idempotent_call_runs_again_with_the_same_key);
    RUN(other_call_is_answered_interrupted_and_not_run_again);
    return harness_report("test_run");
}

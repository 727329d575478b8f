/*
 * test_worker.c -- the Redis side of the worker (worker/worker.c) with a
 * runner of the test's own, against a real redis-server: a job ends once,
 * with its events numbered; a worker that stops renewing its lease loses
 * its job to another one and its result is refused; a job that never
 * finishes is dead-lettered with its reason; a stopping worker hands its
 * job back and the next attempt starts at once; jobs of one session run
 * one at a time, in order; appends are checked against the expected
 * length and the lease; a restart of Redis from its AOF loses nothing.
 */
#include "../../harness.h"
#include "redis_server.h"

#include "base/buf.h"
#include "worker/queue.h"
#include "worker/worker.h"

#include <uv.h>

static uv_loop_t loop;

static void stop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until `done` is true (callbacks set it) or max_s passed
 * (only against a hang). */
static bool run_until(bool *done, double max_s)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uint64_t end = uv_now(&loop) + (uint64_t)(max_s * 1000);
    while (!*done && uv_now(&loop) < end) {
        uv_timer_start(&t, stop_cb, 50, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *done;
}

/* ---- a synchronous client for the test's own reads and writes --------- */

static redisReply *got;
static bool got_done;
static void on_got(void *ud, redisReply *r)
{
    (void)ud;
    got = NULL;
    if (r) {
        /* Copied by hand: keep the bits the tests look at. */
        got = calloc(1, sizeof *got);
        got->type = r->type;
        got->integer = r->integer;
        if (r->str) {
            got->str = ad_strndup(r->str, r->len);
            got->len = r->len;
        }
        if (r->type == REDIS_REPLY_ARRAY) {
            got->elements = r->elements;
            got->element = calloc(r->elements + 1, sizeof *got->element);
            for (size_t i = 0; i < r->elements; i++) {
                redisReply *e = calloc(1, sizeof *e);
                e->type = r->element[i]->type;
                e->integer = r->element[i]->integer;
                if (r->element[i]->str) {
                    e->str = ad_strndup(r->element[i]->str, r->element[i]->len);
                    e->len = r->element[i]->len;
                }
                e->elements = r->element[i]->elements; /* nested: count only */
                got->element[i] = e;
            }
        }
    }
    got_done = true;
}

static void got_free(void)
{
    if (!got)
        return;
    for (size_t i = 0; i < got->elements; i++) {
        free(got->element[i]->str);
        free(got->element[i]);
    }
    free(got->element);
    free(got->str);
    free(got);
    got = NULL;
}

static ad_redis *cli;

static redisReply *call(int argc, const char **argv)
{
    got_free();
    got_done = false;
    ad_redis_command(cli, AD_REDIS_RETRY, on_got, NULL, argc, argv, NULL);
    run_until(&got_done, 10);
    return got;
}

#define CALL(...)                                                                                  \
    call((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),                      \
         (const char *[]){__VA_ARGS__})

static char *hget(const char *job, const char *field)
{
    char key[AD_Q_KEY_MAX];
    ad_q_job(key, "agentd", job);
    redisReply *r = CALL("HGET", key, field);
    return r && r->str ? ad_strdup(r->str) : NULL;
}

static bool hget_is(const char *job, const char *field, const char *want)
{
    char *v = hget(job, field);
    bool ok = v && strcmp(v, want) == 0;
    if (!ok)
        fprintf(stderr, "  %s.%s = %s, want %s\n", job, field, v ? v : "(nil)", want);
    free(v);
    return ok;
}

static void submit_nowait(const char *id, const char *prompt, const char *session)
{
    static char k_stream[AD_Q_KEY_MAX], k_job[AD_Q_KEY_MAX], k_index[AD_Q_KEY_MAX];
    const char *argv[] = {ad_q_stream(k_stream, "agentd"), ad_q_job(k_job, "agentd", id),
                          ad_q_index(k_index, "agentd"), "agentd", id, prompt,
                          session ? session : "", "1000"};
    got_free();
    got_done = false;
    ad_redis_eval(cli, ad_q_scripts[AD_Q_SUBMIT], AD_REDIS_RETRY, on_got, NULL, 3, 8, argv, NULL);
}

static void submit(const char *id, const char *prompt, const char *session)
{
    submit_nowait(id, prompt, session);
    run_until(&got_done, 10);
}

/* The job's events, as JSON objects. */
static json_object *events_of(const char *id)
{
    char key[AD_Q_KEY_MAX];
    ad_q_events(key, "agentd", id);
    /* Read by hand with a raw reply (nested), through a script that
     * flattens it. */
    static ad_redis_script flat = {
        "flat",
        "local out = {}\n"
        "for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do out[#out + 1] = e[2][2] "
        "end\n"
        "return out\n",
        ""};
    const char *argv[] = {"EVAL", flat.src, "1", key};
    redisReply *r = call(4, argv);
    json_object *a = json_object_new_array();
    for (size_t i = 0; r && i < r->elements; i++)
        json_object_array_add(a, json_tokener_parse(r->element[i]->str));
    return a;
}

static const char *ev_type(json_object *e)
{
    json_object *t;
    return json_object_object_get_ex(e, "type", &t) ? json_object_get_string(t) : "";
}

static int ev_int(json_object *e, const char *k)
{
    json_object *t;
    return json_object_object_get_ex(e, k, &t) ? json_object_get_int(t) : -1;
}

/* Every attempt's events are numbered 1, 2, 3 ... in the order stored. */
static bool seqs_increase(json_object *evs)
{
    int last_attempt = -1, last_seq = 0;
    bool ok = true;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *e = json_object_array_get_idx(evs, i);
        int a = ev_int(e, "attempt"), s = ev_int(e, "seq");
        if (a != last_attempt) {
            last_attempt = a;
            last_seq = 0;
        }
        if (s <= last_seq)
            ok = false;
        last_seq = s;
    }
    return ok;
}

static int count_type(json_object *evs, const char *type)
{
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++)
        n += strcmp(ev_type(json_object_array_get_idx(evs, i)), type) == 0;
    return n;
}

/* ---- the test's runner ---------------------------------------------------- */

enum { R_FINISH, R_HOLD };

typedef struct runner {
    int mode;
    int started, lost, stopped;
    ad_worker_job *held[8];
    int nheld;
    char order[256]; /* ids in the order they started */
    bool signal;     /* set when something happened */
    int append_result;
} runner;

static void forget(runner *r, ad_worker_job *j);

static void on_appended(void *ud, int result)
{
    ad_worker_job *j = ud;
    runner *r = ad_worker_job_data(j);
    r->append_result = result;
    if (result != AD_WORKER_OK)
        return;
    ad_worker_job_event(j, "{\"type\":\"text_delta\",\"step\":1,\"text\":\"hi\"",
                        strlen("{\"type\":\"text_delta\",\"step\":1,\"text\":\"hi\""));
    char res[256];
    snprintf(res, sizeof res, "answer to %s", ad_worker_job_prompt(j));
    /* The job is the worker's once finished: the runner lets go of it. */
    forget(r, j);
    ad_worker_job_finish(j, "done", 0, res, "");
    r->signal = true;
}

static void r_start(void *ud, ad_worker_job *j)
{
    runner *r = ud;
    r->started++;
    r->signal = true;
    strncat(r->order, ad_worker_job_id(j), sizeof r->order - strlen(r->order) - 2);
    strcat(r->order, " ");
    ad_worker_job_set_data(j, r);
    if (r->mode == R_HOLD) {
        if (r->nheld < 8)
            r->held[r->nheld++] = j;
        return;
    }
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object_object_add(m, "content", json_object_new_string(ad_worker_job_prompt(j)));
    const char *s = json_object_to_json_string(m);
    ad_worker_job_append(j, s, strlen(s), NULL, 0, on_appended, j);
    json_object_put(m);
}

static void forget(runner *r, ad_worker_job *j)
{
    for (int i = 0; i < r->nheld; i++)
        if (r->held[i] == j) {
            r->held[i] = r->held[--r->nheld];
            break;
        }
}

static void r_lost(void *ud, ad_worker_job *j)
{
    runner *r = ud;
    r->lost++;
    r->signal = true;
    forget(r, j);
}

static void r_stop(void *ud, ad_worker_job *j)
{
    runner *r = ud;
    r->stopped++;
    forget(r, j);
    ad_worker_job_handback(j, "stopping");
}

static const ad_worker_runner test_runner = {r_start, r_lost, r_stop};

static ad_worker *new_worker(rsrv *s, runner *r, const char *name, double lease, int conc,
                             int max_deliveries)
{
    char err[512];
    ad_redis_url u;
    ad_redis_url_parse(&u, s->url, err, sizeof err);
    ad_worker_opts o = {.loop = &loop,
                        .url = &u,
                        .consumer = name,
                        .concurrency = conc,
                        .lease_s = lease,
                        .max_deliveries = max_deliveries,
                        .keep_s = 0,
                        .runner = &test_runner,
                        .runner_ud = r};
    ad_worker *w = ad_worker_new(&o, err, sizeof err);
    if (!w)
        fprintf(stderr, "ad_worker_new: %s\n", err);
    ad_redis_url_free(&u);
    return w;
}

static void free_worker(ad_worker *w)
{
    ad_worker_free(w);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static bool setup(rsrv *s, bool aof)
{
    if (!rsrv_start(s, aof))
        return false;
    uv_loop_init(&loop);
    char err[256];
    ad_redis_url u;
    ad_redis_url_parse(&u, s->url, err, sizeof err);
    ad_redis_opts o = {.loop = &loop, .url = &u, .reconnect = true,
                       .scripts = ad_q_scripts, .nscripts = AD_Q_NSCRIPTS};
    cli = ad_redis_new(&o, err, sizeof err);
    ad_redis_url_free(&u);
    return cli != NULL;
}

static void teardown(rsrv *s)
{
    got_free();
    ad_redis_close(cli);
    cli = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "  the loop still has handles\n");
    rsrv_stop(s);
}

static bool signalled(runner *r, int started, double max_s)
{
    r->signal = false;
    bool done = false;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uint64_t end = uv_now(&loop) + (uint64_t)(max_s * 1000);
    while (r->started < started && uv_now(&loop) < end) {
        uv_timer_start(&t, stop_cb, 50, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    done = r->started >= started;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return done;
}

static bool ended(const char *job, double max_s)
{
    uint64_t end = uv_now(&loop) + (uint64_t)(max_s * 1000);
    for (;;) {
        char *st = hget(job, "state");
        bool e = ad_q_state_ended(st);
        free(st);
        if (e)
            return true;
        if (uv_now(&loop) >= end)
            return false;
        bool never = false;
        run_until(&never, 0.05);
    }
}

/* ---- tests ------------------------------------------------------------------ */

TEST(job_ends_once_with_numbered_events)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    runner r = {.mode = R_FINISH};
    ad_worker *w = new_worker(&s, &r, "w1", 1, 2, 5);
    submit("j1", "hello", NULL);
    CHECK(ended("j1", 10));
    CHECK(hget_is("j1", "state", "done"));
    CHECK(hget_is("j1", "result", "answer to hello"));
    CHECK(hget_is("j1", "attempts", "1"));
    json_object *evs = events_of("j1");
    CHECK_EQ(json_object_array_length(evs), 3);
    CHECK_STREQ(ev_type(json_object_array_get_idx(evs, 0)), "job_attempt");
    CHECK_STREQ(ev_type(json_object_array_get_idx(evs, 1)), "text_delta");
    CHECK_STREQ(ev_type(json_object_array_get_idx(evs, 2)), "job_end");
    CHECK_EQ(ev_int(json_object_array_get_idx(evs, 2), "seq"), 3);
    CHECK(seqs_increase(evs));
    json_object_put(evs);
    /* The conversation holds the prompt; the stream holds nothing pending. */
    CHECK_EQ(ad_redis_int(CALL("LLEN", "agentd:job:j1:conv"), -1), 1);
    redisReply *p = CALL("XPENDING", "agentd:jobs", "agentd");
    CHECK(p && p->elements >= 1 && p->element[0]->integer == 0);
    CHECK_EQ(ad_redis_int(CALL("XLEN", "agentd:jobs"), -1), 0);
    /* Submitting the same id again changes nothing. */
    submit("j1", "hello", NULL);
    CHECK(got && got->elements == 2 && strcmp(got->element[0]->str, "exists") == 0);
    submit("j1", "another prompt", NULL);
    CHECK(got && got->elements == 2 && strcmp(got->element[0]->str, "conflict") == 0);
    ad_worker_stats st;
    ad_worker_get_stats(w, &st);
    CHECK_EQ(st.taken, 1);
    CHECK_EQ(st.finished, 1);
    free_worker(w);
    teardown(&s);
}

TEST(stale_worker_loses_its_job_and_its_result_is_refused)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    /* A renews every 10 s; B takes over jobs idle for 0.3 s: to B, A looks
     * like a worker that stopped renewing (SIGSTOP, a long pause). */
    runner ra = {.mode = R_HOLD}, rb = {.mode = R_HOLD};
    ad_worker *a = new_worker(&s, &ra, "A", 30, 1, 5);
    submit("j2", "p", NULL);
    CHECK(signalled(&ra, 1, 10));
    ad_worker *b = new_worker(&s, &rb, "B", 0.3, 1, 5);
    CHECK(signalled(&rb, 1, 10));
    CHECK(hget_is("j2", "attempt", "2"));
    CHECK(hget_is("j2", "owner", "B"));
    /* A, unaware, finishes: refused, the job is not ended by it. */
    CHECK_EQ(ra.nheld, 1);
    if (ra.nheld == 1)
        ad_worker_job_finish(ra.held[0], "done", 0, "from A", "");
    ra.nheld = 0;
    bool never = false;
    run_until(&never, 0.3);
    CHECK(hget_is("j2", "state", "running"));
    ad_worker_stats st;
    ad_worker_get_stats(a, &st);
    CHECK_EQ(st.lost, 1);
    CHECK_EQ(st.finished, 0);
    /* B's finish counts. */
    CHECK_EQ(rb.nheld, 1);
    if (rb.nheld == 1)
        ad_worker_job_finish(rb.held[0], "done", 0, "from B", "");
    rb.nheld = 0;
    CHECK(ended("j2", 10));
    CHECK(hget_is("j2", "result", "from B"));
    ad_worker_get_stats(b, &st);
    CHECK_EQ(st.taken_over, 1);
    json_object *evs = events_of("j2");
    CHECK_EQ(count_type(evs, "job_end"), 1);
    CHECK_EQ(count_type(evs, "job_attempt"), 2);
    CHECK(seqs_increase(evs));
    json_object_put(evs);
    free_worker(a);
    free_worker(b);
    teardown(&s);
}

TEST(lost_lease_is_noticed_by_the_heartbeat)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    runner ra = {.mode = R_HOLD}, rb = {.mode = R_HOLD};
    ad_worker *a = new_worker(&s, &ra, "A", 3, 1, 5); /* renews every second */
    submit("j3", "p", NULL);
    CHECK(signalled(&ra, 1, 10));
    ad_worker *b = new_worker(&s, &rb, "B", 0.2, 1, 5);
    CHECK(signalled(&rb, 1, 10));
    /* A's next heartbeat finds the entry B's: A's runner hears lost. */
    uint64_t end = uv_now(&loop) + 10000;
    while (ra.lost == 0 && uv_now(&loop) < end) {
        bool never = false;
        run_until(&never, 0.05);
    }
    CHECK_EQ(ra.lost, 1);
    CHECK_EQ(ra.nheld, 0);
    if (rb.nheld == 1)
        ad_worker_job_finish(rb.held[0], "done", 0, "B", "");
    rb.nheld = 0;
    CHECK(ended("j3", 10));
    free_worker(a);
    free_worker(b);
    teardown(&s);
}

TEST(job_that_never_finishes_is_dead_lettered_with_its_reason)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    submit("j4", "poison", NULL);
    /* Two workers in turn take it and die (freed without a word). */
    for (int i = 0; i < 2; i++) {
        runner r = {.mode = R_HOLD};
        char name[16];
        snprintf(name, sizeof name, "d%d", i);
        ad_worker *w = new_worker(&s, &r, name, 0.2, 1, 2);
        CHECK(signalled(&r, 1, 10));
        r.nheld = 0;
        free_worker(w);
    }
    runner r3 = {.mode = R_HOLD};
    ad_worker *w3 = new_worker(&s, &r3, "d2", 0.2, 1, 2);
    CHECK(ended("j4", 10));
    CHECK_EQ(r3.started, 0);
    CHECK(hget_is("j4", "state", "dead"));
    char *reason = hget("j4", "reason");
    CHECK(reason && strstr(reason, "started 2 times without finishing") &&
          strstr(reason, "worker d1"));
    free(reason);
    CHECK_EQ(ad_redis_int(CALL("XLEN", "agentd:dead"), -1), 1);
    redisReply *p = CALL("XPENDING", "agentd:jobs", "agentd");
    CHECK(p && p->element[0]->integer == 0);
    json_object *evs = events_of("j4");
    CHECK_EQ(count_type(evs, "job_end"), 1);
    CHECK(seqs_increase(evs));
    json_object_put(evs);
    ad_worker_stats st;
    ad_worker_get_stats(w3, &st);
    CHECK_EQ(st.dead, 1);
    free_worker(w3);
    teardown(&s);
}

static void on_drained(void *ud)
{
    *(bool *)ud = true;
}

TEST(stopping_worker_hands_back_and_the_next_takes_it_at_once)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    runner ra = {.mode = R_HOLD}, rb = {.mode = R_FINISH};
    /* A long lease: only a hand-back lets B take the job soon. */
    ad_worker *a = new_worker(&s, &ra, "A", 60, 1, 5);
    submit("j5", "p", NULL);
    CHECK(signalled(&ra, 1, 10));
    ad_worker *b = new_worker(&s, &rb, "B", 60, 1, 5);
    bool drained = false;
    ad_worker_drain(a, 0, on_drained, &drained);
    CHECK(run_until(&drained, 10));
    CHECK_EQ(ra.stopped, 1);
    CHECK(ended("j5", 10));
    CHECK(hget_is("j5", "owner", "B"));
    CHECK(hget_is("j5", "handbacks", "1"));
    CHECK(hget_is("j5", "attempts", "2"));
    json_object *evs = events_of("j5");
    CHECK_EQ(count_type(evs, "job_handback"), 1);
    CHECK_EQ(count_type(evs, "job_end"), 1);
    CHECK(seqs_increase(evs));
    json_object_put(evs);
    free_worker(a);
    free_worker(b);
    teardown(&s);
}

TEST(session_runs_one_job_at_a_time_in_order)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    submit("s1", "first", "sess");
    submit("s2", "second", "sess");
    submit("s3", "third", "sess");
    submit("o1", "other", NULL);
    CHECK(hget_is("s2", "state", "waiting"));
    runner r = {.mode = R_HOLD};
    ad_worker *w = new_worker(&s, &r, "w", 5, 4, 5);
    CHECK(signalled(&r, 2, 10)); /* s1 and o1: s2 waits for s1 */
    bool never = false;
    run_until(&never, 0.3);
    CHECK_EQ(r.started, 2);
    CHECK(strstr(r.order, "s1") && strstr(r.order, "o1") && !strstr(r.order, "s2"));
    /* Each finish of the session's job lets its next one start. */
    const char *seq[] = {"s1", "s2", "s3", "o1"};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < r.nheld; i++) {
            if (strcmp(ad_worker_job_id(r.held[i]), seq[k]) != 0)
                continue;
            ad_worker_job *j = r.held[i];
            r.held[i] = r.held[--r.nheld];
            ad_worker_job_finish(j, "done", 0, "ok", "");
            break;
        }
        if (k < 2)
            CHECK(signalled(&r, 3 + k, 10));
    }
    CHECK(ended("s3", 10));
    CHECK(strstr(r.order, "s1 ") < strstr(r.order, "s2 ") &&
          strstr(r.order, "s2 ") < strstr(r.order, "s3 "));
    CHECK_EQ(ad_redis_int(CALL("EXISTS", "agentd:session:sess:active"), -1), 0);
    free_worker(w);
    teardown(&s);
}

TEST(append_checks_length_and_lease)
{
    rsrv s;
    if (!setup(&s, false))
        SKIP(rsrv_why);
    runner r = {.mode = R_HOLD};
    ad_worker *w = new_worker(&s, &r, "w", 5, 1, 5);
    submit("j6", "p", "sx");
    CHECK(signalled(&r, 1, 10));
    ad_worker_job *j = r.held[0];
    r.append_result = -1;
    const char *fields[] = {"0:call_1"};
    ad_worker_job_append(j, "{\"role\":\"user\",\"content\":\"p\"}", 29, fields, 1, on_appended, j);
    /* on_appended finishes the job: wait for that. */
    CHECK(ended("j6", 10));
    CHECK_EQ(r.append_result, AD_WORKER_OK);
    redisReply *l = CALL("HGET", "agentd:job:j6:ledger", "0:call_1");
    CHECK(l && l->str && strstr(l->str, "\"started\""));
    /* Someone else appended to the session behind the next job's back:
     * its append (expecting 1 message) is refused and the attempt lost. */
    submit("j7", "q", "sx");
    CHECK(signalled(&r, 2, 10));
    /* j6 left the runner when it was finished: j7 is the one it holds,
     * whether it started before the submission's reply or after. */
    CHECK_EQ(r.nheld, 1);
    CALL("RPUSH", "agentd:session:sx", "{\"role\":\"user\",\"content\":\"intruder\"}");
    j = r.held[0];
    CHECK_STREQ(ad_worker_job_id(j), "j7");
    ad_worker_job_append(j, "{\"role\":\"user\",\"content\":\"q\"}", 29, NULL, 0, on_appended, j);
    uint64_t end = uv_now(&loop) + 10000;
    while (r.lost == 0 && uv_now(&loop) < end) {
        bool never = false;
        run_until(&never, 0.05);
    }
    CHECK_EQ(r.lost, 1);
    CHECK_EQ(r.append_result, AD_WORKER_LOST);
    free_worker(w);
    teardown(&s);
}

TEST(redis_restart_from_aof_loses_no_job)
{
    rsrv s;
    if (!setup(&s, true))
        SKIP(rsrv_why);
    runner r = {.mode = R_HOLD};
    ad_worker *w = new_worker(&s, &r, "w", 2, 2, 5);
    submit("k1", "a", NULL);
    CHECK(signalled(&r, 1, 10));
    /* Killed (nothing saved at exit) and started again from its AOF. */
    rsrv_kill(&s);
    submit_nowait("k2", "b", NULL); /* waits in the client until Redis is back */
    bool never = false;
    run_until(&never, 0.3);
    CHECK(!got_done);
    CHECK(rsrv_run(&s));
    CHECK(run_until(&got_done, 20));
    CHECK(signalled(&r, 2, 20));
    for (int i = 0; i < r.nheld; i++)
        ad_worker_job_finish(r.held[i], "done", 0, "ok", "");
    r.nheld = 0;
    CHECK(ended("k1", 20));
    CHECK(ended("k2", 20));
    CHECK(hget_is("k1", "attempts", "1"));
    redisReply *p = CALL("XPENDING", "agentd:jobs", "agentd");
    CHECK(p && p->element[0]->integer == 0);
    free_worker(w);
    teardown(&s);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(job_ends_once_with_numbered_events);
    RUN(stale_worker_loses_its_job_and_its_result_is_refused);
    RUN(lost_lease_is_noticed_by_the_heartbeat);
    RUN(job_that_never_finishes_is_dead_lettered_with_its_reason);
    RUN(stopping_worker_hands_back_and_the_next_takes_it_at_once);
    RUN(session_runs_one_job_at_a_time_in_order);
    RUN(append_checks_length_and_lease);
    RUN(redis_restart_from_aof_loses_no_job);
    return harness_report("test_worker");
}

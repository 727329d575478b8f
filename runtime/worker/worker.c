/*
 * worker.c -- the Redis side of a worker (see worker.h).
 *
 * Jobs the worker holds are on `jobs` (each counts against concurrency)
 * from the moment their entry is ours until their outcome is sent: BEGIN
 * (the script is on its way), RUN (the runner has it). A job also lives on
 * while requests about it wait for their replies: every request holds a
 * reference, and so does the list.
 *
 * Events of a job are numbered as they are made (seq, from 1 per attempt)
 * and sent in batches: one batch at a time while the job runs, so that
 * events made while a batch is on its way go together in the next one.
 */
#include "worker/worker.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "worker/queue.h"

enum { J_BEGIN, J_RUN, J_END };

typedef struct evq {
    char **v;
    size_t *lens;
    size_t n, cap;
    unsigned first; /* seq of v[0] */
} evq;

struct ad_worker_job {
    ad_worker *w;
    int refs;
    int state;
    bool held; /* on w->jobs */
    bool detached; /* the runner let go of it: none of its callbacks is called */
    bool taken_over;
    char *id, *entry;
    char k_job[AD_Q_KEY_MAX];
    int attempt;
    char attempt_s[16];
    size_t base;
    char *prompt, *session;
    json_object *messages;
    size_t conv_len;  /* committed */
    size_t conv_next; /* the length the next append expects */
    unsigned seq;     /* the last seq given out */
    evq ev;
    bool ev_busy;  /* a batch is on its way */
    bool flushing; /* inside the runner's flush hook */
    void (*flush)(void *ud, ad_worker_job *j);
    void *flush_ud;
    void *data;
    ad_worker_job *prev, *next;
};

struct ad_worker {
    uv_loop_t *loop;
    ad_redis_url url;
    char *prefix, *group, *consumer;
    char k_stream[AD_Q_KEY_MAX], k_dead[AD_Q_KEY_MAX];
    int concurrency;
    uint64_t lease_ms;
    int max_deliveries;
    long keep_s;
    uint64_t block_ms;
    ad_worker_runner runner;
    void *rud;
    ad_worker_log_fn log;
    void *log_ud;

    ad_redis *cmd, *rd;
    bool reading, reaping, scanning;
    uint64_t reap_after; /* uv_now: no taking over before (after a reconnection) */
    char cursor[64];     /* XAUTOCLAIM's */
    unsigned reaps;

    ad_worker_job *jobs;
    size_t njobs;
    ad_worker_stats st;

    uv_timer_t beat, reap, grace, again;
    int open_handles;
    bool draining, stopping_jobs, drained_told;
    void (*drained)(void *ud);
    void *drained_ud;
    uint64_t drain_deadline;
    bool freeing;
};

static void read_more(ad_worker *w);
static void on_again(uv_timer_t *t);
static void maybe_drained(ad_worker *w);
static void abandon_jobs(ad_worker *w);
static void take(ad_worker *w, const char *entry, const char *id, bool taken_over);

static void logf_(ad_worker *w, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(ad_worker *w, int level, const char *fmt, ...)
{
    if (!w->log)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->log(w->log_ud, level, msg);
}

/* ---- the debug hook ----------------------------------------------------- */

void ad_worker_stop_point(const char *point, const char *job)
{
    static bool done;
    const char *want = getenv("AGENTD_WORKER_STOP_AT");
    if (done || !want || !want[0])
        return;
    const char *at = strchr(want, '@');
    size_t pl = at ? (size_t)(at - want) : strlen(want);
    if (strlen(point) != pl || strncmp(want, point, pl) != 0)
        return;
    if (at && (!job || strcmp(at + 1, job) != 0))
        return;
    done = true;
    fprintf(stderr, "agentd: worker: stopped at %s (job %s)\n", point, job ? job : "-");
    fflush(stderr);
    raise(SIGSTOP);
}

/* ---- jobs --------------------------------------------------------------- */

static void evq_clear(evq *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[i]);
    q->n = 0;
}

static void job_unref(ad_worker_job *j)
{
    if (--j->refs > 0)
        return;
    evq_clear(&j->ev);
    free(j->ev.v);
    free(j->ev.lens);
    free(j->id);
    free(j->entry);
    free(j->prompt);
    free(j->session);
    json_object_put(j->messages);
    free(j);
}

/* Off the list: its slot is free again. */
static void job_release(ad_worker_job *j)
{
    ad_worker *w = j->w;
    if (!j->held)
        return;
    j->held = false;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
    w->njobs--;
    job_unref(j);
    read_more(w);
    maybe_drained(w);
}

static ad_worker_job *job_find(ad_worker *w, const char *entry)
{
    for (ad_worker_job *j = w->jobs; j; j = j->next)
        if (strcmp(j->entry, entry) == 0)
            return j;
    return NULL;
}

/* The lease is gone: the runner stops, nothing more of the attempt counts. */
static void job_lost(ad_worker_job *j, const char *why)
{
    if (j->state != J_RUN)
        return;
    ad_worker *w = j->w;
    j->state = J_END;
    j->detached = true;
    w->st.lost++;
    logf_(w, AD_WORKER_WARN, "job %s: attempt %d lost its lease (%s); what it does from now on is "
                             "dropped, the worker that took it over ends it",
          j->id, j->attempt, why);
    j->refs++;
    if (w->runner.lost)
        w->runner.lost(w->rud, j);
    job_release(j);
    job_unref(j);
}

/* A request about j: it holds a reference until its reply. */
typedef struct jreq {
    ad_worker_job *j;
    ad_worker_done_fn cb;
    void *ud;
    void (*ledger_cb)(void *ud, json_object *ledger);
    void (*put_cb)(void *ud, int result, bool created);
    size_t nevents;
} jreq;

static jreq *jreq_new(ad_worker_job *j)
{
    jreq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->j = j;
    j->refs++;
    return q;
}

static void jreq_free(jreq *q)
{
    job_unref(q->j);
    free(q);
}

/* argv builder */
typedef struct args {
    const char *v[64];
    size_t l[64];
    int n;
    char num[8][24];
    int nnum;
} args;

static void arg(args *a, const char *s)
{
    if (a->n < 64) {
        a->v[a->n] = s;
        a->l[a->n++] = strlen(s);
    }
}

static void argn(args *a, const char *s, size_t n)
{
    if (a->n < 64) {
        a->v[a->n] = s;
        a->l[a->n++] = n;
    }
}

static void argi(args *a, long long v)
{
    if (a->nnum < 8) {
        snprintf(a->num[a->nnum], sizeof a->num[0], "%lld", v);
        arg(a, a->num[a->nnum++]);
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int eval(ad_worker *w, int script, unsigned flags, ad_redis_reply_fn fn, void *ud, int nkeys,
                args *a)
{
    return ad_redis_eval(w->cmd, ad_q_scripts[script], flags, fn, ud, nkeys, a->n, a->v, a->l);
}

/* Sends request q (NULL: out of memory) about its job; false when it could
 * not be sent, and q is freed. */
static bool job_eval(jreq *q, int script, unsigned flags, ad_redis_reply_fn fn, int nkeys,
                     args *a)
{
    if (!q)
        return false;
    if (eval(q->j->w, script, flags, fn, q, nkeys, a) != AD_OK) {
        jreq_free(q);
        return false;
    }
    return true;
}

/* The keys of a job's script (the stream, the job). */
static void job_keys(args *a, const ad_worker_job *j)
{
    arg(a, j->w->k_stream);
    arg(a, j->k_job);
}

/* The lease a script checks: the group, this worker, the entry, the
 * attempt ("": none begun). */
static void lease_args(args *a, const ad_worker_job *j, const char *attempt)
{
    arg(a, j->w->group);
    arg(a, j->w->consumer);
    arg(a, j->entry);
    arg(a, attempt);
}

/* ---- events ------------------------------------------------------------- */

static void send_events(ad_worker_job *j, bool force);

static void on_events(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker_job *j = q->j;
    j->ev_busy = false;
    if (r && ad_redis_is(r, "lost"))
        job_lost(j, "its events were refused");
    else if (r && r->type == REDIS_REPLY_ERROR)
        logf_(j->w, AD_WORKER_ERROR, "job %s: storing events failed: %s", j->id, r->str);
    if (j->state == J_RUN)
        send_events(j, false);
    jreq_free(q);
}

/* Sends what waits: one batch at a time while the job runs (force: now,
 * also with one on its way, as the attempt ends). */
static void send_events(ad_worker_job *j, bool force)
{
    if (j->ev_busy && !force)
        return;
    if (j->flush && !j->flushing && j->state == J_RUN) {
        j->flushing = true;
        j->flush(j->flush_ud, j);
        j->flushing = false;
    }
    ad_worker *w = j->w;
    while (j->ev.n) {
        args a = {.n = 0};
        job_keys(&a, j);
        lease_args(&a, j, j->attempt_s);
        argi(&a, j->ev.first);
        size_t k = 0;
        while (k < j->ev.n && a.n < 64)
            argn(&a, j->ev.v[k], j->ev.lens[k]), k++;
        if (!job_eval(jreq_new(j), AD_Q_EVENTS, AD_REDIS_RETRY, on_events, 2, &a)) {
            logf_(w, AD_WORKER_ERROR, "job %s: cannot send its events", j->id);
            evq_clear(&j->ev);
            return;
        }
        j->ev_busy = true;
        for (size_t i = 0; i < k; i++)
            free(j->ev.v[i]);
        memmove(j->ev.v, j->ev.v + k, (j->ev.n - k) * sizeof *j->ev.v);
        memmove(j->ev.lens, j->ev.lens + k, (j->ev.n - k) * sizeof *j->ev.lens);
        j->ev.n -= k;
        j->ev.first += (unsigned)k;
        if (!force)
            return;
    }
}

/* Numbers an event and queues it. */
static void push_event(ad_worker_job *j, const char *open, size_t len)
{
    evq *q = &j->ev;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        char **v = realloc(q->v, cap * sizeof *v);
        if (v)
            q->v = v;
        size_t *l = realloc(q->lens, cap * sizeof *l);
        if (l)
            q->lens = l;
        if (!v || !l)
            return;
        q->cap = cap;
    }
    unsigned seq = ++j->seq;
    if (q->n == 0)
        q->first = seq;
    ad_buf b = AD_BUF_INIT;
    ad_buf_append(&b, open, len);
    ad_buf_printf(&b, ",\"attempt\":%d,\"seq\":%u}", j->attempt, seq);
    if (!b.data) {
        j->seq--;
        return;
    }
    q->lens[q->n] = b.len;
    q->v[q->n++] = ad_buf_steal(&b);
}

void ad_worker_job_event(ad_worker_job *j, const char *json_open, size_t len)
{
    if (j->state != J_RUN)
        return;
    push_event(j, json_open, len);
    if (!j->flushing)
        send_events(j, false);
}

void ad_worker_job_set_flush(ad_worker_job *j, void (*flush)(void *ud, ad_worker_job *j),
                             void *ud)
{
    j->flush = flush;
    j->flush_ud = ud;
}

/* ---- the runner's requests ---------------------------------------------- */

static int reply_result(ad_worker_job *j, redisReply *r, const char *what)
{
    if (!r)
        return AD_WORKER_FAILED;
    redisReply *s = r->type == REDIS_REPLY_ARRAY ? ad_redis_at(r, 0) : r;
    if (ad_redis_is(s, "ok"))
        return AD_WORKER_OK;
    if (ad_redis_is(s, "lost"))
        return AD_WORKER_LOST;
    if (ad_redis_is(s, "conflict")) {
        logf_(j->w, AD_WORKER_ERROR,
              "job %s: the conversation changed under it (%s expected %zu messages, found %lld); "
              "it stops here",
              j->id, what, j->conv_next ? j->conv_next - 1 : 0,
              ad_redis_int(ad_redis_at(r, 1), -1));
        return AD_WORKER_LOST;
    }
    logf_(j->w, AD_WORKER_ERROR, "job %s: %s failed: %s", j->id, what, ad_redis_reply_error(r));
    return AD_WORKER_LOST;
}

static void on_append(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker_job *j = q->j;
    int res = j->state == J_RUN ? reply_result(j, r, "appending a message") : AD_WORKER_LOST;
    if (res == AD_WORKER_OK) {
        long long n = ad_redis_int(ad_redis_at(r, 1), -1);
        if (n > 0 && (size_t)n > j->conv_len)
            j->conv_len = (size_t)n;
    }
    if (q->cb && !j->detached)
        q->cb(q->ud, res);
    if (res == AD_WORKER_LOST)
        job_lost(j, "its message was refused");
    jreq_free(q);
}

void ad_worker_job_append(ad_worker_job *j, const char *msg, size_t len,
                          const char *const *fields, size_t nfields, ad_worker_done_fn cb,
                          void *ud)
{
    args a = {.n = 0};
    job_keys(&a, j);
    lease_args(&a, j, j->attempt_s);
    argi(&a, (long long)j->conv_next);
    argn(&a, msg, len);
    for (size_t i = 0; i < nfields && a.n < 64; i++)
        arg(&a, fields[i]);
    jreq *q = jreq_new(j);
    if (!q) {
        if (cb)
            cb(ud, AD_WORKER_FAILED);
        return;
    }
    q->cb = cb;
    q->ud = ud;
    j->conv_next++;
    if (j->state != J_RUN) {
        jreq_free(q);
        q = NULL;
    }
    if (!job_eval(q, AD_Q_APPEND, AD_REDIS_RETRY, on_append, 2, &a) && cb)
        cb(ud, AD_WORKER_FAILED);
}

static void on_ledger(void *ud, redisReply *r)
{
    jreq *q = ud;
    json_object *o = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        o = json_object_new_object();
        for (size_t i = 0; o && i + 1 < r->elements; i += 2) {
            size_t fl, vl;
            const char *f = ad_redis_str(r->element[i], &fl);
            const char *v = ad_redis_str(r->element[i + 1], &vl);
            if (f && v)
                json_object_object_add(o, f, json_object_new_string_len(v, (int)vl));
        }
    }
    if (!q->j->detached)
        q->ledger_cb(q->ud, o);
    else
        json_object_put(o);
    jreq_free(q);
}

void ad_worker_job_ledger(ad_worker_job *j, void (*cb)(void *ud, json_object *ledger), void *ud)
{
    char key[AD_Q_KEY_MAX];
    ad_q_ledger(key, j->w->prefix, j->id);
    const char *argv[2] = {"HGETALL", key};
    jreq *q = jreq_new(j);
    if (!q) {
        cb(ud, NULL);
        return;
    }
    q->ledger_cb = cb;
    q->ud = ud;
    if (ad_redis_command(j->w->cmd, AD_REDIS_RETRY, on_ledger, q, 2, argv, NULL) != AD_OK) {
        cb(ud, NULL);
        jreq_free(q);
    }
}

static void on_put(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker_job *j = q->j;
    int res = j->state == J_RUN ? reply_result(j, r, "writing the ledger") : AD_WORKER_LOST;
    bool created = res == AD_WORKER_OK && ad_redis_int(ad_redis_at(r, 1), 0) == 1;
    if (!j->detached && q->put_cb)
        q->put_cb(q->ud, res, created);
    if (res == AD_WORKER_LOST)
        job_lost(j, "its ledger write was refused");
    jreq_free(q);
}

void ad_worker_job_ledger_put(ad_worker_job *j, const char *field, const char *value, bool nx,
                              void (*cb)(void *ud, int result, bool created), void *ud)
{
    args a = {.n = 0};
    job_keys(&a, j);
    lease_args(&a, j, j->attempt_s);
    arg(&a, field);
    arg(&a, value);
    arg(&a, nx ? "nx" : "set");
    jreq *q = jreq_new(j);
    if (!q) {
        if (cb)
            cb(ud, AD_WORKER_FAILED, false);
        return;
    }
    q->put_cb = cb;
    q->ud = ud;
    if (j->state != J_RUN) {
        jreq_free(q);
        q = NULL;
    }
    if (!job_eval(q, AD_Q_LEDGER, AD_REDIS_RETRY, on_put, 2, &a) && cb)
        cb(ud, AD_WORKER_FAILED, false);
}

/* ---- ending an attempt -------------------------------------------------- */

static void on_finish(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker_job *j = q->j;
    ad_worker *w = j->w;
    if (r && ad_redis_is(r, "ok")) {
        w->st.finished++;
    } else if (r && ad_redis_is(r, "lost")) {
        w->st.lost++;
        logf_(w, AD_WORKER_WARN, "job %s: attempt %d was taken over before it could finish; its "
                                 "result was dropped",
              j->id, j->attempt);
    } else {
        logf_(w, AD_WORKER_ERROR, "job %s: storing its result failed: %s; another worker will "
                                  "take it over",
              j->id, ad_redis_reply_error(r));
    }
    jreq_free(q);
    maybe_drained(w);
}

void ad_worker_job_finish(ad_worker_job *j, const char *state, int status, const char *result,
                          const char *error)
{
    ad_worker *w = j->w;
    if (j->state != J_RUN)
        return;
    ad_worker_stop_point("before_ack", j->id);
    send_events(j, true);
    j->state = J_END;
    j->detached = true;
    args a = {.n = 0};
    job_keys(&a, j);
    arg(&a, w->prefix);
    lease_args(&a, j, j->attempt_s);
    arg(&a, state);
    argi(&a, status);
    arg(&a, result ? result : "");
    arg(&a, error ? error : "");
    argi(&a, now_ms());
    argi(&a, w->keep_s);
    argi(&a, (long long)j->seq + 1);
    if (!job_eval(jreq_new(j), AD_Q_FINISH, AD_REDIS_RETRY, on_finish, 2, &a))
        logf_(w, AD_WORKER_ERROR, "job %s: cannot send its result", j->id);
    job_release(j);
}

static void on_handback(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker *w = q->j->w;
    if (r && ad_redis_is(r, "ok"))
        w->st.handed_back++;
    else if (r && !ad_redis_is(r, "lost"))
        logf_(w, AD_WORKER_ERROR, "job %s: handing it back failed: %s", q->j->id,
              ad_redis_reply_error(r));
    jreq_free(q);
    maybe_drained(w);
}

static void send_handback(ad_worker_job *j, bool begun, const char *reason)
{
    args a = {.n = 0};
    job_keys(&a, j);
    lease_args(&a, j, begun ? j->attempt_s : "");
    argi(&a, (long long)j->seq + 1);
    arg(&a, reason);
    job_eval(jreq_new(j), AD_Q_HANDBACK, AD_REDIS_RETRY, on_handback, 2, &a);
}

void ad_worker_job_handback(ad_worker_job *j, const char *reason)
{
    if (j->state != J_RUN)
        return;
    send_events(j, true);
    j->state = J_END;
    j->detached = true;
    send_handback(j, true, reason);
    job_release(j);
}

/* ---- beginning an attempt ----------------------------------------------- */

static json_object *parse_messages(redisReply *arr, size_t *bad)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; a && arr && i < arr->elements; i++) {
        size_t n;
        const char *s = ad_redis_str(arr->element[i], &n);
        json_tokener *tok = json_tokener_new();
        json_object *m = s && tok ? json_tokener_parse_ex(tok, s, (int)n) : NULL;
        bool whole = m && tok && json_tokener_get_error(tok) == json_tokener_success &&
                     (size_t)json_tokener_get_parse_end(tok) == n &&
                     json_object_is_type(m, json_type_object);
        json_tokener_free(tok);
        if (!whole) {
            json_object_put(m);
            json_object_put(a);
            *bad = i;
            return NULL;
        }
        json_object_array_add(a, m);
    }
    return a;
}

static char *dup_str(redisReply *r)
{
    size_t n;
    const char *s = ad_redis_str(r, &n);
    return ad_strndup(s ? s : "", s ? n : 0);
}

static void on_begin(void *ud, redisReply *r)
{
    jreq *q = ud;
    ad_worker_job *j = q->j;
    ad_worker *w = j->w;
    redisReply *kind = ad_redis_at(r, 0);
    if (w->freeing) {
        jreq_free(q);
        return;
    }
    if (ad_redis_is(kind, "run") && r->elements >= 7) {
        j->attempt = (int)ad_redis_int(r->element[1], 0);
        snprintf(j->attempt_s, sizeof j->attempt_s, "%d", j->attempt);
        long long base = ad_redis_int(r->element[2], 0);
        j->base = base > 0 ? (size_t)base : 0;
        j->prompt = dup_str(r->element[3]);
        j->session = dup_str(r->element[4]);
        size_t bad = 0;
        j->messages = parse_messages(r->element[6], &bad);
        j->conv_len = j->conv_next = r->element[6]->elements;
        if (!j->prompt || !j->session) {
            logf_(w, AD_WORKER_ERROR, "job %s: out of memory", j->id);
            job_release(j);
        } else {
            j->state = J_RUN;
            w->st.taken++;
            if (j->taken_over)
                w->st.taken_over++;
            ad_worker_stop_point("begun", j->id);
            ad_buf b = AD_BUF_INIT;
            ad_buf_printf(&b, "{\"type\":\"job_attempt\",\"worker\":\"%s\",\"resumed_from\":%zu",
                          w->consumer, j->conv_len > j->base ? j->conv_len - j->base : 0);
            if (b.data)
                ad_worker_job_event(j, b.data, b.len);
            ad_buf_free(&b);
            if (!j->messages) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "the conversation in Redis holds a malformed message at index %zu", bad);
                logf_(w, AD_WORKER_ERROR, "job %s: %s", j->id, msg);
                ad_worker_job_finish(j, "failed", 1, "", msg);
            } else {
                w->runner.start(w->rud, j);
            }
        }
    } else if (ad_redis_is(kind, "dead")) {
        w->st.dead++;
        size_t n;
        const char *why = ad_redis_str(ad_redis_at(r, 1), &n);
        logf_(w, AD_WORKER_WARN, "job %s: dead-lettered: %.*s", j->id, (int)n, why ? why : "");
        job_release(j);
    } else if (ad_redis_is(kind, "stale") || ad_redis_is(kind, "gone") ||
               ad_redis_is(kind, "lost")) {
        job_release(j); /* ended, replaced, or taken by another worker meanwhile */
    } else {
        /* The entry stays ours and pending: it is taken over after the
         * lease, by this worker or another. */
        logf_(w, AD_WORKER_ERROR, "job %s: starting it failed: %s", j->id, ad_redis_reply_error(r));
        job_release(j);
    }
    jreq_free(q);
}

static void take(ad_worker *w, const char *entry, const char *id, bool taken_over)
{
    if (job_find(w, entry))
        return;
    ad_worker_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->w = w;
    j->refs = 1;
    j->held = true;
    j->state = J_BEGIN;
    j->taken_over = taken_over;
    j->id = ad_strdup(id);
    j->entry = ad_strdup(entry);
    if (!j->id || !j->entry) {
        job_unref(j);
        return;
    }
    ad_q_job(j->k_job, w->prefix, id);
    j->next = w->jobs;
    if (w->jobs)
        w->jobs->prev = j;
    w->jobs = j;
    w->njobs++;
    if (w->draining || !ad_q_valid_id(id)) {
        /* Not ours to run now: straight back to the stream (an entry with
         * a bad id is acknowledged and dropped by the script). */
        send_handback(j, false, "the worker is stopping");
        job_release(j);
        return;
    }
    char k_dead[AD_Q_KEY_MAX];
    args a = {.n = 0};
    arg(&a, w->k_stream);
    arg(&a, j->k_job);
    arg(&a, ad_q_dead(k_dead, w->prefix));
    arg(&a, w->prefix);
    arg(&a, w->group);
    arg(&a, w->consumer);
    arg(&a, entry);
    argi(&a, now_ms());
    argi(&a, w->max_deliveries);
    argi(&a, w->keep_s);
    if (!job_eval(jreq_new(j), AD_Q_BEGIN, AD_REDIS_RETRY, on_begin, 3, &a))
        job_release(j);
}

/* Entries of a stream reply: [[id, [field, value, ...]], ...]. */
static void take_entries(ad_worker *w, redisReply *entries, bool taken_over)
{
    for (size_t i = 0; entries && entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        const char *entry = ad_redis_str(ad_redis_at(e, 0), NULL);
        redisReply *f = ad_redis_at(e, 1);
        const char *id = NULL;
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
            if (ad_redis_is(f->element[k], "job"))
                id = ad_redis_str(f->element[k + 1], NULL);
        if (entry && id)
            take(w, entry, id, taken_over);
    }
}

/* ---- reading, renewing, taking over ------------------------------------- */

static void on_group(void *ud, redisReply *r)
{
    ad_worker *w = ud;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        logf_(w, AD_WORKER_ERROR, "creating the consumer group %s failed: %s", w->group, r->str);
    read_more(w);
}

static void create_group(ad_worker *w)
{
    /* From the start of the stream: jobs submitted before the first worker
     * ran are taken too. */
    const char *argv[] = {"XGROUP", "CREATE", w->k_stream, w->group, "0", "MKSTREAM"};
    ad_redis_command(w->cmd, AD_REDIS_RETRY, on_group, w, 6, argv, NULL);
}

static void on_read(void *ud, redisReply *r)
{
    ad_worker *w = ud;
    w->reading = false;
    if (w->freeing)
        return;
    if (!r) {
        /* The reader's connection was lost; it reads again once it is back. */
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "NOGROUP", 7) == 0) {
            create_group(w); /* reads again when created */
            return;
        }
        logf_(w, AD_WORKER_ERROR, "reading jobs failed: %s", r->str);
        uv_timer_start(&w->again, on_again, 1000, 0);
        return;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++)
            take_entries(w, ad_redis_at(r->element[i], 1), false);
    }
    if (w->draining)
        maybe_drained(w);
    else
        read_more(w);
}

static void read_more(ad_worker *w)
{
    if (w->freeing || w->draining || w->reading || !ad_redis_up(w->rd))
        return;
    long free_slots = (long)w->concurrency - (long)w->njobs;
    if (free_slots <= 0)
        return;
    char count[24], block[24];
    snprintf(count, sizeof count, "%ld", free_slots);
    snprintf(block, sizeof block, "%llu", (unsigned long long)w->block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", w->group, w->consumer, "COUNT", count,
                          "BLOCK",      block,   "STREAMS", w->k_stream, ">"};
    if (ad_redis_command(w->rd, 0, on_read, w, 11, argv, NULL) == AD_OK)
        w->reading = true;
}

static void on_again(uv_timer_t *t)
{
    read_more(t->data);
}

typedef struct beat {
    ad_worker *w;
    size_t n;
    char **entries;
} beat;

static void on_beat(void *ud, redisReply *r)
{
    beat *b = ud;
    ad_worker *w = b->w;
    if (!w->freeing && r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < b->n && i < r->elements; i++) {
            if (ad_redis_int(r->element[i], 1) != 0)
                continue;
            ad_worker_job *j = job_find(w, b->entries[i]);
            if (j && j->state == J_RUN)
                job_lost(j, "its heartbeat found another owner");
        }
    }
    for (size_t i = 0; i < b->n; i++)
        free(b->entries[i]);
    free(b->entries);
    free(b);
}

static void heartbeat(ad_worker *w)
{
    if (!w->njobs || !ad_redis_up(w->cmd))
        return;
    beat *b = calloc(1, sizeof *b);
    size_t n = w->njobs;
    const char **argv = calloc(n + 4, sizeof *argv);
    if (b)
        b->entries = calloc(n, sizeof *b->entries);
    if (!b || !argv || !b->entries) {
        free(argv);
        if (b)
            free(b->entries);
        free(b);
        return;
    }
    b->w = w;
    int argc = 0;
    argv[argc++] = w->k_stream;
    argv[argc++] = w->group;
    argv[argc++] = w->consumer;
    for (ad_worker_job *j = w->jobs; j && b->n < n; j = j->next) {
        if (j->state == J_END || !(b->entries[b->n] = ad_strdup(j->entry)))
            continue;
        argv[argc++] = b->entries[b->n++];
    }
    /* Not sent again after a lost connection: the next beat is fresher. */
    if (ad_redis_eval(w->cmd, ad_q_scripts[AD_Q_HEARTBEAT], 0, on_beat, b, 1, argc, argv, NULL) !=
        AD_OK)
        on_beat(b, NULL);
    free(argv);
}

static void on_beat_timer(uv_timer_t *t)
{
    heartbeat(t->data);
}

static void on_cleanup(void *ud, redisReply *r)
{
    ad_worker *w = ud;
    long long n = ad_redis_int(r, 0);
    if (n > 0 && !w->freeing)
        logf_(w, AD_WORKER_INFO, "removed %lld consumer(s) of workers that are gone", n);
}

static void on_claim(void *ud, redisReply *r)
{
    ad_worker *w = ud;
    w->reaping = false;
    if (w->freeing || !r)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "NOGROUP", 7) == 0)
            create_group(w);
        else
            logf_(w, AD_WORKER_ERROR, "taking over jobs failed: %s", r->str);
        return;
    }
    size_t n;
    const char *cur = ad_redis_str(ad_redis_at(r, 0), &n);
    if (cur && n < sizeof w->cursor) {
        memcpy(w->cursor, cur, n);
        w->cursor[n] = '\0';
    }
    if (!w->draining)
        take_entries(w, ad_redis_at(r, 1), true);
}

static void reap(ad_worker *w)
{
    if (w->draining || w->reaping || !ad_redis_up(w->cmd) || uv_now(w->loop) < w->reap_after)
        return;
    long free_slots = (long)w->concurrency - (long)w->njobs;
    if (free_slots <= 0)
        return;
    char idle[24], count[24];
    snprintf(idle, sizeof idle, "%llu", (unsigned long long)w->lease_ms);
    snprintf(count, sizeof count, "%ld", free_slots);
    const char *argv[] = {"XAUTOCLAIM", w->k_stream, w->group, w->consumer,
                          idle,         w->cursor,   "COUNT",  count};
    if (ad_redis_command(w->cmd, 0, on_claim, w, 8, argv, NULL) == AD_OK)
        w->reaping = true;
    if (++w->reaps % 64 == 0) {
        /* Consumers of dead workers own nothing once their jobs were taken
         * over; they are removed after a while (XINFO stays readable). */
        uint64_t ms = w->lease_ms * 10 > 60000 ? w->lease_ms * 10 : 60000;
        char ims[24];
        snprintf(ims, sizeof ims, "%llu", (unsigned long long)ms);
        const char *c[] = {w->k_stream, w->group, ims, w->consumer};
        ad_redis_eval(w->cmd, ad_q_scripts[AD_Q_CLEANUP], 0, on_cleanup, w, 1, 4, c, NULL);
    }
}

static void on_reap_timer(uv_timer_t *t)
{
    reap(t->data);
}

/* This worker's own pending entries (XREADGROUP with id 0): entries it got
 * while a reply was lost are found and run. */
static void on_scan(void *ud, redisReply *r)
{
    ad_worker *w = ud;
    w->scanning = false;
    if (w->freeing || !r || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < r->elements; i++)
        take_entries(w, ad_redis_at(r->element[i], 1), false);
}

static void scan_own(ad_worker *w)
{
    if (w->scanning)
        return;
    const char *argv[] = {"XREADGROUP", "GROUP", w->group, w->consumer, "COUNT", "1000",
                          "STREAMS",    w->k_stream, "0"};
    if (ad_redis_command(w->cmd, 0, on_scan, w, 9, argv, NULL) == AD_OK)
        w->scanning = true;
}

static void on_cmd_state(void *ud, bool up, const char *why)
{
    ad_worker *w = ud;
    if (w->freeing)
        return;
    if (!up) {
        logf_(w, AD_WORKER_WARN, "redis: %s; reconnecting (running jobs go on, their writes "
                                 "wait)",
              why ? why : "connection lost");
        return;
    }
    logf_(w, AD_WORKER_INFO, "redis: connected to %s as %s", w->url.shown, w->consumer);
    w->reap_after = uv_now(w->loop) + w->lease_ms;
    create_group(w);
    heartbeat(w);
    scan_own(w);
}

static void on_rd_state(void *ud, bool up, const char *why)
{
    ad_worker *w = ud;
    (void)why;
    if (up && !w->freeing)
        read_more(w);
}

/* ---- draining ----------------------------------------------------------- */

static void maybe_drained(ad_worker *w)
{
    if (!w->draining || w->drained_told || w->freeing)
        return;
    bool quiet = w->njobs == 0 && !w->reading && ad_redis_pending(w->cmd) == 0;
    if (!quiet && uv_now(w->loop) < w->drain_deadline)
        return;
    if (!quiet) {
        logf_(w, AD_WORKER_WARN, "stopping with %zu job(s) and %zu request(s) to Redis "
                                 "unanswered; those jobs are taken over after the lease",
              w->njobs, ad_redis_pending(w->cmd));
        w->drained_told = true; /* abandon_jobs comes back here */
        abandon_jobs(w);
    }
    w->drained_told = true;
    uv_timer_stop(&w->grace);
    if (w->drained)
        w->drained(w->drained_ud);
}

/* Asks the runner to end every running job (each may leave the list). */
static void stop_jobs(ad_worker *w)
{
    w->stopping_jobs = true;
    size_t n = 0;
    ad_worker_job **v = calloc(w->njobs + 1, sizeof *v);
    for (ad_worker_job *j = w->jobs; v && j; j = j->next)
        if (j->state == J_RUN) {
            j->refs++;
            v[n++] = j;
        }
    for (size_t i = 0; i < n; i++) {
        if (v[i]->state == J_RUN && w->runner.stop)
            w->runner.stop(w->rud, v[i]);
        job_unref(v[i]);
    }
    free(v);
}

/* Past the deadline: what still runs is abandoned as by a crash (taken
 * over after the lease). */
static void abandon_jobs(ad_worker *w)
{
    while (w->jobs) {
        ad_worker_job *j = w->jobs;
        j->refs++;
        if (j->state == J_RUN) {
            j->state = J_END;
            j->detached = true;
            if (w->runner.lost)
                w->runner.lost(w->rud, j);
        }
        job_release(j);
        job_unref(j);
    }
}

static void on_grace(uv_timer_t *t)
{
    ad_worker *w = t->data;
    if (!w->stopping_jobs && w->njobs) {
        logf_(w, AD_WORKER_INFO, "stopping: handing back %zu running job(s)", w->njobs);
        stop_jobs(w);
    }
    maybe_drained(w);
    /* Checked again until it is quiet or the deadline passed. */
    if (!w->drained_told)
        uv_timer_start(&w->grace, on_grace, 100, 0);
}

void ad_worker_drain(ad_worker *w, double grace_s, void (*done)(void *ud), void *ud)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drained = done;
    w->drained_ud = ud;
    uv_timer_stop(&w->reap);
    uint64_t g = grace_s < 0 ? UINT64_MAX / 4 : (uint64_t)(grace_s * 1000);
    /* After the jobs: time for the last replies (and the blocked read). */
    w->drain_deadline = uv_now(w->loop) + g + 10000;
    if (grace_s == 0)
        stop_jobs(w);
    uv_timer_start(&w->grace, on_grace, grace_s < 0 ? UINT64_MAX / 4 : g, 0);
    maybe_drained(w);
}

/* ---- life --------------------------------------------------------------- */

ad_worker *ad_worker_new(const ad_worker_opts *o, char *err, size_t errlen)
{
    const char *prefix = o->prefix ? o->prefix : "agentd";
    const char *group = o->group ? o->group : "agentd";
    if (!ad_q_valid_prefix(prefix)) {
        ad_errf(err, errlen, "--prefix: '%s' is not 1 to 64 of A-Z a-z 0-9 . _ : -", prefix);
        return NULL;
    }
    if (!ad_q_valid_id(group)) {
        ad_errf(err, errlen, "--group: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", group);
        return NULL;
    }
    if (o->consumer && !ad_q_valid_id(o->consumer)) {
        ad_errf(err, errlen, "--name: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", o->consumer);
        return NULL;
    }
    ad_worker *w = calloc(1, sizeof *w);
    if (!w) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    w->loop = o->loop;
    w->concurrency = o->concurrency > 0 ? o->concurrency : 1;
    w->lease_ms = (uint64_t)((o->lease_s > 0 ? o->lease_s : 30) * 1000);
    w->max_deliveries = o->max_deliveries > 0 ? o->max_deliveries : 5;
    w->keep_s = o->keep_s >= 0 ? (long)o->keep_s : 7L * 86400;
    /* The blocked read returns often enough for a stop to be quick. */
    w->block_ms = w->lease_ms / 4 < 1000 ? w->lease_ms / 4 : 1000;
    if (w->block_ms < 10)
        w->block_ms = 10;
    w->runner = *o->runner;
    w->rud = o->runner_ud;
    w->log = o->log;
    w->log_ud = o->log_ud;
    strcpy(w->cursor, "0-0");
    w->prefix = ad_strdup(prefix);
    w->group = ad_strdup(group);
    if (o->consumer) {
        w->consumer = ad_strdup(o->consumer);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof host - 1);
        for (char *c = host; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                  *c == '-' || *c == '.'))
                *c = '-';
        srand((unsigned)(now_ms() ^ ((long long)getpid() << 16)));
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "%s-%ld-%04x", host, (long)getpid(), (unsigned)rand() & 0xffff);
        w->consumer = ad_buf_steal(&b);
    }
    if (!w->prefix || !w->group || !w->consumer || ad_redis_url_copy(&w->url, o->url) != AD_OK) {
        ad_errf(err, errlen, "out of memory");
        free(w->prefix);
        free(w->group);
        free(w->consumer);
        ad_redis_url_free(&w->url);
        free(w);
        return NULL;
    }
    ad_q_stream(w->k_stream, w->prefix);
    ad_q_dead(w->k_dead, w->prefix);
    uv_timer_init(w->loop, &w->beat);
    uv_timer_init(w->loop, &w->reap);
    uv_timer_init(w->loop, &w->grace);
    uv_timer_init(w->loop, &w->again);
    w->beat.data = w->reap.data = w->grace.data = w->again.data = w;
    w->open_handles = 4;
    ad_redis_opts ro = {.loop = w->loop,
                        .url = o->url,
                        .reconnect = true,
                        .scripts = ad_q_scripts,
                        .nscripts = AD_Q_NSCRIPTS,
                        .on_state = on_cmd_state,
                        .ud = w};
    w->cmd = ad_redis_new(&ro, err, errlen);
    ro.scripts = NULL;
    ro.nscripts = 0;
    ro.on_state = on_rd_state;
    ro.reply_timeout_s = (double)w->block_ms / 1000 + 10;
    w->rd = w->cmd ? ad_redis_new(&ro, err, errlen) : NULL;
    if (!w->rd) {
        ad_worker_free(w);
        return NULL;
    }
    uint64_t every_beat = w->lease_ms / 3 ? w->lease_ms / 3 : 1;
    uv_timer_start(&w->beat, on_beat_timer, every_beat, every_beat);
    uint64_t every = w->lease_ms / 2 ? w->lease_ms / 2 : 1;
    uv_timer_start(&w->reap, on_reap_timer, every, every);
    return w;
}

static void on_worker_handle_closed(uv_handle_t *h)
{
    ad_worker *w = h->data;
    if (--w->open_handles > 0)
        return;
    free(w->prefix);
    free(w->group);
    free(w->consumer);
    ad_redis_url_free(&w->url);
    free(w);
}

void ad_worker_free(ad_worker *w)
{
    if (!w)
        return;
    /* Running attempts are abandoned: their runners let go now. */
    for (ad_worker_job *j = w->jobs; j; j = j->next) {
        if (j->state == J_RUN) {
            j->state = J_END;
            j->detached = true;
            if (w->runner.lost)
                w->runner.lost(w->rud, j);
        }
    }
    w->freeing = true;
    while (w->jobs) {
        ad_worker_job *j = w->jobs;
        w->jobs = j->next;
        j->held = false;
        job_unref(j);
    }
    w->njobs = 0;
    /* Requests still waiting are answered with NULL here and release
     * their jobs. */
    ad_redis_close(w->cmd);
    ad_redis_close(w->rd);
    uv_close((uv_handle_t *)&w->beat, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->reap, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->grace, on_worker_handle_closed);
    uv_close((uv_handle_t *)&w->again, on_worker_handle_closed);
}

const char *ad_worker_consumer(const ad_worker *w)
{
    return w->consumer;
}

void ad_worker_get_stats(const ad_worker *w, ad_worker_stats *s)
{
    *s = w->st;
}

/* ---- job accessors ------------------------------------------------------ */

const char *ad_worker_job_id(const ad_worker_job *j)
{
    return j->id;
}

int ad_worker_job_attempt(const ad_worker_job *j)
{
    return j->attempt;
}

const char *ad_worker_job_prompt(const ad_worker_job *j)
{
    return j->prompt ? j->prompt : "";
}

json_object *ad_worker_job_messages(const ad_worker_job *j)
{
    return j->messages;
}

size_t ad_worker_job_base(const ad_worker_job *j)
{
    return j->base;
}

void ad_worker_job_set_data(ad_worker_job *j, void *data)
{
    j->data = data;
}

void *ad_worker_job_data(const ad_worker_job *j)
{
    return j->data;
}

/*
 * writer.c -- the session store's writer thread (see writer.h).
 *
 * Data flow: loop thread -> job (malloc'd; everything in it is the job's
 * own: plain C data, or a json-c tree nobody else holds, since json-c's
 * reference counts are not atomic) -> the queue under `mu` (its lock hands
 * the job over) -> the thread pops one job, runs it
 * against the session, frees it, sets `done` and wakes the loop
 * (uv_async_send) -> on_async() on the loop thread reads `done` and the
 * failure, and reports.
 *
 * Invariants: jobs run in the order queued, one at a time; `done` only
 * grows; the session is touched by the writer thread alone between start
 * and the join in stop; the async handle is closed only after the join,
 * so no send can meet a closed handle.
 */
#include "store/writer.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

enum { JOB_MESSAGE, JOB_TOOL_RESULT, JOB_STEP, JOB_FORK };

typedef struct job {
    struct job *next;
    uint64_t seq;
    int kind;
    int step;
    double t;
    json_object *msg; /* MESSAGE: the message; FORK: the conversation (array) */
    char *text;       /* TOOL_RESULT: the call id; STEP: the finish reason */
    bool is_error;
    double seconds;
    ad_session_usage usage;
} job;

struct ad_store_writer {
    uv_loop_t *loop;
    ad_session *s;
    ad_store_report_fn fn;
    void *ud;
    uv_async_t async;
    uv_thread_t thread;
    uint64_t queued; /* loop thread: the last number given */

    uv_mutex_t mu;
    uv_cond_t cv;
    job *head, *tail; /* under mu */
    bool stop;        /* under mu */
    uint64_t done;    /* under mu */
    char *failure;    /* under mu: the first failure, until reported */
    bool failed;      /* writer thread: a failure was recorded already */
};

static void job_free(job *j)
{
    free(j->text);
    json_object_put(j->msg);
    free(j);
}

static int run_job(ad_session *s, job *j, char *err, size_t errlen)
{
    switch (j->kind) {
    case JOB_MESSAGE:
        return ad_session_append_at(s, j->msg, j->step, j->t, err, errlen);
    case JOB_TOOL_RESULT:
        return ad_session_tool_result(s, j->text, j->is_error, j->seconds, err, errlen);
    case JOB_STEP:
        return ad_session_step(s, j->step, j->text, &j->usage, j->t, err, errlen);
    default:
        return ad_session_fork(s, j->msg, j->t, err, errlen);
    }
}

static void writer_main(void *arg)
{
    ad_store_writer *w = arg;
    uv_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stop)
            uv_cond_wait(&w->cv, &w->mu);
        job *j = w->head;
        if (!j)
            break; /* stopping, and nothing is left */
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        uv_mutex_unlock(&w->mu);

        char err[512];
        char *failure = NULL;
        if (run_job(w->s, j, err, sizeof err) != AD_OK && !w->failed) {
            w->failed = true;
            const char *name = ad_session_name(w->s);
            ad_buf b = AD_BUF_INIT;
            ad_buf_printf(&b, "session '%s' is not being saved: %s", name ? name : "?", err);
            failure = ad_buf_steal(&b);
        }
        uint64_t seq = j->seq;
        job_free(j);

        uv_mutex_lock(&w->mu);
        w->done = seq;
        if (failure && !w->failure)
            w->failure = failure;
        else
            free(failure);
        uv_async_send(&w->async);
    }
    uv_mutex_unlock(&w->mu);
}

/* Reads the writer's state and reports it. Loop thread. */
static void report(ad_store_writer *w)
{
    uv_mutex_lock(&w->mu);
    uint64_t done = w->done;
    char *failure = w->failure;
    w->failure = NULL;
    uv_mutex_unlock(&w->mu);
    if (w->fn)
        w->fn(w->ud, done, failure);
    free(failure);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_async(uv_async_t *a)
{
    report(a->data);
}

int ad_store_writer_start(ad_store_writer **out, uv_loop_t *loop, ad_session *s,
                          ad_store_report_fn fn, void *ud, char *err, size_t errlen)
{
    *out = NULL;
    ad_store_writer *w = calloc(1, sizeof *w);
    if (!w) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    w->loop = loop;
    w->s = s;
    w->fn = fn;
    w->ud = ud;
    if (uv_mutex_init(&w->mu) != 0) {
        free(w);
        ad_errf(err, errlen, "cannot start the session writer: no mutex");
        return AD_ERR;
    }
    if (uv_cond_init(&w->cv) != 0) {
        uv_mutex_destroy(&w->mu);
        free(w);
        ad_errf(err, errlen, "cannot start the session writer: no condition variable");
        return AD_ERR;
    }
    if (uv_async_init(loop, &w->async, on_async) != 0) {
        uv_cond_destroy(&w->cv);
        uv_mutex_destroy(&w->mu);
        free(w);
        ad_errf(err, errlen, "cannot start the session writer: no async handle");
        return AD_ERR;
    }
    w->async.data = w;
    /* Reports are only waited for while somebody holds the loop. */
    uv_unref((uv_handle_t *)&w->async);
    int rc = uv_thread_create(&w->thread, writer_main, w);
    if (rc != 0) {
        ad_errf(err, errlen, "cannot start the session writer thread: %s", uv_strerror(rc));
        w->fn = NULL;
        uv_cond_destroy(&w->cv);
        uv_mutex_destroy(&w->mu);
        uv_close((uv_handle_t *)&w->async, on_closed); /* frees w */
        return AD_ERR;
    }
    *out = w;
    return AD_OK;
}

static uint64_t push(ad_store_writer *w, job *j)
{
    uint64_t seq = j->seq = ++w->queued;
    uv_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    return seq; /* j may be gone already */
}

uint64_t ad_store_writer_message(ad_store_writer *w, json_object *msg, int step, double t)
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        json_object_put(msg);
        return 0;
    }
    j->kind = JOB_MESSAGE;
    j->msg = msg;
    j->step = step;
    j->t = t;
    return push(w, j);
}

uint64_t ad_store_writer_tool_result(ad_store_writer *w, const char *call_id, bool is_error,
                                     double seconds)
{
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->text = ad_strdup(call_id ? call_id : ""))) {
        free(j);
        return 0;
    }
    j->kind = JOB_TOOL_RESULT;
    j->is_error = is_error;
    j->seconds = seconds;
    return push(w, j);
}

uint64_t ad_store_writer_step(ad_store_writer *w, int step, const char *finish_reason,
                              const ad_session_usage *u, double t)
{
    job *j = calloc(1, sizeof *j);
    if (!j || (finish_reason && !(j->text = ad_strdup(finish_reason)))) {
        free(j);
        return 0;
    }
    j->kind = JOB_STEP;
    j->step = step;
    j->t = t;
    if (u)
        j->usage = *u;
    return push(w, j);
}

uint64_t ad_store_writer_fork(ad_store_writer *w, json_object *messages, double t)
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        json_object_put(messages);
        return 0;
    }
    j->kind = JOB_FORK;
    j->msg = messages;
    j->t = t;
    return push(w, j);
}

void ad_store_writer_hold_loop(ad_store_writer *w, bool hold)
{
    if (hold)
        uv_ref((uv_handle_t *)&w->async);
    else
        uv_unref((uv_handle_t *)&w->async);
}

void ad_store_writer_stop(ad_store_writer *w)
{
    if (!w)
        return;
    uv_mutex_lock(&w->mu);
    w->stop = true;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu);
    uv_thread_join(&w->thread);
    report(w);
    w->fn = NULL;
    uv_cond_destroy(&w->cv);
    uv_mutex_destroy(&w->mu);
    uv_close((uv_handle_t *)&w->async, on_closed);
}

/*
 * pool.c -- tool calls on libuv's thread pool (see pool.h).
 *
 * State for the whole process, because the pool is the process's: held[],
 * the threads held by given-up calls (atomic: loops on several threads may
 * share the pool), and the list of calls queued and not yet taken by a
 * thread (under a mutex), so that when the last free thread is given up
 * the calls that can no longer get one are refused instead of waiting.
 * uv_cancel() must run on the thread of the call's loop, so a refusal
 * sweep takes only the calls of the loop it runs on; calls of other loops
 * meet the refusal when they are queued.
 */
#include "tools/pool.h"

#include <pthread.h>
#include <stdlib.h>

static atomic_size_t held[3]; /* by AD_TOOL_STOP_* */
static pthread_mutex_t queued_mu = PTHREAD_MUTEX_INITIALIZER;
static ad_pool_call *queued_head; /* calls queued, not taken yet */

size_t ad_pool_size(void)
{
    const char *v = getenv("UV_THREADPOOL_SIZE");
    if (!v)
        return 4;
    unsigned n = (unsigned)atoi(v);
    return n == 0 ? 1 : n > 1024 ? 1024 : n;
}

size_t ad_pool_held(int why)
{
    return why == AD_TOOL_STOP_TIMEOUT || why == AD_TOOL_STOP_CANCEL ? atomic_load(&held[why]) : 0;
}

static size_t held_total(void)
{
    return atomic_load(&held[AD_TOOL_STOP_TIMEOUT]) + atomic_load(&held[AD_TOOL_STOP_CANCEL]);
}

int ad_pool_not_started(ad_buf *b, const char *tool)
{
    size_t n = ad_pool_size();
    bool t = ad_pool_held(AD_TOOL_STOP_TIMEOUT) > 0, c = ad_pool_held(AD_TOOL_STOP_CANCEL) > 0;
    if (n == 1)
        return ad_buf_printf(b,
                             "tool '%s' was not started: the only worker thread is still held by "
                             "an earlier call that %s",
                             tool, c && !t ? "was cancelled" : "timed out");
    return ad_buf_printf(b,
                         "tool '%s' was not started: all %zu worker threads are still held by "
                         "earlier calls that %s",
                         tool, n,
                         t && c ? "timed out or were cancelled" : c ? "were cancelled" : "timed out");
}

static void unlink_queued(ad_pool_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (queued_head == c)
        queued_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void work_cb(uv_work_t *w)
{
    ad_pool_call *c = w->data;
    atomic_store(&c->taken, true);
    ad_tool_job_started(c->job);
    c->run(c);
}

static void after_work_cb(uv_work_t *w, int status)
{
    ad_pool_call *c = w->data;
    pthread_mutex_lock(&queued_mu);
    unlink_queued(c);
    pthread_mutex_unlock(&queued_mu);
    c->queued = false;
    if (c->gave_up)
        atomic_fetch_sub(&held[c->gave_up], 1);
    int how = status != UV_ECANCELED ? AD_POOL_RAN : c->refused ? AD_POOL_NO_THREAD
                                                                : AD_POOL_UNQUEUED;
    c->after(c, how);
}

int ad_pool_queue(uv_loop_t *loop, ad_pool_call *c)
{
    if (held_total() >= ad_pool_size())
        return AD_ETOOBIG;
    c->work.data = c;
    c->loop = loop;
    c->gave_up = 0;
    c->refused = false;
    atomic_store(&c->taken, false);
    /* Listed before it is queued: a thread may take it at once, and then
     * after_work_cb unlinks it. */
    pthread_mutex_lock(&queued_mu);
    c->prev = NULL;
    c->next = queued_head;
    if (queued_head)
        queued_head->prev = c;
    queued_head = c;
    pthread_mutex_unlock(&queued_mu);
    if (uv_queue_work(loop, &c->work, work_cb, after_work_cb) != 0) {
        pthread_mutex_lock(&queued_mu);
        unlink_queued(c);
        pthread_mutex_unlock(&queued_mu);
        return AD_ERR;
    }
    c->queued = true;
    return AD_OK;
}

/* Every thread is held: the calls of loop still queued never get one. */
static void refuse_unstartable(uv_loop_t *loop)
{
    if (held_total() < ad_pool_size())
        return;
    pthread_mutex_lock(&queued_mu);
    for (ad_pool_call *c = queued_head; c; c = c->next)
        if (c->loop == loop && !c->refused && !atomic_load(&c->taken) &&
            uv_cancel((uv_req_t *)&c->work) == 0)
            c->refused = true; /* after_work_cb follows with UV_ECANCELED */
    pthread_mutex_unlock(&queued_mu);
}

bool ad_pool_stop(ad_pool_call *c, int why)
{
    if (!c->queued || c->refused)
        return c->refused;
    if (uv_cancel((uv_req_t *)&c->work) == 0)
        return true;
    if (c->gave_up == 0 && (why == AD_TOOL_STOP_TIMEOUT || why == AD_TOOL_STOP_CANCEL)) {
        c->gave_up = why;
        atomic_fetch_add(&held[why], 1);
        refuse_unstartable(c->loop);
    }
    return false;
}

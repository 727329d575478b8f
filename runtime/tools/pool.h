/*
 * pool.h -- tool calls on libuv's thread pool, for providers that run a
 * call by blocking a thread (the in-process plugin provider, and the
 * isolation provider while it waits for its worker process).
 *
 * The pool is the process's: a call given up while it runs (timed out, or
 * its batch cancelled) keeps its thread until it returns, which may be
 * never. This module counts those threads for the whole process. When they
 * are all held, a call could wait for a thread for ever: it is refused at
 * once instead (ad_pool_queue), and calls already queued are taken off the
 * queue and refused (AD_POOL_NO_THREAD), so that a call's timeout never
 * counts time spent waiting for a thread.
 *
 * Threads: ad_pool_* on the loop thread of the call's loop; `run` on a pool
 * thread; `after` on the loop thread, exactly once per queued call.
 */
#ifndef AD_TOOLS_POOL_H
#define AD_TOOLS_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/buf.h"
#include "tools/provider.h"

typedef struct ad_pool_call ad_pool_call;

/* How a queued call ended (after's `how`). */
enum {
    AD_POOL_RAN = 0,   /* run() ran (and returned) */
    AD_POOL_UNQUEUED,  /* taken off the queue by ad_pool_stop(): it never ran */
    AD_POOL_NO_THREAD, /* taken off the queue: every thread is held by given-up calls */
};

struct ad_pool_call {
    uv_work_t work;
    ad_tool_job *job; /* reported started when a thread takes the call */
    void (*run)(ad_pool_call *c);             /* pool thread */
    void (*after)(ad_pool_call *c, int how);  /* loop thread; c may be freed there */
    /* private */
    atomic_bool taken; /* a thread picked it up */
    int gave_up;       /* AD_TOOL_STOP_*: given up while it ran; it holds its thread */
    bool refused;
    bool queued; /* in the pool; after() not called yet */
    uv_loop_t *loop;
    ad_pool_call *prev, *next; /* the calls queued and not yet taken */
};

/* Queues c (run, after and job set). Returns 0; AD_ETOOBIG when every
 * thread is held by given-up calls (nothing queued: refuse the call with
 * ad_pool_not_started()); AD_ERR when libuv refused. */
int ad_pool_queue(uv_loop_t *loop, ad_pool_call *c);
/* Gives up c for reason why (AD_TOOL_STOP_*). Returns true when it was
 * taken off the queue before a thread picked it up (after(UNQUEUED)
 * follows); false when it runs: it holds its thread until run() returns,
 * and when that leaves no free thread, the calls still queued on this loop
 * are refused. */
bool ad_pool_stop(ad_pool_call *c, int why);
/* The threads held by given-up calls, for why (AD_TOOL_STOP_*). */
size_t ad_pool_held(int why);
/* The pool's size as libuv reads it at its start (UV_THREADPOOL_SIZE). */
size_t ad_pool_size(void);
/* Writes the result text of a call of tool that gets no thread. */
int ad_pool_not_started(ad_buf *b, const char *tool);

#endif /* AD_TOOLS_POOL_H */

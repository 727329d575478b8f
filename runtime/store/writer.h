/*
 * writer.h -- the session store's writer thread: a run's SQLite writes
 * leave the loop thread.
 *
 * The loop thread queues jobs (a message, a tool result's facts, a step's
 * end, a fork of the conversation); one thread of the
 * writer's own runs them against the ad_session, in the order queued, each
 * message in its own transaction (session.h). Every job gets a number,
 * 1, 2, ...: the writer reports back on the loop thread (uv_async) how far
 * it got and the first write that failed.
 *
 * Ownership: while the writer runs, the ad_session is the writer thread's
 * alone; the caller gets it back when ad_store_writer_stop() returns.
 * Threads: every function here is called on the loop thread; the report
 * callback runs there too.
 */
#ifndef AD_STORE_WRITER_H
#define AD_STORE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/session.h"

typedef struct ad_store_writer ad_store_writer;

/* Every job up to number `done` has run. failure: the message of the first
 * write that failed ("session 'NAME' is not being saved: ..."), in the
 * first report after it only; NULL otherwise. */
typedef void (*ad_store_report_fn)(void *ud, uint64_t done, const char *failure);

/* Starts the writer thread for s on loop. Returns 0 or AD_ENOMEM /
 * AD_ERR (no thread), with err set. */
int ad_store_writer_start(ad_store_writer **out, uv_loop_t *loop, ad_session *s,
                          ad_store_report_fn fn, void *ud, char *err, size_t errlen);

/* Queue a job; each returns its number, or 0 when it could not be queued
 * (ENOMEM: nothing was queued, the owned arguments are released). */
/* msg: taken, and no other thread may hold it or any part of it (a deep
 * copy: json-c's reference counts are not atomic); t: Unix seconds. */
uint64_t ad_store_writer_message(ad_store_writer *w, json_object *msg, int step, double t);
uint64_t ad_store_writer_tool_result(ad_store_writer *w, const char *call_id, bool is_error,
                                     double seconds);
uint64_t ad_store_writer_step(ad_store_writer *w, int step, const char *finish_reason,
                              const ad_session_usage *u, double t);
/* messages: the conversation (an array), taken as msg is above. */
uint64_t ad_store_writer_fork(ad_store_writer *w, json_object *messages, double t);

/* Whether the loop must keep running for the next report (true while
 * somebody waits for a job to be done): the writer's uv_async holds the
 * loop only then. */
void ad_store_writer_hold_loop(ad_store_writer *w, bool hold);

/* Runs what is queued, joins the thread, reports the final state
 * (synchronously, through the callback) and closes the uv_async; the
 * writer frees itself in its close callback (run the loop once more). */
void ad_store_writer_stop(ad_store_writer *w);

#endif /* AD_STORE_WRITER_H */

/*
 * worker.h -- the Redis side of `agentd worker`: takes jobs from the
 * stream with a consumer group, keeps their leases, takes over the jobs of
 * workers that died, dead-letters jobs that never finish, and ends each
 * job exactly once. What a job does is the runner's business (run.h runs
 * it as a conversation); tests plug in their own.
 *
 * A job's attempt:
 *   taken     XREADGROUP (new entries, up to the free slots of
 *             --concurrency), or XAUTOCLAIM of entries idle longer than the
 *             lease (their worker stopped renewing them), or found in this
 *             worker's own pending list after a reconnection
 *   begun     the BEGIN script checks the lease, counts the attempt (or
 *             dead-letters the job after max_deliveries attempts that
 *             never finished) and returns the job with its conversation
 *   running   runner->start(); the runner appends messages, writes events,
 *             uses the ledger (all lease-checked in Redis), and ends the
 *             attempt with ad_worker_job_finish() or _handback()
 *   renewed   every lease/3 one HEARTBEAT script renews all running jobs;
 *             a job found not ours any more is lost: runner->lost(), and
 *             nothing of it reaches Redis after that (every script checks)
 *
 * Connections: one for commands (requests survive a lost connection and
 * are sent again, in order) and one for the blocking XREADGROUP. Redis
 * down: both come back with backoff (redis.h); running jobs go on, their
 * writes wait; after a reconnection the worker renews its leases at once
 * and takes over others' jobs only after one lease time, so that their
 * owners can renew theirs first.
 *
 * Stopping (ad_worker_drain, SIGTERM): no new job is taken, entries the
 * blocked read brought in are handed back at once, running jobs may finish
 * for grace_s, then runner->stop() asks each remaining one to end (the
 * runner hands it back: it goes on the stream again at once, and its next
 * attempt resumes from the last committed message).
 *
 * Debug hook: AGENTD_WORKER_STOP_AT=POINT[@JOB] makes the worker print
 * "agentd: worker: stopped at POINT (job JOB)" on stderr and stop itself
 * (SIGSTOP) when it reaches POINT (for that job): tests kill it there.
 * Points here: begun (the attempt is counted, nothing done yet),
 * before_ack (the result is known, not yet stored nor acknowledged).
 */
#ifndef AD_WORKER_WORKER_H
#define AD_WORKER_WORKER_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "worker/redis.h"

typedef struct ad_worker ad_worker;
typedef struct ad_worker_job ad_worker_job;

typedef struct ad_worker_runner {
    /* Runs the job. It ends with ad_worker_job_finish() or
     * ad_worker_job_handback(), from here or later. */
    void (*start)(void *ud, ad_worker_job *j);
    /* The job is not ours any more (another worker took it over, or it was
     * ended elsewhere): stop at once. Nothing more may be done with j, which
     * is released when this returns. */
    void (*lost)(void *ud, ad_worker_job *j);
    /* The worker stops: end the job now (cancel it and hand it back, or
     * finish it if its result is there). */
    void (*stop)(void *ud, ad_worker_job *j);
} ad_worker_runner;

enum { AD_WORKER_INFO, AD_WORKER_WARN, AD_WORKER_ERROR };
typedef void (*ad_worker_log_fn)(void *ud, int level, const char *msg);

typedef struct ad_worker_opts {
    uv_loop_t *loop;
    const ad_redis_url *url;
    const char *prefix;   /* key prefix (default "agentd") */
    const char *group;    /* consumer group (default "agentd") */
    const char *consumer; /* this worker's name; NULL: HOST-PID-RANDOM */
    int concurrency;      /* jobs at once (default 1) */
    double lease_s;       /* a job idle this long may be taken over (default 30) */
    int max_deliveries;   /* attempts before a job is dead-lettered (default 5) */
    double keep_s;        /* an ended job's keys expire after this (default 7 days; 0 never) */
    const ad_worker_runner *runner;
    void *runner_ud;
    ad_worker_log_fn log; /* may be NULL */
    void *log_ud;
} ad_worker_opts;

/* Starts connecting and taking jobs. NULL with err set (bad options,
 * hiredis missing, ENOMEM). */
ad_worker *ad_worker_new(const ad_worker_opts *o, char *err, size_t errlen);
/* Stops taking jobs and ends the running ones (see above); done is called
 * once, when no job is left and what the worker sent has been answered (or
 * could not be: Redis down). grace_s < 0: wait for the jobs as long as
 * they take. */
void ad_worker_drain(ad_worker *w, double grace_s, void (*done)(void *ud), void *ud);
/* Releases the worker (after done, or at any time: running jobs are then
 * abandoned as by a crash, and taken over after the lease). Handles close
 * on the loop: run it once more. */
void ad_worker_free(ad_worker *w);
const char *ad_worker_consumer(const ad_worker *w);

typedef struct ad_worker_stats {
    unsigned long taken;      /* attempts begun */
    unsigned long taken_over; /* ... of them taken from another worker */
    unsigned long finished;   /* ended here (done or failed) */
    unsigned long lost;       /* attempts that lost their lease */
    unsigned long handed_back;
    unsigned long dead;       /* jobs this worker dead-lettered */
} ad_worker_stats;
void ad_worker_get_stats(const ad_worker *w, ad_worker_stats *s);

/* The debug hook: stops the process at `point` when AGENTD_WORKER_STOP_AT
 * names it (see above). job may be NULL. */
void ad_worker_stop_point(const char *point, const char *job);

/* ---- a job, for the runner ---------------------------------------------- */

const char *ad_worker_job_id(const ad_worker_job *j);
int ad_worker_job_attempt(const ad_worker_job *j);
const char *ad_worker_job_prompt(const ad_worker_job *j);
/* The conversation as Redis had it when the attempt began: every message
 * of the session (borrowed array), and where this job's own messages
 * start (its prompt, when an earlier attempt appended it). */
json_object *ad_worker_job_messages(const ad_worker_job *j);
size_t ad_worker_job_base(const ad_worker_job *j);
/* The runner's own pointer. */
void ad_worker_job_set_data(ad_worker_job *j, void *data);
void *ad_worker_job_data(const ad_worker_job *j);

/* Appends one event (a --json event object's JSON text, without the
 * closing '}'; "attempt" and "seq" are added here). Events of a job are
 * sent in batches, in order; one whose batch is sent twice is stored once. */
void ad_worker_job_event(ad_worker_job *j, const char *json_open, size_t len);
/* Called before a batch of events is sent, so that a runner that holds
 * back events (text deltas it merges) can add them now. */
void ad_worker_job_set_flush(ad_worker_job *j, void (*flush)(void *ud, ad_worker_job *j),
                             void *ud);

enum { AD_WORKER_OK = 0, AD_WORKER_LOST = 1, AD_WORKER_FAILED = 2 };
/* cb gets AD_WORKER_OK, or AD_WORKER_LOST (the job is not ours: runner->lost
 * follows), or AD_WORKER_FAILED (no answer: the worker is being freed). */
typedef void (*ad_worker_done_fn)(void *ud, int result);

/* Appends msg (JSON text) to the conversation, when it still has the
 * length this attempt expects, and marks each of fields (ledger fields of
 * the tool calls the message asks for: "IDX:CALLID") as started. */
void ad_worker_job_append(ad_worker_job *j, const char *msg, size_t len,
                          const char *const *fields, size_t nfields, ad_worker_done_fn cb,
                          void *ud);
/* Reads the whole ledger: cb gets a JSON object field -> value text (a new
 * object, the callback's), or NULL when there was no answer. */
void ad_worker_job_ledger(ad_worker_job *j, void (*cb)(void *ud, json_object *ledger), void *ud);
/* Writes a ledger field (lease-checked). nx: only when the field is not
 * there yet; cb (may be NULL) is told whether it was written. */
void ad_worker_job_ledger_put(ad_worker_job *j, const char *field, const char *value, bool nx,
                              void (*cb)(void *ud, int result, bool created), void *ud);

/* The attempt's outcome. state: "done" or "failed"; status: AD_RUN_*;
 * result: the final answer (may be ""); error: why it failed (may be "").
 * Stores it, appends the job_end event and acknowledges the entry, in one
 * script that refuses when the lease is gone (the result is then dropped:
 * the worker that took the job over ends it). j is the worker's after this
 * call. */
void ad_worker_job_finish(ad_worker_job *j, const char *state, int status, const char *result,
                          const char *error);
/* Puts the job back on the stream (its next attempt resumes from the last
 * committed message); j is the worker's after this call. */
void ad_worker_job_handback(ad_worker_job *j, const char *reason);

#endif /* AD_WORKER_WORKER_H */

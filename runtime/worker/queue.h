/*
 * queue.h -- the job queue in Redis: key names and the Lua scripts that
 * change it (docs/workers.md has the whole model).
 *
 * Keys (P is the prefix, "agentd" unless --prefix says otherwise):
 *   P:jobs              stream: one entry {job: ID} per job that may run now;
 *                       the consumer group's pending list holds the running
 *                       ones, each owned by one worker (its lease)
 *   P:job:ID            hash: the job (prompt, session, state, attempts,
 *                       owner, result, status, error, ...)
 *   P:job:ID:events     stream: the job's events, {e: JSON} each; JSON is a
 *                       --json event plus "attempt" and "seq"
 *   P:job:ID:ledger     hash: one field per tool call ("IDX:CALLID", IDX the
 *                       position of the assistant message in the
 *                       conversation): {"state":"started",...} before the
 *                       call runs, {"state":"done","content":...} after
 *   P:job:ID:conv       list: the conversation of a job without a session
 *   P:session:S         list: the conversation of session S, one JSON message
 *                       per element, appended only (expected-length check)
 *   P:session:S:active  string: the job of S that is queued or running
 *   P:session:S:queue   list: the jobs of S waiting for it
 *   P:dead              stream: dead letters {job, reason}
 *   P:index             sorted set: every job id by submission time (ms)
 *
 * Every script that changes a job checks first that the caller owns it:
 * the stream entry is in the caller's pending list (XPENDING) and the job's
 * attempt is the caller's. A worker that lost its lease is refused
 * ("lost"), whatever it tries. Scripts are safe to run twice (a request
 * sent again after a lost connection): the second run sees the first one's
 * effect and answers the same.
 *
 * One Redis (or a primary with replicas), not Redis Cluster: the scripts
 * touch keys they are not given.
 */
#ifndef AD_WORKER_QUEUE_H
#define AD_WORKER_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "worker/redis.h"

/* The scripts, registered with every connection of a worker. */
enum {
    AD_Q_SUBMIT,
    AD_Q_BEGIN,
    AD_Q_HEARTBEAT,
    AD_Q_EVENTS,
    AD_Q_APPEND,
    AD_Q_LEDGER,
    AD_Q_FINISH,
    AD_Q_HANDBACK,
    AD_Q_CLEANUP,
    AD_Q_NSCRIPTS
};
extern ad_redis_script *const ad_q_scripts[AD_Q_NSCRIPTS];

/* A job or session id: 1 to 128 of [A-Za-z0-9._-] (no ':', which
 * separates the parts of key names). */
bool ad_q_valid_id(const char *id);
/* The prefix: 1 to 64 of [A-Za-z0-9._:-]. */
bool ad_q_valid_prefix(const char *p);

/* Key names, written into buf (which has room for 256 bytes). */
#define AD_Q_KEY_MAX 256
const char *ad_q_stream(char *buf, const char *prefix);
const char *ad_q_dead(char *buf, const char *prefix);
const char *ad_q_index(char *buf, const char *prefix);
const char *ad_q_job(char *buf, const char *prefix, const char *id);
const char *ad_q_events(char *buf, const char *prefix, const char *id);
const char *ad_q_ledger(char *buf, const char *prefix, const char *id);

/* A ledger field, "IDX:CALLID" (a call id longer than fits is cut). */
#define AD_Q_FIELD_MAX 192

/* Terminal states of a job. */
bool ad_q_state_ended(const char *state);

#endif /* AD_WORKER_QUEUE_H */

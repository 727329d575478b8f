/*
 * run.h -- a job as a conversation: the runner of `agentd worker` (the
 * runner interface of worker.h).
 *
 * Each job gets an agent of its own (core/agent.h) with its own event hub,
 * on the worker's loop, sharing the worker's transport and tool host: many
 * jobs run at once, up to --concurrency. One sink (the job's) sees the hub's
 * events and is the only way the conversation reaches Redis:
 *
 *   MESSAGE      appended to the conversation in Redis, checked against the
 *                length this attempt expects and against the lease; an
 *                assistant message that asks for tools marks each call
 *                "started" in the ledger in the same script. The sink pauses
 *                until Redis has it: no request carrying it goes out, no
 *                tool it asks for starts before that.
 *   TOOL_RESULT  the result goes to the ledger ("done") before anything
 *                else happens (the sink pauses again).
 *   the others   the job's event stream, as the --json events.
 *
 * An attempt resumes where the conversation in Redis ends (from its last
 * committed message, not from scratch):
 *   - nothing of the job yet: the prompt is the next message (ad_agent_run)
 *   - the prompt or the tools' results are the last: the next step is sent
 *     (ad_agent_run without a prompt)
 *   - an answer is the last: the job is done with it
 *   - an assistant message whose calls are not all answered: each such call
 *     is settled from the ledger first: a call whose result is there gets it
 *     again ("reused"); one marked started whose outcome is not known gets
 *     an error result saying it was interrupted and not run again, unless
 *     its tool is idempotent (AD_TOOL_IDEMPOTENT): then it runs again with
 *     the same idempotency key (conv_id = the job's id, call_id = the call's,
 *     as the provider sees them); one never started runs now. The ledger is
 *     written (lease-checked) right before each call runs.
 * A step's request that was on its way when the worker died is simply sent
 * again; a model that answers the same request differently gives other
 * calls, which are new calls (their ids were never committed).
 *
 * Debug hook (worker.h): points tool_started (the ledger says started, the
 * lease is checked, the call runs next), tool_finished (the call returned,
 * the ledger does not know yet), ledger_done (the ledger has the result, the
 * tool message is not committed yet).
 */
#ifndef AD_WORKER_RUN_H
#define AD_WORKER_RUN_H

#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "provider/transport.h"
#include "tools/host.h"
#include "worker/worker.h"

typedef struct ad_jobrunner ad_jobrunner;

/* Everything borrowed; must outlive the runner. */
typedef struct ad_jobrunner_opts {
    uv_loop_t *loop;
    ad_transport *transport;
    const ad_config *cfg;
    ad_tool_host *tools;
    bool quiet; /* no line per job on stderr */
} ad_jobrunner_opts;

ad_jobrunner *ad_jobrunner_new(const ad_jobrunner_opts *o);
/* The runner interface to give ad_worker_new(), with the runner as ud. */
const ad_worker_runner *ad_jobrunner_vt(void);
/* Releases the runner once the worker is gone (ad_worker_free tells every
 * job lost first). Handles close on the loop: run it once more. */
void ad_jobrunner_free(ad_jobrunner *r);

#endif /* AD_WORKER_RUN_H */

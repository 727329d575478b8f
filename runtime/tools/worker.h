/*
 * worker.h -- persistent plugin workers: the calls of one plugin's tools in
 * one long-lived worker process, driven by the loop.
 *
 * The worker is the host's own executable started again as
 * `EXE --tool-worker PPID serve FILE` (ad_isolate_worker_main() must be
 * reachable from that program's main()), with uv_spawn, a minimal
 * environment and a process group of its own. It loads the one plugin
 * (its init runs there, never in the host), says which tools it has, and
 * then runs calls as they come over a socket pair (framed, tools/wire.h;
 * its frames go back over another):
 * calls of thread-safe tools several at a time, each on a thread of the
 * worker; calls of other tools one at a time (the provider sends the next
 * one when the last has ended). No pool thread of the host waits for a
 * worker. The worker's stdout and stderr come back through a pipe and
 * become log lines: the call's (AD_TOOL_LOG_OUTPUT, shown as "agentd: tool
 * NAME: ...") while exactly one call runs, the plugin's otherwise; bounded
 * to OUTPUT_PER_CALL bytes per call (the rest is counted and said).
 *
 * The worker starts with the first call (a run that calls no tool starts
 * none) and lives until the provider closes. Its fate is named in the
 * results:
 *   - a crash (a fatal signal) or an exit() of the plugin during a call:
 *     that call's result says so ("tool 'x' crashed: SIGSEGV", "tool 'x'
 *     exited with status 3 without a result"); other calls that were
 *     running in the same worker end with "interrupted" results naming it;
 *   - a call that outlives its timeout_s: the worker is killed with its
 *     process group ("tool 'x' timed out after 2 s and was killed");
 *   - a cancelled call is asked to stop (the plugin's cancel()); a worker
 *     that has not ended it within CANCEL_GRACE_S is killed;
 *   - the next call starts a new worker (at once after the first death,
 *     then with a growing delay while calls keep killing it);
 *   - a worker whose start fails (init fails, crashes, exits, or does not
 *     report within start_timeout_s) is started again after a short delay;
 *     after START_ATTEMPTS failures in a row the plugin is disabled: its
 *     calls get an error result naming the last failure.
 * A result larger than the host's bound, a malformed frame or one larger
 * than the frame bound kills the worker too (the call says why).
 *
 * Like the isolation provider, this one offers no tools of its own: the
 * plugin provider lists them and hands it the calls of the tools it runs.
 * Threads: the loop's.
 */
#ifndef AD_TOOLS_WORKER_H
#define AD_TOOLS_WORKER_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "tools/isolate.h"
#include "tools/provider.h"

#define AD_PLUGIN_WORKER_SERVE_ARG "serve" /* argv[3] of a persistent worker */

/* Called when a worker reports tools other than `expected` (the list the
 * host registered): desc is its {"tools":[...]} (borrowed). */
typedef void (*ad_plugin_worker_described_fn)(void *ud, json_object *desc);

typedef struct ad_plugin_worker_opts {
    const ad_isolate_opts *isolate;   /* exe, scrub_env, describe_timeout_s (bounds a start) */
    ad_plugin_worker_described_fn described; /* may be NULL */
    void *described_ud;
} ad_plugin_worker_opts;

/* The worker provider of the plugin at path (absolute), whose tools (as
 * the host lists them, borrowed: the plugin provider keeps them) are the
 * first n of `tools`; config_json may be NULL. The worker program is
 * resolved now. NULL on ENOMEM. */
ad_tool_provider *ad_plugin_worker_new(const ad_plugin_worker_opts *o, const char *path, const char *config_json,
                                const ad_tool_desc *const *tools, size_t n);

/* The environment workers get: a short list of harmless variables of this
 * process (PATH, HOME, USER, locale, time zone, temporary folder, the XDG
 * folders, LD_LIBRARY_PATH, AGENTD_DEBUG, sanitizer options), plus those
 * named in pass (NULL-terminated; may be NULL), never scrub (the API key's
 * variable). NULL-terminated, the strings borrowed from environ; free the
 * array. NULL on ENOMEM. */
char **ad_plugin_worker_env(const char *scrub, const char *const *pass);

/* Reaps the workers of providers that closed (their processes end by
 * themselves: an idle worker after its destroy() calls). With wait_s > 0,
 * waits that long for them and then kills what is left. Returns how many
 * are left. Any thread. */
size_t ad_plugin_worker_reap(double wait_s);

/* For tests: the pid of p's worker process (0: none runs). */
long ad_plugin_worker_pid(const ad_tool_provider *p);

/* The worker's side: ad_isolate_worker_main() hands a persistent worker
 * (argv[3] AD_PLUGIN_WORKER_SERVE_ARG) to it. Never returns normally. */
int ad_plugin_serve_main(void);

#endif /* AD_TOOLS_WORKER_H */

/*
 * isolate.h -- process isolation: tool calls in worker processes.
 *
 * A worker is the host's own executable started again as
 * `EXE --tool-worker PPID MAX` (ad_isolate_worker_main() must be reachable
 * from that program's main()). It loads one plugin and either runs one call
 * (the isolation provider below) or reports the tools the plugin registers
 * (ad_isolate_describe, for plugins that must not be loaded into the host).
 * A crash, an exit, a hang past the timeout or an oversized result of the
 * plugin then becomes an error result naming what happened, and the host
 * carries on.
 *
 * The isolation provider runs the calls of one plugin file: it offers no
 * tools of its own (the plugin provider lists them, in the plugin's order,
 * and hands it the calls of the tools it isolates). Each call blocks a
 * thread of libuv's pool (tools/pool.h) while its worker runs; the worker's
 * deadline is the job's timeout_s (the host's own deadline waits a grace
 * period longer). The worker's stdout and stderr never reach the host's
 * stdout: the first 4 KiB come back as the job's log lines, its log()
 * lines with their level, anything else as AD_TOOL_LOG_OUTPUT.
 */
#ifndef AD_TOOLS_ISOLATE_H
#define AD_TOOLS_ISOLATE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "tools/provider.h"

#define AD_ISOLATE_WORKER_FLAG "--tool-worker" /* argv[1] of a worker process */

typedef struct ad_isolate_opts {
    const char *exe;           /* the program a worker runs; NULL: this one (/proc/self/exe) */
    const char *scrub_env;     /* NULL, or a variable workers must not inherit (the API key's) */
    double describe_timeout_s; /* bound of a describing worker, and of a worker's start; 0 = none */
    /* Variables workers get beyond the short list of ad_plugin_worker_env()
     * (NULL-terminated; may be NULL). */
    const char *const *pass_env;
} ad_isolate_opts;

/* The isolation provider for the plugin at path (absolute) with its config
 * text (NULL: none); o copied (NULL: defaults). The worker program is
 * resolved now (call on the main thread). NULL on ENOMEM. */
ad_tool_provider *ad_isolate_new(const ad_isolate_opts *o, const char *path,
                                 const char *config_json);

/* Runs a describing worker for the plugin at path: it loads the plugin
 * (its init runs there) and reports {"tools":[{"name","description",
 * "parameters","flags"}]}, which *desc gets (caller puts it). The worker's
 * output goes to h's log as lines of origin FILE. Returns 0, or a negative
 * AD_E* with err set ("plugin FILE: ..."). */
int ad_isolate_describe(const ad_isolate_opts *o, ad_tool_host *h, const char *path,
                        const char *config_json, json_object **desc, char *err, size_t errlen);

/* The worker side: call from main() when argv[1] is AD_ISOLATE_WORKER_FLAG;
 * returns the process's exit status (it normally ends with _exit itself). */
int ad_isolate_worker_main(int argc, char **argv);

#endif /* AD_TOOLS_ISOLATE_H */

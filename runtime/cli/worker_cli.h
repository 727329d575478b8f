/*
 * worker_cli.h -- `agentd worker --redis URL [...]`: runs the queue's jobs
 * (docs/workers.md). main.c takes the worker's own options out with
 * ad_worker_cli_args(), loads the config, the key, the tools and the
 * transport as for a run, and hands them to ad_worker_cli_run().
 */
#ifndef AD_WORKER_CLI_H
#define AD_WORKER_CLI_H

#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "provider/transport.h"
#include "tools/host.h"

typedef struct ad_worker_cli {
    bool on; /* the command line is `agentd worker ...` */
    const char *redis, *group, *prefix, *name;
    int concurrency, max_deliveries;
    double lease_s, grace_s, keep_s;
    bool quiet;
} ad_worker_cli;

/* When argv[1] is "worker": fills w, and leaves in argv (argc updated) the
 * options a run also has (-c/--config, -m/--model, --base-url, --max-steps,
 * -q/--quiet) for main's parser. Returns -1 to go on, or an exit status
 * (--help: 0; a usage error: 2, said on stderr). Otherwise w->on stays
 * false and nothing changes. */
int ad_worker_cli_args(ad_worker_cli *w, int *argc, char **argv);

/* Runs the worker until SIGTERM or SIGINT (the first: stop taking jobs,
 * let the running ones finish for --grace seconds, then hand them back; a
 * second: hand them back now). Returns the exit status: 0 stopped, 1 could
 * not start (hiredis missing), 2 a bad --redis URL. */
int ad_worker_cli_run(const ad_worker_cli *w, uv_loop_t *loop, ad_transport *transport,
                      const ad_config *cfg, ad_tool_host *tools);

#endif /* AD_WORKER_CLI_H */

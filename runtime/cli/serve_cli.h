/*
 * serve_cli.h -- `agentd serve`: the front end of the server (serve/api.h).
 */
#ifndef AD_SERVE_CLI_H
#define AD_SERVE_CLI_H

#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "core/events.h"
#include "tools/host.h"

/* What main.c shares with the server, so that both set up the same way.
 * load_tools: loads the configured tools (main.c's, reporting through ev);
 * returns -1 with *out set, or an exit code. protect_key: keeps the API
 * key now in cfg out of core files, /proc and the environment. */
typedef struct ad_serve_hooks {
    int (*load_tools)(const ad_config *cfg, ad_events *ev, bool quiet, uv_loop_t *loop,
                      ad_tool_host **out);
    void (*protect_key)(const ad_config *cfg);
} ad_serve_hooks;

/* `agentd serve ...` with argv[0] = "serve". Returns the exit code: 0
 * after a drain, 1 runtime failure, 2 usage or config error. */
int ad_serve_cli(int argc, char **argv, const ad_serve_hooks *hooks);

#endif /* AD_SERVE_CLI_H */

/*
 * repl.h -- the interactive session: `agentd --repl`, or a terminal on
 * stdin and no -p.
 *
 * One conversation (one ad_agent) across turns; each prompt is one
 * ad_agent_run on the caller's loop. Lines are read with libedit between
 * turns (blocking, so stdin never becomes non-blocking); the loop runs only
 * while a turn is in progress. Slash commands (/help lists them) act on the
 * conversation between turns.
 */
#ifndef AD_REPL_H
#define AD_REPL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include "core/agent.h"
#include "base/config.h"
#include "core/events.h"
#include "tools/host.h"

/* Everything borrowed; the agent must have no run in progress. */
typedef struct ad_repl_opts {
    uv_loop_t *loop;
    ad_agent *agent;
    const ad_config *cfg;
    const ad_tool_host *tools; /* may be NULL */
    ad_events *events;     /* the agent's hub: the REPL adds its view's sink for the
                              session and removes it at the end */
    const char *first_prompt; /* -p with --repl: sent before the first read; may be NULL */
    bool quiet;               /* no tool lines */
    bool yes;                 /* run tools that need approval without asking */
    FILE *out;                /* agentd's own stdout (NULL: stdout); plugins write to fd 1 */
} ad_repl_opts;

/* Runs the session on stdin/stdout/stderr until /exit, Ctrl-D, or a second
 * Ctrl-C at an empty prompt. Returns the process exit code (0). */
int ad_repl_run(const ad_repl_opts *o);

/* The history file: $XDG_STATE_HOME/agentd/history, else
 * $HOME/.local/state/agentd/history. Returns a new string, or NULL when
 * neither variable is set. */
char *ad_repl_history_path(void);

#endif /* AD_REPL_H */

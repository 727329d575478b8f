/*
 * stdio.h -- the MCP stdio transport: the server is a child process, one
 * JSON-RPC message per line on its stdin and stdout.
 *
 * The server is started with uv_spawn in a session (and process group) of
 * its own, so that a terminal's Ctrl-C reaches agentd only, and agentd
 * decides how its servers end. Its environment is exactly what the caller
 * builds (ad_mcp_env_build: a minimal inherited set plus what the config
 * names). Its stdout is read into a growable line buffer: a line longer
 * than max_line is skipped and reported (on_log, AD_MCP_LOG_WARN), never
 * fatal; empty lines are dropped; a trailing CR is dropped. Its stderr is
 * its log: each line goes to on_log (AD_MCP_LOG_INFO, long lines cut to
 * 4 KiB), and the last lines are kept for error messages (log_tail).
 *
 * The end: the server exiting, or closing its stdout, ends the connection
 * (on_closed, once the rest of its output is read, with how it exited: a
 * server that closes its stdout but lives on is stopped as below). stop()
 * follows the specification: close the server's stdin (after what was
 * queued is written), wait stdin_grace_s for it to exit, send SIGTERM to
 * its process group, wait term_grace_s, send SIGKILL. Whatever is left of
 * the server's process group when it exits is sent SIGKILL too.
 */
#ifndef AD_MCP_STDIO_H
#define AD_MCP_STDIO_H

#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "mcp/transport.h"

typedef struct ad_mcp_stdio_opts {
    const char *command;    /* run as execvp does, with PATH from env */
    const char *const *args; /* the arguments after the program's name */
    size_t nargs;
    const char *cwd;        /* NULL: agentd's */
    char *const *env;       /* NULL-terminated: the server's whole environment */
    size_t max_line;        /* bytes of one line on stdout; 0: 64 MiB */
    double stdin_grace_s;   /* stop(): wait after closing stdin; <= 0: 2 s */
    double term_grace_s;    /* stop(): wait after SIGTERM; <= 0: 2 s */
} ad_mcp_stdio_opts;

/* A transport for o (copied). Returns NULL on ENOMEM. Nothing is started
 * before open(). */
ad_mcp_transport *ad_mcp_stdio_new(uv_loop_t *loop, const ad_mcp_stdio_opts *o);

/* The environment of a server: HOME LOGNAME PATH SHELL TERM USER as
 * agentd has them, then env[0..nenv) (NAME, VALUE: set or replaced), then
 * each name of pass[0..npass) that is set in agentd's environment. A
 * variable whose value holds secret (when it is at least AD_REDACT_MIN
 * bytes long) is left out. Returns a NULL-terminated array of "NAME=VALUE"
 * (free with ad_mcp_env_free), or NULL on ENOMEM. */
char **ad_mcp_env_build(const ad_header *env, size_t nenv, char *const *pass, size_t npass,
                        const char *secret);
void ad_mcp_env_free(char **env);

#endif /* AD_MCP_STDIO_H */

/*
 * provider.h -- the configured MCP servers as one tool provider of the tool
 * host (tools/provider.h), next to the .so plugins.
 *
 * Every enabled [mcp.servers.NAME] gets a client (client.h) on the host's
 * loop. The tools of the servers that are up form the provider's list:
 * model-facing names PREFIX__tool (names.h, one map over every server, so
 * that they never clash among themselves), the server's description, a
 * cleaned copy of its inputSchema as parameters (the original is kept and
 * arguments are validated against it too), origin "mcp:NAME". A tool the
 * server config leaves out (enabled_tools, disabled_tools, tasks) is not
 * offered. When a server's list changes (tools/list_changed, a restart, a
 * new HTTP session) the provider's list is rebuilt and the host told
 * (ad_tool_host_changed): the next request carries the new list.
 *
 * A call: started at once (or queued by the client until its server is
 * ready again); notifications/progress becomes the job's progress; the
 * result becomes the tool message (content.h), capped at [mcp]
 * max_result_bytes; isError, a JSON-RPC error, a timeout and a server that
 * is down become error results that say what happened. The timeout is the
 * server's tool_timeout_s (notifications/cancelled at the limit); the host's
 * own deadline is pushed past it (grace_s). A call the host stops (its
 * deadline, Ctrl-C) is cancelled with notifications/cancelled.
 *
 * Faults: a server that goes down is restarted with backoff (1 s doubling
 * to 30 s, 5 times in a row; a session that stayed up 30 s starts the count
 * afresh); its tools stay listed meanwhile, calls to it wait for it within
 * their timeout, and a call in flight when it died fails at once with the
 * end and the stderr tail. A server that stays down is FAILED: its tools
 * leave the list.
 *
 * Log lines (the servers' stderr and notifications/message, agentd's notes
 * about a server) go to the host's log with the origin "mcp:NAME": stderr
 * and info at debug level, warnings and errors as such.
 */
#ifndef AD_MCP_PROVIDER_H
#define AD_MCP_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "base/config.h"
#include "tools/host.h"

typedef struct ad_mcp_provider_opts {
    int max_restarts;         /* attempts in a row after a failure; 0: 5; < 0: none */
    double backoff_initial_s; /* 0: 1 s */
    double backoff_max_s;     /* 0: 30 s */
} ad_mcp_provider_opts;

/* Adds the enabled MCP servers of cfg (borrowed: it must outlive the host)
 * to host as one provider and starts them, then runs the host's loop until
 * each has finished its first attempt (ready, or failed: a server that
 * cannot start, or does not finish initialize and tools/list within its
 * startup_timeout_s). o may be NULL. Returns 0 (nothing is added when no
 * server is enabled); AD_EINVAL with err naming the first required server
 * that did not come up and why; AD_ENOMEM. A server that is not required
 * and did not come up is reported with a warning in the host's log ("its
 * tools are left out") and restarted in the background; its tools join
 * the list when it comes up. */
int ad_mcp_provider_add(ad_tool_host *host, const ad_config *cfg, const ad_mcp_provider_opts *o,
                        char *err, size_t errlen);

/* The MCP provider of host, or NULL. */
ad_tool_provider *ad_mcp_provider_find(const ad_tool_host *host);

/* Each server's state for people (the REPL's /mcp): one line per server,
 * "  NAME  TRANSPORT  STATE  N tools  SERVERINFO", then why it is down when
 * it is. */
void ad_mcp_provider_print(const ad_tool_provider *p, FILE *out);

#endif /* AD_MCP_PROVIDER_H */

/*
 * conf.h -- MCP clients from [mcp.servers.NAME] settings, and which of a
 * server's tools are offered.
 *
 * The glue every front end needs (`agentd mcp ...`, the tool provider):
 * a server's settings become a transport (stdio: the command with its args,
 * cwd and environment, see stdio.h; Streamable HTTP: the url with the
 * headers and the bearer token, see http.h) and a client (timeouts,
 * restarts).
 */
#ifndef AD_MCP_CONF_H
#define AD_MCP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "mcp/client.h"

/* A client for server s (not started). max_restarts as for
 * ad_mcp_client_opts. Returns NULL with err set: bearer_token_env names a
 * variable that is not set, or ENOMEM. The environment is built here
 * (ad_mcp_env_build), with cfg->api_key (if read) kept out of it. */
ad_mcp_client *ad_mcp_client_from_conf(uv_loop_t *loop, const ad_config *cfg,
                                       const ad_mcp_server_conf *s, int max_restarts,
                                       const ad_mcp_client_cb *cb, void *ud, char *err,
                                       size_t errlen);

/* Whether tool t of server s is offered to the model: not when
 * enabled_tools is set and does not name it, when disabled_tools names it,
 * or when it needs tasks (agentd has none). *why (may be NULL) gets the
 * reason when not, for people. */
bool ad_mcp_tool_offered(const ad_mcp_server_conf *s, const ad_mcp_tool *t, const char **why);

#endif /* AD_MCP_CONF_H */

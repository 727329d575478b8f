/*
 * server.h -- agentd as an MCP server: one session of the protocol
 * (specification 2025-11-25) over the tools of a tool host, whatever
 * carries the messages (the stdio and Streamable HTTP fronts of `agentd mcp
 * serve`, runtime/cli/mcp_serve.c).
 *
 * What a session answers:
 *   initialize     the client's protocol version when agentd speaks it
 *                  (2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05), else
 *                  2025-11-25; capabilities tools (listChanged) and logging;
 *                  serverInfo agentd and its version
 *   ping           {}
 *   tools/list     every tool of the host: name, description, inputSchema
 *                  (the provider's schema as it is); no pagination
 *   tools/call     through the host (ad_tool_host_run: the same checks,
 *                  timeouts, isolation and caps as in a run); the result as
 *                  one text block with isError; an unknown tool is the
 *                  JSON-RPC error -32602
 *   logging/setLevel  the lowest level of notifications/message sent
 *   anything else  -32601; a batch -32600; text that is not JSON -32700
 * Notifications: notifications/cancelled stops the call it names (the host
 * stops it: an isolated worker is killed, an MCP server's call cancelled
 * upstream) and no response is sent for it; notifications/initialized and
 * others are taken note of. Responses from the client are dropped (a
 * session sends no requests).
 * While a call runs: its progress (when the request carried
 * _meta.progressToken) becomes notifications/progress, and the lines its
 * tool logs become notifications/message (logger: the tool's name) at or
 * above the session's level (default info). When the host's tool list
 * changes, notifications/tools/list_changed goes out with the next message.
 *
 * Output goes through one callback, message by message, each tagged with
 * the request it belongs to (so that Streamable HTTP can put it on that
 * request's answer). Everything runs on the host's loop thread.
 */
#ifndef AD_MCP_SERVER_H
#define AD_MCP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/config.h"
#include "tools/host.h"

typedef struct ad_mcp_session ad_mcp_session;

/* One message for the client: text[0..len) (one line of JSON, no newline).
 * about: the JSON text of the id of the client's request it belongs to
 * ("3", "\"abc\""), or NULL (a notification about no request). final: it
 * is the response to that request (nothing more comes about it). */
typedef void (*ad_mcp_send_fn)(void *ud, const char *about, const char *text, size_t len,
                               bool final);

/* A session over host; cfg (borrowed, may be NULL) gives each tool's
 * timeout as for a run ([tools.NAME] timeout_s, [agent] tool_timeout_s).
 * NULL on ENOMEM. */
ad_mcp_session *ad_mcp_session_new(ad_tool_host *host, const ad_config *cfg, ad_mcp_send_fn send,
                                   void *ud);
/* One message from the client, text[0..len). Answers may be sent from
 * inside this call (initialize, tools/list, errors) or later (tools/call). */
void ad_mcp_session_handle(ad_mcp_session *s, const char *text, size_t len);
/* Stops the call that the request with this id text started, as if the
 * client had sent notifications/cancelled (Streamable HTTP: its answer's
 * connection is gone). Nothing is sent. */
void ad_mcp_session_cancel(ad_mcp_session *s, const char *about);
/* Calls still running. */
size_t ad_mcp_session_calls(const ad_mcp_session *s);
/* Stops every running call (nothing more is sent) and frees s. */
void ad_mcp_session_free(ad_mcp_session *s);

#endif /* AD_MCP_SERVER_H */

/*
 * client.h -- one MCP session with one server, on the libuv loop.
 *
 * The client owns a transport (transport.h: stdio now, Streamable HTTP
 * later) and runs the lifecycle of the 2025-11-25 specification over it:
 *   initialize (protocolVersion 2025-11-25; answers of 2025-06-18,
 *   2025-03-26 and 2024-11-05 are accepted, any other is refused and the
 *   connection ended), notifications/initialized, tools/list page by page
 *   (opaque cursors) -- then the server is ready. startup_timeout_s bounds
 *   all of that.
 * While ready: notifications/tools/list_changed lists the tools again (the
 * new list replaces the old one when it is complete, and on_tools says
 * so); the server's ping is answered {}; roots/list, sampling/createMessage,
 * elicitation/create and any other request of the server are answered
 * -32601 (agentd declares none of those capabilities); notifications/message
 * goes to on_log; notifications/progress to the call it names.
 *
 * Calls: ad_mcp_call_start sends tools/call with a progress token of its
 * own (unique for the client's life), reports progress, and ends with one
 * on_done. A call's timeout sends notifications/cancelled for it and ends
 * it with AD_MCP_CALL_TIMEOUT; a response that comes after that is
 * dropped. A call started before the server is ready waits for it (its
 * timeout runs meanwhile).
 *
 * Faults: when the connection ends (the server exited, was killed, closed
 * its stdout), every call in flight ends at once with AD_MCP_CALL_DOWN and
 * a message holding the end and the last lines of the server's stderr.
 * Then, up to max_restarts times in a row, the server is started again
 * after a backoff (backoff_initial_s, doubled each time up to
 * backoff_max_s), initialised and listed again; a session that stays ready
 * for 30 s starts the count afresh. After the last attempt (and at once for
 * a protocol version agentd does not speak) the client is FAILED: calls end
 * with AD_MCP_CALL_DOWN at once, the tool list is empty.
 *
 * Every callback runs on the loop thread, from the loop: none is called
 * from inside a function of this API. Strings and JSON handed to callbacks
 * are borrowed for the call.
 */
#ifndef AD_MCP_CLIENT_H
#define AD_MCP_CLIENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mcp/transport.h"

#define AD_MCP_PROTOCOL "2025-11-25"

typedef struct ad_mcp_client ad_mcp_client;
typedef struct ad_mcp_call ad_mcp_call;

typedef enum ad_mcp_state {
    AD_MCP_IDLE,       /* not started yet */
    AD_MCP_STARTING,   /* connecting, initialize, the first tools/list */
    AD_MCP_READY,      /* tools listed; calls go out */
    AD_MCP_RESTARTING, /* down; the next attempt waits for its backoff */
    AD_MCP_FAILED,     /* down for good: ad_mcp_client_error() says why */
    AD_MCP_CLOSING,    /* ad_mcp_client_close() was called */
} ad_mcp_state;

/* "idle", "starting", "ready", "restarting", "failed", "closing". */
const char *ad_mcp_state_name(ad_mcp_state s);

/* One tool as the server listed it. Borrowed from the client; valid until
 * the next on_tools (or the client is freed). */
typedef struct ad_mcp_tool {
    const char *name;          /* the server's name for it, exact */
    const char *title;         /* or NULL */
    const char *description;   /* "" when none */
    json_object *input_schema; /* the server's, untouched ({"type":"object"} if it sent none) */
    json_object *output_schema; /* or NULL */
    bool needs_tasks;          /* execution.taskSupport "required": not callable without tasks */
    json_object *raw;          /* the whole tool object */
} ad_mcp_tool;

typedef struct ad_mcp_client_opts {
    const char *name;           /* the server's name in the config, for messages */
    double startup_timeout_s;   /* connect, initialize and the first tools/list; 0 = none */
    double request_timeout_s;   /* agentd's other requests (tools/list again); 0 = startup's */
    int max_restarts;           /* attempts in a row after a failure; 0 = none */
    double backoff_initial_s;   /* <= 0: 1 s */
    double backoff_max_s;       /* <= 0: 30 s */
    const char *client_name;    /* clientInfo.name; NULL: "agentd" */
    const char *client_version; /* clientInfo.version; NULL: the build's */
} ad_mcp_client_opts;

typedef struct ad_mcp_client_cb {
    /* The state changed; msg says why for RESTARTING and FAILED (else
     * NULL). May be NULL. */
    void (*on_state)(void *ud, ad_mcp_client *c, ad_mcp_state state, const char *msg);
    /* The tool list was replaced by a different one (the first list
     * included; a list that comes back the same after a restart is not
     * reported). May be NULL. */
    void (*on_tools)(void *ud, ad_mcp_client *c);
    /* A line for the server's log: its stderr (AD_MCP_LOG_INFO, logger
     * "stderr"), notifications/message (its level; logger as sent, or
     * NULL), or agentd's own note about the session (a skipped line, a
     * restart; logger NULL). May be NULL. */
    void (*on_log)(void *ud, ad_mcp_client *c, int level, const char *logger, const char *msg);
} ad_mcp_client_cb;

/* A client that owns t (freed with the client). o and cb are copied.
 * NULL on ENOMEM (t is then freed too). Nothing starts before
 * ad_mcp_client_start(). */
ad_mcp_client *ad_mcp_client_new(uv_loop_t *loop, ad_mcp_transport *t,
                                 const ad_mcp_client_opts *o, const ad_mcp_client_cb *cb,
                                 void *ud);
/* Starts the first attempt. Its outcome comes through on_state (READY or,
 * after the attempts, FAILED). */
void ad_mcp_client_start(ad_mcp_client *c);
/* Ends the session: calls in flight are cancelled (notifications/cancelled,
 * no on_done), the transport is stopped (stdio: stdin closed, SIGTERM,
 * SIGKILL), then on_closed(ud) (may be NULL) and the client is freed. No
 * other callback comes after this call. */
void ad_mcp_client_close(ad_mcp_client *c, void (*on_closed)(void *ud), void *ud);

ad_mcp_state ad_mcp_client_state(const ad_mcp_client *c);
/* Why the last attempt failed, or NULL. */
const char *ad_mcp_client_error(const ad_mcp_client *c);
/* What initialize said: the protocol version agreed, serverInfo (borrowed
 * object or NULL), instructions (or NULL). NULL before the first one. */
const char *ad_mcp_client_protocol(const ad_mcp_client *c);
json_object *ad_mcp_client_server_info(const ad_mcp_client *c);
const char *ad_mcp_client_instructions(const ad_mcp_client *c);

/* The tools of the last complete list. */
size_t ad_mcp_client_tool_count(const ad_mcp_client *c);
const ad_mcp_tool *ad_mcp_client_tool(const ad_mcp_client *c, size_t i);
const ad_mcp_tool *ad_mcp_client_find_tool(const ad_mcp_client *c, const char *name);
/* Changes whenever on_tools is called. */
uint64_t ad_mcp_client_generation(const ad_mcp_client *c);

/* ---- calls --------------------------------------------------------------- */

typedef enum ad_mcp_call_status {
    AD_MCP_CALL_OK,      /* the server answered: result is the CallToolResult (isError may be true) */
    AD_MCP_CALL_ERROR,   /* the server answered with a JSON-RPC error: code, message */
    AD_MCP_CALL_TIMEOUT, /* no answer within the timeout (notifications/cancelled was sent) */
    AD_MCP_CALL_DOWN,    /* the server is not running, or ended during the call */
} ad_mcp_call_status;

typedef struct ad_mcp_outcome {
    ad_mcp_call_status status;
    json_object *result; /* AD_MCP_CALL_OK */
    int64_t code;        /* AD_MCP_CALL_ERROR: the JSON-RPC error code */
    const char *message; /* all but OK: for people (the server's stderr tail for DOWN) */
} ad_mcp_outcome;

typedef struct ad_mcp_call_cb {
    /* notifications/progress for the call: progress, total (<= 0: not
     * sent), message (or NULL). May be NULL. */
    void (*on_progress)(void *ud, double progress, double total, const char *message);
    /* The end, exactly once unless the call is cancelled. */
    void (*on_done)(void *ud, const ad_mcp_outcome *out);
} ad_mcp_call_cb;

/* Calls tool (the server's exact name) with args (a JSON object;
 * borrowed: a reference is taken; NULL: {}). timeout_s 0 = none. cb is
 * copied. Returns the call (on_done follows from the loop), or NULL on
 * ENOMEM. */
ad_mcp_call *ad_mcp_call_start(ad_mcp_client *c, const char *tool, json_object *args,
                               double timeout_s, const ad_mcp_call_cb *cb, void *ud);
/* Stops a call that has not ended: notifications/cancelled with reason
 * (may be NULL) when the request went out, no on_done, and the call is
 * freed. A response that comes later is dropped. */
void ad_mcp_call_cancel(ad_mcp_call *call, const char *reason);

#endif /* AD_MCP_CLIENT_H */

/*
 * http.h -- the MCP Streamable HTTP transport (specification 2025-11-25)
 * over the project's HTTP transport (provider/transport.h: libcurl multi on
 * the loop).
 *
 * Each message the client sends is a POST of its own to the endpoint, with
 * `Accept: application/json, text/event-stream`. The answer to a request is
 * either one JSON body or an SSE stream that carries the server's
 * notifications and requests about it and, at last, the response. The
 * session id the server gives in the initialize answer (MCP-Session-Id) is
 * sent back with every later request, as is MCP-Protocol-Version (the
 * version initialize agreed on).
 *
 * Faults and what the transport does:
 *  - an SSE answer that ends (or whose connection breaks) before its
 *    response came, after an event with an `id:`: resumed with a GET that
 *    carries Last-Event-ID, after the stream's `retry:` delay (default 1 s),
 *    again while each resumption brings something new (max_resumes in a row
 *    that bring nothing); a dropped connection is not a cancellation.
 *  - 404 to a message that carried a session id (or 400 whose body names
 *    the session, as some servers answer): the session expired. A new one is
 *    started with the initialize request the client sent last, then
 *    notifications/initialized, then the message is sent again (messages
 *    sent meanwhile wait); on_session tells the client, which lists the
 *    tools again. Two expiries in a row without one good exchange between
 *    end the connection (on_closed).
 *  - the endpoint cannot be reached (no connection at all): on_closed, the
 *    server is down.
 *  - any other failure of a request (an error status, a broken answer that
 *    cannot be resumed, a message past max_message): on_request_failed for
 *    its id, so that the call ends at once; the status and the first line of
 *    the body go to log_tail.
 * After initialization a GET opens the server's own stream (its
 * notifications and requests not tied to a request of ours): 405 or 404
 * means it has none, which is fine; a stream that ends is opened again
 * after its retry delay. notifications/cancelled for a request also ends
 * that request's SSE answer here. stop() ends every exchange but the
 * notifications on their way (the cancellations of calls that end with the
 * session), then sends DELETE with the session id; it is over when those
 * are done, or after delete_timeout_s.
 *
 * The headers given (the config's headers, Authorization) go with every
 * request and are never logged or put into a message.
 */
#ifndef AD_MCP_HTTP_H
#define AD_MCP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "mcp/transport.h"
#include "provider/transport.h"

typedef struct ad_mcp_http_opts {
    const char *url;             /* the endpoint */
    const char *shown_url;       /* how messages name it; NULL: "its url" (a url from ${...}) */
    const char *const *headers;  /* "Name: value" for every request; copied */
    size_t nheaders;
    size_t max_message;          /* one JSON body or SSE event; 0: 64 MiB */
    double connect_timeout_s;    /* 0: 10 s */
    double delete_timeout_s;     /* stop(): the DELETE's limit; 0: 2 s */
    double default_retry_s;      /* resuming without a retry: field; 0: 1 s */
    int max_resumes;             /* resumptions in a row that bring nothing; 0: 3 */
    bool no_listen;              /* do not open the server's own GET stream */
} ad_mcp_http_opts;

/* A transport for o (copied) over x (borrowed; it must outlive the MCP
 * transport), or over a curl transport of its own when x is NULL (closed
 * with it: run the loop once more after free). NULL on ENOMEM. */
ad_mcp_transport *ad_mcp_http_new(uv_loop_t *loop, ad_transport *x, const ad_mcp_http_opts *o);

#endif /* AD_MCP_HTTP_H */

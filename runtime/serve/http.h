/*
 * http.h -- a small HTTP/1.1 server on a libuv loop: requests in, whole
 * responses or server-sent event streams out, with the limits and
 * deadlines a server on a network needs.
 *
 * Each connection is a uv_tcp_t. A request's head is checked strictly
 * before it is parsed (prescan.h), then parsed by llhttp; the body is read
 * whole (Content-Length or chunked) and the request handed to the handler,
 * which answers now or later: ad_http_respond() for a whole response, or
 * ad_http_sse_begin() / ad_http_sse_write() / ad_http_sse_end() for a
 * stream. One request per connection at a time; keep-alive, no pipelining
 * (bytes that arrive while a request is handled wait, up to
 * max_header_bytes, and are parsed after its response).
 *
 * Answered here, before the handler sees anything:
 *   - a head the prescan refuses (400, 414, 431, 501, 505) and a body the
 *     parser refuses (400), then the connection closes;
 *   - a missing or wrong bearer token (401, "WWW-Authenticate: Bearer"),
 *     on every path but the open ones (GET /health), before the body is
 *     read; compared in constant time;
 *   - a body over max_body_bytes (413, at the head when Content-Length says
 *     so, else as soon as the chunks pass it);
 *   - Expect: 100-continue gets its interim response once those passed;
 *     any other expectation 417;
 *   - a request that arrives while the server drains (503).
 * Errors are JSON in the OpenAI shape: {"error":{"message","type","code"}}.
 *
 * Limits on connections: past max_connections in all, or past
 * max_connections_per_peer from one address, a new connection gets a 503
 * and is closed at once.
 *
 * Deadlines (each 0 = none): the head must be complete within
 * header_timeout_s of the connection's first byte (of its accept for the
 * first request), the body within body_timeout_s of the head; a keep-alive
 * connection waits idle_timeout_s for its next request. Past the first two
 * the client gets 408 and the connection closes; an idle one just closes.
 *
 * Output: writes are queued on the socket. A stream whose queue passes a
 * quarter of max_write_queue (at least 16 KiB) tells its writer to wait
 * (ad_http_sse_write returns AD_HTTP_FULL, and on_drain follows when the
 * queue is back under an eighth); a queue past max_write_queue, or one the
 * client has not taken a byte of for write_timeout_s, drops the
 * connection. A stream with nothing to say for sse_keepalive_s gets a
 * comment line (": keep-alive"), so proxies and clients see it alive.
 *
 * Lifetime of a request: from the handler's call until its response is
 * complete (ad_http_respond, ad_http_sse_end) or its connection is gone.
 * on_gone (see ad_http_req_set_cb) reports the latter: the client closed
 * the connection, was dropped, or the server shuts down; the request is
 * invalid after on_gone returns. Callbacks never run from inside an
 * ad_http_* call the handler makes: a failed write returns an error, and
 * on_gone follows from the loop.
 *
 * Threads: the loop thread only.
 */
#ifndef AD_SERVE_HTTP_H
#define AD_SERVE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct ad_http_server ad_http_server;
typedef struct ad_http_req ad_http_req;

typedef struct ad_http_opts {
    size_t max_header_bytes; /* request line and headers (16 KiB) */
    size_t max_headers;      /* header lines (100) */
    size_t max_body_bytes;   /* (4 MiB) */
    size_t max_connections;  /* open at once (4096) */
    size_t max_connections_per_peer; /* from one address (1024) */
    double header_timeout_s; /* (10) */
    double body_timeout_s;   /* (60) */
    double idle_timeout_s;   /* (30) */
    double write_timeout_s;  /* no byte taken by the client for this long (30) */
    size_t max_write_queue;  /* bytes queued for one client (1 MiB) */
    double sse_keepalive_s;  /* comment after this much silence (15) */
    /* The bearer token (copied); NULL: no authentication. */
    const char *token;
} ad_http_opts;

/* Fills o with the defaults above. */
void ad_http_opts_default(ad_http_opts *o);

/* The handler: a complete request. It answers through the req functions
 * below, now or later. */
typedef void (*ad_http_handler_fn)(void *ud, ad_http_req *req);

/* A new server on loop (nothing listens yet); NULL on ENOMEM. */
ad_http_server *ad_http_server_new(uv_loop_t *loop, const ad_http_opts *o,
                                   ad_http_handler_fn fn, void *ud);
/* Listens on host:port (an IPv4 or IPv6 literal; port 0 picks one, see
 * ad_http_server_port). Returns 0, or a negative AD_E* with err naming the
 * address and why. */
int ad_http_server_listen(ad_http_server *s, const char *host, int port, char *err,
                          size_t errlen);
/* The port listened on (after listen), 0 before. */
int ad_http_server_port(const ad_http_server *s);

/* Draining: stops listening, closes idle connections, and answers every
 * request that arrives from now on with 503 (Connection: close); requests
 * being handled go on. on_idle (may be NULL) is called from the loop once
 * no request is being handled any more (at once when none is). */
void ad_http_server_drain(ad_http_server *s, void (*on_idle)(void *ud), void *ud);
/* Number of requests being handled now. */
size_t ad_http_server_active(const ad_http_server *s);
/* Number of open connections. */
size_t ad_http_server_connections(const ad_http_server *s);
/* Closes every connection (on_gone for the requests being handled) and
 * the listener, and frees the server once their handles have closed: run
 * the loop afterwards. */
void ad_http_server_free(ad_http_server *s);

/* ---- a request ---------------------------------------------------------- */

/* Borrowed, valid for the request's lifetime. */
const char *ad_http_method(const ad_http_req *r); /* "GET" */
const char *ad_http_path(const ad_http_req *r);   /* the target up to '?': "/v1/responses" */
const char *ad_http_query(const ad_http_req *r);  /* after '?' ("" when none) */
const char *ad_http_body(const ad_http_req *r, size_t *len); /* "" when none */
/* The first header called name (case-insensitive), value trimmed; NULL. */
const char *ad_http_header(const ad_http_req *r, const char *name);
/* The value of key in the query ("stream" in "stream=true&x=1"), percent-
 * decoded into out (outlen bytes); NULL when absent or longer. */
const char *ad_http_query_param(const ad_http_req *r, const char *key, char *out,
                                size_t outlen);

typedef struct ad_http_req_cb {
    /* The connection is gone before the response was complete (client
     * closed, dropped as a slow reader, server shut down). The request is
     * invalid after this returns. */
    void (*on_gone)(void *ud, ad_http_req *req);
    /* A stream that got AD_HTTP_FULL may write again. */
    void (*on_drain)(void *ud, ad_http_req *req);
} ad_http_req_cb;
void ad_http_req_set_cb(ad_http_req *r, const ad_http_req_cb *cb, void *ud);

enum { AD_HTTP_OK = 0, AD_HTTP_FULL = 1 };

/* A whole response: status, Content-Type (NULL: none), body, extra header
 * lines ("Name: value\r\n..." or NULL). The request is complete: invalid
 * from now on. Returns 0, or AD_ERR when the connection is gone (on_gone
 * follows). */
int ad_http_respond(ad_http_req *r, int status, const char *content_type, const char *body,
                    size_t len, const char *headers);
/* ad_http_respond with an OpenAI-shaped JSON error. */
int ad_http_error(ad_http_req *r, int status, const char *type, const char *code,
                  const char *message);

/* Starts a 200 text/event-stream response (chunked; the connection stays
 * for the next request afterwards). extra header lines as above. */
int ad_http_sse_begin(ad_http_req *r, const char *headers);
/* Writes bytes of the stream as they are (the caller frames events).
 * Returns AD_HTTP_OK, AD_HTTP_FULL (written; wait for on_drain before
 * writing more) or AD_ERR (the connection is gone or being dropped:
 * on_gone follows). */
int ad_http_sse_write(ad_http_req *r, const char *data, size_t len);
/* Bytes queued for this client now. */
size_t ad_http_queued(const ad_http_req *r);
/* Ends the stream; the request is complete (invalid from now on). */
int ad_http_sse_end(ad_http_req *r);

/* The reason phrase of status ("Not Found"). */
const char *ad_http_reason(int status);

/* Constant-time comparison of a presented secret with the expected one
 * (the time depends on their lengths only). */
bool ad_http_token_equal(const char *given, size_t given_len, const char *want, size_t want_len);

#endif /* AD_SERVE_HTTP_H */

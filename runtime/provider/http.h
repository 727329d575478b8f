/*
 * http.h -- HTTP POSTs on the libuv loop through libcurl's multi interface.
 *
 * One ad_http drives any number of concurrent transfers: curl tells us which
 * sockets to watch (uv_poll) and when to wake up (one uv_timer), and we tell
 * curl what happened (curl_multi_socket_action). Nothing blocks the loop.
 *
 * Callbacks run on the loop thread. on_data runs inside curl's write
 * callback: it must not start or cancel transfers (return non-zero to abort
 * this one instead). on_done runs after curl has let go of the transfer:
 * it may start new transfers; the request is freed when it returns.
 */
#ifndef AD_HTTP_H
#define AD_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "provider/cassette.h"

typedef struct ad_http ad_http;
typedef struct ad_http_req ad_http_req;

typedef struct ad_http_result {
    int curl_code;            /* CURLE_OK when the transfer completed */
    const char *error;        /* curl's message when curl_code != 0; borrowed */
    long status;              /* HTTP status, 0 if none was received */
    const char *content_type; /* media type as sent (may be NULL); borrowed */
    double retry_after_s;     /* from Retry-After / retry-after-ms, -1 when absent */
    int aborted;              /* on_data returned non-zero */
    size_t bytes;             /* body bytes received */
    int timeout;              /* AD_HTTP_TIMEOUT_*: which timeout ended the transfer */
    int transient;            /* a network failure worth another attempt */
    int fatal;                /* retrying cannot help: the same request would
                               * fail the same way (a replay mismatch) */
} ad_http_result;

enum {
    AD_HTTP_TIMEOUT_NONE = 0,
    AD_HTTP_TIMEOUT_CONNECT, /* no connection within connect_timeout_s */
    AD_HTTP_TIMEOUT_IDLE,    /* no byte for idle_timeout_s */
    AD_HTTP_TIMEOUT_TOTAL    /* the whole transfer took longer than timeout_s */
};

typedef struct ad_http_callbacks {
    /* Body bytes as they arrive. `status` and `content_type` describe the
     * response. Return 0 to go on, non-zero to abort the transfer. */
    int (*on_data)(void *ud, long status, const char *content_type, const char *data, size_t len);
    /* The transfer ended (completed, failed or aborted). Borrowed result. */
    void (*on_done)(void *ud, const ad_http_result *res);
} ad_http_callbacks;

typedef struct ad_http_opts {
    double timeout_s;         /* whole transfer; 0 = none */
    double connect_timeout_s; /* 0 = curl's default */
    double idle_timeout_s;    /* abort when no byte (header or body) arrives for this long,
                                 counted from the start of the request; 0 = none.
                                 A uv timer reset on every byte: millisecond precision. */
} ad_http_opts;

/* Returns a new client on loop; NULL on failure. curl_global_init must have
 * been called. Free with ad_http_close() and then run the loop once more. */
ad_http *ad_http_new(uv_loop_t *loop);
/* Cancels every transfer (no on_done), releases curl, closes the handles;
 * the memory is released from the last close callback. */
void ad_http_close(ad_http *h);

/*
 * Starts POST url with the given headers ("Name: value" strings, copied) and
 * body. The body is NOT copied (it can be a whole conversation): curl sends
 * it from the caller's buffer, which must stay valid and unchanged until
 * on_done is called or ad_http_cancel() returns (whichever comes first; a
 * replayed request reads it only during this call). From on_done on, the
 * caller may free or reuse it, even before on_done returns (say, to build
 * the next request from inside on_done). Returns the request (owned by h;
 * valid until on_done returns or ad_http_cancel()) or NULL on failure (the
 * body is then not referenced).
 */
ad_http_req *ad_http_post(ad_http *h, const char *url, const char *const *headers,
                          size_t nheaders, const char *body, size_t body_len,
                          const ad_http_opts *opts, const ad_http_callbacks *cb, void *ud);
/* Stops a transfer and frees it; on_done is not called. Not from on_data. */
void ad_http_cancel(ad_http_req *r);

/*
 * Recording: every exchange that got a response is appended to c (borrowed;
 * must outlive h) when it ends: URL, request headers (without
 * Authorization) and body, response status, headers and the body bytes as
 * received, up to AD_CASSETTE_MAX_BODY: a longer body is cut there (the
 * first bytes, nothing after) and the interaction marked resp_truncated.
 * The callbacks still get every byte. The caller redacts
 * (ad_cassette_redact) and saves.
 */
void ad_http_set_recorder(ad_http *h, ad_cassette *c);
/*
 * Replay: no connection is ever made. Each ad_http_post() takes the next
 * interaction of c (borrowed; ad_cassette_next() compares the request) and
 * delivers its status, Content-Type and body through the same callbacks,
 * asynchronously from the loop, in pieces of 1 to 4096 bytes (a fixed
 * pseudo-random sequence, so the same replay splits the same way). A
 * replayed error status comes with retry_after_s = 0: nobody to wait for.
 * A request that differs from the recording, one past the last recorded
 * interaction, or one whose recorded response was cut (resp_truncated) ends
 * with curl_code != 0, fatal = 1 and the reason as the error;
 * ad_http_replay_error() keeps the first such message.
 */
void ad_http_set_replay(ad_http *h, ad_cassette *c);
const char *ad_http_replay_error(const ad_http *h);

#endif /* AD_HTTP_H */

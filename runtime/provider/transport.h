/*
 * transport.h -- one exchange with the model provider, whatever carries it.
 *
 * A transport takes a request (URL, headers, body, time limits), delivers
 * the response's header lines and body bytes as they arrive, then one
 * classified result: the status, which limit ended it, whether another
 * attempt may help. It is a struct of function pointers (as SQLite's VFS
 * is), so that a shim can wrap another one (record.c wraps any transport,
 * as SQLite's vfstrace wraps a VFS). Implementations: curl.c (libcurl multi
 * on the loop), replay.c (answers from a cassette), record.c (records what
 * passes through another transport). The agent does not know which one it
 * talks to; one transport serves any number of exchanges at once, of any
 * number of conversations.
 *
 * Threads and order: everything happens on the loop thread. For each
 * exchange start() returned, the callbacks come later (never from inside
 * start), in this order: on_header for each response header line, on_data
 * for the body bytes in order, then exactly one on_done, unless the caller
 * cancelled first (then nothing more). on_header and on_data must not start
 * or cancel exchanges or close the transport (on_data returns AD_XFER_ABORT
 * to stop its own exchange); they may pause or resume. on_done runs when
 * the transport has let go of the exchange: it may start new exchanges; the
 * exchange is gone when it returns.
 *
 * Backpressure: pause(x, true) stops on_header/on_data for x from the
 * moment it returns (also when called from inside on_data) until
 * pause(x, false); a transport that reads from a socket stops reading it,
 * so the sender is held back by TCP. Resuming delivers what was held, in
 * order, later from the loop (never from inside the pause call). Time
 * spent paused does not count against the idle limit; it counts against
 * the whole-exchange limit (timeout_s), and on_done can still come while
 * paused (that limit, a connection failure).
 */
#ifndef AD_PROVIDER_TRANSPORT_H
#define AD_PROVIDER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ad_transport ad_transport;
typedef struct ad_exchange ad_exchange;

enum {
    AD_XFER_TIMEOUT_NONE = 0,
    AD_XFER_TIMEOUT_CONNECT, /* no connection within connect_timeout_s */
    AD_XFER_TIMEOUT_IDLE,    /* no byte (header or body) for idle_timeout_s */
    AD_XFER_TIMEOUT_TOTAL    /* the whole exchange took longer than timeout_s */
};

typedef struct ad_xfer_req {
    const char *url;
    const char *const *headers; /* "Name: value" strings; copied by start() */
    size_t nheaders;
    /* Not copied (it can be a whole conversation): it must stay valid and
     * unchanged until on_done is called or cancel() returns. From on_done
     * on the caller may free or reuse it, even before on_done returns. */
    const char *body;
    size_t body_len;
    /* NULL or "POST": a POST of body. Any other method ("GET", "DELETE")
     * goes without a body (body is ignored). The curl transport honours it;
     * replay answers POSTs only. */
    const char *method;
    double timeout_s;         /* the whole exchange; 0 = none */
    double connect_timeout_s; /* 0 = the transport's default */
    double idle_timeout_s;    /* no byte for this long, counted from the start
                               * and not while paused; 0 = none */
} ad_xfer_req;

typedef struct ad_xfer_result {
    int code;                 /* 0 when the exchange completed; else the
                               * transport's error code (curl: a CURLcode) */
    const char *error;        /* what went wrong when code != 0 ("Recv failure:
                               * Connection reset by peer") */
    long status;              /* HTTP status, 0 if none was received */
    const char *content_type; /* the response's, as sent; may be NULL */
    const char *proto;        /* "HTTP/1.1", "HTTP/2.0"; NULL without a response */
    double retry_after_s;     /* Retry-After / retry-after-ms; -1 when absent */
    size_t bytes;             /* body bytes delivered */
    int timeout;              /* AD_XFER_TIMEOUT_*: the limit that ended it */
    bool aborted;             /* on_data returned AD_XFER_ABORT */
    bool transient;           /* a network failure another attempt may cure */
    bool fatal;               /* the same request would fail the same way
                               * (a replay mismatch): never retry */
} ad_xfer_result;

enum { AD_XFER_GO = 0, AD_XFER_ABORT = 1 };

/* Everything borrowed for the duration of the call. */
typedef struct ad_xfer_cb {
    /* Body bytes as they arrive; status and content_type describe the
     * response. Returns AD_XFER_GO or AD_XFER_ABORT. */
    int (*on_data)(void *ud, long status, const char *content_type, const char *data, size_t len);
    /* One response header line as received, line end included: the status
     * line ("HTTP/1.1 200 OK\r\n") first, then "Name: value\r\n" lines and
     * the empty line; again for every further response (a redirect, 100
     * Continue). May be NULL. */
    void (*on_header)(void *ud, const char *line, size_t len);
    /* The exchange ended (completed, failed or aborted). */
    void (*on_done)(void *ud, const ad_xfer_result *res);
} ad_xfer_cb;

typedef struct ad_transport_vt {
    const char *name; /* "curl", "replay", "record" */
    /* Starts an exchange (cb is copied); NULL when it cannot (out of
     * memory, the transport is closing): nothing is called back then. */
    ad_exchange *(*start)(ad_transport *t, const ad_xfer_req *req, const ad_xfer_cb *cb,
                          void *ud);
    /* Stops or restarts delivering the response (see backpressure above). */
    void (*pause)(ad_exchange *x, bool paused);
    /* Stops the exchange and frees it; on_done is not called. Not from
     * on_header or on_data. */
    void (*cancel)(ad_exchange *x);
    /* Cancels every exchange (no on_done) and releases the transport; its
     * handles close, so run the loop once more afterwards. */
    void (*close)(ad_transport *t);
} ad_transport_vt;

struct ad_transport {
    const ad_transport_vt *vt;
};

/* Every exchange starts with this header, so that pause and cancel find
 * their transport. */
struct ad_exchange {
    ad_transport *transport;
};

static inline ad_exchange *ad_xfer_start(ad_transport *t, const ad_xfer_req *req,
                                         const ad_xfer_cb *cb, void *ud)
{
    return t->vt->start(t, req, cb, ud);
}

static inline void ad_xfer_pause(ad_exchange *x, bool paused)
{
    x->transport->vt->pause(x, paused);
}

static inline void ad_xfer_cancel(ad_exchange *x)
{
    x->transport->vt->cancel(x);
}

/* Accepts NULL. */
static inline void ad_transport_close(ad_transport *t)
{
    if (t)
        t->vt->close(t);
}

#endif /* AD_PROVIDER_TRANSPORT_H */

/*
 * http.c -- the HTTP/1.1 server (see http.h).
 *
 * A connection moves through states: HEAD (bytes gathered and prescanned
 * until the head is complete), BODY (llhttp reads the body), HANDLER (the
 * handler has the request), SSE (a stream is being written), IDLE
 * (keep-alive, waiting for the next request), LINGER (an error response
 * was sent and the write side shut: what the client still sends is read
 * and dropped for a moment, so that closing with unread bytes does not
 * reset the connection before the client read the response) and CLOSING.
 * One timer per connection carries whichever deadline applies, the write
 * stall check and the SSE keep-alive.
 *
 * Output is gathered per connection and written once per loop iteration
 * (a prepare handle, which runs just before the loop waits), so the events
 * one provider chunk produces go out in one write.
 */
#include "serve/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "serve/prescan.h"

enum { C_HEAD, C_BODY, C_HANDLER, C_SSE, C_IDLE, C_LINGER, C_CLOSING };

/* How long a connection that got an error response is still read from. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1u << 20)
#define READ_BUF (64u * 1024)

typedef struct peer {
    struct peer *next;
    int family;
    unsigned char addr[16];
    size_t n;
} peer;

#define PEER_BUCKETS 256

typedef struct conn conn;

struct ad_http_req {
    conn *c;
    ad_buf url;
    ad_buf hdrs; /* "name\0value\0" ... */
    size_t nh;
    size_t value_start;
    bool want_value;
    ad_buf body;
    const char *method;
    char *path, *query;
    ad_http_req_cb cb;
    void *ud;
    bool live; /* handed to the handler and not complete */
    bool sse;
    bool head; /* HEAD: no body in the response */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    ad_http_server *srv;
    conn *prev, *next;     /* the server's list */
    conn *dirty_next;      /* the server's list of connections with output */
    bool dirty;
    peer *peer;
    char peername[64];
    int state;
    ad_buf in;      /* the request head as gathered, and what followed it */
    ad_buf pending; /* bytes that arrived while a request was handled */
    ad_buf out;     /* output not handed to the socket yet */
    ad_scan scan;
    llhttp_t parser;
    bool complete;  /* llhttp saw the whole message */
    int reject;     /* status to answer from a parser callback */
    const char *reject_type, *reject_code, *reject_msg;
    ad_http_req req;
    uint64_t deadline;      /* HEAD, BODY, IDLE, LINGER: ms (uv_now); 0 none */
    uint64_t last_write;    /* SSE: the last bytes written */
    uint64_t last_progress; /* the client last took bytes, or the queue started */
    size_t lingered;
    bool keep_alive;
    bool http10;
    bool full;        /* the writer was told AD_HTTP_FULL */
    bool close_after; /* close once the output is written */
    bool counted;     /* counts against the limits */
    bool process_pending;
    int open_handles;
};

struct ad_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_prepare_t flush;
    uv_timer_t idle_timer;
    bool listening;
    ad_http_opts o;
    char *token;
    size_t token_len;
    ad_http_handler_fn fn;
    void *ud;
    conn *conns;
    conn *dirty;
    size_t nconns, active;
    peer *peers[PEER_BUCKETS];
    bool draining, freeing;
    void (*on_idle)(void *);
    void *idle_ud;
    int open_handles;
    int port;
    llhttp_settings_t settings;
    char rbuf[READ_BUF];
    bool rbuf_busy;
};

/* ---- small helpers ------------------------------------------------------ */

const char *ad_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

bool ad_http_token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
    volatile unsigned char d = (unsigned char)(given_len != want_len);
    for (size_t i = 0; i < want_len; i++)
        d |= (unsigned char)((unsigned char)want[i] ^ (i < given_len ? (unsigned char)given[i] : 0));
    return d == 0 && want_len > 0;
}

void ad_http_opts_default(ad_http_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_header_bytes = 16u << 10;
    o->max_headers = 100;
    o->max_body_bytes = 4u << 20;
    o->max_connections = 4096;
    o->max_connections_per_peer = 1024;
    o->header_timeout_s = 10;
    o->body_timeout_s = 60;
    o->idle_timeout_s = 30;
    o->write_timeout_s = 30;
    o->max_write_queue = 1u << 20;
    o->sse_keepalive_s = 15;
}

static uint64_t ms_of(double s)
{
    return s > 0 ? (uint64_t)(s * 1000.0 + 0.5) : 0;
}

static size_t high_water(const ad_http_server *s)
{
    size_t h = s->o.max_write_queue / 4;
    return h < 16384 ? 16384 : h;
}

static size_t queued(const conn *c)
{
    return c->out.len + c->tcp.write_queue_size;
}

/* ---- peers -------------------------------------------------------------- */

static unsigned peer_hash(int family, const unsigned char *a)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 16777619u;
    return h % PEER_BUCKETS;
}

static peer *peer_get(ad_http_server *s, int family, const unsigned char *a)
{
    unsigned h = peer_hash(family, a);
    for (peer *p = s->peers[h]; p; p = p->next)
        if (p->family == family && memcmp(p->addr, a, 16) == 0)
            return p;
    peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->family = family;
    memcpy(p->addr, a, 16);
    p->next = s->peers[h];
    s->peers[h] = p;
    return p;
}

static void peer_put(ad_http_server *s, peer *p)
{
    if (!p || --p->n > 0)
        return;
    unsigned h = peer_hash(p->family, p->addr);
    for (peer **pp = &s->peers[h]; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            free(p);
            return;
        }
}

/* ---- the request object ------------------------------------------------- */

static void req_reset(ad_http_req *r)
{
    ad_buf_free(&r->url);
    ad_buf_free(&r->hdrs);
    ad_buf_free(&r->body);
    free(r->path);
    conn *c = r->c;
    memset(r, 0, sizeof *r);
    r->c = c;
}

const char *ad_http_method(const ad_http_req *r)
{
    return r->method ? r->method : "";
}

const char *ad_http_path(const ad_http_req *r)
{
    return r->path ? r->path : "";
}

const char *ad_http_query(const ad_http_req *r)
{
    return r->query ? r->query : "";
}

const char *ad_http_body(const ad_http_req *r, size_t *len)
{
    if (len)
        *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const char *ad_http_header(const ad_http_req *r, const char *name)
{
    const char *p = r->hdrs.data;
    for (size_t i = 0; p && i < r->nh; i++) {
        const char *v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

const char *ad_http_query_param(const ad_http_req *r, const char *key, char *out, size_t outlen)
{
    const char *q = ad_http_query(r);
    size_t kl = strlen(key);
    while (*q) {
        const char *end = strchr(q, '&');
        if (!end)
            end = q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - q) == kl && memcmp(q, key, kl) == 0) {
            size_t n = 0;
            for (const char *p = eq ? eq + 1 : end; p < end; p++) {
                char ch = *p;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%' && end - p >= 3 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                    ch = (char)(hexval(p[1]) * 16 + hexval(p[2]));
                    p += 2;
                }
                if (n + 1 >= outlen)
                    return NULL;
                out[n++] = ch;
            }
            out[n] = '\0';
            return out;
        }
        q = *end ? end + 1 : end;
    }
    return NULL;
}

void ad_http_req_set_cb(ad_http_req *r, const ad_http_req_cb *cb, void *ud)
{
    if (cb)
        r->cb = *cb;
    else
        memset(&r->cb, 0, sizeof r->cb);
    r->ud = ud;
}

/* ---- connections: closing ---------------------------------------------- */

static void arm(conn *c);
static void feed(conn *c, const char *data, size_t len);
static void maybe_idle(ad_http_server *s);

static void server_maybe_free(ad_http_server *s)
{
    if (!s->freeing || s->open_handles > 0 || s->conns)
        return;
    for (int i = 0; i < PEER_BUCKETS; i++)
        while (s->peers[i]) {
            peer *p = s->peers[i];
            s->peers[i] = p->next;
            free(p);
        }
    if (s->token) {
        volatile char *p = s->token;
        while (*p)
            *p++ = 0;
    }
    free(s->token);
    free(s);
}

static void conn_freed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    ad_http_server *s = c->srv;
    if (c->req.live) {
        c->req.live = false;
        s->active--;
        if (c->req.cb.on_gone)
            c->req.cb.on_gone(c->req.ud, &c->req);
    }
    req_reset(&c->req);
    ad_buf_free(&c->in);
    ad_buf_free(&c->pending);
    ad_buf_free(&c->out);
    if (c->counted) {
        s->nconns--;
        peer_put(s, c->peer);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    maybe_idle(s);
    server_maybe_free(s);
}

static void conn_close(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    ad_buf_free(&c->out);
    if (c->dirty) {
        c->dirty = false;
        for (conn **pp = &c->srv->dirty; *pp; pp = &(*pp)->dirty_next)
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, conn_freed);
    uv_close((uv_handle_t *)&c->timer, conn_freed);
}

/* ---- output ------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    char *data;
} wreq;

static void on_write(uv_write_t *w, int status);
static void linger_start(conn *c);

/* A stream keeps its output buffer between writes up to this size
 * (beyond it, and for anything but a stream, the buffer is freed once
 * written): most writes are one event of a stream. */
#define OUT_KEEP 1024

/* The client took everything queued so far (or the part in flight): the
 * deadlines and the waiting writer hear of it. */
static void written(conn *c)
{
    c->last_progress = uv_now(c->srv->loop);
    if (c->close_after && queued(c) == 0) {
        linger_start(c);
        return;
    }
    if (c->full && queued(c) <= high_water(c->srv) / 2) {
        c->full = false;
        if (c->req.live && c->req.cb.on_drain)
            c->req.cb.on_drain(c->req.ud, &c->req);
    }
}

/* Hands c's output to the socket: written at once when the socket takes
 * it all (the usual case, no allocation), else what is left is queued. */
static void flush_conn(conn *c)
{
    c->dirty = false;
    if (c->state == C_CLOSING || c->out.len == 0)
        return;
    bool was_empty = c->tcp.write_queue_size == 0;
    size_t off = 0;
    if (was_empty) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        off = n > 0 ? (size_t)n : 0;
        if (off == c->out.len) {
            if (c->out.cap > OUT_KEEP || c->state != C_SSE)
                ad_buf_free(&c->out);
            else
                ad_buf_reset(&c->out);
            written(c);
            return;
        }
    }
    wreq *wr = malloc(sizeof *wr);
    if (!wr) {
        conn_close(c);
        return;
    }
    wr->data = c->out.data;
    uv_buf_t b = uv_buf_init(c->out.data + off, (unsigned)(c->out.len - off));
    c->out.data = NULL;
    c->out.len = c->out.cap = 0;
    wr->w.data = c;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr->data);
        free(wr);
        conn_close(c);
        return;
    }
    if (was_empty && c->tcp.write_queue_size > 0) {
        c->last_progress = uv_now(c->srv->loop);
        arm(c);
    }
}

static void on_flush(uv_prepare_t *p)
{
    ad_http_server *s = p->data;
    while (s->dirty) {
        conn *c = s->dirty;
        s->dirty = c->dirty_next;
        flush_conn(c);
    }
    uv_prepare_stop(&s->flush);
}

/* Queues bytes for c; written before the loop next waits. */
static int put(conn *c, const char *data, size_t len)
{
    if (c->state == C_CLOSING)
        return AD_ERR;
    if (ad_buf_append(&c->out, data, len) != AD_OK) {
        conn_close(c);
        return AD_ERR;
    }
    if (!c->dirty) {
        ad_http_server *s = c->srv;
        c->dirty = true;
        c->dirty_next = s->dirty;
        s->dirty = c;
        uv_prepare_start(&s->flush, on_flush);
    }
    return AD_OK;
}

static void on_write(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    conn *c = w->data;
    free(wr->data);
    free(wr);
    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    written(c);
}

static void on_shutdown(uv_shutdown_t *sh, int status)
{
    (void)status;
    free(sh);
}

/* After an error response: FIN, then read and drop for a moment. */
static void linger_start(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    if (c->state == C_LINGER)
        return;
    c->state = C_LINGER;
    c->lingered = 0;
    c->deadline = uv_now(c->srv->loop) + LINGER_MS;
    uv_shutdown_t *sh = malloc(sizeof *sh);
    if (!sh || uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sh);
        conn_close(c);
        return;
    }
    arm(c);
}

/* ---- the deadline timer ------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void arm(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    uint64_t now = uv_now(c->srv->loop), due = UINT64_MAX;
    if (c->process_pending)
        due = now;
    if (c->deadline && (c->state == C_HEAD || c->state == C_BODY || c->state == C_IDLE ||
                        c->state == C_LINGER))
        due = c->deadline < due ? c->deadline : due;
    if (c->state == C_SSE && c->srv->o.sse_keepalive_s > 0) {
        uint64_t k = c->last_write + ms_of(c->srv->o.sse_keepalive_s);
        due = k < due ? k : due;
    }
    if (c->srv->o.write_timeout_s > 0 && c->tcp.write_queue_size > 0) {
        uint64_t k = c->last_progress + ms_of(c->srv->o.write_timeout_s);
        due = k < due ? k : due;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void respond_raw(conn *c, int status, const char *type, const char *code,
                        const char *msg, bool close);

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    ad_http_server *s = c->srv;
    uint64_t now = uv_now(s->loop);
    if (c->srv->o.write_timeout_s > 0 && c->tcp.write_queue_size > 0 &&
        now >= c->last_progress + ms_of(s->o.write_timeout_s)) {
        conn_close(c); /* a client that takes nothing is dropped */
        return;
    }
    if (c->process_pending) {
        c->process_pending = false;
        if (c->state == C_IDLE && c->pending.len) {
            ad_buf b = c->pending;
            c->pending = (ad_buf)AD_BUF_INIT;
            feed(c, b.data, b.len);
            ad_buf_free(&b);
            if (c->state == C_CLOSING)
                return;
        }
    }
    if (c->deadline && now >= c->deadline) {
        switch (c->state) {
        case C_IDLE:
        case C_LINGER:
            conn_close(c);
            return;
        case C_HEAD:
        case C_BODY:
            c->deadline = 0;
            respond_raw(c, 408, "invalid_request_error", "request_timeout",
                        c->state == C_HEAD ? "the request head did not arrive in time"
                                           : "the request body did not arrive in time",
                        true);
            return;
        default:
            break;
        }
    }
    if (c->state == C_SSE && s->o.sse_keepalive_s > 0 &&
        now >= c->last_write + ms_of(s->o.sse_keepalive_s)) {
        static const char ka[] = ": keep-alive\n\n";
        char frame[64];
        int n = c->http10 ? snprintf(frame, sizeof frame, "%s", ka)
                          : snprintf(frame, sizeof frame, "%zx\r\n%s\r\n", sizeof ka - 1, ka);
        if (put(c, frame, (size_t)n) != AD_OK)
            return;
        c->last_write = now;
    }
    arm(c);
}

/* ---- responses ---------------------------------------------------------- */

static void error_body(ad_buf *b, const char *type, const char *code, const char *msg)
{
    json_object *e = json_object_new_object(), *o = json_object_new_object();
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(e, "type", json_object_new_string(type));
    json_object_object_add(e, "param", NULL);
    json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
    json_object_object_add(o, "error", e);
    ad_buf_puts(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

/* The head and body of a whole response into c's output. */
static int put_response(conn *c, int status, const char *ctype, const char *body, size_t len,
                        const char *headers, bool keep, bool head_only)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, ad_http_reason(status));
    if (ctype)
        ad_buf_printf(&b, "Content-Type: %s\r\n", ctype);
    ad_buf_printf(&b, "Content-Length: %zu\r\n", len);
    if (status == 401)
        ad_buf_puts(&b, "WWW-Authenticate: Bearer\r\n");
    if (!keep)
        ad_buf_puts(&b, "Connection: close\r\n");
    else if (c->http10)
        ad_buf_puts(&b, "Connection: keep-alive\r\n");
    if (headers)
        ad_buf_puts(&b, headers);
    ad_buf_puts(&b, "\r\n");
    if (!head_only && len)
        ad_buf_append(&b, body, len);
    int rc = b.data ? put(c, b.data, b.len) : AD_ERR;
    ad_buf_free(&b);
    return rc;
}

/* A response the server makes itself (errors before or instead of the
 * handler). With close, the connection lingers and closes afterwards. */
static void respond_raw(conn *c, int status, const char *type, const char *code,
                        const char *msg, bool close)
{
    ad_buf body = AD_BUF_INIT;
    error_body(&body, type, code, msg);
    int rc = put_response(c, status, "application/json", body.data, body.len, NULL, !close,
                          false);
    ad_buf_free(&body);
    if (rc != AD_OK)
        return;
    if (close) {
        c->close_after = true;
        c->state = C_HANDLER; /* nothing more is parsed */
        c->deadline = 0;
        uv_timer_stop(&c->timer);
    }
}

/* The request is complete: ready the connection for the next one. */
static void request_done(conn *c, bool keep)
{
    ad_http_server *s = c->srv;
    if (c->req.live) {
        c->req.live = false;
        s->active--;
    }
    req_reset(&c->req);
    if (!keep || s->draining) {
        c->close_after = true;
        c->state = C_HANDLER;
        uv_timer_stop(&c->timer);
        if (queued(c) == 0)
            linger_start(c);
        maybe_idle(s);
        return;
    }
    c->state = C_IDLE;
    c->deadline = s->o.idle_timeout_s > 0 ? uv_now(s->loop) + ms_of(s->o.idle_timeout_s) : 0;
    if (c->pending.len)
        c->process_pending = true;
    arm(c);
    maybe_idle(s);
}

int ad_http_respond(ad_http_req *r, int status, const char *content_type, const char *body,
                    size_t len, const char *headers)
{
    conn *c = r->c;
    if (!r->live || r->sse || c->state == C_CLOSING)
        return AD_ERR;
    bool keep = c->keep_alive && !c->srv->draining;
    if (put_response(c, status, content_type, body, len, headers, keep, r->head) != AD_OK)
        return AD_ERR;
    request_done(c, keep);
    return AD_OK;
}

int ad_http_error(ad_http_req *r, int status, const char *type, const char *code,
                  const char *message)
{
    ad_buf body = AD_BUF_INIT;
    error_body(&body, type, code, message);
    int rc = body.data ? ad_http_respond(r, status, "application/json", body.data, body.len, NULL)
                       : AD_ERR;
    ad_buf_free(&body);
    return rc;
}

int ad_http_sse_begin(ad_http_req *r, const char *headers)
{
    conn *c = r->c;
    if (!r->live || r->sse || c->state == C_CLOSING)
        return AD_ERR;
    ad_buf b = AD_BUF_INIT;
    ad_buf_puts(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                    "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    if (headers)
        ad_buf_puts(&b, headers);
    ad_buf_puts(&b, c->http10 ? "Connection: close\r\n\r\n" : "Transfer-Encoding: chunked\r\n\r\n");
    int rc = b.data ? put(c, b.data, b.len) : AD_ERR;
    ad_buf_free(&b);
    if (rc != AD_OK)
        return AD_ERR;
    r->sse = true;
    c->state = C_SSE;
    c->last_write = uv_now(c->srv->loop);
    arm(c);
    return AD_OK;
}

size_t ad_http_queued(const ad_http_req *r)
{
    return queued(r->c);
}

int ad_http_sse_write(ad_http_req *r, const char *data, size_t len)
{
    conn *c = r->c;
    if (!r->live || !r->sse || c->state != C_SSE)
        return AD_ERR;
    if (len == 0)
        return c->full ? AD_HTTP_FULL : AD_HTTP_OK;
    int rc;
    if (c->http10) {
        rc = put(c, data, len);
    } else {
        static const char hex[] = "0123456789abcdef";
        char frame[24];
        size_t n = sizeof frame - 2;
        frame[n] = '\r';
        frame[n + 1] = '\n';
        size_t x = len;
        do {
            frame[--n] = hex[x & 15];
            x >>= 4;
        } while (x);
        rc = ad_buf_reserve(&c->out, sizeof frame - n + len + 2);
        if (rc == AD_OK)
            rc = put(c, frame + n, sizeof frame - n);
        if (rc == AD_OK)
            rc = put(c, data, len);
        if (rc == AD_OK)
            rc = put(c, "\r\n", 2);
    }
    if (rc != AD_OK)
        return AD_ERR;
    c->last_write = uv_now(c->srv->loop);
    size_t q = queued(c);
    if (q > c->srv->o.max_write_queue) {
        conn_close(c); /* a reader this far behind is dropped */
        return AD_ERR;
    }
    if (q > high_water(c->srv))
        c->full = true;
    return c->full ? AD_HTTP_FULL : AD_HTTP_OK;
}

int ad_http_sse_end(ad_http_req *r)
{
    conn *c = r->c;
    if (!r->live || !r->sse || c->state != C_SSE)
        return AD_ERR;
    if (!c->http10 && put(c, "0\r\n\r\n", 5) != AD_OK)
        return AD_ERR;
    c->full = false;
    request_done(c, !c->http10 && c->keep_alive);
    return AD_OK;
}

/* ---- parsing ------------------------------------------------------------ */

static conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static int reject(conn *c, int status, const char *type, const char *code, const char *msg)
{
    c->reject = status;
    c->reject_type = type;
    c->reject_code = code;
    c->reject_msg = msg;
    return -1;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return ad_buf_append(&conn_of(p)->req.url, at, len) == AD_OK ? 0 : -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return ad_buf_append(&conn_of(p)->req.hdrs, at, len) == AD_OK ? 0 : -1;
}

static int on_header_field_complete(llhttp_t *p)
{
    ad_http_req *r = &conn_of(p)->req;
    if (ad_buf_putc(&r->hdrs, '\0') != AD_OK)
        return -1;
    r->nh++;
    r->want_value = true;
    r->value_start = r->hdrs.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return ad_buf_append(&conn_of(p)->req.hdrs, at, len) == AD_OK ? 0 : -1;
}

static int on_header_value_complete(llhttp_t *p)
{
    ad_http_req *r = &conn_of(p)->req;
    while (r->hdrs.len > r->value_start &&
           (r->hdrs.data[r->hdrs.len - 1] == ' ' || r->hdrs.data[r->hdrs.len - 1] == '\t'))
        r->hdrs.len--;
    r->want_value = false;
    return ad_buf_putc(&r->hdrs, '\0') == AD_OK ? 0 : -1;
}

static bool open_path(const ad_http_req *r)
{
    return strcmp(r->path, "/health") == 0 &&
           (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0);
}

static int check_token(conn *c)
{
    ad_http_server *s = c->srv;
    if (!s->token || open_path(&c->req))
        return 0;
    const char *h = ad_http_header(&c->req, "authorization");
    if (!h)
        return reject(c, 401, "invalid_request_error", "missing_token",
                      "this server needs a bearer token: Authorization: Bearer TOKEN");
    if (strncasecmp(h, "bearer ", 7) != 0)
        return reject(c, 401, "invalid_request_error", "invalid_token",
                      "the Authorization header must be 'Bearer TOKEN'");
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    if (!ad_http_token_equal(t, strlen(t), s->token, s->token_len))
        return reject(c, 401, "invalid_request_error", "invalid_token", "the bearer token is wrong");
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn *c = conn_of(p);
    ad_http_req *r = &c->req;
    ad_http_server *s = c->srv;
    if (r->want_value && ad_buf_putc(&r->hdrs, '\0') != AD_OK)
        return -1;
    r->want_value = false;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->head = strcmp(r->method, "HEAD") == 0;
    r->path = ad_strdup(r->url.data ? r->url.data : "");
    if (!r->path)
        return -1;
    char *q = strchr(r->path, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    if (s->draining)
        return reject(c, 503, "server_error", "draining", "the server is shutting down");
    if (check_token(c) != 0)
        return -1;
    if (c->scan.has_length && c->scan.length > s->o.max_body_bytes)
        return reject(c, 413, "invalid_request_error", "body_too_large",
                      "the request body is larger than serve.max_body_bytes");
    const char *expect = ad_http_header(r, "expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0)
            return reject(c, 417, "invalid_request_error", "expectation_failed",
                          "only 'Expect: 100-continue' is supported");
        if (!c->http10 && (c->scan.chunked || c->scan.length > 0)) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (put(c, cont, sizeof cont - 1) != AD_OK)
                return -1;
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = conn_of(p);
    if (c->req.body.len + len > c->srv->o.max_body_bytes)
        return reject(c, 413, "invalid_request_error", "body_too_large",
                      "the request body is larger than serve.max_body_bytes");
    return ad_buf_append(&c->req.body, at, len) == AD_OK ? 0 : -1;
}

static int on_message_complete(llhttp_t *p)
{
    conn *c = conn_of(p);
    c->complete = true;
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
}

static void dispatch(conn *c)
{
    ad_http_server *s = c->srv;
    c->state = C_HANDLER;
    c->deadline = 0;
    uv_timer_stop(&c->timer);
    c->req.live = true;
    s->active++;
    s->fn(s->ud, &c->req);
}

/* Runs llhttp over data (head, then body bytes as they come). */
static void parse(conn *c, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (c->complete) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        if (e == HPE_PAUSED && pos && pos >= data && pos < data + len &&
            ad_buf_append(&c->pending, pos, (size_t)(data + len - pos)) != AD_OK) {
            conn_close(c);
            return;
        }
        dispatch(c);
        return;
    }
    if (e == HPE_OK)
        return;
    if (c->reject) {
        respond_raw(c, c->reject, c->reject_type, c->reject_code, c->reject_msg, true);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "malformed request: %s", llhttp_get_error_reason(&c->parser));
    respond_raw(c, 400, "invalid_request_error", "bad_request", msg, true);
}

static void start_request(conn *c)
{
    ad_http_server *s = c->srv;
    c->state = C_HEAD;
    c->complete = false;
    c->reject = 0;
    c->close_after = false;
    ad_scan_init(&c->scan, s->o.max_header_bytes, s->o.max_headers);
    c->deadline = s->o.header_timeout_s > 0 ? uv_now(s->loop) + ms_of(s->o.header_timeout_s) : 0;
    arm(c);
}

static void feed(conn *c, const char *data, size_t len)
{
    ad_http_server *s = c->srv;
    switch (c->state) {
    case C_IDLE:
        start_request(c);
        /* fall through */
    case C_HEAD: {
        if (ad_buf_append(&c->in, data, len) != AD_OK) {
            conn_close(c);
            return;
        }
        int rc = ad_scan_feed(&c->scan, c->in.data, c->in.len);
        if (rc == AD_SCAN_MORE)
            return;
        if (rc == AD_SCAN_BAD) {
            ad_buf_free(&c->in);
            respond_raw(c, c->scan.status, "invalid_request_error", "bad_request", c->scan.why,
                        true);
            return;
        }
        c->http10 = c->scan.http10;
        c->state = C_BODY;
        c->deadline = s->o.body_timeout_s > 0 ? uv_now(s->loop) + ms_of(s->o.body_timeout_s) : 0;
        llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
        c->parser.data = c;
        ad_buf in = c->in;
        c->in = (ad_buf)AD_BUF_INIT;
        parse(c, in.data + c->scan.skipped, in.len - c->scan.skipped);
        ad_buf_free(&in);
        if (c->state == C_BODY)
            arm(c);
        return;
    }
    case C_BODY:
        parse(c, data, len);
        return;
    case C_HANDLER:
    case C_SSE:
        if (c->close_after)
            return; /* an error response is on its way; the rest is dropped */
        /* The next request, early: kept until this one is answered. */
        if (c->pending.len + len > s->o.max_header_bytes ||
            ad_buf_append(&c->pending, data, len) != AD_OK)
            conn_close(c);
        return;
    case C_LINGER:
        c->lingered += len;
        if (c->lingered > LINGER_MAX_BYTES)
            conn_close(c);
        return;
    default:
        return;
    }
}

/* ---- accepting and reading ---------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    ad_http_server *s = c->srv;
    /* One buffer for every connection: libuv reads into it and calls
     * on_read before it reads another stream. */
    if (s->rbuf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    s->rbuf_busy = true;
    buf->base = s->rbuf;
    buf->len = sizeof s->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    ad_http_server *s = c->srv;
    if (buf->base == s->rbuf)
        s->rbuf_busy = false;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            return;
        /* The client closed (or the connection broke): a request it was
         * waiting for is gone with it. */
        conn_close(c);
        return;
    }
    feed(c, buf->base, (size_t)nread);
}

static void reject_conn(ad_http_server *s, conn *c, const char *why)
{
    ad_buf body = AD_BUF_INIT, b = AD_BUF_INIT;
    error_body(&body, "server_error", "too_many_connections", why);
    ad_buf_printf(&b, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                  body.len, body.data ? body.data : "");
    if (b.data) {
        uv_buf_t ub = uv_buf_init(b.data, (unsigned)b.len);
        uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    }
    ad_buf_free(&body);
    ad_buf_free(&b);
    (void)s;
    conn_close(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    ad_http_server *s = ls->data;
    if (status < 0 || s->freeing)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    c->req.c = c;
    c->tcp.data = c;
    c->timer.data = c;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->open_handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    c->state = C_IDLE;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    unsigned char key[16] = {0};
    int family = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char host[INET6_ADDRSTRLEN] = "?";
        family = ss.ss_family;
        if (family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            memcpy(key, &a->sin_addr, 4);
            uv_ip4_name(a, host, sizeof host);
            snprintf(c->peername, sizeof c->peername, "%s:%d", host, ntohs(a->sin_port));
        } else if (family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            memcpy(key, &a->sin6_addr, 16);
            uv_ip6_name(a, host, sizeof host);
            snprintf(c->peername, sizeof c->peername, "[%s]:%d", host, ntohs(a->sin6_port));
        }
    }
    if (s->draining) {
        conn_close(c);
        return;
    }
    if (s->o.max_connections && s->nconns >= s->o.max_connections) {
        reject_conn(s, c, "too many connections (serve.max_connections)");
        return;
    }
    peer *p = peer_get(s, family, key);
    if (!p) {
        conn_close(c);
        return;
    }
    if (s->o.max_connections_per_peer && p->n >= s->o.max_connections_per_peer) {
        reject_conn(s, c, "too many connections from this address (serve.max_connections_per_peer)");
        return;
    }
    p->n++;
    c->peer = p;
    c->counted = true;
    s->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);
    start_request(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* ---- the server --------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    ad_http_server *s = h->data;
    s->open_handles--;
    server_maybe_free(s);
}

static void on_idle_timer(uv_timer_t *t)
{
    ad_http_server *s = t->data;
    if (s->draining && s->active == 0 && s->on_idle) {
        void (*fn)(void *) = s->on_idle;
        s->on_idle = NULL;
        fn(s->idle_ud);
    }
}

static void maybe_idle(ad_http_server *s)
{
    if (s->draining && s->active == 0 && s->on_idle && !s->freeing)
        uv_timer_start(&s->idle_timer, on_idle_timer, 0, 0);
}

ad_http_server *ad_http_server_new(uv_loop_t *loop, const ad_http_opts *o,
                                   ad_http_handler_fn fn, void *ud)
{
    ad_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->o = *o;
    if (o->token && o->token[0]) {
        s->token = ad_strdup(o->token);
        if (!s->token) {
            free(s);
            return NULL;
        }
        s->token_len = strlen(s->token);
    }
    s->o.token = NULL;
    s->fn = fn;
    s->ud = ud;
    llhttp_settings_init(&s->settings);
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_field_complete = on_header_field_complete;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &s->listener);
    uv_prepare_init(loop, &s->flush);
    uv_timer_init(loop, &s->idle_timer);
    s->listener.data = s->flush.data = s->idle_timer.data = s;
    s->open_handles = 3;
    return s;
}

int ad_http_server_listen(ad_http_server *s, const char *host, int port, char *err,
                          size_t errlen)
{
    struct sockaddr_storage ss;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        ad_errf(err, errlen, "cannot listen on '%s': not an IPv4 or IPv6 address", host);
        return AD_EINVAL;
    }
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection)) != 0) {
        ad_errf(err, errlen, "cannot listen on %s%s%s:%d: %s", strchr(host, ':') ? "[" : "", host,
                strchr(host, ':') ? "]" : "", port, uv_strerror(rc));
        return AD_ERR;
    }
    struct sockaddr_storage bound;
    int bl = sizeof bound;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &bl) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    s->listening = true;
    return AD_OK;
}

int ad_http_server_port(const ad_http_server *s)
{
    return s->port;
}

size_t ad_http_server_active(const ad_http_server *s)
{
    return s->active;
}

size_t ad_http_server_connections(const ad_http_server *s)
{
    return s->nconns;
}

void ad_http_server_drain(ad_http_server *s, void (*on_idle)(void *ud), void *ud)
{
    s->draining = true;
    s->on_idle = on_idle;
    s->idle_ud = ud;
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->listener, handle_closed);
    }
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        /* Idle, and heads not complete yet (nobody waits for an answer to
         * them): closed. The others finish. */
        if (c->state == C_IDLE || (c->state == C_HEAD && c->in.len == 0))
            conn_close(c);
    }
    maybe_idle(s);
}

void ad_http_server_free(ad_http_server *s)
{
    if (!s)
        return;
    s->freeing = true;
    s->on_idle = NULL;
    for (conn *c = s->conns; c; c = c->next)
        conn_close(c);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, handle_closed);
    uv_close((uv_handle_t *)&s->flush, handle_closed);
    uv_close((uv_handle_t *)&s->idle_timer, handle_closed);
}

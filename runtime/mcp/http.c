/*
 * http.c -- the MCP Streamable HTTP transport (see http.h).
 *
 * Data flow: send() turns each message into an exchange record (hx) and
 * POSTs it. What comes back (a JSON body, or SSE events) is parsed just
 * enough to know whether it is the response to the request the exchange
 * carries (then the exchange is answered) and, for initialize, which
 * protocol version was agreed on; every message then goes to an event queue.
 * The queue is drained from a uv_idle handle, so that the client's
 * callbacks never run inside the HTTP transport's callbacks (where starting
 * or cancelling exchanges is not allowed) nor inside an API function. The
 * transport's own decisions (a request failed, the session was replaced,
 * the connection is gone, the stop is over) go through the same queue, in
 * order after the messages that came before them.
 *
 * Invariants:
 *  - An hx is on h->xs while it lives (started, waiting for its resume
 *    timer, or held for a new session); hx_free unlinks it, cancels its
 *    exchange (never from inside that exchange's callbacks: on_done clears
 *    hx->x first, on_data returns AD_XFER_ABORT instead) and frees it from
 *    its timer's close callback.
 *  - At most one new session is under way (ST_REINIT); messages sent
 *    meanwhile, and those that met the expiry, are held and sent in order
 *    once it is there.
 *  - The transport's memory goes when its last uv handle closed (the idle
 *    handle and one timer per hx).
 */
#include "mcp/http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/json.h"
#include "mcp/jsonrpc.h"
#include "provider/curl.h"
#include "provider/sse.h"

#define DEFAULT_MAX ((size_t)64 << 20)
#define TAIL_MAX 2048
#define ERR_BODY_MAX 4096
#define MAX_EXPIRIES 2     /* new sessions in a row without a good exchange */
#define NOTE_TIMEOUT_S 30  /* a notification's or response's POST */
#define ID_MAX 1024        /* a session id or event id we send back */

typedef struct ad_mcp_http ad_mcp_http;

enum hx_kind {
    HX_POST,     /* one message of the client's */
    HX_LISTEN,   /* the server's own stream (GET) */
    HX_DELETE,   /* the end of the session */
    HX_REINIT,   /* initialize again, for a new session */
    HX_REINITED, /* notifications/initialized of the new session */
};

enum mode { M_NONE, M_SSE, M_JSON, M_ERR };

enum state { ST_CLOSED, ST_OPEN, ST_REINIT, ST_STOPPING };

typedef struct hx {
    struct hx *next, *prev;
    ad_mcp_http *h;
    enum hx_kind kind;
    ad_exchange *x;
    char *body;
    size_t len;
    bool is_request, is_init, is_initialized;
    int64_t rid;
    char *method;       /* for messages: the message's method, or NULL */
    bool answered;
    bool session_sent;
    unsigned gen;       /* the session it was sent in */
    bool resuming;      /* x is a GET with Last-Event-ID */
    bool held;
    int fruitless;      /* resumptions in a row that brought nothing */
    bool got_event;
    /* the response under way */
    enum mode mode;
    long status;
    char *hdr_session;
    ad_sse *sse;
    ad_buf buf;         /* a JSON body, or the start of an error body */
    bool too_big;
    char *last_id;      /* the SSE stream's last event id */
    long retry_ms;
    bool reinit_ok;
    char *reinit_err;
    uv_timer_t timer;   /* the resume delay */
} hx;

enum ev_kind { EV_MSG, EV_FAILED, EV_SESSION, EV_CLOSED, EV_STOPPED, EV_LOG };

typedef struct ev {
    struct ev *next;
    enum ev_kind kind;
    int64_t id;
    int level;
    size_t len;
    char text[];
} ev;

struct ad_mcp_http {
    ad_mcp_transport base;
    uv_loop_t *loop;
    ad_transport *x;
    bool own_x;
    char *url, *shown;
    char **hdrs;
    size_t nhdrs;
    size_t max_message;
    double connect_timeout_s, delete_timeout_s, default_retry_s;
    int max_resumes;
    bool listen;

    enum state state;
    char *session, *protocol;
    char *init_text;
    size_t init_len;
    unsigned gen;
    int expiries;
    hx *xs;
    hx *listen_hx;
    int listen_fruitless;

    ev *q, *q_tail;
    uv_idle_t idle;
    bool idle_on;
    uv_timer_t stop_timer; /* stop(): the limit for what still goes out */
    bool delete_sent;
    void (*on_stopped)(void *ud);
    void *stopped_ud;
    ad_buf tail;
    int handles;
    bool freeing;
};

/* ---- the event queue ------------------------------------------------------ */

static void on_idle(uv_idle_t *idle);

static void push(ad_mcp_http *h, enum ev_kind kind, int64_t id, int level, const char *text,
                 size_t len)
{
    if (h->freeing)
        return;
    ev *e = malloc(sizeof *e + len + 1);
    if (!e)
        return;
    e->next = NULL;
    e->kind = kind;
    e->id = id;
    e->level = level;
    e->len = len;
    if (len)
        memcpy(e->text, text, len);
    e->text[len] = '\0';
    if (h->q_tail)
        h->q_tail->next = e;
    else
        h->q = e;
    h->q_tail = e;
    if (!h->idle_on) {
        h->idle_on = true;
        uv_idle_start(&h->idle, on_idle);
    }
}

static void push_str(ad_mcp_http *h, enum ev_kind kind, int64_t id, const char *s)
{
    push(h, kind, id, 0, s ? s : "", s ? strlen(s) : 0);
}

static void logf_(ad_mcp_http *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(ad_mcp_http *h, int level, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.data)
        push(h, EV_LOG, 0, level, b.data, b.len);
    ad_buf_free(&b);
}

/* Drops what is queued for the client (a stop makes it moot). */
static void drop_queue(ad_mcp_http *h)
{
    while (h->q) {
        ev *e = h->q;
        h->q = e->next;
        free(e);
    }
    h->q_tail = NULL;
}

static void reset_session(ad_mcp_http *h)
{
    free(h->session);
    free(h->protocol);
    free(h->init_text);
    h->session = h->protocol = h->init_text = NULL;
    h->init_len = 0;
    h->expiries = 0;
    h->listen_fruitless = 0;
}

static void on_idle(uv_idle_t *idle)
{
    ad_mcp_http *h = idle->data;
    while (h->q && !h->freeing) {
        ev *e = h->q;
        h->q = e->next;
        if (!h->q)
            h->q_tail = NULL;
        const ad_mcp_transport_cb *cb = h->base.cb;
        void *ud = h->base.ud;
        switch (e->kind) {
        case EV_MSG:
            if (cb && cb->on_message)
                cb->on_message(ud, e->text, e->len);
            break;
        case EV_LOG:
            if (cb && cb->on_log)
                cb->on_log(ud, e->level, e->text);
            break;
        case EV_FAILED:
            if (cb && cb->on_request_failed)
                cb->on_request_failed(ud, e->id, e->text);
            break;
        case EV_SESSION:
            if (cb && cb->on_session)
                cb->on_session(ud);
            break;
        case EV_CLOSED:
            if (cb && cb->on_closed)
                cb->on_closed(ud, e->text);
            break;
        case EV_STOPPED: {
            h->state = ST_CLOSED;
            reset_session(h);
            void (*done)(void *) = h->on_stopped;
            void *dud = h->stopped_ud;
            h->on_stopped = NULL;
            if (done)
                done(dud);
            break;
        }
        }
        free(e);
    }
    if (!h->q && h->idle_on && !h->freeing) {
        h->idle_on = false;
        uv_idle_stop(&h->idle);
    }
}

/* ---- small helpers -------------------------------------------------------- */

static void tail_add(ad_mcp_http *h, const char *line, size_t len)
{
    ad_buf_append(&h->tail, line, len);
    ad_buf_putc(&h->tail, '\n');
    if (h->tail.len > TAIL_MAX) {
        size_t cut = h->tail.len - TAIL_MAX;
        const char *nl = memchr(h->tail.data + cut, '\n', h->tail.len - cut);
        cut = nl ? (size_t)(nl + 1 - h->tail.data) : h->tail.len;
        memmove(h->tail.data, h->tail.data + cut, h->tail.len - cut);
        h->tail.len -= cut;
        h->tail.data[h->tail.len] = '\0';
    }
}

/* Visible ASCII (0x21-0x7E), 1..ID_MAX bytes: what may go back in a
 * header. */
static bool token_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || n >= ID_MAX)
            return false;
    return n > 0;
}

static json_object *parse_json(const char *text, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(256);
    if (!tok)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, text, (int)(len > 0x7fffffff ? 0x7fffffff : len));
    if (o && json_tokener_get_parse_end(tok) < len) {
        /* trailing whitespace only */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++) {
            if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t') {
                json_object_put(o);
                o = NULL;
                break;
            }
        }
    }
    json_tokener_free(tok);
    return o;
}

/* The first line of an error body, at most 200 bytes, for a message. */
static void first_line(const ad_buf *b, char *out, size_t cap)
{
    size_t n = 0;
    const char *s = b->data ? b->data : "";
    while (s[n] && s[n] != '\n' && s[n] != '\r' && n < 200 && n + 1 < cap)
        n++;
    memcpy(out, s, n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = ' ';
}

static const char *where(const ad_mcp_http *h)
{
    return h->shown ? h->shown : "its url";
}

/* ---- exchanges ------------------------------------------------------------ */

static void on_hx_closed(uv_handle_t *handle)
{
    hx *e = handle->data;
    ad_mcp_http *h = e->h;
    free(e->body);
    free(e->method);
    free(e->hdr_session);
    free(e->last_id);
    free(e->reinit_err);
    ad_sse_free(e->sse);
    ad_buf_free(&e->buf);
    free(e);
    if (--h->handles == 0)
        free(h);
}

static void hx_link(ad_mcp_http *h, hx *e)
{
    e->prev = NULL;
    e->next = h->xs;
    if (h->xs)
        h->xs->prev = e;
    h->xs = e;
}

static void hx_free(hx *e)
{
    ad_mcp_http *h = e->h;
    if (e->prev)
        e->prev->next = e->next;
    else if (h->xs == e)
        h->xs = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->next = e->prev = NULL;
    if (h->listen_hx == e)
        h->listen_hx = NULL;
    if (e->x) {
        ad_xfer_cancel(e->x);
        e->x = NULL;
    }
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, on_hx_closed);
}

static hx *hx_new(ad_mcp_http *h, enum hx_kind kind)
{
    hx *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->h = h;
    e->kind = kind;
    e->retry_ms = -1;
    e->gen = h->gen;
    uv_timer_init(h->loop, &e->timer);
    e->timer.data = e;
    h->handles++;
    hx_link(h, e);
    return e;
}

static void free_all(ad_mcp_http *h)
{
    while (h->xs)
        hx_free(h->xs);
}

/* The connection is gone: every exchange ends, the client hears it once. */
static void down(ad_mcp_http *h, const char *why)
{
    if (h->state == ST_CLOSED || h->state == ST_STOPPING)
        return;
    h->state = ST_CLOSED;
    free_all(h);
    push_str(h, EV_CLOSED, 0, why);
}

static void fail_req(hx *e, const char *why)
{
    ad_mcp_http *h = e->h;
    char line[600];
    int n = snprintf(line, sizeof line, "%s: %s", e->method ? e->method : "request", why);
    tail_add(h, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    if (e->is_request)
        push_str(h, EV_FAILED, e->rid, why);
    hx_free(e);
}

static void hx_begin_response(hx *e)
{
    e->mode = M_NONE;
    e->status = 0;
    free(e->hdr_session);
    e->hdr_session = NULL;
    ad_buf_reset(&e->buf);
    e->too_big = false;
    if (e->sse)
        ad_sse_reset(e->sse);
}

static void hx_start(hx *e);

/* One message that came back on e's answer. */
static void incoming(hx *e, const char *text, size_t len)
{
    ad_mcp_http *h = e->h;
    json_object *root = parse_json(text, len);
    json_object *idv = NULL, *method = NULL;
    if (root && json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "id", &idv) &&
        !json_object_object_get_ex(root, "method", &method)) {
        int64_t id;
        if ((e->is_request || e->kind == HX_REINIT) && ad_rpc_id_int(idv, &id) && id == e->rid) {
            e->answered = true;
            json_object *res = NULL;
            bool ok = json_object_object_get_ex(root, "result", &res) &&
                      json_object_is_type(res, json_type_object);
            if (ok && (e->is_init || e->kind == HX_REINIT)) {
                const char *v = ad_json_str(res, "protocolVersion");
                if (v && token_ok(v) && strlen(v) < 64) {
                    free(h->protocol);
                    h->protocol = ad_strdup(v);
                }
            }
            if (e->kind == HX_REINIT) {
                e->reinit_ok = ok;
                if (!ok) {
                    json_object *err = NULL;
                    json_object_object_get_ex(root, "error", &err);
                    const char *m = err ? ad_json_str(err, "message") : NULL;
                    free(e->reinit_err);
                    e->reinit_err = ad_strdup(m ? m : "an error");
                }
                json_object_put(root);
                return; /* the client's initialize was answered long ago */
            }
        }
    }
    json_object_put(root);
    push(h, EV_MSG, 0, 0, text, len);
}

static int on_sse_event(void *ud, const char *event, size_t elen, const char *data, size_t dlen)
{
    hx *e = ud;
    e->got_event = true;
    if (elen && strcmp(event, "message") != 0)
        return 0;
    if (dlen == 0)
        return 0; /* a priming event: an id to resume from, no message */
    incoming(e, data, dlen);
    return 0;
}

static void adopt_session(hx *e)
{
    ad_mcp_http *h = e->h;
    if (!(e->is_init || e->kind == HX_REINIT))
        return;
    free(h->session);
    h->session = NULL;
    if (e->hdr_session) {
        if (token_ok(e->hdr_session))
            h->session = ad_strdup(e->hdr_session);
        else
            logf_(h, AD_MCP_LOG_WARN,
                  "the server's MCP-Session-Id is not visible ASCII of at most %d bytes: it is "
                  "not sent back",
                  ID_MAX);
    }
}

static void on_x_header(void *ud, const char *line, size_t len)
{
    hx *e = ud;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        hx_begin_response(e);
        return;
    }
    static const char name[] = "mcp-session-id:";
    if (len > sizeof name - 1 && strncasecmp(line, name, sizeof name - 1) == 0) {
        const char *v = line + sizeof name - 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        free(e->hdr_session);
        e->hdr_session = ad_strndup(v, (size_t)(end - v));
    }
}

static void track_id(hx *e)
{
    const char *id = ad_sse_last_id(e->sse);
    if (!e->last_id || strcmp(e->last_id, id) != 0) {
        free(e->last_id);
        e->last_id = id[0] && token_ok(id) ? ad_strdup(id) : NULL;
        e->got_event = true;
    }
    long r = ad_sse_retry_ms(e->sse);
    if (r >= 0)
        e->retry_ms = r;
}

static int on_x_data(void *ud, long status, const char *ct, const char *data, size_t len)
{
    hx *e = ud;
    ad_mcp_http *h = e->h;
    if (e->mode == M_NONE) {
        e->status = status;
        if (status >= 200 && status < 300) {
            adopt_session(e);
            if (ct && strncasecmp(ct, "text/event-stream", 17) == 0) {
                e->mode = M_SSE;
                if (!e->sse)
                    e->sse = ad_sse_new(h->max_message, on_sse_event, e);
                if (!e->sse)
                    return AD_XFER_ABORT;
            } else {
                e->mode = M_JSON;
            }
        } else {
            e->mode = M_ERR;
        }
    }
    switch (e->mode) {
    case M_SSE: {
        int rc = ad_sse_feed(e->sse, data, len);
        track_id(e);
        if (rc == AD_ETOOBIG)
            e->too_big = true;
        return rc == 0 ? AD_XFER_GO : AD_XFER_ABORT;
    }
    case M_JSON:
        if (len > h->max_message - e->buf.len) {
            e->too_big = true;
            return AD_XFER_ABORT;
        }
        return ad_buf_append(&e->buf, data, len) == AD_OK ? AD_XFER_GO : AD_XFER_ABORT;
    default:
        if (e->buf.len < ERR_BODY_MAX)
            ad_buf_append(&e->buf, data,
                          len < ERR_BODY_MAX - e->buf.len ? len : ERR_BODY_MAX - e->buf.len);
        return AD_XFER_GO;
    }
}

/* A JSON body: one message, or (an older server's) array of them. */
static void json_body(hx *e)
{
    if (!e->buf.len)
        return;
    json_object *root = parse_json(e->buf.data, e->buf.len);
    if (root && json_object_is_type(root, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(root); i++) {
            const char *s = json_object_to_json_string_ext(json_object_array_get_idx(root, i),
                                                           JSON_C_TO_STRING_PLAIN);
            incoming(e, s, strlen(s));
        }
    } else {
        incoming(e, e->buf.data, e->buf.len);
    }
    json_object_put(root);
}

static bool connect_failed(const ad_xfer_result *r)
{
    if (r->status)
        return false;
    return r->code == CURLE_COULDNT_CONNECT || r->code == CURLE_COULDNT_RESOLVE_HOST ||
           r->code == CURLE_COULDNT_RESOLVE_PROXY || r->timeout == AD_XFER_TIMEOUT_CONNECT;
}

static bool names_session(const ad_buf *b)
{
    if (!b->data)
        return false;
    for (const char *p = b->data; *p; p++)
        if (strncasecmp(p, "session", 7) == 0)
            return true;
    return false;
}

static void on_resume_timer(uv_timer_t *t)
{
    hx *e = t->data;
    e->resuming = true;
    e->got_event = false;
    hx_start(e);
}

static void schedule_resume(hx *e)
{
    ad_mcp_http *h = e->h;
    double s = e->retry_ms >= 0 ? (double)e->retry_ms / 1000 : h->default_retry_s;
    logf_(h, AD_MCP_LOG_DEBUG, "the answer to %s broke off after event %s: resuming in %gs",
          e->method ? e->method : "a request", e->last_id, s);
    uv_timer_start(&e->timer, on_resume_timer, (uint64_t)(s * 1000 + 0.5), 0);
}

static void open_listen(ad_mcp_http *h);
static void start_reinit(ad_mcp_http *h, long status);

/* e met an expired session: it goes again in a new one. */
static void expired(hx *e)
{
    ad_mcp_http *h = e->h;
    e->held = true;
    e->answered = false;
    if (h->state == ST_REINIT)
        return; /* a new session is under way: e goes with the others */
    if (e->gen != h->gen) {
        /* Sent in a session already replaced: just send it again. */
        e->held = false;
        hx_start(e);
        return;
    }
    if (++h->expiries > MAX_EXPIRIES) {
        char why[256];
        snprintf(why, sizeof why,
                 "ended its session again right after a new one was started (HTTP %ld to the "
                 "session id)",
                 e->status);
        down(h, why);
        return;
    }
    start_reinit(h, e->status);
}

static void post_done(hx *e, const ad_xfer_result *r)
{
    ad_mcp_http *h = e->h;
    bool ok = r->code == 0 && r->status >= 200 && r->status < 300;
    char why[700], line[256];
    if (connect_failed(r)) {
        snprintf(why, sizeof why, "could not be reached at %s (%s)", where(h),
                 r->error ? r->error : "no connection");
        down(h, why);
        return;
    }
    if (e->answered) {
        h->expiries = 0;
        hx_free(e);
        return;
    }
    if (!e->resuming && e->session_sent && r->status &&
        (r->status == 404 || (r->status == 400 && names_session(&e->buf)))) {
        expired(e);
        return;
    }
    if (!e->is_request) {
        if (ok) {
            h->expiries = 0;
            if (e->is_initialized)
                open_listen(h);
        } else {
            first_line(&e->buf, line, sizeof line);
            if (r->code)
                logf_(h, AD_MCP_LOG_WARN, "%s may not have reached the server: %s",
                      e->method ? e->method : "a response", r->error ? r->error : "failed");
            else
                logf_(h, AD_MCP_LOG_WARN, "the server answered %s with HTTP %ld%s%s",
                      e->method ? e->method : "a response", r->status, line[0] ? ": " : "", line);
            if (e->is_initialized)
                open_listen(h);
        }
        hx_free(e);
        return;
    }
    if (e->too_big) {
        snprintf(why, sizeof why,
                 "it answered with a message longer than the limit of %zu bytes ([limits] "
                 "max_response_bytes)",
                 h->max_message);
        fail_req(e, why);
        return;
    }
    bool sse_broke = e->mode == M_SSE || (r->code && e->resuming && !r->status);
    if (e->resuming)
        e->fruitless = e->got_event ? 0 : e->fruitless + 1;
    if (sse_broke && e->last_id && (ok || r->code) && e->fruitless < h->max_resumes) {
        schedule_resume(e);
        return;
    }
    if (ok && e->mode == M_SSE)
        snprintf(why, sizeof why, "the server ended its answer without a response%s",
                 e->last_id ? " (resuming it brought nothing)" : "");
    else if (ok)
        snprintf(why, sizeof why, "the server answered HTTP %ld without a response", r->status);
    else if (r->code && e->resuming && e->fruitless >= h->max_resumes)
        snprintf(why, sizeof why, "its answer broke off and could not be resumed (%s)",
                 r->error ? r->error : "failed");
    else if (r->code)
        snprintf(why, sizeof why, "the connection broke before the server answered (%s)",
                 r->error ? r->error : "failed");
    else {
        first_line(&e->buf, line, sizeof line);
        snprintf(why, sizeof why, "%sHTTP %ld%s%s%s", e->resuming ? "resuming its answer: " : "",
                 r->status, line[0] ? ": " : "", line,
                 (r->status == 401 || r->status == 403) && e->is_init
                     ? " (the server wants credentials: headers or bearer_token_env)"
                     : "");
    }
    fail_req(e, why);
}

static void listen_done(hx *e, const ad_xfer_result *r)
{
    ad_mcp_http *h = e->h;
    bool ok = r->status >= 200 && r->status < 300 && e->mode == M_SSE;
    if (h->state != ST_OPEN) {
        hx_free(e);
        return;
    }
    if (!ok) {
        if (r->status)
            logf_(h, AD_MCP_LOG_DEBUG, "the server offers no stream of its own (HTTP %ld)",
                  r->status);
        else
            logf_(h, AD_MCP_LOG_DEBUG, "the server's own stream failed: %s",
                  r->error ? r->error : "no answer");
        hx_free(e);
        return;
    }
    h->listen_fruitless = e->got_event ? 0 : h->listen_fruitless + 1;
    if (h->listen_fruitless >= h->max_resumes) {
        logf_(h, AD_MCP_LOG_INFO, "the server's own stream keeps ending empty: not opened again");
        hx_free(e);
        return;
    }
    /* The stream ended or broke: opened again after its retry delay. */
    e->resuming = e->last_id != NULL;
    e->got_event = false;
    double s = e->retry_ms >= 0 ? (double)e->retry_ms / 1000 : h->default_retry_s;
    uv_timer_start(&e->timer, on_resume_timer, (uint64_t)(s * 1000 + 0.5), 0);
}

static void reinited(ad_mcp_http *h)
{
    h->state = ST_OPEN;
    h->gen++;
    /* The held messages go in the order they were sent (h->xs is newest
     * first). */
    size_t n = 0;
    for (hx *e = h->xs; e; e = e->next)
        n += e->held;
    hx **v = calloc(n ? n : 1, sizeof *v);
    size_t k = n;
    for (hx *e = h->xs; e && v; e = e->next)
        if (e->held)
            v[--k] = e;
    for (size_t i = 0; v && i < n; i++) {
        v[i]->held = false;
        v[i]->gen = h->gen;
        hx_start(v[i]);
        if (h->state != ST_OPEN)
            break;
    }
    free(v);
    if (h->state == ST_OPEN) {
        push_str(h, EV_SESSION, 0, NULL);
        open_listen(h);
    }
}

static void stop_check(ad_mcp_http *h);
static void on_x_done_(hx *e, const ad_xfer_result *r);

static void on_x_done(void *ud, const ad_xfer_result *r)
{
    hx *e = ud;
    ad_mcp_http *h = e->h;
    on_x_done_(e, r);
    stop_check(h);
}

static void on_x_done_(hx *e, const ad_xfer_result *r)
{
    ad_mcp_http *h = e->h;
    e->x = NULL;
    if (h->state == ST_STOPPING) {
        /* What still went out during a stop: its answer is of no use. */
        hx_free(e);
        return;
    }
    if (e->mode == M_JSON && !e->too_big && r->code == 0)
        json_body(e);
    switch (e->kind) {
    case HX_POST:
        post_done(e, r);
        break;
    case HX_LISTEN:
        listen_done(e, r);
        break;
    case HX_DELETE:
        hx_free(e);
        break;
    case HX_REINIT: {
        char why[600];
        if (connect_failed(r)) {
            snprintf(why, sizeof why, "could not be reached at %s (%s)", where(h),
                     r->error ? r->error : "no connection");
            down(h, why);
            return;
        }
        if (!e->answered || !e->reinit_ok) {
            char line[256];
            first_line(&e->buf, line, sizeof line);
            if (e->reinit_err)
                snprintf(line, sizeof line, "%.200s", e->reinit_err);
            if (e->answered || r->code == 0)
                snprintf(why, sizeof why,
                         "ended the session, and a new one could not be started (%s%ld%s%s)",
                         e->answered ? "initialize answered an error; HTTP " : "HTTP ", r->status,
                         line[0] ? ": " : "", line);
            else
                snprintf(why, sizeof why,
                         "ended the session, and a new one could not be started (%s)",
                         r->error ? r->error : "failed");
            down(h, why);
            return;
        }
        hx_free(e);
        hx *n = hx_new(h, HX_REINITED);
        size_t len = 0;
        char *text = n ? ad_rpc_notification("notifications/initialized", NULL, &len) : NULL;
        if (!text) {
            if (n)
                hx_free(n);
            down(h, "ran out of memory");
            return;
        }
        n->body = text;
        n->len = len;
        hx_start(n);
        break;
    }
    case HX_REINITED:
        if (!(r->code == 0 && r->status >= 200 && r->status < 300))
            logf_(h, AD_MCP_LOG_WARN,
                  "the server answered notifications/initialized of the new session with %s",
                  r->code ? (r->error ? r->error : "a failure") : "an error status");
        hx_free(e);
        reinited(h);
        break;
    }
}

static void hx_start(hx *e)
{
    ad_mcp_http *h = e->h;
    const char *v[64];
    size_t n = 0;
    char sbuf[ID_MAX + 32], pbuf[96], lbuf[ID_MAX + 32];
    bool get = e->kind == HX_LISTEN || e->resuming;
    bool del = e->kind == HX_DELETE;
    if (get) {
        v[n++] = "Accept: text/event-stream";
    } else if (!del) {
        v[n++] = "Content-Type: application/json";
        v[n++] = "Accept: application/json, text/event-stream";
        v[n++] = "Expect:";
    }
    bool init = e->is_init || e->kind == HX_REINIT;
    e->session_sent = false;
    if (h->session && !init) {
        snprintf(sbuf, sizeof sbuf, "MCP-Session-Id: %s", h->session);
        v[n++] = sbuf;
        e->session_sent = true;
    }
    if (h->protocol && !init) {
        snprintf(pbuf, sizeof pbuf, "MCP-Protocol-Version: %s", h->protocol);
        v[n++] = pbuf;
    }
    if (get && e->resuming && e->last_id) {
        snprintf(lbuf, sizeof lbuf, "Last-Event-ID: %s", e->last_id);
        v[n++] = lbuf;
    }
    for (size_t i = 0; i < h->nhdrs && n < sizeof v / sizeof v[0]; i++)
        v[n++] = h->hdrs[i];
    hx_begin_response(e);
    e->got_event = false;
    ad_xfer_cb cb = {on_x_data, on_x_header, on_x_done};
    ad_xfer_req q = {
        .url = h->url,
        .headers = v,
        .nheaders = n,
        .body = get || del ? NULL : e->body,
        .body_len = get || del ? 0 : e->len,
        .method = get ? "GET" : del ? "DELETE" : NULL,
        .connect_timeout_s = h->connect_timeout_s,
        .timeout_s = del                                     ? h->delete_timeout_s
                     : e->kind == HX_POST && !e->is_request ? NOTE_TIMEOUT_S
                                                             : 0,
    };
    e->x = ad_xfer_start(h->x, &q, &cb, e);
    if (!e->x) {
        if (e->kind == HX_DELETE) {
            hx_free(e);
        } else if (e->kind == HX_POST) {
            fail_req(e, "the HTTP request could not be started (out of memory)");
        } else {
            hx_free(e);
        }
    }
}

static void open_listen(ad_mcp_http *h)
{
    if (!h->listen || h->listen_hx || h->state != ST_OPEN)
        return;
    hx *e = hx_new(h, HX_LISTEN);
    if (!e)
        return;
    h->listen_hx = e;
    hx_start(e);
}

static void start_reinit(ad_mcp_http *h, long status)
{
    if (!h->init_text) {
        down(h, "ended the session before it was initialised");
        return;
    }
    h->state = ST_REINIT;
    logf_(h, AD_MCP_LOG_WARN, "the server ended the session (HTTP %ld): starting a new one",
          status);
    free(h->session);
    h->session = NULL;
    if (h->listen_hx)
        hx_free(h->listen_hx);
    hx *e = hx_new(h, HX_REINIT);
    char *text = e ? ad_strndup(h->init_text, h->init_len) : NULL;
    if (!text) {
        if (e)
            hx_free(e);
        down(h, "ran out of memory");
        return;
    }
    e->body = text;
    e->len = h->init_len;
    /* The id of the client's initialize: the answer is recognised by it. */
    json_object *root = parse_json(text, e->len), *idv = NULL;
    if (root && json_object_object_get_ex(root, "id", &idv))
        ad_rpc_id_int(idv, &e->rid);
    json_object_put(root);
    hx_start(e);
}

/* ---- the transport's functions ------------------------------------------ */

static int http_open(ad_mcp_transport *t, char *err, size_t errlen)
{
    ad_mcp_http *h = (ad_mcp_http *)t;
    if (h->state != ST_CLOSED) {
        snprintf(err, errlen, "the connection is already open");
        return AD_ERR;
    }
    reset_session(h);
    h->state = ST_OPEN;
    return AD_OK;
}

static int http_send(ad_mcp_transport *t, const char *text, size_t len)
{
    ad_mcp_http *h = (ad_mcp_http *)t;
    if (h->state != ST_OPEN && h->state != ST_REINIT)
        return AD_ERR;
    hx *e = hx_new(h, HX_POST);
    if (!e)
        return AD_ENOMEM;
    e->body = ad_strndup(text, len);
    e->len = len;
    if (!e->body) {
        hx_free(e);
        return AD_ENOMEM;
    }
    int64_t cancel_id = 0;
    bool cancel = false;
    json_object *root = parse_json(text, len), *idv = NULL, *params = NULL, *rid = NULL;
    const char *method = root && json_object_is_type(root, json_type_object)
                             ? ad_json_str(root, "method")
                             : NULL;
    if (method) {
        e->method = ad_strdup(method);
        if (json_object_object_get_ex(root, "id", &idv) && ad_rpc_id_int(idv, &e->rid))
            e->is_request = true;
        if (strcmp(method, "initialize") == 0 && e->is_request) {
            e->is_init = true;
            free(h->init_text);
            h->init_text = ad_strndup(text, len);
            h->init_len = len;
        } else if (strcmp(method, "notifications/initialized") == 0) {
            e->is_initialized = true;
        } else if (strcmp(method, "notifications/cancelled") == 0 &&
                   json_object_object_get_ex(root, "params", &params) &&
                   json_object_object_get_ex(params, "requestId", &rid)) {
            cancel = ad_rpc_id_int(rid, &cancel_id);
        }
    }
    json_object_put(root);
    if (h->state == ST_REINIT)
        e->held = true;
    else
        hx_start(e);
    if (cancel) {
        /* The request's answer is of no use now: its stream ends. */
        for (hx *o = h->xs; o; o = o->next) {
            if (o->kind == HX_POST && o->is_request && o->rid == cancel_id) {
                hx_free(o);
                break;
            }
        }
    }
    return AD_OK;
}

/* A stop: once the notifications still on their way are done, DELETE
 * ends the session; once that is done, the stop is over. */
static void stop_check(ad_mcp_http *h)
{
    if (h->state != ST_STOPPING || h->xs || h->freeing)
        return;
    if (h->session && !h->delete_sent) {
        h->delete_sent = true;
        hx *e = hx_new(h, HX_DELETE);
        if (e) {
            hx_start(e);
            if (h->xs)
                return;
        }
    }
    uv_timer_stop(&h->stop_timer);
    push_str(h, EV_STOPPED, 0, NULL);
}

static void on_stop_timer(uv_timer_t *tm)
{
    ad_mcp_http *h = tm->data;
    h->delete_sent = true; /* too late for it */
    free_all(h);
    stop_check(h);
}

static void http_stop(ad_mcp_transport *t, void (*on_stopped)(void *ud), void *ud)
{
    ad_mcp_http *h = (ad_mcp_http *)t;
    h->on_stopped = on_stopped;
    h->stopped_ud = ud;
    drop_queue(h);
    if (h->state == ST_CLOSED || h->state == ST_STOPPING) {
        if (h->state == ST_CLOSED)
            push_str(h, EV_STOPPED, 0, NULL);
        return;
    }
    h->state = ST_STOPPING;
    /* Notifications on their way (notifications/cancelled of the calls
     * that end with the session) still go out; answers are not waited
     * for. */
    for (hx *e = h->xs, *next; e; e = next) {
        next = e->next;
        if (!(e->kind == HX_POST && !e->is_request && e->x))
            hx_free(e);
    }
    h->delete_sent = false;
    uv_timer_start(&h->stop_timer, on_stop_timer, (uint64_t)(h->delete_timeout_s * 1000 + 0.5),
                   0);
    stop_check(h);
}

static const char *http_log_tail(ad_mcp_transport *t)
{
    ad_mcp_http *h = (ad_mcp_http *)t;
    return h->tail.data ? h->tail.data : "";
}

static void on_idle_closed(uv_handle_t *handle)
{
    ad_mcp_http *h = handle->data;
    if (--h->handles == 0)
        free(h);
}

static void http_free(ad_mcp_transport *t)
{
    ad_mcp_http *h = (ad_mcp_http *)t;
    free_all(h);
    drop_queue(h);
    h->freeing = true;
    if (h->own_x)
        ad_transport_close(h->x);
    h->x = NULL;
    free(h->url);
    free(h->shown);
    for (size_t i = 0; i < h->nhdrs; i++)
        free(h->hdrs[i]);
    free(h->hdrs);
    reset_session(h);
    ad_buf_free(&h->tail);
    uv_idle_stop(&h->idle);
    uv_close((uv_handle_t *)&h->idle, on_idle_closed);
    uv_timer_stop(&h->stop_timer);
    uv_close((uv_handle_t *)&h->stop_timer, on_idle_closed);
}

static const ad_mcp_transport_vt http_vt = {
    .kind = "http",
    .open = http_open,
    .send = http_send,
    .stop = http_stop,
    .log_tail = http_log_tail,
    .free = http_free,
};

ad_mcp_transport *ad_mcp_http_new(uv_loop_t *loop, ad_transport *x, const ad_mcp_http_opts *o)
{
    ad_mcp_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->base.vt = &http_vt;
    h->loop = loop;
    h->url = ad_strdup(o->url ? o->url : "");
    h->shown = o->shown_url ? ad_strdup(o->shown_url) : NULL;
    h->hdrs = calloc(o->nheaders ? o->nheaders : 1, sizeof *h->hdrs);
    bool ok = h->url && h->hdrs && (!o->shown_url || h->shown);
    for (size_t i = 0; ok && i < o->nheaders; i++) {
        h->hdrs[i] = ad_strdup(o->headers[i]);
        ok = h->hdrs[i] != NULL;
        h->nhdrs += ok;
    }
    h->x = x;
    if (ok && !x) {
        h->x = ad_curl_new(loop);
        h->own_x = true;
        ok = h->x != NULL;
    }
    if (!ok) {
        for (size_t i = 0; i < h->nhdrs; i++)
            free(h->hdrs[i]);
        free(h->hdrs);
        free(h->url);
        free(h->shown);
        if (h->own_x)
            ad_transport_close(h->x);
        free(h);
        return NULL;
    }
    h->max_message = o->max_message ? o->max_message : DEFAULT_MAX;
    h->connect_timeout_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : 10;
    h->delete_timeout_s = o->delete_timeout_s > 0 ? o->delete_timeout_s : 2;
    h->default_retry_s = o->default_retry_s > 0 ? o->default_retry_s : 1;
    h->max_resumes = o->max_resumes > 0 ? o->max_resumes : 3;
    h->listen = !o->no_listen;
    uv_idle_init(loop, &h->idle);
    h->idle.data = h;
    uv_timer_init(loop, &h->stop_timer);
    h->stop_timer.data = h;
    h->handles = 2;
    return &h->base;
}

/*
 * http.c -- libcurl multi interface driven by the libuv loop.
 *
 * Data flow: curl asks, through on_socket(), to watch a socket for reading
 * and/or writing; we keep one uv_poll_t per socket (a sock_ctx attached to
 * the socket with curl_multi_assign). curl asks, through on_timeout(), to be
 * woken after some milliseconds; we keep one uv_timer_t. When either fires we
 * call curl_multi_socket_action() and then drain curl's completion messages
 * (every time, whatever the running count says, so a transfer that ends on a
 * timeout is not missed).
 *
 * Invariants:
 *  - A uv handle is freed only from its close callback.
 *  - On CURL_POLL_REMOVE the poll is stopped and detached at once, so a new
 *    socket with the same fd number gets a fresh uv_poll_t.
 *  - Transfers are removed from the multi handle only outside curl
 *    callbacks: in drain() after curl returned, or in ad_http_cancel().
 *  - While closing, curl may still report sockets; nothing is re-armed.
 *  - The idle timeout is our own uv timer per request, restarted on every
 *    header or body byte (curl's low-speed check counts whole seconds). When
 *    it fires the transfer is removed and reported like any other failure;
 *    a request with a timer is freed from the timer's close callback.
 *
 * Record and replay (see http.h) hook in at the edges only. Recording keeps
 * a copy of what curl reports (header lines, body bytes) on the request and
 * turns it into one cassette interaction in finish(), before on_done. A
 * replayed request never gets a curl handle: it waits in the same request
 * list, and one uv_idle handle feeds the oldest one a piece of its recorded
 * body per loop iteration, then finishes it the way drain() would. The idle
 * runs only while replayed requests are pending. h is freed when both of its
 * handles (timer, idle) have closed.
 */
#include "provider/http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "base/buf.h"

#define REPLAY_MAX_PIECE 4096

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    int events;   /* UV_READABLE | UV_WRITABLE, as curl last asked */
    bool removed; /* released; the memory lives until the close callback */
    ad_http *http;
    struct sock_ctx *next; /* live contexts, for shutdown */
    struct sock_ctx *prev;
} sock_ctx;

struct ad_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    bool closing;
    sock_ctx *socks;
    ad_http_req *reqs; /* live requests */
    int open_handles;  /* timer and idle; h is freed when both closed */
    ad_cassette *recorder;
    ad_cassette *replay;
    uv_idle_t idle;    /* feeds replayed responses */
    uint32_t rng;      /* piece sizes of replayed bodies */
    char *replay_err;  /* owned: the first replay failure */
};

struct ad_http_req {
    ad_http *http;
    CURL *easy;
    struct curl_slist *headers;
    const char *body;     /* the caller's, borrowed until on_done (http.h) */
    size_t body_len;
    ad_http_callbacks cb;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];
    long status;
    char *content_type;   /* owned, from the response */
    double retry_after_s; /* -1 when absent */
    bool aborted;
    size_t bytes;
    uv_timer_t idle;      /* initialised when idle_ms > 0 */
    uint64_t idle_ms;
    uint64_t last_byte; /* uv_now() when a byte last arrived */
    int timeout;          /* AD_HTTP_TIMEOUT_* */
    ad_http_req *next;
    ad_http_req *prev;
    /* recording */
    char *url;           /* owned */
    uint64_t t0;         /* uv_hrtime() at the start */
    ad_buf rec_headers;  /* response header lines as received */
    ad_buf rec_body;     /* response body as received, cut at AD_CASSETTE_MAX_BODY */
    bool rec_truncated;  /* rec_body was cut: nothing more is kept */
    char *rec_status;    /* owned: status line of the last response */
    /* replay */
    bool replay;
    const ad_interaction *rit; /* NULL: fail with fail_msg */
    char *fail_msg;            /* owned */
    size_t off;                /* body bytes delivered */
};

static void drain(ad_http *h);

/* ---- sockets and timer ------------------------------------------------- */

static void on_sock_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void sock_release(ad_http *h, sock_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        h->socks = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->removed = true;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *c = p->data;
    ad_http *h = c->http;
    /* An error on the socket (libuv reports POLLERR, e.g. a reset
     * connection, as a status and stops the poll): telling curl
     * CURL_CSELECT_ERR would fail the transfer with a bare "select/poll
     * returned error". With no bits curl checks the socket itself, reads
     * what is still queued and then meets the real error ("Recv failure:
     * Connection reset by peer") in its error buffer. */
    int flags = 0;
    if (status >= 0) {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(h->multi, c->fd, flags, &running);
    /* curl still wants the socket after an error: watch it again. */
    if (status < 0 && !c->removed && !h->closing)
        uv_poll_start(&c->poll, c->events, on_poll);
    drain(h);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    ad_http *h = userp;
    sock_ctx *c = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(h->multi, s, NULL);
            sock_release(h, c);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return -1;
        if (uv_poll_init_socket(h->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->fd = s;
        c->http = h;
        c->poll.data = c;
        c->next = h->socks;
        if (h->socks)
            h->socks->prev = c;
        h->socks = c;
        curl_multi_assign(h->multi, s, c);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    c->events = ev;
    if (uv_poll_start(&c->poll, ev, on_poll) != 0)
        return -1;
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    ad_http *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(h);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ad_http *h = userp;
    if (timeout_ms < 0 || h->closing) {
        uv_timer_stop(&h->timer);
        return 0;
    }
    /* 0 means "as soon as possible": libuv runs it on the next iteration,
     * never from inside this callback, as curl requires. The loop's cached
     * time may be old (this can run right after the caller blocked): the
     * timer counts from now. */
    uv_update_time(h->loop);
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- requests ---------------------------------------------------------- */

static void req_link(ad_http *h, ad_http_req *r)
{
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
}

static void req_unlink(ad_http_req *r)
{
    ad_http *h = r->http;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void on_req_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void req_free(ad_http_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->headers);
    free(r->content_type);
    free(r->url);
    ad_buf_free(&r->rec_headers);
    ad_buf_free(&r->rec_body);
    free(r->rec_status);
    free(r->fail_msg);
    if (r->idle_ms) {
        uv_timer_stop(&r->idle);
        uv_close((uv_handle_t *)&r->idle, on_req_closed);
    } else {
        free(r);
    }
}

static void on_idle_timeout(uv_timer_t *t);

/* A byte arrived: the idle clock starts again. */
/* A byte arrived. The idle timer is not re-armed here (that would be a
 * timer-heap update per chunk): when it fires it checks this time and
 * sleeps on if data came in meanwhile. */
static void idle_touch(ad_http_req *r)
{
    r->last_byte = uv_now(r->http->loop);
}

static void capture_status(ad_http_req *r)
{
    if (r->status)
        return;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
    if (ct && !r->content_type)
        r->content_type = ad_strdup(ct);
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    ad_http_req *r = userp;
    size_t len = size * n;
    capture_status(r);
    r->bytes += len;
    idle_touch(r);
    if (r->http->recorder && !r->rec_truncated) {
        /* A clean cut: the first bytes up to the cap, then nothing (a
         * piece skipped and a later one kept would leave a hole). */
        size_t room = AD_CASSETTE_MAX_BODY - r->rec_body.len;
        if (ad_buf_append(&r->rec_body, data, len < room ? len : room) != AD_OK || len > room)
            r->rec_truncated = true;
    }
    if (r->cb.on_data(r->ud, r->status, r->content_type, data, len) != 0) {
        r->aborted = true;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* Parses Retry-After (delta seconds or an HTTP date) and retry-after-ms. */
static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    ad_http_req *r = userp;
    size_t len = size * n;
    if (r->http->recorder && len < 65536) {
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
            ad_buf_reset(&r->rec_headers);
            free(r->rec_status);
            r->rec_status = ad_strndup(data, len);
        } else {
            ad_buf_append(&r->rec_headers, data, len);
        }
    }
    char line[256];
    idle_touch(r);
    if (len >= sizeof line)
        return len;
    memcpy(line, data, len);
    line[len] = '\0';
    /* A new response (after a redirect or 100-continue) starts over. */
    if (strncmp(line, "HTTP/", 5) == 0) {
        r->retry_after_s = -1;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    char *end = v + strlen(v);
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        *--end = '\0';
    if (strcasecmp(line, "retry-after-ms") == 0) {
        char *e;
        double ms = strtod(v, &e);
        if (e != v && ms >= 0)
            r->retry_after_s = ms / 1000.0;
    } else if (strcasecmp(line, "retry-after") == 0 && r->retry_after_s < 0) {
        char *e;
        double s = strtod(v, &e);
        if (e != v && *e == '\0' && s >= 0) {
            r->retry_after_s = s;
        } else {
            time_t when = curl_getdate(v, NULL);
            if (when != -1) {
                double d = difftime(when, time(NULL));
                r->retry_after_s = d > 0 ? d : 0;
            }
        }
    }
    return len;
}

static bool transient_code(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

static void record(ad_http_req *r);

static void finish(ad_http_req *r, CURLcode code)
{
    capture_status(r);
    if (code == CURLE_OPERATION_TIMEDOUT && r->timeout == AD_HTTP_TIMEOUT_NONE) {
        curl_off_t connected = 0;
        curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        r->timeout = connected > 0 ? AD_HTTP_TIMEOUT_TOTAL : AD_HTTP_TIMEOUT_CONNECT;
    }
    if (r->http->recorder && r->status)
        record(r);
    ad_http_result res = {
        .curl_code = (int)code,
        .error = code == CURLE_OK ? NULL : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(code)),
        .status = r->status,
        .content_type = r->content_type,
        .retry_after_s = r->retry_after_s,
        .aborted = r->aborted,
        .bytes = r->bytes,
        .timeout = r->timeout,
        .transient = transient_code(code),
    };
    r->cb.on_done(r->ud, &res);
}

static void drain(ad_http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* Copy what we need: msg dies with curl_multi_remove_handle(). */
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        ad_http_req *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(h->multi, easy);
        if (!r)
            continue;
        req_unlink(r);
        finish(r, code);
        req_free(r);
    }
}

static void on_idle_timeout(uv_timer_t *t)
{
    ad_http_req *r = t->data;
    ad_http *h = r->http;
    uint64_t quiet = uv_now(h->loop) - r->last_byte;
    if (quiet < r->idle_ms) {
        uv_timer_start(&r->idle, on_idle_timeout, r->idle_ms - quiet, 0);
        return;
    }
    /* Outside any curl callback: the transfer can go at once. */
    curl_multi_remove_handle(h->multi, r->easy);
    req_unlink(r);
    r->timeout = AD_HTTP_TIMEOUT_IDLE;
    snprintf(r->errbuf, sizeof r->errbuf, "no data received for %.3g s", (double)r->idle_ms / 1000);
    finish(r, CURLE_OPERATION_TIMEDOUT);
    req_free(r);
}

static void on_handle_closed(uv_handle_t *handle)
{
    ad_http *h = handle->data;
    if (--h->open_handles == 0) {
        free(h->replay_err);
        free(h);
    }
}

ad_http *ad_http_new(uv_loop_t *loop)
{
    ad_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return NULL;
    }
    if (uv_timer_init(loop, &h->timer) != 0) {
        curl_multi_cleanup(h->multi);
        free(h);
        return NULL;
    }
    h->timer.data = h;
    h->open_handles = 1;
    if (uv_idle_init(loop, &h->idle) != 0) {
        curl_multi_cleanup(h->multi);
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
        return NULL;
    }
    h->idle.data = h;
    h->open_handles = 2;
    h->rng = 0x2545f491u;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

void ad_http_close(ad_http *h)
{
    if (!h)
        return;
    h->closing = true;
    while (h->reqs) {
        ad_http_req *r = h->reqs;
        if (r->easy)
            curl_multi_remove_handle(h->multi, r->easy);
        req_unlink(r);
        req_free(r);
    }
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks)
        sock_release(h, h->socks);
    uv_timer_stop(&h->timer);
    uv_idle_stop(&h->idle);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->idle, on_handle_closed);
}

/* ---- recording ---------------------------------------------------------- */

/* Header names as Go writes them into cassettes: "content-type" ->
 * "Content-Type" (HTTP/2 sends them in lower case). */
static void canonical_name(char *s)
{
    bool up = true;
    for (; *s; s++) {
        *s = (char)(up ? toupper((unsigned char)*s) : tolower((unsigned char)*s));
        up = *s == '-';
    }
}

/* Adds "Name: value" (a header line, CRLF or not) to hs; ignores lines
 * without a name, empty values (curl drops those headers) and the
 * Authorization header. */
static void add_header_line(ad_cassette_header **hs, size_t *n, size_t *cap, const char *line,
                            size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return;
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (v == end)
        return;
    char *name = ad_strndup(line, (size_t)(colon - line));
    if (!name)
        return;
    canonical_name(name);
    if (strcmp(name, "Authorization") == 0 || strcmp(name, "Proxy-Authorization") == 0) {
        free(name);
        return;
    }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ad_cassette_header *p = realloc(*hs, nc * sizeof *p);
        if (!p) {
            free(name);
            return;
        }
        *hs = p;
        *cap = nc;
    }
    char *value = ad_strndup(v, (size_t)(end - v));
    if (!value) {
        free(name);
        return;
    }
    (*hs)[*n].name = name;
    (*hs)[*n].value = value;
    (*n)++;
}

/* Sorted by name (as Go's encoder writes maps), values of one name in the
 * order received: an insertion sort is stable and the lists are short. */
static void sort_headers(ad_cassette_header *hs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        ad_cassette_header x = hs[i];
        size_t j = i;
        while (j > 0 && strcmp(hs[j - 1].name, x.name) > 0) {
            hs[j] = hs[j - 1];
            j--;
        }
        hs[j] = x;
    }
}

static void free_header_list(ad_cassette_header *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(hs[i].name);
        free(hs[i].value);
    }
    free(hs);
}

/* "HTTP/2 200" -> "200 OK": Go's form, with the reason phrase the server
 * sent, or the standard one when it sent none (HTTP/2 never does). */
static char *status_text(const char *line, long code)
{
    const char *p = line ? strchr(line, ' ') : NULL;
    if (p) {
        while (*p == ' ')
            p++;
        while (*p >= '0' && *p <= '9')
            p++;
        while (*p == ' ')
            p++;
    }
    size_t n = p ? strcspn(p, "\r\n") : 0;
    ad_buf b = AD_BUF_INIT;
    if (n) {
        ad_buf_printf(&b, "%ld %.*s", code, (int)n, p);
    } else {
        static const struct { long code; const char *text; } reasons[] = {
            {200, "OK"}, {201, "Created"}, {204, "No Content"}, {400, "Bad Request"},
            {401, "Unauthorized"}, {402, "Payment Required"}, {403, "Forbidden"},
            {404, "Not Found"}, {408, "Request Timeout"}, {409, "Conflict"},
            {413, "Request Entity Too Large"}, {422, "Unprocessable Entity"},
            {429, "Too Many Requests"}, {500, "Internal Server Error"}, {502, "Bad Gateway"},
            {503, "Service Unavailable"}, {504, "Gateway Timeout"},
        };
        const char *t = NULL;
        for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
            if (reasons[i].code == code)
                t = reasons[i].text;
        if (t)
            ad_buf_printf(&b, "%ld %s", code, t);
        else
            ad_buf_printf(&b, "%ld", code);
    }
    return ad_buf_steal(&b);
}

static void record(ad_http_req *r)
{
    ad_cassette_header *rq = NULL, *rs = NULL;
    size_t nrq = 0, caprq = 0, nrs = 0, caprs = 0;
    for (struct curl_slist *l = r->headers; l; l = l->next)
        add_header_line(&rq, &nrq, &caprq, l->data, strlen(l->data));
    bool has_ua = false;
    for (size_t i = 0; i < nrq; i++)
        has_ua = has_ua || strcmp(rq[i].name, "User-Agent") == 0;
    if (!has_ua) {
        const char ua[] = "User-Agent: agentd/" AGENTD_VERSION;
        add_header_line(&rq, &nrq, &caprq, ua, sizeof ua - 1);
    }
    sort_headers(rq, nrq);
    const char *p = r->rec_headers.data, *end = p + r->rec_headers.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        add_header_line(&rs, &nrs, &caprs, p, (size_t)(le - p));
        p = le;
    }
    sort_headers(rs, nrs);
    long ver = 0;
    curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &ver);
    const char *proto = ver == CURL_HTTP_VERSION_1_0   ? "HTTP/1.0"
                        : ver == CURL_HTTP_VERSION_2_0 ? "HTTP/2.0"
#ifdef CURL_HTTP_VERSION_3
                        : ver == CURL_HTTP_VERSION_3 ? "HTTP/3.0"
#endif
                                                       : "HTTP/1.1";
    char *status = status_text(r->rec_status, r->status);
    ad_interaction it = {
        .method = "POST",
        .url = r->url,
        .req_body = (char *)r->body, /* copied by ad_cassette_append */
        .req_body_len = r->body_len,
        .req_headers = rq,
        .nreq_headers = nrq,
        .proto = (char *)proto,
        .code = r->status,
        .status = status,
        .resp_body = r->rec_body.data ? r->rec_body.data : "",
        .resp_body_len = r->rec_body.len,
        .resp_headers = rs,
        .nresp_headers = nrs,
        .duration_s = (double)(uv_hrtime() - r->t0) / 1e9,
        .resp_truncated = r->rec_truncated,
    };
    ad_cassette_append(r->http->recorder, &it);
    free(status);
    free_header_list(rq, nrq);
    free_header_list(rs, nrs);
}

void ad_http_set_recorder(ad_http *h, ad_cassette *c)
{
    h->recorder = c;
}

/* ---- replay ------------------------------------------------------------- */

static ad_http_req *oldest_replay(ad_http *h)
{
    ad_http_req *found = NULL;
    for (ad_http_req *r = h->reqs; r; r = r->next)
        if (r->replay)
            found = r;
    return found;
}

static void replay_finish(ad_http_req *r, int code, const char *error)
{
    ad_http *h = r->http;
    req_unlink(r);
    ad_http_result res = {
        .curl_code = code,
        .error = error,
        .status = r->rit ? r->rit->code : 0,
        .content_type = r->content_type,
        .retry_after_s = r->rit && (r->rit->code < 200 || r->rit->code > 299) ? 0 : -1,
        .aborted = r->aborted,
        .bytes = r->bytes,
        .fatal = r->rit == NULL,
    };
    r->cb.on_done(r->ud, &res);
    req_free(r);
    if (!oldest_replay(h))
        uv_idle_stop(&h->idle);
}

static void on_replay_tick(uv_idle_t *idle)
{
    ad_http *h = idle->data;
    ad_http_req *r = oldest_replay(h);
    if (!r) {
        uv_idle_stop(idle);
        return;
    }
    if (!r->rit) {
        replay_finish(r, CURLE_ABORTED_BY_CALLBACK, r->fail_msg ? r->fail_msg : "replay failed");
        return;
    }
    size_t len = r->rit->resp_body_len;
    if (r->off < len) {
        h->rng = h->rng * 1103515245u + 12345u;
        size_t piece = 1 + (size_t)((h->rng >> 8) % REPLAY_MAX_PIECE);
        if (piece > len - r->off)
            piece = len - r->off;
        const char *data = r->rit->resp_body + r->off;
        r->off += piece;
        r->bytes += piece;
        if (r->cb.on_data(r->ud, r->rit->code, r->content_type, data, piece) != 0) {
            r->aborted = true;
            replay_finish(r, CURLE_WRITE_ERROR, curl_easy_strerror(CURLE_WRITE_ERROR));
        }
        return;
    }
    replay_finish(r, CURLE_OK, NULL);
}

static ad_http_req *replay_post(ad_http *h, const char *body, size_t body_len,
                                const ad_http_callbacks *cb, void *ud)
{
    ad_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->http = h;
    r->cb = *cb;
    r->ud = ud;
    r->retry_after_s = -1;
    r->replay = true;
    char diff[4096];
    if (ad_cassette_next(h->replay, body, body_len, &r->rit, diff, sizeof diff) != AD_OK) {
        r->rit = NULL;
        r->fail_msg = ad_strdup(diff);
        if (!h->replay_err)
            h->replay_err = ad_strdup(diff);
    } else {
        const char *ct = ad_cassette_header_get(r->rit->resp_headers, r->rit->nresp_headers,
                                                "Content-Type");
        if (ct && !(r->content_type = ad_strdup(ct))) {
            free(r);
            return NULL;
        }
    }
    req_link(h, r);
    uv_idle_start(&h->idle, on_replay_tick);
    return r;
}

void ad_http_set_replay(ad_http *h, ad_cassette *c)
{
    h->replay = c;
}

const char *ad_http_replay_error(const ad_http *h)
{
    return h->replay_err;
}

ad_http_req *ad_http_post(ad_http *h, const char *url, const char *const *headers,
                          size_t nheaders, const char *body, size_t body_len,
                          const ad_http_opts *opts, const ad_http_callbacks *cb, void *ud)
{
    if (h->replay)
        return replay_post(h, body, body_len, cb, ud);
    ad_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->http = h;
    r->cb = *cb;
    r->ud = ud;
    r->retry_after_s = -1;
    if (h->recorder) {
        r->url = ad_strdup(url);
        r->t0 = uv_hrtime();
        if (!r->url)
            goto fail;
    }
    r->easy = curl_easy_init();
    if (!r->easy)
        goto fail;
    r->body = body;
    r->body_len = body_len;
    for (size_t i = 0; i < nheaders; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (!l)
            goto fail;
        r->headers = l;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    /* Not CURLOPT_COPYPOSTFIELDS: the body can be the whole conversation,
     * and the caller keeps it until on_done (http.h). */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (opts) {
        if (opts->timeout_s > 0)
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(opts->timeout_s * 1000));
        if (opts->connect_timeout_s > 0)
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(opts->connect_timeout_s * 1000));
        if (opts->idle_timeout_s > 0) {
            uint64_t ms = (uint64_t)(opts->idle_timeout_s * 1000 + 0.5);
            if (uv_timer_init(h->loop, &r->idle) != 0)
                goto fail;
            r->idle.data = r;
            r->idle_ms = ms ? ms : 1;
        }
    }
    req_link(h, r);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        req_unlink(r);
        goto fail;
    }
    if (r->idle_ms) {
        /* The silence counts from the start of the request. The loop's
         * cached time is as old as its last iteration, and the caller may
         * have blocked since (a prompt, a long write): read the clock. */
        uv_update_time(h->loop);
        idle_touch(r);
        uv_timer_start(&r->idle, on_idle_timeout, r->idle_ms, 0);
    }
    return r;
fail:
    req_free(r);
    return NULL;
}

void ad_http_cancel(ad_http_req *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_multi_remove_handle(r->http->multi, r->easy);
    req_unlink(r);
    req_free(r);
}

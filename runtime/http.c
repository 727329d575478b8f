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
 */
#include "http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
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
};

struct ad_http_req {
    ad_http *http;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
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
    int timeout;          /* AD_HTTP_TIMEOUT_* */
    ad_http_req *next;
    ad_http_req *prev;
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
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *c = p->data;
    ad_http *h = c->http;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(h->multi, c->fd, flags, &running);
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
     * never from inside this callback, as curl requires. */
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- requests ---------------------------------------------------------- */

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
    free(r->body);
    free(r->content_type);
    if (r->idle_ms) {
        uv_timer_stop(&r->idle);
        uv_close((uv_handle_t *)&r->idle, on_req_closed);
    } else {
        free(r);
    }
}

static void on_idle(uv_timer_t *t);

/* A byte arrived: the idle clock starts again. */
static void idle_touch(ad_http_req *r)
{
    if (r->idle_ms && !r->http->closing)
        uv_timer_start(&r->idle, on_idle, r->idle_ms, 0);
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

static void finish(ad_http_req *r, CURLcode code)
{
    capture_status(r);
    if (code == CURLE_OPERATION_TIMEDOUT && r->timeout == AD_HTTP_TIMEOUT_NONE) {
        curl_off_t connected = 0;
        curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        r->timeout = connected > 0 ? AD_HTTP_TIMEOUT_TOTAL : AD_HTTP_TIMEOUT_CONNECT;
    }
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

static void on_idle(uv_timer_t *t)
{
    ad_http_req *r = t->data;
    ad_http *h = r->http;
    /* Outside any curl callback: the transfer can go at once. */
    curl_multi_remove_handle(h->multi, r->easy);
    req_unlink(r);
    r->timeout = AD_HTTP_TIMEOUT_IDLE;
    snprintf(r->errbuf, sizeof r->errbuf, "no data received for %.3g s", (double)r->idle_ms / 1000);
    finish(r, CURLE_OPERATION_TIMEDOUT);
    req_free(r);
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
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

static void on_timer_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void ad_http_close(ad_http *h)
{
    if (!h)
        return;
    h->closing = true;
    while (h->reqs) {
        ad_http_req *r = h->reqs;
        curl_multi_remove_handle(h->multi, r->easy);
        req_unlink(r);
        req_free(r);
    }
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks)
        sock_release(h, h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

ad_http_req *ad_http_post(ad_http *h, const char *url, const char *const *headers,
                          size_t nheaders, const char *body, size_t body_len,
                          const ad_http_opts *opts, const ad_http_callbacks *cb, void *ud)
{
    ad_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->http = h;
    r->cb = *cb;
    r->ud = ud;
    r->retry_after_s = -1;
    r->easy = curl_easy_init();
    r->body = malloc(body_len + 1);
    if (!r->easy || !r->body)
        goto fail;
    memcpy(r->body, body, body_len);
    r->body[body_len] = '\0';
    for (size_t i = 0; i < nheaders; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (!l)
            goto fail;
        r->headers = l;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
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
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        req_unlink(r);
        goto fail;
    }
    if (r->idle_ms)
        uv_timer_start(&r->idle, on_idle, r->idle_ms, 0);
    return r;
fail:
    req_free(r);
    return NULL;
}

void ad_http_cancel(ad_http_req *r)
{
    if (!r)
        return;
    curl_multi_remove_handle(r->http->multi, r->easy);
    req_unlink(r);
    req_free(r);
}

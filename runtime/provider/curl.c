/*
 * curl.c -- the curl transport: libcurl multi interface driven by the
 * libuv loop (see curl.h, transport.h).
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
 *    callbacks: in drain() after curl returned, on the idle timeout, or in
 *    cancel().
 *  - While closing, curl may still report sockets; nothing is re-armed.
 *  - The idle timeout is our own uv timer per request, checked against the
 *    time of the last header or body byte (curl's low-speed check counts
 *    whole seconds). When it fires the transfer is removed and reported
 *    like any other failure; a request with a timer is freed from the
 *    timer's close callback. A paused request is never idle.
 *  - Pausing calls curl_easy_pause(RECV) at once (also from inside the
 *    write callback, which curl allows), and a write callback that still
 *    comes for a paused request (curl delivers a large buffer in pieces)
 *    answers CURL_WRITEFUNC_PAUSE, so curl keeps those bytes. Resuming is
 *    done from a uv_idle on the next loop iteration: curl_easy_pause(CONT)
 *    delivers what curl held from inside itself, and that must not happen
 *    inside the caller's pause() call.
 *  - The transport is freed when both of its handles (timer, idle) closed.
 */
#include "provider/curl.h"

#include "base/lazy_curl.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"

typedef struct ad_curl ad_curl;
typedef struct curl_req curl_req;

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    int events;   /* UV_READABLE | UV_WRITABLE, as curl last asked */
    bool removed; /* released; the memory lives until the close callback */
    ad_curl *http;
    struct sock_ctx *next; /* live contexts, for shutdown */
    struct sock_ctx *prev;
} sock_ctx;

struct ad_curl {
    ad_transport base;
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    bool closing;
    sock_ctx *socks;
    curl_req *reqs;   /* live requests */
    int open_handles; /* timer and idle; h is freed when both closed */
    uv_idle_t resume; /* resumes paused requests (see the invariants) */
    size_t resuming;  /* requests with resume_pending set */
};

struct curl_req {
    ad_exchange base;
    ad_curl *http;
    CURL *easy;
    struct curl_slist *headers;
    ad_xfer_cb cb;
    void *ud;
    char errbuf[CURL_ERROR_SIZE];
    long status;
    char *content_type;   /* owned, from the response */
    double retry_after_s; /* -1 when absent */
    bool aborted;
    size_t bytes;
    uv_timer_t idle;      /* initialised when idle_ms > 0 */
    uint64_t idle_ms;
    uint64_t last_byte;   /* uv_now() when a byte last arrived */
    int timeout;          /* AD_XFER_TIMEOUT_* */
    bool paused;
    bool resume_pending;  /* to be resumed by on_resume */
    bool resume_now;      /* in on_resume's current round */
    curl_req *next;
    curl_req *prev;
};

static void drain(ad_curl *h);

/* ---- sockets and timer ------------------------------------------------- */

static void on_sock_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void sock_release(ad_curl *h, sock_ctx *c)
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
    ad_curl *h = c->http;
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
    ad_curl *h = userp;
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
    ad_curl *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(h);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    ad_curl *h = userp;
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

static void req_link(ad_curl *h, curl_req *r)
{
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
}

static void req_unlink(curl_req *r)
{
    ad_curl *h = r->http;
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

static void req_free(curl_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->headers);
    free(r->content_type);
    if (r->resume_pending)
        r->http->resuming--;
    if (r->idle_ms) {
        uv_timer_stop(&r->idle);
        uv_close((uv_handle_t *)&r->idle, on_req_closed);
    } else {
        free(r);
    }
}

static void on_idle_timeout(uv_timer_t *t);

/* A byte arrived. The idle timer is not re-armed here (that would be a
 * timer-heap update per chunk): when it fires it checks this time and
 * sleeps on if data came in meanwhile. */
static void idle_touch(curl_req *r)
{
    r->last_byte = uv_now(r->http->loop);
}

static void capture_status(curl_req *r)
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
    curl_req *r = userp;
    size_t len = size * n;
    /* Paused from inside an earlier piece of the same buffer: curl keeps
     * this one and hands it over again after the resume. */
    if (r->paused)
        return CURL_WRITEFUNC_PAUSE;
    capture_status(r);
    r->bytes += len;
    idle_touch(r);
    if (r->cb.on_data(r->ud, r->status, r->content_type, data, len) != AD_XFER_GO) {
        r->aborted = true;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* Parses Retry-After (delta seconds or an HTTP date) and retry-after-ms. */
static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    curl_req *r = userp;
    size_t len = size * n;
    if (r->paused)
        return CURL_WRITEFUNC_PAUSE;
    idle_touch(r);
    if (r->cb.on_header)
        r->cb.on_header(r->ud, data, len);
    char line[256];
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

static void finish(curl_req *r, CURLcode code)
{
    capture_status(r);
    if (code == CURLE_OPERATION_TIMEDOUT && r->timeout == AD_XFER_TIMEOUT_NONE) {
        curl_off_t connected = 0;
        curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        r->timeout = connected > 0 ? AD_XFER_TIMEOUT_TOTAL : AD_XFER_TIMEOUT_CONNECT;
    }
    long ver = 0;
    if (r->status)
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &ver);
    const char *proto = !r->status                     ? NULL
                        : ver == CURL_HTTP_VERSION_1_0 ? "HTTP/1.0"
                        : ver == CURL_HTTP_VERSION_2_0 ? "HTTP/2.0"
#ifdef CURL_HTTP_VERSION_3
                        : ver == CURL_HTTP_VERSION_3 ? "HTTP/3.0"
#endif
                                                     : "HTTP/1.1";
    ad_xfer_result res = {
        .code = (int)code,
        .error = code == CURLE_OK ? NULL : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(code)),
        .status = r->status,
        .content_type = r->content_type,
        .proto = proto,
        .retry_after_s = r->retry_after_s,
        .aborted = r->aborted,
        .bytes = r->bytes,
        .timeout = r->timeout,
        .transient = transient_code(code),
    };
    r->cb.on_done(r->ud, &res);
}

static void drain(ad_curl *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* Copy what we need: msg dies with curl_multi_remove_handle(). */
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_req *r = NULL;
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
    curl_req *r = t->data;
    ad_curl *h = r->http;
    uint64_t quiet = uv_now(h->loop) - r->last_byte;
    if (r->paused || quiet < r->idle_ms) {
        /* Paused: the silence is ours, not the server's. */
        uv_timer_start(&r->idle, on_idle_timeout, r->paused ? r->idle_ms : r->idle_ms - quiet, 0);
        return;
    }
    /* Outside any curl callback: the transfer can go at once. */
    curl_multi_remove_handle(h->multi, r->easy);
    req_unlink(r);
    r->timeout = AD_XFER_TIMEOUT_IDLE;
    snprintf(r->errbuf, sizeof r->errbuf, "no data received for %.3g s", (double)r->idle_ms / 1000);
    finish(r, CURLE_OPERATION_TIMEDOUT);
    req_free(r);
}

/* ---- pause and resume ---------------------------------------------------- */

static void on_resume(uv_idle_t *idle)
{
    ad_curl *h = idle->data;
    uv_idle_stop(idle);
    /* The requests to resume now; one resumed again while this runs waits
     * for the next round. */
    for (curl_req *r = h->reqs; r; r = r->next) {
        r->resume_now = r->resume_pending;
        if (r->resume_pending) {
            r->resume_pending = false;
            h->resuming--;
        }
    }
    uv_update_time(h->loop);
    for (;;) {
        /* Looked up afresh each time: a request's end may end others. */
        curl_req *r = h->reqs;
        while (r && !r->resume_now)
            r = r->next;
        if (!r)
            break;
        r->resume_now = false;
        if (r->paused)
            continue; /* paused again meanwhile */
        idle_touch(r);
        /* curl hands the bytes it held to the callbacks from inside this
         * call; an abort there is returned here, and the transfer ends. */
        CURLcode rc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
        if (rc != CURLE_OK) {
            curl_multi_remove_handle(h->multi, r->easy);
            req_unlink(r);
            finish(r, rc);
            req_free(r);
        }
    }
    drain(h);
}

static void curl_pause(ad_exchange *x, bool paused)
{
    curl_req *r = (curl_req *)x;
    ad_curl *h = r->http;
    if (paused) {
        if (r->resume_pending) {
            r->resume_pending = false;
            h->resuming--;
        }
        if (!r->paused) {
            r->paused = true;
            curl_easy_pause(r->easy, CURLPAUSE_RECV);
        }
        return;
    }
    if (!r->paused)
        return;
    r->paused = false;
    if (!r->resume_pending) {
        r->resume_pending = true;
        h->resuming++;
        uv_idle_start(&h->resume, on_resume);
    }
}

/* ---- the transport -------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    ad_curl *h = handle->data;
    if (--h->open_handles == 0)
        free(h);
}

static void curl_cancel(ad_exchange *x)
{
    curl_req *r = (curl_req *)x;
    if (r->easy)
        curl_multi_remove_handle(r->http->multi, r->easy);
    req_unlink(r);
    req_free(r);
}

static void curl_close(ad_transport *t)
{
    ad_curl *h = (ad_curl *)t;
    h->closing = true;
    while (h->reqs) {
        curl_req *r = h->reqs;
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
    uv_idle_stop(&h->resume);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->resume, on_handle_closed);
}

static ad_exchange *curl_start(ad_transport *t, const ad_xfer_req *q, const ad_xfer_cb *cb,
                               void *ud)
{
    ad_curl *h = (ad_curl *)t;
    if (h->closing)
        return NULL;
    curl_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base.transport = t;
    r->http = h;
    r->cb = *cb;
    r->ud = ud;
    r->retry_after_s = -1;
    r->easy = curl_easy_init();
    if (!r->easy)
        goto fail;
    for (size_t i = 0; i < q->nheaders; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, q->headers[i]);
        if (!l)
            goto fail;
        r->headers = l;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    if (!q->method || strcmp(q->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        /* Not CURLOPT_COPYPOSTFIELDS: the body can be the whole
         * conversation, and the caller keeps it until on_done
         * (transport.h). */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (strcmp(q->method, "GET") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    }
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
    /* The receive buffer lives as long as the transfer, one per stream: a
     * server holds a thousand. Stream events are a few hundred bytes, and
     * curl reads again while bytes are waiting, so 4 KiB instead of the
     * default 16 costs no extra wake-up. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    if (q->timeout_s > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(q->timeout_s * 1000));
    if (q->connect_timeout_s > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(q->connect_timeout_s * 1000));
    if (q->idle_timeout_s > 0) {
        uint64_t ms = (uint64_t)(q->idle_timeout_s * 1000 + 0.5);
        if (uv_timer_init(h->loop, &r->idle) != 0)
            goto fail;
        r->idle.data = r;
        r->idle_ms = ms ? ms : 1;
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
    return &r->base;
fail:
    req_free(r);
    return NULL;
}

static const ad_transport_vt curl_vt = {
    .name = "curl",
    .start = curl_start,
    .pause = curl_pause,
    .cancel = curl_cancel,
    .close = curl_close,
};

ad_transport *ad_curl_new(uv_loop_t *loop)
{
    if (ad_lazy_curl(NULL, 0) != AD_OK)
        return NULL;
    ad_curl *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->base.vt = &curl_vt;
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
    if (uv_idle_init(loop, &h->resume) != 0) {
        curl_multi_cleanup(h->multi);
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
        return NULL;
    }
    h->resume.data = h;
    h->open_handles = 2;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return &h->base;
}

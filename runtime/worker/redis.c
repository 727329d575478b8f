/*
 * redis.c -- a Redis connection that comes back by itself (see redis.h).
 *
 * Requests form one FIFO list: those sent on the current connection are a
 * prefix of it (their replies come back in that order), `unsent` points at
 * the first one not sent yet. Losing the connection makes every request
 * unsent again, or fails it (no AD_REDIS_RETRY); a new connection first
 * runs the handshake (AUTH, SELECT, SCRIPT LOAD: internal requests that are
 * not in the list) and then sends the list from its start, so the order in
 * which requests reach the server is the order in which they were made.
 *
 * hiredis frees its context itself when the connection fails, and then
 * calls every reply callback with NULL and the disconnect callback; while
 * it does, nothing here may call into that context. So failed requests are
 * answered later, from a zero timer (`kick`), never from inside hiredis.
 *
 * Timers: `retry` waits before the next connection attempt, `watch` checks
 * the connect and reply deadlines and the socket (socket_failed), `kick`
 * delivers failures. The struct is
 * freed when the last of them has closed, which is after hiredis has
 * finished with a context freed from inside one of its callbacks.
 */
#include "worker/redis.h"

/* After lazy_hiredis.h (through redis.h): the adapter's calls into hiredis
 * go through the loaded pointers. */
#include <hiredis/adapters/libuv.h>

#include <ctype.h>
#include <errno.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0

/* ---- the URL ------------------------------------------------------------ */

static int url_bad(char *err, size_t errlen, const char *what)
{
    ad_errf(err, errlen, "--redis: %s (want redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or "
                         "unix:///PATH[?db=N])",
            what);
    return AD_EINVAL;
}

/* Decodes %XX escapes of s[0..n) into a new string; NULL when malformed. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n + 1 || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                free(out);
                return NULL;
            }
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[k++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

static bool parse_num(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int ad_redis_url_parse(ad_redis_url *u, const char *url, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    long v;
    ad_buf shown = AD_BUF_INIT;
    if (strncmp(url, "rediss://", 9) == 0)
        return url_bad(err, errlen, "TLS (rediss://) is not supported; reach Redis over "
                                    "loopback, a unix socket or a TLS tunnel");
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/')
            return url_bad(err, errlen, "a unix:// URL needs an absolute socket path");
        u->path = ad_strndup(p, n);
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || !parse_num(q + 4, strlen(q + 4), 0, 1000000, &v)) {
                ad_redis_url_free(u);
                return url_bad(err, errlen, "after the socket path only ?db=N may follow");
            }
            u->db = (int)v;
        }
        ad_buf_printf(&shown, "unix://%s", u->path ? u->path : "");
        if (u->db)
            ad_buf_printf(&shown, "?db=%d", u->db);
    } else if (strncmp(url, "redis://", 8) == 0) {
        const char *p = url + 8;
        const char *slash = strchr(p, '/');
        const char *end = slash ? slash : p + strlen(p);
        /* The last '@' before the path ends the credentials (a password may hold '@'). */
        const char *at = NULL;
        for (const char *c = p; c < end; c++)
            if (*c == '@')
                at = c;
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            if (!colon) {
                /* redis://PASSWORD@host, as redis-cli -u reads it */
                u->password = pct_decode(p, (size_t)(at - p));
            } else {
                if (colon > p)
                    u->user = pct_decode(p, (size_t)(colon - p));
                u->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
                if (colon > p && !u->user) {
                    ad_redis_url_free(u);
                    return url_bad(err, errlen, "the user name has a malformed %-escape");
                }
            }
            if (!u->password) {
                ad_redis_url_free(u);
                return url_bad(err, errlen, "the password has a malformed %-escape");
            }
            p = at + 1;
        }
        const char *hs = p, *he;
        const char *portp = NULL;
        if (*p == '[') {
            const char *rb = memchr(p, ']', (size_t)(end - p));
            if (!rb) {
                ad_redis_url_free(u);
                return url_bad(err, errlen, "an IPv6 address needs its closing ']'");
            }
            hs = p + 1;
            he = rb;
            if (rb + 1 < end) {
                if (rb[1] != ':') {
                    ad_redis_url_free(u);
                    return url_bad(err, errlen, "after the address only :PORT may follow");
                }
                portp = rb + 2;
            }
        } else {
            const char *colon = memchr(p, ':', (size_t)(end - p));
            he = colon ? colon : end;
            portp = colon ? colon + 1 : NULL;
        }
        if (he == hs) {
            ad_redis_url_free(u);
            return url_bad(err, errlen, "no host");
        }
        u->host = ad_strndup(hs, (size_t)(he - hs));
        if (portp) {
            if (!parse_num(portp, (size_t)(end - portp), 1, 65535, &v)) {
                ad_redis_url_free(u);
                return url_bad(err, errlen, "the port must be a number from 1 to 65535");
            }
            u->port = (int)v;
        }
        if (slash && slash[1]) {
            if (!parse_num(slash + 1, strlen(slash + 1), 0, 1000000, &v)) {
                ad_redis_url_free(u);
                return url_bad(err, errlen, "the path must be a database number (/0, /1, ...)");
            }
            u->db = (int)v;
        }
        ad_buf_printf(&shown, "redis://%s%s%s:%d", strchr(u->host ? u->host : "", ':') ? "[" : "",
                      u->host ? u->host : "", strchr(u->host ? u->host : "", ':') ? "]" : "",
                      u->port);
        if (u->db)
            ad_buf_printf(&shown, "/%d", u->db);
    } else {
        return url_bad(err, errlen, "the URL must start with redis:// or unix://");
    }
    if (!u->password) {
        const char *env = getenv("AGENTD_REDIS_PASSWORD");
        if (env && env[0])
            u->password = ad_strdup(env);
    }
    u->shown = ad_buf_steal(&shown);
    if (!u->shown || (!u->host && !u->path)) {
        ad_redis_url_free(u);
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    return AD_OK;
}

int ad_redis_url_copy(ad_redis_url *d, const ad_redis_url *s)
{
    memset(d, 0, sizeof *d);
    d->port = s->port;
    d->db = s->db;
    d->host = s->host ? ad_strdup(s->host) : NULL;
    d->path = s->path ? ad_strdup(s->path) : NULL;
    d->user = s->user ? ad_strdup(s->user) : NULL;
    d->password = s->password ? ad_strdup(s->password) : NULL;
    d->shown = ad_strdup(s->shown ? s->shown : "");
    if ((s->host && !d->host) || (s->path && !d->path) || (s->user && !d->user) ||
        (s->password && !d->password) || !d->shown) {
        ad_redis_url_free(d);
        return AD_ENOMEM;
    }
    return AD_OK;
}

void ad_redis_url_free(ad_redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password) {
        memset(u->password, 0, strlen(u->password));
        free(u->password);
    }
    free(u->shown);
    memset(u, 0, sizeof *u);
}

/* ---- the connection ----------------------------------------------------- */

typedef struct req {
    struct req *next;
    unsigned flags;
    ad_redis_reply_fn fn; /* NULL: nobody waits (closed) */
    void *ud;
    const ad_redis_script *script; /* EVALSHA: argv[1] is filled at sending */
    int argc;
    const char **argv;
    size_t *lens;
    bool sent;
    uint64_t sent_at; /* uv_now */
    /* internal: a handshake step */
    bool internal;
    ad_redis_script *load; /* SCRIPT LOAD of this one */
} req;

enum { ST_WAIT, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_DOWN };

struct ad_redis {
    uv_loop_t *loop;
    ad_redis_url url;
    bool reconnect;
    double connect_timeout_s, reply_timeout_s;
    ad_redis_script *const *scripts;
    size_t nscripts;
    ad_redis_state_fn on_state;
    void *ud;

    redisAsyncContext *ac;
    bool dying;    /* ac is being freed by hiredis: do not touch it */
    bool dropping; /* ... because drop() asked for it (why is set) */
    int st;
    uint64_t st_since;
    int failures;      /* attempts since the last ready connection */
    unsigned long attempts;
    bool told_down;    /* on_state(false) was reported for this outage */
    bool ever_up;
    size_t handshake;  /* internal replies still awaited */
    char why[512];     /* why the connection was lost */

    req *head, *tail, *unsent;
    size_t n;
    req *failed, *failed_tail; /* to be answered with NULL by kick */

    uv_timer_t retry, watch, kick;
    int open_handles;
    bool closing;
};

static void start_connect(ad_redis *r);
static void drop(ad_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static req *req_new(int argc, const char *const *argv, const size_t *lens, int extra)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += (lens ? lens[i] : strlen(argv[i])) + 1;
    int total = argc + extra;
    req *q = calloc(1, sizeof *q + (size_t)total * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!q)
        return NULL;
    q->argc = total;
    q->argv = (const char **)(q + 1);
    q->lens = (size_t *)(q->argv + total);
    char *p = (char *)(q->lens + total);
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        memcpy(p, argv[i], n);
        p[n] = '\0';
        q->argv[extra + i] = p;
        q->lens[extra + i] = n;
        p += n + 1;
    }
    return q;
}

static void on_kick(uv_timer_t *t);

static void kick_later(ad_redis *r)
{
    if (!r->closing)
        uv_timer_start(&r->kick, on_kick, 0, 0);
}

static void on_retry(uv_timer_t *t);

static void fail_req(ad_redis *r, req *q)
{
    q->next = NULL;
    if (r->failed_tail)
        r->failed_tail->next = q;
    else
        r->failed = q;
    r->failed_tail = q;
    kick_later(r);
}

static void deliver_failed(ad_redis *r)
{
    while (r->failed) {
        req *q = r->failed;
        r->failed = q->next;
        if (!r->failed)
            r->failed_tail = NULL;
        if (q->fn)
            q->fn(q->ud, NULL);
        free(q);
    }
}

static void on_kick(uv_timer_t *t)
{
    deliver_failed(t->data);
}

static void unlink_req(ad_redis *r, req *q)
{
    req **pp = &r->head, *prev = NULL;
    while (*pp && *pp != q) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = q->next;
    if (r->tail == q)
        r->tail = prev;
    if (r->unsent == q)
        r->unsent = q->next;
    r->n--;
    q->next = NULL;
}

static bool transient_error(const redisReply *rep)
{
    static const char *const kinds[] = {"LOADING", "BUSY", "TRYAGAIN", "READONLY", "MASTERDOWN",
                                        "NOSCRIPT", "NOAUTH"};
    if (!rep || rep->type != REDIS_REPLY_ERROR || !rep->str)
        return false;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(rep->str, kinds[i], n) == 0 && (rep->str[n] == ' ' || rep->str[n] == '\0'))
            return true;
    }
    return false;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends the requests from `unsent` on, in order, while the context takes them. */
static void send_unsent(ad_redis *r)
{
    while (r->unsent && r->st == ST_READY && r->ac && !r->dying) {
        req *q = r->unsent;
        if (q->script)
            q->argv[1] = q->script->sha, q->lens[1] = strlen(q->script->sha);
        if (redisAsyncCommandArgv(r->ac, on_reply, q, q->argc, q->argv, q->lens) != REDIS_OK)
            return; /* the context is going away: sent again on the next one */
        q->sent = true;
        q->sent_at = uv_now(r->loop);
        r->unsent = q->next;
    }
}

static void ready(ad_redis *r)
{
    r->st = ST_READY;
    r->st_since = uv_now(r->loop);
    r->failures = 0;
    bool tell = r->told_down || !r->ever_up;
    r->told_down = false;
    r->ever_up = true;
    send_unsent(r);
    if (tell && r->on_state)
        r->on_state(r->ud, true, NULL);
}

/* The connection is gone (ac freed or being freed by hiredis). */
static void lost(ad_redis *r)
{
    r->ac = NULL;
    r->dying = r->dropping = false;
    r->handshake = 0;
    /* What was sent is unsent again, or fails. */
    req *keep = NULL, *keep_tail = NULL;
    for (req *q = r->head; q;) {
        req *next = q->next;
        q->sent = false;
        if (r->closing || !r->reconnect || !(q->flags & AD_REDIS_RETRY)) {
            r->n--;
            fail_req(r, q);
        } else {
            q->next = NULL;
            if (keep_tail)
                keep_tail->next = q;
            else
                keep = q;
            keep_tail = q;
        }
        q = next;
    }
    r->head = r->unsent = keep;
    r->tail = keep_tail;
    if (r->closing)
        return;
    if (!r->reconnect) {
        r->st = ST_DOWN;
        if (r->on_state)
            r->on_state(r->ud, false, r->why);
        return;
    }
    bool tell = !r->told_down && (r->ever_up || r->failures == 1);
    r->st = ST_WAIT;
    r->st_since = uv_now(r->loop);
    double wait = BACKOFF_MIN_S;
    for (int i = 1; i < r->failures && wait < BACKOFF_MAX_S; i++)
        wait *= 2;
    if (wait > BACKOFF_MAX_S)
        wait = BACKOFF_MAX_S;
    /* Jitter: workers that lost the same server do not come back in step. */
    wait *= 0.5 + 0.5 * ((double)rand() / RAND_MAX);
    uv_timer_start(&r->retry, on_retry, (uint64_t)(wait * 1000) + 1, 0);
    if (tell) {
        r->told_down = true;
        if (r->on_state)
            r->on_state(r->ud, false, r->why);
    }
}

static void on_connect(const redisAsyncContext *cac, int status);
static void on_disconnect(const redisAsyncContext *cac, int status);

/* Drops the current connection (also one still connecting). */
static void drop(ad_redis *r, const char *fmt, ...)
{
    if (!r->ac || r->dying)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    redisAsyncContext *ac = r->ac;
    bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    bool in_cb = (ac->c.flags & REDIS_IN_CALLBACK) != 0;
    r->dying = r->dropping = true;
    r->failures++;
    /* Connected: hiredis answers the callbacks with NULL and then calls
     * on_disconnect, which ends the connection here. Not yet connected: no
     * callback of it comes; it ends now. */
    redisAsyncFree(ac);
    if (!connected && !in_cb)
        lost(r);
    else if (!connected)
        r->ac = NULL; /* freed when its callback returns */
}

static void on_retry(uv_timer_t *t)
{
    ad_redis *r = t->data;
    if (r->st == ST_WAIT && !r->closing)
        start_connect(r);
}

/* True when the socket failed in a way the adapter does not pass on: libuv
 * reports POLLERR (a refused connection, a reset) as a poll status and
 * stops the poll handle, and the adapter of hiredis 0.14 ignores every
 * non-zero status, so hiredis never learns of it. why gets the error. */
static bool socket_failed(ad_redis *r, char *why, size_t whylen)
{
    if (!r->ac || r->dying)
        return false;
    int fd = r->ac->c.fd, e = 0;
    socklen_t len = sizeof e;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e) {
        snprintf(why, whylen, "%s", strerror(e));
        return true;
    }
    redisLibuvEvents *p = r->ac->ev.data;
    if (p && p->events && !uv_is_active((uv_handle_t *)&p->handle)) {
        snprintf(why, whylen, "the socket reported an error");
        return true;
    }
    return false;
}

static void on_watch(uv_timer_t *t)
{
    ad_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    char why[256];
    if (socket_failed(r, why, sizeof why)) {
        drop(r, "%s %s: %s", r->st == ST_CONNECTING ? "cannot connect to" : "lost the connection to",
             r->url.shown, why);
    } else if (r->st == ST_CONNECTING && r->ac &&
        now - r->st_since > (uint64_t)(r->connect_timeout_s * 1000)) {
        drop(r, "could not connect to %s within %g s", r->url.shown, r->connect_timeout_s);
    } else if (r->st == ST_HANDSHAKE && now - r->st_since > (uint64_t)(r->reply_timeout_s * 1000)) {
        drop(r, "%s accepted the connection but did not answer within %g s", r->url.shown,
             r->reply_timeout_s);
    } else if (r->st == ST_READY && r->head && r->head->sent &&
               now - r->head->sent_at > (uint64_t)(r->reply_timeout_s * 1000)) {
        drop(r, "%s did not answer within %g s", r->url.shown, r->reply_timeout_s);
    }
}

static void handshake_send(ad_redis *r, req *q)
{
    if (redisAsyncCommandArgv(r->ac, on_reply, q, q->argc, q->argv, q->lens) != REDIS_OK) {
        free(q);
        drop(r, "cannot send the handshake to %s", r->url.shown);
        return;
    }
    r->handshake++;
}

static void start_handshake(ad_redis *r)
{
    r->st = ST_HANDSHAKE;
    r->st_since = uv_now(r->loop);
    redisEnableKeepAlive(&r->ac->c);
    if (r->url.password) {
        const char *a[3] = {"AUTH", r->url.user ? r->url.user : r->url.password,
                            r->url.password};
        req *q = req_new(r->url.user ? 3 : 2, a, NULL, 0);
        if (!q)
            return drop(r, "out of memory");
        q->internal = true;
        handshake_send(r, q);
    }
    if (r->url.db && r->ac && !r->dying) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        const char *a[2] = {"SELECT", db};
        req *q = req_new(2, a, NULL, 0);
        if (!q)
            return drop(r, "out of memory");
        q->internal = true;
        handshake_send(r, q);
    }
    for (size_t i = 0; i < r->nscripts && r->ac && !r->dying; i++) {
        const char *a[3] = {"SCRIPT", "LOAD", r->scripts[i]->src};
        req *q = req_new(3, a, NULL, 0);
        if (!q)
            return drop(r, "out of memory");
        q->internal = true;
        q->load = r->scripts[i];
        handshake_send(r, q);
    }
    if (r->ac && !r->dying && r->handshake == 0)
        ready(r);
}

static void handshake_reply(ad_redis *r, req *q, redisReply *rep)
{
    r->handshake--;
    if (r->dying || !r->ac)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        const char *what = q->load ? "loading a script" : strcmp(q->argv[0], "AUTH") == 0
                                                              ? "authentication"
                                                              : "selecting the database";
        drop(r, "%s: %s failed: %s", r->url.shown, what, ad_redis_reply_error(rep));
        return;
    }
    if (q->load) {
        size_t n;
        const char *sha = ad_redis_str(rep, &n);
        if (!sha || n != 40) {
            drop(r, "%s: SCRIPT LOAD of %s gave no SHA", r->url.shown, q->load->name);
            return;
        }
        memcpy(q->load->sha, sha, 40);
        q->load->sha[40] = '\0';
    }
    if (r->handshake == 0)
        ready(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    ad_redis *r = ac->data;
    req *q = priv;
    redisReply *rep = reply;
    if (q->internal) {
        if (r)
            handshake_reply(r, q, rep);
        free(q);
        return;
    }
    if (!rep) {
        /* hiredis is freeing the context: lost() sorts the requests out. */
        r->dying = true;
        return;
    }
    if (transient_error(rep) && (q->flags & AD_REDIS_RETRY) && r->reconnect) {
        /* Not run (loading, failing over, scripts flushed): the connection
         * is made again and the request sent again in its place. */
        drop(r, "%s: %s", r->url.shown, rep->str);
        return;
    }
    unlink_req(r, q);
    if (q->fn)
        q->fn(q->ud, rep);
    free(q);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    ad_redis *r = cac->data;
    if (!r)
        return;
    if (status != REDIS_OK) {
        snprintf(r->why, sizeof r->why, "cannot connect to %s: %s", r->url.shown,
                 cac->errstr[0] ? cac->errstr : "connection failed");
        r->failures++;
        lost(r); /* hiredis frees the context when this returns */
        return;
    }
    start_handshake(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    ad_redis *r = cac->data;
    if (!r)
        return;
    (void)status;
    if (!r->dropping) {
        r->failures++;
        snprintf(r->why, sizeof r->why, "lost the connection to %s: %s", r->url.shown,
                 cac->errstr[0] ? cac->errstr : "closed by the server");
    }
    lost(r);
}

static void start_connect(ad_redis *r)
{
    r->st = ST_CONNECTING;
    r->st_since = uv_now(r->loop);
    r->dying = r->dropping = false;
    r->attempts++;
    redisAsyncContext *ac = r->url.path ? redisAsyncConnectUnix(r->url.path)
                                        : redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err) {
        snprintf(r->why, sizeof r->why, "cannot connect to %s: %s", r->url.shown,
                 ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        r->failures++;
        lost(r);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        snprintf(r->why, sizeof r->why, "cannot watch the connection to %s", r->url.shown);
        redisAsyncFree(ac);
        r->failures++;
        lost(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
}

ad_redis *ad_redis_new(const ad_redis_opts *o, char *err, size_t errlen)
{
    if (ad_lazy_hiredis(err, errlen) != AD_OK)
        return NULL;
    ad_redis *r = calloc(1, sizeof *r);
    if (!r || ad_redis_url_copy(&r->url, o->url) != AD_OK) {
        free(r);
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = o->loop;
    r->reconnect = o->reconnect;
    r->connect_timeout_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : 5;
    r->reply_timeout_s = o->reply_timeout_s > 0 ? o->reply_timeout_s : 10;
    r->scripts = o->scripts;
    r->nscripts = o->nscripts;
    r->on_state = o->on_state;
    r->ud = o->ud;
    uv_timer_init(r->loop, &r->retry);
    uv_timer_init(r->loop, &r->watch);
    uv_timer_init(r->loop, &r->kick);
    r->retry.data = r->watch.data = r->kick.data = r;
    r->open_handles = 3;
    /* Often enough to notice a failed socket soon (socket_failed) and a
     * deadline within a quarter of it. */
    double least = r->connect_timeout_s < r->reply_timeout_s ? r->connect_timeout_s
                                                              : r->reply_timeout_s;
    uint64_t every = (uint64_t)(least * 250);
    every = every < 20 ? 20 : every > 250 ? 250 : every;
    uv_timer_start(&r->watch, on_watch, every, every);
    start_connect(r);
    return r;
}

static void on_handle_closed(uv_handle_t *h)
{
    ad_redis *r = h->data;
    if (--r->open_handles > 0)
        return;
    /* hiredis is done with any context by now: free what it still held. */
    while (r->head) {
        req *q = r->head;
        r->head = q->next;
        free(q);
    }
    deliver_failed(r);
    ad_redis_url_free(&r->url);
    free(r);
}

void ad_redis_close(ad_redis *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    /* Everybody hears now; the structs hiredis still points at stay until
     * it lets go of them. */
    for (req *q = r->head; q; q = q->next) {
        ad_redis_reply_fn fn = q->fn;
        q->fn = NULL;
        if (fn)
            fn(q->ud, NULL);
    }
    deliver_failed(r);
    if (r->ac && !r->dying) {
        redisAsyncContext *ac = r->ac;
        bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
        r->dying = r->dropping = true;
        redisAsyncFree(ac);
        if (!connected)
            r->ac = NULL;
    }
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
    uv_close((uv_handle_t *)&r->watch, on_handle_closed);
    uv_close((uv_handle_t *)&r->kick, on_handle_closed);
}

bool ad_redis_up(const ad_redis *r)
{
    return r && r->st == ST_READY && !r->dying;
}

unsigned long ad_redis_attempts(const ad_redis *r)
{
    return r ? r->attempts : 0;
}

size_t ad_redis_pending(const ad_redis *r)
{
    return r ? r->n : 0;
}

static int queue(ad_redis *r, req *q)
{
    r->n++;
    if (r->tail)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    if (!r->unsent)
        r->unsent = q;
    send_unsent(r);
    return AD_OK;
}

static bool refuses(const ad_redis *r)
{
    return r->closing || r->st == ST_DOWN || (!r->reconnect && r->st == ST_WAIT);
}

int ad_redis_command(ad_redis *r, unsigned flags, ad_redis_reply_fn fn, void *ud, int argc,
                     const char *const *argv, const size_t *lens)
{
    if (refuses(r))
        return AD_ERR;
    req *q = req_new(argc, argv, lens, 0);
    if (!q)
        return AD_ENOMEM;
    q->flags = flags;
    q->fn = fn;
    q->ud = ud;
    return queue(r, q);
}

int ad_redis_eval(ad_redis *r, const ad_redis_script *s, unsigned flags, ad_redis_reply_fn fn,
                  void *ud, int nkeys, int argc, const char *const *argv, const size_t *lens)
{
    if (refuses(r))
        return AD_ERR;
    req *q = req_new(argc, argv, lens, 3);
    if (!q)
        return AD_ENOMEM;
    q->flags = flags;
    q->fn = fn;
    q->ud = ud;
    q->script = s;
    q->argv[0] = "EVALSHA";
    q->lens[0] = 7;
    q->argv[1] = s->sha;
    q->lens[1] = 40;
    /* The number of keys as text; the scripts here take at most 15. */
    static const char *const digits[] = {"0", "1", "2", "3", "4", "5", "6", "7",
                                         "8", "9", "10", "11", "12", "13", "14", "15"};
    if (nkeys < 0 || nkeys > 15) {
        free(q);
        return AD_EINVAL;
    }
    q->argv[2] = digits[nkeys];
    q->lens[2] = strlen(digits[nkeys]);
    return queue(r, q);
}

/* ---- reading replies ---------------------------------------------------- */

const char *ad_redis_reply_error(const redisReply *r)
{
    static _Thread_local char buf[64];
    if (!r)
        return "no reply (the connection was lost)";
    if ((r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ||
         r->type == REDIS_REPLY_STRING) && r->str)
        return r->str;
    snprintf(buf, sizeof buf, "unexpected reply (type %d)", r->type);
    return buf;
}

redisReply *ad_redis_at(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    return r->element[i];
}

const char *ad_redis_str(const redisReply *r, size_t *len)
{
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) || !r->str) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = r->len;
    return r->str;
}

bool ad_redis_is(const redisReply *r, const char *s)
{
    size_t n;
    const char *t = ad_redis_str(r, &n);
    return t && n == strlen(s) && memcmp(t, s, n) == 0;
}

long long ad_redis_int(const redisReply *r, long long def)
{
    if (!r)
        return def;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    size_t n;
    const char *s = ad_redis_str(r, &n);
    if (!s || n == 0 || n > 20)
        return def;
    char buf[24];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    return *end ? def : v;
}

/*
 * test_http.c -- the HTTP server (runtime/serve/http.c) against raw
 * clients on real loopback sockets, all on one loop: keep-alive and
 * pipelining, what is refused before the handler (smuggling shapes, the
 * token, sizes, expectations), the deadlines, server-sent events with
 * keep-alive comments, a reader that takes nothing (bounded, then
 * dropped), a client that goes away, the connection limits and draining.
 * Deadlines are set short here; no case measures time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../harness.h"
#include "base/buf.h"
#include "serve/http.h"

static uv_loop_t loop;
static bool guard_fired;

/* ---- the server side ---------------------------------------------------- */

typedef struct srv_state {
    ad_http_server *srv;
    int port;
    int handled;
    ad_http_req *held;     /* /later, /sse-hold: answered by the test */
    bool gone;             /* on_gone was called */
    int drains;
    size_t max_queued;
    size_t flood_block;
    bool idle;             /* drain's on_idle */
    char last_auth[128];
} srv_state;

static srv_state S;

static void on_gone(void *ud, ad_http_req *req)
{
    (void)ud;
    S.gone = true;
    if (S.held == req)
        S.held = NULL;
}

static void flood(ad_http_req *req)
{
    static char block[512 * 1024];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 4096; i++) {
        int rc = ad_http_sse_write(req, block, S.flood_block ? S.flood_block : 65536);
        size_t q = rc == AD_ERR ? 0 : ad_http_queued(req);
        if (q > S.max_queued)
            S.max_queued = q;
        if (rc != AD_HTTP_OK)
            return;
    }
}

static void on_drain(void *ud, ad_http_req *req)
{
    (void)ud;
    S.drains++;
    flood(req);
}

static const ad_http_req_cb req_cb = {on_gone, on_drain};

static void handler(void *ud, ad_http_req *req)
{
    (void)ud;
    S.handled++;
    const char *path = ad_http_path(req);
    ad_http_req_set_cb(req, &req_cb, NULL);
    if (strcmp(path, "/later") == 0) {
        S.held = req;
        return;
    }
    if (strcmp(path, "/sse") == 0) {
        ad_http_sse_begin(req, NULL);
        ad_http_sse_write(req, "data: one\n\n", 11);
        S.held = req;
        return;
    }
    if (strcmp(path, "/flood") == 0) {
        ad_http_sse_begin(req, NULL);
        S.held = req;
        flood(req);
        return;
    }
    size_t blen;
    const char *body = ad_http_body(req, &blen);
    char q[64];
    const char *qv = ad_http_query_param(req, "q", q, sizeof q);
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "%s %s q=%s body=%.*s", ad_http_method(req), path, qv ? qv : "-", (int)blen,
                  body);
    ad_http_respond(req, 200, "text/plain", b.data, b.len, "X-Test: 1\r\n");
    ad_buf_free(&b);
}

static void start_server(const ad_http_opts *o)
{
    memset(&S, 0, sizeof S);
    S.srv = ad_http_server_new(&loop, o, handler, NULL);
    char err[256];
    CHECK(ad_http_server_listen(S.srv, "127.0.0.1", 0, err, sizeof err) == 0);
    S.port = ad_http_server_port(S.srv);
    CHECK(S.port > 0);
}

static void stop_server(void)
{
    ad_http_server_free(S.srv);
    S.srv = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- the client side ---------------------------------------------------- */

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t drip;
    ad_buf got;
    bool connected, eof, closed;
    int err;
    const char *text; /* what to send */
    size_t len, sent;
    bool slow;        /* one byte per drip tick */
    bool no_read;     /* take nothing from the socket */
    bool rcvbuf_small;
} client;

static void c_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(sz);
    b->len = sz;
}

static void c_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    client *c = s->data;
    if (n > 0)
        ad_buf_append(&c->got, b->base, (size_t)n);
    else if (n < 0)
        c->eof = true;
    free(b->base);
}

static void c_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void c_send(client *c, const char *p, size_t n)
{
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, c_written) != 0)
        free(w);
}

static void c_drip(uv_timer_t *t)
{
    client *c = t->data;
    if (c->sent < c->len && !c->eof) {
        c_send(c, c->text + c->sent, 1);
        c->sent++;
    } else {
        uv_timer_stop(t);
    }
}

static void c_connected(uv_connect_t *r, int status)
{
    client *c = r->data;
    c->err = status;
    if (status != 0) {
        c->eof = true;
        return;
    }
    c->connected = true;
    if (!c->no_read)
        uv_read_start((uv_stream_t *)&c->tcp, c_alloc, c_read);
    if (c->slow) {
        uv_timer_start(&c->drip, c_drip, 0, 20);
    } else if (c->len) {
        c_send(c, c->text, c->len);
        c->sent = c->len;
    }
}

static void c_open(client *c, int port, const char *text)
{
    (void)port;
    memset(c, 0, sizeof *c);
    c->text = text;
    c->len = text ? strlen(text) : 0;
}

static void c_connect(client *c, int port)
{
    uv_tcp_init_ex(&loop, &c->tcp, AF_INET);
    if (c->rcvbuf_small) {
        int sz = 4096;
        uv_recv_buffer_size((uv_handle_t *)&c->tcp, &sz);
    }
    uv_timer_init(&loop, &c->drip);
    c->tcp.data = c->creq.data = c->drip.data = c;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&a, c_connected);
}

static void c_closed(uv_handle_t *h)
{
    client *c = h->data;
    c->closed = true;
}

static void c_close(client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, NULL);
        uv_close((uv_handle_t *)&c->drip, c_closed);
    }
    while (!c->closed)
        uv_run(&loop, UV_RUN_ONCE);
    ad_buf_free(&c->got);
}

static void on_guard(uv_timer_t *t)
{
    (void)t;
    guard_fired = true;
}

/* Runs the loop until *flag, or until cond(c) holds; a guard against a
 * hang (a failure, not a measurement). */
typedef bool (*cond_fn)(void *);
static bool run_until(cond_fn cond, void *arg)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    guard_fired = false;
    uv_timer_start(&guard, on_guard, 20000, 0);
    while (!cond(arg) && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(!guard_fired);
    return !guard_fired;
}

static bool is_eof(void *p)
{
    return ((client *)p)->eof;
}

static bool has_two_responses(void *p)
{
    client *c = p;
    const char *s = c->got.data ? c->got.data : "";
    const char *a = strstr(s, "HTTP/1.1 ");
    return c->eof || (a && strstr(a + 1, "HTTP/1.1 ") && strstr(strstr(a + 1, "HTTP/1.1 "), "body="));
}

static bool has_body_marker(void *p)
{
    client *c = p;
    return c->eof || (c->got.data && strstr(c->got.data, "body="));
}

static bool flag_true(void *p)
{
    return *(bool *)p;
}

static bool held_set(void *p)
{
    (void)p;
    return S.held != NULL;
}

static const char *got(client *c)
{
    return c->got.data ? c->got.data : "";
}

/* Sends text on a new connection and runs until the server closes it. */
static void exchange(client *c, const char *text)
{
    c_open(c, S.port, text);
    c_connect(c, S.port);
    run_until(is_eof, c);
}

static void opts(ad_http_opts *o)
{
    ad_http_opts_default(o);
}

/* ---- cases -------------------------------------------------------------- */

TEST(keep_alive_and_pipelining)
{
    ad_http_opts o;
    opts(&o);
    start_server(&o);
    client c;
    /* Two requests in one write: answered in order, one at a time. */
    c_open(&c, S.port,
           "GET /a?q=x%20y HTTP/1.1\r\nHost: t\r\n\r\n"
           "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    c_connect(&c, S.port);
    run_until(has_two_responses, &c);
    CHECK(!c.eof); /* kept alive */
    CHECK(strstr(got(&c), "HTTP/1.1 200 OK\r\n") == got(&c));
    CHECK(strstr(got(&c), "X-Test: 1\r\n"));
    const char *first = strstr(got(&c), "GET /a q=x y body=");
    const char *second = strstr(got(&c), "POST /b q=- body=abc");
    CHECK(first && second && first < second);
    CHECK_EQ(S.handled, 2);
    c_close(&c);
    /* HTTP/1.0 without keep-alive: closed after the response. */
    exchange(&c, "GET /c HTTP/1.0\r\n\r\n");
    CHECK(strstr(got(&c), "Connection: close\r\n"));
    CHECK(strstr(got(&c), "GET /c"));
    c_close(&c);
    stop_server();
}

TEST(chunked_body)
{
    ad_http_opts o;
    opts(&o);
    start_server(&o);
    client c;
    c_open(&c, S.port,
           "POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    c_connect(&c, S.port);
    run_until(has_body_marker, &c);
    CHECK(strstr(got(&c), "body=abcde"));
    c_close(&c);
    stop_server();
}

TEST(smuggling_shapes_get_400_and_close)
{
    ad_http_opts o;
    opts(&o);
    start_server(&o);
    static const char *const shapes[] = {
        "POST / HTTP/1.1\r\nHost: t\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\nHost: t\n\n",
        "POST / HTTP/1.1\r\nHost: t\r\nX: a\r\n Content-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        /* a bad chunk size: the parser refuses it */
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        client c;
        exchange(&c, shapes[i]);
        if (!strstr(got(&c), "HTTP/1.1 400 Bad Request\r\n") || !strstr(got(&c), "Connection: close"))
            fprintf(stderr, "shape %zu got: %s\n", i, got(&c));
        CHECK(strstr(got(&c), "HTTP/1.1 400 Bad Request\r\n"));
        CHECK(strstr(got(&c), "\"error\":{\"message\":"));
        c_close(&c);
    }
    CHECK_EQ(S.handled, 0);
    client c;
    exchange(&c, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 501 "));
    c_close(&c);
    stop_server();
}

TEST(token)
{
    ad_http_opts o;
    opts(&o);
    o.token = "s3cret-token-value";
    start_server(&o);
    client c;
    exchange(&c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    CHECK(strstr(got(&c), "HTTP/1.1 401 Unauthorized\r\n"));
    CHECK(strstr(got(&c), "WWW-Authenticate: Bearer\r\n"));
    CHECK(strstr(got(&c), "missing_token"));
    c_close(&c);
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret-token-valuX\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 401 "));
    CHECK(strstr(got(&c), "invalid_token"));
    CHECK(!strstr(got(&c), "s3cret"));
    c_close(&c);
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret-token-value1\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 401 "));
    c_close(&c);
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Basic czNjcmV0\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 401 "));
    c_close(&c);
    CHECK_EQ(S.handled, 0);
    c_open(&c, S.port, "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: bearer s3cret-token-value\r\n\r\n");
    c_connect(&c, S.port);
    run_until(has_body_marker, &c);
    CHECK(strstr(got(&c), "HTTP/1.1 200 "));
    c_close(&c);
    /* /health needs none. */
    c_open(&c, S.port, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&c, S.port);
    run_until(has_body_marker, &c);
    CHECK(strstr(got(&c), "HTTP/1.1 200 "));
    c_close(&c);
    CHECK_EQ(S.handled, 2);
    CHECK(ad_http_token_equal("abc", 3, "abc", 3));
    CHECK(!ad_http_token_equal("abd", 3, "abc", 3));
    CHECK(!ad_http_token_equal("ab", 2, "abc", 3));
    CHECK(!ad_http_token_equal("", 0, "", 0));
    stop_server();
}

TEST(sizes_and_expectations)
{
    ad_http_opts o;
    opts(&o);
    o.max_body_bytes = 10;
    o.max_header_bytes = 256;
    start_server(&o);
    client c;
    /* Content-Length over the limit: 413 before the body is read. */
    exchange(&c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 413 "));
    c_close(&c);
    /* Chunks that pass it. */
    exchange(&c, "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 413 "));
    c_close(&c);
    /* A head past max_header_bytes. */
    char big[600];
    snprintf(big, sizeof big, "GET /x HTTP/1.1\r\nHost: t\r\nX: %0400d\r\n\r\n", 0);
    exchange(&c, big);
    CHECK(strstr(got(&c), "HTTP/1.1 431 "));
    c_close(&c);
    /* Expect: 100-continue gets the interim response first. */
    c_open(&c, S.port, "POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
    c_connect(&c, S.port);
    run_until(has_body_marker, &c);
    CHECK(strstr(got(&c), "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") == got(&c));
    c_close(&c);
    exchange(&c, "POST /x HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\nok");
    CHECK(strstr(got(&c), "HTTP/1.1 417 "));
    c_close(&c);
    CHECK_EQ(S.handled, 1);
    stop_server();
}

TEST(deadlines)
{
    ad_http_opts o;
    opts(&o);
    o.header_timeout_s = 0.3;
    o.body_timeout_s = 0.3;
    o.idle_timeout_s = 0.3;
    start_server(&o);
    client c;
    /* A head sent one byte per tick never completes: 408, closed. */
    c_open(&c, S.port, "GET /slow HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    c.slow = true;
    c_connect(&c, S.port);
    run_until(is_eof, &c);
    CHECK(strstr(got(&c), "HTTP/1.1 408 "));
    CHECK(c.sent < c.len);
    c_close(&c);
    /* A body that stops coming: 408. */
    exchange(&c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    CHECK(strstr(got(&c), "HTTP/1.1 408 "));
    c_close(&c);
    /* Connected and silent: closed (408 too: the first head's deadline). */
    exchange(&c, NULL);
    CHECK(strstr(got(&c), "HTTP/1.1 408 "));
    c_close(&c);
    /* Idle after a response: closed without a word. */
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 200 "));
    CHECK(!strstr(got(&c), "408"));
    c_close(&c);
    CHECK_EQ(S.handled, 1);
    stop_server();
}

static bool sse_has_two_comments(void *p)
{
    client *c = p;
    const char *a = c->got.data ? strstr(c->got.data, ": keep-alive") : NULL;
    return c->eof || (a && strstr(a + 1, ": keep-alive"));
}

static bool has_end_chunk(void *p)
{
    client *c = p;
    return c->eof || (c->got.data && strstr(c->got.data, "\r\n0\r\n\r\n"));
}

TEST(sse_stream_and_keepalive_comments)
{
    ad_http_opts o;
    opts(&o);
    o.sse_keepalive_s = 0.05;
    start_server(&o);
    client c;
    c_open(&c, S.port, "GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&c, S.port);
    run_until(sse_has_two_comments, &c);
    CHECK(!c.eof);
    CHECK(strstr(got(&c), "Content-Type: text/event-stream"));
    CHECK(strstr(got(&c), "Transfer-Encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n"));
    CHECK(strstr(got(&c), "e\r\n: keep-alive\n\n\r\n"));
    CHECK(S.held != NULL);
    CHECK_EQ(ad_http_sse_write(S.held, "data: two\n\n", 11), AD_HTTP_OK);
    CHECK_EQ(ad_http_sse_end(S.held), 0);
    S.held = NULL;
    run_until(has_end_chunk, &c);
    CHECK(strstr(got(&c), "b\r\ndata: two\n\n\r\n0\r\n\r\n"));
    CHECK(!c.eof); /* the connection is kept for the next request */
    CHECK(!S.gone);
    c_close(&c);
    stop_server();
}

TEST(client_gone_mid_stream)
{
    ad_http_opts o;
    opts(&o);
    start_server(&o);
    client c;
    c_open(&c, S.port, "GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&c, S.port);
    run_until(held_set, NULL);
    c_close(&c);
    run_until(flag_true, &S.gone);
    CHECK(S.held == NULL);
    CHECK_EQ(ad_http_server_active(S.srv), 0);
    /* A request waiting for its answer: the same. */
    S.gone = false;
    c_open(&c, S.port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&c, S.port);
    run_until(held_set, NULL);
    c_close(&c);
    run_until(flag_true, &S.gone);
    stop_server();
}

TEST(slow_reader_is_bounded_then_dropped)
{
    ad_http_opts o;
    opts(&o);
    o.max_write_queue = 256 * 1024;
    o.write_timeout_s = 0.3;
    start_server(&o);
    client c;
    c_open(&c, S.port, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    c.no_read = true;
    c.rcvbuf_small = true;
    c_connect(&c, S.port);
    run_until(flag_true, &S.gone);
    /* The writer was told to wait at the high-water mark, so the queue
     * never passed the cap (by at most one block of the last write). */
    CHECK(S.max_queued <= o.max_write_queue + 65536);
    CHECK(S.max_queued > 0);
    c_close(&c);
    stop_server();
    /* Writes that pass the cap at once drop the reader too. */
    o.write_timeout_s = 0;
    start_server(&o);
    S.flood_block = 300 * 1024;
    c_open(&c, S.port, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    c.no_read = true;
    c_connect(&c, S.port);
    run_until(flag_true, &S.gone);
    c_close(&c);
    stop_server();
}

TEST(connection_limits)
{
    ad_http_opts o;
    opts(&o);
    o.max_connections = 2;
    start_server(&o);
    client a, b, c;
    c_open(&a, S.port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&a, S.port);
    run_until(held_set, NULL);
    ad_http_req *first = S.held;
    S.held = NULL;
    c_open(&b, S.port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&b, S.port);
    run_until(held_set, NULL);
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 503 "));
    CHECK(strstr(got(&c), "serve.max_connections"));
    c_close(&c);
    CHECK_EQ(ad_http_server_connections(S.srv), 2);
    ad_http_respond(first, 200, NULL, "", 0, NULL);
    ad_http_respond(S.held, 200, NULL, "", 0, NULL);
    S.held = NULL;
    c_close(&a);
    c_close(&b);
    stop_server();
    opts(&o);
    o.max_connections_per_peer = 1;
    start_server(&o);
    c_open(&a, S.port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&a, S.port);
    run_until(held_set, NULL);
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(strstr(got(&c), "HTTP/1.1 503 "));
    CHECK(strstr(got(&c), "max_connections_per_peer"));
    c_close(&c);
    c_close(&a);
    run_until(flag_true, &S.gone);
    stop_server();
}

TEST(drain)
{
    ad_http_opts o;
    opts(&o);
    start_server(&o);
    client a, idle;
    /* One connection idle after a response, one with a request in hand. */
    c_open(&idle, S.port, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&idle, S.port);
    run_until(has_body_marker, &idle);
    c_open(&a, S.port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    c_connect(&a, S.port);
    run_until(held_set, NULL);
    ad_http_server_drain(S.srv, NULL, NULL);
    run_until(is_eof, &idle); /* the idle one is closed */
    CHECK(!a.eof);
    /* The one in hand is answered, with Connection: close. */
    CHECK_EQ(ad_http_respond(S.held, 200, "text/plain", "bye", 3, NULL), 0);
    S.held = NULL;
    run_until(is_eof, &a);
    CHECK(strstr(got(&a), "Connection: close\r\n"));
    CHECK(strstr(got(&a), "\r\n\r\nbye"));
    CHECK_EQ(ad_http_server_active(S.srv), 0);
    c_close(&a);
    c_close(&idle);
    /* Nothing listens any more. */
    client c;
    exchange(&c, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(c.err != 0 || c.got.len == 0);
    c_close(&c);
    stop_server();
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    RUN(keep_alive_and_pipelining);
    RUN(chunked_body);
    RUN(smuggling_shapes_get_400_and_close);
    RUN(token);
    RUN(sizes_and_expectations);
    RUN(deadlines);
    RUN(sse_stream_and_keepalive_comments);
    RUN(client_gone_mid_stream);
    RUN(slow_reader_is_bounded_then_dropped);
    RUN(connection_limits);
    RUN(drain);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return harness_report("test_http");
}

/*
 * test_transport.c -- the transport seam (runtime/provider/transport.h)
 * and its shims: the recording shim around a fake transport the test
 * drives by hand (what it records, that no credential is recorded, the
 * 64 MiB cut), the replay transport (pieces, headers, the matcher, a
 * mismatch is fatal, pausing), and pausing the curl transport against a
 * peer on a real loopback socket that this test serves from its own loop,
 * so that it knows when every byte of the response has been sent.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../harness.h"
#include "base/buf.h"
#include "provider/cassette.h"
#include "provider/curl.h"
#include "provider/record.h"
#include "provider/replay.h"

#define KEY "sk-test-0123456789"

/* ---- what a caller sees ---------------------------------------------------- */

typedef struct seen {
    ad_buf headers; /* every header line, concatenated */
    ad_buf body;
    int pieces;
    size_t max_piece;
    bool done;
    ad_xfer_result res;
    char error[1024];
    char proto[16];
    char content_type[64];
    ad_exchange *x;     /* to pause from on_data */
    int pause_at_piece; /* pause when this piece arrived (1-based); 0: never */
    int abort_at_piece;
} seen;

static int seen_data(void *ud, long status, const char *ct, const char *data, size_t len)
{
    (void)status;
    (void)ct;
    seen *s = ud;
    ad_buf_append(&s->body, data, len);
    s->pieces++;
    if (len > s->max_piece)
        s->max_piece = len;
    if (s->pause_at_piece == s->pieces)
        ad_xfer_pause(s->x, true);
    return s->abort_at_piece == s->pieces ? AD_XFER_ABORT : AD_XFER_GO;
}

static void seen_header(void *ud, const char *line, size_t len)
{
    seen *s = ud;
    ad_buf_append(&s->headers, line, len);
}

static void seen_done(void *ud, const ad_xfer_result *res)
{
    seen *s = ud;
    s->done = true;
    s->res = *res;
    snprintf(s->error, sizeof s->error, "%s", res->error ? res->error : "");
    snprintf(s->proto, sizeof s->proto, "%s", res->proto ? res->proto : "");
    snprintf(s->content_type, sizeof s->content_type, "%s",
             res->content_type ? res->content_type : "");
    s->res.error = s->error;
    s->res.proto = s->proto;
    s->res.content_type = s->content_type;
}

static const ad_xfer_cb seen_cb = {seen_data, seen_header, seen_done};

static void seen_free(seen *s)
{
    ad_buf_free(&s->headers);
    ad_buf_free(&s->body);
}

/* ---- a fake transport, driven by the test ---------------------------------- */

typedef struct fake_x {
    ad_exchange base;
    ad_xfer_cb cb;
    void *ud;
} fake_x;

typedef struct fake {
    ad_transport base;
    fake_x *x;          /* the exchange in progress */
    ad_xfer_req req;    /* the last request, as given (borrowed) */
    int paused, resumed, cancelled, closed;
} fake;

static ad_exchange *fake_start(ad_transport *t, const ad_xfer_req *req, const ad_xfer_cb *cb,
                               void *ud)
{
    fake *f = (fake *)t;
    fake_x *x = calloc(1, sizeof *x);
    x->base.transport = t;
    x->cb = *cb;
    x->ud = ud;
    f->x = x;
    f->req = *req;
    return &x->base;
}

static void fake_pause(ad_exchange *e, bool paused)
{
    fake *f = (fake *)e->transport;
    if (paused)
        f->paused++;
    else
        f->resumed++;
}

static void fake_cancel(ad_exchange *e)
{
    fake *f = (fake *)e->transport;
    f->cancelled++;
    f->x = NULL;
    free(e);
}

static void fake_close(ad_transport *t)
{
    fake *f = (fake *)t;
    f->closed++;
    free(f->x);
    f->x = NULL;
}

static const ad_transport_vt fake_vt = {"fake", fake_start, fake_pause, fake_cancel, fake_close};

static void fake_header(fake *f, const char *line)
{
    f->x->cb.on_header(f->x->ud, line, strlen(line));
}

static int fake_data(fake *f, long status, const char *data, size_t len)
{
    return f->x->cb.on_data(f->x->ud, status, "text/event-stream", data, len);
}

static void fake_done(fake *f, int code, long status)
{
    ad_xfer_result res = {.code = code, .error = code ? "Recv failure" : NULL, .status = status,
                          .content_type = "text/event-stream", .proto = status ? "HTTP/2.0" : NULL,
                          .retry_after_s = -1};
    fake_x *x = f->x;
    f->x = NULL;
    x->cb.on_done(x->ud, &res);
    free(x);
}

static ad_exchange *start_fake(ad_transport *t, const char *url, const char *body, seen *s)
{
    static const char *const headers[] = {
        "Content-Type: application/json",
        "Authorization: Bearer " KEY,
        "X-Api-Key: " KEY,
        "HTTP-Referer: https://example.org/" KEY,
        "X-Title: agentd tests",
    };
    ad_xfer_req q = {.url = url, .headers = headers, .nheaders = 5, .body = body,
                     .body_len = strlen(body)};
    memset(s, 0, sizeof *s);
    ad_exchange *x = ad_xfer_start(t, &q, &seen_cb, s);
    s->x = x;
    return x;
}

/* ---- the recording shim ------------------------------------------------------ */

TEST(record_keeps_what_passes_and_no_credential)
{
    fake f = {.base = {&fake_vt}};
    ad_cassette *c = ad_cassette_new();
    ad_transport *t = ad_record_new(&f.base, c, KEY);
    CHECK(t != NULL);
    seen s;
    const char body[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"my key is " KEY "\"}]}";
    CHECK(start_fake(t, "http://127.0.0.1:1/v1/chat/completions?k=" KEY, body, &s) != NULL);
    /* The inner transport got the request as it was: the shim changes nothing. */
    CHECK_EQ(f.req.nheaders, 5);
    CHECK(f.req.body == body);
    fake_header(&f, "HTTP/1.1 100 Continue\r\n");
    fake_header(&f, "\r\n");
    fake_header(&f, "HTTP/2 200 \r\n");
    fake_header(&f, "content-type: text/event-stream\r\n");
    fake_header(&f, "x-request-id: abc\r\n");
    fake_header(&f, "x-echo: " KEY "\r\n");
    fake_header(&f, "\r\n");
    CHECK_EQ(fake_data(&f, 200, "data: one\n\n", 11), AD_XFER_GO);
    ad_xfer_pause(s.x, true); /* passes through */
    ad_xfer_pause(s.x, false);
    CHECK_EQ(fake_data(&f, 200, "data: " KEY "\n\n", strlen("data: " KEY "\n\n")), AD_XFER_GO);
    fake_done(&f, 0, 200);
    CHECK_EQ(f.paused, 1);
    CHECK_EQ(f.resumed, 1);
    /* The caller got every callback unchanged. */
    CHECK(s.done && s.res.code == 0 && s.res.status == 200);
    CHECK_STREQ(s.body.data, "data: one\n\ndata: " KEY "\n\n");
    CHECK(s.headers.data && strstr(s.headers.data, "x-echo: " KEY));
    CHECK_EQ(ad_cassette_count(c), 1);
    const ad_interaction *it = ad_cassette_get(c, 0);
    if (it) {
        CHECK_STREQ(it->url, "http://127.0.0.1:1/v1/chat/completions?k=[REDACTED]");
        CHECK_STREQ(it->req_body, "{\"messages\":[{\"role\":\"user\",\"content\":\"my key is "
                                  "[REDACTED]\"}]}");
        CHECK_STREQ(it->status, "200 OK");
        CHECK_STREQ(it->proto, "HTTP/2.0");
        CHECK_EQ(it->code, 200);
        CHECK_STREQ(it->resp_body, "data: one\n\ndata: [REDACTED]\n\n");
        CHECK(!it->resp_truncated);
        /* Request headers: sorted, credentials gone, the User-Agent added. */
        CHECK_EQ(it->nreq_headers, 3);
        if (it->nreq_headers == 3) {
            CHECK_STREQ(it->req_headers[0].name, "Content-Type");
            CHECK_STREQ(it->req_headers[1].name, "User-Agent");
            CHECK_STREQ(it->req_headers[1].value, "agentd/" AGENTD_VERSION);
            CHECK_STREQ(it->req_headers[2].name, "X-Title");
        }
        /* Response headers of the last response only, canonical names, the
         * one echoing the key dropped. */
        CHECK_EQ(it->nresp_headers, 2);
        CHECK_STREQ(ad_cassette_header_get(it->resp_headers, it->nresp_headers, "Content-Type"),
                    "text/event-stream");
        CHECK_STREQ(ad_cassette_header_get(it->resp_headers, it->nresp_headers, "X-Request-Id"),
                    "abc");
    }
    /* Nowhere in the file. */
    ad_buf y = AD_BUF_INIT;
    char err[256];
    CHECK_EQ(ad_cassette_emit(c, &y, err, sizeof err), AD_OK);
    CHECK(y.data && !strstr(y.data, KEY) && !strstr(y.data, "Bearer"));
    ad_buf_free(&y);
    seen_free(&s);
    ad_transport_close(t);
    CHECK_EQ(f.closed, 1);
    ad_cassette_free(c);
}

TEST(record_skips_what_got_no_response)
{
    fake f = {.base = {&fake_vt}};
    ad_cassette *c = ad_cassette_new();
    ad_transport *t = ad_record_new(&f.base, c, NULL);
    seen s;
    /* A connection that failed before any status. */
    start_fake(t, "http://u", "{}", &s);
    fake_done(&f, 7, 0);
    CHECK(s.done && s.res.code == 7);
    seen_free(&s);
    /* A cancelled exchange. */
    ad_exchange *x = start_fake(t, "http://u", "{}", &s);
    fake_header(&f, "HTTP/1.1 200 OK\r\n");
    fake_data(&f, 200, "x", 1);
    ad_xfer_cancel(x);
    CHECK_EQ(f.cancelled, 1);
    CHECK(!s.done);
    CHECK_EQ(ad_cassette_count(c), 0);
    seen_free(&s);
    /* An aborted one with a status is recorded (the response was real),
     * and the abort reaches the inner transport. */
    start_fake(t, "http://u", "{}", &s);
    s.abort_at_piece = 1;
    fake_header(&f, "HTTP/1.1 200 OK\r\n");
    CHECK_EQ(fake_data(&f, 200, "x", 1), AD_XFER_ABORT);
    fake_done(&f, 23, 200);
    CHECK_EQ(ad_cassette_count(c), 1);
    seen_free(&s);
    /* One still open when the shim closes: released, not recorded. */
    start_fake(t, "http://u", "{}", &s);
    seen_free(&s);
    ad_transport_close(t);
    CHECK_EQ(ad_cassette_count(c), 1);
    ad_cassette_free(c);
}

#define CAP ((size_t)AD_CASSETTE_MAX_BODY)

static int count_data(void *ud, long status, const char *ct, const char *data, size_t len)
{
    (void)status;
    (void)ct;
    (void)data;
    *(size_t *)ud += len;
    return AD_XFER_GO;
}

static void count_done(void *ud, const ad_xfer_result *res)
{
    (void)ud;
    (void)res;
}

/* A body past the cap, in pieces that do not line up with it: the first
 * 64 MiB exactly (a clean cut: no piece skipped and a later one kept),
 * marked as cut; the caller gets every byte. */
TEST(record_cuts_at_64_mib_cleanly)
{
    fake f = {.base = {&fake_vt}};
    ad_cassette *c = ad_cassette_new();
    ad_transport *t = ad_record_new(&f.base, c, NULL);
    size_t got = 0;
    ad_xfer_cb cb = {count_data, NULL, count_done};
    ad_xfer_req q = {.url = "http://u", .body = "{}", .body_len = 2};
    CHECK(ad_xfer_start(t, &q, &cb, &got) != NULL);
    fake_header(&f, "HTTP/1.1 200 OK\r\n");
    size_t piece = (1u << 20) - 7, sent = 0, total = CAP + 3 * piece;
    char *buf = malloc(piece);
    while (sent < total) {
        size_t n = total - sent < piece ? total - sent : piece;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)((sent + i) % 251);
        fake_data(&f, 200, buf, n);
        sent += n;
    }
    fake_done(&f, 0, 200);
    free(buf);
    CHECK_EQ(got, total);
    const ad_interaction *it = ad_cassette_get(c, 0);
    CHECK(it != NULL);
    if (it) {
        CHECK(it->resp_truncated);
        CHECK_EQ(it->resp_body_len, CAP);
        size_t bad = 0;
        for (size_t i = 0; i < it->resp_body_len; i++)
            bad += it->resp_body[i] != (char)(i % 251);
        CHECK_EQ(bad, 0);
    }
    ad_transport_close(t);
    ad_cassette_free(c);
}

/* ---- the replay transport ----------------------------------------------------- */

static ad_cassette *with_response(const char *req, long code, const char *ctype, const char *body,
                                  size_t len)
{
    ad_cassette *c = ad_cassette_new();
    ad_cassette_header h[] = {{"Content-Type", (char *)ctype}, {"X-Request-Id", "r1"}};
    ad_interaction it = {.method = "POST", .url = "u", .req_body = (char *)req,
                         .req_body_len = strlen(req), .proto = "HTTP/1.1", .code = code,
                         .status = code == 200 ? "200 OK" : "429 Too Many Requests",
                         .resp_body = (char *)body, .resp_body_len = len, .resp_headers = h,
                         .nresp_headers = 2};
    ad_cassette_append(c, &it);
    return c;
}

static uv_loop_t loop;

static ad_transport *replay_of(ad_cassette *c, int mode)
{
    return ad_replay_new(&loop, c, mode);
}

static void replay_done(ad_transport *t, ad_cassette *c)
{
    ad_transport_close(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ad_cassette_free(c);
}

static ad_exchange *start(ad_transport *t, const char *body, seen *s)
{
    static const char *const headers[] = {"Content-Type: application/json"};
    ad_xfer_req q = {.url = "http://u", .headers = headers, .nheaders = 1, .body = body,
                     .body_len = strlen(body)};
    memset(s, 0, sizeof *s);
    ad_exchange *x = ad_xfer_start(t, &q, &seen_cb, s);
    s->x = x;
    return x;
}

static char *big_body(size_t n)
{
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)('a' + i % 26);
    b[n] = '\0';
    return b;
}

TEST(replay_delivers_in_pieces_after_the_headers)
{
    char *body = big_body(50000);
    ad_cassette *c = with_response("{\"model\":\"m\"}", 200, "text/event-stream", body, 50000);
    ad_transport *t = replay_of(c, AD_REPLAY_IDS_EXACT);
    seen s;
    CHECK(start(t, "{\"model\": \"m\"}", &s) != NULL);
    CHECK(!s.done && s.pieces == 0); /* nothing from inside start() */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done);
    CHECK_EQ(s.res.code, 0);
    CHECK(!s.res.fatal);
    CHECK_EQ(s.res.status, 200);
    CHECK_STREQ(s.res.content_type, "text/event-stream");
    CHECK_STREQ(s.res.proto, "HTTP/1.1");
    CHECK_EQ(s.res.retry_after_s, -1);
    CHECK_EQ(s.res.bytes, 50000);
    CHECK(s.body.len == 50000 && memcmp(s.body.data, body, 50000) == 0);
    CHECK(s.pieces > 12);
    CHECK(s.max_piece <= 4096);
    CHECK_STREQ(s.headers.data, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                "X-Request-Id: r1\r\n\r\n");
    CHECK_EQ(ad_replay_used(t), 1);
    CHECK(ad_replay_error(t) == NULL);
    seen_free(&s);
    replay_done(t, c);
    free(body);
}

TEST(replay_mismatch_is_fatal_and_the_first_is_kept)
{
    ad_cassette *c = with_response("{\"model\":\"m\"}", 429, "application/json", "{}", 2);
    ad_transport *t = replay_of(c, AD_REPLAY_IDS_EXACT);
    seen s;
    start(t, "{\"model\":\"other\"}", &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done && s.res.code != 0 && s.res.fatal && !s.res.transient);
    CHECK_EQ(s.res.status, 0);
    CHECK_EQ(s.pieces, 0);
    CHECK(strstr(s.error, "replay: request 1 differs from the recording:\n  model: recorded "
                          "\"m\", sent \"other\"") != NULL);
    CHECK_STREQ(ad_replay_error(t), s.error);
    seen_free(&s);
    /* The recorded one still matches; a replayed error status has no wait. */
    start(t, "{\"model\":\"m\"}", &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done && s.res.code == 0 && s.res.status == 429 && s.res.retry_after_s == 0);
    seen_free(&s);
    /* One past the end: fatal too; the first error stays. */
    start(t, "{\"model\":\"m\"}", &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done && s.res.fatal);
    CHECK(strstr(s.error, "request 2 was not recorded") != NULL);
    CHECK(strstr(ad_replay_error(t), "request 1 differs") != NULL);
    seen_free(&s);
    replay_done(t, c);
}

TEST(replay_refuses_a_cut_response)
{
    ad_cassette *c = with_response("{}", 200, "text/plain", "data: x", 7);
    ad_interaction it = *ad_cassette_get(c, 0);
    it.resp_truncated = true;
    ad_cassette_append(c, &it);
    ad_transport *t = replay_of(c, AD_REPLAY_IDS_EXACT);
    char diff[1024];
    const ad_interaction *got;
    CHECK_EQ(ad_replay_next(t, "{}", 2, &got, diff, sizeof diff), AD_OK);
    CHECK_EQ(ad_replay_next(t, "{}", 2, &got, diff, sizeof diff), AD_ETOOBIG);
    CHECK(strstr(diff, "replay: the response to request 2 was cut at 64 MiB when it was "
                       "recorded") != NULL);
    CHECK_EQ(ad_replay_used(t), 1);
    replay_done(t, c);
}

TEST(replay_pause_holds_everything_until_resumed)
{
    char *body = big_body(30000);
    ad_cassette *c = with_response("{}", 200, "text/plain", body, 30000);
    ad_transport *t = replay_of(c, AD_REPLAY_IDS_EXACT);
    seen s;
    start(t, "{}", &s);
    s.pause_at_piece = 2;
    /* Until the second piece; then the loop runs dry: nothing is pending. */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(s.pieces, 2);
    CHECK(!s.done);
    size_t held = s.body.len;
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ(s.pieces, 2);
    CHECK_EQ(s.body.len, held);
    ad_xfer_pause(s.x, false);
    CHECK_EQ(s.pieces, 2); /* not from inside the resume */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done && s.res.code == 0);
    CHECK(s.body.len == 30000 && memcmp(s.body.data, body, 30000) == 0);
    seen_free(&s);
    replay_done(t, c);
    free(body);
}

/* The shim records any transport: around a replay it records the same
 * interaction again. */
TEST(record_around_replay_reproduces_the_interaction)
{
    char *body = big_body(9000);
    ad_cassette *c = with_response("{\"model\":\"m\"}", 200, "text/event-stream", body, 9000);
    ad_cassette *again = ad_cassette_new();
    ad_transport *t = ad_record_new(replay_of(c, AD_REPLAY_IDS_EXACT), again, NULL);
    seen s;
    start(t, "{\"model\":\"m\"}", &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(s.done && s.res.code == 0);
    const ad_interaction *a = ad_cassette_get(c, 0), *b = ad_cassette_get(again, 0);
    CHECK(b != NULL);
    if (a && b) {
        CHECK_STREQ(b->req_body, "{\"model\":\"m\"}");
        CHECK_STREQ(b->status, a->status);
        CHECK_STREQ(b->proto, a->proto);
        CHECK(b->resp_body_len == a->resp_body_len &&
              memcmp(b->resp_body, a->resp_body, a->resp_body_len) == 0);
        CHECK_EQ(b->nresp_headers, 2);
        CHECK_STREQ(ad_cassette_header_get(b->resp_headers, b->nresp_headers, "X-Request-Id"),
                    "r1");
    }
    seen_free(&s);
    ad_transport_close(t);
    uv_run(&loop, UV_RUN_DEFAULT);
    ad_cassette_free(again);
    ad_cassette_free(c);
    free(body);
}

/* ---- the matcher ---------------------------------------------------------------- */

static ad_cassette *one_request(const char *body)
{
    ad_cassette *c = ad_cassette_new();
    ad_interaction it = {.method = "POST", .url = "u", .req_body = (char *)body,
                         .req_body_len = strlen(body), .code = 200, .resp_body = "ok",
                         .resp_body_len = 2};
    ad_cassette_append(c, &it);
    return c;
}

static const char rec_body[] =
    "{\"model\":\"m1\",\"stream\":true,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"add\"}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"multiply\"}}],\"messages\":["
    "{\"role\":\"system\",\"content\":\"sys\"},"
    "{\"role\":\"user\",\"content\":\"Add 2 and 3\"},"
    "{\"role\":\"assistant\",\"content\":\" Sure. \",\"tool_calls\":["
    "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 2, \\\"b\\\": 3}\"}},"
    "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"multiply\",\"arguments\":\"{\\\"a\\\":2,\\\"b\\\":3}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"5\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"6\"}],"
    "\"usage\":{\"include\":true}}";

static int try_next(ad_transport *t, const char *sent, char *diff, size_t difflen)
{
    const ad_interaction *it;
    return ad_replay_next(t, sent, strlen(sent), &it, diff, difflen);
}

static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    if (!p)
        return NULL;
    ad_buf b = AD_BUF_INIT;
    ad_buf_append(&b, s, (size_t)(p - s));
    ad_buf_puts(&b, to);
    ad_buf_puts(&b, p + strlen(from));
    return ad_buf_steal(&b);
}

static void expect_diff(const char *from, const char *to, const char *field, int mode)
{
    char *sent = replace(rec_body, from, to);
    CHECK(sent != NULL);
    if (!sent)
        return;
    ad_cassette *c = one_request(rec_body);
    ad_transport *t = replay_of(c, mode);
    char diff[1024] = "";
    CHECK_EQ(try_next(t, sent, diff, sizeof diff), AD_EINVAL);
    if (!strstr(diff, field)) {
        fprintf(stderr, "  diff for %s -> %s lacks '%s': %s\n", from, to, field, diff);
        CHECK(0);
    }
    CHECK(strstr(diff, "request 1 differs") != NULL);
    CHECK_EQ(ad_replay_used(t), 0);
    replay_done(t, c);
    free(sent);
}

static void expect_match(const char *from, const char *to, int mode)
{
    char *sent = replace(rec_body, from, to);
    CHECK(sent != NULL);
    if (!sent)
        return;
    ad_cassette *c = one_request(rec_body);
    ad_transport *t = replay_of(c, mode);
    char diff[1024] = "";
    int rc = try_next(t, sent, diff, sizeof diff);
    if (rc != AD_OK)
        fprintf(stderr, "  %s -> %s: %s\n", from, to, diff);
    CHECK_EQ(rc, AD_OK);
    CHECK_EQ(ad_replay_used(t), 1);
    replay_done(t, c);
    free(sent);
}

TEST(replay_compare)
{
    int X = AD_REPLAY_IDS_EXACT, U = AD_REPLAY_IDS_BIJECTION;
    /* Same meaning, different bytes. */
    expect_match("\"usage\":{\"include\":true}", "\"max_tokens\":5", X);
    expect_match("{\\\"a\\\": 2, \\\"b\\\": 3}", "{\\\"b\\\":3,\\\"a\\\":2}", X);
    expect_match("\" Sure. \"", "\"Sure.\"", X);
    expect_match("{\"type\":\"function\",\"function\":{\"name\":\"add\"}},"
                 "{\"type\":\"function\",\"function\":{\"name\":\"multiply\"}}",
                 "{\"type\":\"function\",\"function\":{\"name\":\"multiply\",\"description\":\"x\"}},"
                 "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}",
                 X);
    expect_match("\"content\":\"sys\"", "\"content\":[{\"type\":\"text\",\"text\":\"s\"},{\"type\":\"text\",\"text\":\"ys\"}]", X);
    /* Each field that matters. */
    expect_diff("\"model\":\"m1\"", "\"model\":\"m2\"", "model: recorded \"m1\", sent \"m2\"", X);
    expect_diff("\"stream\":true,", "", "stream: recorded true, sent false", X);
    expect_diff("Add 2 and 3", "Add 2 and 4", "messages[1].content: recorded \"Add 2 and 3\", sent \"Add 2 and 4\"", X);
    expect_diff("{\"role\":\"system\",\"content\":\"sys\"},", "", "messages (count): recorded 5, sent 4", X);
    expect_diff("\"role\":\"system\"", "\"role\":\"developer\"", "messages[0].role", X);
    expect_diff("\"name\":\"add\",\"arguments\"", "\"name\":\"sub\",\"arguments\"",
                "messages[2].tool_calls[0].function.name", X);
    expect_diff("{\\\"a\\\":2,\\\"b\\\":3}", "{\\\"a\\\":2,\\\"b\\\":4}",
                "messages[2].tool_calls[1].function.arguments", X);
    expect_diff("\"id\":\"c2\"", "\"id\":\"c9\"", "messages[2].tool_calls[1].id", X);
    expect_diff("\"tool_call_id\":\"c1\"", "\"tool_call_id\":\"c2\"", "messages[3].tool_call_id", X);
    expect_diff("\"content\":\"6\"", "\"content\":\"7\"", "messages[4].content: recorded \"6\", sent \"7\"", X);
    expect_diff("{\"type\":\"function\",\"function\":{\"name\":\"add\"}},", "",
                "tools (names): recorded [\"add\",\"multiply\"], sent [\"multiply\"]", X);
    expect_diff("\"tool_calls\":[", "\"tool_calls\":[{\"id\":\"c0\",\"function\":{\"name\":\"add\",\"arguments\":\"{}\"}},",
                "messages[2].tool_calls (count): recorded 2, sent 3", X);
    /* Generated ids: any consistent renaming is fine, an inconsistent one is not. */
    char *s1 = replace(rec_body, "\"id\":\"c1\"", "\"id\":\"g1\"");
    char *s2 = replace(s1, "\"tool_call_id\":\"c1\"", "\"tool_call_id\":\"g1\"");
    char *s3 = replace(s2, "\"id\":\"c2\"", "\"id\":\"g2\"");
    char *s4 = replace(s3, "\"tool_call_id\":\"c2\"", "\"tool_call_id\":\"g2\"");
    ad_cassette *c = one_request(rec_body);
    ad_transport *t = replay_of(c, U);
    char diff[1024];
    CHECK_EQ(try_next(t, s4, diff, sizeof diff), AD_OK);
    replay_done(t, c);
    c = one_request(rec_body);
    char *s5 = replace(s4, "\"tool_call_id\":\"g2\"", "\"tool_call_id\":\"g1\"");
    t = replay_of(c, U);
    CHECK_EQ(try_next(t, s5, diff, sizeof diff), AD_EINVAL);
    CHECK(strstr(diff, "messages[4].tool_call_id") != NULL);
    replay_done(t, c);
    free(s1), free(s2), free(s3), free(s4), free(s5);
    /* Running out of interactions. */
    c = one_request(rec_body);
    t = replay_of(c, X);
    CHECK_EQ(try_next(t, rec_body, diff, sizeof diff), AD_OK);
    CHECK_EQ(try_next(t, rec_body, diff, sizeof diff), AD_ERR);
    CHECK(strstr(diff, "request 2 was not recorded (the cassette holds 1 interaction)") != NULL);
    replay_done(t, c);
    /* A body that is not JSON must match byte for byte. */
    c = one_request("plain text");
    t = replay_of(c, X);
    CHECK_EQ(try_next(t, "plain text!", diff, sizeof diff), AD_EINVAL);
    CHECK(strstr(diff, "body") != NULL);
    CHECK_EQ(try_next(t, "plain text", diff, sizeof diff), AD_OK);
    replay_done(t, c);
}


/* ---- pausing the curl transport ------------------------------------------------ */

/* An HTTP peer served from the test's own loop: it answers a request with
 * the headers and a first chunk at once, and with the rest only when the
 * test says so; a write's callback means the kernel has the bytes. */
typedef struct peer {
    uv_tcp_t server;
    uv_tcp_t conn;
    bool connected;
    int port;
    ad_buf request;
    bool answered;
    int writes_done;
} peer;

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char space[65536];
    buf->base = space;
    buf->len = sizeof space;
}

static void peer_wrote(uv_write_t *w, int status)
{
    peer *p = w->data;
    (void)status;
    p->writes_done++;
    free(w);
}

static void peer_write(peer *p, const char *data, size_t len)
{
    uv_write_t *w = malloc(sizeof *w + len);
    char *copy = (char *)(w + 1);
    memcpy(copy, data, len);
    w->data = p;
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    uv_write(w, (uv_stream_t *)&p->conn, &b, 1, peer_wrote);
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    peer *p = s->data;
    if (n <= 0)
        return;
    ad_buf_append(&p->request, buf->base, (size_t)n);
    /* The request ends with the body "{}" after the headers. */
    const char *end = p->request.data ? strstr(p->request.data, "\r\n\r\n") : NULL;
    if (!p->answered && end && p->request.len - (size_t)(end + 4 - p->request.data) >= 2) {
        p->answered = true;
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
        peer_write(p, head, sizeof head - 1);
    }
}

static void peer_connection(uv_stream_t *server, int status)
{
    peer *p = server->data;
    if (status < 0 || p->connected)
        return;
    uv_tcp_init(server->loop, &p->conn);
    p->conn.data = p;
    if (uv_accept(server, (uv_stream_t *)&p->conn) == 0) {
        p->connected = true;
        uv_read_start((uv_stream_t *)&p->conn, peer_alloc, peer_read);
    }
}

static int peer_start(peer *p)
{
    memset(p, 0, sizeof *p);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &p->server);
    p->server.data = p;
    if (uv_tcp_bind(&p->server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&p->server, 4, peer_connection) != 0)
        return -1;
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&p->server, (struct sockaddr *)&got, &len);
    p->port = ntohs(got.sin_port);
    return 0;
}

static void peer_stop(peer *p)
{
    if (p->connected)
        uv_close((uv_handle_t *)&p->conn, NULL);
    uv_close((uv_handle_t *)&p->server, NULL);
    ad_buf_free(&p->request);
}

static void on_wait(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Paused from inside on_data after the first chunk, with the whole rest of
 * the response already in the socket and more than twice the idle limit
 * gone by (a limit long enough for the first chunk to arrive under
 * valgrind on a loaded machine):
 * nothing more arrives and nothing times out until the resume; then
 * everything, in order. */
TEST(curl_pause_holds_the_response_until_resumed)
{
    peer p;
    if (peer_start(&p) != 0) {
        CHECK(!"peer listening");
        return;
    }
    ad_transport *t = ad_curl_new(&loop);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", p.port);
    static const char *const headers[] = {"Content-Type: application/json"};
    ad_xfer_req q = {.url = url, .headers = headers, .nheaders = 1, .body = "{}", .body_len = 2,
                     .timeout_s = 60, .idle_timeout_s = 1.5};
    seen s;
    memset(&s, 0, sizeof s);
    s.pause_at_piece = 1;
    s.x = ad_xfer_start(t, &q, &seen_cb, &s);
    CHECK(s.x != NULL);
    while (s.pieces == 0 && !s.done)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(s.pieces, 1);
    CHECK_STREQ(s.body.data, "first");
    if (s.done) {
        fprintf(stderr, "  ended before its first piece: %s\n", s.error);
        seen_free(&s);
        ad_transport_close(t);
        peer_stop(&p);
        uv_run(&loop, UV_RUN_DEFAULT);
        return;
    }
    /* The rest, in many HTTP chunks, then the end. */
    ad_buf rest = AD_BUF_INIT, want = AD_BUF_INIT;
    ad_buf_puts(&want, "first");
    for (int i = 0; i < 300; i++) {
        char piece[32];
        int n = snprintf(piece, sizeof piece, "piece %03d;", i);
        ad_buf_printf(&rest, "%x\r\n%s\r\n", n, piece);
        ad_buf_puts(&want, piece);
    }
    ad_buf_puts(&rest, "0\r\n\r\n");
    int before = p.writes_done;
    peer_write(&p, rest.data, rest.len);
    while (p.writes_done == before)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    bool waited = false;
    uv_timer_t wait;
    uv_timer_init(&loop, &wait);
    wait.data = &waited;
    uv_timer_start(&wait, on_wait, 3500, 0);
    while (!waited)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(s.pieces, 1);
    CHECK_STREQ(s.body.data, "first");
    CHECK(!s.done);
    if (!s.done)
        ad_xfer_pause(s.x, false);
    CHECK_EQ(s.pieces, 1); /* not from inside the resume */
    while (!s.done)
        uv_run(&loop, UV_RUN_ONCE);
    if (s.res.code != 0)
        fprintf(stderr, "  %s\n", s.error);
    CHECK_EQ(s.res.code, 0);
    CHECK_EQ(s.res.timeout, AD_XFER_TIMEOUT_NONE);
    CHECK_EQ(s.res.status, 200);
    CHECK_STREQ(s.res.proto, "HTTP/1.1");
    CHECK_STREQ(s.body.data, want.data);
    CHECK(s.headers.data && strncmp(s.headers.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
    uv_close((uv_handle_t *)&wait, NULL);
    ad_buf_free(&rest);
    ad_buf_free(&want);
    seen_free(&s);
    ad_transport_close(t);
    peer_stop(&p);
    uv_run(&loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&loop);
    RUN(record_keeps_what_passes_and_no_credential);
    RUN(record_skips_what_got_no_response);
    RUN(record_cuts_at_64_mib_cleanly);
    RUN(replay_delivers_in_pieces_after_the_headers);
    RUN(replay_mismatch_is_fatal_and_the_first_is_kept);
    RUN(replay_refuses_a_cut_response);
    RUN(replay_pause_holds_everything_until_resumed);
    RUN(record_around_replay_reproduces_the_interaction);
    RUN(replay_compare);
    RUN(curl_pause_holds_the_response_until_resumed);
    CHECK_EQ(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    return harness_report("test_transport");
}

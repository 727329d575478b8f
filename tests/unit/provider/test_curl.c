/*
 * test_curl.c -- the curl transport against the mock provider on loopback.
 *
 * Each test starts tests/mock/server.py (tests/unit/mock.h), drives real
 * transfers through the curl transport on a libuv loop of its own and
 * checks what the callbacks saw (and, through the mock's request log, what
 * was sent). Pausing is tested in test_transport.c.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "provider/cassette.h"
#include "provider/curl.h"
#include "provider/record.h"
#include "../mock.h"

static const char two_answers[] =
    "{\"responses\": ["
    "{\"status\": 200, \"body\": {\"choices\": [{\"message\": {\"content\": \"one\"}}]}},"
    "{\"status\": 200, \"body\": {\"choices\": [{\"message\": {\"content\": \"two\"}}]}}]}";

typedef struct outcome {
    bool done;
    int curl_code;
    int timeout;
    long status;
    char error[CURL_ERROR_SIZE + 64];
    ad_buf body;
} outcome;

static int on_data(void *ud, long status, const char *ct, const char *data, size_t len)
{
    (void)status;
    (void)ct;
    outcome *o = ud;
    ad_buf_append(&o->body, data, len);
    return 0;
}

static void on_done(void *ud, const ad_xfer_result *res)
{
    outcome *o = ud;
    o->done = true;
    o->curl_code = res->code;
    o->timeout = res->timeout;
    o->status = res->status;
    snprintf(o->error, sizeof o->error, "%s", res->error ? res->error : "");
}

typedef struct client {
    uv_loop_t loop;
    ad_transport *http;
    char url[128];
} client;

static void client_open(client *c, int port)
{
    uv_loop_init(&c->loop);
    c->http = ad_curl_new(&c->loop);
    snprintf(c->url, sizeof c->url, "http://127.0.0.1:%d/v1/chat/completions", port);
}

static void client_close(client *c)
{
    ad_transport_close(c->http);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&c->loop), 0);
}

/* One POST of body, run to its end. */
static void post(client *c, const char *body, double idle_timeout_s, outcome *o)
{
    static const char *const headers[] = {"Content-Type: application/json"};
    ad_xfer_cb cb = {on_data, NULL, on_done};
    memset(o, 0, sizeof *o);
    ad_xfer_req q = {.url = c->url, .headers = headers, .nheaders = 1, .body = body,
                     .body_len = strlen(body), .connect_timeout_s = 5,
                     .idle_timeout_s = idle_timeout_s};
    ad_exchange *r = ad_xfer_start(c->http, &q, &cb, o);
    CHECK(r != NULL);
    if (r)
        uv_run(&c->loop, UV_RUN_DEFAULT);
    CHECK(o->done);
}

/* The loop sat still (a prompt, a blocking wait) for longer than the idle
 * timeout before the next request: that request's silence counts from when
 * it starts, not from when the loop last looked at the clock. */
TEST(a_request_after_the_loop_sat_still_gets_its_whole_idle_timeout)
{
    mock_proc m;
    if (mock_start(&m, two_answers) != 0) {
        CHECK(!"mock started");
        return;
    }
    client c;
    client_open(&c, m.port);
    outcome o;
    post(&c, "{\"n\":1}", 1.0, &o);
    CHECK_EQ(o.curl_code, 0);
    CHECK_EQ(o.status, 200);
    ad_buf_free(&o.body);

    sleep(2); /* the loop does not run: this is the idle period itself */

    post(&c, "{\"n\":2}", 1.0, &o);
    if (o.curl_code != 0)
        fprintf(stderr, "  second request: %s\n", o.error);
    CHECK_EQ(o.curl_code, 0);
    CHECK_EQ(o.timeout, AD_XFER_TIMEOUT_NONE);
    CHECK_EQ(o.status, 200);
    CHECK(o.body.data && strstr(o.body.data, "two"));
    ad_buf_free(&o.body);
    client_close(&c);
    mock_stop(&m);
}

/* The body is lent, not copied (transport.h): curl sends it from the
 * caller's buffer when the loop runs, so a change made after start() (which
 * the contract forbids a real caller) shows up at the server. A copy would
 * send the old bytes. */
TEST(the_body_is_sent_from_the_callers_buffer)
{
    mock_proc m;
    if (mock_start(&m, two_answers) != 0) {
        CHECK(!"mock started");
        return;
    }
    client c;
    client_open(&c, m.port);
    static const char *const headers[] = {"Content-Type: application/json"};
    ad_xfer_cb cb = {on_data, NULL, on_done};
    outcome o;
    memset(&o, 0, sizeof o);
    char body[] = "{\"marker\":\"before\"}";
    ad_xfer_req q = {.url = c.url, .headers = headers, .nheaders = 1, .body = body,
                     .body_len = strlen(body)};
    CHECK(ad_xfer_start(c.http, &q, &cb, &o) != NULL);
    memcpy(strstr(body, "before"), "lent!!", 6);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    CHECK(o.done);
    CHECK_EQ(o.status, 200);
    char *log = mock_log(&m);
    CHECK(log && strstr(log, "lent!!"));
    CHECK(log && !strstr(log, "before"));
    free(log);
    ad_buf_free(&o.body);
    client_close(&c);
    mock_stop(&m);
}

/* A request's method: GET and DELETE go without a body (what the body
 * pointer holds is not sent), POST is the default. */
TEST(get_and_delete_go_without_a_body)
{
    mock_proc m;
    if (mock_start(&m, "{\"cycle\": true, \"responses\": [{\"status\": 200, \"body\": "
                       "{\"ok\": true}}]}") != 0) {
        CHECK(!"mock started");
        return;
    }
    client c;
    client_open(&c, m.port);
    static const char *const headers[] = {"Accept: text/event-stream"};
    const char *methods[] = {"GET", "DELETE", NULL};
    for (int i = 0; i < 3; i++) {
        ad_xfer_cb cb = {on_data, NULL, on_done};
        outcome o;
        memset(&o, 0, sizeof o);
        const char body[] = "{\"must_not_be_sent\": 1}";
        ad_xfer_req q = {.url = c.url, .headers = headers, .nheaders = 1, .body = body,
                         .body_len = i < 2 ? 0 : strlen(body), .method = methods[i]};
        CHECK(ad_xfer_start(c.http, &q, &cb, &o) != NULL);
        uv_run(&c.loop, UV_RUN_DEFAULT);
        CHECK(o.done);
        CHECK_EQ(o.status, 200);
        ad_buf_free(&o.body);
    }
    char *log = mock_log(&m);
    CHECK(log != NULL);
    if (log) {
        char *get = strstr(log, "\"method\": \"GET\"");
        char *del = strstr(log, "\"method\": \"DELETE\"");
        char *post = strstr(log, "\"method\": \"POST\"");
        CHECK(get && del && post && get < del && del < post);
        /* Only the POST carried the body. */
        char *first = strstr(log, "must_not_be_sent");
        CHECK(first && post && first > post);
    }
    free(log);
    client_close(&c);
    mock_stop(&m);
}

#define CAP (64u << 20)

static int count_only(void *ud, long status, const char *ct, const char *data, size_t len)
{
    (void)status;
    (void)ct;
    (void)data;
    *(size_t *)ud += len;
    return 0;
}

static void count_done(void *ud, const ad_xfer_result *res)
{
    (void)ud;
    (void)res;
}

/* A response larger than the recording cap, arriving from the network in
 * pieces that do not line up with the cap: the recording shim around the
 * curl transport keeps exactly the first 64 MiB (a clean cut, no piece
 * skipped and a later one kept) and says it was cut. */
TEST(a_recording_cuts_a_huge_body_cleanly_at_the_cap)
{
    char script[256];
    snprintf(script, sizeof script,
             "{\"responses\": [{\"status\": 200, \"body\": \"start:\", "
             "\"content_type\": \"text/plain\", \"pad_bytes\": %u}]}",
             CAP + 100000);
    mock_proc m;
    if (mock_start(&m, script) != 0) {
        CHECK(!"mock started");
        return;
    }
    client c;
    client_open(&c, m.port);
    ad_cassette *cas = ad_cassette_new();
    c.http = ad_record_new(c.http, cas, NULL);
    static const char *const headers[] = {"Content-Type: application/json"};
    ad_xfer_cb cb = {count_only, NULL, count_done};
    size_t got = 0;
    const char body[] = "{}";
    ad_xfer_req q = {.url = c.url, .headers = headers, .nheaders = 1, .body = body, .body_len = 2};
    CHECK(ad_xfer_start(c.http, &q, &cb, &got) != NULL);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    CHECK_EQ(got, 6 + CAP + 100000); /* the caller still gets every byte */
    CHECK_EQ(ad_cassette_count(cas), 1);
    const ad_interaction *it = ad_cassette_get(cas, 0);
    if (it) {
        CHECK(it->resp_truncated);
        CHECK_EQ(it->resp_body_len, CAP);
        CHECK(memcmp(it->resp_body, "start:xxx", 9) == 0);
        size_t xs = 0;
        for (size_t i = 6; i < it->resp_body_len; i++)
            xs += it->resp_body[i] == 'x';
        CHECK_EQ(xs, CAP - 6);
    }
    client_close(&c);
    ad_cassette_free(cas);
    mock_stop(&m);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(a_request_after_the_loop_sat_still_gets_its_whole_idle_timeout);
    RUN(a_recording_cuts_a_huge_body_cleanly_at_the_cap);
    RUN(the_body_is_sent_from_the_callers_buffer);
    RUN(get_and_delete_go_without_a_body);
    curl_global_cleanup();
    return harness_report("test_curl");
}

/*
 * test_cassette.c -- cassette model: YAML round trips that keep every body
 * byte (trailing newlines, CRLF, UTF-8, invalid UTF-8, NULs), redaction,
 * loading go-vcr files as other tools write them, error messages. The
 * request comparison of a replay is tested in test_transport.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "provider/cassette.h"

typedef struct body_case {
    const char *s;
    size_t len;
} body_case;

#define B(lit) {lit, sizeof(lit) - 1}

static const body_case bodies[] = {
    B(""),
    B("x"),
    B("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"it's \\\"q\\\"\"}]}"),
    B("line\n"),
    B("two trailing\n\n"),
    B("many trailing\n\n\n\n"),
    B("\nleading newline\n"),
    B("\n\n  \n\n{\"padded\":true}\n"),
    B(" leading space\nsecond\n"),
    B("no final newline\nsecond"),
    B("trailing spaces  \nnext\n"),
    B("crlf\r\nline\r\n\r\n"),
    B("lone cr\rhere\n"),
    B("tab\there\n\tindented tab\n"),
    B("utf-8: h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x8e\x89 \xc3\x97\n"),
    B("nel \xc2\x85 and ls \xe2\x80\xa8 ps \xe2\x80\xa9\n"),
    B("bom \xef\xbb\xbf inside\n"),
    B("invalid \xff\xfe utf-8\n"),
    B("nul \0 byte\n"),
    B("control \x01\x1b[0m\n"),
    B("- dash\n# hash\nkey: value\n'single' \"double\" \\back\n"),
    B("   "),
    B("\n"),
    B("null"),
    B("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n"),
    B("|+\n>-\n---\n...\n"),
};
#define NBODIES (sizeof bodies / sizeof *bodies)

static ad_cassette *make_cassette(void)
{
    ad_cassette *c = ad_cassette_new();
    for (size_t i = 0; i < NBODIES; i++) {
        ad_cassette_header rq[] = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
        ad_cassette_header rs[] = {{"Content-Type", "text/event-stream"}, {"Set-Cookie", "a=1"},
                                   {"Set-Cookie", "b=2"}, {"X-Num", "42"}};
        ad_interaction it = {
            .method = "POST",
            .url = "http://127.0.0.1:1/v1/chat/completions",
            .req_body = (char *)bodies[i].s,
            .req_body_len = bodies[i].len,
            .req_headers = rq,
            .nreq_headers = 2,
            .proto = "HTTP/1.1",
            .code = 200,
            .status = "200 OK",
            .resp_body = (char *)bodies[NBODIES - 1 - i].s,
            .resp_body_len = bodies[NBODIES - 1 - i].len,
            .resp_headers = rs,
            .nresp_headers = 4,
            .duration_s = 1.25,
        };
        ad_cassette_append(c, &it);
    }
    return c;
}

static int same(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static void check_same_bodies(const ad_cassette *c)
{
    CHECK_EQ(ad_cassette_count(c), NBODIES);
    for (size_t i = 0; i < NBODIES && i < ad_cassette_count(c); i++) {
        const ad_interaction *it = ad_cassette_get(c, i);
        if (!same(it->req_body, it->req_body_len, bodies[i].s, bodies[i].len)) {
            fprintf(stderr, "  request body %zu differs (len %zu vs %zu)\n", i, it->req_body_len,
                    bodies[i].len);
            CHECK(0);
        }
        const body_case *r = &bodies[NBODIES - 1 - i];
        if (!same(it->resp_body, it->resp_body_len, r->s, r->len)) {
            fprintf(stderr, "  response body %zu differs\n", i);
            CHECK(0);
        }
    }
}

TEST(roundtrip_in_memory)
{
    ad_cassette *c = make_cassette();
    ad_buf y = AD_BUF_INIT;
    char err[256];
    CHECK_EQ(ad_cassette_emit(c, &y, err, sizeof err), AD_OK);
    ad_cassette *back = NULL;
    CHECK_EQ(ad_cassette_parse(&back, y.data, y.len, "t", err, sizeof err), AD_OK);
    if (back) {
        check_same_bodies(back);
        const ad_interaction *it = ad_cassette_get(back, 0);
        CHECK_STREQ(it->method, "POST");
        CHECK_STREQ(it->url, "http://127.0.0.1:1/v1/chat/completions");
        CHECK_EQ(it->code, 200);
        CHECK_STREQ(it->status, "200 OK");
        CHECK_EQ(it->nresp_headers, 4);
        CHECK_STREQ(ad_cassette_header_get(it->resp_headers, it->nresp_headers, "x-num"), "42");
        CHECK(it->duration_s > 1.249 && it->duration_s < 1.251);
        /* Emitting again gives the same text. */
        ad_buf y2 = AD_BUF_INIT;
        CHECK_EQ(ad_cassette_emit(back, &y2, err, sizeof err), AD_OK);
        CHECK(y2.len == y.len && memcmp(y.data, y2.data, y.len) == 0);
        ad_buf_free(&y2);
    }
    /* The shape other tools expect. */
    CHECK(strncmp(y.data, "---\nversion: 2\ninteractions:\n- id: 0\n  request:\n", 48) == 0);
    CHECK(strstr(y.data, "    headers:\n      Content-Type:\n      - application/json\n") != NULL);
    CHECK(strstr(y.data, "      Set-Cookie:\n      - a=1\n      - b=2\n") != NULL);
    CHECK(strstr(y.data, "      X-Num:\n      - \"42\"\n") != NULL);
    CHECK(strstr(y.data, "    status: 200 OK\n    code: 200\n    duration: 1.25s\n") != NULL);
    CHECK(strstr(y.data, "    host: \"\"\n") != NULL);
    /* A multi-line SSE body is a literal block that keeps its newlines. */
    CHECK(strstr(y.data, "body: |+\n      data: {\"choices\"") != NULL);
    /* Bytes that are not UTF-8 are base64. */
    CHECK(strstr(y.data, "!!binary") != NULL);
    ad_buf_free(&y);
    ad_cassette_free(back);
    ad_cassette_free(c);
}

TEST(roundtrip_file)
{
    char path[] = "/tmp/agentd-test-cassette-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    ad_cassette *c = make_cassette();
    ad_cassette_set_id_prefix(c, "00ab12cd34ef");
    char err[256];
    CHECK_EQ(ad_cassette_save(c, path, err, sizeof err), AD_OK);
    ad_cassette *back = NULL;
    CHECK_EQ(ad_cassette_load(&back, path, err, sizeof err), AD_OK);
    if (back) {
        check_same_bodies(back);
        CHECK_STREQ(ad_cassette_id_prefix(back), "00ab12cd34ef");
    }
    ad_cassette_free(back);
    ad_cassette_free(c);
    unlink(path);
}

TEST(every_byte)
{
    /* All 256 byte values, and every two-byte pair around the line breaks. */
    char all[256 + 64];
    size_t n = 0;
    for (int i = 0; i < 256; i++)
        all[n++] = (char)i;
    for (int i = 0; i < 16; i++) {
        all[n++] = "\r\n \t"[i % 4];
        all[n++] = "\n\r\t "[i / 4];
    }
    ad_cassette *c = ad_cassette_new();
    ad_interaction it = {.method = "POST", .url = "u", .req_body = all, .req_body_len = n,
                         .code = 500, .resp_body = all + 128, .resp_body_len = n - 128};
    ad_cassette_append(c, &it);
    ad_buf y = AD_BUF_INIT;
    char err[256];
    CHECK_EQ(ad_cassette_emit(c, &y, err, sizeof err), AD_OK);
    ad_cassette *back = NULL;
    CHECK_EQ(ad_cassette_parse(&back, y.data, y.len, "t", err, sizeof err), AD_OK);
    if (back) {
        const ad_interaction *b = ad_cassette_get(back, 0);
        CHECK(same(b->req_body, b->req_body_len, all, n));
        CHECK(same(b->resp_body, b->resp_body_len, all + 128, n - 128));
        CHECK_EQ(b->code, 500);
    }
    ad_buf_free(&y);
    ad_cassette_free(back);
    ad_cassette_free(c);
}

TEST(redaction)
{
    const char *key = "sk-or-v1-SECRET";
    ad_cassette_header rq[] = {{"Authorization", "Bearer sk-or-v1-SECRET"},
                               {"X-Api-Key", "sk-or-v1-SECRET"},
                               {"authorization", "Basic abc"},
                               {"Content-Type", "application/json"}};
    ad_cassette_header rs[] = {{"X-Echo", "key=sk-or-v1-SECRET;"}, {"Content-Type", "text/plain"}};
    const char req[] = "{\"note\":\"sk-or-v1-SECRET and sk-or-v1-SECRET\"}";
    const char resp[] = "you sent sk-or-v1-SECRET\n";
    ad_interaction it = {.method = "POST", .url = "https://h/v1?key=sk-or-v1-SECRET",
                         .req_body = (char *)req, .req_body_len = sizeof req - 1,
                         .req_headers = rq, .nreq_headers = 4, .code = 200,
                         .resp_body = (char *)resp, .resp_body_len = sizeof resp - 1,
                         .resp_headers = rs, .nresp_headers = 2};
    ad_cassette *c = ad_cassette_new();
    ad_cassette_append(c, &it);
    ad_cassette_redact(c, key);
    ad_buf y = AD_BUF_INIT;
    char err[256];
    CHECK_EQ(ad_cassette_emit(c, &y, err, sizeof err), AD_OK);
    CHECK(strstr(y.data, "SECRET") == NULL);
    CHECK(strstr(y.data, "uthorization") == NULL);
    CHECK(strstr(y.data, "X-Api-Key") == NULL);
    CHECK(strstr(y.data, "X-Echo") == NULL);
    const ad_interaction *r = ad_cassette_get(c, 0);
    CHECK_STREQ(r->req_body, "{\"note\":\"[REDACTED] and [REDACTED]\"}");
    CHECK_EQ(r->req_body_len, strlen(r->req_body));
    CHECK_STREQ(r->resp_body, "you sent [REDACTED]\n");
    CHECK_STREQ(r->url, "https://h/v1?key=[REDACTED]");
    CHECK_EQ(r->nreq_headers, 1);
    CHECK_STREQ(r->req_headers[0].name, "Content-Type");
    CHECK_EQ(r->nresp_headers, 1);
    ad_buf_free(&y);
    ad_cassette_free(c);

    /* Without a key the request headers named like credentials still go
     * (Authorization, X-Api-Key, ...); the body is left alone. */
    c = ad_cassette_new();
    ad_cassette_append(c, &it);
    ad_cassette_redact(c, NULL);
    r = ad_cassette_get(c, 0);
    CHECK_EQ(r->nreq_headers, 1);
    CHECK_STREQ(r->req_headers[0].name, "Content-Type");
    CHECK(strstr(r->req_body, "SECRET") != NULL);
    ad_cassette_free(c);
}

/* A file as go-vcr writes it (4-space indentation, quoted JSON, a folded
 * double-quoted body, a |+ block). */
static const char govcr[] =
    "---\n"
    "version: 2\n"
    "interactions:\n"
    "    - id: 0\n"
    "      request:\n"
    "        proto: HTTP/1.1\n"
    "        proto_major: 1\n"
    "        proto_minor: 1\n"
    "        content_length: 30\n"
    "        host: \"\"\n"
    "        body: '{\"model\":\"m\",\"it''s\":[1, 2]}'\n"
    "        headers:\n"
    "            Accept:\n"
    "              - application/json\n"
    "        url: https://example.invalid/api/v1/chat/completions\n"
    "        method: POST\n"
    "      response:\n"
    "        proto: HTTP/2.0\n"
    "        proto_major: 2\n"
    "        proto_minor: 0\n"
    "        content_length: -1\n"
    "        uncompressed: true\n"
    "        body: |+\n"
    "            data: {\"a\":\"\xc3\xa9\"}\n"
    "\n"
    "            data: [DONE]\n"
    "\n"
    "        headers:\n"
    "            Content-Type:\n"
    "                - text/event-stream; charset=utf-8\n"
    "        status: 200 OK\n"
    "        code: 200\n"
    "        duration: 1m2.5s\n"
    "    - id: 1\n"
    "      request:\n"
    "        body: \"\\n  \\n{\\\"x\\\":\\\"\\u00e9\\\"}\"\n"
    "        url: https://example.invalid/x\n"
    "        method: POST\n"
    "      response:\n"
    "        body: !!binary aGk=\n"
    "        status: 429 Too Many Requests\n"
    "        code: 429\n"
    "        duration: 812ms\n";

TEST(load_govcr_text)
{
    ad_cassette *c = NULL;
    char err[256];
    CHECK_EQ(ad_cassette_parse(&c, govcr, sizeof govcr - 1, "g.yaml", err, sizeof err), AD_OK);
    if (!c) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    CHECK_EQ(ad_cassette_count(c), 2);
    const ad_interaction *a = ad_cassette_get(c, 0), *b = ad_cassette_get(c, 1);
    CHECK_STREQ(a->req_body, "{\"model\":\"m\",\"it's\":[1, 2]}");
    CHECK_STREQ(a->resp_body, "data: {\"a\":\"\xc3\xa9\"}\n\ndata: [DONE]\n\n");
    CHECK_STREQ(ad_cassette_header_get(a->resp_headers, a->nresp_headers, "content-type"),
                "text/event-stream; charset=utf-8");
    CHECK_STREQ(a->proto, "HTTP/2.0");
    CHECK(a->duration_s > 62.49 && a->duration_s < 62.51);
    CHECK_STREQ(b->req_body, "\n  \n{\"x\":\"\xc3\xa9\"}");
    CHECK_STREQ(b->resp_body, "hi");
    CHECK_EQ(b->code, 429);
    CHECK(b->duration_s > 0.8119 && b->duration_s < 0.8121);
    CHECK(ad_cassette_id_prefix(c) == NULL);
    ad_cassette_free(c);
}

static void expect_error(const char *text, const char *want)
{
    ad_cassette *c = NULL;
    char err[256] = "";
    int rc = ad_cassette_parse(&c, text, strlen(text), "bad.yaml", err, sizeof err);
    CHECK(rc != AD_OK);
    CHECK(c == NULL);
    if (!strstr(err, want)) {
        fprintf(stderr, "  error %s lacks %s\n", err, want);
        CHECK(0);
    }
}

TEST(errors)
{
    expect_error("version: 2\ninteractions: [\n", "bad.yaml:");
    expect_error("- a\n- b\n", "not a cassette");
    expect_error("version: 3\ninteractions: []\n", "bad.yaml:1: version");
    expect_error("version: 2\ninteractions: 5\n", "bad.yaml:2: interactions");
    expect_error("version: 2\ninteractions:\n- id: 0\n  response: {code: 200}\n",
                 "bad.yaml:3: interaction without a request");
    expect_error("version: 2\ninteractions:\n- request: {body: x}\n  response:\n    code: abc\n",
                 "bad.yaml:5: response.code");
    expect_error("version: 2\ninteractions:\n- request: {body: [1]}\n  response: {code: 200}\n",
                 "request.body: expected a string");
    expect_error("version: 2\ninteractions:\n- request: {body: !!binary '***'}\n  response: {code: 200}\n",
                 "invalid base64");
    ad_cassette *c = NULL;
    char err[256];
    CHECK(ad_cassette_load(&c, "/nonexistent/agentd.yaml", err, sizeof err) != AD_OK);
    CHECK(strstr(err, "cannot read cassette /nonexistent/agentd.yaml") != NULL);
    /* An empty list is a valid (empty) cassette. */
    CHECK_EQ(ad_cassette_parse(&c, "version: 2\ninteractions: []\n", 28, "e", err, sizeof err), AD_OK);
    CHECK_EQ(ad_cassette_count(c), 0);
    ad_cassette_free(c);
}

/* A response cut while recording says so in the file and reads back as
 * cut (a replay refuses it: test_transport.c). */
TEST(truncated_response)
{
    ad_cassette *c = ad_cassette_new();
    ad_interaction it = {.method = "POST", .url = "u", .req_body = "{}",
                         .req_body_len = 2, .code = 200, .resp_body = "data: x",
                         .resp_body_len = 7};
    ad_cassette_append(c, &it);
    it.resp_truncated = true;
    ad_cassette_append(c, &it);
    ad_buf y = AD_BUF_INIT;
    char err[512];
    CHECK_EQ(ad_cassette_emit(c, &y, err, sizeof err), AD_OK);
    const char *mark = y.data ? strstr(y.data, "agentd_truncated: true") : NULL;
    CHECK(mark != NULL);
    CHECK(mark && strstr(mark + 1, "agentd_truncated") == NULL); /* only the cut one */
    CHECK(mark && strstr(y.data, "- id: 1") < mark);
    ad_cassette *back = NULL;
    CHECK_EQ(ad_cassette_parse(&back, y.data, y.len, "t", err, sizeof err), AD_OK);
    if (back) {
        CHECK(!ad_cassette_get(back, 0)->resp_truncated);
        CHECK(ad_cassette_get(back, 1)->resp_truncated);
        ad_cassette_free(back);
    }
    ad_buf_free(&y);
    ad_cassette_free(c);
    /* Anything but a boolean is a shape error with its line. */
    const char bad[] = "version: 2\ninteractions:\n- request: {url: u, method: POST}\n"
                       "  response: {code: 200, agentd_truncated: maybe}\n";
    back = NULL;
    CHECK_EQ(ad_cassette_parse(&back, bad, sizeof bad - 1, "t.yaml", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "t.yaml:4: response.agentd_truncated: expected true or false") != NULL);
    ad_cassette_free(back);
}

TEST(durations)
{
    char b[64];
    ad_cassette_format_duration(1.0912445, b, sizeof b);
    CHECK_STREQ(b, "1.0912445s");
    ad_cassette_format_duration(2, b, sizeof b);
    CHECK_STREQ(b, "2s");
    ad_cassette_format_duration(0.25, b, sizeof b);
    CHECK_STREQ(b, "250ms");
    ad_cassette_format_duration(125.5, b, sizeof b);
    CHECK_STREQ(b, "2m5.5s");
    ad_cassette_format_duration(3723, b, sizeof b);
    CHECK_STREQ(b, "1h2m3s");
    ad_cassette_format_duration(0, b, sizeof b);
    CHECK_STREQ(b, "0s");
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(roundtrip_in_memory);
    RUN(roundtrip_file);
    RUN(every_byte);
    RUN(redaction);
    RUN(load_govcr_text);
    RUN(errors);
    RUN(truncated_response);
    RUN(durations);
    return harness_report("test_cassette");
}

/*
 * test_prescan.c -- the strict check of request heads (runtime/serve/prescan.c):
 * the smuggling shapes llhttp 8.1 lets through, the limits, and the same
 * verdict whatever pieces a head arrives in.
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "serve/prescan.h"

/* Scans text whole; returns the verdict, s filled in. */
static int scan(ad_scan *s, const char *text)
{
    ad_scan_init(s, 8192, 50);
    return ad_scan_feed(s, text, strlen(text));
}

/* Scans text one byte more at a time, as a slow client sends it. */
static int scan_bytes(ad_scan *s, const char *text)
{
    ad_scan_init(s, 8192, 50);
    size_t n = strlen(text);
    int rc = AD_SCAN_MORE;
    for (size_t i = 1; i <= n && rc == AD_SCAN_MORE; i++)
        rc = ad_scan_feed(s, text, i);
    return rc;
}

static int status_of(const char *text)
{
    ad_scan s;
    int rc = scan(&s, text);
    ad_scan s2;
    int rc2 = scan_bytes(&s2, text);
    if (rc != rc2 || s.status != s2.status)
        return -1; /* the pieces changed the verdict */
    return rc == AD_SCAN_BAD ? s.status : rc == AD_SCAN_DONE ? 0 : 1;
}

TEST(clean_heads_pass)
{
    ad_scan s;
    const char *get = "GET /v1/models HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    CHECK_EQ(scan(&s, get), AD_SCAN_DONE);
    CHECK_EQ(s.head_len, strlen(get));
    CHECK_EQ(s.headers, 2);
    CHECK(!s.has_length && !s.chunked && !s.http10);
    const char *post = "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\n"
                       "X-Tab:\tv\there\r\n\r\n{\"input\":1}";
    CHECK_EQ(scan(&s, post), AD_SCAN_DONE);
    CHECK_EQ(s.head_len, strlen(post) - 11);
    CHECK(s.has_length);
    CHECK_EQ(s.length, 12);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"), 0);
    /* HTTP/1.0 needs no Host; obs-text in a value is allowed. */
    CHECK_EQ(status_of("GET / HTTP/1.0\r\nX: caf\xc3\xa9\r\n\r\n"), 0);
    /* Empty lines before the request line are skipped. */
    CHECK_EQ(scan(&s, "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), AD_SCAN_DONE);
    CHECK_EQ(s.skipped, 4);
    /* Incomplete: more is needed. */
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\r\n"), 1);
}

TEST(smuggling_shapes_are_refused)
{
    /* CR inside a header line (the CVE-2023-30589 shape). */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n"),
             400);
    /* Bare LF, in a header line and at the end of the head. */
    CHECK_EQ(status_of("GET / HTTP/1.1\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400);
    /* obs-fold: a line starting with a space or a tab continues none. */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n Content-Length: 5\r\n\r\n"), 400);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n"), 400);
    /* Content-Length with Transfer-Encoding, either order. */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"),
             400);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Content-Length: 5\r\n\r\n"),
             400);
    /* Duplicate Content-Length, also with equal values and as a list. */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
             400);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 5, 5\r\n\r\n"), 400);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"), 400);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n"), 400);
    /* Transfer-Encoding other than chunked, twice, or in HTTP/1.0. */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 501);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"), 501);
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"),
             400);
    CHECK_EQ(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    /* Whitespace before the colon; a name that is not a token. */
    CHECK_EQ(status_of("POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"), 400);
    /* Control characters and NUL. */
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01" "b\r\n\r\n"), 400);
    ad_scan s;
    ad_scan_init(&s, 8192, 50);
    CHECK_EQ(ad_scan_feed(&s, "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 25), AD_SCAN_BAD);
    /* Host: none or two in HTTP/1.1. */
    CHECK_EQ(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

TEST(request_line_is_strict)
{
    CHECK_EQ(status_of("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /\tx HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of(" GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / http/1.1\r\nHost: x\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
    CHECK_EQ(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
    CHECK_EQ(status_of("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
}

TEST(limits)
{
    ad_scan s;
    /* The byte limit counts the whole head: 431, or 414 in the request line. */
    char big[400];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    char text[600];
    snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: x\r\nX: %s\r\n\r\n", big);
    ad_scan_init(&s, 200, 50);
    CHECK_EQ(ad_scan_feed(&s, text, strlen(text)), AD_SCAN_BAD);
    CHECK_EQ(s.status, 431);
    snprintf(text, sizeof text, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", big);
    ad_scan_init(&s, 200, 50);
    CHECK_EQ(ad_scan_feed(&s, text, strlen(text)), AD_SCAN_BAD);
    CHECK_EQ(s.status, 414);
    /* Exactly at the limit passes. */
    const char *ok = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ad_scan_init(&s, strlen(ok), 50);
    CHECK_EQ(ad_scan_feed(&s, ok, strlen(ok)), AD_SCAN_DONE);
    /* A head not complete yet that already passed the limit is refused
     * without waiting for the rest. */
    ad_scan_init(&s, 20, 50);
    CHECK_EQ(ad_scan_feed(&s, "GET / HTTP/1.1\r\nHost: xxxxxxxx", 30), AD_SCAN_BAD);
    CHECK_EQ(s.status, 431);
    /* Header count. */
    ad_scan_init(&s, 8192, 2);
    CHECK_EQ(ad_scan_feed(&s, "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", 39), AD_SCAN_BAD);
    CHECK_EQ(s.status, 431);
}

TEST(bytes_past_the_head_are_not_scanned)
{
    ad_scan s;
    const char *t = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\n\r\x01";
    CHECK_EQ(scan(&s, t), AD_SCAN_DONE);
    CHECK_EQ(s.head_len, strlen(t) - 3);
    /* Feeding again reports the same. */
    CHECK_EQ(ad_scan_feed(&s, t, strlen(t)), AD_SCAN_DONE);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(clean_heads_pass);
    RUN(smuggling_shapes_are_refused);
    RUN(request_line_is_strict);
    RUN(limits);
    RUN(bytes_past_the_head_are_not_scanned);
    return harness_report("test_prescan");
}

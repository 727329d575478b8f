/*
 * test_sse.c -- the SSE parser must give the same events for any split of
 * its input: every case and every .sse file under tests/fixtures/stream is fed
 * whole, split in two at every byte offset, and one byte at a time.
 *
 * Events are recorded as  event \1 data \2  so a whole run compares as one
 * string (data may itself hold '\n').
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "provider/sse.h"

#define EV(e, d) e "\1" d "\2"

typedef struct rec {
    ad_buf out;
    int stop_after; /* return 7 from the callback after this many events; 0 = never */
    int n;
} rec;

static int on_event(void *ud, const char *event, size_t elen, const char *data, size_t dlen)
{
    rec *r = ud;
    /* Both strings must be NUL-terminated at their stated length. */
    if (event[elen] != '\0' || data[dlen] != '\0')
        return 99;
    ad_buf_append(&r->out, event, elen);
    ad_buf_putc(&r->out, '\1');
    ad_buf_append(&r->out, data, dlen);
    ad_buf_putc(&r->out, '\2');
    r->n++;
    if (r->stop_after && r->n >= r->stop_after)
        return 7;
    return 0;
}

/* Feeds `in` in pieces: split==0 whole, split==SIZE_MAX byte by byte, else
 * two feeds at offset split. Returns the first non-zero result or finish's.
 * *events receives the recorded events (caller frees). */
static int run(const char *in, size_t len, size_t split, size_t max, char **events)
{
    rec r = {AD_BUF_INIT, 0, 0};
    ad_sse *p = ad_sse_new(max, on_event, &r);
    int rc = 0;
    if (split == SIZE_MAX) {
        for (size_t i = 0; i < len && rc == 0; i++)
            rc = ad_sse_feed(p, in + i, 1);
    } else if (split == 0) {
        rc = ad_sse_feed(p, in, len);
    } else {
        rc = ad_sse_feed(p, in, split);
        if (rc == 0)
            rc = ad_sse_feed(p, in + split, len - split);
    }
    if (rc == 0)
        rc = ad_sse_finish(p);
    ad_sse_free(p);
    *events = ad_buf_steal(&r.out);
    return rc;
}

/* Every split gives `want` and `want_rc`; returns the number of mismatches. */
static int check_all_splits(const char *in, size_t len, size_t max, const char *want,
                            int want_rc)
{
    int bad = 0;
    for (size_t split = 0; split <= len; split++) {
        char *got;
        int rc = run(in, len, split, max, &got);
        if (rc != want_rc || (want != NULL && strcmp(got, want) != 0)) {
            if (bad++ == 0)
                fprintf(stderr, "  split %zu: rc %d (want %d), events \"%s\"\n", split, rc,
                        want_rc, got);
        }
        free(got);
    }
    char *got;
    int rc = run(in, len, SIZE_MAX, max, &got);
    if (rc != want_rc || (want != NULL && strcmp(got, want) != 0)) {
        bad++;
        fprintf(stderr, "  bytewise: rc %d (want %d), events \"%s\"\n", rc, want_rc, got);
    }
    free(got);
    return bad;
}

#define CASE(in, want) CHECK_EQ(check_all_splits(in, sizeof(in) - 1, 0, want, 0), 0)

TEST(basic)
{
    CASE("data: a\n\ndata: b\n\n", EV("", "a") EV("", "b"));
    CASE("data: a\n\n\n\n\ndata: b\n\n", EV("", "a") EV("", "b"));
    CASE("", "");
    CASE("\n\n\n", "");
}

TEST(comments)
{
    CASE(": OPENROUTER PROCESSING\n\ndata: {\"x\":1}\n\n: OPENROUTER PROCESSING\n\n",
         EV("", "{\"x\":1}"));
    CASE("data: a\n: between data lines\ndata: b\n\n", EV("", "a\nb"));
    CASE(":\n\n", "");
}

TEST(crlf)
{
    CASE("data: a\r\n\r\ndata: b\r\n\r\n", EV("", "a") EV("", "b"));
    /* A CR at the end of one feed and the LF opening the next are one line
     * end: if they were two, "a" would be dispatched alone. */
    CASE("data: a\r\ndata: b\r\n\r\n", EV("", "a\nb"));
}

TEST(cr_only)
{
    CASE("data: a\r\rdata: b\r\r", EV("", "a") EV("", "b"));
    CASE("data: a\rdata: b\r\r", EV("", "a\nb"));
    /* CR ends "data: b"; the following CRLF is the blank line. */
    CASE("data: a\r\n\ndata: b\r\r\n", EV("", "a") EV("", "b"));
}

TEST(multiline_data)
{
    CASE("data: a\ndata: b\ndata:\ndata:  c\n\n", EV("", "a\nb\n\n c"));
    CASE("data\n\n", EV("", ""));
    CASE("data:\n\n", EV("", ""));
}

TEST(data_without_space)
{
    CASE("data:{\"x\":1}\n\n", EV("", "{\"x\":1}"));
    CASE("data:  two spaces\n\n", EV("", " two spaces"));
    CASE("data:x:y: z\n\n", EV("", "x:y: z"));
}

TEST(fields)
{
    CASE("event: error\ndata: {\"e\":1}\n\n", EV("error", "{\"e\":1}"));
    /* An event without data is not dispatched and its type does not leak
     * into the next event. */
    CASE("event: ping\n\ndata: z\n\n", EV("", "z"));
    CASE("id: 5\nretry: 100\nfoo: bar\nDATA: no\ndata: q\n\n", EV("", "q"));
    CASE("event:x\nevent: y\ndata: 1\n\n", EV("y", "1"));
}

TEST(done)
{
    CASE("data: {\"a\":1}\n\ndata: [DONE]\n\n", EV("", "{\"a\":1}") EV("", "[DONE]"));
}

TEST(no_trailing_blank_line)
{
    CASE("data: a\n\ndata: last", EV("", "a") EV("", "last"));
    CASE("data: a\n\ndata: last\n", EV("", "a") EV("", "last"));
    CASE("data: a\n\ndata: last\r", EV("", "a") EV("", "last"));
    CASE("data: one\ndata: two", EV("", "one\ntwo"));
}

TEST(utf8_split)
{
    CASE("data: {\"t\":\"2 \xc3\x97 3 = 6 \xc2\xb0 \xc3\xa1 \xf0\x9f\x98\x80\"}\n\n",
         EV("", "{\"t\":\"2 \xc3\x97 3 = 6 \xc2\xb0 \xc3\xa1 \xf0\x9f\x98\x80\"}"));
}

TEST(too_big_line)
{
    char in[200];
    memcpy(in, "data: ", 6);
    memset(in + 6, 'x', 100);
    memcpy(in + 106, "\n\n", 3);
    CHECK_EQ(check_all_splits(in, 108, 64, NULL, AD_ETOOBIG), 0);
    /* Just at the bound is fine: a 64-byte line. */
    char ok[80];
    memcpy(ok, "data: ", 6);
    memset(ok + 6, 'y', 58);
    memcpy(ok + 64, "\n\n", 3);
    CHECK_EQ(check_all_splits(ok, 66, 64, NULL, 0), 0);
    /* Many small data lines whose sum crosses the bound. */
    char many[400] = "";
    for (int i = 0; i < 20; i++)
        strcat(many, "data: 0123456789\n");
    strcat(many, "\n");
    CHECK_EQ(check_all_splits(many, strlen(many), 64, NULL, AD_ETOOBIG), 0);
}

TEST(huge_line_fails_at_bound)
{
    /* A 64 MiB line against the default 16 MiB bound: the parser must give
     * up once 16 MiB are buffered, not read the whole line first. */
    size_t chunk = 64 * 1024, total = (size_t)64 << 20;
    char *block = malloc(chunk);
    memset(block, 'x', chunk);
    rec r = {AD_BUF_INIT, 0, 0};
    ad_sse *p = ad_sse_new(0, on_event, &r);
    CHECK_EQ(ad_sse_feed(p, "data: ", 6), 0);
    size_t fed = 6;
    int rc = 0;
    while (fed < total && rc == 0) {
        rc = ad_sse_feed(p, block, chunk);
        fed += chunk;
    }
    CHECK_EQ(rc, AD_ETOOBIG);
    CHECK(fed <= ((size_t)16 << 20) + chunk + 6);
    CHECK(fed >= ((size_t)16 << 20));
    /* The error sticks until reset; after reset the parser works again. */
    CHECK_EQ(ad_sse_feed(p, "\n\n", 2), AD_ETOOBIG);
    CHECK_EQ(ad_sse_finish(p), AD_ETOOBIG);
    ad_sse_reset(p);
    CHECK_EQ(ad_sse_bytes(p), 0);
    CHECK_EQ(ad_sse_feed(p, "data: ok\n\n", 10), 0);
    CHECK_EQ(r.n, 1);
    CHECK_STREQ(r.out.data, EV("", "ok"));
    CHECK_EQ(ad_sse_bytes(p), 10);
    ad_sse_free(p);
    ad_buf_free(&r.out);
    free(block);
}

TEST(callback_stops)
{
    rec r = {AD_BUF_INIT, 2, 0};
    ad_sse *p = ad_sse_new(0, on_event, &r);
    const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    CHECK_EQ(ad_sse_feed(p, in, strlen(in)), 7);
    CHECK_EQ(r.n, 2);
    CHECK_EQ(ad_sse_feed(p, "data: 4\n\n", 9), 7);
    CHECK_EQ(r.n, 2);
    ad_sse_reset(p);
    r.stop_after = 0;
    CHECK_EQ(ad_sse_feed(p, "data: 5\n\n", 9), 0);
    CHECK_EQ(r.n, 3);
    CHECK_STREQ(r.out.data, EV("", "1") EV("", "2") EV("", "5"));
    /* Reset forgets a partial line and a pending CR. */
    CHECK_EQ(ad_sse_feed(p, "data: partial\r", 14), 0);
    ad_sse_reset(p);
    CHECK_EQ(ad_sse_feed(p, "\ndata: 6\n\n", 10), 0);
    CHECK_EQ(ad_sse_finish(p), 0);
    CHECK_STREQ(r.out.data, EV("", "1") EV("", "2") EV("", "5") EV("", "6"));
    ad_sse_free(p);
    ad_buf_free(&r.out);
    ad_sse_free(NULL);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    ad_buf b = AD_BUF_INIT;
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        ad_buf_append(&b, tmp, n);
    fclose(f);
    *len = b.len;
    return ad_buf_steal(&b);
}

TEST(fixtures_any_split)
{
    const char *src = getenv("AGENTD_SRC");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/stream", src ? src : ".");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (d == NULL)
        return;
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".sse") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        size_t len = 0;
        char *in = slurp(path, &len);
        CHECK(in != NULL);
        if (in == NULL)
            continue;
        files++;
        char *want;
        CHECK_EQ(run(in, len, 0, 0, &want), 0);
        CHECK(strlen(want) > 0);
        int bad = check_all_splits(in, len, 0, want, 0);
        if (bad)
            fprintf(stderr, "  fixture %s: %d bad splits\n", de->d_name, bad);
        CHECK_EQ(bad, 0);
        free(want);
        free(in);
    }
    closedir(d);
    CHECK(files >= 10);
}

/* id: and retry: for a reconnecting client. Each event records the last
 * event ID as the callback sees it; every split gives the same. */
typedef struct idrec {
    ad_buf out;
    ad_sse *p;
} idrec;

static int on_event_id(void *ud, const char *event, size_t elen, const char *data, size_t dlen)
{
    (void)event;
    (void)elen;
    idrec *r = ud;
    ad_buf_printf(&r->out, "[%s|%.*s]", ad_sse_last_id(r->p), (int)dlen, data);
    return 0;
}

static int id_splits(const char *in, const char *want, const char *want_last, long want_retry)
{
    int bad = 0;
    size_t len = strlen(in);
    for (size_t split = 0; split <= len + 1; split++) {
        idrec r = {AD_BUF_INIT, NULL};
        r.p = ad_sse_new(0, on_event_id, &r);
        if (split > len) {
            for (size_t i = 0; i < len; i++)
                ad_sse_feed(r.p, in + i, 1);
        } else {
            ad_sse_feed(r.p, in, split);
            ad_sse_feed(r.p, in + split, len - split);
        }
        ad_sse_finish(r.p);
        const char *got = r.out.data ? r.out.data : "";
        if (strcmp(got, want) != 0 || strcmp(ad_sse_last_id(r.p), want_last) != 0 ||
            ad_sse_retry_ms(r.p) != want_retry) {
            if (bad++ == 0)
                fprintf(stderr, "  split %zu: \"%s\" last \"%s\" retry %ld\n", split, got,
                        ad_sse_last_id(r.p), ad_sse_retry_ms(r.p));
        }
        ad_buf_free(&r.out);
        ad_sse_free(r.p);
    }
    return bad;
}

TEST(event_ids_and_retry)
{
    /* A priming event (an id, empty data), then events with and without
     * ids: the last ID persists until another id: field comes. */
    CHECK_EQ(id_splits("id: e-1\ndata:\n\ndata: a\n\nid: e-2\nretry: 500\ndata: b\n\n",
                       "[e-1|][e-1|a][e-2|b]", "e-2", 500),
             0);
    /* An id in an event without data still counts; an empty id clears. */
    CHECK_EQ(id_splits("id: x\n\ndata: a\n\nid\ndata: b\n\n", "[x|a][|b]", "", -1), 0);
    /* retry: with anything but digits is ignored; the last valid one stays. */
    CHECK_EQ(id_splits("retry: 300\n\nretry: 5s\n\nretry:\n\n", "", "", 300), 0);
    /* No id: field at all. */
    CHECK_EQ(id_splits("data: a\n\n", "[|a]", "", -1), 0);
    /* An id of the event under way is not the last ID before its end. */
    CHECK_EQ(id_splits("data: a\nid: late\n\n", "[late|a]", "late", -1), 0);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(basic);
    RUN(comments);
    RUN(crlf);
    RUN(cr_only);
    RUN(multiline_data);
    RUN(data_without_space);
    RUN(fields);
    RUN(done);
    RUN(no_trailing_blank_line);
    RUN(utf8_split);
    RUN(too_big_line);
    RUN(huge_line_fails_at_bound);
    RUN(callback_stops);
    RUN(fixtures_any_split);
    RUN(event_ids_and_retry);
    return harness_report("test_sse");
}

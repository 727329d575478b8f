/*
 * test_stream.c -- the chunk assembler against provider-shaped fixtures.
 *
 * tests/fixtures/stream holds NAME.sse (a streamed body) or NAME.body (a
 * non-streaming body) next to NAME.expect.json:
 *   rc_chunk        first non-zero ad_stream_chunk/ad_stream_message result, or 0
 *   error_contains  substring of err when something failed
 *   rc_end          ad_stream_end result (when rc_chunk is 0)
 *   text, finish_reason, calls[{id,name,arguments}], usage, done, reasoning,
 *   reasoning_content, reasoning_details   -- null means "absent"
 * Each .sse goes through the SSE parser and the assembler split at every byte
 * offset (two feeds) and one byte at a time, with one ad_stream reused (and
 * reset) for all runs, and every run must match the expectation exactly.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "provider/sse.h"
#include "core/stream.h"

typedef struct sink {
    ad_buf text;
    int ntext;
    ad_buf reasoning;
} sink;

static void on_text(void *ud, const char *t, size_t n)
{
    sink *k = ud;
    ad_buf_append(&k->text, t, n);
    k->ntext++;
}

static void on_reasoning(void *ud, const char *t, size_t n)
{
    sink *k = ud;
    ad_buf_append(&k->reasoning, t, n);
}

static void sink_reset(sink *k)
{
    ad_buf_reset(&k->text);
    ad_buf_reset(&k->reasoning);
    k->ntext = 0;
}

static void sink_free(sink *k)
{
    ad_buf_free(&k->text);
    ad_buf_free(&k->reasoning);
}

static const char *bstr(const ad_buf *b)
{
    return b->data ? b->data : "";
}

typedef struct pipeline {
    ad_stream *st;
    int rc_chunk;
    char err[512];
} pipeline;

static int on_event(void *ud, const char *event, size_t elen, const char *data, size_t dlen)
{
    (void)event;
    (void)elen;
    pipeline *p = ud;
    int rc = ad_stream_chunk(p->st, data, dlen, p->err, sizeof(p->err));
    if (rc != 0)
        p->rc_chunk = rc;
    return rc;
}

/* Runs one .sse body through parser and assembler; split as in test_sse
 * (0 whole, SIZE_MAX bytewise, else two feeds). Returns rc_end, or -100 when
 * the chunk stage failed (then p->rc_chunk says how). */
static int run_sse(pipeline *p, const char *in, size_t len, size_t split)
{
    ad_sse *sse = ad_sse_new(0, on_event, p);
    int rc = 0;
    p->rc_chunk = 0;
    p->err[0] = '\0';
    if (split == SIZE_MAX) {
        for (size_t i = 0; i < len && rc == 0; i++)
            rc = ad_sse_feed(sse, in + i, 1);
    } else {
        rc = ad_sse_feed(sse, in, split);
        if (rc == 0)
            rc = ad_sse_feed(sse, in + split, len - split);
    }
    if (rc == 0)
        rc = ad_sse_finish(sse);
    ad_sse_free(sse);
    if (rc != 0) {
        if (p->rc_chunk == 0)
            p->rc_chunk = rc; /* an SSE-level failure */
        return -100;
    }
    return ad_stream_end(p->st, p->err, sizeof(p->err));
}

static const char *jstr_or_null(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return NULL;
    return json_object_get_string(v);
}

static bool same_str(const char *got, const char *want)
{
    if (got == NULL || want == NULL)
        return got == want;
    return strcmp(got, want) == 0;
}

/* Compares the outcome with the expectation; on mismatch writes why. */
static bool verify(ad_stream *st, sink *k, int rc_chunk, int rc_end, const char *err,
                   json_object *ex, char *why, size_t whylen)
{
    int want_chunk = json_object_get_int(json_object_object_get(ex, "rc_chunk"));
    const char *contains = jstr_or_null(ex, "error_contains");
    if (rc_chunk != want_chunk) {
        snprintf(why, whylen, "rc_chunk %d, want %d (err: %s)", rc_chunk, want_chunk, err);
        return false;
    }
    if (rc_chunk != 0) {
        if (contains == NULL || strstr(err, contains) == NULL) {
            snprintf(why, whylen, "err \"%s\" lacks \"%s\"", err, contains ? contains : "?");
            return false;
        }
        return true;
    }
    int want_end = json_object_get_int(json_object_object_get(ex, "rc_end"));
    if (rc_end != want_end) {
        snprintf(why, whylen, "rc_end %d, want %d (err: %s)", rc_end, want_end, err);
        return false;
    }
    if (rc_end != 0 && (contains == NULL || strstr(err, contains) == NULL)) {
        snprintf(why, whylen, "end err \"%s\" lacks \"%s\"", err, contains ? contains : "?");
        return false;
    }
    ad_response *r = ad_stream_response(st);
    const char *text = jstr_or_null(ex, "text");
    if (!same_str(bstr(&r->text), text) || !same_str(bstr(&k->text), text)) {
        snprintf(why, whylen, "text \"%s\" (callbacks \"%s\"), want \"%s\"", bstr(&r->text),
                 bstr(&k->text), text);
        return false;
    }
    if (!same_str(r->finish_reason, jstr_or_null(ex, "finish_reason"))) {
        snprintf(why, whylen, "finish_reason %s", r->finish_reason ? r->finish_reason : "NULL");
        return false;
    }
    json_object *calls = json_object_object_get(ex, "calls");
    if (r->ncalls != json_object_array_length(calls)) {
        snprintf(why, whylen, "%zu calls, want %zu", r->ncalls, json_object_array_length(calls));
        return false;
    }
    for (size_t i = 0; i < r->ncalls; i++) {
        json_object *c = json_object_array_get_idx(calls, i);
        const ad_tool_call *g = &r->calls[i];
        if (!same_str(g->id, jstr_or_null(c, "id")) || !same_str(g->name, jstr_or_null(c, "name")) ||
            !same_str(bstr(&g->args), jstr_or_null(c, "arguments"))) {
            snprintf(why, whylen, "call %zu: id %s name %s args %s", i, g->id ? g->id : "NULL",
                     g->name ? g->name : "NULL", bstr(&g->args));
            return false;
        }
    }
    json_object *usage = json_object_object_get(ex, "usage");
    if (!json_object_equal(r->usage, usage)) {
        snprintf(why, whylen, "usage %s", r->usage ? json_object_to_json_string(r->usage) : "NULL");
        return false;
    }
    if (r->done != json_object_get_boolean(json_object_object_get(ex, "done"))) {
        snprintf(why, whylen, "done %d", r->done);
        return false;
    }
    const char *rs = jstr_or_null(ex, "reasoning");
    const char *rc = jstr_or_null(ex, "reasoning_content");
    if (!same_str(r->has_reasoning ? bstr(&r->reasoning) : NULL, rs) ||
        !same_str(r->has_reasoning_content ? bstr(&r->reasoning_content) : NULL, rc)) {
        snprintf(why, whylen, "reasoning \"%s\" / reasoning_content \"%s\"", bstr(&r->reasoning),
                 bstr(&r->reasoning_content));
        return false;
    }
    if (k->reasoning.len != r->reasoning.len + r->reasoning_content.len) {
        snprintf(why, whylen, "on_reasoning saw %zu bytes", k->reasoning.len);
        return false;
    }
    json_object *rd = json_object_object_get(ex, "reasoning_details");
    if (!json_object_equal(r->reasoning_details, rd)) {
        snprintf(why, whylen, "reasoning_details %s",
                 r->reasoning_details ? json_object_to_json_string(r->reasoning_details) : "NULL");
        return false;
    }
    return true;
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

static const char *fixture_dir(void)
{
    static char dir[4096];
    const char *src = getenv("AGENTD_SRC");
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/stream", src ? src : ".");
    return dir;
}

/* Runs one fixture; returns the number of failed runs. */
static int run_fixture(const char *dir, const char *name, bool is_sse)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s.expect.json", dir, name);
    json_object *ex = json_object_from_file(path);
    if (ex == NULL) {
        fprintf(stderr, "  %s: cannot read %s\n", name, path);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, is_sse ? ".sse" : ".body");
    size_t len = 0;
    char *in = slurp(path, &len);
    if (in == NULL) {
        json_object_put(ex);
        return 1;
    }
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream_callbacks cbs = {on_text, on_reasoning};
    pipeline p = {ad_stream_new(&cbs, &k), 0, ""};
    char why[1024];
    int bad = 0;
    if (is_sse) {
        for (size_t split = 0; split <= len + 1; split++) {
            size_t sp = split == len + 1 ? SIZE_MAX : split;
            ad_stream_reset(p.st);
            sink_reset(&k);
            int rc_end = run_sse(&p, in, len, sp);
            if (!verify(p.st, &k, p.rc_chunk, rc_end, p.err, ex, why, sizeof(why))) {
                if (bad++ == 0)
                    fprintf(stderr, "  %s split %zu: %s\n", name, split, why);
            }
        }
    } else {
        /* Run twice on the same assembler: reset must make it like new. */
        for (int round = 0; round < 2; round++) {
            ad_stream_reset(p.st);
            sink_reset(&k);
            p.err[0] = '\0';
            int rc = ad_stream_message(p.st, in, len, p.err, sizeof(p.err));
            int rc_end = rc == 0 ? ad_stream_end(p.st, p.err, sizeof(p.err)) : 0;
            if (!verify(p.st, &k, rc, rc_end, p.err, ex, why, sizeof(why))) {
                bad++;
                fprintf(stderr, "  %s: %s\n", name, why);
            }
            if (rc == 0 && k.ntext != (k.text.len > 0 ? 1 : 0)) {
                bad++;
                fprintf(stderr, "  %s: on_text called %d times\n", name, k.ntext);
            }
        }
    }
    ad_stream_free(p.st);
    ad_buf_free(&k.text);
    ad_buf_free(&k.reasoning);
    free(in);
    json_object_put(ex);
    return bad;
}

static int run_fixtures(bool is_sse)
{
    const char *dir = fixture_dir();
    const char *ext = is_sse ? ".sse" : ".body";
    size_t el = strlen(ext);
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "  cannot open %s\n", dir);
        return -1;
    }
    int files = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl <= el || strcmp(de->d_name + nl - el, ext) != 0)
            continue;
        char name[512];
        snprintf(name, sizeof(name), "%.*s", (int)(nl - el), de->d_name);
        files++;
        bad += run_fixture(dir, name, is_sse) ? 1 : 0;
    }
    closedir(d);
    return bad ? -bad : files;
}

TEST(sse_fixtures_every_split)
{
    int n = run_fixtures(true);
    CHECK(n >= 19);
}

TEST(message_fixtures)
{
    int n = run_fixtures(false);
    CHECK(n >= 3);
}

/* ---- direct checks ---- */

static ad_stream *fresh(sink *k)
{
    ad_stream_callbacks cbs = {on_text, on_reasoning};
    return ad_stream_new(&cbs, k);
}

static int chunk(ad_stream *s, const char *json, char *err)
{
    return ad_stream_chunk(s, json, strlen(json), err, 256);
}

TEST(done_and_keepalive_payloads)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256] = "";
    CHECK_EQ(chunk(s, "", err), 0);
    CHECK_EQ(chunk(s, "  \n", err), 0);
    CHECK(!ad_stream_response(s)->done);
    CHECK_EQ(chunk(s, " [DONE] ", err), 0);
    CHECK(ad_stream_response(s)->done);
    ad_stream_free(s);
    sink_free(&k);
    ad_stream_free(NULL);
}

TEST(invalid_chunks)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256];
    const char *bad[] = {"[1,2]", "null", "42", "\"str\"", "{}x", "{\"a\":1}{}", "{\"a\":", "[DONE",
                         "{'a':1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ(chunk(s, bad[i], err), AD_EINVAL);
        CHECK(err[0] != '\0');
    }
    /* A chunk with a NUL inside is not valid JSON text either. */
    CHECK_EQ(ad_stream_chunk(s, "{\"a\":1}\0{}", 10, err, sizeof(err)), AD_EINVAL);
    err[0] = '\0';
    CHECK_EQ(ad_stream_message(s, " \n ", 3, err, sizeof(err)), AD_EINVAL);
    CHECK(strstr(err, "empty") != NULL);
    ad_stream_free(s);
    sink_free(&k);
}

TEST(error_shapes)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256];
    CHECK_EQ(chunk(s, "{\"error\":\"overloaded\"}", err), AD_ERR);
    CHECK_STREQ(err, "provider error: overloaded");
    CHECK_EQ(chunk(s, "{\"error\":{\"message\":\"bad key\",\"code\":\"invalid_api_key\"}}", err),
             AD_ERR);
    CHECK_STREQ(err, "provider error: bad key (code invalid_api_key)");
    CHECK_EQ(chunk(s, "{\"error\":{\"type\":\"x\"}}", err), AD_ERR);
    CHECK_STREQ(err, "provider error: {\"type\":\"x\"}");
    /* "error": null is absent. */
    CHECK_EQ(chunk(s, "{\"error\":null,\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}", err), 0);
    CHECK_STREQ(ad_stream_response(s)->text.data, "ok");
    ad_stream_free(s);
    sink_free(&k);
}

TEST(bounds)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256];
    char js[256];
    int rc = 0, i;
    for (i = 0; i < 200 && rc == 0; i++) {
        snprintf(js, sizeof(js),
                 "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,\"id\":\"c%d\","
                 "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}",
                 i, i);
        rc = chunk(s, js, err);
    }
    CHECK_EQ(rc, AD_ETOOBIG);
    CHECK_EQ(i, 129);
    CHECK_EQ(ad_stream_response(s)->ncalls, 128);
    CHECK(strstr(err, "128") != NULL);

    /* Arguments: 1 MiB pieces; the ninth crosses 8 MiB. */
    ad_stream_reset(s);
    CHECK_EQ(ad_stream_response(s)->ncalls, 0);
    size_t piece = (size_t)1 << 20;
    ad_buf b = AD_BUF_INIT;
    ad_buf_puts(&b, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"");
    for (size_t j = 0; j < piece; j++)
        ad_buf_putc(&b, 'x');
    ad_buf_puts(&b, "\"}}]}}]}");
    rc = 0;
    for (i = 0; i < 20 && rc == 0; i++)
        rc = ad_stream_chunk(s, b.data, b.len, err, sizeof(err));
    CHECK_EQ(rc, AD_ETOOBIG);
    CHECK_EQ(i, 9);
    CHECK_EQ(ad_stream_response(s)->calls[0].args.len, 8 * piece);
    CHECK(strstr(err, "arguments") != NULL);
    ad_buf_free(&b);
    ad_stream_free(s);
    sink_free(&k);
}

TEST(matching_rules)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256];
    /* No id, no index, no call yet: starts one; then id "" is no id. */
    CHECK_EQ(chunk(s, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"a\","
                      "\"arguments\":\"{\\\"x\\\"\"}}]}}]}",
                   err),
             0);
    CHECK_EQ(chunk(s, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"\",\"function\":"
                      "{\"arguments\":\":1}\"}}]}}]}",
                   err),
             0);
    /* Arguments sent as a JSON value. */
    CHECK_EQ(chunk(s, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"id\":\"k\",\"function\":"
                      "{\"name\":\"b\",\"arguments\":{\"p\":\"a/b\"}}}]},\"finish_reason\":\"tool_calls\"}]}",
                   err),
             0);
    CHECK_EQ(ad_stream_end(s, err, sizeof(err)), 0);
    ad_response *r = ad_stream_response(s);
    CHECK_EQ(r->ncalls, 2);
    CHECK(r->calls[0].id == NULL);
    CHECK_STREQ(r->calls[0].name, "a");
    CHECK_STREQ(r->calls[0].args.data, "{\"x\":1}");
    CHECK(!r->calls[0].has_index);
    CHECK_STREQ(r->calls[1].id, "k");
    CHECK_STREQ(r->calls[1].args.data, "{\"p\":\"a/b\"}");
    /* Nothing about text was reported. */
    CHECK_EQ(k.ntext, 0);
    ad_stream_free(s);
    sink_free(&k);
}

TEST(reset_reuses)
{
    sink k = {AD_BUF_INIT, 0, AD_BUF_INIT};
    ad_stream *s = fresh(&k);
    char err[256];
    CHECK_EQ(chunk(s, "{\"choices\":[{\"delta\":{\"content\":\"x\",\"reasoning\":\"r\","
                      "\"reasoning_details\":[{\"type\":\"reasoning.text\",\"text\":\"t\",\"index\":0}],"
                      "\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"n\"}}]},"
                      "\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":1}}",
                   err),
             0);
    CHECK_EQ(chunk(s, "[DONE]", err), 0);
    ad_stream_reset(s);
    ad_response *r = ad_stream_response(s);
    CHECK_EQ(r->text.len, 0);
    CHECK_EQ(r->ncalls, 0);
    CHECK(r->finish_reason == NULL);
    CHECK(r->usage == NULL);
    CHECK(!r->has_reasoning);
    CHECK_EQ(r->reasoning.len, 0);
    CHECK(r->reasoning_details == NULL);
    CHECK(!r->done);
    err[0] = '\0';
    CHECK_EQ(ad_stream_end(s, err, sizeof(err)), AD_ERR);
    CHECK_STREQ(err, "stream ended without a finish reason");
    ad_stream_free(s);
    sink_free(&k);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(sse_fixtures_every_split);
    RUN(message_fixtures);
    RUN(done_and_keepalive_payloads);
    RUN(invalid_chunks);
    RUN(error_shapes);
    RUN(bounds);
    RUN(matching_rules);
    RUN(reset_reuses);
    return harness_report("test_stream");
}

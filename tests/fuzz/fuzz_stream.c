/* fuzz-sources: runtime/core/stream.c runtime/base/text.c runtime/base/buf.c */
/* fuzz-libs: -ljson-c */
/*
 * fuzz_stream.c -- libFuzzer target for the chunk / tool-call assembler.
 *
 * Input: byte 0 picks the bounds (tool calls per response, argument bytes)
 * and the mode; the rest is split at newlines into SSE data payloads
 * (chat.completion.chunk texts, "[DONE]", or junk) fed to ad_stream_chunk(),
 * or, in message mode, handed whole to ad_stream_message(). Whatever
 * happens, the assembled response must respect the bounds, keep every
 * buffer NUL-terminated, hold exactly the text reported through on_text,
 * and be reusable after ad_stream_reset(). Built by mk/fuzz.mk.
 */
#include "core/stream.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct seen {
    size_t text;
    size_t reasoning;
} seen;

static void on_text(void *ud, const char *t, size_t n)
{
    ENSURE(n == 0 || t != NULL);
    ((seen *)ud)->text += n;
}

static void on_reasoning(void *ud, const char *t, size_t n)
{
    ENSURE(n == 0 || t != NULL);
    ((seen *)ud)->reasoning += n;
}

static void check_buf(const ad_buf *b)
{
    if (b->data)
        ENSURE(b->data[b->len] == '\0');
    else
        ENSURE(b->len == 0);
}

static void check(ad_stream *s, const seen *sn, size_t max_calls, size_t max_args, bool ended)
{
    ad_response *r = ad_stream_response(s);
    ENSURE(r->ncalls <= max_calls);
    ENSURE(r->text.len == sn->text);
    check_buf(&r->text);
    check_buf(&r->reasoning);
    check_buf(&r->reasoning_content);
    for (size_t i = 0; i < r->ncalls; i++) {
        ad_tool_call *c = &r->calls[i];
        ENSURE(c->args.len <= max_args || (ended && c->args.len == 2));
        check_buf(&c->args);
        if (ended)
            ENSURE(c->args.len > 0); /* empty arguments become "{}" */
    }
    if (r->reasoning_details)
        ENSURE(json_object_is_type(r->reasoning_details, json_type_array));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    static const size_t calls[] = {1, 2, 4, 128};
    static const size_t args[] = {1, 16, 256, (size_t)8 << 20};
    size_t max_calls = calls[data[0] & 3];
    size_t max_args = args[(data[0] >> 2) & 3];
    bool message_mode = data[0] & 16;
    seen sn = {0, 0};
    ad_stream_callbacks cb = {on_text, on_reasoning};
    ad_stream *s = ad_stream_new(&cb, &sn);
    if (!s)
        return 0;
    ad_stream_set_limits(s, max_calls, max_args);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    char err[256];
    for (int round = 0; round < 2; round++) {
        int rc = 0;
        if (message_mode) {
            err[0] = '\0';
            rc = ad_stream_message(s, p, (size_t)(end - p), err, sizeof err);
            ENSURE(rc == 0 || err[0] != '\0');
        } else {
            const char *q = p;
            while (q < end && rc == 0) {
                const char *nl = memchr(q, '\n', (size_t)(end - q));
                const char *e = nl ? nl : end;
                err[0] = '\0';
                if (e - q == 6 && memcmp(q, "[DONE]", 6) == 0)
                    ad_stream_response(s)->done = true;
                else
                    rc = ad_stream_chunk(s, q, (size_t)(e - q), err, sizeof err);
                ENSURE(rc == 0 || err[0] != '\0');
                check(s, &sn, max_calls, max_args, false);
                q = nl ? nl + 1 : end;
            }
        }
        check(s, &sn, max_calls, max_args, false);
        if (rc == 0) {
            err[0] = '\0';
            int erc = ad_stream_end(s, err, sizeof err);
            ENSURE(erc == 0 || err[0] != '\0');
            if (erc == 0)
                check(s, &sn, max_calls, max_args, true);
        }
        ad_stream_reset(s);
        sn.text = sn.reasoning = 0;
        ad_response *r = ad_stream_response(s);
        ENSURE(r->ncalls == 0 && r->text.len == 0 && r->finish_reason == NULL && !r->done);
    }
    ad_stream_free(s);
    return 0;
}

/* fuzz-sources: runtime/core/request.c runtime/base/buf.c */
/* fuzz-libs: -ljson-c */
/*
 * fuzz_request.c -- libFuzzer target for the request builder.
 *
 * The input becomes a conversation: records separated by 0xFF; a record's
 * first byte picks the role (system, user, assistant with a tool call, tool)
 * and the settings (stream, max_tokens), the rest is the content, any bytes
 * at all (NUL, invalid UTF-8, quotes, "</script>"). A record starting with
 * 0xFE is instead parsed as JSON for provider.extra. The body built by
 * ad_request_body() must parse back as one JSON object whose messages are
 * exactly the ones given, byte for byte, unless extra overrides them.
 * Built by mk/fuzz.mk.
 */
#include "core/request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static json_object *str(const char *s, size_t n)
{
    return json_object_new_string_len(s, (int)n);
}

static bool same_string(json_object *o, const char *s, size_t n)
{
    return json_object_is_type(o, json_type_string) &&
           (size_t)json_object_get_string_len(o) == n && memcmp(json_object_get_string(o), s, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    ad_config cfg;
    memset(&cfg, 0, sizeof cfg);
    json_object *msgs = json_object_new_array();
    const char *p = (const char *)data, *end = p + size;
    /* Where each message's content came from, to compare afterwards. */
    const char *starts[256];
    size_t lens[256];
    size_t n = 0;
    while (p < end && n < 256) {
        const char *sep = memchr(p, 0xff, (size_t)(end - p));
        const char *rec_end = sep ? sep : end;
        size_t rlen = (size_t)(rec_end - p);
        if (rlen > 0 && (unsigned char)p[0] == 0xfe) {
            json_tokener *tok = json_tokener_new_ex(32);
            json_object *x = json_tokener_parse_ex(tok, p + 1, (int)rlen - 1);
            if (json_tokener_get_error(tok) == json_tokener_success &&
                json_object_is_type(x, json_type_object)) {
                json_object_put(cfg.extra);
                cfg.extra = x;
            } else {
                json_object_put(x);
            }
            json_tokener_free(tok);
        } else if (rlen > 0) {
            unsigned sel = (unsigned char)p[0];
            static const char *const roles[] = {"system", "user", "assistant", "tool"};
            const char *role = roles[sel & 3];
            cfg.stream = sel & 4;
            cfg.max_tokens = (sel & 8) ? (long)sel * 1000 : 0;
            json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string(role));
            json_object_object_add(m, "content", str(p + 1, rlen - 1));
            if ((sel & 3) == 2 && (sel & 16)) {
                /* The content doubles as a tool call's id and arguments. */
                json_object *call = json_object_new_object();
                json_object *fn = json_object_new_object();
                json_object_object_add(call, "id", str(p + 1, rlen - 1));
                json_object_object_add(call, "type", json_object_new_string("function"));
                json_object_object_add(fn, "name", json_object_new_string("f"));
                json_object_object_add(fn, "arguments", str(p + 1, rlen - 1));
                json_object_object_add(call, "function", fn);
                json_object *calls = json_object_new_array();
                json_object_array_add(calls, call);
                json_object_object_add(m, "tool_calls", calls);
            }
            if ((sel & 3) == 3)
                json_object_object_add(m, "tool_call_id", str(p + 1, rlen - 1));
            json_object_array_add(msgs, m);
            starts[n] = p + 1;
            lens[n] = rlen - 1;
            n++;
        }
        p = sep ? sep + 1 : end;
    }

    size_t len = 0;
    char *body = ad_request_body(&cfg, "model/x", msgs, NULL, &len);
    ENSURE(body != NULL);
    ENSURE(strlen(body) == len); /* NUL bytes in content are escaped */
    json_tokener *tok = json_tokener_new_ex(64);
    json_object *back = json_tokener_parse_ex(tok, body, (int)len);
    ENSURE(json_tokener_get_error(tok) == json_tokener_success);
    ENSURE(json_object_is_type(back, json_type_object));
    json_tokener_free(tok);
    json_object *bm = NULL;
    bool overridden = cfg.extra && json_object_object_get_ex(cfg.extra, "messages", NULL);
    if (!overridden) {
        ENSURE(json_object_object_get_ex(back, "messages", &bm));
        ENSURE(json_object_array_length(bm) == n);
        for (size_t i = 0; i < n; i++) {
            json_object *c = NULL;
            json_object_object_get_ex(json_object_array_get_idx(bm, i), "content", &c);
            ENSURE(same_string(c, starts[i], lens[i]));
        }
    }
    if (!cfg.extra || !json_object_object_get_ex(cfg.extra, "model", NULL)) {
        json_object *model = NULL;
        ENSURE(json_object_object_get_ex(back, "model", &model));
        ENSURE(same_string(model, "model/x", 7));
    }
    json_object_put(back);
    free(body);
    json_object_put(msgs);
    json_object_put(cfg.extra);
    return 0;
}

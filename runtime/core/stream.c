/*
 * stream.c -- assembles one model response from Chat Completions chunks
 * (see stream.h for the rules; each one answers a real provider's habit).
 *
 * Data flow: every SSE data payload is parsed with one json_tokener that is
 * reset per chunk (no tokener allocation per chunk), the chunk's fields are
 * folded into the ad_response, and the parsed tree is released at once.
 * Only `usage` and reasoning_details values are kept, by reference.
 * ad_stream_message() runs the same folding over a whole non-streaming body,
 * with `complete` set: every tool_calls entry is then a whole call.
 *
 * Tool-call matching (streaming), in this order:
 *   1. a non-empty id equal to an existing call's id -> that call;
 *      a new id -> a new call, even when its index matches an existing call
 *      (servers that number every call 0 but give each its own id), except
 *      that a call found by index that has no id yet adopts it;
 *   2. no id, an `index` -> the latest call with that index value (the value,
 *      not the array position: some servers start at 1), else a new call;
 *   3. neither -> the last call, or a new one when there is none.
 * A new call carries a name: a delta with an unknown id but no name
 * continues the call at its index (or, without an index, the last call)
 * instead of starting one (servers that send a fresh id on every delta).
 * An empty-string id counts as no id. Names: the first non-empty name is
 * kept; a later name equal to the current one is ignored (servers that
 * repeat the name on every delta); a different one is appended (servers that
 * stream the name in pieces). A name that repeats its own first piece
 * exactly cannot be told from a repetition; we choose the repetition.
 *
 * reasoning_details entries are merged by their `index`: the string fields
 * "text", "summary" and "data" are concatenated in side buffers (appending to
 * json-c strings would copy the whole text on every delta) and written back
 * into the entry objects by rd_sync(), which ad_stream_end() and
 * ad_stream_response() call. Other fields keep their first non-null value;
 * a "signature" that was null or "" takes a later non-empty one (Anthropic
 * sends "" on every text delta and the real signature at the end).
 *
 * Bounds: at most max_calls calls, max_args bytes of arguments per call
 * (AD_STREAM_MAX_CALLS / AD_STREAM_MAX_ARGS unless ad_stream_set_limits()
 * lowered or raised them), AD_STREAM_MAX_TEXT bytes of text, of each reasoning
 * spelling and of reasoning_details text; beyond -> AD_ETOOBIG.
 */
#include "core/stream.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/text.h"

#define AD_STREAM_MAX_CALLS 128
#define AD_STREAM_MAX_ARGS ((size_t)8 << 20)
#define AD_STREAM_MAX_TEXT ((size_t)64 << 20)
#define AD_STREAM_MAX_NAME ((size_t)4096)
#define AD_STREAM_MAX_DETAILS 256
/* Buffers grown past this by one big response are released on reset. */
#define AD_STREAM_KEEP_CAP ((size_t)1 << 20)

enum { RD_TEXT, RD_SUMMARY, RD_DATA, RD_NFIELDS };
static const char *const rd_names[RD_NFIELDS] = {"text", "summary", "data"};

typedef struct rd_entry {
    json_object *obj; /* borrowed: r.reasoning_details owns it */
    long index;
    bool has_index;
    ad_buf field[RD_NFIELDS];
    bool has_field[RD_NFIELDS];
} rd_entry;

struct ad_stream {
    ad_stream_callbacks cbs;
    void *ud;
    const char *secret; /* borrowed: redacted from error messages */
    json_tokener *tok;
    ad_response r;
    size_t calls_cap; /* slots in r.calls; slots >= ncalls keep only args */
    rd_entry *rd;
    size_t nrd, rd_cap;
    size_t rd_bytes;
    bool rd_dirty; /* side buffers hold text not yet in the entry objects */
    size_t max_calls;
    size_t max_args;
};

static void trim_buf(ad_buf *b)
{
    if (b->cap > AD_STREAM_KEEP_CAP)
        ad_buf_free(b);
    else
        ad_buf_reset(b);
}

/* ---- lifecycle ---- */

ad_stream *ad_stream_new(const ad_stream_callbacks *cbs, void *ud)
{
    ad_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (cbs)
        s->cbs = *cbs;
    s->ud = ud;
    s->max_calls = AD_STREAM_MAX_CALLS;
    s->max_args = AD_STREAM_MAX_ARGS;
    s->tok = json_tokener_new();
    if (s->tok == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void ad_stream_set_secret(ad_stream *s, const char *secret)
{
    s->secret = secret;
}

void ad_stream_set_limits(ad_stream *s, size_t max_calls, size_t max_args)
{
    s->max_calls = max_calls ? max_calls : AD_STREAM_MAX_CALLS;
    s->max_args = max_args ? max_args : AD_STREAM_MAX_ARGS;
}

void ad_stream_reset(ad_stream *s)
{
    ad_response *r = &s->r;
    trim_buf(&r->text);
    for (size_t i = 0; i < r->ncalls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        r->calls[i].id = NULL;
        r->calls[i].name = NULL;
        trim_buf(&r->calls[i].args);
    }
    r->ncalls = 0;
    free(r->finish_reason);
    r->finish_reason = NULL;
    json_object_put(r->usage);
    r->usage = NULL;
    trim_buf(&r->reasoning);
    trim_buf(&r->reasoning_content);
    r->has_reasoning = false;
    r->has_reasoning_content = false;
    json_object_put(r->reasoning_details);
    r->reasoning_details = NULL;
    r->done = false;
    for (size_t i = 0; i < s->nrd; i++)
        for (int f = 0; f < RD_NFIELDS; f++)
            trim_buf(&s->rd[i].field[f]);
    s->nrd = 0;
    s->rd_bytes = 0;
    s->rd_dirty = false;
}

void ad_stream_free(ad_stream *s)
{
    if (s == NULL)
        return;
    ad_stream_reset(s);
    ad_buf_free(&s->r.text);
    ad_buf_free(&s->r.reasoning);
    ad_buf_free(&s->r.reasoning_content);
    for (size_t i = 0; i < s->calls_cap; i++)
        ad_buf_free(&s->r.calls[i].args);
    free(s->r.calls);
    for (size_t i = 0; i < s->rd_cap; i++)
        for (int f = 0; f < RD_NFIELDS; f++)
            ad_buf_free(&s->rd[i].field[f]);
    free(s->rd);
    json_tokener_free(s->tok);
    free(s);
}

/* Writes the side buffers of reasoning_details into the entry objects.
 * json_object_object_add on an existing key replaces the value in place, so
 * the provider's key order survives. */
static void rd_sync(ad_stream *s)
{
    if (!s->rd_dirty)
        return;
    for (size_t i = 0; i < s->nrd; i++) {
        rd_entry *d = &s->rd[i];
        for (int f = 0; f < RD_NFIELDS; f++) {
            if (!d->has_field[f])
                continue;
            json_object *v = json_object_new_string_len(d->field[f].data ? d->field[f].data : "",
                                                        (int)d->field[f].len);
            if (v != NULL)
                json_object_object_add(d->obj, rd_names[f], v);
        }
    }
    s->rd_dirty = false;
}

ad_response *ad_stream_response(ad_stream *s)
{
    rd_sync(s);
    return &s->r;
}

/* ---- folding one chunk ---- */

static int oom(char *err, size_t errlen)
{
    ad_errf(err, errlen, "out of memory while assembling the response");
    return AD_ENOMEM;
}

static int append_bounded(ad_buf *b, const char *p, size_t n, size_t max, const char *what,
                          char *err, size_t errlen)
{
    if (n > max || b->len > max - n) {
        ad_errf(err, errlen, "%s exceeds %zu bytes", what, max);
        return AD_ETOOBIG;
    }
    if (ad_buf_append(b, p, n) != AD_OK)
        return oom(err, errlen);
    return 0;
}

static int provider_error(const ad_stream *s, json_object *e, char *err, size_t errlen)
{
    const char *msg = NULL;
    json_object *code = NULL;
    const char *raw = NULL;
    if (ad_json_is(e, json_type_string)) {
        msg = json_object_get_string(e);
    } else if (ad_json_is(e, json_type_object)) {
        msg = ad_json_strn(e, "message", NULL);
        code = ad_json_get(e, "code");
        raw = ad_json_strn(ad_json_get(e, "metadata"), "raw", NULL);
    }
    if (msg == NULL || *msg == '\0')
        msg = json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN);
    char codebuf[128] = "";
    if (code != NULL) {
        const char *c = ad_json_is(code, json_type_string)
                            ? json_object_get_string(code)
                            : json_object_to_json_string_ext(code, JSON_C_TO_STRING_PLAIN);
        snprintf(codebuf, sizeof(codebuf), " (code %s)", c);
    }
    if (raw != NULL && *raw != '\0')
        ad_redact_errf(err, errlen, s->secret, "provider error: %s%s: %s", msg, codebuf, raw);
    else
        ad_redact_errf(err, errlen, s->secret, "provider error: %s%s", msg, codebuf);
    return AD_ERR;
}

static int set_finish(ad_response *r, const char *fr, char *err, size_t errlen)
{
    if (r->finish_reason != NULL && strcmp(r->finish_reason, fr) == 0)
        return 0;
    char *c = ad_strdup(fr);
    if (c == NULL)
        return oom(err, errlen);
    free(r->finish_reason);
    r->finish_reason = c;
    return 0;
}

static ad_tool_call *new_call(ad_stream *s, char *err, size_t errlen)
{
    ad_response *r = &s->r;
    if (r->ncalls >= s->max_calls) {
        ad_errf(err, errlen, "more than %zu tool calls in one response (limits.max_tool_calls)",
                s->max_calls);
        return NULL;
    }
    if (r->ncalls == s->calls_cap) {
        size_t cap = s->calls_cap ? s->calls_cap * 2 : 4;
        if (cap > s->max_calls)
            cap = s->max_calls;
        ad_tool_call *c = realloc(r->calls, cap * sizeof(*c));
        if (c == NULL) {
            oom(err, errlen);
            return NULL;
        }
        memset(c + s->calls_cap, 0, (cap - s->calls_cap) * sizeof(*c));
        r->calls = c;
        s->calls_cap = cap;
    }
    ad_tool_call *c = &r->calls[r->ncalls++];
    c->id = NULL;
    c->name = NULL;
    ad_buf_reset(&c->args);
    c->index = 0;
    c->has_index = false;
    return c;
}

static ad_tool_call *find_by_id(ad_response *r, const char *id)
{
    for (size_t i = r->ncalls; i-- > 0;)
        if (r->calls[i].id != NULL && strcmp(r->calls[i].id, id) == 0)
            return &r->calls[i];
    return NULL;
}

static ad_tool_call *find_by_index(ad_response *r, long idx)
{
    for (size_t i = r->ncalls; i-- > 0;)
        if (r->calls[i].has_index && r->calls[i].index == idx)
            return &r->calls[i];
    return NULL;
}

static int tool_delta(ad_stream *s, json_object *tc, bool complete, char *err, size_t errlen)
{
    ad_response *r = &s->r;
    if (!ad_json_is(tc, json_type_object))
        return 0;
    size_t idlen = 0;
    const char *id = ad_json_strn(tc, "id", &idlen);
    if (id != NULL && idlen == 0)
        id = NULL;
    json_object *ji = ad_json_get(tc, "index");
    bool has_idx = ad_json_is(ji, json_type_int);
    long idx = has_idx ? (long)json_object_get_int64(ji) : 0;
    json_object *fn = ad_json_get(tc, "function");
    size_t namelen = 0;
    const char *name = ad_json_strn(fn, "name", &namelen);
    json_object *args = ad_json_get(fn, "arguments");

    ad_tool_call *c = NULL;
    bool adopt_id = false;
    if (!complete) {
        if (id != NULL) {
            c = find_by_id(r, id);
            if (c != NULL && has_idx && c->has_index && c->index != idx) {
                /* The same id at another index is another call (a server
                 * that numbers ids per name, or reuses one): the one with
                 * this id at this index, if any, else a new one. */
                ad_tool_call *same = NULL;
                for (size_t i = 0; i < r->ncalls && !same; i++)
                    if (r->calls[i].id && strcmp(r->calls[i].id, id) == 0 &&
                        r->calls[i].has_index && r->calls[i].index == idx)
                        same = &r->calls[i];
                c = same;
            }
            if (c == NULL && has_idx) {
                ad_tool_call *byidx = find_by_index(r, idx);
                if (byidx != NULL && byidx->id == NULL) {
                    c = byidx;
                    adopt_id = true;
                } else if (byidx != NULL && (name == NULL || namelen == 0)) {
                    /* A new call carries a name: a nameless delta at an
                     * open call's index continues it, whatever its id. */
                    c = byidx;
                }
            } else if (c == NULL && !has_idx && (name == NULL || namelen == 0) && r->ncalls > 0) {
                c = &r->calls[r->ncalls - 1];
            }
        } else if (has_idx) {
            c = find_by_index(r, idx);
        } else if (r->ncalls > 0) {
            c = &r->calls[r->ncalls - 1];
        }
    }
    if (c == NULL) {
        c = new_call(s, err, errlen);
        if (c == NULL)
            return r->ncalls >= s->max_calls ? AD_ETOOBIG : AD_ENOMEM;
        adopt_id = id != NULL;
    }
    if (adopt_id) {
        c->id = ad_strndup(id, idlen);
        if (c->id == NULL)
            return oom(err, errlen);
    }
    if (has_idx && !c->has_index) {
        c->index = idx;
        c->has_index = true;
    }

    if (name != NULL && namelen > 0) {
        if (c->name == NULL) {
            if (namelen > AD_STREAM_MAX_NAME)
                goto name_too_big;
            c->name = ad_strndup(name, namelen);
            if (c->name == NULL)
                return oom(err, errlen);
        } else if (strcmp(c->name, name) != 0) {
            size_t cur = strlen(c->name);
            if (namelen > AD_STREAM_MAX_NAME - cur)
                goto name_too_big;
            char *n = realloc(c->name, cur + namelen + 1);
            if (n == NULL)
                return oom(err, errlen);
            memcpy(n + cur, name, namelen + 1);
            c->name = n;
        }
    }

    if (ad_json_is(args, json_type_string)) {
        return append_bounded(&c->args, json_object_get_string(args),
                              (size_t)json_object_get_string_len(args), s->max_args,
                              "tool call arguments", err, errlen);
    } else if (args != NULL) {
        /* Some servers send the arguments as a JSON value, not as text. */
        const char *t = json_object_to_json_string_ext(
            args, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (t == NULL)
            return oom(err, errlen);
        return append_bounded(&c->args, t, strlen(t), s->max_args, "tool call arguments",
                              err, errlen);
    }
    return 0;

name_too_big:
    ad_errf(err, errlen, "tool name exceeds %zu bytes", AD_STREAM_MAX_NAME);
    return AD_ETOOBIG;
}

static rd_entry *rd_new(ad_stream *s, char *err, size_t errlen)
{
    if (s->nrd >= AD_STREAM_MAX_DETAILS) {
        ad_errf(err, errlen, "more than %d reasoning_details entries", AD_STREAM_MAX_DETAILS);
        return NULL;
    }
    if (s->nrd == s->rd_cap) {
        size_t cap = s->rd_cap ? s->rd_cap * 2 : 4;
        rd_entry *d = realloc(s->rd, cap * sizeof(*d));
        if (d == NULL) {
            oom(err, errlen);
            return NULL;
        }
        memset(d + s->rd_cap, 0, (cap - s->rd_cap) * sizeof(*d));
        s->rd = d;
        s->rd_cap = cap;
    }
    if (s->r.reasoning_details == NULL) {
        s->r.reasoning_details = json_object_new_array();
        if (s->r.reasoning_details == NULL) {
            oom(err, errlen);
            return NULL;
        }
    }
    json_object *obj = json_object_new_object();
    if (obj == NULL || json_object_array_add(s->r.reasoning_details, obj) != 0) {
        json_object_put(obj);
        oom(err, errlen);
        return NULL;
    }
    rd_entry *d = &s->rd[s->nrd++];
    d->obj = obj;
    d->index = 0;
    d->has_index = false;
    for (int f = 0; f < RD_NFIELDS; f++) {
        ad_buf_reset(&d->field[f]);
        d->has_field[f] = false;
    }
    return d;
}

static int rd_field(const char *key)
{
    for (int f = 0; f < RD_NFIELDS; f++)
        if (strcmp(key, rd_names[f]) == 0)
            return f;
    return -1;
}

static bool empty_string(json_object *v)
{
    return v == NULL || (ad_json_is(v, json_type_string) && json_object_get_string_len(v) == 0);
}

/* The "type" of a reasoning_details entry, or "" when it has none. */
static const char *rd_type(json_object *e)
{
    json_object *t = ad_json_get(e, "type");
    return ad_json_is(t, json_type_string) ? json_object_get_string(t) : "";
}

/* Streaming deltas of one entry share its index and type (Gemini sends a
 * reasoning.text and a reasoning.encrypted entry both at index 0). In a
 * complete message (complete = true) every entry stands alone. */
static int rd_merge(ad_stream *s, json_object *e, bool complete, char *err, size_t errlen)
{
    if (!ad_json_is(e, json_type_object))
        return 0;
    json_object *ji = ad_json_get(e, "index");
    bool has_idx = ad_json_is(ji, json_type_int);
    long idx = has_idx ? (long)json_object_get_int64(ji) : 0;
    rd_entry *d = NULL;
    if (has_idx && !complete) {
        const char *type = rd_type(e);
        for (size_t i = 0; i < s->nrd && d == NULL; i++)
            if (s->rd[i].has_index && s->rd[i].index == idx &&
                (type[0] == '\0' || strcmp(rd_type(s->rd[i].obj), type) == 0))
                d = &s->rd[i];
    }
    if (d == NULL) {
        d = rd_new(s, err, errlen);
        if (d == NULL)
            return s->nrd >= AD_STREAM_MAX_DETAILS ? AD_ETOOBIG : AD_ENOMEM;
        d->index = idx;
        d->has_index = has_idx;
    }
    json_object_object_foreach(e, key, val)
    {
        if (val == NULL)
            continue;
        json_object *cur = NULL;
        bool present = json_object_object_get_ex(d->obj, key, &cur);
        int f = rd_field(key);
        if (f >= 0 && ad_json_is(val, json_type_string)) {
            size_t n = (size_t)json_object_get_string_len(val);
            if (n > AD_STREAM_MAX_TEXT - s->rd_bytes) {
                ad_errf(err, errlen, "reasoning_details exceed %zu bytes", AD_STREAM_MAX_TEXT);
                return AD_ETOOBIG;
            }
            /* A placeholder fixes the key's position; rd_sync fills it. */
            if (!present || cur == NULL) {
                json_object *ph = json_object_new_string("");
                if (ph == NULL || json_object_object_add(d->obj, key, ph) != 0)
                    return oom(err, errlen);
            }
            if (ad_buf_append(&d->field[f], json_object_get_string(val), n) != AD_OK)
                return oom(err, errlen);
            d->has_field[f] = true;
            s->rd_bytes += n;
            s->rd_dirty = true;
            continue;
        }
        bool take = !present || cur == NULL ||
                    (strcmp(key, "signature") == 0 && empty_string(cur) && !empty_string(val));
        if (take && json_object_object_add(d->obj, key, json_object_get(val)) != 0) {
            json_object_put(val);
            return oom(err, errlen);
        }
    }
    return 0;
}

static int reasoning_text(ad_stream *s, json_object *delta, const char *key, ad_buf *b,
                          bool *has, char *err, size_t errlen)
{
    size_t n = 0;
    const char *t = ad_json_strn(delta, key, &n);
    if (t == NULL || n == 0)
        return 0;
    int rc = append_bounded(b, t, n, AD_STREAM_MAX_TEXT, key, err, errlen);
    if (rc != 0)
        return rc;
    *has = true;
    if (s->cbs.on_reasoning)
        s->cbs.on_reasoning(s->ud, t, n);
    return 0;
}

static int fold_delta(ad_stream *s, json_object *d, bool complete, char *err, size_t errlen)
{
    ad_response *r = &s->r;
    int rc;
    /* One pass over the keys instead of a hash lookup per field: this runs
     * once per chunk, and a text chunk's delta has one or two keys. */
    json_object *content = NULL, *rd = NULL, *tcs = NULL;
    bool has_reasoning_keys = false;
    json_object_object_foreach(d, key, val)
    {
        switch (key[0]) {
        case 'c':
            if (strcmp(key, "content") == 0)
                content = val;
            break;
        case 'r':
            if (strcmp(key, "reasoning_details") == 0)
                rd = val;
            else if (strcmp(key, "reasoning") == 0 || strcmp(key, "reasoning_content") == 0)
                has_reasoning_keys = true;
            break;
        case 't':
            if (strcmp(key, "tool_calls") == 0)
                tcs = val;
            break;
        }
    }
    size_t text_start = r->text.len;
    if (ad_json_is(content, json_type_string)) {
        size_t n = (size_t)json_object_get_string_len(content);
        rc = append_bounded(&r->text, json_object_get_string(content), n, AD_STREAM_MAX_TEXT,
                            "response text", err, errlen);
        if (rc != 0)
            return rc;
    } else if (ad_json_is(content, json_type_array)) {
        /* Content given as parts: the text parts, in order. */
        size_t np = json_object_array_length(content);
        for (size_t i = 0; i < np; i++) {
            json_object *part = json_object_array_get_idx(content, i);
            const char *type = ad_json_strn(part, "type", NULL);
            size_t n = 0;
            const char *t = ad_json_strn(part, "text", &n);
            if (t == NULL || (type != NULL && strcmp(type, "text") != 0))
                continue;
            rc = append_bounded(&r->text, t, n, AD_STREAM_MAX_TEXT, "response text", err, errlen);
            if (rc != 0)
                return rc;
        }
    }
    if (r->text.len > text_start && s->cbs.on_text)
        s->cbs.on_text(s->ud, r->text.data + text_start, r->text.len - text_start);

    if (has_reasoning_keys) {
        rc = reasoning_text(s, d, "reasoning", &r->reasoning, &r->has_reasoning, err, errlen);
        if (rc == 0)
            rc = reasoning_text(s, d, "reasoning_content", &r->reasoning_content,
                                &r->has_reasoning_content, err, errlen);
        if (rc != 0)
            return rc;
    }

    if (ad_json_is(rd, json_type_array)) {
        size_t n = json_object_array_length(rd);
        for (size_t i = 0; i < n; i++)
            if ((rc = rd_merge(s, json_object_array_get_idx(rd, i), complete, err, errlen)) != 0)
                return rc;
    }

    if (ad_json_is(tcs, json_type_array)) {
        size_t n = json_object_array_length(tcs);
        for (size_t i = 0; i < n; i++)
            if ((rc = tool_delta(s, json_object_array_get_idx(tcs, i), complete, err, errlen)) != 0)
                return rc;
    } else if (ad_json_is(tcs, json_type_object)) {
        /* One call given as an object instead of a one-entry array. */
        return tool_delta(s, tcs, complete, err, errlen);
    }
    return 0;
}

/* Choice 0: the entry whose index is 0, or the first entry without one. */
static json_object *choice0(json_object *choices)
{
    size_t n = json_object_array_length(choices);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        if (!ad_json_is(c, json_type_object))
            continue;
        json_object *ji = ad_json_get(c, "index");
        if (ji == NULL || (ad_json_is(ji, json_type_int) && json_object_get_int64(ji) == 0))
            return c;
    }
    return NULL;
}

static int fold(ad_stream *s, json_object *root, bool complete, char *err, size_t errlen)
{
    ad_response *r = &s->r;
    if (!ad_json_is(root, json_type_object)) {
        ad_errf(err, errlen, "%s is not a JSON object", complete ? "response body" : "chunk");
        return AD_EINVAL;
    }
    json_object *e = NULL, *usage = NULL, *xgroq = NULL, *choices = NULL;
    json_object_object_foreach(root, key, val)
    {
        switch (key[0]) {
        case 'e':
            if (strcmp(key, "error") == 0)
                e = val;
            break;
        case 'u':
            if (strcmp(key, "usage") == 0)
                usage = val;
            break;
        case 'x':
            if (strcmp(key, "x_groq") == 0)
                xgroq = val;
            break;
        case 'c':
            if (strcmp(key, "choices") == 0)
                choices = val;
            break;
        }
    }
    if (e != NULL)
        return provider_error(s, e, err, errlen);

    if (!ad_json_is(usage, json_type_object) && xgroq != NULL)
        usage = ad_json_get(xgroq, "usage");
    if (ad_json_is(usage, json_type_object)) {
        json_object_put(r->usage);
        r->usage = json_object_get(usage);
    }

    json_object *ch = ad_json_is(choices, json_type_array) ? choice0(choices) : NULL;
    if (ch == NULL)
        return 0;
    json_object *fr = NULL, *delta = NULL, *message = NULL;
    json_object_object_foreach(ch, ckey, cval)
    {
        if (strcmp(ckey, "finish_reason") == 0)
            fr = cval;
        else if (strcmp(ckey, "delta") == 0)
            delta = cval;
        else if (strcmp(ckey, "message") == 0)
            message = cval;
    }
    if (ad_json_is(fr, json_type_string) && json_object_get_string_len(fr) > 0) {
        int rc = set_finish(r, json_object_get_string(fr), err, errlen);
        if (rc != 0)
            return rc;
    }
    json_object *d = complete ? message : delta;
    if (!ad_json_is(d, json_type_object))
        d = complete ? delta : message;
    if (!ad_json_is(d, json_type_object))
        return 0;
    return fold_delta(s, d, complete, err, errlen);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parses exactly one JSON value spanning data[0..len) (whitespace around it
 * allowed). *out may be NULL for a JSON null. */
static int parse(ad_stream *s, const char *data, size_t len, json_object **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    if (len > (size_t)INT_MAX) {
        ad_errf(err, errlen, "JSON text of %zu bytes is too big", len);
        return AD_ETOOBIG;
    }
    json_tokener_reset(s->tok);
    json_object *o = json_tokener_parse_ex(s->tok, data, (int)len);
    enum json_tokener_error je = json_tokener_get_error(s->tok);
    if (je != json_tokener_success) {
        json_object_put(o);
        char q[61];
        ad_redact_cut(q, sizeof q, data, len, s->secret);
        ad_errf(err, errlen, "malformed JSON (%s): %s",
                je == json_tokener_continue ? "truncated" : json_tokener_error_desc(je), q);
        return AD_EINVAL;
    }
    size_t end = json_tokener_get_parse_end(s->tok);
    while (end < len && is_space(data[end]))
        end++;
    if (end != len) {
        json_object_put(o);
        char q[61];
        ad_redact_cut(q, sizeof q, data, len, s->secret);
        ad_errf(err, errlen, "malformed JSON (trailing data): %s", q);
        return AD_EINVAL;
    }
    *out = o;
    return 0;
}

int ad_stream_chunk(ad_stream *s, const char *data, size_t len, char *err, size_t errlen)
{
    while (len > 0 && is_space(*data)) {
        data++;
        len--;
    }
    while (len > 0 && is_space(data[len - 1]))
        len--;
    if (len == 0) /* an empty data line: a keep-alive, not a chunk */
        return 0;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->r.done = true;
        return 0;
    }
    json_object *root;
    int rc = parse(s, data, len, &root, err, errlen);
    if (rc != 0)
        return rc;
    rc = fold(s, root, false, err, errlen);
    json_object_put(root);
    return rc;
}

int ad_stream_message(ad_stream *s, const char *data, size_t len, char *err, size_t errlen)
{
    while (len > 0 && is_space(*data)) {
        data++;
        len--;
    }
    if (len == 0) {
        ad_errf(err, errlen, "empty response body");
        return AD_EINVAL;
    }
    json_object *root;
    int rc = parse(s, data, len, &root, err, errlen);
    if (rc != 0)
        return rc;
    rc = fold(s, root, true, err, errlen);
    json_object_put(root);
    if (rc == 0)
        s->r.done = true;
    return rc;
}

int ad_stream_end(ad_stream *s, char *err, size_t errlen)
{
    ad_response *r = &s->r;
    rd_sync(s);
    for (size_t i = 0; i < r->ncalls; i++) {
        if (r->calls[i].args.len == 0 && ad_buf_append(&r->calls[i].args, "{}", 2) != AD_OK)
            return oom(err, errlen);
    }
    /* An explicit end ([DONE], or a whole body) after content is a
     * complete response even without a finish reason; the caller warns. */
    if (r->finish_reason == NULL && !(r->done && (r->text.len > 0 || r->ncalls > 0))) {
        ad_errf(err, errlen, "stream ended without a finish reason");
        return AD_ERR;
    }
    return 0;
}

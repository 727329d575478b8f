/*
 * conv.c -- the conversation (see conv.h).
 *
 * Data flow: messages come in through ad_conv_append() (and the helpers
 * that build them), each reported to the observer; ad_conv_request() turns
 * the conversation into the next request. The history is serialised
 * incrementally: messages never change once appended, so each is turned
 * into JSON text once and kept in `history` ("[m1,m2,..." without the
 * closing bracket); every request splices that text in through a json-c
 * serializer hook on a stand-in for the messages array. A step then costs
 * the new messages plus one copy of the text, not a walk over the whole
 * history. That copy is the body itself, in the print buffer of the request
 * object (request.h), which the transport sends without another copy; so at
 * its peak a step holds the conversation twice: this text and the body.
 *
 * The text is the conversation: a message appended is serialised into it
 * at once and then dropped, so a conversation costs its JSON text, not a
 * json-c tree (an object is some 700 bytes before its members). The tree
 * exists only once somebody asks for it (ad_conv_messages(): parsed from
 * the text, then kept and appended to); a history loaded with
 * ad_conv_replace() becomes text too.
 *
 * Invariants: history holds exactly the first `cached` messages,
 * serialised. Without a tree those are all the messages; with one, the
 * tree holds all of them and the text catches up on the next request (a
 * caller may append to the tree directly). A shorter tree or
 * ad_conv_replace() starts the text over. last_user says whether the last
 * message appended through ad_conv_append() was a user message.
 */
#include "core/conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/json.h"
#include "core/request.h"

struct ad_conv {
    json_object *messages; /* owned array, or NULL (see the invariants) */
    ad_buf history;        /* "[m1,m2,...": the first `cached` messages as JSON */
    size_t cached;
    bool last_user;
    ad_conv_append_fn observer;
    void *observer_ud;
    uint64_t id_counter;
    char id_prefix[24];
};

static void fill_random_prefix(char *out, size_t n)
{
    unsigned char rnd[8] = {0};
    uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL); /* synchronous */
    /* Ids must differ between runs even if the system has no entropy. */
    uint64_t mix = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] ^= (unsigned char)(mix >> (8 * i));
    snprintf(out, n, "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}

ad_conv *ad_conv_new(void)
{
    ad_conv *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (ad_buf_putc(&c->history, '[') != AD_OK) {
        free(c);
        return NULL;
    }
    fill_random_prefix(c->id_prefix, sizeof c->id_prefix);
    return c;
}

void ad_conv_free(ad_conv *c)
{
    if (!c)
        return;
    json_object_put(c->messages);
    ad_buf_free(&c->history);
    free(c);
}

void ad_conv_set_observer(ad_conv *c, ad_conv_append_fn fn, void *ud)
{
    c->observer = fn;
    c->observer_ud = ud;
}

json_object *ad_conv_messages(ad_conv *c)
{
    if (c->messages)
        return c->messages;
    /* The text is well-formed JSON: this program wrote it. */
    if (ad_buf_putc(&c->history, ']') != AD_OK)
        return NULL;
    json_object *arr = json_tokener_parse(c->history.data);
    c->history.data[--c->history.len] = '\0';
    if (!json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return NULL;
    }
    c->messages = arr;
    return arr;
}


static json_object *shallow_twin(json_object *o);

/* m's text at the end of b, after a comma unless first; b is unchanged on
 * failure. shared: m lives on after this. */
static int put_message(ad_buf *b, json_object *m, bool first, bool shared)
{
    /* json-c keeps the text of an object it serialised inside that object,
     * for as long as it lives: for a message that stays, one more copy of
     * the conversation. A shallow twin that shares the message's members
     * is serialised instead and takes that text with it. */
    json_object *twin = shared ? shallow_twin(m) : NULL;
    size_t len = 0, at = b->len;
    const char *s = json_object_to_json_string_length(twin ? twin : m, AD_REQUEST_JSON_FLAGS, &len);
    int rc = !s || (!first && ad_buf_putc(b, ',') != AD_OK) || ad_buf_append(b, s, len) != AD_OK
                 ? AD_ENOMEM
                 : AD_OK;
    json_object_put(twin);
    if (rc != AD_OK && b->data) {
        b->len = at;
        b->data[at] = '\0';
    }
    return rc;
}

int ad_conv_replace(ad_conv *c, json_object *messages)
{
    if (!json_object_is_type(messages, json_type_array))
        return AD_EINVAL;
    /* The text is the copy: nothing of the caller's is kept. */
    ad_buf text = AD_BUF_INIT;
    size_t n = json_object_array_length(messages);
    int rc = ad_buf_putc(&text, '[');
    for (size_t i = 0; rc == AD_OK && i < n; i++)
        rc = put_message(&text, json_object_array_get_idx(messages, i), i == 0, true);
    if (rc != AD_OK) {
        ad_buf_free(&text);
        return AD_ENOMEM;
    }
    json_object_put(c->messages);
    c->messages = NULL;
    ad_buf_free(&c->history);
    c->history = text;
    c->cached = n;
    const char *role = n ? ad_json_str(json_object_array_get_idx(messages, n - 1), "role") : NULL;
    c->last_user = role && strcmp(role, "user") == 0;
    return AD_OK;
}

size_t ad_conv_count(const ad_conv *c)
{
    return c->messages ? json_object_array_length(c->messages) : c->cached;
}

/* ---- appending ---------------------------------------------------------- */

/* msg's text at the end of the history (which holds every message before
 * it). */
static int append_text(ad_conv *c, json_object *msg)
{
    if (put_message(&c->history, msg, c->cached == 0, false) != AD_OK)
        return AD_ENOMEM;
    c->cached++;
    return AD_OK;
}

int ad_conv_append(ad_conv *c, json_object *msg)
{
    if (!msg)
        return AD_ENOMEM;
    int rc = c->messages ? (json_object_array_add(c->messages, msg) == 0 ? AD_OK : AD_ENOMEM)
                         : append_text(c, msg);
    if (rc != AD_OK) {
        json_object_put(msg);
        return rc;
    }
    const char *role = ad_json_str(msg, "role");
    c->last_user = role && strcmp(role, "user") == 0;
    if (c->observer)
        c->observer(c->observer_ud, msg);
    if (!c->messages)
        json_object_put(msg);
    return AD_OK;
}

int ad_conv_add_text(ad_conv *c, const char *role, const char *text, size_t len)
{
    json_object *m = json_object_new_object();
    if (!m)
        return AD_ENOMEM;
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string_len(text, (int)len));
    return ad_conv_append(c, m);
}

bool ad_conv_awaits_answer(ad_conv *c)
{
    if (!c->messages)
        return c->last_user;
    size_t n = json_object_array_length(c->messages);
    const char *role = n ? ad_json_str(json_object_array_get_idx(c->messages, n - 1), "role") : NULL;
    return role && strcmp(role, "user") == 0;
}

int ad_conv_add_prompt(ad_conv *c, const char *prompt)
{
    if (ad_conv_awaits_answer(c)) {
        static const char gap[] = "[no answer: the turn ended before the model answered]";
        int rc = ad_conv_add_text(c, "assistant", gap, sizeof gap - 1);
        if (rc != AD_OK)
            return rc;
    }
    return ad_conv_add_text(c, "user", prompt, strlen(prompt));
}

static json_object *buf_string(const ad_buf *b)
{
    return json_object_new_string_len(b->data ? b->data : "", (int)b->len);
}

int ad_conv_add_answer(ad_conv *c, const ad_response *r, const char *const *ids)
{
    json_object *m = json_object_new_object();
    if (!m)
        return AD_ENOMEM;
    json_object_object_add(m, "role", json_object_new_string("assistant"));
    json_object_object_add(m, "content", r->text.len || r->ncalls == 0 ? buf_string(&r->text) : NULL);
    /* Verbatim: some providers reject a turn without its reasoning. */
    if (r->has_reasoning)
        json_object_object_add(m, "reasoning", buf_string(&r->reasoning));
    if (r->has_reasoning_content)
        json_object_object_add(m, "reasoning_content", buf_string(&r->reasoning_content));
    if (r->reasoning_details)
        json_object_object_add(m, "reasoning_details", json_object_get(r->reasoning_details));
    if (r->ncalls) {
        json_object *calls = json_object_new_array();
        for (size_t i = 0; i < r->ncalls; i++) {
            const ad_tool_call *tc = &r->calls[i];
            json_object *call = json_object_new_object();
            json_object *fn = json_object_new_object();
            json_object_object_add(call, "id", json_object_new_string(ids[i]));
            json_object_object_add(call, "type", json_object_new_string("function"));
            json_object_object_add(fn, "name", json_object_new_string(tc->name ? tc->name : ""));
            json_object_object_add(fn, "arguments",
                                   json_object_new_string_len(tc->args.data ? tc->args.data : "{}",
                                                              tc->args.data ? (int)tc->args.len : 2));
            json_object_object_add(call, "function", fn);
            json_object_array_add(calls, call);
        }
        json_object_object_add(m, "tool_calls", calls);
    }
    return ad_conv_append(c, m);
}

int ad_conv_add_tool_result(ad_conv *c, const char *id, const char *content, size_t len)
{
    json_object *m = json_object_new_object();
    if (!m)
        return AD_ENOMEM;
    json_object_object_add(m, "role", json_object_new_string("tool"));
    json_object_object_add(m, "tool_call_id", json_object_new_string(id));
    json_object_object_add(m, "content", json_object_new_string_len(content ? content : "", (int)len));
    return ad_conv_append(c, m);
}

int ad_conv_add_tool_parts(ad_conv *c, size_t n, const char *const *ids,
                           const char *const *names, json_object *const *parts)
{
    size_t ncalls = 0, nparts = 0, only = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = parts[i] && json_object_is_type(parts[i], json_type_array)
                       ? json_object_array_length(parts[i])
                       : 0;
        if (k) {
            ncalls++;
            nparts += k;
            only = i;
        }
    }
    if (nparts == 0)
        return AD_OK;
    /* The tool messages say "[image: ...]": the text ties these to them. */
    ad_buf b = AD_BUF_INIT;
    if (ncalls == 1) {
        size_t k = json_object_array_length(parts[only]);
        if (k == 1)
            ad_buf_puts(&b, "The image");
        else
            ad_buf_printf(&b, "The %zu images", k);
        ad_buf_printf(&b, " returned by tool call %s (%s).", ids[only], names[only]);
    } else {
        ad_buf_puts(&b, "The images returned by tool calls");
        const char *sep = " ";
        for (size_t i = 0; i < n; i++) {
            size_t k = parts[i] && json_object_is_type(parts[i], json_type_array)
                           ? json_object_array_length(parts[i])
                           : 0;
            if (!k)
                continue;
            ad_buf_printf(&b, "%s%s (%s: %zu)", sep, ids[i], names[i], k);
            sep = ", ";
        }
        ad_buf_puts(&b, ", in that order.");
    }
    json_object *m = json_object_new_object(), *content = json_object_new_array();
    json_object *text = json_object_new_object();
    if (!b.data || !m || !content || !text) {
        ad_buf_free(&b);
        json_object_put(m);
        json_object_put(content);
        json_object_put(text);
        return AD_ENOMEM;
    }
    json_object_object_add(text, "type", json_object_new_string("text"));
    json_object_object_add(text, "text", json_object_new_string_len(b.data, (int)b.len));
    ad_buf_free(&b);
    json_object_array_add(content, text);
    for (size_t i = 0; i < n; i++) {
        size_t k = parts[i] && json_object_is_type(parts[i], json_type_array)
                       ? json_object_array_length(parts[i])
                       : 0;
        for (size_t j = 0; j < k; j++)
            json_object_array_add(content, json_object_get(json_object_array_get_idx(parts[i], j)));
    }
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object_object_add(m, "content", content);
    return ad_conv_append(c, m);
}

int ad_conv_add_cut_answer(ad_conv *c, const char *text, size_t len)
{
    ad_buf b = AD_BUF_INIT;
    if (text && len) {
        ad_buf_append(&b, text, len);
        if (text[len - 1] != '\n')
            ad_buf_putc(&b, '\n');
        ad_buf_puts(&b, "[answer cut short: cancelled by the user]");
    } else if (ad_conv_awaits_answer(c)) {
        /* Strict chat templates reject two user turns in a row. */
        ad_buf_puts(&b, "[no answer: cancelled by the user]");
    } else {
        return AD_OK;
    }
    int rc = b.data ? ad_conv_add_text(c, "assistant", b.data, b.len) : AD_ENOMEM;
    ad_buf_free(&b);
    return rc;
}

/* ---- tool-call ids ------------------------------------------------------ */

char *ad_conv_call_id(ad_conv *c, const ad_response *r, size_t i, bool unique)
{
    const char *id = r->calls[i].id;
    bool repeated = false;
    for (size_t j = 0; id && j < i && !repeated; j++)
        repeated = r->calls[j].id && strcmp(r->calls[j].id, id) == 0;
    if (!unique && id && id[0] && !repeated)
        return ad_strdup(id);
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "call_%s_%llu", c->id_prefix, (unsigned long long)++c->id_counter);
    return b.data ? ad_buf_steal(&b) : NULL;
}

const char *ad_conv_id_prefix(const ad_conv *c)
{
    return c->id_prefix;
}

int ad_conv_set_id_prefix(ad_conv *c, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 0 || n >= sizeof c->id_prefix ||
        prefix[strspn(prefix, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")])
        return AD_EINVAL;
    memcpy(c->id_prefix, prefix, n + 1);
    c->id_counter = 0;
    return AD_OK;
}

/* ---- the request -------------------------------------------------------- */

static int write_history(json_object *proxy, struct printbuf *pb, int level, int flags)
{
    (void)level;
    (void)flags;
    ad_conv *c = json_object_get_userdata(proxy);
    /* A long history gets room for itself and what follows it (tools,
     * options) in one allocation: json-c doubles the buffer when the next
     * bytes do not fit, and a realloc that cannot grow in place copies the
     * whole body, holding it twice. (printbuf_memset is json-c's only way
     * to reserve; it zero-fills, and the history then overwrites it.) */
    int at = pb->bpos, room = (int)c->history.len + 1 + (64 << 10);
    if (c->history.len >= (1u << 20) && pb->size - at < room &&
        printbuf_memset(pb, at + room - 1, 0, 1) == 0)
        pb->bpos = at;
    printbuf_memappend(pb, c->history.data, (int)c->history.len);
    printbuf_memappend(pb, "]", 1);
    return 0;
}

/* A new object with o's members (shared, not copied) in o's order, so it
 * serialises exactly like o; NULL when o is not an object (or on ENOMEM). */
static json_object *shallow_twin(json_object *o)
{
    if (!json_object_is_type(o, json_type_object))
        return NULL;
    json_object *t = json_object_new_object();
    if (!t)
        return NULL;
    json_object_object_foreach(o, k, v)
    {
        /* The key stays valid: o outlives t. */
        if (json_object_object_add_ex(t, k, json_object_get(v),
                                      JSON_C_OBJECT_ADD_KEY_IS_NEW |
                                          JSON_C_OBJECT_KEY_IS_CONSTANT) != 0) {
            json_object_put(v);
            json_object_put(t);
            return NULL;
        }
    }
    return t;
}

static int update_history(ad_conv *c)
{
    if (!c->messages)
        return AD_OK; /* the text is all of it */
    size_t n = json_object_array_length(c->messages);
    if (n < c->cached || !c->history.data) {
        ad_buf_reset(&c->history);
        c->cached = 0;
        if (ad_buf_putc(&c->history, '[') != AD_OK)
            return AD_ENOMEM;
    }
    for (size_t i = c->cached; i < n; i++) {
        int rc = put_message(&c->history, json_object_array_get_idx(c->messages, i), i == 0, true);
        if (rc != AD_OK)
            return rc;
        c->cached = i + 1;
    }
    return AD_OK;
}

json_object *ad_conv_request(ad_conv *c, const ad_config *cfg, const char *model,
                             json_object *tools)
{
    if (update_history(c) != AD_OK)
        return NULL;
    json_object *proxy = json_object_new_array();
    if (!proxy)
        return NULL;
    json_object_set_serializer(proxy, write_history, c, NULL);
    json_object *req = ad_request_new(cfg, model, proxy, tools);
    json_object_put(proxy);
    return req;
}

char *ad_conv_request_body(ad_conv *c, const ad_config *cfg, const char *model,
                           json_object *tools, size_t *len)
{
    json_object *req = ad_conv_request(c, cfg, model, tools);
    const char *s = req ? json_object_to_json_string_length(req, AD_REQUEST_JSON_FLAGS, len) : NULL;
    char *body = s ? ad_strndup(s, *len) : NULL;
    json_object_put(req);
    return body;
}

/* ---- usage -------------------------------------------------------------- */

static void add_counter(json_object *reported, const char *key, int64_t *sum, bool *has)
{
    json_object *v;
    if (!json_object_object_get_ex(reported, key, &v) || !v)
        return;
    *sum += json_object_get_int64(v);
    *has = true;
}

void ad_usage_add(ad_usage *u, json_object *reported)
{
    if (!ad_json_is(reported, json_type_object))
        return;
    add_counter(reported, "prompt_tokens", &u->prompt_tokens, &u->has_prompt);
    add_counter(reported, "completion_tokens", &u->completion_tokens, &u->has_completion);
    add_counter(reported, "total_tokens", &u->total_tokens, &u->has_total);
    json_object *cost = ad_json_get(reported, "cost");
    if (ad_json_is(cost, json_type_double) || ad_json_is(cost, json_type_int)) {
        u->cost += json_object_get_double(cost);
        u->has_cost = true;
    }
}

bool ad_usage_any(const ad_usage *u)
{
    return u->has_prompt || u->has_completion || u->has_total || u->has_cost;
}

json_object *ad_usage_json(const ad_usage *u)
{
    if (!ad_usage_any(u))
        return NULL;
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    if (u->has_prompt)
        json_object_object_add(o, "prompt_tokens", json_object_new_int64(u->prompt_tokens));
    if (u->has_completion)
        json_object_object_add(o, "completion_tokens", json_object_new_int64(u->completion_tokens));
    if (u->has_total)
        json_object_object_add(o, "total_tokens", json_object_new_int64(u->total_tokens));
    if (u->has_cost) {
        /* Summing binary fractions leaves noise in the 17th digit
         * (0.00046496000000000005); twelve digits are exact for money. */
        char text[32];
        snprintf(text, sizeof text, "%.12g", u->cost);
        json_object_object_add(o, "cost", json_object_new_double_s(u->cost, text));
    }
    return o;
}

json_object *ad_usage_of_response(json_object *reported)
{
    if (!ad_json_is(reported, json_type_object))
        return NULL;
    json_object *o = json_object_new_object();
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "total_tokens", "cost"};
    for (size_t i = 0; o && i < 4; i++) {
        json_object *v = ad_json_get(reported, keys[i]);
        if (v)
            json_object_object_add(o, keys[i], json_object_get(v));
    }
    if (o && json_object_object_length(o) == 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* ---- the rules ---------------------------------------------------------- */

static json_object *tool_calls_of(json_object *msg)
{
    const char *role = ad_json_str(msg, "role");
    json_object *v = ad_json_get(msg, "tool_calls");
    if (!role || strcmp(role, "assistant") != 0 || !ad_json_is(v, json_type_array))
        return NULL;
    return v;
}

json_object *ad_conv_repair(json_object *messages, size_t *added, size_t *dropped)
{
    size_t nadd = 0, ndrop = 0;
    json_object *out = json_object_new_array();
    if (!out)
        return NULL;
    size_t n = json_object_is_type(messages, json_type_array) ? json_object_array_length(messages) : 0;
    size_t i = 0;
    while (i < n) {
        json_object *m = json_object_array_get_idx(messages, i++);
        const char *role = ad_json_str(m, "role");
        if (role && strcmp(role, "tool") == 0) {
            ndrop++; /* answers no call of the message before it */
            continue;
        }
        json_object_array_add(out, json_object_get(m));
        json_object *calls = tool_calls_of(m);
        size_t ncalls = calls ? json_object_array_length(calls) : 0;
        if (ncalls == 0)
            continue;
        /* The results: the tool messages right after the call. */
        size_t first = i;
        while (i < n) {
            const char *r = ad_json_str(json_object_array_get_idx(messages, i), "role");
            if (!r || strcmp(r, "tool") != 0)
                break;
            i++;
        }
        size_t nres = i - first;
        bool *used = calloc(nres ? nres : 1, sizeof *used);
        if (!used) {
            json_object_put(out);
            return NULL;
        }
        for (size_t k = 0; k < ncalls; k++) {
            const char *id = ad_json_str(json_object_array_get_idx(calls, k), "id");
            if (!id)
                id = "";
            json_object *res = NULL;
            for (size_t j = 0; j < nres && !res; j++) {
                json_object *t = json_object_array_get_idx(messages, first + j);
                const char *tid = ad_json_str(t, "tool_call_id");
                if (!used[j] && tid && strcmp(tid, id) == 0) {
                    used[j] = true;
                    res = json_object_get(t);
                }
            }
            if (!res) {
                res = json_object_new_object();
                json_object_object_add(res, "role", json_object_new_string("tool"));
                json_object_object_add(res, "tool_call_id", json_object_new_string(id));
                json_object_object_add(res, "content", json_object_new_string("interrupted"));
                nadd++;
            }
            json_object_array_add(out, res);
        }
        for (size_t j = 0; j < nres; j++)
            ndrop += !used[j];
        free(used);
    }
    if (added)
        *added = nadd;
    if (dropped)
        *dropped = ndrop;
    return out;
}

int ad_conv_check(json_object *msgs, char *err, size_t errlen)
{
    if (!msgs || !json_object_is_type(msgs, json_type_array)) {
        ad_errf(err, errlen, "\"messages\" is not an array");
        return AD_EINVAL;
    }
    size_t n = json_object_array_length(msgs);
    /* Call ids awaiting their tool message: those of the last assistant
     * message with tool calls. */
    json_object *open = NULL;
    int rc = AD_OK;
    for (size_t i = 0; i < n && rc == AD_OK; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        if (!m || !json_object_is_type(m, json_type_object)) {
            ad_errf(err, errlen, "message %zu is not an object", i + 1);
            rc = AD_EINVAL;
            break;
        }
        const char *role = ad_json_str(m, "role");
        json_object *content = NULL;
        bool has_content = json_object_object_get_ex(m, "content", &content);
        bool content_str = has_content && json_object_is_type(content, json_type_string);
        bool content_ok = content_str || (has_content && !content) ||
                          (has_content && json_object_is_type(content, json_type_array));
        if (!role) {
            ad_errf(err, errlen, "message %zu has no \"role\" string", i + 1);
            rc = AD_EINVAL;
        } else if (strcmp(role, "tool") == 0) {
            const char *id = ad_json_str(m, "tool_call_id");
            json_object *want = NULL;
            if (!id) {
                ad_errf(err, errlen, "message %zu (tool) has no \"tool_call_id\"", i + 1);
                rc = AD_EINVAL;
            } else if (!open || !json_object_object_get_ex(open, id, &want)) {
                ad_errf(err, errlen, "message %zu answers tool call \"%.80s\", which is not open",
                        i + 1, id);
                rc = AD_EINVAL;
            } else if (!content_str) {
                ad_errf(err, errlen, "message %zu (tool) has no \"content\" string", i + 1);
                rc = AD_EINVAL;
            } else {
                json_object_object_del(open, id);
            }
            continue;
        } else if (open && json_object_object_length(open) > 0) {
            json_object_object_foreach(open, k, v)
            {
                (void)v;
                ad_errf(err, errlen, "tool call \"%.80s\" has no tool message before message %zu",
                        k, i + 1);
                break;
            }
            rc = AD_EINVAL;
        } else if (strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
                   strcmp(role, "developer") == 0) {
            if (!content_ok || !has_content || !content) {
                ad_errf(err, errlen, "message %zu (%s) has no \"content\"", i + 1, role);
                rc = AD_EINVAL;
            }
        } else if (strcmp(role, "assistant") == 0) {
            json_object *calls;
            if (has_content && !content_ok) {
                ad_errf(err, errlen, "message %zu (assistant) has a \"content\" of the wrong type",
                        i + 1);
                rc = AD_EINVAL;
                break;
            }
            if (!json_object_object_get_ex(m, "tool_calls", &calls) || !calls)
                continue;
            if (!json_object_is_type(calls, json_type_array)) {
                ad_errf(err, errlen, "message %zu: \"tool_calls\" is not an array", i + 1);
                rc = AD_EINVAL;
                break;
            }
            json_object_put(open);
            open = json_object_new_object();
            for (size_t k = 0; k < json_object_array_length(calls); k++) {
                json_object *call = json_object_array_get_idx(calls, k), *fn;
                const char *id = call ? ad_json_str(call, "id") : NULL;
                if (!id || !json_object_object_get_ex(call, "function", &fn) || !fn ||
                    !ad_json_str(fn, "name") || !ad_json_str(fn, "arguments")) {
                    ad_errf(err, errlen,
                            "message %zu: tool call %zu needs \"id\" and \"function\" with "
                            "\"name\" and \"arguments\" strings",
                            i + 1, k + 1);
                    rc = AD_EINVAL;
                    break;
                }
                if (json_object_object_get_ex(open, id, NULL)) {
                    ad_errf(err, errlen, "message %zu: tool call id \"%.80s\" is repeated", i + 1,
                            id);
                    rc = AD_EINVAL;
                    break;
                }
                json_object_object_add(open, id, NULL);
            }
        } else {
            ad_errf(err, errlen, "message %zu has an unknown role \"%.40s\"", i + 1, role);
            rc = AD_EINVAL;
        }
    }
    if (rc == AD_OK && open && json_object_object_length(open) > 0) {
        json_object_object_foreach(open, k, v)
        {
            (void)v;
            ad_errf(err, errlen, "tool call \"%.80s\" has no tool message", k);
            break;
        }
        rc = AD_EINVAL;
    }
    json_object_put(open);
    return rc;
}

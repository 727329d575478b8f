/*
 * replay.c -- the replay transport (see replay.h).
 *
 * Data flow: start() compares the request with the next recorded one
 * (ad_replay_next: the matcher, the larger half of this file) and queues
 * the exchange, with the interaction to play or the reason it cannot.
 * One uv_idle handle feeds the oldest unpaused exchange one piece of its
 * response per loop iteration (its header lines first), then ends it. The
 * idle runs only while exchanges are waiting, so an idle replay costs the
 * loop nothing. The response bytes are the cassette's own: nothing is
 * copied.
 *
 * The matcher's state is the cursor (the next interaction) and, for
 * generated tool-call ids, the pairs of recorded and sent ids seen so far
 * (a consistent renaming matches, another does not).
 *
 * Invariants: callbacks run from the idle handle only, never from start();
 * an exchange is freed after its on_done returns or when cancelled; the
 * transport is freed from the idle handle's close callback.
 */
#include "provider/replay.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/buf.h"
#include "base/text.h"

#define MAX_PIECE 4096
#define MAX_DIFF_LINES 5

typedef struct id_pair {
    char *rec;
    char *sent;
} id_pair;

typedef struct replay_x replay_x;

typedef struct ad_replay {
    ad_transport base;
    uv_loop_t *loop;
    const ad_cassette *cassette;
    uv_idle_t idle;   /* feeds the responses */
    uint32_t rng;     /* piece sizes */
    char *error;      /* owned: the first failure */
    LIST_HEAD(, replay_x) xs; /* live exchanges, oldest last */
    bool closing;
    /* the matcher */
    size_t cursor;
    int id_mode;
    id_pair *ids;
    size_t nids, capids;
} ad_replay;

struct replay_x {
    ad_exchange base;
    ad_replay *r;
    ad_xfer_cb cb;
    void *ud;
    const ad_interaction *it; /* NULL: fail with fail_msg */
    char *fail_msg;           /* owned */
    const char *content_type; /* the recorded one, in it */
    bool paused;
    bool aborted;
    size_t header;  /* header lines delivered: the status line, the
                     * recorded headers, the empty line */
    size_t off; /* body bytes delivered */
    LIST_ENTRY(replay_x) link;
};

static bool same_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

/* ---- the matcher ---------------------------------------------------------- */


typedef struct differ {
    ad_buf out;
    int lines;
    int more;
} differ;

/* A value for a diff line: compact JSON, cut at 160 bytes. */
static void render(ad_buf *b, json_object *v, bool present)
{
    if (!present) {
        ad_buf_puts(b, "(absent)");
        return;
    }
    const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(s);
    if (len > 160) {
        ad_buf_append(b, s, ad_utf8_cut(s, len, 150));
        ad_buf_printf(b, "... (%zu bytes)", len);
    } else {
        ad_buf_append(b, s, len);
    }
}

static void diff_add(differ *d, const char *field, json_object *rec, bool rec_present,
                     json_object *sent, bool sent_present)
{
    if (d->lines >= MAX_DIFF_LINES) {
        d->more++;
        return;
    }
    d->lines++;
    ad_buf_printf(&d->out, "\n  %s: recorded ", field);
    render(&d->out, rec, rec_present);
    ad_buf_puts(&d->out, ", sent ");
    render(&d->out, sent, sent_present);
}

static void diff_text(differ *d, const char *field, const char *rec, const char *sent)
{
    json_object *a = json_object_new_string(rec), *b = json_object_new_string(sent);
    diff_add(d, field, a, true, b, true);
    json_object_put(a);
    json_object_put(b);
}

static json_object *get(json_object *o, const char *key, bool *present)
{
    json_object *v = NULL;
    bool p = o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v);
    if (present)
        *present = p;
    return p ? v : NULL;
}

static void cmp_json_field(differ *d, const char *field, json_object *rec, json_object *sent,
                           const char *key)
{
    bool rp, sp;
    json_object *a = get(rec, key, &rp), *b = get(sent, key, &sp);
    if (rp != sp || !json_object_equal(a, b))
        diff_add(d, field, a, rp, b, sp);
}

/* Text of a message content: a string, or the text parts of a list joined;
 * null and absent are "". *other is set when non-text parts are present. */
static void content_text(json_object *c, ad_buf *out, bool *other)
{
    *other = false;
    if (!c)
        return;
    if (json_object_is_type(c, json_type_string)) {
        ad_buf_append(out, json_object_get_string(c), (size_t)json_object_get_string_len(c));
        return;
    }
    if (json_object_is_type(c, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(c); i++) {
            json_object *p = json_object_array_get_idx(c, i), *t;
            bool has_type;
            json_object *type = get(p, "type", &has_type);
            bool text = !has_type || (type && json_object_is_type(type, json_type_string) &&
                                      strcmp(json_object_get_string(type), "text") == 0);
            if (text && (t = get(p, "text", NULL)) && json_object_is_type(t, json_type_string))
                ad_buf_append(out, json_object_get_string(t), (size_t)json_object_get_string_len(t));
            else
                *other = true;
        }
        return;
    }
    *other = true;
}

static void trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)(*s)[0]))
        (*s)++, (*len)--;
    while (*len && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

static void cmp_content(differ *d, const char *field, json_object *rec, json_object *sent,
                        bool trimmed)
{
    bool rp, sp, ro, so;
    json_object *a = get(rec, "content", &rp), *b = get(sent, "content", &sp);
    ad_buf at = AD_BUF_INIT, bt = AD_BUF_INIT;
    content_text(a, &at, &ro);
    content_text(b, &bt, &so);
    if (ro || so) {
        if (!json_object_equal(a, b))
            diff_add(d, field, a, rp, b, sp);
    } else {
        const char *x = at.data ? at.data : "", *y = bt.data ? bt.data : "";
        size_t xl = at.len, yl = bt.len;
        if (trimmed) {
            trim(&x, &xl);
            trim(&y, &yl);
        }
        if (!same_bytes(x, xl, y, yl))
            diff_add(d, field, a, rp, b, sp);
    }
    ad_buf_free(&at);
    ad_buf_free(&bt);
}

static const char *str_of(json_object *o)
{
    return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

/* Checks a tool-call id (or tool_call_id) against the recording. */
static int cmp_id(ad_replay *c, differ *d, const char *field, json_object *rec, json_object *sent)
{
    const char *r = str_of(rec), *s = str_of(sent);
    if (c->id_mode == AD_REPLAY_IDS_EXACT || !r || !s) {
        if (!json_object_equal(rec, sent))
            diff_add(d, field, rec, rec != NULL, sent, sent != NULL);
        return AD_OK;
    }
    for (size_t i = 0; i < c->nids; i++) {
        bool rm = strcmp(c->ids[i].rec, r) == 0, sm = strcmp(c->ids[i].sent, s) == 0;
        if (rm && sm)
            return AD_OK;
        if (rm || sm) {
            ad_buf f = AD_BUF_INIT;
            ad_buf_printf(&f, "%s (generated ids map one-to-one to the recorded ones; recorded %s "
                              "went with sent %s)",
                          field, c->ids[i].rec, c->ids[i].sent);
            diff_add(d, f.data ? f.data : field, rec, true, sent, true);
            ad_buf_free(&f);
            return AD_OK;
        }
    }
    if (c->nids == c->capids) {
        size_t nc = c->capids ? c->capids * 2 : 16;
        id_pair *p = realloc(c->ids, nc * sizeof *p);
        if (!p)
            return AD_ENOMEM;
        c->ids = p;
        c->capids = nc;
    }
    c->ids[c->nids].rec = ad_strdup(r);
    c->ids[c->nids].sent = ad_strdup(s);
    if (!c->ids[c->nids].rec || !c->ids[c->nids].sent) {
        free(c->ids[c->nids].rec);
        free(c->ids[c->nids].sent);
        return AD_ENOMEM;
    }
    c->nids++;
    return AD_OK;
}

static size_t arr_len(json_object *a)
{
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static void cmp_arguments(differ *d, const char *field, json_object *rec, json_object *sent)
{
    const char *r = str_of(rec), *s = str_of(sent);
    if (r && s) {
        json_object *a = json_tokener_parse(r), *b = json_tokener_parse(s);
        /* Both JSON: equal as JSON; otherwise the text must match. */
        bool eq = a && b ? json_object_equal(a, b) : strcmp(r, s) == 0;
        json_object_put(a);
        json_object_put(b);
        if (!eq)
            diff_add(d, field, rec, true, sent, true);
        return;
    }
    if (!json_object_equal(rec, sent))
        diff_add(d, field, rec, rec != NULL, sent, sent != NULL);
}

static int cmp_tool_calls(ad_replay *c, differ *d, size_t mi, json_object *rm, json_object *sm)
{
    json_object *rc = get(rm, "tool_calls", NULL), *sc = get(sm, "tool_calls", NULL);
    size_t rn = arr_len(rc), sn = arr_len(sc);
    char field[96];
    if (rn != sn) {
        snprintf(field, sizeof field, "messages[%zu].tool_calls (count)", mi);
        json_object *a = json_object_new_int64((int64_t)rn), *b = json_object_new_int64((int64_t)sn);
        diff_add(d, field, a, true, b, true);
        json_object_put(a);
        json_object_put(b);
        return AD_OK;
    }
    for (size_t j = 0; j < rn; j++) {
        json_object *r = json_object_array_get_idx(rc, j), *s = json_object_array_get_idx(sc, j);
        json_object *rf = get(r, "function", NULL), *sf = get(s, "function", NULL);
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].function.name", mi, j);
        cmp_json_field(d, field, rf, sf, "name");
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].function.arguments", mi, j);
        cmp_arguments(d, field, get(rf, "arguments", NULL), get(sf, "arguments", NULL));
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].id", mi, j);
        if (cmp_id(c, d, field, get(r, "id", NULL), get(s, "id", NULL)) != AD_OK)
            return AD_ENOMEM;
    }
    return AD_OK;
}

static int cmp_messages(ad_replay *c, differ *d, json_object *rec, json_object *sent)
{
    json_object *rms = get(rec, "messages", NULL), *sms = get(sent, "messages", NULL);
    size_t rn = arr_len(rms), sn = arr_len(sms);
    char field[96];
    if (rn != sn) {
        json_object *a = json_object_new_int64((int64_t)rn), *b = json_object_new_int64((int64_t)sn);
        diff_add(d, "messages (count)", a, true, b, true);
        json_object_put(a);
        json_object_put(b);
    }
    size_t n = rn < sn ? rn : sn;
    for (size_t i = 0; i < n; i++) {
        json_object *rm = json_object_array_get_idx(rms, i), *sm = json_object_array_get_idx(sms, i);
        const char *rr = str_of(get(rm, "role", NULL)), *sr = str_of(get(sm, "role", NULL));
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!rr || !sr || strcmp(rr, sr) != 0) {
            cmp_json_field(d, field, rm, sm, "role");
            continue;
        }
        snprintf(field, sizeof field, "messages[%zu].content", i);
        if (strcmp(rr, "assistant") == 0) {
            cmp_content(d, field, rm, sm, true);
            if (cmp_tool_calls(c, d, i, rm, sm) != AD_OK)
                return AD_ENOMEM;
        } else if (strcmp(rr, "tool") == 0) {
            cmp_content(d, field, rm, sm, false);
            snprintf(field, sizeof field, "messages[%zu].tool_call_id", i);
            if (cmp_id(c, d, field, get(rm, "tool_call_id", NULL), get(sm, "tool_call_id", NULL)) !=
                AD_OK)
                return AD_ENOMEM;
        } else {
            cmp_content(d, field, rm, sm, false);
        }
    }
    return AD_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The offered tool names, sorted, as a JSON array (for the diff). */
static json_object *tool_names(json_object *body)
{
    json_object *tools = get(body, "tools", NULL);
    size_t n = arr_len(tools);
    const char **names = calloc(n + 1, sizeof *names);
    json_object *out = json_object_new_array();
    if (!names || !out) {
        free(names);
        json_object_put(out);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        const char *nm = str_of(get(get(t, "function", NULL), "name", NULL));
        if (!nm)
            nm = str_of(get(t, "name", NULL));
        names[k++] = nm ? nm : "";
    }
    qsort(names, k, sizeof *names, name_cmp);
    for (size_t i = 0; i < k; i++)
        json_object_array_add(out, json_object_new_string(names[i]));
    free(names);
    return out;
}

static bool truthy(json_object *o)
{
    return o && json_object_get_boolean(o);
}

int ad_replay_next(ad_transport *t, const char *body, size_t len, const ad_interaction **out,
                   char *diff, size_t difflen)
{
    ad_replay *c = (ad_replay *)t;
    *out = NULL;
    size_t n = ad_cassette_count(c->cassette);
    if (c->cursor >= n) {
        ad_errf(diff, difflen,
                "replay: request %zu was not recorded (the cassette holds %zu interaction%s)",
                c->cursor + 1, n, n == 1 ? "" : "s");
        return AD_ERR;
    }
    const ad_interaction *it = ad_cassette_get(c->cassette, c->cursor);
    differ d = {AD_BUF_INIT, 0, 0};
    json_object *rec = json_tokener_parse(it->req_body);
    json_object *sent = NULL;
    if (len < INT32_MAX) {
        json_tokener *tok = json_tokener_new();
        if (tok) {
            sent = json_tokener_parse_ex(tok, body, (int)len);
            if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(sent);
                sent = NULL;
            }
            json_tokener_free(tok);
        }
    }
    int rc = AD_OK;
    if (!rec || !sent) {
        /* Not JSON on one side: only identical bytes match. */
        if (!same_bytes(it->req_body, it->req_body_len, body, len))
            diff_text(&d, "body", rec ? "(JSON)" : it->req_body, sent ? "(JSON)" : "(not JSON)");
    } else {
        cmp_json_field(&d, "model", rec, sent, "model");
        bool s1 = truthy(get(rec, "stream", NULL)), s2 = truthy(get(sent, "stream", NULL));
        if (s1 != s2) {
            json_object *a = json_object_new_boolean(s1), *b = json_object_new_boolean(s2);
            diff_add(&d, "stream", a, true, b, true);
            json_object_put(a);
            json_object_put(b);
        }
        json_object *rt = tool_names(rec), *st = tool_names(sent);
        if (!json_object_equal(rt, st))
            diff_add(&d, "tools (names)", rt, true, st, true);
        json_object_put(rt);
        json_object_put(st);
        rc = cmp_messages(c, &d, rec, sent);
    }
    json_object_put(rec);
    json_object_put(sent);
    if (rc == AD_OK && d.lines == 0 && it->resp_truncated) {
        ad_buf_free(&d.out);
        ad_errf(diff, difflen,
                "replay: the response to request %zu was cut at %u MiB when it was recorded "
                "(agentd_truncated: true in interaction %zu); a cut response cannot be "
                "replayed: record the run again with a smaller response",
                c->cursor + 1, AD_CASSETTE_MAX_BODY >> 20, c->cursor);
        return AD_ETOOBIG;
    }
    if (rc == AD_OK && d.lines == 0) {
        ad_buf_free(&d.out);
        *out = it;
        c->cursor++;
        return AD_OK;
    }
    if (rc == AD_OK) {
        if (d.more)
            ad_buf_printf(&d.out, "\n  (%d more difference%s)", d.more, d.more == 1 ? "" : "s");
        ad_errf(diff, difflen, "replay: request %zu differs from the recording:%s", c->cursor + 1,
                d.out.data ? d.out.data : "");
        rc = AD_EINVAL;
    } else {
        ad_errf(diff, difflen, "replay: out of memory comparing request %zu", c->cursor + 1);
    }
    ad_buf_free(&d.out);
    return rc;
}

/* ---- the transport -------------------------------------------------------- */

static void x_free(replay_x *x)
{
    free(x->fail_msg);
    free(x);
}

/* The oldest exchange that may go on: exchanges are answered one at a
 * time, in the order they started, as a server on one connection would. */
static replay_x *next_ready(ad_replay *r)
{
    replay_x *found = NULL;
    replay_x *x;
    LIST_FOREACH(x, &r->xs, link)
        if (!x->paused)
            found = x;
    return found;
}

static void on_tick(uv_idle_t *idle);

static void wake(ad_replay *r)
{
    if (next_ready(r))
        uv_idle_start(&r->idle, on_tick);
    else
        uv_idle_stop(&r->idle);
}

static void x_finish(replay_x *x, int code, const char *error)
{
    ad_replay *r = x->r;
    LIST_REMOVE(x, link);
    const ad_interaction *it = x->it;
    ad_xfer_result res = {
        .code = code,
        .error = error,
        .status = it ? it->code : 0,
        .content_type = x->content_type,
        .proto = it ? it->proto : NULL,
        .retry_after_s = it && (it->code < 200 || it->code > 299) ? 0 : -1,
        .bytes = x->off,
        .aborted = x->aborted,
        .fatal = it == NULL,
    };
    x->cb.on_done(x->ud, &res);
    x_free(x);
    if (!r->closing)
        wake(r);
}

/* Delivers the recorded status line and headers, as a server would send
 * them, up to the end or a pause. */
static void send_headers(replay_x *x)
{
    const ad_interaction *it = x->it;
    size_t total = it->nresp_headers + 2;
    if (!x->cb.on_header) {
        x->header = total;
        return;
    }
    ad_buf b = AD_BUF_INIT;
    while (x->header < total && !x->paused) {
        size_t i = x->header++;
        ad_buf_reset(&b);
        if (i == 0)
            ad_buf_printf(&b, "%s %s\r\n", it->proto[0] ? it->proto : "HTTP/1.1", it->status);
        else if (i <= it->nresp_headers)
            ad_buf_printf(&b, "%s: %s\r\n", it->resp_headers[i - 1].name,
                          it->resp_headers[i - 1].value);
        else
            ad_buf_puts(&b, "\r\n");
        x->cb.on_header(x->ud, b.data ? b.data : "", b.len);
    }
    ad_buf_free(&b);
}

static void on_tick(uv_idle_t *idle)
{
    ad_replay *r = idle->data;
    replay_x *x = next_ready(r);
    if (!x) {
        uv_idle_stop(idle);
        return;
    }
    if (!x->it) {
        x_finish(x, AD_ERR, x->fail_msg ? x->fail_msg : "replay failed");
        return;
    }
    if (x->header < x->it->nresp_headers + 2) {
        send_headers(x);
        if (x->paused)
            wake(r);
        return;
    }
    size_t len = x->it->resp_body_len;
    if (x->off < len) {
        r->rng = r->rng * 1103515245u + 12345u;
        size_t piece = 1 + (size_t)((r->rng >> 8) % MAX_PIECE);
        if (piece > len - x->off)
            piece = len - x->off;
        const char *data = x->it->resp_body + x->off;
        x->off += piece;
        if (x->cb.on_data(x->ud, x->it->code, x->content_type, data, piece) != AD_XFER_GO) {
            x->aborted = true;
            /* curl's words for the same event, so that messages do not
             * depend on the transport. */
            x_finish(x, AD_ESTOP, "Failed writing received data to disk/application");
            return;
        }
        if (x->paused)
            wake(r);
        return;
    }
    x_finish(x, AD_OK, NULL);
}

static ad_exchange *replay_start(ad_transport *t, const ad_xfer_req *q, const ad_xfer_cb *cb,
                                 void *ud)
{
    ad_replay *r = (ad_replay *)t;
    if (r->closing)
        return NULL;
    replay_x *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->base.transport = t;
    x->r = r;
    x->cb = *cb;
    x->ud = ud;
    char diff[4096];
    if (ad_replay_next(t, q->body, q->body_len, &x->it, diff, sizeof diff) != AD_OK) {
        x->it = NULL;
        x->fail_msg = ad_strdup(diff);
        if (!r->error)
            r->error = ad_strdup(diff);
    } else {
        x->content_type = ad_cassette_header_get(x->it->resp_headers, x->it->nresp_headers,
                                                 "Content-Type");
    }
    LIST_INSERT_HEAD(&r->xs, x, link);
    wake(r);
    return &x->base;
}

static void replay_pause(ad_exchange *e, bool paused)
{
    replay_x *x = (replay_x *)e;
    x->paused = paused;
    wake(x->r);
}

static void replay_cancel(ad_exchange *e)
{
    replay_x *x = (replay_x *)e;
    ad_replay *r = x->r;
    LIST_REMOVE(x, link);
    x_free(x);
    wake(r);
}

static void on_idle_closed(uv_handle_t *h)
{
    ad_replay *r = h->data;
    for (size_t i = 0; i < r->nids; i++) {
        free(r->ids[i].rec);
        free(r->ids[i].sent);
    }
    free(r->ids);
    free(r->error);
    free(r);
}

static void replay_close(ad_transport *t)
{
    ad_replay *r = (ad_replay *)t;
    r->closing = true;
    while (!LIST_EMPTY(&r->xs)) {
        replay_x *x = LIST_FIRST(&r->xs);
        LIST_REMOVE(x, link);
        x_free(x);
    }
    uv_idle_stop(&r->idle);
    uv_close((uv_handle_t *)&r->idle, on_idle_closed);
}

static const ad_transport_vt replay_vt = {
    .name = "replay",
    .start = replay_start,
    .pause = replay_pause,
    .cancel = replay_cancel,
    .close = replay_close,
};

ad_transport *ad_replay_new(uv_loop_t *loop, const ad_cassette *c, int id_mode)
{
    ad_replay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base.vt = &replay_vt;
    r->loop = loop;
    r->cassette = c;
    r->id_mode = id_mode;
    r->rng = 0x2545f491u;
    if (uv_idle_init(loop, &r->idle) != 0) {
        free(r);
        return NULL;
    }
    r->idle.data = r;
    return &r->base;
}

const char *ad_replay_error(ad_transport *t)
{
    return ((ad_replay *)t)->error;
}

size_t ad_replay_used(ad_transport *t)
{
    return ((ad_replay *)t)->cursor;
}

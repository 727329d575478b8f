/*
 * respond.c -- a Responses API response from a run's events (see
 * respond.h).
 *
 * The events are written by hand into one reused buffer (a text delta is
 * the hottest path of the server); the items are kept as plain records
 * and turned into JSON when an event or the object needs them.
 */
#include "serve/respond.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "core/agent.h"
#include "serve/jsonw.h"

enum { IT_MSG, IT_TOOL, IT_FN };
enum { IS_PROGRESS, IS_COMPLETED, IS_INCOMPLETE };

typedef struct item {
    int type;
    int status;
    char id[64];
    ad_buf text;    /* IT_MSG */
    char *call_id;  /* IT_TOOL, IT_FN */
    char *name;
    char *args;
    char *output;   /* IT_TOOL, when done */
    size_t output_len;
    bool is_error;
} item;

struct ad_rsp {
    char id[64];
    char *model;
    char *prev;
    char *instructions;
    double created_at;
    bool background, store;
    char **client;
    size_t nclient;
    ad_rsp_emit_fn emit;
    void *ud;

    int seq;
    const char *status; /* static */
    bool ended, final_sent;
    char *error;        /* the failure's message */
    const char *incomplete; /* reason, static */
    item *items;
    size_t nitems, cap;
    ssize_t open_msg;   /* index of the message item open, or -1 */
    const char **fn_ids; /* call ids of the function_call items */
    size_t nfn;
    int64_t in_tok, out_tok, tot_tok;
    bool has_tot;
    ad_buf ev;          /* the event being written */
};

/* ---- helpers ------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? ad_strdup(s) : NULL;
}

static const char *status_name(int s)
{
    return s == IS_PROGRESS ? "in_progress" : s == IS_COMPLETED ? "completed" : "incomplete";
}

/* These write the fixed parts of events without printf (each event is
 * built this way, several per text delta and tool call). */
static void put3(ad_buf *b, const char *a, const char *x, const char *c)
{
    ad_buf_puts(b, a);
    ad_buf_puts(b, x);
    ad_buf_puts(b, c);
}

/* ,"item_id":"ID","output_index":IDX */
static void put_item_ref(ad_buf *b, const char *id, size_t idx)
{
    put3(b, ",\"item_id\":\"", id, "\",\"output_index\":");
    ad_jw_int(b, (long long)idx);
}

static item *add_item(ad_rsp *r, int type, const char *prefix)
{
    if (r->nitems == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        item *n = realloc(r->items, cap * sizeof *n);
        if (!n)
            return NULL;
        r->items = n;
        r->cap = cap;
    }
    item *it = &r->items[r->nitems++];
    memset(it, 0, sizeof *it);
    it->type = type;
    it->status = IS_PROGRESS;
    /* Unique within the response: its id with the item's number (a
     * response id is unguessable already). */
    snprintf(it->id, sizeof it->id, "%s_%s_%zu", prefix, r->id + 5, r->nitems);
    return it;
}

static bool is_client_tool(const ad_rsp *r, const char *name)
{
    for (size_t i = 0; name && i < r->nclient; i++)
        if (strcmp(r->client[i], name) == 0)
            return true;
    return false;
}

/* The item as JSON. */
static void put_item(ad_buf *b, const item *it)
{
    switch (it->type) {
    case IT_MSG:
        put3(b, "{\"id\":\"", it->id, "\",\"type\":\"message\",\"status\":\"");
        put3(b, status_name(it->status), "\",\"role\":\"assistant\",\"content\":[", "");
        if (it->status != IS_PROGRESS) {
            ad_buf_puts(b, "{\"type\":\"output_text\",\"text\":");
            ad_jw_str(b, it->text.data ? it->text.data : "", it->text.len);
            ad_buf_puts(b, ",\"annotations\":[],\"logprobs\":[]}");
        }
        ad_buf_puts(b, "]}");
        break;
    case IT_TOOL:
        put3(b, "{\"id\":\"", it->id, "\",\"type\":\"agentd:tool_call\",\"status\":\"");
        put3(b, status_name(it->status), "\",\"call_id\":", "");
        ad_jw_cstr(b, it->call_id);
        ad_buf_puts(b, ",\"name\":");
        ad_jw_cstr(b, it->name);
        ad_buf_puts(b, ",\"arguments\":");
        ad_jw_cstr(b, it->args ? it->args : "{}");
        ad_buf_puts(b, ",\"output\":");
        if (it->output)
            ad_jw_str(b, it->output, it->output_len);
        else
            ad_buf_puts(b, "null");
        put3(b, ",\"is_error\":", it->is_error ? "true" : "false", "}");
        break;
    default:
        put3(b, "{\"id\":\"", it->id, "\",\"type\":\"function_call\",\"status\":\"");
        put3(b, status_name(it->status), "\",\"call_id\":", "");
        ad_jw_cstr(b, it->call_id);
        ad_buf_puts(b, ",\"name\":");
        ad_jw_cstr(b, it->name);
        ad_buf_puts(b, ",\"arguments\":");
        ad_jw_cstr(b, it->status == IS_PROGRESS ? "" : it->args ? it->args : "{}");
        ad_buf_puts(b, "}");
    }
}

static void put_usage(ad_buf *b, const ad_rsp *r)
{
    int64_t tot = r->has_tot ? r->tot_tok : r->in_tok + r->out_tok;
    ad_buf_puts(b, "{\"input_tokens\":");
    ad_jw_int(b, r->in_tok);
    ad_buf_puts(b, ",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
    ad_jw_int(b, r->out_tok);
    ad_buf_puts(b, ",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    ad_jw_int(b, tot);
    ad_buf_putc(b, '}');
}

/* whole: the object on its own (POST without stream, GET): agentd's tool
 * calls go in an "agentd" member, not in output (clients that check output
 * items against the known types refuse other types there). In a stream,
 * the object carries them in output, where the events put them. */
static void put_object(ad_buf *b, const ad_rsp *r, bool whole)
{
    put3(b, "{\"id\":\"", r->id, "\",\"object\":\"response\",\"created_at\":");
    ad_jw_int(b, (long long)r->created_at);
    put3(b, ",\"status\":\"", r->status, "\",\"background\":");
    put3(b, r->background ? "true" : "false", ",\"error\":", "");
    if (r->error && (strcmp(r->status, "failed") == 0 || strcmp(r->status, "cancelled") == 0)) {
        ad_buf_printf(b, "{\"code\":\"%s\",\"message\":",
                      strcmp(r->status, "cancelled") == 0 ? "cancelled" : "server_error");
        ad_jw_cstr(b, r->error);
        ad_buf_puts(b, "}");
    } else {
        ad_buf_puts(b, "null");
    }
    ad_buf_puts(b, ",\"incomplete_details\":");
    if (r->incomplete)
        ad_buf_printf(b, "{\"reason\":\"%s\"}", r->incomplete);
    else
        ad_buf_puts(b, "null");
    ad_buf_puts(b, ",\"instructions\":");
    ad_jw_cstr(b, r->instructions);
    ad_buf_puts(b, ",\"max_output_tokens\":null,\"metadata\":{},\"model\":");
    ad_jw_cstr(b, r->model);
    ad_buf_puts(b, ",\"output\":[");
    bool first = true;
    for (size_t i = 0; i < r->nitems; i++) {
        if (whole && r->items[i].type == IT_TOOL)
            continue;
        if (!first)
            ad_buf_putc(b, ',');
        first = false;
        put_item(b, &r->items[i]);
    }
    ad_buf_puts(b, "],\"parallel_tool_calls\":true,\"previous_response_id\":");
    ad_jw_cstr(b, r->prev);
    put3(b, ",\"store\":", r->store ? "true" : "false",
         ",\"temperature\":null,\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\","
         "\"tools\":[],\"top_p\":null,\"truncation\":\"disabled\",\"usage\":");
    put_usage(b, r);
    ad_buf_puts(b, ",\"user\":null");
    if (whole) {
        ad_buf_puts(b, ",\"agentd\":{\"tool_calls\":[");
        first = true;
        for (size_t i = 0; i < r->nitems; i++) {
            if (r->items[i].type != IT_TOOL)
                continue;
            if (!first)
                ad_buf_putc(b, ',');
            first = false;
            put_item(b, &r->items[i]);
        }
        ad_buf_puts(b, "]}");
    }
    ad_buf_putc(b, '}');
}

/* ---- events ------------------------------------------------------------- */

static ad_buf *ev_begin(ad_rsp *r, const char *type)
{
    ad_buf_reset(&r->ev);
    ad_buf_puts(&r->ev, "{\"type\":\"");
    ad_buf_puts(&r->ev, type);
    ad_buf_puts(&r->ev, "\",\"sequence_number\":");
    ad_jw_int(&r->ev, r->seq);
    return &r->ev;
}

static void ev_send(ad_rsp *r, const char *type)
{
    ad_buf_putc(&r->ev, '}');
    r->seq++;
    if (r->emit && r->ev.data)
        r->emit(r->ud, type, r->ev.data, r->ev.len);
}

static void ev_object(ad_rsp *r, const char *type)
{
    ad_buf *b = ev_begin(r, type);
    ad_buf_puts(b, ",\"response\":");
    put_object(b, r, false);
    ev_send(r, type);
}

static void ev_item(ad_rsp *r, const char *type, size_t idx)
{
    ad_buf *b = ev_begin(r, type);
    ad_buf_puts(b, ",\"output_index\":");
    ad_jw_int(b, (long long)idx);
    ad_buf_puts(b, ",\"item\":");
    put_item(b, &r->items[idx]);
    ev_send(r, type);
}

static void ev_part(ad_rsp *r, const char *type, size_t idx, bool with_text)
{
    const item *it = &r->items[idx];
    ad_buf *b = ev_begin(r, type);
    put_item_ref(b, it->id, idx);
    ad_buf_puts(b, ",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":");
    if (with_text)
        ad_jw_str(b, it->text.data ? it->text.data : "", it->text.len);
    else
        ad_buf_puts(b, "\"\"");
    ad_buf_puts(b, ",\"annotations\":[],\"logprobs\":[]}");
    ev_send(r, type);
}

static void open_message(ad_rsp *r)
{
    item *it = add_item(r, IT_MSG, "msg");
    if (!it)
        return;
    r->open_msg = (ssize_t)(r->nitems - 1);
    ev_item(r, "response.output_item.added", (size_t)r->open_msg);
    ev_part(r, "response.content_part.added", (size_t)r->open_msg, false);
}

static void close_message(ad_rsp *r, int status)
{
    if (r->open_msg < 0)
        return;
    size_t idx = (size_t)r->open_msg;
    item *it = &r->items[idx];
    r->open_msg = -1;
    it->status = status;
    ad_buf *b = ev_begin(r, "response.output_text.done");
    put_item_ref(b, it->id, idx);
    ad_buf_puts(b, ",\"content_index\":0,\"text\":");
    ad_jw_str(b, it->text.data ? it->text.data : "", it->text.len);
    ad_buf_puts(b, ",\"logprobs\":[]");
    ev_send(r, "response.output_text.done");
    ev_part(r, "response.content_part.done", idx, true);
    ev_item(r, "response.output_item.done", idx);
}

static void on_text(ad_rsp *r, const char *text, size_t len)
{
    if (len == 0)
        return;
    if (r->open_msg < 0)
        open_message(r);
    if (r->open_msg < 0)
        return;
    item *it = &r->items[r->open_msg];
    ad_buf_append(&it->text, text, len);
    ad_buf *b = ev_begin(r, "response.output_text.delta");
    ad_buf_puts(b, ",\"item_id\":\"");
    ad_buf_puts(b, it->id);
    ad_buf_puts(b, "\",\"output_index\":");
    ad_jw_int(b, r->open_msg);
    ad_buf_puts(b, ",\"content_index\":0,\"delta\":");
    ad_jw_str(b, text, len);
    ad_buf_puts(b, ",\"logprobs\":[]");
    ev_send(r, "response.output_text.delta");
}

static void on_tool_call(ad_rsp *r, const ad_event *ev)
{
    close_message(r, IS_COMPLETED);
    bool client = !ev->not_run && is_client_tool(r, ev->name);
    item *it = add_item(r, client ? IT_FN : IT_TOOL, client ? "fc" : "atc");
    if (!it)
        return;
    size_t idx = r->nitems - 1;
    it->call_id = dup_or_null(ev->id);
    it->name = dup_or_null(ev->name);
    it->args = ev->text ? ad_strndup(ev->text, ev->len) : ad_strdup("{}");
    ev_item(r, "response.output_item.added", idx);
    if (client) {
        const char **ids = realloc(r->fn_ids, (r->nfn + 1) * sizeof *ids);
        if (ids && it->call_id) {
            r->fn_ids = ids;
            r->fn_ids[r->nfn++] = it->call_id;
        } else if (ids) {
            r->fn_ids = ids;
        }
        ad_buf *b = ev_begin(r, "response.function_call_arguments.delta");
        put_item_ref(b, it->id, idx);
        ad_buf_puts(b, ",\"delta\":");
        ad_jw_cstr(b, it->args);
        ev_send(r, "response.function_call_arguments.delta");
        b = ev_begin(r, "response.function_call_arguments.done");
        put_item_ref(b, it->id, idx);
        ad_buf_puts(b, ",\"name\":");
        ad_jw_cstr(b, it->name);
        ad_buf_puts(b, ",\"arguments\":");
        ad_jw_cstr(b, it->args);
        ev_send(r, "response.function_call_arguments.done");
        it->status = IS_COMPLETED;
        ev_item(r, "response.output_item.done", idx);
    } else if (ev->not_run) {
        it->status = IS_INCOMPLETE;
        ev_item(r, "response.output_item.done", idx);
    }
}

static void on_tool_result(ad_rsp *r, const ad_event *ev)
{
    for (size_t i = 0; i < r->nitems; i++) {
        item *it = &r->items[i];
        if (it->type != IT_TOOL || it->status != IS_PROGRESS || !it->call_id || !ev->id ||
            strcmp(it->call_id, ev->id) != 0)
            continue;
        it->output = ad_strndup(ev->text ? ev->text : "", ev->text ? ev->len : 0);
        it->output_len = it->output ? (ev->text ? ev->len : 0) : 0;
        it->is_error = ev->is_error;
        it->status = IS_COMPLETED;
        ev_item(r, "response.output_item.done", i);
        return;
    }
}

static void on_usage(ad_rsp *r, json_object *u)
{
    json_object *v;
    if ((v = ad_json_get(u, "prompt_tokens")) && ad_json_is(v, json_type_int))
        r->in_tok = json_object_get_int64(v);
    if ((v = ad_json_get(u, "completion_tokens")) && ad_json_is(v, json_type_int))
        r->out_tok = json_object_get_int64(v);
    if ((v = ad_json_get(u, "total_tokens")) && ad_json_is(v, json_type_int)) {
        r->tot_tok = json_object_get_int64(v);
        r->has_tot = true;
    }
}

void ad_rsp_event(ad_rsp *r, const ad_event *ev)
{
    if (r->ended)
        return;
    switch (ev->kind) {
    case AD_EV_TEXT:
        on_text(r, ev->text, ev->len);
        break;
    case AD_EV_RETRY:
        /* What the step said so far is void; the next attempt opens a
         * new item. */
        close_message(r, IS_INCOMPLETE);
        break;
    case AD_EV_TOOL_CALL:
        on_tool_call(r, ev);
        break;
    case AD_EV_TOOL_RESULT:
        on_tool_result(r, ev);
        break;
    case AD_EV_STEP_FINISH:
        close_message(r, IS_COMPLETED);
        break;
    case AD_EV_FINISH:
        close_message(r, IS_COMPLETED);
        if (ev->usage)
            on_usage(r, ev->usage);
        break;
    case AD_EV_ERROR:
        if (ev->text) {
            free(r->error);
            r->error = ad_strndup(ev->text, ev->len);
        }
        break;
    default:
        break;
    }
}

/* ---- lifetime ----------------------------------------------------------- */

ad_rsp *ad_rsp_new(const ad_rsp_opts *o, ad_rsp_emit_fn emit, void *ud)
{
    ad_rsp *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    snprintf(r->id, sizeof r->id, "%s", o->id);
    r->model = dup_or_null(o->model);
    r->prev = dup_or_null(o->previous_response_id);
    r->instructions = dup_or_null(o->instructions);
    r->created_at = o->created_at;
    r->background = o->background;
    r->store = o->store;
    r->emit = emit;
    r->ud = ud;
    r->open_msg = -1;
    r->status = o->background ? "queued" : "in_progress";
    if (o->nclient_tools) {
        r->client = calloc(o->nclient_tools, sizeof *r->client);
        if (!r->client) {
            ad_rsp_free(r);
            return NULL;
        }
        for (size_t i = 0; i < o->nclient_tools; i++)
            if ((r->client[r->nclient] = ad_strdup(o->client_tools[i])) != NULL)
                r->nclient++;
    }
    return r;
}

void ad_rsp_free(ad_rsp *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nitems; i++) {
        item *it = &r->items[i];
        ad_buf_free(&it->text);
        free(it->call_id);
        free(it->name);
        free(it->args);
        free(it->output);
    }
    free(r->items);
    for (size_t i = 0; i < r->nclient; i++)
        free(r->client[i]);
    free(r->client);
    free(r->fn_ids);
    free(r->model);
    free(r->prev);
    free(r->instructions);
    free(r->error);
    ad_buf_free(&r->ev);
    free(r);
}

void ad_rsp_start(ad_rsp *r)
{
    ev_object(r, "response.created");
    r->status = "in_progress";
    ev_object(r, "response.in_progress");
}

void ad_rsp_end(ad_rsp *r, int run_status, const char *error)
{
    if (r->ended)
        return;
    close_message(r, run_status == AD_RUN_OK ? IS_COMPLETED : IS_INCOMPLETE);
    /* Calls that never got a result (the run failed or was cancelled
     * first) stay incomplete. */
    for (size_t i = 0; i < r->nitems; i++)
        if (r->items[i].status == IS_PROGRESS)
            r->items[i].status = IS_INCOMPLETE;
    if (error) {
        free(r->error);
        r->error = ad_strdup(error);
    }
    switch (run_status) {
    case AD_RUN_OK:
    case AD_RUN_CLIENT_TOOLS:
        r->status = "completed";
        break;
    case AD_RUN_MAX_STEPS:
        r->status = "incomplete";
        r->incomplete = "max_steps";
        break;
    case AD_RUN_CANCELLED:
        r->status = "cancelled";
        if (!r->error)
            r->error = ad_strdup("the response was cancelled");
        break;
    default:
        r->status = "failed";
        if (!r->error)
            r->error = ad_strdup("the run failed");
    }
    r->ended = true;
}

void ad_rsp_emit_final(ad_rsp *r)
{
    if (!r->ended || r->final_sent)
        return;
    r->final_sent = true;
    const char *st = r->status;
    ev_object(r, strcmp(st, "completed") == 0    ? "response.completed"
                 : strcmp(st, "incomplete") == 0 ? "response.incomplete"
                                                 : "response.failed");
    ad_buf_free(&r->ev); /* the largest event is the last: not kept while the response is */
}

const char *ad_rsp_status(const ad_rsp *r)
{
    return r->status;
}

bool ad_rsp_ended(const ad_rsp *r)
{
    return r->ended;
}

int ad_rsp_events(const ad_rsp *r)
{
    return r->seq;
}

char *ad_rsp_object(const ad_rsp *r, size_t *len)
{
    ad_buf b = AD_BUF_INIT;
    put_object(&b, r, true);
    if (len)
        *len = b.len;
    return b.data;
}

size_t ad_rsp_client_calls(const ad_rsp *r, const char *const **ids)
{
    *ids = (const char *const *)r->fn_ids;
    return r->nfn;
}

/* ---- replay ------------------------------------------------------------- */

typedef struct replay {
    ad_rsp_emit_fn emit;
    void *ud;
    int seq;
    ad_buf b;
} replay;

/* {"type":TYPE,"sequence_number":N, REST} where rest is members without
 * braces. */
static void rp_send(replay *p, const char *type, const char *rest)
{
    ad_buf_reset(&p->b);
    ad_buf_printf(&p->b, "{\"type\":\"%s\",\"sequence_number\":%d%s%s}", type, p->seq++,
                  rest && rest[0] ? "," : "", rest ? rest : "");
    if (p->emit && p->b.data)
        p->emit(p->ud, type, p->b.data, p->b.len);
}

static const char *js(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

int ad_rsp_replay(const char *json, ad_rsp_emit_fn emit, void *ud)
{
    json_object *o = json_tokener_parse(json);
    json_object *out = ad_json_get(o, "output");
    if (!ad_json_is(o, json_type_object) || !ad_json_is(out, json_type_array)) {
        json_object_put(o);
        return AD_EINVAL;
    }
    replay p = {emit, ud, 0, AD_BUF_INIT};
    ad_buf rest = AD_BUF_INIT;
    /* created and in_progress show the response before its output. */
    json_object *start = NULL;
    json_object_deep_copy(o, &start, NULL);
    if (start) {
        json_object_object_add(start, "status", json_object_new_string("in_progress"));
        json_object_object_add(start, "output", json_object_new_array());
        ad_buf_printf(&rest, "\"response\":%s", js(start));
        rp_send(&p, "response.created", rest.data);
        rp_send(&p, "response.in_progress", rest.data);
        json_object_put(start);
    }
    for (size_t i = 0; i < json_object_array_length(out); i++) {
        json_object *it = json_object_array_get_idx(out, i);
        const char *type = ad_json_str(it, "type");
        const char *id = ad_json_str(it, "id");
        ad_buf_reset(&rest);
        ad_buf_printf(&rest, "\"output_index\":%zu,\"item\":%s", i, js(it));
        rp_send(&p, "response.output_item.added", rest.data);
        if (type && strcmp(type, "message") == 0) {
            json_object *part = json_object_array_get_idx(ad_json_get(it, "content"), 0);
            const char *text = ad_json_str(part, "text");
            ad_buf_reset(&rest);
            ad_buf_printf(&rest, "\"item_id\":");
            ad_jw_cstr(&rest, id ? id : "");
            ad_buf_printf(&rest, ",\"output_index\":%zu,\"content_index\":0,\"delta\":", i);
            ad_jw_cstr(&rest, text ? text : "");
            ad_buf_puts(&rest, ",\"logprobs\":[]");
            rp_send(&p, "response.output_text.delta", rest.data);
            ad_buf_reset(&rest);
            ad_buf_printf(&rest, "\"item_id\":");
            ad_jw_cstr(&rest, id ? id : "");
            ad_buf_printf(&rest, ",\"output_index\":%zu,\"content_index\":0,\"text\":", i);
            ad_jw_cstr(&rest, text ? text : "");
            ad_buf_puts(&rest, ",\"logprobs\":[]");
            rp_send(&p, "response.output_text.done", rest.data);
        }
        ad_buf_reset(&rest);
        ad_buf_printf(&rest, "\"output_index\":%zu,\"item\":%s", i, js(it));
        rp_send(&p, "response.output_item.done", rest.data);
    }
    const char *st = ad_json_str(o, "status");
    ad_buf_reset(&rest);
    ad_buf_printf(&rest, "\"response\":%s", js(o));
    rp_send(&p, st && strcmp(st, "completed") == 0    ? "response.completed"
                : st && strcmp(st, "incomplete") == 0 ? "response.incomplete"
                                                      : "response.failed",
            rest.data);
    ad_buf_free(&rest);
    ad_buf_free(&p.b);
    json_object_put(o);
    return AD_OK;
}

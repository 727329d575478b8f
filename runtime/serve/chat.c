/*
 * chat.c -- a Chat Completions answer from a run's events (see chat.h).
 */
#include "serve/chat.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "core/agent.h"
#include "serve/jsonw.h"

typedef struct call {
    char *id, *name, *args;
    char *output;
    bool is_error, client;
} call;

struct ad_chat {
    char id[64];
    char *model;
    long long created;
    char **client;
    size_t nclient;
    ad_chat_emit_fn emit;
    void *ud;
    ad_buf text;        /* the answer so far */
    bool step_text;     /* the step in progress said something */
    int step;
    call *calls;
    size_t ncalls;
    size_t nclient_calls;
    const char *finish; /* static */
    char *error;
    bool failed, ended;
    int64_t in_tok, out_tok, tot_tok;
    bool has_usage;
    ad_buf b;
};

static bool is_client(const ad_chat *c, const char *name)
{
    for (size_t i = 0; name && i < c->nclient; i++)
        if (strcmp(c->client[i], name) == 0)
            return true;
    return false;
}

static ad_buf *chunk_begin(ad_chat *c)
{
    ad_buf_reset(&c->b);
    ad_buf_printf(&c->b, "{\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
                  c->id, c->created);
    ad_jw_cstr(&c->b, c->model);
    return &c->b;
}

static void chunk_send(ad_chat *c)
{
    if (c->emit && c->b.data)
        c->emit(c->ud, c->b.data, c->b.len);
}

/* A chunk whose delta is delta_json (members, or ""), with an optional
 * agentd member (an object's JSON, or NULL). */
static void chunk(ad_chat *c, const char *delta_json, const char *finish, const char *agentd)
{
    ad_buf *b = chunk_begin(c);
    ad_buf_printf(b, ",\"choices\":[{\"index\":0,\"delta\":{%s},\"logprobs\":null,\"finish_reason\":",
                  delta_json);
    if (finish)
        ad_buf_printf(b, "\"%s\"", finish);
    else
        ad_buf_puts(b, "null");
    ad_buf_puts(b, "}]");
    if (agentd)
        ad_buf_printf(b, ",\"agentd\":%s", agentd);
    ad_buf_putc(b, '}');
    chunk_send(c);
}

ad_chat *ad_chat_new(const char *id, const char *model, double created,
                     const char *const *client_tools, size_t nclient, ad_chat_emit_fn emit,
                     void *ud)
{
    ad_chat *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->id, sizeof c->id, "%s", id);
    c->model = ad_strdup(model ? model : "");
    c->created = (long long)created;
    c->emit = emit;
    c->ud = ud;
    if (nclient && !(c->client = calloc(nclient, sizeof *c->client))) {
        ad_chat_free(c);
        return NULL;
    }
    for (size_t i = 0; i < nclient; i++)
        if ((c->client[c->nclient] = ad_strdup(client_tools[i])) != NULL)
            c->nclient++;
    if (!c->model) {
        ad_chat_free(c);
        return NULL;
    }
    return c;
}

void ad_chat_free(ad_chat *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ncalls; i++) {
        free(c->calls[i].id);
        free(c->calls[i].name);
        free(c->calls[i].args);
        free(c->calls[i].output);
    }
    free(c->calls);
    for (size_t i = 0; i < c->nclient; i++)
        free(c->client[i]);
    free(c->client);
    free(c->model);
    free(c->error);
    ad_buf_free(&c->text);
    ad_buf_free(&c->b);
    free(c);
}

void ad_chat_start(ad_chat *c)
{
    chunk(c, "\"role\":\"assistant\",\"content\":\"\"", NULL, NULL);
}

static void on_text(ad_chat *c, const char *text, size_t len)
{
    if (!len)
        return;
    ad_buf d = AD_BUF_INIT;
    ad_buf_puts(&d, "\"content\":");
    /* The text of a later step starts a paragraph of its own. */
    if (!c->step_text && c->text.len) {
        ad_buf_append(&c->text, "\n\n", 2);
        ad_buf t = AD_BUF_INIT;
        ad_buf_puts(&t, "\n\n");
        ad_buf_append(&t, text, len);
        ad_jw_str(&d, t.data, t.len);
        ad_buf_free(&t);
    } else {
        ad_jw_str(&d, text, len);
    }
    c->step_text = true;
    ad_buf_append(&c->text, text, len);
    if (d.data)
        chunk(c, d.data, NULL, NULL);
    ad_buf_free(&d);
}

static void on_call(ad_chat *c, const ad_event *ev)
{
    call *n = realloc(c->calls, (c->ncalls + 1) * sizeof *n);
    if (!n)
        return;
    c->calls = n;
    call *k = &c->calls[c->ncalls++];
    memset(k, 0, sizeof *k);
    k->id = ad_strdup(ev->id ? ev->id : "");
    k->name = ad_strdup(ev->name ? ev->name : "");
    k->args = ev->text ? ad_strndup(ev->text, ev->len) : ad_strdup("{}");
    k->client = !ev->not_run && is_client(c, ev->name);
    ad_buf a = AD_BUF_INIT;
    if (k->client) {
        ad_buf_printf(&a, "\"tool_calls\":[{\"index\":%zu,\"id\":", c->nclient_calls++);
        ad_jw_cstr(&a, k->id);
        ad_buf_puts(&a, ",\"type\":\"function\",\"function\":{\"name\":");
        ad_jw_cstr(&a, k->name);
        ad_buf_puts(&a, ",\"arguments\":");
        ad_jw_cstr(&a, k->args);
        ad_buf_puts(&a, "}}]");
        if (a.data)
            chunk(c, a.data, NULL, NULL);
    } else {
        ad_buf_puts(&a, "{\"type\":\"tool_call\",\"call_id\":");
        ad_jw_cstr(&a, k->id);
        ad_buf_puts(&a, ",\"name\":");
        ad_jw_cstr(&a, k->name);
        ad_buf_puts(&a, ",\"arguments\":");
        ad_jw_cstr(&a, k->args);
        ad_buf_printf(&a, ",\"not_run\":%s}", ev->not_run ? "true" : "false");
        if (a.data)
            chunk(c, "", NULL, a.data);
    }
    ad_buf_free(&a);
}

static void on_result(ad_chat *c, const ad_event *ev)
{
    for (size_t i = 0; i < c->ncalls; i++) {
        call *k = &c->calls[i];
        if (k->output || k->client || !ev->id || strcmp(k->id, ev->id) != 0)
            continue;
        k->output = ad_strndup(ev->text ? ev->text : "", ev->text ? ev->len : 0);
        k->is_error = ev->is_error;
        ad_buf a = AD_BUF_INIT;
        ad_buf_puts(&a, "{\"type\":\"tool_result\",\"call_id\":");
        ad_jw_cstr(&a, k->id);
        ad_buf_puts(&a, ",\"name\":");
        ad_jw_cstr(&a, k->name);
        ad_buf_puts(&a, ",\"output\":");
        ad_jw_str(&a, ev->text ? ev->text : "", ev->text ? ev->len : 0);
        ad_buf_printf(&a, ",\"is_error\":%s}", ev->is_error ? "true" : "false");
        if (a.data)
            chunk(c, "", NULL, a.data);
        ad_buf_free(&a);
        return;
    }
}

static void on_usage(ad_chat *c, json_object *u)
{
    json_object *v;
    if ((v = ad_json_get(u, "prompt_tokens")) && ad_json_is(v, json_type_int))
        c->in_tok = json_object_get_int64(v);
    if ((v = ad_json_get(u, "completion_tokens")) && ad_json_is(v, json_type_int))
        c->out_tok = json_object_get_int64(v);
    if ((v = ad_json_get(u, "total_tokens")) && ad_json_is(v, json_type_int))
        c->tot_tok = json_object_get_int64(v);
    else
        c->tot_tok = c->in_tok + c->out_tok;
    c->has_usage = true;
}

void ad_chat_event(ad_chat *c, const ad_event *ev)
{
    if (c->ended)
        return;
    switch (ev->kind) {
    case AD_EV_TEXT:
        on_text(c, ev->text, ev->len);
        break;
    case AD_EV_STEP_START:
        if (ev->step != c->step) {
            c->step = ev->step;
            c->step_text = false;
        }
        break;
    case AD_EV_TOOL_CALL:
        on_call(c, ev);
        break;
    case AD_EV_TOOL_RESULT:
        on_result(c, ev);
        break;
    case AD_EV_FINISH:
        if (ev->usage)
            on_usage(c, ev->usage);
        break;
    case AD_EV_ERROR:
        if (ev->text) {
            free(c->error);
            c->error = ad_strndup(ev->text, ev->len);
        }
        break;
    default:
        break;
    }
}

static void put_usage(ad_buf *b, const ad_chat *c)
{
    ad_buf_printf(b, "{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                     ",\"total_tokens\":%" PRId64 "}",
                  c->in_tok, c->out_tok, c->tot_tok);
}

void ad_chat_end(ad_chat *c, int run_status, const char *error)
{
    if (c->ended)
        return;
    c->ended = true;
    if (error) {
        free(c->error);
        c->error = ad_strdup(error);
    }
    switch (run_status) {
    case AD_RUN_OK:
        c->finish = "stop";
        break;
    case AD_RUN_CLIENT_TOOLS:
        c->finish = "tool_calls";
        break;
    case AD_RUN_MAX_STEPS:
        c->finish = "length";
        break;
    default:
        c->failed = true;
        if (!c->error)
            c->error = ad_strdup(run_status == AD_RUN_CANCELLED ? "the run was cancelled"
                                                                : "the run failed");
    }
    if (c->failed) {
        ad_buf_reset(&c->b);
        ad_buf_puts(&c->b, "{\"error\":{\"message\":");
        ad_jw_cstr(&c->b, c->error);
        ad_buf_printf(&c->b, ",\"type\":\"server_error\",\"code\":\"%s\"}}",
                      run_status == AD_RUN_CANCELLED ? "cancelled" : "run_failed");
        chunk_send(c);
    } else {
        ad_buf *b = chunk_begin(c);
        ad_buf_printf(b, ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                         "\"finish_reason\":\"%s\"}],\"usage\":",
                      c->finish);
        put_usage(b, c);
        ad_buf_putc(b, '}');
        chunk_send(c);
    }
    if (c->emit)
        c->emit(c->ud, "[DONE]", 6);
}

bool ad_chat_failed(const ad_chat *c)
{
    return c->failed;
}

const char *ad_chat_error(const ad_chat *c)
{
    return c->error;
}

char *ad_chat_object(const ad_chat *c, size_t *len)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%lld,\"model\":",
                  c->id, c->created);
    ad_jw_cstr(&b, c->model);
    ad_buf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    ad_jw_str(&b, c->text.data ? c->text.data : "", c->text.len);
    if (c->nclient_calls) {
        ad_buf_puts(&b, ",\"tool_calls\":[");
        bool first = true;
        for (size_t i = 0; i < c->ncalls; i++) {
            const call *k = &c->calls[i];
            if (!k->client)
                continue;
            ad_buf_puts(&b, first ? "{\"id\":" : ",{\"id\":");
            first = false;
            ad_jw_cstr(&b, k->id);
            ad_buf_puts(&b, ",\"type\":\"function\",\"function\":{\"name\":");
            ad_jw_cstr(&b, k->name);
            ad_buf_puts(&b, ",\"arguments\":");
            ad_jw_cstr(&b, k->args);
            ad_buf_puts(&b, "}}");
        }
        ad_buf_putc(&b, ']');
    }
    ad_buf_printf(&b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":",
                  c->finish ? c->finish : "stop");
    put_usage(&b, c);
    ad_buf_puts(&b, ",\"agentd\":{\"tool_calls\":[");
    bool first = true;
    for (size_t i = 0; i < c->ncalls; i++) {
        const call *k = &c->calls[i];
        if (k->client)
            continue;
        ad_buf_puts(&b, first ? "{\"call_id\":" : ",{\"call_id\":");
        first = false;
        ad_jw_cstr(&b, k->id);
        ad_buf_puts(&b, ",\"name\":");
        ad_jw_cstr(&b, k->name);
        ad_buf_puts(&b, ",\"arguments\":");
        ad_jw_cstr(&b, k->args);
        ad_buf_puts(&b, ",\"output\":");
        ad_jw_cstr(&b, k->output);
        ad_buf_printf(&b, ",\"is_error\":%s}", k->is_error ? "true" : "false");
    }
    ad_buf_puts(&b, "]}}");
    if (len)
        *len = b.len;
    return b.data;
}

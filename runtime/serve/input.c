/*
 * input.c -- request input to conversation messages (see input.h).
 */
#include "serve/input.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"

void ad_input_free(ad_input *in)
{
    json_object_put(in->messages);
    free(in->prompt);
    json_object_put(in->tools);
    for (size_t i = 0; i < in->ntools; i++)
        free(in->tool_names[i]);
    free(in->tool_names);
    memset(in, 0, sizeof *in);
}

/* TEXT: a string, or parts of text joined; NULL with err set otherwise. */
static char *content_text(json_object *c, const char *where, char *err, size_t errlen)
{
    if (ad_json_is(c, json_type_string))
        return ad_strdup(json_object_get_string(c));
    if (!c)
        return ad_strdup("");
    if (!ad_json_is(c, json_type_array)) {
        ad_errf(err, errlen, "%s.content must be a string or an array of text parts", where);
        return NULL;
    }
    ad_buf b = AD_BUF_INIT;
    for (size_t i = 0; i < json_object_array_length(c); i++) {
        json_object *p = json_object_array_get_idx(c, i);
        const char *type = ad_json_str(p, "type");
        const char *text = ad_json_str(p, "text");
        if (ad_json_is(p, json_type_string)) {
            ad_buf_puts(&b, json_object_get_string(p));
            continue;
        }
        if (!type || (strcmp(type, "input_text") != 0 && strcmp(type, "output_text") != 0 &&
                      strcmp(type, "text") != 0) ||
            !text) {
            ad_errf(err, errlen, "%s.content[%zu]: %s%s%s", where, i,
                    type ? "parts of type '" : "a part needs a type and a text",
                    type ? type : "", type ? "' are not supported (only text)" : "");
            ad_buf_free(&b);
            return NULL;
        }
        ad_buf_puts(&b, text);
    }
    return b.data ? b.data : ad_strdup("");
}

static json_object *text_message(const char *role, const char *text)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(text));
    return m;
}

/* The assistant message to put a call in: the last one when it is an
 * assistant message with no text after its calls, else a new one. */
static json_object *calls_of_last(json_object *msgs)
{
    size_t n = json_object_array_length(msgs);
    json_object *last = n ? json_object_array_get_idx(msgs, n - 1) : NULL;
    const char *role = ad_json_str(last, "role");
    if (!last || !role || strcmp(role, "assistant") != 0) {
        last = json_object_new_object();
        json_object_object_add(last, "role", json_object_new_string("assistant"));
        json_object_object_add(last, "content", NULL);
        json_object_array_add(msgs, last);
    }
    json_object *calls = ad_json_get(last, "tool_calls");
    if (!calls) {
        calls = json_object_new_array();
        json_object_object_add(last, "tool_calls", calls);
    }
    return calls;
}

static void add_call(json_object *msgs, const char *id, const char *name, const char *args)
{
    json_object *calls = calls_of_last(msgs);
    json_object *c = json_object_new_object(), *f = json_object_new_object();
    json_object_object_add(c, "id", json_object_new_string(id));
    json_object_object_add(c, "type", json_object_new_string("function"));
    json_object_object_add(f, "name", json_object_new_string(name));
    json_object_object_add(f, "arguments", json_object_new_string(args && args[0] ? args : "{}"));
    json_object_object_add(c, "function", f);
    json_object_array_add(calls, c);
}

static void add_result(json_object *msgs, const char *id, const char *text)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("tool"));
    json_object_object_add(m, "tool_call_id", json_object_new_string(id));
    json_object_object_add(m, "content", json_object_new_string(text));
    json_object_array_add(msgs, m);
}

/* A function_call_output's output: a string, or text parts. */
static char *output_text(json_object *o, const char *where, char *err, size_t errlen)
{
    if (ad_json_is(o, json_type_string))
        return ad_strdup(json_object_get_string(o));
    if (ad_json_is(o, json_type_array)) {
        char w[64];
        snprintf(w, sizeof w, "%s.output", where);
        /* content_text names ".content"; the parts are the same shape. */
        return content_text(o, w, err, errlen);
    }
    ad_errf(err, errlen, "%s.output must be a string", where);
    return NULL;
}

static int tools_of(json_object *tools, ad_input *out, char *err, size_t errlen)
{
    if (!tools)
        return AD_OK;
    if (!ad_json_is(tools, json_type_array)) {
        ad_errf(err, errlen, "tools must be an array");
        return AD_EINVAL;
    }
    size_t n = json_object_array_length(tools);
    if (n == 0)
        return AD_OK;
    out->tools = json_object_new_array();
    out->tool_names = calloc(n, sizeof *out->tool_names);
    if (!out->tools || !out->tool_names)
        return AD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        const char *type = ad_json_str(t, "type");
        if (!type || strcmp(type, "function") != 0) {
            ad_errf(err, errlen, "tools[%zu]: tools of type '%s' are not supported (only "
                                 "function tools, which the client runs)",
                    i, type ? type : "(none)");
            return AD_EINVAL;
        }
        json_object *fn = ad_json_get(t, "function");
        json_object *src = fn ? fn : t;
        const char *name = ad_json_str(src, "name");
        if (!name || !name[0]) {
            ad_errf(err, errlen, "tools[%zu]: a function tool needs a name", i);
            return AD_EINVAL;
        }
        for (size_t k = 0; k < out->ntools; k++)
            if (strcmp(out->tool_names[k], name) == 0) {
                ad_errf(err, errlen, "tools[%zu]: the tool name '%s' is given twice", i, name);
                return AD_EINVAL;
            }
        json_object *f = json_object_new_object();
        json_object_object_add(f, "name", json_object_new_string(name));
        const char *desc = ad_json_str(src, "description");
        if (desc)
            json_object_object_add(f, "description", json_object_new_string(desc));
        json_object *params = ad_json_get(src, "parameters");
        if (params && !ad_json_is(params, json_type_object)) {
            json_object_put(f);
            ad_errf(err, errlen, "tools[%zu].parameters must be a JSON Schema object", i);
            return AD_EINVAL;
        }
        json_object_object_add(f, "parameters",
                               params ? json_object_get(params)
                                      : json_tokener_parse("{\"type\":\"object\",\"properties\":{}}"));
        json_object *w = json_object_new_object();
        json_object_object_add(w, "type", json_object_new_string("function"));
        json_object_object_add(w, "function", f);
        json_object_array_add(out->tools, w);
        out->tool_names[out->ntools++] = ad_strdup(name);
    }
    return AD_OK;
}

/* Takes a final user message off the list as the prompt. */
static void take_prompt(ad_input *out)
{
    size_t n = json_object_array_length(out->messages);
    json_object *last = n ? json_object_array_get_idx(out->messages, n - 1) : NULL;
    const char *role = ad_json_str(last, "role");
    if (role && strcmp(role, "user") == 0) {
        out->prompt = ad_strdup(ad_json_str(last, "content") ? ad_json_str(last, "content") : "");
        json_object_array_del_idx(out->messages, n - 1, 1);
    }
}

static const char *norm_role(const char *role)
{
    if (!role)
        return NULL;
    if (strcmp(role, "developer") == 0)
        return "system";
    if (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0 || strcmp(role, "system") == 0)
        return role;
    return NULL;
}

/* Starts out: no messages yet, and the client's tools. */
static int input_begin(json_object *tools, ad_input *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->messages = json_object_new_array();
    if (!out->messages)
        return AD_ENOMEM;
    int rc = tools_of(tools, out, err, errlen);
    if (rc != AD_OK)
        ad_input_free(out);
    return rc;
}

int ad_input_responses(json_object *input, json_object *tools, ad_input *out, char *err,
                       size_t errlen)
{
    int rc = input_begin(tools, out, err, errlen);
    if (rc != AD_OK)
        return rc;
    if (ad_json_is(input, json_type_string)) {
        out->prompt = ad_strdup(json_object_get_string(input));
        return out->prompt ? AD_OK : AD_ENOMEM;
    }
    if (!ad_json_is(input, json_type_array)) {
        ad_errf(err, errlen, "input must be a string or an array of items");
        rc = AD_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < json_object_array_length(input); i++) {
        json_object *it = json_object_array_get_idx(input, i);
        char where[48];
        snprintf(where, sizeof where, "input[%zu]", i);
        const char *type = ad_json_str(it, "type");
        const char *role = ad_json_str(it, "role");
        if (!ad_json_is(it, json_type_object)) {
            ad_errf(err, errlen, "%s must be an object", where);
            rc = AD_EINVAL;
            goto fail;
        }
        if (!type || strcmp(type, "message") == 0) {
            const char *r = norm_role(role);
            if (!r) {
                ad_errf(err, errlen, "%s.role must be user, assistant, system or developer", where);
                rc = AD_EINVAL;
                goto fail;
            }
            char *text = content_text(ad_json_get(it, "content"), where, err, errlen);
            if (!text) {
                rc = AD_EINVAL;
                goto fail;
            }
            json_object_array_add(out->messages, text_message(r, text));
            free(text);
        } else if (strcmp(type, "function_call") == 0 || strcmp(type, "agentd:tool_call") == 0) {
            const char *id = ad_json_str(it, "call_id");
            const char *name = ad_json_str(it, "name");
            if (!id || !name) {
                ad_errf(err, errlen, "%s: a %s needs call_id and name", where, type);
                rc = AD_EINVAL;
                goto fail;
            }
            add_call(out->messages, id, name, ad_json_str(it, "arguments"));
            if (type[0] == 'a') {
                const char *o = ad_json_str(it, "output");
                add_result(out->messages, id, o ? o : "");
            }
        } else if (strcmp(type, "function_call_output") == 0) {
            const char *id = ad_json_str(it, "call_id");
            if (!id) {
                ad_errf(err, errlen, "%s: a function_call_output needs a call_id", where);
                rc = AD_EINVAL;
                goto fail;
            }
            char *text = output_text(ad_json_get(it, "output"), where, err, errlen);
            if (!text) {
                rc = AD_EINVAL;
                goto fail;
            }
            add_result(out->messages, id, text);
            free(text);
        } else if (strcmp(type, "reasoning") == 0) {
            continue;
        } else {
            ad_errf(err, errlen, "%s: items of type '%s' are not supported", where, type);
            rc = AD_EINVAL;
            goto fail;
        }
    }
    take_prompt(out);
    return AD_OK;
fail:
    ad_input_free(out);
    return rc;
}

int ad_input_chat(json_object *messages, json_object *tools, ad_input *out, char *err,
                  size_t errlen)
{
    int rc = input_begin(tools, out, err, errlen);
    if (rc != AD_OK)
        return rc;
    if (!ad_json_is(messages, json_type_array) || json_object_array_length(messages) == 0) {
        ad_errf(err, errlen, "messages must be a non-empty array");
        rc = AD_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < json_object_array_length(messages); i++) {
        json_object *m = json_object_array_get_idx(messages, i);
        char where[48];
        snprintf(where, sizeof where, "messages[%zu]", i);
        const char *role = ad_json_str(m, "role");
        if (role && strcmp(role, "tool") == 0) {
            const char *id = ad_json_str(m, "tool_call_id");
            char *text = id ? content_text(ad_json_get(m, "content"), where, err, errlen) : NULL;
            if (!id)
                ad_errf(err, errlen, "%s: a tool message needs a tool_call_id", where);
            if (!text) {
                rc = AD_EINVAL;
                goto fail;
            }
            add_result(out->messages, id, text);
            free(text);
            continue;
        }
        const char *r = norm_role(role);
        if (!r) {
            ad_errf(err, errlen, "%s.role must be system, developer, user, assistant or tool", where);
            rc = AD_EINVAL;
            goto fail;
        }
        char *text = content_text(ad_json_get(m, "content"), where, err, errlen);
        if (!text) {
            rc = AD_EINVAL;
            goto fail;
        }
        json_object *calls = strcmp(r, "assistant") == 0 ? ad_json_get(m, "tool_calls") : NULL;
        if (calls && ad_json_is(calls, json_type_array) && json_object_array_length(calls)) {
            json_object *a = json_object_new_object();
            json_object_object_add(a, "role", json_object_new_string("assistant"));
            json_object_object_add(a, "content", text[0] ? json_object_new_string(text) : NULL);
            json_object_array_add(out->messages, a);
            for (size_t k = 0; k < json_object_array_length(calls); k++) {
                json_object *c = json_object_array_get_idx(calls, k);
                json_object *f = ad_json_get(c, "function");
                const char *id = ad_json_str(c, "id");
                const char *name = ad_json_str(f, "name");
                if (!id || !name) {
                    free(text);
                    ad_errf(err, errlen, "%s.tool_calls[%zu] needs an id and function.name", where, k);
                    rc = AD_EINVAL;
                    goto fail;
                }
                add_call(out->messages, id, name, ad_json_str(f, "arguments"));
            }
        } else {
            json_object_array_add(out->messages, text_message(r, text));
        }
        free(text);
    }
    take_prompt(out);
    return AD_OK;
fail:
    ad_input_free(out);
    return rc;
}

/*
 * jsonrpc.c -- JSON-RPC 2.0 messages on json-c (see jsonrpc.h).
 *
 * Parsing is strict about the envelope (what decides which request a
 * response belongs to) and lenient about what it does not use: unknown
 * members are ignored, as JSON-RPC allows.
 */
#include "mcp/jsonrpc.h"

#include <limits.h>
#include <string.h>

#include "base/buf.h"

#define MAX_DEPTH 256

void ad_rpc_msg_free(ad_rpc_msg *m)
{
    if (!m)
        return;
    json_object_put(m->root);
    memset(m, 0, sizeof *m);
}

bool ad_rpc_id_int(const json_object *id, int64_t *out)
{
    if (!id || !json_object_is_type(id, json_type_int))
        return false;
    *out = json_object_get_int64(id);
    return true;
}

static bool usable_id(const json_object *id)
{
    return id && (json_object_is_type(id, json_type_string) || json_object_is_type(id, json_type_int));
}

/* Parses one JSON value; NULL with err set when the text is not exactly one. */
static json_object *parse_value(const char *text, size_t len, bool *is_null, char *err,
                                size_t errlen)
{
    *is_null = false;
    if (len > INT_MAX) {
        ad_errf(err, errlen, "not JSON: a message of %zu bytes is too large", len);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    if (!tok) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue && !o) {
        /* A bare number may still wait for digits; a NUL ends the input. */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
        end = len;
        if (e != json_tokener_success) {
            json_tokener_free(tok);
            ad_errf(err, errlen, "not JSON: the text ends inside a value");
            return NULL;
        }
    }
    json_tokener_free(tok);
    if (e != json_tokener_success) {
        ad_errf(err, errlen, "not JSON: %s at byte %zu", json_tokener_error_desc(e), end);
        return NULL;
    }
    while (end < len && strchr(" \t\r\n", text[end]) && text[end])
        end++;
    if (end < len) {
        json_object_put(o);
        ad_errf(err, errlen, "not JSON: more text after the value at byte %zu", end);
        return NULL;
    }
    if (!o)
        *is_null = true;
    return o;
}

int ad_rpc_parse(const char *text, size_t len, ad_rpc_msg *m, json_object **bad_id, char *err,
                 size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (bad_id)
        *bad_id = NULL;
    bool is_null;
    json_object *o = parse_value(text, len, &is_null, err, errlen);
    if (!o) {
        if (is_null)
            ad_errf(err, errlen, "not a JSON-RPC message: null");
        return AD_EINVAL;
    }
    if (json_object_is_type(o, json_type_array)) {
        json_object_put(o);
        ad_errf(err, errlen, "a batch (JSON array): batches are not supported");
        return AD_EINVAL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        ad_errf(err, errlen, "not a JSON-RPC message: a JSON %s, not an object",
                json_type_to_name(json_object_get_type(o)));
        json_object_put(o);
        return AD_EINVAL;
    }
    json_object *ver = NULL, *id = NULL, *method = NULL, *params = NULL, *result = NULL,
                *error = NULL;
    bool has_id = json_object_object_get_ex(o, "id", &id);
    bool has_method = json_object_object_get_ex(o, "method", &method);
    bool has_result = json_object_object_get_ex(o, "result", &result);
    bool has_error = json_object_object_get_ex(o, "error", &error);
    json_object_object_get_ex(o, "params", &params);
    const char *why = NULL;
    if (!json_object_object_get_ex(o, "jsonrpc", &ver) || !json_object_is_type(ver, json_type_string) ||
        strcmp(json_object_get_string(ver), "2.0") != 0)
        why = "no \"jsonrpc\": \"2.0\"";
    else if (has_method && !json_object_is_type(method, json_type_string))
        why = "\"method\" is not a string";
    else if (has_method && (has_result || has_error))
        why = "both \"method\" and a result or error";
    else if (has_method && params && !json_object_is_type(params, json_type_object) &&
             !json_object_is_type(params, json_type_array))
        why = "\"params\" is neither an object nor an array";
    else if (has_method && has_id && !usable_id(id))
        why = id ? "the request's \"id\" is neither a string nor an integer"
                 : "the request's \"id\" is null";
    else if (!has_method && !has_result && !has_error)
        why = "neither \"method\" nor \"result\" nor \"error\"";
    else if (!has_method && has_result && has_error)
        why = "both \"result\" and \"error\"";
    else if (!has_method && !has_id)
        why = "a response without \"id\"";
    else if (!has_method && id && !usable_id(id))
        why = "the response's \"id\" is neither a string nor an integer";
    else if (!has_method && has_result && !id)
        why = "a result with \"id\": null";
    if (why) {
        if (bad_id && has_method && usable_id(id))
            *bad_id = json_object_get(id);
        ad_errf(err, errlen, "not a valid JSON-RPC message: %s", why);
        json_object_put(o);
        return AD_EINVAL;
    }
    m->root = o;
    m->id = id;
    m->params = params;
    if (has_method) {
        m->kind = has_id ? AD_RPC_REQUEST : AD_RPC_NOTIFICATION;
        m->method = json_object_get_string(method);
        return AD_OK;
    }
    if (has_result) {
        m->kind = AD_RPC_RESULT;
        m->result = result;
        return AD_OK;
    }
    m->kind = AD_RPC_ERROR;
    json_object *code = NULL, *msg = NULL;
    if (!json_object_is_type(error, json_type_object) ||
        !json_object_object_get_ex(error, "code", &code) || !json_object_is_type(code, json_type_int)) {
        /* Still an error response: its request must fail, not hang. */
        m->code = AD_RPC_INTERNAL_ERROR;
        m->message = "the error response has no integer \"code\"";
        return AD_OK;
    }
    m->code = json_object_get_int64(code);
    m->message = json_object_object_get_ex(error, "message", &msg) &&
                         json_object_is_type(msg, json_type_string)
                     ? json_object_get_string(msg)
                     : "";
    json_object_object_get_ex(error, "data", &m->data);
    return AD_OK;
}

/* ---- builders ---------------------------------------------------------- */

static char *finish(json_object *o, size_t *len)
{
    char *out = NULL;
    if (o) {
        size_t n = 0;
        const char *s = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (s && (out = ad_strndup(s, n)) != NULL && len)
            *len = n;
    }
    json_object_put(o);
    return out;
}

static json_object *envelope(void)
{
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
    return o;
}

char *ad_rpc_request(int64_t id, const char *method, json_object *params, size_t *len)
{
    json_object *o = envelope();
    if (o) {
        json_object_object_add(o, "id", json_object_new_int64(id));
        json_object_object_add(o, "method", json_object_new_string(method));
        if (params)
            json_object_object_add(o, "params", json_object_get(params));
    }
    return finish(o, len);
}

char *ad_rpc_notification(const char *method, json_object *params, size_t *len)
{
    json_object *o = envelope();
    if (o) {
        json_object_object_add(o, "method", json_object_new_string(method));
        if (params)
            json_object_object_add(o, "params", json_object_get(params));
    }
    return finish(o, len);
}

char *ad_rpc_result(json_object *id, json_object *result, size_t *len)
{
    json_object *o = envelope();
    if (o) {
        json_object_object_add(o, "id", json_object_get(id));
        json_object_object_add(o, "result", result ? json_object_get(result) : json_object_new_object());
    }
    return finish(o, len);
}

char *ad_rpc_error(json_object *id, int64_t code, const char *message, json_object *data,
                   size_t *len)
{
    json_object *o = envelope();
    json_object *e = json_object_new_object();
    if (o && e) {
        json_object_object_add(e, "code", json_object_new_int64(code));
        json_object_object_add(e, "message", json_object_new_string(message ? message : ""));
        if (data)
            json_object_object_add(e, "data", json_object_get(data));
        json_object_object_add(o, "id", json_object_get(id));
        json_object_object_add(o, "error", e);
        e = NULL;
    }
    json_object_put(e);
    return finish(o, len);
}

int64_t ad_rpc_next_id(ad_rpc_ids *ids)
{
    if (ids->next < 1)
        ids->next = 1;
    return ids->next++;
}

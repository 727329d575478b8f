/*
 * request.c -- builds the request body (see request.h).
 *
 * The messages and tools are shared by reference (json_object_get), never
 * copied: a long conversation is serialised once per step, not duplicated.
 * Slashes are not escaped, so tool-call ids and URLs in the conversation go
 * out byte-exact as the provider sent them.
 */
#include "core/request.h"

#include "base/buf.h"

json_object *ad_request_new(const ad_config *cfg, const char *model, json_object *messages,
                            json_object *tools)
{
    json_object *req = json_object_new_object();
    if (!req)
        return NULL;
    json_object_object_add(req, "model", json_object_new_string(model ? model : ""));
    json_object_object_add(req, "messages", json_object_get(messages));
    if (tools)
        json_object_object_add(req, "tools", json_object_get(tools));
    if (cfg->max_tokens > 0)
        json_object_object_add(req, "max_tokens", json_object_new_int64(cfg->max_tokens));
    if (cfg->stream) {
        json_object_object_add(req, "stream", json_object_new_boolean(1));
        json_object *so = json_object_new_object();
        json_object_object_add(so, "include_usage", json_object_new_boolean(1));
        json_object_object_add(req, "stream_options", so);
    }
    if (cfg->extra && json_object_is_type(cfg->extra, json_type_object)) {
        json_object_object_foreach(cfg->extra, k, v)
        {
            json_object_object_add(req, k, json_object_get(v));
        }
    }
    return req;
}

char *ad_request_body(const ad_config *cfg, const char *model, json_object *messages,
                      json_object *tools, size_t *len)
{
    json_object *req = ad_request_new(cfg, model, messages, tools);
    if (!req)
        return NULL;
    const char *s = json_object_to_json_string_length(req, AD_REQUEST_JSON_FLAGS, len);
    char *out = s ? ad_strndup(s, *len) : NULL;
    json_object_put(req);
    return out;
}

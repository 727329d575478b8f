/*
 * server.c -- one MCP server session over a tool host (see server.h).
 *
 * Each tools/call is a batch of one call in the host; the session keeps a
 * record of it (scall) on its list until the host's on_done, or until it is
 * cancelled (the batch is abandoned: no callback of it comes after that).
 */
#include "mcp/server.h"

#include <agentd/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"
#include "mcp/jsonrpc.h"

#ifndef AGENTD_VERSION
#define AGENTD_VERSION "0"
#endif

static const char *const versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};

/* RFC 5424 severities as MCP names them, lowest first. */
static const char *const levels[] = {"debug", "info", "notice", "warning",
                                     "error", "critical", "alert", "emergency"};
enum { LV_DEBUG = 0, LV_INFO = 1, LV_WARNING = 3, LV_ERROR = 4 };

typedef struct scall {
    struct scall *prev, *next;
    ad_mcp_session *s;
    json_object *id;    /* the request's id */
    char *about;        /* its JSON text */
    json_object *token; /* _meta.progressToken, or NULL */
    char *name;
    ad_tool_batch *b;
} scall;

struct ad_mcp_session {
    ad_tool_host *h;
    const ad_config *cfg;
    ad_mcp_send_fn send;
    void *ud;
    int level;    /* lowest level of notifications/message sent */
    uint64_t gen; /* the host's tool list the client knows */
    bool listed;  /* the client has listed the tools */
    scall *calls;
};

/* ---- output ----------------------------------------------------------------- */

static void emit(ad_mcp_session *s, const char *about, char *text, size_t len, bool final)
{
    if (text)
        s->send(s->ud, about, text, len, final);
    free(text);
}

static char *id_text(json_object *id)
{
    return ad_strdup(id ? json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN) : "null");
}

static void reply(ad_mcp_session *s, json_object *id, json_object *result)
{
    size_t len = 0;
    char *about = id_text(id);
    char *text = ad_rpc_result(id, result, &len);
    emit(s, about, text, len, true);
    free(about);
}

static void reply_error(ad_mcp_session *s, json_object *id, int64_t code, const char *msg)
{
    size_t len = 0;
    char *about = id ? id_text(id) : NULL;
    char *text = ad_rpc_error(id, code, msg, NULL, &len);
    emit(s, about, text, len, true);
    free(about);
}

static void notify(ad_mcp_session *s, const char *about, const char *method, json_object *params)
{
    size_t len = 0;
    char *text = ad_rpc_notification(method, params, &len);
    emit(s, about, text, len, false);
}

/* The client hears of a new tool list once it has seen one. */
static void check_list(ad_mcp_session *s)
{
    uint64_t g = ad_tool_host_generation(s->h);
    if (g == s->gen)
        return;
    s->gen = g;
    if (s->listed)
        notify(s, NULL, "notifications/tools/list_changed", NULL);
}

/* ---- calls -------------------------------------------------------------------- */

static void call_free(scall *c)
{
    ad_mcp_session *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->calls == c)
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    json_object_put(c->id);
    json_object_put(c->token);
    free(c->about);
    free(c->name);
    free(c);
}

static void on_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    (void)i;
    scall *c = ud;
    if (!c->token)
        return;
    json_object *p = json_object_new_object();
    json_object_object_add(p, "progressToken", json_object_get(c->token));
    json_object_object_add(p, "progress", json_object_new_double(done));
    if (total > 0)
        json_object_object_add(p, "total", json_object_new_double(total));
    if (msg)
        json_object_object_add(p, "message", json_object_new_string(msg));
    notify(c->s, c->about, "notifications/progress", p);
    json_object_put(p);
}

static void on_log(void *ud, size_t i, int level, const char *text, size_t len)
{
    (void)i;
    scall *c = ud;
    int lv = level == AGENTD_LOG_ERROR  ? LV_ERROR
             : level == AGENTD_LOG_WARN ? LV_WARNING
             : level == AGENTD_LOG_DEBUG ? LV_DEBUG
                                        : LV_INFO; /* info, and a worker's other output */
    if (lv < c->s->level)
        return;
    json_object *p = json_object_new_object();
    json_object_object_add(p, "level", json_object_new_string(levels[lv]));
    json_object_object_add(p, "logger", json_object_new_string(c->name));
    /* Log text is the tool's: made valid UTF-8 for JSON. */
    ad_buf safe = AD_BUF_INIT;
    if (ad_utf8_repair(&safe, (const unsigned char *)text, len) == AD_OK) {
        json_object_object_add(p, "data", json_object_new_string_len(safe.data ? safe.data : "",
                                                                     (int)safe.len));
        notify(c->s, c->about, "notifications/message", p);
    }
    ad_buf_free(&safe);
    json_object_put(p);
}

static void on_done(void *ud, const ad_call_outcome *o, size_t n)
{
    scall *c = ud;
    ad_mcp_session *s = c->s;
    c->b = NULL;
    const ad_call_outcome *out = n ? &o[0] : NULL;
    const char *text = out && out->result.content ? out->result.content : "";
    size_t len = out && out->result.content ? out->result.len : 0;
    if (out && out->state == AD_CALL_REFUSED && !ad_tool_host_find(s->h, c->name)) {
        /* A tool the server does not have is a protocol error. */
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "Unknown tool: %s", c->name);
        reply_error(s, c->id, AD_RPC_INVALID_PARAMS, b.data ? b.data : "Unknown tool");
        ad_buf_free(&b);
    } else {
        json_object *r = json_object_new_object(), *content = json_object_new_array(),
                    *block = json_object_new_object();
        json_object_object_add(block, "type", json_object_new_string("text"));
        json_object_object_add(block, "text", json_object_new_string_len(text, (int)len));
        json_object_array_add(content, block);
        json_object_object_add(r, "content", content);
        json_object_object_add(r, "isError",
                               json_object_new_boolean(!out || out->state != AD_CALL_DONE ||
                                                       out->result.is_error));
        reply(s, c->id, r);
        json_object_put(r);
    }
    call_free(c);
    check_list(s);
}

static void tools_call(ad_mcp_session *s, json_object *id, json_object *params)
{
    const char *name = params ? ad_json_str(params, "name") : NULL;
    if (!name || !name[0]) {
        reply_error(s, id, AD_RPC_INVALID_PARAMS, "tools/call needs params.name (a string)");
        return;
    }
    json_object *args = NULL, *meta = NULL, *token = NULL;
    if (params)
        json_object_object_get_ex(params, "arguments", &args);
    if (args && !json_object_is_type(args, json_type_object)) {
        reply_error(s, id, AD_RPC_INVALID_PARAMS, "params.arguments must be an object");
        return;
    }
    if (params && json_object_object_get_ex(params, "_meta", &meta) &&
        json_object_is_type(meta, json_type_object))
        json_object_object_get_ex(meta, "progressToken", &token);
    scall *c = calloc(1, sizeof *c);
    if (!c) {
        reply_error(s, id, AD_RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    c->s = s;
    c->id = json_object_get(id);
    c->about = id_text(id);
    c->name = ad_strdup(name);
    if (token && (json_object_is_type(token, json_type_string) ||
                  json_object_is_type(token, json_type_int)))
        c->token = json_object_get(token);
    double timeout = 0;
    if (s->cfg) {
        bool confirm;
        int iso;
        ad_config_tool(s->cfg, name, &timeout, &confirm, &iso);
    }
    const char *atext = args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN) : "{}";
    ad_call_req req = {c->about ? c->about : "call", name, atext, strlen(atext), timeout};
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    static const ad_batch_cb cb = {.on_progress = on_progress, .on_log = on_log,
                                   .on_done = on_done};
    if (!c->about || !c->name || !(c->b = ad_tool_host_run(s->h, "mcp", &req, 1, &cb, c))) {
        json_object *cid = json_object_get(id);
        call_free(c);
        reply_error(s, cid, AD_RPC_INTERNAL_ERROR, "out of memory");
        json_object_put(cid);
    }
}

static scall *find_call(ad_mcp_session *s, json_object *id)
{
    for (scall *c = s->calls; c; c = c->next)
        if (json_object_equal(c->id, id))
            return c;
    return NULL;
}

static void cancel_call(scall *c)
{
    if (c->b)
        ad_tool_batch_abandon(c->b);
    c->b = NULL;
    call_free(c);
}

/* ---- requests ------------------------------------------------------------------ */

static void initialize(ad_mcp_session *s, json_object *id, json_object *params)
{
    const char *want = params ? ad_json_str(params, "protocolVersion") : NULL;
    const char *v = versions[0];
    for (size_t i = 0; want && i < sizeof versions / sizeof versions[0]; i++)
        if (strcmp(want, versions[i]) == 0)
            v = versions[i];
    json_object *r = json_object_new_object(), *caps = json_object_new_object(),
                *tools = json_object_new_object(), *info = json_object_new_object();
    json_object_object_add(r, "protocolVersion", json_object_new_string(v));
    json_object_object_add(tools, "listChanged", json_object_new_boolean(true));
    json_object_object_add(caps, "tools", tools);
    json_object_object_add(caps, "logging", json_object_new_object());
    json_object_object_add(r, "capabilities", caps);
    json_object_object_add(info, "name", json_object_new_string("agentd"));
    json_object_object_add(info, "version", json_object_new_string(AGENTD_VERSION));
    json_object_object_add(r, "serverInfo", info);
    s->gen = ad_tool_host_generation(s->h);
    reply(s, id, r);
    json_object_put(r);
}

static void tools_list(ad_mcp_session *s, json_object *id)
{
    json_object *r = json_object_new_object(), *arr = json_object_new_array();
    size_t n = ad_tool_host_count(s->h);
    for (size_t i = 0; i < n; i++) {
        const ad_tool_desc *d = ad_tool_host_at(s->h, i);
        json_object *t = json_object_new_object(), *schema = NULL;
        json_object_object_add(t, "name", json_object_new_string(d->name));
        json_object_object_add(t, "description",
                               json_object_new_string(d->description ? d->description : ""));
        if (d->parameters)
            json_object_deep_copy((json_object *)d->parameters, &schema, NULL);
        if (!schema) {
            schema = json_object_new_object();
            json_object_object_add(schema, "type", json_object_new_string("object"));
        }
        json_object_object_add(t, "inputSchema", schema);
        json_object_array_add(arr, t);
    }
    json_object_object_add(r, "tools", arr);
    s->gen = ad_tool_host_generation(s->h);
    s->listed = true;
    reply(s, id, r);
    json_object_put(r);
}

static void set_level(ad_mcp_session *s, json_object *id, json_object *params)
{
    const char *lv = params ? ad_json_str(params, "level") : NULL;
    for (size_t i = 0; lv && i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(lv, levels[i]) == 0) {
            s->level = (int)i;
            json_object *r = json_object_new_object();
            reply(s, id, r);
            json_object_put(r);
            return;
        }
    }
    reply_error(s, id, AD_RPC_INVALID_PARAMS,
                "params.level must be one of debug, info, notice, warning, error, critical, "
                "alert, emergency");
}

static void request(ad_mcp_session *s, const ad_rpc_msg *m)
{
    if (strcmp(m->method, "initialize") == 0) {
        initialize(s, m->id, m->params);
    } else if (strcmp(m->method, "ping") == 0) {
        json_object *r = json_object_new_object();
        reply(s, m->id, r);
        json_object_put(r);
    } else if (strcmp(m->method, "tools/list") == 0) {
        tools_list(s, m->id);
    } else if (strcmp(m->method, "tools/call") == 0) {
        if (find_call(s, m->id)) {
            reply_error(s, m->id, AD_RPC_INVALID_REQUEST,
                        "a request with this id is still running");
            return;
        }
        tools_call(s, m->id, m->params);
    } else if (strcmp(m->method, "logging/setLevel") == 0) {
        set_level(s, m->id, m->params);
    } else {
        char msg[200];
        snprintf(msg, sizeof msg, "Method not found: %.150s", m->method);
        reply_error(s, m->id, AD_RPC_METHOD_NOT_FOUND, msg);
    }
}

void ad_mcp_session_handle(ad_mcp_session *s, const char *text, size_t len)
{
    ad_rpc_msg m;
    json_object *bad_id = NULL;
    char err[256];
    check_list(s);
    if (ad_rpc_parse(text, len, &m, &bad_id, err, sizeof err) != AD_OK) {
        bool not_json = strncmp(err, "not JSON", 8) == 0;
        reply_error(s, bad_id, not_json ? AD_RPC_PARSE_ERROR : AD_RPC_INVALID_REQUEST, err);
        json_object_put(bad_id);
        return;
    }
    if (m.kind == AD_RPC_REQUEST) {
        request(s, &m);
    } else if (m.kind == AD_RPC_NOTIFICATION && strcmp(m.method, "notifications/cancelled") == 0) {
        json_object *rid = NULL;
        scall *c = m.params && json_object_object_get_ex(m.params, "requestId", &rid)
                       ? find_call(s, rid)
                       : NULL;
        if (c)
            cancel_call(c);
    }
    /* Other notifications, and responses: nothing to do. */
    ad_rpc_msg_free(&m);
}

void ad_mcp_session_cancel(ad_mcp_session *s, const char *about)
{
    for (scall *c = s->calls; c; c = c->next) {
        if (c->about && strcmp(c->about, about) == 0) {
            cancel_call(c);
            return;
        }
    }
}

size_t ad_mcp_session_calls(const ad_mcp_session *s)
{
    size_t n = 0;
    for (const scall *c = s->calls; c; c = c->next)
        n++;
    return n;
}

ad_mcp_session *ad_mcp_session_new(ad_tool_host *host, const ad_config *cfg, ad_mcp_send_fn send,
                                   void *ud)
{
    ad_mcp_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->h = host;
    s->cfg = cfg;
    s->send = send;
    s->ud = ud;
    s->level = LV_INFO;
    s->gen = ad_tool_host_generation(host);
    return s;
}

void ad_mcp_session_free(ad_mcp_session *s)
{
    if (!s)
        return;
    while (s->calls)
        cancel_call(s->calls);
    free(s);
}

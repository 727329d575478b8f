/*
 * client.c -- one MCP session over a transport (see client.h).
 *
 * Two state machines: the session's (ad_mcp_state, what owners see) and
 * the connection's (down, open, stopping: whether the transport holds a
 * server). An attempt that fails while the connection is open stops the
 * transport first and decides what comes next (a restart after the
 * backoff, or FAILED) when it has stopped. Calls live on one list, queued
 * (id 0) or sent; each has a timer for its timeout, which also delivers an
 * end decided inside an API function from the loop instead.
 *
 * Callbacks may call back into the client (close it, start or cancel
 * calls): lists are detached before their entries are ended, and nothing
 * is freed before the loop's close callbacks.
 */
#include "mcp/client.h"

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

#define READY_RESET_MS 30000 /* ready this long: the restart count starts afresh */
#define MAX_PAGES 1000       /* tools/list pages of one listing */
#define TAIL_LINES 8         /* stderr lines quoted in a message */
#define SKIPS_SHOWN 10       /* skipped lines logged one by one per attempt */

static const char *const known_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};

enum conn { CONN_DOWN, CONN_OPEN, CONN_STOPPING };

struct ad_mcp_call {
    ad_mcp_call *prev, *next;
    ad_mcp_client *c;
    int64_t id; /* 0: not sent yet */
    char *tool;
    json_object *args;
    double timeout_s;
    ad_mcp_call_cb cb;
    void *ud;
    uv_timer_t timer;
    bool fail_now;        /* the timer delivers an end decided earlier */
    ad_mcp_call_status fail_status;
    char *fail_msg;
};

struct ad_mcp_client {
    uv_loop_t *loop;
    ad_mcp_transport *t;
    ad_mcp_transport_cb tcb;
    char *name, *client_name, *client_version;
    double startup_timeout_s, request_timeout_s, backoff_initial_s, backoff_max_s;
    int max_restarts;
    ad_mcp_client_cb cb;
    void *ud;

    ad_mcp_state state;
    enum conn conn;
    ad_rpc_ids ids;
    int64_t init_id, list_id;
    json_object *list_acc; /* tools of the listing under way */
    char *last_cursor;
    int pages;
    bool relist;

    ad_mcp_tool *tools;
    size_t ntools;
    json_object *tools_raw; /* the array they come from */
    json_object *default_schema; /* for tools listed without an inputSchema */
    uint64_t gen;

    char *error, *protocol, *instructions;
    json_object *server_info;

    uv_timer_t startup, backoff, req_timer;
    int handles;
    int attempts;
    double backoff_s;
    uint64_t ready_at;
    bool pending_permanent;
    unsigned long skipped; /* lines skipped in this attempt */

    ad_mcp_call *calls;
    bool closing;
    void (*on_closed)(void *ud);
    void *closed_ud;
};

const char *ad_mcp_state_name(ad_mcp_state s)
{
    switch (s) {
    case AD_MCP_IDLE:
        return "idle";
    case AD_MCP_STARTING:
        return "starting";
    case AD_MCP_READY:
        return "ready";
    case AD_MCP_RESTARTING:
        return "restarting";
    case AD_MCP_FAILED:
        return "failed";
    default:
        return "closing";
    }
}

/* ---- small helpers ------------------------------------------------------ */

static void logf_(ad_mcp_client *c, int level, const char *logger, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void logf_(ad_mcp_client *c, int level, const char *logger, const char *fmt, ...)
{
    if (c->closing || !c->cb.on_log)
        return;
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (b.data)
        c->cb.on_log(c->ud, c, level, logger, b.data);
    ad_buf_free(&b);
}

static void set_state(ad_mcp_client *c, ad_mcp_state s, const char *msg)
{
    c->state = s;
    if (!c->closing && c->cb.on_state)
        c->cb.on_state(c->ud, c, s, msg);
}

/* base, then the last lines of the server's log when there are any. New
 * string. */
static char *with_tail(ad_mcp_client *c, const char *base)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_puts(&b, base);
    const char *tail = c->t->vt->log_tail ? c->t->vt->log_tail(c->t) : "";
    size_t n = strlen(tail);
    while (n && tail[n - 1] == '\n')
        n--;
    if (n) {
        /* The last TAIL_LINES lines. */
        size_t from = n;
        for (int lines = 0; from > 0; from--) {
            if (tail[from - 1] == '\n' && ++lines == TAIL_LINES)
                break;
        }
        /* stdio: the server's stderr; HTTP: what failed before. */
        ad_buf_puts(&b, strcmp(c->t->vt->kind, "stdio") == 0 ? "; its stderr ended with:"
                                                             : "; before that:");
        for (size_t i = from; i < n;) {
            const char *nl = memchr(tail + i, '\n', n - i);
            size_t len = nl ? (size_t)(nl - (tail + i)) : n - i;
            ad_buf_printf(&b, "\n  %.*s", (int)len, tail + i);
            i += len + 1;
        }
    }
    return b.data ? b.data : ad_strdup(base);
}

static int send_text(ad_mcp_client *c, char *text, size_t len)
{
    int rc = AD_ENOMEM;
    if (text && c->conn == CONN_OPEN)
        rc = c->t->vt->send(c->t, text, len);
    else if (text)
        rc = AD_ERR;
    free(text);
    return rc;
}

static int send_request(ad_mcp_client *c, int64_t id, const char *method, json_object *params)
{
    size_t len = 0;
    char *text = ad_rpc_request(id, method, params, &len);
    return send_text(c, text, len);
}

static void send_notification(ad_mcp_client *c, const char *method, json_object *params)
{
    size_t len = 0;
    char *text = ad_rpc_notification(method, params, &len);
    send_text(c, text, len);
}

static void send_cancelled(ad_mcp_client *c, int64_t id, const char *reason)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "requestId", json_object_new_int64(id));
    if (reason)
        json_object_object_add(p, "reason", json_object_new_string(reason));
    send_notification(c, "notifications/cancelled", p);
    json_object_put(p);
}

/* ---- calls -------------------------------------------------------------- */

static void on_call_timer_closed(uv_handle_t *h)
{
    ad_mcp_call *call = h->data;
    free(call->tool);
    free(call->fail_msg);
    json_object_put(call->args);
    free(call);
}

static void unlink_call(ad_mcp_call *call)
{
    ad_mcp_client *c = call->c;
    if (call->prev)
        call->prev->next = call->next;
    else if (c->calls == call)
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void drop_call(ad_mcp_call *call)
{
    unlink_call(call);
    uv_close((uv_handle_t *)&call->timer, on_call_timer_closed);
}

static void end_call(ad_mcp_call *call, ad_mcp_call_status st, json_object *result, int64_t code,
                     const char *msg)
{
    ad_mcp_client *c = call->c;
    unlink_call(call);
    uv_timer_stop(&call->timer);
    if (!c->closing && call->cb.on_done) {
        ad_mcp_outcome out = {st, result, code, msg};
        call->cb.on_done(call->ud, &out);
    }
    uv_close((uv_handle_t *)&call->timer, on_call_timer_closed);
}

static void on_call_timer(uv_timer_t *tm);

/* Ends call from the loop (an end decided inside an API function). */
static void end_call_later(ad_mcp_call *call, ad_mcp_call_status st, const char *msg)
{
    call->fail_now = true;
    call->fail_status = st;
    free(call->fail_msg);
    call->fail_msg = ad_strdup(msg);
    uv_timer_start(&call->timer, on_call_timer, 0, 0);
}

static void send_call(ad_mcp_call *call)
{
    ad_mcp_client *c = call->c;
    call->id = ad_rpc_next_id(&c->ids);
    json_object *p = json_object_new_object(), *meta = json_object_new_object();
    json_object_object_add(p, "name", json_object_new_string(call->tool));
    json_object_object_add(p, "arguments", json_object_get(call->args));
    /* The request's id is the progress token: unique for the client's life. */
    json_object_object_add(meta, "progressToken", json_object_new_int64(call->id));
    json_object_object_add(p, "_meta", meta);
    int rc = send_request(c, call->id, "tools/call", p);
    json_object_put(p);
    if (rc != AD_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot send tools/call to the MCP server '%s'", c->name);
        end_call_later(call, AD_MCP_CALL_DOWN, msg);
    }
}

static void on_call_timer(uv_timer_t *tm)
{
    ad_mcp_call *call = tm->data;
    ad_mcp_client *c = call->c;
    if (call->fail_now) {
        end_call(call, call->fail_status, NULL, 0, call->fail_msg ? call->fail_msg : "failed");
        return;
    }
    char msg[512];
    if (call->id) {
        snprintf(msg, sizeof msg, "timed out after %gs", call->timeout_s);
        send_cancelled(c, call->id, msg);
        snprintf(msg, sizeof msg,
                 "the tool '%s' of the MCP server '%s' did not answer within %gs (the call was "
                 "cancelled)",
                 call->tool, c->name, call->timeout_s);
    } else {
        snprintf(msg, sizeof msg, "the MCP server '%s' was not ready within %gs (it is %s%s%s)",
                 c->name, call->timeout_s, ad_mcp_state_name(c->state), c->error ? ": " : "",
                 c->error ? c->error : "");
    }
    end_call(call, AD_MCP_CALL_TIMEOUT, NULL, 0, msg);
}

/* Ends the calls that went out (all calls when `all`) with DOWN and msg. */
static void fail_calls(ad_mcp_client *c, bool all, const char *msg)
{
    ad_mcp_call *list = c->calls, *keep = NULL, *keep_tail = NULL;
    c->calls = NULL;
    while (list) {
        ad_mcp_call *call = list;
        list = call->next;
        if (list)
            list->prev = NULL;
        call->prev = call->next = NULL;
        if (all || call->id || call->fail_now) {
            /* end_call unlinks from c->calls: it is on none now */
            uv_timer_stop(&call->timer);
            if (!c->closing && call->cb.on_done) {
                ad_mcp_outcome out = {call->fail_now ? call->fail_status : AD_MCP_CALL_DOWN, NULL,
                                      0, call->fail_now && call->fail_msg ? call->fail_msg : msg};
                call->cb.on_done(call->ud, &out);
            }
            uv_close((uv_handle_t *)&call->timer, on_call_timer_closed);
        } else {
            call->prev = keep_tail;
            if (keep_tail)
                keep_tail->next = call;
            else
                keep = call;
            keep_tail = call;
        }
    }
    /* Calls started by the callbacks meanwhile come after the kept ones. */
    if (keep_tail) {
        keep_tail->next = c->calls;
        if (c->calls)
            c->calls->prev = keep_tail;
        c->calls = keep;
    }
}

static void flush_queued(ad_mcp_client *c)
{
    for (ad_mcp_call *call = c->calls; call; call = call->next)
        if (!call->id && !call->fail_now)
            send_call(call);
}

static ad_mcp_call *find_call(ad_mcp_client *c, int64_t id)
{
    for (ad_mcp_call *call = c->calls; call; call = call->next)
        if (call->id == id && !call->fail_now)
            return call;
    return NULL;
}

ad_mcp_call *ad_mcp_call_start(ad_mcp_client *c, const char *tool, json_object *args,
                               double timeout_s, const ad_mcp_call_cb *cb, void *ud)
{
    ad_mcp_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->c = c;
    call->tool = ad_strdup(tool);
    call->args = args ? json_object_get(args) : json_object_new_object();
    if (!call->tool || !call->args) {
        free(call->tool);
        json_object_put(call->args);
        free(call);
        return NULL;
    }
    call->timeout_s = timeout_s;
    if (cb)
        call->cb = *cb;
    call->ud = ud;
    uv_timer_init(c->loop, &call->timer);
    call->timer.data = call;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    if (timeout_s > 0)
        uv_timer_start(&call->timer, on_call_timer, (uint64_t)(timeout_s * 1000 + 0.5), 0);
    if (c->state == AD_MCP_READY) {
        send_call(call);
    } else if (c->state == AD_MCP_FAILED || c->state == AD_MCP_CLOSING) {
        char *msg = NULL;
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "the MCP server '%s' is not running%s%s", c->name, c->error ? ": " : "",
                      c->error ? c->error : "");
        msg = b.data;
        end_call_later(call, AD_MCP_CALL_DOWN, msg ? msg : "the MCP server is not running");
        free(msg);
    }
    return call;
}

void ad_mcp_call_cancel(ad_mcp_call *call, const char *reason)
{
    if (!call)
        return;
    ad_mcp_client *c = call->c;
    if (call->id && !call->fail_now && c->conn == CONN_OPEN)
        send_cancelled(c, call->id, reason);
    uv_timer_stop(&call->timer);
    drop_call(call);
}

/* ---- tool lists ---------------------------------------------------------- */

static void free_tools(ad_mcp_tool *tools, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_object_put(tools[i].raw);
    free(tools);
}

static json_object *default_schema(void)
{
    json_object *s = json_object_new_object();
    json_object_object_add(s, "type", json_object_new_string("object"));
    return s;
}

/* Replaces the tool list with raw (an array; stolen) when it differs. */
static void install_list(ad_mcp_client *c, json_object *raw)
{
    if (c->tools_raw && json_object_equal(c->tools_raw, raw)) {
        json_object_put(raw);
        return;
    }
    size_t n = json_object_array_length(raw), k = 0;
    ad_mcp_tool *tools = calloc(n ? n : 1, sizeof *tools);
    if (!tools) {
        json_object_put(raw);
        logf_(c, AD_MCP_LOG_ERROR, NULL, "out of memory for the tool list");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(raw, i);
        const char *name = json_object_is_type(o, json_type_object) ? ad_json_str(o, "name") : NULL;
        if (!name || !name[0]) {
            logf_(c, AD_MCP_LOG_WARN, NULL, "tools/list entry %zu has no name: left out", i);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(tools[j].name, name) == 0;
        if (dup) {
            logf_(c, AD_MCP_LOG_WARN, NULL, "the tool '%s' is listed twice: the first is kept",
                  name);
            continue;
        }
        ad_mcp_tool *t = &tools[k++];
        t->raw = json_object_get(o);
        t->name = name;
        t->title = ad_json_str(o, "title");
        t->description = ad_json_str(o, "description");
        if (!t->description)
            t->description = "";
        json_object *s = NULL, *exec = NULL;
        if (json_object_object_get_ex(o, "inputSchema", &s) && json_object_is_type(s, json_type_object)) {
            t->input_schema = s;
        } else {
            if (!c->default_schema)
                c->default_schema = default_schema();
            t->input_schema = c->default_schema;
            logf_(c, AD_MCP_LOG_INFO, NULL, "the tool '%s' has no inputSchema object: {\"type\": "
                                            "\"object\"} is used",
                  name);
        }
        if (json_object_object_get_ex(o, "outputSchema", &s) && json_object_is_type(s, json_type_object))
            t->output_schema = s;
        if (json_object_object_get_ex(o, "execution", &exec)) {
            const char *ts = ad_json_str(exec, "taskSupport");
            t->needs_tasks = ts && strcmp(ts, "required") == 0;
        }
    }
    free_tools(c->tools, c->ntools);
    json_object_put(c->tools_raw);
    c->tools = tools;
    c->ntools = k;
    c->tools_raw = raw;
    c->gen++;
    if (!c->closing && c->cb.on_tools)
        c->cb.on_tools(c->ud, c);
}

static void clear_tools(ad_mcp_client *c)
{
    if (!c->tools_raw)
        return;
    free_tools(c->tools, c->ntools);
    json_object_put(c->tools_raw);
    c->tools = NULL;
    c->ntools = 0;
    c->tools_raw = NULL;
    c->gen++;
    if (!c->closing && c->cb.on_tools)
        c->cb.on_tools(c->ud, c);
}

static void send_list(ad_mcp_client *c, const char *cursor)
{
    c->list_id = ad_rpc_next_id(&c->ids);
    json_object *p = NULL;
    if (cursor) {
        p = json_object_new_object();
        json_object_object_add(p, "cursor", json_object_new_string(cursor));
    }
    send_request(c, c->list_id, "tools/list", p);
    json_object_put(p);
}

static void on_req_timer(uv_timer_t *tm);

static void start_list(ad_mcp_client *c)
{
    json_object_put(c->list_acc);
    c->list_acc = json_object_new_array();
    free(c->last_cursor);
    c->last_cursor = NULL;
    c->pages = 0;
    c->relist = false;
    if (c->state == AD_MCP_READY && c->request_timeout_s > 0)
        uv_timer_start(&c->req_timer, on_req_timer, (uint64_t)(c->request_timeout_s * 1000), 0);
    send_list(c, NULL);
}

/* ---- attempts ------------------------------------------------------------ */

static void start_attempt(ad_mcp_client *c);
static void close_finish(ad_mcp_client *c);

static void on_backoff(uv_timer_t *tm)
{
    start_attempt(tm->data);
}

static void decide(ad_mcp_client *c, bool permanent)
{
    if (c->closing)
        return;
    if (permanent || c->attempts >= c->max_restarts) {
        c->state = AD_MCP_FAILED;
        fail_calls(c, true, c->error ? c->error : "the MCP server is not running");
        if (c->closing)
            return;
        clear_tools(c);
        if (c->closing)
            return;
        set_state(c, AD_MCP_FAILED, c->error);
        return;
    }
    c->attempts++;
    double wait = c->backoff_s;
    c->backoff_s = c->backoff_s * 2 > c->backoff_max_s ? c->backoff_max_s : c->backoff_s * 2;
    char msg[256];
    snprintf(msg, sizeof msg, "restarting in %gs (attempt %d of %d)", wait, c->attempts,
             c->max_restarts);
    logf_(c, AD_MCP_LOG_WARN, NULL, "%s; %s", c->error ? c->error : "the server is down", msg);
    uv_timer_start(&c->backoff, on_backoff, (uint64_t)(wait * 1000), 0);
    set_state(c, AD_MCP_RESTARTING, c->error);
}

static void on_conn_stopped(void *ud)
{
    ad_mcp_client *c = ud;
    c->conn = CONN_DOWN;
    if (c->closing)
        close_finish(c);
    else
        decide(c, c->pending_permanent);
}

/* The attempt failed (msg: why, stolen). */
static void attempt_failed(ad_mcp_client *c, char *msg, bool permanent)
{
    uv_timer_stop(&c->startup);
    uv_timer_stop(&c->req_timer);
    c->init_id = c->list_id = 0;
    json_object_put(c->list_acc);
    c->list_acc = NULL;
    free(c->error);
    c->error = msg;
    bool restart = !permanent && c->attempts < c->max_restarts;
    /* Calls that went out end now; those still waiting wait for the next
     * attempt, if there is one. */
    fail_calls(c, !restart, msg ? msg : "the MCP server failed");
    if (c->closing)
        return;
    if (c->conn == CONN_OPEN) {
        c->conn = CONN_STOPPING;
        c->pending_permanent = permanent;
        c->t->vt->stop(c->t, on_conn_stopped, c);
        return;
    }
    if (c->conn == CONN_DOWN)
        decide(c, permanent);
}

static void became_ready(ad_mcp_client *c)
{
    uv_timer_stop(&c->startup);
    c->state = AD_MCP_READY;
    c->ready_at = uv_now(c->loop);
    free(c->error);
    c->error = NULL;
    flush_queued(c);
    set_state(c, AD_MCP_READY, NULL);
}

static void on_startup_timer(uv_timer_t *tm)
{
    ad_mcp_client *c = tm->data;
    char base[256];
    snprintf(base, sizeof base,
             "the MCP server '%s' did not finish starting (initialize and tools/list) within %gs",
             c->name, c->startup_timeout_s);
    attempt_failed(c, with_tail(c, base), false);
}

static void on_req_timer(uv_timer_t *tm)
{
    ad_mcp_client *c = tm->data;
    if (!c->list_id)
        return;
    send_cancelled(c, c->list_id, "timed out");
    c->list_id = 0;
    json_object_put(c->list_acc);
    c->list_acc = NULL;
    logf_(c, AD_MCP_LOG_WARN, NULL,
          "tools/list did not answer within %gs: the tools listed before stay", c->request_timeout_s);
}

static void start_attempt(ad_mcp_client *c)
{
    if (c->closing)
        return;
    set_state(c, AD_MCP_STARTING, NULL);
    if (c->closing)
        return;
    char err[1024];
    if (c->t->vt->open(c->t, err, sizeof err) != AD_OK) {
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "the MCP server '%s': %s", c->name, err);
        attempt_failed(c, b.data, false);
        return;
    }
    c->conn = CONN_OPEN;
    c->skipped = 0;
    if (c->startup_timeout_s > 0)
        uv_timer_start(&c->startup, on_startup_timer, (uint64_t)(c->startup_timeout_s * 1000), 0);
    json_object *p = json_object_new_object(), *info = json_object_new_object();
    json_object_object_add(p, "protocolVersion", json_object_new_string(AD_MCP_PROTOCOL));
    json_object_object_add(p, "capabilities", json_object_new_object());
    json_object_object_add(info, "name", json_object_new_string(c->client_name));
    json_object_object_add(info, "version", json_object_new_string(c->client_version));
    json_object_object_add(p, "clientInfo", info);
    c->init_id = ad_rpc_next_id(&c->ids);
    send_request(c, c->init_id, "initialize", p);
    json_object_put(p);
}

void ad_mcp_client_start(ad_mcp_client *c)
{
    if (c->state != AD_MCP_IDLE || c->closing)
        return;
    uv_timer_start(&c->backoff, on_backoff, 0, 0);
}

/* ---- what the server sends ---------------------------------------------- */

static char *rpc_error_text(ad_mcp_client *c, const char *what, const ad_rpc_msg *m)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "the MCP server '%s' answered %s with error %lld: %s", c->name, what,
                  (long long)m->code, m->message[0] ? m->message : "(no message)");
    return b.data;
}

static void on_init_response(ad_mcp_client *c, const ad_rpc_msg *m)
{
    c->init_id = 0;
    if (m->kind == AD_RPC_ERROR) {
        attempt_failed(c, rpc_error_text(c, "initialize", m), false);
        return;
    }
    const char *v = json_object_is_type(m->result, json_type_object)
                        ? ad_json_str(m->result, "protocolVersion")
                        : NULL;
    bool known = false;
    for (size_t i = 0; v && i < sizeof known_versions / sizeof known_versions[0]; i++)
        known |= strcmp(v, known_versions[i]) == 0;
    if (!known) {
        ad_buf b = AD_BUF_INIT;
        if (v)
            ad_buf_printf(&b, "the MCP server '%s' answered initialize with protocol version "
                              "'%.80s', which agentd does not speak (it speaks 2025-11-25, "
                              "2025-06-18, 2025-03-26 and 2024-11-05)",
                          c->name, v);
        else
            ad_buf_printf(&b, "the MCP server '%s' answered initialize without a protocolVersion",
                          c->name);
        attempt_failed(c, b.data, true);
        return;
    }
    free(c->protocol);
    c->protocol = ad_strdup(v);
    json_object_put(c->server_info);
    c->server_info = NULL;
    json_object *si = NULL;
    if (json_object_object_get_ex(m->result, "serverInfo", &si) &&
        json_object_is_type(si, json_type_object))
        c->server_info = json_object_get(si);
    free(c->instructions);
    const char *ins = ad_json_str(m->result, "instructions");
    c->instructions = ins ? ad_strdup(ins) : NULL;
    send_notification(c, "notifications/initialized", NULL);
    start_list(c);
}

static void list_done(ad_mcp_client *c)
{
    uv_timer_stop(&c->req_timer);
    json_object *raw = c->list_acc;
    c->list_acc = NULL;
    bool first = c->state == AD_MCP_STARTING;
    install_list(c, raw ? raw : json_object_new_array());
    if (c->closing)
        return;
    if (first)
        became_ready(c);
    if (!c->closing && c->state == AD_MCP_READY && c->relist)
        start_list(c);
}

static void on_list_response(ad_mcp_client *c, const ad_rpc_msg *m)
{
    c->list_id = 0;
    bool starting = c->state == AD_MCP_STARTING;
    if (m->kind == AD_RPC_ERROR) {
        if (m->code == AD_RPC_METHOD_NOT_FOUND && c->pages == 0) {
            /* A server without tools. */
            json_object_put(c->list_acc);
            c->list_acc = json_object_new_array();
            list_done(c);
            return;
        }
        char *msg = rpc_error_text(c, "tools/list", m);
        if (starting) {
            attempt_failed(c, msg, false);
            return;
        }
        uv_timer_stop(&c->req_timer);
        logf_(c, AD_MCP_LOG_WARN, NULL, "%s: the tools listed before stay", msg);
        free(msg);
        json_object_put(c->list_acc);
        c->list_acc = NULL;
        return;
    }
    json_object *tools = NULL;
    if (!json_object_is_type(m->result, json_type_object) ||
        !json_object_object_get_ex(m->result, "tools", &tools) ||
        !json_object_is_type(tools, json_type_array)) {
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "the MCP server '%s' answered tools/list without a \"tools\" array",
                      c->name);
        if (starting) {
            attempt_failed(c, b.data, false);
            return;
        }
        logf_(c, AD_MCP_LOG_WARN, NULL, "%s: the tools listed before stay", b.data);
        ad_buf_free(&b);
        uv_timer_stop(&c->req_timer);
        return;
    }
    if (!c->list_acc)
        return; /* the listing was given up (its timeout) */
    for (size_t i = 0; i < json_object_array_length(tools); i++)
        json_object_array_add(c->list_acc, json_object_get(json_object_array_get_idx(tools, i)));
    c->pages++;
    const char *cursor = ad_json_str(m->result, "nextCursor");
    if (cursor && cursor[0]) {
        if (c->pages >= MAX_PAGES || (c->last_cursor && strcmp(c->last_cursor, cursor) == 0)) {
            logf_(c, AD_MCP_LOG_WARN, NULL,
                  "tools/list: %s; the %zu tools listed so far are used",
                  c->pages >= MAX_PAGES ? "more than 1000 pages" : "the same cursor twice",
                  json_object_array_length(c->list_acc));
            list_done(c);
            return;
        }
        free(c->last_cursor);
        c->last_cursor = ad_strdup(cursor);
        send_list(c, cursor);
        return;
    }
    list_done(c);
}

static void on_call_response(ad_mcp_client *c, ad_mcp_call *call, const ad_rpc_msg *m)
{
    if (m->kind == AD_RPC_ERROR) {
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "the MCP server '%s' answered the call of '%s' with error %lld: %s",
                      c->name, call->tool, (long long)m->code,
                      m->message[0] ? m->message : "(no message)");
        end_call(call, AD_MCP_CALL_ERROR, NULL, m->code, b.data ? b.data : "error");
        ad_buf_free(&b);
        return;
    }
    if (!json_object_is_type(m->result, json_type_object)) {
        char msg[256];
        snprintf(msg, sizeof msg, "the MCP server '%s' answered the call of '%s' with a result "
                                  "that is not an object",
                 c->name, call->tool);
        end_call(call, AD_MCP_CALL_ERROR, NULL, AD_RPC_INTERNAL_ERROR, msg);
        return;
    }
    end_call(call, AD_MCP_CALL_OK, m->result, 0, NULL);
}

static int log_level(const char *level)
{
    if (!level)
        return AD_MCP_LOG_INFO;
    if (strcmp(level, "debug") == 0)
        return AD_MCP_LOG_DEBUG;
    if (strcmp(level, "info") == 0 || strcmp(level, "notice") == 0)
        return AD_MCP_LOG_INFO;
    if (strcmp(level, "warning") == 0)
        return AD_MCP_LOG_WARN;
    return AD_MCP_LOG_ERROR;
}

static void on_notification(ad_mcp_client *c, const ad_rpc_msg *m)
{
    if (strcmp(m->method, "notifications/tools/list_changed") == 0) {
        /* A listing under way may be stale: another follows it. Before
         * initialize is answered, the first listing is still to come. */
        if (c->list_id)
            c->relist = true;
        else if (c->state == AD_MCP_READY)
            start_list(c);
        return;
    }
    if (strcmp(m->method, "notifications/progress") == 0) {
        json_object *tok = NULL, *v = NULL;
        int64_t id;
        if (!m->params || !json_object_object_get_ex(m->params, "progressToken", &tok) ||
            !ad_rpc_id_int(tok, &id))
            return;
        ad_mcp_call *call = find_call(c, id);
        if (!call || !call->cb.on_progress)
            return;
        double progress = 0, total = 0;
        if (json_object_object_get_ex(m->params, "progress", &v))
            progress = json_object_get_double(v);
        if (json_object_object_get_ex(m->params, "total", &v))
            total = json_object_get_double(v);
        call->cb.on_progress(call->ud, progress, total, ad_json_str(m->params, "message"));
        return;
    }
    if (strcmp(m->method, "notifications/message") == 0) {
        json_object *data = NULL;
        if (!m->params)
            return;
        json_object_object_get_ex(m->params, "data", &data);
        const char *text = json_object_is_type(data, json_type_string)
                               ? json_object_get_string(data)
                               : json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
                                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
        logf_(c, log_level(ad_json_str(m->params, "level")), ad_json_str(m->params, "logger"), "%s",
              text);
        return;
    }
    /* notifications/cancelled (of a request of the server's: answered at
     * once anyway), resources and prompts updates: nothing to do. */
}

static void answer(ad_mcp_client *c, char *text, size_t len)
{
    send_text(c, text, len);
}

static void on_request(ad_mcp_client *c, const ad_rpc_msg *m)
{
    size_t len = 0;
    char *text;
    if (strcmp(m->method, "ping") == 0) {
        text = ad_rpc_result(m->id, NULL, &len);
        answer(c, text, len);
        return;
    }
    /* roots/list, sampling/createMessage, elicitation/create: agentd
     * declares none of these capabilities. */
    char msg[160];
    snprintf(msg, sizeof msg, "Method not found: %.100s", m->method);
    text = ad_rpc_error(m->id, AD_RPC_METHOD_NOT_FOUND, msg, NULL, &len);
    answer(c, text, len);
}

static void on_t_message(void *ud, const char *text, size_t len)
{
    ad_mcp_client *c = ud;
    if (c->closing)
        return;
    ad_rpc_msg m;
    json_object *bad_id = NULL;
    char err[256];
    if (ad_rpc_parse(text, len, &m, &bad_id, err, sizeof err) != AD_OK) {
        if (bad_id) {
            size_t n = 0;
            char *reply = ad_rpc_error(bad_id, AD_RPC_INVALID_REQUEST, err, NULL, &n);
            answer(c, reply, n);
            json_object_put(bad_id);
        }
        /* A server that floods its stdout does not flood agentd's log. */
        if (++c->skipped <= SKIPS_SHOWN)
            logf_(c, AD_MCP_LOG_WARN, NULL, "skipped %s (%s): %.*s%s",
                  strcmp(c->t->vt->kind, "stdio") == 0 ? "a line on the server's stdout"
                                                       : "a message from the server",
                  err, len > 200 ? 200 : (int)len, text, len > 200 ? "..." : "");
        if (c->skipped == SKIPS_SHOWN)
            logf_(c, AD_MCP_LOG_WARN, NULL,
                  "%d lines skipped: further ones are not shown (until the server restarts)",
                  SKIPS_SHOWN);
        return;
    }
    int64_t id = 0;
    switch (m.kind) {
    case AD_RPC_REQUEST:
        on_request(c, &m);
        break;
    case AD_RPC_NOTIFICATION:
        on_notification(c, &m);
        break;
    default:
        if (!ad_rpc_id_int(m.id, &id) || id <= 0) {
            if (m.kind == AD_RPC_ERROR)
                logf_(c, AD_MCP_LOG_WARN, NULL, "the server sent error %lld: %s", (long long)m.code,
                      m.message);
            break;
        }
        if (id == c->init_id) {
            on_init_response(c, &m);
        } else if (id == c->list_id) {
            on_list_response(c, &m);
        } else {
            ad_mcp_call *call = find_call(c, id);
            if (call)
                on_call_response(c, call, &m);
            /* else: a response to a request given up (a cancelled call):
             * dropped, as the specification asks */
        }
        break;
    }
    ad_rpc_msg_free(&m);
}

static void on_t_log(void *ud, int level, const char *line)
{
    ad_mcp_client *c = ud;
    /* Over stdio, what comes at info level is the server's stderr. */
    bool stdio = strcmp(c->t->vt->kind, "stdio") == 0;
    logf_(c, level, stdio && level == AD_MCP_LOG_INFO ? "stderr" : NULL, "%s", line);
}

/* A request that the transport could not carry to its end (Streamable
 * HTTP: an error status, a broken answer): it fails now, not at its
 * timeout. */
static void on_t_request_failed(void *ud, int64_t id, const char *why)
{
    ad_mcp_client *c = ud;
    if (c->closing || id <= 0)
        return;
    ad_buf b = AD_BUF_INIT;
    if (id == c->init_id) {
        c->init_id = 0;
        ad_buf_printf(&b, "the MCP server '%s' did not answer initialize: %s", c->name, why);
        attempt_failed(c, b.data, false);
        return;
    }
    if (id == c->list_id) {
        c->list_id = 0;
        ad_buf_printf(&b, "the MCP server '%s' did not answer tools/list: %s", c->name, why);
        if (c->state == AD_MCP_STARTING) {
            attempt_failed(c, b.data, false);
            return;
        }
        uv_timer_stop(&c->req_timer);
        json_object_put(c->list_acc);
        c->list_acc = NULL;
        logf_(c, AD_MCP_LOG_WARN, NULL, "%s: the tools listed before stay", b.data);
        ad_buf_free(&b);
        return;
    }
    ad_mcp_call *call = find_call(c, id);
    if (call) {
        ad_buf_printf(&b, "the MCP server '%s' did not answer the call of '%s': %s", c->name,
                      call->tool, why);
        end_call(call, AD_MCP_CALL_DOWN, NULL, 0, b.data ? b.data : why);
    }
    ad_buf_free(&b);
}

/* The server's session was replaced: its tool list may be another. */
static void on_t_session(void *ud)
{
    ad_mcp_client *c = ud;
    if (c->closing)
        return;
    logf_(c, AD_MCP_LOG_INFO, NULL, "a new session with the server: listing its tools again");
    if (c->list_id)
        c->relist = true;
    else if (c->state == AD_MCP_READY)
        start_list(c);
}

/* A message too long to read: when it begins like the answer to a call
 * ({"jsonrpc":"2.0","id":N,... as every SDK writes it, "id" early), that
 * call fails now rather than at its timeout. */
static void on_t_oversize(void *ud, const char *head, size_t headlen, size_t total, size_t limit)
{
    ad_mcp_client *c = ud;
    if (c->closing)
        return;
    const char *end = head + headlen;
    for (const char *p = head; p + 5 <= end; p++) {
        if (memcmp(p, "\"id\"", 4) != 0)
            continue;
        p += 4;
        while (p < end && (*p == ' ' || *p == ':'))
            p++;
        int64_t id = 0;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 18) {
            id = id * 10 + (*p++ - '0');
            digits++;
        }
        ad_mcp_call *call = digits && p < end && (*p == ',' || *p == '}' || *p == ' ')
                                ? find_call(c, id)
                                : NULL;
        if (call) {
            char msg[512];
            snprintf(msg, sizeof msg,
                     "the MCP server '%s' answered the call of '%s' with a message of %zu bytes, "
                     "longer than the limit of %zu bytes ([limits] max_response_bytes)",
                     c->name, call->tool, total, limit);
            end_call(call, AD_MCP_CALL_ERROR, NULL, AD_RPC_INTERNAL_ERROR, msg);
        }
        return; /* only the first "id" can be the message's own */
    }
}

static void on_t_closed(void *ud, const char *why)
{
    ad_mcp_client *c = ud;
    if (c->closing)
        return; /* a stop is under way: on_conn_stopped finishes */
    c->conn = CONN_DOWN;
    bool was_ready = c->state == AD_MCP_READY;
    if (was_ready && uv_now(c->loop) - c->ready_at >= READY_RESET_MS) {
        c->attempts = 0;
        c->backoff_s = c->backoff_initial_s;
    }
    char base[512];
    snprintf(base, sizeof base, "the MCP server '%s' %s%s", c->name, why,
             was_ready ? "" : " while starting");
    attempt_failed(c, with_tail(c, base), false);
}

/* ---- the client ---------------------------------------------------------- */

ad_mcp_client *ad_mcp_client_new(uv_loop_t *loop, ad_mcp_transport *t,
                                 const ad_mcp_client_opts *o, const ad_mcp_client_cb *cb,
                                 void *ud)
{
    ad_mcp_client *c = calloc(1, sizeof *c);
    if (!c) {
        t->vt->free(t);
        return NULL;
    }
    c->loop = loop;
    c->t = t;
    c->name = ad_strdup(o->name ? o->name : "?");
    c->client_name = ad_strdup(o->client_name ? o->client_name : "agentd");
    c->client_version = ad_strdup(o->client_version ? o->client_version : AGENTD_VERSION);
    if (!c->name || !c->client_name || !c->client_version) {
        free(c->name);
        free(c->client_name);
        free(c->client_version);
        free(c);
        t->vt->free(t);
        return NULL;
    }
    c->startup_timeout_s = o->startup_timeout_s;
    c->request_timeout_s = o->request_timeout_s > 0 ? o->request_timeout_s : o->startup_timeout_s;
    c->max_restarts = o->max_restarts > 0 ? o->max_restarts : 0;
    c->backoff_initial_s = o->backoff_initial_s > 0 ? o->backoff_initial_s : 1;
    c->backoff_max_s = o->backoff_max_s > 0 ? o->backoff_max_s : 30;
    c->backoff_s = c->backoff_initial_s;
    if (cb)
        c->cb = *cb;
    c->ud = ud;
    c->tcb.on_message = on_t_message;
    c->tcb.on_log = on_t_log;
    c->tcb.on_oversize = on_t_oversize;
    c->tcb.on_closed = on_t_closed;
    c->tcb.on_request_failed = on_t_request_failed;
    c->tcb.on_session = on_t_session;
    t->cb = &c->tcb;
    t->ud = c;
    uv_timer_init(loop, &c->startup);
    uv_timer_init(loop, &c->backoff);
    uv_timer_init(loop, &c->req_timer);
    c->startup.data = c->backoff.data = c->req_timer.data = c;
    return c;
}

static void on_timer_closed(uv_handle_t *h)
{
    ad_mcp_client *c = h->data;
    if (--c->handles > 0)
        return;
    void (*done)(void *) = c->on_closed;
    void *ud = c->closed_ud;
    free_tools(c->tools, c->ntools);
    json_object_put(c->tools_raw);
    json_object_put(c->default_schema);
    json_object_put(c->list_acc);
    json_object_put(c->server_info);
    free(c->last_cursor);
    free(c->error);
    free(c->protocol);
    free(c->instructions);
    free(c->name);
    free(c->client_name);
    free(c->client_version);
    free(c);
    if (done)
        done(ud);
}

static void close_finish(ad_mcp_client *c)
{
    if (c->handles)
        return; /* already under way */
    c->t->vt->free(c->t);
    c->t = NULL;
    c->handles = 3;
    uv_close((uv_handle_t *)&c->startup, on_timer_closed);
    uv_close((uv_handle_t *)&c->backoff, on_timer_closed);
    uv_close((uv_handle_t *)&c->req_timer, on_timer_closed);
}

void ad_mcp_client_close(ad_mcp_client *c, void (*on_closed)(void *ud), void *ud)
{
    if (c->closing)
        return;
    c->closing = true;
    c->state = AD_MCP_CLOSING;
    c->on_closed = on_closed;
    c->closed_ud = ud;
    while (c->calls) {
        ad_mcp_call *call = c->calls;
        if (call->id && !call->fail_now && c->conn == CONN_OPEN)
            send_cancelled(c, call->id, "the session is closing");
        uv_timer_stop(&call->timer);
        drop_call(call);
    }
    uv_timer_stop(&c->startup);
    uv_timer_stop(&c->backoff);
    uv_timer_stop(&c->req_timer);
    if (c->conn == CONN_OPEN) {
        c->conn = CONN_STOPPING;
        c->t->vt->stop(c->t, on_conn_stopped, c);
    } else if (c->conn == CONN_DOWN) {
        close_finish(c); /* on_closed comes from the timers' close callbacks */
    }
    /* CONN_STOPPING: on_conn_stopped finishes. */
}

ad_mcp_state ad_mcp_client_state(const ad_mcp_client *c)
{
    return c->state;
}

const char *ad_mcp_client_error(const ad_mcp_client *c)
{
    return c->error;
}

const char *ad_mcp_client_protocol(const ad_mcp_client *c)
{
    return c->protocol;
}

json_object *ad_mcp_client_server_info(const ad_mcp_client *c)
{
    return c->server_info;
}

const char *ad_mcp_client_instructions(const ad_mcp_client *c)
{
    return c->instructions;
}

size_t ad_mcp_client_tool_count(const ad_mcp_client *c)
{
    return c->ntools;
}

const ad_mcp_tool *ad_mcp_client_tool(const ad_mcp_client *c, size_t i)
{
    return i < c->ntools ? &c->tools[i] : NULL;
}

const ad_mcp_tool *ad_mcp_client_find_tool(const ad_mcp_client *c, const char *name)
{
    for (size_t i = 0; i < c->ntools; i++)
        if (strcmp(c->tools[i].name, name) == 0)
            return &c->tools[i];
    return NULL;
}

uint64_t ad_mcp_client_generation(const ad_mcp_client *c)
{
    return c->gen;
}

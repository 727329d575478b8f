/*
 * api.c -- the Responses API and Chat Completions of agentd serve (see
 * api.h).
 *
 * Objects: a conversation (conv) owns its agent, its event hub and the two
 * sinks on it; a response (resp) is one run of a conversation and what
 * clients see of it: the builder of its events (respond.h or chat.h), the
 * clients streaming it (sub), a client waiting for it whole, and for a
 * background response the events sent so far (to resume a stream).
 *
 * A run's life: POST -> conversation found, forked or made -> resp ->
 * ad_agent_run. Its events reach the out sink in order; the END event
 * closes the response: the final object is queued for the store and, once
 * written, the final event goes out and the waiting clients are answered.
 * The conversation is free for its next run from END on.
 *
 * Conversations with nothing in flight are dropped from memory after
 * IDLE_EVICT_S; continuing one reads it back from the store.
 */
#include "serve/api.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/json.h"
#include "core/agent.h"
#include "core/conv.h"
#include "core/events.h"
#include "serve/chat.h"
#include "serve/http.h"
#include "serve/input.h"
#include "serve/respond.h"
#include "serve/jsonw.h"

#define IDLE_EVICT_S 30.0
#define SWEEP_MS 1000
#define BUCKETS 4096
/* The events a background response keeps for resumption. */
#define MAX_LOG_BYTES (64u << 20)

enum { API_RESPONSES, API_CHAT };

typedef struct conv conv;
typedef struct resp resp;

/* A request following a response: streaming it (on the response's subs)
 * or waiting for it whole (on its waiters). */
typedef struct client {
    struct client *next;
    ad_http_req *req;
    resp *r;
    bool owner; /* the request that started the run */
    bool whole; /* a waiter */
    bool full;  /* a stream told to wait (AD_HTTP_FULL) */
} client;

typedef struct out_sink {
    ad_sink base;
    conv *c;
} out_sink;

struct resp {
    resp *hnext;
    char id[64];
    conv *c;
    int api;
    ad_rsp *rsp;
    ad_chat *chat;
    bool background, stream, store;
    char *prev; /* previous_response_id */
    client *subs;
    size_t nfull;
    client *waiters; /* whole answers: the POST without stream, cancel calls */
    bool running;    /* the run is in flight (until its END) */
    bool agent_done; /* the agent reported the end (its resources are free) */
    bool ended, final;
    int status;
    size_t nmsg_end;
    ad_buf log;        /* background: every SSE frame sent */
    size_t *log_at;    /* where each event starts in log */
    size_t nlog;
    bool log_full;
};

struct conv {
    conv *hnext;
    conv *prev, *next;
    char id[64];
    const struct profile *prof;
    ad_serve *srv;
    ad_agent *agent;
    ad_events *hub;
    out_sink store_sink, out;
    size_t nmsg;
    bool stored;
    bool loading; /* history read back from the store: not written again */
    bool transient; /* a chat completion: gone after its answer */
    resp *run;
    resp **resps;
    size_t nresps;
    double idle_since;
    bool paused;
};

typedef struct profile {
    char *name;
    ad_config cfg; /* the server's, with the profile's settings */
    const ad_serve_profile *p;
} profile;

struct ad_serve {
    uv_loop_t *loop;
    const ad_config *cfg;
    ad_transport *transport;
    ad_tool_host *tools;
    ad_serve_store *store;
    FILE *log;
    ad_http_server *http;
    profile *profiles;
    size_t nprofiles;
    conv *convs;
    conv *conv_hash[BUCKETS];
    resp *resp_hash[BUCKETS];
    size_t running;
    size_t committing;
    uv_timer_t sweep, drain_timer;
    bool draining, http_idle;
    void (*on_drained)(void *);
    void *drained_ud;
    int open_handles;
    bool freeing;
    ad_buf frame; /* the SSE frame being sent (one at a time, for every response) */
};

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note(ad_serve *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(ad_serve *s, const char *fmt, ...)
{
    if (!s->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("agentd: ", s->log);
    vfprintf(s->log, fmt, ap);
    fputc('\n', s->log);
    va_end(ap);
    fflush(s->log);
}

static unsigned hash_str(const char *k)
{
    uint32_t h = 2166136261u;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h % BUCKETS;
}

static conv *conv_find(ad_serve *s, const char *id)
{
    for (conv *c = s->conv_hash[hash_str(id)]; c; c = c->hnext)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static resp *resp_find(ad_serve *s, const char *id)
{
    for (resp *r = s->resp_hash[hash_str(id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void resp_unhash(ad_serve *s, resp *r)
{
    for (resp **pp = &s->resp_hash[hash_str(r->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == r) {
            *pp = r->hnext;
            return;
        }
}

static const profile *profile_of(const ad_serve *s, const char *name)
{
    if (!name)
        return &s->profiles[0];
    for (size_t i = 0; i < s->nprofiles; i++)
        if (strcmp(s->profiles[i].name, name) == 0)
            return &s->profiles[i];
    return NULL;
}

static int error(ad_http_req *req, int status, const char *type, const char *code, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
static int error(ad_http_req *req, int status, const char *type, const char *code, const char *fmt,
                 ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ad_http_error(req, status, type, code, msg);
}

static int respond_json(ad_http_req *req, int status, const char *json, size_t len)
{
    return ad_http_respond(req, status, "application/json", json, len, NULL);
}

static void check_drained(ad_serve *s);

static void too_many_runs(ad_http_req *req)
{
    static const char body[] =
        "{\"error\":{\"message\":\"too many runs at once (serve.max_runs)\","
        "\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"too_many_runs\"}}";
    ad_http_respond(req, 429, "application/json", body, sizeof body - 1, "Retry-After: 1\r\n");
}

/* ---- conversations ------------------------------------------------------ */

static void resp_free(resp *r);

static int store_event(ad_sink *sk, const ad_event *ev)
{
    conv *c = ((out_sink *)sk)->c;
    ad_serve *s = c->srv;
    if (ev->kind == AD_EV_MESSAGE) {
        if (!c->loading && c->stored && s->store) {
            size_t len;
            const char *t = json_object_to_json_string_length(
                ev->message, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
            ad_serve_store_message(s->store, c->id, c->nmsg, t, len);
        }
        if (!c->loading)
            c->nmsg++;
    } else if (ev->kind == AD_EV_HISTORY) {
        size_t n = json_object_array_length(ev->message);
        if (!c->loading && c->stored && s->store)
            for (size_t i = 0; i < n; i++) {
                size_t len;
                const char *t = json_object_to_json_string_length(
                    json_object_array_get_idx(ev->message, i),
                    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
                ad_serve_store_message(s->store, c->id, i, t, len);
            }
        c->nmsg = n;
    }
    return AD_SINK_OK;
}

static void resp_on_end(resp *r, int status);

static int out_event(ad_sink *sk, const ad_event *ev)
{
    conv *c = ((out_sink *)sk)->c;
    resp *r = c->run;
    if (!r)
        return AD_SINK_OK;
    if (ev->kind == AD_EV_END) {
        resp_on_end(r, ev->status);
        return AD_SINK_OK;
    }
    if (r->api == API_CHAT)
        ad_chat_event(r->chat, ev);
    else
        ad_rsp_event(r->rsp, ev);
    if (r->nfull > 0 && c->run == r) {
        c->paused = true;
        return AD_SINK_PAUSE;
    }
    return AD_SINK_OK;
}

static const ad_sink_vt store_vt = {store_event, NULL};
static const ad_sink_vt out_vt = {out_event, NULL};

static void conv_hash_add(ad_serve *s, conv *c)
{
    unsigned h = hash_str(c->id);
    c->hnext = s->conv_hash[h];
    s->conv_hash[h] = c;
}

/* A conversation of profile p with an empty history (id NULL: a new
 * one). Its history is loaded by the caller. */
static conv *conv_new(ad_serve *s, const profile *p, const char *id, bool stored, bool transient)
{
    conv *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->prof = p;
    c->stored = stored && s->store;
    c->transient = transient;
    if (id)
        snprintf(c->id, sizeof c->id, "%s", id);
    else
        ad_jw_id(c->id, sizeof c->id, transient ? "chat" : "conv");
    c->hub = ad_events_new();
    if (!c->hub) {
        free(c);
        return NULL;
    }
    ad_events_set_secret(c->hub, s->cfg->api_key);
    ad_events_set_conv_id(c->hub, c->id);
    c->store_sink.base.vt = &store_vt;
    c->store_sink.c = c;
    c->out.base.vt = &out_vt;
    c->out.c = c;
    ad_events_add(c->hub, &c->store_sink.base);
    ad_events_add(c->hub, &c->out.base);
    /* The agent's own first message (the system prompt) is replaced by
     * the history the caller loads. */
    c->loading = true;
    ad_agent_opts ao = {s->loop, s->transport, &p->cfg, s->tools, c->hub};
    c->agent = ad_agent_new(&ao);
    c->loading = false;
    if (!c->agent ||
        (p->p && p->p->tools.set &&
         ad_agent_offer_tools(c->agent, (const char *const *)p->p->tools.v, p->p->tools.n) !=
             AD_OK)) {
        ad_agent_free(c->agent);
        ad_events_free(c->hub);
        free(c);
        return NULL;
    }
    c->next = s->convs;
    if (s->convs)
        s->convs->prev = c;
    s->convs = c;
    conv_hash_add(s, c);
    c->idle_since = now_s();
    return c;
}

static void conv_free(conv *c)
{
    ad_serve *s = c->srv;
    for (size_t i = 0; i < c->nresps; i++) {
        resp_unhash(s, c->resps[i]);
        resp_free(c->resps[i]);
    }
    free(c->resps);
    for (conv **pp = &s->conv_hash[hash_str(c->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == c) {
            *pp = c->hnext;
            break;
        }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->convs = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ad_agent_free(c->agent);
    ad_events_free(c->hub);
    free(c);
}

/* The messages as the conversation starts: a system message (the
 * request's instructions, else the profile's prompt) and the history. */
static json_object *initial_messages(const profile *p, const char *instructions,
                                     json_object *history)
{
    json_object *m = json_object_new_array();
    const char *sys = instructions ? instructions : p->cfg.system_prompt;
    if (sys && sys[0]) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "role", json_object_new_string("system"));
        json_object_object_add(o, "content", json_object_new_string(sys));
        json_object_array_add(m, o);
    }
    for (size_t i = 0; history && i < json_object_array_length(history); i++)
        json_object_array_add(m, json_object_get(json_object_array_get_idx(history, i)));
    return m;
}

/* Loads messages (read back, or copied from another conversation) into
 * c without storing them again, then stores what a repair added. */
static int conv_load(conv *c, json_object *messages, char *err, size_t errlen)
{
    size_t added = 0, dropped = 0;
    json_object *fixed = ad_conv_repair(messages, &added, &dropped);
    if (!fixed)
        return AD_ENOMEM;
    size_t n = json_object_array_length(messages);
    bool prefix = dropped == 0;
    for (size_t i = 0; prefix && i < n; i++)
        prefix = json_object_array_get_idx(fixed, i) == json_object_array_get_idx(messages, i);
    if (ad_conv_check(fixed, err, errlen) != AD_OK) {
        json_object_put(fixed);
        return AD_EINVAL;
    }
    c->loading = prefix;
    int rc = ad_agent_load_messages(c->agent, fixed);
    c->loading = false;
    if (rc == AD_OK && prefix) {
        c->nmsg = n;
        /* The results a killed process never gave: stored now. */
        for (size_t i = n; c->stored && c->srv->store && i < json_object_array_length(fixed); i++) {
            size_t len;
            const char *t = json_object_to_json_string_length(
                json_object_array_get_idx(fixed, i),
                JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
            ad_serve_store_message(c->srv->store, c->id, i, t, len);
        }
        c->nmsg = json_object_array_length(fixed);
    }
    json_object_put(fixed);
    return rc;
}

/* ---- responses: output -------------------------------------------------- */

static void log_frame(resp *r, const char *data, size_t len)
{
    if (!r->background || r->log_full)
        return;
    if (r->log.len + len > MAX_LOG_BYTES) {
        r->log_full = true;
        return;
    }
    size_t *at = realloc(r->log_at, (r->nlog + 1) * sizeof *at);
    if (!at) {
        r->log_full = true;
        return;
    }
    r->log_at = at;
    r->log_at[r->nlog++] = r->log.len;
    ad_buf_append(&r->log, data, len);
}

static void write_subs(resp *r, const char *data, size_t len)
{
    for (client *u = r->subs; u; u = u->next) {
        int rc = ad_http_sse_write(u->req, data, len);
        if (rc == AD_HTTP_FULL && !u->full) {
            u->full = true;
            r->nfull++;
        }
    }
}

/* One SSE frame, built in the server's buffer (frames are written one at
 * a time: no allocation per event, and no buffer per response). */
static void rsp_emit(void *ud, const char *type, const char *json, size_t len)
{
    resp *r = ud;
    ad_buf *f = &r->c->srv->frame;
    ad_buf_reset(f);
    ad_buf_puts(f, "event: ");
    ad_buf_puts(f, type);
    ad_buf_puts(f, "\ndata: ");
    ad_buf_append(f, json, len);
    if (ad_buf_puts(f, "\n\n") == AD_OK) {
        log_frame(r, f->data, f->len);
        write_subs(r, f->data, f->len);
    }
}

static void chat_emit(void *ud, const char *data, size_t len)
{
    resp *r = ud;
    ad_buf *f = &r->c->srv->frame;
    ad_buf_reset(f);
    ad_buf_puts(f, "data: ");
    ad_buf_append(f, data, len);
    if (ad_buf_puts(f, "\n\n") == AD_OK)
        write_subs(r, f->data, f->len);
}

static void client_unlink(client **list, client *u)
{
    for (client **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            break;
        }
}

/* No stream of r waits for its client any more: its conversation goes on. */
static void resume_if_drained(resp *r)
{
    conv *c = r->c;
    if (r->nfull == 0 && c->paused && c->run == r) {
        c->paused = false;
        ad_events_resume(c->hub, &c->out.base);
    }
}

static void client_remove(resp *r, client *u)
{
    if (u->whole) {
        client_unlink(&r->waiters, u);
        free(u);
        return;
    }
    client_unlink(&r->subs, u);
    if (u->full)
        r->nfull--;
    free(u);
    resume_if_drained(r);
}

static void on_client_gone(void *ud, ad_http_req *req)
{
    (void)req;
    client *u = ud;
    resp *r = u->r;
    bool cancel = u->owner && !r->background && r->running;
    client_remove(r, u);
    if (cancel) {
        note(r->c->srv, "%s: the client went away; cancelling its run", r->id);
        ad_agent_cancel(r->c->agent);
    }
}

static void on_sub_drain(void *ud, ad_http_req *req)
{
    (void)req;
    client *u = ud;
    resp *r = u->r;
    if (!u->full)
        return;
    u->full = false;
    r->nfull--;
    resume_if_drained(r);
}

static const ad_http_req_cb sub_cb = {on_client_gone, on_sub_drain};
static const ad_http_req_cb waiter_cb = {on_client_gone, NULL};

/* req follows r: as a stream (whole false) or waiting for the whole answer. */
static client *client_add(resp *r, ad_http_req *req, bool owner, bool whole)
{
    client *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->req = req;
    u->r = r;
    u->owner = owner;
    u->whole = whole;
    client **list = whole ? &r->waiters : &r->subs;
    u->next = *list;
    *list = u;
    ad_http_req_set_cb(req, whole ? &waiter_cb : &sub_cb, u);
    return u;
}

static void answer_whole(resp *r, ad_http_req *req)
{
    size_t len = 0;
    char *o = NULL;
    if (r->api == API_CHAT) {
        if (ad_chat_failed(r->chat)) {
            error(req, 500, "server_error", "run_failed", "%s",
                  ad_chat_error(r->chat) ? ad_chat_error(r->chat) : "the run failed");
            return;
        }
        o = ad_chat_object(r->chat, &len);
    } else {
        o = ad_rsp_object(r->rsp, &len);
    }
    if (o)
        respond_json(req, 200, o, len);
    else
        error(req, 500, "server_error", "out_of_memory", "out of memory");
    free(o);
}

/* The response is on disk (or is not stored): its final event, and the
 * answers of everybody waiting. */
static void resp_final(resp *r)
{
    if (r->final)
        return;
    r->final = true;
    if (r->api == API_RESPONSES)
        ad_rsp_emit_final(r->rsp);
    while (r->subs) {
        client *u = r->subs;
        r->subs = u->next;
        ad_http_req_set_cb(u->req, NULL, NULL);
        ad_http_sse_end(u->req);
        free(u);
    }
    r->nfull = 0;
    while (r->waiters) {
        client *w = r->waiters;
        r->waiters = w->next;
        ad_http_req_set_cb(w->req, NULL, NULL);
        answer_whole(r, w->req);
        free(w);
    }
    r->c->idle_since = now_s();
}

static void on_committed(void *ud, bool ok)
{
    resp *r = ud;
    ad_serve *s = r->c->srv;
    s->committing--;
    if (!ok)
        note(s, "%s: the response could not be stored", r->id);
    resp_final(r);
    check_drained(s);
}

static char *resp_object(resp *r, size_t *len)
{
    return r->api == API_CHAT ? ad_chat_object(r->chat, len) : ad_rsp_object(r->rsp, len);
}

/* The END event of the run, in order after every other event. */
static void resp_on_end(resp *r, int status)
{
    conv *c = r->c;
    ad_serve *s = c->srv;
    r->running = false;
    r->ended = true;
    r->status = status;
    r->nmsg_end = c->nmsg;
    c->run = NULL;
    if (c->paused) {
        /* Nothing more goes to this response; the hub delivers on. */
        c->paused = false;
        ad_events_resume(c->hub, &c->out.base);
    }
    if (r->api == API_CHAT) {
        ad_chat_end(r->chat, status, NULL);
        resp_final(r);
        return;
    }
    ad_rsp_end(r->rsp, status, NULL);
    if (r->store && c->stored && s->store) {
        size_t len;
        char *o = resp_object(r, &len);
        uint64_t job = o ? ad_serve_store_response(s->store, r->id, c->id, r->nmsg_end,
                                                   ad_rsp_status(r->rsp), o)
                         : 0;
        free(o);
        if (job && ad_serve_store_when_done(s->store, job, on_committed, r) == AD_OK) {
            s->committing++;
            return;
        }
    }
    resp_final(r);
}

static void on_run_done(void *ud, int status)
{
    (void)status;
    resp *r = ud;
    ad_serve *s = r->c->srv;
    r->agent_done = true;
    s->running--;
    check_drained(s);
}

static void resp_free(resp *r)
{
    if (!r)
        return;
    ad_serve *s = r->c->srv;
    if (s->store)
        ad_serve_store_forget(s->store, r);
    client *lists[] = {r->subs, r->waiters};
    for (size_t i = 0; i < 2; i++)
        while (lists[i]) {
            client *u = lists[i];
            lists[i] = u->next;
            ad_http_req_set_cb(u->req, NULL, NULL);
            free(u);
        }
    r->subs = r->waiters = NULL;
    ad_rsp_free(r->rsp);
    ad_chat_free(r->chat);
    free(r->prev);
    ad_buf_free(&r->log);
    free(r->log_at);
    free(r);
}

static resp *resp_new(conv *c, int api, const char *model, const char *prev,
                      const char *instructions, bool background, bool stream, bool store,
                      const ad_input *in)
{
    resp *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->api = api;
    r->background = background;
    r->stream = stream;
    r->store = store;
    double t = now_s();
    ad_jw_id(r->id, sizeof r->id, api == API_CHAT ? "chatcmpl" : "resp");
    if (api == API_CHAT) {
        /* chatcmpl-HEX: the form clients show. */
        r->id[8] = '-';
        r->chat = ad_chat_new(r->id, model, t, (const char *const *)in->tool_names, in->ntools,
                              stream ? chat_emit : NULL, r);
    } else {
        ad_rsp_opts o = {r->id,
                         model,
                         t,
                         background,
                         store,
                         prev,
                         instructions,
                         (const char *const *)in->tool_names,
                         in->ntools};
        r->rsp = ad_rsp_new(&o, rsp_emit, r);
    }
    r->prev = prev ? ad_strdup(prev) : NULL;
    resp **v = realloc(c->resps, (c->nresps + 1) * sizeof *v);
    if ((!r->rsp && !r->chat) || !v || (prev && !r->prev)) {
        if (v)
            c->resps = v;
        resp_free(r);
        return NULL;
    }
    c->resps = v;
    c->resps[c->nresps++] = r;
    unsigned h = hash_str(r->id);
    r->hnext = c->srv->resp_hash[h];
    c->srv->resp_hash[h] = r;
    return r;
}

/* ---- starting a run ----------------------------------------------------- */

/* Pending client calls of the conversation: the ids of the last assistant
 * message's tool calls that have no result yet (new array; caller puts). */
static json_object *pending_calls(json_object *msgs)
{
    json_object *ids = json_object_new_array();
    size_t n = json_object_array_length(msgs);
    for (size_t i = n; i-- > 0;) {
        json_object *m = json_object_array_get_idx(msgs, i);
        const char *role = ad_json_str(m, "role");
        if (role && strcmp(role, "tool") == 0)
            continue;
        json_object *calls = ad_json_get(m, "tool_calls");
        if (!role || strcmp(role, "assistant") != 0 || !ad_json_is(calls, json_type_array))
            break;
        for (size_t k = 0; k < json_object_array_length(calls); k++) {
            const char *id = ad_json_str(json_object_array_get_idx(calls, k), "id");
            bool answered = false;
            for (size_t j = i + 1; id && j < n && !answered; j++) {
                const char *tid = ad_json_str(json_object_array_get_idx(msgs, j), "tool_call_id");
                answered = tid && strcmp(tid, id) == 0;
            }
            if (id && !answered)
                json_object_array_add(ids, json_object_new_string(id));
        }
        break;
    }
    return ids;
}

static bool in_list(json_object *ids, const char *id)
{
    for (size_t i = 0; id && i < json_object_array_length(ids); i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(ids, i)), id) == 0)
            return true;
    return false;
}

/* Appends the request's items to a conversation that goes on: the
 * results of its pending client calls first. 0, or AD_EINVAL with err. */
static int append_input(conv *c, const ad_input *in, char *err, size_t errlen)
{
    ad_conv *cv = ad_agent_conv(c->agent);
    json_object *msgs = ad_conv_messages(cv);
    if (!msgs) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    json_object *pend = pending_calls(msgs);
    size_t n = json_object_array_length(in->messages);
    size_t answered = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(in->messages, i);
        const char *role = ad_json_str(m, "role");
        if (role && strcmp(role, "tool") == 0) {
            const char *id = ad_json_str(m, "tool_call_id");
            if (!in_list(pend, id)) {
                ad_errf(err, errlen, "function_call_output for call_id '%s', which the response "
                                     "did not ask for (or which has its output already)",
                        id ? id : "");
                json_object_put(pend);
                return AD_EINVAL;
            }
            answered++;
        } else if (answered < json_object_array_length(pend)) {
            break;
        }
    }
    if (answered < json_object_array_length(pend)) {
        const char *missing = NULL;
        for (size_t k = 0; k < json_object_array_length(pend) && !missing; k++) {
            const char *id = json_object_get_string(json_object_array_get_idx(pend, k));
            bool got = false;
            for (size_t i = 0; i < n && !got; i++) {
                const char *tid = ad_json_str(json_object_array_get_idx(in->messages, i), "tool_call_id");
                got = tid && strcmp(tid, id) == 0;
            }
            if (!got)
                missing = id;
        }
        ad_errf(err, errlen, "no function_call_output for call_id '%s': every function call of "
                             "the previous response needs its output",
                missing ? missing : "");
        json_object_put(pend);
        return AD_EINVAL;
    }
    json_object_put(pend);
    for (size_t i = 0; i < n; i++)
        if (ad_conv_append(cv, json_object_get(json_object_array_get_idx(in->messages, i))) != AD_OK)
            return AD_ENOMEM;
    return AD_OK;
}

/* The conversation a request continues (prev given), found in memory or
 * read back from the store, or forked when prev is not its latest
 * response. NULL with the HTTP error sent. */
static conv *continued(ad_serve *s, ad_http_req *req, const char *prev, const profile *want)
{
    char err[1024];
    resp *r = resp_find(s, prev);
    conv *c = r ? r->c : NULL;
    size_t nmsg = r ? r->nmsg_end : 0;
    const profile *p = c ? c->prof : NULL;
    bool stored = c ? c->stored : true;
    char conv_id[64] = "";
    if (r && !r->ended) {
        error(req, 409, "invalid_request_error", "conversation_busy",
              "response %s is still running: continue it once it ended", prev);
        return NULL;
    }
    if (!r) {
        ad_stored_response sr;
        int rc = s->store ? ad_serve_store_get_response(s->store, prev, &sr, err, sizeof err)
                          : AD_EINVAL;
        if (rc == AD_EINVAL) {
            error(req, 404, "invalid_request_error", "previous_response_not_found",
                  "previous response with id '%s' not found", prev);
            return NULL;
        }
        if (rc != AD_OK) {
            error(req, 500, "server_error", "store_error", "%s", err);
            return NULL;
        }
        if (strcmp(sr.status, "in_progress") == 0 || strcmp(sr.status, "queued") == 0) {
            ad_stored_response_free(&sr);
            error(req, 409, "invalid_request_error", "conversation_busy",
                  "response %s is still running", prev);
            return NULL;
        }
        nmsg = sr.nmessages;
        snprintf(conv_id, sizeof conv_id, "%s", sr.conv_id);
        p = profile_of(s, sr.profile);
        if (!p)
            p = &s->profiles[0];
        ad_stored_response_free(&sr);
        c = conv_find(s, conv_id);
    }
    if (want && p != want) {
        error(req, 400, "invalid_request_error", "model_mismatch",
              "response %s belongs to model '%s', not '%s'", prev, p->name, want->name);
        return NULL;
    }
    if (c && c->run) {
        error(req, 409, "invalid_request_error", "conversation_busy",
              "the conversation of response %s has a run in flight (%s): one run at a time", prev,
              c->run->id);
        return NULL;
    }
    if (c && c->nmsg == nmsg)
        return c; /* its latest state: it goes on */
    /* Read back, or a branch from an earlier point: a conversation of its
     * own from the first nmsg messages. */
    json_object *msgs = NULL;
    bool fork = true;
    if (c) {
        json_object *all = ad_agent_messages(c->agent);
        msgs = all ? json_object_new_array() : NULL;
        for (size_t i = 0; msgs && i < nmsg && i < json_object_array_length(all); i++)
            json_object_array_add(msgs, json_object_get(json_object_array_get_idx(all, i)));
        if (!msgs) {
            error(req, 500, "server_error", "out_of_memory", "out of memory");
            return NULL;
        }
    } else {
        json_object *all = NULL;
        if (ad_serve_store_messages(s->store, conv_id, SIZE_MAX, &all, err, sizeof err) != AD_OK) {
            error(req, 500, "server_error", "store_error", "%s", err);
            return NULL;
        }
        fork = json_object_array_length(all) != nmsg;
        if (fork) {
            msgs = json_object_new_array();
            for (size_t i = 0; msgs && i < nmsg && i < json_object_array_length(all); i++)
                json_object_array_add(msgs, json_object_get(json_object_array_get_idx(all, i)));
            json_object_put(all);
        } else {
            msgs = all;
        }
    }
    conv *n = conv_new(s, p, fork ? NULL : conv_id, stored, false);
    if (!n) {
        json_object_put(msgs);
        error(req, 500, "server_error", "out_of_memory", "out of memory");
        return NULL;
    }
    if (fork && n->stored)
        ad_serve_store_fork(s->store, c ? c->id : conv_id, n->id, p->name, nmsg);
    int rc = conv_load(n, msgs, err, sizeof err);
    json_object_put(msgs);
    if (rc != AD_OK) {
        conv_free(n);
        error(req, 500, "server_error", "bad_history", "the stored conversation cannot be used: %s",
              rc == AD_EINVAL ? err : "out of memory");
        return NULL;
    }
    return n;
}

static bool get_bool(json_object *o, const char *key, bool dflt, bool *bad)
{
    json_object *v = ad_json_get(o, key);
    if (!v)
        return dflt;
    if (!ad_json_is(v, json_type_boolean)) {
        *bad = true;
        return dflt;
    }
    return json_object_get_boolean(v);
}

static json_object *parse_body(ad_http_req *req)
{
    size_t len;
    const char *body = ad_http_body(req, &len);
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok) {
        error(req, 500, "server_error", "out_of_memory", "out of memory");
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t used = (size_t)json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (o && used < len && (body[used] == ' ' || body[used] == '\n' || body[used] == '\r' ||
                               body[used] == '\t'))
        used++;
    if (!o || e != json_tokener_success || used != len || !ad_json_is(o, json_type_object)) {
        json_object_put(o);
        error(req, 400, "invalid_request_error", "invalid_json",
              "the request body must be one JSON object%s%s", e != json_tokener_success ? ": " : "",
              e != json_tokener_success ? json_tokener_error_desc(e) : "");
        return NULL;
    }
    return o;
}

/* Starts the run of r: the client streams it, waits for it, or (a
 * background request without stream) gets the queued object now. */
static void start_run(resp *r, ad_http_req *req, const char *prompt, bool whole_now)
{
    conv *c = r->c;
    ad_serve *s = c->srv;
    c->run = r;
    r->running = true;
    s->running++;
    if (r->stream) {
        ad_http_sse_begin(req, NULL);
        client_add(r, req, true, false);
    } else if (!whole_now) {
        client_add(r, req, true, true);
    }
    if (r->api == API_CHAT)
        ad_chat_start(r->chat);
    else
        ad_rsp_start(r->rsp);
    if (whole_now)
        answer_whole(r, req);
    if (r->store && c->stored && s->store && r->api == API_RESPONSES) {
        size_t len;
        char *o = resp_object(r, &len);
        if (o)
            ad_serve_store_response(s->store, r->id, c->id, c->nmsg, ad_rsp_status(r->rsp), o);
        free(o);
    }
    if (ad_agent_run(c->agent, prompt, on_run_done, r) != AD_OK) {
        /* Nothing ran: the response fails at once. */
        s->running--;
        r->agent_done = true;
        resp_on_end(r, AD_RUN_FAILED);
    }
}

/* The profile a request's model (a JSON string, or NULL: the first) names;
 * NULL once req got the 404. */
static const profile *model_profile(ad_serve *s, ad_http_req *req, json_object *model)
{
    const char *mname = model ? json_object_get_string(model) : NULL;
    const profile *p = profile_of(s, mname);
    if (!p)
        error(req, 404, "invalid_request_error", "model_not_found",
              "the model '%s' does not exist here (GET /v1/models lists them)", mname);
    return p;
}

/* Whether the client's tools leave agentd's own names alone; false once
 * req got the 400. */
static bool client_tools_ok(ad_serve *s, ad_http_req *req, const ad_input *in)
{
    for (size_t i = 0; s->tools && i < in->ntools; i++)
        if (ad_tool_host_find(s->tools, in->tool_names[i])) {
            error(req, 400, "invalid_request_error", "tool_name_taken",
                  "tools: '%s' is the name of one of agentd's own tools", in->tool_names[i]);
            return false;
        }
    return true;
}

static void handle_responses(ad_serve *s, ad_http_req *req)
{
    char err[1024];
    json_object *body = parse_body(req);
    if (!body)
        return;
    bool bad = false;
    bool stream = get_bool(body, "stream", false, &bad);
    bool background = get_bool(body, "background", false, &bad);
    bool store = get_bool(body, "store", true, &bad);
    json_object *model = ad_json_get(body, "model");
    json_object *prevj = ad_json_get(body, "previous_response_id");
    json_object *instr = ad_json_get(body, "instructions");
    if (bad || (model && !ad_json_is(model, json_type_string)) ||
        (prevj && !ad_json_is(prevj, json_type_string)) ||
        (instr && !ad_json_is(instr, json_type_string))) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "invalid_type",
              "stream, background and store must be booleans; model, previous_response_id and "
              "instructions strings");
        return;
    }
    if (ad_json_get(body, "conversation")) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "unsupported_parameter",
              "'conversation' is not supported: continue with previous_response_id");
        return;
    }
    const profile *p = model_profile(s, req, model);
    if (!p) {
        json_object_put(body);
        return;
    }
    if (background && !store) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "invalid_parameter",
              "background responses must be stored (store: true)");
        return;
    }
    ad_input in;
    json_object *input = ad_json_get(body, "input");
    if (!input) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "missing_parameter", "input is required");
        return;
    }
    int rc = ad_input_responses(input, ad_json_get(body, "tools"), &in, err, sizeof err);
    if (rc != AD_OK) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "invalid_input", "%s", err);
        return;
    }
    if (!client_tools_ok(s, req, &in)) {
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    const char *prev = prevj ? json_object_get_string(prevj) : NULL;
    const char *instructions = instr ? json_object_get_string(instr) : NULL;
    conv *c = NULL;
    /* A busy conversation is a 409 whatever the load (continued()). */
    if (!prev && s->running >= (size_t)s->cfg->serve.max_runs) {
        ad_input_free(&in);
        json_object_put(body);
        too_many_runs(req);
        return;
    }
    if (prev) {
        c = continued(s, req, prev, model ? p : NULL);
        if (!c) {
            ad_input_free(&in);
            json_object_put(body);
            return;
        }
        if (s->running >= (size_t)s->cfg->serve.max_runs) {
            ad_input_free(&in);
            json_object_put(body);
            too_many_runs(req);
            return;
        }
        p = c->prof;
        int arc = append_input(c, &in, err, sizeof err);
        if (arc != AD_OK) {
            if (arc == AD_ENOMEM)
                error(req, 500, "server_error", "out_of_memory", "out of memory");
            else
                error(req, 400, "invalid_request_error", "invalid_input", "%s", err);
            ad_input_free(&in);
            json_object_put(body);
            return;
        }
        if (!in.prompt && in.messages && json_object_array_length(in.messages) == 0) {
            error(req, 400, "invalid_request_error", "invalid_input",
                  "input is empty: give a message or function_call_output items");
            ad_input_free(&in);
            json_object_put(body);
            return;
        }
    } else {
        if (!in.prompt) {
            size_t n = json_object_array_length(in.messages);
            const char *role = n ? ad_json_str(json_object_array_get_idx(in.messages, n - 1), "role")
                                 : NULL;
            if (!role || strcmp(role, "tool") != 0) {
                error(req, 400, "invalid_request_error", "invalid_input",
                      "input must end with a user message (or function_call_output items)");
                ad_input_free(&in);
                json_object_put(body);
                return;
            }
        }
        c = conv_new(s, p, NULL, store, false);
        json_object *m = c ? initial_messages(p, instructions, in.messages) : NULL;
        if (m && ad_conv_check(m, err, sizeof err) != AD_OK) {
            json_object_put(m);
            conv_free(c);
            error(req, 400, "invalid_request_error", "invalid_input", "%s", err);
            ad_input_free(&in);
            json_object_put(body);
            return;
        }
        if (c && c->stored)
            ad_serve_store_conversation(s->store, c->id, p->name);
        if (!c || !m || ad_agent_load_messages(c->agent, m) != AD_OK) {
            json_object_put(m);
            if (c)
                conv_free(c);
            error(req, 500, "server_error", "out_of_memory", "out of memory");
            ad_input_free(&in);
            json_object_put(body);
            return;
        }
        json_object_put(m);
    }
    json_object *ct = in.tools;
    in.tools = NULL;
    if (ad_agent_set_client_tools(c->agent, ct) != AD_OK) {
        error(req, 500, "server_error", "out_of_memory", "out of memory");
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    resp *r = resp_new(c, API_RESPONSES, p->name, prev, instructions, background, stream, store,
                       &in);
    if (!r) {
        error(req, 500, "server_error", "out_of_memory", "out of memory");
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    start_run(r, req, in.prompt, background && !stream);
    ad_input_free(&in);
    json_object_put(body);
}

static void handle_chat(ad_serve *s, ad_http_req *req)
{
    char err[1024];
    json_object *body = parse_body(req);
    if (!body)
        return;
    bool bad = false;
    bool stream = get_bool(body, "stream", false, &bad);
    json_object *model = ad_json_get(body, "model");
    if (bad || (model && !ad_json_is(model, json_type_string))) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "invalid_type",
              "stream must be a boolean and model a string");
        return;
    }
    const profile *p = model_profile(s, req, model);
    if (!p) {
        json_object_put(body);
        return;
    }
    ad_input in;
    if (ad_input_chat(ad_json_get(body, "messages"), ad_json_get(body, "tools"), &in, err,
                      sizeof err) != AD_OK) {
        json_object_put(body);
        error(req, 400, "invalid_request_error", "invalid_messages", "%s", err);
        return;
    }
    if (!client_tools_ok(s, req, &in)) {
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    size_t n = json_object_array_length(in.messages);
    const char *last = n ? ad_json_str(json_object_array_get_idx(in.messages, n - 1), "role") : NULL;
    if (!in.prompt && (!last || strcmp(last, "tool") != 0)) {
        error(req, 400, "invalid_request_error", "invalid_messages",
              "messages must end with a user message (or tool results)");
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    if (s->running >= (size_t)s->cfg->serve.max_runs) {
        ad_input_free(&in);
        json_object_put(body);
        too_many_runs(req);
        return;
    }
    /* The client's own system message, if any, replaces the profile's. */
    bool has_system = n && strcmp(ad_json_str(json_object_array_get_idx(in.messages, 0), "role"),
                                  "system") == 0;
    conv *c = conv_new(s, p, NULL, false, true);
    json_object *m = c ? (has_system ? json_object_get(in.messages)
                                     : initial_messages(p, NULL, in.messages))
                       : NULL;
    if (m && ad_conv_check(m, err, sizeof err) != AD_OK) {
        json_object_put(m);
        conv_free(c);
        error(req, 400, "invalid_request_error", "invalid_messages", "%s", err);
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    json_object *ct = in.tools;
    in.tools = NULL;
    resp *r = NULL;
    if (!c || !m || ad_agent_load_messages(c->agent, m) != AD_OK ||
        ad_agent_set_client_tools(c->agent, ct) != AD_OK ||
        !(r = resp_new(c, API_CHAT, p->name, NULL, NULL, false, stream, false, &in))) {
        if (c)
            conv_free(c);
        json_object_put(m);
        error(req, 500, "server_error", "out_of_memory", "out of memory");
        ad_input_free(&in);
        json_object_put(body);
        return;
    }
    json_object_put(m);
    start_run(r, req, in.prompt, false);
    ad_input_free(&in);
    json_object_put(body);
}

/* ---- reading and cancelling --------------------------------------------- */

typedef struct replay_st {
    ad_http_req *req;
    long after;
} replay_st;

static void replay_emit(void *ud, const char *type, const char *json, size_t len)
{
    replay_st *st = ud;
    json_object *o = json_tokener_parse(json);
    json_object *seq = ad_json_get(o, "sequence_number");
    long n = seq ? (long)json_object_get_int64(seq) : 0;
    json_object_put(o);
    if (n <= st->after)
        return;
    ad_buf f = AD_BUF_INIT;
    ad_buf_printf(&f, "event: %s\ndata: ", type);
    ad_buf_append(&f, json, len);
    ad_buf_puts(&f, "\n\n");
    if (f.data)
        ad_http_sse_write(st->req, f.data, f.len);
    ad_buf_free(&f);
}

static void handle_get(ad_serve *s, ad_http_req *req, const char *id)
{
    char err[1024], qv[32];
    bool stream = ad_http_query_param(req, "stream", qv, sizeof qv) && strcmp(qv, "true") == 0;
    long after = -1;
    if (ad_http_query_param(req, "starting_after", qv, sizeof qv)) {
        char *end;
        after = strtol(qv, &end, 10);
        if (*end || after < -1) {
            error(req, 400, "invalid_request_error", "invalid_parameter",
                  "starting_after must be a sequence number");
            return;
        }
    }
    resp *r = resp_find(s, id);
    if (r && r->api == API_RESPONSES) {
        if (!stream) {
            size_t len;
            char *o = resp_object(r, &len);
            respond_json(req, 200, o ? o : "{}", o ? len : 2);
            free(o);
            return;
        }
        if (r->final && !r->background) {
            size_t len;
            char *o = resp_object(r, &len);
            replay_st st = {req, after};
            ad_http_sse_begin(req, NULL);
            if (o)
                ad_rsp_replay(o, replay_emit, &st);
            free(o);
            ad_http_sse_end(req);
            return;
        }
        if (!r->background) {
            error(req, 400, "invalid_request_error", "not_background",
                  "only background responses can be streamed while they run (background: true)");
            return;
        }
        if (r->log_full) {
            error(req, 400, "invalid_request_error", "stream_too_long",
                  "the events of this response are too many to send again");
            return;
        }
        ad_http_sse_begin(req, NULL);
        for (size_t i = (size_t)(after + 1); i < r->nlog; i++) {
            size_t end = i + 1 < r->nlog ? r->log_at[i + 1] : r->log.len;
            ad_http_sse_write(req, r->log.data + r->log_at[i], end - r->log_at[i]);
        }
        if (r->final)
            ad_http_sse_end(req);
        else
            client_add(r, req, false, false);
        return;
    }
    ad_stored_response sr;
    int rc = s->store ? ad_serve_store_get_response(s->store, id, &sr, err, sizeof err) : AD_EINVAL;
    if (rc == AD_EINVAL || (rc == AD_OK && !sr.json)) {
        if (rc == AD_OK)
            ad_stored_response_free(&sr);
        error(req, 404, "invalid_request_error", "not_found", "no response with id '%s'", id);
        return;
    }
    if (rc != AD_OK) {
        error(req, 500, "server_error", "store_error", "%s", err);
        return;
    }
    if (stream) {
        replay_st st = {req, after};
        ad_http_sse_begin(req, NULL);
        ad_rsp_replay(sr.json, replay_emit, &st);
        ad_http_sse_end(req);
    } else {
        respond_json(req, 200, sr.json, strlen(sr.json));
    }
    ad_stored_response_free(&sr);
}

static void handle_cancel(ad_serve *s, ad_http_req *req, const char *id)
{
    resp *r = resp_find(s, id);
    if (!r || r->api != API_RESPONSES) {
        ad_stored_response sr;
        char err[512];
        if (s->store && ad_serve_store_get_response(s->store, id, &sr, err, sizeof err) == AD_OK) {
            ad_stored_response_free(&sr);
            error(req, 400, "invalid_request_error", "not_running",
                  "response %s is not running: only a running response can be cancelled", id);
        } else {
            error(req, 404, "invalid_request_error", "not_found", "no response with id '%s'", id);
        }
        return;
    }
    if (r->final) {
        error(req, 400, "invalid_request_error", "not_running",
              "response %s is not running: only a running response can be cancelled", id);
        return;
    }
    client_add(r, req, false, true);
    if (r->running)
        ad_agent_cancel(r->c->agent);
}

static void handle_models(ad_serve *s, ad_http_req *req, const char *one)
{
    ad_buf b = AD_BUF_INIT;
    if (one) {
        const profile *p = profile_of(s, one);
        if (!p) {
            error(req, 404, "invalid_request_error", "model_not_found",
                  "the model '%s' does not exist here", one);
            return;
        }
        ad_buf_puts(&b, "{\"id\":");
        ad_jw_cstr(&b, p->name);
        ad_buf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"agentd\"}");
    } else {
        ad_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < s->nprofiles; i++) {
            ad_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
            ad_jw_cstr(&b, s->profiles[i].name);
            ad_buf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"agentd\"}");
        }
        ad_buf_puts(&b, "]}");
    }
    respond_json(req, 200, b.data, b.len);
    ad_buf_free(&b);
}

/* ---- routing ------------------------------------------------------------ */

static int not_allowed(ad_http_req *req, const char *allow)
{
    char h[64];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    static const char body[] = "{\"error\":{\"message\":\"method not allowed\",\"type\":"
                               "\"invalid_request_error\",\"param\":null,\"code\":\"method_not_allowed\"}}";
    return ad_http_respond(req, 405, "application/json", body, sizeof body - 1, h);
}

static void on_request(void *ud, ad_http_req *req)
{
    ad_serve *s = ud;
    const char *m = ad_http_method(req);
    const char *path = ad_http_path(req);
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    bool post = strcmp(m, "POST") == 0;
    if (strcmp(path, "/health") == 0) {
        if (!get)
            not_allowed(req, "GET, HEAD");
        else if (s->draining)
            respond_json(req, 503, "{\"status\":\"draining\"}", 21);
        else
            respond_json(req, 200, "{\"status\":\"ok\"}", 15);
        return;
    }
    if (strcmp(path, "/v1/models") == 0) {
        if (!get)
            not_allowed(req, "GET");
        else
            handle_models(s, req, NULL);
        return;
    }
    if (strncmp(path, "/v1/models/", 11) == 0 && path[11] && !strchr(path + 11, '/')) {
        if (!get)
            not_allowed(req, "GET");
        else
            handle_models(s, req, path + 11);
        return;
    }
    if (strcmp(path, "/v1/responses") == 0) {
        if (!post)
            not_allowed(req, "POST");
        else
            handle_responses(s, req);
        return;
    }
    if (strcmp(path, "/v1/chat/completions") == 0) {
        if (!post)
            not_allowed(req, "POST");
        else
            handle_chat(s, req);
        return;
    }
    if (strncmp(path, "/v1/responses/", 14) == 0 && path[14]) {
        char id[128];
        const char *rest = path + 14;
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
        if (n >= sizeof id) {
            error(req, 404, "invalid_request_error", "not_found", "no such response");
            return;
        }
        memcpy(id, rest, n);
        id[n] = '\0';
        if (!slash) {
            if (!get)
                not_allowed(req, "GET");
            else
                handle_get(s, req, id);
            return;
        }
        if (strcmp(slash, "/cancel") == 0) {
            if (!post)
                not_allowed(req, "POST");
            else
                handle_cancel(s, req, id);
            return;
        }
    }
    error(req, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s", m, path);
}

/* ---- the server --------------------------------------------------------- */

static bool resp_idle(const resp *r)
{
    return r->final && r->agent_done && !r->subs && !r->waiters;
}

/* The responses of c before its latest that are on disk: the store has
 * them, memory need not (a long conversation would otherwise grow). */
static void prune(conv *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->nresps; i++) {
        resp *r = c->resps[i];
        if (i + 1 < c->nresps && resp_idle(r) && r->store && c->stored && c->srv->store) {
            resp_unhash(c->srv, r);
            resp_free(r);
        } else {
            c->resps[k++] = r;
        }
    }
    c->nresps = k;
}

static void sweep(uv_timer_t *t)
{
    ad_serve *s = t->data;
    double now = now_s();
    for (conv *c = s->convs, *next; c; c = next) {
        next = c->next;
        prune(c);
        if (c->run || ad_events_paused(c->hub))
            continue;
        bool busy = false;
        for (size_t i = 0; i < c->nresps && !busy; i++)
            busy = !resp_idle(c->resps[i]);
        if (busy)
            continue;
        if (c->transient || now - c->idle_since >= IDLE_EVICT_S)
            conv_free(c);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    ad_serve *s = t->data;
    if (s->running)
        note(s, "drain: %zu run(s) still running after %g s; cancelling them", s->running,
             s->cfg->serve.drain_timeout_s);
    ad_serve_cancel_all(s);
}

static void check_drained(ad_serve *s)
{
    if (!s->draining || !s->http_idle || s->running || s->committing || !s->on_drained)
        return;
    void (*fn)(void *) = s->on_drained;
    s->on_drained = NULL;
    uv_timer_stop(&s->drain_timer);
    fn(s->drained_ud);
}

static void on_http_idle(void *ud)
{
    ad_serve *s = ud;
    s->http_idle = true;
    check_drained(s);
}

ad_serve *ad_serve_new(const ad_serve_opts *o, char *err, size_t errlen)
{
    ad_serve *s = calloc(1, sizeof *s);
    if (!s) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = o->loop;
    s->cfg = o->cfg;
    s->transport = o->transport;
    s->tools = o->tools;
    s->store = o->store;
    s->log = o->log;
    const ad_serve_conf *sc = &o->cfg->serve;
    size_t np = sc->nprofiles ? sc->nprofiles : 1;
    s->profiles = calloc(np, sizeof *s->profiles);
    if (!s->profiles) {
        free(s);
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < np; i++) {
        profile *p = &s->profiles[i];
        const ad_serve_profile *sp = sc->nprofiles ? &sc->profiles[i] : NULL;
        p->p = sp;
        p->name = sp ? sp->name : "agentd";
        p->cfg = *o->cfg; /* shares every pointer: never freed through it */
        if (sp && sp->model)
            p->cfg.model = sp->model;
        if (sp && sp->system_prompt)
            p->cfg.system_prompt = sp->system_prompt;
        if (sp && sp->max_steps)
            p->cfg.max_steps = sp->max_steps;
    }
    s->nprofiles = np;
    ad_http_opts ho;
    ad_http_opts_default(&ho);
    ho.max_header_bytes = (size_t)sc->max_header_bytes;
    ho.max_headers = (size_t)sc->max_headers;
    ho.max_body_bytes = (size_t)sc->max_body_bytes;
    ho.max_connections = (size_t)sc->max_connections;
    ho.max_connections_per_peer = (size_t)sc->max_connections_per_peer;
    ho.header_timeout_s = sc->header_timeout_s;
    ho.body_timeout_s = sc->body_timeout_s;
    ho.idle_timeout_s = sc->idle_timeout_s;
    ho.write_timeout_s = sc->write_timeout_s;
    ho.max_write_queue = (size_t)sc->max_write_queue_bytes;
    ho.sse_keepalive_s = sc->sse_keepalive_s;
    ho.token = o->token;
    s->http = ad_http_server_new(o->loop, &ho, on_request, s);
    if (!s->http) {
        free(s->profiles);
        free(s);
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    uv_timer_init(o->loop, &s->sweep);
    uv_timer_init(o->loop, &s->drain_timer);
    s->sweep.data = s->drain_timer.data = s;
    s->open_handles = 2;
    uv_timer_start(&s->sweep, sweep, SWEEP_MS, SWEEP_MS);
    return s;
}

int ad_serve_listen(ad_serve *s, const char *host, int port, char *err, size_t errlen)
{
    return ad_http_server_listen(s->http, host, port, err, errlen);
}

int ad_serve_port(const ad_serve *s)
{
    return ad_http_server_port(s->http);
}

void ad_serve_cancel_all(ad_serve *s)
{
    for (conv *c = s->convs; c; c = c->next)
        if (c->run && c->run->running)
            ad_agent_cancel(c->agent);
}

void ad_serve_drain(ad_serve *s, void (*on_done)(void *ud), void *ud)
{
    if (s->draining) {
        ad_serve_cancel_all(s);
        return;
    }
    s->draining = true;
    s->on_drained = on_done;
    s->drained_ud = ud;
    note(s, "draining: %zu run(s) in flight; new requests get 503", s->running);
    if (s->cfg->serve.drain_timeout_s > 0)
        uv_timer_start(&s->drain_timer, on_drain_timeout,
                       (uint64_t)(s->cfg->serve.drain_timeout_s * 1000), 0);
    else
        ad_serve_cancel_all(s);
    ad_http_server_drain(s->http, on_http_idle, s);
}

static void handle_closed(uv_handle_t *h)
{
    ad_serve *s = h->data;
    if (--s->open_handles == 0) {
        ad_buf_free(&s->frame);
        free(s->profiles);
        free(s);
    }
}

void ad_serve_free(ad_serve *s)
{
    if (!s)
        return;
    s->freeing = true;
    ad_http_server_free(s->http);
    s->http = NULL;
    while (s->convs)
        conv_free(s->convs);
    uv_close((uv_handle_t *)&s->sweep, handle_closed);
    uv_close((uv_handle_t *)&s->drain_timer, handle_closed);
}

/*
 * agent.c -- the step state machine (see agent.h).
 *
 *   start_step ──► POST ──► on_data (SSE or JSON body) ──► on_xfer_done
 *        ▲                                                     │
 *        │        retry timer ◄── retryable failure ───────────┤
 *        │                                                     ▼
 *        └──── all tool results in ◄── dispatch ◄── response with tool calls
 *                                                              │
 *                                   response without calls ────┴──► finish
 *
 * Invariants:
 *  - The loop continues because tool calls were collected, not because of the
 *    finish_reason string; tools never run after "length", "content_filter"
 *    or an error, and a response with no finish reason is an error unless it
 *    ended explicitly ([DONE]) after content. "tool_calls" with neither a
 *    call nor text is an error, never an empty answer.
 *  - Every tool call of an appended assistant message gets exactly one tool
 *    message, in call order, whatever order the calls finish in.
 *  - Provider tool-call ids go back byte-exact; a missing or repeated id
 *    gets a generated one (all of them with unique_tool_call_ids).
 *  - Reasoning fields go back verbatim on the assistant message.
 *  - Nothing is freed from inside a transport callback: on_data only
 *    parses and flags; on_xfer_done runs after the transport let go of the
 *    exchange. The agent talks to an ad_transport (curl, a replay, a
 *    recording shim) and does not know which.
 *
 * Failures (docs/failures.md has the full table): connect failures and other
 * transient network errors, HTTP 408/409/429/500/502/503/504, an empty body
 * and a stream that ends before its finish reason are retried up to
 * provider.max_retries times, waiting Retry-After / retry-after-ms when the
 * server says so and exponential backoff with jitter otherwise, never longer
 * than provider.max_retry_wait_s; a status whose Retry-After asks for more
 * than that fails at once (the same request would meet the same limit).
 * Once text of the step was shown, the step is only repeated while no tool
 * has run in this run (a "retry" event tells --json consumers to drop what
 * they got for the step); after that the run fails with the partial text
 * kept. Protocol errors (malformed JSON, a bound
 * exceeded) and other statuses are not retried.
 *
 * The API key never leaves through here: error bodies are redacted before
 * they are shortened, and streamed text holds back any tail that could be
 * the start of the key until the next bytes show it is not.
 */
#include "core/agent.h"

#include <ctype.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/text.h"
#include "core/conv.h"
#include "core/request.h"
#include "provider/sse.h"
#include "core/stream.h"

#define MAX_ERROR_BODY (64u << 10)

typedef struct batch batch;

/* Why a call that may still run on a worker thread was given up. */
enum { GAVE_UP_NONE = 0, GAVE_UP_TIMEOUT = 1, GAVE_UP_CANCEL = 2 };

/* One tool call of a step. The worker thread writes only `wres`, started
 * and t1; everything else belongs to the loop thread. */
typedef struct call_slot {
    batch *b;
    uv_work_t work;
    char *id;   /* owned: the id sent back to the provider */
    char *name; /* owned */
    char *args; /* owned */
    size_t args_len;
    const ad_tool *tool; /* NULL: unknown tool */
    double timeout_s;    /* 0 = none */
    int isolation;
    bool serial;         /* not thread-safe: runs in the one serial chain */
    bool queued;         /* handed to a worker that has not returned yet */
    bool final;          /* `result` is decided */
    uint64_t limit_ns;   /* running time allowed; 0 = none */
    ad_tool_result wres; /* written by the worker */
    ad_tool_result result;
    _Atomic uint64_t started; /* uv_hrtime() when the worker began it; 0: not yet */
    uint64_t t1;              /* when the worker was done (read after it returned) */
    int gave_up;              /* GAVE_UP_*: it holds its thread until it returns */
    uint64_t gave_up_at;      /* uv_hrtime() then */
} call_slot;

/* The calls of one step. A batch outlives its step when calls time out or
 * the run is cancelled: the agent moves on (attached = false) and the batch
 * frees itself when its last worker returns. */
struct batch {
    ad_agent *agent; /* NULL once the agent is gone */
    const ad_tools *tools;
    const char *key_env; /* borrowed from the config: kept from isolated workers */
    bool attached;   /* the agent still waits for it */
    size_t n;
    size_t open;     /* slots without a final result */
    size_t running;  /* workers not yet returned */
    uv_timer_t timer;
    batch *next;     /* the agent's list of live batches */
    call_slot slots[];
};

struct ad_agent {
    uv_loop_t *loop;
    ad_transport *transport;
    const ad_config *cfg;
    const ad_tools *tools;
    ad_events *ev;
    char *model; /* owned */

    ad_conv *conv;           /* owned: the conversation */
    json_object *tools_json; /* owned: the request's "tools", or NULL */
    char *url;               /* owned: {base_url}/chat/completions */
    char **headers;          /* owned "Name: value" strings */
    size_t nheaders;

    /* the run */
    bool running;
    bool cancelled;
    ad_agent_done_fn on_done;
    void *ud;
    int step;           /* 1-based number of the step in progress */
    ad_usage usage;     /* totals of the run */

    /* the step */
    json_object *body_req; /* owned: the step's request; its print buffer holds
                            * the body (kept for retries, lent to the transport) */
    const char *body;      /* the body text, in body_req; NULL between runs */
    size_t body_len;
    ad_exchange *req;
    int attempt;        /* retries so far in this step */
    uv_timer_t retry_timer;
    bool emitted;       /* output of this step was shown: no silent retry */
    bool tools_ran;     /* a tool call was dispatched in this run */
    int mode;           /* 0 undecided, 1 SSE, 2 JSON body, 3 error body */
    size_t resp_bytes;  /* body bytes of this attempt, against max_response_bytes */
    ad_buf held;        /* streamed text held back: it may be the start of the key */
    ad_buf resp_body;   /* JSON or error body */
    ad_sse *sse;
    ad_stream *stream;
    char err[1024];     /* protocol error found while receiving */
    bool has_err;

    /* tool dispatch */
    batch *batch;           /* the step's calls, while it waits for them */
    batch *batches;         /* every live batch (attached or not) */
    call_slot *serial_slot; /* the non-thread-safe call running, or NULL */
    ad_agent_approve_fn approve;
    void *approve_ud;
    bool yes;            /* approve every call that needs confirmation */
    ad_agent_message_fn observer;
    void *observer_ud;
};

static void start_step(ad_agent *a);

/* ---- helpers ----------------------------------------------------------- */

/* The step_finish event of the step in progress. */
static void emit_step_finish(ad_agent *a)
{
    ad_response *r = ad_stream_response(a->stream);
    json_object *u = ad_usage_of_response(r->usage);
    ad_events_step_finish(a->ev, a->step, r->finish_reason, u);
    json_object_put(u);
}

/* Every message enters the conversation through a->conv, which reports it
 * here, so an observer (the session store) sees each one as soon as it
 * exists. */
static void on_conv_append(void *ud, json_object *m)
{
    ad_agent *a = ud;
    if (a->observer)
        a->observer(a->observer_ud, m, a->step);
}

/* The run is cancelled while the model answers: what it said so far (text
 * of the step's response; tool calls it was still writing never ran) stays
 * as its answer, marked as cut (ad_conv_add_cut_answer). keep_text is false
 * when the step's text was already dropped for a retry. */
static void keep_partial_answer(ad_agent *a, bool keep_text)
{
    ad_response *r = ad_stream_response(a->stream);
    ad_conv_add_cut_answer(a->conv, keep_text ? r->text.data : NULL, keep_text ? r->text.len : 0);
}

/* Drops the step's request body (as large as the conversation). Only when
 * no exchange holds it (transport.h: it is lent until on_done). */
static void release_body(ad_agent *a)
{
    if (a->req)
        return;
    json_object_put(a->body_req);
    a->body_req = NULL;
    a->body = NULL;
    a->body_len = 0;
}

static void end_run(ad_agent *a, int status)
{
    if (!a->running)
        return;
    a->running = false;
    ad_events_commit_text(a->ev);
    /* Between runs nothing retries: the conversation is not held twice. */
    release_body(a);
    ad_agent_done_fn cb = a->on_done;
    void *ud = a->ud;
    a->on_done = NULL;
    if (cb)
        cb(ud, status);
}

static void on_batch_timer_closed(uv_handle_t *h)
{
    batch *b = h->data;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *sl = &b->slots[i];
        free(sl->id);
        free(sl->name);
        free(sl->args);
        ad_tool_result_free(&sl->wres);
        ad_tool_result_free(&sl->result);
    }
    free(b);
}

/* Frees b once nobody needs it: detached and no worker running. */
static void batch_release(batch *b)
{
    if (b->attached || b->running > 0)
        return;
    ad_agent *a = b->agent;
    if (a) {
        for (batch **pp = &a->batches; *pp; pp = &(*pp)->next) {
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        }
    }
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, on_batch_timer_closed);
}

static void batch_detach(ad_agent *a)
{
    batch *b = a->batch;
    if (!b)
        return;
    a->batch = NULL;
    b->attached = false;
    batch_release(b);
}

/* ---- request ----------------------------------------------------------- */

/* The request for the current conversation (ad_conv_request). Caller puts. */
static json_object *request_json(ad_agent *a)
{
    return ad_conv_request(a->conv, a->cfg, a->model, a->tools_json);
}

char *ad_agent_request_body(ad_agent *a, size_t *len)
{
    return ad_conv_request_body(a->conv, a->cfg, a->model, a->tools_json, len);
}

/* ---- receiving --------------------------------------------------------- */

static void show_text(ad_agent *a, const char *text, size_t len)
{
    if (len == 0)
        return;
    a->emitted = true;
    ad_events_text(a->ev, a->step, text, len);
}

/* Streamed text goes out at once, except a tail that is a proper prefix of
 * the API key: a key echoed across two deltas would otherwise escape the
 * per-event redaction. Complete occurrences are redacted first. */
static void on_text(void *ud, const char *text, size_t len)
{
    ad_agent *a = ud;
    const char *key = a->cfg->api_key;
    size_t kl = key ? strlen(key) : 0;
    if (len == 0)
        return;
    if (kl < AD_REDACT_MIN) { /* too short to be redacted at all (events.h) */
        show_text(a, text, len);
        return;
    }
    if (ad_buf_append(&a->held, text, len) != AD_OK)
        return;
    ad_redact_buf(&a->held, key);
    size_t hold = ad_redact_hold(a->held.data, a->held.len, key);
    size_t out = a->held.len - hold;
    show_text(a, a->held.data, out);
    memmove(a->held.data, a->held.data + out, hold);
    a->held.len = hold;
    if (a->held.data)
        a->held.data[hold] = '\0';
}

/* End of the step's text: what was held back was not the key. */
static void flush_text(ad_agent *a)
{
    if (a->held.len)
        show_text(a, a->held.data, a->held.len);
    ad_buf_reset(&a->held);
}

static int on_sse_event(void *ud, const char *event, size_t event_len, const char *data,
                        size_t data_len)
{
    ad_agent *a = ud;
    (void)event_len;
    if (event[0] && strcmp(event, "error") == 0) {
        char q[501];
        ad_redact_cut(q, sizeof q, data, data_len, a->cfg->api_key);
        ad_errf(a->err, sizeof a->err, "provider sent an error event: %s", q);
        a->has_err = true;
        return 1;
    }
    char err[512];
    int rc = ad_stream_chunk(a->stream, data, data_len, err, sizeof err);
    if (rc != AD_OK) {
        ad_errf(a->err, sizeof a->err, "%s", err);
        a->has_err = true;
        return 1;
    }
    return 0;
}

static bool media_type_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* A body sent with a Content-Type that is neither SSE nor JSON: does it
 * start like an event stream? (Some gateways relabel streams text/plain.) */
static bool looks_like_sse(const char *d, size_t n)
{
    static const char *const starts[] = {"data:", "event:", ":", "id:"};
    while (n && (*d == '\n' || *d == '\r'))
        d++, n--;
    for (size_t i = 0; i < 4; i++) {
        size_t sl = strlen(starts[i]);
        if (n >= sl && memcmp(d, starts[i], sl) == 0)
            return true;
    }
    return false;
}

/* The SSE parser stopped with rc: says why in a->err, unless the event
 * callback already did (a provider error, a malformed chunk). */
static void sse_error(ad_agent *a, int rc)
{
    if (a->has_err)
        return;
    if (rc == AD_ETOOBIG)
        ad_errf(a->err, sizeof a->err,
                "a server-sent event line or event is larger than %ld bytes "
                "(limits.max_event_bytes)",
                a->cfg->max_event_bytes);
    else
        ad_errf(a->err, sizeof a->err, "out of memory while reading the event stream");
    a->has_err = true;
}

static int on_data(void *ud, long status, const char *ctype, const char *data, size_t len)
{
    ad_agent *a = ud;
    if (a->mode == 0) {
        if (status < 200 || status >= 300)
            a->mode = 3;
        else if (media_type_is(ctype, "text/event-stream"))
            a->mode = 1;
        else if (!media_type_is(ctype, "application/json") && a->cfg->stream &&
                 looks_like_sse(data, len))
            a->mode = 1;
        else
            a->mode = 2;
    }
    if (a->mode != 3 && len > (size_t)a->cfg->max_response_bytes - a->resp_bytes) {
        ad_errf(a->err, sizeof a->err,
                "the response is larger than %ld bytes (limits.max_response_bytes)",
                a->cfg->max_response_bytes);
        a->has_err = true;
        return 1;
    }
    a->resp_bytes += len;
    switch (a->mode) {
    case 1: {
        int rc = ad_sse_feed(a->sse, data, len);
        if (rc != 0)
            sse_error(a, rc);
        return rc != 0;
    }
    case 2:
        return ad_buf_append(&a->resp_body, data, len) == AD_OK ? 0 : 1;
    default:
        if (a->resp_body.len < MAX_ERROR_BODY) {
            size_t room = MAX_ERROR_BODY - a->resp_body.len;
            ad_buf_append(&a->resp_body, data, len < room ? len : room);
        }
        return 0;
    }
}

/* A one-line description of an error body: the provider's message if it
 * is JSON with error.message, else its first bytes. The key is redacted in
 * the whole body first, so shortening cannot leave a piece of it behind. */
static void describe_error_body(ad_agent *a, ad_buf *b, char *out, size_t outlen)
{
    out[0] = '\0';
    if (b->len == 0)
        return;
    ad_redact_buf(b, a->cfg->api_key);
    json_object *o = json_tokener_parse(b->data);
    if (o) {
        json_object *e, *m;
        const char *msg = NULL;
        if (json_object_object_get_ex(o, "error", &e)) {
            if (json_object_is_type(e, json_type_string))
                msg = json_object_get_string(e);
            else if (json_object_object_get_ex(e, "message", &m) && m)
                msg = json_object_get_string(m);
        } else if (json_object_object_get_ex(o, "message", &m) && m) {
            msg = json_object_get_string(m);
        }
        if (msg) {
            snprintf(out, outlen, "%s", msg);
            json_object_put(o);
            return;
        }
        json_object_put(o);
    }
    size_t n = 0;
    const char *p = b->data;
    while (n < b->len && (p[n] == ' ' || p[n] == '\n' || p[n] == '\r' || p[n] == '\t'))
        p++, n++;
    size_t avail = b->len - n;
    size_t take = avail < 200 ? avail : 200;
    size_t o2 = 0;
    for (size_t i = 0; i < take && o2 + 1 < outlen; i++)
        out[o2++] = (p[i] == '\n' || p[i] == '\r' || (unsigned char)p[i] < 0x20) ? ' ' : p[i];
    out[o2] = '\0';
}

static bool retryable_status(long s)
{
    return s == 408 || s == 409 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* Seconds for a message: whole above 10 s ("86400"), else up to three
 * digits ("0.25"). */
static void format_wait(char *out, size_t n, double s)
{
    if (s >= 10)
        snprintf(out, n, "%.0f", s);
    else
        snprintf(out, n, "%.3g", s);
}

static void on_retry_timer(uv_timer_t *t)
{
    ad_agent *a = t->data;
    start_step(a);
}

/* Schedules another attempt of the step, or returns false when none is left
 * or the step cannot be repeated (text shown after a tool ran). */
static bool maybe_retry(ad_agent *a, const char *reason, double retry_after_s)
{
    if (a->cancelled || a->attempt >= a->cfg->max_retries || (a->emitted && a->tools_ran))
        return false;
    a->attempt++;
    ad_buf why = AD_BUF_INIT;
    if (a->emitted)
        ad_buf_printf(&why, "%s; the partial response of step %d is dropped and the step is "
                      "repeated",
                      reason, a->step);
    double wait;
    if (retry_after_s >= 0) {
        wait = retry_after_s;
    } else {
        /* Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... */
        double base = 0.5 * pow(2, a->attempt - 1);
        wait = base * (0.5 + (double)(uv_hrtime() % 1000) / 2000.0);
    }
    if (wait > a->cfg->max_retry_wait_s)
        wait = a->cfg->max_retry_wait_s;
    ad_events_retry(a->ev, a->step, a->attempt, why.data ? why.data : reason, wait);
    ad_buf_free(&why);
    uv_update_time(a->loop);
    uv_timer_start(&a->retry_timer, on_retry_timer, (uint64_t)(wait * 1000), 0);
    return true;
}

static void fail(ad_agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(ad_agent *a, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    ad_events_error(a->ev, "%s", b.data ? b.data : "out of memory");
    ad_buf_free(&b);
    end_run(a, AD_RUN_FAILED);
}

/* ---- tools ------------------------------------------------------------- */

static void finish_tools(ad_agent *a);
static void start_serial(ad_agent *a);

static void set_result(ad_tool_result *r, bool is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_result(ad_tool_result *r, bool is_error, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    ad_tool_result_free(r);
    r->len = b.len;
    r->content = ad_buf_steal(&b);
    r->is_error = is_error;
}

/* Gives slot s its final result; the step goes on when all slots have one. */
static void slot_final(call_slot *s)
{
    if (s->final)
        return;
    s->final = true;
    s->b->open--;
}

/*
 * Worker threads. Every call runs on libuv's pool (isolated ones too: the
 * thread waits for the worker process). A call given up while it runs
 * (timed out, or the run was cancelled) keeps its thread until the plugin
 * returns, which may be never. held[] counts those threads for the whole
 * process (the pool is the process's); loop thread only. When they are all
 * held, a call could wait for a thread for ever: it is answered at once as
 * not started instead, and its timeout never began, as a timeout counts
 * only the call's own running time.
 */
static size_t held[3];

static size_t held_total(void)
{
    return held[GAVE_UP_TIMEOUT] + held[GAVE_UP_CANCEL];
}

/* The pool's size as libuv reads it at its start: UV_THREADPOOL_SIZE, else
 * 4; 0 means 1, and at most 1024 (libuv's bounds). main() sets a larger
 * default before the loop starts. */
static size_t pool_size(void)
{
    const char *v = getenv("UV_THREADPOOL_SIZE");
    if (!v)
        return 4;
    unsigned n = (unsigned)atoi(v);
    return n == 0 ? 1 : n > 1024 ? 1024 : n;
}

/* The result of a call that cannot get a worker thread. */
static void set_not_started(call_slot *s)
{
    size_t n = pool_size();
    bool t = held[GAVE_UP_TIMEOUT] > 0, c = held[GAVE_UP_CANCEL] > 0;
    if (n == 1)
        set_result(&s->result, true,
                   "tool '%s' was not started: the only worker thread is still held by an "
                   "earlier call that %s",
                   s->name, c && !t ? "was cancelled" : "timed out");
    else
        set_result(&s->result, true,
                   "tool '%s' was not started: all %zu worker threads are still held by earlier "
                   "calls that %s",
                   s->name, n, t && c ? "timed out or were cancelled" : c ? "were cancelled"
                                                                          : "timed out");
    slot_final(s);
}

/* Takes the queued call of s off the pool's queue; false when a thread
 * has picked it up already. */
static bool unqueue(call_slot *s)
{
    if (uv_cancel((uv_req_t *)&s->work) != 0)
        return false;
    /* after_work_cb follows with UV_ECANCELED; the chain is free now. */
    ad_agent *a = s->b->agent;
    if (a && a->serial_slot == s)
        a->serial_slot = NULL;
    return true;
}

/* Gives up the call of s, which has no result yet. Returns true when it
 * runs (it keeps its thread until it returns), false when it never will
 * (not queued, or taken off the queue before a thread picked it up). */
static bool give_up(call_slot *s, int why)
{
    if (!s->queued || unqueue(s))
        return false;
    s->gave_up = why;
    s->gave_up_at = uv_hrtime();
    held[why]++;
    return true;
}

/* Calls of b still waiting for a thread that none will give them. */
static void refuse_unstartable(batch *b)
{
    if (held_total() < pool_size())
        return;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (!s->final && s->queued && atomic_load(&s->started) == 0 && unqueue(s))
            set_not_started(s);
    }
}

/* How long the call of s ran: until it returned, or until it was given up. */
static double run_seconds(call_slot *s)
{
    uint64_t t0 = atomic_load(&s->started);
    uint64_t end = s->gave_up ? s->gave_up_at : s->queued ? 0 : s->t1;
    return t0 && end > t0 ? (double)(end - t0) / 1e9 : 0;
}

static void work_cb(uv_work_t *w)
{
    call_slot *s = w->data;
    atomic_store(&s->started, uv_hrtime());
    int rc;
    if (s->isolation == AD_ISOLATION_PROCESS) {
        ad_isolate_opts o = {s->timeout_s, s->b->key_env};
        rc = ad_tools_invoke_isolated(s->b->tools, s->name, s->args, s->args_len, &o, &s->wres);
    } else {
        rc = ad_tools_invoke(s->b->tools, s->name, s->args, s->args_len, &s->wres);
    }
    if (rc != AD_OK)
        set_result(&s->wres, true, "agentd: out of memory running tool '%s'", s->name);
    s->t1 = uv_hrtime();
}

static void after_work_cb(uv_work_t *w, int status)
{
    call_slot *s = w->data;
    batch *b = s->b;
    ad_agent *a = b->agent;
    s->queued = false;
    b->running--;
    if (s->gave_up)
        held[s->gave_up]--;
    bool freed_serial = a && a->serial_slot == s;
    if (freed_serial)
        a->serial_slot = NULL;
    if (!s->final) {
        if (status == UV_ECANCELED) {
            set_result(&s->result, true, "cancelled");
        } else {
            ad_tool_result_free(&s->result);
            s->result = s->wres;
            memset(&s->wres, 0, sizeof s->wres);
        }
        slot_final(s);
    }
    if (!b->attached || !a) {
        batch_release(b);
        /* A late call of an abandoned batch freed the serial chain: the
         * current step may have calls waiting for it. */
        if (freed_serial && a->batch) {
            start_serial(a);
            if (a->batch->open == 0)
                finish_tools(a);
        }
        return;
    }
    if (s->serial)
        start_serial(a);
    if (b->open == 0)
        finish_tools(a);
}

static void queue_slot(ad_agent *a, call_slot *s)
{
    if (held_total() >= pool_size()) {
        set_not_started(s);
        return;
    }
    s->work.data = s;
    /* The timeout counts from the moment a thread starts the call. An
     * isolated call enforces its own and kills its worker; this limit is
     * only a backstop, late enough not to race it. */
    double limit = s->timeout_s;
    if (limit > 0 && s->isolation == AD_ISOLATION_PROCESS)
        limit += 2;
    s->limit_ns = limit > 0 ? (uint64_t)(limit * 1e9) : 0;
    if (uv_queue_work(a->loop, &s->work, work_cb, after_work_cb) != 0) {
        set_result(&s->result, true, "agentd: cannot start a worker for tool '%s'", s->name);
        slot_final(s);
        return;
    }
    s->queued = true;
    s->b->running++;
    if (s->serial)
        a->serial_slot = s;
}

/* The serial chain is held by a call that was given up (why) and still
 * runs (its plugin is not thread-safe, so nothing of its kind may run
 * beside it, and waiting could be forever): the calls of b still waiting
 * for the chain get an error result instead. */
static void refuse_waiting_serial(batch *b, int why)
{
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (s->serial && !s->final && !s->queued) {
            set_result(&s->result, true,
                       "tool '%s' was not run: an earlier call of a tool that is not "
                       "thread-safe %s and is still running",
                       s->name, why == GAVE_UP_CANCEL ? "was cancelled" : "timed out");
            slot_final(s);
        }
    }
}

/* Calls of tools that are not thread-safe run one at a time, in order. */
static void start_serial(ad_agent *a)
{
    batch *b = a->batch;
    if (!b || a->cancelled)
        return;
    if (a->serial_slot && a->serial_slot->b != b) {
        /* Held by a call of an earlier step that was given up. */
        refuse_waiting_serial(b, a->serial_slot->gave_up);
        return;
    }
    if (a->serial_slot)
        return;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (s->serial && !s->final && !s->queued) {
            queue_slot(a, s);
            if (s->queued)
                return;
        }
    }
}

static void on_batch_timer(uv_timer_t *t)
{
    batch *b = t->data;
    ad_agent *a = b->agent;
    if (!b->attached)
        return;
    uint64_t now = uv_hrtime();
    bool serial_stuck = false, gave_up = false;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        uint64_t t0 = atomic_load(&s->started);
        /* Not started yet: its time has not begun (nor if it began after
         * `now` was read). */
        if (s->final || !s->queued || !s->limit_ns || !t0 || now < t0 || now - t0 < s->limit_ns)
            continue;
        set_result(&s->result, true, "tool '%s' timed out after %g s (its result will be ignored)",
                   s->name, s->timeout_s);
        slot_final(s);
        give_up(s, GAVE_UP_TIMEOUT);
        serial_stuck |= a->serial_slot == s;
        gave_up = true;
    }
    if (serial_stuck)
        refuse_waiting_serial(b, GAVE_UP_TIMEOUT);
    if (gave_up)
        refuse_unstartable(b);
    if (b->open == 0)
        finish_tools(a);
}

static void dispatch(ad_agent *a)
{
    batch *b = a->batch;
    double min_timeout = 0;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (!a->tools || !s->tool) {
            /* Unknown tool: the host answers at once; no plugin is called. */
            if (a->tools)
                ad_tools_invoke(a->tools, s->name, s->args, s->args_len, &s->result);
            else
                set_result(&s->result, true, "unknown tool '%s': no tools are loaded", s->name);
            slot_final(s);
            continue;
        }
        bool confirm;
        ad_config_tool(a->cfg, s->name, &s->timeout_s, &confirm, &s->isolation);
        if (confirm && !a->yes) {
            int d = a->approve ? a->approve(a->approve_ud, s->name, s->args, s->args_len)
                               : AD_APPROVE_UNASKED;
            if (d == AD_APPROVE_UNASKED) {
                set_result(&s->result, true,
                           "tool '%s' needs approval (confirm = true) and none was given; it was "
                           "not run",
                           s->name);
                slot_final(s);
                continue;
            }
            if (d == AD_APPROVE_NO) {
                set_result(&s->result, true, "the user denied running tool '%s'", s->name);
                slot_final(s);
                continue;
            }
            if (d == AD_APPROVE_CANCEL) {
                set_result(&s->result, true,
                           "the user cancelled the turn when asked to approve tool '%s'; it was "
                           "not run",
                           s->name);
                slot_final(s);
                a->cancelled = true;
                break;
            }
        }
        /* A worker process shares no memory with the others: no need to
         * serialise calls of a tool that is not thread-safe. */
        s->serial = !ad_tool_threadsafe(s->tool) && s->isolation != AD_ISOLATION_PROCESS;
        if (s->timeout_s > 0 && (min_timeout == 0 || s->timeout_s < min_timeout))
            min_timeout = s->timeout_s;
    }
    if (a->cancelled) {
        /* Nothing was queued: every other call gets "not run". */
        finish_tools(a);
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (!s->final && !s->serial)
            queue_slot(a, s);
    }
    start_serial(a);
    if (b->open == 0) {
        finish_tools(a);
        return;
    }
    if (min_timeout > 0) {
        uint64_t every = (uint64_t)(min_timeout * 1000 / 10);
        every = every < 10 ? 10 : every > 250 ? 250 : every;
        uv_timer_start(&b->timer, on_batch_timer, every, every);
    }
}

static void finish_tools(ad_agent *a)
{
    batch *b = a->batch;
    for (size_t i = 0; i < b->n; i++) {
        call_slot *s = &b->slots[i];
        if (!s->final) {
            /* Only on cancellation: the history stays valid, every call
             * gets its one result. A call still waiting for a worker
             * thread never starts; a running one is abandoned. */
            if (give_up(s, GAVE_UP_CANCEL))
                set_result(&s->result, true,
                           "cancelled by user while it was running (its result will be ignored)");
            else
                set_result(&s->result, true, "cancelled by user before it started; it was not run");
            slot_final(s);
        }
        ad_conv_add_tool_result(a->conv, s->id, s->result.content, s->result.len);
        ad_events_tool_result(a->ev, a->step, s->id, s->name,
                              s->result.content ? s->result.content : "", s->result.len,
                              s->result.is_error, run_seconds(s));
    }
    uv_timer_stop(&b->timer);
    batch_detach(a);
    emit_step_finish(a);
    if (a->cancelled) {
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    a->step++;
    a->attempt = 0;
    start_step(a);
}

/* ---- the step ---------------------------------------------------------- */

static void response_done(ad_agent *a)
{
    ad_response *r = ad_stream_response(a->stream);
    ad_events_commit_text(a->ev); /* complete: no retry takes it back now */
    ad_usage_add(&a->usage, r->usage);
    const char *fr = r->finish_reason ? r->finish_reason : "";
    bool cut = strcmp(fr, "length") == 0 || strcmp(fr, "content_filter") == 0;

    if (!r->finish_reason)
        ad_events_warn(a->ev, "the provider sent no finish reason; the response ended normally "
                              "(data: [DONE]) and is used as it is");
    if (r->ncalls == 0 && strcmp(fr, "tool_calls") == 0) {
        /* The calls were announced but none arrived in a form we read: an
         * empty "answer" here would be a silent loss. */
        if (r->text.len == 0) {
            emit_step_finish(a);
            fail(a, "the response ended with finish_reason \"tool_calls\" but carried no tool "
                    "call and no text (the provider sent the calls in a form agentd does not "
                    "read, or lost them)");
            return;
        }
        ad_events_warn(a->ev, "the response ended with finish_reason \"tool_calls\" but carried "
                              "no tool call; its text is taken as the answer");
    }
    if (r->ncalls == 0) {
        ad_conv_add_answer(a->conv, r, NULL);
        emit_step_finish(a);
        if (cut)
            ad_events_warn(a->ev, "the answer was cut short (finish_reason \"%s\")%s", fr,
                           strcmp(fr, "length") == 0 ? "; raise agent.max_tokens for longer answers"
                                                     : "");
        json_object *total = ad_usage_json(&a->usage);
        ad_events_finish(a->ev, a->step, r->text.data ? r->text.data : "", r->text.len, total);
        json_object_put(total);
        end_run(a, AD_RUN_OK);
        return;
    }
    if (cut) {
        emit_step_finish(a);
        fail(a,
             "the response was cut short (finish_reason \"%s\") while the model was writing %zu "
             "tool call(s); no tool was run%s",
             fr, r->ncalls, strcmp(fr, "length") == 0 ? "; raise agent.max_tokens" : "");
        return;
    }
    if (a->step >= a->cfg->max_steps) {
        /* The calls the model asked for in vain: reported, marked not run. */
        for (size_t i = 0; i < r->ncalls; i++)
            ad_events_tool_not_run(a->ev, a->step, r->calls[i].id, r->calls[i].name,
                                   r->calls[i].args.data ? r->calls[i].args.data : "{}",
                                   r->calls[i].args.data ? r->calls[i].args.len : 2);
        emit_step_finish(a);
        ad_events_error(a->ev,
                        "max_steps (%d) reached and the model still asks for %zu tool call(s); "
                        "raise agent.max_steps or --max-steps",
                        a->cfg->max_steps, r->ncalls);
        end_run(a, AD_RUN_MAX_STEPS);
        return;
    }

    batch *b = calloc(1, sizeof *b + r->ncalls * sizeof b->slots[0]);
    if (!b) {
        fail(a, "out of memory");
        return;
    }
    b->agent = a;
    b->tools = a->tools;
    b->key_env = a->cfg->api_key_env;
    b->attached = true;
    b->n = b->open = r->ncalls;
    uv_timer_init(a->loop, &b->timer);
    b->timer.data = b;
    b->next = a->batches;
    a->batches = b;
    a->batch = b;
    for (size_t i = 0; i < r->ncalls; i++) {
        ad_tool_call *c = &r->calls[i];
        call_slot *s = &b->slots[i];
        s->b = b;
        s->name = ad_strdup(c->name ? c->name : "");
        s->args = c->args.data ? ad_strndup(c->args.data, c->args.len) : ad_strdup("{}");
        s->args_len = c->args.data ? c->args.len : 2;
        s->tool = a->tools ? ad_tools_find(a->tools, s->name) : NULL;
        s->id = ad_conv_call_id(a->conv, r, i, a->cfg->unique_tool_call_ids);
        if (!s->name || !s->args || !s->id) {
            batch_detach(a);
            fail(a, "out of memory");
            return;
        }
    }
    const char **ids = malloc(b->n * sizeof *ids);
    if (!ids) {
        batch_detach(a);
        fail(a, "out of memory");
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        ids[i] = b->slots[i].id;
    ad_conv_add_answer(a->conv, r, ids);
    free(ids);
    a->tools_ran = true;
    for (size_t i = 0; i < b->n; i++)
        ad_events_tool_call(a->ev, a->step, b->slots[i].id, b->slots[i].name, b->slots[i].args,
                            b->slots[i].args_len);
    dispatch(a);
}

/* What a failed transfer means, naming the setting behind a timeout. */
static void transport_error(ad_agent *a, const ad_xfer_result *res, ad_buf *msg)
{
    switch (res->timeout) {
    case AD_XFER_TIMEOUT_CONNECT:
        ad_buf_printf(msg, "could not connect to %s within %g s (provider.connect_timeout_s)",
                      a->url, a->cfg->connect_timeout_s);
        break;
    case AD_XFER_TIMEOUT_IDLE:
        ad_buf_printf(msg, "no data from %s for %g s (provider.idle_timeout_s)", a->url,
                      a->cfg->idle_timeout_s);
        break;
    case AD_XFER_TIMEOUT_TOTAL:
        ad_buf_printf(msg, "the request to %s took longer than %g s (provider.timeout_s)",
                      a->url, a->cfg->timeout_s);
        break;
    default:
        ad_buf_printf(msg, "%s %s failed: %s", a->emitted ? "the response from" : "request to",
                      a->url, res->error ? res->error : "transfer failed");
        if (a->emitted)
            ad_buf_puts(msg, " (it broke off after partial output)");
    }
}

/* Why a status is not retried, and what to check. */
static void status_hint(ad_agent *a, long status, ad_buf *msg)
{
    char src[512];
    ad_config_key_source(a->cfg, src, sizeof src);
    if ((status == 401 || status == 403) && !a->cfg->api_key) {
        ad_buf_puts(msg, " (no API key was sent: name the variable that holds it in "
                         "provider.api_key_env, or a file in provider.api_key_file)");
        return;
    }
    switch (status) {
    case 400:
        ad_buf_puts(msg, " (the provider rejected the request: check provider.model, "
                         "provider.extra and agent.max_tokens)");
        break;
    case 401:
        ad_buf_printf(msg, " (check the API key in %s)", src);
        break;
    case 403:
        ad_buf_printf(msg,
                      " (the API key in %s is not allowed to do this: check its permissions "
                      "and provider.model)",
                      src);
        break;
    case 404:
        ad_buf_puts(msg, " (check provider.base_url and provider.model)");
        break;
    default:
        break;
    }
}

static void on_xfer_done(void *ud, const ad_xfer_result *res)
{
    ad_agent *a = ud;
    a->req = NULL;
    if (a->cancelled) {
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    flush_text(a);
    char detail[512];
    if (a->has_err) {
        fail(a, "%s (from %s)", a->err, a->url);
        return;
    }
    /* A connection that drops after the stream said [DONE] lost nothing:
     * the response is complete (its finish reason is checked below). */
    bool complete = a->mode == 1 && ad_stream_response(a->stream)->done && !res->timeout &&
                    !res->aborted && res->status >= 200 && res->status < 300;
    if (res->code != 0 && a->mode != 3 && !complete) {
        ad_buf msg = AD_BUF_INIT;
        transport_error(a, res, &msg);
        if (res->transient && !res->fatal && maybe_retry(a, msg.data, -1)) {
            ad_buf_free(&msg);
            return;
        }
        fail(a, "%s", msg.data ? msg.data : "out of memory");
        ad_buf_free(&msg);
        return;
    }
    if (a->mode == 3 || res->status < 200 || res->status >= 300) {
        describe_error_body(a, &a->resp_body, detail, sizeof detail);
        ad_buf msg = AD_BUF_INIT;
        ad_buf_printf(&msg, "HTTP %ld from %s%s%s", res->status, a->url, detail[0] ? ": " : "",
                      detail);
        if (retryable_status(res->status) && res->retry_after_s > a->cfg->max_retry_wait_s) {
            /* Waiting only the cap would retry into the same limit. */
            char asked[32], cap[32];
            format_wait(asked, sizeof asked, res->retry_after_s);
            format_wait(cap, sizeof cap, a->cfg->max_retry_wait_s);
            ad_buf_printf(&msg,
                          "; the provider asks to wait %s s, more than "
                          "provider.max_retry_wait_s (%s s); not retried",
                          asked, cap);
            fail(a, "%s", msg.data);
            ad_buf_free(&msg);
            return;
        }
        if (retryable_status(res->status) && maybe_retry(a, msg.data, res->retry_after_s)) {
            ad_buf_free(&msg);
            return;
        }
        status_hint(a, res->status, &msg);
        fail(a, "%s", msg.data);
        ad_buf_free(&msg);
        return;
    }
    char err[512];
    int rc;
    if (res->bytes == 0) {
        snprintf(err, sizeof err, "empty response body (HTTP %ld, Content-Type %s)", res->status,
                 res->content_type ? res->content_type : "none");
        if (maybe_retry(a, err, -1))
            return;
        fail(a, "%s from %s", err, a->url);
        return;
    }
    if (a->mode == 1) {
        rc = ad_sse_finish(a->sse);
        if (rc != 0) {
            sse_error(a, rc);
            fail(a, "%s (from %s)", a->err, a->url);
            return;
        }
    } else {
        rc = ad_stream_message(a->stream, a->resp_body.data, a->resp_body.len, err, sizeof err);
        if (rc != AD_OK) {
            const char *ct = res->content_type ? res->content_type : "none";
            fail(a, "%s (from %s, Content-Type %s)", err, a->url, ct);
            return;
        }
    }
    flush_text(a);
    rc = ad_stream_end(a->stream, err, sizeof err);
    if (rc != AD_OK) {
        /* A stream that ends before its finish reason was cut: retry. */
        char why[700];
        snprintf(why, sizeof why, "%s; the stream from %s was cut", err, a->url);
        if (maybe_retry(a, why, -1))
            return;
        fail(a, "%s%s", why, a->emitted ? " (the partial text above is kept)" : "");
        return;
    }
    response_done(a);
}

static void start_step(ad_agent *a)
{
    if (a->cancelled) {
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    if (a->attempt == 0) {
        /* Built once per step, sent from the request object's own buffer
         * by every attempt: no copy of the conversation is made. */
        release_body(a);
        a->body_req = request_json(a);
        a->body = a->body_req ? json_object_to_json_string_length(a->body_req,
                                                                  AD_REQUEST_JSON_FLAGS,
                                                                  &a->body_len)
                              : NULL;
        if (!a->body) {
            release_body(a);
            fail(a, "out of memory building the request");
            return;
        }
    }
    /* Text shown from here on can still be taken back only while a retry
     * may repeat the step after output (maybe_retry). */
    ad_events_step_begin(a->ev, a->step,
                         !a->tools_ran && a->attempt < a->cfg->max_retries);
    a->mode = 0;
    a->has_err = false;
    a->err[0] = '\0';
    a->emitted = false;
    a->resp_bytes = 0;
    ad_buf_reset(&a->held);
    ad_buf_reset(&a->resp_body);
    ad_sse_reset(a->sse);
    ad_stream_reset(a->stream);
    ad_xfer_req q = {
        .url = a->url,
        .headers = (const char *const *)a->headers,
        .nheaders = a->nheaders,
        .body = a->body,
        .body_len = a->body_len,
        .timeout_s = a->cfg->timeout_s,
        .connect_timeout_s = a->cfg->connect_timeout_s,
        .idle_timeout_s = a->cfg->idle_timeout_s,
    };
    ad_xfer_cb cb = {on_data, NULL, on_xfer_done};
    a->req = ad_xfer_start(a->transport, &q, &cb, a);
    if (!a->req)
        fail(a, "cannot start a request to %s", a->url);
}

/* ---- public ------------------------------------------------------------ */

ad_agent *ad_agent_new(const ad_agent_opts *o)
{
    ad_agent *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = o->loop;
    a->transport = o->transport;
    a->cfg = o->cfg;
    a->tools = o->tools;
    a->ev = o->events;
    a->model = ad_strdup(o->cfg->model ? o->cfg->model : "");
    a->conv = ad_conv_new();
    ad_stream_callbacks scb = {on_text, NULL};
    a->stream = ad_stream_new(&scb, a);
    a->sse = ad_sse_new((size_t)o->cfg->max_event_bytes, on_sse_event, a);
    if (a->stream) {
        ad_stream_set_limits(a->stream, (size_t)o->cfg->max_tool_calls,
                             (size_t)o->cfg->max_tool_args_bytes);
        ad_stream_set_secret(a->stream, o->cfg->api_key);
    }
    ad_buf u = AD_BUF_INIT;
    ad_buf_printf(&u, "%s/chat/completions", o->cfg->base_url ? o->cfg->base_url : "");
    a->url = ad_buf_steal(&u);
    if (!a->model || !a->conv || !a->stream || !a->sse || !a->url)
        goto fail;
    if (a->tools && ad_tools_count(a->tools) > 0)
        a->tools_json = ad_tools_openai_json(a->tools);

    size_t nh = o->cfg->nheaders + 3;
    a->headers = calloc(nh, sizeof *a->headers);
    if (!a->headers)
        goto fail;
    ad_buf h = AD_BUF_INIT;
    a->headers[a->nheaders++] = ad_strdup("Content-Type: application/json");
    a->headers[a->nheaders++] =
        ad_strdup(o->cfg->stream ? "Accept: text/event-stream, application/json" : "Accept: application/json");
    if (o->cfg->api_key) {
        ad_buf_printf(&h, "Authorization: Bearer %s", o->cfg->api_key);
        a->headers[a->nheaders++] = ad_buf_steal(&h);
    }
    for (size_t i = 0; i < o->cfg->nheaders; i++) {
        ad_buf_printf(&h, "%s: %s", o->cfg->headers[i].name, o->cfg->headers[i].value);
        /* A configured header replaces a default one of the same name. */
        size_t nl = strlen(o->cfg->headers[i].name);
        for (size_t j = 0; j < a->nheaders; j++) {
            if (a->headers[j] && strncasecmp(a->headers[j], h.data, nl + 1) == 0) {
                free(a->headers[j]);
                a->headers[j] = a->headers[--a->nheaders];
                a->headers[a->nheaders] = NULL;
                break;
            }
        }
        a->headers[a->nheaders++] = ad_buf_steal(&h);
    }
    ad_conv_set_observer(a->conv, on_conv_append, a);
    if (o->cfg->system_prompt && o->cfg->system_prompt[0] &&
        ad_conv_add_text(a->conv, "system", o->cfg->system_prompt,
                         strlen(o->cfg->system_prompt)) != AD_OK)
        goto fail;
    uv_timer_init(a->loop, &a->retry_timer);
    a->retry_timer.data = a;
    return a;
fail:
    ad_agent_free(a);
    return NULL;
}

static void on_agent_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void ad_agent_free(ad_agent *a)
{
    if (!a)
        return;
    if (a->req)
        ad_xfer_cancel(a->req);
    a->req = NULL;
    free(a->model);
    ad_conv_free(a->conv);
    json_object_put(a->tools_json);
    free(a->url);
    for (size_t i = 0; i < a->nheaders; i++) {
        if (a->headers[i]) {
            memset(a->headers[i], 0, strlen(a->headers[i]));
            free(a->headers[i]);
        }
    }
    free(a->headers);
    release_body(a);
    ad_buf_free(&a->resp_body);
    ad_buf_free(&a->held);
    ad_sse_free(a->sse);
    ad_stream_free(a->stream);
    batch_detach(a);
    while (a->batches) {
        /* Workers still running (timed-out or abandoned tools) keep their
         * batch; it frees itself when they return. */
        batch *b = a->batches;
        a->batches = b->next;
        b->agent = NULL;
        b->attached = false;
        batch_release(b);
    }
    if (a->retry_timer.loop) {
        uv_timer_stop(&a->retry_timer);
        uv_close((uv_handle_t *)&a->retry_timer, on_agent_timer_closed);
    } else {
        free(a);
    }
}

int ad_agent_run(ad_agent *a, const char *prompt, ad_agent_done_fn on_done, void *ud)
{
    if (a->running)
        return AD_EINVAL;
    a->step = 1;
    /* A last turn without an answer gets its gap marked (ad_conv_add_prompt). */
    if (ad_conv_add_prompt(a->conv, prompt) != AD_OK)
        return AD_ENOMEM;
    a->running = true;
    a->cancelled = false;
    a->on_done = on_done;
    a->ud = ud;
    a->step = 1;
    a->attempt = 0;
    a->tools_ran = false;
    a->usage = (ad_usage)AD_USAGE_INIT;
    start_step(a);
    return AD_OK;
}

void ad_agent_cancel(ad_agent *a)
{
    if (!a->running)
        return;
    a->cancelled = true;
    uv_timer_stop(&a->retry_timer);
    if (a->req) {
        ad_xfer_cancel(a->req);
        a->req = NULL;
        keep_partial_answer(a, true);
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    if (a->batch) {
        /* Every call without a result gets one now (finish_tools). */
        finish_tools(a);
        return;
    }
    /* Waiting to retry: the step's partial text was given up already. */
    keep_partial_answer(a, false);
    end_run(a, AD_RUN_CANCELLED);
}

void ad_agent_set_approver(ad_agent *a, ad_agent_approve_fn fn, void *ud, bool yes)
{
    a->approve = fn;
    a->approve_ud = ud;
    a->yes = yes;
}

void ad_agent_set_observer(ad_agent *a, ad_agent_message_fn fn, void *ud)
{
    a->observer = fn;
    a->observer_ud = ud;
}

int ad_agent_load_messages(ad_agent *a, json_object *messages)
{
    if (a->running)
        return AD_EINVAL;
    return ad_conv_replace(a->conv, messages);
}

bool ad_agent_busy(const ad_agent *a)
{
    for (const batch *b = a->batches; b; b = b->next)
        if (b->running > 0)
            return true;
    return false;
}

json_object *ad_agent_messages(ad_agent *a)
{
    return ad_conv_messages(a->conv);
}

ad_conv *ad_agent_conv(ad_agent *a)
{
    return a->conv;
}

const char *ad_agent_id_prefix(const ad_agent *a)
{
    return ad_conv_id_prefix(a->conv);
}

int ad_agent_set_id_prefix(ad_agent *a, const char *prefix)
{
    return ad_conv_set_id_prefix(a->conv, prefix);
}

int ad_agent_set_model(ad_agent *a, const char *model)
{
    char *m = ad_strdup(model);
    if (!m)
        return AD_ENOMEM;
    free(a->model);
    a->model = m;
    return AD_OK;
}

/*
 * agent.c -- the step state machine (see agent.h).
 *
 *   start_step ──► POST ──► on_data (SSE or JSON body) ──► on_xfer_done
 *        ▲                                                     │
 *        │        retry timer ◄── retryable failure ───────────┤
 *        │                                                     ▼
 *        └──── all tool results in ◄── run_tools ◄─ response with tool calls
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
 *  - Everything the run reports goes through the conversation's event hub
 *    (core/events.h). While the hub holds events (a sink paused) the
 *    exchange is paused and neither the next request nor the step's tool
 *    calls start (on_flow); a sink may cancel the run from inside an event.
 *  - Approvals (confirm = true) are questions a sink answers later
 *    (ad_agent_approve); every question of a step goes out before any of
 *    its calls starts, and none starts before the last answer.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"
#include "core/conv.h"
#include "core/request.h"
#include "provider/sse.h"
#include "core/stream.h"

#define MAX_ERROR_BODY (64u << 10)

/* One tool call of the step. */
typedef struct tool_call {
    char *id;   /* owned: the id sent back to the provider */
    char *name; /* owned */
    char *args; /* owned */
    size_t args_len;
    double timeout_s;      /* 0 = none */
    bool answered;         /* its result was decided here (approval, no tools) */
    bool external;         /* a client tool: the caller gives its result */
    bool needs_approval;   /* waits for ad_agent_approve() */
    ad_tool_result result; /* when answered */
    size_t hi;             /* otherwise: its position in the host's batch */
    const ad_call_outcome *out; /* the host's outcome (valid until its on_done returns) */
    bool ready;            /* it has its result */
} tool_call;

struct ad_agent {
    uv_loop_t *loop;
    ad_transport *transport;
    const ad_config *cfg;
    ad_tool_host *tools;
    ad_events *ev;
    char *model; /* owned */
    char *conv_id; /* owned or NULL: the conversation's id for the tool host */

    ad_conv *conv;           /* owned: the conversation */
    json_object *tools_json; /* owned: the request's "tools", or NULL */
    uint64_t tools_gen;      /* the host's generation tools_json was built for */
    char **offered;          /* owned: the host tools offered; NULL: all */
    size_t noffered;
    json_object *client_tools; /* owned: tools the caller answers, or NULL */
    char **client_names;       /* owned: their names */
    size_t nclient;
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

    /* tool calls */
    tool_call *calls; /* the step's calls, while it runs them */
    size_t ncalls;
    size_t *hosted;    /* the host batch's calls: their index in calls */
    size_t reported;   /* calls whose tool_result event went out (a prefix) */
    ad_tool_batch *tb; /* the host runs them; NULL when not waiting */
    bool yes;            /* approve every call that needs confirmation */
    size_t approvals;    /* calls of the step still waiting for a decision */
    bool asking;         /* approval events are going out (ask_approvals) */

    /* flow (the hub's hook): while the hub holds events, nothing new starts */
    bool flow_paused;
    int deferred;        /* DEFER_*: what waits for the hub */
};

/* What waits while the hub holds events (on_flow). */
enum { DEFER_NONE = 0, DEFER_STEP, DEFER_TOOLS };

static void start_step(ad_agent *a);
static void run_tools(ad_agent *a);

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
 * here, so the sinks (the session store) see each one as soon as it
 * exists. */
static void on_conv_append(void *ud, json_object *m)
{
    ad_agent *a = ud;
    ad_events_message(a->ev, a->step, m);
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
    uv_timer_stop(&a->retry_timer); /* nothing of this run goes on (a cancel from an event) */
    a->deferred = DEFER_NONE;
    a->approvals = 0;
    /* Between runs nothing retries: the conversation is not held twice. */
    release_body(a);
    ad_events_end(a->ev, a->step, status);
    ad_agent_done_fn cb = a->on_done;
    void *ud = a->ud;
    a->on_done = NULL;
    if (cb)
        cb(ud, status);
}

static void calls_free(ad_agent *a)
{
    for (size_t i = 0; i < a->ncalls; i++) {
        free(a->calls[i].id);
        free(a->calls[i].name);
        free(a->calls[i].args);
        ad_tool_result_free(&a->calls[i].result);
    }
    free(a->calls);
    free(a->hosted);
    a->calls = NULL;
    a->hosted = NULL;
    a->ncalls = a->reported = a->approvals = 0;
}

/* ---- request ----------------------------------------------------------- */

/* The request for the current conversation (ad_conv_request). Caller puts. */
/* The request's tools follow the host's list: rebuilt when a provider's
 * list changed (or for the first request). Returns AD_ENOMEM or AD_OK. */
static bool named(char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* A host tool this agent offers. */
static bool offered(const ad_agent *a, const char *name)
{
    return a->tools && ad_tool_host_find(a->tools, name) &&
           (!a->offered || named(a->offered, a->noffered, name));
}

static int update_tools(ad_agent *a)
{
    if ((!a->tools || ad_tool_host_generation(a->tools) == a->tools_gen) && a->tools_gen)
        return AD_OK;
    json_object_put(a->tools_json);
    a->tools_json = a->tools ? ad_tool_host_openai_json(a->tools) : NULL;
    if (!a->tools_json && a->tools && ad_tool_host_count(a->tools) > 0)
        return AD_ENOMEM;
    if (a->tools_json && a->offered) {
        json_object *kept = json_object_new_array();
        for (size_t i = 0; kept && i < json_object_array_length(a->tools_json); i++) {
            json_object *t = json_object_array_get_idx(a->tools_json, i);
            if (named(a->offered, a->noffered, ad_json_str(ad_json_get(t, "function"), "name")))
                json_object_array_add(kept, json_object_get(t));
        }
        json_object_put(a->tools_json);
        a->tools_json = kept;
    }
    if (a->client_tools && a->tools_json && !a->offered) {
        /* The host's array is shared: the client's tools go in one of our
         * own. */
        json_object *own = json_object_new_array();
        for (size_t i = 0; own && i < json_object_array_length(a->tools_json); i++)
            json_object_array_add(own, json_object_get(json_object_array_get_idx(a->tools_json, i)));
        json_object_put(a->tools_json);
        a->tools_json = own;
        if (!own)
            return AD_ENOMEM;
    }
    for (size_t i = 0; a->client_tools && i < json_object_array_length(a->client_tools); i++) {
        if (!a->tools_json && !(a->tools_json = json_object_new_array()))
            return AD_ENOMEM;
        json_object_array_add(a->tools_json,
                              json_object_get(json_object_array_get_idx(a->client_tools, i)));
    }
    if (a->tools_json && json_object_array_length(a->tools_json) == 0) {
        json_object_put(a->tools_json);
        a->tools_json = NULL;
    }
    /* 1 without a host: built once. */
    a->tools_gen = a->tools ? ad_tool_host_generation(a->tools) : 1;
    return AD_OK;
}

static json_object *request_json(ad_agent *a)
{
    if (update_tools(a) != AD_OK)
        return NULL;
    return ad_conv_request(a->conv, a->cfg, a->model, a->tools_json);
}

char *ad_agent_request_body(ad_agent *a, size_t *len)
{
    if (update_tools(a) != AD_OK)
        return NULL;
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

static int feed(ad_agent *a, long status, const char *ctype, const char *data, size_t len);

/* Body bytes. A sink that cancelled the run from inside the events they
 * caused (ad_agent_cancel) has the exchange aborted here. */
static int on_data(void *ud, long status, const char *ctype, const char *data, size_t len)
{
    ad_agent *a = ud;
    int rc = feed(a, status, ctype, data, len);
    return rc || a->cancelled;
}

static int feed(ad_agent *a, long status, const char *ctype, const char *data, size_t len)
{
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
    if (a->cancelled)
        return true; /* by a sink, from the event: the run ends from the loop */
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

/*
 * The step's calls: the agent asks the approvals, answers what it decides
 * itself (a denied call, no tools at all), and hands the rest to the tool
 * host as one batch. A result is reported (its tool_result event) as soon
 * as it and every result before it are in: as early as possible, and in
 * call order, so that the same run gives the same event stream whatever
 * order the calls finish in. When the last is in (on_tools_done) the tool
 * messages are appended in call order and the next step starts.
 */

static void answer(tool_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void answer(tool_call *c, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    ad_tool_result_free(&c->result);
    c->result.len = b.len;
    c->result.content = ad_buf_steal(&b);
    c->result.is_error = true;
    c->answered = true;
    c->ready = true;
}

/* The tool_result events of the calls whose results are in, up to the
 * first one still running. */
static void report_results(ad_agent *a)
{
    /* Counted before the event: a sink that cancels the run from inside it
     * makes the rest reported from in there. A client tool's call is the
     * caller's to report. */
    while (a->reported < a->ncalls &&
           (a->calls[a->reported].ready || a->calls[a->reported].external)) {
        const tool_call *c = &a->calls[a->reported++];
        if (!c->ready)
            continue;
        const ad_tool_result *r = c->out ? &c->out->result : &c->result;
        ad_events_tool_result(a->ev, a->step, c->id, c->name, r->content ? r->content : "",
                              r->content ? r->len : 0, r->is_error,
                              c->out ? c->out->seconds : 0);
    }
}

/*
 * Approvals. A call of a tool configured with confirm = true runs only once
 * a sink that answers approvals (AD_SINK_APPROVES: the REPL's prompt) said
 * yes through ad_agent_approve(); with none, such calls are denied at once
 * (--yes allows them all, unasked). Every question goes out before any call
 * of the step starts, and no call starts before the last answer: a "cancel"
 * answer, or ad_agent_cancel() while the answers are awaited, starts none.
 * Returns true when answers are still awaited (ad_agent_approve goes on).
 */
static bool ask_approvals(ad_agent *a)
{
    bool anyone = ad_events_can_approve(a->ev);
    a->approvals = 0;
    for (size_t i = 0; i < a->ncalls; i++) {
        tool_call *c = &a->calls[i];
        bool confirm;
        int iso;
        /* An unknown tool is answered by the host; nothing to approve. */
        if (c->answered || c->external || !ad_tool_host_find(a->tools, c->name))
            continue;
        ad_config_tool(a->cfg, c->name, &c->timeout_s, &confirm, &iso);
        if (!confirm || a->yes)
            continue;
        if (!anyone) {
            answer(c, "tool '%s' needs approval (confirm = true) and none was given; it was not "
                      "run",
                   c->name);
            continue;
        }
        c->needs_approval = true;
        a->approvals++;
    }
    if (a->approvals == 0)
        return false;
    /* An answer may come from inside the event (the REPL asks on the
     * terminal there): it is only recorded until every question is out. */
    a->asking = true;
    for (size_t i = 0; i < a->ncalls && !a->cancelled; i++) {
        tool_call *c = &a->calls[i];
        if (c->needs_approval)
            ad_events_approval(a->ev, a->step, c->id, c->name, c->args, c->args_len);
    }
    a->asking = false;
    return a->approvals > 0 && !a->cancelled;
}

/* The step's result parts (provider.images) as one user message. */
static void add_tool_parts(ad_agent *a)
{
    const char **ids = calloc(a->ncalls, sizeof *ids), **names = calloc(a->ncalls, sizeof *names);
    json_object **parts = calloc(a->ncalls, sizeof *parts);
    if (ids && names && parts) {
        for (size_t i = 0; i < a->ncalls; i++) {
            const tool_call *c = &a->calls[i];
            ids[i] = c->id;
            names[i] = c->name;
            parts[i] = (c->out ? &c->out->result : &c->result)->parts;
        }
        ad_conv_add_tool_parts(a->conv, a->ncalls, ids, names, parts);
    }
    free(ids);
    free(names);
    free(parts);
}

/* Every call has its result (o: the host's, for the calls it ran; NULL
 * when none ran): one tool message per call, in call order, then the
 * results' parts (add_tool_parts). */
static void finish_tools(ad_agent *a, const ad_call_outcome *o, size_t n)
{
    size_t external = 0;
    for (size_t i = 0; i < a->ncalls; i++) {
        tool_call *c = &a->calls[i];
        if (c->external && !a->cancelled) {
            external++;
            continue;
        }
        if (c->external)
            answer(c, "cancelled by user before it started; it was not run");
        if (!c->answered && o && c->hi < n) {
            c->out = &o[c->hi];
            c->ready = true;
        } else if (!c->answered) {
            /* The turn was cancelled before the call was handed on. */
            answer(c, "cancelled by user before it started; it was not run");
        }
    }
    report_results(a);
    bool parts = false;
    for (size_t i = 0; i < a->ncalls; i++) {
        tool_call *c = &a->calls[i];
        if (c->external && !c->ready)
            continue; /* the caller answers it */
        const ad_tool_result *r = c->out ? &c->out->result : &c->result;
        const char *text = r->content;
        size_t len = r->len;
        ad_conv_add_tool_result(a->conv, c->id, text ? text : "", text ? len : 0);
        parts |= r->parts != NULL;
    }
    /* Images for the model follow the tool messages, in a user message;
     * the tool messages of client tools come later, so with them (or a
     * cancelled turn) the results stay described only. */
    if (parts && !external && !a->cancelled)
        add_tool_parts(a);
    calls_free(a);
    emit_step_finish(a);
    if (a->cancelled) {
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    if (external) {
        end_run(a, AD_RUN_CLIENT_TOOLS);
        return;
    }
    a->step++;
    a->attempt = 0;
    start_step(a);
}

static void on_tool_result(void *ud, size_t i, const ad_call_outcome *o)
{
    ad_agent *a = ud;
    tool_call *c = &a->calls[a->hosted[i]];
    c->out = o;
    c->ready = true;
    report_results(a);
}

static void on_tool_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    ad_agent *a = ud;
    const tool_call *c = &a->calls[a->hosted[i]];
    ad_events_tool_progress(a->ev, a->step, c->id, c->name, done, total, msg);
}

static void on_tools_done(void *ud, const ad_call_outcome *o, size_t n)
{
    ad_agent *a = ud;
    a->tb = NULL;
    finish_tools(a, o, n);
}

/* Every decision is in: the calls nobody answered go to the host. */
static void start_tools(ad_agent *a)
{
    report_results(a);
    if (a->cancelled) {
        finish_tools(a, NULL, 0);
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < a->ncalls; i++)
        m += !a->calls[i].answered && !a->calls[i].external;
    if (m == 0) {
        finish_tools(a, NULL, 0);
        return;
    }
    ad_call_req *reqs = calloc(m, sizeof *reqs);
    a->hosted = calloc(m, sizeof *a->hosted);
    if (!reqs || !a->hosted) {
        free(reqs);
        calls_free(a);
        fail(a, "out of memory");
        return;
    }
    for (size_t i = 0, k = 0; i < a->ncalls; i++) {
        tool_call *c = &a->calls[i];
        if (c->answered || c->external)
            continue;
        c->hi = k;
        a->hosted[k] = i;
        reqs[k++] = (ad_call_req){c->id, c->name, c->args, c->args_len, c->timeout_s};
    }
    static const ad_batch_cb cb = {.on_progress = on_tool_progress,
                                   .on_result = on_tool_result,
                                   .on_done = on_tools_done};
    /* The agent's id prefix names its conversation in the tools' log lines. */
    a->tb = ad_tool_host_run(a->tools, a->conv_id ? a->conv_id : ad_conv_id_prefix(a->conv),
                             reqs, m, &cb, a);
    free(reqs);
    if (!a->tb) {
        calls_free(a);
        fail(a, "out of memory");
    }
}

static void run_tools(ad_agent *a)
{
    /* No tool starts before the message asking for it reached every sink
     * (the session store: it is on disk). */
    if (a->flow_paused) {
        a->deferred = DEFER_TOOLS;
        return;
    }
    for (size_t i = 0; i < a->ncalls; i++) {
        tool_call *c = &a->calls[i];
        if (named(a->client_names, a->nclient, c->name))
            c->external = true;
        else if (!a->tools)
            answer(c, "unknown tool '%s': no tools are loaded", c->name);
        else if (a->offered && !offered(a, c->name))
            answer(c, "unknown tool '%s': it is not offered here", c->name);
    }
    if (ask_approvals(a))
        return;
    start_tools(a);
}

/* ---- the step ---------------------------------------------------------- */

static void response_done(ad_agent *a)
{
    ad_response *r = ad_stream_response(a->stream);
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
            ad_events_tool_call(a->ev, a->step, r->calls[i].id, r->calls[i].name,
                                r->calls[i].args.data ? r->calls[i].args.data : "{}",
                                r->calls[i].args.data ? r->calls[i].args.len : 2, true);
        emit_step_finish(a);
        ad_events_error(a->ev,
                        "max_steps (%d) reached and the model still asks for %zu tool call(s); "
                        "raise agent.max_steps or --max-steps",
                        a->cfg->max_steps, r->ncalls);
        end_run(a, AD_RUN_MAX_STEPS);
        return;
    }

    a->calls = calloc(r->ncalls, sizeof *a->calls);
    const char **ids = malloc(r->ncalls * sizeof *ids);
    if (!a->calls || !ids) {
        free(ids);
        free(a->calls);
        a->calls = NULL;
        fail(a, "out of memory");
        return;
    }
    a->ncalls = r->ncalls;
    for (size_t i = 0; i < r->ncalls; i++) {
        ad_tool_call *c = &r->calls[i];
        tool_call *s = &a->calls[i];
        s->name = ad_strdup(c->name ? c->name : "");
        s->args = c->args.data ? ad_strndup(c->args.data, c->args.len) : ad_strdup("{}");
        s->args_len = c->args.data ? c->args.len : 2;
        s->id = ad_conv_call_id(a->conv, r, i, a->cfg->unique_tool_call_ids);
        if (!s->name || !s->args || !s->id) {
            free(ids);
            calls_free(a);
            fail(a, "out of memory");
            return;
        }
        ids[i] = s->id;
    }
    ad_conv_add_answer(a->conv, r, ids);
    free(ids);
    a->tools_ran = true;
    for (size_t i = 0; i < a->ncalls; i++)
        ad_events_tool_call(a->ev, a->step, a->calls[i].id, a->calls[i].name, a->calls[i].args,
                            a->calls[i].args_len, false);
    run_tools(a);
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
        /* Cancelled by a sink while the response arrived (on_data). */
        keep_partial_answer(a, true);
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
    /* No request goes out before the messages it carries reached every
     * sink (the session store: they are on disk). */
    if (a->flow_paused) {
        a->deferred = DEFER_STEP;
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
    ad_events_step_start(a->ev, a->step, !a->tools_ran && a->attempt < a->cfg->max_retries);
    if (a->cancelled)
        return; /* by a sink, from the event: the run ends from the loop */
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
    else if (a->flow_paused) /* a sink paused on the step's start */
        ad_xfer_pause(a->req, true);
}

/* The hub's flow hook (events.h). Paused, the exchange stops reading (the
 * transport keeps what it has, the socket fills, the server waits), and
 * what would start next (a step's request, the step's tools) waits until
 * the hub has delivered everything. */
static void on_flow(void *ud, bool paused)
{
    ad_agent *a = ud;
    a->flow_paused = paused;
    if (a->req)
        ad_xfer_pause(a->req, paused);
    /* Resuming the exchange may have delivered data that paused it again. */
    if (paused || a->flow_paused || !a->running)
        return;
    int d = a->deferred;
    a->deferred = DEFER_NONE;
    if (d == DEFER_STEP)
        start_step(a);
    else if (d == DEFER_TOOLS && a->calls)
        run_tools(a);
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
    ad_events_set_flow(a->ev, on_flow, a);
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
    ad_events_set_flow(a->ev, NULL, NULL);
    free(a->model);
    free(a->conv_id);
    ad_conv_free(a->conv);
    json_object_put(a->tools_json);
    for (size_t i = 0; i < a->noffered; i++)
        free(a->offered[i]);
    free(a->offered);
    json_object_put(a->client_tools);
    for (size_t i = 0; i < a->nclient; i++)
        free(a->client_names[i]);
    free(a->client_names);
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
    /* Calls still running (timed-out or abandoned tools) are the host's
     * now; their results are dropped. */
    if (a->tb)
        ad_tool_batch_abandon(a->tb);
    a->tb = NULL;
    calls_free(a);
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
    if (prompt && ad_conv_add_prompt(a->conv, prompt) != AD_OK)
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

static void on_cancel_timer(uv_timer_t *t)
{
    ad_agent_cancel(t->data);
}

void ad_agent_cancel(ad_agent *a)
{
    if (!a->running)
        return;
    a->cancelled = true;
    uv_timer_stop(&a->retry_timer);
    if (ad_events_delivering(a->ev)) {
        /* From a sink's event: the agent is in the middle of its own work
         * further down the stack. Nothing new starts from now on (the
         * flag; on_data aborts the exchange), and the run ends from the
         * loop right after, if it has not ended by then. */
        uv_timer_start(&a->retry_timer, on_cancel_timer, 0, 0);
        return;
    }
    a->deferred = DEFER_NONE;
    if (a->req) {
        ad_xfer_cancel(a->req);
        a->req = NULL;
        keep_partial_answer(a, true);
        end_run(a, AD_RUN_CANCELLED);
        return;
    }
    if (a->tb) {
        /* Every call without a result gets one now; the host's on_done
         * follows from the loop and ends the run (finish_tools). */
        ad_tool_batch_cancel(a->tb);
        return;
    }
    if (a->calls) {
        /* Waiting for approvals or for the hub: no call started, each
         * gets "not run". */
        finish_tools(a, NULL, 0);
        return;
    }
    /* Waiting to retry: the step's partial text was given up already. */
    keep_partial_answer(a, false);
    end_run(a, AD_RUN_CANCELLED);
}

void ad_agent_set_yes(ad_agent *a, bool yes)
{
    a->yes = yes;
}

/* The waiting call of the step with that id: the id itself, or as a sink
 * saw it (events are redacted: an id can hold the key). */
static tool_call *waiting_call(ad_agent *a, const char *call_id)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < a->ncalls; i++) {
            tool_call *c = &a->calls[i];
            if (!c->needs_approval)
                continue;
            char *r = pass ? ad_redact(c->id, strlen(c->id), a->cfg->api_key, NULL) : NULL;
            bool same = (pass == 0 || r) && strcmp(r ? r : c->id, call_id) == 0;
            free(r);
            if (same)
                return c;
        }
    }
    return NULL;
}

int ad_agent_approve(ad_agent *a, const char *call_id, int decision)
{
    tool_call *c = call_id && a->running && !a->tb ? waiting_call(a, call_id) : NULL;
    if (!c)
        return AD_EINVAL;
    c->needs_approval = false;
    a->approvals--;
    switch (decision) {
    case AD_APPROVE_YES:
    case AD_APPROVE_ALWAYS:
        break;
    case AD_APPROVE_CANCEL:
        answer(c, "the user cancelled the turn when asked to approve tool '%s'; it was not run",
               c->name);
        a->cancelled = true;
        break;
    case AD_APPROVE_UNASKED:
        answer(c, "tool '%s' needs approval (confirm = true) and none was given; it was not run",
               c->name);
        break;
    default:
        answer(c, "the user denied running tool '%s'", c->name);
    }
    if (!a->asking && (a->cancelled || a->approvals == 0))
        start_tools(a);
    return AD_OK;
}

int ad_agent_load_messages(ad_agent *a, json_object *messages)
{
    if (a->running)
        return AD_EINVAL;
    int rc = ad_conv_replace(a->conv, messages);
    if (rc == AD_OK)
        ad_events_history(a->ev, messages);
    return rc;
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

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int ad_agent_offer_tools(ad_agent *a, const char *const *names, size_t n)
{
    char **v = NULL;
    if (names) {
        v = calloc(n ? n : 1, sizeof *v);
        for (size_t i = 0; v && i < n; i++)
            if (!(v[i] = ad_strdup(names[i]))) {
                free_names(v, i);
                v = NULL;
            }
        if (!v)
            return AD_ENOMEM;
    }
    free_names(a->offered, a->noffered);
    a->offered = v;
    a->noffered = names ? n : 0;
    a->tools_gen = 0; /* rebuilt for the next request */
    return AD_OK;
}

int ad_agent_set_client_tools(ad_agent *a, json_object *tools)
{
    if (a->running) {
        json_object_put(tools);
        return AD_EINVAL;
    }
    size_t n = tools ? json_object_array_length(tools) : 0;
    char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) {
        json_object_put(tools);
        return AD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_json_str(ad_json_get(json_object_array_get_idx(tools, i), "function"),
                                       "name");
        if (!name || !(names[i] = ad_strdup(name))) {
            free_names(names, i);
            json_object_put(tools);
            return name ? AD_ENOMEM : AD_EINVAL;
        }
    }
    free_names(a->client_names, a->nclient);
    json_object_put(a->client_tools);
    a->client_names = names;
    a->nclient = n;
    a->client_tools = n ? tools : NULL;
    if (!n)
        json_object_put(tools);
    a->tools_gen = 0;
    return AD_OK;
}

int ad_agent_set_conv_id(ad_agent *a, const char *id)
{
    char *c = id ? ad_strdup(id) : NULL;
    if (id && !c)
        return AD_ENOMEM;
    free(a->conv_id);
    a->conv_id = c;
    return AD_OK;
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

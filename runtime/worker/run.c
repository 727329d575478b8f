/*
 * run.c -- a job as a conversation (see run.h).
 *
 * One jrun per attempt. Its phases: SEED (a new conversation's first
 * messages, the system prompt, go to Redis), RESOLVE (calls a dead attempt
 * left without results are settled from the ledger), RUN (the agent runs;
 * the sink commits), ENDED (the attempt's outcome went to the worker, or
 * the worker took the job away; the jrun waits to be freed).
 *
 * The worker never calls a job's callbacks once the job left the runner
 * (finish, hand-back, lost), so a jrun may be freed from then on; it is
 * freed from a zero timer (`reap`), never from inside the agent's or the
 * hub's callbacks, and only once its agent's run is over.
 *
 * The sink formats events with the JSON Lines sink (sinks/jsonl.h): that
 * sink writes each event as one line to a stream, here a memory stream
 * (fopencookie) whose writes land in the sink's buffer; the line, less its
 * closing "}\n", goes to the job's event stream with attempt and seq.
 */
#define _GNU_SOURCE
#include "worker/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"
#include "core/agent.h"
#include "core/events.h"
#include "sinks/jsonl.h"
#include "worker/queue.h"

enum { P_SEED, P_RESOLVE, P_RUN, P_ENDED };

typedef struct jsink jsink;
typedef struct jrun jrun;

struct ad_jobrunner {
    ad_jobrunner_opts o;
    jrun *runs; /* every jrun not freed yet */
    size_t n;
    uv_timer_t reap;
    bool freeing;
};

struct jrun {
    ad_jobrunner *R;
    ad_worker_job *j; /* NULL once the job left the runner */
    char *id;
    int attempt;
    ad_events *hub;
    jsink *sink;
    ad_agent *agent;
    int phase;
    bool committing; /* MESSAGE events go to Redis */
    bool muted;      /* the sink takes nothing any more */
    bool stopping;   /* the worker stops: hand the job back */
    bool running;    /* the agent's run is on */
    int status;
    size_t next_idx;   /* the conversation index of the next message appended */
    size_t calls_idx;  /* the index of the assistant message whose calls run */
    bool msg_calls;    /* the message being committed asks for tools */
    ad_buf final_text;
    char *error;
    unsigned steps;
    /* SEED and RESOLVE */
    json_object *conv;    /* the conversation as Redis has it (grows as we append) */
    json_object *pending; /* calls to settle: [{id, name, arguments}] */
    size_t pi;
    json_object *ledger;
    size_t resolve_idx;
    ad_tool_batch *batch;
    char field[AD_Q_FIELD_MAX];
    ad_buf rr; /* the result of a call run again */
    bool rr_error;
    const char *rr_how; /* "rerun" (idempotent), "ran" (never started before) */
    bool dead;
    jrun *prev, *next;
};

struct jsink {
    ad_sink base;
    jrun *run;
    ad_sink *fmt;
    FILE *out, *err;
    ad_buf line;
    bool paused;
};

static void schedule_free(jrun *r);
static void resolve_next(jrun *r);
static void start_agent(jrun *r);
static void maybe_end(jrun *r);

/* ---- helpers ------------------------------------------------------------ */

static const char *jstr(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static json_object *jget(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static const char *to_json(json_object *o, size_t *len)
{
    return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE,
                                             len);
}

static void say(jrun *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(jrun *r, const char *fmt, ...)
{
    if (r->R->o.quiet)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *red = ad_redact(msg, strlen(msg), r->R->o.cfg->api_key, NULL);
    fprintf(stderr, "agentd: worker: job %s: %s\n", r->id, red ? red : msg);
    free(red);
}

/* An event of the runner's own (JSON built with json-c, which escapes). */
static void emit_obj(jrun *r, json_object *o)
{
    size_t len;
    const char *s = to_json(o, &len);
    if (r->j && s && len >= 2)
        ad_worker_job_event(r->j, s, len - 1);
}

/* ---- the sink ------------------------------------------------------------ */

static ssize_t mem_write(void *cookie, const char *buf, size_t size)
{
    jsink *k = cookie;
    if (ad_buf_append(&k->line, buf, size) != AD_OK)
        return -1;
    return (ssize_t)size;
}

static ssize_t null_write(void *cookie, const char *buf, size_t size)
{
    (void)cookie;
    (void)buf;
    return (ssize_t)size;
}

/* The event as a --json line, to the job's stream. */
static void forward(jsink *k, const ad_event *ev)
{
    jrun *r = k->run;
    ad_buf_reset(&k->line);
    k->fmt->vt->event(k->fmt, ev);
    fflush(k->out);
    size_t n = k->line.len;
    while (n && (k->line.data[n - 1] == '\n' || k->line.data[n - 1] == '\r'))
        n--;
    if (n >= 2 && k->line.data[n - 1] == '}' && r->j)
        ad_worker_job_event(r->j, k->line.data, n - 1);
    ad_buf_reset(&k->line);
}

static void resume_sink(jrun *r)
{
    jsink *k = r->sink;
    if (!k->paused)
        return;
    k->paused = false;
    ad_events_resume(r->hub, &k->base);
    maybe_end(r);
}

static void on_committed(void *ud, int result)
{
    jrun *r = ud;
    if (result != AD_WORKER_OK)
        return; /* lost (the worker says so next) or going away */
    if (r->msg_calls)
        ad_worker_stop_point("tool_started", r->id);
    resume_sink(r);
}

/* The conversation's new message, to Redis (its tool calls marked started
 * in the same script). */
static int commit_message(jrun *r, json_object *msg)
{
    json_object *red = ad_redact_json(msg, r->R->o.cfg->api_key);
    size_t len;
    const char *txt = red ? to_json(red, &len) : NULL;
    if (!txt) {
        json_object_put(red);
        return AD_SINK_OK;
    }
    const char *role = jstr(msg, "role");
    json_object *calls = role && strcmp(role, "assistant") == 0 ? jget(msg, "tool_calls") : NULL;
    size_t nc = calls && json_object_is_type(calls, json_type_array)
                    ? json_object_array_length(calls)
                    : 0;
    char **fields = nc ? calloc(nc, sizeof *fields) : NULL;
    size_t nf = 0;
    for (size_t i = 0; fields && i < nc; i++) {
        const char *id = jstr(json_object_array_get_idx(calls, i), "id");
        char f[AD_Q_FIELD_MAX];
        snprintf(f, sizeof f, "%zu:%s", r->next_idx, id ? id : "");
        if ((fields[nf] = ad_strdup(f)))
            nf++;
    }
    r->msg_calls = nf > 0;
    if (nf)
        r->calls_idx = r->next_idx;
    r->next_idx++;
    ad_worker_job_append(r->j, txt, len, (const char *const *)fields, nf, on_committed, r);
    for (size_t i = 0; i < nf; i++)
        free(fields[i]);
    free(fields);
    json_object_put(red);
    r->sink->paused = true;
    return AD_SINK_PAUSE;
}

static void on_result_stored(void *ud, int result, bool created)
{
    jrun *r = ud;
    (void)created;
    if (result != AD_WORKER_OK)
        return;
    ad_worker_stop_point("ledger_done", r->id);
    resume_sink(r);
}

static char *ledger_done_json(jrun *r, const char *content, size_t len, bool is_error)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "state", json_object_new_string("done"));
    json_object_object_add(o, "attempt", json_object_new_int(r->attempt));
    json_object_object_add(o, "content", json_object_new_string_len(content ? content : "",
                                                                     (int)len));
    json_object_object_add(o, "is_error", json_object_new_boolean(is_error));
    size_t n;
    char *s = ad_strdup(to_json(o, &n));
    json_object_put(o);
    return s;
}

/* A call's result, to the ledger before anything else (the sink waits). */
static int store_result(jrun *r, const ad_event *ev)
{
    ad_worker_stop_point("tool_finished", r->id);
    char field[AD_Q_FIELD_MAX];
    snprintf(field, sizeof field, "%zu:%s", r->calls_idx, ev->id ? ev->id : "");
    char *v = ledger_done_json(r, ev->text, ev->len, ev->is_error);
    if (!v)
        return AD_SINK_OK;
    ad_worker_job_ledger_put(r->j, field, v, false, on_result_stored, r);
    free(v);
    r->sink->paused = true;
    return AD_SINK_PAUSE;
}

static int jsink_event(ad_sink *s, const ad_event *ev)
{
    jsink *k = (jsink *)s;
    jrun *r = k->run;
    if (!r || r->muted || !r->j)
        return AD_SINK_OK;
    switch (ev->kind) {
    case AD_EV_MESSAGE:
        return r->committing ? commit_message(r, ev->message) : AD_SINK_OK;
    case AD_EV_HISTORY:
        return AD_SINK_OK;
    case AD_EV_TOOL_RESULT:
        forward(k, ev);
        return store_result(r, ev);
    case AD_EV_FINISH:
        ad_buf_reset(&r->final_text);
        ad_buf_append(&r->final_text, ev->text ? ev->text : "", ev->len);
        r->steps = (unsigned)ev->step;
        forward(k, ev);
        return AD_SINK_OK;
    case AD_EV_ERROR:
        free(r->error);
        r->error = ad_strndup(ev->text ? ev->text : "", ev->len);
        say(r, "error: %.*s", (int)ev->len, ev->text ? ev->text : "");
        forward(k, ev);
        return AD_SINK_OK;
    case AD_EV_WARN:
        say(r, "warning: %.*s", (int)ev->len, ev->text ? ev->text : "");
        return AD_SINK_OK;
    default:
        forward(k, ev);
        return AD_SINK_OK;
    }
}

static void jsink_close(ad_sink *s)
{
    jsink *k = (jsink *)s;
    ad_sink_close(k->fmt);
    if (k->out)
        fclose(k->out);
    if (k->err)
        fclose(k->err);
    ad_buf_free(&k->line);
    free(k);
}

static const ad_sink_vt jsink_vt = {jsink_event, jsink_close};

static jsink *jsink_new(jrun *r)
{
    jsink *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->base.vt = &jsink_vt;
    k->run = r;
    cookie_io_functions_t mem = {.write = mem_write}, null = {.write = null_write};
    k->out = fopencookie(k, "w", mem);
    k->err = fopencookie(k, "w", null);
    k->fmt = k->out && k->err ? ad_jsonl_sink_new(k->out, k->err) : NULL;
    if (!k->fmt) {
        jsink_close(&k->base);
        return NULL;
    }
    return k;
}

/* ---- ending ------------------------------------------------------------- */

static void on_reap(uv_timer_t *t)
{
    ad_jobrunner *R = t->data;
    for (jrun *r = R->runs, *next; r; r = next) {
        next = r->next;
        if (!r->dead || r->running)
            continue;
        if (r->prev)
            r->prev->next = r->next;
        else
            R->runs = r->next;
        if (r->next)
            r->next->prev = r->prev;
        R->n--;
        if (r->batch)
            ad_tool_batch_abandon(r->batch);
        ad_agent_free(r->agent);
        ad_events_free(r->hub); /* closes the sink */
        json_object_put(r->conv);
        json_object_put(r->pending);
        json_object_put(r->ledger);
        ad_buf_free(&r->final_text);
        ad_buf_free(&r->rr);
        free(r->error);
        free(r->id);
        free(r);
    }
}

static void schedule_free(jrun *r)
{
    r->phase = P_ENDED;
    r->j = NULL;
    r->dead = true;
    if (!r->R->freeing)
        uv_timer_start(&r->R->reap, on_reap, 0, 0);
}

static void end_job(jrun *r, const char *state, int status, const char *result, const char *error)
{
    ad_worker_job *j = r->j;
    if (!j)
        return;
    r->muted = true;
    schedule_free(r);
    ad_worker_job_finish(j, state, status, result, error);
}

static void hand_back(jrun *r, const char *why)
{
    ad_worker_job *j = r->j;
    if (!j)
        return;
    r->muted = true;
    schedule_free(r);
    say(r, "handed back (%s)", why);
    ad_worker_job_handback(j, why);
}

/* The run is over and everything it said reached Redis: the outcome. */
static void maybe_end(jrun *r)
{
    if (r->phase != P_RUN || r->running || !r->j || ad_events_paused(r->hub))
        return;
    if (r->stopping) {
        hand_back(r, "the worker is stopping");
        return;
    }
    bool ok = r->status == AD_RUN_OK;
    say(r, "%s (attempt %d, %u step(s))", ok ? "done" : r->status == AD_RUN_MAX_STEPS
                                                  ? "failed: max_steps"
                                                  : "failed",
        r->attempt, r->steps);
    end_job(r, ok ? "done" : "failed", r->status, r->final_text.data ? r->final_text.data : "",
            ok ? "" : r->error ? r->error : "the run failed");
}

static void on_run_done(void *ud, int status)
{
    jrun *r = ud;
    r->running = false;
    r->status = status;
    if (r->dead) {
        uv_timer_start(&r->R->reap, on_reap, 0, 0);
        return;
    }
    maybe_end(r);
}

/* ---- the run ------------------------------------------------------------ */

static void start_agent(jrun *r)
{
    if (!r->j)
        return;
    if (ad_agent_load_messages(r->agent, r->conv) != AD_OK) {
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
        return;
    }
    size_t n = json_object_array_length(r->conv);
    r->next_idx = n;
    r->committing = true;
    r->phase = P_RUN;
    r->running = true;
    int rc;
    if (n <= ad_worker_job_base(r->j))
        rc = ad_agent_run(r->agent, ad_worker_job_prompt(r->j), on_run_done, r);
    else
        rc = ad_agent_run(r->agent, NULL, on_run_done, r);
    if (rc != AD_OK) {
        r->running = false;
        end_job(r, "failed", AD_RUN_FAILED, "", "the conversation cannot be continued");
    }
}

/* ---- settling calls a dead attempt left ---------------------------------- */

static void settled(jrun *r, const char *id, const char *name, const char *content, size_t len,
                    bool is_error, const char *how);

static void on_tool_appended(void *ud, int result)
{
    jrun *r = ud;
    if (result != AD_WORKER_OK)
        return;
    r->pi++;
    resolve_next(r);
}

/* A settled call: its event, then its tool message. */
static void settled(jrun *r, const char *id, const char *name, const char *content, size_t len,
                    bool is_error, const char *how)
{
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "type", json_object_new_string("tool_result"));
    json_object_object_add(ev, "step", json_object_new_int(0));
    json_object_object_add(ev, "id", json_object_new_string(id));
    json_object_object_add(ev, "name", json_object_new_string(name));
    size_t rlen = 0;
    char *red = ad_redact(content ? content : "", len, r->R->o.cfg->api_key, &rlen);
    const char *text = red ? red : content ? content : "";
    size_t tlen = red ? rlen : len;
    json_object_object_add(ev, "content", json_object_new_string_len(text, (int)tlen));
    json_object_object_add(ev, "is_error", json_object_new_boolean(is_error));
    json_object_object_add(ev, "resumed", json_object_new_string(how));
    emit_obj(r, ev);
    json_object_put(ev);
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("tool"));
    json_object_object_add(m, "tool_call_id", json_object_new_string(id));
    json_object_object_add(m, "content", json_object_new_string_len(text, (int)tlen));
    free(red);
    size_t n;
    const char *txt = to_json(m, &n);
    json_object_array_add(r->conv, json_object_get(m));
    ad_worker_job_append(r->j, txt, n, NULL, 0, on_tool_appended, r);
    json_object_put(m);
}

static const char *pending_id(jrun *r)
{
    return jstr(json_object_array_get_idx(r->pending, r->pi), "id");
}

static const char *pending_name(jrun *r)
{
    json_object *c = json_object_array_get_idx(r->pending, r->pi);
    const char *n = jstr(jget(c, "function"), "name");
    return n ? n : "";
}

static void on_rerun_stored(void *ud, int result, bool created)
{
    jrun *r = ud;
    (void)created;
    if (result != AD_WORKER_OK)
        return;
    ad_worker_stop_point("ledger_done", r->id);
    settled(r, pending_id(r), pending_name(r), r->rr.data ? r->rr.data : "", r->rr.len,
            r->rr_error, r->rr_how);
}

static void on_rerun_done(void *ud, const ad_call_outcome *o, size_t n)
{
    jrun *r = ud;
    r->batch = NULL;
    if (!r->j || n < 1)
        return;
    ad_worker_stop_point("tool_finished", r->id);
    const ad_tool_result *res = &o[0].result;
    ad_buf_reset(&r->rr);
    ad_buf_append(&r->rr, res->content ? res->content : "", res->content ? res->len : 0);
    r->rr_error = res->is_error;
    char *v = ledger_done_json(r, res->content, res->content ? res->len : 0, res->is_error);
    if (v)
        ad_worker_job_ledger_put(r->j, r->field, v, false, on_rerun_stored, r);
    else
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
    free(v);
}

/* Runs the pending call now (the ledger says started, lease-checked). */
static void run_pending(jrun *r)
{
    json_object *c = json_object_array_get_idx(r->pending, r->pi);
    json_object *fn = jget(c, "function");
    const char *name = jstr(fn, "name");
    const char *args = jstr(fn, "arguments");
    double timeout;
    bool confirm;
    int iso;
    ad_config_tool(r->R->o.cfg, name ? name : "", &timeout, &confirm, &iso);
    if (confirm) {
        char msg[256];
        snprintf(msg, sizeof msg, "tool '%s' needs approval (confirm = true) and none was given; "
                                  "it was not run", name ? name : "");
        char *v = ledger_done_json(r, msg, strlen(msg), true);
        if (v)
            ad_worker_job_ledger_put(r->j, r->field, v, false, NULL, NULL);
        free(v);
        settled(r, pending_id(r), pending_name(r), msg, strlen(msg), true, "denied");
        return;
    }
    ad_worker_stop_point("tool_started", r->id);
    ad_call_req q = {pending_id(r), name ? name : "", args, args ? strlen(args) : 0, timeout};
    static const ad_batch_cb cb = {.on_done = on_rerun_done};
    r->batch = ad_tool_host_run(r->R->o.tools, r->id, &q, 1, &cb, r);
    if (!r->batch)
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
}

static void on_marked(void *ud, int result, bool created)
{
    jrun *r = ud;
    if (result != AD_WORKER_OK)
        return;
    if (!created) {
        /* Marked by an attempt meanwhile (cannot be: the lease is ours);
         * its outcome is not known here. */
        const char *msg = "interrupted: the call was started before and its outcome is not known";
        settled(r, pending_id(r), pending_name(r), msg, strlen(msg), true, "interrupted");
        return;
    }
    run_pending(r);
}

static char *started_json(jrun *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "state", json_object_new_string("started"));
    json_object_object_add(o, "attempt", json_object_new_int(r->attempt));
    size_t n;
    char *s = ad_strdup(to_json(o, &n));
    json_object_put(o);
    return s;
}

static void resolve_next(jrun *r)
{
    if (!r->j)
        return;
    if (r->pi >= json_object_array_length(r->pending)) {
        start_agent(r);
        return;
    }
    const char *id = pending_id(r);
    const char *name = pending_name(r);
    snprintf(r->field, sizeof r->field, "%zu:%s", r->resolve_idx, id ? id : "");
    const char *raw = jstr(r->ledger, r->field);
    json_object *v = raw ? json_tokener_parse(raw) : NULL;
    const char *state = jstr(v, "state");
    if (state && strcmp(state, "done") == 0) {
        const char *content = jstr(v, "content");
        json_object *ie = jget(v, "is_error");
        say(r, "call %s (%s): its result is in the ledger; used again", id, name);
        settled(r, id, name, content ? content : "", content ? strlen(content) : 0,
                ie && json_object_get_boolean(ie), "reused");
    } else if (state) {
        const ad_tool_desc *d = ad_tool_host_find(r->R->o.tools, name);
        if (d && (d->flags & AD_TOOL_IDEMPOTENT)) {
            say(r, "call %s (%s) was interrupted; its tool is idempotent: run again", id, name);
            r->rr_how = "rerun";
            char *s = started_json(r);
            ad_worker_job_ledger_put(r->j, r->field, s ? s : "{}", false, on_marked, r);
            free(s);
        } else {
            char msg[512];
            snprintf(msg, sizeof msg,
                     "interrupted: the worker running tool '%s' stopped while the call ran "
                     "(attempt %lld); whether it took effect is not known, so it was not run "
                     "again",
                     name, (long long)(jget(v, "attempt") ? json_object_get_int(jget(v, "attempt"))
                                                           : 0));
            say(r, "call %s (%s) was interrupted: answered as such, not run again", id, name);
            char *dv = ledger_done_json(r, msg, strlen(msg), true);
            if (dv)
                ad_worker_job_ledger_put(r->j, r->field, dv, false, NULL, NULL);
            free(dv);
            settled(r, id, name, msg, strlen(msg), true, "interrupted");
        }
    } else {
        /* Never started: it runs now. */
        r->rr_how = "ran";
        char *s = started_json(r);
        ad_worker_job_ledger_put(r->j, r->field, s ? s : "{}", true, on_marked, r);
        free(s);
    }
    json_object_put(v);
}

static void on_ledger(void *ud, json_object *ledger)
{
    jrun *r = ud;
    if (!ledger) {
        hand_back(r, "the ledger could not be read");
        return;
    }
    r->ledger = ledger;
    r->pi = 0;
    resolve_next(r);
}

/* Where the conversation ends decides how the attempt goes on. */
static void begin(jrun *r)
{
    size_t n = json_object_array_length(r->conv);
    size_t base = ad_worker_job_base(r->j);
    if (n <= base) {
        start_agent(r);
        return;
    }
    json_object *last = json_object_array_get_idx(r->conv, n - 1);
    const char *role = jstr(last, "role");
    json_object *calls = jget(last, "tool_calls");
    bool has_calls = calls && json_object_is_type(calls, json_type_array) &&
                     json_object_array_length(calls) > 0;
    if (role && strcmp(role, "assistant") == 0 && !has_calls) {
        const char *text = jstr(last, "content");
        say(r, "its answer was stored by an earlier attempt");
        end_job(r, "done", AD_RUN_OK, text ? text : "", "");
        return;
    }
    if (role && strcmp(role, "user") == 0) {
        start_agent(r);
        return;
    }
    /* The last assistant message with tool calls, and which of its calls
     * have their tool message. */
    size_t a = n;
    while (a-- > base) {
        json_object *m = json_object_array_get_idx(r->conv, a);
        const char *ro = jstr(m, "role");
        if (ro && strcmp(ro, "assistant") == 0)
            break;
    }
    json_object *am = a < n && a >= base ? json_object_array_get_idx(r->conv, a) : NULL;
    json_object *acalls = jget(am, "tool_calls");
    if (!am || !acalls || !json_object_is_type(acalls, json_type_array)) {
        start_agent(r); /* tool messages without their call: the step is sent */
        return;
    }
    r->pending = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(acalls); i++) {
        json_object *c = json_object_array_get_idx(acalls, i);
        const char *id = jstr(c, "id");
        bool answered = false;
        for (size_t k = a + 1; id && k < n && !answered; k++) {
            const char *tid = jstr(json_object_array_get_idx(r->conv, k), "tool_call_id");
            answered = tid && strcmp(tid, id) == 0;
        }
        if (!answered)
            json_object_array_add(r->pending, json_object_get(c));
    }
    if (json_object_array_length(r->pending) == 0) {
        start_agent(r);
        return;
    }
    r->resolve_idx = a;
    r->phase = P_RESOLVE;
    say(r, "attempt %d resumes with %zu call(s) of an earlier attempt to settle", r->attempt,
        json_object_array_length(r->pending));
    ad_worker_job_ledger(r->j, on_ledger, r);
}

static void on_seeded(void *ud, int result)
{
    jrun *r = ud;
    if (result != AD_WORKER_OK)
        return;
    r->pi++;
    json_object *first = ad_agent_messages(r->agent);
    if (!first) {
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
        return;
    }
    if (r->pi < json_object_array_length(first)) {
        json_object *m = json_object_array_get_idx(first, r->pi);
        json_object *red = ad_redact_json(m, r->R->o.cfg->api_key);
        size_t len;
        const char *txt = to_json(red, &len);
        json_object_array_add(r->conv, json_object_get(m));
        ad_worker_job_append(r->j, txt, len, NULL, 0, on_seeded, r);
        json_object_put(red);
        return;
    }
    begin(r);
}

/* ---- the runner interface ------------------------------------------------ */

static void r_start(void *ud, ad_worker_job *j)
{
    ad_jobrunner *R = ud;
    jrun *r = calloc(1, sizeof *r);
    if (!r) {
        ad_worker_job_finish(j, "failed", AD_RUN_FAILED, "", "out of memory");
        return;
    }
    r->R = R;
    r->j = j;
    r->attempt = ad_worker_job_attempt(j);
    r->id = ad_strdup(ad_worker_job_id(j));
    r->next = R->runs;
    if (R->runs)
        R->runs->prev = r;
    R->runs = r;
    R->n++;
    r->hub = ad_events_new();
    r->sink = r->hub ? jsink_new(r) : NULL;
    if (r->sink) {
        ad_events_add(r->hub, &r->sink->base);
        ad_events_set_secret(r->hub, R->o.cfg->api_key);
        ad_events_set_conv_id(r->hub, r->id);
        ad_agent_opts ao = {R->o.loop, R->o.transport, R->o.cfg, R->o.tools, r->hub};
        r->agent = ad_agent_new(&ao);
    }
    if (!r->id || !r->agent || ad_agent_set_conv_id(r->agent, r->id) != AD_OK) {
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
        return;
    }
    ad_agent_set_yes(r->agent, false);
    json_object *msgs = ad_worker_job_messages(j);
    size_t n = json_object_array_length(msgs);
    say(r, "attempt %d%s", r->attempt,
        n > ad_worker_job_base(j) ? " resumes where the last one stopped" : "");
    r->conv = json_object_new_array();
    if (n) {
        for (size_t i = 0; i < n; i++)
            json_object_array_add(r->conv, json_object_get(json_object_array_get_idx(msgs, i)));
        begin(r);
        return;
    }
    /* A new conversation: what the agent starts with (the system prompt)
     * goes first. */
    r->phase = P_SEED;
    json_object *first = ad_agent_messages(r->agent);
    if (!first) {
        end_job(r, "failed", AD_RUN_FAILED, "", "out of memory");
        return;
    }
    if (json_object_array_length(first) == 0) {
        begin(r);
        return;
    }
    r->pi = (size_t)-1;
    on_seeded(r, AD_WORKER_OK);
}

/* The job is gone: everything stops, nothing more reaches Redis. */
static void r_lost(void *ud, ad_worker_job *j)
{
    ad_jobrunner *R = ud;
    for (jrun *r = R->runs; r; r = r->next) {
        if (r->j != j)
            continue;
        r->muted = true;
        schedule_free(r);
        if (r->batch) {
            ad_tool_batch_abandon(r->batch);
            r->batch = NULL;
        }
        if (r->sink->paused) {
            r->sink->paused = false;
            ad_events_resume(r->hub, &r->sink->base);
        }
        if (r->running)
            ad_agent_cancel(r->agent);
        return;
    }
}

static void r_stop(void *ud, ad_worker_job *j)
{
    ad_jobrunner *R = ud;
    for (jrun *r = R->runs; r; r = r->next) {
        if (r->j != j)
            continue;
        if (r->phase != P_RUN || !r->running) {
            hand_back(r, "the worker is stopping");
            return;
        }
        /* The run is cancelled and the job handed back when it ended; what
         * the cancellation says (a cut answer) is not committed. */
        r->stopping = true;
        r->muted = true;
        if (r->sink->paused) {
            r->sink->paused = false;
            ad_events_resume(r->hub, &r->sink->base);
        }
        ad_agent_cancel(r->agent);
        return;
    }
}

static const ad_worker_runner vt = {r_start, r_lost, r_stop};

const ad_worker_runner *ad_jobrunner_vt(void)
{
    return &vt;
}

ad_jobrunner *ad_jobrunner_new(const ad_jobrunner_opts *o)
{
    ad_jobrunner *R = calloc(1, sizeof *R);
    if (!R)
        return NULL;
    R->o = *o;
    uv_timer_init(o->loop, &R->reap);
    R->reap.data = R;
    return R;
}

static void on_runner_closed(uv_handle_t *h)
{
    ad_jobrunner *R = h->data;
    free(R);
}

void ad_jobrunner_free(ad_jobrunner *R)
{
    if (!R)
        return;
    /* The worker told every job lost: whatever still runs is cancelled and
     * released now. */
    for (jrun *r = R->runs; r; r = r->next)
        if (r->running)
            ad_agent_cancel(r->agent);
    for (jrun *r = R->runs; r; r = r->next)
        r->running = false, r->dead = true;
    on_reap(&R->reap);
    R->freeing = true;
    uv_close((uv_handle_t *)&R->reap, on_runner_closed);
}

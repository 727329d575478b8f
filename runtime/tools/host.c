/*
 * host.c -- the tool host (see host.h): the registry of every provider's
 * tools and the scheduler of a step's calls.
 *
 * Registry: the providers in the order added, and `tools`, the merged list
 * (each entry a provider's description and its provider). It is rebuilt
 * whenever a provider is added or reports a change, and the generation
 * number moves on.
 *
 * A batch holds one hjob per call. Its life:
 *   ad_tool_host_run: every call is checked (known tool, arguments JSON of
 *     an object that satisfies the schema); a refused one gets its outcome
 *     at once, the others go to their providers' start().
 *   outcome: exactly once per call, from the first of: the provider's
 *     ad_tool_job_done(), the deadline (timeout_s counted from
 *     ad_tool_job_started(), plus the job's grace_s), or cancellation. The
 *     outcome is capped and made valid UTF-8 here; on_result reports it.
 *   delivery: when the last call has its outcome, the batch is put on the
 *     due list and the host's async handle delivers on_done from the loop's
 *     poll phase, so on_done never runs inside run() or cancel(). (Not a
 *     zero timer: timers run before the poll, and a front end that runs
 *     the loop once at a time until its run is done would then block in
 *     that poll with its run already done.)
 *   end: a job the provider still holds after delivery (a timed-out call
 *     stuck in plugin code) keeps its batch; the batch is freed when the
 *     last such job is done, and that late result is dropped.
 *
 * Deadlines: one timer for the host, armed for the earliest possible
 * deadline. A job not yet reported started could start at any moment, so
 * its earliest deadline is now + timeout; when the timer fires the real
 * start times are read and it is armed again. Nothing is polled while no
 * call with a timeout runs.
 *
 * Log lines of jobs may be made on any thread (a plugin logging on a pool
 * thread): they are queued under a mutex and delivered on the loop thread
 * by the same async handle; lines made on the loop thread go out at once,
 * after the queue. The queue is drained before any job's outcome, so a call's
 * lines always come before its result.
 */
#include "tools/host.h"

#include "base/buf.h"
#include "base/text.h"
#include "core/schema.h"

#include <agentd/plugin.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AD_TOOL_RESULT_MAX ((size_t)1 << 20) /* bytes of a result kept by default */
#define PROGRESS_EVERY_NS (100u * 1000 * 1000) /* at most one progress report per call per 100 ms */

typedef struct hjob {
    ad_tool_job job; /* first: what the provider sees */
    ad_tool_batch *b;
    size_t i;
    ad_tool_provider *p; /* NULL: answered by the host */
    char *id, *name, *args;
    _Atomic uint64_t started_ns; /* uv_hrtime() when reported started; 0: not yet */
    uint64_t last_progress;
    bool held;     /* the provider has it: start() accepted it, no done yet */
    bool final;    /* the outcome is decided */
    bool stopping; /* being cancelled: a done() now decides nothing */
    bool timed;    /* counted in h->timed: it has a deadline */
} hjob;

struct ad_tool_batch {
    ad_tool_host *h;
    ad_batch_cb cb;
    void *ud;
    char *conv_id;
    size_t n;
    size_t open; /* calls without an outcome */
    size_t held; /* jobs the providers still hold */
    bool cancelled, due, delivered, abandoned;
    ad_tool_batch *prev, *next; /* h->batches */
    ad_tool_batch *due_next;
    ad_call_outcome *out; /* n outcomes, in call order */
    hjob jobs[];
};

typedef struct entry {
    const ad_tool_desc *d;
    ad_tool_provider *p;
} entry;

typedef struct qline {
    struct qline *next;
    hjob *job;    /* NULL: outside any call */
    char *origin; /* owned, for lines outside a call */
    int level;
    size_t len;
    char text[];
} qline;

struct ad_tool_host {
    uv_loop_t *loop;
    uv_thread_t thread; /* the loop's */
    ad_tool_provider **provs;
    size_t nprovs;
    entry *tools;
    size_t ntools;
    uint64_t gen;
    json_object *openai;  /* the "tools" array for generation openai_gen, or NULL */
    uint64_t openai_gen;
    size_t result_max;
    ad_tool_log_fn log;
    void *log_ud;
    int log_max;
    ad_tool_batch *batches; /* every batch not yet freed */
    uv_timer_t deadline;
    uint64_t deadline_at; /* uv_hrtime() the timer is armed for; 0: not armed */
    size_t timed;         /* jobs with a deadline and no outcome */
    ad_tool_batch *due_head, *due_tail; /* batches whose on_done is due */
    uv_async_t wake; /* delivers due batches, and lines queued by other threads */
    uv_mutex_t mu;
    qline *qhead, *qtail;
    atomic_bool queued; /* qhead is not empty */
    int handles; /* open handles; the host is freed when the last one closed */
    bool dead;   /* freed while a busy provider holds jobs: late calls only clean up */
};

/* ---- small helpers ------------------------------------------------------ */

static bool on_loop_thread(const ad_tool_host *h)
{
    uv_thread_t self = uv_thread_self();
    return uv_thread_equal(&self, &h->thread) != 0;
}

void ad_tool_result_free(ad_tool_result *r)
{
    if (r == NULL)
        return;
    free(r->content);
    r->content = NULL;
    r->len = 0;
    json_object_put(r->parts);
    r->parts = NULL;
}

/* r's text goes (its parts stay). */
static void drop_content(ad_tool_result *r)
{
    free(r->content);
    r->content = NULL;
    r->len = 0;
}

/* The offset of a ' outside every string of the JSON text s, or n: json-c
 * reads single-quoted strings even in strict mode, and they are not JSON. */
static size_t single_quote_at(const char *s, size_t n)
{
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        if (in && s[i] == '\\')
            i++;
        else if (s[i] == '"')
            in = !in;
        else if (!in && s[i] == '\'')
            return i;
    }
    return n;
}

int ad_tool_parse_json(const char *text, size_t len, json_object **out, char *why, size_t whylen)
{
    *out = NULL;
    if (len > INT32_MAX) {
        ad_errf(why, whylen, "too large");
        return -1;
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL) {
        ad_errf(why, whylen, "out of memory");
        return -1;
    }
    int rc = -1;
    /* Strict: the argument text is handed on to plugins, whose own small
     * parsers should only ever see standard JSON. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    bool at_end = false;
    if (e == json_tokener_continue && o == NULL) {
        /* A top-level number may still be waiting for more digits: a NUL
         * tells the tokener the input is over. */
        o = json_tokener_parse_ex(tok, "", 1);
        e = json_tokener_get_error(tok);
        end = len;
        at_end = true;
    }
    if (e != json_tokener_success && at_end) {
        ad_errf(why, whylen, "unexpected end of input");
    } else if (e != json_tokener_success) {
        ad_errf(why, whylen, "%s at offset %zu", json_tokener_error_desc(e), end);
    } else {
        while (end < len && (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' ||
                             text[end] == '\r'))
            end++;
        size_t q = single_quote_at(text, len);
        if (end < len)
            ad_errf(why, whylen, "unexpected text after the value at offset %zu", end);
        else if (q < len)
            ad_errf(why, whylen, "a single-quoted string at offset %zu", q);
        else
            rc = 0;
    }
    if (rc == 0)
        *out = o;
    else
        json_object_put(o);
    json_tokener_free(tok);
    return rc;
}

/* Makes r what an outcome holds: content present, at most result_max bytes
 * of output (unless the provider bounded it), valid UTF-8 without NUL.
 * On ENOMEM the content is dropped (NULL). */
static void normalize(const ad_tool_host *h, ad_tool_result *r)
{
    if (r->content == NULL) {
        r->len = 0;
        r->content = ad_strdup("");
        return;
    }
    if (!r->bounded && r->len > h->result_max) {
        /* Cut on a character boundary rather than inside a UTF-8 sequence. */
        size_t take = ad_utf8_cut(r->content, r->len, h->result_max);
        size_t cut = r->len - take;
        char mark[64];
        int ml = snprintf(mark, sizeof mark, AD_TOOL_CUT_MARK, cut);
        if ((size_t)ml > cut) {
            char *c = realloc(r->content, take + (size_t)ml + 1);
            if (c == NULL) {
                drop_content(r);
                return;
            }
            r->content = c;
        }
        memcpy(r->content + take, mark, (size_t)ml);
        r->len = take + (size_t)ml;
        r->content[r->len] = '\0';
    }
    r->bounded = true;
    if (ad_utf8_clean((const unsigned char *)r->content, r->len))
        return;
    ad_buf clean = AD_BUF_INIT;
    int rc = ad_utf8_repair(&clean, (const unsigned char *)r->content, r->len);
    drop_content(r);
    if (rc != AD_OK) {
        ad_buf_free(&clean);
        return;
    }
    r->len = clean.len;
    r->content = ad_buf_steal(&clean);
    if (r->content == NULL)
        r->len = 0;
}

static void error_result(ad_tool_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error_result(ad_tool_result *r, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    memset(r, 0, sizeof *r);
    r->is_error = true;
    if (rc != 0) {
        ad_buf_free(&b);
        return;
    }
    r->len = b.len;
    r->content = ad_buf_steal(&b);
}

/* ---- log lines ---------------------------------------------------------- */

static void deliver_line(ad_tool_host *h, hjob *j, const char *origin, int level, const char *text,
                         size_t len)
{
    if (j) {
        ad_tool_batch *b = j->b;
        if (!b->delivered && !b->abandoned && b->cb.on_log) {
            b->cb.on_log(b->ud, j->i, level, text, len);
            return;
        }
    }
    if (h->log == NULL)
        return;
    ad_tool_log_line l = {
        .conv_id = j ? j->b->conv_id : "",
        .call_id = j ? j->id : "",
        .tool = j ? j->name : "",
        .origin = j ? (j->job.tool && j->job.tool->origin ? j->job.tool->origin : "?")
                    : (origin ? origin : "?"),
        .level = level,
        .text = text,
        .len = len,
    };
    h->log(h->log_ud, &l);
}

/* Delivers the lines other threads queued. Loop thread. */
static void drain(ad_tool_host *h)
{
    /* Cheap when nothing is queued; a line queued right after this look
     * comes with the async wake-up. */
    if (!atomic_load(&h->queued))
        return;
    uv_mutex_lock(&h->mu);
    qline *q = h->qhead;
    h->qhead = h->qtail = NULL;
    atomic_store(&h->queued, false);
    uv_mutex_unlock(&h->mu);
    while (q) {
        qline *next = q->next;
        if (!h->dead)
            deliver_line(h, q->job, q->origin, q->level, q->text, q->len);
        free(q->origin);
        free(q);
        q = next;
    }
}

static void deliver_due(ad_tool_host *h);

static void on_wake(uv_async_t *a)
{
    drain(a->data);
    deliver_due(a->data);
}

static void queue_line(ad_tool_host *h, hjob *j, const char *origin, int level, const char *text,
                       size_t len)
{
    if (level != AD_TOOL_LOG_OUTPUT) {
        if (level > h->log_max)
            return;
        if (level < AGENTD_LOG_ERROR)
            level = AGENTD_LOG_ERROR;
    }
    if (on_loop_thread(h)) {
        drain(h);
        deliver_line(h, j, origin, level, text, len);
        return;
    }
    qline *q = malloc(sizeof *q + len + 1);
    if (q == NULL)
        return;
    q->next = NULL;
    q->job = j;
    q->origin = j ? NULL : ad_strdup(origin ? origin : "?");
    q->level = level;
    q->len = len;
    memcpy(q->text, text, len);
    q->text[len] = '\0';
    uv_mutex_lock(&h->mu);
    if (h->qtail)
        h->qtail->next = q;
    else
        h->qhead = q;
    h->qtail = q;
    atomic_store(&h->queued, true);
    uv_mutex_unlock(&h->mu);
    uv_async_send(&h->wake);
}

void ad_tool_job_log(ad_tool_job *job, int level, const char *text, size_t len)
{
    hjob *j = (hjob *)job;
    if (text)
        queue_line(j->b->h, j, NULL, level, text, len);
}

void ad_tool_host_log(ad_tool_host *h, const char *origin, int level, const char *text, size_t len)
{
    if (h && text)
        queue_line(h, NULL, origin, level, text, len);
}

void ad_tool_host_set_log(ad_tool_host *h, ad_tool_log_fn fn, void *ud, int max_level)
{
    h->log = fn;
    h->log_ud = ud;
    h->log_max = max_level;
}

size_t ad_tool_log_format(char *out, size_t outlen, const ad_tool_log_line *l, const char *secret)
{
    char line[AD_TOOL_LOG_LINE_MAX + 1];
    size_t full = ad_redact_cut(line, sizeof line, l->text ? l->text : "", l->len, secret);
    size_t k = full < AD_TOOL_LOG_LINE_MAX ? full : AD_TOOL_LOG_LINE_MAX;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            line[i] = '?';
    }
    bool tool = l->level == AD_TOOL_LOG_OUTPUT && l->tool && l->tool[0];
    /* An MCP server's origin is "mcp:NAME": "agentd: mcp NAME: ...". */
    const char *origin = l->origin ? l->origin : "?";
    bool mcp = !tool && strncmp(origin, "mcp:", 4) == 0;
    int n = snprintf(out, outlen, "agentd: %s %s: %.*s%s\n", tool ? "tool" : mcp ? "mcp" : "plugin",
                     tool ? l->tool : mcp ? origin + 4 : origin, (int)k, line,
                     full > k ? " [...]" : "");
    if (n < 0)
        return 0;
    return (size_t)n < outlen ? (size_t)n : outlen ? outlen - 1 : 0;
}

/* ---- registry ----------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *hd)
{
    ad_tool_host *h = hd->data;
    if (--h->handles == 0 && !h->dead) {
        uv_mutex_destroy(&h->mu);
        free(h);
    }
}

static void on_deadline(uv_timer_t *t);

ad_tool_host *ad_tool_host_new(uv_loop_t *loop)
{
    ad_tool_host *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    if (uv_mutex_init(&h->mu) != 0) {
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->thread = uv_thread_self();
    h->gen = 1;
    h->result_max = AD_TOOL_RESULT_MAX;
    h->log_max = AGENTD_LOG_INFO;
    uv_timer_init(loop, &h->deadline);
    uv_async_init(loop, &h->wake, on_wake);
    h->deadline.data = h->wake.data = h;
    /* The async handle keeps the loop alive only while batches are due (a
     * line queued by a thread comes from a call whose pool request, or
     * whose provider's own handle, keeps the loop alive). */
    uv_unref((uv_handle_t *)&h->wake);
    h->handles = 2;
    return h;
}

uv_loop_t *ad_tool_host_loop(const ad_tool_host *h)
{
    return h->loop;
}

static void batch_free(ad_tool_batch *b)
{
    ad_tool_host *h = b->h;
    if (b->prev)
        b->prev->next = b->next;
    else if (h->batches == b)
        h->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    for (size_t i = 0; i < b->n; i++) {
        hjob *j = &b->jobs[i];
        free(j->id);
        free(j->name);
        free(j->args);
        json_object_put(j->job.args_obj);
        if (b->out)
            ad_tool_result_free(&b->out[i].result);
    }
    free(b->out);
    free(b->conv_id);
    free(b);
}

void ad_tool_host_free(ad_tool_host *h)
{
    if (h == NULL)
        return;
    drain(h);
    bool kept = false;
    for (size_t i = 0; i < h->nprovs; i++) {
        ad_tool_provider *p = h->provs[i];
        if (p->vt->busy && p->vt->busy(p)) {
            kept = true; /* its code runs on: leave it loaded */
            continue;
        }
        if (p->vt->close)
            p->vt->close(p);
    }
    h->due_head = h->due_tail = NULL;
    for (ad_tool_batch *b = h->batches, *next; b; b = next) {
        next = b->next;
        if (b->held == 0)
            batch_free(b);
        else
            kept = true;
    }
    drain(h);
    free(h->provs);
    free(h->tools);
    json_object_put(h->openai);
    h->openai = NULL;
    h->provs = NULL;
    h->tools = NULL;
    h->nprovs = h->ntools = 0;
    /* Jobs a busy provider still holds point at the host: it stays (and
     * later calls only clean up); the process leaves without unloading. */
    h->dead = kept;
    uv_close((uv_handle_t *)&h->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&h->wake, on_handle_closed);
}

static const ad_tool_desc *find_in(const entry *v, size_t n, const char *name, ad_tool_provider **p)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].d->name, name) == 0) {
            if (p)
                *p = v[i].p;
            return v[i].d;
        }
    return NULL;
}

static size_t prov_count(ad_tool_provider *p)
{
    return p->vt->count ? p->vt->count(p) : 0;
}

/* The merged list again, from every provider's current one. A name that
 * an earlier provider already offers is left out (and said so). */
static int rebuild(ad_tool_host *h)
{
    size_t total = 0;
    for (size_t i = 0; i < h->nprovs; i++)
        total += prov_count(h->provs[i]);
    entry *v = calloc(total ? total : 1, sizeof *v);
    if (v == NULL)
        return AD_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < h->nprovs; i++) {
        ad_tool_provider *p = h->provs[i];
        size_t c = prov_count(p);
        for (size_t k = 0; k < c; k++) {
            const ad_tool_desc *d = p->vt->get(p, k);
            ad_tool_provider *other = NULL;
            if (d == NULL || d->name == NULL)
                continue;
            if (find_in(v, n, d->name, &other)) {
                char msg[300];
                int ml = snprintf(msg, sizeof msg,
                                  "tool '%.100s' is left out: the name is already registered by %s",
                                  d->name, other->origin ? other->origin : "?");
                ad_tool_host_log(h, p->origin, AGENTD_LOG_WARN, msg,
                                 ml > 0 ? (size_t)ml < sizeof msg ? (size_t)ml : sizeof msg - 1 : 0);
                continue;
            }
            v[n].d = d;
            v[n].p = p;
            n++;
        }
    }
    free(h->tools);
    h->tools = v;
    h->ntools = n;
    h->gen++;
    return AD_OK;
}

int ad_tool_host_add(ad_tool_host *h, ad_tool_provider *p, char *err, size_t errlen)
{
    p->host = h;
    size_t c = prov_count(p);
    for (size_t i = 0; i < c; i++) {
        const ad_tool_desc *d = p->vt->get(p, i);
        ad_tool_provider *other = NULL;
        const char *by = NULL;
        if (find_in(h->tools, h->ntools, d->name, &other))
            by = other->origin;
        for (size_t k = 0; !by && k < i; k++)
            if (strcmp(p->vt->get(p, k)->name, d->name) == 0)
                by = p->origin;
        if (by) {
            ad_errf(err, errlen, "duplicate tool name '%s' (already registered by %s)", d->name,
                    by ? by : "?");
            if (p->vt->close)
                p->vt->close(p);
            return AD_EINVAL;
        }
    }
    ad_tool_provider **pv = realloc(h->provs, (h->nprovs + 1) * sizeof *pv);
    if (pv == NULL) {
        ad_errf(err, errlen, "out of memory");
        if (p->vt->close)
            p->vt->close(p);
        return AD_ENOMEM;
    }
    h->provs = pv;
    h->provs[h->nprovs++] = p;
    if (rebuild(h) != AD_OK) {
        h->nprovs--;
        ad_errf(err, errlen, "out of memory");
        if (p->vt->close)
            p->vt->close(p);
        return AD_ENOMEM;
    }
    return AD_OK;
}

void ad_tool_host_changed(ad_tool_host *h)
{
    rebuild(h); /* on ENOMEM the old list stays */
}

size_t ad_tool_host_count(const ad_tool_host *h)
{
    return h ? h->ntools : 0;
}

const ad_tool_desc *ad_tool_host_at(const ad_tool_host *h, size_t i)
{
    return h && i < h->ntools ? h->tools[i].d : NULL;
}

ad_tool_provider *ad_tool_host_owner(const ad_tool_host *h, size_t i)
{
    return h && i < h->ntools ? h->tools[i].p : NULL;
}

size_t ad_tool_host_provider_count(const ad_tool_host *h)
{
    return h ? h->nprovs : 0;
}

ad_tool_provider *ad_tool_host_provider_at(const ad_tool_host *h, size_t i)
{
    return h && i < h->nprovs ? h->provs[i] : NULL;
}

const ad_tool_desc *ad_tool_host_find(const ad_tool_host *h, const char *name)
{
    return h && name ? find_in(h->tools, h->ntools, name, NULL) : NULL;
}

uint64_t ad_tool_host_generation(const ad_tool_host *h)
{
    return h ? h->gen : 0;
}

void ad_tool_host_set_result_max(ad_tool_host *h, size_t max)
{
    h->result_max = max ? max : AD_TOOL_RESULT_MAX;
}

size_t ad_tool_host_result_max(const ad_tool_host *h)
{
    return h ? h->result_max : AD_TOOL_RESULT_MAX;
}

bool ad_tool_host_busy(const ad_tool_host *h)
{
    for (size_t i = 0; h && i < h->nprovs; i++)
        if (h->provs[i]->vt->busy && h->provs[i]->vt->busy(h->provs[i]))
            return true;
    return false;
}

static json_object *build_openai_json(const ad_tool_host *h)
{
    json_object *arr = json_object_new_array();
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < h->ntools; i++) {
        const ad_tool_desc *d = h->tools[i].d;
        json_object *params = NULL;
        /* A copy of our own: the provider's object may go with its
         * provider, on a thread of its own. */
        if (json_object_deep_copy((json_object *)d->parameters, &params, NULL) != 0)
            goto fail;
        json_object *fn = json_object_new_object();
        json_object *e = json_object_new_object();
        if (fn == NULL || e == NULL ||
            json_object_object_add(fn, "name", json_object_new_string(d->name)) != 0 ||
            json_object_object_add(fn, "description",
                                   json_object_new_string(d->description ? d->description
                                                                         : "")) != 0 ||
            json_object_object_add(fn, "parameters", params) != 0) {
            json_object_put(fn);
            json_object_put(e);
            json_object_put(params);
            goto fail;
        }
        if (json_object_object_add(e, "type", json_object_new_string("function")) != 0 ||
            json_object_object_add(e, "function", fn) != 0) {
            json_object_put(e);
            json_object_put(fn);
            goto fail;
        }
        if (json_object_array_add(arr, e) != 0) {
            json_object_put(e);
            goto fail;
        }
    }
    return arr;
fail:
    json_object_put(arr);
    return NULL;
}

json_object *ad_tool_host_openai_json(ad_tool_host *h)
{
    if (h == NULL || h->ntools == 0)
        return NULL;
    /* One array per list, shared by every agent on the loop: a
     * conversation holds a reference, not a copy of the schemas. */
    if (!h->openai || h->openai_gen != h->gen) {
        json_object *arr = build_openai_json(h);
        if (!arr)
            return NULL;
        json_object_put(h->openai);
        h->openai = arr;
        h->openai_gen = h->gen;
    }
    return json_object_get(h->openai);
}

char *ad_tool_host_names(const ad_tool_host *h)
{
    ad_buf b = AD_BUF_INIT;
    for (size_t i = 0; h && i < h->ntools; i++)
        if (ad_buf_printf(&b, "%s%s", i ? ", " : "", h->tools[i].d->name) != 0) {
            ad_buf_free(&b);
            return NULL;
        }
    return ad_buf_steal(&b);
}

/* ---- outcomes ----------------------------------------------------------- */

static void schedule(ad_tool_batch *b)
{
    ad_tool_host *h = b->h;
    if (b->due || b->delivered)
        return;
    b->due = true;
    b->due_next = NULL;
    if (h->due_tail)
        h->due_tail->due_next = b;
    else
        h->due_head = b;
    h->due_tail = b;
    uv_ref((uv_handle_t *)&h->wake);
    uv_async_send(&h->wake);
}

static void untime(hjob *j)
{
    if (!j->timed)
        return;
    ad_tool_host *h = j->b->h;
    j->timed = false;
    if (--h->timed == 0) {
        uv_timer_stop(&h->deadline);
        h->deadline_at = 0;
    }
}

/* Call j's outcome: state and r (stolen, normalized here). */
static void set_outcome(hjob *j, ad_call_state st, ad_tool_result *r)
{
    ad_tool_batch *b = j->b;
    ad_call_outcome *o = &b->out[j->i];
    normalize(b->h, r);
    o->result = *r;
    memset(r, 0, sizeof *r);
    o->state = st;
    uint64_t t0 = atomic_load(&j->started_ns), now = uv_hrtime();
    o->started = t0 != 0;
    o->seconds = t0 && now > t0 ? (double)(now - t0) / 1e9 : 0;
    j->final = true;
    b->open--;
    untime(j);
    if (b->cb.on_result && !b->abandoned)
        b->cb.on_result(b->ud, j->i, o);
    if (b->open == 0)
        schedule(b);
}

static void deliver(ad_tool_batch *b)
{
    b->delivered = true;
    if (!b->abandoned)
        b->cb.on_done(b->ud, b->out, b->n);
    for (size_t i = 0; i < b->n; i++)
        ad_tool_result_free(&b->out[i].result);
    if (b->held == 0)
        batch_free(b);
}

static void deliver_due(ad_tool_host *h)
{
    while (h->due_head) {
        ad_tool_batch *b = h->due_head;
        h->due_head = b->due_next;
        if (h->due_head == NULL)
            h->due_tail = NULL;
        b->due = false;
        deliver(b);
    }
    uv_unref((uv_handle_t *)&h->wake);
}

void ad_tool_job_started(ad_tool_job *job)
{
    hjob *j = (hjob *)job;
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&j->started_ns, &zero, uv_hrtime());
}

void ad_tool_job_progress(ad_tool_job *job, double done, double total, const char *msg)
{
    hjob *j = (hjob *)job;
    ad_tool_batch *b = j->b;
    if (j->final || b->abandoned || b->cb.on_progress == NULL)
        return;
    uint64_t now = uv_hrtime();
    bool last = total > 0 && done >= total;
    if (!last && j->last_progress && now - j->last_progress < PROGRESS_EVERY_NS)
        return;
    j->last_progress = now;
    b->cb.on_progress(b->ud, j->i, done, total, msg);
}

void ad_tool_result_verrorf(ad_tool_result *r, bool bounded, const char *fmt, va_list ap)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_vprintf(&b, fmt, ap);
    memset(r, 0, sizeof *r);
    r->is_error = true;
    r->bounded = bounded;
    r->len = b.len;
    r->content = ad_buf_steal(&b);
}

void ad_tool_result_errorf(ad_tool_result *r, bool bounded, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ad_tool_result_verrorf(r, bounded, fmt, ap);
    va_end(ap);
}

void ad_tool_job_done(ad_tool_job *job, ad_tool_result *res)
{
    hjob *j = (hjob *)job;
    ad_tool_batch *b = j->b;
    ad_tool_host *h = b->h;
    ad_tool_result r = {0};
    if (res) {
        r = *res;
        memset(res, 0, sizeof *res);
    }
    if (!j->held) { /* a second done: the first one counted */
        ad_tool_result_free(&r);
        return;
    }
    /* The call's lines come before its result. */
    drain(h);
    j->held = false;
    b->held--;
    if (!j->final && !j->stopping && !h->dead)
        set_outcome(j, AD_CALL_DONE, &r);
    else
        ad_tool_result_free(&r); /* late: the call has its outcome already */
    if (b->delivered && b->held == 0)
        batch_free(b);
}

/* ---- deadlines ---------------------------------------------------------- */

static void arm(ad_tool_host *h, uint64_t at)
{
    if (h->deadline_at && h->deadline_at <= at)
        return;
    uint64_t now = uv_hrtime();
    uint64_t ms = at > now ? (at - now + 999999) / 1000000 : 0;
    h->deadline_at = at;
    uv_timer_start(&h->deadline, on_deadline, ms, 0);
}

static uint64_t limit_ns(const hjob *j)
{
    double s = j->job.timeout_s + (j->job.grace_s > 0 ? j->job.grace_s : 0);
    return (uint64_t)(s * 1e9);
}

static void time_out(hjob *j)
{
    ad_tool_result r;
    error_result(&r, "tool '%s' timed out after %g s (its result will be ignored)", j->name,
                 j->job.timeout_s);
    j->job.stop = AD_TOOL_STOP_TIMEOUT;
    set_outcome(j, AD_CALL_TIMED_OUT, &r);
    if (j->held && j->p->vt->cancel)
        j->p->vt->cancel(j->p, &j->job);
}

static void on_deadline(uv_timer_t *t)
{
    ad_tool_host *h = t->data;
    h->deadline_at = 0;
    uint64_t now = uv_hrtime(), next = 0;
    hjob **late = NULL;
    size_t nlate = 0, cap = 0;
    for (ad_tool_batch *b = h->batches; b; b = b->next) {
        for (size_t i = 0; i < b->n; i++) {
            hjob *j = &b->jobs[i];
            if (!j->timed || j->final)
                continue;
            uint64_t t0 = atomic_load(&j->started_ns), lim = limit_ns(j), at;
            /* Not started yet: its time has not begun (nor if it began
             * after `now` was read). */
            if (t0 == 0 || t0 > now) {
                at = now + lim;
            } else if (now - t0 >= lim) {
                if (nlate == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    hjob **v = realloc(late, nc * sizeof *v);
                    if (v == NULL) {
                        at = now + 10000000; /* try again in 10 ms */
                        goto keep;
                    }
                    late = v;
                    cap = nc;
                }
                late[nlate++] = j;
                continue;
            } else {
                at = t0 + lim;
            }
        keep:
            if (next == 0 || at < next)
                next = at;
        }
    }
    /* Outcomes only now: their callbacks may start or end other batches. */
    for (size_t i = 0; i < nlate; i++)
        if (!late[i]->final)
            time_out(late[i]);
    free(late);
    if (next && h->timed)
        arm(h, next);
}

/* ---- running ------------------------------------------------------------ */

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* The checks before a provider gets the call: known tool, arguments an
 * object that satisfies the schema. Returns the tool (j->job.args_obj then
 * holds the parsed arguments), or NULL with *r filled. */
static const ad_tool_desc *check_call(ad_tool_host *h, hjob *j, ad_tool_provider **p,
                                      ad_tool_result *r)
{
    const ad_tool_desc *tool = find_in(h->tools, h->ntools, j->name, p);
    if (tool == NULL) {
        char *names = ad_tool_host_names(h);
        if (names && names[0])
            error_result(r, "unknown tool '%.100s'; available tools: %s", j->name, names);
        else
            error_result(r, "unknown tool '%.100s'; no tools are available", j->name);
        free(names);
        return NULL;
    }
    size_t len = strlen(j->args);
    char why[400];
    json_object *v = NULL;
    if (ad_tool_parse_json(j->args, len, &v, why, sizeof why) != 0) {
        error_result(r, "invalid arguments for tool '%s': not valid JSON (%s)", tool->name, why);
        return NULL;
    }
    if (!json_object_is_type(v, json_type_object)) {
        const char *got = json_object_is_type(v, json_type_array)     ? "an array"
                          : json_object_is_type(v, json_type_string)  ? "a string"
                          : json_object_is_type(v, json_type_boolean) ? "a boolean"
                          : v == NULL                                 ? "null"
                                                                      : "a number";
        json_object_put(v);
        error_result(r, "invalid arguments for tool '%s': expected a JSON object, got %s",
                     tool->name, got);
        return NULL;
    }
    int vrc = ad_schema_validate(tool->parameters, v, why, sizeof why);
    if (vrc != 0) {
        json_object_put(v);
        if (vrc == AD_ENOMEM)
            error_result(r, "agentd: out of memory checking the arguments of tool '%s'",
                         tool->name);
        else
            error_result(r, "invalid arguments for tool '%s': %s", tool->name, why);
        return NULL;
    }
    j->job.args_obj = v;
    return tool;
}

ad_tool_batch *ad_tool_host_run(ad_tool_host *h, const char *conv_id, const ad_call_req *calls,
                                size_t n, const ad_batch_cb *cb, void *ud)
{
    if (h == NULL || n == 0 || cb == NULL || cb->on_done == NULL)
        return NULL;
    ad_tool_batch *b = calloc(1, sizeof *b + n * sizeof b->jobs[0]);
    if (b == NULL)
        return NULL;
    b->h = h;
    b->cb = *cb;
    b->ud = ud;
    b->n = b->open = n;
    b->out = calloc(n, sizeof *b->out);
    b->conv_id = ad_strdup(conv_id ? conv_id : "");
    bool ok = b->out && b->conv_id;
    for (size_t i = 0; ok && i < n; i++) {
        hjob *j = &b->jobs[i];
        const ad_call_req *c = &calls[i];
        j->b = b;
        j->i = i;
        j->id = ad_strdup(c->id ? c->id : "");
        j->name = ad_strdup(c->name ? c->name : "");
        if (c->args == NULL || all_space(c->args, c->args_len))
            j->args = ad_strdup("{}");
        else
            j->args = ad_strndup(c->args, c->args_len);
        ok = j->id && j->name && j->args;
    }
    if (!ok) {
        batch_free(b); /* releases what was made; b is in no list yet */
        return NULL;
    }
    b->next = h->batches;
    if (h->batches)
        h->batches->prev = b;
    h->batches = b;

    for (size_t i = 0; i < n; i++) {
        hjob *j = &b->jobs[i];
        ad_tool_result r;
        const ad_tool_desc *tool = check_call(h, j, &j->p, &r);
        if (tool == NULL) {
            j->p = NULL;
            set_outcome(j, AD_CALL_REFUSED, &r);
            continue;
        }
        j->job.tool = tool;
        j->job.call_id = j->id;
        j->job.conv_id = b->conv_id;
        j->job.args = j->args;
        j->job.args_len = strlen(j->args);
        j->job.timeout_s = calls[i].timeout_s > 0 ? calls[i].timeout_s : 0;
    }
    for (size_t i = 0; i < n; i++) {
        hjob *j = &b->jobs[i];
        if (j->final) { /* refused, or cancelled by a callback meanwhile */
            json_object_put(j->job.args_obj);
            j->job.args_obj = NULL;
            continue;
        }
        j->held = true;
        b->held++;
        if (j->job.timeout_s > 0) {
            j->timed = true;
            h->timed++;
        }
        int rc = j->p->vt->start(j->p, &j->job);
        json_object_put(j->job.args_obj);
        j->job.args_obj = NULL;
        if (j->timed && !j->final)
            arm(h, uv_hrtime() + limit_ns(j));
        if (rc < 0 && j->held) {
            j->held = false;
            b->held--;
            if (!j->final) {
                ad_tool_result r;
                error_result(&r, "tool '%s' could not be started%s", j->name,
                             rc == AD_ENOMEM ? " (out of memory)" : "");
                set_outcome(j, AD_CALL_FAILED, &r);
            }
        }
    }
    return b;
}

void ad_tool_batch_cancel(ad_tool_batch *b)
{
    if (b == NULL || b->cancelled || b->delivered)
        return;
    b->cancelled = true;
    for (size_t i = 0; i < b->n; i++)
        if (!b->jobs[i].final)
            b->jobs[i].stopping = true;
    for (size_t i = 0; i < b->n; i++) {
        hjob *j = &b->jobs[i];
        if (j->final)
            continue;
        bool never;
        if (j->held) {
            j->job.stop = AD_TOOL_STOP_CANCEL;
            never = j->p->vt->cancel ? j->p->vt->cancel(j->p, &j->job) : false;
        } else {
            /* Ended by its provider while this batch was being cancelled. */
            never = atomic_load(&j->started_ns) == 0;
        }
        j->stopping = false;
        ad_tool_result r;
        if (never)
            error_result(&r, "cancelled by user before it started; it was not run");
        else
            error_result(&r, "cancelled by user while it was running (its result will be ignored)");
        set_outcome(j, AD_CALL_CANCELLED, &r);
    }
}

void ad_tool_batch_abandon(ad_tool_batch *b)
{
    if (b == NULL)
        return;
    b->abandoned = true;
    ad_tool_batch_cancel(b);
}

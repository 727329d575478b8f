/*
 * provider.c -- the configured MCP servers as one tool provider (see
 * provider.h).
 *
 * Ownership: the host owns the provider once added; the provider owns one
 * msrv per enabled server (its client) and the tool records of the current
 * list. A tool record (mtool, whose first member is the ad_tool_desc the
 * host sees) is counted: the list holds one reference, every job of it one
 * more, so that a list replaced while calls run leaves their descriptions
 * valid. close() cancels the jobs, closes the clients (each one's end is
 * asynchronous: stdio waits for the server to exit, HTTP sends DELETE) and
 * the provider's memory goes with the last one.
 */
#include "mcp/provider.h"

#include <agentd/plugin.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "core/schema.h"
#include "mcp/client.h"
#include "mcp/conf.h"
#include "mcp/content.h"
#include "mcp/names.h"

#define DEFAULT_RESTARTS 5

typedef struct mprov mprov;

typedef struct msrv {
    mprov *p;
    const ad_mcp_server_conf *conf;
    ad_mcp_client *c; /* NULL: it could not be made (the error says why) */
    char *origin;     /* "mcp:NAME" */
    char *error;      /* why the client could not be made */
    bool settled;     /* its first attempt is over */
    bool was_ready;
} msrv;

typedef struct mtool {
    ad_tool_desc d; /* first: what the host sees */
    int refs;
    msrv *s;
    char *name, *tool, *description;
    json_object *params; /* the cleaned schema, for the model */
    json_object *schema; /* the server's, for validation */
} mtool;

typedef struct mjob {
    struct mjob *prev, *next;
    mprov *p;
    ad_tool_job *job;
    mtool *t;
    ad_mcp_call *call;
} mjob;

struct mprov {
    ad_tool_provider base;
    ad_tool_host *host;
    uv_loop_t *loop;
    const ad_config *cfg;
    msrv *v;
    size_t n;
    mtool **tools;
    size_t ntools;
    mjob *jobs;
    size_t unsettled;
    size_t open; /* clients not yet closed */
    bool closing;
};

/* ---- tool records --------------------------------------------------------- */

static void tool_unref(mtool *t)
{
    if (!t || --t->refs > 0)
        return;
    free(t->name);
    free(t->tool);
    free(t->description);
    json_object_put(t->params);
    json_object_put(t->schema);
    free(t);
}

static mtool *tool_new(msrv *s, const char *model, const ad_mcp_tool *mt)
{
    mtool *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->refs = 1;
    t->s = s;
    t->name = ad_strdup(model);
    t->tool = ad_strdup(mt->name);
    t->description = ad_strdup(mt->description ? mt->description : "");
    t->params = ad_mcp_schema_clean(mt->input_schema);
    t->schema = json_object_get(mt->input_schema);
    if (!t->name || !t->tool || !t->description || !t->params) {
        tool_unref(t);
        return NULL;
    }
    t->d.name = t->name;
    t->d.description = t->description;
    t->d.parameters = t->params;
    /* Calls go out as they come: the server decides what runs together. */
    t->d.flags = AD_TOOL_THREADSAFE;
    t->d.origin = s->origin;
    return t;
}

static void log_line(mprov *p, const char *origin, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void log_line(mprov *p, const char *origin, int level, const char *fmt, ...)
{
    if (p->closing)
        return;
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    /* One log line per line of the message (a stderr tail has several). */
    for (size_t i = 0; b.data && i < b.len;) {
        const char *nl = memchr(b.data + i, '\n', b.len - i);
        size_t n = nl ? (size_t)(nl - (b.data + i)) : b.len - i;
        ad_tool_host_log(p->host, origin, level, b.data + i, n);
        i += n + 1;
    }
    ad_buf_free(&b);
}

/* The list again from every server's tools, in config order, with one name
 * map over all of them; the host hears of it. */
static void rebuild(mprov *p)
{
    ad_mcp_names m = {0};
    char err[512];
    for (size_t i = 0; i < p->n; i++) {
        msrv *s = &p->v[i];
        if (!s->c)
            continue;
        size_t n = ad_mcp_client_tool_count(s->c);
        for (size_t k = 0; k < n; k++) {
            const ad_mcp_tool *t = ad_mcp_client_tool(s->c, k);
            if (!ad_mcp_tool_offered(s->conf, t, NULL))
                continue;
            int rc;
            if (!ad_mcp_names_add(&m, s->conf->tool_prefix, t->name, s, &rc, err, sizeof err)) {
                if (rc == AD_ENOMEM) {
                    ad_mcp_names_free(&m);
                    log_line(p, s->origin, AGENTD_LOG_ERROR,
                             "out of memory for the tool list: the old one stays");
                    return;
                }
                log_line(p, s->origin, AGENTD_LOG_WARN, "%s", err);
            }
        }
    }
    mtool **v = calloc(m.n ? m.n : 1, sizeof *v);
    size_t nv = 0;
    for (size_t i = 0; v && i < m.n; i++) {
        msrv *s = m.v[i].ud;
        const ad_mcp_tool *mt = ad_mcp_client_find_tool(s->c, m.v[i].tool);
        mtool *t = mt ? tool_new(s, m.v[i].model, mt) : NULL;
        if (!t) {
            for (size_t k = 0; k < nv; k++)
                tool_unref(v[k]);
            free(v);
            v = NULL;
        } else {
            v[nv++] = t;
        }
    }
    ad_mcp_names_free(&m);
    if (!v) {
        log_line(p, "mcp", AGENTD_LOG_ERROR, "out of memory for the tool list: the old one stays");
        return;
    }
    mtool **old = p->tools;
    size_t nold = p->ntools;
    p->tools = v;
    p->ntools = nv;
    ad_tool_host_changed(p->host);
    for (size_t i = 0; i < nold; i++)
        tool_unref(old[i]);
    free(old);
}

/* ---- clients' callbacks --------------------------------------------------- */

static void settle(msrv *s)
{
    if (!s->settled) {
        s->settled = true;
        s->p->unsettled--;
    }
}

static void on_state(void *ud, ad_mcp_client *c, ad_mcp_state state, const char *msg)
{
    msrv *s = ud;
    mprov *p = s->p;
    if (p->closing)
        return;
    switch (state) {
    case AD_MCP_READY:
        if (s->was_ready || s->settled)
            log_line(p, s->origin, AGENTD_LOG_INFO, "the MCP server '%s' is up again (%zu tools)",
                     s->conf->name, ad_mcp_client_tool_count(c));
        s->was_ready = true;
        settle(s);
        break;
    case AD_MCP_RESTARTING:
        settle(s);
        break;
    case AD_MCP_FAILED:
        if (s->settled)
            log_line(p, s->origin, AGENTD_LOG_WARN,
                     "the MCP server '%s' is down for good (%s): its tools are left out",
                     s->conf->name, msg ? msg : "it failed");
        settle(s);
        break;
    default:
        break;
    }
}

static void on_tools(void *ud, ad_mcp_client *c)
{
    (void)c;
    msrv *s = ud;
    if (!s->p->closing)
        rebuild(s->p);
}

static void on_log(void *ud, ad_mcp_client *c, int level, const char *logger, const char *msg)
{
    (void)c;
    msrv *s = ud;
    /* The servers' chatter (stderr, info) is for AGENTD_DEBUG; what went
     * wrong is shown. */
    int lv = level >= AD_MCP_LOG_ERROR  ? AGENTD_LOG_ERROR
             : level == AD_MCP_LOG_WARN ? AGENTD_LOG_WARN
                                        : AGENTD_LOG_DEBUG;
    if (logger)
        log_line(s->p, s->origin, lv, "%s: %s", logger, msg);
    else
        log_line(s->p, s->origin, lv, "%s", msg);
}

/* ---- jobs ------------------------------------------------------------------ */

static void job_unlink(mjob *j)
{
    mprov *p = j->p;
    if (j->prev)
        j->prev->next = j->next;
    else if (p->jobs == j)
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

/* The job ends with r (NULL: no content) and its record goes. */
static void job_end(mjob *j, ad_tool_result *r)
{
    job_unlink(j);
    ad_tool_job *job = j->job;
    mtool *t = j->t;
    job->pdata = NULL;
    free(j);
    ad_tool_job_done(job, r);
    tool_unref(t);
}

static void error_result(ad_tool_result *r, const char *text)
{
    r->content = ad_strdup(text ? text : "the MCP call failed");
    r->len = r->content ? strlen(r->content) : 0;
    r->is_error = true;
}

static void on_call_progress(void *ud, double progress, double total, const char *message)
{
    mjob *j = ud;
    ad_tool_job_progress(j->job, progress, total, message);
}

static void on_call_done(void *ud, const ad_mcp_outcome *out)
{
    mjob *j = ud;
    mprov *p = j->p;
    ad_tool_result r = {0};
    if (out->status == AD_MCP_CALL_OK) {
        size_t max = p->cfg->mcp_max_result_bytes > 0 ? (size_t)p->cfg->mcp_max_result_bytes
                                                      : (size_t)128 << 10;
        size_t hmax = ad_tool_host_result_max(p->host);
        if (hmax && hmax < max)
            max = hmax;
        if (max < 64)
            max = 64;
        ad_mcp_content c = {0};
        char err[256];
        int rc = ad_mcp_content_render(out->result, max, &c, err, sizeof err);
        if (rc == AD_ENOMEM || !c.text) {
            error_result(&r, "agentd: out of memory for the result of an MCP call");
        } else {
            r.content = c.text;
            r.len = c.len;
            r.is_error = c.is_error;
            r.bounded = true; /* cut with the MCP marker already */
            c.text = NULL;
            /* The text describes the images; a model that takes images
             * is shown them too (a lack of memory leaves them described). */
            if (p->cfg->images)
                r.parts = ad_mcp_image_parts(&c, (size_t)p->cfg->mcp_max_image_bytes);
        }
        ad_mcp_content_free(&c);
    } else {
        error_result(&r, out->message);
    }
    j->call = NULL;
    job_end(j, &r);
}

static int p_start(ad_tool_provider *pp, ad_tool_job *job)
{
    mprov *p = (mprov *)pp;
    mtool *t = (mtool *)job->tool;
    msrv *s = t->s;
    char why[400];
    ad_tool_result r = {0};
    /* The host checked the cleaned schema; the server's own is the one
     * that counts. */
    int vrc = ad_schema_validate(t->schema, job->args_obj, why, sizeof why);
    if (vrc == AD_ENOMEM)
        return AD_ENOMEM;
    if (vrc != AD_OK || !s->c) {
        ad_buf b = AD_BUF_INIT;
        if (vrc != AD_OK)
            ad_buf_printf(&b, "invalid arguments for tool '%s': %s", t->name, why);
        else
            ad_buf_printf(&b, "the MCP server '%s' is not running: %s", s->conf->name,
                          s->error ? s->error : "it could not be set up");
        ad_tool_job_started(job);
        error_result(&r, b.data);
        ad_buf_free(&b);
        ad_tool_job_done(job, &r);
        return AD_OK;
    }
    mjob *j = calloc(1, sizeof *j);
    if (!j)
        return AD_ENOMEM;
    j->p = p;
    j->job = job;
    j->t = t;
    double to = s->conf->tool_timeout_s;
    /* The server's tool_timeout_s is the call's: the host's deadline comes
     * after it, as a backstop. */
    if (to > 0 && job->timeout_s > 0 && to + 1 > job->timeout_s)
        job->grace_s = to + 1 - job->timeout_s;
    static const ad_mcp_call_cb ccb = {on_call_progress, on_call_done};
    j->call = ad_mcp_call_start(s->c, t->tool, job->args_obj, to > 0 ? to : 0, &ccb, j);
    if (!j->call) {
        free(j);
        return AD_ENOMEM;
    }
    t->refs++;
    job->pdata = j;
    j->next = p->jobs;
    if (p->jobs)
        p->jobs->prev = j;
    p->jobs = j;
    ad_tool_job_started(job);
    return AD_OK;
}

static bool p_cancel(ad_tool_provider *pp, ad_tool_job *job)
{
    (void)pp;
    mjob *j = job->pdata;
    if (!j)
        return false;
    ad_mcp_call_cancel(j->call, job->stop == AD_TOOL_STOP_TIMEOUT ? "timed out"
                                                                 : "cancelled by the user");
    j->call = NULL;
    job_end(j, NULL);
    return false;
}

static size_t p_count(ad_tool_provider *pp)
{
    return ((mprov *)pp)->ntools;
}

static const ad_tool_desc *p_get(ad_tool_provider *pp, size_t i)
{
    mprov *p = (mprov *)pp;
    return i < p->ntools ? &p->tools[i]->d : NULL;
}

static void prov_free(mprov *p)
{
    for (size_t i = 0; i < p->ntools; i++)
        tool_unref(p->tools[i]);
    free(p->tools);
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].origin);
        free(p->v[i].error);
    }
    free(p->v);
    free(p);
}

static void on_client_closed(void *ud)
{
    msrv *s = ud;
    mprov *p = s->p;
    if (--p->open == 0)
        prov_free(p);
}

static void p_close(ad_tool_provider *pp)
{
    mprov *p = (mprov *)pp;
    while (p->jobs) {
        mjob *j = p->jobs;
        ad_mcp_call_cancel(j->call, "agentd is shutting down");
        j->call = NULL;
        job_end(j, NULL);
    }
    p->closing = true;
    size_t open = 0;
    for (size_t i = 0; i < p->n; i++)
        open += p->v[i].c != NULL;
    if (open == 0) {
        prov_free(p);
        return;
    }
    p->open = open;
    for (size_t i = 0; i < p->n; i++) {
        ad_mcp_client *c = p->v[i].c;
        if (c)
            ad_mcp_client_close(c, on_client_closed, &p->v[i]);
    }
}

static const ad_tool_provider_vt mcp_vt = {
    .kind = "mcp",
    .count = p_count,
    .get = p_get,
    .start = p_start,
    .cancel = p_cancel,
    .busy = NULL,
    .close = p_close,
};

/* ---- the public functions ------------------------------------------------- */

int ad_mcp_provider_add(ad_tool_host *host, const ad_config *cfg, const ad_mcp_provider_opts *o,
                        char *err, size_t errlen)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nmcp_servers; i++)
        n += cfg->mcp_servers[i].enabled;
    if (n == 0)
        return AD_OK;
    mprov *p = calloc(1, sizeof *p);
    if (!p || !(p->v = calloc(n, sizeof *p->v))) {
        free(p);
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    p->base.vt = &mcp_vt;
    p->base.origin = "mcp";
    p->host = host;
    p->loop = ad_tool_host_loop(host);
    p->cfg = cfg;
    for (size_t i = 0; i < cfg->nmcp_servers; i++) {
        const ad_mcp_server_conf *sc = &cfg->mcp_servers[i];
        if (!sc->enabled)
            continue;
        msrv *s = &p->v[p->n++];
        s->p = p;
        s->conf = sc;
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "mcp:%s", sc->name);
        s->origin = b.data;
        if (!s->origin) {
            prov_free(p);
            ad_errf(err, errlen, "out of memory");
            return AD_ENOMEM;
        }
    }
    /* Added empty: the tools join as the servers list them. */
    if (ad_tool_host_add(host, &p->base, err, errlen) != AD_OK)
        return AD_ENOMEM; /* the host closed (freed) it */
    int restarts = o && o->max_restarts ? o->max_restarts : DEFAULT_RESTARTS;
    if (restarts < 0)
        restarts = 0;
    static const ad_mcp_client_cb cb = {.on_state = on_state, .on_tools = on_tools,
                                        .on_log = on_log};
    for (size_t i = 0; i < p->n; i++) {
        msrv *s = &p->v[i];
        char e[1024];
        s->c = ad_mcp_client_from_conf(p->loop, cfg, s->conf, restarts, &cb, s, e, sizeof e);
        if (!s->c) {
            s->error = ad_strdup(e);
            s->settled = true;
            continue;
        }
        p->unsettled++;
        ad_mcp_client_start(s->c);
    }
    while (p->unsettled > 0)
        uv_run(p->loop, UV_RUN_ONCE);
    for (size_t i = 0; i < p->n; i++) {
        msrv *s = &p->v[i];
        if (s->c && ad_mcp_client_state(s->c) == AD_MCP_READY)
            continue;
        const char *why = s->c ? ad_mcp_client_error(s->c) : s->error;
        if (s->conf->required) {
            ad_errf(err, errlen,
                    "the required MCP server '%s' did not start: %s", s->conf->name,
                    why ? why : "it failed");
            return AD_EINVAL;
        }
        log_line(p, s->origin, AGENTD_LOG_WARN,
                 "%s; its tools are left out%s", why ? why : "the MCP server failed",
                 s->c && ad_mcp_client_state(s->c) == AD_MCP_RESTARTING
                     ? " until it comes up (agentd keeps trying)"
                     : "");
    }
    return AD_OK;
}

ad_tool_provider *ad_mcp_provider_find(const ad_tool_host *host)
{
    size_t n = ad_tool_host_provider_count(host);
    for (size_t i = 0; i < n; i++) {
        ad_tool_provider *p = ad_tool_host_provider_at(host, i);
        if (p->vt == &mcp_vt)
            return p;
    }
    return NULL;
}

void ad_mcp_provider_print(const ad_tool_provider *pp, FILE *out)
{
    const mprov *p = (const mprov *)pp;
    for (size_t i = 0; i < p->n; i++) {
        const msrv *s = &p->v[i];
        size_t offered = 0;
        for (size_t k = 0; k < p->ntools; k++)
            offered += p->tools[k]->s == s;
        const char *state = s->c ? ad_mcp_state_name(ad_mcp_client_state(s->c)) : "failed";
        fprintf(out, "  %-16s %-6s %-10s %3zu tools", s->conf->name,
                s->conf->command ? "stdio" : "http", state, offered);
        json_object *si = s->c ? ad_mcp_client_server_info(s->c) : NULL;
        const char *sn = si ? ad_json_str(si, "name") : NULL;
        const char *sv = si ? ad_json_str(si, "version") : NULL;
        if (sn)
            fprintf(out, "  %s%s%s", sn, sv ? " " : "", sv ? sv : "");
        const char *proto = s->c ? ad_mcp_client_protocol(s->c) : NULL;
        if (proto)
            fprintf(out, " (protocol %s)", proto);
        fputc('\n', out);
        const char *why = s->c ? ad_mcp_client_error(s->c) : s->error;
        if (why && !(s->c && ad_mcp_client_state(s->c) == AD_MCP_READY)) {
            /* First line only: the stderr tail is in the log. */
            fprintf(out, "      %.*s\n", (int)strcspn(why, "\n"), why);
        }
    }
}

/*
 * plugin.c -- the .so plugin provider (see plugin.h).
 *
 * Load phase (the loop thread, at startup): ad_plugin_load_dir() lists the
 * regular "*.so" files of a folder, sorts them with strcmp and hands each to
 * ad_plugin_load_file(), which dlopen()s it (RTLD_NOW so missing symbols fail
 * here, RTLD_LOCAL so plugins cannot collide), looks up
 * agentd_plugin_init_v1 and calls it with the host table below. While init
 * runs, the plugin record is "open": register_tool() validates and
 * deep-copies each tool and config_json() hands out the borrowed config
 * text. When init returns, the record is closed for good; a late
 * register_tool() is refused. The record then joins the host as a
 * provider. With isolation, a worker process describes the plugin first
 * (isolate.c); a plugin whose tools are all isolated is registered from
 * that description through the same register_tool() and never dlopen()ed.
 *
 * Call phase: start() gets a job whose arguments the host has checked. A
 * call of an isolated tool goes to the plugin's isolation provider. Any
 * other call is queued on libuv's pool (pool.h); the pool thread calls the
 * plugin with the job's private NUL-terminated argument text and a result
 * sink on its own stack, bounded by the host's result_max (the rest is cut
 * with a marker that says how much was cut). The host makes the text valid
 * UTF-8.
 *
 * The serial chain: calls of a tool without AGENTD_TOOL_THREADSAFE run one
 * at a time per plugin, in arrival order, across every conversation and
 * batch of the host (`chain` runs, `wait_*` wait). A chain call given up
 * while it runs (timed out, cancelled) holds the chain for as long as the
 * plugin does not return, which may be for ever: the waiting calls, and
 * those that come later, are answered at once that an earlier call holds
 * it.
 *
 * Invariants:
 * - After loading, a plugin's tool list is read-only: the pool threads read
 *   it, nothing writes it. The invoke path touches no shared json-c object.
 * - The host owns a tool's tool_data lifetime once register_tool() accepted
 *   it: destroy() runs exactly once, when the provider closes (also when
 *   the plugin's init fails after registering it).
 * - A plugin runs code in this process exactly while `running` > 0 (calls
 *   queued or running on the pool); busy() reports it, and a busy plugin is
 *   never closed.
 * - Under AddressSanitizer plugins are never dlclose()d, so leak reports keep
 *   symbolised frames.
 */
#include "tools/plugin.h"

#include "base/buf.h"
#include "base/text.h"
#include "core/schema.h"
#include "tools/pool.h"

#include <agentd/plugin.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define AD_TOOLS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AD_TOOLS_ASAN 1
#endif
#endif
#ifndef AD_TOOLS_ASAN
#define AD_TOOLS_ASAN 0
#endif

#define AD_TOOL_NAME_MAX 64
#define LOG_LINE_MAX AD_TOOL_LOG_LINE_MAX /* bytes of one plugin log line passed on */
/* A worker's log() line on its stderr: LOG_MARK, the level digit, the text
 * (isolate.c reads it back). */
#define LOG_MARK '\x1e'

/* The v1 layout ends with destroy; newer plugins may append fields. */
#define AD_TOOL_V1_SIZE (offsetof(agentd_tool, destroy) + sizeof(((agentd_tool *)0)->destroy))

typedef struct ptool {
    ad_tool_desc d; /* first: what the host lists */
    char *name;
    char *description;
    json_object *parameters;
    agentd_invoke_fn invoke;
    void *tool_data;
    void (*destroy)(void *);
    bool isolated; /* its calls go to the plugin's isolation provider */
} ptool;

typedef struct pcall pcall;

struct agentd_plugin {
    ad_tool_provider base; /* first: the provider */
    char *file;            /* base name, e.g. "add.so" */
    char *path;            /* absolute path, for worker processes */
    char *config;          /* owned copy of its config JSON, or NULL */
    void *handle;          /* dlopen handle; NULL: described, not loaded */
    bool worker;           /* in a worker process: log() lines are framed for the host */
    int loading;           /* register_tool()/config_json() allowed */
    char reg_err[256];     /* first register_tool() refusal, reported by the loader */
    ptool **tools;
    size_t ntools, cap;
    ad_tool_provider *iso; /* runs the isolated tools' calls; NULL when none is */
    size_t running;        /* pool calls queued or running (after() not yet called) */
    pcall *chain;          /* the non-thread-safe call on the pool, or NULL */
    pcall *wait_head, *wait_tail; /* non-thread-safe calls waiting for the chain */
};

struct pcall {
    ad_pool_call pc; /* first */
    agentd_plugin *p;
    const ptool *tool;
    size_t max;        /* bytes of output kept */
    bool serial;       /* holds or waits for the chain */
    bool waiting;      /* in the wait list */
    ad_tool_result res; /* written by the pool thread */
    pcall *next;
};

struct agentd_result {
    ad_buf buf;
    size_t max;  /* bytes kept (the host's result_max) */
    size_t cut;  /* bytes dropped beyond max */
    int is_error;
    int has_msg; /* result_error() was called with a message */
};

static const ad_tool_provider_vt plugin_vt;

/* The job whose call this thread runs: a plugin's log() lines made now are
 * that call's (ABI 1.0 gives log() no call context). */
static _Thread_local ad_tool_job *current_job;

/* ---- host functions handed to plugins ----------------------------------- */

static bool valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= AD_TOOL_NAME_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

static int reg_fail(agentd_plugin *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reg_fail(agentd_plugin *p, int code, const char *fmt, ...)
{
    if (p->reg_err[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->reg_err, sizeof p->reg_err, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void tool_free(ptool *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->description);
    json_object_put(t->parameters);
    free(t);
}

static const ptool *find_tool(const agentd_plugin *p, const char *name)
{
    for (size_t i = 0; i < p->ntools; i++)
        if (strcmp(p->tools[i]->name, name) == 0)
            return p->tools[i];
    return NULL;
}

static void host_log(agentd_plugin *self, int level, const char *msg);

static int host_register_tool(agentd_plugin *self, const agentd_tool *tool)
{
    if (self == NULL)
        return AGENTD_EINVAL;
    if (!self->loading) {
        host_log(self, AGENTD_LOG_ERROR, "register_tool() called outside agentd_plugin_init_v1()");
        return AGENTD_ERR;
    }
    if (tool == NULL)
        return reg_fail(self, AGENTD_EINVAL, "register_tool() called with NULL");
    if (tool->size < AD_TOOL_V1_SIZE)
        return reg_fail(self, AGENTD_EABI,
                        "agentd_tool.size is %zu, expected at least %zu; set .size = "
                        "sizeof(agentd_tool) and rebuild against this agentd's plugin.h",
                        tool->size, (size_t)AD_TOOL_V1_SIZE);
    /* Read only the fields this host knows; a newer plugin may have more. */
    agentd_tool d;
    memset(&d, 0, sizeof d);
    memcpy(&d, tool, tool->size < sizeof d ? tool->size : sizeof d);

    if (d.name == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool without a name");
    if (!valid_name(d.name))
        return reg_fail(self, AGENTD_EINVAL,
                        "invalid tool name '%.80s' (expected [A-Za-z0-9_-]{1,64})", d.name);
    if (d.invoke == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s' has no invoke function", d.name);
    if (d.parameters == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s' has no parameters schema", d.name);
    const ad_tool_desc *other = self->base.host ? ad_tool_host_find(self->base.host, d.name) : NULL;
    if (other != NULL || find_tool(self, d.name))
        return reg_fail(self, AGENTD_EINVAL, "duplicate tool name '%s' (already registered by %s)",
                        d.name, other ? other->origin : self->file);

    char why[200];
    json_object *params = NULL;
    if (ad_tool_parse_json(d.parameters, strlen(d.parameters), &params, why, sizeof why) != 0)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': parameters are not valid JSON (%s)",
                        d.name, why);
    if (ad_schema_check(params, why, sizeof why) != 0) {
        json_object_put(params);
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': %s", d.name, why);
    }

    ptool *t = calloc(1, sizeof *t);
    if (t == NULL || (t->name = ad_strdup(d.name)) == NULL ||
        (t->description = ad_strdup(d.description ? d.description : "")) == NULL)
        goto nomem;
    t->parameters = params;
    params = NULL;
    t->invoke = d.invoke;
    t->tool_data = d.tool_data;
    t->destroy = d.destroy;
    t->d.name = t->name;
    t->d.description = t->description;
    t->d.parameters = t->parameters;
    t->d.flags = d.flags & AGENTD_TOOL_THREADSAFE ? AD_TOOL_THREADSAFE : 0;
    t->d.origin = self->file;
    if (self->ntools == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 8;
        ptool **v = realloc(self->tools, cap * sizeof *v);
        if (v == NULL)
            goto nomem;
        self->tools = v;
        self->cap = cap;
    }
    self->tools[self->ntools++] = t;
    return AGENTD_OK;
nomem:
    json_object_put(params);
    tool_free(t);
    return reg_fail(self, AGENTD_ENOMEM, "out of memory");
}

static const char *host_config_json(agentd_plugin *self)
{
    return self != NULL && self->loading ? self->config : NULL;
}

static int host_result_write(agentd_result *out, const char *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0))
        return AGENTD_EINVAL;
    /* Once something was cut, everything after it is cut too: later text
     * must not appear before the marker that says text is missing. */
    if (out->cut > 0) {
        out->cut += len;
        return AGENTD_OK;
    }
    size_t room = out->buf.len < out->max ? out->max - out->buf.len : 0;
    size_t take = len;
    if (take > room) {
        /* Cut on a character boundary rather than inside a UTF-8 sequence. */
        take = ad_utf8_cut(data, len, room);
        out->cut += len - take;
    }
    if (take && ad_buf_append(&out->buf, data, take) != 0)
        return AGENTD_ENOMEM;
    return AGENTD_OK;
}

static int host_result_error(agentd_result *out, const char *msg)
{
    if (out == NULL)
        return AGENTD_EINVAL;
    out->is_error = 1;
    if (msg == NULL || *msg == '\0')
        return AGENTD_OK;
    out->has_msg = 1;
    return host_result_write(out, msg, strlen(msg));
}

static void host_log(agentd_plugin *self, int level, const char *msg)
{
    if (msg == NULL || self == NULL)
        return;
    level = level < AGENTD_LOG_ERROR ? AGENTD_LOG_ERROR
            : level > AGENTD_LOG_DEBUG ? AGENTD_LOG_DEBUG
                                       : level;
    ad_tool_host *h = self->base.host;
    if (!self->worker && h == NULL)
        return;
    ad_tool_job *job = current_job;
    do {
        const char *nl = strchr(msg, '\n');
        size_t n = nl ? (size_t)(nl - msg) : strnlen(msg, LOG_LINE_MAX);
        /* In a worker the host decides what is shown, and how (isolate.c);
         * one fprintf per line: stdio locks the stream per call, so lines
         * from concurrent threads never interleave. */
        if (self->worker)
            fprintf(stderr, "%c%d%.*s\n", LOG_MARK, level,
                    (int)(n < LOG_LINE_MAX ? n : LOG_LINE_MAX), msg);
        else if (job)
            ad_tool_job_log(job, level, msg, n);
        else
            ad_tool_host_log(h, self->file, level, msg, n);
        msg = nl ? nl + 1 : NULL;
    } while (msg && *msg);
}

static const agentd_host_api host_api = {
    .abi_major = AGENTD_PLUGIN_ABI_MAJOR,
    .abi_minor = AGENTD_PLUGIN_ABI_MINOR,
    .size = sizeof(agentd_host_api),
    .register_tool = host_register_tool,
    .config_json = host_config_json,
    .result_write = host_result_write,
    .result_error = host_result_error,
    .log = host_log,
};

/* ---- invocation --------------------------------------------------------- */

/* Runs tool with args (NUL-terminated, args_len bytes); fills *out raw
 * (bounded: at most max bytes of output, then the marker). */
static int invoke(const ptool *tool, const char *args, size_t args_len, size_t max,
                  ad_tool_result *out)
{
    memset(out, 0, sizeof *out);
    agentd_result res;
    memset(&res, 0, sizeof res);
    res.max = max;
    int prc = tool->invoke(tool->tool_data, args, args_len, &res);
    bool is_error = res.is_error || prc != AGENTD_OK;
    int rc = 0;
    if (prc != AGENTD_OK && !res.has_msg)
        rc = ad_buf_printf(&res.buf, "%stool '%s' failed (code %d)", res.buf.len ? "\n" : "",
                           tool->name, prc);
    if (rc == 0 && res.cut)
        rc = ad_buf_printf(&res.buf, AD_TOOL_CUT_MARK, res.cut);
    if (rc != 0) {
        ad_buf_free(&res.buf);
        return AD_ENOMEM;
    }
    out->is_error = is_error;
    out->bounded = true;
    out->len = res.buf.len;
    out->content = ad_buf_steal(&res.buf);
    return out->content ? AD_OK : AD_ENOMEM;
}

static void set_text(ad_tool_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_text(ad_tool_result *r, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    memset(r, 0, sizeof *r);
    r->is_error = true;
    r->len = b.len;
    r->content = ad_buf_steal(&b);
}

static void run_call(ad_pool_call *pc)
{
    pcall *c = (pcall *)pc;
    current_job = pc->job;
    if (invoke(c->tool, pc->job->args, pc->job->args_len, c->max, &c->res) != AD_OK)
        set_text(&c->res, "agentd: out of memory running tool '%s'", c->tool->name);
    current_job = NULL;
}

static void chain_next(agentd_plugin *p);

/* Ends c's job with res (NULL: no content) and frees c. */
static void end_call(pcall *c, ad_tool_result *res)
{
    ad_tool_job *job = c->pc.job;
    free(c);
    ad_tool_job_done(job, res);
}

static void not_started(pcall *c)
{
    ad_tool_result r = {0};
    ad_buf b = AD_BUF_INIT;
    ad_pool_not_started(&b, c->tool->name);
    r.is_error = true;
    r.len = b.len;
    r.content = ad_buf_steal(&b);
    end_call(c, &r);
}

static void after_call(ad_pool_call *pc, int how)
{
    pcall *c = (pcall *)pc;
    agentd_plugin *p = c->p;
    p->running--;
    bool freed_chain = p->chain == c;
    if (freed_chain)
        p->chain = NULL;
    if (how == AD_POOL_RAN) {
        ad_tool_result r = c->res;
        end_call(c, &r);
    } else if (how == AD_POOL_NO_THREAD) {
        not_started(c);
    } else {
        end_call(c, NULL); /* taken off the queue: its result was decided */
    }
    if (freed_chain)
        chain_next(p);
}

/* Puts c on the pool, or ends its job at once when that cannot be. */
static void submit(pcall *c)
{
    agentd_plugin *p = c->p;
    c->pc.run = run_call;
    c->pc.after = after_call;
    int rc = ad_pool_queue(ad_tool_host_loop(p->base.host), &c->pc);
    if (rc == AD_ETOOBIG) {
        not_started(c);
        return;
    }
    if (rc != AD_OK) {
        ad_tool_result r;
        set_text(&r, "agentd: cannot start a worker for tool '%s'", c->tool->name);
        end_call(c, &r);
        return;
    }
    p->running++;
    if (c->serial)
        p->chain = c;
}

/* The chain is held by a call that was given up (why) and still runs (its
 * plugin is not thread-safe, so nothing of its kind may run beside it, and
 * waiting could be for ever): the calls waiting for it get an error result
 * instead. */
static void refuse_waiting(agentd_plugin *p, int why)
{
    while (p->wait_head) {
        pcall *w = p->wait_head;
        p->wait_head = w->next;
        if (p->wait_head == NULL)
            p->wait_tail = NULL;
        w->waiting = false;
        ad_tool_result r;
        set_text(&r,
                 "tool '%s' was not run: an earlier call of a tool that is not thread-safe %s and "
                 "is still running",
                 w->tool->name, why == AD_TOOL_STOP_CANCEL ? "was cancelled" : "timed out");
        end_call(w, &r);
    }
}

/* Calls of tools that are not thread-safe run one at a time, in order. */
static void chain_next(agentd_plugin *p)
{
    while (p->chain == NULL && p->wait_head) {
        pcall *w = p->wait_head;
        p->wait_head = w->next;
        if (p->wait_head == NULL)
            p->wait_tail = NULL;
        w->waiting = false;
        submit(w);
    }
}

/* ---- the provider ------------------------------------------------------- */

static size_t plugin_count(ad_tool_provider *bp)
{
    return ((agentd_plugin *)bp)->ntools;
}

static const ad_tool_desc *plugin_get(ad_tool_provider *bp, size_t i)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    return i < p->ntools ? &p->tools[i]->d : NULL;
}

static int plugin_start(ad_tool_provider *bp, ad_tool_job *job)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    const ptool *t = (const ptool *)job->tool;
    if (t->isolated)
        return p->iso->vt->start(p->iso, job);
    pcall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return AD_ENOMEM;
    c->p = p;
    c->tool = t;
    c->pc.job = job;
    c->max = ad_tool_host_result_max(p->base.host);
    c->serial = !(t->d.flags & AD_TOOL_THREADSAFE);
    job->pdata = c;
    if (c->serial && p->chain && p->chain->pc.gave_up) {
        /* Held by a call that was given up and still runs. */
        ad_tool_result r;
        set_text(&r,
                 "tool '%s' was not run: an earlier call of a tool that is not thread-safe %s and "
                 "is still running",
                 t->name, p->chain->pc.gave_up == AD_TOOL_STOP_CANCEL ? "was cancelled"
                                                                       : "timed out");
        end_call(c, &r);
        return AD_OK;
    }
    if (c->serial && p->chain) {
        c->waiting = true;
        if (p->wait_tail)
            p->wait_tail->next = c;
        else
            p->wait_head = c;
        p->wait_tail = c;
        return AD_OK;
    }
    submit(c);
    return AD_OK;
}

static bool plugin_cancel(ad_tool_provider *bp, ad_tool_job *job)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    const ptool *t = (const ptool *)job->tool;
    if (t->isolated)
        return p->iso->vt->cancel(p->iso, job);
    pcall *c = job->pdata;
    if (c->waiting) {
        pcall **pp = &p->wait_head, *prev = NULL;
        while (*pp && *pp != c) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = c->next;
        if (p->wait_tail == c)
            p->wait_tail = prev;
        end_call(c, NULL);
        return true;
    }
    if (ad_pool_stop(&c->pc, job->stop))
        return true; /* after_call follows and frees the chain */
    if (p->chain == c && c->pc.gave_up)
        refuse_waiting(p, c->pc.gave_up);
    return false;
}

static bool plugin_busy(ad_tool_provider *bp)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    return p->running > 0 || (p->iso && p->iso->vt->busy && p->iso->vt->busy(p->iso));
}

/* Calls every tool's destroy() and unloads the plugin. */
static void plugin_close(ad_tool_provider *bp)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    if (p == NULL)
        return;
    while (p->wait_head) {
        pcall *w = p->wait_head;
        p->wait_head = w->next;
        end_call(w, NULL);
    }
    p->wait_tail = NULL;
    if (p->iso && p->iso->vt->close)
        p->iso->vt->close(p->iso);
    for (size_t i = 0; i < p->ntools; i++) {
        if (p->tools[i]->destroy)
            p->tools[i]->destroy(p->tools[i]->tool_data);
        tool_free(p->tools[i]);
    }
    free(p->tools);
#if !AD_TOOLS_ASAN
    if (p->handle)
        dlclose(p->handle);
#endif
    free(p->file);
    free(p->path);
    free(p->config);
    free(p);
}

static const ad_tool_provider_vt plugin_vt = {
    .kind = "plugin",
    .count = plugin_count,
    .get = plugin_get,
    .start = plugin_start,
    .cancel = plugin_cancel,
    .busy = plugin_busy,
    .close = plugin_close,
};

bool ad_plugin_in_process(const ad_tool_provider *p)
{
    return p && p->vt == &plugin_vt && ((const agentd_plugin *)p)->handle != NULL;
}

/* ---- loading ------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A new plugin record for path (not loaded yet); NULL with err set on
 * ENOMEM. */
static agentd_plugin *plugin_new(ad_tool_host *h, const char *path, const char *config_json,
                                 char *err, size_t errlen)
{
    const char *file = base_name(path);
    agentd_plugin *p = calloc(1, sizeof *p);
    char *abs = realpath(path, NULL);
    if (p == NULL || (p->file = ad_strdup(file)) == NULL ||
        (p->path = abs ? abs : ad_strdup(path)) == NULL ||
        (config_json && (p->config = ad_strdup(config_json)) == NULL)) {
        if (p == NULL || p->path != abs)
            free(abs);
        if (p)
            plugin_close(&p->base);
        ad_errf(err, errlen, "plugin %s: out of memory", file);
        return NULL;
    }
    p->base.vt = &plugin_vt;
    p->base.origin = p->file;
    p->base.host = h;
    return p;
}

/* dlopen()s the plugin of record p and runs its init. Returns 0, or a
 * negative AD_E* with err set. */
static int plugin_load(agentd_plugin *p, const char *path, char *err, size_t errlen)
{
    const char *file = p->file;
    /* Without a slash dlopen() would search the library path instead. */
    char *local = NULL;
    if (strchr(path, '/') == NULL) {
        size_t n = strlen(path);
        local = malloc(n + 3);
        if (local == NULL) {
            ad_errf(err, errlen, "plugin %s: out of memory", file);
            return AD_ENOMEM;
        }
        memcpy(local, "./", 2);
        memcpy(local + 2, path, n + 1);
    }
    (void)dlerror();
    p->handle = dlopen(local ? local : path, RTLD_NOW | RTLD_LOCAL);
    free(local);
    if (p->handle == NULL) {
        const char *e = dlerror();
        ad_errf(err, errlen, "plugin %s: cannot load: %s", file, e ? e : "unknown dlopen error");
        return AD_ERR;
    }
    /* POSIX guarantees a dlsym() object pointer converts to a function pointer. */
    union {
        void *obj;
        agentd_plugin_init_fn fn;
    } init;
    (void)dlerror();
    init.obj = dlsym(p->handle, AGENTD_PLUGIN_INIT_SYMBOL);
    if (init.obj == NULL) {
        ad_errf(err, errlen, "plugin %s: not an agentd plugin (missing %s)", file,
                AGENTD_PLUGIN_INIT_SYMBOL);
        return AD_ERR;
    }

    char perr[512];
    memset(perr, 0, sizeof perr);
    p->loading = 1;
    int rc = init.fn(&host_api, p, perr, sizeof perr);
    p->loading = 0;
    perr[sizeof perr - 1] = '\0';

    if (p->reg_err[0]) {
        ad_errf(err, errlen, "plugin %s: %s", file, p->reg_err);
        return AD_EINVAL;
    }
    if (rc != AGENTD_OK) {
        if (perr[0])
            ad_errf(err, errlen, "plugin %s: init failed: %s", file, perr);
        else
            ad_errf(err, errlen, "plugin %s: init failed (code %d%s) and gave no reason", file, rc,
                    rc == AGENTD_EABI     ? ", AGENTD_EABI: built for another ABI"
                    : rc == AGENTD_ENOMEM ? ", AGENTD_ENOMEM"
                    : rc == AGENTD_EINVAL ? ", AGENTD_EINVAL"
                                          : "");
        return AD_ERR;
    }
    if (p->ntools == 0) {
        ad_errf(err, errlen, "plugin %s: registers no tools", file);
        return AD_EINVAL;
    }
    return AD_OK;
}

static int proxy_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data, (void)args, (void)len;
    host_result_error(out, "this tool's plugin is not loaded into agentd: its calls run only in "
                           "worker processes (isolation = \"process\")");
    return AGENTD_ERR;
}

/*
 * A plugin described by a worker (isolate.c): {"tools":[{"name",
 * "description","parameters","flags"}]}. When every tool it names is
 * isolated, the host registers them from that text through register_tool()
 * itself (the same checks as for a loaded plugin) and never dlopen()s the
 * plugin. Returns 0 when registered (*out set), 1 when it must be loaded
 * into this process (one of its tools is not isolated), or a negative AD_E*
 * with err set.
 */
static int load_described(ad_tool_host *h, const char *path, const char *config_json,
                          const ad_plugin_opts *o, agentd_plugin **out, char *err, size_t errlen)
{
    json_object *desc = NULL, *list = NULL;
    int rc = ad_isolate_describe(o->isolate, h, path, config_json, &desc, err, errlen);
    if (rc != AD_OK)
        return rc;
    const char *file = base_name(path);
    if (!json_object_object_get_ex(desc, "tools", &list) ||
        !json_object_is_type(list, json_type_array)) {
        json_object_put(desc);
        ad_errf(err, errlen, "plugin %s: a worker process sent a malformed description of it",
                file);
        return AD_ERR;
    }
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *name = NULL;
        json_object_object_get_ex(json_object_array_get_idx(list, i), "name", &name);
        if (!json_object_is_type(name, json_type_string) ||
            !o->isolated(o->isolated_ud, json_object_get_string(name))) {
            json_object_put(desc);
            return 1;
        }
    }
    agentd_plugin *p = plugin_new(h, path, config_json, err, errlen);
    if (p == NULL) {
        json_object_put(desc);
        return AD_ENOMEM;
    }
    p->loading = 1;
    for (size_t i = 0; i < n && !p->reg_err[0]; i++) {
        json_object *e = json_object_array_get_idx(list, i), *v;
        agentd_tool d = {.size = sizeof d, .invoke = proxy_invoke};
        if (json_object_object_get_ex(e, "name", &v))
            d.name = json_object_get_string(v);
        if (json_object_object_get_ex(e, "description", &v) &&
            json_object_is_type(v, json_type_string))
            d.description = json_object_get_string(v);
        if (json_object_object_get_ex(e, "parameters", &v) && v)
            d.parameters = json_object_to_json_string_ext(
                v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (json_object_object_get_ex(e, "flags", &v) && json_object_is_type(v, json_type_int))
            d.flags = (uint32_t)json_object_get_int64(v);
        host_register_tool(p, &d);
    }
    p->loading = 0;
    json_object_put(desc);
    if (p->reg_err[0] || p->ntools == 0) {
        if (p->reg_err[0])
            ad_errf(err, errlen, "plugin %s: %s", file, p->reg_err);
        else
            ad_errf(err, errlen, "plugin %s: registers no tools", file);
        plugin_close(&p->base);
        return AD_EINVAL;
    }
    *out = p;
    return AD_OK;
}

int ad_plugin_load_file(ad_tool_host *h, const char *path, const char *config_json,
                        const ad_plugin_opts *o, char *err, size_t errlen)
{
    static const ad_plugin_opts none = {0};
    if (o == NULL)
        o = &none;
    agentd_plugin *p = NULL;
    if (o->isolated) {
        int drc = load_described(h, path, config_json, o, &p, err, errlen);
        if (drc < 0)
            return drc;
    }
    if (p == NULL) {
        p = plugin_new(h, path, config_json, err, errlen);
        if (p == NULL)
            return AD_ENOMEM;
        int rc = plugin_load(p, path, err, errlen);
        if (rc != AD_OK) {
            plugin_close(&p->base);
            return rc;
        }
    }
    bool any = false;
    for (size_t i = 0; i < p->ntools; i++) {
        p->tools[i]->isolated =
            p->handle == NULL || (o->isolated && o->isolated(o->isolated_ud, p->tools[i]->name));
        any |= p->tools[i]->isolated;
    }
    if (any && (p->iso = ad_isolate_new(o->isolate, p->path, p->config)) == NULL) {
        ad_errf(err, errlen, "plugin %s: out of memory", p->file);
        plugin_close(&p->base);
        return AD_ENOMEM;
    }
    if (p->iso)
        p->iso->host = h; /* it runs calls for p: the same host */
    char herr[512];
    int rc = ad_tool_host_add(h, &p->base, herr, sizeof herr);
    if (rc != AD_OK) {
        ad_errf(err, errlen, "plugin %s: %s", base_name(path), herr);
        return rc; /* the host closed it */
    }
    return AD_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ad_plugin_load_dir(ad_tool_host *h, const char *dir, const ad_plugin_opts *o, char *err,
                       size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        ad_errf(err, errlen, "plugin directory %s: %s", dir, strerror(errno));
        return AD_ERR;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = AD_OK;
    ad_buf path = AD_BUF_INIT;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 3 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        ad_buf_reset(&path);
        struct stat st;
        if (ad_buf_printf(&path, "%s/%s", dir, de->d_name) != 0) {
            rc = AD_ENOMEM;
            break;
        }
        /* stat, not lstat: a symlink to a plugin is a plugin. */
        if (stat(path.data, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(names, cap * sizeof *v);
            if (v == NULL) {
                rc = AD_ENOMEM;
                break;
            }
            names = v;
        }
        if ((names[n] = ad_strdup(de->d_name)) == NULL) {
            rc = AD_ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc != AD_OK)
        ad_errf(err, errlen, "plugin directory %s: out of memory", dir);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);

    for (size_t i = 0; rc == AD_OK && i < n; i++) {
        ad_buf_reset(&path);
        if (ad_buf_printf(&path, "%s/%s", dir, names[i]) != 0) {
            ad_errf(err, errlen, "plugin %s: out of memory", names[i]);
            rc = AD_ENOMEM;
            break;
        }
        const char *config = NULL;
        if (o && o->config) {
            char *stem = ad_strndup(names[i], strlen(names[i]) - 3);
            if (stem == NULL) {
                ad_errf(err, errlen, "plugin %s: out of memory", names[i]);
                rc = AD_ENOMEM;
                break;
            }
            config = o->config(o->config_ud, stem);
            free(stem);
        }
        rc = ad_plugin_load_file(h, path.data, config, o, err, errlen);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    ad_buf_free(&path);
    return rc;
}

/* ---- worker processes --------------------------------------------------- */

agentd_plugin *ad_plugin_open_worker(const char *path, const char *config_json, char *err,
                                     size_t errlen)
{
    agentd_plugin *p = plugin_new(NULL, path, config_json, err, errlen);
    if (p == NULL)
        return NULL;
    p->worker = true;
    if (plugin_load(p, path, err, errlen) != AD_OK) {
        plugin_close(&p->base);
        return NULL;
    }
    return p;
}

size_t ad_plugin_tool_count(const agentd_plugin *p)
{
    return p ? p->ntools : 0;
}

const ad_tool_desc *ad_plugin_tool_at(const agentd_plugin *p, size_t i)
{
    return p && i < p->ntools ? &p->tools[i]->d : NULL;
}

int ad_plugin_invoke(agentd_plugin *p, const char *name, const char *args, size_t args_len,
                     size_t max, ad_tool_result *out)
{
    const ptool *t = find_tool(p, name);
    if (t == NULL) {
        set_text(out, "tool '%s' cannot run isolated: its plugin did not register it in the "
                      "worker process", name);
        return out->content ? AD_OK : AD_ENOMEM;
    }
    char *copy = ad_strndup(args, args_len);
    if (copy == NULL)
        return AD_ENOMEM;
    int rc = invoke(t, copy, args_len, max, out);
    free(copy);
    return rc;
}

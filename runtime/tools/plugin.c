/*
 * plugin.c -- the .so plugin provider (see plugin.h).
 *
 * Load phase (the loop thread, at startup): ad_plugin_load_dir() lists the
 * regular "*.so" files of a folder, sorts them with strcmp and hands each to
 * ad_plugin_load_file(). With modes (ad_plugin_opts.mode) the plugin's tools
 * are first known from a description: the tool cache's entry when the
 * file's identity and config are unchanged, else a describing worker's
 * report, which is then cached. When a tool runs in process, the plugin is
 * dlopen()ed (RTLD_NOW so missing symbols fail here, RTLD_LOCAL so plugins
 * cannot collide), agentd_plugin_init_v1 is looked up and called with the
 * host table below. While init runs, the plugin record is "open":
 * register_tool() validates and deep-copies each tool and config_json()
 * hands out the borrowed config text. When init returns, the record is
 * closed for good; a late register_tool() is refused. A described plugin
 * is registered through the same register_tool() and never dlopen()ed.
 *
 * Calls (agentd_call): one struct per call, shared by every place a call
 * runs (the pool here, a persistent worker's threads, a per-call worker).
 * It owns copies of the ids and the argument text, the parsed arguments
 * (read through the value functions), the result sink and the deadline.
 * Its state moves NEW -> RUNNING -> ENDED, or RUNNING -> PENDING -> ENDED
 * when call() returned AGENTD_PENDING and complete() came later; complete()
 * from another thread before call() returned is EARLY and ends the call
 * when call() returns. The thread that ends a call builds its result and
 * calls hooks->done. References: the creator's, and the run's (dropped
 * after done).
 *
 * In-process calls: start() gets a job whose arguments the host has
 * checked; it keeps the host's parsed arguments (a reference taken on the
 * loop thread) and queues the call on libuv's pool (pool.h). A call that
 * ends on its pool thread is delivered by the pool's after_work; one that
 * completes later from another thread, and progress reports from any
 * thread, go through the plugin's queue and async handle to the loop.
 * Calls of isolated tools go to the plugin's worker provider (worker.h) or
 * isolation provider (isolate.h).
 *
 * The serial chain: in-process calls of a tool without
 * AGENTD_TOOL_THREADSAFE run one at a time per plugin, in arrival order,
 * across every conversation and batch of the host (`chain` runs, `wait_*`
 * wait). A chain call given up while it runs (timed out, cancelled) holds
 * the chain for as long as the plugin does not return, which may be for
 * ever: the waiting calls, and those that come later, are answered at once
 * that an earlier call holds it.
 *
 * Invariants:
 * - After loading, a plugin's tool list is read-only: other threads read
 *   it, nothing writes it. Arguments and config trees are only read once
 *   built (nothing serialises them again, which would write into them).
 * - The host owns a tool's tool_data lifetime once register_tool() accepted
 *   it: destroy() runs exactly once, when the provider closes (also when
 *   the plugin's init fails after registering it).
 * - A plugin runs code in this process exactly while `running` > 0 (calls
 *   queued or running on the pool) or `pending` > 0 (calls that will
 *   complete later); busy() reports it, and a busy plugin is never closed.
 * - Under AddressSanitizer plugins are never dlclose()d, so leak reports keep
 *   symbolised frames.
 */
#include "tools/plugin.h"

#include "base/buf.h"
#include "base/text.h"
#include "core/schema.h"
#include "tools/pool.h"
#include "tools/tcache.h"
#include "tools/worker.h"

#include <agentd/plugin.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
/* A per-call worker's log() line on its stderr: LOG_MARK, the level digit,
 * the text (isolate.c reads it back). */
#define LOG_MARK '\x1e'
#define RESULT_MAX_DEFAULT ((size_t)1 << 20)

/* The v1 layout ends with destroy, and so does the 1.1 agentd_call_tool. */
#define AD_TOOL_V1_SIZE (offsetof(agentd_tool, destroy) + sizeof(((agentd_tool *)0)->destroy))
#define AD_CALL_TOOL_SIZE                                                                          \
    (offsetof(agentd_call_tool, destroy) + sizeof(((agentd_call_tool *)0)->destroy))

typedef struct ptool {
    ad_tool_desc d; /* first: what the host lists */
    char *name;
    char *description;
    json_object *parameters;
    agentd_invoke_fn invoke;
    agentd_call_fn call; /* 1.1; preferred */
    agentd_cancel_fn cancel;
    void *tool_data;
    void (*destroy)(void *);
    int mode; /* AD_TOOL_*: where its calls run */
} ptool;

typedef struct pcall pcall;
typedef struct inproc inproc;

struct agentd_plugin {
    ad_tool_provider base; /* first: the provider */
    char *file;            /* base name, e.g. "add.so" */
    char *path;            /* absolute path, for worker processes */
    char *config;          /* owned copy of its config JSON, or NULL */
    json_object *config_obj; /* the same, parsed (1.1 config()), or NULL */
    void *handle;          /* dlopen handle; NULL: described, not loaded */
    bool worker;           /* in a worker process */
    ad_plugin_log_fn wlog; /* a worker's lines outside calls; NULL: framed on stderr */
    void *wlog_ud;
    const char *source;    /* "loaded", "cache", "described" */
    char *cache_dir;       /* the tool cache's folder, or NULL */
    int loading;           /* register_tool()/config_json() allowed */
    char reg_err[256];     /* first register_tool() refusal, reported by the loader */
    ptool **tools;
    size_t ntools, cap;
    void *data; /* 1.1 set_plugin_data() */
    void (*data_destroy)(void *);
    ad_tool_provider *iso; /* runs the per-call tools' calls; NULL when none is */
    ad_tool_provider *wrk; /* runs the worker tools' calls; NULL when none is */
    atomic_size_t pending_calls; /* calls of any kind that returned PENDING, not completed */
    /* In-process calls (loop thread). */
    size_t running; /* pool calls queued or running (after() not yet called) */
    size_t pending; /* pool calls that returned PENDING and have not completed */
    pcall *chain;   /* the non-thread-safe call on the pool, or NULL */
    pcall *wait_head, *wait_tail; /* non-thread-safe calls waiting for the chain */
    inproc *ip;     /* completions and progress from other threads; made on first use */
};

struct agentd_result {
    ad_buf buf;
    size_t max;  /* bytes kept (the host's result_max) */
    size_t cut;  /* bytes dropped beyond max */
    int is_error;
    int has_msg; /* result_error() was called with a message */
    agentd_call *call;
};

enum { CALL_NEW, CALL_RUNNING, CALL_EARLY, CALL_PENDING, CALL_ENDED };

struct agentd_call {
    agentd_plugin *p;
    const ptool *tool;
    char *call_id, *conv_id;
    char *args;
    size_t args_len;
    json_object *args_obj;
    double timeout_s;
    uint64_t deadline_ns; /* CLOCK_MONOTONIC; 0: none */
    _Atomic int state;
    _Atomic int early_rc; /* complete()'s rc while call() still ran */
    atomic_bool cancelled;
    atomic_bool cancel_called;
    _Atomic int refs;
    agentd_result res;
    ad_call_hooks hooks;
    void *ud;
};

static const ad_tool_provider_vt plugin_vt;
static const agentd_host_api host_api;

/* The call this thread runs: a plugin's log() lines made now are that
 * call's (log() gives no call context). */
static _Thread_local agentd_call *current_call;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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

/* What either kind of registration hands over, read into the host's own
 * layout. */
typedef struct reg {
    const char *name, *description, *parameters;
    uint32_t flags;
    agentd_invoke_fn invoke;
    agentd_call_fn call;
    agentd_cancel_fn cancel;
    void *tool_data;
    void (*destroy)(void *);
    const char *fn; /* the function it must have: "invoke" or "call" */
} reg;

static int register_common(agentd_plugin *self, const reg *d)
{
    if (d->name == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool without a name");
    if (!valid_name(d->name))
        return reg_fail(self, AGENTD_EINVAL,
                        "invalid tool name '%.80s' (expected [A-Za-z0-9_-]{1,64})", d->name);
    if (d->invoke == NULL && d->call == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s' has no %s function", d->name, d->fn);
    if (d->parameters == NULL)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s' has no parameters schema", d->name);
    const ad_tool_desc *other = self->base.host ? ad_tool_host_find(self->base.host, d->name) : NULL;
    if (other != NULL || find_tool(self, d->name))
        return reg_fail(self, AGENTD_EINVAL, "duplicate tool name '%s' (already registered by %s)",
                        d->name, other ? other->origin : self->file);

    char why[200];
    json_object *params = NULL;
    if (ad_tool_parse_json(d->parameters, strlen(d->parameters), &params, why, sizeof why) != 0)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': parameters are not valid JSON (%s)",
                        d->name, why);
    if (ad_schema_check(params, why, sizeof why) != 0) {
        json_object_put(params);
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': %s", d->name, why);
    }

    ptool *t = calloc(1, sizeof *t);
    if (t == NULL || (t->name = ad_strdup(d->name)) == NULL ||
        (t->description = ad_strdup(d->description ? d->description : "")) == NULL)
        goto nomem;
    t->parameters = params;
    params = NULL;
    t->invoke = d->invoke;
    t->call = d->call;
    t->cancel = d->cancel;
    t->tool_data = d->tool_data;
    t->destroy = d->destroy;
    t->d.name = t->name;
    t->d.description = t->description;
    t->d.parameters = t->parameters;
    t->d.flags = (d->flags & AGENTD_TOOL_THREADSAFE ? AD_TOOL_THREADSAFE : 0) |
                 (d->flags & AGENTD_TOOL_IDEMPOTENT ? AD_TOOL_IDEMPOTENT : 0);
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
    reg r = {d.name, d.description, d.parameters, d.flags, d.invoke, NULL, NULL, d.tool_data,
             d.destroy, "invoke"};
    return register_common(self, &r);
}

static int host_register_call_tool(agentd_plugin *self, const agentd_call_tool *tool)
{
    if (self == NULL)
        return AGENTD_EINVAL;
    if (!self->loading) {
        host_log(self, AGENTD_LOG_ERROR,
                 "register_call_tool() called outside agentd_plugin_init_v1()");
        return AGENTD_ERR;
    }
    if (tool == NULL)
        return reg_fail(self, AGENTD_EINVAL, "register_call_tool() called with NULL");
    if (tool->size < AD_CALL_TOOL_SIZE)
        return reg_fail(self, AGENTD_EABI,
                        "agentd_call_tool.size is %zu, expected at least %zu; set .size = "
                        "sizeof(agentd_call_tool) and rebuild against this agentd's plugin.h",
                        tool->size, (size_t)AD_CALL_TOOL_SIZE);
    agentd_call_tool d;
    memset(&d, 0, sizeof d);
    memcpy(&d, tool, tool->size < sizeof d ? tool->size : sizeof d);
    reg r = {d.name, d.description, d.parameters, d.flags, NULL, d.call, d.cancel, d.tool_data,
             d.destroy, "call"};
    return register_common(self, &r);
}

static const char *host_config_json(agentd_plugin *self)
{
    return self != NULL && self->loading ? self->config : NULL;
}

static bool call_ended(const agentd_call *c)
{
    return c && atomic_load(&c->state) == CALL_ENDED;
}

static int host_result_write(agentd_result *out, const char *data, size_t len)
{
    if (out == NULL || (data == NULL && len > 0) || call_ended(out->call))
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
    if (out == NULL || call_ended(out->call))
        return AGENTD_EINVAL;
    out->is_error = 1;
    if (msg == NULL || *msg == '\0')
        return AGENTD_OK;
    out->has_msg = 1;
    return host_result_write(out, msg, strlen(msg));
}

/* One line of a plugin's log, to where it belongs: the call c (NULL:
 * none), a per-call worker's host, a persistent worker's hook, or the
 * host. */
static void log_line(agentd_plugin *self, agentd_call *c, int level, const char *msg, size_t n)
{
    if (c && c->hooks.log) {
        c->hooks.log(c->ud, level, msg, n);
    } else if (self->worker && self->wlog) {
        self->wlog(self->wlog_ud, level, msg, n);
    } else if (self->worker) {
        /* A per-call worker: the host decides what is shown, and how
         * (isolate.c); one fprintf per line: stdio locks the stream per
         * call, so lines from concurrent threads never interleave. */
        fprintf(stderr, "%c%d%.*s\n", LOG_MARK, level, (int)(n < LOG_LINE_MAX ? n : LOG_LINE_MAX),
                msg);
    } else if (self->base.host) {
        ad_tool_host_log(self->base.host, self->file, level, msg, n);
    }
}

static void log_lines(agentd_plugin *self, agentd_call *c, int level, const char *msg)
{
    if (msg == NULL || self == NULL)
        return;
    level = level < AGENTD_LOG_ERROR ? AGENTD_LOG_ERROR
            : level > AGENTD_LOG_DEBUG ? AGENTD_LOG_DEBUG
                                       : level;
    do {
        const char *nl = strchr(msg, '\n');
        size_t n = nl ? (size_t)(nl - msg) : strnlen(msg, LOG_LINE_MAX);
        log_line(self, c, level, msg, n);
        msg = nl ? nl + 1 : NULL;
    } while (msg && *msg);
}

static void host_log(agentd_plugin *self, int level, const char *msg)
{
    agentd_call *c = current_call;
    log_lines(self, c && c->p == self && !call_ended(c) ? c : NULL, level, msg);
}

/* ---- 1.1: the plugin, a call's context ---------------------------------- */

/* JSON null as a value (json-c represents null as a NULL object). */
static const char null_value;
/* Marks an integer json-c clamped to INT64_MIN from a literal below it. */
static const char clamped_mark;

#define AS_VALUE(o) ((const agentd_value *)(const void *)(o))

static const agentd_value *wrap(json_object *o)
{
    return o ? AS_VALUE(o) : AS_VALUE(&null_value);
}

static json_object *unwrap(const agentd_value *v)
{
    return v == NULL || (const void *)v == (const void *)&null_value ? NULL
                                                                     : (json_object *)(void *)v;
}

static const agentd_value *host_config(agentd_plugin *self)
{
    return self && self->config_obj ? AS_VALUE(self->config_obj) : NULL;
}

static void host_set_plugin_data(agentd_plugin *self, void *data, void (*destroy)(void *))
{
    if (self == NULL)
        return;
    self->data = data;
    self->data_destroy = destroy;
}

static void *host_plugin_data(agentd_plugin *self)
{
    return self ? self->data : NULL;
}

static agentd_plugin *host_call_plugin(agentd_call *c)
{
    return c ? c->p : NULL;
}

static const char *host_call_id(agentd_call *c)
{
    return c ? c->call_id : "";
}

static const char *host_conversation_id(agentd_call *c)
{
    return c ? c->conv_id : "";
}

static const agentd_value *host_args(agentd_call *c)
{
    return c && c->args_obj ? AS_VALUE(c->args_obj) : NULL;
}

static const agentd_value *host_arg(agentd_call *c, const char *name)
{
    json_object *v = NULL;
    if (c == NULL || name == NULL || !json_object_is_type(c->args_obj, json_type_object) ||
        !json_object_object_get_ex(c->args_obj, name, &v))
        return NULL;
    return wrap(v);
}

static const char *host_args_json(agentd_call *c, size_t *len)
{
    if (len)
        *len = c ? c->args_len : 0;
    return c ? c->args : "";
}

static agentd_result *host_result(agentd_call *c)
{
    return c ? &c->res : NULL;
}

static int64_t host_deadline_ms(agentd_call *c)
{
    if (c == NULL || c->deadline_ns == 0)
        return -1;
    uint64_t now = mono_ns();
    return now >= c->deadline_ns ? 0 : (int64_t)((c->deadline_ns - now) / 1000000u);
}

static int host_cancelled(agentd_call *c)
{
    return c && atomic_load(&c->cancelled) ? 1 : 0;
}

static int host_progress(agentd_call *c, double done, double total, const char *msg)
{
    if (c == NULL || call_ended(c) || !isfinite(done))
        return AGENTD_EINVAL;
    if (c->hooks.progress)
        c->hooks.progress(c->ud, done, isfinite(total) ? total : 0, msg);
    return AGENTD_OK;
}

static void host_call_log(agentd_call *c, int level, const char *msg)
{
    if (c && !call_ended(c))
        log_lines(c->p, c, level, msg);
}

static void finish_call(agentd_call *c, int rc);

static int host_complete(agentd_call *c, int rc)
{
    if (c == NULL)
        return AGENTD_EINVAL;
    for (;;) {
        int st = CALL_PENDING;
        if (atomic_compare_exchange_strong(&c->state, &st, CALL_ENDED)) {
            atomic_fetch_sub(&c->p->pending_calls, 1);
            finish_call(c, rc);
            return AGENTD_OK;
        }
        if (st != CALL_RUNNING)
            return AGENTD_EINVAL; /* not pending, or completed already */
        /* call() still runs (another thread completes it first): it ends
         * the call with this rc when it returns AGENTD_PENDING. */
        atomic_store(&c->early_rc, rc);
        st = CALL_RUNNING;
        if (atomic_compare_exchange_strong(&c->state, &st, CALL_EARLY))
            return AGENTD_OK;
    }
}

/* ---- 1.1: values --------------------------------------------------------- */

static int host_value_type(const agentd_value *v)
{
    if (v == NULL)
        return AGENTD_VALUE_NONE;
    json_object *o = unwrap(v);
    switch (json_object_get_type(o)) {
    case json_type_null: return AGENTD_VALUE_NULL;
    case json_type_boolean: return AGENTD_VALUE_BOOL;
    case json_type_int: return AGENTD_VALUE_INT;
    case json_type_double: return AGENTD_VALUE_DOUBLE;
    case json_type_string: return AGENTD_VALUE_STRING;
    case json_type_array: return AGENTD_VALUE_ARRAY;
    case json_type_object: return AGENTD_VALUE_OBJECT;
    }
    return AGENTD_VALUE_NONE;
}

/* The integer the JSON number text s denotes, exactly: AGENTD_OK,
 * AGENTD_ERANGE beyond int64, AGENTD_EINVAL when it is not whole (or not a
 * number). 12345678901234567890e-1 is 1234567890123456789. */
static int exact_int(const char *s, int64_t *out)
{
    enum { MAXD = 1024 };
    char d[MAXD];
    size_t n = 0;
    long frac = 0;
    bool neg = *s == '-', point = false, any = false;
    if (neg)
        s++;
    for (; (*s >= '0' && *s <= '9') || *s == '.'; s++) {
        if (*s == '.') {
            if (point)
                return AGENTD_EINVAL;
            point = true;
            continue;
        }
        any = true;
        if (point)
            frac++;
        if (n == 0 && *s == '0')
            continue; /* a leading zero */
        if (n == MAXD)
            return AGENTD_ERANGE;
        d[n++] = *s;
    }
    if (!any)
        return AGENTD_EINVAL;
    long e = 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        bool eneg = *s == '-';
        if (*s == '-' || *s == '+')
            s++;
        if (*s < '0' || *s > '9')
            return AGENTD_EINVAL;
        for (; *s >= '0' && *s <= '9'; s++)
            if (e < 100000)
                e = e * 10 + (*s - '0');
        if (eneg)
            e = -e;
    }
    if (*s != '\0')
        return AGENTD_EINVAL;
    e -= frac;
    while (n > 0 && d[n - 1] == '0') {
        n--;
        e++;
    }
    if (n == 0) {
        if (out)
            *out = 0;
        return AGENTD_OK;
    }
    if (e < 0)
        return AGENTD_EINVAL;
    if ((long)n + e > 19)
        return AGENTD_ERANGE;
    uint64_t v = 0;
    for (size_t i = 0; i < n + (size_t)e; i++) {
        unsigned digit = i < n ? (unsigned)(d[i] - '0') : 0;
        if (v > (UINT64_MAX - digit) / 10)
            return AGENTD_ERANGE;
        v = v * 10 + digit;
    }
    if (v > (uint64_t)INT64_MAX + (neg ? 1u : 0u))
        return AGENTD_ERANGE;
    if (out)
        *out = neg ? (v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return AGENTD_OK;
}

static int host_value_int64(const agentd_value *v, int64_t *out)
{
    json_object *o = unwrap(v);
    if (json_object_is_type(o, json_type_int)) {
        /* json-c keeps integers above INT64_MAX as uint64 (and clamps at
         * UINT64_MAX); below INT64_MIN it clamps, which parse marked. */
        if (json_object_get_userdata(o) == (void *)&clamped_mark)
            return AGENTD_ERANGE;
        int64_t i = json_object_get_int64(o);
        if (i == INT64_MAX && json_object_get_uint64(o) > (uint64_t)INT64_MAX)
            return AGENTD_ERANGE;
        if (out)
            *out = i;
        return AGENTD_OK;
    }
    if (json_object_is_type(o, json_type_double)) {
        /* json-c keeps the text of a number it read as a double: the
         * integer it denotes is read from there, exactly. */
        const char *text = json_object_get_userdata(o);
        if (text)
            return exact_int(text, out);
        double d = json_object_get_double(o);
        if (!isfinite(d) || d != floor(d))
            return AGENTD_EINVAL;
        /* Beyond 2^53 a double no longer says which integer was meant. */
        if (fabs(d) > 9007199254740992.0)
            return AGENTD_ERANGE;
        if (out)
            *out = (int64_t)d;
        return AGENTD_OK;
    }
    return AGENTD_EINVAL;
}

static int host_value_double(const agentd_value *v, double *out)
{
    json_object *o = unwrap(v);
    if (!json_object_is_type(o, json_type_int) && !json_object_is_type(o, json_type_double))
        return AGENTD_EINVAL;
    if (out)
        *out = json_object_is_type(o, json_type_int) &&
                       json_object_get_int64(o) == INT64_MAX
                   ? (double)json_object_get_uint64(o)
                   : json_object_get_double(o);
    return AGENTD_OK;
}

static int host_value_bool(const agentd_value *v, int *out)
{
    json_object *o = unwrap(v);
    if (!json_object_is_type(o, json_type_boolean))
        return AGENTD_EINVAL;
    if (out)
        *out = json_object_get_boolean(o) ? 1 : 0;
    return AGENTD_OK;
}

static const char *host_value_string(const agentd_value *v, size_t *len)
{
    json_object *o = unwrap(v);
    if (!json_object_is_type(o, json_type_string)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)json_object_get_string_len(o);
    return json_object_get_string(o);
}

static size_t host_value_len(const agentd_value *v)
{
    json_object *o = unwrap(v);
    if (json_object_is_type(o, json_type_array))
        return json_object_array_length(o);
    if (json_object_is_type(o, json_type_object))
        return (size_t)json_object_object_length(o);
    return 0;
}

static const agentd_value *host_value_at(const agentd_value *v, size_t i)
{
    json_object *o = unwrap(v);
    if (!json_object_is_type(o, json_type_array) || i >= json_object_array_length(o))
        return NULL;
    return wrap(json_object_array_get_idx(o, i));
}

static const agentd_value *host_value_get(const agentd_value *v, const char *key)
{
    json_object *o = unwrap(v), *m = NULL;
    if (key == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, key, &m))
        return NULL;
    return wrap(m);
}

static const agentd_value *host_value_next(const agentd_value *v, void **iter, const char **key)
{
    json_object *o = unwrap(v);
    if (iter == NULL || !json_object_is_type(o, json_type_object))
        return NULL;
    struct lh_entry *e = *iter ? ((struct lh_entry *)*iter)->next
                               : json_object_get_object(o)->head;
    *iter = e;
    if (e == NULL)
        return NULL;
    if (key)
        *key = (const char *)lh_entry_k(e);
    return wrap((json_object *)lh_entry_v(e));
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
    .register_call_tool = host_register_call_tool,
    .config = host_config,
    .set_plugin_data = host_set_plugin_data,
    .plugin_data = host_plugin_data,
    .call_plugin = host_call_plugin,
    .call_id = host_call_id,
    .conversation_id = host_conversation_id,
    .args = host_args,
    .arg = host_arg,
    .args_json = host_args_json,
    .result = host_result,
    .deadline_ms = host_deadline_ms,
    .cancelled = host_cancelled,
    .progress = host_progress,
    .call_log = host_call_log,
    .complete = host_complete,
    .value_type = host_value_type,
    .value_int64 = host_value_int64,
    .value_double = host_value_double,
    .value_bool = host_value_bool,
    .value_string = host_value_string,
    .value_len = host_value_len,
    .value_at = host_value_at,
    .value_get = host_value_get,
    .value_next = host_value_next,
};

/* ---- calls --------------------------------------------------------------- */

/* json-c clamps an integer literal below INT64_MIN to INT64_MIN: when the
 * text has such a literal, every INT64_MIN in the tree is marked inexact
 * (value_int64 then says ERANGE). Strings count too: rare, and erring on
 * the side of ERANGE. */
static bool has_negative_overflow(const char *s, size_t n)
{
    static const char min[] = "9223372036854775808";
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '-' || s[i + 1] < '0' || s[i + 1] > '9')
            continue;
        size_t k = i + 1;
        while (k < n && s[k] >= '0' && s[k] <= '9')
            k++;
        size_t digits = k - (i + 1);
        bool frac = k < n && (s[k] == '.' || s[k] == 'e' || s[k] == 'E');
        if (!frac && (digits > 19 || (digits == 19 && memcmp(s + i + 1, min, 19) > 0)))
            return true;
        i = k - 1;
    }
    return false;
}

static void mark_clamped(json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_int:
        if (json_object_get_int64(o) == INT64_MIN)
            json_object_set_userdata(o, (void *)&clamped_mark, NULL);
        break;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            mark_clamped(json_object_array_get_idx(o, i));
        break;
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            mark_clamped(v);
        }
        break;
    }
    default: break;
    }
}

static void call_unref(agentd_call *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->hooks.release)
        c->hooks.release(c->ud);
    json_object_put(c->args_obj);
    ad_buf_free(&c->res.buf);
    free(c->call_id);
    free(c->conv_id);
    free(c->args);
    free(c);
}

agentd_call *ad_plugin_call_new(agentd_plugin *p, const ad_call_spec *s, const ad_call_hooks *h,
                                void *ud, const char **why)
{
    const ptool *t = p && s && s->tool ? find_tool(p, s->tool) : NULL;
    if (t == NULL) {
        *why = "unknown";
        if (s)
            json_object_put(s->args_obj);
        return NULL;
    }
    agentd_call *c = calloc(1, sizeof *c);
    bool blank = s->args == NULL || s->args_len == 0;
    if (c == NULL || (c->call_id = ad_strdup(s->call_id ? s->call_id : "")) == NULL ||
        (c->conv_id = ad_strdup(s->conv_id ? s->conv_id : "")) == NULL ||
        (c->args = blank ? ad_strdup("{}") : ad_strndup(s->args, s->args_len)) == NULL) {
        if (c) {
            free(c->call_id);
            free(c->conv_id);
            free(c);
        }
        json_object_put(s->args_obj);
        *why = "memory";
        return NULL;
    }
    c->p = p;
    c->tool = t;
    c->args_len = blank ? 2 : s->args_len;
    c->args_obj = s->args_obj;
    c->timeout_s = s->timeout_s;
    c->res.max = s->max ? s->max : RESULT_MAX_DEFAULT;
    c->res.call = c;
    if (h)
        c->hooks = *h;
    c->ud = ud;
    atomic_init(&c->state, CALL_NEW);
    atomic_init(&c->refs, 1);
    return c;
}

/* Ends c with rc (the plugin's return or complete() code): builds the
 * result and hands it to hooks->done; drops the run's reference. */
static void finish_call(agentd_call *c, int rc)
{
    agentd_result *res = &c->res;
    bool is_error = res->is_error || rc != AGENTD_OK;
    int brc = 0;
    if (rc != AGENTD_OK && !res->has_msg)
        brc = ad_buf_printf(&res->buf, "%stool '%s' failed (code %d)", res->buf.len ? "\n" : "",
                            c->tool->name, rc);
    if (brc == 0 && res->cut)
        brc = ad_buf_printf(&res->buf, AD_TOOL_CUT_MARK, res->cut);
    ad_tool_result r = {0};
    r.bounded = true;
    r.is_error = true;
    size_t len = res->buf.len;
    if (brc == 0 && (r.content = ad_buf_steal(&res->buf)) != NULL) {
        r.len = len;
        r.is_error = is_error;
    }
    if (r.content == NULL) {
        ad_buf_free(&res->buf);
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "agentd: out of memory running tool '%s'", c->tool->name);
        r.len = b.len;
        r.content = ad_buf_steal(&b);
    }
    atomic_store(&c->state, CALL_ENDED);
    if (c->hooks.done)
        c->hooks.done(c->ud, &r);
    ad_tool_result_free(&r);
    call_unref(c);
}

void ad_plugin_call_run(agentd_call *c)
{
    int st = CALL_NEW;
    if (c == NULL || !atomic_compare_exchange_strong(&c->state, &st, CALL_RUNNING))
        return;
    atomic_fetch_add(&c->refs, 1); /* the run's, dropped by finish_call */
    const ptool *t = c->tool;
    if (c->timeout_s > 0)
        c->deadline_ns = mono_ns() + (uint64_t)(c->timeout_s * 1e9);
    if (t->call && c->args_obj == NULL) {
        char why[200];
        if (ad_tool_parse_json(c->args, c->args_len, &c->args_obj, why, sizeof why) != 0 ||
            !json_object_is_type(c->args_obj, json_type_object)) {
            /* The host checked the text: only memory can fail here. */
            host_result_error(&c->res, "agentd: cannot read the arguments of this call");
            finish_call(c, AGENTD_EINVAL);
            return;
        }
    }
    if (t->call && has_negative_overflow(c->args, c->args_len))
        mark_clamped(c->args_obj);
    agentd_call *outer = current_call;
    current_call = c;
    int rc;
    if (t->call)
        rc = t->call(&host_api, c, t->tool_data);
    else
        rc = t->invoke(t->tool_data, c->args, c->args_len, &c->res);
    current_call = outer;
    if (rc == AGENTD_PENDING && t->call) {
        /* Counted first: a complete() right after the exchange undoes it. */
        atomic_fetch_add(&c->p->pending_calls, 1);
        st = CALL_RUNNING;
        if (atomic_compare_exchange_strong(&c->state, &st, CALL_PENDING))
            return; /* complete() ends it */
        atomic_fetch_sub(&c->p->pending_calls, 1);
        rc = atomic_load(&c->early_rc); /* completed while call() ran */
    } else if (rc == AGENTD_PENDING) {
        rc = AGENTD_ERR; /* invoke() cannot be pending */
    }
    finish_call(c, rc);
}

void ad_plugin_call_cancel(agentd_call *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->cancelled, true);
    int st = atomic_load(&c->state);
    if (st == CALL_NEW || st == CALL_ENDED || c->tool->cancel == NULL ||
        atomic_exchange(&c->cancel_called, true))
        return;
    c->tool->cancel(&host_api, c, c->tool->tool_data);
}

void ad_plugin_call_ref(agentd_call *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
}

void ad_plugin_call_release(agentd_call *c)
{
    call_unref(c);
}

size_t ad_plugin_pending(const agentd_plugin *p)
{
    return p ? atomic_load(&p->pending_calls) : 0;
}

/* ---- in-process calls ---------------------------------------------------- */

/* What other threads hand to the loop: a late completion, a progress
 * report. */
typedef struct qitem {
    struct qitem *next;
    pcall *c;
    bool done; /* else progress */
    double at, total;
    char *msg;
} qitem;

struct inproc {
    uv_async_t async;
    uv_mutex_t mu;
    qitem *head, *tail;
    agentd_plugin *p;
};

struct pcall {
    ad_pool_call pc; /* first */
    agentd_plugin *p;
    const ptool *tool;
    agentd_call *call;
    bool serial;  /* holds or waits for the chain */
    bool waiting; /* in the wait list */
    int gave_up;  /* AD_TOOL_STOP_*: given up while it runs or is pending */
    /* Under the plugin's inproc mutex: */
    bool after_ran; /* the pool's after() saw it return */
    bool have_res;  /* ended: res holds its result */
    bool job_gone;  /* its job has ended: reports for it are dropped */
    ad_tool_result res;
    qitem done_item;
    pcall *next;
};

static void chain_next(agentd_plugin *p);
static void ip_wake(uv_async_t *a);

static void ip_push(inproc *q, qitem *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
}

/* Hooks of an in-process call (ud: its pcall, alive while the call is). */
static void ip_done(void *ud, ad_tool_result *r)
{
    pcall *c = ud;
    inproc *q = c->p->ip;
    uv_mutex_lock(&q->mu);
    c->res = *r;
    memset(r, 0, sizeof *r);
    c->have_res = true;
    /* Completed on another thread after its pool thread returned: the loop
     * learns of it through the queue (its item is part of c, so that no
     * completion is lost to an allocation). */
    bool late = c->after_ran;
    if (late) {
        c->done_item.c = c;
        c->done_item.done = true;
        atomic_fetch_add(&c->call->refs, 1);
        ip_push(q, &c->done_item);
    }
    uv_mutex_unlock(&q->mu);
    if (late)
        uv_async_send(&q->async);
}

static void ip_progress(void *ud, double at, double total, const char *msg)
{
    pcall *c = ud;
    inproc *q = c->p->ip;
    qitem *it = calloc(1, sizeof *it);
    if (it == NULL || (msg && (it->msg = ad_strdup(msg)) == NULL)) {
        free(it);
        return;
    }
    it->c = c;
    it->at = at;
    it->total = total;
    uv_mutex_lock(&q->mu);
    bool keep = !c->job_gone;
    if (keep) {
        atomic_fetch_add(&c->call->refs, 1); /* keeps c until the loop took it */
        ip_push(q, it);
    }
    uv_mutex_unlock(&q->mu);
    if (keep) {
        uv_async_send(&q->async);
    } else {
        free(it->msg);
        free(it);
    }
}

static void ip_log(void *ud, int level, const char *text, size_t len)
{
    pcall *c = ud;
    ad_tool_job_log(c->pc.job, level, text, len);
}

static void ip_release(void *ud)
{
    pcall *c = ud;
    ad_tool_result_free(&c->res);
    free(c);
}

static const ad_call_hooks ip_hooks = {ip_done, ip_progress, ip_log, ip_release};

static int ip_open(agentd_plugin *p)
{
    if (p->ip)
        return AD_OK;
    inproc *q = calloc(1, sizeof *q);
    if (q == NULL)
        return AD_ENOMEM;
    if (uv_mutex_init(&q->mu) != 0) {
        free(q);
        return AD_ENOMEM;
    }
    uv_async_init(ad_tool_host_loop(p->base.host), &q->async, ip_wake);
    q->async.data = q;
    q->p = p;
    /* Referenced only while calls are pending: the pool's own requests
     * keep the loop alive for calls on its threads. */
    uv_unref((uv_handle_t *)&q->async);
    p->ip = q;
    return AD_OK;
}

static void ip_closed(uv_handle_t *hd)
{
    inproc *q = hd->data;
    uv_mutex_destroy(&q->mu);
    free(q);
}

/* Ends c's job with res (NULL: no content) and drops c's call. */
static void end_job(pcall *c, ad_tool_result *res)
{
    agentd_plugin *p = c->p;
    bool chain = p->chain == c;
    if (chain)
        p->chain = NULL;
    ad_tool_job *job = c->pc.job;
    ad_tool_result r = {0};
    if (res) {
        r = *res;
        memset(res, 0, sizeof *res);
    }
    uv_mutex_lock(&p->ip->mu);
    c->job_gone = true;
    uv_mutex_unlock(&p->ip->mu);
    ad_plugin_call_release(c->call); /* c may be gone now */
    ad_tool_job_done(job, res ? &r : NULL);
    ad_tool_result_free(&r);
    if (chain)
        chain_next(p);
}

/* Delivers what other threads queued (loop thread). */
static void ip_drain(inproc *q)
{
    uv_mutex_lock(&q->mu);
    qitem *it = q->head;
    q->head = q->tail = NULL;
    uv_mutex_unlock(&q->mu);
    while (it) {
        qitem *next = it->next;
        pcall *c = it->c;
        agentd_call *call = c->call;
        if (it->done) {
            agentd_plugin *p = c->p;
            if (--p->pending == 0)
                uv_unref((uv_handle_t *)&q->async);
            end_job(c, &c->res);
        } else if (!c->job_gone) {
            ad_tool_job_progress(c->pc.job, it->at, it->total, it->msg);
        }
        bool own = !it->done; /* a done item is part of its pcall */
        if (own) {
            free(it->msg);
            free(it);
        }
        ad_plugin_call_release(call); /* the item's reference; c may be gone */
        it = next;
    }
}

static void ip_wake(uv_async_t *a)
{
    ip_drain(a->data);
}

static void run_call(ad_pool_call *pc)
{
    ad_plugin_call_run(((pcall *)pc)->call);
}

static void not_started(pcall *c)
{
    ad_tool_result r = {0};
    ad_buf b = AD_BUF_INIT;
    ad_pool_not_started(&b, c->tool->name);
    r.is_error = true;
    r.len = b.len;
    r.content = ad_buf_steal(&b);
    end_job(c, &r);
}

static void after_call(ad_pool_call *pc, int how)
{
    pcall *c = (pcall *)pc;
    agentd_plugin *p = c->p;
    p->running--;
    /* Progress the call reported comes before its result. */
    ip_drain(p->ip);
    if (how == AD_POOL_NO_THREAD) {
        not_started(c);
        return;
    }
    if (how != AD_POOL_RAN) {
        end_job(c, NULL); /* taken off the queue: its result was decided */
        return;
    }
    uv_mutex_lock(&p->ip->mu);
    c->after_ran = true;
    bool have = c->have_res;
    uv_mutex_unlock(&p->ip->mu);
    if (have) {
        end_job(c, &c->res);
        return;
    }
    /* AGENTD_PENDING: complete() comes from some thread; a non-thread-safe
     * call keeps the chain until then. */
    if (p->pending++ == 0)
        uv_ref((uv_handle_t *)&p->ip->async);
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
        ad_tool_result_errorf(&r, false, "agentd: cannot start a worker for tool '%s'",
                              c->tool->name);
        end_job(c, &r);
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
        ad_tool_result_errorf(
            &r, false,
            "tool '%s' was not run: an earlier call of a tool that is not thread-safe %s and is "
            "still running",
            w->tool->name, why == AD_TOOL_STOP_CANCEL ? "was cancelled" : "timed out");
        end_job(w, &r);
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

static ad_tool_provider *runner_of(agentd_plugin *p, const ptool *t)
{
    return t->mode == AD_TOOL_WORKER ? p->wrk : t->mode == AD_TOOL_PER_CALL ? p->iso : NULL;
}

static int plugin_start(ad_tool_provider *bp, ad_tool_job *job)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    const ptool *t = (const ptool *)job->tool;
    ad_tool_provider *r = runner_of(p, t);
    if (r)
        return r->vt->start(r, job);
    if (ip_open(p) != AD_OK)
        return AD_ENOMEM;
    pcall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return AD_ENOMEM;
    c->p = p;
    c->tool = t;
    c->pc.job = job;
    c->serial = !(t->d.flags & AD_TOOL_THREADSAFE);
    ad_call_spec s = {
        .tool = t->name,
        .call_id = job->call_id,
        .conv_id = job->conv_id,
        .args = job->args,
        .args_len = job->args_len,
        /* The host's parsed arguments, kept: nothing else uses them once
         * start() returns, so the pool thread reads them alone. */
        .args_obj = t->call ? json_object_get(job->args_obj) : NULL,
        .timeout_s = job->timeout_s,
        .max = ad_tool_host_result_max(p->base.host),
    };
    const char *why = NULL;
    if ((c->call = ad_plugin_call_new(p, &s, &ip_hooks, c, &why)) == NULL) {
        free(c);
        return AD_ENOMEM;
    }
    job->pdata = c;
    if (c->serial && p->chain && p->chain->gave_up) {
        /* Held by a call that was given up and still runs. */
        ad_tool_result res;
        ad_tool_result_errorf(
            &res, false,
            "tool '%s' was not run: an earlier call of a tool that is not thread-safe %s and is "
            "still running",
            t->name, p->chain->gave_up == AD_TOOL_STOP_CANCEL ? "was cancelled" : "timed out");
        end_job(c, &res);
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
    ad_tool_provider *r = runner_of(p, t);
    if (r)
        return r->vt->cancel ? r->vt->cancel(r, job) : false;
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
        end_job(c, NULL);
        return true;
    }
    if (ad_pool_stop(&c->pc, job->stop))
        return true; /* after_call follows and frees the chain */
    /* It runs on a thread, or is pending: ask the plugin to stop it. */
    ad_plugin_call_cancel(c->call);
    if (c->gave_up == 0)
        c->gave_up = c->pc.gave_up ? c->pc.gave_up : job->stop;
    if (p->chain == c && c->gave_up)
        refuse_waiting(p, c->gave_up);
    return false;
}

static bool plugin_busy(ad_tool_provider *bp)
{
    agentd_plugin *p = (agentd_plugin *)bp;
    return p->running > 0 || p->pending > 0 ||
           (p->iso && p->iso->vt->busy && p->iso->vt->busy(p->iso)) ||
           (p->wrk && p->wrk->vt->busy && p->wrk->vt->busy(p->wrk));
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
        end_job(w, NULL);
    }
    p->wait_tail = NULL;
    if (p->ip) {
        ip_drain(p->ip);
        uv_close((uv_handle_t *)&p->ip->async, ip_closed);
        p->ip = NULL;
    }
    if (p->iso && p->iso->vt->close)
        p->iso->vt->close(p->iso);
    if (p->wrk && p->wrk->vt->close)
        p->wrk->vt->close(p->wrk);
    for (size_t i = 0; i < p->ntools; i++) {
        if (p->tools[i]->destroy)
            p->tools[i]->destroy(p->tools[i]->tool_data);
        tool_free(p->tools[i]);
    }
    if (p->data_destroy)
        p->data_destroy(p->data);
    free(p->tools);
#if !AD_TOOLS_ASAN
    if (p->handle)
        dlclose(p->handle);
#endif
    json_object_put(p->config_obj);
    free(p->file);
    free(p->path);
    free(p->config);
    free(p->cache_dir);
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

ad_tool_provider *ad_plugin_worker_provider(const ad_tool_provider *p)
{
    return p && p->vt == &plugin_vt ? ((const agentd_plugin *)p)->wrk : NULL;
}

const char *ad_plugin_source(const ad_tool_provider *p)
{
    return p && p->vt == &plugin_vt ? ((const agentd_plugin *)p)->source : NULL;
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
    char why[200];
    /* The config is JSON the host made; a text that does not parse leaves
     * config() NULL. */
    if (config_json &&
        (ad_tool_parse_json(config_json, strlen(config_json), &p->config_obj, why, sizeof why) !=
             0 ||
         !json_object_is_type(p->config_obj, json_type_object))) {
        json_object_put(p->config_obj);
        p->config_obj = NULL;
    }
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
    p->source = "loaded";
    return AD_OK;
}

static int proxy_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data, (void)args, (void)len;
    host_result_error(out, "this tool's plugin is not loaded into agentd: its calls run only in "
                           "worker processes");
    return AGENTD_ERR;
}

/* A line of the loader (origin: the plugin's file). */
static void load_log(ad_tool_host *h, const char *file, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void load_log(ad_tool_host *h, const char *file, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n > 0)
        ad_tool_host_log(h, file, level, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/*
 * The description of the plugin at path: {"tools":[{"name","description",
 * "parameters","flags"}]} into *desc, from the tool cache when it holds an
 * entry for the file as it is now and this config, else from a describing
 * worker (then cached). *source says which. Returns 0 or a negative AD_E*
 * with err set.
 */
static int get_description(ad_tool_host *h, const char *path, const char *config_json,
                           const ad_plugin_opts *o, json_object **desc, const char **source,
                           char *err, size_t errlen)
{
    const char *file = base_name(path);
    *desc = NULL;
    if (o->cache_dir && !o->refresh_cache &&
        (*desc = ad_tcache_get(o->cache_dir, path, config_json)) != NULL) {
        *source = "cache";
        load_log(h, file, AGENTD_LOG_DEBUG, "tools read from the tool cache (%s)", o->cache_dir);
        return AD_OK;
    }
    int rc = ad_isolate_describe(o->isolate, h, path, config_json, desc, err, errlen);
    if (rc != AD_OK)
        return rc;
    *source = "described";
    load_log(h, file, AGENTD_LOG_DEBUG, "tools described by a worker process");
    if (o->cache_dir) {
        char why[512];
        if (ad_tcache_put(o->cache_dir, path, config_json, *desc, why, sizeof why) != AD_OK)
            load_log(h, file, AGENTD_LOG_DEBUG, "tool cache not written: %s", why);
    }
    return AD_OK;
}

static int list_of(json_object *desc, json_object **list)
{
    return json_object_object_get_ex(desc, "tools", list) &&
                   json_object_is_type(*list, json_type_array)
               ? AD_OK
               : AD_ERR;
}

/* Registers the tools of desc for a plugin that is not loaded into this
 * process, through register_tool() (the same checks as for a loaded
 * plugin). Returns the record, or NULL with err set. */
static agentd_plugin *register_described(ad_tool_host *h, const char *path,
                                         const char *config_json, json_object *desc,
                                         char *err, size_t errlen)
{
    const char *file = base_name(path);
    json_object *list = NULL;
    if (list_of(desc, &list) != AD_OK) {
        ad_errf(err, errlen, "plugin %s: a worker process sent a malformed description of it",
                file);
        return NULL;
    }
    agentd_plugin *p = plugin_new(h, path, config_json, err, errlen);
    if (p == NULL)
        return NULL;
    size_t n = json_object_array_length(list);
    p->loading = 1;
    for (size_t i = 0; i < n && !p->reg_err[0]; i++) {
        json_object *e = json_object_array_get_idx(list, i), *v;
        agentd_tool d = {.size = sizeof d, .invoke = proxy_invoke};
        if (json_object_object_get_ex(e, "name", &v) && json_object_is_type(v, json_type_string))
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
    if (p->reg_err[0] || p->ntools == 0) {
        if (p->reg_err[0])
            ad_errf(err, errlen, "plugin %s: %s", file, p->reg_err);
        else
            ad_errf(err, errlen, "plugin %s: registers no tools", file);
        plugin_close(&p->base);
        return NULL;
    }
    return p;
}

/* A worker reported other tools than the host registered: the cache entry
 * is rewritten, so the next start lists what the plugin has now. */
static void on_worker_described(void *ud, json_object *desc)
{
    agentd_plugin *p = ud;
    char why[512];
    if (p->cache_dir && ad_tcache_put(p->cache_dir, p->path, p->config, desc, why, sizeof why) != 0)
        load_log(p->base.host, p->file, AGENTD_LOG_DEBUG, "tool cache not written: %s", why);
    load_log(p->base.host, p->file, AGENTD_LOG_WARN,
             "its worker process registers other tools than agentd listed at start-up (%s); the "
             "list is corrected from the next start of agentd",
             p->source && strcmp(p->source, "cache") == 0 ? "from the tool cache"
                                                          : "as described");
}

int ad_plugin_load_file(ad_tool_host *h, const char *path, const char *config_json,
                        const ad_plugin_opts *o, char *err, size_t errlen)
{
    static const ad_plugin_opts none = {0};
    if (o == NULL)
        o = &none;
    const char *file = base_name(path);
    agentd_plugin *p = NULL;
    const char *source = NULL;
    if (o->mode) {
        json_object *desc = NULL, *list = NULL;
        int rc = get_description(h, path, config_json, o, &desc, &source, err, errlen);
        if (rc != AD_OK)
            return rc;
        if (list_of(desc, &list) != AD_OK) {
            json_object_put(desc);
            ad_errf(err, errlen, "plugin %s: a worker process sent a malformed description of it",
                    file);
            return AD_ERR;
        }
        /* Loaded here only when one of its tools runs here. */
        bool here = false;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *name = NULL;
            json_object_object_get_ex(json_object_array_get_idx(list, i), "name", &name);
            here |= !json_object_is_type(name, json_type_string) ||
                    o->mode(o->mode_ud, json_object_get_string(name)) == AD_TOOL_IN_PROCESS;
        }
        if (!here) {
            p = register_described(h, path, config_json, desc, err, errlen);
            json_object_put(desc);
            if (p == NULL)
                return AD_EINVAL;
            p->source = source;
        } else {
            json_object_put(desc);
        }
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
    bool per_call = false, worker = false;
    const ad_tool_desc **descs = calloc(p->ntools, sizeof *descs);
    for (size_t i = 0; i < p->ntools; i++) {
        ptool *t = p->tools[i];
        t->mode = o->mode ? o->mode(o->mode_ud, t->name) : AD_TOOL_IN_PROCESS;
        if (p->handle == NULL && t->mode == AD_TOOL_IN_PROCESS)
            t->mode = AD_TOOL_WORKER; /* not reached: such a plugin is loaded */
        per_call |= t->mode == AD_TOOL_PER_CALL;
        worker |= t->mode == AD_TOOL_WORKER;
        if (descs)
            descs[i] = &t->d;
    }
    if (o->cache_dir && (p->cache_dir = ad_strdup(o->cache_dir)) == NULL)
        descs = (free(descs), NULL);
    if (descs == NULL ||
        (per_call && (p->iso = ad_isolate_new(o->isolate, p->path, p->config)) == NULL)) {
        free(descs);
        ad_errf(err, errlen, "plugin %s: out of memory", p->file);
        plugin_close(&p->base);
        return AD_ENOMEM;
    }
    if (worker) {
        ad_plugin_worker_opts wo = {
            .isolate = o->isolate,
            .described = on_worker_described,
            .described_ud = p,
        };
        p->wrk = ad_plugin_worker_new(&wo, p->path, p->config, descs, p->ntools);
    }
    free(descs);
    if (worker && p->wrk == NULL) {
        ad_errf(err, errlen, "plugin %s: out of memory", p->file);
        plugin_close(&p->base);
        return AD_ENOMEM;
    }
    if (p->iso)
        p->iso->host = h; /* they run calls for p: the same host */
    if (p->wrk)
        p->wrk->host = h;
    char herr[512];
    int rc = ad_tool_host_add(h, &p->base, herr, sizeof herr);
    if (rc != AD_OK) {
        ad_errf(err, errlen, "plugin %s: %s", file, herr);
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

agentd_plugin *ad_plugin_open_worker(const char *path, const char *config_json,
                                     ad_plugin_log_fn log, void *log_ud, char *err, size_t errlen)
{
    agentd_plugin *p = plugin_new(NULL, path, config_json, err, errlen);
    if (p == NULL)
        return NULL;
    p->worker = true;
    p->wlog = log;
    p->wlog_ud = log_ud;
    if (plugin_load(p, path, err, errlen) != AD_OK) {
        plugin_close(&p->base);
        return NULL;
    }
    return p;
}

void ad_plugin_close_worker(agentd_plugin *p)
{
    plugin_close(p ? &p->base : NULL);
}

json_object *ad_plugin_describe(const agentd_plugin *p)
{
    json_object *list = json_object_new_array(), *desc = json_object_new_object();
    if (list == NULL || desc == NULL || json_object_object_add(desc, "tools", list) != 0) {
        json_object_put(list);
        json_object_put(desc);
        return NULL;
    }
    for (size_t i = 0; i < p->ntools; i++) {
        const ad_tool_desc *tool = &p->tools[i]->d;
        json_object *e = json_object_new_object(), *params = NULL;
        if (e == NULL || json_object_array_add(list, e) != 0) {
            json_object_put(e);
            json_object_put(desc);
            return NULL;
        }
        if (json_object_deep_copy((json_object *)tool->parameters, &params, NULL) != 0 ||
            json_object_object_add(e, "name", json_object_new_string(tool->name)) != 0 ||
            json_object_object_add(e, "description", json_object_new_string(tool->description)) ||
            json_object_object_add(e, "parameters", params) != 0 ||
            json_object_object_add(e, "flags", json_object_new_int64(tool->flags)) != 0) {
            json_object_put(desc);
            return NULL;
        }
    }
    return desc;
}

/* A blocking call (per-call workers): done signals the waiting thread. */
typedef struct wait_call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    ad_tool_result res;
} wait_call;

static void wait_done(void *ud, ad_tool_result *r)
{
    wait_call *w = ud;
    pthread_mutex_lock(&w->mu);
    w->res = *r;
    memset(r, 0, sizeof *r);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int ad_plugin_invoke(agentd_plugin *p, const char *name, const char *args, size_t args_len,
                     size_t max, ad_tool_result *out)
{
    memset(out, 0, sizeof *out);
    wait_call w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    static const ad_call_hooks hooks = {.done = wait_done};
    ad_call_spec s = {.tool = name, .args = args, .args_len = args_len, .max = max};
    const char *why = NULL;
    agentd_call *c = ad_plugin_call_new(p, &s, &hooks, &w, &why);
    if (c == NULL && why && strcmp(why, "unknown") == 0) {
        ad_tool_result_errorf(
            out, false,
            "tool '%s' cannot run isolated: its plugin did not register it in the "
            "worker process",
            name);
        return out->content ? AD_OK : AD_ENOMEM;
    }
    if (c == NULL)
        return AD_ENOMEM;
    ad_plugin_call_run(c);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    ad_plugin_call_release(c);
    *out = w.res;
    return out->content ? AD_OK : AD_ENOMEM;
}

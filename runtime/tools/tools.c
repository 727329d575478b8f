/*
 * tools.c -- the plugin host: loads tool plugins and runs tool calls.
 *
 * Load phase (single thread, at startup): ad_tools_load_dir() lists the
 * regular "*.so" files of a folder, sorts them with strcmp and hands each to
 * ad_tools_load_file(), which dlopen()s it (RTLD_NOW so missing symbols fail
 * here, RTLD_LOCAL so plugins cannot collide), looks up
 * agentd_plugin_init_v1 and calls it with the host table below. While init
 * runs, the plugin record is "open": register_tool() validates and
 * deep-copies each tool and config_json() hands out the borrowed config
 * text. When init returns, the record is closed for good; a late
 * register_tool() is refused. Any failure names the file and stops loading.
 *
 * Call phase: ad_tools_invoke() parses the arguments with json-c, checks
 * them against the tool's schema (schema.c) and calls the plugin with a
 * private NUL-terminated copy of the argument text. The plugin writes into
 * an agentd_result that lives on the caller's stack; the text is bounded
 * (ad_tools_set_result_max(), default AD_TOOL_RESULT_MAX; the rest is cut
 * with a marker that says how much was cut) and made valid UTF-8
 * without NUL bytes before it leaves this file, because it goes straight
 * into a JSON request.
 *
 * Isolated calls (ad_tools_invoke_isolated, further down) do the same
 * checks here and run the plugin in a worker process: this same program
 * started again in its --tool-worker mode (ad_tools_worker_main). Each
 * plugin record keeps its absolute path and a copy of its config text so a
 * worker can load it exactly as the host did.
 *
 * Invariants:
 * - After loading, the registry is read-only: invoke() touches only its own
 *   stack and heap, so THREADSAFE tools may be invoked concurrently from
 *   worker threads. Nothing on the invoke path mutates a shared json-c
 *   object (not even its reference count or cached text).
 * - The host owns a tool's tool_data lifetime once register_tool() accepted
 *   it: destroy() runs exactly once, at ad_tools_free() or when the plugin's
 *   init fails after registering it.
 * - Under AddressSanitizer plugins are never dlclose()d, so leak reports keep
 *   symbolised frames.
 */
#include "tools/tools.h"

#include "base/buf.h"
#include "base/text.h"
#include "tools/proc.h"
#include "core/schema.h"

#include <agentd/plugin.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

#define AD_TOOL_RESULT_MAX ((size_t)1 << 20) /* bytes of plugin output kept per call */
#define AD_TOOL_NAME_MAX 64

/* The v1 layout ends with destroy; newer plugins may append fields. */
#define AD_TOOL_V1_SIZE (offsetof(agentd_tool, destroy) + sizeof(((agentd_tool *)0)->destroy))

struct agentd_plugin {
    char *file;              /* base name, e.g. "add.so" */
    char *path;              /* absolute path, for worker processes */
    char *config;            /* owned copy of its config JSON, or NULL (worker processes) */
    void *handle;            /* dlopen handle */
    ad_tools *host;          /* registry the tools go to */
    int loading;             /* register_tool()/config_json() allowed */
    char reg_err[256];       /* first register_tool() refusal, reported by the loader */
};

struct ad_tool {
    char *name;
    char *description;
    json_object *parameters;
    uint32_t flags;
    agentd_invoke_fn invoke;
    void *tool_data;
    void (*destroy)(void *);
    agentd_plugin *plugin;
};

struct ad_tools {
    char *exe; /* program run as a worker process, or NULL */
    int log_level;     /* plugin log() lines up to this level are shown */
    char *secret;      /* redacted from log lines and worker output; NULL: none */
    bool worker;       /* this is a worker process: log() lines go to the host, framed */
    ad_tools_isolated_fn isolated; /* set: plugins are described by a worker first */
    void *isolated_ud;
    ad_isolate_opts describe; /* bounds of a describing worker (scrub_env owned) */
    agentd_plugin **plugins;
    size_t nplugins;
    ad_tool **tools;
    size_t ntools, cap;
    size_t result_max; /* bytes of plugin output kept per call */
};

struct agentd_result {
    ad_buf buf;
    size_t max;     /* bytes kept (the registry's result_max) */
    size_t cut;     /* bytes dropped beyond max */
    int is_error;
    int has_msg;    /* result_error() was called with a message */
};

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

/* Parses exactly one JSON value from text[0..len) (trailing whitespace
 * allowed) into *out (NULL for the JSON literal null). Returns 0, or -1 with
 * a short reason in why. */
static int parse_json(const char *text, size_t len, json_object **out, char *why, size_t whylen)
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
        if (end < len)
            ad_errf(why, whylen, "unexpected text after the value at offset %zu", end);
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

static void tool_free(ad_tool *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->description);
    json_object_put(t->parameters);
    free(t);
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
    const ad_tool *other = ad_tools_find(self->host, d.name);
    if (other != NULL)
        return reg_fail(self, AGENTD_EINVAL, "duplicate tool name '%s' (already registered by %s)",
                        d.name, other->plugin->file);

    char why[200];
    json_object *params = NULL;
    if (parse_json(d.parameters, strlen(d.parameters), &params, why, sizeof why) != 0)
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': parameters are not valid JSON (%s)",
                        d.name, why);
    if (ad_schema_check(params, why, sizeof why) != 0) {
        json_object_put(params);
        return reg_fail(self, AGENTD_EINVAL, "tool '%s': %s", d.name, why);
    }

    ad_tools *h = self->host;
    ad_tool *t = calloc(1, sizeof *t);
    if (t == NULL || (t->name = ad_strdup(d.name)) == NULL ||
        (t->description = ad_strdup(d.description ? d.description : "")) == NULL)
        goto nomem;
    t->parameters = params;
    params = NULL;
    t->flags = d.flags;
    t->invoke = d.invoke;
    t->tool_data = d.tool_data;
    t->destroy = d.destroy;
    t->plugin = self;
    if (h->ntools == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        ad_tool **v = realloc(h->tools, cap * sizeof *v);
        if (v == NULL)
            goto nomem;
        h->tools = v;
        h->cap = cap;
    }
    h->tools[h->ntools++] = t;
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

#define LOG_LINE_MAX 8192 /* bytes of one plugin log line shown */
/* A worker's log() line on its stderr: LOG_MARK, the level digit, the text. */
#define LOG_MARK '\x1e'

/* Writes "agentd: KIND WHO: TEXT" to stderr: the secret redacted first,
 * then cut to max bytes, control characters shown as '?', in one fprintf
 * (stdio locks the stream per call, so lines from concurrent threads never
 * interleave). */
static void show_line(const ad_tools *t, const char *kind, const char *who, const char *s,
                      size_t n, size_t max)
{
    char line[LOG_LINE_MAX + 1];
    if (max > LOG_LINE_MAX)
        max = LOG_LINE_MAX;
    size_t full = ad_redact_cut(line, max + 1, s, n, t ? t->secret : NULL);
    size_t k = full < max ? full : max;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            line[i] = '?';
    }
    fprintf(stderr, "agentd: %s %s: %s%s\n", kind, who, line, full > k ? " [...]" : "");
}

static void host_log(agentd_plugin *self, int level, const char *msg)
{
    if (msg == NULL)
        return;
    const ad_tools *t = self ? self->host : NULL;
    level = level < AGENTD_LOG_ERROR ? AGENTD_LOG_ERROR
            : level > AGENTD_LOG_DEBUG ? AGENTD_LOG_DEBUG
                                       : level;
    /* In a worker the host decides what is shown, and how (forward_output). */
    bool framed = t && t->worker;
    if (!framed && t && level > t->log_level)
        return;
    const char *who = self && self->file ? self->file : "?";
    do {
        const char *nl = strchr(msg, '\n');
        size_t n = nl ? (size_t)(nl - msg) : strnlen(msg, LOG_LINE_MAX);
        if (framed)
            fprintf(stderr, "%c%d%.*s\n", LOG_MARK, level, (int)(n < LOG_LINE_MAX ? n : LOG_LINE_MAX),
                    msg);
        else
            show_line(t, "plugin", who, msg, n, LOG_LINE_MAX);
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

/* ---- registry ----------------------------------------------------------- */

ad_tools *ad_tools_new(void)
{
    ad_tools *t = calloc(1, sizeof(ad_tools));
    if (t == NULL)
        return NULL;
    t->result_max = AD_TOOL_RESULT_MAX;
    const char *debug = getenv("AGENTD_DEBUG");
    t->log_level = debug && debug[0] && strcmp(debug, "0") != 0 ? AGENTD_LOG_DEBUG
                                                                : AGENTD_LOG_INFO;
    /* Resolved now, on the main thread: the link names this program even if
     * its file is replaced later, and under valgrind it names the program,
     * not the tool that runs it. */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        t->exe = ad_strdup(exe); /* NULL on ENOMEM: isolated calls then fail with a message */
    }
    return t;
}

int ad_tools_set_worker_exe(ad_tools *t, const char *path)
{
    char *e = ad_strdup(path);
    if (e == NULL)
        return AD_ENOMEM;
    free(t->exe);
    t->exe = e;
    return AD_OK;
}

static void plugin_close(agentd_plugin *p)
{
    if (p == NULL)
        return;
#if !AD_TOOLS_ASAN
    if (p->handle)
        dlclose(p->handle);
#endif
    free(p->file);
    free(p->path);
    free(p->config);
    free(p);
}

void ad_tools_free(ad_tools *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ntools; i++) {
        if (t->tools[i]->destroy)
            t->tools[i]->destroy(t->tools[i]->tool_data);
        tool_free(t->tools[i]);
    }
    for (size_t i = 0; i < t->nplugins; i++)
        plugin_close(t->plugins[i]);
    free(t->tools);
    free(t->plugins);
    free(t->exe);
    free((char *)t->describe.scrub_env);
    ad_tools_set_secret(t, NULL);
    free(t);
}

void ad_tools_set_log_level(ad_tools *t, int level)
{
    const char *debug = getenv("AGENTD_DEBUG");
    if (debug && debug[0] && strcmp(debug, "0") != 0)
        level = AGENTD_LOG_DEBUG;
    t->log_level = level < AGENTD_LOG_WARN ? AGENTD_LOG_WARN : level;
}

int ad_tools_set_secret(ad_tools *t, const char *secret)
{
    if (t->secret) {
        volatile char *p = t->secret;
        while (*p)
            *p++ = 0;
        free(t->secret);
        t->secret = NULL;
    }
    if (secret && secret[0] && !(t->secret = ad_strdup(secret)))
        return AD_ENOMEM;
    return AD_OK;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Takes back the tools a failed plugin registered (they are the last ones). */
static void unregister_from(ad_tools *t, size_t first)
{
    while (t->ntools > first) {
        ad_tool *tool = t->tools[--t->ntools];
        if (tool->destroy)
            tool->destroy(tool->tool_data);
        tool_free(tool);
    }
}

/* A new plugin record for path (not loaded yet), with room for it in
 * t->plugins; NULL with err set on ENOMEM. */
static agentd_plugin *plugin_new(ad_tools *t, const char *path, const char *config_json, char *err,
                                 size_t errlen)
{
    const char *file = base_name(path);
    agentd_plugin **pv = realloc(t->plugins, (t->nplugins + 1) * sizeof *pv);
    if (pv == NULL) {
        ad_errf(err, errlen, "plugin %s: out of memory", file);
        return NULL;
    }
    t->plugins = pv;
    agentd_plugin *p = calloc(1, sizeof *p);
    char *abs = realpath(path, NULL);
    if (p == NULL || (p->file = ad_strdup(file)) == NULL ||
        (p->path = abs ? abs : ad_strdup(path)) == NULL ||
        (config_json && (p->config = ad_strdup(config_json)) == NULL)) {
        if (p == NULL || p->path != abs)
            free(abs);
        plugin_close(p);
        ad_errf(err, errlen, "plugin %s: out of memory", file);
        return NULL;
    }
    p->host = t;
    return p;
}

static int load_described(ad_tools *t, const char *path, const char *config_json, char *err,
                          size_t errlen);

int ad_tools_load_file(ad_tools *t, const char *path, const char *config_json, char *err,
                       size_t errlen)
{
    if (t->isolated) {
        int drc = load_described(t, path, config_json, err, errlen);
        if (drc <= 0)
            return drc; /* registered from the description, or failed */
    }
    const char *file = base_name(path);
    agentd_plugin *p = plugin_new(t, path, config_json, err, errlen);
    if (p == NULL)
        return AD_ENOMEM;

    /* Without a slash dlopen() would search the library path instead. */
    char *local = NULL;
    if (strchr(path, '/') == NULL) {
        size_t n = strlen(path);
        local = malloc(n + 3);
        if (local == NULL) {
            plugin_close(p);
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
        plugin_close(p);
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
        plugin_close(p);
        return AD_ERR;
    }

    size_t first = t->ntools;
    char perr[512];
    memset(perr, 0, sizeof perr);
    p->loading = 1;
    int rc = init.fn(&host_api, p, perr, sizeof perr);
    p->loading = 0;
    perr[sizeof perr - 1] = '\0';

    int status = AD_OK;
    if (p->reg_err[0]) {
        ad_errf(err, errlen, "plugin %s: %s", file, p->reg_err);
        status = AD_EINVAL;
    } else if (rc != AGENTD_OK) {
        if (perr[0])
            ad_errf(err, errlen, "plugin %s: init failed: %s", file, perr);
        else
            ad_errf(err, errlen, "plugin %s: init failed (code %d%s) and gave no reason", file, rc,
                    rc == AGENTD_EABI     ? ", AGENTD_EABI: built for another ABI"
                    : rc == AGENTD_ENOMEM ? ", AGENTD_ENOMEM"
                    : rc == AGENTD_EINVAL ? ", AGENTD_EINVAL"
                                          : "");
        status = AD_ERR;
    } else if (t->ntools == first) {
        ad_errf(err, errlen, "plugin %s: registers no tools", file);
        status = AD_EINVAL;
    }
    if (status != AD_OK) {
        unregister_from(t, first);
        plugin_close(p);
        return status;
    }
    t->plugins[t->nplugins++] = p;
    return AD_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ad_tools_load_dir(ad_tools *t, const char *dir, ad_tools_config_fn cfg, void *ud, char *err,
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
        if (cfg) {
            char *stem = ad_strndup(names[i], strlen(names[i]) - 3);
            if (stem == NULL) {
                ad_errf(err, errlen, "plugin %s: out of memory", names[i]);
                rc = AD_ENOMEM;
                break;
            }
            config = cfg(ud, stem);
            free(stem);
        }
        rc = ad_tools_load_file(t, path.data, config, err, errlen);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    ad_buf_free(&path);
    return rc;
}

size_t ad_tools_plugin_count(const ad_tools *t)
{
    return t ? t->nplugins : 0;
}

const char *ad_tools_plugin_file(const ad_tools *t, size_t i)
{
    return t && i < t->nplugins ? t->plugins[i]->file : NULL;
}

size_t ad_tools_count(const ad_tools *t)
{
    return t ? t->ntools : 0;
}

const ad_tool *ad_tools_at(const ad_tools *t, size_t i)
{
    return t && i < t->ntools ? t->tools[i] : NULL;
}

const ad_tool *ad_tools_find(const ad_tools *t, const char *name)
{
    if (t == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < t->ntools; i++)
        if (strcmp(t->tools[i]->name, name) == 0)
            return t->tools[i];
    return NULL;
}

const char *ad_tool_name(const ad_tool *tool)
{
    return tool->name;
}

const char *ad_tool_description(const ad_tool *tool)
{
    return tool->description;
}

const json_object *ad_tool_parameters(const ad_tool *tool)
{
    return tool->parameters;
}

const char *ad_tool_plugin(const ad_tool *tool)
{
    return tool->plugin->file;
}

bool ad_tool_in_process(const ad_tool *tool)
{
    return tool->plugin->handle != NULL;
}

bool ad_tool_threadsafe(const ad_tool *tool)
{
    return (tool->flags & AGENTD_TOOL_THREADSAFE) != 0;
}

json_object *ad_tools_openai_json(const ad_tools *t)
{
    json_object *arr = json_object_new_array();
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; t && i < t->ntools; i++) {
        const ad_tool *tool = t->tools[i];
        json_object *params = NULL;
        /* A private copy: the caller may change it, and the registry's
         * object must stay untouched (see the invariants). */
        if (json_object_deep_copy(tool->parameters, &params, NULL) != 0)
            goto fail;
        json_object *fn = json_object_new_object();
        json_object *entry = json_object_new_object();
        if (fn == NULL || entry == NULL ||
            json_object_object_add(fn, "name", json_object_new_string(tool->name)) != 0 ||
            json_object_object_add(fn, "description",
                                   json_object_new_string(tool->description)) != 0 ||
            json_object_object_add(fn, "parameters", params) != 0) {
            json_object_put(fn);
            json_object_put(entry);
            json_object_put(params);
            goto fail;
        }
        if (json_object_object_add(entry, "type", json_object_new_string("function")) != 0 ||
            json_object_object_add(entry, "function", fn) != 0) {
            json_object_put(entry);
            json_object_put(fn);
            goto fail;
        }
        if (json_object_array_add(arr, entry) != 0) {
            json_object_put(entry);
            goto fail;
        }
    }
    return arr;
fail:
    json_object_put(arr);
    return NULL;
}

char *ad_tools_names(const ad_tools *t)
{
    ad_buf b = AD_BUF_INIT;
    for (size_t i = 0; t && i < t->ntools; i++)
        if (ad_buf_printf(&b, "%s%s", i ? ", " : "", t->tools[i]->name) != 0) {
            ad_buf_free(&b);
            return NULL;
        }
    return ad_buf_steal(&b);
}

/* ---- invocation --------------------------------------------------------- */

static int finish(ad_tool_result *out, ad_buf *raw, bool is_error)
{
    out->is_error = is_error;
    if (ad_utf8_clean((const unsigned char *)raw->data, raw->len)) {
        /* The usual case: the result is handed over, not copied. */
        out->len = raw->len;
        out->content = ad_buf_steal(raw);
        return out->content ? AD_OK : AD_ENOMEM;
    }
    ad_buf clean = AD_BUF_INIT;
    int rc = ad_utf8_repair(&clean, (const unsigned char *)(raw->data ? raw->data : ""), raw->len);
    ad_buf_free(raw);
    if (rc != 0) {
        ad_buf_free(&clean);
        return AD_ENOMEM;
    }
    out->len = clean.len;
    out->content = ad_buf_steal(&clean);
    return out->content ? AD_OK : AD_ENOMEM;
}

static int error_result(ad_tool_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int error_result(ad_tool_result *out, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        ad_buf_free(&b);
        return AD_ENOMEM;
    }
    return finish(out, &b, true);
}

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* The checks before a plugin is called: known tool, arguments an object
 * that satisfies the schema. Returns the tool when the call may go ahead
 * (*args and *args_len then hold the text to pass on); otherwise NULL with
 * *out filled (or *rc = AD_ENOMEM). */
static const ad_tool *check_call(const ad_tools *t, const char *name, const char **args,
                                 size_t *args_len, ad_tool_result *out, int *rc)
{
    out->content = NULL;
    out->len = 0;
    out->is_error = true;
    *rc = AD_OK;
    if (name == NULL)
        name = "";
    const ad_tool *tool = ad_tools_find(t, name);
    if (tool == NULL) {
        char *names = ad_tools_names(t);
        if (names == NULL) {
            *rc = AD_ENOMEM;
            return NULL;
        }
        *rc = names[0] ? error_result(out, "unknown tool '%.100s'; available tools: %s", name,
                                      names)
                       : error_result(out, "unknown tool '%.100s'; no tools are available", name);
        free(names);
        return NULL;
    }

    if (*args == NULL || all_space(*args, *args_len)) {
        *args = "{}";
        *args_len = 2;
    }
    char why[400];
    json_object *v = NULL;
    if (parse_json(*args, *args_len, &v, why, sizeof why) != 0) {
        *rc = error_result(out, "invalid arguments for tool '%s': not valid JSON (%s)",
                           tool->name, why);
        return NULL;
    }
    if (!json_object_is_type(v, json_type_object)) {
        const char *got = json_object_is_type(v, json_type_array)     ? "an array"
                          : json_object_is_type(v, json_type_string)  ? "a string"
                          : json_object_is_type(v, json_type_boolean) ? "a boolean"
                          : v == NULL                                 ? "null"
                                                                      : "a number";
        json_object_put(v);
        *rc = error_result(out, "invalid arguments for tool '%s': expected a JSON object, got %s",
                           tool->name, got);
        return NULL;
    }
    int vrc = ad_schema_validate(tool->parameters, v, why, sizeof why);
    json_object_put(v);
    if (vrc == AD_ENOMEM) {
        *rc = AD_ENOMEM;
        return NULL;
    }
    if (vrc != 0) {
        *rc = error_result(out, "invalid arguments for tool '%s': %s", tool->name, why);
        return NULL;
    }
    return tool;
}

int ad_tools_invoke(const ad_tools *t, const char *name, const char *args, size_t args_len,
                    ad_tool_result *out)
{
    int rc;
    const ad_tool *tool = check_call(t, name, &args, &args_len, out, &rc);
    if (tool == NULL)
        return rc;

    char *copy = ad_strndup(args, args_len);
    if (copy == NULL)
        return AD_ENOMEM;
    agentd_result res;
    memset(&res, 0, sizeof res);
    res.max = t->result_max;
    int prc = tool->invoke(tool->tool_data, copy, args_len, &res);
    free(copy);

    bool is_error = res.is_error || prc != AGENTD_OK;
    rc = 0;
    if (prc != AGENTD_OK && !res.has_msg)
        rc = ad_buf_printf(&res.buf, "%stool '%s' failed (code %d)", res.buf.len ? "\n" : "",
                           tool->name, prc);
    if (rc == 0 && res.cut)
        rc = ad_buf_printf(&res.buf, "\n[... %zu bytes cut]", res.cut);
    if (rc != 0) {
        ad_buf_free(&res.buf);
        return AD_ENOMEM;
    }
    return finish(out, &res.buf, is_error);
}

void ad_tools_set_result_max(ad_tools *t, size_t max)
{
    t->result_max = max ? max : AD_TOOL_RESULT_MAX;
}

/* ---- process isolation -------------------------------------------------- */

/*
 * The host side (ad_tools_invoke_isolated) checks the call like
 * ad_tools_invoke() and hands it to ad_proc_run() (proc.c), which starts
 * `EXE --tool-worker PPID` with the request on stdin:
 *
 *   "agentd-tool-call 1\n" "PATHLEN CONFIGLEN NAMELEN ARGSLEN\n" PATH CONFIG NAME ARGS
 *
 * (CONFIGLEN -1: the plugin has no config table). The worker
 * (ad_tools_worker_main) loads that one plugin with the same config, runs
 * the call through ad_tools_invoke() and writes on fd 3
 *
 *   "agentd-tool-result IS_ERROR LEN\n" CONTENT
 *
 * then leaves with _exit(0): no destructor or atexit handler of the plugin
 * runs after the result is out. The host trusts none of it: a result counts
 * only when its header parses and its LEN bytes all arrived; the content
 * is bounded and made valid UTF-8 again here. Otherwise the worker's fate
 * (timeout, signal, exit status) is the message.
 *
 * Why exec the host binary rather than fork() alone: the host is
 * multi-threaded (libuv workers, curl), and a forked child inherits every
 * lock in whatever state another thread held it (stdio, the dynamic
 * loader, allocator arenas of libraries), along with every socket. An
 * exec'd worker starts clean: no inherited locks, no descriptors but the
 * three pipes, and an environment we choose (the API key's variable is
 * left out). The cost is an exec, dynamic linking and one dlopen() plus
 * plugin init per call; the README gives the measured overhead.
 */

#define WORKER_REQ_MAGIC "agentd-tool-call 1\n"
#define WORKER_DESC_MAGIC "agentd-tool-describe 1\n"
#define WORKER_DESC_MAX ((size_t)16 << 20) /* bytes of a plugin's description accepted */
#define WORKER_RES_MAGIC "agentd-tool-result "
#define WORKER_INPUT_MAX ((size_t)256 << 20) /* bytes of request a worker accepts */
#define WORKER_OUTPUT_MAX 4096               /* bytes of worker stdout/stderr shown */
#define WORKER_LINE_MAX 300                  /* bytes of one such line shown */
/* ad_utf8_repair() may triple invalid bytes: room for a full cut result. */

extern char **environ;

/* The host's environment without `scrub`; the strings are borrowed. */
static char **worker_env(const char *scrub)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t slen = scrub ? strlen(scrub) : 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (slen && strncmp(environ[i], scrub, slen) == 0 && environ[i][slen] == '=')
            continue;
        env[k++] = environ[i];
    }
    return env;
}

/* Copies the worker's output to stderr, one line per fprintf: its log()
 * lines as in-process ones ("agentd: plugin FILE: ...", filtered by level),
 * anything else it wrote as "agentd: tool NAME: ...", every line redacted.
 * A last line cut off by the output bound is dropped rather than shown in
 * part (a part of the key would not be recognised as the key). */
static void forward_output(const ad_tools *t, const char *plugin, const char *kind,
                           const char *who, const ad_buf *b, size_t dropped)
{
    const char *s = b->data, *end = b->data ? b->data + b->len : NULL;
    while (s && s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (!nl && dropped) {
            dropped += n;
            break;
        }
        if (n >= 2 && s[0] == LOG_MARK && s[1] >= '0' && s[1] <= '0' + AGENTD_LOG_DEBUG) {
            if (s[1] - '0' <= t->log_level)
                show_line(t, "plugin", plugin, s + 2, n - 2, WORKER_LINE_MAX);
        } else {
            show_line(t, kind, who, s, n, WORKER_LINE_MAX);
        }
        s = nl ? nl + 1 : end;
    }
    if (dropped)
        fprintf(stderr, "agentd: %s %s: [%zu more bytes of output dropped]\n", kind, who, dropped);
}

/* Parses "agentd-tool-result E LEN\n"; returns the header length or 0. */
static size_t parse_result_header(const ad_buf *b, bool *is_error, size_t *len)
{
    size_t m = sizeof WORKER_RES_MAGIC - 1;
    if (b->len < m + 4 || memcmp(b->data, WORKER_RES_MAGIC, m) != 0)
        return 0;
    const char *p = b->data + m, *end = b->data + b->len;
    if (*p != '0' && *p != '1')
        return 0;
    *is_error = *p == '1';
    if (*++p != ' ')
        return 0;
    p++;
    size_t v = 0, digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 19) {
        v = v * 10 + (size_t)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || p >= end || *p != '\n')
        return 0;
    *len = v;
    return (size_t)(p + 1 - b->data);
}

/* Turns what the worker did into the call's result. */
static int worker_result(const char *tool, const ad_isolate_opts *o, size_t limit, ad_proc_result *pr,
                         ad_tool_result *out)
{
    if (pr->timed_out)
        return error_result(out, "tool '%s' timed out after %g s and was killed", tool,
                            o->timeout_s);
    bool is_error = false;
    size_t len = 0;
    size_t hdr = parse_result_header(&pr->result, &is_error, &len);
    size_t got = hdr ? pr->result.len - hdr : 0;
    if (hdr && (got == len || (got < len && pr->result_dropped > 0))) {
        ad_buf raw = AD_BUF_INIT;
        int rc = ad_buf_append(&raw, pr->result.data + hdr, got);
        if (rc == 0 && pr->result_dropped)
            rc = ad_buf_printf(&raw, "\n[result larger than %zu bytes: cut]", limit);
        if (rc != 0) {
            ad_buf_free(&raw);
            return AD_ENOMEM;
        }
        return finish(out, &raw, is_error);
    }
    if (pr->term_signal > 0) {
        const char *sn = ad_proc_signame(pr->term_signal);
        return sn ? error_result(out, "tool '%s' was killed by signal %d (SIG%s)", tool,
                                 pr->term_signal, sn)
                  : error_result(out, "tool '%s' was killed by signal %d", tool,
                                 pr->term_signal);
    }
    if (pr->exit_status > 0 || pr->result.len == 0)
        return error_result(out, "tool '%s' exited with status %d without a result", tool,
                            pr->exit_status);
    return error_result(out, "tool '%s' sent a malformed result (%zu bytes)", tool,
                        pr->result.len);
}

int ad_tools_invoke_isolated(const ad_tools *t, const char *name, const char *args,
                             size_t args_len, const ad_isolate_opts *o, ad_tool_result *out)
{
    static const ad_isolate_opts no_opts = {0, NULL};
    if (o == NULL)
        o = &no_opts;
    int rc;
    const ad_tool *tool = check_call(t, name, &args, &args_len, out, &rc);
    if (tool == NULL)
        return rc;
    const agentd_plugin *p = tool->plugin;
    if (t->exe == NULL)
        return error_result(out, "tool '%s' cannot run isolated: the program's own path is "
                                 "unknown (/proc/self/exe)",
                            tool->name);

    ad_buf req = AD_BUF_INIT;
    char ppid[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    /* The worker cuts the output at the host's bound (argv[3]). */
    size_t keep = t->result_max;
    char keep_s[32];
    snprintf(keep_s, sizeof keep_s, "%zu", keep);
    char *argv[] = {t->exe, (char *)AD_TOOLS_WORKER_FLAG, ppid, keep_s, NULL};
    char **env = worker_env(o->scrub_env);
    if (env == NULL ||
        ad_buf_printf(&req, WORKER_REQ_MAGIC "%zu %ld %zu %zu\n", strlen(p->path),
                      p->config ? (long)strlen(p->config) : -1L, strlen(tool->name),
                      args_len) != 0 ||
        ad_buf_puts(&req, p->path) != 0 || (p->config && ad_buf_puts(&req, p->config) != 0) ||
        ad_buf_puts(&req, tool->name) != 0 || ad_buf_append(&req, args, args_len) != 0) {
        free(env);
        ad_buf_free(&req);
        return AD_ENOMEM;
    }
    ad_proc_opts po = {
        .exe = t->exe,
        .argv = argv,
        .envp = env,
        .input = req.data,
        .input_len = req.len,
        .timeout_s = o->timeout_s,
        .result_max = 3 * keep + 4096,
        .output_max = WORKER_OUTPUT_MAX,
    };
    ad_proc_result pr;
    char err[512];
    rc = ad_proc_run(&po, &pr, err, sizeof err);
    free(env);
    ad_buf_free(&req);
    if (rc == AD_ENOMEM)
        return AD_ENOMEM;
    if (rc != AD_OK)
        return error_result(out, "tool '%s' could not be started in a worker process: %s",
                            tool->name, err);
    forward_output(t, p->file, "tool", tool->name, &pr.output, pr.output_dropped);
    rc = worker_result(tool->name, o, po.result_max, &pr, out);
    ad_proc_result_free(&pr);
    return rc;
}

/* ---- plugins described by a worker -------------------------------------- */

/*
 * With an isolation function set (ad_tools_set_isolation), a plugin is
 * first loaded by a worker started like the one of a call, with
 *
 *   "agentd-tool-describe 1\n" "PATHLEN CONFIGLEN\n" PATH CONFIG
 *
 * on stdin. It runs the plugin's init there and answers on fd 3 with the
 * usual result frame: is_error 1 and the load error ("plugin x.so: ..."),
 * or is_error 0 and {"tools":[{"name","description","parameters","flags"}]}.
 * When every tool it names is isolated, the host registers them from that
 * text through register_tool() itself (the same checks as for a loaded
 * plugin; invoke is proxy_invoke) and never dlopen()s the plugin.
 */

static int proxy_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data, (void)args, (void)len;
    host_result_error(out, "this tool's plugin is not loaded into agentd: its calls run only in "
                           "worker processes (isolation = \"process\")");
    return AGENTD_ERR;
}

void ad_tools_set_isolation(ad_tools *t, ad_tools_isolated_fn isolated, void *ud,
                            const ad_isolate_opts *o)
{
    t->isolated = isolated;
    t->isolated_ud = ud;
    free((char *)t->describe.scrub_env);
    t->describe.timeout_s = o ? o->timeout_s : 0;
    t->describe.scrub_env = o && o->scrub_env ? ad_strdup(o->scrub_env) : NULL;
}

/* Runs the describing worker; *desc gets the parsed description. Returns
 * 0, or a negative AD_E* with err set ("plugin FILE: ..."). */
static int describe(ad_tools *t, const char *path, const char *config, json_object **desc,
                    char *err, size_t errlen)
{
    const char *file = base_name(path);
    *desc = NULL;
    if (t->exe == NULL) {
        ad_errf(err, errlen, "plugin %s: cannot be loaded in a worker process: the program's own "
                             "path is unknown (/proc/self/exe)", file);
        return AD_ERR;
    }
    char *abs = realpath(path, NULL);
    const char *where = abs ? abs : path;
    char ppid[32], keep_s[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    snprintf(keep_s, sizeof keep_s, "%zu", t->result_max);
    char *argv[] = {t->exe, (char *)AD_TOOLS_WORKER_FLAG, ppid, keep_s, NULL};
    ad_buf req = AD_BUF_INIT;
    char **env = worker_env(t->describe.scrub_env);
    int rc = AD_ENOMEM;
    if (env && ad_buf_printf(&req, WORKER_DESC_MAGIC "%zu %ld\n", strlen(where),
                             config ? (long)strlen(config) : -1L) == 0 &&
        ad_buf_puts(&req, where) == 0 && (!config || ad_buf_puts(&req, config) == 0)) {
        ad_proc_opts po = {
            .exe = t->exe,
            .argv = argv,
            .envp = env,
            .input = req.data,
            .input_len = req.len,
            .timeout_s = t->describe.timeout_s,
            .result_max = WORKER_DESC_MAX,
            .output_max = WORKER_OUTPUT_MAX,
        };
        ad_proc_result pr;
        char perr[512];
        rc = ad_proc_run(&po, &pr, perr, sizeof perr);
        if (rc == AD_ENOMEM) {
            ad_errf(err, errlen, "plugin %s: out of memory", file);
        } else if (rc != AD_OK) {
            ad_errf(err, errlen, "plugin %s: cannot start a worker process to load it: %s", file,
                    perr);
        } else {
            forward_output(t, file, "plugin", file, &pr.output, pr.output_dropped);
            bool is_error = false;
            size_t len = 0, hdr = parse_result_header(&pr.result, &is_error, &len);
            const char *sn = pr.term_signal > 0 ? ad_proc_signame(pr.term_signal) : NULL;
            rc = AD_ERR;
            if (pr.timed_out) {
                ad_errf(err, errlen, "plugin %s: init did not finish within %g s in a worker "
                                     "process (agent.tool_timeout_s)",
                        file, t->describe.timeout_s);
            } else if (hdr && pr.result.len - hdr == len && !pr.result_dropped && is_error) {
                ad_errf(err, errlen, "%.*s", (int)(len > 2000 ? 2000 : len),
                        pr.result.data + hdr);
            } else if (hdr && pr.result.len - hdr == len && !pr.result_dropped) {
                char why[200];
                if (parse_json(pr.result.data + hdr, len, desc, why, sizeof why) == 0 &&
                    json_object_is_type(*desc, json_type_object)) {
                    rc = AD_OK;
                } else {
                    json_object_put(*desc);
                    *desc = NULL;
                    ad_errf(err, errlen, "plugin %s: a worker process sent a malformed "
                                         "description of it", file);
                }
            } else if (pr.term_signal > 0) {
                ad_errf(err, errlen, "plugin %s: init failed in a worker process: killed by "
                                     "signal %d%s%s%s", file, pr.term_signal, sn ? " (SIG" : "",
                        sn ? sn : "", sn ? ")" : "");
            } else if (pr.result_dropped) {
                ad_errf(err, errlen, "plugin %s: its description is larger than %zu bytes", file,
                        WORKER_DESC_MAX);
            } else {
                ad_errf(err, errlen, "plugin %s: init failed in a worker process: it exited with "
                                     "status %d", file, pr.exit_status);
            }
            ad_proc_result_free(&pr);
        }
    } else {
        ad_errf(err, errlen, "plugin %s: out of memory", file);
    }
    free(env);
    free(abs);
    ad_buf_free(&req);
    return rc;
}

/* Returns 0 when the plugin's tools were registered from its description,
 * 1 when it must be loaded into this process (one of its tools is not
 * isolated), or a negative AD_E* with err set. */
static int load_described(ad_tools *t, const char *path, const char *config_json, char *err,
                          size_t errlen)
{
    json_object *desc = NULL, *list = NULL;
    int rc = describe(t, path, config_json, &desc, err, errlen);
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
            !t->isolated(t->isolated_ud, json_object_get_string(name))) {
            json_object_put(desc);
            return 1;
        }
    }
    agentd_plugin *p = plugin_new(t, path, config_json, err, errlen);
    if (p == NULL) {
        json_object_put(desc);
        return AD_ENOMEM;
    }
    size_t first = t->ntools;
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
    if (p->reg_err[0] || t->ntools == first) {
        if (p->reg_err[0])
            ad_errf(err, errlen, "plugin %s: %s", file, p->reg_err);
        else
            ad_errf(err, errlen, "plugin %s: registers no tools", file);
        unregister_from(t, first);
        plugin_close(p);
        return AD_EINVAL;
    }
    t->plugins[t->nplugins++] = p;
    return AD_OK;
}

/* ---- the worker process ------------------------------------------------- */

/* Kept in globals so that leak checkers see them as reachable when a plugin
 * calls exit() in the middle of a call. */
static ad_tools *worker_tools;
static ad_buf worker_input;
static ad_tool_result worker_res;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Sends the result on fd and ends the process. */
static void worker_send(int fd, bool is_error, const char *content, size_t len)
{
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, WORKER_RES_MAGIC "%d %zu\n", is_error ? 1 : 0, len);
    write_all(fd, hdr, (size_t)n);
    write_all(fd, content, len);
    fflush(NULL);
    _exit(0);
}

static void worker_fail(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void worker_fail(int fd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    worker_send(fd, true, msg, strlen(msg));
}

/* Reads "N " (or "-1 " when allow_neg) from *p; returns -2 on a bad number. */
static long long take_num(const char **p, const char *end, bool allow_neg, char stop)
{
    const char *s = *p;
    bool neg = false;
    if (allow_neg && s < end && *s == '-') {
        neg = true;
        s++;
    }
    long long v = 0;
    int digits = 0;
    while (s < end && *s >= '0' && *s <= '9' && digits < 12) {
        v = v * 10 + (*s - '0');
        s++;
        digits++;
    }
    if (digits == 0 || s >= end || *s != stop || (neg && v != 1))
        return -2;
    *p = s + 1;
    return neg ? -1 : v;
}

/* The worker's side of a description: the plugin is loaded (its init
 * runs), and its tools are sent back. Ends the process. */
static void worker_describe(int rfd, const char *p, const char *end)
{
    long long pl = take_num(&p, end, false, ' '), cl = take_num(&p, end, true, '\n');
    if (pl <= 0 || cl < -1 ||
        (unsigned long long)(pl + (cl > 0 ? cl : 0)) != (unsigned long long)(end - p))
        worker_fail(rfd, "tool worker: malformed request on stdin (this mode is started by "
                         "agentd itself, not by hand)");
    char *path = ad_strndup(p, (size_t)pl);
    char *config = cl >= 0 ? ad_strndup(p + pl, (size_t)cl) : NULL;
    if (path == NULL || (cl >= 0 && config == NULL))
        worker_fail(rfd, "tool worker: out of memory");
    char err[1024];
    if (ad_tools_load_file(worker_tools, path, config, err, sizeof err) != AD_OK)
        worker_send(rfd, true, err, strlen(err));
    json_object *list = json_object_new_array();
    for (size_t i = 0; list && i < worker_tools->ntools; i++) {
        const ad_tool *tool = worker_tools->tools[i];
        json_object *e = json_object_new_object(), *params = NULL;
        if (e == NULL || json_object_deep_copy(tool->parameters, &params, NULL) != 0 ||
            json_object_object_add(e, "name", json_object_new_string(tool->name)) != 0 ||
            json_object_object_add(e, "description", json_object_new_string(tool->description)) ||
            json_object_object_add(e, "parameters", params) != 0 ||
            json_object_object_add(e, "flags", json_object_new_int64(tool->flags)) != 0 ||
            json_object_array_add(list, e) != 0)
            worker_fail(rfd, "tool worker: out of memory");
    }
    json_object *desc = json_object_new_object();
    if (list == NULL || desc == NULL || json_object_object_add(desc, "tools", list) != 0)
        worker_fail(rfd, "tool worker: out of memory");
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        desc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL)
        worker_fail(rfd, "tool worker: out of memory");
    worker_send(rfd, false, text, len);
}

int ad_tools_worker_main(int argc, char **argv)
{
    /* The result channel leaves fd 3, where a plugin might write by accident. */
    int rfd = fcntl(3, F_DUPFD_CLOEXEC, 64);
    if (rfd < 0)
        return 125;
    close(3);
    /* Die with the host: a worker never outlives the process that waits
     * for it (the check covers a host that died before the prctl). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 3 || strtol(argv[2], NULL, 10) != (long)getppid())
        _exit(125);
    /* Faults must kill the worker so the host sees the signal (a sanitizer
     * runtime's handlers would otherwise turn them into exit statuses). */
    static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGPIPE};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        signal(faults[i], SIG_DFL);

    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            worker_fail(rfd, "tool worker: cannot read its request: %s", strerror(errno));
        if (n == 0)
            break;
        if (worker_input.len + (size_t)n > WORKER_INPUT_MAX)
            worker_fail(rfd, "tool worker: request larger than %zu bytes", WORKER_INPUT_MAX);
        if (ad_buf_append(&worker_input, chunk, (size_t)n) != 0)
            worker_fail(rfd, "tool worker: out of memory");
    }
    /* The plugin gets an empty stdin, not our request. */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }

    const char *p = worker_input.data, *end = p ? p + worker_input.len : NULL;
    size_t dm = sizeof WORKER_DESC_MAGIC - 1;
    if (p && worker_input.len >= dm && memcmp(p, WORKER_DESC_MAGIC, dm) == 0) {
        if ((worker_tools = ad_tools_new()) == NULL)
            worker_fail(rfd, "tool worker: out of memory");
        worker_tools->worker = true;
        worker_describe(rfd, p + dm, end);
    }
    size_t m = sizeof WORKER_REQ_MAGIC - 1;
    if (p == NULL || worker_input.len < m || memcmp(p, WORKER_REQ_MAGIC, m) != 0)
        worker_fail(rfd, "tool worker: malformed request on stdin (this mode is started by "
                         "agentd itself for isolated tool calls, not by hand)");
    p += m;
    long long pl = take_num(&p, end, false, ' '), cl = take_num(&p, end, true, ' ');
    long long nl = take_num(&p, end, false, ' '), al = take_num(&p, end, false, '\n');
    if (pl <= 0 || cl < -1 || nl <= 0 || al < 0 ||
        (unsigned long long)(pl + (cl > 0 ? cl : 0) + nl + al) != (unsigned long long)(end - p))
        worker_fail(rfd, "tool worker: malformed request on stdin (this mode is started by "
                         "agentd itself for isolated tool calls, not by hand)");
    char *path = ad_strndup(p, (size_t)pl);
    char *config = cl >= 0 ? ad_strndup(p + pl, (size_t)cl) : NULL;
    char *name = ad_strndup(p + pl + (cl > 0 ? cl : 0), (size_t)nl);
    const char *args = p + pl + (cl > 0 ? cl : 0) + nl;
    if (path == NULL || name == NULL || (cl >= 0 && config == NULL))
        worker_fail(rfd, "tool worker: out of memory");

    char err[1024];
    worker_tools = ad_tools_new();
    if (worker_tools == NULL)
        worker_fail(rfd, "tool worker: out of memory");
    worker_tools->worker = true;
    if (argc > 3)
        ad_tools_set_result_max(worker_tools, (size_t)strtoull(argv[3], NULL, 10));
    if (ad_tools_load_file(worker_tools, path, config, err, sizeof err) != AD_OK)
        worker_fail(rfd, "tool '%s' cannot run isolated: %s", name, err);
    if (ad_tools_invoke(worker_tools, name, args, (size_t)al, &worker_res) != AD_OK)
        worker_fail(rfd, "tool worker: out of memory running tool '%s'", name);
    worker_send(rfd, worker_res.is_error, worker_res.content, worker_res.len);
    return 0; /* not reached */
}

void ad_tool_result_free(ad_tool_result *r)
{
    if (r == NULL)
        return;
    free(r->content);
    r->content = NULL;
    r->len = 0;
}

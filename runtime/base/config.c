/*
 * config.c -- agent.toml to typed, validated settings.
 *
 * The TOML document (toml.c) is walked against a fixed description of the
 * accepted keys (the `keys` table below). Every problem is reported with the
 * file, the line of the offending key, and what was expected; unknown keys
 * get the closest accepted key as a suggestion. All problems of a file are
 * reported at once, one per line, so a user fixes them in one go.
 *
 * [provider.extra] and [plugins.config.NAME] are free-form: they are turned
 * into JSON (integers stay integers, date-times become strings) and handed to
 * the request builder and to plugins respectively.
 */
#include "base/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"
#include "base/toml.h"

enum kind { K_STRING, K_BOOL, K_INT, K_LONG, K_NUMBER, K_TABLE };

typedef struct keydef {
    const char *table; /* "provider", "agent", "plugins" */
    const char *key;
    enum kind kind;
    size_t off; /* offset into ad_config, for scalar kinds */
    double min, max;
} keydef;

#define OFF(f) offsetof(ad_config, f)
static const keydef keys[] = {
    {"provider", "base_url", K_STRING, OFF(base_url), 0, 0},
    {"provider", "api_key_env", K_STRING, OFF(api_key_env), 0, 0},
    {"provider", "api_key_file", K_STRING, OFF(api_key_file), 0, 0},
    {"provider", "allow_http", K_BOOL, OFF(allow_http), 0, 0},
    {"provider", "model", K_STRING, OFF(model), 0, 0},
    {"provider", "stream", K_BOOL, OFF(stream), 0, 0},
    {"provider", "images", K_BOOL, OFF(images), 0, 0},
    {"provider", "timeout_s", K_NUMBER, OFF(timeout_s), 0, 86400},
    {"provider", "request_timeout_s", K_NUMBER, OFF(timeout_s), 0, 86400},
    {"provider", "connect_timeout_s", K_NUMBER, OFF(connect_timeout_s), 0, 3600},
    {"provider", "idle_timeout_s", K_NUMBER, OFF(idle_timeout_s), 0, 86400},
    {"provider", "max_retries", K_INT, OFF(max_retries), 0, 100},
    {"provider", "max_retry_wait_s", K_NUMBER, OFF(max_retry_wait_s), 0, 3600},
    {"provider", "headers", K_TABLE, 0, 0, 0},
    {"provider", "extra", K_TABLE, 0, 0, 0},
    {"agent", "system_prompt", K_STRING, OFF(system_prompt), 0, 0},
    {"agent", "max_steps", K_INT, OFF(max_steps), 1, 100000},
    {"agent", "max_tokens", K_LONG, OFF(max_tokens), 1, 100000000},
    {"agent", "unique_tool_call_ids", K_BOOL, OFF(unique_tool_call_ids), 0, 0},
    {"agent", "tool_timeout_s", K_NUMBER, OFF(tool_timeout_s), 0, 86400},
    {"agent", "isolation", K_STRING, 0, 0, 0},
    {"agent", "confirm_tools", K_TABLE, 0, 0, 0},
    {"tools", "timeout_s", K_NUMBER, 0, 0, 86400},
    {"tools", "confirm", K_BOOL, 0, 0, 0},
    {"tools", "isolation", K_STRING, 0, 0, 0},
    {"plugins", "dir", K_STRING, OFF(plugins_dir), 0, 0},
    {"plugins", "config", K_TABLE, 0, 0, 0},
    {"plugins", "pass_env", K_TABLE, 0, 0, 0},
    {"sessions", "path", K_STRING, OFF(sessions_path), 0, 0},
    {"sessions", "enabled", K_BOOL, OFF(sessions_enabled), 0, 0},
    {"sessions", "one_shot", K_BOOL, OFF(sessions_one_shot), 0, 0},
    {"limits", "max_event_bytes", K_LONG, OFF(max_event_bytes), 64, 1 << 30},
    {"limits", "max_response_bytes", K_LONG, OFF(max_response_bytes), 64, 1 << 30},
    {"limits", "max_tool_args_bytes", K_LONG, OFF(max_tool_args_bytes), 2, 1 << 30},
    {"limits", "max_tool_calls", K_LONG, OFF(max_tool_calls), 1, 4096},
    {"limits", "max_tool_result_bytes", K_LONG, OFF(max_tool_result_bytes), 64, 1 << 30},
    {"mcp", "startup_timeout_s", K_NUMBER, OFF(mcp_startup_timeout_s), 0, 86400},
    {"mcp", "tool_timeout_s", K_NUMBER, OFF(mcp_tool_timeout_s), 0, 86400},
    {"mcp", "max_result_bytes", K_LONG, OFF(mcp_max_result_bytes), 1024, 1 << 30},
    {"mcp", "max_image_bytes", K_LONG, OFF(mcp_max_image_bytes), 1, 1 << 30},
    {"mcp", "servers", K_TABLE, 0, 0, 0},
    {"serve", "listen", K_STRING, OFF(serve.listen), 0, 0},
    {"serve", "token_file", K_STRING, OFF(serve.token_file), 0, 0},
    {"serve", "token_env", K_STRING, OFF(serve.token_env), 0, 0},
    {"serve", "max_header_bytes", K_LONG, OFF(serve.max_header_bytes), 1024, 1 << 24},
    {"serve", "max_headers", K_LONG, OFF(serve.max_headers), 8, 10000},
    {"serve", "max_body_bytes", K_LONG, OFF(serve.max_body_bytes), 1024, 1 << 30},
    {"serve", "max_connections", K_LONG, OFF(serve.max_connections), 1, 1000000},
    {"serve", "max_connections_per_peer", K_LONG, OFF(serve.max_connections_per_peer), 1, 1000000},
    {"serve", "max_runs", K_LONG, OFF(serve.max_runs), 1, 1000000},
    {"serve", "max_write_queue_bytes", K_LONG, OFF(serve.max_write_queue_bytes), 65536, 1 << 30},
    {"serve", "header_timeout_s", K_NUMBER, OFF(serve.header_timeout_s), 0, 3600},
    {"serve", "body_timeout_s", K_NUMBER, OFF(serve.body_timeout_s), 0, 3600},
    {"serve", "idle_timeout_s", K_NUMBER, OFF(serve.idle_timeout_s), 0, 86400},
    {"serve", "write_timeout_s", K_NUMBER, OFF(serve.write_timeout_s), 0, 3600},
    {"serve", "sse_keepalive_s", K_NUMBER, OFF(serve.sse_keepalive_s), 0, 3600},
    {"serve", "drain_timeout_s", K_NUMBER, OFF(serve.drain_timeout_s), 0, 86400},
    {"serve", "approvals", K_STRING, OFF(serve.approvals), 0, 0},
    {"serve", "db", K_STRING, OFF(serve.db), 0, 0},
    {"serve", "profiles", K_TABLE, 0, 0, 0},
};
static const char *const tables[] = {"provider", "agent", "plugins", "tools",
                                     "sessions", "limits", "mcp",    "serve"};

void ad_config_init(ad_config *c)
{
    memset(c, 0, sizeof *c);
    c->stream = true;
    c->timeout_s = 0;
    c->connect_timeout_s = 30;
    c->idle_timeout_s = 120;
    c->max_retries = 2;
    c->max_retry_wait_s = 60;
    c->max_steps = 20;
    c->tool_timeout_s = 60;
    c->isolation = AD_ISOLATION_WORKER;
    c->max_event_bytes = 16L << 20;
    c->max_response_bytes = 64L << 20;
    c->max_tool_args_bytes = 8L << 20;
    c->max_tool_calls = 128;
    c->max_tool_result_bytes = 1L << 20;
    c->sessions_enabled = true;
    c->mcp_startup_timeout_s = 30;
    c->mcp_tool_timeout_s = 120;
    c->mcp_max_result_bytes = 128L << 10;
    c->mcp_max_image_bytes = 5L << 20;
    c->serve.max_header_bytes = 16L << 10;
    c->serve.max_headers = 100;
    c->serve.max_body_bytes = 4L << 20;
    c->serve.max_connections = 4096;
    c->serve.max_connections_per_peer = 1024;
    c->serve.max_runs = 1024;
    c->serve.max_write_queue_bytes = 1L << 20;
    c->serve.header_timeout_s = 10;
    c->serve.body_timeout_s = 60;
    c->serve.idle_timeout_s = 30;
    c->serve.write_timeout_s = 30;
    c->serve.sse_keepalive_s = 15;
    c->serve.drain_timeout_s = 30;
}

static void free_strs(ad_conf_strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->at);
    free(l->expanded);
    memset(l, 0, sizeof *l);
}

static void free_headers(ad_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void free_mcp_server(ad_mcp_server_conf *s)
{
    free(s->name);
    free(s->command);
    free_strs(&s->args);
    free_headers(s->env, s->nenv);
    free_strs(&s->env_vars);
    free(s->cwd);
    free(s->url);
    free_headers(s->headers, s->nheaders);
    free(s->bearer_token_env);
    free_strs(&s->enabled_tools);
    free_strs(&s->disabled_tools);
    free(s->tool_prefix);
}

void ad_config_free(ad_config *c)
{
    free(c->path);
    free(c->dir);
    free(c->base_url);
    free(c->api_key_env);
    free(c->api_key_file);
    if (c->api_key) {
        /* Do not leave the key behind in freed memory. */
        volatile char *p = c->api_key;
        while (*p)
            *p++ = 0;
        free(c->api_key);
    }
    free(c->model);
    for (size_t i = 0; i < c->nheaders; i++) {
        free(c->headers[i].name);
        free(c->headers[i].value);
    }
    free(c->headers);
    json_object_put(c->extra);
    free(c->system_prompt);
    free(c->plugins_dir);
    for (size_t i = 0; c->plugins_pass_env && c->plugins_pass_env[i]; i++)
        free(c->plugins_pass_env[i]);
    free(c->plugins_pass_env);
    json_object_put(c->plugin_config);
    for (size_t i = 0; i < c->nconfirm_tools; i++)
        free(c->confirm_tools[i]);
    free(c->confirm_tools);
    free(c->confirm_tools_at);
    for (size_t i = 0; i < c->nplugin_configs; i++)
        free(c->plugin_configs[i].name);
    free(c->plugin_configs);
    for (size_t i = 0; i < c->ntools; i++)
        free(c->tools[i].name);
    free(c->tools);
    free(c->sessions_path);
    for (size_t i = 0; i < c->nmcp_servers; i++)
        free_mcp_server(&c->mcp_servers[i]);
    free(c->mcp_servers);
    free(c->serve.listen);
    free(c->serve.token_file);
    free(c->serve.token_env);
    free(c->serve.approvals);
    free(c->serve.db);
    for (size_t i = 0; i < c->serve.nprofiles; i++) {
        ad_serve_profile *sp = &c->serve.profiles[i];
        free(sp->name);
        free(sp->model);
        free(sp->system_prompt);
        free_strs(&sp->tools);
    }
    free(c->serve.profiles);
    free(c->key_at);
    memset(c, 0, sizeof *c);
}

/* ---- diagnostics ------------------------------------------------------- */

typedef struct diag {
    ad_buf msgs;
    const char *file;
    int count;
} diag;

static ad_conf_loc loc_of(const ad_toml *v)
{
    ad_conf_loc l = {0, 0};
    if (v) {
        l.line = ad_toml_line(v);
        l.col = ad_toml_column(v);
    }
    return l;
}

/* One problem, "FILE:LINE:COL: message" (or "FILE: message" without a place). */
static void vproblem(diag *d, ad_conf_loc at, const char *fmt, va_list ap)
{
    if (d->count++ >= 20)
        return;
    if (d->msgs.len)
        ad_buf_putc(&d->msgs, '\n');
    if (at.line > 0)
        ad_buf_printf(&d->msgs, "%s:%d:%d: ", d->file, at.line, at.col);
    else
        ad_buf_printf(&d->msgs, "%s: ", d->file);
    ad_buf_vprintf(&d->msgs, fmt, ap);
}

static void problem(diag *d, const ad_toml *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(diag *d, const ad_toml *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(d, loc_of(at), fmt, ap);
    va_end(ap);
}

static void problem_at(diag *d, ad_conf_loc at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem_at(diag *d, ad_conf_loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(d, at, fmt, ap);
    va_end(ap);
}

/* Whether a name at edit distance dist from key is close enough to suggest. */
static bool near_enough(const char *key, size_t dist)
{
    size_t limit = strlen(key) / 3 + 1;
    if (limit < 2)
        limit = 2;
    return dist <= limit;
}

/* The name of names[0..n) closest to key, or NULL if none is close; a
 * name that key abbreviates ("mul" for "multiply") counts as close. */
static const char *closest_of(const char *key, const char *const *names, size_t n)
{
    const char *best = NULL, *longer = NULL;
    size_t bestd = SIZE_MAX, klen = strlen(key);
    for (size_t i = 0; i < n; i++) {
        size_t dist = ad_edit_distance(key, names[i]);
        if (dist < bestd) {
            bestd = dist;
            best = names[i];
        }
        if (!longer && klen >= 2 && strncmp(names[i], key, klen) == 0)
            longer = names[i];
    }
    if (best && near_enough(key, bestd))
        return best;
    return longer;
}

/* The accepted key of `table` closest to `key`, or NULL if none is close. */
static const char *closest(const char *table, const char *key)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *cand = table ? keys[i].key : keys[i].table;
        if (table && strcmp(keys[i].table, table) != 0)
            continue;
        size_t dist = ad_edit_distance(key, cand);
        if (dist < bestd) {
            bestd = dist;
            best = cand;
        }
    }
    return near_enough(key, bestd) ? best : NULL;
}

static void unknown(diag *d, const ad_toml *at, const char *table, const char *key)
{
    const char *hint = closest(table, key);
    if (table)
        problem(d, at, "unknown key '%s' in [%s]%s%s%s", key, table, hint ? " (did you mean '" : "",
                hint ? hint : "", hint ? "'?)" : "");
    else
        problem(d, at, "unknown table [%s]%s%s%s", key, hint ? " (did you mean [" : "",
                hint ? hint : "", hint ? "]?)" : "");
}

/* ---- TOML to JSON ------------------------------------------------------ */

/* Returns a new json_object for v; NULL on ENOMEM. */
static json_object *to_json(const ad_toml *v)
{
    switch (ad_toml_type_of(v)) {
    case AD_TOML_TABLE: {
        json_object *o = json_object_new_object();
        for (size_t i = 0; o && i < ad_toml_len(v); i++)
            json_object_object_add(o, ad_toml_key_at(v, i), to_json(ad_toml_at(v, i)));
        return o;
    }
    case AD_TOML_ARRAY: {
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < ad_toml_len(v); i++)
            json_object_array_add(a, to_json(ad_toml_at(v, i)));
        return a;
    }
    case AD_TOML_STRING: {
        size_t n;
        const char *s = ad_toml_string(v, &n);
        return json_object_new_string_len(s, (int)n);
    }
    case AD_TOML_INTEGER:
        return json_object_new_int64(ad_toml_int(v));
    case AD_TOML_FLOAT: {
        /* JSON has no inf/nan; the shortest text that reads back the same
         * keeps 0.7 from going out as 0.69999999999999996. */
        double d = ad_toml_float(v);
        if (!isfinite(d))
            return NULL;
        char text[40];
        snprintf(text, sizeof text, "%.15g", d);
        if (strtod(text, NULL) != d)
            snprintf(text, sizeof text, "%.17g", d);
        if (!strpbrk(text, ".eE"))
            strcat(text, ".0");
        return json_object_new_double_s(d, text);
    }
    case AD_TOML_BOOL:
        return json_object_new_boolean(ad_toml_bool(v));
    default:
        return json_object_new_string(ad_toml_datetime(v));
    }
}

/* ---- typed keys -------------------------------------------------------- */

static const char *kind_name(enum kind k)
{
    switch (k) {
    case K_STRING:
        return "a string";
    case K_BOOL:
        return "a boolean (true or false)";
    case K_INT:
    case K_LONG:
        return "an integer";
    case K_NUMBER:
        return "a number";
    default:
        return "a table";
    }
}

static void set_scalar(diag *d, ad_config *c, const keydef *k, const ad_toml *v)
{
    ad_toml_type t = ad_toml_type_of(v);
    char *base = (char *)c;
    bool ok = (k->kind == K_STRING && t == AD_TOML_STRING) || (k->kind == K_BOOL && t == AD_TOML_BOOL) ||
              ((k->kind == K_INT || k->kind == K_LONG) && t == AD_TOML_INTEGER) ||
              (k->kind == K_NUMBER && (t == AD_TOML_INTEGER || t == AD_TOML_FLOAT));
    if (!ok) {
        problem(d, v, "%s.%s must be %s, not %s", k->table, k->key, kind_name(k->kind),
                ad_toml_type_name(t));
        return;
    }
    switch (k->kind) {
    case K_STRING: {
        size_t n;
        const char *s = ad_toml_string(v, &n);
        if (strlen(s) != n) {
            problem(d, v, "%s.%s must not contain NUL characters", k->table, k->key);
            return;
        }
        char **dst = (char **)(void *)(base + k->off);
        free(*dst);
        *dst = ad_strdup(s);
        break;
    }
    case K_BOOL:
        *(bool *)(void *)(base + k->off) = ad_toml_bool(v);
        break;
    case K_INT:
    case K_LONG: {
        int64_t x = ad_toml_int(v);
        if ((double)x < k->min || (double)x > k->max) {
            problem(d, v, "%s.%s must be between %.0f and %.0f, not %lld", k->table, k->key, k->min,
                    k->max, (long long)x);
            return;
        }
        if (k->kind == K_LONG)
            *(long *)(void *)(base + k->off) = (long)x;
        else
            *(int *)(void *)(base + k->off) = (int)x;
        break;
    }
    case K_NUMBER: {
        double x = t == AD_TOML_INTEGER ? (double)ad_toml_int(v) : ad_toml_float(v);
        if (!(x >= k->min && x <= k->max)) {
            problem(d, v, "%s.%s must be between %g and %g, not %g", k->table, k->key, k->min,
                    k->max, x);
            return;
        }
        *(double *)(void *)(base + k->off) = x;
        break;
    }
    default:
        break;
    }
}

static const keydef *find_key(const char *table, const char *key)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].table, table) == 0 && strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

static void load_headers(diag *d, ad_config *c, const ad_toml *t)
{
    size_t n = ad_toml_len(t);
    c->headers = calloc(n ? n : 1, sizeof *c->headers);
    if (!c->headers) {
        problem(d, t, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_toml_key_at(t, i);
        const ad_toml *v = ad_toml_at(t, i);
        if (ad_toml_type_of(v) != AD_TOML_STRING) {
            problem(d, v, "provider.headers.%s must be a string, not %s", name,
                    ad_toml_type_name(ad_toml_type_of(v)));
            continue;
        }
        size_t vlen;
        const char *val = ad_toml_string(v, &vlen);
        bool bad = name[0] == '\0' || strlen(val) != vlen;
        for (const char *p = name; *p; p++)
            if (*p <= ' ' || *p == ':' || (unsigned char)*p >= 0x7f)
                bad = true;
        for (const char *p = val; *p; p++)
            if (*p == '\r' || *p == '\n')
                bad = true;
        if (bad) {
            problem(d, v, "provider.headers.%s: not a valid HTTP header name and value", name);
            continue;
        }
        c->headers[c->nheaders].name = ad_strdup(name);
        c->headers[c->nheaders].value = ad_strdup(val);
        c->nheaders++;
    }
}

/* "worker", "in-process" (or "none"), "per-call" (or "process") ->
 * AD_ISOLATION_*, or -1 after reporting. */
static int parse_isolation(diag *d, const ad_toml *v, const char *what)
{
    if (ad_toml_type_of(v) == AD_TOML_STRING) {
        const char *s = ad_toml_string(v, NULL);
        if (strcmp(s, "worker") == 0)
            return AD_ISOLATION_WORKER;
        if (strcmp(s, "in-process") == 0 || strcmp(s, "none") == 0)
            return AD_ISOLATION_NONE;
        if (strcmp(s, "per-call") == 0 || strcmp(s, "process") == 0)
            return AD_ISOLATION_PROCESS;
    }
    problem(d, v, "%s must be \"worker\", \"in-process\" or \"per-call\"", what);
    return -1;
}

const char *ad_isolation_name(int isolation)
{
    return isolation == AD_ISOLATION_PROCESS  ? "per-call"
           : isolation == AD_ISOLATION_WORKER ? "worker"
                                              : "in-process";
}

/* [plugins] pass_env: names of variables. */
static void load_pass_env(diag *d, ad_config *c, const ad_toml *v)
{
    if (ad_toml_type_of(v) != AD_TOML_ARRAY) {
        problem(d, v, "plugins.pass_env must be an array of environment variable names, not %s",
                ad_toml_type_name(ad_toml_type_of(v)));
        return;
    }
    size_t n = ad_toml_len(v), k = 0;
    c->plugins_pass_env = calloc(n + 1, sizeof *c->plugins_pass_env);
    if (!c->plugins_pass_env) {
        problem(d, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ad_toml *e = ad_toml_at(v, i);
        const char *s = ad_toml_type_of(e) == AD_TOML_STRING ? ad_toml_string(e, NULL) : NULL;
        if (s == NULL || !s[0] || strchr(s, '=')) {
            problem(d, e, "plugins.pass_env entries must be variable names (strings without '=')");
            continue;
        }
        c->plugins_pass_env[k++] = ad_strdup(s);
    }
}

static void load_confirm_tools(diag *d, ad_config *c, const ad_toml *v)
{
    if (ad_toml_type_of(v) != AD_TOML_ARRAY) {
        problem(d, v, "agent.confirm_tools must be an array of tool names (or [\"*\"]), not %s",
                ad_toml_type_name(ad_toml_type_of(v)));
        return;
    }
    size_t n = ad_toml_len(v);
    c->confirm_tools = calloc(n ? n : 1, sizeof *c->confirm_tools);
    c->confirm_tools_at = calloc(n ? n : 1, sizeof *c->confirm_tools_at);
    if (!c->confirm_tools || !c->confirm_tools_at) {
        problem(d, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ad_toml *e = ad_toml_at(v, i);
        if (ad_toml_type_of(e) != AD_TOML_STRING) {
            problem(d, e, "agent.confirm_tools entries must be strings");
            continue;
        }
        c->confirm_tools_at[c->nconfirm_tools] = loc_of(e);
        c->confirm_tools[c->nconfirm_tools++] = ad_strdup(ad_toml_string(e, NULL));
    }
}

/* [tools.NAME] tables. */
static void load_tools(diag *d, ad_config *c, const ad_toml *t)
{
    size_t n = ad_toml_len(t);
    c->tools = calloc(n ? n : 1, sizeof *c->tools);
    if (!c->tools)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_toml_key_at(t, i);
        const ad_toml *tt = ad_toml_at(t, i);
        if (ad_toml_type_of(tt) != AD_TOML_TABLE) {
            problem(d, tt, "tools.%s must be a table ([tools.%s] with timeout_s, confirm, isolation)",
                    name, name);
            continue;
        }
        ad_tool_conf *tc = &c->tools[c->ntools++];
        tc->name = ad_strdup(name);
        tc->timeout_s = -1;
        tc->confirm = -1;
        tc->isolation = -1;
        tc->at = loc_of(tt);
        for (size_t j = 0; j < ad_toml_len(tt); j++) {
            const char *key = ad_toml_key_at(tt, j);
            const ad_toml *v = ad_toml_at(tt, j);
            ad_toml_type vt = ad_toml_type_of(v);
            if (strcmp(key, "timeout_s") == 0) {
                double x = vt == AD_TOML_INTEGER ? (double)ad_toml_int(v)
                           : vt == AD_TOML_FLOAT  ? ad_toml_float(v)
                                                  : -1;
                if (!(x >= 0 && x <= 86400))
                    problem(d, v, "tools.%s.timeout_s must be a number from 0 to 86400", name);
                else
                    tc->timeout_s = x;
            } else if (strcmp(key, "confirm") == 0) {
                if (vt != AD_TOML_BOOL)
                    problem(d, v, "tools.%s.confirm must be a boolean (true or false), not %s", name,
                            ad_toml_type_name(vt));
                else
                    tc->confirm = ad_toml_bool(v);
            } else if (strcmp(key, "isolation") == 0) {
                char what[128];
                snprintf(what, sizeof what, "tools.%s.isolation", name);
                tc->isolation = parse_isolation(d, v, what);
            } else {
                unknown(d, v, "tools", key);
            }
        }
    }
}

void ad_config_tool(const ad_config *c, const char *name, double *timeout_s, bool *confirm,
                    int *isolation)
{
    *timeout_s = c->tool_timeout_s;
    *isolation = c->isolation;
    *confirm = false;
    for (size_t i = 0; i < c->nconfirm_tools; i++)
        if (strcmp(c->confirm_tools[i], "*") == 0 || strcmp(c->confirm_tools[i], name) == 0)
            *confirm = true;
    for (size_t i = 0; i < c->ntools; i++) {
        const ad_tool_conf *tc = &c->tools[i];
        if (strcmp(tc->name, name) != 0)
            continue;
        if (tc->timeout_s >= 0)
            *timeout_s = tc->timeout_s;
        if (tc->confirm >= 0)
            *confirm = tc->confirm;
        if (tc->isolation >= 0)
            *isolation = tc->isolation;
    }
}

static void conf_strs(diag *d, const ad_toml *v, const char *what, ad_conf_strs *l, bool expand,
                      const char *keyvar);
static const char *conf_string(diag *d, const ad_toml *v, const char *what);

static const char *const serve_profile_keys[] = {"model", "system_prompt", "tools", "max_steps"};

/* [serve.profiles.NAME] tables. */
static void load_serve_profiles(diag *d, ad_config *c, const ad_toml *t)
{
    size_t n = ad_toml_len(t);
    c->serve.profiles = calloc(n ? n : 1, sizeof *c->serve.profiles);
    if (!c->serve.profiles) {
        problem(d, t, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_toml_key_at(t, i);
        const ad_toml *pt = ad_toml_at(t, i);
        if (ad_toml_type_of(pt) != AD_TOML_TABLE) {
            problem(d, pt, "serve.profiles.%s must be a table ([serve.profiles.%s] with model, "
                           "system_prompt, tools, max_steps)",
                    name, name);
            continue;
        }
        bool name_ok = name[0] && strlen(name) == ad_toml_key_len(t, i);
        for (const char *p = name; *p; p++)
            name_ok &= (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f;
        if (!name_ok) {
            problem(d, pt, "a profile name must be printable ASCII without spaces, not '%s'",
                    name);
            continue;
        }
        ad_serve_profile *sp = &c->serve.profiles[c->serve.nprofiles++];
        sp->name = ad_strdup(name);
        sp->at = loc_of(pt);
        for (size_t j = 0; j < ad_toml_len(pt); j++) {
            const char *key = ad_toml_key_at(pt, j);
            const ad_toml *v = ad_toml_at(pt, j);
            char what[160];
            snprintf(what, sizeof what, "serve.profiles.%s.%s", name, key);
            if (strcmp(key, "model") == 0 || strcmp(key, "system_prompt") == 0) {
                const char *s = conf_string(d, v, what);
                char **dst = key[0] == 'm' ? &sp->model : &sp->system_prompt;
                if (s && key[0] == 'm' && !s[0])
                    problem(d, v, "%s must not be empty (leave it out for provider.model)", what);
                else if (s) {
                    free(*dst);
                    *dst = ad_strdup(s);
                }
            } else if (strcmp(key, "tools") == 0) {
                conf_strs(d, v, what, &sp->tools, false, NULL);
            } else if (strcmp(key, "max_steps") == 0) {
                if (ad_toml_type_of(v) != AD_TOML_INTEGER || ad_toml_int(v) < 1 ||
                    ad_toml_int(v) > 100000)
                    problem(d, v, "%s must be an integer from 1 to 100000", what);
                else
                    sp->max_steps = (int)ad_toml_int(v);
            } else {
                const char *hint = closest_of(key, serve_profile_keys,
                                              sizeof serve_profile_keys / sizeof *serve_profile_keys);
                problem(d, v, "unknown key '%s' in [serve.profiles.%s]%s%s%s", key, name,
                        hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
            }
        }
    }
}

/* serve.listen: "HOST:PORT" with an IPv4 literal, "localhost" or "[IPv6]". */
static void check_listen(diag *d, const ad_toml *at, const char *l)
{
    const char *colon = strrchr(l, ':');
    bool ok = colon && colon > l && colon[1];
    char *end = NULL;
    long port = ok ? strtol(colon + 1, &end, 10) : -1;
    ok = ok && end && !*end && port >= 0 && port <= 65535;
    if (ok) {
        char host[64];
        size_t hl = (size_t)(colon - l);
        ok = hl < sizeof host;
        if (ok) {
            memcpy(host, l, hl);
            host[hl] = '\0';
            struct in_addr a4;
            struct in6_addr a6;
            if (host[0] == '[' && host[hl - 1] == ']') {
                host[hl - 1] = '\0';
                ok = inet_pton(AF_INET6, host + 1, &a6) == 1;
            } else {
                ok = strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, &a4) == 1;
            }
        }
    }
    if (!ok)
        problem(d, at, "serve.listen must be HOST:PORT with an IP address (127.0.0.1:8080, "
                       "[::1]:8080, 0.0.0.0:8080) and a port from 0 to 65535, not '%s'",
                l);
}

const ad_serve_profile *ad_config_serve_profile(const ad_config *c, const char *name)
{
    for (size_t i = 0; i < c->serve.nprofiles; i++)
        if (strcmp(c->serve.profiles[i].name, name) == 0)
            return &c->serve.profiles[i];
    return NULL;
}

static void load_table(diag *d, ad_config *c, const char *tname, const ad_toml *t)
{
    if (strcmp(tname, "tools") == 0) {
        load_tools(d, c, t);
        return;
    }
    if (strcmp(tname, "mcp") == 0)
        return; /* after the other tables: load_mcp() needs [provider] */
    for (size_t i = 0; i < ad_toml_len(t); i++) {
        const char *key = ad_toml_key_at(t, i);
        const ad_toml *v = ad_toml_at(t, i);
        const keydef *k = find_key(tname, key);
        if (!k) {
            unknown(d, v, tname, key);
            continue;
        }
        if (c->key_at)
            c->key_at[k - keys] = loc_of(v);
        if (strcmp(key, "isolation") == 0) {
            int iso = parse_isolation(d, v, "agent.isolation");
            if (iso >= 0)
                c->isolation = iso;
            continue;
        }
        if (strcmp(key, "confirm_tools") == 0) {
            load_confirm_tools(d, c, v);
            continue;
        }
        if (strcmp(key, "pass_env") == 0) {
            load_pass_env(d, c, v);
            continue;
        }
        if (k->kind != K_TABLE) {
            set_scalar(d, c, k, v);
            continue;
        }
        if (ad_toml_type_of(v) != AD_TOML_TABLE) {
            problem(d, v, "%s.%s must be a table, not %s", tname, key,
                    ad_toml_type_name(ad_toml_type_of(v)));
            continue;
        }
        if (strcmp(key, "profiles") == 0) {
            load_serve_profiles(d, c, v);
        } else if (strcmp(key, "headers") == 0) {
            load_headers(d, c, v);
        } else if (strcmp(key, "extra") == 0) {
            json_object_put(c->extra);
            c->extra = to_json(v);
        } else { /* plugins.config */
            size_t n = ad_toml_len(v);
            c->plugin_configs = calloc(n ? n : 1, sizeof *c->plugin_configs);
            if (!c->plugin_configs) {
                problem(d, v, "out of memory");
                continue;
            }
            for (size_t j = 0; j < n; j++) {
                const ad_toml *pc = ad_toml_at(v, j);
                if (ad_toml_type_of(pc) != AD_TOML_TABLE) {
                    problem(d, pc, "plugins.config.%s must be a table, not %s",
                            ad_toml_key_at(v, j), ad_toml_type_name(ad_toml_type_of(pc)));
                    continue;
                }
                ad_conf_ref *ref = &c->plugin_configs[c->nplugin_configs];
                if ((ref->name = ad_strdup(ad_toml_key_at(v, j))) != NULL) {
                    ref->at = loc_of(pc);
                    c->nplugin_configs++;
                }
            }
            json_object_put(c->plugin_config);
            c->plugin_config = to_json(v);
        }
    }
}

static char *dirname_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ad_strdup(".");
    if (slash == path)
        return ad_strdup("/");
    return ad_strndup(path, (size_t)(slash - path));
}

static char *resolve(const char *dir, const char *p)
{
    if (p[0] == '/')
        return ad_strdup(p);
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "%s/%s", dir, p);
    return ad_buf_steal(&b);
}

static int read_file(const char *path, ad_buf *out, char *err, size_t errlen)
{
    int rc = ad_read_file(path, 16u << 20, out);
    if (rc == AD_ETOOBIG)
        ad_errf(err, errlen, "%s: larger than 16 MiB; not a config file", path);
    else if (rc == AD_EINVAL)
        ad_errf(err, errlen, "%s: cannot open: not a regular file", path);
    else if (rc == AD_ERR)
        ad_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return rc == AD_ENOMEM ? rc : rc != AD_OK ? AD_EINVAL : AD_OK;
}

/* ---- [mcp] ------------------------------------------------------------- */

static bool is_loopback_host(const char *h, size_t n);

static const char *const mcp_server_keys[] = {
    "command",     "args",        "env",           "env_vars",       "cwd",
    "url",         "headers",     "bearer_token_env", "enabled",      "required",
    "enabled_tools", "disabled_tools", "tool_prefix", "startup_timeout_s", "tool_timeout_s",
};

static bool var_name_ok(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

/* A string value, or NULL after reporting (not a string, or a NUL in it). */
static const char *conf_string(diag *d, const ad_toml *v, const char *what)
{
    if (ad_toml_type_of(v) != AD_TOML_STRING) {
        problem(d, v, "%s must be a string, not %s", what, ad_toml_type_name(ad_toml_type_of(v)));
        return NULL;
    }
    size_t n;
    const char *s = ad_toml_string(v, &n);
    if (strlen(s) != n) {
        problem(d, v, "%s must not contain NUL characters", what);
        return NULL;
    }
    return s;
}

/*
 * s with ${VAR} and ${VAR:-default} replaced from the environment ($${
 * stands for a literal ${). An unset variable without a default, a
 * malformed reference, or the provider's key variable (keyvar) is a problem
 * at v. Returns a new string, or NULL after reporting; *expanded says
 * whether anything was replaced.
 */
static char *expand_vars(diag *d, const ad_toml *v, const char *what, const char *s,
                         const char *keyvar, bool *expanded)
{
    ad_buf b = AD_BUF_INIT;
    *expanded = false;
    for (const char *p = s; *p;) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            ad_buf_puts(&b, "${");
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            ad_buf_putc(&b, *p++);
            continue;
        }
        const char *name = p + 2, *close = strchr(name, '}');
        const char *dflt = NULL;
        size_t nlen = close ? (size_t)(close - name) : 0;
        const char *sep = close ? strstr(name, ":-") : NULL;
        if (sep && sep < close) {
            dflt = sep + 2;
            nlen = (size_t)(sep - name);
        }
        if (!close || !var_name_ok(name, nlen)) {
            problem(d, v, "%s: '%.*s' is not a variable reference: write ${NAME} or "
                          "${NAME:-default} (NAME of letters, digits and _), or $${ for a "
                          "literal ${",
                    what, close ? (int)(close - p + 1) : (int)strlen(p), p);
            ad_buf_free(&b);
            return NULL;
        }
        char var[256];
        snprintf(var, sizeof var, "%.*s", (int)nlen, name);
        if (keyvar && strcmp(var, keyvar) == 0) {
            problem(d, v, "%s: ${%s} is the provider's API key (provider.api_key_env): it is "
                          "never given to MCP servers",
                    what, var);
            ad_buf_free(&b);
            return NULL;
        }
        const char *val = getenv(var);
        if (dflt && (!val || !val[0]))
            ad_buf_append(&b, dflt, (size_t)(close - dflt));
        else if (val)
            ad_buf_puts(&b, val);
        else {
            problem(d, v, "%s: the environment variable %s is not set (${%s}); set it, or write "
                          "${%s:-default}",
                    what, var, var, var);
            ad_buf_free(&b);
            return NULL;
        }
        *expanded = true;
        p = close + 1;
    }
    char *out = b.data ? b.data : ad_strdup("");
    return out;
}

/* An array of strings into l; each entry expanded when expand is set. */
static void conf_strs(diag *d, const ad_toml *v, const char *what, ad_conf_strs *l, bool expand,
                      const char *keyvar)
{
    free_strs(l);
    if (ad_toml_type_of(v) != AD_TOML_ARRAY) {
        problem(d, v, "%s must be an array of strings, not %s", what,
                ad_toml_type_name(ad_toml_type_of(v)));
        return;
    }
    size_t n = ad_toml_len(v);
    l->v = calloc(n ? n : 1, sizeof *l->v);
    l->at = calloc(n ? n : 1, sizeof *l->at);
    l->expanded = calloc(n ? n : 1, sizeof *l->expanded);
    l->set = true;
    if (!l->v || !l->at || !l->expanded) {
        problem(d, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const ad_toml *e = ad_toml_at(v, i);
        char ewhat[160];
        snprintf(ewhat, sizeof ewhat, "%s[%zu]", what, i);
        const char *s = conf_string(d, e, ewhat);
        if (!s)
            continue;
        bool exp = false;
        char *val = expand ? expand_vars(d, e, ewhat, s, keyvar, &exp) : ad_strdup(s);
        if (!val)
            continue;
        l->v[l->n] = val;
        l->at[l->n] = loc_of(e);
        l->expanded[l->n] = exp;
        l->n++;
    }
}

/* A table of NAME = "value" into *out; values expanded when expand is set. */
static void conf_pairs(diag *d, const ad_toml *v, const char *what, ad_header **out, size_t *nout,
                       bool expand, bool http_names, const char *keyvar)
{
    free_headers(*out, *nout);
    *out = NULL;
    *nout = 0;
    if (ad_toml_type_of(v) != AD_TOML_TABLE) {
        problem(d, v, "%s must be a table of strings, not %s", what,
                ad_toml_type_name(ad_toml_type_of(v)));
        return;
    }
    size_t n = ad_toml_len(v);
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) {
        problem(d, v, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_toml_key_at(v, i);
        const ad_toml *e = ad_toml_at(v, i);
        char ewhat[200];
        snprintf(ewhat, sizeof ewhat, "%s.%s", what, name);
        bool bad = strlen(name) != ad_toml_key_len(v, i);
        if (http_names) {
            bad |= name[0] == '\0';
            for (const char *p = name; *p; p++)
                bad |= *p <= ' ' || *p == ':' || (unsigned char)*p >= 0x7f;
        } else {
            bad |= !var_name_ok(name, strlen(name));
        }
        if (bad) {
            problem(d, e, "%s: not a valid %s name", ewhat,
                    http_names ? "HTTP header" : "environment variable");
            continue;
        }
        const char *s = conf_string(d, e, ewhat);
        if (!s)
            continue;
        bool exp;
        char *val = expand ? expand_vars(d, e, ewhat, s, keyvar, &exp) : ad_strdup(s);
        if (!val)
            continue;
        if (http_names && strpbrk(val, "\r\n")) {
            problem(d, e, "%s: a header value must not contain line breaks", ewhat);
            free(val);
            continue;
        }
        (*out)[*nout].name = ad_strdup(name);
        (*out)[*nout].value = val;
        (*nout)++;
    }
}

static double conf_timeout(diag *d, const ad_toml *v, const char *what)
{
    ad_toml_type t = ad_toml_type_of(v);
    double x = t == AD_TOML_INTEGER ? (double)ad_toml_int(v) : t == AD_TOML_FLOAT ? ad_toml_float(v) : -1;
    if (!(x >= 0 && x <= 86400)) {
        problem(d, v, "%s must be a number from 0 to 86400", what);
        return -1;
    }
    return x;
}

static bool conf_bool(diag *d, const ad_toml *v, const char *what, bool *out)
{
    if (ad_toml_type_of(v) != AD_TOML_BOOL) {
        problem(d, v, "%s must be a boolean (true or false), not %s", what,
                ad_toml_type_name(ad_toml_type_of(v)));
        return false;
    }
    *out = ad_toml_bool(v);
    return true;
}

/* The host of an http:// or https:// URL: *host, *hlen bytes (an IPv6
 * address with its brackets). False when it names none. */
static bool url_host(const char *url, bool https, const char **host, size_t *hlen)
{
    /* authority = [userinfo@]host[:port], up to the first / ? or # */
    const char *auth = url + (https ? 8 : 7);
    size_t alen = strcspn(auth, "/?#");
    const char *h = auth;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@')
            h = auth + i + 1;
    size_t n = (size_t)(auth + alen - h);
    if (n && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        n = close ? (size_t)(close - h) + 1 : n;
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon)
            n = (size_t)(colon - h);
    }
    *host = h;
    *hlen = n;
    return !(n == 0 || (n == 2 && h[0] == '['));
}

static bool mcp_url_ok(diag *d, const ad_toml *v, const char *what, const char *url)
{
    bool https = strncmp(url, "https://", 8) == 0, http = strncmp(url, "http://", 7) == 0;
    if (!https && !http) {
        problem(d, v, "%s must start with http:// or https://, not '%.200s'", what, url);
        return false;
    }
    const char *host;
    size_t hlen;
    if (!url_host(url, https, &host, &hlen)) {
        problem(d, v, "%s '%.200s' has no host name", what, url);
        return false;
    }
    if (http && !is_loopback_host(host, hlen)) {
        problem(d, v, "%s '%.200s' uses plain http to a host that is not loopback: use https://",
                what, url);
        return false;
    }
    return true;
}

/* One [mcp.servers.NAME] table. */
static void load_mcp_server(diag *d, ad_config *c, const char *name, const ad_toml *t)
{
    ad_mcp_server_conf *s = &c->mcp_servers[c->nmcp_servers];
    memset(s, 0, sizeof *s);
    s->name = ad_strdup(name);
    s->enabled = true;
    s->startup_timeout_s = -1;
    s->tool_timeout_s = -1;
    s->at = loc_of(t);
    if (!s->name) {
        problem(d, t, "out of memory");
        return;
    }
    c->nmcp_servers++;
    const char *keyvar = c->api_key_env && c->api_key_env[0] ? c->api_key_env : NULL;
    /* Whether the server is enabled decides whether ${VAR}s are expanded
     * (a disabled server's variables need not be set). */
    const ad_toml *en = ad_toml_get(t, "enabled");
    bool expand = !(en && ad_toml_type_of(en) == AD_TOML_BOOL && !ad_toml_bool(en));
    const ad_toml *command = NULL, *url = NULL, *stdio_only = NULL, *http_only = NULL;
    char what[256];
    for (size_t i = 0; i < ad_toml_len(t); i++) {
        const char *key = ad_toml_key_at(t, i);
        const ad_toml *v = ad_toml_at(t, i);
        snprintf(what, sizeof what, "mcp.servers.%s.%s", name, key);
        bool exp = false;
        if (strcmp(key, "command") == 0) {
            const char *str = conf_string(d, v, what);
            command = v;
            if (str && !str[0])
                problem(d, v, "%s must not be empty", what);
            else if (str && (s->command = expand ? expand_vars(d, v, what, str, keyvar, &exp)
                                                 : ad_strdup(str)) != NULL)
                s->command_expanded = exp;
            if (s->command && !s->command[0]) {
                problem(d, v, "%s is empty after expanding its variables", what);
            } else if (s->command && s->command[0] != '/' && strchr(s->command, '/')) {
                /* A path, not a name to look up in PATH: relative to the
                 * file, as every path in it is. */
                char *abs = resolve(c->dir, s->command);
                free(s->command);
                s->command = abs;
            }
        } else if (strcmp(key, "args") == 0) {
            conf_strs(d, v, what, &s->args, expand, keyvar);
            stdio_only = stdio_only ? stdio_only : v;
        } else if (strcmp(key, "env") == 0) {
            conf_pairs(d, v, what, &s->env, &s->nenv, expand, false, keyvar);
            stdio_only = stdio_only ? stdio_only : v;
        } else if (strcmp(key, "env_vars") == 0) {
            conf_strs(d, v, what, &s->env_vars, false, NULL);
            for (size_t j = 0; j < s->env_vars.n; j++) {
                const char *var = s->env_vars.v[j];
                const ad_toml *e = ad_toml_at(v, j);
                if (!var_name_ok(var, strlen(var)))
                    problem(d, e, "%s[%zu]: '%s' is not an environment variable name", what, j,
                            var);
                else if (keyvar && strcmp(var, keyvar) == 0)
                    problem(d, e, "%s[%zu]: %s is the provider's API key (provider.api_key_env): "
                                  "it is never given to MCP servers",
                            what, j, var);
            }
            stdio_only = stdio_only ? stdio_only : v;
        } else if (strcmp(key, "cwd") == 0) {
            const char *str = conf_string(d, v, what);
            if (str && !str[0])
                problem(d, v, "%s must not be empty (leave it out for agentd's own folder)", what);
            else if (str)
                s->cwd = resolve(c->dir, str);
            stdio_only = stdio_only ? stdio_only : v;
        } else if (strcmp(key, "url") == 0) {
            const char *str = conf_string(d, v, what);
            url = v;
            if (str && (s->url = expand ? expand_vars(d, v, what, str, keyvar, &exp)
                                        : ad_strdup(str)) != NULL) {
                s->url_expanded = exp;
                if (expand && !mcp_url_ok(d, v, what, s->url)) {
                    free(s->url);
                    s->url = NULL;
                }
            }
        } else if (strcmp(key, "headers") == 0) {
            conf_pairs(d, v, what, &s->headers, &s->nheaders, expand, true, keyvar);
            http_only = http_only ? http_only : v;
        } else if (strcmp(key, "bearer_token_env") == 0) {
            const char *str = conf_string(d, v, what);
            if (str && !var_name_ok(str, strlen(str)))
                problem(d, v, "%s: '%s' is not an environment variable name", what, str);
            else if (str && keyvar && strcmp(str, keyvar) == 0)
                problem(d, v, "%s: %s is the provider's API key (provider.api_key_env): it is "
                              "never given to MCP servers",
                        what, str);
            else if (str)
                s->bearer_token_env = ad_strdup(str);
            http_only = http_only ? http_only : v;
        } else if (strcmp(key, "enabled") == 0) {
            conf_bool(d, v, what, &s->enabled);
        } else if (strcmp(key, "required") == 0) {
            conf_bool(d, v, what, &s->required);
        } else if (strcmp(key, "enabled_tools") == 0) {
            conf_strs(d, v, what, &s->enabled_tools, false, NULL);
        } else if (strcmp(key, "disabled_tools") == 0) {
            conf_strs(d, v, what, &s->disabled_tools, false, NULL);
        } else if (strcmp(key, "tool_prefix") == 0) {
            const char *str = conf_string(d, v, what);
            if (str)
                s->tool_prefix = ad_strdup(str);
        } else if (strcmp(key, "startup_timeout_s") == 0) {
            s->startup_timeout_s = conf_timeout(d, v, what);
        } else if (strcmp(key, "tool_timeout_s") == 0) {
            s->tool_timeout_s = conf_timeout(d, v, what);
        } else {
            const char *hint = closest_of(key, mcp_server_keys,
                                          sizeof mcp_server_keys / sizeof mcp_server_keys[0]);
            problem(d, v, "unknown key '%s' in [mcp.servers.%s]%s%s%s", key, name,
                    hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
        }
    }
    if (command && url)
        problem(d, url, "mcp.servers.%s has both command (stdio) and url (Streamable HTTP): "
                        "keep one",
                name);
    else if (!command && !url)
        problem(d, t, "mcp.servers.%s needs command (a program to run over stdio) or url (a "
                      "Streamable HTTP endpoint)",
                name);
    else if (url && stdio_only)
        problem(d, stdio_only, "mcp.servers.%s: args, env, env_vars and cwd are for command "
                               "(stdio) servers, and this one has a url",
                name);
    else if (command && http_only)
        problem(d, http_only, "mcp.servers.%s: headers and bearer_token_env are for url "
                              "(Streamable HTTP) servers, and this one has a command",
                name);
    if (!s->tool_prefix)
        s->tool_prefix = ad_strdup(name);
}

/* The [mcp] table: its defaults first (they may be written after the
 * servers' tables), then each server. */
static void load_mcp(diag *d, ad_config *c, const ad_toml *t)
{
    const ad_toml *servers = NULL;
    for (size_t i = 0; i < ad_toml_len(t); i++) {
        const char *key = ad_toml_key_at(t, i);
        const ad_toml *v = ad_toml_at(t, i);
        const keydef *k = find_key("mcp", key);
        if (!k) {
            unknown(d, v, "mcp", key);
            continue;
        }
        if (c->key_at)
            c->key_at[k - keys] = loc_of(v);
        if (k->kind != K_TABLE)
            set_scalar(d, c, k, v);
        else if (ad_toml_type_of(v) != AD_TOML_TABLE)
            problem(d, v, "mcp.servers must be a table of servers ([mcp.servers.NAME]), not %s",
                    ad_toml_type_name(ad_toml_type_of(v)));
        else
            servers = v;
    }
    if (!servers)
        return;
    size_t n = ad_toml_len(servers);
    c->mcp_servers = calloc(n ? n : 1, sizeof *c->mcp_servers);
    if (!c->mcp_servers) {
        problem(d, servers, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = ad_toml_key_at(servers, i);
        const ad_toml *st = ad_toml_at(servers, i);
        if (ad_toml_type_of(st) != AD_TOML_TABLE) {
            problem(d, st, "mcp.servers.%s must be a table ([mcp.servers.%s] with command or url)",
                    name, name);
            continue;
        }
        if (!name[0] || strlen(name) != ad_toml_key_len(servers, i)) {
            problem(d, st, "an MCP server needs a name ([mcp.servers.NAME])");
            continue;
        }
        load_mcp_server(d, c, name, st);
    }
    for (size_t i = 0; i < c->nmcp_servers; i++) {
        ad_mcp_server_conf *s = &c->mcp_servers[i];
        if (s->startup_timeout_s < 0)
            s->startup_timeout_s = c->mcp_startup_timeout_s;
        if (s->tool_timeout_s < 0)
            s->tool_timeout_s = c->mcp_tool_timeout_s;
    }
}

const ad_mcp_server_conf *ad_config_mcp_server(const ad_config *c, const char *name)
{
    for (size_t i = 0; i < c->nmcp_servers; i++)
        if (strcmp(c->mcp_servers[i].name, name) == 0)
            return &c->mcp_servers[i];
    return NULL;
}

int ad_config_load(ad_config *c, const char *path, char *err, size_t errlen)
{
    ad_buf text = AD_BUF_INIT;
    int rc = read_file(path, &text, err, errlen);
    if (rc != AD_OK) {
        ad_buf_free(&text);
        return rc;
    }
    ad_toml *root = NULL;
    char perr[256];
    rc = ad_toml_parse(text.data ? text.data : "", text.len, &root, perr, sizeof perr);
    ad_buf_free(&text);
    if (rc != AD_OK) {
        ad_errf(err, errlen, "%s:%s", path, perr); /* perr is "LINE:COL: message" */
        return AD_EINVAL;
    }
    free(c->path);
    free(c->dir);
    free(c->key_at);
    c->path = ad_strdup(path);
    c->dir = dirname_of(path);
    c->key_at = calloc(sizeof keys / sizeof keys[0], sizeof *c->key_at);

    diag d = {AD_BUF_INIT, path, 0};
    for (size_t i = 0; i < ad_toml_len(root); i++) {
        const char *name = ad_toml_key_at(root, i);
        const ad_toml *t = ad_toml_at(root, i);
        bool known = false;
        for (size_t j = 0; j < sizeof tables / sizeof tables[0]; j++)
            known |= strcmp(tables[j], name) == 0;
        if (!known) {
            if (ad_toml_type_of(t) == AD_TOML_TABLE)
                unknown(&d, t, NULL, name);
            else
                problem(&d, t, "unknown top-level key '%s' (settings live in tables such as "
                                 "[provider], [agent], [limits] and [plugins])",
                        name);
            continue;
        }
        if (ad_toml_type_of(t) != AD_TOML_TABLE) {
            problem(&d, t, "'%s' must be a table ([%s])", name, name);
            continue;
        }
        load_table(&d, c, name, t);
    }
    const ad_toml *mcp = ad_toml_get(root, "mcp");
    if (mcp && ad_toml_type_of(mcp) == AD_TOML_TABLE)
        load_mcp(&d, c, mcp);
    /* A required key missing from a table that is there points at the table. */
    const ad_toml *prov = ad_toml_get(root, "provider");
    if (prov && ad_toml_type_of(prov) != AD_TOML_TABLE)
        prov = NULL;
    if (!c->base_url)
        problem(&d, prov, "missing required key base_url in [provider]");
    else {
        char uerr[512];
        if (ad_config_check_url(c->base_url, c->allow_http, uerr, sizeof uerr) != AD_OK)
            problem(&d, ad_toml_get(prov, "base_url"), "%s", uerr);
    }
    if (!c->model)
        problem(&d, prov, "missing required key model in [provider]");
    else if (!c->model[0])
        problem(&d, ad_toml_get(prov, "model"), "provider.model must not be empty");
    if (c->api_key_file) {
        char *abs = resolve(c->dir, c->api_key_file);
        free(c->api_key_file);
        c->api_key_file = abs;
    }
    if (c->plugins_dir) {
        char *abs = resolve(c->dir, c->plugins_dir);
        free(c->plugins_dir);
        c->plugins_dir = abs;
    }
    if (c->sessions_path && !c->sessions_path[0]) {
        problem(&d, ad_toml_get(ad_toml_get(root, "sessions"), "path"),
                "sessions.path must not be empty (leave it out for the default)");
    } else if (c->sessions_path) {
        char *abs = resolve(c->dir, c->sessions_path);
        free(c->sessions_path);
        c->sessions_path = abs;
    }
    const ad_toml *serve = ad_toml_get(root, "serve");
    if (serve && ad_toml_type_of(serve) != AD_TOML_TABLE)
        serve = NULL;
    if (c->serve.listen)
        check_listen(&d, ad_toml_get(serve, "listen"), c->serve.listen);
    if (c->serve.approvals && strcmp(c->serve.approvals, "deny") != 0)
        problem(&d, ad_toml_get(serve, "approvals"),
                "serve.approvals must be \"deny\" (the only choice in this version: tools with "
                "confirm = true are denied), not '%s'",
                c->serve.approvals);
    if (c->serve.token_file && !c->serve.token_file[0]) {
        problem(&d, ad_toml_get(serve, "token_file"), "serve.token_file must not be empty");
    } else if (c->serve.token_file) {
        char *abs = resolve(c->dir, c->serve.token_file);
        free(c->serve.token_file);
        c->serve.token_file = abs;
    }
    if (c->serve.db && !c->serve.db[0]) {
        problem(&d, ad_toml_get(serve, "db"), "serve.db must not be empty (leave it out for the default)");
    } else if (c->serve.db) {
        char *abs = resolve(c->dir, c->serve.db);
        free(c->serve.db);
        c->serve.db = abs;
    }
    if (c->serve.token_env && !var_name_ok(c->serve.token_env, strlen(c->serve.token_env)))
        problem(&d, ad_toml_get(serve, "token_env"),
                "serve.token_env must name an environment variable, not '%s'", c->serve.token_env);
    ad_toml_free(root);
    if (d.count) {
        if (d.count > 20)
            ad_buf_printf(&d.msgs, "\n%s: ... and %d more problems", path, d.count - 20);
        ad_errf(err, errlen, "%s", d.msgs.data);
        ad_buf_free(&d.msgs);
        return AD_EINVAL;
    }
    ad_buf_free(&d.msgs);
    /* Strip one trailing slash so "{base_url}/chat/completions" has one. */
    size_t bl = c->base_url ? strlen(c->base_url) : 0;
    while (bl > 0 && c->base_url[bl - 1] == '/')
        c->base_url[--bl] = '\0';
    return AD_OK;
}

static bool is_loopback_host(const char *h, size_t n)
{
    char host[64];
    if (n == 0 || n >= sizeof host)
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (host[0] == '[' && host[n - 1] == ']') {
        struct in6_addr a6;
        host[n - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return false;
}

int ad_config_check_url(const char *url, bool allow_http, char *err, size_t errlen)
{
    bool https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0) {
        ad_errf(err, errlen, "provider.base_url must start with http:// or https://, not '%s'",
                url);
        return AD_EINVAL;
    }
    const char *host;
    size_t hlen;
    if (!url_host(url, https, &host, &hlen)) {
        ad_errf(err, errlen, "provider.base_url '%.200s' has no host name", url);
        return AD_EINVAL;
    }
    /* A URL copied from a provider's docs often names the endpoint itself:
     * agentd would post to .../chat/completions/chat/completions. */
    static const char endpoint[] = "/chat/completions";
    size_t ulen = strlen(url), elen = sizeof endpoint - 1;
    while (ulen > 0 && url[ulen - 1] == '/')
        ulen--;
    if (ulen >= elen && strncmp(url + ulen - elen, endpoint, elen) == 0) {
        size_t keep = ulen - elen;
        while (keep > 0 && url[keep - 1] == '/')
            keep--;
        ad_errf(err, errlen,
                "provider.base_url ends with /chat/completions, which agentd appends itself: "
                "drop the suffix (base_url = \"%.*s\")",
                keep > 200 ? 200 : (int)keep, url);
        return AD_EINVAL;
    }
    if (https || allow_http || is_loopback_host(host, hlen))
        return AD_OK;
    ad_errf(err, errlen,
            "provider.base_url '%.200s' uses plain http to a host that is not loopback: the key "
            "and the conversation would cross the network unencrypted; use https:// or set "
            "provider.allow_http = true",
            url);
    return AD_EINVAL;
}

void ad_config_key_source(const ad_config *c, char *out, size_t outlen)
{
    const char *v = c->api_key_env ? getenv(c->api_key_env) : NULL;
    if (c->api_key_env && (v && v[0]))
        snprintf(out, outlen, "the environment variable %s", c->api_key_env);
    else if (c->api_key_file)
        snprintf(out, outlen, "the file %s (provider.api_key_file)", c->api_key_file);
    else if (c->api_key_env)
        snprintf(out, outlen, "the environment variable %s", c->api_key_env);
    else
        snprintf(out, outlen, "provider.api_key_env (no key is configured)");
}

/* Reads the key file: a regular file nobody but its owner can read, at
 * most 64 KiB; surrounding whitespace is dropped. */
static int read_key_file(ad_config *c, char *err, size_t errlen)
{
    const char *path = c->api_key_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ad_errf(err, errlen, "cannot read provider.api_key_file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return AD_EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        ad_errf(err, errlen, "provider.api_key_file %s is not a regular file", path);
        return AD_EINVAL;
    }
    if (st.st_mode & 077) {
        close(fd);
        ad_errf(err, errlen,
                "provider.api_key_file %s can be read by group or others (mode %04o); run "
                "chmod 600 %s",
                path, (unsigned)(st.st_mode & 07777), path);
        return AD_EINVAL;
    }
    char buf[65536 + 1];
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n == sizeof buf - 1)
            break;
    }
    close(fd);
    int rc = AD_OK;
    size_t b = 0;
    while (b < n && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\n' || buf[b] == '\r'))
        b++;
    while (n > b && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\n' ||
                     buf[n - 1] == '\r'))
        n--;
    if (n == sizeof buf - 1) {
        ad_errf(err, errlen, "provider.api_key_file %s is larger than 64 KiB", path);
        rc = AD_EINVAL;
    } else if (n == b) {
        ad_errf(err, errlen, "provider.api_key_file %s is empty", path);
        rc = AD_EINVAL;
    }
    for (size_t i = b; rc == AD_OK && i < n; i++) {
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
            ad_errf(err, errlen, "the API key in %s contains control characters", path);
            rc = AD_EINVAL;
        }
    }
    if (rc == AD_OK) {
        free(c->api_key);
        c->api_key = ad_strndup(buf + b, n - b);
        if (!c->api_key)
            rc = AD_ENOMEM;
    }
    volatile char *p = buf;
    for (size_t i = 0; i < sizeof buf; i++)
        p[i] = 0;
    return rc;
}

static bool is_regular_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

char *ad_config_user_path(void)
{
    ad_buf b = AD_BUF_INIT;
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0])
        ad_buf_printf(&b, "%s/agentd/agent.toml", xdg);
    else if (home && home[0])
        ad_buf_printf(&b, "%s/.config/agentd/agent.toml", home);
    return b.data;
}

char *ad_config_find(const char *given, char **tried)
{
    if (tried)
        *tried = NULL;
    if (given)
        return ad_strdup(given);
    const char *env = getenv("AGENTD_CONFIG");
    if (env && env[0])
        return ad_strdup(env);
    if (is_regular_file("agent.toml"))
        return ad_strdup("agent.toml");
    char *user = ad_config_user_path();
    if (user && is_regular_file(user))
        return user;
    if (tried)
        *tried = user;
    else
        free(user);
    return NULL;
}

char *ad_state_path(const char *leaf)
{
    ad_buf b = AD_BUF_INIT;
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    /* The XDG spec: a relative value is invalid and must be ignored. */
    if (xdg && xdg[0] == '/')
        ad_buf_printf(&b, "%s/agentd/%s", xdg, leaf);
    else if (home && home[0])
        ad_buf_printf(&b, "%s/.local/state/agentd/%s", home, leaf);
    else
        return NULL;
    return ad_buf_steal(&b);
}

int ad_make_parents(const char *path, char *err, size_t errlen)
{
    char *p = ad_strdup(path);
    if (!p)
        return AD_ENOMEM;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            ad_errf(err, errlen, "cannot create the folder %s: %s", p, strerror(errno));
            free(p);
            return AD_ERR;
        }
        *q = '/';
    }
    free(p);
    return AD_OK;
}

int ad_make_private_file(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int rc = ad_make_parents(path, err, errlen);
        if (rc != AD_OK)
            return rc;
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            ad_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return AD_ERR;
        }
        close(fd);
    } else if (!S_ISREG(st.st_mode)) {
        ad_errf(err, errlen, "%s: not a regular file", path);
        return AD_EINVAL;
    }
    return AD_OK;
}

/* Puts where TABLE.KEY was written in front of the message in err. */
static void locate_err(const ad_config *c, const char *table, const char *key, char *err,
                       size_t errlen)
{
    char where[512], msg[1024];
    ad_config_where(c, table, key, where, sizeof where);
    if (!err || !errlen || !where[0])
        return;
    snprintf(msg, sizeof msg, "%s", err);
    ad_errf(err, errlen, "%s%s", where, msg);
}

int ad_config_read_key(ad_config *c, char *err, size_t errlen)
{
    if (c->base_url && ad_config_check_url(c->base_url, c->allow_http, err, errlen) != AD_OK) {
        locate_err(c, "provider", "base_url", err, errlen);
        return AD_EINVAL;
    }
    const char *v = c->api_key_env && c->api_key_env[0] ? getenv(c->api_key_env) : NULL;
    if (!v || !v[0]) {
        if (c->api_key_file) {
            int rc = read_key_file(c, err, errlen);
            if (rc == AD_EINVAL)
                locate_err(c, "provider", "api_key_file", err, errlen);
            return rc;
        }
        if (!c->api_key_env || !c->api_key_env[0])
            return AD_OK; /* local servers need no key */
        ad_errf(err, errlen, "the API key variable %s (provider.api_key_env) %s",
                c->api_key_env, v ? "is empty" : "is not set in the environment");
        locate_err(c, "provider", "api_key_env", err, errlen);
        return AD_EINVAL;
    }
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            ad_errf(err, errlen, "the API key in %s contains control characters", c->api_key_env);
            locate_err(c, "provider", "api_key_env", err, errlen);
            return AD_EINVAL;
        }
    }
    free(c->api_key);
    c->api_key = ad_strdup(v);
    return c->api_key ? AD_OK : AD_ENOMEM;
}

static const ad_conf_loc *key_loc(const ad_config *c, const char *table, const char *key)
{
    const keydef *k = find_key(table, key);
    return k && c->key_at ? &c->key_at[k - keys] : NULL;
}

const char *ad_config_where(const ad_config *c, const char *table, const char *key, char *buf,
                            size_t buflen)
{
    const ad_conf_loc *l = key_loc(c, table, key);
    if (l && l->line > 0 && c->path)
        snprintf(buf, buflen, "%s:%d:%d: ", c->path, l->line, l->col);
    else if (buflen)
        buf[0] = '\0';
    return buf;
}

void ad_config_unlocate(ad_config *c, const char *table, const char *key)
{
    ad_conf_loc *l = (ad_conf_loc *)key_loc(c, table, key);
    if (l)
        l->line = l->col = 0;
}

/* " (did you mean 'X'? loaded: A, B)" for an unknown name. */
static void name_hint(const ad_config *c, ad_buf *b, const char *name, const char *const *names,
                      size_t n, const char *what)
{
    if (n == 0) {
        ad_buf_printf(b, " (no %s are loaded%s)", what,
                      c->plugins_dir ? "" : ": [plugins] dir is not set");
        return;
    }
    const char *near = closest_of(name, names, n);
    ad_buf_puts(b, " (");
    if (near)
        ad_buf_printf(b, "did you mean '%s'? ", near);
    ad_buf_puts(b, "loaded: ");
    for (size_t i = 0; i < n; i++)
        ad_buf_printf(b, "%s%s", i ? ", " : "", names[i]);
    ad_buf_putc(b, ')');
}

static bool has_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

int ad_config_check_names(const ad_config *c, const char *const *tools, size_t ntools,
                          const char *const *plugins, size_t nplugins, char *err, size_t errlen)
{
    diag d = {AD_BUF_INIT, c->path ? c->path : "agent.toml", 0};
    ad_buf hint = AD_BUF_INIT;
    for (size_t i = 0; i < c->nconfirm_tools; i++) {
        const char *name = c->confirm_tools[i];
        if (strcmp(name, "*") == 0 || has_name(tools, ntools, name))
            continue;
        ad_buf_reset(&hint);
        name_hint(c, &hint, name, tools, ntools, "tools");
        problem_at(&d, c->confirm_tools_at ? c->confirm_tools_at[i] : (ad_conf_loc){0, 0},
                   "agent.confirm_tools names '%s', which is no loaded tool%s", name,
                   hint.data ? hint.data : "");
    }
    for (size_t i = 0; i < c->ntools; i++) {
        const char *name = c->tools[i].name;
        if (has_name(tools, ntools, name))
            continue;
        ad_buf_reset(&hint);
        name_hint(c, &hint, name, tools, ntools, "tools");
        problem_at(&d, c->tools[i].at, "[tools.%s] names no loaded tool%s", name,
                   hint.data ? hint.data : "");
    }
    for (size_t i = 0; i < c->nplugin_configs; i++) {
        const char *name = c->plugin_configs[i].name;
        if (has_name(plugins, nplugins, name))
            continue;
        ad_buf_reset(&hint);
        name_hint(c, &hint, name, plugins, nplugins, "plugins");
        problem_at(&d, c->plugin_configs[i].at, "[plugins.config.%s] names no loaded plugin%s",
                   name, hint.data ? hint.data : "");
    }
    ad_buf_free(&hint);
    if (d.count == 0)
        return AD_OK;
    if (d.count > 20)
        ad_buf_printf(&d.msgs, "\n%s: ... and %d more problems", d.file, d.count - 20);
    ad_errf(err, errlen, "%s", d.msgs.data ? d.msgs.data : "out of memory");
    ad_buf_free(&d.msgs);
    return AD_EINVAL;
}

bool ad_config_sensitive_header(const char *name, const char *value, const char *key)
{
    static const char *const words[] = {"auth", "key", "token", "secret", "cookie", "pass", "sign"};
    char lower[128];
    size_t n = strlen(name);
    if (n >= sizeof lower)
        return true;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(lower, words[i]))
            return true;
    return key && key[0] && strstr(value, key);
}

/* v as a TOML basic string. JSON's escapes are TOML's, but for "\/",
 * which TOML lacks: hence NOSLASHESCAPE. */
static void put_toml_str(FILE *out, const char *v)
{
    json_object *s = json_object_new_string(v);
    fputs(json_object_to_json_string_ext(s, JSON_C_TO_STRING_NOSLASHESCAPE), out);
    json_object_put(s);
}

static void print_str(FILE *out, const char *key, const char *v)
{
    fprintf(out, "%s = ", key);
    put_toml_str(out, v);
    fputc('\n', out);
}

static void print_strs(FILE *out, const char *key, const ad_conf_strs *l)
{
    fprintf(out, "%s = [", key);
    for (size_t i = 0; i < l->n; i++) {
        fputs(i ? ", " : "", out);
        if (l->expanded && l->expanded[i])
            fputs("\"<from ${...}, not shown>\"", out);
        else
            put_toml_str(out, l->v[i]);
    }
    fputs("]\n", out);
}

/* [mcp]: values that came from ${VAR}, env values and header values may
 * be credentials and are not shown. */
static void print_mcp(const ad_config *c, FILE *out)
{
    fprintf(out, "\n[mcp]\nstartup_timeout_s = %g\ntool_timeout_s = %g\nmax_result_bytes = %ld\n",
            c->mcp_startup_timeout_s, c->mcp_tool_timeout_s, c->mcp_max_result_bytes);
    fprintf(out, "max_image_bytes = %ld\n", c->mcp_max_image_bytes);
    for (size_t i = 0; i < c->nmcp_servers; i++) {
        const ad_mcp_server_conf *s = &c->mcp_servers[i];
        fputs("\n[mcp.servers.", out);
        bool bare = s->name[0] != '\0';
        for (const char *p = s->name; *p; p++)
            bare &= (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    *p == '_' || *p == '-';
        if (bare)
            fputs(s->name, out);
        else
            put_toml_str(out, s->name);
        fputs("]\n", out);
        if (s->command)
            print_str(out, "command", s->command_expanded ? "<from ${...}, not shown>" : s->command);
        if (s->args.set)
            print_strs(out, "args", &s->args);
        if (s->nenv) {
            fputs("# env:", out);
            for (size_t j = 0; j < s->nenv; j++)
                fprintf(out, " %s", s->env[j].name);
            fputs(" (values not shown)\n", out);
        }
        if (s->env_vars.set)
            print_strs(out, "env_vars", &s->env_vars);
        if (s->cwd)
            print_str(out, "cwd", s->cwd);
        if (s->url)
            print_str(out, "url", s->url_expanded ? "<from ${...}, not shown>" : s->url);
        if (s->nheaders) {
            fputs("# headers:", out);
            for (size_t j = 0; j < s->nheaders; j++)
                fprintf(out, " %s", s->headers[j].name);
            fputs(" (values not shown)\n", out);
        }
        if (s->bearer_token_env)
            print_str(out, "bearer_token_env", s->bearer_token_env);
        fprintf(out, "enabled = %s\nrequired = %s\n", s->enabled ? "true" : "false",
                s->required ? "true" : "false");
        if (s->enabled_tools.set)
            print_strs(out, "enabled_tools", &s->enabled_tools);
        if (s->disabled_tools.set)
            print_strs(out, "disabled_tools", &s->disabled_tools);
        print_str(out, "tool_prefix", s->tool_prefix ? s->tool_prefix : "");
        fprintf(out, "startup_timeout_s = %g\ntool_timeout_s = %g\n", s->startup_timeout_s,
                s->tool_timeout_s);
    }
}

/* [serve], when the file has it. */
static void print_serve(const ad_config *c, FILE *out)
{
    bool written = c->serve.nprofiles > 0;
    for (size_t i = 0; c->key_at && i < sizeof keys / sizeof keys[0]; i++)
        written |= strcmp(keys[i].table, "serve") == 0 && c->key_at[i].line > 0;
    if (!written)
        return;
    const ad_serve_conf *sv = &c->serve;
    fprintf(out, "\n[serve]\n");
    print_str(out, "listen", sv->listen ? sv->listen : "127.0.0.1:8080");
    if (sv->token_file)
        print_str(out, "token_file", sv->token_file);
    if (sv->token_env)
        print_str(out, "token_env", sv->token_env);
    fprintf(out, "max_header_bytes = %ld\nmax_headers = %ld\nmax_body_bytes = %ld\n"
                 "max_connections = %ld\nmax_connections_per_peer = %ld\nmax_runs = %ld\n"
                 "max_write_queue_bytes = %ld\nheader_timeout_s = %g\nbody_timeout_s = %g\n"
                 "idle_timeout_s = %g\nwrite_timeout_s = %g\nsse_keepalive_s = %g\n"
                 "drain_timeout_s = %g\n",
            sv->max_header_bytes, sv->max_headers, sv->max_body_bytes, sv->max_connections,
            sv->max_connections_per_peer, sv->max_runs, sv->max_write_queue_bytes,
            sv->header_timeout_s, sv->body_timeout_s, sv->idle_timeout_s, sv->write_timeout_s,
            sv->sse_keepalive_s, sv->drain_timeout_s);
    print_str(out, "approvals", sv->approvals ? sv->approvals : "deny");
    if (sv->db)
        print_str(out, "db", sv->db);
    for (size_t i = 0; i < sv->nprofiles; i++) {
        const ad_serve_profile *sp = &sv->profiles[i];
        fprintf(out, "\n[serve.profiles.%s]\n", sp->name);
        print_str(out, "model", sp->model ? sp->model : c->model ? c->model : "");
        if (sp->system_prompt)
            print_str(out, "system_prompt", sp->system_prompt);
        if (sp->tools.set)
            print_strs(out, "tools", &sp->tools);
        fprintf(out, "max_steps = %d\n", sp->max_steps ? sp->max_steps : c->max_steps);
    }
}

void ad_config_print(const ad_config *c, FILE *out)
{
    fprintf(out, "# effective settings of %s\n[provider]\n", c->path ? c->path : "(defaults)");
    print_str(out, "base_url", c->base_url ? c->base_url : "");
    if (c->api_key_env)
        print_str(out, "api_key_env", c->api_key_env);
    if (c->api_key_file)
        print_str(out, "api_key_file", c->api_key_file);
    if (c->api_key_env || c->api_key_file)
        fprintf(out, "# key: %s\n", c->api_key ? "set (value not shown)" : "not set");
    fprintf(out, "allow_http = %s\n", c->allow_http ? "true" : "false");
    print_str(out, "model", c->model ? c->model : "");
    fprintf(out, "stream = %s\ntimeout_s = %g\nconnect_timeout_s = %g\nidle_timeout_s = %g\n",
            c->stream ? "true" : "false", c->timeout_s, c->connect_timeout_s, c->idle_timeout_s);
    fprintf(out, "images = %s\n", c->images ? "true" : "false");
    fprintf(out, "max_retries = %d\nmax_retry_wait_s = %g\n", c->max_retries, c->max_retry_wait_s);
    fprintf(out, "\n[provider.headers]\n");
    for (size_t i = 0; i < c->nheaders; i++) {
        put_toml_str(out, c->headers[i].name);
        fputs(" = ", out);
        if (ad_config_sensitive_header(c->headers[i].name, c->headers[i].value, c->api_key))
            fprintf(out, "\"<%zu bytes, not shown>\"\n", strlen(c->headers[i].value));
        else {
            put_toml_str(out, c->headers[i].value);
            fputc('\n', out);
        }
    }
    fprintf(out, "\n[provider.extra]\n");
    if (c->extra) {
        json_object_object_foreach(c->extra, k, v)
        {
            fprintf(out, "# %s = %s\n", k,
                    json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE));
        }
    }
    fprintf(out, "\n[agent]\n");
    if (c->system_prompt)
        print_str(out, "system_prompt", c->system_prompt);
    fprintf(out, "max_steps = %d\n", c->max_steps);
    if (c->max_tokens)
        fprintf(out, "max_tokens = %ld\n", c->max_tokens);
    fprintf(out, "unique_tool_call_ids = %s\n", c->unique_tool_call_ids ? "true" : "false");
    fprintf(out, "tool_timeout_s = %g\nisolation = \"%s\"\n", c->tool_timeout_s,
            ad_isolation_name(c->isolation));
    if (c->nconfirm_tools) {
        fprintf(out, "confirm_tools = [");
        for (size_t i = 0; i < c->nconfirm_tools; i++) {
            fputs(i ? ", " : "", out);
            put_toml_str(out, c->confirm_tools[i]);
        }
        fprintf(out, "]\n");
    }
    fprintf(out, "\n[limits]\nmax_event_bytes = %ld\nmax_response_bytes = %ld\n"
                 "max_tool_args_bytes = %ld\nmax_tool_calls = %ld\nmax_tool_result_bytes = %ld\n",
            c->max_event_bytes, c->max_response_bytes, c->max_tool_args_bytes, c->max_tool_calls,
            c->max_tool_result_bytes);
    fprintf(out, "\n[plugins]\n");
    if (c->plugins_dir)
        print_str(out, "dir", c->plugins_dir);
    if (c->plugins_pass_env && c->plugins_pass_env[0]) {
        fprintf(out, "pass_env = [");
        for (size_t i = 0; c->plugins_pass_env[i]; i++) {
            fputs(i ? ", " : "", out);
            put_toml_str(out, c->plugins_pass_env[i]);
        }
        fprintf(out, "]\n");
    }
    if (c->plugin_config) {
        json_object_object_foreach(c->plugin_config, k, v)
        {
            fprintf(out, "# config.%s = %s\n", k,
                    json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE));
        }
    }
    fprintf(out, "\n[sessions]\nenabled = %s\none_shot = %s\n", c->sessions_enabled ? "true" : "false",
            c->sessions_one_shot ? "true" : "false");
    if (c->sessions_path)
        print_str(out, "path", c->sessions_path);
    print_mcp(c, out);
    print_serve(c, out);
    for (size_t i = 0; i < c->ntools; i++) {
        double t;
        bool confirm;
        int iso;
        ad_config_tool(c, c->tools[i].name, &t, &confirm, &iso);
        fprintf(out, "\n[tools.%s]\ntimeout_s = %g\nconfirm = %s\nisolation = \"%s\"\n",
                c->tools[i].name, t, confirm ? "true" : "false", ad_isolation_name(iso));
    }
}

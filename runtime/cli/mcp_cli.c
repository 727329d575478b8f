/*
 * mcp_cli.c -- `agentd [--config FILE] mcp list|tools|call`: talk to the
 * configured MCP servers without a model (see mcp_cli.h, docs/mcp.md).
 *
 * Each command starts the servers it needs on one loop, waits until each is
 * ready or has failed (its startup_timeout_s), does its work and stops them
 * as the specification says. No server is restarted: a one-shot command
 * reports what happened instead. The provider's key is not needed and not
 * read.
 */
#include "cli/mcp_cli.h"
#include "cli/mcp_serve.h"

#include "base/lazy_curl.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/text.h"
#include "mcp/conf.h"
#include "mcp/content.h"
#include "mcp/names.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

static const char mcp_usage[] =
    "usage: agentd [--config FILE] mcp list [--json]\n"
    "       agentd [--config FILE] mcp tools [SERVER] [--json]\n"
    "       agentd [--config FILE] mcp call SERVER TOOL [ARGS_JSON] [--json]\n"
    "       agentd [--config FILE] mcp serve [--http [HOST:]PORT] [--mcp]\n"
    "\n"
    "The MCP servers of the config's [mcp.servers.NAME] tables, without a model\n"
    "(and without the provider's API key).\n"
    "\n"
    "  list    each server: its transport, its state once started (ready, failed\n"
    "          with the reason, disabled), its tools and what it says it is\n"
    "  tools   the tools of every enabled server (or of SERVER): the server's name\n"
    "          for each, the name the model sees, the description; tools the\n"
    "          model does not get are marked with the reason\n"
    "  call    calls TOOL (the server's name or the model's) of SERVER with\n"
    "          ARGS_JSON, one JSON object (default {}), and prints the result as\n"
    "          the model would read it\n"
    "  serve   the other way round: the plugins' tools served as an MCP server\n"
    "          (agentd mcp serve --help)\n"
    "\n"
    "options (anywhere on the line):\n"
    "  -c, --config FILE   agent.toml to use (found as for a run otherwise)\n"
    "      --json          one JSON document on stdout\n"
    "  -v, --verbose       also the servers' stderr and info-level log messages\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 ok; 1 a server failed, or the tool answered isError;\n"
    "             2 usage or config error (an unknown server too); 130 interrupted\n";

bool ad_mcp_cli_wanted(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            i++;
        else if (strncmp(a, "--config=", 9) == 0 || strcmp(a, "--json") == 0)
            continue;
        else
            return strcmp(a, "mcp") == 0;
    }
    return false;
}

/* ---- output ------------------------------------------------------------- */

/* s[0..n) with control characters in caret notation and C1 controls or
 * invalid UTF-8 as U+FFFD: server text is not trusted with a terminal.
 * Newlines and tabs stay when keep_lines, else become spaces. */
static void put_safe(FILE *f, const char *s, size_t n, bool keep_lines)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '\n' || c == '\t') {
            fputc(keep_lines ? c : ' ', f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fputc('^', f);
            fputc(c == 0x7f ? '?' : c + 64, f);
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            size_t len;
            bool ok = ad_utf8_seq(p + i, n - i, &len);
            if (!ok || (c == 0xC2 && p[i + 1] < 0xA0))
                fputs("\xEF\xBF\xBD", f);
            else
                fwrite(p + i, 1, len, f);
            i += len;
        }
    }
}

static void put_safe_str(FILE *f, const char *s, bool keep_lines)
{
    put_safe(f, s, strlen(s), keep_lines);
}

static void print_json(json_object *o)
{
    fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                JSON_C_TO_STRING_NOSLASHESCAPE),
          stdout);
    fputc('\n', stdout);
}

static bool g_json;

/* A usage or config problem: on stderr, and as {"error": ...} with --json. */
static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    const char *msg = b.data ? b.data : "out of memory";
    fputs("agentd: mcp: ", stderr);
    put_safe_str(stderr, msg, true);
    fputs("\nTry 'agentd mcp --help'.\n", stderr);
    if (g_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "error", json_object_new_string(msg));
        print_json(o);
        json_object_put(o);
    }
    ad_buf_free(&b);
    return EXIT_USAGE;
}

/* ---- the servers -------------------------------------------------------- */

typedef struct cli_state cli_state;

typedef struct srv {
    cli_state *st;
    const ad_mcp_server_conf *conf;
    ad_mcp_client *c;
    char *error; /* it could not be set up */
    bool started, settled;
} srv;

struct cli_state {
    uv_loop_t loop;
    uv_signal_t sigint;
    ad_config cfg;
    srv *v;
    size_t n;
    size_t unsettled; /* started, neither ready nor failed yet */
    size_t open;      /* clients not yet closed */
    bool verbose, interrupted;
    /* mcp call */
    ad_mcp_call *call;
    bool call_done;
    int call_rc;
    const char *call_tool;
};

static void on_state(void *ud, ad_mcp_client *c, ad_mcp_state state, const char *msg)
{
    (void)c;
    (void)msg;
    srv *s = ud;
    if ((state == AD_MCP_READY || state == AD_MCP_FAILED) && !s->settled) {
        s->settled = true;
        s->st->unsettled--;
    }
}

static void on_log(void *ud, ad_mcp_client *c, int level, const char *logger, const char *msg)
{
    (void)c;
    srv *s = ud;
    if (!s->st->verbose && level < AD_MCP_LOG_WARN)
        return;
    fprintf(stderr, "agentd: mcp %s: ", s->conf->name);
    if (logger) {
        put_safe_str(stderr, logger, false);
        fputs(": ", stderr);
    }
    put_safe_str(stderr, msg, false);
    fputc('\n', stderr);
}

static void on_sigint(uv_signal_t *h, int sig)
{
    (void)sig;
    cli_state *st = h->data;
    st->interrupted = true;
}

static void start_server(cli_state *st, srv *s)
{
    static const ad_mcp_client_cb cb = {.on_state = on_state, .on_log = on_log};
    char err[1024];
    s->st = st;
    s->started = true;
    s->c = ad_mcp_client_from_conf(&st->loop, &st->cfg, s->conf, 0, &cb, s, err, sizeof err);
    if (!s->c) {
        s->error = ad_strdup(err);
        s->settled = true;
        return;
    }
    st->open++;
    st->unsettled++;
    ad_mcp_client_start(s->c);
}

/* Runs the loop until every started server is ready or failed (or Ctrl-C). */
static void wait_settled(cli_state *st)
{
    while (st->unsettled > 0 && !st->interrupted)
        uv_run(&st->loop, UV_RUN_ONCE);
}

static void on_client_closed(void *ud)
{
    srv *s = ud;
    s->st->open--;
}

static void close_all(cli_state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        if (st->v[i].c) {
            ad_mcp_client *c = st->v[i].c;
            st->v[i].c = NULL;
            ad_mcp_client_close(c, on_client_closed, &st->v[i]);
        }
    }
    /* Ctrl-C during the shutdown: it still ends as the specification
     * says, bounded by its own timers. */
    while (st->open > 0)
        uv_run(&st->loop, UV_RUN_ONCE);
}

static const char *server_error(const srv *s)
{
    if (s->error)
        return s->error;
    if (s->c && ad_mcp_client_state(s->c) != AD_MCP_READY)
        return ad_mcp_client_error(s->c) ? ad_mcp_client_error(s->c) : "did not start";
    return NULL;
}

static const char *server_state(const srv *s)
{
    if (!s->conf->enabled)
        return "disabled";
    if (!s->started)
        return "not started";
    if (s->error)
        return "failed";
    return ad_mcp_state_name(ad_mcp_client_state(s->c));
}

static const char *transport_name(const ad_mcp_server_conf *c)
{
    return c->command ? "stdio" : "http";
}

/* ---- the commands -------------------------------------------------------- */

static const char *str_of(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

static int cmd_list(cli_state *st)
{
    int rc = EXIT_OK;
    json_object *arr = g_json ? json_object_new_array() : NULL;
    size_t wname = 4;
    for (size_t i = 0; i < st->n; i++)
        if (strlen(st->v[i].conf->name) > wname)
            wname = strlen(st->v[i].conf->name);
    if (!g_json)
        printf("%-*s  %-9s  %-10s  %5s  %s\n", (int)wname, "NAME", "TRANSPORT", "STATE", "TOOLS",
               "SERVER");
    for (size_t i = 0; i < st->n; i++) {
        srv *s = &st->v[i];
        const char *err = s->conf->enabled ? server_error(s) : NULL;
        if (err)
            rc = EXIT_FAIL;
        bool ready = s->c && ad_mcp_client_state(s->c) == AD_MCP_READY;
        json_object *info = ready ? ad_mcp_client_server_info(s->c) : NULL;
        size_t ntools = ready ? ad_mcp_client_tool_count(s->c) : 0;
        if (g_json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(s->conf->name));
            json_object_object_add(o, "transport", json_object_new_string(transport_name(s->conf)));
            json_object_object_add(o, "state", json_object_new_string(server_state(s)));
            json_object_object_add(o, "required", json_object_new_boolean(s->conf->required));
            if (ready) {
                json_object_object_add(o, "tools", json_object_new_int64((int64_t)ntools));
                json_object_object_add(o, "protocol",
                                       json_object_new_string(ad_mcp_client_protocol(s->c)));
                if (info)
                    json_object_object_add(o, "serverInfo", json_object_get(info));
            }
            if (err)
                json_object_object_add(o, "error", json_object_new_string(err));
            json_object_array_add(arr, o);
            continue;
        }
        printf("%-*s  %-9s  %-10s  ", (int)wname, s->conf->name, transport_name(s->conf),
               server_state(s));
        if (ready) {
            printf("%5zu  ", ntools);
            const char *n = str_of(info, "name"), *v = str_of(info, "version");
            if (n) {
                put_safe_str(stdout, n, false);
                if (v) {
                    fputc(' ', stdout);
                    put_safe_str(stdout, v, false);
                }
                fputc(' ', stdout);
            }
            printf("(protocol %s)\n", ad_mcp_client_protocol(s->c));
        } else {
            printf("%5s\n", "-");
        }
        if (err) {
            fputs("    ", stdout);
            /* Indent the stderr lines the message may quote. */
            for (const char *p = err; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                put_safe(stdout, p, len, false);
                fputs(nl ? "\n    " : "\n", stdout);
                p += len + (nl ? 1 : 0);
            }
        }
    }
    if (g_json) {
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "servers", arr);
        print_json(doc);
        json_object_put(doc);
    }
    return rc;
}

/* The first line of s, at most max bytes (cut at a UTF-8 boundary). */
static size_t first_line(const char *s, size_t max)
{
    size_t n = strcspn(s, "\r\n");
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int cmd_tools(cli_state *st)
{
    int rc = EXIT_OK;
    ad_mcp_names names = {0};
    json_object *arr = g_json ? json_object_new_array() : NULL;
    json_object *errors = g_json ? json_object_new_array() : NULL;
    char err[512];
    for (size_t i = 0; i < st->n; i++) {
        srv *s = &st->v[i];
        if (!s->started)
            continue;
        const char *serr = server_error(s);
        if (serr) {
            rc = EXIT_FAIL;
            if (errors) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "server", json_object_new_string(s->conf->name));
                json_object_object_add(o, "error", json_object_new_string(serr));
                json_object_array_add(errors, o);
            }
            fprintf(stderr, "agentd: mcp %s: ", s->conf->name);
            put_safe_str(stderr, serr, true);
            fputc('\n', stderr);
            continue;
        }
        size_t n = ad_mcp_client_tool_count(s->c);
        /* Every offered tool first, so that each model-facing name is final. */
        const char **model = calloc(n ? n : 1, sizeof *model);
        const char **note = calloc(n ? n : 1, sizeof *note);
        char **clash = calloc(n ? n : 1, sizeof *clash);
        if (!model || !note || !clash) {
            free(model);
            free(note);
            free(clash);
            ad_mcp_names_free(&names);
            json_object_put(arr);
            json_object_put(errors);
            return usage("out of memory");
        }
        size_t first = names.n;
        for (size_t j = 0; j < n; j++) {
            const ad_mcp_tool *t = ad_mcp_client_tool(s->c, j);
            if (!ad_mcp_tool_offered(s->conf, t, &note[j]))
                continue;
            int arc;
            if (!ad_mcp_names_add(&names, s->conf->tool_prefix, t->name, (void *)t, &arc, err,
                                  sizeof err)) {
                clash[j] = ad_strdup(err);
                note[j] = clash[j];
                fprintf(stderr, "agentd: mcp %s: ", s->conf->name);
                put_safe_str(stderr, err, false);
                fputc('\n', stderr);
            }
        }
        for (size_t j = first; j < names.n; j++)
            for (size_t k = 0; k < n; k++)
                if (names.v[j].ud == (void *)ad_mcp_client_tool(s->c, k))
                    model[k] = names.v[j].model;
        if (!g_json)
            printf("%s: %zu tool%s (tool_prefix \"%s\")\n", s->conf->name, n, n == 1 ? "" : "s",
                   s->conf->tool_prefix);
        size_t w1 = 4, w2 = 10;
        for (size_t j = 0; j < n; j++) {
            size_t l1 = strlen(ad_mcp_client_tool(s->c, j)->name);
            w1 = l1 > w1 && l1 < 48 ? l1 : w1;
            w2 = model[j] && strlen(model[j]) > w2 ? strlen(model[j]) : w2;
        }
        for (size_t j = 0; j < n; j++) {
            const ad_mcp_tool *t = ad_mcp_client_tool(s->c, j);
            if (g_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "server", json_object_new_string(s->conf->name));
                json_object_object_add(o, "name", json_object_new_string(t->name));
                json_object_object_add(o, "model_name",
                                       model[j] ? json_object_new_string(model[j]) : NULL);
                json_object_object_add(o, "description", json_object_new_string(t->description));
                json_object_object_add(o, "offered", json_object_new_boolean(model[j] != NULL));
                if (note[j])
                    json_object_object_add(o, "note", json_object_new_string(note[j]));
                json_object_object_add(o, "inputSchema", json_object_get(t->input_schema));
                json_object_array_add(arr, o);
                continue;
            }
            fputs("  ", stdout);
            put_safe_str(stdout, t->name, false);
            int pad = (int)w1 - (int)strlen(t->name);
            printf("%*s  ", pad > 0 ? pad : 0, "");
            if (model[j])
                printf("%-*s  ", (int)w2, model[j]);
            else
                printf("%-*s  ", (int)w2, "-");
            if (note[j]) {
                fputs("(left out: ", stdout);
                put_safe_str(stdout, note[j], false);
                fputs(") ", stdout);
            }
            put_safe(stdout, t->description, first_line(t->description, 100), false);
            fputc('\n', stdout);
        }
        for (size_t j = 0; j < n; j++)
            free(clash[j]);
        free(clash);
        free(model);
        free(note);
    }
    ad_mcp_names_free(&names);
    if (g_json) {
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "tools", arr);
        json_object_object_add(doc, "errors", errors);
        print_json(doc);
        json_object_put(doc);
    }
    return rc;
}

static void on_call_progress(void *ud, double progress, double total, const char *message)
{
    cli_state *st = ud;
    fprintf(stderr, "agentd: mcp: %s: progress %g", st->call_tool, progress);
    if (total > 0)
        fprintf(stderr, "/%g", total);
    if (message) {
        fputs(" ", stderr);
        put_safe_str(stderr, message, false);
    }
    fputc('\n', stderr);
}

static void on_call_done(void *ud, const ad_mcp_outcome *out)
{
    cli_state *st = ud;
    st->call = NULL;
    st->call_done = true;
    const char *server = st->v[0].conf->name;
    if (out->status != AD_MCP_CALL_OK) {
        static const char *const kinds[] = {"ok", "error", "timeout", "down"};
        st->call_rc = EXIT_FAIL;
        fputs("agentd: mcp: ", stderr);
        put_safe_str(stderr, out->message, true);
        fputc('\n', stderr);
        if (g_json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "server", json_object_new_string(server));
            json_object_object_add(o, "tool", json_object_new_string(st->call_tool));
            json_object_object_add(o, "status", json_object_new_string(kinds[out->status]));
            if (out->status == AD_MCP_CALL_ERROR)
                json_object_object_add(o, "code", json_object_new_int64(out->code));
            json_object_object_add(o, "error", json_object_new_string(out->message));
            print_json(o);
            json_object_put(o);
        }
        return;
    }
    ad_mcp_content content;
    char err[256];
    ad_mcp_content_render(out->result, (size_t)st->cfg.mcp_max_result_bytes, &content, err,
                          sizeof err);
    st->call_rc = content.is_error ? EXIT_FAIL : EXIT_OK;
    if (g_json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "server", json_object_new_string(server));
        json_object_object_add(o, "tool", json_object_new_string(st->call_tool));
        json_object_object_add(o, "status", json_object_new_string("ok"));
        json_object_object_add(o, "isError", json_object_new_boolean(content.is_error));
        json_object_object_add(o, "text",
                               json_object_new_string_len(content.text ? content.text : "",
                                                          (int)content.len));
        json_object_object_add(o, "cut", json_object_new_int64((int64_t)content.cut));
        json_object_object_add(o, "result", json_object_get(out->result));
        print_json(o);
        json_object_put(o);
    } else {
        if (isatty(STDOUT_FILENO))
            put_safe(stdout, content.text, content.len, true);
        else
            fwrite(content.text, 1, content.len, stdout);
        if (content.len && content.text[content.len - 1] != '\n')
            fputc('\n', stdout);
    }
    if (content.is_error)
        fprintf(stderr, "agentd: mcp: %s: the tool answered with isError\n", st->call_tool);
    ad_mcp_content_free(&content);
}

/* TOOL as the server names it: the name itself when listed, else the
 * listed tool whose model-facing name it is, else itself (the server will
 * say what it thinks of it). */
static const char *resolve_tool(srv *s, const char *tool)
{
    if (ad_mcp_client_find_tool(s->c, tool))
        return tool;
    const char *hit = NULL;
    for (size_t i = 0; i < ad_mcp_client_tool_count(s->c) && !hit; i++) {
        const ad_mcp_tool *t = ad_mcp_client_tool(s->c, i);
        char *m = ad_mcp_model_name(s->conf->tool_prefix, t->name);
        if (m && strcmp(m, tool) == 0)
            hit = t->name;
        free(m);
    }
    if (hit)
        return hit;
    fprintf(stderr, "agentd: mcp %s: the server lists no tool '", s->conf->name);
    put_safe_str(stderr, tool, false);
    fputs("'; calling it anyway\n", stderr);
    return tool;
}

static int cmd_call(cli_state *st, const char *tool, json_object *args)
{
    srv *s = &st->v[0];
    const char *serr = server_error(s);
    if (serr) {
        fprintf(stderr, "agentd: mcp %s: ", s->conf->name);
        put_safe_str(stderr, serr, true);
        fputc('\n', stderr);
        if (g_json) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "server", json_object_new_string(s->conf->name));
            json_object_object_add(o, "tool", json_object_new_string(tool));
            json_object_object_add(o, "status", json_object_new_string("down"));
            json_object_object_add(o, "error", json_object_new_string(serr));
            print_json(o);
            json_object_put(o);
        }
        return EXIT_FAIL;
    }
    st->call_tool = resolve_tool(s, tool);
    const ad_mcp_tool *t = ad_mcp_client_find_tool(s->c, st->call_tool);
    const char *why = NULL;
    if (t && !ad_mcp_tool_offered(s->conf, t, &why))
        fprintf(stderr, "agentd: mcp %s: note: the model does not get '%s' (%s)\n", s->conf->name,
                st->call_tool, why);
    static const ad_mcp_call_cb cb = {.on_progress = on_call_progress, .on_done = on_call_done};
    st->call = ad_mcp_call_start(s->c, st->call_tool, args, s->conf->tool_timeout_s, &cb, st);
    if (!st->call)
        return usage("out of memory");
    while (!st->call_done && !st->interrupted)
        uv_run(&st->loop, UV_RUN_ONCE);
    if (!st->call_done) {
        ad_mcp_call_cancel(st->call, "interrupted (Ctrl-C)");
        st->call = NULL;
        fputs("agentd: mcp: interrupted; the call was cancelled\n", stderr);
        return EXIT_INTERRUPTED;
    }
    return st->call_rc;
}

/* ---- the command line ---------------------------------------------------- */

static int unknown_server(const ad_config *cfg, const char *name)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX;
    ad_buf all = AD_BUF_INIT;
    for (size_t i = 0; i < cfg->nmcp_servers; i++) {
        const char *n = cfg->mcp_servers[i].name;
        size_t d = ad_edit_distance(name, n);
        if (d < bestd) {
            bestd = d;
            best = n;
        }
        ad_buf_printf(&all, "%s%s", i ? ", " : "", n);
    }
    size_t limit = strlen(name) / 3 + 1 < 2 ? 2 : strlen(name) / 3 + 1;
    int rc;
    if (!cfg->nmcp_servers)
        rc = usage("no MCP server named '%s': %s has no [mcp.servers.NAME] tables", name,
                   cfg->path);
    else if (best && bestd <= limit)
        rc = usage("no MCP server named '%s' in %s (did you mean '%s'? configured: %s)", name,
                   cfg->path, best, all.data);
    else
        rc = usage("no MCP server named '%s' in %s (configured: %s)", name, cfg->path, all.data);
    ad_buf_free(&all);
    return rc;
}

/* text as exactly one JSON object (surrounding whitespace allowed), or
 * NULL with why set. */
static json_object *parse_object(const char *text, char *why, size_t whylen)
{
    size_t len = strlen(text);
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        ad_errf(why, whylen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (end < len && strchr(" \t\r\n", text[end]))
        end++;
    if (e == json_tokener_continue)
        ad_errf(why, whylen, "the text ends inside the object");
    else if (e != json_tokener_success)
        ad_errf(why, whylen, "not JSON: %s at byte %zu", json_tokener_error_desc(e), end);
    else if (!o || !json_object_is_type(o, json_type_object))
        ad_errf(why, whylen, "a JSON %s, not an object",
                o ? json_type_to_name(json_object_get_type(o)) : "null");
    else if (end < len)
        ad_errf(why, whylen, "more text after the object at byte %zu", end);
    else
        return o;
    json_object_put(o);
    return NULL;
}

static int check_output(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "agentd: mcp: cannot write the output: %s\n", strerror(errno));
        return rc == EXIT_OK ? EXIT_FAIL : rc;
    }
    return rc;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* `mcp serve` has options of its own: its arguments go to ad_mcp_serve
 * without "mcp", "serve" and --config. Returns -1 when the command is not
 * serve. */
static int maybe_serve(int argc, char **argv)
{
    const char *config = NULL;
    int verb = -1, seen_mcp = 0;
    for (int i = 1; i < argc && verb < 0; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc)
            i++;
        else if (a[0] == '-')
            continue;
        else if (!seen_mcp)
            seen_mcp = 1;
        else
            verb = i;
    }
    if (verb < 0 || strcmp(argv[verb], "serve") != 0)
        return -1;
    char **rest = calloc((size_t)argc, sizeof *rest);
    int n = 0;
    if (!rest) {
        fputs("agentd: out of memory\n", stderr);
        return EXIT_FAIL;
    }
    seen_mcp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc)
            config = argv[++i];
        else if (strncmp(a, "--config=", 9) == 0)
            config = a + 9;
        else if (i == verb || (!seen_mcp && strcmp(a, "mcp") == 0 && (seen_mcp = 1)))
            continue;
        else
            rest[n++] = argv[i];
    }
    int rc = ad_mcp_serve(config, n, rest);
    free(rest);
    return rc;
}

int ad_mcp_cli(int argc, char **argv)
{
    const char *config = NULL, *words[6] = {NULL};
    size_t nwords = 0;
    bool verbose = false, opts_done = false;
    int src = maybe_serve(argc, argv);
    if (src >= 0)
        return src;
    for (int i = 1; i < argc; i++)
        g_json |= strcmp(argv[i], "--json") == 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (!opts_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(mcp_usage, stdout);
            return EXIT_OK;
        } else if (!opts_done && (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)) {
            if (i + 1 >= argc)
                return usage("option '%s' needs a value", a);
            config = argv[++i];
        } else if (!opts_done && strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (!opts_done && strcmp(a, "--json") == 0) {
            continue;
        } else if (!opts_done && (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
            verbose = true;
        } else if (!opts_done && a[0] == '-' && a[1]) {
            return usage("unknown option '%s'", a);
        } else if (nwords < sizeof words / sizeof words[0]) {
            words[nwords++] = a;
        } else {
            return usage("unexpected argument '%s'", a);
        }
    }
    /* words[0] is "mcp" (ad_mcp_cli_wanted). */
    const char *verb = nwords > 1 ? words[1] : NULL;
    if (!verb)
        return usage("which command? list, tools [SERVER] or call SERVER TOOL [ARGS_JSON]");
    bool list = strcmp(verb, "list") == 0, tools = strcmp(verb, "tools") == 0;
    bool call = strcmp(verb, "call") == 0;
    if (!list && !tools && !call) {
        static const char *const verbs[] = {"list", "tools", "call"};
        const char *best = NULL;
        size_t bestd = 3;
        for (size_t i = 0; i < 3; i++) {
            size_t d = ad_edit_distance(verb, verbs[i]);
            if (d < bestd && d < strlen(verbs[i])) {
                bestd = d;
                best = verbs[i];
            }
        }
        if (best)
            return usage("unknown command '%s'; did you mean '%s'? (list, tools, call, serve)", verb,
                         best);
        return usage("unknown command '%s' (list, tools, call, serve)", verb);
    }
    if (list && nwords > 2)
        return usage("unexpected argument '%s'", words[2]);
    if (tools && nwords > 3)
        return usage("unexpected argument '%s'", words[3]);
    if (call && nwords < 4)
        return usage("call needs SERVER and TOOL (and optionally ARGS_JSON, one JSON object)");
    if (call && nwords > 5)
        return usage("unexpected argument '%s' (ARGS_JSON is one JSON object)", words[5]);
    json_object *args = NULL;
    if (call) {
        char why[256];
        args = nwords > 4 ? parse_object(words[4], why, sizeof why) : json_object_new_object();
        if (!args)
            return usage("ARGS_JSON must be one JSON object, such as '{\"path\": \"/tmp\"}': %s",
                         why);
    }

    char err[8192];
    char *tried = NULL;
    char *cpath = ad_config_find(config, &tried);
    if (!cpath) {
        int rc = usage("no config file: give --config FILE, set AGENTD_CONFIG, or create "
                       "./agent.toml%s%s",
                       tried ? " or " : "", tried ? tried : "");
        free(tried);
        json_object_put(args);
        return rc;
    }
    cli_state st;
    memset(&st, 0, sizeof st);
    st.verbose = verbose || (getenv("AGENTD_DEBUG") && strcmp(getenv("AGENTD_DEBUG"), "") != 0 &&
                             strcmp(getenv("AGENTD_DEBUG"), "0") != 0);
    ad_config_init(&st.cfg);
    if (ad_config_load(&st.cfg, cpath, err, sizeof err) != AD_OK) {
        free(cpath);
        /* err holds one FILE:LINE:COL line per problem. */
        int rc = usage("%s", err);
        ad_config_free(&st.cfg);
        json_object_put(args);
        return rc;
    }
    free(cpath);

    const char *only = (tools || call) && nwords > 2 ? words[2] : NULL;
    if (only && !ad_config_mcp_server(&st.cfg, only)) {
        int rc = unknown_server(&st.cfg, only);
        ad_config_free(&st.cfg);
        json_object_put(args);
        return rc;
    }
    if (only && !ad_config_mcp_server(&st.cfg, only)->enabled) {
        char where[512] = "";
        const ad_mcp_server_conf *sc = ad_config_mcp_server(&st.cfg, only);
        if (sc->at.line > 0)
            snprintf(where, sizeof where, " (%s:%d:%d)", st.cfg.path, sc->at.line, sc->at.col);
        int rc = usage("the MCP server '%s' is disabled: enabled = false in its table%s", only,
                       where);
        ad_config_free(&st.cfg);
        json_object_put(args);
        return rc;
    }
    if (!st.cfg.nmcp_servers && !g_json)
        fprintf(stderr, "agentd: mcp: %s configures no MCP servers ([mcp.servers.NAME])\n",
                st.cfg.path);

    /* A server that exits while we write to it must not kill agentd. */
    signal(SIGPIPE, SIG_IGN);
    /* Streamable HTTP servers are reached through libcurl (without it
     * their transport cannot be made, and they report so). */
    char cerr[256];
    bool http = ad_lazy_curl(cerr, sizeof cerr) == AD_OK;
    if (http)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&st.loop);
    uv_signal_init(&st.loop, &st.sigint);
    st.sigint.data = &st;
    uv_signal_start(&st.sigint, on_sigint, SIGINT);
    uv_unref((uv_handle_t *)&st.sigint);

    st.v = calloc(st.cfg.nmcp_servers ? st.cfg.nmcp_servers : 1, sizeof *st.v);
    for (size_t i = 0; st.v && i < st.cfg.nmcp_servers; i++) {
        const ad_mcp_server_conf *sc = &st.cfg.mcp_servers[i];
        if (only && strcmp(sc->name, only) != 0)
            continue;
        st.v[st.n].conf = sc;
        st.v[st.n].st = &st;
        st.n++;
    }
    for (size_t i = 0; i < st.n; i++)
        if (st.v[i].conf->enabled)
            start_server(&st, &st.v[i]);
    wait_settled(&st);

    int rc;
    if (st.interrupted) {
        fputs("agentd: mcp: interrupted\n", stderr);
        rc = EXIT_INTERRUPTED;
    } else if (list) {
        rc = cmd_list(&st);
    } else if (tools) {
        rc = cmd_tools(&st);
    } else {
        rc = cmd_call(&st, words[3], args);
    }
    rc = check_output(rc);
    close_all(&st);
    uv_close((uv_handle_t *)&st.sigint, NULL);
    uv_walk(&st.loop, close_walk, NULL);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
    if (http)
        curl_global_cleanup();
    for (size_t i = 0; i < st.n; i++)
        free(st.v[i].error);
    free(st.v);
    ad_config_free(&st.cfg);
    json_object_put(args);
    return rc;
}

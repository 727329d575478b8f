/*
 * serve_cli.c -- `agentd serve` (see serve_cli.h and docs/serve.md).
 *
 * Sets up what a run sets up (config, key, tools, the curl transport),
 * plus the bearer token, the store and the listener, then runs the loop
 * until a signal: SIGTERM or SIGINT drains (serve/api.h), a second one
 * cancels every run at once.
 */
#include "cli/serve_cli.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/lazy_curl.h"
#include "provider/curl.h"
#include "serve/api.h"
#include "serve/store.h"
#include "sinks/text.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Tokens shorter than this are refused: they can be guessed. */
#define MIN_TOKEN 16

static const char usage_text[] =
    "usage: agentd serve [--config FILE] [--listen HOST:PORT] [-q]\n"
    "\n"
    "Serves the agent over HTTP: the OpenAI Responses API (POST /v1/responses,\n"
    "GET /v1/responses/{id}, POST /v1/responses/{id}/cancel), Chat Completions\n"
    "(POST /v1/chat/completions), GET /v1/models (the [serve.profiles.NAME]) and\n"
    "GET /health. Settings: the [serve] table of the config (docs/serve.md).\n"
    "\n"
    "  --config FILE      the config (else $AGENTD_CONFIG, ./agent.toml, ...)\n"
    "  --listen HOST:PORT where to listen (serve.listen; default 127.0.0.1:8080);\n"
    "                     an address other than loopback needs a token\n"
    "                     (serve.token_file or serve.token_env)\n"
    "  -q, --quiet        no notices on stderr (errors still)\n"
    "  -h, --help         this text\n"
    "\n"
    "SIGTERM or SIGINT drains: no new runs; runs in flight finish, or are cancelled\n"
    "after serve.drain_timeout_s; a second signal cancels them at once. Exit 0\n"
    "after a drain, 1 on a runtime failure, 2 on a usage or config error.\n";

typedef struct state {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    ad_serve *serve;
    bool drained;
    int signals;
    /* Left behind on purpose when a tool still runs at exit (kept
     * reachable: they are not leaks). */
    ad_events *ev;
    ad_tool_host *tools;
    ad_transport *transport;
} state;

static state *g_left;

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "agentd serve: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'agentd serve --help'.\n");
    return EXIT_USAGE;
}

static int failf(ad_events *ev, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(ad_events *ev, int code, const char *fmt, ...)
{
    ad_buf msg = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    ad_events_fail(ev, msg.data ? msg.data : "out of memory");
    ad_buf_free(&msg);
    return code;
}

/* "HOST:PORT" (IPv4, [IPv6], localhost) into host and port. */
static bool split_listen(const char *l, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(l, ':');
    if (!colon || colon == l || !colon[1])
        return false;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return false;
    size_t hl = (size_t)(colon - l);
    if (l[0] == '[') {
        if (hl < 3 || l[hl - 1] != ']' || hl - 2 >= hostlen)
            return false;
        memcpy(host, l + 1, hl - 2);
        host[hl - 2] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return false;
    } else {
        if (hl >= hostlen)
            return false;
        memcpy(host, l, hl);
        host[hl] = '\0';
        if (strcmp(host, "localhost") == 0)
            snprintf(host, hostlen, "127.0.0.1");
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1)
            return false;
    }
    *port = (int)p;
    return true;
}

static bool loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Removes the variable from the environment, its value zeroed first. */
static void drop_env(const char *name)
{
    char *v = getenv(name);
    if (v) {
        volatile char *p = v;
        while (*p)
            *p++ = '\0';
    }
    unsetenv(name);
}

/* The bearer token from serve.token_env, else serve.token_file; *token
 * NULL when neither is set. Returns 0, or AD_EINVAL with err. */
static int read_token(const ad_config *cfg, char **token, char *err, size_t errlen)
{
    const ad_serve_conf *sc = &cfg->serve;
    char where[512];
    *token = NULL;
    ad_buf b = AD_BUF_INIT;
    if (sc->token_env && getenv(sc->token_env)) {
        ad_buf_puts(&b, getenv(sc->token_env));
        drop_env(sc->token_env); /* tools never see it */
    } else if (sc->token_file) {
        struct stat st;
        if (stat(sc->token_file, &st) == 0 && (st.st_mode & 0077)) {
            ad_errf(err, errlen, "%sserve.token_file %s can be read by others (mode %03o): "
                                 "chmod 600 it",
                    ad_config_where(cfg, "serve", "token_file", where, sizeof where),
                    sc->token_file, (unsigned)(st.st_mode & 0777));
            return AD_EINVAL;
        }
        int rc = ad_read_file(sc->token_file, 4096, &b);
        if (rc != AD_OK) {
            ad_errf(err, errlen, "%sserve.token_file %s: %s",
                    ad_config_where(cfg, "serve", "token_file", where, sizeof where),
                    sc->token_file,
                    rc == AD_ETOOBIG ? "larger than 4 KiB; not a token"
                    : rc == AD_ERR   ? strerror(errno)
                                     : "not a regular file");
            ad_buf_free(&b);
            return AD_EINVAL;
        }
    } else if (sc->token_env) {
        ad_errf(err, errlen, "%sserve.token_env names %s, which is not set",
                ad_config_where(cfg, "serve", "token_env", where, sizeof where), sc->token_env);
        return AD_EINVAL;
    } else {
        return AD_OK;
    }
    /* Surrounding whitespace (a file's newline) is not part of it. */
    size_t s = 0, e = b.len;
    while (s < e && strchr(" \t\r\n", b.data[s]))
        s++;
    while (e > s && strchr(" \t\r\n", b.data[e - 1]))
        e--;
    bool ok = e - s >= MIN_TOKEN;
    for (size_t i = s; ok && i < e; i++)
        ok = (unsigned char)b.data[i] > ' ' && (unsigned char)b.data[i] < 0x7f;
    if (!ok) {
        ad_errf(err, errlen, "the serve token (%s %s) must be at least %d printable characters "
                             "without spaces",
                sc->token_env && getenv(sc->token_env) ? "variable" : "file",
                sc->token_env ? sc->token_env : sc->token_file, MIN_TOKEN);
        volatile char *p = b.data;
        for (size_t i = 0; p && i < b.len; i++)
            p[i] = 0;
        ad_buf_free(&b);
        return AD_EINVAL;
    }
    *token = ad_strndup(b.data + s, e - s);
    volatile char *p = b.data;
    for (size_t i = 0; i < b.len; i++)
        p[i] = 0;
    ad_buf_free(&b);
    return *token ? AD_OK : AD_ENOMEM;
}

static void on_drained(void *ud)
{
    state *st = ud;
    st->drained = true;
    uv_stop(&st->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    state *st = h->data;
    (void)signum;
    if (st->signals++ == 0)
        ad_serve_drain(st->serve, on_drained, st);
    else
        ad_serve_cancel_all(st->serve);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int ad_serve_cli(int argc, char **argv, const ad_serve_hooks *hooks)
{
    const char *config = NULL, *listen = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--listen") == 0) {
            if (i + 1 >= argc)
                return usage("%s needs a value", a);
            if (a[2] == 'c')
                config = argv[++i];
            else
                listen = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (strncmp(a, "--listen=", 9) == 0) {
            listen = a + 9;
        } else {
            return usage("unknown option '%s'", a);
        }
    }
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    signal(SIGPIPE, SIG_IGN);
    ad_events *ev = ad_events_new();
    ad_sink *text = ev ? ad_text_sink_new(stderr, stderr, quiet) : NULL;
    if (!text) {
        ad_events_free(ev);
        fprintf(stderr, "agentd: out of memory\n");
        return EXIT_RUNTIME;
    }
    ad_events_add(ev, text);
    int code = EXIT_USAGE;
    char err[4096];
    ad_config cfg;
    ad_config_init(&cfg);
    state *st = calloc(1, sizeof *st);
    ad_tool_host *tools = NULL;
    ad_transport *transport = NULL;
    ad_serve_store *store = NULL;
    char *token = NULL, *dbpath = NULL;
    bool have_loop = false, curl = false;
    char *tried = NULL;
    char *path = ad_config_find(config, &tried);
    int rc;
    if (!st) {
        code = failf(ev, EXIT_RUNTIME, "out of memory");
        goto out;
    }
    if (!path) {
        failf(ev, EXIT_USAGE, "no config file: give --config FILE, set AGENTD_CONFIG, or create "
                              "./agent.toml%s%s",
              tried ? " or " : "", tried ? tried : "");
        goto out;
    }
    rc = ad_config_load(&cfg, path, err, sizeof err);
    free(path);
    free(tried);
    path = tried = NULL;
    if (rc != AD_OK) {
        failf(ev, EXIT_USAGE, "%s", err);
        goto out;
    }
    char where[512] = "";
    if (listen)
        ad_config_unlocate(&cfg, "serve", "listen");
    else
        ad_config_where(&cfg, "serve", "listen", where, sizeof where);
    const char *addr = listen ? listen : cfg.serve.listen ? cfg.serve.listen : "127.0.0.1:8080";
    char host[64];
    int port = 0;
    if (!split_listen(addr, host, sizeof host, &port)) {
        failf(ev, EXIT_USAGE, "%s%s must be HOST:PORT with an IP address (127.0.0.1:8080, "
                              "[::1]:8080), not '%s'",
              where, listen ? "--listen" : "serve.listen", addr);
        goto out;
    }
    if (read_token(&cfg, &token, err, sizeof err) != AD_OK) {
        failf(ev, EXIT_USAGE, "%s", err);
        goto out;
    }
    if (!token && !loopback(host)) {
        failf(ev, EXIT_USAGE, "%s%s %s is not a loopback address: a server others can reach needs "
                              "a token (set serve.token_file or serve.token_env)",
              where, listen ? "--listen" : "serve.listen", addr);
        goto out;
    }
    if (ad_config_read_key(&cfg, err, sizeof err) != AD_OK) {
        failf(ev, EXIT_USAGE, "%s", err);
        goto out;
    }
    if (cfg.api_key && hooks && hooks->protect_key)
        hooks->protect_key(&cfg);
    ad_events_set_secret(ev, cfg.api_key);
    if (uv_loop_init(&st->loop) != 0) {
        code = failf(ev, EXIT_RUNTIME, "cannot initialise the event loop");
        goto out;
    }
    have_loop = true;
    rc = hooks && hooks->load_tools ? hooks->load_tools(&cfg, ev, quiet, &st->loop, &tools) : -1;
    if (rc >= 0) {
        code = rc;
        goto out;
    }
    code = EXIT_RUNTIME;
    char cerr[256];
    if (ad_lazy_curl(cerr, sizeof cerr) != AD_OK) { /* libcurl is loaded on first use */
        failf(ev, EXIT_RUNTIME, "%s", cerr);
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        failf(ev, EXIT_RUNTIME, "cannot initialise libcurl");
        goto out;
    }
    curl = true;
    transport = ad_curl_new(&st->loop);
    if (!transport) {
        failf(ev, EXIT_RUNTIME, "out of memory");
        goto out;
    }
    /* [sessions] enabled = false: nothing is kept; conversations live as
     * long as the process. */
    if (cfg.sessions_enabled) {
        dbpath = cfg.serve.db ? ad_strdup(cfg.serve.db) : ad_serve_store_default_path();
        if (!dbpath) {
            failf(ev, EXIT_USAGE, "neither XDG_STATE_HOME nor HOME is set: set serve.db (or "
                                  "[sessions] enabled = false)");
            code = EXIT_USAGE;
            goto out;
        }
        size_t interrupted = 0;
        if (ad_serve_store_open(&store, &st->loop, dbpath, cfg.api_key, &interrupted, err,
                                sizeof err) != AD_OK) {
            failf(ev, EXIT_RUNTIME, "%s", err);
            goto out;
        }
        if (interrupted && !quiet)
            fprintf(stderr, "agentd: %zu response(s) were running when the server last stopped; "
                            "they are marked failed\n",
                    interrupted);
    }
    ad_serve_opts so = {&st->loop, &cfg, transport, tools, store, token, quiet ? NULL : stderr};
    st->serve = ad_serve_new(&so, err, sizeof err);
    if (!st->serve) {
        failf(ev, EXIT_RUNTIME, "%s", err);
        goto out;
    }
    if (ad_serve_listen(st->serve, host, port, err, sizeof err) != AD_OK) {
        failf(ev, EXIT_RUNTIME, "%s", err);
        ad_serve_free(st->serve);
        st->serve = NULL;
        goto out;
    }
    if (!quiet) {
        fprintf(stderr, "agentd: serving on http://%s%s%s:%d (", strchr(host, ':') ? "[" : "", host,
                strchr(host, ':') ? "]" : "", ad_serve_port(st->serve));
        if (cfg.serve.nprofiles)
            for (size_t i = 0; i < cfg.serve.nprofiles; i++)
                fprintf(stderr, "%s%s", i ? ", " : "models: ", cfg.serve.profiles[i].name);
        else
            fprintf(stderr, "model: agentd");
        fprintf(stderr, "%s%s%s)\n", token ? "; token required" : "", store ? "; store: " : "",
                store ? dbpath : "");
    }
    uv_signal_init(&st->loop, &st->sigterm);
    uv_signal_init(&st->loop, &st->sigint);
    st->sigterm.data = st->sigint.data = st;
    uv_signal_start(&st->sigterm, on_signal, SIGTERM);
    uv_signal_start(&st->sigint, on_signal, SIGINT);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    code = st->drained ? EXIT_OK : EXIT_RUNTIME;
    if (!st->drained)
        fprintf(stderr, "agentd: error: the event loop stopped before a drain\n");
    else if (!quiet)
        fprintf(stderr, "agentd: drained; exiting\n");
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    /* Closing the handles gave the signals their default action back: a
     * late one must not kill what is left of the shutdown. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    ad_serve_free(st->serve);
    st->serve = NULL;
    if (ad_tool_host_busy(tools)) {
        /* A tool that timed out still runs on a worker thread: leave
         * without unloading anything (the store is on disk already). */
        ad_serve_store_close(store);
        st->ev = ev;
        st->tools = tools;
        st->transport = transport;
        g_left = st;
        free(dbpath);
        if (token) {
            volatile char *p = token;
            while (*p)
                *p++ = 0;
            free(token);
        }
        fflush(stderr);
        _exit(code);
    }
out:
    ad_serve_store_close(store);
    ad_transport_close(transport);
    ad_tool_host_free(tools);
    if (have_loop) {
        uv_run(&st->loop, UV_RUN_DEFAULT);
        uv_walk(&st->loop, close_walk, NULL);
        uv_run(&st->loop, UV_RUN_DEFAULT);
        uv_loop_close(&st->loop);
    }
    if (curl)
        curl_global_cleanup();
    if (token) {
        volatile char *p = token;
        while (*p)
            *p++ = 0;
        free(token);
    }
    free(dbpath);
    free(path);
    free(tried);
    free(st);
    ad_config_free(&cfg);
    ad_events_free(ev);
    return code;
}

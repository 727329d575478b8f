/*
 * mcp_serve.c -- `agentd [--config FILE] mcp serve [--http [HOST:]PORT] [--mcp]`:
 * the loaded .so plugins served as an MCP server (see mcp_serve.h,
 * docs/mcp.md).
 *
 * The tools are loaded as for a run (the [plugins] folder, [tools.NAME]
 * isolation and timeouts, [plugins.config.STEM]); with --mcp the tools of
 * the configured MCP servers join them. One tool host serves every session
 * (mcp/server.h speaks the protocol); this file carries the messages:
 *
 *   stdio  one session; newline-delimited JSON-RPC on stdin and stdout.
 *          stdout is the protocol's alone: fd 1 is pointed at stderr, so
 *          what a plugin prints cannot corrupt it. EOF on stdin, SIGTERM or
 *          SIGINT end the server.
 *   http   Streamable HTTP on a loopback address (serve/http.h): POST /mcp
 *          with one message; initialize makes a session (MCP-Session-Id);
 *          a request's answer is JSON, a tools/call's an SSE stream (its
 *          progress and log lines, then the response) when the client
 *          accepts text/event-stream; notifications and responses get 202;
 *          GET gets 405 (no stream of the server's own); DELETE ends the
 *          session. Host and Origin must name a loopback host (DNS
 *          rebinding): 403 otherwise.
 */
#include "cli/mcp_serve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include <agentd/plugin.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/json.h"
#include "base/lazy_curl.h"
#include "mcp/provider.h"
#include "mcp/server.h"
#include "serve/http.h"
#include "tools/host.h"
#include "tools/plugin.h"
#include "tools/tcache.h"
#include "tools/worker.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define MAX_LINE ((size_t)64 << 20) /* one stdio message */
#define MAX_SESSIONS 256            /* HTTP sessions kept at once */

static const char serve_usage[] =
    "usage: agentd [--config FILE] mcp serve [--http [HOST:]PORT] [--mcp]\n"
    "\n"
    "Serves the tools of the config's plugins ([plugins] dir) as an MCP server:\n"
    "over stdio (one JSON-RPC message per line on stdin and stdout), or over\n"
    "Streamable HTTP on a loopback address (http://HOST:PORT/mcp; HOST defaults\n"
    "to 127.0.0.1, PORT 0 picks one). Calls go through agentd's tool host:\n"
    "[tools.NAME] isolation and timeouts apply as in a run.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE   agent.toml to use (found as for a run otherwise)\n"
    "      --http [HOST:]PORT  Streamable HTTP instead of stdio\n"
    "      --mcp           serve the tools of the configured MCP servers too\n"
    "  -h, --help          this help\n"
    "\n"
    "Exit status: 0 the client ended the session (or SIGTERM/SIGINT); 1 a runtime\n"
    "failure; 2 a usage or config error, or a plugin that does not load.\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("agentd: mcp serve: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'agentd mcp serve --help'.\n", stderr);
    return EXIT_USAGE;
}

/* ---- tools ---------------------------------------------------------------- */

static const char *plugin_config(void *ud, const char *stem)
{
    const ad_config *c = ud;
    json_object *v;
    if (!c->plugin_config || !json_object_object_get_ex(c->plugin_config, stem, &v))
        return NULL;
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static int tool_mode(void *ud, const char *name)
{
    double timeout;
    bool confirm;
    int iso;
    ad_config_tool(ud, name, &timeout, &confirm, &iso);
    return iso; /* AD_ISOLATION_* are the AD_TOOL_* modes */
}

/* Lines outside the calls (a plugin's init, an MCP server's stderr) on
 * stderr: warnings and errors, everything with AGENTD_DEBUG. The calls'
 * lines go to their sessions. */
static void on_tool_log(void *ud, const ad_tool_log_line *l)
{
    const bool *debug = ud;
    if (!*debug && l->level > AGENTD_LOG_WARN)
        return;
    char line[AD_TOOL_LOG_LINE_MAX + 512];
    size_t n = ad_tool_log_format(line, sizeof line, l, NULL);
    fwrite(line, 1, n, stderr);
}

/* ---- the server's state ------------------------------------------------------ */

typedef struct hsess hsess;

typedef struct pending {
    struct pending *next;
    hsess *hs;
    char *about;
    ad_http_req *req;
    bool sse;
} pending;

struct hsess {
    hsess *next;
    char id[33];
    ad_mcp_session *s;
    pending *pend;
    uint64_t used; /* last request, for eviction */
};

typedef struct serve_state {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    ad_config cfg;
    ad_tool_host *host;
    bool stopping;
    int exit_code;
    /* stdio */
    uv_pipe_t in, out;
    bool in_open, out_open;
    int proto_fd;
    ad_buf buf;
    bool skipping;
    ad_mcp_session *sess;
    /* http */
    ad_http_server *http;
    hsess *sessions;
    size_t nsessions;
    uint64_t tick;
} serve_state;

static void stop(serve_state *st, int code);

static void on_signal(uv_signal_t *h, int sig)
{
    (void)sig;
    stop(h->data, EXIT_OK);
}

/* ---- stdio ----------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    char data[];
} wreq;

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void stdio_send(void *ud, const char *about, const char *text, size_t len, bool final)
{
    (void)about;
    (void)final;
    serve_state *st = ud;
    if (!st->out_open)
        return;
    wreq *r = malloc(sizeof *r + len + 1);
    if (!r)
        return;
    memcpy(r->data, text, len);
    r->data[len] = '\n';
    uv_buf_t b = uv_buf_init(r->data, (unsigned)(len + 1));
    if (uv_write(&r->w, (uv_stream_t *)&st->out, &b, 1, on_written) != 0)
        free(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    static char chunk[65536];
    *b = uv_buf_init(chunk, sizeof chunk);
}

static void stdio_line(serve_state *st, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return;
    ad_mcp_session_handle(st->sess, line, len);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    serve_state *st = s->data;
    if (n < 0) {
        if (n != UV_EOF)
            fprintf(stderr, "agentd: mcp serve: reading stdin: %s\n", uv_strerror((int)n));
        stop(st, EXIT_OK);
        return;
    }
    const char *p = b->base, *end = b->base + n;
    while (p < end && !st->stopping) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!st->skipping && st->buf.len + take > MAX_LINE) {
            /* A message past the limit: dropped whole, and said so. */
            st->skipping = true;
            ad_buf_reset(&st->buf);
            static const char e[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                                    "\"message\":\"a message longer than 64 MiB\"}}";
            stdio_send(st, NULL, e, sizeof e - 1, true);
        }
        if (!st->skipping)
            ad_buf_append(&st->buf, p, take);
        if (!nl)
            break;
        if (!st->skipping)
            stdio_line(st, st->buf.data ? st->buf.data : "", st->buf.len);
        st->skipping = false;
        ad_buf_reset(&st->buf);
        p = nl + 1;
    }
}

/* The protocol owns the real stdout; fd 1 (printf in plugins, from their
 * init on) goes to stderr. */
static int take_stdout(serve_state *st, char *err, size_t errlen)
{
    fflush(stdout);
    st->proto_fd = dup(STDOUT_FILENO);
    if (st->proto_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        snprintf(err, errlen, "cannot set up stdout: %s", strerror(errno));
        return AD_ERR;
    }
    return AD_OK;
}

static int stdio_start(serve_state *st, char *err, size_t errlen)
{
    if (uv_pipe_init(&st->loop, &st->in, 0) != 0 || uv_pipe_open(&st->in, STDIN_FILENO) != 0) {
        snprintf(err, errlen, "stdin must be a pipe or a socket (the MCP client's)");
        return AD_ERR;
    }
    st->in_open = true;
    st->in.data = st;
    if (uv_pipe_init(&st->loop, &st->out, 0) != 0 || uv_pipe_open(&st->out, st->proto_fd) != 0) {
        snprintf(err, errlen, "stdout must be a pipe or a socket (the MCP client's)");
        return AD_ERR;
    }
    st->out_open = true;
    st->out.data = st;
    st->sess = ad_mcp_session_new(st->host, &st->cfg, stdio_send, st);
    if (!st->sess) {
        snprintf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    uv_read_start((uv_stream_t *)&st->in, on_alloc, on_read);
    return AD_OK;
}

/* ---- Streamable HTTP -------------------------------------------------------- */

/* "localhost", "127.0.0.1" or "[::1]", with an optional ":PORT". */
static bool loopback_host(const char *h, size_t n)
{
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(names[i]);
        if (n < l || strncasecmp(h, names[i], l) != 0)
            continue;
        if (n == l)
            return true;
        if (h[l] != ':' || n == l + 1)
            continue;
        bool digits = true;
        for (size_t k = l + 1; k < n; k++)
            digits &= h[k] >= '0' && h[k] <= '9';
        if (digits)
            return true;
    }
    return false;
}

static bool origin_ok(const char *o)
{
    if (!o)
        return true;
    const char *h = strncmp(o, "http://", 7) == 0    ? o + 7
                    : strncmp(o, "https://", 8) == 0 ? o + 8
                                                      : NULL;
    return h && loopback_host(h, strlen(h));
}

static void rpc_http_error(ad_http_req *r, int status, const char *msg)
{
    json_object *e = json_object_new_object(), *o = json_object_new_object();
    json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(o, "id", NULL);
    json_object_object_add(e, "code", json_object_new_int(-32000));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(o, "error", e);
    const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    ad_http_respond(r, status, "application/json", t, strlen(t), NULL);
    json_object_put(o);
}

static void pending_drop(hsess *hs, pending *p)
{
    for (pending **pp = &hs->pend; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    free(p->about);
    free(p);
}

static void hsess_free(serve_state *st, hsess *hs)
{
    for (hsess **pp = &st->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == hs) {
            *pp = hs->next;
            st->nsessions--;
            break;
        }
    }
    /* Requests still waiting for an answer get none: their connections
     * are closed with the server, or answered below. */
    while (hs->pend) {
        pending *p = hs->pend;
        if (p->sse)
            ad_http_sse_end(p->req);
        else
            rpc_http_error(p->req, 404, "the session was ended");
        ad_http_req_set_cb(p->req, NULL, NULL);
        pending_drop(hs, p);
    }
    ad_mcp_session_free(hs->s);
    free(hs);
}

static void http_send(void *ud, const char *about, const char *text, size_t len, bool final)
{
    hsess *hs = ud;
    pending *p = NULL;
    for (p = hs->pend; about && p; p = p->next)
        if (strcmp(p->about, about) == 0)
            break;
    if (!p)
        return; /* no request to carry it (no stream of the server's own) */
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Mcp-Session-Id: %s\r\n", hs->id);
    if (p->sse) {
        ad_buf b = AD_BUF_INIT;
        ad_buf_puts(&b, "event: message\ndata: ");
        ad_buf_append(&b, text, len);
        ad_buf_puts(&b, "\n\n");
        if (b.data)
            ad_http_sse_write(p->req, b.data, b.len);
        ad_buf_free(&b);
        if (final) {
            ad_http_req_set_cb(p->req, NULL, NULL);
            ad_http_sse_end(p->req);
            pending_drop(hs, p);
        }
    } else if (final) {
        ad_http_req_set_cb(p->req, NULL, NULL);
        ad_http_respond(p->req, 200, "application/json", text, len, hdr);
        pending_drop(hs, p);
    }
}

static void on_req_gone(void *ud, ad_http_req *req)
{
    (void)req;
    pending *p = ud;
    hsess *hs = p->hs;
    /* No resumption here: the answer has nowhere to go, the call stops. */
    char *about = ad_strdup(p->about);
    pending_drop(hs, p);
    if (about)
        ad_mcp_session_cancel(hs->s, about);
    free(about);
}

static hsess *find_session(serve_state *st, const char *id)
{
    for (hsess *hs = st->sessions; hs; hs = hs->next)
        if (strcmp(hs->id, id) == 0)
            return hs;
    return NULL;
}

static hsess *new_session(serve_state *st)
{
    if (st->nsessions >= MAX_SESSIONS) {
        /* The one idle longest, among those with nothing running. */
        hsess *old = NULL;
        for (hsess *hs = st->sessions; hs; hs = hs->next)
            if (!hs->pend && ad_mcp_session_calls(hs->s) == 0 && (!old || hs->used < old->used))
                old = hs;
        if (!old)
            return NULL;
        hsess_free(st, old);
    }
    hsess *hs = calloc(1, sizeof *hs);
    unsigned char rnd[16];
    if (!hs || uv_random(NULL, NULL, rnd, sizeof rnd, 0, NULL) != 0) {
        free(hs);
        return NULL;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hs->id + 2 * i, 3, "%02x", rnd[i]);
    hs->s = ad_mcp_session_new(st->host, &st->cfg, http_send, hs);
    if (!hs->s) {
        free(hs);
        return NULL;
    }
    hs->next = st->sessions;
    st->sessions = hs;
    st->nsessions++;
    return hs;
}

static void on_http(void *ud, ad_http_req *r)
{
    serve_state *st = ud;
    const char *method = ad_http_method(r);
    const char *host = ad_http_header(r, "Host");
    if (!host || !loopback_host(host, strlen(host)) || !origin_ok(ad_http_header(r, "Origin"))) {
        rpc_http_error(r, 403, "Forbidden: Host and Origin must name a loopback host");
        return;
    }
    if (strcmp(ad_http_path(r), "/mcp") != 0) {
        rpc_http_error(r, 404, "Not Found: the endpoint is /mcp");
        return;
    }
    const char *sid = ad_http_header(r, "Mcp-Session-Id");
    hsess *hs = sid ? find_session(st, sid) : NULL;
    if (strcmp(method, "GET") == 0) {
        ad_http_respond(r, 405, "text/plain", "", 0, "Allow: POST, DELETE\r\n");
        return;
    }
    if (strcmp(method, "DELETE") == 0) {
        if (!hs) {
            rpc_http_error(r, sid ? 404 : 400, sid ? "Session not found"
                                                   : "Bad Request: no Mcp-Session-Id");
            return;
        }
        hsess_free(st, hs);
        ad_http_respond(r, 200, NULL, "", 0, NULL);
        return;
    }
    if (strcmp(method, "POST") != 0) {
        ad_http_respond(r, 405, "text/plain", "", 0, "Allow: POST, DELETE\r\n");
        return;
    }
    size_t len = 0;
    const char *body = ad_http_body(r, &len);
    json_object *msg = NULL;
    char why[200];
    if (ad_tool_parse_json(body, len, &msg, why, sizeof why) != 0 ||
        !json_object_is_type(msg, json_type_object)) {
        json_object_put(msg);
        ad_http_respond(r, 400, "application/json",
                        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                        "\"message\":\"Parse error: the body must be one JSON-RPC message\"}}",
                        strlen("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                               "\"message\":\"Parse error: the body must be one JSON-RPC "
                               "message\"}}"),
                        NULL);
        return;
    }
    const char *m = ad_json_str(msg, "method");
    json_object *id = NULL;
    bool is_request = m && json_object_object_get_ex(msg, "id", &id) && id;
    bool init = m && strcmp(m, "initialize") == 0;
    const char *pv = ad_http_header(r, "MCP-Protocol-Version");
    if (!init && pv && strcmp(pv, "2025-11-25") != 0 && strcmp(pv, "2025-06-18") != 0 &&
        strcmp(pv, "2025-03-26") != 0) {
        json_object_put(msg);
        rpc_http_error(r, 400, "Bad Request: unsupported MCP-Protocol-Version");
        return;
    }
    if (init) {
        hs = new_session(st);
        if (!hs) {
            json_object_put(msg);
            rpc_http_error(r, 503, "too many sessions with calls running");
            return;
        }
    } else if (!hs) {
        json_object_put(msg);
        rpc_http_error(r, sid ? 404 : 400,
                       sid ? "Session not found" : "Bad Request: no valid Mcp-Session-Id");
        return;
    }
    hs->used = ++st->tick;
    if (!is_request) {
        ad_mcp_session_handle(hs->s, body, len);
        json_object_put(msg);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Mcp-Session-Id: %s\r\n", hs->id);
        ad_http_respond(r, 202, NULL, "", 0, hdr);
        return;
    }
    pending *p = calloc(1, sizeof *p);
    const char *accept = ad_http_header(r, "Accept");
    if (!p || !(p->about = ad_strdup(json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN)))) {
        free(p);
        json_object_put(msg);
        rpc_http_error(r, 500, "out of memory");
        return;
    }
    p->hs = hs;
    p->req = r;
    p->sse = strcmp(m, "tools/call") == 0 && accept && strstr(accept, "text/event-stream");
    p->next = hs->pend;
    hs->pend = p;
    json_object_put(msg);
    if (p->sse) {
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Mcp-Session-Id: %s\r\n", hs->id);
        ad_http_sse_begin(r, hdr);
    }
    static const ad_http_req_cb rcb = {.on_gone = on_req_gone};
    ad_http_req_set_cb(r, &rcb, p);
    ad_mcp_session_handle(hs->s, body, len);
}

static int http_start(serve_state *st, const char *addr, char *err, size_t errlen)
{
    char host[128] = "127.0.0.1";
    const char *port_s = addr;
    const char *colon = strrchr(addr, ':');
    if (colon) {
        size_t hl = (size_t)(colon - addr);
        if (hl == 0 || hl >= sizeof host) {
            snprintf(err, errlen, "--http wants [HOST:]PORT, not '%s'", addr);
            return AD_EINVAL;
        }
        memcpy(host, addr, hl);
        host[hl] = '\0';
        if (host[0] == '[' && host[hl - 1] == ']') {
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
        port_s = colon + 1;
    }
    char *end;
    long port = strtol(port_s, &end, 10);
    if (!port_s[0] || *end || port < 0 || port > 65535) {
        snprintf(err, errlen, "--http wants [HOST:]PORT with PORT 0-65535, not '%s'", addr);
        return AD_EINVAL;
    }
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0) {
        snprintf(err, errlen,
                 "--http listens on a loopback address only (127.0.0.1, ::1, localhost), not "
                 "'%s': MCP over HTTP without authentication must not be reachable from "
                 "elsewhere",
                 host);
        return AD_EINVAL;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    ad_http_opts ho;
    ad_http_opts_default(&ho);
    ho.max_body_bytes = (size_t)16 << 20;
    ho.idle_timeout_s = 300;
    st->http = ad_http_server_new(&st->loop, &ho, on_http, st);
    if (!st->http) {
        snprintf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    int rc = ad_http_server_listen(st->http, host, (int)port, err, errlen);
    if (rc != AD_OK)
        return rc;
    fprintf(stderr, "agentd: mcp serve: listening on http://%s%s%s:%d/mcp\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            ad_http_server_port(st->http));
    fflush(stderr);
    return AD_OK;
}

/* ---- the end ------------------------------------------------------------------- */

static void on_out_shut(uv_shutdown_t *req, int status)
{
    (void)status;
    serve_state *st = req->data;
    free(req);
    uv_close((uv_handle_t *)&st->out, NULL);
}

static void stop(serve_state *st, int code)
{
    if (st->stopping)
        return;
    st->stopping = true;
    st->exit_code = code;
    ad_mcp_session_free(st->sess);
    st->sess = NULL;
    while (st->sessions)
        hsess_free(st, st->sessions);
    if (st->http) {
        ad_http_server_free(st->http);
        st->http = NULL;
    }
    if (st->in_open) {
        uv_read_stop((uv_stream_t *)&st->in);
        uv_close((uv_handle_t *)&st->in, NULL);
        st->in_open = false;
    }
    if (st->out_open) {
        /* What was answered still goes out. */
        st->out_open = false;
        uv_shutdown_t *sh = malloc(sizeof *sh);
        if (sh) {
            sh->data = st;
            if (uv_shutdown(sh, (uv_stream_t *)&st->out, on_out_shut) == 0)
                sh = NULL;
        }
        if (sh) {
            free(sh);
            uv_close((uv_handle_t *)&st->out, NULL);
        }
    }
    uv_signal_stop(&st->sigint);
    uv_signal_stop(&st->sigterm);
    /* The host's handles keep the loop alive: the caller frees it next. */
    uv_stop(&st->loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int ad_mcp_serve(const char *config, int argc, char **argv)
{
    const char *http = NULL;
    bool with_mcp = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(serve_usage, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--http") == 0) {
            if (i + 1 >= argc)
                return usage("--http needs [HOST:]PORT");
            http = argv[++i];
        } else if (strncmp(a, "--http=", 7) == 0) {
            http = a + 7;
        } else if (strcmp(a, "--mcp") == 0) {
            with_mcp = true;
        } else if (a[0] == '-') {
            return usage("unknown option '%s'", a);
        } else {
            return usage("unexpected argument '%s'", a);
        }
    }
    char err[8192];
    char *tried = NULL;
    char *cpath = ad_config_find(config, &tried);
    if (!cpath) {
        int rc = usage("no config file: give --config FILE, set AGENTD_CONFIG, or create "
                       "./agent.toml%s%s",
                       tried ? " or " : "", tried ? tried : "");
        free(tried);
        return rc;
    }
    static serve_state st;
    memset(&st, 0, sizeof st);
    st.proto_fd = -1;
    ad_config_init(&st.cfg);
    if (ad_config_load(&st.cfg, cpath, err, sizeof err) != AD_OK) {
        free(cpath);
        fprintf(stderr, "agentd: %s\n", err);
        ad_config_free(&st.cfg);
        return EXIT_USAGE;
    }
    free(cpath);
    /* Plugins never see the provider's key: serving needs none. */
    if (st.cfg.api_key_env)
        unsetenv(st.cfg.api_key_env);
    signal(SIGPIPE, SIG_IGN);
    /* libcurl (loaded on first use) serves the MCP servers over HTTP. */
    char cerr[256];
    bool curl = ad_lazy_curl(cerr, sizeof cerr) == AD_OK;
    if (curl)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&st.loop);
    int code = EXIT_FAIL;
    st.host = ad_tool_host_new(&st.loop);
    if (!st.host) {
        fprintf(stderr, "agentd: mcp serve: out of memory\n");
        goto out;
    }
    const char *debug = getenv("AGENTD_DEBUG");
    static bool debug_on;
    debug_on = debug && debug[0] && strcmp(debug, "0") != 0;
    /* Every level is made: a session's client chooses with logging/setLevel. */
    ad_tool_host_set_log(st.host, on_tool_log, &debug_on, AGENTD_LOG_DEBUG);
    ad_tool_host_set_result_max(st.host, (size_t)st.cfg.max_tool_result_bytes);
    if (!http && take_stdout(&st, err, sizeof err) != AD_OK) {
        fprintf(stderr, "agentd: mcp serve: %s\n", err);
        goto out;
    }
    ad_isolate_opts io = {NULL, st.cfg.api_key_env, st.cfg.tool_timeout_s,
                          (const char *const *)st.cfg.plugins_pass_env};
    /* As in a run: plugins none of whose tools runs in process are known
     * from the tool cache or a describing worker (docs/plugins.md). */
    char *cache = ad_tcache_default_dir();
    ad_plugin_opts po = {.config = plugin_config, .config_ud = &st.cfg, .isolate = &io,
                         .cache_dir = cache};
    bool any_iso = st.cfg.isolation != AD_ISOLATION_NONE;
    for (size_t i = 0; i < st.cfg.ntools; i++)
        any_iso |= st.cfg.tools[i].isolation > AD_ISOLATION_NONE;
    if (any_iso) {
        po.mode = tool_mode;
        po.mode_ud = &st.cfg;
    }
    int lrc = st.cfg.plugins_dir
                  ? ad_plugin_load_dir(st.host, st.cfg.plugins_dir, &po, err, sizeof err)
                  : AD_OK;
    free(cache);
    if (lrc != AD_OK) {
        fprintf(stderr, "agentd: mcp serve: %s\n", err);
        code = EXIT_USAGE;
        goto out;
    }
    if (with_mcp && ad_mcp_provider_add(st.host, &st.cfg, NULL, err, sizeof err) != AD_OK) {
        fprintf(stderr, "agentd: mcp serve: %s\n", err);
        code = EXIT_USAGE;
        goto out;
    }
    if (ad_tool_host_count(st.host) == 0)
        fprintf(stderr, "agentd: mcp serve: warning: no tools to serve (%s)\n",
                st.cfg.plugins_dir ? "the plugins folder has none" : "set [plugins] dir");
    uv_signal_init(&st.loop, &st.sigint);
    uv_signal_init(&st.loop, &st.sigterm);
    st.sigint.data = st.sigterm.data = &st;
    uv_signal_start(&st.sigint, on_signal, SIGINT);
    uv_signal_start(&st.sigterm, on_signal, SIGTERM);
    int rc = http ? http_start(&st, http, err, sizeof err) : stdio_start(&st, err, sizeof err);
    if (rc != AD_OK) {
        fprintf(stderr, "agentd: mcp serve: %s\n", err);
        code = rc == AD_EINVAL ? EXIT_USAGE : EXIT_FAIL;
        stop(&st, code);
        goto out;
    }
    uv_run(&st.loop, UV_RUN_DEFAULT);
    code = st.exit_code;
out:
    if (!st.stopping)
        stop(&st, code);
    if (st.host && ad_tool_host_busy(st.host)) {
        /* A tool still runs plugin code on a thread: leave without
         * unloading it. */
        fflush(stderr);
        _exit(code);
    }
    ad_tool_host_free(st.host);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    ad_plugin_worker_reap(1.0); /* idle plugin workers end by themselves */
    uv_walk(&st.loop, close_walk, NULL);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);
    if (st.proto_fd >= 0)
        close(st.proto_fd);
    ad_buf_free(&st.buf);
    ad_config_free(&st.cfg);
    if (curl)
        curl_global_cleanup();
    return code;
}

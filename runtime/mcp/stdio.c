/*
 * stdio.c -- the MCP stdio transport on a libuv loop (see stdio.h).
 *
 * Each open() creates one `proc`: the child and its three pipes, a timer,
 * and the read buffers. The transport forgets a proc when its connection
 * ends (on_closed) or when stop() takes it over; the proc then finishes on
 * its own (the child is made to exit, every handle closed) and is freed by
 * the last close callback. The transport counts its procs, so that
 * on_stopped comes only once every child it started is gone, and so that
 * free() may be called while a forgotten proc still cleans up (the memory
 * then goes with the last proc).
 */
#define _GNU_SOURCE

#include "mcp/stdio.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"

#define DEFAULT_MAX_LINE ((size_t)64 << 20)
#define DEFAULT_GRACE_S 2.0
#define DRAIN_MS 250     /* after the exit: the rest of stdout and stderr */
#define EXIT_WAIT_MS 500 /* after stdout's end: the exit, to say how it ended */
#define LOG_LINE_MAX 4096
#define TAIL_MAX 2048

typedef struct stdio_t stdio_t;

enum phase { RUNNING, DRAIN, EXIT_WAIT, STOP_STDIN, STOP_TERM, STOP_KILL };

typedef struct proc {
    stdio_t *t; /* the transport that started it (outlives it) */
    uv_process_t process;
    uv_pipe_t in, out, err;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int handles; /* not yet closed; the proc is freed when none is left */
    bool finishing;
    bool exited, out_eof, err_eof, in_closed, stopping, reported;
    int64_t status;
    int sig;
    enum phase phase;
    ad_buf line;    /* the stdout line being read */
    bool skipping;  /* the current line went past max_line */
    size_t skipped; /* its bytes so far */
    char head[1024]; /* its first bytes */
    size_t headlen;
    ad_buf eline;   /* the stderr line being read */
    char obuf[65536], ebuf[8192];
} proc;

struct stdio_t {
    ad_mcp_transport base;
    uv_loop_t *loop;
    char *command, **argv, *cwd, **env;
    size_t max_line;
    double stdin_grace_s, term_grace_s;
    proc *cur;       /* the open connection, or NULL */
    int nprocs;      /* procs not yet freed */
    ad_buf tail;     /* the last lines of the server's stderr */
    uv_timer_t idle; /* for an on_stopped without a connection */
    void (*on_stopped)(void *ud);
    void *stopped_ud;
    bool stop_pending, free_pending;
};

typedef struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
} wreq;

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* ---- environment ------------------------------------------------------- */

void ad_mcp_env_free(char **env)
{
    free_strv(env);
}

/* Sets or replaces NAME in env (n entries, room for one more). */
static int env_put(char ***env, size_t *n, const char *name, const char *value, const char *secret)
{
    if (secret && strlen(secret) >= AD_REDACT_MIN && strstr(value, secret))
        return AD_OK;
    ad_buf b = AD_BUF_INIT;
    if (ad_buf_printf(&b, "%s=%s", name, value) != AD_OK)
        return AD_ENOMEM;
    size_t nl = strlen(name);
    for (size_t i = 0; i < *n; i++) {
        if (strncmp((*env)[i], name, nl) == 0 && (*env)[i][nl] == '=') {
            free((*env)[i]);
            (*env)[i] = b.data;
            return AD_OK;
        }
    }
    char **v = realloc(*env, (*n + 2) * sizeof *v);
    if (!v) {
        ad_buf_free(&b);
        return AD_ENOMEM;
    }
    v[(*n)++] = b.data;
    v[*n] = NULL;
    *env = v;
    return AD_OK;
}

char **ad_mcp_env_build(const ad_header *env, size_t nenv, char *const *pass, size_t npass,
                        const char *secret)
{
    static const char *const inherited[] = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"};
    char **out = calloc(1, sizeof *out);
    size_t n = 0;
    int rc = out ? AD_OK : AD_ENOMEM;
    for (size_t i = 0; rc == AD_OK && i < sizeof inherited / sizeof inherited[0]; i++) {
        const char *v = getenv(inherited[i]);
        if (v)
            rc = env_put(&out, &n, inherited[i], v, secret);
    }
    for (size_t i = 0; rc == AD_OK && i < nenv; i++)
        rc = env_put(&out, &n, env[i].name, env[i].value, secret);
    for (size_t i = 0; rc == AD_OK && i < npass; i++) {
        const char *v = getenv(pass[i]);
        if (v)
            rc = env_put(&out, &n, pass[i], v, secret);
    }
    if (rc != AD_OK) {
        free_strv(out);
        return NULL;
    }
    return out;
}

/* ---- the end of a proc ------------------------------------------------- */

static void transport_release(stdio_t *t);

static void maybe_stopped(stdio_t *t)
{
    if (t->stop_pending && t->nprocs == 0 && !t->cur) {
        t->stop_pending = false;
        if (t->on_stopped)
            t->on_stopped(t->stopped_ud);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    proc *p = h->data;
    if (--p->handles > 0)
        return;
    stdio_t *t = p->t;
    ad_buf_free(&p->line);
    ad_buf_free(&p->eline);
    free(p);
    t->nprocs--;
    if (t->free_pending && t->nprocs == 0) {
        transport_release(t);
        return;
    }
    maybe_stopped(t);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Closes everything; the proc goes with the last close callback. */
static void proc_finish(proc *p)
{
    if (p->finishing)
        return;
    p->finishing = true;
    close_handle((uv_handle_t *)&p->in);
    close_handle((uv_handle_t *)&p->out);
    close_handle((uv_handle_t *)&p->err);
    close_handle((uv_handle_t *)&p->timer);
    close_handle((uv_handle_t *)&p->process);
}

static bool attached(const proc *p)
{
    return p->t->cur == p && !p->stopping;
}

/* The whole process group, else the process alone. */
static void signal_server(proc *p, int sig)
{
    if (p->exited)
        return;
    if (kill(-p->process.pid, sig) != 0)
        uv_process_kill(&p->process, sig);
}

static void describe_end(const proc *p, char *out, size_t outlen)
{
    if (!p->exited)
        snprintf(out, outlen, "closed its stdout");
    else if (p->sig) {
        const char *name = sigabbrev_np(p->sig);
        if (name)
            snprintf(out, outlen, "was killed by signal %s", name);
        else
            snprintf(out, outlen, "was killed by signal %d", p->sig);
    } else
        snprintf(out, outlen, "exited with status %lld", (long long)p->status);
}

static void begin_stop(proc *p);

/* The connection ended by itself: the owner hears of it once. */
static void report_closed(proc *p)
{
    if (p->reported)
        return;
    p->reported = true;
    stdio_t *t = p->t;
    bool tell = attached(p);
    if (t->cur == p)
        t->cur = NULL;
    char why[128];
    describe_end(p, why, sizeof why);
    if (p->exited)
        proc_finish(p);
    else
        begin_stop(p); /* it closed its stdout but lives on */
    if (tell && t->base.cb && t->base.cb->on_closed)
        t->base.cb->on_closed(t->base.ud, why);
}

static void on_timer(uv_timer_t *tm)
{
    proc *p = tm->data;
    switch (p->phase) {
    case DRAIN:
    case EXIT_WAIT:
        report_closed(p);
        break;
    case STOP_STDIN:
        p->phase = STOP_TERM;
        signal_server(p, SIGTERM);
        uv_timer_start(&p->timer, on_timer, (uint64_t)(p->t->term_grace_s * 1000), 0);
        break;
    case STOP_TERM:
        p->phase = STOP_KILL;
        signal_server(p, SIGKILL);
        break;
    default:
        break;
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    proc *p = req->data;
    close_handle((uv_handle_t *)&p->in);
}

static void close_stdin(proc *p)
{
    if (p->in_closed)
        return;
    p->in_closed = true;
    p->shut.data = p;
    /* After what is queued (a notifications/cancelled) is written. */
    if (uv_shutdown(&p->shut, (uv_stream_t *)&p->in, on_shutdown) != 0)
        close_handle((uv_handle_t *)&p->in);
}

/* Makes the server exit: stdin closed, then SIGTERM, then SIGKILL. Its
 * output is still read (and dropped), so that it cannot block on a full
 * pipe instead of exiting. */
static void begin_stop(proc *p)
{
    if (p->stopping)
        return;
    p->stopping = true;
    if (p->exited) {
        proc_finish(p);
        return;
    }
    close_stdin(p);
    p->phase = STOP_STDIN;
    uv_timer_start(&p->timer, on_timer, (uint64_t)(p->t->stdin_grace_s * 1000), 0);
}

static void check_end(proc *p)
{
    if (p->stopping) {
        if (p->exited)
            proc_finish(p);
        return;
    }
    if (p->exited && p->out_eof && p->err_eof) {
        uv_timer_stop(&p->timer);
        report_closed(p);
    } else if (p->exited && p->phase != DRAIN) {
        p->phase = DRAIN;
        uv_timer_start(&p->timer, on_timer, DRAIN_MS, 0);
    } else if (!p->exited && p->out_eof && p->phase == RUNNING) {
        p->phase = EXIT_WAIT;
        uv_timer_start(&p->timer, on_timer, EXIT_WAIT_MS, 0);
    }
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig)
{
    proc *p = h->data;
    p->status = status;
    p->sig = sig;
    /* What the server left behind in its process group goes with it. */
    kill(-h->pid, SIGKILL);
    p->exited = true;
    check_end(p);
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc_out(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    proc *p = h->data;
    *buf = uv_buf_init(p->obuf, sizeof p->obuf);
}

static void on_alloc_err(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    proc *p = h->data;
    *buf = uv_buf_init(p->ebuf, sizeof p->ebuf);
}

static void tell_log(proc *p, int level, const char *line)
{
    stdio_t *t = p->t;
    if (attached(p) && t->base.cb && t->base.cb->on_log)
        t->base.cb->on_log(t->base.ud, level, line);
}

static void end_line(proc *p)
{
    stdio_t *t = p->t;
    if (p->skipping) {
        char msg[200];
        size_t total = p->skipped;
        snprintf(msg, sizeof msg,
                 "skipped a line of %zu bytes on the server's stdout: longer than the limit of %zu "
                 "bytes",
                 total, t->max_line);
        p->skipping = false;
        p->skipped = 0;
        tell_log(p, AD_MCP_LOG_WARN, msg);
        if (attached(p) && t->base.cb && t->base.cb->on_oversize)
            t->base.cb->on_oversize(t->base.ud, p->head, p->headlen, total, t->max_line);
        return;
    }
    size_t n = p->line.len;
    if (n && p->line.data[n - 1] == '\r')
        n--;
    size_t lead = 0;
    while (lead < n && (p->line.data[lead] == ' ' || p->line.data[lead] == '\t'))
        lead++;
    if (lead < n && attached(p) && t->base.cb && t->base.cb->on_message)
        t->base.cb->on_message(t->base.ud, p->line.data + lead, n - lead);
    /* A huge message's buffer is given back; an ordinary one is reused. */
    if (p->line.cap > ((size_t)1 << 20))
        ad_buf_free(&p->line);
    else
        ad_buf_reset(&p->line);
}

static void out_data(proc *p, const char *d, size_t n)
{
    size_t max = p->t->max_line;
    while (n) {
        const char *nl = memchr(d, '\n', n);
        size_t seg = nl ? (size_t)(nl - d) : n;
        if (p->skipping) {
            p->skipped += seg;
        } else if (p->line.len + seg > max) {
            p->skipping = true;
            p->skipped = p->line.len + seg;
            /* The head, from what was kept and what came now. */
            p->headlen = p->line.len < sizeof p->head ? p->line.len : sizeof p->head;
            memcpy(p->head, p->line.data ? p->line.data : "", p->headlen);
            size_t more = sizeof p->head - p->headlen < seg ? sizeof p->head - p->headlen : seg;
            memcpy(p->head + p->headlen, d, more);
            p->headlen += more;
            ad_buf_free(&p->line);
        } else if (ad_buf_append(&p->line, d, seg) != AD_OK) {
            /* No memory for the line: it is skipped, as a long one is. */
            p->skipping = true;
            p->skipped = p->line.len + seg;
            p->headlen = 0;
            ad_buf_free(&p->line);
        }
        if (nl) {
            end_line(p);
            seg++;
        }
        d += seg;
        n -= seg;
    }
}

static void on_read_out(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    proc *p = s->data;
    if (nread > 0) {
        out_data(p, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    /* EOF or a read error: the end of stdout either way. A last line
     * without a newline still counts. */
    if (p->line.len || p->skipping)
        end_line(p);
    uv_read_stop(s);
    p->out_eof = true;
    check_end(p);
}

static void tail_add(stdio_t *t, const char *line, size_t n)
{
    if (n > 512)
        n = 512;
    ad_buf_append(&t->tail, line, n);
    ad_buf_putc(&t->tail, '\n');
    if (t->tail.len > TAIL_MAX) {
        /* Keep whole lines from the end. */
        size_t from = t->tail.len - TAIL_MAX;
        const char *nl = memchr(t->tail.data + from, '\n', t->tail.len - from);
        from = nl ? (size_t)(nl - t->tail.data) + 1 : from;
        memmove(t->tail.data, t->tail.data + from, t->tail.len - from);
        t->tail.len -= from;
        t->tail.data[t->tail.len] = '\0';
    }
}

static void err_line(proc *p)
{
    size_t n = p->eline.len;
    if (n && p->eline.data[n - 1] == '\r')
        p->eline.data[--n] = '\0';
    if (n) {
        if (attached(p))
            tail_add(p->t, p->eline.data, n);
        tell_log(p, AD_MCP_LOG_INFO, p->eline.data);
    }
    ad_buf_reset(&p->eline);
}

static void on_read_err(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    proc *p = s->data;
    if (nread < 0) {
        if (p->eline.len)
            err_line(p);
        uv_read_stop(s);
        p->err_eof = true;
        check_end(p);
        return;
    }
    const char *d = buf->base;
    size_t n = (size_t)nread;
    while (n) {
        const char *nl = memchr(d, '\n', n);
        size_t seg = nl ? (size_t)(nl - d) : n;
        size_t room = LOG_LINE_MAX - p->eline.len;
        size_t take = seg < room ? seg : room;
        ad_buf_append(&p->eline, d, take);
        if (nl || p->eline.len >= LOG_LINE_MAX)
            err_line(p);
        if (nl)
            take = seg + 1;
        d += take;
        n -= take;
    }
}

/* ---- the transport ------------------------------------------------------ */

static int t_open(ad_mcp_transport *base, char *err, size_t errlen)
{
    stdio_t *t = (stdio_t *)base;
    if (t->cur) {
        ad_errf(err, errlen, "the server is already running");
        return AD_EINVAL;
    }
    proc *p = calloc(1, sizeof *p);
    if (!p) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    p->t = t;
    t->nprocs++;
    uv_pipe_init(t->loop, &p->in, 0);
    uv_pipe_init(t->loop, &p->out, 0);
    uv_pipe_init(t->loop, &p->err, 0);
    uv_timer_init(t->loop, &p->timer);
    p->in.data = p->out.data = p->err.data = p->timer.data = p->process.data = p;
    p->handles = 5;
    uv_stdio_container_t io[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&p->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    uv_process_options_t po = {
        .exit_cb = on_exit_cb,
        .file = t->command,
        .args = t->argv,
        .env = t->env,
        .cwd = t->cwd,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = io,
    };
    ad_buf_reset(&t->tail);
    int rc = uv_spawn(t->loop, &p->process, &po);
    if (rc != 0) {
        if (rc == UV_ENOENT && t->cwd && strchr(t->command, '/') == NULL)
            ad_errf(err, errlen, "cannot start '%s': %s (searched the PATH given to the server; "
                                 "or the folder %s is missing)",
                    t->command, uv_strerror(rc), t->cwd);
        else if (rc == UV_ENOENT && strchr(t->command, '/') == NULL)
            ad_errf(err, errlen, "cannot start '%s': %s (searched the PATH given to the server)",
                    t->command, uv_strerror(rc));
        else
            ad_errf(err, errlen, "cannot start '%s': %s", t->command, uv_strerror(rc));
        p->exited = true; /* nothing to signal */
        p->reported = true;
        proc_finish(p);
        return AD_ERR;
    }
    t->cur = p;
    uv_read_start((uv_stream_t *)&p->out, on_alloc_out, on_read_out);
    uv_read_start((uv_stream_t *)&p->err, on_alloc_err, on_read_err);
    return AD_OK;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a server that went away is noticed by its exit */
    free(req);
}

static int t_send(ad_mcp_transport *base, const char *text, size_t len)
{
    stdio_t *t = (stdio_t *)base;
    proc *p = t->cur;
    if (!p || p->in_closed || p->stopping || p->exited)
        return AD_ERR;
    wreq *w = malloc(sizeof *w + len + 1);
    if (!w)
        return AD_ENOMEM;
    memcpy(w->data, text, len);
    w->data[len] = '\n';
    w->len = len + 1;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written) != 0) {
        free(w);
        return AD_ERR;
    }
    return AD_OK;
}

static void on_idle(uv_timer_t *tm)
{
    maybe_stopped(tm->data);
}

static void t_stop(ad_mcp_transport *base, void (*on_stopped)(void *ud), void *ud)
{
    stdio_t *t = (stdio_t *)base;
    t->on_stopped = on_stopped;
    t->stopped_ud = ud;
    t->stop_pending = true;
    proc *p = t->cur;
    if (p) {
        t->cur = NULL;
        p->reported = true; /* stopped, not closed: no on_closed */
        begin_stop(p);
    }
    if (t->nprocs == 0)
        uv_timer_start(&t->idle, on_idle, 0, 0);
}

static const char *t_log_tail(ad_mcp_transport *base)
{
    stdio_t *t = (stdio_t *)base;
    return t->tail.data ? t->tail.data : "";
}

static void on_idle_closed(uv_handle_t *h)
{
    stdio_t *t = h->data;
    free(t->command);
    free_strv(t->argv);
    free(t->cwd);
    free_strv(t->env);
    ad_buf_free(&t->tail);
    free(t);
}

static void transport_release(stdio_t *t)
{
    uv_close((uv_handle_t *)&t->idle, on_idle_closed);
}

static void t_free(ad_mcp_transport *base)
{
    stdio_t *t = (stdio_t *)base;
    if (!t)
        return;
    if (t->cur) /* an open connection: stop it first (without a callback) */
        t_stop(base, NULL, NULL);
    t->stop_pending = false;
    if (t->nprocs > 0)
        t->free_pending = true;
    else
        transport_release(t);
}

static const ad_mcp_transport_vt stdio_vt = {
    .kind = "stdio",
    .open = t_open,
    .send = t_send,
    .stop = t_stop,
    .log_tail = t_log_tail,
    .free = t_free,
};

static char **copy_strv(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = ad_strdup(v[i]))) {
            free_strv(out);
            return NULL;
        }
    }
    return out;
}

ad_mcp_transport *ad_mcp_stdio_new(uv_loop_t *loop, const ad_mcp_stdio_opts *o)
{
    stdio_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.vt = &stdio_vt;
    t->loop = loop;
    t->command = ad_strdup(o->command);
    t->argv = calloc(o->nargs + 2, sizeof *t->argv);
    t->cwd = o->cwd ? ad_strdup(o->cwd) : NULL;
    t->env = copy_strv(o->env);
    bool ok = t->command && t->argv && (!o->cwd || t->cwd) && (!o->env || t->env);
    if (ok && (t->argv[0] = ad_strdup(o->command)) == NULL)
        ok = false;
    for (size_t i = 0; ok && i < o->nargs; i++)
        ok = (t->argv[i + 1] = ad_strdup(o->args[i])) != NULL;
    if (!ok) {
        free(t->command);
        free_strv(t->argv);
        free(t->cwd);
        free_strv(t->env);
        free(t);
        return NULL;
    }
    t->max_line = o->max_line ? o->max_line : DEFAULT_MAX_LINE;
    t->stdin_grace_s = o->stdin_grace_s > 0 ? o->stdin_grace_s : DEFAULT_GRACE_S;
    t->term_grace_s = o->term_grace_s > 0 ? o->term_grace_s : DEFAULT_GRACE_S;
    uv_timer_init(loop, &t->idle);
    t->idle.data = t;
    return &t->base;
}

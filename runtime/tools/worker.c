/*
 * worker.c -- persistent plugin workers, the host's side (see worker.h;
 * the worker's side is serve.c, the frames wire.h).
 *
 * One provider (wk) per plugin file; at most one worker process (wproc)
 * at a time. A wproc owns four handles (the process, the socket pair the
 * calls go down, the one the worker's frames come up, the output pipe) and
 * the last-words page; it is freed when all four have closed, which may be
 * after the provider has moved on to a new process (or closed): `w` is
 * then NULL.
 *
 * The worker's frames come up a socket pair of their own so that a plugin
 * that closes the worker's descriptors is seen at once: the end of that
 * stream while the process lives (its main thread, blocked reading the
 * calls, keeps the other one open). The worker is given CHANNEL_GRACE_S to
 * end by itself (a process that exits closes its descriptors before it is
 * reaped), then killed, and its calls are failed naming the channel.
 *
 * Calls (wcall) wait until the worker is ready (its HELLO) and, for tools
 * that are not thread-safe, until the previous such call has ended: in
 * `queue` (thread-safe tools) or `serial_queue` (the others), each in
 * arrival order, which ids follow; the oldest call of both that may go
 * goes first. Then they are sent, reported started, and listed in `sent`
 * (in send order, and in `byid`, a table by id, for the frames that name
 * them) until their RESULT or the worker's end; `running` counts those
 * not cancelled. What one call costs does not grow with the calls in
 * flight; only a worker's start and end and the timer's firing walk them
 * all (and a line of output, the cancelled calls still in flight).
 *
 * Deadlines: one timer for the provider, due no later than the earliest
 * of the sent calls' deadlines, the grace of cancelled calls, the start's
 * deadline, the channel's grace and the earliest restart. A new deadline
 * only moves it earlier (arm_at); a call that ends leaves it as it is, so
 * it may fire early: on_timer checks everything and arms it for the
 * earliest moment again (arm, which walks every call in flight). With no
 * call in flight arm() walks nothing, and it runs after every change
 * then: an idle provider's timer is stopped.
 *
 * A worker's end (exit_cb) is the one place where calls in flight lose
 * their worker: the rest of the socket pair and of the output pipe is read
 * first (everything the worker wrote before it died is there), then the
 * last-words page says which call's thread crashed or called exit(); each
 * call in flight gets its result from that, from the reason the provider
 * killed the worker, or from the process's fate.
 */
#define _GNU_SOURCE
#include "tools/worker.h"

#include "base/buf.h"
#include "base/text.h"
#include "tools/host.h"
#include "tools/proc.h"
#include "tools/wire.h"

#include <agentd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define START_ATTEMPTS 3       /* failed starts in a row that disable a plugin */
#define CANCEL_GRACE_S 2.0     /* a cancelled call's time to end before its worker is killed */
#define TIMEOUT_GRACE_S 2.0    /* the host's backstop after a call's own deadline */
#define OUTPUT_PER_CALL 4096   /* bytes of a worker's stdout/stderr shown per call */
#define OUTPUT_LINE_MAX AD_TOOL_LOG_LINE_MAX
#define DESC_MAX ((size_t)16 << 20) /* bytes of a HELLO */
#define RESTART_MAX_S 5.0      /* the longest wait before a restart */
#define CHANNEL_GRACE_S 1.0    /* a worker whose frames stopped: its time to end by itself */

extern char **environ;

typedef struct wk wk;
typedef struct wproc wproc;

typedef struct wcall {
    struct wcall *prev, *next; /* in its list: a queue, or sent */
    ad_tool_job *job;
    uint64_t id;
    bool serial;
    bool sent;
    bool cancelled;     /* the host gave it up: its result is dropped */
    uint64_t deadline;  /* uv_hrtime() of its timeout (sent calls); 0: none */
    uint64_t cancel_by; /* a cancelled call's end of grace */
} wcall;

/* Calls in the order they joined. */
typedef struct wlist {
    wcall *head, *tail;
} wlist;

/* Why the provider killed a worker. */
enum { KILL_NONE, KILL_TIMEOUT, KILL_CANCEL, KILL_START, KILL_PROTOCOL, KILL_CLOSE, KILL_CHANNEL };

struct wproc {
    wk *w; /* NULL once the provider let go of it */
    uv_process_t proc;
    uv_pipe_t ctl, up, out; /* calls down; frames up; stdout and stderr */
    int handles;
    int lastfd;
    long pid;
    bool ready;  /* HELLO ok came */
    bool exited; /* exit_cb came */
    bool killed;
    int kill_why;       /* KILL_* */
    char *kill_tool;    /* the call's tool that made the provider kill it */
    char *kill_detail;  /* what was wrong (KILL_PROTOCOL) */
    uint64_t start_by;  /* uv_hrtime() by which HELLO must come (before ready) */
    uint64_t chan_by;   /* its frames ended: uv_hrtime() by which it must have ended */
    ad_buf in;          /* socket-pair bytes not parsed yet */
    ad_buf line;        /* the output line being assembled */
    size_t line_cut;    /* bytes of that line beyond OUTPUT_LINE_MAX */
    size_t budget;      /* output bytes still shown */
    size_t dropped;     /* output bytes dropped since last said */
    char rbuf[65536];
};

struct wk {
    ad_tool_provider base; /* first */
    char *exe;             /* NULL: unknown (calls fail with a message) */
    char *path, *config, *file;
    char **env;
    double start_timeout_s;
    size_t result_max;
    const ad_tool_desc **tools;
    size_t ntools;
    ad_plugin_worker_described_fn described;
    void *described_ud;
    wproc *cur;
    wlist queue;        /* not sent, of thread-safe tools, in arrival order */
    wlist serial_queue; /* not sent, of the other tools, in arrival order */
    wlist sent;         /* in flight in cur, in send order */
    size_t running;     /* the calls in sent that are not cancelled */
    wcall **byid;       /* the calls in sent, by id: open addressing, at most half full */
    size_t byid_cap, byid_n;
    bool serial_busy;
    uint64_t next_id;
    uv_timer_t timer; /* made on the first call (the host's loop is known then) */
    bool timer_ready;
    uint64_t timer_at; /* when the timer is due; 0: stopped */
    int deaths;      /* workers lost to calls in a row, no call answered since */
    int start_fails; /* failed starts in a row */
    char *start_err; /* why the last start failed */
    bool disabled;
    uint64_t not_before; /* no start before this uv_hrtime() */
    bool closing;
};

static const ad_tool_provider_vt wk_vt;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static uint64_t after_s(double s)
{
    return now_ns() + (uint64_t)(s * 1e9);
}

static void wlog(wk *w, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void wlog(wk *w, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n > 0 && w->base.host)
        ad_tool_host_log(w->base.host, w->file, level, msg,
                         (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* "SIGSEGV", or "signal 77" for a number without a name. */
static const char *sig_name(int sig, char *buf, size_t n)
{
    const char *s = ad_proc_signame(sig);
    if (s)
        snprintf(buf, n, "SIG%s", s);
    else
        snprintf(buf, n, "signal %d", sig);
    return buf;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Ends c's job with r (NULL: no content, e.g. a call whose result the host
 * dropped) and frees c. */
static void end_call(wcall *c, ad_tool_result *r)
{
    ad_tool_job *job = c->job;
    free(c);
    ad_tool_job_done(job, r);
}

static void end_call_text(wcall *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void end_call_text(wcall *c, const char *fmt, ...)
{
    if (c->cancelled) {
        end_call(c, NULL);
        return;
    }
    ad_tool_result r;
    va_list ap;
    va_start(ap, fmt);
    ad_tool_result_verrorf(&r, true, fmt, ap);
    va_end(ap);
    end_call(c, &r);
}

/* ---- the calls' lists ---------------------------------------------------- */

static void list_push(wlist *l, wcall *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_unlink(wlist *l, wcall *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static wlist *queue_of(wk *w, const wcall *c)
{
    return c->serial ? &w->serial_queue : &w->queue;
}

static bool queued(const wk *w)
{
    return w->queue.head || w->serial_queue.head;
}

/* The call waiting longest (with serial false: of thread-safe tools);
 * NULL: none. */
static wcall *queue_first(wk *w, bool serial)
{
    wcall *a = w->queue.head, *b = serial ? w->serial_queue.head : NULL;
    return a && (b == NULL || a->id < b->id) ? a : b;
}

/* Takes the call waiting longest off its queue; NULL: none. */
static wcall *queue_pop(wk *w)
{
    wcall *c = queue_first(w, true);
    if (c)
        list_unlink(queue_of(w, c), c);
    return c;
}

static size_t byid_home(const wk *w, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (w->byid_cap - 1);
}

/* Room in byid for one more call: 0 or AD_ENOMEM. */
static int byid_reserve(wk *w)
{
    if ((w->byid_n + 1) * 2 <= w->byid_cap)
        return 0;
    size_t cap = w->byid_cap ? w->byid_cap * 2 : 16, old_cap = w->byid_cap;
    wcall **t = calloc(cap, sizeof *t), **old = w->byid;
    if (t == NULL)
        return AD_ENOMEM;
    w->byid = t;
    w->byid_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) {
            size_t j = byid_home(w, old[i]->id);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = old[i];
        }
    free(old);
    return 0;
}

/* The sent call of that id; NULL: none (never sent, or ended). */
static wcall *find_sent(wk *w, uint64_t id)
{
    if (w->byid_n == 0)
        return NULL;
    for (size_t i = byid_home(w, id);; i = (i + 1) & (w->byid_cap - 1))
        if (w->byid[i] == NULL || w->byid[i]->id == id)
            return w->byid[i];
}

/* c is sent (byid_reserve() made room for it). */
static void sent_add(wk *w, wcall *c)
{
    size_t i = byid_home(w, c->id);
    while (w->byid[i])
        i = (i + 1) & (w->byid_cap - 1);
    w->byid[i] = c;
    w->byid_n++;
    c->sent = true;
    list_push(&w->sent, c);
    w->running += !c->cancelled;
}

/* c, a sent call, is no longer in flight. */
static void sent_remove(wk *w, wcall *c)
{
    size_t mask = w->byid_cap - 1, i = byid_home(w, c->id);
    while (w->byid[i] != c)
        i = (i + 1) & mask;
    /* The calls after it in its run move up when their home allows, so
     * that a lookup stops at the first empty slot. */
    for (size_t j = (i + 1) & mask; w->byid[j]; j = (j + 1) & mask) {
        size_t h = byid_home(w, w->byid[j]->id);
        bool stays = i < j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            w->byid[i] = w->byid[j];
            i = j;
        }
    }
    w->byid[i] = NULL;
    w->byid_n--;
    list_unlink(&w->sent, c);
    w->running -= !c->cancelled;
}

/* Every call in flight leaves at once (its worker ended, or the provider
 * closed): returns them, still linked in send order. */
static wlist sent_take(wk *w)
{
    wlist l = w->sent;
    w->sent.head = w->sent.tail = NULL;
    w->running = 0;
    if (w->byid_n)
        memset(w->byid, 0, w->byid_cap * sizeof *w->byid);
    w->byid_n = 0;
    return l;
}

/* The running call when exactly one runs; NULL otherwise. */
static wcall *only_running(wk *w)
{
    if (w->running != 1)
        return NULL;
    wcall *c = w->sent.head;
    while (c->cancelled)
        c = c->next;
    return c;
}

/* ---- output ------------------------------------------------------------- */

/* Where an output line goes: the call, when exactly one runs. */
static void out_emit(wproc *wp, const char *text, size_t len)
{
    wk *w = wp->w;
    if (w == NULL)
        return;
    wcall *only = only_running(w);
    if (only)
        ad_tool_job_log(only->job, AD_TOOL_LOG_OUTPUT, text, len);
    else
        ad_tool_host_log(w->base.host, w->file, AD_TOOL_LOG_OUTPUT, text, len);
}

static void out_line_end(wproc *wp)
{
    size_t full = wp->line.len + wp->line_cut;
    if (full + 1 <= wp->budget) {
        wp->budget -= full + 1;
        out_emit(wp, wp->line.data ? wp->line.data : "", wp->line.len);
    } else {
        /* A line cut by the bound is dropped whole (a part of the key
         * would not be recognised as the key). */
        wp->dropped += full + 1;
        wp->budget = 0;
    }
    ad_buf_reset(&wp->line);
    wp->line_cut = 0;
}

static void out_feed(wproc *wp, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (wp->budget == 0) {
            wp->dropped += k + (nl ? 1 : 0);
        } else {
            size_t room = wp->line.len < OUTPUT_LINE_MAX ? OUTPUT_LINE_MAX - wp->line.len : 0;
            size_t take = k < room ? k : room;
            if (take && ad_buf_append(&wp->line, p, take) != 0)
                wp->line_cut += take;
            wp->line_cut += k - take;
            if (nl)
                out_line_end(wp);
        }
        p += k + (nl ? 1 : 0);
        n -= k + (nl ? 1 : 0);
    }
}

/* Says what was dropped, and flushes a line without its newline. */
static void out_flush(wproc *wp)
{
    if (wp->line.len || wp->line_cut)
        out_line_end(wp);
    if (wp->dropped) {
        char msg[96];
        int ml = snprintf(msg, sizeof msg, "[%zu more bytes of output dropped]", wp->dropped);
        wp->dropped = 0;
        out_emit(wp, msg, (size_t)ml);
    }
}

/* Reads what the output pipe holds now (loop thread; the pipe is
 * non-blocking): a call's output was written before its result. */
static void out_drain(wproc *wp)
{
    int fd = -1;
    if (uv_is_closing((uv_handle_t *)&wp->out) || uv_fileno((uv_handle_t *)&wp->out, &fd) != 0)
        return;
    for (int i = 0; i < 256; i++) {
        ssize_t n = read(fd, wp->rbuf, sizeof wp->rbuf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        out_feed(wp, wp->rbuf, (size_t)n);
    }
}

static void on_out_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    (void)want;
    wproc *wp = h->data;
    b->base = wp->rbuf;
    b->len = sizeof wp->rbuf;
}

static void wp_closed(uv_handle_t *h);

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    wproc *wp = s->data;
    if (n > 0)
        out_feed(wp, b->base, (size_t)n);
    else if (n < 0 && !uv_is_closing((uv_handle_t *)s)) {
        out_flush(wp);
        uv_close((uv_handle_t *)s, wp_closed);
    }
}

/* ---- the process -------------------------------------------------------- */

static void pump(wk *w);
static void arm(wk *w);
static void arm_at(wk *w, uint64_t at);

static void wp_closed(uv_handle_t *h)
{
    wproc *wp = h->data;
    if (--wp->handles > 0)
        return;
    wk *w = wp->w;
    if (wp->lastfd >= 0)
        close(wp->lastfd);
    ad_buf_free(&wp->in);
    ad_buf_free(&wp->line);
    free(wp->kill_tool);
    free(wp->kill_detail);
    free(wp);
    (void)w;
}

static void wp_kill(wproc *wp, int why, const char *tool, const char *detail)
{
    if (wp->killed || wp->exited)
        return;
    wp->killed = true;
    wp->kill_why = why;
    wp->kill_tool = tool ? ad_strdup(tool) : NULL;
    wp->kill_detail = detail ? ad_strdup(detail) : NULL;
    /* The worker leads its own process group: whatever it started goes too. */
    if (wp->pid > 0)
        kill(-(pid_t)wp->pid, SIGKILL);
    uv_process_kill(&wp->proc, SIGKILL);
}

static void close_pipes(wproc *wp)
{
    if (!uv_is_closing((uv_handle_t *)&wp->ctl))
        uv_close((uv_handle_t *)&wp->ctl, wp_closed);
    if (!uv_is_closing((uv_handle_t *)&wp->up))
        uv_close((uv_handle_t *)&wp->up, wp_closed);
    if (!uv_is_closing((uv_handle_t *)&wp->out))
        uv_close((uv_handle_t *)&wp->out, wp_closed);
}

static int send_frame(wproc *wp, ad_buf *b);

/* Sends the calls that may go now. */
static void send_ready(wk *w)
{
    wproc *wp = w->cur;
    if (wp == NULL || !wp->ready || wp->killed)
        return;
    wcall *c;
    while ((c = queue_first(w, !w->serial_busy)) != NULL) {
        list_unlink(queue_of(w, c), c);
        ad_tool_job *job = c->job;
        ad_buf b = AD_BUF_INIT;
        const char *cid = job->call_id ? job->call_id : "", *conv = job->conv_id ? job->conv_id : "";
        int rc = byid_reserve(w);
        if (rc == 0)
            rc = ad_wire_begin(&b, AD_WIRE_CALL, c->id);
        if (rc == 0)
            rc = ad_wire_str(&b, job->tool->name, strlen(job->tool->name));
        if (rc == 0)
            rc = ad_wire_str(&b, cid, strlen(cid));
        if (rc == 0)
            rc = ad_wire_str(&b, conv, strlen(conv));
        if (rc == 0)
            rc = ad_wire_f64(&b, job->timeout_s);
        if (rc == 0)
            rc = ad_wire_str(&b, job->args ? job->args : "{}", job->args ? job->args_len : 2);
        if (rc == 0) {
            ad_wire_end(&b);
            rc = send_frame(wp, &b);
        }
        ad_buf_free(&b);
        if (rc != 0) {
            end_call_text(c, "agentd: out of memory sending a call of tool '%s' to its worker "
                             "process", job->tool->name);
            continue;
        }
        if (c->serial)
            w->serial_busy = true;
        /* Each call gets room for its output; calls side by side share
         * theirs, up to a bound. */
        if (w->running == 0)
            wp->budget = OUTPUT_PER_CALL;
        else if ((wp->budget += OUTPUT_PER_CALL) > 4 * OUTPUT_PER_CALL)
            wp->budget = 4 * OUTPUT_PER_CALL;
        sent_add(w, c);
        ad_tool_job_started(job);
        if (job->timeout_s > 0) {
            c->deadline = after_s(job->timeout_s);
            arm_at(w, c->deadline);
        }
    }
}

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a broken pipe shows as the worker's end */
    free(req->data);
    free(req);
}

/* Writes frame b (its bytes are taken). Returns 0 or AD_ENOMEM. */
static int send_frame(wproc *wp, ad_buf *b)
{
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
    int n = uv_try_write((uv_stream_t *)&wp->ctl, &ub, 1);
    if (n == (int)b->len)
        return 0;
    if (n < 0 && n != UV_EAGAIN)
        return 0; /* the worker is gone: its end reports */
    size_t done = n > 0 ? (size_t)n : 0;
    uv_write_t *req = malloc(sizeof *req);
    char *rest = malloc(b->len - done);
    if (req == NULL || rest == NULL) {
        free(req);
        free(rest);
        return AD_ENOMEM;
    }
    memcpy(rest, b->data + done, b->len - done);
    req->data = rest;
    ub = uv_buf_init(rest, (unsigned)(b->len - done));
    if (uv_write(req, (uv_stream_t *)&wp->ctl, &ub, 1, on_written) != 0) {
        free(rest);
        free(req);
    }
    return 0;
}

/* A start failed (why): again later, or the plugin is disabled. */
static void start_failed(wk *w, const char *why)
{
    w->start_fails++;
    free(w->start_err);
    w->start_err = ad_strdup(why);
    if (w->start_fails >= START_ATTEMPTS) {
        w->disabled = true;
        wlog(w, AGENTD_LOG_ERROR,
             "disabled: its worker process failed to start %d times in a row (last: %s); its "
             "tools answer with an error from now on",
             w->start_fails, why);
        wcall *c;
        while ((c = queue_pop(w)) != NULL)
            end_call_text(c,
                          "tool '%s' is not available: its plugin %s failed to start %d times in "
                          "a row (last: %s)",
                          c->job->tool->name, w->file, w->start_fails, why);
        return;
    }
    wlog(w, AGENTD_LOG_WARN, "its worker process failed to start (%s); trying again", why);
    w->not_before = after_s(0.1 * w->start_fails);
}

static bool same_tools(wk *w, json_object *desc)
{
    json_object *list = NULL;
    if (!json_object_object_get_ex(desc, "tools", &list) ||
        !json_object_is_type(list, json_type_array) ||
        json_object_array_length(list) != w->ntools)
        return false;
    for (size_t i = 0; i < w->ntools; i++) {
        json_object *e = json_object_array_get_idx(list, i), *v;
        const ad_tool_desc *d = w->tools[i];
        if (!json_object_object_get_ex(e, "name", &v) ||
            strcmp(json_object_get_string(v), d->name) != 0 ||
            !json_object_object_get_ex(e, "description", &v) ||
            strcmp(json_object_get_string(v), d->description ? d->description : "") != 0 ||
            !json_object_object_get_ex(e, "flags", &v) ||
            (uint32_t)json_object_get_int64(v) != d->flags ||
            !json_object_object_get_ex(e, "parameters", &v) ||
            !json_object_equal(v, (json_object *)d->parameters))
            return false;
    }
    return true;
}

static void on_hello(wproc *wp, ad_wire_frame *f)
{
    wk *w = wp->w;
    unsigned ok = ad_wire_get_u8(f);
    size_t n;
    const char *text = ad_wire_get_str(f, &n);
    if (f->bad || wp->ready) {
        wp_kill(wp, KILL_PROTOCOL, NULL, "a malformed start frame");
        return;
    }
    if (!ok) {
        char *why = ad_strndup(text, n > 2000 ? 2000 : n);
        /* The worker exits by itself; its end counts the failure. */
        free(wp->kill_detail);
        wp->kill_detail = why;
        return;
    }
    wp->ready = true;
    w->start_fails = 0;
    json_object *desc = NULL;
    char why[200];
    if (ad_tool_parse_json(text, n, &desc, why, sizeof why) == 0 && !same_tools(w, desc) &&
        w->described)
        w->described(w->described_ud, desc);
    json_object_put(desc);
    send_ready(w);
    arm(w); /* the start's deadline no longer counts */
}

static void on_result(wproc *wp, ad_wire_frame *f)
{
    wk *w = wp->w;
    unsigned is_error = ad_wire_get_u8(f);
    size_t n;
    const char *text = ad_wire_get_str(f, &n);
    if (f->bad) {
        wp_kill(wp, KILL_PROTOCOL, NULL, "a malformed result frame");
        return;
    }
    wcall *c = find_sent(w, f->id);
    if (c == NULL)
        return; /* a call it never got, or one already ended */
    /* The worker bounds what it keeps; room for the markers. */
    if (n > w->result_max + 4096) {
        char detail[128];
        snprintf(detail, sizeof detail, "a result of %zu bytes (the bound is %zu)", n,
                 w->result_max);
        wp_kill(wp, KILL_PROTOCOL, c->job->tool->name, detail); /* it ends with the worker */
        return;
    }
    /* What the call printed comes before its result, and is its own
     * when it ran alone. */
    out_drain(wp);
    if (!c->cancelled && w->running == 1)
        out_flush(wp);
    sent_remove(w, c);
    if (c->serial)
        w->serial_busy = false;
    w->deaths = 0;
    if (c->cancelled) {
        end_call(c, NULL);
    } else {
        ad_tool_result r = {0};
        r.content = ad_strndup(text ? text : "", n);
        r.len = r.content ? n : 0;
        r.is_error = is_error != 0;
        r.bounded = true;
        if (r.content == NULL)
            ad_tool_result_errorf(&r, true, "agentd: out of memory reading the result of tool '%s'",
                                  c->job->tool->name);
        end_call(c, &r);
    }
    send_ready(w);
    if (w->sent.head == NULL)
        arm(w);
}

static void on_frame(wproc *wp, ad_wire_frame *f)
{
    wk *w = wp->w;
    if (f->type == AD_WIRE_HELLO) {
        on_hello(wp, f);
        return;
    }
    /* Before its start frame a worker may only log (its plugin's init). */
    if (!wp->ready && f->type != AD_WIRE_LOG) {
        wp_kill(wp, KILL_PROTOCOL, NULL, "a frame before its start frame");
        return;
    }
    if (f->type == AD_WIRE_RESULT) {
        on_result(wp, f);
    } else if (f->type == AD_WIRE_LOG) {
        unsigned level = ad_wire_get_u8(f);
        size_t n;
        const char *text = ad_wire_get_str(f, &n);
        if (f->bad)
            return;
        if (level > AGENTD_LOG_DEBUG)
            level = AGENTD_LOG_DEBUG;
        wcall *c = f->id ? find_sent(w, f->id) : NULL;
        if (c && !c->cancelled)
            ad_tool_job_log(c->job, (int)level, text, n);
        else
            ad_tool_host_log(w->base.host, w->file, (int)level, text, n);
    } else if (f->type == AD_WIRE_PROGRESS) {
        double done = ad_wire_get_f64(f), total = ad_wire_get_f64(f);
        unsigned has = ad_wire_get_u8(f);
        size_t n;
        const char *msg = ad_wire_get_str(f, &n);
        wcall *c = find_sent(w, f->id);
        if (f->bad || c == NULL || c->cancelled)
            return;
        char *m = has && msg ? ad_strndup(msg, n) : NULL;
        ad_tool_job_progress(c->job, done, total, m);
        free(m);
    } else {
        wp_kill(wp, KILL_PROTOCOL, NULL, "a frame of a kind only agentd sends");
    }
}

/* Parses the complete frames in wp->in. */
static void parse_in(wproc *wp)
{
    size_t off = 0;
    size_t max = wp->w ? wp->w->result_max * 3 + 65536 : 0;
    if (max < DESC_MAX)
        max = DESC_MAX;
    while (wp->w && !wp->killed && wp->in.len - off >= AD_WIRE_HDR) {
        ad_wire_frame f;
        size_t len;
        if (!ad_wire_header(wp->in.data + off, max, &f.type, &f.id, &len)) {
            wp_kill(wp, KILL_PROTOCOL, NULL, "a malformed or oversized frame");
            break;
        }
        if (wp->in.len - off - AD_WIRE_HDR < len)
            break;
        f.p = wp->in.data + off + AD_WIRE_HDR;
        f.end = f.p + len;
        f.bad = false;
        off += AD_WIRE_HDR + len;
        on_frame(wp, &f);
    }
    if (off >= wp->in.len) {
        ad_buf_reset(&wp->in);
    } else if (off > 0) {
        memmove(wp->in.data, wp->in.data + off, wp->in.len - off);
        wp->in.len -= off;
    }
}

static void on_up_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    (void)want;
    wproc *wp = h->data;
    if (ad_buf_reserve(&wp->in, 65536) != 0) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = wp->in.data + wp->in.len;
    b->len = wp->in.cap - wp->in.len - 1;
}

static void on_up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    wproc *wp = s->data;
    (void)b;
    if (n > 0) {
        wp->in.len += (size_t)n;
        parse_in(wp);
    } else if (n == UV_ENOBUFS) {
        wp_kill(wp, KILL_PROTOCOL, NULL, "more than agentd could hold (out of memory)");
    } else if (n < 0) {
        /* The worker's end closed: it is ending (exit_cb tells how), or a
         * plugin closed it; then it is killed after the grace. */
        uv_read_stop(s);
        if (wp->w && !wp->exited && !wp->killed && !wp->chan_by) {
            wp->chan_by = after_s(CHANNEL_GRACE_S);
            arm_at(wp->w, wp->chan_by);
        }
    }
}

/* Reads what the worker's frames still hold (after the worker's end). */
static void up_drain(wproc *wp)
{
    int fd = -1;
    if (uv_is_closing((uv_handle_t *)&wp->up) || uv_fileno((uv_handle_t *)&wp->up, &fd) != 0)
        return;
    for (;;) {
        if (ad_buf_reserve(&wp->in, 65536) != 0)
            return;
        ssize_t n = read(fd, wp->in.data + wp->in.len, wp->in.cap - wp->in.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        wp->in.len += (size_t)n;
        parse_in(wp);
        if (wp->w == NULL || wp->killed)
            return;
    }
}

/* The result of call c, whose worker ended; cause: what ended it, for the
 * other calls ("crashed (SIGSEGV in a call of 'x')"). */
static void end_lost(wk *w, wproc *wp, wcall *c, bool named, const char *cause, int status,
                     int sig)
{
    const char *tool = c->job->tool->name;
    char sn[32];
    uint64_t now = now_ns();
    if (c->cancelled) {
        end_call(c, NULL);
    } else if (c->deadline && now >= c->deadline) {
        end_call_text(c, "tool '%s' timed out after %g s and was killed", tool,
                      c->job->timeout_s);
    } else if (named && wp->kill_why == KILL_PROTOCOL) {
        end_call_text(c, "tool '%s' failed: its worker process sent %s and was killed", tool,
                      wp->kill_detail ? wp->kill_detail : "a malformed frame");
    } else if (named && sig > 0 && !wp->killed) {
        end_call_text(c, "tool '%s' crashed: %s", tool, sig_name(sig, sn, sizeof sn));
    } else if (named && !wp->killed) {
        end_call_text(c, "tool '%s' exited with status %d without a result", tool, status);
    } else {
        end_call_text(c, "tool '%s' was interrupted: its worker process (%s) %s", tool, w->file,
                      cause);
    }
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    wproc *wp = proc->data;
    wp->exited = true;
    uv_close((uv_handle_t *)proc, wp_closed);
    wk *w = wp->w;
    if (w == NULL) {
        close_pipes(wp);
        return;
    }
    /* Whatever it wrote before its end. */
    up_drain(wp);
    out_drain(wp);
    if (wp->pid > 0)
        kill(-(pid_t)wp->pid, SIGKILL); /* what it started dies with it */
    ad_wire_last lw;
    memset(&lw, 0, sizeof lw);
    if (wp->lastfd < 0 || pread(wp->lastfd, &lw, sizeof lw, 0) != (ssize_t)sizeof lw ||
        lw.magic != AD_WIRE_LAST_MAGIC)
        memset(&lw, 0, sizeof lw);
    out_flush(wp);
    w->cur = NULL;
    w->serial_busy = false;
    char sn[32], cause[300];
    const char *culprit = NULL;
    /* Last words of no call: a thread of the plugin's own crashed or
     * called exit(), or the channel was closed; no call is blamed. */
    bool no_call = lw.magic == AD_WIRE_LAST_MAGIC && lw.call == 0;
    bool channel = (wp->killed && wp->kill_why == KILL_CHANNEL) ||
                   (no_call && lw.kind == AD_WIRE_LAST_CHANNEL);
    wcall *by = lw.call ? find_sent(w, lw.call) : NULL;
    if (by)
        culprit = by->job->tool->name;
    else if (!no_call && !channel)
        by = only_running(w);
    if (by && !culprit)
        culprit = by->job->tool->name;
    if (!wp->ready) {
        /* Its start failed. */
        char why[2100];
        if (wp->kill_detail && !wp->killed)
            snprintf(why, sizeof why, "%s", wp->kill_detail);
        else if (wp->killed && wp->kill_why == KILL_START)
            snprintf(why, sizeof why, "init did not finish within %g s", w->start_timeout_s);
        else if (channel)
            snprintf(why, sizeof why, "init closed the worker's call channel");
        else if (wp->killed)
            snprintf(why, sizeof why, "it sent %s",
                     wp->kill_detail ? wp->kill_detail : "a malformed frame");
        else if (sig > 0)
            snprintf(why, sizeof why, "init crashed: %s", sig_name(sig, sn, sizeof sn));
        else
            snprintf(why, sizeof why, "it exited with status %d during init", (int)status);
        close_pipes(wp);
        start_failed(w, why);
        pump(w);
        return;
    }
    if (channel) {
        snprintf(cause, sizeof cause, "lost its call channel (a plugin closed the worker's "
                                      "descriptors)");
        by = NULL;
    } else if (wp->killed) {
        const char *t = wp->kill_tool ? wp->kill_tool : "?";
        switch (wp->kill_why) {
        case KILL_TIMEOUT:
            snprintf(cause, sizeof cause, "was killed because a call of '%s' timed out", t);
            break;
        case KILL_CANCEL:
            snprintf(cause, sizeof cause,
                     "was killed because a cancelled call of '%s' did not stop", t);
            break;
        default:
            snprintf(cause, sizeof cause, "was killed: it sent %s",
                     wp->kill_detail ? wp->kill_detail : "a malformed frame");
        }
        by = NULL;
        /* The oldest call of that tool. */
        for (wcall *c = w->sent.head; c && by == NULL; c = c->next)
            if (wp->kill_tool && wp->kill_why == KILL_PROTOCOL &&
                strcmp(c->job->tool->name, wp->kill_tool) == 0)
                by = c;
    } else if (sig > 0 && no_call) {
        snprintf(cause, sizeof cause, "crashed (%s on a thread of the plugin's own, not in a call)",
                 sig_name(sig, sn, sizeof sn));
    } else if (no_call && lw.kind == AD_WIRE_LAST_EXIT) {
        snprintf(cause, sizeof cause,
                 "exited with status %d (exit() on a thread of the plugin's own, not in a call)",
                 (int)status);
    } else if (sig > 0) {
        if (culprit)
            snprintf(cause, sizeof cause, "crashed (%s in a call of '%s')",
                     sig_name(sig, sn, sizeof sn), culprit);
        else
            snprintf(cause, sizeof cause, "crashed (%s)", sig_name(sig, sn, sizeof sn));
    } else if (culprit) {
        snprintf(cause, sizeof cause, "exited with status %d in a call of '%s'", (int)status,
                 culprit);
    } else {
        snprintf(cause, sizeof cause, "exited with status %d", (int)status);
    }
    if (!wp->killed || wp->kill_why == KILL_PROTOCOL || channel)
        wlog(w, AGENTD_LOG_WARN, "its worker process %s; a new one starts with the next call",
             cause);
    w->deaths++;
    double delay = w->deaths <= 1 ? 0 : 0.1 * (double)(1u << (w->deaths < 8 ? w->deaths - 2 : 6));
    w->not_before = after_s(delay < RESTART_MAX_S ? delay : RESTART_MAX_S);
    wlist lost = sent_take(w);
    /* The newest first. */
    while (lost.tail) {
        wcall *c = lost.tail;
        lost.tail = c->prev;
        end_lost(w, wp, c, c == by, cause, (int)status, sig);
    }
    close_pipes(wp);
    pump(w);
}

static int spawn_worker(wk *w, char *err, size_t errlen)
{
    if (w->exe == NULL) {
        ad_errf(err, errlen, "the program's own path is unknown (/proc/self/exe)");
        return AD_ERR;
    }
    wproc *wp = calloc(1, sizeof *wp);
    if (wp == NULL) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    wp->w = w;
    wp->lastfd = -1;
    int outp[2] = {-1, -1};
    uv_loop_t *loop = ad_tool_host_loop(w->base.host);
    wp->lastfd = memfd_create("agentd-last-words", MFD_CLOEXEC);
    if (wp->lastfd < 0 || ftruncate(wp->lastfd, 4096) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        ad_errf(err, errlen, "cannot make its pipes: %s", strerror(errno));
        if (wp->lastfd >= 0)
            close(wp->lastfd);
        free(wp);
        return AD_ERR;
    }
    uv_pipe_init(loop, &wp->ctl, 0);
    uv_pipe_init(loop, &wp->up, 0);
    uv_pipe_init(loop, &wp->out, 0);
    wp->ctl.data = wp->up.data = wp->out.data = wp->proc.data = wp;
    char ppid[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    char *args[] = {w->exe, (char *)AD_ISOLATE_WORKER_FLAG, ppid, (char *)AD_PLUGIN_WORKER_SERVE_ARG,
                    w->file, NULL};
    uv_stdio_container_t io[6];
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = outp[1];
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = outp[1];
    io[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
    io[3].data.stream = (uv_stream_t *)&wp->ctl;
    io[4].flags = UV_INHERIT_FD;
    io[4].data.fd = wp->lastfd;
    io[5].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[5].data.stream = (uv_stream_t *)&wp->up;
    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.exit_cb = on_exit_cb;
    po.file = w->exe;
    po.args = args;
    po.env = w->env;
    po.stdio = io;
    po.stdio_count = 6;
    /* A session and process group of its own: a timeout kills whatever it
     * started, and a terminal's ^C reaches agentd, not its workers. */
    po.flags = UV_PROCESS_DETACHED;
    int rc = uv_spawn(loop, &wp->proc, &po);
    close(outp[1]);
    wp->handles = 3; /* the pipes; the process handle counts once spawned */
    if (rc != 0) {
        close(outp[0]);
        ad_errf(err, errlen, "cannot start %s: %s", w->exe, uv_strerror(rc));
        close_pipes(wp);
        /* uv_spawn's failure leaves the process handle to be closed too. */
        wp->handles++;
        uv_close((uv_handle_t *)&wp->proc, wp_closed);
        return AD_ERR;
    }
    wp->handles++;
    wp->pid = wp->proc.pid;
    uv_pipe_open(&wp->out, outp[0]);
    uv_read_start((uv_stream_t *)&wp->out, on_out_alloc, on_out_read);
    uv_read_start((uv_stream_t *)&wp->up, on_up_alloc, on_up_read);
    wp->budget = OUTPUT_PER_CALL;
    wlog(w, AGENTD_LOG_DEBUG, "started its worker process (pid %ld)", wp->pid);
    ad_buf b = AD_BUF_INIT;
    rc = ad_wire_begin(&b, AD_WIRE_INIT, 0);
    if (rc == 0)
        rc = ad_wire_str(&b, w->path, strlen(w->path));
    if (rc == 0)
        rc = ad_wire_u8(&b, w->config != NULL);
    if (rc == 0)
        rc = ad_wire_str(&b, w->config ? w->config : "", w->config ? strlen(w->config) : 0);
    if (rc == 0)
        rc = ad_wire_u64(&b, w->result_max);
    if (rc == 0) {
        ad_wire_end(&b);
        rc = send_frame(wp, &b);
    }
    ad_buf_free(&b);
    w->cur = wp;
    if (rc != 0) {
        wp_kill(wp, KILL_PROTOCOL, NULL, "nothing: agentd ran out of memory");
        return AD_OK; /* its end follows */
    }
    if (w->start_timeout_s > 0)
        wp->start_by = after_s(w->start_timeout_s);
    return AD_OK;
}

/* Starts a worker when calls wait and none runs, sends what may go. */
static void pump(wk *w)
{
    if (w->closing)
        return;
    if (w->cur == NULL && queued(w) && !w->disabled) {
        if (now_ns() < w->not_before) {
            arm(w);
            return;
        }
        char err[512];
        if (spawn_worker(w, err, sizeof err) != AD_OK) {
            wcall *c;
            while ((c = queue_pop(w)) != NULL)
                end_call_text(c, "tool '%s' could not be started in a worker process: %s",
                              c->job->tool->name, err);
            return;
        }
    }
    send_ready(w);
    if (w->sent.head == NULL)
        arm(w);
}

/* ---- deadlines ---------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    wk *w = t->data;
    w->timer_at = 0;
    uint64_t now = now_ns();
    wproc *wp = w->cur;
    if (wp && !wp->killed) {
        if (wp->chan_by && now >= wp->chan_by) {
            wp_kill(wp, KILL_CHANNEL, NULL, NULL);
        } else if (!wp->ready && wp->start_by && now >= wp->start_by) {
            wp_kill(wp, KILL_START, NULL, NULL);
        } else {
            /* The newest first. */
            for (wcall *c = w->sent.tail; c; c = c->prev) {
                if (!c->cancelled && c->deadline && now >= c->deadline) {
                    wp_kill(wp, KILL_TIMEOUT, c->job->tool->name, NULL);
                    break;
                }
                if (c->cancelled && c->cancel_by && now >= c->cancel_by) {
                    wp_kill(wp, KILL_CANCEL, c->job->tool->name, NULL);
                    break;
                }
            }
        }
    }
    pump(w);
    arm(w);
}

/* Arms the timer for at (0: stops it). */
static void timer_set(wk *w, uint64_t at)
{
    if (at == 0) {
        if (w->timer_at)
            uv_timer_stop(&w->timer);
        w->timer_at = 0;
        return;
    }
    if (w->timer_at == at)
        return;
    uint64_t now = now_ns();
    w->timer_at = at;
    uv_timer_start(&w->timer, on_timer, at > now ? (at - now + 999999) / 1000000 : 0, 0);
}

/* Arms the timer for the earliest moment something is due: a walk over
 * the calls in flight. */
static void arm(wk *w)
{
    if (!w->timer_ready)
        return;
    uint64_t at = 0;
#define EARLIER(x) (at = (x) && (at == 0 || (x) < at) ? (x) : at)
    wproc *wp = w->cur;
    if (wp && !wp->killed) {
        EARLIER(wp->chan_by);
        if (!wp->ready)
            EARLIER(wp->start_by);
        for (wcall *c = w->sent.head; c; c = c->next)
            EARLIER(c->cancelled ? c->cancel_by : c->deadline);
    }
    if (wp == NULL && queued(w) && !w->disabled)
        EARLIER(w->not_before);
#undef EARLIER
    timer_set(w, at);
}

/* Makes the timer due at at (0: nothing) if it is due later or not at
 * all: one new deadline, without the walk. */
static void arm_at(wk *w, uint64_t at)
{
    if (w->timer_ready && at && (w->timer_at == 0 || at < w->timer_at))
        timer_set(w, at);
}

/* ---- the provider ------------------------------------------------------- */

static int wk_start(ad_tool_provider *bp, ad_tool_job *job)
{
    wk *w = (wk *)bp;
    if (!w->timer_ready) {
        uv_timer_init(ad_tool_host_loop(w->base.host), &w->timer);
        w->timer.data = w;
        w->timer_ready = true;
        w->result_max = ad_tool_host_result_max(w->base.host);
    }
    wcall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return AD_ENOMEM;
    c->job = job;
    c->id = ++w->next_id;
    c->serial = !(job->tool->flags & AD_TOOL_THREADSAFE);
    job->pdata = c;
    if (w->disabled) {
        end_call_text(c, "tool '%s' is not available: its plugin %s failed to start %d times in a "
                         "row (last: %s)",
                      job->tool->name, w->file, w->start_fails,
                      w->start_err ? w->start_err : "?");
        return AD_OK;
    }
    /* The worker is killed at the deadline and says so; the host's own
     * deadline is only a backstop, late enough not to race it. */
    if (job->timeout_s > 0)
        job->grace_s = TIMEOUT_GRACE_S;
    list_push(queue_of(w, c), c);
    pump(w);
    return AD_OK;
}

static bool wk_cancel(ad_tool_provider *bp, ad_tool_job *job)
{
    wk *w = (wk *)bp;
    wcall *c = job->pdata;
    if (!c->sent) {
        list_unlink(queue_of(w, c), c);
        end_call(c, NULL);
        if (w->sent.head == NULL)
            arm(w); /* a restart may no longer be due */
        return true;
    }
    if (c->cancelled)
        return false;
    c->cancelled = true;
    w->running--;
    if (job->stop == AD_TOOL_STOP_TIMEOUT && w->cur && !w->cur->killed) {
        /* The host's backstop: the worker did not end it at its deadline. */
        wp_kill(w->cur, KILL_TIMEOUT, job->tool->name, NULL);
        return false;
    }
    c->cancel_by = after_s(CANCEL_GRACE_S);
    ad_buf b = AD_BUF_INIT;
    if (w->cur && ad_wire_begin(&b, AD_WIRE_CANCEL, c->id) == 0) {
        ad_wire_end(&b);
        send_frame(w->cur, &b);
    }
    ad_buf_free(&b);
    if (w->cur && !w->cur->killed)
        arm_at(w, c->cancel_by);
    return false;
}

/* Workers let go of by a provider that closed, not reaped yet: process
 * wide (hosts may live on several loops). */
static pthread_mutex_t reap_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t *reap_pids;
static size_t reap_n, reap_cap;

static void remember(long pid)
{
    if (pid <= 0)
        return;
    pthread_mutex_lock(&reap_mu);
    if (reap_n == reap_cap) {
        size_t cap = reap_cap ? reap_cap * 2 : 8;
        pid_t *v = realloc(reap_pids, cap * sizeof *v);
        if (v) {
            reap_pids = v;
            reap_cap = cap;
        }
    }
    if (reap_n < reap_cap)
        reap_pids[reap_n++] = (pid_t)pid;
    pthread_mutex_unlock(&reap_mu);
}

size_t ad_plugin_worker_reap(double wait_s)
{
    uint64_t until = wait_s > 0 ? after_s(wait_s) : 0;
    pthread_mutex_lock(&reap_mu);
    for (;;) {
        size_t k = 0;
        for (size_t i = 0; i < reap_n; i++) {
            pid_t r = waitpid(reap_pids[i], NULL, WNOHANG);
            if (r == 0)
                reap_pids[k++] = reap_pids[i]; /* still running */
        }
        reap_n = k;
        if (reap_n == 0 || until == 0 || now_ns() >= until)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (until && reap_n) {
        /* Out of time: they go now. */
        for (size_t i = 0; i < reap_n; i++) {
            kill(-reap_pids[i], SIGKILL);
            kill(reap_pids[i], SIGKILL);
            waitpid(reap_pids[i], NULL, 0);
        }
        reap_n = 0;
    }
    size_t left = reap_n;
    if (left == 0) {
        free(reap_pids);
        reap_pids = NULL;
        reap_cap = 0;
    }
    pthread_mutex_unlock(&reap_mu);
    return left;
}

static void wk_free(wk *w)
{
    for (size_t i = 0; w->env && w->env[i]; i++)
        free(w->env[i]);
    free(w->env);
    free(w->tools);
    free(w->byid);
    free(w->exe);
    free(w->path);
    free(w->config);
    free(w->file);
    free(w->start_err);
    free(w);
}

static void wk_timer_closed(uv_handle_t *h)
{
    wk_free(h->data);
}

static void wk_close(ad_tool_provider *bp)
{
    wk *w = (wk *)bp;
    w->closing = true;
    wcall *c;
    while ((c = queue_pop(w)) != NULL)
        end_call(c, NULL);
    wproc *wp = w->cur;
    bool busy = w->sent.head != NULL;
    wlist lost = sent_take(w);
    while (lost.tail) {
        c = lost.tail;
        lost.tail = c->prev;
        end_call(c, NULL);
    }
    if (wp) {
        /* The end of its input: an idle worker calls every destroy() and
         * exits by itself; one that still runs a call, or has not
         * started, is killed. Nothing waits for it here (the process
         * handle closes now): ad_plugin_worker_reap() collects it. */
        if (busy || !wp->ready)
            wp_kill(wp, KILL_CLOSE, NULL, NULL);
        wp->w = NULL;
        close_pipes(wp);
        if (!uv_is_closing((uv_handle_t *)&wp->proc)) {
            if (!wp->exited)
                remember(wp->pid);
            uv_close((uv_handle_t *)&wp->proc, wp_closed);
        }
        w->cur = NULL;
    }
    ad_plugin_worker_reap(0);
    if (w->timer_ready)
        uv_close((uv_handle_t *)&w->timer, wk_timer_closed);
    else
        wk_free(w);
}

static const ad_tool_provider_vt wk_vt = {
    .kind = "worker",
    /* No list: its tools are listed by the plugin provider that hands it
     * their calls. */
    .start = wk_start,
    .cancel = wk_cancel,
    .busy = NULL, /* nothing of a worker runs in this process */
    .close = wk_close,
};

long ad_plugin_worker_pid(const ad_tool_provider *p)
{
    const wk *w = (const wk *)p;
    return p && p->vt == &wk_vt && w->cur && !w->cur->exited ? w->cur->pid : 0;
}

/* ---- set-up ------------------------------------------------------------- */

static bool env_allowed(const char *e, const char *scrub, const char *const *pass)
{
    static const char *const keep[] = {
        "PATH",          "HOME",           "USER",           "LOGNAME",      "SHELL",
        "LANG",          "LANGUAGE",       "TZ",             "TMPDIR",       "XDG_RUNTIME_DIR",
        "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "LD_LIBRARY_PATH",
        "AGENTD_DEBUG",  "ASAN_OPTIONS",   "UBSAN_OPTIONS",  "LSAN_OPTIONS", NULL};
    const char *eq = strchr(e, '=');
    if (eq == NULL)
        return false;
    size_t n = (size_t)(eq - e);
    if (scrub && strlen(scrub) == n && strncmp(e, scrub, n) == 0)
        return false;
    if (n > 3 && strncmp(e, "LC_", 3) == 0)
        return true;
    for (size_t i = 0; keep[i]; i++)
        if (strlen(keep[i]) == n && strncmp(e, keep[i], n) == 0)
            return true;
    for (size_t i = 0; pass && pass[i]; i++)
        if (strlen(pass[i]) == n && strncmp(e, pass[i], n) == 0)
            return true;
    return false;
}

char **ad_plugin_worker_env(const char *scrub, const char *const *pass)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (env_allowed(environ[i], scrub, pass))
            env[k++] = environ[i];
    return env;
}

ad_tool_provider *ad_plugin_worker_new(const ad_plugin_worker_opts *o, const char *path, const char *config_json,
                                const ad_tool_desc *const *tools, size_t n)
{
    wk *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->base.vt = &wk_vt;
    const ad_isolate_opts *io = o ? o->isolate : NULL;
    char exe[4096];
    if (io && io->exe) {
        w->exe = ad_strdup(io->exe);
    } else {
        /* Resolved now: the link names this program even if its file is
         * replaced later, and under valgrind it names the program, not
         * the tool that runs it. */
        ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (k > 0) {
            exe[k] = '\0';
            w->exe = ad_strdup(exe);
        }
    }
    w->path = ad_strdup(path);
    w->file = ad_strdup(base_name(path));
    w->base.origin = w->file;
    w->start_timeout_s = io ? io->describe_timeout_s : 0;
    w->described = o ? o->described : NULL;
    w->described_ud = o ? o->described_ud : NULL;
    w->tools = calloc(n ? n : 1, sizeof *w->tools);
    w->ntools = n;
    char **env = ad_plugin_worker_env(io ? io->scrub_env : NULL, io ? io->pass_env : NULL);
    size_t ne = 0;
    while (env && env[ne])
        ne++;
    w->env = calloc(ne + 1, sizeof *w->env);
    bool ok = w->path && w->file && w->tools && env && w->env &&
              (!config_json || (w->config = ad_strdup(config_json)) != NULL);
    /* Copied: environ may change (setenv) while workers start later. */
    for (size_t i = 0; ok && i < ne; i++)
        ok = (w->env[i] = ad_strdup(env[i])) != NULL;
    free(env);
    for (size_t i = 0; ok && i < n; i++)
        w->tools[i] = tools[i];
    if (!ok) {
        wk_free(w);
        return NULL;
    }
    return &w->base;
}

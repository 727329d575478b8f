/*
 * serve.c -- a persistent plugin worker's side (see worker.h, wire.h).
 *
 * The main thread reads frames from the socket pair of calls (fd 3, moved
 * above the range a plugin might write to by accident): INIT loads the plugin (its
 * init runs here) and answers HELLO; CALL makes the call and hands it to a
 * thread; CANCEL asks a call to stop; the end of input (the host closed its
 * end) ends the worker. Every call runs on a thread of the worker's own:
 * an idle one when there is one (each idle thread waits on its own
 * condition variable, so a call wakes exactly one), else a new one, up to
 * MAX_THREADS (later calls wait for the next free thread). The provider
 * sends calls of tools that are not thread-safe one at a time, so nothing
 * here tells tools apart.
 *
 * Frames to the host go up a socket pair of their own (fd 5, moved up
 * too), which no thread blocks on: when a plugin closes the worker's
 * descriptors, the host sees that one end at once. They are written whole
 * under one mutex, from whichever thread has something to say: RESULT
 * (after the plugin's stdout is flushed, so what a call printed reaches
 * the host before its result), LOG, PROGRESS. A write that fails means the
 * host is gone (or the channel was closed): the worker exits.
 *
 * Last words: a fatal signal's handler (on an alternate stack, so that a
 * stack overflow is reported too) and an atexit handler note the current
 * thread's call in the shared page (wire.h) before the process dies;
 * nothing else runs there. The worker itself only ever leaves with
 * _exit(), so the atexit handler speaks only for a plugin's exit().
 */
#define _GNU_SOURCE
#include "tools/isolate.h"
#include "tools/plugin.h"
#include "tools/wire.h"
#include "tools/worker.h"

#include <agentd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_THREADS 64
#define FRAME_MAX ((size_t)256 << 20) /* bytes of one frame from the host */
#define ALT_STACK (64 * 1024)

static int ctl = -1; /* calls, from the host */
static int up = -1;  /* frames, to the host */
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static volatile ad_wire_last *last;
static _Thread_local uint64_t tl_call; /* the call this thread runs; 0: none */
/* Kept in globals so that leak checkers see them as reachable when a plugin
 * calls exit() in the middle of a call. */
static agentd_plugin *plugin;
static size_t result_max;

/* ---- frames out --------------------------------------------------------- */

/* A descriptor of the channel is not open any more: a plugin closed it. The
 * last words say so (the host fails the calls naming it), and the worker
 * ends. */
static void channel_closed(void)
{
    if (last && last->magic != AD_WIRE_LAST_MAGIC) {
        last->kind = AD_WIRE_LAST_CHANNEL;
        last->call = 0;
        last->magic = AD_WIRE_LAST_MAGIC;
    }
    _exit(0);
}

static void send_frame(const ad_buf *b)
{
    pthread_mutex_lock(&wmu);
    const char *p = b->data;
    size_t n = b->len;
    while (n > 0) {
        ssize_t w = write(up, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EBADF)
            channel_closed();
        if (w <= 0)
            _exit(0); /* the host is gone */
        p += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&wmu);
}

static void send_log(uint64_t id, int level, const char *text, size_t len)
{
    ad_buf b = AD_BUF_INIT;
    if (ad_wire_begin(&b, AD_WIRE_LOG, id) == 0 && ad_wire_u8(&b, (unsigned)level) == 0 &&
        ad_wire_str(&b, text, len) == 0) {
        ad_wire_end(&b);
        send_frame(&b);
    }
    ad_buf_free(&b);
}

static void plugin_log(void *ud, int level, const char *text, size_t len)
{
    (void)ud;
    send_log(0, level, text, len);
}

/* ---- calls -------------------------------------------------------------- */

typedef struct scall {
    struct scall *next;
    uint64_t id;
    agentd_call *call;
} scall;

static pthread_mutex_t cmu = PTHREAD_MUTEX_INITIALIZER;
static scall *calls; /* in flight */

static void call_done(void *ud, ad_tool_result *r)
{
    scall *s = ud;
    /* What the call printed goes out first. */
    fflush(stdout);
    fflush(stderr);
    ad_buf b = AD_BUF_INIT;
    int rc = ad_wire_begin(&b, AD_WIRE_RESULT, s->id);
    if (rc == 0)
        rc = ad_wire_u8(&b, r->is_error ? 1 : 0);
    if (rc == 0)
        rc = ad_wire_str(&b, r->content ? r->content : "", r->content ? r->len : 0);
    if (rc != 0) {
        ad_wire_begin(&b, AD_WIRE_RESULT, s->id);
        ad_wire_u8(&b, 1);
        static const char oom[] = "agentd: out of memory in the tool's worker process";
        ad_wire_str(&b, oom, sizeof oom - 1);
    }
    ad_wire_end(&b);
    pthread_mutex_lock(&cmu);
    for (scall **pp = &calls; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&cmu);
    if (b.data)
        send_frame(&b);
    ad_buf_free(&b);
    /* The table's reference; the run's own keeps the call until done
     * returns. */
    ad_plugin_call_release(s->call);
}

static void call_progress(void *ud, double done, double total, const char *msg)
{
    scall *s = ud;
    ad_buf b = AD_BUF_INIT;
    if (ad_wire_begin(&b, AD_WIRE_PROGRESS, s->id) == 0 && ad_wire_f64(&b, done) == 0 &&
        ad_wire_f64(&b, total) == 0 && ad_wire_u8(&b, msg != NULL) == 0 &&
        ad_wire_str(&b, msg ? msg : "", msg ? strlen(msg) : 0) == 0) {
        ad_wire_end(&b);
        send_frame(&b);
    }
    ad_buf_free(&b);
}

static void call_log(void *ud, int level, const char *text, size_t len)
{
    send_log(((scall *)ud)->id, level, text, len);
}

static void call_release(void *ud)
{
    free(ud);
}

static const ad_call_hooks hooks = {call_done, call_progress, call_log, call_release};

/* ---- threads ------------------------------------------------------------ */

typedef struct worker_thread {
    struct worker_thread *next_idle;
    pthread_cond_t cv;
    scall *job; /* assigned; NULL while idle */
    char alt[ALT_STACK];
} worker_thread;

static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;
static worker_thread *idle;
static scall *backlog_head, *backlog_tail; /* calls waiting for a thread */
static int nthreads;

/* The stack the fatal-signal handler runs on (mem: ALT_STACK bytes, kept
 * where leak checkers see it). */
static void alt_stack(void *mem)
{
    stack_t ss = {.ss_sp = mem, .ss_size = ALT_STACK, .ss_flags = 0};
    if (ss.ss_sp)
        sigaltstack(&ss, NULL);
}

static void run_one(scall *s)
{
    tl_call = s->id;
    ad_plugin_call_run(s->call);
    tl_call = 0;
}

static void *thread_main(void *arg)
{
    worker_thread *t = arg;
    alt_stack(t->alt);
    pthread_mutex_lock(&tmu);
    for (;;) {
        scall *s = t->job;
        t->job = NULL;
        pthread_mutex_unlock(&tmu);
        run_one(s);
        pthread_mutex_lock(&tmu);
        if (backlog_head) {
            t->job = backlog_head;
            backlog_head = backlog_head->next;
            if (backlog_head == NULL)
                backlog_tail = NULL;
            continue;
        }
        t->next_idle = idle;
        idle = t;
        while (t->job == NULL)
            pthread_cond_wait(&t->cv, &tmu);
    }
    return NULL;
}

static void dispatch(scall *s)
{
    pthread_mutex_lock(&tmu);
    worker_thread *t = idle;
    if (t) {
        idle = t->next_idle;
        t->job = s;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&tmu);
        return;
    }
    if (nthreads < MAX_THREADS && (t = calloc(1, sizeof *t)) != NULL) {
        pthread_attr_t at;
        pthread_t th;
        pthread_cond_init(&t->cv, NULL);
        t->job = s;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&th, &at, thread_main, t);
        pthread_attr_destroy(&at);
        if (e == 0) {
            nthreads++;
            pthread_mutex_unlock(&tmu);
            return;
        }
        pthread_cond_destroy(&t->cv);
        free(t);
        if (nthreads == 0) {
            /* No thread at all: run it here rather than never. */
            pthread_mutex_unlock(&tmu);
            run_one(s);
            return;
        }
    }
    s->next = NULL;
    if (backlog_tail)
        backlog_tail->next = s;
    else
        backlog_head = s;
    backlog_tail = s;
    pthread_mutex_unlock(&tmu);
}

/* ---- frames in ---------------------------------------------------------- */

static int read_full(char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(ctl, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EBADF)
            channel_closed();
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The next frame into buf; -1 at the end of input (or garbage). */
static int read_frame(ad_buf *buf, ad_wire_frame *f)
{
    char h[AD_WIRE_HDR];
    size_t len;
    if (read_full(h, sizeof h) != 0 || !ad_wire_header(h, FRAME_MAX, &f->type, &f->id, &len))
        return -1;
    ad_buf_reset(buf);
    if (ad_buf_reserve(buf, len) != 0 || (len && read_full(buf->data, len) != 0))
        return -1;
    buf->len = len;
    buf->data[len] = '\0';
    f->p = buf->data;
    f->end = buf->data ? buf->data + len : NULL;
    f->bad = false;
    return 0;
}

static void on_call(ad_wire_frame *f)
{
    size_t tl, il, cl, al;
    const char *tool = ad_wire_get_str(f, &tl), *cid = ad_wire_get_str(f, &il);
    const char *conv = ad_wire_get_str(f, &cl);
    double timeout = ad_wire_get_f64(f);
    const char *args = ad_wire_get_str(f, &al);
    scall *s = calloc(1, sizeof *s);
    char *name = tool ? strndup(tool, tl) : NULL, *id = cid ? strndup(cid, il) : NULL;
    char *cv = conv ? strndup(conv, cl) : NULL;
    const char *why = "memory";
    if (s && name && id && cv && !f->bad) {
        s->id = f->id;
        ad_call_spec spec = {name, id, cv, args, al, NULL, timeout, result_max};
        s->call = ad_plugin_call_new(plugin, &spec, &hooks, s, &why);
    }
    free(name);
    free(id);
    free(cv);
    if (s == NULL || s->call == NULL) {
        ad_tool_result r = {0};
        char msg[200];
        int n = snprintf(msg, sizeof msg, "%s",
                         f->bad ? "tool worker: malformed call frame"
                         : strcmp(why, "unknown") == 0
                             ? "this tool is not registered by its plugin in the worker process "
                               "(the plugin changed since agentd started?)"
                             : "agentd: out of memory in the tool's worker process");
        r.content = msg;
        r.len = (size_t)n;
        r.is_error = true;
        scall tmp = {.id = f->id};
        ad_buf b = AD_BUF_INIT;
        if (ad_wire_begin(&b, AD_WIRE_RESULT, tmp.id) == 0 && ad_wire_u8(&b, 1) == 0 &&
            ad_wire_str(&b, r.content, r.len) == 0) {
            ad_wire_end(&b);
            send_frame(&b);
        }
        ad_buf_free(&b);
        free(s);
        return;
    }
    pthread_mutex_lock(&cmu);
    s->next = calls;
    calls = s;
    pthread_mutex_unlock(&cmu);
    dispatch(s);
}

static void on_cancel(uint64_t id)
{
    agentd_call *c = NULL;
    pthread_mutex_lock(&cmu);
    for (scall *s = calls; s; s = s->next)
        if (s->id == id) {
            c = s->call;
            ad_plugin_call_ref(c);
            break;
        }
    pthread_mutex_unlock(&cmu);
    if (c) {
        ad_plugin_call_cancel(c);
        ad_plugin_call_release(c);
    }
}

/* ---- the process -------------------------------------------------------- */

static void on_fatal(int sig)
{
    if (last) {
        last->kind = AD_WIRE_LAST_SIGNAL;
        last->sig = sig;
        last->call = tl_call;
        last->magic = AD_WIRE_LAST_MAGIC;
    }
    /* SA_RESETHAND restored the default: die of the same signal. */
    raise(sig);
}

static void on_exit_hook(void)
{
    if (last && last->magic != AD_WIRE_LAST_MAGIC) {
        last->kind = AD_WIRE_LAST_EXIT;
        last->call = tl_call;
        last->magic = AD_WIRE_LAST_MAGIC;
    }
}

static void hello(bool ok, const char *text, size_t len)
{
    ad_buf b = AD_BUF_INIT;
    if (ad_wire_begin(&b, AD_WIRE_HELLO, 0) != 0 || ad_wire_u8(&b, ok) != 0 ||
        ad_wire_str(&b, text, len) != 0)
        _exit(71);
    ad_wire_end(&b);
    send_frame(&b);
    ad_buf_free(&b);
}

int ad_plugin_serve_main(void)
{
    /* The socket pairs leave fds 3 and 5, where a plugin might write by
     * accident, and every descriptor the worker did not ask for is closed. */
    ctl = fcntl(AD_WIRE_CTL_FD, F_DUPFD_CLOEXEC, 64);
    up = ctl < 0 ? -1 : fcntl(AD_WIRE_UP_FD, F_DUPFD_CLOEXEC, ctl + 1);
    if (ctl < 0 || up < 0)
        return 125;
    void *page = mmap(NULL, sizeof(ad_wire_last), PROT_READ | PROT_WRITE, MAP_SHARED,
                      AD_WIRE_LAST_FD, 0);
    if (page != MAP_FAILED)
        last = page;
    close_range(3, (unsigned)ctl - 1, 0);
    if (up > ctl + 1)
        close_range((unsigned)ctl + 1, (unsigned)up - 1, 0);
    close_range((unsigned)up + 1, ~0u, 0);

    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP};
    static char main_alt[ALT_STACK];
    alt_stack(main_alt);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &sa, NULL);
    signal(SIGPIPE, SIG_DFL);
    atexit(on_exit_hook);

    ad_buf buf = AD_BUF_INIT;
    ad_wire_frame f;
    if (read_frame(&buf, &f) != 0 || f.type != AD_WIRE_INIT)
        _exit(0);
    size_t pl, cl;
    const char *path = ad_wire_get_str(&f, &pl);
    unsigned has_config = ad_wire_get_u8(&f);
    const char *config = ad_wire_get_str(&f, &cl);
    result_max = (size_t)ad_wire_get_u64(&f);
    char *p = path ? strndup(path, pl) : NULL, *c = config ? strndup(config, cl) : NULL;
    if (f.bad || p == NULL || c == NULL) {
        static const char bad[] = "tool worker: malformed start frame";
        hello(false, bad, sizeof bad - 1);
        _exit(0);
    }
    char err[1024];
    plugin = ad_plugin_open_worker(p, has_config ? c : NULL, plugin_log, NULL, err, sizeof err);
    free(p);
    free(c);
    if (plugin == NULL) {
        hello(false, err, strlen(err));
        _exit(0);
    }
    json_object *desc = ad_plugin_describe(plugin);
    size_t dl = 0;
    const char *dt = desc ? json_object_to_json_string_length(
                                desc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &dl)
                          : NULL;
    if (dt == NULL) {
        static const char oom[] = "tool worker: out of memory";
        hello(false, oom, sizeof oom - 1);
        _exit(0);
    }
    hello(true, dt, dl);
    json_object_put(desc);
    fflush(stdout);

    while (read_frame(&buf, &f) == 0) {
        if (f.type == AD_WIRE_CALL)
            on_call(&f);
        else if (f.type == AD_WIRE_CANCEL)
            on_cancel(f.id);
    }
    /* The host closed its end. Every tool's destroy() runs when nothing is
     * running any more; a call still running (given up by the host) is
     * left to the end of the process. */
    pthread_mutex_lock(&cmu);
    bool quiet = calls == NULL && ad_plugin_pending(plugin) == 0;
    pthread_mutex_unlock(&cmu);
    if (quiet)
        ad_plugin_close_worker(plugin);
    fflush(NULL);
    _exit(0);
}

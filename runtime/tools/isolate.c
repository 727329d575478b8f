/*
 * isolate.c -- process isolation (see isolate.h): the isolation provider,
 * describing workers, and the worker side.
 *
 * A call: start() queues it on libuv's pool (pool.h); the pool thread hands
 * it to ad_proc_run() (proc.c), which starts `EXE --tool-worker PPID MAX`
 * with the request on stdin:
 *
 *   "agentd-tool-call 1\n" "PATHLEN CONFIGLEN NAMELEN ARGSLEN\n" PATH CONFIG NAME ARGS
 *
 * (CONFIGLEN -1: the plugin has no config table). The worker
 * (ad_isolate_worker_main) loads that one plugin with the same config, runs
 * the call with at most MAX bytes of output kept and writes on fd 3
 *
 *   "agentd-tool-result IS_ERROR LEN\n" CONTENT
 *
 * then leaves with _exit(0): no destructor or atexit handler of the plugin
 * runs after the result is out. The host trusts none of it: a result counts
 * only when its header parses and its LEN bytes all arrived; the content
 * is bounded here, and the tool host makes it valid UTF-8. Otherwise the
 * worker's fate (timeout, signal, exit status) is the message.
 *
 * A description: the same worker with
 *
 *   "agentd-tool-describe 1\n" "PATHLEN CONFIGLEN\n" PATH CONFIG
 *
 * runs the plugin's init and answers with the usual result frame: is_error
 * 1 and the load error ("plugin x.so: ..."), or is_error 0 and
 * {"tools":[{"name","description","parameters","flags"}]}.
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
#include "tools/isolate.h"

#include "base/buf.h"
#include "tools/host.h"
#include "tools/plugin.h"
#include "tools/pool.h"
#include "tools/proc.h"
#include "tools/worker.h"

#include <agentd/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define WORKER_REQ_MAGIC "agentd-tool-call 1\n"
#define WORKER_DESC_MAGIC "agentd-tool-describe 1\n"
#define WORKER_DESC_MAX ((size_t)16 << 20) /* bytes of a plugin's description accepted */
#define WORKER_RES_MAGIC "agentd-tool-result "
#define WORKER_INPUT_MAX ((size_t)256 << 20) /* bytes of request a worker accepts */
#define WORKER_OUTPUT_MAX 4096               /* bytes of worker stdout/stderr shown */
#define LOG_MARK '\x1e' /* a log() line on a worker's stderr (plugin.c frames it) */
/* A deadline the worker enforces itself: the tool host's comes this much
 * later, so the worker's own message ("... and was killed") wins. */
#define GRACE_S 2.0

extern char **environ;

typedef struct iso {
    ad_tool_provider base; /* first */
    char *exe;             /* NULL: unknown (calls fail with a message) */
    char *scrub_env;
    char **pass_env; /* owned copies, NULL-terminated */
    char *path;
    char *config;
    char *file;
    size_t running; /* pool calls not returned */
} iso;

typedef struct icall {
    ad_pool_call pc; /* first */
    iso *p;
    size_t keep; /* bytes of output the worker keeps: the host's result_max */
    ad_tool_result res;
} icall;

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The program a worker runs (caller frees); NULL when unknown. Resolved on
 * the main thread: the link names this program even if its file is
 * replaced later, and under valgrind it names the program, not the tool
 * that runs it. */
static char *worker_exe(const ad_isolate_opts *o)
{
    if (o && o->exe)
        return ad_strdup(o->exe);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    return ad_strdup(exe);
}

/* Hands the worker's output on, one line at a time: its log() lines with
 * their level, anything else it wrote as AD_TOOL_LOG_OUTPUT; to job (a
 * call) or, without one, to h as lines of origin. A last line cut off by
 * the output bound is dropped rather than passed on in part (a part of the
 * key would not be recognised as the key). */
static void forward_output(ad_tool_job *job, ad_tool_host *h, const char *origin, const ad_buf *b,
                           size_t dropped)
{
    const char *s = b->data, *end = b->data ? b->data + b->len : NULL;
    while (s && s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        if (!nl && dropped) {
            dropped += n;
            break;
        }
        int level = AD_TOOL_LOG_OUTPUT;
        const char *text = s;
        size_t len = n;
        if (n >= 2 && s[0] == LOG_MARK && s[1] >= '0' && s[1] <= '0' + AGENTD_LOG_DEBUG) {
            level = s[1] - '0';
            text = s + 2;
            len = n - 2;
        }
        if (job)
            ad_tool_job_log(job, level, text, len);
        else
            ad_tool_host_log(h, origin, level, text, len);
        s = nl ? nl + 1 : end;
    }
    if (dropped) {
        char msg[96];
        int ml = snprintf(msg, sizeof msg, "[%zu more bytes of output dropped]", dropped);
        if (job)
            ad_tool_job_log(job, AD_TOOL_LOG_OUTPUT, msg, (size_t)ml);
        else
            ad_tool_host_log(h, origin, AD_TOOL_LOG_OUTPUT, msg, (size_t)ml);
    }
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
static void worker_result(const char *tool, double timeout_s, size_t limit, ad_proc_result *pr,
                          ad_tool_result *out)
{
    if (pr->timed_out) {
        ad_tool_result_errorf(out, true, "tool '%s' timed out after %g s and was killed", tool,
                              timeout_s);
        return;
    }
    bool is_error = false;
    size_t len = 0;
    size_t hdr = parse_result_header(&pr->result, &is_error, &len);
    size_t got = hdr ? pr->result.len - hdr : 0;
    if (hdr && (got == len || (got < len && pr->result_dropped > 0))) {
        ad_buf raw = AD_BUF_INIT;
        int rc = ad_buf_append(&raw, pr->result.data + hdr, got);
        if (rc == 0 && pr->result_dropped)
            rc = ad_buf_printf(&raw, "\n[result larger than %zu bytes: cut]", limit);
        if (rc != 0 || (raw.data == NULL && ad_buf_putc(&raw, '\0') != 0)) {
            ad_buf_free(&raw);
            ad_tool_result_errorf(out, true, "agentd: out of memory running tool '%s'", tool);
            return;
        }
        memset(out, 0, sizeof *out);
        out->is_error = is_error;
        /* The worker cut the output at the host's bound; the frame's bound
         * leaves room for the markers. */
        out->bounded = true;
        out->len = raw.len;
        out->content = ad_buf_steal(&raw);
        return;
    }
    if (pr->term_signal > 0) {
        const char *sn = ad_proc_signame(pr->term_signal);
        if (sn)
            ad_tool_result_errorf(out, true, "tool '%s' was killed by signal %d (SIG%s)", tool,
                                  pr->term_signal, sn);
        else
            ad_tool_result_errorf(out, true, "tool '%s' was killed by signal %d", tool,
                                  pr->term_signal);
        return;
    }
    if (pr->exit_status > 0 || pr->result.len == 0)
        ad_tool_result_errorf(out, true, "tool '%s' exited with status %d without a result", tool,
                              pr->exit_status);
    else
        ad_tool_result_errorf(out, true, "tool '%s' sent a malformed result (%zu bytes)", tool,
                              pr->result.len);
}

/* ---- the provider ------------------------------------------------------- */

/* Pool thread: one call in one worker process. */
static void run_isolated(ad_pool_call *pc)
{
    icall *c = (icall *)pc;
    const iso *p = c->p;
    ad_tool_job *job = pc->job;
    const char *name = job->tool->name;
    if (p->exe == NULL) {
        ad_tool_result_errorf(&c->res, true,
                              "tool '%s' cannot run isolated: the program's own path is unknown "
                              "(/proc/self/exe)",
                              name);
        return;
    }
    ad_buf req = AD_BUF_INIT;
    char ppid[32], keep_s[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    /* The worker cuts the output at the host's bound (argv[3]). */
    snprintf(keep_s, sizeof keep_s, "%zu", c->keep);
    char *argv[] = {p->exe, (char *)AD_ISOLATE_WORKER_FLAG, ppid, keep_s, NULL};
    char **env = ad_plugin_worker_env(p->scrub_env, (const char *const *)p->pass_env);
    if (env == NULL ||
        ad_buf_printf(&req, WORKER_REQ_MAGIC "%zu %ld %zu %zu\n", strlen(p->path),
                      p->config ? (long)strlen(p->config) : -1L, strlen(name),
                      job->args_len) != 0 ||
        ad_buf_puts(&req, p->path) != 0 || (p->config && ad_buf_puts(&req, p->config) != 0) ||
        ad_buf_puts(&req, name) != 0 || ad_buf_append(&req, job->args, job->args_len) != 0) {
        free(env);
        ad_buf_free(&req);
        ad_tool_result_errorf(&c->res, true, "agentd: out of memory running tool '%s'", name);
        return;
    }
    ad_proc_opts po = {
        .exe = p->exe,
        .argv = argv,
        .envp = env,
        .input = req.data,
        .input_len = req.len,
        .timeout_s = job->timeout_s,
        /* Room for the markers after a full result (and, as ever, for
         * three times the bound). */
        .result_max = 3 * c->keep + 4096,
        .output_max = WORKER_OUTPUT_MAX,
    };
    ad_proc_result pr;
    char err[512];
    int rc = ad_proc_run(&po, &pr, err, sizeof err);
    free(env);
    ad_buf_free(&req);
    if (rc == AD_ENOMEM) {
        ad_tool_result_errorf(&c->res, true, "agentd: out of memory running tool '%s'", name);
        return;
    }
    if (rc != AD_OK) {
        ad_tool_result_errorf(&c->res, true,
                              "tool '%s' could not be started in a worker process: %s", name, err);
        return;
    }
    forward_output(job, NULL, NULL, &pr.output, pr.output_dropped);
    worker_result(name, job->timeout_s, po.result_max, &pr, &c->res);
    ad_proc_result_free(&pr);
}

static void end_call(icall *c, ad_tool_result *r)
{
    ad_tool_job *job = c->pc.job;
    free(c);
    ad_tool_job_done(job, r);
}

static void not_started(icall *c)
{
    ad_tool_result r = {0};
    ad_buf b = AD_BUF_INIT;
    ad_pool_not_started(&b, c->pc.job->tool->name);
    r.is_error = true;
    r.len = b.len;
    r.content = ad_buf_steal(&b);
    end_call(c, &r);
}

static void after_isolated(ad_pool_call *pc, int how)
{
    icall *c = (icall *)pc;
    c->p->running--;
    if (how == AD_POOL_RAN) {
        ad_tool_result r = c->res;
        end_call(c, &r);
    } else if (how == AD_POOL_NO_THREAD) {
        not_started(c);
    } else {
        end_call(c, NULL);
    }
}

static int iso_start(ad_tool_provider *bp, ad_tool_job *job)
{
    iso *p = (iso *)bp;
    icall *c = calloc(1, sizeof *c);
    if (c == NULL)
        return AD_ENOMEM;
    c->p = p;
    c->pc.job = job;
    c->pc.run = run_isolated;
    c->pc.after = after_isolated;
    c->keep = ad_tool_host_result_max(p->base.host);
    job->pdata = c;
    /* The worker is killed at the deadline and says so; the host's own
     * deadline is only a backstop, late enough not to race it. */
    if (job->timeout_s > 0)
        job->grace_s = GRACE_S;
    int rc = ad_pool_queue(ad_tool_host_loop(p->base.host), &c->pc);
    if (rc == AD_ETOOBIG) {
        not_started(c);
    } else if (rc != AD_OK) {
        ad_tool_result r;
        ad_tool_result_errorf(&r, true, "agentd: cannot start a worker for tool '%s'",
                              job->tool->name);
        end_call(c, &r);
    } else {
        p->running++;
    }
    return AD_OK;
}

static bool iso_cancel(ad_tool_provider *bp, ad_tool_job *job)
{
    (void)bp;
    icall *c = job->pdata;
    /* A running worker is left to finish or meet its deadline (its thread
     * waits for it); one not started yet never starts. */
    return ad_pool_stop(&c->pc, job->stop);
}

static bool iso_busy(ad_tool_provider *bp)
{
    return ((iso *)bp)->running > 0;
}

static void iso_close(ad_tool_provider *bp)
{
    iso *p = (iso *)bp;
    free(p->exe);
    free(p->scrub_env);
    for (size_t i = 0; p->pass_env && p->pass_env[i]; i++)
        free(p->pass_env[i]);
    free(p->pass_env);
    free(p->path);
    free(p->config);
    free(p->file);
    free(p);
}

static const ad_tool_provider_vt iso_vt = {
    .kind = "isolated",
    /* No list: its tools are listed by the plugin provider that hands it
     * their calls. */
    .start = iso_start,
    .cancel = iso_cancel,
    .busy = iso_busy,
    .close = iso_close,
};

ad_tool_provider *ad_isolate_new(const ad_isolate_opts *o, const char *path,
                                 const char *config_json)
{
    iso *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base.vt = &iso_vt;
    p->exe = worker_exe(o); /* NULL: calls fail with a message */
    p->path = ad_strdup(path);
    p->file = ad_strdup(base_name(path));
    p->base.origin = p->file;
    size_t np = 0;
    while (o && o->pass_env && o->pass_env[np])
        np++;
    bool ok = (p->pass_env = calloc(np + 1, sizeof *p->pass_env)) != NULL;
    for (size_t i = 0; ok && i < np; i++)
        ok = (p->pass_env[i] = ad_strdup(o->pass_env[i])) != NULL;
    if (!ok || (o && o->scrub_env && !(p->scrub_env = ad_strdup(o->scrub_env))) || !p->path ||
        !p->file || (config_json && !(p->config = ad_strdup(config_json)))) {
        iso_close(&p->base);
        return NULL;
    }
    return &p->base;
}

/* ---- describing workers ------------------------------------------------- */

int ad_isolate_describe(const ad_isolate_opts *o, ad_tool_host *h, const char *path,
                        const char *config, json_object **desc, char *err, size_t errlen)
{
    const char *file = base_name(path);
    *desc = NULL;
    char *exe = worker_exe(o);
    if (exe == NULL) {
        ad_errf(err, errlen, "plugin %s: cannot be loaded in a worker process: the program's own "
                             "path is unknown (/proc/self/exe)", file);
        return AD_ERR;
    }
    double timeout_s = o ? o->describe_timeout_s : 0;
    char *abs = realpath(path, NULL);
    const char *where = abs ? abs : path;
    char ppid[32], keep_s[32];
    snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
    snprintf(keep_s, sizeof keep_s, "%zu", ad_tool_host_result_max(h));
    char *argv[] = {exe, (char *)AD_ISOLATE_WORKER_FLAG, ppid, keep_s, NULL};
    ad_buf req = AD_BUF_INIT;
    char **env = ad_plugin_worker_env(o ? o->scrub_env : NULL, o ? o->pass_env : NULL);
    int rc = AD_ENOMEM;
    if (env && ad_buf_printf(&req, WORKER_DESC_MAGIC "%zu %ld\n", strlen(where),
                             config ? (long)strlen(config) : -1L) == 0 &&
        ad_buf_puts(&req, where) == 0 && (!config || ad_buf_puts(&req, config) == 0)) {
        ad_proc_opts po = {
            .exe = exe,
            .argv = argv,
            .envp = env,
            .input = req.data,
            .input_len = req.len,
            .timeout_s = timeout_s,
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
            forward_output(NULL, h, file, &pr.output, pr.output_dropped);
            bool is_error = false;
            size_t len = 0, hdr = parse_result_header(&pr.result, &is_error, &len);
            const char *sn = pr.term_signal > 0 ? ad_proc_signame(pr.term_signal) : NULL;
            rc = AD_ERR;
            if (pr.timed_out) {
                ad_errf(err, errlen, "plugin %s: init did not finish within %g s in a worker "
                                     "process (agent.tool_timeout_s)",
                        file, timeout_s);
            } else if (hdr && pr.result.len - hdr == len && !pr.result_dropped && is_error) {
                ad_errf(err, errlen, "%.*s", (int)(len > 2000 ? 2000 : len),
                        pr.result.data + hdr);
            } else if (hdr && pr.result.len - hdr == len && !pr.result_dropped) {
                char why[200];
                if (ad_tool_parse_json(pr.result.data + hdr, len, desc, why, sizeof why) == 0 &&
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
    free(exe);
    ad_buf_free(&req);
    return rc;
}

/* ---- the worker process ------------------------------------------------- */

/* Kept in globals so that leak checkers see them as reachable when a plugin
 * calls exit() in the middle of a call. */
static agentd_plugin *worker_plugin;
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
    if ((worker_plugin = ad_plugin_open_worker(path, config, NULL, NULL, err, sizeof err)) == NULL)
        worker_send(rfd, true, err, strlen(err));
    json_object *desc = ad_plugin_describe(worker_plugin);
    if (desc == NULL)
        worker_fail(rfd, "tool worker: out of memory");
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        desc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (text == NULL)
        worker_fail(rfd, "tool worker: out of memory");
    worker_send(rfd, false, text, len);
}

int ad_isolate_worker_main(int argc, char **argv)
{
    /* Die with the host: a worker never outlives the process that waits
     * for it (the check covers a host that died before the prctl). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 3 || strtol(argv[2], NULL, 10) != (long)getppid())
        _exit(125);
    if (argc > 3 && strcmp(argv[3], AD_PLUGIN_WORKER_SERVE_ARG) == 0)
        return ad_plugin_serve_main();
    /* The result channel leaves fd 3, where a plugin might write by accident. */
    int rfd = fcntl(3, F_DUPFD_CLOEXEC, 64);
    if (rfd < 0)
        return 125;
    close(3);
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
    if (p && worker_input.len >= dm && memcmp(p, WORKER_DESC_MAGIC, dm) == 0)
        worker_describe(rfd, p + dm, end);
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
    size_t max = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 0;
    if (max == 0)
        max = (size_t)1 << 20;
    if ((worker_plugin = ad_plugin_open_worker(path, config, NULL, NULL, err, sizeof err)) == NULL)
        worker_fail(rfd, "tool '%s' cannot run isolated: %s", name, err);
    if (ad_plugin_invoke(worker_plugin, name, args, (size_t)al, max, &worker_res) != AD_OK)
        worker_fail(rfd, "tool worker: out of memory running tool '%s'", name);
    worker_send(rfd, worker_res.is_error, worker_res.content, worker_res.len);
    return 0; /* not reached */
}

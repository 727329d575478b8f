/*
 * provider.h -- the tool-provider interface: where tools come from and how
 * a call runs.
 *
 * A provider is a struct of function pointers (as SQLite's VFS is): it lists
 * tools, starts a call, and cancels one. The host (host.h) never knows how a
 * call runs: on a thread of libuv's pool (.so plugins in process,
 * tools/plugin.c), in a child process (tools/isolate.c), or, later, in an MCP
 * server at the end of a pipe or an HTTP connection.
 *
 * Threads: every function of the vtable is called on the host's loop
 * thread, and ad_tool_job_progress() and ad_tool_job_done() must be called
 * there too (a provider that runs calls elsewhere marshals the completion
 * back, e.g. through uv_queue_work's after_work_cb). ad_tool_job_started(),
 * ad_tool_job_log() and ad_tool_host_log() may be called from any thread:
 * the moment a call really begins, and what it logs, are known on the thread
 * that runs it.
 *
 * A job's life:
 *   host: start(p, job) ──► provider: ad_tool_job_started(job)      (it really runs now)
 *                                     ad_tool_job_progress(job, ...) (any number)
 *                                     ad_tool_job_log(job, ...)      (any number)
 *                                     ad_tool_job_done(job, &result) (exactly once)
 *   host: cancel(p, job)  at a timeout or on cancellation, after the host has
 *         decided the call's result; the provider stops the call if it can
 *         and still ends the job with ad_tool_job_done (its result is then
 *         dropped). A job must not be touched after ad_tool_job_done.
 */
#ifndef AD_TOOLS_PROVIDER_H
#define AD_TOOLS_PROVIDER_H

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ad_tool_host ad_tool_host;
typedef struct ad_tool_provider ad_tool_provider;
typedef struct ad_tool_job ad_tool_job;

/* Flags of a tool (the same bits as the plugin ABI's AGENTD_TOOL_*). */
enum {
    AD_TOOL_THREADSAFE = 1u << 0, /* calls may run concurrently (informational for the host) */
    AD_TOOL_IDEMPOTENT = 1u << 1, /* a call may run again (agentd worker re-runs one whose
                                     worker died, with the idempotency key JOB:CALL in
                                     conv_id and call_id) */
};

/* One tool as a provider offers it. Borrowed from the provider; valid until
 * the provider's list changes (ad_tool_host_changed) or it is closed; a
 * provider keeps the descriptions of its running jobs alive. */
typedef struct ad_tool_desc {
    const char *name;              /* model-facing: [A-Za-z0-9_-]{1,64}, unique in the host */
    const char *description;       /* may be "" */
    const json_object *parameters; /* JSON Schema of the arguments (an object schema) */
    uint32_t flags;                /* AD_TOOL_* */
    const char *origin;            /* where it comes from, for people: "add.so" */
} ad_tool_desc;

/* Why the host stops a job (ad_tool_job.stop). */
enum { AD_TOOL_STOP_NONE = 0, AD_TOOL_STOP_TIMEOUT = 1, AD_TOOL_STOP_CANCEL = 2 };

/* One call in flight. The host owns it; the provider reads these fields,
 * may set grace_s in start(), and may keep its own state in `pdata`. */
struct ad_tool_job {
    const ad_tool_desc *tool;
    const char *call_id;   /* the id the model gave the call */
    const char *conv_id;   /* the conversation it belongs to ("" if none) */
    const char *args;      /* arguments, JSON text of an object, NUL-terminated, private */
    size_t args_len;
    json_object *args_obj; /* the same, parsed and validated; borrowed until start() returns */
    double timeout_s;      /* 0 = none; the host enforces it */
    /* Set by a provider that enforces timeout_s itself and ends the job
     * with its own message (a worker process killed at its deadline): the
     * host's deadline then comes grace_s later, as a backstop. */
    double grace_s;
    int stop;              /* AD_TOOL_STOP_*: set by the host before it calls cancel() */
    void *pdata;           /* the provider's */
};

/* What a call produced. */
typedef struct ad_tool_result {
    char *content; /* owned (malloc), NUL-terminated; the host repairs UTF-8 and caps it */
    size_t len;
    bool is_error;
    /* The provider kept at most ad_tool_host_result_max() bytes of output
     * and marked what it cut (AD_TOOL_CUT_MARK) itself, e.g. because it
     * bounded its buffer while the tool wrote: the host does not cut again
     * (it still repairs the text). */
    bool bounded;
    /* Owned or NULL: Chat Completions content parts ({"type":"image_url",
     * ...}) that show the model what content only describes (an MCP
     * tool's images, provider.images). The agent sends them in one user
     * message after the step's tool messages. */
    json_object *parts;
} ad_tool_result;

/* For providers: makes *r an error result of agentd's own words (printf
 * format); bounded: the host does not cut it. Its content is NULL when out
 * of memory (the host then says so). */
void ad_tool_result_errorf(ad_tool_result *r, bool bounded, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ad_tool_result_verrorf(ad_tool_result *r, bool bounded, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* The marker after a result that was cut (printf format, the bytes cut). */
#define AD_TOOL_CUT_MARK "\n[... %zu bytes cut]"

typedef struct ad_tool_provider_vt {
    const char *kind; /* "plugin", "isolated", "mcp" */
    /* The tools offered now. Both NULL: none (a provider that runs the
     * calls another one lists). */
    size_t (*count)(ad_tool_provider *p);
    const ad_tool_desc *(*get)(ad_tool_provider *p, size_t i);
    /* Starts job. Returns 0: the job is the provider's until its
     * ad_tool_job_done(), which may come from inside this call; the
     * provider reports ad_tool_job_started() when the call really begins
     * (from inside this call when that is now). Or a negative AD_E* with
     * nothing started: the host gives the call an error result. */
    int (*start)(ad_tool_provider *p, ad_tool_job *job);
    /* Asks a job to stop (job->stop says why). Returns true when the call
     * had not begun and now never will, false when it runs on (or already
     * ran). ad_tool_job_done may come from inside this call. May be NULL:
     * jobs run to their end. */
    bool (*cancel)(ad_tool_provider *p, ad_tool_job *job);
    /* True while a job of this provider still runs code that cannot be
     * stopped (a thread inside plugin code): the process must not unload
     * it. May be NULL. */
    bool (*busy)(ad_tool_provider *p);
    /* Releases the provider. Jobs still waiting are ended first (their
     * ad_tool_job_done comes from inside this call); the host never closes
     * a busy provider. */
    void (*close)(ad_tool_provider *p);
} ad_tool_provider_vt;

struct ad_tool_provider {
    const ad_tool_provider_vt *vt;
    const char *origin; /* for people ("add.so"); set by the provider */
    ad_tool_host *host; /* set by ad_tool_host_add() (a plugin loader sets it earlier) */
};

/* For providers: the job really started running now (its timeout counts
 * from here). Any thread; at most once counts. A job never reported
 * started is never timed out and reports 0 seconds. */
void ad_tool_job_started(ad_tool_job *job);
/* For providers: progress of a job (done out of total; total <= 0 when
 * unknown; msg may be NULL). Rate-limited by the host. Loop thread. */
void ad_tool_job_progress(ad_tool_job *job, double done, double total, const char *msg);
/* Levels of log lines: AGENTD_LOG_ERROR..AGENTD_LOG_DEBUG (0..3) of the
 * plugin ABI, and this one for other output of a tool (what a worker
 * process wrote to stdout or stderr): never filtered by level. */
#define AD_TOOL_LOG_OUTPUT (-1)
/* For providers: one line (no newline; len bytes, not redacted) the job's
 * tool logged while it ran; the host tags it with the conversation and the
 * call. Any thread, until the job's ad_tool_job_done(). */
void ad_tool_job_log(ad_tool_job *job, int level, const char *text, size_t len);
/* For providers: a line logged outside any call (a plugin's init or
 * destroy, a thread of its own). Any thread. */
void ad_tool_host_log(ad_tool_host *h, const char *origin, int level, const char *text,
                      size_t len);
/* For providers: the job ended. Steals res->content (res is cleared); res
 * may be NULL for no content (a job whose result the host dropped). Loop
 * thread. */
void ad_tool_job_done(ad_tool_job *job, ad_tool_result *res);

/* For providers: the provider's list of tools changed. Loop thread. */
void ad_tool_host_changed(ad_tool_host *h);
/* For providers: bytes of one result the host keeps (see bounded). */
size_t ad_tool_host_result_max(const ad_tool_host *h);

void ad_tool_result_free(ad_tool_result *r);

#endif /* AD_TOOLS_PROVIDER_H */

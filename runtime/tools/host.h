/*
 * host.h -- the tool host: every provider's tools in one registry, and the
 * scheduler that runs one step's tool calls.
 *
 * One host serves every conversation of the process, on one loop. Providers
 * (provider.h) are added at start-up (and later, e.g. an MCP server that
 * came up); their tools form one list with unique names, in the order
 * added. The list may change while conversations run:
 * ad_tool_host_generation() changes with it, and a conversation rebuilds
 * its request's "tools" then.
 *
 * A step's calls run as a batch. The host answers what needs no provider
 * (an unknown tool, arguments that are not JSON, not an object, or against
 * the schema), starts the others (all at once: a provider serialises what
 * must not run concurrently), enforces each call's timeout from the moment
 * its provider reports it started, caps and repairs results, and reports
 * each result as it comes and then all of them in call order. Cancelling a
 * batch gives every unfinished call its result at once; calls that were
 * not started never start. A provider's late completion of a call that
 * already has its result (timed out, cancelled) is dropped.
 *
 * Threads: everything here is for the loop thread, and every callback runs
 * there.
 */
#ifndef AD_TOOLS_HOST_H
#define AD_TOOLS_HOST_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tools/provider.h"

typedef struct ad_tool_batch ad_tool_batch;

/* Returns a new host on loop (call on the loop's thread); NULL on ENOMEM. */
ad_tool_host *ad_tool_host_new(uv_loop_t *loop);
/* The loop the host runs on (for providers). */
uv_loop_t *ad_tool_host_loop(const ad_tool_host *h);
/* Closes every provider that is not busy and releases the host. No batch
 * may be waiting for results. Handles are closed: run the loop once more
 * afterwards. A busy provider (see provider.h) and what it holds stay:
 * its code stays loaded. */
void ad_tool_host_free(ad_tool_host *h);

/* Adds p (the host owns it from now on, also on failure: it is closed).
 * A tool name already offered is an error: "duplicate tool name 'add'
 * (already registered by add.so)". Returns 0, AD_EINVAL or AD_ENOMEM. */
int ad_tool_host_add(ad_tool_host *h, ad_tool_provider *p, char *err, size_t errlen);

size_t ad_tool_host_count(const ad_tool_host *h);
const ad_tool_desc *ad_tool_host_at(const ad_tool_host *h, size_t i);
const ad_tool_desc *ad_tool_host_find(const ad_tool_host *h, const char *name);
/* The provider of the i-th tool. */
ad_tool_provider *ad_tool_host_owner(const ad_tool_host *h, size_t i);
/* The providers, in the order added. */
size_t ad_tool_host_provider_count(const ad_tool_host *h);
ad_tool_provider *ad_tool_host_provider_at(const ad_tool_host *h, size_t i);
/* Changes whenever the list changes (never 0). */
uint64_t ad_tool_host_generation(const ad_tool_host *h);
/* The request's "tools" array for the current list:
 * [{"type":"function","function":{name, description, parameters}}...]. A
 * new reference to an array the host keeps for this generation and hands
 * to every caller: read it, never change it (build an array of your own
 * that takes references to its elements). NULL when there are no tools or
 * on ENOMEM. Loop thread. */
json_object *ad_tool_host_openai_json(ad_tool_host *h);
/* "add, multiply" (caller frees); NULL on ENOMEM. */
char *ad_tool_host_names(const ad_tool_host *h);

/* Bytes of one result kept (0 = 1 MiB); the rest is cut with a marker. */
void ad_tool_host_set_result_max(ad_tool_host *h, size_t max);

/* A log line of a tool. Strings are borrowed for the call; text is raw
 * (not redacted, may hold control characters). */
typedef struct ad_tool_log_line {
    const char *conv_id; /* "" outside a call */
    const char *call_id; /* "" outside a call */
    const char *tool;    /* the call's tool; "" outside a call */
    const char *origin;  /* where the tool comes from: "add.so" */
    int level;           /* AGENTD_LOG_*, or AD_TOOL_LOG_OUTPUT */
    const char *text;
    size_t len;
} ad_tool_log_line;
/* Where log lines go that no batch takes (see on_log): those outside any
 * call, and those of calls whose batch has no on_log or has ended. Lines
 * above max_level (AGENTD_LOG_*) are dropped where they are made;
 * AD_TOOL_LOG_OUTPUT lines never are. fn NULL: nowhere. */
typedef void (*ad_tool_log_fn)(void *ud, const ad_tool_log_line *line);
void ad_tool_host_set_log(ad_tool_host *h, ad_tool_log_fn fn, void *ud, int max_level);

/* Bytes of a line's text shown (the rest is cut, after redaction). */
#define AD_TOOL_LOG_LINE_MAX 8192
/* Formats line as agentd shows it on stderr: "agentd: plugin ORIGIN:
 * TEXT\n" (for AD_TOOL_LOG_OUTPUT of a call: "agentd: tool TOOL: TEXT\n"),
 * with secret (NULL: none) replaced by "[REDACTED]" first, then cut to
 * AD_TOOL_LOG_LINE_MAX bytes (" [...]" marks the cut), control characters
 * shown as '?'. out needs AD_TOOL_LOG_LINE_MAX + 512 bytes; returns the
 * length written. */
size_t ad_tool_log_format(char *out, size_t outlen, const ad_tool_log_line *line,
                          const char *secret);

/* True while a provider still runs code that cannot be stopped. */
bool ad_tool_host_busy(const ad_tool_host *h);

/* The strict JSON reading of every text a tool side gets: exactly one JSON
 * value in text[0..len) (trailing whitespace allowed) into *out (NULL for
 * the literal null). Returns 0, or -1 with a short reason in why. */
int ad_tool_parse_json(const char *text, size_t len, json_object **out, char *why,
                       size_t whylen);

/* ---- running calls ------------------------------------------------------ */

typedef struct ad_call_req {
    const char *id;   /* the call's id (copied) */
    const char *name; /* the tool (copied) */
    const char *args; /* JSON text (copied); NULL or blank means {} */
    size_t args_len;
    double timeout_s; /* 0 = none */
} ad_call_req;

/* How a call ended. */
typedef enum ad_call_state {
    AD_CALL_DONE = 0,  /* the tool answered (result.is_error tells how) */
    AD_CALL_REFUSED,   /* answered by the host: unknown tool, bad arguments */
    AD_CALL_TIMED_OUT, /* ran longer than timeout_s */
    AD_CALL_CANCELLED, /* the batch was cancelled */
    AD_CALL_FAILED     /* the provider could not start it */
} ad_call_state;

typedef struct ad_call_outcome {
    ad_tool_result result; /* content is valid UTF-8 without NUL, capped; owned by the host */
    ad_call_state state;
    double seconds; /* running time (0 if it never started) */
    bool started;   /* its provider reported it started */
} ad_call_outcome;

typedef struct ad_batch_cb {
    /* Optional. i is the call's position in the batch. */
    void (*on_progress)(void *ud, size_t i, double done, double total, const char *msg);
    /* Optional: log lines of the batch's calls (else the host's log fn). */
    void (*on_log)(void *ud, size_t i, int level, const char *text, size_t len);
    /* Optional: call i has its outcome (o, borrowed, stays valid until
     * on_done returns). May come from inside ad_tool_host_run (calls the
     * host answers) and ad_tool_batch_cancel. */
    void (*on_result)(void *ud, size_t i, const ad_call_outcome *o);
    /* Required: every call has its outcome; o[0..n) in call order,
     * borrowed until return. Never called from inside ad_tool_host_run or
     * ad_tool_batch_cancel. The batch is gone after it returns. */
    void (*on_done)(void *ud, const ad_call_outcome *o, size_t n);
} ad_batch_cb;

/* Runs n calls (n >= 1) for conversation conv_id (copied; may be NULL).
 * Returns the batch, or NULL on ENOMEM (nothing started, no callback). */
ad_tool_batch *ad_tool_host_run(ad_tool_host *h, const char *conv_id, const ad_call_req *calls,
                                size_t n, const ad_batch_cb *cb, void *ud);
/* Every call without an outcome gets AD_CALL_CANCELLED now ("cancelled by
 * user before it started; it was not run", or "cancelled by user while it
 * was running (its result will be ignored)"); started ones are asked to
 * stop; on_done follows from the loop. */
void ad_tool_batch_cancel(ad_tool_batch *b);
/* Cancels b as ad_tool_batch_cancel does, and no callback of it follows:
 * for an owner that goes away. b is gone. */
void ad_tool_batch_abandon(ad_tool_batch *b);

#endif /* AD_TOOLS_HOST_H */

/*
 * plugin.h -- the .so plugin provider: loads tool plugins (ABI 1.1 and 1.0,
 * include/agentd/plugin.h) and runs their calls.
 *
 * Each plugin file becomes one provider (provider.h) of the host it is
 * loaded for, its origin the file name ("add.so"), its tools in the order
 * its init registered them. ad_plugin_load_dir() loads every regular "*.so"
 * of a folder in sorted order. Any failure names the file and the reason,
 * and stops loading.
 *
 * Where a tool's calls run is its mode (ad_plugin_opts.mode):
 *   AD_TOOL_WORKER      in the plugin's persistent worker process
 *                       (tools/worker.h): the default of agentd;
 *   AD_TOOL_PER_CALL    in a fresh worker process per call (tools/isolate.h);
 *   AD_TOOL_IN_PROCESS  in this process, on libuv's thread pool
 *                       (tools/pool.h).
 * A plugin none of whose tools runs in process is never dlopen()ed here:
 * its tools come from a description, read from the tool cache
 * (tools/tcache.h) when the file and its config are unchanged, else made by
 * a describing worker process, which runs the plugin's init. A plugin with
 * an in-process tool is dlopen()ed (RTLD_NOW | RTLD_LOCAL) and its init
 * runs here.
 *
 * In process, calls of a tool without AGENTD_TOOL_THREADSAFE run one at a
 * time per plugin, in the order they came, whichever conversation or batch
 * they belong to. A plugin's log() lines go to the host (ad_tool_job_log
 * while the plugin runs a call on that thread, or when it names the call:
 * tagged with the call; ad_tool_host_log otherwise).
 *
 * The call machinery (agentd_call: arguments as values, result sink,
 * deadline, cancellation, progress, completion later from any thread) is
 * shared with the worker processes, which run calls through the functions
 * at the end of this header.
 */
#ifndef AD_TOOLS_PLUGIN_H
#define AD_TOOLS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/host.h"
#include "tools/isolate.h"

/* Where a tool's calls run (the values of AD_ISOLATION_* in base/config.h). */
enum { AD_TOOL_IN_PROCESS = 0, AD_TOOL_PER_CALL = 1, AD_TOOL_WORKER = 2 };

/* The [plugins.config.STEM] table as JSON text for a plugin whose file is
 * STEM.so, or NULL when there is none. Borrowed until the load returns. */
typedef const char *(*ad_plugin_config_fn)(void *ud, const char *stem);
/* The mode (AD_TOOL_*) of the tool `name`. */
typedef int (*ad_plugin_mode_fn)(void *ud, const char *name);

typedef struct ad_plugin_opts {
    ad_plugin_config_fn config; /* NULL: no plugin has a config table */
    void *config_ud;
    /* NULL: every tool runs in process (and no worker describes a plugin
     * first). Set: see the header comment. Load errors of a described
     * plugin read as for an in-process load; a describing worker that
     * crashes, exits or outlives isolate->describe_timeout_s is named. */
    ad_plugin_mode_fn mode;
    void *mode_ud;
    const ad_isolate_opts *isolate; /* workers of both kinds; copied; NULL: defaults */
    /* The tool cache's folder (tools/tcache.h); NULL: no cache, every
     * described plugin is described by a worker at each load. */
    const char *cache_dir;
    /* Describe every plugin afresh and rewrite its cache entry. */
    bool refresh_cache;
} ad_plugin_opts;

/* Loads every *.so in dir (sorted) into h. Returns 0 or a negative AD_E*
 * with err set to "plugin FILE: reason" (or "plugin directory DIR: ...").
 * o may be NULL. Call on h's loop thread. */
int ad_plugin_load_dir(ad_tool_host *h, const char *dir, const ad_plugin_opts *o, char *err,
                       size_t errlen);
/* Loads one plugin file into h; config_json may be NULL. */
int ad_plugin_load_file(ad_tool_host *h, const char *path, const char *config_json,
                        const ad_plugin_opts *o, char *err, size_t errlen);

/* True when p is a plugin provider whose .so is loaded into this process
 * (false for one registered from a description, or another kind of
 * provider). */
bool ad_plugin_in_process(const ad_tool_provider *p);
/* Where the tools of plugin provider p came from: "loaded", "cache" or
 * "described" (NULL: not a plugin provider). */
const char *ad_plugin_source(const ad_tool_provider *p);
/* The worker provider (worker.h) that runs the worker-mode calls of
 * plugin provider p, or NULL. */
ad_tool_provider *ad_plugin_worker_provider(const ad_tool_provider *p);

/* ---- for worker processes (isolate.c, serve.c) ------------------------------ */

typedef struct agentd_plugin agentd_plugin;
typedef struct agentd_call agentd_call;

/* Lines a plugin logs outside any call, in a worker (NULL: framed on
 * stderr for a per-call worker's host). Any thread. */
typedef void (*ad_plugin_log_fn)(void *ud, int level, const char *text, size_t len);

/* Loads path with its init, without a host. NULL with err set ("plugin
 * FILE: ...") on failure. */
agentd_plugin *ad_plugin_open_worker(const char *path, const char *config_json,
                                     ad_plugin_log_fn log, void *log_ud, char *err,
                                     size_t errlen);
/* {"tools":[{"name","description","parameters","flags"}]} of p (caller
 * puts it); NULL on ENOMEM. */
json_object *ad_plugin_describe(const agentd_plugin *p);
/* Calls every tool's destroy() and the plugin data's, and unloads p. */
void ad_plugin_close_worker(agentd_plugin *p);
/* Runs tool `name` (args: JSON text, already checked by the host) with at
 * most max bytes of output kept, blocking (also for a call that completes
 * later). Fills *out (raw: the host repairs the text; out->bounded).
 * Returns 0 or AD_ENOMEM. */
int ad_plugin_invoke(agentd_plugin *p, const char *name, const char *args, size_t args_len,
                     size_t max, ad_tool_result *out);

/* What a running call reports, to whoever runs it. */
typedef struct ad_call_hooks {
    /* The call ended; *r is stolen (raw: bounded by max with the marker
     * appended, out->bounded). Exactly once, on the thread that ended it:
     * the one running call()/invoke(), or the one calling complete(). */
    void (*done)(void *ud, ad_tool_result *r);
    /* Any thread, until done; NULL: dropped. */
    void (*progress)(void *ud, double done, double total, const char *msg);
    /* A line the call logged (no newline); any thread, until done. */
    void (*log)(void *ud, int level, const char *text, size_t len);
    /* The call is freed (its last reference is gone); may be NULL. */
    void (*release)(void *ud);
} ad_call_hooks;

typedef struct ad_call_spec {
    const char *tool;             /* the tool's name */
    const char *call_id, *conv_id; /* copied; NULL: "" */
    const char *args;             /* JSON text of an object (copied); NULL: {} */
    size_t args_len;
    json_object *args_obj; /* the same, parsed (stolen); NULL: parsed from args */
    double timeout_s;      /* 0: none; the deadline counts from ad_plugin_call_run */
    size_t max;            /* bytes of output kept; 0: 1 MiB */
} ad_call_spec;

/* A call of a tool of p, ready to run. NULL with *why set when the tool is
 * unknown (why = "unknown") or on ENOMEM (why = "memory"). The caller holds
 * one reference. Any thread. */
agentd_call *ad_plugin_call_new(agentd_plugin *p, const ad_call_spec *s, const ad_call_hooks *h,
                                void *ud, const char **why);
/* Runs c on this thread: returns when the plugin returned; hooks->done has
 * come by then, or comes later from complete(). At most once. */
void ad_plugin_call_run(agentd_call *c);
/* Asks c to stop: cancelled() turns true and the plugin's cancel() runs
 * (once, on this thread) if the call has not ended. Any thread. */
void ad_plugin_call_cancel(agentd_call *c);
/* Takes another reference (the caller holds one already); any thread. */
void ad_plugin_call_ref(agentd_call *c);
/* Drops a reference. */
void ad_plugin_call_release(agentd_call *c);
/* True while a call of p that returned AGENTD_PENDING has not completed. */
size_t ad_plugin_pending(const agentd_plugin *p);

#endif /* AD_TOOLS_PLUGIN_H */

/*
 * plugin.h -- the .so plugin provider: loads tool plugins (ABI 1.0,
 * include/agentd/plugin.h) and runs their calls.
 *
 * Each plugin file becomes one provider (provider.h) of the host it is
 * loaded for, its origin the file name ("add.so"), its tools in the order
 * its init registered them. ad_plugin_load_dir() loads every regular "*.so"
 * of a folder in sorted order with dlopen(RTLD_NOW | RTLD_LOCAL), checks the
 * ABI, calls init and collects the tools it registers (deep copies). Any
 * failure names the file and the reason, and stops loading.
 *
 * Calls run on libuv's thread pool (tools/pool.h). Calls of a tool without
 * AGENTD_TOOL_THREADSAFE run one at a time per plugin, in the order they
 * came, whichever conversation or batch they belong to. Tools the options
 * isolate run each call in a worker process instead (tools/isolate.h).
 *
 * A plugin's log() lines go to the host (ad_tool_job_log while the plugin
 * runs a call on that thread: tagged with the call; ad_tool_host_log
 * otherwise).
 */
#ifndef AD_TOOLS_PLUGIN_H
#define AD_TOOLS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "tools/host.h"
#include "tools/isolate.h"

/* The [plugins.config.STEM] table as JSON text for a plugin whose file is
 * STEM.so, or NULL when there is none. Borrowed until the load returns. */
typedef const char *(*ad_plugin_config_fn)(void *ud, const char *stem);
/* Whether calls of the tool `name` run in worker processes. */
typedef bool (*ad_plugin_isolated_fn)(void *ud, const char *name);

typedef struct ad_plugin_opts {
    ad_plugin_config_fn config; /* NULL: no plugin has a config table */
    void *config_ud;
    /* NULL: every tool runs in process. Set: every plugin is first
     * described by a worker process, which runs its init and reports its
     * tools; when all of them are isolated the plugin is never loaded into
     * this process (its tools are registered from the description, with
     * the same checks). Otherwise it is loaded here as usual, and its init
     * runs a second time, in this process. Load errors read as for an
     * in-process load; a worker that crashes, exits or outlives
     * isolate->describe_timeout_s is named. */
    ad_plugin_isolated_fn isolated;
    void *isolated_ud;
    const ad_isolate_opts *isolate; /* copied; NULL: defaults */
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
 * (false for one registered from a worker's description, or another kind
 * of provider). */
bool ad_plugin_in_process(const ad_tool_provider *p);

/* ---- for worker processes (isolate.c) ----------------------------------- */

typedef struct agentd_plugin agentd_plugin;

/* Loads path with its init, without a host: log() lines go to stderr
 * framed for the host process (isolate.c reads them back). NULL with err
 * set ("plugin FILE: ...") on failure. */
agentd_plugin *ad_plugin_open_worker(const char *path, const char *config_json, char *err,
                                     size_t errlen);
size_t ad_plugin_tool_count(const agentd_plugin *p);
const ad_tool_desc *ad_plugin_tool_at(const agentd_plugin *p, size_t i);
/* Runs tool `name` (args: JSON text, already checked by the host) with at
 * most max bytes of output kept, blocking. Fills *out (raw: the host
 * repairs the text; out->bounded). Returns 0 or AD_ENOMEM. */
int ad_plugin_invoke(agentd_plugin *p, const char *name, const char *args, size_t args_len,
                     size_t max, ad_tool_result *out);

#endif /* AD_TOOLS_PLUGIN_H */

/*
 * tools.h -- the plugin host: loads tool plugins and runs tool calls.
 *
 * Plugins are shared objects exporting agentd_plugin_init_v1() (see
 * include/agentd/plugin.h). ad_tools_load_dir() loads every regular "*.so"
 * of a folder in sorted order with dlopen(RTLD_NOW | RTLD_LOCAL), checks the
 * ABI, calls init and collects the tools it registers (deep copies). Any
 * failure names the file and the reason, and stops loading.
 *
 * ad_tools_invoke() parses the arguments, validates them against the tool's
 * schema and calls the plugin; every failure becomes an error result with a
 * clear message, never a crash of the host. It may be called from worker
 * threads for tools with AGENTD_TOOL_THREADSAFE (ad_tool_threadsafe()).
 *
 * ad_tools_invoke_isolated() runs the same call in a worker process instead:
 * the host's own executable started again as `EXE --tool-worker PPID`
 * (ad_tools_worker_main() must be reachable from that program's main()),
 * which loads just the tool's plugin and runs the one call. A crash, an
 * exit, a hang past the timeout or an oversized result of the plugin then
 * becomes an error result naming what happened, and the host carries on.
 */
#ifndef AD_TOOLS_H
#define AD_TOOLS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ad_tools ad_tools;
typedef struct ad_tool ad_tool;

/* Returns the [plugins.config.STEM] table as JSON text for a plugin whose file
 * is STEM.so, or NULL when there is none. Borrowed until load returns. */
typedef const char *(*ad_tools_config_fn)(void *ud, const char *stem);

typedef struct ad_tool_result {
    char *content; /* owned (malloc), NUL-terminated, valid UTF-8 */
    size_t len;
    bool is_error;
} ad_tool_result;

ad_tools *ad_tools_new(void); /* NULL on ENOMEM; free with ad_tools_free() */
/* Calls every tool's destroy(); dlcloses the plugins (skipped under ASan). */
void ad_tools_free(ad_tools *t);

/* Loads every *.so in dir (sorted). Returns 0 or a negative AD_E* with err
 * set to "plugin FILE: reason". A missing or unreadable dir is an error. */
int ad_tools_load_dir(ad_tools *t, const char *dir, ad_tools_config_fn cfg, void *ud, char *err,
                      size_t errlen);
/* Loads one plugin file; config_json may be NULL. */
int ad_tools_load_file(ad_tools *t, const char *path, const char *config_json, char *err,
                       size_t errlen);

size_t ad_tools_plugin_count(const ad_tools *t);
const char *ad_tools_plugin_file(const ad_tools *t, size_t i); /* "add.so", load order */

size_t ad_tools_count(const ad_tools *t);
const ad_tool *ad_tools_at(const ad_tools *t, size_t i); /* registration order */
const ad_tool *ad_tools_find(const ad_tools *t, const char *name); /* NULL if unknown */

const char *ad_tool_name(const ad_tool *tool);
const char *ad_tool_description(const ad_tool *tool);
const json_object *ad_tool_parameters(const ad_tool *tool);
const char *ad_tool_plugin(const ad_tool *tool); /* file name of its plugin, e.g. "add.so" */
bool ad_tool_threadsafe(const ad_tool *tool);

/* The request's "tools" array: [{"type":"function","function":{name,
 * description, parameters}}...]. Returns a new reference; caller puts it. */
json_object *ad_tools_openai_json(const ad_tools *t);

/* Comma-separated tool names ("add, multiply"); caller frees. */
char *ad_tools_names(const ad_tools *t);

/*
 * Runs the tool `name` with args (JSON text, args_len bytes; empty means {}).
 * Always fills *out (caller frees out->content): unknown tool (message lists
 * the available tools), unparsable arguments, arguments that are not an
 * object or violate the schema, and plugin failures all give is_error = true
 * with a message; the plugin is not called in the first three cases.
 * Returns 0, or AD_ENOMEM.
 */
int ad_tools_invoke(const ad_tools *t, const char *name, const char *args, size_t args_len,
                    ad_tool_result *out);
void ad_tool_result_free(ad_tool_result *r);
/* Bytes of one call's output kept (0 = 1 MiB); the rest is cut with a
 * marker saying how many bytes were cut. Set before any call runs. */
void ad_tools_set_result_max(ad_tools *t, size_t max);

/* Plugin log() lines go to stderr as "agentd: plugin FILE: TEXT", one line
 * per line of the message, with control characters shown as '?'. Those up
 * to `level` are shown: AGENTD_LOG_INFO by default, AGENTD_LOG_WARN for -q;
 * ERROR and WARN always; everything (DEBUG too) when the environment has
 * AGENTD_DEBUG set to anything but "" or "0". Set before plugins load. */
void ad_tools_set_log_level(ad_tools *t, int level);
/* The secret (copied; NULL for none) replaced by "[REDACTED]" in log lines
 * and in the output of worker processes. Set before plugins load. Returns
 * 0 or AD_ENOMEM. */
int ad_tools_set_secret(ad_tools *t, const char *secret);

/* ---- process isolation ---- */

#define AD_TOOLS_WORKER_FLAG "--tool-worker" /* argv[1] of a worker process */

typedef struct ad_isolate_opts {
    double timeout_s;      /* 0 = none; past it the worker's process group is killed */
    const char *scrub_env; /* NULL, or a variable the worker must not inherit (the API key's) */
} ad_isolate_opts;

/*
 * Like ad_tools_invoke(), but the plugin runs in a worker process (see
 * above). Unknown tools and bad arguments are answered here without a
 * worker. The worker's stdout and stderr never reach the host's stdout: the
 * first 4 KiB are copied to the host's stderr, redacted, one "agentd: tool
 * NAME: " line at a time (the plugin's log() lines as in-process ones), and
 * the rest is dropped. Blocks the calling thread until
 * the worker is done (or killed at the timeout) and reaped; safe to call
 * from several threads at once. o may be NULL (no timeout, nothing scrubbed).
 * Returns 0 (with *out filled, also for every failure of the worker), or
 * AD_ENOMEM.
 */
int ad_tools_invoke_isolated(const ad_tools *t, const char *name, const char *args,
                             size_t args_len, const ad_isolate_opts *o, ad_tool_result *out);

/* Whether calls of the tool `name` run in worker processes. */
typedef bool (*ad_tools_isolated_fn)(void *ud, const char *name);

/*
 * From now on, every plugin that ad_tools_load_dir()/_file() loads is first
 * described by a worker process: the worker loads it, runs its init (so
 * init, and whatever the plugin's constructors do, run there) and reports
 * the tools it registered. When isolated(ud, tool) is true for each of
 * them, the plugin is never loaded into this process: its tools are
 * registered from the description, with the same checks, as proxies that
 * only ad_tools_invoke_isolated() runs (ad_tools_invoke() answers them with
 * an error result). Otherwise the plugin is loaded here as usual, and its
 * init runs a second time, in this process. Load errors read as for an
 * in-process load; a worker that crashes, exits or outlives o->timeout_s
 * is named. o (copied; may be NULL) bounds the describing workers. The
 * worker's output goes to stderr as that of isolated calls does, as
 * "agentd: plugin FILE: ..." lines.
 */
void ad_tools_set_isolation(ad_tools *t, ad_tools_isolated_fn isolated, void *ud,
                            const ad_isolate_opts *o);
/* False for a tool whose plugin was only described (see above). */
bool ad_tool_in_process(const ad_tool *tool);

/* The executable a worker runs; by default the host's own (/proc/self/exe,
 * resolved by ad_tools_new()). Returns 0 or AD_ENOMEM. */
int ad_tools_set_worker_exe(ad_tools *t, const char *path);

/* The worker side: call from main() when argv[1] is AD_TOOLS_WORKER_FLAG;
 * returns the process's exit status (it normally ends with _exit itself). */
int ad_tools_worker_main(int argc, char **argv);

#endif /* AD_TOOLS_H */

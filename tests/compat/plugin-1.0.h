/*
 * plugin-1.0.h -- include/agentd/plugin.h as it was for plugin ABI 1.0,
 * kept unchanged below this comment: tests/plugins/abi10.c is built against
 * it, so that a plugin binary of ABI 1.0 is what the tests load.
 */
/*
 * agentd/plugin.h -- the ABI of agentd tool plugins.
 *
 * This is the only header a plugin author needs. A plugin is a shared object
 * that exports one symbol, agentd_plugin_init_v1(). The host calls it once at
 * startup with a table of host functions (agentd_host_api); the plugin checks
 * the ABI version with AGENTD_PLUGIN_CHECK() and registers one or more tools
 * with api->register_tool(). Plugins link nothing from agentd: everything the
 * host offers arrives through that table.
 *
 * Memory never crosses the boundary: the host copies everything a plugin hands
 * over (tool names, descriptions, schemas, results), and everything the host
 * hands to a plugin is borrowed for the duration of the call.
 *
 * Versioning: AGENTD_PLUGIN_ABI_MAJOR changes on incompatible changes (and the
 * init symbol's suffix with it); AGENTD_PLUGIN_ABI_MINOR grows when fields are
 * appended to the structs below. Every struct starts with its size, so a newer
 * host reads an older plugin's layout.
 *
 * Build a plugin with:
 *   cc -shared -fPIC $(pkg-config --cflags agentd-plugin) my.c -o my.so
 */
#ifndef AGENTD_PLUGIN_H
#define AGENTD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGENTD_PLUGIN_ABI_MAJOR 1 /* incompatible change: hosts refuse other majors */
#define AGENTD_PLUGIN_ABI_MINOR 0 /* append-only growth of the structs below */

/* Return codes of invoke() and of the host functions. */
enum {
    AGENTD_OK = 0,
    AGENTD_ERR = -1,    /* generic failure */
    AGENTD_EINVAL = -2, /* bad arguments */
    AGENTD_ENOMEM = -3, /* out of memory */
    AGENTD_EABI = -4    /* incompatible ABI */
};

/* agentd_tool.flags */
enum {
    AGENTD_TOOL_THREADSAFE = 1u << 0 /* invoke() may run on any thread, concurrently */
};

/* Levels of api->log(). */
enum { AGENTD_LOG_ERROR, AGENTD_LOG_WARN, AGENTD_LOG_INFO, AGENTD_LOG_DEBUG };

typedef struct agentd_plugin agentd_plugin; /* opaque: this .so as the host sees it */
typedef struct agentd_result agentd_result; /* opaque: output sink of one invocation */

/*
 * Runs one tool call. args_json is the call's arguments as a NUL-terminated
 * JSON object text of args_len bytes, already validated against the tool's
 * parameter schema; borrowed until return. Write the result with
 * api->result_write() (appends; may be called several times) or report a
 * failure with api->result_error(). `out` is valid only until return.
 * Return AGENTD_OK, or an error code (the call then becomes an error result;
 * without a message the host writes "tool 'NAME' failed (code N)").
 */
typedef int (*agentd_invoke_fn)(void *tool_data, const char *args_json, size_t args_len,
                                agentd_result *out);

typedef struct agentd_tool {
    size_t size;             /* sizeof(agentd_tool) as compiled by the plugin: keep first */
    const char *name;        /* [A-Za-z0-9_-]{1,64}, unique across plugins; host copies */
    const char *description; /* host copies */
    const char *parameters;  /* JSON Schema text of an object; host copies and checks it */
    uint32_t flags;          /* AGENTD_TOOL_* */
    agentd_invoke_fn invoke;
    void *tool_data;                 /* plugin-owned; passed back to invoke() and destroy() */
    void (*destroy)(void *tool_data); /* optional; called once at host shutdown */
} agentd_tool;

typedef struct agentd_host_api {
    uint32_t abi_major; /* the host's ABI; test with AGENTD_PLUGIN_CHECK() */
    uint32_t abi_minor;
    size_t size; /* sizeof(agentd_host_api) in the host */

    /* Load phase: valid only inside agentd_plugin_init_v1(). */
    int (*register_tool)(agentd_plugin *self, const agentd_tool *tool);
    /* The plugin's [plugins.config.<file stem>] table as JSON text, or NULL when
     * there is none. Borrowed; valid until init returns. */
    const char *(*config_json)(agentd_plugin *self);

    /* Call phase: valid only inside invoke(), on the calling thread. */
    int (*result_write)(agentd_result *out, const char *data, size_t len); /* appends a copy */
    int (*result_error)(agentd_result *out, const char *msg); /* marks is_error, appends a copy */

    /* Any phase, any thread. */
    void (*log)(agentd_plugin *self, int level, const char *msg);
} agentd_host_api;

/*
 * The one symbol a plugin exports. On failure return a negative AGENTD_E*
 * code and write a NUL-terminated reason into err[0..errlen).
 */
typedef int (*agentd_plugin_init_fn)(const agentd_host_api *api, agentd_plugin *self, char *err,
                                     size_t errlen);

#define AGENTD_PLUGIN_INIT_SYMBOL "agentd_plugin_init_v1"

#if defined(__GNUC__) || defined(__clang__)
#define AGENTD_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define AGENTD_PLUGIN_EXPORT
#endif

/* True when the host speaks the ABI this plugin was compiled for. (The minor
 * is compared as int64_t so that "unsigned >= 0" does not trip -Wtype-limits
 * in plugins built with -Wextra -Werror while the minor is 0.) */
#define AGENTD_PLUGIN_CHECK(api)                                                                   \
    ((api) != NULL && (api)->abi_major == AGENTD_PLUGIN_ABI_MAJOR &&                              \
     (int64_t)(api)->abi_minor >= (int64_t)AGENTD_PLUGIN_ABI_MINOR)

#ifdef __cplusplus
}
#endif

#endif /* AGENTD_PLUGIN_H */

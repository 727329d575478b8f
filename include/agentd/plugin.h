/*
 * agentd/plugin.h -- the ABI of agentd tool plugins.
 *
 * This is the only header a plugin author needs. A plugin is a shared object
 * that exports one symbol, agentd_plugin_init_v1(). The host calls it once
 * with a table of host functions (agentd_host_api); the plugin checks the ABI
 * version with AGENTD_PLUGIN_CHECK() and registers one or more tools with
 * api->register_tool(). Plugins link nothing from agentd: everything the host
 * offers arrives through that table.
 *
 * Memory never crosses the boundary: the host copies everything a plugin hands
 * over (tool names, descriptions, schemas, results), and everything the host
 * hands to a plugin is borrowed (for the duration of the call, or as said).
 *
 * Versioning: AGENTD_PLUGIN_ABI_MAJOR changes on incompatible changes (and the
 * init symbol's suffix with it); AGENTD_PLUGIN_ABI_MINOR grows when fields are
 * appended to the structs below. Every struct starts with its size, so a newer
 * host reads an older plugin's layout, and a plugin tests for a function of a
 * newer minor with AGENTD_API_HAS() before calling it.
 *
 * ABI 1.1 adds tools with a call() function (agentd_call_tool) that gets a
 * per-call context (agentd_call: ids, the validated arguments as typed
 * borrowed values, the deadline, cancellation, progress, logging, and
 * completion later from any thread), and the plugin's config as a value and
 * its own data pointer. The 1.0 structs are unchanged.
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
#define AGENTD_PLUGIN_ABI_MINOR 1 /* append-only growth of the structs below */

/* Return codes of invoke() and of the host functions. */
enum {
    AGENTD_OK = 0,
    AGENTD_ERR = -1,    /* generic failure */
    AGENTD_EINVAL = -2, /* bad arguments */
    AGENTD_ENOMEM = -3, /* out of memory */
    AGENTD_EABI = -4,   /* incompatible ABI */
    AGENTD_ERANGE = -5, /* 1.1: a value does not fit the type asked for */
    AGENTD_PENDING = 1  /* 1.1: returned by call(): the result comes later, with complete() */
};

/* agentd_tool.flags */
enum {
    AGENTD_TOOL_THREADSAFE = 1u << 0, /* invoke() may run on any thread, concurrently */
    /* Running a call again does no more than running it once (it passes an
     * idempotency key downstream, or its effect is naturally idempotent):
     * agentd worker runs such a call again when a worker died while it ran,
     * instead of answering "interrupted". Hosts that do not know the flag
     * ignore it. */
    AGENTD_TOOL_IDEMPOTENT = 1u << 1
};

/* Levels of api->log(). */
enum { AGENTD_LOG_ERROR, AGENTD_LOG_WARN, AGENTD_LOG_INFO, AGENTD_LOG_DEBUG };

typedef struct agentd_plugin agentd_plugin; /* opaque: this .so as the host sees it */
typedef struct agentd_result agentd_result; /* opaque: output sink of one invocation */
typedef struct agentd_call agentd_call;     /* 1.1, opaque: one call of a tool */
typedef struct agentd_value agentd_value;   /* 1.1, opaque: a borrowed JSON value */
struct agentd_host_api;

/* 1.1: what api->value_type() says. */
enum {
    AGENTD_VALUE_NONE = 0, /* no value: NULL, e.g. an argument the model left out */
    AGENTD_VALUE_NULL,     /* JSON null */
    AGENTD_VALUE_BOOL,
    AGENTD_VALUE_INT,    /* a number written without fraction or exponent */
    AGENTD_VALUE_DOUBLE, /* any other number */
    AGENTD_VALUE_STRING,
    AGENTD_VALUE_ARRAY,
    AGENTD_VALUE_OBJECT
};

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

/*
 * 1.1: runs one call of a tool registered with register_call_tool(). The
 * arguments (validated against the schema) are read with api->arg() and the
 * value functions; the result is written with
 * api->result_write(api->result(call), ...). Return AGENTD_OK or an error
 * code as for invoke(), or AGENTD_PENDING: the call goes on without this
 * thread, and the plugin ends it later with api->complete(call, rc), from
 * any thread, exactly once (it may write the result until then).
 */
typedef int (*agentd_call_fn)(const struct agentd_host_api *api, agentd_call *call,
                              void *tool_data);
/*
 * 1.1, optional: asks a running call to stop (the user cancelled it, or it
 * timed out). Runs on a host thread, not the one running call(), at most once
 * per call, possibly while call() runs or while another thread completes the
 * call: it must not block and must not free what the call still uses. The
 * call still ends as usual (return, or complete()); its result is ignored.
 * api->cancelled(call) turns true before cancel() is called.
 */
typedef void (*agentd_cancel_fn)(const struct agentd_host_api *api, agentd_call *call,
                                 void *tool_data);

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

/* 1.1: a tool whose calls get a context, registered with
 * api->register_call_tool(). The same rules as agentd_tool, with call
 * instead of invoke. (A struct of its own, so that agentd_tool, and every
 * 1.0 plugin's initializer of it, stays as it was.) Initialize it with
 * designated initializers (.name = ...): fields a later minor appends then
 * start out zero. */
typedef struct agentd_call_tool {
    size_t size;             /* sizeof(agentd_call_tool) as compiled by the plugin: keep first */
    const char *name;        /* as agentd_tool.name */
    const char *description; /* host copies */
    const char *parameters;  /* JSON Schema text of an object; host copies and checks it */
    uint32_t flags;          /* AGENTD_TOOL_* */
    agentd_call_fn call;     /* required */
    agentd_cancel_fn cancel; /* optional */
    void *tool_data;         /* plugin-owned; passed back to call(), cancel() and destroy() */
    void (*destroy)(void *tool_data); /* optional; called once at unload */
} agentd_call_tool;

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

    /* ---- 1.1: test with AGENTD_API_HAS(api, name) on a host of unknown minor ---- */

    /* Load phase, as register_tool(): a tool run through call(). A plugin
     * that also loads on 1.0 hosts registers an agentd_tool with invoke
     * there instead (see AGENTD_API_HAS). */
    int (*register_call_tool)(agentd_plugin *self, const agentd_call_tool *tool);

    /* The plugin's [plugins.config.<file stem>] table as an object value, or
     * NULL when there is none. Valid until the plugin is unloaded; any
     * thread. */
    const agentd_value *(*config)(agentd_plugin *self);
    /* The plugin's own data, instead of statics: set it (usually in init),
     * read it back in any phase, from any thread. destroy (may be NULL)
     * runs once at unload, after every tool's destroy(). */
    void (*set_plugin_data)(agentd_plugin *self, void *data, void (*destroy)(void *data));
    void *(*plugin_data)(agentd_plugin *self);

    /* A call's context: valid from the start of call() until the call
     * ends (call() returns anything but AGENTD_PENDING, or complete());
     * any thread. */
    agentd_plugin *(*call_plugin)(agentd_call *call);
    const char *(*call_id)(agentd_call *call);         /* the id the model gave the call */
    const char *(*conversation_id)(agentd_call *call); /* "" when none */
    /* The validated arguments: the whole object, or one member (NULL when
     * absent). Borrowed until the call ends. */
    const agentd_value *(*args)(agentd_call *call);
    const agentd_value *(*arg)(agentd_call *call, const char *name);
    /* The arguments' JSON text (NUL-terminated, *len bytes unless len is NULL). */
    const char *(*args_json)(agentd_call *call, size_t *len);
    /* The call's result sink, for result_write()/result_error(): from any
     * thread until the call ends, from one thread at a time. */
    agentd_result *(*result)(agentd_call *call);
    /* Milliseconds left until the call's timeout (0 when it has passed), or
     * -1 when it has none. */
    int64_t (*deadline_ms)(agentd_call *call);
    /* 1 once the call was asked to stop (cancelled, timed out), else 0. */
    int (*cancelled)(agentd_call *call);
    /* Reports progress: done out of total (total <= 0: unknown), msg may be
     * NULL. The host shows at most a few reports per second. */
    int (*progress)(agentd_call *call, double done, double total, const char *msg);
    /* api->log() tagged with this call, from any thread. */
    void (*call_log)(agentd_call *call, int level, const char *msg);
    /* Ends a call whose call() returned AGENTD_PENDING, with rc as call()
     * would have returned it. Exactly once, from any thread; the call is
     * gone afterwards. Returns AGENTD_EINVAL when the call is not pending. */
    int (*complete)(agentd_call *call, int rc);

    /* Values (arguments, config): borrowed from their owner; every function
     * accepts NULL (the answer is then NONE, an error, NULL or 0). */
    int (*value_type)(const agentd_value *v); /* AGENTD_VALUE_* */
    /* The integer a number denotes, exactly as written (also 3.0, 1e3 and
     * 12345678901234567890e-1, a DOUBLE); AGENTD_ERANGE beyond int64,
     * AGENTD_EINVAL for anything else (2.5, a string). */
    int (*value_int64)(const agentd_value *v, int64_t *out);
    int (*value_double)(const agentd_value *v, double *out); /* any number */
    int (*value_bool)(const agentd_value *v, int *out);      /* booleans only */
    /* A string's bytes (NUL-terminated; *len bytes, which may hold NUL when
     * the JSON had \u0000), or NULL when v is not a string. */
    const char *(*value_string)(const agentd_value *v, size_t *len);
    size_t (*value_len)(const agentd_value *v); /* array elements, object members; else 0 */
    const agentd_value *(*value_at)(const agentd_value *v, size_t i);     /* array element */
    const agentd_value *(*value_get)(const agentd_value *v, const char *key); /* member */
    /* Iterates an object's members: *iter starts NULL; returns the next
     * value (its key in *key), or NULL after the last. */
    const agentd_value *(*value_next)(const agentd_value *v, void **iter, const char **key);
} agentd_host_api;

/* 1.1: true when the host's table has the function `field` (a 1.0 host's
 * table ends after log). */
#define AGENTD_API_HAS(api, field)                                                                 \
    ((api) != NULL &&                                                                              \
     (api)->size >= offsetof(agentd_host_api, field) + sizeof((api)->field))

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
/* True when the host speaks this major at any minor: for a plugin that also
 * runs on older minors (it then tests each newer function with
 * AGENTD_API_HAS and sets invoke as well as call). */
#define AGENTD_PLUGIN_CHECK_MAJOR(api) ((api) != NULL && (api)->abi_major == AGENTD_PLUGIN_ABI_MAJOR)

#ifdef __cplusplus
}
#endif

#endif /* AGENTD_PLUGIN_H */

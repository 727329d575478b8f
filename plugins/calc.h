/*
 * calc.h -- the shared body of the add and multiply plugins.
 *
 * Both tools take {"a": integer, "b": integer} and answer with one decimal
 * integer. The host has already validated the arguments against the schema,
 * but the plugin still reads them defensively (minijson.h) and reports every
 * problem, including int64 overflow, as an error result instead of a wrong
 * number. Everything is static: each plugin includes its own copy.
 */
#ifndef AGENTD_CALC_H
#define AGENTD_CALC_H

#include <agentd/plugin.h>

#include <inttypes.h>
#include <stdio.h>

#include "minijson.h"

#define CALC_PARAMETERS                                                                            \
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"description\":\"first "   \
    "number\"},\"b\":{\"type\":\"integer\",\"description\":\"second number\"}},\"required\":[\"a\"," \
    "\"b\"]}"

/* Computes a OP b into *r; returns 0, or -1 when the result overflows. */
typedef int (*calc_op)(int64_t a, int64_t b, int64_t *r);

static const agentd_host_api *calc_host;

static int calc_arg(const char *args, size_t len, const char *key, int64_t *v, agentd_result *out)
{
    char msg[128];
    switch (mj_get_int64(args, len, key, v)) {
    case MJ_OK: return AGENTD_OK;
    case MJ_MISSING: snprintf(msg, sizeof msg, "argument '%s' is missing", key); break;
    case MJ_NOT_INT: snprintf(msg, sizeof msg, "argument '%s' must be an integer", key); break;
    case MJ_RANGE:
        snprintf(msg, sizeof msg, "argument '%s' does not fit in a 64-bit integer", key);
        break;
    default: snprintf(msg, sizeof msg, "arguments are not a valid JSON object"); break;
    }
    calc_host->result_error(out, msg);
    return AGENTD_EINVAL;
}

static int calc_run(calc_op op, const char *sym, const char *args, size_t len, agentd_result *out)
{
    int64_t a, b, r;
    char text[96];
    if (calc_arg(args, len, "a", &a, out) != AGENTD_OK ||
        calc_arg(args, len, "b", &b, out) != AGENTD_OK)
        return AGENTD_EINVAL;
    if (op(a, b, &r) != 0) {
        snprintf(text, sizeof text, "integer overflow: %" PRId64 " %s %" PRId64
                 " does not fit in 64 bits", a, sym, b);
        calc_host->result_error(out, text);
        return AGENTD_ERR;
    }
    int n = snprintf(text, sizeof text, "%" PRId64, r);
    return calc_host->result_write(out, text, (size_t)n);
}

/* The common init: ABI check, then one thread-safe tool. */
static int calc_init(const agentd_host_api *api, agentd_plugin *self, char *err, size_t errlen,
                     const char *name, const char *description, agentd_invoke_fn invoke)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "built for ABI %d.%d, host has %u.%u", AGENTD_PLUGIN_ABI_MAJOR,
                 AGENTD_PLUGIN_ABI_MINOR, api ? (unsigned)api->abi_major : 0u,
                 api ? (unsigned)api->abi_minor : 0u);
        return AGENTD_EABI;
    }
    calc_host = api;
    agentd_tool tool = {
        .size = sizeof tool,
        .name = name,
        .description = description,
        .parameters = CALC_PARAMETERS,
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = invoke,
    };
    return api->register_tool(self, &tool);
}

#endif /* AGENTD_CALC_H */

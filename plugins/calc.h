/*
 * calc.h -- the shared body of the add and multiply plugins (ABI 1.1).
 *
 * Both tools take {"a": integer, "b": integer} and answer with one decimal
 * integer. The host has validated the arguments against the schema and
 * hands them over as values; value_int64() reads each exactly as written
 * (also 2.0 or 12345678901234567890e-1), and every problem, int64 overflow
 * included, becomes an error result instead of a wrong number. Nothing is
 * kept between calls, hence AGENTD_TOOL_THREADSAFE. Everything is static:
 * each plugin includes its own copy.
 */
#ifndef AGENTD_CALC_H
#define AGENTD_CALC_H

#include <agentd/plugin.h>

#include <inttypes.h>
#include <stdio.h>

#define CALC_PARAMETERS                                                                            \
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"description\":\"first "   \
    "number\"},\"b\":{\"type\":\"integer\",\"description\":\"second number\"}},\"required\":[\"a\"," \
    "\"b\"]}"

/* Computes a OP b into *r; returns 0, or -1 when the result overflows. */
typedef int (*calc_op)(int64_t a, int64_t b, int64_t *r);

static int calc_arg(const agentd_host_api *api, agentd_call *call, const char *key, int64_t *v)
{
    const agentd_value *arg = api->arg(call, key);
    char msg[128];
    switch (api->value_int64(arg, v)) {
    case AGENTD_OK: return AGENTD_OK;
    case AGENTD_ERANGE:
        snprintf(msg, sizeof msg, "argument '%s' does not fit in a 64-bit integer", key);
        break;
    default:
        snprintf(msg, sizeof msg, "argument '%s' %s", key,
                 arg == NULL ? "is missing" : "must be an integer");
    }
    api->result_error(api->result(call), msg);
    return AGENTD_EINVAL;
}

static int calc_run(calc_op op, const char *sym, const agentd_host_api *api, agentd_call *call)
{
    int64_t a, b, r;
    char text[96];
    if (calc_arg(api, call, "a", &a) != AGENTD_OK || calc_arg(api, call, "b", &b) != AGENTD_OK)
        return AGENTD_EINVAL;
    if (op(a, b, &r) != 0) {
        snprintf(text, sizeof text, "integer overflow: %" PRId64 " %s %" PRId64
                 " does not fit in 64 bits", a, sym, b);
        api->result_error(api->result(call), text);
        return AGENTD_ERR;
    }
    int n = snprintf(text, sizeof text, "%" PRId64, r);
    return api->result_write(api->result(call), text, (size_t)n);
}

/* The common init: ABI check, then one thread-safe tool. */
static int calc_init(const agentd_host_api *api, agentd_plugin *self, char *err, size_t errlen,
                     const char *name, const char *description, agentd_call_fn call)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "built for ABI %d.%d, host has %u.%u", AGENTD_PLUGIN_ABI_MAJOR,
                 AGENTD_PLUGIN_ABI_MINOR, api ? (unsigned)api->abi_major : 0u,
                 api ? (unsigned)api->abi_minor : 0u);
        return AGENTD_EABI;
    }
    agentd_call_tool tool = {
        .size = sizeof tool,
        .name = name,
        .description = description,
        .parameters = CALC_PARAMETERS,
        .flags = AGENTD_TOOL_THREADSAFE,
        .call = call,
    };
    return api->register_call_tool(self, &tool);
}

#endif /* AGENTD_CALC_H */

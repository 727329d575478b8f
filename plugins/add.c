/*
 * add.c -- the "add" tool: {"a": integer, "b": integer} -> "a + b".
 *
 * Exact 64-bit integer arithmetic; an overflowing sum is an error result,
 * never a wrapped number. Stateless, hence AGENTD_TOOL_THREADSAFE. The
 * shared body lives in calc.h (plugin ABI 1.1).
 */
#include "calc.h"

static int add_op(int64_t a, int64_t b, int64_t *r)
{
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
        return -1;
    *r = a + b;
    return 0;
}

static int add_call(const agentd_host_api *api, agentd_call *call, void *tool_data)
{
    (void)tool_data;
    return calc_run(add_op, "+", api, call);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    return calc_init(api, self, err, errlen, "add", "Add two numbers", add_call);
}

/*
 * multiply.c -- the "multiply" tool: {"a": integer, "b": integer} -> "a * b".
 *
 * Exact 64-bit integer arithmetic; an overflowing product is an error
 * result, never a wrapped number. Stateless, hence AGENTD_TOOL_THREADSAFE.
 * The shared body lives in calc.h (plugin ABI 1.1).
 */
#include "calc.h"

static int mul_op(int64_t a, int64_t b, int64_t *r)
{
    /* Overflow test without a wider type: divide the limit instead. */
    if (a == 0 || b == 0) {
        *r = 0;
        return 0;
    }
    if ((a == -1 && b == INT64_MIN) || (b == -1 && a == INT64_MIN))
        return -1;
    if (a > 0 ? (b > 0 ? a > INT64_MAX / b : b < INT64_MIN / a)
              : (b > 0 ? a < INT64_MIN / b : a < INT64_MAX / b))
        return -1;
    *r = a * b;
    return 0;
}

static int multiply_call(const agentd_host_api *api, agentd_call *call, void *tool_data)
{
    (void)tool_data;
    return calc_run(mul_op, "*", api, call);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    return calc_init(api, self, err, errlen, "multiply", "Multiply two numbers", multiply_call);
}

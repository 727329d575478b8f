/*
 * dual.c -- test plugin of ABI 1.1 that also loads into a host of ABI 1.0:
 * it checks only the major, and registers its tool "dual" with
 * register_call_tool() when the host has it, else as an agentd_tool with
 * invoke(). The answer says which path ran: "call: <name>" or "invoke".
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <string.h>

static const agentd_host_api *host;

static int dual_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    size_t len;
    const char *name = api->value_string(api->arg(call, "name"), &len);
    char buf[128];
    int n = snprintf(buf, sizeof buf, "call: %.*s", name ? (int)len : 1, name ? name : "?");
    return api->result_write(api->result(call), buf, (size_t)n);
}

static int dual_invoke(void *data, const char *args, size_t len, agentd_result *out)
{
    (void)data, (void)args, (void)len;
    return host->result_write(out, "invoke", 6);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK_MAJOR(api)) {
        snprintf(err, errlen, "built for ABI %d.x", AGENTD_PLUGIN_ABI_MAJOR);
        return AGENTD_EABI;
    }
    host = api;
    static const char params[] =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}}}";
    if (AGENTD_API_HAS(api, register_call_tool)) {
        agentd_call_tool t = {
            .size = sizeof t,
            .name = "dual",
            .description = "either way",
            .parameters = params,
            .flags = AGENTD_TOOL_THREADSAFE,
            .call = dual_call,
        };
        return api->register_call_tool(self, &t);
    }
    agentd_tool t = {
        .size = sizeof t,
        .name = "dual",
        .description = "either way",
        .parameters = params,
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = dual_invoke,
    };
    return api->register_tool(self, &t);
}

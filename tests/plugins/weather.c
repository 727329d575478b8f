/*
 * weather.c -- test fixture: the "weather" tool of the recorded provider
 * conversations. Whatever the location, the answer is "40 C".
 */
#include <agentd/plugin.h>

#include <stdio.h>

static const agentd_host_api *host;

static int weather_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data;
    (void)args;
    (void)len;
    return host->result_write(out, "40 C", 4);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "built for ABI %d.%d, host has %u.%u", AGENTD_PLUGIN_ABI_MAJOR,
                 AGENTD_PLUGIN_ABI_MINOR, api ? (unsigned)api->abi_major : 0u,
                 api ? (unsigned)api->abi_minor : 0u);
        return AGENTD_EABI;
    }
    host = api;
    agentd_tool t = {
        .size = sizeof t,
        .name = "weather",
        .description = "Get weather information for a location",
        .parameters = "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\","
                      "\"description\":\"the city\"}},\"required\":[\"location\"]}",
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = weather_invoke,
    };
    return api->register_tool(self, &t);
}

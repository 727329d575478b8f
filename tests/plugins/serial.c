/*
 * serial.c -- test plugin with a tool that is NOT thread-safe: "counter"
 * keeps a plain static count and answers with the number of calls so far.
 */
#include <agentd/plugin.h>

#include <stdio.h>

static const agentd_host_api *host;
static unsigned long calls;

static int counter_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%lu", ++calls);
    return host->result_write(out, buf, (size_t)len);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    (void)err, (void)errlen;
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    host = api;
    calls = 0;
    agentd_tool t = {sizeof t, "counter", "counts its calls", "{\"type\":\"object\"}", 0,
                     counter_invoke, NULL, NULL};
    return api->register_tool(self, &t);
}

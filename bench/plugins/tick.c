/*
 * tick.c -- bench plugin: the tool "tick" answers "ok". It is not marked
 * thread-safe, so its calls run one at a time: bench_plugin_worker queues
 * many of them at once in a persistent worker to measure what waiting
 * calls cost the host.
 */
#include <agentd/plugin.h>

#include <stdio.h>

static const agentd_host_api *host;

static int tick_invoke(void *d, const char *args, size_t len, agentd_result *out)
{
    (void)d, (void)args, (void)len;
    return host->result_write(out, "ok", 2);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "tick: incompatible host ABI");
        return AGENTD_EABI;
    }
    host = api;
    agentd_tool t = {sizeof t,
                     "tick",
                     "Answers ok, one call at a time.",
                     "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}",
                     0,
                     tick_invoke,
                     NULL,
                     NULL};
    return api->register_tool(self, &t);
}

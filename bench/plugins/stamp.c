/*
 * stamp.c -- bench plugin: the tool "stamp" answers with the CLOCK_MONOTONIC
 * time, in nanoseconds as decimal text, read as the very first thing of its
 * invoke(). bench_dispatch compares it with the moment its server wrote the
 * last byte of the model's response, so the interval ends exactly at the
 * plugin's entry and nothing of the plugin's own work is counted.
 *
 * THREADSAFE: it keeps no state, so the host runs it on a worker thread,
 * the path every thread-safe tool takes.
 */
#include <agentd/plugin.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static const agentd_host_api *host;

static int stamp_invoke(void *d, const char *args, size_t len, agentd_result *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (void)d, (void)args, (void)len;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%llu",
                     (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    return host->result_write(out, buf, (size_t)n);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "stamp: incompatible host ABI");
        return AGENTD_EABI;
    }
    host = api;
    agentd_tool t = {sizeof t,
                     "stamp",
                     "Returns the host's monotonic clock in nanoseconds.",
                     "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}",
                     AGENTD_TOOL_THREADSAFE,
                     stamp_invoke,
                     NULL,
                     NULL};
    return api->register_tool(self, &t);
}

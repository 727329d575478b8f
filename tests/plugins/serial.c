/*
 * serial.c -- test plugin with a tool that is NOT thread-safe: "counter"
 * keeps a plain static count and answers with the number of calls so far;
 * "slow_counter" {"ms": N} sleeps N milliseconds first.
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *host;
static unsigned long calls;

static int counter_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%lu", ++calls);
    return host->result_write(out, buf, (size_t)len);
}

static int slow_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    const char *p = strstr(a, "\"ms\"");
    long ms = p ? strtol(p + 5 + strspn(p + 5, " :"), NULL, 10) : 0;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return counter_invoke(d, a, n, out);
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
    int rc = api->register_tool(self, &t);
    if (rc != AGENTD_OK)
        return rc;
    agentd_tool slow = {sizeof slow, "slow_counter", "counts its calls, slowly",
                        "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\"}}}", 0,
                        slow_invoke, NULL, NULL};
    return api->register_tool(self, &slow);
}

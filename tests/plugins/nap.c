/*
 * nap.c -- test plugin: "nap" sleeps {"ms": N} milliseconds (at most 10 s)
 * and answers "slept N ms". Cancellation tests use it to have a tool still
 * running when the user presses Ctrl-C.
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *host;

static int nap_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data;
    /* The host validated the schema: {"ms": integer}. */
    long ms = 0;
    const char *p = memchr(args, ':', len);
    if (p)
        ms = strtol(p + 1, NULL, 10);
    if (ms < 0)
        ms = 0;
    if (ms > 10000)
        ms = 10000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    char buf[48];
    int n = snprintf(buf, sizeof buf, "slept %ld ms", ms);
    return host->result_write(out, buf, (size_t)n);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "ABI mismatch");
        return AGENTD_EABI;
    }
    host = api;
    agentd_tool t = {
        .size = sizeof t,
        .name = "nap",
        .description = "Sleep for a number of milliseconds",
        .parameters = "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\"}},"
                      "\"required\":[\"ms\"]}",
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = nap_invoke,
    };
    return api->register_tool(self, &t);
}

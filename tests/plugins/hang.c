/*
 * hang.c -- test plugin: "hang" sleeps {"s": N} seconds (at most 60) and
 * answers "woke". Session tests kill agentd with SIGKILL while it runs, to
 * leave a stored tool call without its result.
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *host;

static int hang_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data;
    long s = 30;
    const char *p = memchr(args, ':', len);
    if (p)
        s = strtol(p + 1, NULL, 10);
    if (s < 0)
        s = 0;
    if (s > 60)
        s = 60;
    struct timespec ts = {s, 0};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return host->result_write(out, "woke", 4);
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
        .name = "hang",
        .description = "Sleep for a number of seconds",
        .parameters = "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"integer\"}}}",
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = hang_invoke,
    };
    return api->register_tool(self, &t);
}

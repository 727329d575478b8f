/*
 * fragile.c -- test plugin whose init crashes (SIGSEGV) while the file named
 * by its config's "crash_if" exists; its tool "fragile" answers "fine".
 * A start-up without the file caches its tools; a worker started later with
 * the file in place crashes at every start.
 */
#define _POSIX_C_SOURCE 200809L
#include <agentd/plugin.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fragile_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    return api->result_write(api->result(call), "fine", 4);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "needs plugin ABI 1.1");
        return AGENTD_EABI;
    }
    size_t len;
    const char *flag = api->value_string(api->value_get(api->config(self), "crash_if"), &len);
    if (flag && access(flag, F_OK) == 0) {
        volatile uintptr_t addr = 16;
        *(volatile int *)addr = 42;
    }
    agentd_call_tool t = {
        .size = sizeof t,
        .name = "fragile",
        .description = "crashes at start-up when told to",
        .parameters = "{\"type\":\"object\"}",
        .call = fragile_call,
    };
    return api->register_call_tool(self, &t);
}

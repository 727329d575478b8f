/*
 * bad_abi.c -- test plugin built for a future, incompatible ABI major (2):
 * its own AGENTD_PLUGIN_CHECK() must refuse the v1 host, and the host must
 * report the plugin's reason.
 */
#include <agentd/plugin.h>

#include <stdio.h>

#undef AGENTD_PLUGIN_ABI_MAJOR
#define AGENTD_PLUGIN_ABI_MAJOR 2

static int nop_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    return AGENTD_OK;
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
    agentd_tool t = {sizeof t, "future", "never registered", "{\"type\":\"object\"}", 0,
                     nop_invoke, NULL, NULL};
    return api->register_tool(self, &t);
}

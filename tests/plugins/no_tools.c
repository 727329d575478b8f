/*
 * no_tools.c -- test plugin whose init succeeds without registering a tool.
 */
#include <agentd/plugin.h>

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    (void)self, (void)err, (void)errlen;
    return AGENTD_PLUGIN_CHECK(api) ? AGENTD_OK : AGENTD_EABI;
}

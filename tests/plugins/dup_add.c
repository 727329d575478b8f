/*
 * dup_add.c -- test plugin registering a second tool named "add"; loaded
 * after add.so it must be refused with the name of the first owner.
 */
#include <agentd/plugin.h>

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
    (void)err, (void)errlen;
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    agentd_tool t = {sizeof t, "add", "another add", "{\"type\":\"object\"}", 0, nop_invoke,
                     NULL, NULL};
    return api->register_tool(self, &t);
}

/*
 * init_fail.c -- test plugin whose init fails with a message. It registers a
 * tool first, so the host must also take that tool back and call its
 * destroy() (logged, to show it happened).
 */
#include <agentd/plugin.h>

#include <stdio.h>

static const agentd_host_api *host;
static agentd_plugin *me;

static int nop_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    return AGENTD_OK;
}

static void nop_destroy(void *d)
{
    (void)d;
    host->log(me, AGENTD_LOG_INFO, "destroy called");
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    host = api;
    me = self;
    agentd_tool t = {sizeof t, "init_fail_tool", "taken back", "{\"type\":\"object\"}", 0,
                     nop_invoke, NULL, nop_destroy};
    if (api->register_tool(self, &t) != AGENTD_OK)
        return AGENTD_ERR;
    snprintf(err, errlen, "cannot reach the license server");
    return AGENTD_ERR;
}

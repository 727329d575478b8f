/*
 * badutf8.c -- test plugin whose tool "badutf8" writes invalid UTF-8 (a
 * stray continuation byte, a truncated sequence, an overlong encoding, a
 * surrogate) and NUL bytes around valid text; the host must repair it.
 */
#include <agentd/plugin.h>

static const agentd_host_api *host;

static int badutf8_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    static const char bytes[] = "ok \x80|\xE2\x82|\xC0\xAF|\xED\xA0\x80|a\0b|\xC3\xA9";
    return host->result_write(out, bytes, sizeof bytes - 1);
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
    agentd_tool t = {sizeof t, "badutf8", "writes broken text", "{\"type\":\"object\"}",
                     AGENTD_TOOL_THREADSAFE, badutf8_invoke, NULL, NULL};
    return api->register_tool(self, &t);
}

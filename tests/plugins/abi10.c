/*
 * abi10.c -- test plugin built against the plugin ABI 1.0 header
 * (tests/compat/plugin-1.0.h), as a third-party plugin built before ABI 1.1
 * was: its agentd_tool has the 1.0 size and it calls only 1.0 functions.
 *
 *   old_add  {"a": integer, "b": integer} -> "a + b" (the arguments read
 *            from the JSON text with sscanf: 1.0 has no value accessors)
 *   old_log  logs "hello from a 1.0 plugin" with log(), answers "logged"
 */
#include "../compat/plugin-1.0.h"

#include <stdio.h>
#include <string.h>

static const agentd_host_api *host;
static agentd_plugin *me;

static int old_add(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d, (void)n;
    long long a = 0, b = 0;
    const char *pa = strstr(args, "\"a\":"), *pb = strstr(args, "\"b\":");
    if (pa == NULL || pb == NULL || sscanf(pa + 4, "%lld", &a) != 1 ||
        sscanf(pb + 4, "%lld", &b) != 1)
        return host->result_error(out, "a and b are needed");
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%lld", a + b);
    return host->result_write(out, buf, (size_t)len);
}

static int old_log(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d, (void)args, (void)n;
    host->log(me, AGENTD_LOG_WARN, "hello from a 1.0 plugin");
    return host->result_write(out, "logged", 6);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "built for ABI 1.0");
        return AGENTD_EABI;
    }
    host = api;
    me = self;
    agentd_tool add = {sizeof add, "old_add", "adds, the 1.0 way",
                       "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":"
                       "{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}",
                       AGENTD_TOOL_THREADSAFE, old_add, NULL, NULL};
    agentd_tool log = {sizeof log, "old_log", "logs", "{\"type\":\"object\"}", 0, old_log, NULL,
                       NULL};
    int rc = api->register_tool(self, &add);
    return rc != AGENTD_OK ? rc : api->register_tool(self, &log);
}

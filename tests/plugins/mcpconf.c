/*
 * mcpconf.c -- test plugin: the tools the official MCP server conformance
 * scenarios call, for `agentd mcp serve` (test_mcp_serve):
 *   test_simple_text         "This is a simple text response for testing."
 *   test_error_handling      an error result
 *   test_tool_with_logging   three info log lines ~50 ms apart, then text
 *   json_schema_2020_12_tool a schema with $schema, $defs, $ref and
 *                            additionalProperties, which must be listed as
 *                            it is
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

static const agentd_host_api *host;
static agentd_plugin *me;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int put(agentd_result *out, const char *s)
{
    return host->result_write(out, s, strlen(s));
}

static int simple_text(void *d, const char *args, size_t len, agentd_result *out)
{
    (void)d;
    (void)args;
    (void)len;
    return put(out, "This is a simple text response for testing.");
}

static int error_handling(void *d, const char *args, size_t len, agentd_result *out)
{
    (void)d;
    (void)args;
    (void)len;
    return host->result_error(out, "This tool intentionally returns an error for testing");
}

static int with_logging(void *d, const char *args, size_t len, agentd_result *out)
{
    (void)d;
    (void)args;
    (void)len;
    host->log(me, AGENTD_LOG_INFO, "Tool execution started");
    nap_ms(50);
    host->log(me, AGENTD_LOG_INFO, "Tool processing data");
    nap_ms(50);
    host->log(me, AGENTD_LOG_INFO, "Tool execution completed");
    return put(out, "Tool with logging executed successfully");
}

static int schema_tool(void *d, const char *args, size_t len, agentd_result *out)
{
    (void)d;
    return host->result_write(out, args, len);
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
    me = self;
    static const char none[] = "{\"type\":\"object\",\"properties\":{}}";
    const agentd_tool tools[] = {
        {.size = sizeof(agentd_tool), .name = "test_simple_text",
         .description = "Returns a simple text", .parameters = none,
         .flags = AGENTD_TOOL_THREADSAFE, .invoke = simple_text},
        {.size = sizeof(agentd_tool), .name = "test_error_handling",
         .description = "Always fails", .parameters = none, .flags = AGENTD_TOOL_THREADSAFE,
         .invoke = error_handling},
        {.size = sizeof(agentd_tool), .name = "test_tool_with_logging",
         .description = "Logs three lines while it runs", .parameters = none,
         .flags = AGENTD_TOOL_THREADSAFE, .invoke = with_logging},
        {.size = sizeof(agentd_tool), .name = "json_schema_2020_12_tool",
         .description = "Tool with JSON Schema 2020-12 features",
         .parameters =
             "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
             "\"$defs\":{\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":"
             "\"string\"},\"city\":{\"type\":\"string\"}}}},\"properties\":{\"name\":{\"type\":"
             "\"string\"},\"address\":{\"$ref\":\"#/$defs/address\"}},"
             "\"additionalProperties\":false}",
         .flags = AGENTD_TOOL_THREADSAFE, .invoke = schema_tool},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        int rc = api->register_tool(self, &tools[i]);
        if (rc != AGENTD_OK) {
            snprintf(err, errlen, "cannot register %s", tools[i].name);
            return rc;
        }
    }
    return AGENTD_OK;
}

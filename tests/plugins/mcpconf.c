/*
 * mcpconf.c -- test plugin: the tools the official MCP server conformance
 * scenarios call, for `agentd mcp serve` (test_mcp_serve):
 *   test_simple_text         "This is a simple text response for testing."
 *   test_error_handling      an error result
 *   test_tool_with_logging   three info log lines ~50 ms apart, then text
 *   json_schema_2020_12_tool a schema with $schema, $defs, $ref and
 *                            additionalProperties, which must be listed as
 *                            it is
 *   test_tool_with_progress  (ABI 1.1) progress 0, 50 and 100 of 100, 150 ms
 *                            apart (the host passes on one report per
 *                            100 ms), then text
 *   wait_for_cancel          (ABI 1.1) reports progress 0 ("waiting"), then
 *                            polls api->cancelled() every 5 ms for up to
 *                            30 s; when asked to stop it logs a
 *                            warning "stopped: cancelled after N ms" and
 *                            ends
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

static int put_err(agentd_result *out, const char *s)
{
    return host->result_error(out, s);
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

static int with_progress(const agentd_host_api *api, agentd_call *call, void *d)
{
    (void)d;
    for (int i = 0; i < 3; i++) {
        if (i)
            nap_ms(150);
        api->progress(call, i * 50.0, 100, NULL);
    }
    const char *t = "Progress reported three times";
    return api->result_write(api->result(call), t, strlen(t));
}

static int wait_for_cancel(const agentd_host_api *api, agentd_call *call, void *d)
{
    (void)d;
    api->progress(call, 0, 0, "waiting");
    for (int ms = 0; ms < 30000; ms += 5) {
        if (api->cancelled(call)) {
            char line[64];
            snprintf(line, sizeof line, "stopped: cancelled after %d ms", ms);
            api->call_log(call, AGENTD_LOG_WARN, line);
            return put_err(api->result(call), line);
        }
        nap_ms(5);
    }
    return put(api->result(call), "never cancelled");
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
    const agentd_call_tool calls[] = {
        {.size = sizeof(agentd_call_tool), .name = "test_tool_with_progress",
         .description = "Reports progress three times", .parameters = none,
         .flags = AGENTD_TOOL_THREADSAFE, .call = with_progress},
        {.size = sizeof(agentd_call_tool), .name = "wait_for_cancel",
         .description = "Runs until it is cancelled", .parameters = none,
         .flags = AGENTD_TOOL_THREADSAFE, .call = wait_for_cancel},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        int rc = api->register_call_tool(self, &calls[i]);
        if (rc != AGENTD_OK) {
            snprintf(err, errlen, "cannot register %s", calls[i].name);
            return rc;
        }
    }
    return AGENTD_OK;
}

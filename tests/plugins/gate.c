/*
 * gate.c -- test plugin: a call that runs until the test lets it go.
 *
 * "gate" (thread-safe) and "gate_serial" (not thread-safe) take
 * {"path": P}: the call creates P.started as soon as it runs, then waits
 * until a file P exists (checked every 5 ms, for at most 10 minutes) and
 * answers "opened". Tests wait for P.started to know that the call really
 * started, and create P (or never do) to decide when it ends, so nothing
 * depends on how long anything takes.
 */
#include <agentd/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const agentd_host_api *host;

/* The value of "path" (the host checked the schema; tests use no escapes). */
static int get_path(const char *args, char *out, size_t outlen)
{
    const char *p = strstr(args, "\"path\"");
    if (!p || !(p = strchr(p + 6, '"')))
        return -1;
    const char *end = strchr(++p, '"');
    if (!end || (size_t)(end - p) + 9 > outlen)
        return -1;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return 0;
}

static int gate_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data, (void)len;
    char path[4096], started[4096 + 8];
    if (get_path(args, path, sizeof path - 8) != 0)
        return host->result_error(out, "gate wants {\"path\": \"...\"}");
    snprintf(started, sizeof started, "%s.started", path);
    int fd = open(started, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    for (long i = 0; i < 120000 && access(path, F_OK) != 0; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    return host->result_write(out, "opened", 6);
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
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":"
                                 "\"string\"}},\"required\":[\"path\"]}";
    agentd_tool t = {
        .size = sizeof t,
        .name = "gate",
        .description = "Wait until a file exists",
        .parameters = schema,
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = gate_invoke,
    };
    int rc = api->register_tool(self, &t);
    if (rc != AGENTD_OK)
        return rc;
    t.name = "gate_serial";
    t.flags = 0;
    return api->register_tool(self, &t);
}

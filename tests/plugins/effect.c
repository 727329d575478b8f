/*
 * effect.c -- test plugin for the worker tests: each call is one real side
 * effect, a line appended to the file named by $AGENTD_TEST_EFFECT_FILE, so
 * a test can count how often each (job, call) took effect.
 *
 *   effect       {"tag": S}: appends "effect S\n", answers "did S"
 *   effect_idem  {"tag": S}: appends "idem S\n", answers "did S"; declared
 *                idempotent (AGENTD_TOOL_IDEMPOTENT): a worker runs it again
 *                when the one running it died
 *   effect_key   (ABI 1.1, idempotent) {"tag": S}: appends "key K S\n" with
 *                K = the call's conversation id ":" its call id, the
 *                idempotency key agentd worker gives it (JOB:CALL)
 *
 * When $AGENTD_TEST_EFFECT_HOLD is set and is part of S, the call stops the
 * process it runs in (SIGSTOP) right after its effect, before it answers: a
 * test that sees the process stopped kills it while the tool runs. Once
 * continued it answers as usual.
 * $AGENTD_TEST_EFFECT_MS makes every call take that long after its effect
 * (a window for kills at random times to land in).
 * Each line is one write(2) with O_APPEND: lines of concurrent calls, also
 * of several processes, never mix.
 */
#include <agentd/plugin.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const agentd_host_api *host;

/* The value of "tag" in {"tag":"..."} (the host validated the schema; the
 * tests' tags have no escapes). */
static size_t tag_of(const char *args, size_t len, char *out, size_t outlen)
{
    const char *k = strstr(args, "\"tag\"");
    const char *q = k ? memchr(k + 5, '"', len - (size_t)(k + 5 - args)) : NULL;
    const char *e = q ? memchr(q + 1, '"', len - (size_t)(q + 1 - args)) : NULL;
    size_t n = e ? (size_t)(e - q - 1) : 0;
    if (n >= outlen)
        n = outlen - 1;
    if (q)
        memcpy(out, q + 1, n);
    out[n] = '\0';
    return n;
}

static int effect(const char *kind, const char *args, size_t len, agentd_result *out)
{
    char tag[512], line[1200];
    tag_of(args, len, tag, sizeof tag);
    const char *path = getenv("AGENTD_TEST_EFFECT_FILE");
    if (!path || !path[0])
        return host->result_error(out, "AGENTD_TEST_EFFECT_FILE is not set");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return host->result_error(out, "cannot open the effect file");
    int n = snprintf(line, sizeof line, "%s %s\n", kind, tag);
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    if (w != n)
        return host->result_error(out, "cannot write the effect file");
    const char *ms = getenv("AGENTD_TEST_EFFECT_MS");
    long wait = ms ? strtol(ms, NULL, 10) : 0;
    if (wait > 0 && wait < 60000) {
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    const char *hold = getenv("AGENTD_TEST_EFFECT_HOLD");
    if (hold && hold[0] && strstr(tag, hold))
        raise(SIGSTOP);
    n = snprintf(line, sizeof line, "did %s", tag);
    return host->result_write(out, line, (size_t)n);
}

static int key_call(const agentd_host_api *api, agentd_call *call, void *tool_data)
{
    (void)tool_data;
    char kind[600];
    snprintf(kind, sizeof kind, "key %s:%s", api->conversation_id(call), api->call_id(call));
    size_t len;
    const char *args = api->args_json(call, &len);
    return effect(kind, args, len, api->result(call));
}

static int effect_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data;
    return effect("effect", args, len, out);
}

static int idem_invoke(void *tool_data, const char *args, size_t len, agentd_result *out)
{
    (void)tool_data;
    return effect("idem", args, len, out);
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
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"tag\":{\"type\":"
                                 "\"string\"}},\"required\":[\"tag\"]}";
    agentd_tool t = {
        .size = sizeof t,
        .name = "effect",
        .description = "Do something that must happen once",
        .parameters = schema,
        .flags = AGENTD_TOOL_THREADSAFE,
        .invoke = effect_invoke,
    };
    int rc = api->register_tool(self, &t);
    if (rc != AGENTD_OK)
        return rc;
    t.name = "effect_idem";
    t.description = "Do something that may safely happen again";
    t.flags = AGENTD_TOOL_THREADSAFE | AGENTD_TOOL_IDEMPOTENT;
    t.invoke = idem_invoke;
    rc = api->register_tool(self, &t);
    if (rc != AGENTD_OK || !AGENTD_API_HAS(api, register_call_tool))
        return rc;
    agentd_call_tool k = {
        .size = sizeof k,
        .name = "effect_key",
        .description = "Do something once per idempotency key",
        .parameters = schema,
        .flags = AGENTD_TOOL_THREADSAFE | AGENTD_TOOL_IDEMPOTENT,
        .call = key_call,
    };
    return api->register_call_tool(self, &k);
}

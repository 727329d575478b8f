/*
 * noisy.c -- test plugin that writes where a plugin should not and tells
 * where it runs, for the output, logging and isolation tests
 * (tests/integration/test_plugins.py):
 *
 *   init     printf()s "noisy: stdout from init", logs "init LEVEL" at every
 *            level, and when its config has "marker": PATH appends
 *            "init PID\n" to that file (PID: the process running init);
 *            "crash_in_init": "yes" makes it crash (SIGSEGV) instead
 *   noisy    printf()s "noisy: stdout from invoke", writes a line to
 *            stderr, logs "invoke LEVEL" at every level; {"say": TEXT} is
 *            logged at INFO and printed ("noisy: printed TEXT"); answers "done"
 *   pid      answers the pid of the process running invoke
 *   environ  answers /proc/self/environ with its NULs as newlines
 *   sleep    sleeps {"ms": N} milliseconds (at most 60 s); answers "slept"
 *
 * Every tool is thread-safe.
 */
#include <agentd/plugin.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const agentd_host_api *host;
static agentd_plugin *me;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

static void log_all(const char *what)
{
    for (int l = AGENTD_LOG_ERROR; l <= AGENTD_LOG_DEBUG; l++) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s %s", what, level_names[l]);
        host->log(me, l, msg);
    }
}

/* The string value of "key" in a flat JSON object (no escapes), or NULL. */
static char *json_str(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p)
        return NULL;
    p += strlen(pat);
    p += strspn(p, " :");
    if (*p++ != '"')
        return NULL;
    const char *e = strchr(p, '"');
    return e ? strndup(p, (size_t)(e - p)) : NULL;
}

static int noisy_invoke(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d, (void)n;
    printf("noisy: stdout from invoke\n");
    fflush(stdout);
    fprintf(stderr, "noisy: stderr from invoke\n");
    log_all("invoke");
    char *say = json_str(args, "say");
    if (say) {
        host->log(me, AGENTD_LOG_INFO, say);
        printf("noisy: printed %s\n", say);
        fflush(stdout);
        free(say);
    }
    return host->result_write(out, "done", 4);
}

static int pid_invoke(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d, (void)args, (void)n;
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", (long)getpid());
    return host->result_write(out, buf, (size_t)len);
}

static int environ_invoke(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d, (void)args, (void)n;
    int fd = open("/proc/self/environ", O_RDONLY);
    if (fd < 0)
        return host->result_error(out, "cannot open /proc/self/environ"), AGENTD_ERR;
    char buf[65536];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof buf && (got = read(fd, buf + len, sizeof buf - len)) > 0)
        len += (size_t)got;
    close(fd);
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\0')
            buf[i] = '\n';
    return host->result_write(out, buf, len);
}

static int sleep_invoke(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d;
    long ms = 0;
    const char *p = memchr(args, ':', n);
    if (p)
        ms = strtol(p + 1, NULL, 10);
    if (ms < 0 || ms > 60000)
        ms = 60000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return host->result_write(out, "slept", 5);
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
    printf("noisy: stdout from init\n");
    fflush(stdout);
    log_all("init");
    char *crash = json_str(api->config_json(self), "crash_in_init");
    if (crash) {
        free(crash);
        volatile uintptr_t addr = 16; /* never mapped: SIGSEGV */
        *(volatile int *)addr = 42;
    }
    char *marker = json_str(api->config_json(self), "marker");
    if (marker) {
        FILE *f = fopen(marker, "a");
        if (f) {
            fprintf(f, "init %ld\n", (long)getpid());
            fclose(f);
        }
        free(marker);
    }
    static const char obj[] = "{\"type\":\"object\",\"properties\":{}}";
    const struct {
        const char *name, *params;
        agentd_invoke_fn fn;
    } tools[] = {
        {"noisy", "{\"type\":\"object\",\"properties\":{\"say\":{\"type\":\"string\"}}}",
         noisy_invoke},
        {"pid", obj, pid_invoke},
        {"environ", obj, environ_invoke},
        {"sleep",
         "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\"}},\"required\":"
         "[\"ms\"]}",
         sleep_invoke},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        agentd_tool t = {
            .size = sizeof t,
            .name = tools[i].name,
            .description = "a noisy test tool",
            .parameters = tools[i].params,
            .flags = AGENTD_TOOL_THREADSAFE,
            .invoke = tools[i].fn,
        };
        int rc = api->register_tool(self, &t);
        if (rc != AGENTD_OK)
            return rc;
    }
    return AGENTD_OK;
}

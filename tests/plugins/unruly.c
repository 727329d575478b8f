/*
 * unruly.c -- test plugin whose tools harm the worker process they run in
 * from outside the call itself, for tests/integration/test_plugin_workers.py:
 *
 *   close_fds     closes every descriptor from 3 up (whatever carries the
 *                 worker's calls goes with them), then waits {"ms": N}
 *                 milliseconds (at most 60 s) and answers "closed"
 *   thread_crash  starts a thread of the plugin's own that writes into the
 *                 unmapped first page (SIGSEGV), then waits {"ms": N} and
 *                 answers "survived"
 *   wait          waits {"ms": N} and answers "waited N ms"
 *
 * All are thread-safe, so that they run side by side in one worker.
 */
#define _GNU_SOURCE
#include <agentd/plugin.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const agentd_host_api *host;

/* {"ms": N}, bounded to 0..60000. */
static long ms_of(const char *args, size_t len)
{
    long ms = 0;
    const char *p = memchr(args, ':', len);
    if (p)
        ms = strtol(p + 1, NULL, 10);
    return ms < 0 ? 0 : ms > 60000 ? 60000 : ms;
}

static void wait_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int close_fds_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d;
    close_range(3, ~0u, 0);
    wait_ms(ms_of(a, n));
    return host->result_write(out, "closed", 6);
}

static void *crasher(void *arg)
{
    (void)arg;
    /* Not NULL itself (see hostile.c): the page at 0 is never mapped. */
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 42;
    return NULL;
}

static int thread_crash_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d;
    pthread_t t;
    if (pthread_create(&t, NULL, crasher, NULL) != 0)
        return host->result_write(out, "no thread", 9);
    pthread_detach(t);
    wait_ms(ms_of(a, n));
    return host->result_write(out, "survived", 8);
}

static int wait_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d;
    long ms = ms_of(a, n);
    wait_ms(ms);
    char buf[48];
    int k = snprintf(buf, sizeof buf, "waited %ld ms", ms);
    return host->result_write(out, buf, (size_t)k);
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
    static const struct {
        const char *name;
        agentd_invoke_fn fn;
    } tools[] = {
        {"close_fds", close_fds_invoke},
        {"thread_crash", thread_crash_invoke},
        {"wait", wait_invoke},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        agentd_tool t = {sizeof t,
                         tools[i].name,
                         "misbehaves",
                         "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\"}}}",
                         AGENTD_TOOL_THREADSAFE,
                         tools[i].fn,
                         NULL,
                         NULL};
        int rc = api->register_tool(self, &t);
        if (rc != AGENTD_OK)
            return rc;
    }
    return AGENTD_OK;
}

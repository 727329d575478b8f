/*
 * hostile.c -- test plugin whose tools misbehave in every way a process can,
 * for the process-isolation tests (tests/integration/test_isolation.py,
 * tests/unit/test_proc.c):
 *
 *   crash       writes into the unmapped first page (SIGSEGV)
 *   abort       calls abort() (SIGABRT)
 *   exit3       calls exit(3) in the middle of the call
 *   hang        sleeps forever (thread-safe, so in-process timeouts apply too)
 *   flood       writes 20 MiB to stdout and 1 MiB to stderr, then answers "flooded"
 *   big         answers with 20 MiB of text
 *   grandchild  forks a child that sleeps forever holding stdout, answers its pid
 *   showkey     answers the value of $AGENTD_TEST_KEY, or "(unset)"
 *   children    counts the processes whose parent is this process ("children: N
 *               zombies: Z"), to check that the host reaps its workers
 *
 * All are thread-safe except crash, abort and exit3, which must never run
 * in-process anyway.
 */
#include <agentd/plugin.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../proc_children.h"

static const agentd_host_api *host;

static int crash_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    /* Not NULL itself, so that UBSan in sanitizer builds does not turn the
     * fault into a report and exit(1): the page at 0 is never mapped. */
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 42;
    return AGENTD_ERR;
}

static int abort_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    abort();
}

static int exit3_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    host->result_write(out, "half", 4);
    exit(3);
}

static int hang_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    for (;;) {
        struct timespec ts = {3600, 0};
        nanosleep(&ts, NULL);
    }
    return AGENTD_ERR; /* not reached */
}

static int flood_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    static char line[1024];
    memset(line, 'o', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 20 * 1024; i++)
        fwrite(line, 1, sizeof line, stdout);
    fflush(stdout);
    for (int i = 0; i < 1024; i++)
        fwrite(line, 1, sizeof line, stderr);
    return host->result_write(out, "flooded", 7);
}

static int big_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    size_t chunk = 1 << 20;
    char *buf = malloc(chunk);
    if (buf == NULL)
        return AGENTD_ENOMEM;
    memset(buf, 'x', chunk);
    int rc = AGENTD_OK;
    for (int i = 0; i < 20 && rc == AGENTD_OK; i++)
        rc = host->result_write(out, buf, chunk);
    free(buf);
    return rc;
}

static int grandchild_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    pid_t pid = fork();
    if (pid < 0)
        return host->result_error(out, "fork failed");
    if (pid == 0) {
        for (;;) {
            struct timespec ts = {3600, 0};
            nanosleep(&ts, NULL);
        }
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld", (long)pid);
    return host->result_write(out, buf, (size_t)len);
}

static int children_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    int zombies = 0, kids = proc_children((long)getpid(), &zombies);
    if (kids < 0)
        return host->result_error(out, "cannot read /proc");
    char buf[64];
    int len = snprintf(buf, sizeof buf, "children: %d zombies: %d", kids, zombies);
    return host->result_write(out, buf, (size_t)len);
}

static int showkey_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    const char *v = getenv("AGENTD_TEST_KEY");
    if (v == NULL)
        v = "(unset)";
    return host->result_write(out, v, strlen(v));
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
        uint32_t flags;
    } tools[] = {
        {"crash", crash_invoke, 0},
        {"abort", abort_invoke, 0},
        {"exit3", exit3_invoke, 0},
        {"hang", hang_invoke, AGENTD_TOOL_THREADSAFE},
        {"flood", flood_invoke, AGENTD_TOOL_THREADSAFE},
        {"big", big_invoke, AGENTD_TOOL_THREADSAFE},
        {"grandchild", grandchild_invoke, AGENTD_TOOL_THREADSAFE},
        {"showkey", showkey_invoke, AGENTD_TOOL_THREADSAFE},
        {"children", children_invoke, AGENTD_TOOL_THREADSAFE},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        agentd_tool t = {sizeof t, tools[i].name, "misbehaves", "{\"type\":\"object\"}",
                         tools[i].flags, tools[i].fn, NULL, NULL};
        int rc = api->register_tool(self, &t);
        if (rc != AGENTD_OK)
            return rc;
    }
    return AGENTD_OK;
}

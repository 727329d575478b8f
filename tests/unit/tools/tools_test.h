/*
 * tools_test.h -- helpers shared by the unit tests of tools that run in
 * processes of their own (test_isolate.c, test_plugin_worker.c):
 *
 *   count_children()    processes whose parent is this one (any state),
 *                       to check that none is left over, zombie or running
 *   now_s()             CLOCK_MONOTONIC in seconds
 *   plugin_path(FILE)   the built test plugin FILE (tests/plugins/ under
 *                       $AGENTD_DIR, else under .); caller frees
 */
#ifndef TEST_TOOLS_TEST_H
#define TEST_TOOLS_TEST_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../proc_children.h"
#include "base/buf.h"

static int count_children(void)
{
    return proc_children((long)getpid(), NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *plugin_path(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/plugins/%s", root && *root ? root : ".", file);
    return ad_strdup(path);
}

#endif /* TEST_TOOLS_TEST_H */

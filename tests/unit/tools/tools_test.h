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

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"

static int count_children(void)
{
    long me = (long)getpid();
    int kids = 0;
    DIR *dir = opendir("/proc");
    if (dir == NULL)
        return -1;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], st[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t got = fread(st, 1, sizeof st - 1, f);
        fclose(f);
        st[got] = '\0';
        char *rp = strrchr(st, ')');
        char state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == me)
            kids++;
    }
    closedir(dir);
    return kids;
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

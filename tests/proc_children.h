/*
 * proc_children.h -- the processes whose parent is a given one, read from
 * /proc, for the tests that check that nothing is left over: the unit
 * tests of tools in processes of their own (tools_test.h) and the hostile
 * test plugin (tests/plugins/hostile.c). Header-only, libc alone.
 *
 *   proc_children(parent, &zombies)  how many (any state), -1 when /proc
 *                                    cannot be read; zombies (may be NULL)
 *                                    gets how many of them are zombies
 */
#ifndef TEST_PROC_CHILDREN_H
#define TEST_PROC_CHILDREN_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

static int proc_children(long parent, int *zombies)
{
    int kids = 0, dead = 0;
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
        /* "pid (comm) S ppid ...": comm may hold spaces; start after the last ')'. */
        char *rp = strrchr(st, ')');
        char state;
        long ppid;
        if (rp == NULL || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2 || ppid != parent)
            continue;
        kids++;
        dead += state == 'Z';
    }
    closedir(dir);
    if (zombies)
        *zombies = dead;
    return kids;
}

#endif /* TEST_PROC_CHILDREN_H */

/*
 * redis_server.h -- a redis-server of the test's own, for the worker's unit
 * tests: on 127.0.0.1, a free port, a temporary folder, no RDB snapshots
 * (appendonly when asked). Started with its log on a pipe and ready when it
 * says so ("Ready to accept connections"), never after a fixed wait. It is
 * killed when the test program ends, even by a crash.
 *
 *   rsrv s; if (!rsrv_start(&s, false)) SKIP(rsrv_why);  ... rsrv_stop(&s);
 */
#ifndef TEST_REDIS_SERVER_H
#define TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct rsrv {
    pid_t pid;
    int port;
    char dir[256];
    char url[64];
    bool aof;
} rsrv;

/* Why the last start failed (static: SKIP keeps the pointer). */
static char rsrv_why[256];

static bool rsrv_have(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *p = strtok(buf, ":"); p; p = strtok(NULL, ":")) {
        char f[4200];
        snprintf(f, sizeof f, "%s/redis-server", p);
        if (access(f, X_OK) == 0)
            return true;
    }
    return false;
}

static int rsrv_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts (or starts again, on the same port and folder) the server. */
static bool rsrv_run(rsrv *s)
{
    int p[2];
    if (pipe(p) != 0)
        return false;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* It dies with the test program, however that ends: a server left
         * running would hold the test runner's output open for ever. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "",
               "--dir", s->dir, "--appendonly", s->aof ? "yes" : "no", "--appendfsync", "always",
               "--daemonize", "no", "--loglevel", "notice", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return false;
    }
    s->pid = pid;
    /* Read its log until it is ready (or gone). */
    char buf[8192];
    size_t have = 0;
    bool ready = false;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 20000) <= 0)
            break;
        ssize_t n = read(p[0], buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "Ready to accept connections")) {
            ready = true;
            break;
        }
        if (have > sizeof buf / 2) {
            memmove(buf, buf + have / 2, have - have / 2);
            have -= have / 2;
        }
    }
    /* Its later log goes nowhere. */
    close(p[0]);
    if (!ready) {
        snprintf(rsrv_why, sizeof rsrv_why, "redis-server did not start: %.200s", buf);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
    }
    return ready;
}

static bool rsrv_start(rsrv *s, bool aof)
{
    memset(s, 0, sizeof *s);
    s->aof = aof;
    if (!rsrv_have()) {
        snprintf(rsrv_why, sizeof rsrv_why, "redis-server is not installed (Debian: redis-server)");
        return false;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/agentd-redis-XXXXXX");
    if (!mkdtemp(s->dir))
        return false;
    /* Its log on a closed pipe must not kill it. */
    signal(SIGPIPE, SIG_IGN);
    for (int tries = 0; tries < 5; tries++) {
        s->port = rsrv_free_port();
        snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d", s->port);
        if (rsrv_run(s))
            return true;
    }
    return false;
}

/* Kills it (SIGKILL: nothing is written at exit) and waits for it. */
static void rsrv_kill(rsrv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static void rsrv_stop(rsrv *s)
{
    rsrv_kill(s);
    if (s->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s->dir);
    }
    s->dir[0] = '\0';
}

#endif /* TEST_REDIS_SERVER_H */

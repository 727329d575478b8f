/*
 * loopback.h -- a minimal provider on 127.0.0.1 for the memory benchmarks.
 *
 * One thread, blocking sockets, one connection at a time with keep-alive:
 * it reads each request to its end without keeping the body (so the server
 * costs the measured process no memory beyond a 64 KiB buffer) and answers
 * every request with the same short streamed answer ("ok"). The body size
 * of the last request is kept for the caller's checks. Also the resident
 * set figures the benchmarks read from /proc, and one turn of an agent run
 * to its end.
 */
#ifndef AD_BENCH_LOOPBACK_H
#define AD_BENCH_LOOPBACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "core/agent.h"

static int loopback_fd = -1;
static _Atomic size_t loopback_last_body; /* body bytes of the last request */

static const char loopback_answer_body[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

/* Reads one request, counting its body without keeping it; returns the
 * body size or -1 at EOF. */
static inline long loopback_drain(int fd)
{
    char buf[65536];
    size_t have = 0, head_end = 0, clen = 0, body = 0;
    for (;;) {
        if (head_end && body >= clen)
            return (long)body;
        ssize_t r = recv(fd, buf + have, sizeof buf - have - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (head_end) {
            body += (size_t)r;
            continue;
        }
        have += (size_t)r;
        buf[have] = '\0';
        char *e = strstr(buf, "\r\n\r\n");
        if (!e) {
            if (have >= sizeof buf - 1)
                return -1;
            continue;
        }
        head_end = (size_t)(e - buf) + 4;
        for (char *h = strstr(buf, "\r\n"); h && h < e; h = strstr(h + 2, "\r\n"))
            if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                clen = strtoul(h + 17, NULL, 10);
        body = have - head_end;
        have = 0;
    }
}

static inline void *loopback_main(void *arg)
{
    (void)arg;
    char resp[1024];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(loopback_answer_body), loopback_answer_body);
    for (;;) {
        int fd = accept(loopback_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        long body;
        while ((body = loopback_drain(fd)) >= 0) {
            atomic_store(&loopback_last_body, (size_t)body);
            if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n)
                break;
        }
        close(fd);
    }
}

/* Starts the server thread; returns its port. */
static inline int loopback_start(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    loopback_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (loopback_fd < 0 || bind(loopback_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(loopback_fd, 8) != 0 ||
        getsockname(loopback_fd, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("cannot listen on 127.0.0.1");
    pthread_t th;
    if (pthread_create(&th, NULL, loopback_main, NULL) != 0)
        bench_die("cannot start the server thread");
    pthread_detach(th);
    return ntohs(sa.sin_port);
}

/* VmRSS or VmHWM of this process, in KiB. */
static inline long loopback_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

typedef struct loopback_run {
    int status;
    bool done;
} loopback_run;

static inline void loopback_on_done(void *ud, int status)
{
    loopback_run *r = ud;
    r->status = status;
    r->done = true;
}

/* Runs one turn of agent on loop to its end; a turn that does not answer
 * ends the benchmark. */
static inline void loopback_turn(ad_agent *agent, uv_loop_t *loop, const char *prompt)
{
    loopback_run r = {-1, false};
    if (ad_agent_run(agent, prompt, loopback_on_done, &r) != AD_OK)
        bench_die("ad_agent_run failed");
    while (!r.done)
        uv_run(loop, UV_RUN_ONCE);
    if (r.status != AD_RUN_OK)
        bench_die("a turn failed");
}

#endif /* AD_BENCH_LOOPBACK_H */

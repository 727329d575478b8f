/*
 * bench_history_rss.c -- the memory one step costs in a long conversation.
 *
 * An agent is given a conversation of HISTORY_MESSAGES messages (tool
 * results of MESSAGE_BYTES each, about 24 MiB of JSON in all), then runs
 * two turns against a loopback server that reads each request to its end
 * without keeping it (so the server costs this process no memory) and
 * answers with a short streamed text. Figures, from the kernel's peak
 * resident set (VmHWM, reset through /proc/self/clear_refs before each
 * measured turn):
 *   first turn:  peak above the loaded conversation (serialises the whole
 *                history once, then sends it)
 *   later turn:  peak above the state before the turn (the history text is
 *                cached; the step builds and sends one request body)
 *   held:        resident set after the second turn (malloc_trim'd) above
 *                the loaded conversation: what stays between turns
 * all also as a multiple of the body size: how many copies of the history
 * a step holds. The run checks that both turns answered and
 * that the server received bodies of the expected size.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/agent.h"
#include "provider/curl.h"
#include "sinks/jsonl.h"
#include "sinks/text.h"
#include "bench.h"

#define HISTORY_MESSAGES 400
#define MESSAGE_BYTES (60u << 10)

static int listen_fd = -1;
static _Atomic size_t last_body; /* body bytes of the last request */

static const char answer[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %zu\r\n\r\n%s";
static const char answer_body[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"ok\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

/* Reads one request, counting its body without keeping it; returns the
 * body size or -1 at EOF. */
static long drain_request(int fd)
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

static void *server_main(void *arg)
{
    (void)arg;
    char resp[1024];
    int n = snprintf(resp, sizeof resp, answer, strlen(answer_body), answer_body);
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        long body;
        while ((body = drain_request(fd)) >= 0) {
            atomic_store(&last_body, (size_t)body);
            if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n)
                break;
        }
        close(fd);
    }
}

static int start_server(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(listen_fd, 8) != 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("cannot listen on 127.0.0.1");
    pthread_t th;
    if (pthread_create(&th, NULL, server_main, NULL) != 0)
        bench_die("cannot start the server thread");
    pthread_detach(th);
    return ntohs(sa.sin_port);
}

/* VmRSS or VmHWM of this process, in KiB. */
static long status_kib(const char *field)
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

/* Starts a new peak at the current resident set. */
static void reset_peak(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0 || fclose(f) != 0)
        bench_die("cannot reset the peak RSS (/proc/self/clear_refs)");
}

typedef struct run_state {
    uv_loop_t *loop;
    int status;
    bool done;
} run_state;

static void on_done(void *ud, int status)
{
    run_state *rs = ud;
    rs->status = status;
    rs->done = true;
    uv_stop(rs->loop);
}

static json_object *history(void)
{
    char *text = malloc(MESSAGE_BYTES + 1);
    if (!text)
        bench_die("out of memory");
    for (size_t i = 0; i < MESSAGE_BYTES; i++)
        text[i] = (char)('a' + i % 26);
    text[MESSAGE_BYTES] = '\0';
    json_object *msgs = json_object_new_array();
    for (int i = 0; i < HISTORY_MESSAGES; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(i % 2 ? "assistant" : "user"));
        json_object_object_add(m, "content", json_object_new_string(text));
        json_object_array_add(msgs, m);
    }
    free(text);
    return msgs;
}

static void turn(ad_agent *agent, uv_loop_t *loop, const char *prompt)
{
    run_state rs = {loop, -1, false};
    atomic_store(&last_body, 0);
    if (ad_agent_run(agent, prompt, on_done, &rs) != AD_OK)
        bench_die("ad_agent_run failed");
    while (!rs.done)
        uv_run(loop, UV_RUN_DEFAULT);
    if (rs.status != AD_RUN_OK)
        bench_die("a turn failed");
}

int main(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", start_server());
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("m");
    cfg.max_retries = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        bench_die("curl_global_init failed");
    uv_loop_t loop;
    FILE *null = fopen("/dev/null", "w");
    if (!null || uv_loop_init(&loop) != 0)
        bench_die("setup failed");
    setvbuf(null, NULL, _IOFBF, 64u << 10); /* as main.c does off a terminal */
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_text_sink_new(null, null, false));
    ad_transport *http = ad_curl_new(&loop);
    ad_agent_opts o = {&loop, http, &cfg, NULL, ev};
    ad_agent *agent = ev && http ? ad_agent_new(&o) : NULL;
    if (!agent)
        bench_die("setup failed");
    json_object *msgs = history();
    if (ad_agent_load_messages(agent, msgs) != AD_OK)
        bench_die("cannot load the conversation");
    json_object_put(msgs);

    reset_peak();
    long loaded = status_kib("VmRSS");
    turn(agent, &loop, "first");
    long first = status_kib("VmHWM") - loaded;
    size_t body1 = atomic_load(&last_body);

    reset_peak();
    long before = status_kib("VmRSS");
    turn(agent, &loop, "second");
    long later = status_kib("VmHWM") - before;
    size_t body2 = atomic_load(&last_body);
    malloc_trim(0);
    long held = status_kib("VmRSS") - loaded;

    size_t want = (size_t)HISTORY_MESSAGES * MESSAGE_BYTES;
    if (body1 < want || body2 < body1)
        bench_die("the server did not receive the whole history");
    double mib = (double)body2 / (1 << 20);
    printf("bench history_rss first: %7.1f MiB peak above the loaded conversation "
           "(%.2f x the %.1f MiB body; %d messages)\n",
           first / 1024.0, first / 1024.0 / mib, mib, HISTORY_MESSAGES);
    printf("bench history_rss later: %7.1f MiB peak above the state before the turn "
           "(%.2f x the body)\n",
           later / 1024.0, later / 1024.0 / mib);
    printf("bench history_rss held:  %7.1f MiB above the loaded conversation between turns "
           "(%.2f x the body)\n",
           held / 1024.0, held / 1024.0 / mib);

    ad_agent_free(agent);
    ad_transport_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    ad_events_free(ev);
    fclose(null);
    ad_config_free(&cfg);
    curl_global_cleanup();
    return 0;
}

/*
 * bench_dispatch.c -- tool dispatch latency through the real loop: from the
 * last byte of a model response that asks for a tool to the first
 * instruction of the plugin that runs it.
 *
 * Set-up, all in this process:
 *   - a loopback HTTP/1.1 server on a thread with blocking sockets
 *     (TCP_NODELAY, keep-alive). A request without a tool message gets a
 *     streamed tool-call response in the OpenRouter / Kimi K2 shape (a few
 *     text deltas, the call "stamp" with id and name, argument fragments);
 *     a request with one gets a short final answer, which ends the run.
 *   - the real runtime: the curl transport (libcurl multi on the uv loop), an ad_agent
 *     with the default configuration (streaming, tool timeout 60 s), the
 *     text event sink, and the bench plugin stamp.so (THREADSAFE) loaded by
 *     the plugin provider (tools/plugin.c) from build/bench/plugins into a
 *     tool host.
 *
 * The tool-call response goes out in two writes under one Content-Length:
 * everything up to the last argument fragment, then -- after a pause of
 * GAP_US so that the client has consumed the first part -- the tail: the
 * finish_reason "tool_calls" chunk, the usage chunk and "data: [DONE]".
 * The server reads CLOCK_MONOTONIC right BEFORE the send() of the tail
 * (t_last). The plugin reads CLOCK_MONOTONIC first thing in invoke() and
 * returns it as its result (t_plugin), which the bench reads back from the
 * conversation. t_plugin - t_last therefore covers:
 *   the send() syscall and loopback delivery of the tail (703 bytes), the
 *   epoll wake-up of the loop, uv_poll -> curl_multi_socket_action -> curl's
 *   read and write callback -> SSE parse and ad_stream_chunk of the three
 *   tail events, curl completing the transfer (Content-Length reached) ->
 *   on_xfer_done: ad_sse_finish, ad_stream_end, the assistant message, the
 *   tool_call event -> run_tools: the per-tool configuration, the tool
 *   host's argument parse and schema check, the plugin provider's
 *   uv_queue_work, the wake-up of a libuv worker thread -> the plugin's
 *   invoke().
 * A split point inside that interval comes from the event sink: its stderr
 * stream is an unbuffered cookie stream that notes the time of the first
 * write of the "[tool] stamp" line, i.e. just before dispatch. So
 *   receive = t_event - t_last (tail on the wire to parsed response), and
 *   handoff = t_plugin - t_event (dispatch and worker wake-up to plugin).
 * A run is one conversation (a fresh agent: tool step, then the final
 * step), so the history does not grow; warm-up runs are not counted.
 *
 * BENCH_DISPATCH_RUNS (default 1000) sets the counted runs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/agent.h"
#include "provider/curl.h"
#include "tools/plugin.h"
#include "sinks/jsonl.h"
#include "sinks/text.h"
#include "bench.h"

#define WARMUP 50
#define GAP_US 300
#define MAX_REQUEST (1u << 20)

/* ---- the loopback server (its own thread) ------------------------------ */

static int listen_fd = -1;
static atomic_bool server_stop;
static _Atomic uint64_t t_last;   /* before the send() of the last tool-response part */
static ad_buf tool_head, tool_tail, final_resp;

static void build_responses(void)
{
    ad_buf body = AD_BUF_INIT;
    bench_text_event(&body, "I'll", "\n");
    bench_text_event(&body, " stamp", "\n");
    bench_text_event(&body, " it.", "\n");
    bench_call_open_event(&body, 0, "functions.stamp:0", "stamp");
    static const char *const frags[] = {"{\"", "n", "\":", " ", "4", "2", "}"};
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++)
        bench_call_args_event(&body, 0, frags[i]);
    size_t head_body = body.len;
    bench_finish_events(&body, "tool_calls");
    if (ad_buf_printf(&tool_head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      body.len) != AD_OK ||
        ad_buf_append(&tool_head, body.data, head_body) != AD_OK ||
        ad_buf_append(&tool_tail, body.data + head_body, body.len - head_body) != AD_OK)
        bench_die("out of memory");

    ad_buf fin = AD_BUF_INIT;
    bench_text_event(&fin, "Done.", "\n");
    bench_finish_events(&fin, "stop");
    if (ad_buf_printf(&final_resp,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      fin.len) != AD_OK ||
        ad_buf_append(&final_resp, fin.data, fin.len) != AD_OK)
        bench_die("out of memory");
    ad_buf_free(&body);
    ad_buf_free(&fin);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one request (headers and Content-Length body) into *req; returns
 * the offset of the body, or -1 at EOF or on error. */
static long read_request(int fd, ad_buf *req)
{
    size_t head_end = 0, need = 0;
    ad_buf_reset(req);
    for (;;) {
        if (head_end && req->len >= need)
            return (long)head_end;
        if (req->len >= MAX_REQUEST || ad_buf_reserve(req, 16384) != AD_OK)
            return -1;
        ssize_t r = recv(fd, req->data + req->len, 16384, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        req->len += (size_t)r;
        req->data[req->len] = '\0';
        if (!head_end) {
            char *e = strstr(req->data, "\r\n\r\n");
            if (!e)
                continue;
            head_end = (size_t)(e - req->data) + 4;
            size_t clen = 0;
            for (char *h = strstr(req->data, "\r\n"); h && h < e; h = strstr(h + 2, "\r\n"))
                if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                    clen = strtoul(h + 17, NULL, 10);
            need = head_end + clen;
        }
    }
}

static void serve(int fd)
{
    ad_buf req = AD_BUF_INIT;
    long body;
    while ((body = read_request(fd, &req)) >= 0) {
        if (strstr(req.data + body, "\"role\":\"tool\"")) {
            if (send_all(fd, final_resp.data, final_resp.len) != 0)
                break;
            continue;
        }
        if (send_all(fd, tool_head.data, tool_head.len) != 0)
            break;
        struct timespec gap = {0, GAP_US * 1000};
        nanosleep(&gap, NULL);
        atomic_store(&t_last, bench_now_ns());
        if (send_all(fd, tool_tail.data, tool_tail.len) != 0)
            break;
    }
    ad_buf_free(&req);
}

static void *server_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&server_stop)) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(fd);
        close(fd);
    }
    return NULL;
}

static int start_server(pthread_t *th)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(listen_fd, 8) != 0 || getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        bench_die("cannot listen on 127.0.0.1");
    if (pthread_create(th, NULL, server_main, NULL) != 0)
        bench_die("cannot start the server thread");
    return ntohs(sa.sin_port);
}

/* ---- the event sink's stderr: notes when the tool line starts ---------- */

static uint64_t t_event; /* loop thread only */

static ssize_t sink_write(void *c, const char *buf, size_t n)
{
    (void)c;
    if (!t_event && n >= 7 && memcmp(buf, "[tool] ", 7) == 0)
        t_event = bench_now_ns();
    return (ssize_t)n;
}

/* ---- the client -------------------------------------------------------- */

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

/* The stamp plugin's answer: the content of the run's tool message. */
static uint64_t plugin_stamp(ad_agent *a)
{
    json_object *msgs = ad_agent_messages(a);
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i), *role, *content;
        if (json_object_object_get_ex(m, "role", &role) &&
            strcmp(json_object_get_string(role), "tool") == 0 &&
            json_object_object_get_ex(m, "content", &content))
            return strtoull(json_object_get_string(content), NULL, 10);
    }
    return 0;
}

static void print_stats(const char *label, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp_u64);
    printf("bench dispatch %-8s: median %6.1f us  p90 %6.1f us  (min %.1f, p99 %.1f, max %.1f us)\n",
           label, (double)v[n / 2] / 1e3, (double)v[n * 9 / 10] / 1e3, (double)v[0] / 1e3,
           (double)v[n * 99 / 100] / 1e3, (double)v[n - 1] / 1e3);
}

int main(void)
{
    const char *e = getenv("BENCH_DISPATCH_RUNS");
    long runs = e ? strtol(e, NULL, 10) : 1000;
    if (runs < 10 || runs > 1000000)
        runs = 1000;
    const char *dir = getenv("BENCH_PLUGIN_DIR");
    char path[4096], err[512], url[128];
    snprintf(path, sizeof path, "%s/stamp.so", dir && dir[0] ? dir : "build/bench/plugins");

    build_responses();
    pthread_t th;
    int port = start_server(&th);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);

    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("moonshotai/kimi-k2-0905");
    cfg.max_tokens = 4000;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        bench_die("curl_global_init failed");
    uv_loop_t loop;
    FILE *out = fopen("/dev/null", "w");
    cookie_io_functions_t io = {NULL, sink_write, NULL, NULL};
    FILE *errf = fopencookie(NULL, "w", io);
    if (!out || !errf || uv_loop_init(&loop) != 0)
        bench_die("setup failed");
    setvbuf(errf, NULL, _IONBF, 0);
    ad_tool_host *tools = ad_tool_host_new(&loop);
    if (!tools || ad_plugin_load_file(tools, path, NULL, NULL, err, sizeof err) != AD_OK) {
        fprintf(stderr, "bench dispatch: %s\n", err);
        return 1;
    }
    setvbuf(out, NULL, _IOFBF, 64u << 10); /* as main.c does off a terminal */
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_text_sink_new(out, errf, false));
    ad_transport *http = ad_curl_new(&loop);
    if (!ev || !http)
        bench_die("setup failed");

    uint64_t *total = calloc((size_t)runs, sizeof *total);
    uint64_t *rcv = calloc((size_t)runs, sizeof *rcv);
    uint64_t *handoff = calloc((size_t)runs, sizeof *handoff);
    if (!total || !rcv || !handoff)
        bench_die("out of memory");
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < WARMUP + runs; i++) {
        ad_agent_opts o = {&loop, http, &cfg, tools, ev};
        ad_agent *agent = ad_agent_new(&o);
        if (!agent)
            bench_die("out of memory");
        run_state rs = {&loop, -1, false};
        t_event = 0;
        atomic_store(&t_last, 0);
        if (ad_agent_run(agent, "Stamp it.", on_done, &rs) != AD_OK)
            bench_die("ad_agent_run failed");
        while (!rs.done)
            uv_run(&loop, UV_RUN_DEFAULT);
        uint64_t tp = plugin_stamp(agent), tl = atomic_load(&t_last);
        if (rs.status != AD_RUN_OK || !tp || !tl || !t_event || tp < t_event || t_event < tl) {
            fprintf(stderr, "bench dispatch: run %ld failed (status %d)\n", i, rs.status);
            return 1;
        }
        if (i >= WARMUP) {
            total[i - WARMUP] = tp - tl;
            rcv[i - WARMUP] = t_event - tl;
            handoff[i - WARMUP] = tp - t_event;
        }
        ad_agent_free(agent);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    print_stats("total", total, (size_t)runs);
    print_stats("receive", rcv, (size_t)runs);
    print_stats("handoff", handoff, (size_t)runs);
    printf("bench dispatch: %ld runs (+%d warm-up) in %.2f s; total = server's last byte -> "
           "plugin entry; target median <= 100 us: %s\n",
           runs, WARMUP, secs, (double)total[runs / 2] / 1e3 <= 100 ? "met" : "NOT met");

    atomic_store(&server_stop, true);
    shutdown(listen_fd, SHUT_RDWR);
    ad_transport_close(http);
    ad_tool_host_free(tools);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    pthread_join(th, NULL);
    close(listen_fd);
    curl_global_cleanup();
    ad_events_free(ev);
    fclose(out);
    fclose(errf);
    ad_config_free(&cfg);
    free(total);
    free(rcv);
    free(handoff);
    ad_buf_free(&tool_head);
    ad_buf_free(&tool_tail);
    ad_buf_free(&final_resp);
    return 0;
}

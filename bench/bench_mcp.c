/*
 * bench_mcp.c -- round trips per second of MCP tools/call through agentd's
 * client (runtime/mcp/client.c over the stdio transport) to a trivial
 * stdio server.
 *
 *   bench_mcp                 the figure for `make bench`: batches within
 *                             BENCH_SECONDS, best and median batch
 *   bench_mcp --client S      S seconds of calls after a warm-up; prints
 *                             {"calls": N, "seconds": T, "rate": R,
 *                             "cpu_us": C} (C: the client process's CPU
 *                             time per call, user + system; for
 *                             bench/mcp_vs_ts.py, which pairs it with the
 *                             official TypeScript SDK's client)
 *   bench_mcp --server        the trivial server itself: newline-delimited
 *                             JSON-RPC on stdin/stdout, one tool `echo`
 *                             that answers its `text` (json-c parses every
 *                             message, as any server would)
 *
 * One call at a time: each round trip is the call's request written to the
 * server's stdin, the server's read, parse, answer and write, and the
 * client's read, parse and result, one after the other. The result's text
 * is checked on every call.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "base/json.h"
#include "mcp/client.h"
#include "mcp/stdio.h"

/* ---- the trivial server ---------------------------------------------------- */

static void reply(json_object *id, json_object *result)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(m, "id", json_object_get(id));
    json_object_object_add(m, "result", result);
    const char *t = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    fputs(t, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    json_object_put(m);
}

static int serve(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_object *m = json_tokener_parse(line), *id = NULL, *params = NULL;
        const char *method = m ? ad_json_str(m, "method") : NULL;
        if (!method || !json_object_object_get_ex(m, "id", &id)) {
            json_object_put(m);
            continue;
        }
        json_object_object_get_ex(m, "params", &params);
        json_object *r = json_object_new_object();
        if (strcmp(method, "initialize") == 0) {
            const char *v = params ? ad_json_str(params, "protocolVersion") : NULL;
            json_object *caps = json_object_new_object(), *info = json_object_new_object();
            json_object_object_add(caps, "tools", json_object_new_object());
            json_object_object_add(info, "name", json_object_new_string("bench-echo"));
            json_object_object_add(info, "version", json_object_new_string("1"));
            json_object_object_add(r, "protocolVersion",
                                   json_object_new_string(v ? v : "2025-11-25"));
            json_object_object_add(r, "capabilities", caps);
            json_object_object_add(r, "serverInfo", info);
        } else if (strcmp(method, "tools/list") == 0) {
            json_object *tools = json_object_new_array(), *t = json_object_new_object();
            json_object_object_add(t, "name", json_object_new_string("echo"));
            json_object_object_add(t, "description", json_object_new_string("Echoes its text"));
            json_object_object_add(t, "inputSchema",
                                   json_tokener_parse("{\"type\":\"object\",\"properties\":"
                                                      "{\"text\":{\"type\":\"string\"}}}"));
            json_object_array_add(tools, t);
            json_object_object_add(r, "tools", tools);
        } else if (strcmp(method, "tools/call") == 0) {
            json_object *args = NULL, *text = NULL;
            if (params && json_object_object_get_ex(params, "arguments", &args))
                json_object_object_get_ex(args, "text", &text);
            json_object *content = json_object_new_array(), *b = json_object_new_object();
            json_object_object_add(b, "type", json_object_new_string("text"));
            json_object_object_add(b, "text", text ? json_object_get(text)
                                                   : json_object_new_string(""));
            json_object_array_add(content, b);
            json_object_object_add(r, "content", content);
        }
        reply(id, r);
        json_object_put(m);
    }
    free(line);
    return 0;
}

/* ---- agentd's client -------------------------------------------------------- */

typedef struct run {
    uv_loop_t *loop;
    ad_mcp_client *c;
    json_object *args;
    bool ready, failed;
    uint64_t deadline_ns;
    long calls, target;
    bool done;
} run;

static void on_state(void *ud, ad_mcp_client *c, ad_mcp_state s, const char *msg)
{
    (void)c;
    run *r = ud;
    if (s == AD_MCP_READY)
        r->ready = true;
    if (s == AD_MCP_FAILED || s == AD_MCP_RESTARTING) {
        fprintf(stderr, "bench mcp: the server failed: %s\n", msg ? msg : "?");
        r->failed = true;
    }
}

static void next_call(run *r);

static void on_done(void *ud, const ad_mcp_outcome *o)
{
    run *r = ud;
    json_object *content = NULL;
    const char *text = NULL;
    if (o->status == AD_MCP_CALL_OK && json_object_object_get_ex(o->result, "content", &content))
        text = ad_json_str(json_object_array_get_idx(content, 0), "text");
    if (!text || strcmp(text, "round trip") != 0)
        bench_die("mcp: a call did not come back as sent");
    r->calls++;
    next_call(r);
}

static void next_call(run *r)
{
    if ((r->target && r->calls >= r->target) ||
        (r->deadline_ns && bench_now_ns() >= r->deadline_ns)) {
        r->done = true;
        return;
    }
    static const ad_mcp_call_cb cb = {NULL, on_done};
    if (!ad_mcp_call_start(r->c, "echo", r->args, 0, &cb, r))
        bench_die("out of memory");
}

/* Runs calls until target calls or seconds passed (whichever is set). */
static long calls_for(run *r, long target, double seconds, double *took)
{
    r->calls = 0;
    r->target = target;
    r->deadline_ns = seconds > 0 ? bench_now_ns() + (uint64_t)(seconds * 1e9) : 0;
    r->done = false;
    uint64_t t0 = bench_now_ns();
    next_call(r);
    while (!r->done)
        uv_run(r->loop, UV_RUN_ONCE);
    *took = (double)(bench_now_ns() - t0) / 1e9;
    return r->calls;
}

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int client(double seconds, bool json)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        bench_die("cannot find the bench program");
    exe[n] = '\0';
    uv_loop_t loop;
    uv_loop_init(&loop);
    char **env = ad_mcp_env_build(NULL, 0, NULL, 0, NULL);
    const char *args[] = {"--server"};
    ad_mcp_stdio_opts so = {.command = exe, .args = args, .nargs = 1, .env = env};
    ad_mcp_transport *t = ad_mcp_stdio_new(&loop, &so);
    ad_mcp_env_free(env);
    run r = {.loop = &loop, .args = json_tokener_parse("{\"text\":\"round trip\"}")};
    static const ad_mcp_client_cb cb = {.on_state = on_state};
    ad_mcp_client_opts co = {.name = "bench", .startup_timeout_s = 10};
    r.c = t ? ad_mcp_client_new(&loop, t, &co, &cb, &r) : NULL;
    if (!r.c)
        bench_die("out of memory");
    ad_mcp_client_start(r.c);
    while (!r.ready && !r.failed)
        uv_run(&loop, UV_RUN_ONCE);
    if (r.failed)
        return 1;
    double took;
    calls_for(&r, 500, 0, &took); /* warm-up */
    if (json) {
        double cpu0 = cpu_s();
        long c = calls_for(&r, 0, seconds, &took);
        double cpu = cpu_s() - cpu0;
        printf("{\"calls\": %ld, \"seconds\": %.6f, \"rate\": %.1f, \"cpu_us\": %.2f}\n", c,
               took, c / took, c ? cpu * 1e6 / c : 0);
    } else {
        /* Batches of 200 calls within the budget: the best is the least
         * disturbed, the median is printed beside it. */
        double rates[4096];
        size_t nb = 0;
        uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
        while (nb < sizeof rates / sizeof rates[0] && (nb < 5 || bench_now_ns() < end)) {
            long c = calls_for(&r, 200, 0, &took);
            rates[nb++] = c / took;
        }
        qsort(rates, nb, sizeof rates[0], cmp_double);
        printf("bench mcp: %.0f tools/call round trips/s, %.1f us each  (median batch %.0f/s; "
               "%zu batches of 200, one call at a time, stdio, a trivial json-c server)\n",
               rates[nb - 1], 1e6 / rates[nb - 1], rates[nb / 2], nb);
    }
    bool closed = false;
    ad_mcp_client_close(r.c, on_closed, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    json_object_put(r.args);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--server") == 0)
        return serve();
    if (argc > 2 && strcmp(argv[1], "--client") == 0)
        return client(strtod(argv[2], NULL), true);
    return client(bench_budget_s(), false);
}

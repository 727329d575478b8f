/*
 * bench_plugin_worker.c -- what a tool call costs in a persistent plugin worker
 * (isolation = "worker", the default) over the same call in process, and
 * in a fresh worker process per call, through the real tool host on a
 * real loop.
 *
 * One loop holds three tool hosts, each with bench/plugins/stamp.so loaded
 * by the plugin provider: in process (the call runs on a thread of libuv's
 * pool), in a persistent worker (this program started again as a worker,
 * as agentd does), and per call. A call is ad_tool_host_run() of "stamp"
 * with {"n":42}, timed from just before that call to the batch's on_done
 * (the whole round: argument check, dispatch, the plugin, the result back,
 * its repair and the delivery): `round`. `entry` is the part up to the
 * plugin's first instruction (stamp answers with CLOCK_MONOTONIC, which
 * every process shares).
 *
 * Paired: in-process and worker calls alternate (in-process first in even
 * pairs, worker first in odd ones, so that neither always runs on a warmer
 * cache), and each pair gives one difference worker - in-process; the
 * headline is the median of those differences. Warm-up calls (the worker's
 * start among them) are not counted. Per-call isolation runs fewer calls
 * (each is a process).
 *
 * In flight: INFLIGHT calls started at once in the persistent worker, each
 * a batch of its own (as that many conversations' calls would be), the
 * loop run until every one has its result: the CPU time of this process's
 * loop thread per call (CLOCK_THREAD_CPUTIME_ID, so the worker process
 * and other load do not count) and the round's wall time. Once with
 * stamp (thread-safe: all INFLIGHT are sent at once and answered side by
 * side) and once with bench/plugins/tick.so (not thread-safe: one runs,
 * the others wait in the provider's queue). BENCH_INFLIGHT_ROUNDS (default
 * 15) rounds of each after 2 warm-up rounds; best and median round.
 *
 * BENCH_WORKER_RUNS (default 2000) pairs; BENCH_PLUGIN_DIR as for the other
 * benchmarks.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tools/host.h"
#include "tools/isolate.h"
#include "tools/plugin.h"
#include "tools/worker.h"

#define WARMUP 100
#define INFLIGHT 1000
#define TARGET_US 50.0

static uv_loop_t loop;

typedef struct one {
    bool done;
    uint64_t stamp;
    bool ok;
} one;

static void on_done(void *ud, const ad_call_outcome *o, size_t n)
{
    one *x = ud;
    x->done = true;
    x->ok = n == 1 && o[0].state == AD_CALL_DONE && !o[0].result.is_error;
    x->stamp = x->ok ? strtoull(o[0].result.content, NULL, 10) : 0;
}

/* One call: its round and entry times in ns. */
static void call(ad_tool_host *h, uint64_t *round, uint64_t *entry)
{
    static const ad_batch_cb cb = {.on_done = on_done};
    static const char args[] = "{\"n\":42}";
    ad_call_req q = {"call_1", "stamp", args, sizeof args - 1, 60};
    one x = {0};
    uint64_t t0 = bench_now_ns();
    if (ad_tool_host_run(h, "bench", &q, 1, &cb, &x) == NULL)
        bench_die("out of memory");
    while (!x.done)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t t1 = bench_now_ns();
    if (!x.ok || x.stamp < t0 || x.stamp > t1)
        bench_die("a stamp call failed");
    *round = t1 - t0;
    *entry = x.stamp - t0;
}

static int mode_worker(void *ud, const char *name)
{
    (void)ud, (void)name;
    return AD_TOOL_WORKER;
}

static int mode_per_call(void *ud, const char *name)
{
    (void)ud, (void)name;
    return AD_TOOL_PER_CALL;
}

static ad_tool_host *host_for(const char *path, ad_plugin_mode_fn mode)
{
    static const ad_isolate_opts io = {NULL, NULL, 60, NULL};
    ad_plugin_opts po = {.mode = mode, .isolate = &io};
    char err[512];
    ad_tool_host *h = ad_tool_host_new(&loop);
    if (h == NULL || ad_plugin_load_file(h, path, NULL, mode ? &po : NULL, err, sizeof err) != 0) {
        fprintf(stderr, "bench plugin_worker: %s\n", err);
        exit(1);
    }
    return h;
}

typedef struct fleet {
    size_t left, bad;
} fleet;

static void fleet_done(void *ud, const ad_call_outcome *o, size_t n)
{
    fleet *f = ud;
    f->left--;
    if (!(n == 1 && o[0].state == AD_CALL_DONE && !o[0].result.is_error))
        f->bad++;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One round of INFLIGHT calls of tool at once: the loop thread's CPU time
 * in ns; *wall its wall time. */
static uint64_t round_inflight(ad_tool_host *h, const char *tool, uint64_t *wall)
{
    static const ad_batch_cb cb = {.on_done = fleet_done};
    static const char args[] = "{\"n\":42}";
    ad_call_req q = {"call_1", tool, args, sizeof args - 1, 60};
    fleet f = {INFLIGHT, 0};
    uint64_t t0 = bench_now_ns(), c0 = thread_cpu_ns();
    for (int i = 0; i < INFLIGHT; i++)
        if (ad_tool_host_run(h, "bench", &q, 1, &cb, &f) == NULL)
            bench_die("out of memory");
    while (f.left)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t cpu = thread_cpu_ns() - c0;
    *wall = bench_now_ns() - t0;
    if (f.bad)
        bench_die("a call in flight failed");
    return cpu;
}

static void bench_inflight(ad_tool_host *h, const char *tool, const char *label, long rounds)
{
    uint64_t *cpu = calloc((size_t)rounds, sizeof(uint64_t));
    uint64_t *wall = calloc((size_t)rounds, sizeof(uint64_t));
    if (!cpu || !wall)
        bench_die("out of memory");
    uint64_t w;
    for (int i = 0; i < 2; i++)
        round_inflight(h, tool, &w);
    for (long i = 0; i < rounds; i++)
        cpu[i] = round_inflight(h, tool, &wall[i]);
    qsort(cpu, (size_t)rounds, sizeof cpu[0], bench_cmp_u64);
    qsort(wall, (size_t)rounds, sizeof wall[0], bench_cmp_u64);
    printf("bench plugin_worker %d in flight, %s: loop CPU per call best %5.2f us  median %5.2f "
           "us; round best %6.1f ms  median %6.1f ms  (%ld rounds)\n",
           INFLIGHT, label, (double)cpu[0] / INFLIGHT / 1e3,
           (double)cpu[rounds / 2] / INFLIGHT / 1e3, (double)wall[0] / 1e6,
           (double)wall[rounds / 2] / 1e6, rounds);
    free(cpu);
    free(wall);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median_us(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp_u64);
    return (double)v[n / 2] / 1e3;
}

static double p90_us(const uint64_t *v, size_t n)
{
    return (double)v[n * 9 / 10] / 1e3; /* v sorted */
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], AD_ISOLATE_WORKER_FLAG) == 0)
        return ad_isolate_worker_main(argc, argv);
    const char *e = getenv("BENCH_WORKER_RUNS");
    long runs = e ? strtol(e, NULL, 10) : 2000;
    if (runs < 10 || runs > 1000000)
        runs = 2000;
    long pc_runs = runs / 10 < 20 ? 20 : runs / 10;
    e = getenv("BENCH_INFLIGHT_ROUNDS");
    long if_rounds = e ? strtol(e, NULL, 10) : 15;
    if (if_rounds < 1 || if_rounds > 100000)
        if_rounds = 15;
    const char *dir = getenv("BENCH_PLUGIN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/stamp.so", dir && dir[0] ? dir : "build/bench/plugins");
    char tick[4096];
    snprintf(tick, sizeof tick, "%s/tick.so", dir && dir[0] ? dir : "build/bench/plugins");
    uv_loop_init(&loop);
    ad_tool_host *in = host_for(path, NULL), *wk = host_for(path, mode_worker),
                 *pc = host_for(path, mode_per_call), *tk = host_for(tick, mode_worker);

    uint64_t *in_round = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *in_entry = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *wk_round = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t *wk_entry = calloc((size_t)runs, sizeof(uint64_t));
    int64_t *diff = calloc((size_t)runs, sizeof(int64_t));
    uint64_t *pc_round = calloc((size_t)pc_runs, sizeof(uint64_t));
    uint64_t *pc_entry = calloc((size_t)pc_runs, sizeof(uint64_t));
    if (!in_round || !in_entry || !wk_round || !wk_entry || !diff || !pc_round || !pc_entry)
        bench_die("out of memory");
    uint64_t r, en;
    for (int i = 0; i < WARMUP; i++) {
        call(in, &r, &en);
        call(wk, &r, &en);
    }
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < runs; i++) {
        if (i % 2 == 0) {
            call(in, &in_round[i], &in_entry[i]);
            call(wk, &wk_round[i], &wk_entry[i]);
        } else {
            call(wk, &wk_round[i], &wk_entry[i]);
            call(in, &in_round[i], &in_entry[i]);
        }
        diff[i] = (int64_t)wk_round[i] - (int64_t)in_round[i];
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    for (int i = 0; i < 3; i++)
        call(pc, &r, &en);
    for (long i = 0; i < pc_runs; i++)
        call(pc, &pc_round[i], &pc_entry[i]);

    qsort(diff, (size_t)runs, sizeof diff[0], cmp_i64);
    double d_med = (double)diff[runs / 2] / 1e3, d_p90 = (double)diff[runs * 9 / 10] / 1e3;
    /* Sorted here, once: p90_us() reads sorted arrays. */
    double in_med = median_us(in_round, (size_t)runs), wk_med = median_us(wk_round, (size_t)runs);
    double pc_med = median_us(pc_round, (size_t)pc_runs);
    double in_entry_med = median_us(in_entry, (size_t)runs);
    double wk_entry_med = median_us(wk_entry, (size_t)runs);
    printf("bench plugin_worker in-process: round median %6.1f us  p90 %6.1f us  (entry median "
           "%.1f us)\n",
           in_med, p90_us(in_round, (size_t)runs), in_entry_med);
    printf("bench plugin_worker worker    : round median %6.1f us  p90 %6.1f us  (entry median "
           "%.1f us)\n",
           wk_med, p90_us(wk_round, (size_t)runs), wk_entry_med);
    printf("bench plugin_worker per-call  : round median %6.1f us  p90 %6.1f us  (%ld calls)\n",
           pc_med, p90_us(pc_round, (size_t)pc_runs), pc_runs);
    printf("bench plugin_worker overhead  : worker - in-process, paired: median %6.1f us  p90 %6.1f us "
           "(%ld pairs in %.2f s); target median <= %.0f us: %s\n",
           d_med, d_p90, runs, secs, TARGET_US, d_med <= TARGET_US ? "met" : "NOT met");
    bench_inflight(wk, "stamp", "stamp (thread-safe)", if_rounds);
    bench_inflight(tk, "tick", "tick (one at a time)", if_rounds);
    ad_tool_host_free(in);
    ad_tool_host_free(wk);
    ad_tool_host_free(pc);
    ad_tool_host_free(tk);
    uv_run(&loop, UV_RUN_DEFAULT);
    ad_plugin_worker_reap(5);
    uv_loop_close(&loop);
    free(in_round);
    free(in_entry);
    free(wk_round);
    free(wk_entry);
    free(diff);
    free(pc_round);
    free(pc_entry);
    return 0;
}

/*
 * bench_store.c -- what storing a message costs the loop thread.
 *
 * A session database in a temporary folder; the same conversation round
 * (a user prompt, an assistant message with two tool calls, two tool
 * results, a 2 KiB answer; and once per round a 64 KiB tool result) is
 * stored two ways, message by message:
 *   sync   ad_session_append() on the calling thread: redaction,
 *          serialisation and the transaction (the path before the writer
 *          thread: every message cost the loop this much);
 *   sink   ad_events_message() through the store sink: the loop thread
 *          serialises the message and queues it; the writer thread commits.
 *          The commit's round trip (until the conversation resumes) is
 *          printed beside it: the loop is free meanwhile.
 * The figure is the calling (loop) thread's own CPU time per message
 * (CLOCK_THREAD_CPUTIME_ID: on a shared machine the wall time also counts
 * whoever else ran); median, best and p90 of BENCH_SECONDS' worth of rounds.
 */
#define _GNU_SOURCE /* nftw flags */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "core/events.h"
#include "sinks/store.h"
#include "store/session.h"

static char dir[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static json_object **round_messages(size_t *n)
{
    static json_object *m[6];
    ad_buf b = AD_BUF_INIT;
    m[0] = json_tokener_parse("{\"role\":\"user\",\"content\":\"Add and multiply the numbers 2 "
                              "and 3, then explain what you did.\"}");
    m[1] = json_tokener_parse(
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"functions.add:0\","
        "\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 2, "
        "\\\"b\\\": 3}\"}},{\"id\":\"functions.multiply:1\",\"type\":\"function\",\"function\":"
        "{\"name\":\"multiply\",\"arguments\":\"{\\\"a\\\": 2, \\\"b\\\": 3}\"}}]}");
    m[2] = json_tokener_parse(
        "{\"role\":\"tool\",\"tool_call_id\":\"functions.add:0\",\"content\":\"5\"}");
    for (int i = 0; i < 1024; i++)
        ad_buf_putc(&b, (char)('a' + i % 26));
    json_object *t = json_object_new_object();
    json_object_object_add(t, "role", json_object_new_string("tool"));
    json_object_object_add(t, "tool_call_id", json_object_new_string("functions.multiply:1"));
    json_object_object_add(t, "content", json_object_new_string(b.data));
    m[3] = t;
    ad_buf_reset(&b);
    for (int i = 0; i < 2048; i++)
        ad_buf_putc(&b, i % 64 == 63 ? '\n' : (char)('a' + i % 26));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "role", json_object_new_string("assistant"));
    json_object_object_add(a, "content", json_object_new_string(b.data));
    m[4] = a;
    ad_buf_reset(&b);
    for (int i = 0; i < 65536; i++)
        ad_buf_putc(&b, (char)('a' + i % 26));
    json_object *big = json_object_new_object();
    json_object_object_add(big, "role", json_object_new_string("tool"));
    json_object_object_add(big, "tool_call_id", json_object_new_string("functions.add:0"));
    json_object_object_add(big, "content", json_object_new_string(b.data));
    m[5] = big;
    ad_buf_free(&b);
    *n = 6;
    return m;
}

/* The calling thread's own CPU time: the loop's cost, whoever else runs. */
static uint64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static ad_session *open_store(const char *name, const char *path)
{
    ad_session *s = NULL;
    char err[512];
    if (ad_session_open(&s, path, true, err, sizeof err) != AD_OK ||
        ad_session_start(s, name, true, "m", NULL, NULL, err, sizeof err) != AD_OK)
        bench_die(err);
    ad_session_set_secret(s, "sk-bench-not-a-key");
    return s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *ns, size_t n, const char *extra)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    printf("bench store %s: %.1f us/message loop-thread CPU, median   (best %.1f, p90 %.1f, "
           "%zu messages%s)\n",
           what, (double)ns[n / 2] / 1e3, (double)ns[0] / 1e3, (double)ns[n * 9 / 10] / 1e3, n,
           extra);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/agentd-bench-store-XXXXXX");
    if (!mkdtemp(dir))
        bench_die("mkdtemp");
    char path[300];
    snprintf(path, sizeof path, "%s/s.db", dir);
    size_t nm;
    json_object **m = round_messages(&nm);
    double budget = bench_budget_s();
    size_t cap = 1 << 16;
    uint64_t *ns = malloc(cap * sizeof *ns), *rt = malloc(cap * sizeof *rt);
    uint64_t *bns = malloc(cap * sizeof *bns), *brt = malloc(cap * sizeof *brt);
    size_t nb = 0;
    if (!ns || !rt || !bns || !brt)
        bench_die("out of memory");

    /* sync: the whole write on the calling thread */
    ad_session *s = open_store("sync", path);
    size_t n = 0;
    char err[512];
    uint64_t end = bench_now_ns() + (uint64_t)(budget * 1e9);
    while (bench_now_ns() < end && n + nm <= cap) {
        for (size_t i = 0; i < nm; i++) {
            uint64_t c0 = thread_ns(), t0 = bench_now_ns();
            if (ad_session_append(s, m[i], 1, err, sizeof err) != AD_OK)
                bench_die(err);
            uint64_t w = bench_now_ns() - t0, c = thread_ns() - c0;
            if (i == nm - 1) {
                brt[nb] = w;
                bns[nb++] = c;
            } else {
                rt[n] = w;
                ns[n++] = c;
            }
        }
    }
    ad_session_close(s);
    qsort(rt, n, sizeof *rt, cmp_u64);
    char extra[160];
    snprintf(extra, sizeof extra, "; wall %.1f us median: the loop thread's cost before the writer",
             (double)rt[n / 2] / 1e3);
    report("sync", ns, n, extra);
    qsort(brt, nb, sizeof *brt, cmp_u64);
    snprintf(extra, sizeof extra, "; wall %.1f us median", (double)brt[nb / 2] / 1e3);
    report("sync 64 KiB", bns, nb, extra);
    n = nb = 0;

    /* sink: serialise and queue; the writer commits */
    uv_loop_t loop;
    uv_loop_init(&loop);
    s = open_store("sink", path);
    ad_events *e = ad_events_new();
    ad_sink *st = ad_store_sink_new(&loop, s, err, sizeof err);
    if (!e || !st)
        bench_die(err);
    ad_events_add(e, st);
    end = bench_now_ns() + (uint64_t)(budget * 1e9);
    while (bench_now_ns() < end && n + nm <= cap) {
        for (size_t i = 0; i < nm; i++) {
            uint64_t c0 = thread_ns(), t0 = bench_now_ns();
            ad_events_message(e, 1, m[i]);
            uint64_t c1 = thread_ns();
            while (ad_events_paused(e) && uv_run(&loop, UV_RUN_ONCE)) {
            }
            if (i == nm - 1) {
                bns[nb] = c1 - c0;
                brt[nb++] = bench_now_ns() - t0;
            } else {
                ns[n] = c1 - c0;
                rt[n++] = bench_now_ns() - t0;
            }
        }
    }
    ad_events_close_sink(e, st);
    ad_events_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    qsort(rt, n, sizeof *rt, cmp_u64);
    snprintf(extra, sizeof extra, "; commit round trip %.1f us median, loop free meanwhile",
             (double)rt[n / 2] / 1e3);
    report("sink", ns, n, extra);
    qsort(brt, nb, sizeof *brt, cmp_u64);
    snprintf(extra, sizeof extra, "; commit round trip %.1f us median", (double)brt[nb / 2] / 1e3);
    report("sink 64 KiB", bns, nb, extra);

    for (size_t i = 0; i < nm; i++)
        json_object_put(m[i]);
    free(ns);
    free(rt);
    free(bns);
    free(brt);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/*
 * bench.h -- shared helpers of the micro-benchmarks in bench/.
 *
 * Each bench/bench_*.c is its own program (see bench/README.md). They share
 * a monotonic clock, a time budget, a synthetic stream writer that produces
 * chunks in the exact shape OpenRouter sends (id, provider, model, object,
 * created, choices[{index, delta, finish_reason, native_finish_reason,
 * logprobs}]), and one line format for results:
 *
 *   bench <name>: <figure> <unit>   (<details>)
 *
 * Everything here is static inline so that a program that uses only part of
 * it compiles without unused-function warnings. Budgets come from the
 * environment variable BENCH_SECONDS (a float, default 0.4 s per figure) so
 * that `make bench` stays within a few seconds and a longer, steadier run is
 * one variable away.
 */
#ifndef AD_BENCH_H
#define AD_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds each measured figure may take (BENCH_SECONDS, default 0.4). */
static inline double bench_budget_s(void)
{
    const char *v = getenv("BENCH_SECONDS");
    double s = v ? strtod(v, NULL) : 0;
    return s > 0 && s < 3600 ? s : 0.4;
}

static inline void bench_die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

static inline void bench_put(ad_buf *b, const char *s)
{
    if (ad_buf_puts(b, s) != AD_OK)
        bench_die("out of memory");
}

/* Appends s as the inside of a JSON string (quotes, backslashes, controls). */
static inline void bench_put_json_str(ad_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;
        if (c == '"' || c == '\\')
            rc = ad_buf_printf(b, "\\%c", c);
        else if (c == '\n')
            rc = ad_buf_puts(b, "\\n");
        else if (c == '\t')
            rc = ad_buf_puts(b, "\\t");
        else if (c < 0x20)
            rc = ad_buf_printf(b, "\\u%04x", c);
        else
            rc = ad_buf_putc(b, (char)c);
        if (rc != AD_OK)
            bench_die("out of memory");
    }
}

#define BENCH_CHUNK_HEAD                                                                           \
    "data: {\"id\":\"gen-1758792034-4DFG24Xt5SzxfAVIPAsj\",\"provider\":\"Chutes\","             \
    "\"model\":\"moonshotai/kimi-k2-0905\",\"object\":\"chat.completion.chunk\","                 \
    "\"created\":1758792034,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
#define BENCH_CHUNK_TAIL                                                                           \
    "\"finish_reason\":null,\"native_finish_reason\":null,\"logprobs\":null}]"

/* One SSE event carrying a content delta; eol is "\n" or "\r\n". */
static inline void bench_text_event(ad_buf *b, const char *text, const char *eol)
{
    bench_put(b, BENCH_CHUNK_HEAD "\"content\":\"");
    bench_put_json_str(b, text);
    bench_put(b, "\"}," BENCH_CHUNK_TAIL "}");
    bench_put(b, eol);
    bench_put(b, eol);
}

/* One SSE event opening tool call `index` (id and name, empty arguments). */
static inline void bench_call_open_event(ad_buf *b, int index, const char *id, const char *name)
{
    if (ad_buf_printf(b,
                      BENCH_CHUNK_HEAD "\"content\":null,\"tool_calls\":[{\"id\":\"%s\",\"index\":%d,"
                                       "\"type\":\"function\",\"function\":{\"name\":\"%s\","
                                       "\"arguments\":\"\"}}]}," BENCH_CHUNK_TAIL "}\n\n",
                      id, index, name) != AD_OK)
        bench_die("out of memory");
}

/* One SSE event with an argument fragment of call `index` (id and name null,
 * as Kimi K2 through OpenRouter sends them). */
static inline void bench_call_args_event(ad_buf *b, int index, const char *frag)
{
    if (ad_buf_printf(b,
                      BENCH_CHUNK_HEAD "\"content\":null,\"tool_calls\":[{\"id\":null,\"index\":%d,"
                                       "\"type\":\"function\",\"function\":{\"name\":null,"
                                       "\"arguments\":\"",
                      index) != AD_OK)
        bench_die("out of memory");
    bench_put_json_str(b, frag);
    bench_put(b, "\"}}]}," BENCH_CHUNK_TAIL "}\n\n");
}

/* The end of a response: finish_reason, a usage chunk and [DONE]. */
static inline void bench_finish_events(ad_buf *b, const char *finish_reason)
{
    if (ad_buf_printf(b,
                      BENCH_CHUNK_HEAD "\"content\":\"\"},\"finish_reason\":\"%s\","
                                       "\"native_finish_reason\":\"%s\",\"logprobs\":null}]}\n\n",
                      finish_reason, finish_reason) != AD_OK)
        bench_die("out of memory");
    bench_put(b, BENCH_CHUNK_HEAD "\"content\":\"\"}," BENCH_CHUNK_TAIL
                                  ",\"usage\":{\"prompt_tokens\":197,\"completion_tokens\":100,"
                                  "\"total_tokens\":297,\"cost\":0.00015846}}\n\n"
                                  "data: [DONE]\n\n");
}

/* Words of the synthetic text: ASCII, 2-, 3- and 4-byte UTF-8 and escapes,
 * like the shared long_text scenario. */
static const char *const bench_words[] = {
    " Once",  " upon", " a",     " time", " café", " naïve", " 東京", " 🚀",
    " \"quoted\"", " back\\slash", "\ttab", " the", " quick", " brown", " fox.\n\n", " jumps",
};
#define BENCH_NWORDS (sizeof bench_words / sizeof bench_words[0])

static inline int bench_cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Batches: a figure is measured as many short batches (at least
 * BENCH_MIN_BATCHES, until the budget is spent); each batch gives a cost per
 * unit. On a shared machine other processes only ever add time, so the
 * least disturbed batch ("best") is the steadiest estimate of our own cost;
 * the median is printed beside it. */
#define BENCH_MAX_BATCHES 4096
#define BENCH_MIN_BATCHES 5

typedef struct bench_batches {
    double cost[BENCH_MAX_BATCHES]; /* ns per unit, one per batch */
    size_t n;
    uint64_t start;
    double budget_s;
} bench_batches;

static inline void bench_batches_start(bench_batches *b, double budget_s)
{
    b->n = 0;
    b->budget_s = budget_s;
    b->start = bench_now_ns();
}

/* Records a batch of `units` units that started at t0; returns 1 while more
 * batches are wanted. */
static inline int bench_batch_done(bench_batches *b, uint64_t t0, double units)
{
    uint64_t t1 = bench_now_ns();
    if (b->n < BENCH_MAX_BATCHES)
        b->cost[b->n++] = (double)(t1 - t0) / units;
    return b->n < BENCH_MIN_BATCHES ||
           ((double)(t1 - b->start) / 1e9 < b->budget_s && b->n < BENCH_MAX_BATCHES);
}

/* Sorts the costs; best and median in ns per unit. */
static inline void bench_batches_summary(bench_batches *b, double *best, double *median)
{
    qsort(b->cost, b->n, sizeof b->cost[0], bench_cmp_double);
    *best = b->cost[0];
    *median = b->cost[b->n / 2];
}

static inline int bench_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

#endif /* AD_BENCH_H */

/*
 * bench_sse.c -- SSE parser throughput.
 *
 * Builds a synthetic stream of 20,000 OpenRouter-shaped content chunks
 * (about 6 MB, the shape of the shared long_text scenario) in memory, then
 * feeds it to one ad_sse in 16 KiB reads, as libcurl hands over a fast
 * response, again and again until the time budget is spent. The callback
 * only counts, so the figure is the parser's own cost: line splitting,
 * field matching, buffering of events that straddle reads. Reported in
 * MB/s (10^6 bytes of SSE input per second) and events/s. The same stream
 * with CRLF line ends is measured too (Azure sends those).
 */
#include <stdio.h>

#include "bench.h"
#include "sse.h"

#define EVENTS 20000
#define READ_SIZE (16u << 10)

typedef struct counts {
    size_t events;
    size_t data_bytes;
} counts;

static int on_event(void *ud, const char *event, size_t event_len, const char *data,
                    size_t data_len)
{
    counts *c = ud;
    (void)event, (void)event_len, (void)data;
    c->events++;
    c->data_bytes += data_len;
    return 0;
}

static void build(ad_buf *b, const char *eol)
{
    for (size_t i = 0; i < EVENTS; i++)
        bench_text_event(b, bench_words[i % BENCH_NWORDS], eol);
}

static void run(const char *label, const ad_buf *in)
{
    counts c = {0, 0};
    ad_sse *p = ad_sse_new(0, on_event, &c);
    if (!p)
        bench_die("out of memory");
    double budget = bench_budget_s();
    uint64_t t0 = bench_now_ns(), t1;
    size_t passes = 0;
    do {
        ad_sse_reset(p);
        for (size_t off = 0; off < in->len; off += READ_SIZE) {
            size_t n = in->len - off < READ_SIZE ? in->len - off : READ_SIZE;
            if (ad_sse_feed(p, in->data + off, n) != 0)
                bench_die("ad_sse_feed failed");
        }
        if (ad_sse_finish(p) != 0)
            bench_die("ad_sse_finish failed");
        passes++;
        t1 = bench_now_ns();
    } while ((double)(t1 - t0) / 1e9 < budget);
    if (c.events != passes * EVENTS)
        bench_die("wrong number of events");
    double s = (double)(t1 - t0) / 1e9;
    double bytes = (double)in->len * (double)passes;
    printf("bench sse %-5s: %8.1f MB/s  %6.2f M events/s  (%zu B/event, %zu passes of %.1f MB "
           "in 16 KiB reads, %.2f s)\n",
           label, bytes / s / 1e6, (double)c.events / s / 1e6, in->len / EVENTS, passes,
           (double)in->len / 1e6, s);
    ad_sse_free(p);
}

int main(void)
{
    ad_buf lf = AD_BUF_INIT, crlf = AD_BUF_INIT;
    build(&lf, "\n");
    build(&crlf, "\r\n");
    run("LF", &lf);
    run("CRLF", &crlf);
    ad_buf_free(&lf);
    ad_buf_free(&crlf);
    return 0;
}

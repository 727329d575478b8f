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
#include "provider/sse.h"

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
    static bench_batches bb;
    bench_batches_start(&bb, bench_budget_s());
    size_t passes = 0;
    uint64_t t0;
    do {
        t0 = bench_now_ns();
        ad_sse_reset(p);
        for (size_t off = 0; off < in->len; off += READ_SIZE) {
            size_t n = in->len - off < READ_SIZE ? in->len - off : READ_SIZE;
            if (ad_sse_feed(p, in->data + off, n) != 0)
                bench_die("ad_sse_feed failed");
        }
        if (ad_sse_finish(p) != 0)
            bench_die("ad_sse_finish failed");
        passes++;
    } while (bench_batch_done(&bb, t0, (double)in->len));
    if (c.events != passes * EVENTS)
        bench_die("wrong number of events");
    double best, median; /* ns per byte */
    bench_batches_summary(&bb, &best, &median);
    printf("bench sse %-4s: %7.0f MB/s  %5.1f M events/s  (median %.0f MB/s; %zu B/event, "
           "best of %zu passes over %.1f MB in 16 KiB reads)\n",
           label, 1e3 / best, 1e3 / best / (double)(in->len / EVENTS), 1e3 / median,
           in->len / EVENTS, passes, (double)in->len / 1e6);
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

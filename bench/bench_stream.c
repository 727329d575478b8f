/*
 * bench_stream.c -- response assembler throughput: SSE parse plus
 * ad_stream_chunk(), the whole per-delta cost of the receive path short of
 * the network and the event sink.
 *
 * Two synthetic OpenRouter-shaped responses are built in memory:
 *   text  -- 5,000 content deltas (one word each, with UTF-8 and escapes),
 *            then finish_reason "stop", a usage chunk and [DONE];
 *   tools -- two parallel tool calls (Kimi K2 style: the first delta of a
 *            call carries id and name, the following ones id:null,
 *            name:null and an argument fragment of 2 or 3 bytes), 2,500
 *            fragments each, interleaved, then "tool_calls" and [DONE].
 * Each is fed in 16 KiB reads through one ad_sse into ONE ad_stream that is
 * reset between passes (as the agent reuses its own), until the time
 * budget is spent; ad_stream_end() closes every pass and the result is
 * checked (text length, argument bytes), so a broken build cannot post a
 * good figure. Reported in deltas/s and ns per delta.
 */
#include <stdio.h>

#include "bench.h"
#include "provider/sse.h"
#include "core/stream.h"

#define TEXT_DELTAS 5000
#define ARG_DELTAS_PER_CALL 2500
#define READ_SIZE (16u << 10)

typedef struct state {
    ad_stream *stream;
    size_t text_bytes;
    char err[256];
} state;

static void on_text(void *ud, const char *text, size_t len)
{
    state *st = ud;
    (void)text;
    st->text_bytes += len;
}

static int on_event(void *ud, const char *event, size_t event_len, const char *data,
                    size_t data_len)
{
    state *st = ud;
    (void)event, (void)event_len;
    if (data_len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        ad_stream_response(st->stream)->done = true;
        return 0;
    }
    return ad_stream_chunk(st->stream, data, data_len, st->err, sizeof st->err) == AD_OK ? 0 : 1;
}

/* Argument text of call k: a valid JSON object, long enough to be cut into
 * ARG_DELTAS_PER_CALL fragments of 1 to 4 bytes. */
static void build_args(ad_buf *b, int k)
{
    bench_put(b, "{\"values\":[");
    for (int i = 0; b->len < ARG_DELTAS_PER_CALL * 5 / 2; i++)
        if (ad_buf_printf(b, "%s%d", i ? "," : "", i * (k + 1)) != AD_OK)
            bench_die("out of memory");
    bench_put(b, "]}");
}

static void build_tools(ad_buf *out, size_t *arg_bytes)
{
    ad_buf args[2] = {AD_BUF_INIT, AD_BUF_INIT};
    size_t off[2] = {0, 0};
    *arg_bytes = 0;
    for (int k = 0; k < 2; k++) {
        build_args(&args[k], k);
        *arg_bytes += args[k].len;
    }
    bench_text_event(out, "Let me compute both.", "\n");
    bench_call_open_event(out, 0, "functions.sum:0", "sum");
    bench_call_open_event(out, 1, "functions.product:1", "product");
    for (size_t i = 0; i < ARG_DELTAS_PER_CALL; i++) {
        for (int k = 0; k < 2; k++) {
            size_t left = args[k].len - off[k];
            size_t rest = ARG_DELTAS_PER_CALL - i; /* fragments still to send */
            size_t n = (left + rest - 1) / rest; /* even split, 2 to 3 bytes */
            char frag[16];
            if (n == 0 || n >= sizeof frag)
                bench_die("argument split is wrong");
            memcpy(frag, args[k].data + off[k], n);
            frag[n] = '\0';
            off[k] += n;
            bench_call_args_event(out, k, frag);
        }
    }
    bench_finish_events(out, "tool_calls");
    for (int k = 0; k < 2; k++) {
        if (off[k] != args[k].len)
            bench_die("argument split is wrong");
        ad_buf_free(&args[k]);
    }
}

static size_t build_text(ad_buf *out)
{
    size_t bytes = 0;
    for (size_t i = 0; i < TEXT_DELTAS; i++) {
        bench_text_event(out, bench_words[i % BENCH_NWORDS], "\n");
        bytes += strlen(bench_words[i % BENCH_NWORDS]);
    }
    bench_finish_events(out, "stop");
    return bytes;
}

static void run(const char *label, const ad_buf *in, size_t want_text, size_t want_args,
                size_t want_calls, size_t delta_count)
{
    state st = {0};
    ad_stream_callbacks cbs = {on_text, NULL};
    st.stream = ad_stream_new(&cbs, &st);
    ad_sse *p = ad_sse_new(0, on_event, &st);
    if (!st.stream || !p)
        bench_die("out of memory");
    static bench_batches bb;
    bench_batches_start(&bb, bench_budget_s());
    uint64_t t0;
    do {
        t0 = bench_now_ns();
        ad_stream_reset(st.stream);
        ad_sse_reset(p);
        for (size_t off = 0; off < in->len; off += READ_SIZE) {
            size_t n = in->len - off < READ_SIZE ? in->len - off : READ_SIZE;
            if (ad_sse_feed(p, in->data + off, n) != 0) {
                fprintf(stderr, "bench stream: %s\n", st.err);
                exit(1);
            }
        }
        if (ad_sse_finish(p) != 0 || ad_stream_end(st.stream, st.err, sizeof st.err) != AD_OK)
            bench_die("response did not end cleanly");
        ad_response *r = ad_stream_response(st.stream);
        size_t args = 0;
        for (size_t i = 0; i < r->ncalls; i++)
            args += r->calls[i].args.len;
        if (r->text.len != want_text || r->ncalls != want_calls || args != want_args || !r->done)
            bench_die("assembled response is wrong");
    } while (bench_batch_done(&bb, t0, (double)delta_count));
    double best, median; /* ns per delta */
    bench_batches_summary(&bb, &best, &median);
    printf("bench stream %-5s: %5.2f M deltas/s  %5.0f ns/delta  %5.0f MB/s  (median %.0f "
           "ns/delta; best of %zu responses of %zu deltas, one reused ad_stream)\n",
           label, 1e3 / best, best, (double)in->len / (double)delta_count / best * 1e3, median,
           bb.n, delta_count);
    ad_sse_free(p);
    ad_stream_free(st.stream);
}

int main(void)
{
    ad_buf text = AD_BUF_INIT, tools = AD_BUF_INIT;
    size_t text_bytes = build_text(&text);
    size_t arg_bytes;
    build_tools(&tools, &arg_bytes);
    run("text", &text, text_bytes, 0, 0, TEXT_DELTAS);
    run("tools", &tools, strlen("Let me compute both."), arg_bytes, 2, 2 * ARG_DELTAS_PER_CALL);
    ad_buf_free(&text);
    ad_buf_free(&tools);
    return 0;
}

/*
 * bench_request.c -- request body build time against history length.
 *
 * Two costs, for histories of 50..800 messages:
 *  - full: serialising a whole conversation into a request body
 *    (ad_request_body over the message array: model, messages, tools,
 *    max_tokens, stream_options). This is what the first request of a
 *    loaded or resumed conversation costs; it grows linearly with the
 *    history, shown by a flat cost per message and per byte.
 *  - step: what each further step of a run costs. The agent serialises each
 *    message once, when it first goes out, and splices the accumulated text
 *    into later requests, so a step costs its new messages plus one copy of
 *    the text: measured as "append a five-message round, build the body".
 * The conversation is a repeating tool round of five messages: a user
 * prompt, an assistant message with two tool calls (ids, names, arguments),
 * two tool results and an assistant answer of about 400 bytes with UTF-8 and
 * escapes, after a system prompt; one tool (the bench "stamp" plugin) is
 * offered.
 *
 * One known bump: around 400 messages (a 76 KB body) json-c's output buffer
 * doubles to 128 KiB, glibc's mmap threshold, so each build maps and faults
 * in fresh pages until malloc's dynamic threshold adapts; with
 * MALLOC_MMAP_THRESHOLD_=100000000 that size is as linear as the others.
 */
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/agent.h"
#include "sinks/jsonl.h"
#include "sinks/text.h"
#include "bench.h"
#include "core/request.h"
#include "tools/plugin.h"

static const int sizes[] = {50, 100, 200, 400, 800};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static json_object *msg(const char *role, const char *content)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    if (content)
        json_object_object_add(m, "content", json_object_new_string(content));
    return m;
}

static json_object *call(const char *id, const char *name, const char *args)
{
    json_object *c = json_object_new_object(), *fn = json_object_new_object();
    json_object_object_add(c, "id", json_object_new_string(id));
    json_object_object_add(c, "type", json_object_new_string("function"));
    json_object_object_add(fn, "name", json_object_new_string(name));
    json_object_object_add(fn, "arguments", json_object_new_string(args));
    json_object_object_add(c, "function", fn);
    return c;
}

/* Appends message number i of the repeating five-message tool round. */
static void add_message(json_object *msgs, int i)
{
    char a[64], b[64], text[128];
    int round = i / 5;
    json_object *m = NULL;
    switch (i % 5) {
    case 0:
        snprintf(text, sizeof text, "Round %d: add %d and 3, and multiply %d by 7.", round, round,
                 round);
        m = msg("user", text);
        break;
    case 1: {
        m = msg("assistant", "");
        json_object *calls = json_object_new_array();
        snprintf(a, sizeof a, "functions.add:%d", 2 * round);
        snprintf(b, sizeof b, "functions.multiply:%d", 2 * round + 1);
        snprintf(text, sizeof text, "{\"a\": %d, \"b\": 3}", round);
        json_object_array_add(calls, call(a, "add", text));
        snprintf(text, sizeof text, "{\"a\": %d, \"b\": 7}", round);
        json_object_array_add(calls, call(b, "multiply", text));
        json_object_object_add(m, "tool_calls", calls);
        break;
    }
    case 2:
    case 3:
        snprintf(a, sizeof a, "functions.%s:%d", i % 5 == 2 ? "add" : "multiply",
                 2 * round + (i % 5 == 3));
        snprintf(text, sizeof text, "%d", i % 5 == 2 ? round + 3 : round * 7);
        m = msg("tool", text);
        json_object_object_add(m, "tool_call_id", json_object_new_string(a));
        break;
    default: {
        ad_buf t = AD_BUF_INIT;
        while (t.len < 400)
            bench_put(&t, bench_words[(size_t)(t.len + (size_t)round) % BENCH_NWORDS]);
        m = msg("assistant", t.data);
        ad_buf_free(&t);
        break;
    }
    }
    if (!m || json_object_array_add(msgs, m) != 0)
        bench_die("out of memory");
}

/* Serialises the whole history again and again (ad_request_body); prints
 * the line, returns us per message. */
static double measure_full(const ad_config *cfg, json_object *msgs, json_object *tools,
                           int nmsgs, const char *note)
{
    static bench_batches bb;
    size_t len = 0, builds = 0;
    bench_batches_start(&bb, bench_budget_s() / 3);
    uint64_t t0;
    do {
        t0 = bench_now_ns();
        for (int r = 0; r < 20; r++) {
            char *body = ad_request_body(cfg, cfg->model, msgs, tools, &len);
            if (!body)
                bench_die("out of memory");
            free(body);
        }
        builds += 20;
    } while (bench_batch_done(&bb, t0, 20));
    double best, median; /* ns per build */
    bench_batches_summary(&bb, &best, &median);
    double us = best / 1e3;
    printf("bench request full %3d msgs: %6.1f us/build  %5.3f us/message  %4.2f ns/byte  "
           "(median %.1f us; %zu B body, best batch of 20 of %zu builds)%s\n",
           nmsgs, us, us / nmsgs, us * 1e3 / (double)len, median / 1e3, len, builds, note);
    return us / nmsgs;
}

/* One step at a history of about nmsgs: append a five-message round and
 * build the body through the agent, 20 times; prints µs per step. The
 * agent's conversation only grows, so each call adds 100 messages. */
static void measure_step(ad_agent *agent, json_object *msgs, int *have)
{
    int start = *have;
    size_t len = 0;
    char *body = ad_agent_request_body(agent, &len); /* catch up first */
    free(body);
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < 20; r++) {
        uint64_t t0 = bench_now_ns();
        for (int k = 0; k < 5; k++)
            add_message(msgs, (*have)++ - 1);
        body = ad_agent_request_body(agent, &len);
        uint64_t dt = bench_now_ns() - t0;
        if (!body)
            bench_die("out of memory");
        free(body);
        best = dt < best ? dt : best;
    }
    printf("bench request step %3d msgs: %6.1f us/step (append 5 messages + build; best of 20, "
           "history %d..%d msgs, %zu B body)\n",
           start, (double)best / 1e3, start, *have, len);
}

int main(void)
{
    const char *dir = getenv("BENCH_PLUGIN_DIR");
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/stamp.so", dir && dir[0] ? dir : "build/bench/plugins");
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup("http://127.0.0.1:9/v1");
    cfg.model = ad_strdup("moonshotai/kimi-k2-0905");
    cfg.system_prompt = ad_strdup("You are a helpful assistant. Use the tools when they help.");
    cfg.max_tokens = 4000;
    uv_loop_t loop;
    FILE *devnull = fopen("/dev/null", "w");
    if (!devnull || uv_loop_init(&loop) != 0)
        bench_die("setup failed");
    ad_tool_host *tools = ad_tool_host_new(&loop);
    if (!tools || ad_plugin_load_file(tools, path, NULL, NULL, err, sizeof err) != AD_OK) {
        fprintf(stderr, "bench request: %s\n", err);
        return 1;
    }
    setvbuf(devnull, NULL, _IOFBF, 64u << 10); /* as main.c does off a terminal */
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_text_sink_new(devnull, devnull, false));
    ad_agent_opts o = {&loop, NULL, &cfg, tools, ev};
    ad_agent *agent = ad_agent_new(&o);
    if (!ev || !agent)
        bench_die("out of memory");

    /* The full builds run over a history of our own; the step builds over
     * the agent's conversation. */
    json_object *hist = json_object_new_array();
    json_object *tools_json = ad_tool_host_openai_json(tools);
    json_object_array_add(hist, msg("system", cfg.system_prompt));
    int have = 1; /* the system prompt */
    double per_msg[NSIZES];
    for (size_t k = 0; k < NSIZES; k++) {
        while (have < sizes[k])
            add_message(hist, have++ - 1);
        per_msg[k] = measure_full(&cfg, hist, tools_json, sizes[k], "");
    }
    double lo = per_msg[0], hi = per_msg[0];
    for (size_t k = 1; k < NSIZES; k++) {
        lo = per_msg[k] < lo ? per_msg[k] : lo;
        hi = per_msg[k] > hi ? per_msg[k] : hi;
    }
    printf("bench request linearity: us/message %.3f to %.3f over %d..%d msgs, max/min %.2f "
           "(1.00 = linear)\n",
           lo, hi, sizes[0], sizes[NSIZES - 1], hi / lo);
#ifdef __GLIBC__
    /* The same largest history with malloc never mapping fresh pages for the
     * body: what is left is json-c's own serialisation cost. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    double pinned = measure_full(&cfg, hist, tools_json, sizes[NSIZES - 1],
                                 " (mmap threshold 64 MiB)");
    printf("bench request linearity without the allocator's mmap: us/message at %d msgs / at %d "
           "msgs = %.2f\n",
           sizes[NSIZES - 1], sizes[0], pinned / per_msg[0]);
#endif
    json_object_put(hist);
    json_object_put(tools_json);

    json_object *msgs = ad_agent_messages(agent);
    int n = 1;
    for (size_t k = 0; k < NSIZES; k++) {
        while (n < sizes[k])
            add_message(msgs, n++ - 1);
        measure_step(agent, msgs, &n);
    }

    ad_agent_free(agent);
    ad_tool_host_free(tools);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    ad_events_free(ev);
    ad_config_free(&cfg);
    fclose(devnull);
    return 0;
}

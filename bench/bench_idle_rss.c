/*
 * bench_idle_rss.c -- the memory an idle conversation costs in one process.
 *
 * One process holds what a server holds once: a loop, the curl transport, a
 * tool host with the add and multiply plugins, the configuration. Then
 * conversations are added one at a time, each an ad_agent with its own
 * events hub and a JSON Lines sink, and each runs one real turn against a
 * loopback provider in the same process ("What is 2 + 3?" answered "ok"),
 * so that it holds what a conversation holds between turns: its messages,
 * the cached history text, the stream assembler, the step's buffers. Then
 * it sits idle. The resident set (VmRSS after malloc_trim) is read with 0,
 * 1, 100 and 1000 such conversations alive; the figure per conversation is
 * the growth above 0 divided by the count.
 *
 * Every turn must answer ("ok"), or the run fails instead of printing.
 */
#include <curl/curl.h>
#include <stdbool.h>

#include "core/agent.h"
#include "loopback.h"
#include "provider/curl.h"
#include "sinks/jsonl.h"
#include "tools/plugin.h"

typedef struct idle_conv {
    ad_events *ev;
    ad_agent *agent;
} idle_conv;

static long rss_now(void)
{
    malloc_trim(0);
    return loopback_status_kib("VmRSS");
}

int main(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", loopback_start());
    const char *pdir = getenv("BENCH_PLUGINS") ? getenv("BENCH_PLUGINS") : "plugins";
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("m");
    cfg.system_prompt = ad_strdup("You are a helpful assistant. Use the tools for arithmetic.");
    cfg.max_retries = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        bench_die("curl_global_init failed");
    uv_loop_t loop;
    FILE *null = fopen("/dev/null", "w");
    if (!null || uv_loop_init(&loop) != 0)
        bench_die("setup failed");
    ad_transport *http = ad_curl_new(&loop);
    ad_tool_host *tools = ad_tool_host_new(&loop);
    if (!http || !tools)
        bench_die("setup failed");
    static const char *const plugins[] = {"add", "multiply"};
    char err[512];
    for (size_t i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.so", pdir, plugins[i]);
        if (ad_plugin_load_file(tools, path, NULL, NULL, err, sizeof err) != 0)
            bench_die(err);
    }

    enum { MAX = 1000 };
    static const int marks[] = {1, 100, MAX};
    static idle_conv convs[MAX];
    long base = rss_now(), rss[3];
    int n = 0;
    for (size_t m = 0; m < sizeof marks / sizeof *marks; m++) {
        for (; n < marks[m]; n++) {
            idle_conv *c = &convs[n];
            c->ev = ad_events_new();
            ad_sink *sink = c->ev ? ad_jsonl_sink_new(null, null) : NULL;
            if (!sink)
                bench_die("out of memory");
            ad_events_add(c->ev, sink);
            ad_agent_opts o = {&loop, http, &cfg, tools, c->ev};
            c->agent = ad_agent_new(&o);
            if (!c->agent)
                bench_die("out of memory");
            loopback_turn(c->agent, &loop, "What is 2 + 3?");
            json_object *msgs = ad_agent_messages(c->agent);
            json_object *last = json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1);
            json_object *content;
            if (!json_object_object_get_ex(last, "content", &content) ||
                strcmp(json_object_get_string(content), "ok") != 0)
                bench_die("a turn did not answer");
        }
        rss[m] = rss_now();
    }
    printf("bench idle_rss base: %ld KiB resident with no conversation (loop, transport, "
           "tool host with add and multiply)\n",
           base);
    for (size_t m = 0; m < 3; m++)
        printf("bench idle_rss %4d: %7.1f KiB per conversation (%ld KiB resident, +%ld KiB)\n",
               marks[m], (double)(rss[m] - base) / marks[m], rss[m], rss[m] - base);

    for (int i = 0; i < n; i++) {
        ad_agent_free(convs[i].agent);
        ad_events_free(convs[i].ev);
    }
    ad_transport_close(http);
    ad_tool_host_free(tools);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    fclose(null);
    ad_config_free(&cfg);
    curl_global_cleanup();
    return 0;
}

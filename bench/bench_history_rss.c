/*
 * bench_history_rss.c -- the memory one step costs in a long conversation.
 *
 * An agent is given a conversation of HISTORY_MESSAGES messages (tool
 * results of MESSAGE_BYTES each, about 24 MiB of JSON in all), then runs
 * two turns against a loopback server that reads each request to its end
 * without keeping it (so the server costs this process no memory) and
 * answers with a short streamed text. Figures, from the kernel's peak
 * resident set (VmHWM, reset through /proc/self/clear_refs before each
 * measured turn):
 *   first turn:  peak above the loaded conversation (serialises the whole
 *                history once, then sends it)
 *   later turn:  peak above the state before the turn (the history text is
 *                cached; the step builds and sends one request body)
 *   held:        resident set after the second turn (malloc_trim'd) above
 *                the loaded conversation: what stays between turns
 * all also as a multiple of the body size: how many copies of the history
 * a step holds. The run checks that both turns answered and
 * that the server received bodies of the expected size.
 */
#include <curl/curl.h>
#include <stdbool.h>

#include "core/agent.h"
#include "provider/curl.h"
#include "sinks/jsonl.h"
#include "sinks/text.h"
#include "loopback.h"

#define HISTORY_MESSAGES 400
#define MESSAGE_BYTES (60u << 10)

/* Starts a new peak at the current resident set. */
static void reset_peak(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0 || fclose(f) != 0)
        bench_die("cannot reset the peak RSS (/proc/self/clear_refs)");
}

static json_object *history(void)
{
    char *text = malloc(MESSAGE_BYTES + 1);
    if (!text)
        bench_die("out of memory");
    for (size_t i = 0; i < MESSAGE_BYTES; i++)
        text[i] = (char)('a' + i % 26);
    text[MESSAGE_BYTES] = '\0';
    json_object *msgs = json_object_new_array();
    for (int i = 0; i < HISTORY_MESSAGES; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(i % 2 ? "assistant" : "user"));
        json_object_object_add(m, "content", json_object_new_string(text));
        json_object_array_add(msgs, m);
    }
    free(text);
    return msgs;
}

int main(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", loopback_start());
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("m");
    cfg.max_retries = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        bench_die("curl_global_init failed");
    uv_loop_t loop;
    FILE *null = fopen("/dev/null", "w");
    if (!null || uv_loop_init(&loop) != 0)
        bench_die("setup failed");
    setvbuf(null, NULL, _IOFBF, 64u << 10); /* as main.c does off a terminal */
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_text_sink_new(null, null, false));
    ad_transport *http = ad_curl_new(&loop);
    ad_agent_opts o = {&loop, http, &cfg, NULL, ev};
    ad_agent *agent = ev && http ? ad_agent_new(&o) : NULL;
    if (!agent)
        bench_die("setup failed");
    json_object *msgs = history();
    if (ad_agent_load_messages(agent, msgs) != AD_OK)
        bench_die("cannot load the conversation");
    json_object_put(msgs);

    reset_peak();
    atomic_store(&loopback_last_body, 0);
    long loaded = loopback_status_kib("VmRSS");
    loopback_turn(agent, &loop, "first");
    long first = loopback_status_kib("VmHWM") - loaded;
    size_t body1 = atomic_load(&loopback_last_body);

    reset_peak();
    atomic_store(&loopback_last_body, 0);
    long before = loopback_status_kib("VmRSS");
    loopback_turn(agent, &loop, "second");
    long later = loopback_status_kib("VmHWM") - before;
    size_t body2 = atomic_load(&loopback_last_body);
    malloc_trim(0);
    long held = loopback_status_kib("VmRSS") - loaded;

    size_t want = (size_t)HISTORY_MESSAGES * MESSAGE_BYTES;
    if (body1 < want || body2 < body1)
        bench_die("the server did not receive the whole history");
    double mib = (double)body2 / (1 << 20);
    printf("bench history_rss first: %7.1f MiB peak above the loaded conversation "
           "(%.2f x the %.1f MiB body; %d messages)\n",
           first / 1024.0, first / 1024.0 / mib, mib, HISTORY_MESSAGES);
    printf("bench history_rss later: %7.1f MiB peak above the state before the turn "
           "(%.2f x the body)\n",
           later / 1024.0, later / 1024.0 / mib);
    printf("bench history_rss held:  %7.1f MiB above the loaded conversation between turns "
           "(%.2f x the body)\n",
           held / 1024.0, held / 1024.0 / mib);

    ad_agent_free(agent);
    ad_transport_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    ad_events_free(ev);
    fclose(null);
    ad_config_free(&cfg);
    curl_global_cleanup();
    return 0;
}

/*
 * test_soak.c -- many conversations in one process: memory stays flat.
 *
 * Starts the mock provider (tests/mock/server.py) with a cycling script of
 * two responses, the seed conversation: two parallel tool calls (add and
 * multiply, the real plugins), then an answer. Then runs N conversations
 * one after the other on one loop, one transport for all of them and a fresh
 * ad_agent for each (created, run, freed), and reads the resident set size
 * at N/10, N/2 and N. After the first tenth (allocator and connection
 * warm-up) RSS may grow by less than GROWTH_KIB, or the test fails.
 *
 * N is 300 in `make test` (AGENTD_SOAK_N overrides it: the figure is
 * AGENTD_SOAK_N=1000). Under valgrind (found through LD_PRELOAD) or a
 * sanitizer build (AGENTD_SANITIZED, ASan's quarantine holds freed memory)
 * it runs 30 conversations and checks only that each of them succeeds.
 *
 * a_long_conversation_is_held_once_per_step: a conversation of about 24 MiB
 * (400 messages) and two turns against the mock. The turn after the first
 * (the history text is cached then) may raise the peak resident set (VmHWM,
 * reset through /proc/self/clear_refs) by at most 1.5 times the request
 * body, and what stays between turns is at most 1.5 times the body too:
 * the body is built once per step, sent without a copy and dropped when the
 * run ends (bench/bench_history_rss prints the figures). Skipped where
 * memory is not the program's own (valgrind, sanitizers).
 */
#include <curl/curl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../harness.h"
#include "../mock.h"
#include "core/agent.h"
#include "provider/curl.h"
#include "sinks/jsonl.h"
#include "sinks/text.h"
#include "base/buf.h"
#include "tools/plugin.h"

#define GROWTH_KIB 512

static const char script_json[] =
    "{\"cycle\": true, \"responses\": ["
    "{\"status\": 200, \"sse\": ["
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"role\":\"assistant\",\"content\":\"I'll add and multiply.\"},\"finish_reason\":null}]},"
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"tool_calls\":[{\"index\":0,\"id\":\"functions.add:0\",\"type\":\"function\",\"function\":"
    "{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 2, \"}}]},\"finish_reason\":null}]},"
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"b\\\": 3}\"}}]},"
    "\"finish_reason\":null}]},"
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"tool_calls\":[{\"index\":1,\"id\":\"functions.multiply:1\",\"type\":\"function\","
    "\"function\":{\"name\":\"multiply\",\"arguments\":\"{\\\"a\\\": 2, \\\"b\\\": 3}\"}}]},"
    "\"finish_reason\":null}]},"
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"tool_calls\"}]},"
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
    "{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}},"
    "\"[DONE]\"]},"
    "{\"status\": 200, \"sse\": ["
    "{\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"role\":\"assistant\",\"content\":\"2 + 3 = 5 and \"},\"finish_reason\":null}]},"
    "{\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\"2 x 3 = 6.\"},\"finish_reason\":\"stop\"}]},"
    "\"[DONE]\"]}]}";

typedef struct soak {
    uv_loop_t loop;
    ad_transport *http;
    ad_config cfg;
    ad_tool_host *tools;
    ad_events *ev;
    ad_agent *agent;
    int target, done, ok;
    long rss_kib[3];
    int marks[3];
} soak;

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void start_one(soak *s);

static void on_done(void *ud, int status)
{
    soak *s = ud;
    s->done++;
    if (status == AD_RUN_OK)
        s->ok++;
    /* The agent is freed outside its own callback, on the next turn. */
    for (int i = 0; i < 3; i++)
        if (s->done == s->marks[i])
            s->rss_kib[i] = rss_kib();
}

static int started;

static void on_check(uv_check_t *h)
{
    soak *s = h->data;
    if (s->agent && s->done == started) {
        ad_agent_free(s->agent);
        s->agent = NULL;
        if (started < s->target)
            start_one(s);
        else
            uv_close((uv_handle_t *)h, NULL);
    }
}

static void start_one(soak *s)
{
    ad_agent_opts o = {&s->loop, s->http, &s->cfg, s->tools, s->ev};
    s->agent = ad_agent_new(&o);
    if (!s->agent) {
        s->target = started; /* stop */
        return;
    }
    started++;
    ad_agent_run(s->agent, "Add and multiply the number 2 and 3", on_done, s);
}

static int soak_n(void)
{
    const char *pre = getenv("LD_PRELOAD");
    if ((pre && strstr(pre, "vgpreload")) || getenv("AGENTD_SANITIZED"))
        return 30;
    const char *n = getenv("AGENTD_SOAK_N");
    return n && atoi(n) >= 10 ? atoi(n) : 300;
}

TEST(conversations_in_one_process_keep_memory_flat)
{
    const char *dir = getenv("AGENTD_DIR") ? getenv("AGENTD_DIR") : ".";
    mock_proc m;
    int started_mock = mock_start(&m, script_json);
    CHECK_EQ(started_mock, 0);
    if (started_mock != 0)
        return;
    int port = m.port;

    static soak s;
    memset(&s, 0, sizeof s);
    s.target = soak_n();
    s.marks[0] = s.target / 10;
    s.marks[1] = s.target / 2;
    s.marks[2] = s.target;
    ad_config_init(&s.cfg);
    ad_buf url = AD_BUF_INIT;
    ad_buf_printf(&url, "http://127.0.0.1:%d/v1", port);
    s.cfg.base_url = ad_buf_steal(&url);
    s.cfg.model = ad_strdup("test-model");
    s.cfg.max_retries = 0;
    s.cfg.timeout_s = 10;
    s.cfg.idle_timeout_s = 5;
    char err[512];
    FILE *devnull = fopen("/dev/null", "w");
    s.ev = ad_events_new();
    ad_events_add(s.ev, ad_jsonl_sink_new(devnull, devnull));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&s.loop);
    s.tools = ad_tool_host_new(&s.loop);
    static const char *const plugins[] = {"add", "multiply"};
    for (size_t i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/plugins/%s.so", dir, plugins[i]);
        int rc = ad_plugin_load_file(s.tools, path, NULL, NULL, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "  %s\n", err);
        CHECK_EQ(rc, 0);
    }
    s.http = ad_curl_new(&s.loop);
    uv_check_t check;
    uv_check_init(&s.loop, &check);
    check.data = &s;
    uv_check_start(&check, on_check);
    started = 0;
    start_one(&s);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    ad_transport_close(s.http);
    ad_tool_host_free(s.tools);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&s.loop), 0);
    curl_global_cleanup();

    printf("soak: %d conversations, %d ok\n", s.done, s.ok);
    for (int i = 0; i < 3; i++)
        printf("soak: RSS after %d conversations: %ld KiB\n", s.marks[i], s.rss_kib[i]);
    CHECK_EQ(s.done, s.target);
    CHECK_EQ(s.ok, s.target);
    if (s.target >= 100) {
        long growth = s.rss_kib[2] - s.rss_kib[0];
        printf("soak: growth from %d to %d: %ld KiB (bound %d KiB)\n", s.marks[0], s.marks[2],
               growth, GROWTH_KIB);
        CHECK(growth < GROWTH_KIB);
    }

    ad_events_free(s.ev);
    fclose(devnull);
    ad_config_free(&s.cfg);
    mock_stop(&m);
}

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* A new peak (VmHWM) from the current resident set on. */
static int reset_peak(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int rc = fputs("5", f) < 0;
    return fclose(f) != 0 || rc ? -1 : 0;
}

typedef struct turn_state {
    uv_loop_t *loop;
    int status;
    bool done;
} turn_state;

static void on_turn_done(void *ud, int status)
{
    turn_state *t = ud;
    t->status = status;
    t->done = true;
    uv_stop(t->loop);
}

static int turn(ad_agent *agent, uv_loop_t *loop, const char *prompt)
{
    turn_state t = {loop, -1, false};
    if (ad_agent_run(agent, prompt, on_turn_done, &t) != AD_OK)
        return -1;
    while (!t.done)
        uv_run(loop, UV_RUN_DEFAULT);
    return t.status;
}

TEST(a_long_conversation_is_held_once_per_step)
{
    const char *pre = getenv("LD_PRELOAD");
    if ((pre && strstr(pre, "vgpreload")) || getenv("AGENTD_SANITIZED")) {
        printf("memory: skipped (valgrind or a sanitizer owns the heap)\n");
        return;
    }
    static const char answer[] =
        "{\"cycle\": true, \"responses\": [{\"status\": 200, \"sse\": ["
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]},"
        "\"[DONE]\"]}]}";
    mock_proc m;
    int started_mock = mock_start(&m, answer);
    CHECK_EQ(started_mock, 0);
    if (started_mock != 0)
        return;
    ad_config cfg;
    ad_config_init(&cfg);
    ad_buf url = AD_BUF_INIT;
    ad_buf_printf(&url, "http://127.0.0.1:%d/v1", m.port);
    cfg.base_url = ad_buf_steal(&url);
    cfg.model = ad_strdup("test-model");
    cfg.max_retries = 0;
    FILE *devnull = fopen("/dev/null", "w");
    setvbuf(devnull, NULL, _IOFBF, 64u << 10); /* as main.c does off a terminal */
    ad_events *ev = ad_events_new();
    ad_events_add(ev, ad_text_sink_new(devnull, devnull, false));
    uv_loop_t loop;
    uv_loop_init(&loop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ad_transport *http = ad_curl_new(&loop);
    ad_agent_opts o = {&loop, http, &cfg, NULL, ev};
    ad_agent *agent = ad_agent_new(&o);
    CHECK(agent != NULL);

    enum { MESSAGES = 400, BYTES = 60 << 10 };
    char *text = malloc(BYTES + 1);
    for (size_t i = 0; i < BYTES; i++)
        text[i] = (char)('a' + i % 26);
    text[BYTES] = '\0';
    json_object *msgs = json_object_new_array();
    for (int i = 0; i < MESSAGES; i++) {
        json_object *msg = json_object_new_object();
        json_object_object_add(msg, "role", json_object_new_string(i % 2 ? "assistant" : "user"));
        json_object_object_add(msg, "content", json_object_new_string(text));
        json_object_array_add(msgs, msg);
    }
    free(text);
    CHECK_EQ(agent ? ad_agent_load_messages(agent, msgs) : -1, AD_OK);
    json_object_put(msgs);
    size_t body_len = 0;
    char *body = agent ? ad_agent_request_body(agent, &body_len) : NULL;
    free(body);
    long body_kib = (long)(body_len >> 10);

    CHECK_EQ(reset_peak(), 0);
    long loaded = status_kib("VmRSS");
    CHECK_EQ(agent ? turn(agent, &loop, "first") : -1, AD_RUN_OK);
    CHECK_EQ(reset_peak(), 0);
    long before = status_kib("VmRSS");
    CHECK_EQ(agent ? turn(agent, &loop, "second") : -1, AD_RUN_OK);
    long step = status_kib("VmHWM") - before;
    malloc_trim(0);
    long held = status_kib("VmRSS") - loaded;
    printf("memory: body %ld KiB; a later step's peak +%ld KiB (%.2f x), held between turns "
           "+%ld KiB (%.2f x)\n",
           body_kib, step, (double)step / (double)body_kib, held,
           (double)held / (double)body_kib);
    CHECK(body_kib > 20 * 1024);
    CHECK(step < body_kib * 3 / 2);
    CHECK(held < body_kib * 3 / 2);

    ad_agent_free(agent);
    ad_transport_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    ad_events_free(ev);
    fclose(devnull);
    ad_config_free(&cfg);
    mock_stop(&m);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    RUN(conversations_in_one_process_keep_memory_flat);
    RUN(a_long_conversation_is_held_once_per_step);
    return harness_report("test_soak");
}

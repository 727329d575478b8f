/*
 * test_many.c -- 200 conversations at once in one process, on one loop.
 *
 * One mock provider (tests/mock/server.py, a route per conversation keyed by
 * its first user message), one loop, one transport, one tool host with the
 * real add and multiply plugins and the test plugins nap (slow) and hang
 * (stuck), and 200 agents, each with its own conversation and its own
 * events hub and sink, all started before the loop runs. Each conversation
 * is asked to do two things in parallel and then answers "done KEY":
 *
 *   most         add(i, 1) and add(i, 2): the same provider call ids
 *                (functions.add:0, functions.add:1) in every conversation
 *   every 20th   add(i, 1) and nap(200 ms): a slow tool
 *   every 9th    the same as most, streamed in 7-byte writes 5 ms apart
 *   number 7     add(i, 1) and hang(1 s) with a 0.3 s tool timeout: the
 *                hang call times out, the add still counts
 *   number 13    cancelled mid-stream: the provider sends the first text
 *                delta and then nothing; the test cancels that run when the
 *                delta arrives (a client that went away)
 *   number 42    add(i, 1) and multiply(i, 3) where multiply needs
 *                confirmation: the sink gets the approval request and
 *                answers it on a later loop turn (ad_agent_approve)
 *
 * Then every request each conversation sent is checked from the mock's log:
 * how many, the messages in order (the user's prompt, the assistant's calls
 * with the provider's ids byte-exact, one tool message per call in call
 * order with that conversation's own results), and every sink's final
 * answer and status. A result crossing over between conversations, a
 * missing or duplicated tool message, or a run that never ends fails it.
 *
 * AGENTD_MANY_N sets the number of conversations (at least 50: the special
 * ones are 7, 13 and 42).
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "../mock.h"
#include "base/buf.h"
#include "core/agent.h"
#include "provider/curl.h"
#include "tools/plugin.h"

enum { SLOW_TOOL_EVERY = 20, SLOW_STREAM_EVERY = 9, TIMED_OUT = 7, CANCELLED = 13, APPROVED = 42 };

typedef struct conv conv;

typedef struct many {
    uv_loop_t loop;
    ad_transport *http;
    ad_config cfg;
    ad_tool_host *tools;
    conv *convs;
    int n, ended;
    bool hung;
} many;

struct conv {
    ad_sink sink; /* first: the events hub hands this back */
    many *m;
    int i;
    char key[24];
    ad_events *ev;
    ad_agent *agent;
    int status; /* -1 until the run ended */
    int ends;   /* AD_EV_END events seen */
    int texts;  /* AD_EV_TEXT events seen */
    int approvals;
    char *answer; /* the FINISH event's text */
    char *approval_id;
    uv_timer_t later; /* answers the approval, or cancels, on a later turn */
};

/* ---- the script ----------------------------------------------------------- */

static json_object *chunk(json_object *delta, const char *finish)
{
    json_object *choice = json_object_new_object();
    json_object_object_add(choice, "index", json_object_new_int(0));
    json_object_object_add(choice, "delta", delta);
    json_object_object_add(choice, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object *choices = json_object_new_array();
    json_object_array_add(choices, choice);
    json_object *c = json_object_new_object();
    json_object_object_add(c, "object", json_object_new_string("chat.completion.chunk"));
    json_object_object_add(c, "choices", choices);
    return c;
}

static json_object *text_delta(const char *text)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "content", json_object_new_string(text));
    return d;
}

/* A delta with one tool-call entry; id and name NULL for a continuation. */
static json_object *call_delta(int index, const char *id, const char *name, const char *args)
{
    json_object *fn = json_object_new_object();
    if (name)
        json_object_object_add(fn, "name", json_object_new_string(name));
    json_object_object_add(fn, "arguments", json_object_new_string(args));
    json_object *tc = json_object_new_object();
    json_object_object_add(tc, "index", json_object_new_int(index));
    if (id) {
        json_object_object_add(tc, "id", json_object_new_string(id));
        json_object_object_add(tc, "type", json_object_new_string("function"));
    }
    json_object_object_add(tc, "function", fn);
    json_object *tcs = json_object_new_array();
    json_object_array_add(tcs, tc);
    json_object *d = json_object_new_object();
    json_object_object_add(d, "tool_calls", tcs);
    return d;
}

/* What conversation i's two calls are: names, arguments, expected results. */
typedef struct plan {
    const char *name[2];
    char args[2][64];
    char result[2][64]; /* exact content; "" = contains "timed out" */
} plan;

static void plan_of(int i, plan *p)
{
    memset(p, 0, sizeof *p);
    p->name[0] = "add";
    snprintf(p->args[0], sizeof p->args[0], "{\"a\": %d, \"b\": 1}", i);
    snprintf(p->result[0], sizeof p->result[0], "%d", i + 1);
    if (i == TIMED_OUT) {
        p->name[1] = "hang";
        snprintf(p->args[1], sizeof p->args[1], "{\"s\": 1}");
        p->result[1][0] = '\0';
    } else if (i == APPROVED) {
        p->name[1] = "multiply";
        snprintf(p->args[1], sizeof p->args[1], "{\"a\": %d, \"b\": 3}", i);
        snprintf(p->result[1], sizeof p->result[1], "%d", i * 3);
    } else if (i % SLOW_TOOL_EVERY == 0) {
        p->name[1] = "nap";
        snprintf(p->args[1], sizeof p->args[1], "{\"ms\": 200}");
        snprintf(p->result[1], sizeof p->result[1], "slept 200 ms");
    } else {
        p->name[1] = "add";
        snprintf(p->args[1], sizeof p->args[1], "{\"a\": %d, \"b\": 2}", i);
        snprintf(p->result[1], sizeof p->result[1], "%d", i + 2);
    }
}

static const char *const call_ids[2] = {"functions.add:0", "functions.add:1"};

static json_object *route_of(int i)
{
    json_object *list = json_object_new_array();
    char key[24];
    snprintf(key, sizeof key, "conv-%03d", i);

    json_object *first = json_object_new_object();
    json_object *sse = json_object_new_array();
    json_object_object_add(first, "status", json_object_new_int(200));
    if (i == CANCELLED) {
        /* One delta, then the provider says nothing more. */
        static const char raw[] = "data: {\"object\":\"chat.completion.chunk\",\"choices\":"
                                  "[{\"index\":0,\"delta\":{\"content\":\"Let me think\"},"
                                  "\"finish_reason\":null}]}\n\n";
        json_object *r = json_object_new_object();
        json_object_object_add(r, "raw", json_object_new_string(raw));
        json_object_array_add(sse, r);
        json_object_array_add(sse, chunk(text_delta(" about it."), "stop"));
        json_object_array_add(sse, json_object_new_string("[DONE]"));
        json_object_object_add(first, "hang_after", json_object_new_int((int)strlen(raw)));
    } else {
        plan p;
        plan_of(i, &p);
        char text[64];
        snprintf(text, sizeof text, "Working on %s.", key);
        json_object_array_add(sse, chunk(text_delta(text), NULL));
        /* The first call's arguments arrive in two pieces, the second call
         * in between: deltas are matched by id, then index. */
        size_t half = strlen(p.args[0]) / 2;
        char head[64];
        snprintf(head, sizeof head, "%.*s", (int)half, p.args[0]);
        json_object_array_add(sse, chunk(call_delta(0, call_ids[0], p.name[0], head), NULL));
        json_object_array_add(sse, chunk(call_delta(1, call_ids[1], p.name[1], p.args[1]), NULL));
        json_object_array_add(sse,
                              chunk(call_delta(0, NULL, NULL, p.args[0] + half), NULL));
        json_object_array_add(sse, chunk(json_object_new_object(), "tool_calls"));
        json_object_array_add(sse, json_object_new_string("[DONE]"));
        if (i % SLOW_STREAM_EVERY == 0) {
            json_object_object_add(first, "chunk", json_object_new_int(7));
            json_object_object_add(first, "delay_ms", json_object_new_int(5));
        }
    }
    json_object_object_add(first, "sse", sse);
    json_object_array_add(list, first);

    json_object *second = json_object_new_object();
    json_object_object_add(second, "status", json_object_new_int(200));
    sse = json_object_new_array();
    char done[32];
    snprintf(done, sizeof done, "done %s", key);
    json_object_array_add(sse, chunk(text_delta(done), "stop"));
    json_object_array_add(sse, json_object_new_string("[DONE]"));
    json_object_object_add(second, "sse", sse);
    json_object_array_add(list, second);
    return list;
}

static char *script(int n)
{
    json_object *routes = json_object_new_object();
    for (int i = 0; i < n; i++) {
        char key[24];
        snprintf(key, sizeof key, "conv-%03d", i);
        json_object_object_add(routes, key, route_of(i));
    }
    json_object *s = json_object_new_object();
    json_object_object_add(s, "routes", routes);
    char *out = ad_strdup(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN));
    json_object_put(s);
    return out;
}

/* ---- each conversation's sink ------------------------------------------ */

static void on_later(uv_timer_t *t)
{
    conv *c = t->data;
    if (c->i == APPROVED && c->approval_id) {
        int rc = ad_agent_approve(c->agent, c->approval_id, AD_APPROVE_YES);
        if (rc != AD_OK)
            fprintf(stderr, "  %s: ad_agent_approve -> %d\n", c->key, rc);
    } else if (c->i == CANCELLED) {
        ad_agent_cancel(c->agent);
    }
}

static int conv_event(ad_sink *s, const ad_event *ev)
{
    conv *c = (conv *)s;
    switch (ev->kind) {
    case AD_EV_TEXT:
        c->texts++;
        if (c->i == CANCELLED && c->texts == 1)
            uv_timer_start(&c->later, on_later, 0, 0);
        break;
    case AD_EV_APPROVAL:
        c->approvals++;
        free(c->approval_id);
        c->approval_id = ad_strdup(ev->id);
        uv_timer_start(&c->later, on_later, 0, 0);
        break;
    case AD_EV_FINISH:
        free(c->answer);
        c->answer = ad_strndup(ev->text ? ev->text : "", ev->text ? ev->len : 0);
        break;
    case AD_EV_END:
        c->ends++;
        break;
    default:
        break;
    }
    return AD_SINK_OK;
}

static const ad_sink_vt conv_sink_vt = {conv_event, NULL};

static void on_done(void *ud, int status)
{
    conv *c = ud;
    c->status = status;
    c->m->ended++;
}

/* ---- the checks ------------------------------------------------------------ */

static const char *str_at(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* The messages after the system prompt (if any), from the request body. */
static json_object *sent_messages(json_object *rec)
{
    json_object *body, *msgs;
    if (!json_object_object_get_ex(rec, "json", &body) ||
        !json_object_object_get_ex(body, "messages", &msgs))
        return NULL;
    return msgs;
}

static size_t first_user(json_object *msgs)
{
    size_t k = 0;
    while (k < json_object_array_length(msgs) &&
           streq(str_at(json_object_array_get_idx(msgs, k), "role"), "system"))
        k++;
    return k;
}

/* Returns the number of problems found in conversation i's requests. */
static int check_requests(int i, json_object *recs[3], int nrecs)
{
    char key[24];
    snprintf(key, sizeof key, "conv-%03d", i);
    int bad = 0;
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s: ", key);                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            bad++;                                                                                 \
        }                                                                                          \
    } while (0)
    int want = i == CANCELLED ? 1 : 2;
    EXPECT(nrecs == want, "%d requests, want %d", nrecs, want);
    if (nrecs != want)
        return bad;
    for (int r = 0; r < nrecs; r++) {
        json_object *msgs = sent_messages(recs[r]);
        EXPECT(msgs != NULL, "request %d has no messages", r + 1);
        if (!msgs)
            continue;
        size_t u = first_user(msgs);
        size_t len = json_object_array_length(msgs);
        json_object *user = json_object_array_get_idx(msgs, u);
        EXPECT(streq(str_at(user, "role"), "user") && streq(str_at(user, "content"), key),
               "request %d: the first message is not the user's prompt", r + 1);
        if (r == 0) {
            EXPECT(len == u + 1, "request 1 has %zu messages after the prompt", len - u - 1);
            continue;
        }
        EXPECT(len == u + 4, "request 2 has %zu messages after the prompt, want 3", len - u - 1);
        if (len != u + 4)
            continue;
        plan p;
        plan_of(i, &p);
        json_object *asst = json_object_array_get_idx(msgs, u + 1), *tcs;
        EXPECT(streq(str_at(asst, "role"), "assistant"), "message 2 is not the assistant's");
        if (!json_object_object_get_ex(asst, "tool_calls", &tcs) ||
            json_object_array_length(tcs) != 2) {
            EXPECT(0, "the assistant message does not carry 2 tool calls");
            continue;
        }
        for (int k = 0; k < 2; k++) {
            json_object *tc = json_object_array_get_idx(tcs, (size_t)k), *fn;
            EXPECT(streq(str_at(tc, "id"), call_ids[k]), "call %d id %s", k,
                   str_at(tc, "id") ? str_at(tc, "id") : "(none)");
            json_object_object_get_ex(tc, "function", &fn);
            EXPECT(streq(str_at(fn, "name"), p.name[k]), "call %d is not %s", k, p.name[k]);
            EXPECT(streq(str_at(fn, "arguments"), p.args[k]), "call %d arguments %s", k,
                   str_at(fn, "arguments") ? str_at(fn, "arguments") : "(none)");
            json_object *tool = json_object_array_get_idx(msgs, u + 2 + (size_t)k);
            const char *content = str_at(tool, "content");
            EXPECT(streq(str_at(tool, "role"), "tool") &&
                       streq(str_at(tool, "tool_call_id"), call_ids[k]),
                   "message %d is not the tool result of call %d", k + 3, k);
            if (p.result[k][0])
                EXPECT(streq(content, p.result[k]), "call %d result \"%s\", want \"%s\"", k,
                       content ? content : "(none)", p.result[k]);
            else
                EXPECT(content && strstr(content, "timed out"),
                       "call %d result \"%s\" does not say it timed out", k,
                       content ? content : "(none)");
        }
    }
    return bad;
#undef EXPECT
}

enum { GUARD_MS = 600 * 1000 };

static void on_guard(uv_timer_t *t)
{
    many *m = t->data;
    m->hung = true;
    fprintf(stderr, "  %d of %d runs still going after %d s: cancelling them\n", m->n - m->ended,
            m->n, GUARD_MS / 1000);
    for (int i = 0; i < m->n; i++)
        if (m->convs[i].status < 0 && m->convs[i].agent)
            ad_agent_cancel(m->convs[i].agent);
}

static int many_n(void)
{
    const char *n = getenv("AGENTD_MANY_N");
    return n && atoi(n) >= 50 ? atoi(n) : 200;
}

TEST(two_hundred_conversations_on_one_loop)
{
    const char *dir = getenv("AGENTD_DIR") ? getenv("AGENTD_DIR") : ".";
    static many m;
    memset(&m, 0, sizeof m);
    m.n = many_n();
    char *s = script(m.n);
    mock_proc mock;
    int started = mock_start(&mock, s);
    free(s);
    CHECK_EQ(started, 0);
    if (started != 0)
        return;

    ad_config_init(&m.cfg);
    ad_buf url = AD_BUF_INIT;
    ad_buf_printf(&url, "http://127.0.0.1:%d/v1", mock.port);
    m.cfg.base_url = ad_buf_steal(&url);
    m.cfg.model = ad_strdup("test-model");
    m.cfg.max_retries = 0;
    m.cfg.timeout_s = 60;
    m.cfg.idle_timeout_s = 0; /* conversation 13's provider goes quiet on purpose */
    m.cfg.tools = calloc(2, sizeof *m.cfg.tools);
    m.cfg.ntools = 2;
    m.cfg.tools[0] = (ad_tool_conf){ad_strdup("hang"), 0.3, -1, -1, {0, 0}};
    m.cfg.tools[1] = (ad_tool_conf){ad_strdup("multiply"), -1, 1, -1, {0, 0}};

    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_init(&m.loop);
    m.tools = ad_tool_host_new(&m.loop);
    static const char *const plugins[] = {"plugins/add.so", "plugins/multiply.so",
                                          "tests/plugins/nap.so", "tests/plugins/hang.so"};
    char err[512];
    for (size_t k = 0; k < sizeof plugins / sizeof *plugins; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, plugins[k]);
        int rc = ad_plugin_load_file(m.tools, path, NULL, NULL, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "  %s\n", err);
        CHECK_EQ(rc, 0);
    }
    m.http = ad_curl_new(&m.loop);

    m.convs = calloc((size_t)m.n, sizeof *m.convs);
    for (int i = 0; i < m.n; i++) {
        conv *c = &m.convs[i];
        c->m = &m;
        c->i = i;
        c->status = -1;
        snprintf(c->key, sizeof c->key, "conv-%03d", i);
        c->sink.vt = &conv_sink_vt;
        c->sink.flags = i == APPROVED ? AD_SINK_APPROVES : 0;
        c->ev = ad_events_new();
        ad_events_set_conv_id(c->ev, c->key);
        ad_events_add(c->ev, &c->sink);
        uv_timer_init(&m.loop, &c->later);
        c->later.data = c;
        ad_agent_opts o = {&m.loop, m.http, &m.cfg, m.tools, c->ev};
        c->agent = ad_agent_new(&o);
        CHECK(c->agent != NULL);
    }
    int runs = 0;
    for (int i = 0; i < m.n; i++)
        if (m.convs[i].agent &&
            ad_agent_run(m.convs[i].agent, m.convs[i].key, on_done, &m.convs[i]) == AD_OK)
            runs++;
    CHECK_EQ(runs, m.n);
    /* Every run ends by itself. A run that never would is a hang: the
     * guard (far beyond any pace, valgrind's included) cancels them all,
     * and the checks below then fail. */
    uv_timer_t guard;
    uv_timer_init(&m.loop, &guard);
    guard.data = &m;
    uv_timer_start(&guard, on_guard, GUARD_MS, 0);
    while (m.ended < runs && uv_run(&m.loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&guard, NULL);
    CHECK_EQ(m.ended, runs);
    CHECK(!m.hung);

    /* Every request, grouped by conversation. */
    char *log = mock_log(&mock);
    CHECK(log != NULL);
    json_object *(*recs)[3] = calloc((size_t)m.n, sizeof *recs);
    int *nrecs = calloc((size_t)m.n, sizeof *nrecs);
    int unrouted = 0, total = 0;
    for (char *line = log, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        json_object *rec = json_tokener_parse(line);
        const char *route = rec ? str_at(rec, "route") : NULL;
        int i = -1;
        if (route && sscanf(route, "conv-%d", &i) == 1 && i >= 0 && i < m.n && nrecs[i] < 3) {
            recs[i][nrecs[i]++] = rec;
            total++;
        } else {
            unrouted++;
            json_object_put(rec);
        }
    }
    free(log);
    CHECK_EQ(unrouted, 0);

    int bad = 0, ok = 0, cancelled = 0;
    for (int i = 0; i < m.n; i++) {
        conv *c = &m.convs[i];
        int b = check_requests(i, recs[i], nrecs[i]);
        char want[32];
        snprintf(want, sizeof want, "done %s", c->key);
        if (i == CANCELLED) {
            if (c->status != AD_RUN_CANCELLED || c->texts < 1)
                b++, fprintf(stderr, "  %s: status %d, %d text deltas\n", c->key, c->status,
                             c->texts);
            else
                cancelled++;
        } else if (c->status != AD_RUN_OK || !streq(c->answer, want)) {
            b++;
            fprintf(stderr, "  %s: status %d, answer \"%s\"\n", c->key, c->status,
                    c->answer ? c->answer : "(none)");
        } else {
            ok++;
        }
        if (c->ends != 1)
            b++, fprintf(stderr, "  %s: %d end events\n", c->key, c->ends);
        if (c->approvals != (i == APPROVED))
            b++, fprintf(stderr, "  %s: %d approval requests\n", c->key, c->approvals);
        /* What the conversation holds: prompt, calls, results, answer; the
         * cancelled one: prompt and its marked answer, never two user
         * messages in a row. */
        json_object *msgs = c->agent ? ad_agent_messages(c->agent) : NULL;
        size_t u = msgs ? first_user(msgs) : 0;
        size_t held = msgs ? json_object_array_length(msgs) - u : 0;
        if (held != (i == CANCELLED ? 2u : 5u))
            b++, fprintf(stderr, "  %s: the conversation holds %zu messages\n", c->key, held);
        bad += b;
        for (int r = 0; r < nrecs[i]; r++)
            json_object_put(recs[i][r]);
    }
    printf("many: %d conversations, %d requests, %d answered, %d cancelled, %d problems\n", m.n,
           total, ok, cancelled, bad);
    CHECK_EQ(bad, 0);
    CHECK_EQ(ok, m.n - 1);
    CHECK_EQ(cancelled, 1);
    CHECK_EQ(total, 2 * m.n - 1);
    free(recs);
    free(nrecs);

    for (int i = 0; i < m.n; i++) {
        conv *c = &m.convs[i];
        ad_agent_free(c->agent);
        uv_close((uv_handle_t *)&c->later, NULL);
    }
    ad_transport_close(m.http);
    uv_run(&m.loop, UV_RUN_DEFAULT); /* also waits for the hang call's thread */
    ad_tool_host_free(m.tools);
    uv_run(&m.loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&m.loop), 0);
    for (int i = 0; i < m.n; i++) {
        ad_events_free(m.convs[i].ev);
        free(m.convs[i].answer);
        free(m.convs[i].approval_id);
    }
    free(m.convs);
    curl_global_cleanup();
    ad_config_free(&m.cfg);
    mock_stop(&mock);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    RUN(two_hundred_conversations_on_one_loop);
    return harness_report("test_many");
}

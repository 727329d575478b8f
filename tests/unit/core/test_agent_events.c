/*
 * test_agent_events.c -- the agent as the producer of a conversation's
 * events, against the mock provider with the add plugin: approvals a sink
 * answers later, and sinks that cancel the run from inside an event.
 *
 * Approvals: the asking sink (AD_SINK_APPROVES) records every
 * AD_EV_APPROVAL and answers from a uv timer, after the event returned, as
 * an HTTP client or a policy would. Checked: every question of the step
 * goes out before any answer and no call runs before its answer; answers in
 * any order give the results in call order; a denial and a cancel while
 * waiting give the documented tool messages; an id the sink saw redacted is
 * accepted; with no sink that approves, the call is denied unasked; a
 * second answer, or one after the run, is refused.
 *
 * Cancels from inside an event (the step's start, a tool call, a tool
 * result): the run ends cancelled, with one END event, one STEP_FINISH for
 * a step whose response came, every call of the step with exactly one
 * result, and no request after the cancel.
 *
 * The second request's tool messages are read from the mock's log.
 */
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "../mock.h"
#include "base/buf.h"
#include "core/agent.h"
#include "provider/curl.h"
#include "tools/plugin.h"

#define CHUNK(delta, fin)                                                                          \
    "{\"id\":\"s\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"    \
    delta ",\"finish_reason\":" fin "}]}"
#define CALL(i, id, args)                                                                          \
    "{\"index\":" #i ",\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"add\","   \
    "\"arguments\":\"" args "\"}}"

/* Two calls of add, then the answer. */
static const char two_calls[] =
    "{\"responses\": ["
    "{\"status\": 200, \"sse\": [" CHUNK("{\"role\":\"assistant\",\"tool_calls\":[" CALL(
        0, "c1", "{\\\"a\\\":2,\\\"b\\\":3}") "," CALL(1, "c2", "{\\\"a\\\":4,\\\"b\\\":5}") "]}",
                                         "null") "," CHUNK("{}", "\"tool_calls\"") ", \"[DONE]\"]},"
    "{\"status\": 200, \"sse\": [" CHUNK("{\"role\":\"assistant\",\"content\":\"done\"}",
                                         "\"stop\"") ", \"[DONE]\"]}]}";

/* One call whose id holds the key. */
static const char keyed_call[] =
    "{\"responses\": ["
    "{\"status\": 200, \"sse\": [" CHUNK(
        "{\"role\":\"assistant\",\"tool_calls\":[" CALL(0, "id-sk-test-key-123",
                                                        "{\\\"a\\\":1,\\\"b\\\":1}") "]}",
        "null") "," CHUNK("{}", "\"tool_calls\"") ", \"[DONE]\"]},"
    "{\"status\": 200, \"sse\": [" CHUNK("{\"role\":\"assistant\",\"content\":\"done\"}",
                                         "\"stop\"") ", \"[DONE]\"]}]}";

enum { MAXQ = 4 };

typedef struct asker {
    ad_sink base;
    ad_agent *agent;
    uv_timer_t later;
    char ids[MAXQ][64];
    int nasked;
    int order[MAXQ];     /* the questions answered, in this order */
    int decision[MAXQ];  /* per question */
    bool cancel;         /* cancel the run instead of answering */
    int cancel_on;       /* > 0: cancel from inside the first event of kind cancel_on - 1 */
    int ends, step_finishes;
    int results_at_answer; /* tool results seen when the answers came */
    int results;
    int again_rc;        /* a second answer to the first question */
} asker;

static void answer_later(uv_timer_t *t)
{
    asker *k = t->data;
    k->results_at_answer = k->results;
    if (k->cancel) {
        ad_agent_cancel(k->agent);
        return;
    }
    for (int i = 0; i < k->nasked; i++)
        CHECK_EQ(ad_agent_approve(k->agent, k->ids[k->order[i]], k->decision[k->order[i]]), 0);
    k->again_rc = ad_agent_approve(k->agent, k->ids[0], AD_APPROVE_YES);
}

static int asker_event(ad_sink *s, const ad_event *ev)
{
    asker *k = (asker *)s;
    if (k->cancel_on && (int)ev->kind == k->cancel_on - 1) {
        k->cancel_on = 0;
        ad_agent_cancel(k->agent);
    }
    if (ev->kind == AD_EV_END)
        k->ends++;
    if (ev->kind == AD_EV_STEP_FINISH)
        k->step_finishes++;
    if (ev->kind == AD_EV_APPROVAL && k->nasked < MAXQ) {
        snprintf(k->ids[k->nasked++], sizeof k->ids[0], "%s", ev->id);
        uv_timer_start(&k->later, answer_later, 0, 0);
    } else if (ev->kind == AD_EV_TOOL_RESULT) {
        k->results++;
    }
    return AD_SINK_OK;
}

static const ad_sink_vt asker_vt = {asker_event, NULL};

static char *plugin_path(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/plugins/%s", root && *root ? root : ".", file);
    return realpath(path, NULL);
}

/* The content of every tool message of request n (0-based), "|"-joined. */
static void tool_contents(const char *log, int n, ad_buf *out)
{
    const char *line = log;
    for (int i = 0; line && i < n; i++) {
        line = strchr(line, '\n');
        line = line && line[1] ? line + 1 : NULL;
    }
    if (!line)
        return;
    const char *nl = strchr(line, '\n');
    char *one = ad_strndup(line, nl ? (size_t)(nl - line) : strlen(line));
    json_object *req = json_tokener_parse(one), *body, *msgs;
    free(one);
    if (json_object_object_get_ex(req, "json", &body) &&
        json_object_object_get_ex(body, "messages", &msgs))
        for (size_t i = 0; i < json_object_array_length(msgs); i++) {
            json_object *m = json_object_array_get_idx(msgs, i), *v;
            if (!json_object_object_get_ex(m, "role", &v) ||
                strcmp(json_object_get_string(v), "tool") != 0)
                continue;
            json_object_object_get_ex(m, "content", &v);
            ad_buf_printf(out, "%s%s", out->len ? "|" : "", json_object_get_string(v));
        }
    json_object_put(req);
}

static int requests(const char *log)
{
    int n = 0;
    for (const char *p = log; (p = strchr(p, '\n')) != NULL; p++)
        n++;
    return n;
}

typedef struct outcome {
    int status;
    bool done;
    char *log;    /* the mock's request log */
    ad_buf tools; /* tool contents of the second request */
    int late_rc;  /* an answer after the run */
} outcome;

static void on_done(void *ud, int status)
{
    outcome *o = ud;
    o->status = status;
    o->done = true;
}

/* Runs script with add needing approval; k answers (approves = false: k
 * is a sink that does not answer approvals). */
static void run(const char *script, asker *k, bool approves, const char *key, bool confirm,
                outcome *out)
{
    memset(out, 0, sizeof *out);
    out->status = -1;
    mock_proc m;
    if (mock_start(&m, script) != 0) {
        CHECK(!"mock server did not start");
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[512] = "";
    char *add = plugin_path("add.so");
    ad_tool_host *h = ad_tool_host_new(&loop);
    CHECK(add != NULL);
    CHECK_EQ(add ? ad_plugin_load_file(h, add, NULL, NULL, err, sizeof err) : -1, 0);
    free(add);
    ad_config cfg;
    ad_config_init(&cfg);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", m.port);
    cfg.base_url = ad_strdup(url);
    cfg.model = ad_strdup("test/model");
    cfg.api_key = key ? ad_strdup(key) : NULL;
    cfg.max_retries = 0;
    if (confirm) {
        cfg.confirm_tools = calloc(1, sizeof *cfg.confirm_tools);
        cfg.confirm_tools_at = calloc(1, sizeof *cfg.confirm_tools_at);
        cfg.confirm_tools[0] = ad_strdup("add");
        cfg.nconfirm_tools = 1;
    }

    ad_events *ev = ad_events_new();
    ad_events_set_secret(ev, key);
    k->base.vt = &asker_vt;
    k->base.flags = approves ? AD_SINK_APPROVES : 0;
    uv_timer_init(&loop, &k->later);
    k->later.data = k;
    ad_events_add(ev, &k->base);
    ad_transport *http = ad_curl_new(&loop);
    ad_agent_opts o = {&loop, http, &cfg, h, ev};
    ad_agent *a = ad_agent_new(&o);
    k->agent = a;
    CHECK_EQ(ad_agent_run(a, "add them", on_done, out), 0);
    while (!out->done && uv_run(&loop, UV_RUN_ONCE)) {
    }
    out->late_rc = ad_agent_approve(a, k->nasked ? k->ids[0] : "c1", AD_APPROVE_YES);
    out->log = mock_log(&m);
    if (out->log)
        tool_contents(out->log, 1, &out->tools);
    ad_agent_free(a);
    ad_events_remove(ev, &k->base);
    ad_events_free(ev);
    uv_close((uv_handle_t *)&k->later, NULL);
    ad_transport_close(http);
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    ad_config_free(&cfg);
    mock_stop(&m);
}

static void outcome_free(outcome *o)
{
    free(o->log);
    ad_buf_free(&o->tools);
}

TEST(answers_given_later_in_any_order_run_the_calls_in_call_order)
{
    asker k;
    memset(&k, 0, sizeof k);
    k.order[0] = 1; /* the second question first */
    k.order[1] = 0;
    k.decision[0] = AD_APPROVE_YES;
    k.decision[1] = AD_APPROVE_ALWAYS;
    outcome o;
    run(two_calls, &k, true, NULL, true, &o);
    CHECK_EQ(o.status, AD_RUN_OK);
    CHECK_EQ(k.nasked, 2);
    CHECK_STREQ(k.ids[0], "c1");
    CHECK_STREQ(k.ids[1], "c2");
    CHECK_EQ(k.results_at_answer, 0); /* nothing ran before the answers */
    CHECK_EQ(k.results, 2);
    CHECK_EQ(k.again_rc, AD_EINVAL);
    CHECK_EQ(o.late_rc, AD_EINVAL);
    CHECK_STREQ(o.tools.data ? o.tools.data : "", "5|9");
    outcome_free(&o);
}

TEST(a_denial_given_later_is_the_calls_result)
{
    asker k;
    memset(&k, 0, sizeof k);
    k.order[0] = 0;
    k.order[1] = 1;
    k.decision[0] = AD_APPROVE_NO;
    k.decision[1] = AD_APPROVE_YES;
    outcome o;
    run(two_calls, &k, true, NULL, true, &o);
    CHECK_EQ(o.status, AD_RUN_OK);
    CHECK_STREQ(o.tools.data ? o.tools.data : "", "the user denied running tool 'add'|9");
    outcome_free(&o);
}

TEST(a_cancel_answer_starts_no_call)
{
    asker k;
    memset(&k, 0, sizeof k);
    k.order[0] = 0;
    k.order[1] = 1;
    k.decision[0] = AD_APPROVE_YES;
    k.decision[1] = AD_APPROVE_CANCEL;
    outcome o;
    run(two_calls, &k, true, NULL, true, &o);
    CHECK_EQ(o.status, AD_RUN_CANCELLED);
    CHECK_EQ(k.again_rc, AD_EINVAL); /* the run is over */
    CHECK_EQ(requests(o.log ? o.log : ""), 1);
    outcome_free(&o);
}

TEST(cancelling_while_answers_are_awaited_ends_the_run_with_every_call_answered)
{
    asker k;
    memset(&k, 0, sizeof k);
    k.cancel = true;
    outcome o;
    run(two_calls, &k, true, NULL, true, &o);
    CHECK_EQ(o.status, AD_RUN_CANCELLED);
    CHECK_EQ(k.nasked, 2);
    CHECK_EQ(k.results, 2); /* each call got its (not run) result */
    CHECK_EQ(o.late_rc, AD_EINVAL);
    CHECK_EQ(requests(o.log ? o.log : ""), 1);
    outcome_free(&o);
}

TEST(an_id_seen_redacted_is_answered)
{
    asker k;
    memset(&k, 0, sizeof k);
    k.decision[0] = AD_APPROVE_YES;
    outcome o;
    run(keyed_call, &k, true, "sk-test-key-123", true, &o);
    CHECK_EQ(o.status, AD_RUN_OK);
    CHECK_STREQ(k.ids[0], "id-[REDACTED]");
    CHECK_STREQ(o.tools.data ? o.tools.data : "", "2");
    outcome_free(&o);
}

TEST(with_no_sink_that_approves_the_call_is_denied_unasked)
{
    asker k;
    memset(&k, 0, sizeof k);
    outcome o;
    run(two_calls, &k, false, NULL, true, &o);
    CHECK_EQ(o.status, AD_RUN_OK);
    CHECK_EQ(k.nasked, 0);
    CHECK_STREQ(o.tools.data ? o.tools.data : "",
                "tool 'add' needs approval (confirm = true) and none was given; it was not run|"
                "tool 'add' needs approval (confirm = true) and none was given; it was not run");
    outcome_free(&o);
}

/* ---- a sink cancels the run from inside an event ------------------------ */

static void cancel_from(ad_event_kind kind, asker *k, outcome *o)
{
    memset(k, 0, sizeof *k);
    k->cancel_on = (int)kind + 1;
    run(two_calls, k, true, NULL, false, o);
    CHECK_EQ(o->status, AD_RUN_CANCELLED);
    CHECK_EQ(k->ends, 1);
    CHECK_EQ(k->cancel_on, 0); /* it did cancel */
}

TEST(a_cancel_from_the_step_start_sends_no_request)
{
    asker k;
    outcome o;
    cancel_from(AD_EV_STEP_START, &k, &o);
    CHECK_EQ(requests(o.log ? o.log : ""), 0);
    CHECK_EQ(k.results, 0);
    CHECK_EQ(k.step_finishes, 0);
    outcome_free(&o);
}

TEST(a_cancel_from_a_tool_call_runs_no_call)
{
    asker k;
    outcome o;
    cancel_from(AD_EV_TOOL_CALL, &k, &o);
    CHECK_EQ(requests(o.log ? o.log : ""), 1);
    CHECK_EQ(k.results, 2); /* each "not run" */
    CHECK_EQ(k.step_finishes, 1);
    outcome_free(&o);
}

TEST(a_cancel_from_a_tool_result_reports_each_result_once)
{
    asker k;
    outcome o;
    cancel_from(AD_EV_TOOL_RESULT, &k, &o);
    CHECK_EQ(requests(o.log ? o.log : ""), 1);
    CHECK_EQ(k.results, 2);
    CHECK_EQ(k.step_finishes, 1);
    outcome_free(&o);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(answers_given_later_in_any_order_run_the_calls_in_call_order);
    RUN(a_denial_given_later_is_the_calls_result);
    RUN(a_cancel_answer_starts_no_call);
    RUN(cancelling_while_answers_are_awaited_ends_the_run_with_every_call_answered);
    RUN(an_id_seen_redacted_is_answered);
    RUN(with_no_sink_that_approves_the_call_is_denied_unasked);
    RUN(a_cancel_from_the_step_start_sends_no_request);
    RUN(a_cancel_from_a_tool_call_runs_no_call);
    RUN(a_cancel_from_a_tool_result_reports_each_result_once);
    return harness_report("test_agent_events");
}

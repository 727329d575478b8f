/*
 * test_respond.c -- what clients of agentd serve receive, built from a
 * run's events: the Responses API events and objects (serve/respond.c),
 * the Chat Completions chunks (serve/chat.c), the JSON writer
 * (serve/jsonw.c) and the request input (serve/input.c).
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "base/json.h"
#include "core/agent.h"
#include "serve/chat.h"
#include "serve/input.h"
#include "serve/respond.h"
#include "serve/jsonw.h"

typedef struct seen {
    json_object *events; /* array of the parsed events */
    ad_buf types;        /* "type,type,..." */
    bool bad;            /* an event was not valid JSON, or its type differed */
} seen;

static void on_emit(void *ud, const char *type, const char *json, size_t len)
{
    seen *s = ud;
    json_object *o = json_tokener_parse(json);
    if (!o || strlen(json) != len || !ad_json_str(o, "type") || strcmp(ad_json_str(o, "type"), type) != 0)
        s->bad = true;
    json_object_array_add(s->events, o);
    if (s->types.len)
        ad_buf_putc(&s->types, ',');
    ad_buf_puts(&s->types, type);
}

static void seen_init(seen *s)
{
    memset(s, 0, sizeof *s);
    s->events = json_object_new_array();
}

static void seen_free(seen *s)
{
    json_object_put(s->events);
    ad_buf_free(&s->types);
}

static ad_event ev_of(ad_event_kind k)
{
    ad_event e;
    memset(&e, 0, sizeof e);
    e.kind = k;
    return e;
}

static void text(ad_rsp *r, const char *t)
{
    ad_event e = ev_of(AD_EV_TEXT);
    e.text = t;
    e.len = strlen(t);
    ad_rsp_event(r, &e);
}

static void call(ad_rsp *r, const char *id, const char *name, const char *args, bool not_run)
{
    ad_event e = ev_of(AD_EV_TOOL_CALL);
    e.id = id;
    e.name = name;
    e.text = args;
    e.len = strlen(args);
    e.not_run = not_run;
    ad_rsp_event(r, &e);
}

static void result(ad_rsp *r, const char *id, const char *out, bool is_error)
{
    ad_event e = ev_of(AD_EV_TOOL_RESULT);
    e.id = id;
    e.name = "add";
    e.text = out;
    e.len = strlen(out);
    e.is_error = is_error;
    ad_rsp_event(r, &e);
}

static void step_end(ad_rsp *r)
{
    ad_event e = ev_of(AD_EV_STEP_FINISH);
    ad_rsp_event(r, &e);
}

TEST(a_run_as_response_events)
{
    seen s;
    seen_init(&s);
    ad_rsp_opts o = {"resp_abc", "agentd", 1700000000, false, true, NULL, "Be brief.", NULL, 0};
    ad_rsp *r = ad_rsp_new(&o, on_emit, &s);
    ad_rsp_start(r);
    text(r, "Adding");
    text(r, " \"now\"\n");
    call(r, "call_1", "add", "{\"a\":2}", false);
    step_end(r);
    result(r, "call_1", "5", false);
    text(r, "It is 5.");
    json_object *u = json_tokener_parse("{\"prompt_tokens\":10,\"completion_tokens\":4}");
    ad_event fin = ev_of(AD_EV_FINISH);
    fin.usage = u;
    ad_rsp_event(r, &fin);
    json_object_put(u);
    CHECK(!ad_rsp_ended(r));
    ad_rsp_end(r, AD_RUN_OK, NULL);
    CHECK(ad_rsp_ended(r));
    CHECK_STREQ(ad_rsp_status(r), "completed");
    ad_rsp_emit_final(r);
    ad_rsp_emit_final(r); /* once */
    CHECK(!s.bad);
    CHECK_STREQ(s.types.data,
                "response.created,response.in_progress,"
                "response.output_item.added,response.content_part.added,"
                "response.output_text.delta,response.output_text.delta,"
                "response.output_text.done,response.content_part.done,response.output_item.done,"
                "response.output_item.added,response.output_item.done,"
                "response.output_item.added,response.content_part.added,response.output_text.delta,"
                "response.output_text.done,response.content_part.done,response.output_item.done,"
                "response.completed");
    size_t n = json_object_array_length(s.events);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(json_object_get_int(ad_json_get(json_object_array_get_idx(s.events, i),
                                                 "sequence_number")),
                 i);
    CHECK_EQ(ad_rsp_events(r), n);
    /* The tool call: added when asked for, done with its result. */
    json_object *added = json_object_array_get_idx(s.events, 9);
    json_object *it = ad_json_get(added, "item");
    CHECK_STREQ(ad_json_str(it, "type"), "agentd:tool_call");
    CHECK_STREQ(ad_json_str(it, "status"), "in_progress");
    CHECK_STREQ(ad_json_str(it, "call_id"), "call_1");
    CHECK_EQ(json_object_get_int(ad_json_get(added, "output_index")), 1);
    it = ad_json_get(json_object_array_get_idx(s.events, 10), "item");
    CHECK_STREQ(ad_json_str(it, "output"), "5");
    CHECK_STREQ(ad_json_str(it, "status"), "completed");
    /* The text survives escaping. */
    json_object *done = json_object_array_get_idx(s.events, 6);
    CHECK_STREQ(ad_json_str(done, "text"), "Adding \"now\"\n");
    /* The final object, in the stream: every item in output, usage mapped. */
    json_object *resp = ad_json_get(json_object_array_get_idx(s.events, n - 1), "response");
    CHECK_STREQ(ad_json_str(resp, "status"), "completed");
    CHECK_STREQ(ad_json_str(resp, "instructions"), "Be brief.");
    CHECK_EQ(json_object_array_length(ad_json_get(resp, "output")), 3);
    json_object *usage = ad_json_get(resp, "usage");
    CHECK_EQ(json_object_get_int(ad_json_get(usage, "input_tokens")), 10);
    CHECK_EQ(json_object_get_int(ad_json_get(usage, "total_tokens")), 14);
    /* The whole object: agentd's calls beside output. */
    char *whole = ad_rsp_object(r, NULL);
    json_object *w = json_tokener_parse(whole);
    CHECK(w != NULL);
    json_object *out = ad_json_get(w, "output");
    CHECK_EQ(json_object_array_length(out), 2);
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(out, 1), "type"), "message");
    json_object *calls = ad_json_get(ad_json_get(w, "agentd"), "tool_calls");
    CHECK_EQ(json_object_array_length(calls), 1);
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(calls, 0), "name"), "add");
    /* A stored object replays as a stream. */
    seen p;
    seen_init(&p);
    CHECK_EQ(ad_rsp_replay(whole, on_emit, &p), 0);
    CHECK(!p.bad);
    CHECK(strstr(p.types.data, "response.created,response.in_progress,response.output_item.added") ==
          p.types.data);
    CHECK(strstr(p.types.data, ",response.completed") != NULL);
    CHECK_EQ(ad_rsp_replay("{\"nope\":1}", on_emit, &p), AD_EINVAL);
    seen_free(&p);
    json_object_put(w);
    free(whole);
    ad_rsp_free(r);
    seen_free(&s);
}

TEST(retries_client_tools_and_endings)
{
    seen s;
    seen_init(&s);
    const char *client[] = {"lookup"};
    ad_rsp_opts o = {"resp_x", "m", 1, true, true, "resp_prev", NULL, client, 1};
    ad_rsp *r = ad_rsp_new(&o, on_emit, &s);
    CHECK_STREQ(ad_rsp_status(r), "queued");
    ad_rsp_start(r);
    text(r, "take one");
    ad_event retry = ev_of(AD_EV_RETRY);
    ad_rsp_event(r, &retry);
    text(r, "take two");
    call(r, "call_9", "lookup", "{\"q\":\"x\"}", false);
    ad_rsp_end(r, AD_RUN_CLIENT_TOOLS, NULL);
    CHECK_STREQ(ad_rsp_status(r), "completed");
    const char *const *ids;
    CHECK_EQ(ad_rsp_client_calls(r, &ids), 1);
    CHECK_STREQ(ids[0], "call_9");
    ad_rsp_emit_final(r);
    CHECK(!s.bad);
    /* The retried item is closed incomplete; the call is a function_call
     * with its arguments. */
    CHECK(strstr(s.types.data, "response.function_call_arguments.delta,"
                               "response.function_call_arguments.done,response.output_item.done"));
    char *whole = ad_rsp_object(r, NULL);
    json_object *w = json_tokener_parse(whole);
    json_object *out = ad_json_get(w, "output");
    CHECK_EQ(json_object_array_length(out), 3);
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(out, 0), "status"), "incomplete");
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(out, 2), "type"), "function_call");
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(out, 2), "arguments"), "{\"q\":\"x\"}");
    CHECK_STREQ(ad_json_str(w, "previous_response_id"), "resp_prev");
    json_object_put(w);
    free(whole);
    ad_rsp_free(r);
    seen_free(&s);
    /* Failures, max_steps and a cancel. */
    static const struct {
        int status;
        const char *want, *final;
    } ends[] = {{AD_RUN_FAILED, "failed", "response.failed"},
                {AD_RUN_MAX_STEPS, "incomplete", "response.incomplete"},
                {AD_RUN_CANCELLED, "cancelled", "response.failed"}};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        seen e;
        seen_init(&e);
        ad_rsp_opts eo = {"resp_e", "m", 1, false, true, NULL, NULL, NULL, 0};
        ad_rsp *er = ad_rsp_new(&eo, on_emit, &e);
        ad_rsp_start(er);
        call(er, "c1", "add", "{}", false); /* never answered */
        ad_event err = ev_of(AD_EV_ERROR);
        err.text = "HTTP 500 from the provider";
        err.len = strlen(err.text);
        ad_rsp_event(er, &err);
        ad_rsp_end(er, ends[i].status, NULL);
        ad_rsp_emit_final(er);
        CHECK_STREQ(ad_rsp_status(er), ends[i].want);
        CHECK(strstr(e.types.data, ends[i].final) != NULL);
        char *ow = ad_rsp_object(er, NULL);
        json_object *x = json_tokener_parse(ow);
        json_object *c0 = json_object_array_get_idx(ad_json_get(ad_json_get(x, "agentd"), "tool_calls"), 0);
        CHECK_STREQ(ad_json_str(c0, "status"), "incomplete");
        if (ends[i].status == AD_RUN_FAILED)
            CHECK_STREQ(ad_json_str(ad_json_get(x, "error"), "message"), "HTTP 500 from the provider");
        if (ends[i].status == AD_RUN_MAX_STEPS)
            CHECK_STREQ(ad_json_str(ad_json_get(x, "incomplete_details"), "reason"), "max_steps");
        json_object_put(x);
        free(ow);
        ad_rsp_free(er);
        seen_free(&e);
    }
}

typedef struct chunks {
    json_object *all;
    int done;
    bool bad;
} chunks;

static void on_chunk(void *ud, const char *data, size_t len)
{
    chunks *c = ud;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done++;
        return;
    }
    json_object *o = json_tokener_parse(data);
    if (!o)
        c->bad = true;
    json_object_array_add(c->all, o);
}

static void chat_text(ad_chat *c, int step, const char *t)
{
    ad_event s = ev_of(AD_EV_STEP_START);
    s.step = step;
    ad_chat_event(c, &s);
    ad_event e = ev_of(AD_EV_TEXT);
    e.text = t;
    e.len = strlen(t);
    ad_chat_event(c, &e);
}

TEST(chat_chunks)
{
    chunks k = {json_object_new_array(), 0, false};
    const char *client[] = {"lookup"};
    ad_chat *c = ad_chat_new("chatcmpl-1", "agentd", 5, client, 1, on_chunk, &k);
    ad_chat_start(c);
    chat_text(c, 1, "One.");
    ad_event tc = ev_of(AD_EV_TOOL_CALL);
    tc.id = "c1";
    tc.name = "add";
    tc.text = "{}";
    tc.len = 2;
    ad_chat_event(c, &tc);
    ad_event tr = ev_of(AD_EV_TOOL_RESULT);
    tr.id = "c1";
    tr.name = "add";
    tr.text = "5";
    tr.len = 1;
    ad_chat_event(c, &tr);
    chat_text(c, 2, "Two.");
    ad_chat_end(c, AD_RUN_OK, NULL);
    CHECK(!k.bad);
    CHECK_EQ(k.done, 1);
    size_t n = json_object_array_length(k.all);
    CHECK_EQ(n, 6);
    ad_buf text = AD_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        json_object *ch = json_object_array_get_idx(k.all, i);
        CHECK_STREQ(ad_json_str(ch, "object"), "chat.completion.chunk");
        json_object *choice = json_object_array_get_idx(ad_json_get(ch, "choices"), 0);
        CHECK(choice != NULL);
        const char *t = ad_json_str(ad_json_get(choice, "delta"), "content");
        if (t)
            ad_buf_puts(&text, t);
    }
    CHECK_STREQ(text.data, "One.\n\nTwo.");
    ad_buf_free(&text);
    json_object *a = ad_json_get(json_object_array_get_idx(k.all, 2), "agentd");
    CHECK_STREQ(ad_json_str(a, "type"), "tool_call");
    a = ad_json_get(json_object_array_get_idx(k.all, 3), "agentd");
    CHECK_STREQ(ad_json_str(a, "output"), "5");
    json_object *last = json_object_array_get_idx(ad_json_get(json_object_array_get_idx(k.all, n - 1),
                                                              "choices"), 0);
    CHECK_STREQ(ad_json_str(last, "finish_reason"), "stop");
    char *obj = ad_chat_object(c, NULL);
    json_object *o = json_tokener_parse(obj);
    json_object *msg = ad_json_get(json_object_array_get_idx(ad_json_get(o, "choices"), 0), "message");
    CHECK_STREQ(ad_json_str(msg, "content"), "One.\n\nTwo.");
    CHECK_EQ(json_object_array_length(ad_json_get(ad_json_get(o, "agentd"), "tool_calls")), 1);
    json_object_put(o);
    free(obj);
    ad_chat_free(c);
    json_object_put(k.all);
    /* A client tool: a standard tool_calls delta and finish_reason. */
    k.all = json_object_new_array();
    k.done = 0;
    c = ad_chat_new("chatcmpl-2", "agentd", 5, client, 1, on_chunk, &k);
    ad_chat_start(c);
    tc.id = "c9";
    tc.name = "lookup";
    ad_chat_event(c, &tc);
    ad_chat_end(c, AD_RUN_CLIENT_TOOLS, NULL);
    json_object *d = ad_json_get(json_object_array_get_idx(ad_json_get(json_object_array_get_idx(k.all, 1),
                                                                          "choices"), 0), "delta");
    json_object *t0 = json_object_array_get_idx(ad_json_get(d, "tool_calls"), 0);
    CHECK_STREQ(ad_json_str(t0, "id"), "c9");
    CHECK_STREQ(ad_json_str(ad_json_get(t0, "function"), "name"), "lookup");
    last = json_object_array_get_idx(ad_json_get(json_object_array_get_idx(k.all, 2), "choices"), 0);
    CHECK_STREQ(ad_json_str(last, "finish_reason"), "tool_calls");
    ad_chat_free(c);
    json_object_put(k.all);
    /* A failure: an error chunk, then [DONE]. */
    k.all = json_object_new_array();
    k.done = 0;
    c = ad_chat_new("chatcmpl-3", "agentd", 5, NULL, 0, on_chunk, &k);
    ad_chat_start(c);
    ad_chat_end(c, AD_RUN_FAILED, "the provider said no");
    CHECK(ad_chat_failed(c));
    CHECK_EQ(k.done, 1);
    json_object *er = ad_json_get(json_object_array_get_idx(k.all, 1), "error");
    CHECK_STREQ(ad_json_str(er, "message"), "the provider said no");
    ad_chat_free(c);
    json_object_put(k.all);
}

TEST(wire)
{
    ad_buf b = AD_BUF_INIT;
    ad_jw_str(&b, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
    CHECK_STREQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\xef\xbf\xbd\"");
    ad_buf_reset(&b);
    ad_jw_cstr(&b, NULL);
    ad_jw_int(&b, -42);
    ad_jw_int(&b, 0);
    CHECK_STREQ(b.data, "null-420");
    ad_buf_free(&b);
    char a[64], c[64];
    ad_jw_id(a, sizeof a, "resp");
    ad_jw_id(c, sizeof c, "resp");
    CHECK_EQ(strlen(a), 37);
    CHECK(strncmp(a, "resp_", 5) == 0);
    CHECK(strcmp(a, c) != 0);
}

TEST(responses_input)
{
    char err[512];
    ad_input in;
    json_object *s = json_object_new_string("hello");
    CHECK_EQ(ad_input_responses(s, NULL, &in, err, sizeof err), 0);
    CHECK_STREQ(in.prompt, "hello");
    CHECK_EQ(json_object_array_length(in.messages), 0);
    ad_input_free(&in);
    json_object_put(s);
    json_object *items = json_tokener_parse(
        "[{\"role\":\"developer\",\"content\":\"rules\"},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"},"
        "{\"type\":\"input_text\",\"text\":\"b\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"c\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"f1\",\"name\":\"get\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call\",\"call_id\":\"f2\",\"name\":\"get\",\"arguments\":\"\"},"
        "{\"type\":\"reasoning\",\"summary\":[]},"
        "{\"type\":\"function_call_output\",\"call_id\":\"f1\",\"output\":\"one\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"f2\",\"output\":[{\"type\":\"input_text\",\"text\":\"two\"}]},"
        "{\"type\":\"agentd:tool_call\",\"call_id\":\"t1\",\"name\":\"add\",\"arguments\":\"{}\",\"output\":\"5\"},"
        "{\"role\":\"user\",\"content\":\"last\"}]");
    json_object *tools = json_tokener_parse(
        "[{\"type\":\"function\",\"name\":\"get\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"put\"}}]");
    CHECK_EQ(ad_input_responses(items, tools, &in, err, sizeof err), 0);
    CHECK_STREQ(in.prompt, "last");
    const char *want =
        "[{\"role\":\"system\",\"content\":\"rules\"},{\"role\":\"user\",\"content\":\"ab\"},"
        "{\"role\":\"assistant\",\"content\":\"c\",\"tool_calls\":[{\"id\":\"f1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get\",\"arguments\":\"{}\"}},{\"id\":\"f2\",\"type\":\"function\","
        "\"function\":{\"name\":\"get\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"f1\",\"content\":\"one\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"f2\",\"content\":\"two\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\","
        "\"function\":{\"name\":\"add\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"5\"}]";
    CHECK_STREQ(json_object_to_json_string_ext(in.messages, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE),
                want);
    CHECK_EQ(in.ntools, 2);
    CHECK_STREQ(in.tool_names[1], "put");
    CHECK_STREQ(ad_json_str(ad_json_get(json_object_array_get_idx(in.tools, 0), "function"),
                            "description"),
                "d");
    /* A tool without parameters gets an empty object schema. */
    CHECK(ad_json_get(ad_json_get(json_object_array_get_idx(in.tools, 1), "function"), "parameters"));
    ad_input_free(&in);
    json_object_put(items);
    json_object_put(tools);
    static const struct {
        const char *input, *tools, *err;
    } bad[] = {
        {"3", NULL, "input must be a string or an array"},
        {"[{\"role\":\"robot\",\"content\":\"x\"}]", NULL, "input[0].role must be"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]", NULL,
         "input[0].content[0]: parts of type 'input_image' are not supported"},
        {"[{\"type\":\"item_reference\",\"id\":\"x\"}]", NULL, "input[0]: items of type 'item_reference'"},
        {"[{\"type\":\"function_call_output\"}]", NULL, "needs a call_id"},
        {"\"x\"", "[{\"type\":\"web_search\"}]", "tools[0]: tools of type 'web_search' are not supported"},
        {"\"x\"", "[{\"type\":\"function\"}]", "tools[0]: a function tool needs a name"},
        {"\"x\"", "[{\"type\":\"function\",\"name\":\"a\"},{\"type\":\"function\",\"name\":\"a\"}]",
         "given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_object *x = json_tokener_parse(bad[i].input);
        json_object *t = bad[i].tools ? json_tokener_parse(bad[i].tools) : NULL;
        err[0] = '\0';
        CHECK_EQ(ad_input_responses(x, t, &in, err, sizeof err), AD_EINVAL);
        if (!strstr(err, bad[i].err))
            fprintf(stderr, "  case %zu: %s\n", i, err);
        CHECK(strstr(err, bad[i].err) != NULL);
        json_object_put(x);
        json_object_put(t);
    }
}

TEST(chat_input)
{
    char err[512];
    ad_input in;
    json_object *m = json_tokener_parse(
        "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"q\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":[{\"type\":\"text\",\"text\":\"r\"}]}]");
    CHECK_EQ(ad_input_chat(m, NULL, &in, err, sizeof err), 0);
    CHECK(in.prompt == NULL); /* it ends with a result: the run goes on */
    CHECK_EQ(json_object_array_length(in.messages), 4);
    CHECK_STREQ(ad_json_str(json_object_array_get_idx(in.messages, 3), "content"), "r");
    ad_input_free(&in);
    json_object_put(m);
    m = json_tokener_parse("[]");
    CHECK_EQ(ad_input_chat(m, NULL, &in, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "non-empty") != NULL);
    json_object_put(m);
    m = json_tokener_parse("[{\"role\":\"tool\",\"content\":\"x\"}]");
    CHECK_EQ(ad_input_chat(m, NULL, &in, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "tool_call_id") != NULL);
    json_object_put(m);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(a_run_as_response_events);
    RUN(retries_client_tools_and_endings);
    RUN(chat_chunks);
    RUN(wire);
    RUN(responses_input);
    RUN(chat_input);
    return harness_report("test_respond");
}

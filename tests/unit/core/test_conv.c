/*
 * test_conv.c -- the conversation (runtime/core/conv.c): the history cache
 * against a fresh serialisation, tool-call ids, the turn markers, usage,
 * and the two rules on loaded histories (repair, check).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "base/json.h"
#include "core/conv.h"
#include "core/request.h"

static json_object *J(const char *text)
{
    return json_tokener_parse(text);
}

static bool same_json(json_object *a, json_object *b)
{
    return json_object_equal(a, b) != 0;
}

static const char *plain(json_object *o)
{
    return json_object_to_json_string_ext(o, AD_REQUEST_JSON_FLAGS);
}

/* ---- the history cache -------------------------------------------------- */

/* The body built from the cache is byte for byte the body built from the
 * messages as they are now. */
static bool body_is_fresh(ad_conv *c, const ad_config *cfg, json_object *tools)
{
    size_t l1 = 0, l2 = 0;
    char *cached = ad_conv_request_body(c, cfg, "m", tools, &l1);
    char *fresh = ad_request_body(cfg, "m", ad_conv_messages(c), tools, &l2);
    bool same = cached && fresh && l1 == l2 && memcmp(cached, fresh, l1) == 0;
    if (!same)
        fprintf(stderr, "  cached: %s\n  fresh:  %s\n", cached ? cached : "NULL",
                fresh ? fresh : "NULL");
    free(cached);
    free(fresh);
    return same;
}

/* r: a response with one call of add (id functions.add:0) and args. */
static void one_add_call(ad_response *r, ad_tool_call *call, const char *args)
{
    memset(r, 0, sizeof *r);
    *call = (ad_tool_call){.id = "functions.add:0", .name = "add"};
    ad_buf_puts(&call->args, args);
    r->calls = call;
    r->ncalls = 1;
}

TEST(history_cache_equals_a_fresh_serialisation)
{
    ad_config cfg;
    ad_config_init(&cfg);
    cfg.max_tokens = 100;
    json_object *tools = J("[{\"type\":\"function\",\"function\":{\"name\":\"add\"}}]");
    ad_conv *c = ad_conv_new();
    CHECK(c != NULL);
    CHECK(body_is_fresh(c, &cfg, tools)); /* empty */
    CHECK_EQ(ad_conv_add_text(c, "system", "be brief", 8), AD_OK);
    CHECK_EQ(ad_conv_add_prompt(c, "a/b \"quoted\" \xc3\xa9 \\ </script>"), AD_OK);
    CHECK(body_is_fresh(c, &cfg, tools));
    /* Appends of every kind, and one straight into the array. */
    ad_response r;
    ad_tool_call call;
    one_add_call(&r, &call, "{\"a\":1}");
    const char *ids[] = {"functions.add:0"};
    CHECK_EQ(ad_conv_add_answer(c, &r, ids), AD_OK);
    CHECK(body_is_fresh(c, &cfg, tools));
    CHECK_EQ(ad_conv_add_tool_result(c, "functions.add:0", "2", 1), AD_OK);
    json_object_array_add(ad_conv_messages(c),
                           J("{\"role\":\"assistant\",\"content\":\"two\",\"x\":[1,{}]}"));
    CHECK(body_is_fresh(c, &cfg, NULL));
    CHECK(body_is_fresh(c, &cfg, tools)); /* built twice: the same */
    /* Replaced by a history as long as the old one, then by a shorter one:
     * none of the old text survives. */
    json_object *other = J("[{\"role\":\"user\",\"content\":\"1\"},{\"role\":\"assistant\","
                           "\"content\":\"2\"},{\"role\":\"user\",\"content\":\"3\"},"
                           "{\"role\":\"assistant\",\"content\":\"4\"},{\"role\":\"user\","
                           "\"content\":\"5\"}]");
    CHECK_EQ(json_object_array_length(other), json_object_array_length(ad_conv_messages(c)));
    CHECK_EQ(ad_conv_replace(c, other), AD_OK);
    CHECK(body_is_fresh(c, &cfg, tools));
    json_object *shorter = J("[{\"role\":\"user\",\"content\":\"only\"}]");
    CHECK_EQ(ad_conv_replace(c, shorter), AD_OK);
    CHECK(body_is_fresh(c, &cfg, tools));
    CHECK_EQ(ad_conv_add_text(c, "assistant", "after", 5), AD_OK);
    CHECK(body_is_fresh(c, &cfg, tools));
    /* A deep copy: the caller's array is not the conversation. */
    CHECK(ad_conv_messages(c) != shorter);
    CHECK_EQ(json_object_array_length(shorter), 1);
    json_object *obj = J("{}");
    CHECK_EQ(ad_conv_replace(c, obj), AD_EINVAL);
    json_object_put(obj);
    json_object_put(other);
    json_object_put(shorter);
    ad_buf_free(&call.args);
    ad_conv_free(c);
    json_object_put(tools);
    ad_config_free(&cfg);
}

/* Until somebody asks for the messages, the conversation is its text: the
 * markers that read the last role, the count and the body work from it,
 * and the array parsed from it later is exactly what was appended. An
 * observer that keeps a message keeps it valid. */
static void keep_append(void *ud, json_object *msg)
{
    json_object_array_add(ud, json_object_get(msg));
}

TEST(text_only_until_asked)
{
    ad_config cfg;
    ad_config_init(&cfg);
    json_object *kept = json_object_new_array();
    ad_conv *c = ad_conv_new();
    ad_conv_set_observer(c, keep_append, kept);
    CHECK_EQ(ad_conv_count(c), 0);
    CHECK(!ad_conv_awaits_answer(c));
    CHECK_EQ(ad_conv_add_text(c, "system", "be brief", 8), AD_OK);
    CHECK(!ad_conv_awaits_answer(c));
    CHECK_EQ(ad_conv_add_prompt(c, "one \"q\" \xc3\xa9"), AD_OK);
    CHECK(ad_conv_awaits_answer(c));
    CHECK_EQ(ad_conv_add_prompt(c, "two"), AD_OK); /* the gap is marked */
    ad_response r;
    ad_tool_call call;
    one_add_call(&r, &call, "{\"a\":1.50}");
    r.has_reasoning = true;
    ad_buf_puts(&r.reasoning, "think");
    const char *ids[] = {"functions.add:0"};
    CHECK_EQ(ad_conv_add_answer(c, &r, ids), AD_OK);
    CHECK(!ad_conv_awaits_answer(c));
    CHECK_EQ(ad_conv_add_tool_result(c, "functions.add:0", "2.5", 3), AD_OK);
    CHECK_EQ(ad_conv_count(c), 6);
    size_t len = 0;
    char *body = ad_conv_request_body(c, &cfg, "m", NULL, &len);
    CHECK(body != NULL);
    json_object *want = J(
        "[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":\"one \\\"q\\\" \xc3\xa9\"},"
        "{\"role\":\"assistant\",\"content\":\"[no answer: the turn ended before the model "
        "answered]\"},"
        "{\"role\":\"user\",\"content\":\"two\"},"
        "{\"role\":\"assistant\",\"content\":null,\"reasoning\":\"think\",\"tool_calls\":"
        "[{\"id\":\"functions.add:0\",\"type\":\"function\",\"function\":{\"name\":\"add\","
        "\"arguments\":\"{\\\"a\\\":1.50}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"functions.add:0\",\"content\":\"2.5\"}]");
    CHECK(want != NULL);
    json_object *sent = J(body);
    CHECK(same_json(ad_json_get(sent, "messages"), want));
    CHECK(same_json(kept, want)); /* the observer's references */
    /* Asked: the array is the same messages, and it is kept. */
    json_object *msgs = ad_conv_messages(c);
    CHECK(same_json(msgs, want));
    CHECK(ad_conv_messages(c) == msgs);
    CHECK(body_is_fresh(c, &cfg, NULL));
    /* From then on appends go to the array, and the text follows. */
    CHECK_EQ(ad_conv_add_text(c, "assistant", "done", 4), AD_OK);
    CHECK_EQ(json_object_array_length(msgs), 7);
    CHECK_EQ(ad_conv_count(c), 7);
    CHECK(body_is_fresh(c, &cfg, NULL));
    json_object_put(sent);
    json_object_put(want);
    free(body);
    ad_buf_free(&call.args);
    ad_buf_free(&r.reasoning);
    ad_conv_free(c);
    json_object_put(kept);
    ad_config_free(&cfg);
}

/* ---- ids ---------------------------------------------------------------- */

TEST(tool_call_ids)
{
    ad_conv *c = ad_conv_new();
    CHECK(c != NULL);
    const char *pre = ad_conv_id_prefix(c);
    CHECK(pre && strlen(pre) == 12);
    CHECK_EQ(ad_conv_set_id_prefix(c, "rec_1-x"), AD_OK);
    ad_tool_call calls[5] = {
        {.id = "functions.add:0/\xc3\xa9"}, /* the provider's, byte-exact */
        {.id = NULL},                       /* none sent */
        {.id = ""},                         /* empty */
        {.id = "functions.add:0/\xc3\xa9"}, /* repeated */
        {.id = "toolu_02"},
    };
    ad_response r;
    memset(&r, 0, sizeof r);
    r.calls = calls;
    r.ncalls = 5;
    static const char *const want[] = {"functions.add:0/\xc3\xa9", "call_rec_1-x_1",
                                       "call_rec_1-x_2", "call_rec_1-x_3", "toolu_02"};
    for (size_t i = 0; i < 5; i++) {
        char *id = ad_conv_call_id(c, &r, i, false);
        CHECK_STREQ(id, want[i]);
        free(id);
    }
    /* unique_tool_call_ids: every id generated; the counter goes on. */
    char *id = ad_conv_call_id(c, &r, 0, true);
    CHECK_STREQ(id, "call_rec_1-x_4");
    free(id);
    /* A new prefix restarts the count; invalid ones are refused. */
    CHECK_EQ(ad_conv_set_id_prefix(c, "p"), AD_OK);
    id = ad_conv_call_id(c, &r, 1, false);
    CHECK_STREQ(id, "call_p_1");
    free(id);
    CHECK_EQ(ad_conv_set_id_prefix(c, ""), AD_EINVAL);
    CHECK_EQ(ad_conv_set_id_prefix(c, "a b"), AD_EINVAL);
    CHECK_EQ(ad_conv_set_id_prefix(c, "123456789012345678901234"), AD_EINVAL);
    CHECK_STREQ(ad_conv_id_prefix(c), "p");
    ad_conv_free(c);
    /* Two conversations get different prefixes. */
    ad_conv *c1 = ad_conv_new(), *c2 = ad_conv_new();
    CHECK(c1 && c2 && strcmp(ad_conv_id_prefix(c1), ad_conv_id_prefix(c2)) != 0);
    ad_conv_free(c1);
    ad_conv_free(c2);
}

/* ---- messages and markers ----------------------------------------------- */

static void count_append(void *ud, json_object *msg)
{
    (void)msg;
    (*(int *)ud)++;
}

TEST(answers_and_markers)
{
    ad_conv *c = ad_conv_new();
    int seen = 0;
    ad_conv_set_observer(c, count_append, &seen);
    CHECK(!ad_conv_awaits_answer(c));
    /* Cancelled before any prompt: nothing to mark. */
    CHECK_EQ(ad_conv_add_cut_answer(c, NULL, 0), AD_OK);
    CHECK_EQ(json_object_array_length(ad_conv_messages(c)), 0);
    CHECK_EQ(ad_conv_add_prompt(c, "one"), AD_OK);
    CHECK(ad_conv_awaits_answer(c));
    /* The next prompt without an answer in between: the gap is marked. */
    CHECK_EQ(ad_conv_add_prompt(c, "two"), AD_OK);
    /* Cancelled with nothing said, then with text said. */
    CHECK_EQ(ad_conv_add_cut_answer(c, NULL, 0), AD_OK);
    CHECK_EQ(ad_conv_add_prompt(c, "three"), AD_OK);
    CHECK_EQ(ad_conv_add_cut_answer(c, "partial", 7), AD_OK);
    CHECK_EQ(ad_conv_add_prompt(c, "four"), AD_OK);
    CHECK_EQ(ad_conv_add_cut_answer(c, "line\n", 5), AD_OK);
    /* Cancelled after the answer (during tools): nothing more. */
    CHECK_EQ(ad_conv_add_cut_answer(c, NULL, 0), AD_OK);
    json_object *want = J(
        "[{\"role\":\"user\",\"content\":\"one\"},"
        "{\"role\":\"assistant\",\"content\":\"[no answer: the turn ended before the model "
        "answered]\"},"
        "{\"role\":\"user\",\"content\":\"two\"},"
        "{\"role\":\"assistant\",\"content\":\"[no answer: cancelled by the user]\"},"
        "{\"role\":\"user\",\"content\":\"three\"},"
        "{\"role\":\"assistant\",\"content\":\"partial\\n[answer cut short: cancelled by the "
        "user]\"},"
        "{\"role\":\"user\",\"content\":\"four\"},"
        "{\"role\":\"assistant\",\"content\":\"line\\n[answer cut short: cancelled by the "
        "user]\"}]");
    CHECK(same_json(ad_conv_messages(c), want));
    CHECK_EQ(seen, 8);
    json_object_put(want);
    ad_conv_free(c);
}

TEST(assistant_messages)
{
    ad_conv *c = ad_conv_new();
    ad_response r;
    memset(&r, 0, sizeof r);
    /* A final answer without text: "" (not null). */
    CHECK_EQ(ad_conv_add_answer(c, &r, NULL), AD_OK);
    /* Calls without text: null content; reasoning verbatim; empty arguments
     * as the stream left them. */
    ad_tool_call calls[2] = {{.id = "x", .name = "add"}, {.id = "y", .name = NULL}};
    ad_buf_puts(&calls[0].args, "{\"a\": 1}");
    r.calls = calls;
    r.ncalls = 2;
    r.has_reasoning = true;
    ad_buf_puts(&r.reasoning, "think");
    r.reasoning_details = J("[{\"type\":\"reasoning.text\",\"text\":\"t\",\"signature\":\"s\"}]");
    const char *ids[] = {"id-x", "id-y"};
    CHECK_EQ(ad_conv_add_answer(c, &r, ids), AD_OK);
    CHECK_STREQ(plain(ad_conv_messages(c)),
                "[{\"role\":\"assistant\",\"content\":\"\"},"
                "{\"role\":\"assistant\",\"content\":null,\"reasoning\":\"think\","
                "\"reasoning_details\":[{\"type\":\"reasoning.text\",\"text\":\"t\","
                "\"signature\":\"s\"}],\"tool_calls\":["
                "{\"id\":\"id-x\",\"type\":\"function\",\"function\":{\"name\":\"add\","
                "\"arguments\":\"{\\\"a\\\": 1}\"}},"
                "{\"id\":\"id-y\",\"type\":\"function\",\"function\":{\"name\":\"\","
                "\"arguments\":\"{}\"}}]}]");
    json_object_put(r.reasoning_details);
    ad_buf_free(&r.reasoning);
    ad_buf_free(&calls[0].args);
    ad_conv_free(c);
}

/* ---- usage -------------------------------------------------------------- */

TEST(usage_sums)
{
    ad_usage u = AD_USAGE_INIT;
    CHECK(!ad_usage_any(&u));
    CHECK(ad_usage_json(&u) == NULL);
    json_object *a = J("{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
                       "\"cost\":0.00023248,\"extra\":{\"x\":1}}");
    json_object *b = J("{\"prompt_tokens\":20,\"completion_tokens\":null,\"total_tokens\":25,"
                       "\"cost\":0.00023248}");
    ad_usage_add(&u, a);
    ad_usage_add(&u, b);
    ad_usage_add(&u, NULL);
    json_object *str = J("\"not an object\"");
    ad_usage_add(&u, str);
    json_object_put(str);
    json_object *t = ad_usage_json(&u);
    CHECK_STREQ(plain(t), "{\"prompt_tokens\":30,\"completion_tokens\":5,\"total_tokens\":40,"
                          "\"cost\":0.00046496}");
    json_object_put(t);
    /* One response's usage keeps the provider's values as they are. */
    json_object *one = ad_usage_of_response(a);
    CHECK_STREQ(plain(one), "{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
                            "\"cost\":0.00023248}");
    json_object_put(one);
    json_object *none = J("{\"other\":1}");
    CHECK(ad_usage_of_response(none) == NULL);
    ad_usage only_cost = AD_USAGE_INIT;
    json_object *free_cost = J("{\"cost\":\"free\"}");
    ad_usage_add(&only_cost, free_cost);
    json_object_put(free_cost);
    CHECK(!ad_usage_any(&only_cost));
    json_object_put(none);
    json_object_put(a);
    json_object_put(b);
}

/* ---- repair ------------------------------------------------------------- */

static const char CALLS2[] =
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
    "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
    "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}";

static json_object *repaired(const char *text, size_t *added, size_t *dropped)
{
    json_object *in = J(text);
    json_object *out = ad_conv_repair(in, added, dropped);
    json_object_put(in);
    return out;
}

static bool repair_is(const char *in, const char *want, size_t want_added, size_t want_dropped)
{
    size_t a = 99, d = 99;
    json_object *got = repaired(in, &a, &d);
    json_object *w = J(want);
    bool okay = got && w && same_json(got, w) && a == want_added && d == want_dropped;
    if (!okay)
        fprintf(stderr, "repair: got %s (added %zu, dropped %zu)\n",
                got ? json_object_to_json_string(got) : "NULL", a, d);
    json_object_put(got);
    json_object_put(w);
    return okay;
}

#define U "{\"role\":\"user\",\"content\":\"u\"}"
#define TA "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"A\"}"
#define TB "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"B\"}"
#define IA "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"interrupted\"}"
#define IB "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"interrupted\"}"

TEST(repair_of_dangling_tool_calls)
{
    char in[2048], want[2048];
    /* Complete: unchanged. */
    snprintf(in, sizeof in, "[" U ",%s," TA "," TB "]", CALLS2);
    CHECK(repair_is(in, in, 0, 0));
    /* Killed before any result: both interrupted, in call order. */
    snprintf(in, sizeof in, "[" U ",%s]", CALLS2);
    snprintf(want, sizeof want, "[" U ",%s," IA "," IB "]", CALLS2);
    CHECK(repair_is(in, want, 2, 0));
    /* Killed between the results. */
    snprintf(in, sizeof in, "[" U ",%s," TA "]", CALLS2);
    snprintf(want, sizeof want, "[" U ",%s," TA "," IB "]", CALLS2);
    CHECK(repair_is(in, want, 1, 0));
    /* Only the second result: the first is filled in before it. */
    snprintf(in, sizeof in, "[" U ",%s," TB "]", CALLS2);
    snprintf(want, sizeof want, "[" U ",%s," IA "," TB "]", CALLS2);
    CHECK(repair_is(in, want, 1, 0));
    /* Out of order: put in call order. */
    snprintf(in, sizeof in, "[%s," TB "," TA "," U "]", CALLS2);
    snprintf(want, sizeof want, "[%s," TA "," TB "," U "]", CALLS2);
    CHECK(repair_is(in, want, 0, 0));
    /* Dangling in the middle, then the conversation went on. */
    snprintf(in, sizeof in, "[%s," U "]", CALLS2);
    snprintf(want, sizeof want, "[%s," IA "," IB "," U "]", CALLS2);
    CHECK(repair_is(in, want, 2, 0));
    /* A result for no call, and a duplicate result: dropped. */
    snprintf(in, sizeof in, "[" U "," TA ",%s," TA "," TA "," TB "]", CALLS2);
    snprintf(want, sizeof want, "[" U ",%s," TA "," TB "]", CALLS2);
    CHECK(repair_is(in, want, 0, 2));
    /* Empty and non-array input. */
    CHECK(repair_is("[]", "[]", 0, 0));
    CHECK(repair_is("{}", "[]", 0, 0));
}

/* ---- check -------------------------------------------------------------- */

static int check(const char *json, char *err, size_t errlen)
{
    json_object *o = json_tokener_parse(json);
    err[0] = '\0';
    int rc = ad_conv_check(o, err, errlen);
    json_object_put(o);
    return rc;
}

#define CALL(id) "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{}\"}}"
#define TOOL(id) "{\"role\":\"tool\",\"tool_call_id\":\"" id "\",\"content\":\"5\"}"

TEST(valid_conversations)
{
    char err[512];
    CHECK_EQ(check("[]", err, sizeof err), AD_OK);
    CHECK_EQ(check("[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"u\"},"
                   "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" CALL("a") "," CALL("b") "]},"
                   TOOL("b") "," TOOL("a") ",{\"role\":\"assistant\",\"content\":\"done\"},"
                   "{\"role\":\"user\",\"content\":\"again\"},{\"role\":\"user\",\"content\":\"twice\"}]",
                   err, sizeof err),
             AD_OK);
    /* The same id may come back in a later turn (some providers reuse them). */
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[" CALL("x") "]}," TOOL("x") ","
                   "{\"role\":\"assistant\",\"tool_calls\":[" CALL("x") "]}," TOOL("x") "]",
                   err, sizeof err),
             AD_OK);
    /* Multimodal user content is an array. */
    CHECK_EQ(check("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]", err,
                   sizeof err),
             AD_OK);
}

TEST(invalid_conversations)
{
    char err[512];
    CHECK_EQ(check("{}", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "not an array") != NULL);
    CHECK_EQ(check("[1]", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "message 1 is not an object") != NULL);
    CHECK_EQ(check("[{\"content\":\"x\"}]", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "no \"role\"") != NULL);
    CHECK_EQ(check("[{\"role\":\"wizard\",\"content\":\"x\"}]", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "unknown role \"wizard\"") != NULL);
    CHECK_EQ(check("[{\"role\":\"user\"}]", err, sizeof err), AD_EINVAL);
    CHECK_EQ(check("[{\"role\":\"user\",\"content\":5}]", err, sizeof err), AD_EINVAL);
    /* A call without its result, at the end and before the next message. */
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[" CALL("a") "]}]", err, sizeof err),
             AD_EINVAL);
    CHECK(strstr(err, "tool call \"a\" has no tool message") != NULL);
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[" CALL("a") "," CALL("b") "]}," TOOL("a")
                   ",{\"role\":\"user\",\"content\":\"u\"}]",
                   err, sizeof err),
             AD_EINVAL);
    CHECK(strstr(err, "\"b\" has no tool message before message 3") != NULL);
    /* A result without its call, or twice. */
    CHECK_EQ(check("[" TOOL("a") "]", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "not open") != NULL);
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[" CALL("a") "]}," TOOL("a") "," TOOL("a") "]",
                   err, sizeof err),
             AD_EINVAL);
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[" CALL("a") "," CALL("a") "]}]", err,
                   sizeof err),
             AD_EINVAL);
    CHECK(strstr(err, "repeated") != NULL);
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\"}]}]", err, sizeof err),
             AD_EINVAL);
    CHECK_EQ(check("[{\"role\":\"assistant\",\"tool_calls\":{}}]", err, sizeof err), AD_EINVAL);
    CHECK_EQ(check("[{\"role\":\"tool\",\"content\":\"5\"}]", err, sizeof err), AD_EINVAL);
    CHECK_EQ(ad_conv_check(NULL, err, sizeof err), AD_EINVAL);
}

TEST(tool_parts_message)
{
    ad_conv *c = ad_conv_new();
    int seen = 0;
    ad_conv_set_observer(c, count_append, &seen);
    const char *ids[] = {"c1", "c2", "c3"}, *names[] = {"fx__shot", "add", "fx__two"};
    json_object *none[] = {NULL, J("[]"), NULL};
    /* No parts: no message. */
    CHECK_EQ(ad_conv_add_tool_parts(c, 3, ids, names, none), AD_OK);
    CHECK_EQ(json_object_array_length(ad_conv_messages(c)), 0);
    json_object_put(none[1]);
    json_object *one[] = {J("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,QQ==\"}}]"),
                          NULL, NULL};
    CHECK_EQ(ad_conv_add_tool_parts(c, 3, ids, names, one), AD_OK);
    json_object *want = J("{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                          "\"The image returned by tool call c1 (fx__shot).\"},{\"type\":"
                          "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,QQ==\"}}]}");
    CHECK(same_json(json_object_array_get_idx(ad_conv_messages(c), 0), want));
    json_object_put(want);
    /* Several calls: named with their counts, the parts in call order. */
    json_object *two[] = {one[0], NULL,
                          J("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/gif;base64,Rw==\"}},"
                            "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/gif;base64,SA==\"}}]")};
    CHECK_EQ(ad_conv_add_tool_parts(c, 3, ids, names, two), AD_OK);
    json_object *m = json_object_array_get_idx(ad_conv_messages(c), 1);
    json_object *content = json_object_object_get(m, "content");
    CHECK_EQ(json_object_array_length(content), 4);
    CHECK_STREQ(json_object_get_string(json_object_object_get(json_object_array_get_idx(content, 0), "text")),
                "The images returned by tool calls c1 (fx__shot: 1), c3 (fx__two: 2), in that order.");
    CHECK(same_json(json_object_array_get_idx(content, 1), json_object_array_get_idx(one[0], 0)));
    CHECK(same_json(json_object_array_get_idx(content, 3), json_object_array_get_idx(two[2], 1)));
    CHECK_EQ(seen, 2);
    /* Only one call with several images. */
    json_object *three[] = {NULL, NULL, two[2]};
    CHECK_EQ(ad_conv_add_tool_parts(c, 3, ids, names, three), AD_OK);
    m = json_object_array_get_idx(ad_conv_messages(c), 2);
    CHECK_STREQ(json_object_get_string(json_object_object_get(
                    json_object_array_get_idx(json_object_object_get(m, "content"), 0), "text")),
                "The 2 images returned by tool call c3 (fx__two).");
    /* What the request sends, and what a loaded history is checked for. */
    char err[256];
    CHECK_EQ(ad_conv_check(ad_conv_messages(c), err, sizeof err), AD_OK);
    json_object_put(one[0]);
    json_object_put(two[2]);
    ad_config cfg = {0};
    size_t len = 0;
    char *body = ad_conv_request_body(c, &cfg, "m", NULL, &len);
    CHECK(body && strstr(body, "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/gif;base64,SA==\"}}"));
    free(body);
    ad_conv_free(c);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(history_cache_equals_a_fresh_serialisation);
    RUN(text_only_until_asked);
    RUN(tool_call_ids);
    RUN(answers_and_markers);
    RUN(tool_parts_message);
    RUN(assistant_messages);
    RUN(usage_sums);
    RUN(repair_of_dangling_tool_calls);
    RUN(valid_conversations);
    RUN(invalid_conversations);
    return harness_report("test_conv");
}

/*
 * test_request.c -- the request builder (ad_agent_request_body): what goes
 * to POST {base_url}/chat/completions for a given config and conversation.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../harness.h"
#include "core/agent.h"
#include "base/buf.h"
#include "base/config.h"

static uv_loop_t loop;

static ad_config base_config(void)
{
    ad_config c;
    ad_config_init(&c);
    c.base_url = ad_strdup("http://127.0.0.1:1/v1");
    c.model = ad_strdup("test/model");
    return c;
}

/* Builds the body for cfg with the given conversation (JSON text or NULL). */
static json_object *body_for(ad_config *cfg, ad_tool_host *tools, const char *messages)
{
    ad_agent_opts o = {&loop, NULL, cfg, tools, NULL};
    ad_agent *a = ad_agent_new(&o);
    if (!a)
        return NULL;
    if (messages) {
        json_object *m = json_tokener_parse(messages);
        ad_agent_load_messages(a, m);
        json_object_put(m);
    }
    size_t len = 0;
    char *text = ad_agent_request_body(a, &len);
    json_object *body = text ? json_tokener_parse(text) : NULL;
    if (text && strlen(text) != len)
        body = NULL;
    free(text);
    ad_agent_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    return body;
}

static const char *str_at(json_object *o, const char *path)
{
    /* path like "messages.0.role" */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_object *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) {
        json_object *next = NULL;
        if (json_object_is_type(cur, json_type_array))
            next = json_object_array_get_idx(cur, (size_t)atoi(tok));
        else
            json_object_object_get_ex(cur, tok, &next);
        cur = next;
    }
    return cur ? json_object_get_string(cur) : NULL;
}

TEST(streaming_defaults)
{
    ad_config c = base_config();
    c.system_prompt = ad_strdup("be brief");
    json_object *b = body_for(&c, NULL, NULL);
    CHECK(b != NULL);
    CHECK_STREQ(str_at(b, "model"), "test/model");
    CHECK_STREQ(str_at(b, "stream"), "true");
    CHECK_STREQ(str_at(b, "stream_options.include_usage"), "true");
    CHECK_STREQ(str_at(b, "messages.0.role"), "system");
    CHECK_STREQ(str_at(b, "messages.0.content"), "be brief");
    json_object *v;
    CHECK(!json_object_object_get_ex(b, "tools", &v)); /* no tools: no key */
    CHECK(!json_object_object_get_ex(b, "max_tokens", &v));
    json_object_put(b);
    ad_config_free(&c);
}

TEST(non_streaming_has_no_stream_key)
{
    ad_config c = base_config();
    c.stream = false;
    c.max_tokens = 77;
    json_object *b = body_for(&c, NULL, NULL);
    json_object *v;
    CHECK(!json_object_object_get_ex(b, "stream", &v));
    CHECK(!json_object_object_get_ex(b, "stream_options", &v));
    CHECK_STREQ(str_at(b, "max_tokens"), "77");
    json_object_put(b);
    ad_config_free(&c);
}

TEST(extra_is_merged_and_overrides)
{
    ad_config c = base_config();
    c.extra = json_tokener_parse("{\"usage\":{\"include\":true},\"stream_options\":{\"include_usage\":false},"
                                 "\"max_completion_tokens\":100,\"model\":\"override\"}");
    json_object *b = body_for(&c, NULL, NULL);
    CHECK_STREQ(str_at(b, "usage.include"), "true");
    CHECK_STREQ(str_at(b, "stream_options.include_usage"), "false");
    CHECK_STREQ(str_at(b, "max_completion_tokens"), "100");
    CHECK_STREQ(str_at(b, "model"), "override");
    json_object_put(b);
    ad_config_free(&c);
}

TEST(history_goes_out_verbatim)
{
    ad_config c = base_config();
    const char *hist =
        "[{\"role\":\"user\",\"content\":\"Add 2 and 3 ✓\"},"
        "{\"role\":\"assistant\",\"content\":null,\"reasoning_details\":[{\"type\":\"reasoning.text\","
        "\"text\":\"hm\",\"signature\":\"s/ig\"}],\"tool_calls\":[{\"id\":\"functions.add:0\",\"type\":"
        "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\": 2, \\\"b\\\": 3}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"functions.add:0\",\"content\":\"5\"}]";
    json_object *b = body_for(&c, NULL, hist);
    CHECK_STREQ(str_at(b, "messages.0.content"), "Add 2 and 3 ✓");
    CHECK_STREQ(str_at(b, "messages.1.tool_calls.0.id"), "functions.add:0");
    CHECK_STREQ(str_at(b, "messages.1.tool_calls.0.function.arguments"), "{\"a\": 2, \"b\": 3}");
    CHECK_STREQ(str_at(b, "messages.1.reasoning_details.0.signature"), "s/ig");
    CHECK_STREQ(str_at(b, "messages.2.tool_call_id"), "functions.add:0");
    json_object *m1 = json_object_array_get_idx(json_object_object_get(b, "messages"), 1);
    json_object *content = NULL;
    CHECK(json_object_object_get_ex(m1, "content", &content) && content == NULL); /* null kept */
    json_object_put(b);
    ad_config_free(&c);
}

TEST(body_text_is_compact_without_escaped_slashes)
{
    ad_config c = base_config();
    ad_agent_opts o = {&loop, NULL, &c, NULL, NULL};
    ad_agent *a = ad_agent_new(&o);
    json_object *m = json_tokener_parse("[{\"role\":\"user\",\"content\":\"a/b\"}]");
    ad_agent_load_messages(a, m);
    json_object_put(m);
    size_t len;
    char *text = ad_agent_request_body(a, &len);
    CHECK(strstr(text, "\"a/b\"") != NULL);
    CHECK(strstr(text, ": ") == NULL);
    CHECK(strstr(text, "\"model\":\"test/model\"") != NULL);
    free(text);
    ad_agent_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    ad_config_free(&c);
}

TEST(history_of_200_messages)
{
    ad_config c = base_config();
    ad_buf h = AD_BUF_INIT;
    ad_buf_putc(&h, '[');
    for (int i = 0; i < 200; i++)
        ad_buf_printf(&h, "%s{\"role\":\"%s\",\"content\":\"message %d\"}", i ? "," : "",
                      i % 2 ? "assistant" : "user", i);
    ad_buf_putc(&h, ']');
    json_object *b = body_for(&c, NULL, h.data);
    CHECK_EQ(json_object_array_length(json_object_object_get(b, "messages")), 200);
    CHECK_STREQ(str_at(b, "messages.199.content"), "message 199");
    json_object_put(b);
    ad_buf_free(&h);
    ad_config_free(&c);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    RUN(streaming_defaults);
    RUN(non_streaming_has_no_stream_key);
    RUN(extra_is_merged_and_overrides);
    RUN(history_goes_out_verbatim);
    RUN(body_text_is_compact_without_escaped_slashes);
    RUN(history_of_200_messages);
    /* Every handle the agents opened was closed (libuv's valgrind-happy idea). */
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "the loop still has open handles\n");
        harness_failed++;
    }
    return harness_report("test_request");
}

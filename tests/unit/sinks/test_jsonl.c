/*
 * test_jsonl.c -- the JSON Lines sink, byte for byte: one line per event
 * kind that has one, nothing for the others, U+FFFD for invalid UTF-8, and
 * errors and warnings as text on the error stream too. Output goes to
 * temporary files that are read back.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "core/events.h"
#include "sinks/jsonl.h"

static char *contents(FILE *f)
{
    fflush(f);
    ad_buf b = AD_BUF_INIT;
    char tmp[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fileno(f), tmp, sizeof tmp, off)) > 0) {
        ad_buf_append(&b, tmp, (size_t)n);
        off += n;
    }
    ad_buf_putc(&b, '\0');
    return ad_buf_steal(&b);
}

TEST(every_kind_byte_for_byte)
{
    FILE *out = tmpfile(), *err = tmpfile();
    ad_events *e = ad_events_new();
    ad_events_set_secret(e, "sk-abcdef");
    ad_events_add(e, ad_jsonl_sink_new(out, err));
    json_object *u = json_tokener_parse("{\"prompt_tokens\":3,\"completion_tokens\":2,"
                                        "\"total_tokens\":5,\"cost\":0.25}");
    ad_events_step_start(e, 1, true);
    ad_events_text(e, 1, "Hi \"you\"\n\t\x01\xff", 12);
    ad_events_tool_call(e, 1, "c1", "add", "{\"a\":2}", 7, false);
    ad_events_approval(e, 1, "c1", "add", "{}", 2);
    ad_events_tool_progress(e, 1, "c1", "add", 1, 2, "half");
    ad_events_tool_progress(e, 1, "c1", "add", 0.5, 0, NULL);
    ad_events_tool_result(e, 1, "c1", "add", "5 sk-abcdef", 11, false, 0.1);
    ad_events_tool_result(e, 1, NULL, "x", "bad", 3, true, 0);
    ad_events_step_finish(e, 1, "tool_calls", u);
    ad_events_step_finish(e, 2, NULL, NULL);
    ad_events_retry(e, 2, 1, "HTTP 503", 0.5);
    ad_events_tool_call(e, 3, NULL, "mul", "{}", 2, true);
    ad_events_finish(e, 3, "done", 4, u);
    ad_events_end(e, 3, 0);
    json_object *m = json_tokener_parse("{\"role\":\"user\",\"content\":\"x\"}");
    ad_events_message(e, 1, m);
    ad_events_history(e, m);
    ad_events_warn(e, "careful");
    ad_events_error(e, "it broke: %d", 42);
    ad_events_fail(e, "line one\nline two");
    ad_events_free(e);
    json_object_put(u);
    json_object_put(m);
    char *o = contents(out), *r = contents(err);
    CHECK_STREQ(o,
                "{\"type\":\"text_delta\",\"step\":1,\"text\":\"Hi \\\"you\\\"\\n\\t\\u0001\xef\xbf\xbd\"}\n"
                "{\"type\":\"tool_call\",\"step\":1,\"id\":\"c1\",\"name\":\"add\",\"arguments\":"
                "\"{\\\"a\\\":2}\"}\n"
                "{\"type\":\"tool_progress\",\"step\":1,\"id\":\"c1\",\"name\":\"add\",\"progress\":1,"
                "\"total\":2,\"message\":\"half\"}\n"
                "{\"type\":\"tool_progress\",\"step\":1,\"id\":\"c1\",\"name\":\"add\",\"progress\":0.5,"
                "\"total\":null,\"message\":null}\n"
                "{\"type\":\"tool_result\",\"step\":1,\"id\":\"c1\",\"name\":\"add\",\"content\":"
                "\"5 [REDACTED]\",\"is_error\":false}\n"
                "{\"type\":\"tool_result\",\"step\":1,\"id\":null,\"name\":\"x\",\"content\":\"bad\","
                "\"is_error\":true}\n"
                "{\"type\":\"step_finish\",\"step\":1,\"finish_reason\":\"tool_calls\",\"usage\":"
                "{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,\"cost\":0.25}}\n"
                "{\"type\":\"step_finish\",\"step\":2,\"finish_reason\":null,\"usage\":null}\n"
                "{\"type\":\"retry\",\"step\":2,\"attempt\":1,\"reason\":\"HTTP 503\",\"wait_s\":0.500}\n"
                "{\"type\":\"tool_call\",\"step\":3,\"id\":null,\"name\":\"mul\",\"arguments\":\"{}\","
                "\"not_run\":true}\n"
                "{\"type\":\"finish\",\"steps\":3,\"text\":\"done\",\"usage\":{\"prompt_tokens\":3,"
                "\"completion_tokens\":2,\"total_tokens\":5,\"cost\":0.25}}\n"
                "{\"type\":\"error\",\"message\":\"it broke: 42\"}\n"
                "{\"type\":\"error\",\"message\":\"line one\\nline two\"}\n");
    CHECK_STREQ(r, "agentd: warning: careful\n"
                   "agentd: error: it broke: 42\n"
                   "agentd: line one\n"
                   "agentd: line two\n");
    free(o);
    free(r);
    fclose(out);
    fclose(err);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(every_kind_byte_for_byte);
    return harness_report("test_jsonl");
}

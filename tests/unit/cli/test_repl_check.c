/*
 * test_repl_check.c -- the REPL's pure parts: the conversation check /load relies
 * on, and where the history file lives. The session itself is tested through
 * a pseudo-terminal in tests/integration/test_repl.py.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "../../harness.h"
#include "cli/repl.h"

static int check(const char *json, char *err, size_t errlen)
{
    json_object *o = json_tokener_parse(json);
    err[0] = '\0';
    int rc = ad_repl_check_messages(o, err, errlen);
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
    CHECK_EQ(ad_repl_check_messages(NULL, err, sizeof err), AD_EINVAL);
}

TEST(history_path)
{
    char *saved_xdg = getenv("XDG_STATE_HOME") ? ad_strdup(getenv("XDG_STATE_HOME")) : NULL;
    char *saved_home = getenv("HOME") ? ad_strdup(getenv("HOME")) : NULL;
    setenv("XDG_STATE_HOME", "/st", 1);
    setenv("HOME", "/home/u", 1);
    char *p = ad_repl_history_path();
    CHECK_STREQ(p, "/st/agentd/history");
    free(p);
    /* A relative XDG_STATE_HOME is invalid (XDG spec): fall back. */
    setenv("XDG_STATE_HOME", "rel", 1);
    p = ad_repl_history_path();
    CHECK_STREQ(p, "/home/u/.local/state/agentd/history");
    free(p);
    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
    CHECK(ad_repl_history_path() == NULL);
    if (saved_xdg)
        setenv("XDG_STATE_HOME", saved_xdg, 1);
    if (saved_home)
        setenv("HOME", saved_home, 1);
    free(saved_xdg);
    free(saved_home);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(valid_conversations);
    RUN(invalid_conversations);
    RUN(history_path);
    return harness_report("test_repl_check");
}

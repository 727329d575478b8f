/*
 * test_jsonrpc.c -- JSON-RPC 2.0 messages: what is accepted as a request, a
 * notification or a response, what is refused and why, and what the
 * builders write.
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "mcp/jsonrpc.h"

static int parse(const char *text, ad_rpc_msg *m, char *err, size_t errlen)
{
    return ad_rpc_parse(text, strlen(text), m, NULL, err, errlen);
}

TEST(request)
{
    ad_rpc_msg m;
    char err[256];
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"roots/list\"}", &m, err, sizeof err), 0);
    CHECK_EQ(m.kind, AD_RPC_REQUEST);
    CHECK_STREQ(m.method, "roots/list");
    int64_t id = -1;
    CHECK(ad_rpc_id_int(m.id, &id));
    CHECK_EQ(id, 0);
    CHECK(m.params == NULL);
    ad_rpc_msg_free(&m);
    /* A string id, params, surrounding whitespace (a CR of a CRLF line). */
    CHECK_EQ(parse(" {\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"ping\",\"params\":{}}\r\n", &m,
                   err, sizeof err),
             0);
    CHECK_EQ(m.kind, AD_RPC_REQUEST);
    CHECK(!ad_rpc_id_int(m.id, &id));
    CHECK_STREQ(json_object_get_string(m.id), "a-1");
    CHECK(m.params && json_object_is_type(m.params, json_type_object));
    ad_rpc_msg_free(&m);
}

TEST(notification)
{
    ad_rpc_msg m;
    char err[256];
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}", &m, err,
                   sizeof err),
             0);
    CHECK_EQ(m.kind, AD_RPC_NOTIFICATION);
    CHECK(m.id == NULL);
    CHECK_STREQ(m.method, "notifications/tools/list_changed");
    ad_rpc_msg_free(&m);
}

TEST(responses)
{
    ad_rpc_msg m;
    char err[256];
    int64_t id;
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[]}}", &m, err, sizeof err), 0);
    CHECK_EQ(m.kind, AD_RPC_RESULT);
    CHECK(ad_rpc_id_int(m.id, &id) && id == 7);
    CHECK(json_object_is_type(m.result, json_type_object));
    ad_rpc_msg_free(&m);
    /* A null result is still a result. */
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":null}", &m, err, sizeof err), 0);
    CHECK_EQ(m.kind, AD_RPC_RESULT);
    CHECK(m.result == NULL);
    ad_rpc_msg_free(&m);
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,\"message\":\"bad\","
                   "\"data\":[1]}}",
                   &m, err, sizeof err),
             0);
    CHECK_EQ(m.kind, AD_RPC_ERROR);
    CHECK_EQ(m.code, -32602);
    CHECK_STREQ(m.message, "bad");
    CHECK(m.data && json_object_is_type(m.data, json_type_array));
    ad_rpc_msg_free(&m);
    /* An error answering an unparseable request has id null. */
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}",
                   &m, err, sizeof err),
             0);
    CHECK_EQ(m.kind, AD_RPC_ERROR);
    CHECK(m.id == NULL);
    ad_rpc_msg_free(&m);
    /* An error without a code still ends its request. */
    CHECK_EQ(parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":\"oops\"}", &m, err, sizeof err), 0);
    CHECK_EQ(m.kind, AD_RPC_ERROR);
    CHECK_EQ(m.code, AD_RPC_INTERNAL_ERROR);
    ad_rpc_msg_free(&m);
}

static void refused(const char *text, const char *why)
{
    ad_rpc_msg m;
    char err[256] = "";
    int rc = parse(text, &m, err, sizeof err);
    CHECK_EQ(rc, AD_EINVAL);
    CHECK(m.root == NULL);
    if (!strstr(err, why))
        fprintf(stderr, "  %s: got '%s', want '%s'\n", text, err, why);
    CHECK(strstr(err, why) != NULL);
}

TEST(refused)
{
    refused("Starting server on stdio...", "not JSON");
    refused("", "not JSON");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}} trailing", "at byte 37");
    refused("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]", "batches are not supported");
    refused("\"a string\"", "not an object");
    refused("null", "null");
    refused("{\"id\":1,\"result\":{}}", "\"jsonrpc\": \"2.0\"");
    refused("{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}", "\"jsonrpc\": \"2.0\"");
    refused("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", "null");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", "neither a string nor an integer");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", "not a string");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":3}", "params");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1}", "neither");
    refused("{\"jsonrpc\":\"2.0\",\"result\":{}}", "without \"id\"");
    refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", "both");
    refused("{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}", "null");
    refused("{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{}}", "neither a string nor an integer");
    /* Deeper than 256 levels. */
    ad_buf deep = AD_BUF_INIT;
    ad_buf_puts(&deep, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":");
    for (int i = 0; i < 300; i++)
        ad_buf_putc(&deep, '[');
    for (int i = 0; i < 300; i++)
        ad_buf_putc(&deep, ']');
    ad_buf_putc(&deep, '}');
    refused(deep.data, "not JSON");
    ad_buf_free(&deep);
}

TEST(bad_request_keeps_its_id)
{
    ad_rpc_msg m;
    json_object *bad = NULL;
    char err[256];
    const char *t = "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"x\",\"params\":\"no\"}";
    CHECK_EQ(ad_rpc_parse(t, strlen(t), &m, &bad, err, sizeof err), AD_EINVAL);
    CHECK(bad != NULL);
    CHECK_EQ(json_object_get_int(bad), 5);
    json_object_put(bad);
    bad = NULL;
    t = "not json";
    CHECK_EQ(ad_rpc_parse(t, strlen(t), &m, &bad, err, sizeof err), AD_EINVAL);
    CHECK(bad == NULL);
}

TEST(builders)
{
    size_t len = 0;
    json_object *p = json_object_new_object();
    json_object_object_add(p, "uri", json_object_new_string("file:///a/b\n"));
    char *s = ad_rpc_request(12, "tools/call", p, &len);
    CHECK_STREQ(s, "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":{\"uri\":"
                   "\"file:///a/b\\n\"}}");
    CHECK_EQ(len, strlen(s));
    CHECK(strchr(s, '\n') == NULL); /* one line, always */
    free(s);
    s = ad_rpc_notification("notifications/initialized", NULL, &len);
    CHECK_STREQ(s, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    free(s);
    json_object *sid = json_object_new_string("abc");
    s = ad_rpc_result(sid, NULL, &len);
    CHECK_STREQ(s, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":{}}");
    free(s);
    json_object *iid = json_object_new_int(0);
    s = ad_rpc_error(iid, AD_RPC_METHOD_NOT_FOUND, "Method not found", NULL, &len);
    CHECK_STREQ(s, "{\"jsonrpc\":\"2.0\",\"id\":0,\"error\":{\"code\":-32601,\"message\":\"Method not "
                   "found\"}}");
    free(s);
    /* What a builder writes parses back. */
    ad_rpc_msg m;
    char err[128];
    s = ad_rpc_request(3, "ping", NULL, &len);
    CHECK_EQ(ad_rpc_parse(s, len, &m, NULL, err, sizeof err), 0);
    CHECK_EQ(m.kind, AD_RPC_REQUEST);
    ad_rpc_msg_free(&m);
    free(s);
    /* The builders took references of their own. */
    CHECK_EQ(json_object_put(p), 1);
    CHECK_EQ(json_object_put(sid), 1);
    CHECK_EQ(json_object_put(iid), 1);
}

TEST(ids_never_repeat)
{
    ad_rpc_ids ids = {0};
    int64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t id = ad_rpc_next_id(&ids);
        CHECK(id > prev);
        CHECK(id != 0);
        prev = id;
    }
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(request);
    RUN(notification);
    RUN(responses);
    RUN(refused);
    RUN(bad_request_keeps_its_id);
    RUN(builders);
    RUN(ids_never_repeat);
    return harness_report("test_jsonrpc");
}

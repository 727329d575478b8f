/*
 * test_schema.c -- the JSON Schema subset: every keyword, valid and invalid,
 * with the exact messages a model gets back.
 */
#include "../../harness.h"
#include "base/buf.h"
#include "core/schema.h"

#include <stdlib.h>

/* Validates value against schema (both JSON text); returns the message, or
 * "ok" when valid. The returned buffer is static. */
static const char *v(const char *schema, const char *value)
{
    static char err[600];
    json_object *s = json_tokener_parse(schema);
    json_object *x = json_tokener_parse(value);
    if ((s == NULL && strcmp(schema, "null") != 0) || (x == NULL && strcmp(value, "null") != 0)) {
        json_object_put(s);
        json_object_put(x);
        return "(test JSON does not parse)";
    }
    err[0] = '\0';
    int rc = ad_schema_validate(s, x, err, sizeof err);
    json_object_put(s);
    json_object_put(x);
    if (rc == 0)
        return "ok";
    if (rc != AD_EINVAL)
        return "(unexpected return code)";
    return err;
}

static const char *chk(const char *schema)
{
    static char err[600];
    json_object *s = json_tokener_parse(schema);
    err[0] = '\0';
    int rc = ad_schema_check(s, err, sizeof err);
    json_object_put(s);
    return rc == 0 ? "ok" : err;
}

TEST(type_single)
{
    CHECK_STREQ(v("{\"type\":\"string\"}", "\"x\""), "ok");
    CHECK_STREQ(v("{\"type\":\"string\"}", "1"), "$: expected string, got integer");
    CHECK_STREQ(v("{\"type\":\"number\"}", "1.5"), "ok");
    CHECK_STREQ(v("{\"type\":\"number\"}", "1"), "ok");
    CHECK_STREQ(v("{\"type\":\"number\"}", "\"1\""), "$: expected number, got string");
    CHECK_STREQ(v("{\"type\":\"boolean\"}", "true"), "ok");
    CHECK_STREQ(v("{\"type\":\"boolean\"}", "0"), "$: expected boolean, got integer");
    CHECK_STREQ(v("{\"type\":\"null\"}", "null"), "ok");
    CHECK_STREQ(v("{\"type\":\"null\"}", "false"), "$: expected null, got boolean");
    CHECK_STREQ(v("{\"type\":\"object\"}", "{}"), "ok");
    CHECK_STREQ(v("{\"type\":\"object\"}", "[]"), "$: expected object, got array");
    CHECK_STREQ(v("{\"type\":\"array\"}", "[]"), "ok");
    CHECK_STREQ(v("{\"type\":\"array\"}", "{}"), "$: expected array, got object");
    CHECK_STREQ(v("{\"type\":\"string\"}", "null"), "$: expected string, got null");
}

TEST(type_integer)
{
    CHECK_STREQ(v("{\"type\":\"integer\"}", "3"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "-3"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "3.0"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "1e3"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "1e300"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "3.5"), "$: expected integer, got number");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "\"3\""), "$: expected integer, got string");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "true"), "$: expected integer, got boolean");
    /* Big integers: beyond int64 and beyond uint64 are still integers. */
    CHECK_STREQ(v("{\"type\":\"integer\"}", "9223372036854775808"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "18446744073709551615"), "ok");
    CHECK_STREQ(v("{\"type\":\"integer\"}", "-9223372036854775808"), "ok");
}

TEST(type_list)
{
    CHECK_STREQ(v("{\"type\":[\"string\",\"null\"]}", "null"), "ok");
    CHECK_STREQ(v("{\"type\":[\"string\",\"null\"]}", "\"a\""), "ok");
    CHECK_STREQ(v("{\"type\":[\"string\",\"null\"]}", "2"), "$: expected string or null, got integer");
    CHECK_STREQ(v("{\"type\":[\"integer\",\"boolean\"]}", "2.5"),
                "$: expected integer or boolean, got number");
}

TEST(properties_and_paths)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                    "\"inner\":{\"type\":\"object\",\"properties\":{\"list\":{\"type\":\"array\","
                    "\"items\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"string\"}}}}}},"
                    "\"odd key\":{\"type\":\"boolean\"}}}";
    CHECK_STREQ(v(s, "{\"a\":1,\"inner\":{\"list\":[{\"n\":\"x\"}]},\"odd key\":true}"), "ok");
    CHECK_STREQ(v(s, "{\"a\":\"1\"}"), "$.a: expected integer, got string");
    CHECK_STREQ(v(s, "{\"inner\":{\"list\":[{\"n\":\"x\"},{\"n\":5}]}}"),
                "$.inner.list[1].n: expected string, got integer");
    CHECK_STREQ(v(s, "{\"odd key\":1}"), "$[\"odd key\"]: expected boolean, got integer");
    /* Unlisted properties are allowed by default. */
    CHECK_STREQ(v(s, "{\"zzz\":[1,2]}"), "ok");
}

TEST(required)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                    "\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}";
    CHECK_STREQ(v(s, "{\"a\":1,\"b\":2}"), "ok");
    CHECK_STREQ(v(s, "{\"a\":1}"), "$: missing required property \"b\"");
    CHECK_STREQ(v(s, "{}"), "$: missing required property \"a\"");
    CHECK_STREQ(v("{\"properties\":{\"o\":{\"required\":[\"x\"]}}}", "{\"o\":{}}"),
                "$.o: missing required property \"x\"");
    /* required applies to objects only */
    CHECK_STREQ(v("{\"required\":[\"x\"]}", "5"), "ok");
    /* a null value still counts as present */
    CHECK_STREQ(v(s, "{\"a\":1,\"b\":null}"), "$.b: expected integer, got null");
}

TEST(additional_properties)
{
    const char *closed = "{\"properties\":{\"a\":{}},\"additionalProperties\":false}";
    CHECK_STREQ(v(closed, "{\"a\":1}"), "ok");
    CHECK_STREQ(v(closed, "{\"a\":1,\"b\":2}"), "$: unexpected property \"b\"");
    CHECK_STREQ(v("{\"additionalProperties\":true}", "{\"b\":2}"), "ok");
    const char *typed = "{\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"string\"}}";
    CHECK_STREQ(v(typed, "{\"a\":1,\"b\":\"x\"}"), "ok");
    CHECK_STREQ(v(typed, "{\"a\":1,\"b\":2}"), "$.b: expected string, got integer");
}

TEST(enum_and_const)
{
    const char *s = "{\"enum\":[\"c\",\"f\",2,null,{\"k\":[1]}]}";
    CHECK_STREQ(v(s, "\"c\""), "ok");
    CHECK_STREQ(v(s, "2"), "ok");
    CHECK_STREQ(v(s, "2.0"), "ok"); /* JSON equality: 2 == 2.0 */
    CHECK_STREQ(v(s, "null"), "ok");
    CHECK_STREQ(v(s, "{\"k\":[1.0]}"), "ok");
    CHECK_STREQ(v(s, "\"k\""), "$: value is not one of [\"c\",\"f\",2,null,{\"k\":[1]}]");
    CHECK_STREQ(v(s, "{\"k\":[1],\"x\":1}"),
                "$: value is not one of [\"c\",\"f\",2,null,{\"k\":[1]}]");
    CHECK_STREQ(v(s, "\"C\""), "$: value is not one of [\"c\",\"f\",2,null,{\"k\":[1]}]");
    CHECK_STREQ(v("{\"const\":5}", "5"), "ok");
    CHECK_STREQ(v("{\"const\":5}", "5.0"), "ok");
    CHECK_STREQ(v("{\"const\":5}", "6"), "$: value must be 5");
    CHECK_STREQ(v("{\"const\":\"a/b\"}", "\"a\""), "$: value must be \"a/b\"");
    CHECK_STREQ(v("{\"const\":null}", "0"), "$: value must be null");
    CHECK_STREQ(v("{\"const\":[1,2]}", "[1,2]"), "ok");
    CHECK_STREQ(v("{\"const\":[1,2]}", "[2,1]"), "$: value must be [1,2]");
    /* strings with embedded NULs compare by length too */
    CHECK_STREQ(v("{\"const\":\"a\"}", "\"a\\u0000b\""), "$: value must be \"a\"");
}

TEST(items_and_counts)
{
    const char *s = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,"
                    "\"maxItems\":3}";
    CHECK_STREQ(v(s, "[1]"), "ok");
    CHECK_STREQ(v(s, "[1,2,3]"), "ok");
    CHECK_STREQ(v(s, "[]"), "$: array has 0 items, fewer than minItems 1");
    CHECK_STREQ(v(s, "[1,2,3,4]"), "$: array has 4 items, more than maxItems 3");
    CHECK_STREQ(v(s, "[1,\"2\"]"), "$[1]: expected integer, got string");
    /* tuple form: positional schemas, the rest unchecked */
    const char *tuple = "{\"items\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}";
    CHECK_STREQ(v(tuple, "[\"a\",1,true]"), "ok");
    CHECK_STREQ(v(tuple, "[\"a\",\"b\"]"), "$[1]: expected integer, got string");
}

TEST(numeric_bounds)
{
    const char *s = "{\"type\":\"number\",\"minimum\":1,\"maximum\":10.5}";
    CHECK_STREQ(v(s, "1"), "ok");
    CHECK_STREQ(v(s, "10.5"), "ok");
    CHECK_STREQ(v(s, "0"), "$: 0 is less than minimum 1");
    CHECK_STREQ(v(s, "0.5"), "$: 0.5 is less than minimum 1");
    CHECK_STREQ(v(s, "11"), "$: 11 is greater than maximum 10.5");
    const char *ex = "{\"exclusiveMinimum\":0,\"exclusiveMaximum\":100}";
    CHECK_STREQ(v(ex, "0.001"), "ok");
    CHECK_STREQ(v(ex, "0"), "$: 0 is not greater than 0");
    CHECK_STREQ(v(ex, "100"), "$: 100 is not less than 100");
    /* draft 4 boolean form */
    CHECK_STREQ(v("{\"minimum\":0,\"exclusiveMinimum\":true}", "0"), "$: 0 is not greater than 0");
    CHECK_STREQ(v("{\"maximum\":5,\"exclusiveMaximum\":true}", "4"), "ok");
    CHECK_STREQ(v("{\"maximum\":5,\"exclusiveMaximum\":true}", "5"), "$: 5 is not less than 5");
    /* exact comparisons at the edges of int64 and with big integers */
    CHECK_STREQ(v("{\"maximum\":9223372036854775807}", "9223372036854775807"), "ok");
    CHECK_STREQ(v("{\"maximum\":9223372036854775807}", "9223372036854775808"),
                "$: 9223372036854775808 is greater than maximum 9223372036854775807");
    CHECK_STREQ(v("{\"minimum\":-9223372036854775807}", "-9223372036854775808"),
                "$: -9223372036854775808 is less than minimum -9223372036854775807");
    CHECK_STREQ(v("{\"maximum\":9007199254740992}", "9007199254740993"),
                "$: 9007199254740993 is greater than maximum 9007199254740992");
    CHECK_STREQ(v("{\"minimum\":0.5}", "1"), "ok");
    /* bounds do not apply to other types */
    CHECK_STREQ(v("{\"minimum\":5}", "\"a\""), "ok");
}

TEST(string_lengths)
{
    const char *s = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}";
    CHECK_STREQ(v(s, "\"ab\""), "ok");
    CHECK_STREQ(v(s, "\"abc\""), "ok");
    CHECK_STREQ(v(s, "\"a\""), "$: string has 1 characters, fewer than minLength 2");
    CHECK_STREQ(v(s, "\"abcd\""), "$: string has 4 characters, more than maxLength 3");
    /* characters, not bytes: three 2- and 3-byte characters */
    CHECK_STREQ(v(s, "\"\xC3\xA9\xE2\x82\xAC\xC3\xA9\""), "ok");
    CHECK_STREQ(v(s, "\"\xF0\x9F\x98\x80\""), "$: string has 1 characters, fewer than minLength 2");
}

TEST(combinators)
{
    const char *any = "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"minimum\":0}]}";
    CHECK_STREQ(v(any, "\"x\""), "ok");
    CHECK_STREQ(v(any, "3"), "ok");
    CHECK_STREQ(v(any, "-1"),
                "$: value matches none of the anyOf alternatives (first: $: expected string, got "
                "integer)");
    const char *one = "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\",\"minimum\":10}]}";
    CHECK_STREQ(v(one, "3"), "ok");
    CHECK_STREQ(v(one, "10.5"), "ok");
    CHECK_STREQ(v(one, "12"), "$: value matches 2 of the oneOf alternatives, expected exactly one");
    CHECK_STREQ(v(one, "\"x\""),
                "$: value matches none of the oneOf alternatives (first: $: expected integer, got "
                "string)");
    const char *all = "{\"allOf\":[{\"type\":\"integer\"},{\"maximum\":5}]}";
    CHECK_STREQ(v(all, "5"), "ok");
    CHECK_STREQ(v(all, "6"), "$: 6 is greater than maximum 5");
    CHECK_STREQ(v(all, "5.5"), "$: expected integer, got number");
    /* nested: the branch message keeps its full path */
    CHECK_STREQ(v("{\"properties\":{\"p\":{\"anyOf\":[{\"type\":\"null\"},{\"properties\":{\"q\":"
                  "{\"type\":\"string\"}}}]}}}",
                  "{\"p\":{\"q\":1}}"),
                "$.p: value matches none of the anyOf alternatives (first: $.p: expected null, got "
                "object)");
}

TEST(boolean_and_odd_schemas)
{
    CHECK_STREQ(v("true", "{\"x\":1}"), "ok");
    CHECK_STREQ(v("false", "1"), "$: no value is allowed here");
    CHECK_STREQ(v("{\"properties\":{\"x\":false}}", "{\"x\":1}"), "$.x: no value is allowed here");
    CHECK_STREQ(v("{}", "[1,{}]"), "ok");
    /* unknown keywords and keywords of the wrong type are ignored */
    CHECK_STREQ(v("{\"format\":\"email\",\"pattern\":\"^x$\",\"minLength\":\"2\"}", "\"a\""), "ok");
    CHECK_STREQ(v("{\"required\":\"a\",\"properties\":[1]}", "{}"), "ok");
}

TEST(depth_bound)
{
    /* A schema nested 100 levels deep against a value nested as deep. */
    ad_buf s = AD_BUF_INIT, x = AD_BUF_INIT;
    for (int i = 0; i < 100; i++) {
        ad_buf_puts(&s, "{\"items\":");
        ad_buf_puts(&x, "[");
    }
    ad_buf_puts(&s, "{}");
    ad_buf_puts(&x, "1");
    for (int i = 0; i < 100; i++) {
        ad_buf_puts(&s, "}");
        ad_buf_puts(&x, "]");
    }
    /* json-c's default parser depth is 32, so build the objects by hand. */
    json_tokener *tok = json_tokener_new_ex(200);
    json_object *so = json_tokener_parse_ex(tok, s.data, (int)s.len);
    json_tokener_reset(tok);
    json_object *xo = json_tokener_parse_ex(tok, x.data, (int)x.len);
    json_tokener_free(tok);
    CHECK(so != NULL && xo != NULL);
    char err[300];
    CHECK_EQ(ad_schema_validate(so, xo, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "nested too deeply") != NULL);
    char err2[300];
    CHECK_EQ(ad_schema_check(so, err2, sizeof err2), AD_EINVAL);
    if (strstr(err2, "nested too deeply") == NULL)
        fprintf(stderr, "err2: %s\n", err2);
    CHECK(strstr(err2, "nested too deeply") != NULL);
    json_object_put(so);
    json_object_put(xo);
    ad_buf_free(&s);
    ad_buf_free(&x);
}

TEST(schema_check)
{
    CHECK_STREQ(chk("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                    "\"required\":[\"a\"]}"),
                "ok");
    CHECK_STREQ(chk("{}"), "ok");
    CHECK_STREQ(chk("{\"properties\":{}}"), "ok");
    CHECK_STREQ(chk("[1]"), "parameters must be a JSON object (a JSON Schema), got array");
    CHECK_STREQ(chk("null"), "parameters must be a JSON object (a JSON Schema), got null");
    CHECK_STREQ(chk("{\"type\":\"string\"}"), "parameters schema must have \"type\": \"object\"");
    CHECK_STREQ(chk("{\"type\":[\"object\"]}"), "parameters schema must have \"type\": \"object\"");
    CHECK_STREQ(chk("{\"properties\":{\"a\":{\"type\":\"integr\"}}}"),
                "schema $.properties.a: unknown \"type\"");
    CHECK_STREQ(chk("{\"properties\":{\"a\":5}}"),
                "schema $.properties.a: a schema must be a JSON object");
    CHECK_STREQ(chk("{\"properties\":[]}"), "schema $: \"properties\" must be an object");
    CHECK_STREQ(chk("{\"required\":\"a\"}"), "schema $: \"required\" must be an array of strings");
    CHECK_STREQ(chk("{\"required\":[1]}"), "schema $: \"required\" must be an array of strings");
    CHECK_STREQ(chk("{\"properties\":{\"l\":{\"items\":{\"type\":7}}}}"),
                "schema $.properties.l.items: \"type\" must be a string or an array of strings");
    CHECK_STREQ(chk("{\"properties\":{\"l\":{\"minItems\":-1}}}"),
                "schema $.properties.l: minLength/maxLength/minItems/maxItems must be non-negative "
                "integers");
    CHECK_STREQ(chk("{\"properties\":{\"e\":{\"enum\":\"x\"}}}"),
                "schema $.properties.e: \"enum\" must be an array");
    CHECK_STREQ(chk("{\"anyOf\":[]}"), "schema $: anyOf/oneOf/allOf must be a non-empty array");
    CHECK_STREQ(chk("{\"properties\":{\"x y\":{\"oneOf\":[{\"type\":\"bad\"}]}}}"),
                "schema $.properties[\"x y\"].oneOf[0]: unknown \"type\"");
    CHECK_STREQ(chk("{\"additionalProperties\":{\"type\":\"nope\"}}"),
                "schema $.additionalProperties: unknown \"type\"");
}

TEST(long_messages_are_bounded)
{
    /* A tiny error buffer still gets a NUL-terminated prefix. */
    json_object *s = json_tokener_parse("{\"type\":\"string\"}");
    json_object *x = json_tokener_parse("1");
    char err[8];
    memset(err, 'x', sizeof err);
    CHECK_EQ(ad_schema_validate(s, x, err, sizeof err), AD_EINVAL);
    CHECK_EQ(strlen(err), 7);
    CHECK(ad_schema_validate(s, x, NULL, 0) == AD_EINVAL);
    json_object_put(s);
    json_object_put(x);
    /* A huge enum is cut in the message. */
    ad_buf e = AD_BUF_INIT;
    ad_buf_puts(&e, "{\"enum\":[");
    for (int i = 0; i < 500; i++)
        ad_buf_printf(&e, "%s\"value%d\"", i ? "," : "", i);
    ad_buf_puts(&e, "]}");
    const char *msg = v(e.data, "\"nope\"");
    CHECK(strncmp(msg, "$: value is not one of [\"value0\",", 33) == 0);
    CHECK(strlen(msg) < 400);
    ad_buf_free(&e);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(type_single);
    RUN(type_integer);
    RUN(type_list);
    RUN(properties_and_paths);
    RUN(required);
    RUN(additional_properties);
    RUN(enum_and_const);
    RUN(items_and_counts);
    RUN(numeric_bounds);
    RUN(string_lengths);
    RUN(combinators);
    RUN(boolean_and_odd_schemas);
    RUN(depth_bound);
    RUN(schema_check);
    RUN(long_messages_are_bounded);
    return harness_report("test_schema");
}

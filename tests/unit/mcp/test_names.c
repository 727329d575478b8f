/*
 * test_names.c -- model-facing names of MCP tools (sanitised, shortened
 * with a hash, clashes told apart, mapped back exactly) and the schemas
 * providers get.
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "mcp/names.h"

static void name_is(const char *prefix, const char *tool, const char *want)
{
    char *got = ad_mcp_model_name(prefix, tool);
    CHECK_STREQ(got, want);
    CHECK(got && ad_mcp_name_ok(got));
    free(got);
}

TEST(plain_and_sanitised)
{
    name_is("fs", "read_file", "fs__read_file");
    name_is("", "read_file", "read_file");
    name_is("fs", "read-file2", "fs__read-file2");
    name_is("my server", "a.b/c d", "my_server__a_b_c_d");
    /* One '_' per character, not per byte; an invalid byte is one too. */
    name_is("fs", "caf\xc3\xa9", "fs__caf_");
    name_is("fs", "\xe6\x97\xa5\xe6\x9c\xac", "fs__" "__");
    name_is("fs", "a\xff" "b", "fs__a_b");
    char *none = ad_mcp_model_name("fs", "");
    CHECK(none == NULL);
}

TEST(long_names_are_shortened_with_a_hash)
{
    char tool[200];
    memset(tool, 'x', 150);
    tool[150] = '\0';
    char *a = ad_mcp_model_name("srv", tool);
    CHECK(a && strlen(a) == 64);
    CHECK(ad_mcp_name_ok(a));
    CHECK(strncmp(a, "srv__xxxx", 9) == 0);
    CHECK(a[55] == '_');
    /* Another long name with the same beginning gets another name. */
    tool[149] = 'y';
    char *b = ad_mcp_model_name("srv", tool);
    CHECK(b && strlen(b) == 64 && strcmp(a, b) != 0);
    CHECK(strncmp(a, b, 55) == 0);
    /* 64 bytes exactly are kept as they are. */
    memset(tool, 'z', 59);
    tool[59] = '\0';
    char *c = ad_mcp_model_name("srv", tool);
    CHECK(c && strlen(c) == 64 && strchr(c, 'z') && strncmp(c, "srv__zzz", 8) == 0);
    CHECK(c[63] == 'z');
    free(a);
    free(b);
    free(c);
}

TEST(map_back_exactly)
{
    ad_mcp_names m = {0};
    char err[256];
    int rc;
    int s1, s2;
    const char *x = ad_mcp_names_add(&m, "fs", "read.file", &s1, &rc, err, sizeof err);
    CHECK(x != NULL);
    const char *y = ad_mcp_names_add(&m, "mem", "read.file", &s2, &rc, err, sizeof err);
    CHECK(y != NULL);
    const ad_mcp_name *e = ad_mcp_names_find(&m, "fs__read_file");
    CHECK(e && strcmp(e->tool, "read.file") == 0 && strcmp(e->prefix, "fs") == 0 && e->ud == &s1);
    e = ad_mcp_names_find(&m, "mem__read_file");
    CHECK(e && e->ud == &s2);
    CHECK(ad_mcp_names_find(&m, "read.file") == NULL);
    ad_mcp_names_free(&m);
}

TEST(clashes)
{
    ad_mcp_names m = {0};
    char err[256];
    int rc;
    /* "a.b" sanitises to what "a_b" is: the one that needed no change keeps
     * the plain name, whichever came first. */
    CHECK(ad_mcp_names_add(&m, "s", "a.b", NULL, &rc, err, sizeof err) != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "a_b", NULL, &rc, err, sizeof err) != NULL);
    const ad_mcp_name *plain = ad_mcp_names_find(&m, "s__a_b");
    CHECK(plain && strcmp(plain->tool, "a_b") == 0);
    size_t hashed = 0;
    for (size_t i = 0; i < m.n; i++)
        if (strcmp(m.v[i].tool, "a.b") == 0) {
            hashed++;
            CHECK(strncmp(m.v[i].model, "s__a_b_", 7) == 0 && strlen(m.v[i].model) == 15);
            CHECK(ad_mcp_name_ok(m.v[i].model));
        }
    CHECK_EQ(hashed, 1);
    /* Both changed: the newcomer takes its hash. */
    CHECK(ad_mcp_names_add(&m, "s", "c.d", NULL, &rc, err, sizeof err) != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "c/d", NULL, &rc, err, sizeof err) != NULL);
    const ad_mcp_name *cd = ad_mcp_names_find(&m, "s__c_d");
    CHECK(cd && strcmp(cd->tool, "c.d") == 0);
    /* Two servers with one prefix and a tool of one name: told apart too. */
    CHECK(ad_mcp_names_add(&m, "s__x", "y", NULL, &rc, err, sizeof err) != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "x__y", NULL, &rc, err, sizeof err) != NULL);
    CHECK_EQ(m.n, 6);
    for (size_t i = 0; i < m.n; i++)
        for (size_t j = i + 1; j < m.n; j++)
            CHECK(strcmp(m.v[i].model, m.v[j].model) != 0);
    /* The same prefix and tool twice is refused. */
    CHECK(ad_mcp_names_add(&m, "s", "a_b", NULL, &rc, err, sizeof err) == NULL);
    CHECK_EQ(rc, AD_EINVAL);
    CHECK(strstr(err, "offered twice") != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "", NULL, &rc, err, sizeof err) == NULL);
    CHECK_EQ(rc, AD_EINVAL);
    ad_mcp_names_free(&m);
}

TEST(unresolvable_clash_reported)
{
    /* Learn the name "a.b" moves to, then take that name first. */
    ad_mcp_names m = {0};
    char err[256], moved[80] = "";
    int rc;
    ad_mcp_names_add(&m, "s", "a.b", NULL, &rc, err, sizeof err);
    ad_mcp_names_add(&m, "s", "a_b", NULL, &rc, err, sizeof err);
    for (size_t i = 0; i < m.n; i++)
        if (strcmp(m.v[i].tool, "a.b") == 0)
            snprintf(moved, sizeof moved, "%s", m.v[i].model + 3); /* without "s__" */
    ad_mcp_names_free(&m);
    CHECK(strlen(moved) == 12);
    CHECK(ad_mcp_names_add(&m, "s", moved, NULL, &rc, err, sizeof err) != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "a_b", NULL, &rc, err, sizeof err) != NULL);
    CHECK(ad_mcp_names_add(&m, "s", "a.b", NULL, &rc, err, sizeof err) == NULL);
    CHECK_EQ(rc, AD_EINVAL);
    CHECK(strstr(err, "'a.b'") && strstr(err, "left out"));
    CHECK_EQ(m.n, 2);
    ad_mcp_names_free(&m);
}

static json_object *parse(const char *s)
{
    return json_tokener_parse(s);
}

TEST(schema_clean)
{
    json_object *orig = parse("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":"
                              "\"object\",\"properties\":{\"$schema\":{\"type\":\"string\"}},"
                              "\"required\":[\"$schema\"]}");
    json_object *c = ad_mcp_schema_clean(orig);
    CHECK(c != NULL);
    CHECK(!json_object_object_get_ex(c, "$schema", NULL));
    /* A property named $schema is a property, not the keyword. */
    json_object *props = NULL;
    CHECK(json_object_object_get_ex(c, "properties", &props));
    CHECK(json_object_object_get_ex(props, "$schema", NULL));
    /* The original is untouched. */
    CHECK(json_object_object_get_ex(orig, "$schema", NULL));
    json_object_put(c);
    json_object_put(orig);

    orig = parse("{}");
    c = ad_mcp_schema_clean(orig);
    CHECK_STREQ(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN),
                "{\"type\":\"object\",\"properties\":{}}");
    json_object_put(c);
    json_object_put(orig);

    orig = parse("{\"type\":\"object\",\"properties\":[]}");
    c = ad_mcp_schema_clean(orig);
    CHECK_STREQ(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN),
                "{\"type\":\"object\",\"properties\":{}}");
    json_object_put(c);
    json_object_put(orig);

    c = ad_mcp_schema_clean(NULL);
    CHECK_STREQ(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN),
                "{\"type\":\"object\",\"properties\":{}}");
    json_object_put(c);
    orig = parse("[1]");
    c = ad_mcp_schema_clean(orig);
    CHECK_STREQ(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN),
                "{\"type\":\"object\",\"properties\":{}}");
    json_object_put(c);
    json_object_put(orig);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(plain_and_sanitised);
    RUN(long_names_are_shortened_with_a_hash);
    RUN(map_back_exactly);
    RUN(clashes);
    RUN(unresolvable_clash_reported);
    RUN(schema_clean);
    return harness_report("test_names");
}

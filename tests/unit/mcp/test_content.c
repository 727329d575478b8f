/*
 * test_content.c -- tools/call results as tool-message text: every content
 * type, structuredContent, isError, and the cap with its marker.
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "mcp/content.h"

static void render(const char *json, size_t max, ad_mcp_content *out, int want_rc)
{
    json_object *r = json_tokener_parse(json);
    char err[256];
    CHECK(r != NULL);
    CHECK_EQ(ad_mcp_content_render(r, max, out, err, sizeof err), want_rc);
    json_object_put(r);
}

TEST(text_blocks)
{
    ad_mcp_content c;
    render("{\"content\":[{\"type\":\"text\",\"text\":\"one\"},{\"type\":\"text\",\"text\":\"two\"}]}",
           1 << 20, &c, 0);
    CHECK_STREQ(c.text, "one\ntwo");
    CHECK_EQ(c.len, 7);
    CHECK(!c.is_error);
    CHECK_EQ(c.cut, 0);
    CHECK_EQ(c.nmedia, 0);
    ad_mcp_content_free(&c);
    /* A NUL inside a text survives (len counts it). */
    render("{\"content\":[{\"type\":\"text\",\"text\":\"a\\u0000b\"}]}", 1 << 20, &c, 0);
    CHECK_EQ(c.len, 3);
    CHECK(memcmp(c.text, "a\0b", 3) == 0);
    ad_mcp_content_free(&c);
}

TEST(is_error)
{
    ad_mcp_content c;
    render("{\"content\":[{\"type\":\"text\",\"text\":\"no such file\"}],\"isError\":true}", 1 << 20,
           &c, 0);
    CHECK(c.is_error);
    CHECK_STREQ(c.text, "no such file");
    ad_mcp_content_free(&c);
}

TEST(image_and_audio)
{
    ad_mcp_content c;
    /* "iVBORw0KGgo=" is the 8-byte PNG signature. */
    render("{\"content\":[{\"type\":\"text\",\"text\":\"before\"},{\"type\":\"image\",\"data\":"
           "\"iVBORw0KGgo=\",\"mimeType\":\"image/png\"},{\"type\":\"audio\",\"data\":\"UklGRg==\","
           "\"mimeType\":\"audio/wav\"}]}",
           1 << 20, &c, 0);
    CHECK_STREQ(c.text, "before\n[image: image/png, 8 bytes]\n[audio: audio/wav, 4 bytes]");
    CHECK_EQ(c.nmedia, 2);
    CHECK_EQ(c.media[0].kind, AD_MCP_IMAGE);
    CHECK_STREQ(c.media[0].mime, "image/png");
    CHECK_EQ(c.media[0].len, 8);
    CHECK(memcmp(c.media[0].data, "\x89PNG\r\n\x1a\n", 8) == 0);
    CHECK_EQ(c.media[1].kind, AD_MCP_AUDIO);
    CHECK(memcmp(c.media[1].data, "RIFF", 4) == 0);
    ad_mcp_content_free(&c);
    /* Data that is not base64 is said so, and not kept. */
    render("{\"content\":[{\"type\":\"image\",\"data\":\"***\",\"mimeType\":\"image/png\"}]}", 1 << 20,
           &c, 0);
    CHECK_STREQ(c.text, "[image: image/png, data missing or not base64]");
    CHECK_EQ(c.nmedia, 0);
    ad_mcp_content_free(&c);
}

static const char *part_url(json_object *parts, size_t i)
{
    json_object *p = json_object_array_get_idx(parts, i), *iu = NULL, *u = NULL, *t = NULL;
    if (!json_object_object_get_ex(p, "type", &t) || strcmp(json_object_get_string(t), "image_url"))
        return NULL;
    if (!json_object_object_get_ex(p, "image_url", &iu) || !json_object_object_get_ex(iu, "url", &u))
        return NULL;
    return json_object_get_string(u);
}

TEST(image_parts)
{
    ad_mcp_content c;
    /* URL-safe base64 with whitespace and no padding comes out standard;
     * PDF "images", audio and one over the cap stay described. */
    render("{\"content\":[{\"type\":\"image\",\"data\":\"iVBO Rw0K\\nGgo\",\"mimeType\":\"image/png\"},"
           "{\"type\":\"image\",\"data\":\"__-_\",\"mimeType\":\"image/svg+xml\"},"
           "{\"type\":\"image\",\"data\":\"iVBORw0KGgo=\",\"mimeType\":\"application/pdf\"},"
           "{\"type\":\"image\",\"data\":\"iVBORw0KGgo=\"},"
           "{\"type\":\"image\",\"data\":\"iVBORw0KGgo=\",\"mimeType\":\"image/png;x,y\"},"
           "{\"type\":\"image\",\"data\":\"iVBORw0KGgo=\",\"mimeType\":\"image/\"},"
           "{\"type\":\"audio\",\"data\":\"UklGRg==\",\"mimeType\":\"image/wav\"},"
           "{\"type\":\"image\",\"data\":\"AAAAAAAAAAAA\",\"mimeType\":\"image/gif\"},"
           "{\"type\":\"image\",\"data\":\"QQ==\",\"mimeType\":\"image/x.a-b_c\"}]}",
           1 << 20, &c, 0);
    CHECK_EQ(c.nmedia, 9);
    json_object *parts = ad_mcp_image_parts(&c, 8);
    CHECK(parts != NULL);
    CHECK_EQ(json_object_array_length(parts), 3);
    CHECK_STREQ(part_url(parts, 0), "data:image/png;base64,iVBORw0KGgo=");
    CHECK_STREQ(part_url(parts, 1), "data:image/svg+xml;base64,//+/");
    CHECK_STREQ(part_url(parts, 2), "data:image/x.a-b_c;base64,QQ==");
    json_object_put(parts);
    /* No limit: the 9-byte GIF too. */
    parts = ad_mcp_image_parts(&c, 0);
    CHECK_EQ(json_object_array_length(parts), 4);
    CHECK_STREQ(part_url(parts, 2), "data:image/gif;base64,AAAAAAAAAAAA");
    json_object_put(parts);
    parts = ad_mcp_image_parts(&c, 1); /* only the 1-byte one */
    CHECK_EQ(json_object_array_length(parts), 1);
    json_object_put(parts);
    ad_mcp_content_free(&c);
    /* Nothing to show: NULL. */
    render("{\"content\":[{\"type\":\"text\",\"text\":\"no image\"},{\"type\":\"image\","
           "\"data\":\"QQ==\",\"mimeType\":\"text/plain\"}]}",
           1 << 20, &c, 0);
    CHECK(ad_mcp_image_parts(&c, 0) == NULL);
    ad_mcp_content_free(&c);
}

TEST(resources)
{
    ad_mcp_content c;
    render("{\"content\":[{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///a.txt\",\"mimeType\":"
           "\"text/plain\",\"text\":\"hello\"}},{\"type\":\"resource\",\"resource\":{\"uri\":"
           "\"file:///b.bin\",\"blob\":\"AAEC\"}},{\"type\":\"resource_link\",\"uri\":"
           "\"file:///c\",\"name\":\"c\",\"description\":\"the c file\"},{\"type\":"
           "\"resource_link\",\"uri\":\"file:///d\"}]}",
           1 << 20, &c, 0);
    CHECK_STREQ(c.text, "[resource file:///a.txt (text/plain)]\nhello\n"
                        "[resource file:///b.bin: no MIME type, 3 bytes]\n"
                        "[resource link: file:///c (c): the c file]\n"
                        "[resource link: file:///d]");
    ad_mcp_content_free(&c);
}

TEST(structured_content)
{
    ad_mcp_content c;
    /* Without a text block, the JSON itself. */
    render("{\"content\":[],\"structuredContent\":{\"sum\":3}}", 1 << 20, &c, 0);
    CHECK_STREQ(c.text, "{\"sum\":3}");
    ad_mcp_content_free(&c);
    render("{\"structuredContent\":{\"sum\":3}}", 1 << 20, &c, 0);
    CHECK_STREQ(c.text, "{\"sum\":3}");
    ad_mcp_content_free(&c);
    /* With one (the server's serialised copy), the text only. */
    render("{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"sum\\\": 3}\"}],\"structuredContent\":"
           "{\"sum\":3}}",
           1 << 20, &c, 0);
    CHECK_STREQ(c.text, "{\"sum\": 3}");
    ad_mcp_content_free(&c);
}

TEST(odd_results)
{
    ad_mcp_content c;
    render("{\"content\":[{\"type\":\"video\",\"data\":\"x\"},7,{\"text\":\"no type\"}]}", 1 << 20, &c,
           0);
    CHECK_STREQ(c.text, "[content of an unsupported type 'video']\n[a content block that is not an "
                        "object]\n[a content block without a type]");
    ad_mcp_content_free(&c);
    render("{\"isError\":false}", 1 << 20, &c, AD_EINVAL);
    CHECK(c.is_error);
    CHECK_STREQ(c.text, "[the MCP server's result has no content]");
    ad_mcp_content_free(&c);
    render("[]", 1 << 20, &c, AD_EINVAL);
    CHECK(c.text != NULL);
    ad_mcp_content_free(&c);
}

TEST(cap_with_marker)
{
    /* 10000 bytes of two-byte characters, capped at 1000. */
    ad_buf j = AD_BUF_INIT;
    ad_buf_puts(&j, "{\"content\":[{\"type\":\"text\",\"text\":\"");
    for (int i = 0; i < 5000; i++)
        ad_buf_puts(&j, "\xc3\xa9");
    ad_buf_puts(&j, "\"}]}");
    ad_mcp_content c;
    render(j.data, 1000, &c, 0);
    CHECK(c.len <= 1000);
    CHECK_EQ(c.total, 10000);
    CHECK_EQ(c.len, strlen(c.text));
    const char *m = strstr(c.text, "\n[agentd: ");
    CHECK(m != NULL);
    /* The kept part is whole characters, and the marker says how much went. */
    size_t kept = (size_t)(m - c.text);
    CHECK_EQ(kept % 2, 0);
    CHECK_EQ(c.cut, 10000 - kept);
    char want[128];
    snprintf(want, sizeof want, "%zu of 10000 bytes cut", c.cut);
    CHECK(strstr(m, want) != NULL);
    CHECK(strstr(m, "the limit is 1000") != NULL);
    ad_mcp_content_free(&c);
    /* At the limit exactly: nothing is cut. */
    ad_buf_reset(&j);
    ad_buf_puts(&j, "{\"content\":[{\"type\":\"text\",\"text\":\"");
    for (int i = 0; i < 1000; i++)
        ad_buf_putc(&j, 'x');
    ad_buf_puts(&j, "\"}]}");
    render(j.data, 1000, &c, 0);
    CHECK_EQ(c.len, 1000);
    CHECK_EQ(c.cut, 0);
    ad_mcp_content_free(&c);
    ad_buf_free(&j);
}

TEST(base64)
{
    size_t n = 0;
    unsigned char *d = ad_mcp_base64_decode("aGVsbG8=", 8, &n);
    CHECK(d && n == 5 && memcmp(d, "hello", 5) == 0);
    free(d);
    d = ad_mcp_base64_decode("aGVs\nbG8", 8, &n);
    CHECK(d && n == 5 && memcmp(d, "hello", 5) == 0);
    free(d);
    d = ad_mcp_base64_decode("", 0, &n);
    CHECK(d && n == 0);
    free(d);
    CHECK(ad_mcp_base64_decode("a", 1, &n) == NULL);
    CHECK(ad_mcp_base64_decode("aGVs=bG8", 8, &n) == NULL);
    CHECK(ad_mcp_base64_decode("aG!s", 4, &n) == NULL);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(text_blocks);
    RUN(is_error);
    RUN(image_and_audio);
    RUN(image_parts);
    RUN(resources);
    RUN(structured_content);
    RUN(odd_results);
    RUN(cap_with_marker);
    RUN(base64);
    return harness_report("test_content");
}

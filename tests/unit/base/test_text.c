/*
 * test_text.c -- redaction, UTF-8 checks and cuts, edit distance
 * (runtime/base/text.c); base64 (runtime/base/base64.c).
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/base64.h"
#include "base/text.h"

#define KEY "sk-secret-123"

TEST(redact_replaces_every_occurrence)
{
    size_t n = 0;
    char *r = ad_redact("a " KEY " b " KEY, strlen("a " KEY " b " KEY), KEY, &n);
    CHECK_STREQ(r, "a [REDACTED] b [REDACTED]");
    CHECK_EQ(n, strlen("a [REDACTED] b [REDACTED]"));
    free(r);
    /* Nothing to do: NULL, and the caller keeps its text. */
    CHECK(ad_redact("plain", 5, KEY, NULL) == NULL);
    CHECK(ad_redact("plain", 5, NULL, NULL) == NULL);
    /* A key too short to be one is never redacted. */
    CHECK(ad_redact("a test b", 8, "test", NULL) == NULL);
}

TEST(redact_buf_in_place)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_puts(&b, "{\"error\":\"bad key " KEY "\"}");
    CHECK(ad_redact_buf(&b, KEY));
    CHECK_STREQ(b.data, "{\"error\":\"bad key [REDACTED]\"}");
    CHECK_EQ(b.len, strlen(b.data));
    CHECK(ad_buf_puts(&b, "!") == AD_OK); /* still a valid buffer */
    CHECK_STREQ(b.data, "{\"error\":\"bad key [REDACTED]\"}!");
    CHECK(!ad_redact_buf(&b, KEY));
    ad_buf_free(&b);
    ad_buf empty = AD_BUF_INIT;
    CHECK(!ad_redact_buf(&empty, KEY));
}

TEST(redact_cut_never_leaves_a_piece_of_the_key)
{
    char out[8];
    /* Cut after the redaction: "ab [RED", never "ab sk-s". */
    size_t full = ad_redact_cut(out, sizeof out, "ab " KEY, strlen("ab " KEY), KEY);
    CHECK_STREQ(out, "ab [RED");
    CHECK_EQ(full, strlen("ab [REDACTED]"));
    char err[16];
    ad_redact_errf(err, sizeof err, KEY, "key %s!", KEY);
    CHECK_STREQ(err, "key [REDACTED]!");
}

TEST(redact_hold_finds_a_split_key)
{
    CHECK_EQ(ad_redact_hold("text sk-se", 10, KEY), 5);
    CHECK_EQ(ad_redact_hold("text s", 6, KEY), 1);
    CHECK_EQ(ad_redact_hold("text", 4, KEY), 0);
    /* A whole key is not a proper prefix: redaction handles it. */
    CHECK_EQ(ad_redact_hold(KEY, strlen(KEY), KEY), 0);
    CHECK_EQ(ad_redact_hold("sk-", 3, "short"), 0);
}

TEST(redact_json_strings_and_keys)
{
    json_object *o = json_tokener_parse("{\"a\":[\"x " KEY "\",1],\"" KEY "\":true,\"n\":null}");
    json_object *r = ad_redact_json(o, KEY);
    CHECK_STREQ(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN),
                "{\"a\":[\"x [REDACTED]\",1],\"[REDACTED]\":true,\"n\":null}");
    json_object_put(r);
    json_object_put(o);
}

TEST(utf8_checks_and_cuts)
{
    const unsigned char ok[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    CHECK(ad_utf8_clean(ok, sizeof ok - 1));
    CHECK(!ad_utf8_clean((const unsigned char *)"a\0b", 3));
    CHECK(!ad_utf8_clean((const unsigned char *)"\xc0\xaf", 2)); /* overlong */
    CHECK(!ad_utf8_clean((const unsigned char *)"\xed\xa0\x80", 3)); /* surrogate */
    ad_buf b = AD_BUF_INIT;
    CHECK_EQ(ad_utf8_repair(&b, (const unsigned char *)"x\xff\0y\xe2\x82", 6), AD_OK);
    CHECK_STREQ(b.data, "x\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbd");
    ad_buf_free(&b);
    /* A cut lands before the sequence it would split. */
    const char *s = (const char *)ok; /* a(1) é(2) €(3) 😀(4) */
    CHECK_EQ(ad_utf8_cut(s, 10, 20), 10);
    CHECK_EQ(ad_utf8_cut(s, 10, 2), 1);
    CHECK_EQ(ad_utf8_cut(s, 10, 3), 3);
    CHECK_EQ(ad_utf8_cut(s, 10, 5), 3);
    CHECK_EQ(ad_utf8_cut(s, 10, 9), 6);
    /* Invalid runs of continuation bytes: at most three bytes back. */
    CHECK_EQ(ad_utf8_cut("\x80\x80\x80\x80\x80\x80", 6, 5), 2);
}

TEST(edit_distance)
{
    CHECK_EQ(ad_edit_distance("model", "modle"), 2);
    CHECK_EQ(ad_edit_distance("max_steps", "max_step"), 1);
    CHECK_EQ(ad_edit_distance("", "abc"), 3);
    CHECK_EQ(ad_edit_distance("same", "same"), 0);
    char longer[80];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CHECK(ad_edit_distance(longer, "a") == SIZE_MAX);
}

TEST(base64_both_ways)
{
    static const char *plain[] = {"", "h", "he", "hel", "hello", "\xff\x00\xfe"};
    static const char *coded[] = {"", "aA==", "aGU=", "aGVs", "aGVsbG8=", "/wD+"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        size_t n = i == 5 ? 3 : strlen(plain[i]);
        ad_buf e = AD_BUF_INIT, d = AD_BUF_INIT;
        CHECK_EQ(ad_base64_encode(&e, plain[i], n), AD_OK);
        CHECK_EQ(e.len, strlen(coded[i]));
        CHECK(e.len == 0 || memcmp(e.data, coded[i], e.len) == 0);
        CHECK_EQ(ad_base64_decode(&d, coded[i], strlen(coded[i])), AD_OK);
        CHECK_EQ(d.len, n);
        CHECK_EQ(ad_base64_decoded_size(coded[i], strlen(coded[i])), n);
        CHECK(n == 0 || memcmp(d.data, plain[i], n) == 0);
        ad_buf_free(&e);
        ad_buf_free(&d);
    }
    ad_buf d = AD_BUF_INIT;
    CHECK_EQ(ad_base64_decode(&d, "_wD-", 4), AD_OK); /* URL-safe alphabet */
    CHECK(d.len == 3 && memcmp(d.data, "\xff\x00\xfe", 3) == 0);
    ad_buf_reset(&d);
    CHECK_EQ(ad_base64_decode(&d, "aGVs\nbG8", 8), AD_OK); /* whitespace, no padding */
    CHECK(d.len == 5 && memcmp(d.data, "hello", 5) == 0);
    CHECK_EQ(ad_base64_decoded_size("aGVs\nbG8", 8), 5);
    CHECK_EQ(ad_base64_decode(&d, "a", 1), AD_EINVAL);        /* 6 dangling bits */
    CHECK_EQ(ad_base64_decode(&d, "aGVs=bG8", 8), AD_EINVAL); /* after padding */
    CHECK_EQ(ad_base64_decode(&d, "aG!s", 4), AD_EINVAL);
    CHECK_EQ(ad_base64_decode(&d, "aA===", 5), AD_EINVAL);
    ad_buf_free(&d);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(redact_replaces_every_occurrence);
    RUN(redact_buf_in_place);
    RUN(redact_cut_never_leaves_a_piece_of_the_key);
    RUN(redact_hold_finds_a_split_key);
    RUN(redact_json_strings_and_keys);
    RUN(utf8_checks_and_cuts);
    RUN(edit_distance);
    RUN(base64_both_ways);
    return harness_report("test_text");
}

/*
 * test_toml.c -- unit tests for the TOML parser.
 *
 * The toml-test suite (tests/toml-decoder) covers the grammar; these tests
 * cover what it does not: int64 edges, bare CR in multi-line strings, the
 * nesting bounds, a 100k-key document, positions of values and of errors,
 * insertion order, lookups and the accessors' behaviour on wrong types.
 */
#include "base/buf.h"
#include "../../harness.h"
#include "base/toml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

/* Parses a C string; returns the root or NULL (err holds the message). */
static ad_toml *parse(const char *s)
{
    ad_toml *root = (ad_toml *)1;
    err[0] = '\0';
    int rc = ad_toml_parse(s, strlen(s), &root, err, sizeof err);
    if (rc != 0 && root != NULL)
        return (ad_toml *)2; /* contract broken: caught by CHECKs below */
    return root;
}

static int parse_rc(const char *s, size_t len)
{
    ad_toml *root = NULL;
    err[0] = '\0';
    int rc = ad_toml_parse(s, len, &root, err, sizeof err);
    ad_toml_free(root);
    return rc;
}

TEST(integer_edges)
{
    ad_toml *r = parse("max = 9223372036854775807\nmin = -9223372036854775808\n"
                       "hex = 0x7FFF_FFFF_FFFF_FFFF\nbin = 0b1111\noct = 0o777\nz = -0\n");
    CHECK(r != NULL);
    CHECK(ad_toml_int(ad_toml_get(r, "max")) == INT64_MAX);
    CHECK(ad_toml_int(ad_toml_get(r, "min")) == INT64_MIN);
    CHECK(ad_toml_int(ad_toml_get(r, "hex")) == INT64_MAX);
    CHECK_EQ(ad_toml_int(ad_toml_get(r, "bin")), 15);
    CHECK_EQ(ad_toml_int(ad_toml_get(r, "oct")), 511);
    CHECK_EQ(ad_toml_int(ad_toml_get(r, "z")), 0);
    CHECK_EQ(ad_toml_type_of(ad_toml_get(r, "max")), AD_TOML_INTEGER);
    ad_toml_free(r);

    CHECK(parse("x = 9223372036854775808") == NULL);
    CHECK_STREQ(err, "1:5: integer '9223372036854775808' does not fit in 64 bits");
    CHECK(parse("x = -9223372036854775809") == NULL);
    CHECK(parse("x = 0x8000000000000000") == NULL);
    CHECK(parse("x = 0xFFFFFFFFFFFFFFFFF") == NULL);
    CHECK(parse("x = 99999999999999999999999999") == NULL);
    CHECK(parse("x = +9223372036854775808") == NULL);
    CHECK(parse("x = -0x1") == NULL);
    CHECK(parse("x = 012") == NULL);
    CHECK(parse("x = 1__0") == NULL);
}

TEST(floats)
{
    ad_toml *r = parse("a = 1e3\nb = -inf\nc = nan\nd = -0.0\ne = 1_0.2_5e-1_0\n");
    CHECK(r != NULL);
    CHECK(ad_toml_float(ad_toml_get(r, "a")) == 1000.0);
    CHECK(isinf(ad_toml_float(ad_toml_get(r, "b"))) && ad_toml_float(ad_toml_get(r, "b")) < 0);
    CHECK(isnan(ad_toml_float(ad_toml_get(r, "c"))));
    CHECK(signbit(ad_toml_float(ad_toml_get(r, "d"))));
    CHECK(ad_toml_float(ad_toml_get(r, "e")) == 10.25e-10);
    ad_toml_free(r);
    CHECK(parse("x = 1e400") == NULL);
    CHECK(strstr(err, "out of range") != NULL);
    CHECK(parse("x = 1.") == NULL);
    CHECK(parse("x = .5") == NULL);
    CHECK(parse("x = Inf") == NULL);
}

TEST(bare_cr)
{
    CHECK(parse_rc("s = \"\"\"a\rb\"\"\"\n", 14) == AD_EINVAL);
    CHECK_STREQ(err, "1:9: carriage return not followed by a line feed");
    CHECK(parse_rc("s = '''a\rb'''\n", 14) == AD_EINVAL);
    CHECK(parse_rc("s = '''a\r", 9) == AD_EINVAL);
    CHECK(parse_rc("a = 1\r", 6) == AD_EINVAL);
    CHECK(parse_rc("# comment\r\n# x\ry\n", 17) == AD_EINVAL);
    CHECK_STREQ(err, "2:4: carriage return not followed by a line feed");

    /* CRLF is a newline, and reads as "\n" inside multi-line strings */
    ad_toml *r = parse("s = \"\"\"\r\na\r\nb\"\"\"\r\nt = '''x\r\n'''\r\n");
    CHECK(r != NULL);
    CHECK_STREQ(ad_toml_string(ad_toml_get(r, "s"), NULL), "a\nb");
    CHECK_STREQ(ad_toml_string(ad_toml_get(r, "t"), NULL), "x\n");
    ad_toml_free(r);
}

TEST(encoding)
{
    CHECK(parse_rc("a = \"x\0\"", 8) == AD_EINVAL);
    CHECK_STREQ(err, "1:7: control character U+0000 is not allowed");
    CHECK(parse_rc("a = 1\nb = \"\xff\"", 12) == AD_EINVAL);
    CHECK_STREQ(err, "2:6: invalid UTF-8 byte 0xFF");
    CHECK(parse_rc("a = \"\xed\xa0\x80\"", 9) == AD_EINVAL);  /* encoded surrogate */
    CHECK(parse_rc("a = \"\xc0\x80\"", 8) == AD_EINVAL);      /* overlong NUL */
    CHECK(parse_rc("a = \"\xf4\x90\x80\x80\"", 10) == AD_EINVAL); /* > U+10FFFF */
    CHECK(parse_rc("a = \"\xe2\x82", 7) == AD_EINVAL);        /* truncated */
    CHECK(parse_rc("\xff\xfe" "a = 1", 7) == AD_EINVAL);      /* UTF-16 BOM */
    CHECK(parse_rc("# \x7f\n", 4) == AD_EINVAL);
    CHECK(parse_rc("\xef\xbb\xbf" "a = 1", 8) == 0);
    CHECK(parse_rc(NULL, 0) == 0);
    CHECK(parse_rc("", 0) == 0);
}

TEST(escapes)
{
    ad_toml *r = parse("a = \"\\u0000x\\U0001F600\\t\"\n\"k\\u0000\" = 1\n");
    CHECK(r != NULL);
    size_t len = 0;
    const char *s = ad_toml_string(ad_toml_get(r, "a"), &len);
    CHECK_EQ(len, 7);
    CHECK(s && memcmp(s, "\0x\xf0\x9f\x98\x80\t", 8) == 0);
    CHECK_EQ(ad_toml_key_len(r, 1), 2);
    CHECK(memcmp(ad_toml_key_at(r, 1), "k\0", 3) == 0);
    ad_toml_free(r);
    CHECK(parse("a = \"\\uD800\"") == NULL);
    CHECK(parse("a = \"\\U00110000\"") == NULL);
    CHECK(parse("a = \"\\x41\"") == NULL);
    CHECK(parse("a = \"\\u12\"") == NULL);
    r = parse("a = \"\"\"one \\\n   \n  two\"\"\"");
    CHECK(r != NULL);
    CHECK_STREQ(ad_toml_string(ad_toml_get(r, "a"), NULL), "one two");
    ad_toml_free(r);
}

TEST(datetimes)
{
    ad_toml *r = parse("a = 1979-05-27 07:32:00.999-07:00\nb = 2000-02-29t00:00:00z\n"
                       "c = 2024-02-29\nd = 23:59:59\ne = 1979-05-27T07:32:00\n");
    CHECK(r != NULL);
    CHECK_STREQ(ad_toml_datetime(ad_toml_get(r, "a")), "1979-05-27T07:32:00.999-07:00");
    CHECK_STREQ(ad_toml_datetime(ad_toml_get(r, "b")), "2000-02-29T00:00:00Z");
    CHECK_EQ(ad_toml_type_of(ad_toml_get(r, "a")), AD_TOML_DATETIME);
    CHECK_EQ(ad_toml_type_of(ad_toml_get(r, "c")), AD_TOML_DATE_LOCAL);
    CHECK_EQ(ad_toml_type_of(ad_toml_get(r, "d")), AD_TOML_TIME_LOCAL);
    CHECK_EQ(ad_toml_type_of(ad_toml_get(r, "e")), AD_TOML_DATETIME_LOCAL);
    CHECK_STREQ(ad_toml_type_name(AD_TOML_DATETIME_LOCAL), "datetime-local");
    CHECK(ad_toml_datetime(ad_toml_get(r, "c")) != NULL);
    ad_toml_free(r);
    CHECK(parse("a = 1900-02-29") == NULL);
    CHECK(parse("a = 2023-02-29") == NULL);
    CHECK(parse("a = 2023-04-31") == NULL);
    CHECK(parse("a = 2023-13-01") == NULL);
    CHECK(parse("a = 24:00:00") == NULL);
    CHECK(parse("a = 12:00") == NULL);
    CHECK(parse("a = 2023-01-01T") == NULL);
    CHECK(parse("a = 2023-01-01T12:00:00+24:00") == NULL);
}

TEST(nesting_limit)
{
    ad_buf b = AD_BUF_INIT;
    /* 128 levels are fine */
    ad_buf_puts(&b, "a = ");
    for (int i = 0; i < 128; i++)
        ad_buf_putc(&b, '[');
    for (int i = 0; i < 128; i++)
        ad_buf_putc(&b, ']');
    CHECK_EQ(parse_rc(b.data, b.len), 0);
    /* 129 are not; nor are a million, which must not exhaust the stack */
    ad_buf_reset(&b);
    ad_buf_puts(&b, "a = ");
    for (int i = 0; i < 129; i++)
        ad_buf_putc(&b, '[');
    CHECK_EQ(parse_rc(b.data, b.len), AD_ETOOBIG);
    CHECK(strstr(err, "nested deeper than 128") != NULL);
    CHECK(strncmp(err, "1:133: ", 7) == 0);
    ad_buf_reset(&b);
    ad_buf_puts(&b, "a = ");
    for (int i = 0; i < 1000000; i++)
        ad_buf_puts(&b, "{b=[");
    CHECK_EQ(parse_rc(b.data, b.len), AD_ETOOBIG);
    /* long dotted keys and headers are bounded too */
    ad_buf_reset(&b);
    ad_buf_putc(&b, '[');
    for (int i = 0; i < 100000; i++)
        ad_buf_puts(&b, "k.");
    ad_buf_puts(&b, "k]\n");
    CHECK_EQ(parse_rc(b.data, b.len), AD_ETOOBIG);
    ad_buf_reset(&b);
    for (int i = 0; i < 100000; i++)
        ad_buf_puts(&b, "k.");
    ad_buf_puts(&b, "k = 1\n");
    CHECK_EQ(parse_rc(b.data, b.len), AD_ETOOBIG);
    ad_buf_free(&b);
}

TEST(huge_file)
{
    ad_buf b = AD_BUF_INIT;
    for (int i = 0; i < 100000; i++)
        ad_buf_printf(&b, "key%d = %d\n", i, i);
    for (int i = 0; i < 20000; i++)
        ad_buf_printf(&b, "[t%d]\nx = \"v%d\"\n[[arr]]\nn = %d\n", i, i, i);
    ad_toml *r = NULL;
    CHECK_EQ(ad_toml_parse(b.data, b.len, &r, err, sizeof err), 0);
    CHECK_EQ(ad_toml_len(r), 100000 + 20000 + 1);
    CHECK_EQ(ad_toml_int(ad_toml_get(r, "key99999")), 99999);
    CHECK_EQ(ad_toml_int(ad_toml_get(r, "key0")), 0);
    CHECK_STREQ(ad_toml_key_at(r, 50000), "key50000");
    CHECK_STREQ(ad_toml_string(ad_toml_get(ad_toml_get(r, "t19999"), "x"), NULL), "v19999");
    ad_toml *arr = ad_toml_get(r, "arr");
    CHECK_EQ(ad_toml_len(arr), 20000);
    CHECK_EQ(ad_toml_int(ad_toml_get(ad_toml_at(arr, 12345), "n")), 12345);
    CHECK(ad_toml_get(r, "key100000") == NULL);
    CHECK_EQ(ad_toml_line(ad_toml_get(r, "key99999")), 100000);
    ad_toml_free(r);
    /* a duplicate at the very end is still found through the index */
    ad_buf_puts(&b, "[t7]\n");
    CHECK_EQ(parse_rc(b.data, b.len), AD_EINVAL);
    CHECK(strncmp(err, "180001:2: ", 10) == 0);
    ad_buf_free(&b);
}

TEST(positions)
{
    ad_toml *r = parse("# head\n  name = \"x\"\n[srv]\nports = [ 80,\n    443 ]\n"
                       "a.b.c = true\n[[list]]\n");
    CHECK(r != NULL);
    ad_toml *name = ad_toml_get(r, "name");
    CHECK_EQ(ad_toml_line(name), 2);
    CHECK_EQ(ad_toml_column(name), 3);
    ad_toml *srv = ad_toml_get(r, "srv");
    CHECK_EQ(ad_toml_line(srv), 3);
    CHECK_EQ(ad_toml_column(srv), 2);
    ad_toml *ports = ad_toml_get(srv, "ports");
    CHECK_EQ(ad_toml_line(ports), 4);
    CHECK_EQ(ad_toml_column(ports), 1);
    CHECK_EQ(ad_toml_line(ad_toml_at(ports, 0)), 4);
    CHECK_EQ(ad_toml_column(ad_toml_at(ports, 0)), 11);
    CHECK_EQ(ad_toml_line(ad_toml_at(ports, 1)), 5);
    CHECK_EQ(ad_toml_column(ad_toml_at(ports, 1)), 5);
    ad_toml *c = ad_toml_get(ad_toml_get(ad_toml_get(srv, "a"), "b"), "c");
    CHECK(ad_toml_bool(c));
    CHECK_EQ(ad_toml_line(c), 6);
    CHECK_EQ(ad_toml_column(c), 5);
    CHECK_EQ(ad_toml_line(ad_toml_at(ad_toml_get(r, "list"), 0)), 7);
    ad_toml_free(r);
}

TEST(error_positions)
{
    CHECK(parse("a = 1\nb = \n") == NULL);
    CHECK_STREQ(err, "2:5: expected a value");
    CHECK(parse("a = 1\na = 2\n") == NULL);
    CHECK_STREQ(err, "2:1: duplicate key \"a\"");
    CHECK(parse("x = \"abc\n") == NULL);
    CHECK_STREQ(err, "1:5: unterminated string");
    CHECK(parse("a = 1 b = 2") == NULL);
    CHECK_STREQ(err, "1:7: expected a newline after the value");
    CHECK(parse("[t]\nx = 1\n[t]\n") == NULL);
    CHECK_STREQ(err, "3:2: \"t\" is already defined as a table");
    CHECK(parse("a = [1, 2\n") == NULL);
    CHECK_STREQ(err, "2:1: unterminated array, expected ']'");
    CHECK(parse("t = {a = 1,}") == NULL);
    CHECK_STREQ(err, "1:12: trailing comma in an inline table");
    CHECK(parse("\n\n  = 1") == NULL);
    CHECK_STREQ(err, "3:3: expected a key, found '='");
    CHECK(parse("s = \"\\q\"") == NULL);
    CHECK_STREQ(err, "1:6: invalid escape sequence \\q");
}

TEST(redefinition)
{
    const char *bad[] = {
        "a = 1\na.b = 2",          "a.b = 1\n[a]",          "[a.b]\n[a]\nb.c = 1",
        "a = {b = 1}\na.c = 2",    "a = {b = 1}\n[a.c]",    "a = []\n[[a]]",
        "[[a]]\n[a]",              "[a]\n[[a]]",            "t = {a.b = 1, a = 2}",
        "[a]\nb.c = 1\n[a.b]",     "[a]\nb.c=1\n[x]\n[a.b.c]\n[a]", "a = {b = {}}\n[a.b.c]",
        "[a.b.c]\nz=9\n[a]\nb.c.t=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ad_toml *r = parse(bad[i]);
        CHECK(r == NULL);
        if (r) {
            fprintf(stderr, "  accepted: %s\n", bad[i]);
            ad_toml_free(r);
        }
    }
    const char *good[] = {
        "[a.b]\n[a]",           "a.b.c = 1\na.b.d = 2",   "[a]\nb.c = 1\n[a.b.d]",
        "[[a]]\n[a.b]\n[[a]]\n[a.b]", "t = {a.b = 1, a.c = 2}", "[a.b.c]\n[a]\nb.d = 1",
        "a = [{b = 1}]",       "[a]\n[b]\n[a.c]",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ad_toml *r = parse(good[i]);
        CHECK(r != NULL);
        if (!r)
            fprintf(stderr, "  rejected: %s (%s)\n", good[i], err);
        ad_toml_free(r);
    }
}

TEST(insertion_order)
{
    ad_toml *r = parse("z = 1\na = 2\nm = 3\n[q]\n[b]\n"
                       "[big]\nk9=0\nk8=0\nk7=0\nk6=0\nk5=0\nk4=0\nk3=0\nk2=0\nk1=0\nk0=0\n");
    CHECK(r != NULL);
    const char *want[] = {"z", "a", "m", "q", "b", "big"};
    CHECK_EQ(ad_toml_len(r), 6);
    for (size_t i = 0; i < 6; i++)
        CHECK_STREQ(ad_toml_key_at(r, i), want[i]);
    ad_toml *big = ad_toml_get(r, "big");
    CHECK_EQ(ad_toml_len(big), 10);
    for (size_t i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%zu", 9 - i);
        CHECK_STREQ(ad_toml_key_at(big, i), k);
        CHECK(ad_toml_get(big, k) == ad_toml_at(big, i));
    }
    CHECK(ad_toml_key_at(r, 6) == NULL);
    CHECK(ad_toml_at(r, 6) == NULL);
    ad_toml_free(r);
}

TEST(get_and_accessors)
{
    ad_toml *r = parse("[server]\nhost = \"h\"\n\"dotted.key\" = 1\narr = [1, \"two\"]\n");
    CHECK(r != NULL);
    ad_toml *srv = ad_toml_get(r, "server");
    CHECK_EQ(ad_toml_type_of(srv), AD_TOML_TABLE);
    CHECK_STREQ(ad_toml_string(ad_toml_get(srv, "host"), NULL), "h");
    CHECK(ad_toml_get(srv, "dotted.key") != NULL);
    CHECK(ad_toml_get(srv, "dotted") == NULL);
    CHECK(ad_toml_get(srv, "missing") == NULL);
    CHECK(ad_toml_get(r, "host") == NULL);
    ad_toml *arr = ad_toml_get(srv, "arr");
    CHECK(ad_toml_get(arr, "0") == NULL);      /* not a table */
    CHECK(ad_toml_get(NULL, "x") == NULL);
    CHECK_EQ(ad_toml_len(arr), 2);
    CHECK_EQ(ad_toml_int(ad_toml_at(arr, 0)), 1);
    CHECK_EQ(ad_toml_type_of(ad_toml_at(arr, 1)), AD_TOML_STRING);
    /* wrong-type accessors return neutral values */
    size_t len = 99;
    CHECK(ad_toml_string(ad_toml_at(arr, 0), &len) == NULL);
    CHECK_EQ(len, 0);
    CHECK_EQ(ad_toml_int(ad_toml_at(arr, 1)), 0);
    CHECK(!ad_toml_bool(srv));
    CHECK(ad_toml_datetime(srv) == NULL);
    CHECK_EQ(ad_toml_len(ad_toml_at(arr, 0)), 0);
    CHECK(ad_toml_key_at(arr, 0) == NULL);
    ad_toml_free(r);
    ad_toml_free(NULL);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(integer_edges);
    RUN(floats);
    RUN(bare_cr);
    RUN(encoding);
    RUN(escapes);
    RUN(datetimes);
    RUN(nesting_limit);
    RUN(huge_file);
    RUN(positions);
    RUN(error_positions);
    RUN(redefinition);
    RUN(insertion_order);
    RUN(get_and_accessors);
    return harness_report("test_toml");
}

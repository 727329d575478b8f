/*
 * toml-decoder.c -- reads TOML on stdin, prints toml-test tagged JSON.
 *
 * This is the adapter between runtime/base/toml.c and the toml-test conformance
 * runner: valid input becomes {"key": {"type": ..., "value": "..."}} JSON on
 * stdout with exit 0; invalid input prints the parser's message on stderr
 * and exits 1. Input is read as bytes with an explicit length because the
 * suite feeds NULs, bare CRs and invalid UTF-8.
 */
#include "base/buf.h"
#include "base/toml.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put_json_string(ad_buf *o, const char *s, size_t n)
{
    int rc = ad_buf_putc(o, '"');
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            rc = ad_buf_printf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            rc = ad_buf_printf(o, "\\u%04x", c);
        else
            rc = ad_buf_putc(o, (char)c);
    }
    return rc ? rc : ad_buf_putc(o, '"');
}

static int put_value(ad_buf *o, const ad_toml *v)
{
    ad_toml_type t = ad_toml_type_of(v);
    size_t n = ad_toml_len(v);
    int rc = 0;
    if (t == AD_TOML_TABLE) {
        rc = ad_buf_putc(o, '{');
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *k = ad_toml_key_at(v, i);
            if (i)
                rc = ad_buf_putc(o, ',');
            if (!rc)
                rc = put_json_string(o, k, ad_toml_key_len(v, i));
            if (!rc)
                rc = ad_buf_putc(o, ':');
            if (!rc)
                rc = put_value(o, ad_toml_at(v, i));
        }
        return rc ? rc : ad_buf_putc(o, '}');
    }
    if (t == AD_TOML_ARRAY) {
        rc = ad_buf_putc(o, '[');
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (i)
                rc = ad_buf_putc(o, ',');
            if (!rc)
                rc = put_value(o, ad_toml_at(v, i));
        }
        return rc ? rc : ad_buf_putc(o, ']');
    }
    rc = ad_buf_printf(o, "{\"type\":\"%s\",\"value\":", ad_toml_type_name(t));
    if (rc)
        return rc;
    switch (t) {
    case AD_TOML_STRING: {
        size_t len;
        const char *s = ad_toml_string(v, &len);
        rc = put_json_string(o, s, len);
        break;
    }
    case AD_TOML_INTEGER:
        rc = ad_buf_printf(o, "\"%lld\"", (long long)ad_toml_int(v));
        break;
    case AD_TOML_FLOAT: {
        double d = ad_toml_float(v);
        if (isnan(d))
            rc = ad_buf_puts(o, "\"nan\"");
        else if (isinf(d))
            rc = ad_buf_puts(o, d < 0 ? "\"-inf\"" : "\"inf\"");
        else
            rc = ad_buf_printf(o, "\"%.17g\"", d);
        break;
    }
    case AD_TOML_BOOL:
        rc = ad_buf_puts(o, ad_toml_bool(v) ? "\"true\"" : "\"false\"");
        break;
    default: {
        const char *s = ad_toml_datetime(v);
        rc = put_json_string(o, s, strlen(s));
        break;
    }
    }
    return rc ? rc : ad_buf_putc(o, '}');
}

int main(void)
{
    ad_buf in = AD_BUF_INIT, out = AD_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (ad_buf_append(&in, chunk, n)) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
    }
    ad_toml *root;
    char err[512];
    int rc = ad_toml_parse(in.data, in.len, &root, err, sizeof err);
    ad_buf_free(&in);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rc = put_value(&out, root);
    ad_toml_free(root);
    if (rc == 0)
        rc = ad_buf_putc(&out, '\n');
    if (rc) {
        fprintf(stderr, "out of memory\n");
        ad_buf_free(&out);
        return 2;
    }
    fwrite(out.data, 1, out.len, stdout);
    ad_buf_free(&out);
    return 0;
}

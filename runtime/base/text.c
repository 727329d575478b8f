/*
 * text.c -- redaction, UTF-8 and edit distance (see text.h).
 *
 * Redaction is literal: every occurrence of the secret's bytes, anywhere,
 * becomes "[REDACTED]". A shortened text is always redacted before it is
 * cut, never after, so a cut can never leave a prefix of the key standing.
 */
#define _GNU_SOURCE /* memmem */
#include "base/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- redaction ---------------------------------------------------------- */

char *ad_redact(const char *s, size_t len, const char *secret, size_t *out_len)
{
    size_t sl = secret ? strlen(secret) : 0;
    /* A key of a few characters ("x", "test") would turn every occurrence
     * of an ordinary word into a marker; real keys are far longer. */
    if (sl < AD_REDACT_MIN || len < sl || !memmem(s, len, secret, sl))
        return NULL;
    ad_buf b = AD_BUF_INIT;
    const char *p = s, *end = s + len;
    const char *hit;
    while ((hit = memmem(p, (size_t)(end - p), secret, sl)) != NULL) {
        ad_buf_append(&b, p, (size_t)(hit - p));
        ad_buf_puts(&b, "[REDACTED]");
        p = hit + sl;
    }
    ad_buf_append(&b, p, (size_t)(end - p));
    if (out_len)
        *out_len = b.len;
    return ad_buf_steal(&b);
}

bool ad_redact_buf(ad_buf *b, const char *secret)
{
    if (!b->data)
        return false;
    size_t rl;
    char *r = ad_redact(b->data, b->len, secret, &rl);
    if (!r)
        return false;
    free(b->data);
    b->data = r;
    b->len = rl;
    b->cap = rl + 1;
    return true;
}

size_t ad_redact_cut(char *out, size_t outlen, const char *s, size_t len, const char *secret)
{
    if (outlen == 0)
        return len;
    size_t rl;
    char *r = ad_redact(s, len, secret, &rl);
    const char *q = r ? r : s;
    size_t ql = r ? rl : len;
    size_t n = ql < outlen - 1 ? ql : outlen - 1;
    memcpy(out, q, n);
    out[n] = '\0';
    free(r);
    return ql;
}

void ad_redact_errf(char *err, size_t errlen, const char *secret, const char *fmt, ...)
{
    ad_buf b = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ad_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    size_t rl;
    char *r = b.data ? ad_redact(b.data, b.len, secret, &rl) : NULL;
    ad_errf(err, errlen, "%s", r ? r : b.data ? b.data : "out of memory");
    free(r);
    ad_buf_free(&b);
}

json_object *ad_redact_json(json_object *o, const char *secret)
{
    switch (json_object_get_type(o)) {
    case json_type_string: {
        size_t n;
        const char *v = json_object_get_string(o);
        char *r = ad_redact(v, (size_t)json_object_get_string_len(o), secret, &n);
        if (!r)
            return json_object_get(o);
        json_object *out = json_object_new_string_len(r, (int)n);
        free(r);
        return out;
    }
    case json_type_array: {
        json_object *out = json_object_new_array();
        for (size_t i = 0; out && i < json_object_array_length(o); i++)
            json_object_array_add(out, ad_redact_json(json_object_array_get_idx(o, i), secret));
        return out;
    }
    case json_type_object: {
        json_object *out = json_object_new_object();
        json_object_object_foreach(o, k, v)
        {
            char *rk = ad_redact(k, strlen(k), secret, NULL);
            json_object_object_add(out, rk ? rk : k, ad_redact_json(v, secret));
            free(rk);
        }
        return out;
    }
    default:
        return json_object_get(o);
    }
}

size_t ad_redact_hold(const char *s, size_t len, const char *secret)
{
    size_t kl = secret ? strlen(secret) : 0;
    if (kl < AD_REDACT_MIN || len == 0)
        return 0;
    /* Only places holding the key's first byte can start it, so a typical
     * piece of text costs one memchr over its last kl - 1 bytes. */
    const char *end = s + len;
    const char *p = len > kl - 1 ? end - (kl - 1) : s;
    while (p < end && (p = memchr(p, secret[0], (size_t)(end - p))) != NULL) {
        if (memcmp(p, secret, (size_t)(end - p)) == 0)
            return (size_t)(end - p);
        p++;
    }
    return 0;
}

/* ---- UTF-8 -------------------------------------------------------------- */

bool ad_utf8_seq(const unsigned char *s, size_t n, size_t *len)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    size_t need;
    if (c < 0x80) {
        *len = 1;
        return true;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* past U+10FFFF */
    } else {
        *len = 1; /* a continuation byte without a lead, C0/C1, F5..FF */
        return false;
    }
    size_t got = 0;
    while (got < need && 1 + got < n) {
        unsigned char b = s[1 + got];
        if (got == 0 ? (b < lo || b > hi) : (b & 0xC0) != 0x80)
            break;
        got++;
    }
    *len = 1 + got;
    return got == need;
}

bool ad_utf8_clean(const unsigned char *s, size_t n)
{
    size_t len;
    for (size_t i = 0; i < n; i += len)
        if (!ad_utf8_seq(s + i, n - i, &len) || s[i] == 0)
            return false;
    return true;
}

int ad_utf8_repair(ad_buf *dst, const unsigned char *s, size_t n)
{
    static const char repl[] = "\xEF\xBF\xBD";
    if (ad_buf_reserve(dst, n) != 0)
        return AD_ENOMEM;
    size_t i = 0;
    while (i < n) {
        size_t len;
        bool ok = ad_utf8_seq(s + i, n - i, &len) && s[i] != 0;
        /* A valid sequence is copied; an invalid prefix (and NUL) becomes
         * one U+FFFD. */
        if ((ok ? ad_buf_append(dst, s + i, len) : ad_buf_append(dst, repl, 3)) != 0)
            return AD_ENOMEM;
        i += len;
    }
    return AD_OK;
}

size_t ad_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    /* A sequence has at most three continuation bytes: backing up further
     * would only eat into bytes that are invalid anyway. */
    for (int back = 0; back < 3 && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; back++)
        n--;
    return n;
}

/* ---- hints -------------------------------------------------------------- */

size_t ad_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag_prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag_prev + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag_prev = up;
        }
    }
    return row[lb];
}

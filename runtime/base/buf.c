/*
 * buf.c -- growable byte buffer (see buf.h).
 */
#define _GNU_SOURCE /* memmem */
#include "base/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ad_buf_reserve(ad_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return AD_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return AD_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return AD_ENOMEM;
    b->data = p;
    b->cap = cap;
    return AD_OK;
}

int ad_buf_append(ad_buf *b, const void *data, size_t len)
{
    if (ad_buf_reserve(b, len) != AD_OK)
        return AD_ENOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return AD_OK;
}

int ad_buf_puts(ad_buf *b, const char *s)
{
    return ad_buf_append(b, s, strlen(s));
}

int ad_buf_putc(ad_buf *b, char c)
{
    return ad_buf_append(b, &c, 1);
}

int ad_buf_vprintf(ad_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return AD_EINVAL;
    if (ad_buf_reserve(b, (size_t)n) != AD_OK)
        return AD_ENOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return AD_OK;
}

int ad_buf_printf(ad_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ad_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void ad_buf_reset(ad_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ad_buf_free(ad_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *ad_buf_steal(ad_buf *b)
{
    char *s = b->data;
    if (s == NULL)
        return ad_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

char *ad_strdup(const char *s)
{
    return ad_strndup(s, strlen(s));
}

char *ad_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ad_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

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

int ad_read_file(const char *path, size_t max, ad_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return AD_ERR;
    struct stat st;
    int rc = AD_OK;
    if (fstat(fd, &st) != 0)
        rc = AD_ERR;
    else if (!S_ISREG(st.st_mode))
        rc = AD_EINVAL;
    else if ((unsigned long long)st.st_size > max)
        rc = AD_ETOOBIG;
    char chunk[65536];
    while (rc == AD_OK) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? AD_ERR : AD_OK;
            break;
        }
        if (out->len + (size_t)n > max) /* it grew since fstat */
            rc = AD_ETOOBIG;
        else if (ad_buf_append(out, chunk, (size_t)n) != AD_OK)
            rc = AD_ENOMEM;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

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

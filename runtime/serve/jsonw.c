/*
 * jsonw.c -- JSON strings and ids for agentd serve (see jsonw.h).
 */
#include "serve/jsonw.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/text.h"

int ad_jw_str(ad_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (ad_buf_reserve(b, len + 2) != AD_OK)
        return AD_ENOMEM;
    int rc = ad_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (rc == AD_OK && p < end) {
        /* The run of bytes that need no escaping goes in one copy. */
        const unsigned char *q = p;
        while (q < end && *q >= 0x20 && *q != '"' && *q != '\\' && *q < 0x80)
            q++;
        if (q > p) {
            rc = ad_buf_append(b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n;
            if (ad_utf8_seq(p, (size_t)(end - p), &n)) {
                rc = ad_buf_append(b, p, n);
            } else {
                rc = ad_buf_puts(b, "\xef\xbf\xbd");
            }
            p += n;
            continue;
        }
        char esc[8];
        switch (c) {
        case '"': rc = ad_buf_puts(b, "\\\""); break;
        case '\\': rc = ad_buf_puts(b, "\\\\"); break;
        case '\n': rc = ad_buf_puts(b, "\\n"); break;
        case '\r': rc = ad_buf_puts(b, "\\r"); break;
        case '\t': rc = ad_buf_puts(b, "\\t"); break;
        default:
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            rc = ad_buf_append(b, esc, 6);
        }
        p++;
    }
    return rc == AD_OK ? ad_buf_putc(b, '"') : rc;
}

int ad_jw_cstr(ad_buf *b, const char *s)
{
    return s ? ad_jw_str(b, s, strlen(s)) : ad_buf_puts(b, "null");
}

int ad_jw_int(ad_buf *b, long long x)
{
    char t[24];
    size_t n = sizeof t;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        t[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        t[--n] = '-';
    return ad_buf_append(b, t + n, sizeof t - n);
}

void ad_jw_id(char *out, size_t outlen, const char *prefix)
{
    static const char hex[] = "0123456789abcdef";
    /* 10 hex digits of milliseconds, then 88 random bits: ids made close
     * in time sort close together (the store's B-trees take new rows on
     * the same pages), and nobody can guess one. */
    unsigned char r[16];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    for (int i = 0; i < 5; i++)
        r[i] = (unsigned char)(ms >> (8 * (4 - i)));
    if (getrandom(r + 5, 11, 0) != 11) {
        /* No entropy source: still unique within the process. */
        static uint64_t n;
        uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ++n;
        memcpy(r + 5, &a, 8);
        memcpy(r + 13, &n, 3);
    }
    char h[33];
    for (int i = 0; i < 16; i++) {
        h[2 * i] = hex[r[i] >> 4];
        h[2 * i + 1] = hex[r[i] & 15];
    }
    h[32] = '\0';
    snprintf(out, outlen, "%s_%s", prefix, h);
}

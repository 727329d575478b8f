/*
 * base64.c -- base64 encoding and decoding (see base64.h).
 */
#include "base/base64.h"

#include <stdint.h>

static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int ad_base64_encode(ad_buf *out, const void *p, size_t n)
{
    const unsigned char *d = p;
    if (ad_buf_reserve(out, (n + 2) / 3 * 4) != AD_OK)
        return AD_ENOMEM;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < n)
            v |= d[i + 2];
        char q[4] = {abc[v >> 18 & 63], abc[v >> 12 & 63], i + 1 < n ? abc[v >> 6 & 63] : '=',
                     i + 2 < n ? abc[v & 63] : '='};
        ad_buf_append(out, q, 4); /* reserved */
    }
    return AD_OK;
}

static int value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int ad_base64_decode(ad_buf *out, const char *s, size_t n)
{
    if (ad_buf_reserve(out, n / 4 * 3 + 3) != AD_OK)
        return AD_ENOMEM;
    size_t pad = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = value(c);
        if (v < 0 || pad) /* a character after padding is invalid too */
            return AD_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char byte = (char)(acc >> bits & 0xff);
            ad_buf_append(out, &byte, 1); /* reserved */
        }
    }
    /* 6 leftover bits cannot come from whole bytes; neither can > 2 pads. */
    return bits >= 6 || pad > 2 ? AD_EINVAL : AD_OK;
}

size_t ad_base64_decoded_size(const char *s, size_t n)
{
    size_t digits = 0;
    for (size_t i = 0; i < n; i++)
        digits += value((unsigned char)s[i]) >= 0;
    return digits / 4 * 3 + (digits % 4 ? digits % 4 - 1 : 0);
}

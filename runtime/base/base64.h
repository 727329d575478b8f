/*
 * base64.h -- base64 (RFC 4648) for the places that carry bytes as text:
 * !!binary bodies in cassettes, MCP image and audio blocks, data: URLs.
 */
#ifndef AD_BASE64_H
#define AD_BASE64_H

#include <stddef.h>

#include "base/buf.h"

/* Appends the standard, padded encoding of p[0..n) to out. 0 or AD_ENOMEM. */
int ad_base64_encode(ad_buf *out, const void *p, size_t n);

/* Appends the bytes s[0..n) encodes to out. Whitespace is skipped and both
 * alphabets are read ('+' '/' and the URL-safe '-' '_'); padding is
 * optional. AD_EINVAL for any other character, a character after padding,
 * more than two pad characters or a dangling 6 bits; AD_ENOMEM. */
int ad_base64_decode(ad_buf *out, const char *s, size_t n);

/* How many bytes s[0..n) decodes to, without decoding it (whitespace and
 * padding do not count); for well-formed text the length
 * ad_base64_decode() gives. */
size_t ad_base64_decoded_size(const char *s, size_t n);

#endif /* AD_BASE64_H */

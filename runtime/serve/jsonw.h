/*
 * jsonw.h -- writing the JSON and ids `agentd serve` sends, without building
 * json-c objects on the hot path (one text delta is one event).
 *
 * Pure helpers, any thread.
 */
#ifndef AD_SERVE_JSONW_H
#define AD_SERVE_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* Appends s[0..len) as a JSON string (quotes included). Invalid UTF-8
 * becomes U+FFFD, so the output is always valid JSON. Returns 0 or
 * AD_ENOMEM. */
int ad_jw_str(ad_buf *b, const char *s, size_t len);
/* The same for a C string; NULL writes null. */
int ad_jw_cstr(ad_buf *b, const char *s);

/* Appends the decimal form of x. */
int ad_jw_int(ad_buf *b, long long x);

/* PREFIX_ followed by 32 lowercase hex digits into out (at least
 * strlen(prefix) + 34 bytes): the time in milliseconds (10 digits), then
 * 88 random bits. */
void ad_jw_id(char *out, size_t outlen, const char *prefix);

#endif /* AD_SERVE_JSONW_H */

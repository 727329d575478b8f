/*
 * text.h -- text safety: redaction of the secret, UTF-8 checks and cuts,
 * edit distance for "did you mean" hints.
 *
 * Every module that shows, stores or records text it did not write (model
 * output, provider error bodies, tool output, plugin log lines, recorded
 * exchanges) goes through these, so that the API key is replaced by
 * "[REDACTED]" the same way everywhere and a shortened text never splits a
 * UTF-8 sequence or leaves a piece of the key behind. Pure functions: no
 * state, any thread.
 */
#ifndef AD_TEXT_H
#define AD_TEXT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

/* ---- redaction ---------------------------------------------------------- */

/* Secrets shorter than this are not redacted (they would mangle text). */
#define AD_REDACT_MIN 6

/* Replaces every occurrence of secret in s[0..len) with "[REDACTED]";
 * returns a new string (caller frees) or NULL when nothing matched. */
char *ad_redact(const char *s, size_t len, const char *secret, size_t *out_len);

/* The same in place: b's content with every occurrence of secret replaced.
 * Returns true when something was (false also on ENOMEM: b is unchanged). */
bool ad_redact_buf(ad_buf *b, const char *secret);

/* Copies the first bytes of s[0..len) into out[0..outlen) as a C string,
 * with the secret redacted first, so that the cut can never leave a piece
 * of it behind. For quoting untrusted text in messages. Returns the length
 * of the whole redacted text (more than was copied when it was cut). */
size_t ad_redact_cut(char *out, size_t outlen, const char *s, size_t len, const char *secret);

/* snprintf into err[0..errlen) with the secret redacted from the formatted
 * text before it is cut to errlen. */
void ad_redact_errf(char *err, size_t errlen, const char *secret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A copy of o with the secret redacted from every string and key, sharing
 * what holds none of it (caller puts). */
json_object *ad_redact_json(json_object *o, const char *secret);

/* Text that goes out in pieces (streamed model output) can carry the
 * secret across two pieces, where redacting each piece misses it: the
 * length of the longest tail of s[0..len) that is a proper prefix of secret
 * (0 when secret is shorter than AD_REDACT_MIN). A caller holds that tail
 * back until the next piece shows whether the secret follows. */
size_t ad_redact_hold(const char *s, size_t len, const char *secret);

/* ---- UTF-8 -------------------------------------------------------------- */

/* The UTF-8 sequence at s[0..n): true when s starts with a valid one
 * (no overlongs, surrogates or code points past U+10FFFF), *len its length;
 * false otherwise, *len the length of the maximal invalid prefix (at least
 * 1), the part one U+FFFD stands for. NUL counts as valid (a 1-byte
 * sequence); callers that refuse NUL check for it themselves. */
bool ad_utf8_seq(const unsigned char *s, size_t n, size_t *len);

/* True when s[0..n) is valid UTF-8 without NUL. */
bool ad_utf8_clean(const unsigned char *s, size_t n);

/* Appends s[0..n) to dst as valid UTF-8: every NUL byte and every
 * ill-formed sequence (stray continuation bytes, overlongs, surrogates,
 * code points above U+10FFFF, truncated sequences) becomes U+FFFD.
 * Returns 0 or AD_ENOMEM. */
int ad_utf8_repair(ad_buf *dst, const unsigned char *s, size_t n);

/* Where to cut s[0..len) to at most max bytes without splitting a UTF-8
 * sequence: max moved back over at most three continuation bytes (len
 * itself when it fits). */
size_t ad_utf8_cut(const char *s, size_t len, size_t max);

/* ---- hints -------------------------------------------------------------- */

/* The Levenshtein distance of a and b, for "did you mean" hints; SIZE_MAX
 * when either is longer than 63 bytes. */
size_t ad_edit_distance(const char *a, const char *b);

#endif /* AD_TEXT_H */

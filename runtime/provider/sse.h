/*
 * sse.h -- incremental Server-Sent Events parser.
 *
 * Bytes go in as they arrive from the network, split anywhere (inside a line,
 * inside a CRLF, inside a multi-byte UTF-8 character); complete events come
 * out through a callback. Knows nothing of JSON or OpenAI. Lines end in LF,
 * CRLF or CR; lines starting with ':' are comments; "data:" with or without
 * the following space; several data lines of one event are joined with '\n';
 * a blank line dispatches the event; "id:" and "retry:" are kept for a
 * reconnecting client (ad_sse_last_id, ad_sse_retry_ms). No allocation per
 * event: the parser reuses its buffers.
 */
#ifndef AD_SSE_H
#define AD_SSE_H

#include <stddef.h>

typedef struct ad_sse ad_sse;

/*
 * Called once per dispatched event that has data. `event` is the "event:"
 * field ("" when none was given), `data` the joined data lines; both are
 * NUL-terminated, borrowed until the callback returns. Return 0 to go on;
 * any other value stops the parser and is returned by ad_sse_feed().
 */
typedef int (*ad_sse_event_fn)(void *ud, const char *event, size_t event_len, const char *data,
                               size_t data_len);

/* Returns a new parser; caller frees with ad_sse_free(). max_event_bytes bounds
 * one line and one event's data (0 = 16 MiB); beyond it ad_sse_feed() fails
 * with AD_ETOOBIG without buffering the rest. NULL on ENOMEM. */
ad_sse *ad_sse_new(size_t max_event_bytes, ad_sse_event_fn cb, void *ud);
void ad_sse_free(ad_sse *p); /* accepts NULL */
void ad_sse_reset(ad_sse *p); /* forget any partial input; keeps buffers */

/* Feeds len bytes. Returns 0, the callback's non-zero value, AD_ETOOBIG or
 * AD_ENOMEM. After a non-zero return the parser must be reset before reuse. */
int ad_sse_feed(ad_sse *p, const char *data, size_t len);

/* End of input: a pending event with data (no blank line before EOF) is
 * dispatched. Returns like ad_sse_feed(). */
int ad_sse_finish(ad_sse *p);

/* The last event ID (the SSE "last event ID buffer"): the value of the
 * last "id:" field of an event that ended (dispatched or not; an "id:"
 * holding NUL is ignored, an empty one clears it). It persists across
 * events and is already the current event's inside the callback. "" when
 * none was seen; borrowed until the next feed or reset. */
const char *ad_sse_last_id(const ad_sse *p);
/* The last "retry:" field (ASCII digits only, as the SSE specification
 * says) in milliseconds, or -1 when none came. */
long ad_sse_retry_ms(const ad_sse *p);

/* Bytes seen since creation or the last reset (for diagnostics). */
size_t ad_sse_bytes(const ad_sse *p);

#endif /* AD_SSE_H */

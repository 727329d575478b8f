/*
 * stream.h -- assembles one model response from Chat Completions chunks.
 *
 * Streaming: feed every SSE data payload (a chat.completion.chunk JSON text,
 * or "[DONE]") to ad_stream_chunk(). Non-streaming: feed the whole response
 * body to ad_stream_message(). Both fill the same ad_response and report text
 * through the same callback, so the agent loop does not care which mode ran.
 *
 * Rules (each was a real provider's behaviour):
 *  - JSON null means absent, everywhere.
 *  - Text deltas are reported as they arrive (on_text), and collected.
 *  - A tool-call delta belongs to the call with the same non-null id; else to
 *    the call with the same `index` value (never an array position); else to
 *    the last call. A new call carries a name: a nameless delta whose id is
 *    new continues the open call at its index (or the last call) all the
 *    same. Every entry of delta.tool_calls is read (a single object instead
 *    of an array is one entry); arguments are appended from every entry; a
 *    name repeated on later deltas is not appended again. Calls are only
 *    final at ad_stream_end().
 *  - A later finish_reason null never erases an earlier finish reason.
 *  - Chunks with empty `choices` still carry usage (also x_groq.usage).
 *  - A chunk {"error": ...} is an error (AD_ERR with the provider's message).
 *  - reasoning / reasoning_content text is concatenated; reasoning_details
 *    entries are merged by their `index` (text fields concatenated) and kept
 *    in order, to be sent back verbatim on the next assistant message.
 */
#ifndef AD_STREAM_H
#define AD_STREAM_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef struct ad_tool_call {
    char *id;       /* owned; provider's id, NULL if it never sent one */
    char *name;     /* owned; NULL if never sent */
    ad_buf args;    /* arguments text exactly as received (may be empty) */
    long index;     /* the `index` value, valid when has_index */
    bool has_index;
} ad_tool_call;

typedef struct ad_response {
    ad_buf text;                 /* all assistant text of the response */
    ad_tool_call *calls;         /* owned array of ncalls, in first-seen order */
    size_t ncalls;
    char *finish_reason;         /* owned; NULL if none was seen */
    json_object *usage;          /* owned (a reference); NULL if none */
    ad_buf reasoning;            /* concatenated `reasoning` text */
    bool has_reasoning;
    ad_buf reasoning_content;    /* concatenated `reasoning_content` text */
    bool has_reasoning_content;
    json_object *reasoning_details; /* owned array or NULL; its merged text fields are
                                       brought up to date by ad_stream_response()
                                       and ad_stream_end() */
    bool done;                   /* "[DONE]" was seen, or a whole non-streaming body
                                    was read by ad_stream_message() */
} ad_response;

typedef struct ad_stream ad_stream;

typedef struct ad_stream_callbacks {
    /* A text delta, as it arrives. Borrowed. May be NULL. */
    void (*on_text)(void *ud, const char *text, size_t len);
    /* A reasoning delta (any spelling), as it arrives. May be NULL. */
    void (*on_reasoning)(void *ud, const char *text, size_t len);
} ad_stream_callbacks;

/* Returns a new assembler; caller frees with ad_stream_free(). NULL on ENOMEM.
 * `cbs` is copied; ud is passed back to the callbacks. */
ad_stream *ad_stream_new(const ad_stream_callbacks *cbs, void *ud);
void ad_stream_free(ad_stream *s); /* accepts NULL */
/* Bounds: tool calls per response and argument bytes per call (0 = the
 * defaults, 128 and 8 MiB); beyond them a chunk fails with AD_ETOOBIG.
 * Calls already beyond a lowered max_calls are kept; set before a response. */
void ad_stream_set_limits(ad_stream *s, size_t max_calls, size_t max_args);
/* A string (the API key) never to quote in error messages: it is replaced
 * by "[REDACTED]" before a message is cut to size. Borrowed; NULL: none. */
void ad_stream_set_secret(ad_stream *s, const char *secret);
/* Starts a new response: clears the ad_response (keeps allocations where it can). */
void ad_stream_reset(ad_stream *s);

/* One SSE data payload. Returns 0, AD_EINVAL for malformed JSON / a chunk
 * that is not an object, AD_ERR for a provider error object; err says what. */
int ad_stream_chunk(ad_stream *s, const char *data, size_t len, char *err, size_t errlen);
/* A whole non-streaming response body (leading whitespace allowed). */
int ad_stream_message(ad_stream *s, const char *data, size_t len, char *err, size_t errlen);
/* End of the response: finalises the calls (empty arguments become "{}").
 * Returns 0, or AD_ERR when the response has no finish reason, unless it
 * ended explicitly (done) with text or tool calls: then it is complete and
 * returns 0 with finish_reason still NULL (the caller may warn). */
int ad_stream_end(ad_stream *s, char *err, size_t errlen);

/* The response assembled so far. Borrowed; valid until reset/free. */
ad_response *ad_stream_response(ad_stream *s);

#endif /* AD_STREAM_H */

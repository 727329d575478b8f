/*
 * chat.h -- one Chat Completions answer built from a run's events: the
 * chunks a streaming client reads (data: lines, then data: [DONE]) and
 * the completion object a non-streaming one gets.
 *
 * The answer's text arrives as ordinary content deltas (the text of
 * successive steps separated by a blank line). What agentd does in between
 * rides in chunks the SDKs accept: an empty delta with an extra member,
 *   "agentd": {"type": "tool_call", "call_id", "name", "arguments"}
 *   "agentd": {"type": "tool_result", "call_id", "name", "output", "is_error"}
 * A call of a tool the client supplied comes as a standard tool_calls
 * delta and ends the answer with finish_reason "tool_calls". A failure
 * mid-stream is a chunk {"error": {"message", "type", "code"}} (clients
 * raise it), then data: [DONE].
 *
 * Threads: any one thread.
 */
#ifndef AD_SERVE_CHAT_H
#define AD_SERVE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/events.h"

typedef struct ad_chat ad_chat;

/* One SSE data payload (JSON text, or "[DONE]"), borrowed for the call. */
typedef void (*ad_chat_emit_fn)(void *ud, const char *data, size_t len);

/* id "chatcmpl-..." and model copied; names of the client's tools copied.
 * emit may be NULL (not streaming). NULL on ENOMEM. */
ad_chat *ad_chat_new(const char *id, const char *model, double created,
                     const char *const *client_tools, size_t nclient, ad_chat_emit_fn emit,
                     void *ud);
void ad_chat_free(ad_chat *c);

/* The first chunk (role assistant). */
void ad_chat_start(ad_chat *c);
void ad_chat_event(ad_chat *c, const ad_event *ev);
/* The run ended (AD_RUN_*): the last chunk (finish_reason and usage) or
 * the error chunk, then [DONE]. */
void ad_chat_end(ad_chat *c, int run_status, const char *error);
/* Whether the run failed (for a non-streaming answer: an error response). */
bool ad_chat_failed(const ad_chat *c);
const char *ad_chat_error(const ad_chat *c);
/* The chat.completion object (caller frees); NULL on ENOMEM. */
char *ad_chat_object(const ad_chat *c, size_t *len);

#endif /* AD_SERVE_CHAT_H */

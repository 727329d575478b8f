/*
 * request.h -- the Chat Completions request body, as a pure function.
 *
 * The agent (agent.c) owns the conversation; this builds the JSON text it
 * POSTs from the parts, with no loop, network or plugin in sight, so the
 * builder can be tested and fuzzed on its own (tests/fuzz/fuzz_request.c).
 */
#ifndef AD_REQUEST_H
#define AD_REQUEST_H

#include <json-c/json.h>
#include <stddef.h>

#include "base/config.h"

/* How the body is serialised: compact, slashes as they are. */
#define AD_REQUEST_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/*
 * {"model", "messages", "tools"?, "max_tokens"?, "stream"+"stream_options"?}
 * from cfg (max_tokens, stream, extra: its keys are merged last and win),
 * model, messages (an array, borrowed) and tools (borrowed, NULL: none).
 * Returns a new NUL-terminated string (length in *len) or NULL on ENOMEM.
 */
char *ad_request_body(const ad_config *cfg, const char *model, json_object *messages,
                      json_object *tools, size_t *len);
/*
 * The same request as a json-c object (caller puts it; it holds references
 * to messages and tools). Its serialisation with AD_REQUEST_JSON_FLAGS is
 * the body, kept in the object's own print buffer: a caller that sends the
 * text from there (valid until the object is serialised again or put) holds
 * the body once, where ad_request_body() copies it. NULL on ENOMEM.
 */
json_object *ad_request_new(const ad_config *cfg, const char *model, json_object *messages,
                            json_object *tools);

#endif /* AD_REQUEST_H */

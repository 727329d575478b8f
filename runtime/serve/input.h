/*
 * input.h -- what a request brings: the Responses API's input items and
 * the Chat Completions messages, as the conversation messages agentd
 * keeps (the chat form), and the function tools the client supplies.
 *
 * Responses input: a string (one user message), or an array of items:
 *   {"role": "user"|"assistant"|"system"|"developer", "content": TEXT}
 *     (with or without "type": "message"; TEXT a string or an array of
 *     input_text / output_text parts, joined);
 *   {"type": "function_call", "call_id", "name", "arguments"}: the
 *     assistant's call (consecutive calls form one assistant message);
 *   {"type": "function_call_output", "call_id", "output"}: its result;
 *   {"type": "agentd:tool_call", ...}: a call agentd ran (from an output
 *     the client sends back): the call and its output;
 *   {"type": "reasoning"} items are skipped.
 * Other item and part types are refused with a message naming them.
 * developer becomes system. Tools: {"type": "function", "name",
 * "description", "parameters"} (Responses) or {"type": "function",
 * "function": {...}} (Chat Completions); other types are refused.
 *
 * When the input ends with a user message, its text is the prompt and is
 * not among the messages (the agent appends it when the run starts).
 *
 * Pure: any thread.
 */
#ifndef AD_SERVE_INPUT_H
#define AD_SERVE_INPUT_H

#include <json-c/json.h>
#include <stddef.h>

typedef struct ad_input {
    json_object *messages; /* owned: array of messages to append, in order */
    char *prompt;          /* owned: the final user message's text, or NULL */
    json_object *tools;    /* owned: the client's tools (chat form), or NULL */
    char **tool_names;     /* owned */
    size_t ntools;
} ad_input;

/* input: the request's "input" (string or array); tools: its "tools" (may
 * be NULL). Returns 0, or AD_EINVAL with err saying what is wrong and
 * where ("input[2].content[0]: ..."), or AD_ENOMEM. */
int ad_input_responses(json_object *input, json_object *tools, ad_input *out, char *err,
                       size_t errlen);
/* messages: the request's "messages" array; tools as above. */
int ad_input_chat(json_object *messages, json_object *tools, ad_input *out, char *err,
                  size_t errlen);
void ad_input_free(ad_input *in);

#endif /* AD_SERVE_INPUT_H */

/*
 * conv.h -- one conversation: its messages, the JSON text of its history,
 * tool-call ids, usage, and the rules a history keeps.
 *
 * An ad_conv holds the messages (as JSON text, see conv.c) and everything that
 * follows from them: the request body, built from a cached serialisation
 * in which each message is turned into JSON text once; the ids the model's
 * tool calls go back with; the markers a turn gets when it ends without an
 * answer. The agent (agent.c) drives it step by step; the session store
 * and the REPL use its two rules on histories they load: repair (every
 * tool call answered exactly once, in call order) and validation.
 *
 * Messages never change once appended: the conversation only grows, or is
 * replaced whole (ad_conv_replace). Appending straight to the array
 * ad_conv_messages() returns is allowed (the cache catches up); changing or
 * removing a message there is not.
 *
 * Loop thread (or any one thread): an ad_conv is not shared between
 * threads. The rules (repair, check) and the usage helpers are pure
 * functions.
 */
#ifndef AD_CONV_H
#define AD_CONV_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "core/stream.h"

typedef struct ad_conv ad_conv;

/* Called with every message appended (borrowed), right after it was. */
typedef void (*ad_conv_append_fn)(void *ud, json_object *msg);

/* An empty conversation with a random tool-call id prefix; NULL on ENOMEM.
 * ad_conv_free() accepts NULL. */
ad_conv *ad_conv_new(void);
void ad_conv_free(ad_conv *c);
void ad_conv_set_observer(ad_conv *c, ad_conv_append_fn fn, void *ud);

/* The messages. Borrowed (see the header comment on appending to it).
 * A conversation keeps its messages as their JSON text: the array is
 * parsed from it on the first call and kept from then on, so a
 * conversation nobody asks for its messages costs only its text. NULL on
 * ENOMEM. */
json_object *ad_conv_messages(ad_conv *c);
/* How many messages it has. */
size_t ad_conv_count(const ad_conv *c);
/* Replaces the conversation by a copy of messages (an array; its text:
 * nothing of the caller's is kept); AD_EINVAL when it is not one,
 * AD_ENOMEM. */
int ad_conv_replace(ad_conv *c, json_object *messages);

/* ---- appending ---------------------------------------------------------- */

/* Appends msg (stolen, also on failure): the observer sees it, and
 * without an array (see ad_conv_messages) it is then released, so an
 * observer that keeps it takes a reference. Returns 0 or AD_ENOMEM. */
int ad_conv_append(ad_conv *c, json_object *msg);
/* {"role": role, "content": text} (len bytes). */
int ad_conv_add_text(ad_conv *c, const char *role, const char *text, size_t len);
/* The user's next prompt, after an assistant message "[no answer: the
 * turn ended before the model answered]" when the conversation ends with
 * a user message nobody answered (a failed run, a killed process, a loaded
 * history): never two user turns in a row. */
int ad_conv_add_prompt(ad_conv *c, const char *prompt);
/* The assistant message of response r: its text ("" for a final answer
 * without text, null next to tool calls), its reasoning fields verbatim,
 * and its tool calls with ids[i] (see ad_conv_call_id) as their ids. */
int ad_conv_add_answer(ad_conv *c, const ad_response *r, const char *const *ids);
/* {"role": "tool", "tool_call_id": id, "content": content}. */
int ad_conv_add_tool_result(ad_conv *c, const char *id, const char *content, size_t len);
/* The content parts of a step's tool results (tools/provider.h: an MCP
 * tool's images for a model that takes them), after the step's tool
 * messages: one user message {"role":"user","content":[{"type":"text",
 * "text":"The image returned by tool call ID (NAME)."}, parts...]} with
 * the parts of every call in call order (ids[i], names[i] and parts[i],
 * an array or NULL, for call i of n; the parts are shared, not copied).
 * Nothing is appended when no call has any. */
int ad_conv_add_tool_parts(ad_conv *c, size_t n, const char *const *ids,
                           const char *const *names, json_object *const *parts);
/* The turn was cancelled while the model answered: text (len bytes, may be
 * 0: nothing was said or it was taken back) stays as its answer, followed
 * by "[answer cut short: cancelled by the user]" on a line of its own.
 * Without text, a user message still waiting gets "[no answer: cancelled by
 * the user]"; otherwise nothing is added. */
int ad_conv_add_cut_answer(ad_conv *c, const char *text, size_t len);
/* The last message is a user message. */
bool ad_conv_awaits_answer(ad_conv *c);

/* ---- tool-call ids ------------------------------------------------------ */

/*
 * The id call i of r goes back with: the provider's own, byte-exact;
 * a generated "call_<prefix>_<n>" (n counting from 1 per conversation)
 * when it sent none, an empty one, or one an earlier call of r already
 * has, and always when unique (tool.unique_tool_call_ids). Caller frees;
 * NULL on ENOMEM.
 */
char *ad_conv_call_id(ad_conv *c, const ad_response *r, size_t i, bool unique);
/* The prefix is random per conversation; a replay sets the recording's so
 * that it generates the same ids. set: 1 to 23 characters of
 * [A-Za-z0-9_-], else AD_EINVAL; restarts n. */
const char *ad_conv_id_prefix(const ad_conv *c);
int ad_conv_set_id_prefix(ad_conv *c, const char *prefix);

/* ---- the request -------------------------------------------------------- */

/*
 * The request for the conversation as it is now (see ad_request_new in
 * request.h: cfg, model and tools as there; tools may be NULL). Its
 * serialisation with AD_REQUEST_JSON_FLAGS is the body; the history in it
 * is the cached text, so the call costs the messages appended since the
 * last one plus one copy of the text. The body lives in the object's print
 * buffer (request.h). Caller puts; the object reads c's cache when it is
 * serialised, so c must outlive it and not change before. NULL on ENOMEM.
 */
json_object *ad_conv_request(ad_conv *c, const ad_config *cfg, const char *model,
                             json_object *tools);
/* The body as a new string (caller frees), *len its length; NULL on ENOMEM. */
char *ad_conv_request_body(ad_conv *c, const ad_config *cfg, const char *model,
                           json_object *tools, size_t *len);

/* ---- usage -------------------------------------------------------------- */

/* Usage summed over responses: the counters and the cost that any of them
 * reported. */
typedef struct ad_usage {
    int64_t prompt_tokens, completion_tokens, total_tokens;
    double cost;
    bool has_prompt, has_completion, has_total, has_cost;
} ad_usage;

#define AD_USAGE_INIT {0, 0, 0, 0, false, false, false, false}

/* Adds a provider's usage object (any shape: counters that are present and
 * not null, a cost that is a number) to u. */
void ad_usage_add(ad_usage *u, json_object *reported);
/* Whether anything was reported. */
bool ad_usage_any(const ad_usage *u);
/* u as {"prompt_tokens", "completion_tokens", "total_tokens", "cost"} with
 * the members reported (the cost to twelve significant digits: sums of
 * binary fractions carry noise in the seventeenth); NULL when nothing was.
 * Caller puts. */
json_object *ad_usage_json(const ad_usage *u);
/* One response's usage as it goes into events: the same four members taken
 * from the provider's object as they are (not re-encoded); NULL when it
 * has none of them. Caller puts. */
json_object *ad_usage_of_response(json_object *reported);

/* ---- the rules ---------------------------------------------------------- */

/*
 * Makes a history one a provider accepts: every assistant tool call is
 * followed by exactly one tool message, in call order. A missing result
 * becomes {"role":"tool","tool_call_id":ID,"content":"interrupted"}; a tool
 * message that answers no call of the assistant message before it is
 * dropped. Returns a new array (sharing the kept messages), NULL on ENOMEM;
 * *added and *dropped (may be NULL) count the changes.
 */
json_object *ad_conv_repair(json_object *messages, size_t *added, size_t *dropped);

/*
 * Checks that messages is a conversation agentd can send: an array of
 * objects with a known role, string contents where required, and every
 * assistant tool call answered by exactly one later tool message (and no
 * tool message without its call). Returns 0 or AD_EINVAL with err naming
 * the message.
 */
int ad_conv_check(json_object *messages, char *err, size_t errlen);

#endif /* AD_CONV_H */

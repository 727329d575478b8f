/*
 * agent.h -- the agent loop: request, stream, run tools, send results, repeat.
 *
 * One ad_agent holds one conversation (an ad_conv, core/conv.h). A run
 * appends the user's prompt and then loops: build the request, stream the
 * response (text reported as it arrives), and, when the response carries
 * tool calls, append the assistant message, run every call through the tool
 * host (tools/host.h), append exactly one tool message per call in call
 * order, and send again. A response without tool calls ends
 * the run. Everything happens on the caller's libuv loop; the run reports
 * its end through a callback.
 */
#ifndef AD_AGENT_H
#define AD_AGENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "core/conv.h"
#include "core/events.h"
#include "provider/transport.h"
#include "tools/host.h"

/* How a run ended (main.c maps these to exit codes). */
enum {
    AD_RUN_OK = 0,        /* the model answered */
    AD_RUN_FAILED = 1,    /* provider, network or protocol failure */
    AD_RUN_MAX_STEPS = 3, /* max_steps reached while the model still wanted tools */
    AD_RUN_CLIENT_TOOLS = 4, /* the model called a tool the caller answers (see
                                ad_agent_set_client_tools) */
    AD_RUN_CANCELLED = 130
};

typedef struct ad_agent ad_agent;

/* Everything borrowed; must outlive the agent. */
typedef struct ad_agent_opts {
    uv_loop_t *loop;
    ad_transport *transport; /* carries the requests (provider/transport.h) */
    const ad_config *cfg;
    ad_tool_host *tools; /* may be NULL: no tools (shared: many agents may use one) */
    ad_events *events;   /* may be NULL: nobody listens */
} ad_agent_opts;

typedef void (*ad_agent_done_fn)(void *ud, int status);

/* Decisions on a call of a tool configured with confirm = true. */
enum {
    AD_APPROVE_UNASKED = -1, /* nobody could be asked: the call is denied */
    AD_APPROVE_NO = 0,
    AD_APPROVE_YES = 1,
    AD_APPROVE_ALWAYS = 2, /* yes; the approver remembers it */
    AD_APPROVE_CANCEL = 3  /* no, and cancel the run: no call of the step starts */
};

/* Returns a new agent with an empty conversation (plus the configured
 * system prompt); caller frees with ad_agent_free(). NULL on ENOMEM. The
 * agent is the producer of opts->events (it takes the hub's flow hook) and
 * reports there: every message it appends (MESSAGE), a replaced
 * conversation (HISTORY), and the run's events. While the hub holds events
 * (a sink paused: events.h) the agent's transfer is paused, and neither the
 * next request nor the step's tool calls start. */
ad_agent *ad_agent_new(const ad_agent_opts *opts);
/* Releases the agent; a run must not be in progress. Closes its handles:
 * run the loop once more afterwards. */
void ad_agent_free(ad_agent *a);

/* The host's tools this agent offers (and runs): only those named in
 * names[0..n); NULL for all of them (the default). A call of a tool not
 * offered is answered as an unknown tool. Copied. Returns 0 or AD_ENOMEM. */
int ad_agent_offer_tools(ad_agent *a, const char *const *names, size_t n);
/* Tools the caller answers itself (the client-supplied functions of
 * `agentd serve`): a JSON array of {"type":"function","function":{name,
 * description, parameters}} offered besides the host's (taken; NULL:
 * none). A step whose calls include one of them runs the others, appends
 * their results, and ends the run with AD_RUN_CLIENT_TOOLS: the
 * conversation then ends with the assistant message and the results of
 * agentd's own calls; the caller appends one result per client call
 * (ad_conv_add_tool_result) and continues with ad_agent_run(a, NULL, ...).
 * Not during a run. Returns 0, AD_EINVAL (a tool without a name) or
 * AD_ENOMEM. */
int ad_agent_set_client_tools(ad_agent *a, json_object *tools);

/* Starts a run with prompt as the next user message (after an assistant
 * message "[no answer: the turn ended before the model answered]" when the
 * conversation ends with a user message nobody answered); prompt NULL
 * continues the conversation as it is (after the results of client tool
 * calls). Returns 0, or a negative AD_E* (a run is already in progress). on_done is called once, on
 * the loop thread, when the run ended. */
int ad_agent_run(ad_agent *a, const char *prompt, ad_agent_done_fn on_done, void *ud);
/* Cancels the run in progress, if any; on_done reports AD_RUN_CANCELLED.
 * Running tools are abandoned, calls not yet started never start. Text the
 * model had streamed stays as its answer, marked as cut short; a prompt
 * without any answer gets a marked empty one (as ad_agent_run() gives one
 * to a prompt left unanswered by an earlier run): the conversation never
 * holds two user messages in a row. Called from inside a sink's event (the
 * agent is then in the middle of its work), the run stops there and ends
 * from the loop right after the delivery: on_done comes then. */
void ad_agent_cancel(ad_agent *a);

/* Calls of tools configured with confirm = true: before any call of the
 * step starts, the agent emits AD_EV_APPROVAL for each and waits for every
 * answer, given through ad_agent_approve() by a sink with AD_SINK_APPROVES
 * (from its event callback or later, on the loop thread). With no such sink
 * the calls are denied at once. yes = true (--yes) runs them unasked. */
void ad_agent_set_yes(ad_agent *a, bool yes);
/* Answers the approval event of the call call_id (as the event carried
 * it) with AD_APPROVE_*. Returns 0, or AD_EINVAL when no call with that id
 * waits for an answer (answered already, or the run was cancelled). */
int ad_agent_approve(ad_agent *a, const char *call_id, int decision);

/* Replaces the conversation by a deep copy of `messages` (a JSON array, as
 * ad_agent_messages() gives), e.g. a resumed session, and emits HISTORY.
 * Not during a run. */
int ad_agent_load_messages(ad_agent *a, json_object *messages);

/* The conversation's messages (ad_conv_messages). Borrowed; NULL on
 * ENOMEM. */
json_object *ad_agent_messages(ad_agent *a);
/* The conversation itself. Borrowed; lives as long as the agent. */
ad_conv *ad_agent_conv(ad_agent *a);
/* The conversation's id as the tool host and its providers see it (the
 * calls' conv_id; the default is the id prefix). A worker gives its job's
 * id: with the call's id it is the call's idempotency key. Copied; NULL
 * restores the default. */
int ad_agent_set_conv_id(ad_agent *a, const char *id);
/* Replaces the model for later requests (copied). */
int ad_agent_set_model(ad_agent *a, const char *model);

/* Generated tool-call ids are "call_<prefix>_<n>" (n counts from 1 per
 * agent); the prefix is random per agent. A replay sets the prefix of the
 * recording so that it generates the same ids. set: 1 to 23 characters of
 * [A-Za-z0-9_-], else AD_EINVAL; resets the counter. */
const char *ad_agent_id_prefix(const ad_agent *a);
int ad_agent_set_id_prefix(ad_agent *a, const char *prefix);

/* Builds the request body for the current conversation (exposed for tests).
 * Returns a new string; caller frees. */
char *ad_agent_request_body(ad_agent *a, size_t *len);

#endif /* AD_AGENT_H */

/*
 * respond.h -- one response of the Responses API, built from a run's
 * events: the server-sent events a client streams and the response object
 * it gets whole (POST without stream, GET /v1/responses/{id}).
 *
 * The events are the standard ones, each with its sequence_number (from
 * 0): response.created, response.in_progress, response.output_item.added
 * and .done, response.content_part.added and .done,
 * response.output_text.delta and .done, response.function_call_arguments
 * .delta and .done, and one of response.completed, response.failed,
 * response.incomplete. The output items:
 *   - "message" (role assistant, one output_text part): a step's text.
 *     A retry voids what a step said so far: its item is closed with
 *     status "incomplete" and the attempt that follows opens a new one;
 *   - "agentd:tool_call" {id, call_id, name, arguments, output, is_error,
 *     status}: a call agentd ran itself; added when the model asked for
 *     it, done with its result ("incomplete": not run, max_steps). Clients
 *     keep or skip such items; they never run them;
 *   - "function_call" {id, call_id, name, arguments, status}: a call of a
 *     tool the client supplied, which it answers with function_call_output.
 * usage is always an object (zeros when the provider reported nothing):
 * some clients require it.
 *
 * Threads: any one thread.
 */
#ifndef AD_SERVE_RESPOND_H
#define AD_SERVE_RESPOND_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/events.h"

typedef struct ad_rsp ad_rsp;

typedef struct ad_rsp_opts {
    const char *id;       /* "resp_..." (copied) */
    const char *model;    /* the profile's name (copied) */
    double created_at;    /* Unix seconds */
    bool background;
    bool store;
    const char *previous_response_id; /* copied; may be NULL */
    const char *instructions;         /* copied; may be NULL */
    /* Names of the client's function tools (copied). */
    const char *const *client_tools;
    size_t nclient_tools;
} ad_rsp_opts;

/* One event: its type ("response.output_text.delta") and its JSON text
 * (sequence_number included); both borrowed for the call. */
typedef void (*ad_rsp_emit_fn)(void *ud, const char *type, const char *json, size_t len);

/* NULL on ENOMEM. emit may be NULL (nobody streams). */
ad_rsp *ad_rsp_new(const ad_rsp_opts *o, ad_rsp_emit_fn emit, void *ud);
void ad_rsp_free(ad_rsp *r);

/* response.created and response.in_progress ("queued" first for a
 * background response). */
void ad_rsp_start(ad_rsp *r);
/* One event of the run (core/events.h); END ends nothing here (see
 * ad_rsp_end), MESSAGE and HISTORY are not the response's. */
void ad_rsp_event(ad_rsp *r, const ad_event *ev);
/* The run ended with status (AD_RUN_*; AD_RUN_CLIENT_TOOLS completes):
 * open items are closed and the final status is set; error (may be NULL)
 * is the message of a failure. The final event is not sent yet:
 * ad_rsp_emit_final sends it (once the response is on disk). */
void ad_rsp_end(ad_rsp *r, int run_status, const char *error);
void ad_rsp_emit_final(ad_rsp *r);

/* "queued", "in_progress", "completed", "failed", "incomplete", "cancelled". */
const char *ad_rsp_status(const ad_rsp *r);
bool ad_rsp_ended(const ad_rsp *r);
/* The number of events sent so far (the next sequence_number). */
int ad_rsp_events(const ad_rsp *r);
/* The response object as it is now, whole (caller frees): the
 * agentd:tool_call items are not in output but in "agentd": {"tool_calls":
 * [...]} (clients that know the output item types, such as the AI SDK's
 * generateText, refuse others in a whole object; a stream's events carry
 * them in output). NULL on ENOMEM. */
char *ad_rsp_object(const ad_rsp *r, size_t *len);
/* The call ids of the function_call items (the calls the client must
 * answer), or an empty list. Borrowed. */
size_t ad_rsp_client_calls(const ad_rsp *r, const char *const **ids);

/* A stored response object (JSON text) replayed as the events of a
 * stream: created, in_progress, each item added and done (a message with
 * its text as one delta), then the final event. emit as above. Returns 0,
 * or AD_EINVAL when json is not a response object. */
int ad_rsp_replay(const char *json, ad_rsp_emit_fn emit, void *ud);

#endif /* AD_SERVE_RESPOND_H */

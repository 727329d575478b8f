/*
 * events.h -- what a conversation reports, as typed events, to any number
 * of sinks.
 *
 * A conversation's producer (the agent) fills an ad_event and emits it
 * through the conversation's hub (ad_events). The hub redacts the API key
 * out of every string the event carries, once (text deltas excepted: they
 * arrive redacted, see ad_events_text; MESSAGE and HISTORY carry the
 * conversation itself, which a sink that stores or shows it redacts), and
 * hands the event to each sink in the order they were added. Sinks: plain
 * text (sinks/text.h), JSON Lines (sinks/jsonl.h), the session store
 * (sinks/store.h), the REPL's renderer (cli/repl_view.h), later an HTTP
 * stream. The hub itself writes nothing anywhere.
 *
 * Order: every sink sees every event in emission order, each event whole.
 * An event emitted while the hub is delivering another one (a sink that
 * reacts by making the producer emit) waits until that delivery is over.
 *
 * Backpressure: a sink that cannot take more returns AD_SINK_PAUSE. The
 * event it got still reaches the other sinks; later events are held in the
 * hub, copied, until every paused sink has called ad_events_resume(). While
 * the hub holds events (for that reason, or because one was emitted during
 * a delivery) the producer is told to stop (the flow hook, true): the agent
 * pauses its transfer and starts neither a request nor a tool call, so what
 * the hub holds stays bounded by what the producer had in hand. When the
 * hub has delivered everything and nobody is paused it says so (false),
 * never from inside a delivery.
 *
 * Approval: AD_EV_APPROVAL asks for a decision on a tool call; a sink that
 * can answer (flag AD_SINK_APPROVES) answers then or later through
 * ad_agent_approve() (core/agent.h). ad_events_can_approve() tells the
 * producer whether anybody will.
 *
 * A plugin's log lines are not events: the tool host (tools/host.h) tags
 * them with the conversation and the call and hands them to the front
 * end's log function, which sees lines from outside any call too.
 *
 * Threads: the loop thread only. Every string and JSON object of an event
 * is borrowed for the duration of the sink's call only.
 */
#ifndef AD_CORE_EVENTS_H
#define AD_CORE_EVENTS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum ad_event_kind {
    AD_EV_TEXT,          /* text: a delta of the answer (arrives redacted) */
    AD_EV_STEP_START,    /* a step's request goes out (each attempt); may_repeat:
                            a retry may still repeat the step after its text was
                            shown, so that text must stay retractable */
    AD_EV_TOOL_CALL,     /* id, name, text = arguments; not_run: max_steps was
                            reached, the call will not run (id may be NULL) */
    AD_EV_APPROVAL,      /* id, name, text = arguments: a decision is wanted */
    AD_EV_TOOL_PROGRESS, /* id, name, done, total (<= 0: unknown), text = message
                            (NULL when there is none) */
    AD_EV_TOOL_RESULT,   /* id, name, text = content, is_error, seconds = its
                            running time */
    AD_EV_STEP_FINISH,   /* finish_reason (may be NULL), usage (may be NULL) */
    AD_EV_RETRY,         /* attempt, text = reason, seconds = the wait: the step
                            starts again and its text so far is void */
    AD_EV_FINISH,        /* step = the run's steps, text = the final answer,
                            usage = the run's totals (may be NULL) */
    AD_EV_END,           /* status: the run is over (AD_RUN_*, core/agent.h) */
    AD_EV_ERROR,         /* text = message; outside: a failure outside a run
                            (usage, config, plugins, files) */
    AD_EV_WARN,          /* text = message */
    AD_EV_MESSAGE,       /* message: appended to the conversation */
    AD_EV_HISTORY        /* message: the conversation was replaced by this array */
} ad_event_kind;

typedef struct ad_event {
    ad_event_kind kind;
    const char *conv_id; /* set by the hub; NULL when none was set */
    int step;            /* 1-based; the step a message belongs to */
    const char *id;      /* tool events: the call id */
    const char *name;    /* tool events: the tool */
    const char *text;
    size_t len;
    bool is_error;
    bool not_run;
    bool may_repeat;
    bool outside;
    double seconds;
    int attempt;
    int status;
    double done, total;
    const char *finish_reason;
    json_object *usage;   /* prompt_tokens, completion_tokens, total_tokens, cost:
                             the counters the provider reported */
    json_object *message; /* MESSAGE, HISTORY: not redacted (ad_events_secret) */
} ad_event;

/* ---- sinks -------------------------------------------------------------- */

enum { AD_SINK_OK = 0, AD_SINK_PAUSE = 1 };
enum { AD_SINK_APPROVES = 1u << 0 };

typedef struct ad_events ad_events;
typedef struct ad_sink ad_sink;

typedef struct ad_sink_vt {
    /* One event. Returns AD_SINK_OK, or AD_SINK_PAUSE (see above). */
    int (*event)(ad_sink *s, const ad_event *ev);
    /* Releases the sink (ad_sink_close, ad_events_free). May be NULL: the
     * sink's owner releases it. */
    void (*close)(ad_sink *s);
} ad_sink_vt;

/* The head of every sink (a sink embeds it as its first member). */
struct ad_sink {
    const ad_sink_vt *vt;
    unsigned flags; /* AD_SINK_* */
    ad_events *hub; /* set by ad_events_add, NULL when not attached */
    ad_sink *next;  /* the hub's */
    bool paused;    /* the hub's */
};

/* Calls s->vt->close (when there is one). Accepts NULL. */
void ad_sink_close(ad_sink *s);

/* ---- the hub ------------------------------------------------------------ */

/* Returns a new hub with no sinks; NULL on ENOMEM. */
ad_events *ad_events_new(void);
/* Closes every sink still attached, first to last (each detached before it
 * closes, so what it reports goes to the ones after it), drops what is held
 * and frees the hub. Accepts NULL. */
void ad_events_free(ad_events *e);
/* Adds s at the end. */
void ad_events_add(ad_events *e, ad_sink *s);
/* Removes s without closing it (a paused s counts as resumed). */
void ad_events_remove(ad_events *e, ad_sink *s);
/* Closes s while it is still attached (what it reports at its close
 * reaches the others), then removes it. */
void ad_events_close_sink(ad_events *e, ad_sink *s);

/* The string to redact (copied; NULL or "" for none), and the
 * conversation id events carry (copied; NULL for none). */
void ad_events_set_secret(ad_events *e, const char *secret);
const char *ad_events_secret(const ad_events *e);
void ad_events_set_conv_id(ad_events *e, const char *id);

/* The producer's flow hook (one producer per hub; NULL removes it): called
 * with true when the hub starts holding events and with false when it has
 * delivered them all and no sink is paused. */
typedef void (*ad_events_flow_fn)(void *ud, bool paused);
void ad_events_set_flow(ad_events *e, ad_events_flow_fn fn, void *ud);
/* True while the hub holds events or a sink is paused: a front end that
 * ends a run runs its loop until this is false. */
bool ad_events_paused(const ad_events *e);
/* True while the hub delivers an event (the caller is inside a sink's
 * event callback). */
bool ad_events_delivering(const ad_events *e);
/* Bytes of the events held now (their copies). */
size_t ad_events_held(const ad_events *e);
/* For a sink that returned AD_SINK_PAUSE: it can take events again. From a
 * sink's event callback too; otherwise what was held is delivered before
 * this returns. */
void ad_events_resume(ad_events *e, ad_sink *s);

/* True when a sink answers approvals. */
bool ad_events_can_approve(const ad_events *e);

/* Delivers ev to every sink, redacted (ev itself is left as it was). */
void ad_events_emit(ad_events *e, ad_event *ev);

/* Builders for the producer: each fills an ad_event and emits it. A NULL
 * hub takes nothing (a producer nobody listens to). */
/* A text delta. It must arrive redacted: the agent redacts the stream and
 * holds back a tail that could be the start of the key until the next
 * delta shows, which nobody seeing one delta at a time can do; scanning
 * every delta again here would only cost time on the hottest path. */
void ad_events_text(ad_events *e, int step, const char *text, size_t len);
void ad_events_step_start(ad_events *e, int step, bool may_repeat);
void ad_events_tool_call(ad_events *e, int step, const char *id, const char *name,
                         const char *args, size_t args_len, bool not_run);
void ad_events_approval(ad_events *e, int step, const char *id, const char *name,
                        const char *args, size_t args_len);
void ad_events_tool_progress(ad_events *e, int step, const char *id, const char *name,
                             double done, double total, const char *msg);
void ad_events_tool_result(ad_events *e, int step, const char *id, const char *name,
                           const char *content, size_t len, bool is_error, double seconds);
/* usage: borrowed, may be NULL */
void ad_events_step_finish(ad_events *e, int step, const char *finish_reason, json_object *usage);
void ad_events_retry(ad_events *e, int step, int attempt, const char *reason, double wait_s);
void ad_events_finish(ad_events *e, int steps, const char *text, size_t len, json_object *usage);
void ad_events_end(ad_events *e, int step, int status);
void ad_events_message(ad_events *e, int step, json_object *msg);
void ad_events_history(ad_events *e, json_object *messages);
void ad_events_error(ad_events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ad_events_warn(ad_events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure outside a run (usage, config, plugins, files): an ERROR marked
 * outside, so that every failing --json run ends with an error event. */
void ad_events_fail(ad_events *e, const char *msg);

#endif /* AD_CORE_EVENTS_H */

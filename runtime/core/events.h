/*
 * events.h -- what a run reports, as text for people or JSON Lines.
 *
 * Text mode: the answer streams to stdout (each step's text exactly once,
 * also when a retry repeats a step; neutralised on a terminal: textout.h);
 * tool activity and errors go to stderr. JSON mode (--json): stdout carries one JSON object per line, written
 * with one fwrite and flushed per event:
 *   {"type":"text_delta","step":N,"text":...}
 *   {"type":"tool_call","step":N,"id":...,"name":...,"arguments":"..."}
 *   {"type":"tool_call",...,"not_run":true}   a call that will never run (the
 *        last step at max_steps): no tool_result follows; id is the
 *        provider's or null
 *   {"type":"tool_progress","step":N,"id":...,"name":...,"progress":P,
 *        "total":T|null,"message":...|null}   a running call's progress
 *   {"type":"tool_result","step":N,"id":...,"name":...,"content":...,"is_error":false}
 *   {"type":"step_finish","step":N,"finish_reason":...,"usage":{...}|null}
 *   {"type":"retry","step":N,"attempt":N,"reason":...,"wait_s":S}
 *   {"type":"finish","steps":N,"text":"<final text>","usage":{...}|null}
 *   {"type":"error","message":...}
 * usage has one shape everywhere: an object with the counters the provider
 * reported (prompt_tokens, completion_tokens, total_tokens, cost; in finish
 * the sums over the run), or null when it reported none.
 * Every string that leaves the process through here has the API key (when
 * set with ad_events_set_secret) replaced by "[REDACTED]"; text deltas are
 * redacted by their producer (see ad_events_text).
 */
#ifndef AD_EVENTS_H
#define AD_EVENTS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct ad_events ad_events;

/* Returns a new sink writing to out (events/answer) and err (activity). */
ad_events *ad_events_new(FILE *out, FILE *err, bool json);
void ad_events_free(ad_events *e);
/* The secret to redact (copied); NULL or "" for none. */
void ad_events_set_secret(ad_events *e, const char *secret);
/* Text mode only: colour and tool lines for a terminal. */
void ad_events_set_quiet(ad_events *e, bool quiet);

/* A tap (the session store) sees the facts that no conversation message
 * carries, in both modes and unredacted, as a borrowed JSON object:
 *   {"type":"tool_result","step":N,"id":...,"name":...,"is_error":B,"seconds":S}
 *   {"type":"step_finish","step":N,"finish_reason":...,"usage":{...}|null}
 * Text deltas never reach it (the hot path stays as it is). */
typedef void (*ad_events_tap_fn)(void *ud, json_object *ev);
void ad_events_set_tap(ad_events *e, ad_events_tap_fn fn, void *ud);

/* A text delta. It must arrive redacted: the agent redacts the stream and
 * holds back a tail that could be the start of the key until the next
 * delta shows, which a sink seeing one delta at a time cannot do; scanning
 * every delta again here would only cost time on the hottest path. */
void ad_events_text(ad_events *e, int step, const char *text, size_t len);
/* Text mode: step `step` is about to stream. may_repeat: a retry may still
 * repeat it after its text was shown, so that text must stay retractable
 * (textout.h: erased on a terminal, truncated in a file, held back on a
 * pipe until the step's response is complete). The retry event takes it
 * back; tool events, step_finish, finish, an error and
 * ad_events_commit_text() make it final. No-op in JSON mode. */
void ad_events_step_begin(ad_events *e, int step, bool may_repeat);
void ad_events_commit_text(ad_events *e);
/* Writes answer text (or a line break of the answer) to out the way text
 * mode does: for an observer that shows TEXT events itself (the REPL).
 * Arrives redacted. */
void ad_events_put_text(ad_events *e, const char *text, size_t len);
void ad_events_tool_call(ad_events *e, int step, const char *id, const char *name,
                         const char *args, size_t args_len);
/* A call the run ends without running (max_steps): a tool_call marked
 * not_run; no result follows. */
void ad_events_tool_not_run(ad_events *e, int step, const char *id, const char *name,
                            const char *args, size_t args_len);
/* Progress of a running call: done of total (total <= 0: unknown), msg
 * may be NULL. Text mode: for an observer only (the REPL's spinner). */
void ad_events_tool_progress(ad_events *e, int step, const char *id, const char *name,
                             double done, double total, const char *msg);
void ad_events_tool_result(ad_events *e, int step, const char *id, const char *name,
                           const char *content, size_t len, bool is_error, double seconds);
/* usage: borrowed, may be NULL */
void ad_events_step_finish(ad_events *e, int step, const char *finish_reason,
                           json_object *usage);
void ad_events_retry(ad_events *e, int step, int attempt, const char *reason, double wait_s);
void ad_events_finish(ad_events *e, int steps, const char *text, size_t len, json_object *usage);
/* Writes msg to f, each of its lines as "agentd: LINE" (config errors come
 * one problem per line). */
void ad_print_lines(FILE *f, const char *msg);
/* A failure outside a run (usage, config, plugins, files): msg on err as
 * ad_print_lines() writes it and, in JSON mode, as one error event with the
 * whole message, so that every failing --json run ends with an error
 * event. Redacted like every other output. */
void ad_events_fail(ad_events *e, const char *msg);

void ad_events_error(ad_events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ad_events_warn(ad_events *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What an observer sees (text mode only). Strings are redacted and valid
 * only during the call; `text` is the delta (TEXT), the arguments
 * (TOOL_CALL), the result (TOOL_RESULT), the reason (RETRY), the final text
 * (FINISH), the message (ERROR, WARN) or the progress message, maybe NULL
 * (TOOL_PROGRESS: progress and total hold the figures). */
typedef enum ad_event_kind {
    AD_EVENT_TEXT,
    AD_EVENT_TOOL_CALL,
    AD_EVENT_TOOL_RESULT,
    AD_EVENT_STEP_FINISH,
    AD_EVENT_RETRY,
    AD_EVENT_FINISH,
    AD_EVENT_ERROR,
    AD_EVENT_WARN,
    AD_EVENT_TOOL_PROGRESS
} ad_event_kind;

typedef struct ad_event {
    ad_event_kind kind;
    int step;
    const char *id;   /* tool events */
    const char *name; /* tool events */
    const char *text;
    size_t len;
    bool is_error;             /* TOOL_RESULT */
    bool not_run;              /* TOOL_CALL: the call will never run (max_steps) */
    double seconds;            /* TOOL_RESULT: run time; RETRY: the wait */
    int attempt;               /* RETRY */
    const char *finish_reason; /* STEP_FINISH */
    json_object *usage;        /* STEP_FINISH (the step), FINISH (the run); may be NULL */
    double progress, total;    /* TOOL_PROGRESS (total <= 0: unknown) */
} ad_event;

/* Called for every text-mode event before the built-in output; returning
 * true means the observer showed the event itself and the built-in output
 * is skipped (the REPL's renderer). NULL removes it. */
typedef bool (*ad_events_observer_fn)(void *ud, const ad_event *ev);
void ad_events_set_observer(ad_events *e, ad_events_observer_fn fn, void *ud);


#endif /* AD_EVENTS_H */

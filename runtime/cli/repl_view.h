/*
 * repl_view.h -- the REPL's terminal view: the renderer of a turn's events
 * (a sink) and the terminal approval prompt.
 *
 * Answer text goes to `out` through an ad_textout (neutralised on a
 * terminal, taken back when a retry repeats a step); tool calls become one
 * compact line each on `err`, a spinner (a uv_timer, a terminal only) fills
 * the wait for the model and is wiped before anything else is written.
 *
 * The sink answers approvals (AD_SINK_APPROVES): for each AD_EV_APPROVAL it
 * asks on the terminal, inside the event (blocking the loop while the user
 * decides: one conversation), reading one key with the terminal in
 * non-canonical mode and ISIG off, so Ctrl-C arrives as a byte and cancels
 * the turn; it then answers through ad_agent_approve(). A tool answered
 * "always" is not asked about again while the view lives.
 *
 * Loop thread only.
 */
#ifndef AD_REPL_VIEW_H
#define AD_REPL_VIEW_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include "base/buf.h"
#include "core/agent.h"
#include "core/events.h"

typedef struct ad_repl_view ad_repl_view;

typedef struct ad_repl_view_opts {
    uv_loop_t *loop;  /* the spinner's timer */
    ad_agent *agent;  /* approvals are answered to it */
    FILE *out, *err;  /* borrowed */
    bool tty_in;      /* stdin is a terminal: the prompt reads single keys */
    bool tty_err;     /* err is a terminal: spinner, line widths */
    bool color, utf8; /* colours; UTF-8 glyphs */
    bool quiet;       /* no tool lines */
} ad_repl_view_opts;

/* NULL on ENOMEM. */
ad_repl_view *ad_repl_view_new(const ad_repl_view_opts *o);
/* Frees v (its sink must be detached); its timer closes on the loop: run it
 * once more. Accepts NULL. */
void ad_repl_view_free(ad_repl_view *v);
/* The sink to add to the conversation's hub (owned by v; no close). */
ad_sink *ad_repl_view_sink(ad_repl_view *v);

/* A turn begins (the spinner starts) / ended with status (AD_RUN_*). */
void ad_repl_view_turn_begin(ad_repl_view *v);
void ad_repl_view_turn_end(ad_repl_view *v, int status);
/* Ctrl-C during the turn: later approvals of the turn answer "cancel". */
void ad_repl_view_cancel(ad_repl_view *v);

/* Starts a fresh line for a message of ours (after any text held back). */
void ad_repl_view_bol(ad_repl_view *v);
/* A dim line on err (hints, notices) / an error line. */
void ad_repl_view_note(ad_repl_view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ad_repl_view_error(ad_repl_view *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* True when tool was answered "always". */
bool ad_repl_view_always(const ad_repl_view *v, const char *tool);
/* /usage: tokens and cost of the conversation (every step) and of the
 * last finished turn, on out. */
void ad_repl_view_print_usage(ad_repl_view *v);
/* A new conversation counts from zero. */
void ad_repl_view_usage_reset(ad_repl_view *v);

/* Appends s[0..len) for a one-line display of at most max bytes: line
 * breaks and tabs become spaces, other control characters (C0, DEL, C1) a
 * '?', so a model or a tool cannot move the cursor or switch colours; a cut
 * lands on a UTF-8 character boundary and is marked. */
void ad_repl_put_shown(ad_buf *b, const char *s, size_t len, size_t max, bool utf8);

#endif /* AD_REPL_VIEW_H */

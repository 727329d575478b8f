/*
 * text.h -- the plain-text sink: a run as a person reads it.
 *
 * The answer streams to `out` (each step's text exactly once, also when a
 * retry repeats a step; neutralised on a terminal: textout.h); tool
 * activity, retries, warnings and errors go to `err`:
 *   [tool] NAME ARGS            a call (ARGS on one line, at most 200 bytes;
 *                               " (not run)" at max_steps)
 *   [tool] NAME -> RESULT (T ms)   or "failed:" for an error result
 *   agentd: REASON; retrying in S s (attempt N)
 *   agentd: warning: MESSAGE    agentd: error: MESSAGE
 *   agentd: LINE                each line of a failure outside a run
 * quiet drops the tool lines. Tool lines have control characters shown as
 * '?': a tool cannot move the cursor or switch colours. (A plugin's log
 * lines are no event: the tool host hands them, tagged with the
 * conversation and the call, to the front end's log function, tools/host.h.)
 *
 * Writes block: for a front end with one conversation (the CLI) its own
 * stdout is the right place to wait, so this sink never pauses. The front
 * end chooses out's buffering (main.c: a large buffer on a pipe or file,
 * flushed at the end of each step).
 */
#ifndef AD_SINKS_TEXT_H
#define AD_SINKS_TEXT_H

#include <stdbool.h>
#include <stdio.h>

#include "core/events.h"

/* A new sink writing to out and err (borrowed; they outlive it). Closing
 * it writes what is held back and frees it. NULL on ENOMEM. */
ad_sink *ad_text_sink_new(FILE *out, FILE *err, bool quiet);

/* Writes msg to f, each of its lines as "agentd: LINE" (config errors come
 * one problem per line). */
void ad_print_lines(FILE *f, const char *msg);

#endif /* AD_SINKS_TEXT_H */

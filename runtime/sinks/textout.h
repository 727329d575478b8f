/*
 * textout.h -- the answer's text on standard output in text mode: each
 * step's text exactly once, and no control sequences from the model on a
 * terminal.
 *
 * A retry repeats a step whose text was already (partly) shown. How that
 * text is taken back depends on where the output goes:
 *   terminal      erased (cursor up to where the step's text began, clear to
 *                 the end of the screen) while it still fits on the screen;
 *                 a longer one cannot be reached any more: its line is ended
 *                 and the retry's notice (stderr) separates the attempts.
 *   regular file  truncated back to where the step's text began, and
 *                 written on from there.
 *   pipe, other   bytes cannot be taken back: while a step may still be
 *                 repeated its text is held, and written when the step's
 *                 response is complete (or the run fails). Steps that can no
 *                 longer be repeated stream as they arrive.
 *
 * On a terminal the text is neutralised as it is written: C0 controls other
 * than newline and tab, a carriage return not followed by a newline, and DEL
 * are shown in caret notation (ESC as "^["), C1 controls (U+0080..U+009F)
 * and invalid UTF-8 as U+FFFD. A UTF-8 sequence (or a "\r\n") split across
 * writes is put together first. Other outputs get the bytes as they are.
 *
 * A step's text is assumed to start at the beginning of a line (the previous
 * step's text and every activity line end with a newline).
 */
#ifndef AD_TEXTOUT_H
#define AD_TEXTOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum ad_textout_kind {
    AD_TEXTOUT_TTY,
    AD_TEXTOUT_FILE,
    AD_TEXTOUT_STREAM
} ad_textout_kind;

typedef struct ad_textout ad_textout;

/* A writer for out (borrowed; must outlive it); the kind comes from what
 * out's descriptor is. NULL on ENOMEM. */
ad_textout *ad_textout_new(FILE *out);
/* The same with the kind given (tests: a terminal's handling on a file). */
ad_textout *ad_textout_new_kind(FILE *out, ad_textout_kind kind);
/* Writes what is held, then releases t. Accepts NULL. */
void ad_textout_free(ad_textout *t);
ad_textout_kind ad_textout_get_kind(const ad_textout *t);
/* Terminal kind: the screen size to use instead of asking the terminal
 * (0, 0: ask it). For tests. */
void ad_textout_set_screen(ad_textout *t, unsigned cols, unsigned rows);

/* A step's text begins (what came before is committed). may_repeat: a retry
 * may still take it back; false lets it stream everywhere. */
void ad_textout_begin(ad_textout *t, bool may_repeat);
/* Writes text of the current step (flushed at once on a terminal). */
void ad_textout_write(ad_textout *t, const char *s, size_t n);
/* The step's text is final: what was held is written. Idempotent. */
void ad_textout_commit(ad_textout *t);
/* Takes the current step's text back. Returns true when it is gone from the
 * output, false when it stays (too long for the screen, or the file could not
 * be truncated); the output is then at the start of a fresh line. */
bool ad_textout_retract(ad_textout *t);

#endif /* AD_TEXTOUT_H */

/*
 * text.c -- the plain-text sink (see text.h).
 *
 * The answer goes through an ad_textout (textout.h), which neutralises it
 * on a terminal and takes a step's text back when a retry repeats the step:
 * STEP_START begins a step's text, RETRY takes it back, and every event
 * that shows the response is complete (a tool call or result, the step's
 * end, the finish, a warning, an error, the run's end) commits it first. A
 * line of the answer left open is ended before activity lines appear on a
 * terminal shared by both streams. Strings arrive redacted (events.h).
 */
#include "sinks/text.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"
#include "sinks/textout.h"

typedef struct text_sink {
    ad_sink base;
    FILE *out, *err;
    bool quiet;
    bool text_open; /* the answer's last line has no newline yet */
    ad_textout *tout;
    ad_buf line; /* reused for tool lines */
} text_sink;

/* Ends the answer's open line before activity lines appear. */
static void close_text_line(text_sink *t)
{
    ad_textout_commit(t->tout);
    if (t->text_open) {
        ad_textout_write(t->tout, "\n", 1);
        t->text_open = false;
    }
    fflush(t->out);
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends s[0..len) to b as one line of at most max bytes, "..." when cut
 * (on a character boundary). Outside JSON strings a run of white space
 * disappears next to a bracket, a comma or a colon, else becomes one space,
 * so pretty-printed JSON reads like compact JSON; inside strings a line
 * break becomes a space. Control characters (C0, DEL, C1) and invalid UTF-8
 * become '?': a tool line cannot move the cursor or switch colours. */
static void put_one_line(ad_buf *b, const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    size_t start = b->len;
    bool in_str = false, esc = false, cut = false;
    while (p < end) {
        if (b->len - start >= max) {
            cut = true;
            break;
        }
        unsigned char c = *p;
        if (!in_str && is_blank(c)) {
            const unsigned char *q = p;
            while (q < end && is_blank(*q))
                q++;
            char prev = b->len > start ? b->data[b->len - 1] : '{';
            bool drop = q == end || prev == '{' || prev == '[' || *q == '}' || *q == ']' ||
                        *q == ',' || *q == ':';
            if (!drop)
                ad_buf_putc(b, ' ');
            p = q;
            continue;
        }
        if (c >= 0x80) {
            size_t n;
            if (ad_utf8_seq(p, (size_t)(end - p), &n) && !(c == 0xc2 && p[1] < 0xa0)) {
                if (b->len - start + n > max) {
                    cut = true;
                    break;
                }
                ad_buf_append(b, p, n);
            } else {
                ad_buf_putc(b, '?');
            }
            p += n;
            esc = false;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            ad_buf_putc(b, is_blank(c) ? ' ' : '?');
        else
            ad_buf_putc(b, (char)c);
        if (in_str && !esc && c == '"')
            in_str = false;
        else if (!in_str && c == '"')
            in_str = true;
        esc = in_str && !esc && c == '\\';
        p++;
    }
    while (b->len > start && b->data[b->len - 1] == ' ')
        b->len--;
    if (cut)
        ad_buf_puts(b, "...");
}

static void show_short(text_sink *t, const char *s, size_t len)
{
    ad_buf_reset(&t->line);
    put_one_line(&t->line, s, len, 200);
    if (t->line.data)
        fwrite(t->line.data, 1, t->line.len, t->err);
}

static void message(text_sink *t, const char *prefix, const ad_event *ev)
{
    fflush(t->out);
    fputs(prefix, t->err);
    fwrite(ev->text, 1, ev->len, t->err);
    fputc('\n', t->err);
    fflush(t->err);
}

static int text_event(ad_sink *s, const ad_event *ev)
{
    text_sink *t = (text_sink *)s;
    switch (ev->kind) {
    case AD_EV_TEXT:
        ad_textout_write(t->tout, ev->text, ev->len);
        t->text_open = ev->text[ev->len - 1] != '\n';
        break;
    case AD_EV_STEP_START:
        ad_textout_begin(t->tout, ev->may_repeat);
        break;
    case AD_EV_TOOL_CALL:
        ad_textout_commit(t->tout); /* the response is complete */
        if (t->quiet)
            break;
        close_text_line(t);
        fprintf(t->err, "[tool] %s ", ev->name ? ev->name : "?");
        show_short(t, ev->text, ev->len);
        fputs(ev->not_run ? " (not run)\n" : "\n", t->err);
        break;
    case AD_EV_TOOL_RESULT:
        ad_textout_commit(t->tout);
        if (t->quiet)
            break;
        fprintf(t->err, "[tool] %s %s ", ev->name ? ev->name : "?",
                ev->is_error ? "failed:" : "->");
        show_short(t, ev->text, ev->len);
        fprintf(t->err, " (%.1f ms)\n", ev->seconds * 1000);
        break;
    case AD_EV_STEP_FINISH:
    case AD_EV_FINISH:
        close_text_line(t);
        break;
    case AD_EV_RETRY:
        /* The step starts again: its text so far must not stay twice. */
        ad_textout_retract(t->tout);
        t->text_open = false;
        fflush(t->out);
        fputs("agentd: ", t->err);
        fwrite(ev->text, 1, ev->len, t->err);
        fprintf(t->err, "; retrying in %.1f s (attempt %d)\n", ev->seconds, ev->attempt);
        break;
    case AD_EV_END:
        ad_textout_commit(t->tout);
        break;
    case AD_EV_ERROR:
        ad_textout_commit(t->tout); /* a failed run keeps its partial text */
        if (ev->outside) {
            fflush(t->out);
            const char *p = ev->text, *end = ev->text + ev->len;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                fputs("agentd: ", t->err);
                fwrite(p, 1, n, t->err);
                fputc('\n', t->err);
                p += n + (nl ? 1 : 0);
            }
            fflush(t->err);
        } else {
            message(t, "agentd: error: ", ev);
        }
        break;
    case AD_EV_WARN:
        /* Nothing retractable may sit above a line of ours on a terminal. */
        ad_textout_commit(t->tout);
        message(t, "agentd: warning: ", ev);
        break;
    case AD_EV_APPROVAL:
    case AD_EV_TOOL_PROGRESS:
    case AD_EV_MESSAGE:
    case AD_EV_HISTORY:
        break;
    }
    return AD_SINK_OK;
}

static void text_close(ad_sink *s)
{
    text_sink *t = (text_sink *)s;
    ad_textout_free(t->tout);
    ad_buf_free(&t->line);
    free(t);
}

static const ad_sink_vt text_vt = {text_event, text_close};

ad_sink *ad_text_sink_new(FILE *out, FILE *err, bool quiet)
{
    text_sink *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.vt = &text_vt;
    t->out = out;
    t->err = err;
    t->quiet = quiet;
    t->tout = ad_textout_new(out);
    if (!t->tout) {
        free(t);
        return NULL;
    }
    return &t->base;
}

void ad_print_lines(FILE *f, const char *msg)
{
    const char *p = msg;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "agentd: %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
}

/*
 * repl_view.c -- the REPL's terminal view (see repl_view.h).
 *
 * Data flow: the conversation's hub -> view_event() -> out (answer text,
 * through the view's ad_textout) and err (tool lines, notes, warnings,
 * errors, the approval question). Strings arrive redacted (events.h).
 *
 * at_bol tracks whether the terminal's cursor is at the start of a line,
 * so that every line of ours starts on a fresh one; the spinner is drawn
 * only there and wiped (with spaces: no escape sequence needed, NO_COLOR
 * too) before anything else is written.
 *
 * stdin is only ever read with blocking read(2) calls, so it is never left
 * non-blocking; the approval prompt restores the terminal mode it changed
 * before it returns.
 */
#define _XOPEN_SOURCE 700 /* wcwidth */
#include "cli/repl_view.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include "base/text.h"
#include "core/conv.h"
#include "sinks/textout.h"

#define SPIN_DELAY_MS 120
#define SPIN_EVERY_MS 80
#define SHOW_MAX 160 /* bytes of arguments or result on a tool line */

typedef struct pending_call {
    char *id;
    char *args;
} pending_call;

struct ad_repl_view {
    ad_sink base;
    uv_loop_t *loop;
    ad_agent *agent;
    FILE *out, *err;
    bool tty_in, tty_err, color, utf8, quiet;
    ad_textout *tout; /* the answer's writer */

    /* the turn */
    bool running;
    bool cancel_requested;
    uv_timer_t spin;
    bool at_bol; /* the terminal's cursor is at the start of a line */
    bool spin_on, spin_shown;
    unsigned spin_frame;
    size_t spin_width;
    char spin_label[96];
    pending_call *calls; /* tool calls of the step, for their result lines */
    size_t ncalls, capcalls;

    char **always; /* tools approved for the session */
    size_t nalways;

    /* usage of the conversation (every step) and of the last finished turn */
    ad_usage usage;
    int turns;
    json_object *last_usage;
};

/* ---- small output helpers --------------------------------------------- */

static const char *c_(const ad_repl_view *v, const char *code)
{
    return v->color ? code : "";
}
#define DIM(v) c_(v, "\033[2m")
#define BOLD(v) c_(v, "\033[1m")
#define RED(v) c_(v, "\033[31m")
#define GREEN(v) c_(v, "\033[32m")
#define YELLOW(v) c_(v, "\033[33m")
#define OFF(v) c_(v, "\033[0m")

static void spin_clear(ad_repl_view *v);

void ad_repl_view_bol(ad_repl_view *v)
{
    spin_clear(v);
    if (!v->at_bol) {
        ad_textout_write(v->tout, "\n", 1); /* after any text held back */
        v->at_bol = true;
    }
    fflush(v->out);
}

static void vnote(ad_repl_view *v, const char *fmt, va_list ap)
{
    ad_repl_view_bol(v);
    fputs(DIM(v), v->err);
    vfprintf(v->err, fmt, ap);
    fputs(OFF(v), v->err);
    fputc('\n', v->err);
    fflush(v->err);
}

void ad_repl_view_note(ad_repl_view *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(v, fmt, ap);
    va_end(ap);
}

void ad_repl_view_error(ad_repl_view *v, const char *fmt, ...)
{
    ad_repl_view_bol(v);
    va_list ap;
    va_start(ap, fmt);
    fprintf(v->err, "%serror:%s ", RED(v), OFF(v));
    vfprintf(v->err, fmt, ap);
    fputc('\n', v->err);
    va_end(ap);
    fflush(v->err);
}

void ad_repl_put_shown(ad_buf *b, const char *s, size_t len, size_t max, bool utf8)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = len;
    bool cut = false;
    if (n > max) {
        n = ad_utf8_cut(s, len, max);
        cut = true;
    }
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            if (!space)
                ad_buf_putc(b, ' ');
            space = true;
            continue;
        }
        space = false;
        if (c < 0x20 || c == 0x7f) {
            ad_buf_putc(b, '?');
        } else if (c == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            ad_buf_putc(b, '?');
            i++;
        } else {
            ad_buf_putc(b, (char)c);
        }
    }
    if (cut)
        ad_buf_puts(b, utf8 ? "…" : "...");
}

/* Terminal columns s[0..len) takes (UTF-8 in a UTF-8 locale, else a column
 * per byte); *fit gets the bytes of its longest start that takes at most
 * max columns, and *fitcols their columns. */
static size_t text_cols(const char *s, size_t len, size_t max, size_t *fit, size_t *fitcols)
{
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t cols = 0, i = 0;
    *fit = 0;
    *fitcols = 0;
    while (i < len) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, s + i, len - i, &st);
        int w = 1;
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
            memset(&st, 0, sizeof st);
            n = 1;
        } else if ((w = wcwidth(wc)) < 0) {
            w = 1;
        }
        cols += (size_t)w;
        i += n;
        if (cols <= max) {
            *fit = i;
            *fitcols = cols;
        }
    }
    return cols;
}

/* Appends s[0..len) cut to at most max columns, the cut marked. */
static void put_cols(ad_buf *b, const char *s, size_t len, size_t max, bool utf8)
{
    size_t fit, fitcols;
    if (text_cols(s, len, max, &fit, &fitcols) <= max) {
        ad_buf_append(b, s, len);
        return;
    }
    const char *dots = utf8 ? "…" : "...";
    size_t dw = utf8 ? 1 : 3;
    if (max < dw)
        return;
    text_cols(s, len, max - dw, &fit, &fitcols);
    ad_buf_append(b, s, fit);
    ad_buf_puts(b, dots);
}

/* The terminal's width for lines on err; 0: none (not a terminal). */
static size_t err_cols(const ad_repl_view *v)
{
    struct winsize ws;
    if (!v->tty_err || ioctl(fileno(v->err), TIOCGWINSZ, &ws) != 0)
        return 0;
    return ws.ws_col;
}

/* ---- spinner ------------------------------------------------------------ */

static void spin_draw(ad_repl_view *v)
{
    static const char *const uframes[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
    static const char *const aframes[] = {"|", "/", "-", "\\"};
    if (!v->at_bol)
        return;
    const char *f = v->utf8 ? uframes[v->spin_frame % 10] : aframes[v->spin_frame % 4];
    v->spin_frame++;
    fflush(v->out);
    fprintf(v->err, "\r%s%s %s%s", DIM(v), f, v->spin_label, OFF(v));
    fflush(v->err);
    v->spin_width = 2 + strlen(v->spin_label);
    v->spin_shown = true;
}

static void on_spin(uv_timer_t *t)
{
    spin_draw(t->data);
}

/* Shows the spinner after a short delay (a fast answer shows none). */
static void spin_start(ad_repl_view *v, const char *label)
{
    snprintf(v->spin_label, sizeof v->spin_label, "%s", label);
    if (!v->tty_err || v->spin_on)
        return;
    v->spin_on = true;
    /* The loop's clock stood still while the prompt waited: the delay
     * counts from now. */
    uv_update_time(v->loop);
    uv_timer_start(&v->spin, on_spin, SPIN_DELAY_MS, SPIN_EVERY_MS);
}

static void spin_clear(ad_repl_view *v)
{
    if (!v->spin_shown)
        return;
    fprintf(v->err, "\r%*s\r", (int)v->spin_width, "");
    fflush(v->err);
    v->spin_shown = false;
}

static void spin_stop(ad_repl_view *v)
{
    spin_clear(v);
    if (v->spin_on)
        uv_timer_stop(&v->spin);
    v->spin_on = false;
}

/* ---- rendering of the turn's events ----------------------------------- */

static void calls_clear(ad_repl_view *v)
{
    for (size_t i = 0; i < v->ncalls; i++) {
        free(v->calls[i].id);
        free(v->calls[i].args);
    }
    v->ncalls = 0;
}

static void calls_add(ad_repl_view *v, const char *id, const char *args, size_t len)
{
    if (v->ncalls == v->capcalls) {
        size_t cap = v->capcalls ? v->capcalls * 2 : 8;
        pending_call *n = realloc(v->calls, cap * sizeof *n);
        if (!n)
            return;
        v->calls = n;
        v->capcalls = cap;
    }
    pending_call *c = &v->calls[v->ncalls];
    c->id = ad_strdup(id ? id : "");
    c->args = ad_strndup(args ? args : "", args ? len : 0);
    if (!c->id || !c->args) {
        free(c->id);
        free(c->args);
        return;
    }
    v->ncalls++;
}

static const char *calls_args(ad_repl_view *v, const char *id)
{
    for (size_t i = 0; id && i < v->ncalls; i++)
        if (strcmp(v->calls[i].id, id) == 0)
            return v->calls[i].args;
    return NULL;
}

static void put_cost(ad_buf *b, double cost)
{
    ad_buf_printf(b, cost >= 0.01 ? "$%.4f" : "$%.6f", cost);
}

/* "10 in + 5 out = 15 tokens, $0.000120"; empty when nothing was reported. */
static void put_usage(ad_buf *b, json_object *u)
{
    ad_usage n = AD_USAGE_INIT;
    ad_usage_add(&n, u);
    bool found = n.has_prompt || n.has_completion || n.has_total;
    if (!found && !n.has_cost)
        return;
    if (found)
        ad_buf_printf(b, "%lld in + %lld out = %lld tokens", (long long)n.prompt_tokens,
                      (long long)n.completion_tokens,
                      (long long)(n.total_tokens ? n.total_tokens
                                                 : n.prompt_tokens + n.completion_tokens));
    if (n.has_cost) {
        ad_buf_puts(b, found ? ", " : "");
        put_cost(b, n.cost);
    }
}

/* One line per call: "  ✓ name ARGS → RESULT  (time)". On a terminal the
 * line fits its width (a wrapped line would break the compact layout): the
 * arguments and the result are cut, each marked, the arguments first down
 * to half of the room. */
static void show_tool_result(ad_repl_view *v, const ad_event *ev)
{
    ad_buf b = AD_BUF_INIT, args = AD_BUF_INIT, res = AD_BUF_INIT, dur = AD_BUF_INIT;
    const char *a = calls_args(v, ev->id);
    const char *name = ev->name ? ev->name : "?";
    if (a)
        ad_repl_put_shown(&args, a, strlen(a), SHOW_MAX, v->utf8);
    ad_repl_put_shown(&res, ev->text ? ev->text : "", ev->len, SHOW_MAX, v->utf8);
    if (ev->seconds > 0) {
        if (ev->seconds < 0.001)
            ad_buf_printf(&dur, "(%.0f %s)", ev->seconds * 1e6, v->utf8 ? "µs" : "us");
        else if (ev->seconds < 1)
            ad_buf_printf(&dur, "(%.1f ms)", ev->seconds * 1000);
        else
            ad_buf_printf(&dur, "(%.2f s)", ev->seconds);
    }
    size_t amax = SIZE_MAX, rmax = SIZE_MAX, width = err_cols(v);
    if (width > 0) {
        size_t fit, fc;
        /* "  ✓ " name " " ... " → " ["error: "] ... ["  " dur]; one column
         * spare, so the cursor never waits at the right edge. */
        size_t fixed = 4 + text_cols(name, strlen(name), 0, &fit, &fc) + 1 + (v->utf8 ? 3 : 4) +
                       (ev->is_error ? 7 : 0) +
                       (dur.len ? 2 + text_cols(dur.data, dur.len, 0, &fit, &fc) : 0) + 1;
        size_t room = width > fixed ? width - fixed : 0;
        size_t aw = args.len ? text_cols(args.data, args.len, 0, &fit, &fc) : 0;
        size_t rw = res.len ? text_cols(res.data, res.len, 0, &fit, &fc) : 0;
        if (aw + rw > room) {
            amax = aw <= room / 2 ? aw : rw < room / 2 ? room - rw : room / 2;
            rmax = room - amax;
        }
    }
    ad_buf_printf(&b, "  %s%s%s %s%s%s ", ev->is_error ? RED(v) : GREEN(v),
                  ev->is_error ? (v->utf8 ? "✗" : "!") : (v->utf8 ? "✓" : "-"), OFF(v), BOLD(v),
                  name, OFF(v));
    if (args.len)
        put_cols(&b, args.data, args.len, amax, v->utf8);
    ad_buf_printf(&b, " %s%s%s ", DIM(v), v->utf8 ? "→" : "->", OFF(v));
    if (ev->is_error)
        ad_buf_printf(&b, "%serror:%s ", RED(v), OFF(v));
    if (res.len)
        put_cols(&b, res.data, res.len, rmax, v->utf8);
    if (dur.len)
        ad_buf_printf(&b, "  %s%s%s", DIM(v), dur.data, OFF(v));
    ad_buf_free(&args);
    ad_buf_free(&res);
    ad_buf_free(&dur);
    ad_repl_view_bol(v);
    if (b.data) {
        fputs(b.data, v->err);
        fputc('\n', v->err);
        fflush(v->err);
    }
    ad_buf_free(&b);
}

static void approve(ad_repl_view *v, const ad_event *ev);

static int view_event(ad_sink *s, const ad_event *ev)
{
    ad_repl_view *v = (ad_repl_view *)s;
    switch (ev->kind) {
    case AD_EV_TEXT:
        spin_clear(v);
        /* Neutralised on a terminal, retractable. */
        ad_textout_write(v->tout, ev->text, ev->len);
        v->at_bol = ev->text[ev->len - 1] == '\n';
        break;
    case AD_EV_STEP_START:
        ad_textout_begin(v->tout, ev->may_repeat);
        break;
    case AD_EV_TOOL_CALL: {
        ad_textout_commit(v->tout); /* the response is complete */
        calls_add(v, ev->id, ev->text, ev->len);
        /* "running add, multiply": what the wait is for. */
        size_t l = strlen(v->spin_label);
        const char *name = ev->name ? ev->name : "?";
        if (v->ncalls <= 1 || strncmp(v->spin_label, "running ", 8) != 0)
            snprintf(v->spin_label, sizeof v->spin_label, "running %.60s", name);
        else if (l + strlen(name) + 6 < sizeof v->spin_label)
            snprintf(v->spin_label + l, sizeof v->spin_label - l, ", %s", name);
        else if (l + 6 < sizeof v->spin_label && strcmp(v->spin_label + l - 3, "...") != 0)
            snprintf(v->spin_label + l, sizeof v->spin_label - l, ", ...");
        break;
    }
    case AD_EV_APPROVAL:
        approve(v, ev);
        break;
    case AD_EV_TOOL_RESULT:
        ad_textout_commit(v->tout);
        if (!v->quiet)
            show_tool_result(v, ev);
        break;
    case AD_EV_STEP_FINISH: {
        ad_textout_commit(v->tout);
        fflush(v->out);
        ad_usage_add(&v->usage, ev->usage);
        calls_clear(v);
        if (v->running && !v->cancel_requested)
            spin_start(v, "thinking");
        break;
    }
    case AD_EV_RETRY:
        /* The step starts again: its text so far must not stay twice. */
        ad_textout_retract(v->tout);
        v->at_bol = true; /* the step's text was taken back, or its line ended */
        ad_repl_view_note(v, "retrying in %.1f s (attempt %d): %.*s", ev->seconds, ev->attempt,
                          (int)ev->len, ev->text ? ev->text : "");
        break;
    case AD_EV_FINISH: {
        ad_textout_commit(v->tout);
        spin_stop(v);
        ad_repl_view_bol(v);
        json_object_put(v->last_usage);
        v->last_usage = ev->usage ? json_object_get(ev->usage) : NULL;
        ad_buf b = AD_BUF_INIT;
        put_usage(&b, ev->usage);
        if (b.len)
            ad_repl_view_note(v, "%s", b.data);
        ad_buf_free(&b);
        break;
    }
    case AD_EV_END:
        ad_textout_commit(v->tout);
        v->running = false;
        break;
    case AD_EV_ERROR:
        ad_textout_commit(v->tout); /* a failed turn keeps its partial text */
        ad_repl_view_error(v, "%.*s", (int)ev->len, ev->text ? ev->text : "");
        break;
    case AD_EV_WARN:
        ad_repl_view_bol(v);
        fprintf(v->err, "%swarning:%s %.*s\n", YELLOW(v), OFF(v), (int)ev->len,
                ev->text ? ev->text : "");
        fflush(v->err);
        break;
    case AD_EV_TOOL_PROGRESS: {
        /* "running fs__copy 3/10 copying b.txt" */
        char fig[64];
        if (ev->total > 0)
            snprintf(fig, sizeof fig, " %g/%g", ev->done, ev->total);
        else
            snprintf(fig, sizeof fig, " %g", ev->done);
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "running %.40s%s", ev->name ? ev->name : "?", fig);
        if (ev->len) {
            ad_buf_putc(&b, ' ');
            put_cols(&b, ev->text, ev->len, 30, v->utf8);
        }
        if (b.data) {
            /* Cut at a character boundary within the label. */
            size_t n = b.len < sizeof v->spin_label ? b.len : sizeof v->spin_label - 1;
            while (n > 0 && n < b.len && ((unsigned char)b.data[n] & 0xc0) == 0x80)
                n--;
            memcpy(v->spin_label, b.data, n);
            v->spin_label[n] = '\0';
        }
        ad_buf_free(&b);
        break;
    }
    case AD_EV_MESSAGE:
    case AD_EV_HISTORY:
        break;
    }
    return AD_SINK_OK;
}

/* ---- approval ----------------------------------------------------------- */

bool ad_repl_view_always(const ad_repl_view *v, const char *tool)
{
    for (size_t i = 0; i < v->nalways; i++)
        if (strcmp(v->always[i], tool) == 0)
            return true;
    return false;
}

static void always_add(ad_repl_view *v, const char *tool)
{
    char **n = realloc(v->always, (v->nalways + 1) * sizeof *n);
    if (!n)
        return;
    v->always = n;
    if ((n[v->nalways] = ad_strdup(tool)) != NULL)
        v->nalways++;
}

/* One answer: 'y', 'n', 'a', or 'c' (Ctrl-C: cancel the turn). With raw
 * set, the terminal is in non-canonical mode without ISIG: one key. */
static int read_answer(ad_repl_view *v, bool raw)
{
    if (raw) {
        for (;;) {
            unsigned char c;
            ssize_t n = read(STDIN_FILENO, &c, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0 || c == 4 || c == '\r' || c == '\n' || c == 'n' || c == 'N')
                return 'n';
            if (c == 3)
                return 'c';
            if (c == 'y' || c == 'Y' || c == 'a' || c == 'A')
                return c | 0x20;
            fputc('\a', v->err);
            fflush(v->err);
        }
    }
    /* Not a terminal: one line; its first letter counts, EOF denies. */
    int first = 0;
    for (;;) {
        unsigned char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == '\n')
            break;
        if (!first && c != ' ' && c != '\t')
            first = c | 0x20;
    }
    return first == 'y' || first == 'a' ? first : 'n';
}

/* Asks about one call (its arguments arrive redacted) and answers it. */
static int ask(ad_repl_view *v, const char *tool, const char *args, size_t len)
{
    if (v->cancel_requested)
        return AD_APPROVE_CANCEL;
    if (ad_repl_view_always(v, tool))
        return AD_APPROVE_YES;
    ad_repl_view_bol(v);
    /* The terminal takes single keys before the question shows, so a key
     * pressed after it is never met by the cooked terminal; keys typed
     * before it answer nothing. */
    struct termios old;
    bool raw = v->tty_in && tcgetattr(STDIN_FILENO, &old) == 0;
    if (raw) {
        struct termios t = old;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        tcflush(STDIN_FILENO, TCIFLUSH);
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    ad_buf q = AD_BUF_INIT;
    ad_buf_printf(&q, "%srun%s %s%s%s ", YELLOW(v), OFF(v), BOLD(v), tool, OFF(v));
    ad_repl_put_shown(&q, args, len, 400, v->utf8);
    ad_buf_printf(&q, "? [y]es/[n]o/[a]lways ");
    fputs(q.data ? q.data : "", v->err);
    fflush(v->err);
    ad_buf_free(&q);
    int a = read_answer(v, raw);
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    const char *word = a == 'y' ? "yes" : a == 'a' ? "always" : a == 'c' ? "cancelled" : "no";
    fprintf(v->err, "%s\n", word);
    fflush(v->err);
    v->at_bol = true;
    switch (a) {
    case 'y':
        return AD_APPROVE_YES;
    case 'a':
        always_add(v, tool);
        return AD_APPROVE_ALWAYS;
    case 'c':
        v->cancel_requested = true;
        return AD_APPROVE_CANCEL;
    default:
        return AD_APPROVE_NO;
    }
}

static void approve(ad_repl_view *v, const ad_event *ev)
{
    const char *tool = ev->name ? ev->name : "?";
    int d = ask(v, tool, ev->text ? ev->text : "", ev->len);
    if (ev->id)
        ad_agent_approve(v->agent, ev->id, d);
}

/* ---- the view ------------------------------------------------------------ */

static const ad_sink_vt view_vt = {view_event, NULL};

ad_repl_view *ad_repl_view_new(const ad_repl_view_opts *o)
{
    ad_repl_view *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->base.vt = &view_vt;
    v->base.flags = AD_SINK_APPROVES;
    v->loop = o->loop;
    v->agent = o->agent;
    v->out = o->out;
    v->err = o->err;
    v->tty_in = o->tty_in;
    v->tty_err = o->tty_err;
    v->color = o->color;
    v->utf8 = o->utf8;
    v->quiet = o->quiet;
    v->at_bol = true;
    v->usage = (ad_usage)AD_USAGE_INIT;
    v->tout = ad_textout_new(v->out);
    if (!v->tout) {
        free(v);
        return NULL;
    }
    uv_timer_init(v->loop, &v->spin);
    v->spin.data = v;
    return v;
}

static void on_spin_closed(uv_handle_t *h)
{
    ad_repl_view *v = h->data;
    free(v);
}

void ad_repl_view_free(ad_repl_view *v)
{
    if (!v)
        return;
    spin_stop(v);
    ad_textout_free(v->tout);
    calls_clear(v);
    free(v->calls);
    for (size_t i = 0; i < v->nalways; i++)
        free(v->always[i]);
    free(v->always);
    json_object_put(v->last_usage);
    uv_close((uv_handle_t *)&v->spin, on_spin_closed);
}

ad_sink *ad_repl_view_sink(ad_repl_view *v)
{
    return &v->base;
}

void ad_repl_view_turn_begin(ad_repl_view *v)
{
    v->running = true;
    v->cancel_requested = false;
    v->at_bol = true;
    calls_clear(v);
    spin_start(v, "thinking");
}

void ad_repl_view_turn_end(ad_repl_view *v, int status)
{
    v->running = false;
    spin_stop(v);
    calls_clear(v);
    if (status == AD_RUN_OK)
        v->turns++;
    if (status == AD_RUN_CANCELLED) {
        /* The terminal echoed ^C after whatever was on the line. */
        if (v->tty_in)
            v->at_bol = false;
        ad_repl_view_note(v, "cancelled; the conversation keeps what was said so far");
    }
    fflush(v->out);
}

void ad_repl_view_cancel(ad_repl_view *v)
{
    v->cancel_requested = true;
}

void ad_repl_view_usage_reset(ad_repl_view *v)
{
    v->usage = (ad_usage)AD_USAGE_INIT;
    v->turns = 0;
    json_object_put(v->last_usage);
    v->last_usage = NULL;
}

void ad_repl_view_print_usage(ad_repl_view *v)
{
    const ad_usage *u = &v->usage;
    if (u->total_tokens == 0 && u->prompt_tokens == 0 && !u->has_cost) {
        fprintf(v->out, "no usage reported yet\n");
        return;
    }
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "session: %lld in + %lld out = %lld tokens", (long long)u->prompt_tokens,
                  (long long)u->completion_tokens,
                  (long long)(u->total_tokens ? u->total_tokens
                                              : u->prompt_tokens + u->completion_tokens));
    if (u->has_cost) {
        ad_buf_puts(&b, ", ");
        put_cost(&b, u->cost);
    }
    ad_buf_printf(&b, " over %d turn%s", v->turns, v->turns == 1 ? "" : "s");
    if (v->last_usage) {
        size_t mark = b.len;
        ad_buf_puts(&b, "\nlast turn: ");
        size_t before = b.len;
        put_usage(&b, v->last_usage);
        if (b.len == before) {
            b.len = mark;
            b.data[mark] = '\0';
        }
    }
    fprintf(v->out, "%s\n", b.data ? b.data : "");
    ad_buf_free(&b);
}

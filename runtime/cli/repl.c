/*
 * repl.c -- the interactive session (see repl.h).
 *
 * Two phases alternate, never overlapping:
 *
 *   read   libedit's readline() blocks on the terminal; the loop does not
 *          run. Ctrl-C wakes the read through the signal pipe (below),
 *          readline() returns NULL and the recorded press tells it apart
 *          from Ctrl-D.
 *   turn   one ad_agent_run; uv_run until its done callback. A uv_poll_t
 *          watches the signal pipe and cancels the run. Output arrives through the
 *          events observer: text goes out as events.c writes it, tool calls
 *          become one compact line each, a spinner (a uv_timer, stderr, a
 *          terminal only) fills the wait for the model and is wiped before
 *          anything else is written.
 *
 * SIGINT has one handler of ours from the start of the session to its end:
 * it records the press and writes a byte to the signal pipe, and which
 * phase reads the pipe decides what the press means. The disposition is
 * never switched between phases, so no Ctrl-C can meet the default action
 * (which would kill the session) at a phase change. libedit installs its
 * own handler while readline() runs and puts ours back before passing the
 * signal on.
 *
 * stdin is only ever read with blocking read(2) calls (libedit and the
 * approval prompt), so it is never left non-blocking; libedit restores the
 * terminal mode when readline() returns and the approval prompt restores
 * what it changed before it returns.
 *
 * Tool approval runs inside the agent's dispatch on the loop thread: it reads
 * one key with the terminal in non-canonical mode and ISIG off, so Ctrl-C
 * arrives as a byte; the answer AD_APPROVE_CANCEL then has the agent cancel
 * the run before any call of the step starts.
 *
 * /reset, /system and /load build a new conversation and hand it to
 * ad_agent_load_messages between turns.
 */
#define _GNU_SOURCE /* pipe2 */
#include "cli/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include "base/lazy_edit.h"

#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"
#include "core/conv.h"
#include "mcp/provider.h"

#define MAX_LOAD_BYTES (64u << 20)
#define HISTORY_MAX 1000
#define SPIN_DELAY_MS 120
#define SPIN_EVERY_MS 80
#define SHOW_MAX 160 /* bytes of arguments or result on a tool line */

typedef struct pending_call {
    char *id;
    char *args;
} pending_call;

typedef struct repl {
    const ad_repl_opts *o;
    ad_agent *agent;
    FILE *out, *err;
    bool tty_in, tty_err, color, utf8;
    char *model;        /* owned: the model requests use now */
    char *history_path; /* owned or NULL */

    /* the turn */
    bool running;
    int status;
    uv_poll_t sigwatch; /* the signal pipe, during a turn */
    uv_timer_t spin;
    bool at_bol; /* the terminal's cursor is at the start of a line */
    bool spin_on, spin_shown;
    unsigned spin_frame;
    size_t spin_width;
    char spin_label[96];
    pending_call *calls; /* tool calls of the step, for their result lines */
    size_t ncalls, capcalls;
    bool cancel_requested;

    char **always; /* tools approved for the session */
    size_t nalways;

    /* usage of the session (every step) and of the last finished turn */
    ad_usage usage;
    int turns;
    json_object *last_usage;
} repl;

/* ---- small output helpers --------------------------------------------- */

static const char *c_(const repl *r, const char *code)
{
    return r->color ? code : "";
}
#define DIM(r) c_(r, "\033[2m")
#define BOLD(r) c_(r, "\033[1m")
#define RED(r) c_(r, "\033[31m")
#define GREEN(r) c_(r, "\033[32m")
#define YELLOW(r) c_(r, "\033[33m")
#define CYAN(r) c_(r, "\033[36m")
#define OFF(r) c_(r, "\033[0m")

static void spin_clear(repl *r);

/* Starts a fresh line for a message of ours. */
static void ensure_bol(repl *r)
{
    spin_clear(r);
    if (!r->at_bol) {
        ad_events_put_text(r->o->events, "\n", 1); /* after any text held back */
        r->at_bol = true;
    }
    fflush(r->out);
}

static void note(repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A dim line on stderr: hints, notices. */
static void note(repl *r, const char *fmt, ...)
{
    ensure_bol(r);
    va_list ap;
    va_start(ap, fmt);
    fputs(DIM(r), r->err);
    vfprintf(r->err, fmt, ap);
    fputs(OFF(r), r->err);
    fputc('\n', r->err);
    va_end(ap);
    fflush(r->err);
}

static void err_line(repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_line(repl *r, const char *fmt, ...)
{
    ensure_bol(r);
    va_list ap;
    va_start(ap, fmt);
    fprintf(r->err, "%serror:%s ", RED(r), OFF(r));
    vfprintf(r->err, fmt, ap);
    fputc('\n', r->err);
    va_end(ap);
    fflush(r->err);
}

/* Appends s[0..len) for a one-line display of at most max bytes: line
 * breaks and tabs become spaces, other control characters (C0, DEL, C1) a
 * '?', so a model or a tool cannot move the cursor or switch colours; a cut
 * lands on a UTF-8 character boundary and is marked. */
static void put_shown(ad_buf *b, const char *s, size_t len, size_t max, bool utf8)
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

/* The terminal's width for lines on stderr; 0: none (not a terminal). */
static size_t err_cols(const repl *r)
{
    struct winsize ws;
    if (!r->tty_err || ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) != 0)
        return 0;
    return ws.ws_col;
}

/* ---- spinner ------------------------------------------------------------ */

static void spin_draw(repl *r)
{
    static const char *const uframes[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
    static const char *const aframes[] = {"|", "/", "-", "\\"};
    if (!r->at_bol)
        return;
    const char *f = r->utf8 ? uframes[r->spin_frame % 10] : aframes[r->spin_frame % 4];
    r->spin_frame++;
    fflush(r->out);
    fprintf(r->err, "\r%s%s %s%s", DIM(r), f, r->spin_label, OFF(r));
    fflush(r->err);
    r->spin_width = 2 + strlen(r->spin_label);
    r->spin_shown = true;
}

static void on_spin(uv_timer_t *t)
{
    spin_draw(t->data);
}

/* Shows the spinner after a short delay (a fast answer shows none). */
static void spin_start(repl *r, const char *label)
{
    snprintf(r->spin_label, sizeof r->spin_label, "%s", label);
    if (!r->tty_err || r->spin_on)
        return;
    r->spin_on = true;
    /* The loop's clock stood still while the prompt waited: the delay
     * counts from now. */
    uv_update_time(r->o->loop);
    uv_timer_start(&r->spin, on_spin, SPIN_DELAY_MS, SPIN_EVERY_MS);
}

/* Wipes it with spaces: no escape sequence needed (NO_COLOR too). */
static void spin_clear(repl *r)
{
    if (!r->spin_shown)
        return;
    fprintf(r->err, "\r%*s\r", (int)r->spin_width, "");
    fflush(r->err);
    r->spin_shown = false;
}

static void spin_stop(repl *r)
{
    spin_clear(r);
    if (r->spin_on)
        uv_timer_stop(&r->spin);
    r->spin_on = false;
}

/* ---- rendering of the turn's events ----------------------------------- */

static void calls_clear(repl *r)
{
    for (size_t i = 0; i < r->ncalls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].args);
    }
    r->ncalls = 0;
}

static void calls_add(repl *r, const char *id, const char *args, size_t len)
{
    if (r->ncalls == r->capcalls) {
        size_t cap = r->capcalls ? r->capcalls * 2 : 8;
        pending_call *n = realloc(r->calls, cap * sizeof *n);
        if (!n)
            return;
        r->calls = n;
        r->capcalls = cap;
    }
    pending_call *c = &r->calls[r->ncalls];
    c->id = ad_strdup(id ? id : "");
    c->args = ad_strndup(args ? args : "", args ? len : 0);
    if (!c->id || !c->args) {
        free(c->id);
        free(c->args);
        return;
    }
    r->ncalls++;
}

static const char *calls_args(repl *r, const char *id)
{
    for (size_t i = 0; id && i < r->ncalls; i++)
        if (strcmp(r->calls[i].id, id) == 0)
            return r->calls[i].args;
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
static void show_tool_result(repl *r, const ad_event *ev)
{
    ad_buf b = AD_BUF_INIT, args = AD_BUF_INIT, res = AD_BUF_INIT, dur = AD_BUF_INIT;
    const char *a = calls_args(r, ev->id);
    const char *name = ev->name ? ev->name : "?";
    if (a)
        put_shown(&args, a, strlen(a), SHOW_MAX, r->utf8);
    put_shown(&res, ev->text ? ev->text : "", ev->len, SHOW_MAX, r->utf8);
    if (ev->seconds > 0) {
        if (ev->seconds < 0.001)
            ad_buf_printf(&dur, "(%.0f %s)", ev->seconds * 1e6, r->utf8 ? "µs" : "us");
        else if (ev->seconds < 1)
            ad_buf_printf(&dur, "(%.1f ms)", ev->seconds * 1000);
        else
            ad_buf_printf(&dur, "(%.2f s)", ev->seconds);
    }
    size_t amax = SIZE_MAX, rmax = SIZE_MAX, width = err_cols(r);
    if (width > 0) {
        size_t fit, fc;
        /* "  ✓ " name " " ... " → " ["error: "] ... ["  " dur]; one column
         * spare, so the cursor never waits at the right edge. */
        size_t fixed = 4 + text_cols(name, strlen(name), 0, &fit, &fc) + 1 + (r->utf8 ? 3 : 4) +
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
    ad_buf_printf(&b, "  %s%s%s %s%s%s ", ev->is_error ? RED(r) : GREEN(r),
                  ev->is_error ? (r->utf8 ? "✗" : "!") : (r->utf8 ? "✓" : "-"), OFF(r), BOLD(r),
                  name, OFF(r));
    if (args.len)
        put_cols(&b, args.data, args.len, amax, r->utf8);
    ad_buf_printf(&b, " %s%s%s ", DIM(r), r->utf8 ? "→" : "->", OFF(r));
    if (ev->is_error)
        ad_buf_printf(&b, "%serror:%s ", RED(r), OFF(r));
    if (res.len)
        put_cols(&b, res.data, res.len, rmax, r->utf8);
    if (dur.len)
        ad_buf_printf(&b, "  %s%s%s", DIM(r), dur.data, OFF(r));
    ad_buf_free(&args);
    ad_buf_free(&res);
    ad_buf_free(&dur);
    ensure_bol(r);
    if (b.data) {
        fputs(b.data, r->err);
        fputc('\n', r->err);
        fflush(r->err);
    }
    ad_buf_free(&b);
}

static bool on_event(void *ud, const ad_event *ev)
{
    repl *r = ud;
    switch (ev->kind) {
    case AD_EVENT_TEXT:
        spin_clear(r);
        if (ev->len > 0) {
            /* Through events: neutralised on a terminal, retractable. */
            ad_events_put_text(r->o->events, ev->text, ev->len);
            r->at_bol = ev->text[ev->len - 1] == '\n';
        }
        return true;
    case AD_EVENT_TOOL_CALL: {
        calls_add(r, ev->id, ev->text, ev->len);
        /* "running add, multiply": what the wait is for. */
        size_t l = strlen(r->spin_label);
        const char *name = ev->name ? ev->name : "?";
        if (r->ncalls <= 1 || strncmp(r->spin_label, "running ", 8) != 0)
            snprintf(r->spin_label, sizeof r->spin_label, "running %.60s", name);
        else if (l + strlen(name) + 6 < sizeof r->spin_label)
            snprintf(r->spin_label + l, sizeof r->spin_label - l, ", %s", name);
        else if (l + 6 < sizeof r->spin_label && strcmp(r->spin_label + l - 3, "...") != 0)
            snprintf(r->spin_label + l, sizeof r->spin_label - l, ", ...");
        return true;
    }
    case AD_EVENT_TOOL_RESULT:
        if (!r->o->quiet)
            show_tool_result(r, ev);
        return true;
    case AD_EVENT_TOOL_PROGRESS: {
        /* "running fs__copy 3/10 copying b.txt" */
        char fig[64];
        if (ev->total > 0)
            snprintf(fig, sizeof fig, " %g/%g", ev->progress, ev->total);
        else
            snprintf(fig, sizeof fig, " %g", ev->progress);
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "running %.40s%s", ev->name ? ev->name : "?", fig);
        if (ev->len) {
            ad_buf_putc(&b, ' ');
            put_cols(&b, ev->text, ev->len, 30, r->utf8);
        }
        if (b.data) {
            /* Cut at a character boundary within the label. */
            size_t n = b.len < sizeof r->spin_label ? b.len : sizeof r->spin_label - 1;
            while (n > 0 && n < b.len && ((unsigned char)b.data[n] & 0xc0) == 0x80)
                n--;
            memcpy(r->spin_label, b.data, n);
            r->spin_label[n] = '\0';
        }
        ad_buf_free(&b);
        return true;
    }
    case AD_EVENT_STEP_FINISH: {
        ad_usage_add(&r->usage, ev->usage);
        calls_clear(r);
        if (r->running && !r->cancel_requested)
            spin_start(r, "thinking");
        return false;
    }
    case AD_EVENT_RETRY:
        r->at_bol = true; /* the step's text was taken back, or its line ended */
        note(r, "retrying in %.1f s (attempt %d): %.*s", ev->seconds, ev->attempt, (int)ev->len,
             ev->text ? ev->text : "");
        return true;
    case AD_EVENT_FINISH: {
        spin_stop(r);
        ensure_bol(r);
        json_object_put(r->last_usage);
        r->last_usage = ev->usage ? json_object_get(ev->usage) : NULL;
        ad_buf b = AD_BUF_INIT;
        put_usage(&b, ev->usage);
        if (b.len)
            note(r, "%s", b.data);
        ad_buf_free(&b);
        return true;
    }
    case AD_EVENT_ERROR:
        err_line(r, "%.*s", (int)ev->len, ev->text ? ev->text : "");
        return true;
    case AD_EVENT_WARN:
        ensure_bol(r);
        fprintf(r->err, "%swarning:%s %.*s\n", YELLOW(r), OFF(r), (int)ev->len,
                ev->text ? ev->text : "");
        fflush(r->err);
        return true;
    }
    return false;
}

/* ---- approval ----------------------------------------------------------- */

static bool always_has(const repl *r, const char *tool)
{
    for (size_t i = 0; i < r->nalways; i++)
        if (strcmp(r->always[i], tool) == 0)
            return true;
    return false;
}

static void always_add(repl *r, const char *tool)
{
    char **n = realloc(r->always, (r->nalways + 1) * sizeof *n);
    if (!n)
        return;
    r->always = n;
    if ((n[r->nalways] = ad_strdup(tool)) != NULL)
        r->nalways++;
}

/* One answer: 'y', 'n', 'a', or 'c' (Ctrl-C: cancel the turn). With raw
 * set, the terminal is in non-canonical mode without ISIG: one key. */
static int read_answer(repl *r, bool raw)
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
            fputc('\a', r->err);
            fflush(r->err);
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

static int approve(void *ud, const char *tool, const char *args, size_t len)
{
    repl *r = ud;
    if (r->cancel_requested)
        return AD_APPROVE_CANCEL;
    if (always_has(r, tool))
        return AD_APPROVE_YES;
    ensure_bol(r);
    /* The terminal takes single keys before the question shows, so a key
     * pressed after it is never met by the cooked terminal; keys typed
     * before it answer nothing. */
    struct termios old;
    bool raw = r->tty_in && tcgetattr(STDIN_FILENO, &old) == 0;
    if (raw) {
        struct termios t = old;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        tcflush(STDIN_FILENO, TCIFLUSH);
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    ad_buf q = AD_BUF_INIT;
    ad_buf_printf(&q, "%srun%s %s%s%s ", YELLOW(r), OFF(r), BOLD(r), tool, OFF(r));
    /* The arguments are the model's: they can hold the key. */
    size_t rlen = 0;
    char *red = ad_redact(args, len, r->o->cfg->api_key, &rlen);
    put_shown(&q, red ? red : args, red ? rlen : len, 400, r->utf8);
    free(red);
    ad_buf_printf(&q, "? [y]es/[n]o/[a]lways ");
    fputs(q.data ? q.data : "", r->err);
    fflush(r->err);
    ad_buf_free(&q);
    int a = read_answer(r, raw);
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    const char *word = a == 'y' ? "yes" : a == 'a' ? "always" : a == 'c' ? "cancelled" : "no";
    fprintf(r->err, "%s\n", word);
    fflush(r->err);
    r->at_bol = true;
    switch (a) {
    case 'y':
        return AD_APPROVE_YES;
    case 'a':
        always_add(r, tool);
        return AD_APPROVE_ALWAYS;
    case 'c':
        r->cancel_requested = true;
        return AD_APPROVE_CANCEL;
    default:
        return AD_APPROVE_NO;
    }
}

/* ---- a turn ------------------------------------------------------------- */

static void on_done(void *ud, int status)
{
    repl *r = ud;
    r->status = status;
    r->running = false;
    uv_stop(r->o->loop);
}

static volatile sig_atomic_t g_sigint;
static bool g_typed; /* a key other than Enter was read since the prompt */
/* Written by the SIGINT handler: wakes the line reader (a press that lands
 * just before read(2) starts must not be lost) and, during a turn, the
 * loop. Both ends non-blocking; stdin never is. */
static int g_sigpipe[2] = {-1, -1};
static struct sigaction g_old_sigint; /* the disposition the session found */

static void on_sigint(int signum)
{
    (void)signum;
    int saved = errno;
    g_sigint = 1;
    if (g_sigpipe[1] >= 0) {
        ssize_t w = write(g_sigpipe[1], "", 1);
        (void)w;
    }
    errno = saved;
}

static void sigpipe_drain(void)
{
    char b[64];
    while (g_sigpipe[0] >= 0 && read(g_sigpipe[0], b, sizeof b) > 0) {
    }
}

/* Ctrl-C during a turn: cancels it. */
static void on_sigpipe(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    repl *r = h->data;
    sigpipe_drain();
    if (!r->running)
        return;
    r->cancel_requested = true;
    ad_agent_cancel(r->agent);
}

/* Installed once for the whole session. SA_RESTART: the pipe, not EINTR,
 * wakes the readers, and tool plugins running on worker threads when the
 * signal lands there are not disturbed. */
static void session_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_old_sigint);
}

static void run_turn(repl *r, const char *prompt)
{
    r->running = true;
    r->cancel_requested = false;
    r->status = AD_RUN_FAILED;
    r->at_bol = true;
    calls_clear(r);
    uv_poll_start(&r->sigwatch, UV_READABLE, on_sigpipe);
    spin_start(r, "thinking");
    if (ad_agent_run(r->agent, prompt, on_done, r) != AD_OK) {
        r->running = false;
        err_line(r, "cannot start the turn: the previous one is still running");
    } else {
        uv_run(r->o->loop, UV_RUN_DEFAULT);
        if (r->running) {
            /* The loop ran dry with the run open: a bug; do not hang. */
            err_line(r, "internal error: the event loop stopped before the turn ended");
            ad_agent_cancel(r->agent);
            r->running = false;
        }
    }
    uv_poll_stop(&r->sigwatch);
    spin_stop(r);
    calls_clear(r);
    if (r->status == AD_RUN_OK)
        r->turns++;
    if (r->status == AD_RUN_CANCELLED) {
        /* The terminal echoed ^C after whatever was on the line. */
        if (r->tty_in)
            r->at_bol = false;
        note(r, "cancelled; the conversation keeps what was said so far");
    }
    fflush(r->out);
}

/* ---- conversation checks, save and load ---------------------------------- */

static int save_conversation(repl *r, const char *path, char *err, size_t errlen)
{
    json_object *o = json_object_new_object();
    if (!o)
        return AD_ENOMEM;
    json_object_object_add(o, "model", json_object_new_string(r->model));
    json_object_object_add(o, "messages", json_object_get(ad_agent_messages(r->agent)));
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE,
        &len);
    /* Like the session store, the file never holds the API key (a user may
     * have pasted it, or a server echoed it). */
    size_t rlen = 0;
    char *red = s ? ad_redact(s, len, r->o->cfg->api_key, &rlen) : NULL;
    if (red) {
        s = red;
        len = rlen;
    }
    int rc = AD_OK;
    /* A conversation can hold anything the user typed: owner only, also
     * when the file already existed with a wider mode. */
    int fd = s ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd >= 0)
        fchmod(fd, 0600);
    if (!s) {
        ad_errf(err, errlen, "out of memory");
        rc = AD_ENOMEM;
    } else if (fd < 0) {
        ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = AD_ERR;
    } else {
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, s + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
                rc = AD_ERR;
                break;
            }
            off += (size_t)w;
        }
        if (rc == AD_OK && (write(fd, "\n", 1) != 1 || fsync(fd) != 0)) {
            ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            rc = AD_ERR;
        }
        if (close(fd) != 0 && rc == AD_OK) {
            ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            rc = AD_ERR;
        }
    }
    free(red);
    json_object_put(o);
    return rc;
}

/* Reads a whole file of at most max bytes. */
static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    ad_buf b = AD_BUF_INIT;
    int rc = ad_read_file(path, max, &b);
    if (rc == AD_ETOOBIG)
        ad_errf(err, errlen, "%s is larger than %zu MiB", path, max >> 20);
    else if (rc == AD_EINVAL)
        ad_errf(err, errlen, "cannot open %s: not a regular file", path);
    else if (rc == AD_ERR)
        ad_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    else if (rc == AD_ENOMEM)
        ad_errf(err, errlen, "out of memory reading %s", path);
    if (rc != AD_OK) {
        ad_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return ad_buf_steal(&b);
}

/* "FILE:LINE:COL: what", for byte `at` of text, then the line it is on
 * (trimmed, quoted) when show_line. */
static void text_error(char *err, size_t errlen, const char *path, const char *text, size_t len,
                       size_t at, const char *what, bool show_line, bool utf8)
{
    size_t line = 1, lstart = 0;
    for (size_t i = 0; i < at && i < len; i++)
        if (text[i] == '\n') {
            line++;
            lstart = i + 1;
        }
    size_t start = lstart, end = lstart;
    while (end < len && text[end] != '\n')
        end++;
    while (start < end && strchr(" \t\r", text[start]))
        start++;
    while (end > start && strchr(" \t\r", text[end - 1]))
        end--;
    ad_buf shown = AD_BUF_INIT;
    if (show_line)
        put_shown(&shown, text + start, end - start, 60, utf8);
    ad_errf(err, errlen, "%s:%zu:%zu: %s%s%s%s", path, line, at - lstart + 1, what,
            shown.data ? " \"" : "", shown.data ? shown.data : "", shown.data ? "\"" : "");
    ad_buf_free(&shown);
}

static int load_conversation(repl *r, const char *path, size_t *count, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = read_file(path, MAX_LOAD_BYTES, &len, err, errlen);
    if (!text)
        return AD_ERR;
    size_t blank = strspn(text, " \t\r\n");
    json_tokener *tok = json_tokener_new();
    json_object *o = tok && blank < len ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    int rc = AD_OK;
    if (!tok) {
        ad_errf(err, errlen, "out of memory reading %s", path);
        rc = AD_ENOMEM;
    } else if (blank == len) {
        ad_errf(err, errlen, "%s is empty, not a conversation written by /save", path);
        rc = AD_EINVAL;
    } else if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        /* json-c's words ("null expected") need the place to make sense. */
        enum json_tokener_error je = json_tokener_get_error(tok);
        size_t at = json_tokener_get_parse_end(tok);
        char what[160];
        if (je == json_tokener_continue)
            snprintf(what, sizeof what, "the JSON ends before it is complete");
        else
            snprintf(what, sizeof what, "not JSON (json-c: %s) in", json_tokener_error_desc(je));
        text_error(err, errlen, path, text, len, je == json_tokener_continue ? len : at, what,
                   je != json_tokener_continue, r->utf8);
        rc = AD_EINVAL;
    } else {
        size_t used = json_tokener_get_parse_end(tok);
        while (used < len && strchr(" \t\r\n", text[used]))
            used++;
        if (used < len) {
            text_error(err, errlen, path, text, len, used,
                       "unexpected text after the JSON value:", true, r->utf8);
            rc = AD_EINVAL;
        }
    }
    json_object *msgs = NULL;
    const char *model = NULL;
    if (rc == AD_OK) {
        if (!json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "messages", &msgs)) {
            ad_errf(err, errlen, "%s: want an object with a \"messages\" array (as /save writes)",
                    path);
            rc = AD_EINVAL;
        } else if (ad_conv_check(msgs, err, errlen) != AD_OK) {
            char inner[1024];
            snprintf(inner, sizeof inner, "%s", err);
            ad_errf(err, errlen, "%s: %s", path, inner);
            rc = AD_EINVAL;
        } else {
            json_object *m;
            if (json_object_object_get_ex(o, "model", &m) && m) {
                if (!json_object_is_type(m, json_type_string) || !json_object_get_string(m)[0]) {
                    ad_errf(err, errlen, "%s: \"model\" is not a non-empty string", path);
                    rc = AD_EINVAL;
                } else {
                    model = json_object_get_string(m);
                }
            }
        }
    }
    if (rc == AD_OK && ad_agent_load_messages(r->agent, msgs) != AD_OK) {
        ad_errf(err, errlen, "out of memory loading %s", path);
        rc = AD_ENOMEM;
    }
    if (rc == AD_OK) {
        *count = json_object_array_length(msgs);
        if (model && ad_agent_set_model(r->agent, model) == AD_OK) {
            char *m = ad_strdup(model);
            if (m) {
                free(r->model);
                r->model = m;
            }
        }
    }
    json_object_put(o);
    if (tok)
        json_tokener_free(tok);
    free(text);
    return rc;
}

/* ---- slash commands ------------------------------------------------------- */

static const char *const commands[][2] = {
    {"/help", "this list"},
    {"/tools", "the tools the model can call"},
    {"/mcp", "the MCP servers and their states"},
    {"/model", "[NAME]  show or change the model"},
    {"/system", "[TEXT]  show or replace the system prompt"},
    {"/reset", "start a new conversation (the system prompt stays)"},
    {"/save", "FILE  write the conversation as JSON"},
    {"/load", "FILE  continue a conversation written by /save"},
    {"/usage", "tokens and cost of this conversation"},
    {"/exit", "leave (also Ctrl-D)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void cmd_help(repl *r)
{
    fprintf(r->out, "Type a message and press Enter. Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *d = commands[i][1];
        const char *sp = strstr(d, "  ");
        if (sp)
            fprintf(r->out, "  %s%s %.*s%s%-*s%s\n", BOLD(r), commands[i][0], (int)(sp - d), d,
                    OFF(r), (int)(15 - strlen(commands[i][0]) - (size_t)(sp - d)), "", sp + 2);
        else
            fprintf(r->out, "  %s%-16s%s%s\n", BOLD(r), commands[i][0], OFF(r), d);
    }
    fprintf(r->out,
            "Input: a line ending in \\ continues on the next line; a line \"\"\" opens and\n"
            "closes a block of lines; \"//text\" sends \"/text\". Tab completes commands.\n"
            "Ctrl-C cancels a turn; at an empty prompt, press it twice (or Ctrl-D) to leave.\n");
}

static void cmd_tools(repl *r)
{
    size_t n = ad_tool_host_count(r->o->tools);
    if (n == 0) {
        fprintf(r->out, "no tools loaded%s\n",
                r->o->cfg->plugins_dir ? "" : " (set [plugins] dir in the config)");
        return;
    }
    size_t w = 4;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ad_tool_host_at(r->o->tools, i)->name);
        if (l > w)
            w = l;
    }
    if (w > 32)
        w = 32;
    for (size_t i = 0; i < n; i++) {
        const ad_tool_desc *t = ad_tool_host_at(r->o->tools, i);
        const char *name = t->name;
        const char *d = t->description ? t->description : "";
        bool confirm = false;
        double to;
        int iso;
        ad_config_tool(r->o->cfg, name, &to, &confirm, &iso);
        ad_buf b = AD_BUF_INIT;
        put_shown(&b, d, strcspn(d, "\n"), 72, r->utf8);
        fprintf(r->out, "  %s%-*s%s  %s  %s[%s]%s%s\n", BOLD(r), (int)w, name, OFF(r),
                b.data ? b.data : "", DIM(r), t->origin ? t->origin : "?",
                OFF(r),
                confirm ? (r->o->yes || always_has(r, name) ? "" : " (asks first)") : "");
        ad_buf_free(&b);
    }
}

static json_object *system_message(repl *r)
{
    json_object *msgs = ad_agent_messages(r->agent);
    json_object *m = json_object_array_length(msgs) ? json_object_array_get_idx(msgs, 0) : NULL;
    const char *role = m ? ad_json_str(m, "role") : NULL;
    return role && strcmp(role, "system") == 0 ? m : NULL;
}

static void cmd_system(repl *r, const char *arg)
{
    json_object *sys = system_message(r);
    if (!arg[0]) {
        const char *cur = sys ? ad_json_str(sys, "content") : NULL;
        if (cur)
            fprintf(r->out, "%s\n", cur);
        else
            note(r, "no system prompt; /system TEXT sets one");
        return;
    }
    /* A new conversation: the system message first, then the others. */
    json_object *msgs = ad_agent_messages(r->agent);
    json_object *next = json_object_new_array();
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("system"));
    json_object_object_add(m, "content", json_object_new_string(arg));
    json_object_array_add(next, m);
    for (size_t i = sys ? 1 : 0; i < json_object_array_length(msgs); i++)
        json_object_array_add(next, json_object_get(json_object_array_get_idx(msgs, i)));
    int rc = ad_agent_load_messages(r->agent, next);
    json_object_put(next);
    if (rc != AD_OK) {
        err_line(r, "out of memory");
        return;
    }
    note(r, "system prompt set");
}

/* /usage counts the conversation: a new one starts from zero. */
static void usage_reset(repl *r)
{
    r->usage = (ad_usage)AD_USAGE_INIT;
    r->turns = 0;
    json_object_put(r->last_usage);
    r->last_usage = NULL;
}

static void cmd_reset(repl *r)
{
    json_object *sys = system_message(r);
    json_object *next = json_object_new_array();
    if (sys)
        json_object_array_add(next, json_object_get(sys));
    int rc = ad_agent_load_messages(r->agent, next);
    json_object_put(next);
    if (rc != AD_OK) {
        err_line(r, "out of memory");
        return;
    }
    usage_reset(r);
    note(r, "new conversation%s", sys ? " (system prompt kept)" : "");
}

static void cmd_usage(repl *r)
{
    const ad_usage *u = &r->usage;
    if (u->total_tokens == 0 && u->prompt_tokens == 0 && !u->has_cost) {
        fprintf(r->out, "no usage reported yet\n");
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
    ad_buf_printf(&b, " over %d turn%s", r->turns, r->turns == 1 ? "" : "s");
    if (r->last_usage) {
        size_t mark = b.len;
        ad_buf_puts(&b, "\nlast turn: ");
        size_t before = b.len;
        put_usage(&b, r->last_usage);
        if (b.len == before) {
            b.len = mark;
            b.data[mark] = '\0';
        }
    }
    fprintf(r->out, "%s\n", b.data ? b.data : "");
    ad_buf_free(&b);
}

/* Returns false when the session should end. */
static bool run_command(repl *r, char *line)
{
    char *cmd = line;
    size_t cl = strcspn(cmd, " \t\n");
    char *arg = cmd + cl;
    if (*arg)
        *arg++ = '\0';
    arg += strspn(arg, " \t\n");
    size_t al = strlen(arg);
    while (al > 0 && strchr(" \t\n", arg[al - 1]))
        arg[--al] = '\0';
    char err[1024];

    if (strcmp(cmd, "/exit") == 0 || strcmp(cmd, "/quit") == 0)
        return false;
    if (strcmp(cmd, "/help") == 0 || strcmp(cmd, "/?") == 0) {
        cmd_help(r);
    } else if (strcmp(cmd, "/tools") == 0) {
        cmd_tools(r);
    } else if (strcmp(cmd, "/mcp") == 0) {
        ad_tool_provider *mp = ad_mcp_provider_find(r->o->tools);
        if (mp)
            ad_mcp_provider_print(mp, r->out);
        else
            fprintf(r->out, "no MCP servers configured ([mcp.servers.NAME] in the config)\n");
    } else if (strcmp(cmd, "/model") == 0) {
        if (!arg[0]) {
            fprintf(r->out, "%s\n", r->model);
        } else if (ad_agent_set_model(r->agent, arg) == AD_OK) {
            char *m = ad_strdup(arg);
            if (m) {
                free(r->model);
                r->model = m;
            }
            note(r, "model: %s", r->model);
        }
    } else if (strcmp(cmd, "/system") == 0) {
        cmd_system(r, arg);
    } else if (strcmp(cmd, "/reset") == 0 || strcmp(cmd, "/clear") == 0) {
        cmd_reset(r);
    } else if (strcmp(cmd, "/save") == 0) {
        if (!arg[0])
            err_line(r, "/save wants a file name");
        else if (save_conversation(r, arg, err, sizeof err) != AD_OK)
            err_line(r, "%s", err);
        else
            note(r, "saved %zu messages to %s",
                 json_object_array_length(ad_agent_messages(r->agent)), arg);
    } else if (strcmp(cmd, "/load") == 0) {
        size_t n = 0;
        if (!arg[0]) {
            err_line(r, "/load wants a file name");
        } else if (load_conversation(r, arg, &n, err, sizeof err) != AD_OK) {
            err_line(r, "%s (the conversation is unchanged)", err);
        } else {
            usage_reset(r);
            note(r, "loaded %zu messages from %s; model: %s", n, arg, r->model);
        }
    } else if (strcmp(cmd, "/usage") == 0) {
        cmd_usage(r);
    } else {
        const char *best = NULL;
        size_t bd = strlen(cmd) > 5 ? 3 : 2; /* more than this: no guess */
        for (size_t i = 0; i < NCOMMANDS; i++) {
            size_t d = ad_edit_distance(cmd, commands[i][0]);
            if (d < bd || (strncmp(commands[i][0], cmd, strlen(cmd)) == 0 && strlen(cmd) > 1)) {
                bd = d < bd ? d : bd;
                best = commands[i][0];
            }
        }
        if (best)
            note(r, "unknown command %.40s; did you mean %s? (/help lists them)", cmd, best);
        else
            note(r, "unknown command %.40s; /help lists the commands (//text sends \"/text\")",
                 cmd);
    }
    fflush(r->out);
    return true;
}

/* ---- line input --------------------------------------------------------- */

static int repl_getc(FILE *f)
{
    for (;;) {
        if (g_sigint)
            return EOF;
        if (g_sigpipe[0] >= 0) {
            struct pollfd pf[2] = {{fileno(f), POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
            int pr = poll(pf, 2, -1);
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr > 0 && (pf[1].revents & POLLIN)) {
                sigpipe_drain();
                if (g_sigint)
                    return EOF;
                continue;
            }
        }
        unsigned char c;
        ssize_t n = read(fileno(f), &c, 1);
        if (n == 1) {
            if (c != '\r' && c != '\n' && c != 4)
                g_typed = true;
            return c;
        }
        if (n < 0 && errno == EINTR && !g_sigint)
            continue; /* SIGWINCH and friends */
        return EOF;
    }
}

static char *complete_command(const char *text, int state)
{
    static size_t i, len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i < NCOMMANDS) {
        const char *c = commands[i++][0];
        if (strncmp(c, text, len) == 0)
            return strdup(c);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (start == 0 && text[0] == '/')
        return rl_completion_matches(text, complete_command);
    if (rl_line_buffer &&
        (strncmp(rl_line_buffer, "/load ", 6) == 0 || strncmp(rl_line_buffer, "/save ", 6) == 0))
        rl_attempted_completion_over = 0; /* file names */
    return NULL;
}

enum { READ_OK, READ_EOF, READ_INTERRUPTED };

static bool is_fence(const char *l)
{
    l += strspn(l, " \t");
    if (strncmp(l, "\"\"\"", 3) != 0)
        return false;
    l += 3;
    return l[strspn(l, " \t\r")] == '\0';
}

/* One entry: a line, lines joined by a trailing backslash, or a """ block.
 * *typed tells whether anything was typed (for Ctrl-C). */
static int read_entry(repl *r, char **out, bool *typed)
{
    const char *p1 = r->color ? (r->utf8 ? "\001\033[1;36m\002›\001\033[0m\002 " : "\001\033[1;36m\002>\001\033[0m\002 ")
                              : (r->utf8 ? "› " : "> ");
    const char *p2 = r->color ? (r->utf8 ? "\001\033[2m\002…\001\033[0m\002 " : "\001\033[2m\002.\001\033[0m\002 ")
                              : (r->utf8 ? "… " : ". ");
    ad_buf b = AD_BUF_INIT;
    bool block = false, more = false;
    *typed = false;
    *out = NULL;
    for (;;) {
        sigpipe_drain();
        g_sigint = 0;
        g_typed = false;
        char *l = readline(more || block ? p2 : p1);
        *typed = *typed || g_typed || more || block;
        if (!l) {
            if (g_sigint) {
                ad_buf_free(&b);
                return READ_INTERRUPTED;
            }
            if (b.len > 0 || block) {
                /* Ctrl-D inside a continuation sends what was written. */
                fputc('\n', r->out);
                *out = ad_buf_steal(&b);
                return READ_OK;
            }
            ad_buf_free(&b);
            return READ_EOF;
        }
        if (block) {
            if (is_fence(l)) {
                free(l);
                if (b.len && b.data[b.len - 1] == '\n')
                    b.data[--b.len] = '\0';
                *out = ad_buf_steal(&b);
                return READ_OK;
            }
            ad_buf_puts(&b, l);
            ad_buf_putc(&b, '\n');
            free(l);
            continue;
        }
        if (!more && is_fence(l)) {
            free(l);
            block = true;
            continue;
        }
        size_t n = strlen(l);
        if (n > 0 && l[n - 1] == '\\') {
            ad_buf_append(&b, l, n - 1);
            ad_buf_putc(&b, '\n');
            free(l);
            more = true;
            continue;
        }
        ad_buf_puts(&b, l);
        free(l);
        *out = ad_buf_steal(&b);
        return *out ? READ_OK : READ_EOF;
    }
}

/* ---- history ------------------------------------------------------------ */

char *ad_repl_history_path(void)
{
    return ad_state_path("history");
}

static void history_open(repl *r)
{
    using_history();
    stifle_history(HISTORY_MAX);
    r->history_path = ad_repl_history_path();
    if (!r->history_path)
        return;
    char err[512];
    if (ad_make_parents(r->history_path, err, sizeof err) != AD_OK) {
        note(r, "history not kept: %s", err);
        free(r->history_path);
        r->history_path = NULL;
        return;
    }
    /* What was typed can be private: the file is the owner's only. */
    int fd = open(r->history_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    read_history(r->history_path);
}

static void history_add(repl *r, const char *entry)
{
    /* A pasted key stays out of the history, in memory and in the file. */
    char *red = ad_redact(entry, strlen(entry), r->o->cfg->api_key, NULL);
    add_history(red ? red : entry);
    free(red);
    if (r->history_path)
        write_history(r->history_path);
}

/* ---- the session -------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static bool handle_line(repl *r, char *line)
{
    if (line[0] == '/' && line[1] != '/')
        return run_command(r, line);
    run_turn(r, line[0] == '/' ? line + 1 : line);
    return true;
}

int ad_repl_run(const ad_repl_opts *o)
{
    char lerr[256];
    if (ad_lazy_edit(lerr, sizeof lerr) != AD_OK) {
        fprintf(stderr, "agentd: %s\n", lerr);
        return 1;
    }
    /* The signal pipe is how Ctrl-C reaches a turn: no session without it. */
    if (g_sigpipe[0] < 0 && pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "agentd: cannot start the conversation: pipe: %s\n", strerror(errno));
        return 1;
    }
    repl rs;
    repl *r = &rs;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->agent = o->agent;
    r->out = o->out ? o->out : stdout;
    r->err = stderr;
    r->tty_in = isatty(STDIN_FILENO);
    r->tty_err = isatty(STDERR_FILENO);
    const char *nc = getenv("NO_COLOR");
    r->color = r->tty_err && isatty(fileno(r->out)) && !(nc && nc[0]);
    /* Multibyte line editing and the choice of glyphs follow the locale;
     * only LC_CTYPE, so number formatting stays "C". */
    setlocale(LC_CTYPE, "");
    r->utf8 = strcasecmp(nl_langinfo(CODESET), "UTF-8") == 0;
    r->model = ad_strdup(o->cfg->model ? o->cfg->model : "");
    r->at_bol = true;

    uv_poll_init(o->loop, &r->sigwatch, g_sigpipe[0]);
    r->sigwatch.data = r;
    uv_timer_init(o->loop, &r->spin);
    r->spin.data = r;

    ad_events_set_observer(o->events, on_event, r);
    ad_agent_set_approver(o->agent, approve, r, o->yes);

    rl_readline_name = "agentd";
    rl_outstream = r->out; /* fd 1 may be stderr: plugins write there (main.c) */
    rl_getc_function = repl_getc;
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{(";
    rl_initialize();
    history_open(r);
    session_signals();

    if (r->tty_in) {
        size_t nt = ad_tool_host_count(o->tools);
        const char *dot = r->utf8 ? "·" : "-";
        fprintf(r->err,
                "%sagentd %s %s model%s %s%s, %zu tool%s %s /help for commands, Ctrl-D to "
                "leave%s\n",
                DIM(r), AGENTD_VERSION, dot, OFF(r), r->model, DIM(r), nt, nt == 1 ? "" : "s", dot,
                OFF(r));
        fflush(r->err);
    }

    if (o->first_prompt && o->first_prompt[0])
        run_turn(r, o->first_prompt);

    uint64_t last_intr = 0;
    for (;;) {
        char *line = NULL;
        bool typed = false;
        int got = read_entry(r, &line, &typed);
        if (got == READ_EOF) {
            if (r->tty_in)
                fputc('\n', r->out);
            break;
        }
        if (got == READ_INTERRUPTED) {
            fputc('\n', r->out);
            fflush(r->out);
            uint64_t now = uv_hrtime();
            if (typed) {
                last_intr = 0; /* Ctrl-C cleared the line */
                continue;
            }
            if (last_intr && now - last_intr < 2000000000ull)
                break;
            last_intr = now;
            note(r, "(press Ctrl-C again to leave, or Ctrl-D; /help for commands)");
            continue;
        }
        last_intr = 0;
        const char *p = line + strspn(line, " \t\n");
        if (!*p) {
            free(line);
            continue;
        }
        history_add(r, line);
        bool go_on = handle_line(r, line);
        free(line);
        if (!go_on)
            break;
    }
    fflush(r->out);

    /* Back to what the session found; the caller frees the agent and the
     * loop. The pipe closes after its watcher is gone. */
    sigaction(SIGINT, &g_old_sigint, NULL);
    uv_close((uv_handle_t *)&r->sigwatch, on_handle_closed);
    uv_run(o->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 2; i++) {
        if (g_sigpipe[i] >= 0)
            close(g_sigpipe[i]);
        g_sigpipe[i] = -1;
    }
    ad_events_set_observer(o->events, NULL, NULL);
    ad_agent_set_approver(o->agent, NULL, NULL, false);
    uv_close((uv_handle_t *)&r->spin, on_handle_closed);
    uv_run(o->loop, UV_RUN_NOWAIT);
    calls_clear(r);
    free(r->calls);
    for (size_t i = 0; i < r->nalways; i++)
        free(r->always[i]);
    free(r->always);
    json_object_put(r->last_usage);
    free(r->model);
    free(r->history_path);
    clear_history();
    return 0;
}

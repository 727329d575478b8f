/*
 * events.c -- event output (see events.h).
 *
 * JSON events are built by hand into one reusable buffer (json-c's string
 * escaping via json_object_to_json_string would allocate an object per
 * delta, and text deltas are the hot path), then written with a single
 * fwrite and flushed, so a consumer reading line by line never sees half an
 * event. Text mode writes deltas straight to stdout, flushing at once on a
 * terminal and at the end of each step otherwise. An observer (the REPL's
 * renderer) sees every text-mode event first, redacted, and may show it its
 * own way instead.
 *
 * Text-mode answer text goes through an ad_textout (textout.h), which
 * neutralises it on a terminal and can take a step's text back when a retry
 * repeats the step; the REPL writes its answer text through the same one
 * (ad_events_put_text).
 */
#include "core/events.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/text.h"
#include "sinks/textout.h"

struct ad_events {
    FILE *out;
    FILE *err;
    bool json;
    bool out_tty;
    bool quiet;
    bool text_open; /* text mode: the answer's last line has no newline yet */
    ad_events_tap_fn tap;
    void *tap_ud;
    char *secret;
    size_t secret_len;
    ad_buf line; /* reused for every JSON event */
    ad_events_observer_fn observer;
    void *observer_ud;
    ad_textout *tout; /* text mode: the answer's writer; NULL: plain fwrite */
};

ad_events *ad_events_new(FILE *out, FILE *err, bool json)
{
    ad_events *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->out = out;
    e->err = err;
    e->json = json;
    e->out_tty = isatty(fileno(out));
    /* Text mode to a pipe or file flushes at each step's end: a large
     * buffer turns a long answer's thousands of deltas into a few writes. */
    if (!e->out_tty && !json)
        setvbuf(out, NULL, _IOFBF, 64u << 10);
    if (!json)
        e->tout = ad_textout_new(out);
    return e;
}

void ad_events_free(ad_events *e)
{
    if (!e)
        return;
    if (e->secret) {
        memset(e->secret, 0, e->secret_len);
        free(e->secret);
    }
    ad_buf_free(&e->line);
    ad_textout_free(e->tout);
    free(e);
}

void ad_events_set_secret(ad_events *e, const char *secret)
{
    if (e->secret) {
        memset(e->secret, 0, e->secret_len);
        free(e->secret);
        e->secret = NULL;
        e->secret_len = 0;
    }
    if (secret && secret[0]) {
        e->secret = ad_strdup(secret);
        e->secret_len = e->secret ? strlen(secret) : 0;
    }
}

void ad_events_set_quiet(ad_events *e, bool quiet)
{
    e->quiet = quiet;
}

void ad_events_set_observer(ad_events *e, ad_events_observer_fn fn, void *ud)
{
    e->observer = fn;
    e->observer_ud = ud;
}

static bool observe(ad_events *e, ad_event *ev);

void ad_events_set_tap(ad_events *e, ad_events_tap_fn fn, void *ud)
{
    e->tap = fn;
    e->tap_ud = ud;
}

/* Builds the tap's object only when there is a tap: never on the hot path. */
static void tap_tool_result(ad_events *e, int step, const char *id, const char *name,
                            bool is_error, double seconds)
{
    json_object *o = json_object_new_object();
    if (!o)
        return;
    json_object_object_add(o, "type", json_object_new_string("tool_result"));
    json_object_object_add(o, "step", json_object_new_int(step));
    json_object_object_add(o, "id", json_object_new_string(id ? id : ""));
    json_object_object_add(o, "name", json_object_new_string(name ? name : ""));
    json_object_object_add(o, "is_error", json_object_new_boolean(is_error));
    json_object_object_add(o, "seconds", json_object_new_double(seconds));
    e->tap(e->tap_ud, o);
    json_object_put(o);
}

static void tap_step_finish(ad_events *e, int step, const char *finish_reason, json_object *usage)
{
    json_object *o = json_object_new_object();
    if (!o)
        return;
    json_object_object_add(o, "type", json_object_new_string("step_finish"));
    json_object_object_add(o, "step", json_object_new_int(step));
    json_object_object_add(o, "finish_reason",
                           finish_reason ? json_object_new_string(finish_reason) : NULL);
    json_object_object_add(o, "usage", usage ? json_object_get(usage) : NULL);
    e->tap(e->tap_ud, o);
    json_object_put(o);
}

/* Hands ev to the observer with its strings redacted; true: it showed it. */
static bool observe(ad_events *e, ad_event *ev)
{
    if (!e->observer || e->json)
        return false;
    const char *keep[2] = {ev->name, ev->text};
    char *r[2] = {NULL, NULL};
    size_t rl = 0;
    if (ev->text && (r[1] = ad_redact(ev->text, ev->len, e->secret, &rl)) != NULL) {
        ev->text = r[1];
        ev->len = rl;
    }
    if (ev->name && (r[0] = ad_redact(ev->name, strlen(ev->name), e->secret, NULL)) != NULL)
        ev->name = r[0];
    bool shown = e->observer(e->observer_ud, ev);
    ev->name = keep[0];
    ev->text = keep[1];
    free(r[0]);
    free(r[1]);
    return shown;
}

/* Appends s as a JSON string literal (with quotes). Invalid UTF-8 bytes are
 * replaced with U+FFFD so every line stays valid JSON. */
static void put_json_string(ad_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    ad_buf_reserve(b, len + 2);
    ad_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    const unsigned char *run = p;
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t n;
            if (ad_utf8_seq(p, (size_t)(end - p), &n)) {
                p += n;
                continue;
            }
            /* One U+FFFD per invalid byte. */
            ad_buf_append(b, run, (size_t)(p - run));
            ad_buf_puts(b, "\xef\xbf\xbd");
            p++;
            run = p;
            continue;
        }
        ad_buf_append(b, run, (size_t)(p - run));
        switch (c) {
        case '"':
            ad_buf_puts(b, "\\\"");
            break;
        case '\\':
            ad_buf_puts(b, "\\\\");
            break;
        case '\n':
            ad_buf_puts(b, "\\n");
            break;
        case '\r':
            ad_buf_puts(b, "\\r");
            break;
        case '\t':
            ad_buf_puts(b, "\\t");
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ad_buf_append(b, u, 6);
        }
        }
        p++;
        run = p;
    }
    ad_buf_append(b, run, (size_t)(p - run));
    ad_buf_putc(b, '"');
}

/* A string field, redacted. */
static void put_str(ad_events *e, const char *s, size_t len)
{
    size_t rl;
    char *r = ad_redact(s, len, e->secret, &rl);
    if (r) {
        put_json_string(&e->line, r, rl);
        free(r);
    } else {
        put_json_string(&e->line, s, len);
    }
}

static void put_strz(ad_events *e, const char *s)
{
    if (!s)
        ad_buf_puts(&e->line, "null");
    else
        put_str(e, s, strlen(s));
}

static void emit(ad_events *e)
{
    ad_buf_putc(&e->line, '\n');
    fwrite(e->line.data, 1, e->line.len, e->out);
    fflush(e->out);
    ad_buf_reset(&e->line);
}

static void put_usage(ad_events *e, json_object *usage)
{
    if (!usage) {
        ad_buf_puts(&e->line, "null");
        return;
    }
    /* The provider's values are passed on: a value can echo the key. */
    json_object *r = e->secret ? ad_redact_json(usage, e->secret) : NULL;
    ad_buf_puts(&e->line, json_object_to_json_string_ext(r ? r : usage, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
}

/* Writes to the text-mode stream, redacting the secret. */
static void write_redacted(ad_events *e, FILE *f, const char *s, size_t len)
{
    size_t rl;
    char *r = ad_redact(s, len, e->secret, &rl);
    if (r) {
        fwrite(r, 1, rl, f);
        free(r);
    } else {
        fwrite(s, 1, len, f);
    }
}

static void out_text(ad_events *e, const char *text, size_t len)
{
    if (e->tout)
        ad_textout_write(e->tout, text, len);
    else
        fwrite(text, 1, len, e->out);
}

void ad_events_step_begin(ad_events *e, int step, bool may_repeat)
{
    (void)step;
    ad_textout_begin(e->tout, may_repeat);
}

void ad_events_put_text(ad_events *e, const char *text, size_t len)
{
    if (len)
        out_text(e, text, len);
}

void ad_events_commit_text(ad_events *e)
{
    ad_textout_commit(e->tout);
}

void ad_events_text(ad_events *e, int step, const char *text, size_t len)
{
    if (len == 0)
        return;
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"text_delta\",\"step\":%d,\"text\":", step);
        put_json_string(&e->line, text, len); /* arrives redacted (events.h) */
        ad_buf_putc(&e->line, '}');
        emit(e);
        return;
    }
    ad_event ev = {.kind = AD_EVENT_TEXT, .step = step, .text = text, .len = len};
    if (observe(e, &ev))
        return;
    out_text(e, text, len); /* arrives redacted (events.h) */
    e->text_open = text[len - 1] != '\n';
    if (e->out_tty && !e->tout)
        fflush(e->out);
}

/* Text mode: ends the answer's open line before activity lines appear. */
static void close_text_line(ad_events *e)
{
    ad_textout_commit(e->tout);
    if (e->text_open) {
        out_text(e, "\n", 1);
        e->text_open = false;
    }
    fflush(e->out);
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

/* Shortens s for a one-line display, the secret redacted first (so the cut
 * cannot leave a piece of it). */
static void show_short(ad_events *e, const char *s, size_t len)
{
    size_t rl;
    char *r = ad_redact(s, len, e->secret, &rl);
    ad_buf line = AD_BUF_INIT;
    put_one_line(&line, r ? r : s, r ? rl : len, 200);
    if (line.data)
        fwrite(line.data, 1, line.len, e->err);
    ad_buf_free(&line);
    free(r);
}

static void tool_call(ad_events *e, int step, const char *id, const char *name, const char *args,
                      size_t args_len, bool not_run)
{
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"tool_call\",\"step\":%d,\"id\":", step);
        put_strz(e, id);
        ad_buf_puts(&e->line, ",\"name\":");
        put_strz(e, name);
        ad_buf_puts(&e->line, ",\"arguments\":");
        put_str(e, args, args_len);
        ad_buf_puts(&e->line, not_run ? ",\"not_run\":true}" : "}");
        emit(e);
        return;
    }
    ad_textout_commit(e->tout); /* the response is complete */
    ad_event ev = {.kind = AD_EVENT_TOOL_CALL, .step = step, .id = id, .name = name,
                   .text = args, .len = args_len, .not_run = not_run};
    if (observe(e, &ev) || e->quiet)
        return;
    close_text_line(e);
    fprintf(e->err, "[tool] %s ", name ? name : "?");
    show_short(e, args, args_len);
    fputs(not_run ? " (not run)\n" : "\n", e->err);
}

void ad_events_tool_call(ad_events *e, int step, const char *id, const char *name,
                         const char *args, size_t args_len)
{
    tool_call(e, step, id, name, args, args_len, false);
}

void ad_events_tool_not_run(ad_events *e, int step, const char *id, const char *name,
                            const char *args, size_t args_len)
{
    tool_call(e, step, id, name, args, args_len, true);
}

void ad_events_tool_progress(ad_events *e, int step, const char *id, const char *name,
                             double done, double total, const char *msg)
{
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"tool_progress\",\"step\":%d,\"id\":", step);
        put_strz(e, id);
        ad_buf_puts(&e->line, ",\"name\":");
        put_strz(e, name);
        ad_buf_printf(&e->line, ",\"progress\":%.17g,\"total\":", done);
        if (total > 0)
            ad_buf_printf(&e->line, "%.17g", total);
        else
            ad_buf_puts(&e->line, "null");
        ad_buf_puts(&e->line, ",\"message\":");
        put_strz(e, msg);
        ad_buf_putc(&e->line, '}');
        emit(e);
        return;
    }
    ad_event ev = {.kind = AD_EVENT_TOOL_PROGRESS, .step = step, .id = id, .name = name,
                   .text = msg, .len = msg ? strlen(msg) : 0, .progress = done, .total = total};
    observe(e, &ev);
}

void ad_events_tool_result(ad_events *e, int step, const char *id, const char *name,
                           const char *content, size_t len, bool is_error, double seconds)
{
    if (e->tap)
        tap_tool_result(e, step, id, name, is_error, seconds);
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"tool_result\",\"step\":%d,\"id\":", step);
        put_strz(e, id);
        ad_buf_puts(&e->line, ",\"name\":");
        put_strz(e, name);
        ad_buf_puts(&e->line, ",\"content\":");
        put_str(e, content, len);
        ad_buf_printf(&e->line, ",\"is_error\":%s}", is_error ? "true" : "false");
        emit(e);
        return;
    }
    ad_textout_commit(e->tout);
    ad_event ev = {.kind = AD_EVENT_TOOL_RESULT, .step = step, .id = id, .name = name,
                   .text = content, .len = len, .is_error = is_error, .seconds = seconds};
    if (observe(e, &ev) || e->quiet)
        return;
    fprintf(e->err, "[tool] %s %s ", name ? name : "?", is_error ? "failed:" : "->");
    show_short(e, content, len);
    fprintf(e->err, " (%.1f ms)\n", seconds * 1000);
}

void ad_events_step_finish(ad_events *e, int step, const char *finish_reason, json_object *usage)
{
    if (e->tap)
        tap_step_finish(e, step, finish_reason, usage);
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"step_finish\",\"step\":%d,\"finish_reason\":", step);
        put_strz(e, finish_reason);
        ad_buf_puts(&e->line, ",\"usage\":");
        put_usage(e, usage);
        ad_buf_putc(&e->line, '}');
        emit(e);
        return;
    }
    ad_textout_commit(e->tout);
    ad_event ev = {.kind = AD_EVENT_STEP_FINISH, .step = step, .finish_reason = finish_reason,
                   .usage = usage};
    observe(e, &ev);
    close_text_line(e);
}

void ad_events_retry(ad_events *e, int step, int attempt, const char *reason, double wait_s)
{
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"retry\",\"step\":%d,\"attempt\":%d,\"reason\":", step,
                      attempt);
        put_strz(e, reason);
        ad_buf_printf(&e->line, ",\"wait_s\":%.3f}", wait_s);
        emit(e);
        return;
    }
    /* The step starts again: its text so far must not stay twice. */
    ad_textout_retract(e->tout);
    e->text_open = false;
    ad_event ev = {.kind = AD_EVENT_RETRY, .step = step, .text = reason,
                   .len = reason ? strlen(reason) : 0, .attempt = attempt, .seconds = wait_s};
    if (observe(e, &ev))
        return;
    fflush(e->out);
    fputs("agentd: ", e->err);
    write_redacted(e, e->err, reason, strlen(reason));
    fprintf(e->err, "; retrying in %.1f s (attempt %d)\n", wait_s, attempt);
}

void ad_events_finish(ad_events *e, int steps, const char *text, size_t len, json_object *usage)
{
    if (e->json) {
        ad_buf_printf(&e->line, "{\"type\":\"finish\",\"steps\":%d,\"text\":", steps);
        put_str(e, text ? text : "", text ? len : 0);
        ad_buf_puts(&e->line, ",\"usage\":");
        put_usage(e, usage);
        ad_buf_putc(&e->line, '}');
        emit(e);
        return;
    }
    ad_textout_commit(e->tout);
    ad_event ev = {.kind = AD_EVENT_FINISH, .step = steps, .text = text ? text : "",
                   .len = text ? len : 0, .usage = usage};
    if (observe(e, &ev))
        return;
    close_text_line(e);
}

static void vmessage(ad_events *e, bool error, const char *fmt, va_list ap)
{
    ad_buf msg = AD_BUF_INIT;
    ad_buf_vprintf(&msg, fmt, ap);
    if (!msg.data)
        return;
    if (e->json && error) {
        ad_buf_puts(&e->line, "{\"type\":\"error\",\"message\":");
        put_str(e, msg.data, msg.len);
        ad_buf_putc(&e->line, '}');
        emit(e);
    }
    if (error)
        ad_textout_commit(e->tout); /* a failed run keeps its partial text */
    ad_event ev = {.kind = error ? AD_EVENT_ERROR : AD_EVENT_WARN, .text = msg.data,
                   .len = msg.len};
    if (observe(e, &ev)) {
        ad_buf_free(&msg);
        return;
    }
    fflush(e->out);
    fputs(error ? "agentd: error: " : "agentd: warning: ", e->err);
    write_redacted(e, e->err, msg.data, msg.len);
    fputc('\n', e->err);
    fflush(e->err);
    ad_buf_free(&msg);
}

void ad_events_error(ad_events *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(e, true, fmt, ap);
    va_end(ap);
}

void ad_events_warn(ad_events *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(e, false, fmt, ap);
    va_end(ap);
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

void ad_events_fail(ad_events *e, const char *msg)
{
    if (e->json) {
        ad_buf_puts(&e->line, "{\"type\":\"error\",\"message\":");
        put_str(e, msg, strlen(msg));
        ad_buf_putc(&e->line, '}');
        emit(e);
    }
    fflush(e->out);
    const char *p = msg;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fputs("agentd: ", e->err);
        write_redacted(e, e->err, p, n);
        fputc('\n', e->err);
        p += n + (nl ? 1 : 0);
    }
    fflush(e->err);
}

/*
 * jsonl.c -- the JSON Lines sink (see jsonl.h).
 *
 * Events are built by hand into one reusable buffer (json-c's string
 * escaping via json_object_to_json_string would allocate an object per
 * delta, and text deltas are the hot path): after the first few events a
 * delta costs no allocation. Strings arrive redacted (events.h).
 */
#include "sinks/jsonl.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"

typedef struct jsonl_sink {
    ad_sink base;
    FILE *out, *err;
    ad_buf line; /* reused for every event */
} jsonl_sink;

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

static void put_strz(ad_buf *b, const char *s)
{
    if (!s)
        ad_buf_puts(b, "null");
    else
        put_json_string(b, s, strlen(s));
}

static void put_usage(ad_buf *b, json_object *usage)
{
    if (!usage)
        ad_buf_puts(b, "null");
    else
        ad_buf_puts(b, json_object_to_json_string_ext(usage, JSON_C_TO_STRING_PLAIN));
}

static void emit(jsonl_sink *j)
{
    ad_buf_putc(&j->line, '\n');
    fwrite(j->line.data, 1, j->line.len, j->out);
    fflush(j->out);
    ad_buf_reset(&j->line);
}

/* The person's copy of a message on err, as the text sink writes it. */
static void err_text(jsonl_sink *j, const ad_event *ev, const char *prefix)
{
    fputs(prefix, j->err);
    fwrite(ev->text, 1, ev->len, j->err);
    fputc('\n', j->err);
}

static int jsonl_event(ad_sink *s, const ad_event *ev)
{
    jsonl_sink *j = (jsonl_sink *)s;
    ad_buf *b = &j->line;
    switch (ev->kind) {
    case AD_EV_TEXT:
        ad_buf_printf(b, "{\"type\":\"text_delta\",\"step\":%d,\"text\":", ev->step);
        put_json_string(b, ev->text, ev->len);
        ad_buf_putc(b, '}');
        emit(j);
        break;
    case AD_EV_TOOL_CALL:
        ad_buf_printf(b, "{\"type\":\"tool_call\",\"step\":%d,\"id\":", ev->step);
        put_strz(b, ev->id);
        ad_buf_puts(b, ",\"name\":");
        put_strz(b, ev->name);
        ad_buf_puts(b, ",\"arguments\":");
        put_json_string(b, ev->text, ev->len);
        ad_buf_puts(b, ev->not_run ? ",\"not_run\":true}" : "}");
        emit(j);
        break;
    case AD_EV_TOOL_PROGRESS:
        ad_buf_printf(b, "{\"type\":\"tool_progress\",\"step\":%d,\"id\":", ev->step);
        put_strz(b, ev->id);
        ad_buf_puts(b, ",\"name\":");
        put_strz(b, ev->name);
        ad_buf_printf(b, ",\"progress\":%.17g,\"total\":", ev->done);
        if (ev->total > 0)
            ad_buf_printf(b, "%.17g", ev->total);
        else
            ad_buf_puts(b, "null");
        ad_buf_puts(b, ",\"message\":");
        if (ev->text)
            put_json_string(b, ev->text, ev->len);
        else
            ad_buf_puts(b, "null");
        ad_buf_putc(b, '}');
        emit(j);
        break;
    case AD_EV_TOOL_RESULT:
        ad_buf_printf(b, "{\"type\":\"tool_result\",\"step\":%d,\"id\":", ev->step);
        put_strz(b, ev->id);
        ad_buf_puts(b, ",\"name\":");
        put_strz(b, ev->name);
        ad_buf_puts(b, ",\"content\":");
        put_json_string(b, ev->text, ev->len);
        ad_buf_printf(b, ",\"is_error\":%s}", ev->is_error ? "true" : "false");
        emit(j);
        break;
    case AD_EV_STEP_FINISH:
        ad_buf_printf(b, "{\"type\":\"step_finish\",\"step\":%d,\"finish_reason\":", ev->step);
        put_strz(b, ev->finish_reason);
        ad_buf_puts(b, ",\"usage\":");
        put_usage(b, ev->usage);
        ad_buf_putc(b, '}');
        emit(j);
        break;
    case AD_EV_RETRY:
        ad_buf_printf(b, "{\"type\":\"retry\",\"step\":%d,\"attempt\":%d,\"reason\":", ev->step,
                      ev->attempt);
        put_json_string(b, ev->text, ev->len);
        ad_buf_printf(b, ",\"wait_s\":%.3f}", ev->seconds);
        emit(j);
        break;
    case AD_EV_FINISH:
        ad_buf_printf(b, "{\"type\":\"finish\",\"steps\":%d,\"text\":", ev->step);
        put_json_string(b, ev->text, ev->len);
        ad_buf_puts(b, ",\"usage\":");
        put_usage(b, ev->usage);
        ad_buf_putc(b, '}');
        emit(j);
        break;
    case AD_EV_ERROR:
        ad_buf_puts(b, "{\"type\":\"error\",\"message\":");
        put_json_string(b, ev->text, ev->len);
        ad_buf_putc(b, '}');
        emit(j);
        if (ev->outside) {
            const char *p = ev->text, *end = ev->text + ev->len;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                fputs("agentd: ", j->err);
                fwrite(p, 1, n, j->err);
                fputc('\n', j->err);
                p += n + (nl ? 1 : 0);
            }
        } else {
            err_text(j, ev, "agentd: error: ");
        }
        fflush(j->err);
        break;
    case AD_EV_WARN:
        err_text(j, ev, "agentd: warning: ");
        fflush(j->err);
        break;
    case AD_EV_STEP_START:
    case AD_EV_APPROVAL:
    case AD_EV_END:
    case AD_EV_MESSAGE:
    case AD_EV_HISTORY:
        break;
    }
    return AD_SINK_OK;
}

static void jsonl_close(ad_sink *s)
{
    jsonl_sink *j = (jsonl_sink *)s;
    ad_buf_free(&j->line);
    free(j);
}

static const ad_sink_vt jsonl_vt = {jsonl_event, jsonl_close};

ad_sink *ad_jsonl_sink_new(FILE *out, FILE *err)
{
    jsonl_sink *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->base.vt = &jsonl_vt;
    j->out = out;
    j->err = err;
    return &j->base;
}

/*
 * sse.c -- incremental Server-Sent Events parser (see sse.h).
 *
 * Data flow: ad_sse_feed() scans the caller's bytes for line ends with
 * memchr (one scan for LF whose result is cached across lines, one bounded
 * scan for CR inside each line), so a line that arrives whole inside one feed
 * is parsed in place without being copied. Only the tail of a feed that has
 * no line end yet is copied into `line`, and the next feed completes it.
 * Field values of "data:" lines are appended to `data` (joined with '\n');
 * "event:" replaces `event`; a blank line hands both to the callback and
 * empties them. Buffers are reused for the life of the parser, so steady
 * state parsing allocates nothing.
 *
 * Invariants:
 *  - `line` never holds more than max_event_bytes: a line longer than the
 *    bound fails with AD_ETOOBIG as soon as the bound is crossed, without
 *    buffering the rest of it. The same bound applies to `data`.
 *  - A CR that ends a feed ends the line at once; `pending_cr` remembers it
 *    so that an LF opening the next feed is taken as the second half of the
 *    same CRLF and not as an empty line (which would dispatch early).
 *  - After a non-zero return the parser is poisoned (`failed`) and keeps
 *    returning that value until ad_sse_reset(), so a caller that ignores an
 *    error cannot resume mid-line with a torn state.
 */
#include "provider/sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#define SSE_DEFAULT_MAX ((size_t)16 << 20)
/* Buffers grown past this by one huge event are released on reset. */
#define SSE_KEEP_CAP ((size_t)1 << 20)

struct ad_sse {
    ad_sse_event_fn cb;
    void *ud;
    size_t max;     /* bound for one line and for one event's data */
    ad_buf line;    /* incomplete line carried over from earlier feeds */
    ad_buf data;    /* data lines of the pending event, joined with '\n' */
    ad_buf event;   /* "event:" value of the pending event */
    ad_buf id;      /* "id:" value of the pending event */
    bool has_id;    /* the pending event had an "id:" field */
    ad_buf last_id; /* the last event ID */
    long retry_ms;  /* the last "retry:", -1 when none */
    bool has_data;  /* the pending event has at least one data line */
    bool pending_cr; /* the last feed ended with CR: skip one leading LF */
    int failed;     /* sticky non-zero result, cleared by reset */
    size_t bytes;
};

ad_sse *ad_sse_new(size_t max_event_bytes, ad_sse_event_fn cb, void *ud)
{
    ad_sse *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->cb = cb;
    p->ud = ud;
    p->max = max_event_bytes ? max_event_bytes : SSE_DEFAULT_MAX;
    p->retry_ms = -1;
    return p;
}

void ad_sse_free(ad_sse *p)
{
    if (p == NULL)
        return;
    ad_buf_free(&p->line);
    ad_buf_free(&p->data);
    ad_buf_free(&p->event);
    ad_buf_free(&p->id);
    ad_buf_free(&p->last_id);
    free(p);
}

static void sse_trim(ad_buf *b)
{
    if (b->cap > SSE_KEEP_CAP)
        ad_buf_free(b);
    else
        ad_buf_reset(b);
}

void ad_sse_reset(ad_sse *p)
{
    sse_trim(&p->line);
    sse_trim(&p->data);
    sse_trim(&p->event);
    sse_trim(&p->id);
    sse_trim(&p->last_id);
    p->has_id = false;
    p->retry_ms = -1;
    p->has_data = false;
    p->pending_cr = false;
    p->failed = 0;
    p->bytes = 0;
}

size_t ad_sse_bytes(const ad_sse *p)
{
    return p->bytes;
}

const char *ad_sse_last_id(const ad_sse *p)
{
    return p->last_id.data ? p->last_id.data : "";
}

long ad_sse_retry_ms(const ad_sse *p)
{
    return p->retry_ms;
}

static int sse_dispatch(ad_sse *p)
{
    int rc = 0;
    if (p->has_id) {
        ad_buf_reset(&p->last_id);
        if (p->id.len && ad_buf_append(&p->last_id, p->id.data, p->id.len) != AD_OK)
            return AD_ENOMEM;
        ad_buf_reset(&p->id);
        p->has_id = false;
    }
    if (p->has_data && p->cb != NULL) {
        rc = p->cb(p->ud, p->event.data ? p->event.data : "", p->event.len,
                   p->data.data ? p->data.data : "", p->data.len);
    }
    /* Event type and data belong to one event only, dispatched or not. */
    ad_buf_reset(&p->data);
    ad_buf_reset(&p->event);
    p->has_data = false;
    return rc;
}

/* One complete line without its terminator. */
static int sse_line(ad_sse *p, const char *s, size_t n)
{
    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return 0;
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen > 0 && *v == ' ') { /* exactly one space belongs to the syntax */
        v++;
        vlen--;
    }
    if (flen == 4 && memcmp(s, "data", 4) == 0) {
        size_t need = vlen + (p->has_data ? 1 : 0);
        if (need > p->max - p->data.len)
            return AD_ETOOBIG;
        if (ad_buf_reserve(&p->data, need) != AD_OK)
            return AD_ENOMEM;
        if (p->has_data)
            p->data.data[p->data.len++] = '\n';
        memcpy(p->data.data + p->data.len, v, vlen);
        p->data.len += vlen;
        p->data.data[p->data.len] = '\0';
        p->has_data = true;
    } else if (flen == 5 && memcmp(s, "event", 5) == 0) {
        ad_buf_reset(&p->event);
        if (ad_buf_append(&p->event, v, vlen) != AD_OK)
            return AD_ENOMEM;
    } else if (flen == 2 && memcmp(s, "id", 2) == 0) {
        if (memchr(v, '\0', vlen))
            return 0; /* ignored, as the specification says */
        if (vlen > p->max)
            return AD_ETOOBIG;
        ad_buf_reset(&p->id);
        if (vlen && ad_buf_append(&p->id, v, vlen) != AD_OK)
            return AD_ENOMEM;
        p->has_id = true;
    } else if (flen == 5 && memcmp(s, "retry", 5) == 0) {
        long ms = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            ms = ms < 100000000 ? ms * 10 + (v[i] - '0') : ms;
        if (i == vlen && vlen > 0)
            p->retry_ms = ms;
    }
    /* Unknown fields carry nothing. */
    return 0;
}

static int sse_fail(ad_sse *p, int rc)
{
    p->failed = rc;
    return rc;
}

int ad_sse_feed(ad_sse *p, const char *buf, size_t len)
{
    if (p->failed)
        return p->failed;
    p->bytes += len;
    const char *s = buf, *end = buf + len;
    if (p->pending_cr && s < end) {
        if (*s == '\n')
            s++;
        p->pending_cr = false;
    }
    const char *nl = NULL; /* next LF at or after s; `end` when there is none */
    while (s < end) {
        if (nl == NULL || nl < s) {
            nl = memchr(s, '\n', (size_t)(end - s));
            if (nl == NULL)
                nl = end;
        }
        const char *cr = memchr(s, '\r', (size_t)(nl - s));
        const char *eol = cr ? cr : nl;
        size_t n = (size_t)(eol - s);
        if (eol == end) {
            /* No line end in this feed: keep the tail, within the bound. */
            if (n > p->max - p->line.len)
                return sse_fail(p, AD_ETOOBIG);
            if (ad_buf_append(&p->line, s, n) != AD_OK)
                return sse_fail(p, AD_ENOMEM);
            break;
        }
        const char *next = eol + 1;
        if (cr != NULL) {
            if (next < end) {
                if (*next == '\n')
                    next++;
            } else {
                p->pending_cr = true;
            }
        }
        int rc;
        if (p->line.len > 0) {
            if (n > p->max - p->line.len)
                return sse_fail(p, AD_ETOOBIG);
            if (ad_buf_append(&p->line, s, n) != AD_OK)
                return sse_fail(p, AD_ENOMEM);
            rc = sse_line(p, p->line.data, p->line.len);
            ad_buf_reset(&p->line);
        } else {
            if (n > p->max)
                return sse_fail(p, AD_ETOOBIG);
            rc = sse_line(p, s, n);
        }
        if (rc != 0)
            return sse_fail(p, rc);
        s = next;
    }
    return 0;
}

int ad_sse_finish(ad_sse *p)
{
    if (p->failed)
        return p->failed;
    int rc = 0;
    if (p->line.len > 0) {
        rc = sse_line(p, p->line.data, p->line.len);
        ad_buf_reset(&p->line);
    }
    if (rc == 0)
        rc = sse_dispatch(p);
    p->pending_cr = false;
    if (rc != 0)
        p->failed = rc;
    return rc;
}

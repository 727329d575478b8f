/*
 * prescan.c -- the strict check of a request head (see prescan.h).
 *
 * Bytes are checked as they come (line ends, control characters, the
 * size); each complete line is then checked once as a whole.
 */
#include "serve/prescan.h"

#include <string.h>
#include <strings.h>

enum { ST_LINE = 0, ST_CR = 1 };

void ad_scan_init(ad_scan *s, size_t max_bytes, size_t max_headers)
{
    memset(s, 0, sizeof *s);
    s->max_bytes = max_bytes;
    s->max_headers = max_headers;
}

static int bad(ad_scan *s, int status, const char *why)
{
    s->status = status;
    s->why = why;
    return AD_SCAN_BAD;
}

/* RFC 9110 tchar */
static bool tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int request_line(ad_scan *s, const char *l, size_t n)
{
    size_t i = 0;
    while (i < n && tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i >= n || l[i] != ' ')
        return bad(s, 400, "malformed request line (method)");
    size_t t = ++i;
    while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f)
        i++;
    if (i == t || i >= n || l[i] != ' ')
        return bad(s, 400, "malformed request line (target)");
    i++;
    if (n - i != 8 || memcmp(l + i, "HTTP/", 5) != 0 || l[i + 6] != '.' || l[i + 5] < '0' ||
        l[i + 5] > '9' || l[i + 7] < '0' || l[i + 7] > '9')
        return bad(s, 400, "malformed request line (version)");
    if (l[i + 5] != '1' || (l[i + 7] != '0' && l[i + 7] != '1'))
        return bad(s, 505, "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)");
    s->http10 = l[i + 7] == '0';
    s->reqline = true;
    return AD_SCAN_MORE;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static int header_line(ad_scan *s, const char *l, size_t n)
{
    if (++s->headers > s->max_headers)
        return bad(s, 431, "too many header lines");
    if (l[0] == ' ' || l[0] == '\t')
        return bad(s, 400, "obsolete line folding (a header line starts with whitespace)");
    size_t i = 0;
    while (i < n && tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i >= n || l[i] != ':')
        return bad(s, 400, i < n && (l[i] == ' ' || l[i] == '\t')
                               ? "whitespace between a header name and its colon"
                               : "malformed header line");
    const char *name = l;
    size_t nlen = i;
    const char *v = l + i + 1, *e = l + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t vlen = (size_t)(e - v);
    if (name_is(name, nlen, "content-length")) {
        if (s->has_length)
            return bad(s, 400, "more than one Content-Length");
        if (vlen == 0 || vlen > 19)
            return bad(s, 400, "invalid Content-Length");
        uint64_t x = 0;
        for (size_t k = 0; k < vlen; k++) {
            if (v[k] < '0' || v[k] > '9')
                return bad(s, 400, "invalid Content-Length");
            x = x * 10 + (uint64_t)(v[k] - '0');
        }
        s->has_length = true;
        s->length = x;
    } else if (name_is(name, nlen, "transfer-encoding")) {
        if (s->tes++)
            return bad(s, 400, "more than one Transfer-Encoding");
        if (!(vlen == 7 && strncasecmp(v, "chunked", 7) == 0))
            return bad(s, 501, "unsupported Transfer-Encoding (only chunked is)");
        s->chunked = true;
    } else if (name_is(name, nlen, "host")) {
        s->hosts++;
    }
    return AD_SCAN_MORE;
}

static int end_of_head(ad_scan *s)
{
    if (s->chunked && s->has_length)
        return bad(s, 400, "both Content-Length and Transfer-Encoding");
    if (s->chunked && s->http10)
        return bad(s, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (s->hosts > 1 || (!s->http10 && s->hosts == 0))
        return bad(s, 400, s->hosts ? "more than one Host" : "no Host header");
    s->head_len = s->pos;
    return AD_SCAN_DONE;
}

/* A complete line l[0..n) (without its CRLF). */
static int line(ad_scan *s, const char *l, size_t n)
{
    if (!s->reqline) {
        if (n == 0) {
            s->skipped = s->pos;
            return AD_SCAN_MORE;
        }
        return request_line(s, l, n);
    }
    if (n == 0)
        return end_of_head(s);
    return header_line(s, l, n);
}

int ad_scan_feed(ad_scan *s, const char *buf, size_t len)
{
    if (s->status)
        return AD_SCAN_BAD;
    if (s->head_len)
        return AD_SCAN_DONE;
    while (s->pos < len) {
        unsigned char c = (unsigned char)buf[s->pos];
        if (s->pos >= s->max_bytes)
            return bad(s, s->reqline ? 431 : 414,
                       s->reqline ? "request header fields too large" : "request line too long");
        s->pos++;
        if (s->state == ST_CR) {
            if (c != '\n')
                return bad(s, 400, "a CR not followed by LF");
            s->state = ST_LINE;
            size_t start = s->line_start;
            s->line_start = s->pos;
            int rc = line(s, buf + start, s->pos - 2 - start);
            if (rc != AD_SCAN_MORE)
                return rc;
            continue;
        }
        if (c == '\r')
            s->state = ST_CR;
        else if (c == '\n')
            return bad(s, 400, "a bare LF (lines must end with CRLF)");
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            return bad(s, 400, "a control character in the request head");
    }
    return AD_SCAN_MORE;
}

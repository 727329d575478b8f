/*
 * prescan.h -- the strict check of an HTTP/1.x request head, before the
 * parser sees it.
 *
 * Parsers are lenient in ways that let two HTTP implementations in a row
 * (a proxy and this server) disagree on where a request ends: request
 * smuggling. llhttp 8.1 (Debian 12) takes a CR inside a header line
 * (`X-Abc: \rxTransfer-Encoding: chunked`) and a line that starts with a
 * space as the continuation of the one before. So the head (request line
 * up to the empty line) is scanned byte by byte as it arrives and refused
 * when it holds:
 *   - a CR not followed by LF, or an LF not preceded by CR;
 *   - a line starting with a space or tab (obs-fold);
 *   - a control character (but tab in values) or a NUL, anywhere;
 *   - a header name that is not a token, or whitespace before the colon;
 *   - Content-Length twice (also "5, 5"), or not plain digits;
 *   - Transfer-Encoding together with Content-Length, twice, anything but
 *     "chunked" (501), or in an HTTP/1.0 request;
 *   - a request line that is not "METHOD SP TARGET SP HTTP/1.0|1" with
 *     single spaces; an HTTP/1.1 request without exactly one Host;
 *   - more than max_bytes (431, or 414 while still in the request line) or
 *     more than max_headers header lines (431).
 * Empty lines before the request line are skipped (RFC 9112, 2.2).
 *
 * Pure: no I/O, any thread. Each byte is looked at once, whatever the
 * pieces it arrives in.
 */
#ifndef AD_SERVE_PRESCAN_H
#define AD_SERVE_PRESCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    AD_SCAN_MORE = 0, /* nothing wrong so far; the head is not complete */
    AD_SCAN_DONE = 1, /* the head is complete and clean */
    AD_SCAN_BAD = 2   /* refused: status and why say how */
};

typedef struct ad_scan {
    /* limits (set before the first feed) */
    size_t max_bytes;
    size_t max_headers;
    /* results */
    int status;          /* AD_SCAN_BAD: the HTTP status to answer (400, 414, 431, 501) */
    const char *why;     /* AD_SCAN_BAD: what was wrong (static text) */
    size_t head_len;     /* AD_SCAN_DONE: bytes of the head, empty line included */
    size_t skipped;      /* empty lines before the request line (part of head_len) */
    size_t headers;      /* header lines seen */
    bool has_length;     /* a Content-Length was given */
    uint64_t length;     /* its value */
    bool chunked;        /* Transfer-Encoding: chunked */
    bool http10;         /* HTTP/1.0 */
    /* internal */
    size_t pos;        /* bytes scanned */
    size_t line_start; /* offset of the current line */
    int state;
    bool reqline; /* the request line was seen */
    int hosts;
    int tes;
} ad_scan;

/* Starts a scan with the given limits. */
void ad_scan_init(ad_scan *s, size_t max_bytes, size_t max_headers);

/* Scans the head as it grows: buf[0..len) is everything received so far
 * for this request (the same bytes as before plus new ones; buf may have
 * moved). Returns AD_SCAN_MORE, AD_SCAN_DONE (once; head_len set) or
 * AD_SCAN_BAD (status, why). Bytes past the head are not looked at. */
int ad_scan_feed(ad_scan *s, const char *buf, size_t len);

#endif /* AD_SERVE_PRESCAN_H */

/*
 * record.c -- the recording shim (see record.h).
 *
 * Data flow: start() copies what the recording needs of the request (URL,
 * the headers minus credentials; the body stays the caller's, valid until
 * on_done) and starts the exchange on the inner transport with the shim's
 * callbacks. Those keep the response's header lines (the last response's:
 * a redirect or 100 Continue starts over) and its body bytes up to the cap,
 * and hand everything on to the caller's callbacks unchanged. In on_done the
 * interaction is appended and redacted, then the caller's on_done runs.
 *
 * Invariants: a recorded body is always a prefix of the delivered one (a
 * clean cut: once a piece did not fit, nothing later is kept); the shim's
 * exchanges are freed after the caller's on_done returned, on cancel, or
 * when the shim closes (the inner transport then drops its own without
 * calling back).
 */
#include "provider/record.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <uv.h>

#include "base/buf.h"
#include "base/config.h"

typedef struct rec_x rec_x;

typedef struct ad_record {
    ad_transport base;
    ad_transport *inner; /* owned */
    ad_cassette *cassette;
    char *secret; /* owned; NULL: none */
    LIST_HEAD(, rec_x) xs; /* live exchanges */
} ad_record;

struct rec_x {
    ad_exchange base;
    ad_exchange *inner;
    ad_record *rec;
    ad_xfer_cb cb;
    void *ud;
    char *url;                /* owned */
    ad_cassette_header *reqh; /* owned: the request headers to record */
    size_t nreqh, capreqh;
    const char *body;         /* the caller's, until on_done */
    size_t body_len;
    uint64_t t0;              /* uv_hrtime() at the start */
    char *status_line;        /* owned: of the last response */
    ad_buf resp_headers;      /* its header lines as received */
    ad_buf resp_body;         /* the body as delivered, cut at AD_CASSETTE_MAX_BODY */
    bool truncated;           /* resp_body was cut: nothing more is kept */
    LIST_ENTRY(rec_x) link;
};

/* ---- headers -------------------------------------------------------------- */

/* Header names as Go writes them into cassettes: "content-type" ->
 * "Content-Type" (HTTP/2 sends them in lower case). */
static void canonical_name(char *s)
{
    bool up = true;
    for (; *s; s++) {
        *s = (char)(up ? toupper((unsigned char)*s) : tolower((unsigned char)*s));
        up = *s == '-';
    }
}

/* Adds "Name: value" (a header line, CRLF or not) to hs; ignores lines
 * without a name, empty values (curl drops those headers) and the
 * Authorization headers; with request, also any header that looks like a
 * credential. */
static void add_header_line(ad_cassette_header **hs, size_t *n, size_t *cap, const char *line,
                            size_t len, bool request, const char *secret)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return;
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (v == end)
        return;
    char *name = ad_strndup(line, (size_t)(colon - line));
    char *value = ad_strndup(v, (size_t)(end - v));
    if (!name || !value)
        goto drop;
    canonical_name(name);
    if (strcmp(name, "Authorization") == 0 || strcmp(name, "Proxy-Authorization") == 0 ||
        (request && ad_config_sensitive_header(name, value, secret)))
        goto drop;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ad_cassette_header *p = realloc(*hs, nc * sizeof *p);
        if (!p)
            goto drop;
        *hs = p;
        *cap = nc;
    }
    (*hs)[*n].name = name;
    (*hs)[*n].value = value;
    (*n)++;
    return;
drop:
    free(name);
    if (value) {
        memset(value, 0, strlen(value)); /* it may be a credential */
        free(value);
    }
}

/* Sorted by name (as Go's encoder writes maps), values of one name in the
 * order received: an insertion sort is stable and the lists are short. */
static void sort_headers(ad_cassette_header *hs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        ad_cassette_header x = hs[i];
        size_t j = i;
        while (j > 0 && strcmp(hs[j - 1].name, x.name) > 0) {
            hs[j] = hs[j - 1];
            j--;
        }
        hs[j] = x;
    }
}

static void free_header_list(ad_cassette_header *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(hs[i].name);
        free(hs[i].value);
    }
    free(hs);
}

/* "HTTP/2 200" -> "200 OK": Go's form, with the reason phrase the server
 * sent, or the standard one when it sent none (HTTP/2 never does). */
static char *status_text(const char *line, long code)
{
    const char *p = line ? strchr(line, ' ') : NULL;
    if (p) {
        while (*p == ' ')
            p++;
        while (*p >= '0' && *p <= '9')
            p++;
        while (*p == ' ')
            p++;
    }
    size_t n = p ? strcspn(p, "\r\n") : 0;
    ad_buf b = AD_BUF_INIT;
    if (n) {
        ad_buf_printf(&b, "%ld %.*s", code, (int)n, p);
    } else {
        static const struct {
            long code;
            const char *text;
        } reasons[] = {
            {200, "OK"}, {201, "Created"}, {204, "No Content"}, {400, "Bad Request"},
            {401, "Unauthorized"}, {402, "Payment Required"}, {403, "Forbidden"},
            {404, "Not Found"}, {408, "Request Timeout"}, {409, "Conflict"},
            {413, "Request Entity Too Large"}, {422, "Unprocessable Entity"},
            {429, "Too Many Requests"}, {500, "Internal Server Error"}, {502, "Bad Gateway"},
            {503, "Service Unavailable"}, {504, "Gateway Timeout"},
        };
        const char *t = NULL;
        for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
            if (reasons[i].code == code)
                t = reasons[i].text;
        if (t)
            ad_buf_printf(&b, "%ld %s", code, t);
        else
            ad_buf_printf(&b, "%ld", code);
    }
    return ad_buf_steal(&b);
}

/* ---- exchanges ------------------------------------------------------------ */

static void x_free(rec_x *x)
{
    free(x->url);
    free_header_list(x->reqh, x->nreqh);
    free(x->status_line);
    ad_buf_free(&x->resp_headers);
    ad_buf_free(&x->resp_body);
    free(x);
}

static void record(rec_x *x, const ad_xfer_result *res)
{
    ad_record *r = x->rec;
    ad_cassette_header *rs = NULL;
    size_t nrs = 0, caprs = 0;
    const char *p = x->resp_headers.data, *end = p + x->resp_headers.len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        add_header_line(&rs, &nrs, &caprs, p, (size_t)(le - p), false, NULL);
        p = le;
    }
    sort_headers(rs, nrs);
    char *status = status_text(x->status_line, res->status);
    ad_interaction it = {
        .method = "POST",
        .url = x->url,
        .req_body = (char *)x->body, /* copied by ad_cassette_append */
        .req_body_len = x->body_len,
        .req_headers = x->reqh,
        .nreq_headers = x->nreqh,
        .proto = (char *)(res->proto ? res->proto : "HTTP/1.1"),
        .code = res->status,
        .status = status,
        .resp_body = x->resp_body.data ? x->resp_body.data : "",
        .resp_body_len = x->resp_body.len,
        .resp_headers = rs,
        .nresp_headers = nrs,
        .duration_s = (double)(uv_hrtime() - x->t0) / 1e9,
        .resp_truncated = x->truncated,
    };
    size_t at = ad_cassette_count(r->cassette);
    if (ad_cassette_append(r->cassette, &it) == AD_OK)
        ad_cassette_redact_from(r->cassette, at, r->secret);
    free(status);
    free_header_list(rs, nrs);
}

static void on_rec_header(void *ud, const char *line, size_t len)
{
    rec_x *x = ud;
    if (len < 65536) {
        if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
            /* A new response (after a redirect or 100 Continue) starts over. */
            ad_buf_reset(&x->resp_headers);
            free(x->status_line);
            x->status_line = ad_strndup(line, len);
        } else {
            ad_buf_append(&x->resp_headers, line, len);
        }
    }
    if (x->cb.on_header)
        x->cb.on_header(x->ud, line, len);
}

static int on_rec_data(void *ud, long status, const char *ct, const char *data, size_t len)
{
    rec_x *x = ud;
    if (!x->truncated) {
        /* A clean cut: the first bytes up to the cap, then nothing (a
         * piece skipped and a later one kept would leave a hole). */
        size_t room = AD_CASSETTE_MAX_BODY - x->resp_body.len;
        if (ad_buf_append(&x->resp_body, data, len < room ? len : room) != AD_OK || len > room)
            x->truncated = true;
    }
    return x->cb.on_data(x->ud, status, ct, data, len);
}

static void on_rec_done(void *ud, const ad_xfer_result *res)
{
    rec_x *x = ud;
    if (res->status)
        record(x, res);
    LIST_REMOVE(x, link);
    x->cb.on_done(x->ud, res);
    x_free(x);
}

/* ---- the transport -------------------------------------------------------- */

static ad_exchange *record_start(ad_transport *t, const ad_xfer_req *q, const ad_xfer_cb *cb,
                                 void *ud)
{
    ad_record *r = (ad_record *)t;
    rec_x *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->base.transport = t;
    x->rec = r;
    x->cb = *cb;
    x->ud = ud;
    x->url = ad_strdup(q->url ? q->url : "");
    x->body = q->body;
    x->body_len = q->body_len;
    x->t0 = uv_hrtime();
    bool has_ua = false;
    for (size_t i = 0; i < q->nheaders; i++) {
        add_header_line(&x->reqh, &x->nreqh, &x->capreqh, q->headers[i], strlen(q->headers[i]),
                        true, r->secret);
        has_ua = has_ua || strncasecmp(q->headers[i], "User-Agent:", 11) == 0;
    }
    if (!has_ua) {
        /* The one every agentd transport sends (curl.c). */
        const char ua[] = "User-Agent: agentd/" AGENTD_VERSION;
        add_header_line(&x->reqh, &x->nreqh, &x->capreqh, ua, sizeof ua - 1, true, r->secret);
    }
    sort_headers(x->reqh, x->nreqh);
    ad_xfer_cb mine = {on_rec_data, on_rec_header, on_rec_done};
    x->inner = x->url ? ad_xfer_start(r->inner, q, &mine, x) : NULL;
    if (!x->inner) {
        x_free(x);
        return NULL;
    }
    LIST_INSERT_HEAD(&r->xs, x, link);
    return &x->base;
}

static void record_pause(ad_exchange *e, bool paused)
{
    ad_xfer_pause(((rec_x *)e)->inner, paused);
}

static void record_cancel(ad_exchange *e)
{
    rec_x *x = (rec_x *)e;
    ad_xfer_cancel(x->inner);
    LIST_REMOVE(x, link);
    x_free(x);
}

static void record_close(ad_transport *t)
{
    ad_record *r = (ad_record *)t;
    while (!LIST_EMPTY(&r->xs)) {
        rec_x *x = LIST_FIRST(&r->xs);
        LIST_REMOVE(x, link);
        x_free(x);
    }
    ad_transport_close(r->inner); /* drops its exchanges without calling back */
    if (r->secret) {
        memset(r->secret, 0, strlen(r->secret));
        free(r->secret);
    }
    free(r);
}

static const ad_transport_vt record_vt = {
    .name = "record",
    .start = record_start,
    .pause = record_pause,
    .cancel = record_cancel,
    .close = record_close,
};

ad_transport *ad_record_new(ad_transport *inner, ad_cassette *c, const char *secret)
{
    ad_record *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->base.vt = &record_vt;
    r->inner = inner;
    r->cassette = c;
    if (secret && secret[0] && !(r->secret = ad_strdup(secret))) {
        free(r);
        return NULL;
    }
    return &r->base;
}

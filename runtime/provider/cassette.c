/*
 * cassette.c -- go-vcr v2 cassettes: model, YAML load/save, redaction
 * (see cassette.h).
 *
 * Data flow. Recording: record.c builds one ad_interaction per finished
 * exchange, appends a deep copy and redacts it; main.c saves at the end of
 * the run. Replay: main.c loads the file; replay.c reads its interactions
 * in order and compares each request with the recorded one.
 *
 * YAML goes through libyaml only. Reading uses the document API (the files
 * are small: at most AD_CASSETTE_MAX_FILE) and walks the node tree, ignoring
 * keys it does not know, so files written by other go-vcr users load too.
 * Writing uses the event emitter. A YAML style can silently change bytes on
 * the way back (a literal block folds "\r\n" into "\n", for one), so the
 * emitter's output is parsed again and every string compared with the
 * original; a body that does not survive is written again in double quotes,
 * and one that still does not (or is not UTF-8) as !!binary base64. What we
 * write therefore always reads back byte-exact, trailing newlines included.
 *
 * Invariants: every string in an ad_interaction is owned and non-NULL after
 * append/load; bodies are NUL-terminated but may contain NULs (lengths are
 * authoritative). Nothing here trusts the file: wrong shapes are errors with
 * a line number, never crashes.
 */
#include "provider/cassette.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/lazy_yaml.h"

#include "base/base64.h"
#include "base/buf.h"
#include "base/text.h"
#include "base/config.h"

#define BINARY_TAG "tag:yaml.org,2002:binary"

struct ad_cassette {
    ad_interaction *items;
    size_t n, cap;
    char *id_prefix;
};

/* ---- model ------------------------------------------------------------- */

static void headers_free(ad_cassette_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void interaction_free(ad_interaction *it)
{
    free(it->method);
    free(it->url);
    free(it->req_body);
    headers_free(it->req_headers, it->nreq_headers);
    free(it->proto);
    free(it->status);
    free(it->resp_body);
    headers_free(it->resp_headers, it->nresp_headers);
    memset(it, 0, sizeof *it);
}

ad_cassette *ad_cassette_new(void)
{
    return calloc(1, sizeof(ad_cassette));
}

void ad_cassette_free(ad_cassette *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        interaction_free(&c->items[i]);
    free(c->items);
    free(c->id_prefix);
    free(c);
}

size_t ad_cassette_count(const ad_cassette *c)
{
    return c ? c->n : 0;
}

const ad_interaction *ad_cassette_get(const ad_cassette *c, size_t i)
{
    return c && i < c->n ? &c->items[i] : NULL;
}

static char *dup_or_empty(const char *s)
{
    return ad_strdup(s ? s : "");
}

static int copy_headers(ad_cassette_header **out, size_t *nout, const ad_cassette_header *h,
                        size_t n)
{
    *out = NULL;
    *nout = 0;
    if (n == 0)
        return AD_OK;
    ad_cassette_header *c = calloc(n, sizeof *c);
    if (!c)
        return AD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c[i].name = dup_or_empty(h[i].name);
        c[i].value = dup_or_empty(h[i].value);
        if (!c[i].name || !c[i].value) {
            headers_free(c, i + 1);
            return AD_ENOMEM;
        }
    }
    *out = c;
    *nout = n;
    return AD_OK;
}

static int reserve_item(ad_cassette *c)
{
    if (c->n < c->cap)
        return AD_OK;
    size_t cap = c->cap ? c->cap * 2 : 8;
    ad_interaction *p = realloc(c->items, cap * sizeof *p);
    if (!p)
        return AD_ENOMEM;
    c->items = p;
    c->cap = cap;
    return AD_OK;
}

int ad_cassette_append(ad_cassette *c, const ad_interaction *it)
{
    if (reserve_item(c) != AD_OK)
        return AD_ENOMEM;
    ad_interaction d = {0};
    d.method = dup_or_empty(it->method);
    d.url = dup_or_empty(it->url);
    d.req_body = ad_strndup(it->req_body ? it->req_body : "", it->req_body ? it->req_body_len : 0);
    d.req_body_len = it->req_body ? it->req_body_len : 0;
    d.proto = dup_or_empty(it->proto);
    d.code = it->code;
    d.status = dup_or_empty(it->status);
    d.resp_body =
        ad_strndup(it->resp_body ? it->resp_body : "", it->resp_body ? it->resp_body_len : 0);
    d.resp_body_len = it->resp_body ? it->resp_body_len : 0;
    d.duration_s = it->duration_s;
    d.resp_truncated = it->resp_truncated;
    if (!d.method || !d.url || !d.req_body || !d.proto || !d.status || !d.resp_body ||
        copy_headers(&d.req_headers, &d.nreq_headers, it->req_headers, it->nreq_headers) ||
        copy_headers(&d.resp_headers, &d.nresp_headers, it->resp_headers, it->nresp_headers)) {
        interaction_free(&d);
        return AD_ENOMEM;
    }
    c->items[c->n++] = d;
    return AD_OK;
}

const char *ad_cassette_header_get(const ad_cassette_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

const char *ad_cassette_id_prefix(const ad_cassette *c)
{
    return c->id_prefix;
}

int ad_cassette_set_id_prefix(ad_cassette *c, const char *prefix)
{
    char *p = prefix ? ad_strdup(prefix) : NULL;
    if (prefix && !p)
        return AD_ENOMEM;
    free(c->id_prefix);
    c->id_prefix = p;
    return AD_OK;
}

/* ---- redaction --------------------------------------------------------- */

static int redact_field(char **s, size_t *len, const char *secret)
{
    size_t l = len ? *len : strlen(*s);
    size_t nl;
    char *r = ad_redact(*s, l, secret, &nl);
    if (!r)
        return AD_OK;
    free(*s);
    *s = r;
    if (len)
        *len = nl;
    return AD_OK;
}

/* Drops headers that hold credentials. Request headers are ours (from the
 * config): any whose name suggests a credential goes (api-key, x-api-key,
 * cookie, ...). Response headers only when they hold the key itself, so a
 * server's x-ratelimit-remaining-tokens stays in the recording. */
static void redact_headers(ad_cassette_header *h, size_t *n, const char *secret, bool request)
{
    size_t sl = secret ? strlen(secret) : 0;
    size_t keep = 0;
    for (size_t i = 0; i < *n; i++) {
        bool drop = strcasecmp(h[i].name, "Authorization") == 0 ||
                    strcasecmp(h[i].name, "Proxy-Authorization") == 0 ||
                    (request && ad_config_sensitive_header(h[i].name, h[i].value, secret)) ||
                    (sl && strstr(h[i].value, secret) != NULL);
        if (drop) {
            free(h[i].name);
            free(h[i].value);
        } else {
            h[keep++] = h[i];
        }
    }
    *n = keep;
}

int ad_cassette_redact(ad_cassette *c, const char *secret)
{
    return ad_cassette_redact_from(c, 0, secret);
}

int ad_cassette_redact_from(ad_cassette *c, size_t first, const char *secret)
{
    for (size_t i = first; i < c->n; i++) {
        ad_interaction *it = &c->items[i];
        redact_headers(it->req_headers, &it->nreq_headers, secret, true);
        redact_headers(it->resp_headers, &it->nresp_headers, secret, false);
        if (!secret || !secret[0])
            continue;
        redact_field(&it->url, NULL, secret);
        redact_field(&it->req_body, &it->req_body_len, secret);
        redact_field(&it->resp_body, &it->resp_body_len, secret);
    }
    return AD_OK;
}

/* ---- durations --------------------------------------------------------- */

void ad_cassette_format_duration(double s, char *out, size_t outlen)
{
    if (!(s > 0) || !isfinite(s)) {
        snprintf(out, outlen, "0s");
        return;
    }
    if (s < 1e-3) {
        snprintf(out, outlen, "%.3gµs", s * 1e6);
        return;
    }
    if (s < 1) {
        snprintf(out, outlen, "%.6gms", s * 1e3);
        return;
    }
    long long whole = (long long)s;
    double frac = s - (double)whole;
    long long h = whole / 3600, m = (whole / 60) % 60;
    double sec = (double)(whole % 60) + frac;
    char secs[32];
    snprintf(secs, sizeof secs, "%.9f", sec);
    /* Trim trailing zeros the way Go prints durations ("1.5s", "2s"). */
    char *dot = strchr(secs, '.');
    if (dot) {
        char *e = secs + strlen(secs);
        while (e > dot + 1 && e[-1] == '0')
            *--e = '\0';
        if (e == dot + 1)
            *dot = '\0';
    }
    if (h)
        snprintf(out, outlen, "%lldh%lldm%ss", h, m, secs);
    else if (m)
        snprintf(out, outlen, "%lldm%ss", m, secs);
    else
        snprintf(out, outlen, "%ss", secs);
}

/* Parses a Go duration ("1h2m3.5s", "250ms", "12µs"); 0 when unreadable. */
static double parse_duration(const char *s)
{
    double total = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p)
            return 0;
        p = end;
        double unit;
        if (strncmp(p, "ns", 2) == 0)
            unit = 1e-9, p += 2;
        else if (strncmp(p, "us", 2) == 0)
            unit = 1e-6, p += 2;
        else if (strncmp(p, "µs", strlen("µs")) == 0)
            unit = 1e-6, p += strlen("µs");
        else if (strncmp(p, "ms", 2) == 0)
            unit = 1e-3, p += 2;
        else if (*p == 's')
            unit = 1, p++;
        else if (*p == 'm')
            unit = 60, p++;
        else if (*p == 'h')
            unit = 3600, p++;
        else if (*p == '\0')
            unit = 1e-9; /* a bare number: nanoseconds, as Go stores them */
        else
            return 0;
        total += v * unit;
    }
    return total;
}

/* ---- loading ----------------------------------------------------------- */

typedef struct loader {
    yaml_document_t doc;
    const char *name;
    char *err;
    size_t errlen;
} loader;

static int bad(loader *l, const yaml_node_t *n, const char *what)
{
    ad_errf(l->err, l->errlen, "%s:%lu: %s", l->name,
            n ? (unsigned long)n->start_mark.line + 1 : 0ul, what);
    return AD_EINVAL;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

static yaml_node_t *map_get(loader *l, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&l->doc, p->key);
        if (scalar_is(k, key))
            return yaml_document_get_node(&l->doc, p->value);
    }
    return NULL;
}

static bool is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

/* A string value: "" when absent or null; !!binary decoded. */
static int get_str(loader *l, yaml_node_t *n, char **out, size_t *len, const char *what)
{
    *out = NULL;
    if (len)
        *len = 0;
    if (is_null(n)) {
        *out = ad_strdup("");
        return *out ? AD_OK : AD_ENOMEM;
    }
    if (n->type != YAML_SCALAR_NODE) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: expected a string", what);
        return bad(l, n, msg);
    }
    const char *v = (const char *)n->data.scalar.value;
    size_t vl = n->data.scalar.length;
    if (n->tag && strcmp((const char *)n->tag, BINARY_TAG) == 0) {
        ad_buf b = AD_BUF_INIT;
        int rc = ad_base64_decode(&b, v, vl);
        if (rc != AD_OK) {
            ad_buf_free(&b);
            char msg[128];
            snprintf(msg, sizeof msg, "%s: invalid base64 in !!binary", what);
            return rc == AD_ENOMEM ? AD_ENOMEM : bad(l, n, msg);
        }
        size_t bl = b.len;
        *out = ad_buf_steal(&b);
        if (!*out)
            return AD_ENOMEM;
        if (len)
            *len = bl;
        else if (memchr(*out, '\0', bl)) {
            free(*out);
            *out = NULL;
            char msg[128];
            snprintf(msg, sizeof msg, "%s: contains a NUL byte", what);
            return bad(l, n, msg);
        }
        return AD_OK;
    }
    if (!len && memchr(v, '\0', vl)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: contains a NUL byte", what);
        return bad(l, n, msg);
    }
    *out = ad_strndup(v, vl);
    if (!*out)
        return AD_ENOMEM;
    if (len)
        *len = vl;
    return AD_OK;
}

static int get_long(loader *l, yaml_node_t *n, long *out, const char *what)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s: expected an integer", what);
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0 ||
        n->data.scalar.length > 20)
        return bad(l, n, msg);
    char tmp[24];
    memcpy(tmp, n->data.scalar.value, n->data.scalar.length);
    tmp[n->data.scalar.length] = '\0';
    char *end;
    errno = 0;
    long v = strtol(tmp, &end, 10);
    if (errno || *end)
        return bad(l, n, msg);
    *out = v;
    return AD_OK;
}

static int add_header(ad_cassette_header **h, size_t *n, size_t *cap, char *name, char *value)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        ad_cassette_header *p = realloc(*h, nc * sizeof *p);
        if (!p) {
            free(name);
            free(value);
            return AD_ENOMEM;
        }
        *h = p;
        *cap = nc;
    }
    (*h)[*n].name = name;
    (*h)[*n].value = value;
    (*n)++;
    return AD_OK;
}

/* headers: {Name: [v1, v2]} (a bare scalar value is accepted too). */
static int get_headers(loader *l, yaml_node_t *n, ad_cassette_header **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (is_null(n))
        return AD_OK;
    if (n->type != YAML_MAPPING_NODE)
        return bad(l, n, "headers: expected a mapping");
    size_t cap = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&l->doc, p->value);
        char *name;
        int rc = get_str(l, k, &name, NULL, "header name");
        if (rc != AD_OK)
            return rc;
        if (v && v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                char *val, *nm = ad_strdup(name);
                rc = get_str(l, yaml_document_get_node(&l->doc, *it), &val, NULL, "header value");
                if (rc == AD_OK && !nm)
                    rc = AD_ENOMEM;
                if (rc == AD_OK)
                    rc = add_header(out, nout, &cap, nm, val);
                else
                    free(nm);
                if (rc != AD_OK) {
                    free(name);
                    return rc;
                }
            }
            free(name);
        } else {
            char *val;
            rc = get_str(l, v, &val, NULL, "header value");
            if (rc == AD_OK)
                rc = add_header(out, nout, &cap, name, val);
            else
                free(name);
            if (rc != AD_OK)
                return rc;
        }
    }
    return AD_OK;
}

static int load_interaction(loader *l, yaml_node_t *n, ad_interaction *it)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return bad(l, n, "an interaction must be a mapping");
    yaml_node_t *req = map_get(l, n, "request");
    yaml_node_t *resp = map_get(l, n, "response");
    if (!req || req->type != YAML_MAPPING_NODE)
        return bad(l, n, "interaction without a request mapping");
    if (!resp || resp->type != YAML_MAPPING_NODE)
        return bad(l, n, "interaction without a response mapping");
    int rc;
    if ((rc = get_str(l, map_get(l, req, "method"), &it->method, NULL, "request.method")) ||
        (rc = get_str(l, map_get(l, req, "url"), &it->url, NULL, "request.url")) ||
        (rc = get_str(l, map_get(l, req, "body"), &it->req_body, &it->req_body_len,
                      "request.body")) ||
        (rc = get_headers(l, map_get(l, req, "headers"), &it->req_headers, &it->nreq_headers)) ||
        (rc = get_str(l, map_get(l, resp, "proto"), &it->proto, NULL, "response.proto")) ||
        (rc = get_str(l, map_get(l, resp, "status"), &it->status, NULL, "response.status")) ||
        (rc = get_str(l, map_get(l, resp, "body"), &it->resp_body, &it->resp_body_len,
                      "response.body")) ||
        (rc = get_headers(l, map_get(l, resp, "headers"), &it->resp_headers,
                          &it->nresp_headers)))
        return rc;
    yaml_node_t *code = map_get(l, resp, "code");
    if (code) {
        if ((rc = get_long(l, code, &it->code, "response.code")))
            return rc;
    } else {
        /* v1 cassettes may only have "status: 200 OK". */
        it->code = strtol(it->status, NULL, 10);
    }
    if (it->code < 100 || it->code > 999)
        return bad(l, code ? code : resp, "response.code: not an HTTP status");
    yaml_node_t *cut = map_get(l, resp, "agentd_truncated");
    if (cut && !is_null(cut)) {
        if (!scalar_is(cut, "true") && !scalar_is(cut, "false"))
            return bad(l, cut, "response.agentd_truncated: expected true or false");
        it->resp_truncated = scalar_is(cut, "true");
    }
    yaml_node_t *dur = map_get(l, resp, "duration");
    if (dur && dur->type == YAML_SCALAR_NODE && dur->data.scalar.length < 64) {
        char tmp[64];
        memcpy(tmp, dur->data.scalar.value, dur->data.scalar.length);
        tmp[dur->data.scalar.length] = '\0';
        it->duration_s = parse_duration(tmp);
    }
    return AD_OK;
}

int ad_cassette_parse(ad_cassette **out, const char *text, size_t len, const char *name,
                      char *err, size_t errlen)
{
    if (ad_lazy_yaml(err, errlen) != AD_OK)
        return AD_ERR;
    loader l = {.name = name ? name : "cassette", .err = err, .errlen = errlen};
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return AD_ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &l.doc)) {
        ad_errf(err, errlen, "%s:%lu: YAML error: %s%s%s", l.name,
                (unsigned long)p.problem_mark.line + 1, p.problem ? p.problem : "unknown",
                p.context ? " " : "", p.context ? p.context : "");
        yaml_parser_delete(&p);
        return AD_EINVAL;
    }
    yaml_parser_delete(&p);
    int rc = AD_OK;
    ad_cassette *c = ad_cassette_new();
    yaml_node_t *root = yaml_document_get_root_node(&l.doc);
    if (!c) {
        rc = AD_ENOMEM;
        goto done;
    }
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = bad(&l, root, "not a cassette (expected a mapping with version and interactions)");
        goto done;
    }
    yaml_node_t *ver = map_get(&l, root, "version");
    if (!ver || !(scalar_is(ver, "1") || scalar_is(ver, "2"))) {
        rc = bad(&l, ver ? ver : root, "version: expected 1 or 2 (a go-vcr cassette)");
        goto done;
    }
    yaml_node_t *pre = map_get(&l, root, "agentd_id_prefix");
    if (pre && !is_null(pre)) {
        if ((rc = get_str(&l, pre, &c->id_prefix, NULL, "agentd_id_prefix")) != AD_OK)
            goto done;
    }
    yaml_node_t *seq = map_get(&l, root, "interactions");
    if (is_null(seq))
        goto done;
    if (seq->type != YAML_SEQUENCE_NODE) {
        rc = bad(&l, seq, "interactions: expected a list");
        goto done;
    }
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        if ((rc = reserve_item(c)) != AD_OK)
            goto done;
        ad_interaction *d = &c->items[c->n];
        memset(d, 0, sizeof *d);
        rc = load_interaction(&l, yaml_document_get_node(&l.doc, *it), d);
        if (rc != AD_OK) {
            interaction_free(d);
            goto done;
        }
        c->n++;
    }
done:
    yaml_document_delete(&l.doc);
    if (rc != AD_OK) {
        if (rc == AD_ENOMEM)
            ad_errf(err, errlen, "%s: out of memory", l.name);
        ad_cassette_free(c);
        return rc;
    }
    *out = c;
    return AD_OK;
}

int ad_cassette_load(ad_cassette **out, const char *path, char *err, size_t errlen)
{
    ad_buf b = AD_BUF_INIT;
    int rc = ad_read_file(path, AD_CASSETTE_MAX_FILE, &b);
    if (rc == AD_OK)
        rc = ad_cassette_parse(out, b.data ? b.data : "", b.len, path, err, errlen);
    else if (rc == AD_ETOOBIG)
        ad_errf(err, errlen, "cassette %s is larger than %u MiB", path, AD_CASSETTE_MAX_FILE >> 20);
    else if (rc == AD_EINVAL)
        ad_errf(err, errlen, "cannot read cassette %s: not a regular file", path);
    else if (rc == AD_ERR)
        ad_errf(err, errlen, "cannot read cassette %s: %s", path, strerror(errno));
    else
        ad_errf(err, errlen, "cassette %s: out of memory", path);
    ad_buf_free(&b);
    return rc;
}

/* ---- writing ----------------------------------------------------------- */

/* How a body is written; raised one step each time it fails to round-trip. */
enum { STYLE_AUTO = 0, STYLE_DOUBLE, STYLE_BINARY };

typedef struct emit_ctx {
    yaml_emitter_t em;
    ad_buf *out;
    bool failed;
} emit_ctx;

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    ad_buf *b = data;
    return ad_buf_append(b, buffer, size) == AD_OK;
}

static void put_event(emit_ctx *x, yaml_event_t *ev, int init_ok)
{
    if (x->failed)
        return;
    if (!init_ok || !yaml_emitter_emit(&x->em, ev))
        x->failed = true;
}

static void put_map_start(emit_ctx *x)
{
    yaml_event_t ev;
    put_event(x, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static void put_map_end(emit_ctx *x)
{
    yaml_event_t ev;
    put_event(x, &ev, yaml_mapping_end_event_initialize(&ev));
}

static void put_seq_start(emit_ctx *x)
{
    yaml_event_t ev;
    put_event(x, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
}

static void put_seq_end(emit_ctx *x)
{
    yaml_event_t ev;
    put_event(x, &ev, yaml_sequence_end_event_initialize(&ev));
}

static void put_scalar(emit_ctx *x, const char *v, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    put_event(x, &ev,
              yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)len, 1, 1, style));
}

/* A string that a YAML 1.1 reader would take for a number, a boolean or a
 * null when written plain: quote it, as Go's encoder does. */
static bool looks_typed(const char *s)
{
    if (!s[0] || strcmp(s, "~") == 0)
        return true;
    /* Numbers of every YAML 1.1 spelling (1_000, 0x1f, 1:30, .5e3, dates):
     * a digit, sign or dot first and nothing but number characters. */
    if (strchr("0123456789+-.", s[0]) && s[strspn(s, "0123456789_:.+-eExXabcdefABCDEFinINaA")] == '\0')
        return true;
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", "y", "n", "null"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    return false;
}

static void put_str(emit_ctx *x, const char *s)
{
    put_scalar(x, s, strlen(s), looks_typed(s) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

static void put_key(emit_ctx *x, const char *k)
{
    put_scalar(x, k, strlen(k), YAML_PLAIN_SCALAR_STYLE);
}

static void put_long(emit_ctx *x, long v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%ld", v);
    put_scalar(x, tmp, strlen(tmp), YAML_PLAIN_SCALAR_STYLE);
}

/* Bytes a YAML parser turns into "\n" (or otherwise rewrites) inside a
 * block scalar: CR, NEL, LS, PS. */
static bool literal_safe(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\0')
            return false;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85)
            return false;
        if (c == 0xe2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
            ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9))
            return false;
    }
    return true;
}

static void put_binary(emit_ctx *x, const char *s, size_t len)
{
    if (x->failed)
        return;
    ad_buf b = AD_BUF_INIT;
    if (ad_base64_encode(&b, s, len) != AD_OK) {
        ad_buf_free(&b);
        x->failed = true;
        return;
    }
    yaml_event_t ev;
    put_event(x, &ev,
              yaml_scalar_event_initialize(&ev, NULL, (yaml_char_t *)BINARY_TAG,
                                           (yaml_char_t *)(b.data ? b.data : ""), (int)b.len, 0, 0,
                                           YAML_PLAIN_SCALAR_STYLE));
    ad_buf_free(&b);
}

static void put_body(emit_ctx *x, const char *s, size_t len, int style)
{
    if (x->failed)
        return;
    if (len > INT32_MAX)
        style = STYLE_BINARY;
    if (style != STYLE_BINARY) {
        yaml_scalar_style_t ys = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        if (style == STYLE_AUTO && len > 0) {
            if (memchr(s, '\n', len))
                ys = literal_safe(s, len) ? YAML_LITERAL_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
            else
                ys = YAML_SINGLE_QUOTED_SCALAR_STYLE;
        }
        yaml_event_t ev;
        /* Initialisation fails on bytes that are not UTF-8: binary then. */
        if (yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, ys)) {
            put_event(x, &ev, 1);
            return;
        }
    }
    put_binary(x, s, len);
}

static void put_headers(emit_ctx *x, const ad_cassette_header *h, size_t n)
{
    put_map_start(x);
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcasecmp(h[j].name, h[i].name) == 0;
        if (seen)
            continue;
        put_str(x, h[i].name);
        put_seq_start(x);
        for (size_t j = i; j < n; j++)
            if (strcasecmp(h[j].name, h[i].name) == 0)
                put_str(x, h[j].value);
        put_seq_end(x);
    }
    put_map_end(x);
}

static void proto_version(const char *proto, long *major, long *minor)
{
    *major = 1;
    *minor = 1;
    const char *p = strchr(proto, '/');
    if (p && isdigit((unsigned char)p[1])) {
        *major = p[1] - '0';
        *minor = (p[2] == '.' && isdigit((unsigned char)p[3])) ? p[3] - '0' : 0;
    }
}

static int emit_once(const ad_cassette *c, ad_buf *out, const unsigned char *styles)
{
    emit_ctx x = {.out = out};
    if (!yaml_emitter_initialize(&x.em))
        return AD_ENOMEM;
    yaml_emitter_set_output(&x.em, write_handler, out);
    yaml_emitter_set_unicode(&x.em, 1);
    yaml_emitter_set_width(&x.em, -1);
    yaml_emitter_set_indent(&x.em, 2);
    yaml_emitter_set_break(&x.em, YAML_LN_BREAK);
    yaml_event_t ev;
    put_event(&x, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    put_event(&x, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0));
    put_map_start(&x);
    put_key(&x, "version");
    put_long(&x, 2);
    if (c->id_prefix) {
        put_key(&x, "agentd_id_prefix");
        put_scalar(&x, c->id_prefix, strlen(c->id_prefix), YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    }
    put_key(&x, "interactions");
    put_seq_start(&x);
    for (size_t i = 0; i < c->n && !x.failed; i++) {
        const ad_interaction *it = &c->items[i];
        long major, minor;
        put_map_start(&x);
        put_key(&x, "id");
        put_long(&x, (long)i);

        put_key(&x, "request");
        put_map_start(&x);
        put_key(&x, "proto");
        put_str(&x, "HTTP/1.1");
        put_key(&x, "proto_major");
        put_long(&x, 1);
        put_key(&x, "proto_minor");
        put_long(&x, 1);
        put_key(&x, "content_length");
        put_long(&x, (long)it->req_body_len);
        put_key(&x, "host");
        put_scalar(&x, "", 0, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        put_key(&x, "body");
        put_body(&x, it->req_body, it->req_body_len, styles[2 * i]);
        put_key(&x, "headers");
        put_headers(&x, it->req_headers, it->nreq_headers);
        put_key(&x, "url");
        put_str(&x, it->url);
        put_key(&x, "method");
        put_str(&x, it->method);
        put_map_end(&x);

        put_key(&x, "response");
        put_map_start(&x);
        const char *proto = it->proto[0] ? it->proto : "HTTP/1.1";
        proto_version(proto, &major, &minor);
        put_key(&x, "proto");
        put_str(&x, proto);
        put_key(&x, "proto_major");
        put_long(&x, major);
        put_key(&x, "proto_minor");
        put_long(&x, minor);
        const char *cl = ad_cassette_header_get(it->resp_headers, it->nresp_headers, "Content-Length");
        put_key(&x, "content_length");
        put_long(&x, cl ? strtol(cl, NULL, 10) : -1);
        put_key(&x, "body");
        put_body(&x, it->resp_body, it->resp_body_len, styles[2 * i + 1]);
        put_key(&x, "headers");
        put_headers(&x, it->resp_headers, it->nresp_headers);
        put_key(&x, "status");
        if (it->status[0]) {
            put_str(&x, it->status);
        } else {
            char st[32];
            snprintf(st, sizeof st, "%ld", it->code);
            put_str(&x, st);
        }
        put_key(&x, "code");
        put_long(&x, it->code);
        char dur[64];
        ad_cassette_format_duration(it->duration_s, dur, sizeof dur);
        put_key(&x, "duration");
        put_str(&x, dur);
        if (it->resp_truncated) {
            put_key(&x, "agentd_truncated");
            put_scalar(&x, "true", 4, YAML_PLAIN_SCALAR_STYLE);
        }
        put_map_end(&x);
        put_map_end(&x);
    }
    put_seq_end(&x);
    put_map_end(&x);
    put_event(&x, &ev, yaml_document_end_event_initialize(&ev, 1));
    put_event(&x, &ev, yaml_stream_end_event_initialize(&ev));
    bool failed = x.failed;
    yaml_emitter_delete(&x.em);
    return failed ? AD_ERR : AD_OK;
}

static bool same_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static bool same_headers(const ad_cassette_header *a, size_t an, const ad_cassette_header *b,
                         size_t bn)
{
    /* Written grouped by name: compare as multisets in grouped order. */
    if (an != bn)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < an; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcasecmp(a[j].name, a[i].name) == 0;
        if (seen)
            continue;
        for (size_t j = i; j < an; j++) {
            if (strcasecmp(a[j].name, a[i].name) != 0)
                continue;
            if (k >= bn || strcmp(b[k].name, a[i].name) != 0 || strcmp(b[k].value, a[j].value) != 0)
                return false;
            k++;
        }
    }
    return true;
}

int ad_cassette_emit(const ad_cassette *c, ad_buf *out, char *err, size_t errlen)
{
    if (ad_lazy_yaml(err, errlen) != AD_OK)
        return AD_ERR;
    unsigned char *styles = calloc(2 * c->n + 2, 1);
    if (!styles)
        return AD_ENOMEM;
    size_t start = out->len;
    int rc = AD_ERR;
    for (int round = 0; round < 3; round++) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        rc = emit_once(c, out, styles);
        if (rc != AD_OK) {
            ad_errf(err, errlen, "cannot write the cassette as YAML");
            break;
        }
        ad_cassette *back = NULL;
        char perr[256];
        rc = ad_cassette_parse(&back, out->data + start, out->len - start, "written cassette",
                               perr, sizeof perr);
        if (rc != AD_OK) {
            ad_errf(err, errlen, "the written cassette does not read back: %s", perr);
            break;
        }
        bool retry = false, other = back->n != c->n;
        for (size_t i = 0; i < c->n && !other; i++) {
            const ad_interaction *a = &c->items[i], *b = &back->items[i];
            if (!same_bytes(a->req_body, a->req_body_len, b->req_body, b->req_body_len) &&
                styles[2 * i] < STYLE_BINARY)
                styles[2 * i]++, retry = true;
            if (!same_bytes(a->resp_body, a->resp_body_len, b->resp_body, b->resp_body_len) &&
                styles[2 * i + 1] < STYLE_BINARY)
                styles[2 * i + 1]++, retry = true;
            if (strcmp(a->url, b->url) || strcmp(a->method, b->method) || a->code != b->code ||
                a->resp_truncated != b->resp_truncated ||
                !same_headers(a->req_headers, a->nreq_headers, b->req_headers, b->nreq_headers) ||
                !same_headers(a->resp_headers, a->nresp_headers, b->resp_headers, b->nresp_headers))
                other = true;
        }
        ad_cassette_free(back);
        if (other) {
            ad_errf(err, errlen, "the cassette does not survive a YAML round trip");
            rc = AD_ERR;
            break;
        }
        if (!retry)
            break;
        rc = AD_ERR;
        ad_errf(err, errlen, "a body does not survive a YAML round trip");
    }
    free(styles);
    if (rc != AD_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

/* The temporary file ad_cassette_save() writes before renaming it to path.
 * A new file of our own (O_EXCL: no symlink or stale file is followed),
 * readable by its owner only, like every file agentd writes that may hold a
 * conversation. Returns the fd or -1 with errno set. */
static int open_temp(const char *path, ad_buf *tmp)
{
    ad_buf_printf(tmp, "%s.tmp.%ld", path, (long)getpid());
    if (!tmp->data) {
        errno = ENOMEM;
        return -1;
    }
    return open(tmp->data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

int ad_cassette_check_writable(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        ad_errf(err, errlen, "cannot write cassette %s: %s", path, strerror(EISDIR));
        return AD_ERR;
    }
    ad_buf tmp = AD_BUF_INIT;
    int fd = open_temp(path, &tmp);
    if (fd < 0) {
        ad_errf(err, errlen, "cannot write cassette %s: %s", path, strerror(errno));
        ad_buf_free(&tmp);
        return AD_ERR;
    }
    close(fd);
    unlink(tmp.data);
    ad_buf_free(&tmp);
    return AD_OK;
}

int ad_cassette_save(const ad_cassette *c, const char *path, char *err, size_t errlen)
{
    ad_buf b = AD_BUF_INIT;
    char eerr[256];
    int rc = ad_cassette_emit(c, &b, eerr, sizeof eerr);
    if (rc != AD_OK) {
        ad_errf(err, errlen, "cannot write cassette %s: %s", path, eerr);
        ad_buf_free(&b);
        return rc;
    }
    ad_buf tmp = AD_BUF_INIT;
    int fd = open_temp(path, &tmp);
    if (fd < 0 && !tmp.data) {
        ad_buf_free(&b);
        return AD_ENOMEM;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f && fd >= 0)
        close(fd);
    if (!f) {
        ad_errf(err, errlen, "cannot write cassette %s: %s", path, strerror(errno));
        rc = AD_ERR;
    } else {
        bool ok = fwrite(b.data, 1, b.len, f) == b.len;
        ok = (fflush(f) == 0) && ok;
        int saved = errno;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp.data, path) != 0) {
            ad_errf(err, errlen, "cannot write cassette %s: %s", path, strerror(ok ? errno : saved));
            unlink(tmp.data);
            rc = AD_ERR;
        }
    }
    ad_buf_free(&tmp);
    ad_buf_free(&b);
    return rc;
}

/*
 * toml.c -- a TOML 1.0.0 parser (see toml.h).
 *
 * Data flow. ad_toml_parse() first makes one pass over the whole input that
 * checks the encoding: valid UTF-8 only (no overlongs, no surrogates, nothing
 * above U+10FFFF), no control characters other than tab and newline, and no
 * CR that is not part of a CRLF. TOML allows none of those anywhere (not in
 * strings, not in comments), so after this pass the recursive-descent parser
 * can treat every remaining byte as legal text and only has to check syntax.
 * The parser then reads line by line: blank lines, comments, [table] and
 * [[array]] headers, and key = value pairs into the current table.
 *
 * The tree. Every node is one malloc'd ad_toml. Tables keep their entries in
 * an array in insertion order; once a table grows past a few entries an
 * open-addressing index (hash -> entry number) is added, so lookups stay O(1)
 * and a file with 100k keys parses in linear time.
 *
 * Redefinition rules are enforced with per-table flags rather than a side
 * structure:
 *   - TF_HEADER: the table was defined by a [header] (or is an element of an
 *     array of tables, or the root). A second [header] for it is an error,
 *     and dotted keys from another place may not reach into it.
 *   - TF_DOTTED: the table was created (or last extended) by a dotted key in
 *     section `section`. Dotted keys of that same section may extend it;
 *     a [header] may define sub-tables below it but never the table itself.
 *   - no flag: created implicitly as an intermediate of a header such as
 *     [a.b.c]; a later [a] or [a.b] may still define it once.
 *   - TF_INLINE: an inline table, frozen once its closing brace was read.
 *   - AF_TABLES on arrays: created by [[header]] and so extendable by more
 *     [[header]]s; arrays written as values are static.
 * A "section" number changes with every header and every inline table.
 *
 * Bounds. Values nest (arrays, inline tables) at most AD_TOML_MAX_NESTING
 * deep, which bounds the parser's recursion. The tree itself (headers,
 * dotted keys and values together) is at most TOML_MAX_TREE_DEPTH deep, which
 * bounds the recursion of ad_toml_free() and of any caller walking the tree.
 * Both are reported as errors, never as a crash.
 *
 * Floats are checked against the TOML grammar here and then converted with
 * strtod(), so a process that switches LC_NUMERIC to a locale with a decimal
 * comma must switch it back before parsing. Keys may contain NUL (written as
 * "\u0000"); they are stored with their length, see ad_toml_key_len().
 */
#include "base/toml.h"

#include "base/buf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AD_TOML_MAX_NESTING 128  /* arrays / inline tables inside one value */
#define TOML_MAX_TREE_DEPTH 512  /* tables and arrays from the root down */
#define TOML_INDEX_MIN 8         /* tables with more entries get a hash index */

enum {
    TF_HEADER = 1u,
    TF_DOTTED = 2u,
    TF_INLINE = 4u,
    AF_TABLES = 8u
};

typedef struct toml_entry {
    char *key;
    size_t klen;
    uint32_t hash;
    ad_toml *val;
} toml_entry;

struct ad_toml {
    ad_toml_type type;
    int line, col;
    unsigned flags;
    unsigned long section;
    union {
        struct {
            toml_entry *e;
            size_t len, cap;
            uint32_t *idx; /* entry number + 1, 0 = free slot; NULL if small */
            size_t icap;   /* power of two */
        } t;
        struct {
            ad_toml **v;
            size_t len, cap;
        } a;
        struct {
            char *s; /* strings and date/times; NUL-terminated */
            size_t len;
        } s;
        int64_t i;
        double f;
        bool b;
    } u;
};

typedef struct toml_parser {
    const char *s;
    size_t len, pos;
    int line;      /* 1-based line of pos */
    size_t bol;    /* offset where that line begins */
    char *err;
    size_t errlen;
    int nesting;   /* arrays / inline tables currently open */
    unsigned long section;  /* current section number */
    unsigned long sections; /* last section number handed out */
    ad_buf key;    /* the simple key being read */
    ad_buf str;    /* scratch for string values and number text */
    size_t tok;    /* where the number / date token being read starts */
} toml_parser;

/* ---------------------------------------------------------------- tree -- */

static ad_toml *node_new(ad_toml_type type, int line, int col)
{
    ad_toml *v = calloc(1, sizeof *v);
    if (v) {
        v->type = type;
        v->line = line;
        v->col = col;
    }
    return v;
}

void ad_toml_free(ad_toml *v)
{
    if (v == NULL)
        return;
    switch (v->type) {
    case AD_TOML_TABLE:
        for (size_t i = 0; i < v->u.t.len; i++) {
            free(v->u.t.e[i].key);
            ad_toml_free(v->u.t.e[i].val);
        }
        free(v->u.t.e);
        free(v->u.t.idx);
        break;
    case AD_TOML_ARRAY:
        for (size_t i = 0; i < v->u.a.len; i++)
            ad_toml_free(v->u.a.v[i]);
        free(v->u.a.v);
        break;
    case AD_TOML_STRING:
    case AD_TOML_DATETIME:
    case AD_TOML_DATETIME_LOCAL:
    case AD_TOML_DATE_LOCAL:
    case AD_TOML_TIME_LOCAL:
        free(v->u.s.s);
        break;
    default:
        break;
    }
    free(v);
}

static uint32_t key_hash(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 16777619u;
    }
    return h;
}

static ad_toml *table_find(const ad_toml *t, const char *k, size_t n)
{
    uint32_t h = key_hash(k, n);
    if (t->u.t.idx == NULL) {
        for (size_t i = 0; i < t->u.t.len; i++) {
            const toml_entry *e = &t->u.t.e[i];
            if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
                return e->val;
        }
        return NULL;
    }
    size_t mask = t->u.t.icap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = t->u.t.idx[i];
        if (slot == 0)
            return NULL;
        const toml_entry *e = &t->u.t.e[slot - 1];
        if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
            return e->val;
    }
}

static int table_reindex(ad_toml *t, size_t icap)
{
    uint32_t *idx = calloc(icap, sizeof *idx);
    if (idx == NULL)
        return AD_ENOMEM;
    for (size_t j = 0; j < t->u.t.len; j++) {
        size_t i = t->u.t.e[j].hash & (icap - 1);
        while (idx[i])
            i = (i + 1) & (icap - 1);
        idx[i] = (uint32_t)(j + 1);
    }
    free(t->u.t.idx);
    t->u.t.idx = idx;
    t->u.t.icap = icap;
    return AD_OK;
}

/* Takes ownership of key (malloc'd, n bytes + NUL) and val on success only.
 * The caller has checked that the key is absent. */
static int table_put(ad_toml *t, char *key, size_t n, ad_toml *val)
{
    if (t->u.t.len >= UINT32_MAX - 1)
        return AD_ETOOBIG;
    if (t->u.t.len == t->u.t.cap) {
        size_t cap = t->u.t.cap ? t->u.t.cap * 2 : 4;
        toml_entry *e = realloc(t->u.t.e, cap * sizeof *e);
        if (e == NULL)
            return AD_ENOMEM;
        t->u.t.e = e;
        t->u.t.cap = cap;
    }
    size_t len = t->u.t.len + 1;
    if (len > TOML_INDEX_MIN && (t->u.t.idx == NULL || len * 2 > t->u.t.icap)) {
        size_t icap = 32;
        while (icap < len * 4)
            icap *= 2;
        t->u.t.len = len - 1;
        int rc = table_reindex(t, icap);
        if (rc)
            return rc;
    }
    toml_entry *e = &t->u.t.e[t->u.t.len];
    e->key = key;
    e->klen = n;
    e->hash = key_hash(key, n);
    e->val = val;
    if (t->u.t.idx) {
        size_t mask = t->u.t.icap - 1, i = e->hash & mask;
        while (t->u.t.idx[i])
            i = (i + 1) & mask;
        t->u.t.idx[i] = (uint32_t)len;
    }
    t->u.t.len = len;
    return AD_OK;
}

static int array_push(ad_toml *a, ad_toml *v)
{
    if (a->u.a.len == a->u.a.cap) {
        size_t cap = a->u.a.cap ? a->u.a.cap * 2 : 4;
        ad_toml **nv = realloc(a->u.a.v, cap * sizeof *nv);
        if (nv == NULL)
            return AD_ENOMEM;
        a->u.a.v = nv;
        a->u.a.cap = cap;
    }
    a->u.a.v[a->u.a.len++] = v;
    return AD_OK;
}

/* -------------------------------------------------------------- errors -- */

static int err_at(toml_parser *p, int line, int col, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int err_at(toml_parser *p, int line, int col, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ad_errf(p->err, p->errlen, "%d:%d: %s", line, col, msg);
    return code;
}

static int col_of(const toml_parser *p, size_t pos)
{
    size_t c = pos - p->bol + 1;
    return c > (size_t)INT32_MAX ? INT32_MAX : (int)c;
}

#define ERR(p, ...) err_at((p), (p)->line, col_of((p), (p)->pos), AD_EINVAL, __VA_ARGS__)

static int err_nomem(toml_parser *p)
{
    return err_at(p, p->line, col_of(p, p->pos), AD_ENOMEM, "out of memory");
}

/* Quotes a key for a message: printable, bounded, never the raw bytes of a
 * control character. */
static const char *key_show(char *out, size_t outlen, const char *k, size_t n)
{
    size_t o = 0, i = 0;
    out[o++] = '"';
    for (; i < n && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)k[i];
        out[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static const char *what_is(const ad_toml *v)
{
    if (v->type == AD_TOML_TABLE)
        return (v->flags & TF_INLINE) ? "an inline table" : "a table";
    if (v->type == AD_TOML_ARRAY)
        return (v->flags & AF_TABLES) ? "an array of tables" : "an array";
    return "a value";
}

/* ------------------------------------------------------------ encoding -- */

static int check_encoding(toml_parser *p)
{
    const unsigned char *s = (const unsigned char *)p->s;
    size_t n = p->len, i = p->pos;
    int line = 1;
    size_t bol = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == '\n') {
                line++;
                bol = i + 1;
            } else if (c == '\r') {
                if (i + 1 >= n || s[i + 1] != '\n')
                    return err_at(p, line, (int)(i - bol + 1), AD_EINVAL,
                                  "carriage return not followed by a line feed");
            } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return err_at(p, line, (int)(i - bol + 1), AD_EINVAL,
                              "control character U+%04X is not allowed", c);
            }
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f; /* UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return err_at(p, line, (int)(i - bol + 1), AD_EINVAL, "invalid UTF-8 byte 0x%02X", c);
        }
        if (n - i - 1 < need)
            return err_at(p, line, (int)(i - bol + 1), AD_EINVAL, "truncated UTF-8 sequence");
        for (size_t k = 1; k <= need; k++) {
            unsigned char d = s[i + k];
            unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
            if (d < l || d > h)
                return err_at(p, line, (int)(i - bol + 1), AD_EINVAL, "invalid UTF-8 sequence");
        }
        i += need + 1;
    }
    return AD_OK;
}

/* --------------------------------------------------------------- lexing -- */

static int peek(const toml_parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int peek_at(const toml_parser *p, size_t off)
{
    return p->pos + off < p->len ? (unsigned char)p->s[p->pos + off] : -1;
}

static void skip_ws(toml_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

/* The encoding pass guarantees a CR is followed by LF. */
static bool at_newline(const toml_parser *p)
{
    int c = peek(p);
    return c == '\n' || c == '\r';
}

static void eat_newline(toml_parser *p)
{
    if (p->s[p->pos] == '\r')
        p->pos++;
    p->pos++;
    p->line++;
    p->bol = p->pos;
}

static void skip_comment(toml_parser *p)
{
    if (peek(p) == '#')
        while (p->pos < p->len && !at_newline(p))
            p->pos++;
}

/* Whitespace, newlines and comments: what may surround array elements. */
static void skip_blank(toml_parser *p)
{
    for (;;) {
        skip_ws(p);
        skip_comment(p);
        if (!at_newline(p))
            return;
        eat_newline(p);
    }
}

static bool is_bare(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int put_utf8(ad_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return ad_buf_append(b, u, n);
}

/* At a backslash inside a basic string. */
static int read_escape(toml_parser *p, ad_buf *b)
{
    int c = peek_at(p, 1);
    char out;
    switch (c) {
    case 'b': out = '\b'; break;
    case 't': out = '\t'; break;
    case 'n': out = '\n'; break;
    case 'f': out = '\f'; break;
    case 'r': out = '\r'; break;
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case 'u':
    case 'U': {
        int digits = c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int i = 0; i < digits; i++) {
            int h = hexval(peek_at(p, 2 + (size_t)i));
            if (h < 0)
                return ERR(p, "\\%c escape needs %d hexadecimal digits", c, digits);
            cp = cp * 16 + (uint32_t)h;
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return ERR(p, "\\%c%0*X is not a Unicode scalar value", c, digits, cp);
        if (put_utf8(b, cp))
            return err_nomem(p);
        p->pos += 2 + (size_t)digits;
        return AD_OK;
    }
    default:
        if (c >= 0x20 && c < 0x7f)
            return ERR(p, "invalid escape sequence \\%c", c);
        return ERR(p, "invalid escape sequence");
    }
    if (ad_buf_putc(b, out))
        return err_nomem(p);
    p->pos += 2;
    return AD_OK;
}

/* Appends the plain bytes from pos up to (not including) the first byte that
 * is in stop, or a newline. */
static int copy_span(toml_parser *p, ad_buf *b, const char *stop)
{
    size_t start = p->pos;
    while (p->pos < p->len && !strchr(stop, p->s[p->pos]) && p->s[p->pos] != '\n' &&
           p->s[p->pos] != '\r')
        p->pos++;
    if (ad_buf_append(b, p->s + start, p->pos - start))
        return err_nomem(p);
    return AD_OK;
}

/* Reads any of the four string forms starting at pos into b (reset first).
 * Multi-line forms only when allow_ml (keys are single-line). */
static int read_string(toml_parser *p, ad_buf *b, bool allow_ml)
{
    int q = peek(p);
    bool basic = q == '"';
    int line = p->line, col = col_of(p, p->pos);
    ad_buf_reset(b);
    if (ad_buf_reserve(b, 0))
        return err_nomem(p);
    b->data[0] = '\0';
    bool ml = peek_at(p, 1) == q && peek_at(p, 2) == q;
    if (ml && !allow_ml)
        return ERR(p, "a key cannot be a multi-line string");
    if (!ml) {
        p->pos++;
        for (;;) {
            int rc = copy_span(p, b, basic ? "\"\\" : "'");
            if (rc)
                return rc;
            int c = peek(p);
            if (c < 0 || c == '\n' || c == '\r')
                return err_at(p, line, col, AD_EINVAL, "unterminated string");
            if (c == q) {
                p->pos++;
                return AD_OK;
            }
            rc = read_escape(p, b);
            if (rc)
                return rc;
        }
    }
    p->pos += 3;
    if (at_newline(p))
        eat_newline(p); /* a newline right after the delimiter is trimmed */
    for (;;) {
        int rc = copy_span(p, b, basic ? "\"\\" : "'");
        if (rc)
            return rc;
        int c = peek(p);
        if (c < 0)
            return err_at(p, line, col, AD_EINVAL, "unterminated multi-line string");
        if (c == '\n' || c == '\r') {
            eat_newline(p);
            if (ad_buf_putc(b, '\n'))
                return err_nomem(p);
        } else if (c == q) {
            size_t n = 0;
            while (peek_at(p, n) == q)
                n++;
            if (n >= 3) {
                if (n > 5)
                    return ERR(p, "too many quotes at the end of a multi-line string");
                if (ad_buf_append(b, p->s + p->pos, n - 3))
                    return err_nomem(p);
                p->pos += n;
                return AD_OK;
            }
            if (ad_buf_append(b, p->s + p->pos, n))
                return err_nomem(p);
            p->pos += n;
        } else { /* backslash in a basic string */
            size_t k = 1;
            while (peek_at(p, k) == ' ' || peek_at(p, k) == '\t')
                k++;
            int d = peek_at(p, k);
            if (d == '\n' || d == '\r') {
                /* line-ending backslash: drop all whitespace up to the next
                 * non-whitespace character */
                p->pos += k;
                for (;;) {
                    skip_ws(p);
                    if (!at_newline(p))
                        break;
                    eat_newline(p);
                }
            } else {
                rc = read_escape(p, b);
                if (rc)
                    return rc;
            }
        }
    }
}

/* Reads one simple key (bare or quoted) into p->key. */
static int read_simple_key(toml_parser *p)
{
    int c = peek(p);
    if (c == '"' || c == '\'') {
        int rc = read_string(p, &p->key, false);
        return rc;
    }
    size_t start = p->pos;
    while (p->pos < p->len && is_bare((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start) {
        if (c < 0 || c == '\n' || c == '\r')
            return ERR(p, "expected a key");
        if (c >= 0x20 && c < 0x7f)
            return ERR(p, "expected a key, found '%c'", c);
        return ERR(p, "expected a key (bare keys are ASCII letters, digits, '_' and '-')");
    }
    ad_buf_reset(&p->key);
    if (ad_buf_append(&p->key, p->s + start, p->pos - start))
        return err_nomem(p);
    return AD_OK;
}

static char *key_dup(toml_parser *p)
{
    char *k = malloc(p->key.len + 1);
    if (k) {
        if (p->key.len)
            memcpy(k, p->key.data, p->key.len);
        k[p->key.len] = '\0';
    }
    return k;
}

/* Adds an empty table or array under p->key to t and returns it. */
static int add_child(toml_parser *p, ad_toml *t, ad_toml_type type, unsigned flags, int line,
                     int col, ad_toml **out)
{
    ad_toml *v = node_new(type, line, col);
    char *k = key_dup(p);
    int rc = v && k ? table_put(t, k, p->key.len, v) : AD_ENOMEM;
    if (rc) {
        free(k);
        free(v);
        if (rc == AD_ENOMEM)
            return err_nomem(p);
        return err_at(p, line, col, rc, "too many keys in one table");
    }
    v->flags = flags;
    v->section = p->section;
    *out = v;
    return AD_OK;
}

/* ---------------------------------------------------------------- values -- */

static int parse_value(toml_parser *p, ad_toml **out, int line, int col, int depth);
static int parse_keyval(toml_parser *p, ad_toml *t, int depth);

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num2(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

/* t[0..n) is a token that starts like a date or a time. */
static int parse_datetime(toml_parser *p, const char *t, size_t n, int line, int col,
                          ad_toml **out)
{
    size_t i = 0;
    bool has_date = false, has_time = false, has_off = false;
    if (n >= 10 && all_digits(t, 4) && t[4] == '-') {
        if (!all_digits(t + 5, 2) || t[7] != '-' || !all_digits(t + 8, 2))
            goto bad;
        int y = (t[0] - '0') * 1000 + (t[1] - '0') * 100 + num2(t + 2);
        int m = num2(t + 5), d = num2(t + 8);
        if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
            return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "date %.10s is out of range", t);
        has_date = true;
        i = 10;
        if (i < n) {
            if (t[i] != 'T' && t[i] != 't' && t[i] != ' ')
                goto bad;
            if (++i == n)
                goto bad; /* a separator needs a time after it */
        }
    }
    if (!has_date || i < n) {
        if (n - i < 8 || !all_digits(t + i, 2) || t[i + 2] != ':' || !all_digits(t + i + 3, 2) ||
            t[i + 5] != ':' || !all_digits(t + i + 6, 2))
            goto bad;
        if (num2(t + i) > 23 || num2(t + i + 3) > 59 || num2(t + i + 6) > 60)
            return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "time %.8s is out of range", t + i);
        has_time = true;
        i += 8;
        if (i < n && t[i] == '.') {
            size_t f = ++i;
            while (i < n && t[i] >= '0' && t[i] <= '9')
                i++;
            if (i == f)
                goto bad;
        }
        if (has_date && i < n) {
            if (t[i] == 'Z' || t[i] == 'z') {
                i++;
            } else if (t[i] == '+' || t[i] == '-') {
                if (n - i < 6 || !all_digits(t + i + 1, 2) || t[i + 3] != ':' ||
                    !all_digits(t + i + 4, 2))
                    goto bad;
                if (num2(t + i + 1) > 23 || num2(t + i + 4) > 59)
                    return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "time offset is out of range");
                i += 6;
            } else {
                goto bad;
            }
            has_off = true;
        }
    }
    if (i != n)
        goto bad;
    ad_toml_type type = !has_time   ? AD_TOML_DATE_LOCAL
                        : !has_date ? AD_TOML_TIME_LOCAL
                        : has_off   ? AD_TOML_DATETIME
                                    : AD_TOML_DATETIME_LOCAL;
    ad_toml *v = node_new(type, line, col);
    char *s = malloc(n + 1);
    if (v == NULL || s == NULL) {
        free(v);
        free(s);
        return err_nomem(p);
    }
    memcpy(s, t, n);
    s[n] = '\0';
    if (has_date && has_time)
        s[10] = 'T';
    if (has_off && s[n - 1] == 'z')
        s[n - 1] = 'Z';
    v->u.s.s = s;
    v->u.s.len = n;
    *out = v;
    return AD_OK;
bad:
    return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "invalid date or time '%.*s'", n > 40 ? 40 : (int)n, t);
}

/* Digits of the given base with single underscores between them, from t[*i].
 * Returns the digit count, or -1 if an underscore is misplaced. */
static long scan_digits(const char *t, size_t n, size_t *i, int base)
{
    long count = 0;
    while (*i < n) {
        int c = (unsigned char)t[*i];
        int d = hexval(c);
        if (d >= 0 && d < base) {
            count++;
            (*i)++;
        } else if (c == '_') {
            int nx = *i + 1 < n ? hexval((unsigned char)t[*i + 1]) : -1;
            if (count == 0 || nx < 0 || nx >= base)
                return -1;
            (*i)++;
        } else {
            break;
        }
    }
    return count;
}

static int parse_number(toml_parser *p, const char *t, size_t n, int line, int col,
                        ad_toml **out)
{
    int show = n > 40 ? 40 : (int)n;
    size_t i = 0;
    bool neg = false, sign = false;
    if (t[0] == '+' || t[0] == '-') {
        neg = t[0] == '-';
        sign = true;
        i = 1;
    }
    ad_toml *v;
    if (n - i == 3 && (memcmp(t + i, "inf", 3) == 0 || memcmp(t + i, "nan", 3) == 0)) {
        if ((v = node_new(AD_TOML_FLOAT, line, col)) == NULL)
            return err_nomem(p);
        v->u.f = t[i] == 'i' ? (neg ? -INFINITY : INFINITY) : NAN;
        *out = v;
        return AD_OK;
    }
    int base = 10;
    if (n - i > 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
        if (sign)
            return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "a sign is not allowed on '%.*s'", show, t);
        base = t[i + 1] == 'x' ? 16 : t[i + 1] == 'o' ? 8 : 2;
        i += 2;
    }
    size_t int_start = i;
    long nd = scan_digits(t, n, &i, base);
    if (nd <= 0)
        return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "invalid number '%.*s'", show, t);
    bool is_float = false;
    if (base == 10) {
        if (t[int_start] == '0' && nd > 1)
            return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "leading zeros are not allowed in '%.*s'",
                          show, t);
        if (i < n && t[i] == '.') {
            i++;
            if (scan_digits(t, n, &i, 10) <= 0)
                return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "invalid float '%.*s'", show, t);
            is_float = true;
        }
        if (i < n && (t[i] == 'e' || t[i] == 'E')) {
            i++;
            if (i < n && (t[i] == '+' || t[i] == '-'))
                i++;
            if (scan_digits(t, n, &i, 10) <= 0)
                return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "invalid float exponent in '%.*s'", show,
                              t);
            is_float = true;
        }
    }
    if (i != n)
        return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "invalid number '%.*s'", show, t);
    if (is_float) {
        ad_buf_reset(&p->str);
        for (size_t k = 0; k < n; k++)
            if (t[k] != '_' && ad_buf_putc(&p->str, t[k]))
                return err_nomem(p);
        errno = 0;
        double d = strtod(p->str.data, NULL);
        if (errno == ERANGE && isinf(d))
            return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "float '%.*s' is out of range", show, t);
        if ((v = node_new(AD_TOML_FLOAT, line, col)) == NULL)
            return err_nomem(p);
        v->u.f = d;
        *out = v;
        return AD_OK;
    }
    uint64_t u = 0;
    for (size_t k = int_start; k < n; k++) {
        if (t[k] == '_')
            continue;
        uint64_t d = (uint64_t)hexval((unsigned char)t[k]);
        if (u > (UINT64_MAX - d) / (uint64_t)base)
            goto overflow;
        u = u * (uint64_t)base + d;
    }
    if (u > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        goto overflow;
    if ((v = node_new(AD_TOML_INTEGER, line, col)) == NULL)
        return err_nomem(p);
    v->u.i = neg ? (u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
    *out = v;
    return AD_OK;
overflow:
    return err_at(p, p->line, col_of(p, p->tok), AD_EINVAL, "integer '%.*s' does not fit in 64 bits", show, t);
}

static bool is_token_char(int c)
{
    return is_bare(c) || c == '+' || c == '.' || c == ':';
}

/* Numbers, dates and times: read the whole token, then decide. */
static int parse_scalar_token(toml_parser *p, ad_toml **out, int line, int col)
{
    size_t start = p->pos;
    p->tok = start;
    while (p->pos < p->len && is_token_char((unsigned char)p->s[p->pos]))
        p->pos++;
    size_t n = p->pos - start;
    const char *t = p->s + start;
    /* A date followed by a space and a digit is a date-time written with
     * the space separator. */
    if (n == 10 && all_digits(t, 4) && t[4] == '-' && peek(p) == ' ' && peek_at(p, 1) >= '0' &&
        peek_at(p, 1) <= '9') {
        p->pos++;
        while (p->pos < p->len && is_token_char((unsigned char)p->s[p->pos]))
            p->pos++;
        n = p->pos - start;
    }
    if (n == 0) {
        int c = peek(p);
        if (c < 0 || c == '\n' || c == '\r' || c == '#')
            return ERR(p, "expected a value");
        if (c >= 0x20 && c < 0x7f)
            return ERR(p, "expected a value, found '%c'", c);
        return ERR(p, "expected a value");
    }
    if ((n >= 5 && all_digits(t, 4) && t[4] == '-') || (n >= 3 && all_digits(t, 2) && t[2] == ':'))
        return parse_datetime(p, t, n, line, col, out);
    int c = (unsigned char)t[0];
    if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'i' || c == 'n'))
        return err_at(p, p->line, col_of(p, start), AD_EINVAL, "expected a value, found '%.*s'",
                      n > 40 ? 40 : (int)n, t);
    return parse_number(p, t, n, line, col, out);
}

static int parse_array(toml_parser *p, ad_toml **out, int line, int col, int depth)
{
    ad_toml *a = node_new(AD_TOML_ARRAY, line, col);
    if (a == NULL)
        return err_nomem(p);
    p->pos++;
    int rc;
    for (;;) {
        skip_blank(p);
        if (peek(p) == ']')
            break;
        ad_toml *v = NULL;
        rc = parse_value(p, &v, p->line, col_of(p, p->pos), depth + 1);
        if (rc)
            goto fail;
        if (array_push(a, v)) {
            ad_toml_free(v);
            rc = err_nomem(p);
            goto fail;
        }
        skip_blank(p);
        if (peek(p) == ',') {
            p->pos++;
            continue;
        }
        if (peek(p) == ']')
            break;
        rc = peek(p) < 0 ? ERR(p, "unterminated array, expected ']'")
                         : ERR(p, "expected ',' or ']' after an array element");
        goto fail;
    }
    p->pos++;
    *out = a;
    return AD_OK;
fail:
    ad_toml_free(a);
    return rc;
}

/* Freezes an inline table and the tables its dotted keys created. */
static void freeze(ad_toml *t)
{
    t->flags |= TF_INLINE;
    for (size_t i = 0; i < t->u.t.len; i++) {
        ad_toml *v = t->u.t.e[i].val;
        if (v->type == AD_TOML_TABLE && !(v->flags & TF_INLINE))
            freeze(v);
    }
}

static int parse_inline_table(toml_parser *p, ad_toml **out, int line, int col, int depth)
{
    ad_toml *t = node_new(AD_TOML_TABLE, line, col);
    if (t == NULL)
        return err_nomem(p);
    p->pos++;
    unsigned long saved = p->section;
    p->section = ++p->sections;
    int rc = AD_OK;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        goto done;
    }
    for (;;) {
        skip_ws(p);
        rc = parse_keyval(p, t, depth);
        if (rc)
            goto fail;
        skip_ws(p);
        if (peek(p) == ',') {
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') {
                rc = ERR(p, "trailing comma in an inline table");
                goto fail;
            }
            continue;
        }
        if (peek(p) == '}') {
            p->pos++;
            break;
        }
        rc = at_newline(p) ? ERR(p, "newline in an inline table, expected ',' or '}'")
             : peek(p) < 0 ? ERR(p, "unterminated inline table, expected '}'")
                           : ERR(p, "expected ',' or '}' in an inline table");
        goto fail;
    }
done:
    p->section = saved;
    freeze(t);
    *out = t;
    return AD_OK;
fail:
    p->section = saved;
    ad_toml_free(t);
    return rc;
}

/* depth: tree depth the value will have. */
static int parse_value(toml_parser *p, ad_toml **out, int line, int col, int depth)
{
    int c = peek(p);
    if (depth > TOML_MAX_TREE_DEPTH)
        return err_at(p, line, col, AD_ETOOBIG, "tables nested deeper than %d levels",
                      TOML_MAX_TREE_DEPTH);
    if (c == '"' || c == '\'') {
        int rc = read_string(p, &p->str, true);
        if (rc)
            return rc;
        ad_toml *v = node_new(AD_TOML_STRING, line, col);
        char *s = malloc(p->str.len + 1);
        if (v == NULL || s == NULL) {
            free(v);
            free(s);
            return err_nomem(p);
        }
        memcpy(s, p->str.data, p->str.len + 1);
        v->u.s.s = s;
        v->u.s.len = p->str.len;
        *out = v;
        return AD_OK;
    }
    if (c == 't' || c == 'f') {
        size_t n = c == 't' ? 4 : 5;
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, c == 't' ? "true" : "false", n) == 0 &&
            !is_token_char(peek_at(p, n))) {
            ad_toml *v = node_new(AD_TOML_BOOL, line, col);
            if (v == NULL)
                return err_nomem(p);
            v->u.b = c == 't';
            p->pos += n;
            *out = v;
            return AD_OK;
        }
        return parse_scalar_token(p, out, line, col);
    }
    if (c == '[' || c == '{') {
        if (p->nesting >= AD_TOML_MAX_NESTING)
            return err_at(p, p->line, col_of(p, p->pos), AD_ETOOBIG,
                          "arrays and inline tables nested deeper than %d levels",
                          AD_TOML_MAX_NESTING);
        p->nesting++;
        int rc = c == '[' ? parse_array(p, out, line, col, depth)
                          : parse_inline_table(p, out, line, col, depth);
        p->nesting--;
        return rc;
    }
    return parse_scalar_token(p, out, line, col);
}

/* key = value into table t (the current section's table, or an inline
 * table), t being at tree depth `depth`. */
static int parse_keyval(toml_parser *p, ad_toml *t, int depth)
{
    char shown[80];
    int rc, line, col;
    for (;;) {
        line = p->line;
        col = col_of(p, p->pos);
        if ((rc = read_simple_key(p)))
            return rc;
        skip_ws(p);
        if (peek(p) != '.')
            break;
        p->pos++;
        skip_ws(p);
        if (++depth > TOML_MAX_TREE_DEPTH)
            return err_at(p, line, col, AD_ETOOBIG, "tables nested deeper than %d levels",
                          TOML_MAX_TREE_DEPTH);
        ad_toml *v = table_find(t, p->key.data, p->key.len);
        if (v == NULL) {
            if ((rc = add_child(p, t, AD_TOML_TABLE, TF_DOTTED, line, col, &v)))
                return rc;
        } else if (v->type == AD_TOML_TABLE && !(v->flags & (TF_INLINE | TF_HEADER)) &&
                   (!(v->flags & TF_DOTTED) || v->section == p->section)) {
            v->flags |= TF_DOTTED;
            v->section = p->section;
        } else {
            return err_at(p, line, col, AD_EINVAL, "cannot add keys to %s (%s) with a dotted key",
                          key_show(shown, sizeof shown, p->key.data, p->key.len), what_is(v));
        }
        t = v;
    }
    if (table_find(t, p->key.data, p->key.len))
        return err_at(p, line, col, AD_EINVAL, "duplicate key %s",
                      key_show(shown, sizeof shown, p->key.data, p->key.len));
    char *k = key_dup(p);
    if (k == NULL)
        return err_nomem(p);
    size_t klen = p->key.len;
    if (peek(p) != '=') {
        free(k);
        return ERR(p, "expected '=' after a key");
    }
    p->pos++;
    skip_ws(p);
    ad_toml *v = NULL;
    if ((rc = parse_value(p, &v, line, col, depth + 1))) {
        free(k);
        return rc;
    }
    if ((rc = table_put(t, k, klen, v))) {
        free(k);
        ad_toml_free(v);
        return rc == AD_ENOMEM ? err_nomem(p) : err_at(p, line, col, rc, "too many keys");
    }
    return AD_OK;
}

/* --------------------------------------------------------------- headers -- */

/* At '[': reads [a.b.c] or [[a.b.c]] and returns the table that the
 * following key/value pairs go into, and its tree depth. */
static int parse_header(toml_parser *p, ad_toml *root, ad_toml **cur, int *cur_depth)
{
    char shown[80];
    bool aot = peek_at(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    skip_ws(p);
    ad_toml *t = root;
    int depth = 0, rc, line, col;
    for (;;) {
        line = p->line;
        col = col_of(p, p->pos);
        if ((rc = read_simple_key(p)))
            return rc;
        skip_ws(p);
        if (++depth > TOML_MAX_TREE_DEPTH)
            return err_at(p, line, col, AD_ETOOBIG, "tables nested deeper than %d levels",
                          TOML_MAX_TREE_DEPTH);
        if (peek(p) != '.')
            break;
        p->pos++;
        skip_ws(p);
        ad_toml *v = table_find(t, p->key.data, p->key.len);
        if (v == NULL) {
            if ((rc = add_child(p, t, AD_TOML_TABLE, 0, line, col, &v)))
                return rc;
        } else if (v->type == AD_TOML_ARRAY && (v->flags & AF_TABLES)) {
            v = v->u.a.v[v->u.a.len - 1];
            depth++;
        } else if (v->type != AD_TOML_TABLE || (v->flags & TF_INLINE)) {
            return err_at(p, line, col, AD_EINVAL, "cannot define a table inside %s (%s)",
                          key_show(shown, sizeof shown, p->key.data, p->key.len), what_is(v));
        }
        t = v;
    }
    if (peek(p) != ']' || (aot && peek_at(p, 1) != ']'))
        return ERR(p, aot ? "expected ']]' to close the array of tables header"
                          : "expected ']' to close the table header");
    p->pos += aot ? 2 : 1;
    p->section = ++p->sections;
    ad_toml *v = table_find(t, p->key.data, p->key.len);
    if (!aot) {
        if (v == NULL) {
            if ((rc = add_child(p, t, AD_TOML_TABLE, TF_HEADER, line, col, &v)))
                return rc;
        } else if (v->type == AD_TOML_TABLE && !(v->flags & (TF_HEADER | TF_DOTTED | TF_INLINE))) {
            v->flags |= TF_HEADER;
            v->line = line;
            v->col = col;
        } else {
            return err_at(p, line, col, AD_EINVAL, "%s is already defined as %s",
                          key_show(shown, sizeof shown, p->key.data, p->key.len), what_is(v));
        }
        *cur = v;
        *cur_depth = depth;
        return AD_OK;
    }
    if (v == NULL) {
        if ((rc = add_child(p, t, AD_TOML_ARRAY, AF_TABLES, line, col, &v)))
            return rc;
    } else if (v->type != AD_TOML_ARRAY || !(v->flags & AF_TABLES)) {
        return err_at(p, line, col, AD_EINVAL, "%s is already defined as %s",
                      key_show(shown, sizeof shown, p->key.data, p->key.len), what_is(v));
    }
    ad_toml *e = node_new(AD_TOML_TABLE, line, col);
    if (e == NULL || array_push(v, e)) {
        free(e);
        return err_nomem(p);
    }
    e->flags = TF_HEADER;
    e->section = p->section;
    *cur = e;
    *cur_depth = depth + 1;
    return AD_OK;
}

/* ------------------------------------------------------------------ API -- */

static int parse_document(toml_parser *p, ad_toml *root)
{
    ad_toml *cur = root;
    int cur_depth = 0, rc;
    for (;;) {
        skip_ws(p);
        int c = peek(p);
        if (c < 0)
            return AD_OK;
        if (c == '\n' || c == '\r') {
            eat_newline(p);
            continue;
        }
        if (c == '#') {
            skip_comment(p);
            continue;
        }
        if (c == '[')
            rc = parse_header(p, root, &cur, &cur_depth);
        else
            rc = parse_keyval(p, cur, cur_depth);
        if (rc)
            return rc;
        skip_ws(p);
        skip_comment(p);
        if (peek(p) >= 0 && !at_newline(p))
            return ERR(p, c == '[' ? "expected a newline after the table header"
                                   : "expected a newline after the value");
    }
}

int ad_toml_parse(const char *data, size_t len, ad_toml **out, char *err, size_t errlen)
{
    toml_parser p = {0};
    p.s = data;
    p.len = data ? len : 0;
    p.line = 1;
    p.err = err;
    p.errlen = errlen;
    p.key = (ad_buf)AD_BUF_INIT;
    p.str = (ad_buf)AD_BUF_INIT;
    *out = NULL;
    if (p.len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        p.pos = 3;
    int rc = check_encoding(&p);
    if (rc)
        return rc;
    ad_toml *root = node_new(AD_TOML_TABLE, 1, 1);
    if (root == NULL) {
        ad_errf(err, errlen, "line 1, column 1: out of memory");
        return AD_ENOMEM;
    }
    root->flags = TF_HEADER;
    rc = parse_document(&p, root);
    ad_buf_free(&p.key);
    ad_buf_free(&p.str);
    if (rc) {
        ad_toml_free(root);
        return rc;
    }
    *out = root;
    return AD_OK;
}

ad_toml_type ad_toml_type_of(const ad_toml *v)
{
    return v ? v->type : AD_TOML_TABLE;
}

const char *ad_toml_type_name(ad_toml_type t)
{
    switch (t) {
    case AD_TOML_TABLE: return "table";
    case AD_TOML_ARRAY: return "array";
    case AD_TOML_STRING: return "string";
    case AD_TOML_INTEGER: return "integer";
    case AD_TOML_FLOAT: return "float";
    case AD_TOML_BOOL: return "bool";
    case AD_TOML_DATETIME: return "datetime";
    case AD_TOML_DATETIME_LOCAL: return "datetime-local";
    case AD_TOML_DATE_LOCAL: return "date-local";
    case AD_TOML_TIME_LOCAL: return "time-local";
    }
    return "unknown";
}

int ad_toml_line(const ad_toml *v)
{
    return v ? v->line : 0;
}

int ad_toml_column(const ad_toml *v)
{
    return v ? v->col : 0;
}

size_t ad_toml_len(const ad_toml *v)
{
    if (v == NULL)
        return 0;
    if (v->type == AD_TOML_TABLE)
        return v->u.t.len;
    if (v->type == AD_TOML_ARRAY)
        return v->u.a.len;
    return 0;
}

const char *ad_toml_key_at(const ad_toml *t, size_t i)
{
    if (t == NULL || t->type != AD_TOML_TABLE || i >= t->u.t.len)
        return NULL;
    return t->u.t.e[i].key;
}

size_t ad_toml_key_len(const ad_toml *t, size_t i)
{
    if (t == NULL || t->type != AD_TOML_TABLE || i >= t->u.t.len)
        return 0;
    return t->u.t.e[i].klen;
}

ad_toml *ad_toml_at(const ad_toml *v, size_t i)
{
    if (v == NULL)
        return NULL;
    if (v->type == AD_TOML_TABLE)
        return i < v->u.t.len ? v->u.t.e[i].val : NULL;
    if (v->type == AD_TOML_ARRAY)
        return i < v->u.a.len ? v->u.a.v[i] : NULL;
    return NULL;
}

ad_toml *ad_toml_get(const ad_toml *t, const char *key)
{
    if (t == NULL || key == NULL || t->type != AD_TOML_TABLE)
        return NULL;
    return table_find(t, key, strlen(key));
}

const char *ad_toml_string(const ad_toml *v, size_t *len)
{
    if (v == NULL || v->type != AD_TOML_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->u.s.len;
    return v->u.s.s;
}

int64_t ad_toml_int(const ad_toml *v)
{
    return v && v->type == AD_TOML_INTEGER ? v->u.i : 0;
}

double ad_toml_float(const ad_toml *v)
{
    return v && v->type == AD_TOML_FLOAT ? v->u.f : 0.0;
}

bool ad_toml_bool(const ad_toml *v)
{
    return v && v->type == AD_TOML_BOOL ? v->u.b : false;
}

const char *ad_toml_datetime(const ad_toml *v)
{
    if (v == NULL || v->type < AD_TOML_DATETIME || v->type > AD_TOML_TIME_LOCAL)
        return NULL;
    return v->u.s.s;
}

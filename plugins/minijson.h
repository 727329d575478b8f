/*
 * minijson.h -- a tiny, self-contained JSON scanner for agentd plugins.
 *
 * Plugins link nothing beyond libc (they are built with -Wl,-z,defs), so the
 * shipped calculator plugins read their integer arguments with this header
 * instead of a JSON library. It is deliberately small: mj_get_int64() walks
 * one JSON object, skipping any other keys and any nested values, decodes
 * key escapes (so "\u0061" matches "a"), and converts the value of the
 * wanted key to an exact int64. Duplicate keys: the last one wins, as in the
 * host's parser.
 *
 * Numbers follow the host's schema rule: "integer" accepts whole-valued
 * numbers, so 3, 3.0, 30e-1 and 0.3e1 all read as 3; 2.5 is MJ_NOT_INT and
 * anything outside int64 is MJ_RANGE. Nothing here allocates; nesting depth
 * is bounded by MJ_MAX_DEPTH; every function is static, so each plugin gets
 * a private copy and the header can be shared freely.
 */
#ifndef AGENTD_MINIJSON_H
#define AGENTD_MINIJSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MJ_MAX_DEPTH 64

enum {
    MJ_OK = 0,
    MJ_MISSING = 1,  /* the object has no such key */
    MJ_BAD = -1,     /* not a well-formed JSON object */
    MJ_NOT_INT = -2, /* the value is not a whole number */
    MJ_RANGE = -3    /* the value does not fit in int64 */
};

typedef struct mj_scan {
    const char *p, *end;
} mj_scan;

static void mj_ws(mj_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int mj_hex4(mj_scan *s, unsigned *out)
{
    unsigned v = 0;
    if (s->end - s->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = *s->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Reads a string at s->p (which is at the opening quote). When buf is not
 * NULL the decoded text goes there; *fits is cleared if it did not fit. */
static int mj_string(mj_scan *s, char *buf, size_t cap, size_t *len, int *fits)
{
    size_t n = 0;
    *fits = 1;
    if (s->p >= s->end || *s->p != '"')
        return -1;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        unsigned cp;
        if (c == '"') {
            *len = n;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            /* a raw byte: UTF-8 passes through unchanged */
            if (buf && n < cap)
                buf[n] = (char)c;
            else
                *fits = 0;
            n++;
            continue;
        }
        if (s->p >= s->end)
            return -1;
        char e = *s->p++;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (mj_hex4(s, &cp) != 0)
                return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF && s->end - s->p >= 6 && s->p[0] == '\\' &&
                s->p[1] == 'u') {
                mj_scan t = {s->p + 2, s->end};
                unsigned lo;
                if (mj_hex4(&t, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s->p = t.p;
                }
            }
            break;
        default: return -1;
        }
        /* Encode cp as UTF-8 (lone surrogates are encoded as-is: they only
         * ever need to compare unequal to a plain key). */
        unsigned char u[4];
        size_t k;
        if (cp < 0x80) {
            u[0] = (unsigned char)cp;
            k = 1;
        } else if (cp < 0x800) {
            u[0] = (unsigned char)(0xC0 | (cp >> 6));
            u[1] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (unsigned char)(0xE0 | (cp >> 12));
            u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            u[0] = (unsigned char)(0xF0 | (cp >> 18));
            u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 4;
        }
        for (size_t i = 0; i < k; i++, n++) {
            if (buf && n < cap)
                buf[n] = (char)u[i];
            else
                *fits = 0;
        }
    }
    return -1;
}

static int mj_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks the number grammar at s->p and converts it to an exact int64. */
static int mj_number(mj_scan *s, int64_t *out)
{
    const char *p = s->p, *end = s->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const char *i0 = p;
    if (p < end && *p == '0')
        p++;
    else
        while (p < end && mj_digit(*p))
            p++;
    const char *i1 = p;
    if (i1 == i0)
        return MJ_BAD;
    const char *f0 = p, *f1 = p;
    if (p < end && *p == '.') {
        f0 = ++p;
        while (p < end && mj_digit(*p))
            p++;
        f1 = p;
        if (f1 == f0)
            return MJ_BAD;
    }
    long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || !mj_digit(*p))
            return MJ_BAD;
        while (p < end && mj_digit(*p)) {
            if (exp < 100000) /* saturate: far beyond any int64 anyway */
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp = -exp;
    }
    s->p = p;

    /* The digits are int part ++ fraction; value = digits * 10^(exp - nfrac). */
    size_t ni = (size_t)(i1 - i0), nf = (size_t)(f1 - f0), nd = ni + nf;
#define MJ_D(k) ((k) < ni ? i0[(k)] : f0[(k) - ni])
    size_t first = 0, last = nd;
    while (first < nd && MJ_D(first) == '0')
        first++;
    if (first == nd) {
        *out = 0;
        return MJ_OK;
    }
    while (MJ_D(last - 1) == '0')
        last--;
    long e10 = exp - (long)nf + (long)(nd - last); /* trailing zeros folded into e10 */
    if (e10 < 0)
        return MJ_NOT_INT;
    if ((long)(last - first) + e10 > 19)
        return MJ_RANGE;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t k = first; k < last; k++) {
        unsigned d = (unsigned)(MJ_D(k) - '0');
        if (v > (lim - d) / 10)
            return MJ_RANGE;
        v = v * 10 + d;
    }
#undef MJ_D
    for (long k = 0; k < e10; k++) {
        if (v > lim / 10)
            return MJ_RANGE;
        v *= 10;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return MJ_OK;
}

static int mj_skip(mj_scan *s, int depth);

static int mj_skip_container(mj_scan *s, int depth, char close)
{
    if (depth >= MJ_MAX_DEPTH)
        return -1;
    s->p++;
    mj_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            size_t n;
            int fits;
            mj_ws(s);
            if (mj_string(s, NULL, 0, &n, &fits) != 0)
                return -1;
            mj_ws(s);
            if (s->p >= s->end || *s->p++ != ':')
                return -1;
        }
        if (mj_skip(s, depth + 1) != 0)
            return -1;
        mj_ws(s);
        if (s->p >= s->end)
            return -1;
        char c = *s->p++;
        if (c == close)
            return 0;
        if (c != ',')
            return -1;
    }
}

/* Skips one value of any kind. */
static int mj_skip(mj_scan *s, int depth)
{
    mj_ws(s);
    if (s->p >= s->end)
        return -1;
    char c = *s->p;
    if (c == '{')
        return mj_skip_container(s, depth, '}');
    if (c == '[')
        return mj_skip_container(s, depth, ']');
    if (c == '"') {
        size_t n;
        int fits;
        return mj_string(s, NULL, 0, &n, &fits);
    }
    if (c == '-' || mj_digit(c)) {
        int64_t ignored;
        int rc = mj_number(s, &ignored);
        return rc == MJ_BAD ? -1 : 0;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, lits[i], n) == 0) {
            s->p += n;
            return 0;
        }
    }
    return -1;
}

/* Finds `key` in the JSON object json[0..len) and reads its value as int64. */
static int mj_get_int64(const char *json, size_t len, const char *key, int64_t *out)
{
    mj_scan s = {json, json + len};
    size_t klen = strlen(key);
    int result = MJ_MISSING;
    mj_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return MJ_BAD;
    s.p++;
    mj_ws(&s);
    if (s.p < s.end && *s.p == '}')
        return MJ_MISSING;
    for (;;) {
        char name[128];
        size_t n;
        int fits;
        mj_ws(&s);
        if (mj_string(&s, name, sizeof name, &n, &fits) != 0)
            return MJ_BAD;
        mj_ws(&s);
        if (s.p >= s.end || *s.p++ != ':')
            return MJ_BAD;
        mj_ws(&s);
        if (fits && n == klen && memcmp(name, key, n) == 0) {
            if (s.p < s.end && (*s.p == '-' || mj_digit(*s.p))) {
                result = mj_number(&s, out);
                /* On MJ_NOT_INT/MJ_RANGE keep scanning: a later duplicate
                 * key would win. */
                if (result == MJ_BAD)
                    return MJ_BAD;
            } else {
                if (mj_skip(&s, 1) != 0)
                    return MJ_BAD;
                result = MJ_NOT_INT;
            }
        } else if (mj_skip(&s, 1) != 0) {
            return MJ_BAD;
        }
        mj_ws(&s);
        if (s.p >= s.end)
            return MJ_BAD;
        char c = *s.p++;
        if (c == '}')
            break;
        if (c != ',')
            return MJ_BAD;
    }
    mj_ws(&s);
    return s.p == s.end ? result : MJ_BAD;
}

#endif /* AGENTD_MINIJSON_H */

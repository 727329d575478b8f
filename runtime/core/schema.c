/*
 * schema.c -- a JSON Schema subset validator on json-c (see schema.h).
 *
 * Tool arguments come from a model, so every call is checked against the
 * tool's parameter schema before a plugin sees it. The validator walks the
 * schema and the value together, carrying a JSONPath-like location ("$",
 * "$.a", "$.list[2]", "$[\"odd key\"]") so that the one message it reports
 * tells the model exactly what to fix; it stops at the first violation.
 *
 * Invariants:
 * - Both trees are only read. In particular nothing here calls
 *   json_object_to_json_string() on the schema (json-c caches the text inside
 *   the object, a write), because worker threads validate against the same
 *   registry schema concurrently; to print a schema part we print a private
 *   deep copy.
 * - Keywords whose value has the wrong JSON type are ignored by the
 *   validator (ad_schema_check reports them to plugin authors instead), so a
 *   sloppy schema can never crash it.
 * - Recursion is bounded by AD_SCHEMA_MAX_DEPTH (schema nesting and value
 *   nesting walk together).
 * - Numbers: json-c stores integers as int64 or uint64 (larger literals are
 *   clamped by the parser) and everything else as double. "integer" accepts
 *   doubles with an integral value; comparisons between integers are exact,
 *   mixed ones use long double.
 */
#include "core/schema.h"

#include "base/buf.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define AD_SCHEMA_MAX_DEPTH 64

/* ---- small json-c helpers -------------------------------------------- */

static json_object *get_key(const json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static bool has_key(const json_object *o, const char *key)
{
    return o != NULL && json_object_is_type(o, json_type_object) &&
           json_object_object_get_ex(o, key, NULL);
}

static const char *str_of(const json_object *o)
{
    /* json_object_get_string() is not const-qualified, but for a string
     * object it only returns the stored text. */
    return json_object_get_string((json_object *)o);
}

static bool is_number(const json_object *o)
{
    return o != NULL &&
           (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_double));
}

/* An exact view of a JSON number. */
typedef struct num {
    enum { NUM_I64, NUM_U64, NUM_DBL } kind;
    int64_t i;
    uint64_t u;
    double d;
} num;

static num num_of(const json_object *o)
{
    num n = {NUM_DBL, 0, 0, 0.0};
    if (json_object_is_type(o, json_type_int)) {
        int64_t i = json_object_get_int64(o);
        if (i == INT64_MAX) {
            /* Either exactly INT64_MAX or a uint64 clamped by get_int64. */
            n.kind = NUM_U64;
            n.u = json_object_get_uint64(o);
        } else {
            n.kind = NUM_I64;
            n.i = i;
        }
    } else {
        n.d = json_object_get_double(o);
    }
    return n;
}

static long double num_ld(num n)
{
    switch (n.kind) {
    case NUM_I64: return (long double)n.i;
    case NUM_U64: return (long double)n.u;
    default: return (long double)n.d;
    }
}

/* -1, 0, 1 like strcmp. */
static int num_cmp(num a, num b)
{
    if (a.kind != NUM_DBL && b.kind != NUM_DBL) {
        if (a.kind == NUM_I64 && b.kind == NUM_I64)
            return a.i < b.i ? -1 : a.i > b.i;
        if (a.kind == NUM_U64 && b.kind == NUM_U64)
            return a.u < b.u ? -1 : a.u > b.u;
        if (a.kind == NUM_I64) /* b is u64 >= INT64_MAX */
            return a.i < 0 || (uint64_t)a.i < b.u ? -1 : (uint64_t)a.i > b.u;
        return -num_cmp(b, a);
    }
    long double x = num_ld(a), y = num_ld(b);
    return x < y ? -1 : x > y;
}

static bool num_is_integral(const json_object *o)
{
    if (json_object_is_type(o, json_type_int))
        return true;
    if (!json_object_is_type(o, json_type_double))
        return false;
    double d = json_object_get_double(o);
    return isfinite(d) && floor(d) == d;
}

/* Shortest decimal text that reads back as the same number. */
static void num_fmt(const json_object *o, char *out, size_t outlen)
{
    num n = num_of(o);
    if (n.kind == NUM_I64) {
        snprintf(out, outlen, "%" PRId64, n.i);
    } else if (n.kind == NUM_U64) {
        snprintf(out, outlen, "%" PRIu64, n.u);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, outlen, "%.*g", prec, n.d);
            if (strtod(out, NULL) == n.d)
                break;
        }
    }
}

/* JSON text of a schema part, via a private copy (see the invariants). */
static void json_fmt(const json_object *o, char *out, size_t outlen)
{
    json_object *copy = NULL;
    if (o == NULL) {
        snprintf(out, outlen, "null");
        return;
    }
    if (json_object_deep_copy((json_object *)o, &copy, NULL) != 0 || copy == NULL) {
        snprintf(out, outlen, "(value)");
        return;
    }
    const char *s = json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    /* Keep messages short: a long enum is cut with an ellipsis. */
    size_t n = strlen(s);
    if (n + 1 > outlen && outlen > 4)
        snprintf(out, outlen, "%.*s...", (int)(outlen - 4), s);
    else
        snprintf(out, outlen, "%s", s);
    json_object_put(copy);
}

static const char *type_name(const json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "boolean";
    case json_type_int: return "integer";
    case json_type_double: return num_is_integral(v) ? "integer" : "number";
    case json_type_object: return "object";
    case json_type_array: return "array";
    case json_type_string: return "string";
    }
    return "unknown";
}

static bool known_type(const char *t)
{
    static const char *const names[] = {"null",   "boolean", "integer", "number",
                                        "object", "array",   "string"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t, names[i]) == 0)
            return true;
    return false;
}

static bool type_matches(const char *t, const json_object *v)
{
    enum json_type jt = json_object_get_type(v);
    if (strcmp(t, "integer") == 0)
        return num_is_integral(v);
    if (strcmp(t, "number") == 0)
        return jt == json_type_int || jt == json_type_double;
    if (strcmp(t, "null") == 0)
        return jt == json_type_null;
    if (strcmp(t, "boolean") == 0)
        return jt == json_type_boolean;
    if (strcmp(t, "object") == 0)
        return jt == json_type_object;
    if (strcmp(t, "array") == 0)
        return jt == json_type_array;
    if (strcmp(t, "string") == 0)
        return jt == json_type_string;
    return false;
}

/* JSON equality: numbers by value (1 equals 1.0), objects by key set. */
static bool json_equal(const json_object *a, const json_object *b, int depth)
{
    if (depth > AD_SCHEMA_MAX_DEPTH)
        return false;
    if (is_number(a) && is_number(b))
        return num_cmp(num_of(a), num_of(b)) == 0;
    enum json_type ta = json_object_get_type(a), tb = json_object_get_type(b);
    if (ta != tb)
        return false;
    switch (ta) {
    case json_type_null: return true;
    case json_type_boolean: return json_object_get_boolean(a) == json_object_get_boolean(b);
    case json_type_string: {
        int la = json_object_get_string_len(a), lb = json_object_get_string_len(b);
        return la == lb && memcmp(str_of(a), str_of(b), (size_t)la) == 0;
    }
    case json_type_array: {
        size_t n = json_object_array_length(a);
        if (n != json_object_array_length(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!json_equal(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i),
                            depth + 1))
                return false;
        return true;
    }
    case json_type_object: {
        if (json_object_object_length(a) != json_object_object_length(b))
            return false;
        json_object_object_foreach((json_object *)a, k, va)
        {
            json_object *vb = NULL;
            if (!json_object_object_get_ex(b, k, &vb) || !json_equal(va, vb, depth + 1))
                return false;
        }
        return true;
    }
    default: return false;
    }
}

/* Code points of a UTF-8 string (continuation bytes are not counted). */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/* ---- paths ------------------------------------------------------------ */

static bool plain_key(const char *k)
{
    if (*k == '\0' || (*k >= '0' && *k <= '9'))
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '-'))
            return false;
    return true;
}

/* Appends ".key" or ["key"] to path; returns the old length to restore. */
static size_t path_push_key(ad_buf *path, const char *k)
{
    size_t old = path->len;
    int rc;
    if (plain_key(k)) {
        rc = ad_buf_printf(path, ".%s", k);
    } else {
        rc = ad_buf_puts(path, "[\"");
        for (const char *p = k; rc == 0 && *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\')
                rc = ad_buf_printf(path, "\\%c", c);
            else if (c < 0x20)
                rc = ad_buf_printf(path, "\\u%04x", c);
            else
                rc = ad_buf_putc(path, (char)c);
        }
        if (rc == 0)
            rc = ad_buf_puts(path, "\"]");
    }
    (void)rc; /* on ENOMEM the path is merely shorter */
    return old;
}

static size_t path_push_idx(ad_buf *path, size_t i)
{
    size_t old = path->len;
    (void)ad_buf_printf(path, "[%zu]", i);
    return old;
}

static void path_pop(ad_buf *path, size_t old)
{
    if (path->data && old <= path->len) {
        path->len = old;
        path->data[old] = '\0';
    }
}

/* The path for a message: very deep paths keep only their last part. */
static const char *path_text(const ad_buf *path, const char **ellipsis)
{
    const size_t keep = 120;
    *ellipsis = "";
    if (path->data == NULL)
        return "$";
    if (path->len <= keep)
        return path->data;
    *ellipsis = "...";
    return path->data + path->len - keep;
}

/* ---- validation --------------------------------------------------------- */

typedef struct vctx {
    ad_buf path;
    char *err;
    size_t errlen;
} vctx;

static int fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(vctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *dots, *p = path_text(&c->path, &dots);
    ad_errf(c->err, c->errlen, "%s%s: %s", dots, p, msg);
    return AD_EINVAL;
}

static int validate(vctx *c, const json_object *s, const json_object *v, int depth);

static int check_type(vctx *c, const json_object *t, const json_object *v)
{
    if (json_object_is_type(t, json_type_string)) {
        if (type_matches(str_of(t), v))
            return 0;
        return fail(c, "expected %s, got %s", str_of(t), type_name(v));
    }
    if (!json_object_is_type(t, json_type_array))
        return 0;
    size_t n = json_object_array_length(t);
    ad_buf want = AD_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        json_object *ti = json_object_array_get_idx(t, i);
        if (!json_object_is_type(ti, json_type_string))
            continue;
        if (type_matches(str_of(ti), v)) {
            ad_buf_free(&want);
            return 0;
        }
        (void)ad_buf_printf(&want, "%s%s", want.len ? " or " : "", str_of(ti));
    }
    if (want.len == 0) { /* no usable names: nothing to enforce */
        ad_buf_free(&want);
        return 0;
    }
    int rc = fail(c, "expected %s, got %s", want.data, type_name(v));
    ad_buf_free(&want);
    return rc;
}

static int check_number(vctx *c, const json_object *s, const json_object *v)
{
    char vb[64], bb[64];
    json_object *k;
    num x = num_of(v);
    bool excl_min = false, excl_max = false;
    /* Draft 4 spelled exclusivity as booleans next to minimum/maximum. */
    k = get_key(s, "exclusiveMinimum");
    if (k && json_object_is_type(k, json_type_boolean))
        excl_min = json_object_get_boolean(k);
    k = get_key(s, "exclusiveMaximum");
    if (k && json_object_is_type(k, json_type_boolean))
        excl_max = json_object_get_boolean(k);

    k = get_key(s, "minimum");
    if (is_number(k)) {
        int r = num_cmp(x, num_of(k));
        if (r < 0 || (excl_min && r == 0)) {
            num_fmt(v, vb, sizeof vb);
            num_fmt(k, bb, sizeof bb);
            return fail(c, "%s is %s %s", vb, excl_min ? "not greater than" : "less than minimum",
                        bb);
        }
    }
    k = get_key(s, "maximum");
    if (is_number(k)) {
        int r = num_cmp(x, num_of(k));
        if (r > 0 || (excl_max && r == 0)) {
            num_fmt(v, vb, sizeof vb);
            num_fmt(k, bb, sizeof bb);
            return fail(c, "%s is %s %s", vb, excl_max ? "not less than" : "greater than maximum",
                        bb);
        }
    }
    k = get_key(s, "exclusiveMinimum");
    if (is_number(k) && num_cmp(x, num_of(k)) <= 0) {
        num_fmt(v, vb, sizeof vb);
        num_fmt(k, bb, sizeof bb);
        return fail(c, "%s is not greater than %s", vb, bb);
    }
    k = get_key(s, "exclusiveMaximum");
    if (is_number(k) && num_cmp(x, num_of(k)) >= 0) {
        num_fmt(v, vb, sizeof vb);
        num_fmt(k, bb, sizeof bb);
        return fail(c, "%s is not less than %s", vb, bb);
    }
    return 0;
}

/* A non-negative integer keyword such as minLength; -1 when absent/unusable. */
static int64_t count_kw(const json_object *s, const char *key)
{
    json_object *k = get_key(s, key);
    if (!is_number(k) || !num_is_integral(k))
        return -1;
    num n = num_of(k);
    if (n.kind == NUM_U64)
        return INT64_MAX;
    if (n.kind == NUM_DBL)
        return n.d < 0 ? -1 : n.d >= 9.2e18 ? INT64_MAX : (int64_t)n.d;
    return n.i < 0 ? -1 : n.i;
}

static int check_string(vctx *c, const json_object *s, const json_object *v)
{
    size_t chars = utf8_chars(str_of(v), (size_t)json_object_get_string_len(v));
    int64_t lo = count_kw(s, "minLength"), hi = count_kw(s, "maxLength");
    if (lo >= 0 && (uint64_t)chars < (uint64_t)lo)
        return fail(c, "string has %zu characters, fewer than minLength %" PRId64, chars, lo);
    if (hi >= 0 && (uint64_t)chars > (uint64_t)hi)
        return fail(c, "string has %zu characters, more than maxLength %" PRId64, chars, hi);
    return 0;
}

static int check_array(vctx *c, const json_object *s, const json_object *v, int depth)
{
    size_t n = json_object_array_length(v);
    int64_t lo = count_kw(s, "minItems"), hi = count_kw(s, "maxItems");
    if (lo >= 0 && (uint64_t)n < (uint64_t)lo)
        return fail(c, "array has %zu items, fewer than minItems %" PRId64, n, lo);
    if (hi >= 0 && (uint64_t)n > (uint64_t)hi)
        return fail(c, "array has %zu items, more than maxItems %" PRId64, n, hi);
    json_object *items = get_key(s, "items");
    if (items == NULL)
        return 0;
    bool tuple = json_object_is_type(items, json_type_array);
    size_t tn = tuple ? json_object_array_length(items) : 0;
    for (size_t i = 0; i < n; i++) {
        const json_object *is = tuple ? (i < tn ? json_object_array_get_idx(items, i) : NULL) : items;
        if (is == NULL)
            break;
        size_t old = path_push_idx(&c->path, i);
        int rc = validate(c, is, json_object_array_get_idx(v, i), depth + 1);
        path_pop(&c->path, old);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_object(vctx *c, const json_object *s, const json_object *v, int depth)
{
    json_object *props = get_key(s, "properties");
    if (props && !json_object_is_type(props, json_type_object))
        props = NULL;
    json_object *req = get_key(s, "required");
    if (req && json_object_is_type(req, json_type_array)) {
        size_t n = json_object_array_length(req);
        for (size_t i = 0; i < n; i++) {
            json_object *r = json_object_array_get_idx(req, i);
            if (json_object_is_type(r, json_type_string) && !has_key(v, str_of(r)))
                return fail(c, "missing required property \"%s\"", str_of(r));
        }
    }
    json_object *addl = get_key(s, "additionalProperties");
    json_object_object_foreach((json_object *)v, key, val)
    {
        json_object *ps = NULL;
        if (props && json_object_object_get_ex(props, key, &ps)) {
            size_t old = path_push_key(&c->path, key);
            int rc = validate(c, ps, val, depth + 1);
            path_pop(&c->path, old);
            if (rc)
                return rc;
        } else if (addl && json_object_is_type(addl, json_type_boolean)) {
            if (!json_object_get_boolean(addl))
                return fail(c, "unexpected property \"%s\"", key);
        } else if (addl && json_object_is_type(addl, json_type_object)) {
            size_t old = path_push_key(&c->path, key);
            int rc = validate(c, addl, val, depth + 1);
            path_pop(&c->path, old);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* anyOf / oneOf / allOf. Branch failures are reported through a scratch
 * buffer so that the message of interest can be chosen afterwards. */
static int check_combinators(vctx *c, const json_object *s, const json_object *v, int depth)
{
    json_object *k = get_key(s, "allOf");
    if (k && json_object_is_type(k, json_type_array)) {
        size_t n = json_object_array_length(k);
        for (size_t i = 0; i < n; i++) {
            int rc = validate(c, json_object_array_get_idx(k, i), v, depth + 1);
            if (rc)
                return rc;
        }
    }
    static const char *const kws[] = {"anyOf", "oneOf"};
    for (int w = 0; w < 2; w++) {
        k = get_key(s, kws[w]);
        if (k == NULL || !json_object_is_type(k, json_type_array))
            continue;
        size_t n = json_object_array_length(k), matched = 0;
        char first[512] = "";
        char *saved_err = c->err;
        size_t saved_len = c->errlen;
        for (size_t i = 0; i < n; i++) {
            char scratch[512] = "";
            c->err = scratch;
            c->errlen = sizeof scratch;
            int rc = validate(c, json_object_array_get_idx(k, i), v, depth + 1);
            if (rc == 0)
                matched++;
            else if (first[0] == '\0')
                snprintf(first, sizeof first, "%s", scratch);
            if (w == 0 && matched)
                break;
        }
        c->err = saved_err;
        c->errlen = saved_len;
        if (n == 0)
            continue;
        if (w == 0 && matched == 0)
            return fail(c, "value matches none of the anyOf alternatives (first: %s)", first);
        if (w == 1 && matched == 0)
            return fail(c, "value matches none of the oneOf alternatives (first: %s)", first);
        if (w == 1 && matched > 1)
            return fail(c, "value matches %zu of the oneOf alternatives, expected exactly one",
                        matched);
    }
    return 0;
}

static int validate(vctx *c, const json_object *s, const json_object *v, int depth)
{
    if (depth > AD_SCHEMA_MAX_DEPTH)
        return fail(c, "nested too deeply (limit %d)", AD_SCHEMA_MAX_DEPTH);
    if (s != NULL && json_object_is_type(s, json_type_boolean)) {
        if (json_object_get_boolean(s))
            return 0;
        return fail(c, "no value is allowed here");
    }
    if (s == NULL || !json_object_is_type(s, json_type_object))
        return 0; /* not a schema: nothing to enforce */

    json_object *k = get_key(s, "type");
    int rc;
    if (k && (rc = check_type(c, k, v)) != 0)
        return rc;

    if (has_key(s, "const")) {
        k = get_key(s, "const");
        if (!json_equal(k, v, 0)) {
            char want[200];
            json_fmt(k, want, sizeof want);
            return fail(c, "value must be %s", want);
        }
    }
    k = get_key(s, "enum");
    if (k && json_object_is_type(k, json_type_array)) {
        size_t n = json_object_array_length(k), i;
        for (i = 0; i < n; i++)
            if (json_equal(json_object_array_get_idx(k, i), v, 0))
                break;
        if (i == n) {
            char want[300];
            json_fmt(k, want, sizeof want);
            return fail(c, "value is not one of %s", want);
        }
    }

    switch (json_object_get_type(v)) {
    case json_type_int:
    case json_type_double: rc = check_number(c, s, v); break;
    case json_type_string: rc = check_string(c, s, v); break;
    case json_type_array: rc = check_array(c, s, v, depth); break;
    case json_type_object: rc = check_object(c, s, v, depth); break;
    default: rc = 0; break;
    }
    if (rc)
        return rc;
    return check_combinators(c, s, v, depth);
}

int ad_schema_validate(const json_object *schema, const json_object *value, char *err,
                       size_t errlen)
{
    vctx c = {AD_BUF_INIT, err, errlen};
    if (ad_buf_puts(&c.path, "$") != 0) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    int rc = validate(&c, schema, value, 0);
    ad_buf_free(&c.path);
    return rc;
}

/* ---- schema sanity check for plugin authors ---------------------------- */

static int check_schema(const json_object *s, ad_buf *where, int depth, char *err, size_t errlen);

static int bad(const ad_buf *where, char *err, size_t errlen, const char *what)
{
    const char *dots, *p = path_text(where, &dots);
    ad_errf(err, errlen, "schema %s%s: %s", dots, p, what);
    return AD_EINVAL;
}

static int check_sub(const json_object *s, ad_buf *where, const char *step, int depth, char *err,
                     size_t errlen)
{
    size_t old = where->len;
    (void)ad_buf_puts(where, step);
    int rc = check_schema(s, where, depth + 1, err, errlen);
    path_pop(where, old);
    return rc;
}

static int check_schema(const json_object *s, ad_buf *where, int depth, char *err, size_t errlen)
{
    if (depth > AD_SCHEMA_MAX_DEPTH)
        return bad(where, err, errlen, "nested too deeply");
    if (s != NULL && json_object_is_type(s, json_type_boolean))
        return 0;
    if (s == NULL || !json_object_is_type(s, json_type_object))
        return bad(where, err, errlen, "a schema must be a JSON object");

    json_object *t = get_key(s, "type");
    if (t) {
        if (json_object_is_type(t, json_type_string)) {
            if (!known_type(str_of(t)))
                return bad(where, err, errlen, "unknown \"type\"");
        } else if (json_object_is_type(t, json_type_array)) {
            size_t n = json_object_array_length(t);
            for (size_t i = 0; i < n; i++) {
                json_object *ti = json_object_array_get_idx(t, i);
                if (!json_object_is_type(ti, json_type_string) || !known_type(str_of(ti)))
                    return bad(where, err, errlen, "unknown \"type\" in list");
            }
        } else {
            return bad(where, err, errlen, "\"type\" must be a string or an array of strings");
        }
    }
    json_object *p = get_key(s, "properties");
    if (p) {
        if (!json_object_is_type(p, json_type_object))
            return bad(where, err, errlen, "\"properties\" must be an object");
        json_object_object_foreach(p, key, sub)
        {
            size_t old = where->len;
            (void)ad_buf_puts(where, ".properties");
            (void)path_push_key(where, key);
            int rc = check_schema(sub, where, depth + 1, err, errlen);
            path_pop(where, old);
            if (rc)
                return rc;
        }
    }
    json_object *r = get_key(s, "required");
    if (r) {
        if (!json_object_is_type(r, json_type_array))
            return bad(where, err, errlen, "\"required\" must be an array of strings");
        size_t n = json_object_array_length(r);
        for (size_t i = 0; i < n; i++)
            if (!json_object_is_type(json_object_array_get_idx(r, i), json_type_string))
                return bad(where, err, errlen, "\"required\" must be an array of strings");
    }
    json_object *a = get_key(s, "additionalProperties");
    if (a && !json_object_is_type(a, json_type_boolean)) {
        int rc = check_sub(a, where, ".additionalProperties", depth, err, errlen);
        if (rc)
            return rc;
    }
    json_object *it = get_key(s, "items");
    if (it) {
        if (json_object_is_type(it, json_type_array)) {
            size_t n = json_object_array_length(it);
            for (size_t i = 0; i < n; i++) {
                char step[48];
                snprintf(step, sizeof step, ".items[%zu]", i);
                int rc = check_sub(json_object_array_get_idx(it, i), where, step, depth, err, errlen);
                if (rc)
                    return rc;
            }
        } else {
            int rc = check_sub(it, where, ".items", depth, err, errlen);
            if (rc)
                return rc;
        }
    }
    static const char *const combos[] = {"anyOf", "oneOf", "allOf"};
    for (int w = 0; w < 3; w++) {
        json_object *k = get_key(s, combos[w]);
        if (k == NULL)
            continue;
        if (!json_object_is_type(k, json_type_array) || json_object_array_length(k) == 0)
            return bad(where, err, errlen, "anyOf/oneOf/allOf must be a non-empty array");
        size_t n = json_object_array_length(k);
        for (size_t i = 0; i < n; i++) {
            char step[48];
            snprintf(step, sizeof step, ".%s[%zu]", combos[w], i);
            int rc = check_sub(json_object_array_get_idx(k, i), where, step, depth, err, errlen);
            if (rc)
                return rc;
        }
    }
    static const char *const nums[] = {"minimum", "maximum"};
    for (int w = 0; w < 2; w++) {
        json_object *k = get_key(s, nums[w]);
        if (k && !is_number(k))
            return bad(where, err, errlen, "minimum/maximum must be numbers");
    }
    static const char *const counts[] = {"minLength", "maxLength", "minItems", "maxItems"};
    for (int w = 0; w < 4; w++) {
        json_object *k = get_key(s, counts[w]);
        if (k && (!is_number(k) || !num_is_integral(k) || json_object_get_double(k) < 0))
            return bad(where, err, errlen,
                       "minLength/maxLength/minItems/maxItems must be non-negative integers");
    }
    json_object *e = get_key(s, "enum");
    if (e && !json_object_is_type(e, json_type_array))
        return bad(where, err, errlen, "\"enum\" must be an array");
    return 0;
}

int ad_schema_check(const json_object *schema, char *err, size_t errlen)
{
    if (schema == NULL || !json_object_is_type(schema, json_type_object)) {
        ad_errf(err, errlen, "parameters must be a JSON object (a JSON Schema), got %s",
                schema ? type_name(schema) : "null");
        return AD_EINVAL;
    }
    json_object *t = get_key(schema, "type");
    if (t && !(json_object_is_type(t, json_type_string) && strcmp(str_of(t), "object") == 0)) {
        ad_errf(err, errlen, "parameters schema must have \"type\": \"object\"");
        return AD_EINVAL;
    }
    ad_buf where = AD_BUF_INIT;
    if (ad_buf_puts(&where, "$") != 0) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    int rc = check_schema(schema, &where, 0, err, errlen);
    ad_buf_free(&where);
    return rc;
}

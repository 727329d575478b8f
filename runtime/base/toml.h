/*
 * toml.h -- a TOML 1.0.0 parser producing a document tree.
 *
 * Input is bytes with an explicit length (it may hold NULs, invalid UTF-8, a
 * BOM, bare CRs: all are diagnosed, never read past). The result is a tree of
 * ad_toml values owned by the root; free it with ad_toml_free(). Tables keep
 * their keys in insertion order. Every value remembers the line and column
 * where its key (for table entries) or itself (for array elements) was
 * written, so callers can report "file:line: ..." for semantic errors.
 */
#ifndef AD_TOML_H
#define AD_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ad_toml_type {
    AD_TOML_TABLE,
    AD_TOML_ARRAY,
    AD_TOML_STRING,
    AD_TOML_INTEGER,
    AD_TOML_FLOAT,
    AD_TOML_BOOL,
    AD_TOML_DATETIME,       /* offset date-time: 1979-05-27T07:32:00Z */
    AD_TOML_DATETIME_LOCAL, /* local date-time:  1979-05-27T07:32:00 */
    AD_TOML_DATE_LOCAL,     /* local date:       1979-05-27 */
    AD_TOML_TIME_LOCAL      /* local time:       07:32:00 */
} ad_toml_type;

typedef struct ad_toml ad_toml; /* one value of the tree */

/*
 * Parses data[0..len). On success returns 0 and stores the root table in
 * *out (caller frees with ad_toml_free()). On failure returns a negative
 * AD_E* code, stores NULL and writes "LINE:COLUMN: <what was expected>"
 * into err (columns count bytes from 1), so that a caller prefixing the
 * file name gets the usual "FILE:LINE:COLUMN: message".
 */
int ad_toml_parse(const char *data, size_t len, ad_toml **out, char *err, size_t errlen);
void ad_toml_free(ad_toml *root); /* accepts NULL */

ad_toml_type ad_toml_type_of(const ad_toml *v);
const char *ad_toml_type_name(ad_toml_type t); /* "table", "array", "string", "integer", ... */
int ad_toml_line(const ad_toml *v);            /* 1-based line of the key / element */
int ad_toml_column(const ad_toml *v);          /* 1-based column of the key / element */

/* Tables and arrays. ad_toml_len() is 0 for scalars. For tables, entries are
 * in insertion order; ad_toml_key_at() returns the (unescaped, NUL-terminated)
 * key, borrowed from the tree. */
size_t ad_toml_len(const ad_toml *v);
const char *ad_toml_key_at(const ad_toml *table, size_t i);
/* Byte length of the i-th key: a quoted key may hold "\u0000", which
 * ad_toml_key_at()'s C string cannot show. */
size_t ad_toml_key_len(const ad_toml *table, size_t i);
ad_toml *ad_toml_at(const ad_toml *v, size_t i); /* i-th entry's value / element */
ad_toml *ad_toml_get(const ad_toml *table, const char *key); /* NULL if absent */

/* Scalars. Strings are NUL-terminated and may contain NULs (use *len).
 * Borrowed from the tree. */
const char *ad_toml_string(const ad_toml *v, size_t *len);
int64_t ad_toml_int(const ad_toml *v);
double ad_toml_float(const ad_toml *v);
bool ad_toml_bool(const ad_toml *v);
/* Date/time values as canonical RFC 3339 text (as written, with 'T' as the
 * separator and the offset as written, e.g. "1979-05-27T07:32:00.999-07:00"). */
const char *ad_toml_datetime(const ad_toml *v);

#endif /* AD_TOML_H */

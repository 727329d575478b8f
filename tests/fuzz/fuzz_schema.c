/* fuzz-sources: runtime/core/schema.c runtime/base/buf.c */
/* fuzz-libs: -ljson-c */
/*
 * fuzz_schema.c -- libFuzzer target for the JSON Schema subset validator.
 *
 * Input: a schema and a value, both JSON texts, separated by the first NUL
 * byte (no NUL: the input is used as both). Whatever json-c accepts goes to
 * ad_schema_check() and ad_schema_validate(), which must return 0 or a
 * documented error code, with a non-empty message on error, give the same
 * answer twice, and leave both documents unchanged (tools are validated
 * concurrently against one shared schema). Built by mk/fuzz.mk.
 */
#include "core/schema.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static json_object *parse(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static char *text_of(json_object *o)
{
    return strdup(o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "null");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t slen = nul ? (size_t)(nul - s) : size;
    const char *v = nul ? nul + 1 : s;
    size_t vlen = nul ? size - slen - 1 : size;
    json_object *schema = parse(s, slen);
    json_object *value = parse(v, vlen);
    if (!schema) {
        json_object_put(value);
        return 0;
    }
    char err[256];
    err[0] = '\0';
    int crc = ad_schema_check(schema, err, sizeof err);
    ENSURE(crc == 0 || (crc == AD_EINVAL && err[0]) || crc == AD_ENOMEM);

    char *before_s = text_of(schema), *before_v = text_of(value);
    char err1[256] = "", err2[256] = "";
    int r1 = ad_schema_validate(schema, value, err1, sizeof err1);
    int r2 = ad_schema_validate(schema, value, err2, sizeof err2);
    ENSURE(r1 == 0 || r1 == AD_EINVAL || r1 == AD_ENOMEM);
    ENSURE(r1 == r2);
    if (r1 == AD_EINVAL) {
        ENSURE(err1[0] != '\0' && strcmp(err1, err2) == 0);
        ENSURE(memchr(err1, '\0', sizeof err1) != NULL);
    }
    char *after_s = text_of(schema), *after_v = text_of(value);
    ENSURE(strcmp(before_s, after_s) == 0 && strcmp(before_v, after_v) == 0);
    free(before_s);
    free(before_v);
    free(after_s);
    free(after_v);
    json_object_put(schema);
    json_object_put(value);
    return 0;
}

/*
 * json.h -- typed access to json-c values that may have any shape.
 *
 * Messages, events and provider responses are parsed JSON that nobody
 * promised the shape of: these read a member only when it is what the
 * caller wants, and answer NULL otherwise (o not an object, the key absent,
 * JSON null, another type), so that callers never branch on json-c's
 * conventions. Inline: the stream parser reads every delta through them.
 */
#ifndef AD_JSON_H
#define AD_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* o is not NULL and of type t. */
static inline bool ad_json_is(json_object *o, json_type t)
{
    return o != NULL && json_object_is_type(o, t);
}

/* The member key of the object o; NULL when o is not an object, the key is
 * absent or its value is null. Borrowed. */
static inline json_object *ad_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!ad_json_is(o, json_type_object))
        return NULL;
    json_object_object_get_ex(o, key, &v);
    return v;
}

/* The string member key of o, its length in *len (may be NULL); NULL when
 * there is no such member or it is not a string. Borrowed. */
static inline const char *ad_json_strn(json_object *o, const char *key, size_t *len)
{
    json_object *v = ad_json_get(o, key);
    if (!ad_json_is(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

static inline const char *ad_json_str(json_object *o, const char *key)
{
    return ad_json_strn(o, key, NULL);
}

#endif /* AD_JSON_H */

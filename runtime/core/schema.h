/*
 * schema.h -- a JSON Schema subset validator on json-c.
 *
 * Supports: type (string or array of types; "integer" accepts whole-valued
 * numbers), properties, required, additionalProperties (bool or schema),
 * enum, const, items, minItems/maxItems, minimum/maximum,
 * exclusiveMinimum/exclusiveMaximum (numbers), minLength/maxLength (in
 * characters), anyOf/oneOf/allOf. Unknown keywords are ignored (as the
 * spec says).
 */
#ifndef AD_SCHEMA_H
#define AD_SCHEMA_H

#include <json-c/json.h>
#include <stddef.h>

/* Checks that `schema` is usable as tool parameters: a JSON object whose
 * "type", when present, is "object". Returns 0 or AD_EINVAL with err set. */
int ad_schema_check(const json_object *schema, char *err, size_t errlen);

/* Validates `value` against `schema`. Returns 0, or AD_EINVAL with err set
 * to one message naming the path and the problem, e.g.
 * "$.a: expected integer, got string" or "$: missing required property \"b\"". */
int ad_schema_validate(const json_object *schema, const json_object *value, char *err,
                       size_t errlen);

#endif /* AD_SCHEMA_H */

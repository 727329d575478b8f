/*
 * names.h -- the names and schemas the model sees for MCP tools.
 *
 * A tool `read_file` of a server whose tool_prefix is `fs` is offered to the
 * model as `fs__read_file`. Providers accept tool names of
 * [A-Za-z0-9_-]{1,64} only, while MCP tool names may hold dots, slashes,
 * any Unicode and be of any length, so the model-facing name is sanitised:
 * every other character (a whole UTF-8 sequence, or one invalid byte)
 * becomes '_', and a name longer than 64 bytes is cut to 55 and ends with
 * '_' and 8 hex digits of a hash of the exact prefix and tool name. A name
 * that needed no change keeps it. Two tools whose names come out the same
 * are told apart by that hash too (the one whose name needed no change
 * keeps it); should two still clash, the later is left out and reported.
 * The map gives back the exact server-side name for a model-facing one.
 *
 * Schemas: providers reject what JSON Schema allows in places ("$schema",
 * a missing "type" or "properties"), so the model gets a cleaned copy; the
 * server's original is kept to validate arguments against.
 */
#ifndef AD_MCP_NAMES_H
#define AD_MCP_NAMES_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define AD_MCP_NAME_MAX 64

/* The model-facing name of tool under prefix ("" for none: then no "__"):
 * sanitised and, past 64 bytes, shortened with the hash. New string
 * (caller frees), or NULL on ENOMEM or for an empty tool name. Does not
 * resolve clashes (ad_mcp_names_add does). */
char *ad_mcp_model_name(const char *prefix, const char *tool);

/* True when name is usable as is: [A-Za-z0-9_-]{1,64}. */
bool ad_mcp_name_ok(const char *name);

/* One entry of the map. */
typedef struct ad_mcp_name {
    char *model;  /* owned: model-facing, unique in the map */
    char *prefix; /* owned: as given */
    char *tool;   /* owned: the server's exact name */
    void *ud;     /* the caller's, e.g. the server it belongs to */
} ad_mcp_name;

typedef struct ad_mcp_names {
    ad_mcp_name *v; /* owned array */
    size_t n, cap;
} ad_mcp_names;

/* Adds prefix/tool. Returns the new entry's model-facing name (borrowed
 * from the map), or NULL: AD_EINVAL (empty tool name, or a clash that the
 * hash could not resolve, or the same prefix and tool twice) with err
 * naming both tools, or AD_ENOMEM; *rc (may be NULL) gets the code. A tool
 * whose name needed no change and clashes with one that was changed takes
 * the plain name; the changed one is renamed with its hash (its earlier
 * model-facing name then no longer holds: add every tool before handing
 * names out). */
const char *ad_mcp_names_add(ad_mcp_names *m, const char *prefix, const char *tool, void *ud,
                             int *rc, char *err, size_t errlen);
/* The entry for a model-facing name, or NULL. */
const ad_mcp_name *ad_mcp_names_find(const ad_mcp_names *m, const char *model);
void ad_mcp_names_free(ad_mcp_names *m); /* accepts a zeroed map */

/* A copy of schema fit for providers: no "$schema" at the top, "type":
 * "object" and "properties" (an object) always there. A schema that is
 * not an object becomes {"type":"object","properties":{}}. New object, or
 * NULL on ENOMEM. The original is not touched. */
json_object *ad_mcp_schema_clean(const json_object *schema);

#endif /* AD_MCP_NAMES_H */

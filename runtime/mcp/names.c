/*
 * names.c -- model-facing names and provider-fit schemas for MCP tools
 * (see names.h).
 *
 * The hash is 32-bit FNV-1a over prefix, a NUL, and the tool's name: short
 * enough to leave most of a long name readable, and only ever compared
 * within one map, where a clash of hashes is reported rather than assumed
 * away.
 */
#include "mcp/names.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"

#define HASH_KEEP (AD_MCP_NAME_MAX - 9) /* bytes kept before "_" and 8 hex digits */

static bool name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

bool ad_mcp_name_ok(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++)
        if (!name_char((unsigned char)name[n]))
            return false;
    return n > 0 && n <= AD_MCP_NAME_MAX;
}

static uint32_t fnv1a(const char *prefix, const char *tool)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)prefix; *p; p++)
        h = (h ^ *p) * 16777619u;
    h = (h ^ 0u) * 16777619u;
    for (const unsigned char *p = (const unsigned char *)tool; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* Appends s sanitised; *changed is set when anything was replaced. */
static void put_sanitised(ad_buf *b, const char *s, bool *changed)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (name_char(c)) {
            ad_buf_putc(b, (char)c);
            i++;
            continue;
        }
        size_t len = 1;
        if (c >= 0x80)
            ad_utf8_seq((const unsigned char *)s + i, n - i, &len);
        ad_buf_putc(b, '_');
        *changed = true;
        i += len;
    }
}

/* The plain (sanitised, unhashed) name; *changed when it differs from
 * prefix__tool. NULL for an empty tool name or ENOMEM. */
static char *plain_name(const char *prefix, const char *tool, bool *changed)
{
    *changed = false;
    if (!tool[0])
        return NULL;
    ad_buf b = AD_BUF_INIT;
    if (prefix[0]) {
        put_sanitised(&b, prefix, changed);
        ad_buf_puts(&b, "__");
    }
    put_sanitised(&b, tool, changed);
    return b.data;
}

/* base cut to HASH_KEEP bytes, then "_" and the hash. */
static char *hashed_name(const char *base, const char *prefix, const char *tool)
{
    ad_buf b = AD_BUF_INIT;
    size_t n = strlen(base);
    ad_buf_append(&b, base, n < HASH_KEEP ? n : HASH_KEEP);
    ad_buf_printf(&b, "_%08x", (unsigned)fnv1a(prefix, tool));
    return b.data;
}

char *ad_mcp_model_name(const char *prefix, const char *tool)
{
    bool changed;
    char *plain = plain_name(prefix ? prefix : "", tool, &changed);
    if (!plain || strlen(plain) <= AD_MCP_NAME_MAX)
        return plain;
    char *h = hashed_name(plain, prefix ? prefix : "", tool);
    free(plain);
    return h;
}

/* ---- the map ----------------------------------------------------------- */

static ad_mcp_name *find(const ad_mcp_names *m, const char *model)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].model, model) == 0)
            return &m->v[i];
    return NULL;
}

const ad_mcp_name *ad_mcp_names_find(const ad_mcp_names *m, const char *model)
{
    return find(m, model);
}

/* Whether e's model name is its prefix__tool verbatim. */
static bool verbatim(const ad_mcp_name *e)
{
    size_t pl = strlen(e->prefix);
    if (pl == 0)
        return strcmp(e->model, e->tool) == 0;
    return strncmp(e->model, e->prefix, pl) == 0 && strncmp(e->model + pl, "__", 2) == 0 &&
           strcmp(e->model + pl + 2, e->tool) == 0;
}

static const char *clash_error(int *rc, int code, char *err, size_t errlen, const char *prefix,
                               const char *tool, const ad_mcp_name *other, const char *model)
{
    if (rc)
        *rc = code;
    if (code == AD_ENOMEM)
        ad_errf(err, errlen, "out of memory");
    else if (!tool[0])
        ad_errf(err, errlen, "a tool with an empty name");
    else if (other && strcmp(other->prefix, prefix) == 0 && strcmp(other->tool, tool) == 0)
        ad_errf(err, errlen,
                "the tool '%s' with the prefix '%s' is offered twice (two servers with one "
                "tool_prefix?): the later is left out",
                tool, prefix);
    else
        ad_errf(err, errlen,
                "the tool '%s' (prefix '%s') would be named '%s' for the model, as the tool '%s' "
                "(prefix '%s') is: it is left out",
                tool, prefix, model, other ? other->tool : "?", other ? other->prefix : "?");
    return NULL;
}

const char *ad_mcp_names_add(ad_mcp_names *m, const char *prefix, const char *tool, void *ud,
                             int *rc, char *err, size_t errlen)
{
    if (rc)
        *rc = AD_OK;
    prefix = prefix ? prefix : "";
    if (!tool || !tool[0])
        return clash_error(rc, AD_EINVAL, err, errlen, prefix, "", NULL, "");
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].prefix, prefix) == 0 && strcmp(m->v[i].tool, tool) == 0)
            return clash_error(rc, AD_EINVAL, err, errlen, prefix, tool, &m->v[i], m->v[i].model);
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        ad_mcp_name *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            return clash_error(rc, AD_ENOMEM, err, errlen, prefix, tool, NULL, "");
        m->v = v;
        m->cap = cap;
    }
    char *model = ad_mcp_model_name(prefix, tool);
    if (!model)
        return clash_error(rc, AD_ENOMEM, err, errlen, prefix, tool, NULL, "");
    ad_mcp_name e = {model, ad_strdup(prefix), ad_strdup(tool), ud};
    if (!e.prefix || !e.tool) {
        free(e.model);
        free(e.prefix);
        free(e.tool);
        return clash_error(rc, AD_ENOMEM, err, errlen, prefix, tool, NULL, "");
    }
    ad_mcp_name *other = find(m, model);
    if (other) {
        /* The one whose name needed no change keeps it; else the newcomer
         * moves. Either way the one that moves takes its hash. */
        ad_mcp_name *mover = verbatim(&e) && !verbatim(other) ? other : &e;
        char *h = hashed_name(mover->model, mover->prefix, mover->tool);
        if (!h || find(m, h) || strcmp(h, mover == &e ? other->model : e.model) == 0) {
            const char *clashed = h ? h : "";
            const ad_mcp_name *with = h && find(m, h) ? find(m, h) : other;
            clash_error(rc, h ? AD_EINVAL : AD_ENOMEM, err, errlen, prefix, tool, with, clashed);
            free(h);
            free(e.model);
            free(e.prefix);
            free(e.tool);
            return NULL;
        }
        free(mover->model);
        mover->model = h;
    }
    m->v[m->n] = e;
    return m->v[m->n++].model;
}

void ad_mcp_names_free(ad_mcp_names *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].model);
        free(m->v[i].prefix);
        free(m->v[i].tool);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* ---- schemas ----------------------------------------------------------- */

json_object *ad_mcp_schema_clean(const json_object *schema)
{
    json_object *out = NULL;
    if (schema && json_object_is_type(schema, json_type_object)) {
        if (json_object_deep_copy((json_object *)schema, &out, NULL) != 0)
            return NULL;
    } else {
        out = json_object_new_object();
    }
    if (!out)
        return NULL;
    json_object_object_del(out, "$schema");
    json_object *type = NULL, *props = NULL;
    if (!json_object_object_get_ex(out, "type", &type) || !json_object_is_type(type, json_type_string) ||
        strcmp(json_object_get_string(type), "object") != 0)
        json_object_object_add(out, "type", json_object_new_string("object"));
    if (!json_object_object_get_ex(out, "properties", &props) ||
        !json_object_is_type(props, json_type_object))
        json_object_object_add(out, "properties", json_object_new_object());
    return out;
}

/*
 * content.c -- an MCP tools/call result as tool-message text (see
 * content.h).
 */
#include "mcp/content.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"

#define CAP_MIN 256

void ad_mcp_content_free(ad_mcp_content *c)
{
    if (!c)
        return;
    free(c->text);
    for (size_t i = 0; i < c->nmedia; i++) {
        free(c->media[i].mime);
        free(c->media[i].data);
    }
    free(c->media);
    memset(c, 0, sizeof *c);
}

unsigned char *ad_mcp_base64_decode(const char *s, size_t n, size_t *len)
{
    ad_buf b = AD_BUF_INIT;
    if (ad_base64_decode(&b, s, n) != AD_OK) {
        ad_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return (unsigned char *)ad_buf_steal(&b);
}

static int add_media(ad_mcp_content *c, ad_mcp_media_kind kind, const char *mime,
                     unsigned char *data, size_t len, const char *b64)
{
    ad_mcp_media *m = realloc(c->media, (c->nmedia + 1) * sizeof *m);
    if (!m)
        return AD_ENOMEM;
    c->media = m;
    char *mi = ad_strdup(mime ? mime : "");
    if (!mi)
        return AD_ENOMEM;
    m[c->nmedia++] = (ad_mcp_media){kind, mi, data, len, b64};
    return AD_OK;
}

/* One content block into b. */
static int render_block(ad_mcp_content *c, ad_buf *b, const json_object *blk)
{
    if (!json_object_is_type(blk, json_type_object)) {
        ad_buf_puts(b, "[a content block that is not an object]");
        return AD_OK;
    }
    const char *type = ad_json_str((json_object *)blk, "type");
    if (!type) {
        ad_buf_puts(b, "[a content block without a type]");
        return AD_OK;
    }
    if (strcmp(type, "text") == 0) {
        json_object *t = NULL;
        if (json_object_object_get_ex(blk, "text", &t) && json_object_is_type(t, json_type_string))
            ad_buf_append(b, json_object_get_string(t), (size_t)json_object_get_string_len(t));
        else
            ad_buf_puts(b, "[a text block without text]");
        return AD_OK;
    }
    if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
        bool image = type[0] == 'i';
        const char *mime = ad_json_str((json_object *)blk, "mimeType");
        json_object *d = NULL;
        json_object_object_get_ex(blk, "data", &d);
        const char *b64 = d && json_object_is_type(d, json_type_string) ? json_object_get_string(d) : NULL;
        size_t len = 0;
        unsigned char *data =
            b64 ? ad_mcp_base64_decode(b64, (size_t)json_object_get_string_len(d), &len) : NULL;
        ad_buf_printf(b, "[%s: %s, ", type, mime && mime[0] ? mime : "no MIME type");
        if (!data) {
            ad_buf_puts(b, "data missing or not base64]");
            return AD_OK;
        }
        ad_buf_size(b, len);
        ad_buf_putc(b, ']');
        int rc = add_media(c, image ? AD_MCP_IMAGE : AD_MCP_AUDIO, mime, data, len, b64);
        if (rc != AD_OK)
            free(data);
        return rc;
    }
    if (strcmp(type, "resource") == 0) {
        json_object *r = NULL;
        if (!json_object_object_get_ex(blk, "resource", &r) || !json_object_is_type(r, json_type_object)) {
            ad_buf_puts(b, "[a resource block without a resource]");
            return AD_OK;
        }
        const char *uri = ad_json_str((json_object *)r, "uri"), *mime = ad_json_str((json_object *)r, "mimeType");
        json_object *t = NULL, *blob = NULL;
        ad_buf_printf(b, "[resource %s", uri ? uri : "(no URI)");
        if (json_object_object_get_ex(r, "text", &t) && json_object_is_type(t, json_type_string)) {
            if (mime)
                ad_buf_printf(b, " (%s)", mime);
            ad_buf_puts(b, "]\n");
            ad_buf_append(b, json_object_get_string(t), (size_t)json_object_get_string_len(t));
        } else if (json_object_object_get_ex(r, "blob", &blob) &&
                   json_object_is_type(blob, json_type_string)) {
            size_t len = 0;
            unsigned char *data = ad_mcp_base64_decode(json_object_get_string(blob),
                                                       (size_t)json_object_get_string_len(blob), &len);
            ad_buf_printf(b, ": %s, ", mime ? mime : "no MIME type");
            if (data)
                ad_buf_size(b, len);
            else
                ad_buf_puts(b, "not base64");
            ad_buf_putc(b, ']');
            free(data);
        } else {
            ad_buf_puts(b, ": no text or blob]");
        }
        return AD_OK;
    }
    if (strcmp(type, "resource_link") == 0) {
        const char *uri = ad_json_str((json_object *)blk, "uri"), *name = ad_json_str((json_object *)blk, "name");
        const char *mime = ad_json_str((json_object *)blk, "mimeType"), *desc = ad_json_str((json_object *)blk, "description");
        ad_buf_printf(b, "[resource link: %s", uri ? uri : "(no URI)");
        if (name || mime)
            ad_buf_printf(b, " (%s%s%s)", name ? name : "", name && mime ? ", " : "",
                          mime ? mime : "");
        if (desc && desc[0])
            ad_buf_printf(b, ": %s", desc);
        ad_buf_putc(b, ']');
        return AD_OK;
    }
    ad_buf_printf(b, "[content of an unsupported type '%.60s']", type);
    return AD_OK;
}

/* image/SUBTYPE, nothing that could end the data URL's media type early. */
static bool image_mime(const char *m)
{
    if (strncmp(m, "image/", 6) != 0 || !m[6])
        return false;
    for (const char *p = m + 6; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '+' || *p == '-' || *p == '.' || *p == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* {"type":"image_url","image_url":{"url":"data:..."}} for m; NULL on ENOMEM. */
static json_object *image_part(const ad_mcp_media *m)
{
    ad_buf url = AD_BUF_INIT;
    json_object *part = NULL;
    if (ad_buf_printf(&url, "data:%s;base64,", m->mime) == AD_OK &&
        ad_base64_encode(&url, m->data, m->len) == AD_OK) {
        json_object *iu = json_object_new_object();
        json_object *u = json_object_new_string_len(url.data, (int)url.len);
        part = json_object_new_object();
        if (iu && u && part) {
            json_object_object_add(iu, "url", u);
            json_object_object_add(part, "type", json_object_new_string("image_url"));
            json_object_object_add(part, "image_url", iu);
        } else {
            json_object_put(iu);
            json_object_put(u);
            json_object_put(part);
            part = NULL;
        }
    }
    ad_buf_free(&url);
    return part;
}

json_object *ad_mcp_image_parts(const ad_mcp_content *c, size_t max_bytes)
{
    json_object *parts = NULL;
    for (size_t i = 0; i < c->nmedia; i++) {
        const ad_mcp_media *m = &c->media[i];
        if (m->kind != AD_MCP_IMAGE || !image_mime(m->mime) || (max_bytes && m->len > max_bytes))
            continue;
        json_object *part = image_part(m);
        if (!parts)
            parts = json_object_new_array();
        if (!part || !parts) {
            json_object_put(part);
            json_object_put(parts);
            return NULL;
        }
        json_object_array_add(parts, part);
    }
    return parts;
}

size_t ad_mcp_cap(char *text, size_t *len, size_t max)
{
    if (max < CAP_MIN)
        max = CAP_MIN;
    size_t total = *len;
    if (total <= max)
        return 0;
    char marker[128];
    size_t keep = max, cut = 0;
    /* The marker's length depends on the number it holds: twice settles it. */
    for (int i = 0; i < 3; i++) {
        snprintf(marker, sizeof marker, "\n[agentd: %zu of %zu bytes cut: the limit is %zu]",
                 total - keep, total, max);
        size_t ml = strlen(marker);
        keep = ad_utf8_cut(text, total, max - ml);
        cut = total - keep;
    }
    snprintf(marker, sizeof marker, "\n[agentd: %zu of %zu bytes cut: the limit is %zu]", cut, total,
             max);
    size_t ml = strlen(marker);
    if (keep + ml > max)
        keep = ad_utf8_cut(text, total, max - ml);
    cut = total - keep;
    snprintf(marker, sizeof marker, "\n[agentd: %zu of %zu bytes cut: the limit is %zu]", cut, total,
             max);
    ml = strlen(marker);
    memcpy(text + keep, marker, ml + 1);
    *len = keep + ml;
    return cut;
}

int ad_mcp_content_render(const json_object *result, size_t max_bytes, ad_mcp_content *out,
                          char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    ad_buf b = AD_BUF_INIT;
    int rc = AD_OK;
    json_object *content = NULL, *sc = NULL, *ie = NULL;
    bool is_obj = result && json_object_is_type(result, json_type_object);
    bool has_content = is_obj && json_object_object_get_ex(result, "content", &content) &&
                       json_object_is_type(content, json_type_array);
    bool has_sc = is_obj && json_object_object_get_ex(result, "structuredContent", &sc) && sc;
    if (is_obj && json_object_object_get_ex(result, "isError", &ie))
        out->is_error = json_object_is_type(ie, json_type_boolean) && json_object_get_boolean(ie);
    if (!has_content && !has_sc) {
        ad_errf(err, errlen, "the server's result has no \"content\" array");
        ad_buf_puts(&b, "[the MCP server's result has no content]");
        out->is_error = true;
        rc = AD_EINVAL;
    }
    bool any_text = false;
    size_t n = has_content ? json_object_array_length(content) : 0;
    for (size_t i = 0; i < n && rc == AD_OK; i++) {
        const json_object *blk = json_object_array_get_idx(content, i);
        const char *type = json_object_is_type(blk, json_type_object) ? ad_json_str((json_object *)blk, "type") : NULL;
        any_text |= type && strcmp(type, "text") == 0;
        if (i)
            ad_buf_putc(&b, '\n');
        rc = render_block(out, &b, blk);
    }
    if (rc == AD_OK && has_sc && !any_text) {
        if (b.len)
            ad_buf_putc(&b, '\n');
        size_t sl = 0;
        const char *s = json_object_to_json_string_length(
            sc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &sl);
        ad_buf_append(&b, s, sl);
    }
    if (rc == AD_ENOMEM || ad_buf_reserve(&b, 1) != AD_OK) {
        ad_buf_free(&b);
        ad_mcp_content_free(out);
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    out->total = b.len;
    out->len = b.len;
    out->text = ad_buf_steal(&b);
    if (!out->text) {
        ad_mcp_content_free(out);
        return AD_ENOMEM;
    }
    out->cut = ad_mcp_cap(out->text, &out->len, max_bytes);
    return rc;
}

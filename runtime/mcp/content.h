/*
 * content.h -- an MCP tools/call result as the text of a tool message.
 *
 * A CallToolResult holds content blocks (text, image, audio, resource,
 * resource_link), maybe structuredContent, and isError. The tool role of
 * the Chat Completions API carries text only, so:
 *   text           its text
 *   image, audio   "[image: image/png, 1234 bytes]": the decoded bytes stay
 *                  in `media`; ad_mcp_image_parts() makes the images parts
 *                  of a user message (for a model that takes images)
 *   resource       "[resource URI (MIME)]" and its text, or for a blob
 *                  "[resource URI: MIME, N bytes]"
 *   resource_link  "[resource link: URI (NAME, MIME): DESCRIPTION]"
 *   structuredContent
 *                  its JSON, when no text block is there (a server that
 *                  returns both repeats the JSON as text, as the
 *                  specification asks)
 * Blocks are separated by a newline; an unknown block type is named.
 * Annotations are not passed on (they are the server's, not facts).
 *
 * The text is capped: when it is longer than max_bytes it is cut at a
 * UTF-8 boundary and ends with a marker that says how many bytes were cut,
 * all within max_bytes.
 */
#ifndef AD_MCP_CONTENT_H
#define AD_MCP_CONTENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum ad_mcp_media_kind { AD_MCP_IMAGE, AD_MCP_AUDIO } ad_mcp_media_kind;

/* A decoded image or audio block. */
typedef struct ad_mcp_media {
    ad_mcp_media_kind kind;
    char *mime;          /* owned; "" when the server named none */
    unsigned char *data; /* owned: the decoded bytes */
    size_t len;
    const char *base64;  /* borrowed from the result: the data as the server sent it */
} ad_mcp_media;

typedef struct ad_mcp_content {
    char *text;          /* owned, NUL-terminated: the tool message (capped) */
    size_t len;
    bool is_error;       /* the result's isError */
    size_t total;        /* bytes of the whole text before the cap */
    size_t cut;          /* bytes cut by the cap (0: nothing) */
    ad_mcp_media *media; /* owned array */
    size_t nmedia;
} ad_mcp_content;

/* Renders result (a CallToolResult object) into *out. max_bytes >= 64.
 * Returns 0; AD_EINVAL with err set when result is not an object with a
 * "content" array or a "structuredContent" (out then holds a text saying
 * so, is_error set, so that the caller can still hand it on); AD_ENOMEM.
 * Free with ad_mcp_content_free() in every case. */
int ad_mcp_content_render(const json_object *result, size_t max_bytes, ad_mcp_content *out,
                          char *err, size_t errlen);
void ad_mcp_content_free(ad_mcp_content *c); /* accepts a zeroed struct */

/* The images of c a model can be shown, in block order, as Chat
 * Completions content parts
 *   {"type":"image_url","image_url":{"url":"data:MIME;base64,DATA"}}
 * (DATA in the standard alphabet, padded, whatever the server sent): the
 * image blocks whose MIME type is image/SUBTYPE (SUBTYPE of letters,
 * digits and "+-._") and whose decoded bytes are at most max_bytes (0: no
 * limit). Other blocks stay described only. A new array, or NULL when no
 * image qualifies (or on ENOMEM). */
json_object *ad_mcp_image_parts(const ad_mcp_content *c, size_t max_bytes);

/* Cuts text[0..*len) to at most max bytes (>= 64) with the marker, at a
 * UTF-8 boundary; returns the bytes cut (0: text unchanged). text must
 * have room for max + 1 bytes (it is NUL-terminated again). For callers
 * that cap text of their own. */
size_t ad_mcp_cap(char *text, size_t *len, size_t max);

/* Decodes base64 (RFC 4648, padding optional, whitespace ignored) into a
 * new buffer (caller frees) of *len bytes. NULL for invalid input (or
 * ENOMEM). */
unsigned char *ad_mcp_base64_decode(const char *s, size_t n, size_t *len);

#endif /* AD_MCP_CONTENT_H */

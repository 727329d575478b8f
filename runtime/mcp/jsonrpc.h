/*
 * jsonrpc.h -- JSON-RPC 2.0 messages, as MCP uses them, on json-c.
 *
 * One message is one JSON object: a request (method and id), a
 * notification (method, no id), or a response (id and either result or
 * error). Batches (a JSON array) are refused: MCP 2025-06-18 dropped them.
 * Ids are strings or integers, never null; the ids of agentd's own requests
 * come from a counter that never repeats (ad_rpc_ids).
 *
 * The builders return the message as one line of JSON text without a
 * newline (json-c escapes control characters inside strings, so the text
 * never holds one): what the stdio transport writes, a newline after it,
 * and what Streamable HTTP posts.
 */
#ifndef AD_MCP_JSONRPC_H
#define AD_MCP_JSONRPC_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Standard error codes. */
enum {
    AD_RPC_PARSE_ERROR = -32700,
    AD_RPC_INVALID_REQUEST = -32600,
    AD_RPC_METHOD_NOT_FOUND = -32601,
    AD_RPC_INVALID_PARAMS = -32602,
    AD_RPC_INTERNAL_ERROR = -32603
};

typedef enum ad_rpc_kind {
    AD_RPC_REQUEST,      /* method, id, params (may be NULL) */
    AD_RPC_NOTIFICATION, /* method, params (may be NULL) */
    AD_RPC_RESULT,       /* id, result */
    AD_RPC_ERROR         /* id (NULL when the peer answered with id null), code, message, data */
} ad_rpc_kind;

typedef struct ad_rpc_msg {
    ad_rpc_kind kind;
    json_object *root;    /* owned: the whole message */
    json_object *id;      /* borrowed from root; a string or an integer */
    const char *method;   /* borrowed; requests and notifications */
    json_object *params;  /* borrowed or NULL */
    json_object *result;  /* borrowed; AD_RPC_RESULT; NULL for a JSON null */
    int64_t code;         /* AD_RPC_ERROR */
    const char *message;  /* AD_RPC_ERROR; "" when the peer sent none */
    json_object *data;    /* AD_RPC_ERROR; borrowed or NULL */
} ad_rpc_msg;

/* Parses text[0..len) as exactly one JSON-RPC 2.0 message (surrounding
 * whitespace allowed) into *m. Returns 0, or AD_EINVAL with err saying what
 * is wrong ("not JSON: ...", "a batch (JSON array): batches are not
 * supported", "no \"jsonrpc\": \"2.0\"", ...) and *m zeroed. When the text
 * was a JSON object that is a request with a usable id but is otherwise
 * invalid, *bad_id (may be NULL) gets a new reference to that id, so that
 * the caller can answer -32600; else NULL. Nesting deeper than 256 levels
 * is refused. */
int ad_rpc_parse(const char *text, size_t len, ad_rpc_msg *m, json_object **bad_id, char *err,
                 size_t errlen);
void ad_rpc_msg_free(ad_rpc_msg *m); /* accepts a zeroed message */

/* The id as an integer: true when it is a JSON integer (ids agentd sends
 * are). */
bool ad_rpc_id_int(const json_object *id, int64_t *out);

/* Builders. params / result / data are borrowed (a reference is taken for
 * the message's life); params may be NULL (no "params" member). Each
 * returns a new NUL-terminated string (caller frees) and its length in
 * *len (may be NULL), or NULL on ENOMEM. */
char *ad_rpc_request(int64_t id, const char *method, json_object *params, size_t *len);
char *ad_rpc_notification(const char *method, json_object *params, size_t *len);
/* id: the request's id as it came (a string or an integer; NULL for null). */
char *ad_rpc_result(json_object *id, json_object *result, size_t *len);
char *ad_rpc_error(json_object *id, int64_t code, const char *message, json_object *data,
                   size_t *len);

/* A source of request ids: 1, 2, 3, ... never repeated for the life of the
 * counter (a session that restarts keeps counting). */
typedef struct ad_rpc_ids {
    int64_t next;
} ad_rpc_ids;

int64_t ad_rpc_next_id(ad_rpc_ids *ids);

#endif /* AD_MCP_JSONRPC_H */

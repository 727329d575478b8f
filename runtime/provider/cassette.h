/*
 * cassette.h -- recorded HTTP interactions (go-vcr v2 YAML cassettes).
 *
 * A cassette is the list of request/response pairs of one run, in order:
 *
 *   ---
 *   version: 2
 *   interactions:
 *   - id: 0
 *     request:  {proto, proto_major, proto_minor, content_length, host,
 *                body, headers: {Name: [value, ...]}, url, method}
 *     response: {proto, proto_major, proto_minor, content_length, body,
 *                headers, status: "200 OK", code: 200, duration: "1.5s"}
 *
 * Bodies round-trip byte-exact: save() picks a YAML style per body (literal
 * block for multi-line text, quoted otherwise, !!binary for bytes that are
 * not UTF-8), re-reads what it wrote and falls back to a stricter style for
 * any body that did not come back identical. load() accepts !!binary too.
 *
 * agentd adds one top-level key, `agentd_id_prefix`: the prefix of the
 * tool-call ids the agent generated while recording (see
 * unique_tool_call_ids), so that a replay generates the same ids and prints
 * the same events. Other readers ignore it; cassettes without it replay fine.
 * A response whose body was cut at AD_CASSETTE_MAX_BODY while recording
 * carries `agentd_truncated: true` in its response mapping; such an
 * interaction is never replayed (replay.h).
 *
 * This is the file format and the model only: recording is record.c's, a
 * replay (comparing requests with the recorded ones) replay.c's.
 */
#ifndef AD_CASSETTE_H
#define AD_CASSETTE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef struct ad_cassette ad_cassette;

/* One header line; a name that carries several values appears several times. */
typedef struct ad_cassette_header {
    char *name;  /* owned */
    char *value; /* owned */
} ad_cassette_header;

typedef struct ad_interaction {
    /* request */
    char *method; /* owned, "POST" */
    char *url;    /* owned */
    char *req_body; /* owned, NUL-terminated, req_body_len bytes (may hold NULs) */
    size_t req_body_len;
    ad_cassette_header *req_headers; /* owned array */
    size_t nreq_headers;
    /* response */
    char *proto;  /* owned, "HTTP/1.1", "HTTP/2.0" */
    long code;    /* HTTP status code */
    char *status; /* owned, "200 OK" */
    char *resp_body; /* owned, NUL-terminated, resp_body_len bytes */
    size_t resp_body_len;
    ad_cassette_header *resp_headers; /* owned array */
    size_t nresp_headers;
    double duration_s; /* wall time of the exchange; 0 when unknown */
    bool resp_truncated; /* resp_body is the first AD_CASSETTE_MAX_BODY bytes
                          * of a longer body */
} ad_interaction;

/* Bounds: a cassette file is at most 256 MiB; a recorded response body
 * keeps at most its first 64 MiB. */
#define AD_CASSETTE_MAX_FILE (256u << 20)
#define AD_CASSETTE_MAX_BODY (64u << 20)

ad_cassette *ad_cassette_new(void); /* NULL on ENOMEM */
void ad_cassette_free(ad_cassette *c);

/* Reads a cassette file (version 1 or 2). Returns 0, or a negative AD_E*
 * with err = "FILE: message" (missing file, YAML error with line, wrong
 * shape). *out is set only on success. */
int ad_cassette_load(ad_cassette **out, const char *path, char *err, size_t errlen);
/* The same from text in memory; name is used in messages. */
int ad_cassette_parse(ad_cassette **out, const char *text, size_t len, const char *name,
                      char *err, size_t errlen);

/* Writes the cassette as YAML into out (appending). */
int ad_cassette_emit(const ad_cassette *c, ad_buf *out, char *err, size_t errlen);
/* Writes the cassette to path atomically (a temporary file, then rename). */
int ad_cassette_save(const ad_cassette *c, const char *path, char *err, size_t errlen);
/* Whether ad_cassette_save(path) could write there, found by doing what it
 * does first (create the temporary file beside path, then remove it) so that
 * nothing is left behind: 0, or AD_ERR with err = "cannot write cassette
 * PATH: reason" (no such folder, a folder at path, no permission, ...). */
int ad_cassette_check_writable(const char *path, char *err, size_t errlen);

size_t ad_cassette_count(const ad_cassette *c);
/* The i-th interaction (borrowed), NULL when out of range. */
const ad_interaction *ad_cassette_get(const ad_cassette *c, size_t i);
/* Appends a deep copy of it (NULL strings become ""). */
int ad_cassette_append(ad_cassette *c, const ad_interaction *it);

/* Removes secrets from every interaction: drops Authorization headers (and
 * Proxy-Authorization) and every header whose value contains secret, and
 * replaces each occurrence of secret in URLs and bodies with "[REDACTED]".
 * secret NULL or "" only drops the Authorization headers. */
int ad_cassette_redact(ad_cassette *c, const char *secret);
/* The same for the interactions from index first on. */
int ad_cassette_redact_from(ad_cassette *c, size_t first, const char *secret);

/* The generated tool-call id prefix stored in the cassette; NULL when none. */
const char *ad_cassette_id_prefix(const ad_cassette *c);
int ad_cassette_set_id_prefix(ad_cassette *c, const char *prefix);

/* Value of the first header named name (case-insensitive), or NULL. */
const char *ad_cassette_header_get(const ad_cassette_header *h, size_t n, const char *name);

/* Formats seconds as a Go duration ("1.5s", "250ms", "2m3.5s"). */
void ad_cassette_format_duration(double s, char *out, size_t outlen);

#endif /* AD_CASSETTE_H */

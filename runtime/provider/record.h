/*
 * record.h -- a shim that records every exchange passing through another
 * transport (see transport.h; the idea of SQLite's vfstrace).
 *
 * The shim is a transport itself: start, pause and cancel go through to the
 * inner transport, every callback comes back through the shim unchanged
 * (the caller still gets every byte). Each exchange that got a response is
 * appended to the cassette when it ends, before the caller's on_done: URL,
 * request headers and body, the response's protocol, status (with the
 * reason phrase the server sent, or the standard one), headers and the body
 * bytes as delivered, up to AD_CASSETTE_MAX_BODY: a longer body is cut
 * there (the first bytes, nothing after) and the interaction marked
 * resp_truncated. A cancelled exchange, or one that never got a status, is
 * not recorded.
 *
 * No credential is ever recorded, not even in memory: the Authorization
 * and Proxy-Authorization headers and every request header that looks like
 * a credential (ad_config_sensitive_header) are left out, and the secret
 * is redacted from everything recorded (ad_cassette_redact_from) as the
 * interaction is appended.
 */
#ifndef AD_PROVIDER_RECORD_H
#define AD_PROVIDER_RECORD_H

#include "provider/cassette.h"
#include "provider/transport.h"

/* Records what passes through inner (owned from now on: closing the shim
 * closes it) into c (borrowed: it must outlive the shim). secret (copied;
 * NULL: none) is the API key. NULL on ENOMEM (inner is then not taken). */
ad_transport *ad_record_new(ad_transport *inner, ad_cassette *c, const char *secret);

#endif /* AD_PROVIDER_RECORD_H */

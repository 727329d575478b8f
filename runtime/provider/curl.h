/*
 * curl.h -- the real transport: HTTP POSTs on the libuv loop through
 * libcurl's multi interface (see transport.h for the contract).
 *
 * One curl transport drives any number of concurrent exchanges: curl tells
 * it which sockets to watch (uv_poll) and when to wake up (one uv_timer),
 * and it tells curl what happened (curl_multi_socket_action). Nothing
 * blocks the loop. The idle limit is a uv timer of its own per exchange
 * (millisecond precision, restarted by every header or body byte); the
 * connect and whole-exchange limits are curl's. pause() is curl_easy_pause:
 * curl stops reading the socket.
 *
 * A failed exchange's error is curl's message from its error buffer ("Recv
 * failure: Connection reset by peer"), or curl's text for the code.
 * transient is set for failures another attempt may cure (connect, send
 * and receive errors, a timeout, an empty reply, HTTP/2 stream errors, TLS
 * handshake failures). Retry-After (delta seconds or an HTTP date) and retry-after-ms
 * are parsed from the last response's headers.
 */
#ifndef AD_PROVIDER_CURL_H
#define AD_PROVIDER_CURL_H

#include <uv.h>

#include "provider/transport.h"

/* A new curl transport on loop; NULL on failure. curl_global_init must
 * have been called. Release with ad_transport_close() and run the loop once
 * more: the memory goes with the last handle. */
ad_transport *ad_curl_new(uv_loop_t *loop);

#endif /* AD_PROVIDER_CURL_H */

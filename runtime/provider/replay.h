/*
 * replay.h -- a transport that answers from a cassette (see transport.h).
 *
 * No connection is ever made. Each exchange takes the next interaction of
 * the cassette, after comparing the request about to be sent with the
 * recorded one by meaning, not by bytes (see ad_replay_next), and delivers
 * its status line and headers (on_header), then its body, asynchronously
 * from the loop, in pieces of 1 to 4096 bytes (a fixed pseudo-random
 * sequence, so the same replay splits the same way), then on_done with the
 * recorded status, Content-Type and protocol. A replayed error status
 * comes with retry_after_s = 0: nobody to wait for. A request that differs
 * from the recording, one past the last recorded interaction, or one whose
 * recorded response was cut (agentd_truncated) ends with code != 0, fatal
 * set and the reason as the error; ad_replay_error() keeps the first such
 * message.
 */
#ifndef AD_PROVIDER_REPLAY_H
#define AD_PROVIDER_REPLAY_H

#include <stddef.h>
#include <uv.h>

#include "provider/cassette.h"
#include "provider/transport.h"

enum {
    AD_REPLAY_IDS_EXACT = 0, /* tool-call ids must equal the recorded ones */
    AD_REPLAY_IDS_BIJECTION  /* ids are generated: a consistent one-to-one
                              * mapping between recorded and sent ids */
};

/* A replay of c (borrowed: it must outlive the transport) on loop; NULL on
 * ENOMEM. Release with ad_transport_close() and run the loop once more. */
ad_transport *ad_replay_new(uv_loop_t *loop, const ad_cassette *c, int id_mode);
/* The first mismatch (or other replay failure) reported; NULL when none. */
const char *ad_replay_error(ad_transport *t);
/* Interactions handed out so far. */
size_t ad_replay_used(ad_transport *t);

/*
 * The matcher on its own (start() uses it): takes the next recorded
 * interaction for a request with this body. Compares, by meaning: model,
 * stream (absent == false), the set of offered tool names, and the
 * messages (count; roles; system/user/tool content; assistant content
 * after trimming, null == ""; tool calls: count, names, arguments as
 * JSON-equal values, ids; tool_call_id). Returns 0 with *out set; AD_EINVAL
 * with a short diff in diff ("FIELD: recorded X, sent Y", one line per
 * difference, at most a few) when the request differs; AD_ETOOBIG with the
 * reason in diff when it matches but its response was cut while recording
 * (a replay would deliver a different response); AD_ERR when every
 * interaction was used already. The cursor advances only on success.
 */
int ad_replay_next(ad_transport *t, const char *body, size_t len, const ad_interaction **out,
                   char *diff, size_t difflen);

#endif /* AD_PROVIDER_REPLAY_H */

/*
 * api.h -- agentd serve: the Responses API and Chat Completions over the
 * HTTP server (http.h), many conversations on one loop.
 *
 * Endpoints (docs/serve.md has the details):
 *   POST /v1/responses                 a run, streamed (SSE) or answered whole
 *   GET  /v1/responses/{id}            the response object; ?stream=true
 *                                      [&starting_after=N] streams it
 *   POST /v1/responses/{id}/cancel     cancels its run
 *   POST /v1/chat/completions          a run over the whole history sent
 *   GET  /v1/models, /v1/models/{id}   the profiles
 *   GET  /health                       no token needed
 *
 * Each conversation is an agent (core/agent.h) with its own event hub and
 * two sinks: one stores its messages (serve/store.h), one turns its events
 * into the stream of the response in flight (serve/respond.h, chat.h) and
 * pauses the conversation while a client reads too slowly (http.h). A
 * response's final event goes out once the response is on disk, so a
 * client that saw it can continue from it after any crash.
 *
 * One run per conversation: a request that continues a conversation
 * whose run is still in flight gets 409. A client that goes away cancels
 * the run it started (its tools too: every call keeps its one result),
 * unless the request said background: true. At most serve.max_runs runs
 * at once (429 beyond).
 *
 * Threads: the loop thread only.
 */
#ifndef AD_SERVE_API_H
#define AD_SERVE_API_H

#include <stdio.h>
#include <uv.h>

#include "base/config.h"
#include "provider/transport.h"
#include "serve/store.h"
#include "tools/host.h"

typedef struct ad_serve ad_serve;

typedef struct ad_serve_opts {
    uv_loop_t *loop;
    const ad_config *cfg;     /* borrowed; [serve] and the profiles */
    ad_transport *transport;  /* borrowed */
    ad_tool_host *tools;      /* borrowed; may be NULL */
    ad_serve_store *store;    /* borrowed; may be NULL: nothing outlives the process */
    const char *token;        /* the bearer token (copied); NULL: none */
    FILE *log;                /* notices (draining, cancelled runs); NULL: none */
} ad_serve_opts;

/* NULL with err set (ENOMEM). */
ad_serve *ad_serve_new(const ad_serve_opts *o, char *err, size_t errlen);
/* Listens on host:port (see ad_http_server_listen). */
int ad_serve_listen(ad_serve *s, const char *host, int port, char *err, size_t errlen);
int ad_serve_port(const ad_serve *s);

/* SIGTERM: stops taking requests (503), lets the runs in flight finish
 * and cancels those still running after serve.drain_timeout_s (again:
 * at once); on_done (from the loop) once every run ended, every response
 * is on disk and every client got its answer. */
void ad_serve_drain(ad_serve *s, void (*on_done)(void *ud), void *ud);
/* Cancels every run now (a second signal while draining). */
void ad_serve_cancel_all(ad_serve *s);
/* Closes everything; no run may be in flight. Run the loop afterwards. */
void ad_serve_free(ad_serve *s);

#endif /* AD_SERVE_API_H */

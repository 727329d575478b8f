/*
 * transport.h -- how an MCP client reaches its server: the interface.
 *
 * A transport carries JSON-RPC message texts both ways and says when the
 * connection is gone. It knows nothing of MCP's methods: the client
 * (client.h) parses what arrives and decides what to send. Implementations:
 * stdio.c (a child process, one message per line), http.c (Streamable
 * HTTP on the curl transport).
 *
 * Life: open() connects (spawns the server); messages then arrive through
 * on_message until on_closed, which comes exactly once per successful
 * open(), unless stop() was called first (then on_stopped comes instead,
 * once everything the connection held is released). After on_closed or
 * on_stopped the transport may be opened again (a restart). All callbacks
 * run on the loop thread, never from inside open(), send() or stop().
 */
#ifndef AD_MCP_TRANSPORT_H
#define AD_MCP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ad_mcp_transport ad_mcp_transport;

/* Levels of the lines a transport reports (the server's stderr, lines
 * skipped). */
enum { AD_MCP_LOG_DEBUG = 0, AD_MCP_LOG_INFO = 1, AD_MCP_LOG_WARN = 2, AD_MCP_LOG_ERROR = 3 };

typedef struct ad_mcp_transport_cb {
    /* One message's text (not NUL-terminated; borrowed for the call). */
    void (*on_message)(void *ud, const char *text, size_t len);
    /* A line for the server's log: a line of its stderr (AD_MCP_LOG_INFO),
     * something skipped (AD_MCP_LOG_WARN). NUL-terminated, borrowed. */
    void (*on_log)(void *ud, int level, const char *line);
    /* A message longer than the transport's limit was skipped: its first
     * bytes (head[0..headlen), at most 1 KiB) and its whole length, so
     * that the request it answers can fail at once instead of timing out.
     * May be NULL. */
    void (*on_oversize)(void *ud, const char *head, size_t headlen, size_t total, size_t limit);
    /* The connection ended by itself (the server exited, closed its
     * output, or the transport failed). why says how, for people: "exited
     * with status 1", "was killed by signal KILL" (log_tail() has the last
     * lines of the server's log). */
    void (*on_closed)(void *ud, const char *why);
    /* The request with this (integer) id will get no answer: what carried
     * it failed while the connection lives on (Streamable HTTP: an error
     * status, a broken answer that cannot be resumed). why is for people.
     * May be NULL. */
    void (*on_request_failed)(void *ud, int64_t id, const char *why);
    /* The server replaced the session by a new one (the old one expired):
     * what it held for the old one is gone, its tool list may differ. May
     * be NULL. */
    void (*on_session)(void *ud);
} ad_mcp_transport_cb;

typedef struct ad_mcp_transport_vt {
    const char *kind; /* "stdio", "http" */
    /* Connects. Returns 0, or a negative AD_E* with err saying why (the
     * program could not be started: no on_closed follows). */
    int (*open)(ad_mcp_transport *t, char *err, size_t errlen);
    /* Queues one message (the transport adds its own framing). Returns 0,
     * or a negative AD_E* when the connection is not open (the message is
     * dropped; on_closed reports the end, if it has not yet). */
    int (*send)(ad_mcp_transport *t, const char *text, size_t len);
    /* Ends the connection the way the transport's specification says
     * (stdio: close the server's stdin, wait, SIGTERM, wait, SIGKILL) and
     * calls on_stopped(ud) when it is over. Harmless when not open:
     * on_stopped then still comes (from the loop). */
    void (*stop)(ad_mcp_transport *t, void (*on_stopped)(void *ud), void *ud);
    /* The last lines the server wrote to its log, for error messages
     * ("" when none); borrowed until the next callback. */
    const char *(*log_tail)(ad_mcp_transport *t);
    /* Releases the transport; only when it is not open (never opened,
     * after on_closed, or after on_stopped). */
    void (*free)(ad_mcp_transport *t);
} ad_mcp_transport_vt;

struct ad_mcp_transport {
    const ad_mcp_transport_vt *vt;
    const ad_mcp_transport_cb *cb; /* set by the owner before open() */
    void *ud;
};

#endif /* AD_MCP_TRANSPORT_H */

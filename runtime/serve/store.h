/*
 * store.h -- what `agentd serve` keeps: its conversations, their messages
 * and its responses, in one SQLite database written by one thread.
 *
 * The database (default $XDG_STATE_HOME/agentd/serve.db; folders 0700,
 * file 0600) has three tables: conversations (id, profile, times),
 * messages (the conversation's messages in order, as the agent holds them,
 * the API key redacted) and responses (id, its conversation, how many
 * messages the conversation had when it ended, its status and the
 * response object as GET /v1/responses/{id} returns it).
 *
 * Writes are queued on the loop thread and run, in the order queued, by a
 * writer thread of the store's own, which takes everything queued so far
 * in one transaction (a group commit: a thousand conversations at once
 * cost a few commits, not thousands). Each job gets a number; a caller
 * that must not go on before a job is on disk (a response's final event)
 * waits for it with ad_serve_store_when_done. WAL with synchronous =
 * NORMAL: a committed job survives kill -9.
 *
 * Reads run on the loop thread, on a second connection, and see what was
 * committed.
 *
 * Opening marks the responses left in_progress or queued by a process that
 * died as failed ("the server stopped while the response was running"),
 * ending where their conversation's stored messages end (what they stored
 * before the process died belongs to them).
 */
#ifndef AD_SERVE_STORE_H
#define AD_SERVE_STORE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ad_serve_store ad_serve_store;

/* $XDG_STATE_HOME/agentd/serve.db (else ~/.local/state/...); caller frees;
 * NULL when neither variable is set. */
char *ad_serve_store_default_path(void);

/* Opens (creating) the database at path and starts the writer on loop.
 * secret: never stored (copied; NULL for none). *interrupted (may be NULL)
 * gets the number of responses marked failed. Returns 0, or a negative
 * AD_E* with err naming the file and why. */
int ad_serve_store_open(ad_serve_store **out, uv_loop_t *loop, const char *path,
                        const char *secret, size_t *interrupted, char *err, size_t errlen);
/* Runs what is queued, stops the writer and closes the database; the
 * waiters still listed are called (from inside this call). Frees the store
 * once its handle closed: run the loop afterwards. Accepts NULL. */
void ad_serve_store_close(ad_serve_store *s);

/* ---- writes (loop thread) ------------------------------------------------ */

/* Each returns the job's number, or 0 when it could not be queued (ENOMEM).
 * Strings are copied. */
uint64_t ad_serve_store_conversation(ad_serve_store *s, const char *conv_id,
                                     const char *profile);
/* The message at position idx (0-based) of conv_id, as JSON text. */
uint64_t ad_serve_store_message(ad_serve_store *s, const char *conv_id, size_t idx,
                                const char *json, size_t len);
/* A new conversation to_id holding the first n messages of from_id. */
uint64_t ad_serve_store_fork(ad_serve_store *s, const char *from_id, const char *to_id,
                             const char *profile, size_t n);
/* Inserts or replaces response resp_id; json: the response object. */
uint64_t ad_serve_store_response(ad_serve_store *s, const char *resp_id, const char *conv_id,
                                 size_t nmessages, const char *status, const char *json);

/* fn(ud, ok) once every job up to number n ran (ok: job n itself was
 * written), from the loop; at once (but still from the loop) when they
 * have. Returns 0 or AD_ENOMEM. */
int ad_serve_store_when_done(ad_serve_store *s, uint64_t n, void (*fn)(void *ud, bool ok),
                             void *ud);
/* Drops the waiters with this ud (its owner goes away). */
void ad_serve_store_forget(ad_serve_store *s, void *ud);

/* ---- reads (loop thread) ------------------------------------------------- */

typedef struct ad_stored_response {
    char *conv_id;   /* owned */
    size_t nmessages;
    char *status;    /* owned */
    char *json;      /* owned: the response object, or NULL */
    char *profile;   /* owned: its conversation's profile, or NULL */
} ad_stored_response;
void ad_stored_response_free(ad_stored_response *r);

/* Returns 0 with r filled in, AD_EINVAL when no response has that id, or
 * AD_ERR with err set. */
int ad_serve_store_get_response(ad_serve_store *s, const char *resp_id, ad_stored_response *r,
                                char *err, size_t errlen);
/* The first n messages of conv_id (all: n = SIZE_MAX) as a new array
 * (caller puts). Returns 0 or AD_ERR with err set. */
int ad_serve_store_messages(ad_serve_store *s, const char *conv_id, size_t n,
                            json_object **messages, char *err, size_t errlen);

#endif /* AD_SERVE_STORE_H */

/*
 * redis.h -- one Redis connection on the libuv loop (hiredis's libuv
 * adapter) that comes back by itself, and the redis:// URL.
 *
 * Requests go out in the order they were made and their replies come back
 * in that order. The connection is made at ad_redis_new() and, with
 * `reconnect`, made again whenever it is lost: after a wait that doubles
 * from 0.1 s up to 5 s (with jitter), so a Redis that is down costs a few
 * connection attempts a second at first and one every few seconds later,
 * never a busy loop. Each (re)connection first authenticates, selects the
 * database and loads the registered Lua scripts; requests wait until then.
 *
 * What happens to a request when the connection is lost before its reply
 * came: with AD_REDIS_RETRY it is sent again, in its place in the order,
 * once the connection is back (it may then run twice on the server: such
 * requests are written to be harmless when repeated); without it, its
 * callback gets NULL. Without `reconnect`, a lost connection answers every
 * waiting request with NULL, and later requests are refused.
 *
 * A connection is declared lost when the server does not answer a request
 * within reply_timeout_s (a Redis stopped with SIGSTOP, a network gone
 * quiet), or does not accept the connection within connect_timeout_s: it is
 * dropped and made again. A blocking command (XREADGROUP BLOCK) must block
 * for less than reply_timeout_s.
 *
 * Host names are resolved by hiredis with a blocking getaddrinfo at each
 * connection attempt; use an address or a local name.
 *
 * Threads: the loop thread only. Callbacks never run from inside
 * ad_redis_command() or ad_redis_eval(), except from ad_redis_close().
 */
#ifndef AD_WORKER_REDIS_H
#define AD_WORKER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/lazy_hiredis.h"

/* ---- the URL ------------------------------------------------------------ */

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH[?db=DB]. The
 * password may instead come from $AGENTD_REDIS_PASSWORD (it then stays out
 * of the process list). */
typedef struct ad_redis_url {
    char *host; /* owned; NULL for a unix socket */
    int port;
    char *path; /* owned: the socket, or NULL */
    int db;
    char *user;     /* owned or NULL */
    char *password; /* owned or NULL; never printed */
    char *shown;    /* owned: the URL without the password, for messages */
} ad_redis_url;

/* Returns 0, or AD_EINVAL with err saying what is wrong with url (the
 * password never appears in err). */
int ad_redis_url_parse(ad_redis_url *u, const char *url, char *err, size_t errlen);
int ad_redis_url_copy(ad_redis_url *dst, const ad_redis_url *src);
void ad_redis_url_free(ad_redis_url *u); /* accepts a zeroed struct */

/* ---- the connection ----------------------------------------------------- */

typedef struct ad_redis ad_redis;

/* A Lua script, loaded (SCRIPT LOAD) at every connection and run with
 * EVALSHA. The SHA is filled in by the first connection that loads it. */
typedef struct ad_redis_script {
    const char *name; /* for messages */
    const char *src;
    char sha[41];
} ad_redis_script;

/* The reply (borrowed until return; an error reply is a REDIS_REPLY_ERROR),
 * or NULL when there is none (see above). */
typedef void (*ad_redis_reply_fn)(void *ud, redisReply *reply);
/* The connection is ready (up) or was lost (why says how; a failed attempt
 * to connect again reports nothing new until one succeeds). */
typedef void (*ad_redis_state_fn)(void *ud, bool up, const char *why);

typedef struct ad_redis_opts {
    uv_loop_t *loop;
    const ad_redis_url *url; /* copied */
    bool reconnect;
    double connect_timeout_s; /* 0: 5 s */
    double reply_timeout_s;   /* 0: 10 s */
    ad_redis_script *const *scripts; /* borrowed; must outlive the connection */
    size_t nscripts;
    ad_redis_state_fn on_state; /* may be NULL */
    void *ud;
} ad_redis_opts;

enum { AD_REDIS_RETRY = 1u << 0 };

/* Loads hiredis (lazy.h) and starts connecting. NULL with err set when
 * hiredis cannot be loaded (or on ENOMEM). */
ad_redis *ad_redis_new(const ad_redis_opts *o, char *err, size_t errlen);
/* Answers every waiting request with NULL (from inside this call), drops
 * the connection and releases everything; its handles close on the loop:
 * run it once more. Accepts NULL. */
void ad_redis_close(ad_redis *r);
/* True while connected and ready. */
bool ad_redis_up(const ad_redis *r);
/* Connection attempts made so far. */
unsigned long ad_redis_attempts(const ad_redis *r);
/* Requests sent or waiting to be sent. */
size_t ad_redis_pending(const ad_redis *r);

/* Queues a command (argv[0..argc) with lengths, copied; lens NULL: C
 * strings). Returns 0, or AD_ERR when it cannot be sent (closing, or down
 * without `reconnect`; nothing is called back then), AD_ENOMEM. */
int ad_redis_command(ad_redis *r, unsigned flags, ad_redis_reply_fn fn, void *ud, int argc,
                     const char *const *argv, const size_t *lens);
/* EVALSHA of s with argv[0..nkeys) as its KEYS and the rest as its ARGV.
 * s must be one of the connection's scripts. */
int ad_redis_eval(ad_redis *r, const ad_redis_script *s, unsigned flags, ad_redis_reply_fn fn,
                  void *ud, int nkeys, int argc, const char *const *argv, const size_t *lens);

/* ---- reading replies ---------------------------------------------------- */

/* The reply as a short message for people ("ERR ...", "no reply (connection
 * lost)", "unexpected reply type 3"). */
const char *ad_redis_reply_error(const redisReply *r);
/* Element i of an array reply, or NULL. */
redisReply *ad_redis_at(const redisReply *r, size_t i);
/* A string or status reply's text (NULL otherwise); its length in *len. */
const char *ad_redis_str(const redisReply *r, size_t *len);
/* True when r is a string or status reply equal to s. */
bool ad_redis_is(const redisReply *r, const char *s);
/* An integer reply, or a string holding one; def otherwise. */
long long ad_redis_int(const redisReply *r, long long def);

#endif /* AD_WORKER_REDIS_H */

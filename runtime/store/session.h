/*
 * session.h -- conversations stored in an embedded SQLite database.
 *
 * One database file (default $XDG_STATE_HOME/agentd/sessions.db, folders
 * 0700, file 0600) holds every session: its messages exactly as the agent
 * keeps them (one row per message, each in its own transaction), the tool
 * calls and results broken out (name, arguments, content, is_error,
 * duration), and per-step usage and timings. The API key is never written:
 * every stored string has it replaced by "[REDACTED]".
 *
 * During a run the writes are made by a writer thread (store/writer.h) fed
 * by the session store sink (sinks/store.h): a message is queued the moment
 * it is appended and committed in order. What a kill can leave is an
 * assistant message whose tool calls have no results yet;
 * ad_session_load() repairs that (ad_conv_repair) before the history is
 * sent again, and stores the repair.
 *
 * Threads: an ad_session is used by one thread at a time (the loop thread
 * before and after a run, the writer thread during it).
 */
#ifndef AD_SESSION_H
#define AD_SESSION_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/agent.h"
#include "base/config.h"

/* The schema version this build writes (PRAGMA user_version). Older
 * databases are migrated on open; newer ones are refused. */
#define AD_SESSION_SCHEMA_VERSION 2

/* Returned when no session has the given name (the CLI exits 2). */
#define AD_SESSION_UNKNOWN (-20)

typedef struct ad_session ad_session;

/* $XDG_STATE_HOME/agentd/sessions.db, else $HOME/.local/state/agentd/
 * sessions.db. New string (caller frees), or NULL when neither is set. */
char *ad_session_default_path(void);

/* Opens the database at path, creating its missing folders (0700) and the
 * file (0600), and brings the schema up to date. create = false: a missing
 * file is AD_SESSION_UNKNOWN instead. */
int ad_session_open(ad_session **out, const char *path, bool create, char *err, size_t errlen);
void ad_session_close(ad_session *s); /* accepts NULL */

/* The schema version of the open database. */
int ad_session_schema_version(ad_session *s);

/* The string never to store (copied); NULL or "" for none. */
void ad_session_set_secret(ad_session *s, const char *secret);

/* Makes `name` the current session: an existing one is resumed (its model
 * and config path updated), a missing one created when create is true
 * (else AD_SESSION_UNKNOWN). name NULL: a new session named by a generated
 * id. *created (may be NULL) tells which happened. */
int ad_session_start(ad_session *s, const char *name, bool create, const char *model,
                     const char *config_path, bool *created, char *err, size_t errlen);
/* The name of the most recently updated session into *name (caller frees),
 * or AD_SESSION_UNKNOWN when there is none. */
int ad_session_last(ad_session *s, char **name, char *err, size_t errlen);
/* The current session's name, or NULL. */
const char *ad_session_name(const ad_session *s);

/* The current session's history, repaired, as a new array (caller puts).
 * Repair messages that extend the stored history are stored too. */
int ad_session_load(ad_session *s, json_object **messages, char *err, size_t errlen);

/* Appends msg (borrowed) to the current session in its own transaction;
 * _at: at time t (Unix seconds; 0: now). */
int ad_session_append(ad_session *s, json_object *msg, int step, char *err, size_t errlen);
int ad_session_append_at(ad_session *s, json_object *msg, int step, double t, char *err,
                         size_t errlen);
/* The conversation was replaced (the REPL's /reset, /system, /load): a new
 * unnamed session starts, holding `messages` (an array, borrowed); the old
 * session keeps its history. */
int ad_session_fork(ad_session *s, json_object *messages, double t, char *err, size_t errlen);
/* Fills in is_error and the duration of the call answered last by a tool
 * message with that call id. */
int ad_session_tool_result(ad_session *s, const char *call_id, bool is_error, double seconds,
                           char *err, size_t errlen);

/* The counters of a usage object ({prompt,completion,total}_tokens, cost),
 * as plain values a writer thread can take. */
typedef struct ad_session_usage {
    bool has[3];
    int64_t n[3]; /* prompt, completion, total */
    bool has_cost;
    double cost;
} ad_session_usage;
void ad_session_usage_of(json_object *usage, ad_session_usage *u);
/* Stores a step's end at time t (0: now): its finish reason (may be NULL)
 * and usage (may be NULL); it began with the previous step's end or the
 * prompt. */
int ad_session_step(ad_session *s, int step, const char *finish_reason,
                    const ad_session_usage *u, double t, char *err, size_t errlen);

/* ---- for main.c ---------------------------------------------------------- */

/* Sets up the store for a run of `agent`: opens cfg's database, starts or
 * resumes the session (name, or the last one when cont), and loads its
 * history into the agent (a new session stores the agent's first messages,
 * the system prompt). The caller then hands *out to a store sink
 * (sinks/store.h) on the agent's hub. *out is NULL when sessions are
 * disabled. Returns 0, AD_EINVAL (usage: exit 2), AD_SESSION_UNKNOWN (exit
 * 2), or another negative code (exit 1); err says why. Without name and
 * cont a failure to open is the caller's to soften. */
int ad_session_attach(ad_session **out, const ad_config *cfg, const char *name, bool cont,
                      ad_agent *agent, char *err, size_t errlen);

/* `agentd sessions ...` with argv[0] = "sessions". Returns the exit code. */
int ad_session_cli(int argc, char **argv);

/* Output of the subcommands (exposed for tests). Unknown name:
 * AD_SESSION_UNKNOWN with err saying so. */
int ad_session_list(ad_session *s, FILE *out, char *err, size_t errlen);
int ad_session_show(ad_session *s, const char *name, FILE *out, char *err, size_t errlen);
int ad_session_export(ad_session *s, const char *name, FILE *out, char *err, size_t errlen);
int ad_session_remove(ad_session *s, const char *name, char *err, size_t errlen);

#endif /* AD_SESSION_H */

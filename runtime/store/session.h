/*
 * session.h -- conversations stored in an embedded SQLite database.
 *
 * One database file (default $XDG_STATE_HOME/agentd/sessions.db, folders
 * 0700, file 0600) holds every session: its messages exactly as the agent
 * keeps them (one row per message, written in its own transaction the
 * moment the agent appends it), the tool calls and results broken out
 * (name, arguments, content, is_error, duration), and per-step usage and
 * timings. The API key is never written: every stored string has it
 * replaced by "[REDACTED]".
 *
 * A process killed at any moment leaves every completed message on disk.
 * What it can leave is an assistant message whose tool calls have no
 * results yet; ad_session_load() repairs that (ad_conv_repair) before
 * the history is sent again, and stores the repair.
 */
#ifndef AD_SESSION_H
#define AD_SESSION_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/agent.h"
#include "base/config.h"
#include "core/events.h"

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
/* Where a failed write is reported (once per session; may be NULL). */
void ad_session_set_events(ad_session *s, ad_events *ev);

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

/* Appends msg (borrowed) to the current session in its own transaction. */
int ad_session_append(ad_session *s, json_object *msg, int step, char *err, size_t errlen);

/* Hooks for ad_agent_set_observer() and ad_events_set_tap(); ud is the
 * ad_session. Write errors go to the events sink (see set_events). */
/* Follows agent's conversation from now on: when it was replaced between
 * two messages (ad_agent_load_messages: the REPL's /reset, /system, /load),
 * the next message starts a new unnamed session holding the conversation
 * as it then is; the old session keeps its history. */
void ad_session_follow(ad_session *s, ad_agent *agent);
void ad_session_on_message(void *ud, json_object *msg, int step);
void ad_session_on_event(void *ud, json_object *ev);

/* ---- for main.c ---------------------------------------------------------- */

/* Sets up the store for a run of `agent`: opens cfg's database, starts or
 * resumes the session (name, or the last one when cont), loads its history
 * into the agent (a new session stores the agent's first messages, the
 * system prompt), and installs the observer and the event tap. *out is NULL
 * when sessions are disabled. Returns 0, AD_EINVAL (usage: exit 2),
 * AD_SESSION_UNKNOWN (exit 2), or another negative code (exit 1); err says
 * why. Without name and cont a failure to open is the caller's to soften. */
int ad_session_attach(ad_session **out, const ad_config *cfg, const char *name, bool cont,
                      ad_agent *agent, ad_events *ev, char *err, size_t errlen);

/* `agentd sessions ...` with argv[0] = "sessions". Returns the exit code. */
int ad_session_cli(int argc, char **argv);

/* Output of the subcommands (exposed for tests). Unknown name:
 * AD_SESSION_UNKNOWN with err saying so. */
int ad_session_list(ad_session *s, FILE *out, char *err, size_t errlen);
int ad_session_show(ad_session *s, const char *name, FILE *out, char *err, size_t errlen);
int ad_session_export(ad_session *s, const char *name, FILE *out, char *err, size_t errlen);
int ad_session_remove(ad_session *s, const char *name, char *err, size_t errlen);

#endif /* AD_SESSION_H */

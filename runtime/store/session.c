/*
 * session.c -- the session store (see session.h).
 *
 * Data flow: a message -> its JSON text (serialised without leaving a copy
 * in the message), redacted when it holds the key -> one IMMEDIATE
 * transaction inserts the message row,
 * breaks out its tool calls or fills in the result of the call it answers,
 * and touches the session's `updated`. ad_session_tool_result() and
 * ad_session_step() add what no message carries: is_error and duration of
 * each result, and per-step usage and timing. During a run these are
 * called on the session writer's thread (store/writer.h), in the order the
 * conversation produced them.
 *
 * Durability: WAL with synchronous = NORMAL. Each message is a commit; the
 * WAL write has reached the kernel before COMMIT returns, so a completed
 * message survives kill -9 at any moment. A power cut or an OS crash may
 * lose the last messages (FULL would fsync at every commit to prevent that,
 * at several milliseconds per message on this kind of disk, which a
 * one-shot run that starts in a few milliseconds cannot afford).
 *
 * Invariants: seq numbers of a session are 1..n without gaps, in the order
 * the agent appended; a message row is never rewritten. Repairs of a broken
 * tail (tool calls killed before their results) are appended, never
 * patched in. The schema version lives in PRAGMA user_version; migrations
 * run in order, each in its own transaction.
 */
#define _GNU_SOURCE /* memmem */
#include "store/session.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base64.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"
#include "core/conv.h"

/* How a message is kept: as the request sends it. */
#define STORE_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct ad_session {
    sqlite3 *db;
    char *path;
    sqlite3_int64 id; /* the current session's row; 0: none */
    char *name;       /* the current session's name */
    char *secret;
    double mark;               /* when the step in progress started */
    sqlite3_int64 last_seq;    /* the last message stored by this process */
    char *model, *config_path; /* of the current session, for a fork */
    /* Prepared statements, kept for reuse: compiling SQL costs more than
     * running it, and a run stores a few rows per message. Keyed by the
     * address of the SQL text (all of it is string literals). */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[32];
    size_t ncache;
};

/* ---- schema ------------------------------------------------------------- */

/* migrations[i] takes a database from version i to i + 1. Never edit one
 * that has shipped: add the next. */
static const char *const migrations[] = {
    /* 1: sessions, their messages, and the tool calls broken out. */
    "CREATE TABLE sessions ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created REAL NOT NULL,"
    "  updated REAL NOT NULL,"
    "  model TEXT,"
    "  config_path TEXT);"
    "CREATE INDEX sessions_by_updated ON sessions (updated);"
    "CREATE TABLE messages ("
    "  session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  role TEXT NOT NULL,"
    "  json TEXT NOT NULL,"
    "  step INTEGER,"
    "  time REAL NOT NULL,"
    "  PRIMARY KEY (session, seq));"
    "CREATE TABLE tool_calls ("
    "  session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  call_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  arguments TEXT NOT NULL,"
    "  result_seq INTEGER,"
    "  content TEXT,"
    "  is_error INTEGER,"
    "  duration REAL,"
    "  PRIMARY KEY (session, seq, idx));"
    "CREATE INDEX tool_calls_by_id ON tool_calls (session, call_id);",
    /* 2: usage and timing of each step. */
    "CREATE TABLE steps ("
    "  session INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  finish_reason TEXT,"
    "  prompt_tokens INTEGER,"
    "  completion_tokens INTEGER,"
    "  total_tokens INTEGER,"
    "  cost REAL,"
    "  started REAL NOT NULL,"
    "  ended REAL NOT NULL);"
    "CREATE INDEX steps_by_session ON steps (session, seq);",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == AD_SESSION_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int db_fail(ad_session *s, char *err, size_t errlen, const char *what)
{
    ad_errf(err, errlen, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
    return AD_ERR;
}

static int exec(ad_session *s, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, errlen, sql);
    return AD_OK;
}

static void rollback(ad_session *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A statement for sql, ready to bind: a cached one when there is one.
 * Give it back with release(). */
static sqlite3_stmt *prepare(ad_session *s, const char *sql, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->ncache; i++) {
        if (s->cache[i].sql == sql) {
            sqlite3_reset(s->cache[i].st);
            sqlite3_clear_bindings(s->cache[i].st);
            return s->cache[i].st;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(s, err, errlen, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    if (s->ncache < sizeof s->cache / sizeof s->cache[0]) {
        s->cache[s->ncache].sql = sql;
        s->cache[s->ncache].st = st;
        s->ncache++;
    }
    return st;
}

/* Ends the use of a statement from prepare(): a cached one is reset (so it
 * holds no read transaction open), any other finalized. */
static void release(ad_session *s, sqlite3_stmt *st)
{
    for (size_t i = 0; i < s->ncache; i++) {
        if (s->cache[i].st == st) {
            sqlite3_reset(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static json_object *tool_calls_of(json_object *msg)
{
    json_object *v;
    const char *role = ad_json_str(msg, "role");
    if (!role || strcmp(role, "assistant") != 0 ||
        !json_object_object_get_ex(msg, "tool_calls", &v) || !json_object_is_type(v, json_type_array))
        return NULL;
    return v;
}

static const char *call_id(json_object *call)
{
    const char *id = ad_json_str(call, "id");
    return id ? id : "";
}

char *ad_session_default_path(void)
{
    return ad_state_path("sessions.db");
}

/* ---- open and migrate --------------------------------------------------- */

static int user_version(ad_session *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    release(s, st);
    return v;
}

int ad_session_schema_version(ad_session *s)
{
    return user_version(s);
}

static int migrate(ad_session *s, char *err, size_t errlen)
{
    /* The usual case, a current schema, needs no write lock. */
    if (user_version(s) == AD_SESSION_SCHEMA_VERSION)
        return AD_OK;
    for (;;) {
        /* Under the write lock, so two processes never run one migration
         * twice: the version is read again inside the transaction. */
        if (exec(s, "BEGIN IMMEDIATE", err, errlen) != AD_OK)
            return AD_ERR;
        int v = user_version(s);
        if (v < 0) {
            rollback(s);
            return db_fail(s, err, errlen, "cannot read the schema version");
        }
        if (v > AD_SESSION_SCHEMA_VERSION) {
            rollback(s);
            ad_errf(err, errlen,
                    "%s: written by a newer agentd (schema version %d; this one knows up to %d)",
                    s->path, v, AD_SESSION_SCHEMA_VERSION);
            return AD_EINVAL;
        }
        if (v == AD_SESSION_SCHEMA_VERSION)
            return exec(s, "COMMIT", err, errlen);
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        if (exec(s, migrations[v], err, errlen) != AD_OK || exec(s, set, err, errlen) != AD_OK ||
            exec(s, "COMMIT", err, errlen) != AD_OK) {
            rollback(s);
            return AD_ERR;
        }
    }
}

int ad_session_open(ad_session **out, const char *path, bool create, char *err, size_t errlen)
{
    *out = NULL;
    if (!path || !path[0]) {
        ad_errf(err, errlen, "no path for the session database");
        return AD_EINVAL;
    }
    struct stat st;
    if (!create && stat(path, &st) != 0) {
        ad_errf(err, errlen, "%s: no session database yet", path);
        return AD_SESSION_UNKNOWN;
    }
    int made = ad_make_private_file(path, err, errlen);
    if (made != AD_OK)
        return made;
    ad_session *s = calloc(1, sizeof *s);
    if (!s || !(s->path = ad_strdup(path))) {
        free(s);
        return AD_ENOMEM;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        int rc = db_fail(s, err, errlen, "cannot open");
        ad_session_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_extended_result_codes(s->db, 1);
    int rc = exec(s, "PRAGMA journal_mode = WAL", err, errlen);
    if (rc == AD_OK)
        rc = exec(s, "PRAGMA synchronous = NORMAL", err, errlen);
    if (rc == AD_OK)
        rc = exec(s, "PRAGMA foreign_keys = ON", err, errlen);
    if (rc == AD_OK)
        rc = migrate(s, err, errlen);
    if (rc != AD_OK) {
        ad_session_close(s);
        return rc;
    }
    s->mark = now_s();
    *out = s;
    return AD_OK;
}

void ad_session_close(ad_session *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ncache; i++)
        sqlite3_finalize(s->cache[i].st);
    sqlite3_close(s->db);
    free(s->path);
    free(s->name);
    free(s->model);
    free(s->config_path);
    if (s->secret) {
        volatile char *p = s->secret;
        while (*p)
            *p++ = 0;
        free(s->secret);
    }
    free(s);
}

void ad_session_set_secret(ad_session *s, const char *secret)
{
    free(s->secret);
    s->secret = secret && secret[0] ? ad_strdup(secret) : NULL;
}

const char *ad_session_name(const ad_session *s)
{
    return s->name;
}

/* ---- choosing the session ----------------------------------------------- */

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 256 || name[0] == '-')
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* A name for an unnamed session: UTC time plus 24 random bits. */
static char *generated_name(void)
{
    unsigned char r[3] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r) {
        unsigned x = (unsigned)getpid() ^ (unsigned)time(NULL) ^ (unsigned)clock();
        r[0] = (unsigned char)x, r[1] = (unsigned char)(x >> 8), r[2] = (unsigned char)(x >> 16);
    }
    if (fd >= 0)
        close(fd);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y%m%d-%H%M%S", &tm);
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "%s-%02x%02x%02x", day, r[0], r[1], r[2]);
    return ad_buf_steal(&b);
}

/* The row of the session called name: its id (and, when wanted, model and
 * times); AD_SESSION_UNKNOWN with err set when there is none. */
static int lookup(ad_session *s, const char *name, sqlite3_int64 *id, char **model, double *created,
                  double *updated, char *err, size_t errlen)
{
    sqlite3_stmt *st = prepare(
        s, "SELECT id, COALESCE(model, ''), created, updated FROM sessions WHERE name = ?", err,
        errlen);
    if (!st)
        return AD_ERR;
    bind_text(st, 1, name);
    int rc = sqlite3_step(st), ret = AD_OK;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (model)
            *model = ad_strdup((const char *)sqlite3_column_text(st, 1));
        if (created)
            *created = sqlite3_column_double(st, 2);
        if (updated)
            *updated = sqlite3_column_double(st, 3);
    } else if (rc == SQLITE_DONE) {
        ad_errf(err, errlen, "no session named '%s' (see 'agentd sessions list')", name);
        ret = AD_SESSION_UNKNOWN;
    } else {
        ret = db_fail(s, err, errlen, "cannot look up the session");
    }
    release(s, st);
    return ret;
}

int ad_session_start(ad_session *s, const char *name, bool create, const char *model,
                     const char *config_path, bool *created, char *err, size_t errlen)
{
    if (created)
        *created = false;
    char *nm = name ? ad_strdup(name) : generated_name();
    if (!nm)
        return AD_ENOMEM;
    if (!valid_name(nm)) {
        ad_errf(err, errlen,
                "invalid session name '%s' (1 to 256 characters, no control characters, not "
                "starting with '-')",
                nm);
        free(nm);
        return AD_EINVAL;
    }
    sqlite3_int64 id = 0;
    int found = lookup(s, nm, &id, NULL, NULL, NULL, err, errlen);
    if (found == AD_SESSION_UNKNOWN && create)
        found = AD_OK; /* id stays 0: a new session */
    if (found != AD_OK) {
        free(nm);
        return found;
    }
    double t = now_s();
    sqlite3_stmt *st;
    if (id == 0)
        st = prepare(s,
                     "INSERT INTO sessions (name, created, updated, model, config_path) "
                     "VALUES (?1, ?2, ?2, ?3, ?4)",
                     err, errlen);
    else
        st = prepare(s, "UPDATE sessions SET model = ?3, config_path = ?4 WHERE name = ?1", err,
                     errlen);
    if (!st) {
        free(nm);
        return AD_ERR;
    }
    bind_text(st, 1, nm);
    sqlite3_bind_double(st, 2, t);
    bind_text(st, 3, model);
    bind_text(st, 4, config_path);
    if (sqlite3_step(st) != SQLITE_DONE) {
        int rc = db_fail(s, err, errlen, id ? "cannot update the session" : "cannot create the session");
        release(s, st);
        free(nm);
        return rc;
    }
    release(s, st);
    if (id == 0) {
        id = sqlite3_last_insert_rowid(s->db);
        if (created)
            *created = true;
    }
    free(s->name);
    s->name = nm;
    s->id = id;
    s->mark = t;
    s->last_seq = 0;
    if (model != s->model) {
        free(s->model);
        s->model = model ? ad_strdup(model) : NULL;
    }
    if (config_path != s->config_path) {
        free(s->config_path);
        s->config_path = config_path ? ad_strdup(config_path) : NULL;
    }
    return AD_OK;
}

int ad_session_last(ad_session *s, char **name, char *err, size_t errlen)
{
    *name = NULL;
    sqlite3_stmt *st =
        prepare(s, "SELECT name FROM sessions ORDER BY updated DESC, id DESC LIMIT 1", err, errlen);
    if (!st)
        return AD_ERR;
    int rc = sqlite3_step(st);
    int ret = AD_OK;
    if (rc == SQLITE_ROW) {
        *name = ad_strdup((const char *)sqlite3_column_text(st, 0));
        if (!*name)
            ret = AD_ENOMEM;
    } else if (rc == SQLITE_DONE) {
        ad_errf(err, errlen, "no session to continue (none stored in %s)", s->path);
        ret = AD_SESSION_UNKNOWN;
    } else {
        ret = db_fail(s, err, errlen, "cannot find the last session");
    }
    release(s, st);
    return ret;
}

/* ---- writing ------------------------------------------------------------ */

/* The JSON text the store keeps of msg (not yet redacted), serialised
 * without leaving a copy of it inside msg. Caller frees. */
static char *message_json(json_object *msg, size_t *len)
{
    /* json-c keeps the text of an object it serialised inside that object
     * for as long as it lives: for a message, one more copy of the
     * conversation. A shallow twin that shares the message's members is
     * serialised instead and takes that text with it. */
    json_object *twin = NULL;
    if (json_object_is_type(msg, json_type_object)) {
        twin = json_object_new_object();
        json_object_object_foreach(msg, k, v)
        {
            /* The key stays valid: msg outlives twin. */
            if (twin && json_object_object_add_ex(twin, k, json_object_get(v),
                                                  JSON_C_OBJECT_ADD_KEY_IS_NEW |
                                                      JSON_C_OBJECT_KEY_IS_CONSTANT) != 0) {
                json_object_put(v);
                json_object_put(twin);
                twin = NULL;
            }
        }
        if (!twin)
            return NULL;
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(twin ? twin : msg, STORE_JSON_FLAGS, &n);
    char *out = s ? ad_strndup(s, n) : NULL;
    json_object_put(twin);
    if (out && len)
        *len = n;
    return out;
}

/* True when the key can appear in json-c's text only escaped: then a
 * search of the text cannot tell whether a message holds it. */
static bool secret_escapes(const char *secret)
{
    for (const unsigned char *p = (const unsigned char *)secret; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\')
            return true;
    return false;
}

/* Stores msg, whose text json[0..len) is. is_error: -1 unknown (the tool
 * result fills it in), else 0 or 1. */
static int append_text(ad_session *s, json_object *msg, const char *json, size_t len, int step,
                       int is_error, double t, char *err, size_t errlen)
{
    if (!s->id) {
        ad_errf(err, errlen, "no current session");
        return AD_EINVAL;
    }
    json_object *parsed = json_object_get(msg);
    /* The text is stored as it came unless it holds the key: then the
     * message is redacted and written again (as the conversation would
     * serialise the redacted message). */
    json_object *m = parsed;
    const char *text = json;
    size_t sl = s->secret ? strlen(s->secret) : 0;
    if (sl >= AD_REDACT_MIN && (secret_escapes(s->secret) || memmem(json, len, s->secret, sl))) {
        m = ad_redact_json(parsed, s->secret);
        json_object_put(parsed);
        if (!m)
            return AD_ENOMEM;
        text = json_object_to_json_string_ext(m, STORE_JSON_FLAGS);
    }
    const char *role = ad_json_str(m, "role");
    if (t <= 0)
        t = now_s();
    int rc = AD_ERR;
    sqlite3_stmt *st = NULL;
    sqlite3_int64 seq = 0;
    if (exec(s, "BEGIN IMMEDIATE", err, errlen) != AD_OK)
        goto out;
    st = prepare(s, "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session = ?", err, errlen);
    if (!st)
        goto out;
    sqlite3_bind_int64(st, 1, s->id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        db_fail(s, err, errlen, "cannot number the message");
        goto out;
    }
    seq = sqlite3_column_int64(st, 0);
    release(s, st);
    st = prepare(s, "INSERT INTO messages (session, seq, role, json, step, time) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                 err, errlen);
    if (!st)
        goto out;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, seq);
    bind_text(st, 3, role ? role : "");
    bind_text(st, 4, text);
    if (step > 0)
        sqlite3_bind_int(st, 5, step);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_double(st, 6, t);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(s, err, errlen, "cannot store the message");
        goto out;
    }
    release(s, st);
    st = NULL;
    json_object *calls = tool_calls_of(m);
    for (size_t i = 0; calls && i < json_object_array_length(calls); i++) {
        json_object *c = json_object_array_get_idx(calls, i), *fn = NULL;
        if (json_object_is_type(c, json_type_object))
            json_object_object_get_ex(c, "function", &fn);
        const char *name = ad_json_str(fn, "name"), *args = ad_json_str(fn, "arguments");
        st = prepare(s,
                     "INSERT INTO tool_calls (session, seq, idx, call_id, name, arguments) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     err, errlen);
        if (!st)
            goto out;
        sqlite3_bind_int64(st, 1, s->id);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)i);
        bind_text(st, 4, call_id(c));
        bind_text(st, 5, name ? name : "");
        bind_text(st, 6, args ? args : "");
        if (sqlite3_step(st) != SQLITE_DONE) {
            db_fail(s, err, errlen, "cannot store a tool call");
            goto out;
        }
        release(s, st);
        st = NULL;
    }
    if (role && strcmp(role, "tool") == 0) {
        /* The latest unanswered call with that id is the one answered. */
        st = prepare(s,
                     "UPDATE tool_calls SET result_seq = ?1, content = ?2, "
                     "is_error = coalesce(?3, is_error) "
                     "WHERE rowid = (SELECT rowid FROM tool_calls WHERE session = ?4 AND "
                     "call_id = ?5 AND result_seq IS NULL ORDER BY seq DESC, idx LIMIT 1)",
                     err, errlen);
        if (!st)
            goto out;
        sqlite3_bind_int64(st, 1, seq);
        const char *content = ad_json_str(m, "content");
        if (content)
            bind_text(st, 2, content);
        else
            bind_text(st, 2, json_object_to_json_string_ext(
                                 json_object_object_get(m, "content"), JSON_C_TO_STRING_PLAIN));
        if (is_error >= 0)
            sqlite3_bind_int(st, 3, is_error);
        else
            sqlite3_bind_null(st, 3);
        sqlite3_bind_int64(st, 4, s->id);
        bind_text(st, 5, ad_json_str(m, "tool_call_id") ? ad_json_str(m, "tool_call_id") : "");
        if (sqlite3_step(st) != SQLITE_DONE) {
            db_fail(s, err, errlen, "cannot store a tool result");
            goto out;
        }
        release(s, st);
        st = NULL;
    }
    st = prepare(s, "UPDATE sessions SET updated = ? WHERE id = ?", err, errlen);
    if (!st)
        goto out;
    sqlite3_bind_double(st, 1, t);
    sqlite3_bind_int64(st, 2, s->id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_fail(s, err, errlen, "cannot update the session");
        goto out;
    }
    if (exec(s, "COMMIT", err, errlen) != AD_OK)
        goto out;
    s->last_seq = seq;
    if (role && strcmp(role, "user") == 0)
        s->mark = t; /* a prompt starts the run's first step */
    rc = AD_OK;
out:
    release(s, st);
    if (rc != AD_OK)
        rollback(s);
    json_object_put(m);
    return rc;
}

/* A message (borrowed) with is_error as for append_text. */
static int append_ex(ad_session *s, json_object *msg, int step, int is_error, double t, char *err,
                     size_t errlen)
{
    if (!json_object_is_type(msg, json_type_object)) {
        ad_errf(err, errlen, "a message must be a JSON object");
        return AD_EINVAL;
    }
    size_t len = 0;
    char *text = message_json(msg, &len);
    if (!text)
        return AD_ENOMEM;
    int rc = append_text(s, msg, text, len, step, is_error, t, err, errlen);
    free(text);
    return rc;
}

int ad_session_append(ad_session *s, json_object *msg, int step, char *err, size_t errlen)
{
    return append_ex(s, msg, step, -1, 0, err, errlen);
}

int ad_session_append_at(ad_session *s, json_object *msg, int step, double t, char *err,
                         size_t errlen)
{
    return append_ex(s, msg, step, -1, t, err, errlen);
}

int ad_session_fork(ad_session *s, json_object *messages, double t, char *err, size_t errlen)
{
    int rc = ad_session_start(s, NULL, true, s->model, s->config_path, NULL, err, errlen);
    size_t n = json_object_is_type(messages, json_type_array) ? json_object_array_length(messages)
                                                               : 0;
    for (size_t i = 0; rc == AD_OK && i < n; i++)
        rc = append_ex(s, json_object_array_get_idx(messages, i), 0, -1, t, err, errlen);
    return rc;
}

/* A call's result may come before its tool message (results are reported
 * as calls finish, the messages once all of them are in): the call's row is
 * the latest one with its id, answered or not. */
int ad_session_tool_result(ad_session *s, const char *call, bool is_error, double seconds,
                           char *err, size_t errlen)
{
    if (!s->id)
        return AD_OK;
    sqlite3_stmt *st = prepare(s,
                               "UPDATE tool_calls SET is_error = ?1, duration = ?2 WHERE rowid = "
                               "(SELECT rowid FROM tool_calls WHERE session = ?3 AND call_id = ?4 "
                               "ORDER BY seq DESC, idx LIMIT 1)",
                               err, errlen);
    if (!st)
        return AD_ERR;
    sqlite3_bind_int(st, 1, is_error);
    sqlite3_bind_double(st, 2, seconds);
    sqlite3_bind_int64(st, 3, s->id);
    bind_text(st, 4, call ? call : "");
    int rc = sqlite3_step(st) == SQLITE_DONE ? AD_OK : db_fail(s, err, errlen, "cannot store a tool result");
    release(s, st);
    return rc;
}

static bool int_field(json_object *o, const char *key, int64_t *v)
{
    json_object *x;
    if (!o || !json_object_object_get_ex(o, key, &x) ||
        !(json_object_is_type(x, json_type_int) || json_object_is_type(x, json_type_double)))
        return false;
    *v = json_object_get_int64(x);
    return true;
}

void ad_session_usage_of(json_object *usage, ad_session_usage *u)
{
    static const char *const counters[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    memset(u, 0, sizeof *u);
    if (!json_object_is_type(usage, json_type_object))
        return;
    for (int i = 0; i < 3; i++)
        u->has[i] = int_field(usage, counters[i], &u->n[i]);
    json_object *v;
    if (json_object_object_get_ex(usage, "cost", &v) &&
        (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))) {
        u->has_cost = true;
        u->cost = json_object_get_double(v);
    }
}

int ad_session_step(ad_session *s, int step, const char *finish_reason,
                    const ad_session_usage *u, double t, char *err, size_t errlen)
{
    if (!s->id)
        return AD_OK;
    sqlite3_stmt *st = prepare(s,
                               "INSERT INTO steps (session, seq, step, finish_reason, prompt_tokens, "
                               "completion_tokens, total_tokens, cost, started, ended) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               err, errlen);
    if (!st)
        return AD_ERR;
    if (t <= 0)
        t = now_s();
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, s->last_seq);
    sqlite3_bind_int64(st, 3, step);
    bind_text(st, 4, finish_reason);
    for (int i = 0; i < 3; i++) {
        if (u && u->has[i])
            sqlite3_bind_int64(st, 5 + i, u->n[i]);
        else
            sqlite3_bind_null(st, 5 + i);
    }
    if (u && u->has_cost)
        sqlite3_bind_double(st, 8, u->cost);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_double(st, 9, s->mark);
    sqlite3_bind_double(st, 10, t);
    int rc = sqlite3_step(st) == SQLITE_DONE ? AD_OK : db_fail(s, err, errlen, "cannot store a step");
    release(s, st);
    s->mark = t;
    return rc;
}

/* ---- reading ------------------------------------------------------------ */

/* The stored messages of session id as an array; *last_step: the step of
 * the last one (0 when none). */
static int load_raw(ad_session *s, sqlite3_int64 id, json_object **out, int *last_step, char *err,
                    size_t errlen)
{
    *out = NULL;
    sqlite3_stmt *st =
        prepare(s, "SELECT json, step FROM messages WHERE session = ? ORDER BY seq", err, errlen);
    if (!st)
        return AD_ERR;
    sqlite3_bind_int64(st, 1, id);
    json_object *arr = json_object_new_array();
    int rc;
    int step = 0;
    while (arr && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        json_object *m = text ? json_tokener_parse(text) : NULL;
        /* A row that is not a JSON object (edited by hand) is left out
         * rather than sent. */
        if (m && json_object_is_type(m, json_type_object))
            json_object_array_add(arr, m);
        else
            json_object_put(m);
        step = sqlite3_column_int(st, 1);
    }
    release(s, st);
    if (!arr)
        return AD_ENOMEM;
    if (rc != SQLITE_DONE) {
        json_object_put(arr);
        return db_fail(s, err, errlen, "cannot read the messages");
    }
    if (last_step)
        *last_step = step;
    *out = arr;
    return AD_OK;
}

int ad_session_load(ad_session *s, json_object **messages, char *err, size_t errlen)
{
    *messages = NULL;
    if (!s->id) {
        ad_errf(err, errlen, "no current session");
        return AD_EINVAL;
    }
    json_object *raw;
    int step = 0;
    int rc = load_raw(s, s->id, &raw, &step, err, errlen);
    if (rc != AD_OK)
        return rc;
    size_t added = 0, dropped = 0;
    json_object *fixed = ad_conv_repair(raw, &added, &dropped);
    if (!fixed) {
        json_object_put(raw);
        return AD_ENOMEM;
    }
    size_t n = json_object_array_length(raw);
    bool extends = json_object_array_length(fixed) >= n;
    for (size_t i = 0; extends && i < n; i++)
        extends = json_object_array_get_idx(fixed, i) == json_object_array_get_idx(raw, i);
    /* The usual case, a run killed during its tools: the missing results
     * go after the stored ones and are stored too, so the history on disk
     * is the one sent. A repair inside the history stays in memory. */
    for (size_t i = n; extends && added && i < json_object_array_length(fixed); i++) {
        rc = append_ex(s, json_object_array_get_idx(fixed, i), step, 1, 0, err, errlen);
        if (rc != AD_OK) {
            json_object_put(raw);
            json_object_put(fixed);
            return rc;
        }
    }
    json_object_put(raw);
    *messages = fixed;
    return AD_OK;
}

/* ---- the subcommands' output -------------------------------------------- */

static void fmt_time(double t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

int ad_session_list(ad_session *s, FILE *out, char *err, size_t errlen)
{
    sqlite3_stmt *st = prepare(
        s,
        "SELECT s.name, s.updated, COALESCE(s.model, ''),"
        " (SELECT COUNT(*) FROM messages m WHERE m.session = s.id),"
        " (SELECT COALESCE(SUM(total_tokens), 0) FROM steps t WHERE t.session = s.id)"
        " FROM sessions s ORDER BY s.updated DESC, s.id DESC",
        err, errlen);
    if (!st)
        return AD_ERR;
    /* Two passes: the widths of the name and model columns first. */
    int wname = 4, wmodel = 5, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int a = sqlite3_column_bytes(st, 0), b = sqlite3_column_bytes(st, 2);
        wname = a > wname ? (a > 60 ? 60 : a) : wname;
        wmodel = b > wmodel ? (b > 40 ? 40 : b) : wmodel;
    }
    if (rc != SQLITE_DONE) {
        release(s, st);
        return db_fail(s, err, errlen, "cannot list the sessions");
    }
    sqlite3_reset(st);
    fprintf(out, "%-*s  %-19s  %-*s  %8s  %10s\n", wname, "NAME", "UPDATED", wmodel, "MODEL",
            "MESSAGES", "TOKENS");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char when[32];
        fmt_time(sqlite3_column_double(st, 1), when, sizeof when);
        fprintf(out, "%-*s  %-19s  %-*s  %8lld  %10lld\n", wname,
                (const char *)sqlite3_column_text(st, 0), when, wmodel,
                (const char *)sqlite3_column_text(st, 2), (long long)sqlite3_column_int64(st, 3),
                (long long)sqlite3_column_int64(st, 4));
    }
    release(s, st);
    return rc == SQLITE_DONE ? AD_OK : db_fail(s, err, errlen, "cannot list the sessions");
}

/* Looks up name for the read-only commands: its row, model and times. */
static void put_block(FILE *out, const char *text)
{
    size_t n = strlen(text);
    fputs(text, out);
    if (n == 0 || text[n - 1] != '\n')
        fputc('\n', out);
}

/* A message whose content is parts (a user message with the images of a
 * step's tool results): its text parts as blocks, each image as one line
 * "[image: MIME, SIZE]" (the size of the decoded bytes). */
static void put_parts(FILE *out, json_object *m)
{
    json_object *parts = NULL;
    if (!json_object_object_get_ex(m, "content", &parts) ||
        !json_object_is_type(parts, json_type_array))
        return;
    for (size_t i = 0; i < json_object_array_length(parts); i++) {
        json_object *p = json_object_array_get_idx(parts, i), *img = NULL;
        const char *type = ad_json_str(p, "type");
        if (type && strcmp(type, "text") == 0 && ad_json_str(p, "text")) {
            put_block(out, ad_json_str(p, "text"));
            continue;
        }
        json_object_object_get_ex(p, "image_url", &img);
        const char *url = ad_json_str(img, "url");
        const char *semi = url && strncmp(url, "data:", 5) == 0 ? strchr(url, ';') : NULL;
        const char *data = semi && strncmp(semi, ";base64,", 8) == 0 ? semi + 8 : NULL;
        ad_buf b = {0};
        if (data) {
            ad_buf_printf(&b, "[image: %.*s, ", (int)(semi - url - 5), url + 5);
            ad_buf_size(&b, ad_base64_decoded_size(data, strlen(data)));
            ad_buf_putc(&b, ']');
        } else {
            ad_buf_printf(&b, "[%s]", type ? type : "part");
        }
        if (b.data)
            fprintf(out, "%s\n", b.data);
        ad_buf_free(&b);
    }
}

int ad_session_show(ad_session *s, const char *name, FILE *out, char *err, size_t errlen)
{
    sqlite3_int64 id;
    char *model = NULL;
    double created = 0, updated = 0;
    int rc = lookup(s, name, &id, &model, &created, &updated, err, errlen);
    if (rc != AD_OK)
        return rc;
    char c[32], u[32];
    fmt_time(created, c, sizeof c);
    fmt_time(updated, u, sizeof u);
    fprintf(out, "session %s\nmodel %s\ncreated %s, updated %s\n", name, model ? model : "", c, u);
    free(model);
    /* Tool messages are shown with the name of their call and whether
     * the call failed, both kept in tool_calls. */
    sqlite3_stmt *st = prepare(s,
                               "SELECT m.json, m.step, t.name, t.is_error, t.duration "
                               "FROM messages m LEFT JOIN tool_calls t "
                               "ON t.session = m.session AND t.result_seq = m.seq "
                               "WHERE m.session = ? ORDER BY m.seq",
                               err, errlen);
    if (!st)
        return AD_ERR;
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        json_object *m = text ? json_tokener_parse(text) : NULL;
        const char *role = ad_json_str(m, "role");
        if (!role) {
            json_object_put(m);
            continue;
        }
        const char *content = ad_json_str(m, "content");
        if (strcmp(role, "tool") == 0) {
            const char *tname = (const char *)sqlite3_column_text(st, 2);
            fprintf(out, "\n--- tool %s [%s]%s", tname ? tname : "?",
                    ad_json_str(m, "tool_call_id") ? ad_json_str(m, "tool_call_id") : "",
                    sqlite3_column_int(st, 3) ? " error" : "");
            if (sqlite3_column_type(st, 4) != SQLITE_NULL)
                fprintf(out, " (%.1f ms)", sqlite3_column_double(st, 4) * 1000);
            fputc('\n', out);
        } else {
            fprintf(out, "\n--- %s", role);
            if (sqlite3_column_type(st, 1) != SQLITE_NULL && strcmp(role, "system") != 0)
                fprintf(out, " (step %d)", sqlite3_column_int(st, 1));
            fputc('\n', out);
        }
        if (content && content[0])
            put_block(out, content);
        else
            put_parts(out, m);
        json_object *calls = tool_calls_of(m);
        for (size_t i = 0; calls && i < json_object_array_length(calls); i++) {
            json_object *call = json_object_array_get_idx(calls, i), *fn = NULL;
            json_object_object_get_ex(call, "function", &fn);
            fprintf(out, "-> %s %s [%s]\n", ad_json_str(fn, "name") ? ad_json_str(fn, "name") : "?",
                    ad_json_str(fn, "arguments") ? ad_json_str(fn, "arguments") : "", call_id(call));
        }
        json_object_put(m);
    }
    release(s, st);
    return rc == SQLITE_DONE ? AD_OK : db_fail(s, err, errlen, "cannot read the messages");
}

int ad_session_export(ad_session *s, const char *name, FILE *out, char *err, size_t errlen)
{
    sqlite3_int64 id;
    char *model = NULL;
    int rc = lookup(s, name, &id, &model, NULL, NULL, err, errlen);
    if (rc != AD_OK)
        return rc;
    json_object *raw;
    rc = load_raw(s, id, &raw, NULL, err, errlen);
    if (rc != AD_OK) {
        free(model);
        return rc;
    }
    /* Exported as it would be sent: repaired. */
    json_object *fixed = ad_conv_repair(raw, NULL, NULL);
    json_object_put(raw);
    json_object *doc = json_object_new_object();
    if (!fixed || !doc) {
        json_object_put(fixed);
        json_object_put(doc);
        free(model);
        return AD_ENOMEM;
    }
    json_object_object_add(doc, "name", json_object_new_string(name));
    json_object_object_add(doc, "model", json_object_new_string(model ? model : ""));
    json_object_object_add(doc, "messages", fixed);
    fprintf(out, "%s\n",
            json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(doc);
    free(model);
    return AD_OK;
}

int ad_session_remove(ad_session *s, const char *name, char *err, size_t errlen)
{
    sqlite3_int64 id;
    int rc = lookup(s, name, &id, NULL, NULL, NULL, err, errlen);
    if (rc != AD_OK)
        return rc;
    /* Its messages, tool calls and steps go with it: the schema declares
     * them ON DELETE CASCADE, and foreign keys are on (ad_session_open). */
    sqlite3_stmt *st = prepare(s, "DELETE FROM sessions WHERE id = ?", err, errlen);
    if (!st)
        return AD_ERR;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    release(s, st);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, errlen, "cannot remove the session");
    if (s->id == id) {
        s->id = 0;
        free(s->name);
        s->name = NULL;
    }
    return AD_OK;
}

/*
 * test_session.c -- the session store: schema and migrations, append and
 * load, repair of tool calls left without results, redaction, the
 * subcommands' output, and the [sessions] config keys.
 *
 * Every test works in its own temporary folder, removed afterwards.
 */
#define _GNU_SOURCE /* nftw flags, open_memstream */
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "base/config.h"
#include "store/session.h"

static char tmpdir[256];

static void mktmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/agentd-test-session-XXXXXX");
    if (!mkdtemp(tmpdir))
        tmpdir[0] = '\0';
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void rmtmp(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tpath(const char *rel)
{
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "%s/%s", tmpdir, rel);
    return ad_buf_steal(&b);
}

static json_object *J(const char *text)
{
    return json_tokener_parse(text);
}

/* Runs sql on the file directly, as another program (or an older agentd). */
static int raw_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static long long raw_count(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static bool same_json(json_object *a, json_object *b)
{
    return json_object_equal(a, b) != 0;
}

TEST(fresh_database_schema_and_modes)
{
    mktmp();
    char *p = tpath("a/b/sessions.db");
    ad_session *s = NULL;
    char err[512] = "";
    CHECK_EQ(ad_session_open(&s, p, true, err, sizeof err), AD_OK);
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ(ad_session_schema_version(s), AD_SESSION_SCHEMA_VERSION);
        ad_session_close(s);
    }
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    char *dir = tpath("a");
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                          "('sessions', 'messages', 'tool_calls', 'steps')"),
             4);
    /* WAL is a property of the file: it stays. */
    CHECK_EQ(raw_count(p, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
    free(dir);
    free(p);
    rmtmp();
}

TEST(migration_from_an_empty_file)
{
    mktmp();
    char *p = tpath("empty.db");
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    ad_session *s = NULL;
    char err[512] = "";
    CHECK_EQ(ad_session_open(&s, p, false, err, sizeof err), AD_OK);
    if (s) {
        CHECK_EQ(ad_session_schema_version(s), AD_SESSION_SCHEMA_VERSION);
        /* Opening again migrates nothing and keeps the version. */
        ad_session_close(s);
        CHECK_EQ(ad_session_open(&s, p, false, err, sizeof err), AD_OK);
        CHECK_EQ(ad_session_schema_version(s), AD_SESSION_SCHEMA_VERSION);
        ad_session_close(s);
    }
    free(p);
    rmtmp();
}

TEST(migration_from_version_1_keeps_data)
{
    mktmp();
    char *p = tpath("v1.db");
    /* A database as the first schema left it. */
    CHECK_EQ(raw_sql(p, "CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
                        " created REAL NOT NULL, updated REAL NOT NULL, model TEXT, config_path TEXT);"
                        "CREATE INDEX sessions_by_updated ON sessions (updated);"
                        "CREATE TABLE messages (session INTEGER NOT NULL REFERENCES sessions (id)"
                        " ON DELETE CASCADE, seq INTEGER NOT NULL, role TEXT NOT NULL, json TEXT NOT"
                        " NULL, step INTEGER, time REAL NOT NULL, PRIMARY KEY (session, seq));"
                        "CREATE TABLE tool_calls (session INTEGER NOT NULL REFERENCES sessions (id)"
                        " ON DELETE CASCADE, seq INTEGER NOT NULL, idx INTEGER NOT NULL, call_id TEXT"
                        " NOT NULL, name TEXT NOT NULL, arguments TEXT NOT NULL, result_seq INTEGER,"
                        " content TEXT, is_error INTEGER, duration REAL, PRIMARY KEY (session, seq,"
                        " idx));"
                        "CREATE INDEX tool_calls_by_id ON tool_calls (session, call_id);"
                        "INSERT INTO sessions VALUES (1, 'old', 1, 2, 'm', NULL);"
                        "INSERT INTO messages VALUES (1, 1, 'user', '{\"role\":\"user\",\"content\":"
                        "\"hi\"}', 1, 1);"
                        "PRAGMA user_version = 1;"),
             0);
    ad_session *s = NULL;
    char err[512] = "";
    CHECK_EQ(ad_session_open(&s, p, false, err, sizeof err), AD_OK);
    if (!s) {
        free(p);
        rmtmp();
        return;
    }
    CHECK_EQ(ad_session_schema_version(s), 2);
    CHECK_EQ(ad_session_start(s, "old", false, "m2", NULL, NULL, err, sizeof err), AD_OK);
    json_object *msgs = NULL;
    CHECK_EQ(ad_session_load(s, &msgs, err, sizeof err), AD_OK);
    json_object *want = J("[{\"role\":\"user\",\"content\":\"hi\"}]");
    CHECK(msgs && same_json(msgs, want));
    json_object_put(want);
    json_object_put(msgs);
    /* The new table works. */
    json_object *usage = J("{\"prompt_tokens\":3,\"completion_tokens\":4,"
                           "\"total_tokens\":7,\"cost\":0.5}");
    ad_session_usage u;
    ad_session_usage_of(usage, &u);
    json_object_put(usage);
    CHECK_EQ(ad_session_step(s, 1, "stop", &u, 0, err, sizeof err), AD_OK);
    ad_session_close(s);
    CHECK_EQ(raw_count(p, "SELECT total_tokens FROM steps"), 7);
    CHECK_EQ(raw_count(p, "SELECT cost = 0.5 FROM steps"), 1);
    free(p);
    rmtmp();
}

TEST(newer_schema_is_refused)
{
    mktmp();
    char *p = tpath("new.db");
    CHECK_EQ(raw_sql(p, "PRAGMA user_version = 99;"), 0);
    ad_session *s = NULL;
    char err[512] = "";
    CHECK_EQ(ad_session_open(&s, p, false, err, sizeof err), AD_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(err, "newer agentd") != NULL);
    CHECK_EQ(raw_count(p, "PRAGMA user_version"), 99);
    free(p);
    rmtmp();
}

TEST(missing_file_without_create)
{
    mktmp();
    char *p = tpath("none.db");
    ad_session *s = NULL;
    char err[512] = "";
    CHECK_EQ(ad_session_open(&s, p, false, err, sizeof err), AD_SESSION_UNKNOWN);
    CHECK(access(p, F_OK) != 0);
    free(p);
    rmtmp();
}

static ad_session *open_tmp(const char *rel)
{
    char *p = tpath(rel);
    ad_session *s = NULL;
    char err[512];
    if (ad_session_open(&s, p, true, err, sizeof err) != AD_OK)
        fprintf(stderr, "open: %s\n", err);
    free(p);
    return s;
}

TEST(append_load_and_breakdown)
{
    mktmp();
    ad_session *s = open_tmp("s.db");
    CHECK(s != NULL);
    if (!s) {
        rmtmp();
        return;
    }
    char err[512] = "";
    bool created = false;
    CHECK_EQ(ad_session_start(s, "t", true, "model-a", "/etc/agent.toml", &created, err, sizeof err),
             AD_OK);
    CHECK(created);
    CHECK_STREQ(ad_session_name(s), "t");
    const char *texts[] = {
        "{\"role\":\"system\",\"content\":\"sys\"}",
        "{\"role\":\"user\",\"content\":\"2+3?\"}",
        ("{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":"
         "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":2,\\\"b\\\":3}\"}}]}"),
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"5\"}",
        "{\"role\":\"assistant\",\"content\":\"5 – fünf\"}",
    };
    json_object *all = json_object_new_array();
    for (size_t i = 0; i < 5; i++) {
        json_object *m = J(texts[i]);
        json_object_array_add(all, m);
        if (i == 0)
            CHECK_EQ(ad_session_append(s, m, 0, err, sizeof err), AD_OK);
        else
            CHECK_EQ(ad_session_append(s, m, i < 4 ? 1 : 2, err, sizeof err), AD_OK);
        if (i == 3) {
            CHECK_EQ(ad_session_tool_result(s, "c1", true, 0.25, err, sizeof err), AD_OK);
        }
    }
    /* A second session, to see that nothing leaks between them. */
    CHECK_EQ(ad_session_start(s, "other", true, "m", NULL, NULL, err, sizeof err), AD_OK);
    json_object *x = J("{\"role\":\"user\",\"content\":\"x\"}");
    CHECK_EQ(ad_session_append(s, x, 1, err, sizeof err), AD_OK);
    json_object_put(x);

    CHECK_EQ(ad_session_start(s, "t", false, "model-b", NULL, &created, err, sizeof err), AD_OK);
    CHECK(!created);
    json_object *msgs = NULL;
    CHECK_EQ(ad_session_load(s, &msgs, err, sizeof err), AD_OK);
    CHECK(msgs && same_json(msgs, all));
    json_object_put(msgs);
    json_object_put(all);

    char *last = NULL;
    CHECK_EQ(ad_session_last(s, &last, err, sizeof err), AD_OK);
    CHECK_STREQ(last, "other");
    free(last);
    ad_session_close(s);

    char *p = tpath("s.db");
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM messages WHERE session = (SELECT id FROM "
                          "sessions WHERE name = 't')"),
             5);
    CHECK_EQ(raw_count(p, "SELECT MAX(seq) FROM messages WHERE session = 1"), 5);
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM tool_calls WHERE call_id = 'c1' AND name = 'add' "
                          "AND arguments = '{\"a\":2,\"b\":3}' AND result_seq = 4 AND content = '5' "
                          "AND is_error = 1 AND duration = 0.25"),
             1);
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM sessions WHERE name = 't' AND model = 'model-b'"), 1);
    CHECK_EQ(raw_count(p, "SELECT step FROM messages WHERE session = 1 AND seq = 5"), 2);
    free(p);
    rmtmp();
}

TEST(unknown_invalid_and_generated_names)
{
    mktmp();
    ad_session *s = open_tmp("n.db");
    CHECK(s != NULL);
    if (!s) {
        rmtmp();
        return;
    }
    char err[512] = "";
    char *last = NULL;
    CHECK_EQ(ad_session_last(s, &last, err, sizeof err), AD_SESSION_UNKNOWN);
    CHECK_EQ(ad_session_start(s, "nope", false, "m", NULL, NULL, err, sizeof err),
             AD_SESSION_UNKNOWN);
    CHECK(strstr(err, "no session named 'nope'") != NULL);
    CHECK_EQ(ad_session_start(s, "", true, "m", NULL, NULL, err, sizeof err), AD_EINVAL);
    CHECK_EQ(ad_session_start(s, "a\nb", true, "m", NULL, NULL, err, sizeof err), AD_EINVAL);
    CHECK_EQ(ad_session_start(s, "-x", true, "m", NULL, NULL, err, sizeof err), AD_EINVAL);
    CHECK_EQ(ad_session_start(s, NULL, true, "m", NULL, NULL, err, sizeof err), AD_OK);
    char *first = ad_strdup(ad_session_name(s));
    CHECK(first && strlen(first) == strlen("20250101-000000-abcdef"));
    CHECK_EQ(ad_session_start(s, NULL, true, "m", NULL, NULL, err, sizeof err), AD_OK);
    CHECK(strcmp(first, ad_session_name(s)) != 0);
    free(first);
    ad_session_close(s);
    rmtmp();
}

static const char CALLS2[] =
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
    "{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
    "{\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}";

#define U "{\"role\":\"user\",\"content\":\"u\"}"
#define TA "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"A\"}"
#define TB "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"B\"}"
#define IA "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"interrupted\"}"
#define IB "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"interrupted\"}"

TEST(load_stores_the_repair_once)
{
    mktmp();
    ad_session *s = open_tmp("r.db");
    CHECK(s != NULL);
    if (!s) {
        rmtmp();
        return;
    }
    char err[512] = "";
    CHECK_EQ(ad_session_start(s, "r", true, "m", NULL, NULL, err, sizeof err), AD_OK);
    json_object *u = J(U), *c = J(CALLS2), *ta = J(TA);
    CHECK_EQ(ad_session_append(s, u, 1, err, sizeof err), AD_OK);
    CHECK_EQ(ad_session_append(s, c, 1, err, sizeof err), AD_OK);
    CHECK_EQ(ad_session_append(s, ta, 1, err, sizeof err), AD_OK);
    json_object *msgs = NULL;
    CHECK_EQ(ad_session_load(s, &msgs, err, sizeof err), AD_OK);
    char want[2048];
    snprintf(want, sizeof want, "[" U ",%s," TA "," IB "]", CALLS2);
    json_object *w = J(want);
    CHECK(msgs && same_json(msgs, w));
    json_object_put(msgs);
    /* Loaded again: the same history, nothing added a second time. */
    CHECK_EQ(ad_session_load(s, &msgs, err, sizeof err), AD_OK);
    CHECK(msgs && same_json(msgs, w));
    json_object_put(msgs);
    json_object_put(w);
    ad_session_close(s);
    char *p = tpath("r.db");
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM messages"), 4);
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM tool_calls WHERE call_id = 'b' AND is_error = 1 "
                          "AND content = 'interrupted' AND result_seq = 4"),
             1);
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM tool_calls WHERE call_id = 'a' AND content = 'A'"), 1);
    free(p);
    json_object_put(u);
    json_object_put(c);
    json_object_put(ta);
    rmtmp();
}

TEST(secret_is_never_stored)
{
    mktmp();
    ad_session *s = open_tmp("k.db");
    CHECK(s != NULL);
    if (!s) {
        rmtmp();
        return;
    }
    char err[512] = "";
    ad_session_set_secret(s, "sk-\"odd\\key");
    CHECK_EQ(ad_session_start(s, "k", true, "m", NULL, NULL, err, sizeof err), AD_OK);
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object_object_add(m, "content", json_object_new_string("key: sk-\"odd\\key!"));
    CHECK_EQ(ad_session_append(s, m, 1, err, sizeof err), AD_OK);
    json_object_put(m);
    json_object *msgs = NULL;
    CHECK_EQ(ad_session_load(s, &msgs, err, sizeof err), AD_OK);
    json_object *got = msgs ? json_object_array_get_idx(msgs, 0) : NULL;
    json_object *content = NULL;
    CHECK(got && json_object_object_get_ex(got, "content", &content));
    CHECK_STREQ(content ? json_object_get_string(content) : NULL, "key: [REDACTED]!");
    json_object_put(msgs);
    ad_session_close(s);
    char *p = tpath("k.db");
    CHECK_EQ(raw_count(p, "SELECT COUNT(*) FROM messages WHERE instr(json, 'odd') > 0"), 0);
    free(p);
    rmtmp();
}

static char *capture(int (*fn)(ad_session *, const char *, FILE *, char *, size_t), ad_session *s,
                     const char *name, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    char err[512] = "";
    *rc = fn(s, name, f, err, sizeof err);
    fclose(f);
    return text;
}

TEST(show_export_list_remove)
{
    mktmp();
    ad_session *s = open_tmp("c.db");
    CHECK(s != NULL);
    if (!s) {
        rmtmp();
        return;
    }
    char err[512] = "";
    CHECK_EQ(ad_session_start(s, "c", true, "mod", NULL, NULL, err, sizeof err), AD_OK);
    json_object *u = J(U), *c = J(CALLS2);
    CHECK_EQ(ad_session_append(s, u, 1, err, sizeof err), AD_OK);
    CHECK_EQ(ad_session_append(s, c, 1, err, sizeof err), AD_OK);
    json_object_put(u);
    json_object_put(c);
    int rc;
    char *show = capture(ad_session_show, s, "c", &rc);
    CHECK_EQ(rc, AD_OK);
    CHECK(show && strstr(show, "session c\nmodel mod\n") && strstr(show, "--- user (step 1)\nu\n") &&
          strstr(show, "-> g {} [b]\n"));
    free(show);
    char *ex = capture(ad_session_export, s, "c", &rc);
    CHECK_EQ(rc, AD_OK);
    json_object *doc = ex ? J(ex) : NULL, *msgs = NULL;
    CHECK(doc && json_object_object_get_ex(doc, "messages", &msgs));
    /* Exported as it would be sent: repaired (but not stored by export). */
    CHECK_EQ(msgs ? json_object_array_length(msgs) : 0, 4);
    json_object_put(doc);
    free(ex);
    char *none = capture(ad_session_show, s, "zzz", &rc);
    CHECK_EQ(rc, AD_SESSION_UNKNOWN);
    free(none);

    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    CHECK_EQ(ad_session_list(s, f, err, sizeof err), AD_OK);
    fclose(f);
    CHECK(list && strncmp(list, "NAME", 4) == 0 && strstr(list, "\nc ") && strstr(list, " mod "));
    free(list);

    CHECK_EQ(ad_session_remove(s, "c", err, sizeof err), AD_OK);
    CHECK_EQ(ad_session_remove(s, "c", err, sizeof err), AD_SESSION_UNKNOWN);
    ad_session_close(s);
    char *p = tpath("c.db");
    CHECK_EQ(raw_count(p, "SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM "
                          "messages) + (SELECT COUNT(*) FROM tool_calls)"),
             0);
    free(p);
    rmtmp();
}

TEST(config_sessions_table)
{
    mktmp();
    char *p = tpath("agent.toml");
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("[provider]\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"\n"
              "[sessions]\nenabled = false\npath = \"db/s.db\"\n",
              f);
        fclose(f);
    }
    ad_config c;
    ad_config_init(&c);
    CHECK(c.sessions_enabled);
    char err[1024] = "";
    CHECK_EQ(ad_config_load(&c, p, err, sizeof err), AD_OK);
    CHECK(!c.sessions_enabled);
    char *want = tpath("db/s.db");
    CHECK_STREQ(c.sessions_path, want);
    free(want);
    ad_config_free(&c);

    f = fopen(p, "w");
    if (f) {
        fputs("[provider]\nbase_url = \"http://127.0.0.1:1\"\nmodel = \"m\"\n"
              "[sessions]\nenabled = \"yes\"\npaht = \"x\"\n",
              f);
        fclose(f);
    }
    ad_config_init(&c);
    CHECK_EQ(ad_config_load(&c, p, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "sessions.enabled must be a boolean") != NULL);
    CHECK(strstr(err, "path") != NULL); /* the suggestion for the misspelt key */
    ad_config_free(&c);
    free(p);
    rmtmp();
}

TEST(default_path_follows_xdg)
{
    const char *old_xdg = getenv("XDG_STATE_HOME");
    char *saved = old_xdg ? ad_strdup(old_xdg) : NULL;
    setenv("XDG_STATE_HOME", "/x/state", 1);
    char *p = ad_session_default_path();
    CHECK_STREQ(p, "/x/state/agentd/sessions.db");
    free(p);
    setenv("XDG_STATE_HOME", "relative", 1); /* invalid per the spec: ignored */
    setenv("HOME", "/home/u", 1);
    p = ad_session_default_path();
    CHECK_STREQ(p, "/home/u/.local/state/agentd/sessions.db");
    free(p);
    if (saved)
        setenv("XDG_STATE_HOME", saved, 1);
    else
        unsetenv("XDG_STATE_HOME");
    free(saved);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(fresh_database_schema_and_modes);
    RUN(migration_from_an_empty_file);
    RUN(migration_from_version_1_keeps_data);
    RUN(newer_schema_is_refused);
    RUN(missing_file_without_create);
    RUN(append_load_and_breakdown);
    RUN(unknown_invalid_and_generated_names);
    RUN(load_stores_the_repair_once);
    RUN(secret_is_never_stored);
    RUN(show_export_list_remove);
    RUN(config_sessions_table);
    RUN(default_path_follows_xdg);
    return harness_report("test_session");
}

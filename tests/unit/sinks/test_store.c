/*
 * test_store.c -- the session store sink against a temporary database: a
 * message is on disk before any later event reaches another sink, tool
 * results and steps are filled in, a replaced conversation goes on in a
 * new session, the key is never stored, and a failing write is warned
 * about once without holding the conversation for ever.
 *
 * The database is read back through a connection of its own, as another
 * program would, while the writer thread owns the store's.
 */
#define _GNU_SOURCE /* nftw flags */
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../../harness.h"
#include "base/buf.h"
#include "core/events.h"
#include "sinks/store.h"
#include "store/session.h"

static char tmpdir[256];
static char dbpath[300];

static void mktmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/agentd-test-store-XXXXXX");
    if (!mkdtemp(tmpdir))
        tmpdir[0] = '\0';
    snprintf(dbpath, sizeof dbpath, "%s/s.db", tmpdir);
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

static long long raw_count(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    if (sqlite3_open(dbpath, &db) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int raw_sql(const char *sql)
{
    sqlite3 *db;
    if (sqlite3_open(dbpath, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* A sink after the store: what it sees, and how many messages the
 * database held when it saw it. */
typedef struct watch {
    ad_sink base;
    ad_buf log;
} watch;

static const char *kind_name(ad_event_kind k)
{
    switch (k) {
    case AD_EV_STEP_START:
        return "step_start";
    case AD_EV_TOOL_CALL:
        return "tool_call";
    case AD_EV_TOOL_RESULT:
        return "tool_result";
    case AD_EV_STEP_FINISH:
        return "step_finish";
    case AD_EV_FINISH:
        return "finish";
    default:
        return "other";
    }
}

static int watch_event(ad_sink *s, const ad_event *ev)
{
    watch *w = (watch *)s;
    if (ev->kind == AD_EV_WARN)
        ad_buf_printf(&w->log, "warn %.*s;", (int)ev->len, ev->text);
    else if (ev->kind != AD_EV_MESSAGE && ev->kind != AD_EV_HISTORY)
        ad_buf_printf(&w->log, "%s at %lld;", kind_name(ev->kind),
                      raw_count("SELECT COUNT(*) FROM messages"));
    return AD_SINK_OK;
}

static const ad_sink_vt watch_vt = {watch_event, NULL};

typedef struct fixture {
    uv_loop_t loop;
    ad_events *e;
    ad_sink *store;
    watch w;
} fixture;

static bool setup(fixture *f, const char *secret)
{
    memset(f, 0, sizeof *f);
    mktmp();
    uv_loop_init(&f->loop);
    ad_session *s = NULL;
    char err[512];
    if (ad_session_open(&s, dbpath, true, err, sizeof err) != AD_OK) {
        fprintf(stderr, "open: %s\n", err);
        return false;
    }
    ad_session_set_secret(s, secret);
    if (ad_session_start(s, "t", true, "m", NULL, NULL, err, sizeof err) != AD_OK) {
        ad_session_close(s);
        return false;
    }
    f->e = ad_events_new();
    f->store = ad_store_sink_new(&f->loop, s, err, sizeof err);
    if (!f->store) {
        fprintf(stderr, "store: %s\n", err);
        ad_session_close(s);
        return false;
    }
    f->w.base.vt = &watch_vt;
    ad_events_add(f->e, f->store);
    ad_events_add(f->e, &f->w.base);
    return true;
}

/* Runs the loop until the hub has delivered everything. */
static void settle(fixture *f)
{
    while (ad_events_paused(f->e) && uv_run(&f->loop, UV_RUN_ONCE)) {
    }
}

static void teardown(fixture *f)
{
    ad_events_close_sink(f->e, f->store);
    ad_events_remove(f->e, &f->w.base);
    ad_events_free(f->e);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&f->loop), 0);
    ad_buf_free(&f->w.log);
    rmtmp();
}

static void message(fixture *f, int step, const char *json)
{
    json_object *m = json_tokener_parse(json);
    ad_events_message(f->e, step, m);
    json_object_put(m);
}

TEST(a_message_is_on_disk_before_any_later_event)
{
    fixture f;
    if (!setup(&f, NULL)) {
        CHECK(0);
        return;
    }
    message(&f, 1, "{\"role\":\"user\",\"content\":\"2+3?\"}");
    CHECK(ad_events_paused(f.e)); /* the conversation holds still */
    ad_events_step_start(f.e, 1, true);
    CHECK(f.w.log.data == NULL); /* held */
    settle(&f);
    CHECK_STREQ(f.w.log.data, "step_start at 1;");
    message(&f, 1,
            "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
            "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{}\"}}]}");
    ad_events_tool_call(f.e, 1, "c1", "add", "{}", 2, false);
    settle(&f);
    message(&f, 1, "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"5\"}");
    ad_events_tool_result(f.e, 1, "c1", "add", "5", 1, true, 0.25);
    json_object *u = json_tokener_parse("{\"prompt_tokens\":3,\"completion_tokens\":4,"
                                        "\"total_tokens\":7,\"cost\":0.5}");
    ad_events_step_finish(f.e, 1, "tool_calls", u);
    json_object_put(u);
    settle(&f);
    CHECK_STREQ(f.w.log.data,
                "step_start at 1;tool_call at 2;tool_result at 3;step_finish at 3;");
    teardown(&f);
    /* Closing waited for everything queued. */
}

TEST(results_steps_and_the_breakdown_are_stored)
{
    fixture f;
    if (!setup(&f, NULL)) {
        CHECK(0);
        return;
    }
    message(&f, 1, "{\"role\":\"user\",\"content\":\"2+3?\"}");
    message(&f, 1,
            "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
            "\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":2}\"}}]}");
    message(&f, 1, "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"5\"}");
    ad_events_tool_result(f.e, 1, "c1", "add", "5", 1, true, 0.25);
    json_object *u = json_tokener_parse("{\"prompt_tokens\":3,\"total_tokens\":7,\"cost\":0.5}");
    ad_events_step_finish(f.e, 1, "tool_calls", u);
    json_object_put(u);
    /* The writer may still hold the last jobs: closing waits for them. */
    settle(&f);
    ad_events_close_sink(f.e, f.store);
    f.store = NULL;
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages"), 3);
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM tool_calls WHERE call_id = 'c1' AND name = 'add' AND "
                       "arguments = '{\"a\":2}' AND result_seq = 3 AND content = '5' AND "
                       "is_error = 1 AND duration = 0.25"),
             1);
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM steps WHERE step = 1 AND seq = 3 AND finish_reason "
                       "= 'tool_calls' AND prompt_tokens = 3 AND completion_tokens IS NULL AND "
                       "total_tokens = 7 AND cost = 0.5 AND ended >= started"),
             1);
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages WHERE seq = 1 AND role = 'user' AND step = 1 "
                       "AND json = '{\"role\":\"user\",\"content\":\"2+3?\"}'"),
             1);
    teardown(&f);
}

TEST(a_replaced_conversation_goes_on_in_a_new_session)
{
    fixture f;
    if (!setup(&f, NULL)) {
        CHECK(0);
        return;
    }
    message(&f, 1, "{\"role\":\"user\",\"content\":\"old\"}");
    json_object *h = json_tokener_parse("[{\"role\":\"system\",\"content\":\"sys\"}]");
    ad_events_history(f.e, h);
    /* The array grows on after the event: the fork holds it as it was. */
    json_object_array_add(h, json_tokener_parse("{\"role\":\"user\",\"content\":\"new\"}"));
    ad_events_message(f.e, 1, json_object_array_get_idx(h, 1));
    json_object_put(h);
    settle(&f);
    ad_events_close_sink(f.e, f.store);
    f.store = NULL;
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM sessions"), 2);
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session "
                       "WHERE s.name = 't'"),
             1);
    CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session "
                       "WHERE s.name != 't' AND ((m.seq = 1 AND m.role = 'system') OR "
                       "(m.seq = 2 AND m.json LIKE '%\"new\"%'))"),
             2);
    teardown(&f);
}

TEST(the_key_is_never_stored)
{
    /* A key json-c escapes, and a plain one. */
    static const char *const keys[] = {"sk-\"odd\\key", "sk-plain-4711"};
    for (size_t k = 0; k < 2; k++) {
        fixture f;
        if (!setup(&f, keys[k])) {
            CHECK(0);
            return;
        }
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("user"));
        ad_buf c = AD_BUF_INIT;
        ad_buf_printf(&c, "key: %s!", keys[k]);
        json_object_object_add(m, "content", json_object_new_string(c.data));
        ad_buf_free(&c);
        ad_events_message(f.e, 1, m);
        json_object_put(m);
        ad_events_close_sink(f.e, f.store);
        f.store = NULL;
        CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages WHERE json = "
                           "'{\"role\":\"user\",\"content\":\"key: [REDACTED]!\"}'"),
                 1);
        CHECK_EQ(raw_count("SELECT COUNT(*) FROM messages WHERE instr(json, 'sk-') > 0"), 0);
        teardown(&f);
    }
}

TEST(a_failing_write_is_warned_about_once)
{
    fixture f;
    if (!setup(&f, NULL)) {
        CHECK(0);
        return;
    }
    CHECK_EQ(raw_sql("DROP TABLE tool_calls; DROP TABLE messages;"), 0);
    message(&f, 1, "{\"role\":\"user\",\"content\":\"a\"}");
    ad_events_step_start(f.e, 1, true);
    settle(&f); /* released, although the write failed */
    message(&f, 1, "{\"role\":\"assistant\",\"content\":\"b\"}");
    ad_events_finish(f.e, 1, "b", 1, NULL);
    settle(&f);
    const char *log = f.w.log.data ? f.w.log.data : "";
    CHECK(strstr(log, "warn session 't' is not being saved: ") != NULL);
    CHECK(strstr(log, "no such table: messages") != NULL);
    CHECK(strstr(strstr(log, "warn ") + 1, "warn ") == NULL); /* once */
    CHECK(strstr(log, "step_start at -1;") != NULL && strstr(log, ";finish at -1;") != NULL);
    teardown(&f);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(a_message_is_on_disk_before_any_later_event);
    RUN(results_steps_and_the_breakdown_are_stored);
    RUN(a_replaced_conversation_goes_on_in_a_new_session);
    RUN(the_key_is_never_stored);
    RUN(a_failing_write_is_warned_about_once);
    return harness_report("test_store");
}

/*
 * test_serve_store.c -- the serve store (runtime/serve/store.c): writes run in
 * order on the writer thread and are read back; forks copy a prefix; the
 * key is never stored; a response a dead process left running is marked
 * failed at the next open; waiters hear about their own job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include <uv.h>

#include "../../harness.h"
#include "base/buf.h"
#include "serve/store.h"

#define KEY "sk-store-secret-42"

static uv_loop_t loop;
static char dir[64], path[128];

typedef struct wait_st {
    int calls;
    bool ok;
} wait_st;

static void on_done(void *ud, bool ok)
{
    wait_st *w = ud;
    w->calls++;
    w->ok = ok;
}

static void wait_for(ad_serve_store *s, uint64_t n, wait_st *w)
{
    CHECK_EQ(ad_serve_store_when_done(s, n, on_done, w), 0);
    for (int i = 0; i < 100000 && !w->calls; i++)
        uv_run(&loop, UV_RUN_ONCE);
}

static void close_store(ad_serve_store *s)
{
    ad_serve_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
}

TEST(write_and_read_back)
{
    ad_serve_store *s;
    char err[512];
    size_t interrupted = 99;
    CHECK_EQ(ad_serve_store_open(&s, &loop, path, KEY, &interrupted, err, sizeof err), 0);
    CHECK_EQ(interrupted, 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0077) == 0);
    CHECK(ad_serve_store_conversation(s, "conv_1", "default") > 0);
    const char *m0 = "{\"role\":\"system\",\"content\":\"be brief\"}";
    const char *m1 = "{\"role\":\"user\",\"content\":\"my key is " KEY "\"}";
    ad_serve_store_message(s, "conv_1", 0, m0, strlen(m0));
    ad_serve_store_message(s, "conv_1", 1, m1, strlen(m1));
    uint64_t n = ad_serve_store_response(s, "resp_1", "conv_1", 2, "completed",
                                         "{\"id\":\"resp_1\",\"status\":\"completed\"}");
    CHECK(n > 0);
    wait_st w = {0, false};
    wait_for(s, n, &w);
    CHECK_EQ(w.calls, 1);
    CHECK(w.ok);
    ad_stored_response r;
    CHECK_EQ(ad_serve_store_get_response(s, "resp_1", &r, err, sizeof err), 0);
    CHECK_STREQ(r.conv_id, "conv_1");
    CHECK_EQ(r.nmessages, 2);
    CHECK_STREQ(r.status, "completed");
    CHECK_STREQ(r.profile, "default");
    CHECK(r.json && strstr(r.json, "\"resp_1\""));
    ad_stored_response_free(&r);
    CHECK_EQ(ad_serve_store_get_response(s, "resp_nope", &r, err, sizeof err), AD_EINVAL);
    json_object *msgs = NULL;
    CHECK_EQ(ad_serve_store_messages(s, "conv_1", SIZE_MAX, &msgs, err, sizeof err), 0);
    CHECK_EQ(json_object_array_length(msgs), 2);
    const char *t = json_object_to_json_string(msgs);
    CHECK(strstr(t, "[REDACTED]") && !strstr(t, KEY));
    json_object_put(msgs);
    /* A fork: the new conversation holds the first message only. */
    n = ad_serve_store_fork(s, "conv_1", "conv_2", "default", 1);
    w.calls = 0;
    wait_for(s, n, &w);
    CHECK_EQ(ad_serve_store_messages(s, "conv_2", SIZE_MAX, &msgs, err, sizeof err), 0);
    CHECK_EQ(json_object_array_length(msgs), 1);
    json_object_put(msgs);
    CHECK_EQ(ad_serve_store_messages(s, "conv_1", 1, &msgs, err, sizeof err), 0);
    CHECK_EQ(json_object_array_length(msgs), 1);
    json_object_put(msgs);
    /* A response left running. */
    n = ad_serve_store_response(s, "resp_2", "conv_1", 2, "in_progress",
                                "{\"id\":\"resp_2\",\"status\":\"in_progress\"}");
    /* ... which stored a message of its own before the process died. */
    const char *m2 = "{\"role\":\"user\",\"content\":\"more\"}";
    n = ad_serve_store_message(s, "conv_1", 2, m2, strlen(m2));
    w.calls = 0;
    wait_for(s, n, &w);
    close_store(s);
    CHECK_EQ(ad_serve_store_open(&s, &loop, path, KEY, &interrupted, err, sizeof err), 0);
    CHECK_EQ(interrupted, 1);
    CHECK_EQ(ad_serve_store_get_response(s, "resp_2", &r, err, sizeof err), 0);
    CHECK_STREQ(r.status, "failed");
    CHECK_EQ(r.nmessages, 3); /* it ends where its conversation's messages end */
    CHECK(r.json && strstr(r.json, "\"status\":\"failed\"") && strstr(r.json, "the server stopped"));
    ad_stored_response_free(&r);
    close_store(s);
}

TEST(a_failed_job_is_reported_to_its_waiter)
{
    ad_serve_store *s;
    char err[512];
    CHECK_EQ(ad_serve_store_open(&s, &loop, path, NULL, NULL, err, sizeof err), 0);
    /* A trigger that refuses one row, so that one job of a batch fails. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TRIGGER refuse BEFORE INSERT ON conversations "
                           "WHEN NEW.id = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    uint64_t a = ad_serve_store_conversation(s, "conv_a", "p");
    uint64_t bad = ad_serve_store_conversation(s, "bad", "p");
    uint64_t b = ad_serve_store_conversation(s, "conv_b", "p");
    wait_st wa = {0, false}, wbad = {0, true}, wb = {0, false};
    CHECK_EQ(ad_serve_store_when_done(s, a, on_done, &wa), 0);
    CHECK_EQ(ad_serve_store_when_done(s, bad, on_done, &wbad), 0);
    wait_for(s, b, &wb);
    CHECK(wa.calls == 1 && wa.ok);
    CHECK(wbad.calls == 1 && !wbad.ok);
    CHECK(wb.calls == 1 && wb.ok);
    /* The rows around the bad one were written. */
    uint64_t r = ad_serve_store_response(s, "resp_b", "conv_b", 0, "completed", NULL);
    wait_st wr = {0, false};
    wait_for(s, r, &wr);
    ad_stored_response got;
    CHECK_EQ(ad_serve_store_get_response(s, "resp_b", &got, err, sizeof err), 0);
    CHECK_STREQ(got.profile, "p");
    ad_stored_response_free(&got);
    /* Waiting for a job already done answers from the loop, not inside. */
    wait_st again = {0, false};
    CHECK_EQ(ad_serve_store_when_done(s, a, on_done, &again), 0);
    CHECK_EQ(again.calls, 0);
    for (int i = 0; i < 1000 && !again.calls; i++)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_EQ(again.calls, 1);
    /* forget: no call for an owner that went away. */
    wait_st gone = {0, false};
    CHECK_EQ(ad_serve_store_when_done(s, r + 1000, on_done, &gone), 0);
    ad_serve_store_forget(s, &gone);
    close_store(s);
    CHECK_EQ(gone.calls, 0);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    snprintf(dir, sizeof dir, "/tmp/agentd-store-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/sub/serve.db", dir);
    RUN(write_and_read_back);
    RUN(a_failed_job_is_reported_to_its_waiter);
    uv_loop_close(&loop);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return harness_report("test_serve_store");
}

/*
 * test_client.c -- the MCP client and the stdio transport against real
 * processes: the fixture server tests/mcp/server.py, started with the
 * faults each case needs. What the client sent is read back from the
 * fixture's --log (one JSON line per message it received).
 *
 * Every wait runs the loop until a condition holds; a guard timer (20 s,
 * more under valgrind) only turns a hang into a failure.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../../harness.h"
#include "base/buf.h"
#include "mcp/client.h"
#include "mcp/content.h"
#include "mcp/stdio.h"

static double guard_s = 20;
static char dirs[64][64];
static int ndirs;

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t guard;
    bool guard_fired;
    ad_mcp_client *c;
    char dir[64], log[128];
    ad_mcp_state states[64];
    int nstates;
    char *last_state_msg;
    int tool_changes;
    ad_buf logs; /* every on_log line, "LEVEL LOGGER: MSG\n" */
    bool closed;
} fx;

typedef struct callrec {
    fx *f;
    int done;
    ad_mcp_call_status st;
    char *msg;
    char *text;
    bool is_error;
    int progress;
    double last_progress, last_total;
} callrec;

static void on_state(void *ud, ad_mcp_client *c, ad_mcp_state s, const char *msg)
{
    (void)c;
    fx *f = ud;
    if (f->nstates < 64)
        f->states[f->nstates++] = s;
    free(f->last_state_msg);
    f->last_state_msg = msg ? ad_strdup(msg) : NULL;
}

static void on_tools(void *ud, ad_mcp_client *c)
{
    (void)c;
    ((fx *)ud)->tool_changes++;
}

static void on_log(void *ud, ad_mcp_client *c, int level, const char *logger, const char *msg)
{
    (void)c;
    fx *f = ud;
    ad_buf_printf(&f->logs, "%d %s: %s\n", level, logger ? logger : "-", msg);
}

static void on_guard(uv_timer_t *t)
{
    ((fx *)t->data)->guard_fired = true;
}

static const char *src_dir(void)
{
    const char *s = getenv("AGENTD_SRC");
    return s && s[0] ? s : ".";
}

/* Starts the fixture with args (NULL-terminated) under a client. so may
 * adjust the transport (its command and args are filled in here). */
static int fx_start(fx *f, const char *const *args, ad_mcp_stdio_opts *so, ad_mcp_client_opts *co)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/agentd-mcp-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->log, sizeof f->log, "%s/log.jsonl", f->dir);
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    char server[512];
    snprintf(server, sizeof server, "%s/tests/mcp/server.py", src_dir());
    const char *argv[32] = {server, "--log", f->log};
    size_t n = 3;
    for (size_t i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    ad_mcp_stdio_opts dso = {0};
    if (!so)
        so = &dso;
    so->command = "python3";
    so->args = argv;
    so->nargs = n;
    char **env = so->env ? NULL : ad_mcp_env_build(NULL, 0, NULL, 0, NULL);
    if (env)
        so->env = env;
    ad_mcp_transport *t = ad_mcp_stdio_new(&f->loop, so);
    ad_mcp_env_free(env);
    if (env)
        so->env = NULL;
    ad_mcp_client_opts dco = {.name = "fx", .startup_timeout_s = 20};
    if (!co)
        co = &dco;
    if (!co->name)
        co->name = "fx";
    static const ad_mcp_client_cb cb = {on_state, on_tools, on_log};
    f->c = ad_mcp_client_new(&f->loop, t, co, &cb, f);
    if (!f->c)
        return -1;
    ad_mcp_client_start(f->c);
    return 0;
}

typedef bool (*pred_fn)(fx *f, void *arg);

static bool run_until(fx *f, pred_fn pred, void *arg)
{
    f->guard_fired = false;
    uv_timer_start(&f->guard, on_guard, (uint64_t)(guard_s * 1000), 0);
    while (!pred(f, arg) && !f->guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    return pred(f, arg);
}

static bool settled(fx *f, void *arg)
{
    (void)arg;
    ad_mcp_state s = ad_mcp_client_state(f->c);
    return s == AD_MCP_READY || s == AD_MCP_FAILED;
}

static bool in_state(fx *f, void *arg)
{
    return ad_mcp_client_state(f->c) == *(ad_mcp_state *)arg;
}

static bool call_done(fx *f, void *arg)
{
    (void)f;
    return ((callrec *)arg)->done > 0;
}

static bool log_has(fx *f, void *arg)
{
    return f->logs.data && strstr(f->logs.data, (const char *)arg);
}

static void on_closed(void *ud)
{
    ((fx *)ud)->closed = true;
}

static bool is_closed(fx *f, void *arg)
{
    (void)arg;
    return f->closed;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void fx_stop(fx *f)
{
    if (f->c && !f->closed) {
        ad_mcp_client_close(f->c, on_closed, f);
        CHECK(run_until(f, is_closed, NULL));
    }
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_walk(&f->loop, walk_close, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&f->loop), 0);
    ad_buf_free(&f->logs);
    free(f->last_state_msg);
    /* The log is read after the stop: the folder goes at the end. */
    if (ndirs < 64)
        snprintf(dirs[ndirs++], sizeof dirs[0], "%s", f->dir);
}

/* ---- the fixture's log --------------------------------------------------- */

/* Every record of the log, as a JSON array (caller puts it). */
static json_object *read_log(fx *f)
{
    json_object *arr = json_object_new_array();
    FILE *fp = fopen(f->log, "r");
    if (!fp)
        return arr;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_object *o = json_tokener_parse(line);
        if (o)
            json_object_array_add(arr, o);
    }
    free(line);
    fclose(fp);
    return arr;
}

static const char *str_at(json_object *o, const char *k1, const char *k2)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k1, &v))
        return NULL;
    if (k2 && !json_object_object_get_ex(v, k2, &v))
        return NULL;
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int count_events(json_object *log, const char *event)
{
    int n = 0;
    for (size_t i = 0; i < json_object_array_length(log); i++) {
        const char *e = str_at(json_object_array_get_idx(log, i), "event", NULL);
        n += e && strcmp(e, event) == 0;
    }
    return n;
}

/* The nth message received with method (0-based), or NULL. Borrowed. */
static json_object *recv_msg(json_object *log, const char *method, int nth)
{
    for (size_t i = 0; i < json_object_array_length(log); i++) {
        json_object *r = json_object_array_get_idx(log, i);
        json_object *msg = NULL;
        if (!json_object_object_get_ex(r, "msg", &msg))
            continue;
        const char *m = str_at(msg, "method", NULL);
        if (m && strcmp(m, method) == 0 && nth-- == 0)
            return msg;
    }
    return NULL;
}

/* ---- calls ----------------------------------------------------------------- */

static void rec_progress(void *ud, double progress, double total, const char *message)
{
    (void)message;
    callrec *r = ud;
    r->progress++;
    r->last_progress = progress;
    r->last_total = total;
}

static void rec_done(void *ud, const ad_mcp_outcome *out)
{
    callrec *r = ud;
    r->done++;
    r->st = out->status;
    free(r->msg);
    r->msg = out->message ? ad_strdup(out->message) : NULL;
    if (out->status == AD_MCP_CALL_OK) {
        ad_mcp_content c;
        char err[128];
        ad_mcp_content_render(out->result, 1 << 20, &c, err, sizeof err);
        free(r->text);
        r->text = ad_strndup(c.text, c.len);
        r->is_error = c.is_error;
        ad_mcp_content_free(&c);
    }
}

static const ad_mcp_call_cb rec_cb = {rec_progress, rec_done};

static void rec_free(callrec *r)
{
    free(r->msg);
    free(r->text);
}

/* Calls tool with args (JSON text or NULL) and waits for the end. */
static void call_wait(fx *f, callrec *r, const char *tool, const char *args, double timeout_s)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    json_object *a = args ? json_tokener_parse(args) : NULL;
    ad_mcp_call *call = ad_mcp_call_start(f->c, tool, a, timeout_s, &rec_cb, r);
    json_object_put(a);
    CHECK(call != NULL);
    CHECK(r->done == 0); /* never from inside the call */
    CHECK(run_until(f, call_done, r));
}

/* ---- the cases ------------------------------------------------------------- */

TEST(handshake)
{
    fx f;
    if (fx_start(&f, NULL, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_READY);
    CHECK(f.nstates >= 2 && f.states[0] == AD_MCP_STARTING && f.states[f.nstates - 1] == AD_MCP_READY);
    CHECK_STREQ(ad_mcp_client_protocol(f.c), AD_MCP_PROTOCOL);
    json_object *si = ad_mcp_client_server_info(f.c), *v = NULL;
    CHECK(si && json_object_object_get_ex(si, "version", &v) &&
          strcmp(json_object_get_string(v), "1.2.3") == 0);
    CHECK_STREQ(ad_mcp_client_instructions(f.c), "Fixture server for tests.");
    CHECK_EQ(ad_mcp_client_tool_count(f.c), 20);
    CHECK_EQ(f.tool_changes, 1);
    const ad_mcp_tool *t = ad_mcp_client_find_tool(&*f.c, "echo");
    CHECK(t && strcmp(t->description, "Echoes its text.") == 0);
    /* The original schema, $schema and all. */
    CHECK(t && json_object_object_get_ex(t->input_schema, "$schema", NULL));
    t = ad_mcp_client_find_tool(f.c, "tasks_only");
    CHECK(t && t->needs_tasks);
    t = ad_mcp_client_find_tool(f.c, "no_schema");
    CHECK(t && t->input_schema && json_object_is_type(t->input_schema, json_type_object));
    t = ad_mcp_client_find_tool(f.c, "add");
    CHECK(t && t->output_schema != NULL);
    fx_stop(&f);
    json_object *log = read_log(&f);
    json_object *init = recv_msg(log, "initialize", 0);
    CHECK(init != NULL);
    json_object *p = NULL, *caps = NULL;
    CHECK(json_object_object_get_ex(init, "params", &p));
    CHECK_STREQ(str_at(p, "protocolVersion", NULL), "2025-11-25");
    CHECK_STREQ(str_at(p, "clientInfo", "name"), "agentd");
    CHECK(str_at(p, "clientInfo", "version") != NULL);
    CHECK(json_object_object_get_ex(p, "capabilities", &caps) &&
          json_object_object_length(caps) == 0);
    CHECK(recv_msg(log, "notifications/initialized", 0) != NULL);
    /* The server's stdin was closed: it saw the end of its input. */
    CHECK_EQ(count_events(log, "stdin-eof"), 1);
    json_object_put(log);
}

TEST(accepted_versions_and_refused_one)
{
    static const char *const ok[] = {"2025-06-18", "2025-03-26", "2024-11-05"};
    for (size_t i = 0; i < 3; i++) {
        fx f;
        const char *args[] = {"--version", ok[i], NULL};
        if (fx_start(&f, args, NULL, NULL) != 0)
            SKIP("cannot start the fixture");
        CHECK(run_until(&f, settled, NULL));
        CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_READY);
        CHECK_STREQ(ad_mcp_client_protocol(f.c), ok[i]);
        fx_stop(&f);
    }
    /* Refused for good, restarts or not. */
    fx f;
    const char *args[] = {"--version", "1999-01-01", NULL};
    ad_mcp_client_opts co = {.startup_timeout_s = 20, .max_restarts = 3, .backoff_initial_s = 0.01};
    if (fx_start(&f, args, NULL, &co) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_FAILED);
    const char *e = ad_mcp_client_error(f.c);
    CHECK(e && strstr(e, "'1999-01-01'") && strstr(e, "does not speak"));
    CHECK(f.last_state_msg && strstr(f.last_state_msg, "1999-01-01"));
    CHECK_EQ(ad_mcp_client_tool_count(f.c), 0);
    /* A call to a failed server ends from the loop, at once. */
    callrec r;
    call_wait(&f, &r, "echo", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_DOWN);
    CHECK(r.msg && strstr(r.msg, "is not running"));
    rec_free(&r);
    fx_stop(&f);
    json_object *log = read_log(&f);
    CHECK_EQ(count_events(log, "start"), 1);
    /* Disconnected: no tools/list after the answer. */
    CHECK(recv_msg(log, "tools/list", 0) == NULL);
    json_object_put(log);
}

TEST(pagination)
{
    fx f;
    const char *args[] = {"--page-size", "3", NULL};
    if (fx_start(&f, args, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_tool_count(f.c), 20);
    CHECK_EQ(f.tool_changes, 1); /* one list, when it was complete */
    CHECK(ad_mcp_client_find_tool(f.c, "no_schema") != NULL);
    fx_stop(&f);
    json_object *log = read_log(&f);
    /* 20 tools, 3 a page: 7 requests, the cursor echoed as it came. */
    CHECK(recv_msg(log, "tools/list", 6) != NULL);
    CHECK(recv_msg(log, "tools/list", 7) == NULL);
    json_object *second = recv_msg(log, "tools/list", 1);
    CHECK(second && str_at(second, "params", "cursor") != NULL);
    CHECK(str_at(recv_msg(log, "tools/list", 0), "params", "cursor") == NULL);
    json_object_put(log);
}

static bool has_added_later(fx *f, void *arg)
{
    (void)arg;
    return ad_mcp_client_find_tool(f->c, "added_later") != NULL;
}

TEST(list_changed_relists)
{
    fx f;
    const char *args[] = {"--fault", "list-changed", NULL};
    if (fx_start(&f, args, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    /* The notification came while the first listing was under way: the
     * client lists once more and reports the new list. */
    CHECK(run_until(&f, has_added_later, NULL));
    CHECK_EQ(f.tool_changes, 2);
    CHECK_EQ(ad_mcp_client_tool_count(f.c), 21);
    uint64_t gen = ad_mcp_client_generation(f.c);
    /* A list that comes back the same is not a change. */
    callrec r;
    call_wait(&f, &r, "echo", "{\"text\":\"x\"}", 0);
    CHECK_EQ(ad_mcp_client_generation(f.c), gen);
    rec_free(&r);
    fx_stop(&f);
}

TEST(server_requests_while_a_request_is_pending)
{
    fx f;
    const char *args[] = {"--fault", "ask-on-list", NULL};
    if (fx_start(&f, args, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_READY);
    /* During a call too. */
    callrec r;
    call_wait(&f, &r, "ask", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_OK);
    CHECK(r.text && strstr(r.text, "\"ping\": {}"));
    CHECK(r.text && strstr(r.text, "-32601"));
    rec_free(&r);
    fx_stop(&f);
    json_object *log = read_log(&f);
    json_object *asked = NULL;
    for (size_t i = 0; i < json_object_array_length(log); i++) {
        const char *e = str_at(json_object_array_get_idx(log, i), "event", NULL);
        if (e && strcmp(e, "asked") == 0)
            asked = json_object_array_get_idx(log, i);
    }
    CHECK(asked != NULL);
    json_object *ping = NULL, *roots = NULL, *code = NULL;
    CHECK(json_object_object_get_ex(asked, "ping", &ping) && json_object_object_length(ping) == 0);
    CHECK(json_object_object_get_ex(asked, "roots", &roots) &&
          json_object_object_get_ex(roots, "error", &roots) &&
          json_object_object_get_ex(roots, "code", &code) && json_object_get_int(code) == -32601);
    json_object_put(log);
}

TEST(results_errors_and_logs)
{
    fx f;
    if (fx_start(&f, NULL, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    /* A call made before the server is ready waits for it. */
    callrec r;
    call_wait(&f, &r, "echo", "{\"text\":\"early\"}", 0);
    CHECK_EQ(r.st, AD_MCP_CALL_OK);
    CHECK_STREQ(r.text, "early");
    rec_free(&r);
    call_wait(&f, &r, "fail", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_OK);
    CHECK(r.is_error);
    rec_free(&r);
    call_wait(&f, &r, "rpc_error", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_ERROR);
    CHECK(r.msg && strstr(r.msg, "-32602") && strstr(r.msg, "bad arguments on purpose"));
    rec_free(&r);
    call_wait(&f, &r, "log", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_OK);
    CHECK(log_has(&f, "2 fixture: a warning message"));
    CHECK(log_has(&f, "3 fixture: a error message"));
    CHECK(log_has(&f, "1 stderr: fixture: started"));
    rec_free(&r);
    fx_stop(&f);
}

TEST(progress_tokens_are_unique)
{
    fx f;
    if (fx_start(&f, NULL, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    callrec a, b;
    call_wait(&f, &a, "slow", "{\"seconds\":0.05,\"steps\":3}", 0);
    call_wait(&f, &b, "slow", "{\"seconds\":0.05,\"steps\":2}", 0);
    CHECK_EQ(a.st, AD_MCP_CALL_OK);
    CHECK_EQ(a.progress, 3);
    CHECK(a.last_progress == 3 && a.last_total == 3);
    CHECK_EQ(b.progress, 2);
    rec_free(&a);
    rec_free(&b);
    fx_stop(&f);
    json_object *log = read_log(&f);
    json_object *c1 = recv_msg(log, "tools/call", 0), *c2 = recv_msg(log, "tools/call", 1);
    json_object *p1 = NULL, *p2 = NULL, *m1 = NULL, *m2 = NULL, *t1 = NULL, *t2 = NULL;
    CHECK(c1 && c2);
    if (c1 && c2) {
        json_object_object_get_ex(c1, "params", &p1);
        json_object_object_get_ex(c2, "params", &p2);
        json_object_object_get_ex(p1, "_meta", &m1);
        json_object_object_get_ex(p2, "_meta", &m2);
        CHECK(json_object_object_get_ex(m1, "progressToken", &t1));
        CHECK(json_object_object_get_ex(m2, "progressToken", &t2));
        CHECK(t1 && t2 && !json_object_equal(t1, t2));
    }
    json_object_put(log);
}

TEST(timeout_cancels_and_the_late_answer_is_dropped)
{
    fx f;
    if (fx_start(&f, NULL, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    callrec r;
    call_wait(&f, &r, "wait_cancel", NULL, 0.2);
    CHECK_EQ(r.st, AD_MCP_CALL_TIMEOUT);
    CHECK(r.msg && strstr(r.msg, "did not answer within 0.2s"));
    /* The fixture answers once it saw notifications/cancelled, then says
     * so: by then the answer went by, and was dropped. */
    CHECK(run_until(&f, log_has, "answered the cancelled request"));
    CHECK_EQ(r.done, 1);
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_READY);
    rec_free(&r);
    callrec e;
    call_wait(&f, &e, "echo", "{\"text\":\"still fine\"}", 0);
    CHECK_STREQ(e.text, "still fine");
    rec_free(&e);
    fx_stop(&f);
    json_object *log = read_log(&f);
    json_object *cancel = recv_msg(log, "notifications/cancelled", 0);
    json_object *call = recv_msg(log, "tools/call", 0), *cid = NULL, *p = NULL, *rid = NULL;
    CHECK(cancel && call);
    if (cancel && call) {
        json_object_object_get_ex(call, "id", &cid);
        json_object_object_get_ex(cancel, "params", &p);
        CHECK(json_object_object_get_ex(p, "requestId", &rid) && json_object_equal(rid, cid));
        CHECK(str_at(p, "reason", NULL) && strstr(str_at(p, "reason", NULL), "timed out"));
    }
    json_object_put(log);
}

TEST(cancel_sends_cancelled_and_no_done)
{
    fx f;
    if (fx_start(&f, NULL, NULL, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    callrec r = {0};
    ad_mcp_call *call = ad_mcp_call_start(f.c, "wait_cancel", NULL, 0, &rec_cb, &r);
    CHECK(call != NULL);
    ad_mcp_call_cancel(call, "the user pressed Ctrl-C");
    CHECK(run_until(&f, log_has, "answered the cancelled request"));
    CHECK_EQ(r.done, 0);
    /* Closing with a call in flight: cancelled too, no on_done. */
    callrec h = {0};
    CHECK(ad_mcp_call_start(f.c, "hang", NULL, 0, &rec_cb, &h) != NULL);
    callrec e;
    call_wait(&f, &e, "echo", "{\"text\":\"x\"}", 0); /* the hang call is out by now */
    rec_free(&e);
    fx_stop(&f);
    CHECK_EQ(h.done, 0);
    json_object *log = read_log(&f);
    json_object *c1 = recv_msg(log, "notifications/cancelled", 0);
    json_object *c2 = recv_msg(log, "notifications/cancelled", 1);
    CHECK(c1 && strcmp(str_at(c1, "params", "reason"), "the user pressed Ctrl-C") == 0);
    CHECK(c2 != NULL);
    json_object_put(log);
}

static bool ready_again(fx *f, void *arg)
{
    int *seen_restart = arg;
    for (int i = 0; i < f->nstates; i++)
        if (f->states[i] == AD_MCP_RESTARTING)
            *seen_restart = 1;
    return *seen_restart && ad_mcp_client_state(f->c) == AD_MCP_READY;
}

TEST(crash_fails_calls_at_once_then_restarts)
{
    fx f;
    ad_mcp_client_opts co = {.startup_timeout_s = 20, .max_restarts = 2, .backoff_initial_s = 0.01};
    if (fx_start(&f, NULL, NULL, &co) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    callrec other = {0};
    CHECK(ad_mcp_call_start(f.c, "hang", NULL, 0, &rec_cb, &other) != NULL);
    callrec r;
    call_wait(&f, &r, "crash", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_DOWN);
    CHECK(r.msg && strstr(r.msg, "exited with status 3"));
    CHECK(r.msg && strstr(r.msg, "fatal: crashing on purpose in the middle of a call"));
    /* The other call in flight ended as well, without a timeout. */
    CHECK_EQ(other.done, 1);
    CHECK_EQ(other.st, AD_MCP_CALL_DOWN);
    rec_free(&r);
    rec_free(&other);
    int seen = 0;
    CHECK(run_until(&f, ready_again, &seen));
    CHECK_EQ(ad_mcp_client_tool_count(f.c), 20);
    callrec e;
    call_wait(&f, &e, "echo", "{\"text\":\"after the restart\"}", 0);
    CHECK_STREQ(e.text, "after the restart");
    rec_free(&e);
    fx_stop(&f);
    json_object *log = read_log(&f);
    CHECK_EQ(count_events(log, "start"), 2);
    /* Initialised and listed again; ids went on counting. */
    json_object *i1 = recv_msg(log, "initialize", 0), *i2 = recv_msg(log, "initialize", 1);
    json_object *id1 = NULL, *id2 = NULL;
    CHECK(i1 && i2 && json_object_object_get_ex(i1, "id", &id1) &&
          json_object_object_get_ex(i2, "id", &id2) &&
          json_object_get_int64(id2) > json_object_get_int64(id1));
    CHECK(recv_msg(log, "tools/list", 1) != NULL);
    json_object_put(log);
}

TEST(start_failures_restart_then_fail)
{
    fx f;
    const char *args[] = {"--fault", "crash-on-start", NULL};
    ad_mcp_client_opts co = {.startup_timeout_s = 20, .max_restarts = 2, .backoff_initial_s = 0.01};
    if (fx_start(&f, args, NULL, &co) != 0)
        SKIP("cannot start the fixture");
    ad_mcp_state failed = AD_MCP_FAILED;
    CHECK(run_until(&f, in_state, &failed));
    const char *e = ad_mcp_client_error(f.c);
    CHECK(e && strstr(e, "exited with status 1 while starting"));
    CHECK(e && strstr(e, "fixture: cannot start: the configuration is missing"));
    fx_stop(&f);
    json_object *log = read_log(&f);
    CHECK_EQ(count_events(log, "start"), 3);
    json_object_put(log);
}

TEST(startup_timeout)
{
    fx f;
    const char *args[] = {"--fault", "hang-init", NULL};
    ad_mcp_client_opts co = {.startup_timeout_s = 0.3};
    if (fx_start(&f, args, NULL, &co) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_FAILED);
    const char *e = ad_mcp_client_error(f.c);
    CHECK(e && strstr(e, "did not finish starting (initialize and tools/list) within 0.3s"));
    fx_stop(&f);
}

TEST(missing_program)
{
    fx f;
    memset(&f, 0, sizeof f);
    uv_loop_init(&f.loop);
    uv_timer_init(&f.loop, &f.guard);
    f.guard.data = &f;
    snprintf(f.dir, sizeof f.dir, "/tmp/agentd-mcp-XXXXXX");
    CHECK(mkdtemp(f.dir) != NULL);
    snprintf(f.log, sizeof f.log, "%s/none", f.dir);
    char **env = ad_mcp_env_build(NULL, 0, NULL, 0, NULL);
    ad_mcp_stdio_opts so = {.command = "agentd-no-such-program", .env = env};
    ad_mcp_transport *t = ad_mcp_stdio_new(&f.loop, &so);
    ad_mcp_env_free(env);
    ad_mcp_client_opts co = {.name = "nope", .startup_timeout_s = 5};
    static const ad_mcp_client_cb cb = {on_state, on_tools, on_log};
    f.c = ad_mcp_client_new(&f.loop, t, &co, &cb, &f);
    ad_mcp_client_start(f.c);
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_FAILED);
    const char *e = ad_mcp_client_error(f.c);
    CHECK(e && strstr(e, "cannot start 'agentd-no-such-program'"));
    fx_stop(&f);
}

TEST(banner_noise_and_long_lines_are_skipped)
{
    fx f;
    const char *args[] = {"--fault", "banner", "--fault", "noise", "--fault", "long-line",
                          "--long-line-bytes", "300000", NULL};
    ad_mcp_stdio_opts so = {.max_line = 100000};
    if (fx_start(&f, args, &so, NULL) != 0)
        SKIP("cannot start the fixture");
    CHECK(run_until(&f, settled, NULL));
    CHECK_EQ(ad_mcp_client_state(f.c), AD_MCP_READY);
    callrec r;
    call_wait(&f, &r, "echo", "{\"text\":\"through the noise\"}", 0);
    CHECK_STREQ(r.text, "through the noise");
    rec_free(&r);
    CHECK(log_has(&f, "skipped a line on the server's stdout (not JSON"));
    CHECK(log_has(&f, "Fixture MCP server 1.2.3 starting"));
    CHECK(log_has(&f, "skipped a line of 300002 bytes on the server's stdout: longer than the "
                      "limit of 100000 bytes"));
    /* A line within the limit but beyond pipe and read sizes is whole
     * (each two-byte character is 6 bytes of JSON: 78 KB). */
    call_wait(&f, &r, "big", "{\"bytes\":26000}", 0);
    CHECK(r.text && strlen(r.text) == 26000);
    rec_free(&r);
    /* An answer past the limit fails its call at once (not at a timeout:
     * this call has none). */
    call_wait(&f, &r, "big", "{\"bytes\":40000}", 0);
    CHECK_EQ(r.st, AD_MCP_CALL_ERROR);
    CHECK(r.msg && strstr(r.msg, "with a message of 120") &&
          strstr(r.msg, "longer than the limit of 100000 bytes"));
    rec_free(&r);
    call_wait(&f, &r, "echo", "{\"text\":\"after\"}", 0);
    CHECK_STREQ(r.text, "after");
    rec_free(&r);
    fx_stop(&f);
}

TEST(environment_is_minimal)
{
    fx f;
    setenv("AGENTD_TEST_SECRET_VAR", "do-not-pass-this", 1);
    setenv("AGENTD_TEST_PASSED", "passed-through", 1);
    setenv("AGENTD_TEST_KEYLIKE", "sk-the-provider-key-123", 1);
    ad_header env[] = {{"LITERAL", "lit"}, {"HOME", "/overridden"}, {"HAS_KEY", "x sk-the-provider-key-123"}};
    char *pass[] = {"AGENTD_TEST_PASSED", "AGENTD_TEST_UNSET_ONE", "AGENTD_TEST_KEYLIKE"};
    char **e = ad_mcp_env_build(env, 3, pass, 3, "sk-the-provider-key-123");
    ad_mcp_stdio_opts so = {.env = e};
    if (fx_start(&f, NULL, &so, NULL) != 0)
        SKIP("cannot start the fixture");
    ad_mcp_env_free(e);
    callrec r;
    call_wait(&f, &r, "env", NULL, 0);
    CHECK_EQ(r.st, AD_MCP_CALL_OK);
    json_object *o = r.text ? json_tokener_parse(r.text) : NULL;
    CHECK(o != NULL);
    CHECK_STREQ(str_at(o, "LITERAL", NULL), "lit");
    CHECK_STREQ(str_at(o, "HOME", NULL), "/overridden");
    CHECK_STREQ(str_at(o, "AGENTD_TEST_PASSED", NULL), "passed-through");
    CHECK(getenv("PATH") == NULL || str_at(o, "PATH", NULL) != NULL);
    CHECK(str_at(o, "AGENTD_TEST_SECRET_VAR", NULL) == NULL);
    CHECK(str_at(o, "AGENTD_TEST_KEYLIKE", NULL) == NULL);
    CHECK(str_at(o, "HAS_KEY", NULL) == NULL);
    CHECK(!r.text || !strstr(r.text, "sk-the-provider-key-123"));
    json_object_put(o);
    rec_free(&r);
    fx_stop(&f);
    unsetenv("AGENTD_TEST_SECRET_VAR");
}

static int pid_of_start(fx *f)
{
    json_object *log = read_log(f);
    int pid = 0;
    for (size_t i = 0; i < json_object_array_length(log); i++) {
        json_object *r = json_object_array_get_idx(log, i), *p = NULL;
        const char *e = str_at(r, "event", NULL);
        if (e && strcmp(e, "start") == 0 && json_object_object_get_ex(r, "pid", &p))
            pid = json_object_get_int(p);
    }
    json_object_put(log);
    return pid;
}

TEST(shutdown_escalates_to_sigterm_and_sigkill)
{
    /* A server that ignores the end of its input gets SIGTERM; one that
     * ignores SIGTERM too gets SIGKILL. Either way close() ends. */
    static const char *const faults[][5] = {
        {"--fault", "ignore-eof", NULL},
        {"--fault", "ignore-eof", "--fault", "ignore-term", NULL},
    };
    for (int i = 0; i < 2; i++) {
        fx f;
        ad_mcp_stdio_opts so = {.stdin_grace_s = 0.1, .term_grace_s = 0.1};
        if (fx_start(&f, (const char *const *)faults[i], &so, NULL) != 0)
            SKIP("cannot start the fixture");
        CHECK(run_until(&f, settled, NULL));
        int pid = pid_of_start(&f);
        CHECK(pid > 0);
        fx_stop(&f);
        /* Reaped and gone. (That stdin is closed first is the handshake
         * case's: here the grace is too short to wait for the log.) */
        CHECK(pid > 0 && kill(pid, 0) != 0);
    }
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (getenv("AGENTD_WRAP") && getenv("AGENTD_WRAP")[0])
        guard_s = 120;
    RUN(handshake);
    RUN(accepted_versions_and_refused_one);
    RUN(pagination);
    RUN(list_changed_relists);
    RUN(server_requests_while_a_request_is_pending);
    RUN(results_errors_and_logs);
    RUN(progress_tokens_are_unique);
    RUN(timeout_cancels_and_the_late_answer_is_dropped);
    RUN(cancel_sends_cancelled_and_no_done);
    RUN(crash_fails_calls_at_once_then_restarts);
    RUN(start_failures_restart_then_fail);
    RUN(startup_timeout);
    RUN(missing_program);
    RUN(banner_noise_and_long_lines_are_skipped);
    RUN(environment_is_minimal);
    RUN(shutdown_escalates_to_sigterm_and_sigkill);
    for (int i = 0; i < ndirs; i++) {
        char path[160];
        snprintf(path, sizeof path, "%.64s/log.jsonl", dirs[i]);
        unlink(path);
        rmdir(dirs[i]);
    }
    return harness_report("test_client");
}

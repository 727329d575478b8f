/*
 * test_abi.c -- plugin ABI 1.1 in process (tools/plugin.c): calls through
 * the host on a real loop (arguments as values, a call that completes
 * later from another thread, progress, cancellation at a timeout, the
 * plugin's data), and the versioning rules: a 1.1 plugin that also speaks
 * 1.0 loads into a simulated 1.0 host (a table cut at the 1.0 size), a
 * 1.1-only plugin refuses it clearly, and a plugin built against the 1.0
 * header runs here.
 */
#define _GNU_SOURCE
#include "base/buf.h"
#include "../../harness.h"
#include "tools/host.h"
#include "tools/plugin.h"

#include <agentd/plugin.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_loop_t loop;

static char *plugin_path(const char *dir, const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/%s", root && *root ? root : ".", dir, file);
    return ad_strdup(path);
}

static void free_host(ad_tool_host *h)
{
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static ad_tool_host *load(const char *dir, const char *file, const char *config)
{
    char *path = plugin_path(dir, file), err[512];
    ad_tool_host *t = ad_tool_host_new(&loop);
    if (t && ad_plugin_load_file(t, path, config, NULL, err, sizeof err) != AD_OK) {
        fprintf(stderr, "test_abi: %s\n", err);
        free_host(t);
        t = NULL;
    }
    free(path);
    return t;
}

typedef struct batch {
    bool done;
    size_t n;
    char *text[4];
    bool is_error[4];
    ad_call_state state[4];
    int progress;
    char progress_msg[64];
} batch;

static void b_done(void *ud, const ad_call_outcome *o, size_t n)
{
    batch *b = ud;
    b->done = true;
    b->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        b->text[i] = ad_strndup(o[i].result.content, o[i].result.len);
        b->is_error[i] = o[i].result.is_error;
        b->state[i] = o[i].state;
    }
}

static void b_progress(void *ud, size_t i, double done, double total, const char *msg)
{
    batch *b = ud;
    (void)i;
    b->progress++;
    snprintf(b->progress_msg, sizeof b->progress_msg, "%g/%g %s", done, total, msg ? msg : "");
}

static const ad_batch_cb bcb = {.on_progress = b_progress, .on_done = b_done};

static void run_batch(ad_tool_host *t, const ad_call_req *q, size_t n, batch *b)
{
    memset(b, 0, sizeof *b);
    if (ad_tool_host_run(t, "conv-9", q, n, &bcb, b) == NULL)
        return;
    while (!b->done)
        uv_run(&loop, UV_RUN_ONCE);
}

static void free_batch(batch *b)
{
    for (size_t i = 0; i < b->n && i < 4; i++)
        free(b->text[i]);
}

static char *call1(ad_tool_host *t, const char *name, const char *args, double timeout_s)
{
    batch b;
    ad_call_req q = {"call_7", name, args, strlen(args), timeout_s};
    run_batch(t, &q, 1, &b);
    char *s = b.text[0];
    b.text[0] = NULL;
    free_batch(&b);
    return s;
}

TEST(calls_in_process_get_their_context)
{
    ad_tool_host *t = load("tests/plugins", "v11.so", "{\"greeting\":\"Ahoy\"}");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    CHECK(ad_plugin_in_process(ad_tool_host_provider_at(t, 0)));
    char *got = call1(t, "greet", "{\"name\":\"Ada\"}", 10);
    CHECK_STREQ(got, "Ahoy, Ada!"); /* the config, as a value */
    free(got);
    const char *want[] = {"1", "2"};
    for (int i = 0; i < 2; i++) {
        got = call1(t, "count", "{}", 10);
        CHECK_STREQ(got, want[i]); /* the plugin's data */
        free(got);
    }
    /* Completed later from a thread of the plugin's, with progress; no
     * pool thread waits meanwhile. */
    batch b;
    ad_call_req q[] = {{"l1", "later", "{\"ms\":30}", 9, 10}, {"l2", "later", "{\"ms\":1}", 8, 10}};
    run_batch(t, q, 2, &b);
    CHECK_STREQ(b.text[0], "later l1 conv-9");
    CHECK_STREQ(b.text[1], "later l2 conv-9");
    CHECK(!b.is_error[0] && !b.is_error[1]);
    CHECK(b.progress >= 1);
    CHECK_STREQ(b.progress_msg, "1/2 halfway");
    free_batch(&b);
    /* A timeout in process: cancelled() turns true, and the call ends. */
    ad_call_req s = {"s1", "spin", "{\"ms\":60000}", 12, 0.2};
    run_batch(t, &s, 1, &b);
    CHECK_EQ(b.state[0], AD_CALL_TIMED_OUT);
    CHECK_STREQ(b.text[0], "tool 'spin' timed out after 0.2 s (its result will be ignored)");
    free_batch(&b);
    /* The spinning call noticed and returned: nothing of it runs any more. */
    while (ad_tool_host_busy(t))
        uv_run(&loop, UV_RUN_ONCE);
    got = call1(t, "deadline", "{}", 5);
    CHECK_STREQ(got, "some");
    free(got);
    got = call1(t, "values", "{\"a\":[1,2],\"s\":\"\"}", 0);
    CHECK_STREQ(got, "a array len=2 first=int\ns string len=0\nabsent none \n");
    free(got);
    free_host(t);
}

/* ---- a simulated host of ABI 1.0 ------------------------------------------ */

static agentd_tool old_tool;
static char old_out[256];

static int old_register(agentd_plugin *self, const agentd_tool *tool)
{
    (void)self;
    old_tool = *tool;
    return AGENTD_OK;
}

static const char *old_config(agentd_plugin *self)
{
    (void)self;
    return NULL;
}

static int old_write(agentd_result *out, const char *data, size_t len)
{
    (void)out;
    snprintf(old_out + strlen(old_out), sizeof old_out - strlen(old_out), "%.*s", (int)len, data);
    return AGENTD_OK;
}

static int old_error(agentd_result *out, const char *msg)
{
    return old_write(out, msg, strlen(msg));
}

static void old_log(agentd_plugin *self, int level, const char *msg)
{
    (void)self, (void)level, (void)msg;
}

/* A host table as agentd of ABI 1.0 passed it: the 1.0 functions, its
 * size the 1.0 size (the rest of the struct is not there for the plugin). */
static int init_on_old_host(const char *file, char *err, size_t errlen)
{
    char *path = plugin_path(file[0] == 'd' || file[0] == 'v' ? "tests/plugins" : "plugins", file);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    free(path);
    if (h == NULL) {
        snprintf(err, errlen, "dlopen: %s", dlerror());
        return -100;
    }
    union {
        void *obj;
        agentd_plugin_init_fn fn;
    } init;
    init.obj = dlsym(h, AGENTD_PLUGIN_INIT_SYMBOL);
    agentd_host_api api;
    memset(&api, 0xA5, sizeof api); /* what lies beyond the 1.0 size is not the host's */
    api.abi_major = 1;
    api.abi_minor = 0;
    api.size = offsetof(agentd_host_api, log) + sizeof api.log;
    api.register_tool = old_register;
    api.config_json = old_config;
    api.result_write = old_write;
    api.result_error = old_error;
    api.log = old_log;
    memset(&old_tool, 0, sizeof old_tool);
    old_out[0] = '\0';
    err[0] = '\0';
    int rc = init.obj ? init.fn(&api, (agentd_plugin *)&api, err, errlen) : -101;
    if (rc == AGENTD_OK && old_tool.invoke)
        old_tool.invoke(old_tool.tool_data, "{}", 2, (agentd_result *)&api);
    /* Not closed: under ASan leak reports need the plugin's frames. */
    return rc;
}

TEST(a_plugin_of_abi_1_1_on_a_host_of_abi_1_0)
{
    char err[256];
    /* It speaks 1.0 as well: it registers an agentd_tool with invoke. */
    CHECK_EQ(init_on_old_host("dual.so", err, sizeof err), AGENTD_OK);
    CHECK_STREQ(old_tool.name, "dual");
    CHECK_EQ(old_tool.size, sizeof(agentd_tool));
    CHECK_STREQ(old_out, "invoke");
    /* add needs 1.1 and says so. */
    CHECK_EQ(init_on_old_host("add.so", err, sizeof err), AGENTD_EABI);
    CHECK_STREQ(err, "built for ABI 1.1, host has 1.0");
    CHECK(old_tool.name == NULL);
    /* On this host the same dual.so takes the 1.1 path. */
    ad_tool_host *t = load("tests/plugins", "dual.so", NULL);
    CHECK(t != NULL);
    if (t) {
        char *got = call1(t, "dual", "{\"name\":\"x\"}", 10);
        CHECK_STREQ(got, "call: x");
        free(got);
        free_host(t);
    }
}

TEST(a_plugin_built_against_the_1_0_header_runs)
{
    ad_tool_host *t = load("tests/plugins", "abi10.so", NULL);
    CHECK(t != NULL);
    if (t == NULL)
        return;
    char *got = call1(t, "old_add", "{\"a\":2,\"b\":3}", 10);
    CHECK_STREQ(got, "5");
    free(got);
    free_host(t);
}

TEST(register_call_tool_checks_as_register_tool_does)
{
    ad_tool_host *t = ad_tool_host_new(&loop);
    char *path = plugin_path("tests/plugins", "v11.so"), err[512];
    CHECK_EQ(ad_plugin_load_file(t, path, NULL, NULL, err, sizeof err), 0);
    /* Twice: every name is taken already. */
    CHECK(ad_plugin_load_file(t, path, NULL, NULL, err, sizeof err) < 0);
    CHECK_STREQ(err, "plugin v11.so: duplicate tool name 'count' (already registered by v11.so)");
    free(path);
    free_host(t);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    RUN(calls_in_process_get_their_context);
    RUN(a_plugin_of_abi_1_1_on_a_host_of_abi_1_0);
    RUN(a_plugin_built_against_the_1_0_header_runs);
    RUN(register_call_tool_checks_as_register_tool_does);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "test_abi: the loop has handles left\n");
        harness_failed++;
    }
    return harness_report("test_abi");
}

/*
 * test_tools.c -- the plugin provider (tools/plugin.c) in a tool host,
 * against real plugin files.
 *
 * Each test builds a private plugin folder (mkdtemp) holding symlinks to the
 * built plugins ($AGENTD_DIR/plugins/X.so and $AGENTD_DIR/tests/plugins/X.so,
 * AGENTD_DIR defaulting to "."), loads it into a host and checks the exact
 * messages the host and the plugin provider produce; calls run as batches
 * on a real loop. Log output is checked by pointing fd 2 at a temporary
 * file for the duration of a test (the host's log function writes there
 * the way agentd's front end does).
 */
#include "base/buf.h"
#include "../../harness.h"
#include "tools/host.h"
#include "tools/plugin.h"

#include <agentd/plugin.h>

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fixtures ----------------------------------------------------------- */

/* Absolute path of a built plugin, looked up in plugins/ then tests/plugins/. */
static char *plugin_src(const char *file)
{
    const char *root = getenv("AGENTD_DIR");
    static const char *const subdirs[] = {"plugins", "tests/plugins"};
    char path[PATH_MAX];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", root && *root ? root : ".", subdirs[i], file);
        char *abs = realpath(path, NULL);
        if (abs)
            return abs;
    }
    fprintf(stderr, "test_tools: plugin %s not found (build it first)\n", file);
    return NULL;
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/agentd-tools-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? ad_strdup(d) : NULL;
}

/* Links plugin `file` into dir as `as` (same name when as is NULL). */
static int add_plugin(const char *dir, const char *file, const char *as)
{
    char *src = plugin_src(file);
    if (src == NULL)
        return -1;
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", dir, as ? as : file);
    int rc = symlink(src, dst);
    free(src);
    return rc;
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void remove_dir(char *dir)
{
    if (dir == NULL)
        return;
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static uv_loop_t loop;
static const char *log_secret; /* redacted by the log function */

/* The front end's log function: the line as agentd shows it, on stderr. */
static void log_to_stderr(void *ud, const ad_tool_log_line *l)
{
    (void)ud;
    char line[AD_TOOL_LOG_LINE_MAX + 512];
    size_t n = ad_tool_log_format(line, sizeof line, l, log_secret);
    fwrite(line, 1, n, stderr);
}

static ad_tool_host *new_host(int level)
{
    ad_tool_host *h = ad_tool_host_new(&loop);
    if (h)
        ad_tool_host_set_log(h, log_to_stderr, NULL, level);
    return h;
}

/* Frees h and lets the loop close its handles. */
static void free_host(ad_tool_host *h)
{
    ad_tool_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Loads a fresh folder holding exactly the given plugins (NULL-terminated). */
static ad_tool_host *load_plugins(const char *const *files, int *rc, char *err, size_t errlen)
{
    char *dir = make_dir();
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    *rc = -100;
    err[0] = '\0';
    if (dir && t) {
        for (size_t i = 0; files[i]; i++)
            if (add_plugin(dir, files[i], NULL) != 0)
                fprintf(stderr, "cannot link %s\n", files[i]);
        *rc = ad_plugin_load_dir(t, dir, NULL, err, errlen);
    }
    remove_dir(dir);
    return t;
}

/* One call's outcome, kept after its batch is gone. */
typedef struct one {
    bool done;
    ad_tool_result r;
    ad_call_state state;
} one;

static void one_done(void *ud, const ad_call_outcome *o, size_t n)
{
    one *x = ud;
    x->done = true;
    if (n == 1) {
        x->r = o[0].result;
        x->r.content = ad_strndup(o[0].result.content, o[0].result.len);
        x->state = o[0].state;
    }
}

/* Runs one call through the host to its end; fills *r (caller frees). */
static int run_one(ad_tool_host *t, const char *name, const char *args, size_t len,
                   ad_tool_result *r)
{
    one x = {0};
    ad_call_req q = {"call_1", name, args, len, 0};
    static const ad_batch_cb cb = {.on_done = one_done};
    if (ad_tool_host_run(t, "conv", &q, 1, &cb, &x) == NULL)
        return AD_ENOMEM;
    while (!x.done)
        uv_run(&loop, UV_RUN_ONCE);
    *r = x.r;
    return r->content ? AD_OK : AD_ENOMEM;
}

/* Runs a call and returns the content (caller frees); sets *is_error. */
static char *call(ad_tool_host *t, const char *name, const char *args, bool *is_error)
{
    ad_tool_result r;
    int rc = run_one(t, name, args, args ? strlen(args) : 0, &r);
    if (rc != 0 || r.content == NULL) {
        *is_error = true;
        return ad_strdup("(invoke failed)");
    }
    *is_error = r.is_error;
    if (strlen(r.content) != r.len)
        fprintf(stderr, "result length mismatch\n");
    return r.content;
}

#define CHECK_CALL(t, name, args, want, want_err)                                                  \
    do {                                                                                           \
        bool e_;                                                                                   \
        char *got_ = call((t), (name), (args), &e_);                                               \
        CHECK_STREQ(got_, (want));                                                                 \
        CHECK_EQ(e_, (want_err));                                                                  \
        free(got_);                                                                                \
    } while (0)

/* stderr capture: fd 2 goes to a temporary file until capture_end(). */
static int saved_fd = -1;
static FILE *cap_file;

static void capture_begin(void)
{
    fflush(stderr);
    cap_file = tmpfile();
    saved_fd = dup(2);
    if (cap_file)
        dup2(fileno(cap_file), 2);
}

static char *capture_end(void)
{
    fflush(stderr);
    if (saved_fd >= 0) {
        dup2(saved_fd, 2);
        close(saved_fd);
        saved_fd = -1;
    }
    ad_buf b = AD_BUF_INIT;
    if (cap_file) {
        char chunk[4096];
        size_t n;
        rewind(cap_file);
        while ((n = fread(chunk, 1, sizeof chunk, cap_file)) > 0)
            ad_buf_append(&b, chunk, n);
        fclose(cap_file);
        cap_file = NULL;
    }
    return ad_buf_steal(&b);
}

static size_t count_substr(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p += strlen(sub))
        n++;
    return n;
}

/* ---- loading ------------------------------------------------------------ */

/* Loads one plugin file that must fail with exactly the message want,
 * leaving no tool registered. */
static void load_fails(const char *file, const char *want)
{
    char err[512];
    int rc;
    const char *files[] = {file, NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK_STREQ(err, want);
    CHECK_EQ(ad_tool_host_count(t), 0);
    free_host(t);
}

TEST(load_good_plugins)
{
    char err[512];
    int rc;
    const char *files[] = {"weather.so", "multiply.so", "add.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_STREQ(err, "");
    CHECK_EQ(ad_tool_host_count(t), 3);
    CHECK_STREQ(ad_tool_host_at(t, 0)->name, "add");
    CHECK_STREQ(ad_tool_host_at(t, 1)->name, "multiply");
    CHECK_STREQ(ad_tool_host_at(t, 2)->name, "weather");
    CHECK(ad_tool_host_at(t, 3) == NULL);
    /* One provider per plugin file, in load order. */
    CHECK_EQ(ad_tool_host_provider_count(t), 3);
    CHECK_STREQ(ad_tool_host_provider_at(t, 0)->origin, "add.so");
    CHECK_STREQ(ad_tool_host_provider_at(t, 0)->vt->kind, "plugin");
    CHECK(ad_plugin_in_process(ad_tool_host_owner(t, 2)));
    const ad_tool_desc *add = ad_tool_host_find(t, "add");
    CHECK(add != NULL);
    CHECK(ad_tool_host_find(t, "subtract") == NULL);
    if (add) {
        CHECK_STREQ(add->description, "Add two numbers");
        CHECK_STREQ(add->origin, "add.so");
        CHECK(add->flags & AD_TOOL_THREADSAFE);
        CHECK(json_object_is_type(add->parameters, json_type_object));
    }
    CHECK_STREQ(ad_tool_host_find(t, "multiply")->description, "Multiply two numbers");
    CHECK_STREQ(ad_tool_host_find(t, "weather")->description,
                "Get weather information for a location");
    char *names = ad_tool_host_names(t);
    CHECK_STREQ(names, "add, multiply, weather");
    free(names);
    free_host(t);
}

TEST(openai_json)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "weather.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    json_object *arr = ad_tool_host_openai_json(t);
    CHECK(arr != NULL);
    CHECK_STREQ(
        json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN),
        "[{\"type\":\"function\",\"function\":{\"name\":\"add\",\"description\":\"Add two numbers\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\","
        "\"description\":\"first number\"},\"b\":{\"type\":\"integer\",\"description\":\"second "
        "number\"}},\"required\":[\"a\",\"b\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"Get weather "
        "information for a location\",\"parameters\":{\"type\":\"object\",\"properties\":{"
        "\"location\":{\"type\":\"string\",\"description\":\"the city\"}},\"required\":["
        "\"location\"]}}}]");
    /* One array per list, shared by its callers; the schemas in it are
     * the host's copies, not the plugin's own objects. */
    json_object *again = ad_tool_host_openai_json(t);
    CHECK(again == arr);
    json_object_put(again);
    json_object *fn = json_object_object_get(json_object_array_get_idx(arr, 0), "function");
    CHECK(json_object_object_get(fn, "parameters") != NULL);
    CHECK(json_object_object_get(fn, "parameters") !=
          (json_object *)ad_tool_host_find(t, "add")->parameters);
    /* A new list (another plugin): a new array; the old one, still held,
     * is as it was. */
    char *dir = make_dir();
    CHECK(dir != NULL);
    if (dir) {
        CHECK_EQ(add_plugin(dir, "multiply.so", NULL), 0);
        CHECK(ad_plugin_load_dir(t, dir, NULL, err, sizeof err) >= 0);
        remove_dir(dir);
    }
    json_object *grown = ad_tool_host_openai_json(t);
    CHECK(grown != NULL && grown != arr);
    CHECK_EQ(json_object_array_length(grown), 3);
    CHECK_EQ(json_object_array_length(arr), 2);
    json_object_put(grown);
    json_object_put(arr);
    free_host(t);
}

TEST(sorted_load_order_and_file_filter)
{
    char err[512];
    char *dir = make_dir();
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    /* File names decide the order, not tool names or readdir order. */
    CHECK_EQ(add_plugin(dir, "add.so", "zz.so"), 0);
    CHECK_EQ(add_plugin(dir, "weather.so", "aa.so"), 0);
    CHECK_EQ(add_plugin(dir, "multiply.so", "mm.so"), 0);
    /* Not plugins: wrong suffix, a folder named *.so, a bare ".so". */
    CHECK_EQ(write_file(dir, "README", "not a plugin"), 0);
    CHECK_EQ(write_file(dir, "x.so.bak", "not a plugin"), 0);
    CHECK_EQ(write_file(dir, ".so", "not a plugin"), 0);
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/sub.so", dir);
    CHECK_EQ(mkdir(sub, 0700), 0);
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    CHECK_EQ(ad_plugin_load_dir(t, dir, NULL, err, sizeof err), 0);
    CHECK_EQ(ad_tool_host_count(t), 3);
    CHECK_STREQ(ad_tool_host_at(t, 0)->name, "weather");
    CHECK_STREQ(ad_tool_host_at(t, 0)->origin, "aa.so");
    CHECK_STREQ(ad_tool_host_at(t, 1)->name, "multiply");
    CHECK_STREQ(ad_tool_host_at(t, 1)->origin, "mm.so");
    CHECK_STREQ(ad_tool_host_at(t, 2)->name, "add");
    CHECK_STREQ(ad_tool_host_at(t, 2)->origin, "zz.so");
    free_host(t);
    remove_dir(dir);
}

TEST(missing_and_empty_dir)
{
    char err[512];
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    CHECK(ad_plugin_load_dir(t, "/nonexistent/agentd-plugins", NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "/nonexistent/agentd-plugins") != NULL);
    char *dir = make_dir();
    CHECK_EQ(ad_plugin_load_dir(t, dir, NULL, err, sizeof err), 0);
    CHECK_EQ(ad_tool_host_count(t), 0);
    CHECK(ad_tool_host_openai_json(t) == NULL);
    bool e;
    char *got = call(t, "add", "{}", &e);
    CHECK_STREQ(got, "unknown tool 'add'; no tools are available");
    CHECK(e);
    free(got);
    free_host(t);
    remove_dir(dir);
}

TEST(wrong_abi)
{
    load_fails("bad_abi.so", "plugin bad_abi.so: init failed: built for ABI 2.1, host has 1.1");
}

TEST(missing_init_symbol)
{
    load_fails("no_init.so", "plugin no_init.so: not an agentd plugin (missing agentd_plugin_init_v1)");
}

TEST(not_an_elf)
{
    char err[512];
    char *dir = make_dir();
    CHECK_EQ(write_file(dir, "x.so", "this is text, not a shared object\n"), 0);
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    CHECK(ad_plugin_load_dir(t, dir, NULL, err, sizeof err) < 0);
    const char *want = "plugin x.so: cannot load: ";
    CHECK(strncmp(err, want, strlen(want)) == 0);
    CHECK(strlen(err) > strlen(want)); /* carries the dlerror() text */
    CHECK_EQ(ad_tool_host_count(t), 0);
    free_host(t);
    remove_dir(dir);
}

TEST(duplicate_tool_name)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "dup_add.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK_STREQ(err, "plugin dup_add.so: duplicate tool name 'add' (already registered by add.so)");
    CHECK_EQ(ad_tool_host_count(t), 1);
    CHECK_STREQ(ad_tool_host_find(t, "add")->origin, "add.so");
    free_host(t);
}

TEST(loading_stops_at_first_failure)
{
    char err[512];
    int rc;
    /* add.so < bad_abi.so < weather.so: weather is never reached. */
    const char *files[] = {"add.so", "bad_abi.so", "weather.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK(strncmp(err, "plugin bad_abi.so: ", 19) == 0);
    CHECK_EQ(ad_tool_host_count(t), 1);
    CHECK(ad_tool_host_find(t, "weather") == NULL);
    free_host(t);
}

TEST(init_failure_takes_tools_back)
{
    char err[512];
    int rc;
    const char *files[] = {"init_fail.so", NULL};
    capture_begin();
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    char *log = capture_end();
    CHECK(rc < 0);
    CHECK_STREQ(err, "plugin init_fail.so: init failed: cannot reach the license server");
    CHECK_EQ(ad_tool_host_count(t), 0);
    CHECK(ad_tool_host_find(t, "init_fail_tool") == NULL);
    CHECK(strstr(log, "agentd: plugin init_fail.so: destroy called\n") != NULL);
    free(log);
    free_host(t);
}

TEST(registers_no_tools)
{
    load_fails("no_tools.so", "plugin no_tools.so: registers no tools");
}

/* Loads reg_bad.so with {"case":NAME} and returns the load error ("" if ok). */
static int reg_case(const char *name, char *err, size_t errlen, size_t *ntools)
{
    char *src = plugin_src("reg_bad.so");
    char cfg[128];
    snprintf(cfg, sizeof cfg, "{\"case\":\"%s\"}", name);
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    err[0] = '\0';
    int rc = src && t ? ad_plugin_load_file(t, src, cfg, NULL, err, errlen) : -100;
    *ntools = ad_tool_host_count(t);
    free_host(t);
    free(src);
    return rc;
}

TEST(register_tool_validation)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"bad_name", "plugin reg_bad.so: invalid tool name 'bad name!' (expected [A-Za-z0-9_-]{1,64})"},
        {"long_name", "plugin reg_bad.so: invalid tool name "
                      "'a123456789a123456789a123456789a123456789a123456789a123456789abcde' "
                      "(expected [A-Za-z0-9_-]{1,64})"},
        {"empty_name", "plugin reg_bad.so: invalid tool name '' (expected [A-Za-z0-9_-]{1,64})"},
        {"null_name", "plugin reg_bad.so: tool without a name"},
        {"no_invoke", "plugin reg_bad.so: tool 'ok_tool' has no invoke function"},
        {"no_params", "plugin reg_bad.so: tool 'ok_tool' has no parameters schema"},
        {"params_syntax",
         "plugin reg_bad.so: tool 'ok_tool': parameters are not valid JSON (unexpected end of input)"},
        {"params_array",
         "plugin reg_bad.so: tool 'ok_tool': parameters must be a JSON object (a JSON Schema), got "
         "array"},
        {"params_type",
         "plugin reg_bad.so: tool 'ok_tool': parameters schema must have \"type\": \"object\""},
        {"null_tool", "plugin reg_bad.so: register_tool() called with NULL"},
        {"ignore_rc", "plugin reg_bad.so: invalid tool name 'no spaces allowed' (expected "
                      "[A-Za-z0-9_-]{1,64})"},
    };
    char err[512];
    size_t n;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = reg_case(cases[i].name, err, sizeof err, &n);
        CHECK(rc < 0);
        CHECK_EQ(n, 0);
        if (strcmp(err, cases[i].want) != 0)
            fprintf(stderr, "case %s\n", cases[i].name);
        CHECK_STREQ(err, cases[i].want);
    }
    CHECK(reg_case("small_size", err, sizeof err, &n) < 0);
    CHECK(strncmp(err, "plugin reg_bad.so: agentd_tool.size is ", 39) == 0);
    /* A newer plugin's larger struct is read up to the fields this host knows. */
    CHECK_EQ(reg_case("bigger_size", err, sizeof err, &n), 0);
    CHECK_EQ(n, 1);
    CHECK_EQ(reg_case("plain", err, sizeof err, &n), 0);
    CHECK_EQ(n, 1);
}

/* config callback: hands {"greeting":"hi"} to the stem "multi" only. */
typedef struct cfg_seen {
    char stems[256];
} cfg_seen;

static const char *test_config(void *ud, const char *stem)
{
    cfg_seen *seen = ud;
    size_t n = strlen(seen->stems);
    snprintf(seen->stems + n, sizeof seen->stems - n, "%s%s", n ? "," : "", stem);
    return strcmp(stem, "multi") == 0 ? "{\"greeting\":\"hi\"}" : NULL;
}

TEST(config_json_delivery)
{
    char err[512];
    char *dir = make_dir();
    CHECK_EQ(add_plugin(dir, "multi.so", NULL), 0);
    CHECK_EQ(add_plugin(dir, "add.so", NULL), 0);
    cfg_seen seen = {""};
    ad_tool_host *t = new_host(AGENTD_LOG_INFO);
    ad_plugin_opts po = {.config = test_config, .config_ud = &seen};
    capture_begin();
    int rc = ad_plugin_load_dir(t, dir, &po, err, sizeof err);
    char *log = capture_end();
    CHECK_EQ(rc, 0);
    CHECK_STREQ(seen.stems, "add,multi");
    CHECK_EQ(ad_tool_host_count(t), 6);
    CHECK_CALL(t, "echo_config", "{}", "{\"greeting\":\"hi\"}", false);
    CHECK(strstr(log, "agentd: plugin multi.so: init with config\n") != NULL);
    free(log);
    capture_begin();
    free_host(t);
    free(capture_end());

    /* Without a config table the plugin sees NULL. */
    t = new_host(AGENTD_LOG_INFO);
    capture_begin();
    rc = ad_plugin_load_dir(t, dir, NULL, err, sizeof err);
    log = capture_end();
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "echo_config", "{}", "(none)", false);
    CHECK(strstr(log, "init without config") != NULL);
    free(log);
    capture_begin();
    free_host(t);
    free(capture_end());
    remove_dir(dir);
}

TEST(load_phase_closes_after_init)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    size_t before = ad_tool_host_count(t);
    bool e;
    char *got = call(t, "late", "{}", &e);
    char *log = capture_end();
    CHECK_STREQ(got, "register=-1 config=null");
    CHECK(!e);
    free(got);
    CHECK_EQ(ad_tool_host_count(t), before);
    CHECK(ad_tool_host_find(t, "too_late") == NULL);
    CHECK(strstr(log, "register_tool() called outside agentd_plugin_init_v1()") != NULL);
    free(log);
    capture_begin();
    free_host(t);
    free(capture_end());
}

TEST(log_lines_and_destroy)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    bool e;
    char *got = call(t, "log_lines", "", &e);
    /* destroy() logs at DEBUG, which is shown only when asked for. */
    ad_tool_host_set_log(t, log_to_stderr, NULL, AGENTD_LOG_DEBUG);
    free_host(t);
    char *log = capture_end();
    CHECK_STREQ(got, "logged");
    CHECK(!e);
    free(got);
    CHECK_EQ(rc, 0);
    CHECK(strstr(log, "agentd: plugin multi.so: first line\n"
                      "agentd: plugin multi.so: second line\n") != NULL);
    /* destroy() ran once for each of the five tools, in registration order. */
    CHECK_EQ(count_substr(log, "agentd: plugin multi.so: destroy "), 5);
    const char *d1 = strstr(log, "destroy echo_config"), *d5 = strstr(log, "destroy log_lines");
    CHECK(d1 != NULL && d5 != NULL && d1 < d5);
    free(log);
}

TEST(log_levels_and_redaction)
{
    char *dir = make_dir();
    CHECK(dir != NULL && add_plugin(dir, "noisy.so", NULL) == 0);
    /* The host drops lines above its level where they are made; which
     * level a front end sets (-q, AGENTD_DEBUG) is test_plugins'. */
    static const struct {
        int level;
        const char *shown; /* of E W I D */
    } cases[] = {
        {AGENTD_LOG_INFO, "EWI"}, {AGENTD_LOG_WARN, "EW"},
        {AGENTD_LOG_ERROR, "E"},  {AGENTD_LOG_DEBUG, "EWID"},
    };
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    log_secret = "sk-unit-secret-1";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        capture_begin();
        ad_tool_host *t = new_host(cases[i].level);
        char err[512];
        CHECK_EQ(ad_plugin_load_dir(t, dir, NULL, err, sizeof err), 0);
        CHECK_CALL(t, "noisy", "{\"say\":\"k=sk-unit-secret-1.\"}", "done", false);
        free_host(t);
        char *log = capture_end();
        for (size_t l = 0; l < 4; l++) {
            char want[64];
            snprintf(want, sizeof want, "agentd: plugin noisy.so: invoke %s\n", names[l]);
            bool expect = strchr(cases[i].shown, names[l][0]) != NULL;
            if ((strstr(log, want) != NULL) != expect)
                fprintf(stderr, "  case %zu: %s %s\n", i, want, expect ? "missing" : "shown");
            CHECK((strstr(log, want) != NULL) == expect);
        }
        /* At INFO, with the secret redacted. */
        if (strchr(cases[i].shown, 'I'))
            CHECK(strstr(log, "agentd: plugin noisy.so: k=[REDACTED].\n") != NULL);
        CHECK(strstr(log, "sk-unit-secret") == NULL);
        free(log);
    }
    log_secret = NULL;
    remove_dir(dir);
}

/* A line as agentd shows it: cut after redaction, control characters
 * shown, worker output named by its tool. */
TEST(log_line_format)
{
    char out[AD_TOOL_LOG_LINE_MAX + 512];
    ad_tool_log_line l = {"c", "call_1", "noisy", "noisy.so", AGENTD_LOG_INFO, "a\x1b[2Jb\tc", 8};
    ad_tool_log_format(out, sizeof out, &l, NULL);
    CHECK_STREQ(out, "agentd: plugin noisy.so: a?[2Jb\tc\n");
    l.level = AD_TOOL_LOG_OUTPUT;
    ad_tool_log_format(out, sizeof out, &l, NULL);
    CHECK_STREQ(out, "agentd: tool noisy: a?[2Jb\tc\n");
    l.tool = "";
    ad_tool_log_format(out, sizeof out, &l, NULL);
    CHECK_STREQ(out, "agentd: plugin noisy.so: a?[2Jb\tc\n");
    /* The key straddles the cut: redacted first, so no piece of it shows. */
    static char big[AD_TOOL_LOG_LINE_MAX + 100];
    memset(big, 'x', sizeof big);
    memcpy(big + AD_TOOL_LOG_LINE_MAX - 4, "sk-unit-secret-1", 16);
    l.level = AGENTD_LOG_INFO;
    l.text = big;
    l.len = sizeof big;
    size_t n = ad_tool_log_format(out, sizeof out, &l, "sk-unit-secret-1");
    CHECK(strstr(out, "sk-unit") == NULL && strstr(out, "sk-") == NULL);
    CHECK(n > 7 && strcmp(out + n - 7, " [...]\n") == 0);
}

/* ---- invocation --------------------------------------------------------- */

TEST(invoke_calculators)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", "weather.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "add", "{\"a\":2,\"b\":3}", "5", false);
    CHECK_CALL(t, "multiply", "{\"a\":2,\"b\":3}", "6", false);
    CHECK_CALL(t, "add", "{\"a\":15,\"b\":27}", "42", false);
    CHECK_CALL(t, "add", "{\"a\":-5,\"b\":3}", "-2", false);
    /* Key order, whitespace, unrelated and nested keys, escaped key names. */
    CHECK_CALL(t, "add",
               " \n{ \"b\" : 3 , \"x\": {\"a\": [1, {\"a\": \"9\"}], \"s\": \"}\\\"\"},"
               " \"\\u0061\"\t: 2 }\n",
               "5", false);
    /* Whole-valued numbers are integers. */
    CHECK_CALL(t, "add", "{\"a\":2.0,\"b\":1e1}", "12", false);
    CHECK_CALL(t, "add", "{\"a\":-0,\"b\":0.3e1}", "3", false);
    CHECK_CALL(t, "add", "{\"a\":9223372036854775807,\"b\":-9223372036854775807}", "0", false);
    CHECK_CALL(t, "multiply", "{\"a\":-9223372036854775808,\"b\":1}", "-9223372036854775808",
               false);
    CHECK_CALL(t, "multiply", "{\"a\":-3,\"b\":-4}", "12", false);
    CHECK_CALL(t, "add", "{\"a\":1.5e1,\"b\":100e-2}", "16", false);
    CHECK_CALL(t, "add", "{\"a\":0.0001e4,\"b\":-0.0}", "1", false);
    /* Exact from the text, beyond what a double holds. */
    CHECK_CALL(t, "add", "{\"a\":12345678901234567890e-1,\"b\":0}", "1234567890123456789", false);
    /* Duplicate keys: the last one wins, as in the host's parser. */
    CHECK_CALL(t, "add", "{\"a\":100,\"b\":1,\"a\":2}", "3", false);
    CHECK_CALL(t, "weather", "{\"location\":\"Florence\"}", "40 C", false);
    /* Overflow is an error, never a wrapped number. */
    CHECK_CALL(t, "add", "{\"a\":9223372036854775807,\"b\":1}",
               "integer overflow: 9223372036854775807 + 1 does not fit in 64 bits", true);
    CHECK_CALL(t, "add", "{\"a\":-9223372036854775808,\"b\":-1}",
               "integer overflow: -9223372036854775808 + -1 does not fit in 64 bits", true);
    CHECK_CALL(t, "multiply", "{\"a\":4294967296,\"b\":4294967296}",
               "integer overflow: 4294967296 * 4294967296 does not fit in 64 bits", true);
    CHECK_CALL(t, "multiply", "{\"a\":-9223372036854775808,\"b\":-1}",
               "integer overflow: -9223372036854775808 * -1 does not fit in 64 bits", true);
    /* Beyond int64 in the text: the plugin sees the exact digits and refuses. */
    CHECK_CALL(t, "add", "{\"a\":9223372036854775808,\"b\":0}",
               "argument 'a' does not fit in a 64-bit integer", true);
    CHECK_CALL(t, "add", "{\"a\":1e30,\"b\":0}", "argument 'a' does not fit in a 64-bit integer",
               true);
    free_host(t);
}

TEST(invoke_argument_errors)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "subtract", "{}", "unknown tool 'subtract'; available tools: add, multiply",
               true);
    CHECK_CALL(t, "add", "{\"a\":\"2\",\"b\":3}",
               "invalid arguments for tool 'add': $.a: expected integer, got string", true);
    CHECK_CALL(t, "add", "{\"a\":2.5,\"b\":3}",
               "invalid arguments for tool 'add': $.a: expected integer, got number", true);
    CHECK_CALL(t, "add", "{\"a\":2}",
               "invalid arguments for tool 'add': $: missing required property \"b\"", true);
    CHECK_CALL(t, "add", "", "invalid arguments for tool 'add': $: missing required property \"a\"",
               true);
    CHECK_CALL(t, "add", "  \n ",
               "invalid arguments for tool 'add': $: missing required property \"a\"", true);
    CHECK_CALL(t, "add", "[1,2]",
               "invalid arguments for tool 'add': expected a JSON object, got an array", true);
    CHECK_CALL(t, "add", "null", "invalid arguments for tool 'add': expected a JSON object, got null",
               true);
    CHECK_CALL(t, "add", "5", "invalid arguments for tool 'add': expected a JSON object, got a number",
               true);
    bool e;
    char *got = call(t, "add", "{\"a\":2,", &e);
    CHECK(e);
    CHECK_STREQ(got, "invalid arguments for tool 'add': not valid JSON (unexpected end of input)");
    free(got);
    got = call(t, "add", "{\"a\":2,\"b\":3} trailing", &e);
    CHECK(e);
    CHECK(strncmp(got, "invalid arguments for tool 'add': not valid JSON (", 50) == 0);
    free(got);
    /* json-c tolerates single quotes even in strict mode; the host does
     * not (a plugin reading the text would choke on them). */
    got = call(t, "add", "{'a':2,'b':3}", &e);
    CHECK(e);
    CHECK_STREQ(got, "invalid arguments for tool 'add': not valid JSON (a single-quoted string "
                     "at offset 1)");
    free(got);
    /* An absurd tool name from a model is cut short in the message. */
    char longname[400];
    memset(longname, 'z', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    got = call(t, longname, "{}", &e);
    CHECK(e);
    CHECK(strlen(got) < 200);
    free(got);
    free_host(t);
}

TEST(invoke_plugin_errors)
{
    char err[512];
    int rc;
    const char *files[] = {"errors.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "fail_msg", "{}", "disk on fire", true);
    CHECK_CALL(t, "fail_code", "{}", "tool 'fail_code' failed (code -7)", true);
    CHECK_CALL(t, "fail_soft", "{}", "partial; then it broke", true);
    free_host(t);
}

TEST(invoke_passes_args_text)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    free(capture_end());
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "echo_args", "{ \"k\" : \"v\" }", "{ \"k\" : \"v\" } (13/13)", false);
    CHECK_CALL(t, "echo_args", "", "{} (2/2)", false);
    /* args_len bounds the text: bytes after it are not the plugin's. */
    ad_tool_result r;
    const char *text = "{\"x\":1}GARBAGE";
    CHECK_EQ(run_one(t, "echo_args", text, 7, &r), 0);
    CHECK_STREQ(r.content, "{\"x\":1} (7/7)");
    ad_tool_result_free(&r);
    capture_begin();
    free_host(t);
    free(capture_end());
}

TEST(result_utf8_repair)
{
    char err[512];
    int rc;
    const char *files[] = {"badutf8.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
#define R "\xEF\xBF\xBD"
    CHECK_CALL(t, "badutf8", "{}", "ok " R "|" R "|" R R "|" R R R "|a" R "b|\xC3\xA9", false);
#undef R
    free_host(t);
}

TEST(result_size_bound)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    free(capture_end());
    CHECK_EQ(rc, 0);
    ad_tool_result r;
    CHECK_EQ(run_one(t, "big_output", "{}", 2, &r), 0);
    CHECK(!r.is_error);
    CHECK_EQ(strlen(r.content), r.len);
    /* 1 MiB kept, cut on a character boundary: no replacement characters. */
    const char *marker = "\n[... 151426 bytes cut]";
    CHECK_EQ(r.len, 1048575 + strlen(marker));
    CHECK(r.len > strlen(marker) && strcmp(r.content + r.len - strlen(marker), marker) == 0);
    CHECK(strstr(r.content, "\xEF\xBF\xBD") == NULL);
    ad_tool_result_free(&r);
    CHECK(r.content == NULL);
    /* A configured bound: the first 1000 bytes, then the marker. */
    ad_tool_host_set_result_max(t, 1000);
    CHECK_EQ(run_one(t, "big_output", "{}", 2, &r), 0);
    char *cut = strstr(r.content, "\n[... ");
    CHECK(cut != NULL && cut - r.content <= 1000 && cut - r.content >= 997);
    CHECK(strstr(cut, " bytes cut]") != NULL);
    ad_tool_result_free(&r);
    capture_begin();
    free_host(t);
    free(capture_end());
}

TEST(non_threadsafe_tool)
{
    char err[512];
    int rc;
    const char *files[] = {"serial.so", "add.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK(!(ad_tool_host_find(t, "counter")->flags & AD_TOOL_THREADSAFE));
    CHECK(ad_tool_host_find(t, "add")->flags & AD_TOOL_THREADSAFE);
    CHECK_CALL(t, "counter", "{}", "1", false);
    CHECK_CALL(t, "counter", "{}", "2", false);
    free_host(t);
}

/* Conversations' batches in flight at once: the pool runs their calls
 * concurrently, and every result lands in its own call's place. */
typedef struct conv {
    int id;
    int bad;
    bool done;
} conv;

enum { CALLS = 300 };

static void conv_done(void *ud, const ad_call_outcome *o, size_t n)
{
    conv *c = ud;
    c->done = true;
    for (size_t k = 0; k < n; k++) {
        size_t i = k / 2;
        long long a = c->id * 100000 + (long long)i, b = (long long)i - 150;
        char want[64];
        if (k % 2) {
            /* Error paths run beside them too. */
            if (!o[k].result.is_error ||
                !strstr(o[k].result.content, "$.a: expected integer, got string"))
                c->bad++;
            continue;
        }
        snprintf(want, sizeof want, "%lld", i % 2 ? a + b : a * b);
        if (o[k].result.is_error || strcmp(o[k].result.content, want) != 0)
            c->bad++;
    }
}

TEST(concurrent_threadsafe_invocations)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", NULL};
    ad_tool_host *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    enum { N = 4 };
    static conv cv[N];
    static char args[N][2 * CALLS][96];
    static ad_call_req reqs[N][2 * CALLS];
    static const ad_batch_cb cb = {.on_done = conv_done};
    for (int c = 0; c < N; c++) {
        cv[c] = (conv){c + 1, 0, false};
        for (int i = 0; i < CALLS; i++) {
            long long a = (c + 1) * 100000 + i, b = i - 150;
            snprintf(args[c][2 * i], sizeof args[c][0], "{\"a\":%lld,\"b\":%lld}", a, b);
            reqs[c][2 * i] = (ad_call_req){"x", i % 2 ? "add" : "multiply", args[c][2 * i],
                                           strlen(args[c][2 * i]), 0};
            reqs[c][2 * i + 1] = (ad_call_req){"y", "add", "{\"a\":\"x\",\"b\":1}", 15, 0};
        }
        CHECK(ad_tool_host_run(t, "c", reqs[c], 2 * CALLS, &cb, &cv[c]) != NULL);
    }
    for (int c = 0; c < N; c++)
        while (!cv[c].done)
            uv_run(&loop, UV_RUN_ONCE);
    for (int c = 0; c < N; c++)
        CHECK_EQ(cv[c].bad, 0);
    free_host(t);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    uv_loop_init(&loop);
    RUN(load_good_plugins);
    RUN(openai_json);
    RUN(sorted_load_order_and_file_filter);
    RUN(missing_and_empty_dir);
    RUN(wrong_abi);
    RUN(missing_init_symbol);
    RUN(not_an_elf);
    RUN(duplicate_tool_name);
    RUN(loading_stops_at_first_failure);
    RUN(init_failure_takes_tools_back);
    RUN(registers_no_tools);
    RUN(register_tool_validation);
    RUN(config_json_delivery);
    RUN(load_phase_closes_after_init);
    RUN(log_lines_and_destroy);
    RUN(log_levels_and_redaction);
    RUN(log_line_format);
    RUN(invoke_calculators);
    RUN(invoke_argument_errors);
    RUN(invoke_plugin_errors);
    RUN(invoke_passes_args_text);
    RUN(result_utf8_repair);
    RUN(result_size_bound);
    RUN(non_threadsafe_tool);
    RUN(concurrent_threadsafe_invocations);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "test_tools: the loop has handles left\n");
        harness_failed++;
    }
    return harness_report("test_tools");
}

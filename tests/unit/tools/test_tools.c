/*
 * test_tools.c -- the plugin host against real plugin files.
 *
 * Each test builds a private plugin folder (mkdtemp) holding symlinks to the
 * built plugins ($AGENTD_DIR/plugins/X.so and $AGENTD_DIR/tests/plugins/X.so,
 * AGENTD_DIR defaulting to "."), loads it and checks the exact messages the
 * host produces. Log output is checked by pointing fd 2 at a temporary file
 * for the duration of a test.
 */
#include "base/buf.h"
#include "../../harness.h"
#include "tools/tools.h"

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

/* Loads a fresh folder holding exactly the given plugins (NULL-terminated). */
static ad_tools *load_plugins(const char *const *files, int *rc, char *err, size_t errlen)
{
    char *dir = make_dir();
    ad_tools *t = ad_tools_new();
    *rc = -100;
    err[0] = '\0';
    if (dir && t) {
        for (size_t i = 0; files[i]; i++)
            if (add_plugin(dir, files[i], NULL) != 0)
                fprintf(stderr, "cannot link %s\n", files[i]);
        *rc = ad_tools_load_dir(t, dir, NULL, NULL, err, errlen);
    }
    remove_dir(dir);
    return t;
}

/* Invokes and returns the content (caller frees); sets *is_error. */
static char *call(const ad_tools *t, const char *name, const char *args, bool *is_error)
{
    ad_tool_result r;
    int rc = ad_tools_invoke(t, name, args, args ? strlen(args) : 0, &r);
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
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK_STREQ(err, want);
    CHECK_EQ(ad_tools_count(t), 0);
    ad_tools_free(t);
}

TEST(load_good_plugins)
{
    char err[512];
    int rc;
    const char *files[] = {"weather.so", "multiply.so", "add.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_STREQ(err, "");
    CHECK_EQ(ad_tools_count(t), 3);
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 0)), "add");
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 1)), "multiply");
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 2)), "weather");
    CHECK(ad_tools_at(t, 3) == NULL);
    const ad_tool *add = ad_tools_find(t, "add");
    CHECK(add != NULL);
    CHECK(ad_tools_find(t, "subtract") == NULL);
    if (add) {
        CHECK_STREQ(ad_tool_description(add), "Add two numbers");
        CHECK_STREQ(ad_tool_plugin(add), "add.so");
        CHECK(ad_tool_threadsafe(add));
        CHECK(json_object_is_type(ad_tool_parameters(add), json_type_object));
    }
    CHECK_STREQ(ad_tool_description(ad_tools_find(t, "multiply")), "Multiply two numbers");
    CHECK_STREQ(ad_tool_description(ad_tools_find(t, "weather")),
                "Get weather information for a location");
    char *names = ad_tools_names(t);
    CHECK_STREQ(names, "add, multiply, weather");
    free(names);
    ad_tools_free(t);
}

TEST(openai_json)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "weather.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    json_object *arr = ad_tools_openai_json(t);
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
    /* The copy is the caller's: changing it leaves the registry intact. */
    json_object *fn = json_object_object_get(json_object_array_get_idx(arr, 0), "function");
    json_object_object_del(json_object_object_get(fn, "parameters"), "required");
    json_object_put(arr);
    CHECK(json_object_object_get_ex(ad_tool_parameters(ad_tools_find(t, "add")), "required",
                                    NULL));
    ad_tools_free(t);
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
    ad_tools *t = ad_tools_new();
    CHECK_EQ(ad_tools_load_dir(t, dir, NULL, NULL, err, sizeof err), 0);
    CHECK_EQ(ad_tools_count(t), 3);
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 0)), "weather");
    CHECK_STREQ(ad_tool_plugin(ad_tools_at(t, 0)), "aa.so");
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 1)), "multiply");
    CHECK_STREQ(ad_tool_plugin(ad_tools_at(t, 1)), "mm.so");
    CHECK_STREQ(ad_tool_name(ad_tools_at(t, 2)), "add");
    CHECK_STREQ(ad_tool_plugin(ad_tools_at(t, 2)), "zz.so");
    ad_tools_free(t);
    remove_dir(dir);
}

TEST(missing_and_empty_dir)
{
    char err[512];
    ad_tools *t = ad_tools_new();
    CHECK(ad_tools_load_dir(t, "/nonexistent/agentd-plugins", NULL, NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "/nonexistent/agentd-plugins") != NULL);
    char *dir = make_dir();
    CHECK_EQ(ad_tools_load_dir(t, dir, NULL, NULL, err, sizeof err), 0);
    CHECK_EQ(ad_tools_count(t), 0);
    bool e;
    char *got = call(t, "add", "{}", &e);
    CHECK_STREQ(got, "unknown tool 'add'; no tools are available");
    CHECK(e);
    free(got);
    ad_tools_free(t);
    remove_dir(dir);
}

TEST(wrong_abi)
{
    load_fails("bad_abi.so", "plugin bad_abi.so: init failed: built for ABI 2.0, host has 1.0");
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
    ad_tools *t = ad_tools_new();
    CHECK(ad_tools_load_dir(t, dir, NULL, NULL, err, sizeof err) < 0);
    const char *want = "plugin x.so: cannot load: ";
    CHECK(strncmp(err, want, strlen(want)) == 0);
    CHECK(strlen(err) > strlen(want)); /* carries the dlerror() text */
    CHECK_EQ(ad_tools_count(t), 0);
    ad_tools_free(t);
    remove_dir(dir);
}

TEST(duplicate_tool_name)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "dup_add.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK_STREQ(err, "plugin dup_add.so: duplicate tool name 'add' (already registered by add.so)");
    CHECK_EQ(ad_tools_count(t), 1);
    CHECK_STREQ(ad_tool_plugin(ad_tools_find(t, "add")), "add.so");
    ad_tools_free(t);
}

TEST(loading_stops_at_first_failure)
{
    char err[512];
    int rc;
    /* add.so < bad_abi.so < weather.so: weather is never reached. */
    const char *files[] = {"add.so", "bad_abi.so", "weather.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK(rc < 0);
    CHECK(strncmp(err, "plugin bad_abi.so: ", 19) == 0);
    CHECK_EQ(ad_tools_count(t), 1);
    CHECK(ad_tools_find(t, "weather") == NULL);
    ad_tools_free(t);
}

TEST(init_failure_takes_tools_back)
{
    char err[512];
    int rc;
    const char *files[] = {"init_fail.so", NULL};
    capture_begin();
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    char *log = capture_end();
    CHECK(rc < 0);
    CHECK_STREQ(err, "plugin init_fail.so: init failed: cannot reach the license server");
    CHECK_EQ(ad_tools_count(t), 0);
    CHECK(ad_tools_find(t, "init_fail_tool") == NULL);
    CHECK(strstr(log, "agentd: plugin init_fail.so: destroy called\n") != NULL);
    free(log);
    ad_tools_free(t);
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
    ad_tools *t = ad_tools_new();
    err[0] = '\0';
    int rc = src && t ? ad_tools_load_file(t, src, cfg, err, errlen) : -100;
    *ntools = ad_tools_count(t);
    ad_tools_free(t);
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
    ad_tools *t = ad_tools_new();
    capture_begin();
    int rc = ad_tools_load_dir(t, dir, test_config, &seen, err, sizeof err);
    char *log = capture_end();
    CHECK_EQ(rc, 0);
    CHECK_STREQ(seen.stems, "add,multi");
    CHECK_EQ(ad_tools_count(t), 6);
    CHECK_CALL(t, "echo_config", "{}", "{\"greeting\":\"hi\"}", false);
    CHECK(strstr(log, "agentd: plugin multi.so: init with config\n") != NULL);
    free(log);
    capture_begin();
    ad_tools_free(t);
    free(capture_end());

    /* Without a config table the plugin sees NULL. */
    t = ad_tools_new();
    capture_begin();
    rc = ad_tools_load_dir(t, dir, NULL, NULL, err, sizeof err);
    log = capture_end();
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "echo_config", "{}", "(none)", false);
    CHECK(strstr(log, "init without config") != NULL);
    free(log);
    capture_begin();
    ad_tools_free(t);
    free(capture_end());
    remove_dir(dir);
}

TEST(load_phase_closes_after_init)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    size_t before = ad_tools_count(t);
    bool e;
    char *got = call(t, "late", "{}", &e);
    char *log = capture_end();
    CHECK_STREQ(got, "register=-1 config=null");
    CHECK(!e);
    free(got);
    CHECK_EQ(ad_tools_count(t), before);
    CHECK(ad_tools_find(t, "too_late") == NULL);
    CHECK(strstr(log, "register_tool() called outside agentd_plugin_init_v1()") != NULL);
    free(log);
    capture_begin();
    ad_tools_free(t);
    free(capture_end());
}

TEST(log_lines_and_destroy)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    bool e;
    char *got = call(t, "log_lines", "", &e);
    /* destroy() logs at DEBUG, which is shown only when asked for. */
    setenv("AGENTD_DEBUG", "1", 1);
    ad_tools_set_log_level(t, AGENTD_LOG_INFO);
    unsetenv("AGENTD_DEBUG");
    ad_tools_free(t);
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
    static const struct {
        int level;
        const char *debug; /* AGENTD_DEBUG, or NULL */
        const char *shown; /* of E W I D */
    } cases[] = {
        {AGENTD_LOG_INFO, NULL, "EWI"},  {AGENTD_LOG_WARN, NULL, "EW"},
        {AGENTD_LOG_ERROR, NULL, "EW"},  {AGENTD_LOG_DEBUG, NULL, "EWID"},
        {AGENTD_LOG_WARN, "1", "EWID"},  {AGENTD_LOG_INFO, "0", "EWI"},
    };
    static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].debug)
            setenv("AGENTD_DEBUG", cases[i].debug, 1);
        capture_begin();
        ad_tools *t = ad_tools_new();
        ad_tools_set_log_level(t, cases[i].level);
        CHECK_EQ(ad_tools_set_secret(t, "sk-unit-secret-1"), 0);
        char err[512];
        CHECK_EQ(ad_tools_load_dir(t, dir, NULL, NULL, err, sizeof err), 0);
        CHECK_CALL(t, "noisy", "{\"say\":\"k=sk-unit-secret-1.\"}", "done", false);
        ad_tools_free(t);
        unsetenv("AGENTD_DEBUG");
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
    remove_dir(dir);
}

/* ---- invocation --------------------------------------------------------- */

TEST(invoke_calculators)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", "weather.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
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
    ad_tools_free(t);
}

TEST(invoke_argument_errors)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
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
    /* json-c tolerates single quotes even in strict mode; the plugin's own
     * parser does not, so the call still ends as an error result. */
    got = call(t, "add", "{'a':2,'b':3}", &e);
    CHECK(e);
    free(got);
    /* An absurd tool name from a model is cut short in the message. */
    char longname[400];
    memset(longname, 'z', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    got = call(t, longname, "{}", &e);
    CHECK(e);
    CHECK(strlen(got) < 200);
    free(got);
    ad_tools_free(t);
}

TEST(invoke_plugin_errors)
{
    char err[512];
    int rc;
    const char *files[] = {"errors.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "fail_msg", "{}", "disk on fire", true);
    CHECK_CALL(t, "fail_code", "{}", "tool 'fail_code' failed (code -7)", true);
    CHECK_CALL(t, "fail_soft", "{}", "partial; then it broke", true);
    ad_tools_free(t);
}

TEST(invoke_passes_args_text)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    free(capture_end());
    CHECK_EQ(rc, 0);
    CHECK_CALL(t, "echo_args", "{ \"k\" : \"v\" }", "{ \"k\" : \"v\" } (13/13)", false);
    CHECK_CALL(t, "echo_args", "", "{} (2/2)", false);
    /* args_len bounds the text: bytes after it are not the plugin's. */
    ad_tool_result r;
    const char *text = "{\"x\":1}GARBAGE";
    CHECK_EQ(ad_tools_invoke(t, "echo_args", text, 7, &r), 0);
    CHECK_STREQ(r.content, "{\"x\":1} (7/7)");
    ad_tool_result_free(&r);
    capture_begin();
    ad_tools_free(t);
    free(capture_end());
}

TEST(result_utf8_repair)
{
    char err[512];
    int rc;
    const char *files[] = {"badutf8.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
#define R "\xEF\xBF\xBD"
    CHECK_CALL(t, "badutf8", "{}", "ok " R "|" R "|" R R "|" R R R "|a" R "b|\xC3\xA9", false);
#undef R
    ad_tools_free(t);
}

TEST(result_size_bound)
{
    char err[512];
    int rc;
    const char *files[] = {"multi.so", NULL};
    capture_begin();
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    free(capture_end());
    CHECK_EQ(rc, 0);
    ad_tool_result r;
    CHECK_EQ(ad_tools_invoke(t, "big_output", "{}", 2, &r), 0);
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
    ad_tools_set_result_max(t, 1000);
    CHECK_EQ(ad_tools_invoke(t, "big_output", "{}", 2, &r), 0);
    char *cut = strstr(r.content, "\n[... ");
    CHECK(cut != NULL && cut - r.content <= 1000 && cut - r.content >= 997);
    CHECK(strstr(cut, " bytes cut]") != NULL);
    ad_tool_result_free(&r);
    capture_begin();
    ad_tools_free(t);
    free(capture_end());
}

TEST(non_threadsafe_tool)
{
    char err[512];
    int rc;
    const char *files[] = {"serial.so", "add.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    CHECK(!ad_tool_threadsafe(ad_tools_find(t, "counter")));
    CHECK(ad_tool_threadsafe(ad_tools_find(t, "add")));
    CHECK_CALL(t, "counter", "{}", "1", false);
    CHECK_CALL(t, "counter", "{}", "2", false);
    ad_tools_free(t);
}

typedef struct worker {
    const ad_tools *t;
    int id;
    int bad;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 300; i++) {
        long long a = w->id * 100000 + i, b = i - 150;
        const char *tool = i % 2 ? "add" : "multiply";
        char args[96], want[64];
        snprintf(args, sizeof args, "{\"a\":%lld,\"b\":%lld}", a, b);
        snprintf(want, sizeof want, "%lld", i % 2 ? a + b : a * b);
        ad_tool_result r;
        if (ad_tools_invoke(w->t, tool, args, strlen(args), &r) != 0) {
            w->bad++;
            continue;
        }
        if (r.is_error || strcmp(r.content, want) != 0)
            w->bad++;
        /* Error paths run concurrently too. */
        ad_tool_result_free(&r);
        if (ad_tools_invoke(w->t, "add", "{\"a\":\"x\",\"b\":1}", 15, &r) != 0 || !r.is_error ||
            strstr(r.content, "$.a: expected integer, got string") == NULL)
            w->bad++;
        ad_tool_result_free(&r);
    }
    return NULL;
}

TEST(concurrent_threadsafe_invocations)
{
    char err[512];
    int rc;
    const char *files[] = {"add.so", "multiply.so", NULL};
    ad_tools *t = load_plugins(files, &rc, err, sizeof err);
    CHECK_EQ(rc, 0);
    enum { N = 4 };
    pthread_t th[N];
    worker w[N];
    int started = 0;
    for (int i = 0; i < N; i++) {
        w[i] = (worker){t, i + 1, 0};
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) == 0)
            started++;
    }
    CHECK_EQ(started, N);
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].bad, 0);
    }
    ad_tools_free(t);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
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
    RUN(invoke_calculators);
    RUN(invoke_argument_errors);
    RUN(invoke_plugin_errors);
    RUN(invoke_passes_args_text);
    RUN(result_utf8_repair);
    RUN(result_size_bound);
    RUN(non_threadsafe_tool);
    RUN(concurrent_threadsafe_invocations);
    return harness_report("test_tools");
}

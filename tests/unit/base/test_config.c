/*
 * test_config.c -- the strict config loader: every error message, defaults,
 * path resolution, JSON conversion of free-form tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "base/config.h"

static char dir[64];

/* Writes text to dir/name and loads it; returns the load's rc, err in err. */
static int load(ad_config *c, const char *text, char *err, size_t errlen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/agent.toml", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    ad_config_init(c);
    err[0] = '\0';
    return ad_config_load(c, path, err, errlen);
}

#define MIN "[provider]\nbase_url = \"http://127.0.0.1:1/v1/\"\nmodel = \"m\"\n"

/* Loads text and checks that it fails with a message containing want. */
static int fails_with(const char *text, const char *want)
{
    ad_config c;
    char err[2048];
    int rc = load(&c, text, err, sizeof err);
    ad_config_free(&c);
    if (rc == 0) {
        fprintf(stderr, "  loaded, wanted an error containing: %s\n", want);
        return 0;
    }
    if (!strstr(err, want)) {
        fprintf(stderr, "  error: %s\n  wanted: %s\n", err, want);
        return 0;
    }
    return 1;
}

TEST(minimal_config_and_defaults)
{
    ad_config c;
    char err[512];
    CHECK_EQ(load(&c, MIN, err, sizeof err), 0);
    CHECK_STREQ(c.base_url, "http://127.0.0.1:1/v1"); /* trailing slash dropped */
    CHECK_STREQ(c.model, "m");
    CHECK(c.stream);
    CHECK_EQ(c.max_steps, 20);
    CHECK_EQ(c.max_retries, 2);
    /* A long answer that still streams is never cut by default: silence
     * is bounded (idle_timeout_s), the whole request only when asked. */
    CHECK(c.timeout_s == 0);
    CHECK(c.idle_timeout_s == 120);
    CHECK(c.tool_timeout_s == 60);
    CHECK(c.plugins_dir == NULL);
    CHECK(c.api_key_env == NULL);
    ad_config_free(&c);
}

TEST(full_config)
{
    ad_config c;
    char err[512];
    int rc = load(&c,
                  MIN "api_key_env = \"K\"\nstream = false\ntimeout_s = 5\nmax_retries = 7\n"
                      "[provider.headers]\nX-Title = \"t\"\n"
                      "[provider.extra]\ntemperature = 0.7\nusage = { include = true }\n"
                      "n = 3\nwhen = 1979-05-27T07:32:00Z\n"
                      "[agent]\nsystem_prompt = \"sys\"\nmax_steps = 4\nmax_tokens = 100\n"
                      "unique_tool_call_ids = true\nconfirm_tools = [\"add\"]\n"
                      "tool_timeout_s = 2.5\n"
                      "[plugins]\ndir = \"plugs\"\n[plugins.config.add]\nscale = 2\n"
                      "[tools.add]\ntimeout_s = 1\nisolation = \"process\"\n",
                  err, sizeof err);
    CHECK_EQ(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK(!c.stream);
    CHECK(c.timeout_s == 5);
    CHECK_EQ(c.max_retries, 7);
    CHECK_EQ(c.nheaders, 1);
    CHECK_STREQ(c.headers[0].name, "X-Title");
    CHECK_STREQ(json_object_to_json_string_ext(c.extra, JSON_C_TO_STRING_PLAIN),
                "{\"temperature\":0.7,\"usage\":{\"include\":true},\"n\":3,"
                "\"when\":\"1979-05-27T07:32:00Z\"}");
    CHECK_STREQ(c.system_prompt, "sys");
    CHECK_EQ(c.max_steps, 4);
    CHECK_EQ(c.max_tokens, 100);
    CHECK(c.unique_tool_call_ids);
    char want[128];
    snprintf(want, sizeof want, "%s/plugs", dir);
    CHECK_STREQ(c.plugins_dir, want);
    CHECK_STREQ(json_object_to_json_string_ext(c.plugin_config, JSON_C_TO_STRING_PLAIN),
                "{\"add\":{\"scale\":2}}");
    double t;
    bool confirm;
    int iso;
    ad_config_tool(&c, "add", &t, &confirm, &iso);
    CHECK(t == 1);
    CHECK(confirm);
    CHECK_EQ(iso, AD_ISOLATION_PROCESS);
    ad_config_tool(&c, "multiply", &t, &confirm, &iso);
    CHECK(t == 2.5);
    CHECK(!confirm);
    CHECK_EQ(iso, AD_ISOLATION_WORKER); /* the default: the plugin's persistent worker */
    ad_config_free(&c);
}

TEST(unknown_key_with_suggestion_and_line)
{
    CHECK(fails_with(MIN "[agent]\nmax_step = 3\n", "agent.toml:5:1: unknown key 'max_step' in [agent] "
                                                    "(did you mean 'max_steps'?)"));
    CHECK(fails_with(MIN "modle = \"x\"\n", "unknown key 'modle' in [provider] (did you mean 'model'?)"));
    /* No suggestion when nothing is close. */
    ad_config c;
    char err[512];
    CHECK(load(&c, MIN "[agent]\nzzzzzzzzzz = 1\n", err, sizeof err) != 0);
    CHECK(strstr(err, "unknown key 'zzzzzzzzzz' in [agent]") != NULL);
    CHECK(strstr(err, "did you mean") == NULL);
    ad_config_free(&c);
}

TEST(unknown_table_with_suggestion)
{
    CHECK(fails_with(MIN "[agnet]\nmax_steps = 3\n", "unknown table [agnet] (did you mean [agent]?)"));
    CHECK(fails_with("top = 1\n" MIN, "unknown top-level key 'top'"));
}

TEST(wrong_types_name_the_expected_type)
{
    CHECK(fails_with("[provider]\nbase_url = \"http://x\"\nmodel = 5\n",
                     "provider.model must be a string, not integer"));
    CHECK(fails_with(MIN "stream = \"yes\"\n", "provider.stream must be a boolean (true or false), not string"));
    CHECK(fails_with(MIN "[agent]\nmax_steps = 2.5\n", "agent.max_steps must be an integer, not float"));
    CHECK(fails_with(MIN "timeout_s = \"10\"\n", "provider.timeout_s must be a number, not string"));
    CHECK(fails_with(MIN "headers = 3\n", "provider.headers must be a table, not integer"));
    CHECK(fails_with("provider = 3\n", "'provider' must be a table ([provider])"));
    CHECK(fails_with(MIN "[provider.headers]\nX = 1\n", "provider.headers.X must be a string, not integer"));
    CHECK(fails_with(MIN "[plugins.config]\nadd = 1\n", "plugins.config.add must be a table, not integer"));
    CHECK(fails_with(MIN "[agent]\nconfirm_tools = \"add\"\n",
                     "agent.confirm_tools must be an array of tool names"));
    CHECK(fails_with(MIN "[agent]\nisolation = \"vm\"\n",
                     "agent.isolation must be \"worker\", \"in-process\" or \"per-call\""));
    CHECK(fails_with(MIN "[tools.add]\nconfirm = 1\n", "tools.add.confirm must be a boolean"));
    CHECK(fails_with(MIN "[tools.add]\ntimeout = 1\n", "unknown key 'timeout' in [tools] (did you mean 'timeout_s'?)"));
    CHECK(fails_with(MIN "[tools]\nadd = 1\n", "tools.add must be a table"));
}

TEST(ranges)
{
    CHECK(fails_with(MIN "[agent]\nmax_steps = 0\n", "agent.max_steps must be between 1 and 100000, not 0"));
    CHECK(fails_with(MIN "max_retries = -1\n", "provider.max_retries must be between 0 and 100, not -1"));
    CHECK(fails_with(MIN "timeout_s = -5\n", "provider.timeout_s must be between 0 and 86400, not -5"));
}

TEST(missing_required_keys)
{
    CHECK(fails_with("[provider]\nmodel = \"m\"\n", "missing required key base_url in [provider]"));
    CHECK(fails_with("[provider]\nbase_url = \"http://x\"\n", "missing required key model in [provider]"));
    CHECK(fails_with("", "missing required key base_url in [provider]"));
    CHECK(fails_with("[provider]\nbase_url = \"ftp://x\"\nmodel = \"m\"\n",
                     "provider.base_url must start with http:// or https://"));
}

TEST(bad_headers)
{
    CHECK(fails_with(MIN "[provider.headers]\n\"Bad Name\" = \"v\"\n", "not a valid HTTP header"));
    CHECK(fails_with(MIN "[provider.headers]\nX = \"a\\nb\"\n", "not a valid HTTP header"));
}

TEST(several_problems_reported_at_once)
{
    ad_config c;
    char err[2048];
    int rc = load(&c, "[provider]\nmodle = 1\n[agent]\nmax_step = 1\n", err, sizeof err);
    CHECK(rc != 0);
    CHECK(strstr(err, "modle") != NULL);
    CHECK(strstr(err, "max_step") != NULL);
    CHECK(strstr(err, "base_url") != NULL);
    ad_config_free(&c);
}

TEST(toml_syntax_error_has_line_and_column)
{
    /* The one format of every located message: FILE:LINE:COL: message. */
    CHECK(fails_with("[provider]\nbase_url = \n", "/agent.toml:2:12: expected a value"));
}

TEST(every_located_message_has_file_line_and_column)
{
    CHECK(fails_with(MIN "  stream = \"yes\"\n", "/agent.toml:4:3: provider.stream must be a boolean"));
    CHECK(fails_with(MIN "[agnet]\nmax_steps = 3\n", "/agent.toml:4:2: unknown table [agnet]"));
    /* A required key missing from a table that exists points at the table. */
    CHECK(fails_with("\n[provider]\nmodel = \"m\"\n",
                     "/agent.toml:2:2: missing required key base_url in [provider]"));
    /* Without the table there is no place to point at: just the file. */
    CHECK(fails_with("", "/agent.toml: missing required key base_url in [provider]"));
}

TEST(base_url_with_the_endpoint_or_without_a_host)
{
    CHECK(fails_with("[provider]\nmodel = \"m\"\nbase_url = \"https://api.example.com/v1/chat/completions\"\n",
                     "/agent.toml:3:1: provider.base_url ends with /chat/completions, which agentd "
                     "appends itself: drop the suffix (base_url = \"https://api.example.com/v1\")"));
    CHECK(fails_with("[provider]\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/chat/completions/\"\n",
                     "drop the suffix (base_url = \"http://127.0.0.1:9\")"));
    CHECK(fails_with("[provider]\nmodel = \"m\"\nbase_url = \"https://\"\n",
                     "/agent.toml:3:1: provider.base_url 'https://' has no host name"));
    CHECK(fails_with("[provider]\nmodel = \"m\"\nbase_url = \"https:///v1\"\n",
                     "has no host name"));
    char err[512];
    CHECK_EQ(ad_config_check_url("https://x/v1/chat/completions", false, err, sizeof err),
             AD_EINVAL);
    CHECK(strstr(err, "drop the suffix") != NULL);
    CHECK_EQ(ad_config_check_url("https://x/v1/chat/completionsx", false, err, sizeof err), 0);
}

TEST(empty_model_is_refused)
{
    CHECK(fails_with("[provider]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"\"\n",
                     "/agent.toml:3:1: provider.model must not be empty"));
}

TEST(key_messages_name_where_the_setting_was_written)
{
    ad_config c;
    char err[512];
    CHECK_EQ(load(&c, MIN "api_key_env = \"AGENTD_UNIT_NOKEY\"\n", err, sizeof err), 0);
    unsetenv("AGENTD_UNIT_NOKEY");
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "/agent.toml:4:1: the API key variable AGENTD_UNIT_NOKEY "
                      "(provider.api_key_env) is not set") != NULL);
    ad_config_free(&c);
    CHECK_EQ(load(&c, MIN "api_key_file = \"nokey\"\n", err, sizeof err), 0);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "/agent.toml:4:1: cannot read provider.api_key_file") != NULL);
    ad_config_free(&c);
}

TEST(names_of_tools_and_plugins_are_checked)
{
    ad_config c;
    char err[2048];
    CHECK_EQ(load(&c,
                  MIN "[agent]\nconfirm_tools = [\"add\", \"mul\", \"*\"]\n"
                      "[plugins]\ndir = \"p\"\n"
                      "[plugins.config.addd]\nx = 1\n[plugins.config.multiply]\ny = 2\n"
                      "[tools.ad]\nconfirm = true\n[tools.multiply]\nconfirm = true\n",
                  err, sizeof err),
             0);
    const char *tools[] = {"add", "multiply"};
    const char *stems[] = {"add", "multiply"};
    CHECK_EQ(ad_config_check_names(&c, tools, 2, stems, 2, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "/agent.toml:5:25: agent.confirm_tools names 'mul', which is no loaded "
                      "tool (did you mean 'multiply'? loaded: add, multiply)") != NULL);
    CHECK(strstr(err, "/agent.toml:8:17: [plugins.config.addd] names no loaded plugin (did you "
                      "mean 'add'? loaded: add, multiply)") != NULL);
    CHECK(strstr(err, "/agent.toml:12:8: [tools.ad] names no loaded tool (did you mean 'add'? "
                      "loaded: add, multiply)") != NULL);
    CHECK(strstr(err, "multiply]") == NULL);
    const char *tools3[] = {"add", "multiply", "mul"};
    const char *stems3[] = {"add", "multiply", "addd"};
    const char *tools4[] = {"add", "multiply", "mul", "ad"};
    CHECK_EQ(ad_config_check_names(&c, tools4, 4, stems3, 3, err, sizeof err), 0);
    CHECK_EQ(ad_config_check_names(&c, tools3, 3, stems3, 3, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "[tools.ad]") != NULL && strstr(err, "mul'") == NULL);
    /* Nothing loaded at all: said so, no suggestion. */
    CHECK_EQ(ad_config_check_names(&c, NULL, 0, NULL, 0, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "[plugins.config.addd] names no loaded plugin (no plugins are loaded)") !=
          NULL);
    ad_config_free(&c);
}

TEST(missing_file)
{
    ad_config c;
    char err[512];
    ad_config_init(&c);
    CHECK(ad_config_load(&c, "/nonexistent/agent.toml", err, sizeof err) != 0);
    CHECK(strstr(err, "/nonexistent/agent.toml: cannot open") != NULL);
    ad_config_free(&c);
}

TEST(api_key_from_environment)
{
    ad_config c;
    char err[512];
    CHECK_EQ(load(&c, MIN "api_key_env = \"AGENTD_UNIT_KEY\"\n", err, sizeof err), 0);
    unsetenv("AGENTD_UNIT_KEY");
    CHECK(ad_config_read_key(&c, err, sizeof err) != 0);
    CHECK(strstr(err, "AGENTD_UNIT_KEY") != NULL);
    setenv("AGENTD_UNIT_KEY", "sk-secret-123", 1);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), 0);
    CHECK_STREQ(c.api_key, "sk-secret-123");
    /* The effective settings never show the key. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ad_config_print(&c, f);
    fclose(f);
    CHECK(strstr(buf, "sk-secret-123") == NULL);
    CHECK(strstr(buf, "AGENTD_UNIT_KEY") != NULL);
    free(buf);
    ad_config_free(&c);
}

TEST(plain_http_only_to_loopback)
{
    char err[512];
    static const char *const fine[] = {
        "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://LOCALHOST:1", "http://[::1]:9/v1",
        "http://127.1.2.3", "https://api.example.com/v1", "http://user@127.0.0.1:5/v1",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        err[0] = '\0';
        CHECK_EQ(ad_config_check_url(fine[i], false, err, sizeof err), 0);
    }
    static const char *const bad[] = {
        "http://api.example.com/v1", "http://127.0.0.1.example.com/v1", "http://[::2]/v1",
        "http://localhost.example.com", "http://127.0.0.1@example.com/v1", "http://10.0.0.1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_EQ(ad_config_check_url(bad[i], false, err, sizeof err), AD_EINVAL);
        CHECK(strstr(err, "allow_http") != NULL);
        CHECK_EQ(ad_config_check_url(bad[i], true, err, sizeof err), 0);
    }
    /* No host at all: refused whatever allow_http says. */
    static const char *const nohost[] = {"http://", "http://:80/", "https://", "https://@/v1"};
    for (size_t i = 0; i < sizeof nohost / sizeof nohost[0]; i++) {
        err[0] = '\0';
        CHECK_EQ(ad_config_check_url(nohost[i], true, err, sizeof err), AD_EINVAL);
        CHECK(strstr(err, "has no host name") != NULL);
    }
    CHECK_EQ(ad_config_check_url("ftp://x", true, err, sizeof err), AD_EINVAL);
    CHECK(fails_with("[provider]\nbase_url = \"http://api.example.com/v1\"\nmodel = \"m\"\n",
                     "agent.toml:2:1: provider.base_url 'http://api.example.com/v1' uses plain http"));
    ad_config c;
    CHECK_EQ(load(&c,
                  "[provider]\nbase_url = \"http://api.example.com/v1\"\nmodel = \"m\"\n"
                  "allow_http = true\n",
                  err, sizeof err),
             0);
    CHECK(c.allow_http);
    /* A later override (--base-url) is checked when the key is read. */
    c.allow_http = false;
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "allow_http") != NULL);
    ad_config_free(&c);
}

static void write_key(const char *name, const char *text, int mode)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

TEST(api_key_file)
{
    ad_config c;
    char err[512];
    unsetenv("AGENTD_UNIT_KEY2");
    write_key("key", "  sk-from-file-9\n", 0600);
    CHECK_EQ(load(&c, MIN "api_key_env = \"AGENTD_UNIT_KEY2\"\napi_key_file = \"key\"\n", err,
                  sizeof err),
             0);
    CHECK(c.api_key_file && c.api_key_file[0] == '/'); /* resolved against the config folder */
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), 0);
    CHECK_STREQ(c.api_key, "sk-from-file-9");
    char src[256];
    ad_config_key_source(&c, src, sizeof src);
    CHECK(strstr(src, "api_key_file") != NULL);
    /* The environment wins when both are there. */
    setenv("AGENTD_UNIT_KEY2", "sk-env", 1);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), 0);
    CHECK_STREQ(c.api_key, "sk-env");
    ad_config_key_source(&c, src, sizeof src);
    CHECK(strstr(src, "AGENTD_UNIT_KEY2") != NULL);
    unsetenv("AGENTD_UNIT_KEY2");
    /* Group or world readable: refused, and the key is not in the message. */
    write_key("key", "sk-from-file-9\n", 0640);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "chmod 600") != NULL && strstr(err, "0640") != NULL);
    CHECK(strstr(err, "sk-from-file") == NULL);
    write_key("key", "sk-from-file-9\n", 0604);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    write_key("key", "\n\n", 0600);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "empty") != NULL);
    write_key("key", "sk-a\x01b", 0600);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "control") != NULL);
    char path[160];
    snprintf(path, sizeof path, "%s/key", dir);
    unlink(path);
    CHECK_EQ(ad_config_read_key(&c, err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "cannot read") != NULL);
    ad_config_free(&c);
}

TEST(limits_table)
{
    ad_config c;
    char err[512];
    CHECK_EQ(load(&c, MIN, err, sizeof err), 0);
    CHECK_EQ(c.max_event_bytes, 16L << 20);
    CHECK_EQ(c.max_response_bytes, 64L << 20);
    CHECK_EQ(c.max_tool_args_bytes, 8L << 20);
    CHECK_EQ(c.max_tool_calls, 128);
    CHECK_EQ(c.max_tool_result_bytes, 1L << 20);
    ad_config_free(&c);
    CHECK_EQ(load(&c,
                  MIN "[limits]\nmax_event_bytes = 1024\nmax_response_bytes = 4096\n"
                      "max_tool_args_bytes = 100\nmax_tool_calls = 2\nmax_tool_result_bytes = 64\n",
                  err, sizeof err),
             0);
    CHECK_EQ(c.max_event_bytes, 1024);
    CHECK_EQ(c.max_response_bytes, 4096);
    CHECK_EQ(c.max_tool_args_bytes, 100);
    CHECK_EQ(c.max_tool_calls, 2);
    CHECK_EQ(c.max_tool_result_bytes, 64);
    ad_config_free(&c);
    CHECK(fails_with(MIN "[limits]\nmax_tool_calls = 0\n",
                     "limits.max_tool_calls must be between 1 and 4096, not 0"));
    CHECK(fails_with(MIN "[limits]\nmax_event_byte = 10\n", "did you mean 'max_event_bytes'"));
    CHECK(fails_with(MIN "[limits]\nmax_response_bytes = \"big\"\n",
                     "limits.max_response_bytes must be an integer"));
}

TEST(mcp_servers)
{
    ad_config c;
    char err[2048];
    CHECK_EQ(load(&c, MIN, err, sizeof err), 0);
    CHECK(c.mcp_startup_timeout_s == 30);
    CHECK(c.mcp_tool_timeout_s == 120);
    CHECK(c.mcp_max_result_bytes > 0 && c.mcp_max_result_bytes <= (1L << 20));
    CHECK_EQ(c.nmcp_servers, 0);
    ad_config_free(&c);
    setenv("AGENTD_TEST_MCP_DIR", "/srv/data", 1);
    setenv("AGENTD_TEST_MCP_TOKEN", "tok", 1);
    unsetenv("AGENTD_TEST_MCP_UNSET");
    int rc = load(&c,
                  MIN "[mcp.servers.fs]\ncommand = \"npx\"\n"
                      "args = [\"-y\", \"server-fs\", \"${AGENTD_TEST_MCP_DIR}/x\", "
                      "\"${AGENTD_TEST_MCP_UNSET:-/tmp}\", \"$${LITERAL}\"]\n"
                      "env = { A = \"1\", TOKEN = \"${AGENTD_TEST_MCP_TOKEN}\" }\n"
                      "env_vars = [\"LANG\"]\ncwd = \"work\"\nrequired = true\n"
                      "disabled_tools = [\"write_file\"]\ntool_timeout_s = 5\n"
                      "[mcp]\nstartup_timeout_s = 7\nmax_result_bytes = 2048\n"
                      "[mcp.servers.web]\nurl = \"https://mcp.example.com/mcp?k=${AGENTD_TEST_MCP_TOKEN}\"\n"
                      "headers = { X-Key = \"${AGENTD_TEST_MCP_TOKEN}\" }\n"
                      "bearer_token_env = \"WEB_TOKEN\"\ntool_prefix = \"\"\n"
                      "enabled_tools = []\n",
                  err, sizeof err);
    CHECK_EQ(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ(c.nmcp_servers, 2);
    CHECK(c.mcp_max_result_bytes == 2048);
    const ad_mcp_server_conf *fs = ad_config_mcp_server(&c, "fs");
    CHECK(fs && fs->command && strcmp(fs->command, "npx") == 0);
    CHECK(fs && fs->args.n == 5);
    if (fs && fs->args.n == 5) {
        CHECK_STREQ(fs->args.v[2], "/srv/data/x");
        CHECK(fs->args.expanded[2] && !fs->args.expanded[0]);
        CHECK_STREQ(fs->args.v[3], "/tmp");
        CHECK_STREQ(fs->args.v[4], "${LITERAL}");
        CHECK_EQ(fs->nenv, 2);
        CHECK_STREQ(fs->env[1].name, "TOKEN");
        CHECK_STREQ(fs->env[1].value, "tok");
        CHECK(fs->cwd && strstr(fs->cwd, dir) == fs->cwd && strstr(fs->cwd, "/work"));
        CHECK(fs->required && fs->enabled);
        CHECK_STREQ(fs->tool_prefix, "fs"); /* the default: the server's name */
        CHECK(fs->startup_timeout_s == 7);  /* from [mcp], written after */
        CHECK(fs->tool_timeout_s == 5);
        CHECK(fs->disabled_tools.n == 1 && !fs->enabled_tools.set);
    }
    const ad_mcp_server_conf *web = ad_config_mcp_server(&c, "web");
    CHECK(web && web->url && strcmp(web->url, "https://mcp.example.com/mcp?k=tok") == 0);
    CHECK(web && web->url_expanded && web->nheaders == 1);
    CHECK(web && strcmp(web->tool_prefix, "") == 0);
    CHECK(web && web->tool_timeout_s == 120);
    CHECK(web && web->enabled_tools.set && web->enabled_tools.n == 0);
    CHECK(ad_config_mcp_server(&c, "nope") == NULL);
    ad_config_free(&c);
    /* A command with a slash is a path, relative to the file's folder; a
     * bare name is looked up in PATH. */
    CHECK_EQ(load(&c, MIN "[mcp.servers.a]\ncommand = \"bin/srv\"\n[mcp.servers.b]\ncommand = \"srv\"\n",
                  err, sizeof err),
             0);
    char want[128];
    snprintf(want, sizeof want, "%s/bin/srv", dir);
    CHECK_STREQ(c.mcp_servers[0].command, want);
    CHECK_STREQ(c.mcp_servers[1].command, "srv");
    ad_config_free(&c);
}

TEST(mcp_server_errors)
{
    unsetenv("AGENTD_TEST_MCP_UNSET");
    /* Unknown keys get a suggestion, in [mcp] and in a server's table. */
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\narg = [\"1\"]\n",
                     "agent.toml:6:1: unknown key 'arg' in [mcp.servers.a] (did you mean 'args'?)"));
    CHECK(fails_with(MIN "[mcp]\nstartup_timeout = 3\n",
                     "unknown key 'startup_timeout' in [mcp] (did you mean 'startup_timeout_s'?)"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\ntool_timeout_sec = 3\n",
                     "did you mean 'tool_timeout_s'?"));
    /* An unset variable names the place, the variable and the way out. */
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nargs = [\"ok\", \"${AGENTD_TEST_MCP_UNSET}\"]\n",
                     "agent.toml:6:15: mcp.servers.a.args[1]: the environment variable "
                     "AGENTD_TEST_MCP_UNSET is not set"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"${AGENTD_TEST_MCP_UNSET}\"\n",
                     "agent.toml:5:1: mcp.servers.a.command: the environment variable"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nenv = { K = \"${AGENTD_TEST_MCP_UNSET}\" }\n",
                     "mcp.servers.a.env.K: the environment variable AGENTD_TEST_MCP_UNSET"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nurl = \"https://h/${AGENTD_TEST_MCP_UNSET}\"\n",
                     "mcp.servers.a.url: the environment variable"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nurl = \"https://h/\"\nheaders = { H = \"${AGENTD_TEST_MCP_UNSET}\" }\n",
                     "mcp.servers.a.headers.H: the environment variable"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nargs = [\"${bad name}\"]\n",
                     "is not a variable reference"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nargs = [\"${OPEN\"]\n",
                     "is not a variable reference"));
    /* A disabled server's variables need not be set. */
    ad_config c;
    char err[2048];
    CHECK_EQ(load(&c, MIN "[mcp.servers.a]\nenabled = false\ncommand = \"${AGENTD_TEST_MCP_UNSET}\"\n",
                  err, sizeof err),
             0);
    CHECK(c.nmcp_servers == 1 && !c.mcp_servers[0].enabled);
    ad_config_free(&c);
    /* The provider's key never goes to a server. */
    CHECK(fails_with("[provider]\nbase_url = \"http://127.0.0.1:1/v1/\"\nmodel = \"m\"\n"
                     "api_key_env = \"MY_KEY\"\n[mcp.servers.a]\ncommand = \"x\"\n"
                     "env = { K = \"${MY_KEY}\" }\n",
                     "${MY_KEY} is the provider's API key"));
    CHECK(fails_with("[mcp.servers.a]\ncommand = \"x\"\nenv_vars = [\"MY_KEY\"]\n"
                     "[provider]\nbase_url = \"http://127.0.0.1:1/v1/\"\nmodel = \"m\"\n"
                     "api_key_env = \"MY_KEY\"\n",
                     "agent.toml:3:13: mcp.servers.a.env_vars[0]: MY_KEY is the provider's API key"));
    CHECK(fails_with("[provider]\nbase_url = \"http://127.0.0.1:1/v1/\"\nmodel = \"m\"\n"
                     "api_key_env = \"MY_KEY\"\n[mcp.servers.a]\nurl = \"https://h/\"\n"
                     "bearer_token_env = \"MY_KEY\"\n",
                     "MY_KEY is the provider's API key"));
    /* The shape of a server. */
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nurl = \"https://h/\"\n",
                     "has both command (stdio) and url"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nrequired = true\n", "agent.toml:4:14: mcp.servers.a needs command"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nurl = \"https://h/\"\nargs = []\n",
                     "args, env, env_vars and cwd are for command (stdio) servers"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nheaders = { A = \"b\" }\n",
                     "headers and bearer_token_env are for url"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"\"\n", "mcp.servers.a.command must not be empty"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nurl = \"http://example.com/mcp\"\n",
                     "uses plain http to a host that is not loopback"));
    CHECK(fails_with(MIN "[mcp.servers.a]\nurl = \"ftp://h\"\n", "must start with http:// or https://"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nargs = \"-y\"\n",
                     "mcp.servers.a.args must be an array of strings, not string"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nargs = [1]\n",
                     "mcp.servers.a.args[0] must be a string, not integer"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nenv = { \"A B\" = \"1\" }\n",
                     "not a valid environment variable name"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nenv_vars = [\"A=B\"]\n",
                     "is not an environment variable name"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nenabled = \"yes\"\n",
                     "mcp.servers.a.enabled must be a boolean"));
    CHECK(fails_with(MIN "[mcp.servers.a]\ncommand = \"x\"\nstartup_timeout_s = -1\n",
                     "mcp.servers.a.startup_timeout_s must be a number from 0 to 86400"));
    CHECK(fails_with(MIN "[mcp]\nmax_result_bytes = 10\n",
                     "mcp.max_result_bytes must be between 1024"));
    CHECK(fails_with(MIN "image = true\n", "unknown key 'image' in [provider] (did you mean 'images'?)"));
    CHECK(fails_with(MIN "images = 1\n", "provider.images must be a boolean"));
    CHECK(fails_with(MIN "[mcp]\nmax_image_byte = 10\n", "(did you mean 'max_image_bytes'?)"));
    CHECK(fails_with(MIN "[mcp]\nmax_image_bytes = 0\n", "mcp.max_image_bytes must be between 1"));
    CHECK(fails_with(MIN "[mcp]\nservers = 3\n", "mcp.servers must be a table of servers"));
    CHECK(fails_with(MIN "[mcp.servers]\na = 3\n", "mcp.servers.a must be a table"));
}

TEST(serve_table)
{
    ad_config c;
    char err[2048];
    CHECK_EQ(load(&c, MIN, err, sizeof err), 0);
    CHECK(c.serve.listen == NULL);
    CHECK_EQ(c.serve.max_body_bytes, 4L << 20);
    CHECK_EQ(c.serve.max_runs, 1024);
    CHECK(c.serve.header_timeout_s == 10);
    ad_config_free(&c);
    CHECK_EQ(load(&c,
                  MIN "[agent]\nmax_steps = 7\n"
                      "[serve]\nlisten = \"0.0.0.0:9000\"\ntoken_file = \"tok\"\n"
                      "max_runs = 3\nheader_timeout_s = 0.5\napprovals = \"deny\"\n"
                      "[serve.profiles.coder]\nmodel = \"big\"\nsystem_prompt = \"You code.\"\n"
                      "tools = [\"add\"]\nmax_steps = 4\n"
                      "[serve.profiles.plain]\n",
                  err, sizeof err),
             0);
    CHECK_STREQ(err, "");
    CHECK_STREQ(c.serve.listen, "0.0.0.0:9000");
    CHECK(c.serve.token_file && c.serve.token_file[0] == '/' && strstr(c.serve.token_file, "/tok"));
    CHECK_EQ(c.serve.max_runs, 3);
    CHECK(c.serve.header_timeout_s == 0.5);
    CHECK_STREQ(c.serve.approvals, "deny");
    CHECK_EQ(c.serve.nprofiles, 2);
    const ad_serve_profile *p = ad_config_serve_profile(&c, "coder");
    CHECK(p && strcmp(p->model, "big") == 0 && strcmp(p->system_prompt, "You code.") == 0);
    CHECK(p && p->tools.set && p->tools.n == 1 && strcmp(p->tools.v[0], "add") == 0);
    CHECK(p && p->max_steps == 4);
    p = ad_config_serve_profile(&c, "plain");
    CHECK(p && !p->model && !p->system_prompt && !p->tools.set && p->max_steps == 0);
    CHECK(ad_config_serve_profile(&c, "nope") == NULL);
    ad_config_free(&c);
    CHECK(fails_with(MIN "[serve]\nlisen = \"127.0.0.1:1\"\n",
                     "unknown key 'lisen' in [serve] (did you mean 'listen'?)"));
    CHECK(fails_with(MIN "[serv]\n", "unknown table [serv] (did you mean [serve]?)"));
    CHECK(fails_with(MIN "[serve.profiles.a]\nmodle = \"x\"\n",
                     "unknown key 'modle' in [serve.profiles.a] (did you mean 'model'?)"));
    CHECK(fails_with(MIN "[serve]\nlisten = \"8080\"\n", "serve.listen must be HOST:PORT"));
    CHECK(fails_with(MIN "[serve]\nlisten = \"example.com:80\"\n", "serve.listen must be HOST:PORT"));
    CHECK(fails_with(MIN "[serve]\nlisten = \"127.0.0.1:70000\"\n", "serve.listen must be HOST:PORT"));
    CHECK(fails_with(MIN "[serve]\napprovals = \"client\"\n", "serve.approvals must be \"deny\""));
    CHECK(fails_with(MIN "[serve]\ntoken_env = \"A B\"\n", "serve.token_env must name"));
    CHECK(fails_with(MIN "[serve]\nmax_runs = 0\n", "serve.max_runs must be between 1 and"));
    CHECK(fails_with(MIN "[serve.profiles.a]\nmax_steps = 0\n",
                     "serve.profiles.a.max_steps must be an integer from 1 to 100000"));
    CHECK(fails_with(MIN "[serve.profiles.a]\ntools = \"add\"\n", "serve.profiles.a.tools"));
    CHECK(fails_with(MIN "[serve.profiles]\na = 1\n", "serve.profiles.a must be a table"));
    CHECK(fails_with(MIN "[serve]\nlisten = \"[::1]:x\"\n", "agent.toml:5:1: serve.listen"));
    CHECK(fails_with(MIN "[serve]\ndb = \"\"\n", "serve.db must not be empty"));
    CHECK_EQ(load(&c, MIN "[serve]\nlisten = \"[::1]:0\"\ndb = \"state/s.db\"\n", err, sizeof err), 0);
    CHECK(c.serve.db && c.serve.db[0] == '/' && strstr(c.serve.db, "/state/s.db"));
    ad_config_free(&c);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/agentd-config-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(minimal_config_and_defaults);
    RUN(full_config);
    RUN(unknown_key_with_suggestion_and_line);
    RUN(unknown_table_with_suggestion);
    RUN(wrong_types_name_the_expected_type);
    RUN(ranges);
    RUN(missing_required_keys);
    RUN(bad_headers);
    RUN(several_problems_reported_at_once);
    RUN(toml_syntax_error_has_line_and_column);
    RUN(every_located_message_has_file_line_and_column);
    RUN(base_url_with_the_endpoint_or_without_a_host);
    RUN(empty_model_is_refused);
    RUN(key_messages_name_where_the_setting_was_written);
    RUN(names_of_tools_and_plugins_are_checked);
    RUN(missing_file);
    RUN(api_key_from_environment);
    RUN(plain_http_only_to_loopback);
    RUN(api_key_file);
    RUN(limits_table);
    RUN(mcp_servers);
    RUN(mcp_server_errors);
    RUN(serve_table);
    char path[128];
    snprintf(path, sizeof path, "%s/agent.toml", dir);
    unlink(path);
    rmdir(dir);
    return harness_report("test_config");
}

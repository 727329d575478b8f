/*
 * multi.c -- test plugin registering several tools and exercising the host
 * table from the plugin side:
 *   echo_config    the config_json text the host gave at init ("(none)")
 *   echo_args      the argument text exactly as received, plus its length
 *   big_output     "a" then 600000 x "é" (1.2 MB), more than the host keeps
 *   late           calls register_tool() and config_json() outside init
 *   log_lines      logs a two-line message from invoke()
 * Every tool owns a tool_data string whose destroy() logs its name, so the
 * test can see that destroy() runs once per tool.
 */
#include <agentd/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const agentd_host_api *host;
static agentd_plugin *me;
static char *config_copy; /* config_json is borrowed: keep a copy */

static int echo_config(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    const char *c = config_copy ? config_copy : "(none)";
    return host->result_write(out, c, strlen(c));
}

static int echo_args(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d;
    char buf[64];
    /* strlen must agree with n: the host hands over a NUL-terminated copy. */
    int len = snprintf(buf, sizeof buf, " (%zu/%zu)", n, strlen(a));
    host->result_write(out, a, n);
    return host->result_write(out, buf, (size_t)len);
}

static int big_output(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    size_t count = 600000, i;
    char *s = malloc(count * 2);
    if (s == NULL)
        return AGENTD_ENOMEM;
    for (i = 0; i < count; i++) {
        s[2 * i] = (char)0xC3;
        s[2 * i + 1] = (char)0xA9;
    }
    int rc = host->result_write(out, "a", 1);
    if (rc == AGENTD_OK)
        rc = host->result_write(out, s, count * 2);
    free(s);
    return rc;
}

static int late(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    agentd_tool t = {sizeof t, "too_late", "never", "{\"type\":\"object\"}", 0, late, NULL, NULL};
    int rc = host->register_tool(me, &t);
    const char *c = host->config_json(me);
    char buf[64];
    int len = snprintf(buf, sizeof buf, "register=%d config=%s", rc, c ? "set" : "null");
    return host->result_write(out, buf, (size_t)len);
}

static int log_lines(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    host->log(me, AGENTD_LOG_WARN, "first line\nsecond line");
    return host->result_write(out, "logged", 6);
}

static void destroy_name(void *d)
{
    char buf[96];
    snprintf(buf, sizeof buf, "destroy %s", (char *)d);
    host->log(me, AGENTD_LOG_DEBUG, buf);
    free(d);
    /* The last destroy also drops the config copy. */
    if (strcmp(buf, "destroy log_lines") == 0) {
        free(config_copy);
        config_copy = NULL;
    }
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    host = api;
    me = self;
    free(config_copy);
    config_copy = NULL;
    const char *c = api->config_json(self);
    if (c && (config_copy = strdup(c)) == NULL)
        return AGENTD_ENOMEM;
    api->log(self, AGENTD_LOG_INFO, c ? "init with config" : "init without config");

    static const char *const names[] = {"echo_config", "echo_args", "big_output", "late",
                                        "log_lines"};
    agentd_invoke_fn fns[] = {echo_config, echo_args, big_output, late, log_lines};
    for (int i = 0; i < 5; i++) {
        char *data = strdup(names[i]);
        if (data == NULL)
            return AGENTD_ENOMEM;
        agentd_tool t = {sizeof t, names[i], "multi test tool",
                         "{\"type\":\"object\",\"properties\":{}}", 0, fns[i], data, destroy_name};
        int rc = api->register_tool(self, &t);
        if (rc != AGENTD_OK) {
            free(data);
            snprintf(err, errlen, "register %s: %d", names[i], rc);
            return rc;
        }
    }
    return AGENTD_OK;
}

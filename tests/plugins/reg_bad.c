/*
 * reg_bad.c -- test plugin that makes one bad register_tool() call, chosen by
 * its config: {"case":"NAME"}. Cases: bad_name, long_name, empty_name,
 * null_name, small_size, no_invoke, no_params, params_syntax,
 * params_array, params_type, null_tool, ignore_rc (a refused registration
 * whose rc init ignores), and bigger_size (a larger, newer struct: accepted).
 */
#include <agentd/plugin.h>

#include <string.h>

static int nop_invoke(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    return AGENTD_OK;
}

static int is_case(const char *cfg, const char *name)
{
    /* The config is {"case":"NAME"}; a substring test is enough here. */
    char want[64];
    size_t n = strlen(name);
    if (cfg == NULL || n + 3 > sizeof want)
        return 0;
    want[0] = '"';
    memcpy(want + 1, name, n);
    want[n + 1] = '"';
    want[n + 2] = '\0';
    return strstr(cfg, want) != NULL;
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    (void)err, (void)errlen;
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    const char *cfg = api->config_json(self);
    struct {
        agentd_tool t;
        void *future_fields[4];
    } big;
    memset(&big, 0, sizeof big);
    agentd_tool t = {sizeof t, "ok_tool", "fine", "{\"type\":\"object\"}", 0, nop_invoke, NULL,
                     NULL};
    if (is_case(cfg, "bad_name"))
        t.name = "bad name!";
    else if (is_case(cfg, "long_name"))
        t.name = "a123456789a123456789a123456789a123456789a123456789a123456789abcde"; /* 65 */
    else if (is_case(cfg, "empty_name"))
        t.name = "";
    else if (is_case(cfg, "null_name"))
        t.name = NULL;
    else if (is_case(cfg, "small_size"))
        t.size = sizeof t - sizeof(void *);
    else if (is_case(cfg, "no_invoke"))
        t.invoke = NULL;
    else if (is_case(cfg, "no_params"))
        t.parameters = NULL;
    else if (is_case(cfg, "params_syntax"))
        t.parameters = "{\"type\":";
    else if (is_case(cfg, "params_array"))
        t.parameters = "[1,2]";
    else if (is_case(cfg, "params_type"))
        t.parameters = "{\"type\":\"string\"}";
    else if (is_case(cfg, "null_tool"))
        return api->register_tool(self, NULL);
    else if (is_case(cfg, "ignore_rc")) {
        t.name = "no spaces allowed";
        (void)api->register_tool(self, &t);
        return AGENTD_OK;
    } else if (is_case(cfg, "bigger_size")) {
        big.t = t;
        big.t.size = sizeof big;
        return api->register_tool(self, &big.t);
    }
    return api->register_tool(self, &t);
}

/*
 * errors.c -- test plugin with failing tools:
 *   fail_msg   returns AGENTD_ERR after result_error("disk on fire")
 *   fail_code  returns -7 without any message
 *   fail_soft  writes output, calls result_error() and still returns OK
 */
#include <agentd/plugin.h>

static const agentd_host_api *host;

static int fail_msg(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    host->result_error(out, "disk on fire");
    return AGENTD_ERR;
}

static int fail_code(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n, (void)out;
    return -7;
}

static int fail_soft(void *d, const char *a, size_t n, agentd_result *out)
{
    (void)d, (void)a, (void)n;
    host->result_write(out, "partial; ", 9);
    host->result_error(out, "then it broke");
    return AGENTD_OK;
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    (void)err, (void)errlen;
    if (!AGENTD_PLUGIN_CHECK(api))
        return AGENTD_EABI;
    host = api;
    static const char *const names[] = {"fail_msg", "fail_code", "fail_soft"};
    agentd_invoke_fn fns[] = {fail_msg, fail_code, fail_soft};
    for (int i = 0; i < 3; i++) {
        agentd_tool t = {sizeof t, names[i], "always fails", "{\"type\":\"object\"}", 0, fns[i],
                         NULL, NULL};
        int rc = api->register_tool(self, &t);
        if (rc != AGENTD_OK)
            return rc;
    }
    return AGENTD_OK;
}

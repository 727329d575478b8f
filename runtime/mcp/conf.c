/*
 * conf.c -- MCP clients from the config (see conf.h).
 */
#include "mcp/conf.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "mcp/stdio.h"

ad_mcp_client *ad_mcp_client_from_conf(uv_loop_t *loop, const ad_config *cfg,
                                       const ad_mcp_server_conf *s, int max_restarts,
                                       const ad_mcp_client_cb *cb, void *ud, char *err,
                                       size_t errlen)
{
    if (!s->command) {
        ad_errf(err, errlen,
                "the MCP server '%s' has a url: the Streamable HTTP transport is not available "
                "in this version of agentd (only command servers, over stdio)",
                s->name);
        return NULL;
    }
    char **env = ad_mcp_env_build(s->env, s->nenv, s->env_vars.v, s->env_vars.n, cfg->api_key);
    if (!env) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    ad_mcp_stdio_opts so = {
        .command = s->command,
        .args = (const char *const *)s->args.v,
        .nargs = s->args.n,
        .cwd = s->cwd,
        .env = env,
        .max_line = cfg->max_response_bytes > 0 ? (size_t)cfg->max_response_bytes : 0,
    };
    ad_mcp_transport *t = ad_mcp_stdio_new(loop, &so);
    ad_mcp_env_free(env);
    if (!t) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    ad_mcp_client_opts co = {
        .name = s->name,
        .startup_timeout_s = s->startup_timeout_s,
        .request_timeout_s = s->startup_timeout_s,
        .max_restarts = max_restarts,
    };
    ad_mcp_client *c = ad_mcp_client_new(loop, t, &co, cb, ud);
    if (!c)
        ad_errf(err, errlen, "out of memory");
    return c;
}

static bool names(const ad_conf_strs *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], name) == 0)
            return true;
    return false;
}

bool ad_mcp_tool_offered(const ad_mcp_server_conf *s, const ad_mcp_tool *t, const char **why)
{
    const char *w = NULL;
    if (s->enabled_tools.set && !names(&s->enabled_tools, t->name))
        w = "not in enabled_tools";
    else if (names(&s->disabled_tools, t->name))
        w = "in disabled_tools";
    else if (t->needs_tasks)
        w = "needs tasks (execution.taskSupport \"required\"), which agentd does not support";
    if (why)
        *why = w;
    return w == NULL;
}

/*
 * conf.c -- MCP clients from the config (see conf.h).
 */
#include "mcp/conf.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "mcp/http.h"
#include "mcp/stdio.h"

/* Streamable HTTP: the config's headers and Authorization (from
 * bearer_token_env) on every request. */
static ad_mcp_transport *http_transport(uv_loop_t *loop, const ad_config *cfg,
                                        const ad_mcp_server_conf *s, char *err, size_t errlen)
{
    char **hdrs = calloc(s->nheaders + 2, sizeof *hdrs);
    size_t n = 0;
    ad_mcp_transport *t = NULL;
    if (!hdrs) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < s->nheaders; i++) {
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "%s: %s", s->headers[i].name, s->headers[i].value);
        if (!b.data)
            goto oom;
        hdrs[n++] = b.data;
    }
    if (s->bearer_token_env) {
        const char *tok = getenv(s->bearer_token_env);
        if (!tok || !tok[0]) {
            ad_errf(err, errlen,
                    "the MCP server '%s': bearer_token_env names %s, which is not set in "
                    "agentd's environment",
                    s->name, s->bearer_token_env);
            goto out;
        }
        ad_buf b = AD_BUF_INIT;
        ad_buf_printf(&b, "Authorization: Bearer %s", tok);
        if (!b.data)
            goto oom;
        hdrs[n++] = b.data;
    }
    ad_mcp_http_opts ho = {
        .url = s->url,
        .shown_url = s->url_expanded ? NULL : s->url,
        .headers = (const char *const *)hdrs,
        .nheaders = n,
        .max_message = cfg->max_response_bytes > 0 ? (size_t)cfg->max_response_bytes : 0,
    };
    t = ad_mcp_http_new(loop, NULL, &ho);
    if (!t)
        goto oom;
    goto out;
oom:
    ad_errf(err, errlen, "out of memory");
out:
    /* The values may be secrets: cleared before they are freed. */
    for (size_t i = 0; i < n; i++) {
        memset(hdrs[i], 0, strlen(hdrs[i]));
        free(hdrs[i]);
    }
    free(hdrs);
    return t;
}

ad_mcp_client *ad_mcp_client_from_conf(uv_loop_t *loop, const ad_config *cfg,
                                       const ad_mcp_server_conf *s, int max_restarts,
                                       const ad_mcp_client_cb *cb, void *ud, char *err,
                                       size_t errlen)
{
    ad_mcp_transport *t = NULL;
    if (!s->command) {
        t = http_transport(loop, cfg, s, err, errlen);
        if (!t)
            return NULL;
    } else {
        char **env =
            ad_mcp_env_build(s->env, s->nenv, s->env_vars.v, s->env_vars.n, cfg->api_key);
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
        t = ad_mcp_stdio_new(loop, &so);
        ad_mcp_env_free(env);
        if (!t) {
            ad_errf(err, errlen, "out of memory");
            return NULL;
        }
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

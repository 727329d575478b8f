/*
 * config.h -- agent.toml: typed, validated settings.
 *
 * The loader is strict: an unknown key or table is an error naming
 * file:line, the key and the closest valid key; a value of the wrong type
 * names the expected type; missing required keys are named. Relative paths
 * resolve against the config file's folder. The API key is read from the
 * environment variable named by provider.api_key_env, or else from
 * provider.api_key_file (which must not be readable by group or others), and
 * is never printed. Plain http:// is accepted only for loopback hosts
 * (127.0.0.0/8, localhost, [::1]) unless provider.allow_http = true.
 *
 * [limits] bounds what a provider can make agentd hold (all in bytes except
 * max_tool_calls); see docs/failures.md.
 */
#ifndef AD_CONFIG_H
#define AD_CONFIG_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct ad_header {
    char *name;  /* owned */
    char *value; /* owned */
} ad_header;

/* Where something was written in the file: 1-based line and column (of
 * the key, or of an array element); 0 when it was not written there. */
typedef struct ad_conf_loc {
    int line, col;
} ad_conf_loc;

/* [tools.NAME]: per-tool settings. */
typedef struct ad_tool_conf {
    char *name;       /* owned */
    double timeout_s; /* < 0: the default (agent.tool_timeout_s) */
    int confirm;      /* -1 unset, 0 no, 1 yes */
    int isolation;    /* -1 unset, else AD_ISOLATION_* */
    ad_conf_loc at;   /* where the table was written */
} ad_tool_conf;

/* A name the file gives to something outside it (a plugin's stem). */
typedef struct ad_conf_ref {
    char *name; /* owned */
    ad_conf_loc at;
} ad_conf_ref;

/* Where a tool's calls run: in agentd's process, in a fresh worker process
 * per call ("per-call", also spelt "process"), or in the plugin's
 * persistent worker process (the default). The values are those of
 * tools/plugin.h's AD_TOOL_*. */
enum { AD_ISOLATION_NONE = 0, AD_ISOLATION_PROCESS = 1, AD_ISOLATION_WORKER = 2 };

/* A list of strings from the file, with where each was written. */
typedef struct ad_conf_strs {
    char **v;          /* owned */
    ad_conf_loc *at;   /* owned: where each entry was written */
    bool *expanded;    /* owned: the entry had a ${VAR} (never printed) */
    size_t n;
    bool set;          /* the key was written (an empty list is not "all") */
} ad_conf_strs;

/* [mcp.servers.NAME]: one MCP server. ${VAR} references in command, args,
 * env, url and headers are expanded at load (docs/mcp.md); a disabled
 * server's are not. */
typedef struct ad_mcp_server_conf {
    char *name;            /* owned: NAME */
    /* stdio */
    char *command;         /* owned or NULL */
    bool command_expanded; /* it had a ${VAR} */
    ad_conf_strs args;
    ad_header *env;        /* owned: literal variables */
    size_t nenv;
    ad_conf_strs env_vars; /* variables passed through by name */
    char *cwd;             /* owned, resolved, or NULL */
    /* Streamable HTTP */
    char *url;             /* owned or NULL */
    bool url_expanded;     /* it had a ${VAR} */
    ad_header *headers;    /* owned */
    size_t nheaders;
    char *bearer_token_env; /* owned or NULL */
    /* both */
    bool enabled;          /* default true */
    bool required;         /* default false: a run fails when this one cannot start */
    ad_conf_strs enabled_tools;  /* set: only these */
    ad_conf_strs disabled_tools; /* never these */
    char *tool_prefix;     /* owned: model-facing names are PREFIX__tool ("" : none) */
    double startup_timeout_s; /* [mcp] startup_timeout_s unless set */
    double tool_timeout_s;    /* [mcp] tool_timeout_s unless set; 0 = none */
    ad_conf_loc at;        /* where the table was written */
} ad_mcp_server_conf;

/* [serve.profiles.NAME]: an agent `agentd serve` offers as a model. */
typedef struct ad_serve_profile {
    char *name;          /* owned: NAME, the request's "model" */
    char *model;         /* owned or NULL: provider.model */
    char *system_prompt; /* owned or NULL: agent.system_prompt ("" : none) */
    ad_conf_strs tools;  /* set: only these tools are offered */
    int max_steps;       /* 0: agent.max_steps */
    ad_conf_loc at;      /* where the table was written */
} ad_serve_profile;

/* [serve]: `agentd serve` (docs/serve.md). */
typedef struct ad_serve_conf {
    char *listen;     /* owned: "HOST:PORT" ("127.0.0.1:8080") */
    char *token_file; /* owned, resolved, or NULL */
    char *token_env;  /* owned or NULL */
    long max_header_bytes, max_headers, max_body_bytes;
    long max_connections, max_connections_per_peer, max_runs;
    long max_write_queue_bytes;
    double header_timeout_s, body_timeout_s, idle_timeout_s, write_timeout_s;
    double sse_keepalive_s, drain_timeout_s;
    char *approvals; /* owned: "deny" (the only value so far) or NULL */
    char *db;        /* owned, resolved, or NULL: the XDG state default */
    ad_serve_profile *profiles; /* owned, in file order */
    size_t nprofiles;
} ad_serve_conf;

typedef struct ad_config {
    char *path; /* owned: the file as given */
    char *dir;  /* owned: its folder */

    /* [provider] */
    char *base_url;    /* owned; POST {base_url}/chat/completions */
    char *api_key_env; /* owned or NULL: the variable holding the key */
    char *api_key;     /* owned or NULL: the key itself; never printed */
    char *api_key_file; /* owned or NULL: resolved path of a file holding the key */
    bool allow_http;    /* plain http:// to hosts other than loopback */
    char *model;       /* owned */
    bool stream;
    bool images;              /* the model takes images in user messages */
    double timeout_s;         /* whole request; 0 = none */
    double connect_timeout_s; /* connection set-up */
    double idle_timeout_s;    /* no byte for that long mid-response; 0 = none */
    int max_retries;
    double max_retry_wait_s; /* one wait between attempts is never longer */
    ad_header *headers;      /* owned array */
    size_t nheaders;
    json_object *extra; /* owned object, merged into every request body */

    /* [agent] */
    char *system_prompt; /* owned or NULL */
    int max_steps;
    long max_tokens; /* 0 = not sent */
    bool unique_tool_call_ids;
    double tool_timeout_s; /* default per-call tool timeout; 0 = none */
    int isolation;         /* default AD_ISOLATION_* (AD_ISOLATION_WORKER) */
    char **confirm_tools;  /* owned: tool names (or "*") that need approval */
    ad_conf_loc *confirm_tools_at; /* owned: where each entry was written */
    size_t nconfirm_tools;

    /* [tools.NAME] */
    ad_tool_conf *tools; /* owned array */
    size_t ntools;

    /* [limits] */
    long max_event_bytes;       /* one SSE line or event (16 MiB) */
    long max_response_bytes;    /* one response body, SSE or JSON (64 MiB) */
    long max_tool_args_bytes;   /* arguments of one tool call (8 MiB) */
    long max_tool_calls;        /* tool calls in one response (128) */
    long max_tool_result_bytes; /* one tool result; the rest is cut with a marker (1 MiB) */

    /* [plugins] */
    char *plugins_dir;          /* owned, resolved, or NULL: no plugins */
    char **plugins_pass_env;    /* owned, NULL-terminated: variables workers get too */
    json_object *plugin_config; /* owned object: stem -> object */
    ad_conf_ref *plugin_configs; /* owned: the [plugins.config.STEM] tables, in file order */
    size_t nplugin_configs;

    /* [sessions] */
    bool sessions_enabled;  /* default true: sessions can be stored and resumed */
    bool sessions_one_shot; /* default false: store plain -p runs too (REPL and
                               --session/--continue runs are always stored) */
    char *sessions_path;   /* owned, resolved, or NULL: the XDG state default */

    /* [mcp] */
    double mcp_startup_timeout_s; /* default 30 */
    double mcp_tool_timeout_s;    /* default 120; 0 = none */
    long mcp_max_result_bytes;    /* one result's text for the model (128 KiB) */
    long mcp_max_image_bytes;     /* one image shown to the model, decoded (5 MiB) */
    ad_mcp_server_conf *mcp_servers; /* owned, in file order */
    size_t nmcp_servers;

    /* [serve] */
    ad_serve_conf serve;

    ad_conf_loc *key_at; /* owned: where each scalar setting was written (see ad_config_where) */
} ad_config;

/* The config file to use: `given` when not NULL, else $AGENTD_CONFIG, else
 * ./agent.toml, else $XDG_CONFIG_HOME/agentd/agent.toml (~/.config/...),
 * the first that exists. New string (caller frees), or NULL when none
 * exists; then *tried (may be NULL) gets the XDG path looked at, or NULL. */
char *ad_config_find(const char *given, char **tried);

/* $XDG_CONFIG_HOME/agentd/agent.toml (else ~/.config/agentd/agent.toml),
 * where `agentd --init` writes. New string, caller frees; NULL when
 * neither variable is set (or on ENOMEM). */
char *ad_config_user_path(void);

/* $XDG_STATE_HOME/agentd/LEAF (else ~/.local/state/agentd/LEAF), where
 * agentd keeps what it learns (sessions, REPL history). New string, caller
 * frees; NULL when neither variable is usable. */
char *ad_state_path(const char *leaf);

/* Creates the missing folders above path, each 0700. Returns 0, or a
 * negative AD_E* with err naming the folder and why. */
int ad_make_parents(const char *path, char *err, size_t errlen);

/* Makes sure path is a regular file: a missing one is created empty with
 * mode 0600 (its folders with ad_make_parents), so that SQLite never
 * creates a database with the umask's mode (its -wal and -shm files copy
 * this one). Returns 0, AD_EINVAL (not a regular file) or another negative
 * AD_E*, with err set. */
int ad_make_private_file(const char *path, char *err, size_t errlen);

/* Sets the defaults. */
void ad_config_init(ad_config *c);

/* Loads and validates path into c (initialised with ad_config_init()).
 * Returns 0, or AD_EINVAL with err = "FILE:LINE:COL: message" (several
 * problems are reported one per line; "FILE: message" when the problem has
 * no place in the file, such as a missing table), or another negative code.
 * TOML syntax errors have the same form. */
int ad_config_load(ad_config *c, const char *path, char *err, size_t errlen);

/* Reads the API key from the environment, or from provider.api_key_file
 * when the variable is unset, and checks base_url again (CLI overrides are
 * applied by then). Returns 0, or AD_EINVAL with err naming the variable or
 * file (never the key), prefixed with where the setting was written. */
int ad_config_read_key(ad_config *c, char *err, size_t errlen);

/* 0 when url may be used: https://, or http:// to a loopback host, or any
 * http:// with allow_http; it must name a host, and must not end with the
 * /chat/completions that agentd appends. Else AD_EINVAL with err saying
 * what to change. */
int ad_config_check_url(const char *url, bool allow_http, char *err, size_t errlen);

/* "FILE:LINE:COL: " for the scalar setting TABLE.KEY as written in the
 * file, or "" when it was not written there (a default, or a value replaced
 * on the command line, see ad_config_unlocate). Written into buf, returned. */
const char *ad_config_where(const ad_config *c, const char *table, const char *key, char *buf,
                            size_t buflen);
/* TABLE.KEY was replaced by a command-line option: its messages no longer
 * point into the file. */
void ad_config_unlocate(ad_config *c, const char *table, const char *key);

/* Checks the names the file gives against what was loaded: every
 * agent.confirm_tools entry (but "*") and every [tools.NAME] must be one of
 * tools[0..ntools), every [plugins.config.STEM] one of plugins[0..nplugins)
 * (the loaded plugins' file names without ".so"). Returns 0, or AD_EINVAL
 * with err holding one "FILE:LINE:COL: ..." line per unknown name, with the
 * closest loaded name as a suggestion and the loaded names listed. */
int ad_config_check_names(const ad_config *c, const char *const *tools, size_t ntools,
                          const char *const *plugins, size_t nplugins, char *err, size_t errlen);

/* Where the key comes from, for messages: "the environment variable X",
 * "the file Y" (never the key itself). Writes into out. */
void ad_config_key_source(const ad_config *c, char *out, size_t outlen);

/* The effective settings of tool `name`: timeout (0 = none), whether it
 * needs approval, and its isolation. */
void ad_config_tool(const ad_config *c, const char *name, double *timeout_s, bool *confirm,
                    int *isolation);
/* "worker", "per-call" or "in-process" for an AD_ISOLATION_* value. */
const char *ad_isolation_name(int isolation);

/* True for a header that may carry a credential: its name has auth, key,
 * token, secret, cookie, pass or sign in it, or its value holds the key.
 * Such headers are never printed or recorded. */
bool ad_config_sensitive_header(const char *name, const char *value, const char *key);

/* The [mcp.servers.NAME] named name, or NULL. */
const ad_mcp_server_conf *ad_config_mcp_server(const ad_config *c, const char *name);

/* The [serve.profiles.NAME] named name, or NULL. */
const ad_serve_profile *ad_config_serve_profile(const ad_config *c, const char *name);

/* Prints the effective settings as TOML (the key's value is never shown). */
void ad_config_print(const ad_config *c, FILE *out);

void ad_config_free(ad_config *c); /* accepts a zeroed struct */

#endif /* AD_CONFIG_H */

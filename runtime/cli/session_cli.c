/*
 * session_cli.c -- sessions as the command line sees them: a run's store
 * (--session NAME, --continue, or a new unnamed session) and the
 * `agentd sessions list|show|rm|export` subcommand.
 *
 * Kept apart from main.c so that main only decides exit codes: these
 * functions return AD_* codes (AD_EINVAL and AD_SESSION_UNKNOWN are the
 * user's to fix: exit 2; anything else is a runtime failure: exit 1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"
#include "sinks/text.h"
#include "store/session.h"

/* The database: [sessions] path, else the default. Caller frees. */
static char *db_path(const ad_config *cfg)
{
    return cfg->sessions_path ? ad_strdup(cfg->sessions_path) : ad_session_default_path();
}

int ad_session_attach(ad_session **out, const ad_config *cfg, const char *name, bool cont,
                      ad_agent *agent, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->sessions_enabled) {
        if (name || cont) {
            char where[512];
            ad_errf(err, errlen, "%ssessions are disabled ([sessions] enabled = false); "
                                 "--session and --continue need them",
                    ad_config_where(cfg, "sessions", "enabled", where, sizeof where));
            return AD_EINVAL;
        }
        return AD_OK;
    }
    char *path = db_path(cfg);
    if (!path) {
        ad_errf(err, errlen, "no place for sessions: set XDG_STATE_HOME or HOME, or [sessions] "
                             "path (or enabled = false)");
        return AD_EINVAL;
    }
    ad_session *s = NULL;
    int rc = ad_session_open(&s, path, true, err, errlen);
    free(path);
    if (rc != AD_OK)
        return rc;
    ad_session_set_secret(s, cfg->api_key);
    char *last = NULL;
    if (cont && (rc = ad_session_last(s, &last, err, errlen)) != AD_OK)
        goto fail;
    rc = ad_session_start(s, cont ? last : name, true, cfg->model, cfg->path, NULL, err, errlen);
    free(last);
    if (rc != AD_OK)
        goto fail;
    json_object *msgs = NULL;
    if ((rc = ad_session_load(s, &msgs, err, errlen)) != AD_OK)
        goto fail;
    if (json_object_array_length(msgs) > 0) {
        /* The stored conversation, system prompt included, as it was. */
        rc = ad_agent_load_messages(agent, msgs);
        if (rc != AD_OK)
            ad_errf(err, errlen, "cannot load the session's messages into the agent");
    } else {
        /* A new session starts with what the agent starts with. */
        json_object *first = ad_agent_messages(agent);
        if (!first) {
            rc = AD_ENOMEM;
            ad_errf(err, errlen, "out of memory");
        }
        for (size_t i = 0; rc == AD_OK && i < json_object_array_length(first); i++)
            rc = ad_session_append(s, json_object_array_get_idx(first, i), 0, err, errlen);
    }
    json_object_put(msgs);
    if (rc != AD_OK)
        goto fail;
    *out = s;
    return AD_OK;
fail:
    ad_session_close(s);
    return rc;
}

/* ---- agentd sessions ... ------------------------------------------------ */

static const char sessions_usage[] =
    "usage: agentd sessions [--config FILE] list\n"
    "       agentd sessions [--config FILE] show NAME\n"
    "       agentd sessions [--config FILE] rm NAME\n"
    "       agentd sessions [--config FILE] export NAME [--format json|transcript]\n"
    "\n"
    "Stored conversations: every REPL conversation and every run with --session\n"
    "or --continue. The database is the file set by `path` in the [sessions]\n"
    "table of the config file (found as for a run: --config, $AGENTD_CONFIG,\n"
    "./agent.toml, ...); without one, $XDG_STATE_HOME/agentd/sessions.db\n"
    "(~/.local/state/agentd/sessions.db).\n"
    "\n"
    "  list     name, last update, model, message count and total tokens\n"
    "  show     the conversation as readable text\n"
    "  rm       delete the session\n"
    "  export   the conversation as JSON, {\"name\",\"model\",\"messages\":[...]}\n"
    "           (the default), or with --format transcript as show prints it\n";

static int cli_usage(const char *fmt, const char *arg)
{
    fputs("agentd: sessions: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'agentd sessions --help'.\n", stderr);
    return 2;
}


int ad_session_cli(int argc, char **argv)
{
    const char *config = NULL, *format = "json", *verb = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(sessions_usage, stdout);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
                   strcmp(a, "--format") == 0) {
            if (i + 1 >= argc)
                return cli_usage("option '%s' needs a value", a);
            if (strcmp(a, "--format") == 0)
                format = argv[++i];
            else
                config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (strncmp(a, "--format=", 9) == 0) {
            format = a + 9;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("unknown option '%s'", a);
        } else if (!verb) {
            verb = a;
        } else if (!name) {
            name = a;
        } else {
            return cli_usage("unexpected argument '%s'", a);
        }
    }
    if (!verb)
        return cli_usage("%s", "which command? list, show NAME, rm NAME or export NAME");
    bool list = strcmp(verb, "list") == 0, show = strcmp(verb, "show") == 0;
    bool rm = strcmp(verb, "rm") == 0, export = strcmp(verb, "export") == 0;
    if (!list && !show && !rm && !export) {
        static const char *const verbs[] = {"list", "show", "rm", "export"};
        const char *best = NULL;
        size_t bestd = 3; /* a guess at most two edits away, and shorter than the word */
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
            size_t d = ad_edit_distance(verb, verbs[i]);
            if (d < bestd && d < strlen(verbs[i])) {
                bestd = d;
                best = verbs[i];
            }
        }
        fprintf(stderr, "agentd: sessions: unknown command '%s'", verb);
        if (best)
            fprintf(stderr, "; did you mean '%s'?", best);
        fputs(" (list, show, rm, export)\nTry 'agentd sessions --help'.\n", stderr);
        return 2;
    }
    if (list && name)
        return cli_usage("unexpected argument '%s'", name);
    if (!list && !name)
        return cli_usage("'%s' needs a session NAME", verb);
    if (strcmp(format, "json") != 0 && strcmp(format, "transcript") != 0)
        return cli_usage("--format is json or transcript, not '%s'", format);

    char err[4096];
    /* The config a run would use, if there is one; without one the default
     * database is used. */
    char *cpath = ad_config_find(config, NULL);
    ad_config cfg;
    ad_config_init(&cfg);
    if (cpath && ad_config_load(&cfg, cpath, err, sizeof err) != AD_OK) {
        ad_print_lines(stderr, err);
        free(cpath);
        ad_config_free(&cfg);
        return 2;
    }
    free(cpath);
    char *path = db_path(&cfg);
    ad_config_free(&cfg);
    if (!path) {
        fputs("agentd: no session database: set XDG_STATE_HOME or HOME, or [sessions] path\n",
              stderr);
        return 2;
    }
    ad_session *s = NULL;
    /* Reading never creates the database; rm needs one to exist too. */
    int rc = ad_session_open(&s, path, false, err, sizeof err);
    if (rc == AD_SESSION_UNKNOWN && list) {
        fprintf(stderr, "agentd: no sessions yet (%s)\n", path);
        free(path);
        return 0;
    }
    if (rc == AD_SESSION_UNKNOWN)
        ad_errf(err, sizeof err, "no session named '%s' (no sessions yet in %s)", name, path);
    free(path);
    if (rc == AD_OK) {
        if (list)
            rc = ad_session_list(s, stdout, err, sizeof err);
        else if (show || (export && strcmp(format, "transcript") == 0))
            rc = ad_session_show(s, name, stdout, err, sizeof err);
        else if (export)
            rc = ad_session_export(s, name, stdout, err, sizeof err);
        else if ((rc = ad_session_remove(s, name, err, sizeof err)) == AD_OK)
            fprintf(stderr, "agentd: removed session %s\n", name);
    }
    ad_session_close(s);
    if (fflush(stdout) != 0 && rc == AD_OK) {
        ad_errf(err, sizeof err, "cannot write the output: %s", strerror(errno));
        rc = AD_ERR;
    }
    if (rc == AD_OK)
        return 0;
    ad_print_lines(stderr, err);
    return rc == AD_SESSION_UNKNOWN || rc == AD_EINVAL ? 2 : 1;
}

/*
 * main.c -- the agentd command: options, config, plugins, one run.
 *
 * The only place that decides exit codes:
 *   0 the model answered; 1 runtime failure (provider, network, protocol);
 *   2 usage or config error (also a broken plugin); 3 max_steps reached;
 *   130 interrupted (SIGINT).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <agentd/plugin.h>

#include "core/agent.h"
#include "base/buf.h"
#include "provider/cassette.h"
#include "base/config.h"
#include "core/events.h"
#include "base/lazy_curl.h"
#include "provider/curl.h"
#include "provider/record.h"
#include "provider/replay.h"
#include "cli/init.h"
#include "cli/jobs_cli.h"
#include "cli/mcp_cli.h"
#include "cli/repl.h"
#include "cli/serve_cli.h"
#include "cli/worker_cli.h"
#include "sinks/jsonl.h"
#include "sinks/store.h"
#include "sinks/text.h"
#include "store/session.h"
#include "mcp/provider.h"
#include "tools/host.h"
#include "tools/isolate.h"
#include "tools/plugin.h"
#include "tools/tcache.h"
#include "tools/worker.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_MAX_STEPS = 3, EXIT_INTERRUPTED = 130 };


/* How long agentd waits for its plugin workers to end at exit. */
#define WORKER_EXIT_WAIT_S 1.0
static const char usage_text[] =
    "usage: agentd [--config FILE] -p PROMPT [options]\n"
    "       agentd [--config FILE] < prompt.txt\n"
    "       agentd [--config FILE] [--repl]      (a conversation on the terminal)\n"
    "       agentd --check-config [FILE]\n"
    "       agentd --init [FILE]                 (write a starter config)\n"
    "       agentd sessions list|show NAME|rm NAME|export NAME  (see agentd sessions --help)\n"
    "       agentd [--config FILE] mcp list|tools|call|serve ...  (see agentd mcp --help)\n"
    "       agentd worker|submit|jobs ...            (a Redis job queue: see agentd worker\n"
    "                                                 --help, docs/workers.md)\n"
    "       agentd serve [--config FILE] ...         (the agent over HTTP; agentd serve --help)\n"
    "\n"
    "Runs an agent: sends PROMPT to an OpenAI-compatible Chat Completions API,\n"
    "runs the tools the model asks for (plugins in [plugins] dir) and loops\n"
    "until the model answers. The answer streams to stdout, tool activity to\n"
    "stderr.\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     agent.toml to use (default: $AGENTD_CONFIG, ./agent.toml,\n"
    "                        then $XDG_CONFIG_HOME/agentd/agent.toml)\n"
    "  -p, --prompt PROMPT   the prompt (without it, standard input is read, or on a\n"
    "                        terminal a conversation starts)\n"
    "      --repl            a conversation: line editing, history, /help for commands\n"
    "                        (with -p, PROMPT is its first message)\n"
    "      --json            JSON Lines events on stdout, one per line\n"
    "  -m, --model NAME      override provider.model\n"
    "      --base-url URL    override provider.base_url\n"
    "      --max-steps N     override agent.max_steps\n"
    "      --check-config [FILE]\n"
    "                        validate the config (FILE, else the one a run would\n"
    "                        use) and load its plugins; print the effective settings\n"
    "      --init [FILE]     write a commented starter config to FILE (default:\n"
    "                        $XDG_CONFIG_HOME/agentd/agent.toml); never overwrites\n"
    "  -q, --quiet           no tool activity lines on stderr, no plugin log lines\n"
    "                        below warnings (AGENTD_DEBUG=1 shows all of them)\n"
    "      --yes             run tools configured with confirm = true without asking\n"
    "                        (otherwise one-shot runs deny them)\n"
    "      --record FILE     write every HTTP exchange of the run to FILE, a go-vcr v2\n"
    "                        YAML cassette (no Authorization header, no API key)\n"
    "      --replay FILE     answer every request from the cassette FILE, in order,\n"
    "                        without network or API key; a request that differs from\n"
    "                        the recorded one fails the run (exit 1)\n"
    "      --session NAME    start or resume the stored conversation NAME (REPL\n"
    "                        conversations are stored too; plain -p runs only with\n"
    "                        [sessions] one_shot = true; see 'agentd sessions')\n"
    "      --continue        resume the most recently used session\n"
    "  -h, --help            this help\n"
    "  -V, --version         the version\n"
    "\n"
    "exit status: 0 ok, 1 runtime failure, 2 usage or config error,\n"
    "             3 max_steps reached, 130 interrupted\n";

typedef struct cli {
    const char *config;
    const char *prompt;
    const char *model;
    const char *base_url;
    int max_steps;
    bool json;
    bool check_config;
    bool init;           /* --init [FILE] */
    bool quiet;
    bool yes;
    bool repl;
    const char *record; /* cassette to write */
    const char *replay; /* cassette to serve from */
    const char *session; /* --session NAME */
    bool cont;           /* --continue */
} cli;

/* Set before the options are parsed: a caller that passes --json reads
 * JSON Lines, about a usage error too, wherever --json stands. */
static bool g_json;
static FILE *g_out; /* agentd's own stdout (see keep_stdout); NULL until then */

static int usage_error(const char *fmt, const char *arg)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, arg);
    ad_events *e = g_json ? ad_events_new() : NULL;
    ad_sink *js = e ? ad_jsonl_sink_new(g_out ? g_out : stdout, stderr) : NULL;
    if (js) {
        ad_events_add(e, js);
        ad_events_fail(e, msg);
        ad_events_free(e);
    } else {
        ad_events_free(e);
        fprintf(stderr, "agentd: %s\n", msg);
    }
    fprintf(stderr, "Try 'agentd --help'.\n");
    return EXIT_USAGE;
}

/* Reports a failure outside the run (ad_events_fail) and returns code. */
static int fail(ad_events *ev, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ad_events *ev, int code, const char *fmt, ...)
{
    ad_buf msg = AD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = ad_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    ad_events_fail(ev, rc == AD_OK && msg.data ? msg.data : "out of memory");
    ad_buf_free(&msg);
    return code;
}

/*
 * agentd's own output goes to the real stdout, kept on a private
 * descriptor; fd 1 then points at stderr, before any plugin is loaded. So
 * whatever a plugin (or a program it starts) writes to its stdout lands on
 * stderr and can never corrupt the answer or a --json stream. Returns the
 * stream for agentd's output (stdout itself when there is no stdout).
 */
static FILE *keep_stdout(void)
{
    fflush(stdout);
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return stdout; /* fd 1 is closed: nothing to keep apart */
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return stdout;
    }
    if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            close(null);
        }
    }
    /* A plugin's printf lines then show up as they are written. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    return f;
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, cli *o)
{
    enum {
        OPT_JSON = 256,
        OPT_BASE_URL,
        OPT_MAX_STEPS,
        OPT_CHECK,
        OPT_INIT,
        OPT_YES,
        OPT_RECORD,
        OPT_REPLAY,
        OPT_REPL,
        OPT_SESSION,
        OPT_CONTINUE
    };
    static const struct option longs[] = {
        {"config", required_argument, NULL, 'c'},
        {"prompt", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, OPT_JSON},
        {"model", required_argument, NULL, 'm'},
        {"base-url", required_argument, NULL, OPT_BASE_URL},
        {"max-steps", required_argument, NULL, OPT_MAX_STEPS},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"init", no_argument, NULL, OPT_INIT},
        {"quiet", no_argument, NULL, 'q'},
        {"yes", no_argument, NULL, OPT_YES},
        {"repl", no_argument, NULL, OPT_REPL},
        {"record", required_argument, NULL, OPT_RECORD},
        {"replay", required_argument, NULL, OPT_REPLAY},
        {"session", required_argument, NULL, OPT_SESSION},
        {"continue", no_argument, NULL, OPT_CONTINUE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:p:m:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'p':
            o->prompt = optarg;
            break;
        case 'm':
            if (!optarg[0])
                return usage_error("%s", "--model needs a model name, not an empty string");
            o->model = optarg;
            break;
        case 'q':
            o->quiet = true;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_BASE_URL:
            o->base_url = optarg;
            break;
        case OPT_MAX_STEPS: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > 100000)
                return usage_error("--max-steps wants a number from 1 to 100000, not '%s'", optarg);
            o->max_steps = (int)v;
            break;
        }
        case OPT_CHECK:
            o->check_config = true;
            break;
        case OPT_INIT:
            o->init = true;
            break;
        case OPT_YES:
            o->yes = true;
            break;
        case OPT_REPL:
            o->repl = true;
            break;
        case OPT_RECORD:
            o->record = optarg;
            break;
        case OPT_REPLAY:
            o->replay = optarg;
            break;
        case OPT_SESSION:
            o->session = optarg;
            break;
        case OPT_CONTINUE:
            o->cont = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf("agentd %s (plugin ABI %d.%d)\n", AGENTD_VERSION, AGENTD_PLUGIN_ABI_MAJOR,
                   AGENTD_PLUGIN_ABI_MINOR);
            return EXIT_OK;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        /* `agentd --check-config FILE`, `agentd --init FILE` */
        if ((o->check_config || o->init) && !o->config && optind + 1 == argc)
            o->config = argv[optind];
        else
            return usage_error("unexpected argument '%s' (the prompt goes after -p)", argv[optind]);
    }
    /* An empty prompt is refused like an empty standard input: the model
     * would only be asked to answer nothing. */
    if (o->prompt && blank(o->prompt))
        return usage_error("%s", "the prompt given with -p is empty");
    if (o->session && o->cont)
        return usage_error("%s", "--session and --continue cannot be used together");
    if (o->record && o->replay) {
        return usage_error("%s", "--record and --replay cannot be used together");
    }
    return -1;
}

/* The API key is in this process's memory from now on: no core file may
 * carry it away, and other processes of the same user may not read our
 * memory (ptrace, /proc/PID/mem). Tool workers are separate programs
 * (exec resets this) and never get the key. */
static void no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* Removes the variable name from the environment, its value zeroed first:
 * unsetenv() only unlinks the string, which stays readable in the
 * process's memory and in /proc/PID/environ (the initial environment). */
static void drop_env(const char *name)
{
    char *v = getenv(name);
    if (v) {
        volatile char *p = v;
        while (*p)
            *p++ = '\0';
    }
    unsetenv(name);
}

/* The config path to use, or NULL with a message reported. Caller frees. */
static char *find_config(ad_events *ev, const char *given)
{
    char *tried = NULL;
    char *path = ad_config_find(given, &tried);
    if (!path)
        fail(ev, EXIT_USAGE,
             "no config file: give --config FILE, set AGENTD_CONFIG, or create ./agent.toml%s%s "
             "(agentd --init%s writes a starter config%s)",
             tried ? " or " : "", tried ? tried : "", tried ? "" : " FILE", tried ? " there" : "");
    free(tried);
    return path;
}

/* `agentd --init [FILE]`: FILE, else the user's config file. */
static int init_config(ad_events *ev, const char *given)
{
    char err[4096];
    char *path = given ? ad_strdup(given) : ad_config_user_path();
    if (!path)
        return fail(ev, EXIT_USAGE, "--init: neither XDG_CONFIG_HOME nor HOME is set; name the "
                                    "file: agentd --init FILE");
    /* Only the default place is created: a FILE in a folder that does not
     * exist is more likely a typo than a wish. */
    int rc = ad_init_write(path, !given, err, sizeof err);
    if (rc == AD_OK)
        fprintf(stderr, "agentd: wrote a starter config to %s (mode 0600)\n"
                        "Next: export OPENROUTER_API_KEY=... (or edit the file for another "
                        "provider), then\n  agentd%s%s -p \"Add and multiply the number 2 and 3\"\n",
                path, given ? " --config " : "", given ? given : "");
    free(path);
    if (rc == AD_OK)
        return EXIT_OK;
    return fail(ev, rc == AD_EINVAL ? EXIT_USAGE : EXIT_RUNTIME, "--init: %s", err);
}

static const char *plugin_config(void *ud, const char *stem)
{
    const ad_config *c = ud;
    json_object *v;
    if (!c->plugin_config || !json_object_object_get_ex(c->plugin_config, stem, &v))
        return NULL;
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Checks the tool and plugin names the config uses against what was
 * loaded (see ad_config_check_names). Returns 0, AD_EINVAL with err set, or
 * AD_ENOMEM. */
static int check_names(const ad_config *cfg, const ad_tool_host *tools, char *err, size_t errlen)
{
    size_t nt = ad_tool_host_count(tools), np = ad_tool_host_provider_count(tools);
    const char **names = calloc(nt + 1, sizeof *names);
    char **stems = calloc(np + 1, sizeof *stems);
    int rc = names && stems ? AD_OK : AD_ENOMEM;
    for (size_t i = 0; rc == AD_OK && i < nt; i++)
        names[i] = ad_tool_host_at(tools, i)->name;
    size_t ns = 0;
    for (size_t i = 0; rc == AD_OK && i < np; i++) {
        /* Every provider so far is a plugin file; its origin is "STEM.so". */
        const char *file = ad_tool_host_provider_at(tools, i)->origin;
        size_t fl = file ? strlen(file) : 0;
        if (fl <= 3 || strcmp(file + fl - 3, ".so") != 0)
            continue;
        if (!(stems[ns++] = ad_strndup(file, fl - 3))) /* without ".so" */
            rc = AD_ENOMEM;
    }
    if (rc == AD_OK)
        rc = ad_config_check_names(cfg, names, nt, (const char *const *)stems, ns, err, errlen);
    for (size_t i = 0; stems && i < ns; i++)
        free(stems[i]);
    free(stems);
    free(names);
    return rc;
}

/* Whether any tool may run outside this process: only then are plugins
 * described (from the tool cache or by a worker) before they are loaded. */
static bool isolates_any(const ad_config *cfg)
{
    bool any = cfg->isolation != AD_ISOLATION_NONE;
    for (size_t i = 0; i < cfg->ntools; i++)
        any |= cfg->tools[i].isolation > AD_ISOLATION_NONE;
    return any;
}

static int tool_mode(void *ud, const char *name)
{
    double timeout;
    bool confirm;
    int iso;
    ad_config_tool(ud, name, &timeout, &confirm, &iso);
    return iso; /* AD_ISOLATION_* are the AD_TOOL_* modes */
}

/* Log lines of plugins, and what worker processes write, on stderr as
 * "agentd: plugin FILE: ..." (tools/host.h), the key redacted: the one the
 * config holds when the line is written. */
static void on_tool_log(void *ud, const ad_tool_log_line *l)
{
    const ad_config *cfg = ud;
    char line[AD_TOOL_LOG_LINE_MAX + 512];
    size_t n = ad_tool_log_format(line, sizeof line, l, cfg->api_key);
    /* One write per line: lines of concurrent calls never interleave. */
    fwrite(line, 1, n, stderr);
}

/* The plugin log levels shown: up to INFO (WARN for -q); ERROR and WARN
 * always; everything when AGENTD_DEBUG is set to anything but "" or "0". */
static int tool_log_level(bool quiet)
{
    const char *debug = getenv("AGENTD_DEBUG");
    if (debug && debug[0] && strcmp(debug, "0") != 0)
        return AGENTD_LOG_DEBUG;
    return quiet ? AGENTD_LOG_WARN : AGENTD_LOG_INFO;
}

/* Loads the plugins of [plugins] dir and checks that every tool and plugin
 * the config names ([tools.NAME], agent.confirm_tools,
 * [plugins.config.STEM]) is loaded: a misspelt name would otherwise go
 * unnoticed (for confirm_tools, the tool would run without asking).
 * Returns -1 with *out set, or an exit code with a message printed (*out
 * may then still need ad_tool_host_free). */
static int load_tools(const ad_config *cfg, ad_events *ev, bool quiet, bool mcp, bool refresh,
                      uv_loop_t *loop, ad_tool_host **out)
{
    char err[4096];
    ad_tool_host *tools = *out = ad_tool_host_new(loop);
    if (!tools)
        return fail(ev, EXIT_RUNTIME, "out of memory");
    ad_tool_host_set_log(tools, on_tool_log, (void *)cfg, tool_log_level(quiet));
    ad_tool_host_set_result_max(tools, (size_t)cfg->max_tool_result_bytes);
    ad_isolate_opts io = {NULL, cfg->api_key_env, cfg->tool_timeout_s,
                          (const char *const *)cfg->plugins_pass_env};
    /* A plugin none of whose tools runs in process never runs here, not
     * even its init: its tools come from the tool cache, or from a worker
     * that describes it (docs/plugins.md, "Where tools run"). */
    char *cache = ad_tcache_default_dir();
    ad_plugin_opts po = {.config = plugin_config,
                         .config_ud = (void *)cfg,
                         .mode = isolates_any(cfg) ? tool_mode : NULL,
                         .mode_ud = (void *)cfg,
                         .isolate = &io,
                         .cache_dir = cache,
                         .refresh_cache = refresh};
    int lrc = cfg->plugins_dir ? ad_plugin_load_dir(tools, cfg->plugins_dir, &po, err, sizeof err)
                               : AD_OK;
    free(cache);
    if (lrc != AD_OK) {
        char where[512];
        return fail(ev, EXIT_USAGE, "%s%s",
                    ad_config_where(cfg, "plugins", "dir", where, sizeof where), err);
    }
    /* The MCP servers come up next to the plugins (a required one that
     * cannot is a config error). */
    int rc = mcp ? ad_mcp_provider_add(tools, cfg, NULL, err, sizeof err) : AD_OK;
    if (rc != AD_OK)
        return fail(ev, rc == AD_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE, "%s", err);
    rc = check_names(cfg, tools, err, sizeof err);
    if (rc == AD_OK)
        return -1;
    if (rc == AD_ENOMEM)
        return fail(ev, EXIT_RUNTIME, "out of memory");
    return fail(ev, EXIT_USAGE, "%s", err);
}

/* --check-config: what the effective settings do not show. */
static void print_loaded(const ad_config *cfg, const ad_tool_host *tools, FILE *out)
{
    size_t n = ad_tool_host_count(tools);
    fprintf(out, "\n# tools:%s\n", n ? "" : " none");
    for (size_t i = 0; i < n; i++) {
        const ad_tool_desc *t = ad_tool_host_at(tools, i);
        double timeout;
        bool confirm;
        int iso;
        ad_config_tool(cfg, t->name, &timeout, &confirm, &iso);
        fprintf(out, "#   %s (%s, %s%s)\n", t->name, t->origin, ad_isolation_name(iso),
                iso != AD_ISOLATION_NONE && ad_plugin_in_process(ad_tool_host_owner(tools, i))
                    ? "; the plugin is loaded into agentd too"
                    : "");
    }
    char *db = cfg->sessions_path ? ad_strdup(cfg->sessions_path) : ad_session_default_path();
    if (!cfg->sessions_enabled)
        fprintf(out, "# sessions: not stored ([sessions] enabled = false)\n");
    else
        fprintf(out, "# sessions: %s\n", db ? db : "(no place: neither XDG_STATE_HOME nor HOME is set)");
    free(db);
}

typedef struct run_state {
    int status;
    bool done;
    ad_agent *agent;
    uv_signal_t sigint;
} run_state;

static void on_run_done(void *ud, int status)
{
    run_state *st = ud;
    st->status = status;
    st->done = true;
    uv_signal_stop(&st->sigint);
    /* Tools that timed out may still run on worker threads: do not wait. */
    uv_stop(st->sigint.loop);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    (void)signum;
    run_state *st = s->data;
    ad_agent_cancel(st->agent);
}

/* Stores the run's conversation (see session.h): the store sink on ev,
 * *store. Returns -1 to go on, or an exit code. An unnamed run whose store
 * cannot be opened goes on unstored. */
static int attach_session(const cli *o, const ad_config *cfg, uv_loop_t *loop, ad_agent *agent,
                          ad_events *ev, ad_sink **store)
{
    char err[4096];
    ad_session *sess = NULL;
    int rc = ad_session_attach(&sess, cfg, o->session, o->cont, agent, err, sizeof err);
    if (rc == AD_OK && sess) {
        if (o->cont && !o->json && !o->quiet)
            fprintf(stderr, "agentd: continuing session %s (%zu messages)\n",
                    ad_session_name(sess), ad_conv_count(ad_agent_conv(agent)));
        *store = ad_store_sink_new(loop, sess, err, sizeof err);
        if (*store) {
            ad_events_add(ev, *store);
            return -1;
        }
        ad_session_close(sess);
        rc = AD_ERR;
    }
    if (rc == AD_OK)
        return -1;
    if (!o->session && !o->cont) {
        fprintf(stderr, "agentd: warning: this run is not stored: %s\n", err);
        return -1;
    }
    return fail(ev, rc == AD_EINVAL || rc == AD_SESSION_UNKNOWN ? EXIT_USAGE : EXIT_RUNTIME, "%s",
                err);
}

/* Why agentd's output (out, see keep_stdout) could not be written: 0 when
 * all of it was, -1 when a write failed for a reason no longer known.
 * ferror() remembers that a write failed but not its errno, and a stream
 * whose failed bytes were dropped flushes "fine" afterwards; a pipe whose
 * reader has gone is still recognised by poll() (POLLERR on the write end). */
static int output_error(FILE *out)
{
    errno = 0;
    if (fflush(out) == 0 && !ferror(out))
        return 0;
    if (errno)
        return errno;
    struct pollfd p = {.fd = fileno(out), .events = POLLOUT};
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
        return EPIPE;
    return -1;
}

/* An answer that could not be written (a full disk, a closed pipe) is a
 * failed run: exit 1 instead of 0 or 3 (a usage error, a runtime failure
 * or an interruption keeps its own code). */
static int check_output(FILE *out, int exit_code)
{
    int e = output_error(out);
    if (!e)
        return exit_code;
    fprintf(stderr, "agentd: error: cannot write the output: %s\n",
            e > 0 ? strerror(e) : "a write to standard output failed");
    return exit_code == EXIT_OK || exit_code == EXIT_MAX_STEPS ? EXIT_RUNTIME : exit_code;
}

/* agentd serve loads its tools as a run does, MCP servers included. */
static int serve_load_tools(const ad_config *cfg, ad_events *ev, bool quiet, uv_loop_t *loop,
                            ad_tool_host **out)
{
    return load_tools(cfg, ev, quiet, true, false, loop, out);
}

/* agentd serve keeps the key as a run does. */
static void protect_key(const ad_config *cfg)
{
    no_core_dumps();
    if (cfg->api_key_env)
        drop_env(cfg->api_key_env);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    /* A worker process of an isolated tool call (isolate.h): nothing else. */
    if (argc > 1 && strcmp(argv[1], AD_ISOLATE_WORKER_FLAG) == 0)
        return ad_isolate_worker_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "sessions") == 0)
        return ad_session_cli(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "submit") == 0 || strcmp(argv[1], "jobs") == 0))
        return ad_jobs_cli(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "serve") == 0) {
        static const ad_serve_hooks hooks = {serve_load_tools, protect_key};
        return ad_serve_cli(argc - 1, argv + 1, &hooks);
    }
    if (ad_mcp_cli_wanted(argc, argv))
        return ad_mcp_cli(argc, argv);
    /* agentd worker: its own options out, a run's (config, model) left. */
    ad_worker_cli wk;
    int wrc = ad_worker_cli_args(&wk, &argc, argv);
    if (wrc >= 0)
        return wrc;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        g_json |= strcmp(argv[i], "--json") == 0;
    /* Tool calls run on libuv's worker threads, and a call that timed out
     * keeps its thread until its plugin returns. libuv's 4 would be held by
     * four hung calls; 16 leave room (libuv reads this when its pool first
     * starts; a value the user set stays). */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    /* A closed stdout (`agentd -p ... | head -c 10`) is a write error to
     * report, with recordings still saved (check_output), not a death by
     * signal. Tool workers and plugin programs get the default back
     * (proc.c spawns with default dispositions). */
    signal(SIGPIPE, SIG_IGN);
    cli o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    /* From here on every failure goes through ev: in --json mode the
     * stream then always ends with an error event. */
    FILE *out = g_out = keep_stdout();
    /* Text mode to a pipe or file flushes at each step's end: a large
     * buffer turns a long answer's thousands of deltas into a few writes. */
    if (!o.json && !isatty(fileno(out)))
        setvbuf(out, NULL, _IOFBF, 64u << 10);
    ad_events *ev = ad_events_new();
    ad_sink *outsink = !ev ? NULL : o.json ? ad_jsonl_sink_new(out, stderr)
                                           : ad_text_sink_new(out, stderr, o.quiet);
    if (!outsink) {
        ad_events_free(ev);
        fprintf(stderr, "agentd: out of memory\n");
        return EXIT_RUNTIME;
    }
    ad_events_add(ev, outsink);
    int exit_code = EXIT_USAGE;
    ad_config cfg;
    ad_config_init(&cfg);
    ad_tool_host *tools = NULL;
    uv_loop_t loop;
    bool have_loop = false, curl_ready = false;
    ad_cassette *cassette = NULL;
    ad_sink *store = NULL;
    char *stdin_prompt = NULL;
    char err[4096];

    if (o.init) {
        exit_code = init_config(ev, o.config);
        goto out_tools;
    }
    char *path = find_config(ev, o.config);
    if (!path)
        goto out_tools;
    rc = ad_config_load(&cfg, path, err, sizeof err);
    free(path);
    if (rc != AD_OK) {
        fail(ev, EXIT_USAGE, "%s", err);
        goto out_tools;
    }
#ifdef AGENTD_PLUGIN_DIR
    /* The installed agentd (make install): a config that names no folder
     * gets the plugins installed with it. */
    struct stat pst;
    if (!cfg.plugins_dir && stat(AGENTD_PLUGIN_DIR, &pst) == 0 && S_ISDIR(pst.st_mode))
        cfg.plugins_dir = ad_strdup(AGENTD_PLUGIN_DIR);
#endif
    if (o.model) {
        free(cfg.model);
        cfg.model = ad_strdup(o.model);
        ad_config_unlocate(&cfg, "provider", "model");
    }
    if (o.base_url) {
        free(cfg.base_url);
        cfg.base_url = ad_strdup(o.base_url);
        ad_config_unlocate(&cfg, "provider", "base_url");
    }
    if (o.max_steps)
        cfg.max_steps = o.max_steps;
    /* The tool host lives on the loop (its deadlines, its plugins' calls). */
    if (uv_loop_init(&loop) != 0) {
        fail(ev, EXIT_RUNTIME, "cannot initialise the event loop");
        goto out_tools;
    }
    have_loop = true;
    if (o.check_config) {
        /* The plugins are loaded too: a config is valid when a run with it
         * would start. */
        rc = load_tools(&cfg, ev, o.quiet, false, true, &loop, &tools);
        if (rc >= 0) {
            exit_code = rc;
        } else if (ad_config_read_key(&cfg, err, sizeof err) != AD_OK) {
            exit_code = fail(ev, EXIT_USAGE, "%s", err);
        } else {
            ad_config_print(&cfg, out);
            print_loaded(&cfg, tools, out);
            exit_code = EXIT_OK;
        }
        goto out_tools;
    }
    /* A replay sends nothing anywhere: it needs no key. */
    if (ad_config_read_key(&cfg, err, sizeof err) != AD_OK && !o.replay) {
        fail(ev, EXIT_USAGE, "%s", err);
        goto out_tools;
    }
    if (cfg.api_key) {
        no_core_dumps();
        /* The key lives in cfg from here on; plugins, and any program a
         * plugin starts, do not inherit it through the environment. */
        if (cfg.api_key_env)
            drop_env(cfg.api_key_env);
    }
    if (o.replay && ad_cassette_load(&cassette, o.replay, err, sizeof err) != AD_OK) {
        fail(ev, EXIT_USAGE, "%s", err);
        goto out_tools;
    }
    /* Before any request: a recording that cannot be saved is found now,
     * not after the tokens were spent. */
    if (o.record && ad_cassette_check_writable(o.record, err, sizeof err) != AD_OK) {
        fail(ev, EXIT_USAGE, "--record: %s", err);
        goto out_tools;
    }
    if (o.record && !(cassette = ad_cassette_new())) {
        exit_code = fail(ev, EXIT_RUNTIME, "out of memory");
        goto out_tools;
    }

    const char *prompt = o.prompt;
    /* A terminal on stdin and no prompt: a conversation. */
    bool repl = !wk.on && (o.repl || (!prompt && isatty(STDIN_FILENO)));
    if (repl && o.json) {
        usage_error("%s", "--json needs a prompt (-p or piped), not a conversation");
        goto out_tools;
    }
    if (!prompt && !repl && !wk.on) {
        stdin_prompt = ad_cli_read_prompt();
        if (!stdin_prompt || blank(stdin_prompt)) {
            usage_error("%s", stdin_prompt ? "the prompt read from standard input is empty"
                                           : "the prompt on standard input is larger than 64 MiB");
            goto out_tools;
        }
        prompt = stdin_prompt;
    }

    exit_code = EXIT_RUNTIME;
    /* Before the tools: MCP servers over Streamable HTTP use libcurl. */
    if (ad_lazy_curl(err, sizeof err) != AD_OK) {
        fail(ev, EXIT_RUNTIME, "%s", err);
        goto out_tools;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fail(ev, EXIT_RUNTIME, "cannot initialise libcurl");
        goto out_tools;
    }
    curl_ready = true;
    rc = load_tools(&cfg, ev, o.quiet, true, false, &loop, &tools);
    if (rc >= 0) {
        exit_code = rc;
        goto out_tools;
    }

    ad_events_set_secret(ev, cfg.api_key);
    /* The transport: the network, or the cassette of --replay; with
     * --record, the recording shim around it. */
    ad_transport *replay = o.replay ? ad_replay_new(&loop, cassette,
                                                    cfg.unique_tool_call_ids
                                                        ? AD_REPLAY_IDS_BIJECTION
                                                        : AD_REPLAY_IDS_EXACT)
                                    : NULL;
    ad_transport *transport = o.replay ? replay : ad_curl_new(&loop);
    if (transport && o.record) {
        ad_transport *rec = ad_record_new(transport, cassette, cfg.api_key);
        if (!rec)
            ad_transport_close(transport);
        transport = rec;
    }
    if (transport && wk.on) {
        /* Each job gets its own agent (worker/run.h). */
        exit_code = ad_worker_cli_run(&wk, &loop, transport, &cfg, tools);
        goto out_loop;
    }
    ad_agent *agent = NULL;
    if (transport) {
        ad_agent_opts ao = {&loop, transport, &cfg, tools, ev};
        agent = ad_agent_new(&ao);
    }
    if (agent && o.replay) {
        /* The recording's generated tool-call ids come back the same. */
        const char *pre = ad_cassette_id_prefix(cassette);
        if (pre && ad_agent_set_id_prefix(agent, pre) != AD_OK)
            fprintf(stderr, "agentd: warning: %s: ignoring the invalid agentd_id_prefix\n", o.replay);
    } else if (agent && o.record) {
        ad_cassette_set_id_prefix(cassette, ad_agent_id_prefix(agent));
    }
    /* Conversations are stored: REPL sessions, --session/--continue runs,
     * and plain one-shot runs when [sessions] one_shot = true. A scripted
     * `agentd -p` is not recorded behind its caller's back, and does not
     * pay SQLite's ~1 ms and ~1 MiB per run (docs/sessions.md). */
    bool stored = repl || o.session || o.cont || cfg.sessions_one_shot;
    int sess_exit = agent && stored ? attach_session(&o, &cfg, &loop, agent, ev, &store) : -1;
    if (sess_exit >= 0) {
        exit_code = sess_exit;
        ad_agent_free(agent);
        goto out_loop;
    }
    if (!agent) {
        fail(ev, EXIT_RUNTIME, "out of memory");
    } else if (repl) {
        /* The REPL shows the conversation its own way (repl_view.h). */
        ad_events_remove(ev, outsink);
        ad_repl_opts ro = {&loop, agent, &cfg, tools, ev, prompt, o.quiet, o.yes, out};
        exit_code = ad_repl_run(&ro);
        ad_events_add(ev, outsink);
        ad_events_close_sink(ev, store); /* everything is on disk */
        store = NULL;
        if (o.record && ad_cassette_save(cassette, o.record, err, sizeof err) != AD_OK)
            exit_code = fail(ev, EXIT_RUNTIME, "%s", err);
        if (ad_tool_host_busy(tools)) {
            exit_code = check_output(out, exit_code);
            fflush(stderr);
            _exit(exit_code);
        }
        ad_agent_free(agent);
    } else {
        run_state st = {.status = AD_RUN_FAILED, .agent = agent};
        uv_signal_init(&loop, &st.sigint);
        st.sigint.data = &st;
        uv_signal_start(&st.sigint, on_sigint, SIGINT);
        /* No sink answers approvals: such calls are denied, or run with --yes. */
        ad_agent_set_yes(agent, o.yes);
        ad_agent_run(agent, prompt, on_run_done, &st);
        uv_run(&loop, UV_RUN_DEFAULT);
        /* The run's last events may still wait (the store writes its answer). */
        while (st.done && ad_events_paused(ev) && uv_run(&loop, UV_RUN_ONCE)) {
        }
        if (!st.done) {
            /* The loop ran dry with the run still open: a bug, not a hang. */
            ad_events_error(ev, "internal error: the event loop stopped before the run ended");
            st.status = AD_RUN_FAILED;
        }
        uv_close((uv_handle_t *)&st.sigint, NULL);
        ad_events_close_sink(ev, store); /* everything is on disk */
        store = NULL;
        switch (st.status) {
        case AD_RUN_OK:
            exit_code = EXIT_OK;
            break;
        case AD_RUN_MAX_STEPS:
            exit_code = EXIT_MAX_STEPS;
            break;
        case AD_RUN_CANCELLED:
            ad_events_error(ev, "interrupted");
            exit_code = EXIT_INTERRUPTED;
            break;
        default:
            exit_code = EXIT_RUNTIME;
        }
        /* A replay mismatch was reported as the run's error (on stderr in
         * both modes). A run that ended well but left recorded exchanges
         * unused took another path than the recording: that fails too. */
        if (o.replay && !ad_replay_error(replay) && exit_code == EXIT_OK &&
                   ad_replay_used(replay) < ad_cassette_count(cassette))
            exit_code = fail(ev, EXIT_RUNTIME,
                             "replay: the run made %zu request(s) but %s holds %zu interactions",
                             ad_replay_used(replay), o.replay, ad_cassette_count(cassette));
        /* The recording shim redacted every exchange as it recorded it. */
        if (o.record && ad_cassette_save(cassette, o.record, err, sizeof err) != AD_OK)
            exit_code = fail(ev, exit_code == EXIT_OK ? EXIT_RUNTIME : exit_code, "%s", err);
        if (ad_tool_host_busy(tools)) {
            /* A tool that timed out still runs on a worker thread and uses
             * its plugin: leave without unloading anything. */
            exit_code = check_output(out, exit_code);
            fflush(stderr);
            _exit(exit_code);
        }
        ad_agent_free(agent);
    }
out_loop:
    ad_events_close_sink(ev, store);
    ad_transport_close(transport);
    ad_tool_host_free(tools);
    tools = NULL;
    /* Idle plugin workers saw the end of their input: their destroy()
     * calls get a moment, and they are reaped (so their time counts as
     * agentd's). */
    ad_plugin_worker_reap(WORKER_EXIT_WAIT_S);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "agentd: warning: event loop closed with open handles\n");
    have_loop = false;
    curl_global_cleanup();
    curl_ready = false;
out_tools:
    ad_tool_host_free(tools);
    ad_plugin_worker_reap(WORKER_EXIT_WAIT_S);
    if (have_loop) {
        /* MCP servers end here (stdio: they exit; HTTP: DELETE). */
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    if (curl_ready)
        curl_global_cleanup();
    ad_cassette_free(cassette);
    free(stdin_prompt);
    ad_config_free(&cfg);
    ad_events_free(ev);
    return check_output(out, exit_code);
}

/*
 * repl.c -- the interactive session (see repl.h).
 *
 * Two phases alternate, never overlapping:
 *
 *   read   libedit's readline() blocks on the terminal; the loop does not
 *          run. Ctrl-C wakes the read through the signal pipe (below),
 *          readline() returns NULL and the recorded press tells it apart
 *          from Ctrl-D.
 *   turn   one ad_agent_run; uv_run until its done callback and until the
 *          hub has delivered every event. A uv_poll_t watches the signal
 *          pipe and cancels the run. Output goes through the view's sink
 *          (repl_view.h) on the conversation's hub: the answer, one compact
 *          line per tool call, a spinner, and the approval prompt.
 *
 * SIGINT has one handler of ours from the start of the session to its end:
 * it records the press and writes a byte to the signal pipe, and which
 * phase reads the pipe decides what the press means. The disposition is
 * never switched between phases, so no Ctrl-C can meet the default action
 * (which would kill the session) at a phase change. libedit installs its
 * own handler while readline() runs and puts ours back before passing the
 * signal on.
 *
 * stdin is only ever read with blocking read(2) calls (libedit and the
 * approval prompt), so it is never left non-blocking; libedit restores the
 * terminal mode when readline() returns and the approval prompt restores
 * what it changed before it returns.
 *
 * Tool approval is the view's: it asks inside the approval event, on the
 * loop thread, and a Ctrl-C there (a byte: ISIG is off) answers "cancel",
 * so the agent cancels the run before any call of the step starts.
 *
 * /reset, /system and /load build a new conversation and hand it to
 * ad_agent_load_messages between turns.
 */
#define _GNU_SOURCE /* pipe2 */
#include "cli/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include "base/lazy_edit.h"

#include "base/buf.h"
#include "base/json.h"
#include "base/text.h"
#include "cli/repl_view.h"
#include "core/conv.h"
#include "mcp/provider.h"

#define MAX_LOAD_BYTES (64u << 20)
#define HISTORY_MAX 1000

typedef struct repl {
    const ad_repl_opts *o;
    ad_agent *agent;
    ad_repl_view *v; /* the renderer and the approval prompt */
    FILE *out, *err;
    bool tty_in, tty_err, color, utf8;
    char *model;        /* owned: the model requests use now */
    char *history_path; /* owned or NULL */

    /* the turn */
    bool running;
    int status;
    uv_poll_t sigwatch; /* the signal pipe, during a turn */
} repl;

/* ---- small output helpers --------------------------------------------- */

static const char *c_(const repl *r, const char *code)
{
    return r->color ? code : "";
}
#define DIM(r) c_(r, "\033[2m")
#define BOLD(r) c_(r, "\033[1m")
#define OFF(r) c_(r, "\033[0m")

/* A dim line on stderr (hints, notices), an error line. */
#define note(r, ...) ad_repl_view_note((r)->v, __VA_ARGS__)
#define err_line(r, ...) ad_repl_view_error((r)->v, __VA_ARGS__)

static void put_shown(ad_buf *b, const char *s, size_t len, size_t max, bool utf8)
{
    ad_repl_put_shown(b, s, len, max, utf8);
}

/* ---- a turn ------------------------------------------------------------- */

static void on_done(void *ud, int status)
{
    repl *r = ud;
    r->status = status;
    r->running = false;
    uv_stop(r->o->loop);
}

static volatile sig_atomic_t g_sigint;
static bool g_typed; /* a key other than Enter was read since the prompt */
/* Written by the SIGINT handler: wakes the line reader (a press that lands
 * just before read(2) starts must not be lost) and, during a turn, the
 * loop. Both ends non-blocking; stdin never is. */
static int g_sigpipe[2] = {-1, -1};
static struct sigaction g_old_sigint; /* the disposition the session found */

static void on_sigint(int signum)
{
    (void)signum;
    int saved = errno;
    g_sigint = 1;
    if (g_sigpipe[1] >= 0) {
        ssize_t w = write(g_sigpipe[1], "", 1);
        (void)w;
    }
    errno = saved;
}

static void sigpipe_drain(void)
{
    char b[64];
    while (g_sigpipe[0] >= 0 && read(g_sigpipe[0], b, sizeof b) > 0) {
    }
}

/* Ctrl-C during a turn: cancels it. */
static void on_sigpipe(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    repl *r = h->data;
    sigpipe_drain();
    if (!r->running)
        return;
    ad_repl_view_cancel(r->v);
    ad_agent_cancel(r->agent);
}

/* Installed once for the whole session. SA_RESTART: the pipe, not EINTR,
 * wakes the readers, and tool plugins running on worker threads when the
 * signal lands there are not disturbed. */
static void session_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_old_sigint);
}

static void run_turn(repl *r, const char *prompt)
{
    r->running = true;
    r->status = AD_RUN_FAILED;
    uv_poll_start(&r->sigwatch, UV_READABLE, on_sigpipe);
    ad_repl_view_turn_begin(r->v);
    if (ad_agent_run(r->agent, prompt, on_done, r) != AD_OK) {
        r->running = false;
        err_line(r, "cannot start the turn: the previous one is still running");
    } else {
        uv_run(r->o->loop, UV_RUN_DEFAULT);
        if (r->running) {
            /* The loop ran dry with the run open: a bug; do not hang. */
            err_line(r, "internal error: the event loop stopped before the turn ended");
            ad_agent_cancel(r->agent);
            r->running = false;
        }
    }
    /* The turn's last events may still wait (the store writes its answer). */
    while (ad_events_paused(r->o->events) && uv_run(r->o->loop, UV_RUN_ONCE)) {
    }
    uv_poll_stop(&r->sigwatch);
    ad_repl_view_turn_end(r->v, r->status);
}

/* ---- conversation checks, save and load ---------------------------------- */

static int save_conversation(repl *r, const char *path, char *err, size_t errlen)
{
    json_object *msgs = ad_agent_messages(r->agent);
    json_object *o = msgs ? json_object_new_object() : NULL;
    if (!o) {
        ad_errf(err, errlen, "out of memory");
        return AD_ENOMEM;
    }
    json_object_object_add(o, "model", json_object_new_string(r->model));
    json_object_object_add(o, "messages", json_object_get(msgs));
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE,
        &len);
    /* Like the session store, the file never holds the API key (a user may
     * have pasted it, or a server echoed it). */
    size_t rlen = 0;
    char *red = s ? ad_redact(s, len, r->o->cfg->api_key, &rlen) : NULL;
    if (red) {
        s = red;
        len = rlen;
    }
    int rc = AD_OK;
    /* A conversation can hold anything the user typed: owner only, also
     * when the file already existed with a wider mode. */
    int fd = s ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd >= 0)
        fchmod(fd, 0600);
    if (!s) {
        ad_errf(err, errlen, "out of memory");
        rc = AD_ENOMEM;
    } else if (fd < 0) {
        ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        rc = AD_ERR;
    } else {
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, s + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
                rc = AD_ERR;
                break;
            }
            off += (size_t)w;
        }
        if (rc == AD_OK && (write(fd, "\n", 1) != 1 || fsync(fd) != 0)) {
            ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            rc = AD_ERR;
        }
        if (close(fd) != 0 && rc == AD_OK) {
            ad_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            rc = AD_ERR;
        }
    }
    free(red);
    json_object_put(o);
    return rc;
}

/* Reads a whole file of at most max bytes. */
static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    ad_buf b = AD_BUF_INIT;
    int rc = ad_read_file(path, max, &b);
    if (rc == AD_ETOOBIG)
        ad_errf(err, errlen, "%s is larger than %zu MiB", path, max >> 20);
    else if (rc == AD_EINVAL)
        ad_errf(err, errlen, "cannot open %s: not a regular file", path);
    else if (rc == AD_ERR)
        ad_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    else if (rc == AD_ENOMEM)
        ad_errf(err, errlen, "out of memory reading %s", path);
    if (rc != AD_OK) {
        ad_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return ad_buf_steal(&b);
}

/* "FILE:LINE:COL: what", for byte `at` of text, then the line it is on
 * (trimmed, quoted) when show_line. */
static void text_error(char *err, size_t errlen, const char *path, const char *text, size_t len,
                       size_t at, const char *what, bool show_line, bool utf8)
{
    size_t line = 1, lstart = 0;
    for (size_t i = 0; i < at && i < len; i++)
        if (text[i] == '\n') {
            line++;
            lstart = i + 1;
        }
    size_t start = lstart, end = lstart;
    while (end < len && text[end] != '\n')
        end++;
    while (start < end && strchr(" \t\r", text[start]))
        start++;
    while (end > start && strchr(" \t\r", text[end - 1]))
        end--;
    ad_buf shown = AD_BUF_INIT;
    if (show_line)
        put_shown(&shown, text + start, end - start, 60, utf8);
    ad_errf(err, errlen, "%s:%zu:%zu: %s%s%s%s", path, line, at - lstart + 1, what,
            shown.data ? " \"" : "", shown.data ? shown.data : "", shown.data ? "\"" : "");
    ad_buf_free(&shown);
}

static int load_conversation(repl *r, const char *path, size_t *count, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = read_file(path, MAX_LOAD_BYTES, &len, err, errlen);
    if (!text)
        return AD_ERR;
    size_t blank = strspn(text, " \t\r\n");
    json_tokener *tok = json_tokener_new();
    json_object *o = tok && blank < len ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    int rc = AD_OK;
    if (!tok) {
        ad_errf(err, errlen, "out of memory reading %s", path);
        rc = AD_ENOMEM;
    } else if (blank == len) {
        ad_errf(err, errlen, "%s is empty, not a conversation written by /save", path);
        rc = AD_EINVAL;
    } else if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        /* json-c's words ("null expected") need the place to make sense. */
        enum json_tokener_error je = json_tokener_get_error(tok);
        size_t at = json_tokener_get_parse_end(tok);
        char what[160];
        if (je == json_tokener_continue)
            snprintf(what, sizeof what, "the JSON ends before it is complete");
        else
            snprintf(what, sizeof what, "not JSON (json-c: %s) in", json_tokener_error_desc(je));
        text_error(err, errlen, path, text, len, je == json_tokener_continue ? len : at, what,
                   je != json_tokener_continue, r->utf8);
        rc = AD_EINVAL;
    } else {
        size_t used = json_tokener_get_parse_end(tok);
        while (used < len && strchr(" \t\r\n", text[used]))
            used++;
        if (used < len) {
            text_error(err, errlen, path, text, len, used,
                       "unexpected text after the JSON value:", true, r->utf8);
            rc = AD_EINVAL;
        }
    }
    json_object *msgs = NULL;
    const char *model = NULL;
    if (rc == AD_OK) {
        if (!json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "messages", &msgs)) {
            ad_errf(err, errlen, "%s: want an object with a \"messages\" array (as /save writes)",
                    path);
            rc = AD_EINVAL;
        } else if (ad_conv_check(msgs, err, errlen) != AD_OK) {
            char inner[1024];
            snprintf(inner, sizeof inner, "%s", err);
            ad_errf(err, errlen, "%s: %s", path, inner);
            rc = AD_EINVAL;
        } else {
            json_object *m;
            if (json_object_object_get_ex(o, "model", &m) && m) {
                if (!json_object_is_type(m, json_type_string) || !json_object_get_string(m)[0]) {
                    ad_errf(err, errlen, "%s: \"model\" is not a non-empty string", path);
                    rc = AD_EINVAL;
                } else {
                    model = json_object_get_string(m);
                }
            }
        }
    }
    if (rc == AD_OK && ad_agent_load_messages(r->agent, msgs) != AD_OK) {
        ad_errf(err, errlen, "out of memory loading %s", path);
        rc = AD_ENOMEM;
    }
    if (rc == AD_OK) {
        *count = json_object_array_length(msgs);
        if (model && ad_agent_set_model(r->agent, model) == AD_OK) {
            char *m = ad_strdup(model);
            if (m) {
                free(r->model);
                r->model = m;
            }
        }
    }
    json_object_put(o);
    if (tok)
        json_tokener_free(tok);
    free(text);
    return rc;
}

/* ---- slash commands ------------------------------------------------------- */

static const char *const commands[][2] = {
    {"/help", "this list"},
    {"/tools", "the tools the model can call"},
    {"/mcp", "the MCP servers and their states"},
    {"/model", "[NAME]  show or change the model"},
    {"/system", "[TEXT]  show or replace the system prompt"},
    {"/reset", "start a new conversation (the system prompt stays)"},
    {"/save", "FILE  write the conversation as JSON"},
    {"/load", "FILE  continue a conversation written by /save"},
    {"/usage", "tokens and cost of this conversation"},
    {"/exit", "leave (also Ctrl-D)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void cmd_help(repl *r)
{
    fprintf(r->out, "Type a message and press Enter. Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *d = commands[i][1];
        const char *sp = strstr(d, "  ");
        if (sp)
            fprintf(r->out, "  %s%s %.*s%s%-*s%s\n", BOLD(r), commands[i][0], (int)(sp - d), d,
                    OFF(r), (int)(15 - strlen(commands[i][0]) - (size_t)(sp - d)), "", sp + 2);
        else
            fprintf(r->out, "  %s%-16s%s%s\n", BOLD(r), commands[i][0], OFF(r), d);
    }
    fprintf(r->out,
            "Input: a line ending in \\ continues on the next line; a line \"\"\" opens and\n"
            "closes a block of lines; \"//text\" sends \"/text\". Tab completes commands.\n"
            "Ctrl-C cancels a turn; at an empty prompt, press it twice (or Ctrl-D) to leave.\n");
}

static void cmd_tools(repl *r)
{
    size_t n = ad_tool_host_count(r->o->tools);
    if (n == 0) {
        fprintf(r->out, "no tools loaded%s\n",
                r->o->cfg->plugins_dir ? "" : " (set [plugins] dir in the config)");
        return;
    }
    size_t w = 4;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ad_tool_host_at(r->o->tools, i)->name);
        if (l > w)
            w = l;
    }
    if (w > 32)
        w = 32;
    for (size_t i = 0; i < n; i++) {
        const ad_tool_desc *t = ad_tool_host_at(r->o->tools, i);
        const char *name = t->name;
        const char *d = t->description ? t->description : "";
        bool confirm = false;
        double to;
        int iso;
        ad_config_tool(r->o->cfg, name, &to, &confirm, &iso);
        ad_buf b = AD_BUF_INIT;
        put_shown(&b, d, strcspn(d, "\n"), 72, r->utf8);
        fprintf(r->out, "  %s%-*s%s  %s  %s[%s]%s%s\n", BOLD(r), (int)w, name, OFF(r),
                b.data ? b.data : "", DIM(r), t->origin ? t->origin : "?",
                OFF(r),
                confirm ? (r->o->yes || ad_repl_view_always(r->v, name) ? "" : " (asks first)") : "");
        ad_buf_free(&b);
    }
}

static json_object *system_message(repl *r)
{
    json_object *msgs = ad_agent_messages(r->agent);
    json_object *m = msgs && json_object_array_length(msgs) ? json_object_array_get_idx(msgs, 0) : NULL;
    const char *role = m ? ad_json_str(m, "role") : NULL;
    return role && strcmp(role, "system") == 0 ? m : NULL;
}

static void cmd_system(repl *r, const char *arg)
{
    json_object *sys = system_message(r);
    if (!arg[0]) {
        const char *cur = sys ? ad_json_str(sys, "content") : NULL;
        if (cur)
            fprintf(r->out, "%s\n", cur);
        else
            note(r, "no system prompt; /system TEXT sets one");
        return;
    }
    /* A new conversation: the system message first, then the others. */
    json_object *msgs = ad_agent_messages(r->agent);
    if (!msgs) {
        err_line(r, "out of memory");
        return;
    }
    json_object *next = json_object_new_array();
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("system"));
    json_object_object_add(m, "content", json_object_new_string(arg));
    json_object_array_add(next, m);
    for (size_t i = sys ? 1 : 0; i < json_object_array_length(msgs); i++)
        json_object_array_add(next, json_object_get(json_object_array_get_idx(msgs, i)));
    int rc = ad_agent_load_messages(r->agent, next);
    json_object_put(next);
    if (rc != AD_OK) {
        err_line(r, "out of memory");
        return;
    }
    note(r, "system prompt set");
}

/* /usage counts the conversation: a new one starts from zero. */
static void usage_reset(repl *r)
{
    ad_repl_view_usage_reset(r->v);
}

static void cmd_reset(repl *r)
{
    json_object *sys = system_message(r);
    json_object *next = json_object_new_array();
    if (sys)
        json_object_array_add(next, json_object_get(sys));
    int rc = ad_agent_load_messages(r->agent, next);
    json_object_put(next);
    if (rc != AD_OK) {
        err_line(r, "out of memory");
        return;
    }
    usage_reset(r);
    note(r, "new conversation%s", sys ? " (system prompt kept)" : "");
}

static void cmd_usage(repl *r)
{
    ad_repl_view_print_usage(r->v);
}

/* Returns false when the session should end. */
static bool run_command(repl *r, char *line)
{
    char *cmd = line;
    size_t cl = strcspn(cmd, " \t\n");
    char *arg = cmd + cl;
    if (*arg)
        *arg++ = '\0';
    arg += strspn(arg, " \t\n");
    size_t al = strlen(arg);
    while (al > 0 && strchr(" \t\n", arg[al - 1]))
        arg[--al] = '\0';
    char err[1024];

    if (strcmp(cmd, "/exit") == 0 || strcmp(cmd, "/quit") == 0)
        return false;
    if (strcmp(cmd, "/help") == 0 || strcmp(cmd, "/?") == 0) {
        cmd_help(r);
    } else if (strcmp(cmd, "/tools") == 0) {
        cmd_tools(r);
    } else if (strcmp(cmd, "/mcp") == 0) {
        ad_tool_provider *mp = ad_mcp_provider_find(r->o->tools);
        if (mp)
            ad_mcp_provider_print(mp, r->out);
        else
            fprintf(r->out, "no MCP servers configured ([mcp.servers.NAME] in the config)\n");
    } else if (strcmp(cmd, "/model") == 0) {
        if (!arg[0]) {
            fprintf(r->out, "%s\n", r->model);
        } else if (ad_agent_set_model(r->agent, arg) == AD_OK) {
            char *m = ad_strdup(arg);
            if (m) {
                free(r->model);
                r->model = m;
            }
            note(r, "model: %s", r->model);
        }
    } else if (strcmp(cmd, "/system") == 0) {
        cmd_system(r, arg);
    } else if (strcmp(cmd, "/reset") == 0 || strcmp(cmd, "/clear") == 0) {
        cmd_reset(r);
    } else if (strcmp(cmd, "/save") == 0) {
        if (!arg[0])
            err_line(r, "/save wants a file name");
        else if (save_conversation(r, arg, err, sizeof err) != AD_OK)
            err_line(r, "%s", err);
        else
            note(r, "saved %zu messages to %s", ad_conv_count(ad_agent_conv(r->agent)), arg);
    } else if (strcmp(cmd, "/load") == 0) {
        size_t n = 0;
        if (!arg[0]) {
            err_line(r, "/load wants a file name");
        } else if (load_conversation(r, arg, &n, err, sizeof err) != AD_OK) {
            err_line(r, "%s (the conversation is unchanged)", err);
        } else {
            usage_reset(r);
            note(r, "loaded %zu messages from %s; model: %s", n, arg, r->model);
        }
    } else if (strcmp(cmd, "/usage") == 0) {
        cmd_usage(r);
    } else {
        const char *best = NULL;
        size_t bd = strlen(cmd) > 5 ? 3 : 2; /* more than this: no guess */
        for (size_t i = 0; i < NCOMMANDS; i++) {
            size_t d = ad_edit_distance(cmd, commands[i][0]);
            if (d < bd || (strncmp(commands[i][0], cmd, strlen(cmd)) == 0 && strlen(cmd) > 1)) {
                bd = d < bd ? d : bd;
                best = commands[i][0];
            }
        }
        if (best)
            note(r, "unknown command %.40s; did you mean %s? (/help lists them)", cmd, best);
        else
            note(r, "unknown command %.40s; /help lists the commands (//text sends \"/text\")",
                 cmd);
    }
    fflush(r->out);
    return true;
}

/* ---- line input --------------------------------------------------------- */

static int repl_getc(FILE *f)
{
    for (;;) {
        if (g_sigint)
            return EOF;
        if (g_sigpipe[0] >= 0) {
            struct pollfd pf[2] = {{fileno(f), POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
            int pr = poll(pf, 2, -1);
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr > 0 && (pf[1].revents & POLLIN)) {
                sigpipe_drain();
                if (g_sigint)
                    return EOF;
                continue;
            }
        }
        unsigned char c;
        ssize_t n = read(fileno(f), &c, 1);
        if (n == 1) {
            if (c != '\r' && c != '\n' && c != 4)
                g_typed = true;
            return c;
        }
        if (n < 0 && errno == EINTR && !g_sigint)
            continue; /* SIGWINCH and friends */
        return EOF;
    }
}

static char *complete_command(const char *text, int state)
{
    static size_t i, len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i < NCOMMANDS) {
        const char *c = commands[i++][0];
        if (strncmp(c, text, len) == 0)
            return strdup(c);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (start == 0 && text[0] == '/')
        return rl_completion_matches(text, complete_command);
    if (rl_line_buffer &&
        (strncmp(rl_line_buffer, "/load ", 6) == 0 || strncmp(rl_line_buffer, "/save ", 6) == 0))
        rl_attempted_completion_over = 0; /* file names */
    return NULL;
}

enum { READ_OK, READ_EOF, READ_INTERRUPTED };

static bool is_fence(const char *l)
{
    l += strspn(l, " \t");
    if (strncmp(l, "\"\"\"", 3) != 0)
        return false;
    l += 3;
    return l[strspn(l, " \t\r")] == '\0';
}

/* One entry: a line, lines joined by a trailing backslash, or a """ block.
 * *typed tells whether anything was typed (for Ctrl-C). */
static int read_entry(repl *r, char **out, bool *typed)
{
    const char *p1 = r->color ? (r->utf8 ? "\001\033[1;36m\002›\001\033[0m\002 " : "\001\033[1;36m\002>\001\033[0m\002 ")
                              : (r->utf8 ? "› " : "> ");
    const char *p2 = r->color ? (r->utf8 ? "\001\033[2m\002…\001\033[0m\002 " : "\001\033[2m\002.\001\033[0m\002 ")
                              : (r->utf8 ? "… " : ". ");
    ad_buf b = AD_BUF_INIT;
    bool block = false, more = false;
    *typed = false;
    *out = NULL;
    for (;;) {
        sigpipe_drain();
        g_sigint = 0;
        g_typed = false;
        char *l = readline(more || block ? p2 : p1);
        *typed = *typed || g_typed || more || block;
        if (!l) {
            if (g_sigint) {
                ad_buf_free(&b);
                return READ_INTERRUPTED;
            }
            if (b.len > 0 || block) {
                /* Ctrl-D inside a continuation sends what was written. */
                fputc('\n', r->out);
                *out = ad_buf_steal(&b);
                return READ_OK;
            }
            ad_buf_free(&b);
            return READ_EOF;
        }
        if (block) {
            if (is_fence(l)) {
                free(l);
                if (b.len && b.data[b.len - 1] == '\n')
                    b.data[--b.len] = '\0';
                *out = ad_buf_steal(&b);
                return READ_OK;
            }
            ad_buf_puts(&b, l);
            ad_buf_putc(&b, '\n');
            free(l);
            continue;
        }
        if (!more && is_fence(l)) {
            free(l);
            block = true;
            continue;
        }
        size_t n = strlen(l);
        if (n > 0 && l[n - 1] == '\\') {
            ad_buf_append(&b, l, n - 1);
            ad_buf_putc(&b, '\n');
            free(l);
            more = true;
            continue;
        }
        ad_buf_puts(&b, l);
        free(l);
        *out = ad_buf_steal(&b);
        return *out ? READ_OK : READ_EOF;
    }
}

/* ---- history ------------------------------------------------------------ */

char *ad_repl_history_path(void)
{
    return ad_state_path("history");
}

static void history_open(repl *r)
{
    using_history();
    stifle_history(HISTORY_MAX);
    r->history_path = ad_repl_history_path();
    if (!r->history_path)
        return;
    char err[512];
    if (ad_make_parents(r->history_path, err, sizeof err) != AD_OK) {
        note(r, "history not kept: %s", err);
        free(r->history_path);
        r->history_path = NULL;
        return;
    }
    /* What was typed can be private: the file is the owner's only. */
    int fd = open(r->history_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    read_history(r->history_path);
}

static void history_add(repl *r, const char *entry)
{
    /* A pasted key stays out of the history, in memory and in the file. */
    char *red = ad_redact(entry, strlen(entry), r->o->cfg->api_key, NULL);
    add_history(red ? red : entry);
    free(red);
    if (r->history_path)
        write_history(r->history_path);
}

/* ---- the session -------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static bool handle_line(repl *r, char *line)
{
    if (line[0] == '/' && line[1] != '/')
        return run_command(r, line);
    run_turn(r, line[0] == '/' ? line + 1 : line);
    return true;
}

int ad_repl_run(const ad_repl_opts *o)
{
    char lerr[256];
    if (ad_lazy_edit(lerr, sizeof lerr) != AD_OK) {
        fprintf(stderr, "agentd: %s\n", lerr);
        return 1;
    }
    /* The signal pipe is how Ctrl-C reaches a turn: no session without it. */
    if (g_sigpipe[0] < 0 && pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "agentd: cannot start the conversation: pipe: %s\n", strerror(errno));
        return 1;
    }
    repl rs;
    repl *r = &rs;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->agent = o->agent;
    r->out = o->out ? o->out : stdout;
    r->err = stderr;
    r->tty_in = isatty(STDIN_FILENO);
    r->tty_err = isatty(STDERR_FILENO);
    const char *nc = getenv("NO_COLOR");
    r->color = r->tty_err && isatty(fileno(r->out)) && !(nc && nc[0]);
    /* Multibyte line editing and the choice of glyphs follow the locale;
     * only LC_CTYPE, so number formatting stays "C". */
    setlocale(LC_CTYPE, "");
    r->utf8 = strcasecmp(nl_langinfo(CODESET), "UTF-8") == 0;
    r->model = ad_strdup(o->cfg->model ? o->cfg->model : "");
    ad_repl_view_opts vo = {o->loop, o->agent, r->out, r->err, r->tty_in, r->tty_err,
                            r->color, r->utf8, o->quiet};
    r->v = ad_repl_view_new(&vo);
    if (!r->v) {
        fprintf(stderr, "agentd: out of memory\n");
        free(r->model);
        return 1;
    }

    uv_poll_init(o->loop, &r->sigwatch, g_sigpipe[0]);
    r->sigwatch.data = r;

    ad_events_add(o->events, ad_repl_view_sink(r->v));
    ad_agent_set_yes(o->agent, o->yes);

    rl_readline_name = "agentd";
    rl_outstream = r->out; /* fd 1 may be stderr: plugins write there (main.c) */
    rl_getc_function = repl_getc;
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{(";
    rl_initialize();
    history_open(r);
    session_signals();

    if (r->tty_in) {
        size_t nt = ad_tool_host_count(o->tools);
        const char *dot = r->utf8 ? "·" : "-";
        fprintf(r->err,
                "%sagentd %s %s model%s %s%s, %zu tool%s %s /help for commands, Ctrl-D to "
                "leave%s\n",
                DIM(r), AGENTD_VERSION, dot, OFF(r), r->model, DIM(r), nt, nt == 1 ? "" : "s", dot,
                OFF(r));
        fflush(r->err);
    }

    if (o->first_prompt && o->first_prompt[0])
        run_turn(r, o->first_prompt);

    uint64_t last_intr = 0;
    for (;;) {
        char *line = NULL;
        bool typed = false;
        int got = read_entry(r, &line, &typed);
        if (got == READ_EOF) {
            if (r->tty_in)
                fputc('\n', r->out);
            break;
        }
        if (got == READ_INTERRUPTED) {
            fputc('\n', r->out);
            fflush(r->out);
            uint64_t now = uv_hrtime();
            if (typed) {
                last_intr = 0; /* Ctrl-C cleared the line */
                continue;
            }
            if (last_intr && now - last_intr < 2000000000ull)
                break;
            last_intr = now;
            note(r, "(press Ctrl-C again to leave, or Ctrl-D; /help for commands)");
            continue;
        }
        last_intr = 0;
        const char *p = line + strspn(line, " \t\n");
        if (!*p) {
            free(line);
            continue;
        }
        history_add(r, line);
        bool go_on = handle_line(r, line);
        free(line);
        if (!go_on)
            break;
    }
    fflush(r->out);

    /* Back to what the session found; the caller frees the agent and the
     * loop. The pipe closes after its watcher is gone. */
    sigaction(SIGINT, &g_old_sigint, NULL);
    uv_close((uv_handle_t *)&r->sigwatch, on_handle_closed);
    uv_run(o->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 2; i++) {
        if (g_sigpipe[i] >= 0)
            close(g_sigpipe[i]);
        g_sigpipe[i] = -1;
    }
    ad_events_remove(o->events, ad_repl_view_sink(r->v));
    ad_agent_set_yes(o->agent, false);
    ad_repl_view_free(r->v);
    uv_run(o->loop, UV_RUN_NOWAIT);
    free(r->model);
    free(r->history_path);
    clear_history();
    return 0;
}

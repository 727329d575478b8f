/*
 * jobs_cli.c -- `agentd submit` and `agentd jobs` (see jobs_cli.h).
 *
 * One-shot commands: a synchronous hiredis connection, the queue's own
 * scripts (worker/queue.h) sent with EVAL. Following a job (--wait) reads
 * its event stream with XREAD BLOCK from the start, so nothing is missed
 * whenever it is started; a lost connection is made again (with backoff)
 * and the reading goes on where it stopped: the job does not depend on
 * the follower.
 */
#include "cli/jobs_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "base/buf.h"
#include "base/text.h"
#include "worker/queue.h"
#include "worker/redis.h"

enum {
    JX_OK = 0,
    JX_FAIL = 1,
    JX_USAGE = 2,
    JX_MAX_STEPS = 3,
    JX_DEAD = 4,
    JX_INTERRUPTED = 130
};

static const char submit_usage[] =
    "usage: agentd submit --redis URL -p PROMPT [--session ID] [--job-id ID] [--wait] [--json]\n"
    "\n"
    "Queues an agent job for `agentd worker` (docs/workers.md) and prints its id.\n"
    "Submitting the same --job-id again queues nothing (the same prompt and\n"
    "session) or fails (exit 2: the id is taken by another job).\n"
    "\n"
    "  --redis URL       redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH\n"
    "                    (the password may come from $AGENTD_REDIS_PASSWORD)\n"
    "  -p, --prompt P    the prompt (without it, standard input is read)\n"
    "  --session ID      the conversation to continue (its jobs run one at a time,\n"
    "                    in order)\n"
    "  --job-id ID       the job's id (default: a random one); A-Z a-z 0-9 . _ -\n"
    "  --wait            follow the job until it ends; the answer goes to stdout,\n"
    "                    and the exit status is the job's\n"
    "  --json            with --wait: every event of the job as one JSON line\n"
    "  --prefix P        key prefix in Redis (default agentd)\n"
    "  -q, --quiet       no progress lines on stderr\n"
    "\n"
    "exit status: 0 queued, or (--wait) answered; 1 Redis failed, or the job\n"
    "             failed; 2 usage error or the id is taken; 3 max_steps reached;\n"
    "             4 dead-lettered; 130 interrupted (the job goes on)\n";

static const char jobs_usage[] =
    "usage: agentd jobs --redis URL [JOB_ID] [--json] [--limit N] [--group G]\n"
    "\n"
    "Without JOB_ID: the latest jobs (state, attempts, session, worker), the\n"
    "stream's entries and those in flight, the workers of the consumer group\n"
    "and the dead letters. With JOB_ID: that job in full.\n"
    "\n"
    "  --redis URL   as for agentd submit\n"
    "  --json        one JSON document on stdout\n"
    "  --limit N     how many jobs to list (default 50)\n"
    "  --group G     the workers' consumer group (default agentd)\n"
    "  --prefix P    key prefix in Redis (default agentd)\n"
    "\n"
    "exit status: 0 ok; 1 Redis failed; 2 usage error or an unknown job\n";

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static int usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("agentd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fprintf(stderr, "Try 'agentd %s --help'.\n", cmd);
    return JX_USAGE;
}

/* Text for a terminal: control characters (but newline and tab) shown as
 * ^X, invalid UTF-8 as U+FFFD. Anything else gets the bytes as they are. */
static void put_text(FILE *f, const char *s, size_t n)
{
    if (!isatty(fileno(f))) {
        fwrite(s, 1, n, f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = 1;
        if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f))
            fputc(c, f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "^%c", c == 0x7f ? '?' : c + 64);
        else if (ad_utf8_seq(p + i, n - i, &len))
            fwrite(p + i, 1, len, f);
        else
            fputs("\xef\xbf\xbd", f), len = 1;
        i += len;
    }
}

/* ---- the connection ----------------------------------------------------- */

static redisContext *connect_sync(const ad_redis_url *u, char *err, size_t errlen)
{
    struct timeval tv = {5, 0};
    redisContext *c = u->path ? redisConnectUnixWithTimeout(u->path, tv)
                              : redisConnectWithTimeout(u->host, u->port, tv);
    if (!c || c->err) {
        ad_errf(err, errlen, "cannot connect to %s: %s", u->shown, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    struct timeval cmd = {15, 0};
    redisSetTimeout(c, cmd);
    redisReply *r = NULL;
    if (u->password) {
        const char *a[3] = {"AUTH", u->user ? u->user : u->password, u->password};
        r = redisCommandArgv(c, u->user ? 3 : 2, a, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            ad_errf(err, errlen, "%s: authentication failed: %s", u->shown,
                    r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (u->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", u->db);
        const char *a[2] = {"SELECT", db};
        r = redisCommandArgv(c, 2, a, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            ad_errf(err, errlen, "%s: SELECT %d failed: %s", u->shown, u->db,
                    r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static redisReply *cmdv(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, argc, argv, lens);
}

static const char *str_at(redisReply *r, size_t i)
{
    return ad_redis_str(ad_redis_at(r, i), NULL);
}

/* HGETALL as a JSON object (strings). */
static json_object *hash_json(redisReply *r)
{
    json_object *o = json_object_new_object();
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        size_t vl;
        const char *v = ad_redis_str(r->element[i + 1], &vl);
        const char *k = ad_redis_str(r->element[i], NULL);
        if (k && v)
            json_object_object_add(o, k, json_object_new_string_len(v, (int)vl));
    }
    return o;
}

static const char *jstr(json_object *o, const char *k, const char *def)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : def;
}

static long long jint(json_object *o, const char *k, long long def)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v))
        return def;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v);
    const char *s = json_object_get_string(v);
    char *end;
    long long n = s ? strtoll(s, &end, 10) : 0;
    return s && *s && !*end ? n : def;
}

static void print_json(json_object *o, bool pretty)
{
    int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN);
    fputs(json_object_to_json_string_ext(o, flags), stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void fmt_time(char *buf, size_t n, long long ms)
{
    if (ms <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* ---- common options ----------------------------------------------------- */

typedef struct opts {
    const char *cmd;
    const char *redis;
    const char *prompt;
    const char *session;
    const char *job_id;
    const char *prefix;
    const char *group;
    bool wait, json, quiet;
    long limit;
    const char *arg; /* jobs JOB_ID */
} opts;

static int parse(int argc, char **argv, opts *o)
{
    enum { O_REDIS = 256, O_SESSION, O_JOB, O_WAIT, O_JSON, O_PREFIX, O_LIMIT, O_GROUP };
    static const struct option longs[] = {
        {"redis", required_argument, NULL, O_REDIS},
        {"prompt", required_argument, NULL, 'p'},
        {"session", required_argument, NULL, O_SESSION},
        {"job-id", required_argument, NULL, O_JOB},
        {"wait", no_argument, NULL, O_WAIT},
        {"json", no_argument, NULL, O_JSON},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"limit", required_argument, NULL, O_LIMIT},
        {"group", required_argument, NULL, O_GROUP},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool submit = strcmp(o->cmd, "submit") == 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":p:qh", longs, NULL)) != -1) {
        switch (c) {
        case O_REDIS:
            o->redis = optarg;
            break;
        case 'p':
            if (!submit)
                return usage(o->cmd, "-p is an option of agentd submit");
            o->prompt = optarg;
            break;
        case O_SESSION:
            o->session = optarg;
            break;
        case O_JOB:
            o->job_id = optarg;
            break;
        case O_WAIT:
            o->wait = true;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_PREFIX:
            o->prefix = optarg;
            break;
        case O_GROUP:
            o->group = optarg;
            break;
        case 'q':
            o->quiet = true;
            break;
        case O_LIMIT: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || v < 1 || v > 100000)
                return usage(o->cmd, "--limit wants a number from 1 to 100000, not '%s'", optarg);
            o->limit = v;
            break;
        }
        case 'h':
            fputs(submit ? submit_usage : jobs_usage, stdout);
            return JX_OK;
        case ':':
            return usage(o->cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            return usage(o->cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        if (!submit && optind + 1 == argc)
            o->arg = argv[optind];
        else
            return usage(o->cmd, "unexpected argument '%s'", argv[optind]);
    }
    if (!o->redis)
        return usage(o->cmd, "--redis URL is required (redis://HOST:PORT)");
    if (!o->prefix)
        o->prefix = "agentd";
    if (!o->group)
        o->group = "agentd";
    if (!o->limit)
        o->limit = 50;
    if (!ad_q_valid_prefix(o->prefix))
        return usage(o->cmd, "--prefix: '%s' is not 1 to 64 of A-Z a-z 0-9 . _ : -", o->prefix);
    if (!ad_q_valid_id(o->group))
        return usage(o->cmd, "--group: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", o->group);
    if (o->session && !ad_q_valid_id(o->session))
        return usage(o->cmd, "--session: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", o->session);
    if (o->job_id && !ad_q_valid_id(o->job_id))
        return usage(o->cmd, "--job-id: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", o->job_id);
    if (o->arg && !ad_q_valid_id(o->arg))
        return usage(o->cmd, "'%s' is not a job id (1 to 128 of A-Z a-z 0-9 . _ -)", o->arg);
    if (submit && o->json && !o->wait)
        return usage(o->cmd, "--json goes with --wait");
    if (!submit && (o->session || o->job_id || o->wait))
        return usage(o->cmd, "--session, --job-id and --wait are options of agentd submit");
    return -1;
}

char *ad_cli_read_prompt(void)
{
    ad_buf b = AD_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (b.len + n > AD_CLI_PROMPT_MAX || ad_buf_append(&b, chunk, n) != AD_OK) {
            ad_buf_free(&b);
            return NULL;
        }
    }
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    return ad_buf_steal(&b);
}

static bool blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

static void random_id(char *out)
{
    unsigned char b[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && read(fd, b, sizeof b) == (ssize_t)sizeof b;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long v = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 32) ^
                               (unsigned long long)ts.tv_sec;
        memcpy(b, &v, sizeof b);
    }
    for (int i = 0; i < 8; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* ---- following a job ---------------------------------------------------- */

/* What the job's end means for the exit status. */
static int end_status(json_object *ev)
{
    const char *st = jstr(ev, "state", "");
    if (strcmp(st, "done") == 0)
        return JX_OK;
    if (strcmp(st, "dead") == 0)
        return JX_DEAD;
    return jint(ev, "status", 1) == 3 ? JX_MAX_STEPS : JX_FAIL;
}

static void progress(const opts *o, const char *job, json_object *ev)
{
    if (o->quiet)
        return;
    const char *type = jstr(ev, "type", "");
    if (strcmp(type, "job_attempt") == 0) {
        long long a = jint(ev, "attempt", 0), from = jint(ev, "resumed_from", 0);
        if (a > 1)
            fprintf(stderr, "agentd: job %s: attempt %lld on %s (resumes after %lld committed "
                            "message(s))\n",
                    job, a, jstr(ev, "worker", "?"), from);
        else
            fprintf(stderr, "agentd: job %s: running on %s\n", job, jstr(ev, "worker", "?"));
    } else if (strcmp(type, "tool_call") == 0) {
        fprintf(stderr, "agentd: tool %s\n", jstr(ev, "name", "?"));
    } else if (strcmp(type, "job_handback") == 0) {
        fprintf(stderr, "agentd: job %s: handed back (%s)\n", job, jstr(ev, "reason", ""));
    } else if (strcmp(type, "retry") == 0) {
        fprintf(stderr, "agentd: retrying: %s\n", jstr(ev, "reason", ""));
    }
}

static redisContext *reconnect(const ad_redis_url *u, const opts *o, int *fails)
{
    char err[512];
    for (;;) {
        if (g_interrupted)
            return NULL;
        redisContext *c = connect_sync(u, err, sizeof err);
        if (c) {
            if (*fails && !o->quiet)
                fprintf(stderr, "agentd: reconnected to %s\n", u->shown);
            *fails = 0;
            return c;
        }
        if ((*fails)++ == 0)
            fprintf(stderr, "agentd: %s; retrying (the job goes on)\n", err);
        double wait = 0.1;
        for (int i = 1; i < *fails && wait < 5; i++)
            wait *= 2;
        struct timespec ts = {(time_t)(wait > 5 ? 5 : wait),
                              (long)((wait > 5 ? 0 : wait - (long)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int follow(redisContext **cp, const ad_redis_url *u, const opts *o, const char *job)
{
    char k_events[AD_Q_KEY_MAX], k_job[AD_Q_KEY_MAX];
    ad_q_events(k_events, o->prefix, job);
    ad_q_job(k_job, o->prefix, job);
    char last[64] = "0-0";
    int fails = 0;
    for (;;) {
        if (g_interrupted)
            return JX_INTERRUPTED;
        if (!*cp && !(*cp = reconnect(u, o, &fails)))
            return JX_INTERRUPTED;
        const char *argv[] = {"XREAD", "COUNT", "256", "BLOCK", "1000", "STREAMS", k_events, last};
        redisReply *r = cmdv(*cp, 8, argv, NULL);
        if (!r) {
            if (g_interrupted)
                return JX_INTERRUPTED;
            redisFree(*cp);
            *cp = NULL;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "agentd: reading the job's events failed: %s\n", r->str);
            freeReplyObject(r);
            return JX_FAIL;
        }
        if (r->type == REDIS_REPLY_NIL) {
            freeReplyObject(r);
            /* Nothing new: is the job still there? (Its keys expire some
             * time after it ended.) */
            const char *h[] = {"HGETALL", k_job};
            redisReply *j = cmdv(*cp, 2, h, NULL);
            json_object *jo = j ? hash_json(j) : NULL;
            if (j)
                freeReplyObject(j);
            bool gone = jo && json_object_object_length(jo) == 0;
            const char *st = jstr(jo, "state", "");
            int rc = -1;
            if (gone) {
                fprintf(stderr, "agentd: job %s is gone (its keys expired)\n", job);
                rc = JX_FAIL;
            } else if (ad_q_state_ended(st) && strcmp(last, "0-0") == 0) {
                /* Ended, its events expired or never written: the stored outcome. */
                if (!o->json)
                    put_text(stdout, jstr(jo, "result", ""), strlen(jstr(jo, "result", "")));
                rc = strcmp(st, "done") == 0 ? JX_OK : strcmp(st, "dead") == 0 ? JX_DEAD : JX_FAIL;
                if (!o->json)
                    fputc('\n', stdout);
            }
            json_object_put(jo);
            if (rc >= 0)
                return rc;
            continue;
        }
        redisReply *entries = ad_redis_at(ad_redis_at(r, 0), 1);
        int rc = -1;
        for (size_t i = 0; entries && i < entries->elements && rc < 0; i++) {
            redisReply *e = entries->element[i];
            const char *id = str_at(e, 0);
            redisReply *f = ad_redis_at(e, 1);
            size_t len;
            const char *text = ad_redis_str(ad_redis_at(f, 1), &len);
            if (id && strlen(id) < sizeof last)
                strcpy(last, id);
            if (!text)
                continue;
            json_object *ev = json_tokener_parse(text);
            if (!ev)
                continue;
            if (o->json) {
                fwrite(text, 1, len, stdout);
                fputc('\n', stdout);
                fflush(stdout);
            } else {
                progress(o, job, ev);
            }
            if (strcmp(jstr(ev, "type", ""), "job_end") == 0) {
                rc = end_status(ev);
                if (!o->json) {
                    const char *st = jstr(ev, "state", "");
                    if (strcmp(st, "dead") == 0) {
                        fprintf(stderr, "agentd: job %s was dead-lettered: %s\n", job,
                                jstr(ev, "reason", ""));
                    } else {
                        const char *h[] = {"HGET", k_job, "result"};
                        redisReply *res = cmdv(*cp, 3, h, NULL);
                        size_t rl;
                        const char *rt = ad_redis_str(res, &rl);
                        if (rt && rl) {
                            put_text(stdout, rt, rl);
                            fputc('\n', stdout);
                        }
                        if (res)
                            freeReplyObject(res);
                        if (strcmp(st, "done") != 0)
                            fprintf(stderr, "agentd: error: %s\n", jstr(ev, "error", "the job failed"));
                    }
                }
            }
            json_object_put(ev);
        }
        freeReplyObject(r);
        if (rc >= 0)
            return rc;
    }
}

/* ---- submit ------------------------------------------------------------- */

static int cmd_submit(opts *o, const ad_redis_url *u)
{
    char *stdin_prompt = NULL;
    const char *prompt = o->prompt;
    if (!prompt) {
        if (isatty(STDIN_FILENO))
            return usage("submit", "give the prompt with -p PROMPT (or on standard input)");
        stdin_prompt = ad_cli_read_prompt();
        if (!stdin_prompt)
            return usage("submit", "the prompt on standard input is larger than 64 MiB");
        prompt = stdin_prompt;
    }
    if (blank(prompt)) {
        free(stdin_prompt);
        return usage("submit", "the prompt is empty");
    }
    char err[512];
    redisContext *c = connect_sync(u, err, sizeof err);
    if (!c) {
        fprintf(stderr, "agentd: %s\n", err);
        free(stdin_prompt);
        return JX_FAIL;
    }
    char id[40];
    if (o->job_id)
        snprintf(id, sizeof id, "%s", o->job_id);
    else
        random_id(id);
    char k_stream[AD_Q_KEY_MAX], k_job[AD_Q_KEY_MAX], k_index[AD_Q_KEY_MAX], now[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(now, sizeof now, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    const char *argv[] = {"EVAL",
                          ad_q_scripts[AD_Q_SUBMIT]->src,
                          "3",
                          ad_q_stream(k_stream, o->prefix),
                          ad_q_job(k_job, o->prefix, id),
                          ad_q_index(k_index, o->prefix),
                          o->prefix,
                          id,
                          prompt,
                          o->session ? o->session : "",
                          now};
    redisReply *r = cmdv(c, 11, argv, NULL);
    free(stdin_prompt);
    int rc = JX_OK;
    const char *kind = str_at(r, 0);
    if (!r || r->type == REDIS_REPLY_ERROR || !kind) {
        fprintf(stderr, "agentd: submitting to %s failed: %s\n", u->shown,
                r ? ad_redis_reply_error(r) : c->errstr);
        rc = JX_FAIL;
    } else if (strcmp(kind, "conflict") == 0) {
        fprintf(stderr, "agentd: job id %s is taken by a job with another prompt or session "
                        "(state %s); choose another --job-id\n",
                id, str_at(r, 1) ? str_at(r, 1) : "?");
        rc = JX_USAGE;
    } else {
        if (o->json) {
            json_object *j = json_object_new_object();
            json_object_object_add(j, "type", json_object_new_string("job_submitted"));
            json_object_object_add(j, "job", json_object_new_string(id));
            json_object_object_add(j, "state", json_object_new_string(kind));
            print_json(j, false);
            json_object_put(j);
        } else if (o->wait) {
            if (!o->quiet)
                fprintf(stderr, "agentd: job %s %s\n", id,
                        strcmp(kind, "exists") == 0  ? "was submitted before; following it"
                        : strcmp(kind, "waiting") == 0 ? "waits for its session's running job"
                                                       : "queued");
        } else {
            printf("%s\n", id);
            if (strcmp(kind, "exists") == 0 && !o->quiet)
                fprintf(stderr, "agentd: job %s was submitted before (state %s); nothing queued\n",
                        id, str_at(r, 1) ? str_at(r, 1) : "?");
        }
    }
    if (r)
        freeReplyObject(r);
    if (rc == JX_OK && o->wait) {
        signal(SIGINT, on_sigint);
        rc = follow(&c, u, o, id);
        if (rc == JX_INTERRUPTED)
            fprintf(stderr, "agentd: interrupted; job %s goes on (agentd jobs --redis URL %s)\n",
                    id, id);
    }
    if (c)
        redisFree(c);
    return rc;
}

/* ---- jobs --------------------------------------------------------------- */

static int cmd_job(opts *o, redisContext *c, const char *id)
{
    char k_job[AD_Q_KEY_MAX], k_ev[AD_Q_KEY_MAX], k_ledger[AD_Q_KEY_MAX];
    const char *a[] = {"HGETALL", ad_q_job(k_job, o->prefix, id)};
    redisReply *r = cmdv(c, 2, a, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "agentd: reading job %s failed: %s\n", id,
                r ? ad_redis_reply_error(r) : c->errstr);
        if (r)
            freeReplyObject(r);
        return JX_FAIL;
    }
    json_object *j = hash_json(r);
    freeReplyObject(r);
    if (json_object_object_length(j) == 0) {
        json_object_put(j);
        fprintf(stderr, "agentd: no job %s (never submitted, or its keys expired)\n", id);
        return JX_USAGE;
    }
    const char *xl[] = {"XLEN", ad_q_events(k_ev, o->prefix, id)};
    r = cmdv(c, 2, xl, NULL);
    long long nev = ad_redis_int(r, 0);
    if (r)
        freeReplyObject(r);
    const char *hl[] = {"HLEN", ad_q_ledger(k_ledger, o->prefix, id)};
    r = cmdv(c, 2, hl, NULL);
    long long nled = ad_redis_int(r, 0);
    if (r)
        freeReplyObject(r);
    if (o->json) {
        json_object_object_add(j, "events", json_object_new_int64(nev));
        json_object_object_add(j, "ledger_entries", json_object_new_int64(nled));
        print_json(j, true);
    } else {
        static const char *const order[] = {"id", "state", "status", "session", "attempts",
                                            "handbacks", "owner", "submitted", "started",
                                            "finished", "error", "reason", "prompt", "result"};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            const char *v = jstr(j, order[i], NULL);
            if (!v || !v[0])
                continue;
            char t[64];
            bool is_time = strcmp(order[i], "submitted") == 0 || strcmp(order[i], "started") == 0 ||
                           strcmp(order[i], "finished") == 0;
            if (is_time) {
                fmt_time(t, sizeof t, jint(j, order[i], 0));
                v = t;
            }
            printf("%-10s ", order[i]);
            put_text(stdout, v, strlen(v));
            fputc('\n', stdout);
        }
        printf("%-10s %lld\n%-10s %lld (tool calls)\n", "events", nev, "ledger", nled);
    }
    json_object_put(j);
    return JX_OK;
}

static int cmd_jobs(opts *o, const ad_redis_url *u)
{
    char err[512];
    redisContext *c = connect_sync(u, err, sizeof err);
    if (!c) {
        fprintf(stderr, "agentd: %s\n", err);
        return JX_FAIL;
    }
    if (o->arg) {
        int rc = cmd_job(o, c, o->arg);
        redisFree(c);
        return rc;
    }
    char k_index[AD_Q_KEY_MAX], k_stream[AD_Q_KEY_MAX], k_dead[AD_Q_KEY_MAX], stop[24];
    snprintf(stop, sizeof stop, "%ld", o->limit - 1);
    const char *zr[] = {"ZREVRANGE", ad_q_index(k_index, o->prefix), "0", stop};
    redisReply *ids = cmdv(c, 4, zr, NULL);
    if (!ids || ids->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "agentd: reading the jobs from %s failed: %s\n", u->shown,
                ids ? ad_redis_reply_error(ids) : c->errstr);
        if (ids)
            freeReplyObject(ids);
        redisFree(c);
        return JX_FAIL;
    }
    json_object *doc = json_object_new_object();
    json_object *list = json_object_new_array();
    json_object *counts = json_object_new_object();
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ad_redis_str(ids->element[i], NULL);
        char k_job[AD_Q_KEY_MAX];
        if (!id)
            continue;
        const char *hm[] = {"HMGET", ad_q_job(k_job, o->prefix, id), "state", "attempts",
                            "session", "submitted", "owner", "status"};
        redisReply *h = cmdv(c, 8, hm, NULL);
        if (!h || h->type != REDIS_REPLY_ARRAY || h->elements < 6 || !str_at(h, 0)) {
            if (h)
                freeReplyObject(h);
            /* Expired: out of the index too. */
            const char *zrem[] = {"ZREM", k_index, id};
            redisReply *z = cmdv(c, 3, zrem, NULL);
            if (z)
                freeReplyObject(z);
            continue;
        }
        json_object *e = json_object_new_object();
        json_object_object_add(e, "id", json_object_new_string(id));
        json_object_object_add(e, "state", json_object_new_string(str_at(h, 0)));
        json_object_object_add(e, "attempts", json_object_new_int64(ad_redis_int(ad_redis_at(h, 1), 0)));
        json_object_object_add(e, "session", json_object_new_string(str_at(h, 2) ? str_at(h, 2) : ""));
        json_object_object_add(e, "submitted", json_object_new_int64(ad_redis_int(ad_redis_at(h, 3), 0)));
        json_object_object_add(e, "worker", json_object_new_string(str_at(h, 4) ? str_at(h, 4) : ""));
        if (str_at(h, 5))
            json_object_object_add(e, "status", json_object_new_int64(ad_redis_int(ad_redis_at(h, 5), 0)));
        json_object *cnt;
        const char *st = str_at(h, 0);
        if (json_object_object_get_ex(counts, st, &cnt))
            json_object_object_add(counts, st, json_object_new_int64(json_object_get_int64(cnt) + 1));
        else
            json_object_object_add(counts, st, json_object_new_int64(1));
        json_object_array_add(list, e);
        freeReplyObject(h);
    }
    freeReplyObject(ids);
    json_object_object_add(doc, "jobs", list);
    json_object_object_add(doc, "states", counts);

    const char *xl[] = {"XLEN", ad_q_stream(k_stream, o->prefix)};
    redisReply *r = cmdv(c, 2, xl, NULL);
    json_object_object_add(doc, "stream_entries", json_object_new_int64(ad_redis_int(r, 0)));
    if (r)
        freeReplyObject(r);
    const char *xp[] = {"XPENDING", k_stream, o->group};
    r = cmdv(c, 3, xp, NULL);
    json_object_object_add(doc, "in_flight",
                           json_object_new_int64(r && r->type == REDIS_REPLY_ARRAY
                                                     ? ad_redis_int(ad_redis_at(r, 0), 0)
                                                     : 0));
    if (r)
        freeReplyObject(r);
    const char *dl[] = {"XLEN", ad_q_dead(k_dead, o->prefix)};
    r = cmdv(c, 2, dl, NULL);
    json_object_object_add(doc, "dead_letters", json_object_new_int64(ad_redis_int(r, 0)));
    if (r)
        freeReplyObject(r);
    json_object *workers = json_object_new_array();
    const char *xi[] = {"XINFO", "CONSUMERS", k_stream, o->group};
    r = cmdv(c, 4, xi, NULL);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *w = r->element[i];
        json_object *wo = json_object_new_object();
        for (size_t k = 0; w->type == REDIS_REPLY_ARRAY && k + 1 < w->elements; k += 2) {
            const char *f = ad_redis_str(w->element[k], NULL);
            if (!f)
                continue;
            if (w->element[k + 1]->type == REDIS_REPLY_INTEGER)
                json_object_object_add(wo, f, json_object_new_int64(w->element[k + 1]->integer));
            else if (ad_redis_str(w->element[k + 1], NULL))
                json_object_object_add(wo, f, json_object_new_string(ad_redis_str(w->element[k + 1], NULL)));
        }
        json_object_array_add(workers, wo);
    }
    if (r)
        freeReplyObject(r);
    json_object_object_add(doc, "workers", workers);

    if (o->json) {
        print_json(doc, true);
    } else {
        size_t n = json_object_array_length(list);
        if (n)
            printf("%-20s %-8s %8s  %-16s %-19s  %s\n", "JOB", "STATE", "ATTEMPTS", "SESSION",
                   "SUBMITTED", "WORKER");
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(list, i);
            char t[64];
            fmt_time(t, sizeof t, jint(e, "submitted", 0));
            const char *sess = jstr(e, "session", "");
            const char *wk = jstr(e, "worker", "");
            printf("%-20s %-8s %8lld  %-16s %-19s  %s\n", jstr(e, "id", ""), jstr(e, "state", ""),
                   jint(e, "attempts", 0), sess[0] ? sess : "-", t,
                   strcmp(jstr(e, "state", ""), "running") == 0 && wk[0] ? wk : "-");
        }
        if (!n)
            printf("no jobs\n");
        printf("stream: %lld entr%s, %lld in flight; dead letters: %lld\n",
               jint(doc, "stream_entries", 0), jint(doc, "stream_entries", 0) == 1 ? "y" : "ies",
               jint(doc, "in_flight", 0), jint(doc, "dead_letters", 0));
        size_t nw = json_object_array_length(workers);
        printf("workers (group %s):%s\n", o->group, nw ? "" : " none");
        for (size_t i = 0; i < nw; i++) {
            json_object *w = json_object_array_get_idx(workers, i);
            printf("  %s: %lld job(s), last seen %.1f s ago\n", jstr(w, "name", "?"),
                   jint(w, "pending", 0), (double)jint(w, "idle", 0) / 1000);
        }
    }
    json_object_put(doc);
    redisFree(c);
    return JX_OK;
}

int ad_jobs_cli(int argc, char **argv)
{
    opts o = {.cmd = argv[0]};
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char err[512];
    if (ad_lazy_hiredis(err, sizeof err) != AD_OK) {
        fprintf(stderr, "agentd: %s\n", err);
        return JX_FAIL;
    }
    ad_redis_url u;
    if (ad_redis_url_parse(&u, o.redis, err, sizeof err) != AD_OK) {
        fprintf(stderr, "agentd: %s\n", err);
        return JX_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = strcmp(o.cmd, "submit") == 0 ? cmd_submit(&o, &u) : cmd_jobs(&o, &u);
    ad_redis_url_free(&u);
    if (fflush(stdout) != 0 && rc == JX_OK)
        rc = JX_FAIL;
    return rc;
}

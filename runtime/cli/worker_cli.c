/*
 * worker_cli.c -- `agentd worker` (see worker_cli.h).
 */
#include "cli/worker_cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "worker/run.h"
#include "worker/worker.h"

static const char worker_usage[] =
    "usage: agentd worker --redis URL [--group G] [--concurrency N] [options]\n"
    "\n"
    "Runs the agent jobs of a Redis job queue (agentd submit queues them; see\n"
    "docs/workers.md): each job is a conversation with the config's provider\n"
    "and tools, up to N at once. Any number of workers on any number of\n"
    "machines share the queue. SIGTERM (or Ctrl-C) stops taking jobs and lets\n"
    "the running ones finish for --grace seconds, then hands them back to the\n"
    "queue; a second signal hands them back at once.\n"
    "\n"
    "  --redis URL           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or\n"
    "                        unix:///PATH (the password may come from\n"
    "                        $AGENTD_REDIS_PASSWORD)\n"
    "  --group G             the consumer group (default agentd)\n"
    "  --concurrency N       jobs at once (default 4)\n"
    "  --lease S             a job whose worker did not renew it for S seconds is\n"
    "                        taken over by another worker (default 30)\n"
    "  --max-deliveries N    a job started N times that never finished is\n"
    "                        dead-lettered (default 5)\n"
    "  --grace S             on SIGTERM, how long running jobs may finish before\n"
    "                        they are handed back (default 30)\n"
    "  --keep S              an ended job's keys expire after S seconds (default\n"
    "                        604800, a week; 0 never)\n"
    "  --prefix P            key prefix in Redis (default agentd)\n"
    "  --name NAME           this worker's consumer name (default HOST-PID-RANDOM;\n"
    "                        unique per process)\n"
    "  -c, --config FILE     agent.toml to use (found as for a run otherwise)\n"
    "  -m, --model NAME      override provider.model\n"
    "      --base-url URL    override provider.base_url\n"
    "      --max-steps N     override agent.max_steps (counted per attempt)\n"
    "  -q, --quiet           no line per job on stderr\n"
    "\n"
    "exit status: 0 stopped by a signal; 1 it could not start; 2 usage or config error\n";

static int usage(const char *fmt, const char *arg)
{
    fputs("agentd: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'agentd worker --help'.\n", stderr);
    return 2;
}

static bool number(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* A signal before the loop is there (the config and plugins still load):
 * remembered, and acted on once the worker runs. */
static volatile sig_atomic_t early_signals;

static void on_early_signal(int sig)
{
    (void)sig;
    early_signals++;
}

int ad_worker_cli_args(ad_worker_cli *w, int *argc, char **argv)
{
    memset(w, 0, sizeof *w);
    if (*argc < 2 || strcmp(argv[1], "worker") != 0)
        return -1;
    w->on = true;
    signal(SIGTERM, on_early_signal);
    signal(SIGINT, on_early_signal);
    w->concurrency = 4;
    w->lease_s = 30;
    w->max_deliveries = 5;
    w->grace_s = 30;
    w->keep_s = 7 * 86400;
    w->group = "agentd";
    w->prefix = "agentd";
    /* argv keeps argv[0] and the run's own options; the rest is ours. */
    int out = 1;
    for (int i = 2; i < *argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        char name[64];
        snprintf(name, sizeof name, "%.*s", eq && a[0] == '-' && a[1] == '-' ? (int)(eq - a)
                                                                              : (int)strlen(a),
                 a);
        static const char *const ours[] = {"--redis", "--group", "--concurrency", "--lease",
                                           "--max-deliveries", "--grace", "--keep", "--prefix",
                                           "--name"};
        bool mine = false;
        for (size_t k = 0; k < sizeof ours / sizeof ours[0]; k++)
            mine |= strcmp(name, ours[k]) == 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(worker_usage, stdout);
            return 0;
        }
        if (!mine) {
            static const char *const runs[] = {"-c", "--config", "-m", "--model", "--base-url",
                                               "--max-steps", "-q", "--quiet"};
            bool run_opt = false, takes = false;
            for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++)
                if (strcmp(name, runs[k]) == 0) {
                    run_opt = true;
                    takes = strcmp(name, "-q") != 0 && strcmp(name, "--quiet") != 0;
                }
            if (!run_opt)
                return usage(a[0] == '-' ? "'%s' is not an option of agentd worker (jobs come "
                                           "from the queue: agentd submit)"
                                         : "unexpected argument '%s'",
                             a);
            if (strcmp(name, "-q") == 0 || strcmp(name, "--quiet") == 0)
                w->quiet = true;
            argv[out++] = argv[i];
            if (takes && !eq && i + 1 < *argc)
                argv[out++] = argv[++i];
            continue;
        }
        if (eq)
            v = eq + 1;
        else if (i + 1 < *argc)
            v = argv[++i];
        else
            return usage("option '%s' needs a value", a);
        double d;
        if (strcmp(name, "--redis") == 0) {
            w->redis = v;
        } else if (strcmp(name, "--group") == 0) {
            w->group = v;
        } else if (strcmp(name, "--prefix") == 0) {
            w->prefix = v;
        } else if (strcmp(name, "--name") == 0) {
            w->name = v;
        } else if (strcmp(name, "--concurrency") == 0) {
            if (!number(v, 1, 10000, &d) || d != (int)d)
                return usage("--concurrency wants a number from 1 to 10000, not '%s'", v);
            w->concurrency = (int)d;
        } else if (strcmp(name, "--max-deliveries") == 0) {
            if (!number(v, 1, 1000, &d) || d != (int)d)
                return usage("--max-deliveries wants a number from 1 to 1000, not '%s'", v);
            w->max_deliveries = (int)d;
        } else if (strcmp(name, "--lease") == 0) {
            if (!number(v, 0.05, 86400, &d))
                return usage("--lease wants seconds from 0.05 to 86400, not '%s'", v);
            w->lease_s = d;
        } else if (strcmp(name, "--grace") == 0) {
            if (!number(v, 0, 86400, &d))
                return usage("--grace wants seconds from 0 to 86400, not '%s'", v);
            w->grace_s = d;
        } else if (strcmp(name, "--keep") == 0) {
            if (!number(v, 0, 1e9, &d))
                return usage("--keep wants seconds (0: never expire), not '%s'", v);
            w->keep_s = d;
        }
    }
    argv[out] = NULL;
    *argc = out;
    if (!w->redis)
        return usage("%s", "agentd worker needs --redis URL (redis://HOST:PORT)");
    return -1;
}

/* ---- running ------------------------------------------------------------ */

typedef struct wstate {
    ad_worker *w;
    const ad_worker_cli *o;
    uv_signal_t term, intr;
    int signals;
    bool drained;
} wstate;

static void on_log(void *ud, int level, const char *msg)
{
    const ad_worker_cli *o = ud;
    if (level == AD_WORKER_INFO && o->quiet)
        return;
    fprintf(stderr, "agentd: worker: %s%s\n",
            level == AD_WORKER_ERROR ? "error: " : level == AD_WORKER_WARN ? "warning: " : "", msg);
}

static void on_drained(void *ud)
{
    wstate *s = ud;
    s->drained = true;
    uv_stop(s->term.loop);
}

static void on_signal(uv_signal_t *h, int sig)
{
    wstate *s = h->data;
    (void)sig;
    if (s->signals++ == 0) {
        if (!s->o->quiet)
            fprintf(stderr, "agentd: worker: stopping: no new jobs; running ones may finish for "
                            "%g s, then they are handed back\n",
                    s->o->grace_s);
        ad_worker_drain(s->w, s->o->grace_s, on_drained, s);
    } else {
        if (!s->o->quiet)
            fprintf(stderr, "agentd: worker: handing the running jobs back now\n");
        ad_worker_drain(s->w, 0, on_drained, s);
    }
}

int ad_worker_cli_run(const ad_worker_cli *o, uv_loop_t *loop, ad_transport *transport,
                      const ad_config *cfg, ad_tool_host *tools)
{
    char err[1024];
    ad_redis_url url;
    if (ad_redis_url_parse(&url, o->redis, err, sizeof err) != AD_OK) {
        fprintf(stderr, "agentd: %s\n", err);
        return 2;
    }
    ad_jobrunner_opts ro = {loop, transport, cfg, tools, o->quiet};
    ad_jobrunner *runner = ad_jobrunner_new(&ro);
    wstate s = {.o = o};
    ad_worker_opts wo = {.loop = loop,
                         .url = &url,
                         .prefix = o->prefix,
                         .group = o->group,
                         .consumer = o->name,
                         .concurrency = o->concurrency,
                         .lease_s = o->lease_s,
                         .max_deliveries = o->max_deliveries,
                         .keep_s = o->keep_s,
                         .runner = ad_jobrunner_vt(),
                         .runner_ud = runner,
                         .log = on_log,
                         .log_ud = (void *)o};
    s.w = runner ? ad_worker_new(&wo, err, sizeof err) : NULL;
    if (s.w && !o->quiet)
        fprintf(stderr, "agentd: worker %s: up to %d job(s) at once from %s (group %s)\n",
                ad_worker_consumer(s.w), o->concurrency, url.shown, o->group);
    ad_redis_url_free(&url);
    if (!s.w) {
        fprintf(stderr, "agentd: worker: %s\n", runner ? err : "out of memory");
        ad_jobrunner_free(runner);
        uv_run(loop, UV_RUN_NOWAIT);
        return strstr(err, "--") ? 2 : 1;
    }
    uv_signal_init(loop, &s.term);
    uv_signal_init(loop, &s.intr);
    s.term.data = s.intr.data = &s;
    uv_signal_start(&s.term, on_signal, SIGTERM);
    uv_signal_start(&s.intr, on_signal, SIGINT);
    for (sig_atomic_t i = 0; i < early_signals && i < 2; i++)
        on_signal(&s.term, SIGTERM);
    while (!s.drained)
        uv_run(loop, UV_RUN_DEFAULT);
    ad_worker_stats st;
    ad_worker_get_stats(s.w, &st);
    if (!o->quiet)
        fprintf(stderr, "agentd: worker %s: stopped: %lu attempt(s) begun (%lu taken over), %lu "
                        "finished, %lu handed back, %lu lost, %lu dead-lettered\n",
                ad_worker_consumer(s.w), st.taken, st.taken_over, st.finished, st.handed_back,
                st.lost, st.dead);
    uv_close((uv_handle_t *)&s.term, NULL);
    uv_close((uv_handle_t *)&s.intr, NULL);
    ad_worker_free(s.w);
    ad_jobrunner_free(runner);
    uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}

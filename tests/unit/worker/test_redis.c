/*
 * test_redis.c -- the Redis connection (worker/redis.c) against a real
 * redis-server of the test's own: order, scripts, a lost connection
 * (requests sent again or failed), a server that stops answering, no busy
 * loop while it is down, and the redis:// URL.
 */
#include "../../harness.h"
#include "redis_server.h"

#include "base/buf.h"
#include "worker/redis.h"

#include <uv.h>

/* ---- URLs ---------------------------------------------------------------- */

TEST(url_forms)
{
    char err[512];
    ad_redis_url u;
    CHECK_EQ(ad_redis_url_parse(&u, "redis://127.0.0.1:6380/2", err, sizeof err), 0);
    CHECK_STREQ(u.host, "127.0.0.1");
    CHECK_EQ(u.port, 6380);
    CHECK_EQ(u.db, 2);
    CHECK(u.password == NULL || getenv("AGENTD_REDIS_PASSWORD"));
    CHECK_STREQ(u.shown, "redis://127.0.0.1:6380/2");
    ad_redis_url_free(&u);

    CHECK_EQ(ad_redis_url_parse(&u, "redis://bob:s%40cret@db.local", err, sizeof err), 0);
    CHECK_STREQ(u.user, "bob");
    CHECK_STREQ(u.password, "s@cret");
    CHECK_EQ(u.port, 6379);
    CHECK(strstr(u.shown, "cret") == NULL);
    ad_redis_url_free(&u);

    CHECK_EQ(ad_redis_url_parse(&u, "redis://:pw@[::1]:7000", err, sizeof err), 0);
    CHECK(u.user == NULL);
    CHECK_STREQ(u.password, "pw");
    CHECK_STREQ(u.host, "::1");
    CHECK_EQ(u.port, 7000);
    CHECK_STREQ(u.shown, "redis://[::1]:7000");
    ad_redis_url_free(&u);

    CHECK_EQ(ad_redis_url_parse(&u, "unix:///run/redis.sock?db=3", err, sizeof err), 0);
    CHECK_STREQ(u.path, "/run/redis.sock");
    CHECK_EQ(u.db, 3);
    ad_redis_url_free(&u);
}

TEST(url_errors_name_the_problem_not_the_password)
{
    char err[512];
    ad_redis_url u;
    static const struct {
        const char *url, *want;
    } bad[] = {
        {"http://x", "must start with redis://"},
        {"rediss://x", "TLS"},
        {"redis://", "no host"},
        {"redis://h:0", "port"},
        {"redis://h:99999", "port"},
        {"redis://h:12x", "port"},
        {"redis://h/x", "database number"},
        {"redis://u:p%zz@h", "malformed"},
        {"unix://relative", "absolute"},
        {"unix:///s?x=1", "?db=N"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_EQ(ad_redis_url_parse(&u, bad[i].url, err, sizeof err), AD_EINVAL);
        if (!strstr(err, bad[i].want))
            fprintf(stderr, "  %s: %s\n", bad[i].url, err);
        CHECK(strstr(err, bad[i].want) != NULL);
    }
    CHECK_EQ(ad_redis_url_parse(&u, "redis://u:topsecret@h:bad", err, sizeof err), AD_EINVAL);
    CHECK(strstr(err, "topsecret") == NULL);
}

/* ---- a connection -------------------------------------------------------- */

typedef struct ctx {
    uv_loop_t *loop;
    int ups, downs;
    char replies[16][128];
    int nreplies;
    int nulls;
    bool stop_on_down, stop_on_up;
    int want_replies;
} ctx;

static void on_state(void *ud, bool up, const char *why)
{
    ctx *c = ud;
    (void)why;
    if (up)
        c->ups++;
    else
        c->downs++;
    if ((up && c->stop_on_up) || (!up && c->stop_on_down))
        uv_stop(c->loop);
}

static void on_reply(void *ud, redisReply *r)
{
    ctx *c = ud;
    if (!r) {
        c->nulls++;
    } else if (c->nreplies < 16) {
        const char *s = ad_redis_str(r, NULL);
        if (s)
            snprintf(c->replies[c->nreplies], 128, "%s", s);
        else if (r->type == REDIS_REPLY_INTEGER)
            snprintf(c->replies[c->nreplies], 128, "%lld", r->integer);
        else if (r->type == REDIS_REPLY_ERROR)
            snprintf(c->replies[c->nreplies], 128, "ERR:%s", r->str);
        else
            snprintf(c->replies[c->nreplies], 128, "type%d", r->type);
        c->nreplies++;
    }
    if (c->nreplies + c->nulls >= c->want_replies)
        uv_stop(c->loop);
}

static int cmd(ad_redis *r, unsigned flags, ctx *c, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    int argc = a2 ? 3 : a1 ? 2 : 1;
    return ad_redis_command(r, flags, on_reply, c, argc, argv, NULL);
}

static void stop_loop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until a callback stops it, or s seconds have passed (a
 * deadline against a hang for the tests that wait for an event; the
 * measure itself for run_for). */
static void run_for(uv_loop_t *loop, double s)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop_cb, (uint64_t)(s * 1000), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

#define run_until run_for

static ad_redis *open_redis(ctx *c, uv_loop_t *loop, const char *url, bool reconnect,
                            ad_redis_script *const *scripts, size_t n, double reply_s)
{
    char err[256];
    ad_redis_url u;
    if (ad_redis_url_parse(&u, url, err, sizeof err) != 0)
        return NULL;
    ad_redis_opts o = {.loop = loop,
                       .url = &u,
                       .reconnect = reconnect,
                       .reply_timeout_s = reply_s,
                       .scripts = scripts,
                       .nscripts = n,
                       .on_state = on_state,
                       .ud = c};
    ad_redis *r = ad_redis_new(&o, err, sizeof err);
    if (!r)
        fprintf(stderr, "ad_redis_new: %s\n", err);
    ad_redis_url_free(&u);
    return r;
}

static void close_redis(ad_redis *r, uv_loop_t *loop)
{
    ad_redis_close(r);
    uv_run(loop, UV_RUN_DEFAULT);
}

TEST(commands_in_order)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop};
    ad_redis *r = open_redis(&c, &loop, s.url, true, NULL, 0, 0);
    CHECK(r != NULL);
    /* Made before the connection is up: they wait, then go in order. */
    CHECK_EQ(cmd(r, 0, &c, "SET", "k", "1"), 0);
    CHECK_EQ(cmd(r, 0, &c, "INCR", "k", NULL), 0);
    CHECK_EQ(cmd(r, 0, &c, "GET", "k", NULL), 0);
    CHECK_EQ(cmd(r, 0, &c, "NOSUCHCOMMAND", NULL, NULL), 0);
    c.want_replies = 4;
    run_until(&loop, 10);
    CHECK_EQ(c.nreplies, 4);
    CHECK_STREQ(c.replies[0], "OK");
    CHECK_STREQ(c.replies[1], "2");
    CHECK_STREQ(c.replies[2], "2");
    CHECK(strncmp(c.replies[3], "ERR:", 4) == 0);
    CHECK_EQ(c.ups, 1);
    CHECK(ad_redis_up(r));
    close_redis(r, &loop);
    CHECK_EQ(uv_loop_close(&loop), 0);
    rsrv_stop(&s);
}

static ad_redis_script incr_script = {"incr", "return redis.call('INCRBY', KEYS[1], ARGV[1])", ""};

TEST(scripts_are_loaded_at_every_connection)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop};
    ad_redis_script *scripts[] = {&incr_script};
    ad_redis *r = open_redis(&c, &loop, s.url, true, scripts, 1, 0);
    const char *a[2] = {"n", "5"};
    CHECK_EQ(ad_redis_eval(r, &incr_script, AD_REDIS_RETRY, on_reply, &c, 1, 2, a, NULL), 0);
    c.want_replies = 1;
    run_until(&loop, 10);
    CHECK_STREQ(c.replies[0], "5");
    CHECK_EQ(strlen(incr_script.sha), 40);
    /* Flushed behind the connection's back: the request is not lost, the
     * connection is made again, the script loaded again, the request sent
     * again. */
    CHECK_EQ(cmd(r, 0, &c, "SCRIPT", "FLUSH", NULL), 0);
    CHECK_EQ(ad_redis_eval(r, &incr_script, AD_REDIS_RETRY, on_reply, &c, 1, 2, a, NULL), 0);
    c.want_replies = 3;
    run_until(&loop, 10);
    CHECK_EQ(c.nreplies, 3);
    CHECK_STREQ(c.replies[1], "OK");
    CHECK_STREQ(c.replies[2], "10");
    CHECK_EQ(c.ups, 2);
    close_redis(r, &loop);
    uv_loop_close(&loop);
    rsrv_stop(&s);
}

TEST(lost_connection_sends_retry_requests_again_and_fails_the_others)
{
    rsrv s;
    if (!rsrv_start(&s, true))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop, .stop_on_up = true};
    ad_redis *r = open_redis(&c, &loop, s.url, true, NULL, 0, 0);
    run_until(&loop, 10);
    CHECK_EQ(c.ups, 1);
    c.stop_on_up = false;

    rsrv_kill(&s);
    c.stop_on_down = true;
    run_until(&loop, 10); /* the connection notices */
    CHECK_EQ(c.downs, 1);
    c.stop_on_down = false;
    /* While it is down: these wait (RETRY) or will fail (not RETRY). */
    CHECK_EQ(cmd(r, AD_REDIS_RETRY, &c, "SET", "a", "1"), 0);
    CHECK_EQ(cmd(r, 0, &c, "SET", "b", "1"), 0);
    CHECK_EQ(cmd(r, AD_REDIS_RETRY, &c, "INCR", "a", NULL), 0);
    /* No busy loop: over 1.5 s of outage the backoff (0.1 s doubling,
     * jitter 50-100%) allows a handful of attempts, not thousands. */
    run_for(&loop, 1.5);
    CHECK_EQ(c.nulls, 1); /* the one without RETRY */
    CHECK_EQ(c.nreplies, 0);
    CHECK_EQ(ad_redis_pending(r), 2);
    CHECK(rsrv_run(&s));
    c.want_replies = 3; /* 1 null + 2 replies */
    run_until(&loop, 20);
    CHECK_EQ(c.nreplies, 2);
    CHECK_STREQ(c.replies[0], "OK");
    CHECK_STREQ(c.replies[1], "2");
    CHECK_EQ(c.ups, 2);
    CHECK_EQ(c.downs, 1); /* one outage, told once */
    close_redis(r, &loop);
    uv_loop_close(&loop);
    rsrv_stop(&s);
}

TEST(attempts_while_down_are_few)
{
    /* Nothing listens on this port. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop};
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rsrv_free_port());
    ad_redis *r = open_redis(&c, &loop, url, true, NULL, 0, 0);
    CHECK(r != NULL);
    run_for(&loop, 2.0);
    CHECK_EQ(c.downs, 1);
    CHECK_EQ(c.ups, 0);
    /* Waits of 0.1 s doubling (jitter 50-100%): at most 7 attempts fit in
     * 2 s; a busy loop makes thousands. */
    unsigned long n = ad_redis_attempts(r);
    CHECK(n >= 2 && n <= 8);
    if (n < 2 || n > 8)
        fprintf(stderr, "  %lu connection attempts in 2 s\n", n);
    close_redis(r, &loop);
    uv_loop_close(&loop);
}

TEST(without_reconnect_everything_fails_once)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop, .stop_on_up = true};
    ad_redis *r = open_redis(&c, &loop, s.url, false, NULL, 0, 0);
    run_until(&loop, 10);
    c.stop_on_up = false;
    rsrv_kill(&s);
    CHECK_EQ(cmd(r, AD_REDIS_RETRY, &c, "BLPOP", "nothing", "5"), 0);
    c.want_replies = 1;
    run_until(&loop, 10);
    CHECK_EQ(c.nulls, 1);
    CHECK_EQ(c.downs, 1);
    CHECK_EQ(cmd(r, 0, &c, "PING", NULL, NULL), AD_ERR);
    close_redis(r, &loop);
    uv_loop_close(&loop);
    rsrv_stop(&s);
}

typedef struct stopper {
    ctx *c;
    rsrv *s;
} stopper;

static void on_state_cont(void *ud, bool up, const char *why)
{
    stopper *st = ud;
    (void)why;
    if (!up) {
        st->c->downs++;
        kill(st->s->pid, SIGCONT); /* it answers again from now on */
    } else {
        st->c->ups++;
    }
}

TEST(server_that_stops_answering_is_dropped_and_the_request_sent_again)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop};
    stopper st = {&c, &s};
    char err[256];
    ad_redis_url u;
    ad_redis_url_parse(&u, s.url, err, sizeof err);
    ad_redis_opts o = {.loop = &loop,
                       .url = &u,
                       .reconnect = true,
                       .reply_timeout_s = 0.3,
                       .connect_timeout_s = 0.3,
                       .on_state = on_state_cont,
                       .ud = &st};
    ad_redis *r = ad_redis_new(&o, err, sizeof err);
    ad_redis_url_free(&u);
    CHECK_EQ(cmd(r, AD_REDIS_RETRY, &c, "PING", NULL, NULL), 0);
    c.want_replies = 1;
    run_until(&loop, 10);
    CHECK_STREQ(c.replies[0], "PONG");
    kill(s.pid, SIGSTOP);
    CHECK_EQ(cmd(r, AD_REDIS_RETRY, &c, "INCR", "x", NULL), 0);
    c.want_replies = 2;
    run_until(&loop, 20);
    CHECK_EQ(c.downs, 1);
    CHECK_EQ(c.nreplies, 2);
    /* Sent on the dropped connection and again on the new one: INCR may
     * have run once or twice; what matters is that it was answered. */
    CHECK(strcmp(c.replies[1], "1") == 0 || strcmp(c.replies[1], "2") == 0);
    close_redis(r, &loop);
    uv_loop_close(&loop);
    rsrv_stop(&s);
}

static void close_from_reply(void *ud, redisReply *r)
{
    void **p = ud;
    (void)r;
    ad_redis_close(p[0]);
    p[1] = (void *)1;
}

static void count_null(void *ud, redisReply *r)
{
    int *n = ud;
    *n += r == NULL;
}

TEST(close_from_inside_a_reply)
{
    rsrv s;
    if (!rsrv_start(&s, false))
        SKIP(rsrv_why);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ctx c = {.loop = &loop};
    ad_redis *r = open_redis(&c, &loop, s.url, true, NULL, 0, 0);
    void *p[2] = {r, NULL};
    int nulls = 0;
    const char *ping[] = {"PING"};
    CHECK_EQ(ad_redis_command(r, 0, close_from_reply, p, 1, ping, NULL), 0);
    CHECK_EQ(ad_redis_command(r, AD_REDIS_RETRY, count_null, &nulls, 1, ping, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(p[1] != NULL);
    CHECK_EQ(nulls, 1);
    CHECK_EQ(uv_loop_close(&loop), 0);
    rsrv_stop(&s);
}

/* ---- the test's own server ----------------------------------------------- */

/* A test program that dies without stopping its redis-server (a crash, a
 * failed CHECK that ends it) must not leave the server running: it would
 * hold the test runner's output pipe open, and `make test` would wait for
 * ever. A child process starts a server and exits at once; the server holds
 * the write end of a pipe it inherited, so the read end sees EOF when it is
 * gone too. */
TEST(server_dies_with_the_test_that_started_it)
{
    if (!rsrv_have())
        SKIP("redis-server is not installed (Debian: redis-server)");
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    pid_t c = fork();
    if (c == 0) {
        close(fds[0]);
        rsrv s;
        if (!rsrv_start(&s, false))
            _exit(77);
        if (write(fds[1], &s, sizeof s) != (ssize_t)sizeof s)
            _exit(1);
        _exit(0); /* without rsrv_stop() */
    }
    close(fds[1]);
    int st = 0;
    CHECK_EQ(waitpid(c, &st, 0), c);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        close(fds[0]);
        SKIP(rsrv_why);
    }
    rsrv s;
    memset(&s, 0, sizeof s);
    CHECK_EQ(read(fds[0], &s, sizeof s), (ssize_t)sizeof s);
    struct pollfd pf = {.fd = fds[0], .events = POLLIN};
    char b;
    bool gone = poll(&pf, 1, 20000) == 1 && read(fds[0], &b, 1) == 0;
    CHECK(gone);
    close(fds[0]);
    if (!gone && s.pid > 0)
        kill(s.pid, SIGKILL); /* not a child of ours: nothing to wait for */
    s.pid = 0;
    rsrv_stop(&s); /* its folder */
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(url_forms);
    RUN(url_errors_name_the_problem_not_the_password);
    RUN(commands_in_order);
    RUN(scripts_are_loaded_at_every_connection);
    RUN(lost_connection_sends_retry_requests_again_and_fails_the_others);
    RUN(attempts_while_down_are_few);
    RUN(without_reconnect_everything_fails_once);
    RUN(server_that_stops_answering_is_dropped_and_the_request_sent_again);
    RUN(close_from_inside_a_reply);
    RUN(server_dies_with_the_test_that_started_it);
    return harness_report("test_redis");
}

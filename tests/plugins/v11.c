/*
 * v11.c -- test plugin of ABI 1.1: every tool uses call() and the per-call
 * context, and keeps its state in the plugin's data, not in statics.
 *
 *   count        (not thread-safe) answers 1, 2, 3, ... for its calls since init
 *   count_crash  crashes (SIGSEGV): a worker restarts from init afterwards
 *   greet        {"name": string} -> "<greeting>, <name>!" (greeting from the
 *                config, "Hello" without one)
 *   rendezvous   {"n": integer} (thread-safe) waits until n calls of it run at
 *                once (at most 20 s), then answers "met N"; "alone" otherwise
 *   later        {"ms": integer} (thread-safe) returns AGENTD_PENDING; a thread
 *                of its own reports progress, then completes after ms with
 *                "later <call id> <conversation id>"; a cancel completes it at
 *                once with "stopped"
 *   spin         {"ms": integer} (thread-safe) polls cancelled() for ms, then
 *                answers "spun" (or "noticed" when cancelled)
 *   values       describes its arguments as typed values (see describe())
 *   deadline     answers the call's deadline_ms(): "none" or "some"
 */
#define _POSIX_C_SOURCE 200809L
#include <agentd/plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct state {
    unsigned long count;
    char greeting[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waiting; /* rendezvous calls waiting */
    int met;     /* the size of the last group that met */
    struct later *laters; /* later calls not completed */
} state;

static state *st_of(const agentd_host_api *api, agentd_call *call)
{
    return api->plugin_data(api->call_plugin(call));
}

static int reply(const agentd_host_api *api, agentd_call *call, const char *text)
{
    return api->result_write(api->result(call), text, strlen(text));
}

static int count_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    char buf[32];
    snprintf(buf, sizeof buf, "%lu", ++st_of(api, call)->count);
    return reply(api, call, buf);
}

static int count_crash_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)api, (void)call, (void)data;
    volatile uintptr_t addr = 16;
    *(volatile int *)addr = 42;
    return AGENTD_ERR;
}

static int greet_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    size_t len;
    const char *name = api->value_string(api->arg(call, "name"), &len);
    if (name == NULL)
        return api->result_error(api->result(call), "name must be a string");
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s, %.*s!", st_of(api, call)->greeting, (int)len, name);
    return api->result_write(api->result(call), buf, (size_t)n);
}

static void add_ms(struct timespec *ts, int64_t ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int rendezvous_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    state *st = st_of(api, call);
    int64_t n = 2;
    api->value_int64(api->arg(call, "n"), &n);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    add_ms(&until, 20000);
    pthread_mutex_lock(&st->mu);
    st->waiting++;
    if (st->waiting >= n) {
        st->met = st->waiting;
        st->waiting = 0;
        pthread_cond_broadcast(&st->cv);
    } else {
        int met = st->met;
        while (st->met == met && !api->cancelled(call))
            if (pthread_cond_timedwait(&st->cv, &st->mu, &until) != 0)
                break;
        if (st->met == met) {
            st->waiting--;
            pthread_mutex_unlock(&st->mu);
            return reply(api, call, "alone");
        }
    }
    char buf[32];
    snprintf(buf, sizeof buf, "met %d", st->met);
    pthread_mutex_unlock(&st->mu);
    return reply(api, call, buf);
}

typedef struct later {
    struct later *next;
    const agentd_host_api *api;
    agentd_call *call;
    state *st;
    int64_t ms;
    pthread_cond_t cv;
    int stop;
} later;

static void *later_thread(void *arg)
{
    later *l = arg;
    const agentd_host_api *api = l->api;
    state *st = l->st;
    api->progress(l->call, 1, 2, "halfway");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    add_ms(&until, l->ms);
    pthread_mutex_lock(&st->mu);
    while (!l->stop && pthread_cond_timedwait(&l->cv, &st->mu, &until) == 0)
        ;
    int stopped = l->stop;
    pthread_mutex_unlock(&st->mu);
    char buf[200];
    snprintf(buf, sizeof buf, "later %s %s", api->call_id(l->call),
             api->conversation_id(l->call));
    reply(api, l->call, stopped ? "stopped" : buf);
    api->complete(l->call, AGENTD_OK); /* the call is gone now; l stays ours */
    pthread_mutex_lock(&st->mu);
    for (later **pp = &st->laters; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    pthread_mutex_unlock(&st->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return NULL;
}

static int later_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    later *l = calloc(1, sizeof *l);
    if (l == NULL)
        return AGENTD_ENOMEM;
    l->api = api;
    l->call = call;
    l->st = st_of(api, call);
    api->value_int64(api->arg(call, "ms"), &l->ms);
    pthread_cond_init(&l->cv, NULL);
    pthread_mutex_lock(&l->st->mu);
    l->next = l->st->laters;
    l->st->laters = l;
    pthread_mutex_unlock(&l->st->mu);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&th, &at, later_thread, l);
    pthread_attr_destroy(&at);
    if (e != 0) {
        pthread_mutex_lock(&l->st->mu);
        l->st->laters = l->next;
        pthread_mutex_unlock(&l->st->mu);
        pthread_cond_destroy(&l->cv);
        free(l);
        return AGENTD_ERR;
    }
    return AGENTD_PENDING;
}

static void later_cancel(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    state *st = st_of(api, call);
    pthread_mutex_lock(&st->mu);
    for (later *l = st->laters; l; l = l->next)
        if (l->call == call) {
            l->stop = 1;
            pthread_cond_signal(&l->cv);
        }
    pthread_mutex_unlock(&st->mu);
}

static int spin_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    int64_t ms = 0;
    api->value_int64(api->arg(call, "ms"), &ms);
    for (int64_t i = 0; i < ms; i += 5) {
        if (api->cancelled(call))
            return reply(api, call, "noticed");
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    return reply(api, call, "spun");
}

/* One line per argument, in order: "NAME TYPE DETAIL". */
static void describe(const agentd_host_api *api, agentd_call *call, const char *name,
                     const agentd_value *v, char *buf, size_t cap)
{
    size_t at = strlen(buf);
    static const char *const types[] = {"none", "null", "bool", "int", "double",
                                        "string", "array", "object"};
    int t = api->value_type(v);
    int64_t i;
    double d;
    int b;
    size_t len;
    const char *s;
    char detail[128] = "";
    int rc = api->value_int64(v, &i);
    if (rc == AGENTD_OK)
        snprintf(detail, sizeof detail, "int64=%" PRId64, i);
    else if (rc == AGENTD_ERANGE)
        snprintf(detail, sizeof detail, "int64=ERANGE");
    else if (api->value_double(v, &d) == AGENTD_OK)
        snprintf(detail, sizeof detail, "double=%g", d);
    else if (api->value_bool(v, &b) == AGENTD_OK)
        snprintf(detail, sizeof detail, "bool=%d", b);
    else if ((s = api->value_string(v, &len)) != NULL)
        snprintf(detail, sizeof detail, "len=%zu", len);
    else if (t == AGENTD_VALUE_ARRAY)
        snprintf(detail, sizeof detail, "len=%zu first=%s", api->value_len(v),
                 types[api->value_type(api->value_at(v, 0))]);
    else if (t == AGENTD_VALUE_OBJECT) {
        void *it = NULL;
        const char *key;
        size_t k = 0;
        int pos = snprintf(detail, sizeof detail, "len=%zu keys=", api->value_len(v));
        while (api->value_next(v, &it, &key) && pos < (int)sizeof detail)
            pos += snprintf(detail + pos, sizeof detail - (size_t)pos, "%s%s", k++ ? "," : "", key);
    }
    (void)call;
    snprintf(buf + at, cap - at, "%s %s %s\n", name, t >= 0 && t <= 7 ? types[t] : "?", detail);
}

static int values_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    char buf[4096] = "";
    const agentd_value *args = api->args(call);
    void *it = NULL;
    const char *key;
    const agentd_value *v;
    while ((v = api->value_next(args, &it, &key)) != NULL)
        describe(api, call, key, v, buf, sizeof buf);
    describe(api, call, "absent", api->arg(call, "no such argument"), buf, sizeof buf);
    return reply(api, call, buf);
}

static int deadline_call(const agentd_host_api *api, agentd_call *call, void *data)
{
    (void)data;
    return reply(api, call, api->deadline_ms(call) < 0 ? "none" : "some");
}

static void state_free(void *p)
{
    state *st = p;
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen);

AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "needs plugin ABI 1.1");
        return AGENTD_EABI;
    }
    state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return AGENTD_ENOMEM;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    size_t len;
    const char *g = api->value_string(api->value_get(api->config(self), "greeting"), &len);
    snprintf(st->greeting, sizeof st->greeting, "%.*s", g ? (int)len : 5, g ? g : "Hello");
    api->set_plugin_data(self, st, state_free);

    static const char obj[] = "{\"type\":\"object\"}";
    static const char name_schema[] =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":"
        "[\"name\"]}";
    static const char ms_schema[] =
        "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\"}}}";
    static const char n_schema[] =
        "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}";
    const struct {
        const char *name, *params;
        uint32_t flags;
        agentd_call_fn fn;
        agentd_cancel_fn cancel;
    } tools[] = {
        {"count", obj, 0, count_call, NULL},
        {"count_crash", obj, 0, count_crash_call, NULL},
        {"greet", name_schema, AGENTD_TOOL_THREADSAFE, greet_call, NULL},
        {"rendezvous", n_schema, AGENTD_TOOL_THREADSAFE, rendezvous_call, NULL},
        {"later", ms_schema, AGENTD_TOOL_THREADSAFE, later_call, later_cancel},
        {"spin", ms_schema, AGENTD_TOOL_THREADSAFE, spin_call, NULL},
        {"values", obj, AGENTD_TOOL_THREADSAFE, values_call, NULL},
        {"deadline", obj, AGENTD_TOOL_THREADSAFE, deadline_call, NULL},
    };
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        agentd_call_tool t = {
            .size = sizeof t,
            .name = tools[i].name,
            .description = "ABI 1.1 test tool",
            .parameters = tools[i].params,
            .flags = tools[i].flags,
            .call = tools[i].fn,
            .cancel = tools[i].cancel,
        };
        int rc = api->register_call_tool(self, &t);
        if (rc != AGENTD_OK)
            return rc;
    }
    return AGENTD_OK;
}

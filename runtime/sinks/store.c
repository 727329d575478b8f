/*
 * store.c -- the session store sink (see store.h).
 *
 * Data flow: event -> job for the writer (store/writer.h) -> the writer's
 * report on the loop thread -> a failure warned once, and the paused
 * conversation resumed once the message it waits for is done.
 *
 * A deep copy on the loop thread; serialising, redacting and writing on
 * the writer. json-c objects cannot be shared with another thread (their
 * reference counts are not atomic, and serialising writes into the
 * object), so the writer must get a message of its own. A deep copy is the
 * cheapest way there: a message is a handful of nodes, and its strings
 * (where a large tool result lives) are copied with memcpy, where
 * serialising would escape them byte by byte (bench/bench_store: 64 KiB of
 * content, about 4 times cheaper for the loop than serialising it). The
 * redaction, which has to build another copy when it finds the key, runs on
 * the writer too.
 */
#include "sinks/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "store/writer.h"

typedef struct store_sink {
    ad_sink base;
    ad_session *s;
    ad_store_writer *w;
    json_object *fork; /* HISTORY not stored yet: the conversation's messages */
    uint64_t wait;     /* the message job the conversation waits for; 0: none */
    bool warned;
} store_sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void warn_once(store_sink *st, const char *msg)
{
    if (st->warned)
        return;
    st->warned = true;
    if (st->base.hub)
        ad_events_warn(st->base.hub, "%s", msg);
}

static void on_report(void *ud, uint64_t done, const char *failure)
{
    store_sink *st = ud;
    if (failure)
        warn_once(st, failure);
    if (st->wait && done >= st->wait) {
        st->wait = 0;
        ad_store_writer_hold_loop(st->w, false);
        if (st->base.hub)
            ad_events_resume(st->base.hub, &st->base);
    }
}

static void no_memory(store_sink *st)
{
    const char *name = ad_session_name(st->s);
    ad_buf b = AD_BUF_INIT;
    ad_buf_printf(&b, "session '%s' is not being saved: out of memory", name ? name : "?");
    warn_once(st, b.data ? b.data : "a session is not being saved: out of memory");
    ad_buf_free(&b);
}

/* A copy no other thread holds any part of (writer.h). */
static json_object *own_copy(json_object *o)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(o, &copy, NULL) != 0)
        return NULL;
    return copy;
}

static int store_event(ad_sink *s, const ad_event *ev)
{
    store_sink *st = (store_sink *)s;
    switch (ev->kind) {
    case AD_EV_MESSAGE: {
        double t = now_s();
        if (st->fork) {
            /* The replaced conversation goes on in a new session. */
            json_object *h = own_copy(st->fork);
            json_object_put(st->fork);
            st->fork = NULL;
            if (!h || !ad_store_writer_fork(st->w, h, t))
                no_memory(st);
        }
        json_object *m = own_copy(ev->message);
        uint64_t seq = m ? ad_store_writer_message(st->w, m, ev->step, t) : 0;
        if (!seq) {
            no_memory(st);
            return AD_SINK_OK;
        }
        st->wait = seq;
        ad_store_writer_hold_loop(st->w, true);
        return AD_SINK_PAUSE;
    }
    case AD_EV_HISTORY: {
        json_object_put(st->fork);
        st->fork = NULL;
        /* Its members as they are now: the agent's array grows on. */
        json_object *a = json_object_new_array();
        size_t n = json_object_is_type(ev->message, json_type_array)
                       ? json_object_array_length(ev->message)
                       : 0;
        for (size_t i = 0; a && i < n; i++)
            json_object_array_add(a, json_object_get(json_object_array_get_idx(ev->message, i)));
        st->fork = a;
        if (!a)
            no_memory(st);
        break;
    }
    case AD_EV_TOOL_RESULT:
        if (!ad_store_writer_tool_result(st->w, ev->id, ev->is_error, ev->seconds))
            no_memory(st);
        break;
    case AD_EV_STEP_FINISH: {
        ad_session_usage u;
        ad_session_usage_of(ev->usage, &u);
        if (!ad_store_writer_step(st->w, ev->step, ev->finish_reason, &u, now_s()))
            no_memory(st);
        break;
    }
    default:
        break;
    }
    return AD_SINK_OK;
}

static void store_close(ad_sink *s)
{
    store_sink *st = (store_sink *)s;
    ad_store_writer_stop(st->w); /* everything queued is on disk; reports */
    json_object_put(st->fork);
    ad_session_close(st->s);
    free(st);
}

static const ad_sink_vt store_vt = {store_event, store_close};

ad_sink *ad_store_sink_new(uv_loop_t *loop, ad_session *s, char *err, size_t errlen)
{
    store_sink *st = calloc(1, sizeof *st);
    if (!st) {
        ad_errf(err, errlen, "out of memory");
        return NULL;
    }
    st->base.vt = &store_vt;
    st->s = s;
    if (ad_store_writer_start(&st->w, loop, s, on_report, st, err, errlen) != AD_OK) {
        free(st);
        return NULL;
    }
    return &st->base;
}

/*
 * test_backpressure.c -- a sink that cannot keep up pauses the agent's
 * transfer instead of growing memory.
 *
 * The mock provider (tests/mock/server.py) streams a long answer: NDELTAS
 * deltas of DELTA bytes, 4 MiB in all. A slow sink returns AD_SINK_PAUSE
 * after every PAUSE_EVERY text events and resumes from a uv timer: the
 * first pause lasts long_ms() (long enough for the whole answer to cross the
 * loopback many times over, were it read), the others a millisecond. A
 * sampling timer reads how many bytes of events the hub holds while
 * paused. Every byte of the answer must arrive once, in order, the held
 * bytes must stay below HELD_BOUND (curl stopped reading: what the hub
 * holds is what the agent had in hand when it was told to stop, one write
 * of curl's at most), and the idle timeout (shorter than the long pause)
 * must not fire: a paused transfer is silent by our choice.
 *
 * a_run_cancelled_while_paused_ends: the run is cancelled from the sink's
 * event that pauses; it ends (on_done) without waiting for the sink, and
 * its last events reach the sink when it resumes.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "../mock.h"
#include "base/buf.h"
#include "core/agent.h"
#include "provider/curl.h"

#define NDELTAS 4096
#define DELTA 1024
#define PAUSE_EVERY 256
#define HELD_BOUND (128u << 10)

/* The idle timeout and the first pause, longer than it. The idle timeout
 * also covers the wait for the first bytes (the mock builds a 4 MiB
 * answer): long enough for a machine under load. Under valgrind (found
 * through LD_PRELOAD) or a sanitizer everything is slower: both grow so
 * that the timeout still never fires for slowness alone. */
static bool slow_build(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return (pre && strstr(pre, "vgpreload")) || getenv("AGENTD_SANITIZED");
}

static double idle_s(void)
{
    return slow_build() ? 4.0 : 1.5;
}

static uint64_t long_ms(void)
{
    return slow_build() ? 5000 : 2000;
}

/* The delta i: its number, then filler, a line break every eighth. */
static void delta_text(ad_buf *b, int i)
{
    char head[16];
    int n = snprintf(head, sizeof head, "<%05d>", i);
    ad_buf_append(b, head, (size_t)n);
    for (int k = n; k < DELTA - 1; k++)
        ad_buf_putc(b, (char)('a' + (i + k) % 26));
    ad_buf_putc(b, i % 8 == 7 ? '\n' : ' ');
}

static char *long_answer_script(ad_buf *want)
{
    ad_buf s = AD_BUF_INIT;
    ad_buf_puts(&s, "{\"responses\": [{\"status\": 200, \"sse\": [");
    for (int i = 0; i < NDELTAS; i++) {
        ad_buf d = AD_BUF_INIT;
        delta_text(&d, i);
        ad_buf_append(want, d.data, d.len);
        /* The filler needs no JSON escaping but the line break. */
        ad_buf_puts(&s, "{\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":"
                        "0,\"delta\":{\"content\":\"");
        if (d.data[d.len - 1] == '\n') {
            ad_buf_append(&s, d.data, d.len - 1);
            ad_buf_puts(&s, "\\n");
        } else {
            ad_buf_append(&s, d.data, d.len);
        }
        ad_buf_puts(&s, "\"},\"finish_reason\":null}]},");
        ad_buf_free(&d);
    }
    ad_buf_puts(&s, "{\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                    "\"delta\":{},\"finish_reason\":\"stop\"}]},\"[DONE]\"]}]}");
    return ad_buf_steal(&s);
}

typedef struct slow {
    ad_sink base;
    uv_timer_t resume, sample;
    ad_buf text;
    int ntext;
    int pauses;
    bool paused;
    size_t max_held;
    int samples_paused; /* samples taken while paused */
    int end_status;     /* -1 until END */
    ad_agent *cancel_at_first_pause;
} slow;

static void on_resume(uv_timer_t *t)
{
    slow *w = t->data;
    w->paused = false;
    ad_events_resume(w->base.hub, &w->base);
}

static void on_sample(uv_timer_t *t)
{
    slow *w = t->data;
    size_t h = ad_events_held(w->base.hub);
    if (h > w->max_held)
        w->max_held = h;
    if (w->paused)
        w->samples_paused++;
}

static int slow_event(ad_sink *s, const ad_event *ev)
{
    slow *w = (slow *)s;
    if (ev->kind == AD_EV_END)
        w->end_status = ev->status;
    if (ev->kind == AD_EV_ERROR)
        fprintf(stderr, "  error: %.*s\n", (int)ev->len, ev->text);
    if (ev->kind != AD_EV_TEXT)
        return AD_SINK_OK;
    ad_buf_append(&w->text, ev->text, ev->len);
    if (++w->ntext % PAUSE_EVERY)
        return AD_SINK_OK;
    w->paused = true;
    uv_timer_start(&w->resume, on_resume, w->pauses++ == 0 ? long_ms() : 1, 0);
    if (w->cancel_at_first_pause && w->pauses == 1)
        ad_agent_cancel(w->cancel_at_first_pause);
    return AD_SINK_PAUSE;
}

static const ad_sink_vt slow_vt = {slow_event, NULL};

typedef struct run {
    int status;
    bool done;
} run;

static void on_done(void *ud, int status)
{
    run *r = ud;
    r->status = status;
    r->done = true;
}

static void run_long_answer(bool cancel)
{
    ad_buf want = AD_BUF_INIT;
    char *script = long_answer_script(&want);
    mock_proc m;
    int started = mock_start(&m, script);
    free(script);
    CHECK_EQ(started, 0);
    if (started != 0) {
        ad_buf_free(&want);
        return;
    }
    ad_config cfg;
    ad_config_init(&cfg);
    ad_buf url = AD_BUF_INIT;
    ad_buf_printf(&url, "http://127.0.0.1:%d/v1", m.port);
    cfg.base_url = ad_buf_steal(&url);
    cfg.model = ad_strdup("test-model");
    cfg.max_retries = 0;
    cfg.timeout_s = 60;
    cfg.idle_timeout_s = idle_s(); /* shorter than the long pause */
    cfg.max_response_bytes = 64L << 20;

    uv_loop_t loop;
    uv_loop_init(&loop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ad_transport *http = ad_curl_new(&loop);
    ad_events *e = ad_events_new();
    slow w;
    memset(&w, 0, sizeof w);
    w.base.vt = &slow_vt;
    w.end_status = -1;
    uv_timer_init(&loop, &w.resume);
    uv_timer_init(&loop, &w.sample);
    w.resume.data = w.sample.data = &w;
    ad_events_add(e, &w.base);
    ad_agent_opts o = {&loop, http, &cfg, NULL, e};
    ad_agent *a = ad_agent_new(&o);
    CHECK(a != NULL);
    if (cancel)
        w.cancel_at_first_pause = a;
    run r = {AD_RUN_FAILED, false};
    uv_timer_start(&w.sample, on_sample, 5, 5);
    CHECK_EQ(ad_agent_run(a, "Write at length.", on_done, &r), AD_OK);
    while ((!r.done || ad_events_paused(e)) && uv_run(&loop, UV_RUN_ONCE)) {
    }
    uv_timer_stop(&w.sample);
    printf("backpressure: %d text events, %zu bytes, %d pauses, at most %zu bytes held "
           "(%d samples while paused)\n",
           w.ntext, w.text.len, w.pauses, w.max_held, w.samples_paused);
    CHECK(r.done);
    CHECK(w.max_held < HELD_BOUND);
    CHECK(w.samples_paused > 0);
    if (!cancel) {
        CHECK_EQ(r.status, AD_RUN_OK);
        CHECK_EQ(w.end_status, AD_RUN_OK);
        CHECK_EQ(w.text.len, want.len);
        CHECK(w.text.len == want.len && memcmp(w.text.data, want.data, want.len) == 0);
        CHECK(w.pauses >= NDELTAS / PAUSE_EVERY - 1);
    } else {
        CHECK_EQ(r.status, AD_RUN_CANCELLED);
        CHECK_EQ(w.end_status, AD_RUN_CANCELLED);
        CHECK_EQ(w.pauses, 1);
        /* What was shown is a start of the answer. */
        CHECK(w.text.len <= want.len && memcmp(w.text.data, want.data, w.text.len) == 0);
    }
    ad_agent_free(a);
    ad_events_remove(e, &w.base);
    ad_events_free(e);
    uv_close((uv_handle_t *)&w.resume, NULL);
    uv_close((uv_handle_t *)&w.sample, NULL);
    ad_transport_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    curl_global_cleanup();
    mock_stop(&m);
    ad_config_free(&cfg);
    ad_buf_free(&w.text);
    ad_buf_free(&want);
}

TEST(a_paused_sink_stops_the_transfer_and_loses_nothing)
{
    run_long_answer(false);
}

TEST(a_run_cancelled_while_paused_ends)
{
    run_long_answer(true);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(a_paused_sink_stops_the_transfer_and_loses_nothing);
    RUN(a_run_cancelled_while_paused_ends);
    return harness_report("test_backpressure");
}

/*
 * test_events.c -- the event hub: every sink sees every event in order,
 * every string field redacted once (text deltas and conversation messages
 * excepted), pausing holds later events (copied) and tells the producer,
 * resuming delivers them, events emitted during a delivery wait their
 * turn, the approval flag, and the close order.
 */
#include <stdlib.h>
#include <string.h>

#include "../../harness.h"
#include "base/buf.h"
#include "core/events.h"

static const char *const kinds[] = {"text",        "step_start", "tool_call", "approval",
                                    "progress",    "result",     "step_finish", "retry",
                                    "finish",      "end",        "error",     "warn",
                                    "message",     "history"};

/* Writes what it sees into a log: "name:kind id name text reason usage;" */
typedef struct rec {
    ad_sink base;
    const char *tag;
    ad_buf log;
    int pause_at;  /* returns AD_SINK_PAUSE at this event (1-based); 0: never */
    int seen;
    ad_events *emit_into; /* emits a warning from its first event there */
    int *closed;          /* counts closes, in order */
    int close_order;
} rec;

static int rec_event(ad_sink *s, const ad_event *ev)
{
    rec *r = (rec *)s;
    r->seen++;
    ad_buf_printf(&r->log, "%s:%s", r->tag, kinds[ev->kind]);
    if (ev->id)
        ad_buf_printf(&r->log, " id=%s", ev->id);
    if (ev->name)
        ad_buf_printf(&r->log, " name=%s", ev->name);
    if (ev->text)
        ad_buf_printf(&r->log, " text=%.*s", (int)ev->len, ev->text);
    if (ev->finish_reason)
        ad_buf_printf(&r->log, " reason=%s", ev->finish_reason);
    if (ev->usage)
        ad_buf_printf(&r->log, " usage=%s", json_object_to_json_string(ev->usage));
    if (ev->message)
        ad_buf_printf(&r->log, " message=%s", json_object_to_json_string(ev->message));
    if (ev->conv_id)
        ad_buf_printf(&r->log, " conv=%s", ev->conv_id);
    ad_buf_puts(&r->log, ";");
    if (r->emit_into && r->seen == 1)
        ad_events_warn(r->emit_into, "from %s", r->tag);
    return r->pause_at && r->seen == r->pause_at ? AD_SINK_PAUSE : AD_SINK_OK;
}

static void rec_close(ad_sink *s)
{
    rec *r = (rec *)s;
    if (r->closed)
        r->close_order = ++*r->closed;
    if (r->emit_into)
        ad_events_warn(r->emit_into, "closing %s", r->tag);
}

static const ad_sink_vt rec_vt = {rec_event, rec_close};

static void rec_init(rec *r, const char *tag)
{
    memset(r, 0, sizeof *r);
    r->base.vt = &rec_vt;
    r->tag = tag;
}

static const char *logof(rec *r)
{
    return r->log.data ? r->log.data : "";
}

typedef struct flow {
    ad_buf calls;
} flow;

static void on_flow(void *ud, bool paused)
{
    flow *f = ud;
    ad_buf_puts(&f->calls, paused ? "P" : "R");
}

TEST(every_sink_sees_every_event_in_order)
{
    ad_events *e = ad_events_new();
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_step_start(e, 1, true);
    ad_events_text(e, 1, "Hel", 3);
    ad_events_text(e, 1, "lo", 2);
    ad_events_tool_call(e, 1, "c1", "add", "{}", 2, false);
    ad_events_tool_result(e, 1, "c1", "add", "5", 1, false, 0.5);
    ad_events_finish(e, 1, "Hello", 5, NULL);
    ad_events_end(e, 1, 0);
    CHECK_STREQ(logof(&a), "a:step_start;a:text text=Hel;a:text text=lo;a:tool_call id=c1 "
                           "name=add text={};a:result id=c1 name=add text=5;a:finish "
                           "text=Hello;a:end;");
    CHECK_EQ(b.seen, 7);
    CHECK(!ad_events_paused(e));
    ad_events_remove(e, &a.base);
    ad_events_remove(e, &b.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
}

TEST(every_string_is_redacted_but_deltas_and_messages)
{
    const char *key = "sk-secret-123";
    ad_events *e = ad_events_new();
    ad_events_set_secret(e, key);
    ad_events_set_conv_id(e, "conv-1");
    rec a;
    rec_init(&a, "a");
    ad_events_add(e, &a.base);
    ad_events_tool_call(e, 2, "id-sk-secret-123", "n-sk-secret-123", "{\"k\":\"sk-secret-123\"}",
                        21, false);
    ad_events_approval(e, 2, "sk-secret-123", "t", "sk-secret-123", 13);
    ad_events_tool_progress(e, 2, "c", "t", 1, 2, "at sk-secret-123");
    ad_events_tool_result(e, 2, "c", "t", "sk-secret-123!", 14, true, 1);
    json_object *u = json_tokener_parse("{\"note\":\"sk-secret-123\",\"sk-secret-123\":1}");
    ad_events_step_finish(e, 2, "sk-secret-123", u);
    ad_events_retry(e, 2, 1, "why sk-secret-123", 0.5);
    ad_events_finish(e, 2, "sk-secret-123", 13, u);
    ad_events_error(e, "bad %s", key);
    ad_events_warn(e, "odd %s", key);
    ad_events_fail(e, "config sk-secret-123");
    /* Deltas arrive redacted (the agent holds back a key prefix): as they are. */
    ad_events_text(e, 2, "sk-secret-123", 13);
    json_object *m = json_tokener_parse("{\"role\":\"user\",\"content\":\"sk-secret-123\"}");
    ad_events_message(e, 2, m);
    const char *log = logof(&a);
    /* Only the delta and the message still hold the key. */
    size_t n = 0;
    for (const char *p = log; (p = strstr(p, key)) != NULL; p++)
        n++;
    CHECK_EQ(n, 2);
    CHECK(strstr(log, "a:text text=sk-secret-123 conv=conv-1;") != NULL);
    CHECK(strstr(log, "a:message message={ \"role\": \"user\", \"content\": \"sk-secret-123\" }") !=
          NULL);
    CHECK(strstr(log, "a:tool_call id=id-[REDACTED] name=n-[REDACTED] text={\"k\":\"[REDACTED]\"}") !=
          NULL);
    CHECK(strstr(log, "a:approval id=[REDACTED] name=t text=[REDACTED]") != NULL);
    CHECK(strstr(log, "a:progress id=c name=t text=at [REDACTED]") != NULL);
    CHECK(strstr(log, "a:result id=c name=t text=[REDACTED]!") != NULL);
    CHECK(strstr(log, "a:step_finish reason=[REDACTED] usage={ \"note\": \"[REDACTED]\", "
                      "\"[REDACTED]\": 1 }") != NULL);
    CHECK(strstr(log, "a:retry text=why [REDACTED]") != NULL);
    CHECK(strstr(log, "a:finish text=[REDACTED] usage=") != NULL);
    CHECK(strstr(log, "a:error text=bad [REDACTED]") != NULL);
    CHECK(strstr(log, "a:warn text=odd [REDACTED]") != NULL);
    CHECK(strstr(log, "a:error text=config [REDACTED]") != NULL);
    /* The producer's own objects are left as they were. */
    CHECK(strstr(json_object_to_json_string(u), key) != NULL);
    json_object_put(u);
    json_object_put(m);
    ad_events_remove(e, &a.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
}

TEST(a_paused_sink_holds_later_events_until_it_resumes)
{
    ad_events *e = ad_events_new();
    flow f = {AD_BUF_INIT};
    ad_events_set_flow(e, on_flow, &f);
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    a.pause_at = 2;
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_text(e, 1, "one", 3);
    ad_events_text(e, 1, "two", 3); /* a pauses here: b still gets it */
    CHECK_STREQ(f.calls.data, "P");
    CHECK(ad_events_paused(e));
    char buf[8];
    memcpy(buf, "three", 6);
    ad_events_text(e, 1, buf, 5);
    memcpy(buf, "XXXXX", 6); /* held as a copy */
    json_object *arr = json_tokener_parse("[{\"role\":\"user\",\"content\":\"a\"}]");
    ad_events_history(e, arr);
    json_object_array_add(arr, json_tokener_parse("{\"role\":\"assistant\",\"content\":\"b\"}"));
    json_object *u = json_tokener_parse("{\"total_tokens\":1}");
    ad_events_step_finish(e, 1, "stop", u);
    json_object_object_add(u, "total_tokens", json_object_new_int(99));
    CHECK_STREQ(logof(&a), "a:text text=one;a:text text=two;");
    CHECK_STREQ(logof(&b), "b:text text=one;b:text text=two;");
    CHECK(ad_events_held(e) > 0);
    ad_events_resume(e, &a.base);
    CHECK_STREQ(f.calls.data, "PR");
    CHECK(!ad_events_paused(e));
    CHECK_EQ(ad_events_held(e), 0);
    CHECK_STREQ(logof(&b), "b:text text=one;b:text text=two;b:text text=three;b:history "
                           "message=[ { \"role\": \"user\", \"content\": \"a\" } ];b:step_finish "
                           "reason=stop usage={ \"total_tokens\": 1 };");
    CHECK_EQ(a.seen, 5);
    /* Resuming twice, or a sink that never paused, changes nothing. */
    ad_events_resume(e, &a.base);
    ad_events_resume(e, &b.base);
    CHECK_STREQ(f.calls.data, "PR");
    json_object_put(arr);
    json_object_put(u);
    ad_events_remove(e, &a.base);
    ad_events_remove(e, &b.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
    ad_buf_free(&f.calls);
}

TEST(removing_a_paused_sink_releases_what_was_held)
{
    ad_events *e = ad_events_new();
    flow f = {AD_BUF_INIT};
    ad_events_set_flow(e, on_flow, &f);
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    a.pause_at = 1;
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_warn(e, "one");
    ad_events_warn(e, "two");
    CHECK_EQ(b.seen, 1);
    ad_events_remove(e, &a.base);
    CHECK_EQ(b.seen, 2);
    CHECK_STREQ(f.calls.data, "PR");
    ad_events_remove(e, &b.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
    ad_buf_free(&f.calls);
}

TEST(an_event_emitted_during_a_delivery_waits_its_turn)
{
    ad_events *e = ad_events_new();
    flow f = {AD_BUF_INIT};
    ad_events_set_flow(e, on_flow, &f);
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    a.emit_into = e; /* warns from inside its first event */
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_text(e, 1, "x", 1);
    /* b sees the delta before the warning a caused. */
    CHECK_STREQ(logof(&b), "b:text text=x;b:warn text=from a;");
    CHECK_STREQ(logof(&a), "a:text text=x;a:warn text=from a;");
    /* The producer was told to hold still while the warning waited. */
    CHECK_STREQ(f.calls.data, "PR");
    CHECK(!ad_events_paused(e));
    ad_events_remove(e, &a.base);
    ad_events_remove(e, &b.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
    ad_buf_free(&f.calls);
}

TEST(the_approval_flag)
{
    ad_events *e = ad_events_new();
    rec a, p;
    rec_init(&a, "a");
    rec_init(&p, "p");
    p.base.flags = AD_SINK_APPROVES;
    CHECK(!ad_events_can_approve(e));
    ad_events_add(e, &a.base);
    CHECK(!ad_events_can_approve(e));
    ad_events_add(e, &p.base);
    CHECK(ad_events_can_approve(e));
    ad_events_remove(e, &p.base);
    CHECK(!ad_events_can_approve(e));
    ad_events_remove(e, &a.base);
    ad_events_free(e);
    /* No hub: nobody approves, nothing is paused, builders do nothing. */
    CHECK(!ad_events_can_approve(NULL));
    CHECK(!ad_events_paused(NULL));
    ad_events_text(NULL, 1, "x", 1);
    ad_events_warn(NULL, "x");
}

TEST(free_closes_first_to_last_and_a_close_reports_to_the_rest)
{
    ad_events *e = ad_events_new();
    int closed = 0;
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    a.closed = b.closed = &closed;
    a.emit_into = e;
    a.seen = 1; /* no warning from its first event */
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_free(e);
    CHECK_EQ(a.close_order, 1);
    CHECK_EQ(b.close_order, 2);
    CHECK_STREQ(logof(&b), "b:warn text=closing a;");
    CHECK_STREQ(logof(&a), "");
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
}

TEST(close_sink_reports_to_the_others_then_detaches)
{
    ad_events *e = ad_events_new();
    rec a, b;
    rec_init(&a, "a");
    rec_init(&b, "b");
    a.emit_into = e;
    a.seen = 1;
    ad_events_add(e, &a.base);
    ad_events_add(e, &b.base);
    ad_events_close_sink(e, &a.base);
    CHECK_STREQ(logof(&b), "b:warn text=closing a;");
    ad_events_close_sink(e, NULL); /* accepted */
    ad_events_warn(e, "later");
    CHECK_STREQ(logof(&a), "");
    ad_events_remove(e, &b.base);
    ad_events_free(e);
    ad_buf_free(&a.log);
    ad_buf_free(&b.log);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(every_sink_sees_every_event_in_order);
    RUN(every_string_is_redacted_but_deltas_and_messages);
    RUN(a_paused_sink_holds_later_events_until_it_resumes);
    RUN(removing_a_paused_sink_releases_what_was_held);
    RUN(an_event_emitted_during_a_delivery_waits_its_turn);
    RUN(the_approval_flag);
    RUN(free_closes_first_to_last_and_a_close_reports_to_the_rest);
    RUN(close_sink_reports_to_the_others_then_detaches);
    return harness_report("test_events");
}

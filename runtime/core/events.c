/*
 * events.c -- the event hub (see events.h).
 *
 * Data flow: a builder fills an ad_event on the stack -> ad_events_emit()
 * redacts its strings into temporary copies (text deltas are not scanned:
 * they arrive redacted) -> either every sink gets it at once (the usual
 * case: nothing held, nobody paused, no delivery in progress), or it is
 * copied to the tail of the held list. settle() delivers the held events in
 * order as long as nobody is paused, and tells the producer whether the hub
 * holds anything (the flow hook), only when that changed.
 *
 * Invariants:
 *  - A text delta that can be delivered at once costs no allocation.
 *  - Events are delivered in emission order; a delivery never nests inside
 *    another (depth > 0 means "hold").
 *  - flow_paused is what the producer was last told; false is only ever
 *    said at depth 0, after everything held was delivered.
 */
#include "core/events.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/text.h"

typedef struct held {
    struct held *next;
    size_t size; /* counted in held_bytes */
    ad_event ev; /* strings point into the block after it */
} held;

struct ad_events {
    ad_sink *sinks; /* in the order added */
    char *secret;
    size_t secret_len;
    char *conv_id;
    ad_events_flow_fn flow;
    void *flow_ud;
    bool flow_paused; /* what the producer was last told */
    unsigned npaused; /* sinks that returned AD_SINK_PAUSE and did not resume */
    unsigned depth;   /* deliveries in progress */
    held *head, *tail;
    size_t held_bytes;
    ad_event text_ev; /* the text delta's event, all but step/text/len set */
};

void ad_sink_close(ad_sink *s)
{
    if (s && s->vt && s->vt->close)
        s->vt->close(s);
}

ad_events *ad_events_new(void)
{
    ad_events *e = calloc(1, sizeof(ad_events));
    if (e)
        e->text_ev.kind = AD_EV_TEXT;
    return e;
}

static void held_free(held *h)
{
    json_object_put(h->ev.usage);
    json_object_put(h->ev.message);
    free(h);
}

static void unlink_sink(ad_events *e, ad_sink *s)
{
    for (ad_sink **pp = &e->sinks; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->paused) {
        s->paused = false;
        e->npaused--;
    }
    s->next = NULL;
    s->hub = NULL;
}

static void wipe_secret(ad_events *e)
{
    if (e->secret) {
        memset(e->secret, 0, e->secret_len);
        free(e->secret);
    }
    e->secret = NULL;
    e->secret_len = 0;
}

void ad_events_free(ad_events *e)
{
    if (!e)
        return;
    /* Nothing held is delivered any more; the producer is gone or going. */
    e->flow = NULL;
    while (e->head) {
        held *h = e->head;
        e->head = h->next;
        held_free(h);
    }
    e->tail = NULL;
    e->held_bytes = 0;
    while (e->sinks) {
        ad_sink *s = e->sinks;
        const ad_sink_vt *vt = s->vt;
        unlink_sink(e, s);
        s->hub = e; /* what it reports at its close goes to the ones after it */
        if (vt && vt->close)
            vt->close(s);
    }
    wipe_secret(e);
    free(e->conv_id);
    free(e);
}

void ad_events_add(ad_events *e, ad_sink *s)
{
    ad_sink **pp = &e->sinks;
    while (*pp)
        pp = &(*pp)->next;
    s->next = NULL;
    s->paused = false;
    s->hub = e;
    *pp = s;
}

static void settle(ad_events *e);

void ad_events_remove(ad_events *e, ad_sink *s)
{
    if (s->hub != e)
        return;
    unlink_sink(e, s);
    if (e->depth == 0)
        settle(e);
}

void ad_events_close_sink(ad_events *e, ad_sink *s)
{
    if (!s)
        return;
    if (s->hub != e) {
        ad_sink_close(s);
        return;
    }
    /* Its close may report (a store that could not write): it must not
     * get that report itself, nor be asked to pause the others. */
    const ad_sink_vt *vt = s->vt;
    ad_events_remove(e, s);
    s->hub = e;
    if (vt && vt->close)
        vt->close(s);
}

void ad_events_set_secret(ad_events *e, const char *secret)
{
    wipe_secret(e);
    if (secret && secret[0]) {
        e->secret = ad_strdup(secret);
        e->secret_len = e->secret ? strlen(secret) : 0;
    }
}

const char *ad_events_secret(const ad_events *e)
{
    return e->secret;
}

void ad_events_set_conv_id(ad_events *e, const char *id)
{
    free(e->conv_id);
    e->conv_id = id ? ad_strdup(id) : NULL;
    e->text_ev.conv_id = e->conv_id;
}

void ad_events_set_flow(ad_events *e, ad_events_flow_fn fn, void *ud)
{
    if (!e)
        return;
    e->flow = fn;
    e->flow_ud = ud;
    e->flow_paused = false;
}

bool ad_events_paused(const ad_events *e)
{
    return e && (e->head != NULL || e->npaused > 0);
}

bool ad_events_delivering(const ad_events *e)
{
    return e && e->depth > 0;
}

size_t ad_events_held(const ad_events *e)
{
    return e->held_bytes;
}

bool ad_events_can_approve(const ad_events *e)
{
    for (const ad_sink *s = e ? e->sinks : NULL; s; s = s->next)
        if (s->flags & AD_SINK_APPROVES)
            return true;
    return false;
}

/* Tells the producer when what it should do changed. */
static void tell(ad_events *e, bool paused)
{
    if (e->flow_paused == paused)
        return;
    e->flow_paused = paused;
    if (e->flow)
        e->flow(e->flow_ud, paused);
}

static inline void deliver(ad_events *e, const ad_event *ev)
{
    e->depth++;
    for (ad_sink *s = e->sinks, *next; s; s = next) {
        next = s->next;
        if (s->vt->event(s, ev) == AD_SINK_PAUSE && !s->paused && s->hub == e) {
            s->paused = true;
            e->npaused++;
        }
    }
    e->depth--;
}

/* Delivers what is held while nobody is paused; then tells the producer.
 * Only at depth 0. */
static void settle(ad_events *e)
{
    while (e->head && e->npaused == 0) {
        held *h = e->head;
        e->head = h->next;
        if (!e->head)
            e->tail = NULL;
        e->held_bytes -= h->size;
        deliver(e, &h->ev);
        held_free(h);
    }
    tell(e, ad_events_paused(e));
}

void ad_events_resume(ad_events *e, ad_sink *s)
{
    if (!s->paused || s->hub != e)
        return;
    s->paused = false;
    e->npaused--;
    if (e->depth == 0)
        settle(e);
}

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *put(char **p, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *d = *p;
    memcpy(d, s, n);
    *p += n;
    return d;
}

/* Copies ev (already redacted) to the tail of the held list. */
static void hold(ad_events *e, const ad_event *ev)
{
    size_t nconv = slen(ev->conv_id), nid = slen(ev->id), nname = slen(ev->name);
    size_t nreason = slen(ev->finish_reason), ntext = ev->text ? ev->len + 1 : 0;
    size_t size = sizeof(held) + nconv + nid + nname + nreason + ntext;
    held *h = malloc(size);
    if (!h)
        return; /* out of memory: lost, like an event a full disk drops */
    h->next = NULL;
    h->size = size;
    h->ev = *ev;
    char *p = (char *)(h + 1);
    h->ev.conv_id = put(&p, ev->conv_id, nconv);
    h->ev.id = put(&p, ev->id, nid);
    h->ev.name = put(&p, ev->name, nname);
    h->ev.finish_reason = put(&p, ev->finish_reason, nreason);
    if (ev->text) {
        memcpy(p, ev->text, ev->len);
        p[ev->len] = '\0';
        h->ev.text = p;
    }
    /* Usage is small and the producer may change its totals later. */
    h->ev.usage = NULL;
    if (ev->usage && json_object_deep_copy(ev->usage, &h->ev.usage, NULL) != 0)
        h->ev.usage = NULL;
    /* A message never changes once appended; the conversation array does
     * (it grows): HISTORY keeps its members as they are now. */
    h->ev.message = NULL;
    if (ev->kind == AD_EV_HISTORY && json_object_is_type(ev->message, json_type_array)) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < json_object_array_length(ev->message); i++)
            json_object_array_add(a, json_object_get(json_object_array_get_idx(ev->message, i)));
        h->ev.message = a;
    } else if (ev->message) {
        h->ev.message = json_object_get(ev->message);
    }
    if (e->tail)
        e->tail->next = h;
    else
        e->head = h;
    e->tail = h;
    e->held_bytes += size;
}

/* Hands ev on: at once, or held. */
static void pass(ad_events *e, const ad_event *ev)
{
    if (!e->head && e->npaused == 0 && e->depth == 0) {
        deliver(e, ev);
        settle(e);
        return;
    }
    hold(e, ev);
    if (e->depth == 0)
        settle(e);
    else
        tell(e, true); /* settled when the delivery in progress is over */
}

static const char *redacted(ad_events *e, const char *s, size_t len, char **owned, size_t *out_len)
{
    *owned = NULL;
    if (!s || !e->secret)
        return s;
    size_t rl;
    char *r = ad_redact(s, len, e->secret, &rl);
    if (!r)
        return s;
    *owned = r;
    if (out_len)
        *out_len = rl;
    return r;
}

void ad_events_emit(ad_events *e, ad_event *ev)
{
    if (!e)
        return;
    ad_event x = *ev;
    x.conv_id = e->conv_id;
    char *own[4] = {NULL, NULL, NULL, NULL};
    json_object *usage = NULL;
    if (e->secret) {
        x.id = redacted(e, x.id, x.id ? strlen(x.id) : 0, &own[0], NULL);
        x.name = redacted(e, x.name, x.name ? strlen(x.name) : 0, &own[1], NULL);
        x.finish_reason = redacted(e, x.finish_reason,
                                   x.finish_reason ? strlen(x.finish_reason) : 0, &own[2], NULL);
        if (x.kind != AD_EV_TEXT)
            x.text = redacted(e, x.text, x.len, &own[3], &x.len);
        /* The provider's values are passed on: a value can echo the key. */
        if (x.usage && (usage = ad_redact_json(x.usage, e->secret)) != NULL)
            x.usage = usage;
    }
    pass(e, &x);
    for (int i = 0; i < 4; i++)
        free(own[i]);
    json_object_put(usage);
}

/* ---- builders ----------------------------------------------------------- */

void ad_events_text(ad_events *e, int step, const char *text, size_t len)
{
    if (len == 0 || !e)
        return;
    /* The hot path: no redaction (events.h), no copy, an event that is
     * filled in already but for the delta. Only when nothing is held and no
     * delivery is in progress, so nobody still looks at the last one. */
    if (!e->head && e->npaused == 0 && e->depth == 0) {
        ad_event *ev = &e->text_ev;
        ev->step = step;
        ev->text = text;
        ev->len = len;
        deliver(e, ev);
        if (e->npaused || e->head)
            settle(e);
        return;
    }
    ad_event ev = {.kind = AD_EV_TEXT, .conv_id = e->conv_id, .step = step, .text = text,
                   .len = len};
    pass(e, &ev);
}

void ad_events_step_start(ad_events *e, int step, bool may_repeat)
{
    ad_event ev = {.kind = AD_EV_STEP_START, .step = step, .may_repeat = may_repeat};
    ad_events_emit(e, &ev);
}

void ad_events_tool_call(ad_events *e, int step, const char *id, const char *name,
                         const char *args, size_t args_len, bool not_run)
{
    ad_event ev = {.kind = AD_EV_TOOL_CALL, .step = step, .id = id, .name = name, .text = args,
                   .len = args_len, .not_run = not_run};
    ad_events_emit(e, &ev);
}

void ad_events_approval(ad_events *e, int step, const char *id, const char *name,
                        const char *args, size_t args_len)
{
    ad_event ev = {.kind = AD_EV_APPROVAL, .step = step, .id = id, .name = name, .text = args,
                   .len = args_len};
    ad_events_emit(e, &ev);
}

void ad_events_tool_progress(ad_events *e, int step, const char *id, const char *name,
                             double done, double total, const char *msg)
{
    ad_event ev = {.kind = AD_EV_TOOL_PROGRESS, .step = step, .id = id, .name = name,
                   .text = msg, .len = msg ? strlen(msg) : 0, .done = done, .total = total};
    ad_events_emit(e, &ev);
}

void ad_events_tool_result(ad_events *e, int step, const char *id, const char *name,
                           const char *content, size_t len, bool is_error, double seconds)
{
    ad_event ev = {.kind = AD_EV_TOOL_RESULT, .step = step, .id = id, .name = name,
                   .text = content ? content : "", .len = content ? len : 0,
                   .is_error = is_error, .seconds = seconds};
    ad_events_emit(e, &ev);
}

void ad_events_step_finish(ad_events *e, int step, const char *finish_reason, json_object *usage)
{
    ad_event ev = {.kind = AD_EV_STEP_FINISH, .step = step, .finish_reason = finish_reason,
                   .usage = usage};
    ad_events_emit(e, &ev);
}

void ad_events_retry(ad_events *e, int step, int attempt, const char *reason, double wait_s)
{
    ad_event ev = {.kind = AD_EV_RETRY, .step = step, .attempt = attempt,
                   .text = reason ? reason : "", .len = reason ? strlen(reason) : 0,
                   .seconds = wait_s};
    ad_events_emit(e, &ev);
}

void ad_events_finish(ad_events *e, int steps, const char *text, size_t len, json_object *usage)
{
    ad_event ev = {.kind = AD_EV_FINISH, .step = steps, .text = text ? text : "",
                   .len = text ? len : 0, .usage = usage};
    ad_events_emit(e, &ev);
}

void ad_events_end(ad_events *e, int step, int status)
{
    ad_event ev = {.kind = AD_EV_END, .step = step, .status = status};
    ad_events_emit(e, &ev);
}

void ad_events_message(ad_events *e, int step, json_object *msg)
{
    ad_event ev = {.kind = AD_EV_MESSAGE, .step = step, .message = msg};
    ad_events_emit(e, &ev);
}

void ad_events_history(ad_events *e, json_object *messages)
{
    ad_event ev = {.kind = AD_EV_HISTORY, .message = messages};
    ad_events_emit(e, &ev);
}

static void vmessage(ad_events *e, ad_event_kind kind, const char *fmt, va_list ap)
{
    ad_buf msg = AD_BUF_INIT;
    ad_buf_vprintf(&msg, fmt, ap);
    ad_event ev = {.kind = kind, .text = msg.data ? msg.data : "out of memory",
                   .len = msg.data ? msg.len : strlen("out of memory")};
    ad_events_emit(e, &ev);
    ad_buf_free(&msg);
}

void ad_events_error(ad_events *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(e, AD_EV_ERROR, fmt, ap);
    va_end(ap);
}

void ad_events_warn(ad_events *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(e, AD_EV_WARN, fmt, ap);
    va_end(ap);
}

void ad_events_fail(ad_events *e, const char *msg)
{
    ad_event ev = {.kind = AD_EV_ERROR, .text = msg, .len = strlen(msg), .outside = true};
    ad_events_emit(e, &ev);
}

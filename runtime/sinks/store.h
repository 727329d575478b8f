/*
 * store.h -- the session store as a sink: the conversation goes to SQLite
 * (store/session.h) through the writer thread (store/writer.h).
 *
 * What it learns from the events:
 *   MESSAGE      the message, stored in its own transaction (serialised
 *                here, on the loop thread; parsed, redacted and written on
 *                the writer thread)
 *   HISTORY      the conversation was replaced: the next message starts a
 *                new unnamed session holding the conversation as it then is
 *                (the old session keeps its history)
 *   TOOL_RESULT  is_error and the call's duration
 *   STEP_FINISH  the step's usage, finish reason and time
 *
 * Durability: the sink answers a MESSAGE with AD_SINK_PAUSE and resumes
 * when the writer has committed it. So until a message is on disk its
 * conversation holds still: no later event reaches any sink (stdout,
 * --json), no request carrying it goes out and no tool call it asks for
 * starts; the loop itself runs on. A write that fails is reported once, as
 * a warning through the hub ("session 'NAME' is not being saved: ..."), and
 * releases the conversation like a write that succeeded.
 */
#ifndef AD_SINKS_STORE_H
#define AD_SINKS_STORE_H

#include <stddef.h>
#include <uv.h>

#include "core/events.h"
#include "store/session.h"

/* A sink storing into s's current session; it takes s (closed with the
 * sink) and starts the writer on loop. NULL with err set (s is then still
 * the caller's). Closing it (ad_events_close_sink, while the loop can still
 * run: the writer's handle closes on it) waits until everything queued is
 * on disk and reports a failure not reported yet. */
ad_sink *ad_store_sink_new(uv_loop_t *loop, ad_session *s, char *err, size_t errlen);

#endif /* AD_SINKS_STORE_H */

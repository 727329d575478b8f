/*
 * jsonl.h -- the JSON Lines sink (--json): one JSON object per line on
 * `out`, each written with one fwrite and flushed, so a consumer reading
 * line by line never sees half an event:
 *   {"type":"text_delta","step":N,"text":...}
 *   {"type":"tool_call","step":N,"id":...,"name":...,"arguments":"..."}
 *   {"type":"tool_call",...,"not_run":true}   a call that will never run (the
 *        last step at max_steps): no tool_result follows; id is the
 *        provider's or null
 *   {"type":"tool_progress","step":N,"id":...,"name":...,"progress":P,
 *        "total":T|null,"message":...|null}   a running call's progress
 *   {"type":"tool_result","step":N,"id":...,"name":...,"content":...,"is_error":false}
 *   {"type":"step_finish","step":N,"finish_reason":...,"usage":{...}|null}
 *   {"type":"retry","step":N,"attempt":N,"reason":...,"wait_s":S}
 *   {"type":"finish","steps":N,"text":"<final text>","usage":{...}|null}
 *   {"type":"error","message":...}
 * usage has one shape everywhere: an object with the counters the provider
 * reported (prompt_tokens, completion_tokens, total_tokens, cost; in finish
 * the sums over the run), or null when it reported none. Invalid UTF-8 in a
 * string becomes U+FFFD, so every line is valid JSON.
 *
 * `err` gets what a person should see in any mode, as the text sink writes
 * it (sinks/text.h): errors (also as the error event) and warnings. Other
 * kinds of event (step starts, approvals, the run's end, messages) have no
 * line. Writes block, as the text sink's do.
 */
#ifndef AD_SINKS_JSONL_H
#define AD_SINKS_JSONL_H

#include <stdio.h>

#include "core/events.h"

/* A new sink writing to out and err (borrowed; they outlive it). NULL on
 * ENOMEM. Closing it frees it. */
ad_sink *ad_jsonl_sink_new(FILE *out, FILE *err);

#endif /* AD_SINKS_JSONL_H */

/*
 * test_text_sink.c -- the plain-text sink: the answer on out with a retried
 * step's text taken back (a file: truncated), activity lines on err (tool
 * lines one line each, control characters shown as '?', quiet drops them),
 * failures outside a run one "agentd: " line per line.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../harness.h"
#include "base/buf.h"
#include "core/events.h"
#include "sinks/text.h"

static char *contents(FILE *f)
{
    fflush(f);
    ad_buf b = AD_BUF_INIT;
    char tmp[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fileno(f), tmp, sizeof tmp, off)) > 0) {
        ad_buf_append(&b, tmp, (size_t)n);
        off += n;
    }
    ad_buf_putc(&b, '\0');
    return ad_buf_steal(&b);
}

TEST(a_run_as_a_person_reads_it)
{
    FILE *out = tmpfile(), *err = tmpfile();
    ad_events *e = ad_events_new();
    ad_events_add(e, ad_text_sink_new(out, err, false));
    ad_events_step_start(e, 1, true);
    ad_events_text(e, 1, "Let me think", 12);
    ad_events_retry(e, 1, 1, "HTTP 503 from x", 0.5);
    ad_events_step_start(e, 1, true);
    ad_events_text(e, 1, "Let me compute.", 15);
    const char *args = "{\n  \"a\": 2,\n  \"b\": \"\x1b[31m\"\n}";
    ad_events_tool_call(e, 1, "c1", "add", args, strlen(args), false);
    ad_events_tool_result(e, 1, "c1", "add", "5", 1, false, 0.0015);
    ad_events_step_finish(e, 1, "tool_calls", NULL);
    ad_events_step_start(e, 2, false);
    ad_events_text(e, 2, "The sum is 5.", 13);
    ad_events_warn(e, "the answer was cut short");
    ad_events_finish(e, 2, "The sum is 5.", 13, NULL);
    ad_events_end(e, 2, 0);
    ad_events_fail(e, "first\nsecond");
    ad_events_free(e);
    char *o = contents(out), *r = contents(err);
    CHECK_STREQ(o, "Let me compute.\nThe sum is 5.\n");
    CHECK_STREQ(r, "agentd: HTTP 503 from x; retrying in 0.5 s (attempt 1)\n"
                   "[tool] add {\"a\": 2, \"b\": \"?[31m\"}\n"
                   "[tool] add -> 5 (1.5 ms)\n"
                   "agentd: warning: the answer was cut short\n"
                   "agentd: first\n"
                   "agentd: second\n");
    free(o);
    free(r);
    fclose(out);
    fclose(err);
}

TEST(quiet_drops_tool_lines_not_errors)
{
    FILE *out = tmpfile(), *err = tmpfile();
    ad_events *e = ad_events_new();
    ad_events_add(e, ad_text_sink_new(out, err, true));
    ad_events_step_start(e, 1, false);
    ad_events_text(e, 1, "partial", 7);
    ad_events_tool_call(e, 1, "c1", "add", "{}", 2, true);
    ad_events_error(e, "max_steps (1) reached");
    ad_events_free(e);
    char *o = contents(out), *r = contents(err);
    CHECK_STREQ(o, "partial");
    CHECK_STREQ(r, "agentd: error: max_steps (1) reached\n");
    free(o);
    free(r);
    fclose(out);
    fclose(err);
}

int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(a_run_as_a_person_reads_it);
    RUN(quiet_drops_tool_lines_not_errors);
    return harness_report("test_text_sink");
}

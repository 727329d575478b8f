"""test_faults.py -- one case per network or provider fault (issue 5).

Each case makes the mock provider (or a socket of our own) misbehave in one
way and checks what agentd does: whether it retries, what it says, the exit
code, and that the API key never shows. docs/failures.md is the table these
cases back. Timeouts are fractions of a second and retry waits are 0
(provider.max_retry_wait_s = 0) unless a case is about the wait itself.
"""
import datetime
import email.utils
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 skip, spawn_agentd, write_config, TEST_KEY_ENV, WRAP)
from server import encode_event  # noqa: E402  (tests/mock, on the path lib set)

S = script
KEY = "sk-test-dummy"   # what lib.agentd_env() puts in AGENTD_TEST_KEY
ADD_ARGS = '{"a": 2, "b": 3}'
PROMPT = "Add and multiply the number 2 and 3"


def setup(tmp, m_or_url, plugins=("add", "multiply"), provider=None, **kw):
    name = "plugins_" + "_".join(plugins)
    pdir = os.path.join(tmp, name)
    if not os.path.isdir(pdir):
        make_plugin_dir(tmp, plugins, dirname=name)
    prov = {"max_retry_wait_s": 0}
    prov.update(provider or {})
    url = m_or_url if isinstance(m_or_url, str) else m_or_url.base_url
    return write_config(tmp, url, plugins_dir=os.path.basename(pdir), provider=prov,
                        agent={"max_steps": 10}, **kw)


def run_json(cfg, extra_args=(), **kw):
    return run_agentd(["--config", cfg, "--json", "-p", PROMPT] + list(extra_args), **kw)


def of_type(r, t):
    return [e for e in r.events if e.get("type") == t]


def chat(m):
    return [q for q in m.requests if q["path"].endswith("/chat/completions")]


def error_message(r):
    errs = of_type(r, "error")
    ok(errs, "an error event (stderr: %s)" % r.stderr)
    return errs[0]["message"]


def no_key(r):
    blob = r.stdout + r.stderr
    ok(KEY not in blob, "the key is not shown: %s" % blob[-3000:])
    # Nor any long piece of it.
    ok(KEY[:8] not in blob, "no piece of the key is shown")


def text_of(r, step=None):
    return "".join(e["text"] for e in of_type(r, "text_delta")
                   if step is None or e["step"] == step)


def calls_stream(**kw):
    return S.tool_call_stream([("c1", "add", ADD_ARGS), ("c2", "multiply", ADD_ARGS)], **kw)


# ---- connecting ----------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@case
def connect_refused_is_retried_then_fails(tmp):
    url = "http://127.0.0.1:%d/v1" % free_port()
    r = run_json(setup(tmp, url, max_retries=2))
    eq(r.rc, 1, "exit code")
    eq(len(of_type(r, "retry")), 2, "retry events")
    contains(error_message(r), "127.0.0.1", "names the URL")


@case
def connect_failure_then_success(tmp):
    # The first attempt finds nothing listening; the mock starts on that
    # port after the first retry event, while agentd waits to retry.
    from lib import agentd_cmd, agentd_env
    from server import MockServer
    port = free_port()
    cfg = setup(tmp, "http://127.0.0.1:%d/v1" % port, max_retries=5,
                provider={"max_retry_wait_s": 0.2})
    p = subprocess.Popen(agentd_cmd(["--config", cfg, "--json", "-p", "x"]), env=agentd_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline().decode()
    m = MockServer(S.script(S.text_stream("hello")), port=port).start()
    try:
        out, err = p.communicate(timeout=20)
    finally:
        m.stop()
    contains(first, '"type":"retry"', "first event")
    eq(p.returncode, 0, "exit code (%s)" % err.decode())
    contains(out.decode(), '"text":"hello"', "answer")


class StuckListener:
    """A listening socket whose accept queue is full and never drained, so a
    new connection attempt hangs in SYN_SENT: a connect timeout on loopback."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        time.sleep(0.05)

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


@case
def connect_timeout(tmp):
    st = StuckListener()
    try:
        cfg = setup(tmp, "http://127.0.0.1:%d/v1" % st.port,
                    provider={"connect_timeout_s": 0.3, "idle_timeout_s": 30})
        t0 = time.time()
        r = run_json(cfg)
        took = time.time() - t0
    finally:
        st.close()
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    contains(error_message(r), "provider.connect_timeout_s", "names the setting")
    ok(took < 5, "gave up in time (%.2f s)" % took)


# ---- timeouts while receiving --------------------------------------------------

@case
def idle_timeout_mid_stream_keeps_partial_text(tmp):
    resp = S.text_stream("Hello there friend", pieces=3)
    first = len(b"data: ") + len(__import__("json").dumps(resp["sse"][0], separators=(",", ":"),
                                                           ensure_ascii=False).encode()) + 2
    resp["hang_after"] = first
    with mock(S.script(calls_stream(), resp)) as m:
        cfg = setup(tmp, m, max_retries=2, provider={"idle_timeout_s": 0.3})
        t0 = time.time()
        r = run_json(cfg)
        took = time.time() - t0
        n = len(chat(m))
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    contains(error_message(r), "provider.idle_timeout_s", "names the setting")
    eq(text_of(r, 2), "Hello ", "partial text kept")
    eq(n, 2, "not retried: tools ran and text was shown")
    ok(took < 3, "idle timeout is sub-second precise (%.2f s)" % took)


@case
def idle_timeout_before_any_byte_is_retried(tmp):
    hang = S.text_stream("never", hang_after=0)
    with mock(S.script(hang, S.text_stream("hello"))) as m:
        cfg = setup(tmp, m, max_retries=1, provider={"idle_timeout_s": 0.25})
        r = run_json(cfg)
        n = len(chat(m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(n, 2, "requests")
    contains(of_type(r, "retry")[0]["reason"], "idle_timeout_s", "retry reason")


@case
def request_timeout_on_a_slow_stream(tmp):
    # The whole-request limit is opt-in (timeout_s, alias request_timeout_s);
    # the message names the key as the config reference spells it.
    slow = S.text_stream("a b c d e f g h i j k l m n o p", delay_ms=100)
    for key in ("timeout_s", "request_timeout_s"):
        with mock(S.script(slow)) as m:
            cfg = setup(tmp, m, timeout_s=None, provider={key: 0.5, "idle_timeout_s": 5})
            t0 = time.time()
            r = run_json(cfg)
            took = time.time() - t0
        eq(r.rc, 1, "%s: exit code (%s)" % (key, r.stderr))
        contains(error_message(r), "took longer than 0.5 s (provider.timeout_s)",
                 "%s: names the setting" % key)
        ok(text_of(r), "partial text shown")
        ok(took < 3, "stopped at the request timeout (%.2f s)" % took)


@case
def no_whole_request_limit_by_default(tmp):
    cfg = setup(tmp, "http://127.0.0.1:9/v1", timeout_s=None)
    r = run_agentd(["--check-config", cfg])
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    contains(r.stdout, "\ntimeout_s = 0\n", "a stream that still sends is never cut")
    contains(r.stdout, "\nidle_timeout_s = 120\n", "silence is bounded")


@case
def connection_reset_mid_stream_names_the_reset(tmp):
    # Reset right after the headers, and after the first event (three times:
    # whether the reset arrives with the data or on its own varies).
    first = len(encode_event(S.text_stream("Hello there friend", pieces=3)["sse"][0]))
    for after in (0, first, first, first):
        resp = S.text_stream("Hello there friend", pieces=3, reset_after=after)
        with mock(S.script(resp)) as m:
            r = run_json(setup(tmp, m, max_retries=0))
        eq(r.rc, 1, "exit code (%s)" % r.stderr)
        msg = error_message(r)
        contains(msg, "Connection reset by peer", "curl's own reason (reset after %d)" % after)
        ok("select/poll" not in msg, "not the poll layer's generic message: %s" % msg)
        contains(msg, m.base_url, "names the URL")
        no_key(r)


# ---- HTTP statuses and Retry-After ---------------------------------------------

@case
def retryable_statuses_are_retried(tmp):
    for status in (408, 409, 429, 500, 502, 503, 504):
        with mock(S.script(S.error(status, "try again"), S.text_stream("fine"))) as m:
            r = run_json(setup(tmp, m, max_retries=1))
            n = len(chat(m))
        eq(r.rc, 0, "HTTP %d: exit code (%s)" % (status, r.stderr))
        eq(n, 2, "HTTP %d: requests" % status)
        contains(of_type(r, "retry")[0]["reason"], "HTTP %d" % status, "retry reason")


@case
def client_errors_are_not_retried_and_say_what_to_check(tmp):
    hints = {400: "provider.model", 401: TEST_KEY_ENV, 403: TEST_KEY_ENV,
             404: "provider.base_url", 501: "HTTP 501"}
    for status, hint in hints.items():
        with mock(S.script(S.error(status, "nope"), S.text_stream("unused"))) as m:
            r = run_json(setup(tmp, m, max_retries=3))
            n = len(chat(m))
        eq(r.rc, 1, "HTTP %d: exit code" % status)
        eq(n, 1, "HTTP %d: not retried" % status)
        msg = error_message(r)
        contains(msg, "nope", "HTTP %d: provider's message" % status)
        contains(msg, hint, "HTTP %d: hint" % status)


@case
def retry_after_seconds_within_the_cap(tmp):
    sc = S.script(S.error(429, "slow down", retry_after="0.2"), S.text_stream("ok"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=1, provider={"max_retry_wait_s": 5}))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(of_type(r, "retry")[0]["wait_s"], 0.2, "Retry-After 0.2 s waited as asked")


@case
def retry_after_beyond_the_cap_fails_at_once(tmp):
    # Waiting the cap would only retry into the same limit: agentd says what
    # the provider asked for and stops, whatever retries are left.
    sc = S.script(S.error(429, "rate limited", retry_after="86400"), S.text_stream("unused"))
    with mock(sc) as m:
        t0 = time.time()
        r = run_json(setup(tmp, m, max_retries=3, provider={"max_retry_wait_s": 60}))
        took = time.time() - t0
        n = len(chat(m))
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    eq(n, 1, "not retried")
    eq(of_type(r, "retry"), [], "no retry event")
    ok(took < 10, "failed at once (%.1f s)" % took)
    msg = error_message(r)
    contains(msg, "HTTP 429 from %s" % m.base_url, "status and URL")
    contains(msg, "rate limited", "provider's message")
    contains(msg, "the provider asks to wait 86400 s, more than provider.max_retry_wait_s (60 s); "
                  "not retried", "names both waits")
    # retry-after-ms counts the same way.
    sc = S.script(S.error(503, "busy", headers={"retry-after-ms": "5000"}), S.text_stream("x"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=1, provider={"max_retry_wait_s": 2}))
        n = len(chat(m))
    eq(r.rc, 1, "retry-after-ms: exit code")
    eq(n, 1, "retry-after-ms: not retried")
    contains(error_message(r), "asks to wait 5 s, more than provider.max_retry_wait_s (2 s)",
             "retry-after-ms: message")


@case
def retry_after_ms_header(tmp):
    sc = S.script(S.error(503, "busy", headers={"retry-after-ms": "150"}), S.text_stream("ok"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=1, provider={"max_retry_wait_s": 5}))
    eq(r.rc, 0, "exit code")
    eq(of_type(r, "retry")[0]["wait_s"], 0.15, "retry-after-ms honoured")


@case
def retry_after_http_date(tmp):
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    future = email.utils.formatdate(time.time() + 3600, usegmt=True)
    sc = S.script(S.error(503, "busy", retry_after=past), S.error(429, "later", retry_after=future),
                  S.text_stream("ok"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=2, provider={"max_retry_wait_s": 0.2}))
        n = len(chat(m))
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    eq([e["wait_s"] for e in of_type(r, "retry")], [0], "a date in the past waits 0")
    eq(n, 2, "a date an hour ahead is not retried")
    wait = re.search(r"asks to wait (\d+) s", error_message(r))
    ok(wait and 3500 <= int(wait.group(1)) <= 3600, "the wait until the date: %s"
       % error_message(r))


@case
def backoff_with_jitter_without_retry_after(tmp):
    sc = S.script(S.error(500, "x"), S.error(500, "x"), S.text_stream("ok"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=2, provider={"max_retry_wait_s": 0.6}))
    eq(r.rc, 0, "exit code")
    w = [e["wait_s"] for e in of_type(r, "retry")]
    ok(0.25 <= w[0] <= 0.5, "first wait 0.5 s with jitter: %r" % w)
    ok(0.5 <= w[1] <= 0.6, "second wait doubled, capped: %r" % w)


@case
def retries_exhausted_exit_1(tmp):
    sc = S.script(*[S.error(503, "down")] * 3)
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code")
    eq(n, 3, "one try and two retries")
    contains(error_message(r), "503", "status in the message")


# ---- broken streams ------------------------------------------------------------

@case
def stream_cut_before_first_content_is_retried(tmp):
    cut = S.text_stream("Hello world", close_after=10)
    with mock(S.script(cut, S.text_stream("Hello world"))) as m:
        r = run_json(setup(tmp, m, max_retries=1))
        n = len(chat(m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(n, 2, "requests")
    eq(of_type(r, "finish")[0]["text"], "Hello world", "answer")


@case
def stream_cut_after_text_without_tools_repeats_the_step(tmp):
    full = S.text_stream("Hello brave new world", pieces=4)
    cut = dict(full, close_after=len(b"".join(
        __import__("server").encode_event(e) for e in full["sse"][:2])))
    with mock(S.script(cut, S.text_stream("Hello brave new world", pieces=4))) as m:
        r = run_json(setup(tmp, m, max_retries=1))
        reqs = chat(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(len(reqs), 2, "requests")
    eq(reqs[0]["body"], reqs[1]["body"], "the same request again")
    # Events: partial text of step 1, then retry (drop it), then the whole text.
    types = [e["type"] for e in r.events]
    ri = types.index("retry")
    before = "".join(e["text"] for e in r.events[:ri] if e["type"] == "text_delta")
    after = "".join(e["text"] for e in r.events[ri:] if e["type"] == "text_delta")
    ok(before and "Hello brave new world".startswith(before), "partial text first: %r" % before)
    eq(after, "Hello brave new world", "whole text after the retry event")
    eq(r.events[ri]["step"], 1, "the retry names the step to drop")
    contains(r.events[ri]["reason"], "partial", "reason says the partial step is dropped")
    eq(of_type(r, "finish")[0]["text"], "Hello brave new world", "final text")


@case
def stream_cut_after_tools_ran_fails_with_partial_text(tmp):
    cut = S.text_stream("The sum is five", pieces=4, finish=None, done=False)
    cut["framing"] = "close"
    with mock(S.script(calls_stream(), cut, S.text_stream("unused"))) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    eq(n, 2, "no retry once a tool ran")
    eq(text_of(r, 2), "The sum is five", "partial text kept")
    contains(error_message(r), "finish reason", "says the stream was cut")
    # Text mode keeps the partial answer on stdout too.
    with mock(S.script(calls_stream(), cut)) as m:
        t = run_agentd(["--config", setup(tmp, m, max_retries=2), "-p", PROMPT])
    eq(t.rc, 1, "text mode exit code")
    contains(t.stdout, "The sum is five", "partial text on stdout")


@case
def truncated_stream_without_finish_or_done(tmp):
    with mock(S.script(S.text_stream("half an", finish=None, done=False))) as m:
        r = run_json(setup(tmp, m, max_retries=0))
    eq(r.rc, 1, "exit code")
    contains(error_message(r), "finish reason", "message")
    eq(of_type(r, "finish"), [], "no finish event")


@case
def truncated_inside_tool_arguments(tmp):
    resp = S.tool_call_stream([("c1", "add", ADD_ARGS)], split_args=4, finish=None, done=False)
    resp["sse"] = resp["sse"][:3]
    with mock(S.script(resp)) as m:
        r = run_json(setup(tmp, m, max_retries=0))
    eq(r.rc, 1, "exit code")
    eq(of_type(r, "tool_result"), [], "no tool ran on half the arguments")


@case
def malformed_chunk_json_is_an_error_not_retried(tmp):
    resp = S.text_stream("Hi there")
    resp["sse"].insert(1, {"raw": 'data: {"choices": [{"delta": {"content": "x"}\n\n'})
    with mock(S.script(resp, S.text_stream("unused"))) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code")
    eq(n, 1, "a protocol error is not retried")
    msg = error_message(r)
    ok("JSON" in msg or "json" in msg, "says the JSON is bad: %s" % msg)


@case
def html_page_with_status_200(tmp):
    page = {"status": 200, "body": "<!DOCTYPE html><html><body>Sign in to the proxy</body></html>",
            "content_type": "text/html; charset=utf-8"}
    with mock(S.script(page)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "exit code")
    contains(error_message(r), "text/html", "names the Content-Type")


@case
def wrong_content_type(tmp):
    # An event stream labelled text/plain is recognised by its first bytes.
    with mock(S.script(S.text_stream("still fine", content_type="text/plain"))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "SSE as text/plain (%s)" % r.stderr)
    eq(of_type(r, "finish")[0]["text"], "still fine", "answer")
    # A JSON body with no Content-Type at all.
    with mock(S.script(S.message(content="plain json", content_type=None))) as m:
        r = run_json(setup(tmp, m, stream=False))
    eq(r.rc, 0, "JSON without Content-Type (%s)" % r.stderr)
    # An event stream labelled application/json is not JSON: an error naming both.
    with mock(S.script(S.text_stream("x", content_type="application/json"))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "SSE labelled JSON")
    contains(error_message(r), "application/json", "names the Content-Type")


@case
def empty_body_is_retried_then_fails(tmp):
    empty_json = {"status": 200, "body": ""}
    empty_sse = {"status": 200, "sse": []}
    with mock(S.script(empty_sse, empty_json, empty_json)) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code")
    eq(n, 3, "retried")
    contains(error_message(r), "empty response body", "message")
    with mock(S.script(empty_json, S.text_stream("recovered"))) as m:
        r = run_json(setup(tmp, m, max_retries=1))
    eq(r.rc, 0, "recovers after one empty body")


@case
def finish_length_in_text_warns_and_keeps_answer(tmp):
    with mock(S.script(S.text_stream("The answer is", finish="length"))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    eq(of_type(r, "finish")[0]["text"], "The answer is", "cut answer kept")
    contains(r.stderr, "max_tokens", "warning names the setting")


@case
def finish_length_inside_tool_arguments(tmp):
    resp = S.tool_call_stream([("c1", "add", '{"a": 2, "b"')], finish="length")
    with mock(S.script(resp, S.text_stream("unused"))) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code")
    eq(n, 1, "not retried")
    eq(of_type(r, "tool_result"), [], "no tool ran")
    contains(error_message(r), "max_tokens", "says what to raise")


@case
def error_event_mid_stream(tmp):
    resp = S.text_stream("Hel")
    resp["sse"].insert(1, {"raw": 'event: error\ndata: {"message": "overloaded"}\n\n'})
    with mock(S.script(resp)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "exit code")
    contains(error_message(r), "overloaded", "provider's message")


# ---- the API key ---------------------------------------------------------------

@case
def key_echoed_in_error_bodies_is_redacted(tmp):
    long_msg = "x" * 190 + " key=%KEY% " + "y" * 300   # the key straddles the 200-byte cut
    bodies = [
        {"status": 401, "body": {"error": {"message": "invalid key %KEY%"}}, "echo_key": True},
        {"status": 400, "body": "Bad key: %KEY% (plain text)", "content_type": "text/plain",
         "echo_key": True},
        {"status": 403, "body": long_msg, "content_type": "text/plain", "echo_key": True},
        {"status": 200, "body": "<html>%KEY%</html>", "content_type": "text/html",
         "echo_key": True},
    ]
    for b in bodies:
        with mock(S.script(b)) as m:
            r = run_json(setup(tmp, m))
            t = run_agentd(["--config", setup(tmp, m), "-p", "x"])
        eq(r.rc, 1, "exit code for %r" % b["status"])
        no_key(r)
        no_key(t)
    contains(r.stderr + r.stdout, "[REDACTED]", "marker")


@case
def key_echoed_in_streamed_text_is_redacted(tmp):
    # The key arrives split over three deltas, and whole in a tool argument.
    text = "your key is %KEY% ok"
    i = text.index("%KEY%")
    resp = S.text_stream(text, pieces=[text[:i], "%KEY%", text[i + 5:]])
    # Split the key itself: the mock replaces %KEY% before splitting into chunks.
    resp = S.text_stream("", pieces=["your key is ", KEY[:5], KEY[5:11], KEY[11:], " ok"])
    resp["echo_key"] = True
    err = S.text_stream("oops")
    err["sse"].insert(1, {"raw": 'event: error\ndata: {"message": "bad %KEY%"}\n\n'})
    err["echo_key"] = True
    for sc in (S.script(resp), S.script(err)):
        with mock(sc) as m:
            r = run_json(setup(tmp, m))
            t = run_agentd(["--config", setup(tmp, m), "-p", "x"])
        no_key(r)
        no_key(t)
    with mock(S.script(resp)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    eq(text_of(r), "your key is [REDACTED] ok", "redacted across deltas")


@case
def key_from_owner_only_file(tmp):
    keyfile = os.path.join(tmp, "key.txt")
    with open(keyfile, "w") as f:
        f.write("sk-file-secret-42\n")
    os.chmod(keyfile, 0o600)
    body = {"status": 401, "body": {"error": {"message": "no: %KEY%"}}, "echo_key": True}
    with mock(S.script(S.text_stream("hi"), body)) as m:
        cfg = setup(tmp, m, api_key_env=None, provider={"api_key_file": "key.txt"})
        r = run_json(cfg)
        auth = chat(m)[0]["headers"].get("authorization")
        r2 = run_json(cfg)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(auth, "Bearer sk-file-secret-42", "key sent from the file")
    eq(r2.rc, 1, "401 exit code")
    contains(error_message(r2), "api_key_file", "401 names the file")
    ok("sk-file-secret" not in r2.stdout + r2.stderr, "key from the file is redacted")
    os.chmod(keyfile, 0o644)
    r = run_json(cfg)
    eq(r.rc, 2, "group/world-readable key file refused")
    contains(r.stderr, "chmod 600", "says how to fix it")
    ok("sk-file-secret" not in r.stderr, "the key is not in the message")


# ---- transport security --------------------------------------------------------

@case
def plain_http_only_to_loopback(tmp):
    for url in ("http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1"):
        cfg = write_config(tmp, url)
        r = run_agentd(["--config", cfg, "--check-config"])
        eq(r.rc, 0, "%s is fine" % url)
    cfg = write_config(tmp, "http://api.example.com/v1")
    r = run_agentd(["--config", cfg, "-p", "x"])
    eq(r.rc, 2, "remote plain http refused")
    contains(r.stderr, "allow_http", "names the setting")
    cfg = write_config(tmp, "http://api.example.com/v1", provider={"allow_http": True})
    r = run_agentd(["--config", cfg, "--check-config"])
    eq(r.rc, 0, "allowed with allow_http (%s)" % r.stderr)
    cfg = write_config(tmp, "http://127.0.0.1:9/v1")
    r = run_agentd(["--config", cfg, "--base-url", "http://example.com/v1", "-p", "x"])
    eq(r.rc, 2, "--base-url is checked too")


def make_cert(tmp):
    if not shutil.which("openssl"):
        skip("openssl is not installed (mk/deps.sh installs it for make test)")
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key, crt


@case
def tls_certificate_is_always_verified(tmp):
    key, crt = make_cert(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    seen = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(c, server_side=True) as s:
                    seen.append(s.recv(100))
            except (ssl.SSLError, OSError):
                seen.append(None)
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        cfg = setup(tmp, "https://127.0.0.1:%d/v1" % port, max_retries=2)
        r = run_json(cfg)
    finally:
        srv.close()
    eq(r.rc, 1, "exit code")
    msg = error_message(r).lower()
    ok("certificate" in msg or "ssl" in msg, "says it is the certificate: %s" % msg)
    eq(len(of_type(r, "retry")), 0, "a bad certificate is not retried")
    ok(all(x is None for x in seen), "no request bytes went over the unverified connection")


# ---- bounds --------------------------------------------------------------------

@case
def huge_sse_line_is_rejected_without_buffering_it(tmp):
    # 64 MiB in one line with the default 16 MiB bound.
    huge = {"status": 200, "sse": [{"raw": "data: "}], "pad_bytes": 64 << 20}
    with mock(S.script(huge)) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat(m))
    eq(r.rc, 1, "exit code")
    eq(n, 1, "not retried")
    contains(error_message(r), "limits.max_event_bytes", "names the setting")
    if not WRAP and not os.environ.get("AGENTD_SANITIZED"):
        rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ok(rss_mib < 48, "agentd never held the line (max RSS %.0f MiB)" % rss_mib)
    # A configured bound.
    line = {"status": 200, "sse": [{"raw": "data: "}], "pad_bytes": 5000}
    with mock(S.script(line)) as m:
        r = run_json(setup(tmp, m, raw_append="[limits]\nmax_event_bytes = 4096\n"))
    eq(r.rc, 1, "configured bound")
    contains(error_message(r), "4096", "names the bound")


@case
def response_size_bound(tmp):
    many = S.text_stream("word " * 4000, pieces=400)
    with mock(S.script(many)) as m:
        r = run_json(setup(tmp, m, raw_append="[limits]\nmax_response_bytes = 10000\n"))
    eq(r.rc, 1, "exit code")
    contains(error_message(r), "limits.max_response_bytes", "names the setting")
    big = S.message(content="z" * 20000)
    with mock(S.script(big)) as m:
        r = run_json(setup(tmp, m, stream=False,
                           raw_append="[limits]\nmax_response_bytes = 10000\n"))
    eq(r.rc, 1, "non-streaming exit code")
    contains(error_message(r), "limits.max_response_bytes", "non-streaming message")


@case
def tool_call_bounds(tmp):
    calls = [("c%d" % i, "add", ADD_ARGS) for i in range(5)]
    with mock(S.script(S.tool_call_stream(calls))) as m:
        r = run_json(setup(tmp, m, raw_append="[limits]\nmax_tool_calls = 4\n"))
    eq(r.rc, 1, "too many calls")
    contains(error_message(r), "max_tool_calls", "names the setting")
    eq(of_type(r, "tool_result"), [], "no tool ran")
    long_args = '{"a": 2, "b": 3, "pad": "%s"}' % ("p" * 500)
    with mock(S.script(S.tool_call_stream([("c1", "add", long_args)], split_args=50))) as m:
        r = run_json(setup(tmp, m, raw_append="[limits]\nmax_tool_args_bytes = 100\n"))
    eq(r.rc, 1, "arguments too long")
    contains(error_message(r), "100 bytes", "names the bound")
    eq(of_type(r, "tool_result"), [], "no tool ran")


@case
def tool_result_bound_cuts_with_marker(tmp):
    calls = [("c1", "big_output", "{}")]
    with mock(S.script(S.tool_call_stream(calls), S.text_stream("done"))) as m:
        r = run_json(setup(tmp, m, plugins=("multi",),
                           raw_append="[limits]\nmax_tool_result_bytes = 100\n"))
        reqs = chat(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    res = of_type(r, "tool_result")[0]["content"]
    ok(res.index("\n[... ") <= 100, "cut at the bound")
    ok(re.search(r"\[\.\.\. \d+ bytes cut\]$", res), "marker says how much was cut: %r" % res[-60:])
    sent = [x for x in reqs[1]["json"]["messages"] if x["role"] == "tool"][0]["content"]
    eq(sent, res, "the model gets the cut result with the marker")



@case
def a_process_holding_the_key_writes_no_core_dump(tmp):
    # While agentd holds the API key it may not dump core (the core could
    # carry the key away): core size limit 0 and not dumpable.
    if WRAP:
        return  # valgrind is the process then; nothing of agentd's to look at
    with mock(S.script(S.text_stream("never", hang_after=0))) as m:
        cfg = setup(tmp, m, provider={"idle_timeout_s": 30})
        p = spawn_agentd(["--config", cfg, "-p", PROMPT])
        try:
            deadline = time.monotonic() + 10
            while not chat(m) and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.01)  # waiting for a condition, with a deadline
            ok(chat(m), "agentd reached the provider")
            with open("/proc/%d/limits" % p.pid) as f:
                core = [l for l in f if l.startswith("Max core file size")][0].split()
            eq(core[4:6], ["0", "0"], "core file size limits (soft, hard)")
        finally:
            p.kill()
            p.communicate()


@case
def the_key_is_redacted_before_messages_are_cut(tmp):
    # A malformed chunk, an error event and a tool call all carry the key
    # right where their quotes are cut (60, 500 and 200 bytes): no piece of
    # it may survive the cut.
    bad_chunk = {"raw": 'data: {"a": "%s%s\n\n' % ("y" * 43, KEY)}
    with mock(S.script({"status": 200, "sse": [bad_chunk]})) as m:
        r = run_json(setup(tmp, m), env={TEST_KEY_ENV: KEY})
    eq(r.rc, 1, "malformed chunk: exit code")
    no_key(r)
    ev = {"raw": "event: error\ndata: %s%s\n\n" % ("z" * 490, KEY)}
    with mock(S.script({"status": 200, "sse": [ev]})) as m:
        r = run_json(setup(tmp, m), env={TEST_KEY_ENV: KEY})
    eq(r.rc, 1, "error event: exit code")
    no_key(r)
    args = '{"a": 2, "b": 3, "note": "%s%s"}' % ("w" * 166, KEY)
    sc = S.script(S.tool_call_stream([("c1", "add", args)]), S.text_stream("ok"))
    with mock(sc) as m:
        r = run_agentd(["--config", setup(tmp, m), "-p", PROMPT], env={TEST_KEY_ENV: KEY})
    eq(r.rc, 0, "tool call: exit code (%s)" % r.stderr)
    no_key(r)

if __name__ == "__main__":
    main()

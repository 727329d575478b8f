"""test_repl.py -- the interactive session, driven through a pseudo-terminal.

Each case starts the real agentd binary on a new pty (its controlling
terminal, so Ctrl-C is a real SIGINT from the line discipline), types into
the master side and waits for expected output with deadlines (select, never a
sleep for synchronisation). The mock provider records what agentd sent, so the
conversation's consistency is checked on the provider's side.
"""
import fcntl
import json
import os
import re
import select
import signal
import stat
import struct
import subprocess
import sys
import termios
import time

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 write_config, agentd_cmd, agentd_env, AGENTD_DIR, Screen, TIMEOUT_SCALE)
from server import encode_event  # noqa: E402  (tests/mock, on the path lib set)

S = script
ADD = '{"a": 2, "b": 3}'
SYSTEM = "You are a test assistant."
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x01\x02]")
CTRL_C, CTRL_D = b"\x03", b"\x04"


class Term:
    """agentd on a pseudo-terminal."""

    def __init__(self, args, env=None, cwd=None, cols=120, rows=40, preexec=None):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        e = {"TERM": "xterm", "LANG": "C.UTF-8", "LC_ALL": None, "NO_COLOR": None}
        e.update(env or {})

        def become_tty_owner():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            if preexec:
                preexec()

        self.p = subprocess.Popen(agentd_cmd(args), env=agentd_env(e), cwd=cwd,
                                  stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                  start_new_session=True, preexec_fn=become_tty_owner)
        self.out = b""
        self.pos = 0  # expect() searches from here

    def _read(self, deadline, step=0.5):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.master], [], [], min(left, step))
        if r:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return False
            self.out += data
        return True

    def expect(self, pattern, timeout=10):
        """Waits until pattern (bytes, or a compiled bytes regex) shows up after
        the previous match (escape sequences removed); returns the text read."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while True:
            plain = self.plain()
            if isinstance(pattern, bytes):
                i = plain.find(pattern, self.pos)
                if i >= 0:
                    self.pos = i + len(pattern)
                    return plain
            else:
                m = pattern.search(plain, self.pos)
                if m:
                    self.pos = m.end()
                    return plain
            if self.p.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                raise AssertionError("agentd exited (%s) while waiting for %r; output: %r"
                                     % (self.p.returncode, pattern, self.plain()[-1500:]))
            if not self._read(deadline):
                raise AssertionError("timed out waiting for %r; output: %r"
                                     % (pattern, self.plain()[-1500:]))

    def plain(self):
        return ANSI.sub(b"", self.out).replace(b"\r", b"").replace(b"\x07", b"")

    def send(self, data):
        os.write(self.master, data if isinstance(data, bytes) else data.encode())

    def line(self, text):
        self.send(text + "\r")

    def prompt(self):
        """Waits for the prompt, then for libedit's raw mode: keys typed
        before it would meet the cooked terminal (a ^D would be lost)."""
        self.expect(b"\xe2\x80\xba ")  # "› "
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while termios.tcgetattr(self.slave)[3] & termios.ICANON:
            if self.p.poll() is not None or not self._read(deadline, 0.01):
                raise AssertionError("the prompt never switched the terminal to raw mode")

    def wait_exit(self, timeout=10):
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while self.p.poll() is None:
            if not self._read(deadline) and time.monotonic() >= deadline:
                self.p.kill()
                self.p.wait()
                raise AssertionError("agentd did not exit; output: %r" % self.plain()[-1500:])
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break
            if not data:
                break
            self.out += data
        return self.p.returncode

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def setup(tmp, m, plugins=("add", "multiply"), agent=None, raw_append=""):
    pdir = make_plugin_dir(tmp, plugins)
    a = {"system_prompt": SYSTEM, "max_steps": 10}
    a.update(agent or {})
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir), agent=a,
                        raw_append=raw_append)


def start(tmp, cfg, extra=(), env=None, **kw):
    e = {"XDG_STATE_HOME": os.path.join(tmp, "state")}
    e.update(env or {})
    t = Term(["--config", cfg] + list(extra), env=e, cwd=tmp, **kw)
    t.prompt()
    return t


def chats(m):
    return [q["json"] for q in m.requests if q["path"].endswith("/chat/completions")]


def check_consistent(msgs):
    """Every assistant tool call has exactly one tool message, and back."""
    want = []
    for msg in msgs:
        if msg["role"] == "assistant":
            want += [c["id"] for c in msg.get("tool_calls") or []]
    got = [msg["tool_call_id"] for msg in msgs if msg["role"] == "tool"]
    eq(sorted(got), sorted(want), "tool messages for the tool calls")


def tool_turn(text="2 + 3 = 5 and 2 x 3 = 6."):
    calls = [("call_a", "add", ADD), ("call_m", "multiply", ADD)]
    return [S.tool_call_stream(calls, text="Let me compute.", usage=True),
            S.text_stream(text, usage={"prompt_tokens": 40, "completion_tokens": 9,
                                       "total_tokens": 49, "cost": 0.00042})]


@case
def prompt_with_tool_calls_and_answer(tmp):
    with mock(S.script(*tool_turn())) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("Add and multiply 2 and 3")
            t.expect(b"Let me compute.")
            out = t.expect(b"2 + 3 = 5 and 2 x 3 = 6.")
            t.expect(b"50 in + 14 out = 64 tokens, $0.000420")
            t.prompt()
            tail = out[out.find(b"Let me compute."):]
            ok(re.search(rb'\xe2\x9c\x93 add \{"a": 2, "b": 3\} \xe2\x86\x92 5  \(\d', tail),
               "compact add line in %r" % tail)
            ok(re.search(rb'\xe2\x9c\x93 multiply \{"a": 2, "b": 3\} \xe2\x86\x92 6  \(', tail),
               "compact multiply line in %r" % tail)
            t.line("/usage")
            t.expect(b"session: 50 in + 14 out = 64 tokens, $0.000420 over 1 turn")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
            # The terminal is as it was: canonical, echoing, blocking.
            attrs = termios.tcgetattr(t.slave)
            ok(attrs[3] & termios.ICANON and attrs[3] & termios.ECHO, "cooked mode after exit")
            ok(not fcntl.fcntl(t.slave, fcntl.F_GETFL) & os.O_NONBLOCK, "stdin blocking")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 2, "requests")
    eq([x["role"] for x in reqs[1]["messages"]], ["system", "user", "assistant", "tool", "tool"],
       "roles")
    eq([x["content"] for x in reqs[1]["messages"][3:]], ["5", "6"], "tool results sent")


@case
def ctrl_c_mid_stream_cancels_and_next_prompt_works(tmp):
    first = S.text_stream("Partial answer that never ends")
    # Two events ("Partial", " answer") go out, then the stream stalls.
    first["hang_after"] = sum(len(encode_event(e)) for e in first["sse"][:2])
    with mock(S.script(first, S.text_stream("Second answer."))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("first question")
            # Both events are in before Ctrl-C: what was said so far is
            # "Partial answer", the answer the second request must carry.
            t.expect(b"Partial answer")
            t0 = time.monotonic()
            t.send(CTRL_C)
            t.expect(b"cancelled")
            took = time.monotonic() - t0
            ok(took < 0.2 * TIMEOUT_SCALE + 0.05, "cancelled within 200 ms (took %.3f s)" % took)
            t.prompt()
            t.line("second question")
            t.expect(b"Second answer.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 2, "requests")
    msgs = reqs[1]["messages"]
    # What the model said before Ctrl-C stays as its answer, marked as cut:
    # never two user turns in a row.
    eq([(x["role"], x.get("content")) for x in msgs],
       [("system", SYSTEM), ("user", "first question"),
        ("assistant", "Partial answer\n[answer cut short: cancelled by the user]"),
        ("user", "second question")],
       "second request")


@case
def ctrl_c_before_any_answer_leaves_no_two_user_turns(tmp):
    first = S.text_stream("never shown")
    first["hang_after"] = 0  # the request hangs before a single byte
    with mock(S.script(first, S.text_stream("Second answer."))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("first question")
            deadline = time.monotonic() + 20 * TIMEOUT_SCALE
            while not chats(m) and t._read(deadline, 0.01):
                pass  # polling the mock's record, not synchronising
            t.send(CTRL_C)
            t.expect(b"cancelled")
            t.prompt()
            t.line("second question")
            t.expect(b"Second answer.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 2, "requests")
    eq([(x["role"], x.get("content")) for x in reqs[1]["messages"]],
       [("system", SYSTEM), ("user", "first question"),
        ("assistant", "[no answer: cancelled by the user]"), ("user", "second question")],
       "second request")


def wait_file(t, path, timeout=20):
    """Polls for a file a plugin creates (reading agentd's output meanwhile)."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while not os.path.exists(path):
        if t.p.poll() is not None or not t._read(deadline, 0.01):
            raise AssertionError("no %s; output: %r" % (path, t.plain()[-1500:]))


@case
def ctrl_c_during_tool_abandons_it_with_one_result_per_call(tmp):
    gate = os.path.join(tmp, "gate")
    calls = [("call_n", "gate", json.dumps({"path": gate})), ("call_a", "add", ADD)]
    sc = S.script(S.tool_call_stream(calls), S.text_stream("Fresh start."))
    with mock(sc) as m:
        t = start(tmp, setup(tmp, m, plugins=("add", "gate")))
        try:
            t.line("gate then add")
            wait_file(t, gate + ".started")  # gate runs (and never ends by itself)
            t0 = time.monotonic()
            t.send(CTRL_C)
            t.expect(b"cancelled by user")
            t.expect(b"cancelled;")
            took = time.monotonic() - t0
            ok(took < 0.2 * TIMEOUT_SCALE + 0.05, "cancelled within 200 ms (took %.3f s)" % took)
            t.prompt()
            t.line("again")
            t.expect(b"Fresh start.")
            t.prompt()
            t.line("/exit")
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 2, "requests")
    msgs = reqs[1]["messages"]
    eq([x["role"] for x in msgs], ["system", "user", "assistant", "tool", "tool", "user"], "roles")
    check_consistent(msgs)
    results = [x["content"] for x in msgs if x["role"] == "tool"]
    eq(results[0], "cancelled by user while it was running (its result will be ignored)",
       "the running gate is abandoned")
    # add runs beside gate on the worker pool: it normally has finished when
    # Ctrl-C arrives and keeps its result; on a slow machine (valgrind) it
    # may not have, and then it is cancelled like gate (running or not yet
    # started). Either way: one result per call, in call order.
    ok(results[1] == "5" or results[1].startswith("cancelled by user"),
       "add's result: %r" % results[1])


@case
def a_cancelled_serial_call_is_named_as_cancelled_later(tmp):
    # In process: Ctrl-C abandons gate_serial (not thread-safe) while it
    # runs; the next turn's call of a tool of the same plugin that is not
    # thread-safe (a second gate_serial, whose gate is open) is refused, and
    # the reason given is the real one: cancelled, not timed out. The chain
    # is the plugin's: counter (serial.so, not thread-safe either) runs.
    # (In a worker, the default, the next call runs: see below.)
    cancelled_serial_call(tmp, "in-process",
                          "tool 'gate_serial' was not run: an earlier call of a tool that is not "
                          "thread-safe was cancelled and is still running")


@case
def a_cancelled_call_in_a_worker_does_not_block_the_next_turn(tmp):
    # The default: the cancelled gate_serial is asked to stop; gate.so (ABI
    # 1.0) does not notice, so its worker is killed after the grace, and the
    # next turn's gate_serial runs in a new worker.
    cancelled_serial_call(tmp, "worker", "opened")


def cancelled_serial_call(tmp, isolation, second):
    gate = os.path.join(tmp, "gate")
    opened = os.path.join(tmp, "open")
    with open(opened, "w"):
        pass
    sc = S.script(S.tool_call_stream([("call_g", "gate_serial", json.dumps({"path": gate}))]),
                  S.tool_call_stream([("call_h", "gate_serial", json.dumps({"path": opened})),
                                      ("call_c", "counter", "{}")]),
                  S.text_stream("Done."))
    with mock(sc) as m:
        t = start(tmp, setup(tmp, m, plugins=("gate", "serial"), agent={"isolation": isolation}))
        try:
            t.line("one")
            wait_file(t, gate + ".started")
            t.send(CTRL_C)
            t.expect(b"cancelled;")
            t.prompt()
            t.line("two")
            t.expect(b"Done.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 3, "requests")
    msgs = reqs[2]["messages"]
    check_consistent(msgs)
    results = [x["content"] for x in msgs if x["role"] == "tool"]
    eq(results[0], "cancelled by user while it was running (its result will be ignored)",
       "gate_serial")
    eq(results[1], second, "the second gate_serial")
    eq(results[2], "1", "counter of another plugin")


SIGINT_PROBE = os.path.join(AGENTD_DIR, "tests", "preload", "sigint_probe.so")


@case
def sigint_never_meets_the_default_action_between_turns(tmp):
    # tests/preload/sigint_probe.so raises SIGINT right after anything sets
    # SIGINT back to its default action, i.e. a Ctrl-C pressed at that very
    # moment. agentd starts with SIGINT ignored, so only agentd itself could
    # set the default. The REPL must survive turns and prompts (the switch
    # between them once left the default in force for a moment) and give
    # back the disposition it found when it leaves.
    env = {"LD_PRELOAD": SIGINT_PROBE,
           "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                  "verify_asan_link_order=0"]))}
    sc = S.script(S.text_stream("One."), *tool_turn(), S.text_stream("Three."))
    with mock(sc) as m:
        t = start(tmp, setup(tmp, m), env=env,
                  preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            t.line("first")
            t.expect(b"One.")
            t.prompt()
            t.line("second")
            t.expect(b"2 + 3 = 5")
            t.prompt()
            t.line("third")
            t.expect(b"Three.")
            t.prompt()
            t.send(CTRL_C)  # a Ctrl-C at the prompt still works as before
            t.expect(b"press Ctrl-C again to leave")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        eq(len(chats(m)), 4, "requests")


@case
def history_persists_across_sessions(tmp):
    with mock(S.script(S.text_stream("One."))) as m:
        cfg = setup(tmp, m)
        t = start(tmp, cfg)
        try:
            t.line("remember this line")
            t.expect(b"One.")
            t.prompt()
            t.line("/model")
            t.expect(b"test-model")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "first exit")
        finally:
            t.close()
    path = os.path.join(tmp, "state", "agentd", "history")
    ok(os.path.isfile(path), "history file at %s" % path)
    eq(stat.S_IMODE(os.stat(path).st_mode), 0o600, "history file mode")
    eq(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700, "history folder mode")
    with mock(S.script(S.text_stream("Two."))) as m:
        t = start(tmp, write_config(tmp, m.base_url, agent={"system_prompt": SYSTEM}))
        try:
            t.send(b"\x1b[A\x1b[A")  # Up twice: the first entry of last time
            t.expect(b"remember this line")
            t.send(b"\r")
            t.expect(b"Two.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "second exit")
        finally:
            t.close()
        reqs = chats(m)
    eq(reqs[0]["messages"][-1]["content"], "remember this line", "recalled prompt sent")


def approval_script():
    call = [("call_x", "add", ADD)]
    out = []
    for i in range(4):
        out += [S.tool_call_stream(call), S.text_stream("Turn %d done." % i)]
    return S.script(*out)


@case
def approval_yes_no_always(tmp):
    question = b'run add {"a": 2, "b": 3}? [y]es/[n]o/[a]lways '
    with mock(approval_script()) as m:
        cfg = setup(tmp, m, raw_append="[tools.add]\nconfirm = true\n")
        t = start(tmp, cfg)
        try:
            t.line("one")
            t.expect(question)
            t.send("y")
            t.expect(b"yes")
            t.expect(b"Turn 0 done.")
            t.prompt()
            t.line("two")
            t.expect(question)
            t.send("n")
            t.expect(b"denied running tool")
            t.expect(b"Turn 1 done.")
            t.prompt()
            t.line("three")
            t.expect(question)
            t.send("a")
            t.expect(b"always")
            t.expect(b"Turn 2 done.")
            t.prompt()
            t.line("four")
            out = t.expect(b"Turn 3 done.")
            eq(out.count(b"[y]es/[n]o/[a]lways"), 3, "questions asked")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(len(reqs), 8, "requests")
    last = reqs[7]["messages"]
    check_consistent(last)
    results = [x["content"] for x in last if x["role"] == "tool"]
    eq(results[0], "5", "approved")
    contains(results[1], "denied", "denied result")
    eq(results[2:], ["5", "5"], "always")


@case
def approval_ctrl_c_cancels_the_turn(tmp):
    with mock(approval_script()) as m:
        cfg = setup(tmp, m, agent={"confirm_tools": ["*"]})
        t = start(tmp, cfg)
        try:
            t.line("one")
            t.expect(b"[a]lways ")
            t.send(CTRL_C)  # a key: the question turned ISIG off before it showed
            t.expect(b"cancelled;")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        eq(len(chats(m)), 1, "no request after the cancelled approval")


@case
def approval_ctrl_c_starts_no_other_call_of_the_step(tmp):
    # [add (asks first), gate]: Ctrl-C at add's question cancels the turn
    # before anything runs; gate (which would leave P.started) never starts,
    # and the model hears that neither call ran.
    gate = os.path.join(tmp, "gate")
    calls = [("call_a", "add", ADD), ("call_g", "gate", json.dumps({"path": gate}))]
    sc = S.script(S.tool_call_stream(calls), S.text_stream("Fresh start."))
    with mock(sc) as m:
        cfg = setup(tmp, m, plugins=("add", "gate"), raw_append="[tools.add]\nconfirm = true\n")
        t = start(tmp, cfg)
        try:
            t.line("one")
            t.expect(b"[a]lways ")
            t.send(CTRL_C)
            t.expect(b"cancelled;")
            t.prompt()
            t.line("again")
            t.expect(b"Fresh start.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    ok(not os.path.exists(gate + ".started"), "gate did not start")
    eq(len(reqs), 2, "requests")
    msgs = reqs[1]["messages"]
    check_consistent(msgs)
    results = [x["content"] for x in msgs if x["role"] == "tool"]
    contains(results[0], "not run", "add's result")
    eq(results[1], "cancelled by user before it started; it was not run", "gate's result")


@case
def load_of_a_file_that_is_not_json_says_what_and_where(tmp):
    bad = os.path.join(tmp, "notes.txt")
    with open(bad, "w") as f:
        f.write("{}\nnot json at all\n")
    empty = os.path.join(tmp, "empty.json")
    open(empty, "w").close()
    with mock(S.script()) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("/load " + bad)
            t.expect(('%s:2:1: unexpected text after the JSON value: "not json at all"' % bad)
                     .encode())
            t.prompt()
            with open(bad, "w") as f:
                f.write('{"messages": [\n  {"role": "user", "content": "hi"},\n  nope\n]}\n')
            t.line("/load " + bad)
            t.expect(('%s:3:4: not JSON (json-c: null expected) in "nope"' % bad).encode())
            t.prompt()
            t.line("/load " + empty)
            t.expect(("%s is empty, not a conversation written by /save" % empty).encode())
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()


@case
def usage_counts_from_the_last_reset(tmp):
    with mock(S.script(*tool_turn(), S.text_stream("After.", usage={
            "prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("Add and multiply 2 and 3")
            t.expect(b"50 in + 14 out = 64 tokens")
            t.prompt()
            t.line("/reset")
            t.expect(b"new conversation")
            t.prompt()
            t.line("/usage")
            t.expect(b"no usage reported yet")
            t.prompt()
            t.line("again")
            t.expect(b"After.")
            t.prompt()
            t.line("/usage")
            t.expect(b"session: 7 in + 2 out = 9 tokens over 1 turn")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()


@case
def tool_lines_fit_the_terminal_width(tmp):
    cols = 60
    long_args = json.dumps({"a": 2, "b": 3, "note": "x" * 150})
    calls = [("call_a", "add", long_args), ("call_m", "multiply", ADD)]
    with mock(S.script(S.tool_call_stream(calls), S.text_stream("Done."))) as m:
        t = start(tmp, setup(tmp, m), cols=cols)
        try:
            t.line("go")
            out = t.expect(b"Done.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
    # What the terminal shows of each line: the text after its last carriage
    # return (the spinner draws and wipes itself with them).
    shown = [x.rstrip(b"\r").split(b"\r")[-1] for x in ANSI.sub(b"", t.out).split(b"\n")]
    lines = [x.decode() for x in shown if b" add " in x or b" multiply " in x]
    eq(len(lines), 2, "tool lines in %r" % out)
    for x in lines:
        ok(len(x) < cols, "%d columns: %r" % (len(x), x))
    ok(re.search(r"\u2713 add \{.*\u2026 \u2192 5  \(\d", lines[0]),
       "add's arguments are cut, its result and duration kept: %r" % lines[0])
    ok(re.search(r'\u2713 multiply \{"a": 2, "b": 3\} \u2192 6  \(\d', lines[1]),
       "a short line is whole: %r" % lines[1])


@case
def reset_starts_a_new_conversation(tmp):
    with mock(S.script(S.text_stream("First."), S.text_stream("Second."))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("before reset")
            t.expect(b"First.")
            t.prompt()
            t.line("/reset")
            t.expect(b"new conversation (system prompt kept)")
            t.prompt()
            t.line("after reset")
            t.expect(b"Second.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq([(x["role"], x["content"]) for x in reqs[1]["messages"]],
       [("system", SYSTEM), ("user", "after reset")], "after /reset")


@case
def no_color_means_no_escape_sequences(tmp):
    for no_color in ("1", None):
        sub = os.path.join(tmp, "nc" if no_color else "c")
        os.mkdir(sub)
        with mock(S.script(*tool_turn())) as m:
            t = start(sub, setup(sub, m), env={"NO_COLOR": no_color})
            try:
                t.line("/tools")
                t.expect(b"[add.so]")
                t.line("Add and multiply 2 and 3")
                t.expect(b"2 + 3 = 5")
                t.prompt()
                t.line("/modle")
                t.expect(b"unknown command /modle; did you mean /model?")
                t.prompt()
                t.line("/zzz")
                t.expect(b"unknown command /zzz; /help lists the commands")
                t.prompt()
                t.send(CTRL_D)
                eq(t.wait_exit(), 0, "exit code")
            finally:
                t.close()
        if no_color:
            ok(b"\x1b" not in t.out, "no escape sequence with NO_COLOR: %r" % t.out[:400])
        else:
            ok(b"\x1b[" in t.out, "colours without NO_COLOR (so the check above means something)")


@case
def a_retried_step_is_erased_from_the_screen(tmp):
    # The stream breaks after "The answer is forty"; the repeated step must
    # not leave "The answer is fortyThe answer is 42." on the screen.
    full = S.text_stream("The answer is forty-two", pieces=["The answer", " is forty", "-two"])
    cut = dict(full, close_after=sum(len(encode_event(e)) for e in full["sse"][:2]))
    with mock(S.script(cut, S.text_stream("The answer is 42."))) as m:
        make_plugin_dir(tmp, ("add",))
        cfg = write_config(tmp, m.base_url, plugins_dir="plugins", max_retries=1,
                           provider={"max_retry_wait_s": 0})
        t = start(tmp, cfg)
        try:
            t.line("What is the answer?")
            t.expect(b"The answer is 42.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
    scr = Screen(120, 40)
    scr.feed(t.out)
    shown = scr.text()
    ok("forty" not in shown, "the cut text is erased: %r" % shown)
    eq(shown.count("The answer is 42."), 1, "the answer once: %r" % shown)
    ok(shown.index("retrying") < shown.index("The answer is 42."), "notice first: %r" % shown)


@case
def control_sequences_in_answers_are_shown_not_obeyed(tmp):
    hostile = "A\u001b]52;c;aGk=\u0007B\u001b[2J\u009b31m done"
    with mock(S.script(S.text_stream(hostile))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("hi")
            t.expect(b"done")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
    contains(t.out, "A^[]52;c;aGk=^GB^[[2J\ufffd31m done".encode(), "shown in caret notation")
    for seq in (b"\x1b]52", b"\x1b[2J", b"\xc2\x9b"):
        ok(seq not in t.out, "%r never reaches the terminal" % seq)


@case
def ctrl_c_at_empty_prompt_does_not_exit(tmp):
    with mock(S.script()) as m:
        cfg = setup(tmp, m)
        t = start(tmp, cfg)
        try:
            t.send(CTRL_C)
            t.expect(b"press Ctrl-C again to leave")
            t.prompt()
            ok(t.p.poll() is None, "still running after one Ctrl-C")
            t.line("/model")
            t.expect(b"test-model")
            t.prompt()
            t.send("some half-typed text")
            t.expect(b"half-typed text")
            t.send(CTRL_C)  # clears the line: no hint, no exit
            t.prompt()
            t.line("/usage")
            out = t.expect(b"no usage reported yet")
            eq(out.count(b"press Ctrl-C again"), 1, "hint once")
            t.prompt()
            t.send(CTRL_C)
            t.expect(b"press Ctrl-C again")
            t.prompt()
            t.send(CTRL_C)
            eq(t.wait_exit(), 0, "second Ctrl-C exits 0")
        finally:
            t.close()
        t = start(tmp, cfg)
        try:
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "Ctrl-D exits 0")
        finally:
            t.close()
        eq(len(chats(m)), 0, "no request")


@case
def multi_line_input_and_completion(tmp):
    with mock(S.script(S.text_stream("A."), S.text_stream("B."))) as m:
        t = start(tmp, setup(tmp, m))
        try:
            t.line("first line \\")
            t.expect(b"\xe2\x80\xa6 ")  # "… "
            t.line("second line")
            t.expect(b"A.")
            t.prompt()
            t.line('"""')
            t.line("block one")
            t.line("")
            t.line("block three \\")
            t.line('"""')
            t.expect(b"B.")
            t.prompt()
            t.send("/mod\t")
            t.expect(b"/model")
            t.send("\r")
            t.expect(b"test-model")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    eq(reqs[0]["messages"][-1]["content"], "first line \nsecond line", "continued line")
    eq(reqs[1]["messages"][-1]["content"], "block one\n\nblock three \\", "block")


@case
def save_load_model_and_system(tmp):
    saved = os.path.join(tmp, "conv.json")
    with mock(S.script(*tool_turn(), S.text_stream("Loaded fine."))) as m:
        cfg = setup(tmp, m)
        t = start(tmp, cfg)
        try:
            t.line("Add and multiply 2 and 3")
            t.expect(b"2 + 3 = 5")
            t.prompt()
            t.line("/model other-model")
            t.expect(b"model: other-model")
            t.line("/save " + saved)
            t.expect(b"saved 6 messages")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        eq(stat.S_IMODE(os.stat(saved).st_mode), 0o600, "saved file mode")
        doc = json.load(open(saved))
        eq(doc["model"], "other-model", "saved model")
        eq([x["role"] for x in doc["messages"]],
           ["system", "user", "assistant", "tool", "tool", "assistant"], "saved roles")
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"messages": [{"role": "assistant", "content": None, "tool_calls": [
                {"id": "x", "type": "function",
                 "function": {"name": "add", "arguments": "{}"}}]}]}, f)
        t = start(tmp, cfg)
        try:
            t.line("/load " + bad)
            t.expect(b'tool call "x" has no tool message')
            t.line("/load " + saved)
            t.expect(b"loaded 6 messages")
            t.line("/system Be brief.")
            t.expect(b"system prompt set")
            t.line("/system")
            t.expect(b"Be brief.")
            t.line("and now?")
            t.expect(b"Loaded fine.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chats(m)
    last = reqs[-1]
    eq(last["model"], "other-model", "model after /load")
    eq([x["role"] for x in last["messages"]],
       ["system", "user", "assistant", "tool", "tool", "assistant", "user"], "loaded roles")
    eq(last["messages"][0]["content"], "Be brief.", "new system prompt")
    check_consistent(last["messages"])


@case
def repl_flag_with_piped_stdin(tmp):
    with mock(S.script(S.text_stream("Piped one."), S.text_stream("Piped two."))) as m:
        cfg = setup(tmp, m)
        r = run_agentd(["--config", cfg, "--repl"], input="hello\n/model\nagain\n",
                       env={"XDG_STATE_HOME": os.path.join(tmp, "state")})
        reqs = chats(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    contains(r.stdout, "Piped one.")
    contains(r.stdout, "test-model")
    contains(r.stdout, "Piped two.")
    ok("\x1b" not in r.stdout + r.stderr, "no colours on pipes")
    eq([x["content"] for x in reqs[1]["messages"] if x["role"] == "user"], ["hello", "again"],
       "one conversation")


@case
def json_with_repl_is_a_usage_error(tmp):
    with mock(S.script()) as m:
        r = run_agentd(["--config", setup(tmp, m), "--repl", "--json"])
    eq(r.rc, 2, "exit code")
    contains(r.stderr, "--json needs a prompt")


@case
def a_long_wait_at_the_prompt_does_not_time_out_the_next_request(tmp):
    # The loop does not run while the prompt waits for a line: the request
    # typed after a wait longer than idle_timeout_s must still get its whole
    # idle timeout, and succeed on its first attempt (max_retries = 0).
    with mock(S.script(S.text_stream("First answer."), S.text_stream("Second answer."))) as m:
        pdir = make_plugin_dir(tmp, ("add",))
        cfg = write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir),
                           provider={"idle_timeout_s": 1})
        t = start(tmp, cfg)
        try:
            t.line("first question")
            t.expect(b"First answer.")
            t.prompt()
            time.sleep(2)  # the idle period under test: agentd sits at its prompt
            t.line("second question")
            t.expect(b"Second answer.")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        ok(b"idle_timeout_s" not in t.plain(), "no idle timeout: %r" % t.plain()[-800:])
        eq(len(chats(m)), 2, "one request per question")


@case
def approval_prompt_and_history_never_show_the_key(tmp):
    # The model puts the key into a call that needs approval; the user
    # pastes it into a prompt. Neither the question nor the history file
    # may hold it (the request to the model does: the user sent it).
    key = "sk-test-dummy"  # lib.agentd_env()'s key
    args = '{"a": 2, "b": 3, "note": "%s"}' % key
    sc = S.script(S.tool_call_stream([("c1", "add", args)]), S.text_stream("Done."))
    with mock(sc) as m:
        cfg = setup(tmp, m, raw_append="[tools.add]\nconfirm = true\n")
        r = run_agentd(["--config", cfg, "--repl"], input="my key is %s\nn\n" % key,
                       env={"XDG_STATE_HOME": os.path.join(tmp, "state")})
        reqs = chats(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    contains(r.stderr, '"note": "[REDACTED]"}? [y]es/[n]o/[a]lways', "the question")
    ok(key not in r.stdout + r.stderr, "key not shown: %s" % r.stderr)
    eq(reqs[0]["messages"][-1]["content"], "my key is " + key, "the prompt as typed")
    with open(os.path.join(tmp, "state", "agentd", "history"), encoding="utf-8") as f:
        hist = f.read()
    ok(key not in hist, "key not in the history: %r" % hist)
    contains(hist.replace("\\040", " "), "my key is [REDACTED]", "the entry, redacted")


@case
def tools_and_mcp_show_where_tools_come_from(tmp):
    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mcp", "server.py")
    raw = ("[mcp.servers.fx]\ncommand = %s\nargs = [%s]\n"
           "[mcp.servers.gone]\ncommand = %s\nargs = [%s, \"--fault\", \"crash-on-start\"]\n"
           % (json.dumps(sys.executable), json.dumps(fx), json.dumps(sys.executable),
              json.dumps(fx)))
    with mock(S.script()) as m:
        t = start(tmp, setup(tmp, m, plugins=("add",), raw_append=raw))
        try:
            t.line("/tools")
            t.expect(b"[add.so]")
            t.expect(re.compile(rb"fx__echo +Echoes its text\. +\[mcp:fx\]"))
            t.prompt()
            t.line("/mcp")
            t.expect(re.compile(rb"fx +stdio +ready +19 tools +fixture 1\.2\.3 "
                                rb"\(protocol 2025-11-25\)"))
            t.expect(re.compile(rb"gone +stdio +(restarting|starting|failed) +0 tools"))
            t.expect(b"exited with status 1")
            t.prompt()
            t.send(CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()


if __name__ == "__main__":
    main()

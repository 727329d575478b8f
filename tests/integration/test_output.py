"""test_output.py -- text-mode standard output where it really goes.

The answer is written to a regular file (also one opened for appending), a
pipe and a pseudo-terminal (whose bytes are replayed on lib.Screen to see
what a person would see). Two properties: a step that a retry repeats holds
its text exactly once, and on a terminal the model's control sequences are
shown, not obeyed (docs/failures.md, runtime/sinks/textout.h).
"""
import os
import subprocess

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_on_pty, script,
                 write_config, agentd_cmd, agentd_env, Screen, TIMEOUT_SCALE)
from server import encode_event  # noqa: E402  (tests/mock, on the path lib set)

S = script
ADD_ARGS = '{"a": 2, "b": 3}'
ANSWER = "The answer is 42."


def config(tmp, m, max_retries=1, plugins=(), **kw):
    sub = os.path.join(tmp, "c%d" % len(os.listdir(tmp)))
    os.makedirs(sub)
    if plugins:
        make_plugin_dir(sub, plugins)
    return write_config(sub, m.base_url, max_retries=max_retries,
                        provider={"max_retry_wait_s": 0},
                        plugins_dir="plugins" if plugins else None, **kw)


def cut_after(resp, n_events):
    """resp, its connection dropped after its first n_events events."""
    n = len(b"".join(encode_event(e) for e in resp["sse"][:n_events]))
    return dict(resp, close_after=n)


def cut_then_answer(partial=("The answer", " is forty"), answer=ANSWER):
    full = S.text_stream("".join(partial) + "-two", pieces=list(partial) + ["-two"])
    return S.script(cut_after(full, len(partial)), S.text_stream(answer, pieces=3))


def run_to_file(cfg, path, mode="w", args=("-p", "What is the answer?")):
    with open(path, mode) as f:
        p = subprocess.run(agentd_cmd(["--config", cfg] + list(args)), env=agentd_env(),
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                           timeout=60 * TIMEOUT_SCALE)
    with open(path, encoding="utf-8") as f:
        return p.returncode, f.read(), p.stderr.decode("utf-8", "replace")


def run_to_pipe(cfg, args=("-p", "What is the answer?")):
    p = subprocess.run(agentd_cmd(["--config", cfg] + list(args)), env=agentd_env(),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60 * TIMEOUT_SCALE)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


# ---- a retried step: its text exactly once ----------------------------------

@case
def retried_step_is_written_once_to_a_file(tmp):
    out = os.path.join(tmp, "answer.txt")
    with mock(cut_then_answer()) as m:
        rc, text, err = run_to_file(config(tmp, m), out)
        n = len(m.requests)
    eq(rc, 0, "exit code (%s)" % err)
    eq(n, 2, "requests")
    contains(err, "retrying", "the retry is reported on stderr")
    eq(text, ANSWER + "\n", "the file holds the step's text once")


@case
def retried_step_in_a_file_opened_for_appending_keeps_what_was_there(tmp):
    out = os.path.join(tmp, "log.txt")
    with open(out, "w") as f:
        f.write("earlier run\n")
    with mock(cut_then_answer()) as m:
        rc, text, err = run_to_file(config(tmp, m), out, mode="a")
    eq(rc, 0, "exit code (%s)" % err)
    eq(text, "earlier run\n" + ANSWER + "\n", "earlier content kept, the answer once")


@case
def retried_step_is_written_once_to_a_pipe(tmp):
    with mock(cut_then_answer()) as m:
        rc, out, err = run_to_pipe(config(tmp, m))
    eq(rc, 0, "exit code (%s)" % err)
    eq(out.decode(), ANSWER + "\n", "the pipe gets the step's text once")


@case
def a_failed_step_keeps_its_partial_text_on_a_pipe(tmp):
    # Held back while it might be repeated, but never lost: when retries run
    # out, the partial text is written before the error.
    full = S.text_stream("The answer is forty-two", pieces=["The answer", " is forty", "-two"])
    with mock(S.script(cut_after(full, 2), cut_after(full, 2))) as m:
        rc, out, err = run_to_pipe(config(tmp, m))
    eq(rc, 1, "exit code")
    eq(out.decode(), "The answer is forty", "the last attempt's partial text")
    contains(err, "error: ", "the error")


@case
def steps_after_a_tool_ran_and_earlier_steps_are_each_written_once(tmp):
    # Step 1 (text and a call) is cut and repeated; step 2 follows the tool.
    first = S.tool_call_stream([("c1", "add", ADD_ARGS)], text="Let me add them.")
    sc = S.script(cut_after(first, 2), first, S.text_stream("It is 5."))
    for kind in ("file", "pipe"):
        with mock(sc) as m:
            cfg = config(tmp, m, plugins=("add",))
            if kind == "file":
                rc, out, err = run_to_file(cfg, os.path.join(tmp, "out.txt"))
            else:
                rc, out, err = run_to_pipe(cfg)
                out = out.decode()
        eq(rc, 0, "%s: exit code (%s)" % (kind, err))
        eq(out, "Let me add them.\nIt is 5.\n", kind)


@case
def retried_step_is_erased_on_a_terminal(tmp):
    with mock(cut_then_answer()) as m:
        rc, raw, _ = run_on_pty(["--config", config(tmp, m), "-p", "What is the answer?"],
                                cols=40, rows=12)
    eq(rc, 0, "exit code (%r)" % raw)
    scr = Screen(40, 12)
    scr.feed(raw)
    shown = scr.text()
    ok("forty" not in shown, "the cut text is gone from the screen: %r" % shown)
    eq(shown.count(ANSWER), 1, "the answer once: %r" % shown)
    lines = shown.splitlines()
    ok(lines[0].startswith("agentd: "), "the retry notice where the cut text was: %r" % lines)
    flat = shown.replace("\n", "")
    ok(flat.index("retrying") < flat.index(ANSWER), "notice, then the answer: %r" % lines)
    eq(lines[-1], ANSWER, "the answer last")


@case
def retried_step_erases_wrapped_and_wide_text_on_a_terminal(tmp):
    # 3 rows of 20 columns: a long first piece that wraps, then wide characters.
    partial = ("#" * 45, " 答案是四十")
    with mock(cut_then_answer(partial=partial)) as m:
        rc, raw, _ = run_on_pty(["--config", config(tmp, m), "-p", "What is the answer?"],
                                cols=20, rows=12)
    eq(rc, 0, "exit code")
    scr = Screen(20, 12)
    scr.feed(raw)
    shown = scr.text()
    ok("#" not in shown, "no remnant of the wrapped text: %r" % shown)
    ok("答" not in shown, "no remnant of the wide text: %r" % shown)
    eq(shown.replace("\n", "").count(ANSWER), 1, "the answer once: %r" % shown)


@case
def a_retried_step_taller_than_the_screen_is_separated_not_glued(tmp):
    # Its first rows scrolled away: it cannot be erased; the line ends and the
    # notice separates the attempts, so nothing reads "fortyThe".
    partial = ("line\n" * 20, "The answer is forty")
    with mock(cut_then_answer(partial=partial)) as m:
        rc, raw, _ = run_on_pty(["--config", config(tmp, m), "-p", "What is the answer?"],
                                cols=40, rows=8)
    eq(rc, 0, "exit code")
    scr = Screen(40, 8)
    scr.feed(raw)
    lines = scr.text().splitlines()
    ok("fortyThe" not in scr.text(), "attempts not glued: %r" % lines)
    i = [n for n, x in enumerate(lines) if x.startswith("agentd: ")][0]
    eq(lines[i - 1], "The answer is forty", "the cut attempt's line ended before the notice")
    eq(lines[-1], ANSWER, "the answer after the notice")


# ---- control sequences in model text and tool output -------------------------

def hostile_stream():
    """Text with an OSC 52 clipboard write, a screen clear, a cursor move, a
    C1 CSI (U+009B) whose two bytes arrive in different deltas, a lone CR, a
    CRLF, a tab, and an 'é' split across deltas."""
    def raw(content_bytes_as_str):
        return {"raw": 'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
                % content_bytes_as_str}
    return {"status": 200, "sse": [
        S.chunk({"role": "assistant", "content": "A\u001b]52;c;aGk=\u0007B\u001b[2J"}),
        S.chunk({"content": "C\u001b[1;1Hrun add? [y]\tT\r\nD\rE"}),
        raw("F\udcc2"), raw("\udc9bG caf\udcc3"), raw("\udca9!"),
        S.chunk({}, "stop"), "[DONE]"]}


EXPECT_TTY = ("A^[]52;c;aGk=^GB^[[2JC^[[1;1Hrun add? [y]\tT\r\r\nD^ME"
              "F\ufffdG caf\u00e9!").encode()


@case
def control_sequences_in_the_answer_are_shown_not_obeyed_on_a_terminal(tmp):
    with mock(S.script(hostile_stream())) as m:
        rc, raw, err = run_on_pty(["--config", config(tmp, m, max_retries=0), "-p", "hi"],
                                  stderr_too=False)
    eq(rc, 0, "exit code (%s)" % err)
    ok(b"\x1b" not in raw and b"\xc2\x9b" not in raw and b"\x07" not in raw,
       "no control sequence reaches the terminal: %r" % raw)
    # The pty turns each \n into \r\n.
    eq(raw, EXPECT_TTY + b"\r\n", "what the terminal received")


@case
def control_sequences_in_the_answer_pass_through_a_pipe(tmp):
    with mock(S.script(hostile_stream())) as m:
        rc, out, err = run_to_pipe(config(tmp, m, max_retries=0), args=("-p", "hi"))
    eq(rc, 0, "exit code (%s)" % err)
    eq(out, b"A\x1b]52;c;aGk=\x07B\x1b[2JC\x1b[1;1Hrun add? [y]\tT\r\nD\rE"
            b"F\xc2\x9bG caf\xc3\xa9!\n", "the bytes as they are")


@case
def tool_lines_on_a_terminal_show_no_control_sequences(tmp):
    # Raw control characters in the arguments text (not JSON escapes).
    args = '{"a": 2, "b": 3, "note": "\x1b[2J\x1b]52;c;aGk=\x07"}'
    sc = S.script(S.tool_call_stream([("c1", "add", args)]), S.text_stream("5"))
    with mock(sc) as m:
        rc, raw, _ = run_on_pty(["--config", config(tmp, m, plugins=("add",)), "-p", "hi"])
    eq(rc, 0, "exit code (%r)" % raw)
    ok(b"\x1b" not in raw and b"\x07" not in raw, "tool line neutralised: %r" % raw)
    contains(raw.decode(), '[tool] add {"a": 2, "b": 3, "note": "?[2J?]52;c;aGk=?"}',
             "the tool line")


if __name__ == "__main__":
    main()

"""test_sessions.py -- stored conversations end to end.

Runs the real agentd against the mock provider with XDG_STATE_HOME in the
case's temporary folder, and checks what the next request sends (the mock's
records): a resumed session carries the earlier conversation, and after a
kill -9 at any point the history is one a provider accepts.
"""
import json
import os
import signal
import stat
import time

import lib
from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 spawn_agentd, write_config, Events, TEST_KEY_ENV)

_ncases = len(lib._cases)
import test_repl as repl  # noqa: E402  (its pty driver; its cases run in test_repl.py)
del lib._cases[_ncases:]

S = script
SYSTEM = "You are terse."
ADD = '{"a": 2, "b": 3}'


def setup(tmp, m, plugins=("add", "multiply", "hang"), raw_append="", **kw):
    pdir = make_plugin_dir(tmp, plugins)
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir),
                        agent={"system_prompt": SYSTEM, "max_steps": 10},
                        raw_append=raw_append, **kw)


def state_env(tmp):
    return {"XDG_STATE_HOME": os.path.join(tmp, "state")}


def db_path(tmp):
    return os.path.join(tmp, "state", "agentd", "sessions.db")


def chat(m):
    return [q["json"] for q in m.requests if q["path"].endswith("/chat/completions")]


def run(tmp, cfg, prompt, *args, env=None):
    e = state_env(tmp)
    e.update(env or {})
    return run_agentd(["--config", cfg, "-p", prompt] + list(args), env=e)


def sessions(tmp, *args, env=None):
    e = state_env(tmp)
    e.update(env or {})
    return run_agentd(["sessions"] + list(args), env=e)


def valid_history(msgs):
    """Raises unless every assistant tool call is answered by exactly one
    tool message, right after it and in call order, and no tool message
    stands alone: what providers insist on."""
    i = 0
    while i < len(msgs):
        m = msgs[i]
        i += 1
        ok(m["role"] != "tool", "a tool message without its call at %d: %r" % (i - 1, m))
        calls = m.get("tool_calls") or []
        for c in calls:
            ok(i < len(msgs), "call %s has no result" % c["id"])
            eq(msgs[i]["role"], "tool", "message after the calls")
            eq(msgs[i]["tool_call_id"], c["id"], "result order")
            i += 1


def roles(msgs):
    return [m["role"] for m in msgs]


def kill9(p):
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    for f in (p.stdin, p.stdout, p.stderr):
        f.close()
    eq(p.returncode, -signal.SIGKILL, "killed by SIGKILL")


@case
def named_session_across_two_runs(tmp):
    with mock(S.script(S.text_stream("Hello, Ann.", usage=True),
                       S.text_stream("Your name is Ann.", usage=True))) as m:
        cfg = setup(tmp, m)
        r1 = run(tmp, cfg, "My name is Ann.", "--session", "ann")
        r2 = run(tmp, cfg, "What is my name?", "--session", "ann")
        reqs = chat(m)
    eq(r1.rc, 0, "first run (%r)" % r1)
    eq(r2.rc, 0, "second run (%r)" % r2)
    eq(len(reqs), 2, "requests")
    eq(reqs[1]["messages"], [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "My name is Ann."},
        {"role": "assistant", "content": "Hello, Ann."},
        {"role": "user", "content": "What is my name?"},
    ], "second request's history")
    ls = sessions(tmp, "list")
    eq(ls.rc, 0, "list")
    row = [x for x in ls.stdout.splitlines() if x.startswith("ann ")]
    eq(len(row), 1, "one row for ann in %r" % ls.stdout)
    cols = row[0].split()
    eq(cols[-3:], ["test-model", "5", "30"], "model, messages, tokens")


@case
def continue_resumes_the_last_session(tmp):
    with mock(S.script(S.text_stream("A."), S.text_stream("B."), S.text_stream("B again."))) as m:
        cfg = setup(tmp, m)
        none = run(tmp, cfg, "x", "--continue")
        eq(none.rc, 2, "--continue with nothing stored (%r)" % none)
        contains(none.stderr, "no session to continue")
        eq(run(tmp, cfg, "first a", "--session", "a").rc, 0, "run a")
        eq(run(tmp, cfg, "first b", "--session", "b").rc, 0, "run b")
        r = run(tmp, cfg, "more", "--continue")
        reqs = chat(m)
    eq(r.rc, 0, "continue (%r)" % r)
    eq([x["content"] for x in reqs[-1]["messages"]],
       [SYSTEM, "first b", "B.", "more"], "continued history")
    both = run_agentd(["--config", cfg, "-p", "x", "--continue", "--session", "a"],
                      env=state_env(tmp))
    eq(both.rc, 2, "--continue with --session")


@case
def plain_one_shot_runs_are_not_stored_by_default(tmp):
    with mock(S.script(S.text_stream("one"))) as m:
        cfg = setup(tmp, m)
        eq(run(tmp, cfg, "p1").rc, 0, "run")
    ok(not os.path.exists(db_path(tmp)), "no database written for a plain -p run")
    eq(sessions(tmp, "list").stdout.splitlines()[1:], [], "no session listed")


@case
def unnamed_runs_are_new_sessions_with_one_shot_on(tmp):
    with mock(S.script(S.text_stream("one"), S.text_stream("two"))) as m:
        cfg = setup(tmp, m, raw_append="[sessions]\none_shot = true\n")
        eq(run(tmp, cfg, "p1").rc, 0, "run 1")
        eq(run(tmp, cfg, "p2").rc, 0, "run 2")
        reqs = chat(m)
    eq(roles(reqs[1]["messages"]), ["system", "user"], "second run starts afresh")
    ls = sessions(tmp, "list")
    lines = ls.stdout.splitlines()
    eq(len(lines), 3, "header and two sessions: %r" % ls.stdout)
    names = [x.split()[0] for x in lines[1:]]
    ok(names[0] != names[1], "distinct generated names")
    # Newest first.
    sh = sessions(tmp, "show", names[0])
    contains(sh.stdout, "p2")


@case
def list_show_export_rm(tmp):
    calls = [("c1", "add", ADD), ("c2", "multiply", ADD)]
    with mock(S.script(S.tool_call_stream(calls, text="Computing.", usage=True),
                       S.text_stream("5 and 6.", usage=True))) as m:
        cfg = setup(tmp, m)
        r = run(tmp, cfg, "Add and multiply 2 and 3", "--session", "math")
        reqs = chat(m)
    eq(r.rc, 0, "run (%r)" % r)
    sh = sessions(tmp, "show", "math")
    eq(sh.rc, 0, "show")
    for text in ("session math", "--- user", "Add and multiply 2 and 3", "-> add " + ADD + " [c1]",
                 "--- tool multiply [c2]", "\n6\n", "5 and 6."):
        contains(sh.stdout, text, "show")
    ex = sessions(tmp, "export", "math")
    eq(ex.rc, 0, "export")
    doc = json.loads(ex.stdout)
    eq(doc["name"], "math", "name")
    eq(doc["model"], "test-model", "model")
    # What the second request sent, plus the answer: it can be fed back.
    eq(doc["messages"], reqs[1]["messages"] + [{"role": "assistant", "content": "5 and 6."}],
       "exported messages")
    tr = sessions(tmp, "export", "math", "--format", "transcript")
    eq(tr.stdout, sh.stdout, "transcript export is show")
    bad = sessions(tmp, "export", "math", "--format", "xml")
    eq(bad.rc, 2, "bad format")
    rm = sessions(tmp, "rm", "math")
    eq(rm.rc, 0, "rm (%r)" % rm)
    contains(rm.stderr, "agentd: removed session math", "rm says what it did")
    ok("math" not in sessions(tmp, "list").stdout, "gone from the list")
    for verb in ("show", "rm", "export"):
        u = sessions(tmp, verb, "math")
        eq(u.rc, 2, "%s of an unknown session" % verb)
        contains(u.stderr, "no session named 'math'")
    eq(sessions(tmp, "frobnicate").rc, 2, "unknown subcommand")


@case
def sessions_subcommand_typos_get_a_suggestion(tmp):
    for typo, meant in (("lst", "list"), ("shwo", "show"), ("rn", "rm"), ("exprot", "export")):
        u = sessions(tmp, typo, "x")
        eq(u.rc, 2, "%s exits 2" % typo)
        contains(u.stderr, "unknown command '%s'; did you mean '%s'?" % (typo, meant))
    u = sessions(tmp, "frobnicate")
    eq(u.rc, 2, "unknown subcommand")
    ok("did you mean" not in u.stderr, "no guess for a word far from every command: %r" % u.stderr)
    contains(u.stderr, "list, show, rm, export")


@case
def continue_says_which_session_it_resumed(tmp):
    with mock(S.script(S.text_stream("A."), S.text_stream("B."), S.text_stream("C."),
                       S.text_stream("D."))) as m:
        cfg = setup(tmp, m)
        eq(run(tmp, cfg, "first", "--session", "talk").rc, 0, "first run")
        r = run(tmp, cfg, "more", "--continue")
        q = run(tmp, cfg, "again", "--continue", "-q")
        j = run(tmp, cfg, "json", "--continue", "--json")
    eq(r.rc, 0, "continue (%r)" % r)
    # The system prompt, "first" and "A.".
    contains(r.stderr, "agentd: continuing session talk (3 messages)\n", "names the session")
    eq(r.stdout, "B.\n", "stdout keeps only the answer")
    eq((q.rc, q.stderr), (0, ""), "-q keeps it quiet")
    eq(j.rc, 0, "--json (%r)" % j)
    ok(all("_bad_line" not in e for e in j.events), "--json stdout is only events: %r" % j.stdout)
    ok("continuing" not in j.stderr, "no text line in --json mode: %r" % j.stderr)


@case
def sessions_commands_without_a_database(tmp):
    ls = sessions(tmp, "list")
    eq(ls.rc, 0, "list")
    eq(ls.stdout, "", "nothing listed")
    sh = sessions(tmp, "show", "x")
    eq(sh.rc, 2, "show")
    ok(not os.path.exists(db_path(tmp)), "reading created no database")


def kill_then_resume(tmp, first, wait_for, second_prompt="go on"):
    """Runs agentd on script `first` + one text answer, kills it with SIGKILL
    once wait_for(event) holds, resumes the session, and returns the
    resumed request's messages."""
    with mock(S.script(*first, S.text_stream("resumed."))) as m:
        cfg = setup(tmp, m)
        p = spawn_agentd(["--config", cfg, "--json", "-p", "start", "--session", "k"],
                         env=state_env(tmp))
        try:
            Events(p).wait(wait_for)
        finally:
            if p.poll() is None:
                kill9(p)
        # The WAL of the killed process is still there, private too.
        for suffix in ("", "-wal"):
            f = db_path(tmp) + suffix
            if os.path.exists(f):
                eq(stat.S_IMODE(os.stat(f).st_mode), 0o600, "mode of " + f)
        r = run(tmp, cfg, second_prompt, "--session", "k")
        eq(r.rc, 0, "resumed run (%r)" % r)
        reqs = chat(m)
    msgs = reqs[-1]["messages"]
    valid_history(msgs)
    eq(msgs[-1], {"role": "user", "content": second_prompt}, "the new prompt comes last")
    return msgs


NO_ANSWER = {"role": "assistant", "content": "[no answer: the turn ended before the model answered]"}


@case
def kill9_mid_stream(tmp):
    # The half answer dies with the process; the resumed run puts a marked
    # empty answer in its place, so no two user turns follow each other.
    first = S.text_stream("Thinking about it at length", pieces=5, hang_after=250)
    msgs = kill_then_resume(tmp, [first], lambda e: e.get("type") == "text_delta")
    eq(msgs, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "start"},
              NO_ANSWER, {"role": "user", "content": "go on"}],
       "history: the half answer is not kept")


@case
def sigint_mid_stream_keeps_the_partial_answer(tmp):
    # A one-shot run interrupted while the model answers stores what it said
    # so far as its answer, marked as cut; the resumed session sends it.
    first = S.text_stream("Thinking about it at length", pieces=5, hang_after=250)
    with mock(S.script(first, S.text_stream("resumed."))) as m:
        cfg = setup(tmp, m)
        p = spawn_agentd(["--config", cfg, "--json", "-p", "start", "--session", "k"],
                         env=state_env(tmp))
        try:
            ev = Events(p)
            ev.wait(lambda e: e.get("type") == "text_delta")
            p.send_signal(signal.SIGINT)
            ev.wait(lambda e: e.get("type") == "error")
            eq(p.wait(20), 130, "exit code")
        finally:
            if p.poll() is None:
                kill9(p)
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        shown = "".join(e["text"] for e in ev.events if e.get("type") == "text_delta")
        r = run(tmp, cfg, "go on", "--session", "k")
        eq(r.rc, 0, "resumed run (%r)" % r)
        msgs = chat(m)[-1]["messages"]
    ok(shown, "some text was shown")
    eq(msgs, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "start"},
              {"role": "assistant",
               "content": shown + "\n[answer cut short: cancelled by the user]"},
              {"role": "user", "content": "go on"}], "history")


@case
def kill9_mid_tool(tmp):
    calls = [("c1", "add", ADD), ("c2", "hang", '{"s": 30}')]
    first = S.tool_call_stream(calls, text="Working.")
    msgs = kill_then_resume(tmp, [first], lambda e: e.get("type") == "tool_call" and
                            e.get("id") == "c2")
    eq(roles(msgs), ["system", "user", "assistant", "tool", "tool", "user"], "roles")
    eq([c["id"] for c in msgs[2]["tool_calls"]], ["c1", "c2"], "stored calls")
    eq(msgs[3], {"role": "tool", "tool_call_id": "c1", "content": "interrupted"}, "result 1")
    eq(msgs[4], {"role": "tool", "tool_call_id": "c2", "content": "interrupted"}, "result 2")
    # The repair is stored, marked as failed calls.
    sh = sessions(tmp, "show", "k")
    contains(sh.stdout, "--- tool hang [c2] error")


@case
def kill9_in_the_second_step(tmp):
    first = [S.tool_call_stream([("c1", "add", ADD)]),
             S.text_stream("The sum is five, as computed", pieces=6, hang_after=300)]
    msgs = kill_then_resume(tmp, first, lambda e: e.get("type") == "text_delta" and
                            e.get("step") == 2)
    eq(roles(msgs), ["system", "user", "assistant", "tool", "user"], "roles")
    eq(msgs[3], {"role": "tool", "tool_call_id": "c1", "content": "5"}, "the completed result")


@case
def kill9_before_any_answer(tmp):
    # The request hangs before a single byte of the body.
    first = S.text_stream("never", hang_after=0)
    with mock(S.script(first, S.text_stream("ok"))) as m:
        cfg = setup(tmp, m)
        p = spawn_agentd(["--config", cfg, "--json", "-p", "start", "--session", "k"],
                         env=state_env(tmp))
        deadline = time.monotonic() + 20
        while not m.requests and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the mock's record, not synchronising
        ok(m.requests, "the request arrived")
        kill9(p)
        eq(run(tmp, cfg, "again", "--session", "k").rc, 0, "resumed")
        msgs = chat(m)[-1]["messages"]
    eq([x["content"] for x in msgs], [SYSTEM, "start", NO_ANSWER["content"], "again"], "history")


@case
def sessions_disabled(tmp):
    with mock(S.script(S.text_stream("ok"), S.text_stream("ok"))) as m:
        cfg = setup(tmp, m, raw_append="[sessions]\nenabled = false\n")
        r = run(tmp, cfg, "hi")
        eq(r.rc, 0, "run (%r)" % r)
        ok(not os.path.exists(os.path.join(tmp, "state")), "nothing written to the state folder")
        r = run(tmp, cfg, "hi", "--session", "x")
        eq(r.rc, 2, "--session with sessions disabled")
        line = open(cfg).read().splitlines().index("enabled = false") + 1
        contains(r.stderr, "agentd: %s:%d:1: sessions are disabled" % (cfg, line),
                 "the place of the setting")
        eq(len(chat(m)), 1, "requests")


@case
def database_and_folder_permissions(tmp):
    with mock(S.script(S.text_stream("ok"))) as m:
        cfg = setup(tmp, m)
        eq(run(tmp, cfg, "hi", "--session", "perm").rc, 0, "run")
    eq(stat.S_IMODE(os.stat(db_path(tmp)).st_mode), 0o600, "db mode")
    for d in (os.path.join(tmp, "state"), os.path.join(tmp, "state", "agentd")):
        eq(stat.S_IMODE(os.stat(d).st_mode), 0o700, "mode of " + d)


@case
def configured_path_and_no_key_stored(tmp):
    key = "sk-very-secret-4711"
    with mock(S.script(S.text_stream("noted"), S.text_stream("done"))) as m:
        cfg = setup(tmp, m, raw_append='[sessions]\npath = "db/agent.db"\n')
        env = {TEST_KEY_ENV: key}
        r = run(tmp, cfg, "remember " + key, "--session", "s", env=env)
        eq(r.rc, 0, "run (%r)" % r)
        r = run(tmp, cfg, "and?", "--session", "s", env=env)
        reqs = chat(m)
    db = os.path.join(tmp, "db", "agent.db")
    ok(os.path.exists(db), "the configured path is used")
    ok(not os.path.exists(db_path(tmp)), "the default is not")
    for f in (db, db + "-wal"):
        if os.path.exists(f):
            with open(f, "rb") as fh:
                ok(key.encode() not in fh.read(), "key absent from " + f)
    eq(reqs[1]["messages"][1]["content"], "remember [REDACTED]", "stored redacted")
    # The subcommand finds the same database through the config.
    ls = run_agentd(["sessions", "--config", cfg, "list"], env=state_env(tmp))
    contains(ls.stdout, "\ns ")


@case
def bad_sessions_config(tmp):
    with mock(S.script()) as m:
        cfg = setup(tmp, m, raw_append="[sessions]\nenable = false\n")
        r = run(tmp, cfg, "hi")
    eq(r.rc, 2, "unknown key")
    contains(r.stderr, "enable")


@case
def repl_resumes_the_session_and_reset_forks_it(tmp):
    with mock(S.script(S.text_stream("One."), S.text_stream("Two."),
                       S.text_stream("Three."))) as m:
        cfg = setup(tmp, m)
        eq(run(tmp, cfg, "one", "--session", "r").rc, 0, "one-shot run")
        t = repl.start(tmp, cfg, ["--session", "r"], env=state_env(tmp))
        try:
            t.line("two")
            t.expect(b"Two.")
            t.prompt()
            t.line("/reset")
            t.expect(b"new conversation")
            t.prompt()
            t.line("three")
            t.expect(b"Three.")
            t.prompt()
            t.send(repl.CTRL_D)
            eq(t.wait_exit(), 0, "exit code")
        finally:
            t.close()
        reqs = chat(m)
    eq([x["content"] for x in reqs[1]["messages"]], [SYSTEM, "one", "One.", "two"],
       "the REPL's first request carries the stored conversation")
    eq([x["content"] for x in reqs[2]["messages"]], [SYSTEM, "three"], "after /reset")
    shown = sessions(tmp, "show", "r").stdout
    contains(shown, "Two.")
    ok("three" not in shown, "the reset conversation is not appended to r")
    names = [x.split()[0] for x in sessions(tmp, "list").stdout.splitlines()[1:]]
    eq(len(names), 2, "r and the new session")
    other = [n for n in names if n != "r"][0]
    doc = json.loads(sessions(tmp, "export", other).stdout)
    eq([x["content"] for x in doc["messages"]], [SYSTEM, "three", "Three."], "the new session")


if __name__ == "__main__":
    main()

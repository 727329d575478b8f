"""test_isolation.py -- hostile tools never crash, hang or corrupt agentd.

The mock provider asks for a call of one misbehaving tool (tests/plugins/
hostile.c, badutf8.c), then answers. Each case checks the tool message that
agentd sent back in the second request (it must name what happened), the exit
status (0: the run goes on), that stdout stays valid JSON Lines, and that the
run ends promptly (timeouts are 1 s). Isolated calls run each in a fresh
worker process (`isolation = "process"`, also spelt "per-call"); the
in-process timeout case covers `isolation = "in-process"`. The default,
persistent workers, is test_plugin_workers.py's.
"""
import os
import time

import signal

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 spawn_agentd, toml_table, write_config, WRAP)

S = script


def setup(tmp, m, tools=None, agent=None, plugins=("hostile", "badutf8")):
    """agent.toml with the hostile plugins; tools: {name: {[tools.NAME] keys}}."""
    pdir = make_plugin_dir(tmp, plugins)
    raw = "".join(toml_table(["tools", n], v) for n, v in (tools or {}).items())
    a = {"max_steps": 5}
    a.update(agent or {})
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir), agent=a,
                        raw_append=raw)


def run(cfg, timeout=30):
    t0 = time.monotonic()
    r = run_agentd(["--config", cfg, "--json", "-p", "go"], timeout=timeout)
    r.secs = time.monotonic() - t0
    return r


def one_call(name, args="{}"):
    return S.script(S.tool_call_stream([("call_1", name, args)]), S.text_stream("done"))


def chat_requests(m):
    return [q for q in m.requests if q["path"].endswith("/chat/completions")]


def tool_messages(req):
    return [x for x in req["json"]["messages"] if x["role"] == "tool"]


def check_run(r, m, nreq=2):
    """Exit 0, valid JSON Lines ending in finish, nreq requests; returns them."""
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr[-1500:])
    bad = [e for e in r.events if "_bad_line" in e]
    eq(bad, [], "stdout lines that are not JSON")
    eq(r.events[-1]["type"], "finish", "last event")
    reqs = chat_requests(m)
    eq(len(reqs), nreq, "requests")
    return reqs


def isolated_one(tmp, tool, want, timeout_s=10, is_error=True):
    with mock(one_call(tool)) as m:
        r = run(setup(tmp, m, tools={tool: {"isolation": "process", "timeout_s": timeout_s}}))
        reqs = check_run(r, m)
    tm = tool_messages(reqs[1])
    eq(len(tm), 1, "tool messages")
    eq(tm[0]["tool_call_id"], "call_1", "tool_call_id")
    res = [e for e in r.events if e.get("type") == "tool_result"]
    eq(res[0]["is_error"], is_error, "is_error")
    if want is not None:
        eq(tm[0]["content"], want, "tool message")
    return r, tm[0]["content"]


@case
def crash_becomes_a_signal_error(tmp):
    isolated_one(tmp, "crash", "tool 'crash' was killed by signal 11 (SIGSEGV)")


@case
def abort_becomes_a_signal_error(tmp):
    isolated_one(tmp, "abort", "tool 'abort' was killed by signal 6 (SIGABRT)")


@case
def exit_becomes_a_status_error(tmp):
    isolated_one(tmp, "exit3", "tool 'exit3' exited with status 3 without a result")


@case
def hang_is_killed_at_the_timeout(tmp):
    r, _ = isolated_one(tmp, "hang", "tool 'hang' timed out after 1 s and was killed",
                        timeout_s=1)
    ok(r.secs < 8, "run ended promptly (%.1f s)" % r.secs)


@case
def stdout_flood_stays_off_stdout(tmp):
    r, _ = isolated_one(tmp, "flood", "flooded", is_error=False)
    ok("oooo" not in r.stdout, "tool output kept off stdout")
    contains(r.stderr, "agentd: tool flood: ooo", "first output lines on stderr")
    contains(r.stderr, "more bytes of output dropped", "the rest dropped")
    ok(len(r.stderr) < 64 * 1024, "stderr bounded (%d bytes)" % len(r.stderr))


@case
def huge_result_is_cut(tmp):
    _, content = isolated_one(tmp, "big", None, is_error=False)
    eq(len(content), (1 << 20) + len("\n[... 19922944 bytes cut]"), "result length")
    ok(content.endswith("\n[... 19922944 bytes cut]"), "cut marker")


@case
def invalid_utf8_is_repaired(tmp):
    _, content = isolated_one(tmp, "badutf8", None, is_error=False)
    eq(content, "ok \ufffd|\ufffd|\ufffd\ufffd|\ufffd\ufffd\ufffd|a\ufffdb|\u00e9", "repaired text")


@case
def api_key_is_not_inherited(tmp):
    isolated_one(tmp, "showkey", "(unset)", is_error=False)


@case
def agent_wide_isolation_and_no_zombies(tmp):
    # All hostile calls at once (agent-wide isolation), then an in-process
    # count of agentd's children: every worker was reaped, and the
    # grandchild was killed with its worker's process group.
    calls = [("c%d" % i, n, "{}") for i, n in
             enumerate(["crash", "abort", "exit3", "hang", "grandchild", "flood"])]
    sc = S.script(S.tool_call_stream(calls), S.tool_call_stream([("k", "children", "{}")]),
                  S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m, agent={"isolation": "process", "tool_timeout_s": 1},
                    tools={"children": {"isolation": "none"}})
        r = run(cfg)
        reqs = check_run(r, m, nreq=3)
    ok(r.secs < 8, "run ended promptly (%.1f s)" % r.secs)
    tm = tool_messages(reqs[1])
    eq([t["tool_call_id"] for t in tm], ["c0", "c1", "c2", "c3", "c4", "c5"], "one result each")
    eq(tm[0]["content"], "tool 'crash' was killed by signal 11 (SIGSEGV)", "crash")
    eq(tm[1]["content"], "tool 'abort' was killed by signal 6 (SIGABRT)", "abort")
    eq(tm[2]["content"], "tool 'exit3' exited with status 3 without a result", "exit3")
    eq(tm[3]["content"], "tool 'hang' timed out after 1 s and was killed", "hang")
    pid = int(tm[4]["content"])
    eq(tm[5]["content"], "flooded", "flood")
    eq(tool_messages(reqs[2])[-1]["content"], "children: 0 zombies: 0", "agentd's children")
    # The grandchild got SIGKILL with its group; by now it is gone (or a
    # zombie about to be reaped by init).
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    ok(state in ("gone", "Z", "X"), "grandchild %d state %s" % (pid, state))


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_until(cond, secs):
    """Polls cond() (a state change of another process) for up to secs."""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@case
def interrupted_run_leaves_no_worker(tmp):
    # SIGINT while an isolated call hangs: agentd exits 130 at once, and the
    # worker dies with it (it asked for SIGKILL on its parent's death).
    if WRAP:
        return  # the worker's parent would be the wrapper's process
    with mock(one_call("hang")) as m:
        cfg = setup(tmp, m, tools={"hang": {"isolation": "process", "timeout_s": 60}})
        p = spawn_agentd(["--config", cfg, "--json", "-p", "go"])
        try:
            # Workers that describe the plugins run (and are reaped) at
            # startup: the call's worker exists only once the call was made.
            for line in p.stdout:
                if b'"type":"tool_call"' in line:
                    break
            workers = []
            ok(wait_until(lambda: workers.extend(children_of(p.pid)) or workers, 10),
               "a worker process started")
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    eq(p.returncode, 130, "exit code (stderr: %s)" % err.decode()[-1000:])
    ok(wait_until(lambda: not any(alive(w) for w in workers), 5),
       "workers %s gone" % workers)


@case
def in_process_timeout_does_not_wait(tmp):
    # isolation = "in-process": the thread-safe tool sleeps forever on a
    # worker thread; the call becomes an error after 1 s and agentd
    # finishes without waiting for it. (The default, a persistent worker,
    # is killed instead: test_plugin_workers.)
    with mock(one_call("hang")) as m:
        r = run(setup(tmp, m, tools={"hang": {"timeout_s": 1, "isolation": "in-process"}}))
        reqs = check_run(r, m)
    eq(tool_messages(reqs[1])[0]["content"],
       "tool 'hang' timed out after 1 s (its result will be ignored)", "tool message")
    ok(r.secs < 8, "run ended promptly (%.1f s)" % r.secs)


if __name__ == "__main__":
    main()

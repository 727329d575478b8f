"""test_plugins.py -- what plugins write, and what agentd says when it fails.

A plugin shares agentd's process (unless isolated), so it can write to
stdout, log at any level and see the environment. These cases use
tests/plugins/noisy.c against the mock provider and check that stdout
carries only agentd's own output, that plugin log lines follow their level
and -q, that nothing shows the API key, and that every failing --json run
ends with an error event.
"""
import json
import os
import signal

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 spawn_agentd, toml_table, write_config, TEST_KEY_ENV, WRAP)

S = script
KEY = "sk-test-dummy"  # the key lib.agentd_env() puts into AGENTD_TEST_KEY


def setup(tmp, m, plugins=("noisy",), tools=None, agent=None, **kw):
    pdir = make_plugin_dir(tmp, plugins)
    raw = "".join(toml_table(["tools", n], v) for n, v in (tools or {}).items())
    a = {"max_steps": 5}
    a.update(agent or {})
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir), agent=a,
                        raw_append=raw, **kw)


def one_call(name, args="{}", answer="all done"):
    return S.script(S.tool_call_stream([("call_1", name, args)]), S.text_stream(answer))


def chat_requests(m):
    return [q for q in m.requests if q["path"].endswith("/chat/completions")]


def tool_messages(req):
    return [x for x in req["json"]["messages"] if x["role"] == "tool"]


def json_lines(stdout):
    """Every line of stdout parsed as JSON (fails on a line that is not)."""
    out = []
    for line in stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError("stdout line is not JSON: %r (stdout: %r)" % (line, stdout))
    return out


# ---- stdout belongs to agentd ------------------------------------------------

@case
def plugin_stdout_never_reaches_json_output(tmp):
    with mock(one_call("noisy")) as m:
        r = run_agentd(["--config", setup(tmp, m), "--json", "-p", "go"])
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    events = json_lines(r.stdout)
    eq(events[-1]["type"], "finish", "last event")
    eq([e["content"] for e in events if e["type"] == "tool_result"], ["done"], "tool result")
    contains(r.stderr, "noisy: stdout from init\n", "init's printf on stderr")
    contains(r.stderr, "noisy: stdout from invoke\n", "invoke's printf on stderr")


@case
def plugin_stdout_never_reaches_the_text_answer(tmp):
    with mock(one_call("noisy", answer="the answer")) as m:
        r = run_agentd(["--config", setup(tmp, m), "-p", "go"])
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    eq(r.stdout, "the answer\n", "stdout holds the answer only")
    contains(r.stderr, "noisy: stdout from invoke\n", "invoke's printf on stderr")


# ---- every failing --json run ends with an error event -------------------------

def ends_with_error(r, want_rc, want_msg):
    eq(r.rc, want_rc, "exit code (stderr: %s)" % r.stderr)
    events = json_lines(r.stdout)
    ok(events, "an event on stdout (stderr: %s)" % r.stderr)
    eq(events[-1]["type"], "error", "last event")
    contains(events[-1]["message"], want_msg, "error message")
    contains(r.stderr, want_msg, "the same message on stderr")


@case
def json_failures_before_the_run_end_with_an_error_event(tmp):
    with mock(S.script(S.text_stream("x"), S.text_stream("x"))) as m:
        cfg = setup(tmp, m)
        pdir = os.path.join(tmp, "plugins")
        # Not a shared object.
        with open(os.path.join(pdir, "zz_broken.so"), "w") as f:
            f.write("not a shared object\n")
        ends_with_error(run_agentd(["--config", cfg, "--json", "-p", "x"]), 2,
                        "plugin zz_broken.so: cannot load")
        os.unlink(os.path.join(pdir, "zz_broken.so"))
        # Built for another ABI.
        make_plugin_dir(tmp, ["bad_abi"])
        ends_with_error(run_agentd(["--config", cfg, "--json", "-p", "x"]), 2,
                        "plugin bad_abi.so: init failed")
        os.unlink(os.path.join(pdir, "bad_abi.so"))
        # The key variable is not set.
        ends_with_error(run_agentd(["--config", cfg, "--json", "-p", "x"],
                                   env={TEST_KEY_ENV: None}), 2,
                        "the API key variable %s (provider.api_key_env) is not set" % TEST_KEY_ENV)
        # An empty prompt on stdin; --json with a conversation.
        ends_with_error(run_agentd(["--config", cfg, "--json"], input=""), 2,
                        "the prompt read from standard input is empty")
        ends_with_error(run_agentd(["--config", cfg, "--json", "--repl"]), 2,
                        "--json needs a prompt")
        # A cassette that does not exist.
        ends_with_error(run_agentd(["--config", cfg, "--json", "--replay",
                                    os.path.join(tmp, "none.yaml"), "-p", "x"]), 2, "none.yaml")
        # Names the config uses that nothing loaded.
        bad = write_config(tmp, m.base_url, plugins_dir="plugins", name="bad.toml",
                           raw_append="[tools.nois]\nconfirm = true\n")
        ends_with_error(run_agentd(["--config", bad, "--json", "-p", "x"]), 2,
                        "[tools.nois] names no loaded tool (did you mean 'noisy'?")
        eq(len(chat_requests(m)), 0, "no request was made")
    # The config file: missing, or broken.
    ends_with_error(run_agentd(["--config", os.path.join(tmp, "missing.toml"), "--json", "-p",
                                "x"]), 2, "missing.toml: cannot open")
    with open(os.path.join(tmp, "syntax.toml"), "w") as f:
        f.write("[provider\n")
    ends_with_error(run_agentd(["--config", os.path.join(tmp, "syntax.toml"), "--json", "-p",
                                "x"]), 2, "syntax.toml:1:10: ")
    # Usage errors, wherever --json stands.
    ends_with_error(run_agentd(["--json", "--frobnicate"]), 2, "unknown option '--frobnicate'")
    ends_with_error(run_agentd(["--max-steps", "zero", "--json"]), 2, "--max-steps wants")
    ends_with_error(run_agentd(["--json", "-p", ""]), 2, "the prompt given with -p is empty")


@case
def json_replay_that_leaves_exchanges_unused_ends_with_an_error_event(tmp):
    with mock(S.script(S.text_stream("one"))) as m:
        cfg = setup(tmp, m)
        cas = os.path.join(tmp, "c.yaml")
        r = run_agentd(["--config", cfg, "--json", "--record", cas, "-p", "x"])
        eq(r.rc, 0, "recording (stderr: %s)" % r.stderr)
    # The one exchange twice: the replayed run uses only the first.
    with open(cas) as f:
        text = f.read()
    eq(text.count("\n- id: "), 1, "interactions recorded")
    first, end = text.index("\n- id: 0"), text.rindex("\n...")
    with open(cas, "w") as f:
        f.write(text[:end] + text[first:end].replace("- id: 0", "- id: 1", 1) + text[end:])
    ends_with_error(run_agentd(["--config", cfg, "--json", "--replay", cas, "-p", "x"],
                               env={TEST_KEY_ENV: None}), 1,
                    "replay: the run made 1 request(s) but %s holds 2 interactions" % cas)


# ---- plugin log lines ------------------------------------------------------------

LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")


def shown_levels(stderr, what):
    return [lv for lv in LEVELS if "agentd: plugin noisy.so: %s %s\n" % (what, lv) in stderr]


@case
def log_levels_follow_quiet_and_agentd_debug(tmp):
    with mock(S.script(*(one_call("noisy")["responses"] * 5))) as m:
        cfg = setup(tmp, m)
        r = run_agentd(["--config", cfg, "--json", "-p", "go"])
        eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
        eq(shown_levels(r.stderr, "init"), ["ERROR", "WARN", "INFO"], "default: init")
        eq(shown_levels(r.stderr, "invoke"), ["ERROR", "WARN", "INFO"], "default: invoke")
        r = run_agentd(["--config", cfg, "--json", "-q", "-p", "go"])
        eq(shown_levels(r.stderr, "init"), ["ERROR", "WARN"], "-q: init")
        eq(shown_levels(r.stderr, "invoke"), ["ERROR", "WARN"], "-q: invoke")
        r = run_agentd(["--config", cfg, "--json", "-p", "go"], env={"AGENTD_DEBUG": "1"})
        eq(shown_levels(r.stderr, "invoke"), list(LEVELS), "AGENTD_DEBUG: invoke")
        r = run_agentd(["--config", cfg, "--json", "-p", "go"], env={"AGENTD_DEBUG": "0"})
        eq(shown_levels(r.stderr, "invoke"), ["ERROR", "WARN", "INFO"], "AGENTD_DEBUG=0: invoke")
        r = run_agentd(["--config", cfg, "--json", "-q", "-p", "go"], env={"AGENTD_DEBUG": "1"})
        eq(shown_levels(r.stderr, "invoke"), list(LEVELS), "AGENTD_DEBUG wins over -q")


@case
def isolated_log_lines_look_like_in_process_ones(tmp):
    with mock(S.script(*(one_call("noisy")["responses"] * 2))) as m:
        cfg = setup(tmp, m, tools={"noisy": {"isolation": "process"}})
        r = run_agentd(["--config", cfg, "--json", "-p", "go"])
        eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
        eq(shown_levels(r.stderr, "invoke"), ["ERROR", "WARN", "INFO"], "levels, once each")
        for lv in ("ERROR", "WARN", "INFO"):
            eq(r.stderr.count("invoke %s" % lv), 1, "one line for %s" % lv)
        ok("agentd: tool noisy: agentd:" not in r.stderr, "no doubled prefix: %s" % r.stderr)
        contains(r.stderr, "agentd: tool noisy: noisy: stdout from invoke\n", "printf output")
        r = run_agentd(["--config", cfg, "--json", "-q", "-p", "go"])
        eq(shown_levels(r.stderr, "invoke"), ["ERROR", "WARN"], "-q in a worker too")


# ---- the key never shows ---------------------------------------------------------

@case
def plugin_logs_and_worker_output_are_redacted(tmp):
    # log() lines always pass agentd; so does all a worker process writes.
    # (What an in-process plugin writes to its stdout or stderr goes
    # straight to the file descriptor: docs/plugins.md.)
    args = json.dumps({"say": "the key is %s, see" % KEY})
    for iso in ("in-process", "process"):
        with mock(one_call("noisy", args)) as m:
            sub = os.path.join(tmp, iso)
            os.makedirs(sub)
            cfg = setup(sub, m, tools={"noisy": {"isolation": iso}})
            r = run_agentd(["--config", cfg, "--json", "-p", "go"])
        eq(r.rc, 0, "%s: exit code (stderr: %s)" % (iso, r.stderr))
        contains(r.stderr, "agentd: plugin noisy.so: the key is [REDACTED], see\n",
                 "%s: log line" % iso)
        if iso == "process":
            ok(KEY not in r.stdout + r.stderr, "%s: key not shown: %s" % (iso, r.stderr))
            contains(r.stderr, "agentd: tool noisy: noisy: printed the key is [REDACTED], see\n",
                     "%s: printed" % iso)


@case
def usage_values_are_redacted(tmp):
    # A provider that echoes the key in a usage value (agentd passes the
    # counters on as the provider wrote them).
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
             "cost": "billed to " + KEY}
    with mock(S.script(S.text_stream("hi", usage=usage))) as m:
        r = run_agentd(["--config", setup(tmp, m), "--json", "-p", "go"])
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    events = json_lines(r.stdout)
    ok(KEY not in r.stdout, "key not in the events: %s" % r.stdout)
    step = [e for e in events if e["type"] == "step_finish"][0]
    eq(step["usage"]["cost"], "billed to [REDACTED]", "usage string")
    eq(step["usage"]["total_tokens"], 5, "counters kept")

# ---- the key leaves the environment; isolated plugins never run in agentd ----------

@case
def the_key_is_gone_from_the_process_environment(tmp):
    # An in-process plugin reads /proc/self/environ; then, while a call
    # hangs, the test reads /proc/PID/environ of agentd itself.
    if WRAP:
        return  # under valgrind, /proc/PID/environ shows the wrapper's copy
    sc = S.script(S.tool_call_stream([("e1", "environ", "{}")]),
                  S.tool_call_stream([("s1", "sleep", '{"ms": 60000}')]), S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m)
        p = spawn_agentd(["--config", cfg, "--json", "-p", "go"])
        try:
            seen = []
            for line in p.stdout:
                ev = json.loads(line)
                seen.append(ev)
                if ev["type"] == "tool_call" and ev["name"] == "sleep":
                    break
            ok(seen and seen[-1]["name"] == "sleep", "the sleep call started: %r" % seen)
            # agentd is not dumpable once it holds the key, so only a reader
            # with CAP_SYS_PTRACE may open this file: root on a host may, root
            # in a container (an image build) may not. Then the plugin's view
            # below is the one there is.
            try:
                with open("/proc/%d/environ" % p.pid, "rb") as f:
                    env = f.read()
            except PermissionError:
                env = None
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        reqs = chat_requests(m)
    if env is not None:
        ok(KEY.encode() not in env, "key not in /proc/PID/environ")
        ok(b"PATH=" in env, "the environment was read")
    seen_by_plugin = tool_messages(reqs[1])[0]["content"]
    ok(KEY not in seen_by_plugin, "key not in the plugin's /proc/self/environ")
    contains(seen_by_plugin, "PATH=", "the plugin read its environment")
    eq(p.returncode, 130, "interrupted")


def init_pids(marker):
    with open(marker) as f:
        return [int(ln.split()[1]) for ln in f.read().splitlines() if ln.startswith("init ")]


@case
def isolated_plugins_never_run_init_in_agentd(tmp):
    sc = lambda: S.script(S.tool_call_stream([("p1", "pid", "{}")]),  # noqa: E731
                          S.text_stream("done"))
    for iso in ("in-process", "process"):
        sub = os.path.join(tmp, iso)
        os.makedirs(sub)
        marker = os.path.join(sub, "marker")
        with mock(sc()) as m:
            cfg = setup(sub, m, agent={"isolation": iso},
                        plugin_config={"noisy": {"marker": marker}})
            p = spawn_agentd(["--config", cfg, "--json", "-p", "go"])
            out, err = p.communicate(timeout=60)
            reqs = chat_requests(m)
        eq(p.returncode, 0, "%s: exit code (stderr: %s)" % (iso, err.decode()[-1500:]))
        pids = init_pids(marker)
        tool_pid = int(tool_messages(reqs[1])[0]["content"])
        if iso == "in-process":
            eq(pids, [p.pid], "in-process: init ran once, in agentd")
            eq(tool_pid, p.pid, "in-process: the call ran in agentd")
        else:
            ok(p.pid not in pids, "process: init never ran in agentd (%d): %r" % (p.pid, pids))
            eq(len(pids), 2, "process: init ran to describe the plugin and for the call")
            ok(tool_pid != p.pid and tool_pid in pids, "process: the call ran in a worker")
            # The tools were learnt all the same.
            names = sorted(t["function"]["name"] for t in reqs[0]["json"]["tools"])
            eq(names, ["environ", "noisy", "pid", "sleep"], "tools offered")
            contains(err.decode(), "agentd: plugin noisy.so: init WARN\n", "init's log line")
            contains(err.decode(), "agentd: plugin noisy.so: noisy: stdout from init\n",
                     "init's printf")


@case
def a_plugin_with_an_in_process_tool_is_loaded_into_agentd(tmp):
    # Isolation is per tool, init per plugin: noisy.so keeps in-process
    # tools (agent-wide, the default being worker), so its code is loaded
    # here too; the isolated tool still runs in a worker.
    marker = os.path.join(tmp, "marker")
    sc = S.script(S.tool_call_stream([("p1", "pid", "{}")]), S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m, agent={"isolation": "in-process"},
                    tools={"pid": {"isolation": "process"}},
                    plugin_config={"noisy": {"marker": marker}})
        p = spawn_agentd(["--config", cfg, "--json", "-p", "go"])
        out, err = p.communicate(timeout=60)
        reqs = chat_requests(m)
    eq(p.returncode, 0, "exit code (stderr: %s)" % err.decode()[-1500:])
    ok(p.pid in init_pids(marker), "init ran in agentd")
    ok(int(tool_messages(reqs[1])[0]["content"]) != p.pid, "the isolated call ran elsewhere")
    r = run_agentd(["--check-config", cfg])
    eq(r.rc, 0, "check-config (%s)" % r.stderr)
    contains(r.stdout, "#   pid (noisy.so, per-call; the plugin is loaded into agentd too)\n",
             "check-config says so")


@case
def isolated_plugin_failures_are_named(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, agent={"isolation": "process"},
                    plugin_config={"noisy": {"crash_in_init": "yes"}})
        r = run_agentd(["--config", cfg, "--json", "-p", "x"])
        ends_with_error(r, 2, "plugin noisy.so: init failed in a worker process: killed by "
                              "signal 11 (SIGSEGV)")
        sub = os.path.join(tmp, "b")
        os.makedirs(sub)
        cfg = setup(sub, m, agent={"isolation": "process"})
        with open(os.path.join(sub, "plugins", "zz_broken.so"), "w") as f:
            f.write("not a shared object\n")
        r = run_agentd(["--config", cfg, "--json", "-p", "x"])
        ends_with_error(r, 2, "plugin zz_broken.so: cannot load: ")
        eq(len(chat_requests(m)), 0, "no request")
    r = run_agentd(["--check-config", cfg])
    eq(r.rc, 2, "check-config refuses it too")


if __name__ == "__main__":
    main()

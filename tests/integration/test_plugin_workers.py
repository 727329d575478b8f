"""test_plugin_workers.py -- tools run in persistent plugin workers by default.

Every case runs agentd with default isolation (no `isolation` key): each
plugin's calls go to a long-lived worker process of its own. The mock
provider scripts steps of parallel tool calls; each misbehaving call must
become its one result, naming what happened, while a parallel `add` in
another plugin still returns 5, the next step still works, agentd exits 0
and --json stays valid JSON Lines.
"""
import os
import signal
import subprocess
import time

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 spawn_agentd, toml_table, write_config, WRAP)

S = script
ADD = ("add", '{"a":2,"b":3}')


def setup(tmp, m, plugins=("add", "hostile", "badutf8"), tools=None, agent=None,
          plugin_config=None, dirname="plugins"):
    pdir = make_plugin_dir(tmp, plugins, dirname=dirname)
    raw = "".join(toml_table(["tools", n], v) for n, v in (tools or {}).items())
    a = {"max_steps": 20}
    a.update(agent or {})
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir), agent=a,
                        raw_append=raw, plugin_config=plugin_config)


def run(cfg, env=None, timeout=60, args=None):
    t0 = time.monotonic()
    r = run_agentd(["--config", cfg, "--json", "-p", "go"] + (args or []), env=env,
                   timeout=timeout)
    r.secs = time.monotonic() - t0
    return r


def steps(*calls_per_step):
    """One streamed step per list of (name, args) calls, then a final text."""
    out = []
    for i, calls in enumerate(calls_per_step):
        out.append(S.tool_call_stream([("s%d_%d" % (i, k), n, a)
                                       for k, (n, a) in enumerate(calls)]))
    out.append(S.text_stream("done"))
    return S.script(*out)


def chat_requests(m):
    return [q for q in m.requests if q["path"].endswith("/chat/completions")]


def tool_messages(req):
    return [x for x in req["json"]["messages"] if x["role"] == "tool"]


def check_run(r, m, nreq):
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr[-2000:])
    bad = [e for e in r.events if "_bad_line" in e]
    eq(bad, [], "stdout lines that are not JSON")
    eq(r.events[-1]["type"], "finish", "last event")
    reqs = chat_requests(m)
    eq(len(reqs), nreq, "requests")
    return reqs


def results_of_step(reqs, i):
    """The tool messages step i added (request i + 1 holds them last)."""
    before = len(tool_messages(reqs[i]))
    return tool_messages(reqs[i + 1])[before:]


@case
def each_hostile_call_is_one_result_beside_add(tmp):
    # One misbehaving tool per step, each beside an add of another plugin.
    hostile = [("crash", "{}"), ("abort", "{}"), ("exit3", "{}"), ("hang", "{}"),
               ("flood", "{}"), ("big", "{}"), ("badutf8", "{}")]
    with mock(steps(*[[h, ADD] for h in hostile])) as m:
        r = run(setup(tmp, m, tools={"hang": {"timeout_s": 1}}))
        reqs = check_run(r, m, len(hostile) + 1)
    want = [
        "tool 'crash' crashed: SIGSEGV",
        "tool 'abort' crashed: SIGABRT",
        "tool 'exit3' exited with status 3 without a result",
        "tool 'hang' timed out after 1 s and was killed",
        "flooded",
        None,
        "ok \ufffd|\ufffd|\ufffd\ufffd|\ufffd\ufffd\ufffd|a\ufffdb|\u00e9",
    ]
    for i, w in enumerate(want):
        got = results_of_step(reqs, i)
        eq(len(got), 2, "step %d: results" % i)
        eq(got[1]["content"], "5", "step %d: the parallel add" % i)
        if w is not None:
            eq(got[0]["content"], w, "step %d: %s" % (i, hostile[i][0]))
    big = results_of_step(reqs, 5)[0]["content"]
    eq(len(big), (1 << 20) + len("\n[... 19922944 bytes cut]"), "big: bounded length")
    ok(big.endswith("\n[... 19922944 bytes cut]"), "big: cut marker")
    errors = [e["is_error"] for e in r.events if e.get("type") == "tool_result"
              and e["name"] != "add"]
    eq(errors, [True, True, True, True, False, False, False], "is_error of the hostile results")
    ok("oooo" not in r.stdout, "plugin output kept off stdout")
    contains(r.stderr, "agentd: tool flood: ooo", "first output lines on stderr, with the tool")
    contains(r.stderr, "more bytes of output dropped", "the rest dropped and said")
    ok(len(r.stderr) < 64 * 1024, "stderr bounded (%d bytes)" % len(r.stderr))
    contains(r.stderr, "agentd: plugin hostile.so: its worker process crashed (SIGSEGV in a call "
             "of 'crash'); a new one starts with the next call", "the crash is logged")


@case
def counter_keeps_state_and_restarts_from_init(tmp):
    calls = [("count", "{}")] * 3 + [("count_crash", "{}"), ("count", "{}")]
    with mock(steps(*[[c] for c in calls])) as m:
        r = run(setup(tmp, m, plugins=("v11",)))
        reqs = check_run(r, m, len(calls) + 1)
    got = [results_of_step(reqs, i)[0]["content"] for i in range(len(calls))]
    eq(got, ["1", "2", "3", "tool 'count_crash' crashed: SIGSEGV", "1"], "counter across calls")


@case
def parallel_calls_run_at_once_in_one_worker(tmp):
    # rendezvous answers "met 3" only when three calls run at the same time
    # in the same process.
    n3 = ("rendezvous", '{"n":3}')
    with mock(steps([n3, n3, n3], [("count", "{}")])) as m:
        r = run(setup(tmp, m, plugins=("v11",)))
        reqs = check_run(r, m, 3)
    eq([t["content"] for t in results_of_step(reqs, 0)], ["met 3"] * 3, "three at once")
    eq(results_of_step(reqs, 1)[0]["content"], "1", "one worker: its state")


@case
def a_crash_interrupts_the_calls_running_beside_it(tmp):
    with mock(steps([("crash", "{}"), ("hang", "{}")], [ADD])) as m:
        r = run(setup(tmp, m, tools={"hang": {"timeout_s": 30}}))
        reqs = check_run(r, m, 3)
    got = [t["content"] for t in results_of_step(reqs, 0)]
    eq(got, ["tool 'crash' crashed: SIGSEGV",
             "tool 'hang' was interrupted: its worker process (hostile.so) crashed (SIGSEGV in "
             "a call of 'crash')"], "results")
    ok(r.secs < 20, "the hang did not hold the step (%.1f s)" % r.secs)


@case
def the_api_key_and_other_variables_stay_out(tmp):
    with mock(steps([("showkey", "{}")])) as m:
        r = run(setup(tmp, m), env={"AGENTD_TEST_KEY": "sk-test-dummy"})
        reqs = check_run(r, m, 2)
    eq(results_of_step(reqs, 0)[0]["content"], "(unset)", "the key's variable")


@case
def async_calls_report_progress_and_complete_later(tmp):
    calls = [("later", '{"ms":50}'), ("later", '{"ms":10}'), ADD]
    with mock(steps(calls)) as m:
        r = run(setup(tmp, m, plugins=("add", "v11")))
        reqs = check_run(r, m, 2)
    got = [t["content"] for t in results_of_step(reqs, 0)]
    eq(got[0].split()[:2], ["later", "s0_0"], "first async result (its call id)")
    eq(got[1].split()[:2], ["later", "s0_1"], "second async result")
    eq(got[2], "5", "add")
    prog = [(e["id"], e["progress"], e.get("total"), e.get("message")) for e in r.events
            if e.get("type") == "tool_progress"]
    eq(sorted(prog), [("s0_0", 1, 2, "halfway"), ("s0_1", 1, 2, "halfway")],
       "progress from the worker, as tool_progress events")


@case
def greet_reads_its_argument_and_config(tmp):
    with mock(steps([("greet", '{"name":"Ada"}')])) as m:
        r = run(setup(tmp, m, plugins=("v11",), plugin_config={"v11": {"greeting": "Howdy"}}))
        reqs = check_run(r, m, 2)
    eq(results_of_step(reqs, 0)[0]["content"], "Howdy, Ada!", "greeting")


SRC = os.environ.get("AGENTD_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


@case
def the_plugin_of_docs_plugins_md_builds_and_runs(tmp):
    # The complete plugin of docs/plugins.md, as a third party would take it:
    # built with warnings as errors against the public header alone.
    with open(os.path.join(SRC, "docs", "plugins.md"), encoding="utf-8") as f:
        doc = f.read()
    start = doc.index("```c\n/* greet.c")
    code = doc[start + len("```c\n"):doc.index("```", start + 4)]
    src = os.path.join(tmp, "greet.c")
    with open(src, "w") as f:
        f.write(code)
    pdir = os.path.join(tmp, "docplugins")
    os.makedirs(pdir)
    cc = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                         "-I" + os.path.join(SRC, "include"), src, "-o",
                         os.path.join(pdir, "greet.so")], capture_output=True, text=True)
    eq(cc.returncode, 0, "cc: %s" % cc.stderr)
    sc = steps([("greet", '{"name":"Ada"}')])
    for conf, want in (({"greet": {"greeting": "Howdy"}}, "Howdy, Ada!"), (None, "Hello, Ada!")):
        with mock(sc) as m:
            cfg = write_config(tmp, m.base_url, plugins_dir="docplugins", plugin_config=conf)
            r = run(cfg)
            reqs = check_run(r, m, 2)
        eq(results_of_step(reqs, 0)[0]["content"], want, "greet")


@case
def a_plugin_of_abi_1_0_still_runs(tmp):
    # abi10.so is built against the ABI 1.0 header (tests/compat/).
    with mock(steps([("old_add", '{"a":2,"b":3}')], [("old_log", "{}")])) as m:
        r = run(setup(tmp, m, plugins=("abi10",)))
        reqs = check_run(r, m, 3)
    eq(results_of_step(reqs, 0)[0]["content"], "5", "a 1.0 tool")
    eq(results_of_step(reqs, 1)[0]["content"], "logged", "a 1.0 tool that logs")
    contains(r.stderr, "agentd: plugin abi10.so: hello from a 1.0 plugin", "its log line")


@case
def a_run_without_tool_calls_starts_no_worker(tmp):
    env = {"AGENTD_DEBUG": "1", "XDG_CACHE_HOME": os.path.join(tmp, "cache")}
    with mock(S.script(S.text_stream("hi"), S.text_stream("hi"))) as m:
        cfg = setup(tmp, m, plugins=("add", "v11"))
        first = run(cfg, env=env)
        second = run(cfg, env=env)
    for r in (first, second):
        eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr[-2000:])
        ok("started its worker process" not in r.stderr, "no worker started:\n" + r.stderr)
    # The first run described each plugin once (a worker that ran its init
    # and exited); the second read the tool cache and ran nothing.
    contains(first.stderr, "agentd: plugin add.so: tools described by a worker process",
             "described")
    contains(second.stderr, "agentd: plugin add.so: tools read from the tool cache", "cached")
    contains(second.stderr, "agentd: plugin v11.so: tools read from the tool cache", "cached")
    ok("described by a worker" not in second.stderr, "nothing described the second time")


@case
def a_changed_plugin_file_is_described_again(tmp):
    env = {"AGENTD_DEBUG": "1", "XDG_CACHE_HOME": os.path.join(tmp, "cache")}
    with mock(S.script(S.text_stream("hi"), S.text_stream("hi"))) as m:
        cfg = setup(tmp, m, plugins=("add",))
        first = run(cfg, env=env)
        # A copy in place of the symlink: another file identity.
        link = os.path.join(tmp, "plugins", "add.so")
        src = os.path.realpath(link)
        os.unlink(link)
        with open(src, "rb") as f, open(link, "wb") as g:
            g.write(f.read())
        second = run(cfg, env=env)
    contains(first.stderr, "agentd: plugin add.so: tools ", "first run")
    contains(second.stderr, "agentd: plugin add.so: tools described by a worker process",
             "described again")


@case
def a_plugin_that_closes_the_call_channel_fails_its_calls_at_once(tmp):
    # close_fds closes every descriptor of its worker and goes on for 30 s,
    # alone, then beside a wait that cannot answer either. Each call fails
    # at once, naming the channel, and the next step has a new worker.
    long_ = '{"ms":30000}'
    with mock(steps([("close_fds", long_)], [("close_fds", long_), ("wait", long_), ADD],
                    [("wait", '{"ms":1}')])) as m:
        r = run(setup(tmp, m, plugins=("unruly", "add"),
                      tools={"close_fds": {"timeout_s": 60}, "wait": {"timeout_s": 60}}))
        reqs = check_run(r, m, 4)
    cause = ("its worker process (unruly.so) lost its call channel (a plugin closed the "
             "worker's descriptors)")
    eq([t["content"] for t in results_of_step(reqs, 0)],
       ["tool 'close_fds' was interrupted: " + cause], "alone")
    eq([t["content"] for t in results_of_step(reqs, 1)],
       ["tool 'close_fds' was interrupted: " + cause, "tool 'wait' was interrupted: " + cause,
        "5"], "beside another call")
    eq(results_of_step(reqs, 2)[0]["content"], "waited 1 ms", "a new worker")
    ok(r.secs < 20, "the calls did not wait for their end (%.1f s)" % r.secs)
    contains(r.stderr, "agentd: plugin unruly.so: its worker process " + cause[31:],
             "said on stderr")


@case
def a_crash_on_a_plugins_own_thread_is_the_workers(tmp):
    # thread_crash's own thread crashes while the call waits: the worker
    # crashed, no call did; every call in flight is interrupted, also when
    # it runs alone.
    long_ = '{"ms":30000}'
    with mock(steps([("thread_crash", long_)], [("thread_crash", long_), ("wait", long_)],
                    [("wait", '{"ms":1}')])) as m:
        r = run(setup(tmp, m, plugins=("unruly",),
                      tools={"thread_crash": {"timeout_s": 60}, "wait": {"timeout_s": 60}}))
        reqs = check_run(r, m, 4)
    cause = ("was interrupted: its worker process (unruly.so) crashed (SIGSEGV on a thread of "
             "the plugin's own, not in a call)")
    eq([t["content"] for t in results_of_step(reqs, 0)], ["tool 'thread_crash' " + cause],
       "alone")
    eq([t["content"] for t in results_of_step(reqs, 1)],
       ["tool 'thread_crash' " + cause, "tool 'wait' " + cause], "beside another call")
    eq(results_of_step(reqs, 2)[0]["content"], "waited 1 ms", "a new worker")
    ok(r.secs < 20, "the calls did not wait for their end (%.1f s)" % r.secs)


@case
def a_plugin_that_crashes_at_every_start_is_disabled(tmp):
    # fragile.so's init crashes while the file its config names exists.
    flag = os.path.join(tmp, "break-init")
    conf = {"fragile": {"crash_if": flag}}
    env = {"XDG_CACHE_HOME": os.path.join(tmp, "cache")}
    with mock(S.script(S.text_stream("hi"))) as m:
        first = run(setup(tmp, m, plugins=("fragile", "add"), plugin_config=conf), env=env)
        eq(first.rc, 0, "exit code (stderr: %s)" % first.stderr[-2000:])
    open(flag, "w").close()
    with mock(steps([("fragile", "{}"), ADD], [("fragile", "{}")])) as m:
        r = run(setup(tmp, m, plugins=("fragile", "add"), plugin_config=conf, dirname="again"),
                env=env)
        reqs = check_run(r, m, 3)
    want = ("tool 'fragile' is not available: its plugin fragile.so failed to start 3 times in a "
            "row (last: init crashed: SIGSEGV)")
    got = results_of_step(reqs, 0)
    eq(got[0]["content"], want, "the first call")
    eq(got[1]["content"], "5", "add")
    eq(results_of_step(reqs, 1)[0]["content"], want, "later calls, at once")
    contains(r.stderr, "agentd: plugin fragile.so: disabled: its worker process failed to start 3 "
             "times in a row (last: init crashed: SIGSEGV)", "said once on stderr")


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


def workers_of(pid):
    """Pids of the persistent workers among pid's children."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == pid and b"serve" in argv:
            out.append(int(d))
    return out


@case
def an_interrupted_run_leaves_no_worker(tmp):
    if WRAP:
        return  # the worker's parent would be the wrapper's process
    with mock(steps([("hang", "{}")])) as m:
        cfg = setup(tmp, m, tools={"hang": {"timeout_s": 60}})
        p = spawn_agentd(["--config", cfg, "--json", "-p", "go"])
        workers = []
        try:
            for line in p.stdout:
                if b'"type":"tool_call"' in line:
                    break
            ok(wait_until(lambda: workers.extend(workers_of(p.pid)) or workers, 10),
               "a worker process runs")
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    eq(p.returncode, 130, "exit code (stderr: %s)" % err.decode()[-1000:])
    ok(wait_until(lambda: not any(alive(w) for w in workers), 5), "workers %s gone" % workers)


@case
def check_config_names_where_tools_run(tmp):
    with mock(S.script()) as m:
        cfg = setup(tmp, m, plugins=("add", "v11"), tools={"add": {"isolation": "in-process"},
                                                         "count": {"isolation": "per-call"}})
        r = run_agentd(["--config", cfg, "--check-config"])
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    contains(r.stdout, 'isolation = "worker"', "the default")
    contains(r.stdout, "#   add (add.so, in-process)", "in-process")
    contains(r.stdout, "#   count (v11.so, per-call)", "per-call")
    contains(r.stdout, "#   greet (v11.so, worker)", "worker")


if __name__ == "__main__":
    main()

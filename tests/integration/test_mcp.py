"""test_mcp.py -- `agentd mcp list|tools|call` against MCP servers.

The fixture server tests/mcp/server.py (faults chosen per case) covers what
`make test` must always cover: states, names, results, exit codes, the
environment a server gets, crashes, hangs, timeouts, Ctrl-C, noise on
stdout, huge results. The real servers of ../shared/mcp (everything,
filesystem, memory) are used when `../shared/mcp/setup` installs them;
otherwise those cases are skipped with the reason.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

from lib import (agentd_cmd, agentd_env, case, contains, eq, main, ok, run_agentd, skip,
                 spawn_agentd, toml_table, write_config, Result, TEST_KEY_ENV, TIMEOUT_SCALE)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(SRC, "tests", "mcp", "server.py")
KEY = "sk-test-dummy"  # what lib.agentd_env() puts into AGENTD_TEST_KEY


def config(tmp, servers, mcp=None, limits=None, name="agent.toml"):
    """agent.toml with [mcp.servers.NAME] tables; a server given as a list
    of fixture arguments runs the fixture with them (and a --log)."""
    raw = ""
    if mcp:
        raw += toml_table(["mcp"], mcp)
    if limits:
        raw += toml_table(["limits"], limits)
    for sname, s in servers.items():
        if isinstance(s, list):
            s = {"command": sys.executable,
                 "args": [FIXTURE, "--log", os.path.join(tmp, sname + ".log")] + s}
        raw += toml_table(["mcp", "servers", sname], s)
    # Port 9: nothing listens; an mcp command never talks to the provider.
    return write_config(tmp, "http://127.0.0.1:9/v1", raw_append=raw, name=name)


def mcp(cfg, *args, **kw):
    return run_agentd(["--config", cfg, "mcp"] + list(args), **kw)


def fixture_log(tmp, sname):
    path = os.path.join(tmp, sname + ".log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def received(tmp, sname, method):
    return [r["msg"] for r in fixture_log(tmp, sname)
            if r.get("event") == "recv" and r["msg"].get("method") == method]


# ---- list ----------------------------------------------------------------------

@case
def list_shows_each_server_and_its_state(tmp):
    cfg = config(tmp, {"good": [], "broken": ["--fault", "crash-on-start"],
                       "off": {"command": "agentd-no-such-program", "enabled": False},
                       "oldproto": ["--version", "2024-11-05"]})
    r = mcp(cfg, "list")
    eq(r.rc, 1, "exit code (a server failed) %r" % r)
    lines = r.stdout.splitlines()
    contains(lines[0], "NAME")
    good = [x for x in lines if x.startswith("good ")][0]
    contains(good, "ready")
    contains(good, "20")
    contains(good, "fixture 1.2.3 (protocol 2025-11-25)")
    contains([x for x in lines if x.startswith("broken ")][0], "failed")
    contains(r.stdout, "the MCP server 'broken' exited with status 1 while starting")
    contains(r.stdout, "fixture: cannot start: the configuration is missing")
    contains([x for x in lines if x.startswith("off ")][0], "disabled")
    contains([x for x in lines if x.startswith("oldproto ")][0], "(protocol 2024-11-05)")


@case
def list_json_in_any_position_and_exit_0_when_all_are_up(tmp):
    cfg = config(tmp, {"a": [], "b": ["--page-size", "4"]})
    for args in (["--json", "--config", cfg, "mcp", "list"],
                 ["--config", cfg, "mcp", "--json", "list"],
                 ["--config", cfg, "mcp", "list", "--json"]):
        r = run_agentd(args)
        eq(r.rc, 0, "exit code %r" % r)
        doc = json.loads(r.stdout)
        eq([s["name"] for s in doc["servers"]], ["a", "b"])
        eq([s["state"] for s in doc["servers"]], ["ready", "ready"])
        eq([s["tools"] for s in doc["servers"]], [20, 20], "paginated or not")
        eq(doc["servers"][0]["serverInfo"], {"name": "fixture", "version": "1.2.3"})
        eq(doc["servers"][0]["transport"], "stdio")


@case
def refused_protocol_version_and_startup_timeout(tmp):
    cfg = config(tmp, {"future": ["--version", "2099-01-01"],
                       "mute": {"command": sys.executable,
                                "args": [FIXTURE, "--fault", "hang-init"],
                                "startup_timeout_s": 0.5}})
    r = mcp(cfg, "list", "--json")
    eq(r.rc, 1, "exit code %r" % r)
    s = {x["name"]: x for x in json.loads(r.stdout)["servers"]}
    eq(s["future"]["state"], "failed")
    contains(s["future"]["error"], "protocol version '2099-01-01', which agentd does not speak")
    eq(s["mute"]["state"], "failed")
    contains(s["mute"]["error"], "did not finish starting (initialize and tools/list) within 0.5s")


@case
def no_servers_and_no_key_needed(tmp):
    cfg = config(tmp, {})
    r = mcp(cfg, "list", env={TEST_KEY_ENV: None})
    eq(r.rc, 0, "exit code %r" % r)
    contains(r.stderr, "configures no MCP servers")
    cfg = config(tmp, {"a": []}, name="b.toml")
    r = mcp(cfg, "call", "a", "echo", '{"text": "no key"}', env={TEST_KEY_ENV: None})
    eq((r.rc, r.stdout), (0, "no key\n"), "a call without the provider's key %r" % r)


# ---- tools ---------------------------------------------------------------------

@case
def tools_show_names_for_the_model_and_what_is_left_out(tmp):
    cfg = config(tmp, {"fx": [], "other": {"command": sys.executable, "args": [FIXTURE],
                                           "tool_prefix": "o", "disabled_tools": ["echo"],
                                           "enabled_tools": ["echo", "add", "fail"]}})
    r = mcp(cfg, "tools", "--json")
    eq(r.rc, 0, "exit code %r" % r)
    tools = json.loads(r.stdout)["tools"]
    fx = {t["name"]: t for t in tools if t["server"] == "fx"}
    other = {t["name"]: t for t in tools if t["server"] == "other"}
    eq(fx["echo"]["model_name"], "fx__echo")
    eq(fx["echo"]["description"], "Echoes its text.")
    eq(fx["dotted.name/with space"]["model_name"], "fx__dotted_name_with_space")
    long = [t for n, t in fx.items() if n.startswith("a_tool_with")][0]
    eq(len(long["model_name"]), 64, "a long name is shortened")
    ok(long["model_name"].startswith("fx__a_tool_with_a_name"), long["model_name"])
    eq(fx["tasks_only"]["offered"], False)
    contains(fx["tasks_only"]["note"], "needs tasks")
    # The schema as the server wrote it.
    eq(fx["echo"]["inputSchema"]["$schema"], "http://json-schema.org/draft-07/schema#")
    eq(other["add"]["model_name"], "o__add")
    eq(other["echo"]["offered"], False)
    eq(other["echo"]["note"], "in disabled_tools")
    eq(other["image"]["note"], "not in enabled_tools")
    eq(json.loads(r.stdout)["errors"], [])
    names = [t["model_name"] for t in tools if t["model_name"]]
    eq(len(names), len(set(names)), "model-facing names are unique")
    # The text form, for one server.
    r = mcp(cfg, "tools", "other")
    eq(r.rc, 0, "exit code %r" % r)
    contains(r.stdout, "other: 20 tools (tool_prefix \"o\")")
    row = [x for x in r.stdout.splitlines() if x.strip().startswith("add ")][0]
    contains(row, "o__add")
    contains(row, "Adds a and b.")


@case
def one_prefix_for_two_servers_is_reported(tmp):
    cfg = config(tmp, {"a": {"command": sys.executable, "args": [FIXTURE], "tool_prefix": "x",
                             "enabled_tools": ["echo"]},
                       "b": {"command": sys.executable, "args": [FIXTURE], "tool_prefix": "x",
                             "enabled_tools": ["echo"]}})
    r = mcp(cfg, "tools", "--json")
    eq(r.rc, 0, "exit code %r" % r)
    echo = [t for t in json.loads(r.stdout)["tools"] if t["name"] == "echo"]
    eq([t["model_name"] for t in echo], ["x__echo", None])
    contains(echo[1]["note"], "offered twice")
    contains(r.stderr, "agentd: mcp b: the tool 'echo' with the prefix 'x' is offered twice")


# ---- call ------------------------------------------------------------------------

@case
def call_prints_the_result_as_the_model_reads_it(tmp):
    cfg = config(tmp, {"fx": []})
    r = mcp(cfg, "call", "fx", "echo", '{"text": "hello"}')
    eq((r.rc, r.stdout), (0, "hello\n"), "echo %r" % r)
    r = mcp(cfg, "call", "fx", "fx__dotted_name_with_space")
    eq((r.rc, r.stdout), (0, "called dotted.name/with space\n"), "by the model's name %r" % r)
    r = mcp(cfg, "call", "fx", "image")
    eq(r.stdout, "before\n[image: image/png, 70 bytes]\nafter\n")
    r = mcp(cfg, "call", "fx", "structured")
    eq(r.stdout, '{"answer":42,"ok":true}\n')
    r = mcp(cfg, "call", "fx", "resource")
    contains(r.stdout, "[resource file:///notes.txt (text/plain)]\nthe notes\n")
    contains(r.stdout, "[resource link: file:///other.txt (other, text/plain): another file]")
    r = mcp(cfg, "call", "--json", "fx", "add", '{"a": 2, "b": 3}')
    doc = json.loads(r.stdout)
    eq((doc["status"], doc["isError"], doc["result"]["structuredContent"]), ("ok", False, {"sum": 5}))
    # What went to the server: the exact name, the arguments, a progress token.
    calls = received(tmp, "fx", "tools/call")
    eq(calls[1]["params"]["name"], "dotted.name/with space")
    eq(calls[-1]["params"]["arguments"], {"a": 2, "b": 3})
    ok("progressToken" in calls[-1]["params"]["_meta"], "progress token")


@case
def call_errors_exit_1(tmp):
    cfg = config(tmp, {"fx": []})
    r = mcp(cfg, "call", "fx", "fail")
    eq((r.rc, r.stdout), (1, "it failed on purpose\n"), "isError %r" % r)
    contains(r.stderr, "the tool answered with isError")
    r = mcp(cfg, "call", "fx", "rpc_error", "--json")
    eq(r.rc, 1, "JSON-RPC error")
    doc = json.loads(r.stdout)
    eq((doc["status"], doc["code"]), ("error", -32602))
    contains(r.stderr, "bad arguments on purpose")
    r = mcp(cfg, "call", "fx", "no_such_tool")
    eq(r.rc, 1, "unknown tool")
    contains(r.stderr, "the server lists no tool 'no_such_tool'; calling it anyway")
    contains(r.stdout, "unknown tool: no_such_tool")


@case
def a_crash_mid_call_fails_at_once_with_the_stderr_tail(tmp):
    cfg = config(tmp, {"fx": []})
    start = time.monotonic()
    r = mcp(cfg, "call", "fx", "crash")
    eq(r.rc, 1, "exit code %r" % r)
    contains(r.stderr, "the MCP server 'fx' exited with status 3")
    contains(r.stderr, "fatal: crashing on purpose in the middle of a call")
    ok(time.monotonic() - start < 30 * TIMEOUT_SCALE, "not at the tool timeout")


@case
def a_hung_call_times_out_and_is_cancelled(tmp):
    cfg = config(tmp, {"fx": {"command": sys.executable,
                              "args": [FIXTURE, "--log", os.path.join(tmp, "fx.log")],
                              "tool_timeout_s": 0.5}})
    r = mcp(cfg, "call", "fx", "hang", "--json")
    eq(r.rc, 1, "exit code %r" % r)
    doc = json.loads(r.stdout)
    eq(doc["status"], "timeout")
    contains(doc["error"], "the tool 'hang' of the MCP server 'fx' did not answer within 0.5s")
    cancelled = received(tmp, "fx", "notifications/cancelled")
    call = received(tmp, "fx", "tools/call")[0]
    eq(len(cancelled), 1, "notifications/cancelled")
    eq(cancelled[0]["params"]["requestId"], call["id"])


@case
def progress_is_shown(tmp):
    cfg = config(tmp, {"fx": []})
    r = mcp(cfg, "call", "fx", "slow", '{"seconds": 0.1, "steps": 3}')
    eq(r.rc, 0, "exit code %r" % r)
    for i in (1, 2, 3):
        contains(r.stderr, "agentd: mcp: slow: progress %d/3 step %d" % (i, i))


@case
def a_huge_result_is_cut_with_a_marker(tmp):
    cfg = config(tmp, {"fx": []}, mcp={"max_result_bytes": 4096})
    r = mcp(cfg, "call", "fx", "big", '{"bytes": 3000000}', "--json")
    eq(r.rc, 0, "exit code %r" % r)
    doc = json.loads(r.stdout)
    text = doc["text"]
    ok(len(text.encode("utf-8")) <= 4096, "within the cap: %d" % len(text.encode("utf-8")))
    contains(text, "of 3000000 bytes cut: the limit is 4096]")
    eq(doc["cut"], 3000000 - text.index("\n[agentd:") * 2)
    # A line longer than [limits] max_response_bytes fails the call at once.
    cfg = config(tmp, {"fx": []}, limits={"max_response_bytes": 1 << 20}, name="small.toml")
    r = mcp(cfg, "call", "fx", "big", '{"bytes": 3000000}')
    eq(r.rc, 1, "exit code %r" % r)
    contains(r.stderr, "longer than the limit of 1048576 bytes ([limits] max_response_bytes)")


@case
def noise_on_stdout_is_skipped(tmp):
    cfg = config(tmp, {"fx": ["--fault", "banner", "--fault", "noise"]})
    r = mcp(cfg, "call", "fx", "echo", '{"text": "fine"}')
    eq((r.rc, r.stdout), (0, "fine\n"), "%r" % r)
    contains(r.stderr, "skipped a line on the server's stdout (not JSON")
    contains(r.stderr, "Fixture MCP server 1.2.3 starting")


@case
def server_requests_are_answered(tmp):
    cfg = config(tmp, {"fx": ["--fault", "ask-on-list"]})
    r = mcp(cfg, "call", "fx", "ask")
    eq(r.rc, 0, "exit code %r" % r)
    got = json.loads(r.stdout)
    eq(got["ping"], {})
    for method in ("roots", "sampling", "elicitation"):
        eq(got[method]["error"]["code"], -32601, method)
    asked = [x for x in fixture_log(tmp, "fx") if x.get("event") == "asked"]
    eq(asked[0]["ping"], {})
    eq(asked[0]["roots"]["error"]["code"], -32601)


@case
def the_server_gets_a_minimal_environment_and_never_the_key(tmp):
    cfg = config(tmp, {"fx": {"command": sys.executable, "args": [FIXTURE],
                              "env": {"LITERAL": "lit"}, "env_vars": ["AGENTD_TEST_PASS"]}})
    r = mcp(cfg, "call", "fx", "env",
            env={"AGENTD_TEST_PASS": "passed", "AGENTD_TEST_OTHER": "not passed",
                 "USER": "someone"})
    eq(r.rc, 0, "exit code %r" % r)
    got = json.loads(r.stdout)
    eq(got.get("LITERAL"), "lit")
    eq(got.get("AGENTD_TEST_PASS"), "passed")
    eq(got.get("USER"), "someone")
    ok("AGENTD_TEST_OTHER" not in got, "an unnamed variable is not passed")
    ok(TEST_KEY_ENV not in got and KEY not in r.stdout, "the provider's key is not passed")
    extra = set(got) - {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LITERAL",
                        "AGENTD_TEST_PASS", "PWD", "SHLVL", "_", "LC_CTYPE"}
    eq(sorted(extra), [], "variables beyond the minimal set")


@case
def interrupting_a_call_cancels_it(tmp):
    cfg = config(tmp, {"fx": []})
    p = spawn_agentd(["--config", cfg, "mcp", "call", "fx", "hang"])
    try:
        # Wait until the call went out (the fixture logs it).
        deadline = time.monotonic() + 20 * TIMEOUT_SCALE
        while not received(tmp, "fx", "tools/call"):
            ok(time.monotonic() < deadline, "the call reached the server")
            ok(p.poll() is None, "agentd still runs")
            select.select([], [], [], 0.02)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20 * TIMEOUT_SCALE)
    finally:
        if p.poll() is None:
            p.kill()
    eq(p.returncode, 130, "exit code; stderr %r" % err)
    contains(err.decode(), "interrupted; the call was cancelled")
    cancelled = received(tmp, "fx", "notifications/cancelled")
    eq(len(cancelled), 1)
    ok(any(x.get("event") == "stdin-eof" for x in fixture_log(tmp, "fx")), "stdin closed")


# ---- usage and config errors -------------------------------------------------------

@case
def usage_and_config_errors_exit_2(tmp):
    cfg = config(tmp, {"fixture": [], "off": {"command": "x", "enabled": False}})
    r = mcp(cfg, "call", "fixtur", "echo")
    eq(r.rc, 2, "unknown server")
    contains(r.stderr, "no MCP server named 'fixtur'")
    contains(r.stderr, "did you mean 'fixture'?")
    r = mcp(cfg, "tools", "nope", "--json")
    eq(r.rc, 2, "unknown server")
    contains(json.loads(r.stdout)["error"], "no MCP server named 'nope'")
    r = mcp(cfg, "call", "off", "echo")
    eq(r.rc, 2, "disabled server")
    contains(r.stderr, "the MCP server 'off' is disabled")
    r = mcp(cfg, "call", "fixture", "echo", "[1, 2]")
    eq(r.rc, 2, "ARGS_JSON not an object")
    contains(r.stderr, "ARGS_JSON must be one JSON object")
    r = mcp(cfg, "call", "fixture", "echo", "{\"a\": ")
    eq(r.rc, 2, "ARGS_JSON cut")
    r = mcp(cfg, "call", "fixture", "echo", "{}", "extra")
    eq(r.rc, 2, "too many arguments")
    r = mcp(cfg, "call", "fixture")
    eq(r.rc, 2, "no tool")
    r = mcp(cfg, "lst")
    eq(r.rc, 2, "unknown command")
    contains(r.stderr, "did you mean 'list'?")
    r = mcp(cfg)
    eq(r.rc, 2, "no command")
    r = mcp(cfg, "list", "--bogus")
    eq(r.rc, 2, "unknown option")
    r = run_agentd(["mcp", "--help"])
    eq(r.rc, 0, "--help")
    contains(r.stdout, "mcp call SERVER TOOL [ARGS_JSON]")
    # Config errors: located, with a suggestion.
    bad = os.path.join(tmp, "bad.toml")
    with open(bad, "w") as f:
        f.write('[provider]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
                '[mcp.servers.a]\ncommand = "x"\nargz = []\n'
                'args = ["${AGENTD_TEST_SURELY_UNSET}"]\n')
    r = run_agentd(["--config", bad, "mcp", "list"], env={"AGENTD_TEST_SURELY_UNSET": None})
    eq(r.rc, 2, "config error")
    contains(r.stderr, "bad.toml:6:1: unknown key 'argz' in [mcp.servers.a] (did you mean 'args'?)")
    contains(r.stderr, "bad.toml:7:9: mcp.servers.a.args[0]: the environment variable "
                       "AGENTD_TEST_SURELY_UNSET is not set")


@case
def an_unreachable_url_server_fails_and_the_others_go_on(tmp):
    cfg = config(tmp, {"web": {"url": "http://127.0.0.1:9/mcp"}, "fx": []})
    r = mcp(cfg, "list")
    eq(r.rc, 1, "exit code %r" % r)
    contains(r.stdout, "the MCP server 'web' could not be reached at http://127.0.0.1:9/mcp")
    r = mcp(cfg, "tools", "--json")
    eq(r.rc, 1, "exit code %r" % r)
    doc = json.loads(r.stdout)
    eq([e["server"] for e in doc["errors"]], ["web"])
    ok(any(t["server"] == "fx" for t in doc["tools"]), "the other server's tools")


# ---- Streamable HTTP (the fixture with --http) ---------------------------------------

class HttpFixture:
    """tests/mcp/server.py --http on 127.0.0.1; it stops when its stdin closes."""

    def __init__(self, tmp, name, args):
        self.log_path = os.path.join(tmp, name + ".log")
        self.p = subprocess.Popen([sys.executable, FIXTURE, "--http", "--log", self.log_path]
                                  + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.p.stdout.readline().decode()
        ok(line.startswith("PORT "), "the fixture's port: %r" % line)
        self.url = "http://127.0.0.1:%d/mcp" % int(line.split()[1])

    def stop(self):
        self.p.stdin.close()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def events(self, kind=None):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path, encoding="utf-8") as f:
            recs = [json.loads(x) for x in f if x.strip()]
        return [r for r in recs if kind is None or r.get("event") == kind]

    def http(self, method=None):
        return [r for r in self.events("http") if method is None or r["method"] == method]

    def posts(self, rpc_method):
        return [r for r in self.http("POST")
                if isinstance(r.get("msg"), dict) and r["msg"].get("method") == rpc_method]


def with_http(tmp, args, fn, tag="web", server=None):
    """Runs fn(fixture, config) with the server 'web' at the fixture's url."""
    fx = HttpFixture(tmp, tag, args)
    try:
        s = {"url": fx.url}
        s.update(server or {})
        cfg = config(tmp, {"web": s}, name=tag + ".toml")
        return fn(fx, cfg)
    finally:
        fx.stop()


@case
def http_sessions_headers_and_delete(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "list", "--json")
        eq(r.rc, 0, "exit code %r" % r)
        s = json.loads(r.stdout)["servers"][0]
        eq((s["transport"], s["state"], s["tools"]), ("http", "ready", 20))
        r = mcp(cfg, "call", "web", "echo", '{"text": "over http"}')
        eq((r.rc, r.stdout), (0, "over http\n"), "%r" % r)
        r = mcp(cfg, "call", "web", "image")
        eq(r.stdout, "before\n[image: image/png, 70 bytes]\nafter\n")
        r = mcp(cfg, "call", "web", "slow", '{"seconds": 0.1, "steps": 2}')
        eq(r.rc, 0, "exit code %r" % r)
        contains(r.stderr, "slow: progress 2/2 step 2", "progress over SSE")
        inits = fx.posts("initialize")
        eq(len(inits), 4, "one session per command")
        for rec in inits:
            ok("mcp-session-id" not in rec["headers"], "initialize carries no session id")
            eq(rec["headers"]["accept"], "application/json, text/event-stream")
            eq(rec["headers"]["content-type"], "application/json")
        later = [r_ for r_ in fx.http() if not (r_.get("msg") or {}).get("method") == "initialize"]
        ok(later, "requests after initialize")
        for rec in later:
            ok(rec["headers"].get("mcp-session-id"), "session id on %r" % rec)
            eq(rec["headers"].get("mcp-protocol-version"), "2025-11-25", "protocol header")
        deletes = fx.http("DELETE")
        eq(len(deletes), 4, "DELETE at the end of each session")
        sids = {d["headers"]["mcp-session-id"] for d in deletes}
        eq(len(sids), 4, "each its own session")
        gets = [g for g in fx.http("GET") if "last-event-id" not in g["headers"]]
        ok(gets, "the server's own stream was opened")
    with_http(tmp, [], run)


@case
def http_json_answers_and_a_stateless_server(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "call", "web", "add", '{"a": 2, "b": 40}', "--json")
        eq(r.rc, 0, "exit code %r" % r)
        doc = json.loads(r.stdout)
        eq(doc["result"]["structuredContent"], {"sum": 42})
        ok(all("mcp-session-id" not in x["headers"] for x in fx.http()), "no session id")
        eq(fx.http("DELETE"), [], "no DELETE without a session")
    with_http(tmp, ["--json-response", "--stateless"], run)


@case
def http_an_expired_session_is_replaced(tmp):
    for fault in ([], ["--fault", "expire-400"]):
        def run(fx, cfg):
            r = mcp(cfg, "call", "web", "echo", '{"text": "again"}', "-v")
            eq((r.rc, r.stdout), (0, "again\n"), "%s: %r" % (fault, r))
            contains(r.stderr, "the server ended the session (HTTP %s): starting a new one"
                     % ("400" if fault else "404"))
            ok(fx.events("expired"), "the fixture forgot the session")
            inits = fx.posts("initialize")
            eq(len(inits), 2, "a second initialize")
            calls = fx.posts("tools/call")
            eq(len(calls), 2, "the call went again")
            eq(calls[0]["msg"]["id"], calls[1]["msg"]["id"], "with its id")
            sids = [c["headers"]["mcp-session-id"] for c in calls]
            ok(sids[0] != sids[1], "in the new session")
            eq(len(fx.posts("notifications/initialized")), 2)
        # initialize, initialized, tools/list: the 4th POST meets an expired session.
        with_http(tmp, ["--expire-after", "3"] + fault, run, tag="web%d" % len(fault))


@case
def http_a_broken_answer_is_resumed_with_last_event_id(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "call", "web", "slow", '{"seconds": 0.3, "steps": 3}')
        eq((r.rc, r.stdout), (0, "slept 0.3s\n"), "%r" % r)
        contains(r.stderr, "slow: progress 3/3")
        cuts = fx.events("cut")
        eq(len(cuts), 2, "two connections cut")
        resumes = [g for g in fx.http("GET") if "last-event-id" in g["headers"]]
        eq(len(resumes), 2, "two resumptions")
        for cut, res in zip(cuts, resumes):
            ok(res["headers"]["last-event-id"].startswith(cut["stream"] + "-"),
               "the id of the stream: %r" % res["headers"])
            ok(res["t"] - cut["t"] >= 0.25, "after the retry: delay (300 ms): %.3f"
               % (res["t"] - cut["t"]))
            eq(res["headers"].get("mcp-session-id"), fx.posts("tools/call")[0]["headers"]
               ["mcp-session-id"])
        eq(len(fx.posts("tools/call")), 1, "the call was not sent again")
        eq(fx.posts("notifications/cancelled"), [], "a dropped connection is no cancellation")
    with_http(tmp, ["--fault", "sse-cut", "--cuts", "2", "--retry-ms", "300"], run)


@case
def http_an_answer_that_cannot_be_resumed_fails_the_call(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "call", "web", "slow", '{"seconds": 0.1, "steps": 2}')
        eq(r.rc, 1, "exit code %r" % r)
        contains(r.stderr, "the MCP server 'web' did not answer the call of 'slow'")
        contains(r.stderr, "HTTP 405")
    with_http(tmp, ["--fault", "sse-cut", "--fault", "no-resume", "--retry-ms", "10"], run)


@case
def http_an_error_status_fails_the_call_at_once(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "call", "web", "echo", '{"text": "x"}', "--json")
        eq(r.rc, 1, "exit code %r" % r)
        doc = json.loads(r.stdout)
        eq(doc["status"], "down")
        contains(doc["error"], "HTTP 500: internal error on purpose")
        ok("second line" not in doc["error"], "the first line of the body only")
    with_http(tmp, ["--fault", "http-500"], run)


@case
def http_timeout_and_interrupt_cancel_over_post(tmp):
    def run(fx, cfg):
        r = mcp(cfg, "call", "web", "hang", "--json")
        eq(r.rc, 1, "exit code %r" % r)
        eq(json.loads(r.stdout)["status"], "timeout")
        c = fx.posts("notifications/cancelled")
        eq(len(c), 1, "notifications/cancelled")
        eq(c[0]["msg"]["params"]["requestId"], fx.posts("tools/call")[0]["msg"]["id"])
        ok(c[0]["t"] < fx.http("DELETE")[0]["t"], "the cancellation goes before the DELETE")
        p = spawn_agentd(["--config", cfg, "mcp", "call", "web", "hang"])
        try:
            deadline = time.monotonic() + 20 * TIMEOUT_SCALE
            while len(fx.posts("tools/call")) < 2:
                ok(time.monotonic() < deadline, "the call reached the server")
                select.select([], [], [], 0.02)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20 * TIMEOUT_SCALE)
        finally:
            if p.poll() is None:
                p.kill()
        eq(p.returncode, 130, "exit code; stderr %r" % err)
        eq(len(fx.posts("notifications/cancelled")), 2)
        eq(len(fx.http("DELETE")), 2, "the sessions were ended")
    with_http(tmp, [], run, server={"tool_timeout_s": 0.5})


@case
def http_headers_and_bearer_token_from_the_environment(tmp):
    secret = "tok-very-secret-123"

    def run(fx, cfg):
        env = {"AGENTD_TEST_TOKEN": secret, "AGENTD_TEST_TEAM": "blue",
               "AGENTD_TEST_PORT": fx.url.split(":")[2].split("/")[0]}
        r = mcp(cfg, "call", "web", "echo", '{"text": "authorised"}', "-v", env=env)
        eq((r.rc, r.stdout), (0, "authorised\n"), "%r" % r)
        for rec in fx.http():
            eq(rec["headers"].get("authorization"), "Bearer " + secret)
            eq(rec["headers"].get("x-team"), "team-blue")
        ok(secret not in r.stderr and secret not in r.stdout, "the token is not shown")
        r = mcp(cfg, "list", env={"AGENTD_TEST_TEAM": "blue", "AGENTD_TEST_PORT": "9",
                                  "AGENTD_TEST_TOKEN": None})
        eq(r.rc, 1, "exit code %r" % r)
        contains(r.stdout, "bearer_token_env names AGENTD_TEST_TOKEN, which is not set")
    with_http(tmp, [], run, server={
        "url": "http://127.0.0.1:${AGENTD_TEST_PORT}/mcp",
        "headers": {"X-Team": "team-${AGENTD_TEST_TEAM}"},
        "bearer_token_env": "AGENTD_TEST_TOKEN"})


@case
def http_the_server_going_away_fails_the_call_at_once(tmp):
    def run(fx, cfg):
        start = time.monotonic()
        r = mcp(cfg, "call", "web", "crash")
        eq(r.rc, 1, "exit code %r" % r)
        contains(r.stderr, "the MCP server 'web'")
        ok(time.monotonic() - start < 30 * TIMEOUT_SCALE, "not at the tool timeout")
    with_http(tmp, [], run)


# ---- the real servers of ../shared/mcp ----------------------------------------------

_real = {}


def real_bin():
    """The folder with the real servers, or skip() with the reason."""
    if "bin" in _real:
        return _real["bin"]
    if "why" in _real:
        skip(_real["why"])
    setup = os.path.join(SRC, "..", "shared", "mcp", "setup")
    why = None
    if not os.path.exists(setup):
        why = "../shared/mcp/setup is absent"
    else:
        try:
            p = subprocess.run(["sh", setup], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=600)
            b = p.stdout.decode().strip().splitlines()[-1] if p.stdout.strip() else ""
            if p.returncode != 0 or not os.path.exists(os.path.join(b, "mcp-server-everything")):
                why = "../shared/mcp/setup failed: %s" % p.stderr.decode()[-300:].strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            why = "../shared/mcp/setup failed: %s" % e
    if why:
        _real["why"] = why
        skip(why)
    _real["bin"] = b
    return b


def real_config(tmp):
    b = real_bin()
    root = os.path.join(tmp, "root")
    os.makedirs(root, exist_ok=True)
    return config(tmp, {
        "everything": {"command": os.path.join(b, "mcp-server-everything"), "args": ["stdio"],
                       "env": {"PATH": b + ":" + os.environ.get("PATH", "")}},
        "fs": {"command": os.path.join(b, "mcp-server-filesystem"), "args": [root],
               "env": {"PATH": b + ":" + os.environ.get("PATH", "")}},
        "memory": {"command": os.path.join(b, "mcp-server-memory"),
                   "env": {"MEMORY_FILE_PATH": os.path.join(tmp, "memory.jsonl"),
                           "PATH": b + ":" + os.environ.get("PATH", "")}},
        "noisy": {"command": "sh", "args": ["-c", "echo banner; exec mcp-server-everything stdio"],
                  "env": {"PATH": b + ":" + os.environ.get("PATH", "")}},
    }), root


@case
def real_servers_list_and_tools(tmp):
    cfg, root = real_config(tmp)
    r = mcp(cfg, "list", "--json", timeout=120)
    eq(r.rc, 0, "exit code %r" % r)
    s = {x["name"]: x for x in json.loads(r.stdout)["servers"]}
    eq({n: x["state"] for n, x in s.items()},
       {"everything": "ready", "fs": "ready", "memory": "ready", "noisy": "ready"})
    eq((s["everything"]["tools"], s["fs"]["tools"], s["memory"]["tools"]), (13, 14, 9))
    eq(s["everything"]["protocol"], "2025-11-25")
    r = mcp(cfg, "tools", "everything", "--json", timeout=120)
    tools = {t["name"]: t for t in json.loads(r.stdout)["tools"]}
    eq(tools["get-sum"]["model_name"], "everything__get-sum")
    eq(tools["simulate-research-query"]["offered"], False, "needs tasks")
    r = mcp(cfg, "call", "noisy", "echo", '{"message": "through the banner"}', timeout=120)
    eq(r.rc, 0, "a banner before the first message %r" % r)
    contains(r.stdout, "through the banner")
    contains(r.stderr, "skipped a line on the server's stdout (not JSON")


@case
def real_everything_results(tmp):
    cfg, root = real_config(tmp)
    r = mcp(cfg, "call", "everything", "get-tiny-image", timeout=120)
    eq(r.rc, 0, "exit code %r" % r)
    contains(r.stdout, "[image: image/png, ")
    r = mcp(cfg, "call", "everything", "get-structured-content", '{"location": "New York"}',
            "--json", timeout=120)
    doc = json.loads(r.stdout)
    ok("temperature" in doc["result"]["structuredContent"], "structuredContent")
    r = mcp(cfg, "call", "everything", "trigger-long-running-operation",
            '{"duration": 1, "steps": 2}', timeout=120)
    eq(r.rc, 0, "exit code %r" % r)
    contains(r.stderr, "progress 2/2")
    r = mcp(cfg, "call", "everything", "get-env", timeout=120)
    got = json.loads(r.stdout)
    ok(TEST_KEY_ENV not in got and KEY not in r.stdout, "the key stays out")
    r = mcp(cfg, "call", "everything", "get-sum", '{"a": "x"}', timeout=120)
    eq(r.rc, 1, "bad arguments come back as isError")


@case
def real_everything_hang_past_the_timeout_and_kill_9(tmp):
    cfg, root = real_config(tmp)
    raw = open(cfg).read().replace('[mcp.servers.everything]\n',
                                   '[mcp.servers.everything]\ntool_timeout_s = 1\n')
    with open(cfg, "w") as f:
        f.write(raw)
    r = mcp(cfg, "call", "everything", "trigger-long-running-operation",
            '{"duration": 120, "steps": 120}', timeout=120)
    eq(r.rc, 1, "exit code %r" % r)
    contains(r.stderr, "did not answer within 1s (the call was cancelled)")
    # kill -9 of the server during a call: the call fails at once.
    cfg, root = real_config(tmp)
    p = spawn_agentd(["--config", cfg, "mcp", "call", "everything",
                      "trigger-long-running-operation", '{"duration": 30, "steps": 30}'])
    try:
        err = b""
        deadline = time.monotonic() + 60 * TIMEOUT_SCALE
        while b"progress 1/30" not in err:
            ok(time.monotonic() < deadline, "progress came: %r" % err)
            r_, _, _ = select.select([p.stderr], [], [], 1)
            if r_:
                chunk = os.read(p.stderr.fileno(), 4096)
                ok(chunk, "agentd ended early: %r" % err)
                err += chunk
        children = open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()
        eq(len(children), 1, "one server process")
        os.kill(int(children[0]), signal.SIGKILL)
        out, rest = p.communicate(timeout=20 * TIMEOUT_SCALE)
        err += rest
    finally:
        if p.poll() is None:
            p.kill()
    eq(p.returncode, 1, "exit code; stderr %r" % err)
    contains(err.decode(), "the MCP server 'everything' was killed by signal KILL")


NETNS = os.path.join(SRC, "tests", "mcp", "netns_run.py")


def in_netns(tmp, server_argv, port, agentd_args, env=None):
    """Runs agentd next to a real server that binds every interface (the
    everything server over Streamable HTTP), both in a network namespace
    of their own; skip() when there is none to be had."""
    probe = subprocess.run(["unshare", "-rn", "true"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0 or not shutil.which("ip"):
        skip("no network namespace here (unshare -rn, ip): the everything server binds "
             "every interface")
    p = subprocess.run(["unshare", "-rn", sys.executable, NETNS, str(port)] + server_argv
                       + ["--"] + agentd_cmd(agentd_args), env=agentd_env(env),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120 * TIMEOUT_SCALE)
    return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                  p.stderr.decode("utf-8", "replace"), None)


@case
def real_everything_over_streamable_http(tmp):
    b = real_bin()
    port = 38000 + os.getpid() % 1000
    cfg = config(tmp, {"ev": {"url": "http://127.0.0.1:%d/mcp" % port}})
    server = ["env", "PORT=%d" % port, "PATH=" + b + ":" + os.environ.get("PATH", ""),
              os.path.join(b, "mcp-server-everything"), "streamableHttp"]
    r = in_netns(tmp, server, port, ["--config", cfg, "mcp", "list", "--json"])
    eq(r.rc, 0, "exit code %r" % r)
    s = json.loads(r.stdout)["servers"][0]
    eq((s["transport"], s["state"], s["tools"], s["protocol"]), ("http", "ready", 13, "2025-11-25"))
    r = in_netns(tmp, server, port, ["--config", cfg, "mcp", "call", "ev",
                                     "trigger-long-running-operation",
                                     '{"duration": 1, "steps": 2}'])
    eq(r.rc, 0, "exit code %r" % r)
    contains(r.stderr, "progress 2/2", "progress over SSE")
    r = in_netns(tmp, server, port, ["--config", cfg, "mcp", "call", "ev", "get-tiny-image"])
    contains(r.stdout, "[image: image/png, ")
    r = in_netns(tmp, server, port, ["--config", cfg, "mcp", "call", "ev",
                                     "get-structured-content", '{"location": "New York"}',
                                     "--json"])
    ok("temperature" in json.loads(r.stdout)["result"]["structuredContent"], "structuredContent")
    contains(r.stderr, "Received session termination request", "DELETE at the end")
    cfg = config(tmp, {"ev": {"url": "http://127.0.0.1:%d/mcp" % port, "tool_timeout_s": 1}},
                 name="t.toml")
    r = in_netns(tmp, server, port, ["--config", cfg, "mcp", "call", "ev",
                                     "trigger-long-running-operation",
                                     '{"duration": 60, "steps": 60}'])
    eq(r.rc, 1, "exit code %r" % r)
    contains(r.stderr, "did not answer within 1s (the call was cancelled)")


def call_ok(cfg, server, tool, args, want=None):
    r = mcp(cfg, "call", server, tool, json.dumps(args), timeout=120)
    eq(r.rc, 0, "%s %s %s: %r" % (server, tool, args, r))
    if want:
        contains(r.stdout, want, "%s %s" % (server, tool))
    return r


@case
def real_filesystem_every_tool(tmp):
    cfg, root = real_config(tmp)
    sub, a, b = os.path.join(root, "sub"), os.path.join(root, "sub", "a.txt"), \
        os.path.join(root, "b.txt")
    png = os.path.join(root, "pic.png")
    with open(png, "wb") as f:
        f.write(bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
                              "890000000d4944415478da63f8cfc0f01f0005000201a5e1cd7e0000000049"
                              "454e44ae426082"))
    call_ok(cfg, "fs", "list_allowed_directories", {}, os.path.realpath(root))
    call_ok(cfg, "fs", "create_directory", {"path": sub})
    call_ok(cfg, "fs", "write_file", {"path": a, "content": "hello\nworld\n"})
    call_ok(cfg, "fs", "write_file", {"path": b, "content": "bee\n"})
    call_ok(cfg, "fs", "read_text_file", {"path": a}, "hello\nworld")
    call_ok(cfg, "fs", "read_file", {"path": a}, "hello")
    call_ok(cfg, "fs", "read_multiple_files", {"paths": [a, b]}, "bee")
    call_ok(cfg, "fs", "edit_file", {"path": a, "edits": [{"oldText": "world", "newText": "there"}]},
            "there")
    call_ok(cfg, "fs", "read_media_file", {"path": png}, "[image: image/png, 70 bytes]")
    call_ok(cfg, "fs", "list_directory", {"path": root}, "[DIR] sub")
    call_ok(cfg, "fs", "list_directory_with_sizes", {"path": root}, "b.txt")
    call_ok(cfg, "fs", "directory_tree", {"path": root}, "a.txt")
    call_ok(cfg, "fs", "move_file", {"source": b, "destination": os.path.join(sub, "b.txt")})
    call_ok(cfg, "fs", "search_files", {"path": root, "pattern": "**/*.txt"}, "b.txt")
    call_ok(cfg, "fs", "get_file_info", {"path": a}, "size")
    ok(open(a).read() == "hello\nthere\n", "the edit reached the disk")
    # Outside the roots: an error result, exit 1.
    r = mcp(cfg, "call", "fs", "read_text_file", '{"path": "/etc/passwd"}', timeout=120)
    eq(r.rc, 1, "outside the roots %r" % r)
    # An 8 MB single-line result is read whole and cut for the model.
    big = os.path.join(root, "big.txt")
    with open(big, "w") as f:
        f.write("z" * (8 << 20))
    r = mcp(cfg, "call", "fs", "read_text_file", json.dumps({"path": big}), "--json", timeout=120)
    eq(r.rc, 0, "8 MB %r" % r.stderr)
    doc = json.loads(r.stdout)
    contains(doc["text"], "of 8388608 bytes cut")


@case
def real_memory_every_tool(tmp):
    cfg, root = real_config(tmp)
    call_ok(cfg, "memory", "create_entities", {"entities": [
        {"name": "Ada", "entityType": "person", "observations": ["wrote programs"]},
        {"name": "Engine", "entityType": "machine", "observations": []}]}, "Ada")
    call_ok(cfg, "memory", "create_relations", {"relations": [
        {"from": "Ada", "to": "Engine", "relationType": "programmed"}]}, "programmed")
    call_ok(cfg, "memory", "add_observations", {"observations": [
        {"entityName": "Ada", "contents": ["born 1815"]}]}, "born 1815")
    call_ok(cfg, "memory", "read_graph", {}, "born 1815")
    call_ok(cfg, "memory", "search_nodes", {"query": "Ada"}, "Ada")
    call_ok(cfg, "memory", "open_nodes", {"names": ["Engine"]}, "machine")
    call_ok(cfg, "memory", "delete_observations", {"deletions": [
        {"entityName": "Ada", "observations": ["born 1815"]}]})
    call_ok(cfg, "memory", "delete_relations", {"relations": [
        {"from": "Ada", "to": "Engine", "relationType": "programmed"}]})
    call_ok(cfg, "memory", "delete_entities", {"entityNames": ["Engine"]})
    r = call_ok(cfg, "memory", "read_graph", {}, "Ada")
    ok("Engine" not in r.stdout and "born 1815" not in r.stdout, "deleted: %r" % r.stdout)


if __name__ == "__main__":
    main()

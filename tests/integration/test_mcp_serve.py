"""test_mcp_serve.py -- `agentd mcp serve`: the plugins as an MCP server.

Over stdio (the test is the MCP client, line by line) and over Streamable
HTTP on loopback (http.client), with real plugins (plugins/, tests/plugins:
add, noisy, mcpconf) and, with --mcp, the fixture MCP server's tools served
through agentd. agentd's own MCP client (`agentd mcp call`) talks to it
too. The official server conformance scenarios run when ../shared/mcp has
the suite; otherwise they are skipped with the reason.
"""
import http.client
import json
import os
import re
import select
import subprocess
import sys
import time

from lib import (agentd_cmd, agentd_env, case, contains, eq, main, make_plugin_dir, ok,
                 run_agentd, skip, toml_table, write_config, TIMEOUT_SCALE)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(SRC, "tests", "mcp", "server.py")
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}}}


def config(tmp, plugins=("add", "multiply"), tools=None, mcp=None, name="agent.toml"):
    raw = ""
    for tname, t in (tools or {}).items():
        raw += toml_table(["tools", tname], t)
    for sname, s in (mcp or {}).items():
        raw += toml_table(["mcp", "servers", sname], s)
    pdir = make_plugin_dir(tmp, plugins, dirname="plugins-" + name.split(".")[0])
    return write_config(tmp, "http://127.0.0.1:9/v1", plugins_dir=os.path.basename(pdir),
                        raw_append=raw, name=name)


class Stdio:
    """agentd mcp serve over stdio, with the test as its client."""

    def __init__(self, cfg, extra=(), env=None):
        self.p = subprocess.Popen(agentd_cmd(["--config", cfg, "mcp", "serve"] + list(extra)),
                                  env=agentd_env(env), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""
        self.seen = []
        self.err = b""

    def send(self, msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.p.stdin.write(data + b"\n")
        self.p.stdin.flush()

    def recv(self, timeout=20):
        """The next message on stdout (every line must be JSON-RPC)."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ok(left > 0, "a message within %ss (got %r)" % (timeout, self.buf[-300:]))
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                ok(chunk, "agentd mcp serve ended early: %r" % self.stderr())
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        self.seen.append(msg)
        return msg

    def until(self, pred, timeout=20):
        """Messages until one satisfies pred; returns (it, the ones before)."""
        before = []
        while True:
            m = self.recv(timeout)
            if pred(m):
                return m, before
            before.append(m)

    def request(self, id_, method, params=None):
        msg = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.until(lambda m: m.get("id") == id_ and "method" not in m)

    def start(self):
        self.send(INIT)
        r, _ = self.until(lambda m: m.get("id") == 1)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return r

    def close(self):
        """Closes stdin (the end of the session); returns the exit status."""
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.p.wait(timeout=20 * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.rest = self.p.stdout.read()
        return rc

    def wait_stderr(self, text, timeout=20):
        """Reads stderr while the server runs until text shows up."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while text.encode() not in self.err:
            left = deadline - time.monotonic()
            ok(left > 0, "%r on stderr within %ss (got %r)" % (text, timeout, self.err[-500:]))
            r, _, _ = select.select([self.p.stderr], [], [], left)
            if r:
                chunk = os.read(self.p.stderr.fileno(), 65536)
                ok(chunk, "stderr closed before %r: %r" % (text, self.err[-500:]))
                self.err += chunk

    def stderr(self):
        if self.p.poll() is None:
            return ""
        self.err += self.p.stderr.read()
        return self.err.decode("utf-8", "replace")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def text_of(resp):
    return resp["result"]["content"][0]["text"]


# ---- stdio ------------------------------------------------------------------------

@case
def stdio_initialize_list_call_and_errors(tmp):
    s = Stdio(config(tmp, plugins=("add", "multiply", "noisy")))
    try:
        r = s.start()
        eq(r["result"]["protocolVersion"], "2025-11-25")
        eq(r["result"]["serverInfo"]["name"], "agentd")
        eq(r["result"]["capabilities"]["tools"], {"listChanged": True})
        r, _ = s.request(2, "tools/list")
        tools = {t["name"]: t for t in r["result"]["tools"]}
        ok({"add", "multiply", "noisy"} <= set(tools), "the plugins' tools: %r" % list(tools))
        eq(tools["add"]["inputSchema"]["required"], ["a", "b"])
        eq(tools["add"]["description"], "Add two numbers")
        r, _ = s.request(3, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 40}})
        eq(r["result"], {"content": [{"type": "text", "text": "42"}], "isError": False})
        r, _ = s.request(4, "tools/call", {"name": "add", "arguments": {"a": "x", "b": 1}})
        eq(r["result"]["isError"], True, "invalid arguments are a tool error")
        contains(text_of(r), "invalid arguments for tool 'add'")
        r, _ = s.request(5, "tools/call", {"name": "no_such_tool"})
        eq(r["error"]["code"], -32602, "an unknown tool is a protocol error")
        contains(r["error"]["message"], "Unknown tool: no_such_tool")
        r, _ = s.request("str-id", "ping")
        eq((r["id"], r["result"]), ("str-id", {}))
        r, _ = s.request(6, "resources/list")
        eq(r["error"]["code"], -32601)
        s.send(b"this is not JSON")
        r = s.recv()
        eq((r["id"], r["error"]["code"]), (None, -32700))
        s.send(b'[{"jsonrpc": "2.0", "id": 7, "method": "ping"}]')
        r = s.recv()
        eq(r["error"]["code"], -32600, "a batch")
        # A plugin that prints to stdout does not corrupt the protocol. In
        # its worker (the default isolation) what a call prints is that
        # call's output: a log message of the call.
        r, before = s.request(8, "tools/call", {"name": "noisy", "arguments": {"say": "hello"}})
        eq(text_of(r), "done")
        logs = [m["params"] for m in before if m.get("method") == "notifications/message"]
        ok(any(m["data"] == "noisy: stdout from invoke" and m["logger"] == "noisy" for m in logs),
           "the plugin's printf came as the call's log message: %r" % logs)
        eq(s.close(), 0, "EOF ends the server")
        eq(s.rest, b"", "nothing after the last answer")
        err = s.stderr()
        contains(err, "noisy: stdout from init", "init's printf went to stderr")
    finally:
        s.kill()


@case
def stdio_cancellation_of_an_isolated_call(tmp):
    # The isolation provider lets a running worker go on until its deadline
    # (timeout_s): the call's result is dropped, no response is sent, and
    # the session serves on meanwhile.
    cfg = config(tmp, plugins=("noisy",), tools={"sleep": {"isolation": "process",
                                                           "timeout_s": 2},
                                                   "pid": {"isolation": "process"}})
    s = Stdio(cfg)
    try:
        s.start()
        r, _ = s.request(2, "tools/call", {"name": "pid"})
        worker = int(text_of(r))
        ok(worker != s.p.pid, "isolated: another process ran it")
        s.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"ms": 30000}}})
        # The worker runs: a child of agentd's.
        deadline = time.monotonic() + 20 * TIMEOUT_SCALE
        kids = []
        while not kids:
            ok(time.monotonic() < deadline, "the worker started")
            # Workers are started from pool threads: every thread's children.
            for t in os.listdir("/proc/%d/task" % s.p.pid):
                try:
                    kids += open("/proc/%d/task/%s/children" % (s.p.pid, t)).read().split()
                except OSError:
                    pass
            select.select([], [], [], 0.02)
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 3, "reason": "the user changed their mind"}})
        start = time.monotonic()
        r, before = s.request(4, "ping")
        eq([m for m in before if m.get("id") == 3], [], "no response to the cancelled call")
        while os.path.exists("/proc/%s" % kids[0]) and \
                open("/proc/%s/stat" % kids[0]).read().split()[2] != "Z":
            ok(time.monotonic() - start < 20 * TIMEOUT_SCALE, "the worker ended at its deadline")
            select.select([], [], [], 0.02)
        eq(s.close(), 0)
        ok(not any(m.get("id") == 3 for m in s.seen), "never answered")
        ok(b'"id":3' not in s.rest, "not even at the end")
    finally:
        s.kill()


@case
def stdio_logging_from_a_plugin_and_set_level(tmp):
    s = Stdio(config(tmp, plugins=("mcpconf",)))
    try:
        s.start()
        r, before = s.request(2, "tools/call", {"name": "test_tool_with_logging"})
        logs = [m["params"] for m in before if m.get("method") == "notifications/message"]
        eq([m["data"] for m in logs], ["Tool execution started", "Tool processing data",
                                       "Tool execution completed"])
        eq({(m["level"], m["logger"]) for m in logs}, {("info", "test_tool_with_logging")})
        r, _ = s.request(3, "logging/setLevel", {"level": "warning"})
        eq(r["result"], {})
        r, before = s.request(4, "tools/call", {"name": "test_tool_with_logging"})
        eq([m for m in before if m.get("method") == "notifications/message"], [],
           "info is below warning")
        r, _ = s.request(5, "logging/setLevel", {"level": "loud"})
        eq(r["error"]["code"], -32602)
        r, _ = s.request(6, "tools/list")
        schema = [t for t in r["result"]["tools"]
                  if t["name"] == "json_schema_2020_12_tool"][0]["inputSchema"]
        eq(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "kept as it is")
        eq(schema["additionalProperties"], False)
        eq(schema["properties"]["address"], {"$ref": "#/$defs/address"})
        eq(s.close(), 0)
    finally:
        s.kill()


@case
def stdio_progress_and_cancellation_of_a_plugin_call(tmp):
    s = Stdio(config(tmp, plugins=("mcpconf",)))
    try:
        s.start()
        r, before = s.request(2, "tools/call", {"name": "test_tool_with_progress",
                                                "_meta": {"progressToken": "p"}})
        eq(text_of(r), "Progress reported three times")
        prog = [m["params"] for m in before if m.get("method") == "notifications/progress"]
        eq([(p["progressToken"], p["progress"], p["total"]) for p in prog],
           [("p", 0, 100), ("p", 50, 100), ("p", 100, 100)])
        r, before = s.request(3, "tools/call", {"name": "test_tool_with_progress"})
        eq([m for m in before if m.get("method") == "notifications/progress"], [],
           "no token, no progress")
        # A call that runs until it is cancelled: cancelled when it said it runs.
        s.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "wait_for_cancel", "_meta": {"progressToken": 7}}})
        m, _ = s.until(lambda m: m.get("method") == "notifications/progress")
        eq(m["params"]["message"], "waiting")
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 4}})
        s.wait_stderr("stopped: cancelled after")  # the plugin saw it
        r, before = s.request(5, "ping")
        eq([m for m in before if m.get("id") == 4], [])
        eq(s.close(), 0)
        ok(not any(m.get("id") == 4 for m in s.seen), "no response to the cancelled call")
    finally:
        s.kill()


@case
def stdio_progress_and_cancellation_pass_through_to_an_mcp_server(tmp):
    log = os.path.join(tmp, "up.log")
    cfg = config(tmp, plugins=("add",), mcp={"up": {
        "command": sys.executable, "args": [FIXTURE, "--log", log],
        "enabled_tools": ["slow", "hang"]}})
    s = Stdio(cfg, ["--mcp"])
    try:
        s.start()
        r, _ = s.request(2, "tools/list")
        eq(sorted(t["name"] for t in r["result"]["tools"]), ["add", "up__hang", "up__slow"])
        r, before = s.request(3, "tools/call", {"name": "up__slow",
                                                "arguments": {"seconds": 0.6, "steps": 3},
                                                "_meta": {"progressToken": "tok-1"}})
        eq(text_of(r), "slept 0.6s")
        prog = [m["params"] for m in before if m.get("method") == "notifications/progress"]
        ok(len(prog) >= 2, "progress: %r" % prog)
        eq({p["progressToken"] for p in prog}, {"tok-1"}, "the client's own token")
        eq((prog[-1]["progress"], prog[-1]["total"]), (3, 3))
        s.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "up__hang", "arguments": {}}})
        deadline = time.monotonic() + 20 * TIMEOUT_SCALE

        def upstream(method):
            if not os.path.exists(log):
                return []
            with open(log) as f:
                recs = [json.loads(x) for x in f if x.strip()]
            return [x["msg"] for x in recs if x.get("event") == "recv" and
                    x["msg"].get("method") == method]
        while not [c for c in upstream("tools/call") if c["params"]["name"] == "hang"]:
            ok(time.monotonic() < deadline, "the call reached the upstream server")
            select.select([], [], [], 0.02)
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 4}})
        hang_id = [c for c in upstream("tools/call") if c["params"]["name"] == "hang"][0]["id"]
        while not upstream("notifications/cancelled"):
            ok(time.monotonic() < deadline, "cancelled upstream too")
            select.select([], [], [], 0.02)
        eq(upstream("notifications/cancelled")[0]["params"]["requestId"], hang_id)
        eq(s.close(), 0)
        ok(not any(m.get("id") == 4 for m in s.seen), "no response to the cancelled call")
    finally:
        s.kill()


@case
def agentd_as_the_client_of_agentd_mcp_serve(tmp):
    inner = config(tmp, plugins=("add", "multiply"), name="inner.toml")
    outer = write_config(tmp, "http://127.0.0.1:9/v1", name="outer.toml", raw_append=toml_table(
        ["mcp", "servers", "me"],
        {"command": os.path.join(os.path.abspath(os.environ.get("AGENTD_DIR") or SRC),
                                 "agentd"),
         "args": ["--config", inner, "mcp", "serve"]}))
    r = run_agentd(["--config", outer, "mcp", "tools", "--json"])
    eq(r.rc, 0, "exit code %r" % r)
    eq(sorted(t["model_name"] for t in json.loads(r.stdout)["tools"]),
       ["me__add", "me__multiply"])
    r = run_agentd(["--config", outer, "mcp", "call", "me", "multiply", '{"a": 6, "b": 7}'])
    eq((r.rc, r.stdout), (0, "42\n"), "%r" % r)


@case
def usage_errors_exit_2(tmp):
    cfg = config(tmp)
    r = run_agentd(["--config", cfg, "mcp", "serve", "--http", "0.0.0.0:0"])
    eq(r.rc, 2, "a non-loopback address %r" % r)
    contains(r.stderr, "listens on a loopback address only")
    r = run_agentd(["--config", cfg, "mcp", "serve", "--bogus"])
    eq(r.rc, 2)
    contains(r.stderr, "unknown option '--bogus'")
    r = run_agentd(["--config", cfg, "mcp", "serve", "--http", "x:y"])
    eq(r.rc, 2)
    r = run_agentd(["mcp", "serve", "--help"])
    eq(r.rc, 0)
    contains(r.stdout, "mcp serve [--http [HOST:]PORT] [--mcp]")
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    os.symlink(os.path.join(os.path.abspath(os.environ.get("AGENTD_DIR") or SRC), "tests",
                            "plugins", "bad_abi.so"), os.path.join(bad, "bad_abi.so"))
    cfg2 = write_config(tmp, "http://127.0.0.1:9/v1", plugins_dir="bad", name="bad.toml")
    r = run_agentd(["--config", cfg2, "mcp", "serve"], input="")
    eq(r.rc, 2, "a plugin that does not load %r" % r)
    contains(r.stderr, "bad_abi.so")


# ---- Streamable HTTP ------------------------------------------------------------------

class Http:
    def __init__(self, cfg, extra=()):
        self.p = subprocess.Popen(agentd_cmd(["--config", cfg, "mcp", "serve", "--http", "0"]
                                             + list(extra)),
                                  env=agentd_env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = self.p.stderr.readline().decode()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/mcp", line)
        ok(m, "the address: %r" % line)
        self.port = int(m.group(1))

    def post(self, msg, sid=None, host=None, accept="application/json, text/event-stream",
             origin=None, path="/mcp", method="POST"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20 * TIMEOUT_SCALE)
        h = {"Content-Type": "application/json", "Accept": accept}
        if sid:
            h["Mcp-Session-Id"] = sid
        if host:
            h["Host"] = host
        if origin:
            h["Origin"] = origin
        body = json.dumps(msg).encode() if msg is not None else None
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read().decode()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def stop(self):
        self.p.terminate()
        try:
            return self.p.wait(timeout=20 * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def sse_messages(text):
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@case
def http_sessions_sse_and_the_checks(tmp):
    log = os.path.join(tmp, "up.log")
    cfg = config(tmp, plugins=("add",), mcp={"up": {
        "command": sys.executable, "args": [FIXTURE, "--log", log], "enabled_tools": ["slow"]}})
    h = Http(cfg, ["--mcp"])
    try:
        st, hd, body = h.post(INIT)
        eq(st, 200, body)
        sid = hd.get("mcp-session-id")
        ok(sid and re.match(r"^[0-9a-f]{32}$", sid), "a session id: %r" % hd)
        eq(json.loads(body)["result"]["protocolVersion"], "2025-11-25")
        st, _, _ = h.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
        eq(st, 202, "a notification")
        st, _, body = h.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
        eq(sorted(t["name"] for t in json.loads(body)["result"]["tools"]), ["add", "up__slow"])
        st, hd, body = h.post({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "up__slow", "arguments": {"seconds": 0.4, "steps": 2},
            "_meta": {"progressToken": 9}}}, sid)
        eq(st, 200)
        ok(hd.get("content-type", "").startswith("text/event-stream"), "SSE: %r" % hd)
        msgs = sse_messages(body)
        eq([m.get("method") for m in msgs[:-1]], ["notifications/progress"] * (len(msgs) - 1))
        ok(len(msgs) >= 3, "progress, then the response: %r" % msgs)
        eq((msgs[-1]["id"], text_of(msgs[-1])), (3, "slept 0.4s"))
        # Without text/event-stream in Accept: a JSON answer.
        st, hd, body = h.post({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "add", "arguments": {"a": 1, "b": 2}}}, sid, accept="application/json")
        eq((st, hd.get("content-type"), text_of(json.loads(body))),
           (200, "application/json", "3"))
        # The checks.
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"})
        eq(st, 400, "no session id")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, "f" * 32)
        eq(st, 404, "an unknown session")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, sid,
                          host="evil.example.com")
        eq(st, 403, "DNS rebinding: Host")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, sid,
                          origin="http://evil.example.com")
        eq(st, 403, "DNS rebinding: Origin")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, sid,
                          origin="http://localhost:3000")
        eq(st, 200, "a loopback Origin")
        st, hd, _ = h.post(None, sid, method="GET")
        eq(st, 405, "no stream of the server's own")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, sid, path="/other")
        eq(st, 404)
        st, _, body = h.post("not json", sid)
        eq(st, 400)
        st, _, _ = h.post(None, sid, method="DELETE")
        eq(st, 200, "DELETE ends the session")
        st, _, _ = h.post({"jsonrpc": "2.0", "id": 6, "method": "ping"}, sid)
        eq(st, 404, "gone")
    finally:
        eq(h.stop(), 0, "SIGTERM ends the server")


@case
def agentd_client_over_http_to_agentd_mcp_serve(tmp):
    inner = config(tmp, plugins=("add", "multiply"), name="inner.toml")
    h = Http(inner)
    try:
        outer = write_config(tmp, "http://127.0.0.1:9/v1", name="outer.toml",
                             raw_append=toml_table(["mcp", "servers", "me"], {
                                 "url": "http://127.0.0.1:%d/mcp" % h.port}))
        r = run_agentd(["--config", outer, "mcp", "call", "me", "add", '{"a": 20, "b": 22}'])
        eq((r.rc, r.stdout), (0, "42\n"), "%r" % r)
    finally:
        eq(h.stop(), 0)


# ---- the official server scenarios ------------------------------------------------------

_suite = {}


def suite():
    if "why" in _suite:
        skip(_suite["why"])
    if "bin" in _suite:
        return _suite["bin"]
    setup = os.path.join(SRC, "..", "shared", "mcp", "setup")
    why, b = None, ""
    if not os.path.exists(setup):
        why = "../shared/mcp/setup is absent (the conformance suite comes from there)"
    else:
        try:
            p = subprocess.run(["sh", setup], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=600)
            b = p.stdout.decode().strip().splitlines()[-1] if p.stdout.strip() else ""
            if p.returncode != 0 or not os.path.exists(os.path.join(b, "conformance")):
                why = "../shared/mcp/setup failed: %s" % p.stderr.decode()[-300:].strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            why = "../shared/mcp/setup failed: %s" % e
    if why:
        _suite["why"] = why
        skip(why)
    _suite["bin"] = b
    return b


# Each scenario and its number of checks (every tool is mcpconf.so's).
SERVER_SCENARIOS = [("server-initialize", 1), ("ping", 1), ("tools-list", 1),
                    ("tools-call-simple-text", 1), ("tools-call-error", 1),
                    ("tools-call-with-logging", 1), ("tools-call-with-progress", 1),
                    ("logging-set-level", 1), ("json-schema-2020-12", 4),
                    ("dns-rebinding-protection", 2), ("server-sse-multiple-streams", 1)]


@case
def official_server_scenarios(tmp):
    b = suite()
    cfg = config(tmp, plugins=("mcpconf",))
    h = Http(cfg)
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    try:
        for scenario, checks in SERVER_SCENARIOS:
            p = subprocess.run([os.path.join(b, "conformance"), "server", "--url",
                                "http://127.0.0.1:%d/mcp" % h.port, "--scenario", scenario],
                               env=dict(os.environ, PATH=b + ":" + os.environ.get("PATH", "")),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=120 * TIMEOUT_SCALE)
            out = ansi.sub("", p.stdout.decode("utf-8", "replace"))
            eq(p.returncode, 0, "%s: %s" % (scenario, out[-2000:]))
            contains(out, "Passed: %d/%d, 0 failed, 0 warnings" % (checks, checks), scenario)
    finally:
        eq(h.stop(), 0)


if __name__ == "__main__":
    main()

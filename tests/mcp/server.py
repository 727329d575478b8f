#!/usr/bin/env python3
"""server.py -- a scriptable MCP server over stdio, for agentd's MCP client tests.

Speaks newline-delimited JSON-RPC 2.0 on stdin/stdout (Python 3 standard
library only). Each tools/call runs on a thread of its own, so the server can
send progress, requests of its own and answers to other requests while a call
is pending. Everything received is appended to --log as one JSON line (with
"event": "recv"), as are "start" (with the pid and the environment) and
"stdin-eof"; tests read it to see what the client sent.

Tools (see TOOLS below): echo, add, image, audio, structured, fail, rpc_error,
slow, hang, wait_cancel, crash, big, env, resource, ask, log, tasks_only,
no_schema, and two with names models
cannot take as they are ("dotted.name/with space", a 90-character name).

Faults, each selected with --fault NAME (repeatable):
  banner         two non-JSON lines on stdout before anything else
  noise          a non-JSON line on stdout after every message sent
  crash-on-start exit 1 at once, after a line on stderr
  hang-init      never answer initialize
  list-changed   send notifications/tools/list_changed right after
                 notifications/initialized (before answering tools/list), and
                 list one more tool, "added_later", from the second listing on
  ask-on-list    while our tools/list is pending, send roots/list and ping to
                 the client and answer tools/list only after both answers came
  ignore-eof     keep running when stdin closes (until a signal ends it)
  ignore-term    ignore SIGTERM (only SIGKILL ends it)
  long-line      before the answer to each tools/call, one line of
                 --long-line-bytes bytes on stdout (a JSON string, no id)
  flood          before the answer to each tools/call, --flood-lines non-JSON
                 lines on stdout
  garbage        every tools/call is answered with a line of invalid bytes,
                 then a response whose result is not an object
  grow           lists a tool `grow`: each call adds a tool grown_N, sends
                 list_changed and answers once the tools were listed again
Options: --page-size N paginates tools/list (opaque cursors); --version V
answers initialize with protocol version V (default: the client's);
--name N is serverInfo.name. --http serves Streamable HTTP on 127.0.0.1
instead of stdio (README.md: its options and faults sse-cut, no-resume,
no-get, http-500, expire-400).
"""

import argparse
import base64
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A 1x1 PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5e1cd7e0000000049454e44ae426082")).decode()

LONG_NAME = "a_tool_with_a_name_far_longer_than_any_provider_accepts_" + "x" * 34

TOOLS = [
    {"name": "echo", "description": "Echoes its text.",
     "inputSchema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                     "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "add", "description": "Adds a and b.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"},
                                                      "b": {"type": "number"}}},
     "outputSchema": {"type": "object", "properties": {"sum": {"type": "number"}}}},
    {"name": "image", "description": "A tiny PNG between two texts.",
     "inputSchema": {"type": "object"}},
    {"name": "audio", "description": "A short WAV.", "inputSchema": {"type": "object"}},
    {"name": "structured", "description": "structuredContent only.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "fail", "description": "Answers isError.", "inputSchema": {"type": "object"}},
    {"name": "rpc_error", "description": "Answers a JSON-RPC error.",
     "inputSchema": {"type": "object"}},
    {"name": "slow", "description": "Sleeps, sending progress when asked to.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"},
                                                      "steps": {"type": "integer"}}}},
    {"name": "hang", "description": "Never answers.", "inputSchema": {"type": "object"}},
    {"name": "wait_cancel", "description": "Answers once the client cancelled the call.",
     "inputSchema": {"type": "object"}},
    {"name": "crash", "description": "Exits in the middle of the call.",
     "inputSchema": {"type": "object"}},
    {"name": "big", "description": "A text of `bytes` bytes.",
     "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer"}}}},
    {"name": "env", "description": "Its environment.", "inputSchema": {"type": "object"}},
    {"name": "resource", "description": "An embedded resource and a link.",
     "inputSchema": {"type": "object"}},
    {"name": "ask", "description": "Asks the client for ping and roots/list first.",
     "inputSchema": {"type": "object"}},
    {"name": "log", "description": "Sends notifications/message, then answers.",
     "inputSchema": {"type": "object"}},
    {"name": "tasks_only", "description": "Needs tasks.", "inputSchema": {"type": "object"},
     "execution": {"taskSupport": "required"}},
    {"name": "dotted.name/with space", "description": "A name to sanitise.",
     "inputSchema": {"type": "object"}},
    {"name": LONG_NAME, "description": "A name to shorten.", "inputSchema": {"type": "object"}},
    {"name": "no_schema", "description": "Listed without an inputSchema."},
]


class Server:
    def __init__(self, args):
        self.args = args
        self.faults = set(args.fault or [])
        self.out_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.next_id = 0  # the server's own request ids start at 0
        self.waiting = {}  # id -> [event, response]
        self.listings = 0
        self.cancelled = set()
        self.cancel_cond = threading.Condition()
        self.http = None  # the HttpFront in --http mode
        self.grown = 0  # tools added by calls of `grow`
        self.list_cond = threading.Condition()
        self.answered_lists = 0
        self.tls = threading.local()

    # -- output -----------------------------------------------------------
    def log(self, rec):
        if not self.args.log:
            return
        with self.log_lock, open(self.args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def write_line(self, text):
        with self.out_lock:
            sys.stdout.write(text + "\n")
            if "noise" in self.faults:
                sys.stdout.write("noise: this line is not JSON\n")
            sys.stdout.flush()

    def send(self, msg):
        if self.http:
            self.http.send(self, msg)
        else:
            self.write_line(json.dumps(msg, separators=(",", ":")))

    def spawn(self, fn, *args):
        """Over stdio a call runs on a thread of its own; over HTTP it runs
        on the thread that serves its SSE answer."""
        if self.http:
            fn(*args)
        else:
            threading.Thread(target=fn, args=args, daemon=True).start()

    def result(self, id_, result):
        self.send({"jsonrpc": "2.0", "id": id_, "result": result})

    def error(self, id_, code, message):
        self.send({"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}})

    def request(self, method, params=None):
        """Sends a request of the server's and waits for the answer."""
        with self.out_lock:
            id_ = self.next_id
            self.next_id += 1
            slot = [threading.Event(), None]
            self.waiting[id_] = slot
        msg = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        if not slot[0].wait(30):
            return {"timeout": True}
        return slot[1]

    # -- tools --------------------------------------------------------------
    def tools(self):
        tools = list(TOOLS)
        if "list-changed" in self.faults and self.listings > 1:
            tools.append({"name": "added_later", "description": "Listed after list_changed.",
                          "inputSchema": {"type": "object"}})
        if "grow" in self.faults:
            tools.append({"name": "grow", "description": "Adds a tool, then answers.",
                          "inputSchema": {"type": "object"}})
            for i in range(1, self.grown + 1):
                tools.append({"name": "grown_%d" % i, "description": "Added by grow.",
                              "inputSchema": {"type": "object"}})
        return tools

    def call(self, id_, params):
        name = params.get("name")
        a = params.get("arguments") or {}
        token = (params.get("_meta") or {}).get("progressToken")
        if "long-line" in self.faults:
            self.write_line(json.dumps("y" * self.args.long_line_bytes))
        if "flood" in self.faults:
            with self.out_lock:
                for i in range(self.args.flood_lines):
                    sys.stdout.write("flood line %d: not JSON at all\n" % i)
                sys.stdout.flush()
        if "garbage" in self.faults:
            with self.out_lock:
                sys.stdout.buffer.write(b"\xff\xfe{{garbage\x00]]\n")
                sys.stdout.flush()
            self.send({"jsonrpc": "2.0", "id": id_, "result": "not an object"})
            return

        def text(t, **kw):
            r = {"content": [{"type": "text", "text": t}]}
            r.update(kw)
            return r

        if name == "echo":
            self.result(id_, text(str(a.get("text", ""))))
        elif name == "add":
            s = a.get("a", 0) + a.get("b", 0)
            self.result(id_, text(json.dumps({"sum": s}), structuredContent={"sum": s}))
        elif name == "image":
            # The PNG (with "pad" zero bytes after it), as "mime".
            data = PNG if not a.get("pad") else base64.b64encode(
                base64.b64decode(PNG) + b"\0" * int(a["pad"])).decode()
            self.result(id_, {"content": [
                {"type": "text", "text": "before"},
                {"type": "image", "data": data, "mimeType": a.get("mime", "image/png")},
                {"type": "text", "text": "after"}]})
        elif name == "audio":
            self.result(id_, {"content": [{"type": "audio", "mimeType": "audio/wav",
                                           "data": base64.b64encode(b"RIFF0000WAVE").decode()}]})
        elif name == "structured":
            self.result(id_, {"content": [], "structuredContent": {"answer": 42, "ok": True}})
        elif name == "fail":
            self.result(id_, text("it failed on purpose", isError=True))
        elif name == "rpc_error":
            self.error(id_, -32602, "bad arguments on purpose")
        elif name == "slow":
            steps = int(a.get("steps", 3))
            secs = float(a.get("seconds", 0.3))
            for i in range(steps):
                time.sleep(secs / max(steps, 1))
                if token is not None:
                    self.send({"jsonrpc": "2.0", "method": "notifications/progress",
                               "params": {"progressToken": token, "progress": i + 1,
                                          "total": steps, "message": "step %d" % (i + 1)}})
            # Answers even when the call was cancelled meanwhile: the client
            # must drop such a response.
            self.result(id_, text("slept %gs" % secs))
        elif name == "hang":
            pass
        elif name == "wait_cancel":
            with self.cancel_cond:
                self.cancel_cond.wait_for(lambda: id_ in self.cancelled, 30)
            # A response after the cancellation, which the client must drop,
            # then a note that says it was sent.
            self.result(id_, text("answered after the cancellation"))
            self.send({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "logger": "fixture",
                                  "data": "answered the cancelled request %s" % id_}})
        elif name == "crash":
            sys.stderr.write("fatal: crashing on purpose in the middle of a call\n")
            sys.stderr.flush()
            os._exit(3)
        elif name == "big":
            n = int(a.get("bytes", 1000))
            # Multi-byte characters, so that a cut must respect UTF-8.
            body = ("é" * (n // 2 + 1)).encode("utf-8")[:n].decode("utf-8", "ignore")
            self.result(id_, text(body))
        elif name == "env":
            self.result(id_, text(json.dumps(dict(os.environ), sort_keys=True)))
        elif name == "resource":
            self.result(id_, {"content": [
                {"type": "resource", "resource": {"uri": "file:///notes.txt",
                                                  "mimeType": "text/plain",
                                                  "text": "the notes"}},
                {"type": "resource", "resource": {"uri": "file:///blob.bin",
                                                  "mimeType": "application/octet-stream",
                                                  "blob": base64.b64encode(b"\0\1\2\3").decode()}},
                {"type": "resource_link", "uri": "file:///other.txt", "name": "other",
                 "mimeType": "text/plain", "description": "another file"}]})
        elif name == "ask":
            ping = self.request("ping")
            roots = self.request("roots/list")
            sampling = self.request("sampling/createMessage", {
                "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
                "maxTokens": 10})
            elicitation = self.request("elicitation/create", {
                "message": "Your name?", "requestedSchema": {"type": "object", "properties": {}}})
            self.result(id_, text(json.dumps({"ping": ping, "roots": roots, "sampling": sampling,
                                              "elicitation": elicitation}, sort_keys=True)))
        elif name == "grow":
            # One more tool, list_changed, and the answer only once the
            # client has listed the tools again: its next request must
            # carry the new tool.
            with self.list_cond:
                before = self.answered_lists
                self.grown += 1
            self.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            with self.list_cond:
                self.list_cond.wait_for(lambda: self.answered_lists > before, 30)
            self.result(id_, text("grew grown_%d" % self.grown))
        elif name == "log":
            for level in ("info", "warning", "error"):
                self.send({"jsonrpc": "2.0", "method": "notifications/message",
                           "params": {"level": level, "logger": "fixture",
                                      "data": "a %s message" % level}})
            self.result(id_, text("logged"))
        elif name in [t["name"] for t in self.tools()]:
            self.result(id_, text("called %s" % name))
        else:
            self.result(id_, text("unknown tool: %s" % name, isError=True))

    # -- dispatch -----------------------------------------------------------
    def handle(self, msg):
        method = msg.get("method")
        id_ = msg.get("id")
        if method is None:  # a response to a request of ours
            slot = self.waiting.pop(id_, None)
            if slot:
                slot[1] = msg.get("result", {"error": msg.get("error")})
                slot[0].set()
            return
        params = msg.get("params") or {}
        if method == "initialize":
            if "hang-init" in self.faults:
                return
            version = self.args.version or params.get("protocolVersion")
            self.result(id_, {"protocolVersion": version,
                              "capabilities": {"tools": {"listChanged": True}, "logging": {}},
                              "serverInfo": {"name": self.args.name, "version": "1.2.3"},
                              "instructions": "Fixture server for tests."})
        elif method == "notifications/initialized":
            if "list-changed" in self.faults:
                self.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        elif method == "tools/list":
            self.listings += 1
            if "ask-on-list" in self.faults:
                self.spawn(self.list_after_asking, id_, params)
                return
            self.answer_list(id_, params)
        elif method == "tools/call":
            self.spawn(self.call, id_, params)
        elif method == "ping":
            self.result(id_, {})
        elif method == "notifications/cancelled":
            with self.cancel_cond:
                self.cancelled.add(params.get("requestId"))
                self.cancel_cond.notify_all()
        elif id_ is not None:
            self.error(id_, -32601, "Method not found: %s" % method)

    def list_after_asking(self, id_, params):
        roots = self.request("roots/list")
        ping = self.request("ping")
        self.log({"event": "asked", "roots": roots, "ping": ping})
        self.answer_list(id_, params)

    def answer_list(self, id_, params):
        tools = self.tools()
        size = self.args.page_size
        if not size:
            self.result(id_, {"tools": tools})
            self.listed()
            return
        cursor = params.get("cursor")
        start = int(base64.b64decode(cursor).decode()[5:]) if cursor else 0
        page = {"tools": tools[start:start + size]}
        if start + size < len(tools):
            page["nextCursor"] = base64.b64encode(("page:%d" % (start + size)).encode()).decode()
        self.result(id_, page)
        if "nextCursor" not in page:
            self.listed()

    def listed(self):
        with self.list_cond:
            self.answered_lists += 1
            self.list_cond.notify_all()

    def run(self):
        self.log({"event": "start", "pid": os.getpid(), "env": dict(os.environ),
                  "cwd": os.getcwd()})
        if "crash-on-start" in self.faults:
            sys.stderr.write("fixture: cannot start: the configuration is missing\n")
            sys.stderr.flush()
            sys.exit(1)
        if "ignore-term" in self.faults:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if "banner" in self.faults:
            self.write_line("Fixture MCP server 1.2.3 starting")
            self.write_line("listening on stdio")
        sys.stderr.write("fixture: started\n")
        sys.stderr.flush()
        for line in sys.stdin.buffer:
            try:
                msg = json.loads(line)
            except ValueError:
                self.log({"event": "bad-line", "line": line.decode("utf-8", "replace")})
                continue
            self.log({"event": "recv", "msg": msg})
            self.handle(msg)
        self.log({"event": "stdin-eof"})
        if "ignore-eof" in self.faults:
            while True:
                time.sleep(3600)


# ---- Streamable HTTP ------------------------------------------------------------

class Stream:
    """One SSE answer: its events stay, so that a client that lost the
    connection can resume with Last-Event-ID."""

    def __init__(self, name, request_id, method):
        self.name = name
        self.request_id = request_id
        self.method = method
        self.events = []  # (event id, data)
        self.done = False
        self.cuts = 0
        self.cond = threading.Condition()

    def add(self, msg):
        with self.cond:
            eid = "%s-%d" % (self.name, len(self.events) + 1)
            self.events.append((eid, json.dumps(msg, separators=(",", ":"))))
            if "method" not in msg and msg.get("id") == self.request_id:
                self.done = True
            self.cond.notify_all()


class Session:
    def __init__(self, sid, expire_after=0):
        self.id = sid
        self.expire_after = expire_after  # forgotten after this many POSTs (0: never)
        self.posts = 0
        self.backlog = []  # messages for the server's own stream
        self.cond = threading.Condition()
        self.gone = False


class HttpFront:
    """Serves the Server over Streamable HTTP on 127.0.0.1 (path /mcp)."""

    def __init__(self, server, args):
        self.server = server
        self.args = args
        self.faults = server.faults
        self.sessions = {}
        self.streams = {}
        self.lock = threading.Lock()
        self.nstreams = 0
        self.last_session = None

    def log(self, rec):
        self.server.log(rec)

    def send(self, srv, msg):
        sink = getattr(srv.tls, "sink", None)
        if sink is not None:
            sink(msg)
            return
        sess = getattr(srv.tls, "session", None) or self.last_session
        if sess is None:
            self.log({"event": "dropped", "msg": msg})
            return
        with sess.cond:
            sess.backlog.append(msg)
            sess.cond.notify_all()

    def new_stream(self, request_id, method):
        with self.lock:
            self.nstreams += 1
            st = Stream("s%d" % self.nstreams, request_id, method)
            self.streams[st.name] = st
            return st

    def serve(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *a):
                pass

            def headers_dict(self):
                return {k.lower(): v for k, v in self.headers.items()}

            def reply(self, status, body=b"", ctype="application/json", extra=None):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def session(self, rec):
                """The request's session, or None after answering the error."""
                if front.args.stateless:
                    return Session(None)
                sid = self.headers.get("Mcp-Session-Id")
                if not sid:
                    self.reply(400, {"jsonrpc": "2.0", "id": None, "error": {
                        "code": -32000, "message": "Bad Request: No valid session ID provided"}})
                    return None
                with front.lock:
                    sess = front.sessions.get(sid)
                    if sess is not None and rec["method"] == "POST":
                        sess.posts += 1
                        if sess.expire_after and sess.posts > sess.expire_after:
                            del front.sessions[sid]
                            sess.gone = True
                            sess = None
                if sess is None:
                    front.log({"event": "expired", "session": sid})
                    if "expire-400" in front.faults:
                        self.reply(400, {"jsonrpc": "2.0", "id": None, "error": {
                            "code": -32000, "message": "Bad Request: No valid session ID provided"}})
                    else:
                        self.reply(404, {"jsonrpc": "2.0", "id": None, "error": {
                            "code": -32001, "message": "Session not found"}})
                    return None
                return sess

            def record(self, msg=None):
                rec = {"event": "http", "method": self.command, "path": self.path,
                       "headers": self.headers_dict(), "t": time.time()}
                if msg is not None:
                    rec["msg"] = msg
                front.log(rec)
                return rec

            def sse_start(self, extra=None):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = True

            def event(self, eid, data):
                out = "event: message\n" if data else ""
                if eid:
                    out += "id: %s\n" % eid
                out += "data: %s\n\n" % data
                self.wfile.write(out.encode())
                self.wfile.flush()

            def priming(self, st):
                out = "id: %s-0\n" % st.name
                if front.args.retry_ms is not None:
                    out += "retry: %d\n" % front.args.retry_ms
                out += "data: \n\n"
                self.wfile.write(out.encode())
                self.wfile.flush()

            def pump(self, st, after):
                """Writes st's events after index `after` until its response.
                A cut (--fault sse-cut, tools/call answers, --cuts times) ends
                the connection after at most one new event instead."""
                if "sse-cut" in front.faults and st.method == "tools/call" and \
                        st.cuts < front.args.cuts:
                    with st.cond:
                        pending = st.events[after:after + 1]
                    for eid, data in pending:
                        self.event(eid, data)
                    st.cuts += 1
                    front.log({"event": "cut", "stream": st.name, "t": time.time()})
                    return
                while True:
                    with st.cond:
                        while len(st.events) <= after and not st.done:
                            st.cond.wait(0.05)
                        pending = st.events[after:]
                        done = st.done
                    for eid, data in pending:
                        self.event(eid, data)
                        after += 1
                    if done and after >= len(st.events):
                        return

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.record()
                    self.reply(400, {"jsonrpc": "2.0", "id": None,
                                     "error": {"code": -32700, "message": "Parse error"}})
                    return
                rec = self.record(msg)
                front.log({"event": "recv", "msg": msg})
                if self.path != "/mcp":
                    self.reply(404, "no such endpoint", "text/plain")
                    return
                accept = self.headers.get("Accept", "")
                if "application/json" not in accept or "text/event-stream" not in accept:
                    self.reply(406, {"jsonrpc": "2.0", "id": None, "error": {
                        "code": -32000, "message": "Not Acceptable: both application/json and "
                                                   "text/event-stream are needed"}})
                    return
                method = msg.get("method") if isinstance(msg, dict) else None
                srv = front.server
                extra = {}
                if method == "initialize":
                    # --expire-after: the first session only, so that the new
                    # one the client starts lives on.
                    first = not front.sessions and front.last_session is None
                    sess = Session(None if front.args.stateless else uuid.uuid4().hex,
                                   front.args.expire_after if first else 0)
                    if sess.id:
                        with front.lock:
                            front.sessions[sess.id] = sess
                            sess.posts = 1
                        extra["Mcp-Session-Id"] = sess.id
                    front.last_session = sess
                else:
                    sess = self.session(rec)
                    if sess is None:
                        return
                srv.tls.session = sess
                srv.tls.sink = None
                if method is None or "id" not in msg:
                    srv.handle(msg)
                    self.reply(202, b"", "text/plain")
                    return
                if "http-500" in front.faults and method == "tools/call":
                    self.reply(500, "internal error on purpose\nsecond line", "text/plain")
                    return
                if front.args.json_response:
                    got = []
                    srv.tls.sink = got.append
                    srv.handle(msg)
                    srv.tls.sink = None
                    resp = [m for m in got if "method" not in m and m.get("id") == msg["id"]]
                    self.reply(200, resp[0] if resp else {"jsonrpc": "2.0", "id": msg["id"],
                                                          "error": {"code": -32603,
                                                                    "message": "no answer"}},
                               extra=extra)
                    return
                st = front.new_stream(msg["id"], method)

                def work():
                    srv.tls.session = sess
                    srv.tls.sink = st.add
                    srv.handle(msg)

                threading.Thread(target=work, daemon=True).start()
                self.sse_start(extra)
                try:
                    self.priming(st)
                    self.pump(st, 0)
                except (BrokenPipeError, ConnectionResetError):
                    front.log({"event": "client-closed", "stream": st.name})

            def do_GET(self):
                rec = self.record()
                if self.path != "/mcp":
                    self.reply(404, "no such endpoint", "text/plain")
                    return
                if "text/event-stream" not in self.headers.get("Accept", ""):
                    self.reply(406, "text/event-stream is needed", "text/plain")
                    return
                last = self.headers.get("Last-Event-ID")
                if not last and ("no-get" in front.faults or front.args.stateless):
                    self.reply(405, "", "text/plain", {"Allow": "POST, DELETE"})
                    return
                sess = self.session(rec)
                if sess is None:
                    return
                try:
                    if last:
                        if "no-resume" in front.faults:
                            self.reply(405, "", "text/plain", {"Allow": "POST"})
                            return
                        name, _, n = last.rpartition("-")
                        st = front.streams.get(name)
                        if st is None:
                            self.reply(404, "unknown event id", "text/plain")
                            return
                        self.sse_start()
                        self.pump(st, int(n))
                        return
                    self.sse_start()
                    self.event("g-0", "")
                    while not sess.gone:
                        with sess.cond:
                            if not sess.backlog:
                                sess.cond.wait(0.1)
                            out, sess.backlog = sess.backlog, []
                        for m in out:
                            self.event(None, json.dumps(m, separators=(",", ":")))
                        r, _, _ = select.select([self.connection], [], [], 0)
                        if r and not self.connection.recv(1, socket.MSG_PEEK):
                            return  # the client went away
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_DELETE(self):
                rec = self.record()
                if front.args.stateless:
                    self.reply(405, "", "text/plain")
                    return
                sess = self.session(rec)
                if sess is None:
                    return
                with front.lock:
                    front.sessions.pop(sess.id, None)
                sess.gone = True
                self.reply(200, b"", "text/plain")

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # A client that went away mid-answer: logged, not a traceback.
                front.log({"event": "handler-error", "error": repr(sys.exc_info()[1])})

        httpd = Quiet(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        sys.stdout.write("PORT %d\n" % httpd.server_address[1])
        sys.stdout.flush()
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        # Stops when stdin closes (the test's end).
        sys.stdin.buffer.read()
        self.log({"event": "stdin-eof"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fault", action="append")
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--version")
    ap.add_argument("--name", default="fixture")
    ap.add_argument("--log")
    ap.add_argument("--long-line-bytes", type=int, default=2 << 20)
    ap.add_argument("--flood-lines", type=int, default=10000,
                    help="--fault flood: non-JSON lines before each tools/call answer")
    ap.add_argument("--http", action="store_true",
                    help="Streamable HTTP on 127.0.0.1 (prints PORT N), not stdio")
    ap.add_argument("--stateless", action="store_true", help="--http: no session ids")
    ap.add_argument("--json-response", action="store_true",
                    help="--http: answer requests with JSON bodies, not SSE")
    ap.add_argument("--expire-after", type=int, default=0,
                    help="--http: the first session is forgotten after N POSTs")
    ap.add_argument("--retry-ms", type=int, help="--http: retry: in the priming events")
    ap.add_argument("--cuts", type=int, default=1,
                    help="--http with --fault sse-cut: connections cut per answer")
    args = ap.parse_args()
    server = Server(args)
    if args.http:
        server.log({"event": "start", "pid": os.getpid(), "env": dict(os.environ),
                    "cwd": os.getcwd()})
        server.http = HttpFront(server, args)
        server.http.serve()
    else:
        server.run()


if __name__ == "__main__":
    main()

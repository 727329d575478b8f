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
Options: --page-size N paginates tools/list (opaque cursors); --version V
answers initialize with protocol version V (default: the client's);
--name N is serverInfo.name.
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time

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
        self.write_line(json.dumps(msg, separators=(",", ":")))

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
        return tools

    def call(self, id_, params):
        name = params.get("name")
        a = params.get("arguments") or {}
        token = (params.get("_meta") or {}).get("progressToken")
        if "long-line" in self.faults:
            self.write_line(json.dumps("y" * self.args.long_line_bytes))

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
            self.result(id_, {"content": [
                {"type": "text", "text": "before"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
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
                threading.Thread(target=self.list_after_asking, args=(id_, params),
                                 daemon=True).start()
                return
            self.answer_list(id_, params)
        elif method == "tools/call":
            threading.Thread(target=self.call, args=(id_, params), daemon=True).start()
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
            return
        cursor = params.get("cursor")
        start = int(base64.b64decode(cursor).decode()[5:]) if cursor else 0
        page = {"tools": tools[start:start + size]}
        if start + size < len(tools):
            page["nextCursor"] = base64.b64encode(("page:%d" % (start + size)).encode()).decode()
        self.result(id_, page)

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fault", action="append")
    ap.add_argument("--page-size", type=int, default=0)
    ap.add_argument("--version")
    ap.add_argument("--name", default="fixture")
    ap.add_argument("--log")
    ap.add_argument("--long-line-bytes", type=int, default=2 << 20)
    Server(ap.parse_args()).run()


if __name__ == "__main__":
    main()

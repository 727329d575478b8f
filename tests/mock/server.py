#!/usr/bin/env python3
"""server.py -- a scriptable mock of an OpenAI-compatible Chat Completions server.

Integration tests point agentd at this server instead of a real provider. A
script is a list of responses; the i-th request to any path ending in
/chat/completions gets the i-th response, whatever connection it arrives on.
Responses can stream Server-Sent Events, send a plain body, split the bytes
into small writes, cut the connection or stall after N bytes, so tests can
reproduce the awkward things real networks and providers do.

Data flow: a handler thread reads one request fully (Content-Length or chunked
request bodies), records it (in memory, and as one JSON line in --log, flushed
before any response byte is sent), takes the next scripted response under a
lock, and writes it. Request records: {"n", "method", "path", "headers" (lower-case
names), "body" (raw text), "json" (parsed body or null), "peer" (client port)}.

Framing (this is what "chunk" relies on, so every write is a real HTTP chunk or
a plain write the client must reassemble):
  - "sse" responses use Transfer-Encoding: chunked, one HTTP chunk per event,
    or one per "chunk"-sized piece; keep-alive continues after the last chunk.
  - "body" responses use Content-Length (the full length, even when cut).
  - "framing": "chunked" | "length" | "close" overrides either default;
    "close" sends Connection: close and ends the body by closing.
close_after / hang_after / reset_after count payload bytes (not chunk framing bytes); headers
are always sent. "delay_ms" sleeps between writes (for slow-stream tests only).
"reset_after": N sends N payload bytes and then a TCP RST (SO_LINGER 0, close).
Fault modes: "pad_bytes": N sends N filler bytes ("x") after the scripted
payload, generated in 64 KiB writes (huge lines without a huge script);
"echo_key": true replaces every "%KEY%" in the payload with the bearer
token of the request (a server that echoes the API key back).
A script {"responses": [...], "cycle": true} serves its responses round and
round instead of answering 500 after the last (soak runs). A script with
"by_turn": true picks each response by the request's content instead of a
counter: the number of assistant messages after the request's last user
message (0 for a fresh prompt, 1 after one tool round, ...), so a request
sent again (a worker that died and a job run again) gets the same answer,
and many conversations share one script. "echo_prompt": true in a response
replaces every %PROMPT% in the strings of its payload with the text of the
request's last user message, JSON-escaped without quotes (right inside a
JSON text such as tool-call arguments). A script
{"routes": {KEY: [...], ...}} serves many conversations at once: a request
whose first user message is KEY gets the next response of KEY's list.
String bodies and {"raw": ...} events are encoded as UTF-8 with surrogateescape,
so the JSON string "\\udcff" sends the single byte 0xff (invalid UTF-8 tests).

Run as a program: prints "PORT <n>" on stdout once listening; stops cleanly on
SIGTERM/SIGINT, or when stdin closes with --exit-on-stdin-eof. Import it: use
MockServer(script).start() ... .stop() (also a context manager).
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 64 << 20
_DISCONNECT = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def _compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _text_bytes(s):
    return s.encode("utf-8", "surrogateescape")


def encode_event(e):
    """One scripted SSE event as the bytes sent on the wire."""
    if e == "[DONE]":
        return b"data: [DONE]\n\n"
    if isinstance(e, dict) and list(e) == ["raw"]:
        return _text_bytes(e["raw"])
    return b"data: " + _text_bytes(_compact(e)) + b"\n\n"


def _error_body(msg):
    return {"error": {"message": msg, "type": "mock_error"}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentd-mock/1"

    def setup(self):
        super().setup()
        # Many small writes (one per event): without this, Nagle's algorithm
        # and the client's delayed ACK stall each response by ~40 ms.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.mock._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.mock._track(self.connection, False)

    def log_message(self, fmt, *args):
        if self.server.mock.verbose:
            sys.stderr.write("mock: %s\n" % (fmt % args))

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return data
                if len(data) + size > MAX_BODY:
                    raise ValueError("request body too large")
                data += self.rfile.read(size)
                self.rfile.readline(1024)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n)

    def _dispatch(self):
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = urlsplit(self.path).path
        if path == "/_mock/requests":
            resp = {"body": self.server.mock.requests}
        else:
            resp = self.server.mock._record(self, path, raw)
        try:
            self._respond(resp)
        except _DISCONNECT:
            self.close_connection = True
            self._client_closed()

    def _write(self, data, chunked):
        if chunked:
            if data:  # an empty HTTP chunk would end the body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)

    def _respond(self, r):
        if "sse" in r:
            pieces = [encode_event(e) for e in r["sse"]]
            ctype, framing = "text/event-stream", "chunked"
        else:
            body = r.get("body", "")
            body = _text_bytes(body) if isinstance(body, str) else _text_bytes(_compact(body))
            pieces, ctype, framing = [body], "application/json", "length"
        if r.get("echo_key"):
            auth = self.headers.get("Authorization", "")
            token = _text_bytes(auth.split(" ", 1)[1] if " " in auth else auth)
            pieces = [p.replace(b"%KEY%", token) for p in pieces]

        pad = int(r.get("pad_bytes", 0))
        ctype = r.get("content_type", ctype)
        framing = r.get("framing", framing)
        if r.get("chunk"):
            data, n = b"".join(pieces), int(r["chunk"])
            pieces = [data[i:i + n] for i in range(0, len(data), n)]
        total = sum(len(p) for p in pieces) + pad
        limit = r.get("close_after", r.get("hang_after", r.get("reset_after")))
        if limit is not None:
            cut, left = [], int(limit)
            for p in pieces:
                if left <= 0:
                    break
                cut.append(p[:left])
                left -= len(cut[-1])
            pieces = cut

        self.send_response(int(r.get("status", 200)))
        if ctype:  # "content_type": null sends none
            self.send_header("Content-Type", ctype)
        for k, v in (r.get("headers") or {}).items():
            self.send_header(k, str(v))
        if "retry_after" in r:
            self.send_header("Retry-After", str(r["retry_after"]))
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "length":
            self.send_header("Content-Length", str(total))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

        delay = r.get("delay_ms", 0) / 1000.0
        for i, p in enumerate(pieces):
            if delay and i:
                time.sleep(delay)
            self._write(p, framing == "chunked")
        while pad > 0:
            n = min(pad, 65536)
            self._write(b"x" * n, framing == "chunked")
            pad -= n
        if "close_after" in r:
            self._drop()
        elif "reset_after" in r:
            self._reset()
        elif "hang_after" in r:
            self._hang()
            self._drop()
        elif framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self):
        """Aborts the connection: with a zero linger time, close() sends a
        TCP RST instead of a FIN, so the client's next read fails with
        ECONNRESET ("Connection reset by peer")."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _client_closed(self):
        """The client went away before the response was complete: its
        record says so (client_closed), for tests of cancellation."""
        rec = getattr(self, "_rec", None)
        if rec is not None:
            with self.server.mock._lock:
                rec["client_closed"] = True

    def _hang(self):
        """Sends nothing until the client closes or the server stops."""
        stop_r = self.server.mock._stop_r
        while True:
            ready, _, _ = select.select([self.connection, stop_r], [], [])
            if stop_r in ready:
                return
            try:
                if not self.connection.recv(65536):
                    self._client_closed()
                    return
            except OSError:
                self._client_closed()
                return


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # many conversations connect at once

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECT + (socket.timeout,)):
            return  # the client went away: expected in cut/cancel tests
        sys.stderr.write("mock: error serving %s: %r\n" % (client_address, exc))


class MockServer:
    """The mock, running in a background thread. script: {"responses": [...]}
    or a bare list of responses."""

    def __init__(self, script=None, port=0, host="127.0.0.1", log_path=None, verbose=False):
        self.cycle = False
        self.by_turn = False
        self.routes = None
        if isinstance(script, dict):
            self.cycle = bool(script.get("cycle"))
            self.by_turn = bool(script.get("by_turn"))
            if "routes" in script:
                self.routes = {k: list(v) for k, v in script["routes"].items()}
                self._route_count = {}
            script = script.get("responses", [])
        self.responses = list(script or [])
        self.verbose = verbose
        self._lock = threading.Lock()
        self._requests = []
        self._chat_count = 0
        self._conns = set()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        self._stop_r, self._stop_w = os.pipe()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.mock = self
        self._thread = None
        self.port = self._httpd.server_address[1]
        self.base_url = "http://%s:%d/v1" % (host, self.port)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is None:
            return
        self._httpd.shutdown()
        os.write(self._stop_w, b"x")  # wakes every hanging response
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # ends idle keep-alive connections too
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join()
        self._thread = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record(self, h, path, raw):
        """Stores one request and returns the response to send."""
        text = raw.decode("utf-8", "surrogateescape")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        headers = {}
        for k, v in h.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        with self._lock:
            rec = {"n": len(self._requests) + 1, "method": h.command, "path": h.path,
                   "headers": headers, "body": text, "json": parsed,
                   "peer": h.client_address[1]}
            self._requests.append(rec)
            h._rec = rec
            resp = self._respond(path, parsed, rec)
            if self._log:  # after _respond: a routed record has its route then
                self._log.write(json.dumps(rec) + "\n")
                self._log.flush()
            return resp

    def _respond(self, path, parsed, rec):
        """The response to a recorded request (called under the lock)."""
        if not path.endswith("/chat/completions"):
            return {"status": 404, "body": _error_body("mock: no route for " + path)}
        self._chat_count += 1
        n = self._chat_count
        if self.routes is not None:
            return self._with_prompt(self._route(parsed, rec), parsed)
        if self.by_turn:
            return self._with_prompt(self._turn(self.responses, parsed, rec), parsed)
        if self.cycle and self.responses:
            return self._with_prompt(self.responses[(n - 1) % len(self.responses)], parsed)
        if n > len(self.responses):
            return {"status": 500,
                    "body": _error_body("mock: no scripted response for request %d" % n)}
        return self._with_prompt(self.responses[n - 1], parsed)

    @staticmethod
    def _messages(body):
        ms = body.get("messages", []) if isinstance(body, dict) else []
        return [m for m in ms if isinstance(m, dict)]

    def _turn(self, script, body, rec):
        """by_turn: the response for the request's turn, the number of
        assistant messages after its last user message."""
        ms = self._messages(body)
        last_user = max([i for i, m in enumerate(ms) if m.get("role") == "user"], default=-1)
        turn = sum(1 for m in ms[last_user + 1:] if m.get("role") == "assistant")
        rec["turn"] = turn
        if turn >= len(script):
            return {"status": 500, "body": _error_body("mock: no scripted response for turn %d"
                                                       % turn)}
        return script[turn]

    def _with_prompt(self, resp, body):
        """The response, with the request's last user message attached for
        echo_prompt (a copy: the script itself stays as it is)."""
        if not isinstance(resp, dict) or not resp.get("echo_prompt"):
            return resp
        users = [m.get("content") for m in self._messages(body) if m.get("role") == "user"]
        text = users[-1] if users and isinstance(users[-1], str) else ""
        esc = json.dumps(text, ensure_ascii=False)[1:-1]

        def sub(v):
            if isinstance(v, str):
                return v.replace("%PROMPT%", esc)
            if isinstance(v, list):
                return [sub(x) for x in v]
            if isinstance(v, dict):
                return {k: sub(x) for k, x in v.items()}
            return v
        return {k: (sub(v) if k in ("sse", "body") else v) for k, v in resp.items()}

    def _route(self, body, rec):
        """Routed scripts (called under the lock): many conversations share
        one server, each with its own list of responses, keyed by the text
        of the request's first user message. The request record gets the
        key and the request's number within its conversation."""
        key = None
        for m in (body or {}).get("messages", []) if isinstance(body, dict) else []:
            if isinstance(m, dict) and m.get("role") == "user":
                key = m.get("content")
                break
        if not isinstance(key, str) or key not in self.routes:
            return {"status": 500, "body": _error_body("mock: no route for the first user "
                                                       "message %r" % (key,))}
        n = self._route_count.get(key, 0) + 1
        self._route_count[key] = n
        rec["route"], rec["route_n"] = key, n
        script = self.routes[key]
        if self.by_turn:
            return self._turn(script, body, rec)
        if n > len(script):
            return {"status": 500, "body": _error_body(
                "mock: no scripted response %d for route %r" % (n, key))}
        return script[n - 1]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Scriptable mock OpenAI-compatible server")
    ap.add_argument("--script", help="JSON file {\"responses\": [...]}")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="log each request on stderr")
    args = ap.parse_args(argv)
    script = None
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = json.load(f)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server = MockServer(script, port=args.port, log_path=args.log, verbose=args.verbose).start()
    sys.stdout.write("PORT %d\n" % server.port)
    sys.stdout.flush()
    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while os.read(0, 65536):
                    pass
            except OSError:
                pass
            done.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    while not done.wait(1.0):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

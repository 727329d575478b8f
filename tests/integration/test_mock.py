#!/usr/bin/env python3
"""test_mock.py -- tests of the mock provider itself (tests/mock/server.py).

The mock is the ground truth for every agentd integration test, so its wire
format is checked here with http.client and raw sockets: SSE framing, HTTP
chunking, cuts and stalls, scripted order, request records and logs,
keep-alive, and the command-line mode (PORT line, SIGTERM, stdin EOF).
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import case, contains, eq, main, mock, ok, raises, script  # noqa: E402

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mock", "server.py")
S = script


def post(m, body=None, path="/v1/chat/completions", headers=None, conn=None):
    """POSTs JSON and returns (response, body bytes)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    data = json.dumps(body if body is not None else {"model": "x"})
    c.request("POST", path, data, dict({"Content-Type": "application/json"}, **(headers or {})))
    r = c.getresponse()
    return r, r.read()


class Raw:
    """A raw HTTP/1.1 client that exposes the wire: chunk sizes, cuts, stalls."""

    def __init__(self, port, body=b'{"model":"x"}', path="/v1/chat/completions", timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, v in (ln.split(":", 1) for ln in lines[1:])}

    def _more(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _take(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def chunks(self):
        """Reads a chunked body: (list of chunk payloads, True if it ended
        with the zero chunk, False if the connection was closed first)."""
        out = []
        try:
            while True:
                while b"\r\n" not in self.buf:
                    self._more()
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line, 16)
                if size == 0:
                    eq(self._take(2), b"\r\n", "end of chunked body")
                    return out, True
                out.append(self._take(size))
                eq(self._take(2), b"\r\n", "chunk trailer")
        except EOFError:
            return out, False

    def read_to_eof(self):
        try:
            while True:
                self._more()
        except EOFError:
            return self.buf

    def close(self):
        self.s.close()


def sse_events(body):
    eq(body.endswith(b"\n\n"), True, "body ends with a blank line")
    return [blk[len(b"data: "):].decode() for blk in body.split(b"\n\n")[:-1]]


@case
def sse_framing_and_content_type():
    resp = S.text_stream("Hello brave world", usage=True)
    with mock(S.script(resp)) as m:
        r, body = post(m)
        eq(r.status, 200, "status")
        eq(r.getheader("Content-Type"), "text/event-stream", "content type")
        eq(r.getheader("Transfer-Encoding"), "chunked", "framing")
    events = sse_events(body)
    eq(events[-1], "[DONE]", "last event")
    chunks = [json.loads(e) for e in events[:-1]]
    eq("".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]),
       "Hello brave world", "streamed text")
    eq(chunks[0]["choices"][0]["delta"]["role"], "assistant", "role in first delta")
    eq(chunks[0]["object"], "chat.completion.chunk", "object")
    eq(chunks[-2]["choices"][0]["finish_reason"], "stop", "finish chunk")
    eq(chunks[-1]["choices"], [], "usage chunk has no choices")
    eq(chunks[-1]["usage"]["total_tokens"], 15, "usage")
    ok(b"data: {\"id\":" in body, "compact JSON after 'data: '")


@case
def one_http_chunk_per_event_and_raw_verbatim():
    events = [{"a": 1}, {"raw": ": keepalive comment\r\n\r\n"}, {"raw": "data: \udcff\n\n"},
              "[DONE]"]
    with mock([{"sse": events}]) as m:
        raw = Raw(m.port)
        chunks, complete = raw.chunks()
        raw.close()
    ok(complete, "body ended with the zero chunk")
    eq(chunks, [b'data: {"a":1}\n\n', b": keepalive comment\r\n\r\n", b"data: \xff\n\n",
                b"data: [DONE]\n\n"], "chunks on the wire")


@case
def chunk_option_splits_writes():
    resp = S.text_stream("caf\u00e9 \u00fcber na\u00efve", pieces=2, chunk=5)
    whole = b"".join(__import__("server").encode_event(e) for e in resp["sse"])
    with mock([resp]) as m:
        raw = Raw(m.port)
        chunks, complete = raw.chunks()
        raw.close()
    ok(complete, "complete body")
    eq(b"".join(chunks), whole, "reassembled body")
    eq([len(c) for c in chunks[:-1]], [5] * (len(chunks) - 1), "chunk sizes")
    ok(0 < len(chunks[-1]) <= 5, "last chunk size")


@case
def body_response_length_framed():
    msg = S.message("hi there")
    with mock([msg, {"body": "not json {", "content_type": "text/plain", "chunk": 3}]) as m:
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
        r, body = post(m, conn=conn)
        eq(r.getheader("Content-Type"), "application/json", "content type")
        eq(r.getheader("Content-Length"), str(len(body)), "content length")
        eq(json.loads(body)["choices"][0]["message"]["content"], "hi there", "message")
        r, body = post(m, conn=conn)
        eq(r.getheader("Content-Type"), "text/plain", "content type override")
        eq(body, b"not json {", "verbatim string body")


@case
def close_after_cuts_stream():
    resp = S.text_stream("one two three four", close_after=30)
    with mock([resp]) as m:
        raw = Raw(m.port)
        chunks, complete = raw.chunks()
        raw.close()
        ok(not complete, "stream must not end with the zero chunk")
        eq(sum(len(c) for c in chunks), 30, "bytes before the cut")
        # http.client sees the cut as an incomplete read
        with mock([dict(S.message("x"), close_after=10)]) as m2:
            c = http.client.HTTPConnection("127.0.0.1", m2.port, timeout=10)
            c.request("POST", "/v1/chat/completions", "{}")
            r = c.getresponse()
            raises(http.client.IncompleteRead, r.read)


@case
def reset_after_sends_bytes_then_a_reset():
    resp = S.text_stream("one two three four", reset_after=30)
    with mock([resp, S.text_stream("next")]) as m:
        raw = Raw(m.port)
        got = raw.buf
        try:
            while True:
                d = raw.s.recv(65536)
                if not d:
                    break
                got += d
            err = None
        except ConnectionResetError as e:
            err = e
        raw.close()
        ok(err is not None, "the read ends with ECONNRESET, not an orderly close")
        eq(got[:2], b"1e", "the first 30 (0x1e) payload bytes came before the reset")
        r, body = post(m)  # the server still serves others
        contains(body.decode(), '"content":"next"', "second response")


@case
def hang_after_stalls_until_client_closes():
    with mock([S.text_stream("a b c", hang_after=10), S.text_stream("next")]) as m:
        raw = Raw(m.port)
        eq(raw._take(15), b"a\r\ndata: {\"id\r\n", "one 10-byte chunk")
        raw.s.settimeout(0.3)
        raises(socket.timeout, raw._more)  # nothing more is sent
        raw.close()
        r, body = post(m)  # the server still serves others
        contains(body.decode(), '"content":"next"', "second response")


@case
def hang_ends_when_server_stops():
    m = mock([{"sse": [{"x": 1}], "hang_after": 0}])
    srv = m.__enter__()
    raw = Raw(srv.port)
    eq(raw.status, 200, "headers are sent before the stall")
    t0 = time.monotonic()
    m.__exit__(None, None, None)
    ok(time.monotonic() - t0 < 5, "stop() returns promptly with a hanging response")
    eq(raw.read_to_eof(), b"", "connection closed by stop()")
    raw.close()


@case
def scripted_order_and_500_beyond_script():
    with mock(S.script(S.message("first"), S.error(429, "slow down", retry_after=2))) as m:
        r, body = post(m)
        eq(json.loads(body)["choices"][0]["message"]["content"], "first", "response 1")
        r, body = post(m, path="/other/chat/completions?x=1")
        eq(r.status, 429, "response 2 status")
        eq(r.getheader("Retry-After"), "2", "Retry-After")
        r, body = post(m)
        eq(r.status, 500, "beyond the script")
        eq(json.loads(body)["error"]["message"], "mock: no scripted response for request 3",
           "error message")
        r, body = post(m, path="/v1/models")
        eq(r.status, 404, "unknown path")
        r, body = post(m)
        contains(body.decode(), "request 4", "unknown paths do not consume the script")


@case
def routes_serve_each_conversation_its_own_script():
    def chat(*users):
        return {"model": "x", "messages": [{"role": "system", "content": "sys"}] +
                [{"role": "user", "content": u} for u in users]}
    routes = {"routes": {"a": [S.message("a1"), S.message("a2")], "b": [S.message("b1")]}}
    with mock(routes) as m:
        out = []
        for body in (chat("a"), chat("b"), chat("a", "later"), chat("b"), chat("zz")):
            r, data = post(m, body)
            j = json.loads(data)
            out.append((r.status, j["choices"][0]["message"]["content"] if r.status == 200
                        else j["error"]["message"]))
        eq(out[:3], [(200, "a1"), (200, "b1"), (200, "a2")], "each route in its own order")
        eq(out[3][0], 500, "past the end of route b")
        contains(out[3][1], "no scripted response 2 for route 'b'", "message")
        eq(out[4][0], 500, "unknown route")
        contains(out[4][1], "no route for the first user message 'zz'", "message")
        eq([(q["route"], q["route_n"]) for q in m.requests[:3]], [("a", 1), ("b", 1), ("a", 2)],
           "records name the route")


@case
def status_and_headers():
    with mock([{"status": 503, "headers": {"X-Test": "yes"}, "body": {"error": "busy"}}]) as m:
        r, body = post(m)
        eq(r.status, 503, "status")
        eq(r.getheader("X-Test"), "yes", "custom header")
        eq(json.loads(body), {"error": "busy"}, "body")


@case
def requests_are_recorded(tmp):
    log = os.path.join(tmp, "log.jsonl")
    with mock([S.message("a"), S.message("b")], log_path=log) as m:
        post(m, {"model": "m1", "messages": []}, headers={"Authorization": "Bearer k"})
        c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
        c.request("POST", "/v1/chat/completions", body=iter([b"not ", b"json"]),
                  encode_chunked=True)  # chunked request body
        c.getresponse().read()
        reqs = m.requests
        c.request("GET", "/_mock/requests")
        listed = json.loads(c.getresponse().read())
    eq(len(reqs), 2, "request count")
    eq(reqs[0]["method"], "POST", "method")
    eq(reqs[0]["path"], "/v1/chat/completions", "path")
    eq(reqs[0]["headers"]["authorization"], "Bearer k", "lower-case header names")
    eq(reqs[0]["json"], {"model": "m1", "messages": []}, "parsed body")
    eq(reqs[1]["body"], "not json", "raw body")
    eq(reqs[1]["json"], None, "non-JSON body")
    eq(listed, reqs, "GET /_mock/requests")
    with open(log) as f:
        eq([json.loads(line) for line in f], reqs, "--log lines")


@case
def keep_alive_across_two_requests():
    with mock([S.text_stream("one"), S.message("two")]) as m:
        c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
        r1, b1 = post(m, conn=c)
        s1 = c.sock
        r2, b2 = post(m, conn=c)
        ok(s1 is not None and c.sock is s1, "same client socket")
        reqs = m.requests
    eq(reqs[0]["peer"], reqs[1]["peer"], "same connection seen by the server")
    contains(b1.decode(), "[DONE]", "first body complete")
    eq(json.loads(b2)["choices"][0]["message"]["content"], "two", "second body")


@case
def concurrent_connections():
    with mock([{"sse": [], "hang_after": 0}, S.message("free")]) as m:
        stalled = Raw(m.port)
        r, body = post(m)
        eq(json.loads(body)["choices"][0]["message"]["content"], "free", "served meanwhile")
        stalled.close()


@case
def tool_call_stream_shapes():
    calls = [("call_1", "add", '{"a": 2, "b": 3}'), ("call_2", "mul", '{"a": 4}')]
    resp = S.tool_call_stream(calls, split_args=4, id_mode="every", index_base=1)
    deltas = [e["choices"][0]["delta"] for e in resp["sse"][:-1] if e["choices"]]
    tcs = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    eq([tc["index"] for tc in tcs if "function" in tc and "name" in tc["function"]], [1, 2],
       "indices")
    ok(all(tc["id"] in ("call_1", "call_2") for tc in tcs), "id in every delta")
    args1 = "".join(tc["function"]["arguments"] for tc in tcs if tc["index"] == 1)
    eq(args1, calls[0][2], "argument pieces")
    ok(all(len(tc["function"]["arguments"]) <= 4 for tc in tcs), "split_args")
    eq(resp["sse"][-2]["choices"][0]["finish_reason"], "tool_calls", "finish")
    none = S.tool_call_stream(calls, id_mode="none", same_index=True)
    tcs = [e["choices"][0]["delta"]["tool_calls"][0] for e in none["sse"][:-2]]
    eq([("id" in tc, tc["index"], tc["function"]["arguments"]) for tc in tcs],
       [(False, 0, calls[0][2]), (False, 0, calls[1][2])], "one delta per call, no ids")


@case
def by_turn_answers_by_the_conversation_not_a_counter():
    script_ = {"by_turn": True, "responses": [
        {"body": {"turn": 0, "args": "{\"tag\":\"%PROMPT%/c1\"}"}, "echo_prompt": True},
        {"body": {"turn": 1}}]}
    user = {"role": "user", "content": 'job "7"'}
    with mock(script_) as m:
        for _ in range(2):  # the same request twice: the same answer
            _, b = post(m, {"messages": [user]})
            eq(json.loads(json.loads(b)["args"]), {"tag": 'job "7"/c1'}, "turn 0")
        tool_round = [user, {"role": "assistant", "content": None}, {"role": "tool", "content": "x"}]
        _, b = post(m, {"messages": tool_round})
        eq(json.loads(b), {"turn": 1}, "after one assistant message")
        # A new prompt in the same conversation starts over.
        _, b = post(m, {"messages": tool_round + [{"role": "assistant", "content": "a"},
                                                 {"role": "user", "content": "next"}]})
        eq(json.loads(json.loads(b)["args"]), {"tag": "next/c1"}, "turn 0 of the next prompt")
        r, b = post(m, {"messages": tool_round + [{"role": "assistant", "content": "a"}]})
        eq(r.status, 500, "past the script")
        contains(b.decode(), "no scripted response for turn 2", "says so")
        eq([x.get("turn") for x in m.requests], [0, 0, 1, 0, 2], "records carry the turn")


@case
def write_config_emits_valid_toml(tmp):
    import tomllib
    import lib
    path = lib.write_config(
        tmp, "http://127.0.0.1:1/v1", headers={"X-Title": 'say "hi"\n'},
        extra={"temperature": 0.5, "provider": {"order": ["a", "b"]}, "n": 1, "p": True},
        agent={"system_prompt": "be\tbrief \u00e9\x01", "max_steps": 4},
        plugins_dir=tmp, plugin_config={"web.fetch": {"allow": ["x"], "limits": {}}},
        raw_append="# end\n")
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    eq(doc["provider"]["api_key_env"], "AGENTD_TEST_KEY", "api_key_env")
    eq(doc["provider"]["max_retries"], 0, "max_retries")
    eq(doc["provider"]["stream"], True, "stream")
    eq(doc["provider"]["headers"], {"X-Title": 'say "hi"\n'}, "headers")
    eq(doc["provider"]["extra"]["provider"], {"order": ["a", "b"]}, "inline table")
    eq(doc["agent"]["system_prompt"], "be\tbrief \u00e9\x01", "escaped string")
    eq(doc["plugins"], {"dir": tmp, "config": {"web.fetch": {"allow": ["x"], "limits": {}}}},
       "plugins")
    saved = lib.PLUGINS_DIR, lib.TEST_PLUGINS_DIR
    lib.PLUGINS_DIR = lib.TEST_PLUGINS_DIR = tmp
    try:
        open(os.path.join(tmp, "echo.so"), "w").close()
        d = lib.make_plugin_dir(tmp, ["echo"], dirname="pd")
        eq(os.listdir(d), ["echo.so"], "plugin dir")
        contains(str(raises(AssertionError, lib.make_plugin_dir, tmp, ["nope"])), "nope.so",
                 "missing plugin message")
    finally:
        lib.PLUGINS_DIR, lib.TEST_PLUGINS_DIR = saved


def start_cli(*args):
    p = subprocess.Popen([sys.executable, SERVER] + list(args), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    ok(line.startswith("PORT "), "first stdout line %r is PORT <n>" % line)
    return p, int(line.split()[1])


@case
def cli_port_log_and_sigterm(tmp):
    sfile, log = os.path.join(tmp, "s.json"), os.path.join(tmp, "log.jsonl")
    big = {"body": "x" * (4 << 20), "chunk": 1000}
    with open(sfile, "w") as f:
        json.dump(S.script(S.text_stream("hi"), big), f)
    p, port = start_cli("--script", sfile, "--log", log)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/v1/chat/completions", '{"q":1}')
        contains(c.getresponse().read().decode(), '"content":"hi"', "scripted response")
        with open(log) as f:
            eq(json.loads(f.readline())["json"], {"q": 1}, "log line")
        raw = Raw(port)  # disconnect in the middle of a 4 MB body
        raw.close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/v1/chat/completions", "{}")
        eq(c.getresponse().status, 500, "server alive after the disconnect")
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
    eq(p.returncode, 0, "exit status after SIGTERM")
    eq(err.decode(), "", "stderr (no traceback on client disconnect)")


@case
def cli_exits_on_stdin_eof():
    p, port = start_cli("--exit-on-stdin-eof")
    p.stdin.close()
    try:
        eq(p.wait(timeout=10), 0, "exit status")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    p.stdout.close()
    eq(p.stderr.read(), b"", "stderr")
    p.stderr.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_serve.py -- agentd serve over real sockets, with the mock provider
behind it: the Responses API and Chat Completions, conversations continued
by id (also after kill -9), client function tools, background responses,
and each fault: slow headers, oversized heads and bodies, the token, the
smuggling shapes, a client that goes away mid-stream (the provider transfer
and the tools are cancelled, the conversation stays valid), a client that
reads too slowly, 409, 429 and the SIGTERM drain.
"""

import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time

import lib
from lib import case, contains, eq, ok, script
from servelib import TOKEN, Serve, raw_exchange, sse_events, wait_for

def tool_round(calls, text=None):
    return script.tool_call_stream(calls, text=text)


def final_text(resp_obj):
    texts = [p["text"] for it in resp_obj["output"] if it["type"] == "message"
             for p in it["content"] if p["type"] == "output_text"]
    return texts[-1] if texts else None


def messages_of(req):
    return [(m["role"], m.get("content"), m.get("tool_call_id")) for m in req["json"]["messages"]]


def stored_status(db, rid):
    with sqlite3.connect(db) as d:
        row = d.execute("SELECT status FROM responses WHERE id = ?", (rid,)).fetchone()
    return row[0] if row else None


def stored_messages(db, conv=None):
    with sqlite3.connect(db) as d:
        if conv is None:
            conv = d.execute("SELECT conv FROM responses ORDER BY created DESC LIMIT 1").fetchone()[0]
        return [json.loads(r[0]) for r in
                d.execute("SELECT json FROM messages WHERE conv = ? ORDER BY idx", (conv,))]


# ---- the API ---------------------------------------------------------------

@case
def responses_stream_whole_get_and_continue(tmp):
    sc = script.script(
        tool_round([("call_1", "add", '{"a": 2, "b": 3}')], text="Adding."),
        script.text_stream("The sum is 5.", usage=True),
        script.text_stream("Still 5."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["add"]).start()
        try:
            eq(s.call("GET", "/health")[0], 200, "health")
            st, _, models = s.call("GET", "/v1/models")
            eq([x["id"] for x in models["data"]], ["agentd"], "models")
            c, r = s.stream("/v1/responses", {"input": "add 2 and 3", "stream": True})
            eq(r.status, 200, "status")
            contains(r.getheader("Content-Type"), "text/event-stream")
            evs = sse_events(r)
            c.close()
            names = [n for n, _ in evs]
            eq(names[:2], ["response.created", "response.in_progress"], "first events")
            eq(names[-1], "response.completed", "last event")
            eq([e["sequence_number"] for _, e in evs], list(range(len(evs))), "sequence numbers")
            for n, e in evs:
                eq(e["type"], n, "event type matches its name")
            items = [e["item"] for n, e in evs if n == "response.output_item.done"]
            eq([i["type"] for i in items], ["message", "agentd:tool_call", "message"], "items")
            eq(items[1]["output"], "5", "the tool's result")
            eq(items[1]["name"], "add", "tool name")
            ok(not any(i["type"] == "function_call" for i in items), "no function_call items")
            done = evs[-1][1]["response"]
            eq(done["status"], "completed", "status")
            eq(final_text(done), "The sum is 5.", "answer")
            eq(done["usage"]["input_tokens"], 10, "usage")
            rid = done["id"]
            # The object, whole.
            st, _, obj = s.call("GET", "/v1/responses/" + rid)
            eq(st, 200, "GET status")
            eq(final_text(obj), "The sum is 5.", "GET answer")
            # Continued by id, answered whole.
            st, _, obj2 = s.call("POST", "/v1/responses",
                                 {"input": "again?", "previous_response_id": rid})
            eq(st, 200, "continue status")
            eq(final_text(obj2), "Still 5.", "second answer")
            eq(obj2["previous_response_id"], rid, "previous_response_id")
            eq(messages_of(m.requests[2]),
               [("user", "add 2 and 3", None), ("assistant", "Adding.", None),
                ("tool", "5", "call_1"), ("assistant", "The sum is 5.", None),
                ("user", "again?", None)], "the history sent")
            # A replay of the stored stream.
            c, r = s.stream("/v1/responses/%s?stream=true&starting_after=3" % rid, method="GET")
            rev = sse_events(r)
            c.close()
            ok(rev and rev[0][1]["sequence_number"] == 4, "replay starts after 3")
            eq(rev[-1][0], "response.completed", "replay ends")
        finally:
            eq(s.stop(), 0, "exit status after SIGTERM")


@case
def going_back_a_turn_forks_the_conversation(tmp):
    sc = script.script(script.text_stream("A."), script.text_stream("B."),
                       script.text_stream("C."), script.text_stream("D."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            a = s.call("POST", "/v1/responses", {"input": "one"})[2]
            b = s.call("POST", "/v1/responses", {"input": "two", "previous_response_id": a["id"]})[2]
            c = s.call("POST", "/v1/responses", {"input": "other", "previous_response_id": a["id"]})[2]
            eq(final_text(c), "C.", "the branch")
            eq([x[1] for x in messages_of(m.requests[2])], ["one", "A.", "other"],
               "the branch starts from the first turn")
            d = s.call("POST", "/v1/responses", {"input": "three", "previous_response_id": b["id"]})[2]
            eq(final_text(d), "D.", "the original goes on")
            eq([x[1] for x in messages_of(m.requests[3])], ["one", "A.", "two", "B.", "three"],
               "with its own history")
        finally:
            s.stop()


@case
def chat_completions_stream_and_whole(tmp):
    sc = script.script(
        tool_round([("call_1", "add", '{"a": 1, "b": 1}')]),
        script.text_stream("Two."),
        script.text_stream("Plain."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["add"]).start()
        try:
            c, r = s.stream("/v1/chat/completions",
                            {"model": "agentd", "stream": True,
                             "messages": [{"role": "user", "content": "1+1"}]})
            eq(r.status, 200, "status")
            evs = sse_events(r)
            c.close()
            ok(all(n is None for n, _ in evs), "no named events on chat completions")
            eq(evs[-1][1], "[DONE]", "ends with [DONE]")
            chunks = [e for _, e in evs[:-1]]
            ok(all(isinstance(ch.get("choices"), list) for ch in chunks), "every chunk has choices")
            text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks)
            eq(text, "Two.", "content")
            tool = [ch["agentd"] for ch in chunks if "agentd" in ch]
            eq([t["type"] for t in tool], ["tool_call", "tool_result"], "tool activity")
            eq(tool[1]["output"], "2", "tool result")
            eq(chunks[-1]["choices"][0]["finish_reason"], "stop", "finish")
            st, _, obj = s.call("POST", "/v1/chat/completions",
                                {"messages": [{"role": "system", "content": "S"},
                                              {"role": "user", "content": "q"}]})
            eq(st, 200, "whole status")
            eq(obj["choices"][0]["message"]["content"], "Plain.", "whole content")
            eq(messages_of(m.requests[2]), [("system", "S", None), ("user", "q", None)],
               "the client's history, its system message kept")
        finally:
            s.stop()


@case
def client_function_tools(tmp):
    tools = [{"type": "function", "name": "lookup", "description": "d",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    sc = script.script(
        tool_round([("call_9", "lookup", '{"q": "x"}')]),
        script.text_stream("Found it."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses", {"input": "look x up", "tools": tools})
            eq(st, 200, "status")
            eq(obj["status"], "completed", "completed with a call for the client")
            calls = [i for i in obj["output"] if i["type"] == "function_call"]
            eq(len(calls), 1, "one function_call")
            eq((calls[0]["call_id"], calls[0]["name"], calls[0]["arguments"]),
               ("call_9", "lookup", '{"q": "x"}'), "the call")
            sent = m.requests[0]["json"]["tools"]
            eq([t["function"]["name"] for t in sent], ["lookup"], "the client's tool offered")
            # The output is missing: refused.
            st, _, e = s.call("POST", "/v1/responses",
                              {"input": "and?", "previous_response_id": obj["id"]})
            eq(st, 400, "a new prompt without the output")
            contains(e["error"]["message"], "call_9")
            st, _, obj2 = s.call("POST", "/v1/responses",
                                 {"previous_response_id": obj["id"], "tools": tools,
                                  "input": [{"type": "function_call_output", "call_id": "call_9",
                                             "output": "forty-two"}]})
            eq(st, 200, "continued with the output")
            eq(final_text(obj2), "Found it.", "answer")
            msgs = m.requests[1]["json"]["messages"]
            eq((msgs[-1]["role"], msgs[-1]["tool_call_id"], msgs[-1]["content"]),
               ("tool", "call_9", "forty-two"), "the client's output went to the model")
        finally:
            s.stop()


@case
def client_tools_stay_in_their_conversation(tmp):
    # The server's own tools are one list for every conversation; the tools a
    # client sends join it in that client's conversation only.
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    sc = script.script(script.text_stream("one"), script.text_stream("two"),
                       script.text_stream("three"))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["add", "multiply"]).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses", {"input": "a", "tools": tools})
            eq(st, 200, "with the client's tool")
            st, _, _ = s.call("POST", "/v1/responses", {"input": "b"})
            eq(st, 200, "without")
            st, _, _ = s.call("POST", "/v1/responses",
                              {"input": "c", "previous_response_id": obj["id"], "tools": tools})
            eq(st, 200, "the first goes on")
            offered = [[t["function"]["name"] for t in r["json"]["tools"]] for r in m.requests]
            eq(offered, [["add", "multiply", "lookup"], ["add", "multiply"],
                         ["add", "multiply", "lookup"]], "each conversation's tools")
        finally:
            s.stop()


@case
def own_and_client_calls_in_one_step_and_a_profile_tool_list(tmp):
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    sc = script.script(
        tool_round([("call_a", "add", '{"a": 1, "b": 2}'), ("call_l", "lookup", "{}"),
                    ("call_m", "multiply", '{"a": 2, "b": 2}')]),
        script.text_stream("All done."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["add", "multiply"],
                  profiles={"adder": {"tools": ["add"]}}).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses",
                                {"model": "adder", "input": "go", "tools": tools})
            eq(st, 200, "status")
            offered = [t["function"]["name"] for t in m.requests[0]["json"]["tools"]]
            eq(offered, ["add", "lookup"], "the profile's tools and the client's")
            own = {t["call_id"]: t for t in obj["agentd"]["tool_calls"]}
            eq(own["call_a"]["output"], "3", "agentd ran add")
            contains(own["call_m"]["output"], "not offered", "multiply is not the profile's")
            eq([i["call_id"] for i in obj["output"] if i["type"] == "function_call"], ["call_l"],
               "the client's call is left to the client")
            st, _, obj2 = s.call("POST", "/v1/responses",
                                 {"previous_response_id": obj["id"], "tools": tools,
                                  "input": [{"type": "function_call_output", "call_id": "call_l",
                                             "output": "found"}]})
            eq(st, 200, "continued")
            eq(final_text(obj2), "All done.", "answer")
            results = {mm["tool_call_id"]: mm["content"] for mm in m.requests[1]["json"]["messages"]
                       if mm["role"] == "tool"}
            eq(sorted(results), ["call_a", "call_l", "call_m"], "every call has its one result")
            eq(results["call_l"], "found", "the client's")
        finally:
            s.stop()


@case
def confirm_tools_are_denied_and_max_steps_is_incomplete(tmp):
    sc = script.script(
        tool_round([("call_c", "add", '{"a": 1, "b": 1}'), ("call_x", "multiply", '{"a": 1, "b": 1}')]),
        script.text_stream("Not allowed, then."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["add", "multiply"], agent={"max_steps": 2},
                  raw=lib.toml_table(["tools", "add"], {"confirm": True})).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses", {"input": "add"})
            eq(obj["status"], "completed", "status")
            calls = {c["call_id"]: c for c in obj["agentd"]["tool_calls"]}
            contains(calls["call_c"]["output"], "needs approval", "denied, nobody to ask")
            ok(calls["call_c"]["is_error"], "as an error result")
            eq(calls["call_x"]["output"], "1", "a tool without confirm runs")
            results = [mm for mm in m.requests[1]["json"]["messages"] if mm["role"] == "tool"]
            eq([mm["tool_call_id"] for mm in results], ["call_c", "call_x"], "the model was told")
        finally:
            s.stop()
    with lib.mock(script.script(tool_round([("call_1", "add", "{}")]),
                                tool_round([("call_2", "add", "{}")]))) as m:
        os.makedirs(os.path.join(tmp, "b"))
        s = Serve(os.path.join(tmp, "b"), m.base_url, plugins=["add"], agent={"max_steps": 2}).start()
        try:
            c, r = s.stream("/v1/responses", {"input": "loop", "stream": True})
            evs = sse_events(r)
            c.close()
            eq(evs[-1][0], "response.incomplete", "final event")
            eq(evs[-1][1]["response"]["incomplete_details"]["reason"], "max_steps", "reason")
            last = [e["item"] for n, e in evs if n == "response.output_item.done"][-1]
            eq((last["call_id"], last["status"]), ("call_2", "incomplete"), "the call not run")
        finally:
            s.stop()


@case
def mcp_tools_over_http_serve_too(tmp):
    # agentd serve offers MCP servers' tools as runs do (here over Streamable HTTP).
    import sys
    fixture = os.path.join(lib.HERE, "..", "mcp", "server.py")
    fx = subprocess.Popen([sys.executable, fixture, "--http"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
    try:
        line = fx.stdout.readline().decode()
        ok(line.startswith("PORT "), "the fixture's port: %r" % line)
        url = "http://127.0.0.1:%d/mcp" % int(line.split()[1])
        sc = script.script(tool_round([("call_e", "web__echo", '{"text": "hi there"}')]),
                           script.text_stream("Echoed."))
        with lib.mock(sc) as m:
            s = Serve(tmp, m.base_url, raw=lib.toml_table(
                ["mcp", "servers", "web"], {"url": url, "required": True})).start()
            try:
                st, _, obj = s.call("POST", "/v1/responses", {"input": "echo it"})
                eq(st, 200, "status")
                eq(obj["agentd"]["tool_calls"][0]["output"], "hi there", "the MCP tool answered")
            finally:
                s.stop()
    finally:
        fx.stdin.close()
        fx.wait(10)


@case
def background_poll_and_resume_stream(tmp):
    sc = script.script(script.text_stream("a b c d", delay_ms=20))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses", {"input": "go", "background": True})
            eq(st, 200, "status")
            ok(obj["status"] in ("queued", "in_progress"), "not done yet: %s" % obj["status"])
            rid = obj["id"]
            done = wait_for(lambda: s.call("GET", "/v1/responses/" + rid)[2]["status"] == "completed",
                            "the background response")
            ok(done, "completed")
            c, r = s.stream("/v1/responses/%s?stream=true&starting_after=2" % rid, method="GET")
            evs = sse_events(r)
            c.close()
            eq(evs[0][1]["sequence_number"], 3, "resumed after 2")
            eq(evs[-1][0], "response.completed", "to the end")
            text = "".join(e["delta"] for n, e in evs if n == "response.output_text.delta")
            eq(text, "a b c d", "the deltas")
        finally:
            s.stop()


@case
def profiles_and_models(tmp):
    sc = script.script(script.text_stream("ok"), script.text_stream("ok"))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, profiles={
            "coder": {"model": "big-model", "system_prompt": "You code.", "max_steps": 3},
            "plain": {}}).start()
        try:
            st, _, models = s.call("GET", "/v1/models")
            eq([x["id"] for x in models["data"]], ["coder", "plain"], "profiles listed")
            eq(s.call("GET", "/v1/models/plain")[0], 200, "one model")
            eq(s.call("GET", "/v1/models/nope")[0], 404, "unknown model")
            st, _, e = s.call("POST", "/v1/responses", {"model": "nope", "input": "x"})
            eq(st, 404, "unknown model for a response")
            eq(e["error"]["code"], "model_not_found", "code")
            st, _, obj = s.call("POST", "/v1/responses", {"model": "coder", "input": "x"})
            eq(st, 200, "status")
            eq(obj["model"], "coder", "model echoed")
            eq(m.requests[0]["json"]["model"], "big-model", "the profile's model")
            eq(m.requests[0]["json"]["messages"][0]["content"], "You code.", "its system prompt")
            st, _, obj = s.call("POST", "/v1/responses",
                                {"model": "plain", "input": "y", "instructions": "Be terse."})
            eq(m.requests[1]["json"]["messages"][0], {"role": "system", "content": "Be terse."},
               "instructions")
        finally:
            s.stop()


@case
def bad_requests(tmp):
    with lib.mock(script.script()) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            c = s.conn()
            c.request("POST", "/v1/responses", body="{not json", headers={"Content-Type": "application/json"})
            r = c.getresponse()
            eq(r.status, 400, "bad JSON")
            contains(json.loads(r.read())["error"]["message"], "JSON")
            c.close()
            eq(s.call("POST", "/v1/responses", {"input": 3})[0], 400, "input of the wrong type")
            st, _, e = s.call("POST", "/v1/responses",
                              {"input": [{"role": "user", "content": [{"type": "input_image"}]}]})
            eq(st, 400, "an image part")
            contains(e["error"]["message"], "input_image")
            eq(s.call("POST", "/v1/responses", {"input": "x", "previous_response_id": "resp_nope"})[0],
               404, "unknown previous response")
            eq(s.call("GET", "/v1/responses/resp_nope")[0], 404, "unknown response")
            eq(s.call("GET", "/v1/responses")[0], 405, "wrong method")
            eq(s.call("GET", "/nope")[0], 404, "unknown path")
            eq(len(m.requests), 0, "nothing reached the provider")
        finally:
            s.stop()


@case
def client_tool_with_an_own_tools_name(tmp):
    with lib.mock(script.script()) as m:
        s = Serve(tmp, m.base_url, plugins=["add"]).start()
        try:
            tool = {"type": "function", "name": "add", "parameters": {"type": "object"}}
            st, _, e = s.call("POST", "/v1/responses", {"input": "x", "tools": [tool]})
            eq(st, 400, "responses: a client tool named like agentd's own")
            eq(e["error"]["code"], "tool_name_taken", "code")
            contains(e["error"]["message"], "'add'")
            st, _, e = s.call("POST", "/v1/chat/completions",
                              {"messages": [{"role": "user", "content": "x"}],
                               "tools": [{"type": "function", "function": {"name": "add"}}]})
            eq(st, 400, "chat: the same")
            eq(e["error"]["code"], "tool_name_taken", "chat code")
            st, _, e = s.call("POST", "/v1/chat/completions",
                              {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
            eq(st, 404, "chat: unknown model")
            eq(e["error"]["code"], "model_not_found", "chat 404 code")
            eq(len(m.requests), 0, "nothing reached the provider")
        finally:
            s.stop()


# ---- security and HTTP faults --------------------------------------------------

@case
def token_required_everywhere_but_health(tmp):
    with lib.mock(script.script(script.text_stream("hi"))) as m:
        s = Serve(tmp, m.base_url, serve={"token_env": "SERVE_TOKEN"},
                  env={"SERVE_TOKEN": TOKEN}).start()
        try:
            contains(s.stderr(), "token required")
            st, h, e = s.call("POST", "/v1/responses", {"input": "x"})
            eq(st, 401, "no token")
            eq(h.get("www-authenticate"), "Bearer", "challenge")
            eq(s.call("GET", "/v1/models", token=TOKEN + "x")[0], 401, "wrong token")
            eq(s.call("GET", "/v1/models", token=TOKEN[:-1])[0], 401, "a prefix of the token")
            eq(s.call("GET", "/v1/responses/resp_x")[0], 401, "GET needs it too")
            eq(s.call("GET", "/health")[0], 200, "health is open")
            eq(s.call("GET", "/v1/models", token=TOKEN)[0], 200, "right token")
            eq(s.call("POST", "/v1/responses", {"input": "x"}, token=TOKEN)[0], 200, "a run")
            eq(len(m.requests), 1, "only the authorised run reached the provider")
            # The token is not in the tools' environment (valgrind shows
            # its own copy of the environment there).
            pid = s.p.pid
            if lib.WRAP:
                return
            try:
                with open("/proc/%d/environ" % pid, "rb") as f:
                    ok(TOKEN.encode() not in f.read(), "token gone from /proc/PID/environ")
            except PermissionError:
                pass
        finally:
            s.stop()


@case
def non_loopback_listen_needs_a_token(tmp):
    s = Serve(tmp, "http://127.0.0.1:1/v1", serve={"listen": "0.0.0.0:0"})
    rc = s.start(expect_fail=True)
    eq(rc, 2, "exit status")
    contains(s.stderr(), "not a loopback address")
    tok = os.path.join(tmp, "tok")
    with open(tok, "w") as f:
        f.write("short\n")
    os.chmod(tok, 0o600)
    s = Serve(tmp, "http://127.0.0.1:1/v1", serve={"listen": "0.0.0.0:0", "token_file": tok})
    eq(s.start(expect_fail=True), 2, "a short token")
    contains(s.stderr(), "at least 16")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o644)
    s = Serve(tmp, "http://127.0.0.1:1/v1", serve={"listen": "0.0.0.0:0", "token_file": tok})
    eq(s.start(expect_fail=True), 2, "a token file others can read")
    contains(s.stderr(), "chmod 600")


@case
def slow_headers_are_closed_at_the_deadline(tmp):
    with lib.mock(script.script()) as m:
        s = Serve(tmp, m.base_url, serve={"header_timeout_s": 1}).start()
        try:
            head = (b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"X-Slow: " + b"a" * 40 + b"\r\nContent-Length: 2\r\n\r\n{}")
            t0 = time.monotonic()
            got = raw_exchange(s.port, head, pace=0.1)
            took = time.monotonic() - t0
            ok(got.startswith(b"HTTP/1.1 408 "), "408: %r" % got[:80])
            ok(took < len(head) * 0.1, "closed before the head was sent (%.1f s)" % took)
            eq(len(m.requests), 0, "nothing reached the provider")
            eq(s.call("GET", "/health")[0], 200, "the server goes on")
        finally:
            s.stop()


@case
def oversized_head_and_body(tmp):
    with lib.mock(script.script()) as m:
        s = Serve(tmp, m.base_url, serve={"max_header_bytes": 2048, "max_body_bytes": 4096}).start()
        try:
            got = raw_exchange(s.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: "
                               + b"a" * 4000 + b"\r\n\r\n")
            ok(got.startswith(b"HTTP/1.1 431 "), "431: %r" % got[:60])
            got = raw_exchange(s.port, b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 5000\r\n\r\n" + b"x" * 5000)
            ok(got.startswith(b"HTTP/1.1 413 "), "413 by Content-Length: %r" % got[:60])
            body = json.dumps({"input": "y" * 5000}).encode()
            chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            got = raw_exchange(s.port, b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
            ok(got.startswith(b"HTTP/1.1 413 "), "413 chunked: %r" % got[:60])
            eq(len(m.requests), 0, "nothing reached the provider")
        finally:
            s.stop()


@case
def smuggling_shapes_are_refused(tmp):
    with lib.mock(script.script()) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            body = b'{"input":"x"}'
            shapes = [
                b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n"
                b"Content-Length: 13\r\n\r\n" + body,
                b"POST /v1/responses HTTP/1.1\nHost: x\nContent-Length: 13\n\n" + body,
                b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nX: y\r\n Content-Length: 13\r\n\r\n" + body,
                b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
                b"Content-Length: 13\r\n\r\n" + body,
                b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length : 13\r\n\r\n" + body,
            ]
            for i, sh in enumerate(shapes):
                got = raw_exchange(s.port, sh)
                ok(got.startswith(b"HTTP/1.1 400 "), "shape %d gets 400: %r" % (i, got[:60]))
                contains(got.decode("latin-1"), "Connection: close", "shape %d closes" % i)
            eq(len(m.requests), 0, "nothing reached the provider")
        finally:
            s.stop()


# ---- runs and clients ------------------------------------------------------------

@case
def client_gone_mid_stream_cancels_the_transfer(tmp):
    sc = script.script(script.text_stream("partial answer", hang_after=200),
                       script.text_stream("Fine."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url).start()
        try:
            c, r = s.stream("/v1/responses", {"input": "talk", "stream": True})
            evs = sse_events(r, until=lambda n, e: n == "response.output_text.delta")
            rid = evs[0][1]["response"]["id"]
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            wait_for(lambda: m.requests and m.requests[0].get("client_closed"),
                     "the provider transfer to be cancelled")
            st, _, obj = wait_for(lambda: (lambda x: x if x[2].get("status") == "cancelled" else None)(
                s.call("GET", "/v1/responses/" + rid)), "the response to be cancelled")
            # The conversation is valid: it goes on from there.
            st, _, obj2 = s.call("POST", "/v1/responses", {"input": "go on", "previous_response_id": rid})
            eq(st, 200, "continued")
            eq(final_text(obj2), "Fine.", "answer")
            hist = messages_of(m.requests[1])
            eq(hist[0], ("user", "talk", None), "prompt kept")
            eq(hist[1][0], "assistant", "the cut answer kept")
            contains(hist[1][1], "cut short", "marked as cut")
            eq(hist[2], ("user", "go on", None), "next prompt")
        finally:
            s.stop()


@case
def client_gone_during_a_tool_cancels_it(tmp):
    gate = os.path.join(tmp, "gate")
    args = json.dumps({"path": gate})
    sc = script.script(tool_round([("call_g", "gate", args)]), script.text_stream("After."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["gate"]).start()
        try:
            c, r = s.stream("/v1/responses", {"input": "wait", "stream": True})
            evs = sse_events(r, until=lambda n, e: n == "response.output_item.added"
                             and e["item"]["type"] == "agentd:tool_call")
            rid = evs[0][1]["response"]["id"]
            wait_for(lambda: os.path.exists(gate + ".started"), "the tool to start")
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            # The response row is written after its messages.
            wait_for(lambda: stored_status(s.db, rid) == "cancelled", "the run to be cancelled")
            msgs = stored_messages(s.db)
            eq([mm["role"] for mm in msgs], ["user", "assistant", "tool"], "stored history")
            contains(msgs[2]["content"], "cancelled", "the call got its one result")
            eq(msgs[2]["tool_call_id"], "call_g", "for its id")
            st, _, obj = s.call("POST", "/v1/responses", {"input": "next", "previous_response_id": rid})
            eq(st, 200, "the conversation goes on")
            eq(len(m.requests), 2, "one more request")
        finally:
            open(gate, "w").close()
            s.stop()


@case
def slow_reader_is_bounded_then_dropped(tmp):
    # A long answer the client never reads: the server holds a bounded
    # queue, pauses the provider (which then blocks), and drops the client.
    # More than the kernel's buffers between the mock and agentd hold
    # (several MiB): the mock can only finish if agentd reads it all.
    text = " ".join(["word%06d" % i for i in range(2000000)])  # 20 MB
    sc = script.script(script.text_stream(text, pieces=100000))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, serve={"max_write_queue_bytes": 65536,
                                           "write_timeout_s": 1}).start()
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", s.port))
            body = json.dumps({"input": "long", "stream": True}).encode()
            sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            # Never read: wait for the provider transfer to be cancelled.
            wait_for(lambda: m.requests and m.requests[0].get("client_closed"),
                     "the provider transfer to be cancelled", timeout=60)
            with open("/proc/%d/status" % s.p.pid) as f:
                hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
            # (Sanitizers and valgrind bring their own memory.)
            if not lib.WRAP and not os.environ.get("AGENTD_SANITIZED"):
                ok(hwm < 64 * 1024, "peak RSS bounded: %d KiB" % hwm)
            # Its end: the connection is closed by the server.
            sock.settimeout(30 * lib.TIMEOUT_SCALE)
            total = 0
            while True:
                try:
                    chunk = sock.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                total += len(chunk)
            ok(total < len(text) // 2, "the client got a part only (%d bytes)" % total)
            sock.close()
            eq(s.call("GET", "/health")[0], 200, "the server goes on")
        finally:
            s.stop()


@case
def busy_conversation_gets_409_and_too_many_runs_429(tmp):
    sc = script.script(script.text_stream("first"), script.text_stream("slow", hang_after=5),
                       script.text_stream("third"))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, serve={"max_runs": 1}).start()
        try:
            st, _, a = s.call("POST", "/v1/responses", {"input": "one"})
            eq(st, 200, "first")
            c, r = s.stream("/v1/responses", {"input": "two", "stream": True,
                                               "previous_response_id": a["id"]})
            evs = sse_events(r, until=lambda n, e: n == "response.in_progress")
            bid = evs[0][1]["response"]["id"]
            wait_for(lambda: len(m.requests) == 2, "the second run to reach the provider")
            st, _, e = s.call("POST", "/v1/responses", {"input": "three", "previous_response_id": a["id"]})
            eq(st, 409, "continuing the busy conversation")
            eq(e["error"]["code"], "conversation_busy", "code")
            st, _, e = s.call("POST", "/v1/responses", {"input": "three", "previous_response_id": bid})
            eq(st, 409, "continuing the running response")
            st, h, e = s.call("POST", "/v1/responses", {"input": "other"})
            eq(st, 429, "a second run at once")
            eq(h.get("retry-after"), "1", "Retry-After")
            c.close()
            wait_for(lambda: s.call("GET", "/v1/responses/" + bid)[2].get("status") == "cancelled",
                     "the second run to end")
            eq(s.call("POST", "/v1/responses", {"input": "three", "previous_response_id": bid})[0],
               200, "free again")
        finally:
            s.stop()


@case
def sigterm_drains(tmp):
    gate = os.path.join(tmp, "gate")
    args = json.dumps({"path": gate})
    sc = script.script(tool_round([("call_g", "gate", args)]), script.text_stream("Done."),
                       tool_round([("call_h", "gate", json.dumps({"path": gate + "2"}))]))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["gate"], serve={"drain_timeout_s": 30}).start()
        try:
            c, r = s.stream("/v1/responses", {"input": "finish me", "stream": True})
            wait_for(lambda: os.path.exists(gate + ".started"), "the tool to start")
            s.p.send_signal(signal.SIGTERM)
            wait_for(lambda: "draining" in s.stderr(), "the drain notice")
            # No new requests: the listener is closed.
            try:
                st = s.call("GET", "/health")[0]
            except OSError:
                st = None
            ok(st in (None, 503), "a new request is refused (%r)" % st)
            open(gate, "w").close()  # the run in flight finishes
            evs = sse_events(r)
            c.close()
            eq(evs[-1][0], "response.completed", "the run finished")
            eq(final_text(evs[-1][1]["response"]), "Done.", "its answer")
            eq(s.stop(timeout=30), 0, "exit status")
        finally:
            open(gate, "w").close()
            if s.p.poll() is None:
                s.stop()
    # A drain deadline cancels what still runs; every call keeps its result.
    tmp2 = os.path.join(tmp, "b")
    os.mkdir(tmp2)
    gate = os.path.join(tmp2, "gate")
    sc = script.script(tool_round([("call_g", "gate", json.dumps({"path": gate}))]))
    with lib.mock(sc) as m:
        s = Serve(tmp2, m.base_url, plugins=["gate"], serve={"drain_timeout_s": 0.5}).start()
        try:
            st, _, obj = s.call("POST", "/v1/responses", {"input": "never ends", "background": True})
            wait_for(lambda: os.path.exists(gate + ".started"), "the tool to start")
            eq(s.stop(timeout=30), 0, "exit status after the deadline")
            contains(s.stderr(), "cancelling")
            msgs = stored_messages(s.db)
            eq([mm["role"] for mm in msgs], ["user", "assistant", "tool"], "stored history")
            contains(msgs[2]["content"], "cancelled", "the call's one result")
            with sqlite3.connect(s.db) as d:
                eq(d.execute("SELECT status FROM responses").fetchone()[0], "cancelled",
                   "the response is stored cancelled")
        finally:
            open(gate, "w").close()


@case
def kill_9_then_restart_resumes(tmp):
    sc = script.script(script.text_stream("First answer."),
                       tool_round([("call_h", "hang", '{"s": 60}')]),
                       script.text_stream("Resumed."))
    with lib.mock(sc) as m:
        s = Serve(tmp, m.base_url, plugins=["hang"]).start()
        st, _, a = s.call("POST", "/v1/responses", {"input": "one"})
        eq(st, 200, "first")
        c, r = s.stream("/v1/responses", {"input": "two", "stream": True, "previous_response_id": a["id"]})
        evs = sse_events(r, until=lambda n, e: n == "response.output_item.added"
                         and e["item"]["type"] == "agentd:tool_call")
        bid = evs[0][1]["response"]["id"]
        wait_for(lambda: len(stored_messages(s.db)) >= 4, "the tool call to be stored")
        s.p.kill()
        s.p.wait()
        c.close()
        s.start()
        try:
            contains(s.stderr(), "1 response(s) were running")
            st, _, b = s.call("GET", "/v1/responses/" + bid)
            eq(b["status"], "failed", "the interrupted response")
            st, _, a2 = s.call("GET", "/v1/responses/" + a["id"])
            eq(final_text(a2), "First answer.", "the first response survived")
            st, _, obj = s.call("POST", "/v1/responses", {"input": "three", "previous_response_id": bid})
            eq(st, 200, "continued after the restart")
            eq(final_text(obj), "Resumed.", "answer")
            hist = messages_of(m.requests[2])
            eq([h[0] for h in hist], ["user", "assistant", "user", "assistant", "tool", "user"],
               "the whole conversation, repaired")
            eq(hist[4][2], "call_h", "the killed call got a result")
            eq(hist[4][1], "interrupted", "marked interrupted")
        finally:
            s.stop()


if __name__ == "__main__":
    lib.main()

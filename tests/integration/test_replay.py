#!/usr/bin/env python3
"""test_replay.py -- --record and --replay end to end.

A run against the mock provider is recorded; the cassette must carry no API
key and no Authorization header. With the mock stopped and no key in the
environment, replaying it must print byte-identical --json output (generated
tool-call ids included: the cassette keeps their prefix). A replay whose
requests differ from the recording fails with exit 1 and names the field;
a missing or broken cassette is a usage error (exit 2).
"""
import json
import os
import stat

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 write_config, PLUGINS_DIR, TEST_KEY_ENV, TEST_PLUGINS_DIR)

S = script
KEY = "sk-test-dummy"  # what lib.agentd_env puts into AGENTD_TEST_KEY
ARGS = '{"a": 2, "b": 3}'
PROMPT = "Add and multiply the number 2 and 3"
SYSTEM = "You are a helpful assistant. Always use both add and multiply at the same time."
NO_KEY = {TEST_KEY_ENV: None}
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "cassettes", "seed")


def seed_script(final="2 + 3 = 5 and 2 \u00d7 3 = 6.", stream=True):
    calls = [("functions.add:0", "add", ARGS), ("functions.multiply:1", "multiply", ARGS)]
    if not stream:
        return S.script(S.message("On it.", tool_calls=calls), S.message(final))
    return S.script(
        S.tool_call_stream(calls, text="I'll add and multiply 2 and 3.", split_args=3, usage=True),
        S.text_stream(final, usage=True))


def config(tmp, base_url, plugins_dir="plugins", **kw):
    agent = {"system_prompt": SYSTEM, "max_steps": 10, "unique_tool_call_ids": True}
    agent.update(kw.pop("agent", {}))
    return write_config(tmp, base_url, plugins_dir=plugins_dir, agent=agent, **kw)


def record(tmp, responses, **kw):
    """Records one run against the mock; returns (config path, cassette path, Result)."""
    make_plugin_dir(tmp, ("add", "multiply"))
    cas = os.path.join(tmp, "run.yaml")
    with mock(responses) as m:
        cfg = config(tmp, m.base_url, **kw)
        r = run_agentd(["--config", cfg, "--json", "--record", cas, "-p", PROMPT])
        nreq = len([q for q in m.requests if q["path"].endswith("/chat/completions")])
    eq(r.rc, 0, "recording run exit code (stderr: %s)" % r.stderr)
    ok(os.path.exists(cas), "cassette written")
    return cfg, cas, r, nreq


def replay(cfg, cas, prompt=PROMPT, extra=(), env=NO_KEY):
    return run_agentd(["--config", cfg, "--json", "--replay", cas, "-p", prompt] + list(extra),
                      env=env)


def merged_text_deltas(stdout):
    """--json output with consecutive text_delta events of a step joined.
    Where the pieces split depends on the key: agentd holds back a tail
    that could be the start of the key (a key echoed across deltas is then
    still redacted), and the replay runs without one."""
    out = []
    for line in stdout.splitlines():
        e = json.loads(line)
        if (e.get("type") == "text_delta" and out and out[-1].get("type") == "text_delta"
                and out[-1]["step"] == e["step"]):
            out[-1]["text"] += e["text"]
        else:
            out.append(e)
    return out


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@case
def record_has_no_secrets_and_replays_identically(tmp):
    # The key is also in a configured header and comes back in the answer.
    cfg, cas, rec, nreq = record(tmp, seed_script(final="5 and 6; your key is " + KEY),
                                 headers={"X-Api-Key": KEY, "X-Title": "agentd-test",
                                          "Api-Key": "azure-other-secret"})
    text = read(cas)
    eq(stat.S_IMODE(os.stat(cas).st_mode), 0o600, "cassette mode")
    ok("azure-other-secret" not in text and "Api-Key" not in text,
       "a configured credential header is not recorded, whatever its value")
    eq(nreq, 2, "requests the mock saw")
    ok(text.startswith("---\nversion: 2\n"), "go-vcr v2 header")
    eq(text.count("\n- id: "), 2, "interactions")
    ok(KEY not in text, "the key is not in the cassette")
    ok("authorization" not in text.lower(), "no Authorization header in the cassette")
    ok("X-Api-Key" not in text, "a header carrying the key is dropped")
    contains(text, "X-Title:\n      - agentd-test", "other request headers kept")
    contains(text, "\"content\":\" [REDACTED]\"", "the key in a body is redacted")
    contains(text, "agentd_id_prefix:", "generated id prefix kept")
    ok('"id":"call_' in rec.stdout, "ids were generated (unique_tool_call_ids)")
    # Offline: the mock is gone and there is no key.
    rep = replay(cfg, cas)
    eq(rep.rc, 0, "replay exit code (stderr: %s)" % rep.stderr)
    eq(merged_text_deltas(rep.stdout), merged_text_deltas(rec.stdout), "replayed --json output")
    rep2 = replay(cfg, cas)
    eq(rep2.stdout, rep.stdout, "second replay")


@case
def non_streaming_run_replays_identically(tmp):
    cfg, cas, rec, _ = record(tmp, seed_script(stream=False), stream=False,
                              agent={"unique_tool_call_ids": False})
    ok("agentd_id_prefix" in read(cas), "prefix stored")
    rep = replay(cfg, cas)
    eq(rep.rc, 0, "replay exit code (stderr: %s)" % rep.stderr)
    eq(rep.stdout, rec.stdout, "replayed --json output")
    contains(rep.stdout, '"id":"functions.add:0"', "provider ids echoed")


@case
def replay_of_a_retried_request(tmp):
    responses = seed_script()
    responses["responses"].insert(0, S.error(503, "busy"))
    cfg, cas, rec, nreq = record(tmp, responses, max_retries=1)
    eq(nreq, 3, "requests")
    eq(read(cas).count("\n- id: "), 3, "the failed attempt is recorded too")
    rep = replay(cfg, cas)
    eq(rep.rc, 0, "replay exit code (stderr: %s)" % rep.stderr)
    strip = [e for e in rep.events if e.get("type") != "retry"]
    eq(strip, [e for e in rec.events if e.get("type") != "retry"], "events besides the retry")
    retry = [e for e in rep.events if e.get("type") == "retry"]
    eq(len(retry), 1, "retry events")
    eq(retry[0]["wait_s"], 0, "a replay does not wait")


@case
def different_prompt_fails_with_a_diff(tmp):
    cfg, cas, _, _ = record(tmp, seed_script())
    r = replay(cfg, cas, prompt="Add and multiply the number 2 and 4")
    eq(r.rc, 1, "exit code")
    contains(r.stderr, "replay: request 1 differs from the recording", "stderr")
    contains(r.stderr, 'messages[1].content: recorded "Add and multiply the number 2 and 3", '
                       'sent "Add and multiply the number 2 and 4"', "stderr")
    eq(r.events[-1]["type"], "error", "last event")


@case
def different_model_fails_with_a_diff(tmp):
    cfg, cas, _, _ = record(tmp, seed_script())
    r = replay(cfg, cas, extra=["--model", "other-model"])
    eq(r.rc, 1, "exit code")
    contains(r.stderr, 'model: recorded "test-model", sent "other-model"', "stderr")


@case
def changed_tool_result_fails_on_the_second_request(tmp):
    cfg, cas, _, _ = record(tmp, seed_script())
    # Replay with another "add" (tests/plugins/dup_add.so answers nothing).
    pdir = os.path.join(tmp, "other")
    os.makedirs(pdir)
    os.symlink(os.path.abspath(os.path.join(TEST_PLUGINS_DIR, "dup_add.so")),
               os.path.join(pdir, "add.so"))
    os.symlink(os.path.abspath(os.path.join(PLUGINS_DIR, "multiply.so")),
               os.path.join(pdir, "multiply.so"))
    cfg2 = config(tmp, "http://127.0.0.1:9/v1", plugins_dir="other", name="other.toml")
    r = replay(cfg2, cas)
    eq(r.rc, 1, "exit code (stderr: %s)" % r.stderr)
    contains(r.stderr, "replay: request 2 differs from the recording", "stderr")
    contains(r.stderr, 'messages[3].content: recorded "5", sent ""', "stderr")


@case
def fewer_tools_fail_with_a_diff(tmp):
    cfg, cas, _, _ = record(tmp, seed_script())
    make_plugin_dir(tmp, ("add",), dirname="only_add")
    cfg2 = config(tmp, "http://127.0.0.1:9/v1", plugins_dir="only_add", name="other.toml")
    r = replay(cfg2, cas)
    eq(r.rc, 1, "exit code")
    contains(r.stderr, 'tools (names): recorded ["add","multiply"], sent ["add"]', "stderr")


@case
def run_shorter_than_the_recording_fails(tmp):
    cfg, cas, _, _ = record(tmp, seed_script())
    # Cut the recording's last exchange off by replaying with max_steps 1:
    # the run stops (exit 3) before using it, which is not a replay error.
    r = replay(cfg, cas, extra=["--max-steps", "1"])
    eq(r.rc, 3, "max_steps exit code (stderr: %s)" % r.stderr)
    # A cassette with one exchange too many after a successful run is.
    text = read(cas)
    first = text.index("\n- id: 0")
    second = text.index("\n- id: 1")
    extra = text[:second] + text[first:second].replace("- id: 0", "- id: 9") + text[second:]
    longer = os.path.join(tmp, "longer.yaml")
    with open(longer, "w", encoding="utf-8") as f:
        f.write(extra)
    r = replay(cfg, longer)
    eq(r.rc, 1, "exit code")
    contains(r.stderr, "differs from the recording", "stderr")


@case
def missing_and_broken_cassettes_are_usage_errors(tmp):
    cfg = config(tmp, "http://127.0.0.1:9/v1", plugins_dir=None)
    missing = os.path.join(tmp, "nope.yaml")
    r = replay(cfg, missing)
    eq(r.rc, 2, "exit code")
    contains(r.stderr, "cannot read cassette %s: No such file or directory" % missing, "stderr")
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("version: 2\ninteractions:\n- id: 0\n  response: {code: 200}\n")
    r = replay(cfg, bad)
    eq(r.rc, 2, "exit code")
    contains(r.stderr, "bad.yaml:3: interaction without a request", "stderr")
    r = run_agentd(["--config", cfg, "--record", bad, "--replay", bad, "-p", "x"])
    eq(r.rc, 2, "--record with --replay")
    contains(r.stderr, "cannot be used together", "stderr")
    # An empty cassette: the first request was not recorded.
    empty = os.path.join(tmp, "empty.yaml")
    with open(empty, "w") as f:
        f.write("---\nversion: 2\ninteractions: []\n")
    r = replay(cfg, empty)
    eq(r.rc, 1, "exit code")
    contains(r.stderr, "request 1 was not recorded (the cassette holds 0 interactions)", "stderr")


@case
def record_failing_run_still_writes_the_cassette(tmp):
    cfg, cas = None, os.path.join(tmp, "fail.yaml")
    with mock(S.script(S.error(401, "bad key"))) as m:
        cfg = config(tmp, m.base_url, plugins_dir=None)
        r = run_agentd(["--config", cfg, "--record", cas, "-p", PROMPT])
    eq(r.rc, 1, "exit code")
    text = read(cas)
    contains(text, "code: 401", "the error response is recorded")
    contains(text, "bad key", "its body too")
    r = replay(cfg, cas)
    eq(r.rc, 1, "replayed failure")
    contains(r.stderr, "HTTP 401", "same failure")


@case
def record_to_an_unwritable_path_fails_before_any_request(tmp):
    # Found before the first request: no tokens spent on a run whose
    # recording would be lost. Exit 2, the path in the message.
    os.mkdir(os.path.join(tmp, "adir"))
    with open(os.path.join(tmp, "afile"), "w") as f:
        f.write("x")
    bad = [os.path.join(tmp, "missing", "run.yaml"),   # no such folder
           os.path.join(tmp, "afile", "run.yaml"),     # a file where a folder should be
           os.path.join(tmp, "adir")]                  # a folder where the file should be
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        ro = os.path.join(tmp, "ro")
        os.mkdir(ro, 0o555)
        bad.append(os.path.join(ro, "run.yaml"))
    for path in bad:
        with mock(S.script(S.text_stream("unused"))) as m:
            cfg = config(tmp, m.base_url, plugins_dir=None)
            for extra in ([], ["--json"]):
                r = run_agentd(["--config", cfg, "--record", path, "-p", PROMPT] + extra)
                eq(r.rc, 2, "%s: exit code (stderr: %s)" % (path, r.stderr))
                contains(r.stderr, "--record", "%s: names the option" % path)
                contains(r.stderr, path, "names the path")
            n = len(m.requests)
        eq(n, 0, "%s: no request was made" % path)
    eq(sorted(os.listdir(tmp)), sorted(["adir", "afile", "agent.toml"] +
                                       (["ro"] if os.geteuid() != 0 else [])),
       "no stray file was left")
    eq(os.listdir(os.path.join(tmp, "adir")), [], "nothing left in the folder")


@case
def record_check_leaves_no_stray_file(tmp):
    cas = os.path.join(tmp, "rec", "run.yaml")
    os.mkdir(os.path.dirname(cas))
    with mock(S.script(S.error(400, "no"))) as m:
        cfg = config(tmp, m.base_url, plugins_dir=None)
        r = run_agentd(["--config", cfg, "--record", cas, "-p", PROMPT])
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    eq(os.listdir(os.path.dirname(cas)), ["run.yaml"], "only the cassette")


@case
def a_response_cut_while_recording_is_not_replayed(tmp):
    # agentd marks a response body it cut at 64 MiB while recording; a replay
    # reaching it stops with the reason instead of serving a different body.
    cfg, cas, rec, _ = record(tmp, seed_script())
    text = read(cas)
    i = text.index("\n    duration:", text.index("- id: 1"))
    j = text.index("\n", i + 1)
    with open(cas, "w", encoding="utf-8") as f:
        f.write(text[:j] + "\n    agentd_truncated: true" + text[j:])
    r = replay(cfg, cas)
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    contains(r.stderr, "replay: the response to request 2 was cut at 64 MiB when it was recorded",
             "says why")
    eq([e["type"] for e in r.events if e["type"] == "finish"], [], "no answer made up")


@case
def shared_seed_cassette_replays():
    """Optional: needs ../shared (absent in some checkouts: then it passes
    without checking anything)."""
    path = os.path.join(SHARED, "stream_unique_tool_call_ids.yaml")
    if not os.path.exists(path):
        print("  (skipped: %s not found)" % path)
        return
    import tempfile
    with tempfile.TemporaryDirectory(prefix="agentd-test-") as tmp:
        make_plugin_dir(tmp, ("add", "multiply"))
        cfg = write_config(tmp, "http://127.0.0.1:9/api/v1", model="moonshotai/kimi-k2-0905",
                           plugins_dir="plugins", extra={"usage": {"include": True}},
                           agent={"system_prompt": SYSTEM, "max_steps": 10, "max_tokens": 4000,
                                  "unique_tool_call_ids": True})
        r = replay(cfg, path)
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    fin = [e for e in r.events if e.get("type") == "finish"]
    eq(len(fin), 1, "finish events")
    contains(fin[0]["text"], "5", "final text")
    contains(fin[0]["text"], "6", "final text")


if __name__ == "__main__":
    main()

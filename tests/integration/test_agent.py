"""test_agent.py -- the agent loop end to end against the mock provider.

Each case scripts the provider's responses, runs the real agentd binary with
real plugins over loopback HTTP, and checks both what agentd reports (events,
exit code) and what it sent (the requests the mock recorded).
"""
import json
import os
import time

from lib import (case, contains, eq, main, make_plugin_dir, mock, ok, run_agentd, script,
                 write_config, TEST_KEY_ENV)

S = script
ADD_ARGS = '{"a": 2, "b": 3}'
PROMPT = "Add and multiply the number 2 and 3"
SYSTEM = "You are a helpful assistant. Always use both add and multiply at the same time."


def setup(tmp, m, plugins=("add", "multiply"), **kw):
    pdir = make_plugin_dir(tmp, plugins)
    agent = {"system_prompt": SYSTEM, "max_steps": 10}
    agent.update(kw.pop("agent", {}))
    return write_config(tmp, m.base_url, plugins_dir=os.path.basename(pdir), agent=agent, **kw)


def run_json(cfg, prompt=PROMPT, extra_args=(), **kw):
    return run_agentd(["--config", cfg, "--json", "-p", prompt] + list(extra_args), **kw)


def of_type(r, t):
    return [e for e in r.events if e.get("type") == t]


def chat_requests(m):
    return [q for q in m.requests if q["path"].endswith("/chat/completions")]


def seed_script(ids=("functions.add:0", "functions.multiply:1"), **kw):
    calls = [(ids[0], "add", ADD_ARGS), (ids[1], "multiply", ADD_ARGS)]
    return S.script(
        S.tool_call_stream(calls, text="I'll add and multiply 2 and 3.", split_args=3,
                           usage=True, **kw),
        S.text_stream("2 + 3 = 5 and 2 × 3 = 6.", usage=True))


@case
def seed_parallel_tool_calls(tmp):
    with mock(seed_script()) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (stderr: %s)" % r.stderr)
    calls = of_type(r, "tool_call")
    eq([(c["id"], c["name"], c["arguments"]) for c in calls],
       [("functions.add:0", "add", ADD_ARGS), ("functions.multiply:1", "multiply", ADD_ARGS)],
       "tool_call events")
    results = of_type(r, "tool_result")
    eq([(x["id"], x["content"], x["is_error"]) for x in results],
       [("functions.add:0", "5", False), ("functions.multiply:1", "6", False)], "tool results")
    fin = of_type(r, "finish")
    eq(len(fin), 1, "finish events")
    eq(r.events[-1]["type"], "finish", "last event")
    eq(fin[0]["text"], "2 + 3 = 5 and 2 × 3 = 6.", "final text")
    eq(fin[0]["steps"], 2, "steps")
    eq(len(of_type(r, "step_finish")), 2, "step_finish events")
    eq("".join(e["text"] for e in of_type(r, "text_delta") if e["step"] == 1),
       "I'll add and multiply 2 and 3.", "step 1 text")
    # What was sent.
    eq(len(reqs), 2, "requests")
    first, second = reqs[0]["json"], reqs[1]["json"]
    eq(first["model"], "test-model", "model")
    eq(first["stream"], True, "stream")
    eq([m["role"] for m in first["messages"]], ["system", "user"], "first roles")
    eq(first["messages"][0]["content"], SYSTEM, "system prompt")
    eq(first["messages"][1]["content"], PROMPT, "user prompt")
    eq(sorted(t["function"]["name"] for t in first["tools"]), ["add", "multiply"], "tools offered")
    eq(first["tools"][0]["type"], "function", "tool type")
    msgs = second["messages"]
    eq([m["role"] for m in msgs], ["system", "user", "assistant", "tool", "tool"], "roles")
    asst = msgs[2]
    eq(asst["content"], "I'll add and multiply 2 and 3.", "assistant content")
    eq([(c["id"], c["type"], c["function"]["name"], c["function"]["arguments"])
        for c in asst["tool_calls"]],
       [("functions.add:0", "function", "add", ADD_ARGS),
        ("functions.multiply:1", "function", "multiply", ADD_ARGS)], "assistant tool_calls")
    eq([(m["tool_call_id"], m["content"]) for m in msgs[3:]],
       [("functions.add:0", "5"), ("functions.multiply:1", "6")], "tool messages")
    eq(reqs[0]["headers"].get("authorization"), "Bearer sk-test-dummy", "Authorization header")
    eq(reqs[0]["headers"].get("content-type"), "application/json", "Content-Type")
    ok("sk-test-dummy" not in r.stdout + r.stderr, "key not shown")


@case
def unique_tool_call_ids_rewrites_repeating_ids(tmp):
    # Kimi repeats functions.add:0 on every turn.
    calls = [("functions.add:0", "add", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.tool_call_stream(calls), S.text_stream("5 and 5"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, agent={"unique_tool_call_ids": True}))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    ids = [c["id"] for c in of_type(r, "tool_call")]
    eq(len(ids), 2, "tool calls")
    ok(len(set(ids)) == 2, "ids unique: %r" % ids)
    ok("functions.add:0" not in ids, "provider id rewritten")
    last = reqs[2]["json"]["messages"]
    sent = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    eq(sent, ids, "ids sent back equal the reported ones")
    eq([m["tool_call_id"] for m in last if m["role"] == "tool"], ids, "tool_call_id")


@case
def provider_ids_go_back_byte_exact_across_turns(tmp):
    calls = [("functions.add:0", "add", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.tool_call_stream(calls), S.text_stream("done"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code")
    last = reqs[2]["json"]["messages"]
    eq([m["tool_call_id"] for m in last if m["role"] == "tool"],
       ["functions.add:0", "functions.add:0"], "ids as sent by the provider")


@case
def index_not_zero_based(tmp):
    # gpt-5 via OpenRouter numbers calls 1, 2.
    with mock(seed_script(ids=("call_a", "call_b"), index_base=1)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    eq([(c["name"], c["arguments"]) for c in of_type(r, "tool_call")],
       [("add", ADD_ARGS), ("multiply", ADD_ARGS)], "calls")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5", "6"], "results")


@case
def all_calls_at_index_zero_with_distinct_ids(tmp):
    with mock(seed_script(ids=("c1", "c2"), same_index=True)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    eq([(c["id"], c["name"], c["arguments"]) for c in of_type(r, "tool_call")],
       [("c1", "add", ADD_ARGS), ("c2", "multiply", ADD_ARGS)], "calls")


@case
def id_repeated_on_every_delta(tmp):
    with mock(seed_script(ids=("k1", "k2"), id_mode="every")) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    eq([(c["id"], c["arguments"]) for c in of_type(r, "tool_call")],
       [("k1", ADD_ARGS), ("k2", ADD_ARGS)], "calls")


@case
def missing_and_repeated_ids_get_generated_ones(tmp):
    calls = [("dup", "add", ADD_ARGS), ("dup", "multiply", ADD_ARGS)]
    sc = S.script(S.message(tool_calls=calls), S.message(content="ok"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, stream=False))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    ids = [c["id"] for c in of_type(r, "tool_call")]
    eq(ids[0], "dup", "first keeps the provider id")
    ok(ids[1] and ids[1] != "dup", "second gets a generated id: %r" % ids)
    tool_ids = [m["tool_call_id"] for m in reqs[1]["json"]["messages"] if m["role"] == "tool"]
    eq(tool_ids, ids, "tool_call_ids")
    # no id at all
    with mock(seed_script(id_mode="none")) as m:
        r = run_json(setup_b(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code without ids")
    ids = [c["id"] for c in of_type(r, "tool_call")]
    ok(all(ids) and len(set(ids)) == 2, "generated ids %r" % ids)


def setup_b(tmp, m, **kw):
    """setup() in a fresh sub-folder: a second run of a case."""
    sub = os.path.join(tmp, "b")
    os.makedirs(sub)
    return setup(sub, m, **kw)


@case
def finish_stop_with_tool_calls_still_runs_tools(tmp):
    with mock(seed_script(finish="stop")) as m:
        r = run_json(setup(tmp, m))
        n = len(chat_requests(m))
    eq(r.rc, 0, "exit code")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5", "6"], "results")
    eq(n, 2, "requests")


@case
def finish_length_inside_tool_arguments_runs_nothing(tmp):
    calls = [("c1", "add", '{"a": 2, "b"')]
    with mock(S.script(S.tool_call_stream(calls, finish="length"))) as m:
        r = run_json(setup(tmp, m))
        n = len(chat_requests(m))
    eq(r.rc, 1, "exit code")
    eq(of_type(r, "tool_result"), [], "no tool ran")
    eq(n, 1, "no second request")
    ok(of_type(r, "error"), "an error event")
    contains(of_type(r, "error")[0]["message"], "length", "error message")


@case
def stream_without_finish_reason_or_done_is_an_error(tmp):
    with mock(S.script(S.text_stream("partial answer", finish=None, done=False))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "exit code")
    eq(of_type(r, "finish"), [], "no finish event")
    contains(of_type(r, "error")[0]["message"], "finish reason", "message")


@case
def done_without_finish_reason_is_complete_with_a_warning(tmp):
    # Some gateways and third-party servers end with [DONE] and never send a
    # finish reason: the answer is complete, not cut (no retry, no bill twice).
    sc = S.script(S.text_stream("The answer is 42.", finish=None), S.text_stream("unused"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat_requests(m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(n, 1, "not retried")
    eq(of_type(r, "retry"), [], "no retry event")
    eq(of_type(r, "finish")[0]["text"], "The answer is 42.", "answer")
    eq(of_type(r, "step_finish")[0]["finish_reason"], None, "the missing reason is not invented")
    contains(r.stderr, "no finish reason", "warning")
    # Tool calls ended by [DONE] alone run too.
    calls = S.tool_call_stream([("c1", "add", ADD_ARGS)], finish=None)
    with mock(S.script(calls, S.text_stream("5", finish=None))) as m:
        r = run_json(setup_b(tmp, m, max_retries=2))
        n = len(chat_requests(m))
    eq(r.rc, 0, "tools: exit code (%s)" % r.stderr)
    eq(n, 2, "tools: requests")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5"], "tools: result")


@case
def stream_with_finish_but_no_done_is_fine(tmp):
    with mock(S.script(S.text_stream("all good", done=False))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(of_type(r, "finish")[0]["text"], "all good", "text")


@case
def tool_calls_sent_as_an_object_are_one_call(tmp):
    # Text Generation Inference sends delta.tool_calls as one object.
    def piece(args, name="add"):
        return S.chunk({"role": "assistant", "tool_calls": {
            "index": 0, "id": "", "type": "function",
            "function": {"description": None, "name": name, "arguments": args}}})
    stream = {"status": 200, "sse": [piece('{"a": 2,'), piece(' "b": 3}'),
                                     S.chunk({}, "tool_calls"), "[DONE]"]}
    with mock(S.script(stream, S.text_stream("5"))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq([(c["name"], c["arguments"]) for c in of_type(r, "tool_call")], [("add", ADD_ARGS)],
       "the call")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5"], "result")
    # The same in a whole (non-streaming) body.
    body = S.message(content=None)
    body["body"]["choices"][0]["message"]["tool_calls"] = {
        "id": "0", "type": "function", "function": {"name": "multiply", "arguments": ADD_ARGS}}
    body["body"]["choices"][0]["finish_reason"] = "tool_calls"
    with mock(S.script(body, S.message(content="6"))) as m:
        r = run_json(setup_b(tmp, m, stream=False))
    eq(r.rc, 0, "body: exit code (%s)" % r.stderr)
    eq([x["content"] for x in of_type(r, "tool_result")], ["6"], "body: result")


@case
def finish_tool_calls_without_calls_or_text_fails(tmp):
    # A response that says "tool_calls" but carries neither a call nor text
    # lost its calls on the way: never a silent empty success.
    stream = {"status": 200, "sse": [S.chunk({"role": "assistant", "content": None}),
                                     S.chunk({}, "tool_calls"), "[DONE]"]}
    with mock(S.script(stream, S.text_stream("unused"))) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        n = len(chat_requests(m))
    eq(r.rc, 1, "exit code (%s)" % r.stderr)
    eq(n, 1, "not retried")
    eq(of_type(r, "finish"), [], "no finish event")
    contains(of_type(r, "error")[0]["message"], "no tool call", "message")
    # With text, the text is the answer (and a warning says the calls are missing).
    stream = {"status": 200, "sse": [S.chunk({"role": "assistant", "content": "Done."}),
                                     S.chunk({}, "tool_calls"), "[DONE]"]}
    with mock(S.script(stream)) as m:
        r = run_json(setup_b(tmp, m))
    eq(r.rc, 0, "with text: exit code (%s)" % r.stderr)
    eq(of_type(r, "finish")[0]["text"], "Done.", "with text: answer")
    contains(r.stderr, "no tool call", "with text: warning")


@case
def a_fresh_id_on_every_continuation_delta_is_one_call(tmp):
    # poolside: every delta of a call has its own id; only the first has a name.
    def tc(index, cid, args, name=None):
        f = {"arguments": args}
        if name:
            f["name"] = name
        return S.chunk({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                        "function": f}]})
    stream = {"status": 200, "sse": [
        tc(0, "p1", "", "add"), tc(0, "p2", '{"a": 2,'), tc(0, "p3", ' "b": 3}'),
        tc(1, "p4", '{"a": 2, ', "multiply"), tc(1, "p5", '"b": 3}'),
        S.chunk({}, "tool_calls"), "[DONE]"]}
    with mock(S.script(stream, S.text_stream("5 and 6"))) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq([(c["id"], c["name"], c["arguments"]) for c in of_type(r, "tool_call")],
       [("p1", "add", ADD_ARGS), ("p4", "multiply", ADD_ARGS)], "two calls, first ids")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5", "6"], "results")
    eq([m["tool_call_id"] for m in reqs[1]["json"]["messages"] if m["role"] == "tool"],
       ["p1", "p4"], "ids sent back")


@case
def non_streaming_mode(tmp):
    calls = [("call_1", "add", ADD_ARGS), ("call_2", "multiply", ADD_ARGS)]
    sc = S.script(S.message(content=None, tool_calls=calls), S.message(content="5 and 6"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, stream=False))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    ok("stream" not in reqs[0]["json"], "no stream key when not streaming")
    eq([x["content"] for x in of_type(r, "tool_result")], ["5", "6"], "results")
    eq(of_type(r, "finish")[0]["text"], "5 and 6", "final text")
    asst = reqs[1]["json"]["messages"][2]
    ok(asst.get("content") in (None, ""), "empty assistant content is null or empty")


@case
def unknown_tool_and_bad_arguments_become_error_results(tmp):
    calls = [("c1", "nosuch", "{}"), ("c2", "add", '{"a": "two", "b": 3}'),
             ("c3", "add", '{"a": 2'), ("c4", "multiply", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.text_stream("sorry"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    res = of_type(r, "tool_result")
    eq([x["is_error"] for x in res], [True, True, True, False], "is_error")
    contains(res[0]["content"], "nosuch", "unknown tool message")
    contains(res[0]["content"], "add", "available tools listed")
    contains(res[1]["content"], "a", "schema message names the field")
    eq(res[3]["content"], "6", "valid call still runs")
    tools = [m for m in reqs[1]["json"]["messages"] if m["role"] == "tool"]
    eq([t["tool_call_id"] for t in tools], ["c1", "c2", "c3", "c4"], "one result per call, in order")


@case
def max_steps_exits_3(tmp):
    calls = [("c1", "add", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.tool_call_stream(calls), S.tool_call_stream(calls))
    with mock(sc) as m:
        r = run_json(setup(tmp, m), extra_args=["--max-steps", "2"])
        n = len(chat_requests(m))
    eq(r.rc, 3, "exit code (%s)" % r.stderr)
    eq(n, 2, "requests")
    contains(r.stderr, "max_steps", "message")


@case
def max_steps_reports_the_calls_it_does_not_run(tmp):
    calls = [("c1", "add", ADD_ARGS)]
    last = [("c2", "add", ADD_ARGS), ("c3", "multiply", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.tool_call_stream(last))
    with mock(sc) as m:
        r = run_json(setup(tmp, m), extra_args=["--max-steps", "2"])
    eq(r.rc, 3, "exit code (%s)" % r.stderr)
    step2 = [e for e in of_type(r, "tool_call") if e["step"] == 2]
    eq([(e["id"], e["name"], e["arguments"], e.get("not_run")) for e in step2],
       [("c2", "add", ADD_ARGS, True), ("c3", "multiply", ADD_ARGS, True)],
       "the unrun calls, marked not run")
    ok("not_run" not in of_type(r, "tool_call")[0], "a call that ran has no not_run field")
    eq([x["id"] for x in of_type(r, "tool_result")], ["c1"], "results only for calls that ran")
    types = [e["type"] for e in r.events]
    eq(types[-3:], ["tool_call", "step_finish", "error"], "event order")
    # Text mode shows them too.
    with mock(sc) as m:
        t = run_agentd(["--config", setup_b(tmp, m), "-p", PROMPT, "--max-steps", "2"])
    eq(t.rc, 3, "text mode exit code")
    contains(t.stderr, "multiply", "text mode names the unrun call")
    contains(t.stderr, "not run", "text mode says it was not run")


@case
def usage_is_null_in_every_event_when_none_was_reported(tmp):
    with mock(S.script(S.text_stream("hi"))) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(of_type(r, "step_finish")[0]["usage"], None, "step_finish usage")
    eq(of_type(r, "finish")[0]["usage"], None, "finish usage")
    # A usage object without any counter counts as none.
    with mock(S.script(S.text_stream("hi", usage={"queue_time": 0.1}))) as m:
        r = run_json(setup_b(tmp, m))
    eq(of_type(r, "step_finish")[0]["usage"], None, "step_finish usage without counters")
    eq(of_type(r, "finish")[0]["usage"], None, "finish usage without counters")


@case
def retries_429_honouring_retry_after(tmp):
    sc = S.script(S.error(429, "slow down", retry_after="0"), S.error(503, "busy", retry_after="0"),
                  S.text_stream("hello"))
    with mock(sc) as m:
        r = run_json(setup(tmp, m, max_retries=2))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(len(reqs), 3, "requests")
    eq(reqs[0]["body"], reqs[2]["body"], "a retry repeats the identical request")
    eq(len(of_type(r, "step_finish")), 1, "one step")
    eq(len(of_type(r, "retry")), 2, "retry events")


@case
def retries_exhausted_fails(tmp):
    with mock(S.script(S.error(500, "boom", retry_after="0"), S.error(500, "boom", retry_after="0"))) as m:
        r = run_json(setup(tmp, m, max_retries=1))
        n = len(chat_requests(m))
    eq(r.rc, 1, "exit code")
    eq(n, 2, "requests")
    contains(of_type(r, "error")[0]["message"], "500", "message")


@case
def unauthorized_names_the_key_variable_and_hides_the_key(tmp):
    body = {"error": {"message": "bad key sk-test-dummy"}}
    with mock(S.script({"status": 401, "body": body})) as m:
        r = run_json(setup(tmp, m, max_retries=3))
        n = len(chat_requests(m))
    eq(r.rc, 1, "exit code")
    eq(n, 1, "401 is not retried")
    contains(r.stderr, TEST_KEY_ENV, "names the variable")
    ok("sk-test-dummy" not in r.stdout + r.stderr, "key redacted: %s" % r.stderr)
    contains(r.stderr, "[REDACTED]", "redaction marker")


@case
def unauthorized_without_a_key_says_none_was_sent(tmp):
    # A local server needs no key, so none is configured; a 401 then says so
    # and how to configure one (not "check the API key in ... no key").
    with mock(S.script({"status": 401, "body": {"error": {"message": "auth required"}}})) as m:
        r = run_json(setup(tmp, m, provider={"api_key_env": None}))
        reqs = chat_requests(m)
    eq(r.rc, 1, "exit code")
    ok("authorization" not in reqs[0]["headers"], "no key was sent")
    msg = of_type(r, "error")[0]["message"]
    contains(msg, "no API key was sent", "message")
    contains(msg, "provider.api_key_env", "how to configure one")
    ok("check the API key" not in msg, "no advice to check a key that does not exist: %s" % msg)


@case
def empty_key_variable_is_empty_not_unset(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        r = run_json(setup(tmp, m), env={TEST_KEY_ENV: ""})
        n = len(chat_requests(m))
    eq(r.rc, 2, "exit code")
    eq(n, 0, "no request")
    contains(r.stderr, TEST_KEY_ENV, "names the variable")
    contains(r.stderr, "is empty", "says it is empty")
    ok("not set" not in r.stderr, "does not say it is unset: %s" % r.stderr)


@case
def missing_key_variable_is_a_config_error(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        r = run_json(setup(tmp, m), env={TEST_KEY_ENV: None})
        n = len(chat_requests(m))
    eq(r.rc, 2, "exit code")
    eq(n, 0, "no request")
    contains(r.stderr, TEST_KEY_ENV, "message")


@case
def text_mode_streams_answer_to_stdout_and_tools_to_stderr(tmp):
    with mock(seed_script()) as m:
        r = run_agentd(["--config", setup(tmp, m), "-p", PROMPT])
    eq(r.rc, 0, "exit code")
    contains(r.stdout, "2 + 3 = 5 and 2 × 3 = 6.", "answer on stdout")
    contains(r.stderr, "add", "tool activity on stderr")
    ok(not r.stdout.lstrip().startswith("{"), "plain text, not JSON")


@case
def text_mode_tool_lines_show_pretty_printed_arguments_on_one_line(tmp):
    pretty = '{\n  "a": 2,\n  "b": 3\n}'
    long_args = '{\n  "a": 2,\n  "b": 3,\n  "note": "%s"\n}' % ("x" * 400)
    calls = [("c1", "add", pretty), ("c2", "multiply", long_args)]
    sc = S.script(S.tool_call_stream(calls), S.text_stream("5 and 6"))
    with mock(sc) as m:
        r = run_agentd(["--config", setup(tmp, m), "-p", PROMPT])
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    lines = r.stderr.splitlines()
    contains(lines, '[tool] add {"a": 2, "b": 3}', "compact one-line arguments")
    line = [x for x in lines if x.startswith("[tool] multiply {")][0]
    ok(line.startswith('[tool] multiply {"a": 2, "b": 3, "note": "xxx'), "compacted: %r" % line)
    ok(line.endswith("...") and len(line) < 260, "bounded with an ellipsis: %r" % line)


@case
def prompt_from_stdin(tmp):
    with mock(S.script(S.text_stream("hi"))) as m:
        r = run_agentd(["--config", setup(tmp, m), "--json"], input="Say hi\n")
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(reqs[0]["json"]["messages"][-1]["content"], "Say hi", "prompt")


@case
def extra_headers_max_tokens_and_model_override(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, headers={"X-Title": "agentd-test"},
                    extra={"usage": {"include": True}, "temperature": 0.7,
                           "provider": {"only": ["a", "b"]}},
                    agent={"max_tokens": 123})
        r = run_json(cfg, extra_args=["--model", "other/model"])
        q = chat_requests(m)[0]
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(q["json"]["model"], "other/model", "model override")
    eq(q["json"]["max_tokens"], 123, "max_tokens")
    eq(q["json"]["usage"], {"include": True}, "extra.usage")
    eq(q["json"]["provider"], {"only": ["a", "b"]}, "extra.provider")
    contains(q["body"], '"temperature":0.7', "shortest float text")
    eq(q["headers"].get("x-title"), "agentd-test", "custom header")


@case
def reasoning_is_echoed_back_verbatim(tmp):
    first = S.tool_call_stream([("c1", "add", ADD_ARGS)])
    first["sse"].insert(0, S.chunk({"role": "assistant", "reasoning_content": "Let me "}))
    first["sse"].insert(1, S.chunk({"reasoning_content": "think."}))
    with mock(S.script(first, S.text_stream("5"))) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    asst = reqs[1]["json"]["messages"][2]
    eq(asst.get("reasoning_content"), "Let me think.", "reasoning_content echoed")
    eq("".join(e["text"] for e in of_type(r, "text_delta")), "5", "reasoning is not text")


@case
def mid_stream_error_object_fails(tmp):
    resp = S.text_stream("Hel")
    resp["sse"].insert(1, {"error": {"message": "upstream overloaded", "code": 502}})
    with mock(S.script(resp)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "exit code")
    contains(of_type(r, "error")[0]["message"], "upstream overloaded", "provider message")


@case
def usage_is_reported_per_step_and_in_total(tmp):
    with mock(seed_script()) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 0, "exit code")
    steps = of_type(r, "step_finish")
    eq(steps[0]["usage"]["total_tokens"], 15, "step usage")
    eq(steps[0]["finish_reason"], "tool_calls", "finish reason")
    eq(of_type(r, "finish")[0]["usage"]["total_tokens"], 30, "total usage")


@case
def relative_plugin_dir_resolves_against_config_folder(tmp):
    with mock(seed_script()) as m:
        cfg = setup(tmp, m)
        r = run_agentd(["--config", os.path.abspath(cfg), "--json", "-p", PROMPT], cwd="/")
    eq(r.rc, 0, "exit code (%s)" % r.stderr)


@case
def broken_plugin_stops_startup(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m)
        with open(os.path.join(tmp, "plugins", "zz_broken.so"), "w") as f:
            f.write("not a shared object\n")
        r = run_json(cfg)
        n = len(chat_requests(m))
    eq(r.rc, 2, "exit code")
    eq(n, 0, "no request")
    contains(r.stderr, "zz_broken.so", "names the file")


@case
def config_errors_exit_2_with_file_line_and_hint(tmp):
    path = os.path.join(tmp, "agent.toml")
    with open(path, "w") as f:
        f.write('[provider]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n\n'
                '[agent]\nmax_step = 3\n')
    r = run_agentd(["--config", path, "-p", "x"])
    eq(r.rc, 2, "exit code")
    contains(r.stderr, "agent.toml:6", "file:line")
    contains(r.stderr, "max_steps", "did you mean")
    with open(path, "w") as f:
        f.write('[provider]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = 5\n')
    r = run_agentd(["--config", path, "-p", "x"])
    eq(r.rc, 2, "exit code for a wrong type")
    contains(r.stderr, "string", "expected type")
    r = run_agentd(["--config", os.path.join(tmp, "missing.toml"), "-p", "x"])
    eq(r.rc, 2, "exit code for a missing file")
    contains(r.stderr, "missing.toml", "names the file")


@case
def cli_help_version_and_usage_errors():
    r = run_agentd(["--help"])
    eq(r.rc, 0, "--help exit code")
    contains(r.stdout, "--config", "help text")
    r = run_agentd(["--version"])
    eq(r.rc, 0, "--version exit code")
    contains(r.stdout, "agentd", "version text")
    r = run_agentd(["--frobnicate"])
    eq(r.rc, 2, "unknown option exit code")
    contains(r.stderr, "--frobnicate", "names the option")
    r = run_agentd(["--max-steps", "zero"])
    eq(r.rc, 2, "bad --max-steps")


SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read_src(*path):
    with open(os.path.join(SRC, *path), encoding="utf-8") as f:
        return f.read()


@case
def help_shows_the_optional_file_arguments():
    r = run_agentd(["--help"])
    eq(r.rc, 0, "--help")
    for text in ("--check-config [FILE]", "--init [FILE]"):
        contains(r.stdout, text, "help")


@case
def manual_describes_every_option_key_and_command():
    import re
    man = read_src("docs", "agentd.1").replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
    options = man[man.index(".SH OPTIONS"):man.index(".SH CONFIGURATION")]
    helped = set(re.findall(r"--[a-z][a-z-]+", run_agentd(["--help"]).stdout))
    documented = set(re.findall(r"--[a-z][a-z-]+", options))
    eq(sorted(helped - documented), [], "options in --help but not in the manual's OPTIONS")
    eq(sorted(documented - helped), [], "options in the manual but not in --help")
    config = read_src("docs", "config.md")
    keys = re.findall(r"^\| `([a-z_]+)`", config, re.M)
    tables = re.findall(r"^#+ (\[[a-z.]+)", config, re.M)
    ok(len(keys) >= 25 and "[limits" in tables, "config.md parsed: %r %r" % (keys, tables))
    missing = [k for k in keys + tables if k not in man]
    eq(missing, [], "config.md keys and tables the manual does not name")
    repl = read_src("docs", "repl.md")
    commands = re.findall(r"^\| `(/[a-z]+)", repl, re.M)
    ok(len(commands) >= 9, "repl.md parsed: %r" % commands)
    eq([c for c in commands if c not in man], [], "REPL commands the manual does not name")
    for var in ("AGENTD_CONFIG", "NO_COLOR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        contains(man[man.index(".SH ENVIRONMENT"):], var, "ENVIRONMENT")


@case
def unreachable_provider_fails_cleanly(tmp):
    # Port 9 (discard) on loopback: nothing listens there.
    cfg = write_config(tmp, "http://127.0.0.1:9/v1", max_retries=0)
    r = run_json(cfg)
    eq(r.rc, 1, "exit code")
    contains(of_type(r, "error")[0]["message"], "127.0.0.1:9", "names the URL")


@case
def html_page_with_status_200_is_an_error(tmp):
    page = {"status": 200, "body": "<html><body>Gateway login</body></html>",
            "content_type": "text/html"}
    with mock(S.script(page)) as m:
        r = run_json(setup(tmp, m))
    eq(r.rc, 1, "exit code")
    ok(of_type(r, "error"), "error event")



@case
def same_id_at_two_indexes_is_two_calls(tmp):
    # A server that reuses one id for two calls of a response: told apart by
    # their index values; the second gets a generated id.
    with mock(seed_script(ids=("dup", "dup"))) as m:
        r = run_json(setup(tmp, m))
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    calls = of_type(r, "tool_call")
    eq([(c["name"], c["arguments"]) for c in calls],
       [("add", ADD_ARGS), ("multiply", ADD_ARGS)], "two calls, arguments not mixed")
    eq(calls[0]["id"], "dup", "first keeps the provider id")
    ok(calls[1]["id"] != "dup", "second gets its own id: %r" % calls[1]["id"])
    eq([x["content"] for x in of_type(r, "tool_result")], ["5", "6"], "results")


@case
def a_timed_out_tool_that_is_not_thread_safe_does_not_stall_later_steps(tmp):
    # Step 1's call outlives its timeout and keeps the tool's plugin busy;
    # step 2 calls the same kind of tool: it must get an error at once, not
    # wait for ever behind the abandoned call.
    slow = [("s1", "slow_counter", '{"ms": 600000}')]
    again = [("s2", "slow_counter", '{"ms": 0}')]
    sc = S.script(S.tool_call_stream(slow), S.tool_call_stream(again), S.text_stream("done"))
    with mock(sc) as m:
        # In process: the abandoned call keeps its thread (a worker would be
        # killed at the timeout, test_plugin_workers).
        cfg = setup(tmp, m, plugins=("serial",),
                    agent={"tool_timeout_s": 0.5, "isolation": "in-process"})
        # A stall would wait ten minutes: run_agentd's timeout catches it.
        r = run_json(cfg, timeout=30)
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(len(reqs), 3, "requests")
    res = [x["content"] for x in of_type(r, "tool_result")]
    contains(res[0], "timed out", "step 1")
    contains(res[1], "not run", "step 2")


@case
def a_tool_timeout_counts_only_its_own_running_time(tmp):
    # One worker thread: add waits behind nap for 1.5 s, longer than its own
    # 1 s timeout, and then runs in microseconds. It must not time out.
    calls = [("n", "nap", '{"ms": 1500}'), ("a", "add", ADD_ARGS)]
    sc = S.script(S.tool_call_stream(calls), S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m, plugins=("add", "nap"), raw_append="[tools.add]\ntimeout_s = 1\n",
                    agent={"isolation": "in-process"})
        r = run_json(cfg, env={"UV_THREADPOOL_SIZE": "1"})
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq([x["content"] for x in of_type(r, "tool_result")], ["slept 1500 ms", "5"], "results")


def hung_gates(tmp, n):
    """n calls of gate that never open: each times out and keeps its thread."""
    return [("g%d" % i, "gate", json.dumps({"path": os.path.join(tmp, "never%d" % i)}))
            for i in range(n)]


GATE_TIMEOUTS = "[tools.gate]\ntimeout_s = 0.3\n[tools.add]\ntimeout_s = 1\n" \
                "[tools.multiply]\ntimeout_s = 1\nisolation = \"process\"\n"


@case
def calls_that_cannot_get_a_worker_thread_are_reported_as_not_started(tmp):
    # One worker thread, held by a call that timed out and still runs: the
    # next step's calls (in-process add, isolated multiply) never get a
    # thread. They are answered at once as not started, never "timed out".
    sc = S.script(S.tool_call_stream(hung_gates(tmp, 1)),
                  S.tool_call_stream([("a", "add", ADD_ARGS), ("m", "multiply", ADD_ARGS)]),
                  S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m, plugins=("add", "multiply", "gate"), raw_append=GATE_TIMEOUTS,
                    agent={"isolation": "in-process"})
        r = run_json(cfg, env={"UV_THREADPOOL_SIZE": "1"})
        reqs = chat_requests(m)
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    eq(len(reqs), 3, "requests")
    res = of_type(r, "tool_result")
    eq(res[0]["content"], "tool 'gate' timed out after 0.3 s (its result will be ignored)",
       "step 1")
    for x, name in zip(res[1:], ("add", "multiply")):
        eq(x["content"], "tool '%s' was not started: the only worker thread is still held by "
           "an earlier call that timed out" % name, name)


@case
def four_hung_calls_do_not_starve_later_ones(tmp):
    # libuv's own default is 4 worker threads; agentd starts with more
    # (UV_THREADPOOL_SIZE unset), so four hung calls leave room for others.
    sc = S.script(S.tool_call_stream(hung_gates(tmp, 4)),
                  S.tool_call_stream([("a", "add", ADD_ARGS), ("m", "multiply", ADD_ARGS)]),
                  S.text_stream("done"))
    with mock(sc) as m:
        cfg = setup(tmp, m, plugins=("add", "multiply", "gate"), raw_append=GATE_TIMEOUTS,
                    agent={"isolation": "in-process"})
        r = run_json(cfg, env={"UV_THREADPOOL_SIZE": None})
    eq(r.rc, 0, "exit code (%s)" % r.stderr)
    res = [x["content"] for x in of_type(r, "tool_result")]
    eq(len(res), 6, "results")
    ok(all("timed out" in x for x in res[:4]), "the gates time out: %r" % res[:4])
    eq(res[4:], ["5", "6"], "later calls run")


@case
def a_cancelled_tool_reports_its_real_running_time(tmp):
    # SIGINT while gate runs (timeout 60 s): its result event and the
    # session store give the time it ran until the cancellation, not 60 s.
    import signal
    import sqlite3
    from lib import spawn_agentd, Events
    gate = os.path.join(tmp, "gate")
    sc = S.script(S.tool_call_stream([("g", "gate", json.dumps({"path": gate}))]))
    state = os.path.join(tmp, "state")
    with mock(sc) as m:
        cfg = setup(tmp, m, plugins=("gate",))
        p = spawn_agentd(["--config", cfg, "--json", "-p", "go", "--session", "c"],
                         env={"XDG_STATE_HOME": state})
        try:
            ev = Events(p)
            ev.wait(lambda e: e.get("type") == "tool_call")
            deadline = time.monotonic() + 20
            while not os.path.exists(gate + ".started") and time.monotonic() < deadline:
                time.sleep(0.01)  # polling for the plugin's mark, not synchronising
            ok(os.path.exists(gate + ".started"), "gate started")
            t0 = time.monotonic()
            p.send_signal(signal.SIGINT)
            res = ev.wait(lambda e: e.get("type") == "tool_result")
            p.wait(20)
            waited = time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
    eq(p.returncode, 130, "exit code")
    contains(res["content"], "while it was running", "result")
    db = sqlite3.connect(os.path.join(state, "agentd", "sessions.db"))
    (dur,), = db.execute("SELECT duration FROM tool_calls").fetchall()
    db.close()
    ok(0 < dur < 30, "stored duration %r (waited %.2f s)" % (dur, waited))


@case
def output_that_cannot_be_written_is_a_failure(tmp):
    import subprocess
    from lib import agentd_cmd, agentd_env
    with mock(S.script(S.text_stream("hello"), S.text_stream("hello"))) as m:
        cfg = setup(tmp, m)
        for extra in ([], ["--json"]):
            with open("/dev/full", "w") as full:
                p = subprocess.run(agentd_cmd(["--config", cfg, "-p", "hi"] + extra), stdout=full,
                                   stderr=subprocess.PIPE, env=agentd_env(), timeout=60)
            eq(p.returncode, 1, "exit code %s" % extra)
            contains(p.stderr.decode(), "cannot write the output", "message")


@case
def a_closed_pipe_on_stdout_is_exit_1_and_the_recording_is_saved(tmp):
    # `agentd ... --record x.yaml | head -c 10`: the reader takes 10 bytes
    # and goes. The answer is far larger than a pipe holds, so agentd writes
    # again after the reader closed. No SIGPIPE death: the run ends, the
    # recording is written whole, and the exit is 1 with the message.
    import subprocess
    from lib import agentd_cmd, agentd_env
    answer = "".join("word%d " % i for i in range(40000))  # about 280 KB
    calls = [("c1", "add", '{"a": 2, "b": 3}')]
    for extra in ([], ["--json"]):
        d = os.path.join(tmp, "json" if extra else "text")
        os.mkdir(d)
        cas = os.path.join(d, "run.yaml")
        sc = S.script(S.tool_call_stream(calls), S.text_stream(answer, pieces=500))
        with mock(sc) as m:
            cfg = setup(d, m)
            p = subprocess.Popen(agentd_cmd(["--config", cfg, "--record", cas, "-p", "hi"] + extra),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=agentd_env())
            head = p.stdout.read(10)
            p.stdout.close()  # the reader is gone
            err = p.stderr.read().decode()
            rc = p.wait(timeout=60)
            n = len(chat_requests(m))
        eq(len(head), 10, "%s: the reader got its bytes" % extra)
        eq(rc, 1, "%s: exit code, not death by SIGPIPE (stderr: %s)" % (extra, err[-500:]))
        contains(err, "cannot write the output: Broken pipe", "%s: message" % extra)
        eq(n, 2, "%s: the run went to its end" % extra)
        ok(os.path.exists(cas), "%s: the recording was saved" % extra)
        r = run_agentd(["--config", cfg, "--replay", cas, "-p", "hi"] + extra)
        eq(r.rc, 0, "%s: the recording replays (%s)" % (extra, r.stderr[-500:]))
        contains(r.stdout, "word39999", "%s: with the whole answer" % extra)


@case
def a_misspelt_confirm_tools_entry_stops_startup(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, agent={"confirm_tools": ["ad"]})
        r = run_json(cfg)
        n = len(chat_requests(m))
    eq(r.rc, 2, "exit code")
    eq(n, 0, "no request")
    contains(r.stderr, "'ad'", "names the entry")
    contains(r.stderr, "add, multiply", "lists the loaded tools")


@case
def a_misspelt_plugin_config_table_stops_startup(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, plugin_config={"addd": {"scale": 2}})
        r = run_json(cfg)
        n = len(chat_requests(m))
    eq(r.rc, 2, "exit code (%s)" % r.stderr)
    eq(n, 0, "no request")
    # [plugins.config.addd] is the 4th table of the file write_config writes.
    line = open(cfg).read().splitlines().index("[plugins.config.addd]") + 1
    contains(r.stderr, "agentd: %s:%d:17: [plugins.config.addd] names no loaded plugin "
             "(did you mean 'add'? loaded: add, multiply)" % (cfg, line), "message")


def sub(tmp, name):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    return d


def line_of(path, text):
    """1-based number of the first line of the file that starts with text."""
    for i, ln in enumerate(open(path).read().splitlines(), 1):
        if ln.startswith(text):
            return i
    raise AssertionError("%r not in %s" % (text, path))


@case
def config_messages_have_file_line_and_column(tmp):
    # A missing key variable, a missing plugin folder and a misspelt
    # confirm_tools entry all say where the setting was written.
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m)
        r = run_json(cfg, env={TEST_KEY_ENV: None})
        eq(r.rc, 2, "exit code, no key")
        contains(r.stderr, "agentd: %s:%d:1: the API key variable %s (provider.api_key_env) is "
                 "not set" % (cfg, line_of(cfg, "api_key_env"), TEST_KEY_ENV), "key message")
        cfg = write_config(tmp, m.base_url, plugins_dir="nowhere")
        r = run_json(cfg)
        eq(r.rc, 2, "exit code, no plugin folder")
        contains(r.stderr, "agentd: %s:%d:1: plugin directory %s/nowhere: No such file or "
                 "directory" % (cfg, line_of(cfg, "dir ="), tmp), "plugin folder message")
        cfg = setup(sub(tmp, "c"), m, agent={"confirm_tools": ["add", "mul"]})
        r = run_json(cfg)
        eq(r.rc, 2, "exit code, confirm_tools")
        contains(r.stderr, "agentd: %s:%d:25: agent.confirm_tools names 'mul', which is no "
                 "loaded tool (did you mean 'multiply'? loaded: add, multiply)"
                 % (cfg, line_of(cfg, "confirm_tools")), "confirm_tools message")
        eq(len(chat_requests(m)), 0, "no request")
    path = os.path.join(tmp, "syntax.toml")
    with open(path, "w") as f:
        f.write('[provider]\nbase_url = "http://127.0.0.1:9/v1\nmodel = "m"\n')
    r = run_agentd(["--config", path, "-p", "x"])
    eq(r.rc, 2, "exit code, syntax error")
    contains(r.stderr, "agentd: %s:2:12: unterminated string" % path, "TOML syntax error")


@case
def base_url_naming_the_endpoint_is_refused(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, provider={"base_url": m.base_url + "/chat/completions"})
        r = run_json(cfg)
        eq(r.rc, 2, "exit code (%s)" % r.stderr)
        contains(r.stderr, "%s:%d:1: provider.base_url ends with /chat/completions, which agentd "
                 "appends itself: drop the suffix (base_url = \"%s\")"
                 % (cfg, line_of(cfg, "base_url"), m.base_url), "message")
        cfg = setup(sub(tmp, "b"), m)
        r = run_json(cfg, extra_args=["--base-url", m.base_url + "/chat/completions/"])
        eq(r.rc, 2, "--base-url too")
        contains(r.stderr, "agentd: provider.base_url ends with /chat/completions", "no file place")
        cfg = setup(sub(tmp, "c"), m, provider={"base_url": "https://"})
        r = run_json(cfg)
        eq(r.rc, 2, "no host")
        contains(r.stderr, "%s:%d:1: provider.base_url 'https://' has no host name"
                 % (cfg, line_of(cfg, "base_url")), "no host message")
        eq(len(chat_requests(m)), 0, "no request")


@case
def empty_prompt_and_empty_model_are_refused(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m)
        r = run_json(cfg, prompt="")
        eq(r.rc, 2, "-p '' exit code")
        contains(r.stderr, "agentd: the prompt given with -p is empty", "-p '' message")
        r = run_json(cfg, prompt=" \n\t")
        eq(r.rc, 2, "blank -p exit code")
        r = run_agentd(["--config", cfg, "--json"], input=" \n \n")
        eq(r.rc, 2, "blank stdin exit code")
        contains(r.stderr, "the prompt read from standard input is empty", "stdin message")
        r = run_json(cfg, extra_args=["--model", ""])
        eq(r.rc, 2, "--model '' exit code")
        contains(r.stderr, "--model needs a model name", "--model '' message")
        cfg = setup(sub(tmp, "b"), m, model="")
        r = run_json(cfg)
        eq(r.rc, 2, "model = '' exit code")
        contains(r.stderr, "%s:%d:1: provider.model must not be empty"
                 % (cfg, line_of(cfg, "model")), "model message")
        eq(len(chat_requests(m)), 0, "no request")


@case
def check_config_refuses_what_a_run_refuses_and_lists_tools(tmp):
    with mock(S.script(S.text_stream("x"))) as m:
        cfg = setup(tmp, m, raw_append='[tools.multiply]\nisolation = "process"\n')
    r = run_agentd(["--check-config", cfg], env={TEST_KEY_ENV: None})
    eq(r.rc, 2, "exit code without the key (%s)" % r.stdout)
    contains(r.stderr, "the API key variable %s (provider.api_key_env) is not set" % TEST_KEY_ENV,
             "the run's message")
    state = os.path.join(tmp, "state")
    r = run_agentd(["--check-config", cfg], env={"XDG_STATE_HOME": state})
    eq(r.rc, 0, "exit code with the key (%s)" % r.stderr)
    contains(r.stdout, "# tools:\n#   add (add.so, worker)\n"
             "#   multiply (multiply.so, per-call)\n", "loaded tools")
    contains(r.stdout, "# sessions: %s/agentd/sessions.db\n" % state, "sessions path")
    ok("sk-test-dummy" not in r.stdout + r.stderr, "key not shown")


if __name__ == "__main__":
    main()

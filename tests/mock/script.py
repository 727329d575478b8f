"""script.py -- builders for mock server scripts, shaped like real providers.

Each builder returns one response (a dict for the "responses" list of
server.py). Streaming builders produce chat.completion.chunk objects as
OpenAI/OpenRouter send them: a first delta with the role, content or tool-call
pieces, a final chunk with an empty delta and finish_reason, an optional usage
chunk with "choices": [], then "data: [DONE]". Pass finish=None to leave the
finish chunk out and done=False to leave [DONE] out (truncated-stream tests).
Extra keyword arguments (status, headers, chunk, close_after, hang_after,
delay_ms, retry_after, framing, content_type) are copied into the response.
"""

import time

DEFAULT_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
_CREATED = int(time.time())


def script(*responses):
    """The whole script: script(r1, r2, ...) -> {"responses": [r1, r2, ...]}."""
    return {"responses": list(responses)}


def chunk(delta, finish=None, id="chatcmpl-mock", model="test-model"):
    """One chat.completion.chunk with a single choice."""
    return {"id": id, "object": "chat.completion.chunk", "created": _CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(usage=None, id="chatcmpl-mock", model="test-model"):
    return {"id": id, "object": "chat.completion.chunk", "created": _CREATED, "model": model,
            "choices": [], "usage": dict(usage or DEFAULT_USAGE)}


def split_text(text, pieces=None):
    """pieces=None: word-sized pieces with the leading space kept (" world");
    an int N: N nearly equal pieces; a list: used as given."""
    if isinstance(pieces, (list, tuple)):
        return list(pieces)
    if pieces is None:
        out = []
        for i, word in enumerate(text.split(" ")):
            out.append(word if i == 0 else " " + word)
        return [p for p in out if p]
    n = max(1, min(int(pieces), len(text)))
    step, extra = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        size = step + (1 if i < extra else 0)
        out.append(text[pos:pos + size])
        pos += size
    return out


def _finish(events, finish, usage, done, opts):
    if finish is not None:
        events.append(chunk({}, finish))
    if usage:
        events.append(usage_chunk(None if usage is True else usage))
    if done:
        events.append("[DONE]")
    resp = {"status": 200, "sse": events}
    resp.update(opts)
    return resp


def text_stream(text, pieces=None, finish="stop", usage=None, done=True, **opts):
    """A streamed assistant text reply. usage=True adds DEFAULT_USAGE."""
    events = []
    for i, p in enumerate(split_text(text, pieces)):
        delta = {"role": "assistant", "content": p} if i == 0 else {"content": p}
        events.append(chunk(delta))
    if not events:
        events.append(chunk({"role": "assistant", "content": ""}))
    return _finish(events, finish, usage, done, opts)


def tool_call_stream(calls, text=None, split_args=None, id_mode="first", index_base=0,
                     same_index=False, finish="tool_calls", usage=None, done=True, **opts):
    """Streamed tool calls. calls: [(id, name, args_text)].

    Each call opens with a delta carrying index, id, type and name. With
    split_args=None the whole argument text rides in that first delta (as some
    providers send it); with split_args=N the first delta has arguments "" and
    the text follows in pieces of at most N characters.
    id_mode: "first" (id only in the opening delta, like OpenAI), "every" (id
    repeated in every delta), "none" (never sent). index: index_base + k, or
    index_base for every call when same_index (calls told apart by id only).
    text: assistant content streamed before the calls."""
    events = []
    if text:
        for i, p in enumerate(split_text(text)):
            events.append(chunk({"role": "assistant", "content": p} if i == 0 else {"content": p}))
    for k, (cid, name, args) in enumerate(calls):
        index = index_base if same_index else index_base + k
        if split_args:
            step = int(split_args)
            parts = [args[i:i + step] for i in range(0, len(args), step)]
            first_args = ""
        else:
            parts, first_args = [], args
        opening = {"index": index, "type": "function",
                   "function": {"name": name, "arguments": first_args}}
        if id_mode != "none":
            opening["id"] = cid
        delta = {"tool_calls": [opening]}
        if k == 0 and not text:
            delta = {"role": "assistant", "content": None, "tool_calls": [opening]}
        events.append(chunk(delta))
        for part in parts:
            tc = {"index": index, "function": {"arguments": part}}
            if id_mode == "every":
                tc["id"] = cid
            events.append(chunk({"tool_calls": [tc]}))
    return _finish(events, finish, usage, done, opts)


def message(content=None, tool_calls=None, finish=None, usage=True, id="chatcmpl-mock",
            model="test-model", **opts):
    """A non-streaming chat.completion. tool_calls: [(id, name, args_text)]."""
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = [{"id": cid, "type": "function",
                              "function": {"name": name, "arguments": args}}
                             for cid, name, args in tool_calls]
    if finish is None:
        finish = "tool_calls" if tool_calls else "stop"
    body = {"id": id, "object": "chat.completion", "created": _CREATED, "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}]}
    if usage:
        body["usage"] = dict(DEFAULT_USAGE if usage is True else usage)
    resp = {"status": 200, "body": body}
    resp.update(opts)
    return resp


def error(status, msg="mock error", retry_after=None, **opts):
    """An error response with an OpenAI-style JSON error body."""
    resp = {"status": status,
            "body": {"error": {"message": msg, "type": "mock_error", "code": status}}}
    if retry_after is not None:
        resp["retry_after"] = retry_after
    resp.update(opts)
    return resp

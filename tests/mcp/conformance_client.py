"""conformance_client.py -- agentd's agent loop as the client of the official
MCP client conformance scenarios.

    conformance client --command "python3 tests/mcp/conformance_client.py" --scenario S

The runner starts the scenario's MCP server and runs this program with the
server's URL as the last argument and MCP_CONFORMANCE_SCENARIO=S in the
environment. This program starts the mock provider (tests/mock) with a
script that makes the model call the scenario's tool, writes a config with
the URL as a required MCP server, and runs the real `agentd -p` against both:
initialize, tools/list, the scripted tools/call, the end of the session. Its
exit status is agentd's.

Scenarios: initialize (no tool call: the run only starts the server and
answers), tools_call (add_numbers {a, b}), sse-retry (test_reconnection {});
any other scenario gets a run without a tool call.

Environment: AGENTD (the binary; default AGENTD_DIR/agentd or the build in
this tree), AGENTD_WRAP (a command prefix such as valgrind).
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "mock"))

import script as S  # noqa: E402
from server import MockServer  # noqa: E402

CALLS = {
    "tools_call": [("call_1", "srv__add_numbers", {"a": 2, "b": 3})],
    "sse-retry": [("call_1", "srv__test_reconnection", {})],
}


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: conformance_client.py URL\n")
        return 2
    url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    calls = CALLS.get(scenario, [])
    responses = []
    if calls:
        responses.append(S.tool_call_stream([(i, n, json.dumps(a)) for i, n, a in calls]))
    responses.append(S.text_stream("done"))
    agentd = os.environ.get("AGENTD") or os.path.join(
        os.path.abspath(os.environ.get("AGENTD_DIR") or SRC), "agentd")
    wrap = shlex.split(os.environ.get("AGENTD_WRAP", ""))
    with tempfile.TemporaryDirectory(prefix="agentd-conformance-") as tmp:
        m = MockServer(S.script(*responses)).start()
        try:
            cfg = os.path.join(tmp, "agent.toml")
            with open(cfg, "w", encoding="utf-8") as f:
                f.write('[provider]\nbase_url = %s\napi_key_env = "AGENTD_CONFORMANCE_KEY"\n'
                        'model = "test-model"\nmax_retries = 0\n\n'
                        '[agent]\nmax_steps = 4\n\n'
                        '[mcp.servers.srv]\nurl = %s\nrequired = true\nstartup_timeout_s = 20\n'
                        'tool_timeout_s = 20\n'
                        % (json.dumps(m.base_url), json.dumps(url)))
            env = dict(os.environ, AGENTD_CONFORMANCE_KEY="sk-conformance",
                       XDG_STATE_HOME=tmp, NO_PROXY="127.0.0.1,localhost")
            for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                env.pop(k, None)
            p = subprocess.run(wrap + [agentd, "--config", cfg, "--json", "-p",
                                       "Use the tool of the MCP server."],
                               env=env, stdout=subprocess.PIPE)
            sys.stdout.write(p.stdout.decode("utf-8", "replace"))
            rc = p.returncode
            # The model's calls must have come back as results, not errors.
            results = [json.loads(x) for x in p.stdout.decode().splitlines()
                       if x.strip() and json.loads(x).get("type") == "tool_result"]
            if rc == 0 and calls and (len(results) != len(calls)
                                      or any(r["is_error"] for r in results)):
                sys.stderr.write("conformance_client: a tool call failed: %r\n" % results)
                rc = 1
        finally:
            m.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())

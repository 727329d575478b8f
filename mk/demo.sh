#!/bin/sh
# demo.sh -- the offline demo behind `make run`.
#
# Replays tests/fixtures/demo.yaml, a cassette recorded with --record (see
# tests/fixtures/record_demo.py): agentd sends its requests to no one; each
# one is checked against the recorded request and answered with the recorded
# stream. The tools are real: plugins/add.so and plugins/multiply.so compute
# 5 and 6. No network, no API key.
set -eu
cd "$(dirname "$0")/.."
AGENTD=${AGENTD:-./agentd}
PROMPT="Add and multiply the number 2 and 3"

echo "== agentd demo (offline: replaying tests/fixtures/demo.yaml) =="
echo "\$ agentd --config configs/demo.toml --replay tests/fixtures/demo.yaml -p \"$PROMPT\""
echo
# The answer streams to stdout, tool activity goes to stderr.
if ! env -u AGENTD_DEMO_KEY "$AGENTD" --config configs/demo.toml \
        --replay tests/fixtures/demo.yaml -p "$PROMPT"; then
    echo "demo: agentd failed" >&2
    exit 1
fi
echo
cat <<'TXT'

== next: a real provider ==
  export OPENROUTER_API_KEY=sk-or-...      # your OpenRouter key
  ./agentd --config configs/agent.toml -p "Add and multiply the number 2 and 3"
Other providers: configs/openai.toml, configs/groq.toml, configs/ollama.toml,
configs/llama-cpp.toml. Record a run with --record FILE and replay it offline
with --replay FILE (docs/testing.md).
TXT

#!/bin/sh
# docker-entrypoint.sh -- the entry point of the Docker image (Dockerfile).
#
#   docker run IMAGE demo        the offline demo: replays the recorded run
#                                of `make run`, no key, no network, nothing
#                                mounted
#   docker run IMAGE ARGS...     agentd ARGS...
set -eu
if [ "${1:-}" != demo ]; then
    exec agentd "$@"
fi
PROMPT="Add and multiply the number 2 and 3"
echo "== agentd demo (offline: replaying /usr/share/agentd/demo/demo.yaml) =="
echo "\$ agentd --config /etc/agentd/demo.toml --replay /usr/share/agentd/demo/demo.yaml -p \"$PROMPT\""
echo
# The answer streams to stdout, tool activity goes to stderr.
agentd --config /etc/agentd/demo.toml --replay /usr/share/agentd/demo/demo.yaml -p "$PROMPT"
cat <<'TXT'

== next: a real provider ==
  docker run --rm -e OPENROUTER_API_KEY agentd -p "Add and multiply the number 2 and 3"
  docker run --rm -it -e OPENROUTER_API_KEY agentd          # a conversation
The image's configs are in /etc/agentd (agent.toml is the default); README.md,
"Docker", shows how to use your own, keep sessions on a volume and reach a
local llama.cpp or Ollama server.
TXT

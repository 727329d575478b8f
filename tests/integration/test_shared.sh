#!/bin/sh
# test_shared.sh -- the shared measuring tools, when ../shared is there:
# the official TOML 1.0 suite against tests/toml-decoder, and the recorded
# provider conformance suite against agentd (all cases; only the seed under
# valgrind, where the whole suite would take too long). Skips cleanly
# without ../shared.
set -u
cd "$(dirname "$0")/../.." || exit 2
AGENTD_DIR=${AGENTD_DIR:-.}
shared=../shared
passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# agentd's tool cache (docs/plugins.md) goes here, never into the real one.
export XDG_CACHE_HOME="$tmp/cache"

# Reads the last "N passed, M failed" line of a log into the totals.
tally() { # name, log, rc
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
    if [ -n "$line" ] && [ "$3" -eq 0 ] && echo "$line" | grep -q ' 0 failed'; then
        passed=$((passed + 1)); echo "ok $1: $line"
    else
        failed=$((failed + 1)); echo "FAIL $1 (exit $3): ${line:-no summary}"; tail -n 30 "$2"
    fi
}

if [ -x "$shared/toml-test/run" ]; then
    "$shared/toml-test/run" -- "$AGENTD_DIR/tests/toml-decoder" >"$tmp/toml.log" 2>&1
    tally toml-test "$tmp/toml.log" $?
else
    skipped=$((skipped + 1)); echo "skip toml-test: $shared/toml-test not found"
fi

if [ -f "$shared/conformance/run.py" ] && [ -d "$shared/cassettes" ]; then
    mkdir -p "$tmp/plugins"
    for p in plugins/add.so plugins/multiply.so tests/plugins/weather.so; do
        ln -s "$(cd "$AGENTD_DIR" && pwd)/$p" "$tmp/plugins/"
    done
    agent="$(cd "$AGENTD_DIR" && pwd)/agentd"
    [ -n "${AGENTD_WRAP:-}" ] && agent="$AGENTD_WRAP $agent"
    cases=
    [ -n "${AGENTD_WRAP:-}" ] && cases="$shared/cassettes/seed/stream_unique_tool_call_ids.yaml"
    # shellcheck disable=SC2086
    python3 "$shared/conformance/run.py" --agent "$agent" --plugins-dir "$tmp/plugins" \
        -j 2 -q --timeout 120 $cases >"$tmp/conf.log" 2>&1
    tally conformance "$tmp/conf.log" $?
else
    skipped=$((skipped + 1)); echo "skip conformance: $shared/conformance not found"
fi
echo "test_shared: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

# lib.sh -- what the shell tests share; source it from the top of the tree:
#
#   cd "$(dirname "$0")/../.." || exit 2
#   . tests/integration/lib.sh
#   check "what it shows" command args...
#   finish test_name
#
# $tmp is a temporary folder, removed on exit; agentd's tool cache is in
# it (XDG_CACHE_HOME). check() runs a command and
# counts it as passed (exit 0) or failed, showing the end of its output;
# finish() prints "<name>: N passed, M failed" (the line tests/run.sh
# reads) and returns non-zero when something failed.
passed=0 failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# agentd's tool cache (docs/plugins.md) goes here, never into the real one.
export XDG_CACHE_HOME="$tmp/cache"
check() { # description, command...
    d=$1; shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1)); echo "ok $d"
    else
        failed=$((failed + 1)); echo "FAIL $d"; sed 's/^/    /' "$tmp/out" | tail -n 20
    fi
}
finish() { # test name
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

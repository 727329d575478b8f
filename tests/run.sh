#!/bin/sh
# run.sh -- runs every test program and prints one summary line,
# "N passed, M failed, K skipped".
#
# Each program prints "<name>: N passed, M failed[, K skipped]" as its last
# line (K: cases that could not run here, each with its reason); a program
# that exits non-zero without such a line counts as one failure.
# Environment:
#   AGENTD_DIR   where the build lives (default: the source tree)
#   AGENTD_WRAP  command prefix for every test process (e.g. valgrind ...)
#   TESTS        only run programs whose name contains this
set -u
cd "$(dirname "$0")/.." || exit 2
AGENTD_DIR=${AGENTD_DIR:-.}
export AGENTD_DIR
export AGENTD_WRAP="${AGENTD_WRAP:-}"
export AGENTD_SRC="$PWD"
# No real provider is ever reached from tests.
unset OPENAI_API_KEY OPENROUTER_API_KEY http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY
export NO_PROXY="127.0.0.1,localhost"

passed=0 failed=0 skipped=0 progs=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_one() { # name, command...
    name=$1; shift
    case "$name" in *"${TESTS:-}"*) ;; *) return ;; esac
    progs=$((progs + 1))
    "$@" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    s=0
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
        f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
        case "$line" in
            *" failed, "*" skipped"*) s=$(echo "$line" | sed -E 's/.* failed, ([0-9]+) skipped.*/\1/') ;;
        esac
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    else
        p=0; f=1
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    skips=""
    [ "$s" -ne 0 ] && skips=", $s skipped"
    if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
        echo "---- $name (exit $rc) ----"
        tail -n 60 "$log"
        echo "FAIL $name: $p passed, $f failed$skips"
    else
        echo "ok   $name: $p passed$skips"
        # Say what could not run, so that a green summary hides nothing.
        grep -E '^ *skip [^ ]+' "$log" | sed 's/^ */       /'
    fi
}

for t in "$AGENTD_DIR"/build/unit/test_*; do
    [ -x "$t" ] || continue
    # shellcheck disable=SC2086
    run_one "$(basename "$t")" $AGENTD_WRAP "$t"
done
for t in tests/integration/test_*.py; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .py)" python3 "$t"
done
for t in tests/integration/test_*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .sh)" sh "$t"
done

echo "$progs programs"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$progs" -gt 0 ]

#!/bin/sh
# test_runner.sh -- tests/run.sh counts what each program passed, failed and
# skipped, and its last line says all three. Runs tests/run.sh on fake test
# programs of every kind it knows (a C program built with tests/harness.h, a
# Python file using tests/integration/lib.py, a shell script), picked out
# with TESTS so that no real test runs twice.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib.sh
has() { # file, fixed string
    grep -qF -- "$2" "$1" || { echo "no '$2' in:"; cat "$1"; return 1; }
}

mkdir -p "$tmp/build/unit"
cat > "$tmp/c.c" <<'C'
#include "harness.h"
TEST(works) { CHECK_EQ(1 + 1, 2); }
TEST(needs_a_tool) { SKIP("frobnicate is not installed"); CHECK(0); }
int main(int argc, char **argv)
{
    HARNESS_INIT(argc, argv);
    RUN(works);
    RUN(needs_a_tool);
    return harness_report("test_runner_fake_c");
}
C
check "a C test built with harness.h" \
    cc -std=c11 -Wall -Wextra -Werror -Itests -o "$tmp/build/unit/test_runner_fake_c" "$tmp/c.c"
"$tmp/build/unit/test_runner_fake_c" >"$tmp/c.log" 2>&1
check "SKIP gives its reason" has "$tmp/c.log" "skip needs_a_tool: frobnicate is not installed"
check "harness_report counts the skip" has "$tmp/c.log" "test_runner_fake_c: 1 passed, 0 failed, 1 skipped"

cat > "$tmp/build/unit/test_runner_fake_py" <<PY
#!/usr/bin/env python3
import sys
sys.path.insert(0, "$PWD/tests/integration")
from lib import case, main, skip
@case
def works():
    pass
@case
def needs_a_tool(tmp):
    skip("frobnicate is not installed")
    raise AssertionError("not reached")
main()
PY
chmod +x "$tmp/build/unit/test_runner_fake_py"
"$tmp/build/unit/test_runner_fake_py" >"$tmp/py.log" 2>&1
check "lib.skip gives its reason" has "$tmp/py.log" "skip needs_a_tool: frobnicate is not installed"
check "lib.main counts the skip" has "$tmp/py.log" "test_runner_fake_py: 1 passed, 0 failed, 1 skipped"

printf '#!/bin/sh\necho "test_runner_fake_sh: 0 passed, 0 failed, 2 skipped"\n' \
    > "$tmp/build/unit/test_runner_fake_sh"
chmod +x "$tmp/build/unit/test_runner_fake_sh"

AGENTD_DIR="$tmp" AGENTD_WRAP="" TESTS=test_runner_fake sh tests/run.sh >"$tmp/run.log" 2>&1
rc=$?
check "run.sh exits 0 when nothing failed" test "$rc" -eq 0
check "a program's line shows its skips" has "$tmp/run.log" "ok   test_runner_fake_sh: 0 passed, 2 skipped"
check "the reasons are shown" has "$tmp/run.log" "skip needs_a_tool: frobnicate is not installed"
check "the last line counts the skips" sh -c "tail -n 1 '$tmp/run.log' | grep -qx '2 passed, 0 failed, 4 skipped' || { cat '$tmp/run.log'; exit 1; }"

# A failure still fails the run, and is still counted with the skips.
printf '#!/bin/sh\necho "test_runner_fake_bad: 1 passed, 1 failed, 1 skipped"; exit 1\n' \
    > "$tmp/build/unit/test_runner_fake_bad"
chmod +x "$tmp/build/unit/test_runner_fake_bad"
AGENTD_DIR="$tmp" AGENTD_WRAP="" TESTS=test_runner_fake sh tests/run.sh >"$tmp/run.log" 2>&1
rc=$?
check "run.sh exits non-zero on a failure" test "$rc" -ne 0
check "the last line counts the failure" sh -c "tail -n 1 '$tmp/run.log' | grep -qx '3 passed, 1 failed, 5 skipped' || { cat '$tmp/run.log'; exit 1; }"

finish test_runner

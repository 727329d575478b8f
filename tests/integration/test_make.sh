#!/bin/sh
# test_make.sh -- the Makefile in a scratch copy of the sources:
#  - touching any header rebuilds exactly the objects, plugins and
#    benchmarks whose sources include it (directly or not), as the compiler
#    itself reports them (cc -MM), and nothing else; editing
#    configs/starter.toml rebuilds runtime/cli/init.c, which embeds it;
#  - a header that is no longer included may be deleted without breaking
#    the build;
#  - `make run` builds only what the demo needs (agentd and its plugins).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib.sh
# The make of `make test` passes its flags (jobserver, -s) in the environment.
unset MAKEFLAGS MFLAGS MAKELEVEL
src="$tmp/src"
mkdir -p "$src"
cp -R Makefile mk include runtime plugins tests bench configs "$src/"
make -s -C "$src" clean >/dev/null 2>&1
# Only objects matter here: unoptimised, without debug information.
bench_targets=$(cd "$src" && for f in bench/bench_*.c; do echo "build/bench/$(basename "$f" .c)"; done;
                for f in bench/plugins/*.c; do echo "build/bench/plugins/$(basename "$f" .c).so"; done)
# shellcheck disable=SC2086
check "scratch build" make -s -C "$src" -j2 CFLAGS=-O0 all $bench_targets

# The sources `make all` and the benchmarks compile, and what each includes.
cflags="-Iinclude -Iruntime $(pkg-config --cflags libuv libcurl json-c yaml-0.1 libedit sqlite3)"
(cd "$src" && for c in runtime/*/*.c plugins/*.c tests/plugins/*.c tests/preload/*.c \
                    tests/unit/*/test_*.c tests/*.c bench/*.c bench/plugins/*.c; do
    [ -f "$c" ] || continue
    # shellcheck disable=SC2086
    # -MG: a generated header (build/obj/gen) counts without existing.
    cc -MM -MG $cflags "$c" | tr -d '\\\n' | tr ' ' '\n' | grep '\.h$' | while read -r h; do
        echo "$(realpath -m --relative-to=. "$h") $c"
    done
done) | sort -u > "$tmp/includes"

what_rebuilds() { # header: the sources make would compile again once it changed
    touch -r "$src/$1" "$tmp/stamp"
    touch "$src/$1"
    # shellcheck disable=SC2086
    make -n -C "$src" CFLAGS=-O0 all $bench_targets | awk '$NF ~ /\.c$/ {print $NF}' | sort -u
    touch -r "$tmp/stamp" "$src/$1"
}
same_sets() { # header
    awk -v h="$1" '$1 == h {print $2}' "$tmp/includes" > "$tmp/want"
    what_rebuilds "$1" > "$tmp/got"
    [ -s "$tmp/want" ] || { echo "no source includes $1"; return 1; }
    diff "$tmp/want" "$tmp/got" || { echo "(< includes it but is not rebuilt, > rebuilt)"; return 1; }
}
for h in $(cd "$src" && find include runtime plugins tests bench -name '*.h' | sort); do
    check "touching $h rebuilds what includes it" same_sets "$h"
done

starter_rebuilds() { test "$(what_rebuilds configs/starter.toml)" = runtime/cli/init.c; }
check "editing configs/starter.toml rebuilds runtime/cli/init.c, which embeds it" starter_rebuilds

# A removed header: the dependency files must not make it a missing target.
printf '#define EXTRA 1\n' > "$src/plugins/extra.h"
sed -i '1i #include "extra.h"' "$src/plugins/add.c"
check "a plugin with a new header builds" make -s -C "$src" CFLAGS=-O0 all
sed -i '1d' "$src/plugins/add.c"
rm "$src/plugins/extra.h"
check "the header can then be deleted" make -s -C "$src" CFLAGS=-O0 all

# What `make run` builds: -n prints every command of a rebuild (the
# sub-make runs under -n too, and mk/deps.sh and the demo are only printed).
check "make -n -B run" sh -c "make -n -B -C '$src' run > '$tmp/run' 2>&1"
check "make run builds agentd" grep -qE -- '-o agentd( |$)' "$tmp/run"
check "make run builds the demo's plugins" grep -q -- '-o plugins/add.so' "$tmp/run"
check "make run builds no unit test" sh -c "! grep -E 'build/unit/|tests/plugins/|toml-decoder' '$tmp/run'"

finish test_make

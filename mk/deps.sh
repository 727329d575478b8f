#!/bin/sh
# deps.sh -- make sure the Debian packages for building and testing are installed.
#
#   sh mk/deps.sh [GROUP...]     GROUP: valgrind, fuzz (extra tools of those targets)
#
# Checks each dependency; when something is missing, installs it with
# apt-get (as root, or through passwordless sudo), otherwise prints the
# exact command to run and fails. Called by `make deps`, `make run`,
# `make test`, `make sanitize`, `make valgrind` and `make fuzz`; `make`
# alone never installs anything. Every program a test starts is here:
# packages are installed without their recommendations, so nothing else
# can be assumed, not even on a minimal Debian 12 or in the Docker build.
set -eu

# package:check pairs; check is "pc:MODULE" (pkg-config), "cmd:NAME" or
# "glob:PATTERN" (a file that must exist).
DEPS="
pkg-config:cmd:pkg-config
gcc:cmd:cc
libc6-dev:glob:/usr/include/stdio.h
make:cmd:make
libuv1-dev:pc:libuv
libcurl4-openssl-dev:pc:libcurl
libjson-c-dev:pc:json-c
libyaml-dev:pc:yaml-0.1
libedit-dev:pc:libedit
libsqlite3-dev:pc:sqlite3
node-llhttp:glob:/usr/share/llhttp/llhttp.c
libhiredis-dev:glob:/usr/include/hiredis/adapters/libuv.h
ca-certificates:glob:/etc/ssl/certs/ca-certificates.crt
python3:cmd:python3
openssl:cmd:openssl
redis-server:cmd:redis-server
nodejs:cmd:node
npm:cmd:npm
npm:cmd:npx
"
# ca-certificates: agentd verifies TLS against the system's CA bundle;
# without it no https:// provider can be reached.
# node-llhttp: the C sources of llhttp, the HTTP parser of agentd serve
# (compiled in; Debian has no library package of it).
# python3: the mock provider and the integration tests.
# openssl: test_faults makes a self-signed certificate for the TLS test.
# libhiredis-dev: the Redis client of agentd worker/submit/jobs and its
# libuv adapter (checked by that header: it is what the worker builds on).
# redis-server: the worker tests start their own (7.0: XAUTOCLAIM); a test
# run without it skips them, saying so.
# nodejs, npm: test_clients runs the real npm clients (openai, ai,
# @openai/agents) against agentd serve; `npm ci` fetches them, with the node
# they need, into build/clients on first use. Without the npm registry they
# are skipped, saying so. npx (in Debian 12's npm package) is checked too:
# no test runs it, but the docs' MCP examples and test_config's config name
# it, so a machine that passed this step runs those examples as written.
for group in "$@"; do
    case $group in
        valgrind) DEPS="$DEPS valgrind:cmd:valgrind" ;;
        fuzz) DEPS="$DEPS clang:cmd:clang
                   libclang-rt-14-dev:glob:/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" ;;
        *) echo "deps: unknown group '$group' (known: valgrind, fuzz)" >&2; exit 2 ;;
    esac
done

missing=""
have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
for d in $DEPS; do
    pkg=${d%%:*}; rest=${d#*:}; kind=${rest%%:*}; what=${rest#*:}
    case $kind in
        pc) have_pc "$what" || missing="$missing $pkg" ;;
        cmd) command -v "$what" >/dev/null 2>&1 || missing="$missing $pkg" ;;
        glob) # shellcheck disable=SC2086
              ls $what >/dev/null 2>&1 || missing="$missing $pkg" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "deps: missing Debian packages:$missing" >&2
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run="sudo"
else
    echo "deps: run this, then try again:" >&2
    echo "    sudo apt-get update && sudo $cmd" >&2
    exit 1
fi
echo "deps: installing with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$run apt-get update -qq >&2
# shellcheck disable=SC2086
$run apt-get install -y -qq --no-install-recommends $missing >&2

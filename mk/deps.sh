#!/bin/sh
# deps.sh -- make sure the Debian build dependencies are installed.
#
# Checks each dependency; when something is missing, installs it with
# apt-get (as root, or through passwordless sudo), otherwise prints the
# exact command to run and fails. Called by `make deps`, `make run` and
# `make test`; `make` alone never installs anything.
set -eu

# package:check pairs; check is "pc:MODULE" (pkg-config), "cmd:NAME" or
# "glob:PATTERN" (a file that must exist).
DEPS="
pkg-config:cmd:pkg-config
gcc:cmd:cc
make:cmd:make
libuv1-dev:pc:libuv
libcurl4-openssl-dev:pc:libcurl
libjson-c-dev:pc:json-c
libyaml-dev:pc:yaml-0.1
libedit-dev:pc:libedit
libsqlite3-dev:pc:sqlite3
python3:cmd:python3
"
[ "${AGENTD_EXTRA_DEPS:-}" ] && DEPS="$DEPS $AGENTD_EXTRA_DEPS"

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

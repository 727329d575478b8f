#!/bin/sh
# test_install.sh -- `make install` lays out a usable tree: the binary, the
# header, the plugins, the manual page and agentd-plugin.pc, with which a
# third-party plugin builds in one line and loads into the installed agentd.
set -u
cd "$(dirname "$0")/../.." || exit 2
passed=0 failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # description, command...
    d=$1; shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1)); echo "ok $d"
    else
        failed=$((failed + 1)); echo "FAIL $d"; sed 's/^/    /' "$tmp/out" | tail -n 20
    fi
}
dest="$tmp/root"
check "make install" make -s install DESTDIR="$dest" PREFIX=/usr/local
for f in bin/agentd include/agentd/plugin.h lib/agentd/plugins/add.so \
         lib/agentd/plugins/multiply.so lib/pkgconfig/agentd-plugin.pc share/man/man1/agentd.1; do
    check "installed $f" test -f "$dest/usr/local/$f"
done
export PKG_CONFIG_PATH="$dest/usr/local/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
check "pkg-config knows agentd-plugin" pkg-config --exists agentd-plugin
check "plugindir variable" sh -c \
    'case "$(pkg-config --variable=plugindir agentd-plugin)" in */usr/local/lib/agentd/plugins) ;; *) exit 1;; esac'
cat > "$tmp/echo.c" <<'C'
#include <agentd/plugin.h>
#include <stdio.h>
static const agentd_host_api *H;
static int echo_invoke(void *d, const char *args, size_t n, agentd_result *out)
{
    (void)d;
    return H->result_write(out, args, n);
}
AGENTD_PLUGIN_EXPORT int agentd_plugin_init_v1(const agentd_host_api *api, agentd_plugin *self,
                                               char *err, size_t errlen)
{
    if (!AGENTD_PLUGIN_CHECK(api)) {
        snprintf(err, errlen, "ABI mismatch");
        return AGENTD_EABI;
    }
    H = api;
    agentd_tool t = {sizeof t, "echo", "Echo the arguments",
                     "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\"}}}",
                     AGENTD_TOOL_THREADSAFE, echo_invoke, NULL, NULL};
    return api->register_tool(self, &t);
}
C
mkdir -p "$tmp/plugins"
# The one-line build of the README, with warnings as errors.
check "plugin builds with the one-line command" sh -c \
    "cc -Wall -Wextra -Werror -shared -fPIC \$(pkg-config --cflags agentd-plugin) '$tmp/echo.c' -o '$tmp/plugins/echo.so'"
printf '[provider]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\nmax_retries = 0\n[plugins]\ndir = "plugins"\n' \
    > "$tmp/agent.toml"
# Nothing listens on port 9: a loaded plugin gets as far as the request
# (exit 1); a plugin that fails to load stops startup (exit 2).
check "installed agentd loads it" sh -c \
    "'$dest/usr/local/bin/agentd' --config '$tmp/agent.toml' -p hi 2>'$tmp/err'; test \$? -eq 1 && ! grep -q plugin '$tmp/err'"
check "installed agentd --version" "$dest/usr/local/bin/agentd" --version
echo "test_install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

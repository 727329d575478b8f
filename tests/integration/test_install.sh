#!/bin/sh
# test_install.sh -- `make install` lays out a usable tree: the binary, the
# header, the plugins, the manual page, the documents it names, a starter
# config and agentd-plugin.pc, with which a third-party plugin builds in one
# line and loads into the installed agentd. The installed agentd finds the
# installed plugins when its config names no [plugins] dir; `agentd --init`
# writes a starter config that a run finds.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/integration/lib.sh
dest="$tmp/root"
check "make install" make -s install DESTDIR="$dest" PREFIX=/usr/local
for f in bin/agentd include/agentd/plugin.h lib/agentd/plugins/add.so \
         lib/agentd/plugins/multiply.so lib/pkgconfig/agentd-plugin.pc share/man/man1/agentd.1 \
         share/doc/agentd/README.md share/doc/agentd/agent.toml.example; do
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

# The manual's SEE ALSO names documents that are installed, at the place
# the page gives for this PREFIX.
sed -n '/^\.SH SEE ALSO/,$p' "$dest/usr/local/share/man/man1/agentd.1" > "$tmp/see_also"
check "SEE ALSO names the installed documentation folder" grep -q /usr/local/share/doc/agentd "$tmp/see_also"
for doc in $(grep -oE '[A-Za-z_-]+\.md' "$tmp/see_also" | sort -u); do
    check "installed $doc, which SEE ALSO names" test -f "$dest/usr/local/share/doc/agentd/$doc"
done

# Installed with a PREFIX of its own (the plugin folder is built into the
# binary, so the DESTDIR copy above cannot find its plugins where it is).
pre="$tmp/prefix"
check "make install PREFIX=$pre" make -s install PREFIX="$pre"
printf '[provider]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n[tools.add]\ntimeout_s = 5\n' \
    > "$tmp/nodir.toml"
# [tools.add] is an error unless a tool named add is loaded.
check "the installed agentd loads the installed plugins when [plugins] dir is absent" \
    "$pre/bin/agentd" --check-config "$tmp/nodir.toml"
check "--check-config names that folder" sh -c \
    "'$pre/bin/agentd' --check-config '$tmp/nodir.toml' | grep -qF '$pre/lib/agentd/plugins'"
check "the build tree's agentd has no such default" sh -c \
    "'${AGENTD_DIR:-.}/agentd' --check-config '$tmp/nodir.toml'; test \$? -eq 2"

# No config anywhere: the message says how to get one; --init writes it.
agentd="$pre/bin/agentd"
mkdir -p "$tmp/empty"
run_in_empty() { (cd "$tmp/empty" && env -u AGENTD_CONFIG HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/xdg" "$@"); }
check "without a config, the error suggests agentd --init" sh -c \
    "cd '$tmp/empty' && env -u AGENTD_CONFIG HOME='$tmp/home' XDG_CONFIG_HOME='$tmp/xdg' '$agentd' -p hi 2>'$tmp/err';
     test \$? -eq 2 && grep -q 'agentd --init' '$tmp/err'"
check "agentd --init writes the user's config" run_in_empty "$agentd" --init
cfg="$tmp/xdg/agentd/agent.toml"
check "... at \$XDG_CONFIG_HOME/agentd/agent.toml, mode 0600" sh -c "test \"\$(stat -c %a '$cfg')\" = 600"
check "... which a run finds and --check-config accepts" \
    run_in_empty env OPENROUTER_API_KEY=sk-or-dummy "$agentd" --check-config
check "... loading the installed plugins" sh -c \
    "cd '$tmp/empty' && env -u AGENTD_CONFIG OPENROUTER_API_KEY=sk-or-dummy XDG_CONFIG_HOME='$tmp/xdg' \
     '$agentd' --check-config | grep -qF '$pre/lib/agentd/plugins'"
cp "$cfg" "$tmp/before"
echo "# edited" >> "$cfg"
cp "$cfg" "$tmp/edited"
check "a second --init refuses to overwrite it (exit 2)" sh -c \
    "cd '$tmp/empty' && XDG_CONFIG_HOME='$tmp/xdg' '$agentd' --init 2>'$tmp/err'; test \$? -eq 2 &&
     grep -q 'exists' '$tmp/err' && cmp -s '$cfg' '$tmp/edited'"
check "agentd --init FILE writes FILE" run_in_empty "$agentd" --init "$tmp/mine.toml"
check "... mode 0600" sh -c "test \"\$(stat -c %a '$tmp/mine.toml')\" = 600"
check "... the same text as the installed example" \
    cmp "$tmp/mine.toml" "$pre/share/doc/agentd/agent.toml.example"
check "... and as the default location" cmp "$tmp/mine.toml" "$tmp/before"
finish test_install

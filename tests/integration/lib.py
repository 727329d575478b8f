"""lib.py -- helpers for integration tests that run the agentd binary.

Environment (set by tests/run.sh):
  AGENTD_DIR   where the build lives (default "."): AGENTD_DIR/agentd,
               AGENTD_DIR/plugins/*.so, AGENTD_DIR/tests/plugins/*.so
  AGENTD_WRAP  command prefix for agentd (e.g. "valgrind -q --error-exitcode=97")
  AGENTD_TIMEOUT_SCALE  multiplies run_agentd timeouts (default 1, or 4 with a WRAP)

A test file registers cases with @case and ends with `if __name__ == "__main__": main()`.
A case taking one parameter gets a fresh temporary directory (removed afterwards).
A case that cannot run here (a missing tool) calls skip("reason"): it prints
"skip name: reason" and counts as skipped, neither passed nor failed.
main() prints "ok name" / "FAIL name: message" per case and the summary line
"<file-stem>: N passed, M failed, K skipped" that tests/run.sh reads; exit
status 1 on failure.
"""

import atexit
import contextlib
import inspect
import json
import math
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mock"))

from server import MockServer  # noqa: E402  (tests/mock/server.py)
import script  # noqa: E402,F401  (re-exported: lib.script.text_stream(...))

AGENTD_DIR = os.path.abspath(os.environ.get("AGENTD_DIR") or ".")
AGENTD = os.path.join(AGENTD_DIR, "agentd")
PLUGINS_DIR = os.path.join(AGENTD_DIR, "plugins")
TEST_PLUGINS_DIR = os.path.join(AGENTD_DIR, "tests", "plugins")
WRAP = shlex.split(os.environ.get("AGENTD_WRAP", ""))
TIMEOUT_SCALE = float(os.environ.get("AGENTD_TIMEOUT_SCALE") or (4 if WRAP else 1))
TEST_KEY_ENV = "AGENTD_TEST_KEY"
# Runs store their conversations (sessions) under XDG_STATE_HOME: never in
# the real one. One temporary folder per test process; a test may pass its own.
STATE_HOME = tempfile.mkdtemp(prefix="agentd-state-")
atexit.register(shutil.rmtree, STATE_HOME, True)
# ... and their tool cache (docs/plugins.md) under XDG_CACHE_HOME.
CACHE_HOME = tempfile.mkdtemp(prefix="agentd-cache-")
atexit.register(shutil.rmtree, CACHE_HOME, True)


# ---- the mock server -------------------------------------------------------

@contextlib.contextmanager
def mock(script_or_responses=None, **kw):
    """with mock(script) as m: m.base_url, m.requests (list of request records)."""
    m = MockServer(script_or_responses, **kw).start()
    try:
        yield m
    finally:
        m.stop()


# ---- agent.toml --------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(k):
    return k if _BARE_KEY.match(k) else toml_value(k)


def toml_value(v):
    """str/int/float/bool/list/dict (as an inline table) -> TOML text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        out = []
        for ch in v:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20 or ord(ch) == 0x7f:
                out.append("\\u%04x" % ord(ch))
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join("%s = %s" % (toml_key(k), toml_value(x))
                                for k, x in v.items()) + " }"
    raise TypeError("no TOML form for %r" % (v,))


def toml_table(name, values):
    lines = ["[%s]" % ".".join(toml_key(p) for p in name)]
    lines += ["%s = %s" % (toml_key(k), toml_value(v)) for k, v in values.items()]
    return "\n".join(lines) + "\n\n"


def write_config(tmpdir, base_url, model="test-model", stream=True, api_key_env=TEST_KEY_ENV,
                 timeout_s=30, max_retries=0, headers=None, extra=None, agent=None,
                 plugins_dir=None, plugin_config=None, provider=None, raw_append="",
                 name="agent.toml"):
    """Writes tmpdir/agent.toml and returns its path. A provider key given as
    None is left out (timeout_s=None keeps agentd's default); provider={...}
    adds or overrides [provider] keys. raw_append is appended verbatim."""
    prov = {"base_url": base_url, "api_key_env": api_key_env, "model": model,
            "stream": stream, "timeout_s": timeout_s, "max_retries": max_retries}
    prov.update(provider or {})
    text = toml_table(["provider"], {k: v for k, v in prov.items() if v is not None})
    if headers:
        text += toml_table(["provider", "headers"], headers)
    if extra:
        text += toml_table(["provider", "extra"], extra)
    if agent:
        text += toml_table(["agent"], agent)
    if plugins_dir is not None:
        text += toml_table(["plugins"], {"dir": plugins_dir})
    for pname, conf in (plugin_config or {}).items():
        text += toml_table(["plugins", "config", pname], conf)
    text += raw_append
    path = os.path.join(tmpdir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def make_plugin_dir(tmpdir, names, dirname="plugins"):
    """tmpdir/plugins with NAME.so symlinks to built plugins (plugins/ first,
    then tests/plugins/). Returns the folder's path."""
    d = os.path.join(tmpdir, dirname)
    os.makedirs(d, exist_ok=True)
    for n in names:
        for src_dir in (PLUGINS_DIR, TEST_PLUGINS_DIR):
            src = os.path.join(src_dir, n + ".so")
            if os.path.exists(src):
                os.symlink(os.path.abspath(src), os.path.join(d, n + ".so"))
                break
        else:
            raise AssertionError("plugin %s.so not built in %s or %s"
                                 % (n, PLUGINS_DIR, TEST_PLUGINS_DIR))
    return d


# ---- running agentd --------------------------------------------------------

class Result:
    def __init__(self, rc, stdout, stderr, events):
        self.rc, self.stdout, self.stderr, self.events = rc, stdout, stderr, events

    def __repr__(self):
        return "Result(rc=%r, stdout=%r, stderr=%r)" % (self.rc, self.stdout[-2000:],
                                                       self.stderr[-2000:])


def agentd_env(env=None):
    """os.environ plus a dummy key in AGENTD_TEST_KEY; env entries override
    (a None value removes the variable)."""
    e = dict(os.environ)
    e[TEST_KEY_ENV] = "sk-test-dummy"
    e["XDG_STATE_HOME"] = STATE_HOME
    e["XDG_CACHE_HOME"] = CACHE_HOME
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def agentd_cmd(args):
    return WRAP + [AGENTD] + list(args)


def parse_events(text):
    """JSON Lines -> list; a line that is not JSON becomes {"_bad_line": line}."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"_bad_line": line})
    return events


def run_agentd(args, env=None, input=None, timeout=60, cwd=None):
    """Runs agentd to completion. Result: .rc, .stdout, .stderr, .events
    (parsed stdout when "--json" is among args, else None)."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    try:
        p = subprocess.run(agentd_cmd(args), env=agentd_env(env), cwd=cwd,
                           input=input if input is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout * TIMEOUT_SCALE)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("agentd %s timed out after %ss; stderr: %s"
                             % (args, timeout * TIMEOUT_SCALE,
                                (e.stderr or b"").decode("utf-8", "replace")[-2000:]))
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    return Result(p.returncode, out, err, parse_events(out) if "--json" in args else None)


def spawn_agentd(args, env=None, cwd=None):
    """Starts agentd without waiting (cancellation tests): a Popen with pipes
    for stdin, stdout and stderr (bytes)."""
    return subprocess.Popen(agentd_cmd(args), env=agentd_env(env), cwd=cwd,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


class Events:
    """Reads JSON Lines from a running agentd without ever blocking forever."""

    def __init__(self, p):
        self.p, self.buf, self.events = p, b"", []

    def wait(self, pred, timeout=20):
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while True:
            for e in self.events:
                if pred(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such event within %ss; got %r" % (timeout, self.events))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("agentd ended (rc %r) before the event; got %r; stderr %r"
                                     % (self.p.wait(), self.events, self.p.stderr.read()))
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            self.events += [json.loads(x) for x in lines if x.strip()]


def run_on_pty(args, env=None, cols=80, rows=24, timeout=60, stderr_too=True):
    """Runs agentd with stdout (and stderr unless stderr_too is false) on a
    new pseudo-terminal of cols x rows; stdin is /dev/null. Returns (rc,
    bytes the terminal received, stderr bytes when it was a pipe)."""
    import fcntl
    import struct
    import termios
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    e = {"TERM": "xterm", "LANG": "C.UTF-8", "LC_ALL": None}
    e.update(env or {})
    p = subprocess.Popen(agentd_cmd(args), env=agentd_env(e), stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave if stderr_too else subprocess.PIPE)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                p.kill()
                raise AssertionError("agentd %s timed out on a pty; output: %r" % (args, out[-2000:]))
            r, _, _ = select.select([master], [], [], min(left, 0.5))
            if not r:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            out += data
        err = p.stderr.read() if p.stderr else b""
        rc = p.wait(timeout=timeout * TIMEOUT_SCALE)
    finally:
        os.close(master)
        if p.stderr:
            p.stderr.close()
    return rc, out, err


class Screen:
    """Just enough of a VT100 to see what a terminal shows: printable text
    with autowrap (and the pending-wrap state), CR, LF, BS, TAB, cursor
    up/down/forward/back/position, erase in display and line. Rows scrolled
    off the top are kept; text() is everything, scrolled rows first."""

    def __init__(self, cols=80, rows=24):
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.scrolled = []
        self.r = self.c = 0
        self.wrap_pending = False

    def _lf(self):
        if self.r == self.rows - 1:
            self.scrolled.append(self.grid.pop(0))
            self.grid.append([" "] * self.cols)
        else:
            self.r += 1

    def _put(self, ch):
        import unicodedata
        w = 0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if w == 0:
            return
        if self.wrap_pending or self.c + w > self.cols:
            self.c = 0
            self._lf()
            self.wrap_pending = False
        self.grid[self.r][self.c] = ch
        if w == 2 and self.c + 1 < self.cols:
            self.grid[self.r][self.c + 1] = ""
        self.c += w
        if self.c >= self.cols:
            self.c = self.cols - 1
            self.wrap_pending = True

    def feed(self, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        i = 0
        while i < len(text):
            ch = text[i]
            i += 1
            if ch == "\x1b":
                if i < len(text) and text[i] == "[":
                    j = i + 1
                    while j < len(text) and not ("@" <= text[j] <= "~"):
                        j += 1
                    if j >= len(text):
                        break
                    params, op = text[i + 1:j], text[j]
                    i = j + 1
                    nums = [int(x) if x.isdigit() else 0 for x in params.lstrip("?").split(";")]
                    n = max(nums[0], 1) if nums else 1
                    self._csi(op, nums[0] if nums else 0, n, nums)
                else:
                    i += 1
                continue
            if ch == "\r":
                self.c, self.wrap_pending = 0, False
            elif ch == "\n":
                self._lf()
                self.wrap_pending = False
            elif ch == "\b":
                self.c, self.wrap_pending = max(self.c - 1, 0), False
            elif ch == "\t":
                self.c = min((self.c // 8 + 1) * 8, self.cols - 1)
            elif ch == "\x07" or ord(ch) < 0x20:
                pass
            else:
                self._put(ch)

    def _csi(self, op, p0, n, nums):
        self.wrap_pending = False
        if op == "A":
            self.r = max(self.r - n, 0)
        elif op == "B":
            self.r = min(self.r + n, self.rows - 1)
        elif op == "C":
            self.c = min(self.c + n, self.cols - 1)
        elif op == "D":
            self.c = max(self.c - n, 0)
        elif op == "H":
            self.r = min(max(nums[0], 1), self.rows) - 1
            self.c = min(max(nums[1] if len(nums) > 1 else 1, 1), self.cols) - 1
        elif op == "J" and p0 == 0:
            self.grid[self.r][self.c:] = [" "] * (self.cols - self.c)
            for row in range(self.r + 1, self.rows):
                self.grid[row] = [" "] * self.cols
        elif op == "J" and p0 == 2:
            self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif op == "K" and p0 == 0:
            self.grid[self.r][self.c:] = [" "] * (self.cols - self.c)

    def text(self):
        rows = ["".join(row).rstrip() for row in self.scrolled + self.grid]
        while rows and not rows[-1]:
            rows.pop()
        return "\n".join(rows)


# ---- a tiny test framework -------------------------------------------------

_cases = []


def case(fn):
    _cases.append(fn)
    return fn


def eq(a, b, what="value"):
    if a != b:
        raise AssertionError("%s: got %r, want %r" % (what, a, b))


def ok(cond, what="condition"):
    if not cond:
        raise AssertionError("%s is false" % what)


def contains(haystack, needle, what="text"):
    if needle not in haystack:
        raise AssertionError("%s: %r not found in %r" % (what, needle, haystack))


def raises(exc_type, fn, *args, **kw):
    """Calls fn and returns the exception it raised; fails if none was."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn),
                                                  exc_type.__name__))


class Skip(Exception):
    """Raised by skip(): the case cannot run on this machine."""


def skip(reason):
    raise Skip(reason)


def main():
    flt = sys.argv[1] if len(sys.argv) > 1 else ""
    stem = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    passed = failed = skipped = 0
    for fn in _cases:
        if flt not in fn.__name__:
            continue
        try:
            if inspect.signature(fn).parameters:
                with tempfile.TemporaryDirectory(prefix="agentd-test-") as tmp:
                    fn(tmp)
            else:
                fn()
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (fn.__name__, e), flush=True)
        except AssertionError as e:
            failed += 1
            print("FAIL %s: %s" % (fn.__name__, e), flush=True)
        except Exception as e:  # a crash in one case must not hide the others
            failed += 1
            stdlib = os.path.dirname(os.__file__)
            frames = traceback.extract_tb(e.__traceback__)
            tb = ([f for f in frames if not f.filename.startswith(stdlib)] or frames)[-1]
            print("FAIL %s: %s: %s (at %s:%d)" % (fn.__name__, type(e).__name__, e,
                                                  os.path.basename(tb.filename), tb.lineno),
                  flush=True)
        else:
            passed += 1
            print("ok %s" % fn.__name__, flush=True)
    print("%s: %d passed, %d failed, %d skipped" % (stem, passed, failed, skipped), flush=True)
    sys.exit(1 if failed else 0)

"""servelib.py -- agentd serve for integration tests: the server on
127.0.0.1 with its own config and database, its requests, SSE streams and
raw sockets (test_serve.py, test_clients.py).
"""

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

import lib
from lib import ok

TOKEN = "tok-0123456789abcdef"


def wait_for(pred, what, timeout=20):
    deadline = time.monotonic() + timeout * lib.TIMEOUT_SCALE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Serve:
    """agentd serve on 127.0.0.1 with its own config and database."""

    def __init__(self, tmp, base_url, serve=None, agent=None, plugins=None, profiles=None,
                 env=None, raw=""):
        self.tmp = tmp
        self.db = os.path.join(tmp, "serve.db")
        sv = {"listen": "127.0.0.1:0", "db": self.db}
        sv.update(serve or {})
        text = ""
        for name, conf in (profiles or {}).items():
            text += lib.toml_table(["serve", "profiles", name], conf)
        self.cfg = lib.write_config(
            tmp, base_url, agent=agent,
            plugins_dir=lib.make_plugin_dir(tmp, plugins) if plugins else None,
            raw_append=lib.toml_table(["serve"], sv) + text + raw)
        self.env = env or {}
        self.p = None
        self.port = None
        self.err = []

    def start(self, expect_fail=False):
        self.err = []
        self.p = subprocess.Popen(lib.agentd_cmd(["serve", "--config", self.cfg]),
                                  env=lib.agentd_env(self.env), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = threading.Event()

        def read():
            for line in iter(self.p.stderr.readline, b""):
                line = line.decode("utf-8", "replace")
                self.err.append(line)
                m = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        ready.wait(30 * lib.TIMEOUT_SCALE)
        if expect_fail:
            return self.p.wait(30 * lib.TIMEOUT_SCALE)
        ok(self.port, "agentd serve started (stderr: %s)" % "".join(self.err))
        return self

    def stderr(self):
        return "".join(self.err)

    def stop(self, sig=signal.SIGTERM, timeout=30, expect=0):
        """Stops the server (a drain) and returns its exit status, which
        must be expect (None: any): a crash never passes unnoticed."""
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout * lib.TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("agentd serve did not stop; stderr: " + self.stderr())
        self.p.stdout.close()
        if expect is not None and rc != expect:
            raise AssertionError("agentd serve exited with %r, not %r; stderr: %s"
                                 % (rc, expect, self.stderr()[-3000:]))
        return rc

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout * lib.TIMEOUT_SCALE)

    def call(self, method, path, body=None, token=None, headers=None):
        """(status, headers dict, parsed JSON or text)."""
        c = self.conn()
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = c.getresponse()
        data = r.read().decode("utf-8", "replace")
        c.close()
        try:
            data = json.loads(data)
        except ValueError:
            pass
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def stream(self, path, body=None, token=None, method="POST"):
        """Opens a streaming request: (connection, response)."""
        c = self.conn()
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        return c, c.getresponse()


def sse_events(resp, until=None):
    """Reads SSE events from resp: a list of (event name, data) up to the end
    of the stream, or up to the first event for which until(name, data)
    holds."""
    out, name, data = [], None, []
    while True:
        line = resp.readline()
        if not line:
            return out
        line = line.decode("utf-8").rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line == "" and data:
            text = "\n".join(data)
            ev = text if text == "[DONE]" else json.loads(text)
            out.append((name, ev))
            name, data = None, []
            if until and until(out[-1][0], out[-1][1]):
                return out


def raw_exchange(port, data, timeout=20, pace=None):
    """Sends data on a new connection (pace: seconds between bytes) and
    returns everything received until the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * lib.TIMEOUT_SCALE)
    got = b""
    try:
        if pace is None:
            s.sendall(data)
        else:
            for i in range(len(data)):
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break  # the server answered (and closes)
                try:
                    s.sendall(data[i:i + 1])
                except OSError:
                    break
                time.sleep(pace)
        deadline = time.monotonic() + timeout * lib.TIMEOUT_SCALE
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return got

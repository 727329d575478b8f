"""redislib.py -- a redis-server of the test's own and a tiny RESP client
(standard library only), for the worker tests.

    with RedisServer(aof=True) as r:      # 127.0.0.1, a free port, a temp dir
        c = r.client()
        c.cmd("XLEN", "agentd:jobs")
        r.kill(); r.start()               # kill -9, then again from its AOF

The server is ready when its log says "Ready to accept connections" (read
from its stdout), never after a fixed wait. RedisServer.available() tells
whether redis-server is installed (tests skip with the reason otherwise).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisError(Exception):
    pass


class Client:
    """One connection; cmd() sends a command and returns the parsed reply
    (str for bulk and status replies, int, list, None; an error reply
    raises RedisError)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "surrogateescape")
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode("utf-8", "surrogateescape")
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def hgetall(self, key):
        flat = self.cmd("HGETALL", key) or []
        return dict(zip(flat[0::2], flat[1::2]))


class RedisServer:
    def __init__(self, aof=False, fsync="always"):
        self.aof, self.fsync = aof, fsync
        self.dir = tempfile.mkdtemp(prefix="agentd-redis-")
        self.port = _free_port()
        self.proc = None

    @staticmethod
    def available():
        return shutil.which("redis-server") is not None

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=20):
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--dir", self.dir, "--appendonly", "yes" if self.aof else "no",
                "--appendfsync", self.fsync, "--maxmemory-policy", "noeviction",
                "--daemonize", "no", "--loglevel", "notice"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        log = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        import select
        while b"Ready to accept connections" not in log:
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 65536) if r else b""
            if not chunk:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("redis-server did not start: %r" % log[-1000:])
            log += chunk
        # Its later log is read away by nobody: it goes nowhere.
        self._drain = _Drain(self.proc.stdout)
        return self

    def client(self):
        return Client(self.port)

    def kill(self):
        """kill -9: nothing is written at exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Drain:
    """Reads a pipe away in a thread, so that a chatty server never blocks."""

    def __init__(self, f):
        import threading
        self.t = threading.Thread(target=self._run, args=(f,), daemon=True)
        self.t.start()

    @staticmethod
    def _run(f):
        try:
            while f.read(65536):
                pass
        except (OSError, ValueError):
            pass

"""The shared benchmark's paced mock, for the serve benchmarks in this folder
(serve_ttft.py, serve_floor.py): generated data in a temporary folder, one
node process, its counters. Nothing is written into the shared folder.

    reason = skip_reason(shared, node)      # None, or why the benchmark skips
    mock = Mock(shared, node, tmp, chunk_ms) # started; mock.port, mock.gen
    mock.stats()                             # GET /stats
    mock.stop()
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request


def server_of(shared):
    return os.path.join(shared, "mock", "server.mjs")


def skip_reason(shared, node):
    if not os.path.isfile(server_of(shared)):
        return "no shared benchmark at %s (--shared)" % shared
    if not shutil.which(node):
        return "no node (%s) for the mock" % node
    return None


class Mock:
    def __init__(self, shared, node, tmp, chunk_ms):
        """Generates the mock's data into tmp/gen and starts it; RuntimeError
        (saying why) when it does not come up within 60 s."""
        self.gen = os.path.join(tmp, "gen")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        subprocess.run([sys.executable, os.path.join(shared, "mock", "gen.py"), self.gen], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        pf = os.path.join(tmp, "mock.port")
        self.log = os.path.join(tmp, "mock.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([node, server_of(shared), "--port-file", pf, "--gen", self.gen,
                                          "--chunk-ms", str(chunk_ms)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        t = time.time()
        while not (os.path.exists(pf) and open(pf).read().strip()):
            if self.proc.poll() is not None or time.time() - t > 60:
                self.stop()
                raise RuntimeError("the mock did not start: %s" % open(self.log).read().strip()[-300:])
            time.sleep(0.05)
        self.port = int(open(pf).read())

    def stats(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.port, timeout=30) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

#!/usr/bin/env python3
"""workers.py -- agentd worker against one process per job, and recovery
after kill -9 (bench/README.md, "Workers").

    python3 bench/workers.py [--jobs 200] [--rounds 3] [--workers 1,2] [--concurrency 8]

Everything runs here: a redis-server of its own (127.0.0.1, a free port,
appendonly yes, appendfsync everysec), the mock provider (tests/mock) with
one conversation: "Add 2 and 3" -> a call of add (plugins/add.so) -> "5".

Throughput, paired (A B A B ...): each round runs the same conversation
--jobs times as
  replay   `agentd -p PROMPT --replay CASSETTE`, one process per job, one after
           the other (the cassette recorded from the mock once)
  mock     `agentd -p PROMPT` against the mock, one process per job
  worker   N `agentd worker` processes (--concurrency C) with --jobs jobs queued
           before they start; from their start to the last job's end
and prints jobs/s and CPU per job (user+sys of agentd's processes; Redis's
own CPU per job beside it, from INFO), the medians over the rounds, and the
CPU ratio worker/replay per round. Every job's answer is checked ("5").

Recovery: a worker running a job is killed (kill -9) while another one
waits; the time from the kill to the job's next attempt (its job_attempt
event) for --lease 1 and 3 s, five times each.
"""

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "mock"))
os.environ.setdefault("AGENTD_DIR", ROOT)

import lib  # noqa: E402
import script as S  # noqa: E402
from redislib import RedisServer  # noqa: E402

PROMPT = "Add 2 and 3"


def conversation(slow_ms=0):
    """slow_ms: the answer streams in 40 pieces that far apart (a job that
    lasts, for the kill to land in)."""
    tc = S.tool_call_stream([("call_1", "add", '{"a":2,"b":3}')])
    text = S.text_stream("." * 39 + "5", pieces=40, delay_ms=slow_ms) if slow_ms \
        else S.text_stream("5")
    return {"by_turn": True, "responses": [tc, text]}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def redis_cpu(c):
    info = c.cmd("INFO", "cpu")
    vals = dict(ln.split(":", 1) for ln in info.split("\r\n") if ":" in ln)
    return float(vals["used_cpu_sys"]) + float(vals["used_cpu_user"])


def run_processes(args, n, env):
    t0, c0 = time.monotonic(), children_cpu()
    for _ in range(n):
        p = subprocess.run([lib.AGENTD] + args, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0 or p.stdout.decode().strip() != "5":
            raise SystemExit("a run failed: rc %d, %r %r" % (p.returncode, p.stdout, p.stderr[-500:]))
    return n / (time.monotonic() - t0), (children_cpu() - c0) / n


def submit(r, ids, env):
    # Queued before the workers start (not timed): one process per job.
    for i in ids:
        p = subprocess.run([lib.AGENTD, "submit", "--redis", r.url, "-p", PROMPT, "--job-id", i],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit("submit failed: %r" % p.stderr)


def run_workers(r, c, cfg, nworkers, conc, ids, env):
    rc0 = redis_cpu(c)
    c.cmd("CONFIG", "RESETSTAT")
    t0 = time.monotonic()
    ws = [subprocess.Popen([lib.AGENTD, "worker", "--redis", r.url, "-c", cfg, "-q",
                            "--concurrency", str(conc)], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for _ in range(nworkers)]
    key = "agentd:job:%s"
    # An ended job's entry leaves the stream: one cheap check, every 5 ms.
    while c.cmd("XLEN", "agentd:jobs") > 0:
        time.sleep(0.005)
    wall = time.monotonic() - t0
    cpu = 0.0
    for w in ws:
        w.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(w.pid, 0)
        w.returncode = status
        cpu += ru.ru_utime + ru.ru_stime
    bad = [i for i in ids if c.cmd("HGET", key % i, "result") != "5"]
    if bad:
        raise SystemExit("jobs without the answer: %r" % bad[:5])
    return len(ids) / wall, cpu / len(ids), (redis_cpu(c) - rc0) / len(ids)


def throughput(a, tmp):
    with RedisServer(aof=True, fsync="everysec") as r, lib.mock(conversation()) as m:
        pd = lib.make_plugin_dir(tmp, ["add"])
        cfg = lib.write_config(tmp, m.base_url, plugins_dir=pd)
        env = lib.agentd_env()
        cassette = os.path.join(tmp, "add.yaml")
        p = subprocess.run([lib.AGENTD, "-c", cfg, "-p", PROMPT, "--record", cassette], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit("recording failed: %r" % p.stderr)
        c = r.client()
        nw = [int(x) for x in a.workers.split(",")]
        res = {"replay": [], "mock": []}
        for n in nw:
            res["worker%d" % n] = []
        ratios = {n: [] for n in nw}
        for rnd in range(a.rounds):
            res["replay"].append(run_processes(["-c", cfg, "-p", PROMPT, "--replay", cassette],
                                               a.jobs, env))
            res["mock"].append(run_processes(["-c", cfg, "-p", PROMPT], a.jobs, env))
            for n in nw:
                ids = ["r%d-w%d-%04d" % (rnd, n, i) for i in range(a.jobs)]
                submit(r, ids, env)
                res["worker%d" % n].append(run_workers(r, c, cfg, n, a.concurrency, ids, env))
                ratios[n].append(res["worker%d" % n][-1][1] / res["replay"][-1][1])
        print("throughput: %d jobs per round, %d rounds (medians)" % (a.jobs, a.rounds))
        for k, v in res.items():
            js = statistics.median(x[0] for x in v)
            cpu = statistics.median(x[1] for x in v) * 1000
            extra = ""
            if k.startswith("worker"):
                extra = ", Redis %.3f ms CPU/job" % (statistics.median(x[2] for x in v) * 1000)
            print("  %-8s %7.1f jobs/s  %6.3f ms CPU/job%s" % (k, js, cpu, extra))
        for n in nw:
            print("  worker%d/replay CPU per job, per round: %s (median %.3f)"
                  % (n, " ".join("%.3f" % x for x in ratios[n]), statistics.median(ratios[n])))


def next_attempt(c, job, attempt, timeout=60):
    """Waits for the job's job_attempt event of that attempt: (when, worker)."""
    key = "agentd:job:%s:events" % job
    last = "0-0"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rep = c.cmd("XREAD", "BLOCK", "100", "STREAMS", key, last)
        for _, entries in rep or []:
            for eid, fields in entries:
                last = eid
                e = json.loads(fields[1])
                if e.get("type") == "job_attempt" and e.get("attempt") == attempt:
                    return time.monotonic(), e.get("worker")
    raise SystemExit("no attempt %d of %s" % (attempt, job))


def recovery(tmp):
    print("recovery after kill -9 (from the kill to the next attempt's job_attempt event):")
    for lease in (1, 3):
        times = []
        with RedisServer(aof=True, fsync="everysec") as r, lib.mock(conversation(slow_ms=50)) as m:
            cfg = lib.write_config(tmp, m.base_url, plugins_dir=os.path.join(tmp, "plugins"))
            env = lib.agentd_env()
            c = r.client()

            def start(name):
                return subprocess.Popen([lib.AGENTD, "worker", "--redis", r.url, "-c", cfg, "-q",
                                         "--lease", str(lease), "--name", name], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
            peers = {"w0": start("w0"), "w1": start("w1")}
            for k in range(5):
                # Both peers connected more than a lease ago: either takes over.
                time.sleep(lease * 1.5)
                job = "rec-%d-%d" % (lease, k)
                subprocess.run([lib.AGENTD, "submit", "--redis", r.url, "-p", PROMPT,
                                "--job-id", job], env=env, stdout=subprocess.DEVNULL, check=True)
                _, victim = next_attempt(c, job, 1)
                t0 = time.monotonic()
                os.killpg(peers[victim].pid, signal.SIGKILL)
                peers[victim].wait()
                t1, _ = next_attempt(c, job, 2)
                times.append(t1 - t0)
                peers[victim] = start(victim + "x%d" % k)
                peers[victim + "x%d" % k] = peers.pop(victim)
                while c.cmd("HGET", "agentd:job:%s" % job, "state") != "done":
                    time.sleep(0.01)
            for p in peers.values():
                p.send_signal(signal.SIGTERM)
                p.wait()
        print("  --lease %d: median %.2f s, min %.2f, max %.2f (%s)"
              % (lease, statistics.median(times), min(times), max(times),
                 " ".join("%.2f" % t for t in times)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-recovery", action="store_true")
    a = ap.parse_args()
    if not RedisServer.available():
        raise SystemExit("bench/workers.py needs redis-server (Debian: redis-server)")
    with tempfile.TemporaryDirectory(prefix="agentd-bench-") as tmp:
        throughput(a, tmp)
        if not a.no_recovery:
            recovery(tmp)


if __name__ == "__main__":
    main()

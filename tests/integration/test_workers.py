#!/usr/bin/env python3
"""test_workers.py -- the Redis job queue from the outside: agentd worker,
agentd submit and agentd jobs as real processes against a redis-server the
test starts itself (127.0.0.1, a free port, a temporary folder) and the mock
provider, with the effect plugin (tests/plugins/effect.c) appending each
real side effect of a tool to a file. Workers are killed (kill -9 of their
process group) at the worst points, which the debug hook
AGENTD_WORKER_STOP_AT=POINT@JOB makes them reach and stop at (SIGSTOP)
deterministically: the test waits for the stop, never for a time. Skipped,
saying why, without redis-server."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (TIMEOUT_SCALE, agentd_cmd, agentd_env, case, contains, eq, main,  # noqa: E402
                 make_plugin_dir, mock, ok, run_agentd, script, skip, write_config)
from redislib import RedisServer  # noqa: E402

S = script


def redis(aof=False):
    if not RedisServer.available():
        skip("redis-server is not installed (Debian: redis-server; mk/deps.sh installs it)")
    return RedisServer(aof=aof).start()


_live = []


def cleanup(r):
    """Ends the case: workers still alive (a failed assertion) are killed,
    Redis stops."""
    while _live:
        _live.pop().kill9()
    r.stop()


def submit(r, *args, **kw):
    return run_agentd(["submit", "--redis", r.url] + list(args), **kw)


@case
def submit_is_idempotent_on_the_job_id():
    r = redis()
    try:
        a = submit(r, "-p", "hello", "--job-id", "j-1")
        eq(a.rc, 0, "first submit (%s)" % a.stderr)
        eq(a.stdout.strip(), "j-1", "prints the id")
        b = submit(r, "-p", "hello", "--job-id", "j-1")
        eq(b.rc, 0, "again")
        eq(b.stdout.strip(), "j-1", "the same id")
        contains(b.stderr, "was submitted before", "says nothing was queued")
        c = r.client()
        eq(c.cmd("XLEN", "agentd:jobs"), 1, "one entry on the stream")
        eq(c.hgetall("agentd:job:j-1")["prompt"], "hello", "the job's prompt")
        taken = submit(r, "-p", "another", "--job-id", "j-1")
        eq(taken.rc, 2, "another prompt under the id")
        contains(taken.stderr, "is taken by a job with another prompt", "why")
        eq(c.cmd("XLEN", "agentd:jobs"), 1, "still one entry")
        # Without --job-id: a fresh random id each time.
        x = submit(r, "-p", "p")
        y = submit(r, "-p", "p")
        ok(x.stdout.strip() != y.stdout.strip() and len(x.stdout.strip()) == 16, "random ids")
    finally:
        cleanup(r)


@case
def prompt_from_stdin_and_sessions_queue_behind_each_other():
    r = redis()
    try:
        a = submit(r, "--session", "s1", "--job-id", "a", input="first question\n")
        eq(a.rc, 0, "submit (%s)" % a.stderr)
        b = submit(r, "--session", "s1", "--job-id", "b", "-p", "second")
        eq(b.rc, 0, "second submit")
        c = r.client()
        eq(c.hgetall("agentd:job:a")["prompt"], "first question", "prompt read from stdin")
        eq(c.hgetall("agentd:job:b")["state"], "waiting", "b waits for a")
        eq(c.cmd("LRANGE", "agentd:session:s1:queue", 0, -1), ["b"], "behind a")
        eq(c.cmd("XLEN", "agentd:jobs"), 1, "only a is on the stream")
    finally:
        cleanup(r)


@case
def jobs_lists_the_queue_and_shows_a_job():
    r = redis()
    try:
        submit(r, "-p", "one", "--job-id", "q1")
        submit(r, "-p", "two", "--job-id", "q2", "--session", "s")
        t = run_agentd(["jobs", "--redis", r.url])
        eq(t.rc, 0, "jobs (%s)" % t.stderr)
        contains(t.stdout, "q1", "lists q1")
        contains(t.stdout, "q2", "lists q2")
        contains(t.stdout, "stream: 2 entries, 0 in flight; dead letters: 0", "the stream")
        j = run_agentd(["jobs", "--redis", r.url, "--json"])
        doc = json.loads(j.stdout)
        eq(sorted(x["id"] for x in doc["jobs"]), ["q1", "q2"], "json ids")
        eq(doc["states"], {"queued": 2}, "json states")
        one = run_agentd(["jobs", "--redis", r.url, "q2", "--json"])
        eq(json.loads(one.stdout)["session"], "s", "one job's session")
        missing = run_agentd(["jobs", "--redis", r.url, "nope"])
        eq(missing.rc, 2, "an unknown job")
        contains(missing.stderr, "no job nope", "says so")
    finally:
        cleanup(r)


@case
def usage_errors_exit_2_and_name_the_problem():
    for args, want in [
        (["submit", "-p", "x"], "--redis URL is required"),
        (["submit", "--redis", "http://h", "-p", "x"], "must start with redis://"),
        (["submit", "--redis", "redis://h:70000", "-p", "x"], "port"),
        (["submit", "--redis", "redis://h", "-p", "x", "--job-id", "a:b"], "--job-id"),
        (["submit", "--redis", "redis://h", "-p", "  "], "empty"),
        (["submit", "--redis", "redis://h", "-p", "x", "--json"], "--json goes with --wait"),
        (["jobs", "--redis", "redis://h", "--wait"], "options of agentd submit"),
        (["jobs", "--redis", "redis://h", "--limit", "0"], "--limit"),
    ]:
        res = run_agentd(args)
        eq(res.rc, 2, "%s exit (%s)" % (args, res.stderr))
        contains(res.stderr, want, "%s message" % args)


@case
def unreachable_redis_exits_1_without_showing_the_password():
    port = RedisServer(aof=False).port  # free, nothing listens there
    res = run_agentd(["submit", "--redis", "redis://u:hunter2@127.0.0.1:%d" % port, "-p", "x"])
    eq(res.rc, 1, "exit")
    contains(res.stderr, "Connection refused", "the reason")
    ok("hunter2" not in res.stderr, "no password in %r" % res.stderr)
    res = run_agentd(["jobs", "--redis", "redis://127.0.0.1:%d" % port])
    eq(res.rc, 1, "jobs exit")


# ---- workers ---------------------------------------------------------------


class Worker:
    """agentd worker as a process of its own (its own process group: a kill
    takes its children too). stderr is read by a thread; wait_line() waits
    for a line, wait_stopped() for the process to stop itself."""

    def __init__(self, r, cfg, effects, *args, env=None, log=None):
        e = {"AGENTD_TEST_EFFECT_FILE": effects}
        e.update(env or {})
        cmd = agentd_cmd(["worker", "--redis", r.url, "-c", cfg] + list(args))
        self.p = subprocess.Popen(cmd, env=agentd_env(e), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
        self.lines, self.cv, self.log = [], threading.Condition(), log
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        _live.append(self)

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cv:
                self.lines.append(line)
                if self.log is not None:
                    self.log.append(line)
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)  # the end
            self.cv.notify_all()

    def wait_line(self, needle, timeout=30):
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        with self.cv:
            while True:
                for ln in self.lines:
                    if ln is not None and needle in ln:
                        return ln
                if None in self.lines:
                    raise AssertionError("worker ended before %r; stderr: %s"
                                         % (needle, "\n".join(x for x in self.lines if x)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %r within %ss; stderr: %s"
                                         % (needle, timeout, "\n".join(self.lines[-30:])))
                self.cv.wait(left)

    def wait_stopped(self, timeout=30):
        """Waits until the process stopped itself (SIGSTOP)."""
        st = [0]

        def stopped():
            pid, st[0] = os.waitpid(self.p.pid, os.WUNTRACED | os.WNOHANG)
            return pid != 0
        until(stopped, "the worker to stop", timeout)
        ok(os.WIFSTOPPED(st[0]), "the worker stopped itself (status %r)" % st[0])

    def kill9(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        self.t.join()
        if self in _live:
            _live.remove(self)

    def up(self):
        """Connected to Redis (its signal handling is in place)."""
        with self.cv:
            return any(ln and "redis: connected" in ln for ln in self.lines)

    def term(self, timeout=60):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=timeout * TIMEOUT_SCALE)
        self.t.join()
        if self in _live:
            _live.remove(self)
        return rc

    def stderr(self):
        with self.cv:
            return "\n".join(x for x in self.lines if x is not None)


def until(pred, what, timeout=60):
    """Waits for a condition (checked every 10 ms) up to a deadline that
    only guards against a hang."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("waited %ss for %s" % (timeout * TIMEOUT_SCALE, what))
        time.sleep(0.01)


def effect_script(calls=("c1",), tool="effect", delay_ms=0):
    """Every job: one round of tool calls (each tagged PROMPT/CALL), then an
    answer; by turn, so a request sent again gets the same response."""
    tc = S.tool_call_stream([(c, tool, '{"tag":"%%PROMPT%%/%s"}' % c) for c in calls])
    tc["echo_prompt"] = True
    if delay_ms:
        tc["delay_ms"] = delay_ms
    text = S.text_stream("all done", delay_ms=delay_ms) if delay_ms else S.text_stream("all done")
    return {"by_turn": True, "responses": [tc, text]}


EFFECT_ENV = ["AGENTD_TEST_EFFECT_FILE", "AGENTD_TEST_EFFECT_HOLD", "AGENTD_TEST_EFFECT_MS"]


def setup(tmp, m, isolation=None):
    """The config: the effect plugin (in its persistent worker process, the
    default, which gets the effect plugin's variables), or isolation
    "in-process" (the tool dies with agentd)."""
    pd = make_plugin_dir(tmp, ["effect"])
    raw = "[plugins]\ndir = %s\npass_env = %s\n" % (json.dumps(pd), json.dumps(EFFECT_ENV))
    agent = {"isolation": isolation} if isolation else None
    return (write_config(tmp, m.base_url, agent=agent, raw_append=raw),
            os.path.join(tmp, "effects.txt"))


def effects(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip()]


def events_of(c, job):
    return [json.loads(e[1][1]) for e in c.cmd("XRANGE", "agentd:job:%s:events" % job, "-", "+")]


def check_queue(c, jobs, effect_path=None, calls=("c1",)):
    """The invariants: every job ended, exactly one job_end each, event
    sequence numbers increasing within each attempt, nothing pending or left
    on the stream, at most one effect per (job, call)."""
    for j in jobs:
        h = c.hgetall("agentd:job:%s" % j)
        ok(h.get("state") in ("done", "failed", "dead"), "job %s ended (state %r)" % (j, h.get("state")))
        evs = events_of(c, j)
        eq(sum(1 for e in evs if e.get("type") == "job_end"), 1, "job_end events of %s" % j)
        last = {}
        for e in evs:
            a, q = e.get("attempt"), e.get("seq")
            ok(isinstance(q, int) and q > last.get(a, 0),
               "seq of %s increases within attempt %s: %r after %r" % (j, a, q, last.get(a)))
            last[a] = q
    pend = c.cmd("XPENDING", "agentd:jobs", "agentd")
    eq(pend[0], 0, "entries pending")
    eq(c.cmd("XLEN", "agentd:jobs"), 0, "entries left on the stream")
    if effect_path:
        seen = {}
        for ln in effects(effect_path):
            if ln.startswith("effect "):
                seen[ln] = seen.get(ln, 0) + 1
        dup = {k: v for k, v in seen.items() if v > 1}
        eq(dup, {}, "side effects that happened more than once")


@case
def worker_runs_jobs_as_conversations(tmp):
    r = redis()
    try:
        with mock(effect_script(calls=("c1", "c2"))) as m:
            cfg, fx = setup(tmp, m)
            w = Worker(r, cfg, fx, "--concurrency", "2")
            res = submit(r, "-p", "job-a", "--job-id", "a", "--wait")
            eq(res.rc, 0, "submit --wait (%s) worker: %s" % (res.stderr, w.stderr()))
            eq(res.stdout, "all done\n", "the answer on stdout")
            js = submit(r, "-p", "job-b", "--job-id", "b", "--wait", "--json")
            eq(js.rc, 0, "json")
            evs = [json.loads(x) for x in js.stdout.splitlines()]
            eq(evs[0]["type"], "job_submitted", "first line")
            types = [e["type"] for e in evs[1:]]
            eq(types[0], "job_attempt", "first event")
            eq(types[-1], "job_end", "last event")
            for t in ("tool_call", "tool_result", "step_finish", "text_delta", "finish"):
                ok(t in types, "a %s event" % t)
            eq([e["seq"] for e in evs[1:]], list(range(1, len(evs))), "seq 1, 2, 3 ...")
            ok(all(e["attempt"] == 1 for e in evs[1:]), "one attempt")
            eq(sorted(effects(fx)), ["effect job-a/c1", "effect job-a/c2", "effect job-b/c1",
                                     "effect job-b/c2"], "each call took effect once")
            c = r.client()
            h = c.hgetall("agentd:job:b")
            eq((h["state"], h["status"], h["result"]), ("done", "0", "all done"), "stored result")
            conv = [json.loads(x) for x in c.cmd("LRANGE", "agentd:job:b:conv", 0, -1)]
            eq([x["role"] for x in conv], ["user", "assistant", "tool", "tool", "assistant"],
               "the conversation in Redis")
            eq(w.term(), 0, "SIGTERM: exit 0")
            contains(w.stderr(), "2 finished", "its summary")
            check_queue(c, ["a", "b"], fx)
    finally:
        cleanup(r)


@case
def sessions_continue_across_workers_one_job_at_a_time(tmp):
    r = redis()
    try:
        with mock(effect_script()) as m:
            cfg, fx = setup(tmp, m)
            w1 = Worker(r, cfg, fx)
            w2 = Worker(r, cfg, fx)
            for i in range(3):
                eq(submit(r, "-p", "turn-%d" % i, "--session", "s", "--job-id", "t%d" % i).rc, 0,
                   "submit")
            res = submit(r, "-p", "turn-2", "--session", "s", "--job-id", "t2", "--wait")
            eq(res.rc, 0, "the last one ends (%s)" % res.stderr)
            c = r.client()
            conv = [json.loads(x) for x in c.cmd("LRANGE", "agentd:session:s", 0, -1)]
            eq([x["content"] for x in conv if x["role"] == "user"], ["turn-0", "turn-1", "turn-2"],
               "the prompts, in order, in one conversation")
            # Each job's first request carried the session so far.
            firsts = [q["json"]["messages"] for q in m.requests if q.get("turn") == 0]
            # (a job adds 4: its prompt, the call, its result, the answer)
            eq(sorted(len(x) for x in firsts), [1, 5, 9], "each job saw the ones before")
            eq(c.cmd("EXISTS", "agentd:session:s:active"), 0, "nothing active")
            w1.term()
            w2.term()
            check_queue(c, ["t0", "t1", "t2"], fx)
    finally:
        cleanup(r)


def killed_at(tmp, point, tool="effect", hold=False):
    """A job whose worker stops at `point` and is killed there; a second
    worker finishes it. Returns (events, effects, the answer, the Redis
    client, the mock's requests)."""
    r = redis()
    try:
        with mock(effect_script(tool=tool)) as m:
            # hold: the tool stops the process it runs in; in agentd's own,
            # so that the kill takes the running tool with it.
            cfg, fx = setup(tmp, m, "in-process" if hold else None)
            env = {"AGENTD_TEST_EFFECT_HOLD": "job-k/"} if hold else \
                  {"AGENTD_WORKER_STOP_AT": point + "@k"}
            a = Worker(r, cfg, fx, "--lease", "1", env=env)
            eq(submit(r, "-p", "job-k", "--job-id", "k").rc, 0, "submit")
            if not hold:
                a.wait_line("stopped at %s (job k)" % point)
            # (hold: the plugin stops the process after its effect, before
            # the tool answers)
            a.wait_stopped()
            a.kill9()
            b = Worker(r, cfg, fx, "--lease", "1")
            res = submit(r, "-p", "job-k", "--job-id", "k", "--wait")
            eq(res.rc, 0, "the job ends (%s); worker: %s" % (res.stderr, b.stderr()))
            c = r.client()
            evs = events_of(c, "k")
            check_queue(c, ["k"], fx)
            b.term()
            return evs, effects(fx), res.stdout, c.hgetall("agentd:job:k:ledger"), m.requests
    finally:
        cleanup(r)


def resumed(evs):
    return [(e["id"], e["resumed"], e["is_error"]) for e in evs if e.get("resumed")]


@case
def killed_after_the_ledger_said_started_the_call_is_interrupted(tmp):
    evs, fx, out, c, _ = killed_at(tmp, "tool_started")
    eq(fx, [], "the tool never ran")
    eq(resumed(evs), [("c1", "interrupted", True)], "its result")
    eq(out, "all done\n", "the job still answers")
    eq(max(e["attempt"] for e in evs), 2, "two attempts")


@case
def killed_while_the_tool_ran_the_effect_is_not_repeated(tmp):
    evs, fx, out, c, _ = killed_at(tmp, None, hold=True)
    eq(fx, ["effect job-k/c1"], "one effect")
    eq(resumed(evs), [("c1", "interrupted", True)], "outcome unknown: interrupted")


@case
def killed_after_the_tool_finished_the_effect_is_not_repeated(tmp):
    evs, fx, _, c, _ = killed_at(tmp, "tool_finished")
    eq(fx, ["effect job-k/c1"], "one effect")
    eq(resumed(evs), [("c1", "interrupted", True)], "the ledger did not know: interrupted")


@case
def killed_after_the_ledger_had_the_result_it_is_reused(tmp):
    evs, fx, _, c, reqs = killed_at(tmp, "ledger_done")
    eq(fx, ["effect job-k/c1"], "one effect")
    eq(resumed(evs), [("c1", "reused", False)], "the stored result")
    tool = [e for e in evs if e.get("resumed")][0]
    eq(tool["content"], "did job-k/c1", "its content")
    # The second attempt asked the model once: with the tool result.
    eq([q.get("turn") for q in reqs], [0, 1], "requests by turn")


@case
def killed_before_the_ack_the_stored_answer_ends_the_job(tmp):
    evs, fx, out, c, reqs = killed_at(tmp, "before_ack")
    eq(fx, ["effect job-k/c1"], "one effect")
    eq(out, "all done\n", "the answer")
    eq([q.get("turn") for q in reqs], [0, 1], "no request after the answer was stored")
    eq(resumed(evs), [], "nothing to settle")


@case
def idempotent_tool_runs_again_after_a_kill(tmp):
    evs, fx, _, ledger, _ = killed_at(tmp, "tool_finished", tool="effect_idem")
    eq(fx, ["idem job-k/c1", "idem job-k/c1"], "run again (it said it may be)")
    eq(resumed(evs), [("c1", "rerun", False)], "run again")
    led = json.loads(ledger["1:c1"])
    eq((led["state"], led["attempt"]), ("done", 2), "the ledger has the second run")


@case
def idempotent_call_sees_the_same_key_each_time(tmp):
    # An ABI 1.1 tool reads the key from its call context: the job's id as
    # the conversation id, the call's id.
    evs, fx, _, _, _ = killed_at(tmp, "tool_finished", tool="effect_key")
    eq(fx, ["key k:c1 job-k/c1", "key k:c1 job-k/c1"], "two runs, one key: JOB:CALL")
    eq(resumed(evs), [("c1", "rerun", False)], "run again")


@case
def sigstop_past_the_lease_the_stale_worker_is_refused(tmp):
    r = redis()
    try:
        with mock(effect_script()) as m:
            cfg, fx = setup(tmp, m)
            a = Worker(r, cfg, fx, "--lease", "1", env={"AGENTD_WORKER_STOP_AT": "tool_started@s"})
            eq(submit(r, "-p", "job-s", "--job-id", "s").rc, 0, "submit")
            a.wait_line("stopped at tool_started (job s)")
            a.wait_stopped()
            # Stopped past its lease: another worker takes the job over.
            b = Worker(r, cfg, fx, "--lease", "1")
            res = submit(r, "-p", "job-s", "--job-id", "s", "--wait")
            eq(res.rc, 0, "ended by the other worker (%s)" % res.stderr)
            c = r.client()
            evs_before = events_of(c, "s")
            # Woken up, the stale worker may still run the call it had
            # started (unless its heartbeat finds the job gone first): that
            # is the only effect, the new owner answered "interrupted". Its
            # report is refused either way.
            os.kill(a.p.pid, signal.SIGCONT)
            a.wait_line("lost its lease")
            ok(effects(fx) in ([], ["effect job-s/c1"]), "at most one effect: %r" % effects(fx))
            eq(events_of(c, "s"), evs_before, "nothing of the stale attempt was stored")
            eq(c.hgetall("agentd:job:s")["ended_by"].split("/")[1], "2", "ended by attempt 2")
            eq(a.term(), 0, "the stale worker goes on and stops cleanly")
            contains(a.stderr(), "1 lost", "its summary")
            b.term()
            check_queue(c, ["s"], fx)
    finally:
        cleanup(r)


@case
def sigterm_hands_running_jobs_back(tmp):
    r = redis()
    try:
        with mock(effect_script(delay_ms=200)) as m:
            cfg, fx = setup(tmp, m)
            a = Worker(r, cfg, fx, "--grace", "0", "--lease", "60")
            eq(submit(r, "-p", "job-h", "--job-id", "h").rc, 0, "submit")
            a.wait_line("job h: attempt 1")
            # Its tool ran; the answer streams slowly.
            until(lambda: effects(fx), "the tool's effect")
            eq(a.term(), 0, "SIGTERM: exit 0")
            contains(a.stderr(), "handed back", "it says so")
            c = r.client()
            eq(c.hgetall("agentd:job:h")["handbacks"], "1", "one hand-back")
            # A long lease: only the hand-back lets another worker take it now.
            b = Worker(r, cfg, fx, "--lease", "60")
            res = submit(r, "-p", "job-h", "--job-id", "h", "--wait")
            eq(res.rc, 0, "finished by the next worker (%s)" % res.stderr)
            evs = events_of(c, "h")
            eq(sum(1 for e in evs if e["type"] == "job_handback"), 1, "job_handback event")
            eq(effects(fx), ["effect job-h/c1"], "its tool did not run again")
            b.term()
            check_queue(c, ["h"], fx)
    finally:
        cleanup(r)


@case
def sigterm_lets_running_jobs_finish_within_the_grace(tmp):
    r = redis()
    try:
        with mock(effect_script(delay_ms=50)) as m:
            cfg, fx = setup(tmp, m)
            a = Worker(r, cfg, fx, "--grace", "60")
            eq(submit(r, "-p", "job-g", "--job-id", "g").rc, 0, "submit")
            a.wait_line("job g: attempt 1")
            eq(a.term(), 0, "exit 0 after the job")
            c = r.client()
            h = c.hgetall("agentd:job:g")
            eq((h["state"], h["handbacks"]), ("done", "0"), "finished, not handed back")
            check_queue(c, ["g"], fx)
    finally:
        cleanup(r)


@case
def job_whose_workers_keep_dying_is_dead_lettered(tmp):
    r = redis()
    try:
        with mock(effect_script()) as m:
            cfg, fx = setup(tmp, m)
            eq(submit(r, "-p", "job-d", "--job-id", "d").rc, 0, "submit")
            for _ in range(2):
                w = Worker(r, cfg, fx, "--lease", "0.5", "--max-deliveries", "2",
                           env={"AGENTD_WORKER_STOP_AT": "begun@d"})
                w.wait_line("stopped at begun (job d)")
                w.wait_stopped()
                w.kill9()
            w = Worker(r, cfg, fx, "--lease", "0.5", "--max-deliveries", "2")
            res = submit(r, "-p", "job-d", "--job-id", "d", "--wait")
            eq(res.rc, 4, "exit 4: dead-lettered (%s)" % res.stderr)
            contains(res.stderr, "started 2 times without finishing", "the reason")
            w.wait_line("dead-lettered")
            c = r.client()
            eq(c.cmd("XLEN", "agentd:dead"), 1, "a dead letter")
            eq(effects(fx), [], "no tool ran")
            w.term()
            check_queue(c, ["d"], fx)
    finally:
        cleanup(r)


@case
def redis_restart_from_its_aof_loses_no_job(tmp):
    r = redis(aof=True)
    try:
        with mock(effect_script(delay_ms=20)) as m:
            cfg, fx = setup(tmp, m)
            ws = [Worker(r, cfg, fx, "--lease", "2", "--concurrency", "3") for _ in range(2)]
            ids = ["r%02d" % i for i in range(16)]
            for i in ids:
                eq(submit(r, "-p", "job-" + i, "--job-id", i).rc, 0, "submit")
            c = r.client()
            until(lambda: sum(1 for i in ids if c.hgetall("agentd:job:" + i).get("state") == "done")
                  >= 4, "4 jobs done")
            c.close()
            r.kill()
            r.start()  # the same port and folder: from its AOF
            for i in ids:
                res = submit(r, "-p", "job-" + i, "--job-id", i, "--wait")
                eq(res.rc, 0, "job %s ends (%s)" % (i, res.stderr))
            for w in ws:
                eq(w.term(), 0, "worker exit")
            check_queue(r.client(), ids, fx)
            ok(any("reconnect" in w.stderr() for w in ws), "the workers said they reconnect")
    finally:
        cleanup(r)


@case
def kill_9_at_random_times_every_job_ends_exactly_once(tmp):
    seed = int(os.environ.get("AGENTD_TEST_SEED") or time.time())
    rnd = random.Random(seed)
    r = redis(aof=True)
    try:
        with mock(effect_script(calls=("c1", "c2"), delay_ms=40)) as m:
            cfg, fx = setup(tmp, m)
            log = []
            args = ("--lease", "1", "--concurrency", "2")
            ids = ["x%03d" % i for i in range(40)]
            for i in ids:
                eq(submit(r, "-p", "job-" + i, "--job-id", i).rc, 0, "submit")
            slow = {"AGENTD_TEST_EFFECT_MS": "60"}
            ws = [Worker(r, cfg, fx, *args, log=log, env=slow) for _ in range(3)]
            c = r.client()
            kills = 0
            deadline = time.monotonic() + 120 * TIMEOUT_SCALE
            while time.monotonic() < deadline:
                states = [c.hgetall("agentd:job:" + i).get("state") for i in ids]
                if all(s in ("done", "failed", "dead") for s in states):
                    break
                time.sleep(rnd.uniform(0.05, 0.3) * TIMEOUT_SCALE)
                if kills >= 60:
                    continue  # enough: the rest finishes in peace
                # Only workers that came up are killed (each restart makes
                # progress, also when starting is slow, as under valgrind).
                up = [k for k, w in enumerate(ws) if w.up()]
                if not up:
                    continue
                k = rnd.choice(up)
                ws[k].kill9()
                kills += 1
                ws[k] = Worker(r, cfg, fx, *args, log=log, env=slow)
            for w in ws:
                w.wait_line("redis: connected")  # its signal handler is in place
                eq(w.term(), 0, "worker exit")
            evs = {i: events_of(c, i) for i in ids}
            states = [c.hgetall("agentd:job:" + i)["state"] for i in ids]
            attempts = sum(int(c.hgetall("agentd:job:" + i)["attempts"]) for i in ids)
            how = {}
            for e in (e for v in evs.values() for e in v if e.get("resumed")):
                how[e["resumed"]] = how.get(e["resumed"], 0) + 1
            n_fx = len(effects(fx))
            print("  seed %d: %d jobs, %d kills, %d attempts, states %r, settled %r, %d effects"
                  % (seed, len(ids), kills, attempts,
                     {s: states.count(s) for s in set(states)}, how, n_fx), flush=True)
            ok(kills >= 5, "enough kills (%d)" % kills)
            check_queue(c, ids, fx)
            ok(n_fx <= 2 * len(ids), "at most one effect per (job, call)")
    finally:
        cleanup(r)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_workers.py -- the Redis job queue from the outside: agentd submit and
agentd jobs against a redis-server the test starts itself (127.0.0.1, a free
port, a temporary folder). Skipped, saying why, without redis-server."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import case, contains, eq, main, ok, run_agentd, skip  # noqa: E402
from redislib import RedisServer  # noqa: E402


def redis(aof=False):
    if not RedisServer.available():
        skip("redis-server is not installed (Debian: redis-server; mk/deps.sh installs it)")
    return RedisServer(aof=aof).start()


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
        r.stop()


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
        r.stop()


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
        r.stop()


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


if __name__ == "__main__":
    main()

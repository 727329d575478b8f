"""mcp_vs_ts.py -- round trips per second of MCP tools/call to one trivial
stdio server (`bench_mcp --server`): agentd's client (`bench_mcp --client`)
against the official TypeScript SDK's client (bench/mcp/ts_client.cjs, on
the Node and SDK of ../shared/mcp), paired.

    python3 bench/mcp_vs_ts.py [--rounds N] [--seconds S]
    make bench-mcp                  (ROUNDS=N MCP_SECONDS=S)

Each round runs both clients for S seconds each, one after the other (the
order alternates between rounds, so that drift of the machine's load hits
both alike), each with a server of its own after 500 warm-up calls. The
report: every round's two rates and their ratio, the median rate of each
client, and the median of the per-round ratios (the paired figure); the
same for each client process's CPU time per call (user + system: steadier
than the rate on a loaded machine, and the server's share left out). Exit 0,
or 1 when a client failed; 77 when ../shared/mcp is not there (skipped).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def shared_bin():
    setup = os.path.join(SRC, "..", "shared", "mcp", "setup")
    if not os.path.exists(setup):
        return None, "../shared/mcp/setup is absent"
    p = subprocess.run(["sh", setup], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = p.stdout.decode().strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode != 0 or not os.path.exists(os.path.join(b, "node")):
        return None, "../shared/mcp/setup failed: %s" % p.stderr.decode()[-300:]
    return b, None


def one(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("mcp_vs_ts: %s failed: %s" % (cmd[0], p.stderr.decode()[-500:]))
    d = json.loads(p.stdout.decode().strip().splitlines()[-1])
    return d["rate"], d["cpu_us"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS") or 7))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("MCP_SECONDS") or 2))
    ap.add_argument("--bench", default=os.path.join(SRC, "build", "bench", "bench_mcp"))
    a = ap.parse_args()
    b, why = shared_bin()
    if not b:
        print("skip bench mcp_vs_ts: %s" % why)
        return 77
    if not os.access(a.bench, os.X_OK):
        sys.exit("mcp_vs_ts: %s is not built (make bench-mcp builds it)" % a.bench)
    node, modules = os.path.join(b, "node"), os.path.dirname(b)
    ts = [node, os.path.join(HERE, "mcp", "ts_client.cjs"), modules, a.bench, str(a.seconds)]
    ag = [a.bench, "--client", str(a.seconds)]
    sdk = json.load(open(os.path.join(modules, "@modelcontextprotocol", "sdk", "package.json")))
    nv = subprocess.run([node, "--version"], stdout=subprocess.PIPE).stdout.decode().strip()
    print("bench mcp_vs_ts: %d rounds of %gs per client; agentd's client vs "
          "@modelcontextprotocol/sdk %s on node %s; server: bench_mcp --server (stdio)"
          % (a.rounds, a.seconds, sdk["version"], nv))
    rows = []
    for i in range(a.rounds):
        if i % 2 == 0:
            (ra, ca), (rt, ct) = one(ag), one(ts)
        else:
            (rt, ct), (ra, ca) = one(ts), one(ag)
        rows.append((ra, rt, ca, ct))
        print("  round %d: agentd %7.0f/s %6.1f us CPU   ts-sdk %7.0f/s %6.1f us CPU   "
              "rate ratio %.2f, CPU ratio %.2f" % (i + 1, ra, ca, rt, ct, ra / rt, ct / ca))
        sys.stdout.flush()
    med = statistics.median
    ma, mt = med(r[0] for r in rows), med(r[1] for r in rows)
    print("bench mcp_vs_ts: round trips/s, median: agentd %.0f, TypeScript SDK %.0f; paired "
          "median ratio %.2fx" % (ma, mt, med(r[0] / r[1] for r in rows)))
    print("bench mcp_vs_ts: client CPU per call, median: agentd %.1f us, TypeScript SDK %.1f us; "
          "paired median ratio %.2fx" % (med(r[2] for r in rows), med(r[3] for r in rows),
                                         med(r[3] / r[2] for r in rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""netns_run.py -- runs a command next to a server that listens on every
interface, inside a network namespace of its own (nothing but the command
can reach the server).

    unshare -rn python3 tests/mcp/netns_run.py PORT SERVER_ARGV... -- CMD_ARGV...

Brings the namespace's loopback up, starts SERVER_ARGV (its output goes to
stderr), waits until 127.0.0.1:PORT accepts a connection (at most 30 s),
runs CMD_ARGV (stdin, stdout and stderr passed on) and exits with its
status; the server is killed. Exit 97: the loopback could not be brought up;
98: the server did not listen.
"""
import socket
import subprocess
import sys
import time


def main():
    port = int(sys.argv[1])
    rest = sys.argv[2:]
    cut = rest.index("--")
    server, cmd = rest[:cut], rest[cut + 1:]
    if subprocess.run(["ip", "link", "set", "lo", "up"]).returncode != 0:
        sys.exit(97)
    srv = subprocess.Popen(server, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    try:
        end = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end or srv.poll() is not None:
                    sys.stderr.write("netns_run: the server did not listen on port %d\n" % port)
                    sys.exit(98)
                time.sleep(0.05)
        rc = subprocess.run(cmd).returncode
    finally:
        srv.kill()
        srv.wait()
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()

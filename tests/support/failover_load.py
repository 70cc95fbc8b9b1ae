"""The harness pg_failover_load.py and redis_failover_load.py share.

CLIENTS threads each keep one connection to 127.0.0.1:PORT and run one
operation after another for SECONDS. An error is counted by kind, the
connection dropped and re-made 10 ms later (like an application with a
retrying pool; pgbench 15 and redis-benchmark abort a client on a lost
connection instead). COMMAND, if given, runs 3 s into the load. The summary:
operations acknowledged, failures by kind, the longest pause with no
acknowledged operation at all, the longest one client waited between two,
and which server port answered when; its last line, `summary: {JSON}`, is the
same for programs (tests/support/patroni.rs reads it).
"""
import collections
import json
import subprocess
import sys
import threading
import time


def parse_args(argv):
    """PORT SECONDS [CLIENTS] [-- COMMAND...] -> (port, seconds, clients, command)."""
    command = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    if len(argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} PORT SECONDS [CLIENTS] [-- COMMAND...]")
    return int(argv[0]), float(argv[1]), int(argv[2]) if len(argv) > 2 else 8, command


def switches(acks):
    """The (t, server) of each acknowledgement from another server than the one before."""
    prev = None
    for t, server in acks:
        if server != prev:
            yield t, server
            prev = server


def run(port, seconds, clients, command, connect, op, failures, kind, what):
    """connect() -> conn (with .close()); op(conn, client, i) -> the answering
    server's port; `failures`: the exception classes counted as failed
    operations, `kind(e)`: their label; `what`: the operation's name."""
    lock = threading.Lock()
    acks = []  # (t, server)
    errors = collections.Counter()
    gaps = [0.0] * clients
    t0 = time.monotonic()
    end = t0 + seconds

    def client(n):
        conn, last, i = None, time.monotonic(), 0
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = connect()
                i += 1
                server = op(conn, n, i)
                now = time.monotonic()
                gaps[n] = max(gaps[n], now - last)
                last = now
                with lock:
                    acks.append((now, server))
            except failures as e:
                with lock:
                    errors[kind(e)] += 1
                try:
                    if conn is not None:
                        conn.close()
                except failures:
                    pass
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    if command:
        time.sleep(3)
        t_cmd = time.monotonic() - t0
        out = subprocess.run(command, capture_output=True, text=True)
        t_cmd_end = time.monotonic() - t0
    for t in threads:
        t.join()

    acks.sort()
    times = [t0] + [a[0] for a in acks] + [end]
    longest, at = max((b - a, a - t0) for a, b in zip(times, times[1:]))
    print(f"{clients} clients, {seconds:.0f} s through 127.0.0.1:{port}: {len(acks)} {what} acknowledged, "
          f"{sum(errors.values())} failed")
    if command:
        print(f"  command at +{t_cmd:.1f} s, returned at +{t_cmd_end:.1f} s (exit {out.returncode}): "
              f"{' '.join(command)}")
        if out.returncode != 0:
            print("  command stderr: " + " | ".join(out.stderr.strip().splitlines()[-5:]))
    print(f"  longest pause with no acknowledged {what}: {longest * 1000:.0f} ms (from +{at:.2f} s); "
          f"longest wait of one client: {max(gaps) * 1000:.0f} ms")
    for k, n in errors.most_common():
        print(f"  {n} x {k}")
    print("  server port from: " + ", ".join(f"+{t - t0:.2f}s :{server}" for t, server in switches(acks)))
    print("summary: " + json.dumps({
        "acked": len(acks), "failed": sum(errors.values()), "errors": dict(errors),
        "longest_pause_ms": round(longest * 1000), "longest_pause_at_s": round(at, 2),
        "longest_wait_ms": round(max(gaps) * 1000),
        "command_exit": out.returncode if command else None,
        "runs": [[round(t - t0, 3), server] for t, server in switches(acks)],
    }))

#!/usr/bin/python3
"""Write load through a PostgreSQL endpoint across a failover; what clients see.

    /usr/bin/python3 tests/support/pg_failover_load.py PORT SECONDS [CLIENTS] [-- COMMAND...]

CLIENTS (default 8) threads each keep one connection to 127.0.0.1:PORT
(user postgres, password $PGPASSWORD or "postgres") and run
`INSERT INTO lp_load(client) VALUES (..) RETURNING inet_server_port()` in
autocommit, as fast as they can, for SECONDS. On an error a client counts it
(by kind), drops its connection and reconnects 10 ms later: like an
application with a retrying pool, unlike pgbench 15, whose clients abort on
a lost connection. COMMAND, if given, runs 3 s into the load (e.g.
`bash tests/support/patroni.sh switchover DIR`).

Prints: transactions committed, failed by kind, the longest pause (the
longest time no client committed anything), the longest a single client
waited between two commits, and which server port answered when.
Uses Debian's python3-psycopg2. Loopback only.
"""
import collections
import os
import subprocess
import sys
import threading
import time

import psycopg2


def main():
    args = sys.argv[1:]
    command = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1:]
    port, seconds = int(args[0]), float(args[1])
    clients = int(args[2]) if len(args) > 2 else 8
    password = os.environ.get("PGPASSWORD", "postgres")

    def connect():
        c = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                             dbname="postgres", connect_timeout=2)
        c.autocommit = True
        return c

    c = connect()
    c.cursor().execute("CREATE TABLE IF NOT EXISTS lp_load (id bigserial PRIMARY KEY, client int, "
                       "at timestamptz DEFAULT clock_timestamp())")
    c.close()

    lock = threading.Lock()
    commits = []  # (t, client, server_port)
    errors = collections.Counter()
    per_client_gap = [0.0] * clients
    t0 = time.monotonic()
    end = t0 + seconds

    def client(n):
        conn = None
        last = time.monotonic()
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = connect()
                cur = conn.cursor()
                cur.execute("INSERT INTO lp_load(client) VALUES (%s) RETURNING inet_server_port()", (n,))
                server = cur.fetchone()[0]
                now = time.monotonic()
                per_client_gap[n] = max(per_client_gap[n], now - last)
                last = now
                with lock:
                    commits.append((now, n, server))
            except psycopg2.Error as e:
                kind = (e.pgcode or type(e).__name__) + ": " + str(e).strip().splitlines()[0][:70]
                with lock:
                    errors[kind] += 1
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    cmd_out = None
    if command:
        time.sleep(3)
        t_cmd = time.monotonic() - t0
        cmd_out = subprocess.run(command, capture_output=True, text=True)
        t_cmd_end = time.monotonic() - t0
    for t in threads:
        t.join()

    commits.sort()
    times = [t0] + [c[0] for c in commits] + [end]
    gaps = [(b - a, a - t0) for a, b in zip(times, times[1:])]
    longest, at = max(gaps)
    print(f"{clients} clients, {seconds:.0f} s through 127.0.0.1:{port}: {len(commits)} committed, "
          f"{sum(errors.values())} failed")
    if command:
        print(f"  command at +{t_cmd:.1f} s, returned at +{t_cmd_end:.1f} s (exit {cmd_out.returncode}): "
              f"{' '.join(command)}")
    print(f"  longest pause with no commit: {longest * 1000:.0f} ms (from +{at:.2f} s); "
          f"longest wait of one client: {max(per_client_gap) * 1000:.0f} ms")
    for kind, n in errors.most_common():
        print(f"  {n} x {kind}")
    runs, prev = [], None
    for t, _, server in commits:
        if server != prev:
            runs.append(f"+{t - t0:.2f}s :{server}")
            prev = server
    print("  server port from: " + ", ".join(runs))


if __name__ == "__main__":
    main()

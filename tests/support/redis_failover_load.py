#!/usr/bin/python3
"""Write load through a Redis endpoint across a failover; what clients see.

    /usr/bin/python3 tests/support/redis_failover_load.py PORT SECONDS [CLIENTS] [-- COMMAND...]

The Redis twin of pg_failover_load.py (redis-benchmark aborts on a lost
connection): CLIENTS (default 8) threads each keep one connection to
127.0.0.1:PORT and send `SET lp:<client> <n>` then `ROLE` (to learn which
role answered) as fast as they can for SECONDS; an error reply or a lost
connection is counted (by kind) and the client reconnects 10 ms later.
COMMAND, if given, runs 3 s into the load. Prints the same summary: SETs
acknowledged, failures by kind, the longest pause with no acknowledged SET,
and which server (its port, from `CONFIG GET port` at connect) answered
when. Standard library only. Loopback only.
"""
import collections
import socket
import subprocess
import sys
import threading
import time


def command(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by peer")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"bad reply {line[:40]!r}")

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()

    def close(self):
        self.sock.close()


def main():
    args = sys.argv[1:]
    cmd = []
    if "--" in args:
        i = args.index("--")
        args, cmd = args[:i], args[i + 1:]
    port, seconds = int(args[0]), float(args[1])
    clients = int(args[2]) if len(args) > 2 else 8
    lock = threading.Lock()
    acks = []  # (t, server port)
    errors = collections.Counter()
    t0 = time.monotonic()
    end = t0 + seconds

    def client(n):
        conn, server, i = None, None, 0
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = Conn(port)
                    server = conn.call("CONFIG", "GET", "port")[1]
                i += 1
                conn.call("SET", f"lp:{n}", i)
                now = time.monotonic()
                with lock:
                    acks.append((now, server))
            except (OSError, ConnectionError, RuntimeError) as e:
                with lock:
                    errors[f"{type(e).__name__}: {str(e)[:60]}"] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    if cmd:
        time.sleep(3)
        t_cmd = time.monotonic() - t0
        out = subprocess.run(cmd, capture_output=True, text=True)
        t_cmd_end = time.monotonic() - t0
    for t in threads:
        t.join()
    acks.sort()
    times = [t0] + [a[0] for a in acks] + [end]
    longest, at = max((b - a, a - t0) for a, b in zip(times, times[1:]))
    print(f"{clients} clients, {seconds:.0f} s through 127.0.0.1:{port}: {len(acks)} SETs acknowledged, "
          f"{sum(errors.values())} failed")
    if cmd:
        print(f"  command at +{t_cmd:.1f} s, returned at +{t_cmd_end:.1f} s (exit {out.returncode}): {' '.join(cmd)}")
    print(f"  longest pause with no acknowledged SET: {longest * 1000:.0f} ms (from +{at:.2f} s)")
    for kind, n in errors.most_common():
        print(f"  {n} x {kind}")
    runs, prev = [], None
    for t, server in acks:
        if server != prev:
            runs.append(f"+{t - t0:.2f}s :{server}")
            prev = server
    print("  server port from: " + ", ".join(runs))


if __name__ == "__main__":
    main()

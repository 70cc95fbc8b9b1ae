#!/usr/bin/python3
"""Write load through a Redis endpoint across a failover; what clients see.

    /usr/bin/python3 tests/support/redis_failover_load.py PORT SECONDS [CLIENTS] [-- COMMAND...]

The Redis twin of pg_failover_load.py (redis-benchmark aborts on a lost
connection): each client (default 8) keeps one connection to 127.0.0.1:PORT
and sends `SET lp:<client> <n>`; an error reply counts as a failure like a
lost connection. The server is named by its port (`CONFIG GET port` at
connect). The harness and its summary: failover_load.py. Standard library
only (a minimal RESP client). Loopback only.
"""
import socket
import sys

import failover_load


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
    port, seconds, clients, command = failover_load.parse_args(sys.argv[1:])

    def connect():
        conn = Conn(port)
        conn.server = conn.call("CONFIG", "GET", "port")[1]
        return conn

    def set_key(conn, n, i):
        conn.call("SET", f"lp:{n}", i)
        return conn.server

    failover_load.run(port, seconds, clients, command, connect, set_key,
                      (OSError, ConnectionError, RuntimeError),
                      lambda e: f"{type(e).__name__}: {str(e)[:60]}", "SETs")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Write load through a PostgreSQL endpoint across a failover; what clients see.

    /usr/bin/python3 tests/support/pg_failover_load.py PORT SECONDS [CLIENTS] [-- COMMAND...]

Each client (default 8) keeps one connection to 127.0.0.1:PORT (user
postgres, password $PGPASSWORD or "postgres") and runs
`INSERT INTO lp_load(client) VALUES (..) RETURNING inet_server_port()` in
autocommit; COMMAND (e.g. `bash tests/support/patroni.sh switchover DIR`)
runs 3 s in. The harness and its summary: failover_load.py.
Uses Debian's python3-psycopg2. Loopback only.
"""
import os
import sys

import psycopg2
import psycopg2.errors

import failover_load


def main():
    port, seconds, clients, command = failover_load.parse_args(sys.argv[1:])
    password = os.environ.get("PGPASSWORD", "postgres")

    def connect():
        c = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password=password,
                             dbname="postgres", connect_timeout=2)
        c.autocommit = True
        return c

    def insert(conn, n, _i):
        cur = conn.cursor()
        cur.execute("INSERT INTO lp_load(client) VALUES (%s) RETURNING inet_server_port()", (n,))
        return cur.fetchone()[0]

    def kind(e):
        return (e.pgcode or type(e).__name__) + ": " + str(e).strip().splitlines()[0][:70]

    c = connect()
    try:
        c.cursor().execute("CREATE TABLE IF NOT EXISTS lp_load (id bigserial PRIMARY KEY, client int, "
                           "at timestamptz DEFAULT clock_timestamp())")
    except psycopg2.errors.UniqueViolation:
        pass  # another load created it at the same moment (IF NOT EXISTS is not atomic)
    c.close()
    failover_load.run(port, seconds, clients, command, connect, insert, psycopg2.Error, kind, "INSERTs")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Write load through a MySQL/MariaDB endpoint across a failover; what clients see.

    /usr/bin/python3 tests/support/my_failover_load.py PORT SECONDS [CLIENTS] [-- COMMAND...]

Each client (default 8) keeps one connection to 127.0.0.1:PORT (user app,
password $MYSQL_PASSWORD or "app", database app: tests/support/mariadb.sh's)
and runs `INSERT INTO app.t(v) VALUES (..)` then `SELECT @@port` in
autocommit; COMMAND (e.g. `bash tests/support/mariadb.sh switchover DIR`)
runs 3 s in. A write refused by a read-only node is error 1290
(ER_OPTION_PREVENTS_STATEMENT). The harness and its summary:
failover_load.py. Uses Debian's python3-pymysql. Loopback only.
"""
import os
import sys

import pymysql

import failover_load


def main():
    port, seconds, clients, command = failover_load.parse_args(sys.argv[1:])
    password = os.environ.get("MYSQL_PASSWORD", "app")

    def connect():
        return pymysql.connect(host="127.0.0.1", port=port, user="app", password=password,
                               database="app", connect_timeout=2, read_timeout=5, write_timeout=5,
                               autocommit=True)

    def insert(conn, n, i):
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t(v) VALUES (%s)", (f"{n}-{i}",))
            cur.execute("SELECT @@port")
            return cur.fetchone()[0]

    def kind(e):
        code = e.args[0] if e.args else type(e).__name__
        text = str(e.args[1]) if len(e.args) > 1 else str(e)
        return f"{code}: {text.strip().splitlines()[0][:70]}" if text else str(code)

    failover_load.run(port, seconds, clients, command, connect, insert, pymysql.Error, kind, "INSERTs")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Measure Patroni's leader-lock race on the tests/support/patroni.sh cluster.

    /usr/bin/python3 tests/support/patroni_race.py DIR [ROUNDS] [kill|switchover]

Each round fails the leader over (kill: SIGKILL its Patroni and postmaster, as
`patroni.sh kill-primary`; switchover: `patronictl switchover --force`) and,
on every other node, polls three things in their own threads every ~5 ms:
GET /primary (status and the body's "role"), GET /patroni (its "role") and
`SELECT pg_is_in_recovery()` over a kept connection. It prints, for the node
that becomes leader, when /primary first answered 200 and when PostgreSQL
first left recovery (the window between the two is what a checker trusting
/primary alone gets wrong), and the roles the bodies showed in that window.
Between rounds it runs `patroni.sh up` and `wait` so all three stream again.
Uses Debian's python3-psycopg2 (a Patroni dependency). Loopback only.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
POLL_S = 0.005
DEADLINE_S = 120


def load_env(d):
    env = {}
    with open(os.path.join(d, "env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                env[k] = v.strip('"')
    return env


def patroni_sh(cmd, d):
    return subprocess.run(["bash", os.path.join(HERE, "patroni.sh"), cmd, d],
                          check=True, capture_output=True, text=True).stdout.strip()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        try:
            role = json.loads(body).get("role")
        except ValueError:
            role = None
        return r.status, role
    finally:
        c.close()


class Poller:
    """Records (t, value) at every change of one probe of one node."""

    def __init__(self, name, probe):
        self.name, self.probe = name, probe
        self.changes = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def record(self, value):
        if not self.changes or self.changes[-1][1] != value:
            self.changes.append((time.monotonic(), value))

    def run(self):
        while not self.stop:
            try:
                self.record(self.probe())
            except Exception as e:  # a refused/reset connection is a value too
                self.record(("error", type(e).__name__))
            time.sleep(POLL_S)


class PgProbe:
    def __init__(self, port, password):
        self.port, self.password, self.conn = port, password, None

    def __call__(self):
        try:
            if self.conn is None:
                self.conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                             password=self.password, dbname="postgres", connect_timeout=1)
                self.conn.autocommit = True
            cur = self.conn.cursor()
            cur.execute("select pg_is_in_recovery()")
            return "in_recovery" if cur.fetchone()[0] else "primary"
        except psycopg2.Error:
            self.conn = None
            raise


def first(changes, pred, after):
    for t, v in changes:
        if t >= after and pred(v):
            return t, v
    return None, None


def values_between(changes, t0, t1):
    """Values a probe showed at some point in [t0, t1)."""
    seen = []
    current = None
    for t, v in changes:
        if t <= t0:
            current = v
        elif t < t1:
            if current is not None and current not in seen:
                seen.append(current)
            current = v
    if current is not None and current not in seen:
        seen.append(current)
    return seen


def one_round(d, env, mode):
    rest0, pg0 = int(env["REST_PORT"]), int(env["PG_PORT"])
    nodes = {f"pg{i + 1}": (rest0 + i, pg0 + i) for i in range(3)}
    old = patroni_sh("leader", d)
    others = [n for n in nodes if n != old]
    pollers = []
    for n in others:
        rest, pg = nodes[n]
        pollers += [Poller(n, lambda p=rest: ("primary",) + get(p, "/primary")),
                    Poller(n, lambda p=rest: ("patroni",) + get(p, "/patroni")),
                    Poller(n, PgProbe(pg, env["PGPASSWORD"]))]
    for p in pollers:
        p.thread.start()
    time.sleep(0.3)  # every poller has a baseline before the failure
    t_fail = time.monotonic()
    if mode == "kill":
        with open(os.path.join(d, old, "patroni.pid")) as f:
            patroni_pid = int(f.read())
        with open(os.path.join(d, old, "data", "postmaster.pid")) as f:
            postmaster_pid = int(f.readline())
        os.kill(patroni_pid, signal.SIGKILL)
        os.kill(postmaster_pid, signal.SIGKILL)
    else:
        cfg = os.path.join(d, old, "patroni.yml")
        subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/bin/patronictl", "-c", cfg,
                          "switchover", "lp-pg", "--leader", old, "--candidate", others[0], "--force"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    new = None
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and new is None:
        for p in pollers:
            if p.changes and p.changes[-1][1] == "primary":
                new = p.name
        time.sleep(0.05)
    time.sleep(1.0)  # let the bodies settle after promotion
    for p in pollers:
        p.stop = True
    for p in pollers:
        p.thread.join()
    if new is None:
        print(f"{mode}: no new primary within {DEADLINE_S}s", flush=True)
        return
    prim, pat, pgp = [p for p in pollers if p.name == new]
    t200, _ = first(prim.changes, lambda v: v[0] == "primary" and v[1] == 200, t_fail)
    tpromo, _ = first(pgp.changes, lambda v: v == "primary", t_fail)
    ms = lambda t: round((t - t_fail) * 1000)
    print(f"{mode} {old} -> {new}: /primary 200 at +{ms(t200)} ms, pg_is_in_recovery()=false at "
          f"+{ms(tpromo)} ms: window {round((tpromo - t200) * 1000)} ms", flush=True)
    print(f"  /primary in the window: {values_between(prim.changes, t200, tpromo)}", flush=True)
    print(f"  /patroni in the window: {values_between(pat.changes, t200, tpromo)}", flush=True)
    print(f"  /primary after: {prim.changes[-1][1]}, /patroni after: {pat.changes[-1][1]}", flush=True)
    for p in pollers:
        if p.name != new and not isinstance(p.probe, PgProbe):
            after = [(ms(t), v) for t, v in p.changes if t >= t_fail]
            print(f"  {p.name} (not the new leader): {p.changes[0][1]} before, changes after: {after}", flush=True)


def main():
    d = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    mode = sys.argv[3] if len(sys.argv) > 3 else "kill"
    env = load_env(d)
    for _ in range(rounds):
        patroni_sh("wait", d)
        one_round(d, env, mode)
        patroni_sh("up", d)  # the killed node rejoins
    patroni_sh("wait", d)


if __name__ == "__main__":
    main()

//! Native probes against real servers on 127.0.0.1: the proxy asks each
//! database itself at its data address (`backends[].tcp`), in its own
//! protocol, for its role and replication position.
//!
//! Redis (support/redis.rs `RedisReplicas`: a primary and two replicas, no
//! Sentinel, no webdis; `ROLE` only for the ACL user `probe`): the leader
//! is the node whose `ROLE` says `master`, positions are the ROLE offsets,
//! a scripted switchover (`REPLICAOF NO ONE`) moves the leader, and a
//! wrong password finds no leader, says WRONGPASS and never shows the
//! password.
//!
//! PostgreSQL 15 (support/postgres.rs `PgPair`: a primary and a streaming
//! replica, no Patroni, scram-sha-256 over TCP), with `preset: postgres`:
//! the leader is the server
//! not in recovery, positions are WAL bytes (the replica's replayed LSN),
//! the replica promoted after the primary's SIGKILL leads, and a wrong
//! password fails the login without showing it. `preset: redis-sentinel`,
//! unchanged, finds the Redis primary and its replicas.
//!
//! MariaDB 10.11 (support/mariadb.rs: mariadb.sh's primary and two GTID
//! replicas), with `preset: mariadb`, in builds with the cargo feature
//! `mysql` (`cargo test --features mysql --test native_probes`): the
//! writable server leads, the scripted switchover moves the leader, and a
//! replica whose SQL thread is stopped leaves the read set under
//! `reads.max_lag`.
//!
//! Needs `/usr/bin/redis-server` (`bash tests/run.sh` installs it) and
//! PostgreSQL 15 (`tests/support/patroni.sh` installs it).
//! `LEADERPROXY_SKIP_REAL=1` skips the tests.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/postgres.rs"]
mod postgres;

#[cfg(feature = "mysql")]
#[path = "support/mariadb.rs"]
mod mariadb;

#[path = "support/table.rs"]
mod table;

use std::time::Duration;

use postgres::PgPair;
use procs::{spawn_proxy, spawn_proxy_unready, wait_for, ProxyProc};
use redis::{redis_cmd, RedisReplicas};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const WITHIN: Duration = Duration::from_secs(10);

/// One backend per port, `n1`, `n2`, …, its data address that port.
fn backends_yaml(ports: &[u16]) -> String {
    let mut y = String::from("backends:\n");
    for (i, p) in ports.iter().enumerate() {
        y.push_str(&format!(
            "  - {{ name: n{}, url: \"http://127.0.0.1:{p}\", tcp: \"127.0.0.1:{p}\" }}\n",
            i + 1
        ));
    }
    y
}

/// The proxy config: one backend per port (`n1`, `n2`, …), every probe
/// of `kind` every `interval` within `timeout`, logging in with
/// `probe_auth` (YAML map).
fn native_yaml(
    kind: &str,
    (interval, timeout): (&str, &str),
    ports: &[u16],
    probe_auth: &str,
) -> String {
    let mut y = String::from("backends:\n");
    for (i, p) in ports.iter().enumerate() {
        y.push_str(&format!(
            "  - {{ name: n{}, url: \"http://127.0.0.1:{p}\", tcp: \"127.0.0.1:{p}\" }}\n",
            i + 1
        ));
    }
    y.push_str(&format!(
        "health: {{ kind: {kind}, interval: {interval}, timeout: {timeout}, rise: 1 }}\n\
         leader: {{ kind: {kind}, interval: {interval}, timeout: {timeout} }}\n\
         positions: {{ kind: {kind} }}\n\
         probe_auth: {probe_auth}\n"
    ));
    y
}

fn redis_yaml(r: &RedisReplicas, password_file: &std::path::Path) -> String {
    native_yaml(
        "redis",
        ("100ms", "80ms"),
        &r.ports,
        &format!(
            "{{ user: probe, password_file: {} }}",
            password_file.display()
        ),
    )
}

/// Waits until every backend's last leader probe failed with `error`; the
/// proxy names no leader then.
fn wait_refused(q: &ProxyProc, error: &str) {
    wait_for(
        WITHIN,
        &format!("every leader probe fails with {error}"),
        || {
            q.try_routing().is_some_and(|v| {
                v["backends"].as_array().is_some_and(|bs| {
                    bs.iter().all(|b| {
                        b["last_probe"]["leader_error"]
                            .as_str()
                            .is_some_and(|e| e.contains(error))
                    })
                })
            })
        },
    );
    let shown = q.routing();
    assert!(shown["leader"]["name"].is_null(), "{shown}");
}

/// `master_repl_offset` of node `i`, from INFO (the `default` user).
fn offset(r: &RedisReplicas, i: usize) -> u64 {
    let info = redis_cmd(r.ports[i], &["INFO", "replication"]).unwrap();
    let text = info.as_str().unwrap().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn redis_native_probes_follow_role_and_offsets() {
    if !procs::require_binaries("native_probes", &[redis::REDIS_BIN]) {
        return;
    }
    let r = RedisReplicas::start();
    // The `default` user cannot run ROLE: only a logged-in probe can.
    assert!(matches!(
        redis_cmd(r.ports[0], &["ROLE"]),
        Ok(redis::Resp::Error(ref e)) if e.starts_with("NOPERM")
    ));
    let p = spawn_proxy(BIN, &redis_yaml(&r, &r.password_file));
    wait_for(WITHIN, "n1 leads, n2 and n3 follow", || {
        p.leader_name().as_deref() == Some("n1")
            && ["n2", "n3"]
                .iter()
                .all(|n| p.backend_role(n).as_deref() == Some("follower"))
    });

    // Positions are the replication offsets: a write moves the primary's,
    // and the replicas' once they have processed it.
    redis_cmd(r.ports[0], &["SET", "native-probe", "1"]).unwrap();
    let after = offset(&r, 0);
    wait_for(WITHIN, "every position reaches the write's offset", || {
        ["n1", "n2", "n3"].iter().all(|n| {
            table::backend(&p.routing(), n)["position"]
                .as_u64()
                .is_some_and(|x| x >= after)
        })
    });

    // A scripted switchover: n2 becomes the master.
    r.promote(1);
    wait_for(WITHIN, "n2 leads after REPLICAOF NO ONE", || {
        p.leader_name().as_deref() == Some("n2")
            && p.backend_role("n1").as_deref() == Some("follower")
    });
    assert!(r.is_master(1));

    // A wrong password: AUTH is refused, nobody leads, and the password
    // shows up neither in /admin/routing nor in the log.
    let wrong = r.dir.join("wrong-password");
    std::fs::write(&wrong, "not-the-pw-5c2e\n").unwrap();
    let q = spawn_proxy_unready(BIN, &redis_yaml(&r, &wrong));
    wait_refused(&q, "AUTH refused: WRONGPASS");
    assert!(!q.routing().to_string().contains("not-the-pw"));
    assert!(!q.proc.log_tail(200).contains("not-the-pw"));
    assert!(!p.proc.log_tail(200).contains(redis::PROBE_PASSWORD));
    println!(
        "native_probes: redis leader n1 -> n2 by ROLE, positions = offsets (>= {after}), wrong password refused"
    );
}

#[test]
fn postgres_preset_follows_recovery_and_wal() {
    let bins = postgres::binaries();
    let bins: Vec<&str> = bins.iter().map(String::as_str).collect();
    if !procs::require_binaries("native_probes", &bins) {
        return;
    }
    let mut pg = PgPair::start();
    // The `postgres` preset, its timeouts raised: a SCRAM login per probe
    // takes tens of ms in a debug build on this machine (80ms timed out).
    let yaml = |ports: &[u16], f: &std::path::Path| {
        format!(
            "preset: postgres\n{}health: {{ interval: 1s, timeout: 800ms, rise: 1 }}\nleader: {{ interval: 1s, timeout: 800ms }}\nprobe_auth: {{ password_file: {} }}\n",
            backends_yaml(ports),
            f.display()
        )
    };
    let p = spawn_proxy(BIN, &yaml(&pg.ports, &pg.password_file));
    wait_for(WITHIN, "n1 leads, n2 follows", || {
        p.leader_name().as_deref() == Some("n1")
            && p.backend_role("n2").as_deref() == Some("follower")
    });

    // Positions are WAL bytes: the primary's current LSN, the replica's
    // replayed one, both past a write once it has been replayed.
    pg.sql(
        0,
        "CREATE TABLE native_probe (x int); INSERT INTO native_probe VALUES (1)",
    );
    let after: u64 = pg
        .sql(
            0,
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
        )
        .parse()
        .unwrap();
    wait_for(WITHIN, "both positions reach the write's LSN", || {
        ["n1", "n2"].iter().all(|n| {
            table::backend(&p.routing(), n)["position"]
                .as_u64()
                .is_some_and(|x| x >= after)
        })
    });

    // The primary dies; the replica is promoted and leads once it has left
    // recovery.
    pg.kill(0);
    pg.sql(1, "SELECT pg_promote()");
    wait_for(WITHIN, "n2 leads after pg_promote()", || {
        p.leader_name().as_deref() == Some("n2")
    });
    assert_eq!(pg.sql(1, "SELECT pg_is_in_recovery()"), "f");

    // A wrong password: the login fails, nobody leads, the password is
    // shown nowhere.
    let wrong = pg.dir.join("wrong-password");
    std::fs::write(&wrong, "not-the-pg-pw-93a1\n").unwrap();
    let q = spawn_proxy_unready(BIN, &yaml(&pg.ports[1..], &wrong));
    wait_refused(&q, "password authentication failed");
    assert!(!q.routing().to_string().contains("not-the-pg-pw"));
    assert!(!q.proc.log_tail(200).contains("not-the-pg-pw"));
    assert!(!p.proc.log_tail(200).contains(postgres::PASSWORD));
    println!("native_probes: postgres leader n1 -> n2 by pg_is_in_recovery(), positions = WAL bytes (>= {after}), wrong password refused");
}

#[test]
fn redis_sentinel_preset_finds_the_primary() {
    if !procs::require_binaries("native_probes", &[redis::REDIS_BIN]) {
        return;
    }
    let r = RedisReplicas::start();
    let p = spawn_proxy(
        BIN,
        &format!(
            "preset: redis-sentinel\n{}probe_auth: {{ user: probe, password_file: {} }}\n",
            backends_yaml(&r.ports),
            r.password_file.display()
        ),
    );
    wait_for(WITHIN, "n1 leads, n2 and n3 follow with positions", || {
        p.leader_name().as_deref() == Some("n1")
            && ["n2", "n3"].iter().all(|n| {
                let b = table::backend(&p.routing(), n).clone();
                b["role"] == "follower" && b["position"].as_u64().is_some()
            })
    });
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_preset_follows_read_only_and_gtid() {
    if !procs::require_binaries("native_probes", &[mariadb::MARIADBD]) {
        return;
    }
    let db = mariadb::MariaDb::up();
    let pw = db.dir.join("monitor-password");
    std::fs::write(&pw, "monitor\n").unwrap();
    let p = spawn_proxy(
        BIN,
        &format!(
            "preset: mariadb\n{}probe_auth: {{ user: monitor, password_file: {} }}\nhealth: {{ interval: 1s, timeout: 800ms, rise: 1 }}\nleader: {{ interval: 500ms, timeout: 400ms }}\nreads: {{ max_lag: 1 }}\n",
            backends_yaml(&db.ports),
            pw.display()
        ),
    );
    let followers = |names: &[&str]| {
        let mut f: Vec<String> = p.routing()["followers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        f.sort();
        f == names
    };
    wait_for(WITHIN, "n1 leads, n2 and n3 are read", || {
        p.leader_name().as_deref() == Some("n1") && followers(&["n2", "n3"])
    });

    // The scripted switchover: m1 read_only, m2 promoted.
    db.script(&["switchover"], &[]);
    wait_for(WITHIN, "n2 leads after the switchover", || {
        p.leader_name().as_deref() == Some("n2") && followers(&["n1", "n3"])
    });

    // m3's SQL thread stops; writes on the primary leave it behind.
    db.script(&["lag", "3"], &[]);
    for _ in 0..3 {
        db.app_sql(1, "INSERT INTO app.t (v) VALUES ('native')");
    }
    wait_for(WITHIN, "n3 leaves the read set, lagging", || {
        followers(&["n1"]) && table::backend(&p.routing(), "n3")["lagging"] == true
    });
    db.script(&["unlag", "3"], &[]);
    wait_for(WITHIN, "n3 is read again once caught up", || {
        followers(&["n1", "n3"])
    });
    println!("native_probes: mariadb leader m1 -> m2 by read_only, m3 out of reads while its SQL thread was stopped");
}

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
//! Needs `/usr/bin/redis-server` (`bash tests/run.sh` installs it).
//! `LEADERPROXY_SKIP_REAL=1` skips the tests.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/table.rs"]
mod table;

use std::time::Duration;

use procs::{spawn_proxy, spawn_proxy_unready, wait_for};
use redis::{redis_cmd, RedisReplicas};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const WITHIN: Duration = Duration::from_secs(10);

/// The proxy config: three backends at the Redis ports, every probe
/// native, logging in as `probe` with the password in `password_file`.
fn redis_yaml(r: &RedisReplicas, password_file: &std::path::Path) -> String {
    let mut y = String::from("backends:\n");
    for (i, p) in r.ports.iter().enumerate() {
        y.push_str(&format!(
            "  - {{ name: n{}, url: \"http://127.0.0.1:{p}\", tcp: \"127.0.0.1:{p}\" }}\n",
            i + 1
        ));
    }
    y.push_str(&format!(
        "health: {{ kind: redis, interval: 200ms, timeout: 150ms, rise: 1 }}\n\
         leader: {{ kind: redis, interval: 100ms, timeout: 80ms }}\n\
         positions: {{ kind: redis }}\n\
         probe_auth: {{ user: probe, password_file: {} }}\n",
        password_file.display()
    ));
    y
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
    wait_for(WITHIN, "the wrong password is refused", || {
        q.try_routing().is_some_and(|v| {
            v["backends"].as_array().is_some_and(|bs| {
                bs.iter().all(|b| {
                    b["last_probe"]["leader_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("AUTH refused: WRONGPASS"))
                })
            })
        })
    });
    let shown = q.routing();
    assert!(shown["leader"]["name"].is_null(), "{shown}");
    assert!(!shown.to_string().contains("not-the-pw"), "{shown}");
    assert!(!q.proc.log_tail(200).contains("not-the-pw"));
    assert!(!p.proc.log_tail(200).contains(redis::PROBE_PASSWORD));
    println!(
        "native_probes: redis leader n1 -> n2 by ROLE, positions = offsets (>= {after}), wrong password refused"
    );
}

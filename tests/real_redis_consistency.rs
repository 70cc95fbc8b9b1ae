//! Read-your-writes on a real Redis primary + 2 replicas (+ 3 Sentinels), a
//! webdis in front of each node, and leaderproxy running `preset:
//! redis-webdis` (health, leader, routes, not-leader rules and positions all
//! from the preset; only backends and `reads` are set here, `proxy_yaml`).
//!
//! Positions are replication offsets from `INFO replication`. webdis does not
//! pass INFO through as text: it answers `GET /INFO/replication` with a JSON
//! object of the INFO fields, all values strings, e.g.
//! `{"INFO":{"# Replication\r\nrole":"master",..,"master_repl_offset":"110",..}}`
//! — so a regex like `master_repl_offset:(\d+)` never matches, and the
//! position is the JSON pointer `/INFO/master_repl_offset` (a string of
//! digits). A replica has `slave_read_repl_offset`, `slave_repl_offset` and
//! `master_repl_offset`: since Redis 7.0 a replica's `master_repl_offset`
//! advances as it *applies* its primary's stream (it feeds its own backlog
//! from what it executed), so it equals `slave_repl_offset` and is comparable
//! with the primary's. webdis write answers carry no offset
//! (`{"SET":[true,"OK"]}`), so no `positions.response`: the leader's offset
//! is probed after each acknowledged write.
//!
//! Asserted:
//! 1. 300 write-then-read pairs through the proxy with
//!    `reads.consistency: read_your_writes` (8 sessions by `X-Session-Id`;
//!    `GET /SET/lp:kI/vI`, a write by the shipped routes, then `GET /GET/lp:kI`
//!    in the same session): 0 reads miss their write.
//! 2. Every write answer carries `x-leaderproxy-position`, strictly growing
//!    from write to write, and `leaderproxy_write_position_probes_total` of
//!    the primary moved by at least one per write (the writes are sequential,
//!    so no two share a probe).
//! 3. `/admin/routing` shows a position for all 3 nodes, reaching the last
//!    write's; a read whose write a replica's probed offset has reached is
//!    served by that replica (10 such pairs), and
//!    `leaderproxy_fresh_reads_total{target="follower"}` moved.
//! 4. With both replicas paused (`CLIENT PAUSE 20000 WRITE` on each: a
//!    replica then stops *applying* its primary's stream — checked by hand:
//!    `slave_read_repl_offset` moves on, `slave_repl_offset` and
//!    `master_repl_offset` stay — and still answers reads, stale): 50 more
//!    pairs through the read-your-writes proxy miss 0, all read from the
//!    primary, and 50 through the eventual proxy miss all 50.
//!
//! Printed, not asserted: how many of the 300 unpaused pairs miss through a
//! second proxy with eventual reads. Replication is asynchronous, but on
//! loopback the replica has the write long before the client's read
//! arrives (the primary hands the command to its replicas' output buffers
//! in the same event-loop turn as the client's answer, and that answer
//! still crosses webdis, the proxy, the client and back), so this is
//! normally 0 (0 in each of 4 runs on the 2-core test machine) — hence the
//! paused phase.
//! Lines: `real_redis_consistency: read_your_writes: 300 pairs, 0 missed, ..`,
//! `real_redis_consistency: eventual: 300 pairs, M missed, ..`,
//! `real_redis_consistency: fresh reads: ..`, `real_redis_consistency: position probes ..`,
//! `real_redis_consistency: replicas paused: read_your_writes 50 pairs, 0 missed, ..; eventual 50 pairs, 50 missed, ..`.
//!
//! Needs `/usr/bin/redis-server`, `/usr/bin/redis-sentinel`, `/usr/bin/webdis`
//! (installed by `bash tests/run.sh`); `LEADERPROXY_SKIP_REAL=1` skips the test.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/pairs.rs"]
mod pairs;

#[path = "support/table.rs"]
mod table;

use std::time::{Duration, Instant};

use pairs::{
    assert_every_position_probed, backend_of, run_pairs, run_slow_pairs, wait_every_position, Pair,
    Pairs,
};
use procs::{spawn_proxy, HttpConn, ProxyProc};
use redis::RedisCluster;

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");

// ---------------------------------------------------------------------------
// the configs: the shipped preset, with backends and reads
// ---------------------------------------------------------------------------

/// `preset: redis-webdis` for this cluster's webdis nodes, plus `extra`.
fn proxy_yaml(cluster: &RedisCluster, extra: &str) -> String {
    let backends = procs::backends_yaml(
        cluster
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.webdis_url())),
    );
    let mut s = format!("preset: redis-webdis\n{backends}");
    s.push_str(extra);
    s
}
const READ_YOUR_WRITES: &str =
    "reads: { consistency: read_your_writes, session: { header: X-Session-Id } }\n";
/// Both proxies: debug headers, so each answer names its backend.
const COMMON: &str = "debug_headers: true\n";

const PAIRS: usize = 300;
/// Pairs whose read waits until a replica's probed offset has the write.
const SLOW_PAIRS: usize = 10;
/// Pairs through each proxy while the replicas are paused.
const PAUSED_PAIRS: usize = 50;
/// `CLIENT PAUSE` on the replicas; lifted with `CLIENT UNPAUSE` after the
/// paused pairs, which must end well within it.
const PAUSE: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_secs(10);
const TAG: &str = "real_redis_consistency";

/// `GET /SET/<key>/<value>` through the proxy; returns the answer's
/// `x-leaderproxy-position`.
fn set(c: &mut HttpConn, key: &str, value: &str, h: &[(&str, &str)]) -> Option<u64> {
    let r = c
        .request("GET", &format!("/SET/{key}/{value}"), h, b"")
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"{"SET":[true,"OK"]}"#),
        "SET {key}"
    );
    r.header("x-leaderproxy-position")
        .map(|v| v.parse().expect("an integer position"))
}

/// `GET /GET/<key>` through the proxy: (value, backend).
fn get(c: &mut HttpConn, key: &str, h: &[(&str, &str)]) -> (Option<String>, String) {
    let r = c
        .request("GET", &format!("/GET/{key}"), h, b"")
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    assert_eq!(r.status, 200, "GET {key}: {}", r.text());
    let v = r.json()["GET"].as_str().map(str::to_string);
    (v, backend_of(&r))
}

/// `n` pairs (see [`run_pairs`]): SET `<prefix>:kI` = `vI`, then GET it
/// in the same session. With `ryw` every write answer must carry a
/// position, growing.
fn pairs(p: &ProxyProc, prefix: &str, n: usize, ryw: bool) -> Pairs {
    run_pairs(p, n, |conn, i, h, last_position| {
        let (key, value) = (format!("{prefix}:k{i}"), format!("v{i}"));
        let pos = set(conn, &key, &value, h);
        if ryw {
            let pos = pos.unwrap_or_else(|| panic!("write {i} has no x-leaderproxy-position"));
            assert!(
                pos > last_position,
                "offsets grow: {pos} after {last_position}"
            );
        } else {
            assert_eq!(pos, None, "no positions with eventual reads");
        }
        let (v, backend) = get(conn, &key, h);
        Pair {
            backend,
            hit: v.as_deref() == Some(value.as_str()),
            position: pos,
        }
    })
}

#[test]
fn redis_webdis_read_your_writes() {
    if !procs::require_binaries(TAG, &redis::BINARIES) {
        return;
    }
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let ryw = spawn_proxy(
        BIN,
        &proxy_yaml(&cluster, &format!("{COMMON}{READ_YOUR_WRITES}")),
    );
    let plain = spawn_proxy(BIN, &proxy_yaml(&cluster, COMMON));
    let primary = cluster.nodes[cluster.master().expect("a primary")]
        .name
        .clone();
    for p in [&ryw, &plain] {
        p.wait_leader_as(
            &primary,
            Duration::from_secs(10),
            "the proxy knows the primary",
        );
    }
    let names = cluster.names();
    assert_every_position_probed(&ryw, &names);

    let probes = || {
        ryw.metric_sum(
            "leaderproxy_write_position_probes_total",
            &[("backend", &primary)],
        )
    };
    let probes_before = probes();
    let got = pairs(&ryw, "lp", PAIRS, true);
    let probed = probes() - probes_before;
    println!(
        "{TAG}: read_your_writes: {PAIRS} pairs, {} missed, reads went to {:?}",
        got.missed, got.went
    );
    println!(
        "{TAG}: position probes after the acks: {probed} for {PAIRS} writes; last offset {}",
        got.last_position
    );
    assert_eq!(got.missed, 0, "a read missed its session's write");
    assert!(
        probed >= PAIRS as f64,
        "each sequential write's offset was probed after its ack: {probed}"
    );

    wait_every_position(
        &ryw,
        &names,
        got.last_position,
        "every node's offset in /admin/routing reaches the last write",
    );

    // A read whose write a replica's probed offset has reached is served by
    // a replica, and sees the write.
    let mut conn = HttpConn::new(&ryw.listen, TIMEOUT);
    run_slow_pairs(
        &ryw,
        &mut conn,
        &names,
        &primary,
        SLOW_PAIRS,
        |conn, i, value, h| set(conn, &format!("lp:slow{i}"), value, h).expect("a position"),
        |conn, i, h| get(conn, &format!("lp:slow{i}"), h),
    );
    let via_follower = ryw.metric_sum("leaderproxy_fresh_reads_total", &[("target", "follower")]);
    let via_leader = ryw.metric_sum("leaderproxy_fresh_reads_total", &[("target", "leader")]);
    println!(
        "{TAG}: fresh reads: {via_follower} via replicas, {via_leader} via the primary {primary}"
    );
    assert!(
        via_follower >= SLOW_PAIRS as f64,
        "the slow pairs' reads were fresh reads on replicas"
    );

    let plain_got = pairs(&plain, "plain", PAIRS, false);
    println!(
        "{TAG}: eventual: {PAIRS} pairs, {} missed, reads went to {:?}",
        plain_got.missed, plain_got.went
    );
    assert!(
        !plain_got.went.contains_key(&primary),
        "eventual reads stay on the replicas"
    );

    // Replicas that stop applying: `CLIENT PAUSE .. WRITE` on a replica
    // holds its primary's stream too (it is still read, not executed: its
    // `slave_read_repl_offset` moves on, `master_repl_offset` and
    // `slave_repl_offset` stay), while it keeps answering reads.
    let replicas: Vec<u16> = cluster
        .nodes
        .iter()
        .filter(|n| n.name != primary)
        .map(|n| n.redis_port)
        .collect();
    let paused_at = Instant::now();
    for &port in &replicas {
        let ok = redis::redis_cmd(
            port,
            &["CLIENT", "PAUSE", &PAUSE.as_millis().to_string(), "WRITE"],
        );
        assert_eq!(
            ok.unwrap(),
            redis::Resp::Simple("OK".into()),
            "CLIENT PAUSE"
        );
    }
    let paused_ryw = pairs(&ryw, "paused", PAUSED_PAIRS, true);
    let paused_plain = pairs(&plain, "paused-plain", PAUSED_PAIRS, false);
    let paused_for = paused_at.elapsed();
    for &port in &replicas {
        let ok = redis::redis_cmd(port, &["CLIENT", "UNPAUSE"]);
        assert_eq!(
            ok.unwrap(),
            redis::Resp::Simple("OK".into()),
            "CLIENT UNPAUSE"
        );
    }
    println!(
        "{TAG}: replicas paused: read_your_writes {PAUSED_PAIRS} pairs, {} missed, reads went to {:?}; \
         eventual {PAUSED_PAIRS} pairs, {} missed, reads went to {:?} (in {paused_for:?})",
        paused_ryw.missed, paused_ryw.went, paused_plain.missed, paused_plain.went
    );
    assert!(paused_for < PAUSE, "the phase ended within the pause");
    assert_eq!(paused_ryw.missed, 0, "a read missed its session's write");
    assert_eq!(
        paused_ryw.went.get(&primary),
        Some(&PAUSED_PAIRS),
        "only the primary has the writes"
    );
    assert_eq!(
        paused_plain.missed, PAUSED_PAIRS,
        "every eventual read reached a replica that had not applied the write"
    );
    println!("{TAG}: took {:?}", started.elapsed());
}

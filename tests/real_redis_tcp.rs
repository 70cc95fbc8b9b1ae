//! Real Redis primary + 2 replicas + 3 Sentinels behind leaderproxy's TCP
//! listeners: Redis clients speak RESP straight through (the bytes go to
//! `backends[].tcp`, the Redis port), and `preset: redis-sentinel` probes
//! each node's ROLE natively at the same port.
//! HAProxy in TCP mode with the usual `tcp-check send ROLE` / `expect
//! string master` setup (tests/support/haproxy-redis.cfg.tmpl) runs on the
//! same cluster in the same run, for comparison.
//!
//! Asserted:
//! 1. `SET` through the write port lands on the primary; connections to the
//!    read port are answered by the replicas (each by its own `tcp_port`).
//! 2. Across a SIGKILL of the primary under write load: no write through
//!    leaderproxy ever reaches a replica (`READONLY`), writes resume at most
//!    2 s after a replica answers ROLE `master` (the leader probe runs every
//!    `leader.fast_interval` while there is none, and held connections go
//!    out at once), and every write acknowledged once writes resumed is on
//!    the new primary.
//!
//! Reported beside them, not asserted: failed writes and the longest pause
//! through leaderproxy and through HAProxy.
//!
//! Needs redis-server, redis-sentinel, webdis and haproxy (`bash
//! tests/run.sh` installs them); `LEADERPROXY_SKIP_REAL=1` skips it.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/haproxy_redis.rs"]
mod haproxy_redis;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haproxy_redis::Haproxy;
use procs::{free_port, spawn_proxy};
use redis::{redis_cmd, RedisCluster, Resp};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");

/// `preset: redis-sentinel` (native ROLE probes of Redis itself, at each
/// backend's data address) with a write and a read TCP listener.
fn proxy_yaml(cluster: &RedisCluster, write: u16, read: u16) -> String {
    let mut y = format!(
        "preset: redis-sentinel\ntcp:\n  - {{ listen: \"127.0.0.1:{write}\", to: write }}\n  - {{ listen: \"127.0.0.1:{read}\", to: read }}\nwrites: {{ hold: 8s }}\nbackends:\n"
    );
    for n in &cluster.nodes {
        // `url` is required but unused by native probes: the node's webdis.
        y.push_str(&format!(
            "  - {{ name: {}, url: \"{}\", tcp: \"127.0.0.1:{}\" }}\n",
            n.name,
            n.webdis_url(),
            n.redis_port
        ));
    }
    y
}

/// `INFO server`'s `tcp_port` of whoever answers on `port`.
fn answering_port(port: u16) -> Option<u16> {
    match redis_cmd(port, &["INFO", "server"]).ok()? {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b)
            .lines()
            .find_map(|l| l.strip_prefix("tcp_port:")?.trim().parse().ok()),
        _ => None,
    }
}

/// One writer: `SET w<n> <n>` on a kept connection through `port`, a new
/// connection after any failure; what each write got.
struct Writer {
    results: Vec<(Instant, Result<(), String>, u64)>,
}

fn write_loop(port: u16, tag: &'static str, stop: Arc<AtomicBool>) -> Writer {
    let mut results = Vec::new();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let r = (|| -> Result<(), String> {
            if conn.is_none() {
                let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
                conn = Some((s, r));
            }
            let (s, r) = conn.as_mut().unwrap();
            let key = format!("{tag}{n}");
            let val = n.to_string();
            let cmd = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
                key.len(),
                val.len()
            );
            s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => Err("closed".into()),
                Ok(_) if line.starts_with("+OK") => Ok(()),
                Ok(_) => Err(line.trim_end().to_string()),
                Err(e) => Err(e.to_string()),
            }
        })();
        if r.is_err() {
            conn = None;
            std::thread::sleep(Duration::from_millis(5));
        }
        results.push((started, r, n));
    }
    Writer { results }
}

impl Writer {
    fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.1.is_err()).count()
    }

    fn readonly(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(&r.1, Err(e) if e.contains("READONLY")))
            .count()
    }

    /// The longest time between two acknowledged writes.
    fn longest_pause(&self) -> Duration {
        let acked: Vec<Instant> = self
            .results
            .iter()
            .filter(|r| r.1.is_ok())
            .map(|r| r.0)
            .collect();
        acked
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// The first write started after `t` that was acknowledged.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.results
            .iter()
            .find(|r| r.0 >= t && r.1.is_ok())
            .map(|r| r.0)
    }
}

#[test]
fn redis_clients_through_tcp_listeners_follow_the_primary_across_a_kill() {
    let mut bins = redis::BINARIES.to_vec();
    bins.push("/usr/sbin/haproxy");
    if !procs::require_binaries("real_redis_tcp", &bins) {
        return;
    }
    let mut cluster = RedisCluster::start();
    let (write, read) = (free_port(), free_port());
    let proxy = spawn_proxy(BIN, &proxy_yaml(&cluster, write, read));
    let names = cluster.names();
    let master = cluster.master().expect("a master");
    proxy.wait_leader(&names[master], Duration::from_secs(10));
    let (h_write, h_read) = (free_port(), free_port());
    let haproxy = Haproxy::start(&cluster, h_write, h_read);

    // 1. Writes reach the primary, reads the replicas.
    assert!(matches!(redis_cmd(write, &["SET", "tcp-k", "v1"]), Ok(Resp::Simple(s)) if s == "OK"));
    assert_eq!(cluster.get(master, "tcp-k").unwrap().as_deref(), Some("v1"));
    assert_eq!(
        answering_port(write),
        Some(cluster.nodes[master].redis_port)
    );
    let replicas: std::collections::BTreeSet<u16> = (0..3)
        .filter(|&i| i != master)
        .map(|i| cluster.nodes[i].redis_port)
        .collect();
    procs::wait_for(Duration::from_secs(10), "both replicas take reads", || {
        let seen: std::collections::BTreeSet<u16> =
            (0..6).filter_map(|_| answering_port(read)).collect();
        seen == replicas
    });

    // 2. SIGKILL of the primary under write load, through both proxies.
    let stop = Arc::new(AtomicBool::new(false));
    let (s1, s2) = (stop.clone(), stop.clone());
    let lp = std::thread::spawn(move || write_loop(write, "lp", s1));
    let hp = std::thread::spawn(move || write_loop(h_write, "hp", s2));
    std::thread::sleep(Duration::from_secs(2));
    let (old, killed_at) = cluster.kill_master();
    let (new, promotion) = cluster.wait_for_promotion(old, killed_at, Duration::from_secs(20));
    let promoted_at = killed_at + promotion;
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let (lp, hp) = (lp.join().unwrap(), hp.join().unwrap());
    drop(haproxy);

    let lp_resumed = lp.first_ack_after(killed_at);
    let hp_resumed = hp.first_ack_after(killed_at);
    eprintln!(
        "real_redis_tcp: promotion {promotion:?}; leaderproxy: {} writes, {} failed, {} READONLY, longest pause {:?}, resumed {:?} after promotion; HAProxy: {} writes, {} failed, {} READONLY, longest pause {:?}, resumed {:?} after promotion",
        lp.results.len(),
        lp.failed(),
        lp.readonly(),
        lp.longest_pause(),
        lp_resumed.map(|t| t.saturating_duration_since(promoted_at)),
        hp.results.len(),
        hp.failed(),
        hp.readonly(),
        hp.longest_pause(),
        hp_resumed.map(|t| t.saturating_duration_since(promoted_at)),
    );
    assert_eq!(
        lp.readonly(),
        0,
        "a write through leaderproxy reached a replica"
    );
    let resumed = lp_resumed.expect("writes through leaderproxy resumed");
    assert!(
        resumed <= promoted_at + Duration::from_secs(2),
        "writes resumed {:?} after the promotion",
        resumed.saturating_duration_since(promoted_at)
    );
    let after: Vec<String> = lp
        .results
        .iter()
        .filter(|r| r.0 >= resumed && r.1.is_ok())
        .map(|r| format!("lp{}", r.2))
        .collect();
    let on_new = cluster.mget(new, &after).unwrap();
    let missing = on_new.iter().filter(|v| v.is_none()).count();
    assert_eq!(
        missing, 0,
        "writes acknowledged after the failover are missing on the new primary"
    );
}

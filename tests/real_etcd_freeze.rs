//! A follower of a real 3-member etcd cluster frozen (SIGSTOP) for 4 s under
//! two readers and a writer, behind leaderproxy with the shipped `etcd`
//! preset and `reads.try_timeout: 100ms`: a read whose try reaches the
//! frozen member goes to another one after 100 ms, so no read waits for
//! the freeze. Before `try_timeout` the slowest read of such a run took the
//! whole freeze (4,004 ms, issue 21).
//!
//! The same with `reads.try_timeout: auto` (4 × the read tier's recent
//! p99, at most 300 ms here): the frozen member is also ejected for
//! latency.
//!
//! Asserted: 0 failed reads and writes, every read within 500 ms.
//! Reported: reads, the slowest read, tries that timed out, latency
//! ejections.
//!
//! Needs `/usr/bin/etcd` (`bash tests/run.sh` installs it);
//! `LEADERPROXY_SKIP_REAL=1` skips the test.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd::EtcdCluster;
use procs::{spawn_proxy, split_url, HttpConn};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");

/// What one client loop saw: (latency, ok) per request.
fn client_loop(
    authority: String,
    method: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<(Duration, bool)> {
    let mut conn = HttpConn::new(&authority, Duration::from_secs(10));
    let mut seen = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let r = match method {
            "GET" => conn.request("GET", "/v2/keys/freeze", &[], b""),
            _ => conn.request(
                "PUT",
                "/v2/keys/freeze-w",
                &[("content-type", "application/x-www-form-urlencoded")],
                format!("value={n}").as_bytes(),
            ),
        };
        let ok = r.as_ref().is_ok_and(|r| r.status == 200 || r.status == 201);
        if !ok {
            eprintln!(
                "real_etcd_freeze: {method} failed after {:?}: {:?}",
                started.elapsed(),
                r.map(|r| format!("{} {}", r.status, r.text()))
            );
        }
        seen.push((started.elapsed(), ok));
    }
    seen
}

fn signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid}");
}

/// One cluster at a time: two frozen clusters at once would time each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_frozen_etcd_follower_costs_a_read_at_most_a_try_timeout() {
    freeze("reads: { try_timeout: 100ms }");
}

#[test]
fn with_an_auto_try_timeout_a_frozen_etcd_follower_is_ejected_for_latency() {
    let ejections = freeze("reads: { try_timeout: auto, try_timeout_auto: { max: 300ms } }");
    assert!(
        ejections >= 1.0,
        "the frozen member was ejected for latency"
    );
}

/// Freezes a follower for 4 s under two readers and a writer behind a
/// proxy with the preset `etcd` and `reads_yaml`; asserts no failure and
/// every read within 500 ms; returns the latency ejections counted.
fn freeze(reads_yaml: &str) -> f64 {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !procs::require_binaries("real_etcd_freeze", &[etcd::ETCD_BIN]) {
        return f64::INFINITY;
    }
    let cluster = EtcdCluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let yaml = format!(
        "{}preset: etcd\n{reads_yaml}\ntimeouts: {{ connect: 500ms }}\n",
        cluster.backends_yaml()
    );
    let proxy = spawn_proxy(BIN, &yaml);
    proxy.wait_leader(&cluster.names()[leader], Duration::from_secs(10));
    let (authority, _) = split_url(&proxy.url("/"));
    assert!(cluster.v2_put(leader, "freeze", "v").is_ok());
    // Every member has the key before the reads start (a read of a lagging
    // follower would be a 404, which is not what this test is about).
    for i in 0..cluster.len() {
        let url = format!("{}/v2/keys/freeze", cluster.client_url(i));
        procs::wait_for(Duration::from_secs(5), "every member has the key", || {
            procs::http_get(&url).is_ok_and(|r| r.status == 200)
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for method in ["GET", "GET", "PUT"] {
        let (a, s) = (authority.clone(), stop.clone());
        clients.push(std::thread::spawn(move || client_loop(a, method, s)));
    }
    std::thread::sleep(Duration::from_secs(1));
    let frozen = (leader + 1) % cluster.len();
    let pid = cluster.members[frozen]
        .proc
        .pid()
        .expect("the follower runs");
    signal(pid, "-STOP");
    std::thread::sleep(Duration::from_secs(4));
    signal(pid, "-CONT");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Vec<(Duration, bool)>> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let reads: Vec<&(Duration, bool)> = seen[0].iter().chain(&seen[1]).collect();
    let writes = &seen[2];
    let slowest = reads.iter().map(|r| r.0).max().unwrap_or_default();
    let failed_reads = reads.iter().filter(|r| !r.1).count();
    let failed_writes = writes.iter().filter(|r| !r.1).count();
    let scrape = procs::http_get(&proxy.admin_url("/metrics"))
        .unwrap()
        .text();
    let timed_out = procs::metric_sum(&scrape, "leaderproxy_read_try_timeouts_total", &[]);
    let ejections = procs::metric_sum(&scrape, "leaderproxy_read_latency_ejections_total", &[]);
    eprintln!(
        "real_etcd_freeze ({reads_yaml}): {} reads, slowest {slowest:?}, {failed_reads} failed, {timed_out} tries timed out, {ejections} latency ejections; {} writes, {failed_writes} failed",
        reads.len(),
        writes.len()
    );
    assert_eq!(failed_reads, 0);
    assert_eq!(failed_writes, 0, "writes go to the leader, unaffected");
    assert!(
        slowest < Duration::from_millis(500),
        "the slowest read took {slowest:?}"
    );
    assert!(
        timed_out >= 1.0,
        "tries reached the frozen member and timed out"
    );
    ejections
}

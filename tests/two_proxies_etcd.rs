//! Several proxies, one cluster: two leaderproxy processes in front of one
//! real 3-member etcd 3.4; SIGKILL the leader and measure when each proxy
//! routes writes to the new leader.
//!
//! Each proxy probes on its own (leader probe every 200ms ±10%, every
//! `leader.fast_interval`, 25ms ±10%, while no leader is known). A thread per
//! proxy polls its `/admin/routing` every 10ms; another writes through it
//! (one v2 PUT at a time, `writes.hold: 8s`, `retry_ambiguous: idempotent`)
//! and records the `x-leaderproxy-backend` of every answer.
//!
//! Asserted:
//! 1. Each proxy names the new leader in `/admin/routing` within the
//!    election time + one leader-probe interval (200ms) + 100ms, counted
//!    from the reaping of the killed leader. The election time is the
//!    smaller of two measurements of the first 200 on `/v2/stats/leader`
//!    from a surviving member (main thread, and a 20ms watcher per member),
//!    as in `tests/real_etcd.rs`.
//! 2. Through each proxy, the first write answered by the new leader comes
//!    within the same bound, no write fails, and no write sent after the
//!    kill names the killed member.
//!
//! Needs `/usr/bin/etcd`; `LEADERPROXY_SKIP_REAL=1` skips it with a notice.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd::{EtcdCluster, LeaderWatch};
use procs::{spawn_proxy, split_url, wait_for, HttpConn, ProxyProc};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
/// `leader.interval` in `EtcdCluster::leaderproxy_yaml`.
const LEADER_INTERVAL: Duration = Duration::from_millis(200);
const SLACK: Duration = Duration::from_millis(100);

/// When each answer came, and the leader it named.
type Seen = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// `/admin/routing`'s leader name, polled every 10ms.
struct RoutingWatch {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<JoinHandle<()>>,
}

impl RoutingWatch {
    fn start(p: &ProxyProc) -> RoutingWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let admin = p.admin.clone();
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut c = HttpConn::new(&admin, Duration::from_millis(500));
            while !s.load(Ordering::Relaxed) {
                if let Ok(r) = c.request("GET", "/admin/routing", &[], b"") {
                    let at = Instant::now();
                    let leader = r.json()["leader"]["name"].as_str().map(str::to_string);
                    v.lock().unwrap().push((at, leader));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RoutingWatch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// First time at or after `t` it named `name`.
    fn first(&self, t: Instant, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(at, l)| *at >= t && l.as_deref() == Some(name))
            .map(|(at, _)| *at)
    }

    /// First time at or after `t` it named anything but `name`.
    fn first_not(&self, t: Instant, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(at, l)| *at >= t && l.as_deref() != Some(name))
            .map(|(at, _)| *at)
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One write: sent, answered, status, `x-leaderproxy-backend`.
type Write = (Instant, Instant, u16, Option<String>);

/// One v2 PUT at a time through the proxy, until stopped.
fn writer(p: &ProxyProc, tag: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Write>> {
    let (authority, _) = split_url(&p.url("/"));
    std::thread::spawn(move || {
        let mut c = HttpConn::new(&authority, Duration::from_secs(12));
        let mut out = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let sent = Instant::now();
            let r = c.request(
                "PUT",
                &format!("/v2/keys/two/{tag}-{}", n % 50),
                &[("Content-Type", "application/x-www-form-urlencoded")],
                format!("value={n}").as_bytes(),
            );
            let done = Instant::now();
            match r {
                Ok(r) => out.push((
                    sent,
                    done,
                    r.status,
                    r.header("x-leaderproxy-backend").map(str::to_string),
                )),
                Err(_) => out.push((sent, done, 0, None)),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        out
    })
}

/// etcd v2 answers 201 to a new key, 200 to an update.
fn ok(status: u16) -> bool {
    (200..300).contains(&status)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn two_proxies_converge_on_the_new_etcd_leader_within_election_plus_one_probe() {
    if !procs::require_binaries("two_proxies_etcd", &[etcd::ETCD_BIN]) {
        return;
    }
    let t0 = Instant::now();
    let mut cluster = EtcdCluster::start(3);
    let yaml = cluster.leaderproxy_yaml(
        "debug_headers: true\nwrites:\n  hold: 8s\n  retry_ambiguous: idempotent\n",
    );
    let proxies = [spawn_proxy(BIN, &yaml), spawn_proxy(BIN, &yaml)];
    let names = cluster.names();
    let first = cluster.wait_for_leader(Duration::from_secs(10));
    for p in &proxies {
        p.wait_leader_as(
            &names[first],
            Duration::from_secs(10),
            "both proxies know the leader",
        );
    }

    let watch = LeaderWatch::start(&cluster);
    let routing: Vec<RoutingWatch> = proxies.iter().map(RoutingWatch::start).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = proxies
        .iter()
        .zip(["a", "b"])
        .map(|(p, tag)| writer(p, tag, stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let election = cluster.kill_leader_and_measure(Duration::from_secs(10));
    let (old, new, killed_at) = (election.old, election.new, election.killed_at);
    let (old_name, new_name) = (names[old].clone(), names[new].clone());
    // Both name the new leader (or time out), then 1s more of writes.
    wait_for(
        Duration::from_secs(8),
        "both proxies name the new leader",
        || {
            routing
                .iter()
                .all(|w| w.first(killed_at, &new_name).is_some())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let writes: Vec<Vec<Write>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let leader_log = watch.stop();
    let election_time = leader_log
        .first_leader_after(killed_at, Some(old))
        .map_or(election.took, |o| {
            o.at.duration_since(killed_at).min(election.took)
        });
    let bound = election_time + LEADER_INTERVAL + SLACK;

    let mut line = format!(
        "two_proxies_etcd: killed leader {old_name}, {new_name} elected after {} ms; bound {} ms (election + {} ms probe interval + {} ms)",
        ms(election_time),
        ms(bound),
        ms(LEADER_INTERVAL),
        ms(SLACK),
    );
    let mut converged = Vec::new();
    let mut problems = Vec::new();
    for (i, (w, ws)) in routing.iter().zip(&writes).enumerate() {
        let tag = ["A", "B"][i];
        let routed = w.first(killed_at, &new_name).unwrap() - killed_at;
        let dropped = w
            .first_not(killed_at, &old_name)
            .map_or(u128::MAX, |t| ms(t - killed_at));
        let failed: Vec<&Write> = ws.iter().filter(|x| !ok(x.2)).collect();
        let after_kill: Vec<&Write> = ws.iter().filter(|x| x.0 >= killed_at).collect();
        let first_new = ws
            .iter()
            .filter(|x| x.1 >= killed_at && ok(x.2) && x.3.as_deref() == Some(new_name.as_str()))
            .map(|x| x.1 - killed_at)
            .min();
        let to_old = after_kill
            .iter()
            .filter(|x| x.3.as_deref() == Some(old_name.as_str()))
            .count();
        line.push_str(&format!(
            "; proxy {tag}: old leader dropped after {dropped} ms, new leader in /admin/routing after {} ms, first write acked by it after {} ms, {} writes ({} after the kill) {} failed {to_old} to {old_name}",
            ms(routed),
            first_new.map_or("-".to_string(), |d| ms(d).to_string()),
            ws.len(),
            after_kill.len(),
            failed.len(),
        ));
        if routed > bound {
            problems.push(format!(
                "proxy {tag}: routed to {new_name} after {} ms > {} ms",
                ms(routed),
                ms(bound)
            ));
        }
        match first_new {
            Some(d) if d <= bound => {}
            other => problems.push(format!(
                "proxy {tag}: first write acked by {new_name} after {other:?} > {} ms",
                ms(bound)
            )),
        }
        if !failed.is_empty() {
            let statuses: Vec<u16> = failed.iter().map(|x| x.2).collect();
            problems.push(format!("proxy {tag}: failed writes, statuses {statuses:?}"));
        }
        if to_old > 0 {
            problems.push(format!(
                "proxy {tag}: {to_old} writes sent after the kill name {old_name}"
            ));
        }
        converged.push(routed);
    }
    let gap = converged[0].abs_diff(converged[1]);
    line.push_str(&format!(
        "; proxies disagreed for {} ms; total {:.1} s",
        ms(gap),
        t0.elapsed().as_secs_f64()
    ));
    println!("{line}");
    for w in routing {
        w.stop();
    }
    assert!(problems.is_empty(), "{problems:#?}\n{line}");
}

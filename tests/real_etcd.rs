//! Real 3-member etcd 3.4 cluster behind leaderproxy: SIGKILL the leader under
//! concurrent write load and check what the clients saw. Two runs, one after
//! the other (never at once: the machine has 2 cores): the default
//! `writes.retry_ambiguous: never` (`etcd_leader_sigkill_under_write_load`)
//! and `retry_ambiguous: idempotent` (`etcd_leader_sigkill_retry_ambiguous_idempotent`).
//! The proxy probes the leader every 200ms, and every `leader.fast_interval`
//! (25ms, the default) while no leader is known.
//!
//! Needs `/usr/bin/etcd` (Debian `etcd-server`); `bash tests/run.sh` installs
//! it. `LEADERPROXY_SKIP_REAL=1` skips the test with a notice.
//!
//! What is asserted, precisely:
//! 1. No write fails at the client, except a write that was in flight to the
//!    killed leader at the moment of the kill: such a write may or may not have
//!    been committed, so the proxy must not replay it and answers 502/503/504.
//!    Those are counted, bounded by the number of writers, and reported as
//!    "ambiguous". Every write *sent* after the killed process was reaped must
//!    succeed (the proxy holds it until the new leader is known).
//!    With `retry_ambiguous: idempotent` not even those fail: a v2 PUT is
//!    idempotent, so the proxy re-sends it once to the new leader (0 failed).
//! 2. Every acknowledged write is present with its value afterwards (one
//!    recursive quorum read `?recursive=true&quorum=true` on the new leader).
//! 3. The longest gap between two consecutive acknowledgements (all writers
//!    merged) is at most the measured election time + 0.1s. The election time
//!    is measured from the reaping of the killed leader to the first 200 on
//!    `GET /v2/stats/leader` from a surviving member (polled every 20ms, by
//!    the main thread and by a per-member watcher; the smaller value is used).
//! 4. The `x-leaderproxy-backend` of every acknowledged write names a member
//!    that an independent watcher (each member's `/v2/stats/leader` polled every
//!    20ms) saw as leader within 250ms of the write (between send - 250ms and
//!    answer + 250ms). Additionally no write sent after the kill names the
//!    killed member. Note that an etcd follower would accept a misrouted write
//!    (it forwards to the leader), so this header check is what detects
//!    misrouting.
//! 5. The killed member, restarted with its data dir, shows up as `follower`
//!    in `/admin/routing` and is sent reads again (debug header on GETs).
//!
//! Proxy config notes: etcd's `/health` is a quorum read, so during an
//! election *every* member answers 503 `{"health":"false"}` (after hanging
//! ~1s). `health.fall` x `health.interval` must therefore exceed the election
//! time or the proxy marks the whole cluster down. Followers never answer a
//! write with "not leader": they forward it to the leader (and block during an
//! election), so `writes.not_leader` is not configured.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

#[path = "support/writes.rs"]
mod writes;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd::{EtcdCluster, LeaderWatch};
use procs::{spawn_proxy, split_url, wait_for, wait_until, HttpConn, HttpResponse};
use writes::{Load, Outcome, Rec, Request, Verdict};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const WRITERS: usize = 8;
const DIR: &str = "lp";

/// A 2xx is an acknowledgement; etcd must echo the value written.
fn acked(req: &Request, resp: &HttpResponse) -> Verdict {
    if !(200..300).contains(&resp.status) {
        return Verdict::Other;
    }
    let echoed = resp.json()["node"]["value"].as_str().map(str::to_string);
    assert_eq!(
        echoed.as_deref(),
        Some(req.value.as_str()),
        "etcd echoed another value"
    );
    Verdict::Acked
}

/// The longest pause between acknowledged writes may exceed the election
/// by at most this.
const PAUSE_SLACK: Duration = Duration::from_millis(100);

/// The two runs share one machine of 2 cores: never at the same time.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One run of the scenario under a `writes:` setting.
struct Variant {
    /// In the output lines: `real_etcd[<name>]: ...`.
    name: &'static str,
    /// The `writes:` block of the proxy config.
    writes: &'static str,
    /// `writes.retry_ambiguous: idempotent`: the writes in flight at the kill
    /// are re-sent to the new leader, so none may fail.
    replays: bool,
}

/// Without `retry_ambiguous`: a write in flight to the killed leader may fail
/// (it may have been applied, so it is not re-sent).
#[test]
fn etcd_leader_sigkill_under_write_load() {
    run(Variant {
        name: "never-replay",
        writes: "writes:\n  hold: 8s\n",
        replays: false,
    });
}

/// With `retry_ambiguous: idempotent`: the v2 PUTs in flight at the kill are
/// re-sent once to the new leader; no write fails and none is lost.
#[test]
fn etcd_leader_sigkill_retry_ambiguous_idempotent() {
    run(Variant {
        name: "retry_ambiguous",
        writes: "writes:\n  hold: 8s\n  retry_ambiguous: idempotent\n",
        replays: true,
    });
}

fn run(v: Variant) {
    if !procs::require_binaries("real_etcd", &[etcd::ETCD_BIN]) {
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let tag = format!("real_etcd[{}]", v.name);
    let test_start = Instant::now();
    let mut cluster = EtcdCluster::start(3);
    let proxy = spawn_proxy(
        BIN,
        &cluster.leaderproxy_yaml(&format!("debug_headers: true\n{}", v.writes)),
    );
    let names = cluster.names();

    let first_leader = cluster.wait_for_leader(Duration::from_secs(10));
    proxy.wait_leader(&names[first_leader], Duration::from_secs(10));

    let watch = LeaderWatch::start(&cluster);
    wait_for(
        Duration::from_secs(5),
        "leader watch has observations of every member",
        || {
            let log = watch.log();
            (0..cluster.len()).all(|i| log.obs.iter().any(|o| o.member == i))
        },
    );

    // ---- load, kill, load ---------------------------------------------------
    let (authority, _) = split_url(&proxy.url("/"));
    let load = Load::start(
        WRITERS,
        &authority,
        Duration::ZERO,
        |t, n| writes::etcd_v2_put(DIR, t, n),
        acked,
    );

    std::thread::sleep(Duration::from_secs(3)); // load phase before the kill
    let kill_started = Instant::now();
    let election = cluster.kill_leader_and_measure(Duration::from_secs(15));
    let killed_at = election.killed_at;
    let old = election.old;
    let new_leader_seen = killed_at + election.took;
    // keep writing ~4s after the kill, and at least 2s after the new leader appeared
    let load_end = std::cmp::max(
        killed_at + Duration::from_secs(4),
        new_leader_seen + Duration::from_secs(2),
    );
    while Instant::now() < load_end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let recs = load.stop();
    let leader_log = watch.stop();
    // The election time used for the bound is the smaller of two measurements:
    // the main thread's poll and the parallel 20ms watcher.
    let watched = leader_log
        .first_leader_after(killed_at, Some(old))
        .map(|o| o.at.duration_since(killed_at));
    let election_time = watched.map_or(election.took, |w| w.min(election.took));
    let metrics = proxy.metrics();
    let resent = procs::metric_sum(&metrics, "leaderproxy_writes_resent_total", &[]);
    let replayed = procs::metric_sum(&metrics, "leaderproxy_writes_retried_ambiguous_total", &[]);
    let leader_changes = procs::metric_sum(&metrics, "leaderproxy_leader_changes_total", &[]);

    // ---- classify ---------------------------------------------------------------
    let (acked, failed) = writes::split(&recs);
    // in flight to the dying leader: sent before it was reaped, answered after the kill began,
    // answered by the proxy with a gateway error (never replayed, correct)
    let is_ambiguous = |r: &Rec| {
        r.sent <= killed_at
            && r.done >= kill_started
            && matches!(
                r.outcome,
                Outcome::Other {
                    status: 502..=504,
                    ..
                }
            )
    };
    let ambiguous: Vec<&Rec> = failed.iter().copied().filter(|r| is_ambiguous(r)).collect();
    let hard_failed: Vec<&Rec> = failed
        .iter()
        .copied()
        .filter(|r| !is_ambiguous(r))
        .collect();

    // ---- read everything back (quorum) from the new leader -----------------------
    let stored: BTreeMap<String, String> = cluster.v2_list(election.new, DIR);
    let lost: Vec<&Rec> = acked
        .iter()
        .copied()
        .filter(|r| !r.stored_in(&stored))
        .collect();
    let ambiguous_committed = ambiguous.iter().filter(|r| r.stored_in(&stored)).count();

    // ---- pauses --------------------------------------------------------------------
    let longest = writes::longest_pause(&acked, killed_at);
    let rel = |t: Instant| writes::rel(killed_at, t);

    // ---- routing correctness via debug header --------------------------------------
    let slack = Duration::from_millis(250);
    let mut misrouted = Vec::new();
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for r in &acked {
        if let Outcome::Acked { backend, role } = &r.outcome {
            *by_backend.entry(backend.clone()).or_default() += 1;
            let idx = cluster.index_of(backend);
            let leaders = leader_log
                .leaders_between(r.sent.checked_sub(slack).unwrap_or(r.sent), r.done + slack);
            let ok = role == "write"
                && idx.map(|i| leaders.contains(&i)).unwrap_or(false)
                && !(r.sent > killed_at && idx == Some(old));
            if !ok {
                misrouted.push(format!(
                    "{} backend={backend:?} role={role:?} sent={} done={} leaders_seen={:?}",
                    r.key,
                    rel(r.sent),
                    rel(r.done),
                    leaders
                        .iter()
                        .map(|&i| names[i].clone())
                        .collect::<Vec<_>>()
                ));
            }
        }
    }

    let summary = format!(
        "{tag}: writes={} acked={} failed={} (ambiguous: in flight at the kill or sent to the dying leader={}, sent after the signal={}, of which committed={}; other={}) \
         lost={} longest_pause={}ms [{} .. {}] election={}ms (poll {}ms, watcher {:?}ms) killed={} new_leader={} per_backend={:?} misrouted={} \
         proxy_metrics: writes_resent={} writes_retried_ambiguous={} leader_changes={}",
        recs.len(),
        acked.len(),
        failed.len(),
        ambiguous.len(),
        ambiguous
            .iter()
            .filter(|r| r.sent > election.signalled_at)
            .count(),
        ambiguous_committed,
        hard_failed.len(),
        lost.len(),
        longest.gap.as_millis(),
        rel(longest.from),
        rel(longest.to),
        election_time.as_millis(),
        election.took.as_millis(),
        watched.map(|d| d.as_millis()),
        names[old],
        names[election.new],
        by_backend,
        misrouted.len(),
        resent,
        replayed,
        leader_changes,
    );
    println!("{summary}");
    for r in ambiguous.iter().take(3) {
        println!(
            "{tag}: ambiguous example: {}",
            writes::describe(r, killed_at)
        );
    }

    let show = |v: &[&Rec]| writes::show(v, killed_at);
    assert!(
        hard_failed.is_empty(),
        "{} writes failed at the client (not counting {} ambiguous in-flight ones):\n{}\n{summary}\nproxy log:\n{}",
        hard_failed.len(),
        ambiguous.len(),
        show(&hard_failed),
        proxy.log_tail(40)
    );
    assert!(
        !v.replays || ambiguous.is_empty(),
        "{} writes in flight at the kill failed although retry_ambiguous: idempotent re-sends them:\n{}\n{summary}\nproxy log:\n{}",
        ambiguous.len(),
        show(&ambiguous),
        proxy.log_tail(40)
    );
    // In flight at the moment of the kill: sent before SIGKILL. A writer
    // has one request at a time, so at most one each. Writes sent between
    // the signal and the reaping went to a process already dying (on a busy
    // machine that window is several ms, time for a second write from a
    // writer whose first one failed); they are the other ambiguous ones.
    let at_kill: Vec<&Rec> = ambiguous
        .iter()
        .copied()
        .filter(|r| r.sent <= election.signalled_at)
        .collect();
    assert!(
        at_kill.len() <= WRITERS,
        "{} writes were in flight at the kill but only {WRITERS} writers exist:\n{}",
        at_kill.len(),
        show(&at_kill)
    );
    assert!(acked.len() > 100, "too few writes acknowledged: {summary}");
    assert!(
        lost.is_empty(),
        "{} acknowledged writes are missing or wrong after the failover:\n{}\n{summary}",
        lost.len(),
        show(&lost)
    );
    assert!(
        longest.gap <= election_time + PAUSE_SLACK,
        "longest pause between acknowledged writes {}ms > election {}ms + {}ms\n{summary}\nproxy log:\n{}",
        longest.gap.as_millis(),
        election_time.as_millis(),
        PAUSE_SLACK.as_millis(),
        proxy.log_tail(40)
    );
    assert!(
        misrouted.is_empty(),
        "{} acknowledged writes were answered by a member that was not leader at the time:\n{}\n{summary}",
        misrouted.len(),
        misrouted.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );

    // ---- restart the killed member: follower again, receives reads -----------------
    cluster.restart(old);
    let old_name = names[old].clone();
    wait_for(
        Duration::from_secs(15),
        &format!("restarted {old_name} is role=follower in /admin/routing"),
        || proxy.backend_role(&old_name).as_deref() == Some("follower"),
    );
    let probe_key = acked[0].key.clone();
    let mut reads = 0;
    let mut read_backends: BTreeMap<String, usize> = BTreeMap::new();
    let mut conn = HttpConn::new(&authority, Duration::from_secs(5));
    wait_until(
        Instant::now() + Duration::from_secs(10),
        &format!("a proxied GET is served by restarted {old_name}"),
        || {
            let r = conn
                .request("GET", &format!("/v2/keys{probe_key}"), &[], b"")
                .expect("GET through proxy");
            reads += 1;
            assert_eq!(
                r.status,
                200,
                "read through proxy: {} {}",
                r.status,
                r.text()
            );
            assert_eq!(r.header("x-leaderproxy-role"), Some("read"));
            let b = r.header("x-leaderproxy-backend").unwrap_or("").to_string();
            *read_backends.entry(b.clone()).or_default() += 1;
            b == old_name
        },
    );
    assert_eq!(
        cluster.leader(),
        Some(election.new),
        "leadership moved after the restart"
    );
    println!(
        "{tag}: restarted {old_name} is follower and served a read after {reads} reads ({read_backends:?}); total {:?}",
        test_start.elapsed()
    );
}

//! Real Redis primary + 2 replicas + 3 Sentinels, a webdis in front of each
//! Redis node, and leaderproxy in front of the three webdis: SIGKILL the
//! primary redis-server (not its webdis) under concurrent write load.
//!
//! The proxy runs the shipped `config/redis-webdis.yaml` (parsed as YAML;
//! `listen`, `admin` and `backends` replaced, a few test settings merged in:
//! see `OVERRIDES`), so its leader probe, routes and not-leader rules are
//! the ones a user gets.
//!
//! Needs `/usr/bin/redis-server`, `/usr/bin/redis-sentinel`, `/usr/bin/webdis`;
//! `bash tests/run.sh` installs them. `LEADERPROXY_SKIP_REAL=1` skips the test.
//!
//! Asserted:
//! 1. No client ever receives a `READONLY` body (a write reaching a replica
//!    answers HTTP 200 `{"SET":[false,"READONLY You can't write against a read
//!    only replica."]}`; the proxy must treat it as "not leader" and re-send).
//! 2. Writes resume through the proxy within the promotion time + 0.1s: the
//!    first acknowledged write *sent* after the kill is answered at most
//!    0.1s after the promoted node's webdis first answers `GET /ROLE` with
//!    `master` (each webdis polled every 10ms from the kill on). While no
//!    leader is known the proxy probes every `leader.fast_interval` (25ms).
//!    Reported beside it: promotion = from the reaping of the killed
//!    redis-server until a replica answers ROLE `master` on Redis itself
//!    (polled every 20ms). The webdis is ~0.1s later than Redis, so the
//!    bound is not taken from Redis: Sentinel ends the promotion with
//!    `CLIENT KILL TYPE normal` on the promoted replica, which closes
//!    webdis's Redis connection too, and webdis reconnects only after a
//!    fixed 0.1s timer (`pool_schedule_reconnect`), answering 503 until
//!    then. No proxy can route a write there sooner. Promotion time = from the reaping of the
//!    killed redis-server until a replica answers ROLE `master` (polled every 20ms).
//! 3. Once writes have resumed, every later write succeeds (until phase 2).
//!
//! Phase 2: the killed redis-server is started again with its original
//! arguments, so it boots as an (empty) master; Sentinel turns it into a
//! replica of the new master only after ~10s (measured 10.4-10.6s: Sentinel
//! waits before reconfiguring an instance that reports a wrong role). While two
//! nodes claim master, the proxy must not acknowledge a write from the stale
//! one: asserted is that every write sent in phase 2 and acknowledged was
//! answered by the new master and is present afterwards; failures are allowed
//! only as the proxy's 503 `split_brain` (writes held for `writes.hold`, then
//! refused), and counted.
//!
//! 4. webdis in front of the dead Redis answers 503 (it has no Redis
//!    connection, so the command was never sent); that is configured as a
//!    not-leader answer, so no client ever receives a 503 from webdis: the
//!    write is re-sent to the new primary.
//!
//! Reported, not asserted: other failures between the kill and the resumption
//! (writes in flight inside webdis when Redis died are answered 502 by the
//! proxy and never re-sent), and how many
//! acknowledged writes Redis lost (replication is asynchronous, so writes
//! acknowledged by the old primary shortly before the kill can be missing on
//! the promoted replica).

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/writes.rs"]
mod writes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use procs::{spawn_proxy, split_url, wait_until, HttpResponse};
use redis::RedisCluster;
use writes::{Load, Outcome, Rec, Request, Verdict};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const WRITERS: usize = 8;
const OK_BODY: &str = r#"{"SET":[true,"OK"]}"#;
/// Writes resume at most this long after the promoted node's webdis answers
/// ROLE master.
const RESUME_SLACK: Duration = Duration::from_millis(100);

fn is_readonly(r: &Rec) -> bool {
    matches!(&r.outcome, Outcome::Other { body, .. } if body.contains("READONLY"))
}

/// What the test changes in the shipped `config/redis-webdis.yaml` (besides
/// `listen`, `admin` and `backends`): debug headers to see who answered, a
/// hold that outlasts the promotion, shorter backend timeouts. The leader
/// probe (`interval: 200ms`, `fast_interval` left at its 25ms default), the
/// health probe, the routes and `writes.not_leader` are the shipped ones.
const OVERRIDES: &str = "debug_headers: true
writes: { hold: 8s }
timeouts: { connect: 500ms, response_headers: 10s }
";

/// `GET /SET/key-<t>-<n>/val-<t>-<n>` through webdis.
fn set(t: usize, n: u64) -> Request {
    let key = format!("key-{t}-{n}");
    let value = format!("val-{t}-{n}");
    Request {
        method: "GET",
        path: format!("/SET/{key}/{value}"),
        headers: Vec::new(),
        body: Vec::new(),
        key,
        value,
    }
}

fn acked(_: &Request, resp: &HttpResponse) -> Verdict {
    if resp.status == 200 && resp.text() == OK_BODY {
        Verdict::Acked
    } else {
        Verdict::Other
    }
}

#[test]
fn redis_sentinel_failover_under_write_load() {
    if !procs::require_binaries("real_redis", &redis::BINARIES) {
        return;
    }
    let test_start = Instant::now();
    let mut cluster = RedisCluster::start();
    let proxy = spawn_proxy(BIN, &cluster.shipped_proxy_yaml(OVERRIDES));
    let names = cluster.names();
    let master = cluster.master().expect("a master");
    proxy.wait_leader(&names[master], Duration::from_secs(10));

    let (authority, _) = split_url(&proxy.url("/"));
    let load = Load::start(WRITERS, &authority, Duration::ZERO, set, acked);

    std::thread::sleep(Duration::from_secs(3)); // load phase before the kill
    let role_watch = redis::WebdisRoleWatch::start(&cluster);
    let kill_started = Instant::now();
    let (old, killed_at) = cluster.kill_master();
    let killed_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (new, promotion) = cluster.wait_for_promotion(old, killed_at, Duration::from_secs(20));
    let load_end = std::cmp::max(
        killed_at + Duration::from_secs(4),
        killed_at + promotion + Duration::from_secs(2),
    );
    while Instant::now() < load_end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let webdis_ready = role_watch
        .stop(killed_at, old)
        .map(|t| t.duration_since(killed_at));

    // ---- phase 2: the old primary comes back (as a master, empty) -------------------
    let restart_at = Instant::now();
    cluster.restart_redis(old);
    let new_port = cluster.nodes[new].redis_port;
    let mut split_seen = 0usize;
    let mut proxy_leaders: BTreeMap<String, usize> = BTreeMap::new();
    let mut masters_max = 0usize;
    // Sentinel's own pace (it re-points a returning master after about
    // 10 s; under host load once more than 20 s): the bound is generous.
    wait_until(
        restart_at + Duration::from_secs(40),
        "sentinel turns the restarted old primary into a connected replica of the new one",
        || {
            let masters = (0..cluster.nodes.len())
                .filter(|&i| cluster.role(i).as_deref() == Some("master"))
                .count();
            masters_max = masters_max.max(masters);
            let r = proxy.routing();
            if !r["split_brain"].is_null() {
                split_seen += 1;
            }
            let l = r["leader"]["name"].as_str().unwrap_or("none").to_string();
            *proxy_leaders.entry(l).or_default() += 1;
            cluster.replica_of(old) == Some(new_port)
        },
    );
    let rejoin_took = restart_at.elapsed();
    let phase2_end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < phase2_end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let recs = load.stop();

    let rel = |t: Instant| writes::rel(killed_at, t);
    let show = |v: &[&Rec]| writes::show(v, killed_at);

    let (acked, failed) = writes::split(&recs);
    let readonly: Vec<&Rec> = recs.iter().filter(|r| is_readonly(r)).collect();
    let failure_kinds: BTreeMap<String, usize> = writes::tally(&failed, |r| match &r.outcome {
        Outcome::Other {
            status,
            body,
            backend,
        } => format!(
            "{status} {:?} from {}",
            body.chars().take(60).collect::<String>(),
            backend.as_deref().unwrap_or("proxy")
        ),
        Outcome::Io(e) => format!("io error: {e}"),
        Outcome::Acked { .. } => unreachable!(),
    })
    .into_iter()
    .map(|(k, v)| (k, v.len()))
    .collect();
    let resumed = acked.iter().find(|r| r.sent > killed_at).copied();
    let resume_after = resumed.map(|r| r.done.duration_since(killed_at));
    let failed_after_resume: Vec<&Rec> = match resumed {
        Some(res) => failed
            .iter()
            .copied()
            .filter(|r| r.sent > res.done && r.sent < restart_at)
            .collect(),
        None => Vec::new(),
    };
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for r in &acked {
        if let Outcome::Acked { backend, .. } = &r.outcome {
            *by_backend.entry(backend.clone()).or_default() += 1;
        }
    }

    // ---- how many acknowledged writes did Redis lose? ------------------------------
    assert_eq!(cluster.master(), Some(new), "the master changed again");
    let mut lost = 0usize;
    let mut lost_phase2 = Vec::new();
    let mut lost_examples = Vec::new();
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|r| r.key.clone()).collect();
        let vals = cluster.mget(new, &keys).expect("MGET on the new master");
        for (r, v) in chunk.iter().zip(vals) {
            if v.as_deref() != Some(r.value.as_str()) {
                lost += 1;
                if r.sent >= restart_at {
                    lost_phase2.push(format!("{} {:?} done={}", r.key, r.outcome, rel(r.done)));
                }
                if lost_examples.len() < 5 {
                    lost_examples.push(format!(
                        "{} (acked {} by {:?})",
                        r.key,
                        rel(r.done),
                        r.outcome
                    ));
                }
            }
        }
    }
    let failure_window = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => format!("[{} .. {}]", rel(a.done), rel(b.done)),
        _ => "[]".to_string(),
    };
    let resent = proxy.metric_sum("leaderproxy_writes_resent_total", &[]);
    let acked_by_old_before_kill = acked.iter().filter(|r| r.done <= kill_started).count();

    let summary = format!(
        "real_redis: writes={} acked={} failed={} readonly={} promotion={}ms webdis_master_after={} resumed_after={} \
         killed={} new_master={} lost_acked_writes={} (acked before kill: {}) per_backend={:?} failures={:?} in {} proxy_writes_resent={}",
        recs.len(),
        acked.len(),
        failed.len(),
        readonly.len(),
        promotion.as_millis(),
        webdis_ready.map(|d| format!("{}ms", d.as_millis())).unwrap_or_else(|| "never".into()),
        resume_after.map(|d| format!("{}ms", d.as_millis())).unwrap_or_else(|| "never".into()),
        names[old],
        names[new],
        lost,
        acked_by_old_before_kill,
        by_backend,
        failure_kinds,
        failure_window,
        resent,
    );
    println!("{summary}");
    println!(
        "real_redis: killed at unix {}.{:03}s (to read the proxy log against)",
        killed_unix.as_secs(),
        killed_unix.subsec_millis()
    );
    let phase2: Vec<&Rec> = recs.iter().filter(|r| r.sent >= restart_at).collect();
    let phase2_failed: Vec<&Rec> = phase2.iter().copied().filter(|r| !r.acked()).collect();
    let phase2_split: usize = phase2_failed
        .iter()
        .filter(
            |r| matches!(&r.outcome, Outcome::Other { body, .. } if body.contains("split_brain")),
        )
        .count();
    let phase2_wrong_backend: Vec<&Rec> = phase2
        .iter()
        .copied()
        .filter(|r| matches!(&r.outcome, Outcome::Acked { backend, .. } if *backend != names[new]))
        .collect();
    println!(
        "real_redis: old primary restarted at {}: rejoined as replica after {}ms; masters seen at once: {}; \
         proxy split_brain seen in {} polls, proxy leader polls {:?}; phase-2 writes={} failed={} (503 split_brain: {}) \
         acked-by-other-than-{}={} lost={}",
        rel(restart_at),
        rejoin_took.as_millis(),
        masters_max,
        split_seen,
        proxy_leaders,
        phase2.len(),
        phase2_failed.len(),
        phase2_split,
        names[new],
        phase2_wrong_backend.len(),
        lost_phase2.len()
    );
    if !lost_examples.is_empty() {
        println!("real_redis: lost examples: {lost_examples:?}");
    }

    assert!(
        readonly.is_empty(),
        "{} clients received a READONLY body:\n{}\n{summary}\nproxy log:\n{}",
        readonly.len(),
        show(&readonly),
        proxy.log_tail(40)
    );
    assert!(acked.len() > 100, "too few writes acknowledged: {summary}");
    let webdis_ready = webdis_ready.unwrap_or_else(|| {
        panic!("the promoted node's webdis never answered ROLE master\n{summary}")
    });
    let budget = webdis_ready + RESUME_SLACK;
    match resume_after {
        Some(d) => assert!(
            d <= budget,
            "writes resumed {}ms after the kill, budget is the promoted webdis answering \
             ROLE master {}ms + {}ms (Redis itself promoted after {}ms)\n{summary}\nproxy log:\n{}",
            d.as_millis(),
            webdis_ready.as_millis(),
            RESUME_SLACK.as_millis(),
            promotion.as_millis(),
            proxy.log_tail(40)
        ),
        None => panic!(
            "no write sent after the kill was acknowledged\n{summary}\nproxy log:\n{}",
            proxy.log_tail(40)
        ),
    }
    let webdis_503: Vec<&Rec> = failed
        .iter()
        .copied()
        .filter(|r| {
            matches!(
                &r.outcome,
                Outcome::Other {
                    status: 503,
                    backend: Some(_),
                    ..
                }
            )
        })
        .collect();
    assert!(
        webdis_503.is_empty(),
        "{} clients received webdis's 503 instead of a re-sent write:\n{}\n{summary}",
        webdis_503.len(),
        show(&webdis_503)
    );
    assert!(
        failed_after_resume.is_empty(),
        "{} writes failed after writes had resumed:\n{}\n{summary}",
        failed_after_resume.len(),
        show(&failed_after_resume)
    );
    assert!(
        phase2_wrong_backend.is_empty() && lost_phase2.is_empty(),
        "while the restarted old primary still called itself master, the proxy acknowledged \
         writes from it ({} acked by another node than {}, {} lost):\n{}\n{:?}",
        phase2_wrong_backend.len(),
        names[new],
        lost_phase2.len(),
        show(&phase2_wrong_backend),
        lost_phase2.iter().take(10).collect::<Vec<_>>()
    );
    let not_split_brain: Vec<&Rec> = phase2_failed
        .iter()
        .copied()
        .filter(|r| !matches!(&r.outcome, Outcome::Other { status: 503, body, .. } if body.contains("split_brain")))
        .collect();
    assert!(
        not_split_brain.is_empty(),
        "{} writes failed while the old primary rejoined, other than 503 split_brain:\n{}",
        not_split_brain.len(),
        show(&not_split_brain)
    );
    println!("real_redis: total {:?}", test_start.elapsed());
}

//! A frozen follower (it still answers probes, but not reads: a stalled
//! disk, a long pause) against `reads.try_timeout`: a read whose first try
//! waits that long goes to another follower, so clients see milliseconds,
//! not the freeze.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use admin::{backend_view, counter};

/// A leader `l` and two followers `f1`, `f2` behind a proxy with `extra`
/// config, both followers in the read tier.
async fn two_followers(extra: &str) -> ([fake::Fake; 3], fake::Proxy) {
    let [l, f1, f2] = nodes::nodes(["l", "f1", "f2"]).await;
    let p = nodes::led_by(&[&l, &f1, &f2], extra, "l").await;
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(5)).await;
    ([l, f1, f2], p)
}

/// `n` reads (`/k/0`…): each answered 200, not by `slow`, within `bound`;
/// returns the slowest.
async fn reads_avoid(p: &fake::Proxy, slow: &str, n: usize, bound: Duration) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let r = p.get(&format!("/k/{i}")).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "read {i}: {}", r.text());
        assert_ne!(
            r.backend().as_deref(),
            Some(slow),
            "read {i} answered by the slow follower"
        );
        assert!(took < bound, "read {i} took {took:?}");
        slowest = slowest.max(took);
    }
    slowest
}

/// Reads until `/admin/routing`'s `read_tier_latency` satisfies `ready`
/// (the tier's quantiles need 20 answers and are recomputed every 200ms).
async fn warm_up(p: &fake::Proxy, what: &str, ready: fn(&serde_json::Value) -> bool) {
    let mut warm = 0;
    fake::wait_until(Duration::from_secs(10), what, || {
        warm += 1;
        async move {
            assert_eq!(p.get(&format!("/warm/{warm}")).await.status, 200);
            ready(&p.routing().await["read_tier_latency"])
        }
    })
    .await;
}

/// Reads until `/admin/routing` shows `name` out for `why`.
async fn wait_out(p: &fake::Proxy, name: &str, why: &str) {
    fake::wait_until(
        Duration::from_secs(5),
        &format!("{name}: {why}"),
        || async {
            p.get("/k/again").await;
            backend_view(p, name).await["out"] == why
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_a_frozen_follower_after_try_timeout() {
    let ([_l, f1, _f2], p) =
        two_followers("reads: { policy: round_robin, try_timeout: 100ms }\n").await;
    f1.state.delay_ms.store(3_000, Ordering::Relaxed);
    let slowest = reads_avoid(&p, "f1", 200, Duration::from_millis(250)).await;
    let scrape = p.metrics().await;
    let timed_out = counter(&scrape, "leaderproxy_read_try_timeouts_total");
    assert!(timed_out >= 1, "the frozen follower's tries timed out");
    eprintln!("slow_followers: slowest read {slowest:?}, {timed_out} tries timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_try_timeout_a_read_waits_for_the_frozen_follower() {
    let [l, f1] = nodes::nodes(["l", "f1"]).await;
    let p = nodes::led_by(&[&l, &f1], "reads: { fallback_to_leader: false }\n", "l").await;
    admin::wait_followers(&p, &["f1"], Duration::from_secs(5)).await;
    f1.state.delay_ms.store(600, Ordering::Relaxed);
    let started = Instant::now();
    let r = p.get("/k").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend().as_deref(), Some("f1"));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the read waited for the follower"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_read_is_answered_by_the_second_try_when_the_first_is_slow() {
    let ([_l, f1, _f2], p) = two_followers(
        "reads: { policy: round_robin, hedge: { after: 50ms, max_percent: 100 } }\npassive: { consecutive_failures: 1000 }\n",
    )
    .await;
    f1.state.delay_ms.store(2_000, Ordering::Relaxed);
    // The slow try lost each time.
    reads_avoid(&p, "f1", 20, Duration::from_millis(500)).await;
    let scrape = p.metrics().await;
    let (sent, won) = (
        counter(&scrape, "leaderproxy_read_hedges_total"),
        counter(&scrape, "leaderproxy_read_hedges_won_total"),
    );
    assert!(
        won >= 5 && won == sent,
        "the reads that went to f1 were won by their hedge: {won}/{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_tries_stay_within_max_percent_of_the_reads() {
    let ([_l, f1, f2], p) = two_followers(
        "reads: { policy: round_robin, hedge: { after: 10ms, max_percent: 10 } }\npassive: { consecutive_failures: 1000 }\n",
    )
    .await;
    // Every read is slow enough to be hedged.
    f1.state.delay_ms.store(40, Ordering::Relaxed);
    f2.state.delay_ms.store(40, Ordering::Relaxed);
    let reads = 100;
    for i in 0..reads {
        assert_eq!(p.get(&format!("/k/{i}")).await.status, 200);
    }
    let sent = counter(&p.metrics().await, "leaderproxy_read_hedges_total");
    assert!(sent >= 5, "hedges were sent: {sent}");
    assert!(
        sent * 100 <= reads * 10,
        "{sent} hedges for {reads} reads: over 10%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_try_timeout_hides_a_frozen_follower_and_ejects_it_for_latency() {
    let ([_l, f1, _f2], p) = two_followers(
        "reads: { policy: round_robin, try_timeout: auto, try_timeout_auto: { max: 300ms } }\npassive: { base_ejection: 1s, max_ejection: 2s }\n",
    )
    .await;
    // Until the tier's p99 is known, `auto` is the ceiling.
    warm_up(&p, "a try timeout from p99", |t| {
        t["try_timeout_ms"].as_f64().is_some_and(|ms| ms < 300.0)
    })
    .await;
    let tier = p.routing().await["read_tier_latency"].clone();
    assert!(tier["p99_ms"].as_f64().unwrap() > 0.0, "{tier}");
    assert!(
        backend_view(&p, "f1").await["read_p99_ms"]
            .as_f64()
            .is_some(),
        "f1's recent latency is shown"
    );

    f1.state.delay_ms.store(3_000, Ordering::Relaxed);
    // The ceiling (300ms) and a margin for a loaded machine.
    let slowest = reads_avoid(&p, "f1", 200, Duration::from_millis(500)).await;
    // Still frozen (until `delay_ms` is reset): each time its back-off
    // ends, its trial read times out.
    wait_out(&p, "f1", "ejected: latency").await;
    let scrape = p.metrics().await;
    let ejections = counter(&scrape, "leaderproxy_read_latency_ejections_total");
    assert!(ejections >= 1, "latency ejections counted: {ejections}");
    assert!(!admin::followers(&p).await.contains(&"f1".to_string()));

    f1.state.delay_ms.store(0, Ordering::Relaxed);
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(10)).await;
    assert_eq!(backend_view(&p, "f1").await["out"], serde_json::Value::Null);
    let mut by_f1 = 0;
    for i in 0..20 {
        let r = p.get(&format!("/back/{i}")).await;
        assert_eq!(r.status, 200);
        by_f1 += usize::from(r.backend().as_deref() == Some("f1"));
    }
    assert!(by_f1 >= 5, "f1 serves reads again: {by_f1} of 20");
    eprintln!("slow_followers auto: slowest read {slowest:?}, {ejections} latency ejections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_ejected_for_latency_stays_out_while_its_probes_are_slow() {
    let ([_l, f1, _f2], p) = two_followers(
        "reads: { policy: round_robin, try_timeout: 50ms }\npassive: { consecutive_failures: 2, base_ejection: 1s, max_ejection: 1s }\nhealth: { path: /health, interval: 300ms, timeout: 250ms, rise: 1, fall: 3 }\nleader: { path: /leader, interval: 300ms, timeout: 250ms, expect: { status: [200] } }\n",
    )
    .await;
    f1.state.delay_ms.store(2_000, Ordering::Relaxed);
    f1.state.probe_delay_ms.store(80, Ordering::Relaxed);
    wait_out(&p, "f1", "ejected: latency").await;
    // Its reads would be fast now; its probes still take longer than the
    // try timeout it missed: held past its 1 s back-off (for at most 1 s
    // more, `ejection::holds`).
    f1.state.delay_ms.store(0, Ordering::Relaxed);
    fake::wait_until(Duration::from_secs(5), "f1's back-off over", || async {
        backend_view(&p, "f1").await["ejected_for_ms"].is_null()
    })
    .await;
    let v = backend_view(&p, "f1").await;
    assert_eq!(v["out"], "ejected: latency", "{v}");
    assert_eq!(v["ejected"], true, "{v}");
    assert_eq!(admin::followers(&p).await, ["f2"]);
    f1.state.probe_delay_ms.store(0, Ordering::Relaxed);
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p95_hedge_goes_out_after_the_tiers_recent_p95() {
    let ([_l, f1, _f2], p) = two_followers(
        "reads: { policy: round_robin, hedge: { after: p95, max_percent: 100 } }\npassive: { consecutive_failures: 1000 }\n",
    )
    .await;
    warm_up(&p, "the tier's p95", |t| !t["p95_ms"].is_null()).await;
    assert_eq!(
        counter(&p.metrics().await, "leaderproxy_read_hedges_total"),
        0,
        "fast reads are not hedged"
    );
    f1.state.delay_ms.store(2_000, Ordering::Relaxed);
    reads_avoid(&p, "f1", 20, Duration::from_millis(500)).await;
    let won = counter(&p.metrics().await, "leaderproxy_read_hedges_won_total");
    assert!(
        won >= 5,
        "the reads that went to f1 were won by their hedge: {won}"
    );
}

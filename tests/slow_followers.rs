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

use admin::counter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_leave_a_frozen_follower_after_try_timeout() {
    let [l, f1, f2] = nodes::nodes(["l", "f1", "f2"]).await;
    let p = nodes::led_by(
        &[&l, &f1, &f2],
        "reads: { policy: round_robin, try_timeout: 100ms }\n",
        "l",
    )
    .await;
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(5)).await;
    f1.state.delay_ms.store(3_000, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let started = Instant::now();
        let r = p.get(&format!("/k/{i}")).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "read {i}: {}", r.text());
        assert_ne!(
            r.backend().as_deref(),
            Some("f1"),
            "read {i} answered by the frozen follower"
        );
        assert!(took < Duration::from_millis(250), "read {i} took {took:?}");
        slowest = slowest.max(took);
    }
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
    let [l, f1, f2] = nodes::nodes(["l", "f1", "f2"]).await;
    let p = nodes::led_by(
        &[&l, &f1, &f2],
        "reads: { policy: round_robin, hedge: { after: 50ms, max_percent: 100 } }\npassive: { consecutive_failures: 1000 }\n",
        "l",
    )
    .await;
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(5)).await;
    f1.state.delay_ms.store(2_000, Ordering::Relaxed);
    for i in 0..20 {
        let started = Instant::now();
        let r = p.get(&format!("/k/{i}")).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.backend().as_deref(), Some("f1"), "the slow try lost");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "read {i}: {:?}",
            started.elapsed()
        );
    }
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
    let [l, f1, f2] = nodes::nodes(["l", "f1", "f2"]).await;
    let p = nodes::led_by(
        &[&l, &f1, &f2],
        "reads: { policy: round_robin, hedge: { after: 10ms, max_percent: 10 } }\npassive: { consecutive_failures: 1000 }\n",
        "l",
    )
    .await;
    admin::wait_followers(&p, &["f1", "f2"], Duration::from_secs(5)).await;
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

//! Zones and disaster-recovery priority against in-process fake nodes:
//! reads stay in `local_zone` while it has an eligible follower, spill to
//! other zones (and a read retry to the spill tier) when it has none, a
//! standby site (`priority` > 0) gets reads only when no primary follower
//! is eligible, and writes go to the leader wherever it is.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::collections::HashMap;
use std::time::Duration;

use admin::metric;
use fake::{config_with, tally, wait_until, Fake, Proxy, Role};
use nodes::nodes;

const WITHIN: Duration = Duration::from_secs(5);

/// A proxy over `backends` (each with its `zone`/`priority` line) and the
/// top-level `extra`, once `leader` leads and the read tier is `tier`.
async fn zoned(backends: &[(&Fake, &str)], extra: &str, leader: &str, tier: &[&str]) -> Proxy {
    let p = Proxy::start(&config_with(backends, extra)).await;
    p.wait_leader(Some(leader), WITHIN).await;
    wait_tier(&p, tier).await;
    p
}

/// Waits until the read tier is exactly `want`.
async fn wait_tier(p: &Proxy, want: &[&str]) {
    admin::wait_tier(p, want, WITHIN).await;
}

/// The spill series: 1 while reads go outside the local zone / primary site.
async fn spilled(p: &Proxy) -> f64 {
    metric(&p.metrics().await, "leaderproxy_read_tier_spilled")
}

/// Forgets what each of `fakes` has seen.
fn clear(fakes: &[&Fake]) {
    fakes.iter().for_each(|f| f.clear());
}

/// `n` reads; how many each backend answered. Every read must succeed.
async fn reads(p: &Proxy, n: usize) -> HashMap<String, usize> {
    let mut replies = Vec::new();
    for i in 0..n {
        let r = p.get(&format!("/r/{i}")).await;
        assert_eq!(r.status, 200, "read {i}: {}", r.text());
        replies.push(r);
    }
    tally(&replies)
}

fn got(t: &HashMap<String, usize>, name: &str) -> usize {
    t.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_in_the_local_zone_while_it_has_a_healthy_follower() {
    let [l, a1, a2, b1, b2] = nodes(["l", "a1", "a2", "b1", "b2"]).await;
    let p = zoned(
        &[
            (&l, "zone: eu-1"),
            (&a1, "zone: eu-1"),
            (&b1, "zone: eu-2"),
            (&a2, "zone: eu-1"),
            (&b2, "zone: eu-2"),
        ],
        "local_zone: eu-1\n",
        "l",
        &["a1", "a2"],
    )
    .await;
    // Every follower healthy (the remote ones too), the tier is the local two.
    wait_until(WITHIN, "all followers healthy", || async {
        let r = p.routing().await;
        r["backends"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["role"] == "follower")
            .count()
            == 4
    })
    .await;
    let t = reads(&p, 60).await;
    assert_eq!((got(&t, "a1"), got(&t, "a2")), (30, 30), "{t:?}");
    assert_eq!(b1.count() + b2.count() + l.count(), 0, "{t:?}");

    let r = p.routing().await;
    assert_eq!(r["local_zone"], "eu-1");
    assert_eq!(r["spill_followers"], serde_json::json!(["b1", "b2"]));
    let b = &r["backends"];
    assert_eq!(b[1]["name"], "a1");
    assert_eq!(
        (&b[1]["zone"], &b[1]["priority"], &b[1]["in_read_tier"]),
        (&"eu-1".into(), &0.into(), &true.into())
    );
    assert_eq!(b[2]["name"], "b1");
    assert_eq!(
        (&b[2]["zone"], &b[2]["in_read_tier"]),
        (&"eu-2".into(), &false.into())
    );
    assert_eq!(
        b[0]["in_read_tier"], false,
        "the leader is no read candidate"
    );
    assert_eq!(spilled(&p).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spill_to_the_other_zone_when_the_local_followers_die_and_come_back() {
    let [l, a1, b1, b2] = nodes(["l", "a1", "b1", "b2"]).await;
    let p = zoned(
        &[
            (&l, "zone: eu-1"),
            (&a1, "zone: eu-1"),
            (&b1, "zone: eu-2"),
            (&b2, "zone: eu-2"),
        ],
        "local_zone: eu-1\n",
        "l",
        &["a1"],
    )
    .await;
    let t = reads(&p, 20).await;
    assert_eq!(got(&t, "a1"), 20, "{t:?}");

    a1.kill();
    wait_tier(&p, &["b1", "b2"]).await;
    clear(&[&b1, &b2]);
    let t = reads(&p, 40).await;
    assert_eq!((got(&t, "b1"), got(&t, "b2")), (20, 20), "{t:?}");
    assert_eq!(l.count(), 0, "reads spill to followers, not to the leader");
    assert_eq!(spilled(&p).await, 1.0);

    a1.revive().await;
    wait_tier(&p, &["a1"]).await;
    clear(&[&a1, &b1, &b2]);
    let t = reads(&p, 40).await;
    assert_eq!(got(&t, "a1"), 40, "{t:?}");
    assert_eq!(b1.count() + b2.count(), 0);
    assert_eq!(spilled(&p).await, 0.0);
}

/// The local follower is healthy but answers 503: each read is retried
/// once, on the other zone (the spill tier), not on the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_retry_goes_to_the_spill_tier_before_the_leader() {
    let [l, a1, b1] = nodes(["l", "a1", "b1"]).await;
    let p = zoned(
        &[(&l, "zone: eu-1"), (&a1, "zone: eu-1"), (&b1, "zone: eu-2")],
        // Passive health off: a1 stays in the tier and fails every read.
        "local_zone: eu-1\npassive: { consecutive_failures: 0 }\n",
        "l",
        &["a1"],
    )
    .await;
    wait_until(WITHIN, "b1 in the spill tier", || async {
        p.routing().await["spill_followers"] == serde_json::json!(["b1"])
    })
    .await;
    a1.state
        .fail_status
        .store(503, std::sync::atomic::Ordering::Relaxed);
    let t = reads(&p, 20).await;
    assert_eq!(got(&t, "b1"), 20, "{t:?}");
    assert_eq!((a1.count(), b1.count(), l.count()), (20, 20, 0));
    assert_eq!(
        metric(&p.metrics().await, "leaderproxy_reads_retried_total"),
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_site_gets_reads_only_when_no_primary_follower_is_healthy() {
    let [l, p1, p2, s1, s2] = nodes(["l", "p1", "p2", "s1", "s2"]).await;
    // The standby followers are in the proxy's own zone: priority still wins.
    let p = zoned(
        &[
            (&l, "zone: dc-a"),
            (&p1, "zone: dc-a"),
            (&p2, "zone: dc-b"),
            (&s1, "zone: dc-dr, priority: 1"),
            (&s2, "zone: dc-dr, priority: 1"),
        ],
        "local_zone: dc-dr\n",
        "l",
        &["p1", "p2"],
    )
    .await;
    let t = reads(&p, 60).await;
    assert_eq!((got(&t, "p1"), got(&t, "p2")), (30, 30), "{t:?}");
    assert_eq!(s1.count() + s2.count(), 0, "standby got reads: {t:?}");

    // One primary follower left: still no reads for the standby site.
    p1.kill();
    wait_tier(&p, &["p2"]).await;
    p2.clear();
    let t = reads(&p, 30).await;
    assert_eq!(got(&t, "p2"), 30, "{t:?}");
    assert_eq!(s1.count() + s2.count(), 0, "standby got reads: {t:?}");

    // None left: the standby site takes the reads (not the leader).
    p2.kill();
    wait_tier(&p, &["s1", "s2"]).await;
    let t = reads(&p, 40).await;
    assert_eq!((got(&t, "s1"), got(&t, "s2")), (20, 20), "{t:?}");
    assert_eq!(l.count(), 0);
    assert_eq!(spilled(&p).await, 1.0);

    // A primary follower is back: reads leave the standby site.
    p2.revive().await;
    wait_tier(&p, &["p2"]).await;
    clear(&[&s1, &s2]);
    let t = reads(&p, 30).await;
    assert_eq!(got(&t, "p2"), 30, "{t:?}");
    assert_eq!(s1.count() + s2.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_to_the_leader_even_on_the_standby_site() {
    let [s, p1] = nodes(["s", "p1"]).await;
    let p = zoned(
        &[(&p1, "zone: dc-a"), (&s, "zone: dc-dr, priority: 1")],
        "local_zone: dc-a\n",
        "s",
        &["p1"],
    )
    .await;
    for i in 0..20 {
        let r = p.put(&format!("/k/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend().as_deref(), Some("s"));
    }
    assert_eq!((s.count(), p1.count()), (20, 0));
    let t = reads(&p, 10).await;
    assert_eq!(got(&t, "p1"), 10, "{t:?}");

    // The primary site wins the election back: writes follow, and the
    // standby member, now a follower, is the only one left for reads.
    s.set_role(Role::Follower);
    p1.set_role(Role::Leader);
    p.wait_leader(Some("p1"), WITHIN).await;
    wait_tier(&p, &["s"]).await;
    clear(&[&s, &p1]);
    for i in 0..20 {
        let r = p.put(&format!("/k2/{i}")).await;
        assert_eq!(r.backend().as_deref(), Some("p1"), "{}", r.text());
    }
    let t = reads(&p, 10).await;
    assert_eq!(got(&t, "s"), 10, "{t:?}");
    assert_eq!((p1.count_method("PUT"), s.count_method("PUT")), (20, 0));
}

/// A reload that changes zones and priorities moves the read tier at once
/// and keeps the backends (the leader stays leader: no new generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_zone_and_priority_keeps_the_backends() {
    let [l, a, b] = nodes(["l", "a", "b"]).await;
    let cfg = |la: &str, aa: &str| {
        config_with(
            &[(&l, la), (&a, aa), (&b, "zone: eu-2")],
            "local_zone: eu-1\n",
        )
    };
    let p = Proxy::start(&cfg("zone: eu-1", "zone: eu-1")).await;
    p.wait_leader(Some("l"), WITHIN).await;
    wait_tier(&p, &["a"]).await;
    let generation = p.routing().await["leader_generation"].clone();

    let r = p
        .reload_with(&cfg("zone: eu-2, priority: 1", "zone: eu-1, priority: 1"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The reload answers before the new table is published: wait for it.
    wait_tier(&p, &["b"]).await;
    let r = p.routing().await;
    assert_eq!(r["leader"]["name"], "l");
    assert_eq!(r["leader_generation"], generation, "the leader was kept");
    assert_eq!(r["backends"][0]["priority"], 1);
    assert_eq!(r["backends"][0]["zone"], "eu-2");
    assert_eq!(r["backends"][1]["role"], "follower", "a kept its health");
    let t = reads(&p, 10).await;
    assert_eq!(got(&t, "b"), 10, "{t:?}");
    assert_eq!(p.put("/k").await.backend().as_deref(), Some("l"));
}

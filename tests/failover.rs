//! Deterministic failover rules with in-process fake nodes: what is re-sent,
//! what never is, and who gets writes when leadership is unclear.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fake::{config_for, wait_until, Fake, Proxy, Refusal, Role};
use nodes::{led_by, nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_dying_mid_request_is_not_replayed() {
    let [a, b] = nodes(["a", "b"]).await;
    let p = led_by(&[&a, &b], "writes: { hold: 3s }\n", "a").await;
    a.state.delay_ms.store(400, Ordering::Relaxed);
    let kill = async {
        // The write has reached `a` (it is sleeping on it) when `a` dies.
        wait_until(Duration::from_secs(2), "write reached a", || async {
            a.count() == 1
        })
        .await;
        a.kill();
        b.set_role(Role::Leader);
    };
    let (r, _) = tokio::join!(p.put("/k"), kill);
    assert_eq!(
        r.status,
        502,
        "a write that may have been applied is an error, not a retry: {}",
        r.text()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.count(), 0, "the write was re-sent to the new leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_to_a_dead_leader_is_resent_to_the_new_one() {
    let [a, b] = nodes(["a", "b"]).await;
    // Slow probes: the proxy learns of the death from the failed write itself.
    let p = led_by(&[&a, &b],
        "leader: { path: /leader, interval: 1s, timeout: 200ms, expect: { status: [200] } }\nhealth: { path: /health, interval: 1s, timeout: 200ms }\nwrites: { hold: 3s }\n", "a").await;
    a.kill();
    b.set_role(Role::Leader);
    let start = Instant::now();
    let r = p.put("/k").await;
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend().as_deref(), Some("b"));
    assert_eq!(b.count(), 1);
    assert!(
        took < Duration::from_millis(700),
        "re-probe was not immediate: {took:?}"
    );
    let m = p.metrics().await;
    assert!(m.contains("leaderproxy_writes_resent_total 1"), "{m}");
}

async fn not_leader_case(refusal: Refusal, extra: &str) {
    let [a, b] = nodes(["a", "b"]).await;
    b.set_refusal(refusal);
    *b.state.redirect_to.lock().unwrap() = Some(a.addr);
    // Probes every 10 s: none lands between the demotion below and the
    // write (with 1 s one did once, under load, and the write went straight
    // to b); the refusal itself makes the proxy probe again at once.
    let p = led_by(&[&a, &b],
        &format!("leader: {{ path: /leader, interval: 10s, timeout: 200ms, expect: {{ status: [200] }} }}\n{extra}"), "a").await;
    // Leadership moves to b... but the proxy has not probed yet; b says "not leader"
    // to nothing, a is demoted and refuses.
    a.set_role(Role::Follower);
    a.set_refusal(refusal);
    *a.state.redirect_to.lock().unwrap() = Some(b.addr);
    b.set_role(Role::Leader);
    let r = p.req("POST", "/k", "value").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.text().contains("READONLY"),
        "a refusal reached the client"
    );
    assert_eq!(r.backend().as_deref(), Some("b"));
    assert_eq!(b.count_method("POST"), 1, "exactly one copy applied");
    assert_eq!(a.count_method("POST"), 1, "a saw it once and refused it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_status_is_resent_to_the_new_leader() {
    not_leader_case(
        Refusal::Status403,
        "writes: { hold: 3s, not_leader: { status: [403] } }\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_body_is_never_passed_to_the_client() {
    not_leader_case(
        Refusal::ReadOnlyBody,
        "writes: { hold: 3s, not_leader: { body: [{ status: [200], regex: '^\\{\"[^\"]+\":\\[false,\"READONLY ' }] } }\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_backend_is_followed_once() {
    not_leader_case(
        Refusal::Redirect,
        "writes: { hold: 3s, not_leader: { redirect: true } }\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_replay_limit_is_not_resent() {
    let [a, b] = nodes(["a", "b"]).await;
    // Probes every 10 s, as in not_leader_case: the refusal must be what
    // tells the proxy (a 1 s probe once came first, under load).
    let p = led_by(&[&a, &b], "leader: { path: /leader, interval: 10s, timeout: 200ms, expect: { status: [200] } }\nwrites: { hold: 2s, replay_body_limit: 1KiB, not_leader: { status: [403] } }\n", "a").await;
    a.set_role(Role::Follower);
    a.set_refusal(Refusal::Status403);
    b.set_role(Role::Leader);
    let r = p.req("POST", "/k", vec![7u8; 4096]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "not_leader");
    assert_eq!(b.count(), 0, "a streamed body was re-sent");
    // A small body in the same situation is re-sent.
    p.wait_leader(Some("b"), Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claimants_without_term_route_no_writes() {
    let [a, b] = nodes(["a", "b"]).await;
    *b.state.claim_override.lock().unwrap() = Some(true);
    let p = Proxy::start(&config_for(&[&a, &b], "writes: { hold: 300ms }\n")).await;
    wait_until(Duration::from_secs(3), "split brain seen", || async {
        p.routing().await["split_brain"].is_array()
    })
    .await;
    let r = p.put("/k").await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "split_brain");
    assert_eq!(a.count() + b.count(), 0, "a write went to a claimant");
    assert!(p
        .metrics()
        .await
        .contains("leaderproxy_split_brain_total 1"));
    // One steps down: writes flow again.
    *b.state.claim_override.lock().unwrap() = None;
    p.wait_leader(Some("a"), Duration::from_secs(3)).await;
    assert_eq!(p.put("/k2").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claimants_higher_term_wins() {
    let [a, b] = nodes(["a", "b"]).await;
    *b.state.claim_override.lock().unwrap() = Some(true);
    a.state.term.store(4, Ordering::Relaxed);
    b.state.term.store(5, Ordering::Relaxed);
    let p = led_by(&[&a, &b],
        "leader: { path: /leader, interval: 50ms, timeout: 40ms, expect: { status: [200] }, term: { pointer: /term } }\n", "b").await;
    assert_eq!(p.routing().await["leader"]["term"], 5);
    for i in 0..5 {
        assert_eq!(
            p.put(&format!("/k{i}")).await.backend().as_deref(),
            Some("b")
        );
    }
    assert_eq!(a.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leader_connections_are_not_reused_for_writes() {
    let [a, b] = nodes(["a", "b"]).await;
    let p = led_by(&[&a, &b], "", "a").await;
    for i in 0..4 {
        assert_eq!(p.put(&format!("/k{i}")).await.status, 200);
    }
    let pooled = || async {
        p.routing().await["backends"][0]["idle_connections"]
            .as_u64()
            .unwrap()
    };
    assert!(pooled().await >= 1, "connections to a are pooled");
    // a -> b -> a: a leads again, but under a new generation.
    a.set_role(Role::Follower);
    b.set_role(Role::Leader);
    p.wait_leader(Some("b"), Duration::from_secs(3)).await;
    b.set_role(Role::Follower);
    a.set_role(Role::Leader);
    p.wait_leader(Some("a"), Duration::from_secs(3)).await;
    assert!(p.routing().await["leader_generation"].as_u64().unwrap() >= 3);
    let before: std::collections::HashSet<usize> = a.seen().iter().map(|s| s.conn).collect();
    for i in 0..4 {
        assert_eq!(p.put(&format!("/after{i}")).await.status, 200);
    }
    let after: Vec<usize> = a.seen()[4..].iter().map(|s| s.conn).collect();
    assert!(
        after.iter().all(|c| !before.contains(c)),
        "a write reused a connection from a's previous term: before {before:?}, after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_retry_once_on_another_follower() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    f1.state.fail_status.store(503, Ordering::Relaxed);
    let p = led_by(
        &[&l, &f1, &f2],
        "passive: { consecutive_failures: 0 }\n",
        "l",
    )
    .await;
    for i in 0..6 {
        let r = p.get(&format!("/r{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend().as_deref(), Some("f2"));
    }
    assert_eq!(f1.count(), 3, "every other read hit f1 first");
    assert!(p
        .metrics()
        .await
        .contains("leaderproxy_reads_retried_total 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_failing_follower_but_never_more_than_half() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    f1.state.fail_status.store(500, Ordering::Relaxed);
    f2.state.fail_status.store(500, Ordering::Relaxed);
    let p = led_by(&[&l, &f1, &f2],
        "reads: { retry: false }\npassive: { consecutive_failures: 3, base_ejection: 10s, max_ejection_percent: 50 }\n", "l").await;
    for i in 0..12 {
        p.get(&format!("/r{i}")).await;
    }
    let r = p.routing().await;
    let ejected: Vec<bool> = (1..3)
        .map(|i| r["backends"][i]["ejected"].as_bool().unwrap())
        .collect();
    assert_eq!(
        ejected.iter().filter(|e| **e).count(),
        1,
        "exactly one of two ejected: {ejected:?}"
    );
    assert_eq!(
        r["leader"]["name"], "l",
        "ejection never decides the leader"
    );
    assert!(p.metrics().await.contains("leaderproxy_ejections_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_is_bounded_by_max_held() {
    let f = Fake::start("f", Role::Follower).await;
    let p = Proxy::start(&config_for(&[&f], "writes: { hold: 1s, max_held: 2 }\n")).await;
    let (a, b, c) = tokio::join!(p.put("/1"), p.put("/2"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.put("/3").await
    });
    assert_eq!(c.status, 503);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&c.body).unwrap()["error"],
        "hold_queue_full"
    );
    assert_eq!((a.status, b.status), (503, 503));
}

/// A leader probe that started before the request path fenced the leader
/// answers "leader" after the fence: that answer predates the evidence and
/// must not lift the fence (only a probe begun after it can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_from_a_probe_begun_before_the_fence_does_not_unfence() {
    let [a, b] = nodes(["a", "b"]).await;
    let p = led_by(
        &[&a, &b],
        "leader: { path: /leader, interval: 2s, timeout: 1s, expect: { status: [200] } }\n\
         writes: { hold: 300ms, not_leader: { status: [403] } }\n",
        "a",
    )
    .await;
    // The next leader probe of a is answered 400ms after it arrives: it
    // claims (a keeps claiming in every probe answer) ...
    *a.state.claim_override.lock().unwrap() = Some(true);
    a.state.leader_probe_delay_ms.store(400, Ordering::Relaxed);
    let started = a.state.leader_probes_started.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(3),
        "a leader probe of a in flight",
        || async { a.state.leader_probes_started.load(Ordering::Relaxed) > started },
    )
    .await;
    // ... every later one times out (no evidence either way) ...
    a.state.leader_probe_delay_ms.store(5000, Ordering::Relaxed);
    // ... and meanwhile a refuses a write as not leader: fenced.
    a.set_role(Role::Follower);
    a.set_refusal(Refusal::Status403);
    let r = p.req("POST", "/k", "v").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(a.count_method("POST"), 1);
    // The probe in flight answers "leader" once the fence is set.
    wait_until(Duration::from_secs(3), "the slow probe handled", || async {
        p.backend_status("a").await["last_probe"]["leader_latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 400.0)
    })
    .await;
    assert_eq!(
        p.routing().await["leader"],
        serde_json::Value::Null,
        "a claim begun before the fence lifted it"
    );
}

/// A read that must see the session's write goes to the leader; when the
/// leader dies under it, the read (safe to send again) is held for the
/// next leader like a write, not answered 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_the_leader_is_held_through_a_failover() {
    let [a, b] = nodes(["a", "b"]).await;
    let p = led_by(&[&a, &b], "reads: { consistency: read_your_writes, session: { cookie: sid }, after_write_window: 10s }\n\
         writes: { hold: 3s }\n", "a").await;
    let with_session = |method: &str| {
        http::Request::builder()
            .method(method)
            .uri(format!("http://{}/k", p.addr))
            .header("cookie", "sid=me")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"v")))
            .unwrap()
    };
    let w = p.send(with_session("PUT")).await;
    assert_eq!(w.backend().as_deref(), Some("a"), "{}", w.text());
    a.state.delay_ms.store(400, Ordering::Relaxed);
    let kill = async {
        // The read has reached `a` (it is sleeping on it) when `a` dies.
        wait_until(Duration::from_secs(2), "read reached a", || async {
            a.count_method("GET") == 1
        })
        .await;
        a.kill();
        b.set_role(Role::Leader);
    };
    let (r, ()) = tokio::join!(p.send(with_session("GET")), kill);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend().as_deref(), Some("b"));
}

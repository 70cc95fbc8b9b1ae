//! Read-your-writes and bounded lag against an in-process replicated
//! cluster whose followers apply writes late (tests/support/replica.rs):
//! a read right after a write reaches a follower that does not have it yet
//! unless the proxy holds the read to a backend whose probed position has
//! caught up.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/replica.rs"]
mod replica;

use std::collections::HashMap;
use std::time::Duration;

use admin::{wait_backend, wait_every_backend};
use bytes::Bytes;
use fake::{backend_in, wait_until, Proxy, Reply};
use http_body_util::Full;
use replica::Cluster;

/// How long the positions, lag and health in the admin API may take to show a change.
const WITHIN: Duration = Duration::from_secs(3);

const POSITIONS: &str =
    "positions:\n  probe: { path: /position, header: X-Index }\n  response: { header: X-Index }\n";

/// A proxy on `c` with the config's `extra` lines, once it knows `l` leads.
async fn proxy_on(c: &Cluster, extra: &str) -> Proxy {
    let p = Proxy::start(&c.config(extra)).await;
    p.wait_leader(Some("l"), WITHIN).await;
    p
}

async fn send(
    p: &Proxy,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, String)],
) -> Reply {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{}", p.addr, path));
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    p.send(b.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Writes `pairs` keys, each read back at once in the same session (8
/// sessions, concurrently); returns how many reads missed their write and
/// where the reads went.
async fn write_then_read(
    p: &Proxy,
    pairs: usize,
    prefix: &str,
    session: bool,
) -> (usize, HashMap<String, usize>) {
    let prefix = prefix.to_string();
    write_then_read_at(p, pairs, move |i| format!("/kv/{prefix}{i}"), session).await
}

/// [`write_then_read`] with the path of pair `i` from `path`.
async fn write_then_read_at(
    p: &Proxy,
    pairs: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
    session: bool,
) -> (usize, HashMap<String, usize>) {
    let path = std::sync::Arc::new(path);
    let mut tasks = Vec::new();
    for s in 0..8 {
        let (addr, client) = (p.addr, p.client.clone());
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut missed = 0;
            let mut went: HashMap<String, usize> = HashMap::new();
            for i in (s..pairs).step_by(8) {
                let sid = format!("s{s}");
                let key = path(i);
                let mut w = http::Request::builder()
                    .method("PUT")
                    .uri(format!("http://{addr}{key}"));
                let mut r = http::Request::builder().uri(format!("http://{addr}{key}"));
                if session {
                    w = w.header("x-session-id", &sid);
                    r = r.header("x-session-id", &sid);
                }
                let wr = client
                    .request(w.body(Full::new(Bytes::from(format!("v{i}")))).unwrap())
                    .await
                    .unwrap();
                assert_eq!(wr.status(), 200);
                let rr = client
                    .request(r.body(Full::new(Bytes::new())).unwrap())
                    .await
                    .unwrap();
                let backend = rr.headers()["x-leaderproxy-backend"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let body = http_body_util::BodyExt::collect(rr.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                if body != format!("v{i}").as_bytes() {
                    missed += 1;
                }
                *went.entry(backend).or_default() += 1;
            }
            (missed, went)
        }));
    }
    let mut missed = 0;
    let mut went: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let (m, w) = t.await.unwrap();
        missed += m;
        for (k, v) in w {
            *went.entry(k).or_default() += v;
        }
    }
    (missed, went)
}

/// The issue's proof: 1,000 write-then-read pairs with read_your_writes all
/// see their write, while the same pairs with eventual reads miss; reads
/// whose write has reached a follower are still served by followers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_sees_every_write_while_plain_reads_miss() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::from_millis(150)).await;
    let ryw = proxy_on(&c, &format!(
        "{POSITIONS}reads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id }} }}\n"
    )).await;
    let (missed, went) = write_then_read(&ryw, 1000, "a", true).await;
    println!("read_your_writes: 1000 pairs, {missed} missed, reads went to {went:?}");
    assert_eq!(missed, 0, "a read missed its session's write");

    let plain = proxy_on(&c, "").await;
    let (plain_missed, plain_went) = write_then_read(&plain, 200, "b", true).await;
    println!("eventual: 200 pairs, {plain_missed} missed, reads went to {plain_went:?}");
    assert!(
        plain_missed > 100,
        "plain reads must show the hazard: {plain_missed} of 200 missed"
    );

    // Once the followers' probed positions pass a session's last write,
    // that session's reads go back to the followers.
    let sid = ("x-session-id", "s0".to_string());
    wait_until(WITHIN, "a fresh follower serves session s0", || async {
        let r = send(&ryw, "GET", "/kv/a0", "", std::slice::from_ref(&sid)).await;
        assert_eq!(r.text(), "v0");
        r.backend().as_deref() != Some("l")
    })
    .await;
    let m = ryw.metrics().await;
    let via_follower = metric(&m, "leaderproxy_fresh_reads_total{target=\"follower\"}");
    let via_leader = metric(&m, "leaderproxy_fresh_reads_total{target=\"leader\"}");
    println!("fresh reads: {via_follower} via followers, {via_leader} via the leader");
    assert!(via_follower >= 1.0 && via_leader >= 1.0);
}

/// Pair `i` of a mixed run: each session alternates a counted `/kv/` key
/// and an uncounted `/other/` key (a second API, like etcd's v3 under the
/// v2 store's index).
fn mixed(tag: &'static str) -> impl Fn(usize) -> String + Send + Sync + 'static {
    move |i| {
        let api = if (i / 8) % 2 == 0 { "kv" } else { "other" };
        format!("/{api}/{tag}{i}")
    }
}

/// Positions must count the writes they guard: when `/other/` writes do not
/// move the probed index, read-your-writes over every path misses `/other/`
/// writes (the index after them is one the followers already have); with
/// `positions.scope: [/kv/]` the `/other/` reads go to the leader and none
/// misses, while `/kv/` reads still reach followers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_outside_the_positions_scope_go_to_the_leader() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::from_millis(150)).await;
    let reads = "reads: { consistency: read_your_writes, session: { header: X-Session-Id } }\n";
    let unscoped = proxy_on(&c, &format!("{POSITIONS}{reads}")).await;
    let (missed, went) = write_then_read_at(&unscoped, 48, |i| format!("/other/u{i}"), true).await;
    println!("no scope: 48 /other/ pairs, {missed} missed, reads went to {went:?}");
    assert!(missed > 0, "uncounted writes must show the hazard");

    let scoped = proxy_on(&c, &format!("{POSITIONS}  scope: [/kv/]\n{reads}")).await;
    let (missed, went) = write_then_read_at(&scoped, 400, mixed("s"), true).await;
    println!("scope [/kv/]: 400 mixed pairs, {missed} missed, reads went to {went:?}");
    assert_eq!(missed, 0, "a read missed its session's write");
    // Writes outside the scope leave no position; reads outside it go to
    // the leader even without a session, and /kv/ reads to followers.
    let w = send(&scoped, "PUT", "/other/x", "1", &[]).await;
    assert_eq!(w.status, 200);
    assert!(w.headers.get("x-leaderproxy-position").is_none());
    for _ in 0..6 {
        let r = send(&scoped, "GET", "/other/x", "", &[]).await;
        assert_eq!(r.backend().as_deref(), Some("l"));
    }
    wait_until(WITHIN, "a /kv/ read on a follower", || async {
        send(&scoped, "GET", "/kv/s0", "", &[])
            .await
            .backend()
            .as_deref()
            != Some("l")
    })
    .await;
}

/// Without a session, the write's `x-leaderproxy-position` sent back on a
/// read gives the same guarantee; an absurd position only sends the read to
/// the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_position_header_is_a_checked_lower_bound() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::from_millis(300)).await;
    let p = proxy_on(
        &c,
        &format!("{POSITIONS}reads: {{ consistency: read_your_writes }}\n"),
    )
    .await;
    for i in 0..50 {
        let w = send(&p, "PUT", &format!("/kv/h{i}"), &format!("v{i}"), &[]).await;
        let pos = w.headers["x-leaderproxy-position"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            pos,
            w.headers["x-index"].to_str().unwrap(),
            "the answer's own position"
        );
        let r = send(
            &p,
            "GET",
            &format!("/kv/h{i}"),
            "",
            &[("x-leaderproxy-position", pos)],
        )
        .await;
        assert_eq!(
            r.text(),
            format!("v{i}"),
            "read {i} with the position header"
        );
    }
    // Without the header nothing is promised: right after a write the
    // followers (300 ms behind) do not have it.
    let w = send(&p, "PUT", "/kv/nohdr", "new", &[]).await;
    assert_eq!(w.status, 200);
    let r = send(&p, "GET", "/kv/nohdr", "", &[]).await;
    assert_ne!(r.backend().as_deref(), Some("l"));
    assert_eq!(
        r.status, 404,
        "a plain read right after the write misses it"
    );
    // A position no backend has reached goes to the leader, and only there.
    for _ in 0..10 {
        let r = send(
            &p,
            "GET",
            "/kv/h1",
            "",
            &[("x-leaderproxy-position", u64::MAX.to_string())],
        )
        .await;
        assert_eq!((r.status, r.backend().as_deref()), (200, Some("l")));
    }
}

/// When write answers carry no position, the leader's position is probed
/// after the acknowledgement, once for a whole batch of concurrent writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_position_in_the_answer_the_leader_is_probed_after_the_ack() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::from_millis(200)).await;
    c.node("l")
        .index_in_answers
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let p = proxy_on(&c, "positions: { probe: { path: /position, header: X-Index } }\nreads: { consistency: read_your_writes, session: { header: X-Session-Id } }\n").await;
    let (missed, went) = write_then_read(&p, 200, "c", true).await;
    println!("probe after ack: 200 pairs, {missed} missed, reads went to {went:?}");
    assert_eq!(missed, 0);
    // 64 concurrent writes: their probes are batched.
    let before = metric(
        &p.metrics().await,
        "leaderproxy_write_position_probes_total{backend=\"l\"}",
    );
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (addr, client) = (p.addr, p.client.clone());
        tasks.push(tokio::spawn(async move {
            let req = http::Request::builder()
                .method("PUT")
                .uri(format!("http://{addr}/kv/batch{i}"))
                .body(Full::new(Bytes::from_static(b"x")))
                .unwrap();
            let r = client.request(req).await.unwrap();
            assert_eq!(r.status(), 200);
            // Absent only when the probe failed (its timeout is the leader
            // probe's, 40ms here, which a loaded machine can miss); the
            // session then falls back to reads.after_write_window.
            r.headers()
                .get("x-leaderproxy-position")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap())
        }));
    }
    let mut known = 0;
    for t in tasks {
        if let Some(pos) = t.await.unwrap() {
            assert!(pos >= 201, "position {pos} does not cover the write");
            known += 1;
        }
    }
    println!("{known} of 64 concurrent writes got a position");
    assert!(known > 0);
    let probes = metric(
        &p.metrics().await,
        "leaderproxy_write_position_probes_total{backend=\"l\"}",
    ) - before;
    println!("64 concurrent writes took {probes} position probes");
    assert!(
        (1.0..64.0).contains(&probes),
        "{probes} probes for 64 writes"
    );
}

/// With no positions at all, a session's reads stay on the leader for
/// `after_write_window` after its write; other sessions keep the followers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_positions_a_session_reads_from_the_leader_for_the_window() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::from_millis(100)).await;
    let p = proxy_on(&c, "reads: { consistency: read_your_writes, session: { cookie: sid }, after_write_window: 700ms }\n").await;
    let me = ("cookie", "a=b; sid=me".to_string());
    let other = ("cookie", "sid=other".to_string());
    // The proxy's window starts between the write's sending and its
    // answer: only the sending is a bound the client can take (the answer
    // came 100 ms late once under the whole suite's load).
    let sent = std::time::Instant::now();
    let w = send(&p, "PUT", "/kv/w", "1", std::slice::from_ref(&me)).await;
    assert_eq!(w.status, 200);
    assert!(
        w.headers.get("x-leaderproxy-position").is_none(),
        "no position is known"
    );
    for _ in 0..10 {
        // Sent well inside the window (200 ms to spare for reaching the proxy).
        let inside = sent.elapsed() < Duration::from_millis(500);
        let r = send(&p, "GET", "/kv/w", "", std::slice::from_ref(&me)).await;
        if inside {
            assert_eq!(
                (r.backend().as_deref(), r.text().as_str()),
                (Some("l"), "1")
            );
        }
        let o = send(&p, "GET", "/kv/w", "", std::slice::from_ref(&other)).await;
        assert_ne!(
            o.backend().as_deref(),
            Some("l"),
            "other sessions use the followers"
        );
    }
    wait_until(WITHIN, "the window ends", || async {
        send(&p, "GET", "/kv/w", "", std::slice::from_ref(&me))
            .await
            .backend()
            .as_deref()
            != Some("l")
    })
    .await;
    assert!(sent.elapsed() >= Duration::from_millis(700));
}

/// A follower more than `max_lag` behind gets no reads (and says so in
/// /admin/routing and the lag gauge) until it catches up; with every
/// follower behind, reads go to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_over_max_lag_get_no_reads_until_they_catch_up() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::ZERO).await;
    let p = proxy_on(&c, &format!("{POSITIONS}reads: {{ max_lag: 5 }}\n")).await;
    c.node("f1").freeze(true);
    for i in 0..20 {
        assert_eq!(
            send(&p, "PUT", &format!("/kv/m{i}"), "x", &[]).await.status,
            200
        );
    }
    wait_until(
        WITHIN,
        "f1 lagging and f2 caught up in /admin/routing",
        || async {
            let r = p.routing().await;
            let b = |name: &str| backend_in(&r, name);
            let (f1, f2) = (b("f1"), b("f2"));
            f1["lagging"] == true
                && f1["lag"].as_u64().is_some_and(|l| l >= 20)
                && f2["lagging"] == false
                && f2["lag"] == 0
        },
    )
    .await;
    let m = p.metrics().await;
    assert!(
        metric(&m, "leaderproxy_backend_lag_positions{backend=\"f1\"}") >= 20.0,
        "{m}"
    );
    let mut went = HashMap::<String, usize>::new();
    for _ in 0..40 {
        *went
            .entry(send(&p, "GET", "/kv/m1", "", &[]).await.backend().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        went.get("f1"),
        None,
        "no reads to the lagging follower: {went:?}"
    );
    assert_eq!(went.get("f2"), Some(&40));

    c.node("f2").freeze(true);
    for i in 0..10 {
        send(&p, "PUT", &format!("/kv/n{i}"), "x", &[]).await;
    }
    wait_until(WITHIN, "reads fall back to the leader", || async {
        send(&p, "GET", "/kv/m1", "", &[])
            .await
            .backend()
            .as_deref()
            == Some("l")
    })
    .await;

    c.node("f1").freeze(false);
    c.node("f2").freeze(false);
    wait_until(WITHIN, "both followers back in rotation", || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            seen.insert(send(&p, "GET", "/kv/m1", "", &[]).await.backend().unwrap());
        }
        seen.contains("f1") && seen.contains("f2") && !seen.contains("l")
    })
    .await;
}

/// Lag is measured from this round's answers: when the leader's position
/// probe fails, a follower frozen at the leader's last known position is
/// not "0 behind" it (it lags, and reads go to the leader), and with no
/// position read at all no follower counts as current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_leaders_position_this_round_followers_count_as_lagging() {
    let c = Cluster::start(&["l", "f1"], Duration::ZERO).await;
    let p = proxy_on(&c, &format!("{POSITIONS}reads: {{ max_lag: 10 }}\n")).await;
    for i in 0..10 {
        send(&p, "PUT", &format!("/kv/a{i}"), "x", &[]).await;
    }
    wait_backend(&p, WITHIN, "f1", "f1 caught up and serving", |f1| {
        f1["lag"] == 0 && f1["position"] == 10
    })
    .await;
    c.node("l").fail_positions(true);
    c.node("f1").freeze(true);
    for i in 0..30 {
        send(&p, "PUT", &format!("/kv/b{i}"), "x", &[]).await;
    }
    wait_backend(
        &p,
        WITHIN,
        "f1",
        "f1 lagging without the leader's position",
        |f1| f1["lagging"] == true && f1["lag"].is_null(),
    )
    .await;
    for _ in 0..6 {
        let r = send(&p, "GET", "/kv/b29", "", &[]).await;
        assert_eq!(r.backend().as_deref(), Some("l"), "a read went to f1");
    }
    // The leader answers again: f1's lag is measured again.
    c.node("l").fail_positions(false);
    wait_backend(&p, WITHIN, "f1", "f1 30 behind", |b| b["lag"] == 30).await;

    // No position ever read: nobody is current under max_lag.
    let c = Cluster::start(&["l", "f1", "f2"], Duration::ZERO).await;
    for n in &c.nodes {
        n.fail_positions(true);
    }
    let p = proxy_on(&c, &format!("{POSITIONS}reads: {{ max_lag: 10 }}\n")).await;
    for _ in 0..6 {
        let r = send(&p, "GET", "/kv/x", "", &[]).await;
        assert_eq!(
            r.backend().as_deref(),
            Some("l"),
            "a read went to a follower"
        );
    }
    assert_eq!(p.backend_status("f1").await["lagging"], true);
}

/// A cluster `l`, `f1`, `f2` whose followers apply writes `delay` late and
/// whose write answers carry no position, behind a proxy with probed
/// positions only and read_your_writes by `X-Session-Id` (plus `reads`
/// keys `more`), `l` leading.
async fn without_positions_in_answers(delay: Duration, more: &str) -> (Cluster, Proxy) {
    let c = Cluster::start(&["l", "f1", "f2"], delay).await;
    for n in &c.nodes {
        n.index_in_answers
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    let p = proxy_on(&c, &format!(
        "positions: {{ probe: {{ path: /position, header: X-Index }} }}\nreads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id }}{more} }}\n"
    )).await;
    (c, p)
}

/// A write answered by a deposed leader that forwarded it (rqlite, Consul)
/// is known at the larger of that backend's and the current write leader's
/// positions probed after the acknowledgement: the deposed one has not
/// applied it yet, and its position alone let the next read go to a
/// follower without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forwarded_by_a_deposed_leader_counts_the_new_leaders_position() {
    let (c, p) = without_positions_in_answers(Duration::from_secs(5), "").await;
    c.node("l")
        .forward_writes(Some(Duration::from_millis(1500)));
    let sid = ("x-session-id", "s".to_string());
    let (addr, client) = (p.addr, p.client.clone());
    let write = tokio::spawn(async move {
        let req = http::Request::put(format!("http://{addr}/kv/k"))
            .header("x-session-id", "s")
            .body(Full::new(Bytes::from_static(b"v")))
            .unwrap();
        client.request(req).await.unwrap()
    });
    wait_until(Duration::from_secs(2), "the write reached l", || async {
        c.log_len() == 1
    })
    .await;
    // l is deposed while it forwards the write; the proxy follows f1.
    c.node("l").set_leader(false);
    c.node("f1").set_leader(true);
    p.wait_leader(Some("f1"), Duration::from_secs(1)).await;
    assert!(
        !write.is_finished(),
        "the answer must come after the change"
    );
    let w = write.await.unwrap();
    assert_eq!(w.status(), 200);
    assert_eq!(w.headers()["x-leaderproxy-position"], "1");
    for _ in 0..6 {
        let r = send(&p, "GET", "/kv/k", "", std::slice::from_ref(&sid)).await;
        assert_eq!(r.text(), "v", "read on {:?}", r.backend());
        assert_eq!(r.backend().as_deref(), Some("f1"));
    }
}

/// With positions probed, a write whose position stays unknown (the probe
/// after it failed) keeps its session on the leader until a position round
/// that started after it has read the leader's position — not just for
/// `after_write_window` — and then its reads go to followers that have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_position_holds_the_session_until_a_later_round_reads_the_leader() {
    let (c, p) =
        without_positions_in_answers(Duration::from_millis(300), ", after_write_window: 10ms")
            .await;
    c.node("l").fail_positions(true);
    let sid = ("x-session-id", "s".to_string());
    let w = send(&p, "PUT", "/kv/k", "v", std::slice::from_ref(&sid)).await;
    assert_eq!(w.status, 200);
    assert!(w.headers.get("x-leaderproxy-position").is_none());
    let until = std::time::Instant::now() + Duration::from_millis(250);
    let mut reads = 0;
    while std::time::Instant::now() < until && reads < 200 {
        let r = send(&p, "GET", "/kv/k", "", std::slice::from_ref(&sid)).await;
        assert_eq!(r.text(), "v", "read {reads} on {:?}", r.backend());
        assert_eq!(r.backend().as_deref(), Some("l"));
        reads += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.node("l").fail_positions(false);
    wait_until(
        WITHIN,
        "a follower that has the write serves the session",
        || async {
            let r = send(&p, "GET", "/kv/k", "", std::slice::from_ref(&sid)).await;
            assert_eq!(r.text(), "v", "read on {:?}", r.backend());
            r.backend().as_deref() != Some("l")
        },
    )
    .await;
}

/// A position that goes down is not trusted: the decrease is counted and
/// logged and the old, higher position is dropped; a backend that goes
/// unhealthy forgets its position, so one that comes back (resynced, its
/// position probe still failing) is not fresh for reads that must see a
/// write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_that_go_down_or_go_unhealthy_are_forgotten() {
    let c = Cluster::start(&["l", "f1", "f2"], Duration::ZERO).await;
    let p = proxy_on(&c, &format!(
        "{POSITIONS}reads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id }} }}\n"
    )).await;
    for i in 0..10 {
        send(&p, "PUT", &format!("/kv/d{i}"), "x", &[]).await;
    }
    wait_every_backend(&p, WITHIN, "every position at 10", |b| b["position"] == 10).await;

    c.node("f1").override_position(Some(3));
    wait_until(WITHIN, "f1's decrease counted", || async {
        let m = p.metrics().await;
        metric(
            &m,
            "leaderproxy_backend_position_decreases_total{backend=\"f1\"}",
        ) >= 1.0
    })
    .await;
    wait_backend(&p, WITHIN, "f1", "f1 at 3", |b| b["position"] == 3).await;
    c.node("f1").override_position(None);

    let f2 = c.node("f2");
    f2.fail_positions(true);
    f2.set_healthy(false);
    wait_backend(&p, WITHIN, "f2", "f2 down, its position forgotten", |b| {
        b["healthy"] == false && b["position"].is_null()
    })
    .await;
    f2.set_healthy(true);
    wait_backend(&p, WITHIN, "f2", "f2 healthy again", |b| {
        b["healthy"] == true
    })
    .await;
    assert!(p.backend_status("f2").await["position"].is_null());
    let at = ("x-leaderproxy-position", "10".to_string());
    for _ in 0..20 {
        let r = send(&p, "GET", "/kv/d9", "", std::slice::from_ref(&at)).await;
        assert_ne!(
            r.backend().as_deref(),
            Some("f2"),
            "f2's old position was trusted"
        );
    }
}

/// Sessions live in a bounded map: past the capacity the least recently
/// used is forgotten and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_bounded_and_evictions_counted() {
    let c = Cluster::start(&["l", "f1"], Duration::ZERO).await;
    let p = proxy_on(&c, &format!(
        "{POSITIONS}reads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id, capacity: 2 }} }}\n"
    )).await;
    for s in ["a", "b", "c", "d"] {
        let w = send(&p, "PUT", "/kv/e", s, &[("x-session-id", s.to_string())]).await;
        assert_eq!(w.status, 200);
    }
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "leaderproxy_session_evictions_total"),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "leaderproxy_sessions "), 2.0);
}

/// A reload that adds `positions` starts the position probes (and one
/// that turns on read_your_writes applies to the next request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_starts_position_probes() {
    let c = Cluster::start(&["l", "f1"], Duration::from_millis(300)).await;
    let p = proxy_on(&c, "").await;
    assert!(p.routing().await["backends"][0]["position"].is_null());
    assert_eq!(
        c.node("l")
            .position_probes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let ryw = c.config(&format!(
        "{POSITIONS}reads: {{ consistency: read_your_writes }}\n"
    ));
    assert_eq!(p.reload_with(&ryw).await.status, 200);
    wait_every_backend(&p, WITHIN, "positions in /admin/routing", |b| {
        b["position"].is_u64()
    })
    .await;
    let w = send(&p, "PUT", "/kv/r", "1", &[]).await;
    let pos = w.headers["x-leaderproxy-position"]
        .to_str()
        .unwrap()
        .to_string();
    let r = send(&p, "GET", "/kv/r", "", &[("x-leaderproxy-position", pos)]).await;
    assert_eq!(
        (r.backend().as_deref(), r.text().as_str()),
        (Some("l"), "1")
    );
}

/// `leaderproxy_sessions` counts sessions, not writes: a session that
/// writes again is the same entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_gauge_counts_sessions_not_writes() {
    let c = Cluster::start(&["l", "f1"], Duration::ZERO).await;
    let p = proxy_on(&c, &format!(
        "{POSITIONS}reads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id, capacity: 10 }} }}\n"
    )).await;
    for i in 0..12 {
        let s = ["a", "b", "c"][i % 3].to_string();
        let w = send(&p, "PUT", "/kv/g", "x", &[("x-session-id", s)]).await;
        assert_eq!(w.status, 200);
    }
    let m = p.metrics().await;
    assert_eq!(metric(&m, "leaderproxy_sessions "), 3.0, "{m}");
    assert_eq!(metric(&m, "leaderproxy_session_evictions_total"), 0.0);
}

/// A reload that changes `reads.session.capacity` applies at once (the
/// remembered sessions are forgotten, as README "Consistency" says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_session_capacity() {
    let c = Cluster::start(&["l", "f1"], Duration::ZERO).await;
    let cfg = |cap: usize| {
        c.config(&format!(
            "{POSITIONS}reads: {{ consistency: read_your_writes, session: {{ header: X-Session-Id, capacity: {cap} }} }}\n"
        ))
    };
    let p = Proxy::start(&cfg(2)).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    for s in ["a", "b"] {
        let w = send(&p, "PUT", "/kv/c", s, &[("x-session-id", s.to_string())]).await;
        assert_eq!(w.status, 200);
    }
    assert_eq!(metric(&p.metrics().await, "leaderproxy_sessions "), 2.0);
    assert_eq!(p.reload_with(&cfg(10)).await.status, 200);
    assert_eq!(metric(&p.metrics().await, "leaderproxy_sessions "), 0.0);
    for s in ["a", "b", "c", "d"] {
        send(&p, "PUT", "/kv/c", s, &[("x-session-id", s.to_string())]).await;
    }
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "leaderproxy_sessions "),
        4.0,
        "capacity 10 now holds 4"
    );
    assert_eq!(metric(&m, "leaderproxy_session_evictions_total"), 0.0);
}

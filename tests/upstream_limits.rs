//! Upstream connections are bounded per backend (issue 16):
//! `backends[].max_connections` (default
//! `limits.max_upstream_connections_per_backend`). A request that finds
//! every connection busy waits up to `timeouts.connect` for one, then gets
//! 503 `upstream_busy`, counted per backend; a write refused that way was
//! not sent and does not fence the leader.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fake::{config_with, h2_over, Fake, Proxy, Role};
use nodes::nodes;

/// The distinct upstream connections `f` saw requests (not probes) on.
fn conns_used(f: &Fake) -> usize {
    f.seen()
        .iter()
        .map(|s| s.conn)
        .collect::<HashSet<_>>()
        .len()
}

/// The value of one series (`name{labels}`) in a Prometheus scrape; 0 when absent.
fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `n` concurrent PUTs of `path`: their statuses and `error` codes.
async fn concurrent_puts(p: &Arc<Proxy>, n: usize, path: &str) -> Vec<(u16, String)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let p = p.clone();
        let path = path.to_string();
        set.spawn(async move {
            let r = p.req("PUT", &path, "v").await;
            let code = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_default();
            (r.status, code)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_bounded_with_a_queue_then_503_upstream_busy() {
    let l = Fake::start("l", Role::Leader).await;
    let yaml = config_with(
        &[(&l, "max_connections: 2")],
        "workers: 1\ntimeouts: { connect: 300ms }\n",
    )
    .replace("workers: 2\n", "");
    let p = Arc::new(Proxy::start(&yaml).await);
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    // Queue: twelve quick writes over two connections all get through.
    let quick = concurrent_puts(&p, 12, "/sleep/20").await;
    assert!(quick.iter().all(|(s, _)| *s == 200), "{quick:?}");
    assert!(
        conns_used(&l) <= 2,
        "{} upstream connections",
        conns_used(&l)
    );

    // Full: two slow writes hold both connections longer than
    // timeouts.connect; the others wait 300ms, then get 503 upstream_busy.
    l.clear();
    let generation = p.routing().await["leader_generation"].clone();
    let slow = concurrent_puts(&p, 6, "/sleep/1500").await;
    let ok = slow.iter().filter(|(s, _)| *s == 200).count();
    let busy = slow
        .iter()
        .filter(|(s, c)| *s == 503 && c == "upstream_busy")
        .count();
    assert_eq!((ok, busy), (2, 4), "{slow:?}");
    assert_eq!(l.count(), 2, "a busy write reached the backend");
    assert!(
        conns_used(&l) <= 2,
        "{} upstream connections",
        conns_used(&l)
    );
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "leaderproxy_upstream_busy_total{backend=\"l\"}"),
        4.0,
        "{m}"
    );
    // Not sent, not the backend's fault: no fence, no re-send, the leader stays.
    assert_eq!(metric(&m, "leaderproxy_writes_resent_total"), 0.0, "{m}");
    let r = p.routing().await;
    assert_eq!(r["leader"]["name"], "l");
    assert_eq!(r["leader_generation"], generation, "the leader was fenced");
    assert_eq!(p.put("/after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_h2_streams_share_the_bounded_upstream_connections() {
    use http_body_util::{BodyExt, Full};
    let l = Fake::start("l", Role::Leader).await;
    let yaml = config_with(&[(&l, "max_connections: 4")], "timeouts: { connect: 2s }\n");
    let p = Proxy::start(&yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let c = h2_over(s).await;
    // 100 streams on one client connection: before the limit, one upstream
    // connection each.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut c = c.clone();
        let req = http::Request::put(format!("http://{}/sleep/20?{i}", p.addr))
            .version(http::Version::HTTP_2)
            .body(Full::new(bytes::Bytes::from_static(b"v")))
            .unwrap();
        set.spawn(async move {
            let r = c.send_request(req).await.unwrap();
            let status = r.status().as_u16();
            r.into_body().collect().await.unwrap();
            status
        });
    }
    while let Some(s) = set.join_next().await {
        assert_eq!(s.unwrap(), 200);
    }
    assert_eq!(l.count(), 100);
    assert!(
        conns_used(&l) <= 4,
        "{} upstream connections",
        conns_used(&l)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_follower_is_not_a_failed_one() {
    let [l, f1, f2, f3] = nodes(["l", "f1", "f2", "f3"]).await;
    let one = "max_connections: 1";
    // ip_hash: every read of this client goes to the same follower.
    let yaml = config_with(
        &[(&l, ""), (&f1, one), (&f2, one), (&f3, one)],
        "workers: 1\ntimeouts: { connect: 200ms }\n\
         passive: { consecutive_failures: 1, max_ejection_percent: 100 }\n\
         reads: { policy: ip_hash, retry: false, fallback_to_leader: false }\n",
    )
    .replace("workers: 2\n", "");
    let p = Arc::new(Proxy::start(&yaml).await);
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    fake::wait_until(Duration::from_secs(3), "three followers", || async {
        p.routing().await["followers"].as_array().unwrap().len() == 3
    })
    .await;
    let home = p.get("/first").await.backend().unwrap();
    // One slow read holds the follower's only connection; the next one is
    // refused busy.
    let slow = {
        let p = p.clone();
        tokio::spawn(async move { p.get("/sleep/1000").await })
    };
    let fakes = [&f1, &f2, &f3];
    fake::wait_until(
        Duration::from_secs(2),
        "the slow read at a follower",
        || async { fakes.iter().map(|f| f.count()).sum::<usize>() == 2 },
    )
    .await;
    let r = p.get("/busy").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("upstream_busy"), "{}", r.text());
    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.backend()), (200, Some(home.clone())));
    // With passive.consecutive_failures: 1 a counted failure would have
    // ejected it: it still serves this client's reads.
    let r = p.get("/after").await;
    assert_eq!((r.status, r.backend()), (200, Some(home)));
}

//! `discovery.members.kind: patroni` against in-process fake Patroni nodes:
//! each answers `GET /cluster` with the member list the test sets (the
//! shape of Patroni's REST API: `members[].name`, `api_url`, `host`/`port`
//! of PostgreSQL), `GET /leader` 200 on the leader and 503 elsewhere (as
//! Patroni does), `GET /health` 200. The proxy knows only p1; it discovers
//! p2 and p3, then follows the list from 3 to 2 members; a broken answer
//! keeps the last set.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/table.rs"]
mod table;

#[path = "support/dns.rs"]
mod dns;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fake::{wait_until, Proxy};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use table::{backend_names, follower_set as followers, name_set as names};
use tokio::net::TcpListener;

/// One fake Patroni node; every node shares the `/cluster` body.
struct Node {
    name: String,
    addr: SocketAddr,
    leader: Arc<AtomicBool>,
    /// Requests other than `/health`, `/leader`, `/cluster`.
    served: Arc<AtomicUsize>,
    /// `GET /cluster` requests.
    asked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    name: String,
    leader: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    asked: Arc<AtomicUsize>,
    cluster: Arc<Mutex<String>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    match req.uri().path() {
        "/health" => reply(200, "{\"state\":\"running\"}".into()),
        "/leader" if leader.load(Ordering::Relaxed) => reply(200, "{\"role\":\"master\"}".into()),
        "/leader" => reply(503, "{\"role\":\"replica\"}".into()),
        "/cluster" => {
            asked.fetch_add(1, Ordering::Relaxed);
            let body = cluster.lock().unwrap().clone();
            reply(200, body)
        }
        _ => {
            served.fetch_add(1, Ordering::Relaxed);
            reply(200, format!("{name} {}", req.method()))
        }
    }
}

impl Node {
    async fn start(name: &str, leader: bool, cluster: Arc<Mutex<String>>) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let leader = Arc::new(AtomicBool::new(leader));
        let served = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicUsize::new(0));
        let (n, l, s, a) = (
            name.to_string(),
            leader.clone(),
            served.clone(),
            asked.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, l, s, a, c) = (n.clone(), l.clone(), s.clone(), a.clone(), cluster.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        answer(n.clone(), l.clone(), s.clone(), a.clone(), c.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Node {
            name: name.to_string(),
            addr,
            leader,
            served,
            asked,
            task,
        }
    }
}

/// `GET /cluster` as Patroni 3 answers it, listing `members` (the first
/// one leads). `port` is PostgreSQL's, which the proxy must not use.
fn cluster_body(members: &[&Node]) -> String {
    let list: Vec<String> = members
        .iter()
        .map(|m| {
            let (role, state) = if m.leader.load(Ordering::Relaxed) {
                ("leader", "running")
            } else {
                ("replica", "streaming")
            };
            format!(
                "{{\"name\":\"{}\",\"role\":\"{role}\",\"state\":\"{state}\",\
                 \"api_url\":\"http://{}/patroni\",\"host\":\"127.0.0.1\",\"port\":5432,\
                 \"timeline\":3,\"lag\":0}}",
                m.name, m.addr
            )
        })
        .collect();
    format!("{{\"members\":[{}],\"scope\":\"batman\"}}", list.join(","))
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The member-list errors counted so far.
fn member_errors(metrics: &str) -> u64 {
    admin::counter(
        metrics,
        "leaderproxy_discovery_errors_total{source=\"members\"}",
    )
}

/// p1 (the leader), p2 and p3, sharing one `/cluster` body that lists all
/// three; the body, for the test to change.
async fn three_nodes() -> (Arc<Mutex<String>>, [Node; 3]) {
    let cluster = Arc::new(Mutex::new(String::new()));
    let p1 = Node::start("p1", true, cluster.clone()).await;
    let p2 = Node::start("p2", false, cluster.clone()).await;
    let p3 = Node::start("p3", false, cluster.clone()).await;
    *cluster.lock().unwrap() = cluster_body(&[&p1, &p2, &p3]);
    (cluster, [p1, p2, p3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_member_list_3_then_2_members_is_followed() {
    let (cluster, [p1, p2, p3]) = three_nodes().await;

    // The proxy knows p1 only.
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\ndebug_headers: true\n\
         backends: [ {{ name: p1, url: 'http://{}' }} ]\n\
         discovery: {{ members: {{ kind: patroni, interval: 100ms }} }}\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 40ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ methods: [GET, HEAD, OPTIONS], to: read }} ]\n",
        p1.addr
    );
    let p = Proxy::start(&yaml).await;
    let started = std::time::Instant::now();

    // --- 3 members: p2 and p3 found by name at their api_url, following.
    wait_until(
        Duration::from_secs(5),
        "p2 and p3 discovered, following",
        || async {
            let r = p.routing().await;
            names(&r) == set(&["p1", "p2", "p3"]) && followers(&r) == set(&["p2", "p3"])
        },
    )
    .await;
    let found_after = started.elapsed();
    let r = p.routing().await;
    assert_eq!(r["leader"]["name"], "p1");
    let b2 = r["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "p2")
        .unwrap()
        .clone();
    assert_eq!(b2["source"], "members");
    assert_eq!(
        b2["url"].as_str(),
        Some(format!("http://{}", p2.addr).as_str()),
        "api_url's scheme and host:port, not PostgreSQL's port: {b2}"
    );
    assert!(p1.asked.load(Ordering::Relaxed) > 0, "the leader is asked");
    let mut on = std::collections::HashMap::<String, usize>::new();
    for _ in 0..10 {
        let r = p.get("/r").await;
        assert_eq!(r.status, 200);
        *on.entry(r.backend().unwrap()).or_default() += 1;
    }
    assert!(
        on.get("p2").is_some_and(|&n| n > 0) && on.get("p3").is_some_and(|&n| n > 0),
        "reads on both discovered followers: {on:?}"
    );
    let w = p.put("/w").await;
    assert_eq!((w.status, w.backend().as_deref()), (200, Some("p1")));

    // --- 2 members: p2 leaves the list, then the table; no more requests.
    *cluster.lock().unwrap() = cluster_body(&[&p1, &p3]);
    let changed = std::time::Instant::now();
    wait_until(Duration::from_secs(3), "p2 removed", || async {
        names(&p.routing().await) == set(&["p1", "p3"])
    })
    .await;
    let removed_after = changed.elapsed();
    let before = p2.served.load(Ordering::Relaxed);
    for _ in 0..10 {
        let r = p.get("/r").await;
        assert_eq!((r.status, r.backend().as_deref()), (200, Some("p3")));
    }
    assert_eq!(
        p2.served.load(Ordering::Relaxed),
        before,
        "no request to p2"
    );
    let w = p.put("/w").await;
    assert_eq!((w.status, w.backend().as_deref()), (200, Some("p1")));

    // --- A broken answer keeps the last set, and is counted.
    let errors = member_errors(&p.metrics().await);
    *cluster.lock().unwrap() = "<html>bad gateway</html>".to_string();
    wait_until(
        Duration::from_secs(3),
        "failed member lists counted",
        || async { member_errors(&p.metrics().await) >= errors + 3 },
    )
    .await;
    assert_eq!(names(&p.routing().await), set(&["p1", "p3"]));
    // It answers again with p2: back.
    *cluster.lock().unwrap() = cluster_body(&[&p1, &p2, &p3]);
    wait_until(Duration::from_secs(3), "p2 back", || async {
        let r = p.routing().await;
        names(&r) == set(&["p1", "p2", "p3"]) && followers(&r) == set(&["p2", "p3"])
    })
    .await;
    println!(
        "discovery_patroni: knew p1, p2+p3 following after {} ms; 3 -> 2 members, p2 out of the table after {} ms, 0/10 reads on it; broken /cluster kept the set ({} errors counted)",
        found_after.as_millis(),
        removed_after.as_millis(),
        member_errors(&p.metrics().await) - errors
    );
}

/// DNS finds the leader first as `127.0.0.1:PORT`; the member list then
/// names the same address `p1`. One backend (the address is its identity)
/// renamed in place: it keeps its claim, no split brain, no failed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_members_naming_one_address_make_one_backend_renamed_in_place() {
    let (_cluster, [p1, _p2, _p3]) = three_nodes().await;
    let dns = dns::FakeDns::start("patroni.test", vec![std::net::Ipv4Addr::LOCALHOST]).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\ndebug_headers: true\n\
         discovery: {{ dns: {{ name: patroni.test, port: {}, interval: 100ms }}, members: {{ kind: patroni, interval: 100ms }} }}\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 40ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ methods: [GET, HEAD, OPTIONS], to: read }} ]\n",
        p1.addr.port()
    );
    let opts = leaderproxy::discovery::Options {
        nameservers: leaderproxy::discovery::Nameservers::Fixed(vec![dns.addr]),
    };
    let p = Arc::new(Proxy::start_discovering(&yaml, opts, true).await);
    let by_dns = format!("127.0.0.1:{}", p1.addr.port());
    wait_until(Duration::from_secs(5), "a leader", || async {
        p.routing().await["leader"]["name"].is_string()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = fake::spawn_writer(p.clone(), stop.clone());

    wait_until(Duration::from_secs(5), "p1, p2, p3 once each", || async {
        let r = p.routing().await;
        let mut v = backend_names(&r);
        v.sort();
        v == ["p1", "p2", "p3"] && followers(&r) == set(&["p2", "p3"])
    })
    .await;
    let r = p.routing().await;
    assert_eq!(r["leader"]["name"], "p1", "{r}");
    assert_eq!(r["split_brain"], serde_json::Value::Null, "{r}");
    // Writes keep working for a while after the rename.
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < until {
        let w = p.put("/w").await;
        assert_eq!((w.status, w.backend().as_deref()), (200, Some("p1")));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = w.await.unwrap();
    assert!(failed.is_empty(), "failed writes: {failed:?}");
    assert!(ok > 0, "the writer ran");
    // The metric label sets follow the name.
    let m = p.metrics().await;
    assert!(
        m.contains("leaderproxy_backend_healthy{backend=\"p1\"} 1"),
        "{m}"
    );
    assert!(!m.contains(&format!("backend=\"{by_dns}\"")), "{m}");
    // Admin drain works by the new name.
    assert_eq!(
        p.admin("POST", "/admin/backends/p2/drain").await.status,
        200
    );
}

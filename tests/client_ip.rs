//! Client identity behind load balancers: `X-Forwarded-For` from a trusted
//! peer moves `ip_hash` placement (and only then), and PROXY protocol v1/v2
//! listeners take the client address from the header, over HTTP/1.1, h2 and
//! TLS, and close connections that do not start with one.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fake::{config_for, h2_over, tls_over, wait_until, Fake, Proxy, Role};
use http_body_util::{BodyExt, Full};
use leaderproxy::balance::Picker;
use leaderproxy::config::{BackendConfig, Policy};
use leaderproxy::metrics::Metrics;
use leaderproxy::routing::Backend;
use nodes::nodes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the pure rendezvous picker puts `client` among followers with
/// these names (weight 1, like the fakes' config).
fn expected(followers: &[&Fake], client: &str) -> String {
    let m = Metrics::new();
    let backends: Vec<Arc<Backend>> = followers
        .iter()
        .map(|f| {
            let cfg = BackendConfig::plain(&f.state.name, f.addr);
            Arc::new(Backend::new(&cfg, &m, 1, 1024))
        })
        .collect();
    let ip: IpAddr = client.parse().unwrap();
    let i = Picker::build(Policy::IpHash, &backends)
        .pick(&backends, ip, None)
        .unwrap();
    backends[i].name().to_string()
}

/// A leader and three followers behind a proxy started with `extra`;
/// returns once every follower takes reads.
async fn cluster(extra: &str, listen: Option<&str>) -> (Proxy, Vec<Fake>) {
    let fakes = vec![
        Fake::start("l", Role::Leader).await,
        Fake::start("f1", Role::Follower).await,
        Fake::start("f2", Role::Follower).await,
        Fake::start("f3", Role::Follower).await,
    ];
    let refs: Vec<&Fake> = fakes.iter().collect();
    let mut cfg = config_for(&refs, extra);
    if let Some(l) = listen {
        cfg = cfg.replace("listen: 127.0.0.1:0\n", l);
    }
    let p = Proxy::start(&cfg).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    wait_until(
        Duration::from_secs(3),
        "three healthy followers",
        || async {
            let r = p.routing().await;
            r["followers"].as_array().map_or(0, |a| a.len()) == 3
        },
    )
    .await;
    (p, fakes)
}

async fn get_with_xff(p: &Proxy, path: &str, xff: &str) -> fake::Reply {
    let req = http::Request::get(format!("http://{}{}", p.addr, path))
        .header("x-forwarded-for", xff)
        .body(Full::new(Bytes::new()))
        .unwrap();
    p.send(req).await
}

/// Every `X-Forwarded-For` a fake saw for `path`.
fn xff_seen(fakes: &[Fake], path: &str) -> Vec<String> {
    fakes
        .iter()
        .flat_map(|f| f.seen())
        .filter(|s| s.path == path)
        .map(|s| {
            s.headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect()
}

const CLIENTS: [&str; 8] = [
    "198.51.100.1",
    "198.51.100.2",
    "198.51.100.3",
    "203.0.113.4",
    "203.0.113.5",
    "2001:db8::6",
    "2001:db8::7",
    "192.0.2.8",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_x_forwarded_for_drives_ip_hash() {
    let (p, fakes) = cluster(
        "reads: { policy: ip_hash }\ntrusted_proxies: [127.0.0.1/32]\n",
        None,
    )
    .await;
    let followers: Vec<&Fake> = fakes[1..].iter().collect();
    let want: Vec<String> = CLIENTS.iter().map(|c| expected(&followers, c)).collect();
    let mut distinct = want.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "the chosen clients must not all hash to one follower: {want:?}"
    );
    for round in 0..3 {
        for (c, w) in CLIENTS.iter().zip(&want) {
            let r = get_with_xff(&p, &format!("/r/{round}"), c).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.backend().as_deref(), Some(w.as_str()), "client {c}");
        }
    }
    // A trusted hop to the right of the client is passed over.
    let r = get_with_xff(&p, "/hop", "198.51.100.1, 127.0.0.1").await;
    assert_eq!(r.backend(), Some(want[0].clone()));
    // Upstream, the list gets the immediate peer appended, nothing else.
    assert_eq!(
        xff_seen(&fakes, "/hop"),
        vec!["198.51.100.1, 127.0.0.1, 127.0.0.1".to_string()]
    );
    // Several field lines are one list: the walk reads them in order, and
    // all of them go upstream as one line.
    let req = http::Request::get(format!("http://{}/lines", p.addr))
        .header("x-forwarded-for", "198.51.100.9")
        .header("x-forwarded-for", "198.51.100.2, 127.0.0.1")
        .header("x-forwarded-for", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(p.send(req).await.backend(), Some(want[1].clone()));
    let seen: Vec<_> = fakes
        .iter()
        .flat_map(|f| f.seen())
        .filter(|s| s.path == "/lines")
        .collect();
    let lines: Vec<_> = seen[0].headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(
        lines,
        ["198.51.100.9, 198.51.100.2, 127.0.0.1, 127.0.0.1, 127.0.0.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_x_forwarded_for_is_ignored() {
    let (p, fakes) = cluster("reads: { policy: ip_hash }\n", None).await;
    let followers: Vec<&Fake> = fakes[1..].iter().collect();
    let want = expected(&followers, "127.0.0.1");
    for c in CLIENTS {
        let r = get_with_xff(&p, "/u", c).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend().as_deref(), Some(want.as_str()), "client {c}");
    }
    // Trusting someone else changes nothing for 127.0.0.1 either.
    drop(p);
    let (p, fakes) = cluster(
        "reads: { policy: ip_hash }\ntrusted_proxies: [10.0.0.0/8, '::1']\n",
        None,
    )
    .await;
    let followers: Vec<&Fake> = fakes[1..].iter().collect();
    let want = expected(&followers, "127.0.0.1");
    for c in CLIENTS {
        assert_eq!(
            get_with_xff(&p, "/u", c).await.backend().as_deref(),
            Some(want.as_str())
        );
    }
}

const PP_LISTEN: &str =
    "listen: [ { addr: \"127.0.0.1:0\", proxy_protocol: true } ]\ntrusted_proxies: [127.0.0.1/32]\n";

fn v1(src: &str, sport: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 {sport} 80\r\n").into_bytes()
}

fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v.extend_from_slice(&[0x21, 0x11, 0, 12]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[127, 0, 0, 1]);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&80u16.to_be_bytes());
    v
}

/// Sends `prefix` and an HTTP/1.1 request in one write, returns the raw answer.
async fn raw_exchange(addr: SocketAddr, prefix: &[u8], path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    s.write_all(&msg).await.unwrap();
    let mut out = Vec::new();
    // A reset after a refused header counts as "no answer": bytes read before it are kept.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer or close within 5s");
    String::from_utf8_lossy(&out).into_owned()
}

fn backend_of(raw: &str) -> Option<String> {
    raw.lines()
        .find_map(|l| l.strip_prefix("x-leaderproxy-backend: "))
        .map(|s| s.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let (p, fakes) = cluster("reads: { policy: ip_hash }\n", Some(PP_LISTEN)).await;
    let followers: Vec<&Fake> = fakes[1..].iter().collect();

    let raw = raw_exchange(p.addr, &v1("203.0.113.7", 5555), "/v1").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(backend_of(&raw), Some(expected(&followers, "203.0.113.7")));
    assert_eq!(xff_seen(&fakes, "/v1"), vec!["203.0.113.7".to_string()]);

    let raw = raw_exchange(p.addr, &v2_tcp4([203, 0, 113, 8], 6000), "/v2").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(backend_of(&raw), Some(expected(&followers, "203.0.113.8")));
    assert_eq!(xff_seen(&fakes, "/v2"), vec!["203.0.113.8".to_string()]);

    // v1 UNKNOWN and v2 LOCAL: the socket address.
    let raw = raw_exchange(p.addr, b"PROXY UNKNOWN\r\n", "/unknown").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(xff_seen(&fakes, "/unknown"), vec!["127.0.0.1".to_string()]);
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let raw = raw_exchange(p.addr, local, "/local").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(xff_seen(&fakes, "/local"), vec!["127.0.0.1".to_string()]);

    // h2 (prior knowledge) behind a v2 header, two requests on the connection.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&v2_tcp4([203, 0, 113, 9], 7000)).await.unwrap();
    let mut tx = h2_over(s).await;
    for _ in 0..2 {
        let req = http::Request::get(format!("http://{}/h2", p.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-leaderproxy-backend"].to_str().unwrap(),
            expected(&followers, "203.0.113.9")
        );
        resp.into_body().collect().await.unwrap();
    }
    assert_eq!(
        xff_seen(&fakes, "/h2"),
        vec!["203.0.113.9".to_string(), "203.0.113.9".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_from_an_untrusted_peer_is_read_but_not_believed() {
    let listen = PP_LISTEN.replace("[127.0.0.1/32]", "[10.0.0.0/8]");
    let (p, fakes) = cluster("", Some(&listen)).await;
    let raw = raw_exchange(p.addr, &v1("203.0.113.7", 5555), "/x").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(xff_seen(&fakes, "/x"), vec!["127.0.0.1".to_string()]);
}

fn pp_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("leaderproxy_proxy_protocol_errors_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_proxy_header_is_closed_and_counted() {
    let listen = PP_LISTEN.to_string() + "timeouts: { header_read: 300ms }\n";
    let (p, fakes) = cluster("", Some(&listen)).await;
    assert_eq!(pp_errors(&p.metrics().await), 0);

    // Plain HTTP: closed without a byte of response.
    let raw = raw_exchange(p.addr, b"", "/plain").await;
    assert_eq!(raw, "", "no response without a PROXY header");
    wait_until(Duration::from_secs(2), "one error counted", || async {
        pp_errors(&p.metrics().await) == 1
    })
    .await;

    // A malformed header.
    let raw = raw_exchange(p.addr, b"PROXY TCP4 nonsense\r\n", "/bad").await;
    assert_eq!(raw, "");
    // Silence: closed once timeouts.header_read passes.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed within 5s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    wait_until(Duration::from_secs(2), "three errors counted", || async {
        pp_errors(&p.metrics().await) == 3
    })
    .await;
    assert!(xff_seen(&fakes, "/plain").is_empty() && xff_seen(&fakes, "/bad").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_proxy_protocol_needs_a_restart() {
    let (p, _fakes) = cluster("", Some(PP_LISTEN)).await;
    let text = std::fs::read_to_string(&p.config_path).unwrap();
    let r = p
        .reload_with(&text.replace("proxy_protocol: true", "proxy_protocol: false"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["notes"],
        serde_json::json!(["listen proxy_protocol changed: restart to apply"])
    );
    // Still a PROXY listener.
    let raw = raw_exchange(p.addr, &v1("203.0.113.7", 5555), "/after").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_behind_a_proxy_header() {
    let [l, f] = nodes(["l", "f"]).await;
    let dir = fake::TempDir::new();
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.0.join("a.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.0.join("a.key"), c.key_pair.serialize_pem()).unwrap();
    let cfg = config_for(&[&l, &f], "tls: { cert: a.crt, key: a.key }\n")
        .replace("listen: 127.0.0.1:0\n", PP_LISTEN);
    let mut p = Proxy::start_in(&dir, &cfg).await;
    p.keep_dir(dir);
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(&v1("203.0.113.10", 4444)).await.unwrap();
    let s = tls_over(tcp, c.cert.der(), &[b"h2"]).await.unwrap();
    let mut tx = h2_over(s).await;
    let req = http::Request::get(format!("https://127.0.0.1:{}/tls", p.addr.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let fakes = [l, f];
    assert_eq!(xff_seen(&fakes, "/tls"), vec!["203.0.113.10".to_string()]);
    let seen: Vec<_> = fakes
        .iter()
        .flat_map(|f| f.seen())
        .filter(|s| s.path == "/tls")
        .collect();
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_is_one_window_from_accept_across_the_proxy_header_and_the_head() {
    let listen = PP_LISTEN.to_string() + "timeouts: { header_read: 600ms }\n";
    let (p, fakes) = cluster("", Some(&listen)).await;
    // The PROXY header at 400ms and the head at 800ms: each in time on its
    // own, together past the one 600ms window from accept.
    let t = tokio::time::Instant::now();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    tokio::time::sleep_until(t + Duration::from_millis(400)).await;
    s.write_all(&v1("203.0.113.9", 5555)).await.unwrap();
    tokio::time::sleep_until(t + Duration::from_millis(800)).await;
    // The proxy may already have closed: a failed write is the expected end.
    let _ = s
        .write_all(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed within 5s");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(xff_seen(&fakes, "/late").is_empty());
}

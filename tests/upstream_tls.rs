//! TLS to backends: `https://` URLs with `upstream_tls` (CA, client
//! certificate) and per-backend overrides; HTTP/1.1 and h2 (by ALPN) on the
//! data path, probes over the same TLS; handshake failures counted by reason.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/tls_fake.rs"]
mod tls_fake;

use std::time::Duration;

use bytes::Bytes;
use fake::{h2_over, Proxy, TempDir};
use http_body_util::{BodyExt, Full};
use tls_fake::{sample, Pki, TlsFake};

const ALPN_BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A proxy config for `backends` (name, url, extra flow-map keys) with fast probes.
fn config(backends: &[(&str, String, &str)], extra: &str) -> String {
    let mut s = String::from(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\nbackends:\n",
    );
    for (name, url, more) in backends {
        s.push_str(&format!("  - {{ name: {name}, url: \"{url}\"{more} }}\n"));
    }
    s.push_str("health: { path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }\n");
    s.push_str(
        "leader: { path: /leader, interval: 50ms, timeout: 40ms, expect: { status: [200] } }\n",
    );
    s.push_str("routes: [ { methods: [GET, HEAD, OPTIONS], to: read } ]\n");
    s.push_str(extra);
    s
}

async fn start(dir: &TempDir, yaml: &str) -> Proxy {
    Proxy::start_in(dir, yaml).await
}

/// An h2c (prior knowledge) connection to the proxy.
async fn h2_client(p: &Proxy) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    h2_over(tcp).await
}

async fn h2_send(
    tx: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    grpc: bool,
) -> (u16, String, String) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://db{path}"));
    if grpc {
        b = b.header("content-type", "application/grpc");
    }
    let resp = tx
        .send_request(b.body(Full::new(Bytes::from_static(b"x"))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-leaderproxy-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, backend, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_carry_http1_and_h2_with_a_client_certificate() {
    let dir = TempDir::new();
    let pki = Pki::new(&dir.0, "ca");
    let server = pki.issue("server", "etcd", &["127.0.0.1", "etcd.internal"], false);
    pki.issue("client", "leaderproxy", &["leaderproxy"], false);
    // Both demand a client certificate signed by the CA; `l` is known only as etcd.internal.
    let l = TlsFake::start("l", true, pki.server_config(&server, ALPN_BOTH, true)).await;
    let f = TlsFake::start("f", false, pki.server_config(&server, ALPN_BOTH, true)).await;
    let yaml = config(
        &[
            (
                "l",
                format!("https://{}", l.addr),
                ", tls: { server_name: etcd.internal }",
            ),
            ("f", format!("https://{}", f.addr), ""),
        ],
        "upstream_tls: { ca: ca.pem, cert: client.pem, key: client-key.pem }\n",
    );
    let p = start(&dir, &yaml).await;
    // Leader and health probes went over mTLS.
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    // HTTP/1.1 from the client: HTTP/1.1 over TLS (ALPN http/1.1) upstream.
    let r = p.put("/k").await;
    assert_eq!(
        (r.status, &r.headers["x-leaderproxy-backend"]),
        (200, &"l".parse().unwrap())
    );
    assert_eq!(&r.body[..], b"l HTTP/1.1");
    let s = l.seen().pop().unwrap();
    assert_eq!(
        (s.version, s.alpn.as_deref(), s.client_cert),
        (http::Version::HTTP_11, Some("http/1.1"), true)
    );

    // HTTP/2 from the client: h2 over TLS upstream (the backend chose it), gRPC gets te: trailers.
    let mut h2 = h2_client(&p).await;
    let (status, backend, body) = h2_send(&mut h2, "POST", "/etcdserverpb.KV/Put", true).await;
    assert_eq!(
        (status, backend.as_str(), body.as_str()),
        (200, "l", "l HTTP/2.0")
    );
    let s = l.seen().pop().unwrap();
    assert_eq!(
        (s.version, s.alpn.as_deref(), s.client_cert),
        (http::Version::HTTP_2, Some("h2"), true)
    );
    assert_eq!(s.headers["te"], "trailers");
    let (status, backend, body) = h2_send(&mut h2, "GET", "/r", false).await;
    assert_eq!(
        (status, backend.as_str(), body.as_str()),
        (200, "f", "f HTTP/2.0")
    );
    // The h2 connection is shared: a second request opens no new handshake.
    let before = f.handshakes.load(std::sync::atomic::Ordering::Relaxed);
    let (status, _, _) = h2_send(&mut h2, "GET", "/r", false).await;
    assert_eq!(status, 200);
    let after = f.handshakes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        after - before <= 2,
        "probes only, no new data connection: {before} -> {after}"
    );

    let m = p.metrics().await;
    assert!(!m.contains(
        "leaderproxy_upstream_tls_handshake_failures_total{backend=\"l\",reason=\"expired\"} 1"
    ));
    assert_eq!(
        sample(
            &m,
            "leaderproxy_upstream_tls_handshake_failures_total{backend=\"l\",reason=\"handshake\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_answers_alpn_with_http1_gets_h2_requests_as_http1() {
    let dir = TempDir::new();
    let pki = Pki::new(&dir.0, "ca");
    let server = pki.issue("server", "etcd", &["127.0.0.1"], false);
    let l = TlsFake::start("l", true, pki.server_config(&server, &[b"http/1.1"], false)).await;
    let yaml = config(
        &[("l", format!("https://{}", l.addr), "")],
        "upstream_tls: { ca: ca.pem }\n",
    );
    let p = start(&dir, &yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let mut h2 = h2_client(&p).await;
    for _ in 0..2 {
        let (status, backend, body) = h2_send(&mut h2, "POST", "/w", false).await;
        assert_eq!(
            (status, backend.as_str(), body.as_str()),
            (200, "l", "l HTTP/1.1")
        );
    }
    let s = l.seen().pop().unwrap();
    assert_eq!(
        (s.version, s.alpn.as_deref(), s.client_cert),
        (http::Version::HTTP_11, Some("http/1.1"), false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_are_counted_per_backend_by_reason() {
    let dir = TempDir::new();
    let pki = Pki::new(&dir.0, "ca");
    let other = Pki::new(&dir.0, "other-ca");
    let good = pki.issue("good", "good", &["127.0.0.1"], false);
    let expired = pki.issue("expired", "old", &["127.0.0.1"], true);
    let stranger = other.issue("stranger", "stranger", &["127.0.0.1"], false);
    let elsewhere = pki.issue("elsewhere", "elsewhere", &["elsewhere.example"], false);
    pki.issue("client", "leaderproxy", &["leaderproxy"], false);
    let l = TlsFake::start("l", true, pki.server_config(&good, ALPN_BOTH, false)).await;
    let e = TlsFake::start("e", false, pki.server_config(&expired, ALPN_BOTH, false)).await;
    let u = TlsFake::start("u", false, pki.server_config(&stranger, ALPN_BOTH, false)).await;
    let n = TlsFake::start("n", false, pki.server_config(&elsewhere, ALPN_BOTH, false)).await;
    // Demands a client certificate; the proxy sends none to it.
    let c = TlsFake::start("c", false, pki.server_config(&good, ALPN_BOTH, true)).await;
    // Unknown CA, but this backend skips verification.
    let i = TlsFake::start("i", false, pki.server_config(&stranger, ALPN_BOTH, false)).await;
    // Plain HTTP behind an https:// URL.
    let plain = fake::Fake::start("plain", fake::Role::Follower).await;
    let yaml = config(
        &[
            ("l", format!("https://{}", l.addr), ""),
            ("e", format!("https://{}", e.addr), ""),
            ("u", format!("https://{}", u.addr), ""),
            ("n", format!("https://{}", n.addr), ""),
            ("c", format!("https://{}", c.addr), ""),
            ("plain", format!("https://{}", plain.addr), ""),
            (
                "i",
                format!("https://{}", i.addr),
                ", tls: { insecure_skip_verify: true }",
            ),
        ],
        "upstream_tls: { ca: ca.pem }\n",
    );
    let p = start(&dir, &yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let series = |b: &str, r: &str| {
        format!(
            "leaderproxy_upstream_tls_handshake_failures_total{{backend=\"{b}\",reason=\"{r}\"}}"
        )
    };
    let want = [
        ("e", "expired"),
        ("u", "unknown_ca"),
        ("n", "name_mismatch"),
        ("c", "handshake"),
        ("plain", "handshake"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let m = p.metrics().await;
        if want.iter().all(|(b, r)| sample(&m, &series(b, r)) >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every failure counted:\n{}",
            m.lines()
                .filter(|l| l.contains("tls_handshake"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = p.metrics().await;
    for (b, r) in want {
        for other in ["expired", "unknown_ca", "name_mismatch", "handshake"] {
            if other != r {
                assert_eq!(sample(&m, &series(b, other)), 0.0, "{b} {other}");
            }
        }
    }
    for r in ["expired", "unknown_ca", "name_mismatch", "handshake"] {
        assert_eq!(sample(&m, &series("l", r)), 0.0);
        assert_eq!(
            sample(&m, &series("i", r)),
            0.0,
            "insecure_skip_verify accepts the unknown CA"
        );
    }
    // None of them is healthy; the probe error says why.
    let routing = p.routing().await;
    for (b, r) in want {
        let node = routing["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == b)
            .unwrap();
        assert_eq!(node["healthy"], false, "{b}");
        let err = node["last_probe"]["health_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            err.contains(&format!("TLS handshake failed ({r})")),
            "{b}: {err}"
        );
    }
    // Reads go to the one healthy follower, `i`.
    fake::wait_until(Duration::from_secs(3), "i healthy", || async {
        p.get("/r").await.headers["x-leaderproxy-backend"] == "i"
    })
    .await;
    for _ in 0..4 {
        assert_eq!(p.get("/r").await.headers["x-leaderproxy-backend"], "i");
    }
    assert_eq!(
        plain.count(),
        0,
        "nothing but TLS records reached the plain backend"
    );
}

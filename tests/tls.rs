//! TLS termination: HTTP/1.1 and h2 (by ALPN) over TLS to the proxy,
//! `X-Forwarded-Proto: https` to the backend, a renewed certificate picked up
//! by a reload, and a missing key file named in the config error.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use fake::{config_for, h2_over, tls_over, Fake, Proxy, Role};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nodes::nodes;
use rustls::pki_types::CertificateDer;

/// A fresh self-signed certificate for 127.0.0.1, written as PEM files.
fn self_signed(dir: &Path, tag: &str) -> (CertificateDer<'static>, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    std::fs::write(dir.join(format!("{tag}.crt")), c.cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{tag}.key")), c.key_pair.serialize_pem()).unwrap();
    (
        c.cert.der().clone(),
        format!("tls: {{ cert: {tag}.crt, key: {tag}.key }}\n"),
    )
}

async fn connect(
    addr: std::net::SocketAddr,
    trust: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tls_over(tcp, trust, alpn).await
}

/// Starts a proxy whose config file lives next to the certificate files.
async fn start_with_tls(fakes: &[&Fake]) -> (Proxy, CertificateDer<'static>) {
    let dir = fake::TempDir::new();
    let (cert, tls) = self_signed(&dir.0, "a");
    let mut p = Proxy::start_in(&dir, &config_for(fakes, &tls)).await;
    p.keep_dir(dir);
    (p, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2_over_tls_with_forwarded_proto() {
    let [l, f] = nodes(["l", "f"]).await;
    let (p, cert) = start_with_tls(&[&l, &f]).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    // HTTP/1.1 over TLS.
    let tls = connect(p.addr, &cert, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::put("/k")
        .header("host", "db")
        .body(Full::new(Bytes::from_static(b"v")))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-leaderproxy-backend"], "l");
    let seen = l.seen().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");

    // h2 chosen by ALPN.
    let tls = connect(p.addr, &cert, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut tx = h2_over(tls).await;
    let req = http::Request::get(format!("https://127.0.0.1:{}/r", p.addr.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-leaderproxy-backend"], "f");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"f GET /r");
    assert_eq!(
        f.seen().pop().unwrap().headers["x-forwarded-proto"],
        "https"
    );

    // Plain HTTP on a TLS listener gets no answer.
    let plain = p
        .client
        .get(format!("http://{}/", p.addr).parse().unwrap())
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_renewed_certificate() {
    let l = Fake::start("l", Role::Leader).await;
    let (p, old) = start_with_tls(&[&l]).await;
    let dir = p.config_path.parent().unwrap().to_path_buf();
    let (new, _) = self_signed(&dir, "a");
    // The old certificate still serves until the reload.
    assert!(connect(p.addr, &old, &[b"http/1.1"]).await.is_ok());
    assert_eq!(p.admin("POST", "/admin/reload").await.status, 200);
    assert!(
        connect(p.addr, &new, &[b"http/1.1"]).await.is_ok(),
        "renewed certificate served"
    );
    assert!(
        connect(p.addr, &old, &[b"http/1.1"]).await.is_err(),
        "old certificate no longer served"
    );
}

#[test]
fn a_missing_key_file_is_a_config_error_naming_it() {
    let dir = fake::TempDir::new();
    let path = dir.0.join("lp.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\ntls: { cert: nope.crt, key: nope.key }\n",
    )
    .unwrap();
    let e = leaderproxy::config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(":4:1: tls: cannot read certificates from "),
        "{e}"
    );
    assert!(e.contains("nope.crt"), "{e}");
}

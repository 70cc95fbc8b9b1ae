//! Certificate rotation without a restart: the listener's certificate and
//! the client certificate sent to backends are re-read when their files
//! change (the 1s config watch); a broken new file keeps the old material
//! and is reported; `leaderproxy_tls_cert_expiry_seconds` tells how long
//! each loaded certificate has left.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/tls_fake.rs"]
mod tls_fake;

use std::time::Duration;

use fake::{Proxy, TempDir};
use rustls::pki_types::ServerName;
use tls_fake::{now_unix, sample, write_atomically, Pki, TlsFake, NOT_AFTER_2099};

/// The certificate the proxy's listener presents now.
async fn served_cert(addr: std::net::SocketAddr, pki: &Pki) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(None, &[b"http/1.1"]))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// A PUT over TLS to the proxy; its status.
async fn tls_put(addr: std::net::SocketAddr, pki: &Pki) -> u16 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(None, &[b"http/1.1"]))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::put("/k")
        .header("host", "db")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"v")))
        .unwrap();
    tx.send_request(req).await.unwrap().status().as_u16()
}

async fn wait_for<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    fake::wait_until(Duration::from_secs(5), what, f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_are_picked_up_and_broken_ones_keep_the_old_material() {
    let dir = TempDir::new();
    let pki = Pki::new(&dir.0, "ca");
    let server = pki.issue("server", "etcd", &["127.0.0.1"], false);
    let first_listener = pki.issue("proxy", "proxy-1", &["127.0.0.1"], false);
    let first_client = pki.issue("client", "client-1", &["client"], false);
    // The backend demands a client certificate signed by the CA.
    let l = TlsFake::start("l", true, pki.server_config(&server, &[b"http/1.1"], true)).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\ndebug_headers: true\n\
         backends: [ {{ name: l, url: \"https://{}\" }} ]\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 40ms, expect: {{ status: [200] }} }}\n\
         timeouts: {{ upstream_idle: 100ms }}\n\
         tls: {{ cert: proxy.pem, key: proxy-key.pem }}\n\
         upstream_tls: {{ ca: ca.pem, cert: client.pem, key: client-key.pem }}\n",
        l.addr
    );
    let p = Proxy::start_in(&dir, &yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    assert_eq!(served_cert(p.addr, &pki).await, first_listener.der.as_ref());

    // Every loaded certificate's expiry, in seconds from now.
    let m = p.metrics().await;
    let left = NOT_AFTER_2099 - now_unix();
    let proxy_pem = dir.0.join("proxy.pem").display().to_string();
    let client_pem = dir.0.join("client.pem").display().to_string();
    for series in [
        format!("leaderproxy_tls_cert_expiry_seconds{{kind=\"listener\",name=\"{proxy_pem}\"}}"),
        format!("leaderproxy_tls_cert_expiry_seconds{{kind=\"client\",name=\"{client_pem}\"}}"),
        "leaderproxy_tls_cert_expiry_seconds{kind=\"backend\",name=\"l\"}".to_string(),
    ] {
        let v = sample(&m, &series);
        assert!(
            (v - left as f64).abs() < 30.0,
            "{series} = {v}, want about {left}"
        );
    }

    // Data requests carry the first client certificate.
    let put = || async {
        assert_eq!(tls_put(p.addr, &pki).await, 200);
        l.seen().pop().unwrap().client_cert_der.unwrap()
    };
    assert_eq!(put().await, first_client.der.as_ref());

    // Rotate both on disk (as cert-manager does: new files renamed into place).
    let second_listener = pki.issue("proxy", "proxy-2", &["127.0.0.1"], false);
    let second_client = pki.issue("client", "client-2", &["client"], false);
    wait_for("the new listener certificate served", || async {
        served_cert(p.addr, &pki).await == second_listener.der.as_ref()
    })
    .await;
    // Pooled connections (upstream_idle 100ms) are replaced by ones with the new certificate.
    wait_for("the new client certificate sent", || async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        put().await == second_client.der.as_ref()
    })
    .await;

    // A broken certificate file: the reload is rejected and reported, the old material serves on.
    let errors = |m: &str| sample(m, "leaderproxy_config_reloads_total{result=\"error\"}");
    let before = errors(&p.metrics().await);
    write_atomically(
        &dir.0.join("proxy.pem"),
        b"-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    write_atomically(&dir.0.join("client.pem"), b"garbage");
    wait_for("the broken files reported", || async {
        let m = p.metrics().await;
        errors(&m) > before && sample(&m, "leaderproxy_config_last_reload_success") == 0.0
    })
    .await;
    assert_eq!(
        served_cert(p.addr, &pki).await,
        second_listener.der.as_ref()
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(put().await, second_client.der.as_ref());
    // Fixed files are picked up again.
    let third_client = pki.issue("client", "client-3", &["client"], false);
    pki.issue("proxy", "proxy-3", &["127.0.0.1"], false);
    wait_for("the fixed files loaded", || async {
        sample(&p.metrics().await, "leaderproxy_config_last_reload_success") == 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(put().await, third_client.der.as_ref());
}

//! leaderproxy embedded as a library: `examples/embed.rs` mounts the proxy
//! core (a `tower::Service`) under `/cluster/` of its own hyper server.
//! Writes reach the leader, reads a follower, bodies pass through, and the
//! app's own routes stay the app's.

#[path = "support/fake.rs"]
mod fake;

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fake::{config_for, wait_until, Fake, Reply, Role, TempDir};
use http_body_util::{BodyExt, Full};

/// The embedding app on 127.0.0.1, its proxy started without listeners.
async fn app(
    yaml: &str,
) -> (
    std::net::SocketAddr,
    Arc<leaderproxy::app::Running>,
    TempDir,
) {
    let dir = TempDir::new();
    let path = dir.0.join("leaderproxy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = leaderproxy::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let running = Arc::new(leaderproxy::app::start_embedded(cfg).unwrap());
    assert!(running.listen.is_empty(), "no listener of its own");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(embed::serve(listener, running.clone()));
    (addr, running, dir)
}

async fn send(addr: std::net::SocketAddr, method: &str, path: &str, body: &'static str) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_server_sends_writes_to_the_leader_and_reads_to_a_follower() {
    let l = Fake::start("l", Role::Leader).await;
    let f = Fake::start("f", Role::Follower).await;
    let (addr, running, _dir) = app(&config_for(&[&l, &f], "")).await;

    wait_until(
        Duration::from_secs(5),
        "a write reaches the leader",
        || async move {
            send(addr, "PUT", "/cluster/k/0", "v")
                .await
                .backend()
                .as_deref()
                == Some("l")
        },
    )
    .await;
    l.clear();

    let w = send(addr, "POST", "/cluster/k/1?x=1", "twelve bytes").await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.backend().as_deref(), Some("l"));
    let seen = l.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path, "/k/1",
        "the prefix is the app's, not the cluster's"
    );
    assert_eq!(seen[0].body_len, 12, "the body went through");

    let r = send(addr, "GET", "/cluster/k/1", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend().as_deref(), Some("f"));
    assert_eq!(
        f.seen().last().map(|s| s.path.clone()).as_deref(),
        Some("/k/1")
    );

    let own = send(addr, "GET", "/hello", "").await;
    assert_eq!(own.status, 200);
    assert_eq!(own.text(), "hello from the app\n");
    assert!(own.backend().is_none(), "the app answered itself");
    assert_eq!(send(addr, "GET", "/clusterx", "").await.status, 404);

    running.shutdown();
}

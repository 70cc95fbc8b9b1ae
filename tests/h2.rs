//! HTTP/2 end to end: h2c clients, gRPC-shaped requests forwarded over h2c to
//! backends that speak it (with `te: trailers` and response trailers carried
//! through), and HTTP/1.1 upstream for backends that do not.

#[path = "support/fake.rs"]
mod fake;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fake::{h2_over, serve_auto, wait_until, Proxy as FakeProxy};
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What an h2-capable backend saw of one request.
#[derive(Debug, Clone)]
struct SeenReq {
    version: http::Version,
    path: String,
    te: Option<String>,
    authority: Option<String>,
}

/// A backend that speaks HTTP/1.1 and h2c on one port (like etcd), answers
/// the probes, and answers other requests with a body plus gRPC trailers.
async fn grpc_backend(leader: bool) -> (SocketAddr, Arc<Mutex<Vec<SeenReq>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    serve_auto(l, move |_| {
        let seen = seen2.clone();
        service_fn(move |req: Request<Incoming>| {
            let seen = seen.clone();
            async move {
                let path = req.uri().path().to_string();
                type B = http_body_util::combinators::BoxBody<Bytes, Infallible>;
                let resp: Response<B> = match path.as_str() {
                    "/health" => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
                    "/leader" => {
                        let mut r = Response::new(Full::new(Bytes::new()).boxed());
                        *r.status_mut() = if leader {
                            http::StatusCode::OK
                        } else {
                            http::StatusCode::FORBIDDEN
                        };
                        r
                    }
                    _ => {
                        seen.lock().unwrap().push(SeenReq {
                            version: req.version(),
                            path: path.clone(),
                            te: req
                                .headers()
                                .get("te")
                                .map(|v| v.to_str().unwrap().to_string()),
                            authority: req.uri().authority().map(|a| a.to_string()),
                        });
                        let _ = req.into_body().collect().await;
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("grpc-message", "fine".parse().unwrap());
                        let frames = Frames(
                            [
                                Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")),
                                Frame::trailers(trailers),
                            ]
                            .into(),
                        );
                        let mut r = Response::new(frames.boxed());
                        r.headers_mut()
                            .insert("content-type", "application/grpc".parse().unwrap());
                        r
                    }
                };
                Ok::<_, Infallible>(resp)
            }
        })
    });
    (addr, seen)
}

/// A body made of the given frames (data, then trailers).
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

fn config(backends: &[(&str, SocketAddr, bool)]) -> String {
    let mut s = String::from(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\nbackends:\n",
    );
    for (name, addr, h2c) in backends {
        s.push_str(&format!(
            "  - {{ name: {name}, url: \"http://{addr}\", h2c: {h2c} }}\n"
        ));
    }
    s.push_str(
        "health: { path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }\n\
         leader: { path: /leader, interval: 50ms, timeout: 45ms, expect: { status: [200] } }\n\
         routes: [ { path_regex: \"^/etcdserverpb\\\\.KV/Range$\", to: read }, { methods: [GET], to: read } ]\n",
    );
    s
}

/// An h2c (prior knowledge) client connection to the proxy.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    h2_over(s).await
}

fn grpc_request(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .version(http::Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x01x")))
        .unwrap()
}

async fn wait_ready(p: &FakeProxy, leader: &str) {
    p.wait_leader(Some(leader), Duration::from_secs(3)).await;
    wait_until(Duration::from_secs(3), "followers", || async {
        !p.routing().await["followers"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_goes_over_h2c_with_trailers_writes_to_leader_reads_to_followers() {
    let (l, l_seen) = grpc_backend(true).await;
    let (f, f_seen) = grpc_backend(false).await;
    let p = FakeProxy::start(&config(&[("l", l, true), ("f", f, true)])).await;
    wait_ready(&p, "l").await;
    let mut c = h2_client(p.addr).await;

    // A gRPC write: to the leader, over h2, with te: trailers; trailers come back.
    let resp = c
        .send_request(grpc_request(p.addr, "/etcdserverpb.KV/Put"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-leaderproxy-backend"], "l");
    let body = resp.into_body().collect().await.unwrap();
    let trailers = body
        .trailers()
        .cloned()
        .expect("trailers reached the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    assert_eq!(&body.to_bytes()[..], b"\0\0\0\0\x02hi");
    let s = l_seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(s.version, http::Version::HTTP_2, "forwarded over h2");
    assert_eq!(s.path, "/etcdserverpb.KV/Put");
    assert_eq!(s.te.as_deref(), Some("trailers"));
    assert_eq!(
        s.authority.as_deref(),
        Some(p.addr.to_string().as_str()),
        "client's :authority kept"
    );

    // A gRPC read: to the follower.
    let resp = c
        .send_request(grpc_request(p.addr, "/etcdserverpb.KV/Range"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-leaderproxy-backend"], "f");
    let body = resp.into_body().collect().await.unwrap();
    assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(
        f_seen.lock().unwrap().last().unwrap().version,
        http::Version::HTTP_2
    );
    assert_eq!(
        l_seen.lock().unwrap().len(),
        1,
        "the read did not reach the leader"
    );

    // Many concurrent streams over one client connection all arrive.
    let mut handles = Vec::new();
    for _ in 0..50 {
        let mut c = c.clone();
        let addr = p.addr;
        handles.push(tokio::spawn(async move {
            let r = c
                .send_request(grpc_request(addr, "/etcdserverpb.KV/Put"))
                .await
                .unwrap();
            let b = r.into_body().collect().await.unwrap();
            b.trailers().unwrap()["grpc-status"]
                .to_str()
                .unwrap()
                .to_string()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), "0");
    }
    assert_eq!(l_seen.lock().unwrap().len(), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_reach_http1_only_backends_over_http1() {
    let (l, l_seen) = grpc_backend(true).await;
    let p = FakeProxy::start(&config(&[("l", l, false)])).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let mut c = h2_client(p.addr).await;
    let req = Request::builder()
        .method("PUT")
        .version(http::Version::HTTP_2)
        .uri(format!("http://{}/v2/keys/a", p.addr))
        .body(Full::new(Bytes::from_static(b"value=1")))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let s = l_seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(s.version, http::Version::HTTP_11);
    assert_eq!(s.te, None, "te is hop-by-hop on HTTP/1.1");
}

/// Reads (and drops) whatever the proxy sends until it closes the
/// connection; panics if it is still open after `within`.
async fn until_closed(s: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let closing = async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(within, closing)
        .await
        .unwrap_or_else(|_| panic!("the h2 connection was still open after {within:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connections_obey_header_read_and_client_idle() {
    use tokio::io::AsyncWriteExt;
    let (l, _) = grpc_backend(true).await;
    let mut yaml = config(&[("l", l, true)]);
    yaml.push_str("timeouts: { header_read: 300ms, client_idle: 600ms }\n");
    let p = FakeProxy::start(&yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    // The preface and an empty SETTINGS frame, then silence: closed once
    // header_read has passed since accept, with no request ever sent.
    let t = tokio::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // One request, then no open stream: closed once client_idle has passed
    // since the stream ended.
    let s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut c, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = c
        .send_request(grpc_request(p.addr, "/etcdserverpb.KV/Put"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let t = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("the idle h2 connection stayed open")
        .unwrap()
        .ok();
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_h2_stream_is_not_idle() {
    let l = fake::Fake::start("l", fake::Role::Leader).await;
    let yaml = fake::config_for(
        &[&l],
        "timeouts: { header_read: 300ms, client_idle: 300ms }\n",
    );
    let p = FakeProxy::start(&yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let mut c = h2_client(p.addr).await;
    let req = |path: &str| {
        Request::builder()
            .method("PUT")
            .version(http::Version::HTTP_2)
            .uri(format!("http://{}{path}", p.addr))
            .body(Full::new(Bytes::from_static(b"v")))
            .unwrap()
    };
    // Waiting for the answer's head longer than client_idle (and than
    // header_read for the first request): the stream is open all along.
    let resp = c.send_request(req("/sleep/900")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    // An answer whose body streams for longer than client_idle.
    let resp = c.send_request(req("/drip/8/250")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 8);
}

/// An h2c leader (HTTP/1.1 on the same port for the probes) that refuses
/// the next `refuse` streams with `REFUSED_STREAM` — the stream was not
/// processed — and answers the others 200; returns how many it answered.
async fn refusing_backend(refuse: Arc<std::sync::atomic::AtomicUsize>) -> SocketAddr {
    use std::sync::atomic::Ordering;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let refuse = refuse.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 3];
                while s.peek(&mut preface).await.unwrap_or(0) < 3 {}
                if &preface != b"PRI" {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                    return;
                }
                let Ok(mut conn) = h2::server::handshake(s).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let refused = refuse
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                    if refused {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    if let Ok(mut body) = respond.send_response(Response::new(()), false) {
                        let _ = body.send_data(Bytes::from_static(b"done"), true);
                    }
                }
            });
        }
    });
    addr
}

/// `REFUSED_STREAM` guarantees the request was not processed and says the
/// backend is up: a refused stream on a pooled connection goes out again on
/// a new one, and nothing is held against the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_resent_on_a_new_connection_and_never_fences() {
    let refuse = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let l = refusing_backend(refuse.clone()).await;
    let p = FakeProxy::start(&config(&[("l", l, true)])).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let changes = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("leaderproxy_leader_changes_total "))
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap()
    };
    let before = changes(&p.metrics().await);
    let mut c = h2_client(p.addr).await;
    let req = |method: &str, body: &'static [u8]| {
        Request::builder()
            .method(method)
            .version(http::Version::HTTP_2)
            .uri(format!("http://{}/k", p.addr))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    // The worker's h2 connection to l is open (and pooled) after this.
    let r = c.send_request(req("DELETE", b"")).await.unwrap();
    assert_eq!(r.status(), 200);
    refuse.store(1, std::sync::atomic::Ordering::Relaxed);
    let r = c.send_request(req("DELETE", b"")).await.unwrap();
    assert_eq!(r.status(), 200, "the refused stream was not sent again");
    // A streamed body cannot be sent again; still nothing against l.
    refuse.store(2, std::sync::atomic::Ordering::Relaxed);
    let r = c.send_request(req("PUT", b"v")).await.unwrap();
    assert_eq!(r.status(), 502);
    p.routing().await;
    assert_eq!(
        changes(&p.metrics().await),
        before,
        "a refused stream fenced l"
    );
    assert_eq!(p.routing().await["leader"]["name"], "l");
}

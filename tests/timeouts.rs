//! Timeouts that fit long requests (issue 8), end to end against in-process
//! fake nodes: `timeouts.response_headers` and its per-route override,
//! `long_poll` routes, `timeouts.body_idle` in both directions,
//! `timeouts.upstream_idle` (the idle sweep) and HTTP/2 upstream connections
//! that are replaced after a timeout.
//!
//! Every test was checked to fail without its feature: the line named in
//! its "Checked:" comment was reverted or disabled by hand, the test run
//! and seen failing, and the change undone.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fake::{h2_over, serve_auto, wait_until, Proxy};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use nodes::{led_by, nodes, reading_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of one series (`name` or `name{labels}`) in a Prometheus scrape.
fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
}

/// Reads of paths ending in `/lp` are `long_poll`; other GETs are plain reads.
const LONG_POLL_ROUTES: &str = "routes:\n\
    \x20 - { methods: [GET], path_regex: \"/lp$\", to: read, long_poll: true }\n\
    \x20 - { methods: [GET], to: read }\n";

/// The `error` code of a proxy-made JSON answer.
fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    v["error"].as_str().unwrap_or_default().to_string()
}

/// A GET whose body may fail: the status, then the whole body or the error
/// that ended it.
async fn get_streamed(p: &Proxy, path: &str) -> (u16, Result<Bytes, String>) {
    let req = Request::get(format!("http://{}{path}", p.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = p.client.request(req).await.expect("response head");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("{e:?}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_overrides_response_headers() {
    // Checked: with `ctx.opts` using `cfg.timeouts.response_headers` and
    // ignoring `route.timeout`, the read on the `/slow` route got a 504.
    let [a, b] = nodes(["a", "b"]).await;
    let p = reading_from(
        &[&a, &b],
        "routes:\n\
         \x20 - { methods: [GET], path_regex: \"/slow$\", to: read, timeout: 2s }\n\
         \x20 - { methods: [GET], to: read }\n\
         timeouts: { response_headers: 300ms }\n\
         reads: { retry: false }\n",
        "b",
    )
    .await;

    let r = p.get("/sleep/600/slow").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slept 600");
    assert_eq!(r.backend().as_deref(), Some("b"));

    let r = p.get("/sleep/600").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(error_code(&r.body), "upstream_timeout");
    assert!(
        r.text().contains("did not answer within 300ms"),
        "cut by timeouts.response_headers: {}",
        r.text()
    );
    assert_eq!(r.backend().as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_timeouts_do_not_eject_a_follower_but_normal_ones_do() {
    // Checked: with `long_poll: r.long_poll` replaced by `false` in
    // src/config/routes.rs, the first two long-poll timeouts ejected b (the
    // third went to the leader instead).
    let [a, b] = nodes(["a", "b"]).await;
    let p = reading_from(
        &[&a, &b],
        &format!(
            "{LONG_POLL_ROUTES}\
             timeouts: {{ response_headers: 300ms }}\n\
             passive: {{ consecutive_failures: 2, max_ejection_percent: 100 }}\n\
             reads: {{ retry: false }}\n"
        ),
        "b",
    )
    .await;
    let ejections = "leaderproxy_ejections_total{backend=\"b\"}";

    for _ in 0..3 {
        let r = p.get("/sleep/600/lp").await;
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(error_code(&r.body), "upstream_timeout");
        assert_eq!(r.backend().as_deref(), Some("b"));
    }
    // `/admin/routing` asks the monitor over the same queue an ejection
    // would have taken, so anything the timeouts caused is visible now.
    let s = p.backend_status("b").await;
    assert_eq!(s["ejected"], false, "{s}");
    assert_eq!(metric(&p.metrics().await, ejections), 0.0);

    // The same timeouts on a normal route eject b after two in a row.
    for _ in 0..2 {
        let r = p.get("/sleep/600").await;
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(r.backend().as_deref(), Some("b"));
    }
    wait_until(Duration::from_secs(3), "b ejected", || async {
        p.backend_status("b").await["ejected"] == true
    })
    .await;
    assert_eq!(metric(&p.metrics().await, ejections), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_idle_cuts_silent_response_bodies_except_on_long_poll_routes() {
    // Checked: with the `idle.expired(cx)` branch of `DownBody::poll_frame`
    // disabled, the 1s drip completed (no error); with `long_poll: r.long_poll`
    // replaced by `false`, the long-poll drip was cut.
    let [a, b] = nodes(["a", "b"]).await;
    let p = reading_from(
        &[&a, &b],
        &format!("{LONG_POLL_ROUTES}timeouts: {{ body_idle: 300ms }}\n"),
        "b",
    )
    .await;

    let (slow, fast, long_poll) = tokio::join!(
        get_streamed(&p, "/drip/3/1000"),
        get_streamed(&p, "/drip/20/50"),
        get_streamed(&p, "/drip/2/1000/lp"),
    );
    // The head was sent before the body stalled: the client sees its body end
    // with an error (an incomplete chunked body), never a short success.
    assert_eq!(slow.0, 200);
    assert!(
        slow.1.is_err(),
        "a body silent for 1s was not cut: {:?}",
        slow.1
    );
    assert_eq!(fast.0, 200);
    assert_eq!(fast.1.as_deref(), Ok(&b"...................."[..]));
    assert_eq!(long_poll.0, 200);
    assert_eq!(long_poll.1.as_deref(), Ok(&b".."[..]));
}

/// Sends `bytes` on a new connection to `addr` and reads one response
/// (head and `Content-Length` body) within `within`.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len || n == 0 {
                    return text;
                }
            } else if n == 0 {
                return text;
            }
        }
    };
    let text = tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"));
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_its_body_gets_408_and_the_leader_is_not_blamed() {
    // Checked: with `UpBody::stream` given no idle limit, no answer came
    // within the deadline; with `failed()` in src/proxy/forward.rs sorting
    // every error as `Cause::Transport`, the streamed write fenced the leader
    // (leader_changes_total moved from 1 to 3).
    let [a, b] = nodes(["a", "b"]).await;
    // not_leader rules make the proxy keep bodies up to 16 bytes (read
    // before sending); larger ones are streamed to the leader as they come.
    // (The leader probe is spelled out: config_for takes "not_leader:" for it.)
    let p = led_by(
        &[&a, &b],
        "leader: { path: /leader, interval: 50ms, timeout: 40ms, expect: { status: [200] } }\n\
         timeouts: { body_idle: 300ms }\n\
         writes: { hold: 2s, replay_body_limit: 16, not_leader: { status: [403] } }\n",
        "a",
    )
    .await;
    let changes = "leaderproxy_leader_changes_total";
    let before = metric(&p.metrics().await, changes);

    // Kept body: half of it, then silence; the backend is never contacted.
    let (status, body) = raw_exchange(
        p.addr,
        b"PUT /kept HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(error_code(body.as_bytes()), "client_timeout");

    // Streamed body: the head reached the leader, then the client went silent.
    let mut half = b"PUT /streamed HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n".to_vec();
    half.extend_from_slice(&[b'x'; 50]);
    let (status, body) = raw_exchange(p.addr, &half, Duration::from_secs(3)).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(error_code(body.as_bytes()), "client_timeout");
    wait_until(
        Duration::from_secs(2),
        "a saw the streamed write",
        || async { a.seen().iter().any(|s| s.path == "/streamed") },
    )
    .await;
    assert!(a.seen().iter().all(|s| s.path != "/kept"));

    // The leader was not fenced: a write goes straight to it, and the
    // routed leader never changed (the admin call below is answered by the
    // monitor after any fencing the 408s could have queued).
    let r = p.put("/after").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend().as_deref(), Some("a"));
    assert_eq!(p.routing().await["leader"]["name"], "a");
    assert_eq!(metric(&p.metrics().await, changes), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_closed_by_the_sweep() {
    // Checked: with the `sweep_idle` task not spawned in
    // `server::serve_worker`, b kept three open connections until the deadline.
    let [a, b] = nodes(["a", "b"]).await;
    // Slow probes: their short-lived connections to b rarely overlap a check.
    let p = reading_from(
        &[&a, &b],
        "health: { path: /health, interval: 500ms, timeout: 200ms, rise: 1, fall: 3 }\n\
         leader: { path: /leader, interval: 500ms, timeout: 200ms, expect: { status: [200] } }\n\
         timeouts: { upstream_idle: 300ms }\n\
         reads: { retry: false }\n",
        "b",
    )
    .await;

    // Three requests at once need three upstream connections.
    let (r1, r2, r3) = tokio::join!(
        p.get("/sleep/100"),
        p.get("/sleep/100"),
        p.get("/sleep/100")
    );
    for r in [&r1, &r2, &r3] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend().as_deref(), Some("b"));
    }
    let mut conns: Vec<usize> = b.seen().iter().map(|s| s.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    assert_eq!(conns.len(), 3, "{conns:?}");

    // Idle for 300ms, they are closed (by the proxy: the fake never closes
    // an idle keep-alive connection) without any request passing by.
    wait_until(Duration::from_secs(3), "b's connections closed", || async {
        b.open_connections() == 0
    })
    .await;
    assert_eq!(p.backend_status("b").await["idle_connections"], 0);

    // The next request opens a new connection.
    let accepted = b.state.accepted.load(Ordering::Relaxed);
    let r = p.get("/next").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = b.seen().last().cloned().unwrap();
    assert_eq!(last.path, "/next");
    assert!(
        last.conn >= accepted,
        "served on old connection {} (accepted before: {accepted})",
        last.conn
    );
}

/// What an h2c backend saw: (connection number, path) of each HTTP/2 request.
type H2Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A backend that speaks HTTP/1.1 (probes; leader) and h2c on one port;
/// `/sleep/MS` answers after MS milliseconds.
async fn h2c_backend() -> (SocketAddr, H2Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: H2Seen = Arc::default();
    let seen2 = seen.clone();
    serve_auto(l, move |conn| {
        let seen = seen2.clone();
        service_fn(move |req: Request<Incoming>| {
            let seen = seen.clone();
            async move {
                let path = req.uri().path().to_string();
                if req.version() == http::Version::HTTP_2 {
                    seen.lock().unwrap().push((conn, path.clone()));
                }
                if let Some(ms) = path.strip_prefix("/sleep/") {
                    let ms: u64 = ms.parse().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(path))))
            }
        })
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upstream_connection_is_replaced_after_a_timeout() {
    // Checked: with the `forget_h2` call on the timeout branch of
    // `send_h2` removed, the request after the timeout went over the same
    // connection as the one that timed out.
    let (l, seen) = h2c_backend().await;
    let p = Proxy::start(&format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\n\
         backends:\n  - {{ name: l, url: \"http://{l}\", h2c: true }}\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 45ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ methods: [GET], to: read }} ]\n\
         timeouts: {{ response_headers: 300ms }}\n\
         reads: {{ retry: false }}\n"
    ))
    .await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let mut c = h2_over(s).await;
    let mut get = |path: &str| {
        let req = Request::get(format!("http://{}{path}", p.addr))
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let fut = c.send_request(req);
        async move {
            let r = fut.await.unwrap();
            let status = r.status().as_u16();
            (status, r.into_body().collect().await.unwrap().to_bytes())
        }
    };

    // Normally requests share the worker's one upstream h2 connection.
    assert_eq!(get("/one").await.0, 200);
    assert_eq!(get("/two").await.0, 200);
    let (status, body) = get("/sleep/600").await;
    assert_eq!(status, 504, "{body:?}");
    assert_eq!(error_code(&body), "upstream_timeout");
    let (status, body) = get("/three").await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(&body[..], b"/three");

    let seen = seen.lock().unwrap().clone();
    let conn_of = |path: &str| seen.iter().find(|(_, p)| p == path).unwrap().0;
    assert_eq!(conn_of("/one"), conn_of("/two"), "{seen:?}");
    assert_eq!(conn_of("/sleep/600"), conn_of("/one"), "{seen:?}");
    assert_ne!(
        conn_of("/three"),
        conn_of("/sleep/600"),
        "the connection whose request timed out was used again: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_past_response_headers_is_still_the_clients_fault() {
    // With response_headers shorter than body_idle (as by default, 30s and
    // 60s), a client that stalls a streamed body must get 408 at body_idle,
    // not a 504 at response_headers that blames the backend.
    // Checked: before `response_head` in src/proxy/forward.rs (plain
    // timeout from the start of sending), this got 504 upstream_timeout.
    let [a, b] = nodes(["a", "b"]).await;
    let p = reading_from(
        &[&a, &b],
        "routes: [ { methods: [POST], path_prefix: /query, to: read } ]\n\
         timeouts: { response_headers: 300ms, body_idle: 800ms }\n\
         passive: { consecutive_failures: 1, max_ejection_percent: 100 }\n\
         reads: { retry: false }\n",
        "b",
    )
    .await;
    let mut half = b"POST /query HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n".to_vec();
    half.extend_from_slice(&[b'x'; 50]);
    let (status, body) = raw_exchange(p.addr, &half, Duration::from_secs(3)).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(error_code(body.as_bytes()), "client_timeout");
    let s = p.backend_status("b").await;
    assert_eq!(s["ejected"], false, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_counts_from_the_end_of_a_streamed_body() {
    // A steady upload that takes longer than response_headers is not cut,
    // and the backend still has only response_headers after the body.
    // Checked: before `response_head` in src/proxy/forward.rs, the steady
    // upload was answered 504 (and its connection closed mid-body).
    let [a, b] = nodes(["a", "b"]).await;
    let p = reading_from(
        &[&a, &b],
        "routes: [ { methods: [POST], to: read } ]\n\
         timeouts: { response_headers: 300ms, body_idle: 800ms }\n\
         reads: { retry: false }\n",
        "b",
    )
    .await;
    let upload = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(b"x").await.unwrap();
        }
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), async {
            while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("answered in time");
        String::from_utf8_lossy(&buf).into_owned()
    };
    let (steady, slow_answer) = tokio::join!(upload("/echo-size"), upload("/sleep/600"));
    assert!(steady.starts_with("HTTP/1.1 200"), "{steady}");
    assert!(slow_answer.starts_with("HTTP/1.1 504"), "{slow_answer}");
    assert!(slow_answer.contains("upstream_timeout"), "{slow_answer}");
}

//! The own HTTP/1.1 server (src/server/h1/) seen from a raw socket:
//! hostile heads are answered with their status and the connection closed
//! with nothing reaching a backend; Expect, HTTP/1.0, HEAD, 204/304 and
//! pipelining behave; the header-read and client-idle limits cut slow
//! clients.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use fake::{Fake, Proxy};
use nodes::{led_by, nodes};

async fn setup(extra: &str) -> (Fake, Fake, Proxy) {
    let [l, f] = nodes(["l", "f"]).await;
    let p = led_by(&[&l, &f], extra, "l").await;
    (l, f, p)
}

/// [`exchange`] with 3s for the answer and the close.
async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, bool) {
    exchange(addr, bytes, Duration::from_secs(3)).await
}

/// Sends `bytes`: the answer has `status`, and the proxy closes the
/// connection after it (within 3s).
async fn answered_then_closed(addr: std::net::SocketAddr, bytes: &[u8], status: u16) {
    let (out, closed) = send(addr, bytes).await;
    assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
    assert!(closed);
}

/// Sends `bytes`, then reads until the proxy closes (or `within` passes).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_heads_get_their_status_and_reach_no_backend() {
    let (l, f, p) = setup("").await;
    let cases: &[(&str, &[u8])] = &[
        ("400 ", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("400 ", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"),
        ("400 ", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\nabcd"),
        ("400 ", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("501 ", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("400 ", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"),
        ("400 ", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n"),
        ("400 ", b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("400 ", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n"),
        ("400 ", b"GET /a HTTP/1.1\r\n\r\n"),
        ("400 ", b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
        ("405 ", b"CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n"),
        ("505 ", b"GET /a HTTP/1.2\r\nHost: x\r\n\r\n"),
        ("501 ", b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
    ];
    for (want, req) in cases {
        let (out, closed) = send(p.addr, req).await;
        let shown = String::from_utf8_lossy(req);
        assert!(
            out.starts_with(&format!("HTTP/1.1 {want}")),
            "{shown:?} -> {out}"
        );
        assert!(out.contains("\"error\":"), "JSON error body: {out}");
        assert!(closed, "{shown:?}: the connection stayed open");
    }
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let (out, _) = send(p.addr, long_line.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 414 "), "{out}");
    let big_head = format!(
        "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    let (out, _) = send(p.addr, big_head.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    assert_eq!(
        l.count() + f.count(),
        0,
        "a hostile request reached a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (_l, f, p) = setup("").await;
    let (out, _) = send(p.addr, b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let one = out.find("f GET /one").expect(&out);
    let two = out.find("f GET /two").expect(&out);
    let three = out.find("f GET /three").expect(&out);
    assert!(one < two && two < three, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 3, "{out}");
    assert_eq!(f.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_http10_and_head() {
    let (l, _f, p) = setup("").await;
    // Expect: 100-continue: the interim answer comes before the body is sent.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert_eq!(l.seen().last().unwrap().body_len, 5);

    // HTTP/1.0: answered, then closed.
    let (out, closed) = send(p.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(closed);

    // HEAD: the backend's length describes the representation; no body follows.
    let (out, _) = send(
        p.addr,
        b"HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(
        out.ends_with("\r\n\r\n"),
        "a body followed a HEAD answer: {out:?}"
    );
}

/// Reads until `want` has arrived (or the deadline passes); returns all read.
async fn read_until(s: &mut TcpStream, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut tmp = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut tmp)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&tmp[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_a_chunked_body_and_past_the_limit() {
    // A long header_read: waiting for the first chunk before the 100 would
    // hold the client until then.
    let (l, _f, p) =
        setup("timeouts: { header_read: 20s }\nlimits: { max_body_bytes: 1000 }\n").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"PUT /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let t = Instant::now();
    let got = read_until(&mut s, "\r\n\r\n", Duration::from_secs(3)).await;
    assert_eq!(
        got,
        "HTTP/1.1 100 Continue\r\n\r\n",
        "after {:?}",
        t.elapsed()
    );
    s.write_all(b"5\r\nhello\r\n0\r\n\r\n").await.unwrap();
    let got = read_until(&mut s, "l PUT /k", Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    assert_eq!(l.seen().last().unwrap().body_len, 5);
    // A declared length past the limit: 413 at once, never a 100.
    answered_then_closed(
        p.addr,
        b"PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
        413,
    )
    .await;
    assert_eq!(l.count(), 1, "the refused request reached the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_routing_fields_out() {
    let (l, f, p) = setup("").await;
    // 204 never has a Content-Length; a 304 only the backend's own.
    let (raw, _heads) = upgrade_proxy().await;
    for (path, length) in [("/204", None), ("/304", None), ("/304/length", Some(10))] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (out, _) = send(raw.addr, req.as_bytes()).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {} ", &path[1..4])),
            "{out}"
        );
        let lower = out.to_ascii_lowercase();
        match length {
            None => assert!(!lower.contains("content-length"), "{path}: {out:?}"),
            Some(n) => assert!(
                lower.contains(&format!("content-length: {n}\r\n")),
                "{out:?}"
            ),
        }
    }
    // HTTP/1.0 without Host: forwarded as 1.1 with the backend's authority.
    let (out, _) = send(p.addr, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let seen = f.seen().last().unwrap().clone();
    assert_eq!(seen.headers["host"], f.addr.to_string().as_str());
    // Absolute form: its authority is the Host (RFC 9112 §3.2.2).
    let (out, _) = send(
        p.addr,
        b"GET http://db.example:2379/abs HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let seen = f.seen().last().unwrap().clone();
    assert_eq!(seen.path, "/abs");
    assert_eq!(seen.headers["host"], "db.example:2379");
    assert_eq!(seen.headers["x-forwarded-host"], "db.example:2379");
    // Request trailers carry no framing, routing or hop-by-hop fields.
    let (out, _) = send(p.addr, b"PUT /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Sum: 1\r\nContent-Length: 3\r\nHost: evil\r\nTransfer-Encoding: chunked\r\n\
          Connection: x-listed\r\nX-Listed: 1\r\nKeep-Alive: 1\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let seen = l.seen().last().unwrap().clone();
    assert_eq!(seen.body_len, 5);
    let t = seen
        .trailers
        .clone()
        .unwrap_or_else(|| panic!("trailers: {seen:?}"));
    let names: Vec<&str> = t.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-sum"], "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_one_byte_chunks_arrive_whole() {
    let (l, _f, p) = setup("").await;
    let mut req =
        b"PUT /echo-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..50_000 {
        req.extend_from_slice(b"1\r\nx\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Sum: 1\r\n\r\n");
    let (out, _) = exchange(p.addr, &req, Duration::from_secs(10)).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    let seen = l.seen().last().unwrap().clone();
    assert_eq!(seen.body_len, 50_000);
    assert_eq!(seen.trailers.unwrap()["x-sum"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut() {
    let (_l, f, p) = setup("timeouts: { header_read: 300ms, client_idle: 300ms }\n").await;
    // No byte at all: closed after header_read, counted from accept.
    let t = Instant::now();
    let (out, closed) = send(p.addr, b"").await;
    assert!(closed && out.is_empty(), "{out}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // Half a head: the same.
    let (out, closed) = send(p.addr, b"GET /slow HTTP/1.1\r\nHost:").await;
    assert!(closed && out.is_empty(), "{out}");
    // Keep-alive: one answer, then closed after client_idle.
    let t = Instant::now();
    let (out, closed) = send(p.addr, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(closed, "the idle keep-alive connection stayed open");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(f.count(), 1);
}

/// Request heads a raw backend received (probes left out): the number of
/// the connection each came on, and the head, lowercased.
type Heads = std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>>;

/// A raw backend: leads (answers `/leader` and `/health` with 200), and by
/// the request: `Upgrade: echo` gets 101, then every byte echoed
/// upper-cased; `Upgrade: refuse` gets a 426 with a body; `/spurious` gets
/// a 101 nobody asked for; `/204` a 204 with `Content-Length: 0`; `/304` a
/// 304 without length, `/304/length` one with; `HEAD /late` a 200 whose
/// 5-byte body is sent anyway, just before the next answer on that
/// connection (`HEAD /clean`: not sent); anything else a 200 `ok`. Connections stay open
/// for more heads (except in echo mode).
async fn upgrade_backend() -> (std::net::SocketAddr, Heads) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let heads = Heads::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = l.accept().await {
            n += 1;
            tokio::spawn(raw_backend_conn(s, n, seen.clone()));
        }
    });
    (addr, heads)
}

async fn raw_backend_conn(mut s: TcpStream, conn: usize, seen: Heads) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    // The body of a HEAD answer, sent late: before the next answer.
    let mut late: &[u8] = b"";
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        buf.drain(..end);
        let probe = head.starts_with("get /leader ") || head.starts_with("get /health ");
        if !probe {
            seen.lock().unwrap().push((conn, head.clone()));
        }
        if !late.is_empty() && s.write_all(std::mem::take(&mut late)).await.is_err() {
            return;
        }
        let answer: &[u8] = if head.contains("upgrade: echo") {
            break;
        } else if head.starts_with("head /clean ") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        } else if head.starts_with("head /late ") {
            late = b"hello";
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        } else if head.contains("upgrade: refuse") {
            b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 4\r\n\r\nnope"
        } else if head.starts_with("get /204 ") {
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
        } else if head.starts_with("get /304 ") {
            b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"
        } else if head.starts_with("get /304/length ") {
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"
        } else if head.starts_with("get /spurious ") {
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        if s.write_all(answer).await.is_err() {
            return;
        }
    }
    let head = &seen.lock().unwrap().last().unwrap().1.clone();
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    s.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut pending = buf.to_ascii_uppercase();
    loop {
        if !pending.is_empty() {
            s.write_all(&pending).await.unwrap();
            pending.clear();
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend(tmp[..n].to_ascii_uppercase()),
        }
    }
}

/// A proxy in front of one raw backend, with `/ws` an upgrade route.
async fn upgrade_proxy() -> (Proxy, Heads) {
    upgrade_proxy_with("").await
}

/// [`upgrade_proxy`] with more config lines.
async fn upgrade_proxy_with(extra: &str) -> (Proxy, Heads) {
    let (addr, heads) = upgrade_backend().await;
    let cfg = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\n\
         backends: [ {{ name: u, url: \"http://{addr}\" }} ]\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 40ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ path_prefix: /ws, to: write, upgrade: true }} ]\n{extra}"
    );
    let p = Proxy::start(&cfg).await;
    p.wait_leader(Some("u"), Duration::from_secs(3)).await;
    (p, heads)
}

/// The heads seen whose request line starts with `start`.
fn heads_for(heads: &Heads, start: &str) -> Vec<(usize, String)> {
    let h = heads.lock().unwrap();
    h.iter()
        .filter(|(_, h)| h.starts_with(start))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_answered_without_101_stays_http() {
    let (p, heads) = upgrade_proxy().await;
    // The next request is pipelined right behind the upgrade request: it
    // must be parsed and forwarded as HTTP, not relayed byte for byte.
    let (out, closed) = send(p.addr, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: refuse\r\n\r\n\
          GET /ws/next HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")
    .await;
    assert!(closed, "{out}");
    assert!(out.starts_with("HTTP/1.1 426 "), "{out}");
    assert!(out.contains("nope"), "{out}");
    let next = out.find("HTTP/1.1 200 ").expect(&out);
    assert!(out[next..].ends_with("ok"), "{out}");
    let ws = heads_for(&heads, "get /ws ");
    let after = heads_for(&heads, "get /ws/next ");
    assert_eq!((ws.len(), after.len()), (1, 1), "{heads:?}");
    assert!(
        after[0].1.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1"),
        "the next request was relayed as is: {}",
        after[0].1
    );
    assert_ne!(
        ws[0].0, after[0].0,
        "the next request went into the upgrade's connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_101_is_a_502_and_its_connection_is_dropped() {
    let (p, heads) = upgrade_proxy().await;
    let r = p.get("/spurious").await;
    assert_eq!(r.status, 502, "{}", r.text());
    for i in 0..3 {
        let r = p.get(&format!("/after/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let spurious = heads_for(&heads, "get /spurious ");
    assert!(!spurious.is_empty());
    let bad: Vec<usize> = spurious.iter().map(|(c, _)| *c).collect();
    let after = heads_for(&heads, "get /after/");
    assert_eq!(after.len(), 3, "{heads:?}");
    assert!(
        after.iter().all(|(c, _)| !bad.contains(c)),
        "a request went into a switched connection: {heads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reuse_after_head() {
    let (p, heads) = upgrade_proxy().await;
    for i in 0..3 {
        let r = p.req("HEAD", "/late", "").await;
        assert_eq!(r.status, 200);
        let r = p.get(&format!("/after-head/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "ok");
    }
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 6, "sent again: {seen:?}");
    for (i, (c, h)) in seen.iter().enumerate() {
        let followed = seen[i + 1..].iter().any(|(c2, _)| c2 == c);
        assert!(
            !(h.starts_with("head /late ") && followed),
            "a request went on a connection after HEAD: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reuse_always_reuses_after_head() {
    let (p, heads) = upgrade_proxy_with("http_reuse: always\n").await;
    let r = p.req("HEAD", "/clean", "").await;
    assert_eq!(r.status, 200);
    let r = p.get("/after-clean").await;
    assert_eq!(r.text(), "ok");
    let head = heads_for(&heads, "head /clean ");
    let after = heads_for(&heads, "get /after-clean ");
    assert_eq!(head[0].0, after[0].0, "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_an_upgrade_route_becomes_a_tunnel() {
    let (p, _heads) = upgrade_proxy().await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello ",
    )
    .await
    .unwrap();
    let text = read_until(&mut s, "HELLO ", Duration::from_secs(3)).await;
    assert!(text.ends_with("HELLO "), "{text}");
    let mut tmp = [0u8; 1024];
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    // Bytes keep flowing both ways after the 101.
    s.write_all(b"world").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut tmp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&tmp[..n], b"WORLD");
    // On a route without `upgrade: true` the same request is 501.
    answered_then_closed(
        p.addr,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        501,
    )
    .await;
}

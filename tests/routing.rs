//! Foundation behaviour against in-process fake nodes: where writes and
//! reads go, how fast a leader flip is followed, what happens without a
//! leader, and what the forwarder does to bodies and headers.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::time::{Duration, Instant};

use bytes::Bytes;
use fake::{config_for, tally, wait_until, Fake, Proxy, Role};
use http_body_util::Full;
use nodes::{led_by, nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_only_reach_the_leader() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    let p = led_by(&[&l, &f1, &f2], "", "l").await;
    for i in 0..30 {
        let method = ["PUT", "POST", "DELETE", "PATCH"][i % 4];
        let r = p.req(method, &format!("/k/{i}"), "v").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend().as_deref(), Some("l"));
    }
    assert_eq!(l.count(), 30);
    assert_eq!(f1.count() + f2.count(), 0, "no write reached a follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_split_exactly_over_two_equal_followers() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    let p = led_by(&[&l, &f1, &f2], "reads: { policy: round_robin }\n", "l").await;
    let mut replies = Vec::new();
    for i in 0..20 {
        replies.push(p.get(&format!("/r/{i}")).await);
    }
    let t = tally(&replies);
    assert_eq!(t.get("f1"), Some(&10), "{t:?}");
    assert_eq!(t.get("f2"), Some(&10), "{t:?}");
    assert_eq!(l.count(), 0, "no read reached the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_gives_twice_the_share() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    let cfg = config_for(&[&l, &f1, &f2], "").replace(
        &format!("{{ name: f2, url: \"http://{}\" }}", f2.addr),
        &format!("{{ name: f2, url: \"http://{}\", weight: 2 }}", f2.addr),
    );
    let p = Proxy::start(&cfg).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let mut replies = Vec::new();
    for i in 0..30 {
        replies.push(p.get(&format!("/r/{i}")).await);
    }
    let t = tally(&replies);
    assert_eq!((t["f1"], t["f2"]), (10, 20), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_flip_reroutes_writes_within_two_probe_intervals() {
    let [a, b] = nodes(["a", "b"]).await;
    let interval = Duration::from_millis(200);
    let p = led_by(
        &[&a, &b],
        "leader: { path: /leader, interval: 200ms, timeout: 100ms, expect: { status: [200] } }\n",
        "a",
    )
    .await;
    assert_eq!(p.put("/k/before").await.backend().as_deref(), Some("a"));
    let flipped = Instant::now();
    a.set_role(Role::Follower);
    b.set_role(Role::Leader);
    let mut n = 0;
    loop {
        let r = p.put(&format!("/k/{n}")).await;
        n += 1;
        if r.backend().as_deref() == Some("b") {
            break;
        }
        assert!(
            flipped.elapsed() < 2 * interval + Duration::from_millis(100),
            "writes still on a after {:?}",
            flipped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = flipped.elapsed();
    // Never back to the old leader afterwards.
    for i in 0..10 {
        assert_eq!(
            p.put(&format!("/k/after{i}")).await.backend().as_deref(),
            Some("b")
        );
    }
    println!("writes followed the flip after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_follower_stops_receiving_reads() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    let p = led_by(&[&l, &f1, &f2], "", "l").await;
    f2.kill();
    wait_until(Duration::from_secs(2), "f2 marked down", || async {
        p.routing().await["backends"][2]["role"] == "down"
    })
    .await;
    f1.clear();
    for i in 0..20 {
        let r = p.get(&format!("/r/{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend().as_deref(), Some("f1"));
    }
    assert_eq!(f1.count(), 20);
    // Back: it gets reads again.
    f2.revive().await;
    wait_until(Duration::from_secs(2), "f2 back", || async {
        p.routing().await["backends"][2]["role"] == "follower"
    })
    .await;
    let mut replies = Vec::new();
    for i in 0..10 {
        replies.push(p.get(&format!("/r2/{i}")).await);
    }
    assert_eq!(tally(&replies).get("f2"), Some(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leader_gives_503_with_retry_after_after_the_hold() {
    let f1 = Fake::start("f1", Role::Follower).await;
    let f2 = Fake::start("f2", Role::Follower).await;
    let p = Proxy::start(&config_for(&[&f1, &f2], "writes: { hold: 300ms }\n")).await;
    let start = Instant::now();
    let r = p.put("/k").await;
    let took = start.elapsed();
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "no_leader");
    assert!(
        took >= Duration::from_millis(300),
        "answered before the hold ended: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "hold overran: {took:?}");
    assert_eq!(f1.count() + f2.count(), 0);
    // Reads still work without a leader.
    assert_eq!(p.get("/r").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_write_goes_out_when_a_leader_appears() {
    let f1 = Fake::start("f1", Role::Follower).await;
    let f2 = Fake::start("f2", Role::Follower).await;
    let p = Proxy::start(&config_for(&[&f1, &f2], "writes: { hold: 5s }\n")).await;
    let promote = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        f2.set_role(Role::Leader);
        Instant::now()
    };
    let (r, promoted) = tokio::join!(p.put("/k"), promote);
    let answered = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend().as_deref(), Some("f2"));
    assert_eq!(f2.count(), 1);
    assert!(
        answered - promoted < Duration::from_millis(500),
        "write was released late"
    );
    let m = p.metrics().await;
    assert!(m.contains("leaderproxy_write_hold_seconds_count 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_bodies_arrive_intact_both_ways() {
    let [l, f] = nodes(["l", "f"]).await;
    let p = led_by(&[&l, &f], "", "l").await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let sum = body.iter().enumerate().fold(0u64, |a, (i, &x)| {
        a.wrapping_add((i as u64 + 1).wrapping_mul(x as u64))
    });
    let r = p.req("POST", "/echo-size", body.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{} {}", body.len(), sum));
    let seen = l.seen();
    assert_eq!(seen.last().unwrap().body_len, body.len());
    // And 8 MiB back.
    let r = p.get(&format!("/bytes/{}", 8 << 20)).await;
    assert_eq!(r.body.len(), 8 << 20);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_do_not_reach_the_backend() {
    let [l, f] = nodes(["l", "f"]).await;
    let p = led_by(&[&l, &f], "", "l").await;
    let req = http::Request::builder()
        .method("PUT")
        .uri(format!("http://{}/k", p.addr))
        .header("host", "db.example:8080")
        .header("connection", "keep-alive, x-drop-me")
        .header("keep-alive", "timeout=5")
        .header("x-drop-me", "secret")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "gzip, trailers")
        .header("upgrade", "websocket")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-keep", "yes")
        .body(Full::new(Bytes::from_static(b"v")))
        .unwrap();
    let r = p.send(req).await;
    assert_eq!(r.status, 200);
    let seen = l.seen().pop().unwrap();
    for h in [
        "connection",
        "keep-alive",
        "x-drop-me",
        "proxy-authorization",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            !seen.headers.contains_key(h),
            "{h} reached the backend: {:?}",
            seen.headers
        );
    }
    // TE is hop-by-hop: only `trailers` is said again, because trailers pass
    // through end to end; the client's other codings are its hop's business.
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["x-keep"], "yes");
    assert_eq!(seen.headers["host"], "db.example:8080", "client Host kept");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "db.example:8080");
    // The backend's hop-by-hop response headers do not reach the client either.
    assert!(!r.headers.contains_key("keep-alive"), "{:?}", r.headers);
    assert_eq!(r.headers["x-fake"], "l");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_the_idle_follower() {
    let [l, slow, fast] = nodes(["l", "slow", "fast"]).await;
    slow.state
        .delay_ms
        .store(300, std::sync::atomic::Ordering::Relaxed);
    let p = led_by(
        &[&l, &slow, &fast],
        "reads: { policy: least_connections }\n",
        "l",
    )
    .await;
    // Four concurrent reads: the slow follower holds one, so the rest go to the fast one.
    let first = p.get("/r/0");
    let rest = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut v = Vec::new();
        for i in 1..4 {
            v.push(p.get(&format!("/r/{i}")).await);
        }
        v
    };
    let (a, rest) = tokio::join!(first, rest);
    let mut all = rest;
    all.push(a);
    let t = tally(&all);
    assert_eq!(t.get("slow"), Some(&1), "{t:?}");
    assert_eq!(t.get("fast"), Some(&3), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_with_413() {
    let l = Fake::start("l", Role::Leader).await;
    let p = led_by(&[&l], "limits: { max_body_bytes: 1KiB }\n", "l").await;
    let r = p.req("POST", "/k", vec![0u8; 2048]).await;
    assert_eq!(r.status, 413);
    assert_eq!(l.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_length_and_transfer_encoding_cannot_smuggle() {
    use std::io::{Read, Write};
    let [l, f] = nodes(["l", "f"]).await;
    let p = led_by(&[&l, &f], "", "l").await;
    let addr = p.addr;
    let out = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // CL says 4 bytes; chunked says an empty body followed by a second request.
        s.write_all(
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    // Refused outright (RFC 9112 §6.1 allows it; a proxy should): one 400
    // with the JSON error body, then the connection is closed, so the tail is
    // never parsed as a request, and nothing reaches a backend.
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(out.contains("\"error\":\"bad_request\""), "{out}");
    assert_eq!(l.count() + f.count(), 0, "a request reached a backend");
}

//! Admin-API scaffolding shared by the fake-node tests: the read tier that
//! `/admin/routing` shows and waiting for it, the token-guarded admin
//! request, and reading one series out of a Prometheus scrape.
//!
//! Needs `#[path = "support/fake.rs"] mod fake;` at the test crate root.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::fake::{wait_until, Proxy, Reply};

/// The read tier (`followers`) that `/admin/routing` shows, in its order;
/// empty when the table has none.
pub async fn followers(p: &Proxy) -> Vec<String> {
    p.routing().await["followers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What `/admin/routing` says of backend `name` (its `backends` entry).
pub async fn backend_view(p: &Proxy, name: &str) -> serde_json::Value {
    let r = p.routing().await;
    r["backends"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} not in /admin/routing: {r}"))
}

/// Waits up to `within` until the read tier is exactly `want`, in order.
pub async fn wait_tier(p: &Proxy, want: &[&str], within: Duration) {
    wait_until(within, &format!("read tier {want:?}"), || async {
        followers(p).await == want
    })
    .await;
}

/// Waits up to `within` until the healthy followers are exactly `names`,
/// in any order.
pub async fn wait_followers(p: &Proxy, names: &[&str], within: Duration) {
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    wait_until(within, &format!("followers {want:?}"), || async {
        followers(p).await.into_iter().collect::<BTreeSet<_>>() == want
    })
    .await;
}

/// The value of the first line of a Prometheus scrape named exactly
/// `series` (labels included, as in `name{source="dns"}`); `None` if absent.
pub fn first_value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// [`first_value`] of a series the scrape must have.
pub fn metric(scrape: &str, series: &str) -> f64 {
    first_value(scrape, series).unwrap_or_else(|| panic!("{series} not in the scrape"))
}

/// A counter that a scrape may not have exported yet: 0 when absent.
pub fn counter(scrape: &str, series: &str) -> u64 {
    first_value(scrape, series).map_or(0, |v| v as u64)
}

/// One admin request with an `Authorization` header (`None`: without one).
pub async fn admin_as(p: &Proxy, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", p.admin));
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    p.send(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// `POST path` on the admin API with the `Authorization` header `auth`.
pub async fn post_as(p: &Proxy, path: &str, auth: &str) -> Reply {
    admin_as(p, "POST", path, Some(auth)).await
}

/// Waits up to `within` until `GET /admin/backends/<name>` satisfies `cond`;
/// `what` names the wait.
pub async fn wait_backend(
    p: &Proxy,
    within: Duration,
    name: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) {
    wait_until(within, what, || async {
        cond(&p.backend_status(name).await)
    })
    .await;
}

/// Waits up to `within` until every backend in `/admin/routing` satisfies
/// `cond`; `what` names the wait.
pub async fn wait_every_backend(
    p: &Proxy,
    within: Duration,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) {
    wait_until(within, what, || async {
        p.routing().await["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(&cond)
    })
    .await;
}

/// A raw keep-alive connection to `addr` that sent `GET path` and read the
/// status line's first 12 bytes, which must be `HTTP/1.1 200`; its reads
/// time out after `read_timeout` (`None`: never). The rest of the answer is
/// left unread.
pub fn served_connection(
    addr: std::net::SocketAddr,
    path: &str,
    read_timeout: Option<Duration>,
) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(read_timeout).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    c
}

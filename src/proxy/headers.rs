//! The header rewriting on the way to a backend and back: hop-by-hop
//! headers removed (with every name `Connection` lists, except those no
//! list can make hop-by-hop), `X-Forwarded-For/-Proto/-Host` added, the
//! client's `Host` kept. The HTTP/1.1 codec does the same from spans
//! ([`crate::h1::rewrite`]); a test holds the two to the same answers.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};

/// `TE: trailers`, which gRPC needs on the way to the backend.
pub(super) static GRPC_TE: HeaderValue = HeaderValue::from_static("trailers");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop only (RFC 9110 §7.6.1), never forwarded.
/// `Trailer` is not one of them: it announces end-to-end trailer fields
/// (RFC 9110 §6.6.2), which pass through with the body.
fn hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

fn is_hop_by_hop(n: &HeaderName) -> bool {
    hop_by_hop().contains(&n)
}

/// Removes hop-by-hop headers, including every name listed in `Connection`
/// (every line, whatever bytes the values hold), except the names no list
/// can make hop-by-hop ([`crate::h1::rewrite::never_hop_by_hop`]: `Host`,
/// framing, `X-Forwarded-*`). One pass over the names first: most requests
/// carry none, and comparing standard names is cheaper than hashing each of
/// eight lookups.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    if h.contains_key(header::CONNECTION) {
        // Rare: only clients that name extra headers pay for this.
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| crate::h1::rewrite::connection_names(v.as_bytes()))
            .filter_map(|n| HeaderName::from_bytes(n).ok())
            .collect();
        for n in listed {
            h.remove(n);
        }
    }
    for n in hop_by_hop() {
        h.remove(n);
    }
}

/// Rewrites a client request for a backend: origin-form URI, HTTP/1.1,
/// `Host` kept (replaced by the target's authority: absolute form, h2
/// `:authority`), hop-by-hop headers
/// removed, `X-Forwarded-For` appended, `X-Forwarded-Proto`/`-Host` set.
pub fn prepare_request(parts: &mut http::request::Parts, client: IpAddr, tls: bool) {
    let h = &mut parts.headers;
    // `TE: trailers` is hop-by-hop, but it says the client takes trailers,
    // which pass through: the backend may send them only if it is told.
    let te_trailers = h.get(header::TE).is_some_and(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    });
    strip_hop_by_hop(h);
    if te_trailers {
        h.insert(header::TE, GRPC_TE.clone());
    }
    // An absolute-form target's authority (an h2 `:authority`) is the
    // request's Host, whatever `Host` says (RFC 9112 §3.2.2).
    if let Some(a) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            h.insert(header::HOST, v);
        }
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(&X_FORWARDED_HOST, host);
    }
    h.insert(
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    let mut ip_buf = itoa_ip(client);
    match h.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip_buf.len());
            // Several field lines are one list, in order.
            for line in h.get_all(&X_FORWARDED_FOR) {
                v.extend_from_slice(line.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.append(&mut ip_buf);
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.insert(&X_FORWARDED_FOR, v);
            }
        }
        None => {
            if let Ok(v) = HeaderValue::from_bytes(&ip_buf) {
                h.insert(&X_FORWARDED_FOR, v);
            }
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Ok(u) = pq.parse::<Uri>() {
            parts.uri = u;
        }
    }
    parts.version = Version::HTTP_11;
}

/// The client address as text, without going through `fmt` for IPv4 (the
/// common case; formatting machinery showed up in the request profile).
fn itoa_ip(ip: IpAddr) -> Vec<u8> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut v = Vec::with_capacity(40);
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    v.push(b'.');
                }
                if o >= 100 {
                    v.push(b'0' + o / 100);
                }
                if o >= 10 {
                    v.push(b'0' + o / 10 % 10);
                }
                v.push(b'0' + o % 10);
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(v, "{v6}");
        }
    }
    v
}

/// Rewrites a backend response for the client: hop-by-hop headers removed
/// (the server sets its own framing).
pub(crate) fn prepare_response(parts: &mut http::response::Parts) {
    strip_hop_by_hop(&mut parts.headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    #[test]
    fn strips_hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn every_connection_line_is_read_and_routing_fields_stay() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "keep-alive, x-a".parse().unwrap());
        h.append(header::CONNECTION, "x-b".parse().unwrap());
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-c, caf\xe9").unwrap(),
        );
        h.append(
            header::CONNECTION,
            "Host, content-length, X-Forwarded-For, x-forwarded-proto"
                .parse()
                .unwrap(),
        );
        for n in ["x-a", "x-b", "x-c", "x-keep"] {
            h.insert(n, "1".parse::<HeaderValue>().unwrap());
        }
        h.insert(header::HOST, "db".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "content-length",
                "host",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-keep"
            ]
        );
    }

    #[test]
    fn client_ip_text() {
        for ip in [
            "0.0.0.0",
            "10.20.3.255",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let a: IpAddr = ip.parse().unwrap();
            assert_eq!(String::from_utf8(itoa_ip(a)).unwrap(), ip);
        }
        assert_eq!(itoa_ip("::ffff:1.2.3.4".parse().unwrap()), b"1.2.3.4");
    }

    #[test]
    fn forwarded_headers() {
        let req = Request::builder()
            .uri("/a?b=1")
            .header(header::HOST, "db.example")
            .header("x-forwarded-for", "10.0.0.1")
            .body(())
            .unwrap();
        let (mut parts, _) = req.into_parts();
        prepare_request(&mut parts, "192.0.2.7".parse().unwrap(), false);
        assert_eq!(parts.headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
        assert_eq!(parts.headers["x-forwarded-host"], "db.example");
        assert_eq!(parts.headers[header::HOST], "db.example");
        assert_eq!(parts.uri, "/a?b=1");
    }

    #[test]
    fn an_absolute_form_authority_replaces_host() {
        let req = Request::builder()
            .uri("http://db.example:2379/a?b=1")
            .header(header::HOST, "other")
            .body(())
            .unwrap();
        let (mut parts, _) = req.into_parts();
        prepare_request(&mut parts, "192.0.2.7".parse().unwrap(), false);
        assert_eq!(parts.headers[header::HOST], "db.example:2379");
        assert_eq!(parts.headers["x-forwarded-host"], "db.example:2379");
        assert_eq!(parts.uri, "/a?b=1");
    }

    #[test]
    fn h2_authority_becomes_host_and_origin_form() {
        let req = Request::builder()
            .uri("http://svc:2379/etcdserverpb.KV/Range")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let (mut parts, _) = req.into_parts();
        prepare_request(&mut parts, "::ffff:127.0.0.1".parse().unwrap(), true);
        assert_eq!(parts.headers[header::HOST], "svc:2379");
        assert_eq!(parts.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(parts.headers["x-forwarded-proto"], "https");
        assert_eq!(parts.uri, "/etcdserverpb.KV/Range");
        assert_eq!(parts.version, Version::HTTP_11);
    }
}

//! The heads we write: a client's request for a backend, a backend's response
//! for the client. The same rules as `proxy::forward::{prepare_request,
//! strip_hop_by_hop}`: hop-by-hop fields (RFC 9110 §7.6.1) and the names
//! listed in `Connection` dropped, `TE: trailers` kept when the client sent
//! it, `Trailer` kept, `X-Forwarded-For` appended (all incoming lines joined
//! as one list), `X-Forwarded-Proto` and `X-Forwarded-Host` set; the body
//! framing is written from the parser's decision, never copied.
//!
//! The absolute-form target's authority becomes `Host`, replacing the
//! client's (RFC 9112 §3.2.2), as in `prepare_request`. Where this differs
//! from it, on purpose:
//! - no `Host` at all (HTTP/1.0): an empty `Host` is sent, as RFC 9112 §3.2
//!   requires of an HTTP/1.1 request with no authority (hyper sent none);
//! - `Host`, the framing fields and `X-Forwarded-*` named in `Connection`
//!   are not dropped: they are never hop-by-hop (`never_hop_by_hop`);
//! - field names keep the client's spelling (hyper lowercased them);
//!   `Host` goes first, our own fields last.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName};

use super::parse::{Name, RequestHead, ResponseHead, Version};
use super::{Framing, Span};

/// What a forwarded request depends on besides its head.
#[derive(Clone, Copy, Debug)]
pub struct ForwardOpts {
    /// The client address appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The client connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The route lets this request upgrade: keep `Upgrade` and send
    /// `Connection: upgrade`.
    pub allow_upgrade: bool,
}

/// Names a `Connection` list cannot make hop-by-hop: `Host` (routing),
/// the framing fields (the proxy frames every body itself) and the
/// `X-Forwarded-*` fields (the proxy's own record of the path).
pub(crate) fn never_hop_by_hop(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"x-forwarded-";
    name.eq_ignore_ascii_case(b"host")
        || name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || (name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
}

/// The names a `Connection` value lists that may be dropped: elements
/// trimmed, empty ones and never-hop-by-hop ones skipped.
pub(crate) fn connection_names(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|n| !n.is_empty() && !never_hop_by_hop(n))
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Fields a trailer section must not carry (RFC 9110 §6.5.1): framing,
/// routing, hop-by-hop, request controls, authentication, content
/// metadata, and `Trailer` itself. `X-Forwarded-*` is the proxy's.
static NOT_TRAILERS: [&HeaderName; 22] = [
    &header::CONTENT_LENGTH,
    &header::TRANSFER_ENCODING,
    &header::HOST,
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
    &header::TE,
    &header::UPGRADE,
    &header::TRAILER,
    &header::EXPECT,
    &header::MAX_FORWARDS,
    &header::CACHE_CONTROL,
    &header::PRAGMA,
    &header::RANGE,
    &header::AUTHORIZATION,
    &header::WWW_AUTHENTICATE,
    &header::SET_COOKIE,
    &header::CONTENT_ENCODING,
    &header::CONTENT_TYPE,
    &header::CONTENT_RANGE,
];

/// Removes from a trailer section (either direction) every field a trailer
/// must not carry ([`NOT_TRAILERS`], `X-Forwarded-*`) and the names its
/// `Connection` lists.
pub(crate) fn strip_trailers(t: &mut HeaderMap) {
    let drop: Vec<HeaderName> = t
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| connection_names(v.as_bytes()))
        .filter_map(|n| HeaderName::from_bytes(n).ok())
        .chain(
            t.keys()
                .filter(|n| NOT_TRAILERS.contains(n) || n.as_str().starts_with("x-forwarded-"))
                .cloned(),
        )
        .collect();
    for n in drop {
        t.remove(n);
    }
}

/// `name` is listed in `Connection` and so dropped (see [`never_hop_by_hop`]).
fn listed(connection: &[Span], buf: &[u8], name: &[u8]) -> bool {
    !connection.is_empty()
        && !never_hop_by_hop(name)
        && connection
            .iter()
            .any(|c| c.get(buf).eq_ignore_ascii_case(name))
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The framing field line for `f` (none for no body or until-close).
pub(crate) fn framing_line(out: &mut Vec<u8>, f: Framing) {
    match f {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

/// Appends the upstream request head for `head` (parsed from `buf`) to
/// `out`: `METHOD origin-form HTTP/1.1`, then the fields.
pub fn encode_request(head: &RequestHead, buf: &[u8], o: &ForwardOpts, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.get(buf));
    out.push(b' ');
    let path = head.path.get(buf);
    if path.first() != Some(&b'/') && path != b"*" {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let host = head.authority.or(head.host);
    line(out, b"host", host.map_or(&[][..], |h| h.get(buf)));

    let conn = &head.connection[..];
    let upgrade = o.allow_upgrade && head.upgrade;
    let mut xff_lines = 0usize;
    for f in &head.fields {
        let keep = match f.kind {
            Name::Host | Name::ContentLength | Name::XForwardedProto | Name::XForwardedHost => {
                false
            }
            Name::XForwardedFor => {
                xff_lines += 1;
                false
            }
            Name::Upgrade => upgrade,
            k if k.is_hop_by_hop() => false,
            _ => !listed(conn, buf, f.name.get(buf)),
        };
        if keep {
            line(out, f.name.get(buf), f.value.get(buf));
        }
    }
    if head.te_trailers {
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    framing_line(out, head.framing);

    out.extend_from_slice(b"x-forwarded-for: ");
    if xff_lines > 0 {
        for f in head.fields.iter().filter(|f| f.kind == Name::XForwardedFor) {
            out.extend_from_slice(f.value.get(buf));
            out.extend_from_slice(b", ");
        }
    }
    push_ip(out, o.client_ip);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(if o.tls {
        b"x-forwarded-proto: https\r\n"
    } else {
        b"x-forwarded-proto: http\r\n"
    });
    if let Some(h) = host {
        line(out, b"x-forwarded-host", h.get(buf));
    }
    out.extend_from_slice(b"\r\n");
}

/// The client address as text (IPv4-mapped IPv6 as IPv4), without `fmt`
/// for IPv4.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// What a response toward the client depends on besides its head.
#[derive(Clone, Copy, Debug)]
pub struct ResponseOpts {
    /// The client's request version (no chunked toward HTTP/1.0).
    pub client_version: Version,
    /// The client connection may stay open (its request's `keep_alive`, and
    /// false when the proxy is draining).
    pub client_keep_alive: bool,
    /// The request was a HEAD.
    pub head_request: bool,
    /// A 101 answer to an allowed upgrade: keep `Upgrade`, send
    /// `Connection: upgrade`.
    pub upgrade: bool,
}

/// How the body goes to the client after [`encode_response`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToClient {
    /// `None`, `Length(n)` (copy as is), `Chunked` (re-chunk what the
    /// upstream framing yields) or `Close` (raw bytes, then close).
    pub(crate) framing: Framing,
    /// Close the client connection after this response.
    pub(crate) close: bool,
}

/// Appends the client response head for `head` (parsed from `buf`) to `out`.
/// An interim (1xx) head is written without framing or `Connection` (and
/// must not be sent to an HTTP/1.0 client: RFC 9110 §15.2).
pub fn encode_response(
    head: &ResponseHead,
    buf: &[u8],
    o: &ResponseOpts,
    out: &mut Vec<u8>,
) -> ToClient {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(head.status));
    out.push(b' ');
    if head.reason.is_empty() {
        let canon = http::StatusCode::from_u16(head.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        out.extend_from_slice(canon.as_bytes());
    } else {
        out.extend_from_slice(head.reason.get(buf));
    }
    out.extend_from_slice(b"\r\n");

    let switching = head.status == 101 && o.upgrade;
    let conn = &head.connection[..];
    for f in &head.fields {
        let keep = match f.kind {
            Name::ContentLength => false,
            Name::Upgrade => switching,
            k if k.is_hop_by_hop() => false,
            _ => !listed(conn, buf, f.name.get(buf)),
        };
        if keep {
            line(out, f.name.get(buf), f.value.get(buf));
        }
    }
    if head.interim {
        out.extend_from_slice(b"\r\n");
        return ToClient {
            framing: Framing::None,
            close: false,
        };
    }
    if switching {
        out.extend_from_slice(b"connection: upgrade\r\n\r\n");
        return ToClient {
            framing: Framing::None,
            close: false,
        };
    }
    let http10 = o.client_version == Version::Http10;
    let framing = match head.framing {
        Framing::Chunked | Framing::Close if http10 => Framing::Close,
        Framing::Chunked | Framing::Close => Framing::Chunked,
        f => f,
    };
    match framing {
        Framing::None => {
            // HEAD and 304 keep the length of the representation.
            let keeps_length = o.head_request || head.status == 304;
            if let (true, Some(n)) = (keeps_length, head.content_length) {
                framing_line(out, Framing::Length(n));
            }
        }
        f => framing_line(out, f),
    }
    let close = !o.client_keep_alive || framing == Framing::Close;
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    ToClient { framing, close }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::parse::{parse_request, parse_response, Limits, Progress};

    fn parse(s: &[u8]) -> RequestHead {
        let mut h = RequestHead::default();
        assert!(matches!(
            parse_request(s, &Limits::default(), &mut h),
            Ok(Progress::Complete(_))
        ));
        h
    }

    fn opts() -> ForwardOpts {
        ForwardOpts {
            client_ip: "192.0.2.7".parse().unwrap(),
            tls: false,
            allow_upgrade: false,
        }
    }

    fn forward(s: &str, o: &ForwardOpts) -> String {
        let h = parse(s.as_bytes());
        let mut out = Vec::new();
        encode_request(&h, s.as_bytes(), o, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Lowercased (name, value) pairs, sorted: what a backend would see.
    fn fields(s: &[u8]) -> Vec<(String, String)> {
        let h = parse(s);
        let mut v: Vec<_> = h
            .fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(f.name.get(s)).to_ascii_lowercase(),
                    String::from_utf8_lossy(f.value.get(s)).into_owned(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn request_rewrite() {
        let s = "POST http://db.example:2379/v3/kv/put?x=1 HTTP/1.1\r\nHost: db.example:2379\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic x\r\nTE: trailers, deflate\r\nUpgrade: websocket\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nX-Forwarded-Proto: https\r\nX-Keep: yes\r\n\r\n";
        assert_eq!(
            forward(s, &opts()),
            "POST /v3/kv/put?x=1 HTTP/1.1\r\nhost: db.example:2379\r\nTrailer: X-Sum\r\nX-Keep: yes\r\nte: trailers\r\ntransfer-encoding: chunked\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\nx-forwarded-proto: http\r\nx-forwarded-host: db.example:2379\r\n\r\n"
        );
        let s = "GET http://h?q HTTP/1.1\r\nHost: other\r\nConnection: host, x-forwarded-for\r\nX-Forwarded-For: 1.1.1.1\r\nUpgrade: websocket\r\n\r\n";
        let o = ForwardOpts {
            tls: true,
            allow_upgrade: true,
            client_ip: "::ffff:10.1.2.3".parse().unwrap(),
        };
        assert_eq!(
            forward(s, &o),
            "GET /?q HTTP/1.1\r\nhost: h\r\nUpgrade: websocket\r\nconnection: upgrade\r\nx-forwarded-for: 1.1.1.1, 10.1.2.3\r\nx-forwarded-proto: https\r\nx-forwarded-host: h\r\n\r\n"
        );
        assert_eq!(
            forward("GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n", &opts()),
            "GET / HTTP/1.1\r\nhost: \r\ncontent-length: 0\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    /// The same heads through `proxy::headers::prepare_request` give the
    /// same fields, apart from the framing fields (re-emitted from the
    /// decision here, by hyper's client there) and the field-name case.
    #[test]
    fn matches_prepare_request() {
        let heads = [
            "GET /a?b=1 HTTP/1.1\r\nHost: db.example\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n\r\n",
            "POST /v3/kv/put HTTP/1.1\r\nHost: h:1\r\nContent-Length: 12\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\nX-B: 2\r\nTE: trailers\r\n\r\n",
            "PUT /k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\nX-Forwarded-Host: spoof\r\nX-Forwarded-Proto: https\r\nUpgrade: h2c\r\nKeep-Alive: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
            "DELETE /x HTTP/1.1\r\nhost: h\r\nProxy-Authorization: x\r\nProxy-Connection: close\r\n\r\n",
        ];
        for s in heads {
            let h = parse(s.as_bytes());
            let b = s.as_bytes();
            let mut req = http::Request::builder()
                .method(h.method.get(b))
                .uri(h.target.get(b));
            for f in &h.fields {
                req = req.header(f.name.get(b), f.value.get(b));
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            crate::proxy::headers::prepare_request(&mut parts, "192.0.2.7".parse().unwrap(), false);
            let mut theirs: Vec<(String, String)> = parts
                .headers
                .iter()
                .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            theirs.sort();
            let mut out = Vec::new();
            encode_request(&h, b, &opts(), &mut out);
            let ours: Vec<_> = fields(&out)
                .into_iter()
                .filter(|(n, _)| n != "content-length" && n != "transfer-encoding")
                .collect();
            assert_eq!(ours, theirs, "{s}");
            let re = parse(&out);
            assert_eq!(re.framing, h.framing);
            assert_eq!(
                re.path.get(&out),
                parts.uri.path_and_query().unwrap().as_str().as_bytes()
            );
        }
    }

    fn respond(s: &str, o: &ResponseOpts, head_req: bool) -> (String, ToClient) {
        let mut h = ResponseHead::default();
        parse_response(s.as_bytes(), &Limits::default(), head_req, &mut h).unwrap();
        let mut out = Vec::new();
        let t = encode_response(&h, s.as_bytes(), o, &mut out);
        (String::from_utf8(out).unwrap(), t)
    }

    #[test]
    fn response_rewrite() {
        let v11 = ResponseOpts {
            client_version: Version::Http11,
            client_keep_alive: true,
            head_request: false,
            upgrade: false,
        };
        let (s, t) = respond(
            "HTTP/1.1 200 OK\r\nContent-Type: a\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n",
            &v11,
            false,
        );
        assert_eq!(s, "HTTP/1.1 200 OK\r\nContent-Type: a\r\nTrailer: grpc-status\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(
            t,
            ToClient {
                framing: Framing::Chunked,
                close: false
            }
        );
        // Read-until-close upstream: re-chunked for 1.1, raw then close for 1.0.
        let (s, t) = respond("HTTP/1.0 200 \r\n\r\n", &v11, false);
        assert_eq!(s, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(t.framing, Framing::Chunked);
        let v10 = ResponseOpts {
            client_version: Version::Http10,
            ..v11
        };
        let (s, t) = respond(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &v10,
            false,
        );
        assert_eq!(s, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        assert_eq!(
            t,
            ToClient {
                framing: Framing::Close,
                close: true
            }
        );
        let (s, t) = respond("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", &v10, false);
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
        assert!(!t.close);
        // HEAD and 304 keep the representation's length; 204 has none.
        let (s, t) = respond(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &ResponseOpts {
                head_request: true,
                ..v11
            },
            true,
        );
        assert_eq!(s, "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n");
        assert_eq!(t.framing, Framing::None);
        let (s, _) = respond(
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            &v11,
            false,
        );
        assert_eq!(s, "HTTP/1.1 204 No Content\r\n\r\n");
        let close = ResponseOpts {
            client_keep_alive: false,
            ..v11
        };
        let (s, t) = respond(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            &close,
            false,
        );
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        assert!(t.close);
        let (s, _) = respond("HTTP/1.1 100 Continue\r\n\r\n", &v11, false);
        assert_eq!(s, "HTTP/1.1 100 Continue\r\n\r\n");
        let up = ResponseOpts {
            upgrade: true,
            ..v11
        };
        let (s, _) = respond(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            &up,
            false,
        );
        assert_eq!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        );
    }
}

//! Differential test of `leaderproxy::h1` against hyper's HTTP/1 server.
//!
//! Every message of the corpus (valid, odd-but-valid, hostile) goes to both:
//! hyper's `server::conn::http1` over an in-process duplex pipe, whose service
//! records what it got (method, target, headers, declared length, body,
//! trailers), and our parser plus body decoder. Then:
//! - hyper rejects -> we must reject;
//! - hyper accepts, we accept -> same method, target, version, headers,
//!   length and body bytes (and trailers);
//! - hyper accepts, we reject -> only for the cases marked `Stricter`, each
//!   with its reason (and a case marked so must really be accepted by hyper,
//!   so the list below stays true).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use leaderproxy::h1::framing::{encode_chunk, encode_last_chunk};
use leaderproxy::h1::{
    encode_request, parse_request, ChunkedDecoder, Decoded, ForwardOpts, Framing, Limits, Progress,
    RequestHead,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    /// Origin-form target, or for absolute-form `authority` + path-and-query.
    authority: Option<String>,
    path: String,
    http11: bool,
    headers: Vec<(String, Vec<u8>)>,
    length: Option<u64>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

/// What hyper's HTTP/1 server made of `input` (`None`: it refused). The
/// forwarded request may carry up to 3 more fields (`X-Forwarded-*`) than
/// the client's, so the upstream side allows that many more.
async fn hyper_sees(input: &[u8], max_headers: usize) -> Option<Seen> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let length = body.size_hint().exact();
            let chunked = parts.headers.get(http::header::TRANSFER_ENCODING).is_some();
            let collected = body.collect().await;
            let seen = collected.ok().map(|c| {
                let trailers = c.trailers().map_or_else(Vec::new, |t| pairs(t.iter()));
                let mut headers = pairs(parts.headers.iter());
                headers.sort();
                Seen {
                    method: parts.method.to_string(),
                    authority: parts.uri.authority().map(|a| a.to_string()),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or("/".into(), |p| p.to_string()),
                    http11: parts.version == http::Version::HTTP_11,
                    headers,
                    length: if chunked { None } else { length },
                    body: c.to_bytes().to_vec(),
                    trailers,
                }
            });
            let _ = tx.send(seen);
            Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
        }
    });
    let conn = tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .max_headers(max_headers)
            .half_close(true)
            .serve_connection(TokioIo::new(server), svc)
            .await;
    });
    let _ = client.write_all(input).await;
    let _ = client.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    rx.try_recv().ok().flatten()
}

fn pairs<'a>(
    it: impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>,
) -> Vec<(String, Vec<u8>)> {
    it.map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// What our codec makes of `input`: head, then body by the decided framing.
fn we_see(input: &[u8]) -> Result<Seen, String> {
    let mut head = RequestHead::default();
    let n = match parse_request(input, &Limits::default(), &mut head) {
        Ok(Progress::Complete(n)) => n,
        Ok(Progress::NeedMore) => return Err("incomplete head".into()),
        Err(e) => return Err(format!("{} {}", e.status(), e.reason())),
    };
    let rest = &input[n..];
    let (length, body, trailers) = match head.framing {
        Framing::None => (Some(0), Vec::new(), Vec::new()),
        Framing::Length(len) => {
            let len = len as usize;
            if rest.len() < len {
                return Err("body shorter than Content-Length".into());
            }
            (Some(len as u64), rest[..len].to_vec(), Vec::new())
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::default();
            let mut pos = 0;
            let mut body = Vec::new();
            loop {
                let (used, ev) = dec
                    .decode(&rest[pos..])
                    .map_err(|e| format!("chunked: {e}"))?;
                let base = pos;
                pos += used;
                match ev {
                    Decoded::Data(r) => body.extend_from_slice(&rest[base + r.start..base + r.end]),
                    Decoded::NeedMore => return Err("incomplete chunked body".into()),
                    Decoded::End { trailers } => {
                        let t = &rest[base + trailers.start..base + trailers.end];
                        break (None, body, trailer_pairs(t));
                    }
                }
            }
        }
        Framing::Close => unreachable!("requests are never close-delimited"),
    };
    let mut headers: Vec<_> = head
        .fields
        .iter()
        .map(|f| {
            (
                String::from_utf8_lossy(f.name.get(input)).to_ascii_lowercase(),
                f.value.get(input).to_vec(),
            )
        })
        .collect();
    headers.sort();
    let text = |s: leaderproxy::h1::Span| String::from_utf8_lossy(s.get(input)).into_owned();
    let path = text(head.path);
    Ok(Seen {
        method: text(head.method),
        authority: head.authority.map(text),
        path: if path.starts_with('/') || path == "*" {
            path
        } else {
            format!("/{path}")
        },
        http11: head.version == Some(leaderproxy::h1::Version::Http11),
        headers,
        length,
        body,
        trailers,
    })
}

fn trailer_pairs(t: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut t_full = t.to_vec();
    t_full.extend_from_slice(b"\r\n");
    match httparse::parse_headers(&t_full, &mut slots) {
        Ok(httparse::Status::Complete((_, hs))) => hs
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect(),
        _ => panic!("decoder passed trailers httparse refuses"),
    }
}

/// The message we would send upstream for `input`: the rewritten head and
/// the body re-framed by the decision.
fn forwarded(input: &[u8]) -> Vec<u8> {
    let mut head = RequestHead::default();
    let Ok(Progress::Complete(_)) = parse_request(input, &Limits::default(), &mut head) else {
        unreachable!("only called on accepted messages")
    };
    let o = ForwardOpts {
        client_ip: "192.0.2.7".parse().unwrap(),
        tls: false,
        allow_upgrade: false,
    };
    let mut out = Vec::new();
    encode_request(&head, input, &o, &mut out);
    let seen = we_see(input).unwrap();
    match head.framing {
        Framing::Chunked => {
            encode_chunk(&seen.body, &mut out);
            let mut t = Vec::new();
            for (name, v) in &seen.trailers {
                t.extend_from_slice(name.as_bytes());
                t.extend_from_slice(b": ");
                t.extend_from_slice(v);
                t.extend_from_slice(b"\r\n");
            }
            encode_last_chunk(&t, &mut out);
        }
        _ => out.extend_from_slice(&seen.body),
    }
    out
}

/// What must survive forwarding: everything but the fields a proxy rewrites.
fn end_to_end(mut s: Seen, hop: &[String]) -> Seen {
    const REWRITTEN: [&str; 11] = [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ];
    s.headers
        .retain(|(n, _)| !REWRITTEN.contains(&n.as_str()) && !hop.contains(n));
    s.authority = None;
    s.http11 = true;
    s
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// Both must agree (both accept the same thing, or both refuse).
    Agree,
    /// hyper accepts, we refuse on purpose: the reason.
    Stricter(&'static str),
}

use Want::*;

const CL_TE: &str = "Content-Length with Transfer-Encoding: hyper prefers chunked (RFC 9112 §6.3 allows it); a proxy that does forwards the classic desync shape, so we refuse";
const CL_DUP: &str = "equal duplicate Content-Length: RFC 9110 §8.6 allows accepting them, we refuse (strict choice, no second value to disagree on)";
const TE_CODING: &str = "transfer coding other than chunked before chunked: we re-emit the framing and could not forward it faithfully, 501";
const TE_EMPTY: &str = "empty element in Transfer-Encoding (`, chunked`): hyper reads only the last element; we refuse any empty one, so `chunked,` and `, chunked` are treated alike";
const NO_HOST: &str = "HTTP/1.1 without Host: RFC 9112 §3.2 requires a 400; hyper does not check";
const MANY_HOST: &str = "several Host fields: RFC 9112 §3.2 requires a 400; hyper does not check";
const BAD_HOST: &str = "Host with bytes no authority can hold: hyper does not check Host";
const CONNECT: &str = "CONNECT: this proxy does not tunnel (405); hyper hands it to the service";
const FRAGMENT: &str =
    "fragment in the request target: not part of request-target grammar; hyper drops it silently";
const FORM: &str = "target form hyper's Uri accepts but a proxy should not forward (authority-form without CONNECT, * without OPTIONS, userinfo, non-http scheme)";
const LINE_LIMIT: &str = "request line over our 8 KiB limit (hyper allows a 64 KiB URI): 414";
const CHUNK_WS: &str = "whitespace after the chunk size without an extension: not in RFC 9112 §7.1.1 (BWS only before ';'); hyper tolerates it";
const CHUNK_EXT: &str =
    "malformed chunk extension: hyper skips extension bytes unchecked, we parse RFC 9112 §7.1.1";

fn h(req_line: &str, fields: &[&str], body: &str) -> Vec<u8> {
    let mut s = String::from(req_line);
    s.push_str("\r\n");
    for f in fields {
        s.push_str(f);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

fn corpus() -> Vec<(String, Vec<u8>, Want)> {
    let mut c: Vec<(String, Vec<u8>, Want)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, w: Want| c.push((name.to_string(), bytes, w));

    // --- Valid: methods x targets x framings.
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "M-SEARCH",
    ];
    let targets = [
        "/",
        "/v3/kv/range",
        "/v2/keys/a?wait=true&recursive=true",
        "/%7Euser/a%20b",
        "/a/b/../c;p=1",
        "/q?x=a|b{c}^`'[]\\/?",
        "/p{\"json\":1}|^[]\\;,=@!$&'()*+",
        "/é",
    ];
    for m in methods {
        for t in targets {
            add(
                &format!("{m} {t}"),
                h(
                    &format!("{m} {t} HTTP/1.1"),
                    &["Host: db:2379", "User-Agent: curl/8.5.0", "Accept: */*"],
                    "",
                ),
                Agree,
            );
        }
    }
    let etcd_put = r#"{"key":"Zm9v","value":"YmFy"}"#;
    let bodies: [(&str, Vec<String>, String); 6] = [
        (
            "cl",
            vec![format!("Content-Length: {}", etcd_put.len())],
            etcd_put.to_string(),
        ),
        ("cl0", vec!["Content-Length: 0".into()], String::new()),
        (
            "cl leading zeros",
            vec!["Content-Length: 005".into()],
            "hello".into(),
        ),
        (
            "chunked",
            vec!["Transfer-Encoding: chunked".into()],
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into(),
        ),
        (
            "chunked ext",
            vec!["Transfer-Encoding: chunked".into()],
            "5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n".into(),
        ),
        (
            "chunked trailers",
            vec!["Transfer-Encoding: chunked".into(), "Trailer: X-Sum".into()],
            "A\r\n0123456789\r\n0\r\nX-Sum: 42\r\nX-Other: a b\r\n\r\n".into(),
        ),
    ];
    for (name, fields, body) in &bodies {
        for m in ["POST", "PUT", "GET", "DELETE"] {
            let mut f = vec![
                "Host: 127.0.0.1:2379".to_string(),
                "Content-Type: application/json".to_string(),
            ];
            f.extend(fields.iter().cloned());
            let f: Vec<&str> = f.iter().map(|s| s.as_str()).collect();
            add(
                &format!("{m} body {name}"),
                h(&format!("{m} /v3/kv/put HTTP/1.1"), &f, body),
                Agree,
            );
        }
    }
    for (name, bytes) in [
        (
            "chunked upper hex",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: chunked"],
                "A\r\n0123456789\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked leading zero size",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: chunked"],
                "0005\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked CHUNKED case",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: CHUNKED"],
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked spaces around",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding:   chunked   "],
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked ext BWS",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: chunked"],
                "5 ; a = b\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked many chunks",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: chunked"],
                &"1\r\nx\r\n".repeat(50).to_string().add("0\r\n\r\n"),
            ),
        ),
        (
            "chunked binary",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: chunked"],
                "4\r\n\r\n\r\n\r\n0\r\n\r\n",
            ),
        ),
        (
            "header name case",
            h(
                "GET / HTTP/1.1",
                &["hOsT: a", "ACCEPT: x", "x-MiXeD: y"],
                "",
            ),
        ),
        (
            "no space after colon",
            h("GET / HTTP/1.1", &["Host:a", "X:b"], ""),
        ),
        (
            "many spaces and tabs",
            h("GET / HTTP/1.1", &["Host: \t a \t", "X:\t\tb  c\t"], ""),
        ),
        (
            "empty values",
            h(
                "GET / HTTP/1.1",
                &["Host: a", "X-Empty:", "X-Empty2: ", "X-Empty3:\t"],
                "",
            ),
        ),
        (
            "obs-text value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \xff\r\n\r\n".to_vec(),
        ),
        (
            "long header",
            h(
                "GET / HTTP/1.1",
                &["Host: a", &format!("Cookie: {}", "c=1; ".repeat(1600))],
                "",
            ),
        ),
        (
            "long target",
            h(
                &format!("GET /{} HTTP/1.1", "a".repeat(7000)),
                &["Host: a"],
                "",
            ),
        ),
        (
            "200 headers",
            h(
                "GET / HTTP/1.1",
                &(0..200)
                    .map(|i| format!("X-{i}: {i}"))
                    .chain(["Host: a".into()])
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
                "",
            ),
        ),
        (
            "256 headers",
            h(
                "GET / HTTP/1.1",
                &(0..255)
                    .map(|i| format!("X-{i}: {i}"))
                    .chain(["Host: a".into()])
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
                "",
            ),
        ),
        (
            "duplicate fields",
            h(
                "GET / HTTP/1.1",
                &[
                    "Host: a",
                    "Cookie: a=1",
                    "Cookie: b=2",
                    "Accept: x",
                    "accept: y",
                ],
                "",
            ),
        ),
        (
            "absolute-form",
            h(
                "GET http://db:2379/v3/kv/range?x=1 HTTP/1.1",
                &["Host: db:2379"],
                "",
            ),
        ),
        (
            "absolute-form https",
            h("GET https://db/x HTTP/1.1", &["Host: db"], ""),
        ),
        (
            "absolute-form no path",
            h("GET http://db:2379 HTTP/1.1", &["Host: db:2379"], ""),
        ),
        (
            "absolute-form upper scheme",
            h("GET HTTP://DB/x HTTP/1.1", &["Host: DB"], ""),
        ),
        (
            "absolute-form ipv6",
            h(
                "GET http://[::1]:2379/x HTTP/1.1",
                &["Host: [::1]:2379"],
                "",
            ),
        ),
        ("options star", h("OPTIONS * HTTP/1.1", &["Host: a"], "")),
        ("1.0 no host", h("GET / HTTP/1.0", &[], "")),
        (
            "1.0 keep-alive",
            h("GET / HTTP/1.0", &["Connection: keep-alive", "Host: a"], ""),
        ),
        (
            "1.0 post cl",
            h("POST /x HTTP/1.0", &["Content-Length: 5"], "hello"),
        ),
        ("1.0 absolute", h("GET http://a/x HTTP/1.0", &[], "")),
        (
            "leading empty line",
            [&b"\r\n"[..], &h("GET / HTTP/1.1", &["Host: a"], "")].concat(),
        ),
        (
            "bare LF head",
            b"GET / HTTP/1.1\nHost: a\nX: y\n\n".to_vec(),
        ),
        (
            "mixed line ends",
            b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n".to_vec(),
        ),
        (
            "expect continue",
            h(
                "PUT /k HTTP/1.1",
                &["Host: a", "Expect: 100-continue", "Content-Length: 5"],
                "hello",
            ),
        ),
        (
            "connection list",
            h(
                "GET / HTTP/1.1",
                &[
                    "Host: a",
                    "Connection: keep-alive, X-Foo, close",
                    "X-Foo: 1",
                ],
                "",
            ),
        ),
        (
            "connection lines",
            h(
                "GET / HTTP/1.1",
                &[
                    "Host: a",
                    "Connection: X-Foo",
                    "X-Foo: 1",
                    "Connection: X-Bar, Host, X-Forwarded-For",
                    "X-Bar: 2",
                    "X-Forwarded-For: 1.1.1.1",
                ],
                "",
            ),
        ),
        (
            "te trailers",
            h(
                "POST /g HTTP/1.1",
                &[
                    "Host: a",
                    "TE: trailers",
                    "Content-Type: application/grpc",
                    "Content-Length: 0",
                ],
                "",
            ),
        ),
        (
            "upgrade",
            h(
                "GET /ws HTTP/1.1",
                &["Host: a", "Connection: Upgrade", "Upgrade: websocket"],
                "",
            ),
        ),
        (
            "xff lines",
            h(
                "GET / HTTP/1.1",
                &[
                    "Host: a",
                    "X-Forwarded-For: 1.1.1.1",
                    "X-Forwarded-For: 2.2.2.2, 3.3.3.3",
                ],
                "",
            ),
        ),
        (
            "host with port and chars",
            h("GET / HTTP/1.1", &["Host: my_host-1.example.com:8080"], ""),
        ),
        ("host empty", h("GET / HTTP/1.1", &["Host:"], "")),
        (
            "cl with spaces around",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Content-Length:  5 "],
                "hello",
            ),
        ),
        (
            "te empty elements",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Transfer-Encoding: , chunked,"],
                "0\r\n\r\n",
            ),
        ),
        (
            "extra body bytes pipelined",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Content-Length: 5"],
                "helloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
        ),
        (
            "trailer in head kept",
            h(
                "POST / HTTP/1.1",
                &["Host: a", "Trailer: Expires", "Transfer-Encoding: chunked"],
                "0\r\nExpires: never\r\n\r\n",
            ),
        ),
        (
            "hyphen method",
            h("X-CUSTOM-METHOD / HTTP/1.1", &["Host: a"], ""),
        ),
        ("lowercase method", h("get / HTTP/1.1", &["Host: a"], "")),
        (
            "lowercase connect",
            h("connect / HTTP/1.1", &["Host: a"], ""),
        ),
    ] {
        add(name, bytes, Agree);
    }

    // --- Hostile: both refuse.
    let post = |fields: &[&str], body: &str| {
        let mut f = vec!["Host: a"];
        f.extend_from_slice(fields);
        h("POST / HTTP/1.1", &f, body)
    };
    for (name, bytes) in [
        ("cl differing", post(&["Content-Length: 5", "Content-Length: 6"], "hello!")),
        ("cl list differing", post(&["Content-Length: 5, 6"], "hello!")),
        ("cl plus", post(&["Content-Length: +5"], "hello")),
        ("cl minus", post(&["Content-Length: -5"], "hello")),
        ("cl inner space", post(&["Content-Length: 5 5"], "hello")),
        ("cl hex", post(&["Content-Length: 0x5"], "hello")),
        ("cl suffix", post(&["Content-Length: 5a"], "hello")),
        ("cl empty", post(&["Content-Length:"], "")),
        ("cl overflow", post(&["Content-Length: 99999999999999999999"], "")),
        ("cl underscore", post(&["Content-Length: 1_0"], "")),
        ("cl decimal", post(&["Content-Length: 5.0"], "hello")),
        ("te gzip only", post(&["Transfer-Encoding: gzip"], "")),
        ("te identity", post(&["Transfer-Encoding: identity"], "")),
        ("te chunked then gzip", post(&["Transfer-Encoding: chunked, gzip"], "0\r\n\r\n")),
        ("te two lines gzip last", post(&["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"], "0\r\n\r\n")),
        ("te xchunked", post(&["Transfer-Encoding: xchunked"], "0\r\n\r\n")),
        ("te chunked-false", post(&["Transfer-Encoding: chunked-false"], "0\r\n\r\n")),
        ("te empty", post(&["Transfer-Encoding:"], "")),
        ("te trailing comma", post(&["Transfer-Encoding: chunked,"], "0\r\n\r\n")),
        ("te only commas", post(&["Transfer-Encoding: ,"], "")),
        ("path with <", h("GET /a<b HTTP/1.1", &["Host: a"], "")),
        ("path with backtick", h("GET /a`b HTTP/1.1", &["Host: a"], "")),
        ("query with quote", h("GET /a?b=\"c\" HTTP/1.1", &["Host: a"], "")),
        ("query with >", h("GET /a?b>c HTTP/1.1", &["Host: a"], "")),
        ("te with VT", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n".to_vec()),
        ("te in 1.0", h("POST / HTTP/1.0", &["Transfer-Encoding: chunked"], "0\r\n\r\n")),
        ("te in 1.0 with cl", h("POST / HTTP/1.0", &["Transfer-Encoding: chunked", "Content-Length: 5"], "hello")),
        ("obs-fold cl", post(&["Content-Length: 5", " 6"], "hello!")),
        ("obs-fold te", post(&["Transfer-Encoding:", " chunked"], "0\r\n\r\n")),
        ("obs-fold tab", post(&["X-A: a", "\tb"], "")),
        ("obs-fold first", h("GET / HTTP/1.1", &[" Host: a"], "")),
        ("space before colon cl", post(&["Content-Length : 5"], "hello")),
        ("space before colon te", post(&["Transfer-Encoding : chunked"], "0\r\n\r\n")),
        ("tab before colon", post(&["Transfer-Encoding\t: chunked"], "0\r\n\r\n")),
        ("space in name", h("GET / HTTP/1.1", &["Host: a", "X Y: z"], "")),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n".to_vec()),
        ("NUL in name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: b\r\n\r\n".to_vec()),
        ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n".to_vec()),
        ("bare CR line end", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n".to_vec()),
        ("bare CR request line", b"GET / HTTP/1.1\rHost: a\r\n\r\n".to_vec()),
        ("CTL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n".to_vec()),
        ("DEL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n".to_vec()),
        ("non-token name", h("GET / HTTP/1.1", &["Host: a", "X(y): z"], "")),
        ("empty name", h("GET / HTTP/1.1", &["Host: a", ": z"], "")),
        ("no colon", h("GET / HTTP/1.1", &["Host: a", "Xyz"], "")),
        ("method with space", h("GE T / HTTP/1.1", &["Host: a"], "")),
        ("method with @", h("G@T / HTTP/1.1", &["Host: a"], "")),
        ("method tab", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("empty method", h(" / HTTP/1.1", &["Host: a"], "")),
        ("double space", h("GET  / HTTP/1.1", &["Host: a"], "")),
        ("space in target", h("GET /a b HTTP/1.1", &["Host: a"], "")),
        ("NUL in target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("DEL in target", b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("invalid utf8 target", b"GET /a\xff HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("http/1.2", h("GET / HTTP/1.2", &["Host: a"], "")),
        ("http/2.0", h("GET / HTTP/2.0", &["Host: a"], "")),
        ("http/0.9", h("GET / HTTP/0.9", &["Host: a"], "")),
        ("http lowercase", h("GET / http/1.1", &["Host: a"], "")),
        ("http/1", h("GET / HTTP/1", &["Host: a"], "")),
        ("version suffix", h("GET / HTTP/1.1x", &["Host: a"], "")),
        ("trailing space", h("GET / HTTP/1.1 ", &["Host: a"], "")),
        ("no version", h("GET /", &["Host: a"], "")),
        ("too many headers", h("GET / HTTP/1.1", &(0..257).map(|i| format!("X-{i}: {i}")).chain(["Host: a".into()]).collect::<Vec<_>>().iter().map(|s| s.as_str()).collect::<Vec<_>>(), "")),
        ("truncated head", b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec()),
        ("truncated body", post(&["Content-Length: 10"], "hello")),
        ("chunk size hex prefix", post(&["Transfer-Encoding: chunked"], "0x5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size negative", post(&["Transfer-Encoding: chunked"], "-5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size g", post(&["Transfer-Encoding: chunked"], "g\r\nhello\r\n0\r\n\r\n")),
        ("chunk size overflow", post(&["Transfer-Encoding: chunked"], "fffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
        ("chunk size empty", post(&["Transfer-Encoding: chunked"], "\r\nhello\r\n0\r\n\r\n")),
        ("chunk data too long", post(&["Transfer-Encoding: chunked"], "3\r\nhello\r\n0\r\n\r\n")),
        ("chunk missing CRLF", post(&["Transfer-Encoding: chunked"], "5\r\nhello0\r\n\r\n")),
        ("chunk CR only", post(&["Transfer-Encoding: chunked"], "5\rhello\r\n0\r\n\r\n")),
        ("chunk truncated", post(&["Transfer-Encoding: chunked"], "5\r\nhel")),
        ("chunk no last chunk", post(&["Transfer-Encoding: chunked"], "5\r\nhello\r\n")),
        ("chunk leading space", post(&["Transfer-Encoding: chunked"], " 5\r\nhello\r\n0\r\n\r\n")),
        ("trailer obs-fold", post(&["Transfer-Encoding: chunked"], "0\r\nX: a\r\n b\r\n\r\n")),
        ("trailer space before colon", post(&["Transfer-Encoding: chunked"], "0\r\nX : a\r\n\r\n")),
        ("trailer NUL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\x00\r\n\r\n".to_vec()),
("chunk size bare LF", post(&["Transfer-Encoding: chunked"], "5\nhello\r\n0\r\n\r\n")),
        ("chunk data bare LF", post(&["Transfer-Encoding: chunked"], "5\r\nhello\n0\r\n\r\n")),
        ("last chunk bare LF", post(&["Transfer-Encoding: chunked"], "5\r\nhello\r\n0\n\n")),
        ("trailer bare LF", post(&["Transfer-Encoding: chunked"], "0\r\nX: a\n\r\n")),
                ("trailer no final line", post(&["Transfer-Encoding: chunked"], "0\r\nX: a\r\n")),
    ] {
        add(name, bytes, Agree);
    }

    // --- Hostile or unusual: hyper accepts, we refuse on purpose.
    for (name, bytes, why) in [
        ("cl then te", post(&["Content-Length: 5", "Transfer-Encoding: chunked"], "0\r\n\r\n"), CL_TE),
        ("te then cl", post(&["Transfer-Encoding: chunked", "Content-Length: 5"], "0\r\n\r\n"), CL_TE),
        ("te then bad cl", post(&["Transfer-Encoding: chunked", "Content-Length: x"], "0\r\n\r\n"), CL_TE),
        ("cl dup equal", post(&["Content-Length: 5", "Content-Length: 5"], "hello"), CL_DUP),
        ("te gzip chunked", post(&["Transfer-Encoding: gzip, chunked"], "0\r\n\r\n"), TE_CODING),
        ("te two lines chunked last", post(&["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], "0\r\n\r\n"), TE_CODING),
        ("te chunked twice", post(&["Transfer-Encoding: chunked, chunked"], "0\r\n\r\n"), "chunked applied twice: RFC 9112 §6.1 forbids it; hyper looks at the last coding only"),
        ("te leading comma", post(&["Transfer-Encoding: , chunked"], "0\r\n\r\n"), TE_EMPTY),
        ("no host", h("GET / HTTP/1.1", &[], ""), NO_HOST),
        ("no host absolute", h("GET http://a/ HTTP/1.1", &[], ""), NO_HOST),
        ("two hosts", h("GET / HTTP/1.1", &["Host: a", "Host: b"], ""), MANY_HOST),
        ("two equal hosts", h("GET / HTTP/1.1", &["Host: a", "Host: a"], ""), MANY_HOST),
        ("host with space", h("GET / HTTP/1.1", &["Host: a b"], ""), BAD_HOST),
        ("host with slash", h("GET / HTTP/1.1", &["Host: a/b"], ""), BAD_HOST),
        ("host with at", h("GET / HTTP/1.1", &["Host: u@a"], ""), BAD_HOST),
        ("host obs-text", b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n".to_vec(), BAD_HOST),
        ("connect", h("CONNECT db:443 HTTP/1.1", &["Host: db:443"], ""), CONNECT),
        ("connect origin", h("CONNECT / HTTP/1.1", &["Host: db"], ""), CONNECT),
        ("fragment", h("GET /a#frag HTTP/1.1", &["Host: a"], ""), FRAGMENT),
        ("authority-form get", h("GET db:80 HTTP/1.1", &["Host: db"], ""), FORM),
        ("star get", h("GET * HTTP/1.1", &["Host: db"], ""), FORM),
        ("userinfo", h("GET http://u:p@db/ HTTP/1.1", &["Host: db"], ""), FORM),
        ("ftp scheme", h("GET ftp://db/ HTTP/1.1", &["Host: db"], ""), FORM),
        ("long request line", h(&format!("GET /{} HTTP/1.1", "a".repeat(9000)), &["Host: a"], ""), LINE_LIMIT),
        ("chunk size trailing space", post(&["Transfer-Encoding: chunked"], "5 \r\nhello\r\n0\r\n\r\n"), CHUNK_WS),
        ("chunk ext empty", post(&["Transfer-Encoding: chunked"], "5;\r\nhello\r\n0\r\n\r\n"), CHUNK_EXT),
        ("chunk ext unterminated quote", post(&["Transfer-Encoding: chunked"], "5;a=\"b\r\nhello\r\n0\r\n\r\n"), CHUNK_EXT),
        ("chunk ext NUL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n".to_vec(), CHUNK_EXT),
        ("chunk ext bad token", post(&["Transfer-Encoding: chunked"], "5;a b\r\nhello\r\n0\r\n\r\n"), CHUNK_EXT),
                                    ] {
        add(name, bytes, Stricter(why));
    }
    c
}

fn clone(s: &Seen) -> Seen {
    Seen {
        method: s.method.clone(),
        authority: s.authority.clone(),
        path: s.path.clone(),
        http11: s.http11,
        headers: s.headers.clone(),
        length: s.length,
        body: s.body.clone(),
        trailers: s.trailers.clone(),
    }
}

trait Add {
    fn add(self, s: &str) -> String;
}
impl Add for String {
    fn add(mut self, s: &str) -> String {
        self.push_str(s);
        self
    }
}

#[tokio::test]
async fn differential_against_hyper() {
    let corpus = corpus();
    assert!(corpus.len() >= 200, "corpus has {} messages", corpus.len());
    let mut failures = Vec::new();
    let (mut both_accept, mut both_refuse, mut stricter) = (0, 0, 0);
    for (name, input, want) in &corpus {
        let theirs = hyper_sees(input, 256).await;
        let ours = we_see(input);
        match (&theirs, &ours, want) {
            (Some(t), Ok(o), Agree) => {
                if t == o {
                    both_accept += 1;
                    // And the request we would forward is, to hyper, the same
                    // request less what a proxy rewrites.
                    let fwd = forwarded(input);
                    let hop: Vec<String> = t
                        .headers
                        .iter()
                        .filter(|(n, _)| n == "connection")
                        .flat_map(|(_, v)| {
                            String::from_utf8_lossy(v)
                                .split(',')
                                .map(|e| e.trim().to_ascii_lowercase())
                                .collect::<Vec<_>>()
                        })
                        .filter(|n| n != "host")
                        .collect();
                    match hyper_sees(&fwd, 256 + 3).await {
                        Some(again) => {
                            let before = end_to_end(
                                Seen {
                                    length: t.length.filter(|_| t.method != "HEAD"),
                                    ..clone(t)
                                },
                                &hop,
                            );
                            let mut after = end_to_end(again, &hop);
                            after.length = after.length.filter(|_| t.method != "HEAD");
                            let mut before = before;
                            before.headers.retain(|(n, _)| n != "content-length");
                            after.headers.retain(|(n, _)| n != "content-length");
                            if before != after {
                                failures.push(format!(
                                    "{name}: forwarded request differs:\n  before {before:?}\n  after  {after:?}"
                                ));
                            }
                        }
                        None => failures.push(format!(
                            "{name}: hyper refuses our forwarded request {:?}",
                            String::from_utf8_lossy(&fwd)
                        )),
                    }
                } else {
                    failures.push(format!(
                        "{name}: both accept, differ:\n  hyper {t:?}\n  ours  {o:?}"
                    ));
                }
            }
            (None, Err(_), Agree) => both_refuse += 1,
            (None, Ok(o), _) => failures.push(format!("{name}: hyper refuses, we accept {o:?}")),
            (Some(_), Err(e), Agree) => failures.push(format!(
                "{name}: hyper accepts, we refuse ({e}) and it is not listed"
            )),
            (Some(_), Err(_), Stricter(_)) => stricter += 1,
            (Some(_), Ok(_), Stricter(why)) => {
                failures.push(format!("{name}: listed as stricter ({why}) but we accept"))
            }
            (None, Err(_), Stricter(why)) => failures.push(format!(
                "{name}: listed as stricter ({why}) but hyper refuses too"
            )),
        }
    }
    println!(
        "{} messages: {both_accept} accepted by both (equivalent), {both_refuse} refused by both, {stricter} refused by us only (listed)",
        corpus.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

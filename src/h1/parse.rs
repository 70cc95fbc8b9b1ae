//! Request and response heads: `httparse` for the syntax, then one pass over
//! the fields that takes every framing and connection decision and refuses
//! every ambiguous shape (RFC 9112 §2–7, RFC 9110).
//!
//! Strict choices, each deliberate (the differential test lists where hyper
//! is more lenient):
//! - Content-Length: one field with one value, `1*DIGIT`, no overflow. Equal
//!   duplicates (`5, 5` or two `5` lines), which RFC 9110 §8.6 allows a
//!   recipient to accept, are refused: no well-behaved client sends them and
//!   any second value is a place for two parsers to disagree.
//! - Content-Length together with Transfer-Encoding: refused (RFC 9112 §6.3
//!   lets a server either refuse or prefer chunked; a proxy that prefers
//!   chunked forwards the desync shape to whoever is behind it).
//! - Transfer-Encoding: exactly one `chunked` coding, last. `chunked` not last
//!   or twice, or an empty list: 400; any other coding (`gzip, chunked`):
//!   501, because the framing is re-emitted and another coding could not be
//!   forwarded faithfully. In an HTTP/1.0 request: 400.
//! - Versions: only `HTTP/1.0` and `HTTP/1.1`; another well-formed
//!   `HTTP/d.d` is 505 (what hyper answers), anything else 400.
//! - Request target: origin-form (`/…`), absolute-form with an `http` or
//!   `https` scheme and no userinfo, `*` only for OPTIONS. Authority-form
//!   (only meaningful for CONNECT) and fragments (`#`, never sent by a
//!   client) are 400. `CONNECT` itself is [`HeadError::Connect`] (405).
//! - `Host`: required in HTTP/1.1 (also with absolute-form), at most one, and
//!   made only of the characters an authority may hold.
//! - Bare LF line endings in the head are accepted (RFC 9112 §2.2 allows it,
//!   hyper does the same, and the forwarded head is always re-serialised with
//!   CRLF, so no one behind us can read them differently). Bare CR, NUL, other
//!   controls, obsolete line folding and whitespace before the colon are 400.

use std::mem::MaybeUninit;

use super::fields::{check_authority, check_target, Decided};
pub use super::head::{
    Field, HeadError, Limits, Name, Progress, RequestHead, ResponseHead, Version,
};
use super::{Framing, Span};

/// httparse needs header slots; this many live on the stack (uninitialised,
/// so they cost nothing), more come from the heap.
const STACK_HEADERS: usize = 256;

type Slot<'b> = MaybeUninit<httparse::Header<'b>>;

/// Parses a request head from the start of `buf` into `head`.
///
/// `Ok(NeedMore)` when the head is incomplete and within the limits;
/// `Ok(Complete(n))` when `buf[..n]` is a valid head (`head` filled in).
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Progress, HeadError> {
    let max = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(max)];
    let mut stack: [Slot<'_>; STACK_HEADERS] = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut heap: Vec<Slot<'_>>;
    let slots: &mut [Slot<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![MaybeUninit::uninit(); limits.max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(window, slots);
    let line = request_line(window);
    let line_len = line.map_or(window.len(), |l| l.len());
    if line_len > limits.max_request_line {
        return Err(HeadError::RequestLineTooLong);
    }
    let n = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max {
                return Err(HeadError::HeadTooLarge);
            }
            return Ok(Progress::NeedMore);
        }
        Err(e) => {
            return Err(match e {
                httparse::Error::Token if req.method.is_none() => HeadError::BadMethod,
                httparse::Error::Token => HeadError::BadTarget,
                httparse::Error::Version => version_error(line),
                httparse::Error::HeaderName => HeadError::BadHeaderName,
                httparse::Error::HeaderValue => HeadError::BadHeaderValue,
                httparse::Error::NewLine => HeadError::BadLineEnding,
                httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
                httparse::Error::Status => HeadError::BadTarget,
            })
        }
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::BadTarget);
    };
    let version = if minor == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    let method = method.as_bytes();
    if method == b"CONNECT" {
        return Err(HeadError::Connect);
    }
    let target = target.as_bytes();

    head.fields.clear();
    head.connection.clear();
    head.method = Span::of(buf, method);
    head.target = Span::of(buf, target);
    head.version = Some(version);
    head.is_head = method == b"HEAD";
    head.head_len = n;
    head.authority = None;
    head.path = head.target;
    check_target(buf, method, target, head)?;

    let http11 = version == Version::Http11;
    let mut d = Decided::default();
    for h in req.headers.iter() {
        let f = field(buf, h);
        d.take(buf, &f, http11, &mut head.connection)?;
        head.fields.push(f);
    }
    let framing = d.framing(http11)?;
    if d.hosts > 1 {
        return Err(HeadError::MultipleHost);
    }
    if http11 && d.hosts == 0 {
        return Err(HeadError::MissingHost);
    }
    if let Some(h) = d.host {
        check_authority(h.get(buf))?;
    }
    head.framing = framing;
    head.host = d.host;
    head.keep_alive = !d.close && (http11 || d.keep_alive);
    head.expect_continue = http11 && d.expect_continue;
    head.upgrade = http11 && d.upgrade;
    head.te_trailers = d.te_trailers;
    Ok(Progress::Complete(n))
}

/// Parses a response head from the start of `buf`, for a request that was
/// (`head_request`) or was not a HEAD. Any error is a 502 for the client.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    head_request: bool,
    head: &mut ResponseHead,
) -> Result<Progress, HeadError> {
    let max = limits.max_head_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(max)];
    let mut stack: [Slot<'_>; STACK_HEADERS] = [MaybeUninit::uninit(); STACK_HEADERS];
    let mut heap: Vec<Slot<'_>>;
    let slots: &mut [Slot<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![MaybeUninit::uninit(); limits.max_headers];
        &mut heap
    };
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, window, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max {
                return Err(HeadError::HeadTooLarge);
            }
            return Ok(Progress::NeedMore);
        }
        Err(e) => {
            return Err(match e {
                httparse::Error::Version => HeadError::BadVersion,
                httparse::Error::HeaderName => HeadError::BadHeaderName,
                httparse::Error::HeaderValue => HeadError::BadHeaderValue,
                httparse::Error::NewLine => HeadError::BadLineEnding,
                httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
                httparse::Error::Status | httparse::Error::Token => HeadError::BadStatus,
            })
        }
    };
    let (Some(minor), Some(status), Some(reason)) = (resp.version, resp.code, resp.reason) else {
        return Err(HeadError::BadStatus);
    };
    if status < 100 {
        return Err(HeadError::BadStatus);
    }
    let http11 = minor == 1;
    head.fields.clear();
    head.connection.clear();
    head.status = status;
    head.reason = if reason.is_empty() {
        Span::default()
    } else {
        Span::of(buf, reason.as_bytes())
    };
    head.version = Some(if http11 {
        Version::Http11
    } else {
        Version::Http10
    });
    head.head_len = n;
    let mut d = Decided::default();
    for h in resp.headers.iter() {
        let f = field(buf, h);
        d.take(buf, &f, http11, &mut head.connection)?;
        head.fields.push(f);
    }
    // Validated whatever the status: a broken framing header is a broken
    // backend even where the body's length does not depend on it.
    let declared = d.framing(http11)?;
    head.content_length = d.length;
    head.interim = (100..200).contains(&status) && status != 101;
    let bodyless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    head.framing = match declared {
        _ if bodyless => Framing::None,
        Framing::None => Framing::Close,
        f => f,
    };
    head.keep_alive =
        !d.close && (http11 || d.keep_alive) && !matches!(head.framing, Framing::Close);
    Ok(Progress::Complete(n))
}

/// The first line of a request (after the empty lines a client may send
/// first), without its line ending, or `None` if no line ending is there yet.
fn request_line(buf: &[u8]) -> Option<&[u8]> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// 505 for a well-formed `HTTP/d.d` we do not speak, 400 for anything else.
fn version_error(line: Option<&[u8]>) -> HeadError {
    let Some(line) = line else {
        return HeadError::BadVersion;
    };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (_, _, v) = (parts.next(), parts.next(), parts.next());
    match v {
        Some([b'H', b'T', b'T', b'P', b'/', a, b'.', b])
            if a.is_ascii_digit() && b.is_ascii_digit() =>
        {
            HeadError::UnsupportedVersion
        }
        _ => HeadError::BadVersion,
    }
}

fn field(buf: &[u8], h: &httparse::Header<'_>) -> Field {
    let name = Span::of(buf, h.name.as_bytes());
    // An empty value may point anywhere; anchor it at the name's end.
    let value = if h.value.is_empty() {
        Span {
            start: name.end,
            end: name.end,
        }
    } else {
        Span::of(buf, h.value)
    };
    Field {
        name,
        value,
        kind: Name::of(h.name.as_bytes()),
    }
}

/// Request target forms (RFC 9112 §3.2). Fills `path` and `authority`.
#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<RequestHead, HeadError> {
        let mut h = RequestHead::default();
        match parse_request(s.as_bytes(), &Limits::default(), &mut h)? {
            Progress::Complete(n) => {
                assert_eq!(n, h.head_len);
                Ok(h)
            }
            Progress::NeedMore => panic!("incomplete: {s:?}"),
        }
    }

    fn err(s: &str) -> HeadError {
        req(s).expect_err(s)
    }

    #[test]
    fn typical_request() {
        let s = "POST /v3/kv/put HTTP/1.1\r\nHost: db:2379\r\nContent-Length: 12\r\nConnection: keep-alive, X-Foo\r\nTE: trailers\r\nExpect: 100-continue\r\n\r\n";
        let h = req(s).unwrap();
        let b = s.as_bytes();
        assert_eq!(h.method.get(b), b"POST");
        assert_eq!(h.target.get(b), b"/v3/kv/put");
        assert_eq!(h.version, Some(Version::Http11));
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive && h.expect_continue && h.te_trailers && !h.upgrade);
        assert_eq!(h.host.unwrap().get(b), b"db:2379");
        let conn: Vec<_> = h.connection.iter().map(|c| c.get(b)).collect();
        assert_eq!(conn, [&b"keep-alive"[..], b"X-Foo"]);
        assert_eq!(h.fields.len(), 5);
        assert_eq!(h.fields[1].kind, Name::ContentLength);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!req("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !req(
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
            )
            .unwrap()
            .keep_alive
        );
        // 1.0: Expect and Upgrade are ignored.
        let h = req("GET / HTTP/1.0\r\nExpect: 100-continue\r\nUpgrade: x\r\n\r\n").unwrap();
        assert!(!h.expect_continue && !h.upgrade);
    }

    #[test]
    fn absolute_form() {
        let s = "GET http://Example.com:80?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
        let h = req(s).unwrap();
        assert_eq!(h.authority.unwrap().get(s.as_bytes()), b"Example.com:80");
        assert_eq!(h.path.get(s.as_bytes()), b"?x=1");
        assert_eq!(
            err("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadTarget
        );
        assert_eq!(
            err("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadTarget
        );
        assert_eq!(
            err("GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadTarget
        );
        assert_eq!(
            err("GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadTarget
        );
        assert!(req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").is_ok());
        assert_eq!(
            err("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadTarget
        );
    }

    #[test]
    fn refused_shapes_and_statuses() {
        use HeadError::*;
        let cases: &[(&str, HeadError, u16)] = &[
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthAndTransferEncoding, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", MultipleContentLength, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", MultipleContentLength, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", BadContentLength, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", BadContentLength, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", BadContentLength, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTransferCoding, 501),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding, 501),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadTransferEncoding, 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadTransferEncoding, 400),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TransferEncodingInHttp10, 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", BadHeaderName, 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n", BadHeaderName, 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", BadHeaderValue, 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", BadHeaderValue, 400),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", BadMethod, 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", UnsupportedVersion, 505),
            ("GET / HTTP/1.x\r\nHost: a\r\n\r\n", BadVersion, 400),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", Connect, 405),
            ("GET / HTTP/1.1\r\n\r\n", MissingHost, 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", MultipleHost, 400),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadHost, 400),
        ];
        for (s, e, status) in cases {
            assert_eq!(err(s), *e, "{s:?}");
            assert_eq!(e.status(), *status);
        }
    }

    #[test]
    fn limits_and_need_more() {
        let l = Limits {
            max_headers: 2,
            max_head_bytes: 64,
            max_request_line: 20,
        };
        let mut h = RequestHead::default();
        let p = |s: &str, h: &mut RequestHead| parse_request(s.as_bytes(), &l, h);
        assert_eq!(p("GET / HTTP/1.1\r\nHo", &mut h), Ok(Progress::NeedMore));
        assert_eq!(p("", &mut h), Ok(Progress::NeedMore));
        assert_eq!(
            p("GET /aaaaaaaaaaaaaaaaaaaaa", &mut h),
            Err(HeadError::RequestLineTooLong)
        );
        assert_eq!(
            p("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &mut h),
            Err(HeadError::TooManyHeaders)
        );
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nA: {}", "x".repeat(60));
        assert_eq!(p(&big, &mut h), Err(HeadError::HeadTooLarge));
        assert_eq!(HeadError::HeadTooLarge.status(), 431);
        assert_eq!(HeadError::RequestLineTooLong.status(), 414);
    }

    fn resp(s: &str, head_req: bool) -> Result<ResponseHead, HeadError> {
        let mut h = ResponseHead::default();
        match parse_response(s.as_bytes(), &Limits::default(), head_req, &mut h)? {
            Progress::Complete(_) => Ok(h),
            Progress::NeedMore => panic!("incomplete"),
        }
    }

    #[test]
    fn response_framing() {
        let r = |s: &str| resp(s, false).unwrap();
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").framing,
            Framing::Length(3)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        let c = r("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(c.framing, Framing::Close);
        assert!(!c.keep_alive);
        for s in [
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        ] {
            assert_eq!(r(s).framing, Framing::None);
        }
        let head = resp("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap();
        assert_eq!(
            (head.framing, head.content_length),
            (Framing::None, Some(9))
        );
        let c = r("HTTP/1.1 100 Continue\r\n\r\n");
        assert!(c.interim && c.framing == Framing::None);
        assert!(r("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").interim);
        assert!(!r("HTTP/1.1 101 Switching Protocols\r\n\r\n").interim);
        assert!(!r("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            r("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n").keep_alive
        );
        assert!(!r("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").keep_alive);
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
        ] {
            assert!(resp(bad, false).is_err(), "{bad:?}");
        }
    }
}

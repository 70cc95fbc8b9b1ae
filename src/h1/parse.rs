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

use super::{Framing, Span};

/// Bounds on a head. The defaults follow the issue: 256 fields, 64 KiB, an
/// 8 KiB request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most field lines in a head (431 past it).
    pub max_headers: usize,
    /// Most bytes in a head, request line and final empty line included
    /// (431 past it).
    pub max_head_bytes: usize,
    /// Most bytes in the request line, line ending excluded (414 past it).
    pub max_request_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 256,
            max_head_bytes: 64 * 1024,
            max_request_line: 8 * 1024,
        }
    }
}

/// Outcome of a parse that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The head is complete and this many bytes long; the body starts there.
    Complete(usize),
    /// The head is not complete yet and nothing is wrong so far: read more.
    NeedMore,
}

/// Why a head is refused. For a request, [`HeadError::status`] is the answer;
/// a response head that fails to parse is always a 502, whatever the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The method is not a token.
    BadMethod,
    /// The request target is malformed or of a form we do not forward.
    BadTarget,
    /// The version is not `HTTP/DIGIT.DIGIT`.
    BadVersion,
    /// A well-formed version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// The status line of a response is malformed (or the code is below 100).
    BadStatus,
    /// An invalid byte in a field name: whitespace before the colon, obsolete
    /// line folding, a non-token byte.
    BadHeaderName,
    /// An invalid byte in a field value: NUL, bare CR, other controls.
    BadHeaderValue,
    /// A line ending that is neither CRLF nor LF.
    BadLineEnding,
    /// HTTP/1.1 request without `Host`.
    MissingHost,
    /// More than one `Host` field.
    MultipleHost,
    /// A `Host` (or absolute-form authority) with bytes an authority cannot hold.
    BadHost,
    /// A Content-Length value that is not `1*DIGIT` or does not fit in 64 bits.
    BadContentLength,
    /// More than one Content-Length field or value, even equal ones.
    MultipleContentLength,
    /// Both Content-Length and Transfer-Encoding.
    ContentLengthAndTransferEncoding,
    /// Transfer-Encoding whose `chunked` is not the final coding, appears
    /// twice, or that lists no coding.
    BadTransferEncoding,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferCoding,
    /// Transfer-Encoding in an HTTP/1.0 message.
    TransferEncodingInHttp10,
    /// The CONNECT method (405): this proxy does not tunnel.
    Connect,
    /// Request line longer than [`Limits::max_request_line`] (414).
    RequestLineTooLong,
    /// More field lines than [`Limits::max_headers`] (431).
    TooManyHeaders,
    /// Head longer than [`Limits::max_head_bytes`] (431).
    HeadTooLarge,
}

impl HeadError {
    /// The status a client gets for a request head refused this way.
    pub fn status(self) -> u16 {
        use HeadError::*;
        match self {
            Connect => 405,
            RequestLineTooLong => 414,
            TooManyHeaders | HeadTooLarge => 431,
            UnsupportedTransferCoding => 501,
            UnsupportedVersion => 505,
            BadMethod
            | BadTarget
            | BadVersion
            | BadStatus
            | BadHeaderName
            | BadHeaderValue
            | BadLineEnding
            | MissingHost
            | MultipleHost
            | BadHost
            | BadContentLength
            | MultipleContentLength
            | ContentLengthAndTransferEncoding
            | BadTransferEncoding
            | TransferEncodingInHttp10 => 400,
        }
    }

    /// A short reason, for the error body and logs.
    pub fn reason(self) -> &'static str {
        use HeadError::*;
        match self {
            BadMethod => "invalid method",
            BadTarget => "invalid request target",
            BadVersion => "invalid HTTP version",
            UnsupportedVersion => "HTTP version not supported",
            BadStatus => "invalid status line",
            BadHeaderName => "invalid header name",
            BadHeaderValue => "invalid header value",
            BadLineEnding => "invalid line ending",
            MissingHost => "missing Host header",
            MultipleHost => "more than one Host header",
            BadHost => "invalid Host header",
            BadContentLength => "invalid Content-Length",
            MultipleContentLength => "more than one Content-Length",
            ContentLengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            BadTransferEncoding => "chunked must be the final transfer coding, once",
            UnsupportedTransferCoding => "transfer coding not implemented",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
            Connect => "CONNECT is not allowed",
            RequestLineTooLong => "request line too long",
            TooManyHeaders => "too many header fields",
            HeadTooLarge => "header section too large",
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HeadError {}

/// HTTP/1.x minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Field names the codec acts on, recognised once while parsing so that
/// rewriting compares a byte, not a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    ProxyAuthorization,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
}

impl Name {
    /// Classifies a field name (case-insensitive).
    pub fn of(n: &[u8]) -> Name {
        let eq = |s: &[u8]| n.eq_ignore_ascii_case(s);
        match n.len() {
            2 if eq(b"te") => Name::Te,
            4 if eq(b"host") => Name::Host,
            6 if eq(b"expect") => Name::Expect,
            7 if eq(b"upgrade") => Name::Upgrade,
            10 if eq(b"connection") => Name::Connection,
            10 if eq(b"keep-alive") => Name::KeepAlive,
            14 if eq(b"content-length") => Name::ContentLength,
            15 if eq(b"x-forwarded-for") => Name::XForwardedFor,
            16 if eq(b"proxy-connection") => Name::ProxyConnection,
            16 if eq(b"x-forwarded-host") => Name::XForwardedHost,
            17 if eq(b"transfer-encoding") => Name::TransferEncoding,
            17 if eq(b"x-forwarded-proto") => Name::XForwardedProto,
            19 if eq(b"proxy-authorization") => Name::ProxyAuthorization,
            _ => Name::Other,
        }
    }

    /// Hop-by-hop fields (RFC 9110 §7.6.1), never forwarded as received.
    /// `Trailer` is end-to-end and not among them.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::ProxyAuthorization
                | Name::Te
                | Name::TransferEncoding
                | Name::Upgrade
        )
    }
}

/// One field line: name and value (surrounding whitespace trimmed) as spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    pub kind: Name,
}

/// A parsed request head. Reuse one across requests: parsing clears it and
/// keeps its vectors' capacity.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: Span,
    /// The request target as received.
    pub target: Span,
    /// What goes upstream as the target: the target itself for origin-form
    /// and `*`; for absolute-form the part after the authority (empty or
    /// starting with `?` means `/` must be written first).
    pub path: Span,
    /// The authority of an absolute-form target.
    pub authority: Option<Span>,
    pub version: Option<Version>,
    pub fields: Vec<Field>,
    /// How the body is delimited: `None`, `Length(n)` or `Chunked`.
    pub framing: Framing,
    /// The client connection stays open after this exchange (1.1 unless
    /// `Connection: close`; 1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue` (ignored in 1.0, RFC 9110 §10.1.1).
    pub expect_continue: bool,
    /// HTTP/1.1 with an `Upgrade` field (ignored in 1.0, RFC 9110 §7.8).
    pub upgrade: bool,
    /// `TE` lists `trailers`.
    pub te_trailers: bool,
    /// The value of the single `Host` field.
    pub host: Option<Span>,
    /// The names listed in `Connection` (all lines, empty elements skipped).
    pub connection: Vec<Span>,
    /// The method is HEAD (its response has no body).
    pub is_head: bool,
    /// Bytes of the head; the body starts here.
    pub head_len: usize,
}

/// A parsed response head.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Span,
    pub version: Option<Version>,
    pub fields: Vec<Field>,
    /// `None` (HEAD, 1xx, 204, 304), `Length(n)`, `Chunked` or `Close`
    /// (read until the backend closes).
    pub framing: Framing,
    /// The valid Content-Length, if any (kept for HEAD and 304 answers,
    /// where it describes the representation, not this message).
    pub content_length: Option<u64>,
    /// The upstream connection may be reused after this response.
    pub keep_alive: bool,
    /// 1xx other than 101: another head follows on the same connection.
    pub interim: bool,
    /// The names listed in `Connection`.
    pub connection: Vec<Span>,
    pub head_len: usize,
}

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
fn check_target(
    buf: &[u8],
    method: &[u8],
    target: &[u8],
    head: &mut RequestHead,
) -> Result<(), HeadError> {
    // httparse allows any visible byte and UTF-8; a fragment is never part of
    // a request target.
    match target.first() {
        Some(b'/') => path_chars(target),
        Some(b'*') if target.len() == 1 => {
            if method == b"OPTIONS" {
                Ok(())
            } else {
                Err(HeadError::BadTarget)
            }
        }
        _ => {
            let rest = strip_prefix_ci(target, b"http://")
                .or_else(|| strip_prefix_ci(target, b"https://"))
                .ok_or(HeadError::BadTarget)?;
            let end = rest
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(rest.len());
            let authority = &rest[..end];
            if authority.is_empty() || authority.contains(&b'@') {
                return Err(HeadError::BadTarget);
            }
            check_authority(authority).map_err(|_| HeadError::BadTarget)?;
            head.authority = Some(Span::of(buf, authority));
            let path = &rest[end..];
            path_chars(path)?;
            head.path = if path.is_empty() {
                Span {
                    start: head.target.end,
                    end: head.target.end,
                }
            } else {
                Span::of(buf, path)
            };
            Ok(())
        }
    }
}

/// The bytes a path and a query may hold. httparse lets through any visible
/// byte; these are the ones hyper's `Uri` (the WHATWG URL sets) refuses, plus
/// `#`, which hyper would cut off silently: a fragment is never part of a
/// request target.
fn path_chars(pq: &[u8]) -> Result<(), HeadError> {
    let q = pq.iter().position(|&b| b == b'?').unwrap_or(pq.len());
    let (path, query) = pq.split_at(q);
    let bad_path = path.iter().any(|b| matches!(b, b'<' | b'>' | b'`' | b'#'));
    let bad_query = query.iter().any(|b| matches!(b, b'"' | b'<' | b'>' | b'#'));
    if bad_path || bad_query {
        Err(HeadError::BadTarget)
    } else {
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// An authority (`Host` value): reg-name, IPv4 or IP-literal, optional port.
/// Checked by character class only (unreserved, pct-encoded, sub-delims,
/// `:`, `[`, `]`), which is what keeps spaces, `@`, `/` and controls out.
fn check_authority(a: &[u8]) -> Result<(), HeadError> {
    let ok = a.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    });
    if ok {
        Ok(())
    } else {
        Err(HeadError::BadHost)
    }
}

/// Elements of a comma-separated list, trimmed, empty ones skipped
/// (RFC 9110 §5.6.1).
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// What the fields say, gathered in one pass.
#[derive(Default)]
struct Decided {
    hosts: u32,
    host: Option<Span>,
    lengths: u32,
    length: Option<u64>,
    bad_length: bool,
    te: bool,
    /// Codings seen so far, and whether the last one was `chunked`.
    chunked_last: bool,
    chunked_seen: bool,
    chunked_not_last: bool,
    other_coding: bool,
    te_http10: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    te_trailers: bool,
}

impl Decided {
    fn take(
        &mut self,
        buf: &[u8],
        f: &Field,
        http11: bool,
        connection: &mut Vec<Span>,
    ) -> Result<(), HeadError> {
        let v = f.value.get(buf);
        match f.kind {
            Name::Host => {
                self.hosts += 1;
                self.host = Some(f.value);
            }
            Name::ContentLength => {
                self.lengths += 1;
                match content_length(v) {
                    Some(n) => self.length = Some(n),
                    // `5, 5`: a list of valid lengths is a second length.
                    None if v.contains(&b',')
                        && v.split(|&b| b == b',')
                            .all(|e| content_length(e.trim_ascii()).is_some()) =>
                    {
                        self.lengths += 1
                    }
                    None => self.bad_length = true,
                }
            }
            Name::TransferEncoding => {
                self.te = true;
                if !http11 {
                    self.te_http10 = true;
                }
                // Empty elements are refused here, not skipped: `chunked,`
                // ends in an empty coding for hyper and others.
                for c in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if c.is_empty() {
                        self.chunked_not_last = true;
                        continue;
                    }
                    if self.chunked_last {
                        // Something after chunked, or chunked twice.
                        self.chunked_not_last = true;
                    }
                    if c.eq_ignore_ascii_case(b"chunked") {
                        if self.chunked_seen {
                            self.chunked_not_last = true;
                        }
                        self.chunked_seen = true;
                        self.chunked_last = true;
                    } else {
                        self.other_coding = true;
                        self.chunked_last = false;
                    }
                }
            }
            Name::Connection => {
                for c in list(v) {
                    if c.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if c.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    }
                    connection.push(Span::of(buf, c));
                }
            }
            Name::Expect if v.eq_ignore_ascii_case(b"100-continue") => {
                self.expect_continue = true;
            }
            Name::Upgrade => self.upgrade = true,
            Name::Te if list(v).any(|t| t.eq_ignore_ascii_case(b"trailers")) => {
                self.te_trailers = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// The body framing the fields declare, or why they are refused.
    fn framing(&self, http11: bool) -> Result<Framing, HeadError> {
        if self.te {
            if self.te_http10 || !http11 {
                return Err(HeadError::TransferEncodingInHttp10);
            }
            if self.lengths > 0 {
                return Err(HeadError::ContentLengthAndTransferEncoding);
            }
            if self.chunked_not_last || !self.chunked_seen && !self.other_coding {
                return Err(HeadError::BadTransferEncoding);
            }
            if self.other_coding {
                return Err(if self.chunked_last {
                    HeadError::UnsupportedTransferCoding
                } else if self.chunked_seen {
                    HeadError::BadTransferEncoding
                } else {
                    // Only unknown codings: 501 (RFC 9112 §6.1).
                    HeadError::UnsupportedTransferCoding
                });
            }
            return Ok(Framing::Chunked);
        }
        if self.bad_length {
            return Err(HeadError::BadContentLength);
        }
        if self.lengths > 1 {
            return Err(HeadError::MultipleContentLength);
        }
        Ok(self.length.map_or(Framing::None, Framing::Length))
    }
}

/// `1*DIGIT` that fits in a u64.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

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

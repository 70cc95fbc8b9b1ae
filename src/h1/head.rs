//! What a parsed head says: the request and response heads as spans into
//! the buffer they were parsed from, with every decision the proxy needs
//! taken once (framing, keep-alive, `Expect`, `Upgrade`, `TE: trailers`,
//! the names listed in `Connection`), the limits a head is parsed under,
//! and the typed errors a refused head gets ([`HeadError`]).

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
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// Field names the codec acts on, recognised once while parsing so that
/// rewriting compares a byte, not a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// Any field the codec does not act on.
    Other,
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection`.
    ProxyConnection,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// `TE`.
    Te,
    /// `Upgrade`.
    Upgrade,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
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
    /// The field name as received.
    pub name: Span,
    /// The value, leading and trailing whitespace trimmed.
    pub value: Span,
    /// The name, recognised once.
    pub kind: Name,
}

/// A parsed request head. Reuse one across requests: parsing clears it and
/// keeps its vectors' capacity.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    /// The method token.
    pub method: Span,
    /// The request target as received.
    pub target: Span,
    /// What goes upstream as the target: the target itself for origin-form
    /// and `*`; for absolute-form the part after the authority (empty or
    /// starting with `?` means `/` must be written first).
    pub path: Span,
    /// The authority of an absolute-form target.
    pub authority: Option<Span>,
    /// The version; `None` until a head was parsed.
    pub version: Option<Version>,
    /// The field lines, in order.
    pub fields: Vec<Field>,
    /// How the body is delimited: `None`, `Length(n)` or `Chunked`.
    pub framing: Framing,
    /// The client connection stays open after this exchange (1.1 unless
    /// `Connection: close`; 1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.1 with `Expect: 100-continue` (ignored in 1.0, RFC 9110 §10.1.1).
    pub(crate) expect_continue: bool,
    /// HTTP/1.1 with an `Upgrade` field (ignored in 1.0, RFC 9110 §7.8).
    pub(crate) upgrade: bool,
    /// `TE` lists `trailers`.
    pub te_trailers: bool,
    /// The value of the single `Host` field.
    pub host: Option<Span>,
    /// The names listed in `Connection` (all lines, empty elements skipped).
    pub connection: Vec<Span>,
    /// The method is HEAD (its response has no body).
    pub(crate) is_head: bool,
    /// Bytes of the head; the body starts here.
    pub(crate) head_len: usize,
}

/// A parsed response head.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) reason: Span,
    pub(crate) version: Option<Version>,
    pub(crate) fields: Vec<Field>,
    /// `None` (HEAD, 1xx, 204, 304), `Length(n)`, `Chunked` or `Close`
    /// (read until the backend closes).
    pub(crate) framing: Framing,
    /// The valid Content-Length, if any (kept for HEAD and 304 answers,
    /// where it describes the representation, not this message).
    pub(crate) content_length: Option<u64>,
    /// The upstream connection may be reused after this response.
    pub(crate) keep_alive: bool,
    /// 1xx other than 101: another head follows on the same connection.
    pub(crate) interim: bool,
    /// The names listed in `Connection`.
    pub(crate) connection: Vec<Span>,
    pub(crate) head_len: usize,
}

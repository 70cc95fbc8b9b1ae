//! The one pass over a head's fields and its target that takes the framing
//! and connection decisions and refuses every ambiguous shape: request
//! target forms, `Host`, `Content-Length` and `Transfer-Encoding` rules
//! (see [`super::parse`] for the strict choices and why).

use super::head::{Field, HeadError, Name, RequestHead};
use super::{Framing, Span};

pub(super) fn check_target(
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
pub(super) fn path_chars(pq: &[u8]) -> Result<(), HeadError> {
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

pub(super) fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// An authority (`Host` value): reg-name, IPv4 or IP-literal, optional port.
/// Checked by character class only (unreserved, pct-encoded, sub-delims,
/// `:`, `[`, `]`), which is what keeps spaces, `@`, `/` and controls out.
pub(super) fn check_authority(a: &[u8]) -> Result<(), HeadError> {
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
pub(super) fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// What the fields say, gathered in one pass.
#[derive(Default)]
pub(super) struct Decided {
    pub(super) hosts: u32,
    pub(super) host: Option<Span>,
    pub(super) lengths: u32,
    pub(super) length: Option<u64>,
    pub(super) bad_length: bool,
    pub(super) te: bool,
    /// Codings seen so far, and whether the last one was `chunked`.
    pub(super) chunked_last: bool,
    pub(super) chunked_seen: bool,
    pub(super) chunked_not_last: bool,
    pub(super) other_coding: bool,
    pub(super) te_http10: bool,
    pub(super) close: bool,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
    pub(super) upgrade: bool,
    pub(super) te_trailers: bool,
}

impl Decided {
    pub(super) fn take(
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
    pub(super) fn framing(&self, http11: bool) -> Result<Framing, HeadError> {
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
pub(super) fn content_length(v: &[u8]) -> Option<u64> {
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

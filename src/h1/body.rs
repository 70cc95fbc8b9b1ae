//! Reading a framed body out of a read buffer, for both directions (the
//! client's request body in `crate::server::h1`, the backend's response body
//! in `crate::upstream::h1`): by length, by chunks (trailers included) or until
//! the peer closes. Pure: the caller fills the buffer when asked.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use super::framing::{ChunkedDecoder, Decoded, Framing};

/// Where a body being read stands.
pub(crate) enum Left {
    /// This many bytes to go.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the peer closes.
    Close,
    Done,
}

/// What the buffer gave.
pub(crate) enum Step {
    Frame(Frame<Bytes>),
    /// More bytes are needed: fill the buffer and step again.
    Fill,
    /// The body is over.
    End,
    /// The body is broken (the reason, for the error).
    Broken(&'static str),
}

impl Left {
    pub(crate) fn of(f: Framing) -> Left {
        match f {
            Framing::None | Framing::Length(0) => Left::Done,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(ChunkedDecoder::default()),
            Framing::Close => Left::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Left::Done)
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            Left::Done => SizeHint::with_exact(0),
            Left::Length(n) => SizeHint::with_exact(*n),
            _ => SizeHint::default(),
        }
    }

    /// Takes the next frame out of `buf` (zero-copy), or asks for more bytes.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Step {
        loop {
            match self {
                Left::Done => return Step::End,
                Left::Length(n) => {
                    if buf.is_empty() {
                        return Step::Fill;
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        *self = Left::Done;
                    }
                    return Step::Frame(Frame::data(buf.split_to(take).freeze()));
                }
                Left::Close => {
                    if buf.is_empty() {
                        return Step::Fill;
                    }
                    return Step::Frame(Frame::data(buf.split().freeze()));
                }
                Left::Chunked(dec) => match dec.decode(buf) {
                    Ok((used, Decoded::Data(range))) => {
                        let chunk = buf.split_to(used).freeze();
                        if !range.is_empty() {
                            return Step::Frame(Frame::data(chunk.slice(range)));
                        }
                    }
                    Ok((used, Decoded::End { trailers })) => {
                        let raw = buf.split_to(used);
                        *self = Left::Done;
                        if trailers.is_empty() {
                            return Step::End;
                        }
                        return match parse_trailers(&raw[trailers]) {
                            Some(t) => Step::Frame(Frame::trailers(t)),
                            None => Step::Broken("invalid trailer section"),
                        };
                    }
                    Ok((used, Decoded::NeedMore)) => {
                        buf.advance(used);
                        return Step::Fill;
                    }
                    Err(e) => {
                        *self = Left::Done;
                        return Step::Broken(e.reason());
                    }
                },
            }
        }
    }

    /// The peer closed the connection: the end of a close-delimited body,
    /// a broken one otherwise.
    pub(crate) fn at_eof(&mut self) -> Step {
        let step = match self {
            Left::Close | Left::Done => Step::End,
            Left::Length(_) => Step::Broken("the connection closed before the end of the body"),
            Left::Chunked(_) => {
                Step::Broken("the connection closed in the middle of a chunked body")
            }
        };
        *self = Left::Done;
        step
    }
}

/// Trailer field lines (already checked by the decoder) as a header map.
pub(crate) fn parse_trailers(raw: &[u8]) -> Option<HeaderMap> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut with_end = Vec::with_capacity(raw.len() + 2);
    with_end.extend_from_slice(raw);
    with_end.extend_from_slice(b"\r\n");
    let httparse::Status::Complete((_, fields)) =
        httparse::parse_headers(&with_end, &mut slots).ok()?
    else {
        return None;
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        map.append(
            HeaderName::from_bytes(f.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(f.value).ok()?,
        );
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(left: &mut Left, input: &[u8]) -> (Vec<u8>, Option<HeaderMap>, bool) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut trailers = None;
        // Feed one byte at a time: every split point is a Fill.
        let mut rest = input;
        loop {
            match left.step(&mut buf) {
                Step::Frame(f) => match f.into_data() {
                    Ok(d) => out.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::End => return (out, trailers, true),
                Step::Broken(_) => return (out, trailers, false),
                Step::Fill => match rest.split_first() {
                    Some((b, r)) => {
                        buf.extend_from_slice(&[*b]);
                        rest = r;
                    }
                    None => {
                        let end = matches!(left.at_eof(), Step::End);
                        return (out, trailers, end);
                    }
                },
            }
        }
    }

    #[test]
    fn length_chunked_and_close() {
        let (d, _, ok) = drain(&mut Left::of(Framing::Length(5)), b"hello");
        assert!(ok && d == b"hello");
        let (d, _, ok) = drain(&mut Left::of(Framing::Length(6)), b"hello");
        assert!(!ok && d == b"hello", "short body is broken");
        let (d, t, ok) = drain(
            &mut Left::of(Framing::Chunked),
            b"5\r\nhello\r\n1;x=y\r\n!\r\n0\r\nx-sum: 1\r\n\r\n",
        );
        assert!(ok && d == b"hello!");
        assert_eq!(t.unwrap()["x-sum"], "1");
        let (_, _, ok) = drain(&mut Left::of(Framing::Chunked), b"zz\r\n");
        assert!(!ok);
        let (d, _, ok) = drain(&mut Left::of(Framing::Close), b"until close");
        assert!(ok && d == b"until close");
    }

    #[test]
    fn trailers() {
        let t = parse_trailers(b"x-sum: 1\r\nx-b: two\r\n").unwrap();
        assert_eq!(t["x-sum"], "1");
        assert_eq!(t["x-b"], "two");
    }
}

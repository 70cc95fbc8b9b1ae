//! Body framing: the decision ([`Framing`]), the chunked decoder and the
//! chunk encoder (RFC 9112 §6, §7.1).
//!
//! The decoder is a state machine over the caller's buffer: it never copies
//! body bytes, it hands out ranges of the input. It only consumes a chunk-size
//! line or the trailer section once it is whole, so a caller keeps unconsumed
//! bytes in its buffer and calls again with more appended.

use std::ops::Range;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes the connection (responses only).
    Close,
}

/// Bounds on the parts of a chunked body that are not data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most bytes of chunk extensions on one chunk-size line.
    pub(crate) max_extension_bytes: usize,
    /// Most bytes in the trailer section (final empty line included).
    pub(crate) max_trailer_bytes: usize,
    /// Most trailer field lines.
    pub(crate) max_trailers: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits {
            max_extension_bytes: 1024,
            max_trailer_bytes: 16 * 1024,
            max_trailers: 64,
        }
    }
}

/// Why a chunked body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk size is not `1*HEXDIG`.
    BadSize,
    /// More than 16 hex digits (leading zeros count): no u64 fits, and a
    /// sane sender never needs them.
    SizeTooLong,
    /// A chunk extension that is not `;name[=token|quoted-string]`.
    BadExtension,
    /// Chunk extensions longer than `ChunkedLimits::max_extension_bytes`.
    ExtensionTooLong,
    /// A line that does not end in CRLF (bare LF, or data past the chunk size).
    BadLineEnding,
    /// A malformed trailer field (same rules as a head).
    BadTrailer,
    /// Trailer section past [`ChunkedLimits`].
    TrailersTooLarge,
}

impl ChunkedError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::SizeTooLong => "chunk size too long",
            ChunkedError::BadExtension => "invalid chunk extension",
            ChunkedError::ExtensionTooLong => "chunk extension too long",
            ChunkedError::BadLineEnding => "chunk not terminated by CRLF",
            ChunkedError::BadTrailer => "invalid trailer field",
            ChunkedError::TrailersTooLarge => "trailer section too large",
        }
    }
}

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkedError {}

/// What one [`ChunkedDecoder::decode`] call found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes: this range of the input.
    Data(Range<usize>),
    /// Nothing more can be decoded from this input; append more and call
    /// again with the unconsumed bytes.
    NeedMore,
    /// The body is over. `trailers` is the range of the trailer field lines
    /// (each with its CRLF, the final empty line excluded; empty if none),
    /// already checked like head fields.
    End {
        /// The trailer field lines' range in the input.
        trailers: Range<usize>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes a chunked body. Feed it the unconsumed bytes; it returns how many
/// it consumed and what it found.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    limits: ChunkedLimits,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new(ChunkedLimits::default())
    }
}

/// Longest chunk-size: 16 hex digits.
const MAX_SIZE_DIGITS: usize = 16;

impl ChunkedDecoder {
    pub(crate) fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            limits,
        }
    }

    /// The body has been read to its end (trailers included).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `buf`. Returns the bytes consumed (ranges in
    /// the result are within them) and one event. After `End`, every call
    /// returns `(0, End)` with an empty range.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Decoded), ChunkedError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Size => {
                    let max_line = MAX_SIZE_DIGITS + 1 + self.limits.max_extension_bytes + 1;
                    let Some(nl) = rest.iter().take(max_line + 1).position(|&b| b == b'\n') else {
                        if rest.len() > max_line {
                            return Err(self.line_too_long(rest));
                        }
                        // A bad byte can be refused before the line is whole.
                        check_partial_size(rest)?;
                        return Ok((pos, Decoded::NeedMore));
                    };
                    if nl == 0 || rest[nl - 1] != b'\r' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    let size = size_line(&rest[..nl - 1], self.limits.max_extension_bytes)?;
                    pos += nl + 1;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok((pos, Decoded::NeedMore));
                    }
                    let take = left.min(rest.len() as u64) as usize;
                    self.state = if take as u64 == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take as u64)
                    };
                    return Ok((pos + take, Decoded::Data(pos..pos + take)));
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok((pos, Decoded::NeedMore)),
                    _ => return Err(ChunkedError::BadLineEnding),
                },
                State::Trailers => {
                    let Some(len) = trailer_section(rest, &self.limits)? else {
                        return Ok((pos, Decoded::NeedMore));
                    };
                    self.state = State::Done;
                    // `len` includes the final CRLF.
                    return Ok((
                        pos + len,
                        Decoded::End {
                            trailers: pos..pos + len - 2,
                        },
                    ));
                }
                State::Done => return Ok((pos, Decoded::End { trailers: pos..pos })),
            }
        }
    }

    fn line_too_long(&self, rest: &[u8]) -> ChunkedError {
        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits > MAX_SIZE_DIGITS {
            ChunkedError::SizeTooLong
        } else {
            ChunkedError::ExtensionTooLong
        }
    }
}

/// Refuses an incomplete chunk-size line early when its size part is bad.
fn check_partial_size(rest: &[u8]) -> Result<(), ChunkedError> {
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > MAX_SIZE_DIGITS {
        return Err(ChunkedError::SizeTooLong);
    }
    match rest.get(digits) {
        None if digits == 0 && rest.is_empty() => Ok(()),
        None => Ok(()),
        Some(_) if digits == 0 => Err(ChunkedError::BadSize),
        Some(b';' | b' ' | b'\t' | b'\r') => Ok(()),
        Some(_) => Err(ChunkedError::BadSize),
    }
}

/// `chunk-size [ chunk-ext ]` without its CRLF (RFC 9112 §7.1, §7.1.1):
/// `1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn size_line(line: &[u8], max_ext: usize) -> Result<u64, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkedError::BadSize);
    }
    if digits > MAX_SIZE_DIGITS {
        return Err(ChunkedError::SizeTooLong);
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = (size << 4) | u64::from(d);
    }
    let ext = &line[digits..];
    if !matches!(ext.first(), None | Some(b';' | b' ' | b'\t')) {
        return Err(ChunkedError::BadSize);
    }
    if ext.len() > max_ext {
        return Err(ChunkedError::ExtensionTooLong);
    }
    if !ext.is_empty() {
        extensions(ext)?;
    }
    Ok(size)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn extensions(mut s: &[u8]) -> Result<(), ChunkedError> {
    fn bws(s: &mut &[u8]) {
        while let [b' ' | b'\t', rest @ ..] = *s {
            *s = rest;
        }
    }
    fn token<'a>(s: &mut &'a [u8]) -> Result<&'a [u8], ChunkedError> {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        if n == 0 {
            return Err(ChunkedError::BadExtension);
        }
        let (t, rest) = s.split_at(n);
        *s = rest;
        Ok(t)
    }
    while !s.is_empty() {
        bws(&mut s);
        let [b';', rest @ ..] = s else {
            return Err(ChunkedError::BadExtension);
        };
        s = rest;
        bws(&mut s);
        token(&mut s)?;
        bws(&mut s);
        if let [b'=', rest @ ..] = s {
            s = rest;
            bws(&mut s);
            if let [b'"', rest @ ..] = s {
                s = rest;
                loop {
                    match s {
                        [b'"', rest @ ..] => {
                            s = rest;
                            break;
                        }
                        [b'\\', q, rest @ ..] if *q == b'\t' || *q >= 0x20 && *q != 0x7f => {
                            s = rest
                        }
                        [b, rest @ ..] if *b == b'\t' || *b >= 0x20 && *b != 0x7f => s = rest,
                        _ => return Err(ChunkedError::BadExtension),
                    }
                }
            } else {
                token(&mut s)?;
            }
            bws(&mut s);
        } else if !s.is_empty() && s[0] != b';' {
            return Err(ChunkedError::BadExtension);
        }
    }
    Ok(())
}

/// The length of a whole trailer section at the start of `s` (final CRLF
/// included), `None` if it is not whole yet.
fn trailer_section(s: &[u8], limits: &ChunkedLimits) -> Result<Option<usize>, ChunkedError> {
    // Every line must end in CRLF; the section ends at an empty line.
    let mut line_start = 0;
    let mut lines = 0usize;
    let mut i = 0;
    while i < s.len() {
        if i >= limits.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge);
        }
        if s[i] == b'\n' {
            if i == 0 || s[i - 1] != b'\r' {
                return Err(ChunkedError::BadLineEnding);
            }
            if i - 1 == line_start {
                let len = i + 1;
                if lines > 0 {
                    check_trailers(&s[..len], lines)?;
                }
                return Ok(Some(len));
            }
            lines += 1;
            if lines > limits.max_trailers {
                return Err(ChunkedError::TrailersTooLarge);
            }
            line_start = i + 1;
        }
        i += 1;
    }
    if s.len() >= limits.max_trailer_bytes {
        return Err(ChunkedError::TrailersTooLarge);
    }
    Ok(None)
}

/// Trailer fields follow the head's rules (no obs-fold, no bare CR, tokens).
fn check_trailers(s: &[u8], lines: usize) -> Result<(), ChunkedError> {
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    match httparse::parse_headers(s, &mut slots) {
        Ok(httparse::Status::Complete((n, _))) if n == s.len() => Ok(()),
        _ => Err(ChunkedError::BadTrailer),
    }
}

/// A chunk-size line for a chunk of `len` bytes (`{hex}\r\n`), on the stack,
/// for a vectored write ahead of the data (which `CRLF` follows).
#[derive(Clone, Copy, Debug)]
pub struct ChunkHeader {
    buf: [u8; 18],
    len: u8,
}

impl ChunkHeader {
    pub(crate) fn new(len: u64) -> Self {
        let mut buf = [0u8; 18];
        let digits = if len == 0 {
            1
        } else {
            (16 - len.leading_zeros() as usize / 4).max(1)
        };
        for (i, out) in buf[..digits].iter_mut().enumerate() {
            let d = ((len >> (4 * (digits - 1 - i))) & 0xf) as u8;
            *out = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        buf[digits] = b'\r';
        buf[digits + 1] = b'\n';
        ChunkHeader {
            buf,
            len: (digits + 2) as u8,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Ends every chunk's data.
pub(crate) const CRLF: &[u8] = b"\r\n";

/// Appends one chunk holding `data` (nothing for empty `data`: an empty
/// chunk would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(ChunkHeader::new(data.len() as u64).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(CRLF);
}

/// Appends the last chunk and the trailer section: `trailers` is field lines
/// each ending in CRLF (what [`Decoded::End`] points at), or empty.
pub fn encode_last_chunk(trailers: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers);
    out.extend_from_slice(CRLF);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns body and trailers.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ChunkedError> {
        let mut d = ChunkedDecoder::default();
        let mut buf = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            let (n, ev) = d.decode(&buf)?;
            match ev {
                Decoded::Data(r) => body.extend_from_slice(&buf[r]),
                Decoded::End { trailers } => return Ok((body, buf[trailers].to_vec())),
                Decoded::NeedMore => {
                    assert!(fed < input.len(), "ran out of input");
                    let end = (fed + step).min(input.len());
                    buf.drain(..n);
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                    continue;
                }
            }
            buf.drain(..n);
        }
    }

    #[test]
    fn decodes_in_any_pieces() {
        let input =
            b"5;a=b;c=\"q \\\" x\"\r\nhello\r\n1 ;x\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..input.len() {
            let (body, trailers) = run(input, step).unwrap();
            assert_eq!(body, b"hello 0123456789");
            assert_eq!(trailers, b"X-T: 1\r\n");
        }
        assert_eq!(run(b"0\r\n\r\n", 3).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn refuses() {
        use ChunkedError::*;
        for (input, e) in [
            (&b"x\r\n"[..], BadSize),
            (b"-1\r\n", BadSize),
            (b"0x5\r\nhello\r\n0\r\n\r\n", BadSize),
            (b"5\nhello\r\n0\r\n\r\n", BadLineEnding),
            (b"5\r\nhelloX\r\n0\r\n\r\n", BadLineEnding),
            (b"5\r\nhello\n0\r\n\r\n", BadLineEnding),
            (b"00000000000000001\r\n", SizeTooLong),
            (b"5 \r\nhello\r\n0\r\n\r\n", BadExtension),
            (b"5;\r\nhello\r\n0\r\n\r\n", BadExtension),
            (b"5;a=\"x\r\nhello\r\n0\r\n\r\n", BadExtension),
            (b"5;a\x00\r\nhello\r\n0\r\n\r\n", BadExtension),
            (b"0\r\nX: a\r\n b\r\n\r\n", BadTrailer),
            (b"0\r\nX : a\r\n\r\n", BadTrailer),
            (b"0\r\nX: a\n\r\n", BadLineEnding),
        ] {
            assert_eq!(
                run(input, 1).map(|_| ()),
                Err(e),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(run(input, input.len()).map(|_| ()), Err(e));
        }
        let long_ext = format!("1;a={}\r\n", "b".repeat(2000));
        assert_eq!(
            run(long_ext.as_bytes(), 7).map(|_| ()),
            Err(ExtensionTooLong)
        );
        let many = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(65));
        assert_eq!(run(many.as_bytes(), 100).map(|_| ()), Err(TrailersTooLarge));
        // 16 digits is the most, and fits.
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"ffffffffffffffff\r\n").unwrap(),
            (18, Decoded::NeedMore)
        );
    }

    #[test]
    fn encodes() {
        assert_eq!(ChunkHeader::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkHeader::new(255).as_bytes(), b"ff\r\n");
        assert_eq!(
            ChunkHeader::new(u64::MAX).as_bytes(),
            b"ffffffffffffffff\r\n"
        );
        let mut out = Vec::new();
        encode_chunk(b"hello", &mut out);
        encode_chunk(b"", &mut out);
        encode_last_chunk(b"X-T: 1\r\n", &mut out);
        assert_eq!(out, b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(
            run(&out, 2).unwrap(),
            (b"hello".to_vec(), b"X-T: 1\r\n".to_vec())
        );
    }
}

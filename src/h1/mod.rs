//! The HTTP/1.1 codec: pure functions over byte buffers, no I/O.
//!
//! - `parse`: request and response heads (`httparse`), with every decision
//!   the proxy needs taken once (body framing, keep-alive, `Expect`,
//!   `Upgrade`, `TE: trailers`, `Host`, the names listed in `Connection`) and
//!   every smuggling shape refused with a typed error.
//! - [`framing`]: how a body is delimited ([`Framing`]), the chunked decoder
//!   (a state machine handing out ranges of the input) and the chunk encoder.
//! - [`rewrite`]: the forwarded heads: hop-by-hop fields dropped, framing
//!   re-emitted from the decision, `X-Forwarded-*` set; the fields a trailer
//!   section must not carry dropped from one.
//!
//! Parsed heads hold no copies: a [`Span`] is a range into the buffer the head
//! was parsed from, and the caller hands that buffer back to read it.

pub(crate) mod body;
mod fields;
pub mod framing;
pub(crate) mod head;
pub(crate) mod parse;
pub mod rewrite;

pub use framing::{ChunkHeader, ChunkedDecoder, ChunkedError, ChunkedLimits, Decoded, Framing};
pub use parse::{
    parse_request, parse_response, Field, HeadError, Limits, Name, Progress, RequestHead,
    ResponseHead, Version,
};
pub use rewrite::{encode_request, encode_response, ForwardOpts, ResponseOpts, ToClient};

/// Body bytes up to this many (4 KiB) are copied after their head so that
/// a small message leaves in one plain write (`send`): the kernel's
/// vectored path (iovec import, VFS layer) cost 2.3 % of the proxy's CPU
/// more per keep-alive request than HAProxy's `send` (`benches/profile.sh`).
pub const COPY_WITH_HEAD: usize = 4096;

/// A byte range into the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (the buffer the head came from).
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// How many bytes the span covers.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span covers no byte.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The span of `part`, a subslice of `base`.
    #[inline]
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        debug_assert!(start + part.len() <= base.len());
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }
}

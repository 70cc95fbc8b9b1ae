//! Streaming a request body from the client to the backend: frames that
//! are already there go out in one write (one chunk when chunk-encoded), the
//! body's end with the last data, trailers stripped of what a trailer must
//! not carry.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::write_all_vectored;
use crate::h1::framing::ChunkHeader;
use crate::upstream::body::{BoxError, UpBody};

/// Data frames already there when one arrives are gathered into one write,
/// up to this many bytes (a client's small chunks, read in one go).
const BATCH: usize = 16 << 10;

/// A body [`pump`] streams: one that can be told that its last `Pending`
/// was only a look for data already there (see [`UpBody::only_looked`]).
pub(super) trait Pumped: http_body::Body<Data = Bytes> + Unpin {
    fn only_looked(&self) {}
}

impl Pumped for UpBody {
    fn only_looked(&self) {
        UpBody::only_looked(self);
    }
}

/// What a request body gives next.
enum Next {
    Data(Bytes),
    Trailers(http::HeaderMap),
    End,
}

/// The body's next frame; with `wait` false, `None` when none is there yet
/// (what is buffered is taken, nothing is waited for).
async fn next_frame<B>(body: &mut Pin<&mut B>, wait: bool) -> Result<Option<Next>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let polled = std::future::poll_fn(|cx| match body.as_mut().poll_frame(cx) {
        Poll::Pending if !wait => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
        Poll::Ready(f) => Poll::Ready(Some(f)),
    })
    .await;
    Ok(match polled {
        None => None,
        Some(None) => Some(Next::End),
        Some(Some(f)) => Some(match f.map_err(Into::into)?.into_data() {
            Ok(d) => Next::Data(d),
            Err(f) => f.into_trailers().map_or(Next::End, Next::Trailers),
        }),
    })
}

/// The data of one write: a single frame as is, several copied together.
#[derive(Default)]
struct Batch {
    one: Option<Bytes>,
    copied: Vec<u8>,
}

impl Batch {
    fn push(&mut self, d: Bytes) {
        if d.is_empty() {
            return;
        }
        match self.one.take() {
            None if self.copied.is_empty() => self.one = Some(d),
            None => self.copied.extend_from_slice(&d),
            Some(first) => {
                self.copied.extend_from_slice(&first);
                self.copied.extend_from_slice(&d);
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        self.one.as_deref().unwrap_or(&self.copied)
    }

    fn clear(&mut self) {
        self.one = None;
        self.copied.clear();
    }
}

/// The last chunk and the trailer section (stripped of what a trailer must
/// not carry).
fn last_chunk(trailers: Option<&mut http::HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        crate::h1::rewrite::strip_trailers(t);
        for (n, v) in t.iter() {
            out.extend_from_slice(n.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Streams a body from the client to the backend, chunk-encoded when its
/// length is unknown (trailers included). Whatever has already arrived when
/// a frame comes goes in the same write (one chunk), and the body's end
/// with the last data.
pub(super) async fn pump<W, B>(io: &mut W, body: &mut B, chunked: bool) -> Result<(), BoxError>
where
    W: AsyncWrite + Unpin,
    B: Pumped,
    B::Error: Into<BoxError>,
{
    let mut body = Pin::new(body);
    let mut batch = Batch::default();
    let mut tail = Vec::new();
    loop {
        let mut last = None;
        match next_frame(&mut body, true).await? {
            Some(Next::Data(d)) => batch.push(d),
            other => last = other,
        }
        while last.is_none() && batch.bytes().len() < BATCH {
            match next_frame(&mut body, false).await? {
                None => {
                    body.only_looked();
                    break;
                }
                Some(Next::Data(d)) => batch.push(d),
                other => last = other,
            }
        }
        let end = last.is_some();
        tail.clear();
        if chunked && end {
            let trailers = match &mut last {
                Some(Next::Trailers(t)) => Some(t),
                _ => None,
            };
            last_chunk(trailers, &mut tail);
        }
        let data = batch.bytes();
        if !data.is_empty() || !tail.is_empty() {
            let h = ChunkHeader::new(data.len() as u64);
            let framed = chunked && !data.is_empty();
            let mut bufs = [
                IoSlice::new(if framed { h.as_bytes() } else { b"" }),
                IoSlice::new(data),
                IoSlice::new(if framed { b"\r\n" } else { b"" }),
                IoSlice::new(&tail),
            ];
            write_all_vectored(io, &mut bufs)
                .await
                .map_err(|(_, e)| e)?;
        }
        batch.clear();
        if end {
            return Ok(());
        }
    }
}

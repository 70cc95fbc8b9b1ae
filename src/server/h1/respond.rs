//! Writing a response to the client: the head from the response's parts,
//! the body framed by length or chunked (trailers when the client asked
//! for them), in few writes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Response};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use crate::h1::framing::{ChunkHeader, Framing};
use crate::proxy::body::DownBody;

use super::{lock, Shared};

/// Writes every slice to the client: one plain write (`send`) when one
/// slice is left, which costs the kernel less than a vectored one (no
/// iovec to import, no VFS layer: measured, see `benches/profile.sh`).
pub(super) async fn write_all(shared: &Shared, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    loop {
        let mut live = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = live.next() else {
            return Ok(());
        };
        let one = live.next().is_none().then_some(&first[..]);
        let n = std::future::poll_fn(|cx| {
            let mut io = lock(shared);
            match one {
                Some(one) => Pin::new(&mut io.stream).poll_write(cx, one),
                None => Pin::new(&mut io.stream).poll_write_vectored(cx, bufs),
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
}

/// Writes a response: the head with framing for the body (length when
/// known; chunked for an HTTP/1.1 client that stays; else until close),
/// then the body. `Ok(false)` when the connection must close.
pub(super) async fn write_response(
    shared: &Shared,
    resp: Response<DownBody>,
    out: &mut Vec<u8>,
    head_request: bool,
    keep_alive: bool,
    trailers_ok: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let length = body.size_hint().exact();
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if keep_alive {
        Framing::Chunked
    } else {
        Framing::Close
    };
    let keep = keep_alive && framing != Framing::Close;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(&parts.headers, out, !keeps_length(status, head_request));
    crate::h1::rewrite::framing_line(out, framing);
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if no_body {
        write_all(shared, &mut [IoSlice::new(out)]).await?;
        return Ok(keep);
    }
    // An in-memory body goes with the head in one write.
    if let DownBody::Full(b) = &mut body {
        let b = b.take().unwrap_or_default();
        if b.len() <= crate::h1::COPY_WITH_HEAD {
            out.extend_from_slice(&b);
            write_all(shared, &mut [IoSlice::new(out)]).await?;
        } else {
            write_all(shared, &mut [IoSlice::new(out), IoSlice::new(&b)]).await?;
        }
        return Ok(keep);
    }
    let mut body = Pin::new(&mut body);
    // The head waits for the body's first data if that is already there, so
    // both (with a small backend answer: the whole response) go in one write.
    let mut head_pending = true;
    let mut first = std::future::poll_fn(|cx| {
        Poll::Ready(match body.as_mut().poll_frame(cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    })
    .await;
    if first.is_none() {
        write_all(shared, &mut [IoSlice::new(out)]).await?;
        head_pending = false;
    }
    loop {
        let frame = match first.take() {
            Some(f) => f,
            None => std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await,
        };
        let Some(frame) = frame else { break };
        // The backend's body broke: the client's response cannot be finished.
        let frame = frame.map_err(io::Error::other)?;
        let head: &[u8] = if head_pending { out } else { b"" };
        match frame.into_data() {
            Ok(d) if framing == Framing::Chunked => {
                let h = ChunkHeader::new(d.len() as u64);
                let chunk: [&[u8]; 3] = if d.is_empty() {
                    [b"", b"", b""]
                } else {
                    [h.as_bytes(), &d, b"\r\n"]
                };
                let end: &[u8] = if body.is_end_stream() {
                    b"0\r\n\r\n"
                } else {
                    b""
                };
                write_all(
                    shared,
                    &mut [
                        IoSlice::new(head),
                        IoSlice::new(chunk[0]),
                        IoSlice::new(chunk[1]),
                        IoSlice::new(chunk[2]),
                        IoSlice::new(end),
                    ],
                )
                .await?;
                head_pending = false;
                if !end.is_empty() {
                    return Ok(keep);
                }
            }
            Ok(d) if head_pending && d.len() <= crate::h1::COPY_WITH_HEAD => {
                out.extend_from_slice(&d);
                write_all(shared, &mut [IoSlice::new(out)]).await?;
                head_pending = false;
            }
            Ok(d) => {
                write_all(shared, &mut [IoSlice::new(head), IoSlice::new(&d)]).await?;
                head_pending = false;
            }
            Err(frame) => {
                if head_pending {
                    write_all(shared, &mut [IoSlice::new(out)]).await?;
                    head_pending = false;
                }
                if let (Framing::Chunked, Ok(mut t)) = (framing, frame.into_trailers()) {
                    out.clear();
                    out.extend_from_slice(b"0\r\n");
                    if trailers_ok {
                        crate::h1::rewrite::strip_trailers(&mut t);
                        write_fields(&t, out, false);
                    }
                    out.extend_from_slice(b"\r\n");
                    write_all(shared, &mut [IoSlice::new(out)]).await?;
                    return Ok(keep);
                }
            }
        }
    }
    if head_pending {
        write_all(shared, &mut [IoSlice::new(out)]).await?;
    }
    if framing == Framing::Chunked {
        write_all(shared, &mut [IoSlice::new(b"0\r\n\r\n")]).await?;
    }
    Ok(keep)
}

/// Whether a response goes out with the backend's Content-Length as is:
/// only without a body of its own, where the length describes the
/// representation (a 304, the answer to a HEAD). Never on 1xx or 204
/// (RFC 9110 §8.6); otherwise the proxy frames the body itself.
pub(super) fn keeps_length(status: u16, head_request: bool) -> bool {
    status == 304 || (head_request && status >= 200 && status != 204)
}

/// Header fields as lines. Transfer-Encoding is always the caller's; so is
/// Content-Length when `skip_length` (see [`keeps_length`]).
pub(super) fn write_fields(h: &HeaderMap, out: &mut Vec<u8>, skip_length: bool) {
    for (name, value) in h {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && skip_length) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

pub(super) fn itoa3(s: u16) -> [u8; 3] {
    [
        b'0' + (s / 100 % 10) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

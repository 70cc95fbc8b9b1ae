//! Body types of the proxy: [`UpBody`] is sent to a backend, [`DownBody`] to
//! the client. Plain enums instead of boxed trait objects, so streaming a
//! body costs no allocation per request.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Conn;
use crate::routing::backend::Backend;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's body grew past `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// A request body on its way to a backend.
pub enum UpBody {
    /// Kept in memory, so the request can be sent again.
    Full(Option<Bytes>),
    /// Streamed from the client, cut off past `remaining` bytes.
    Stream {
        inner: Incoming,
        remaining: u64,
        limit: u64,
    },
}

impl UpBody {
    pub fn empty() -> UpBody {
        UpBody::Full(None)
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpBody::Stream {
                inner,
                remaining,
                limit,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        let n = d.len() as u64;
                        if n > *remaining {
                            return Poll::Ready(Some(Err(BodyTooLarge(*limit).into())));
                        }
                        *remaining -= n;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Full(b) => b.is_none(),
            UpBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Full(None) => SizeHint::with_exact(0),
            UpBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// What a backend request holds until its response body has been read to
/// the end: the backend's in-flight count and the connection, which goes
/// back to the pool only if the body ended cleanly.
pub struct Release {
    backend: Arc<Backend>,
    worker: usize,
    conn: Option<Conn>,
}

impl Release {
    /// Counts one more in-flight request on `backend`.
    pub fn begin(backend: Arc<Backend>, worker: usize) -> Release {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        backend.metrics.in_flight.inc();
        Release {
            backend,
            worker,
            conn: None,
        }
    }

    pub fn set_conn(&mut self, conn: Conn) {
        self.conn = Some(conn);
    }

    /// The response was read to the end: the connection may serve again.
    pub fn finish(&mut self) {
        if let Some(c) = self.conn.take() {
            self.backend.pool.put(self.worker, c);
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.backend.metrics.in_flight.dec();
    }
}

/// A response body on its way to the client.
pub enum DownBody {
    /// Made by the proxy (errors, admin) or buffered from a backend.
    Full(Option<Bytes>),
    /// Streamed from a backend.
    Upstream {
        inner: Incoming,
        release: Option<Release>,
    },
}

impl DownBody {
    pub fn full(b: impl Into<Bytes>) -> DownBody {
        DownBody::Full(Some(b.into()))
    }

    pub fn empty() -> DownBody {
        DownBody::Full(None)
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            DownBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DownBody::Upstream { inner, release } => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => {
                        if let Some(mut rel) = release.take() {
                            rel.finish();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        release.take();
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        if let Some(mut rel) = release.take() {
                            rel.finish();
                        }
                    }
                    _ => {}
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownBody::Full(b) => b.is_none(),
            DownBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownBody::Full(None) => SizeHint::with_exact(0),
            DownBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            DownBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

//! The response body on its way to the client ([`DownBody`]) and what a
//! backend request holds until that body has been read ([`Release`]): the
//! backend's in-flight count and the pooled connection's way home. Body
//! types sent upstream are in `crate::upstream::body`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::backend::{Backend, InFlight};
use crate::upstream::body::{take_conn, BoxError, IdleTimer, UpstreamBody, UpstreamBodyIdle};
use crate::upstream::pool::Conn;

/// What a backend request holds until its response body has been read to
/// the end: the backend's in-flight count (dropped with it) and the worker
/// whose pool slot the connection goes back to.
pub struct Release {
    in_flight: InFlight,
    worker: usize,
}

impl Release {
    /// Counts one more in-flight request on `backend`.
    pub(crate) fn begin(backend: &Arc<Backend>, worker: usize) -> Release {
        Release {
            in_flight: backend.begin_request(),
            worker,
        }
    }

    /// The response was read to the end: its connection, if the backend
    /// keeps it alive, may serve again.
    pub(crate) fn finish_with(&mut self, conn: Option<Conn>) {
        if let Some(c) = conn {
            self.in_flight.backend().pool.put(self.worker, c);
        }
    }
}

/// A response body on its way to the client.
pub enum DownBody {
    /// Made by the proxy (errors, admin) or buffered from a backend.
    Full(Option<Bytes>),
    /// Streamed from a backend.
    Upstream {
        /// The body as the upstream connection reads it.
        inner: UpstreamBody,
        /// Gives the connection back (or closes it) when the body ends.
        release: Option<Release>,
        /// Ends the body when the backend sends nothing for `timeouts.idle`.
        idle: IdleTimer,
    },
}

impl DownBody {
    /// A body of these bytes, whole.
    pub fn full(b: impl Into<Bytes>) -> DownBody {
        DownBody::Full(Some(b.into()))
    }

    pub(crate) fn empty() -> DownBody {
        DownBody::Full(None)
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            DownBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DownBody::Upstream {
                inner,
                release,
                idle,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    if let Some(mut rel) = release.take() {
                        rel.finish_with(take_conn(inner));
                    }
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    release.take();
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(Some(Ok(f))) => {
                    idle.progress();
                    if inner.is_end_stream() {
                        if let Some(mut rel) = release.take() {
                            rel.finish_with(take_conn(inner));
                        }
                    }
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Pending => {
                    if idle.expired(cx) {
                        // The connection is in an unknown state: never pooled again.
                        release.take();
                        let limit = idle.limit.unwrap_or_default();
                        return Poll::Ready(Some(Err(UpstreamBodyIdle(limit).into())));
                    }
                    Poll::Pending
                }
            },
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

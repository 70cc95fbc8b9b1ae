//! Request bodies on their way to a backend: [`ClientBody`] as it arrives
//! from the client, [`UpBody`] as it is sent upstream (kept in memory for a
//! re-send, or streamed with a size cap and an idle deadline), and
//! [`UpstreamBody`], a backend's response body as it is read. Plain enums,
//! so a body without content costs no allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::pool::Conn;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's side of a request body failed. It says nothing about the
/// backend: such a failure never fences a leader or counts for passive health.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    #[error("request body is larger than limits.max_body_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("the client sent no body bytes for {}ms (timeouts.body_idle)", .0.as_millis())]
    Idle(Duration),
    #[error("reading the request body from the client failed: {0}")]
    Aborted(BoxError),
}

impl ClientBodyError {
    /// The same failure, for the [`Upload`] to keep (an abort's cause as its text).
    fn copy(&self) -> ClientBodyError {
        match self {
            ClientBodyError::TooLarge(n) => ClientBodyError::TooLarge(*n),
            ClientBodyError::Idle(d) => ClientBodyError::Idle(*d),
            ClientBodyError::Aborted(e) => ClientBodyError::Aborted(e.to_string().into()),
        }
    }
}

/// The backend's response body stalled past `timeouts.body_idle`.
#[derive(Debug, thiserror::Error)]
#[error("the backend sent no body bytes for {}ms (timeouts.body_idle)", .0.as_millis())]
pub(crate) struct UpstreamBodyIdle(pub Duration);

/// A lazily armed idle deadline: the timer is only allocated the first time
/// a body has to wait, and re-armed (one clock read) after progress.
#[derive(Default)]
pub struct IdleTimer {
    /// `None`: never expires.
    pub(crate) limit: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    /// `None`: never expires.
    pub(crate) fn new(limit: Option<Duration>) -> IdleTimer {
        IdleTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// Data moved: the next wait starts a new idle period.
    #[inline]
    pub(crate) fn progress(&mut self) {
        self.armed = false;
    }

    /// The body is waiting: true once it has waited `limit` since the last progress.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let deadline = Instant::now() + limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            sleep.as_mut().reset(deadline);
            self.armed = true;
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// How far a streamed request body has got, shared with the attempt that
/// sends it: the backend's response-headers clock only starts once the body
/// has been sent, and a body waiting for the client is the client's delay.
#[derive(Default)]
pub(crate) struct Upload {
    done: AtomicBool,
    waiting_on_client: AtomicBool,
    frames: AtomicU64,
    notify: Notify,
    /// Set when the body failed on the client's side (too large, stalled,
    /// aborted): whatever the upstream side reports afterwards (a reset
    /// stream, a broken pipe) is a consequence of that, not the backend's.
    client_failure: std::sync::OnceLock<ClientBodyError>,
}

impl Upload {
    /// The client's body failure that ended this upload, if it did.
    pub(crate) fn client_failure(&self) -> Option<&ClientBodyError> {
        self.client_failure.get()
    }

    /// The body has ended (or failed, or was dropped).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The body's last poll waited for the client (not for the backend).
    pub(crate) fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    /// Frames passed on so far (progress).
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn set_waiting_on_client(&self, waiting: bool) {
        self.waiting_on_client.store(waiting, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn finish_for_test(&self) {
        self.finish();
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once the body is done; create and enable it before checking
    /// [`Upload::is_done`].
    pub(crate) fn done_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// Marks the [`Upload`] done when the body ends or is dropped.
pub(crate) struct UploadTx(Arc<Upload>);

/// Ends a streamed body with the client's failure `e`, recorded first in
/// its [`Upload`] (if one is watched) so the attempt sending it blames the
/// client whatever the upstream side reports.
fn client_failed(
    upload: &mut Option<UploadTx>,
    e: ClientBodyError,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if let Some(u) = upload.take() {
        let _ = u.0.client_failure.set(e.copy());
    }
    Poll::Ready(Some(Err(e.into())))
}

impl Drop for UploadTx {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A client's request body as it arrives.
pub(crate) enum ClientBody {
    /// No body (most reads): nothing allocated.
    Empty,
    /// Read by hyper's HTTP/2 server.
    H2(Incoming),
    /// Any other body: the HTTP/1.1 server's (read from the client's
    /// connection as it is polled) or an embedder's.
    Boxed(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>),
}

impl ClientBody {
    /// Wraps any body; hyper's `Incoming` and a `ClientBody` are kept
    /// as they are (no allocation).
    pub(crate) fn new<B>(body: B) -> ClientBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any = &mut slot as &mut dyn std::any::Any;
        if let Some(b) = any.downcast_mut::<Option<ClientBody>>() {
            return b.take().unwrap_or(ClientBody::Empty);
        }
        if let Some(b) = any.downcast_mut::<Option<Incoming>>() {
            return b.take().map_or(ClientBody::Empty, ClientBody::H2);
        }
        match slot {
            Some(b) if !b.is_end_stream() => {
                ClientBody::Boxed(Box::pin(http_body_util::BodyExt::map_err(b, Into::into)))
            }
            _ => ClientBody::Empty,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Boxed(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::H2(b) => b.is_end_stream(),
            ClientBody::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::H2(b) => b.size_hint(),
            ClientBody::Boxed(b) => b.size_hint(),
        }
    }
}

/// A request body on its way to a backend.
pub(crate) enum UpBody {
    /// Kept in memory, so the request can be sent again.
    Full(Option<Bytes>),
    /// Streamed from the client, cut off past `remaining` bytes.
    Stream {
        inner: ClientBody,
        remaining: u64,
        limit: u64,
        idle: IdleTimer,
        /// Set by [`UpBody::track_upload`]; none for bodies nobody watches.
        upload: Option<UploadTx>,
    },
}

impl UpBody {
    pub(crate) fn empty() -> UpBody {
        UpBody::Full(None)
    }

    /// A body streamed from the client, cut past `limit` bytes and after
    /// `idle` of silence (`None`: never, for long-poll routes).
    pub(crate) fn stream(inner: ClientBody, limit: u64, idle: Option<Duration>) -> UpBody {
        UpBody::Stream {
            inner,
            remaining: limit,
            limit,
            idle: IdleTimer::new(idle),
            upload: None,
        }
    }

    /// The last `Pending` was a look for more data already there, not a
    /// wait for the client: while what was gathered goes up, the backend,
    /// not the client, is the one that may be slow.
    pub(crate) fn only_looked(&self) {
        if let UpBody::Stream {
            upload: Some(u), ..
        } = self
        {
            u.0.waiting_on_client.store(false, Ordering::Relaxed);
        }
    }

    /// Progress of a streamed body, for the attempt sending it (made on
    /// first use, so bodiless and in-memory requests allocate nothing);
    /// `None` for a body in memory.
    pub(crate) fn track_upload(&mut self) -> Option<Arc<Upload>> {
        match self {
            UpBody::Full(_) => None,
            UpBody::Stream { upload, .. } => Some(
                upload
                    .get_or_insert_with(|| UploadTx(Arc::default()))
                    .0
                    .clone(),
            ),
        }
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
                idle,
                upload,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    idle.progress();
                    if let Some(d) = frame.data_ref() {
                        let n = d.len() as u64;
                        if n > *remaining {
                            return client_failed(upload, ClientBodyError::TooLarge(*limit));
                        }
                        *remaining -= n;
                    }
                    if let Some(u) = upload {
                        u.0.waiting_on_client.store(false, Ordering::Relaxed);
                        u.0.frames.fetch_add(1, Ordering::Relaxed);
                    }
                    if inner.is_end_stream() {
                        upload.take();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => client_failed(upload, ClientBodyError::Aborted(e)),
                Poll::Ready(None) => {
                    upload.take();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    if let Some(u) = upload {
                        u.0.waiting_on_client.store(true, Ordering::Relaxed);
                    }
                    if idle.expired(cx) {
                        let limit = idle.limit.unwrap_or_default();
                        return client_failed(upload, ClientBodyError::Idle(limit));
                    }
                    Poll::Pending
                }
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

/// A backend's response body: read from the pooled HTTP/1.1 socket on the
/// caller's task (`Left`), or from hyper's shared HTTP/2 connection (`Right`).
pub(crate) type UpstreamBody = Either<super::h1::Body, Incoming>;

/// The HTTP/1.1 connection of a backend's body, once the body was read to
/// its end and the backend keeps it alive.
pub(crate) fn take_conn(body: &mut UpstreamBody) -> Option<Conn> {
    match body {
        Either::Left(b) => b.take_conn(),
        Either::Right(_) => None,
    }
}

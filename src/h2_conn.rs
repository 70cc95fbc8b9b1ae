//! The timeouts of one HTTP/2 client connection (hyper's server has none of
//! its own for these): `timeouts.header_read` from accept until the first
//! request's headers, `timeouts.client_idle` once no stream is open.
//!
//! A stream is open from the moment hyper hands its request to the service
//! until its response body has been sent (or the stream was reset): the
//! [`StreamGuard`] travels inside the response body ([`Tracked`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::proxy::body::DownBody;
use crate::upstream::body::BoxError;

/// What the connection's timeouts depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamsState {
    /// Streams open now.
    pub(crate) open: usize,
    /// When the last open stream ended; `None` before the first request.
    pub(crate) idle_since: Option<Instant>,
}

/// When the connection is to be closed if nothing changes meanwhile: never
/// while a stream is open; `accepted + header_read` before the first
/// request; `client_idle` after the last stream ended.
pub(crate) fn deadline(
    s: &StreamsState,
    accepted: Instant,
    header_read: Duration,
    client_idle: Duration,
) -> Option<Instant> {
    if s.open > 0 {
        return None;
    }
    Some(match s.idle_since {
        None => accepted + header_read,
        Some(t) => t + client_idle,
    })
}

/// The open streams of one connection, shared by its service and its loop.
#[derive(Default)]
pub(crate) struct Streams {
    state: Mutex<StreamsState>,
    /// Woken at every stream start and end.
    pub(crate) changed: Notify,
}

impl Streams {
    pub(crate) fn state(&self) -> StreamsState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut StreamsState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }
}

/// One open stream; ends it when dropped.
pub(crate) struct StreamGuard(Arc<Streams>);

impl StreamGuard {
    pub(crate) fn start(streams: &Arc<Streams>) -> StreamGuard {
        streams.update(|s| s.open += 1);
        StreamGuard(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.open -= 1;
            if s.open == 0 {
                s.idle_since = Some(Instant::now());
            }
        });
    }
}

/// A response body that keeps its stream counted as open until hyper has
/// sent it to the end (or dropped it on a reset).
pub(crate) struct Tracked {
    pub(crate) body: DownBody,
    pub(crate) _stream: StreamGuard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_follows_the_open_streams() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let (hr, idle) = (ms(300), ms(5000));
        let mut s = StreamsState::default();
        assert_eq!(deadline(&s, t0, hr, idle), Some(t0 + hr));
        s.open = 2;
        assert_eq!(deadline(&s, t0, hr, idle), None, "streams open");
        s.open = 0;
        s.idle_since = Some(t0 + ms(70));
        assert_eq!(deadline(&s, t0, hr, idle), Some(t0 + ms(70) + idle));
    }

    #[test]
    fn guards_count_streams_and_mark_the_idle_start() {
        let streams = Arc::new(Streams::default());
        let a = StreamGuard::start(&streams);
        let b = StreamGuard::start(&streams);
        assert_eq!(streams.state().open, 2);
        drop(a);
        assert_eq!(streams.state().idle_since, None);
        drop(b);
        let s = streams.state();
        assert_eq!(s.open, 0);
        assert!(s.idle_since.is_some());
    }
}

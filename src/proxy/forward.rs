//! Sending one request to one backend over a pooled connection (the
//! headers are rewritten before, in [`super::headers`]).
//!
//! [`send`] reports whether the request may have reached the backend: a
//! request that provably was not sent comes back to the caller, so a write
//! can be re-sent without any risk of applying it twice.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};

use super::error::ProxyError;
use crate::backend::Backend;
use crate::upstream::body::{ClientBodyError, UpBody, Upload, UpstreamBody};
use crate::upstream::h1::SendError;
use crate::upstream::pool;
use http_body_util::Either;

/// Result of one attempt to send a request to one backend.
pub(crate) enum Attempt {
    /// The backend answered (headers; the body streams later). An HTTP/1.1
    /// connection travels inside the body and goes back to the pool when the
    /// body has been read to its end; an HTTP/2 connection stays shared in
    /// the pool all along.
    Answered(Response<UpstreamBody>),
    /// The request provably did not reach the backend (no byte of it was
    /// written: connect failed, or the pooled connection handed it back);
    /// here it is back. Connect failures are transport evidence.
    NotSent(Request<UpBody>, ProxyError),
    /// The request was not sent: every connection to the backend stayed in
    /// use for `timeouts.connect` ([`ProxyError::UpstreamBusy`]). Says
    /// nothing against the backend (no fence, no passive failure).
    Busy(Request<UpBody>, ProxyError),
    /// The request may have reached the backend; it must not be re-sent
    /// unless it is safe to repeat.
    Failed(Failed),
}

/// Who or what a failed attempt says something about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// A newly opened connection broke (reset, closed, broken HTTP) before
    /// a response head arrived: evidence that the backend may be gone.
    Transport,
    /// A reused (pooled) connection broke after the request may have gone
    /// out: the backend closing an idle connection as the request arrived
    /// looks the same as a crash, so only a probe can tell.
    Reused,
    /// No response head within the time limit: the backend may be dead or
    /// just slow; only a probe can tell.
    Timeout,
    /// The client's request body failed (too large, stalled, aborted): says
    /// nothing about the backend.
    Client,
    /// The backend refused the HTTP/2 stream (`REFUSED_STREAM`, RFC 9113
    /// §8.7): the request was not processed, and the backend is up (too
    /// many streams, shutting a connection down). Not evidence.
    Refused,
}

/// An attempt that failed after the request may have reached the backend.
pub(crate) struct Failed {
    pub(crate) error: ProxyError,
    pub(crate) cause: Cause,
}

impl Failed {
    /// The failure on a connection taken from the pool: a transport
    /// failure there is [`Cause::Reused`], not evidence.
    fn on_pooled(mut self, pooled: bool) -> Failed {
        if pooled && self.cause == Cause::Transport {
            self.cause = Cause::Reused;
        }
        self
    }
}

/// Options for one attempt.
#[derive(Clone, Copy)]
pub(crate) struct SendOpts {
    pub(crate) worker: usize,
    /// Only pooled connections opened at this leader generation or later
    /// are used (fencing for writes; 0 for reads).
    pub(crate) min_gen: u64,
    /// Generation recorded on a newly opened connection.
    pub(crate) gen: u64,
    pub(crate) connect_timeout: Duration,
    /// From the end of the request to the response head (the route's, or
    /// `timeouts.response_headers`); see [`response_head`].
    pub(crate) response_timeout: Duration,
    /// Pooled connections idle longer are not used (`timeouts.upstream_idle`).
    pub(crate) max_idle: Duration,
    /// The client spoke HTTP/2: use HTTP/2 upstream if the backend speaks h2c.
    pub(crate) h2: bool,
    /// When the connection may be pooled after the answer (`http_reuse`).
    pub(crate) reuse: crate::config::HttpReuse,
}

/// Sorts a send error: a failure of the client's body blames the client —
/// recorded in the `upload` when the proxy cut the body (the upstream side
/// may report only what followed: a reset stream, a broken pipe), or found
/// in the error's source chain; anything else is the backend's transport.
/// The client's own failure, when the proxy cut its upload (too large,
/// stalled, aborted): it decides the blame whatever the upstream side
/// reports next (a reset stream, a request handed back unsent).
fn client_cut(upload: Option<&Upload>) -> Option<Failed> {
    upload.and_then(Upload::client_failure).map(|c| Failed {
        error: ProxyError::from_client_body(c),
        cause: Cause::Client,
    })
}

fn failed(
    backend: &Backend,
    e: &(dyn std::error::Error + 'static),
    upload: Option<&Upload>,
) -> Failed {
    if let Some(f) = client_cut(upload) {
        return f;
    }
    if refused_stream(e) {
        return Failed {
            error: ProxyError::Upstream {
                backend: backend.name().to_string(),
                reason: "the backend refused the stream (REFUSED_STREAM); nothing was processed"
                    .into(),
            },
            cause: Cause::Refused,
        };
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = src {
        if let Some(cb) = c.downcast_ref::<ClientBodyError>() {
            return Failed {
                error: ProxyError::from_client_body(cb),
                cause: Cause::Client,
            };
        }
        src = c.source();
    }
    Failed {
        error: ProxyError::Upstream {
            backend: backend.name().to_string(),
            reason: e.to_string(),
        },
        cause: Cause::Transport,
    }
}

/// No connection to `backend` came free within `waited`.
fn busy(backend: &Backend, req: Request<UpBody>, b: pool::Busy, waited: Duration) -> Attempt {
    backend.metrics().busy.inc();
    Attempt::Busy(
        req,
        ProxyError::UpstreamBusy {
            backend: backend.name().to_string(),
            limit: b.limit,
            waited,
        },
    )
}

/// Whether an HTTP/2 error (anywhere in the source chain) is the peer's
/// `REFUSED_STREAM`, which guarantees the request was not processed.
fn refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = src {
        if let Some(h) = c.downcast_ref::<h2::Error>() {
            return h.reason() == Some(h2::Reason::REFUSED_STREAM) && h.is_remote();
        }
        src = c.source();
    }
    false
}

fn timed_out(backend: &Backend, after: Duration) -> Attempt {
    backend.metrics().timeouts.inc();
    Attempt::Failed(Failed {
        error: ProxyError::Timeout {
            backend: backend.name().to_string(),
            after,
        },
        cause: Cause::Timeout,
    })
}

/// Waits for the response head of a request: at most `limit` (the route's
/// timeout or `timeouts.response_headers`) once its body has been sent.
/// `None`: timed out.
async fn response_head<F: std::future::Future>(
    resp: F,
    upload: Option<&Upload>,
    limit: Duration,
) -> Option<F::Output> {
    match upload {
        None => tokio::time::timeout(limit, resp).await.ok(),
        // Boxed: streamed bodies are the rare case.
        Some(up) => Box::pin(response_head_streaming(resp, up, limit)).await,
    }
}

/// [`response_head`] for a body still streaming from the client. While it
/// goes up, time spent waiting for the client is not the backend's: the
/// client's silence is bounded by `timeouts.body_idle` (the body fails, 408).
/// A backend that takes no body bytes for `limit` times out; once the body
/// has been sent, the backend has `limit` for its response head.
async fn response_head_streaming<F: std::future::Future>(
    resp: F,
    up: &Upload,
    limit: Duration,
) -> Option<F::Output> {
    let mut resp = std::pin::pin!(resp);
    loop {
        let done = up.done_notified();
        let mut done = std::pin::pin!(done);
        done.as_mut().enable();
        if up.is_done() {
            break;
        }
        let frames = up.frames();
        tokio::select! {
            r = &mut resp => return Some(r),
            _ = done => break,
            _ = tokio::time::sleep(limit) => {
                if up.waiting_on_client() || up.frames() != frames {
                    continue;
                }
                return None;
            }
        }
    }
    tokio::time::timeout(limit, resp).await.ok()
}

/// Sends `req` to `backend`, reusing a pooled connection when one is
/// usable. A pooled connection found dead before any byte of the request
/// was written says nothing about the backend (it may have closed an idle
/// connection, or a peer reset it): the request goes out on a newly opened
/// connection instead. Only a fresh connection failing — to connect, or
/// before a byte was written — is a [`Attempt::NotSent`] (evidence).
pub(crate) async fn send(backend: &Backend, mut req: Request<UpBody>, o: &SendOpts) -> Attempt {
    if o.h2 && backend.upstream_h2() {
        // Boxed: keeps the HTTP/1.1 future, the common one, small.
        match Box::pin(send_h2(backend, req, o)).await {
            Ok(a) => return a,
            // An https:// backend chose http/1.1 by ALPN: send it that way.
            Err(back) => req = back,
        }
    }
    // HTTP/1.1 requires a Host (RFC 9112 §3.2): a client without one
    // (HTTP/1.0) gets the backend's authority.
    if !req.headers().contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(backend.authority.as_str()) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let upload = req.body_mut().track_upload();
    let mut head_buf = crate::upstream::h1::HeadBuf::take();
    let reuse = Some((o.min_gen, o.max_idle));
    // Boxed: waiting for a connection is the rare path; its future (timer,
    // semaphore, notification) stays out of every request's future.
    let mut found = match backend.pool.try_checkout(o.worker, reuse) {
        Some(c) => Ok(c),
        None => {
            let wait = backend.pool.checkout(o.worker, reuse, o.connect_timeout);
            Box::pin(wait).await
        }
    };
    // One pooled connection at most, then a new one.
    loop {
        let (conn, fresh) = match found {
            Ok(pool::Checkout::Pooled(c)) => (c, false),
            Ok(pool::Checkout::Open(permit)) => {
                // Boxed: opening a connection is the rare path, and its future is
                // large; inline it would be copied with every request's future.
                match Box::pin(pool::connect(backend, o.connect_timeout, o.gen, permit)).await {
                    Ok(c) => (c, true),
                    Err(e) => return not_sent(backend, req, e.to_string()),
                }
            }
            Err(b) => return busy(backend, req, b, o.connect_timeout),
        };
        let fut = crate::upstream::h1::send(conn, req, &mut head_buf.0, o.reuse);
        match response_head(fut, upload.as_deref(), o.response_timeout).await {
            None => return timed_out(backend, o.response_timeout),
            Some(Ok(resp)) => return Attempt::Answered(resp.map(Either::Left)),
            Some(Err(SendError::NotSent(back, e))) => {
                // No byte was written: a dead pooled socket is replaced by
                // a new one; a new one failing is a connect failure.
                req = *back;
                if fresh {
                    return not_sent(backend, req, e.to_string());
                }
                // The dead one's permit is back: room for a new connection.
                let room = backend.pool.room(o.worker, o.connect_timeout);
                found = Box::pin(room).await.map(pool::Checkout::Open);
            }
            Some(Err(SendError::Failed(e))) => {
                let f = failed(backend, &*e, upload.as_deref()).on_pooled(!fresh);
                if f.cause == Cause::Reused {
                    // The pooled connection broke under the request: its
                    // idle siblings go too, so the next request finds out
                    // on a new connection (evidence) instead of on each of
                    // them in turn (each failure ambiguous for a write).
                    backend.pool.drop_idle(o.worker);
                }
                return Attempt::Failed(f);
            }
        }
    }
}

/// A request that provably did not reach `backend` because a new
/// connection to it failed: transport evidence.
fn not_sent(backend: &Backend, req: Request<UpBody>, reason: String) -> Attempt {
    backend.metrics().connect_errors.inc();
    Attempt::NotSent(
        req,
        ProxyError::Connect {
            backend: backend.name().to_string(),
            reason,
        },
    )
}

/// Turns an origin-form HTTP/1.1 request back into an HTTP/2 one: absolute
/// URI (its authority becomes `:authority`: the client's `Host`, else the
/// backend's address) and `te: trailers` for gRPC, which requires it.
fn to_h2(req: &mut Request<UpBody>, backend: &Backend) {
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| backend.authority.to_string());
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let scheme = if backend.tls().is_some() {
        "https"
    } else {
        "http"
    };
    if let Ok(u) = format!("{scheme}://{authority}{pq}").parse::<Uri>() {
        *req.uri_mut() = u;
    }
    *req.version_mut() = Version::HTTP_2;
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        req.headers_mut()
            .insert(header::TE, super::headers::GRPC_TE.clone());
    }
}

/// [`send`] over this worker's shared HTTP/2 connection to `backend`.
/// `Err` hands the request back untouched when an `https://` backend chose
/// `http/1.1` by ALPN on a new connection (nothing was sent).
async fn send_h2(
    backend: &Backend,
    mut req: Request<UpBody>,
    o: &SendOpts,
) -> Result<Attempt, Request<UpBody>> {
    let upload = req.body_mut().track_upload();
    let not_sent = |req, reason: String| not_sent(backend, req, reason);
    // Turned into an HTTP/2 request once a connection is there.
    let mut converted = false;
    // One pooled try, then one fresh connection.
    for fresh in [false, true] {
        let mut h2 = if fresh {
            let permit = match backend.pool.room(o.worker, o.connect_timeout).await {
                Ok(p) => p,
                Err(b) => return Ok(busy(backend, req, b, o.connect_timeout)),
            };
            match pool::connect_h2(backend, o.connect_timeout, o.gen, permit).await {
                Ok(c) => {
                    backend.pool.put_h2(o.worker, c.clone());
                    c
                }
                Err(pool::ConnectError::NotH2) if !converted => return Err(req),
                Err(e) => return Ok(not_sent(req, e.to_string())),
            }
        } else {
            match backend.pool.take_h2(o.worker, o.min_gen) {
                Some(c) => c,
                None => continue,
            }
        };
        if !converted {
            to_h2(&mut req, backend);
            converted = true;
        }
        // A stream the pooled connection's peer refuses goes out again on a
        // new connection: kept when the body is in memory (cheap to copy).
        let copy = if fresh {
            None
        } else {
            super::service::try_clone(&req)
        };
        if h2.tx.ready().await.is_err() {
            if fresh {
                return Ok(not_sent(
                    req,
                    "h2 connection closed right after opening".into(),
                ));
            }
            continue;
        }
        let fut = h2.tx.try_send_request(req);
        match response_head(fut, upload.as_deref(), o.response_timeout).await {
            None => {
                // A silently dead connection would stall every later request
                // for the whole timeout: open a new one next time.
                backend.pool.forget_h2(o.worker, &h2);
                return Ok(timed_out(backend, o.response_timeout));
            }
            Some(Ok(resp)) => return Ok(Attempt::Answered(resp.map(Either::Right))),
            Some(Err(mut e)) => match e.take_message() {
                Some(back) => {
                    // Handed back unsent, but the proxy had cut the
                    // client's upload: the client's failure, not evidence.
                    if let Some(f) = client_cut(upload.as_deref()) {
                        return Ok(Attempt::Failed(f));
                    }
                    if fresh {
                        return Ok(not_sent(back, e.error().to_string()));
                    }
                    req = back;
                }
                None => {
                    let f = failed(backend, e.error(), upload.as_deref());
                    match (f.cause, copy) {
                        (Cause::Refused, Some(again)) => req = again,
                        (Cause::Transport, _) => {
                            backend.pool.forget_h2(o.worker, &h2);
                            return Ok(Attempt::Failed(f.on_pooled(!fresh)));
                        }
                        _ => return Ok(Attempt::Failed(f)),
                    }
                }
            },
        }
    }
    unreachable!("the fresh attempt always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that answers every request on every connection with an
    /// empty 200.
    async fn answering_backend() -> (Backend, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Backend::for_test(&addr), server)
    }

    #[tokio::test]
    async fn dead_pooled_connections_are_replaced_not_reported_as_not_sent() {
        let (backend, server) = answering_backend().await;
        // Four pooled connections that look idle and fine (their peer
        // keeps them open and silent) but fail the first write (their
        // sending side is shut): "not sent" each.
        let (held, keep) = pool::tests::holder().await;
        for _ in 0..4 {
            let s = tokio::net::TcpStream::connect(&held).await.unwrap();
            socket2::SockRef::from(&s)
                .shutdown(std::net::Shutdown::Write)
                .unwrap();
            let conn = pool::Conn::new(crate::upstream::connect::UpstreamStream::Plain(s), 0);
            backend.pool.put(0, conn);
        }
        let o = SendOpts {
            worker: 0,
            min_gen: 0,
            gen: 0,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            max_idle: Duration::from_secs(60),
            h2: false,
            reuse: crate::config::HttpReuse::Safe,
        };
        let req = Request::builder()
            .method("PUT")
            .uri("/k")
            .body(UpBody::Full(Some(bytes::Bytes::from_static(b"v"))))
            .unwrap();
        match send(&backend, req, &o).await {
            Attempt::Answered(r) => assert_eq!(r.status(), 200),
            Attempt::NotSent(_, e) => panic!("not sent (evidence against a healthy backend): {e}"),
            Attempt::Failed(f) => panic!("failed: {}", f.error),
            Attempt::Busy(_, e) => panic!("busy: {e}"),
        }
        server.abort();
        keep.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_body_stuck_at_the_backend_times_out() {
        let up = Upload::default();
        let limit = Duration::from_secs(30);
        let start = tokio::time::Instant::now();
        let r = response_head_streaming(std::future::pending::<()>(), &up, limit).await;
        assert!(r.is_none());
        assert_eq!(start.elapsed(), limit);
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_body_waiting_for_the_client_is_not_the_backends_delay() {
        let up = Upload::default();
        up.set_waiting_on_client(true);
        let limit = Duration::from_secs(30);
        let waited = tokio::time::timeout(
            limit * 10,
            response_head_streaming(std::future::pending::<()>(), &up, limit),
        )
        .await;
        assert!(waited.is_err(), "timed out while the client was silent");
        // An answer still arrives while the body goes up.
        let r = response_head_streaming(std::future::ready(7), &up, limit).await;
        assert_eq!(r, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_clock_starts_when_the_body_is_done() {
        let mut body = UpBody::Full(None);
        assert!(
            body.track_upload().is_none(),
            "in-memory bodies are not tracked"
        );
        let up = Upload::default();
        let limit = Duration::from_secs(30);
        let start = tokio::time::Instant::now();
        let finish = async {
            tokio::time::sleep(Duration::from_secs(45)).await;
            up.finish_for_test();
        };
        let (r, ()) = tokio::join!(
            response_head_streaming(std::future::pending::<()>(), &up, limit),
            async {
                up.set_waiting_on_client(true);
                finish.await
            }
        );
        assert!(r.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(45) + limit);
    }
}

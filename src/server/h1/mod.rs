//! The HTTP/1.1 server side: one task per client connection, on which both
//! the client's request and the backend's answer are handled (the upstream
//! side is [`crate::upstream::h1`], on the same task).
//!
//! - An idle keep-alive connection holds no buffer: the loop waits for the
//!   socket to become readable, then borrows a read buffer from a per-worker
//!   free list and gives it back when a request has been served and nothing
//!   more is buffered.
//! - Heads are parsed by the strict codec ([`crate::h1::parse`]): every refused
//!   shape gets its status (400/405/414/431/501/505) with the JSON error
//!   body, then the connection is closed; nothing reaches a backend.
//! - `limits.header_read` runs from accept (the first request, including
//!   the wait for its first byte); `timeouts.client_idle` between requests.
//! - A plain connection whose first bytes are the HTTP/2 preface is handed
//!   back to the caller ([`Served::H2`]) for hyper's HTTP/2 server.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::framing::Framing;
use crate::h1::parse::{parse_request, Limits, Progress, RequestHead, Version};
use crate::net::client_ip::ClientInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{handle, Proxy};

mod request;
mod respond;
mod upgrade;

use request::{attach_body, expect_answer, first_chunk_ok, to_request, Continue};
use respond::{write_all, write_response};
use upgrade::{run_tunnel, upgrade_request, Upgrade};

/// The HTTP/2 connection preface's first line.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
/// First size of a borrowed read buffer.
const READ_BUF: usize = 4 << 10;
/// Room reserved before each body read.
const BODY_READ: usize = 16 << 10;
/// Buffers larger than this are not kept in the free list.
const KEEP_BUF: usize = 64 << 10;
/// Most buffers a worker keeps for reuse.
const FREE_LIST: usize = 256;

thread_local! {
    /// This worker's spare read buffers.
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

fn borrow_buf() -> BytesMut {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| BytesMut::with_capacity(READ_BUF))
}

fn give_back(mut b: BytesMut) {
    if b.capacity() == 0 || b.capacity() > KEEP_BUF {
        return;
    }
    b.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_LIST {
            f.push(b);
        }
    });
}

/// A client connection's byte stream: any stream, plus a way to wait for
/// readability without a buffer where the stream has one.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would find bytes (or the end). Streams that cannot
    /// tell (TLS keeps its own buffers anyway) are always ready.
    fn poll_readable(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ClientStream for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream
    for crate::net::proxy_protocol::Rewind<S>
{
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream
    for tokio_rustls::server::TlsStream<S>
{
}

/// What the connection loop and a request body share: the stream and the
/// read buffer. Only ever locked inside one poll, on the connection's task.
struct Io {
    stream: Box<dyn ClientStream>,
    buf: BytesMut,
}

type Shared = Arc<Mutex<Io>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Io> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Io {
    /// Reads more bytes into the buffer (borrowing one if needed); `Ok(0)` at
    /// the client's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 {
            self.buf = borrow_buf();
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(room);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }
}

/// Settings of the connection loop.
#[derive(Clone)]
pub(crate) struct ServerOpts {
    pub(crate) limits: Limits,
    /// From accept to the first request's complete head (the caller gives
    /// [`serve`] the deadline, accept + this).
    pub(crate) header_read: Duration,
    /// Between keep-alive requests.
    pub(crate) client_idle: Duration,
}

/// How a connection ended.
pub(crate) enum Served {
    Done,
    /// The client spoke HTTP/2 (prior knowledge): here are its stream and
    /// the bytes already read, for hyper's HTTP/2 server.
    H2(Box<dyn ClientStream>, Bytes),
}

/// Why waiting for a request head ended without one.
enum NoHead {
    /// Clean close between requests, shutdown while idle, or a timeout.
    Close,
    /// A head the codec refused.
    Bad(crate::h1::HeadError),
    H2,
}

/// Waits for readability with no buffer, then reads until `head` is a
/// complete request head; returns its length.
async fn read_head(
    shared: &Shared,
    head: &mut RequestHead,
    limits: &Limits,
    deadline: Instant,
    first: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<usize, NoHead> {
    let work = async {
        loop {
            {
                let io = lock(shared);
                if !io.buf.is_empty() {
                    if first
                        && io.buf.len() >= 3
                        && H2_PREFACE.starts_with(&io.buf[..io.buf.len().min(H2_PREFACE.len())])
                    {
                        if io.buf.len() >= H2_PREFACE.len() {
                            return Err(NoHead::H2);
                        }
                    } else {
                        match parse_request(&io.buf, limits, head) {
                            Ok(Progress::Complete(n)) => return Ok(n),
                            Ok(Progress::NeedMore) => {}
                            Err(e) => return Err(NoHead::Bad(e)),
                        }
                    }
                }
            }
            // Idle with nothing buffered: wait without holding a buffer.
            let empty = lock(shared).buf.is_empty();
            if empty {
                let io_ready = std::future::poll_fn(|cx| lock(shared).stream.poll_readable(cx));
                if io_ready.await.is_err() {
                    return Err(NoHead::Close);
                }
            }
            let n = std::future::poll_fn(|cx| lock(shared).poll_fill(cx, READ_BUF)).await;
            match n {
                Ok(0) | Err(_) => return Err(NoHead::Close),
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => r.unwrap_or(Err(NoHead::Close)),
        // Shutdown: a connection waiting for its next request closes at once.
        _ = crate::shutdown::until_true(shutdown), if lock(shared).buf.is_empty() => Err(NoHead::Close),
    }
}

/// Serves one HTTP/1.1 client connection until it closes. `first_head_by`:
/// the first request's head must be complete by then (accept +
/// `timeouts.header_read`, a window the PROXY header and the TLS handshake
/// have already used part of).
pub(crate) async fn serve(
    stream: Box<dyn ClientStream>,
    proxy: &'static Proxy,
    worker: usize,
    client: ClientInfo,
    opts: &ServerOpts,
    mut shutdown: watch::Receiver<bool>,
    first_head_by: Instant,
) -> Served {
    let shared: Shared = Arc::new(Mutex::new(Io {
        stream,
        buf: BytesMut::new(),
    }));
    let mut head = RequestHead::default();
    let mut deadline = first_head_by;
    let mut first = true;
    let mut out = Vec::with_capacity(512);
    let mut tunnel = None;
    loop {
        let len = match read_head(
            &shared,
            &mut head,
            &opts.limits,
            deadline,
            first,
            &mut shutdown,
        )
        .await
        {
            Ok(n) => n,
            Err(NoHead::Close) => break,
            Err(NoHead::H2) => {
                let io = Arc::try_unwrap(shared)
                    .ok()
                    .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
                return match io {
                    Some(io) => Served::H2(io.stream, io.buf.freeze()),
                    None => Served::Done,
                };
            }
            Err(NoHead::Bad(e)) => {
                tracing::debug!(client = %client.peer, error = e.reason(), "refused request head");
                let resp = ProxyError::BadHead(e).into_response();
                let _ = write_response(&shared, resp, &mut out, false, false, false).await;
                break;
            }
        };
        first = false;
        let raw = lock(&shared).buf.split_to(len).freeze();
        let keep_alive = head.keep_alive && !*shutdown.borrow();
        let is_head = head.is_head;
        let client_11 = head.version == Some(Version::Http11);
        let te_trailers = head.te_trailers;
        let req = match to_request(&head, &raw) {
            Ok(r) => r,
            Err(e) => {
                let resp = ProxyError::BadHead(e).into_response();
                let _ = write_response(&shared, resp, &mut out, false, false, false).await;
                break;
            }
        };
        // An upgrade is asked for by `Upgrade` plus the `upgrade` connection
        // option (RFC 9110 §7.8); a lone `Upgrade` field is dropped as hop-by-hop.
        // One with a body goes on as a plain request (the Upgrade is
        // dropped): the body could not be told apart from the next request
        // if the backend does not switch.
        let upgrade = head.upgrade
            && matches!(head.framing, Framing::None | Framing::Length(0))
            && head
                .connection
                .iter()
                .any(|n| n.get(&raw).eq_ignore_ascii_case(b"upgrade"));
        if upgrade {
            match Box::pin(upgrade_request(
                proxy,
                &head,
                &raw,
                req.method(),
                req.uri().path(),
                &client,
                &mut out,
            ))
            .await
            {
                Upgrade::Switched(sw) => {
                    tunnel = Some(sw);
                    break;
                }
                Upgrade::Refused(resp) => {
                    let _ = write_response(&shared, resp, &mut out, false, false, false).await;
                    break;
                }
                Upgrade::Answered(resp) => {
                    // Not switched: the connection still speaks HTTP/1.1.
                    match write_response(
                        &shared,
                        resp,
                        &mut out,
                        false,
                        client_11 && keep_alive,
                        false,
                    )
                    .await
                    {
                        Ok(true) if keep_alive => {}
                        _ => break,
                    }
                    deadline = Instant::now() + opts.client_idle;
                    continue;
                }
            }
        }
        // `Expect: 100-continue` is answered before waiting for any body
        // byte (the client sends none before it); a declared length past
        // the limit gets its 413 instead, with no 100.
        if head.expect_continue {
            let max = proxy.shared.load().cfg.limits.max_body_bytes;
            match expect_answer(head.framing, max) {
                Continue::Nothing => {}
                Continue::TooLarge => {
                    let resp = ProxyError::BodyTooLarge(max).into_response();
                    let _ = write_response(&shared, resp, &mut out, false, false, false).await;
                    break;
                }
                Continue::Send => {
                    let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
                    if write_all(&shared, &mut [IoSlice::new(cont)]).await.is_err() {
                        break;
                    }
                }
            }
        }
        // A chunked body's first size line is checked before anything is
        // sent upstream: a malformed one is refused like a bad head.
        if head.framing == Framing::Chunked {
            let d = tokio::time::timeout_at(
                deadline.max(Instant::now() + opts.header_read),
                first_chunk_ok(&shared),
            )
            .await;
            match d {
                Ok(Ok(())) => {}
                Ok(Err(Some(e))) => {
                    tracing::debug!(client = %client.peer, error = e.reason(), "refused chunked body");
                    let resp = ProxyError::BadHead(crate::h1::HeadError::BadTransferEncoding)
                        .into_response();
                    let _ = write_response(&shared, resp, &mut out, false, false, false).await;
                    break;
                }
                Ok(Err(None)) | Err(_) => break,
            }
        }
        let (req, body_done) = attach_body(req, &head, &shared);
        // Boxed: the request's future is large and must not stay part of an
        // idle connection's task.
        let resp = Box::pin(handle(proxy, worker, client.clone(), req)).await;
        // A request body not read to its end leaves the connection unusable.
        let reuse = keep_alive && body_done.is_done();
        let written = Box::pin(write_response(
            &shared,
            resp,
            &mut out,
            is_head,
            client_11 && reuse,
            client_11 && te_trailers,
        ));
        match written.await {
            Ok(true) if reuse => {}
            _ => break,
        }
        // Nothing buffered: the read buffer goes back to the worker's list.
        {
            let mut io = lock(&shared);
            if io.buf.is_empty() {
                give_back(std::mem::take(&mut io.buf));
            }
        }
        deadline = Instant::now() + opts.client_idle;
    }
    if let Some(sw) = tunnel {
        if let Ok(io) = Arc::try_unwrap(shared) {
            let io = io.into_inner().unwrap_or_else(|e| e.into_inner());
            run_tunnel(io.stream, io.buf, sw, &client).await;
        }
        return Served::Done;
    }
    give_back(std::mem::take(&mut lock(&shared).buf));
    // Send our FIN (and a TLS close_notify); a peer that does not read gets a second.
    let close = std::future::poll_fn(|cx| Pin::new(&mut lock(&shared).stream).poll_shutdown(cx));
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    Served::Done
}

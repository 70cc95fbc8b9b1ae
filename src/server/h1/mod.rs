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
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::parse::{parse_request, Limits, Progress, RequestHead, Version};
use crate::net::client_ip::ClientInfo;
use crate::proxy::body::DownBody;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{handle, Proxy};
use crate::upstream::body::ClientBody;
use http::{Request, Response};

mod before;
mod request;
mod respond;
mod upgrade;

use before::Before;
use request::{attach_body, to_request, BodyDone};
use respond::write_response;
use upgrade::run_tunnel;

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

/// First capacity of a response-head buffer.
const OUT_BUF: usize = 512;

thread_local! {
    /// This worker's spare parsed heads (their vectors' capacity), for the
    /// connection that has a request now.
    // Boxed on purpose: a connection holds the box while it has a request,
    // nothing while idle; the box moves between it and this list.
    #[allow(clippy::vec_box)]
    static SPARE_HEADS: RefCell<Vec<Box<RequestHead>>> = const { RefCell::new(Vec::new()) };
    /// This worker's spare response-head buffers.
    static SPARE_OUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A response-head buffer: a spare one, or a new one of [`OUT_BUF`] bytes.
fn spare_out() -> Vec<u8> {
    SPARE_OUT
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(OUT_BUF))
}

/// A parsed head (boxed: an idle connection's task holds a pointer, not
/// the head) with its vectors' capacity: a spare one, or a new one.
fn spare_head() -> Box<RequestHead> {
    SPARE_HEADS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_default()
}

/// Keeps a connection's head and response-head buffer for the next request
/// on this worker (up to [`FREE_LIST`] of each; a buffer past [`KEEP_BUF`]
/// bytes is dropped).
fn keep_spare(head: Option<Box<RequestHead>>, mut out: Vec<u8>) {
    if let Some(head) = head {
        SPARE_HEADS.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_LIST {
                f.push(head);
            }
        });
    }
    if out.capacity() == 0 || out.capacity() > KEEP_BUF {
        return;
    }
    out.clear();
    SPARE_OUT.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_LIST {
            f.push(out);
        }
    });
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
    head: &mut Option<Box<RequestHead>>,
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
                        let head = head.get_or_insert_with(spare_head);
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
///
/// Not an `async fn`: those keep their arguments twice in the future (as
/// given, and moved into the body's locals); the `async move` block uses
/// them where they were captured.
#[allow(clippy::manual_async_fn)] // on purpose: see the doc comment
pub(crate) fn serve<'a>(
    stream: Box<dyn ClientStream>,
    proxy: &'static Proxy,
    worker: usize,
    client: &'a ClientInfo,
    opts: &'a ServerOpts,
    mut shutdown: watch::Receiver<bool>,
    first_head_by: Instant,
) -> impl std::future::Future<Output = Served> + Send + 'a {
    async move {
        let shared: Shared = Arc::new(Mutex::new(Io {
            stream,
            buf: BytesMut::new(),
        }));
        // Taken from the worker's spares when bytes come, given back after
        // the request.
        let mut head: Option<Box<RequestHead>> = None;
        let mut deadline = first_head_by;
        let mut first = true;
        // Taken from the worker's spares when a request comes, given back after it.
        let mut out = Vec::new();
        let tunnel = loop {
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
                Err(NoHead::Close) => break None,
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
                    let _ = write_last(&shared, resp, &mut out).await;
                    break None;
                }
            };
            first = false;
            // Set by read_head with its Ok.
            let Some(h) = head.as_deref() else { break None };
            let keep_alive = h.keep_alive && !*shutdown.borrow();
            let is_head = h.is_head;
            let client_11 = h.version == Some(Version::Http11);
            let te_trailers = h.te_trailers;
            if out.capacity() == 0 {
                out = spare_out();
            }
            // What comes next is built in this block and awaited after it: no
            // request (moved or not) stays in the task's state across an await,
            // which would size every idle connection's task.
            let step = {
                let raw = lock(&shared).buf.split_to(len).freeze();
                match to_request(h, &raw) {
                    Err(e) => Step::Refuse(Box::new(ProxyError::BadHead(e).into_response())),
                    // Upgrades, `Expect: 100-continue` and chunked bodies wait
                    // for something before the request goes on (boxed, rare).
                    Ok(req) if before::needed(h) => Step::Before(Box::new((req, raw))),
                    Ok(req) => Step::Go(forward(proxy, worker, client, req, h, &shared)),
                }
            };
            let (exchange, body_done) = match step {
                Step::Refuse(resp) => {
                    let _ = write_last(&shared, *resp, &mut out).await;
                    break None;
                }
                Step::Before(wait) => {
                    // Built in a block: the request and the context are moved
                    // in, and no binding of theirs lives across the await.
                    let wait = {
                        let (req, raw) = *wait;
                        let ctx = before::Ctx {
                            proxy,
                            shared: &shared,
                            head: h,
                            raw,
                            client,
                            deadline,
                            header_read: opts.header_read,
                            keep_alive,
                            client_11,
                        };
                        Box::pin(before::before_body(ctx, req, &mut out))
                    };
                    match wait.await {
                        Before::Go(req) => forward(proxy, worker, client, req, h, &shared),
                        Before::Close => break None,
                        Before::Tunnel(sw) => break Some(sw),
                        Before::Answered => {
                            deadline = Instant::now() + opts.client_idle;
                            continue;
                        }
                    }
                }
                Step::Go(go) => go,
            };
            // The response goes into the boxed write in a block: its binding
            // does not live across the write's await.
            let (written, reuse) = {
                let mut exchange = exchange;
                let resp = std::future::poll_fn(|cx| exchange.as_mut().poll_answer(cx)).await;
                // A request body not read to its end leaves the connection unusable.
                let reuse = keep_alive && body_done.is_done();
                // Boxed in place (see [`forward`]).
                let mut w = Box::pin(None);
                w.set(Some(write_response(
                    &shared,
                    resp,
                    &mut out,
                    is_head,
                    client_11 && reuse,
                    client_11 && te_trailers,
                )));
                (w, reuse)
            };
            let written = {
                let mut w = written;
                std::future::poll_fn(|cx| poll_in_place(&mut w, cx)).await
            };
            match written {
                Ok(true) if reuse => {}
                _ => break None,
            }
            // Nothing buffered: the read buffer goes back to the worker's list.
            {
                let mut io = lock(&shared);
                if io.buf.is_empty() {
                    give_back(std::mem::take(&mut io.buf));
                }
            }
            // Neither do the head's vectors nor the response-head buffer stay
            // with an idle connection.
            keep_spare(head.take(), std::mem::take(&mut out));
            deadline = Instant::now() + opts.client_idle;
        };
        if let Some(sw) = tunnel {
            if let Ok(io) = Arc::try_unwrap(shared) {
                let io = io.into_inner().unwrap_or_else(|e| e.into_inner());
                Box::pin(run_tunnel(io.stream, io.buf, sw, client)).await;
            }
            return Served::Done;
        }
        give_back(std::mem::take(&mut lock(&shared).buf));
        // Send our FIN (and a TLS close_notify); a peer that does not read gets a second.
        let close =
            std::future::poll_fn(|cx| Pin::new(&mut lock(&shared).stream).poll_shutdown(cx));
        let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), close)).await;
        Served::Done
    }
}

/// The proxy core's answer to one request, boxed: the request's future is
/// large and must not be part of an idle connection's task.
type Exchange = Pin<Box<dyn Pending>>;

/// What a parsed request head leads to.
enum Step {
    /// The head cannot become a request: this answer, then close.
    Refuse(Box<Response<DownBody>>),
    /// Something to wait for before the body (see [`before`]), with the
    /// request and the head's bytes.
    Before(Box<(Request<ClientBody>, Bytes)>),
    /// The request goes to the core.
    Go((Exchange, BodyDone)),
}

/// Hands the request, its body read from the connection, to the core.
fn forward(
    proxy: &'static Proxy,
    worker: usize,
    client: &ClientInfo,
    req: Request<ClientBody>,
    head: &RequestHead,
    shared: &Shared,
) -> (Exchange, BodyDone) {
    let (req, body_done) = attach_body(req, head, shared);
    // Allocated first, then built: the compiler writes the future (a few
    // KiB) straight into the box, where `Box::pin(handle(..))` builds it on
    // the stack and copies it (~700 instructions per request). Written out
    // at each place: through a closure the captured request is copied.
    let mut slot = Box::pin(None);
    slot.set(Some(handle(proxy, worker, client.clone(), req)));
    (slot, body_done)
}

/// Polls a future boxed in place (`Box::pin(None)`, then `set`; see
/// [`forward`]).
fn poll_in_place<F: std::future::Future>(
    slot: &mut Pin<Box<Option<F>>>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    match slot.as_mut().as_pin_mut() {
        Some(f) => f.poll(cx),
        // Set when boxed, and never polled after it answered.
        None => Poll::Pending,
    }
}

/// The core's future for one request, in its box (see [`forward`]).
trait Pending: Send {
    fn poll_answer(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<DownBody>>;
}

impl<F: std::future::Future<Output = Response<DownBody>> + Send> Pending for Option<F> {
    fn poll_answer(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<DownBody>> {
        match self.as_pin_mut() {
            Some(f) => f.poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Writes a last response (an error, the connection closes after it).
/// Boxed: these rare paths must not size every connection's task.
fn write_last<'a>(
    shared: &'a Shared,
    resp: Response<DownBody>,
    out: &'a mut Vec<u8>,
) -> Pin<Box<dyn std::future::Future<Output = io::Result<bool>> + Send + 'a>> {
    Box::pin(write_response(shared, resp, out, false, false, false))
}

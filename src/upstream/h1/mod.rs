//! The upstream HTTP/1.1 client: one request at a time over a plain pooled
//! socket, driven on the caller's task — no spawned connection task and no
//! channel hop per request (hyper's client connection costs both).
//!
//! - [`Conn`]: a socket (plain or TLS) and the leader generation it was
//!   opened in. An idle pooled `Conn` holds no buffer; before reuse a
//!   non-blocking look tells whether the backend closed it (or sent
//!   something unasked): a one-byte peek on a plain socket, one read attempt
//!   that must find nothing on TLS (which consumes session tickets).
//! - [`send`]: writes the head (and an in-memory body in the same vectored
//!   write), streams a body from the client (`pump`, in its own file), and
//!   reads the response head.
//!   It reports whether any byte reached the socket, so "not sent" stays exact.
//! - [`Body`]: the response body, read from the same socket as it is polled,
//!   framed by length, chunks or close; it gives the connection back when the
//!   body ended cleanly and the backend keeps it alive.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::connect::UpstreamStream;
use crate::config::HttpReuse;

use super::body::{BoxError, UpBody};
use crate::h1::body::{Left, Step};
use crate::h1::framing::Framing;
use crate::h1::parse::{parse_response, Limits, Progress, ResponseHead};
use crate::h1::rewrite::framing_line;
use pump::pump;
#[cfg(test)]
use pump::Pumped;

mod pump;

/// First read buffer for a response head; grows up to the head limit.
const HEAD_BUF: usize = 4 << 10;
/// Room reserved before each body read.
const BODY_READ: usize = 16 << 10;

/// One upstream connection.
pub(crate) struct Conn {
    io: UpstreamStream,
    /// Leader generation when the connection was opened.
    pub(crate) gen: u64,
    /// Whether this connection was reused from the pool (vs. freshly opened).
    pub(crate) reused: bool,
    /// Its place in the backend's connection limit, given back when the
    /// connection is dropped (closed); `None` outside a pool.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Its last answer was to a HEAD (pooled under `http_reuse: always`):
    /// before reuse, look at the socket itself, not only at what the
    /// reactor last saw.
    after_head: bool,
}

impl Conn {
    pub(crate) fn new(io: UpstreamStream, gen: u64) -> Conn {
        Conn {
            io,
            gen,
            reused: false,
            permit: None,
            after_head: false,
        }
    }

    /// The connection, counted against a limit by `permit` while it is open.
    pub(crate) fn holding(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> Conn {
        self.permit = Some(permit);
        self
    }

    /// Whether an idle connection can carry a request: the backend has not
    /// closed it and sent nothing. Never waits.
    pub(crate) fn is_reusable(&mut self) -> bool {
        match &mut self.io {
            UpstreamStream::Plain(s) => {
                // The reactor flags read readiness when bytes or a FIN
                // arrive: not readable means nothing happened, no syscall.
                let mut cx = Context::from_waker(&NO_WAKE);
                if !self.after_head && s.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                if self.after_head {
                    // Bytes may be in the socket before the reactor has
                    // seen them (a busy worker): one peek, a syscall only
                    // after a HEAD.
                    let mut b = [MaybeUninit::<u8>::uninit(); 1];
                    return match socket2::SockRef::from(&*s).peek(&mut b) {
                        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                        Ok(_) => false,
                    };
                }
                // Readable (or not known yet): look. Through `try_io`, an
                // empty socket clears the readiness, so the next reuse of this
                // connection needs no syscall at all.
                let s = &*s;
                let peeked = s.try_io(tokio::io::Interest::READABLE, || {
                    let mut b = [MaybeUninit::<u8>::uninit(); 1];
                    socket2::SockRef::from(s).peek(&mut b)
                });
                match peeked {
                    Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                    // 0: closed; more: bytes nobody asked for.
                    Ok(_) => false,
                }
            }
            // TLS: one read that must find no application data (rustls
            // consumes session tickets and alerts on the way).
            tls => {
                let mut cx = Context::from_waker(&NO_WAKE);
                let mut b = [0u8; 1];
                let mut buf = ReadBuf::new(&mut b);
                matches!(Pin::new(tls).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

impl Conn {
    /// Whether the backend has not closed the socket (a one-byte peek on
    /// the TCP socket under any TLS; data waiting counts as open). For
    /// sweeps and counts, from any thread; [`Conn::is_reusable`] decides reuse.
    pub(crate) fn is_open(&self) -> bool {
        let tcp = match &self.io {
            UpstreamStream::Plain(s) => s,
            UpstreamStream::Tls(t) => t.get_ref().0,
        };
        let mut b = [MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut b) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            Ok(n) => n > 0,
        }
    }
}

/// A waker for a look that never waits (made once).
static NO_WAKE: std::sync::LazyLock<Waker> =
    std::sync::LazyLock::new(|| Waker::from(Arc::new(NoWake)));

struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Why [`send`] failed.
pub(crate) enum SendError {
    /// No byte of the request reached the socket; here it is back, untouched.
    NotSent(Box<Request<UpBody>>, io::Error),
    /// The request may have reached the backend; the connection is broken.
    Failed(BoxError),
}

/// A response head read and turned into an `http::Response`.
pub(crate) type Answer = Response<Body>;

/// Encodes the head of `req` (already rewritten by the proxy: origin-form
/// target, hop-by-hop fields removed) with framing for its body.
fn encode_head(req: &Request<UpBody>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if pq.is_empty() { b"/" } else { pq.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        // Framing is ours to say; the body was handled hop by hop. The client's
        // `Expect` was answered by this hop: the body follows at once.
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::EXPECT
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = match req.body() {
        UpBody::Full(Some(b)) => Framing::Length(b.len() as u64),
        UpBody::Full(None) if req.headers().contains_key(http::header::CONTENT_LENGTH) => {
            Framing::Length(0)
        }
        UpBody::Full(None) => Framing::None,
        UpBody::Stream { .. } => req
            .body()
            .size_hint()
            .exact()
            .map_or(Framing::Chunked, Framing::Length),
    };
    framing_line(out, framing);
    out.extend_from_slice(b"\r\n");
}

/// Writes every slice, however the kernel splits the writes: a plain
/// write (`send`) when one slice is left, cheaper in the kernel than a
/// vectored one. Returns how many bytes reached the socket before an error.
pub(super) async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while !bufs.is_empty() {
        let wrote = match bufs {
            [one] => io.write(one).await,
            _ => io.write_vectored(bufs).await,
        };
        match wrote {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

/// The buffer an upstream request head is encoded into: one of this
/// worker's spares (up to [`HeadBuf::SPARES`]), given back when dropped,
/// instead of an allocation per request.
pub(crate) struct HeadBuf(pub(crate) Vec<u8>);

thread_local! {
    static SPARE_HEAD_BUFS: std::cell::RefCell<Vec<Vec<u8>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl HeadBuf {
    /// First capacity, bytes.
    const FIRST: usize = 512;
    /// Capacity past which a buffer is not kept, bytes.
    const KEEP: usize = 16 << 10;
    /// Spares kept per worker.
    const SPARES: usize = 64;

    pub(crate) fn take() -> HeadBuf {
        let spare = SPARE_HEAD_BUFS.with(|s| s.borrow_mut().pop());
        HeadBuf(spare.unwrap_or_else(|| Vec::with_capacity(Self::FIRST)))
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        if b.capacity() == 0 || b.capacity() > Self::KEEP {
            return;
        }
        b.clear();
        SPARE_HEAD_BUFS.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < Self::SPARES {
                s.push(b);
            }
        });
    }
}

/// Sends `req` over `conn` and reads the response head. On `NotSent` the
/// request is handed back untouched, so it can go out on another connection.
pub(crate) async fn send(
    mut conn: Conn,
    mut req: Request<UpBody>,
    head_buf: &mut Vec<u8>,
    reuse: HttpReuse,
) -> Result<Answer, SendError> {
    head_buf.clear();
    encode_head(&req, head_buf);
    let is_head = req.method() == http::Method::HEAD;
    let ask = Asked {
        head: is_head,
        upgrade: false,
        reuse,
    };
    // The head, and an in-memory body with it: one write (a small body
    // copied after the head, a larger one vectored).
    let first = match req.body() {
        UpBody::Full(Some(b)) if b.len() <= crate::h1::COPY_WITH_HEAD => {
            head_buf.extend_from_slice(b);
            let mut bufs = [IoSlice::new(head_buf)];
            write_all_vectored(&mut conn.io, &mut bufs).await
        }
        UpBody::Full(Some(b)) => {
            let mut bufs = [IoSlice::new(head_buf), IoSlice::new(b)];
            write_all_vectored(&mut conn.io, &mut bufs).await
        }
        _ => {
            let mut bufs = [IoSlice::new(head_buf)];
            write_all_vectored(&mut conn.io, &mut bufs).await
        }
    };
    match first {
        Ok(()) => {}
        Err((0, e)) => return Err(SendError::NotSent(Box::new(req), e)),
        Err((_, e)) => return Err(SendError::Failed(e.into())),
    }
    if let UpBody::Stream { .. } = req.body() {
        let chunked = req.body().size_hint().exact().is_none();
        if let Err(e) = pump(&mut conn.io, req.body_mut(), chunked).await {
            return Err(SendError::Failed(e));
        }
    }
    read_head(conn, ask).await.map_err(SendError::Failed)
}

/// Sends an upgrade request's head (already encoded, see
/// [`crate::h1::rewrite::encode_request`]) over a fresh connection and reads the
/// answer. A 101 comes back with a body that [`Body::into_switched`] turns
/// into the raw connection; any other answer is an ordinary response whose
/// connection is never pooled (the caller gives it no pool to go back to).
pub(crate) async fn send_upgrade(mut conn: Conn, head: &[u8]) -> Result<Answer, BoxError> {
    write_all_vectored(&mut conn.io, &mut [IoSlice::new(head)])
        .await
        .map_err(|(_, e)| e)?;
    let ask = Asked {
        head: false,
        upgrade: true,
        reuse: HttpReuse::Safe,
    };
    read_head(conn, ask).await
}

/// What the request asked for, as far as reading its answer goes.
#[derive(Clone, Copy)]
struct Asked {
    /// The request was a HEAD: the answer has no body.
    head: bool,
    /// The request asked to upgrade: a 101 is its answer.
    upgrade: bool,
    /// When the connection may be pooled afterwards.
    reuse: HttpReuse,
}

/// Reads the response head (skipping interim 1xx answers) and makes the
/// response whose body reads the rest from the same socket. A 101 is only
/// taken as the answer to an upgrade request; unasked, the connection has
/// switched to a protocol nobody speaks: an error, and the connection is
/// dropped (closed), never pooled.
async fn read_head(mut conn: Conn, ask: Asked) -> Result<Answer, BoxError> {
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(HEAD_BUF);
    let mut head = ResponseHead::default();
    loop {
        let n = conn.io.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "the backend closed the connection before answering".into()
            } else {
                "the backend closed the connection in the middle of the response head".into()
            });
        }
        loop {
            match parse_response(&buf, &limits, ask.head, &mut head) {
                Ok(Progress::NeedMore) => break,
                Ok(Progress::Complete(len)) => {
                    if head.interim {
                        buf.advance(len);
                        continue;
                    }
                    if head.status == 101 && !ask.upgrade {
                        return Err("the backend switched protocols (101) unasked".into());
                    }
                    let raw = buf.split_to(len).freeze();
                    let resp = to_response(&head, &raw)?;
                    return Ok(resp.map(|()| Body::new(conn, buf, &head, ask)));
                }
                Err(e) => return Err(format!("invalid response head: {}", e.reason()).into()),
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(HEAD_BUF);
        }
    }
}

/// The response as the proxy core takes it. Header values share the
/// head's bytes (`raw`): no allocation and copy per value.
fn to_response(head: &ResponseHead, raw: &Bytes) -> Result<Response<()>, BoxError> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(head.status)?;
    let h = r.headers_mut();
    h.reserve(head.fields.len());
    for f in &head.fields {
        let name = HeaderName::from_bytes(f.name.get(raw))?;
        let value = HeaderValue::from_maybe_shared(
            raw.slice(f.value.start as usize..f.value.end as usize),
        )?;
        h.append(name, value);
    }
    Ok(r)
}

/// Whether the connection may carry another request once this answer has
/// been read to its end. [`HttpReuse::Safe`] (HAProxy's `http-reuse safe`):
/// only after an answer whose end is known. An answer to HEAD ends at its
/// head, but a backend that sends the body it announced anyway sends it at
/// any later time, where no check before reuse can see it, and the next
/// request would read it as its answer: such a connection is closed, never
/// pooled. [`HttpReuse::Always`] pools it too.
fn reusable_after(head: &ResponseHead, head_request: bool, reuse: HttpReuse) -> bool {
    head.keep_alive
        && head.framing != Framing::Close
        && (!head_request || reuse == HttpReuse::Always)
}

/// A response body read from the upstream socket as it is polled.
pub struct Body {
    conn: Option<Conn>,
    buf: BytesMut,
    left: Left,
    keep_alive: bool,
    /// The answer was to a HEAD.
    head_request: bool,
}

impl Body {
    fn new(conn: Conn, buf: BytesMut, head: &ResponseHead, ask: Asked) -> Body {
        Body {
            conn: Some(conn),
            buf,
            left: Left::of(head.framing),
            keep_alive: reusable_after(head, ask.head, ask.reuse),
            head_request: ask.head,
        }
    }

    /// The connection, once the body has been read to its end and the
    /// backend keeps it alive with nothing left over; `None` otherwise
    /// (see [`reusable_after`]).
    pub(crate) fn take_conn(&mut self) -> Option<Conn> {
        let reusable = self.left.is_done() && self.keep_alive && self.buf.is_empty();
        let mut c = self.conn.take().filter(|_| reusable)?;
        c.reused = true;
        c.after_head = self.head_request;
        Some(c)
    }

    /// The connection of a 101 answer and the bytes the backend sent after
    /// its head (the first bytes of the new protocol).
    pub(crate) fn into_switched(mut self) -> Option<(UpstreamStream, BytesMut)> {
        let conn = self.conn.take()?;
        Some((conn.io, std::mem::take(&mut self.buf)))
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the backend's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(BODY_READ);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut self.buf)
    }

    fn broken(&mut self, why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.left = Left::Done;
        Poll::Ready(Some(Err(why.to_string().into())))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let step = match this.left.step(&mut this.buf) {
                Step::Fill => match ready!(this.poll_fill(cx)) {
                    Ok(0) => {
                        // Read until close: a clean end, but not reusable.
                        this.keep_alive = false;
                        this.left.at_eof()
                    }
                    Ok(_) => continue,
                    Err(e) => return this.broken(&e.to_string()),
                },
                step => step,
            };
            return match step {
                Step::Frame(f) => Poll::Ready(Some(Ok(f))),
                Step::End => Poll::Ready(None),
                Step::Broken(why) => this.broken(why),
                Step::Fill => unreachable!("handled above"),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.left.size_hint()
    }
}

#[cfg(test)]
mod tests;

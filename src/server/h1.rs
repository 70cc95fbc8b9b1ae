//! The HTTP/1.1 server side: one task per client connection, on which both
//! the client's request and the backend's answer are handled (the upstream
//! side is [`super::client`], on the same task).
//!
//! - An idle keep-alive connection holds no buffer: the loop waits for the
//!   socket to become readable, then borrows a read buffer from a per-worker
//!   free list and gives it back when a request has been served and nothing
//!   more is buffered.
//! - Heads are parsed by the strict codec ([`super::parse`]): every refused
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
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, Uri, Version as HttpVersion};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::Either;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::body::{Left as BodyLeft, Step};
use crate::h1::framing::{ChunkHeader, ChunkedDecoder, Decoded, Framing};
use crate::h1::parse::{parse_request, Limits, Progress, RequestHead, Version};
use crate::net::client_ip::ClientInfo;
use crate::proxy::body::DownBody;
use crate::proxy::error::ProxyError;
use crate::proxy::service::{handle, Proxy};
use crate::upstream::body::{BoxError, ClientBody};

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
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
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
pub struct ServerOpts {
    pub limits: Limits,
    /// From accept to the first request's complete head (the caller gives
    /// [`serve`] the deadline, accept + this).
    pub header_read: Duration,
    /// Between keep-alive requests.
    pub client_idle: Duration,
}

/// How a connection ended.
pub enum Served {
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
pub async fn serve(
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

/// A connection the backend switched (101) for an upgrade request.
struct Switched {
    upstream: crate::upstream::connect::UpstreamStream,
    /// The 101 head for the client, then what the backend sent after it.
    down: Vec<u8>,
    backend: Arc<crate::backend::Backend>,
}

/// What became of an upgrade request.
enum Upgrade {
    /// 101: the client connection becomes a tunnel.
    Switched(Switched),
    /// Any other answer: an ordinary response, after which the client's
    /// connection keeps speaking HTTP/1.1 (its upstream one is not pooled).
    Answered(Response<DownBody>),
    /// Not allowed here, no backend, or no answer: respond, then close.
    Refused(Response<DownBody>),
}

/// Sends an upgrade request (no body: see `serve`) to a backend of its
/// route's role over a fresh connection and reads the answer. Only a 101
/// switches; nothing the client sent after the head goes upstream before it.
async fn upgrade_request(
    proxy: &'static Proxy,
    head: &RequestHead,
    raw: &Bytes,
    method: &Method,
    path: &str,
    client: &ClientInfo,
    out: &mut Vec<u8>,
) -> Upgrade {
    let t = proxy.shared.load();
    let route = crate::routing::classify(&t.cfg.routes, method, path);
    if !route.upgrade {
        return Upgrade::Refused(ProxyError::UpgradeNotAllowed.into_response());
    }
    let target = match route.role {
        crate::routing::Role::Read => t.pick_read(client.client_ip),
        crate::routing::Role::Write => t.write_leader(),
    };
    let Some(backend) = target.cloned() else {
        return Upgrade::Refused(ProxyError::NoBackend.into_response());
    };
    out.clear();
    let fwd = crate::h1::rewrite::ForwardOpts {
        client_ip: client.peer.ip(),
        tls: client.tls,
        allow_upgrade: true,
    };
    crate::h1::rewrite::encode_request(head, raw, &fwd, out);
    let connect = crate::upstream::connect::connect(
        &*backend,
        t.cfg.timeouts.connect,
        crate::upstream::connect::Alpn::Http1,
    );
    let upstream = match connect.await {
        Ok(u) => u,
        Err(e) => {
            let err = ProxyError::Connect {
                backend: backend.name().to_string(),
                reason: e.to_string(),
            };
            return Upgrade::Refused(err.into_response());
        }
    };
    let conn = crate::upstream::h1::Conn::new(upstream, 0);
    let sent = crate::upstream::h1::send_upgrade(conn, out);
    let answer = match tokio::time::timeout(t.cfg.timeouts.response_headers, sent).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let err = ProxyError::Upstream {
                backend: backend.name().to_string(),
                reason: e.to_string(),
            };
            return Upgrade::Refused(err.into_response());
        }
        Err(_) => {
            let err = ProxyError::Timeout {
                backend: backend.name().to_string(),
                after: t.cfg.timeouts.response_headers,
            };
            return Upgrade::Refused(err.into_response());
        }
    };
    let (mut parts, body) = answer.into_parts();
    if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
        crate::proxy::forward::prepare_response(&mut parts);
        let body = DownBody::Upstream {
            inner: Either::Left(body),
            release: None,
            idle: crate::upstream::body::IdleTimer::new(Some(t.cfg.timeouts.body_idle)),
        };
        return Upgrade::Answered(Response::from_parts(parts, body));
    }
    let Some((upstream, early)) = body.into_switched() else {
        return Upgrade::Refused(ProxyError::NoBackend.into_response());
    };
    let mut down = Vec::with_capacity(256 + early.len());
    switching_head(&mut parts.headers, &mut down);
    down.extend_from_slice(&early);
    Upgrade::Switched(Switched {
        upstream,
        down,
        backend,
    })
}

/// The 101 head for the client: the backend's fields without hop-by-hop
/// ones, then its `Upgrade` and `Connection: upgrade`.
fn switching_head(h: &mut HeaderMap, out: &mut Vec<u8>) {
    let upgrade: Vec<HeaderValue> = h.get_all(http::header::UPGRADE).iter().cloned().collect();
    crate::proxy::forward::strip_hop_by_hop(h);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    write_fields(h, out, true);
    for v in &upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
}

/// A switched connection: the 101 head (and whatever the backend sent
/// after it) goes to the client, whatever the client sent after its
/// request to the backend, then bytes flow both ways until either side
/// closes.
async fn run_tunnel(
    mut client_io: Box<dyn ClientStream>,
    early: BytesMut,
    sw: Switched,
    client: &ClientInfo,
) {
    use tokio::io::AsyncWriteExt;
    let Switched {
        mut upstream,
        down,
        backend,
    } = sw;
    let _in_flight = backend.begin_request();
    let start = async {
        client_io.write_all(&down).await?;
        upstream.write_all(&early).await?;
        tokio::io::copy_bidirectional(&mut client_io, &mut upstream).await
    };
    match start.await {
        Ok((up, down)) => {
            tracing::debug!(client = %client.peer, backend = %backend.name(), up, down, "upgrade tunnel closed")
        }
        Err(e) => {
            tracing::debug!(client = %client.peer, backend = %backend.name(), error = %e, "upgrade tunnel ended")
        }
    }
}

/// The answer to `Expect: 100-continue`, from the body's framing and the
/// body limit (`limits.max_body_bytes`, bytes).
#[derive(Debug, PartialEq, Eq)]
enum Continue {
    /// No body to ask for.
    Nothing,
    /// `100 Continue`, before any body byte is awaited.
    Send,
    /// The declared length is past the limit: 413, no 100.
    TooLarge,
}

fn expect_answer(framing: Framing, max_body: u64) -> Continue {
    match framing {
        Framing::Length(n) if n > max_body => Continue::TooLarge,
        Framing::Length(0) | Framing::None | Framing::Close => Continue::Nothing,
        Framing::Length(_) | Framing::Chunked => Continue::Send,
    }
}

/// Reads until the buffered body starts with a whole, valid chunk-size
/// line (or more). `Err(None)`: the client went away.
async fn first_chunk_ok(shared: &Shared) -> Result<(), Option<crate::h1::ChunkedError>> {
    loop {
        {
            let io = lock(shared);
            match ChunkedDecoder::default().decode(&io.buf) {
                Err(e) => return Err(Some(e)),
                Ok((0, Decoded::NeedMore)) => {}
                Ok(_) => return Ok(()),
            }
        }
        match std::future::poll_fn(|cx| lock(shared).poll_fill(cx, READ_BUF)).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The request as the proxy's service takes it. Header values share the
/// head's bytes (no copy).
fn to_request(h: &RequestHead, raw: &Bytes) -> Result<Request<ClientBody>, crate::h1::HeadError> {
    use crate::h1::HeadError;
    let method = Method::from_bytes(h.method.get(raw)).map_err(|_| HeadError::BadMethod)?;
    let uri = Uri::from_maybe_shared(raw.slice(h.target.start as usize..h.target.end as usize))
        .map_err(|_| HeadError::BadTarget)?;
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = match h.version {
        Some(Version::Http10) => HttpVersion::HTTP_10,
        _ => HttpVersion::HTTP_11,
    };
    let map = req.headers_mut();
    // Room for the forwarding headers the proxy adds (X-Forwarded-For,
    // -Proto, -Host), so the map is not regrown on every request.
    map.reserve(h.fields.len() + 3);
    for f in &h.fields {
        let name = HeaderName::from_bytes(f.name.get(raw)).map_err(|_| HeadError::BadHeaderName)?;
        let value =
            HeaderValue::from_maybe_shared(raw.slice(f.value.start as usize..f.value.end as usize))
                .map_err(|_| HeadError::BadHeaderValue)?;
        map.append(name, value);
    }
    Ok(req)
}

/// Tells the connection loop whether the request body was read to its end.
#[derive(Clone)]
struct BodyDone(Option<Arc<std::sync::atomic::AtomicBool>>);

impl BodyDone {
    fn is_done(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|d| d.load(std::sync::atomic::Ordering::Acquire))
    }
}

fn attach_body(
    mut req: Request<ClientBody>,
    head: &RequestHead,
    shared: &Shared,
) -> (Request<ClientBody>, BodyDone) {
    // A request body is never read until close (the codec says so).
    let left = match head.framing {
        Framing::Length(n) if n > 0 => BodyLeft::of(head.framing),
        Framing::Chunked => BodyLeft::of(head.framing),
        _ => return (req, BodyDone(None)),
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    *req.body_mut() = ClientBody::Boxed(Box::pin(RequestBody {
        shared: Some(shared.clone()),
        left,
        done: Some(done.clone()),
    }));
    (req, BodyDone(Some(done)))
}

/// A request body read from the client's connection as it is polled.
pub struct RequestBody {
    shared: Option<Shared>,
    left: BodyLeft,
    done: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RequestBody {
    fn finish(&mut self) {
        self.left = BodyLeft::Done;
        if let Some(d) = &self.done {
            d.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn broken(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.left = BodyLeft::Done;
        self.shared = None;
        Poll::Ready(Some(Err(why.into())))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(shared) = this.shared.clone() else {
            return Poll::Ready(None);
        };
        let mut io = lock(&shared);
        let step = loop {
            match this.left.step(&mut io.buf) {
                Step::Fill => match ready!(io.poll_fill(cx, BODY_READ)) {
                    Ok(0) => break this.left.at_eof(),
                    Ok(_) => {}
                    Err(e) => {
                        drop(io);
                        return this.broken(e.to_string());
                    }
                },
                step => break step,
            }
        };
        drop(io);
        match step {
            Step::Frame(f) => {
                if this.left.is_done() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Step::End => {
                this.finish();
                Poll::Ready(None)
            }
            Step::Broken(why) => this.broken(format!("invalid request body: {why}")),
            Step::Fill => unreachable!("filled above"),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.left.size_hint()
    }
}

/// Writes every slice to the client.
async fn write_all(shared: &Shared, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut bufs = bufs;
    while bufs.iter().any(|b| !b.is_empty()) {
        let n = std::future::poll_fn(|cx| {
            let mut io = lock(shared);
            Pin::new(&mut io.stream).poll_write_vectored(cx, bufs)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Writes a response: the head with framing for the body (length when
/// known; chunked for an HTTP/1.1 client that stays; else until close),
/// then the body. `Ok(false)` when the connection must close.
async fn write_response(
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
        write_all(shared, &mut [IoSlice::new(out), IoSlice::new(&b)]).await?;
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
fn keeps_length(status: u16, head_request: bool) -> bool {
    status == 304 || (head_request && status >= 200 && status != 204)
}

/// Header fields as lines. Transfer-Encoding is always the caller's; so is
/// Content-Length when `skip_length` (see [`keeps_length`]).
fn write_fields(h: &HeaderMap, out: &mut Vec<u8>, skip_length: bool) {
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

fn itoa3(s: u16) -> [u8; 3] {
    [
        b'0' + (s / 100 % 10) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

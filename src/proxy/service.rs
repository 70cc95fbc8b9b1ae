//! One request: take one routing-table snapshot, classify, read the body when
//! a re-send is possible, and hand over to [`super::read`] or [`super::write`];
//! turn the outcome into the client's response (metrics, debug headers,
//! access log).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;

use tokio::time::Instant;

use super::body::{DownBody, Release};
use super::error::ProxyError;
use super::forward::SendOpts;
use super::{read, write};
use crate::backend::Backend;
use crate::config::{Config, RetryAmbiguous, DEFAULT_SESSIONS};
use crate::consistency::{self, Sessions};
use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::routing::{classify, Need, Role, Route, RoutingTable, Shared};
use crate::upstream::body::{
    take_conn, ClientBody, ClientBodyError, IdleTimer, UpBody, UpstreamBody,
};

static X_BACKEND: http::HeaderName = http::HeaderName::from_static("x-leaderproxy-backend");
static X_ROLE: http::HeaderName = http::HeaderName::from_static("x-leaderproxy-role");
static IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// State shared by all workers.
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
    pub(crate) monitor: MonitorHandle,
    pub(crate) metrics: Arc<Metrics>,
    /// Writes waiting for a leader right now (for `writes.max_held`).
    pub(crate) held: AtomicUsize,
    /// Bytes of request bodies kept for a possible re-send right now.
    replay_bytes: AtomicU64,
    /// Open client connections across all workers (for limits.max_connections).
    pub(crate) open_connections: AtomicUsize,
    /// Each session's last write, for read-your-writes.
    pub(crate) sessions: Sessions,
    /// Reads routed and hedged tries sent, for `reads.hedge.max_percent`.
    reads: AtomicU64,
    hedges: AtomicU64,
    /// The read tier's recent p95/p99 (`reads.try_timeout: auto`,
    /// `reads.hedge.after: p95`).
    pub(crate) tier_latency: crate::backend::latency::TierLatency,
}

impl Proxy {
    pub(crate) fn new(shared: Arc<Shared>, monitor: MonitorHandle, metrics: Arc<Metrics>) -> Proxy {
        let capacity = session_capacity(&shared.load().cfg);
        Proxy {
            sessions: Sessions::new(
                capacity,
                metrics.session_evictions.clone(),
                metrics.sessions.clone(),
            ),
            shared,
            monitor,
            metrics,
            held: AtomicUsize::new(0),
            replay_bytes: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            tier_latency: Default::default(),
        }
    }

    /// Counts a read routed to a backend (the base of the hedge budget).
    pub(super) fn read_counted(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more hedged try keeps hedges within `max_percent` of the
    /// reads counted so far; counts it when it does.
    pub(super) fn hedge_allowed(&self, max_percent: u32) -> bool {
        let reads = self.reads.load(Ordering::Relaxed);
        let hedges = self.hedges.load(Ordering::Relaxed);
        if (hedges + 1) * 100 > reads * u64::from(max_percent) {
            return false;
        }
        self.hedges.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Reserves `n` bytes of `limits.replay_buffer_bytes` for one body copy.
    fn reserve_replay(&self, n: u64, cap: u64) -> Option<ReplayReservation<'_>> {
        let before = self.replay_bytes.fetch_add(n, Ordering::Relaxed);
        if before + n > cap {
            self.replay_bytes.fetch_sub(n, Ordering::Relaxed);
            self.metrics.replay_budget_exhausted.inc();
            return None;
        }
        Some(ReplayReservation { proxy: self, n })
    }
}

/// `reads.session.capacity` of `cfg` (the default when no session is set).
fn session_capacity(cfg: &Config) -> usize {
    cfg.reads
        .session
        .as_ref()
        .map_or(DEFAULT_SESSIONS, |s| s.capacity)
}

impl Proxy {
    /// The session a request belongs to (`reads.session`), as a map key.
    pub(super) fn session_id(
        &self,
        cfg: &Config,
        ctx: &Ctx,
        headers: &http::HeaderMap,
    ) -> Option<u64> {
        let key = &cfg.reads.session.as_ref()?.key;
        let mut buf = [0u8; 16];
        consistency::session_value(key, headers, &ctx.client.client_ip, &mut buf)
            .map(|v| self.sessions.id(v))
    }

    /// What a read must see under `reads.consistency: read_your_writes`.
    /// (Takes the client's `x-leaderproxy-position` out of the request.)
    pub(super) fn need(&self, cfg: &Config, ctx: &Ctx, headers: &mut http::HeaderMap) -> Need {
        let from_client = consistency::take_client_position(headers);
        let Some(id) = self.session_id(cfg, ctx, headers) else {
            return Need::of(None, from_client);
        };
        let mut entry = self.sessions.get(id);
        // A write whose position was not known: its round may have read
        // the leader's position by now.
        if let Some(round) = entry.and_then(|e| e.after_round) {
            if let Some((done, p)) = self.shared.rounds.reference_since(round) {
                entry = self.sessions.resolve(id, done, p);
            }
        }
        Need::of(entry, from_client)
    }

    /// A reloaded config is in force: applies its session capacity.
    pub(crate) fn reloaded(&self, cfg: &Config) {
        self.sessions.set_capacity(session_capacity(cfg));
    }
}

impl Proxy {
    /// Joins the hold queue of requests and TCP connections waiting for a
    /// leader; `None` when `max` (`writes.max_held`) are waiting already.
    pub(crate) fn hold(&self, max: usize) -> Option<Held<'_>> {
        if self.held.fetch_add(1, Ordering::Relaxed) >= max {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.metrics.held_writes.inc();
        Some(Held { proxy: self })
    }
}

impl Proxy {
    /// Counts a new client connection (HTTP or TCP) against
    /// `limits.max_connections` (`max`); `None` (counted as rejected) when
    /// that many are open already.
    pub(crate) fn admit(&'static self, max: usize) -> Option<OpenConnection> {
        if self.open_connections.fetch_add(1, Ordering::Relaxed) >= max {
            self.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.metrics.rejected_connections.inc();
            return None;
        }
        self.metrics.client_connections.inc();
        Some(OpenConnection(self))
    }
}

/// One open client connection, counted until dropped ([`Proxy::admit`]).
pub(crate) struct OpenConnection(&'static Proxy);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.client_connections.dec();
    }
}

/// Counts one held write (or TCP connection) for as long as it waits.
pub(crate) struct Held<'a> {
    proxy: &'a Proxy,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.proxy.held.fetch_sub(1, Ordering::Relaxed);
        self.proxy.metrics.held_writes.dec();
    }
}

/// A share of the replay budget, returned when the request is done.
struct ReplayReservation<'a> {
    proxy: &'a Proxy,
    n: u64,
}

impl Drop for ReplayReservation<'_> {
    fn drop(&mut self) {
        self.proxy.replay_bytes.fetch_sub(self.n, Ordering::Relaxed);
    }
}

pub(crate) use crate::net::client_ip::ClientInfo;

/// One request's fixed facts, handed to the read and write paths.
pub(super) struct Ctx {
    pub(crate) client: ClientInfo,
    pub(crate) worker: usize,
    pub(crate) route: Route,
    /// The client spoke HTTP/2.
    pub(crate) h2: bool,
    pub(crate) arrived: Instant,
}

impl Ctx {
    /// Options for one upstream attempt under `cfg`.
    pub(crate) fn opts(&self, cfg: &Config, min_gen: u64, gen: u64) -> SendOpts {
        SendOpts {
            h2: self.h2,
            worker: self.worker,
            min_gen,
            gen,
            connect_timeout: cfg.timeouts.connect,
            response_timeout: self.route.timeout.unwrap_or(cfg.timeouts.response_headers),
            max_idle: cfg.timeouts.upstream_idle,
            reuse: cfg.http_reuse,
        }
    }

    /// The idle limit of the response body: none on long-poll routes (nor
    /// of the request body, see `dispatch`).
    pub(crate) fn response_idle(&self, cfg: &Config) -> IdleTimer {
        IdleTimer::new((!self.route.long_poll).then_some(cfg.timeouts.body_idle))
    }
}

/// Handles one client request; never fails (errors become responses here).
pub(crate) async fn handle(
    proxy: &Proxy,
    worker: usize,
    client: ClientInfo,
    req: Request<ClientBody>,
) -> Response<DownBody> {
    let arrived = Instant::now();
    let t = proxy.shared.load();
    let client = client.for_request(&t.cfg.trusted_proxies, req.headers());
    let route = classify(&t.cfg.routes, req.method(), req.uri().path());
    let role = route.role;
    let access = t.cfg.access_log.then(|| {
        (
            req.method().clone(),
            req.uri().path().to_string(),
            req.body().size_hint().exact(),
        )
    });
    let (client_ip, peer) = (client.client_ip, client.peer);
    let ctx = Ctx {
        client,
        worker,
        route,
        h2: req.version() == http::Version::HTTP_2,
        arrived,
    };
    let result = dispatch(proxy, &t, &ctx, req).await;
    let (mut resp, backend) = match result {
        Ok((resp, backend)) => (resp, Some(backend)),
        Err(Failure { err, backend }) => {
            if backend.is_some() {
                tracing::debug!(client = %client_ip, error = %err, role = role.as_str(), "request failed");
            }
            (err.into_response(), backend)
        }
    };
    let status = resp.status().as_u16();
    match &backend {
        Some(b) => b.metrics().request(role, status),
        None => proxy.metrics.unrouted(role, status).inc(),
    }
    proxy
        .metrics
        .duration(role)
        .observe(arrived.elapsed().as_secs_f64());
    if t.cfg.debug_headers {
        let h = resp.headers_mut();
        h.insert(&X_ROLE, HeaderValue::from_static(role.as_str()));
        if let Some(b) = &backend {
            if let Ok(v) = HeaderValue::from_str(&b.name()) {
                h.insert(&X_BACKEND, v);
            }
        }
    }
    if let Some((method, path, bytes_in)) = access {
        let name = backend.as_ref().map(|b| b.name());
        tracing::info!(
            target: "access",
            client = %client_ip,
            peer = %peer,
            %method,
            path,
            role = role.as_str(),
            backend = name.as_ref().map_or("-", |n| n.as_str()),
            status,
            duration_ms = arrived.elapsed().as_secs_f64() * 1000.0,
            // Declared lengths; absent when the body is streamed without one.
            bytes_in,
            bytes_out = resp.body().size_hint().exact(),
        );
    }
    resp
}

/// The proxy core as a [`tower::Service`]: one per client connection (it
/// carries the connection's [`ClientInfo`]). Hyper's HTTP/2 server and
/// embedders (see `examples/embed.rs`) send their requests through it; the
/// HTTP/1.1 server calls [`handle`] with the request it built from the
/// parsed head. Any body type is taken: hyper's `Incoming` as it is, others
/// boxed once ([`ClientBody::new`]). Never fails: errors are responses.
#[derive(Clone)]
pub struct ProxyService {
    proxy: &'static Proxy,
    worker: usize,
    client: ClientInfo,
}

impl ProxyService {
    /// The service for one client connection: `worker` picks the pool slot
    /// its upstream connections come from (`0..workers`).
    pub(crate) fn new(proxy: &'static Proxy, worker: usize, client: ClientInfo) -> ProxyService {
        ProxyService {
            proxy,
            worker,
            client,
        }
    }
}

impl<B> tower::Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::upstream::body::BoxError>,
{
    type Response = Response<DownBody>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<DownBody>, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Limits answer per request (held writes, busy backends): always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (proxy, worker, client) = (self.proxy, self.worker, self.client.clone());
        let req = req.map(ClientBody::new);
        Box::pin(async move { Ok(handle(proxy, worker, client, req).await) })
    }
}

/// A request the proxy answers itself, and the backend it concerns, if any
/// (so per-backend metrics count it).
pub(super) struct Failure {
    pub(crate) err: ProxyError,
    pub(crate) backend: Option<Arc<Backend>>,
}

impl From<ProxyError> for Failure {
    fn from(err: ProxyError) -> Failure {
        Failure { err, backend: None }
    }
}

pub(super) fn blame(err: ProxyError, backend: &Arc<Backend>) -> Failure {
    Failure {
        err,
        backend: Some(backend.clone()),
    }
}

pub(super) type Routed = Result<(Response<DownBody>, Arc<Backend>), Failure>;

/// Whether a request may be applied twice with the same result: as its
/// route says (`routes[].idempotent`), else PUT and DELETE (RFC 9110
/// §9.2.2) and any request that carries an `Idempotency-Key` the backend
/// deduplicates by.
pub(super) fn is_idempotent(
    route: &Route,
    method: &http::Method,
    headers: &http::HeaderMap,
) -> bool {
    route.idempotent.unwrap_or_else(|| {
        matches!(*method, http::Method::PUT | http::Method::DELETE)
            || headers.contains_key(&IDEMPOTENCY_KEY)
    })
}

async fn dispatch(
    proxy: &Proxy,
    t: &Arc<RoutingTable>,
    ctx: &Ctx,
    req: Request<ClientBody>,
) -> Routed {
    let cfg = &t.cfg;
    let (mut parts, body) = req.into_parts();
    let declared = body.size_hint().exact().or_else(|| {
        parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    if declared.is_some_and(|n| n > cfg.limits.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge(cfg.limits.max_body_bytes).into());
    }
    // A copy of the body is only worth its memory when a re-send can happen.
    let resendable = match ctx.route.role {
        Role::Read => cfg.reads.retry,
        Role::Write => {
            !cfg.writes.not_leader.is_empty()
                || (cfg.writes.retry_ambiguous == RetryAmbiguous::Idempotent
                    && is_idempotent(&ctx.route, &parts.method, &parts.headers))
        }
    };
    super::headers::prepare_request(&mut parts, ctx.client.peer.ip(), ctx.client.tls);
    if let Some(name) = cfg
        .tls
        .as_ref()
        .and_then(|t| t.forward_client_cert.as_ref())
    {
        // Never the client's own: only a subject verified at the handshake.
        parts.headers.remove(name);
        if let Some(subject) = &ctx.client.cert_subject {
            parts.headers.insert(name.clone(), subject.clone());
        }
    }
    // A long-poll route (a gRPC watch stream) may stay silent either way.
    let idle = (!ctx.route.long_poll).then_some(cfg.timeouts.body_idle);
    let stream = UpBody::stream(body, cfg.limits.max_body_bytes, idle);
    let mut _reservation = None;
    let up = if stream.is_end_stream() {
        UpBody::empty()
    } else {
        let keep = declared
            .filter(|&n| resendable && n <= cfg.writes.replay_body_limit)
            .and_then(|n| proxy.reserve_replay(n, cfg.limits.replay_buffer_bytes));
        match keep {
            // Boxed: bodies are the less common case; keep the request future small.
            Some(r) => match Box::pin(stream.collect()).await {
                Ok(c) => {
                    _reservation = Some(r);
                    UpBody::Full(Some(c.to_bytes()))
                }
                Err(e) => return Err(client_body_error(&*e).into()),
            },
            None => stream,
        }
    };
    let req = Request::from_parts(parts, up);
    match ctx.route.role {
        Role::Read => read::read(proxy, t, ctx, req).await,
        Role::Write => write::write(proxy, ctx, req).await,
    }
}

fn client_body_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    match e.downcast_ref::<ClientBodyError>() {
        Some(c) => ProxyError::from_client_body(c),
        None => ProxyError::BadRequest(format!("reading request body: {e}")),
    }
}

/// A copy of a request whose body is in memory, for a second attempt.
pub(super) fn try_clone(req: &Request<UpBody>) -> Option<Request<UpBody>> {
    let UpBody::Full(b) = req.body() else {
        return None;
    };
    let mut r = Request::new(UpBody::Full(b.clone()));
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    Some(r)
}

/// Turns a backend answer into the client's response, holding the
/// in-flight count and the connection until the body has been read.
pub(super) fn respond(
    resp: Response<UpstreamBody>,
    mut rel: Release,
    idle: IdleTimer,
) -> Response<DownBody> {
    let (mut parts, mut body) = resp.into_parts();
    super::headers::prepare_response(&mut parts);
    if body.is_end_stream() {
        rel.finish_with(take_conn(&mut body));
        return Response::from_parts(parts, DownBody::empty());
    }
    Response::from_parts(
        parts,
        DownBody::Upstream {
            inner: body,
            release: Some(rel),
            idle,
        },
    )
}

//! One request: take one routing-table snapshot, classify, pick a backend,
//! forward, and apply the trust rules (hold writes without a leader, re-send
//! a write only when it provably did not reach a backend or was refused as
//! not-leader, retry a read once on another follower).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, LOCATION};
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{DownBody, Release, UpBody};
use super::error::ProxyError;
use super::forward::{self, Attempt, SendOpts};
use crate::config::Config;
use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::routing::{classify, Backend, LeaderState, Role, RoutingTable, Shared};

/// Largest backend answer to a write that is scanned for
/// `writes.not_leader.body_regex`; larger answers pass through unscanned.
pub const NOT_LEADER_SCAN_LIMIT: u64 = 64 << 10;

static X_BACKEND: http::HeaderName = http::HeaderName::from_static("x-leaderproxy-backend");
static X_ROLE: http::HeaderName = http::HeaderName::from_static("x-leaderproxy-role");

/// State shared by all workers.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub monitor: MonitorHandle,
    pub metrics: Arc<Metrics>,
    held: AtomicUsize,
    /// Open client connections across all workers (for limits.max_connections).
    pub open_connections: AtomicUsize,
}

impl Proxy {
    pub fn new(shared: Arc<Shared>, monitor: MonitorHandle, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            shared,
            monitor,
            metrics,
            held: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
        }
    }
}

/// Counts a held write for as long as it waits.
struct HeldGuard<'a> {
    proxy: &'a Proxy,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.proxy.held.fetch_sub(1, Ordering::Relaxed);
        self.proxy.metrics.held_writes.dec();
    }
}

pub use crate::net::client_ip::ClientInfo;

/// Handles one client request; never fails (errors become responses here).
pub async fn handle(
    proxy: &Proxy,
    worker: usize,
    client: ClientInfo,
    req: Request<Incoming>,
) -> Response<DownBody> {
    let start = Instant::now();
    let t = proxy.shared.load();
    let client = client.for_request(&t.cfg.trusted_proxies, req.headers());
    let role = classify(&t.cfg.routes, req.method(), req.uri().path());
    let access = t.cfg.access_log.then(|| {
        (
            req.method().clone(),
            req.uri().path().to_string(),
            req.body().size_hint().exact(),
        )
    });
    let result = route(proxy, &t, worker, client, role, req).await;
    let (mut resp, backend) = match result {
        Ok((resp, backend)) => (resp, Some(backend)),
        Err(Failure { err, backend }) => {
            if backend.is_some() {
                tracing::debug!(client = %client.client_ip, error = %err, role = role.as_str(), "request failed");
            }
            (err.into_response(), backend)
        }
    };
    let status = resp.status().as_u16();
    match &backend {
        Some(b) => b.metrics.request(role, status),
        None => proxy.metrics.unrouted(role, status).inc(),
    }
    proxy
        .metrics
        .duration(role)
        .observe(start.elapsed().as_secs_f64());
    if t.cfg.debug_headers {
        let h = resp.headers_mut();
        h.insert(&X_ROLE, HeaderValue::from_static(role.as_str()));
        if let Some(b) = &backend {
            if let Ok(v) = HeaderValue::from_str(&b.name) {
                h.insert(&X_BACKEND, v);
            }
        }
    }
    if let Some((method, path, bytes_in)) = access {
        tracing::info!(
            target: "access",
            client = %client.client_ip,
            %method,
            path,
            role = role.as_str(),
            backend = backend.as_ref().map_or("-", |b| b.name.as_str()),
            status,
            duration_ms = start.elapsed().as_secs_f64() * 1000.0,
            // Declared lengths; absent when the body is streamed without one.
            bytes_in,
            bytes_out = resp.body().size_hint().exact(),
        );
    }
    resp
}

/// A request the proxy answers itself, and the backend whose failure caused
/// it, if any (so per-backend metrics count it).
struct Failure {
    err: ProxyError,
    backend: Option<Arc<Backend>>,
}

impl From<ProxyError> for Failure {
    fn from(err: ProxyError) -> Failure {
        Failure { err, backend: None }
    }
}

fn blame(err: ProxyError, backend: &Arc<Backend>) -> Failure {
    Failure {
        err,
        backend: Some(backend.clone()),
    }
}

type Routed = Result<(Response<DownBody>, Arc<Backend>), Failure>;

async fn route(
    proxy: &Proxy,
    t: &Arc<RoutingTable>,
    worker: usize,
    client: ClientInfo,
    role: Role,
    req: Request<Incoming>,
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
    let h2 = parts.version == http::Version::HTTP_2;
    forward::prepare_request(&mut parts, client.peer.ip(), client.tls);

    // A body small enough is read first, so the request can be sent again.
    let replayable = declared.is_some_and(|n| n <= cfg.writes.replay_body_limit);
    let up = if body.is_end_stream() {
        UpBody::empty()
    } else if replayable {
        let limit = cfg.writes.replay_body_limit as usize;
        // Boxed: bodies are the less common case; keep the request future small.
        match Box::pin(Limited::new(body, limit).collect()).await {
            Ok(c) => UpBody::Full(Some(c.to_bytes())),
            Err(e) => {
                return Err(ProxyError::BadRequest(format!("reading request body: {e}")).into())
            }
        }
    } else {
        UpBody::Stream {
            inner: body,
            remaining: cfg.limits.max_body_bytes,
            limit: cfg.limits.max_body_bytes,
        }
    };
    let req = Request::from_parts(parts, up);
    match role {
        Role::Read => read(proxy, t, worker, client, req, h2).await,
        Role::Write => write(proxy, t.clone(), worker, req, h2).await,
    }
}

fn opts(cfg: &Config, worker: usize, min_gen: u64, gen: u64, h2: bool) -> SendOpts {
    SendOpts {
        h2,
        worker,
        min_gen,
        gen,
        connect_timeout: cfg.timeouts.connect,
        request_timeout: cfg.timeouts.request,
        max_idle: cfg.timeouts.idle,
    }
}

/// A copy of a request whose body is in memory, for a second attempt.
fn try_clone(req: &Request<UpBody>) -> Option<Request<UpBody>> {
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

fn passive_failure(proxy: &Proxy, t: &RoutingTable, b: &Backend) {
    let n = t.cfg.passive.consecutive_failures;
    if n > 0 && b.failures.fetch_add(1, Ordering::Relaxed) + 1 >= n {
        proxy.monitor.eject(b.id);
    }
}

fn passive_success(b: &Backend) {
    if b.failures.load(Ordering::Relaxed) != 0 {
        b.failures.store(0, Ordering::Relaxed);
    }
}

async fn read(
    proxy: &Proxy,
    t: &Arc<RoutingTable>,
    worker: usize,
    client: ClientInfo,
    req: Request<UpBody>,
    h2: bool,
) -> Routed {
    if !t.ready {
        return Err(ProxyError::NotReady.into());
    }
    let Some(first) = t.pick_read(client.client_ip, None).cloned() else {
        return Err(no_read_target(t).into());
    };
    let o = opts(&t.cfg, worker, 0, t.leader_gen, h2);
    let spare = if t.cfg.reads.retry {
        try_clone(&req)
    } else {
        None
    };
    let rel = Release::begin(first.clone(), worker);
    let (err, spare) = match forward::send(&first, req, &o).await {
        Attempt::Answered(resp, conn) => {
            let s = resp.status().as_u16();
            if (s == 502 || s == 503) && spare.is_some() && t.followers.len() > 1 {
                passive_failure(proxy, t, &first);
                (None, spare)
            } else {
                if s >= 500 {
                    passive_failure(proxy, t, &first);
                } else {
                    passive_success(&first);
                }
                return Ok((respond(resp, rel, conn), first));
            }
        }
        Attempt::NotSent(req, e) => {
            passive_failure(proxy, t, &first);
            (Some(e), spare.or(Some(req)))
        }
        Attempt::Failed(e) => {
            passive_failure(proxy, t, &first);
            (Some(e), spare)
        }
    };
    drop(rel);
    // One retry, on another follower, for a read that may be repeated.
    let Some(req) = spare.filter(|_| t.cfg.reads.retry) else {
        let err = err.unwrap_or_else(|| ProxyError::Upstream {
            backend: first.name.clone(),
            reason: "backend answered 502/503".into(),
        });
        return Err(blame(err, &first));
    };
    let Some(second) = t.pick_read(client.client_ip, Some(first.id)).cloned() else {
        return Err(blame(err.unwrap_or(ProxyError::NoBackend), &first));
    };
    proxy.metrics.reads_retried.inc();
    let rel = Release::begin(second.clone(), worker);
    // Boxed: the retry is the rare path; keep the common future small.
    match Box::pin(forward::send(&second, req, &o)).await {
        Attempt::Answered(resp, conn) => {
            if resp.status().as_u16() >= 500 {
                passive_failure(proxy, t, &second);
            } else {
                passive_success(&second);
            }
            Ok((respond(resp, rel, conn), second))
        }
        Attempt::NotSent(_, e) | Attempt::Failed(e) => {
            passive_failure(proxy, t, &second);
            Err(blame(e, &second))
        }
    }
}

fn no_read_target(t: &RoutingTable) -> ProxyError {
    match &t.leader {
        LeaderState::SplitBrain(names) if t.cfg.reads.fallback_to_leader => {
            ProxyError::SplitBrain(names.clone())
        }
        _ => ProxyError::NoBackend,
    }
}

/// Turns a backend answer into the client's response, holding the
/// in-flight count and the connection until the body has been read.
fn respond(
    resp: Response<Incoming>,
    mut rel: Release,
    conn: Option<super::pool::Conn>,
) -> Response<DownBody> {
    let (mut parts, body) = resp.into_parts();
    forward::prepare_response(&mut parts);
    if body.is_end_stream() {
        if let Some(c) = conn {
            rel.set_conn(c);
        }
        rel.finish();
        return Response::from_parts(parts, DownBody::empty());
    }
    if let Some(c) = conn {
        rel.set_conn(c);
    }
    Response::from_parts(
        parts,
        DownBody::Upstream {
            inner: body,
            release: Some(rel),
        },
    )
}

/// What a backend's answer to a write means.
enum Verdict {
    /// Pass it to the client.
    Deliver(Response<DownBody>),
    /// "Not the leader": re-send elsewhere; maybe a hint of who leads.
    NotLeader(Option<Arc<Backend>>),
}

async fn judge_write_answer(
    t: &RoutingTable,
    resp: Response<Incoming>,
    rel: Release,
    conn: Option<super::pool::Conn>,
) -> Verdict {
    let nl = &t.cfg.writes.not_leader;
    let status = resp.status().as_u16();
    if nl.status.contains(&status) {
        return Verdict::NotLeader(None);
    }
    if nl.redirect && resp.status().is_redirection() {
        let hint = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.parse::<http::Uri>().ok())
            .and_then(|u| {
                u.authority()
                    .and_then(|a| t.backend_by_authority(a.as_str()).cloned())
            });
        if let Some(h) = hint {
            return Verdict::NotLeader(Some(h));
        }
    }
    if let Some(re) = &nl.body_regex {
        let small = resp
            .body()
            .size_hint()
            .upper()
            .is_some_and(|n| n <= NOT_LEADER_SCAN_LIMIT);
        if small {
            let (mut parts, body) = resp.into_parts();
            let bytes = match Box::pin(Limited::new(body, NOT_LEADER_SCAN_LIMIT as usize).collect())
                .await
            {
                Ok(c) => c.to_bytes(),
                Err(_) => Bytes::new(),
            };
            // The body was read to the end: the connection is reusable.
            let mut rel = rel;
            if let Some(c) = conn {
                rel.set_conn(c);
            }
            rel.finish();
            if re.is_match(&String::from_utf8_lossy(&bytes)) {
                return Verdict::NotLeader(None);
            }
            forward::prepare_response(&mut parts);
            return Verdict::Deliver(Response::from_parts(parts, DownBody::Full(Some(bytes))));
        }
    }
    Verdict::Deliver(respond(resp, rel, conn))
}

async fn write(
    proxy: &Proxy,
    mut t: Arc<RoutingTable>,
    worker: usize,
    mut req: Request<UpBody>,
    h2: bool,
) -> Routed {
    let cfg = t.cfg.clone();
    let arrived = Instant::now();
    let deadline = arrived + cfg.writes.hold;
    // Bound each wait so a leader that failed once but was not replaced is tried again.
    let recheck = cfg.leader.probe.interval * 2;
    let mut avoid: Option<u64> = None;
    let mut hint: Option<Arc<Backend>> = None;
    let mut held: Option<HeldGuard> = None;
    loop {
        let target = match hint.take() {
            Some(h) => Some(h),
            None => t
                .leader()
                .filter(|l| avoid != Some(l.id) && t.ready && !l.is_suspect())
                .cloned(),
        };
        let leader = match target {
            Some(l) => l,
            None => {
                if held.is_none() {
                    if proxy.held.fetch_add(1, Ordering::Relaxed) >= cfg.writes.max_held {
                        proxy.held.fetch_sub(1, Ordering::Relaxed);
                        return Err(ProxyError::HoldQueueFull(cfg.writes.max_held).into());
                    }
                    proxy.metrics.held_writes.inc();
                    tracing::debug!(avoid, "write held until a leader is known");
                    held = Some(HeldGuard { proxy });
                }
                match Box::pin(proxy.shared.wait_for_leader(deadline, avoid, recheck)).await {
                    Some(nt) => {
                        avoid = None;
                        t = nt;
                        continue;
                    }
                    None => {
                        proxy
                            .metrics
                            .hold_wait
                            .observe(arrived.elapsed().as_secs_f64());
                        let t = proxy.shared.load();
                        let e = match &t.leader {
                            LeaderState::SplitBrain(n) => ProxyError::SplitBrain(n.clone()),
                            _ => ProxyError::NoLeader {
                                waited: arrived.elapsed(),
                            },
                        };
                        tracing::warn!(error = %e, "held write refused: no leader within writes.hold");
                        return Err(e.into());
                    }
                }
            }
        };
        if held.take().is_some() {
            proxy
                .metrics
                .hold_wait
                .observe(arrived.elapsed().as_secs_f64());
        }
        // A copy is only ever needed to re-send after a not-leader answer (a
        // request that was not sent comes back by itself).
        let spare = if cfg.writes.not_leader.is_empty() {
            None
        } else {
            try_clone(&req)
        };
        let o = opts(&cfg, worker, t.leader_gen, t.leader_gen, h2);
        let rel = Release::begin(leader.clone(), worker);
        match forward::send(&leader, req, &o).await {
            Attempt::Answered(resp, conn) => {
                let verdict = if cfg.writes.not_leader.is_empty() {
                    Verdict::Deliver(respond(resp, rel, conn))
                } else {
                    judge_write_answer(&t, resp, rel, conn).await
                };
                match verdict {
                    Verdict::Deliver(r) => {
                        // A 5xx from the leader (webdis whose Redis died, etcd without
                        // quorum) is passed on, but it is a hint to re-probe now.
                        if r.status().is_server_error() {
                            proxy.monitor.suspect(&leader);
                        }
                        return Ok((r, leader));
                    }
                    Verdict::NotLeader(h) => {
                        proxy.monitor.suspect(&leader);
                        let Some(again) = spare else {
                            let e = ProxyError::NotLeaderUnreplayable(cfg.writes.replay_body_limit);
                            return Err(blame(e, &leader));
                        };
                        tracing::debug!(backend = %leader.name, hint = h.as_ref().map(|b| b.name.as_str()), "write refused as not leader; re-sending");
                        proxy.metrics.writes_resent.inc();
                        req = again;
                        avoid = Some(leader.id);
                        hint = h.filter(|b| b.id != leader.id);
                        if Instant::now() >= deadline {
                            let e = ProxyError::NoLeader {
                                waited: arrived.elapsed(),
                            };
                            return Err(e.into());
                        }
                    }
                }
            }
            Attempt::NotSent(back, e) => {
                // Nothing reached the backend: safe to send again once a leader is known.
                proxy.monitor.suspect(&leader);
                tracing::debug!(backend = %leader.name, error = %e, "write not sent; waiting for a leader to re-send");
                if Instant::now() >= deadline {
                    return Err(blame(e, &leader));
                }
                proxy.metrics.writes_resent.inc();
                req = back;
                avoid = Some(leader.id);
            }
            Attempt::Failed(e) => {
                // It may have been applied: never re-send. A reset is a hint though.
                proxy.monitor.suspect(&leader);
                return Err(blame(e, &leader));
            }
        }
        t = proxy.shared.load();
    }
}

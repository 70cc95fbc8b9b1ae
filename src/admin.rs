//! The admin listener: health, readiness, Prometheus metrics, the routing
//! table as JSON, drain/enable and reload. It runs on its own listener
//! (127.0.0.1:9901 by default) and never on the public one.
//!
//! Endpoints that change state (reload, drain, enable) need
//! `Authorization: Bearer <token>` when `admin_token_file` is set; the token
//! is the one of the config in force when the request arrives, so a reload
//! rotates it. The listener has its own connection limit
//! (`limits.admin_max_connections`, read at each accept) and bounds how long
//! a connection may idle or live. At shutdown it stops accepting at once;
//! connections already open may finish while the workers drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::control::Control;
use crate::routing::LeaderState;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

/// A client must send a request's headers within this; hyper also applies
/// it while a keep-alive connection waits for its next request, so it is
/// the idle bound too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// After this, a connection is closed once its current request is answered
/// (or [`CLOSE_GRACE`] later at the latest): nothing holds a slot for ever.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The token in an `Authorization: Bearer <token>` value (RFC 6750 §2.1;
/// the scheme is case-insensitive); empty for anything else.
fn bearer(v: &[u8]) -> &[u8] {
    match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => v[7..].trim_ascii(),
        _ => b"",
    }
}

/// Whether a state-changing request may proceed: no token is configured,
/// or it carries the token of the config in force now.
fn authorized(ctl: &Control, headers: &http::HeaderMap) -> bool {
    let table = ctl.proxy.shared.load();
    let Some(token) = &table.cfg.admin_token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .map_or(&b""[..], |v| bearer(v.as_bytes()));
    token.matches(presented)
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({
            "error": "unauthorized",
            "message": "this endpoint changes state: send \"Authorization: Bearer <token>\" with the token from admin_token_file",
        }),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Why the proxy is not ready, or `None` when it is.
pub(crate) fn not_ready_reason(ctl: &Control) -> Option<String> {
    let t = ctl.proxy.shared.load();
    if !t.ready {
        return Some("the first probe round has not finished".into());
    }
    if t.leader().is_none() && t.followers.is_empty() {
        return Some(match &t.leader {
            LeaderState::SplitBrain(n) => {
                format!("several backends claim leadership: {}", n.join(", "))
            }
            _ => "no leader and no healthy follower".into(),
        });
    }
    None
}

/// Answers one admin request.
pub(crate) async fn handle(ctl: &Control, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let changes_state =
        method == Method::POST && (path == "/admin/reload" || path.starts_with("/admin/backends/"));
    if changes_state && !authorized(ctl, req.headers()) {
        tracing::warn!(%path, "admin request refused: missing or wrong bearer token");
        return unauthorized();
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n", "text/plain"),
        (&Method::GET, "/readyz") => match not_ready_reason(ctl) {
            None => json(StatusCode::OK, serde_json::json!({"ready": true})),
            Some(reason) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"ready": false, "reason": reason}),
            ),
        },
        (&Method::GET, "/metrics") => {
            let t = ctl.proxy.shared.load();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            ctl.proxy
                .metrics
                .set_tls_expiry(&cert_expiry(&t.cfg, &t.backends), now);
            text(
                StatusCode::OK,
                ctl.proxy.metrics.render(),
                "text/plain; version=0.0.4",
            )
        }
        (&Method::GET, "/admin/routing") => json(StatusCode::OK, routing_json(ctl).await),
        (&Method::POST, "/admin/reload") => match ctl.reload().await {
            Ok(notes) => json(
                StatusCode::OK,
                serde_json::json!({"reloaded": true, "notes": notes}),
            ),
            Err(e) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"reloaded": false, "errors": e.0.iter().map(|p| p.to_string()).collect::<Vec<_>>()}),
            ),
        },
        (&Method::POST, p) if p.starts_with("/admin/backends/") => {
            let rest = &p["/admin/backends/".len()..];
            let (name, action) = match rest.rsplit_once('/') {
                Some((n, a)) => (n, a),
                None => {
                    return json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": "not_found"}),
                    )
                }
            };
            let drained = match action {
                "drain" => true,
                "enable" => false,
                _ => {
                    return json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": "not_found"}),
                    )
                }
            };
            if ctl.proxy.monitor.set_drained(name, drained).await {
                json(
                    StatusCode::OK,
                    serde_json::json!({"backend": name, "drained": drained}),
                )
            } else {
                json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "unknown_backend", "message": format!("no backend named {name:?}")}),
                )
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/admin/routing" | "/admin/reload") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "method_not_allowed"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found"}),
        ),
    }
}

fn names(v: &[Arc<crate::backend::Backend>]) -> Vec<String> {
    v.iter().map(|b| b.name().to_string()).collect()
}

async fn routing_json(ctl: &Control) -> serde_json::Value {
    let t = ctl.proxy.shared.load();
    let status = ctl.proxy.monitor.status().await;
    let leader = match &t.leader {
        LeaderState::Known(l) => serde_json::json!({
            "name": l.backend.name().as_str(),
            "since_unix_ms": l.since.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "term": l.term,
        }),
        _ => serde_json::Value::Null,
    };
    let split = match &t.leader {
        LeaderState::SplitBrain(n) => serde_json::json!(n),
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "epoch": t.epoch,
        "leader_generation": t.leader_gen,
        "ready": t.ready,
        "leader": leader,
        "split_brain": split,
        "local_zone": t.cfg.local_zone,
        "followers": names(&t.followers),
        "read_tier_latency": tier_latency_json(ctl, &t),
        "spill_followers": names(&t.spill),
        "backends": status,
        "tcp": tcp_json(ctl, &t),
    })
}

/// The read tier's recent p95/p99 (ms, `null` until 20 reads answered in
/// the last 5–10 s) and the try timeout they give now (`reads.try_timeout`).
fn tier_latency_json(ctl: &Control, t: &crate::routing::RoutingTable) -> serde_json::Value {
    let q = ctl
        .proxy
        .tier_latency
        .of_tier(std::time::Instant::now(), &t.followers);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    serde_json::json!({
        "p95_ms": q.p95.map(ms),
        "p99_ms": q.p99.map(ms),
        "try_timeout_ms": t.cfg.reads.try_timeout.map(|tt| ms(tt.now(|| q.p99))),
    })
}

/// The TCP listeners: each one's address, role, policy, where a new
/// connection would go now, and its open and held connections.
fn tcp_json(ctl: &Control, t: &crate::routing::RoutingTable) -> serde_json::Value {
    use crate::config::Role;
    let listeners: Vec<serde_json::Value> = ctl
        .tcp
        .iter()
        .map(|l| {
            if l.cfg.protocol == crate::config::TcpProtocol::Resp {
                return serde_json::json!({
                    "listen": l.label,
                    "protocol": "resp",
                    "policy": l.cfg.policy.as_str(),
                    "primary": t.write_leader().map(|b| b.name().to_string()),
                    "replicas": names(&t.followers),
                    "open_connections": l.open_connections(),
                });
            }
            let targets = match l.cfg.to {
                Role::Write => t
                    .write_leader()
                    .into_iter()
                    .map(|b| b.name().to_string())
                    .collect(),
                Role::Read => names(&t.followers),
            };
            serde_json::json!({
                "listen": l.label,
                "protocol": "raw",
                "to": l.cfg.to.as_str(),
                "policy": (l.cfg.to == Role::Read).then(|| l.cfg.policy.as_str()),
                "on_unhealthy": (l.cfg.to == Role::Read).then(|| l.cfg.on_unhealthy.as_str()),
                "targets": targets,
                "open_connections": l.open_connections(),
                "held_connections": l.held_connections(),
            })
        })
        .collect();
    serde_json::Value::Array(listeners)
}

/// Holds one admin connection's place in the count until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the admin API until `shutdown` turns true.
pub(crate) async fn serve(
    ctl: Arc<Control>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::until_true(&mut shutdown) => return,
        };
        // The limit of the config in force now (a reload changes it).
        let limit = ctl.proxy.shared.load().cfg.limits.admin_max_connections;
        if open.fetch_add(1, Ordering::Relaxed) >= limit {
            open.fetch_sub(1, Ordering::Relaxed);
            ctl.proxy.metrics.admin_rejected_connections.inc();
            drop(stream);
            continue;
        }
        let slot = Slot(open.clone());
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let ctl = ctl.clone();
                async move { Ok::<_, Infallible>(handle(&ctl, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
                }
            }
        });
    }
}
/// Every certificate whose expiry is reported: the listener's, the client
/// certificates sent to backends (once per file), and what each `https://`
/// backend presented at its last handshake; `(kind, name, notAfter)`.
fn cert_expiry(
    cfg: &crate::config::Config,
    backends: &[std::sync::Arc<crate::backend::Backend>],
) -> Vec<(&'static str, String, i64)> {
    let mut out = Vec::new();
    if let Some(t) = cfg.tls.as_ref() {
        if let Some(na) = t.cert_not_after {
            out.push(("listener", t.cert.display().to_string(), na));
        }
    }
    for b in backends {
        let Some(tls) = b.tls() else { continue };
        if let (Some(cert), Some(na)) = (&tls.settings.cert, tls.client.client_cert_not_after) {
            let name = cert.display().to_string();
            if !out.iter().any(|(k, n, _)| *k == "client" && *n == name) {
                out.push(("client", name, na));
            }
        }
        if let Some(na) = b.peer_cert_not_after() {
            out.push(("backend", b.name().to_string(), na));
        }
    }
    out
}

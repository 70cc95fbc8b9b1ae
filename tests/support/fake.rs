//! In-process fake cluster nodes on 127.0.0.1:0 whose role can be flipped,
//! plus helpers to start leaderproxy in-process against them and to talk to
//! it. Used by the deterministic failover tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How a fake node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// What a follower answers to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Accept it (like a fake that does not care).
    Accept,
    /// 403 with a JSON error.
    Status403,
    /// 200 with `-READONLY ...` in the body (Redis behind webdis).
    ReadOnlyBody,
    /// 307 to the leader's address.
    Redirect,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body_len: usize,
    pub body_sum: u64,
    /// The request body's trailer fields, if it had any.
    pub trailers: Option<http::HeaderMap>,
    /// Which TCP connection it came on (numbered per fake).
    pub conn: usize,
}

pub struct FakeState {
    pub name: String,
    pub role: Mutex<Role>,
    pub refusal: Mutex<Refusal>,
    /// Where a redirect points.
    pub redirect_to: Mutex<Option<SocketAddr>>,
    pub term: AtomicU64,
    /// Requests other than probes.
    pub seen: Mutex<Vec<Seen>>,
    pub probes: AtomicUsize,
    /// Delay before answering non-probe requests.
    pub delay_ms: AtomicU64,
    /// Answer every non-probe request with this status (0 = normal).
    pub fail_status: AtomicU64,
    /// Reports leadership in the probe regardless of role (split-brain tests).
    pub claim_override: Mutex<Option<bool>>,
    /// TCP connections accepted so far.
    pub accepted: AtomicUsize,
    /// Delay before answering a health or leader probe.
    pub probe_delay_ms: AtomicU64,
    /// Delay before answering a leader probe (on top of `probe_delay_ms`),
    /// read when the probe arrives.
    pub leader_probe_delay_ms: AtomicU64,
    /// Leader probes arrived so far (counted before any delay; `probes`
    /// counts answers).
    pub leader_probes_started: AtomicUsize,
    /// New connections may speak h2c (prior knowledge) as well as HTTP/1.1.
    pub h2c: std::sync::atomic::AtomicBool,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
    tasks: Mutex<Option<tokio::task::AbortHandle>>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().enumerate().fold(0u64, |a, (i, &x)| {
        a.wrapping_add((i as u64 + 1).wrapping_mul(x as u64))
    })
}

/// The fake's answer body: whole, or streamed with trailers.
pub type FakeBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> FakeBody {
    Full::new(b.into()).boxed()
}

/// Why the fake cuts a connection instead of answering (`/reset/...`).
#[derive(Debug)]
pub struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cut by the fake")
    }
}

impl std::error::Error for Cut {}

/// Scripted answers by path, for any method (after the request is recorded
/// and its body read): `/status/NNN` answers NNN; `/sleep/MS` answers after
/// MS milliseconds; `/reset/NAME/...` closes the connection without an
/// answer on the fake named NAME (or on every fake for `all`): the request
/// was applied, the client cannot know; `/trailers` answers a
/// chunked body followed by the trailer `x-checksum: done` (declared in
/// `Trailer`); `/drip/N/MS` sends N one-byte chunks MS milliseconds apart.
async fn answer(
    st: Arc<FakeState>,
    conn: usize,
    req: Request<Incoming>,
) -> Result<Response<FakeBody>, Cut> {
    let path = req.uri().path().to_string();
    if path == "/leader" {
        st.leader_probes_started.fetch_add(1, Ordering::Relaxed);
    }
    if matches!(path.as_str(), "/health" | "/leader") {
        let d = st.probe_delay_ms.load(Ordering::Relaxed)
            + if path == "/leader" {
                st.leader_probe_delay_ms.load(Ordering::Relaxed)
            } else {
                0
            };
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d)).await;
        }
    }
    Ok(answer_inner(st, conn, req, path).await).and_then(|r| r.ok_or(Cut))
}

async fn answer_inner(
    st: Arc<FakeState>,
    conn: usize,
    req: Request<Incoming>,
    path: String,
) -> Option<Response<FakeBody>> {
    Some(match answer_scripted(st, conn, req, &path).await? {
        Ok(r) => r,
        Err(r) => r.map(BodyExt::boxed),
    })
}

async fn answer_scripted(
    st: Arc<FakeState>,
    conn: usize,
    req: Request<Incoming>,
    path: &str,
) -> Option<Result<Response<FakeBody>, Response<Full<Bytes>>>> {
    let st_name = st.name.clone();
    let trailers_in = req
        .headers()
        .get(http::header::TRAILER)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let resp = answer_plain(st, conn, req).await;
    if let Some(rest) = path.strip_prefix("/status/") {
        let code: u16 = rest.split('/').next().unwrap_or("").parse().unwrap_or(500);
        let mut r = Response::new(full(Bytes::from(format!("status {code}"))));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        return Some(Ok(r));
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.split('/').next().unwrap_or("").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Some(Ok(Response::new(full(Bytes::from(format!("slept {ms}"))))));
    }
    if let Some(rest) = path.strip_prefix("/reset/") {
        let who = rest.split('/').next().unwrap_or("");
        if who == "all" || who == st_name {
            return None;
        }
    }
    if path == "/trailers" {
        let mut t = http::HeaderMap::new();
        t.insert("x-checksum", "done".parse().unwrap());
        let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"part1 "))),
            Ok(http_body::Frame::data(Bytes::from(format!(
                "trailer-in={}",
                trailers_in.unwrap_or_default()
            )))),
            Ok(http_body::Frame::trailers(t)),
        ];
        let body = http_body_util::StreamBody::new(futures_stream(frames));
        let mut r = Response::new(body.boxed());
        r.headers_mut()
            .insert(http::header::TRAILER, "x-checksum".parse().unwrap());
        return Some(Ok(r));
    }
    if let Some(rest) = path.strip_prefix("/drip/") {
        let mut it = rest.split('/');
        let n: usize = it.next().unwrap_or("").parse().unwrap_or(0);
        let ms: u64 = it.next().unwrap_or("").parse().unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for _ in 0..n {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if tx
                    .send(Ok(http_body::Frame::data(Bytes::from_static(b"."))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let body = http_body_util::StreamBody::new(ReceiverStream(rx));
        return Some(Ok(Response::new(body.boxed())));
    }
    Some(Err(resp))
}

/// A ready-made list of frames as a stream.
fn futures_stream(
    frames: Vec<Result<http_body::Frame<Bytes>, Infallible>>,
) -> ReceiverStream<Result<http_body::Frame<Bytes>, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel(frames.len().max(1));
    for f in frames {
        tx.try_send(f).unwrap();
    }
    ReceiverStream(rx)
}

/// `tokio::sync::mpsc::Receiver` as a `futures` stream (no extra crate).
pub struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> ReceiverStream<T> {
    pub fn new(rx: tokio::sync::mpsc::Receiver<T>) -> ReceiverStream<T> {
        ReceiverStream(rx)
    }
}

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

async fn answer_plain(
    st: Arc<FakeState>,
    conn: usize,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let role = *st.role.lock().unwrap();
    let claim = st
        .claim_override
        .lock()
        .unwrap()
        .unwrap_or(role == Role::Leader);
    match path.as_str() {
        "/health" => {
            st.probes.fetch_add(1, Ordering::Relaxed);
            return Response::new(Full::new(Bytes::from_static(b"{\"health\":\"true\"}")));
        }
        "/leader" => {
            st.probes.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                "{{\"name\":\"{}\",\"leader\":{},\"term\":{}}}",
                st.name,
                claim,
                st.term.load(Ordering::Relaxed)
            );
            let mut r = Response::new(Full::new(Bytes::from(body)));
            if !claim {
                *r.status_mut() = StatusCode::FORBIDDEN;
            }
            return r;
        }
        _ => {}
    }
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let (bytes, trailers) = body
        .collect()
        .await
        .map(|c| {
            let t = c.trailers().cloned();
            (c.to_bytes(), t)
        })
        .unwrap_or_default();
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body_len: bytes.len(),
        body_sum: checksum(&bytes),
        trailers,
        conn,
    });
    let delay = st.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fail = st.fail_status.load(Ordering::Relaxed);
    if fail > 0 {
        let mut r = Response::new(Full::new(Bytes::from_static(b"fail")));
        *r.status_mut() = StatusCode::from_u16(fail as u16).unwrap();
        return r;
    }
    let is_write =
        !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") || path.starts_with("/SET/");
    if is_write && role == Role::Follower {
        match *st.refusal.lock().unwrap() {
            Refusal::Accept => {}
            Refusal::Status403 => {
                let mut r = Response::new(Full::new(Bytes::from_static(
                    b"{\"message\":\"not leader\"}",
                )));
                *r.status_mut() = StatusCode::FORBIDDEN;
                return r;
            }
            Refusal::ReadOnlyBody => {
                return Response::new(Full::new(Bytes::from_static(
                    b"{\"SET\":[false,\"READONLY You can't write against a read only replica.\"]}",
                )));
            }
            Refusal::Redirect => {
                let to = st.redirect_to.lock().unwrap().expect("redirect target");
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                r.headers_mut().insert(
                    http::header::LOCATION,
                    format!("http://{to}{path}").parse().unwrap(),
                );
                return r;
            }
        }
    }
    if path == "/echo-size" {
        return Response::new(Full::new(Bytes::from(format!(
            "{} {}",
            bytes.len(),
            checksum(&bytes)
        ))));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        return Response::new(Full::new(Bytes::from(body)));
    }
    let mut r = Response::new(Full::new(Bytes::from(format!(
        "{} {} {}",
        st.name, method, path
    ))));
    r.headers_mut().insert("x-fake", st.name.parse().unwrap());
    r.headers_mut()
        .insert(http::header::CONNECTION, "keep-alive".parse().unwrap());
    r.headers_mut()
        .insert("keep-alive", "timeout=30".parse().unwrap());
    r
}

impl Fake {
    /// Starts a fake node on 127.0.0.1:0.
    pub async fn start(name: &str, role: Role) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(name, role, listener)
    }

    /// Starts a fake node on a listener bound by the caller (discovery
    /// tests put several on one port of 127.0.0.1, 127.0.0.2, …).
    pub fn start_on(name: &str, role: Role, listener: TcpListener) -> Fake {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FakeState {
            name: name.to_string(),
            role: Mutex::new(role),
            refusal: Mutex::new(Refusal::Accept),
            redirect_to: Mutex::new(None),
            term: AtomicU64::new(1),
            seen: Mutex::new(Vec::new()),
            probes: AtomicUsize::new(0),
            delay_ms: AtomicU64::new(0),
            fail_status: AtomicU64::new(0),
            claim_override: Mutex::new(None),
            accepted: AtomicUsize::new(0),
            probe_delay_ms: AtomicU64::new(0),
            leader_probe_delay_ms: AtomicU64::new(0),
            leader_probes_started: AtomicUsize::new(0),
            h2c: std::sync::atomic::AtomicBool::new(false),
        });
        let f = Fake {
            addr,
            state,
            tasks: Mutex::new(None),
            conns: Arc::new(Mutex::new(JoinSet::new())),
        };
        f.serve(listener);
        f
    }

    fn serve(&self, listener: TcpListener) {
        let st = self.state.clone();
        let conns = self.conns.clone();
        let h = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let conn = st.accepted.fetch_add(1, Ordering::Relaxed);
                let st2 = st.clone();
                conns.lock().unwrap().spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        answer(st, conn, req)
                    });
                    if st2.h2c.load(Ordering::Relaxed) {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                        return;
                    }
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        *self.tasks.lock().unwrap() = Some(h.abort_handle());
    }

    /// New connections may speak h2c too (for backends with `h2c: true`).
    pub fn speak_h2c(&self) {
        self.state.h2c.store(true, Ordering::Relaxed);
    }

    pub fn set_role(&self, r: Role) {
        *self.state.role.lock().unwrap() = r;
    }

    pub fn set_refusal(&self, r: Refusal) {
        *self.state.refusal.lock().unwrap() = r;
    }

    /// Stops listening and cuts every open connection (like SIGKILL).
    pub fn kill(&self) {
        if let Some(h) = self.tasks.lock().unwrap().take() {
            h.abort();
        }
        self.conns.lock().unwrap().abort_all();
    }

    /// Listens again on the same address.
    pub async fn revive(&self) {
        let l = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        self.serve(l);
    }

    /// Non-probe requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn count_method(&self, m: &str) -> usize {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == m)
            .count()
    }

    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config for fakes: leader probe `/leader` (200 on the leader), health
/// `/health` (every 50ms and 100ms); `extra` is appended (YAML).
pub fn config_for(fakes: &[&Fake], extra: &str) -> String {
    let plain: Vec<(&Fake, &str)> = fakes.iter().map(|f| (*f, "")).collect();
    config_with(&plain, extra)
}

/// Like [`config_for`], with more keys for each backend (YAML flow-map
/// entries such as `zone: eu-1, priority: 1`; empty for none).
/// [`config_with`] for backends `fakes` (probed over HTTP) whose data
/// addresses (`backends[].tcp`, for `tcp` listeners) are `data`, in order.
pub fn config_with_data(fakes: &[Fake], data: &[SocketAddr], extra: &str) -> String {
    let keys: Vec<String> = data.iter().map(|a| format!("tcp: \"{a}\"")).collect();
    let backends: Vec<(&Fake, &str)> = fakes
        .iter()
        .zip(&keys)
        .map(|(f, k)| (f, k.as_str()))
        .collect();
    config_with(&backends, extra)
}

pub fn config_with(backends: &[(&Fake, &str)], extra: &str) -> String {
    let mut s = String::from(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\nbackends:\n",
    );
    for (f, keys) in backends {
        let more = if keys.is_empty() {
            String::new()
        } else {
            format!(", {keys}")
        };
        s.push_str(&format!(
            "  - {{ name: {}, url: \"http://{}\"{more} }}\n",
            f.state.name, f.addr
        ));
    }
    if !extra.lines().any(|l| l.starts_with("health:")) {
        // fall 3: a probe that times out on a loaded machine must not flap a follower out.
        s.push_str("health: { path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }\n");
    }
    if !extra.lines().any(|l| l.starts_with("leader:")) {
        s.push_str(
            "leader: { path: /leader, interval: 50ms, timeout: 40ms, expect: { status: [200] } }\n",
        );
    }
    if !extra.lines().any(|l| l.starts_with("routes:")) {
        s.push_str("routes: [ { methods: [GET, HEAD, OPTIONS], to: read } ]\n");
    }
    s.push_str(extra);
    s
}

/// A proxy running in-process.
pub struct Proxy {
    pub running: Option<leaderproxy::app::Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    pub config_path: std::path::PathBuf,
    _dir: TempDir,
    _extra_dir: Option<TempDir>,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "leaderproxy-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proxy {
    /// Writes `yaml` to a file, loads it and starts the proxy; waits until
    /// `/readyz` says ready (5s deadline).
    pub async fn start(yaml: &str) -> Proxy {
        Self::start_opts(yaml, true).await
    }

    pub async fn start_opts(yaml: &str, wait_ready: bool) -> Proxy {
        Self::start_at(TempDir::new(), None, yaml, wait_ready).await
    }

    /// Like [`Proxy::start_opts`], with discovery options (the DNS servers
    /// to ask).
    pub async fn start_discovering(
        yaml: &str,
        opts: leaderproxy::discovery::Options,
        wait_ready: bool,
    ) -> Proxy {
        Self::start_full(TempDir::new(), None, yaml, wait_ready, opts).await
    }

    /// Like [`Proxy::start`], with the config file written into `dir`
    /// (so relative paths in it, such as TLS files, resolve there).
    pub async fn start_in(dir: &TempDir, yaml: &str) -> Proxy {
        Self::start_at(TempDir(dir.0.clone()), None, yaml, true).await
    }

    /// Keeps `dir` alive as long as the proxy.
    pub fn keep_dir(&mut self, dir: TempDir) {
        self._extra_dir = Some(dir);
    }

    async fn start_at(dir: TempDir, extra: Option<TempDir>, yaml: &str, wait_ready: bool) -> Proxy {
        Self::start_full(dir, extra, yaml, wait_ready, Default::default()).await
    }

    async fn start_full(
        dir: TempDir,
        extra: Option<TempDir>,
        yaml: &str,
        wait_ready: bool,
        opts: leaderproxy::discovery::Options,
    ) -> Proxy {
        let path = dir.0.join("leaderproxy.yaml");
        std::fs::write(&path, yaml).unwrap();
        let cfg = leaderproxy::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let running = leaderproxy::app::start_with(cfg, opts).unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let p = Proxy {
            addr: running.listen[0],
            admin: running.admin,
            running: Some(running),
            client,
            config_path: path,
            _dir: dir,
            _extra_dir: extra,
        };
        if wait_ready {
            let admin = p.admin;
            let c = p.client.clone();
            wait_until(Duration::from_secs(5), "proxy ready", || {
                let c = c.clone();
                async move {
                    let uri: http::Uri = format!("http://{admin}/readyz").parse().unwrap();
                    matches!(c.get(uri).await, Ok(r) if r.status() == 200)
                }
            })
            .await;
        }
        p
    }

    pub async fn req(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
            .body(Full::new(body.into()))
            .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let resp = self.client.request(req).await.expect("proxy answered");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.req("GET", path, Bytes::new()).await
    }

    pub async fn put(&self, path: &str) -> Reply {
        self.req("PUT", path, Bytes::from_static(b"v")).await
    }

    pub async fn admin(&self, method: &str, path: &str) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.admin, path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(req).await
    }

    /// Writes `yaml` over the proxy's config file and asks for a reload:
    /// the admin API's answer (200 with `notes`, or 422 with `errors`).
    pub async fn reload_with(&self, yaml: &str) -> Reply {
        std::fs::write(&self.config_path, yaml).unwrap();
        self.admin("POST", "/admin/reload").await
    }

    pub async fn routing(&self) -> serde_json::Value {
        serde_json::from_slice(&self.admin("GET", "/admin/routing").await.body).unwrap()
    }

    /// Waits until the admin API names `name` as leader (or none for `None`).
    pub async fn wait_leader(&self, name: Option<&str>, within: Duration) {
        let want = name.map(|s| s.to_string());
        wait_until(within, &format!("leader {want:?}"), || async {
            let r = self.routing().await;
            r["leader"]["name"].as_str().map(|s| s.to_string()) == want
        })
        .await;
    }

    /// One backend's entry in `/admin/routing`.
    pub async fn backend_status(&self, name: &str) -> serde_json::Value {
        backend_in(&self.routing().await, name)
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.admin("GET", "/metrics").await.body.to_vec()).unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            // Joining could block the runtime the test runs on; threads end on their own.
        }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn backend(&self) -> Option<String> {
        self.headers
            .get("x-leaderproxy-backend")
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Polls `cond` every 10ms until it holds; panics after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A writer through `p` until `stop` is set: one `PUT /w` every 10 ms;
/// returns the acknowledged (200) count and every other answer.
pub fn spawn_writer(
    p: Arc<Proxy>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<(u16, String)>)> {
    spawn_writer_with(
        p,
        stop,
        |_, addr| {
            Request::put(format!("http://{addr}/w"))
                .body(Full::new(Bytes::from_static(b"v")))
                .unwrap()
        },
        |status| status == 200,
    )
}

/// A writer through `p` until `stop` is set: request `make(i, proxy
/// address)` for i = 1, 2, … every 10 ms; returns how many answers were
/// `acked` and every other answer.
pub fn spawn_writer_with(
    p: Arc<Proxy>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    make: impl Fn(usize, SocketAddr) -> Request<Full<Bytes>> + Send + 'static,
    acked: fn(u16) -> bool,
) -> tokio::task::JoinHandle<(usize, Vec<(u16, String)>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0usize, Vec::new());
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let r = p.send(make(i, p.addr)).await;
            if acked(r.status) {
                ok += 1;
            } else {
                failed.push((r.status, r.text()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    })
}

/// One backend's entry in an `/admin/routing` answer.
pub fn backend_in(routing: &serde_json::Value, name: &str) -> serde_json::Value {
    routing["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name} in {routing}"))
}

/// Counts requests per fake name from debug headers.
pub fn tally(replies: &[Reply]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in replies {
        *m.entry(r.backend().unwrap_or_default()).or_insert(0) += 1;
    }
    m
}

impl Fake {
    /// TCP connections this fake is still serving (probe connections
    /// included while they last): finished connection tasks are reaped first.
    pub fn open_connections(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        while conns.try_join_next().is_some() {}
        conns.len()
    }
}

/// An HTTP/2 client connection over `io`: a TCP stream (h2c, prior
/// knowledge) or a TLS stream whose ALPN chose h2. Its driver runs on a
/// spawned task.
pub async fn h2_over<T, B>(io: T) -> hyper::client::conn::http2::SendRequest<B>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    tx
}

/// TLS as a client over `tcp` to the name `127.0.0.1`, trusting only
/// `trust` and offering `alpn`.
pub async fn tls_over(
    tcp: tokio::net::TcpStream,
    trust: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// Serves every connection `l` accepts with HTTP/1.1 or h2c (hyper's auto
/// builder: like etcd, both on one port), each on its own task; `svc(n)`
/// is the service of the `n`-th connection (0, 1, ...).
pub fn serve_auto<F, S, B>(l: TcpListener, mut svc: F)
where
    F: FnMut(usize) -> S + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = l.accept().await {
            let svc = svc(n);
            n += 1;
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(s), svc)
                .await;
            });
        }
    });
}

//! An in-process replicated key-value cluster for the consistency tests: one
//! leader appends writes to a shared log; each follower applies the log
//! `delay` late (or stops applying while frozen), so a read right after a
//! write sees the old value on a follower, exactly the hazard
//! read-your-writes must hide.
//!
//! Every node answers on 127.0.0.1:0:
//! - `GET /health` 200; `GET /leader` 200 on the leader, 403 elsewhere;
//! - `GET /position`: 200 with `X-Index:` the node's applied index;
//! - `PUT /kv/KEY` (body = value): on the leader appends and answers 200
//!   with `X-Index:` the new index (unless `index_in_answers` is off); 403 on
//!   a follower;
//! - `GET /kv/KEY`: the newest value of KEY this node has applied (404 if
//!   none), with `X-Index:` the node's applied index;
//! - `PUT /other/KEY`, `GET /other/KEY`: a second API on the same log whose
//!   writes the index does not count (like etcd's v3 writes and the v2
//!   store's `X-Etcd-Index`): write answers carry no `X-Index`.
//!
//! `/health` answers 503 while `set_healthy(false)`; `/position` answers
//! the index set by `override_position` instead, while one is set, and 500
//! while `fail_positions(true)`. A node with `forward_writes(d)` takes
//! writes while it does not lead (appending to the log as rqlite and
//! Consul followers forward to the leader) and answers every write `d` late.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct Entry {
    /// The request path (`/kv/KEY` or `/other/KEY`).
    key: String,
    /// Moves the index (`/kv/` writes).
    counted: bool,
    value: Bytes,
    at: Instant,
}

/// The shared log.
#[derive(Default)]
pub struct Log {
    entries: Mutex<Vec<Entry>>,
}

pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    log: Arc<Log>,
    leader: AtomicBool,
    /// Applies entries this long after they were written.
    delay_ms: AtomicU64,
    /// While set, the applied index stays where it was frozen.
    frozen_at: Mutex<Option<usize>>,
    /// Answers to writes carry `X-Index`.
    pub index_in_answers: AtomicBool,
    /// Position probes answered.
    pub position_probes: AtomicUsize,
    healthy: AtomicBool,
    position_override: Mutex<Option<usize>>,
    positions_fail: AtomicBool,
    /// Forwards writes when not the leader, and answers them this late.
    forward_ms: Mutex<Option<u64>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Node {
    /// Entries this node has applied.
    pub fn applied(&self) -> usize {
        if let Some(n) = *self.frozen_at.lock().unwrap() {
            return n;
        }
        let entries = self.log.entries.lock().unwrap();
        if self.leader.load(Ordering::Relaxed) {
            return entries.len();
        }
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::Relaxed));
        let now = Instant::now();
        entries.iter().take_while(|e| e.at + delay <= now).count()
    }

    /// The index: the counted entries among the applied ones.
    pub fn index(&self) -> usize {
        let n = self.applied();
        let entries = self.log.entries.lock().unwrap();
        entries[..n].iter().filter(|e| e.counted).count()
    }

    pub fn set_healthy(&self, on: bool) {
        self.healthy.store(on, Ordering::Relaxed);
    }

    /// `/position` answers `p` (a replica resynced, a member re-created)
    /// until `None`.
    pub fn override_position(&self, p: Option<usize>) {
        *self.position_override.lock().unwrap() = p;
    }

    /// Takes writes while not leading (see the module doc), answering
    /// them `delay` late; `None` refuses them again.
    pub fn forward_writes(&self, delay: Option<Duration>) {
        *self.forward_ms.lock().unwrap() = delay.map(|d| d.as_millis() as u64);
    }

    /// `/position` answers 500 while set.
    pub fn fail_positions(&self, on: bool) {
        self.positions_fail.store(on, Ordering::Relaxed);
    }

    pub fn set_leader(&self, on: bool) {
        self.leader.store(on, Ordering::Relaxed);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops applying (`true`) or resumes (`false`).
    pub fn freeze(&self, on: bool) {
        let at = on.then(|| {
            *self.frozen_at.lock().unwrap() = None;
            self.applied()
        });
        *self.frozen_at.lock().unwrap() = at;
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        let n = self.applied();
        let entries = self.log.entries.lock().unwrap();
        entries[..n]
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

/// A leader and followers sharing one log.
pub struct Cluster {
    pub nodes: Vec<Arc<Node>>,
}

impl Cluster {
    /// `names[0]` leads; the others apply `delay` late.
    pub async fn start(names: &[&str], delay: Duration) -> Cluster {
        let log = Arc::new(Log::default());
        let mut nodes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let node = Arc::new(Node {
                name: name.to_string(),
                addr: l.local_addr().unwrap(),
                log: log.clone(),
                leader: AtomicBool::new(i == 0),
                delay_ms: AtomicU64::new(delay.as_millis() as u64),
                frozen_at: Mutex::new(None),
                index_in_answers: AtomicBool::new(true),
                position_probes: AtomicUsize::new(0),
                healthy: AtomicBool::new(true),
                position_override: Mutex::new(None),
                positions_fail: AtomicBool::new(false),
                forward_ms: Mutex::new(None),
                task: Mutex::new(None),
            });
            let n = node.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else { return };
                    let n = n.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| answer(n.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
            *node.task.lock().unwrap() = Some(task.abort_handle());
            nodes.push(node);
        }
        Cluster { nodes }
    }

    /// Entries written so far.
    pub fn log_len(&self) -> usize {
        self.nodes[0].log.entries.lock().unwrap().len()
    }

    pub fn node(&self, name: &str) -> &Arc<Node> {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// A config for the cluster: probes every 50ms (health 100ms), GET
    /// reads, plus `extra`.
    pub fn config(&self, extra: &str) -> String {
        let mut s = String::from(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\nbackends:\n",
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "  - {{ name: {}, url: \"http://{}\" }}\n",
                n.name, n.addr
            ));
        }
        s.push_str("health: { path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }\n");
        s.push_str(
            "leader: { path: /leader, interval: 50ms, timeout: 40ms, expect: { status: [200] } }\n",
        );
        s.push_str("routes: [ { methods: [GET], to: read } ]\n");
        s.push_str(extra);
        s
    }
}

async fn answer(n: Arc<Node>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let leader = n.leader.load(Ordering::Relaxed);
    let reply = |status: u16, index: Option<usize>, body: Bytes| {
        let mut r = Response::builder().status(status);
        if let Some(i) = index {
            r = r.header("x-index", i.to_string());
        }
        Ok(r.body(Full::new(body)).unwrap())
    };
    match (parts.method.as_str(), path.as_str()) {
        ("GET", "/health") => {
            let ok = n.healthy.load(Ordering::Relaxed);
            reply(if ok { 200 } else { 503 }, None, Bytes::new())
        }
        ("GET", "/leader") => reply(if leader { 200 } else { 403 }, None, Bytes::new()),
        ("GET", "/position") => {
            n.position_probes.fetch_add(1, Ordering::Relaxed);
            if n.positions_fail.load(Ordering::Relaxed) {
                return reply(500, None, Bytes::new());
            }
            let over = *n.position_override.lock().unwrap();
            reply(200, Some(over.unwrap_or_else(|| n.index())), Bytes::new())
        }
        ("PUT", p) if p.starts_with("/kv/") || p.starts_with("/other/") => {
            let forward = *n.forward_ms.lock().unwrap();
            if !leader && forward.is_none() {
                return reply(403, None, Bytes::from_static(b"not the leader"));
            }
            let counted = p.starts_with("/kv/");
            let idx = {
                let mut e = n.log.entries.lock().unwrap();
                e.push(Entry {
                    key: p.to_string(),
                    counted,
                    value: body,
                    at: Instant::now(),
                });
                e.iter().filter(|e| e.counted).count()
            };
            if let Some(ms) = forward {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let index = (counted && n.index_in_answers.load(Ordering::Relaxed)).then_some(idx);
            reply(200, index, Bytes::from_static(b"ok"))
        }
        ("GET", p) if p.starts_with("/kv/") || p.starts_with("/other/") => {
            let index = n.index();
            match n.get(p) {
                Some(v) => reply(200, Some(index), v),
                None => reply(404, Some(index), Bytes::new()),
            }
        }
        _ => reply(404, None, Bytes::new()),
    }
}

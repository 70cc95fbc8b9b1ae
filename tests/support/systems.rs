//! In-process fake nodes of the systems leaderproxy has presets for, each
//! answering the preset's probe paths the way the real system documents it
//! (status codes, JSON shapes, headers), plus a few data requests, so that
//! a preset can be run unchanged against a three-node fake cluster whose
//! leadership the test moves.
//!
//! Shapes, per system (what the answers copy):
//! - etcd v2 (3.4.23 checked by hand): `GET /health` 200 `{"health":"true"}`;
//!   `GET /v2/stats/leader` 200 on the leader, 403 `{"message":"not current
//!   leader"}` elsewhere; v2 answers carry `X-Etcd-Index` (the store index of
//!   the member that answered), a write's answer the index it made.
//! - etcd v3 gateway (3.4.23 checked by hand): `POST /v3/maintenance/status`
//!   `{"header":{"member_id":..,"revision":..,"raft_term":..},"leader":..}`,
//!   64-bit numbers as strings; a serializable `POST /v3/kv/range` answered
//!   by the member itself with its own `header.revision`.
//! - rqlite: `/readyz` 200 `[+]node ok..`; `/status` with
//!   `store.raft.{state,term,applied_index}`; a write to a follower answers
//!   301 with `Location` = the leader's HTTP address, same path and query
//!   (rqlite before 7, or with `?redirect`).
//! - Consul: `/v1/status/leader` the leader's raft address as a JSON string;
//!   `/v1/agent/self` with `Stats.consul.leader` "true"/"false" and
//!   `Stats.raft.{term,applied_index}`, all strings.
//! - Vault: `/v1/sys/health` 200 active, 429 standby (200 with
//!   `standbyok=true`), 503 sealed; a standby that cannot forward answers a
//!   request with 307 to the active node.
//! - Patroni: `/health` 200 while running; `/primary` 200 on the node that
//!   holds the leader lock, 503 on the others; `/patroni` (and `/primary`)
//!   with `"role": "master"` and `"xlog": {"location": N}` on the promoted
//!   primary, `"role": "replica"` and `received_location`/`replayed_location`
//!   on a replica, written as Python's json.dumps writes (`": "`). Between
//!   taking the lock and leaving recovery ([`Cluster::take_lock`], then
//!   [`Cluster::finish_promotion`]) the new leader answers `/primary` 200
//!   with the replica's body, as Patroni 3.0.2 does for 70-175 ms
//!   (docs/tcp-research.md).
//! - webdis (0.1.9 with Redis 7.0.15 checked by hand): `/PING`
//!   `{"PING":[true,"PONG"]}`; `/ROLE`; `/INFO/replication` as webdis parses
//!   INFO into an object (`"master_repl_offset":"N"`); a write on a replica
//!   200 `{"SET":[false,"READONLY You can't write against a read only
//!   replica."]}`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The systems with a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Etcd,
    EtcdV3,
    Rqlite,
    Consul,
    Vault,
    Patroni,
    RedisWebdis,
}

impl System {
    pub fn preset(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::EtcdV3 => "etcd-v3",
            System::Rqlite => "rqlite",
            System::Consul => "consul",
            System::Vault => "vault",
            System::Patroni => "patroni",
            System::RedisWebdis => "redis-webdis",
        }
    }

    /// Write number `i` as this system's clients send it: method, path, body.
    pub fn write(self, i: usize) -> (&'static str, String, String) {
        match self {
            System::Etcd => ("PUT", format!("/v2/keys/k{i}"), "value=v".into()),
            System::EtcdV3 => (
                "POST",
                "/v3/kv/put".into(),
                format!(r#"{{"key":"azE={i}","value":"dg=="}}"#),
            ),
            System::Rqlite => (
                "POST",
                "/db/execute?timings".into(),
                format!(r#"[["INSERT INTO t(v) VALUES(?)", {i}]]"#),
            ),
            System::Consul => ("PUT", format!("/v1/kv/k{i}"), "v".into()),
            System::Vault => (
                "POST",
                format!("/v1/secret/data/k{i}"),
                r#"{"data":{"a":"b"}}"#.into(),
            ),
            System::Patroni => ("POST", "/items".into(), format!(r#"{{"id":{i}}}"#)),
            System::RedisWebdis => ("GET", format!("/SET/k{i}/v"), String::new()),
        }
    }

    /// Read number `i` as this system's clients send it.
    pub fn read(self, i: usize) -> (&'static str, String, String) {
        match self {
            System::Etcd => ("GET", format!("/v2/keys/k{i}"), String::new()),
            System::EtcdV3 => (
                "POST",
                "/v3/kv/range".into(),
                r#"{"key":"azE=","serializable":true}"#.into(),
            ),
            System::Rqlite => (
                "GET",
                format!("/db/query?q=SELECT+{i}&level=none"),
                String::new(),
            ),
            System::Consul => ("GET", format!("/v1/kv/k{i}?stale"), String::new()),
            System::Vault => ("GET", format!("/v1/secret/data/k{i}"), String::new()),
            System::Patroni => ("GET", format!("/items?id=eq.{i}"), String::new()),
            System::RedisWebdis => ("GET", format!("/GET/k{i}"), String::new()),
        }
    }

    /// Whether the real system takes this request as a write (it changes
    /// data) — judged by the fake, not by the preset's routes.
    fn is_write(self, method: &str, path: &str) -> bool {
        match self {
            System::Etcd | System::Consul | System::Vault | System::Patroni => {
                !matches!(method, "GET" | "HEAD" | "OPTIONS" | "LIST")
            }
            System::EtcdV3 => path != "/v3/kv/range",
            System::Rqlite => path.starts_with("/db/execute") || path.starts_with("/db/request"),
            System::RedisWebdis => !["/GET/", "/MGET/", "/EXISTS/", "/ROLE", "/PING", "/INFO"]
                .iter()
                .any(|p| path.starts_with(p)),
        }
    }

    /// The paths (without query) its preset probes.
    fn probe_paths(self) -> &'static [&'static str] {
        match self {
            System::Etcd => &["/health", "/v2/stats/leader", "/v2/keys/"],
            System::EtcdV3 => &["/health", "/v3/maintenance/status"],
            System::Rqlite => &["/readyz", "/status"],
            System::Consul => &["/v1/status/leader", "/v1/agent/self"],
            System::Vault => &["/v1/sys/health"],
            System::Patroni => &["/health", "/primary", "/patroni"],
            System::RedisWebdis => &["/PING", "/ROLE", "/INFO/replication"],
        }
    }
}

/// One request as a fake saw it, with what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub body: String,
    pub status: u16,
    /// A probe path of the preset (health, leader, position).
    pub probe: bool,
    /// A write, as the system judges it.
    pub write: bool,
}

/// etcd member id of node `i` (64-bit, as etcd makes them).
fn member_id(i: usize) -> u64 {
    3_319_814_642_761_637_952 + i as u64 * 1_000_003
}

/// What the nodes of one cluster share: who leads, the term, the addresses.
struct Shared {
    leader: Mutex<Option<usize>>,
    /// Each node's replication position, by index.
    positions: Vec<AtomicU64>,
    term: AtomicU64,
    addrs: Mutex<Vec<SocketAddr>>,
    /// Patroni: the leader holds the lock but is still in recovery.
    promoting: AtomicBool,
}

pub struct NodeState {
    system: System,
    index: usize,
    pub name: String,
    /// Member id (etcd), as the system writes it.
    id: u64,
    /// Vault: sealed (503 everywhere).
    sealed: AtomicBool,
    seen: Mutex<Vec<Seen>>,
    shared: Arc<Shared>,
}

impl NodeState {
    fn position(&self) -> &AtomicU64 {
        &self.shared.positions[self.index]
    }
}

pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<NodeState>,
    task: tokio::task::AbortHandle,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Node {
    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests other than the preset's probes.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| !s.probe).collect()
    }

    pub fn writes(&self) -> usize {
        self.requests().iter().filter(|s| s.write).count()
    }

    pub fn reads(&self) -> usize {
        self.requests().iter().filter(|s| !s.write).count()
    }

    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// The node's replication position (what its position probe reports).
    pub fn position(&self) -> u64 {
        self.state.position().load(Ordering::Relaxed)
    }

    pub fn set_sealed(&self, sealed: bool) {
        self.state.sealed.store(sealed, Ordering::Relaxed);
    }
}

/// Three (or more) fake nodes of one system; n1 leads at first.
pub struct Cluster {
    pub system: System,
    pub nodes: Vec<Node>,
    shared: Arc<Shared>,
}

impl Cluster {
    pub async fn start(system: System, n: usize) -> Cluster {
        let shared = Arc::new(Shared {
            leader: Mutex::new(Some(0)),
            // Followers a little behind the leader, each differently.
            positions: (0..n).map(|i| AtomicU64::new(100 - 5 * i as u64)).collect(),
            term: AtomicU64::new(2),
            addrs: Mutex::new(Vec::new()),
            promoting: AtomicBool::new(false),
        });
        let mut nodes = Vec::new();
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            shared.addrs.lock().unwrap().push(addr);
            let state = Arc::new(NodeState {
                system,
                index: i,
                name: format!("n{}", i + 1),
                id: member_id(i),
                sealed: AtomicBool::new(false),
                seen: Mutex::new(Vec::new()),
                shared: shared.clone(),
            });
            let st = state.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = listener.accept().await else {
                        continue;
                    };
                    let st = st.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(st.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
            nodes.push(Node {
                name: state.name.clone(),
                addr,
                state,
                task: task.abort_handle(),
            });
        }
        Cluster {
            system,
            nodes,
            shared,
        }
    }

    /// Node `i` leads from now on (a new term); the others follow.
    pub fn set_leader(&self, i: usize) {
        *self.shared.leader.lock().unwrap() = Some(i);
        self.shared.term.fetch_add(1, Ordering::Relaxed);
    }

    /// Patroni: node `i` takes the leader lock (`/primary` answers 200)
    /// but its PostgreSQL is still in recovery (`"role": "replica"`) until
    /// [`Cluster::finish_promotion`].
    pub fn take_lock(&self, i: usize) {
        self.shared.promoting.store(true, Ordering::Relaxed);
        self.set_leader(i);
    }

    /// Patroni: the lock holder has left recovery (`"role": "master"`).
    pub fn finish_promotion(&self) {
        self.shared.promoting.store(false, Ordering::Relaxed);
    }

    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::Relaxed)
    }

    /// A config with the system's preset and these nodes as backends;
    /// `extra` (YAML) goes at the end.
    pub fn yaml(&self, extra: &str) -> String {
        let mut s = format!(
            "preset: {}\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 2\ndebug_headers: true\nbackends:\n",
            self.system.preset()
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "  - {{ name: {}, url: \"http://{}\" }}\n",
                n.name, n.addr
            ));
        }
        s.push_str(extra);
        s
    }
}

/// What a fake answers: status, headers, body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn answer(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

impl Answer {
    fn header(mut self, name: &'static str, value: impl ToString) -> Answer {
        self.headers.push((name, value.to_string()));
        self
    }
}

async fn handle(
    st: Arc<NodeState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.to_string());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let probe = st.system.probe_paths().contains(&path.as_str());
    let write = !probe && st.system.is_write(&method, &path);
    let a = respond(&st, &method, &path, &query, &target, &body, write);
    st.seen.lock().unwrap().push(Seen {
        method,
        target,
        body,
        status: a.status,
        probe,
        write,
    });
    let mut r = Response::new(Full::new(Bytes::from(a.body)));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap();
    for (k, v) in a.headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
fn respond(
    st: &NodeState,
    method: &str,
    path: &str,
    query: &str,
    target: &str,
    body: &str,
    write: bool,
) -> Answer {
    let leader = *st.shared.leader.lock().unwrap();
    let leads = leader == Some(st.index);
    let term = st.shared.term.load(Ordering::Relaxed);
    let leader_addr = leader.map(|i| st.shared.addrs.lock().unwrap()[i]);
    // A write the node applies moves its position.
    let applied = || {
        if write && leads {
            st.position().fetch_add(1, Ordering::Relaxed) + 1
        } else {
            st.position().load(Ordering::Relaxed)
        }
    };
    match st.system {
        System::Etcd => match path {
            "/health" => answer(200, r#"{"health":"true"}"#),
            "/v2/stats/leader" if leads => answer(
                200,
                format!(r#"{{"leader":"{:x}","followers":{{}}}}"#, st.id),
            ),
            "/v2/stats/leader" => answer(403, r#"{"message":"not current leader"}"#),
            _ if path.starts_with("/v2/keys") => {
                let index = applied();
                let body = if write {
                    format!(
                        r#"{{"action":"set","node":{{"key":"{}","value":"v","modifiedIndex":{index},"createdIndex":{index}}}}}"#,
                        &path[8..]
                    )
                } else if path == "/v2/keys/" {
                    r#"{"action":"get","node":{"dir":true}}"#.to_string()
                } else {
                    format!(
                        r#"{{"action":"get","node":{{"key":"{}","value":"v","modifiedIndex":3,"createdIndex":3}}}}"#,
                        &path[8..]
                    )
                };
                answer(if write { 201 } else { 200 }, body)
                    .header("content-type", "application/json")
                    .header("x-etcd-cluster-id", "48276a8f75b6a87")
                    .header("x-etcd-index", index)
                    .header("x-raft-index", index + 2)
                    .header("x-raft-term", term)
            }
            _ => answer(404, "404 page not found"),
        },
        System::EtcdV3 => {
            let header = |revision: u64| {
                format!(
                    r#""header":{{"cluster_id":"324952591200643719","member_id":"{}","revision":"{revision}","raft_term":"{term}"}}"#,
                    st.id
                )
            };
            match path {
                "/health" => answer(200, r#"{"health":"true"}"#),
                "/v3/maintenance/status" if method == "POST" => {
                    let pos = st.position().load(Ordering::Relaxed);
                    let leader_id = leader.map_or(0, member_id);
                    answer(
                        200,
                        format!(
                            r#"{{{},"version":"3.4.23","dbSize":"24576","leader":"{leader_id}","raftIndex":"{pos}","raftTerm":"{term}","raftAppliedIndex":"{pos}","dbSizeInUse":"16384"}}"#,
                            header(pos)
                        ),
                    )
                }
                // A linearizable range is answered once the member has
                // applied what the leader had committed: the leader's
                // revision. A serializable one, at once, with its own.
                "/v3/kv/range" if !body.contains(r#""serializable":true"#) => {
                    let at = leader.map_or(0, |i| st.shared.positions[i].load(Ordering::Relaxed));
                    answer(200, format!("{{{}}}", header(at)))
                }
                // A write's answer carries the revision it made.
                _ if path.starts_with("/v3/") => answer(200, format!("{{{}}}", header(applied()))),
                _ => answer(404, "404 page not found"),
            }
        }
        System::Rqlite => match path {
            "/readyz" => answer(200, "[+]node ok\n[+]leader ok\n[+]store ok"),
            "/status" => {
                let pos = st.position().load(Ordering::Relaxed);
                let (laddr, lid) = leader.map_or((String::new(), String::new()), |i| {
                    (format!("127.0.0.1:{}", 4002 + 2 * i), format!("n{}", i + 1))
                });
                answer(
                    200,
                    format!(
                        r#"{{"build":{{"version":"v8.36.3"}},"http":{{"addr":"{}"}},"node":{{"uptime":"1m"}},"store":{{"node_id":"{}","addr":"127.0.0.1:{}","leader":{{"addr":"{laddr}","node_id":"{lid}"}},"raft":{{"applied_index":{pos},"commit_index":{},"last_log_index":{},"num_peers":2,"state":"{}","term":{term},"voter":true}},"db_applied_index":{pos},"ready":true}}}}"#,
                        st.shared.addrs.lock().unwrap()[st.index],
                        st.name,
                        4002 + 2 * st.index,
                        // Committed and logged, not applied yet.
                        pos + 3,
                        pos + 3,
                        if leads { "Leader" } else { "Follower" }
                    ),
                )
                .header("content-type", "application/json; charset=utf-8")
            }
            _ if write && !leads => match leader_addr {
                Some(a) => answer(301, "")
                    .header("location", format!("http://{a}{target}"))
                    .header("content-type", "application/json; charset=utf-8"),
                None => answer(503, "leader not found"),
            },
            _ if write => {
                applied();
                answer(
                    200,
                    r#"{"results":[{"last_insert_id":1,"rows_affected":1}]}"#,
                )
                .header("x-rqlite-served-by", &st.name)
            }
            "/db/query" => answer(
                200,
                r#"{"results":[{"columns":["1"],"types":["integer"],"values":[[1]]}]}"#,
            ),
            _ => answer(404, ""),
        },
        System::Consul => {
            let raft = |i: usize| format!("127.0.0.1:{}", 8300 + i);
            match path {
                "/v1/status/leader" => answer(
                    200,
                    format!("\"{}\"", leader.map(raft).unwrap_or_default()),
                )
                .header("content-type", "application/json"),
                "/v1/agent/self" => {
                    let pos = st.position().load(Ordering::Relaxed);
                    answer(
                        200,
                        format!(
                            r#"{{"Config":{{"Datacenter":"dc1","NodeName":"{name}","Server":true,"Version":"1.15.4"}},"Member":{{"Name":"{name}","Addr":"127.0.0.1","Port":8301,"Status":1}},"Stats":{{"agent":{{"checks":"0","services":"0"}},"consul":{{"bootstrap":"false","known_datacenters":"1","leader":"{leads}","leader_addr":"{laddr}","server":"true"}},"raft":{{"applied_index":"{pos}","commit_index":"{ahead}","last_log_index":"{ahead}","last_log_term":"{term}","num_peers":"2","state":"{state}","term":"{term}"}}}}}}"#,
                            name = st.name,
                            laddr = leader.map(raft).unwrap_or_default(),
                            state = if leads { "Leader" } else { "Follower" },
                            ahead = pos + 3,
                        ),
                    )
                    .header("content-type", "application/json")
                }
                _ if write => {
                    applied();
                    answer(200, "true").header("content-type", "application/json")
                }
                _ if path.starts_with("/v1/kv/") => answer(
                    200,
                    format!(
                        r#"[{{"LockIndex":0,"Key":"{}","Flags":0,"Value":"dg==","CreateIndex":7,"ModifyIndex":7}}]"#,
                        &path[7..]
                    ),
                )
                .header("content-type", "application/json")
                .header("x-consul-index", 7)
                .header("x-consul-knownleader", "true")
                .header("x-consul-lastcontact", 0),
                _ => answer(404, ""),
            }
        }
        System::Vault => {
            let sealed = st.sealed.load(Ordering::Relaxed);
            if path == "/v1/sys/health" {
                let standbyok = query.split('&').any(|q| q == "standbyok=true");
                let status = if sealed {
                    503
                } else if leads || standbyok {
                    200
                } else {
                    429
                };
                return answer(
                    status,
                    format!(
                        r#"{{"initialized":true,"sealed":{sealed},"standby":{},"performance_standby":false,"replication_performance_mode":"disabled","replication_dr_mode":"disabled","server_time_utc":1700000000,"version":"1.15.2","cluster_name":"vault-cluster-1","cluster_id":"c4ca5956-383b-20cc-7a7d-494e0b01f045"}}"#,
                        !leads
                    ),
                )
                .header("content-type", "application/json");
            }
            if sealed {
                return answer(503, r#"{"errors":["Vault is sealed"]}"#);
            }
            if write && !leads {
                // Request forwarding off or failing: redirect to the active node.
                return match leader_addr {
                    Some(a) => answer(307, "").header("location", format!("http://{a}{target}")),
                    None => answer(
                        500,
                        r#"{"errors":["local node not active but active cluster node not found"]}"#,
                    ),
                };
            }
            applied();
            if write {
                answer(
                    200,
                    r#"{"data":{"created_time":"2024-01-01T00:00:00Z","version":1}}"#,
                )
            } else {
                answer(200, r#"{"data":{"data":{"a":"b"}}}"#)
            }
            .header("content-type", "application/json")
        }
        System::Patroni => {
            let pos = st.position().load(Ordering::Relaxed);
            // Python's json.dumps: ", " and ": ".
            let promoted = leads && !st.shared.promoting.load(Ordering::Relaxed);
            let status_doc = if promoted {
                format!(
                    r#"{{"state": "running", "postmaster_start_time": "2024-07-01 10:00:00.000+00:00", "role": "master", "server_version": 150003, "xlog": {{"location": {pos}}}, "timeline": {term}, "dcs_last_seen": 1700000000, "database_system_identifier": "7252327498286490579", "patroni": {{"version": "3.3.0", "scope": "demo", "name": "{}"}}}}"#,
                    st.name
                )
            } else {
                format!(
                    r#"{{"state": "running", "postmaster_start_time": "2024-07-01 10:00:00.000+00:00", "role": "replica", "server_version": 150003, "xlog": {{"received_location": {}, "replayed_location": {pos}, "replayed_timestamp": null, "paused": false}}, "timeline": {term}, "replication_state": "streaming", "dcs_last_seen": 1700000000, "database_system_identifier": "7252327498286490579", "patroni": {{"version": "3.3.0", "scope": "demo", "name": "{}"}}}}"#,
                    pos + 4096,
                    st.name
                )
            };
            match path {
                "/health" | "/patroni" => answer(200, status_doc),
                "/primary" => answer(if leads { 200 } else { 503 }, status_doc),
                _ if write => {
                    applied();
                    answer(201, "")
                }
                _ => answer(200, "[]"),
            }
            .header("content-type", "application/json")
        }
        System::RedisWebdis => {
            let pos = st.position().load(Ordering::Relaxed);
            match path {
                "/PING" => answer(200, r#"{"PING":[true,"PONG"]}"#),
                "/ROLE" if leads => answer(
                    200,
                    format!(r#"{{"ROLE":["master",{pos},[["127.0.0.1","6380","{pos}"]]]}}"#),
                ),
                "/ROLE" => answer(
                    200,
                    format!(r#"{{"ROLE":["slave","127.0.0.1",6379,"connected",{pos}]}}"#),
                ),
                "/INFO/replication" => answer(
                    200,
                    if leads {
                        format!(
                            r##"{{"INFO":{{"# Replication\r\nrole":"master","connected_slaves":"2","slave0":"ip=127.0.0.1,port=6380,state=online,offset={pos},lag=0","master_failover_state":"no-failover","master_replid":"a17857d92afb48b55beefe10b582014a0d1b01e7","master_replid2":"0000000000000000000000000000000000000000","master_repl_offset":"{pos}","second_repl_offset":"-1","repl_backlog_active":"1","repl_backlog_size":"1048576","repl_backlog_first_byte_offset":"1","repl_backlog_histlen":"{pos}"}}}}"##
                        )
                    } else {
                        format!(
                            r##"{{"INFO":{{"# Replication\r\nrole":"slave","master_host":"127.0.0.1","master_port":"6379","master_link_status":"up","master_last_io_seconds_ago":"1","master_sync_in_progress":"0","slave_read_repl_offset":"{pos}","slave_repl_offset":"{pos}","slave_priority":"100","slave_read_only":"1","replica_announced":"1","connected_slaves":"0","master_failover_state":"no-failover","master_replid":"a17857d92afb48b55beefe10b582014a0d1b01e7","master_replid2":"0000000000000000000000000000000000000000","master_repl_offset":"{pos}","second_repl_offset":"-1","repl_backlog_active":"1","repl_backlog_size":"1048576","repl_backlog_first_byte_offset":"51","repl_backlog_histlen":"50"}}}}"##
                        )
                    },
                ),
                _ if write => {
                    let cmd = path.trim_start_matches('/').split('/').next().unwrap_or("");
                    if leads {
                        applied();
                        answer(200, format!(r#"{{"{cmd}":[true,"OK"]}}"#))
                    } else {
                        answer(
                            200,
                            format!(
                                r#"{{"{cmd}":[false,"READONLY You can't write against a read only replica."]}}"#
                            ),
                        )
                    }
                }
                _ if path.starts_with("/GET/") => answer(200, r#"{"GET":"v"}"#),
                _ => answer(200, r#"{"EXISTS":0}"#),
            }
            .header("content-type", "application/json")
            .header("server", "Webdis")
        }
    }
}

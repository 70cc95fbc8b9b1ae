//! `discovery.members`: ask the cluster who its members are. Every
//! `interval` the known backends are asked in turn — the leader first, then
//! healthy followers, then the rest — until one answers; its member list
//! (with each member's name) becomes the set. A failure of all of them, or
//! a list that names no member, keeps the last good set.

use std::sync::Arc;

use super::{changed, jittered, Found, Reporter, Sent, Source, OFF_RECHECK};
use crate::backend::Backend;
use crate::config::{Config, Expect, MembersDiscovery, MembersKind, ProbeConfig};
use crate::health::monitor::MonitorHandle;
use crate::health::probe;
use crate::metrics::Metrics;
use crate::routing::{LeaderState, RoutingTable, Shared};

/// The request that reads the member list of `kind`.
pub(crate) fn request(kind: MembersKind, cfg: &Config) -> ProbeConfig {
    let (method, path, body) = match kind {
        MembersKind::Etcd => (
            http::Method::POST,
            "/v3/cluster/member/list",
            Some("{}".to_string()),
        ),
        MembersKind::Patroni => (http::Method::GET, "/cluster", None),
        // rqlite 7 ignores `ver` and answers the object keyed by node id.
        MembersKind::Rqlite => (http::Method::GET, "/nodes?ver=2", None),
        MembersKind::Consul => (http::Method::GET, "/v1/status/peers", None),
    };
    ProbeConfig {
        native: None,
        path: path.to_string(),
        method,
        body,
        interval: cfg.health.probe.interval,
        timeout: cfg.health.probe.timeout,
        expect: Expect::default(),
    }
}

/// Reads an answer of `kind` given by `asked` (the backend that answered:
/// its scheme and port are used where the answer has no HTTP address —
/// consul's raft peers, a patroni member without `api_url`).
pub(crate) fn parse(kind: MembersKind, body: &[u8], asked: &Found) -> Result<Vec<Found>, String> {
    match kind {
        MembersKind::Etcd => parse_etcd(body),
        MembersKind::Patroni => parse_patroni(body, asked),
        MembersKind::Rqlite => parse_rqlite(body),
        MembersKind::Consul => parse_consul(body, asked),
    }
}

/// `asked`'s scheme and port on `host`.
fn on_host(name: Option<String>, host: &str, asked: &Found) -> Found {
    Found {
        name,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: asked.port,
        https: asked.https,
    }
}

fn json(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("member list is not JSON: {e}"))
}

/// Sorted, without duplicates; an error when empty (the last good set stays).
fn finish(mut out: Vec<Found>) -> Result<Vec<Found>, String> {
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("member list names no started member".to_string());
    }
    Ok(out)
}

/// Patroni `GET /cluster`: every member, named by its `name`, at the scheme
/// and `host:port` of its `api_url` (the Patroni REST API, the HTTP side a
/// leaderproxy talks to; its path is dropped). `host` and `port` are the
/// PostgreSQL address, not HTTP: a member without `api_url` (not seen in
/// practice) is taken at its `host` with the scheme and port of the member
/// that answered.
pub(crate) fn parse_patroni(body: &[u8], asked: &Found) -> Result<Vec<Found>, String> {
    let doc = json(body)?;
    let members = doc
        .get("members")
        .and_then(|m| m.as_array())
        .ok_or("member list has no \"members\" array")?;
    let mut out = Vec::new();
    for m in members {
        let name = m
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let api_url = m
            .get("api_url")
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty());
        let host = m
            .get("host")
            .and_then(|h| h.as_str())
            .filter(|h| !h.is_empty());
        match (api_url, host) {
            (Some(url), _) => out.push(Found::from_url(name, url)?),
            (None, Some(host)) => out.push(on_host(name, host, asked)),
            (None, None) => continue,
        }
    }
    finish(out)
}

/// rqlite `GET /nodes`: rqlite 7 and 8 answer an object keyed by node id,
/// newer ones (and 8 with `?ver=2`) `{"nodes": [...]}` with the id in each
/// node (a bare list is taken too). Every node with an `api_addr` (the HTTP
/// API; `addr` is raft), named by its id; a node the answering one could
/// not reach has an empty `api_addr` and is left out.
pub(crate) fn parse_rqlite(body: &[u8]) -> Result<Vec<Found>, String> {
    let doc = json(body)?;
    let nodes: Vec<(Option<String>, &serde_json::Value)> = match &doc {
        serde_json::Value::Array(list) => list.iter().map(|n| (None, n)).collect(),
        serde_json::Value::Object(o) => match o.get("nodes") {
            Some(serde_json::Value::Array(list)) => list.iter().map(|n| (None, n)).collect(),
            _ => o.iter().map(|(id, n)| (Some(id.clone()), n)).collect(),
        },
        _ => return Err("node list is neither an object nor a list".to_string()),
    };
    let mut out = Vec::new();
    for (key, n) in nodes {
        let id = n
            .get("id")
            .and_then(|i| i.as_str())
            .map(str::to_string)
            .or(key)
            .filter(|i| !i.is_empty());
        let Some(api) = n.get("api_addr").and_then(|a| a.as_str()) else {
            if n.is_object() {
                continue;
            }
            return Err("node list entry is not an object".to_string());
        };
        if api.is_empty() {
            continue; // not reachable from the node asked
        }
        out.push(Found::from_url(id, api)?);
    }
    finish(out)
}

/// consul `GET /v1/status/peers`: the raft peers' `ip:port` (the server
/// RPC port, 8300 by default, not HTTP). Each becomes a backend at that
/// host with the scheme and port of the server that answered (its HTTP
/// API, 8500 by default, the same on every server); consul reports no
/// names, so backends are named `host:port`.
pub(crate) fn parse_consul(body: &[u8], asked: &Found) -> Result<Vec<Found>, String> {
    let peers: Vec<String> = serde_json::from_slice(body)
        .map_err(|e| format!("peer list is not a JSON list of strings: {e}"))?;
    let mut out = Vec::new();
    for p in peers {
        let host = match p.parse::<std::net::SocketAddr>() {
            Ok(a) => a.ip().to_string(),
            Err(_) => match p.rsplit_once(':') {
                Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok() => h.to_string(),
                _ => return Err(format!("peer {p:?} is not host:port")),
            },
        };
        out.push(on_host(None, &host, asked));
    }
    finish(out)
}

/// etcd v3 `MemberListResponse` (JSON gateway): every member that has
/// started (a name and a client URL) and is not a learner (learners serve
/// no client requests), named by its name, at its first client URL.
pub(crate) fn parse_etcd(body: &[u8]) -> Result<Vec<Found>, String> {
    let doc = json(body)?;
    let members = doc
        .get("members")
        .and_then(|m| m.as_array())
        .ok_or("member list has no \"members\" array")?;
    let mut out = Vec::new();
    for m in members {
        let name = m.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let learner = m.get("isLearner").and_then(|l| l.as_bool()) == Some(true);
        let url = m
            .get("clientURLs")
            .and_then(|u| u.as_array())
            .and_then(|u| u.first())
            .and_then(|u| u.as_str());
        let (Some(url), false, false) = (url, name.is_empty(), learner) else {
            continue; // added but not started yet, or a learner
        };
        out.push(Found::from_url(Some(name.to_string()), url)?);
    }
    finish(out)
}

/// The backend asked, as a [`Found`]: its host, port and scheme.
fn asked(b: &Backend) -> Found {
    Found {
        name: None,
        host: b
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: b
            .authority
            .port_u16()
            .unwrap_or(if b.tls().is_some() { 443 } else { 80 }),
        https: b.tls().is_some(),
    }
}

/// Whom to ask, in order: the leader, healthy followers, everyone else.
fn ask_order(t: &RoutingTable) -> Vec<Arc<Backend>> {
    let mut order: Vec<Arc<Backend>> = Vec::with_capacity(t.backends.len());
    if let LeaderState::Known(l) = &t.leader {
        order.push(l.backend.clone());
    }
    for b in t.followers.iter().chain(t.backends.iter()) {
        if !order.iter().any(|o| o.id == b.id) {
            order.push(b.clone());
        }
    }
    order
}

/// Asks the members in [`ask_order`] until one gives a usable list.
async fn ask(t: &RoutingTable, m: &MembersDiscovery) -> Result<Vec<Found>, String> {
    let req = request(m.kind, &t.cfg);
    let mut first_error = None;
    for b in ask_order(t) {
        let r = match probe::request(&b, &req).await {
            Ok((200, _, body)) => parse(m.kind, &body, &asked(&b)),
            Ok((status, _, _)) => Err(format!("status {status}")),
            Err(e) => Err(e.to_string()),
        };
        match r {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_error.get_or_insert(format!("{}: {e}", b.name()));
            }
        }
    }
    Err(match first_error {
        Some(e) => format!("no member gave its member list (first: {e})"),
        None => "no member known to ask".to_string(),
    })
}

/// The loop: asks every `discovery.members.interval` (±10%) while the
/// config in force has `discovery.members`, reports every answer (the
/// monitor counts them for `discovery.remove_after`), logs the changes.
pub(crate) async fn run(shared: Arc<Shared>, monitor: MonitorHandle, metrics: Arc<Metrics>) {
    let mut rep = Reporter::new(Source::Members, &metrics);
    let gauge = metrics.discovered(Source::Members.label());
    // As in `dns::run`: what was sent, for which settings.
    let mut sent: Sent<MembersDiscovery> = None;
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ std::process::id() as u64;
    loop {
        let t = shared.load();
        let Some(m) = t.cfg.discovery.members.clone() else {
            if sent.take().is_some() {
                monitor.discovered(Source::Members, t.config_gen, None);
                gauge.set(0);
            }
            tokio::time::sleep(OFF_RECHECK).await;
            continue;
        };
        if !t.ready {
            // The first probe round tells who leads: ask the leader first.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if !shared.load().ready {
                continue;
            }
        }
        let t = shared.load();
        match ask(&t, &m).await {
            Ok(found) => {
                rep.succeeded(found.len());
                gauge.set(found.len() as i64);
                let gen = t.config_gen;
                if changed(&sent, &m, &found) {
                    tracing::info!(source = "members", found = found.len(), members = ?found.iter().map(|f| format!("{}={}", f.name.as_deref().unwrap_or(""), f.authority())).collect::<Vec<_>>(), "discovered backends");
                }
                monitor.discovered(Source::Members, gen, Some(found.clone()));
                sent = Some((m.clone(), found));
            }
            Err(e) => rep.failed(e),
        }
        drop(t);
        let until = tokio::time::Instant::now() + jittered(m.interval, &mut seed);
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep((until - now).min(OFF_RECHECK)).await;
            if shared.load().cfg.discovery.members.as_ref() != Some(&m) {
                break;
            }
        }
    }
}

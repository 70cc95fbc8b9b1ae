//! `discovery.members`: ask the cluster who its members are. Every
//! `interval` the known backends are asked in turn — the leader first, then
//! healthy followers, then the rest — until one answers; its member list
//! (with each member's name) becomes the set. A failure of all of them, or
//! a list that names no member, keeps the last good set.

use std::sync::Arc;

use super::{jittered, Found, Reporter, Source, OFF_RECHECK};
use crate::backend::Backend;
use crate::config::{Config, Expect, MembersDiscovery, MembersKind, ProbeConfig};
use crate::health::monitor::MonitorHandle;
use crate::health::probe;
use crate::metrics::Metrics;
use crate::routing::{LeaderState, RoutingTable, Shared};

/// The request that reads the member list of `kind`.
pub fn request(kind: MembersKind, cfg: &Config) -> ProbeConfig {
    match kind {
        MembersKind::Etcd => ProbeConfig {
            path: "/v3/cluster/member/list".to_string(),
            method: http::Method::POST,
            body: Some("{}".to_string()),
            interval: cfg.health.probe.interval,
            timeout: cfg.health.probe.timeout,
            expect: Expect::default(),
        },
    }
}

/// Reads an answer of `kind`.
pub fn parse(kind: MembersKind, body: &[u8]) -> Result<Vec<Found>, String> {
    match kind {
        MembersKind::Etcd => parse_etcd(body),
    }
}

/// etcd v3 `MemberListResponse` (JSON gateway): every member that has
/// started (a name and a client URL) and is not a learner (learners serve
/// no client requests), named by its name, at its first client URL.
pub fn parse_etcd(body: &[u8]) -> Result<Vec<Found>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("member list is not JSON: {e}"))?;
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
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("member list names no started member".to_string());
    }
    Ok(out)
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
            Ok((200, _, body)) => parse(m.kind, &body),
            Ok((status, _, _)) => Err(format!("status {status}")),
            Err(e) => Err(e.to_string()),
        };
        match r {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_error.get_or_insert(format!("{}: {e}", b.name));
            }
        }
    }
    Err(match first_error {
        Some(e) => format!("no member gave its member list (first: {e})"),
        None => "no member known to ask".to_string(),
    })
}

/// The loop: asks every `discovery.members.interval` (±10%) while the
/// config in force has `discovery.members`, reports each new set.
pub(crate) async fn run(shared: Arc<Shared>, monitor: MonitorHandle, metrics: Arc<Metrics>) {
    let mut rep = Reporter::new(Source::Members, &metrics);
    let gauge = metrics.discovered(Source::Members.label());
    let mut sent: Option<(MembersDiscovery, Vec<Found>)> = None;
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ std::process::id() as u64;
    loop {
        let t = shared.load();
        let Some(m) = t.cfg.discovery.members.clone() else {
            if sent.take().is_some() {
                monitor.discovered(Source::Members, None);
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
                if sent.as_ref() != Some(&(m.clone(), found.clone())) {
                    tracing::info!(source = "members", found = found.len(), members = ?found.iter().map(|f| format!("{}={}", f.name.as_deref().unwrap_or(""), f.authority())).collect::<Vec<_>>(), "discovered backends");
                    monitor.discovered(Source::Members, Some(found.clone()));
                    sent = Some((m.clone(), found));
                }
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

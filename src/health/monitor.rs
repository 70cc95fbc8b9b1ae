//! The monitor: probe loops per backend feed one aggregator task, which owns
//! all routing state, decides who leads, and publishes a new routing table
//! whenever something that affects routing changes.
//!
//! The request path talks to the monitor only through [`MonitorHandle`]
//! (fire-and-forget hints: "fence this leader", "re-probe now", "eject this
//! follower"); it never waits on it.
//!
//! This file is the actor loop: messages in, probe loops spawned, tables
//! published. The decisions are pure code in rooms of their own:
//! `schedule` (when probes run: jitter, the fast interval while
//! leaderless), `node` (what a probe answer does to one backend),
//! [`super::leader`] (who leads), [`crate::routing::freshness`] (the
//! round's reference, lag), `ejection` (passive ejection),
//! `membership` (reload and discovery reconcile),
//! `build` (eligible followers, tiers, the table) and
//! `view` (what the admin API shows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::build::{self, Generations, Picture, Probed, Standing};
use super::counter::Health;
use super::ejection;
use super::handle::Msg;
pub(crate) use super::handle::{Kind, MonitorHandle, REPROBE_MIN_GAP};
use super::leader::{decide, Decision, TermFloor};
use super::membership::Held;
use super::node::Node;
use super::schedule::{spawn_position_rounds, spawn_probe_loop};
use super::view;
pub(crate) use super::view::BackendStatus;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routing::fence;
use crate::routing::freshness::{lag, reference};
use crate::routing::tier::{Rank, Tiers};
use crate::routing::{Backend, Shared};

struct Aggregator {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    nodes: Vec<Node>,
    tx: mpsc::UnboundedSender<Msg>,
    kick: Arc<Notify>,
    workers: usize,
    epoch: u64,
    leader_gen: u64,
    picture: Option<Picture>,
    leader_since: SystemTime,
    leader_term: Option<u64>,
    no_leader_mark: Option<Instant>,
    last_kick: Option<Instant>,
    /// Terms only move forward.
    terms: TermFloor,
    /// Leader probes run at `leader.fast_interval` while this is set.
    fast: Arc<AtomicBool>,
    /// A reload changed the config: publish even if routing is the same.
    force_publish: bool,
    /// Config generation: +1 at every reload ([`RoutingTable::config_gen`]).
    config_gen: u64,
    /// Each discovery source's set in force (its answers with
    /// `discovery.remove_after` hysteresis), by [`Source::index`].
    found: [Option<Held>; 2],
    /// The problems and the count left out by `discovery.max_backends` of
    /// the last reconcile: each is logged once per change.
    last_problems: Vec<String>,
    last_capped: usize,
    /// The first probe round has finished once: a backend added later
    /// (reload, discovery) does not make routing "not ready" again.
    was_ready: bool,
    /// What lag is measured from: the last position round's answer of the
    /// leader (of every healthy node, while no leader is known); `None`
    /// when that round had none ([`reference`]).
    reference: Option<u64>,
}

/// Starts the monitor on the current tokio runtime: spawns probe loops for
/// every backend and the aggregator, and returns the handle. The initial
/// table (not ready, no routes) must already be in `shared`.
pub(crate) fn start(cfg: Arc<Config>, shared: Arc<Shared>, metrics: Arc<Metrics>) -> MonitorHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = MonitorHandle::new(tx.clone());
    let table = shared.load();
    let workers = cfg.workers;
    let mut agg = Aggregator {
        cfg: cfg.clone(),
        shared,
        metrics,
        nodes: Vec::new(),
        tx: tx.clone(),
        kick: Arc::new(Notify::new()),
        workers,
        epoch: table.epoch,
        leader_gen: table.leader_gen,
        picture: None,
        leader_since: SystemTime::now(),
        leader_term: None,
        no_leader_mark: Some(Instant::now()),
        last_kick: None,
        terms: TermFloor::default(),
        // Nobody leads yet.
        fast: Arc::new(AtomicBool::new(true)),
        force_publish: false,
        config_gen: table.config_gen,
        found: [None, None],
        last_problems: Vec::new(),
        last_capped: 0,
        was_ready: false,
        reference: None,
    };
    for b in &table.backends {
        agg.add_node(b.clone(), "static");
    }
    spawn_position_rounds(agg.shared.clone(), tx.clone(), agg.kick.clone());
    tokio::spawn(agg.run(rx));
    handle
}

impl Aggregator {
    fn add_node(&mut self, backend: Arc<Backend>, source: &'static str) {
        let mut node = Node::new(backend, &self.cfg.health, source);
        self.spawn_probes(&mut node);
        self.nodes.push(node);
    }

    fn spawn_probes(&self, node: &mut Node) {
        for t in node.tasks.drain(..) {
            t.abort();
        }
        node.tasks.push(spawn_probe_loop(
            node.backend.clone(),
            Kind::Health,
            self.cfg.health.probe.clone(),
            None,
            self.tx.clone(),
            self.kick.clone(),
            None,
        ));
        node.tasks.push(spawn_probe_loop(
            node.backend.clone(),
            Kind::Leader,
            self.cfg.leader.probe.clone(),
            self.cfg.leader.term_pointer.clone(),
            self.tx.clone(),
            self.kick.clone(),
            Some((self.fast.clone(), self.cfg.leader.fast_interval)),
        ));
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            let next_expiry = self
                .nodes
                .iter()
                .filter_map(|n| n.ejected_until)
                .filter(|t| *t > Instant::now())
                .min();
            let msg = match next_expiry {
                Some(t) => tokio::select! {
                    m = rx.recv() => m,
                    _ = tokio::time::sleep_until(t) => {
                        self.refresh();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(msg) = msg else { return };
            self.handle(msg);
            self.refresh();
        }
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.backend.id == id)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Probe {
                id,
                kind,
                outcome,
                fences,
            } => {
                let Some(i) = self.index_of(id) else { return };
                let node = &mut self.nodes[i];
                match kind {
                    Kind::Health => node.on_health(&outcome),
                    Kind::Leader => {
                        node.on_leader(&outcome, fences, self.cfg.leader.fall, &mut self.terms)
                    }
                }
            }
            Msg::Fenced { id } => {
                let Some(i) = self.index_of(id) else { return };
                // Stop routing writes to it until a probe says otherwise.
                if self.nodes[i].claim.withdraw() {
                    tracing::warn!(backend = %self.nodes[i].backend.name(), "leader failed a write with evidence against it; fenced, re-probing all backends now");
                }
                self.kick_probes(Duration::from_millis(20));
            }
            Msg::Positions(number, round) => {
                let mut answers = Vec::with_capacity(round.len());
                for (id, result, latency) in round {
                    if let Some(i) = self.index_of(id) {
                        answers.push((i, result.as_ref().ok().copied()));
                        self.nodes[i].on_position(result, latency);
                    }
                }
                let leader = build::leader_index(&self.decide());
                let healthy: Vec<bool> = self.nodes.iter().map(|n| n.healthy()).collect();
                self.reference = reference(&answers, leader, &healthy);
                self.shared.rounds.finish(number, self.reference);
            }
            Msg::Reprobe => {
                self.metrics.leader_reprobes.inc();
                tracing::debug!("request path asked for a re-probe");
                self.kick_probes(REPROBE_MIN_GAP);
            }
            Msg::Eject { id, reason } => {
                let Some(i) = self.index_of(id) else { return };
                self.try_eject(i, reason);
            }
            Msg::SetDrained {
                name,
                drained,
                reply,
            } => {
                let found = self
                    .nodes
                    .iter()
                    .find(|n| n.backend.name().as_str() == name);
                if let Some(n) = found {
                    n.backend.set_drained(drained);
                    tracing::info!(backend = %name, drained, "backend drain state changed by admin");
                }
                let _ = reply.send(found.is_some());
            }
            Msg::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Msg::Reload { cfg, reply } => {
                let notes = self.reload(cfg);
                // Publish before answering: a client that reloads and then
                // sends a request gets the new config's table.
                self.refresh();
                let _ = reply.send(notes);
            }
            Msg::Discovered { source, gen, found } => self.discovered(source, gen, found),
        }
    }

    /// Wakes every probe loop now, unless that was done less than `gap` ago.
    fn kick_probes(&mut self, gap: Duration) {
        let now = Instant::now();
        if self.last_kick.is_none_or(|t| now - t >= gap) {
            self.last_kick = Some(now);
            self.kick.notify_waiters();
        }
    }

    fn try_eject(&mut self, i: usize, reason: ejection::Reason) {
        let now = Instant::now();
        let p = self.cfg.passive.clone();
        if self.nodes[i].ejected(now) || self.is_leader(i) {
            return;
        }
        let name = self.nodes[i].backend.name().to_string();
        let followers = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| n.healthy() && !self.is_leader(*j))
            .count();
        let ejected = self.nodes.iter().filter(|n| n.ejected(now)).count();
        if !ejection::allowed(ejected, followers, p.max_ejection_percent) {
            tracing::warn!(backend = %name, reason = reason.as_str(), "passive health wanted to eject, but max_ejection_percent is reached");
            self.nodes[i].backend.record_success();
            self.nodes[i].backend.latency.restart(false);
            return;
        }
        let latency = matches!(reason, ejection::Reason::Latency { .. });
        let node = &mut self.nodes[i];
        let dur = ejection::duration(&p, node.ejections);
        node.ejections += 1;
        node.ejected_at = Some(now);
        node.ejected_until = Some(now + dur);
        node.ejected_for = reason;
        node.probed_since_ejection = None;
        node.backend.record_success();
        node.backend.latency.restart(latency);
        node.backend.metrics().ejections.inc();
        if latency {
            self.metrics.read_latency_ejections.inc();
        }
        tracing::warn!(backend = %node.backend.name(), seconds = dur.as_secs_f64(), reason = reason.as_str(), "follower ejected by passive health checking");
    }

    fn is_leader(&self, i: usize) -> bool {
        self.picture
            .as_ref()
            .is_some_and(|p| p.leader == Some(self.nodes[i].backend.id))
    }

    fn decide(&self) -> Decision {
        let use_terms = self.cfg.leader.term_pointer.is_some();
        let claims: Vec<(usize, Option<u64>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.claim.is_claiming()
                    && n.health.state() != Health::Down
                    && !n.drained()
                    && (!use_terms || self.terms.allows(n.term))
            })
            .map(|(i, n)| (i, n.term))
            .collect();
        decide(&claims, use_terms)
    }

    /// Recomputes the picture; publishes a new table if it changed.
    fn refresh(&mut self) {
        self.drop_retired();
        let now = Instant::now();
        let decision = self.decide();
        let leader_idx = build::leader_index(&decision);
        let (picture, tiers) = self.picture_of(&decision, now);
        self.account_no_leader(now, picture.leader.is_some());
        let leaderless = fence::leaderless(leader_idx.map(|i| &*self.nodes[i].backend));
        if !self.fast.swap(leaderless, Ordering::Relaxed) && leaderless {
            // Just lost the leader: probe now, then every fast interval.
            self.kick_probes(Duration::ZERO);
        }
        if self.picture.as_ref() == Some(&picture) && !self.force_publish {
            // The term may move while the leader stays; keep it current for admin.
            if let Some(i) = leader_idx {
                self.leader_term = self.nodes[i].term;
            }
            return;
        }
        self.note_changes(&picture, leader_idx);
        self.publish(&decision, picture, &tiers, now);
    }

    /// The routing picture of `decision` at `now`, and the read tiers (node
    /// indices) it was made from. Sets every node's lag gauge: every round,
    /// not only when routing changes, since a lagging follower's lag keeps
    /// growing while it stays out.
    fn picture_of(&mut self, decision: &Decision, now: Instant) -> (Picture, Tiers) {
        let lag = self.lags();
        for (n, (l, _)) in self.nodes.iter().zip(&lag) {
            if let Some(l) = l {
                n.backend
                    .metrics()
                    .lag
                    .set((*l).min(i64::MAX as u64) as i64);
            }
        }
        let standings: Vec<Standing> = (self.nodes.iter().zip(&lag))
            .map(|(n, (_, lagging))| n.standing(now, *lagging))
            .collect();
        let followers = build::eligible(&standings, build::leader_index(decision));
        // Of the eligible followers, which get reads: by priority, then zone.
        let tiers = build::tiers(&followers, &self.ranks());
        let probed: Vec<Probed> = self.nodes.iter().map(Node::probed).collect();
        let ready = build::ready(self.was_ready, &probed, self.cfg.positions.probe.is_some());
        self.was_ready = ready;
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.backend.id).collect();
        let picture = Picture::of(decision, &ids, &followers, &tiers, ready);
        (picture, tiers)
    }

    /// Counts and logs what changed from the picture in force to `picture`:
    /// the leader, where reads go, a split brain.
    fn note_changes(&mut self, picture: &Picture, leader_idx: Option<usize>) {
        let old_leader = self.picture.as_ref().and_then(|p| p.leader);
        let old_split = self.picture.as_ref().is_some_and(|p| !p.split.is_empty());
        if old_leader != picture.leader {
            self.leader_gen += 1;
            self.leader_since = SystemTime::now();
            if self.picture.is_some() || picture.leader.is_some() {
                self.metrics.leader_changes.inc();
            }
            let old_name = old_leader
                .and_then(|id| self.index_of(id))
                .map(|i| self.nodes[i].backend.name().to_string());
            match leader_idx {
                Some(i) => tracing::info!(
                    leader = %self.nodes[i].backend.name(),
                    previous = old_name.as_deref().unwrap_or("none"),
                    term = self.nodes[i].term,
                    "leader changed"
                ),
                None => tracing::warn!(
                    previous = old_name.as_deref().unwrap_or("none"),
                    "no leader known; writes are held"
                ),
            }
        }
        let old_rank = self.picture.as_ref().and_then(|p| p.read_rank);
        // Before the first probe round has finished the tiers are still
        // filling in (the leader can look like a follower for a moment):
        // nothing to say yet.
        if picture.ready && old_rank != picture.read_rank {
            self.log_read_tier(old_rank, picture);
        }
        if !picture.split.is_empty() && !old_split {
            self.metrics.split_brain.inc();
            tracing::warn!(claimants = ?self.names(&picture.split), "several backends claim leadership; no writes are routed");
        }
    }

    /// Builds the table of `decision` and `picture` (read tiers `tiers`),
    /// sets the gauges and publishes it.
    fn publish(&mut self, decision: &Decision, picture: Picture, tiers: &Tiers, now: Instant) {
        let leader_idx = build::leader_index(decision);
        self.leader_term = leader_idx.and_then(|i| self.nodes[i].term);
        self.epoch += 1;
        let backends: Vec<Arc<Backend>> = self.nodes.iter().map(|n| n.backend.clone()).collect();
        let leader = build::leader_state(decision, &backends, self.leader_since, self.leader_term);
        for (i, n) in self.nodes.iter().enumerate() {
            let m = &n.backend.metrics();
            m.healthy.set(n.healthy() as i64);
            m.is_leader.set((Some(i) == leader_idx) as i64);
            m.ejected.set(n.ejected(now) as i64);
        }
        self.metrics.leader_known.set(leader_idx.is_some() as i64);
        self.metrics.read_tier_spilled.set(tiers.spilled() as i64);
        let gens = Generations {
            epoch: self.epoch,
            leader_gen: self.leader_gen,
            config_gen: self.config_gen,
        };
        let table = build::table(gens, picture.ready, leader, tiers, &backends, &self.cfg);
        self.picture = Some(picture);
        self.force_publish = false;
        self.shared.publish(table);
    }

    /// Per node: how far its probed position is behind the last round's
    /// reference ([`reference`], [`lag`]), and whether that is more than
    /// `reads.max_lag`. With `max_lag` set, a node with no position, or any
    /// node while the last round gave no reference, counts as lagging: not
    /// knowing is never "current".
    fn lags(&self) -> Vec<(Option<u64>, bool)> {
        let max_lag = self.cfg.reads.max_lag;
        self.nodes
            .iter()
            .map(|n| lag(self.reference, n.backend.position(), max_lag))
            .collect()
    }

    /// Every node's rank for the read tiers, as seen from `local_zone`.
    fn ranks(&self) -> Vec<Rank> {
        let local = self.cfg.local_zone.as_deref();
        (self.nodes.iter())
            .map(|n| {
                let p = n.backend.placement();
                Rank::of(p.priority, p.zone.as_deref(), local)
            })
            .collect()
    }

    /// Says where reads go when the read tier moved from rank `old`: away
    /// from home (warn), back home, or to no follower at all.
    fn log_read_tier(&self, old: Option<Rank>, p: &Picture) {
        let names = self.names(&p.read_tier);
        let local_zone = self.cfg.local_zone.as_deref().unwrap_or("none");
        match (old, p.read_rank) {
            (_, Some(r)) if r != Rank::HOME => tracing::warn!(
                followers = ?names,
                priority = r.priority,
                outside_local_zone = r.remote,
                local_zone,
                "reads spill: no eligible follower in the local zone of the primary site"
            ),
            (Some(_), Some(_)) => tracing::info!(
                followers = ?names,
                local_zone,
                "reads are back in the local zone of the primary site"
            ),
            (Some(_), None) => tracing::warn!(
                fallback_to_leader = self.cfg.reads.fallback_to_leader,
                "no follower is eligible for reads"
            ),
            (None, _) => {}
        }
    }

    fn names(&self, ids: &[u64]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| self.index_of(*id))
            .map(|i| self.nodes[i].backend.name().to_string())
            .collect()
    }

    fn account_no_leader(&mut self, now: Instant, has_leader: bool) {
        if let Some(mark) = self.no_leader_mark.take() {
            self.metrics
                .no_leader_seconds
                .inc_by((now - mark).as_secs_f64());
        }
        if !has_leader {
            self.no_leader_mark = Some(now);
        }
    }

    fn status(&self) -> Vec<BackendStatus> {
        let now = Instant::now();
        let leader = self.picture.as_ref().and_then(|p| p.leader);
        let tier: &[u64] = self.picture.as_ref().map_or(&[], |p| &p.read_tier);
        self.nodes
            .iter()
            .zip(self.lags())
            .map(|(n, lag)| {
                let id = n.backend.id;
                view::status(n, now, leader == Some(id), lag, tier.contains(&id))
            })
            .collect()
    }
}

mod reconcile;

#[cfg(test)]
mod tests;

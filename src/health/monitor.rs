//! The monitor: probe loops per backend feed one aggregator task, which owns
//! all routing state, decides who leads, and publishes a new routing table
//! whenever something that affects routing changes.
//!
//! The request path talks to the monitor only through [`MonitorHandle`]
//! (fire-and-forget hints: "fence this leader", "re-probe now", "eject this
//! follower"); it never waits on it. Who may lead is decided by the pure
//! code in [`super::leader`]; this file is the loop around it.
//!
//! While no usable leader is known, leader probes run every
//! `leader.fast_interval` instead of `leader.interval`, so a held write is
//! released about one fast interval after the cluster elects a new leader.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::counter::{Counter, Health, Transition};
use super::leader::{decide, stale_claim, Claim, Decision, Evidence, TermFloor};
use super::membership::{self, Found, Held, Source};
use super::probe::{self, Outcome, ProbeFailure};
use crate::balance::Picker;
use crate::config::{Config, ProbeConfig};
use crate::metrics::Metrics;
use crate::routing::tier::{self, Rank};
use crate::routing::{Backend, LeaderInfo, LeaderState, RoutingTable, Shared};

/// Re-probes asked for by the request path (5xx answers, timeouts) start at
/// most this often, however many requests ask.
pub const REPROBE_MIN_GAP: Duration = Duration::from_millis(100);

/// `last_probe.leader_error` of a claim dropped by [`stale_claim`].
const STALE_CLAIM: &str = "claim dropped: the probe started before the backend was fenced";

/// Which probe a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Health,
    Leader,
}

/// What the admin API shows of one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub url: String,
    pub weight: u32,
    pub healthy: bool,
    pub role: &'static str,
    pub in_flight: usize,
    pub ejected: bool,
    pub ejected_for_ms: Option<u64>,
    pub drained: bool,
    /// `static` (the config's `backends`), `dns` or `members`.
    pub source: &'static str,
    /// Discovery no longer lists it; kept while it leads.
    pub retiring: bool,
    /// `backends[].zone` (discovered backends have none).
    pub zone: Option<String>,
    /// `backends[].priority`: 0 = primary site (discovered backends: 0).
    pub priority: u32,
    /// A follower that first reads go to now (see `routing::tier`).
    pub in_read_tier: bool,
    pub idle_connections: usize,
    pub last_probe: ProbeStatus,
    /// Replication position at the last successful position probe.
    pub position: Option<u64>,
    /// Positions behind the leader's position in the last position round
    /// (`None` when either is unknown).
    pub lag: Option<u64>,
    /// More than `reads.max_lag` behind, or the lag is unknown: no reads.
    pub lagging: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProbeStatus {
    pub health_ok: Option<bool>,
    pub health_latency_ms: Option<f64>,
    pub health_error: Option<String>,
    pub leader_claim: Option<bool>,
    pub leader_latency_ms: Option<f64>,
    pub leader_error: Option<String>,
    pub term: Option<u64>,
    pub position_error: Option<String>,
}

/// Messages to the aggregator.
enum Msg {
    Probe {
        id: u64,
        kind: Kind,
        outcome: Outcome,
        /// The backend's [`Backend::fence_count`] when the probe started.
        fences: u64,
    },
    /// The request path fenced this backend (transport evidence or a
    /// not-leader answer): withdraw its claim and re-probe everyone now.
    Fenced { id: u64 },
    /// One round of position probes (`positions.probe`): its number, and
    /// per backend id the result and how long it took.
    Positions(u64, Vec<(u64, Result<u64, ProbeFailure>, Duration)>),
    /// Re-probe everyone now (already rate-limited by the handle).
    Reprobe,
    /// Passive health: this follower failed too often.
    Eject { id: u64 },
    SetDrained {
        name: String,
        drained: bool,
        reply: oneshot::Sender<bool>,
    },
    Status {
        reply: oneshot::Sender<Vec<BackendStatus>>,
    },
    Reload {
        cfg: Arc<Config>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// A discovery source's answer (`None`: the source was turned off),
    /// asked under config generation `gen`.
    Discovered {
        source: Source,
        gen: u64,
        found: Option<Vec<Found>>,
    },
}

/// Cheap, cloneable handle to the monitor.
#[derive(Clone)]
pub struct MonitorHandle {
    tx: mpsc::UnboundedSender<Msg>,
    /// When the last re-probe was asked for, in ms since `epoch`.
    last_reprobe: Arc<AtomicU64>,
    epoch: Instant,
}

impl MonitorHandle {
    /// Leader `b` failed a write with evidence about itself (connect
    /// refused or timed out, reset or closed before any response byte, a
    /// not-leader answer): no more writes to it until a leader probe claims
    /// leadership again, and re-probe everyone now.
    pub fn fence(&self, b: &Backend) {
        // Fence at once on the request path; the monitor catches up.
        if b.fence() {
            let _ = self.tx.send(Msg::Fenced { id: b.id });
        }
    }

    /// Something happened that only a probe can interpret (a 5xx answer or
    /// a timeout from the leader): re-probe everyone now, keep routing.
    /// At most one re-probe per [`REPROBE_MIN_GAP`], without a lock.
    pub fn reprobe(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + REPROBE_MIN_GAP.as_millis() as u64;
        let last = self.last_reprobe.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REPROBE_MIN_GAP.as_millis() as u64 {
            return;
        }
        if self
            .last_reprobe
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let _ = self.tx.send(Msg::Reprobe);
        }
    }

    /// Passive health asks to eject follower `id`.
    pub fn eject(&self, id: u64) {
        let _ = self.tx.send(Msg::Eject { id });
    }

    /// Drains (`true`) or re-enables a backend by name; false if unknown.
    pub async fn set_drained(&self, name: &str, drained: bool) -> bool {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::SetDrained {
            name: name.to_string(),
            drained,
            reply,
        });
        rx.await.unwrap_or(false)
    }

    pub async fn status(&self) -> Vec<BackendStatus> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Status { reply });
        rx.await.unwrap_or_default()
    }

    /// A discovery source found this set (`None`: it was turned off),
    /// asking under the config of generation `gen`
    /// ([`RoutingTable::config_gen`]). The source's set takes it with
    /// `discovery.remove_after` hysteresis and, when that changed, the
    /// backends are reconciled like at a reload. An answer asked under an
    /// older generation than the one in force (in flight across a reload)
    /// is dropped; the source's next answer counts.
    pub fn discovered(&self, source: Source, gen: u64, found: Option<Vec<Found>>) {
        let _ = self.tx.send(Msg::Discovered { source, gen, found });
    }

    /// Applies a validated config; returns notes on what needs a restart.
    pub async fn reload(&self, cfg: Arc<Config>) -> Vec<String> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Reload { cfg, reply });
        rx.await.unwrap_or_default()
    }
}

struct Node {
    backend: Arc<Backend>,
    health: Counter,
    claim: Claim,
    term: Option<u64>,
    probed_health: bool,
    probed_leader: bool,
    /// A position probe answered (or failed) at least once.
    probed_position: bool,
    last: ProbeStatus,
    ejected_until: Option<Instant>,
    ejections: u32,
    /// `static`, `dns` or `members`.
    source: &'static str,
    /// Discovery dropped it while it led: it stays (and is probed) until it
    /// no longer claims leadership, then it is removed.
    retiring: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    fn healthy(&self) -> bool {
        self.health.is_up()
    }

    fn drained(&self) -> bool {
        self.backend.is_drained()
    }

    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The routing-relevant picture; a new table is published only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Picture {
    leader: Option<u64>,
    split: Vec<u64>,
    followers: Vec<u64>,
    /// Of `followers`, the read tier, its rank and the spill tier.
    read_tier: Vec<u64>,
    read_rank: Option<Rank>,
    spill: Vec<u64>,
    ready: bool,
}

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
pub fn start(cfg: Arc<Config>, shared: Arc<Shared>, metrics: Arc<Metrics>) -> MonitorHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = MonitorHandle {
        tx: tx.clone(),
        last_reprobe: Arc::new(AtomicU64::new(0)),
        epoch: Instant::now(),
    };
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

/// Small xorshift generator for probe jitter; seeded per loop so tests
/// that pause time stay deterministic.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `d` ± 10%.
    fn around(&mut self, d: Duration) -> Duration {
        let span = d.as_nanos() as u64 / 5;
        if span == 0 {
            return d;
        }
        d - Duration::from_nanos(span / 2) + Duration::from_nanos(self.next() % span)
    }
}

/// While the flag is set, probe every `.1` instead of the probe's interval.
type Fast = Option<(Arc<AtomicBool>, Duration)>;

fn spawn_probe_loop(
    backend: Arc<Backend>,
    kind: Kind,
    probe_cfg: ProbeConfig,
    term_pointer: Option<String>,
    tx: mpsc::UnboundedSender<Msg>,
    kick: Arc<Notify>,
    fast: Fast,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut jitter = Jitter(backend.name_hash | 1);
        // Spread the first probes a little so backends are not hit in lockstep.
        tokio::time::sleep(jitter.around(Duration::from_millis(5))).await;
        loop {
            let kicked = kick.notified();
            let fences = backend.fence_count();
            let outcome = probe::probe(&backend, &probe_cfg, term_pointer.as_deref()).await;
            if tx
                .send(Msg::Probe {
                    id: backend.id,
                    kind,
                    outcome,
                    fences,
                })
                .is_err()
            {
                return;
            }
            let interval = match &fast {
                Some((on, fast)) if on.load(Ordering::Relaxed) => *fast,
                _ => probe_cfg.interval,
            };
            tokio::select! {
                _ = tokio::time::sleep(jitter.around(interval)) => {}
                _ = kicked => {}
            }
        }
    })
}

/// Asks every backend of the current table for its replication position
/// at once, every `leader.interval` (and whenever all probes are kicked),
/// and reports the round as one message: positions compared with each
/// other were read within one probe round trip, so a follower's lag is not
/// inflated by the writes made between two probes taken at different times.
/// The config in force is read each round, so a reload needs no restart.
fn spawn_position_rounds(
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    kick: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut jitter = Jitter(0x9e37_79b9_7f4a_7c15);
        tokio::time::sleep(jitter.around(Duration::from_millis(5))).await;
        loop {
            let kicked = kick.notified();
            let t = shared.load();
            let interval = t.cfg.leader.probe.interval;
            if let Some(probe) = t.cfg.positions.probe.clone() {
                let probe = Arc::new(probe);
                let number = shared.rounds.start();
                let mut set = tokio::task::JoinSet::new();
                for b in t.backends.iter().cloned() {
                    let probe = probe.clone();
                    set.spawn(async move {
                        let start = Instant::now();
                        let result = probe::position(&b, &probe.0, &probe.1).await;
                        (b.id, result, start.elapsed())
                    });
                }
                drop(t);
                let mut round = Vec::with_capacity(set.len());
                while let Some(r) = set.join_next().await {
                    if let Ok(r) = r {
                        round.push(r);
                    }
                }
                if tx.send(Msg::Positions(number, round)).is_err() {
                    return;
                }
            } else {
                drop(t);
            }
            tokio::select! {
                _ = tokio::time::sleep(jitter.around(interval)) => {}
                _ = kicked => {}
            }
        }
    })
}

impl Aggregator {
    fn add_node(&mut self, backend: Arc<Backend>, source: &'static str) {
        let mut node = Node {
            backend,
            health: Counter::new(self.cfg.health.rise, self.cfg.health.fall),
            claim: Claim::default(),
            term: None,
            probed_health: false,
            probed_leader: false,
            probed_position: false,
            last: ProbeStatus::default(),
            ejected_until: None,
            ejections: 0,
            source,
            retiring: false,
            tasks: Vec::new(),
        };
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
                self.on_probe(i, kind, outcome, fences);
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
                        self.on_position(i, result, latency);
                    }
                }
                let leader = match self.decide() {
                    Decision::Leader(i) => Some(i),
                    _ => None,
                };
                let healthy: Vec<bool> = self.nodes.iter().map(|n| n.healthy()).collect();
                self.reference = reference(&answers, leader, &healthy);
                self.shared.rounds.finish(number, self.reference);
            }
            Msg::Reprobe => {
                self.metrics.leader_reprobes.inc();
                tracing::debug!("request path asked for a re-probe");
                self.kick_probes(REPROBE_MIN_GAP);
            }
            Msg::Eject { id } => {
                let Some(i) = self.index_of(id) else { return };
                self.try_eject(i);
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
            Msg::Discovered { source, gen, found } => {
                if gen != self.config_gen {
                    tracing::debug!(
                        source = source.label(),
                        asked_under = gen,
                        config_generation = self.config_gen,
                        "discovery answer asked before a reload dropped; the next one counts"
                    );
                    return;
                }
                let held = &mut self.found[source.index()];
                let changed = match found {
                    None => held.take().is_some(),
                    Some(f) => held
                        .get_or_insert_with(Held::default)
                        .answer(f, self.cfg.discovery.remove_after),
                };
                if changed {
                    self.reconcile(false);
                }
            }
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

    /// One probe's answer; `fences`: the backend's fence count when the
    /// probe started.
    fn on_probe(&mut self, i: usize, kind: Kind, o: Outcome, fences: u64) {
        let secs = o.latency.as_secs_f64();
        let node = &mut self.nodes[i];
        let b = node.backend.clone();
        let m = &b.metrics();
        match kind {
            Kind::Health => {
                m.probe_health.observe(secs);
                if !o.ok() {
                    m.probe_health_failures.inc();
                }
                node.probed_health = true;
                node.last.health_ok = Some(o.ok());
                node.last.health_latency_ms = Some(secs * 1000.0);
                node.last.health_error = o.error();
                match node.health.observe(o.ok()) {
                    Some(Transition::BecameUp) => {
                        tracing::info!(backend = %node.backend.name(), "backend is healthy")
                    }
                    Some(Transition::BecameDown) => {
                        // What it had may be gone when it comes back.
                        node.backend.set_position(None);
                        tracing::warn!(
                            backend = %node.backend.name(),
                            error = o.error().unwrap_or_default(),
                            "backend is unhealthy"
                        )
                    }
                    None => {}
                }
            }
            Kind::Leader => {
                m.probe_leader.observe(secs);
                let evidence = Evidence::of(&o);
                if stale_claim(evidence, fences, b.fence_count()) {
                    tracing::debug!(backend = %b.name(), "leader probe claim dropped: the probe started before the request path fenced the backend");
                    node.last.leader_latency_ms = Some(secs * 1000.0);
                    node.last.leader_error = Some(STALE_CLAIM.to_string());
                    return;
                }
                if matches!(evidence, Evidence::Refused | Evidence::Failed) {
                    m.probe_leader_failures.inc();
                }
                node.probed_leader = true;
                let was = node.claim.is_claiming();
                node.claim.observe(evidence, self.cfg.leader.fall);
                if evidence == Evidence::Claims {
                    node.backend.unfence();
                }
                if was && evidence == Evidence::Failed && node.claim.is_claiming() {
                    tracing::debug!(backend = %node.backend.name(), error = o.error().unwrap_or_default(), "leader probe failed; the claim holds until leader.fall failures in a row");
                }
                if o.term.is_some() || o.ok() {
                    node.term = o.term;
                }
                self.terms.see(evidence, o.term);
                node.last.leader_claim = Some(node.claim.is_claiming());
                node.last.leader_latency_ms = Some(secs * 1000.0);
                node.last.leader_error = match &o.result {
                    Err(ProbeFailure::Unexpected(_)) | Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                };
                node.last.term = o.term;
                // A leader probe that cannot connect is proof the node is down
                // right now; do not wait for `fall` health probes to say so.
                if evidence == Evidence::Refused && node.health.force_down().is_some() {
                    node.backend.set_position(None);
                    tracing::warn!(backend = %node.backend.name(), error = o.error().unwrap_or_default(), "backend refused a connection; marked unhealthy");
                }
            }
        }
    }

    fn on_position(&mut self, i: usize, result: Result<u64, ProbeFailure>, latency: Duration) {
        let n = &mut self.nodes[i];
        let m = &n.backend.metrics();
        m.probe_position.observe(latency.as_secs_f64());
        n.probed_position = true;
        match result {
            Ok(p) => {
                // A failed probe keeps the last position: positions only
                // grow, so an old one is a safe lower bound. One that went
                // down is neither: the backend lost what it had (a replica
                // resynced, a primary rewound, a member re-created), so its
                // position is cleared and the next answer starts it again.
                let kept = match n.backend.position() {
                    Some(old) if p < old => {
                        m.position_decreases.inc();
                        tracing::warn!(backend = %n.backend.name(), was = old, now = p, "replication position went down; cleared until the next position round");
                        None
                    }
                    _ => Some(p),
                };
                n.backend.set_position(kept);
                m.position.set(p.min(i64::MAX as u64) as i64);
                n.last.position_error = None;
            }
            Err(e) => {
                m.probe_position_failures.inc();
                if n.last.position_error.is_none() {
                    tracing::debug!(backend = %n.backend.name(), error = %e, "position probe failed; the last known position stays");
                }
                n.last.position_error = Some(e.to_string());
            }
        }
    }

    fn try_eject(&mut self, i: usize) {
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
            .count()
            .max(1);
        let ejected = self.nodes.iter().filter(|n| n.ejected(now)).count();
        if (ejected + 1) * 100 > followers * p.max_ejection_percent as usize {
            tracing::warn!(backend = %name, "passive health wanted to eject, but max_ejection_percent is reached");
            self.nodes[i].backend.record_success();
            return;
        }
        let node = &mut self.nodes[i];
        let factor = 1u32.checked_shl(node.ejections.min(16)).unwrap_or(u32::MAX);
        let dur = p.base_ejection.saturating_mul(factor).min(p.max_ejection);
        node.ejections += 1;
        node.ejected_until = Some(now + dur);
        node.backend.record_success();
        node.backend.metrics().ejections.inc();
        tracing::warn!(backend = %node.backend.name(), seconds = dur.as_secs_f64(), "follower ejected by passive health checking");
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
        let leader_idx = match &decision {
            Decision::Leader(i) => Some(*i),
            _ => None,
        };
        let lag = self.lags();
        // Every round, not only when routing changes: a lagging follower's
        // lag keeps growing while it stays out.
        for (n, (l, _)) in self.nodes.iter().zip(&lag) {
            if let Some(l) = l {
                n.backend
                    .metrics()
                    .lag
                    .set((*l).min(i64::MAX as u64) as i64);
            }
        }
        let followers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                Some(i) != leader_idx && n.healthy() && !n.drained() && !n.ejected(now) && !lag[i].1
            })
            .collect();
        // Of the eligible followers, which get reads: by priority, then zone.
        let tiers = self.tiers(&followers);
        let positions = self.cfg.positions.probe.is_some();
        let ready = self.was_ready
            || (!self.nodes.is_empty()
                && self.nodes.iter().all(|n| {
                    n.probed_health && n.probed_leader && (n.probed_position || !positions)
                }));
        self.was_ready = ready;
        let picture = Picture {
            leader: leader_idx.map(|i| self.nodes[i].backend.id),
            split: match &decision {
                Decision::SplitBrain(v) => v.iter().map(|&i| self.nodes[i].backend.id).collect(),
                _ => Vec::new(),
            },
            followers: followers
                .iter()
                .map(|&i| self.nodes[i].backend.id)
                .collect(),
            read_tier: tiers
                .read
                .iter()
                .map(|&i| self.nodes[i].backend.id)
                .collect(),
            read_rank: tiers.rank,
            spill: tiers
                .spill
                .iter()
                .map(|&i| self.nodes[i].backend.id)
                .collect(),
            ready,
        };
        self.account_no_leader(now, picture.leader.is_some());
        let usable = leader_idx.is_some_and(|i| !self.nodes[i].backend.is_fenced());
        if !self.fast.swap(!usable, Ordering::Relaxed) && !usable {
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
        if ready && old_rank != picture.read_rank {
            self.log_read_tier(old_rank, &picture);
        }
        if !picture.split.is_empty() && !old_split {
            self.metrics.split_brain.inc();
            tracing::warn!(claimants = ?self.names(&picture.split), "several backends claim leadership; no writes are routed");
        }
        self.leader_term = leader_idx.and_then(|i| self.nodes[i].term);
        self.epoch += 1;
        let leader = match &decision {
            Decision::Leader(i) => LeaderState::Known(LeaderInfo {
                backend: self.nodes[*i].backend.clone(),
                since: self.leader_since,
                term: self.leader_term,
            }),
            Decision::None => LeaderState::None,
            Decision::SplitBrain(v) => LeaderState::SplitBrain(
                v.iter()
                    .map(|&i| self.nodes[i].backend.name().to_string())
                    .collect(),
            ),
        };
        let backends_of = |ix: &[usize]| -> Vec<Arc<Backend>> {
            ix.iter().map(|&i| self.nodes[i].backend.clone()).collect()
        };
        let follower_backends = backends_of(&tiers.read);
        let spill = backends_of(&tiers.spill);
        for (i, n) in self.nodes.iter().enumerate() {
            let m = &n.backend.metrics();
            m.healthy.set(n.healthy() as i64);
            m.is_leader.set((Some(i) == leader_idx) as i64);
            m.ejected.set(n.ejected(now) as i64);
        }
        self.metrics.leader_known.set(leader_idx.is_some() as i64);
        self.metrics.read_tier_spilled.set(tiers.spilled() as i64);
        let table = RoutingTable {
            epoch: self.epoch,
            leader_gen: self.leader_gen,
            config_gen: self.config_gen,
            ready,
            leader,
            picker: Picker::build(self.cfg.reads.policy, &follower_backends),
            followers: follower_backends,
            spill_picker: Picker::build(self.cfg.reads.policy, &spill),
            spill,
            rest: backends_of(&tiers.rest),
            backends: self.nodes.iter().map(|n| n.backend.clone()).collect(),
            cfg: self.cfg.clone(),
        };
        self.picture = Some(picture);
        self.force_publish = false;
        self.shared.publish(table);
    }

    /// Per node: how far its probed position is behind the last round's
    /// reference ([`reference`]), and whether that is more than
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

    /// The read tiers of the eligible followers `eligible` (node indices);
    /// the result holds node indices too.
    fn tiers(&self, eligible: &[usize]) -> tier::Tiers {
        let local = self.cfg.local_zone.as_deref();
        let ranks: Vec<Rank> = eligible
            .iter()
            .map(|&i| {
                let p = self.nodes[i].backend.placement();
                Rank::of(p.priority, p.zone.as_deref(), local)
            })
            .collect();
        let mut t = tier::tiers(&ranks);
        for v in [&mut t.read, &mut t.spill, &mut t.rest] {
            for k in v.iter_mut() {
                *k = eligible[*k];
            }
        }
        t
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
        let lag = self.lags();
        let tier: &[u64] = self.picture.as_ref().map_or(&[], |p| &p.read_tier);
        self.nodes
            .iter()
            .zip(lag)
            .map(|(n, lag)| (n, lag, n.backend.placement()))
            .map(|(n, (lag, lagging), place)| BackendStatus {
                name: n.backend.name().to_string(),
                url: n.backend.url.clone(),
                weight: n.backend.weight(),
                healthy: n.healthy(),
                role: if leader == Some(n.backend.id) {
                    "leader"
                } else if n.healthy() {
                    "follower"
                } else {
                    "down"
                },
                in_flight: n.backend.in_flight(),
                ejected: n.ejected(now),
                ejected_for_ms: n
                    .ejected_until
                    .filter(|t| *t > now)
                    .map(|t| (t - now).as_millis() as u64),
                drained: n.drained(),
                source: n.source,
                retiring: n.retiring,
                zone: place.zone.clone(),
                priority: place.priority,
                in_read_tier: tier.contains(&n.backend.id),
                idle_connections: n.backend.pool.idle_count(),
                last_probe: n.last.clone(),
                position: n.backend.position(),
                lag,
                lagging,
            })
            .collect()
    }

    fn reload(&mut self, cfg: Arc<Config>) -> Vec<String> {
        let notes = membership::restart_notes(&self.cfg, &cfg);
        let cfg = membership::applied(&self.cfg, &cfg);
        let probes_changed = membership::probes_changed(&self.cfg, &cfg);
        if cfg.leader.term_pointer != self.cfg.leader.term_pointer {
            // Terms from another pointer are another sequence.
            self.terms = TermFloor::default();
        }
        self.cfg = cfg.clone();
        self.config_gen += 1;

        if cfg.discovery.dns.is_none() {
            self.found[Source::Dns.index()] = None;
        }
        if cfg.discovery.members.is_none() {
            self.found[Source::Members.index()] = None;
        }
        self.reconcile(probes_changed);
        // Publish a new table even if routing did not change: the config is part of it.
        self.force_publish = true;
        notes
    }

    /// Brings the nodes in line with the backends wanted now — the static
    /// ones of the config in force plus every discovery source's last good
    /// set ([`membership::desired`]) — for reloads and discoveries alike.
    /// A backend whose name and address did not change keeps its node
    /// (health, claim, ejection) and its `Backend` (in-flight count, pooled
    /// connections); new ones start probing; removed ones leave the table
    /// and their in-flight requests finish on the `Arc` they hold. A
    /// discovered leader that discovery no longer lists stays, marked
    /// retiring, while it still claims leadership ([`Self::drop_retired`]).
    fn reconcile(&mut self, probes_changed: bool) {
        let cfg = self.cfg.clone();
        let sets = self.found.each_ref().map(|h| h.as_ref().map(Held::set));
        let w = membership::desired(&cfg.backends, &sets, &cfg.discovery);
        self.report_wanted(&w);
        let wanted = w.backends;
        let sources: Vec<&'static str> = wanted
            .iter()
            .map(|bc| membership::source_of(bc, &cfg.backends, &sets))
            .collect();
        let mut old: Vec<Node> = std::mem::take(&mut self.nodes);
        let mut renamed = Vec::new();
        for (bc, source) in wanted.iter().zip(sources) {
            if let Some(pos) = old.iter().position(|n| n.backend.same_as(bc)) {
                let mut n = old.remove(pos);
                if let Some(was) = n.backend.rename(&bc.name, &self.metrics) {
                    tracing::info!(backend = %bc.name, was = %was, url = %bc.url, "backend renamed; it keeps its health, claim and connections");
                    renamed.push(was);
                }
                n.backend.set_weight(bc.weight);
                if n.backend.set_placement(bc) {
                    tracing::info!(backend = %bc.name, zone = bc.zone.as_deref().unwrap_or("none"), priority = bc.priority, "backend zone or priority changed; it keeps its health and connections");
                }
                n.backend.set_tls(bc.tls.as_ref());
                if n.backend.pool.limit() != cfg.max_upstream_connections(bc) {
                    tracing::warn!(backend = %bc.name, "max_connections changed; a backend kept by a reload keeps its limit until a restart");
                }
                n.health.set_thresholds(cfg.health.rise, cfg.health.fall);
                n.source = source;
                if n.retiring {
                    tracing::info!(backend = %bc.name, "backend listed again by discovery; no longer retiring");
                    n.retiring = false;
                }
                if probes_changed {
                    self.spawn_probes(&mut n);
                }
                self.nodes.push(n);
            } else {
                let how = if source == "static" {
                    "reload"
                } else {
                    "discovery"
                };
                tracing::info!(backend = %bc.name, url = %bc.url, source, "backend added by {how}");
                let limit = cfg.max_upstream_connections(bc);
                let b = Arc::new(Backend::new(bc, &self.metrics, self.workers, limit));
                self.add_node(b, source);
            }
        }
        let leader = self.picture.as_ref().and_then(|p| p.leader);
        for mut n in old {
            let static_again = cfg.backends.iter().any(|b| n.backend.same_as(b));
            let leads = leader == Some(n.backend.id);
            if membership::keeps_retiring_leader(
                n.source,
                leads,
                n.claim.is_claiming(),
                static_again,
            ) {
                if !n.retiring {
                    tracing::warn!(backend = %n.backend.name(), "discovery no longer lists the leader; it stays while it leads");
                    n.retiring = true;
                }
                self.nodes.push(n);
                continue;
            }
            self.remove_node(n);
        }
        for was in renamed {
            self.forget_label(&was);
        }
        // Publish even if routing did not change: the backend list did.
        self.force_publish = true;
    }

    /// Logs the finds not used (once per change of the list) and the
    /// `discovery.max_backends` cap (counted every time it cuts, logged
    /// once per change of how many it leaves out).
    fn report_wanted(&mut self, w: &membership::Wanted) {
        if w.problems != self.last_problems {
            for p in &w.problems {
                tracing::warn!(problem = %p, "discovered address not used");
            }
            self.last_problems = w.problems.clone();
        }
        if w.capped > 0 {
            self.metrics.discovery_capped.inc();
        }
        if w.capped != self.last_capped {
            let max = self.cfg.discovery.max_backends;
            if w.capped > 0 {
                tracing::warn!(
                    left_out = w.capped,
                    max_backends = max,
                    "more discovered addresses than discovery.max_backends; the rest are left out"
                );
            } else {
                tracing::info!(
                    max_backends = max,
                    "discovered addresses within discovery.max_backends again"
                );
            }
            self.last_capped = w.capped;
        }
    }

    fn remove_node(&mut self, n: Node) {
        tracing::info!(backend = %n.backend.name(), source = n.source, "backend removed; its in-flight requests finish");
        self.forget_label(&n.backend.name());
        // Dropping the node aborts its probe loops.
    }

    /// Drops the metric label sets of `name` unless a node still carries it.
    fn forget_label(&self, name: &str) {
        if !self.nodes.iter().any(|m| m.backend.name().as_str() == name) {
            self.metrics.forget_backend(name);
        }
    }

    /// Removes retiring nodes that no longer claim leadership.
    fn drop_retired(&mut self) {
        if !self.nodes.iter().any(|n| n.retiring) {
            return;
        }
        let (gone, keep): (Vec<Node>, Vec<Node>) =
            std::mem::take(&mut self.nodes).into_iter().partition(|n| {
                n.retiring && !(n.claim.is_claiming() && n.health.state() != Health::Down)
            });
        self.nodes = keep;
        for n in gone {
            tracing::info!(backend = %n.backend.name(), "retiring backend no longer leads");
            self.remove_node(n);
        }
        self.force_publish = true;
    }
}

/// The position lag is measured from, out of one round's answers (node
/// index, position if it answered): the leader's when a leader is known
/// (`None` if it did not answer: the other answers may all be behind it),
/// else the highest answer of a healthy node. Never a remembered position
/// from an earlier round.
fn reference(
    answers: &[(usize, Option<u64>)],
    leader: Option<usize>,
    healthy: &[bool],
) -> Option<u64> {
    match leader {
        Some(l) => answers.iter().find(|(i, _)| *i == l).and_then(|(_, p)| *p),
        None => answers
            .iter()
            .filter(|(i, _)| healthy.get(*i).copied().unwrap_or(false))
            .filter_map(|(_, p)| *p)
            .max(),
    }
}

/// One node's lag behind `reference`, and whether it is over `max_lag`
/// (unknown counts as over).
fn lag(reference: Option<u64>, position: Option<u64>, max_lag: Option<u64>) -> (Option<u64>, bool) {
    match (reference, position) {
        (Some(top), Some(p)) => {
            let l = top.saturating_sub(p);
            (Some(l), max_lag.is_some_and(|m| l > m))
        }
        _ => (None, max_lag.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Arc<Config> {
        config_named("seed", extra)
    }

    /// One static backend `name` at 127.0.0.1:1, and `extra`.
    fn config_named(name: &str, extra: &str) -> Arc<Config> {
        let yaml = format!(
            "listen: 127.0.0.1:0\nbackends: [ {{ name: {name}, url: 'http://127.0.0.1:1' }} ]\n\
             leader: {{ path: /l, expect: {{ status: [200] }} }}\n{extra}"
        );
        Arc::new(crate::config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap())
    }

    /// A monitor on `cfg` (its probes fail: nothing listens on port 1).
    fn monitor(cfg: Arc<Config>) -> (MonitorHandle, Arc<Shared>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let backends = cfg
            .backends
            .iter()
            .map(|b| {
                Arc::new(Backend::new(
                    b,
                    &metrics,
                    1,
                    cfg.max_upstream_connections(b),
                ))
            })
            .collect();
        let shared = Arc::new(Shared::new(RoutingTable::empty(backends, cfg.clone())));
        (start(cfg, shared.clone(), metrics.clone()), shared, metrics)
    }

    fn found(host: &str) -> Vec<Found> {
        vec![Found {
            name: None,
            host: host.to_string(),
            port: 2379,
            https: false,
        }]
    }

    async fn names(h: &MonitorHandle) -> Vec<String> {
        h.status().await.into_iter().map(|b| b.name).collect()
    }

    /// A reload that renames a backend at the same address keeps it (same
    /// `Backend`, drain state kept); admin and metric labels follow the name.
    #[tokio::test]
    async fn a_rename_at_the_same_address_keeps_the_backend() {
        let (h, shared, metrics) = monitor(config(""));
        let before = shared.load().backends[0].clone();
        assert!(h.set_drained("seed", true).await);
        h.reload(config_named("s2", "")).await;
        let after = shared.load().backends[0].clone();
        assert_eq!(after.id, before.id, "the same backend");
        assert_eq!(after.name().as_str(), "s2");
        let st = h.status().await;
        assert_eq!((st[0].name.as_str(), st[0].drained), ("s2", true));
        assert!(!h.set_drained("seed", false).await, "the old name is gone");
        let m = metrics.render();
        assert!(m.contains("backend=\"s2\""), "{m}");
        assert!(!m.contains("backend=\"seed\""), "{m}");
    }

    /// A discovered backend left out of answers goes only after
    /// `discovery.remove_after` answers in a row; the cap leaves the rest
    /// out and counts it.
    #[tokio::test]
    async fn discovered_backends_are_removed_after_remove_after_answers_and_capped() {
        let (h, shared, metrics) = monitor(config(
            "discovery: { dns: { name: etcd.test, port: 2379 }, max_backends: 2, remove_after: 2 }\n",
        ));
        let g = shared.load().config_gen;
        let two = [found("10.0.0.2"), found("10.0.0.3")].concat();
        h.discovered(Source::Dns, g, Some(two.clone()));
        let all = ["seed", "10.0.0.2:2379", "10.0.0.3:2379"];
        assert_eq!(names(&h).await, all);
        h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
        assert_eq!(names(&h).await, all, "one answer without it: kept");
        h.discovered(Source::Dns, g, Some(two.clone()));
        h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
        assert_eq!(names(&h).await, all, "not two in a row");
        h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
        assert_eq!(names(&h).await, ["seed", "10.0.0.2:2379"], "two in a row");
        // Three addresses, two at most.
        let three = [two, found("10.0.0.4")].concat();
        assert_eq!(metrics.discovery_capped.get(), 0);
        h.discovered(Source::Dns, g, Some(three));
        assert_eq!(names(&h).await, all);
        assert_eq!(metrics.discovery_capped.get(), 1, "the cut is counted");
    }

    /// An answer in flight across a reload arrives after it: dropped, not
    /// applied; the next answer, asked under the config in force, is.
    #[tokio::test]
    async fn a_discovery_answer_asked_before_a_reload_is_dropped() {
        let dns = "discovery: { dns: { name: etcd.test, port: 2379 } }\n";
        let (h, shared, _) = monitor(config(dns));
        let g0 = shared.load().config_gen;
        h.discovered(Source::Dns, g0, Some(found("10.0.0.2")));
        assert_eq!(names(&h).await, ["seed", "10.0.0.2:2379"]);

        // The reload turns DNS off; an answer asked before it comes late.
        h.reload(config("")).await;
        let g1 = shared.load().config_gen;
        assert!(g1 > g0, "a reload moves the generation");
        assert_eq!(names(&h).await, ["seed"]);
        h.discovered(Source::Dns, g0, Some(found("10.0.0.3")));
        assert_eq!(names(&h).await, ["seed"], "the stale answer is dropped");

        // DNS on again: only answers asked under the new config count.
        h.reload(config(dns)).await;
        let g2 = shared.load().config_gen;
        h.discovered(Source::Dns, g1, Some(found("10.0.0.4")));
        assert_eq!(names(&h).await, ["seed"]);
        h.discovered(Source::Dns, g2, Some(found("10.0.0.5")));
        assert_eq!(names(&h).await, ["seed", "10.0.0.5:2379"]);
    }

    #[test]
    fn the_reference_is_this_rounds_leader_or_else_highest_healthy_answer() {
        let healthy = [true, true, false];
        let round = [(0, Some(10)), (1, Some(12)), (2, Some(99))];
        assert_eq!(reference(&round, Some(0), &healthy), Some(10));
        assert_eq!(reference(&round, None, &healthy), Some(12));
        let leader_failed = [(0, None), (1, Some(12))];
        assert_eq!(reference(&leader_failed, Some(0), &healthy), None);
        assert_eq!(reference(&[], None, &healthy), None);
    }

    #[test]
    fn unknown_lag_is_lagging_under_max_lag() {
        assert_eq!(lag(Some(20), Some(5), Some(10)), (Some(15), true));
        assert_eq!(lag(Some(20), Some(15), Some(10)), (Some(5), false));
        assert_eq!(lag(None, Some(15), Some(10)), (None, true));
        assert_eq!(lag(Some(20), None, Some(10)), (None, true));
        assert_eq!(lag(None, None, None), (None, false));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut j = Jitter(42);
        for _ in 0..1000 {
            let d = j.around(Duration::from_millis(1000));
            assert!(
                d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
                "{d:?}"
            );
        }
    }
}

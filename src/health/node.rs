//! One backend as the monitor sees it ([`Node`]): its health counter,
//! leadership claim, term, last probe results and ejection, and what each
//! probe answer does to them. Who leads among the nodes is decided in
//! [`super::leader`]; the loop that feeds the answers is
//! [`super::monitor`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::build::{Probed, Standing};
use super::counter::{Counter, Transition};
use super::ejection::{self, Reason};
use super::leader::{Claim, Evidence, TermFloor};
use super::probe::{Outcome, ProbeFailure};
use super::view::ProbeStatus;
use crate::backend::Backend;
use crate::config::HealthConfig;
use crate::routing::fence::stale_claim;
use crate::routing::freshness::kept_position;

/// `last_probe.leader_error` of a claim dropped by [`stale_claim`].
pub(super) const STALE_CLAIM: &str =
    "claim dropped: the probe started before the backend was fenced";

pub(super) struct Node {
    pub(super) backend: Arc<Backend>,
    pub(super) health: Counter,
    pub(super) claim: Claim,
    pub(super) term: Option<u64>,
    pub(super) probed_health: bool,
    pub(super) probed_leader: bool,
    /// A position probe answered (or failed) at least once.
    pub(super) probed_position: bool,
    pub(super) last: ProbeStatus,
    pub(super) ejected_until: Option<Instant>,
    /// When its last ejection began.
    pub(super) ejected_at: Option<Instant>,
    /// Why it was last ejected.
    pub(super) ejected_for: Reason,
    /// The last health probe answered since it was last ejected: success
    /// and latency (a latency ejection holds until one is fast).
    pub(super) probed_since_ejection: Option<(bool, Duration)>,
    pub(super) ejections: u32,
    /// `static`, `dns` or `members`.
    pub(super) source: &'static str,
    /// Discovery dropped it while it led: it stays (and is probed) until it
    /// no longer claims leadership, then it is removed.
    pub(super) retiring: bool,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// A new node for `backend` (from `source`: `static`, `dns` or
    /// `members`): not probed yet, down, not claiming.
    pub(super) fn new(backend: Arc<Backend>, health: &HealthConfig, source: &'static str) -> Node {
        Node {
            backend,
            health: Counter::new(health.rise, health.fall),
            claim: Claim::default(),
            term: None,
            probed_health: false,
            probed_leader: false,
            probed_position: false,
            last: ProbeStatus::default(),
            ejected_until: None,
            ejected_at: None,
            ejected_for: Reason::Failures,
            probed_since_ejection: None,
            ejections: 0,
            source,
            retiring: false,
            tasks: Vec::new(),
        }
    }

    pub(super) fn healthy(&self) -> bool {
        self.health.is_up()
    }

    pub(super) fn drained(&self) -> bool {
        self.backend.is_drained()
    }

    /// Ejected at `now`: within its back-off, or, ejected for latency,
    /// until a health probe is fast again ([`ejection::holds`]).
    pub(super) fn ejected(&self, now: Instant) -> bool {
        let Some(span) = self.ejected_at.zip(self.ejected_until) else {
            return false;
        };
        ejection::holds(self.ejected_for, span, now, self.probed_since_ejection)
    }

    /// What decides whether it may serve reads at `now`; `lagging`: over
    /// `reads.max_lag`.
    pub(super) fn standing(&self, now: Instant, lagging: bool) -> Standing {
        Standing {
            healthy: self.healthy(),
            drained: self.drained(),
            ejected: self.ejected(now),
            lagging,
        }
    }

    /// Which of its first probes have answered.
    pub(super) fn probed(&self) -> Probed {
        Probed {
            health: self.probed_health,
            leader: self.probed_leader,
            position: self.probed_position,
        }
    }

    /// A health probe's answer: the rise/fall counter moves; a backend
    /// that goes down loses its position.
    pub(super) fn on_health(&mut self, o: &Outcome) {
        let secs = o.latency.as_secs_f64();
        let m = &self.backend.metrics();
        m.probe_health.observe(secs);
        if !o.ok() {
            m.probe_health_failures.inc();
        }
        self.probed_health = true;
        self.probed_since_ejection = Some((o.ok(), o.latency));
        self.last.health_ok = Some(o.ok());
        self.last.health_latency_ms = Some(secs * 1000.0);
        self.last.health_error = o.error();
        match self.health.observe(o.ok()) {
            Some(Transition::BecameUp) => {
                tracing::info!(backend = %self.backend.name(), "backend is healthy")
            }
            Some(Transition::BecameDown) => {
                // What it had may be gone when it comes back.
                self.backend.set_position(None);
                tracing::warn!(
                    backend = %self.backend.name(),
                    error = o.error().unwrap_or_default(),
                    "backend is unhealthy"
                )
            }
            None => {}
        }
    }

    /// A leader probe's answer; `fences`: the backend's fence count when
    /// the probe started (a claim from before the last fence is dropped,
    /// [`stale_claim`]), `fall`: `leader.fall`, `terms`: the term floor.
    pub(super) fn on_leader(&mut self, o: &Outcome, fences: u64, fall: u32, terms: &mut TermFloor) {
        let secs = o.latency.as_secs_f64();
        let b = self.backend.clone();
        let m = &b.metrics();
        m.probe_leader.observe(secs);
        let evidence = Evidence::of(o);
        match evidence {
            Evidence::Claims => b.set_replicas(o.replicas),
            Evidence::Denies => b.set_replicas(None),
            Evidence::Refused | Evidence::Failed => {}
        }
        if stale_claim(evidence == Evidence::Claims, fences, b.fence_count()) {
            tracing::debug!(backend = %b.name(), "leader probe claim dropped: the probe started before the request path fenced the backend");
            self.last.leader_latency_ms = Some(secs * 1000.0);
            self.last.leader_error = Some(STALE_CLAIM.to_string());
            return;
        }
        if matches!(evidence, Evidence::Refused | Evidence::Failed) {
            m.probe_leader_failures.inc();
        }
        self.probed_leader = true;
        let was = self.claim.is_claiming();
        self.claim.observe(evidence, fall);
        if evidence == Evidence::Claims {
            self.backend.unfence();
        }
        if was && evidence == Evidence::Failed && self.claim.is_claiming() {
            tracing::debug!(backend = %self.backend.name(), error = o.error().unwrap_or_default(), "leader probe failed; the claim holds until leader.fall failures in a row");
        }
        if o.term.is_some() || o.ok() {
            self.term = o.term;
        }
        terms.see(evidence, o.term);
        self.last.leader_claim = Some(self.claim.is_claiming());
        self.last.leader_latency_ms = Some(secs * 1000.0);
        self.last.leader_error = match &o.result {
            Err(ProbeFailure::Unexpected(_)) | Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        self.last.term = o.term;
        // A leader probe that cannot connect is proof the node is down
        // right now; do not wait for `fall` health probes to say so.
        if evidence == Evidence::Refused && self.health.force_down().is_some() {
            self.backend.set_position(None);
            tracing::warn!(backend = %self.backend.name(), error = o.error().unwrap_or_default(), "backend refused a connection; marked unhealthy");
        }
    }

    /// A position probe's answer (or failure) and how long it took. A
    /// failed probe keeps the last position; one that went down clears it
    /// ([`kept_position`]).
    pub(super) fn on_position(&mut self, result: Result<u64, ProbeFailure>, latency: Duration) {
        let m = &self.backend.metrics();
        m.probe_position.observe(latency.as_secs_f64());
        self.probed_position = true;
        match result {
            Ok(p) => {
                let old = self.backend.position();
                let kept = kept_position(old, p);
                if kept.is_none() {
                    m.position_decreases.inc();
                    tracing::warn!(backend = %self.backend.name(), was = old, now = p, "replication position went down; cleared until the next position round");
                }
                self.backend.set_position(kept);
                m.position.set(p.min(i64::MAX as u64) as i64);
                self.last.position_error = None;
            }
            Err(e) => {
                m.probe_position_failures.inc();
                if self.last.position_error.is_none() {
                    tracing::debug!(backend = %self.backend.name(), error = %e, "position probe failed; the last known position stays");
                }
                self.last.position_error = Some(e.to_string());
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

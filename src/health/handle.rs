//! How the rest of the proxy talks to the monitor: [`MonitorHandle`]
//! (fire-and-forget hints from the request path: "fence this leader",
//! "re-probe now", "eject this follower"; admin and reload requests that
//! wait for an answer; discovery answers) and the messages ([`Msg`]) the
//! probe loops and the handle send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::membership::{Found, Source};
use super::probe::{Outcome, ProbeFailure};
use super::view::BackendStatus;
use crate::backend::Backend;
use crate::config::Config;

/// Re-probes asked for by the request path (5xx answers, timeouts) start at
/// most this often, however many requests ask.
pub(crate) const REPROBE_MIN_GAP: Duration = Duration::from_millis(100);

/// Which probe a result belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Health,
    Leader,
}

/// Messages to the monitor.
pub(super) enum Msg {
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
    Eject {
        id: u64,
        reason: super::ejection::Reason,
    },
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
pub(crate) struct MonitorHandle {
    tx: mpsc::UnboundedSender<Msg>,
    /// When the last re-probe was asked for, in ms since `epoch`.
    last_reprobe: Arc<AtomicU64>,
    epoch: Instant,
}

impl MonitorHandle {
    /// The handle that sends on `tx`.
    pub(super) fn new(tx: mpsc::UnboundedSender<Msg>) -> MonitorHandle {
        MonitorHandle {
            tx,
            last_reprobe: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Leader `b` failed a write with evidence about itself (connect
    /// refused or timed out, reset or closed before any response byte, a
    /// not-leader answer): no more writes to it until a leader probe claims
    /// leadership again, and re-probe everyone now.
    pub(crate) fn fence(&self, b: &Backend) {
        // Fence at once on the request path; the monitor catches up.
        if b.fence() {
            let _ = self.tx.send(Msg::Fenced { id: b.id });
        }
    }

    /// Something happened that only a probe can interpret (a 5xx answer or
    /// a timeout from the leader): re-probe everyone now, keep routing.
    /// At most one re-probe per [`REPROBE_MIN_GAP`], without a lock.
    pub(crate) fn reprobe(&self) {
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

    /// Passive health asks to eject follower `id` for `reason`.
    pub(crate) fn eject(&self, id: u64, reason: super::ejection::Reason) {
        let _ = self.tx.send(Msg::Eject { id, reason });
    }

    /// Drains (`true`) or re-enables a backend by name; false if unknown.
    pub(crate) async fn set_drained(&self, name: &str, drained: bool) -> bool {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::SetDrained {
            name: name.to_string(),
            drained,
            reply,
        });
        rx.await.unwrap_or(false)
    }

    pub(crate) async fn status(&self) -> Vec<BackendStatus> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Status { reply });
        rx.await.unwrap_or_default()
    }

    /// A discovery source found this set (`None`: it was turned off),
    /// asking under the config of generation `gen`
    /// ([`crate::routing::RoutingTable::config_gen`]). The source's set takes it with
    /// `discovery.remove_after` hysteresis and, when that changed, the
    /// backends are reconciled like at a reload. An answer asked under an
    /// older generation than the one in force (in flight across a reload)
    /// is dropped; the source's next answer counts.
    pub(crate) fn discovered(&self, source: Source, gen: u64, found: Option<Vec<Found>>) {
        let _ = self.tx.send(Msg::Discovered { source, gen, found });
    }

    /// Applies a validated config; returns notes on what needs a restart.
    pub(crate) async fn reload(&self, cfg: Arc<Config>) -> Vec<String> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Reload { cfg, reply });
        rx.await.unwrap_or_default()
    }
}

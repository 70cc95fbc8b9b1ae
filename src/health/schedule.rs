//! When probes run: one loop per backend and probe kind (health, leader),
//! one loop for position rounds, each sleeping its interval ± 10% jitter
//! ([`jittered`]) or until the monitor kicks every loop at once.
//!
//! While no usable leader is known, leader probes run every
//! `leader.fast_interval` instead of `leader.interval` ([`interval`]), so a
//! held write is released about one fast interval after the cluster
//! elects a new leader. The loops only send results to the monitor
//! ([`Msg`]); what a result means is decided there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::handle::{Kind, Msg};
use super::probe;
use crate::backend::Backend;
use crate::config::ProbeConfig;
use crate::routing::Shared;

/// `d` ± 10%, drawn from the xorshift generator `seed` (seeded per loop, so
/// tests that pause time stay deterministic and several proxies do not
/// probe or ask in lockstep).
pub(crate) fn jittered(d: Duration, seed: &mut u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let span = d.as_nanos() as u64 / 5;
    if span == 0 {
        return d;
    }
    d - Duration::from_nanos(span / 2) + Duration::from_nanos(*seed % span)
}

/// A loop's jitter: its own seed for [`jittered`].
struct Jitter(u64);

impl Jitter {
    /// `d` ± 10%.
    fn around(&mut self, d: Duration) -> Duration {
        jittered(d, &mut self.0)
    }
}

/// How long a probe loop sleeps: the fast interval while the `fast` flag
/// is set, else the probe's own `interval`.
pub(super) fn interval(fast: &Fast, interval: Duration) -> Duration {
    match fast {
        Some((on, fast)) if on.load(Ordering::Relaxed) => *fast,
        _ => interval,
    }
}

/// While the flag is set, probe every `.1` instead of the probe's interval.
pub(super) type Fast = Option<(Arc<AtomicBool>, Duration)>;

pub(super) fn spawn_probe_loop(
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
            let outcome = probe::probe(&backend, &probe_cfg, term_pointer.as_deref(), kind).await;
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
            let interval = interval(&fast, probe_cfg.interval);
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
pub(super) fn spawn_position_rounds(
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn leader_probes_run_fast_only_while_the_flag_is_set() {
        let second = Duration::from_secs(1);
        let flag = Arc::new(AtomicBool::new(true));
        let fast: Fast = Some((flag.clone(), Duration::from_millis(50)));
        assert_eq!(interval(&fast, second), Duration::from_millis(50));
        flag.store(false, Ordering::Relaxed);
        assert_eq!(interval(&fast, second), second);
        assert_eq!(interval(&None, second), second);
    }
}

//! The immutable routing table and the shared cell it is published in.
//!
//! The monitor builds a new [`RoutingTable`] whenever anything that affects
//! routing changes and publishes it with one `ArcSwap::store`; a request takes
//! one snapshot and uses it to the end. Held writes wait on a `watch` channel
//! that is bumped with each publish, never on a poll loop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::fence;
use super::freshness::fresh_enough;
use super::{Backend, Need};
use crate::balance::Picker;
use crate::config::Config;

/// The leader writes go to.
#[derive(Debug, Clone)]
pub struct LeaderInfo {
    /// The leader.
    pub backend: Arc<Backend>,
    /// When this monitor first saw it lead.
    pub since: SystemTime,
    /// The term (or index) its claim carried, if the probe reads one.
    pub term: Option<u64>,
}

/// Who gets writes.
#[derive(Debug, Clone)]
pub enum LeaderState {
    /// One leader, confirmed.
    Known(LeaderInfo),
    /// No healthy backend claims leadership.
    None,
    /// Several claim it and no term tells them apart: no writes are routed.
    SplitBrain(Vec<String>),
}

/// Where requests go, as of one monitor round: published whole and never
/// changed afterwards (readers load it without a lock).
pub struct RoutingTable {
    /// Increases with every published table.
    pub epoch: u64,
    /// Increases with every change of leader (including to none): pooled
    /// connections opened under an older generation are not used for writes.
    pub(crate) leader_gen: u64,
    /// Increases with every config the monitor applies (a reload): a
    /// discovery answer is tagged with the generation it was asked under,
    /// and one made under an older generation is dropped (stale).
    pub(crate) config_gen: u64,
    /// False until the first probe round has finished.
    pub ready: bool,
    /// Who gets writes.
    pub leader: LeaderState,
    /// The read tier ([`super::tier`]): of the eligible followers
    /// (healthy, not the leader, not drained, not ejected), those of the
    /// lowest priority that has any, local zone first. The read candidates.
    pub followers: Vec<Arc<Backend>>,
    /// The read policy's state over `followers`.
    pub picker: Picker,
    /// The next tier: where a read retry goes when the read tier has no
    /// other follower (before the leader). Gets no first reads.
    pub(crate) spill: Vec<Arc<Backend>>,
    pub(crate) spill_picker: Picker,
    /// Eligible followers of the tiers after `spill`: no reads, but a
    /// not-leader redirect may name one (a standby site's new leader).
    pub(crate) rest: Vec<Arc<Backend>>,
    /// Every configured backend, in config order.
    pub(crate) backends: Vec<Arc<Backend>>,
    /// The config in force for requests routed by this table, so one
    /// snapshot gives a request a consistent view of rules and limits.
    pub(crate) cfg: Arc<Config>,
}

impl RoutingTable {
    /// A table that routes nothing yet (before the first probe round).
    pub fn empty(backends: Vec<Arc<Backend>>, cfg: Arc<Config>) -> RoutingTable {
        RoutingTable {
            epoch: 0,
            leader_gen: 0,
            config_gen: 0,
            ready: false,
            leader: LeaderState::None,
            followers: Vec::new(),
            picker: Picker::build(cfg.reads.policy, &[]),
            spill: Vec::new(),
            spill_picker: Picker::build(cfg.reads.policy, &[]),
            rest: Vec::new(),
            backends,
            cfg,
        }
    }

    #[inline]
    pub(crate) fn leader(&self) -> Option<&Arc<Backend>> {
        match &self.leader {
            LeaderState::Known(l) => Some(&l.backend),
            _ => None,
        }
    }

    /// The leader a write may be sent to now — the one definition, used by
    /// the write path and by [`Shared::wait_for_leader`] alike: routing is
    /// ready (every backend was probed, so no second claimant is unknown),
    /// one leader is known, and it may get writes ([`fence::may_write`]).
    #[inline]
    pub(crate) fn write_leader(&self) -> Option<&Arc<Backend>> {
        if !self.ready {
            return None;
        }
        self.leader().filter(|l| fence::may_write(l))
    }

    /// Whether a backend named by a not-leader redirect may get the write:
    /// routing is ready and not split, and the backend is in this table as
    /// leader or eligible follower (of any tier), and it may get writes
    /// ([`fence::may_write`]).
    pub(crate) fn hint_usable(&self, b: &Backend) -> bool {
        self.ready
            && !matches!(self.leader, LeaderState::SplitBrain(_))
            && fence::may_write(b)
            && (self.leader().is_some_and(|l| l.id == b.id)
                || self
                    .followers
                    .iter()
                    .chain(&self.spill)
                    .chain(&self.rest)
                    .any(|f| f.id == b.id))
    }

    /// A follower of the read tier by policy; the leader when no follower
    /// is eligible and `fallback_to_leader` is on.
    #[inline]
    pub fn pick_read(&self, client: IpAddr) -> Option<&Arc<Backend>> {
        match self.picker.pick(&self.followers, client, None) {
            Some(i) => Some(&self.followers[i]),
            None if self.cfg.reads.fallback_to_leader => self.leader(),
            None => None,
        }
    }

    /// Where a read that failed on backend `failed` is retried: another
    /// follower of the read tier, else one of the spill tier (the next
    /// zone or site), else the leader when `fallback_to_leader` is on;
    /// never `failed`.
    pub(crate) fn pick_retry(&self, client: IpAddr, failed: u64) -> Option<&Arc<Backend>> {
        let other = |list: &[Arc<Backend>], picker: &Picker| {
            picker
                .pick(list, client, Some(failed))
                .filter(|&i| list[i].id != failed)
        };
        if let Some(i) = other(&self.followers, &self.picker) {
            return Some(&self.followers[i]);
        }
        if let Some(i) = other(&self.spill, &self.spill_picker) {
            return Some(&self.spill[i]);
        }
        if self.cfg.reads.fallback_to_leader {
            return self.leader().filter(|l| l.id != failed);
        }
        None
    }

    /// Where a read that must see an earlier write goes
    /// (`reads.consistency: read_your_writes`): with a position, the
    /// follower the policy picks if it is fresh enough
    /// (`fresh_enough`), else the next follower that is; the leader
    /// otherwise — and always
    /// when `need.leader_only` — whatever `fallback_to_leader` says, since
    /// the leader has every acknowledged write. Never the backend `avoid`
    /// (a retry). The flag says whether the leader was chosen.
    pub fn pick_fresh(
        &self,
        client: IpAddr,
        need: Need,
        avoid: Option<u64>,
    ) -> Option<(&Arc<Backend>, bool)> {
        if need.wants_a_fresh_follower() {
            let fresh = |b: &Backend| Some(b.id) != avoid && fresh_enough(need, b.position());
            if let Some(i) = self.picker.pick(&self.followers, client, avoid) {
                let n = self.followers.len();
                if let Some(b) = (0..n)
                    .map(|k| &self.followers[(i + k) % n])
                    .find(|b| fresh(b))
                {
                    return Some((b, false));
                }
            }
        }
        self.leader()
            .filter(|l| Some(l.id) != avoid)
            .map(|l| (l, true))
    }

    /// Where a read goes: by policy ([`Self::pick_read`], or
    /// [`Self::pick_retry`] when `avoid` names the backend that failed), or,
    /// when it must see an earlier write, [`Self::pick_fresh`]. The flag
    /// says whether a fresh read went to the leader (`None`: no need).
    pub(crate) fn pick_for(
        &self,
        client: IpAddr,
        need: Need,
        avoid: Option<u64>,
    ) -> Option<(&Arc<Backend>, Option<bool>)> {
        if need.is_none() {
            let b = match avoid {
                None => self.pick_read(client),
                Some(id) => self.pick_retry(client, id),
            };
            return b.map(|b| (b, None));
        }
        self.pick_fresh(client, need, avoid)
            .map(|(b, leader)| (b, Some(leader)))
    }

    pub(crate) fn backend_by_authority(&self, authority: &str) -> Option<&Arc<Backend>> {
        self.backends
            .iter()
            .find(|b| b.authority.as_str().eq_ignore_ascii_case(authority))
    }
}

/// The published table plus the channel that announces each new one.
pub struct Shared {
    table: ArcSwap<RoutingTable>,
    changed: watch::Sender<u64>,
    /// The position rounds' progress (`positions.probe`).
    pub(crate) rounds: Rounds,
}

/// How far the position rounds have come, for writes whose position is
/// not known: such a write's session stays on the leader until a round that
/// started after it has read the leader's position.
#[derive(Default)]
pub(crate) struct Rounds {
    /// Rounds started so far (the running one included).
    started: AtomicU64,
    /// The last round whose answers the monitor has taken in.
    done: AtomicU64,
    /// That round's reference (the leader's position) plus one; 0 = none.
    reference: AtomicU64,
}

impl Rounds {
    /// A round starts; returns its number (from 1).
    pub(crate) fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The number of the first round that starts after this call.
    pub(crate) fn next(&self) -> u64 {
        self.started.load(Ordering::Relaxed) + 1
    }

    /// Round `n` was taken in, with the leader's position `reference`.
    pub(crate) fn finish(&self, n: u64, reference: Option<u64>) {
        self.reference.store(
            reference.map_or(0, |p| p.saturating_add(1)),
            Ordering::Relaxed,
        );
        self.done.store(n, Ordering::Release);
    }

    /// The leader's position read by round `n` or a later one, once known:
    /// the last finished round's number and reference.
    pub(crate) fn reference_since(&self, n: u64) -> Option<(u64, u64)> {
        let done = self.done.load(Ordering::Acquire);
        if done < n {
            return None;
        }
        let r = self.reference.load(Ordering::Relaxed).checked_sub(1)?;
        Some((done, r))
    }
}

impl Shared {
    /// Publishes `initial` as the first table.
    pub fn new(initial: RoutingTable) -> Shared {
        let epoch = initial.epoch;
        Shared {
            table: ArcSwap::from_pointee(initial),
            changed: watch::channel(epoch).0,
            rounds: Rounds::default(),
        }
    }

    /// One snapshot of the current table.
    #[inline]
    pub fn load(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Publishes a new table and wakes everyone waiting for a change.
    pub fn publish(&self, t: RoutingTable) {
        let epoch = t.epoch;
        self.table.store(Arc::new(t));
        self.changed.send_replace(epoch);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until a table is published whose [`RoutingTable::write_leader`]
    /// exists and is not `avoid` (a backend id), or until `deadline`.
    /// Returns that table. Every wait is an await on the publish channel (or
    /// the `recheck` timer), so a table that does not change never spins.
    /// `recheck` bounds each wait so that a leader that refused once but
    /// was never replaced gets another chance.
    pub(crate) async fn wait_for_leader(
        &self,
        deadline: Instant,
        avoid: Option<u64>,
        recheck: std::time::Duration,
    ) -> Option<Arc<RoutingTable>> {
        self.wait_for(deadline, avoid, recheck, |t, avoid| {
            t.write_leader().is_some_and(|l| avoid != Some(l.id))
        })
        .await
    }

    /// Waits like [`Shared::wait_for_leader`] until a table has a target
    /// for a read that failed on `avoid` ([`RoutingTable::pick_for`]): a
    /// read held through a failover goes to the next leader, or to a
    /// follower whose position qualifies.
    pub(crate) async fn wait_for_read(
        &self,
        deadline: Instant,
        avoid: Option<u64>,
        recheck: std::time::Duration,
        client: IpAddr,
        need: Need,
    ) -> Option<Arc<RoutingTable>> {
        self.wait_for(deadline, avoid, recheck, |t, avoid| {
            t.ready && t.pick_for(client, need, avoid).is_some()
        })
        .await
    }

    /// The wait loop of [`Shared::wait_for_leader`] and
    /// [`Shared::wait_for_read`]: until `usable(table, avoid)` holds, or
    /// `deadline`; `avoid` is forgotten after a `recheck` with no new table.
    async fn wait_for(
        &self,
        deadline: Instant,
        mut avoid: Option<u64>,
        recheck: std::time::Duration,
        usable: impl Fn(&RoutingTable, Option<u64>) -> bool,
    ) -> Option<Arc<RoutingTable>> {
        let mut rx = self.subscribe();
        loop {
            rx.borrow_and_update();
            let t = self.load();
            if usable(&t, avoid) {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wake = deadline.min(now + recheck);
            match tokio::time::timeout_at(wake, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                // Nothing new within `recheck`: the avoided backend may be fine after all.
                Err(_) => avoid = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    fn table(
        fallback: bool,
        read: &[usize],
        spill: &[usize],
        leader: Option<usize>,
    ) -> RoutingTable {
        let yaml = format!(
            "listen: 127.0.0.1:0\nbackends: [ {{ name: x, url: \"http://127.0.0.1:1\" }} ]\nleader: {{ path: /l, expect: {{ status: [200] }} }}\nreads: {{ fallback_to_leader: {fallback} }}\n"
        );
        let cfg = Arc::new(crate::config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap());
        let all = backends(&[1, 1, 1, 1]);
        let pick = |ix: &[usize]| ix.iter().map(|&i| all[i].clone()).collect::<Vec<_>>();
        let mut t = RoutingTable::empty(all.clone(), cfg.clone());
        t.ready = true;
        t.followers = pick(read);
        t.picker = Picker::build(cfg.reads.policy, &t.followers);
        t.spill = pick(spill);
        t.spill_picker = Picker::build(cfg.reads.policy, &t.spill);
        if let Some(l) = leader {
            t.leader = LeaderState::Known(LeaderInfo {
                backend: all[l].clone(),
                since: SystemTime::now(),
                term: None,
            });
        }
        t
    }

    /// The picked backend's name, as one of the names the tables here use.
    fn name(b: Option<&Arc<Backend>>) -> Option<&'static str> {
        const NAMES: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];
        b.map(|b| {
            *NAMES
                .iter()
                .find(|n| **n == b.name().as_str())
                .expect("a test backend")
        })
    }

    #[test]
    fn first_reads_come_from_the_read_tier_only() {
        let t = table(true, &[0, 1], &[2], Some(3));
        let ip = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(matches!(name(t.pick_read(ip)), Some("b0" | "b1")));
        }
    }

    #[test]
    fn a_retry_tries_the_tier_then_the_spill_tier_then_the_leader() {
        let ip = "10.0.0.1".parse().unwrap();
        let t = table(true, &[0, 1], &[2], Some(3));
        assert_eq!(name(t.pick_retry(ip, t.followers[0].id)), Some("b1"));
        let t = table(true, &[0], &[2], Some(3));
        assert_eq!(
            name(t.pick_retry(ip, t.followers[0].id)),
            Some("b2"),
            "spill before the leader"
        );
        let t = table(true, &[0], &[], Some(3));
        assert_eq!(name(t.pick_retry(ip, t.followers[0].id)), Some("b3"));
        let t = table(false, &[0], &[], Some(3));
        assert_eq!(name(t.pick_retry(ip, t.followers[0].id)), None);
        // The spill tier is used even without fallback_to_leader: it is a follower.
        let t = table(false, &[0], &[2], Some(3));
        assert_eq!(name(t.pick_retry(ip, t.followers[0].id)), Some("b2"));
        // With no follower, the first read went to the leader; its retry has nowhere to go.
        let t = table(true, &[], &[], Some(3));
        assert_eq!(name(t.pick_read(ip)), Some("b3"));
        assert_eq!(name(t.pick_retry(ip, t.leader().unwrap().id)), None);
    }
}

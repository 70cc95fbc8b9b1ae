//! The table build: from the leader decision and each node's standing,
//! which followers may serve reads, how they split into read tiers, the
//! routing [`Picture`] (a new table is published only when it changes) and
//! the [`RoutingTable`] itself. Pure: no clock, no I/O.
//!
//! - [`eligible`]: a follower serves reads when it is not the leader,
//!   healthy, not drained, not ejected and not lagging.
//! - [`tiers`]: of those, the read tier by priority, then zone
//!   ([`crate::routing::tier`]).
//! - [`ready`]: routing is ready once every node has been probed once
//!   (health, leader, and position when positions are probed); it stays
//!   ready after that.

use std::sync::Arc;
use std::time::SystemTime;

use super::leader::Decision;
use crate::balance::Picker;
use crate::config::Config;
use crate::routing::tier::{self, Rank, Tiers};
use crate::routing::{Backend, LeaderInfo, LeaderState, RoutingTable};

/// What decides whether one node may serve reads.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Standing {
    pub(super) healthy: bool,
    pub(super) drained: bool,
    pub(super) ejected: bool,
    /// More than `reads.max_lag` behind, or the lag is unknown under it.
    pub(super) lagging: bool,
}

/// The nodes (indices) that may serve reads: every one but the leader that
/// is healthy, not drained, not ejected and not lagging.
pub(super) fn eligible(nodes: &[Standing], leader: Option<usize>) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| {
            let n = nodes[i];
            Some(i) != leader && n.healthy && !n.drained && !n.ejected && !n.lagging
        })
        .collect()
}

/// The read tiers of the `eligible` nodes, given every node's rank; the
/// result holds node indices.
pub(super) fn tiers(eligible: &[usize], ranks: &[Rank]) -> Tiers {
    let of_eligible: Vec<Rank> = eligible.iter().map(|&i| ranks[i]).collect();
    let mut t = tier::tiers(&of_eligible);
    for v in [&mut t.read, &mut t.spill, &mut t.rest] {
        for k in v.iter_mut() {
            *k = eligible[*k];
        }
    }
    t
}

/// What the first probes of one node have answered yet.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Probed {
    pub(super) health: bool,
    pub(super) leader: bool,
    pub(super) position: bool,
}

/// Whether routing is ready: it was, or there are nodes and each has
/// answered its first health and leader probe (and position probe, when
/// `positions` are probed).
pub(super) fn ready(was_ready: bool, nodes: &[Probed], positions: bool) -> bool {
    was_ready
        || (!nodes.is_empty()
            && nodes
                .iter()
                .all(|n| n.health && n.leader && (n.position || !positions)))
}

/// The routing-relevant picture, by backend id; a new table is published
/// only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Picture {
    pub(super) leader: Option<u64>,
    pub(super) split: Vec<u64>,
    pub(super) followers: Vec<u64>,
    /// Of `followers`, the read tier, its rank and the spill tier.
    pub(super) read_tier: Vec<u64>,
    pub(super) read_rank: Option<Rank>,
    pub(super) spill: Vec<u64>,
    pub(super) ready: bool,
}

impl Picture {
    /// The picture of `decision`, the eligible `followers` and their
    /// `tiers` (node indices; `ids` maps them to backend ids).
    pub(super) fn of(
        decision: &Decision,
        ids: &[u64],
        followers: &[usize],
        tiers: &Tiers,
        ready: bool,
    ) -> Picture {
        let to_ids = |ix: &[usize]| -> Vec<u64> { ix.iter().map(|&i| ids[i]).collect() };
        Picture {
            leader: leader_index(decision).map(|i| ids[i]),
            split: match decision {
                Decision::SplitBrain(v) => to_ids(v),
                _ => Vec::new(),
            },
            followers: to_ids(followers),
            read_tier: to_ids(&tiers.read),
            read_rank: tiers.rank,
            spill: to_ids(&tiers.spill),
            ready,
        }
    }
}

/// The leader's node index, if one leads.
pub(super) fn leader_index(decision: &Decision) -> Option<usize> {
    match decision {
        Decision::Leader(i) => Some(*i),
        _ => None,
    }
}

/// The table's leader state for `decision` over `backends` (by node index).
pub(super) fn leader_state(
    decision: &Decision,
    backends: &[Arc<Backend>],
    since: SystemTime,
    term: Option<u64>,
) -> LeaderState {
    match decision {
        Decision::Leader(i) => LeaderState::Known(LeaderInfo {
            backend: backends[*i].clone(),
            since,
            term,
        }),
        Decision::None => LeaderState::None,
        Decision::SplitBrain(v) => {
            LeaderState::SplitBrain(v.iter().map(|&i| backends[i].name().to_string()).collect())
        }
    }
}

/// The counters a table carries ([`RoutingTable::epoch`] and the others).
#[derive(Debug, Clone, Copy)]
pub(super) struct Generations {
    pub(super) epoch: u64,
    pub(super) leader_gen: u64,
    pub(super) config_gen: u64,
}

/// The routing table: `backends` by node index, the read tiers `tiers`
/// over them, balanced with `cfg.reads.policy`.
pub(super) fn table(
    gens: Generations,
    ready: bool,
    leader: LeaderState,
    tiers: &Tiers,
    backends: &[Arc<Backend>],
    cfg: &Arc<Config>,
) -> RoutingTable {
    let of =
        |ix: &[usize]| -> Vec<Arc<Backend>> { ix.iter().map(|&i| backends[i].clone()).collect() };
    let followers = of(&tiers.read);
    let spill = of(&tiers.spill);
    RoutingTable {
        epoch: gens.epoch,
        leader_gen: gens.leader_gen,
        config_gen: gens.config_gen,
        ready,
        leader,
        picker: Picker::build(cfg.reads.policy, &followers),
        followers,
        spill_picker: Picker::build(cfg.reads.policy, &spill),
        spill,
        rest: of(&tiers.rest),
        backends: backends.to_vec(),
        cfg: cfg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Standing {
        Standing {
            healthy: true,
            ..Standing::default()
        }
    }

    #[test]
    fn only_healthy_present_current_followers_serve_reads() {
        let nodes = [
            up(),
            up(),
            Standing::default(),
            Standing {
                drained: true,
                ..up()
            },
            Standing {
                ejected: true,
                ..up()
            },
            Standing {
                lagging: true,
                ..up()
            },
            up(),
        ];
        assert_eq!(eligible(&nodes, Some(0)), [1, 6]);
        assert_eq!(eligible(&nodes, None), [0, 1, 6]);
    }

    #[test]
    fn tiers_are_given_as_node_indices() {
        let home = Rank::HOME;
        let remote = Rank::of(0, Some("b"), Some("a"));
        let ranks = [home, remote, home, remote];
        let t = tiers(&[1, 2, 3], &ranks);
        assert_eq!((t.read, t.spill, t.rank), (vec![2], vec![1, 3], Some(home)));
    }

    #[test]
    fn ready_once_every_node_answered_its_first_probes_and_then_for_good() {
        let all = Probed {
            health: true,
            leader: true,
            position: false,
        };
        assert!(!ready(false, &[], false), "no nodes: not ready");
        assert!(ready(false, &[all], false));
        assert!(!ready(false, &[all], true), "positions are probed");
        assert!(!ready(false, &[all, Probed::default()], false));
        assert!(ready(true, &[Probed::default()], true), "stays ready");
    }

    #[test]
    fn the_picture_is_by_backend_id() {
        let ids = [10, 11, 12];
        let t = Tiers {
            rank: Some(Rank::HOME),
            read: vec![1],
            spill: vec![2],
            rest: vec![],
        };
        let p = Picture::of(&Decision::Leader(0), &ids, &[1, 2], &t, true);
        assert_eq!(p.leader, Some(10));
        assert_eq!(
            (p.followers, p.read_tier, p.spill),
            (vec![11, 12], vec![11], vec![12])
        );
        let split = Picture::of(
            &Decision::SplitBrain(vec![0, 2]),
            &ids,
            &[],
            &Tiers::default(),
            false,
        );
        assert_eq!((split.leader, split.split), (None, vec![10, 12]));
    }
}

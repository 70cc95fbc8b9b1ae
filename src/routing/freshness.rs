//! The freshness rule of read-your-writes and `reads.max_lag`, decided
//! here and nowhere else. In plain words:
//!
//! - **A backend's position** is what the periodic position probes read
//!   (`positions.probe`), and it only grows: a failed probe keeps the last
//!   one (a safe lower bound); an answer lower than the last clears it,
//!   since the backend lost what it had ([`kept_position`]).
//! - **A write's position** is the one its answer carries
//!   (`positions.response`); else, for a success with `positions.probe`,
//!   the leader's position probed after the acknowledgement (the larger of
//!   the answering backend's and the current leader's, [`after_ack`]);
//!   else none is known, and the session's reads stay on the leader —
//!   until the next position round has read the leader's position (with
//!   `positions.probe`), or for `reads.after_write_window`
//!   ([`recorded`], [`round_settles`]).
//! - **What a read must see** ([`Need`]): the larger of its session's
//!   write position and the client's `x-leaderproxy-position`; only the
//!   leader while its session has a write of unknown position
//!   ([`Need::after`]). A read outside `positions.scope`, when positions
//!   matter, goes to the leader: no probed position counts the writes it
//!   might have to see ([`read_need`]).
//! - **A follower is fresh enough** for a read when its probed position is
//!   known and at least the read's; the leader always is, since it has
//!   every acknowledged write ([`fresh_enough`]).
//! - **A follower lags** when its probed position is more than
//!   `reads.max_lag` behind this position round's reference: the leader's
//!   answer in the same round (the highest answer of a healthy node while
//!   no leader is known), never a position remembered from an earlier
//!   round; not knowing counts as lagging ([`reference()`], [`lag`]).
//!
//! The table picks by it ([`super::RoutingTable::pick_fresh`]), the
//! monitor measures lag with it, the write path records positions with it.

use tokio::time::Instant;

/// What a read must see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Only backends whose probed position is at least this.
    pub min_position: Option<u64>,
    /// The session wrote, no position is known: only the leader.
    pub leader_only: bool,
}

impl Need {
    /// Only the leader.
    pub(crate) const LEADER: Need = Need {
        min_position: None,
        leader_only: true,
    };

    /// No requirement: any follower.
    pub(crate) fn is_none(&self) -> bool {
        self.min_position.is_none() && !self.leader_only
    }

    /// Whether a fresh follower is looked for: the read needs a position
    /// and not only the leader. (A read that needs nothing goes by policy,
    /// [`super::RoutingTable::pick_read`].)
    pub(crate) fn wants_a_fresh_follower(&self) -> bool {
        self.min_position.is_some() && !self.leader_only
    }

    /// What a read needs after its session's writes: a position at least
    /// the larger of `written` (the session's) and `from_client`; only the
    /// leader while a write of unknown position is `pending` a position
    /// round or `leader_until` has not passed. (The clock is read only for
    /// a session that has such a window.)
    pub(crate) fn after(
        written: Option<u64>,
        from_client: Option<u64>,
        pending: bool,
        leader_until: Option<Instant>,
    ) -> Need {
        Need {
            min_position: written.max(from_client),
            leader_only: pending || leader_until.is_some_and(|t| t > Instant::now()),
        }
    }
}

/// Whether a follower at probed `position` may serve a read that needs
/// `need`: any follower when nothing is needed, none when only the leader
/// will do, else one whose position is known and at least `need`'s.
pub(crate) fn fresh_enough(need: Need, position: Option<u64>) -> bool {
    if need.leader_only {
        return false;
    }
    match need.min_position {
        Some(min) => position.is_some_and(|p| p >= min),
        None => true,
    }
}

/// Where a read's [`Need`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadNeed {
    /// Positions do not matter: any follower.
    Nothing,
    /// Outside `positions.scope` while positions matter: the leader.
    Leader,
    /// Its session's writes and the client's position ([`Need::after`]).
    Session,
}

/// Where a read's need comes from: `read_your_writes` is on (`ryw`),
/// `reads.max_lag` is set (`max_lag`), its path is in `positions.scope`
/// (`in_scope`, asked only when positions matter).
pub(crate) fn read_need(ryw: bool, max_lag: bool, in_scope: impl FnOnce() -> bool) -> ReadNeed {
    if !ryw && !max_lag {
        ReadNeed::Nothing
    } else if !in_scope() {
        ReadNeed::Leader
    } else if ryw {
        ReadNeed::Session
    } else {
        ReadNeed::Nothing
    }
}

/// What a periodic position answer `new` leaves as a backend's position,
/// given the `old` one: `new`, unless it went down (then `None`: the
/// backend lost what it had — a replica resynced, a primary rewound, a
/// member re-created — and the next answer starts it again).
pub(crate) fn kept_position(old: Option<u64>, new: u64) -> Option<u64> {
    match old {
        Some(old) if new < old => None,
        _ => Some(new),
    }
}

/// The position lag is measured from, out of one round's answers (node
/// index, position if it answered): the leader's when a leader is known
/// (`None` if it did not answer: the other answers may all be behind it),
/// else the highest answer of a healthy node. Never a remembered position
/// from an earlier round.
pub(crate) fn reference(
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
pub(crate) fn lag(
    reference: Option<u64>,
    position: Option<u64>,
    max_lag: Option<u64>,
) -> (Option<u64>, bool) {
    match (reference, position) {
        (Some(top), Some(p)) => {
            let l = top.saturating_sub(p);
            (Some(l), max_lag.is_some_and(|m| l > m))
        }
        _ => (None, max_lag.is_some()),
    }
}

/// The position of a write probed after its acknowledgement: the larger
/// of the answering backend's and the current write leader's (a deposed
/// leader that forwarded the write may not have applied it yet); `None`
/// when neither probe answered.
pub(crate) fn after_ack(answered: Option<u64>, leader: Option<u64>) -> Option<u64> {
    answered.max(leader)
}

/// Whether a write's position is probed after its acknowledgement: it
/// succeeded (`ok`), its answer carried none (`answer`), and positions are
/// probed (`probing`).
pub(crate) fn probes_after_ack(answer: Option<u64>, ok: bool, probing: bool) -> bool {
    answer.is_none() && ok && probing
}

/// What a write leaves for its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Applied at this position: returned to the client and remembered.
    At(u64),
    /// No position known, positions probed: reads stay on the leader until
    /// the next position round has read the leader's position.
    UntilRound,
    /// No position known, positions not probed: reads stay on the leader
    /// for `reads.after_write_window`.
    ForWindow,
    /// A failed write: nothing.
    Nothing,
}

/// What a write whose position is `position` (from its answer or probed
/// after it) leaves: `ok` it succeeded, `probing` positions are probed.
pub(crate) fn recorded(position: Option<u64>, ok: bool, probing: bool) -> Recorded {
    match position {
        Some(p) => Recorded::At(p),
        None if ok && probing => Recorded::UntilRound,
        None if ok => Recorded::ForWindow,
        None => Recorded::Nothing,
    }
}

/// Whether a session waiting for position round `after_round` has it:
/// round `done` (or a later one) has finished.
pub(crate) fn round_settles(after_round: Option<u64>, done: u64) -> bool {
    after_round.is_some_and(|r| r <= done)
}

#[cfg(test)]
mod tests;

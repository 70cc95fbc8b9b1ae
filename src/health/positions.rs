//! Positions and lag: what a position probe's answer leaves as a
//! backend's position, what the round's reference is, and how far behind
//! it a follower is.
//!
//! - [`kept_position`]: positions only grow. A failed probe keeps the last
//!   position (a safe lower bound); an answer lower than the last one means
//!   the backend lost what it had, so its position is cleared.
//! - [`reference`]: lag is measured from this round's answer of the
//!   leader (the highest answer of a healthy node while no leader is known),
//!   never from a position remembered from an earlier round.
//! - [`lag`]: a node's lag behind the reference, and whether it is over
//!   `reads.max_lag` (not knowing counts as over).

/// What a position answer `new` leaves as the backend's position, given
/// the `old` one: `new`, unless it went down (then `None`: the backend lost
/// what it had — a replica resynced, a primary rewound, a member
/// re-created — and the next answer starts it again).
pub(super) fn kept_position(old: Option<u64>, new: u64) -> Option<u64> {
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
pub(super) fn reference(
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
pub(super) fn lag(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_that_went_down_is_cleared() {
        assert_eq!(kept_position(None, 5), Some(5));
        assert_eq!(kept_position(Some(5), 5), Some(5));
        assert_eq!(kept_position(Some(5), 7), Some(7));
        assert_eq!(kept_position(Some(5), 4), None);
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
}

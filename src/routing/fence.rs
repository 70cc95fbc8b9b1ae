//! Fencing: when the leader stops getting writes, and what lifts that,
//! decided here and nowhere else. In plain words:
//!
//! - **Evidence fences at once.** The request path fences the leader the
//!   moment a request gives evidence against it: it provably did not reach
//!   the backend because a new connection failed, a new connection broke
//!   before any response byte, or the backend answered that it is not the
//!   leader ([`reaction`]: [`Reaction::Fence`]).
//! - **Doubt asks a probe.** A 5xx answer, a timeout or a pooled
//!   connection that broke (maybe the backend's idle close) only asks the
//!   monitor to re-probe now, and routing goes on ([`Reaction::Reprobe`]);
//!   a long-poll's timeout or 5xx says nothing.
//! - **The rest counts for nothing:** every connection busy, the client's
//!   body failing, a refused HTTP/2 stream.
//! - **A fenced backend gets no writes**, nor a not-leader redirect,
//!   until a leader probe claims leadership again ([`may_write`]).
//! - **Only a probe begun after the fence lifts it:** a claim from a probe
//!   that started before the last fence is stale and dropped
//!   ([`stale_claim`]).
//! - **While no leader is usable** (none known, or it is fenced) leader
//!   probes run every `leader.fast_interval` ([`leaderless`]).
//!
//! The fence itself is the backend's state ([`Backend::is_fenced`]); the
//! request path sets it through the monitor's handle, a leader probe's
//! claim clears it.

use crate::backend::Backend;

/// How a request to the leader failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A new connection failed: the request was not sent.
    NotSent,
    /// The backend answered that it is not the leader.
    NotLeader,
    /// A new connection broke before any response byte.
    Transport,
    /// A 5xx answer.
    ServerError,
    /// No response head within the time limit.
    Timeout,
    /// A pooled connection broke after the request may have gone out.
    Reused,
    /// Every connection to the backend was in use: not sent. (The proxy
    /// does not report it today; the rule is kept and tested.)
    #[allow(dead_code)]
    Busy,
    /// The client's request body failed.
    Client,
    /// The backend refused the HTTP/2 stream: not processed.
    Refused,
}

/// What a failure asks of the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Fence the leader now and re-probe everyone.
    Fence,
    /// Re-probe everyone now; keep routing.
    Reprobe,
    /// Nothing.
    Nothing,
}

/// What a write's failure `f` on the leader asks for; `long_poll`: the
/// route is a long poll (its timeouts and 5xx say nothing).
pub(crate) fn reaction(f: Failure, long_poll: bool) -> Reaction {
    match f {
        Failure::NotSent | Failure::NotLeader | Failure::Transport => Reaction::Fence,
        Failure::ServerError | Failure::Timeout if long_poll => Reaction::Nothing,
        Failure::ServerError | Failure::Timeout | Failure::Reused => Reaction::Reprobe,
        Failure::Busy | Failure::Client | Failure::Refused => Reaction::Nothing,
    }
}

/// Whether a write may be sent to `b` (the leader, or a backend a
/// not-leader redirect names): it is neither fenced nor drained.
#[inline]
pub(crate) fn may_write(b: &Backend) -> bool {
    !b.is_fenced() && !b.is_drained()
}

/// Whether no leader is usable: none is known, or it is fenced.
pub(crate) fn leaderless(leader: Option<&Backend>) -> bool {
    leader.is_none_or(|l| l.is_fenced())
}

/// Whether a leader probe's answer is a claim that must be dropped: it
/// `claims` leadership, but the probe started (when the backend had been
/// fenced `fences_at_start` times) before the request path fenced the
/// backend again (`fences_now`). Its answer may predate what the request
/// path saw, so it neither lifts the fence nor makes a claim; evidence
/// against the backend (denies, refused, failed) always counts.
pub(crate) fn stale_claim(claims: bool, fences_at_start: u64, fences_now: u64) -> bool {
    claims && fences_at_start < fences_now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn evidence_fences_doubt_reprobes_the_rest_counts_for_nothing() {
        use Failure::*;
        for f in [NotSent, NotLeader, Transport] {
            assert_eq!(reaction(f, false), Reaction::Fence, "{f:?}");
            assert_eq!(reaction(f, true), Reaction::Fence, "{f:?} on a long poll");
        }
        for f in [ServerError, Timeout, Reused] {
            assert_eq!(reaction(f, false), Reaction::Reprobe, "{f:?}");
        }
        assert_eq!(reaction(ServerError, true), Reaction::Nothing);
        assert_eq!(reaction(Timeout, true), Reaction::Nothing);
        assert_eq!(reaction(Reused, true), Reaction::Reprobe);
        for f in [Busy, Client, Refused] {
            assert_eq!(reaction(f, false), Reaction::Nothing, "{f:?}");
        }
    }

    #[test]
    fn a_fenced_or_drained_backend_gets_no_writes_and_a_fenced_leader_is_none() {
        let b = backends(&[1]).remove(0);
        assert!(may_write(&b) && !leaderless(Some(&b)));
        assert!(leaderless(None));
        b.fence();
        assert!(!may_write(&b) && leaderless(Some(&b)));
        b.unfence();
        b.set_drained(true);
        assert!(
            !may_write(&b) && !leaderless(Some(&b)),
            "drained still leads"
        );
    }

    #[test]
    fn a_claim_begun_before_a_fence_is_stale() {
        assert!(stale_claim(true, 2, 3));
        assert!(!stale_claim(true, 3, 3), "begun after it");
        assert!(
            !stale_claim(false, 0, 3),
            "evidence counts whenever it began"
        );
    }
}

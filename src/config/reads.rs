//! `reads`: the balancing policy, fallback and retry of reads. Its
//! consistency keys (`consistency`, `session`, `max_lag`,
//! `after_write_window`) are validated in `consistency.rs`.

use std::time::Duration;

use serde::Deserialize;

use super::{consistency, Consistency, Dur, PositionsConfig, SessionConfig, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReads {
    policy: Option<Policy>,
    fallback_to_leader: Option<bool>,
    retry: Option<bool>,
    consistency: Option<Consistency>,
    session: Option<consistency::RawSession>,
    max_lag: Option<u64>,
    after_write_window: Option<Dur>,
}

/// Read-balancing policy for followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Smooth weighted round-robin (weight 2 gets twice the share, interleaved).
    RoundRobin,
    /// Fewest in-flight requests relative to weight; ties rotate.
    LeastConnections,
    /// Weighted rendezvous hash of the client IP: stable when followers come and go.
    IpHash,
}

/// `reads`: where reads go and how fresh they must be.
#[derive(Debug, Clone)]
pub struct ReadsConfig {
    /// Default `round_robin`.
    pub policy: Policy,
    /// Send reads to the leader when no follower is healthy; default true.
    pub fallback_to_leader: bool,
    /// Retry a read once on another follower after a connect failure or a 502/503; default true.
    pub(crate) retry: bool,
    /// Default `eventual`.
    pub(crate) consistency: Consistency,
    /// What identifies a session for read-your-writes; default none.
    pub(crate) session: Option<SessionConfig>,
    /// Followers whose probed position is more than this many positions
    /// behind the leader's in the last position round (or whose lag is
    /// unknown) get no reads; default none (no limit).
    pub(crate) max_lag: Option<u64>,
    /// Without `positions.probe`, a session's reads go to the leader this
    /// long after each of its successful writes; default 2s. (With probed
    /// positions, a write whose position is unknown holds its session on
    /// the leader until a later position round reads the leader's.)
    pub(crate) after_write_window: Duration,
}

impl Validator {
    /// `reads`, with the consistency keys validated against `positions`
    /// (`probe_given`: the file gives `positions.probe`).
    pub(super) fn reads(
        &mut self,
        raw: Option<RawReads>,
        positions: &PositionsConfig,
        probe_given: bool,
    ) -> ReadsConfig {
        let (policy, fallback_to_leader, retry, rc) = match raw {
            None => (None, None, None, consistency::RawReadConsistency::default()),
            Some(r) => (
                r.policy,
                r.fallback_to_leader,
                r.retry,
                consistency::RawReadConsistency {
                    consistency: r.consistency,
                    session: r.session,
                    max_lag: r.max_lag,
                    after_write_window: r.after_write_window,
                },
            ),
        };
        let rc = self.read_consistency(rc, positions, probe_given);
        ReadsConfig {
            policy: policy.unwrap_or(Policy::RoundRobin),
            fallback_to_leader: fallback_to_leader.unwrap_or(true),
            retry: retry.unwrap_or(true),
            consistency: rc.consistency,
            session: rc.session,
            max_lag: rc.max_lag,
            after_write_window: rc.after_write_window,
        }
    }
}

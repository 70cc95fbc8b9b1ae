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
    try_timeout: Option<Dur>,
    hedge: Option<RawHedge>,
    consistency: Option<Consistency>,
    session: Option<consistency::RawSession>,
    max_lag: Option<u64>,
    after_write_window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHedge {
    after: Dur,
    max_percent: Option<u32>,
}

/// `reads.hedge`: a second try of a read before the first has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    /// `reads.hedge.after`: how long the first try may go unanswered before
    /// a second one goes to another backend; the first answer wins.
    pub after: Duration,
    /// `reads.hedge.max_percent`: second tries at most this share of reads
    /// (1–100); default 10.
    pub max_percent: u32,
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

impl Policy {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::LeastConnections => "least_connections",
            Policy::IpHash => "ip_hash",
        }
    }
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
    /// `reads.try_timeout`: how long the first try of a read may wait for
    /// its answer's headers before the read goes to another backend (the
    /// retry rules of `retry`); default none (only
    /// `timeouts.response_headers`). Not on `long_poll` routes.
    pub(crate) try_timeout: Option<Duration>,
    /// `reads.hedge`: default none (one try at a time).
    pub(crate) hedge: Option<Hedge>,
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
    /// `reads.hedge` (`retry`: reads may be sent twice, `reads.retry`).
    fn hedge(&mut self, h: RawHedge, retry: bool) -> Hedge {
        if h.after.0.is_zero() {
            self.bad("reads.hedge.after", "must be more than 0");
        }
        let max_percent = h.max_percent.unwrap_or(10);
        if !(1..=100).contains(&max_percent) {
            self.bad("reads.hedge.max_percent", "must be 1 to 100");
        }
        if !retry {
            self.bad(
                "reads.hedge",
                "a hedged read is sent twice: needs reads.retry",
            );
        }
        Hedge {
            after: h.after.0,
            max_percent,
        }
    }

    /// `reads`, with the consistency keys validated against `positions`
    /// (`probe_given`: the file gives `positions.probe`).
    pub(super) fn reads(
        &mut self,
        raw: Option<RawReads>,
        positions: &PositionsConfig,
        probe_given: bool,
    ) -> ReadsConfig {
        let (policy, fallback_to_leader, retry, try_timeout, hedge, rc) = match raw {
            None => (
                None,
                None,
                None,
                None,
                None,
                consistency::RawReadConsistency::default(),
            ),
            Some(r) => (
                r.policy,
                r.fallback_to_leader,
                r.retry,
                r.try_timeout,
                r.hedge,
                consistency::RawReadConsistency {
                    consistency: r.consistency,
                    session: r.session,
                    max_lag: r.max_lag,
                    after_write_window: r.after_write_window,
                },
            ),
        };
        let rc = self.read_consistency(rc, positions, probe_given);
        let try_timeout = try_timeout.map(|d| d.0);
        if try_timeout.is_some_and(|d| d.is_zero()) {
            self.bad("reads.try_timeout", "must be more than 0");
        }
        if try_timeout.is_some() && retry == Some(false) {
            self.bad(
                "reads.try_timeout",
                "a read whose try timed out goes to another backend: needs reads.retry",
            );
        }
        ReadsConfig {
            policy: policy.unwrap_or(Policy::RoundRobin),
            fallback_to_leader: fallback_to_leader.unwrap_or(true),
            retry: retry.unwrap_or(true),
            try_timeout,
            hedge: hedge.map(|h| self.hedge(h, retry != Some(false))),
            consistency: rc.consistency,
            session: rc.session,
            max_lag: rc.max_lag,
            after_write_window: rc.after_write_window,
        }
    }
}

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
    try_timeout: Option<DurOrWord>,
    try_timeout_auto: Option<RawAuto>,
    hedge: Option<RawHedge>,
    consistency: Option<Consistency>,
    session: Option<consistency::RawSession>,
    max_lag: Option<u64>,
    after_write_window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHedge {
    after: DurOrWord,
    max_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuto {
    multiplier: Option<f64>,
    min: Option<Dur>,
    max: Option<Dur>,
}

/// A duration, or a word in its place (`auto`, `p95`): which words a key
/// takes is checked by the validator, with the key's position.
#[derive(Debug)]
pub(super) enum DurOrWord {
    Dur(Duration),
    Word(String),
}

impl<'de> Deserialize<'de> for DurOrWord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurOrWord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration with a unit, such as 250ms, or a word")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DurOrWord, E> {
                Ok(humantime::parse_duration(s.trim())
                    .map_or_else(|_| DurOrWord::Word(s.trim().to_string()), DurOrWord::Dur))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<DurOrWord, E> {
                Err(E::custom(format!(
                    "duration {n} has no unit: write e.g. {n}ms or {n}s"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<DurOrWord, E> {
                self.visit_u64(n.unsigned_abs())
            }
        }
        d.deserialize_any(V)
    }
}

/// `reads.try_timeout`: how long a read's first try may wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TryTimeout {
    /// A duration.
    Fixed(Duration),
    /// `auto`: from the read tier's recent p99 (`reads.try_timeout_auto`).
    Auto(AutoTimeout),
}

/// `reads.try_timeout_auto`: `try_timeout: auto` is `multiplier` × the
/// read tier's recent p99 (time to an answer's headers, over the last
/// 5–10 s), at least `min` and at most `max`; `max` while the tier has
/// answered fewer than 20 reads in that time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AutoTimeout {
    /// Default 4.
    pub(crate) multiplier: f64,
    /// Default 50ms.
    pub(crate) min: Duration,
    /// Default 1s.
    pub(crate) max: Duration,
}

impl Default for AutoTimeout {
    fn default() -> AutoTimeout {
        AutoTimeout {
            multiplier: 4.0,
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

impl AutoTimeout {
    /// The try timeout for a tier whose recent p99 is `p99` (`None`: unknown).
    pub(crate) fn of(&self, p99: Option<Duration>) -> Duration {
        p99.map_or(self.max, |p| {
            p.mul_f64(self.multiplier).clamp(self.min, self.max)
        })
    }
}

impl TryTimeout {
    /// The try timeout now, given the read tier's recent p99.
    pub(crate) fn now(&self, p99: impl FnOnce() -> Option<Duration>) -> Duration {
        match self {
            TryTimeout::Fixed(d) => *d,
            TryTimeout::Auto(a) => a.of(p99()),
        }
    }
}

/// `reads.hedge.after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeAfter {
    /// A duration.
    Fixed(Duration),
    /// `p95`: the read tier's recent p95 (at least 1 ms); no hedge while
    /// the tier has answered fewer than 20 reads in the last 5–10 s.
    P95,
}

/// `reads.hedge`: a second try of a read before the first has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    /// `reads.hedge.after`: how long the first try may go unanswered before
    /// a second one goes to another backend; the first answer wins.
    pub after: HedgeAfter,
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
    pub(crate) try_timeout: Option<TryTimeout>,
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
        let after = match h.after {
            DurOrWord::Dur(d) => {
                if d.is_zero() {
                    self.bad("reads.hedge.after", "must be more than 0");
                }
                HedgeAfter::Fixed(d)
            }
            DurOrWord::Word(w) if w == "p95" => HedgeAfter::P95,
            DurOrWord::Word(w) => {
                self.bad(
                    "reads.hedge.after",
                    format!("{w:?} is neither a duration (e.g. 50ms) nor p95"),
                );
                HedgeAfter::P95
            }
        };
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
        Hedge { after, max_percent }
    }

    /// `reads.try_timeout` with `reads.try_timeout_auto` (`retry`:
    /// `reads.retry` as given).
    fn try_timeout(
        &mut self,
        raw: Option<DurOrWord>,
        auto: Option<RawAuto>,
        retry: Option<bool>,
    ) -> Option<TryTimeout> {
        let key = "reads.try_timeout";
        let t = match raw? {
            DurOrWord::Dur(d) => {
                if d.is_zero() {
                    self.bad(key, "must be more than 0");
                }
                TryTimeout::Fixed(d)
            }
            DurOrWord::Word(w) if w == "auto" => TryTimeout::Auto(AutoTimeout::default()),
            DurOrWord::Word(w) => {
                self.bad(
                    key,
                    format!("{w:?} is neither a duration (e.g. 100ms) nor auto"),
                );
                TryTimeout::Auto(AutoTimeout::default())
            }
        };
        if retry == Some(false) {
            self.bad(
                key,
                "a read whose try timed out goes to another backend: needs reads.retry",
            );
        }
        match (t, auto) {
            (TryTimeout::Auto(_), Some(a)) => Some(TryTimeout::Auto(self.auto_timeout(a))),
            (TryTimeout::Fixed(_), Some(_)) => {
                self.bad(
                    "reads.try_timeout_auto",
                    "only with reads.try_timeout: auto",
                );
                Some(t)
            }
            (t, None) => Some(t),
        }
    }

    /// `reads.try_timeout_auto`.
    fn auto_timeout(&mut self, a: RawAuto) -> AutoTimeout {
        let d = AutoTimeout::default();
        let out = AutoTimeout {
            multiplier: a.multiplier.unwrap_or(d.multiplier),
            min: a.min.map_or(d.min, |m| m.0),
            max: a.max.map_or(d.max, |m| m.0),
        };
        if !(out.multiplier >= 1.0 && out.multiplier <= 1000.0) {
            self.bad("reads.try_timeout_auto.multiplier", "must be 1 to 1000");
        }
        if out.min.is_zero() {
            self.bad("reads.try_timeout_auto.min", "must be more than 0");
        }
        if out.max < out.min {
            self.bad("reads.try_timeout_auto.max", "must be at least min");
        }
        out
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
                (None, None),
                None,
                consistency::RawReadConsistency::default(),
            ),
            Some(r) => (
                r.policy,
                r.fallback_to_leader,
                r.retry,
                (r.try_timeout, r.try_timeout_auto),
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
        let try_timeout = self.try_timeout(try_timeout.0, try_timeout.1, retry);
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

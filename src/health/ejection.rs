//! Passive ejection: when a follower that failed too often on the request
//! path is taken out of reads, and for how long.
//!
//! - [`allowed`]: never more than `passive.max_ejection_percent` of the
//!   healthy followers are ejected at once (at least one follower counts,
//!   so with 50% one of one is refused and one of two is allowed).
//! - [`duration`]: the first ejection lasts `passive.base_ejection`, each
//!   repeat twice as long, capped at `passive.max_ejection`.
//!
//! - [`holds`]: an ejection for latency ([`Reason::Latency`]) also lasts,
//!   past its back-off, until a health probe answers within the try timeout
//!   the follower missed — at most one more back-off (a backend whose
//!   probes are slower than its reads is not kept out for good); back in
//!   the tier, its first timed-out try ejects it again (its trial:
//!   `crate::backend::latency::ReadLatency::timed_out`).
//!
//! The leader is never ejected (the monitor checks that before asking).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::PassiveConfig;

/// Why passive health ejects a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `passive.consecutive_failures` backend-caused failures in a row.
    Failures,
    /// As many read tries in a row timed out (`reads.try_timeout`), or the
    /// first one after it came back from a latency ejection; `limit`: the
    /// try timeout it missed.
    Latency { limit: Duration },
}

impl Reason {
    /// `failures` or `latency` (logs, `/admin/routing`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Failures => "failures",
            Reason::Latency { .. } => "latency",
        }
    }
}

/// Whether an ejection for `reason` whose back-off is `from`..`until`
/// still holds at `now`; `probe`: the (success, latency) of the last health
/// probe answered since it began.
pub(super) fn holds(
    reason: Reason,
    (from, until): (Instant, Instant),
    now: Instant,
    probe: Option<(bool, Duration)>,
) -> bool {
    if until > now {
        return true;
    }
    match reason {
        Reason::Failures => false,
        Reason::Latency { limit } => {
            let at_most = until + (until - from);
            now < at_most && !probe.is_some_and(|(ok, took)| ok && took < limit)
        }
    }
}

/// Whether one more follower may be ejected: `ejected` are out now, of
/// `followers` healthy non-leader backends.
pub(super) fn allowed(ejected: usize, followers: usize, max_ejection_percent: u32) -> bool {
    (ejected + 1) * 100 <= followers.max(1) * max_ejection_percent as usize
}

/// How long the ejection of a follower ejected `ejections` times before
/// lasts: `base_ejection` × 2^`ejections`, at most `max_ejection`.
pub(super) fn duration(p: &PassiveConfig, ejections: u32) -> Duration {
    let factor = 1u32.checked_shl(ejections.min(16)).unwrap_or(u32::MAX);
    p.base_ejection.saturating_mul(factor).min(p.max_ejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_ejection_percent_of_the_followers_are_out() {
        assert!(!allowed(0, 1, 50), "one of one is 100%");
        assert!(allowed(0, 2, 50));
        assert!(!allowed(1, 2, 50));
        assert!(allowed(0, 0, 100), "no follower counts as one");
        assert!(allowed(2, 3, 100));
    }

    #[test]
    fn a_latency_ejection_lasts_until_a_probe_is_fast() {
        let now = Instant::now();
        let s = Duration::from_secs(1);
        // A 2 s back-off: running, over 1 s ago, over 3 s ago.
        let (running, over, long_over) = (
            (now - s, now + s),
            (now - s * 3, now - s),
            (now - s * 5, now - s * 3),
        );
        let limit = Duration::from_millis(100);
        let lat = Reason::Latency { limit };
        let fast = Some((true, Duration::from_millis(5)));
        let slow = Some((true, Duration::from_millis(150)));
        assert!(holds(Reason::Failures, running, now, fast));
        assert!(!holds(Reason::Failures, over, now, slow));
        assert!(holds(lat, running, now, fast), "the back-off first");
        assert!(!holds(lat, over, now, fast));
        assert!(holds(lat, over, now, slow));
        assert!(holds(lat, over, now, Some((false, Duration::ZERO))));
        assert!(holds(lat, over, now, None));
        assert!(
            !holds(lat, long_over, now, slow),
            "at most one more back-off"
        );
    }

    #[test]
    fn each_repeat_doubles_up_to_max_ejection() {
        let p = PassiveConfig {
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
            consecutive_failures: 5,
            max_ejection_percent: 50,
        };
        let secs: Vec<u64> = (0..5).map(|n| duration(&p, n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 60, 60]);
        assert_eq!(duration(&p, 40), Duration::from_secs(60));
    }
}

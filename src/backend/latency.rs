//! A backend's recent read latency (time from sending a read to its
//! answer's headers), cheap enough for every read: a log-bucketed histogram
//! of atomic counters in two time windows ([`WINDOW`] each), so "recent"
//! is the last 5–10 s. Recording is one atomic add (plus a window turn
//! every 5 s); quantiles are computed by whoever asks ([`Snapshot`]), never
//! on the way of a read. Concurrent records during a window turn may be
//! lost: these are statistics, not accounts.
//!
//! Also the try-timeout streak that latency-aware ejection counts
//! ([`ReadLatency::timed_out`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One window's span; the two most recent windows count.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);

/// Sub-buckets per power of two: a bucket's bounds are within 25 %.
const SUB: usize = 4;
/// Powers of two of microseconds covered: up to 2^28 µs (about 4.5 min).
const OCTAVES: usize = 28;
const BUCKETS: usize = OCTAVES * SUB;

/// The bucket of `us` microseconds (values under 4 µs count as 4 µs).
fn bucket(us: u64) -> usize {
    let us = us.max(SUB as u64);
    let octave = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (octave - 2)) & (SUB as u64 - 1)) as usize;
    (octave * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in microseconds.
fn upper_us(i: usize) -> u64 {
    let (octave, sub) = (i / SUB, i % SUB);
    ((SUB + sub + 1) as u64) << (octave.max(2) - 2)
}

struct Window {
    /// Which window (`elapsed / WINDOW`) the counts belong to.
    number: AtomicU64,
    counts: [AtomicU32; BUCKETS],
}

impl Window {
    fn new() -> Window {
        Window {
            number: AtomicU64::new(u64::MAX),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// One backend's recent read latency and try-timeout streak.
pub(crate) struct ReadLatency {
    base: Instant,
    windows: [Window; 2],
    /// Tries timed out in a row (`reads.try_timeout`).
    timeouts: AtomicU32,
    /// Back from a latency ejection: its next timed-out try ejects it again.
    on_trial: AtomicBool,
}

impl Default for ReadLatency {
    fn default() -> ReadLatency {
        ReadLatency {
            base: Instant::now(),
            windows: [Window::new(), Window::new()],
            timeouts: AtomicU32::new(0),
            on_trial: AtomicBool::new(false),
        }
    }
}

impl ReadLatency {
    fn window_number(&self, now: Instant) -> u64 {
        // Whole seconds: no 128-bit division on the read path.
        now.saturating_duration_since(self.base).as_secs() / WINDOW.as_secs()
    }

    /// A read try answered (headers received) `took` after it was sent, at
    /// `now`: counted, and the timeout streak (and a trial) ends.
    #[inline]
    pub(crate) fn answered(&self, took: Duration, now: Instant) {
        let n = self.window_number(now);
        let w = &self.windows[(n % 2) as usize];
        let had = w.number.load(Ordering::Relaxed);
        if had != n
            && w.number
                .compare_exchange(had, n, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for c in &w.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
        w.counts[bucket(took.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
        if self.timeouts.load(Ordering::Relaxed) != 0 {
            self.timeouts.store(0, Ordering::Relaxed);
        }
        if self.on_trial.load(Ordering::Relaxed) {
            self.on_trial.store(false, Ordering::Relaxed);
        }
    }

    /// A read try timed out: whether that makes it slow enough to eject,
    /// `in_a_row` timeouts in a row (0: never), or the first timeout of
    /// its trial after a latency ejection.
    pub(crate) fn timed_out(&self, in_a_row: u32) -> bool {
        let streak = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        in_a_row > 0 && (streak >= in_a_row || self.on_trial.load(Ordering::Relaxed))
    }

    /// Ejected (or refused an ejection): the streak starts over; `trial`:
    /// ejected for latency, so its next timed-out try ejects it again.
    pub(crate) fn restart(&self, trial: bool) {
        self.timeouts.store(0, Ordering::Relaxed);
        self.on_trial.store(trial, Ordering::Relaxed);
    }

    /// The counts of the two most recent windows at `now`.
    pub(crate) fn snapshot(&self, now: Instant) -> Snapshot {
        let n = self.window_number(now);
        let mut s = Snapshot::default();
        for w in &self.windows {
            let number = w.number.load(Ordering::Relaxed);
            if number == n || number.wrapping_add(1) == n {
                for (to, c) in s.counts.iter_mut().zip(&w.counts) {
                    *to += u64::from(c.load(Ordering::Relaxed));
                }
            }
        }
        s
    }
}

/// Latency counts, merged from backends' recent windows.
#[derive(Clone)]
pub(crate) struct Snapshot {
    counts: [u64; BUCKETS],
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            counts: [0; BUCKETS],
        }
    }
}

impl Snapshot {
    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: &Snapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Answers counted.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0–1) as its bucket's upper bound (at most 25 %
    /// over); `None` with fewer than `min_count` answers.
    pub(crate) fn quantile(&self, q: f64, min_count: u64) -> Option<Duration> {
        let total = self.count();
        if total == 0 || total < min_count {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(upper_us(i)));
            }
        }
        None
    }
}

/// The read tier's recent p95 and p99, recomputed from the followers'
/// trackers at most every [`TIER_REFRESH`] by the read that finds them
/// stale (the others use the cached values: no lock, no wait).
pub(crate) struct TierLatency {
    base: Instant,
    /// Milliseconds since `base` of the last computation + 1 (0: never).
    at_ms: AtomicU64,
    /// Microseconds; 0: unknown (too few answers).
    p95_us: AtomicU64,
    p99_us: AtomicU64,
}

/// How often the tier's quantiles are recomputed.
pub(crate) const TIER_REFRESH: Duration = Duration::from_millis(200);
/// Answers the tier needs in its recent windows before its quantiles count.
pub(crate) const TIER_MIN_ANSWERS: u64 = 20;

impl Default for TierLatency {
    fn default() -> TierLatency {
        TierLatency {
            base: Instant::now(),
            at_ms: AtomicU64::new(0),
            p95_us: AtomicU64::new(0),
            p99_us: AtomicU64::new(0),
        }
    }
}

fn known(us: u64) -> Option<Duration> {
    (us > 0).then(|| Duration::from_micros(us))
}

impl TierLatency {
    /// The tier's recent (p95, p99) at `now`; `tier` gives the snapshots
    /// of its backends when a recomputation is due.
    pub(crate) fn get<I>(&self, now: Instant, tier: impl FnOnce() -> I) -> Quantiles
    where
        I: IntoIterator<Item = Snapshot>,
    {
        let ms = now.saturating_duration_since(self.base).as_millis() as u64 + 1;
        let at = self.at_ms.load(Ordering::Relaxed);
        let due = at == 0 || ms.saturating_sub(at) >= TIER_REFRESH.as_millis() as u64;
        if due
            && self
                .at_ms
                .compare_exchange(at, ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut all = Snapshot::default();
            for s in tier() {
                all.add(&s);
            }
            let us = |q| {
                all.quantile(q, TIER_MIN_ANSWERS)
                    .map_or(0, |d| d.as_micros() as u64)
            };
            self.p95_us.store(us(0.95), Ordering::Relaxed);
            self.p99_us.store(us(0.99), Ordering::Relaxed);
        }
        Quantiles {
            p95: known(self.p95_us.load(Ordering::Relaxed)),
            p99: known(self.p99_us.load(Ordering::Relaxed)),
        }
    }
}

impl TierLatency {
    /// [`Self::get`] for the backends of `tier`.
    pub(crate) fn of_tier(
        &self,
        now: Instant,
        tier: &[std::sync::Arc<super::Backend>],
    ) -> Quantiles {
        self.get(now, || tier.iter().map(move |b| b.latency.snapshot(now)))
    }
}

/// A tier's recent quantiles; `None`: too few answers to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantiles {
    pub(crate) p95: Option<Duration>,
    pub(crate) p99: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_a_value_within_a_quarter() {
        for us in [1u64, 4, 5, 7, 8, 100, 999, 1_000, 12_345, 3_000_000] {
            let i = bucket(us);
            let hi = upper_us(i);
            assert!(hi > us.max(4) - 1, "{us} µs: bucket {i} ends at {hi}");
            assert!(hi as f64 <= us.max(4) as f64 * 1.25 + 1.0, "{us}: {hi}");
            if i > 2 * SUB {
                assert!(upper_us(i - 1) <= us.max(4), "{us}: below bucket {i}");
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_recent_answers() {
        let l = ReadLatency::default();
        let now = Instant::now();
        for _ in 0..98 {
            l.answered(Duration::from_millis(2), now);
        }
        l.answered(Duration::from_millis(40), now);
        l.answered(Duration::from_millis(40), now);
        let s = l.snapshot(now);
        assert_eq!(s.count(), 100);
        let p50 = s.quantile(0.5, 1).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 <= Duration::from_micros(2_500));
        let p99 = s.quantile(0.99, 1).unwrap();
        assert!(p99 >= Duration::from_millis(40) && p99 <= Duration::from_millis(50));
        assert_eq!(s.quantile(0.99, 101), None, "too few answers");
    }

    #[test]
    fn answers_older_than_two_windows_are_forgotten() {
        let l = ReadLatency::default();
        let t0 = l.base;
        l.answered(Duration::from_millis(1), t0);
        assert_eq!(
            l.snapshot(t0 + WINDOW).count(),
            1,
            "the previous window counts"
        );
        assert_eq!(l.snapshot(t0 + WINDOW * 2).count(), 0);
        l.answered(Duration::from_millis(1), t0 + WINDOW * 2);
        assert_eq!(
            l.snapshot(t0 + WINDOW * 2).count(),
            1,
            "the slot was cleared"
        );
    }

    #[test]
    fn n_timeouts_in_a_row_or_one_on_trial_eject() {
        let l = ReadLatency::default();
        let now = Instant::now();
        assert!(!l.timed_out(3));
        assert!(!l.timed_out(3));
        l.answered(Duration::from_millis(1), now);
        assert!(!l.timed_out(3), "an answer ends the streak");
        assert!(!l.timed_out(3));
        assert!(l.timed_out(3));
        l.restart(true);
        assert!(l.timed_out(3), "the trial's first timeout");
        l.restart(true);
        l.answered(Duration::from_millis(1), now);
        assert!(!l.timed_out(3), "an answer ends the trial");
        assert!(
            !l.timed_out(0) && !l.timed_out(0) && !l.timed_out(0),
            "0 = off"
        );
    }

    #[test]
    fn the_tier_recomputes_at_most_every_refresh() {
        let t = TierLatency::default();
        let l = ReadLatency::default();
        let now = t.base;
        let none = t.get(now, || [l.snapshot(now)]);
        assert_eq!(none.p99, None, "no answers yet");
        for _ in 0..TIER_MIN_ANSWERS {
            l.answered(Duration::from_millis(8), now);
        }
        let cached = t.get(now + Duration::from_millis(10), || -> Vec<Snapshot> {
            panic!("recomputed before TIER_REFRESH")
        });
        assert_eq!(cached.p99, None);
        let later = now + TIER_REFRESH;
        let q = t.get(later, || [l.snapshot(later)]);
        assert!(q.p99.unwrap() >= Duration::from_millis(8));
        assert!(q.p95.unwrap() >= Duration::from_millis(8));
    }
}

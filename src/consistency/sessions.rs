//! The bounded session map: per session, the newest position it wrote (or,
//! when none was known, until when its reads stay on the leader).
//!
//! Sessions are keyed by a keyed 64-bit hash of their identifier (the
//! random key is chosen at start, so clients cannot aim collisions). Two
//! sessions that share a hash share one entry, which only makes their
//! reads stricter. The map is an LRU of `capacity` entries, split into 16
//! locked shards once it holds 1024 or more (each shard is an exact LRU of
//! its share); a lock is held for one lookup or update, never across an
//! await. Evictions are counted.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use arc_swap::ArcSwap;
use hashlink::LruCache;
use tokio::time::Instant;

use crate::routing::freshness::round_settles;

/// Shards of a map of at least [`SHARDED_FROM`] entries.
const SHARDS: usize = 16;
const SHARDED_FROM: usize = 1024;

/// What one session last wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The highest position any of its writes was known at.
    pub(crate) position: Option<u64>,
    /// A write without a known position: reads go to the leader until then.
    pub(crate) leader_until: Option<Instant>,
    /// A write without a known position while positions are probed: reads
    /// go to the leader until position round number this (the first that
    /// started after the write) has read the leader's position, which then
    /// becomes the session's position ([`Sessions::resolve`]).
    pub(crate) after_round: Option<u64>,
}

/// What a write left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Applied at this position (or earlier).
    At(u64),
    /// No position known: the session's reads stay on the leader until then.
    Unknown {
        /// When the session's reads may leave the leader.
        until: Instant,
    },
    /// No position known, positions probed: the session's reads stay on
    /// the leader until position round `round` has read the leader's.
    Pending {
        /// The first position round that started after the write.
        round: u64,
    },
}

type Shards = Vec<Mutex<LruCache<u64, Entry>>>;

/// What each session last wrote, bounded: the least recently used session
/// is forgotten past `capacity` (counted in `evictions`, size in `size`).
pub struct Sessions {
    /// Swapped whole when the capacity changes (reload).
    shards: ArcSwap<Shards>,
    capacity: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
    evictions: prometheus::IntCounter,
    size: prometheus::IntGauge,
}

fn build(capacity: usize) -> Shards {
    let n = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
    (0..n)
        .map(|_| Mutex::new(LruCache::new(capacity.div_ceil(n))))
        .collect()
}

impl Sessions {
    /// Room for `capacity` sessions (sharded from a size on, so that busy
    /// workers do not contend on one lock).
    pub fn new(
        capacity: usize,
        evictions: prometheus::IntCounter,
        size: prometheus::IntGauge,
    ) -> Sessions {
        Sessions {
            shards: ArcSwap::from_pointee(build(capacity)),
            capacity: AtomicUsize::new(capacity),
            hasher: Default::default(),
            evictions,
            size,
        }
    }

    /// The map's key for a session identifier.
    #[inline]
    pub fn id(&self, value: &[u8]) -> u64 {
        self.hasher.hash_one(value)
    }

    fn with_shard<R>(&self, id: u64, f: impl FnOnce(&mut LruCache<u64, Entry>) -> R) -> R {
        let shards = self.shards.load();
        let shard = &shards[(id as usize) % shards.len()];
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    /// The session's entry (counts as a use for the LRU order).
    pub fn get(&self, id: u64) -> Option<Entry> {
        self.with_shard(id, |s| s.get(&id).copied())
    }

    /// Records a write of session `id`.
    pub fn wrote(&self, id: u64, w: Written) {
        let (new, evicted) = self.with_shard(id, |s| {
            let old = s.get(&id).copied();
            let mut e = old.unwrap_or_default();
            match w {
                Written::At(p) => e.position = e.position.max(Some(p)),
                Written::Unknown { until } => e.leader_until = e.leader_until.max(Some(until)),
                Written::Pending { round } => e.after_round = e.after_round.max(Some(round)),
            }
            let evicts = old.is_none() && s.len() >= s.capacity();
            s.insert(id, e);
            (old.is_none(), evicts)
        });
        // A new session either takes a free slot or replaces the LRU one;
        // a known session's write changes neither count.
        if evicted {
            self.evictions.inc();
        } else if new {
            self.size.inc();
        }
    }

    /// Position round `done` (or a later one) read the leader at
    /// `position`: a session waiting for round `done` or an earlier one
    /// takes it as its position and is no longer held on the leader.
    /// Returns the entry after the change.
    pub(crate) fn resolve(&self, id: u64, done: u64, position: u64) -> Option<Entry> {
        self.with_shard(id, |s| {
            let e = s.get_mut(&id)?;
            if round_settles(e.after_round, done) {
                e.after_round = None;
                e.position = e.position.max(Some(position));
            }
            Some(*e)
        })
    }

    /// Applies a reloaded `reads.session.capacity`; the remembered sessions
    /// are forgotten when it changes (their reads fall back to the
    /// followers' positions at once, or to the leader for a client that
    /// sends `x-leaderproxy-position`).
    pub(crate) fn set_capacity(&self, capacity: usize) {
        if self.capacity.load(Ordering::Relaxed) == capacity {
            return;
        }
        if self.capacity.swap(capacity, Ordering::Relaxed) != capacity {
            self.shards.store(std::sync::Arc::new(build(capacity)));
            self.size.set(0);
        }
    }

    /// How many sessions fit (`consistency.sessions`).
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_write_resolves_only_with_its_round_or_a_later_one() {
        let s = sessions(10);
        let id = s.id(b"a");
        s.wrote(id, Written::At(3));
        s.wrote(id, Written::Pending { round: 7 });
        s.wrote(id, Written::Pending { round: 5 });
        let e = s.resolve(id, 6, 40).unwrap();
        assert_eq!((e.after_round, e.position), (Some(7), Some(3)));
        let e = s.resolve(id, 7, 41).unwrap();
        assert_eq!((e.after_round, e.position), (None, Some(41)));
        assert_eq!(s.resolve(s.id(b"b"), 7, 1), None);
    }

    fn sessions(cap: usize) -> Sessions {
        Sessions::new(
            cap,
            prometheus::IntCounter::new("e", "e").unwrap(),
            prometheus::IntGauge::new("s", "s").unwrap(),
        )
    }

    #[test]
    fn positions_only_grow_and_windows_only_lengthen() {
        let s = sessions(10);
        let id = s.id(b"a");
        s.wrote(id, Written::At(5));
        s.wrote(id, Written::At(3));
        let now = Instant::now();
        s.wrote(id, Written::Unknown { until: now });
        assert_eq!(
            s.get(id),
            Some(Entry {
                position: Some(5),
                leader_until: Some(now),
                after_round: None,
            })
        );
        assert_eq!(s.get(s.id(b"b")), None);
        assert_eq!(s.size.get(), 1, "one session, however many writes");
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_and_counted() {
        let s = sessions(3);
        let ids: Vec<u64> = (0..4u8).map(|i| s.id(&[i])).collect();
        for &id in &ids[..3] {
            s.wrote(id, Written::At(1));
        }
        // Touch the oldest so the second becomes the least recently used.
        assert!(s.get(ids[0]).is_some());
        s.wrote(ids[3], Written::At(2));
        assert_eq!(s.evictions.get(), 1);
        assert!(s.get(ids[1]).is_none(), "the LRU entry went");
        for i in [0, 2, 3] {
            assert!(s.get(ids[i]).is_some());
        }
        assert_eq!(s.size.get(), 3);
    }

    #[test]
    fn a_large_map_is_sharded_and_bounded() {
        let s = sessions(2048);
        for i in 0..10_000u32 {
            s.wrote(s.id(&i.to_le_bytes()), Written::At(i as u64));
        }
        let held: usize = s
            .shards
            .load()
            .iter()
            .map(|m| m.lock().unwrap().len())
            .sum();
        assert!(held <= 2048, "{held}");
        assert_eq!(s.evictions.get() as usize + held, 10_000);
        s.set_capacity(10);
        assert!(s.get(s.id(&9999u32.to_le_bytes())).is_none());
    }
}

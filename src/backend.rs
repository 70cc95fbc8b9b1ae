//! A backend: its identity (fixed for its life) and the live state that
//! survives routing-table rebuilds and config reloads (in-flight count,
//! drain and fence flags, passive-health streak, metric handles, pool).
//!
//! Identity fields are public and immutable (a `Backend` is only ever
//! shared behind an `Arc`); live state is private and changes only through
//! the methods here, so there is one place that says what each change means.
//! In-flight accounting is a drop guard ([`InFlight`]), never an inc/dec pair.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::BackendConfig;
use crate::metrics::{BackendMetrics, Metrics};
use crate::proxy::pool::Pool;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Backend {
    /// Unique for the life of the process.
    pub id: u64,
    pub name: String,
    pub url: String,
    /// `host:port` to connect to.
    pub authority: http::uri::Authority,
    /// Speaks h2c: HTTP/2 requests go upstream over HTTP/2.
    pub h2c: bool,
    /// Stable hash of the name, for rendezvous hashing.
    pub name_hash: u64,
    pub(crate) metrics: BackendMetrics,
    pub(crate) pool: Pool,
    /// Relative share of reads (a reload may change it).
    weight: AtomicU32,
    /// Requests sent and not yet finished (least-connections reads it).
    in_flight: AtomicUsize,
    /// Set by the admin API: no new requests.
    drained: AtomicBool,
    /// Set by the request path the moment a write to this backend fails
    /// with transport evidence (connect refused, reset before any response
    /// byte) or a not-leader answer; no further writes go to it until a
    /// leader probe claims leadership again (the monitor clears it).
    fenced: AtomicBool,
    /// Consecutive backend-caused failures (passive health).
    failures: AtomicU32,
}

/// Counts one request in flight on a backend until dropped.
pub struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.backend.metrics.in_flight.dec();
    }
}

impl Backend {
    pub fn new(cfg: &BackendConfig, metrics: &Metrics, workers: usize) -> Backend {
        Backend {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            authority: cfg.authority.clone(),
            h2c: cfg.h2c,
            name_hash: crate::balance::hash_bytes(cfg.name.as_bytes()),
            metrics: metrics.backend(&cfg.name),
            pool: Pool::new(workers),
            weight: AtomicU32::new(cfg.weight),
            in_flight: AtomicUsize::new(0),
            drained: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            failures: AtomicU32::new(0),
        }
    }

    /// Whether a reload may keep this backend (same name, address).
    pub fn same_as(&self, cfg: &BackendConfig) -> bool {
        self.name == cfg.name && self.authority == cfg.authority && self.h2c == cfg.h2c
    }

    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Relaxed);
    }

    /// Starts one request: counted in flight until the guard is dropped.
    #[inline]
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        InFlight {
            backend: self.clone(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub(crate) fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// Fenced for writes: see the field's doc.
    #[inline]
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Fences the backend for writes; true if it was not fenced before.
    pub(crate) fn fence(&self) -> bool {
        !self.fenced.swap(true, Ordering::Relaxed)
    }

    /// A leader probe claimed leadership again.
    pub(crate) fn unfence(&self) {
        if self.is_fenced() {
            self.fenced.store(false, Ordering::Relaxed);
        }
    }

    /// Counts a backend-caused failure; true when `threshold` consecutive
    /// ones are reached (`0` = passive health off, never true).
    pub(crate) fn record_failure(&self, threshold: u32) -> bool {
        threshold > 0 && self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= threshold
    }

    /// A success ends the failure streak.
    #[inline]
    pub(crate) fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("weight", &self.weight)
            .finish()
    }
}

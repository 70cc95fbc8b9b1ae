//! A backend and the live state that survives routing-table rebuilds and
//! config reloads: in-flight count, passive-health streak, metric handles
//! and the upstream connection pool.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

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
    /// Relative share of reads (a reload may change it).
    pub weight: AtomicU32,
    /// Speaks h2c: HTTP/2 requests go upstream over HTTP/2.
    pub h2c: bool,
    /// Stable hash of the name, for rendezvous hashing.
    pub name_hash: u64,
    /// Requests sent and not yet finished (least-connections reads it).
    pub in_flight: AtomicUsize,
    /// Set by the admin API: no new requests.
    pub drained: AtomicBool,
    /// Set by the request path the moment a write to this backend fails in a
    /// way that says it may be gone; no further writes go to it until a
    /// leader probe succeeds again (the monitor clears it).
    pub suspect: AtomicBool,
    /// Consecutive connect failures or 5xx answers (passive health).
    pub failures: AtomicU32,
    pub metrics: BackendMetrics,
    pub pool: Pool,
}

impl Backend {
    pub fn new(cfg: &BackendConfig, metrics: &Metrics, workers: usize) -> Backend {
        Backend {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            authority: cfg.authority.clone(),
            weight: AtomicU32::new(cfg.weight),
            h2c: cfg.h2c,
            name_hash: crate::balance::hash_bytes(cfg.name.as_bytes()),
            in_flight: AtomicUsize::new(0),
            drained: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            metrics: metrics.backend(&cfg.name),
            pool: Pool::new(workers),
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

    #[inline]
    pub fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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

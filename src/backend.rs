//! A backend: its identity (fixed for its life) and the live state that
//! survives routing-table rebuilds and config reloads (in-flight count,
//! drain and fence flags, passive-health streak, metric handles, pool).
//!
//! A backend's identity is its address: scheme (`http`/`https`, h2c) and
//! authority (`Backend::same_as`). Its name is a label that a reload or
//! discovery may change in place (`Backend::rename`); the metric label
//! sets follow the name. Identity fields are public and immutable (a
//! `Backend` is only ever shared behind an `Arc`); live state is private
//! and changes only through the methods here, so there is one place that
//! says what each change means.
//! In-flight accounting is a drop guard ([`InFlight`]), never an inc/dec pair.

use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use crate::config::{BackendConfig, BackendTls};
use crate::metrics::{BackendMetrics, Metrics, TlsReason};
use crate::upstream::connect::Peer;
use crate::upstream::pool::Pool;

pub(crate) mod latency;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One backend: its identity (id, name, address) and its live state
/// (health, role, position, in-flight count, fence and drain flags), shared
/// by the monitor and the request path.
pub struct Backend {
    /// Unique for the life of the process.
    pub id: u64,
    /// The label shown in logs, headers, the admin API and metrics; a
    /// reload or discovery may change it ([`Self::rename`]).
    name: ArcSwap<String>,
    pub(crate) url: String,
    /// `host:port` to connect to.
    pub(crate) authority: http::uri::Authority,
    /// Speaks h2c: HTTP/2 requests go upstream over HTTP/2.
    pub(crate) h2c: bool,
    /// `backends[].tcp`: where TCP listeners connect (`host:port`); `None`:
    /// this backend takes no TCP connections.
    pub(crate) tcp: Option<http::uri::Authority>,
    /// Stable hash of the name the backend was created with, for
    /// rendezvous hashing (fixed for its life: a rename moves no client).
    pub(crate) name_hash: u64,
    /// Metric handles labelled with the current name.
    metrics: ArcSwap<BackendMetrics>,
    pub(crate) pool: Pool,
    /// Relative share of reads (a reload may change it).
    weight: AtomicU32,
    /// Zone and priority (a reload may change them); read by the monitor
    /// when it builds the read tier, and by the admin API.
    placement: ArcSwap<Placement>,
    /// Requests sent and not yet finished (least-connections reads it).
    in_flight: AtomicUsize,
    /// Recent read latency and the try-timeout streak (`reads.try_timeout`).
    pub(crate) latency: latency::ReadLatency,
    /// Set by the admin API: no new requests.
    drained: AtomicBool,
    /// Set by the request path the moment a write to this backend fails
    /// with transport evidence (connect refused, reset before any response
    /// byte) or a not-leader answer; no further writes go to it until a
    /// leader probe claims leadership again (the monitor clears it).
    fenced: AtomicBool,
    /// How many times the request path fenced this backend: a leader probe
    /// records it when it starts, and its claim cannot lift a fence set
    /// after that ([`crate::routing::fence::stale_claim`]).
    fences: AtomicU64,
    /// Consecutive backend-caused failures (passive health).
    failures: AtomicU32,
    /// `https://`: the TLS settings and client config in force; a reload
    /// or a rotated file swaps it, new connections use the new one.
    tls: Option<ArcSwap<BackendTls>>,
    /// The last handshake's outcome: 0 = fine (or none yet), else 1 + the
    /// [`TlsReason`] index; a change is logged once.
    tls_state: AtomicU8,
    /// The backend answered ALPN with `http/1.1` on a connection that
    /// offered `h2`: HTTP/2 requests go to it as HTTP/1.1 (until a reload
    /// or rotation swaps the TLS config).
    no_h2: AtomicBool,
    /// `notAfter` of the certificate the backend presented at the last
    /// successful handshake (Unix seconds); `i64::MIN` = none yet.
    peer_not_after: AtomicI64,
    /// The last probed replication position plus one; 0 = unknown (never
    /// probed, or the last position probe failed).
    position: AtomicU64,
    /// Replicas attached to it as a Redis primary (its last native
    /// probe's `ROLE`) plus one; 0 = unknown.
    replicas: AtomicU32,
    /// Coalesced position probes after acknowledged writes: their state,
    /// run by `consistency::after_ack` (only the leader's is used).
    pub(crate) after_ack: Mutex<AfterAckBatch>,
}

/// The state of a backend's position probes after acknowledged writes,
/// batched like a group commit (the logic is `consistency::after_ack`).
#[derive(Default)]
pub(crate) struct AfterAckBatch {
    /// A probe is running.
    pub(crate) running: bool,
    /// The writes waiting for the next probe to start: the value is `None`
    /// until that probe finished, then its result.
    pub(crate) next: Option<watch::Sender<Option<Option<u64>>>>,
}

/// Where a backend stands for reads: `backends[].zone` and `.priority`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Placement {
    /// Failure domain; reads prefer followers in `local_zone`.
    pub(crate) zone: Option<String>,
    /// 0 = primary site; higher = standby.
    pub(crate) priority: u32,
}

impl Placement {
    fn of(cfg: &BackendConfig) -> Placement {
        Placement {
            zone: cfg.zone.clone(),
            priority: cfg.priority,
        }
    }
}

/// Counts one request in flight on a backend until dropped.
pub struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.backend.metrics().in_flight.dec();
    }
}

impl Backend {
    /// A plain `http://` backend named `b` at `addr`, one worker (tests).
    #[cfg(test)]
    pub(crate) fn for_test(addr: &str) -> Backend {
        let cfg = crate::config::BackendConfig::plain("b", addr.parse().unwrap());
        Backend::new(&cfg, &crate::metrics::Metrics::new(), 1, 8)
    }

    /// A backend with `workers` pool slots and at most `max_connections`
    /// upstream connections open at once
    /// (`crate::config::Config::max_upstream_connections`).
    pub fn new(
        cfg: &BackendConfig,
        metrics: &Metrics,
        workers: usize,
        max_connections: usize,
    ) -> Backend {
        Backend {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: ArcSwap::from_pointee(cfg.name.clone()),
            url: cfg.url.clone(),
            authority: cfg.authority.clone(),
            h2c: cfg.h2c,
            tcp: cfg.tcp.clone(),
            name_hash: hash_bytes(cfg.name.as_bytes()),
            metrics: ArcSwap::from_pointee(metrics.backend(&cfg.name)),
            pool: Pool::new(workers, max_connections),
            weight: AtomicU32::new(cfg.weight),
            in_flight: AtomicUsize::new(0),
            latency: Default::default(),
            drained: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            fences: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            tls: cfg.tls.clone().map(ArcSwap::new),
            tls_state: AtomicU8::new(0),
            no_h2: AtomicBool::new(false),
            peer_not_after: AtomicI64::new(i64::MIN),
            position: AtomicU64::new(0),
            replicas: AtomicU32::new(0),
            after_ack: Default::default(),
            placement: ArcSwap::from_pointee(Placement::of(cfg)),
        }
    }

    /// The name in force (a label: see `Self::rename`).
    #[inline]
    pub fn name(&self) -> arc_swap::Guard<Arc<String>> {
        self.name.load()
    }

    /// The metric handles, labelled with the name in force.
    #[inline]
    pub(crate) fn metrics(&self) -> arc_swap::Guard<Arc<BackendMetrics>> {
        self.metrics.load()
    }

    /// Takes the name of a reloaded or rediscovered config for the same
    /// address: the backend keeps its health, claim, pool and in-flight
    /// requests; its metric label sets move to the new name (counters start
    /// again from 0 there, gauges carry over). Returns the old name when it
    /// changed; the caller forgets the old label sets once no backend uses
    /// them.
    pub(crate) fn rename(&self, name: &str, metrics: &Metrics) -> Option<Arc<String>> {
        if self.name.load().as_str() == name {
            return None;
        }
        let new = metrics.backend(name);
        let old = self.metrics.load();
        new.in_flight.set(self.in_flight() as i64);
        for (n, o) in [
            (&new.healthy, &old.healthy),
            (&new.is_leader, &old.is_leader),
            (&new.ejected, &old.ejected),
            (&new.position, &old.position),
            (&new.lag, &old.lag),
        ] {
            n.set(o.get());
        }
        self.metrics.store(Arc::new(new));
        Some(self.name.swap(Arc::new(name.to_string())))
    }

    /// The TLS settings in force (`None`: plain `http://`).
    pub(crate) fn tls(&self) -> Option<arc_swap::Guard<Arc<BackendTls>>> {
        self.tls.as_ref().map(|t| t.load())
    }

    /// Swaps in the TLS of a reloaded config (same backend, kept by the
    /// reload): new connections use it; pooled ones finish their life.
    pub(crate) fn set_tls(&self, tls: Option<&Arc<BackendTls>>) {
        if let (Some(cur), Some(new)) = (&self.tls, tls) {
            cur.store(new.clone());
            self.no_h2.store(false, Ordering::Relaxed);
        }
    }

    /// Requests that arrived over HTTP/2 go upstream over HTTP/2: the
    /// backend speaks h2c, or it is `https://` and has not declined `h2`.
    #[inline]
    pub(crate) fn upstream_h2(&self) -> bool {
        self.h2c || (self.tls.is_some() && !self.no_h2.load(Ordering::Relaxed))
    }

    /// The backend chose `http/1.1` when offered `h2`.
    fn declined_h2(&self) {
        if !self.no_h2.swap(true, Ordering::Relaxed) {
            tracing::info!(backend = %self.name(), "backend chose http/1.1 by ALPN; HTTP/2 requests go to it as HTTP/1.1");
        }
    }

    /// `notAfter` of the certificate the backend last presented (Unix seconds).
    pub(crate) fn peer_cert_not_after(&self) -> Option<i64> {
        Some(self.peer_not_after.load(Ordering::Relaxed)).filter(|t| *t != i64::MIN)
    }

    /// A TLS handshake completed: remembers the expiry of the certificate
    /// the backend presented.
    fn tls_handshake_done(&self, peer: Option<&CertificateDer<'_>>) {
        if let Some(t) = peer.and_then(|c| crate::net::x509::not_after(c)) {
            self.peer_not_after.store(t, Ordering::Relaxed);
        }
    }

    /// An HTTP answer came back over TLS (a probe's): the TLS trouble, if
    /// any, is over; said once. (Not at the handshake: with TLS 1.3 a
    /// rejected client certificate shows only at the first read.)
    pub(crate) fn tls_works(&self) {
        if self.tls.is_some() && self.tls_state.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(backend = %self.name(), "TLS with backend works again");
        }
    }

    /// A TLS handshake failed: counted by reason, logged when the reason changes.
    pub(crate) fn tls_handshake_failed(&self, reason: TlsReason, message: &str) {
        let i = TlsReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(3);
        self.metrics().tls_handshake_failures[i].inc();
        let code = i as u8 + 1;
        if self.tls_state.swap(code, Ordering::Relaxed) != code {
            tracing::warn!(backend = %self.name(), reason = %reason, error = %message, "TLS handshake with backend failed");
        }
    }

    /// Whether a reload or discovery may keep this backend: the same
    /// address (authority), protocol (`http`/`https`, h2c) and data address
    /// (`tcp`). The name,
    /// zone, priority and weight are not identity: a change of them keeps
    /// the backend ([`Self::rename`], [`Self::set_placement`]).
    pub(crate) fn same_as(&self, cfg: &BackendConfig) -> bool {
        self.authority == cfg.authority
            && self.h2c == cfg.h2c
            && self.tcp == cfg.tcp
            && self.tls.is_some() == cfg.tls.is_some()
    }

    /// Zone and priority in force.
    pub(crate) fn placement(&self) -> arc_swap::Guard<Arc<Placement>> {
        self.placement.load()
    }

    /// Takes the zone and priority of a reloaded config; true if they changed.
    pub(crate) fn set_placement(&self, cfg: &BackendConfig) -> bool {
        let new = Placement::of(cfg);
        if **self.placement.load() == new {
            return false;
        }
        self.placement.store(Arc::new(new));
        true
    }

    /// The last probed replication position; `None` when unknown.
    #[inline]
    pub(crate) fn position(&self) -> Option<u64> {
        self.position.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Records a periodic position probe's result. Only these set it, so
    /// every backend's position (and lag) is measured the same way.
    pub(crate) fn set_position(&self, p: Option<u64>) {
        self.position
            .store(p.map_or(0, |p| p.saturating_add(1)), Ordering::Relaxed);
    }

    /// Replicas attached to it as a Redis primary at its last native
    /// probe; `None` when unknown (not probed yet, not a Redis primary).
    pub(crate) fn replicas(&self) -> Option<u32> {
        self.replicas.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Records what a native probe's `ROLE` said (`None`: not a primary).
    pub(crate) fn set_replicas(&self, n: Option<u32>) {
        self.replicas
            .store(n.map_or(0, |n| n.saturating_add(1)), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, w: u32) {
        self.weight.store(w, Ordering::Relaxed);
    }

    /// Starts one request: counted in flight until the guard is dropped.
    #[inline]
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics().in_flight.inc();
        InFlight {
            backend: self.clone(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub(crate) fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// Fenced for writes: see the field's doc.
    #[inline]
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Fences the backend for writes; true if it was not fenced before.
    /// Every call counts ([`Backend::fence_count`]), even on a fenced
    /// backend: a probe that started before it cannot lift it.
    pub(crate) fn fence(&self) -> bool {
        self.fences.fetch_add(1, Ordering::AcqRel);
        !self.fenced.swap(true, Ordering::AcqRel)
    }

    /// How many times the backend was fenced so far (read by a leader
    /// probe when it starts).
    pub(crate) fn fence_count(&self) -> u64 {
        self.fences.load(Ordering::Acquire)
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

/// 64-bit finalizer (splitmix64): cheap, well mixed, stable across builds.
/// The rendezvous ip-hash (`balance`) mixes a client's address with a
/// backend's [`Backend::name_hash`] through it.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Stable hash of a byte string (FNV-1a folded through [`mix64`]): a
/// backend's `name_hash`.
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= c as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name())
            .field("url", &self.url)
            .field("weight", &self.weight)
            .finish()
    }
}
impl Peer for Backend {
    fn authority(&self) -> &str {
        self.authority.as_str()
    }

    fn tls(&self) -> Option<arc_swap::Guard<Arc<BackendTls>>> {
        Backend::tls(self)
    }

    fn handshake_done(&self, peer: Option<&CertificateDer<'_>>) {
        self.tls_handshake_done(peer)
    }

    fn handshake_failed(&self, reason: TlsReason, message: &str) {
        self.tls_handshake_failed(reason, message)
    }

    fn declined_h2(&self) {
        Backend::declined_h2(self)
    }
}

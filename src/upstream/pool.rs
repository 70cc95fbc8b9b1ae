//! Upstream connections, pooled per backend and per worker: a stack of idle
//! HTTP/1.1 sockets (plain [`Conn`]s, no buffer and no task while idle;
//! checked with a non-blocking peek before reuse), and one shared HTTP/2
//! (h2c) connection for backends that speak it (gRPC).
//!
//! Each worker thread owns one slot of every backend's pool, so taking and
//! returning a connection never contends with another thread (the mutex is
//! always uncontended; it only keeps the type `Sync`). Connections carry the
//! leader generation they were opened in: a write only reuses a connection
//! opened while the current leader was already leader (fencing).
//!
//! Every open connection (idle or in use, HTTP/1.1 or HTTP/2) holds one
//! permit of the backend's limit (`backends[].max_connections`, all workers
//! together): [`Pool::checkout`] waits for a connection or a permit, then
//! gives up ([`Busy`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::body::UpBody;
use super::connect::{self as upstream, Alpn, Peer};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// Most idle connections kept per backend per worker.
const MAX_IDLE_PER_SLOT: usize = 512;

/// HTTP/2 upstream connections are PINGed this often (also while idle) and
/// closed when a PING is not answered within [`H2_PING_TIMEOUT`].
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A ready-to-use upstream connection.
pub(crate) use super::h1::Conn;

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A multiplexed HTTP/2 connection and its leader generation.
#[derive(Clone)]
pub(crate) struct H2 {
    pub(crate) tx: http2::SendRequest<UpBody>,
    pub(crate) gen: u64,
    /// Tells connections apart (for [`Pool::forget_h2`]).
    id: u64,
}

static NEXT_H2: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[repr(align(64))]
#[derive(Default)]
struct Slot {
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<H2>>,
}

/// Why a new connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP or TLS.
    #[error(transparent)]
    Connect(#[from] upstream::ConnectError),
    /// Offered `h2` over TLS, the backend chose `http/1.1`.
    #[error("the backend chose http/1.1 over h2")]
    NotH2,
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

/// The idle connections of one backend, one slot per worker, and the
/// permits of its connection limit.
pub(crate) struct Pool {
    slots: Box<[Slot]>,
    /// One permit per open connection.
    permits: Arc<Semaphore>,
    /// The limit the permits were made for.
    limit: usize,
    /// Requests in [`Pool::checkout`] waiting for a connection: only then
    /// does [`Pool::put`] wake them.
    waiting: AtomicUsize,
    /// Woken when a connection goes back to any slot.
    returned: Notify,
}

/// What [`Pool::checkout`] found.
pub(crate) enum Checkout {
    /// An idle connection of this worker's slot.
    Pooled(Conn),
    /// Room for a new connection: it must hold this permit for its lifetime.
    Open(OwnedSemaphorePermit),
}

/// Every connection to the backend was in use for the whole wait.
#[derive(Debug)]
pub(crate) struct Busy {
    /// The backend's limit.
    pub(crate) limit: usize,
}

impl Pool {
    /// A pool for `workers` workers, with at most `limit` connections open
    /// at once (at least 1).
    pub(crate) fn new(workers: usize, limit: usize) -> Pool {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            waiting: AtomicUsize::new(0),
            returned: Notify::new(),
        }
    }

    /// The connection limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A usable idle connection of this worker (when `reuse`, see
    /// [`Pool::take`]), else a permit for a new one. When neither is there,
    /// an idle connection of another worker is closed to free its permit;
    /// when every connection is in use, waits up to `wait` for one to come
    /// back or close, then [`Busy`].
    pub(crate) async fn checkout(
        &self,
        worker: usize,
        reuse: Option<(u64, Duration)>,
        wait: Duration,
    ) -> Result<Checkout, Busy> {
        // The common case: nothing to register, nothing shared to write.
        if let Some(found) = self.try_checkout(worker, reuse) {
            return Ok(found);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let returned = self.returned.notified();
            let mut returned = std::pin::pin!(returned);
            returned.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            if let Some(found) = self.try_checkout(worker, reuse) {
                return Ok(found);
            }
            tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => return Ok(Checkout::Open(p)),
                    Err(_) => return Err(Busy { limit: self.limit }),
                },
                _ = returned => {}
                _ = tokio::time::sleep_until(deadline) => return Err(Busy { limit: self.limit }),
            }
        }
    }

    /// A permit for a new connection (an HTTP/2 one), waiting as
    /// [`Pool::checkout`] does.
    pub(crate) async fn room(
        &self,
        worker: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Busy> {
        match self.checkout(worker, None, wait).await? {
            Checkout::Open(p) => Ok(p),
            // Never: without `reuse` no pooled connection is taken.
            Checkout::Pooled(c) => {
                self.put(worker, c);
                Err(Busy { limit: self.limit })
            }
        }
    }

    /// One non-waiting round of [`Pool::checkout`]: `None` when it would
    /// have to wait.
    pub(crate) fn try_checkout(
        &self,
        worker: usize,
        reuse: Option<(u64, Duration)>,
    ) -> Option<Checkout> {
        if let Some((min_gen, max_idle)) = reuse {
            if let Some(c) = self.take(worker, min_gen, max_idle) {
                return Some(Checkout::Pooled(c));
            }
        }
        loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return Some(Checkout::Open(p));
            }
            if !self.close_one_idle() {
                return None;
            }
        }
    }

    /// Closes the oldest idle connection of any worker (freeing its permit);
    /// false when none is idle.
    fn close_one_idle(&self) -> bool {
        self.slots.iter().any(|s| {
            let oldest = {
                let mut idle = s.idle.lock().unwrap_or_else(|e| e.into_inner());
                (!idle.is_empty()).then(|| idle.remove(0))
            };
            oldest.is_some()
        })
    }

    fn slot(&self, worker: usize) -> &Slot {
        &self.slots[worker % self.slots.len()]
    }

    /// Takes the most recently used idle connection that is still open,
    /// opened at leader generation `min_gen` or later, and idle for less
    /// than `max_idle`. Older or closed ones are dropped.
    pub(crate) fn take(&self, worker: usize, min_gen: u64, max_idle: Duration) -> Option<Conn> {
        let mut idle = self
            .slot(worker)
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(mut c) = idle.pop() {
            if c.conn.gen < min_gen || c.since.elapsed() >= max_idle || !c.conn.is_reusable() {
                continue;
            }
            return Some(c.conn);
        }
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub(crate) fn put(&self, worker: usize, conn: Conn) {
        let mut idle = self
            .slot(worker)
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE_PER_SLOT {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_waiters();
        }
    }

    /// Closes this worker's idle connections that have been idle for
    /// `max_idle` or longer (they are stacked oldest first), and forgets
    /// closed ones. Returns how many were removed. The connections are
    /// dropped (which closes them) after the slot's lock is released.
    pub(crate) fn sweep(&self, worker: usize, max_idle: Duration) -> usize {
        self.sweep_at(worker, max_idle, Instant::now())
    }

    /// Closes every idle connection of `worker`'s slot: one of them broke
    /// under a request, and its siblings, opened to the same process, are
    /// likely broken too (a crashed backend); the next request opens a new
    /// connection, whose failure is evidence. Returns how many were closed.
    pub(crate) fn drop_idle(&self, worker: usize) -> usize {
        let removed: Vec<Idle> = std::mem::take(
            &mut *self
                .slot(worker)
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        removed.len()
    }

    /// [`Pool::sweep`] as if the time were `now`.
    fn sweep_at(&self, worker: usize, max_idle: Duration, now: Instant) -> usize {
        let removed: Vec<Idle> = {
            let mut idle = self
                .slot(worker)
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let expired = idle
                .iter()
                .take_while(|c| now.saturating_duration_since(c.since) >= max_idle)
                .count();
            let mut removed: Vec<Idle> = idle.drain(..expired).collect();
            if idle.iter().any(|c| !c.conn.is_open()) {
                let (closed, open) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|c| !c.conn.is_open());
                *idle = open;
                removed.extend::<Vec<Idle>>(closed);
            }
            removed
        };
        removed.len()
    }

    /// Forgets this worker's HTTP/2 connection if it is still `c` (it timed
    /// out or failed): the next request opens a new one.
    pub(crate) fn forget_h2(&self, worker: usize, c: &H2) {
        let mut h2 = self
            .slot(worker)
            .h2
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if h2.as_ref().is_some_and(|cur| cur.id == c.id) {
            *h2 = None;
        }
    }

    /// This worker's HTTP/2 connection, if it is open and was opened at
    /// leader generation `min_gen` or later.
    pub(crate) fn take_h2(&self, worker: usize, min_gen: u64) -> Option<H2> {
        let mut h2 = self
            .slot(worker)
            .h2
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &*h2 {
            Some(c) if !c.tx.is_closed() && c.gen >= min_gen => Some(c.clone()),
            _ => {
                *h2 = None;
                None
            }
        }
    }

    /// Makes `c` this worker's HTTP/2 connection to the backend.
    pub(crate) fn put_h2(&self, worker: usize, c: H2) {
        *self
            .slot(worker)
            .h2
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// Idle connections across all workers that are still open (admin and
    /// tests); closed ones are only dropped when a take passes them.
    pub(crate) fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                let idle = s.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.iter().filter(|c| c.conn.is_open()).count()
            })
            .sum()
    }
}

/// Counts a request in [`Pool::checkout`] while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Opens a new HTTP/1.1 connection to `backend` (TLS offering only
/// `http/1.1` for an `https://` backend); it holds `permit` while open.
pub(crate) async fn connect<P: Peer + ?Sized>(
    backend: &P,
    timeout: Duration,
    gen: u64,
    permit: OwnedSemaphorePermit,
) -> Result<Conn, ConnectError> {
    let stream = upstream::connect(backend, timeout, Alpn::Http1).await?;
    Ok(Conn::new(stream, gen).holding(permit))
}

/// Opens a new HTTP/2 connection to `backend`: h2c with prior knowledge,
/// or TLS offering `h2` and `http/1.1` ([`ConnectError::NotH2`] when the
/// backend chose `http/1.1`).
pub(crate) async fn connect_h2<P: Peer + ?Sized>(
    backend: &P,
    timeout: Duration,
    gen: u64,
    permit: OwnedSemaphorePermit,
) -> Result<H2, ConnectError> {
    let stream = upstream::connect(backend, timeout, Alpn::H2).await?;
    if backend.tls().is_some() && !stream.is_h2() {
        backend.declined_h2();
        return Err(ConnectError::NotH2);
    }
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        // The connection counts against the backend's limit until it ends.
        let _permit = permit;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream h2 connection ended with an error");
        }
    });
    Ok(H2 {
        tx,
        gen,
        id: NEXT_H2.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::Backend;

    /// A listener that accepts connections and keeps them open (the client
    /// side's HTTP/1.1 handshake needs no answer).
    pub(crate) async fn holder() -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        });
        (addr, h)
    }

    /// A permit for a new connection, or a panic.
    async fn room(pool: &Pool, worker: usize) -> OwnedSemaphorePermit {
        pool.room(worker, Duration::ZERO).await.expect("room")
    }

    #[tokio::test]
    async fn drop_idle_closes_one_workers_idle_connections() {
        let (addr, server) = holder().await;
        let backend = Backend::for_test(&addr);
        let pool = Pool::new(2, 2);
        let t = Duration::from_secs(1);
        let a = connect(&backend, t, 0, room(&pool, 0).await).await.unwrap();
        let b = connect(&backend, t, 0, room(&pool, 0).await).await.unwrap();
        pool.put(0, a);
        pool.put(0, b);
        assert_eq!(pool.drop_idle(1), 0, "another worker's slot");
        assert_eq!(pool.drop_idle(0), 2);
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.take(0, 0, t).is_none(), "nothing left to reuse");
        server.abort();
    }

    #[tokio::test]
    async fn sweep_closes_the_expired_oldest_first_and_keeps_the_rest() {
        let (addr, server) = holder().await;
        let backend = Backend::for_test(&addr);
        let pool = Pool::new(2, 8);
        let t = Duration::from_secs(1);
        let a = connect(&backend, t, 0, room(&pool, 0).await).await.unwrap();
        let b = connect(&backend, t, 0, room(&pool, 0).await).await.unwrap();
        let other = connect(&backend, t, 0, room(&pool, 1).await).await.unwrap();
        pool.put(0, a);
        let mid = Instant::now();
        // Instants only move forward; make sure b's idle time starts after `mid`.
        std::thread::sleep(Duration::from_millis(2));
        pool.put(0, b);
        pool.put(1, other);
        assert_eq!(pool.idle_count(), 3);
        let max_idle = Duration::from_secs(1);
        // At mid + 1s, `a` has been idle for 1s or more, `b` for less.
        assert_eq!(pool.sweep_at(0, max_idle, mid + max_idle), 1);
        // The other worker's slot is not touched; `b` is still there.
        assert_eq!(pool.idle_count(), 2);
        assert!(pool.take(0, 0, Duration::from_secs(60)).is_some());
        assert!(pool.take(0, 0, Duration::from_secs(60)).is_none());
        // Everything in slot 1 is expired much later.
        assert_eq!(pool.sweep_at(1, max_idle, mid + 10 * max_idle), 1);
        assert_eq!(pool.idle_count(), 0);
        server.abort();
    }

    #[tokio::test]
    async fn checkout_waits_for_a_returned_connection_then_gives_up() {
        let (addr, server) = holder().await;
        let backend = Backend::for_test(&addr);
        let pool = Pool::new(2, 1);
        let t = Duration::from_secs(1);
        let reuse = Some((0, Duration::from_secs(60)));
        let a = connect(&backend, t, 0, room(&pool, 0).await).await.unwrap();
        // The one connection is in use: a second request waits, then is busy.
        let started = tokio::time::Instant::now();
        let busy = pool.checkout(0, reuse, Duration::from_millis(50)).await;
        assert_eq!(busy.err().map(|b| b.limit), Some(1));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A connection that comes back meanwhile is handed to the waiter.
        let back = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pool.put(0, a);
        };
        let (got, ()) = tokio::join!(pool.checkout(0, reuse, t), back);
        let Ok(Checkout::Pooled(a)) = got else {
            panic!("the returned connection was not handed over")
        };
        // Idle in another worker's slot: closed to make room here.
        pool.put(1, a);
        assert!(matches!(
            pool.checkout(0, reuse, Duration::ZERO).await,
            Ok(Checkout::Open(_))
        ));
        assert_eq!(pool.idle_count(), 0);
        server.abort();
    }
}

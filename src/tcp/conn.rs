//! One TCP connection through a listener: find its backend (holding a
//! write connection while there is no leader), connect to the backend's
//! data address, copy both ways, and close it the moment the routing table
//! says its backend may no longer have it ([`route::must_close`]), after
//! `tcp[].idle` of silence, or when the proxy shuts down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::TcpMetrics;
use super::pump::{pump, Activity};
use super::route::{self, Close};
use crate::backend::Backend;
use crate::balance::Picker;
use crate::config::{Role, TcpListen};
use crate::proxy::service::Proxy;
use crate::routing::RoutingTable;
use crate::shutdown::until_true;

/// One `tcp` listener as its connections see it.
pub(crate) struct Listener {
    /// Its config (fixed for the process: listeners are bound at start).
    pub(crate) cfg: TcpListen,
    /// Its label in metrics, logs and the admin API: the listen address.
    pub(crate) label: String,
    /// The listener's policy over the read tier of the table of that epoch
    /// (read listeners whose policy is not `reads.policy`).
    picker: Mutex<Option<(u64, Arc<Picker>)>>,
    /// Connections open to a backend now, across workers (a RESP
    /// listener's: its clients).
    pub(super) open: AtomicUsize,
    /// Connections waiting for a leader now, across workers.
    held: AtomicUsize,
    /// The command table (RESP listeners).
    pub(crate) commands: Arc<super::resp::Commands>,
    /// `tcp[].resp.wait_replicas` (RESP listeners): the `WAIT` after writes.
    pub(crate) wait: Option<super::resp::Wait>,
}

impl Listener {
    /// A listener for `cfg`, labelled by its bound address.
    pub(crate) fn new(cfg: TcpListen, bound: SocketAddr) -> Listener {
        Listener {
            label: bound.to_string(),
            wait: super::resp::Wait::new(cfg.resp.wait_replicas, cfg.resp.wait_timeout),
            cfg,
            picker: Mutex::new(None),
            open: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            commands: Arc::new(super::resp::Commands::new()),
        }
    }

    /// Connections open to a backend now.
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections waiting for a leader now.
    pub(crate) fn held_connections(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The backend a new connection from `client` goes to under `t`.
    pub(super) fn target(
        &self,
        t: &RoutingTable,
        client: std::net::IpAddr,
    ) -> Option<Arc<Backend>> {
        if self.cfg.to == Role::Write || self.cfg.policy == t.cfg.reads.policy {
            return route::target(t, &self.cfg, &t.picker, client).cloned();
        }
        let picker = {
            let mut cached = self.picker.lock().unwrap_or_else(|e| e.into_inner());
            match &*cached {
                Some((epoch, p)) if *epoch == t.epoch => p.clone(),
                _ => {
                    let p = Arc::new(Picker::build(self.cfg.policy, &t.followers));
                    *cached = Some((t.epoch, p.clone()));
                    p
                }
            }
        };
        route::target(t, &self.cfg, &picker, client).cloned()
    }
}

/// Serves one accepted connection from `client` (its address after any
/// PROXY header; `early`: bytes read past that header) until it ends.
pub(crate) async fn serve(
    proxy: &'static Proxy,
    l: &Listener,
    metrics: &TcpMetrics,
    stream: TcpStream,
    client: SocketAddr,
    early: Bytes,
    shutdown: watch::Receiver<bool>,
) {
    let arrived = Instant::now();
    // Subscribed before the first look at the table: a change after that
    // look is seen by the copy loop.
    let mut changes = proxy.shared.subscribe();
    changes.borrow_and_update();
    let Some((backend, upstream)) = reach(proxy, l, metrics, client, arrived).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let conn = metrics.conn(&l.label, &backend.name());
    let _open = Count::enter(&l.open);
    let _in_flight = backend.begin_request();
    let local = stream.local_addr().unwrap_or(l.cfg.addr);
    if let Err(e) = prelude(l, &upstream, client, local, &early).await {
        tracing::debug!(listener = %l.label, backend = %backend.name(), error = %e, "tcp: writing to the backend failed");
        return;
    }
    conn.to_backend.inc_by(early.len() as u64);
    let why = carry(
        proxy, l, &stream, &upstream, &backend, &conn, changes, shutdown, arrived,
    )
    .await;
    if let Some(why) = why {
        metrics.closed(&l.label, why);
        tracing::debug!(listener = %l.label, backend = %backend.name(), client = %client, reason = why.as_str(), "tcp connection closed by the proxy");
        // Dropping both sockets closes them: the client sees its session
        // end at once (its next read returns end of stream).
    }
}

/// Copies bytes both ways between `stream` and `upstream` until either
/// ends (`None`) or the proxy must close the connection: the routing table
/// says `backend` may no longer have it ([`route::must_close`]), `tcp[].idle`
/// of silence, or shutdown after `shutdown_grace`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn carry(
    proxy: &'static Proxy,
    l: &Listener,
    stream: &TcpStream,
    upstream: &TcpStream,
    backend: &Backend,
    conn: &super::metrics::ConnMetrics,
    mut changes: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
    arrived: Instant,
) -> Option<Close> {
    let activity = Activity::new();
    let copy = pump(
        stream,
        upstream,
        &conn.to_backend,
        &conn.to_client,
        &activity,
    );
    let mut copy = std::pin::pin!(copy);
    let grace = proxy.shared.load().cfg.shutdown_grace;
    let mut cut_at: Option<Instant> = None;
    loop {
        // The table may have changed while connecting.
        if let Some(why) = route::must_close(&proxy.shared.load(), &l.cfg, backend) {
            return Some(why);
        }
        let idle_at = activity.last() + l.cfg.idle;
        tokio::select! {
            r = copy.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = %l.label, backend = %backend.name(), error = %e, "tcp connection ended with an error");
                }
                return None;
            }
            r = changes.changed() => {
                if r.is_err() {
                    return Some(Close::Shutdown);
                }
            }
            _ = tokio::time::sleep_until(idle_at) => {
                if activity.last() + l.cfg.idle <= Instant::now() {
                    return Some(Close::Idle);
                }
            }
            _ = until_true(&mut shutdown), if cut_at.is_none() => {
                // Connections finish on their own within shutdown_grace, or are cut then.
                cut_at = Some(Instant::now() + grace);
            }
            _ = tokio::time::sleep_until(cut_at.unwrap_or(arrived)), if cut_at.is_some() => {
                return Some(Close::Shutdown);
            }
        }
    }
}

/// What goes to the backend before the client's bytes: a PROXY v2 header
/// (`send_proxy_protocol`: from the client to the address it connected
/// to, `local`), then what the client sent with its own PROXY header.
async fn prelude(
    l: &Listener,
    upstream: &TcpStream,
    client: SocketAddr,
    local: SocketAddr,
    early: &[u8],
) -> std::io::Result<()> {
    if l.cfg.send_proxy_protocol {
        let header = crate::net::proxy_protocol::encode_v2(client, local);
        write_all(upstream, &header).await?;
    }
    if !early.is_empty() {
        write_all(upstream, early).await?;
    }
    Ok(())
}

/// Writes all of `buf` to a socket shared by reference.
async fn write_all(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The backend for a new connection and a socket to it. A write connection
/// waits (up to `writes.hold`, within `writes.max_held`) while there is no
/// write leader, and a leader whose data address refuses the connection is
/// fenced and waited past like an HTTP write's. `None`: closed (counted).
async fn reach(
    proxy: &'static Proxy,
    l: &Listener,
    metrics: &TcpMetrics,
    client: SocketAddr,
    arrived: Instant,
) -> Option<(Arc<Backend>, TcpStream)> {
    let mut t = proxy.shared.load();
    let cfg = t.cfg.clone();
    let deadline = arrived + cfg.writes.hold;
    let recheck = cfg.leader.probe.interval * 2;
    let mut avoid: Option<u64> = None;
    let mut held = None;
    let mut held_gauge = None;
    loop {
        let target = l.target(&t, client.ip()).filter(|b| avoid != Some(b.id));
        let Some(backend) = target else {
            if l.cfg.to == Role::Read {
                metrics.closed(&l.label, Close::NoBackend);
                return None;
            }
            if held.is_none() {
                let Some(h) = proxy.hold(cfg.writes.max_held) else {
                    metrics.closed(&l.label, Close::NoLeader);
                    return None;
                };
                held = Some(h);
                held_gauge = Some((
                    HeldGauge::enter(metrics.held(&l.label)),
                    Count::enter(&l.held),
                ));
            }
            match proxy.shared.wait_for_leader(deadline, avoid, recheck).await {
                Some(nt) => {
                    t = nt;
                    avoid = None;
                    continue;
                }
                None => {
                    tracing::warn!(listener = %l.label, client = %client, "tcp connection closed: no leader within writes.hold");
                    metrics.closed(&l.label, Close::NoLeader);
                    return None;
                }
            }
        };
        let addr = backend.tcp.as_ref()?.as_str().to_string();
        match tokio::time::timeout(cfg.timeouts.connect, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => {
                drop(held_gauge.take());
                if held.take().is_some() {
                    proxy
                        .metrics
                        .hold_wait
                        .observe(arrived.elapsed().as_secs_f64());
                }
                return Some((backend, s));
            }
            Ok(Err(e)) if l.cfg.to == Role::Write && refused(&e) && Instant::now() < deadline => {
                // Transport evidence that the leader is gone: fence it and
                // wait for the next one, as an HTTP write does.
                tracing::info!(listener = %l.label, backend = %backend.name(), error = %e, "tcp: the leader refused the connection; fenced, waiting for the next leader");
                proxy.monitor.fence(&backend);
                avoid = Some(backend.id);
                t = proxy.shared.load();
            }
            Ok(Err(e)) => {
                tracing::debug!(listener = %l.label, backend = %backend.name(), error = %e, "tcp: cannot connect to the backend");
                metrics.closed(&l.label, Close::ConnectFailed);
                return None;
            }
            Err(_) => {
                tracing::debug!(listener = %l.label, backend = %backend.name(), "tcp: connecting to the backend timed out (timeouts.connect)");
                metrics.closed(&l.label, Close::ConnectFailed);
                return None;
            }
        }
    }
}

/// The connection was refused or reset: nobody listens there now.
fn refused(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
}

/// Counts one connection in a listener's counter until dropped.
pub(super) struct Count<'a>(&'a AtomicUsize);

impl<'a> Count<'a> {
    pub(super) fn enter(c: &'a AtomicUsize) -> Count<'a> {
        c.fetch_add(1, Ordering::Relaxed);
        Count(c)
    }
}

impl Drop for Count<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a held connection in its listener's gauge while it waits.
struct HeldGauge(prometheus::IntGauge);

impl HeldGauge {
    fn enter(g: prometheus::IntGauge) -> HeldGauge {
        g.inc();
        HeldGauge(g)
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

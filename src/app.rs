//! Assembles a running proxy: backends, routing table, monitor, admin API,
//! worker threads; and the control operations (reload, shutdown).
//!
//! Threads: one control thread (monitor, probes, admin API, config watch)
//! and `workers` request threads, each a current-thread runtime. At
//! shutdown the admin API and the config watch stop at once; the monitor
//! keeps probing until the last worker has drained (at most
//! `shutdown_grace` plus a second), so held writes can still find a leader.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::control::Control;
use crate::discovery;
use crate::health::monitor;
use crate::metrics::Metrics;
use crate::proxy::service::{ClientInfo, Proxy, ProxyService};
use crate::routing::{Backend, RoutingTable, Shared};
use crate::server::{self, ServeOpts};
use crate::tcp;

/// A started proxy.
pub struct Running {
    /// The HTTP listen addresses as bound (port 0 resolved).
    pub listen: Vec<SocketAddr>,
    /// The `tcp` listeners' addresses as bound, in config order.
    pub tcp: Vec<SocketAddr>,
    /// The admin API's address as bound.
    pub admin: SocketAddr,
    /// Reload and config watch: what `SIGHUP` and `POST /reload` drive.
    pub control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and lets in-flight requests finish (up to `shutdown_grace`).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// The proxy core as a `tower::Service` for one client connection from
    /// `peer` (`tls`: the connection is TLS), for a server of the
    /// embedder's own ([`start_embedded`]). Its upstream connections come
    /// from the first worker's pool slot.
    pub fn service(&self, peer: SocketAddr, tls: bool) -> ProxyService {
        ProxyService::new(self.control.proxy, 0, ClientInfo::new(peer, tls))
    }

    /// Waits for every thread to end (after [`Running::shutdown`]).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// How long past `shutdown_grace` the monitor waits for workers to end.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// Counts a worker out when its thread ends (normally or by a panic), so the
/// control thread knows when the last one has drained.
struct WorkerDone(Arc<watch::Sender<usize>>);

impl Drop for WorkerDone {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Starts everything. Binding errors are returned before any thread runs
/// requests; the proxy then serves until [`Running::shutdown`].
pub fn start(cfg: Config) -> std::io::Result<Running> {
    start_with(cfg, discovery::Options::default())
}

/// [`start`] with discovery options that are not config keys (the DNS
/// servers to ask, for tests and embedders).
pub fn start_with(cfg: Config, discovery_opts: discovery::Options) -> std::io::Result<Running> {
    launch(cfg, discovery_opts, true)
}

/// Starts the control side only (monitor, discovery, admin API, config
/// watch) and none of the `listen` addresses: requests come from the
/// embedder's server through [`Running::service`]. `listen` must still be
/// valid config; [`Running::listen`] is empty.
pub fn start_embedded(cfg: Config) -> std::io::Result<Running> {
    launch(cfg, discovery::Options::default(), false)
}

fn launch(
    cfg: Config,
    discovery_opts: discovery::Options,
    listen: bool,
) -> std::io::Result<Running> {
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    let backends: Vec<Arc<Backend>> = cfg
        .backends
        .iter()
        .map(|b| {
            let limit = cfg.max_upstream_connections(b);
            Arc::new(Backend::new(b, &metrics, cfg.workers, limit))
        })
        .collect();
    let shared = Arc::new(Shared::new(RoutingTable::empty(backends, cfg.clone())));
    let (listeners, bound) = if listen {
        server::bind_all(&cfg.listen, cfg.workers)?
    } else {
        (Vec::new(), Vec::new())
    };
    let tcp_addrs: Vec<SocketAddr> = cfg.tcp.iter().map(|l| l.addr).collect();
    let (mut tcp_sockets, tcp_bound) = if listen && !tcp_addrs.is_empty() {
        server::bind_all(&tcp_addrs, cfg.workers)?
    } else {
        (Vec::new(), Vec::new())
    };
    let tcp_listeners: Arc<Vec<tcp::Listener>> = Arc::new(
        cfg.tcp
            .iter()
            .zip(&tcp_bound)
            .map(|(l, a)| tcp::Listener::new(l.clone(), *a))
            .collect(),
    );
    let tcp_metrics = Arc::new(tcp::metrics::TcpMetrics::new(&metrics.registry));
    let admin_std = std::net::TcpListener::bind(cfg.admin).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on admin address {}: {e}", cfg.admin),
        )
    })?;
    admin_std.set_nonblocking(true)?;
    let admin_addr = admin_std.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Workers still serving; each one's thread counts itself out when done.
    let (workers_left_tx, workers_left) = watch::channel(listeners.len());
    let workers_left_tx = Arc::new(workers_left_tx);

    // Control thread: monitor, admin, config watch.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<Control>>();
    let control_thread = {
        let cfg = cfg.clone();
        let tcp_listeners = tcp_listeners.clone();
        let shared = shared.clone();
        let metrics = metrics.clone();
        let mut shutdown = shutdown_rx.clone();
        let mut workers_left = workers_left.clone();
        std::thread::Builder::new()
            .name("leaderproxy-control".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let handle = monitor::start(cfg.clone(), shared.clone(), metrics.clone());
                    // Discovery loops: they report to the monitor and stop
                    // with this runtime.
                    discovery::run(
                        shared.clone(),
                        handle.clone(),
                        metrics.clone(),
                        discovery_opts,
                    );
                    let proxy: &'static Proxy =
                        Box::leak(Box::new(Proxy::new(shared, handle, metrics)));
                    let control = Arc::new(Control::new(proxy, cfg.source.clone(), tcp_listeners));
                    let _ = ready_tx.send(control.clone());
                    let listener =
                        tokio::net::TcpListener::from_std(admin_std).expect("admin listener");
                    tokio::spawn(crate::admin::serve(
                        control.clone(),
                        listener,
                        shutdown.clone(),
                    ));
                    tokio::spawn(crate::control::watch_config(
                        control.clone(),
                        shutdown.clone(),
                    ));
                    let _ = shutdown.wait_for(|s| *s).await;
                    // The admin listener and the config watch stop here; the
                    // monitor keeps probing until the last worker has drained,
                    // so a held write can still find a new leader. Bounded,
                    // in case a worker thread never started or is stuck.
                    let drained = workers_left.wait_for(|n| *n == 0);
                    if tokio::time::timeout(cfg.shutdown_grace + DRAIN_MARGIN, drained)
                        .await
                        .is_err()
                    {
                        tracing::warn!(
                            "workers still draining after shutdown_grace; stopping the monitor"
                        );
                    }
                });
            })?
    };
    let control = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("control thread failed to start"))?;
    let proxy = control.proxy;

    let mut threads = vec![control_thread];
    let opts = ServeOpts::from_config(&cfg);
    for (w, ls) in listeners.into_iter().enumerate() {
        let opts = opts.clone();
        let tcp_sockets = if tcp_sockets.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut tcp_sockets[w])
        };
        let (tcp_listeners, tcp_metrics) = (tcp_listeners.clone(), tcp_metrics.clone());
        let shutdown = shutdown_rx.clone();
        let done = WorkerDone(workers_left_tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("leaderproxy-w{w}"))
                .spawn(move || {
                    let _done = done;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    rt.block_on(async move {
                        let tcp = tcp::serve_worker(
                            proxy,
                            tcp_listeners,
                            tcp_sockets,
                            tcp_metrics,
                            shutdown.clone(),
                        );
                        tokio::join!(server::serve_worker(proxy, w, ls, opts, shutdown), tcp);
                    });
                })?,
        );
    }
    Ok(Running {
        listen: bound,
        tcp: tcp_bound,
        admin: admin_addr,
        control,
        shutdown: shutdown_tx,
        threads,
    })
}

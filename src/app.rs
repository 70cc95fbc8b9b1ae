//! Assembles a running proxy: backends, routing table, monitor, admin API,
//! worker threads; and the control operations (reload, shutdown).
//!
//! Threads: one control thread (monitor, probes, admin API, config watch)
//! and `workers` request threads, each a current-thread runtime. At
//! shutdown the admin API and the config watch stop at once; the monitor
//! keeps probing until the last worker has drained (at most
//! `shutdown_grace` plus a second), so held writes can still find a leader.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::{self, Config, ConfigError};
use crate::discovery;
use crate::health::monitor;
use crate::metrics::Metrics;
use crate::proxy::service::Proxy;
use crate::routing::{Backend, RoutingTable, Shared};
use crate::server::{self, ServeOpts};

/// Control-plane operations shared by the admin API and signal handlers.
pub struct Control {
    pub proxy: &'static Proxy,
    pub config_path: PathBuf,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Control {
    /// Re-reads and validates the config file; applies it only if valid.
    /// Returns notes on settings that need a restart.
    pub async fn reload(&self) -> Result<Vec<String>, ConfigError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let m = &self.proxy.metrics;
        match config::load(&self.config_path) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    tracing::warn!("{w}");
                }
                let cfg = Arc::new(cfg);
                let notes = self.proxy.monitor.reload(cfg.clone()).await;
                self.proxy.reloaded(&cfg);
                for n in &notes {
                    tracing::warn!(note = %n, "reload: setting not applied");
                }
                m.reloads_ok.inc();
                m.last_reload_success.set(1);
                tracing::info!(file = %self.config_path.display(), "config reloaded");
                Ok(notes)
            }
            Err(e) => {
                m.reloads_error.inc();
                m.last_reload_success.set(0);
                for p in &e.0 {
                    tracing::error!(problem = %p, "config reload rejected; the old config keeps serving");
                }
                Err(e)
            }
        }
    }
}

/// A started proxy.
pub struct Running {
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and lets in-flight requests finish (up to `shutdown_grace`).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
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

fn file_stamp(p: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Starts everything. Binding errors are returned before any thread runs
/// requests; the proxy then serves until [`Running::shutdown`].
pub fn start(cfg: Config) -> std::io::Result<Running> {
    start_with(cfg, discovery::Options::default())
}

/// [`start`] with discovery options that are not config keys (the DNS
/// servers to ask, for tests and embedders).
pub fn start_with(cfg: Config, discovery_opts: discovery::Options) -> std::io::Result<Running> {
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
    let (listeners, bound) = server::bind_all(&cfg.listen, cfg.workers)?;
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
                    let control = Arc::new(Control {
                        proxy,
                        config_path: cfg.source.clone(),
                        reload_lock: tokio::sync::Mutex::new(()),
                    });
                    let _ = ready_tx.send(control.clone());
                    let listener =
                        tokio::net::TcpListener::from_std(admin_std).expect("admin listener");
                    tokio::spawn(crate::admin::serve(
                        control.clone(),
                        listener,
                        shutdown.clone(),
                    ));
                    tokio::spawn(watch_config(control.clone(), shutdown.clone()));
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
                    rt.block_on(server::serve_worker(proxy, w, ls, opts, shutdown));
                })?,
        );
    }
    Ok(Running {
        listen: bound,
        admin: admin_addr,
        control,
        shutdown: shutdown_tx,
        threads,
    })
}

/// Change stamps of the config file, of the admin token file and of every
/// TLS file the running config names: the listener's certificate, key and
/// client CA, and each https:// backend's CA, client certificate and key
/// (a rotated Kubernetes Secret swaps those files' symlinks too).
fn watched_stamps(ctl: &Control) -> Vec<Option<(SystemTime, u64)>> {
    let t = ctl.proxy.shared.load();
    let cfg = &t.cfg;
    let mut files: Vec<&std::path::Path> = vec![&ctl.config_path];
    files.extend(cfg.admin_token.as_ref().map(|t| t.file.as_path()));
    if let Some(tls) = &cfg.tls {
        files.extend([tls.cert.as_path(), tls.key.as_path()]);
        files.extend(tls.client_ca.as_deref());
    }
    for b in &cfg.backends {
        if let Some(tls) = &b.tls {
            let s = &tls.settings;
            files.extend(
                [&s.ca, &s.cert, &s.key]
                    .into_iter()
                    .flatten()
                    .map(|p| p.as_path()),
            );
        }
    }
    files.iter().map(|p| file_stamp(p)).collect()
}

/// Re-reads the config when the file (or the admin token file, or a TLS
/// file) changes
/// (checked every second: a Kubernetes ConfigMap or Secret update swaps a
/// symlink, which inotify on the file itself would miss).
async fn watch_config(ctl: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut last = watched_stamps(&ctl);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::server::until_true(&mut shutdown) => return,
        }
        let now = watched_stamps(&ctl);
        if now[0].is_some() && now != last {
            tracing::info!(file = %ctl.config_path.display(), "config, admin token or TLS file changed; reloading");
            let _ = ctl.reload().await;
            // The reload may have named other files. After a failed one (a
            // broken certificate: the old material keeps serving) the stamps
            // are the new ones too: the next change of a file tries again.
            last = watched_stamps(&ctl);
        }
    }
}

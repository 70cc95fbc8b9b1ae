//! Control-plane operations: reload (validate first, then apply; a bad
//! config never takes down a running proxy) and the config file watch. The
//! admin API and the signal handlers act through [`Control`]; neither knows
//! how the proxy was assembled (`app`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::{self, ConfigError};
use crate::proxy::service::Proxy;

/// Control-plane operations shared by the admin API and signal handlers.
pub struct Control {
    /// The proxy core the workers serve with (its monitor, table and metrics).
    pub(crate) proxy: &'static Proxy,
    /// The config file reloads read.
    pub(crate) config_path: PathBuf,
    /// The TCP listeners the workers accept on (for the admin API).
    pub(crate) tcp: Arc<Vec<crate::tcp::Listener>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Control {
    /// Control over `proxy`, reloading from `config_path`; `tcp`: the TCP
    /// listeners as bound.
    pub(crate) fn new(
        proxy: &'static Proxy,
        config_path: PathBuf,
        tcp: Arc<Vec<crate::tcp::Listener>>,
    ) -> Control {
        Control {
            proxy,
            config_path,
            tcp,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

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

fn file_stamp(p: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
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
pub(crate) async fn watch_config(ctl: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut last = watched_stamps(&ctl);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::shutdown::until_true(&mut shutdown) => return,
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

//! Raw TCP listeners (`tcp`): PostgreSQL, MySQL, Redis and any other
//! protocol carried byte for byte to the cluster, routed by the same
//! monitor and routing table as HTTP.
//!
//! - [`route`] (pure): where a connection goes and when it must close.
//! - `conn`: one connection: the hold while there is no leader, the
//!   connect, the copy, the close on a leader change.
//! - `pump`: the copy both ways on one task, buffers only while bytes move.
//! - [`metrics`] has the `leaderproxy_tcp_*` families.
//!
//! Each worker thread accepts on its own `SO_REUSEPORT` socket of every
//! listener, like the HTTP listeners.

mod conn;
pub(crate) mod metrics;
mod pump;
pub(crate) mod resp;
pub(crate) mod route;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub(crate) use conn::Listener;
use metrics::TcpMetrics;

use crate::proxy::service::Proxy;
use crate::shutdown::until_true;

/// A RESP listener's shared upstream connection closes after this long
/// without a command (or `tcp[].idle`, when shorter).
const MAX_SHARED_IDLE: Duration = Duration::from_secs(300);

/// Accepts on one worker's sockets of the TCP listeners (`sockets[i]` is
/// `listeners[i]`'s) until `shutdown`; then lets open connections run for
/// up to `shutdown_grace` (each cuts itself then).
pub(crate) async fn serve_worker(
    proxy: &'static Proxy,
    listeners: Arc<Vec<Listener>>,
    sockets: Vec<StdListener>,
    metrics: Arc<TcpMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tasks = TaskTracker::new();
    let mut accepts = Vec::new();
    // Like the HTTP listeners': the limit at start (a reload notes a change).
    let max_connections = proxy.shared.load().cfg.limits.max_connections;
    let connect = proxy.shared.load().cfg.timeouts.connect;
    // Each RESP listener's shared connections on this worker.
    let pools: Arc<Vec<Option<resp::Pool>>> = Arc::new(
        listeners
            .iter()
            .map(|l| {
                (l.cfg.protocol == crate::config::TcpProtocol::Resp).then(|| {
                    resp::Pool::new(
                        l.cfg.resp.upstream_connections,
                        connect,
                        l.cfg.idle.min(MAX_SHARED_IDLE),
                        metrics.resp_upstreams(&l.label),
                    )
                })
            })
            .collect(),
    );
    for (i, socket) in sockets.into_iter().enumerate() {
        let socket = match TcpListener::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot use tcp listener");
                continue;
            }
        };
        let (listeners, metrics, tasks) = (listeners.clone(), metrics.clone(), tasks.clone());
        let pools = pools.clone();
        let mut stop = shutdown.clone();
        let shutdown = shutdown.clone();
        accepts.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = socket.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "tcp accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = until_true(&mut stop) => return,
                };
                let cfg = proxy.shared.load().cfg.clone();
                let Some(open) = proxy.admit(max_connections) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (listeners, metrics, shutdown) =
                    (listeners.clone(), metrics.clone(), shutdown.clone());
                let pools = pools.clone();
                tasks.spawn(async move {
                    let _open = open;
                    let l = &listeners[i];
                    let (stream, client, early) =
                        match accept_header(proxy, l, stream, peer, &cfg).await {
                            Some(x) => x,
                            None => return,
                        };
                    match &pools[i] {
                        Some(pool) => {
                            resp::serve(proxy, l, &metrics, pool, stream, client, early, shutdown)
                                .await
                        }
                        None => {
                            conn::serve(proxy, l, &metrics, stream, client, early, shutdown).await
                        }
                    }
                });
            }
        }));
    }
    until_true(&mut shutdown).await;
    for a in accepts {
        let _ = a.await;
    }
    tasks.close();
    let grace = proxy.shared.load().cfg.shutdown_grace;
    // Each connection cuts itself after the grace; a little margin for that.
    let _ = tokio::time::timeout(grace + Duration::from_secs(1), tasks.wait()).await;
}

/// The client's address: the PROXY header's source on a `proxy_protocol`
/// listener (from a trusted peer, within `timeouts.header_read`), else the
/// socket's peer; and any bytes read past the header.
async fn accept_header(
    proxy: &'static Proxy,
    l: &Listener,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    cfg: &crate::config::Config,
) -> Option<(tokio::net::TcpStream, SocketAddr, bytes::Bytes)> {
    if !l.cfg.proxy_protocol {
        return Some((stream, peer, bytes::Bytes::new()));
    }
    let deadline = Instant::now() + cfg.timeouts.header_read;
    match crate::net::proxy_protocol::read_client_header(
        &mut stream,
        peer,
        &cfg.trusted_proxies,
        deadline,
    )
    .await
    {
        Ok((early, client)) => Some((stream, client, early)),
        Err(why) => {
            tracing::debug!(listener = %l.label, client = %peer, "closing tcp connection: {why}");
            proxy.metrics.proxy_protocol_errors.inc();
            None
        }
    }
}

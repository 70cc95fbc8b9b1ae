//! The TCP listeners' metric families, registered on the proxy's registry
//! when the config has `tcp` listeners.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::route::Close;

/// `leaderproxy_tcp_*`.
pub(crate) struct TcpMetrics {
    /// `leaderproxy_tcp_connections{listener,backend}`: open connections.
    active: IntGaugeVec,
    /// `leaderproxy_tcp_connections_total{listener,backend}`: connections
    /// made to a backend.
    total: IntCounterVec,
    /// `leaderproxy_tcp_bytes_total{listener,backend,direction}`: bytes
    /// copied, `direction` = `to_backend` | `to_client`.
    bytes: IntCounterVec,
    /// `leaderproxy_tcp_held_connections{listener}`: write connections
    /// waiting for a leader.
    held: IntGaugeVec,
    /// `leaderproxy_tcp_closed_total{listener,reason}`: connections the
    /// proxy closed, by [`Close`] reason.
    closed: IntCounterVec,
}

/// One connection's handles, resolved once when it reaches its backend.
pub(crate) struct ConnMetrics {
    /// Its series of `leaderproxy_tcp_connections` (decremented on drop).
    pub(crate) active: IntGauge,
    /// Its series of `leaderproxy_tcp_bytes_total{direction="to_backend"}`.
    pub(crate) to_backend: IntCounter,
    /// Its series of `leaderproxy_tcp_bytes_total{direction="to_client"}`.
    pub(crate) to_client: IntCounter,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // A second registration (a second proxy in one process sharing a
    // registry) keeps the first; each proxy has its own registry.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl TcpMetrics {
    /// The families, registered on `registry`.
    pub(crate) fn new(registry: &Registry) -> TcpMetrics {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        TcpMetrics {
            active: gauge(
                "leaderproxy_tcp_connections",
                "Open TCP connections through a tcp listener, by backend.",
                &["listener", "backend"],
            ),
            total: counter(
                "leaderproxy_tcp_connections_total",
                "TCP connections made to a backend through a tcp listener.",
                &["listener", "backend"],
            ),
            bytes: counter(
                "leaderproxy_tcp_bytes_total",
                "Bytes copied through a tcp listener (direction: to_backend, to_client).",
                &["listener", "backend", "direction"],
            ),
            held: gauge(
                "leaderproxy_tcp_held_connections",
                "Connections of a write listener waiting for a leader.",
                &["listener"],
            ),
            closed: counter(
                "leaderproxy_tcp_closed_total",
                "TCP connections the proxy closed, by reason (leader_change, unhealthy, idle, no_leader, no_backend, connect_failed, shutdown).",
                &["listener", "reason"],
            ),
        }
    }

    /// Handles for one connection of `listener` to `backend`; counts it.
    pub(crate) fn conn(&self, listener: &str, backend: &str) -> ConnMetrics {
        self.total.with_label_values(&[listener, backend]).inc();
        let active = self.active.with_label_values(&[listener, backend]);
        active.inc();
        ConnMetrics {
            active,
            to_backend: self
                .bytes
                .with_label_values(&[listener, backend, "to_backend"]),
            to_client: self
                .bytes
                .with_label_values(&[listener, backend, "to_client"]),
        }
    }

    /// The held-connections gauge of `listener`.
    pub(crate) fn held(&self, listener: &str) -> IntGauge {
        self.held.with_label_values(&[listener])
    }

    /// Counts a connection of `listener` closed by the proxy.
    pub(crate) fn closed(&self, listener: &str, why: Close) {
        self.closed
            .with_label_values(&[listener, why.as_str()])
            .inc();
    }
}

impl Drop for ConnMetrics {
    fn drop(&mut self) {
        self.active.dec();
    }
}

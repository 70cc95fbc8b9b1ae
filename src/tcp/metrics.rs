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
    /// `leaderproxy_resp_commands_total{listener,class,backend}`: commands
    /// of RESP listeners sent on shared connections (`class`: read, write).
    resp_commands: IntCounterVec,
    /// `leaderproxy_resp_resent_total{listener,reason}`: commands sent
    /// again after a node refused them (`readonly`, `masterdown`,
    /// `loading`), and writes answered with the ambiguous-write error
    /// (`ambiguous_error`) or the unreplicated error (`unreplicated_error`).
    resp_resent: IntCounterVec,
    /// `leaderproxy_resp_pinned_total{listener,why}`: clients moved to a
    /// connection of their own to the primary (`transaction`, `blocking`,
    /// `tunnel`).
    resp_pinned: IntCounterVec,
    /// `leaderproxy_resp_upstream_connections{listener}`: shared upstream
    /// connections open.
    resp_upstreams: IntGaugeVec,
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
            resp_commands: counter(
                "leaderproxy_resp_commands_total",
                "Commands of RESP listeners sent on shared connections, by class (read, write) and backend.",
                &["listener", "class", "backend"],
            ),
            resp_resent: counter(
                "leaderproxy_resp_resent_total",
                "RESP commands sent again after a node refused them (readonly, masterdown, loading), and writes answered as ambiguous (ambiguous_error) or unreplicated (unreplicated_error).",
                &["listener", "reason"],
            ),
            resp_pinned: counter(
                "leaderproxy_resp_pinned_total",
                "RESP clients moved to a connection of their own to the primary (transaction, blocking, tunnel).",
                &["listener", "why"],
            ),
            resp_upstreams: gauge(
                "leaderproxy_resp_upstream_connections",
                "Shared upstream connections of a RESP listener.",
                &["listener"],
            ),
        }
    }

    /// The read and write counters of commands sent to `backend` (taken
    /// once per client connection and backend: no label lookup per batch).
    pub(crate) fn resp_command_counters(
        &self,
        listener: &str,
        backend: &str,
    ) -> (prometheus::IntCounter, prometheus::IntCounter) {
        (
            self.resp_commands
                .with_label_values(&[listener, "read", backend]),
            self.resp_commands
                .with_label_values(&[listener, "write", backend]),
        )
    }

    /// Counts a command sent again (or an ambiguous write) for `reason`.
    pub(crate) fn resp_resent(&self, listener: &str, reason: &str) {
        self.resp_resent
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// Counts `n` writes of one `reason` at once.
    pub(crate) fn resp_resent_n(&self, listener: &str, reason: &str, n: u64) {
        self.resp_resent
            .with_label_values(&[listener, reason])
            .inc_by(n);
    }

    /// Counts a client pinned to the primary for `why`.
    pub(crate) fn resp_pinned(&self, listener: &str, why: &str) {
        self.resp_pinned.with_label_values(&[listener, why]).inc();
    }

    /// The shared-connections gauge of `listener`.
    pub(crate) fn resp_upstreams(&self, listener: &str) -> IntGauge {
        self.resp_upstreams.with_label_values(&[listener])
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

//! Prometheus registry and typed metric handles. Per-backend handles are
//! resolved once when a backend is created (`BackendMetrics`), so the
//! request path never looks a label up.

#![warn(missing_docs)]

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Role;

mod backend;
mod labels;

pub(crate) use backend::BackendMetrics;
pub(crate) use labels::{class_index, TlsReason, CLASSES};

/// Request duration buckets: 100µs to 10s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Hold wait and probe buckets: 1ms to 30s.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Every metric the proxy exports.
pub struct Metrics {
    /// Where every metric is registered; [`Metrics::render`] gathers it.
    pub(crate) registry: Registry,
    requests: IntCounterVec,
    /// `requests_total{backend="none"}`, resolved once.
    unrouted_read: [IntCounter; 5],
    unrouted_write: [IntCounter; 5],
    /// `leaderproxy_request_duration_seconds{role="read"}`.
    pub(crate) duration_read: Histogram,
    /// `leaderproxy_request_duration_seconds{role="write"}`.
    pub(crate) duration_write: Histogram,
    connect_errors: IntCounterVec,
    busy: IntCounterVec,
    timeouts: IntCounterVec,
    in_flight: IntGaugeVec,
    healthy: IntGaugeVec,
    is_leader: IntGaugeVec,
    ejected: IntGaugeVec,
    ejections: IntCounterVec,
    probe_duration: HistogramVec,
    probe_failures: IntCounterVec,
    tls_handshake_failures: IntCounterVec,
    /// `leaderproxy_leader_changes_total`: times the routed leader changed
    /// (including to none).
    pub(crate) leader_changes: IntCounter,
    /// `leaderproxy_no_leader_seconds_total`: seconds with no leader known.
    pub(crate) no_leader_seconds: prometheus::Counter,
    /// `leaderproxy_leader_known`: 1 while a leader is known, else 0.
    pub(crate) leader_known: IntGauge,
    /// 1 while the read tier is not the local zone of the primary site.
    pub(crate) read_tier_spilled: IntGauge,
    /// `leaderproxy_split_brain_total`: times two or more backends claimed
    /// leadership and none could be chosen.
    pub(crate) split_brain: IntCounter,
    /// Times the discovered set was cut to `discovery.max_backends`.
    pub(crate) discovery_capped: IntCounter,
    /// `leaderproxy_held_writes`: writes waiting for a leader right now.
    pub(crate) held_writes: IntGauge,
    /// `leaderproxy_write_hold_seconds`: how long held writes waited.
    pub(crate) hold_wait: Histogram,
    /// `leaderproxy_writes_resent_total`: writes sent again after a
    /// not-leader answer or a connect failure before sending.
    pub(crate) writes_resent: IntCounter,
    /// `leaderproxy_reads_retried_total`: reads retried on another backend.
    pub(crate) reads_retried: IntCounter,
    /// `leaderproxy_read_try_timeouts_total`: first tries of reads that
    /// waited `reads.try_timeout` for an answer and were sent elsewhere.
    pub(crate) read_try_timeouts: IntCounter,
    /// `leaderproxy_read_latency_ejections_total`: followers ejected
    /// because their read tries kept timing out.
    pub(crate) read_latency_ejections: IntCounter,
    /// `leaderproxy_read_hedges_total`: second tries sent (`reads.hedge`).
    pub(crate) read_hedges: IntCounter,
    /// `leaderproxy_read_hedges_won_total`: reads the second try answered.
    pub(crate) read_hedges_won: IntCounter,
    /// `leaderproxy_writes_retried_ambiguous_total`: idempotent writes
    /// re-sent after a failure that may have reached the leader.
    pub(crate) writes_retried_ambiguous: IntCounter,
    /// `leaderproxy_leader_reprobes_total`: immediate re-probes the request
    /// path asked for, after rate limiting.
    pub(crate) leader_reprobes: IntCounter,
    /// `leaderproxy_replay_budget_exhausted_total`: bodies streamed without
    /// a copy because `limits.replay_buffer_bytes` was in use.
    pub(crate) replay_budget_exhausted: IntCounter,
    /// `leaderproxy_config_reloads_total{result="ok"}`.
    pub(crate) reloads_ok: IntCounter,
    /// `leaderproxy_config_reloads_total{result="error"}`.
    pub(crate) reloads_error: IntCounter,
    /// `leaderproxy_config_last_reload_success`: 1 if the last reload
    /// succeeded, else 0.
    pub(crate) last_reload_success: IntGauge,
    /// `leaderproxy_client_connections`: open client connections.
    pub(crate) client_connections: IntGauge,
    /// `leaderproxy_rejected_connections_total`: client connections closed
    /// at accept (`limits.max_connections`).
    pub(crate) rejected_connections: IntCounter,
    /// `leaderproxy_admin_rejected_connections_total`: admin connections
    /// closed at accept (`limits.admin_max_connections`).
    pub(crate) admin_rejected_connections: IntCounter,
    /// Connections on a `proxy_protocol` listener closed for a missing,
    /// malformed or late PROXY header.
    pub(crate) proxy_protocol_errors: IntCounter,
    tls_cert_expiry: prometheus::GaugeVec,
    discovery_errors: IntCounterVec,
    discovery_backends: IntGaugeVec,
    position: IntGaugeVec,
    lag: IntGaugeVec,
    write_position_probes: IntCounterVec,
    position_decreases: IntCounterVec,
    /// Sessions remembered for read-your-writes.
    pub(crate) sessions: IntGauge,
    /// `leaderproxy_session_evictions_total`: sessions forgotten at
    /// `reads.session.capacity`.
    pub(crate) session_evictions: IntCounter,
    /// Reads that had to see a write (`reads.consistency: read_your_writes`),
    /// by where they went: `follower` (one that had caught up) or `leader`.
    pub(crate) fresh_reads_follower: IntCounter,
    /// `leaderproxy_fresh_reads_total{target="leader"}`.
    pub(crate) fresh_reads_leader: IntCounter,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    /// A registry with every metric registered (and `leaderproxy_build_info`).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "leaderproxy_request_duration_seconds",
                "Time from request arrival to response headers sent, by role.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["role"],
        )
        .expect("valid metric");
        let duration = reg(&r, duration);
        let probe_duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "leaderproxy_probe_duration_seconds",
                    "Duration of health and leader probes, by backend and kind.",
                )
                .buckets(WAIT_BUCKETS.to_vec()),
                &["backend", "kind"],
            )
            .expect("valid metric"),
        );
        let reloads = counter_vec(
            "leaderproxy_config_reloads_total",
            "Config reloads by result (ok or error).",
            &["result"],
        );
        let requests = counter_vec(
            "leaderproxy_requests_total",
            "Requests answered, by role, backend (or 'none') and status class.",
            &["role", "backend", "class"],
        );
        let fresh_reads = counter_vec(
            "leaderproxy_fresh_reads_total",
            "Reads that had to see an earlier write (read_your_writes), by target: follower (one whose probed position had caught up) or leader.",
            &["target"],
        );
        let m = Metrics {
            unrouted_read: CLASSES.map(|c| requests.with_label_values(&["read", "none", c])),
            unrouted_write: CLASSES.map(|c| requests.with_label_values(&["write", "none", c])),
            requests,
            duration_read: duration.with_label_values(&["read"]),
            duration_write: duration.with_label_values(&["write"]),
            connect_errors: counter_vec(
                "leaderproxy_upstream_connect_errors_total",
                "Failed TCP/HTTP connection attempts to a backend.",
                &["backend"],
            ),
            busy: counter_vec(
                "leaderproxy_upstream_busy_total",
                "Requests refused with 503 upstream_busy: every connection to the backend (backends[].max_connections) stayed in use for timeouts.connect.",
                &["backend"],
            ),
            timeouts: counter_vec(
                "leaderproxy_upstream_timeouts_total",
                "Requests whose backend sent no response headers within the time limit (timeouts.response_headers or the route's timeout).",
                &["backend"],
            ),
            in_flight: gauge_vec(
                "leaderproxy_backend_in_flight",
                "Requests being served by a backend right now.",
                &["backend"],
            ),
            healthy: gauge_vec(
                "leaderproxy_backend_healthy",
                "1 if the backend passes its health probe (after rise/fall), else 0.",
                &["backend"],
            ),
            is_leader: gauge_vec(
                "leaderproxy_backend_is_leader",
                "1 if the backend is the leader writes are routed to, else 0.",
                &["backend"],
            ),
            ejected: gauge_vec(
                "leaderproxy_backend_ejected",
                "1 while passive health checking keeps the backend out of read rotation.",
                &["backend"],
            ),
            ejections: counter_vec(
                "leaderproxy_ejections_total",
                "Times passive health checking ejected a backend.",
                &["backend"],
            ),
            probe_failures: counter_vec(
                "leaderproxy_probe_failures_total",
                "Probes that failed (error, timeout or unmet expectation; for kind=leader only errors and timeouts).",
                &["backend", "kind"],
            ),
            probe_duration,
            tls_handshake_failures: counter_vec(
                "leaderproxy_upstream_tls_handshake_failures_total",
                "TLS handshakes with a backend that failed (data connections and probes), by reason: expired, unknown_ca, name_mismatch, handshake.",
                &["backend", "reason"],
            ),
            leader_changes: reg(
                &r,
                IntCounter::new("leaderproxy_leader_changes_total", "Times the routed leader changed (including to none).")
                    .expect("valid metric"),
            ),
            no_leader_seconds: reg(
                &r,
                prometheus::Counter::new(
                    "leaderproxy_no_leader_seconds_total",
                    "Seconds during which no leader was known (writes held or refused).",
                )
                .expect("valid metric"),
            ),
            leader_known: reg(
                &r,
                IntGauge::new("leaderproxy_leader_known", "1 while a leader is known, else 0.").expect("valid metric"),
            ),
            read_tier_spilled: reg(
                &r,
                IntGauge::new(
                    "leaderproxy_read_tier_spilled",
                    "1 while reads go to followers outside local_zone or on a standby site (priority > 0), because none at home is eligible; else 0.",
                )
                .expect("valid metric"),
            ),
            split_brain: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_split_brain_total",
                    "Times two or more backends claimed leadership and none could be chosen.",
                )
                .expect("valid metric"),
            ),
            discovery_capped: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_discovery_capped_total",
                    "Times the discovered backends were more than discovery.max_backends and some were left out.",
                )
                .expect("valid metric"),
            ),
            held_writes: reg(
                &r,
                IntGauge::new("leaderproxy_held_writes", "Writes waiting for a leader right now.").expect("valid metric"),
            ),
            hold_wait: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "leaderproxy_write_hold_seconds",
                        "How long held writes waited for a leader.",
                    )
                    .buckets(WAIT_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            writes_resent: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_writes_resent_total",
                    "Writes sent again after a not-leader answer or a connect failure before sending.",
                )
                .expect("valid metric"),
            ),
            reads_retried: reg(
                &r,
                IntCounter::new("leaderproxy_reads_retried_total", "Reads retried on another backend.")
                    .expect("valid metric"),
            ),
            read_hedges: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_read_hedges_total",
                    "Second tries of reads sent before the first answered (reads.hedge).",
                )
                .expect("valid metric"),
            ),
            read_hedges_won: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_read_hedges_won_total",
                    "Reads answered by their second (hedged) try.",
                )
                .expect("valid metric"),
            ),
            read_try_timeouts: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_read_try_timeouts_total",
                    "First tries of reads that waited reads.try_timeout and were sent to another backend.",
                )
                .expect("valid metric"),
            ),
            read_latency_ejections: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_read_latency_ejections_total",
                    "Followers ejected because their read tries kept timing out (reads.try_timeout).",
                )
                .expect("valid metric"),
            ),
            writes_retried_ambiguous: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_writes_retried_ambiguous_total",
                    "Idempotent writes re-sent after a failure that may have reached the leader (writes.retry_ambiguous: idempotent).",
                )
                .expect("valid metric"),
            ),
            leader_reprobes: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_leader_reprobes_total",
                    "Immediate re-probes of every backend asked for by the request path (5xx or timeout from the leader, transport failure), after rate limiting.",
                )
                .expect("valid metric"),
            ),
            replay_budget_exhausted: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_replay_budget_exhausted_total",
                    "Request bodies streamed without a copy for a re-send because limits.replay_buffer_bytes was in use.",
                )
                .expect("valid metric"),
            ),
            reloads_ok: reloads.with_label_values(&["ok"]),
            reloads_error: reloads.with_label_values(&["error"]),
            last_reload_success: reg(
                &r,
                IntGauge::new(
                    "leaderproxy_config_last_reload_success",
                    "1 if the last config reload succeeded (or none was tried), 0 if it failed.",
                )
                .expect("valid metric"),
            ),
            client_connections: reg(
                &r,
                IntGauge::new("leaderproxy_client_connections", "Open client connections.").expect("valid metric"),
            ),
            rejected_connections: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_rejected_connections_total",
                    "Client connections closed at accept because limits.max_connections was reached.",
                )
                .expect("valid metric"),
            ),
            admin_rejected_connections: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_admin_rejected_connections_total",
                    "Admin API connections closed at accept because limits.admin_max_connections was reached.",
                )
                .expect("valid metric"),
            ),
            proxy_protocol_errors: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_proxy_protocol_errors_total",
                    "Connections on a proxy_protocol listener closed because the PROXY header was missing, malformed or late.",
                )
                .expect("valid metric"),
            ),
            tls_cert_expiry: reg(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "leaderproxy_tls_cert_expiry_seconds",
                        "Seconds until a loaded certificate expires (negative once expired): kind=listener (name: the cert file), client (the client certificate file sent to backends), backend (name: the backend; the certificate it presented at the last handshake).",
                    ),
                    &["kind", "name"],
                )
                .expect("valid metric"),
            ),
            discovery_errors: counter_vec(
                "leaderproxy_discovery_errors_total",
                "Failed discovery lookups by source (dns, members); the last good set of backends stays.",
                &["source"],
            ),
            discovery_backends: gauge_vec(
                "leaderproxy_discovery_backends",
                "Addresses in the last good answer of a discovery source (dns, members).",
                &["source"],
            ),
            position: gauge_vec(
                "leaderproxy_backend_position",
                "The backend's replication position at its last position probe (positions.probe); absent until one succeeded.",
                &["backend"],
            ),
            lag: gauge_vec(
                "leaderproxy_backend_lag_positions",
                "How far the backend's probed position is behind the highest probed position (normally the leader's).",
                &["backend"],
            ),
            write_position_probes: counter_vec(
                "leaderproxy_write_position_probes_total",
                "Probes of the leader's position after writes whose answers carried none (one probe serves every write acknowledged before it started).",
                &["backend"],
            ),
            position_decreases: counter_vec(
                "leaderproxy_backend_position_decreases_total",
                "Position probes that answered less than the backend's last position (a replica resynced, a primary rewound, a member re-created): the position was cleared, not trusted.",
                &["backend"],
            ),
            sessions: reg(
                &r,
                IntGauge::new("leaderproxy_sessions", "Sessions remembered for read-your-writes.").expect("valid metric"),
            ),
            session_evictions: reg(
                &r,
                IntCounter::new(
                    "leaderproxy_session_evictions_total",
                    "Sessions forgotten because reads.session.capacity was reached (least recently used first).",
                )
                .expect("valid metric"),
            ),
            fresh_reads_follower: fresh_reads.with_label_values(&["follower"]),
            fresh_reads_leader: fresh_reads.with_label_values(&["leader"]),
            registry: r.clone(),
        };
        let build = gauge_vec(
            "leaderproxy_build_info",
            "Always 1; the version label tells the build.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.last_reload_success.set(1);
        m
    }

    /// Failed lookups of one discovery source.
    pub(crate) fn discovery_errors(&self, source: &str) -> IntCounter {
        self.discovery_errors.with_label_values(&[source])
    }

    /// Addresses in one discovery source's last good answer.
    pub(crate) fn discovered(&self, source: &str) -> IntGauge {
        self.discovery_backends.with_label_values(&[source])
    }

    /// Requests that never reached a backend (no leader, bad request, …).
    pub(crate) fn unrouted(&self, role: Role, status: u16) -> &IntCounter {
        let arr = match role {
            Role::Read => &self.unrouted_read,
            Role::Write => &self.unrouted_write,
        };
        &arr[class_index(status)]
    }

    /// The request duration histogram of `role`.
    pub(crate) fn duration(&self, role: Role) -> &Histogram {
        match role {
            Role::Read => &self.duration_read,
            Role::Write => &self.duration_write,
        }
    }

    /// Replaces the certificate expiry samples: `(kind, name, notAfter)`
    /// with `notAfter` in Unix seconds, reported relative to `now`.
    pub(crate) fn set_tls_expiry(&self, certs: &[(&str, String, i64)], now: i64) {
        self.tls_cert_expiry.reset();
        for (kind, name, not_after) in certs {
            self.tls_cert_expiry
                .with_label_values(&[*kind, name.as_str()])
                .set((not_after - now) as f64);
        }
    }

    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 << 10);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! One backend's metric handles: resolved once when the backend is created
//! ([`Metrics::backend`]), dropped when a reload removes it
//! ([`Metrics::forget_backend`]).

use prometheus::{Histogram, IntCounter, IntGauge};

use super::{class_index, Metrics, TlsReason, CLASSES};
use crate::config::Role;

/// Metric handles of one backend.
pub(crate) struct BackendMetrics {
    read: [IntCounter; 5],
    write: [IntCounter; 5],
    /// `leaderproxy_upstream_connect_errors_total`.
    pub(crate) connect_errors: IntCounter,
    /// Requests refused because every connection to the backend was in use.
    pub(crate) busy: IntCounter,
    /// `leaderproxy_upstream_timeouts_total`: no response headers in time.
    pub(crate) timeouts: IntCounter,
    /// `leaderproxy_backend_in_flight`: requests being served right now.
    pub(crate) in_flight: IntGauge,
    /// `leaderproxy_backend_healthy`: 1 while the health probe passes (after
    /// rise/fall).
    pub(crate) healthy: IntGauge,
    /// `leaderproxy_backend_is_leader`: 1 while it is the routed leader.
    pub(crate) is_leader: IntGauge,
    /// `leaderproxy_backend_ejected`: 1 while passive health ejects it.
    pub(crate) ejected: IntGauge,
    /// `leaderproxy_ejections_total`.
    pub(crate) ejections: IntCounter,
    /// `leaderproxy_probe_duration_seconds{kind="health"}`.
    pub(crate) probe_health: Histogram,
    /// `leaderproxy_probe_duration_seconds{kind="leader"}`.
    pub(crate) probe_leader: Histogram,
    /// `leaderproxy_probe_failures_total{kind="health"}`.
    pub(crate) probe_health_failures: IntCounter,
    /// `leaderproxy_probe_failures_total{kind="leader"}`.
    pub(crate) probe_leader_failures: IntCounter,
    /// `leaderproxy_probe_duration_seconds{kind="position"}`.
    pub(crate) probe_position: Histogram,
    /// `leaderproxy_probe_failures_total{kind="position"}`.
    pub(crate) probe_position_failures: IntCounter,
    /// Set by the monitor; removed while unknown.
    pub(crate) position: IntGauge,
    /// `leaderproxy_backend_lag_positions`: behind the highest probed position.
    pub(crate) lag: IntGauge,
    /// `leaderproxy_write_position_probes_total`.
    pub(crate) write_position_probes: IntCounter,
    /// `leaderproxy_backend_position_decreases_total`.
    pub(crate) position_decreases: IntCounter,
    /// By [`TlsReason::ALL`] index.
    pub(crate) tls_handshake_failures: [IntCounter; 4],
}

impl BackendMetrics {
    /// Counts one answered request of `role` by its status class.
    #[inline]
    pub(crate) fn request(&self, role: Role, status: u16) {
        let arr = match role {
            Role::Read => &self.read,
            Role::Write => &self.write,
        };
        arr[class_index(status)].inc();
    }
}

impl Metrics {
    /// Handles for one backend, resolved once.
    pub(crate) fn backend(&self, name: &str) -> BackendMetrics {
        let req = |role: &str| -> [IntCounter; 5] {
            CLASSES.map(|c| self.requests.with_label_values(&[role, name, c]))
        };
        BackendMetrics {
            read: req("read"),
            write: req("write"),
            connect_errors: self.connect_errors.with_label_values(&[name]),
            busy: self.busy.with_label_values(&[name]),
            timeouts: self.timeouts.with_label_values(&[name]),
            in_flight: self.in_flight.with_label_values(&[name]),
            healthy: self.healthy.with_label_values(&[name]),
            is_leader: self.is_leader.with_label_values(&[name]),
            ejected: self.ejected.with_label_values(&[name]),
            ejections: self.ejections.with_label_values(&[name]),
            probe_health: self.probe_duration.with_label_values(&[name, "health"]),
            probe_leader: self.probe_duration.with_label_values(&[name, "leader"]),
            probe_health_failures: self.probe_failures.with_label_values(&[name, "health"]),
            probe_leader_failures: self.probe_failures.with_label_values(&[name, "leader"]),
            probe_position: self.probe_duration.with_label_values(&[name, "position"]),
            probe_position_failures: self.probe_failures.with_label_values(&[name, "position"]),
            position: self.position.with_label_values(&[name]),
            lag: self.lag.with_label_values(&[name]),
            write_position_probes: self.write_position_probes.with_label_values(&[name]),
            position_decreases: self.position_decreases.with_label_values(&[name]),
            tls_handshake_failures: TlsReason::ALL.map(|r| {
                self.tls_handshake_failures
                    .with_label_values(&[name, r.label()])
            }),
        }
    }

    /// Drops the label sets of a backend that a reload removed.
    pub(crate) fn forget_backend(&self, name: &str) {
        for role in ["read", "write"] {
            for c in CLASSES {
                let _ = self.requests.remove_label_values(&[role, name, c]);
            }
        }
        for v in [
            &self.connect_errors,
            &self.busy,
            &self.timeouts,
            &self.ejections,
            &self.write_position_probes,
            &self.position_decreases,
        ] {
            let _ = v.remove_label_values(&[name]);
        }
        for v in [
            &self.in_flight,
            &self.healthy,
            &self.is_leader,
            &self.ejected,
            &self.position,
            &self.lag,
        ] {
            let _ = v.remove_label_values(&[name]);
        }
        for kind in ["health", "leader", "position"] {
            let _ = self.probe_duration.remove_label_values(&[name, kind]);
            let _ = self.probe_failures.remove_label_values(&[name, kind]);
        }
        for r in TlsReason::ALL {
            let _ = self
                .tls_handshake_failures
                .remove_label_values(&[name, r.label()]);
        }
    }
}

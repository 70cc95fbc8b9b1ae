//! What the admin API shows of each backend ([`BackendStatus`], with its
//! last probe results, [`ProbeStatus`]), read from the monitor's nodes.

use tokio::time::Instant;

use super::node::Node;

/// What the admin API shows of one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BackendStatus {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) weight: u32,
    pub(crate) healthy: bool,
    pub(crate) role: &'static str,
    pub(crate) in_flight: usize,
    pub(crate) ejected: bool,
    pub(crate) ejected_for_ms: Option<u64>,
    pub(crate) drained: bool,
    /// `static` (the config's `backends`), `dns` or `members`.
    pub(crate) source: &'static str,
    /// Discovery no longer lists it; kept while it leads.
    pub(crate) retiring: bool,
    /// `backends[].zone` (discovered backends have none).
    pub(crate) zone: Option<String>,
    /// `backends[].priority`: 0 = primary site (discovered backends: 0).
    pub(crate) priority: u32,
    /// A follower that first reads go to now (see `routing::tier`).
    pub(crate) in_read_tier: bool,
    pub(crate) idle_connections: usize,
    pub(crate) last_probe: ProbeStatus,
    /// Replication position at the last successful position probe.
    pub(crate) position: Option<u64>,
    /// Positions behind the leader's position in the last position round
    /// (`None` when either is unknown).
    pub(crate) lag: Option<u64>,
    /// More than `reads.max_lag` behind, or the lag is unknown: no reads.
    pub(crate) lagging: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ProbeStatus {
    pub(crate) health_ok: Option<bool>,
    pub(crate) health_latency_ms: Option<f64>,
    pub(crate) health_error: Option<String>,
    pub(crate) leader_claim: Option<bool>,
    pub(crate) leader_latency_ms: Option<f64>,
    pub(crate) leader_error: Option<String>,
    pub(crate) term: Option<u64>,
    pub(crate) position_error: Option<String>,
}

/// `leader`, `follower` (healthy) or `down`.
pub(super) fn role(leads: bool, healthy: bool) -> &'static str {
    if leads {
        "leader"
    } else if healthy {
        "follower"
    } else {
        "down"
    }
}

/// The admin view of node `n` at `now`: `leads` it is the table's leader,
/// `lag` its lag and whether it is lagging, `in_read_tier` first reads go
/// to it.
pub(super) fn status(
    n: &Node,
    now: Instant,
    leads: bool,
    (lag, lagging): (Option<u64>, bool),
    in_read_tier: bool,
) -> BackendStatus {
    let place = n.backend.placement();
    BackendStatus {
        name: n.backend.name().to_string(),
        url: n.backend.url.clone(),
        weight: n.backend.weight(),
        healthy: n.healthy(),
        role: role(leads, n.healthy()),
        in_flight: n.backend.in_flight(),
        ejected: n.ejected(now),
        ejected_for_ms: n
            .ejected_until
            .filter(|t| *t > now)
            .map(|t| (t - now).as_millis() as u64),
        drained: n.drained(),
        source: n.source,
        retiring: n.retiring,
        zone: place.zone.clone(),
        priority: place.priority,
        in_read_tier,
        idle_connections: n.backend.pool.idle_count(),
        last_probe: n.last.clone(),
        position: n.backend.position(),
        lag,
        lagging,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_leader_even_while_unhealthy() {
        assert_eq!(role(true, false), "leader");
        assert_eq!(role(false, true), "follower");
        assert_eq!(role(false, false), "down");
    }
}

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
    /// Median and 99th percentile of its reads' time to response headers
    /// over the last 5–10 s, in ms (`None`: no read answered in that time).
    pub(crate) read_p50_ms: Option<f64>,
    pub(crate) read_p99_ms: Option<f64>,
    /// Why a follower gets no first reads: `unhealthy`, `drained`,
    /// `ejected: latency`, `ejected: failures`, `lagging` or `spill` (a
    /// lower tier: reads only when the first is empty); `None`: the leader,
    /// or in the read tier.
    pub(crate) out: Option<&'static str>,
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

/// Why a follower is out of the read tier ([`BackendStatus::out`]).
pub(super) fn why_out(
    leads: bool,
    s: &super::build::Standing,
    ejected_for: super::ejection::Reason,
    in_read_tier: bool,
) -> Option<&'static str> {
    use super::ejection::Reason;
    if leads || in_read_tier {
        return None;
    }
    Some(if !s.healthy {
        "unhealthy"
    } else if s.drained {
        "drained"
    } else if s.ejected {
        match ejected_for {
            Reason::Latency { .. } => "ejected: latency",
            Reason::Failures => "ejected: failures",
        }
    } else if s.lagging {
        "lagging"
    } else {
        "spill"
    })
}

/// Milliseconds, to the microsecond.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
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
    let recent = n.backend.latency.snapshot(now.into_std());
    let q = |q| recent.quantile(q, 1).map(ms);
    let standing = n.standing(now, lagging);
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
        read_p50_ms: q(0.5),
        read_p99_ms: q(0.99),
        out: why_out(leads, &standing, n.ejected_for, in_read_tier),
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

    #[test]
    fn a_follower_out_of_the_tier_says_why() {
        use super::super::build::Standing;
        use super::super::ejection::Reason;
        let s = |healthy, drained, ejected, lagging| Standing {
            healthy,
            drained,
            ejected,
            lagging,
        };
        let lat = Reason::Latency {
            limit: std::time::Duration::from_millis(50),
        };
        let f = Reason::Failures;
        assert_eq!(why_out(true, &s(false, true, true, true), f, false), None);
        assert_eq!(why_out(false, &s(true, false, false, false), f, true), None);
        assert_eq!(
            why_out(false, &s(false, true, true, true), f, false),
            Some("unhealthy")
        );
        assert_eq!(
            why_out(false, &s(true, true, true, true), f, false),
            Some("drained")
        );
        assert_eq!(
            why_out(false, &s(true, false, true, true), lat, false),
            Some("ejected: latency")
        );
        assert_eq!(
            why_out(false, &s(true, false, true, true), f, false),
            Some("ejected: failures")
        );
        assert_eq!(
            why_out(false, &s(true, false, false, true), f, false),
            Some("lagging")
        );
        assert_eq!(
            why_out(false, &s(true, false, false, false), f, false),
            Some("spill")
        );
    }
}

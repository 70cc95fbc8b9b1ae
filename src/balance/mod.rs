//! Read-balancing policies over the healthy followers of a routing table.
//!
//! A [`Picker`] is built together with each routing table for that table's
//! follower list; picking never takes a lock (atomics only).

mod ip_hash;
mod least_conn;
mod round_robin;

use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Policy;

pub(crate) use ip_hash::IpHash;
pub(crate) use least_conn::LeastConn;
pub(crate) use round_robin::RoundRobin;

/// Chooses one follower for a read.
pub(crate) trait Pick: Send + Sync {
    /// Index into `followers` of the chosen one; `avoid` (a backend id) is
    /// skipped when another follower exists (read retry).
    fn pick(&self, followers: &[Arc<Backend>], client: IpAddr, avoid: Option<u64>)
        -> Option<usize>;
}

/// The policy state of one routing table.
pub enum Picker {
    /// `reads.policy: round_robin`: smooth weighted round robin.
    RoundRobin(RoundRobin),
    /// `reads.policy: least_connections`: fewest in flight, weighted.
    LeastConn(LeastConn),
    /// `reads.policy: ip_hash`: rendezvous hashing of the client address.
    IpHash(IpHash),
}

impl Picker {
    /// The state of `policy` over `followers` (their weights, for round robin).
    pub fn build(policy: Policy, followers: &[Arc<Backend>]) -> Picker {
        match policy {
            Policy::RoundRobin => Picker::RoundRobin(RoundRobin::new(
                &followers.iter().map(|b| b.weight()).collect::<Vec<_>>(),
            )),
            Policy::LeastConnections => Picker::LeastConn(LeastConn::default()),
            Policy::IpHash => Picker::IpHash(IpHash),
        }
    }

    /// Index into `followers` of the one a read from `client` goes to;
    /// `avoid` (a backend id) is skipped when another follower exists (read
    /// retry). `None` when `followers` is empty.
    #[inline]
    pub fn pick(
        &self,
        followers: &[Arc<Backend>],
        client: IpAddr,
        avoid: Option<u64>,
    ) -> Option<usize> {
        if followers.is_empty() {
            return None;
        }
        match self {
            Picker::RoundRobin(p) => p.pick(followers, client, avoid),
            Picker::LeastConn(p) => p.pick(followers, client, avoid),
            Picker::IpHash(p) => p.pick(followers, client, avoid),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::config::BackendConfig;
    use crate::metrics::Metrics;

    pub(crate) fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        let m = Metrics::new();
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let cfg = BackendConfig {
                    name: format!("b{i}"),
                    authority: format!("127.0.0.1:{}", 10000 + i).parse().unwrap(),
                    url: format!("http://127.0.0.1:{}", 10000 + i),
                    weight: *w,
                    h2c: false,
                    tls: None,
                    zone: None,
                    priority: 0,
                    max_connections: None,
                    tcp: None,
                };
                Arc::new(Backend::new(&cfg, &m, 1, 1024))
            })
            .collect()
    }
}

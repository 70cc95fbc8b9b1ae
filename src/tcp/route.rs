//! Where a TCP connection goes, and whether it may stay: pure decisions
//! over one routing-table snapshot, the same rules HTTP requests follow.
//!
//! - A **write** listener's connection goes to the confirmed write leader
//!   ([`RoutingTable::write_leader`]: one leader, routing ready, not fenced,
//!   not drained), and stays only while that backend is it: a new leader,
//!   no leader, a fence or a drain closes it, so no session keeps writing to
//!   a deposed primary.
//! - A **read** listener's connection goes to a follower of the read tier by
//!   the listener's policy, else of the spill tier, else to the leader when
//!   `reads.fallback_to_leader` is on. Under `on_unhealthy: close` it stays
//!   only while its backend is still eligible (leader, or a follower of any
//!   tier: healthy, within `reads.max_lag`, not drained, not ejected).

use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::balance::Picker;
use crate::config::{OnUnhealthy, Role, TcpListen, TcpProtocol};
use crate::routing::RoutingTable;

/// Why an open TCP connection is closed by the proxy (the `reason` label
/// of `leaderproxy_tcp_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Its backend is no longer the confirmed write leader.
    LeaderChange,
    /// Its follower left the read set (`on_unhealthy: close`).
    Unhealthy,
    /// No byte either way for `tcp[].idle`.
    Idle,
    /// No leader within `writes.hold` (or `writes.max_held` reached).
    NoLeader,
    /// A read listener found no backend to take the connection.
    NoBackend,
    /// Connecting to the backend failed.
    ConnectFailed,
    /// The proxy is shutting down and `shutdown_grace` ran out.
    Shutdown,
}

impl Close {
    /// Every reason, in label order.
    #[allow(dead_code)] // unused outside tests of its own once `tcp` went pub(crate) (issue 17)
    pub(crate) const ALL: [Close; 7] = [
        Close::LeaderChange,
        Close::Unhealthy,
        Close::Idle,
        Close::NoLeader,
        Close::NoBackend,
        Close::ConnectFailed,
        Close::Shutdown,
    ];

    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Close::LeaderChange => "leader_change",
            Close::Unhealthy => "unhealthy",
            Close::Idle => "idle",
            Close::NoLeader => "no_leader",
            Close::NoBackend => "no_backend",
            Close::ConnectFailed => "connect_failed",
            Close::Shutdown => "shutdown",
        }
    }
}

/// The backend a new connection of listener `l` goes to now; `None`:
/// there is none (a write connection is held, a read one closed).
/// `picker` is the listener's policy over `t.followers`.
pub(crate) fn target<'t>(
    t: &'t RoutingTable,
    l: &TcpListen,
    picker: &Picker,
    client: IpAddr,
) -> Option<&'t Arc<Backend>> {
    match l.to {
        Role::Write => t.write_leader(),
        Role::Read => picker
            .pick(&t.followers, client, None)
            .map(|i| &t.followers[i])
            .or_else(|| {
                t.spill_picker
                    .pick(&t.spill, client, None)
                    .map(|i| &t.spill[i])
            })
            .or_else(|| t.cfg.reads.fallback_to_leader.then(|| t.leader()).flatten()),
    }
    .filter(|b| b.tcp.is_some())
}

/// Whether a connection of listener `l` to backend `b` must close under
/// table `t`, and why.
pub(crate) fn must_close(t: &RoutingTable, l: &TcpListen, b: &Backend) -> Option<Close> {
    // A resp listener's own connections (pinned, tunnelled) are the primary's.
    let to = match l.protocol {
        TcpProtocol::Resp => Role::Write,
        TcpProtocol::Raw => l.to,
    };
    match to {
        Role::Write => match t.write_leader() {
            Some(w) if w.id == b.id => None,
            _ => Some(Close::LeaderChange),
        },
        Role::Read if l.on_unhealthy == OnUnhealthy::Keep => None,
        Role::Read => {
            let is = |list: &[Arc<Backend>]| list.iter().any(|x| x.id == b.id);
            let leader = t.leader().is_some_and(|x| x.id == b.id);
            let eligible = leader || is(&t.followers) || is(&t.spill) || is(&t.rest);
            (!eligible || b.is_drained()).then_some(Close::Unhealthy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Policy, DEFAULT_TCP_IDLE};
    use crate::routing::{LeaderInfo, LeaderState};

    fn listener(to: Role, on_unhealthy: OnUnhealthy) -> TcpListen {
        TcpListen {
            addr: "127.0.0.1:0".parse().unwrap(),
            to,
            protocol: crate::config::TcpProtocol::Raw,
            resp: Default::default(),
            policy: Policy::RoundRobin,
            proxy_protocol: false,
            send_proxy_protocol: false,
            idle: DEFAULT_TCP_IDLE,
            on_unhealthy,
        }
    }

    fn backend(name: &str, port: u16) -> Arc<Backend> {
        let mut cfg =
            crate::config::BackendConfig::plain(name, format!("127.0.0.1:{port}").parse().unwrap());
        cfg.tcp = Some(format!("127.0.0.1:{}", port + 1000).parse().unwrap());
        Arc::new(Backend::new(&cfg, &crate::metrics::Metrics::new(), 1, 8))
    }

    fn cfg(fallback: bool) -> Arc<crate::config::Config> {
        let yaml = format!(
            "listen: 127.0.0.1:0\nbackends: [{{ name: a, url: \"http://127.0.0.1:1\" }}]\n\
             leader: {{ path: /l, expect: {{ status: [200] }} }}\nreads: {{ fallback_to_leader: {fallback} }}\n"
        );
        Arc::new(crate::config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap())
    }

    /// A ready table led by `leader` with `followers` in the read tier.
    fn table(
        leader: Option<&Arc<Backend>>,
        followers: &[&Arc<Backend>],
        fallback: bool,
    ) -> RoutingTable {
        let all: Vec<Arc<Backend>> = leader
            .into_iter()
            .chain(followers.iter().copied())
            .cloned()
            .collect();
        let mut t = RoutingTable::empty(all, cfg(fallback));
        t.ready = true;
        t.leader = match leader {
            Some(l) => LeaderState::Known(LeaderInfo {
                backend: l.clone(),
                since: std::time::SystemTime::now(),
                term: None,
            }),
            None => LeaderState::None,
        };
        t.followers = followers.iter().map(|b| (*b).clone()).collect();
        t.picker = Picker::build(Policy::RoundRobin, &t.followers);
        t
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_write_connection_goes_to_the_confirmed_leader_only() {
        let (l, f) = (backend("l", 1), backend("f", 2));
        let w = listener(Role::Write, OnUnhealthy::Keep);
        let t = table(Some(&l), &[&f], true);
        assert_eq!(target(&t, &w, &t.picker, CLIENT).unwrap().id, l.id);
        l.fence();
        assert!(target(&t, &w, &t.picker, CLIENT).is_none(), "fenced: held");
        let none = table(None, &[&f], true);
        assert!(target(&none, &w, &none.picker, CLIENT).is_none());
    }

    #[test]
    fn a_write_connection_closes_when_its_backend_stops_leading() {
        let (l, f) = (backend("l", 1), backend("f", 2));
        let w = listener(Role::Write, OnUnhealthy::Keep);
        assert_eq!(must_close(&table(Some(&l), &[&f], true), &w, &l), None);
        let flipped = table(Some(&f), &[&l], true);
        assert_eq!(must_close(&flipped, &w, &l), Some(Close::LeaderChange));
        let leaderless = table(None, &[&l, &f], true);
        assert_eq!(must_close(&leaderless, &w, &l), Some(Close::LeaderChange));
        let t = table(Some(&l), &[&f], true);
        l.fence();
        assert_eq!(must_close(&t, &w, &l), Some(Close::LeaderChange));
    }

    #[test]
    fn read_connections_spread_over_followers_then_fall_back_to_the_leader() {
        let (l, f1, f2) = (backend("l", 1), backend("f1", 2), backend("f2", 3));
        let r = listener(Role::Read, OnUnhealthy::Keep);
        let t = table(Some(&l), &[&f1, &f2], true);
        let picked: Vec<u64> = (0..4)
            .map(|_| target(&t, &r, &t.picker, CLIENT).unwrap().id)
            .collect();
        assert_eq!(picked, vec![f1.id, f2.id, f1.id, f2.id]);
        let alone = table(Some(&l), &[], true);
        assert_eq!(target(&alone, &r, &alone.picker, CLIENT).unwrap().id, l.id);
        let strict = table(Some(&l), &[], false);
        assert!(target(&strict, &r, &strict.picker, CLIENT).is_none());
    }

    #[test]
    fn a_read_connection_closes_on_unhealthy_only_when_asked_to() {
        let (l, f1, f2) = (backend("l", 1), backend("f1", 2), backend("f2", 3));
        let keep = listener(Role::Read, OnUnhealthy::Keep);
        let close = listener(Role::Read, OnUnhealthy::Close);
        let without_f1 = table(Some(&l), &[&f2], true);
        assert_eq!(must_close(&without_f1, &keep, &f1), None);
        assert_eq!(must_close(&without_f1, &close, &f1), Some(Close::Unhealthy));
        assert_eq!(must_close(&without_f1, &close, &f2), None);
        let promoted = table(Some(&f1), &[&f2], true);
        assert_eq!(must_close(&promoted, &close, &f1), None, "still healthy");
        f2.set_drained(true);
        assert_eq!(must_close(&without_f1, &close, &f2), Some(Close::Unhealthy));
    }
}

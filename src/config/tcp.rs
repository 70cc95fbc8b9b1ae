//! `tcp`: listeners that carry raw TCP (PostgreSQL, MySQL, Redis, …) to
//! the cluster, beside or instead of the HTTP `listen` addresses, and
//! `backends[].tcp`, the data address each backend's bytes go to while its
//! probes use its `url`. Validated here; the connections are
//! `crate::tcp`'s.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::routes::Role;
use super::{Dur, Policy, Validator};

/// Default `tcp[].idle`: a connection with no byte either way for this
/// long is closed (HAProxy's `timeout client`/`server` in Patroni's
/// documented template).
pub(crate) const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcpListen {
    listen: String,
    to: Role,
    policy: Option<Policy>,
    #[serde(default)]
    proxy_protocol: bool,
    #[serde(default)]
    send_proxy_protocol: bool,
    idle: Option<Dur>,
    on_unhealthy: Option<OnUnhealthy>,
}

/// What a read listener does with its open connections to a follower
/// that leaves the read set (unhealthy, lagging past `reads.max_lag`,
/// drained, ejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnUnhealthy {
    /// Keep them (default): the follower gets no new connections.
    #[default]
    Keep,
    /// Close them at once.
    Close,
}

impl OnUnhealthy {
    /// The YAML spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OnUnhealthy::Keep => "keep",
            OnUnhealthy::Close => "close",
        }
    }
}

/// One `tcp` listener.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpListen {
    /// `tcp[].listen`: the address to accept on.
    pub addr: SocketAddr,
    /// `tcp[].to`: `write`: every connection goes to the confirmed write
    /// leader, held while there is none (up to `writes.hold`) and closed
    /// when it stops being the leader; `read`: connections are spread
    /// over the read set.
    pub to: Role,
    /// `tcp[].policy`: how a read listener picks a follower; default
    /// `reads.policy`.
    pub(crate) policy: Policy,
    /// `tcp[].proxy_protocol`: every connection starts with a PROXY
    /// protocol header (v1 or v2) from a `trusted_proxies` peer; default false.
    pub(crate) proxy_protocol: bool,
    /// `tcp[].send_proxy_protocol`: a PROXY protocol v2 header with the
    /// client's address starts every connection to a backend; default false.
    pub(crate) send_proxy_protocol: bool,
    /// `tcp[].idle`: no byte either way for this long closes the
    /// connection; default [`DEFAULT_TCP_IDLE`] (30 minutes).
    pub(crate) idle: Duration,
    /// `tcp[].on_unhealthy` (read listeners): default `keep`.
    pub(crate) on_unhealthy: OnUnhealthy,
}

impl Validator {
    /// `tcp`: each listener's address (its own, not an HTTP or admin one),
    /// and what it needs from the rest of the config.
    pub(super) fn tcp(
        &mut self,
        raw: Vec<RawTcpListen>,
        taken: &[SocketAddr],
        reads_policy: Policy,
        trusted_proxies: bool,
    ) -> Vec<TcpListen> {
        let mut out: Vec<TcpListen> = Vec::with_capacity(raw.len());
        for (i, l) in raw.into_iter().enumerate() {
            let key = format!("tcp[{i}]");
            let addr = self.addr(&format!("{key}.listen"), &l.listen);
            if let Some(addr) = addr.filter(|a| a.port() != 0) {
                if taken.contains(&addr) {
                    self.bad(
                        &format!("{key}.listen"),
                        format!("{addr} is also an HTTP listen or the admin address"),
                    );
                }
                if let Some(j) = out.iter().position(|o| o.addr == addr) {
                    self.bad(
                        &format!("{key}.listen"),
                        format!("{addr} is also tcp[{j}].listen"),
                    );
                }
            }
            if l.to == Role::Write && l.policy.is_some() {
                self.bad(
                    &format!("{key}.policy"),
                    "a write listener has one target, the leader: policy is for `to: read`",
                );
            }
            if l.to == Role::Write && l.on_unhealthy.is_some() {
                self.bad(
                    &format!("{key}.on_unhealthy"),
                    "a write listener always closes connections to a former leader: on_unhealthy is for `to: read`",
                );
            }
            if l.proxy_protocol && !trusted_proxies {
                self.bad(
                    &format!("{key}.proxy_protocol"),
                    "needs trusted_proxies: the addresses allowed to send a PROXY protocol header",
                );
            }
            let idle = l.idle.map_or(DEFAULT_TCP_IDLE, |d| d.0);
            if idle.is_zero() {
                self.bad(&format!("{key}.idle"), "must be more than 0");
            }
            let Some(addr) = addr else { continue };
            out.push(TcpListen {
                addr,
                to: l.to,
                policy: l.policy.unwrap_or(reads_policy),
                proxy_protocol: l.proxy_protocol,
                send_proxy_protocol: l.send_proxy_protocol,
                idle,
                on_unhealthy: l.on_unhealthy.unwrap_or_default(),
            });
        }
        out
    }

    /// `data_port`: the data address of each backend without `tcp` is its
    /// URL's host at this port (Patroni: the REST API on 8008 is probed,
    /// PostgreSQL on 5432 carries the bytes).
    pub(super) fn data_port(&mut self, port: Option<u16>, backends: &mut [super::BackendConfig]) {
        let Some(port) = port else { return };
        if port == 0 {
            self.bad("data_port", "must be a port, 1 to 65535");
            return;
        }
        for b in backends.iter_mut().filter(|b| b.tcp.is_none()) {
            b.tcp = format!("{}:{port}", b.authority.host()).parse().ok();
        }
    }

    /// `backends[i].tcp`: the data address, `host:port`.
    pub(super) fn data_address(&mut self, key: &str, s: &str) -> Option<http::uri::Authority> {
        match s.parse::<http::uri::Authority>() {
            Ok(a) if a.port_u16().is_some() && !a.host().is_empty() && !s.contains('@') => Some(a),
            _ => {
                self.bad(
                    key,
                    format!("invalid data address {s:?} (write host:port, e.g. 127.0.0.1:5432)"),
                );
                None
            }
        }
    }
}

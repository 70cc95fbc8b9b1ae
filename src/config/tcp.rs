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
    to: Option<Role>,
    #[serde(default)]
    protocol: TcpProtocol,
    resp: Option<RawResp>,
    policy: Option<Policy>,
    #[serde(default)]
    proxy_protocol: bool,
    #[serde(default)]
    send_proxy_protocol: bool,
    idle: Option<Dur>,
    on_unhealthy: Option<OnUnhealthy>,
}

/// `tcp[].protocol`: what a listener understands of the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpProtocol {
    /// Nothing (default): each connection goes whole to one backend, by `to`.
    #[default]
    Raw,
    /// Redis's RESP: each command goes to the primary or a replica by its
    /// class (`crate::tcp::resp`).
    Resp,
}

impl TcpProtocol {
    /// The YAML spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TcpProtocol::Raw => "raw",
            TcpProtocol::Resp => "resp",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResp {
    upstream_connections: Option<usize>,
    max_bulk: Option<super::Size>,
    max_elements: Option<u64>,
    max_inline: Option<super::Size>,
    wait_replicas: Option<u32>,
    wait_timeout: Option<super::Dur>,
}

/// Default `tcp[].resp.upstream_connections`: shared connections per
/// backend, per worker thread, per login (`AUTH`/`HELLO` state).
pub(crate) const DEFAULT_RESP_UPSTREAMS: usize = 1;

/// `tcp[].resp`: a RESP listener's settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RespOptions {
    /// `upstream_connections`: pipelined connections each worker thread
    /// shares between its unpinned clients, per backend and login; default
    /// [`DEFAULT_RESP_UPSTREAMS`] (1), at most 64.
    pub(crate) upstream_connections: usize,
    /// `max_bulk`: the longest bulk string of a client's command, in
    /// bytes; default 512MiB (Redis's `proto-max-bulk-len`).
    pub(crate) max_bulk: u64,
    /// `max_elements`: the most arguments of one command; default 1048576.
    pub(crate) max_elements: u64,
    /// `max_inline`: the longest inline command, in bytes; default 64KiB.
    pub(crate) max_inline: usize,
    /// `wait_replicas`: a write on a shared connection (and a transaction's
    /// `EXEC`) is answered only once this many replicas acknowledged it
    /// (Redis's `WAIT`, sent after it on the same connection); a write
    /// fewer replicas acknowledged within `wait_timeout` gets an error
    /// saying it was applied on the primary but may be lost at a failover.
    /// Default 0: off (answered when the primary applied it), at most 16.
    pub(crate) wait_replicas: u32,
    /// `wait_timeout`: how long a write waits for `wait_replicas`
    /// acknowledgements; default 1s, 1ms to 60s.
    pub(crate) wait_timeout: Duration,
}

impl Default for RespOptions {
    fn default() -> RespOptions {
        RespOptions {
            upstream_connections: DEFAULT_RESP_UPSTREAMS,
            max_bulk: 512 << 20,
            max_elements: 1 << 20,
            max_inline: 64 << 10,
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
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
    /// `tcp[].protocol`: default `raw`.
    pub protocol: TcpProtocol,
    /// `tcp[].resp` (RESP listeners): default [`RespOptions::default`].
    pub(crate) resp: RespOptions,
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
            let to = match (l.protocol, l.to) {
                (TcpProtocol::Raw, Some(to)) => to,
                (TcpProtocol::Raw, None) => {
                    self.bad(
                        &format!("{key}.to"),
                        "missing: `write` (the leader) or `read` (the followers)",
                    );
                    Role::Write
                }
                (TcpProtocol::Resp, Some(_)) => {
                    self.bad(
                        &format!("{key}.to"),
                        "a resp listener sends each command where its class says (writes to the primary, reads to the replicas): remove `to`",
                    );
                    Role::Read
                }
                (TcpProtocol::Resp, None) => Role::Read,
            };
            if l.resp.is_some() && l.protocol != TcpProtocol::Resp {
                self.bad(&format!("{key}.resp"), "only for `protocol: resp`");
            }
            let resp = self.resp(&key, l.resp);
            if l.protocol == TcpProtocol::Resp && l.on_unhealthy.is_some() {
                self.bad(
                    &format!("{key}.on_unhealthy"),
                    "a resp listener picks a node per command: on_unhealthy is for raw `to: read` listeners",
                );
            }
            if l.protocol == TcpProtocol::Resp && l.send_proxy_protocol {
                self.bad(
                    &format!("{key}.send_proxy_protocol"),
                    "a resp listener shares its upstream connections between clients: no PROXY header can name one client",
                );
            }
            if to == Role::Write && l.policy.is_some() {
                self.bad(
                    &format!("{key}.policy"),
                    "a write listener has one target, the leader: policy is for `to: read`",
                );
            }
            if to == Role::Write && l.on_unhealthy.is_some() {
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
                to,
                protocol: l.protocol,
                resp,
                policy: l.policy.unwrap_or(reads_policy),
                proxy_protocol: l.proxy_protocol,
                send_proxy_protocol: l.send_proxy_protocol,
                idle,
                on_unhealthy: l.on_unhealthy.unwrap_or_default(),
            });
        }
        out
    }

    /// `tcp[i].resp`: within bounds; defaults where unset.
    fn resp(&mut self, key: &str, raw: Option<RawResp>) -> RespOptions {
        let mut o = RespOptions::default();
        let Some(r) = raw else { return o };
        if let Some(n) = r.upstream_connections {
            if !(1..=64).contains(&n) {
                self.bad(
                    &format!("{key}.resp.upstream_connections"),
                    "must be 1 to 64",
                );
            }
            o.upstream_connections = n.clamp(1, 64);
        }
        if let Some(s) = r.max_bulk {
            if s.0 == 0 || s.0 > 512 << 20 {
                self.bad(&format!("{key}.resp.max_bulk"), "must be 1 byte to 512MiB");
            }
            o.max_bulk = s.0.clamp(1, 512 << 20);
        }
        if let Some(n) = r.max_elements {
            if n == 0 || n > 1 << 24 {
                self.bad(&format!("{key}.resp.max_elements"), "must be 1 to 16777216");
            }
            o.max_elements = n.clamp(1, 1 << 24);
        }
        if let Some(s) = r.max_inline {
            if s.0 < 64 || s.0 > 1 << 20 {
                self.bad(
                    &format!("{key}.resp.max_inline"),
                    "must be 64 bytes to 1MiB",
                );
            }
            o.max_inline = s.0.clamp(64, 1 << 20) as usize;
        }
        if let Some(n) = r.wait_replicas {
            if n > 16 {
                self.bad(&format!("{key}.resp.wait_replicas"), "must be 0 to 16");
            }
            o.wait_replicas = n.min(16);
        }
        if let Some(d) = r.wait_timeout {
            if d.0 < Duration::from_millis(1) || d.0 > Duration::from_secs(60) {
                self.bad(&format!("{key}.resp.wait_timeout"), "must be 1ms to 60s");
            }
            o.wait_timeout = d.0.clamp(Duration::from_millis(1), Duration::from_secs(60));
        }
        o
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

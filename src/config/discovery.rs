//! `discovery`: backends found at run time, beside or instead of the static
//! `backends` list — by DNS (`discovery.dns`: A/AAAA records of a name, or
//! SRV records) and by asking the cluster (`discovery.members`: the known
//! members' own member list). Validated here; the loops live in
//! `crate::discovery`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::certs::{client_certs, ClientCerts, TlsFile};
use super::upstream_tls::{RawUpstreamTls, UpstreamTlsSettings};
use super::{Dur, Validator};

/// Default `discovery.dns.interval` and `discovery.members.interval`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Default `discovery.max_backends`: discovered backends at most.
pub(crate) const DEFAULT_MAX_BACKENDS: u32 = 64;

/// Default `discovery.remove_after`: consecutive answers of its source
/// that must leave a discovered backend out before it is removed.
pub(crate) const DEFAULT_REMOVE_AFTER: u32 = 3;

/// Highest `discovery.max_backends` and `discovery.remove_after` taken.
const MAX_COUNT: u32 = 10_000;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    dns: Option<RawDns>,
    members: Option<RawMembers>,
    max_backends: Option<u32>,
    remove_after: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    name: Option<String>,
    srv: Option<String>,
    port: Option<u16>,
    scheme: Option<Scheme>,
    interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    kind: MembersKind,
    interval: Option<Dur>,
}

/// The scheme of discovered backends' URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `http://host:port`.
    Http,
    /// `https://host:port`, with `upstream_tls`.
    Https,
}

/// Which cluster's member list `discovery.members` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembersKind {
    /// etcd v3: `POST /v3/cluster/member/list`, each started member's
    /// `name` and first `clientURLs` entry.
    Etcd,
    /// Patroni: `GET /cluster`, each member's `name` and `api_url` (the
    /// REST API).
    Patroni,
    /// rqlite: `GET /nodes?ver=2` (the object keyed by node id of rqlite
    /// 7/8, or the list of newer ones), each node's id and `api_addr`.
    Rqlite,
    /// consul: `GET /v1/status/peers`, the raft peers' hosts at the scheme
    /// and HTTP port of the server that answered (the peers' own port is
    /// the server RPC port, not HTTP).
    Consul,
}

/// What DNS is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsLookup {
    /// A and AAAA records of `name`; every address serves on `port`.
    Addresses {
        /// The name asked.
        name: String,
        /// The port every address serves on.
        port: u16,
    },
    /// SRV records of `name`: each target host and its port.
    Srv {
        /// The SRV name (`_service._proto.name`).
        name: String,
    },
}

/// `discovery.dns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDiscovery {
    /// The name asked and the kind of records.
    pub lookup: DnsLookup,
    /// Default `http`.
    pub scheme: Scheme,
    /// Default 10s.
    pub interval: Duration,
}

/// `discovery.members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersDiscovery {
    /// Which API the member list is read from.
    pub kind: MembersKind,
    /// Default 10s.
    pub interval: Duration,
}

/// TLS for discovered `https://` backends: `upstream_tls`, with the
/// certificate checked against each backend's own host (or
/// `upstream_tls.server_name`).
#[derive(Debug)]
pub struct DiscoveredTls {
    /// `upstream_tls` as written (paths resolved).
    pub(crate) settings: UpstreamTlsSettings,
    /// The roots and client certificate read from the settings.
    pub(crate) client: Arc<ClientCerts>,
}

/// `discovery`; default: nothing discovered.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// `discovery.dns`; default none.
    pub dns: Option<DnsDiscovery>,
    /// `discovery.members`; default none.
    pub members: Option<MembersDiscovery>,
    /// Read when discovered backends may be `https://` (`dns.scheme:
    /// https`, or `members` with `upstream_tls` set).
    pub(crate) tls: Option<Arc<DiscoveredTls>>,
    /// Discovered backends at most (all sources together, static ones not
    /// counted); addresses beyond it are left out. Default 64.
    pub(crate) max_backends: u32,
    /// A discovered backend is removed once this many consecutive answers
    /// of its source did not list it (1 = at the first). Default 3.
    pub(crate) remove_after: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            dns: None,
            members: None,
            tls: None,
            max_backends: DEFAULT_MAX_BACKENDS,
            remove_after: DEFAULT_REMOVE_AFTER,
        }
    }
}

impl DiscoveryConfig {
    /// Whether any source discovers backends.
    #[cfg(test)]
    pub(crate) fn is_on(&self) -> bool {
        self.dns.is_some() || self.members.is_some()
    }
}

/// A DNS name as the resolver takes it: letters, digits, `-`, `_`, dots.
fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        })
}

impl Validator {
    /// `discovery`, and whether the config has any source of backends.
    pub(super) fn discovery(
        &mut self,
        raw: Option<RawDiscovery>,
        static_backends: usize,
        upstream_tls: Option<&RawUpstreamTls>,
        base: &Path,
    ) -> DiscoveryConfig {
        let raw = raw.unwrap_or_default();
        let max_backends = self.count(
            "discovery.max_backends",
            raw.max_backends,
            DEFAULT_MAX_BACKENDS,
        );
        let remove_after = self.count(
            "discovery.remove_after",
            raw.remove_after,
            DEFAULT_REMOVE_AFTER,
        );
        let dns_given = raw.dns.is_some();
        let dns = raw.dns.and_then(|d| self.dns(d));
        let members = raw.members.map(|m| {
            let interval = m.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
            if interval.is_zero() {
                self.bad("discovery.members.interval", "must be more than 0");
            }
            MembersDiscovery {
                kind: m.kind,
                interval,
            }
        });
        if static_backends == 0 {
            if members.is_some() && !dns_given {
                self.bad(
                    "discovery.members",
                    "asks the known members for the member list: give at least one of them in backends, or discovery.dns to find them",
                );
            } else if !dns_given {
                self.bad(
                    "backends",
                    "at least one backend is needed (or discovery.dns to find them)",
                );
            }
        }
        let https = dns.as_ref().is_some_and(|d| d.scheme == Scheme::Https)
            || (members.is_some() && upstream_tls.is_some());
        let tls = if https {
            self.discovered_tls(upstream_tls, base)
        } else {
            None
        };
        DiscoveryConfig {
            dns,
            members,
            tls,
            max_backends,
            remove_after,
        }
    }

    /// A count key of `discovery`: 1 to 10000, `default` when not given.
    fn count(&mut self, key: &str, given: Option<u32>, default: u32) -> u32 {
        match given {
            None => default,
            Some(n) if (1..=MAX_COUNT).contains(&n) => n,
            Some(_) => {
                self.bad(key, format!("must be from 1 to {MAX_COUNT}"));
                default
            }
        }
    }

    fn dns(&mut self, d: RawDns) -> Option<DnsDiscovery> {
        let interval = d.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        if interval.is_zero() {
            self.bad("discovery.dns.interval", "must be more than 0");
        }
        let scheme = d.scheme.unwrap_or(Scheme::Http);
        let lookup = match (d.name, d.srv) {
            (Some(name), None) => {
                let port = match d.port {
                    None => {
                        self.bad(
                            "discovery.dns",
                            "port is needed with name: the port every address serves on (e.g. 2379)",
                        );
                        None
                    }
                    Some(0) => {
                        self.bad("discovery.dns.port", "must be more than 0");
                        None
                    }
                    Some(p) => Some(p),
                };
                if !valid_dns_name(&name) {
                    self.bad("discovery.dns.name", format!("invalid DNS name {name:?}"));
                    return None;
                }
                DnsLookup::Addresses { name, port: port? }
            }
            (None, Some(name)) => {
                if d.port.is_some() {
                    self.bad(
                        "discovery.dns.port",
                        "not with srv: the SRV records give each target's port",
                    );
                }
                if !valid_dns_name(&name) {
                    self.bad("discovery.dns.srv", format!("invalid DNS name {name:?}"));
                    return None;
                }
                DnsLookup::Srv { name }
            }
            _ => {
                self.bad(
                    "discovery.dns",
                    "give exactly one of name (A/AAAA records, with port) and srv (SRV records)",
                );
                return None;
            }
        };
        Some(DnsDiscovery {
            lookup,
            scheme,
            interval,
        })
    }

    /// The client certificates for discovered `https://` backends, from `upstream_tls`
    /// (the system roots when it is not set).
    fn discovered_tls(
        &mut self,
        raw: Option<&RawUpstreamTls>,
        base: &Path,
    ) -> Option<Arc<DiscoveredTls>> {
        let settings = raw
            .map(|r| r.settings(base))
            .unwrap_or(UpstreamTlsSettings {
                ca: None,
                cert: None,
                key: None,
                server_name: None,
                insecure_skip_verify: false,
            });
        let cert_key = match (&settings.cert, &settings.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            // The static backends' check reports a lone cert or key.
            (None, None) => None,
            _ => {
                if !self
                    .problems
                    .iter()
                    .any(|p| p.key.starts_with("upstream_tls"))
                {
                    self.bad(
                        "upstream_tls",
                        "a client certificate needs its key, and a key its certificate",
                    );
                }
                return None;
            }
        };
        match client_certs(
            settings.ca.as_deref(),
            cert_key,
            settings.insecure_skip_verify,
        ) {
            Ok(client) => Some(Arc::new(DiscoveredTls {
                settings,
                client: Arc::new(client),
            })),
            Err((file, e)) => {
                let key = match file {
                    TlsFile::Ca => "upstream_tls.ca",
                    TlsFile::Cert => "upstream_tls.cert",
                    TlsFile::Key => "upstream_tls.key",
                };
                if !self.problems.iter().any(|p| p.message == e) {
                    self.bad(key, e);
                }
                None
            }
        }
    }
}

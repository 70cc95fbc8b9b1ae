//! `backends` (the static cluster nodes: name, URL, weight, zone,
//! priority, connection cap) and `passive` (ejection of failing followers).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::validator::valid_zone;
use super::{upstream_tls, BackendTls, Dur, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    name: String,
    url: Option<String>,
    weight: Option<u32>,
    #[serde(default)]
    h2c: bool,
    tls: Option<upstream_tls::RawUpstreamTls>,
    zone: Option<String>,
    priority: Option<u32>,
    max_connections: Option<usize>,
    tcp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    consecutive_failures: Option<u32>,
    base_ejection: Option<Dur>,
    max_ejection: Option<Dur>,
    max_ejection_percent: Option<u32>,
}

/// A backend node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique among the backends; the `backend` label of its metrics.
    pub name: String,
    /// `host:port` to connect to: the URL's, or, for a backend without a
    /// URL, its data address (`tcp`; never used for HTTP then).
    pub authority: http::uri::Authority,
    /// The URL as written; empty when the backend has none (native probes
    /// and TCP listeners only: [`BackendConfig::has_url`]).
    pub url: String,
    /// Relative share of reads; default 1.
    pub weight: u32,
    /// The backend speaks HTTP/2 without TLS (prior knowledge): requests
    /// that arrive over HTTP/2 (gRPC) are forwarded over HTTP/2. Default
    /// false: everything goes upstream as HTTP/1.1.
    pub h2c: bool,
    /// `https://`: TLS settings and client config; `None` for `http://`.
    pub tls: Option<std::sync::Arc<BackendTls>>,
    /// Failure domain (data centre, availability zone); default none.
    /// Reads prefer followers in `local_zone`.
    pub zone: Option<String>,
    /// 0 (default) = primary site; higher = standby site that gets reads
    /// only when no follower of a lower priority can take them.
    pub priority: u32,
    /// Most connections this proxy keeps open to the backend (idle or in
    /// use, HTTP/1.1 and HTTP/2, all workers together); `None` (default):
    /// `limits.max_upstream_connections_per_backend`. See
    /// `Config::max_upstream_connections`.
    pub max_connections: Option<usize>,
    /// The data address TCP listeners connect to (`host:port`), beside the
    /// `url` the probes use; `None` (default): the backend takes no TCP.
    pub tcp: Option<http::uri::Authority>,
}

impl BackendConfig {
    /// Whether it has an HTTP address (`url`): needed by HTTP probes and
    /// HTTP listeners, not by native probes and TCP listeners.
    pub fn has_url(&self) -> bool {
        !self.url.is_empty()
    }

    /// A plain `http://` backend `name` at `addr` with every default, as
    /// `{ name, url: "http://addr" }` validates to: weight 1, HTTP/1.1, no
    /// TLS, no zone, priority 0, the default connection limit.
    pub fn plain(name: &str, addr: SocketAddr) -> BackendConfig {
        BackendConfig {
            name: name.to_string(),
            authority: addr.to_string().parse().expect("ip:port is an authority"),
            url: format!("http://{addr}"),
            weight: 1,
            h2c: false,
            tls: None,
            zone: None,
            priority: 0,
            max_connections: None,
            tcp: None,
        }
    }
}

/// `passive`: followers ejected after consecutive failures, for a
/// doubling time.
#[derive(Debug, Clone)]
pub(crate) struct PassiveConfig {
    /// Consecutive connect failures or 5xx from a follower that eject it; default 5 (0 = off).
    pub(crate) consecutive_failures: u32,
    /// First ejection lasts this long, doubling on each repeat; default 10s.
    pub(crate) base_ejection: Duration,
    /// Cap of the doubling; default 5m.
    pub(crate) max_ejection: Duration,
    /// Never eject more than this share of followers; default 50.
    pub(crate) max_ejection_percent: u32,
}

impl Validator {
    pub(super) fn backends(
        &mut self,
        raw: Vec<RawBackend>,
        upstream_tls: Option<&upstream_tls::RawUpstreamTls>,
        base: &Path,
        http_uses: &[&str],
    ) -> Vec<BackendConfig> {
        let mut built = std::collections::HashMap::new();
        let mut out: Vec<BackendConfig> = Vec::with_capacity(raw.len());
        for (i, b) in raw.into_iter().enumerate() {
            let key = format!("backends[{i}]");
            if b.name.is_empty()
                || !b
                    .name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            {
                self.bad(
                    &format!("{key}.name"),
                    format!(
                        "invalid name {:?} (use letters, digits, '-', '_' and '.')",
                        b.name
                    ),
                );
            }
            if let Some(prev) = out.iter().position(|o| o.name == b.name) {
                self.bad(
                    &format!("{key}.name"),
                    format!(
                        "duplicate backend name {:?} (also backends[{prev}])",
                        b.name
                    ),
                );
            }
            let weight = b.weight.unwrap_or(1);
            if weight == 0 || weight > 1000 {
                self.bad(
                    &format!("{key}.weight"),
                    format!("weight {weight} is outside 1..=1000"),
                );
            }
            let tcp = b
                .tcp
                .as_deref()
                .and_then(|t| self.data_address(&format!("{key}.tcp"), t));
            let url = b.url.unwrap_or_default();
            let found = if !url.is_empty() {
                self.backend_url(&format!("{key}.url"), &url)
            } else if let Some(t) = &tcp {
                // Its data address stands for it, where nothing speaks HTTP.
                if !http_uses.is_empty() {
                    self.bad(
                        &format!("{key}.url"),
                        format!(
                            "missing: {} (only native probes and tcp listeners do without it)",
                            http_uses.join(", ")
                        ),
                    );
                }
                Some((t.clone(), false))
            } else {
                if b.tcp.is_none() {
                    self.bad(
                        &format!("{key}.url"),
                        "missing: the backend's HTTP address (http://host:port), or, with native probes and tcp listeners only, its data address in `tcp`",
                    );
                }
                None
            };
            let Some((authority, https)) = found else {
                continue;
            };
            if https && b.h2c {
                self.bad(
                    &format!("{key}.h2c"),
                    "h2c is HTTP/2 without TLS; over https:// the backend chooses h2 or http/1.1 by ALPN",
                );
            }
            let tls = self.backend_tls(
                i,
                https,
                authority.host(),
                upstream_tls,
                b.tls,
                base,
                &mut built,
            );
            if let Some(prev) = out.iter().position(|o| o.authority == authority) {
                if url.is_empty() {
                    self.bad(
                        &format!("{key}.tcp"),
                        format!("{authority} is already backends[{prev}]"),
                    );
                } else {
                    self.bad(
                        &format!("{key}.url"),
                        format!("{url} is already backends[{prev}]"),
                    );
                }
            }
            if let Some(z) = b.zone.as_deref().filter(|z| !valid_zone(z)) {
                self.bad(
                    &format!("{key}.zone"),
                    format!("invalid zone {z:?} (use letters, digits, '-', '_' and '.')"),
                );
            }
            let priority = b.priority.unwrap_or(0);
            if priority > 100 {
                self.bad(
                    &format!("{key}.priority"),
                    format!("{priority} is outside 0..=100"),
                );
            }
            if b.max_connections == Some(0) {
                self.bad(&format!("{key}.max_connections"), "must be at least 1");
            }
            out.push(BackendConfig {
                name: b.name,
                authority,
                url,
                weight,
                h2c: b.h2c,
                tls,
                zone: b.zone,
                priority,
                max_connections: b.max_connections,
                tcp,
            });
        }
        out
    }

    /// The URL's authority, and whether it is `https://`.
    pub(super) fn backend_url(
        &mut self,
        key: &str,
        url: &str,
    ) -> Option<(http::uri::Authority, bool)> {
        let uri: http::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => {
                self.bad(key, format!("invalid URL {url:?}: {e}"));
                return None;
            }
        };
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                self.bad(
                    key,
                    format!("unsupported scheme {other:?} in {url:?} (write http:// or https://)"),
                );
                return None;
            }
            None => {
                self.bad(
                    key,
                    format!("invalid URL {url:?}: write it as http://host:port"),
                );
                return None;
            }
        };
        let Some(auth) = uri.authority().cloned() else {
            self.bad(key, format!("invalid URL {url:?}: no host"));
            return None;
        };
        if auth.port_u16().is_none() {
            self.bad(
                key,
                format!("URL {url:?} has no port (write http://host:port)"),
            );
            return None;
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.bad(key, format!("URL {url:?} must not have a path or query"));
            return None;
        }
        Some((auth, https))
    }

    pub(super) fn passive(&mut self, raw: Option<RawPassive>) -> PassiveConfig {
        let p = raw.unwrap_or(RawPassive {
            consecutive_failures: None,
            base_ejection: None,
            max_ejection: None,
            max_ejection_percent: None,
        });
        let out = PassiveConfig {
            consecutive_failures: p.consecutive_failures.unwrap_or(5),
            base_ejection: p.base_ejection.map_or(Duration::from_secs(10), |d| d.0),
            max_ejection: p.max_ejection.map_or(Duration::from_secs(300), |d| d.0),
            max_ejection_percent: p.max_ejection_percent.unwrap_or(50),
        };
        if out.max_ejection_percent > 100 {
            self.bad(
                "passive.max_ejection_percent",
                format!("{} is more than 100", out.max_ejection_percent),
            );
        }
        if out.max_ejection < out.base_ejection {
            self.bad(
                "passive.max_ejection",
                "must not be shorter than passive.base_ejection",
            );
        }
        out
    }
}

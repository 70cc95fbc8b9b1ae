//! Backends found at run time: by DNS ([`dns`]) and from the cluster's own
//! member list ([`members`]).
//!
//! This file is the pure part: what one discovered address is ([`Found`]),
//! a source's set with removal hysteresis ([`Held`]), and which backends
//! are wanted given the static list and every source's set, capped at
//! `discovery.max_backends` ([`desired`]). The loops that ask DNS and the
//! members ([`run`]) only report answers to the monitor, which keeps each
//! source's [`Held`] set and reconciles its backends with the same code a
//! reload uses (backends at an unchanged address keep their health,
//! in-flight count and pooled connections).

pub mod dns;
pub mod members;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BackendConfig, BackendTls, DiscoveryConfig};
use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::routing::Shared;

/// Where a discovered backend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Dns,
    Members,
}

impl Source {
    /// Order of precedence when two sources find the same address (the
    /// member list knows the member's name, DNS does not).
    pub const ALL: [Source; 2] = [Source::Members, Source::Dns];

    pub fn label(self) -> &'static str {
        match self {
            Source::Dns => "dns",
            Source::Members => "members",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Source::Members => 0,
            Source::Dns => 1,
        }
    }
}

/// One discovered address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Found {
    /// The member's name where the cluster reports one.
    pub name: Option<String>,
    /// IP address or DNS name (no brackets, no trailing dot).
    pub host: String,
    pub port: u16,
    pub https: bool,
}

impl Found {
    /// `host:port`, with an IPv6 address in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses a URL `scheme://host:port[/]` (a member's client URL).
    pub fn from_url(name: Option<String>, url: &str) -> Result<Found, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("URL {url:?} is not http:// or https://")),
        };
        let auth = uri
            .authority()
            .ok_or_else(|| format!("URL {url:?} has no host"))?;
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        Ok(Found {
            name,
            host: host.to_string(),
            port,
            https,
        })
    }
}

/// A backend name as `backends[].name` allows it.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The backend a discovered address becomes, named `name`.
pub fn backend_config(
    found: &Found,
    name: String,
    disc: &DiscoveryConfig,
) -> Result<BackendConfig, String> {
    let authority: http::uri::Authority = found
        .authority()
        .parse()
        .map_err(|e| format!("invalid address {}: {e}", found.authority()))?;
    let tls = if found.https {
        let Some(t) = &disc.tls else {
            return Err(format!(
                "https://{authority}: set upstream_tls to talk TLS to discovered members"
            ));
        };
        let host = t.settings.server_name.as_deref().unwrap_or(&found.host);
        Some(Arc::new(BackendTls {
            settings: t.settings.clone(),
            server_name: crate::config::server_name(host)?,
            client: t.client.clone(),
        }))
    } else {
        None
    };
    Ok(BackendConfig {
        url: format!(
            "{}://{authority}",
            if found.https { "https" } else { "http" }
        ),
        name,
        authority,
        weight: 1,
        h2c: false,
        tls,
        zone: None,
        priority: 0,
        max_connections: None,
        tcp: None,
    })
}

/// What [`desired`] wants.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// The static backends, then the discovered ones.
    pub backends: Vec<BackendConfig>,
    /// Finds that could not become backends, with why.
    pub problems: Vec<String>,
    /// Finds left out because `discovery.max_backends` discovered backends
    /// were already wanted.
    pub capped: usize,
}

/// The backends wanted: every static one, then each source's finds in
/// [`Source::ALL`] order, at most `disc.max_backends` discovered ones (the
/// rest are counted in [`Wanted::capped`]). An address already present
/// (by `host:port`) is not added again; a discovered backend is named by
/// the member's name when it has a valid one not yet taken, else
/// `host:port`.
pub fn desired(
    statics: &[BackendConfig],
    sources: &[Option<Vec<Found>>; 2],
    disc: &DiscoveryConfig,
) -> Wanted {
    let mut out: Vec<BackendConfig> = statics.to_vec();
    let mut problems = Vec::new();
    let mut capped = 0;
    for src in Source::ALL {
        let Some(found) = &sources[src.index()] else {
            continue;
        };
        for f in found {
            let auth = f.authority();
            if out.iter().any(|b| b.authority.as_str() == auth) {
                continue;
            }
            if out.len() - statics.len() >= disc.max_backends as usize {
                capped += 1;
                continue;
            }
            let taken = |n: &str| out.iter().any(|b| b.name == n);
            let name = match &f.name {
                Some(n) if valid_name(n) && !taken(n) => n.clone(),
                _ if !taken(&auth) => auth.clone(),
                _ => {
                    problems.push(format!("{auth}: name already taken"));
                    continue;
                }
            };
            match backend_config(f, name, disc) {
                Ok(b) => out.push(b),
                Err(e) => problems.push(e),
            }
        }
    }
    Wanted {
        backends: out,
        problems,
        capped,
    }
}

/// A source's set with hysteresis (`discovery.remove_after`): the
/// addresses of its last answer, plus those an earlier answer listed that
/// fewer than `remove_after` consecutive answers since have left out. So
/// answers that alternate between subsets do not remove and re-add (and
/// reset the health of) the members they take turns leaving out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Each find, and how many consecutive answers have left it out.
    entries: Vec<(Found, u32)>,
}

impl Held {
    /// Takes one answer; true if the set changed (an address added or
    /// removed, or a find renamed).
    pub(crate) fn answer(&mut self, found: Vec<Found>, remove_after: u32) -> bool {
        let before = self.set();
        let same = |a: &Found, b: &Found| (&a.host, a.port, a.https) == (&b.host, b.port, b.https);
        let mut next: Vec<(Found, u32)> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|(f, _)| !found.iter().any(|n| same(n, f)))
            .map(|(f, missed)| (f, missed + 1))
            .filter(|(_, missed)| *missed < remove_after)
            .collect();
        next.extend(found.into_iter().map(|f| (f, 0)));
        next.sort();
        self.entries = next;
        self.set() != before
    }

    /// The finds in force, sorted.
    pub(crate) fn set(&self) -> Vec<Found> {
        self.entries.iter().map(|(f, _)| f.clone()).collect()
    }
}

/// How the discovery loops reach DNS.
#[derive(Debug, Clone, Default)]
pub enum Nameservers {
    /// `/etc/resolv.conf` (search domains and `ndots` included).
    #[default]
    System,
    /// These servers over UDP (and TCP for truncated answers): for tests and
    /// embedders.
    Fixed(Vec<SocketAddr>),
}

/// Options of the discovery loops that are not config keys.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub nameservers: Nameservers,
}

/// A source's view of its last answers: logs once per change of error,
/// counts every failure.
pub(crate) struct Reporter {
    source: Source,
    last_error: Option<String>,
    errors: prometheus::IntCounter,
}

impl Reporter {
    pub(crate) fn new(source: Source, metrics: &Metrics) -> Reporter {
        Reporter {
            source,
            last_error: None,
            errors: metrics.discovery_errors(source.label()),
        }
    }

    /// A failed lookup: the last good set stays.
    pub(crate) fn failed(&mut self, error: String) {
        self.errors.inc();
        if self.last_error.as_ref() != Some(&error) {
            tracing::warn!(source = self.source.label(), %error, "discovery failed; the last good set of backends stays");
            self.last_error = Some(error);
        }
    }

    pub(crate) fn succeeded(&mut self, n: usize) {
        if self.last_error.take().is_some() {
            tracing::info!(
                source = self.source.label(),
                found = n,
                "discovery works again"
            );
        }
    }
}

/// Starts both discovery loops on the current runtime. Each reads its
/// settings from the config in force (so a reload can turn it on, off or
/// change it) and reports to the monitor.
pub fn run(shared: Arc<Shared>, monitor: MonitorHandle, metrics: Arc<Metrics>, opts: Options) {
    tokio::spawn(dns::run(
        shared.clone(),
        monitor.clone(),
        metrics.clone(),
        opts.nameservers,
    ));
    tokio::spawn(members::run(shared, monitor, metrics));
}

/// What a discovery loop last told the monitor: the source's settings
/// and the set.
pub(crate) type Sent<S> = Option<(S, Vec<Found>)>;

/// Whether `found` (asked with `settings`) differs from what was `sent`
/// last: a loop sends every answer (the monitor counts answers for
/// `discovery.remove_after`) but logs only the changes.
pub(crate) fn changed<S: PartialEq>(sent: &Sent<S>, settings: &S, found: &[Found]) -> bool {
    !matches!(sent, Some((s, f)) if s == settings && f.as_slice() == found)
}

/// How often a loop whose source is off looks whether a reload turned it on.
pub(crate) const OFF_RECHECK: Duration = Duration::from_secs(1);

/// `d` ± 10%, so several proxies do not ask in lockstep.
pub(crate) fn jittered(d: Duration, seed: &mut u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let span = d.as_nanos() as u64 / 5;
    if span == 0 {
        return d;
    }
    d - Duration::from_nanos(span / 2) + Duration::from_nanos(*seed % span)
}

#[cfg(test)]
mod tests;

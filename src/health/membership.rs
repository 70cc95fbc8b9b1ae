//! Membership: which backends the monitor should have, and what a reload
//! changes. Pure decisions, no I/O; the monitor applies them.
//!
//! - What one discovered address is ([`Found`]) and where it came from
//!   ([`Source`]).
//! - A source's set with removal hysteresis (`discovery.remove_after`,
//!   [`Held`]): an address leaves only after that many answers in a row
//!   have left it out.
//! - The backends wanted: the static ones of the config, then each
//!   source's finds, at most `discovery.max_backends` discovered ones
//!   ([`desired`]).
//! - At a reload: what needs a restart ([`restart_notes`]), the config
//!   actually applied ([`applied`]), whether the probe loops restart
//!   ([`probes_changed`]).
//! - At a reconcile: where each wanted backend came from ([`source_of`]),
//!   and whether a backend no longer wanted stays because it still leads
//!   ([`keeps_retiring_leader`]).

use std::sync::Arc;

use crate::config::{BackendConfig, BackendTls, Config, DiscoveryConfig};

/// Where a discovered backend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Dns,
    Members,
}

impl Source {
    /// Order of precedence when two sources find the same address (the
    /// member list knows the member's name, DNS does not).
    pub(crate) const ALL: [Source; 2] = [Source::Members, Source::Dns];

    pub(crate) fn label(self) -> &'static str {
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
pub(crate) struct Found {
    /// The member's name where the cluster reports one.
    pub(crate) name: Option<String>,
    /// IP address or DNS name (no brackets, no trailing dot).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) https: bool,
}

impl Found {
    /// `host:port`, with an IPv6 address in brackets.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses a URL `scheme://host:port[/]` (a member's client URL).
    pub(crate) fn from_url(name: Option<String>, url: &str) -> Result<Found, String> {
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
pub(crate) fn backend_config(
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
pub(crate) struct Wanted {
    /// The static backends, then the discovered ones.
    pub(crate) backends: Vec<BackendConfig>,
    /// Finds that could not become backends, with why.
    pub(crate) problems: Vec<String>,
    /// Finds left out because `discovery.max_backends` discovered backends
    /// were already wanted.
    pub(crate) capped: usize,
}

/// The backends wanted: every static one, then each source's finds in
/// [`Source::ALL`] order, at most `disc.max_backends` discovered ones (the
/// rest are counted in [`Wanted::capped`]). An address already present
/// (by `host:port`) is not added again; a discovered backend is named by
/// the member's name when it has a valid one not yet taken, else
/// `host:port`.
pub(crate) fn desired(
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

/// Notes on what `new` changes that applies only after a restart (listen
/// and admin addresses, workers, connection limits and client timeouts).
pub(crate) fn restart_notes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if new.listen != old.listen {
        notes.push("listen addresses changed: restart to apply".to_string());
    } else if new.listen_proxy_protocol != old.listen_proxy_protocol {
        notes.push("listen proxy_protocol changed: restart to apply".to_string());
    }
    if new.tcp != old.tcp {
        notes.push("tcp listeners changed: restart to apply".to_string());
    }
    if new.admin != old.admin {
        notes.push("admin address changed: restart to apply".to_string());
    }
    if new.workers != old.workers {
        notes.push("workers changed: restart to apply".to_string());
    }
    if new.limits.max_connections != old.limits.max_connections
        || new.limits.max_header_bytes != old.limits.max_header_bytes
        || new.timeouts.header_read != old.timeouts.header_read
        || new.timeouts.client_idle != old.timeouts.client_idle
    {
        notes.push("limits.max_connections, limits.max_header_bytes, timeouts.header_read and timeouts.client_idle apply after a restart".to_string());
    }
    notes
}

/// The config a reload applies: `new`, keeping `old`'s restart-only
/// settings (listen addresses, tcp listeners, admin address, workers).
pub(crate) fn applied(old: &Config, new: &Config) -> Arc<Config> {
    let mut cfg = new.clone();
    cfg.listen = old.listen.clone();
    cfg.listen_proxy_protocol = old.listen_proxy_protocol.clone();
    cfg.tcp = old.tcp.clone();
    cfg.admin = old.admin;
    cfg.workers = old.workers;
    Arc::new(cfg)
}

/// Whether the health or leader probe settings differ: the probe loops of
/// every kept backend restart. (Position probes read the config in force
/// every round.)
pub(crate) fn probes_changed(old: &Config, new: &Config) -> bool {
    let probes = |c: &Config| format!("{:?}{:?}", c.health, c.leader);
    probes(old) != probes(new)
}

/// Where wanted backend `bc` comes from: `static` (a backend of the
/// config), else the label of the first source in [`Source::ALL`] order
/// whose set holds its address.
pub(crate) fn source_of(
    bc: &BackendConfig,
    statics: &[BackendConfig],
    sets: &[Option<Vec<Found>>; 2],
) -> &'static str {
    if statics.iter().any(|s| s.name == bc.name) {
        return "static";
    }
    Source::ALL
        .into_iter()
        .find(|s| {
            sets[s.index()]
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f.authority() == bc.authority.as_str()))
        })
        .map_or("static", |s| s.label())
}

/// Whether a backend that is no longer wanted stays, retiring: discovery
/// alone never drops the leader while it still claims. `source`: where it
/// came from; `leads`: it is the leader of the table in force; `claims`: its
/// leader probe still claims; `static_again`: a backend of the config is
/// at its address.
pub(crate) fn keeps_retiring_leader(
    source: &str,
    leads: bool,
    claims: bool,
    static_again: bool,
) -> bool {
    source != "static" && leads && claims && !static_again
}

#[cfg(test)]
pub(crate) mod tests;

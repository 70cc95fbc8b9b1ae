//! Backends found at run time: by DNS (`dns`) and from the cluster's own
//! member list (`members`).
//!
//! The loops that ask DNS and the members (`run`) only report answers to
//! the monitor (`MonitorHandle::discovered`). What one discovered address
//! is (`Found`), a source's set with removal hysteresis and which backends
//! are wanted are pure decisions of the layer below, in
//! `crate::health::membership`: the monitor keeps each source's set and
//! reconciles its backends with the same code a reload uses (backends at an
//! unchanged address keep their health, in-flight count and pooled
//! connections).

pub(crate) mod dns;
pub(crate) mod members;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::routing::Shared;

pub(crate) use crate::health::membership::{Found, Source};

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
    /// Where DNS discovery asks (default: the system's resolvers).
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
pub(crate) fn run(
    shared: Arc<Shared>,
    monitor: MonitorHandle,
    metrics: Arc<Metrics>,
    opts: Options,
) {
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
pub(crate) use crate::health::schedule::jittered;

#[cfg(test)]
mod tests;

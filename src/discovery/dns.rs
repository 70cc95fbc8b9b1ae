//! `discovery.dns`: A/AAAA records of a name (every address on one port),
//! or SRV records (each target host with its port), asked every
//! `interval` with hickory-resolver. An answer with no usable record, or
//! an error, keeps the last good set.

use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

use super::{changed, jittered, Found, Nameservers, Reporter, Sent, Source, OFF_RECHECK};
use crate::config::{DnsDiscovery, DnsLookup, Scheme};
use crate::health::monitor::MonitorHandle;
use crate::metrics::Metrics;
use crate::routing::Shared;

/// Builds the resolver. No answer cache: every lookup asks (the interval
/// is the cache), so a change is seen one interval later at most.
pub(crate) fn resolver(ns: &Nameservers) -> Result<TokioResolver, String> {
    let mut builder = match ns {
        Nameservers::System => TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver config: {e}"))?,
        Nameservers::Fixed(addrs) => {
            let group: NameServerConfigGroup = addrs
                .iter()
                .flat_map(|a| {
                    [
                        NameServerConfig::new(*a, Protocol::Udp),
                        NameServerConfig::new(*a, Protocol::Tcp),
                    ]
                })
                .collect::<Vec<_>>()
                .into();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
            .with_options(ResolverOpts::default())
        }
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    Ok(builder.build())
}

/// One lookup: the addresses found, sorted, without duplicates.
pub(crate) async fn lookup(r: &TokioResolver, d: &DnsDiscovery) -> Result<Vec<Found>, String> {
    let https = d.scheme == Scheme::Https;
    let mut found: Vec<Found> = match &d.lookup {
        DnsLookup::Addresses { name, port } => r
            .lookup_ip(name.as_str())
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .iter()
            .map(|ip| Found {
                name: None,
                host: ip.to_string(),
                port: *port,
                https,
            })
            .collect(),
        DnsLookup::Srv { name } => r
            .srv_lookup(name.as_str())
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .iter()
            .filter(|s| s.port() != 0 && !s.target().is_root())
            .map(|s| Found {
                name: None,
                host: s.target().to_utf8().trim_end_matches('.').to_string(),
                port: s.port(),
                https,
            })
            .collect(),
    };
    found.sort();
    found.dedup();
    if found.is_empty() {
        let name = match &d.lookup {
            DnsLookup::Addresses { name, .. } | DnsLookup::Srv { name } => name,
        };
        return Err(format!("{name}: no usable records"));
    }
    Ok(found)
}

/// The loop: asks every `discovery.dns.interval` (±10%) while the config
/// in force has `discovery.dns`, reports every answer to the monitor
/// (it counts them for `discovery.remove_after`), logs the changes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    monitor: MonitorHandle,
    metrics: Arc<Metrics>,
    ns: Nameservers,
) {
    let mut rep = Reporter::new(Source::Dns, &metrics);
    let gauge = metrics.discovered(Source::Dns.label());
    let mut resolver_: Option<TokioResolver> = None;
    // What the monitor was last told, for which settings.
    let mut sent: Sent<DnsDiscovery> = None;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ std::process::id() as u64;
    loop {
        let (gen, cfg) = {
            let t = shared.load();
            (t.config_gen, t.cfg.clone())
        };
        let Some(d) = cfg.discovery.dns.clone() else {
            if sent.take().is_some() {
                monitor.discovered(Source::Dns, gen, None);
                gauge.set(0);
            }
            tokio::time::sleep(OFF_RECHECK).await;
            continue;
        };
        if resolver_.is_none() {
            match resolver(&ns) {
                Ok(r) => resolver_ = Some(r),
                Err(e) => {
                    rep.failed(e);
                    tokio::time::sleep(d.interval).await;
                    continue;
                }
            }
        }
        let r = resolver_.as_ref().expect("built above");
        match lookup(r, &d).await {
            Ok(found) => {
                rep.succeeded(found.len());
                gauge.set(found.len() as i64);
                if changed(&sent, &d, &found) {
                    tracing::info!(source = "dns", found = found.len(), addresses = ?found.iter().map(Found::authority).collect::<Vec<_>>(), "discovered backends");
                }
                monitor.discovered(Source::Dns, gen, Some(found.clone()));
                sent = Some((d.clone(), found));
            }
            Err(e) => rep.failed(e),
        }
        // Sleep the interval, but look again at once when a reload changed
        // the settings.
        let until = tokio::time::Instant::now() + jittered(d.interval, &mut seed);
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep((until - now).min(OFF_RECHECK)).await;
            if shared.load().cfg.discovery.dns.as_ref() != Some(&d) {
                break;
            }
        }
    }
}

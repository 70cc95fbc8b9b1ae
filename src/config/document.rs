//! The whole document: the raw top-level keys, the validated [`Config`],
//! and the assembly of the sections (each validated in its own file) with
//! the top-level keys' defaults (`admin`, `workers`, `http_reuse`,
//! `shutdown_grace`, `local_zone`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::backends::{RawBackend, RawPassive};
use super::limits::{RawLimits, RawTimeouts};
use super::listen::{RawListen, RawTls};
use super::probes::{RawLeader, RawProbe};
use super::reads::RawReads;
use super::routes::RawRoute;
use super::validator::valid_zone;
use super::writes::RawWrites;
use super::{
    consistency, discovery, presets, upstream_tls, AdminToken, BackendConfig, DiscoveryConfig, Dur,
    HealthConfig, LeaderConfig, Limits, NativeProbe, OneOrMany, PassiveConfig, PositionsConfig,
    ProbeAuth, ProbeConfig, Problem, ReadsConfig, Rule, Timeouts, TlsConfig, Validator,
    WritesConfig,
};
use crate::net::client_ip::CidrSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) preset: Option<String>,
    /// Required unless `tcp` is given.
    pub(super) listen: Option<OneOrMany<RawListen>>,
    #[serde(default)]
    pub(super) tcp: Vec<super::tcp::RawTcpListen>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    pub(super) admin: Option<String>,
    pub(super) workers: Option<usize>,
    #[serde(default)]
    pub(super) debug_headers: bool,
    #[serde(default)]
    pub(super) access_log: bool,
    pub(super) http_reuse: Option<HttpReuse>,
    pub(super) shutdown_grace: Option<Dur>,
    #[serde(default)]
    pub(super) backends: Vec<RawBackend>,
    pub(super) data_port: Option<u16>,
    pub(super) discovery: Option<discovery::RawDiscovery>,
    pub(super) health: Option<RawProbe>,
    /// Required unless the preset gives it.
    pub(super) leader: Option<RawLeader>,
    pub(super) positions: Option<consistency::RawPositions>,
    pub(super) probe_auth: Option<super::native::RawProbeAuth>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    pub(super) reads: Option<RawReads>,
    pub(super) writes: Option<RawWrites>,
    pub(super) timeouts: Option<RawTimeouts>,
    pub(super) limits: Option<RawLimits>,
    pub(super) passive: Option<RawPassive>,
    pub(super) tls: Option<RawTls>,
    pub(super) upstream_tls: Option<upstream_tls::RawUpstreamTls>,
    pub(super) admin_token_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) admin_insecure: bool,
    pub(super) local_zone: Option<String>,
}

/// When an upstream HTTP/1.1 connection goes back to the pool after an
/// answer (`http_reuse`, after HAProxy's option of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HttpReuse {
    /// Only after an answer whose end is known: never after a HEAD, whose
    /// announced body a backend may still send (default).
    Safe,
    /// After any answer read to its end, HEAD included.
    Always,
}

/// A validated configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file the config was read from.
    pub source: PathBuf,
    /// The `preset` the file names; its keys are already merged in.
    pub preset: Option<String>,
    /// The HTTP client listeners (`listen`: one address or a list); empty
    /// when only `tcp` listeners are configured.
    pub listen: Vec<SocketAddr>,
    /// `tcp`: raw TCP listeners; default none.
    pub tcp: Vec<super::TcpListen>,
    /// Per `listen` address, in the same order: every connection starts
    /// with a PROXY protocol (v1 or v2) header. Default false.
    pub listen_proxy_protocol: Vec<bool>,
    /// Peers whose PROXY headers and `X-Forwarded-For` are believed;
    /// default none (headers are never trusted).
    pub(crate) trusted_proxies: CidrSet,
    /// Admin listener; default 127.0.0.1:9901.
    pub admin: SocketAddr,
    /// Worker threads, each with its own accept loop and upstream pools; default: one per core.
    pub workers: usize,
    /// Answers carry `x-leaderproxy-backend` and `x-leaderproxy-role`;
    /// default false.
    pub(crate) debug_headers: bool,
    /// One `info` line per request (target `access`); default false.
    pub(crate) access_log: bool,
    /// When an upstream HTTP/1.1 connection may carry another request;
    /// default [`HttpReuse::Safe`].
    pub(crate) http_reuse: HttpReuse,
    /// How long in-flight requests may finish after SIGTERM; default 30s.
    pub(crate) shutdown_grace: Duration,
    /// The static backends (`backends`); discovered ones come on top.
    pub backends: Vec<BackendConfig>,
    /// `data_port`: a backend without `backends[].tcp` takes its URL's host
    /// at this port as its data address; default none.
    pub(crate) data_port: Option<u16>,
    /// Backends found by DNS or from the cluster's member list; default none.
    pub discovery: DiscoveryConfig,
    /// The health probe (`health`).
    pub health: HealthConfig,
    /// The leader probe (`leader`; required unless the preset gives it).
    pub leader: LeaderConfig,
    /// Replication positions; default none.
    pub positions: PositionsConfig,
    /// How native probes log in (`probe_auth`); default: no user, no
    /// password (each kind's default user and database).
    pub probe_auth: Arc<ProbeAuth>,
    /// Request classification, first match wins; default none (every
    /// request is a write).
    pub routes: Vec<Rule>,
    /// Where reads go (`reads`).
    pub reads: ReadsConfig,
    /// How writes wait, are refused and re-sent (`writes`).
    pub writes: WritesConfig,
    /// Every deadline (`timeouts`).
    pub(crate) timeouts: Timeouts,
    /// Every size and connection cap (`limits`).
    pub(crate) limits: Limits,
    /// Ejection of failing followers (`passive`).
    pub(crate) passive: PassiveConfig,
    /// TLS on the listeners; default none (plain HTTP/1.1 and h2c).
    pub(crate) tls: Option<TlsConfig>,
    /// Bearer token that state-changing admin endpoints require; default none.
    pub(crate) admin_token: Option<AdminToken>,
    /// Allow a non-loopback `admin` address without a token; default false.
    pub(crate) admin_insecure: bool,
    /// The zone this proxy runs in: reads prefer followers with this
    /// `zone`. `LEADERPROXY_ZONE` (when set and not empty) overrides the
    /// file's `local_zone`; default none (no preference).
    pub local_zone: Option<String>,
}

impl Config {
    /// Most connections to `b` (all workers together): its
    /// `max_connections`, else `limits.max_upstream_connections_per_backend`.
    pub(crate) fn max_upstream_connections(&self, b: &BackendConfig) -> usize {
        b.max_connections
            .unwrap_or(self.limits.max_upstream_connections_per_backend)
    }
}

impl Validator {
    pub(super) fn config(&mut self, raw: RawConfig, path: &Path) -> Config {
        let (listen, listen_proxy_protocol, trusted_proxies) =
            self.client_identity(raw.listen, &raw.trusted_proxies, !raw.tcp.is_empty());
        let admin = match raw.admin {
            Some(s) => self.addr("admin", &s),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
        };
        if let Some(a) = admin {
            if a.port() != 0 && listen.contains(&a) {
                self.bad(
                    "admin",
                    format!(
                        "{a} is also a listen address; the admin API must have its own listener"
                    ),
                );
            }
        }
        let workers = match raw.workers {
            None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(n) if n > 1024 => {
                self.bad("workers", format!("{n} workers is more than 1024"));
                1
            }
            Some(n) => n,
        };

        let kinds = super::native::Kinds {
            health: raw.health.as_ref().and_then(|h| h.kind).unwrap_or_default(),
            leader: raw.leader.as_ref().and_then(|l| l.kind).unwrap_or_default(),
            positions: raw
                .positions
                .as_ref()
                .and_then(|p| p.kind)
                .unwrap_or_default(),
        };
        let http_uses = kinds.http_uses(
            raw.positions.as_ref().is_some_and(|p| p.has_probe()),
            !listen.is_empty(),
        );
        let mut backends = self.backends(
            raw.backends,
            raw.upstream_tls.as_ref(),
            path.parent().unwrap_or(Path::new(".")),
            &http_uses,
        );
        self.data_port(raw.data_port, &mut backends);
        let discovery = self.discovery(
            raw.discovery,
            backends.len(),
            raw.upstream_tls.as_ref(),
            path.parent().unwrap_or(Path::new(".")),
        );
        self.kinds_built(kinds);
        self.native_needs_data_addresses(
            kinds,
            &backends,
            discovery.dns.is_some() || discovery.members.is_some(),
        );
        let probe_auth = Arc::new(self.probe_auth(
            raw.probe_auth,
            kinds,
            path.parent().unwrap_or(Path::new(".")),
        ));
        let mut health = self.health(raw.health);
        let mut leader = match raw.leader {
            Some(l) => self.leader(l),
            None => {
                self.problems.push(Problem {
                    file: self.file.clone(),
                    at: None,
                    key: "leader".into(),
                    message: format!(
                        "required unless a preset gives it (preset: {})",
                        presets::names().collect::<Vec<_>>().join(" | ")
                    ),
                });
                LeaderConfig::unset()
            }
        };
        let routes = self.routes(raw.routes);

        let probe_given = raw.positions.as_ref().is_some_and(|p| p.has_probe());
        let mut positions = self.positions(raw.positions, &leader.probe);
        let set_native = |p: &mut ProbeConfig, kind: super::ProbeKind| {
            p.native = kind.is_native().then(|| NativeProbe {
                kind,
                auth: probe_auth.clone(),
            });
        };
        set_native(&mut health.probe, kinds.health);
        set_native(&mut leader.probe, kinds.leader);
        if let Some((p, _)) = positions.probe.as_mut() {
            set_native(p, kinds.positions);
        }

        let reads = self.reads(raw.reads, &positions, probe_given);
        let local_zone = raw.local_zone.filter(|z| {
            let ok = valid_zone(z);
            if !ok {
                self.bad(
                    "local_zone",
                    format!("invalid zone {z:?} (use letters, digits, '-', '_' and '.')"),
                );
            }
            ok
        });
        let writes = self.writes(raw.writes);
        let timeouts = self.timeouts(raw.timeouts);
        let limits = self.limits(raw.limits);
        let passive = self.passive(raw.passive);
        if writes.replay_body_limit > limits.replay_buffer_bytes {
            self.bad(
                "writes.replay_body_limit",
                format!(
                    "{} bytes is more than limits.replay_buffer_bytes ({})",
                    writes.replay_body_limit, limits.replay_buffer_bytes
                ),
            );
        }
        let tls = raw
            .tls
            .and_then(|t| self.listener_tls(t, path.parent().unwrap_or(Path::new("."))));
        let admin_token = self.admin_access(
            admin,
            raw.admin_token_file,
            raw.admin_insecure,
            path.parent().unwrap_or(Path::new(".")),
        );

        let mut taken = listen.clone();
        taken.extend(admin);
        let tcp = self.tcp(raw.tcp, &taken, reads.policy, !trusted_proxies.is_empty());
        if !tcp.is_empty() {
            for (i, b) in backends.iter().enumerate() {
                if b.tcp.is_none() {
                    self.bad(
                        &format!("backends[{i}]"),
                        "tcp listeners need the data address of every backend: set backends[].tcp (host:port) or data_port",
                    );
                }
            }
            if discovery.dns.is_some() || discovery.members.is_some() {
                self.bad(
                    "tcp",
                    "tcp listeners need a data address for every backend, and discovered backends have none yet: use static backends with `tcp`",
                );
            }
        }

        Config {
            source: path.to_path_buf(),
            preset: raw.preset,
            listen,
            tcp,
            listen_proxy_protocol,
            trusted_proxies,
            admin: admin.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901))),
            workers,
            debug_headers: raw.debug_headers,
            access_log: raw.access_log,
            http_reuse: raw.http_reuse.unwrap_or(HttpReuse::Safe),
            shutdown_grace: raw.shutdown_grace.map_or(Duration::from_secs(30), |d| d.0),
            backends,
            data_port: raw.data_port,
            discovery,
            health,
            leader,
            positions,
            probe_auth,
            routes,
            reads,
            writes,
            timeouts,
            limits,
            passive,
            tls,
            admin_token,
            admin_insecure: raw.admin_insecure,
            local_zone,
        }
    }
}

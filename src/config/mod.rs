//! The YAML configuration: parsed with serde_yaml into raw structs (unknown
//! keys rejected, values checked while parsing), then validated into a
//! [`Config`] where every default is filled in. Every default lives here.

mod admin_access;
mod certs;
mod consistency;
mod discovery;
mod explain;
mod locate;
pub mod presets;
mod routes;
mod tcp;
pub mod types;
mod upstream_tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::net::client_ip::{Cidr, CidrSet};
pub use admin_access::AdminToken;
pub use certs::{server_name, CertKey, ClientCerts, ListenerCerts};
pub use consistency::{
    Consistency, PositionSource, PositionsConfig, SessionConfig, SessionKey, DEFAULT_SESSIONS,
};
pub use discovery::{
    DiscoveredTls, DiscoveryConfig, DnsDiscovery, DnsLookup, MembersDiscovery, MembersKind, Scheme,
};
pub use explain::{explain, explain_text};
pub use locate::Locator;
pub use routes::{MethodSet, Role, Route, Rule};
pub use tcp::{OnUnhealthy, TcpListen, DEFAULT_TCP_IDLE};
pub use types::{Dur, Method, OneOrMany, Pointer, Re, Size};
pub use upstream_tls::{BackendTls, UpstreamTlsSettings};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line and column, where known.
    pub at: Option<(usize, usize)>,
    /// Key path such as `backends[1].url`; empty for the whole document.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((l, c)) = self.at {
            write!(f, ":{l}:{c}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------- raw YAML

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    preset: Option<String>,
    /// Required unless `tcp` is given.
    listen: Option<OneOrMany<RawListen>>,
    #[serde(default)]
    tcp: Vec<tcp::RawTcpListen>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    admin: Option<String>,
    workers: Option<usize>,
    #[serde(default)]
    debug_headers: bool,
    #[serde(default)]
    access_log: bool,
    http_reuse: Option<HttpReuse>,
    shutdown_grace: Option<Dur>,
    #[serde(default)]
    backends: Vec<RawBackend>,
    discovery: Option<discovery::RawDiscovery>,
    health: Option<RawProbe>,
    /// Required unless the preset gives it.
    leader: Option<RawLeader>,
    positions: Option<consistency::RawPositions>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    reads: Option<RawReads>,
    writes: Option<RawWrites>,
    timeouts: Option<RawTimeouts>,
    limits: Option<RawLimits>,
    passive: Option<RawPassive>,
    tls: Option<RawTls>,
    upstream_tls: Option<upstream_tls::RawUpstreamTls>,
    admin_token_file: Option<PathBuf>,
    #[serde(default)]
    admin_insecure: bool,
    local_zone: Option<String>,
}

/// A `listen` entry: `"ip:port"` or `{ addr: "ip:port", proxy_protocol: true }`.
#[derive(Debug)]
enum RawListen {
    Addr(String),
    Map(RawListenMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenMap {
    addr: String,
    #[serde(default)]
    proxy_protocol: bool,
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address ip:port or a map { addr, proxy_protocol }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawListen, E> {
                Ok(RawListen::Addr(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RawListen, A::Error> {
                RawListenMap::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawListen::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    forward_client_cert: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    name: String,
    url: String,
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
struct RawProbe {
    path: Option<String>,
    method: Option<Method>,
    body: Option<String>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    rise: Option<u32>,
    fall: Option<u32>,
    expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeader {
    /// Required; optional here so that a file with a preset may give only
    /// the keys it changes (`leader: { interval: 1s }`).
    path: Option<String>,
    method: Option<Method>,
    body: Option<String>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    fall: Option<u32>,
    fast_interval: Option<Dur>,
    expect: Option<RawExpect>,
    term: Option<RawTerm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerm {
    pointer: Pointer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    status: Option<Vec<u16>>,
    body_regex: Option<Re>,
    json: Option<RawJsonExpect>,
    header: Option<RawHeaderExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJsonExpect {
    /// Required (optional here, like `leader.path`).
    pointer: Option<Pointer>,
    equals: Option<serde_json::Value>,
    equals_pointer: Option<Pointer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderExpect {
    name: String,
    equals: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    methods: Option<Vec<Method>>,
    path_prefix: Option<String>,
    path_regex: Option<Re>,
    to: Role,
    timeout: Option<Dur>,
    #[serde(default)]
    long_poll: bool,
    #[serde(default)]
    upgrade: bool,
    idempotent: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReads {
    policy: Option<Policy>,
    fallback_to_leader: Option<bool>,
    retry: Option<bool>,
    consistency: Option<Consistency>,
    session: Option<consistency::RawSession>,
    max_lag: Option<u64>,
    after_write_window: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrites {
    hold: Option<Dur>,
    max_held: Option<usize>,
    replay_body_limit: Option<Size>,
    not_leader: Option<RawNotLeader>,
    retry_ambiguous: Option<RetryAmbiguous>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotLeader {
    status: Option<Vec<u16>>,
    body: Option<Vec<RawBodyRule>>,
    /// Removed: an unscoped body regex also matched successes. Kept in the
    /// raw form only to explain what to write instead.
    body_regex: Option<serde_yaml::Value>,
    #[serde(default)]
    redirect: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBodyRule {
    status: Vec<u16>,
    regex: Re,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<Dur>,
    #[serde(alias = "request")]
    response_headers: Option<Dur>,
    header_read: Option<Dur>,
    #[serde(alias = "idle")]
    upstream_idle: Option<Dur>,
    body_idle: Option<Dur>,
    client_idle: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_header_bytes: Option<Size>,
    max_body_bytes: Option<Size>,
    max_connections: Option<usize>,
    replay_buffer_bytes: Option<Size>,
    admin_max_connections: Option<usize>,
    max_upstream_connections_per_backend: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassive {
    consecutive_failures: Option<u32>,
    base_ejection: Option<Dur>,
    max_ejection: Option<Dur>,
    max_ejection_percent: Option<u32>,
}

// ---------------------------------------------------------- validated form

/// Upper bound of `writes.replay_body_limit`: one request may not hold more
/// than this in memory for a re-send.
pub const MAX_REPLAY_BODY_LIMIT: u64 = 64 << 20;

/// Read-balancing policy for followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Smooth weighted round-robin (weight 2 gets twice the share, interleaved).
    RoundRobin,
    /// Fewest in-flight requests relative to weight; ties rotate.
    LeastConnections,
    /// Weighted rendezvous hash of the client IP: stable when followers come and go.
    IpHash,
}

/// A backend node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub name: String,
    /// `host:port` to connect to.
    pub authority: http::uri::Authority,
    /// The URL as written.
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
    /// [`Config::max_upstream_connections`].
    pub max_connections: Option<usize>,
    /// The data address TCP listeners connect to (`host:port`), beside the
    /// `url` the probes use; `None` (default): the backend takes no TCP.
    pub tcp: Option<http::uri::Authority>,
}

/// What a probe answer must satisfy; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted status codes; `None` means any 2xx.
    pub status: Option<Vec<u16>>,
    pub body_regex: Option<regex::Regex>,
    pub json: Option<JsonExpect>,
    pub header: Option<(http::HeaderName, String)>,
}

/// A JSON pointer condition on the probe body.
#[derive(Debug, Clone)]
pub struct JsonExpect {
    pub pointer: String,
    pub want: JsonWant,
}

/// What the pointed-at JSON value must be.
#[derive(Debug, Clone)]
pub enum JsonWant {
    /// Equal to this value (a string also matches the same number written as a string).
    Equals(serde_json::Value),
    /// Equal to the value at another pointer of the same document (etcd: member_id == leader).
    EqualsPointer(String),
}

/// A periodic HTTP probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub path: String,
    pub method: http::Method,
    pub body: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub expect: Expect,
}

/// Health probe plus its hysteresis.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe: ProbeConfig,
    /// Consecutive successes to become healthy; default 2.
    pub rise: u32,
    /// Consecutive failures to become unhealthy; default 3.
    pub fall: u32,
}

/// Leader probe.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub probe: ProbeConfig,
    /// Consecutive failed leader probes (timeout, broken answer) that drop a
    /// claim; default 2. A connect refusal or an answer that says "not the
    /// leader" drops it at once.
    pub fall: u32,
    /// Leader probe interval while no usable leader is known; default 25ms.
    pub fast_interval: Duration,
    /// JSON pointer to a raft term; the higher term wins when two backends
    /// claim, and a claimant whose term is lower than one already seen never leads.
    pub term_pointer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReadsConfig {
    /// Default `round_robin`.
    pub policy: Policy,
    /// Send reads to the leader when no follower is healthy; default true.
    pub fallback_to_leader: bool,
    /// Retry a read once on another follower after a connect failure or a 502/503; default true.
    pub retry: bool,
    /// Default `eventual`.
    pub consistency: Consistency,
    /// What identifies a session for read-your-writes; default none.
    pub session: Option<SessionConfig>,
    /// Followers whose probed position is more than this many positions
    /// behind the leader's in the last position round (or whose lag is
    /// unknown) get no reads; default none (no limit).
    pub max_lag: Option<u64>,
    /// Without `positions.probe`, a session's reads go to the leader this
    /// long after each of its successful writes; default 2s. (With probed
    /// positions, a write whose position is unknown holds its session on
    /// the leader until a later position round reads the leader's.)
    pub after_write_window: Duration,
}

/// How a backend says "I am not the leader" when refusing a write.
///
/// A refusal is re-sent to the leader, so a matcher that also matches a
/// success makes the proxy apply that write twice: body rules are scoped
/// by status and should be anchored to the refusal's exact shape.
#[derive(Debug, Clone, Default)]
pub struct NotLeader {
    /// Answers with these statuses (never 2xx) are refusals, whatever the body.
    pub status: Vec<u16>,
    /// Answers whose status is in a rule's list and whose body (at most
    /// 64 KiB, read whole) matches its regex are refusals.
    pub body: Vec<BodyRule>,
    /// A 3xx whose Location names a configured backend is a leader hint.
    pub redirect: bool,
}

/// One status-scoped body matcher of [`NotLeader`].
#[derive(Debug, Clone)]
pub struct BodyRule {
    pub status: Vec<u16>,
    pub regex: regex::Regex,
}

impl LeaderConfig {
    /// Stands in for a missing `leader` while the rest is validated; never
    /// part of a valid config.
    fn unset() -> LeaderConfig {
        LeaderConfig {
            probe: ProbeConfig {
                path: "/".into(),
                method: http::Method::GET,
                body: None,
                interval: Duration::from_millis(500),
                timeout: Duration::from_millis(300),
                expect: Expect::default(),
            },
            fall: 2,
            fast_interval: Duration::from_millis(25),
            term_pointer: None,
        }
    }
}

impl NotLeader {
    pub fn is_empty(&self) -> bool {
        self.status.is_empty() && self.body.is_empty() && !self.redirect
    }

    /// Whether an answer with this status needs its body read to be judged.
    pub fn scans_body(&self, status: u16) -> bool {
        self.body.iter().any(|r| r.status.contains(&status))
    }

    /// Whether a body of an answer with `status` is a refusal.
    pub fn body_matches(&self, status: u16, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        self.body
            .iter()
            .any(|r| r.status.contains(&status) && r.regex.is_match(&text))
    }
}

/// When an upstream HTTP/1.1 connection goes back to the pool after an
/// answer (`http_reuse`, after HAProxy's option of that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpReuse {
    /// Only after an answer whose end is known: never after a HEAD, whose
    /// announced body a backend may still send (default).
    Safe,
    /// After any answer read to its end, HEAD included.
    Always,
}

/// Whether a write that failed after it may have reached the leader is
/// sent again (`writes.retry_ambiguous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAmbiguous {
    /// Never: the client gets a 502/504 and decides (default).
    Never,
    /// PUT and DELETE (idempotent by RFC 9110 §9.2.2) and any request with an
    /// `Idempotency-Key` header are re-sent once to the next leader within `writes.hold`.
    Idempotent,
}

#[derive(Debug, Clone)]
pub struct WritesConfig {
    /// How long a write waits for a leader; default 5s.
    pub hold: Duration,
    /// Most writes held at once; default 10000. Past it: 503 at once.
    pub max_held: usize,
    /// Write bodies up to this many bytes are kept for a re-send (when a
    /// re-send is possible at all); default 1 MiB, at most 64 MiB.
    pub replay_body_limit: u64,
    pub not_leader: NotLeader,
    /// Default `never`.
    pub retry_ambiguous: RetryAmbiguous,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect to a backend; default 1s.
    pub connect: Duration,
    /// From sending a request to the backend's response headers; default
    /// 30s (`routes[].timeout` overrides it per route). YAML also accepts the
    /// old name `request`.
    pub response_headers: Duration,
    /// Client must send complete request headers within this; default 10s.
    pub header_read: Duration,
    /// Pooled upstream connections idle this long are closed, oldest first;
    /// default 60s. YAML also accepts the old name `idle`.
    pub upstream_idle: Duration,
    /// Longest wait for the next bytes of a body, either direction, once it
    /// has started; default 60s. Not applied on `long_poll` routes (watch
    /// streams may be silent for long, in both directions).
    pub body_idle: Duration,
    /// Longest wait for the next request on an idle keep-alive HTTP/1.1
    /// client connection; default 60s. Restart-only, like `header_read`.
    pub client_idle: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head; default 64 KiB.
    pub max_header_bytes: usize,
    /// Largest request body; default 64 MiB. Larger: 413.
    pub max_body_bytes: u64,
    /// Most client connections at once; default 10000. More are closed at accept.
    pub max_connections: usize,
    /// Bytes of request bodies kept in memory for a possible re-send, across
    /// all requests; default 64 MiB. Past it a request streams and is not re-sendable.
    pub replay_buffer_bytes: u64,
    /// Most admin API connections at once; default 64. More are closed at accept.
    pub admin_max_connections: usize,
    /// Most connections to one backend (all workers together) when its
    /// `max_connections` is not set; default [`DEFAULT_MAX_UPSTREAM_CONNECTIONS`].
    pub max_upstream_connections_per_backend: usize,
}

/// Default of `limits.max_upstream_connections_per_backend`.
pub const DEFAULT_MAX_UPSTREAM_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone)]
pub struct PassiveConfig {
    /// Consecutive connect failures or 5xx from a follower that eject it; default 5 (0 = off).
    pub consecutive_failures: u32,
    /// First ejection lasts this long, doubling on each repeat; default 10s.
    pub base_ejection: Duration,
    /// Cap of the doubling; default 5m.
    pub max_ejection: Duration,
    /// Never eject more than this share of followers; default 50.
    pub max_ejection_percent: u32,
}

/// TLS termination on every `listen` address.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain (relative paths are relative to the config file).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA bundle: client certificates are required and verified against
    /// it; default none (no client certificates asked for).
    pub client_ca: Option<PathBuf>,
    /// Header that carries a verified client certificate's subject to the
    /// backend (any incoming one is removed first); default none.
    pub forward_client_cert: Option<http::HeaderName>,
    /// `notAfter` of the certificate (Unix seconds), for the expiry gauge.
    pub cert_not_after: Option<i64>,
    /// Read from the files when the config is loaded (or reloaded);
    /// `crate::tls` builds the rustls config from it.
    pub certs: std::sync::Arc<ListenerCerts>,
}

/// A validated configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    /// The `preset` the file names; its keys are already merged in.
    pub preset: Option<String>,
    /// HTTP listen addresses; empty when only `tcp` listeners are configured.
    pub listen: Vec<SocketAddr>,
    /// `tcp`: raw TCP listeners; default none.
    pub tcp: Vec<TcpListen>,
    /// Per `listen` address, in the same order: every connection starts
    /// with a PROXY protocol (v1 or v2) header. Default false.
    pub listen_proxy_protocol: Vec<bool>,
    /// Peers whose PROXY headers and `X-Forwarded-For` are believed;
    /// default none (headers are never trusted).
    pub trusted_proxies: CidrSet,
    /// Admin listener; default 127.0.0.1:9901.
    pub admin: SocketAddr,
    /// Worker threads, each with its own accept loop and upstream pools; default: one per core.
    pub workers: usize,
    pub debug_headers: bool,
    pub access_log: bool,
    /// When an upstream HTTP/1.1 connection may carry another request;
    /// default [`HttpReuse::Safe`].
    pub http_reuse: HttpReuse,
    /// How long in-flight requests may finish after SIGTERM; default 30s.
    pub shutdown_grace: Duration,
    /// The static backends (`backends`); discovered ones come on top.
    pub backends: Vec<BackendConfig>,
    /// Backends found by DNS or from the cluster's member list; default none.
    pub discovery: DiscoveryConfig,
    pub health: HealthConfig,
    pub leader: LeaderConfig,
    /// Replication positions; default none.
    pub positions: PositionsConfig,
    pub routes: Vec<Rule>,
    pub reads: ReadsConfig,
    pub writes: WritesConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub passive: PassiveConfig,
    /// TLS on the listeners; default none (plain HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
    /// Bearer token that state-changing admin endpoints require; default none.
    pub admin_token: Option<AdminToken>,
    /// Allow a non-loopback `admin` address without a token; default false.
    pub admin_insecure: bool,
    /// The zone this proxy runs in: reads prefer followers with this
    /// `zone`. `LEADERPROXY_ZONE` (when set and not empty) overrides the
    /// file's `local_zone`; default none (no preference).
    pub local_zone: Option<String>,
}

impl Config {
    /// Most connections to `b` (all workers together): its
    /// `max_connections`, else `limits.max_upstream_connections_per_backend`.
    pub fn max_upstream_connections(&self, b: &BackendConfig) -> usize {
        b.max_connections
            .unwrap_or(self.limits.max_upstream_connections_per_backend)
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Problem {
            file: file.clone(),
            at: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    let mut cfg = parse(&text, path)?;
    if let Some(z) = std::env::var("LEADERPROXY_ZONE")
        .ok()
        .filter(|z| !z.is_empty())
    {
        if !valid_zone(&z) {
            return Err(ConfigError(vec![Problem {
                file: "LEADERPROXY_ZONE".into(),
                at: None,
                key: String::new(),
                message: format!("invalid zone {z:?} (use letters, digits, '-', '_' and '.')"),
            }]));
        }
        cfg.local_zone = Some(z);
    }
    Ok(cfg)
}

/// Parses and validates config text; `path` is used in messages.
///
/// The user's text is deserialized on its own first, so that a bad value
/// is reported at its line and column. With `preset: NAME`, the preset's
/// document is the base and the user's text goes on top
/// ([`presets::merge`]); the merged document is what is validated, and a
/// problem with a key only the preset gave says so.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let user: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&file, &e))?;
    let loc = Locator::new(text);
    let (raw, preset) = match user.preset.clone() {
        None => (user, None),
        Some(name) => {
            let Some(doc) = presets::document(&name) else {
                return Err(ConfigError(vec![Problem {
                    file,
                    at: loc.find("preset"),
                    key: "preset".into(),
                    message: format!(
                        "unknown preset {name:?}; the presets are {}",
                        presets::names().collect::<Vec<_>>().join(", ")
                    ),
                }]));
            };
            let raw = with_preset(&file, &name, doc, text)?;
            let at = loc.find("preset");
            (
                raw,
                Some(PresetSource {
                    loc: Locator::new(doc),
                    name,
                    at,
                }),
            )
        }
    };
    let mut v = Validator {
        file,
        loc,
        problems: Vec::new(),
        preset,
    };
    let cfg = v.config(raw, path);
    if v.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError(v.problems))
    }
}

/// The user's text on top of preset `name`'s document, deserialized.
fn with_preset(file: &str, name: &str, doc: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let base: serde_yaml::Value =
        serde_yaml::from_str(doc).map_err(|e| yaml_error(&format!("preset {name}"), &e))?;
    let top: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(file, &e))?;
    RawConfig::deserialize(presets::merge(base, top)).map_err(|e| {
        let (key, message) = split_key(&e.to_string());
        ConfigError(vec![Problem {
            file: file.to_string(),
            at: None,
            key,
            message: format!("{message} (after merging preset {name})"),
        }])
    })
}

/// A serde_yaml error as a problem at its line and column.
fn yaml_error(file: &str, e: &serde_yaml::Error) -> ConfigError {
    let at = e.location().map(|l| (l.line(), l.column()));
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; we print the location up front.
    let msg = match msg.rfind(" at line ") {
        Some(i) if at.is_some() => msg[..i].to_string(),
        _ => msg,
    };
    let (key, message) = split_key(&msg);
    ConfigError(vec![Problem {
        file: file.to_string(),
        at,
        key,
        message,
    }])
}

/// Zone names: what Kubernetes topology labels and cloud zones use.
fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && z.len() <= 63
        && z.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// serde_yaml prefixes messages with the key path (`health.interval: ...`).
fn split_key(msg: &str) -> (String, String) {
    if let Some((k, rest)) = msg.split_once(": ") {
        if !k.contains(' ') && !k.is_empty() {
            return (k.to_string(), rest.to_string());
        }
    }
    (String::new(), msg.to_string())
}

/// Headers `tls.forward_client_cert` must not name: hop-by-hop, framing,
/// and the ones the proxy sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The preset a file named, for problem locations.
struct PresetSource {
    name: String,
    /// Where the preset's own document has each key.
    loc: Locator,
    /// The `preset:` line of the user's file.
    at: Option<(usize, usize)>,
}

struct Validator {
    file: String,
    loc: Locator,
    problems: Vec<Problem>,
    preset: Option<PresetSource>,
}

impl Validator {
    /// Whether the user's file itself writes `key` (not only a parent of it).
    pub(super) fn user_wrote(&self, key: &str) -> bool {
        self.loc
            .nearest(key)
            .is_some_and(|(len, _)| len == key.len())
    }

    /// Whether the preset in use writes `key`.
    pub(super) fn preset_wrote(&self, key: &str) -> bool {
        self.preset
            .as_ref()
            .and_then(|p| p.loc.nearest(key))
            .is_some_and(|(len, _)| len == key.len())
    }

    /// A problem with `key`, at the line of `key` (or of its nearest parent)
    /// in the user's file. When the preset's document has `key` and the
    /// user's file does not, the value came from the preset: the message
    /// says so, and with nothing of the path in the user's file it points
    /// at the `preset:` line.
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        let mut at = self.loc.find(key);
        if let Some(p) = &self.preset {
            let exact = |l: &Locator| l.nearest(key).is_some_and(|(len, _)| len == key.len());
            if exact(&p.loc) && !exact(&self.loc) {
                message = format!("{message} (from preset {})", p.name);
                at = at.or(p.at);
            }
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            at,
            key: key.to_string(),
            message,
        });
    }

    fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.bad(
                    key,
                    format!(
                        "invalid address {s:?} (write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080)"
                    ),
                );
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig, path: &Path) -> Config {
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

        let backends = self.backends(
            raw.backends,
            raw.upstream_tls.as_ref(),
            path.parent().unwrap_or(Path::new(".")),
        );
        let discovery = self.discovery(
            raw.discovery,
            backends.len(),
            raw.upstream_tls.as_ref(),
            path.parent().unwrap_or(Path::new(".")),
        );
        let health = self.health(raw.health);
        let leader = match raw.leader {
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
        let positions = self.positions(raw.positions, &leader.probe);
        let (policy, fallback_to_leader, retry, rc) = match raw.reads {
            None => (None, None, None, consistency::RawReadConsistency::default()),
            Some(r) => (
                r.policy,
                r.fallback_to_leader,
                r.retry,
                consistency::RawReadConsistency {
                    consistency: r.consistency,
                    session: r.session,
                    max_lag: r.max_lag,
                    after_write_window: r.after_write_window,
                },
            ),
        };
        let rc = self.read_consistency(rc, &positions, probe_given);
        let reads = ReadsConfig {
            policy: policy.unwrap_or(Policy::RoundRobin),
            fallback_to_leader: fallback_to_leader.unwrap_or(true),
            retry: retry.unwrap_or(true),
            consistency: rc.consistency,
            session: rc.session,
            max_lag: rc.max_lag,
            after_write_window: rc.after_write_window,
        };
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
                        "tcp listeners need the data address of every backend: set backends[].tcp (host:port)",
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
            discovery,
            health,
            leader,
            positions,
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

    /// `listen` (addresses, or maps with `proxy_protocol`) and
    /// `trusted_proxies`; a PROXY protocol listener needs someone to trust.
    fn client_identity(
        &mut self,
        listen_raw: Option<OneOrMany<RawListen>>,
        trusted_raw: &[String],
        has_tcp: bool,
    ) -> (Vec<SocketAddr>, Vec<bool>, CidrSet) {
        let one = matches!(listen_raw, Some(OneOrMany::One(_)));
        let given = listen_raw.is_some();
        let listen_raw = listen_raw.map_or_else(Vec::new, OneOrMany::into_vec);
        if listen_raw.is_empty() && (given || !has_tcp) {
            self.bad(
                "listen",
                "at least one address is needed (or none, with `tcp` listeners only)",
            );
        }
        let mut cidrs = Vec::with_capacity(trusted_raw.len());
        for (i, s) in trusted_raw.iter().enumerate() {
            match Cidr::parse(s.trim()) {
                Ok(c) => cidrs.push(c),
                Err(e) => self.bad(&format!("trusted_proxies[{i}]"), e),
            }
        }
        let (mut listen, mut proxy_protocol) = (Vec::new(), Vec::new());
        for (i, l) in listen_raw.into_iter().enumerate() {
            let key = if one {
                "listen".to_string()
            } else {
                format!("listen[{i}]")
            };
            let (addr, pp, key) = match l {
                RawListen::Addr(s) => (s, false, key),
                RawListen::Map(m) => {
                    if m.proxy_protocol && trusted_raw.is_empty() {
                        self.bad(
                            &format!("{key}.proxy_protocol"),
                            "needs trusted_proxies: list the load balancers whose PROXY headers are believed",
                        );
                    }
                    (m.addr, m.proxy_protocol, format!("{key}.addr"))
                }
            };
            if let Some(a) = self.addr(&key, &addr) {
                listen.push(a);
                proxy_protocol.push(pp);
            }
        }
        (listen, proxy_protocol, CidrSet::new(cidrs))
    }

    fn backends(
        &mut self,
        raw: Vec<RawBackend>,
        upstream_tls: Option<&upstream_tls::RawUpstreamTls>,
        base: &Path,
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
            let Some((authority, https)) = self.backend_url(&format!("{key}.url"), &b.url) else {
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
                self.bad(
                    &format!("{key}.url"),
                    format!("{} is already backends[{prev}]", b.url),
                );
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
                url: b.url,
                weight,
                h2c: b.h2c,
                tls,
                zone: b.zone,
                priority,
                max_connections: b.max_connections,
                tcp: b
                    .tcp
                    .and_then(|t| self.data_address(&format!("{key}.tcp"), &t)),
            });
        }
        out
    }

    /// `tls`: the listener's certificate, and client certificates.
    fn listener_tls(&mut self, t: RawTls, base: &Path) -> Option<TlsConfig> {
        let cert = base.join(t.cert);
        let key = base.join(t.key);
        let client_ca = t.client_ca.map(|p| base.join(p));
        let forward_client_cert = match t.forward_client_cert {
            None => None,
            Some(_) if client_ca.is_none() => {
                self.bad(
                    "tls.forward_client_cert",
                    "needs tls.client_ca (only a verified certificate's subject is forwarded)",
                );
                None
            }
            Some(h) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if RESERVED_HEADERS.contains(&n.as_str()) => {
                    self.bad(
                        "tls.forward_client_cert",
                        format!("{h:?} is a header the proxy itself manages; pick another name"),
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(_) => {
                    self.bad(
                        "tls.forward_client_cert",
                        format!("{h:?} is not a valid header name"),
                    );
                    None
                }
            },
        };
        let client_roots = match &client_ca {
            None => None,
            Some(ca) => match certs::read_roots(ca) {
                Ok(r) => Some(std::sync::Arc::new(r)),
                Err(e) => {
                    self.bad("tls.client_ca", e);
                    return None;
                }
            },
        };
        match certs::listener_identity(&cert, &key) {
            Ok(identity) => Some(TlsConfig {
                cert_not_after: identity.not_after,
                cert,
                key,
                client_ca,
                forward_client_cert,
                certs: std::sync::Arc::new(ListenerCerts {
                    identity,
                    client_roots,
                }),
            }),
            Err(e) => {
                self.bad("tls", e);
                None
            }
        }
    }

    /// The URL's authority, and whether it is `https://`.
    fn backend_url(&mut self, key: &str, url: &str) -> Option<(http::uri::Authority, bool)> {
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

    fn probe_path(&mut self, key: &str, p: &str) {
        if !p.starts_with('/') || p.parse::<http::uri::PathAndQuery>().is_err() {
            self.bad(key, format!("invalid path {p:?} (it must start with '/')"));
        }
    }

    fn interval_timeout(&mut self, section: &str, interval: Duration, timeout: Duration) {
        if interval.is_zero() {
            self.bad(&format!("{section}.interval"), "must be more than 0");
        }
        if timeout.is_zero() {
            self.bad(&format!("{section}.timeout"), "must be more than 0");
        } else if timeout >= interval {
            self.bad(
                &format!("{section}.timeout"),
                format!(
                    "{} must be shorter than {section}.interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
    }

    fn health(&mut self, raw: Option<RawProbe>) -> HealthConfig {
        let raw = raw.unwrap_or(RawProbe {
            path: None,
            method: None,
            body: None,
            interval: None,
            timeout: None,
            rise: None,
            fall: None,
            expect: None,
        });
        let path = raw.path.unwrap_or_else(|| "/".to_string());
        self.probe_path("health.path", &path);
        let interval = raw.interval.map_or(Duration::from_secs(1), |d| d.0);
        let timeout = raw.timeout.map_or(Duration::from_millis(500), |d| d.0);
        self.interval_timeout("health", interval, timeout);
        let rise = raw.rise.unwrap_or(2);
        let fall = raw.fall.unwrap_or(3);
        if rise == 0 {
            self.bad("health.rise", "must be at least 1");
        }
        if fall == 0 {
            self.bad("health.fall", "must be at least 1");
        }
        let expect = self.expect("health.expect", raw.expect.unwrap_or_default());
        HealthConfig {
            probe: ProbeConfig {
                path,
                method: raw.method.map_or(http::Method::GET, |m| m.0),
                body: raw.body,
                interval,
                timeout,
                expect,
            },
            rise,
            fall,
        }
    }

    fn leader(&mut self, raw: RawLeader) -> LeaderConfig {
        let path = raw.path.unwrap_or_else(|| {
            self.bad("leader.path", "required: the path of the leader probe");
            "/".to_string()
        });
        self.probe_path("leader.path", &path);
        let interval = raw.interval.map_or(Duration::from_millis(500), |d| d.0);
        let timeout = raw.timeout.map_or(Duration::from_millis(300), |d| d.0);
        self.interval_timeout("leader", interval, timeout);
        let fall = raw.fall.unwrap_or(2);
        if fall == 0 {
            self.bad("leader.fall", "must be at least 1");
        }
        let fast_interval = raw.fast_interval.map_or(Duration::from_millis(25), |d| d.0);
        if fast_interval.is_zero() {
            self.bad("leader.fast_interval", "must be more than 0");
        } else if fast_interval > interval {
            self.bad(
                "leader.fast_interval",
                format!(
                    "{} must not be longer than leader.interval ({})",
                    humantime::format_duration(fast_interval),
                    humantime::format_duration(interval)
                ),
            );
        }
        let raw_expect = raw.expect.unwrap_or_default();
        // Judged on what was written: a condition written wrong is
        // reported as such, not again as missing.
        let given = raw_expect.status.is_some()
            || raw_expect.body_regex.is_some()
            || raw_expect.json.is_some()
            || raw_expect.header.is_some();
        let expect = self.expect("leader.expect", raw_expect);
        if !given {
            self.bad(
                "leader.expect",
                "give at least one condition (status, body_regex, json or header) that only the leader's answer meets",
            );
        }
        LeaderConfig {
            probe: ProbeConfig {
                path,
                method: raw.method.map_or(http::Method::GET, |m| m.0),
                body: raw.body,
                interval,
                timeout,
                expect,
            },
            fall,
            fast_interval,
            term_pointer: raw.term.map(|t| t.pointer.0),
        }
    }

    fn statuses(&mut self, key: &str, s: &[u16]) {
        if s.is_empty() {
            self.bad(key, "the list is empty");
        }
        for (i, code) in s.iter().enumerate() {
            if !(100..=599).contains(code) {
                self.bad(
                    &format!("{key}[{i}]"),
                    format!("{code} is not an HTTP status (100-599)"),
                );
            }
        }
    }

    fn expect(&mut self, key: &str, raw: RawExpect) -> Expect {
        if let Some(s) = &raw.status {
            self.statuses(&format!("{key}.status"), s);
        }
        let json = raw
            .json
            .and_then(|j| match (j.pointer, j.equals, j.equals_pointer) {
                (None, ..) => {
                    self.bad(
                        &format!("{key}.json.pointer"),
                        "required: the JSON pointer of the value to compare",
                    );
                    None
                }
                (Some(pointer), Some(v), None) => Some(JsonExpect {
                    pointer: pointer.0,
                    want: JsonWant::Equals(v),
                }),
                (Some(pointer), None, Some(p)) => Some(JsonExpect {
                    pointer: pointer.0,
                    want: JsonWant::EqualsPointer(p.0),
                }),
                _ => {
                    self.bad(
                        &format!("{key}.json"),
                        "give exactly one of `equals` and `equals_pointer`",
                    );
                    None
                }
            });
        let header =
            raw.header
                .and_then(|h| match http::HeaderName::from_bytes(h.name.as_bytes()) {
                    Ok(n) => Some((n, h.equals)),
                    Err(_) => {
                        self.bad(
                            &format!("{key}.header.name"),
                            format!("invalid header name {:?}", h.name),
                        );
                        None
                    }
                });
        Expect {
            status: raw.status,
            body_regex: raw.body_regex.map(|r| r.0),
            json,
            header,
        }
    }

    fn routes(&mut self, raw: Vec<RawRoute>) -> Vec<Rule> {
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.methods.is_none() && r.path_prefix.is_none() && r.path_regex.is_none() {
                    self.bad(
                        &format!("routes[{i}]"),
                        "give at least one of methods, path_prefix and path_regex",
                    );
                }
                if let Some(m) = &r.methods {
                    if m.is_empty() {
                        self.bad(&format!("routes[{i}].methods"), "the list is empty");
                    }
                }
                if let Some(p) = &r.path_prefix {
                    if !p.starts_with('/') {
                        self.bad(
                            &format!("routes[{i}].path_prefix"),
                            format!("{p:?} must start with '/'"),
                        );
                    }
                }
                if r.timeout.is_some_and(|d| d.0.is_zero()) {
                    self.bad(&format!("routes[{i}].timeout"), "must be more than 0");
                }
                if r.idempotent.is_some() && r.to == Role::Read {
                    self.bad(
                        &format!("routes[{i}].idempotent"),
                        "only for `to: write` routes (a read is always safe to send again)",
                    );
                }
                Rule {
                    methods: r
                        .methods
                        .map(|ms| MethodSet::from_methods(ms.iter().map(|m| &m.0))),
                    path_prefix: r.path_prefix,
                    path_regex: r.path_regex.map(|r| r.0),
                    route: Route {
                        role: r.to,
                        timeout: r.timeout.map(|d| d.0),
                        long_poll: r.long_poll,
                        upgrade: r.upgrade,
                        idempotent: r.idempotent,
                    },
                }
            })
            .collect()
    }

    fn writes(&mut self, raw: Option<RawWrites>) -> WritesConfig {
        let raw = raw.unwrap_or(RawWrites {
            hold: None,
            max_held: None,
            replay_body_limit: None,
            not_leader: None,
            retry_ambiguous: None,
        });
        let not_leader = raw.not_leader.map_or_else(NotLeader::default, |n| {
            if let Some(s) = &n.status {
                self.statuses("writes.not_leader.status", s);
                for (i, code) in s.iter().enumerate() {
                    if (200..300).contains(code) {
                        self.bad(
                            &format!("writes.not_leader.status[{i}]"),
                            format!("{code} is a success status; match the refusal's body instead: body: [{{ status: [{code}], regex: '...' }}]"),
                        );
                    }
                }
            }
            if n.body_regex.is_some() {
                self.bad(
                    "writes.not_leader.body_regex",
                    "an unscoped body regex also matches successes whose body contains it, and such a write would be applied twice; scope it by status and anchor it to the refusal, e.g. body: [{ status: [200], regex: '^\\{\"[^\"]+\":\\[false,\"READONLY ' }]",
                );
            }
            let body = n
                .body
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    self.statuses(&format!("writes.not_leader.body[{i}].status"), &r.status);
                    BodyRule {
                        status: r.status,
                        regex: r.regex.0,
                    }
                })
                .collect();
            NotLeader {
                status: n.status.unwrap_or_default(),
                body,
                redirect: n.redirect,
            }
        });
        let max_held = raw.max_held.unwrap_or(10_000);
        let replay_body_limit = raw.replay_body_limit.map_or(1 << 20, |s| s.0);
        if replay_body_limit > MAX_REPLAY_BODY_LIMIT {
            self.bad(
                "writes.replay_body_limit",
                format!("{replay_body_limit} bytes is more than the most allowed, 64MiB"),
            );
        }
        WritesConfig {
            hold: raw.hold.map_or(Duration::from_secs(5), |d| d.0),
            max_held,
            replay_body_limit,
            not_leader,
            retry_ambiguous: raw.retry_ambiguous.unwrap_or(RetryAmbiguous::Never),
        }
    }

    fn timeouts(&mut self, raw: Option<RawTimeouts>) -> Timeouts {
        let t = raw.unwrap_or(RawTimeouts {
            connect: None,
            response_headers: None,
            header_read: None,
            upstream_idle: None,
            body_idle: None,
            client_idle: None,
        });
        let out = Timeouts {
            connect: t.connect.map_or(Duration::from_secs(1), |d| d.0),
            response_headers: t.response_headers.map_or(Duration::from_secs(30), |d| d.0),
            header_read: t.header_read.map_or(Duration::from_secs(10), |d| d.0),
            upstream_idle: t.upstream_idle.map_or(Duration::from_secs(60), |d| d.0),
            body_idle: t.body_idle.map_or(Duration::from_secs(60), |d| d.0),
            client_idle: t.client_idle.map_or(Duration::from_secs(60), |d| d.0),
        };
        for (k, d) in [
            ("timeouts.connect", out.connect),
            ("timeouts.response_headers", out.response_headers),
            ("timeouts.header_read", out.header_read),
            ("timeouts.upstream_idle", out.upstream_idle),
            ("timeouts.body_idle", out.body_idle),
            ("timeouts.client_idle", out.client_idle),
        ] {
            if d.is_zero() {
                self.bad(k, "must be more than 0");
            }
        }
        out
    }

    fn limits(&mut self, raw: Option<RawLimits>) -> Limits {
        let l = raw.unwrap_or(RawLimits {
            max_header_bytes: None,
            max_body_bytes: None,
            max_connections: None,
            replay_buffer_bytes: None,
            admin_max_connections: None,
            max_upstream_connections_per_backend: None,
        });
        let out = Limits {
            max_header_bytes: l.max_header_bytes.map_or(64 << 10, |s| s.0 as usize),
            max_body_bytes: l.max_body_bytes.map_or(64 << 20, |s| s.0),
            max_connections: l.max_connections.unwrap_or(10_000),
            replay_buffer_bytes: l.replay_buffer_bytes.map_or(64 << 20, |s| s.0),
            admin_max_connections: l.admin_max_connections.unwrap_or(64),
            max_upstream_connections_per_backend: l
                .max_upstream_connections_per_backend
                .unwrap_or(DEFAULT_MAX_UPSTREAM_CONNECTIONS),
        };
        if out.max_header_bytes < 8192 {
            self.bad(
                "limits.max_header_bytes",
                "must be at least 8KiB (hyper's smallest read buffer)",
            );
        }
        if out.max_connections == 0 {
            self.bad("limits.max_connections", "must be at least 1");
        }
        if out.admin_max_connections == 0 {
            self.bad("limits.admin_max_connections", "must be at least 1");
        }
        if out.max_upstream_connections_per_backend == 0 {
            self.bad(
                "limits.max_upstream_connections_per_backend",
                "must be at least 1",
            );
        }
        out
    }

    fn passive(&mut self, raw: Option<RawPassive>) -> PassiveConfig {
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

#[cfg(test)]
mod preset_tests;
#[cfg(test)]
mod tests;

//! `leaderproxy check --explain`: a validated [`Config`] written back as
//! YAML with every key — the preset merged in, every default filled in —
//! so an operator sees exactly what runs. The output is itself a valid
//! config that means the same (it names no preset: everything is explicit).
//!
//! Durations are written as humantime text (`250ms`, `1m 30s`), sizes in
//! bytes, regexes as their source, header names in lower case, paths
//! absolute; a key whose default is "none" is written as `null`.

mod tcp;
use tcp::tcp;

use std::path::Path;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::{
    BackendConfig, Config, Consistency, DnsLookup, Expect, HedgeAfter, HttpReuse, JsonWant,
    MembersKind, Policy, PositionSource, ProbeAuth, ProbeConfig, ProbeKind, RetryAmbiguous, Role,
    Rule, Scheme, SessionKey, TryTimeout, UpstreamTlsSettings,
};

/// The effective config as a YAML document (key order as in the README).
pub(crate) fn explain(cfg: &Config) -> Value {
    map([
        ("listen", listen(cfg)),
        ("tcp", Value::Sequence(cfg.tcp.iter().map(tcp).collect())),
        ("data_port", opt(cfg.data_port, |p| num(p.into()))),
        (
            "trusted_proxies",
            Value::Sequence(cfg.trusted_proxies.iter().map(text).collect()),
        ),
        ("admin", text(cfg.admin)),
        (
            "admin_token_file",
            opt(cfg.admin_token.as_ref(), |t| path(&t.file)),
        ),
        ("admin_insecure", Value::Bool(cfg.admin_insecure)),
        ("workers", num(cfg.workers as u64)),
        ("debug_headers", Value::Bool(cfg.debug_headers)),
        ("access_log", Value::Bool(cfg.access_log)),
        (
            "http_reuse",
            text(match cfg.http_reuse {
                HttpReuse::Safe => "safe",
                HttpReuse::Always => "always",
            }),
        ),
        ("shutdown_grace", dur(cfg.shutdown_grace)),
        ("local_zone", opt(cfg.local_zone.as_ref(), text)),
        (
            "backends",
            Value::Sequence(cfg.backends.iter().map(backend).collect()),
        ),
        ("discovery", discovery(cfg)),
        (
            "upstream_tls",
            opt(cfg.discovery.tls.as_ref(), |t| tls_settings(&t.settings)),
        ),
        ("health", health(cfg)),
        ("leader", leader(cfg)),
        ("positions", positions(cfg)),
        ("probe_auth", probe_auth(cfg)),
        (
            "routes",
            Value::Sequence(cfg.routes.iter().map(route).collect()),
        ),
        ("reads", reads(cfg)),
        ("writes", writes(cfg)),
        ("timeouts", timeouts(cfg)),
        ("limits", limits(cfg)),
        ("passive", passive(cfg)),
        ("tls", opt(cfg.tls.as_ref(), listener_tls)),
    ])
}

/// The effective config as YAML text, headed by a comment that says where
/// it came from.
pub fn explain_text(cfg: &Config) -> String {
    let mut out = format!(
        "# The effective config of {}: {}every default filled in.\n",
        cfg.source.display(),
        match &cfg.preset {
            Some(p) => format!("preset {p} merged in, "),
            None => String::new(),
        }
    );
    out.push_str(&serde_yaml::to_string(&explain(cfg)).unwrap_or_default());
    out
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn text(x: impl ToString) -> Value {
    Value::String(x.to_string())
}

fn num(n: u64) -> Value {
    Value::Number(n.into())
}

fn dur(d: Duration) -> Value {
    text(humantime::format_duration(d))
}

fn opt<T>(o: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    o.map_or(Value::Null, f)
}

/// An absolute path (a relative one is taken from the current directory,
/// as the proxy opens it).
fn path(p: &Path) -> Value {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    };
    text(abs.display())
}

fn statuses(s: &[u16]) -> Value {
    Value::Sequence(s.iter().map(|&c| num(c.into())).collect())
}

fn listen(cfg: &Config) -> Value {
    Value::Sequence(
        cfg.listen
            .iter()
            .zip(&cfg.listen_proxy_protocol)
            .map(|(a, pp)| map([("addr", text(a)), ("proxy_protocol", Value::Bool(*pp))]))
            .collect(),
    )
}

fn tls_settings(s: &UpstreamTlsSettings) -> Value {
    map([
        ("ca", opt(s.ca.as_deref(), path)),
        ("cert", opt(s.cert.as_deref(), path)),
        ("key", opt(s.key.as_deref(), path)),
        ("server_name", opt(s.server_name.as_ref(), text)),
        ("insecure_skip_verify", Value::Bool(s.insecure_skip_verify)),
    ])
}

fn backend(b: &BackendConfig) -> Value {
    map([
        ("name", text(&b.name)),
        (
            "url",
            if b.has_url() {
                text(&b.url)
            } else {
                Value::Null
            },
        ),
        ("weight", num(b.weight.into())),
        ("h2c", Value::Bool(b.h2c)),
        ("tls", opt(b.tls.as_ref(), |t| tls_settings(&t.settings))),
        ("zone", opt(b.zone.as_ref(), text)),
        ("priority", num(b.priority.into())),
        (
            "max_connections",
            opt(b.max_connections.as_ref(), |n| num(*n as u64)),
        ),
        ("tcp", opt(b.tcp.as_ref(), text)),
    ])
}

fn discovery(cfg: &Config) -> Value {
    let d = &cfg.discovery;
    map([
        (
            "dns",
            opt(d.dns.as_ref(), |dns| {
                let scheme = text(match dns.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                });
                match &dns.lookup {
                    DnsLookup::Addresses { name, port } => map([
                        ("name", text(name)),
                        ("port", num((*port).into())),
                        ("scheme", scheme),
                        ("interval", dur(dns.interval)),
                    ]),
                    DnsLookup::Srv { name } => map([
                        ("srv", text(name)),
                        ("scheme", scheme),
                        ("interval", dur(dns.interval)),
                    ]),
                }
            }),
        ),
        (
            "members",
            opt(d.members.as_ref(), |m| {
                map([
                    (
                        "kind",
                        text(match m.kind {
                            MembersKind::Etcd => "etcd",
                            MembersKind::Patroni => "patroni",
                            MembersKind::Rqlite => "rqlite",
                            MembersKind::Consul => "consul",
                        }),
                    ),
                    ("interval", dur(m.interval)),
                ])
            }),
        ),
        ("max_backends", num(d.max_backends.into())),
        ("remove_after", num(d.remove_after.into())),
    ])
}

fn expect(e: &Expect) -> Value {
    map([
        ("status", opt(e.status.as_deref(), statuses)),
        (
            "body_regex",
            opt(e.body_regex.as_ref(), |r| text(r.as_str())),
        ),
        (
            "json",
            opt(e.json.as_ref(), |j| match &j.want {
                JsonWant::Equals(v) => map([
                    ("pointer", text(&j.pointer)),
                    ("equals", serde_yaml::to_value(v).unwrap_or(Value::Null)),
                ]),
                JsonWant::OneOf(vs) => map([
                    ("pointer", text(&j.pointer)),
                    (
                        "one_of",
                        Value::Sequence(
                            vs.iter()
                                .map(|v| serde_yaml::to_value(v).unwrap_or(Value::Null))
                                .collect(),
                        ),
                    ),
                ]),
                JsonWant::EqualsPointer(p) => {
                    map([("pointer", text(&j.pointer)), ("equals_pointer", text(p))])
                }
            }),
        ),
        (
            "header",
            opt(e.header.as_ref(), |(name, want)| {
                map([("name", text(name)), ("equals", text(want))])
            }),
        ),
    ])
}

/// The request keys of a probe: path, method, body.
fn request(p: &ProbeConfig) -> [(&'static str, Value); 3] {
    [
        ("path", text(&p.path)),
        ("method", text(&p.method)),
        ("body", opt(p.body.as_ref(), text)),
    ]
}

/// The probe's kind (`http` unless native).
fn kind(p: &ProbeConfig) -> Value {
    text(p.native.as_ref().map_or(ProbeKind::Http, |n| n.kind).name())
}

/// A map of `entries` with the HTTP request keys (path, method, body,
/// expect and the like, `http`) only when the probe speaks HTTP: a native
/// probe refuses them.
fn probe_map(
    p: &ProbeConfig,
    mut entries: Vec<(&'static str, Value)>,
    http: Vec<(&'static str, Value)>,
) -> Value {
    if p.native.is_none() {
        let [req_path, req_method, req_body] = request(p);
        entries.splice(1..1, [req_path, req_method, req_body]);
        entries.extend(http);
    }
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

fn health(cfg: &Config) -> Value {
    let h = &cfg.health;
    probe_map(
        &h.probe,
        vec![
            ("kind", kind(&h.probe)),
            ("interval", dur(h.probe.interval)),
            ("timeout", dur(h.probe.timeout)),
            ("rise", num(h.rise.into())),
            ("fall", num(h.fall.into())),
        ],
        vec![("expect", expect(&h.probe.expect))],
    )
}

fn leader(cfg: &Config) -> Value {
    let l = &cfg.leader;
    probe_map(
        &l.probe,
        vec![
            ("kind", kind(&l.probe)),
            ("interval", dur(l.probe.interval)),
            ("timeout", dur(l.probe.timeout)),
            ("fall", num(l.fall.into())),
            ("fast_interval", dur(l.fast_interval)),
        ],
        vec![
            ("expect", expect(&l.probe.expect)),
            (
                "term",
                opt(l.term_pointer.as_ref(), |p| map([("pointer", text(p))])),
            ),
        ],
    )
}

/// `probe_auth`: the password file's path, never the password.
fn probe_auth(cfg: &Config) -> Value {
    let a = &cfg.probe_auth;
    if **a == ProbeAuth::default() {
        return Value::Null;
    }
    map([
        ("user", opt(a.user.as_ref(), text)),
        ("password_file", opt(a.password_file.as_ref(), |f| path(f))),
        ("database", opt(a.database.as_ref(), text)),
    ])
}

/// A position source as its one key.
fn source(s: &PositionSource) -> (&'static str, Value) {
    match s {
        PositionSource::Header(h) => ("header", text(h)),
        PositionSource::Json(p) => ("json", text(p)),
        PositionSource::Regex(r) => ("regex", text(r.as_str())),
        // Never written: a native position probe is `positions.kind`.
        PositionSource::Native => ("kind", Value::Null),
    }
}

fn positions(cfg: &Config) -> Value {
    let p = &cfg.positions;
    if p.probe.is_none() && p.response.is_none() {
        return Value::Null;
    }
    let native = p
        .probe
        .as_ref()
        .and_then(|(probe, _)| probe.native.as_ref());
    map([
        (
            "kind",
            text(native.map_or(ProbeKind::Http, |n| n.kind).name()),
        ),
        (
            "probe",
            opt(
                p.probe.as_ref().filter(|_| native.is_none()),
                |(probe, src)| {
                    let [req_path, req_method, req_body] = request(probe);
                    map([req_path, req_method, req_body, source(src)])
                },
            ),
        ),
        ("response", opt(p.response.as_ref(), |s| map([source(s)]))),
        (
            "scope",
            Value::Sequence(if p.scope.is_empty() {
                vec![text("/")]
            } else {
                p.scope.iter().map(text).collect()
            }),
        ),
    ])
}

fn route(r: &Rule) -> Value {
    map([
        (
            "methods",
            opt(r.methods.as_ref(), |m| {
                Value::Sequence(m.methods().iter().map(text).collect())
            }),
        ),
        ("path_prefix", opt(r.path_prefix.as_ref(), text)),
        (
            "path_regex",
            opt(r.path_regex.as_ref(), |x| text(x.as_str())),
        ),
        (
            "to",
            text(match r.route.role {
                Role::Read => "read",
                Role::Write => "write",
            }),
        ),
        ("timeout", opt(r.route.timeout, dur)),
        ("long_poll", Value::Bool(r.route.long_poll)),
        ("upgrade", Value::Bool(r.route.upgrade)),
        ("idempotent", opt(r.route.idempotent, Value::Bool)),
    ])
}

fn policy(p: Policy) -> Value {
    text(p.as_str())
}

fn reads(cfg: &Config) -> Value {
    let r = &cfg.reads;
    map([
        ("policy", policy(r.policy)),
        ("fallback_to_leader", Value::Bool(r.fallback_to_leader)),
        ("retry", Value::Bool(r.retry)),
        (
            "try_timeout",
            opt(r.try_timeout, |t| match t {
                TryTimeout::Fixed(d) => dur(d),
                TryTimeout::Auto(_) => text("auto"),
            }),
        ),
        (
            "try_timeout_auto",
            opt(
                match r.try_timeout {
                    Some(TryTimeout::Auto(a)) => Some(a),
                    _ => None,
                },
                |a| {
                    map([
                        ("multiplier", Value::from(a.multiplier)),
                        ("min", dur(a.min)),
                        ("max", dur(a.max)),
                    ])
                },
            ),
        ),
        (
            "hedge",
            opt(r.hedge, |h| {
                map([
                    (
                        "after",
                        match h.after {
                            HedgeAfter::Fixed(d) => dur(d),
                            HedgeAfter::P95 => text("p95"),
                        },
                    ),
                    ("max_percent", num(h.max_percent.into())),
                ])
            }),
        ),
        (
            "consistency",
            text(match r.consistency {
                Consistency::Eventual => "eventual",
                Consistency::ReadYourWrites => "read_your_writes",
            }),
        ),
        (
            "session",
            opt(r.session.as_ref(), |s| {
                let key = match &s.key {
                    SessionKey::Header(h) => ("header", text(h)),
                    SessionKey::Cookie(c) => ("cookie", text(c)),
                    SessionKey::ClientIp => ("client_ip", Value::Bool(true)),
                };
                map([key, ("capacity", num(s.capacity as u64))])
            }),
        ),
        ("max_lag", opt(r.max_lag, num)),
        ("after_write_window", dur(r.after_write_window)),
    ])
}

fn writes(cfg: &Config) -> Value {
    let w = &cfg.writes;
    let nl = &w.not_leader;
    map([
        ("hold", dur(w.hold)),
        ("max_held", num(w.max_held as u64)),
        ("replay_body_limit", num(w.replay_body_limit)),
        (
            "not_leader",
            map([
                // An empty list is refused: none is written as null.
                (
                    "status",
                    if nl.status.is_empty() {
                        Value::Null
                    } else {
                        statuses(&nl.status)
                    },
                ),
                (
                    "body",
                    Value::Sequence(
                        nl.body
                            .iter()
                            .map(|b| {
                                map([
                                    ("status", statuses(&b.status)),
                                    ("regex", text(b.regex.as_str())),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("redirect", Value::Bool(nl.redirect)),
            ]),
        ),
        (
            "retry_ambiguous",
            text(match w.retry_ambiguous {
                RetryAmbiguous::Never => "never",
                RetryAmbiguous::Idempotent => "idempotent",
            }),
        ),
    ])
}

fn timeouts(cfg: &Config) -> Value {
    let t = &cfg.timeouts;
    map([
        ("connect", dur(t.connect)),
        ("response_headers", dur(t.response_headers)),
        ("header_read", dur(t.header_read)),
        ("upstream_idle", dur(t.upstream_idle)),
        ("body_idle", dur(t.body_idle)),
        ("client_idle", dur(t.client_idle)),
    ])
}

fn limits(cfg: &Config) -> Value {
    let l = &cfg.limits;
    map([
        ("max_header_bytes", num(l.max_header_bytes as u64)),
        ("max_body_bytes", num(l.max_body_bytes)),
        ("max_connections", num(l.max_connections as u64)),
        ("replay_buffer_bytes", num(l.replay_buffer_bytes)),
        ("admin_max_connections", num(l.admin_max_connections as u64)),
        (
            "max_upstream_connections_per_backend",
            num(l.max_upstream_connections_per_backend as u64),
        ),
    ])
}

fn passive(cfg: &Config) -> Value {
    let p = &cfg.passive;
    map([
        ("consecutive_failures", num(p.consecutive_failures.into())),
        ("base_ejection", dur(p.base_ejection)),
        ("max_ejection", dur(p.max_ejection)),
        ("max_ejection_percent", num(p.max_ejection_percent.into())),
    ])
}

fn listener_tls(t: &super::TlsConfig) -> Value {
    map([
        ("cert", path(&t.cert)),
        ("key", path(&t.key)),
        ("client_ca", opt(t.client_ca.as_deref(), path)),
        (
            "forward_client_cert",
            opt(t.forward_client_cert.as_ref(), text),
        ),
    ])
}

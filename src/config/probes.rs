//! The probes: `health` (is a backend up) and `leader` (which backend
//! leads), with their `expect` conditions.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Method, Pointer, ProbeAuth, ProbeKind, Re, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) kind: Option<ProbeKind>,
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
pub(super) struct RawLeader {
    pub(super) kind: Option<ProbeKind>,
    /// Required (for `kind: http`); optional here so that a file with a preset may give only
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
pub(super) struct RawTerm {
    pointer: Pointer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    status: Option<Vec<u16>>,
    body_regex: Option<Re>,
    json: Option<RawJsonExpect>,
    header: Option<RawHeaderExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJsonExpect {
    /// Required (optional here, like `leader.path`).
    pointer: Option<Pointer>,
    equals: Option<serde_json::Value>,
    equals_pointer: Option<Pointer>,
    one_of: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderExpect {
    name: String,
    equals: String,
}

/// What a probe answer must satisfy; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expect {
    /// Accepted status codes; `None` means any 2xx.
    pub(crate) status: Option<Vec<u16>>,
    /// A regex the body must match; default none.
    pub(crate) body_regex: Option<regex::Regex>,
    /// A condition on a JSON value of the body; default none.
    pub(crate) json: Option<JsonExpect>,
    /// A header that must have exactly this value; default none.
    pub(crate) header: Option<(http::HeaderName, String)>,
}

/// A JSON pointer condition on the probe body.
#[derive(Debug, Clone)]
pub struct JsonExpect {
    /// JSON pointer (RFC 6901) to the value compared.
    pub(crate) pointer: String,
    /// What the value must be.
    pub(crate) want: JsonWant,
}

/// What the pointed-at JSON value must be.
#[derive(Debug, Clone)]
pub(crate) enum JsonWant {
    /// Equal to this value (a string also matches the same number written as a string).
    Equals(serde_json::Value),
    /// Equal to the value at another pointer of the same document (etcd: member_id == leader).
    EqualsPointer(String),
    /// Equal to one of these values (Patroni's `/role`: `master` before
    /// 3.x renamed it, `primary` after); never empty.
    OneOf(Vec<serde_json::Value>),
}

/// A native probe (`kind` other than `http`): the protocol and the login.
#[derive(Debug, Clone)]
pub struct NativeProbe {
    /// `redis` or `postgres` (never `http`).
    pub kind: ProbeKind,
    /// `probe_auth`, shared by every native probe of the config.
    pub auth: Arc<ProbeAuth>,
}

/// A periodic probe: an HTTP request, or a native one (`native`).
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Set when the probe speaks the database's protocol at the backend's
    /// data address (`backends[].tcp`) instead of HTTP; default none.
    /// `path`, `method`, `body` and `expect` are unused then.
    pub native: Option<NativeProbe>,
    /// Path (and query) probed on each backend; `health` default `/`.
    pub path: String,
    /// Default GET.
    pub method: http::Method,
    /// Request body sent with the probe; default none.
    pub body: Option<String>,
    /// Time between probes of one backend.
    pub interval: Duration,
    /// Longest wait for a probe answer; shorter than `interval`.
    pub timeout: Duration,
    /// What a passing answer looks like.
    pub(crate) expect: Expect,
}

/// Health probe plus its hysteresis.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// The request and its pass condition (health default: any 2xx of
    /// `GET /` every 1s, 500ms timeout).
    pub probe: ProbeConfig,
    /// Consecutive successes to become healthy; default 2.
    pub rise: u32,
    /// Consecutive failures to become unhealthy; default 3.
    pub fall: u32,
}

/// Leader probe.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// The request and the condition only the leader's answer meets
    /// (default interval 500ms, timeout 300ms).
    pub probe: ProbeConfig,
    /// Consecutive failed leader probes (timeout, broken answer) that drop a
    /// claim; default 2. A connect refusal or an answer that says "not the
    /// leader" drops it at once.
    pub(crate) fall: u32,
    /// Leader probe interval while no usable leader is known; default 25ms.
    pub(crate) fast_interval: Duration,
    /// JSON pointer to a raft term; the higher term wins when two backends
    /// claim, and a claimant whose term is lower than one already seen never leads.
    pub(crate) term_pointer: Option<String>,
}

impl ProbeConfig {
    /// A probe of `path` every `interval`, each allowed `timeout`;
    /// `method` defaults to GET.
    fn new(
        path: String,
        method: Option<Method>,
        body: Option<String>,
        interval: Duration,
        timeout: Duration,
        expect: Expect,
    ) -> ProbeConfig {
        ProbeConfig {
            native: None,
            path,
            method: method.map_or(http::Method::GET, |m| m.0),
            body,
            interval,
            timeout,
            expect,
        }
    }
}

impl LeaderConfig {
    /// Stands in for a missing `leader` while the rest is validated; never
    /// part of a valid config.
    pub(super) fn unset() -> LeaderConfig {
        LeaderConfig {
            probe: ProbeConfig {
                native: None,
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

impl Validator {
    pub(super) fn probe_path(&mut self, key: &str, p: &str) {
        if !p.starts_with('/') || p.parse::<http::uri::PathAndQuery>().is_err() {
            self.bad(key, format!("invalid path {p:?} (it must start with '/')"));
        }
    }

    pub(super) fn interval_timeout(
        &mut self,
        section: &str,
        interval: Duration,
        timeout: Duration,
    ) {
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

    pub(super) fn health(&mut self, raw: Option<RawProbe>) -> HealthConfig {
        let raw = raw.unwrap_or(RawProbe {
            kind: None,
            path: None,
            method: None,
            body: None,
            interval: None,
            timeout: None,
            rise: None,
            fall: None,
            expect: None,
        });
        let kind = raw.kind.unwrap_or_default();
        self.http_only_keys(
            "health",
            kind,
            [
                ("path", raw.path.is_some()),
                ("method", raw.method.is_some()),
                ("body", raw.body.is_some()),
                ("expect", raw.expect.is_some()),
            ],
        );
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
            probe: ProbeConfig::new(path, raw.method, raw.body, interval, timeout, expect),
            rise,
            fall,
        }
    }

    /// Keys a native probe (`{section}.kind` not `http`) has no use for.
    fn http_only_keys<const N: usize>(
        &mut self,
        section: &str,
        kind: ProbeKind,
        given: [(&str, bool); N],
    ) {
        if !kind.is_native() {
            return;
        }
        for (key, _) in given.iter().filter(|(_, g)| *g) {
            self.bad(
                &format!("{section}.{key}"),
                format!(
                    "not with {section}.kind {}: a native probe asks the backend in its own protocol (remove it, or `~` to drop a preset's)",
                    kind.name()
                ),
            );
        }
    }

    pub(super) fn leader(&mut self, raw: RawLeader) -> LeaderConfig {
        let kind = raw.kind.unwrap_or_default();
        let native = kind.is_native();
        self.http_only_keys(
            "leader",
            kind,
            [
                ("path", raw.path.is_some()),
                ("method", raw.method.is_some()),
                ("body", raw.body.is_some()),
                ("expect", raw.expect.is_some()),
                ("term", raw.term.is_some()),
            ],
        );
        let path = raw.path.unwrap_or_else(|| {
            if !native {
                self.bad("leader.path", "required: the path of the leader probe");
            }
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
        if !given && !native {
            self.bad(
                "leader.expect",
                "give at least one condition (status, body_regex, json or header) that only the leader's answer meets",
            );
        }
        LeaderConfig {
            probe: ProbeConfig::new(path, raw.method, raw.body, interval, timeout, expect),
            fall,
            fast_interval,
            term_pointer: raw.term.map(|t| t.pointer.0),
        }
    }

    pub(super) fn expect(&mut self, key: &str, raw: RawExpect) -> Expect {
        if let Some(s) = &raw.status {
            self.statuses(&format!("{key}.status"), s);
        }
        let json = raw.json.and_then(
            |j| match (j.pointer, j.equals, j.equals_pointer, j.one_of) {
                (None, ..) => {
                    self.bad(
                        &format!("{key}.json.pointer"),
                        "required: the JSON pointer of the value to compare",
                    );
                    None
                }
                (Some(pointer), Some(v), None, None) => Some(JsonExpect {
                    pointer: pointer.0,
                    want: JsonWant::Equals(v),
                }),
                (Some(pointer), None, Some(p), None) => Some(JsonExpect {
                    pointer: pointer.0,
                    want: JsonWant::EqualsPointer(p.0),
                }),
                (Some(_), None, None, Some(vs)) if vs.is_empty() => {
                    self.bad(
                        &format!("{key}.json.one_of"),
                        "give at least one value (an empty list matches nothing)",
                    );
                    None
                }
                (Some(pointer), None, None, Some(vs)) => Some(JsonExpect {
                    pointer: pointer.0,
                    want: JsonWant::OneOf(vs),
                }),
                _ => {
                    self.bad(
                        &format!("{key}.json"),
                        "give exactly one of `equals`, `equals_pointer` and `one_of`",
                    );
                    None
                }
            },
        );
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
}

//! Replication positions and read consistency: the `positions` section and
//! the `consistency`, `session`, `max_lag` and `after_write_window` keys of
//! `reads`.

use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Expect, Method, Pointer, ProbeConfig, ProbeKind, Re, Validator};

/// Where an integer replication position is read from an answer.
#[derive(Debug, Clone)]
pub enum PositionSource {
    /// A header whose whole value is the integer (`X-Etcd-Index`).
    Header(http::HeaderName),
    /// A JSON pointer into the body: a number, or a string of digits
    /// (etcd v3's `/header/revision` is an int64 written as a string).
    Json(String),
    /// A regex over the body; its first group is the integer.
    Regex(regex::Regex),
    /// The native probe's own answer (`positions.kind` redis or postgres):
    /// nothing in an HTTP answer.
    Native,
}

impl PositionSource {
    /// Whether the body must be read to find the position.
    pub(crate) fn needs_body(&self) -> bool {
        !matches!(self, PositionSource::Header(_))
    }

    /// The position in one answer, if it is there and is an integer.
    pub fn read(&self, headers: &http::HeaderMap, body: &[u8]) -> Option<u64> {
        match self {
            PositionSource::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            PositionSource::Json(pointer) => {
                let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
                match doc.pointer(pointer)? {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
            }
            PositionSource::Regex(re) => {
                let text = std::str::from_utf8(body).ok()?;
                re.captures(text)?.get(1)?.as_str().parse().ok()
            }
            PositionSource::Native => None,
        }
    }
}

/// `positions`: how the replication position of each backend is learned.
#[derive(Debug, Clone, Default)]
pub struct PositionsConfig {
    /// Asked of every backend every `leader.interval` (timeout
    /// `leader.timeout`); any 2xx answer carrying a position counts.
    /// Default none: positions are unknown, `max_lag` cannot be used and
    /// read-your-writes falls back to `reads.after_write_window`.
    pub probe: Option<(ProbeConfig, PositionSource)>,
    /// Read from each write's answer; default none: after a write is
    /// acknowledged, the leader's position is probed (one probe serves every
    /// write acknowledged before it started).
    pub response: Option<PositionSource>,
    /// `positions.scope`: the path prefixes of the requests the positions
    /// count — writes there advance the probed counter, reads there are
    /// guarded by it. Empty (the default) = every path. Under
    /// `read_your_writes` or `max_lag`, a read outside goes to the leader and
    /// a write outside leaves no position.
    pub(crate) scope: Vec<String>,
}

impl PositionsConfig {
    /// Whether the positions count the writes to, and guard the reads of,
    /// `path` (see [`Self::scope`]).
    #[inline]
    pub(crate) fn counts(&self, path: &str) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// `reads.consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Consistency {
    /// Any healthy follower (default).
    Eventual,
    /// A read of a session that wrote at position P, or that carries
    /// `x-leaderproxy-position: P`, goes only to a backend whose probed
    /// position is at least P (the leader always qualifies).
    ReadYourWrites,
}

/// What identifies a client's session (`reads.session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKey {
    /// The value of this request header.
    Header(http::HeaderName),
    /// The value of this cookie.
    Cookie(String),
    /// The client's address (after `trusted_proxies`).
    ClientIp,
}

/// `reads.session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionConfig {
    /// What names the session of a request.
    pub(crate) key: SessionKey,
    /// Most sessions remembered; the least recently used is forgotten
    /// first (counted). Default 100000.
    pub(crate) capacity: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPositions {
    pub(super) kind: Option<ProbeKind>,
    probe: Option<RawPositionProbe>,
    response: Option<RawSource>,
    scope: Option<Vec<String>>,
}

impl RawPositions {
    /// Whether a probe was written (valid or not), so that a broken probe
    /// is reported once and not again by every key that needs it.
    pub(super) fn has_probe(&self) -> bool {
        self.probe.is_some() || self.kind.is_some_and(ProbeKind::is_native)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPositionProbe {
    /// Required (optional here so that a file with a preset may change only
    /// the source, say).
    path: Option<String>,
    method: Option<Method>,
    body: Option<String>,
    header: Option<String>,
    json: Option<Pointer>,
    regex: Option<Re>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    json: Option<Pointer>,
    regex: Option<Re>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    header: Option<String>,
    cookie: Option<String>,
    #[serde(default)]
    client_ip: bool,
    capacity: Option<usize>,
}

/// The consistency keys of `reads`, as written.
#[derive(Debug, Default)]
pub(super) struct RawReadConsistency {
    pub(crate) consistency: Option<Consistency>,
    pub(crate) session: Option<RawSession>,
    pub(crate) max_lag: Option<u64>,
    pub(crate) after_write_window: Option<Dur>,
}

/// The validated consistency keys of `reads`.
pub(super) struct ReadConsistency {
    pub(crate) consistency: Consistency,
    pub(crate) session: Option<SessionConfig>,
    pub(crate) max_lag: Option<u64>,
    pub(crate) after_write_window: Duration,
}

/// Default `reads.session.capacity`.
pub(crate) const DEFAULT_SESSIONS: usize = 100_000;

/// Largest `reads.session.capacity`.
const MAX_SESSIONS: usize = 10_000_000;

impl Validator {
    fn position_source(
        &mut self,
        key: &str,
        header: Option<String>,
        json: Option<Pointer>,
        regex: Option<Re>,
    ) -> Option<PositionSource> {
        match (header, json, regex) {
            (Some(h), None, None) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(PositionSource::Header(n)),
                Err(_) => {
                    self.bad(
                        &format!("{key}.header"),
                        format!("invalid header name {h:?}"),
                    );
                    None
                }
            },
            (None, Some(p), None) => Some(PositionSource::Json(p.0)),
            (None, None, Some(r)) => {
                if r.0.captures_len() < 2 {
                    self.bad(
                        &format!("{key}.regex"),
                        format!(
                            "{:?} has no group: put the digits in parentheses, e.g. 'offset:(\\d+)'",
                            r.0.as_str()
                        ),
                    );
                    return None;
                }
                Some(PositionSource::Regex(r.0))
            }
            _ => {
                self.bad(key, "give exactly one of header, json and regex");
                None
            }
        }
    }

    /// `positions`; the probe runs on the leader probe's interval and timeout.
    pub(super) fn positions(
        &mut self,
        raw: Option<RawPositions>,
        leader: &ProbeConfig,
    ) -> PositionsConfig {
        let Some(raw) = raw else {
            return PositionsConfig::default();
        };
        let probe_given = raw.has_probe();
        let kind = raw.kind.unwrap_or_default();
        if kind.is_native() && raw.probe.is_some() {
            self.bad(
                "positions.probe",
                format!(
                    "not with positions.kind {}: the native probe reads the position itself (remove it, or `~` to drop a preset's)",
                    kind.name()
                ),
            );
        }
        let native = kind.is_native().then(|| {
            (
                ProbeConfig {
                    native: None,
                    path: "/".into(),
                    method: http::Method::GET,
                    body: None,
                    interval: leader.interval,
                    timeout: leader.timeout,
                    expect: Expect::default(),
                },
                PositionSource::Native,
            )
        });
        let probe = raw.probe.filter(|_| native.is_none()).and_then(|p| {
            let Some(path) = p.path else {
                self.bad(
                    "positions.probe.path",
                    "required: the path of the position probe",
                );
                return None;
            };
            self.probe_path("positions.probe.path", &path);
            let source = self.position_source("positions.probe", p.header, p.json, p.regex)?;
            Some((
                ProbeConfig {
                    native: None,
                    path,
                    method: p.method.map_or(http::Method::GET, |m| m.0),
                    body: p.body,
                    interval: leader.interval,
                    timeout: leader.timeout,
                    expect: Expect::default(),
                },
                source,
            ))
        });
        let response = raw
            .response
            .and_then(|r| self.position_source("positions.response", r.header, r.json, r.regex));
        let scope = self.position_scope(raw.scope, probe_given);
        PositionsConfig {
            probe: native.or(probe),
            response,
            scope,
        }
    }

    /// `positions.scope`: path prefixes, each starting with '/', at least one.
    fn position_scope(&mut self, scope: Option<Vec<String>>, probe_given: bool) -> Vec<String> {
        // A preset's scope says what its own probe counts, not what a probe
        // of another endpoint counts.
        if probe_given
            && self.preset_wrote("positions.scope")
            && self.user_wrote("positions.probe.path")
            && !self.user_wrote("positions.scope")
        {
            self.bad(
                "positions.probe.path",
                "the preset's positions.scope names the writes its own probe counts: with another probe, set positions.scope to the path prefixes whose writes move it (/ for every path)",
            );
        }
        let Some(scope) = scope else {
            return Vec::new();
        };
        if !probe_given {
            self.bad(
                "positions.scope",
                "needs positions.probe: the scope says which requests the probed positions count",
            );
        }
        if scope.is_empty() {
            self.bad(
                "positions.scope",
                "empty: list the path prefixes whose writes move the probed position (leave the key out for every path)",
            );
        }
        for p in &scope {
            if !p.starts_with('/') {
                self.bad(
                    "positions.scope",
                    format!("{p:?} is not a path prefix (it must start with '/')"),
                );
            }
        }
        // "/" is every path: the same as no scope.
        if scope.iter().any(|p| p == "/") {
            return Vec::new();
        }
        scope
    }

    /// The consistency keys of `reads`, checked against `positions`.
    pub(super) fn read_consistency(
        &mut self,
        raw: RawReadConsistency,
        positions: &PositionsConfig,
        probe_given: bool,
    ) -> ReadConsistency {
        let consistency = raw.consistency.unwrap_or(Consistency::Eventual);
        let session_given = raw.session.is_some();
        let session = raw.session.and_then(|s| {
            let key = match (s.header, s.cookie, s.client_ip) {
                (Some(h), None, false) => match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) => SessionKey::Header(n),
                    Err(_) => {
                        self.bad("reads.session.header", format!("invalid header name {h:?}"));
                        return None;
                    }
                },
                (None, Some(c), false) => {
                    if c.is_empty()
                        || !c
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
                    {
                        self.bad("reads.session.cookie", format!("invalid cookie name {c:?}"));
                        return None;
                    }
                    SessionKey::Cookie(c)
                }
                (None, None, true) => SessionKey::ClientIp,
                _ => {
                    self.bad(
                        "reads.session",
                        "give exactly one of header, cookie and client_ip: true",
                    );
                    return None;
                }
            };
            let capacity = s.capacity.unwrap_or(DEFAULT_SESSIONS);
            if capacity == 0 || capacity > MAX_SESSIONS {
                self.bad(
                    "reads.session.capacity",
                    format!("{capacity} is outside 1..={MAX_SESSIONS}"),
                );
            }
            Some(SessionConfig { key, capacity })
        });
        if session.is_some() && consistency == Consistency::Eventual {
            self.bad(
                "reads.session",
                "sessions only matter with reads.consistency: read_your_writes",
            );
        }
        if consistency == Consistency::ReadYourWrites && !probe_given && !session_given {
            self.bad(
                "reads.consistency",
                "read_your_writes needs positions.probe (to know which followers are fresh) or reads.session (to send a session's reads to the leader for reads.after_write_window after its writes)",
            );
        }
        if raw.max_lag.is_some() && !probe_given {
            self.bad(
                "reads.max_lag",
                "needs positions.probe: a follower's lag is its probed position behind the leader's",
            );
        }
        if positions.response.is_some() && !probe_given {
            self.bad(
                "positions.response",
                "needs positions.probe: a write's position is only useful against the followers' probed positions",
            );
        }
        let after_write_window = raw
            .after_write_window
            .map_or(Duration::from_secs(2), |d| d.0);
        if after_write_window.is_zero() {
            self.bad("reads.after_write_window", "must be more than 0");
        }
        ReadConsistency {
            consistency,
            session,
            max_lag: raw.max_lag,
            after_write_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_headers_json_numbers_and_strings_and_regex_groups() {
        let mut h = http::HeaderMap::new();
        h.insert("x-etcd-index", " 42".parse().unwrap());
        let hdr = PositionSource::Header(http::HeaderName::from_static("x-etcd-index"));
        assert_eq!(hdr.read(&h, b""), Some(42));
        assert_eq!(hdr.read(&http::HeaderMap::new(), b""), None);
        let j = PositionSource::Json("/header/revision".into());
        assert_eq!(j.read(&h, br#"{"header":{"revision":"17"}}"#), Some(17));
        assert_eq!(j.read(&h, br#"{"header":{"revision":18}}"#), Some(18));
        assert_eq!(j.read(&h, br#"{"header":{"revision":-1}}"#), None);
        assert_eq!(j.read(&h, br#"{"header":{}}"#), None);
        assert_eq!(j.read(&h, b"not json"), None);
        let r = PositionSource::Regex(regex::Regex::new(r"master_repl_offset:(\d+)").unwrap());
        assert_eq!(
            r.read(&h, b"role:slave\r\nmaster_repl_offset:9001\r\n"),
            Some(9001)
        );
        assert_eq!(r.read(&h, b"role:slave\r\n"), None);
    }
}

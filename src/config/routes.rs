//! `routes`: the classification rules as data, and their validation.
//! `crate::routing::classify` matches requests against them.

use serde::Deserialize;

use super::{Dur, Method, Re, Validator};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Any healthy follower, by policy.
    Read,
    /// The current leader only.
    Write,
}

impl Role {
    /// The name used in YAML, metrics and logs: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// A set of HTTP methods as a bitmask, so matching costs no allocation.
/// The nine standard methods have their own bits; extension methods share
/// the last bit only if listed by name (kept in `other`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodSet {
    bits: u16,
    other: Vec<http::Method>,
}

fn bit(m: &http::Method) -> Option<u16> {
    use http::Method as M;
    Some(match *m {
        M::GET => 1,
        M::HEAD => 1 << 1,
        M::OPTIONS => 1 << 2,
        M::POST => 1 << 3,
        M::PUT => 1 << 4,
        M::DELETE => 1 << 5,
        M::PATCH => 1 << 6,
        M::TRACE => 1 << 7,
        M::CONNECT => 1 << 8,
        _ => return None,
    })
}

impl MethodSet {
    /// The set of `ms`.
    pub fn from_methods<'a>(ms: impl IntoIterator<Item = &'a http::Method>) -> MethodSet {
        let mut s = MethodSet::default();
        for m in ms {
            match bit(m) {
                Some(b) => s.bits |= b,
                None => s.other.push(m.clone()),
            }
        }
        s
    }

    /// The methods of the set: the standard ones in a fixed order, then
    /// the extension methods as listed.
    pub(crate) fn methods(&self) -> Vec<http::Method> {
        use http::Method as M;
        let standard = [
            M::GET,
            M::HEAD,
            M::OPTIONS,
            M::POST,
            M::PUT,
            M::DELETE,
            M::PATCH,
            M::TRACE,
            M::CONNECT,
        ];
        let mut out: Vec<http::Method> =
            standard.into_iter().filter(|m| self.contains(m)).collect();
        out.extend(self.other.iter().cloned());
        out
    }

    /// Whether `m` is in the set (no allocation).
    #[inline]
    pub(crate) fn contains(&self, m: &http::Method) -> bool {
        match bit(m) {
            Some(b) => self.bits & b != 0,
            None => self.other.contains(m),
        }
    }
}

/// What a matching rule decides for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Leader only (write) or any fresh-enough follower (read).
    pub role: Role,
    /// Time to response headers for this route instead of
    /// `timeouts.response_headers`.
    pub timeout: Option<std::time::Duration>,
    /// Long-polls and watches: a timeout or a silent body says nothing about
    /// the backend (no passive-health penalty, no re-probe), and
    /// `timeouts.body_idle` cuts neither body.
    pub long_poll: bool,
    /// HTTP/1.1 `Upgrade` requests (WebSocket, …) on this route are
    /// forwarded, and the connection becomes a byte tunnel to the chosen
    /// backend; elsewhere they are answered 501.
    pub upgrade: bool,
    /// Whether a request on this route may be applied twice with the same
    /// result (`writes.retry_ambiguous: idempotent` re-sends only those):
    /// `None` (the default) decides by method (PUT, DELETE) or an
    /// `Idempotency-Key` header; `Some` decides whatever the method (webdis
    /// puts `INCR` in the path of a `PUT`).
    pub idempotent: Option<bool>,
}

impl Route {
    /// No rule matched: a write with the default timeouts.
    pub const DEFAULT: Route = Route {
        role: Role::Write,
        timeout: None,
        long_poll: false,
        upgrade: false,
        idempotent: None,
    };
}

/// One routing rule; every condition given must match.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The request method is one of these; default any.
    pub methods: Option<MethodSet>,
    /// The path starts with this; default any.
    pub path_prefix: Option<String>,
    /// The path matches this; default any.
    pub path_regex: Option<regex::Regex>,
    /// What a match decides.
    pub route: Route,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
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

impl Validator {
    pub(super) fn routes(&mut self, raw: Vec<RawRoute>) -> Vec<Rule> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn extension_methods() {
        let m = Method::from_bytes(b"PURGE").unwrap();
        let s = MethodSet::from_methods([&m]);
        assert!(s.contains(&m));
        assert!(!s.contains(&Method::GET));
        assert!(!MethodSet::from_methods([&Method::GET]).contains(&m));
    }
}

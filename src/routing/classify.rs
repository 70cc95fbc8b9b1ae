//! Request classification: the first rule that matches decides whether a
//! request is a read (followers) or a write (leader); no match means write.

use serde::Deserialize;

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

    #[inline]
    pub fn contains(&self, m: &http::Method) -> bool {
        match bit(m) {
            Some(b) => self.bits & b != 0,
            None => self.other.contains(m),
        }
    }
}

/// One routing rule; every condition given must match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub methods: Option<MethodSet>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<regex::Regex>,
    pub to: Role,
}

impl Rule {
    #[inline]
    fn matches(&self, method: &http::Method, path: &str) -> bool {
        if let Some(ms) = &self.methods {
            if !ms.contains(method) {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(r) = &self.path_regex {
            if !r.is_match(path) {
                return false;
            }
        }
        true
    }
}

/// Labels a request by the first matching rule; no match is a write.
#[inline]
pub fn classify(rules: &[Rule], method: &http::Method, path: &str) -> Role {
    rules
        .iter()
        .find(|r| r.matches(method, path))
        .map_or(Role::Write, |r| r.to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                methods: None,
                path_prefix: Some("/SET/".into()),
                path_regex: None,
                to: Role::Write,
            },
            Rule {
                methods: Some(MethodSet::from_methods(&[
                    Method::GET,
                    Method::HEAD,
                    Method::OPTIONS,
                ])),
                path_prefix: None,
                path_regex: None,
                to: Role::Read,
            },
            Rule {
                methods: Some(MethodSet::from_methods(&[Method::POST])),
                path_prefix: Some("/v3/kv/range".into()),
                path_regex: None,
                to: Role::Read,
            },
            Rule {
                methods: None,
                path_prefix: None,
                path_regex: Some(regex::Regex::new("^/etcdserverpb\\.KV/Range$").unwrap()),
                to: Role::Read,
            },
        ]
    }

    #[test]
    fn first_match_wins_and_default_is_write() {
        let r = rules();
        assert_eq!(classify(&r, &Method::GET, "/v2/keys/a"), Role::Read);
        assert_eq!(classify(&r, &Method::HEAD, "/"), Role::Read);
        assert_eq!(
            classify(&r, &Method::GET, "/SET/a/b"),
            Role::Write,
            "earlier rule wins"
        );
        assert_eq!(classify(&r, &Method::POST, "/v3/kv/range"), Role::Read);
        assert_eq!(
            classify(&r, &Method::PUT, "/v3/kv/range"),
            Role::Write,
            "method must match too"
        );
        assert_eq!(
            classify(&r, &Method::POST, "/etcdserverpb.KV/Range"),
            Role::Read
        );
        assert_eq!(
            classify(&r, &Method::POST, "/etcdserverpb.KV/Put"),
            Role::Write
        );
        assert_eq!(classify(&r, &Method::DELETE, "/v2/keys/a"), Role::Write);
        assert_eq!(
            classify(&[], &Method::GET, "/"),
            Role::Write,
            "no rules: everything is a write"
        );
    }

    #[test]
    fn extension_methods() {
        let m = Method::from_bytes(b"PURGE").unwrap();
        let s = MethodSet::from_methods([&m]);
        assert!(s.contains(&m));
        assert!(!s.contains(&Method::GET));
        assert!(!MethodSet::from_methods([&Method::GET]).contains(&m));
    }
}

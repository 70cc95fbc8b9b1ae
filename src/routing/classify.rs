//! Request classification: the first rule that matches decides whether a
//! request is a read (followers) or a write (leader); no match means write.
//! The rules are the validated config's ([`Rule`], data); matching them is
//! routing's.

pub use crate::config::{MethodSet, Role, Route, Rule};

/// Whether every condition `rule` gives holds for this request.
#[inline]
fn matches(rule: &Rule, method: &http::Method, path: &str) -> bool {
    if let Some(ms) = &rule.methods {
        if !ms.contains(method) {
            return false;
        }
    }
    if let Some(p) = &rule.path_prefix {
        if !path.starts_with(p.as_str()) {
            return false;
        }
    }
    if let Some(r) = &rule.path_regex {
        if !r.is_match(path) {
            return false;
        }
    }
    true
}

/// The route of the first matching rule; no match is a write.
#[inline]
pub fn classify(rules: &[Rule], method: &http::Method, path: &str) -> Route {
    rules
        .iter()
        .find(|r| matches(r, method, path))
        .map_or(Route::DEFAULT, |r| r.route)
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
                route: Route {
                    role: Role::Write,
                    ..Route::DEFAULT
                },
            },
            Rule {
                methods: Some(MethodSet::from_methods(&[
                    Method::GET,
                    Method::HEAD,
                    Method::OPTIONS,
                ])),
                path_prefix: None,
                path_regex: None,
                route: Route {
                    role: Role::Read,
                    ..Route::DEFAULT
                },
            },
            Rule {
                methods: Some(MethodSet::from_methods(&[Method::POST])),
                path_prefix: Some("/v3/kv/range".into()),
                path_regex: None,
                route: Route {
                    role: Role::Read,
                    ..Route::DEFAULT
                },
            },
            Rule {
                methods: None,
                path_prefix: None,
                path_regex: Some(regex::Regex::new("^/etcdserverpb\\.KV/Range$").unwrap()),
                route: Route {
                    role: Role::Read,
                    ..Route::DEFAULT
                },
            },
        ]
    }

    #[test]
    fn first_match_wins_and_default_is_write() {
        let r = rules();
        assert_eq!(classify(&r, &Method::GET, "/v2/keys/a").role, Role::Read);
        assert_eq!(classify(&r, &Method::HEAD, "/").role, Role::Read);
        assert_eq!(
            classify(&r, &Method::GET, "/SET/a/b").role,
            Role::Write,
            "earlier rule wins"
        );
        assert_eq!(classify(&r, &Method::POST, "/v3/kv/range").role, Role::Read);
        assert_eq!(
            classify(&r, &Method::PUT, "/v3/kv/range").role,
            Role::Write,
            "method must match too"
        );
        assert_eq!(
            classify(&r, &Method::POST, "/etcdserverpb.KV/Range").role,
            Role::Read
        );
        assert_eq!(
            classify(&r, &Method::POST, "/etcdserverpb.KV/Put").role,
            Role::Write
        );
        assert_eq!(
            classify(&r, &Method::DELETE, "/v2/keys/a").role,
            Role::Write
        );
        assert_eq!(
            classify(&[], &Method::GET, "/").role,
            Role::Write,
            "no rules: everything is a write"
        );
    }
}

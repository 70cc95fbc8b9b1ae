//! Config validation: accepted shapes, defaults and exact error messages.
//! By topic: discovery_tests.rs, access_tests.rs (admin, trust, TLS),
//! consistency_tests.rs, shipped_tests.rs (every shipped config), and
//! preset_tests.rs; the helpers they share are here.

use std::path::Path;
use std::time::Duration;

use super::*;

/// The config from the foundation issue, verbatim.
pub(crate) const ISSUE_CONFIG: &str = r#"listen: 127.0.0.1:8080          # one address or a list
admin: 127.0.0.1:9901            # metrics/health listener (may be a stub in this issue)
backends:
  - { name: n1, url: "http://127.0.0.1:2379" }
  - { name: n2, url: "http://127.0.0.1:22379", weight: 2 }
  - { name: n3, url: "http://127.0.0.1:32379" }
health: { path: /version, interval: 1s, timeout: 500ms, rise: 2, fall: 3 }
leader:
  path: /v2/stats/leader
  method: GET
  interval: 500ms
  timeout: 300ms
  expect: { status: [200] }
routes:                          # first match wins; no match => write
  - { methods: [GET, HEAD, OPTIONS], to: read }
  - { path_prefix: /v3/kv/range, to: read }
reads: { policy: round_robin, fallback_to_leader: true }   # least_connections | ip_hash
writes: { hold: 5s }
timeouts: { connect: 1s, request: 30s }
"#;

pub(super) fn errs(text: &str) -> Vec<String> {
    match parse(text, Path::new("lp.yaml")) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn issue_config_means_what_it_says() {
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.admin, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.backends.len(), 3);
    assert_eq!(c.backends[1].name, "n2");
    assert_eq!(c.backends[1].weight, 2);
    assert_eq!(c.backends[1].authority.as_str(), "127.0.0.1:22379");
    assert_eq!(c.backends[0].weight, 1);
    assert_eq!(c.health.probe.path, "/version");
    assert_eq!(c.health.probe.interval, Duration::from_secs(1));
    assert_eq!(c.health.probe.timeout, Duration::from_millis(500));
    assert_eq!((c.health.rise, c.health.fall), (2, 3));
    assert_eq!(c.leader.probe.path, "/v2/stats/leader");
    assert_eq!(c.leader.probe.method, http::Method::GET);
    assert_eq!(c.leader.probe.interval, Duration::from_millis(500));
    assert_eq!(c.leader.probe.timeout, Duration::from_millis(300));
    assert_eq!(c.leader.probe.expect.status, Some(vec![200]));
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].route.role, Role::Read);
    assert!(c.routes[0]
        .methods
        .as_ref()
        .unwrap()
        .contains(&http::Method::HEAD));
    assert_eq!(c.routes[1].path_prefix.as_deref(), Some("/v3/kv/range"));
    assert_eq!(c.reads.policy, Policy::RoundRobin);
    assert!(c.reads.fallback_to_leader);
    assert_eq!(c.writes.hold, Duration::from_secs(5));
    assert_eq!(c.timeouts.connect, Duration::from_secs(1));
    assert_eq!(c.timeouts.response_headers, Duration::from_secs(30));
}

/// One backend, a leader probe, and nothing else.
const MINIMAL: &str = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn defaults() {
    let c = parse(MINIMAL, Path::new("x.yaml")).unwrap();
    assert_eq!(
        c.admin,
        "127.0.0.1:9901".parse().unwrap(),
        "admin defaults to localhost"
    );
    assert_eq!(c.health.probe.path, "/");
    assert_eq!(c.health.probe.interval, Duration::from_secs(1));
    assert_eq!(c.leader.probe.interval, Duration::from_millis(500));
    assert_eq!(c.writes.hold, Duration::from_secs(5));
    assert_eq!(c.writes.max_held, 10_000);
    assert_eq!(c.writes.replay_body_limit, 1 << 20);
    assert_eq!(c.limits.max_header_bytes, 64 << 10);
    assert_eq!(c.limits.max_body_bytes, 64 << 20);
    assert_eq!(c.limits.max_connections, 10_000);
    assert_eq!(c.timeouts.header_read, Duration::from_secs(10));
    assert_eq!(c.passive.max_ejection_percent, 50);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert!(c.routes.is_empty());
}

/// `BackendConfig::plain` is what a backend with only a name and an
/// `http://` URL validates to.
#[test]
fn a_plain_backend_is_a_name_and_a_url_with_every_default() {
    let c = parse(MINIMAL, Path::new("x.yaml")).unwrap();
    assert_eq!(
        c.backends,
        [BackendConfig::plain("a", "127.0.0.1:2".parse().unwrap())]
    );
}

#[test]
fn listen_may_be_a_list() {
    let text = ISSUE_CONFIG.replace(
        "listen: 127.0.0.1:8080 ",
        "listen: [127.0.0.1:8080, '[::1]:8080']",
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.listen.len(), 2);
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = ISSUE_CONFIG.replace("writes: { hold: 5s }", "writes: { hold: 5s, hodl: 1s }");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:18:21: writes: unknown field `hodl`, expected one of `hold`, `max_held`, `replay_body_limit`, `not_leader`, `retry_ambiguous`"]
    );
}

#[test]
fn bad_duration() {
    let text = ISSUE_CONFIG.replace("interval: 500ms", "interval: 500");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:11:13: leader.interval: duration 500 has no unit: write e.g. 500ms or 500s"]
    );
    let text = ISSUE_CONFIG.replace("interval: 500ms", "interval: fast");
    assert_eq!(errs(&text).len(), 1);
    assert!(
        errs(&text)[0].starts_with("lp.yaml:11:13: leader.interval: invalid duration \"fast\""),
        "{:?}",
        errs(&text)
    );
}

#[test]
fn bad_regex() {
    let text = ISSUE_CONFIG.replace(
        "writes: { hold: 5s }",
        "writes: { not_leader: { body: [{ status: [200], regex: \"READ(ONLY\" }] } }",
    );
    let e = errs(&text);
    assert_eq!(
        e,
        vec![
            "lp.yaml:18:32: writes.not_leader.body[0]: invalid regex \"READ(ONLY\": unclosed group"
        ]
    );
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let text = r#"listen: 127.0.0.1:8080
backends:
  - { name: n1, url: "http://127.0.0.1:2379" }
  - { name: n1, url: "http://127.0.0.1:2380" }
  - { name: n3, url: "ftp://127.0.0.1:2381" }
  - { name: n4, url: "http://127.0.0.1" }
health: { path: /health, interval: 1s, timeout: 1s, rise: 0, fall: 0 }
leader:
  path: v2/stats/leader
  interval: 500ms
  timeout: 300ms
  expect: { status: [200, 999] }
"#;
    assert_eq!(
        errs(text),
        vec![
            "lp.yaml:4:7: backends[1].name: duplicate backend name \"n1\" (also backends[0])",
            "lp.yaml:5:17: backends[2].url: unsupported scheme \"ftp\" in \"ftp://127.0.0.1:2381\" (write http:// or https://)",
            "lp.yaml:6:17: backends[3].url: URL \"http://127.0.0.1\" has no port (write http://host:port)",
            "lp.yaml:7:40: health.timeout: 1s must be shorter than health.interval (1s)",
            "lp.yaml:7:53: health.rise: must be at least 1",
            "lp.yaml:7:62: health.fall: must be at least 1",
            "lp.yaml:9:3: leader.path: invalid path \"v2/stats/leader\" (it must start with '/')",
            "lp.yaml:12:27: leader.expect.status[1]: 999 is not an HTTP status (100-599)",
        ]
    );
}

#[test]
fn empty_backends() {
    let text = "listen: 127.0.0.1:1\nbackends: []\nleader: {path: /l, expect: {status: [200]}}\n";
    assert_eq!(
        errs(text),
        vec![
            "lp.yaml:2:1: backends: at least one backend is needed (or discovery.dns to find them)"
        ]
    );
    // No `backends` key at all: nothing to point at but the file.
    let text = "listen: 127.0.0.1:1\nleader: {path: /l, expect: {status: [200]}}\n";
    assert_eq!(
        errs(text),
        vec!["lp.yaml: backends: at least one backend is needed (or discovery.dns to find them)"]
    );
}

#[test]
fn leader_needs_a_condition_and_json_needs_one_comparison() {
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {}}\n";
    assert_eq!(
        errs(text),
        vec!["lp.yaml:3:20: leader.expect: give at least one condition (status, body_regex, json or header) that only the leader's answer meets"]
    );
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {json: {pointer: /a}}}\n";
    assert_eq!(
        errs(text)[0],
        "lp.yaml:3:29: leader.expect.json: give exactly one of `equals`, `equals_pointer` and `one_of`"
    );
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {json: {pointer: /a, one_of: []}}}\n";
    assert_eq!(
        errs(text)[0],
        "lp.yaml:3:49: leader.expect.json.one_of: give at least one value (an empty list matches nothing)"
    );
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {json: {pointer: /a, equals: x, one_of: [x]}}}\n";
    assert_eq!(
        errs(text)[0],
        "lp.yaml:3:29: leader.expect.json: give exactly one of `equals`, `equals_pointer` and `one_of`"
    );
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {json: {pointer: /role, one_of: [master, primary]}}}\n";
    let c = parse(text, Path::new("lp.yaml")).unwrap();
    assert!(
        matches!(&c.leader.probe.expect.json.as_ref().unwrap().want, JsonWant::OneOf(v) if v == &[serde_json::json!("master"), serde_json::json!("primary")])
    );
    let text = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {json: {pointer: a, equals: 1}}}\n";
    assert!(
        errs(text)[0].contains("invalid JSON pointer \"a\": it must start with '/'"),
        "{:?}",
        errs(text)
    );
}

#[test]
fn all_expect_kinds_parse() {
    let text = r#"listen: 127.0.0.1:1
backends: [{name: a, url: 'http://127.0.0.1:2'}]
leader:
  path: /v3/maintenance/status
  method: POST
  body: "{}"
  expect:
    status: [200]
    body_regex: "leader"
    json: { pointer: /header/member_id, equals_pointer: /leader }
    header: { name: X-Role, equals: leader }
  term: { pointer: /header/raft_term }
writes: { not_leader: { status: [403, 503], body: [{ status: [200], regex: '^\{"[^"]+":\[false,"READONLY ' }], redirect: true }, replay_body_limit: 64KiB }
"#;
    let c = parse(text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.leader.probe.method, http::Method::POST);
    assert_eq!(c.leader.term_pointer.as_deref(), Some("/header/raft_term"));
    assert!(
        matches!(c.leader.probe.expect.json.as_ref().unwrap().want, JsonWant::EqualsPointer(ref p) if p == "/leader")
    );
    assert_eq!(c.leader.probe.expect.header.as_ref().unwrap().0, "x-role");
    assert_eq!(c.writes.not_leader.status, vec![403, 503]);
    assert!(c.writes.not_leader.redirect);
    assert_eq!(c.writes.replay_body_limit, 65536);
    let nl = &c.writes.not_leader;
    assert!(nl.scans_body(200) && !nl.scans_body(201));
    assert!(nl.body_matches(
        200,
        br#"{"SET":[false,"READONLY You can't write against a read only replica."]}"#
    ));
    assert!(
        !nl.body_matches(200, br#"{"LPOP":"READONLY x"}"#),
        "a value that merely contains READONLY is a success"
    );
    assert!(
        !nl.body_matches(500, br#"{"SET":[false,"READONLY x"]}"#),
        "scoped by status"
    );
}

#[test]
fn not_leader_status_must_not_be_success() {
    let text = ISSUE_CONFIG.replace(
        "writes: { hold: 5s }",
        "writes: { not_leader: { status: [200] } }",
    );
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:18:34: writes.not_leader.status[0]: 200 is a success status; match the refusal's body instead: body: [{ status: [200], regex: '...' }]"]
    );
}

#[test]
fn bad_policy_and_syntax() {
    let text = ISSUE_CONFIG.replace("policy: round_robin", "policy: random");
    let e = errs(&text);
    assert!(
        e[0].starts_with("lp.yaml:17:18: reads.policy: unknown variant `random`"),
        "{e:?}"
    );
    let e = errs("listen: [1\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("lp.yaml:"), "{e:?}");
}

#[test]
fn admin_must_not_share_the_public_listener() {
    let text = ISSUE_CONFIG.replace("admin: 127.0.0.1:9901", "admin: 127.0.0.1:8080");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:2:1: admin: 127.0.0.1:8080 is also a listen address; the admin API must have its own listener"]
    );
}

/// A fresh directory under the system temp dir for one test.
pub(super) fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("leaderproxy-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(super) const ADMIN_BASE: &str = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn admin_max_connections() {
    let c = parse(ADMIN_BASE, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.limits.admin_max_connections, 64);
    assert!(!c.admin_insecure);
    let c = parse(
        &format!("{ADMIN_BASE}limits: {{ admin_max_connections: 2 }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(c.limits.admin_max_connections, 2);
    assert_eq!(
        errs(&format!(
            "{ADMIN_BASE}limits: {{ admin_max_connections: 0 }}\n"
        )),
        vec!["lp.yaml:4:11: limits.admin_max_connections: must be at least 1"]
    );
}

#[test]
fn upstream_connection_limits() {
    let c = parse(ADMIN_BASE, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.limits.max_upstream_connections_per_backend, 1024);
    assert_eq!(c.max_upstream_connections(&c.backends[0]), 1024);
    let two = "backends: [{name: a, url: 'http://127.0.0.1:2'}, {name: b, url: 'http://127.0.0.1:3', max_connections: 3}]\n";
    let text = format!(
        "{}{two}limits: {{ max_upstream_connections_per_backend: 10 }}\n",
        ADMIN_BASE.replace("backends: [{name: a, url: 'http://127.0.0.1:2'}]\n", "")
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.max_upstream_connections(&c.backends[0]), 10);
    assert_eq!(c.max_upstream_connections(&c.backends[1]), 3);
    assert_eq!(
        errs(&format!(
            "{ADMIN_BASE}limits: {{ max_upstream_connections_per_backend: 0 }}\n"
        )),
        vec!["lp.yaml:4:11: limits.max_upstream_connections_per_backend: must be at least 1"]
    );
    assert_eq!(
        errs(&ADMIN_BASE.replace(
            "'http://127.0.0.1:2'}",
            "'http://127.0.0.1:2', max_connections: 0}"
        )),
        vec!["lp.yaml:2:49: backends[0].max_connections: must be at least 1"]
    );
}

#[test]
fn unscoped_not_leader_body_regex_is_refused() {
    let text = ISSUE_CONFIG.replace(
        "writes: { hold: 5s }",
        "writes: { not_leader: { body_regex: READONLY } }",
    );
    assert_eq!(
        errs(&text),
        vec![
            r#"lp.yaml:18:25: writes.not_leader.body_regex: an unscoped body regex also matches successes whose body contains it, and such a write would be applied twice; scope it by status and anchor it to the refusal, e.g. body: [{ status: [200], regex: '^\{"[^"]+":\[false,"READONLY ' }]"#
        ]
    );
}

#[test]
fn http_reuse_default_values_and_errors() {
    use crate::config::HttpReuse;
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.http_reuse, HttpReuse::Safe);
    let c = parse(
        &format!("http_reuse: always\n{ISSUE_CONFIG}"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(c.http_reuse, HttpReuse::Always);
    let e = errs(&format!("http_reuse: aggressive\n{ISSUE_CONFIG}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("lp.yaml:1:13: http_reuse: unknown variant `aggressive`"),
        "{e:?}"
    );
}

/// A CA and a certificate it signs (for `names`), written as PEM files in `dir`.
pub(super) fn write_ca_and_cert(dir: &Path, names: &[&str]) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
    std::fs::write(dir.join("client.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("client-key.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn bad_zones_and_priorities_name_file_line_column() {
    let text = ISSUE_CONFIG
        .replace(
            "- { name: n2, url: \"http://127.0.0.1:22379\", weight: 2 }",
            "- { name: n2, url: \"http://127.0.0.1:22379\", weight: 2, zone: \"eu 1\" }",
        )
        .replace(
            "- { name: n3, url: \"http://127.0.0.1:32379\" }",
            "- { name: n3, url: \"http://127.0.0.1:32379\", zone: eu-2, priority: 101 }",
        )
        + "local_zone: \"eu/1\"\n";
    assert_eq!(
        errs(&text),
        vec![
            "lp.yaml:5:59: backends[1].zone: invalid zone \"eu 1\" (use letters, digits, '-', '_' and '.')",
            "lp.yaml:6:60: backends[2].priority: 101 is outside 0..=100",
            "lp.yaml:20:1: local_zone: invalid zone \"eu/1\" (use letters, digits, '-', '_' and '.')",
        ]
    );
    let long = "z".repeat(64);
    assert_eq!(
        errs(&format!("{ISSUE_CONFIG}local_zone: {long}\n")),
        vec![format!(
            "lp.yaml:20:1: local_zone: invalid zone \"{long}\" (use letters, digits, '-', '_' and '.')"
        )]
    );
    assert_eq!(
        errs(&ISSUE_CONFIG.replace(
            "- { name: n1, url: \"http://127.0.0.1:2379\" }",
            "- { name: n1, url: \"http://127.0.0.1:2379\", priority: -1 }",
        )),
        vec!["lp.yaml:4:57: backends[0].priority: invalid type: integer `-1`, expected u32"]
    );
    // The bounds themselves are fine.
    let ok = ISSUE_CONFIG.replace(
        "- { name: n1, url: \"http://127.0.0.1:2379\" }",
        "- { name: n1, url: \"http://127.0.0.1:2379\", zone: A.b_c-9, priority: 100 }",
    );
    let c = parse(&ok, Path::new("lp.yaml")).unwrap();
    assert_eq!(
        (c.backends[0].zone.as_deref(), c.backends[0].priority),
        (Some("A.b_c-9"), 100)
    );
    assert_eq!(c.local_zone, None);
}

#[test]
fn idempotent_is_for_write_routes() {
    let text = ISSUE_CONFIG.replace(
        "  - { path_prefix: /v3/kv/range, to: read }",
        "  - { path_prefix: /v3/kv/range, to: read, idempotent: true }\n  - { path_prefix: /INCR/, to: write, idempotent: false }",
    );
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("lp.yaml:")
            && e[0].contains("routes[1].idempotent: only for `to: write` routes"),
        "{e:?}"
    );
    let ok = ISSUE_CONFIG.replace(
        "  - { path_prefix: /v3/kv/range, to: read }",
        "  - { path_prefix: /v3/kv/range, to: read }\n  - { path_prefix: /INCR/, to: write, idempotent: false }",
    );
    let c = parse(&ok, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.routes[2].route.idempotent, Some(false));
    assert_eq!(c.routes[0].route.idempotent, None);
}

//! Config validation: accepted shapes, defaults and exact error messages.

use std::path::Path;
use std::time::Duration;

use super::*;

/// The config from the foundation issue, verbatim.
pub const ISSUE_CONFIG: &str = r#"listen: 127.0.0.1:8080          # one address or a list
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

fn errs(text: &str) -> Vec<String> {
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

const DISC_BASE: &str = "listen: 127.0.0.1:1\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn discovery_keys_and_defaults() {
    // Discovery instead of backends: DNS alone is enough.
    let c = parse(
        &format!(
            "{DISC_BASE}discovery:\n  dns: {{ name: etcd.db.svc.cluster.local, port: 2379 }}\n"
        ),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert!(c.backends.is_empty());
    assert_eq!(
        c.discovery.dns,
        Some(DnsDiscovery {
            lookup: DnsLookup::Addresses {
                name: "etcd.db.svc.cluster.local".into(),
                port: 2379
            },
            scheme: Scheme::Http,
            interval: Duration::from_secs(10),
        })
    );
    assert!(c.discovery.members.is_none() && c.discovery.tls.is_none());
    assert_eq!(
        (c.discovery.max_backends, c.discovery.remove_after),
        (64, 3),
        "defaults"
    );
    let c = parse(
        &format!("{DISC_BASE}discovery: {{ dns: {{ name: a.example, port: 1 }}, max_backends: 5, remove_after: 1 }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!((c.discovery.max_backends, c.discovery.remove_after), (5, 1));
    // The issue's keys, verbatim, beside a static seed.
    let c = parse(
        &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery:\n  dns: {{ name: etcd.db.svc.cluster.local, port: 2379, scheme: http, interval: 10s }}\n  members: {{ kind: etcd, interval: 10s }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(c.backends.len(), 1);
    assert_eq!(
        c.discovery.members,
        Some(MembersDiscovery {
            kind: MembersKind::Etcd,
            interval: Duration::from_secs(10)
        })
    );
    // SRV, https (TLS from upstream_tls, here the system roots), own interval.
    let c = parse(
        &format!("{DISC_BASE}discovery: {{ dns: {{ srv: _etcd-client-ssl._tcp.example.com, scheme: https, interval: 2s }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    let d = c.discovery.dns.unwrap();
    assert_eq!(
        d.lookup,
        DnsLookup::Srv {
            name: "_etcd-client-ssl._tcp.example.com".into()
        }
    );
    assert_eq!(
        (d.scheme, d.interval),
        (Scheme::Https, Duration::from_secs(2))
    );
    assert!(c.discovery.tls.is_some());
    // Members alone cannot start: someone must be asked first.
    let c = parse(
        &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery: {{ members: {{ kind: etcd }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.discovery.members.unwrap().interval,
        Duration::from_secs(10)
    );
    for (kind, want) in [
        ("patroni", MembersKind::Patroni),
        ("rqlite", MembersKind::Rqlite),
        ("consul", MembersKind::Consul),
    ] {
        let c = parse(
            &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery: {{ members: {{ kind: {kind}, interval: 2s }} }}\n"),
            Path::new("lp.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.discovery.members,
            Some(MembersDiscovery {
                kind: want,
                interval: Duration::from_secs(2)
            })
        );
    }
}

#[test]
fn discovery_errors_name_file_line_column() {
    let e = |extra: &str| errs(&format!("{DISC_BASE}{extra}"));
    assert_eq!(
        e("discovery: { members: { kind: etcd } }\n"),
        vec!["lp.yaml:3:14: discovery.members: asks the known members for the member list: give at least one of them in backends, or discovery.dns to find them"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, srv: _x._tcp.example, port: 1 }\n"),
        vec!["lp.yaml:4:3: discovery.dns: give exactly one of name (A/AAAA records, with port) and srv (SRV records)"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1 }\n  max_backends: 0\n  remove_after: 10001\n"),
        vec![
            "lp.yaml:5:3: discovery.max_backends: must be from 1 to 10000",
            "lp.yaml:6:3: discovery.remove_after: must be from 1 to 10000",
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example }\n"),
        vec!["lp.yaml:4:3: discovery.dns: port is needed with name: the port every address serves on (e.g. 2379)"]
    );
    assert_eq!(
        e("discovery:\n  dns:\n    srv: _etcd._tcp.example\n    port: 2379\n    interval: 0s\n"),
        vec![
            "lp.yaml:7:5: discovery.dns.interval: must be more than 0",
            "lp.yaml:6:5: discovery.dns.port: not with srv: the SRV records give each target's port",
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: 'bad name', port: 0 }\n"),
        vec![
            "lp.yaml:4:28: discovery.dns.port: must be more than 0",
            "lp.yaml:4:10: discovery.dns.name: invalid DNS name \"bad name\"",
        ]
    );
    assert_eq!(
        e("backends: [{name: s, url: 'http://127.0.0.1:2'}]\ndiscovery:\n  members: { kind: etcd, interval: 0s }\n"),
        vec!["lp.yaml:5:26: discovery.members.interval: must be more than 0"]
    );
    // Parse errors come from serde_yaml, with the key path.
    assert_eq!(
        e("backends: [{name: s, url: 'http://127.0.0.1:2'}]\ndiscovery:\n  members: { kind: zookeeper }\n"),
        vec!["lp.yaml:5:20: discovery.members.kind: unknown variant `zookeeper`, expected one of `etcd`, `patroni`, `rqlite`, `consul`"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1, scheme: ftp }\n"),
        vec![
            "lp.yaml:4:44: discovery.dns.scheme: unknown variant `ftp`, expected `http` or `https`"
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1, servers: [1.1.1.1] }\n"),
        vec!["lp.yaml:4:36: discovery.dns: unknown field `servers`, expected one of `name`, `srv`, `port`, `scheme`, `interval`"]
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
        "lp.yaml:3:29: leader.expect.json: give exactly one of `equals` and `equals_pointer`"
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

/// The TLS file paths a config names, by kind: `ca` (CA bundles, also
/// `client_ca`), `cert`, `key`.
fn tls_files(text: &str) -> Vec<(&'static str, String)> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let mut sections = vec![v["tls"].clone(), v["upstream_tls"].clone()];
    if let Some(bs) = v["backends"].as_sequence() {
        sections.extend(bs.iter().map(|b| b["tls"].clone()));
    }
    let mut out = Vec::new();
    for s in sections {
        for (key, kind) in [
            ("ca", "ca"),
            ("client_ca", "ca"),
            ("cert", "cert"),
            ("key", "key"),
        ] {
            if let Some(p) = s[key].as_str() {
                out.push((kind, p.to_string()));
            }
        }
    }
    out
}

/// Every shipped config is valid. One that names TLS files (relative to
/// itself, as in production) is checked in a copy next to freshly made
/// files at those paths (one CA; one certificate and key for every
/// cert/key pair); in place, its only problems are those missing files.
#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    let mut with_tls = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        let files = tls_files(&text);
        if files.is_empty() {
            load(&p).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        with_tls += 1;
        let in_place = load(&p).expect_err("its TLS files are not in the repository");
        for problem in &in_place.0 {
            assert!(
                problem.message.contains("No such file or directory")
                    && ["tls", "upstream_tls", "backends"]
                        .iter()
                        .any(|k| problem.key.starts_with(k)),
                "{}: a problem besides the missing TLS files: {problem}",
                p.display()
            );
        }
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let copy = temp_dir(&format!("shipped-{stem}"));
        write_ca_and_cert(&copy, &["127.0.0.1"]);
        for (kind, rel) in &files {
            let src = match *kind {
                "ca" => "ca.pem",
                "cert" => "client.pem",
                _ => "client-key.pem",
            };
            let dst = copy.join(rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(copy.join(src), &dst).unwrap();
        }
        let copied = copy.join(p.file_name().unwrap());
        std::fs::write(&copied, &text).unwrap();
        load(&copied).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&copy);
    }
    assert!(n >= 3);
    assert!(with_tls >= 1, "config/etcd-tls.yaml is checked");
}

/// The resources of a kustomization directory (`resources:` files, YAML
/// documents) and the files of its `configMapGenerator` by name.
fn kustomization(dir: &Path) -> (Vec<serde_yaml::Value>, Vec<(String, String)>) {
    use serde::Deserialize;
    let k: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut docs = Vec::new();
    for r in k["resources"].as_sequence().into_iter().flatten() {
        let p = dir.join(r.as_str().unwrap());
        if p.is_dir() {
            continue; // a base: read on its own
        }
        let text = std::fs::read_to_string(&p).unwrap();
        docs.extend(
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde_yaml::Value::deserialize(d).unwrap()),
        );
    }
    let mut files = Vec::new();
    for g in k["configMapGenerator"].as_sequence().into_iter().flatten() {
        for f in g["files"].as_sequence().unwrap() {
            let f = f.as_str().unwrap();
            files.push((f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap()));
        }
    }
    (docs, files)
}

#[test]
fn kubernetes_configmap_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let (docs, files) = kustomization(&root.join("base"));
    let one = |kind: &str| {
        let v: Vec<&serde_yaml::Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(v.len(), 1, "one {kind}");
        v[0]
    };
    assert_eq!(files.len(), 1, "one generated ConfigMap file");
    let (key, cfg) = (&files[0].0, files[0].1.as_str());
    assert_eq!(key, "config.yaml");
    // The overlay replaces the config: the same shape with discovery.dns.
    let (_, overlay) = kustomization(&root.join("overlays/etcd-statefulset"));
    assert_eq!(overlay.len(), 1);
    assert_eq!(overlay[0].0, "config.yaml");

    // The token file the config names is where the Deployment mounts the Secret.
    let token_path = serde_yaml::from_str::<serde_yaml::Value>(cfg).unwrap()["admin_token_file"]
        .as_str()
        .expect("admin_token_file")
        .to_string();
    let secret = one("Secret");
    let pod = &one("Deployment")["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret["metadata"]["name"])
        .expect("a volume from the admin token Secret");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == vol["name"])
        .expect("the Secret volume is mounted");
    let (dir, key) = token_path.rsplit_once('/').unwrap();
    assert_eq!(mount["mountPath"].as_str(), Some(dir));
    let shipped = secret["stringData"][key]
        .as_str()
        .expect("the Secret has the key");

    // The config is valid with a real token at that path (written to a temp
    // file here); the Secret ships empty, and an empty token fails closed.
    let tmp = temp_dir("k8s");
    let with_token = |token: &str| {
        std::fs::write(tmp.join("token"), token).unwrap();
        let cfg = cfg.replace(&token_path, &tmp.join("token").display().to_string());
        parse(&cfg, Path::new("leaderproxy.yaml (ConfigMap)"))
    };
    let c = with_token("k8s-admin-token").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.backends.len(), 3);
    assert!(!c.discovery.is_on());
    std::fs::write(tmp.join("token"), "k8s-admin-token").unwrap();
    let o = overlay[0]
        .1
        .replace(&token_path, &tmp.join("token").display().to_string());
    let o = parse(&o, Path::new("overlays/etcd-statefulset/config.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(o.backends.is_empty());
    assert_eq!(
        o.discovery.dns.as_ref().map(|d| &d.lookup),
        Some(&DnsLookup::Addresses {
            name: "etcd".into(),
            port: 2379
        })
    );
    assert_eq!(c.admin.port(), 9901);
    assert!(!c.admin.ip().is_loopback());
    assert!(c.admin_token.as_ref().unwrap().matches(b"k8s-admin-token"));
    assert!(!c.admin_insecure);
    assert_eq!(shipped, "");
    let e = with_token(shipped).unwrap_err().to_string();
    assert!(
        e.contains("admin_token_file: ") && e.ends_with("is empty; put the admin token in it"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);

    // Only Prometheus may reach the admin port; the proxy port is open.
    let np = &one("NetworkPolicy")["spec"];
    assert_eq!(
        np["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "leaderproxy"
    );
    let rules = np["ingress"].as_sequence().unwrap();
    let rule_for = |port: &str| {
        let r: Vec<_> = rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .collect();
        assert_eq!(r.len(), 1, "one rule for port {port}");
        r[0]
    };
    assert!(
        rule_for("http").get("from").is_none(),
        "clients come from anywhere"
    );
    let from = rule_for("admin")["from"]
        .as_sequence()
        .expect("admin has a from");
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
}

/// A fresh directory under the system temp dir for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("leaderproxy-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const ADMIN_BASE: &str = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn admin_on_a_non_loopback_address_needs_a_token_or_admin_insecure() {
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\n");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:4:1: admin: 0.0.0.0:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true"]
    );
    let text = format!("{ADMIN_BASE}admin: '[::]:9901'\n");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:4:1: admin: [::]:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true"]
    );
    let c = parse(
        &format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_insecure: true\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert!(c.admin_insecure);
    assert!(c.admin_token.is_none());
    // Loopback, v4 (all of 127/8) and v6, needs neither.
    for a in ["127.0.0.1:9901", "127.3.2.1:0", "'[::1]:9901'"] {
        let c = parse(&format!("{ADMIN_BASE}admin: {a}\n"), Path::new("lp.yaml"))
            .unwrap_or_else(|e| panic!("{a}: {e}"));
        assert!(!c.admin_insecure && c.admin_token.is_none());
    }
}

#[test]
fn admin_token_file_is_read_trimmed_relative_to_the_config_and_never_printed() {
    let dir = temp_dir("token-ok");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/admin"), "  s3cr3t-Token_value\n\n").unwrap();
    let cfg_path = dir.join("lp.yaml");
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_token_file: secrets/admin\n");
    let c = parse(&text, &cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let t = c.admin_token.as_ref().expect("token");
    assert_eq!(t.file, dir.join("secrets/admin"));
    assert!(t.matches(b"s3cr3t-Token_value"));
    assert!(!t.matches(b"s3cr3t-Token_valuf"));
    assert!(!t.matches(b"s3cr3t-Token_value\n"));
    assert!(!t.matches(b""));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_token_file_missing_empty_or_unusable_is_an_error_with_its_line() {
    let dir = temp_dir("token-bad");
    let cfg_path = dir.join("lp.yaml");
    let file = cfg_path.display().to_string();
    let text = format!("{ADMIN_BASE}admin_token_file: tok\n");
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: cannot read {}: No such file or directory (os error 2)",
            dir.join("tok").display()
        )
    );
    std::fs::write(dir.join("tok"), " \n\t\n").unwrap();
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: {} is empty; put the admin token in it",
            dir.join("tok").display()
        )
    );
    std::fs::write(dir.join("tok"), "two words\n").unwrap();
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: the token in {} must be printable ASCII without spaces (clients send it as \"Authorization: Bearer <token>\")",
            dir.join("tok").display()
        )
    );
    // On a non-loopback address, only the file's problem is reported.
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_token_file: nope\n");
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:5:1: admin_token_file: cannot read {}: No such file or directory (os error 2)",
            dir.join("nope").display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

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

#[test]
fn trust_keys_defaults_and_bounds() {
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.leader.fall, 2);
    assert_eq!(c.leader.fast_interval, Duration::from_millis(25));
    assert_eq!(
        c.writes.retry_ambiguous,
        crate::config::RetryAmbiguous::Never
    );
    assert_eq!(c.limits.replay_buffer_bytes, 64 << 20);
    assert_eq!(c.timeouts.upstream_idle, Duration::from_secs(60));
    assert_eq!(c.timeouts.body_idle, Duration::from_secs(60));

    let text = ISSUE_CONFIG.replace(
        "writes: { hold: 5s }",
        "writes: { hold: 5s, replay_body_limit: 65MiB, retry_ambiguous: idempotent }\nlimits: { replay_buffer_bytes: 1MiB }",
    );
    assert_eq!(
        errs(&text),
        vec![
            "lp.yaml:18:21: writes.replay_body_limit: 68157440 bytes is more than the most allowed, 64MiB",
            "lp.yaml:18:21: writes.replay_body_limit: 68157440 bytes is more than limits.replay_buffer_bytes (1048576)",
        ]
    );
    let text = ISSUE_CONFIG
        .replace(
            "writes: { hold: 5s }",
            "writes: { retry_ambiguous: idempotent }",
        )
        .replace("request: 30s", "request: 5s, idle: 9s");
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(
        c.writes.retry_ambiguous,
        crate::config::RetryAmbiguous::Idempotent
    );
    assert_eq!(
        c.timeouts.response_headers,
        Duration::from_secs(5),
        "old name `request`"
    );
    assert_eq!(
        c.timeouts.upstream_idle,
        Duration::from_secs(9),
        "old name `idle`"
    );
}

const PP_BASE: &str = "backends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn nothing_is_trusted_by_default() {
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.listen_proxy_protocol, vec![false]);
}

#[test]
fn listen_entries_may_be_maps_with_proxy_protocol() {
    let text = format!(
        "listen: [ \"127.0.0.1:8080\", {{ addr: \"127.0.0.1:8443\", proxy_protocol: true }}, {{ addr: \"[::1]:8444\" }} ]\n\
         trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"::1\", 2001:db8::/32]\n{PP_BASE}"
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(
        c.listen,
        vec![
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            "[::1]:8444".parse().unwrap()
        ]
    );
    assert_eq!(c.listen_proxy_protocol, vec![false, true, false]);
    let t = &c.trusted_proxies;
    assert_eq!(
        format!("{t:?}"),
        "CidrSet([10.0.0.0/8, 192.0.2.7/32, ::1/128, 2001:db8::/32])"
    );
    assert!(t.contains("10.9.8.7".parse().unwrap()));
    assert!(t.contains("::1".parse().unwrap()));
    assert!(!t.contains("192.0.2.8".parse().unwrap()));
    // One map on its own.
    let text = format!(
        "listen: {{ addr: 127.0.0.1:1, proxy_protocol: true }}\ntrusted_proxies: [127.0.0.1]\n{PP_BASE}"
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.listen_proxy_protocol, vec![true]);
}

#[test]
fn bad_trusted_proxies_name_the_entry() {
    let text = format!(
        "listen: 127.0.0.1:1\ntrusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n  - 10.0.0.1/8\n  - lb.example\n{PP_BASE}"
    );
    assert_eq!(
        errs(&text),
        vec![
            r#"lp.yaml:4:5: trusted_proxies[1]: invalid prefix length in "10.0.0.0/33" (0 to 32 for IPv4)"#,
            r#"lp.yaml:5:5: trusted_proxies[2]: "10.0.0.1/8" has bits set after the prefix (write 10.0.0.0/8)"#,
            r#"lp.yaml:6:5: trusted_proxies[3]: invalid address or CIDR "lb.example" (write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"#,
        ]
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let text = format!(
        "listen:\n  - 127.0.0.1:1\n  - {{ addr: 127.0.0.1:2, proxy_protocol: true }}\n{PP_BASE}"
    );
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:3:26: listen[1].proxy_protocol: needs trusted_proxies: list the load balancers whose PROXY headers are believed"]
    );
}

#[test]
fn bad_listen_map() {
    let text = format!("listen: [{{ addr: 127.0.0.1 }}]\n{PP_BASE}");
    assert_eq!(
        errs(&text),
        vec![
            r#"lp.yaml:1:12: listen[0].addr: invalid address "127.0.0.1" (write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080)"#
        ]
    );
    let e = errs(&format!(
        "listen: [{{ addr: 127.0.0.1:1, proxy: true }}]\n{PP_BASE}"
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("lp.yaml:"), "{e:?}");
}

/// A CA and a certificate it signs (for `names`), written as PEM files in `dir`.
fn write_ca_and_cert(dir: &Path, names: &[&str]) {
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

const TLS_BASE: &str = "listen: 127.0.0.1:1\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn upstream_tls_applies_to_https_backends_with_per_backend_overrides() {
    let dir = temp_dir("upstream-tls-ok");
    write_ca_and_cert(&dir, &["client"]);
    let text = format!(
        "{TLS_BASE}upstream_tls:\n  ca: ca.pem\n  cert: client.pem\n  key: client-key.pem\n  server_name: etcd.internal\nbackends:\n  - {{ name: t1, url: \"https://127.0.0.1:2379\" }}\n  - {{ name: t2, url: \"https://10.0.0.2:2379\", tls: {{ server_name: etcd-2.internal }} }}\n  - {{ name: t3, url: \"http://10.0.0.3:2379\" }}\n  - {{ name: t4, url: \"https://[::1]:2379\", tls: {{ server_name: null, insecure_skip_verify: true }} }}\n"
    );
    let c = parse(&text, &dir.join("lp.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let t1 = c.backends[0].tls.as_ref().expect("https");
    assert_eq!(
        t1.settings.ca.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
    assert_eq!(
        t1.settings.cert.as_deref(),
        Some(dir.join("client.pem").as_path())
    );
    assert_eq!(
        t1.settings.key.as_deref(),
        Some(dir.join("client-key.pem").as_path())
    );
    assert_eq!(t1.settings.server_name.as_deref(), Some("etcd.internal"));
    assert!(!t1.settings.insecure_skip_verify);
    assert!(t1.client.client_cert_not_after.is_some());
    let t2 = c.backends[1].tls.as_ref().unwrap();
    assert_eq!(t2.settings.server_name.as_deref(), Some("etcd-2.internal"));
    assert_eq!(t2.settings.ca, t1.settings.ca);
    assert!(
        std::sync::Arc::ptr_eq(&t1.client, &t2.client),
        "the same files are read once"
    );
    assert!(c.backends[2].tls.is_none());
    // `null` is "not overridden"; the URL's host is verified when no server_name is set anywhere.
    let t4 = c.backends[3].tls.as_ref().unwrap();
    assert_eq!(t4.settings.server_name.as_deref(), Some("etcd.internal"));
    assert!(t4.settings.insecure_skip_verify);
    assert_eq!(c.warnings().len(), 1);
    assert!(
        c.warnings()[0].contains("\"t4\": insecure_skip_verify is on"),
        "{:?}",
        c.warnings()
    );
    assert!(c.backends[0].tls.is_some() && c.warnings().iter().all(|w| !w.contains("t1")));

    // No upstream_tls at all: the system roots, the URL's host.
    let text = format!("{TLS_BASE}backends: [{{name: a, url: 'https://127.0.0.1:2'}}]\n");
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        let c = parse(&text, &dir.join("lp.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let t = c.backends[0].tls.as_ref().unwrap();
        assert_eq!(t.settings.ca, None);
        assert_eq!(
            format!("{:?}", t.server_name),
            "IpAddress(V4(Ipv4Addr([127, 0, 0, 1])))"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upstream_tls_problems_name_the_key_that_set_the_value() {
    let dir = temp_dir("upstream-tls-bad");
    write_ca_and_cert(&dir, &["client"]);
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let text = format!(
        "{TLS_BASE}upstream_tls: {{ ca: nope.pem, cert: client.pem }}\nbackends:\n  - {{ name: a, url: 'https://127.0.0.1:2' }}\n  - {{ name: b, url: 'https://127.0.0.1:3', tls: {{ key: client-key.pem, ca: gone.pem }} }}\n  - {{ name: c, url: 'https://127.0.0.1:4', tls: {{ key: client-key.pem }} }}\n  - {{ name: d, url: 'http://127.0.0.1:5', tls: {{ ca: ca.pem }} }}\n  - {{ name: e, url: 'https://127.0.0.1:6', h2c: true, tls: {{ key: client-key.pem, ca: ca.pem, server_name: 'bad name!' }} }}\n  - {{ name: f, url: 'https://127.0.0.1:7', tls: {{ key: client.pem, ca: ca.pem }} }}\n"
    );
    assert_eq!(
        parse(&text, &p)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        vec![
            format!("{file}:3:31: upstream_tls.cert: a client certificate needs its key (key is missing)"),
            format!(
                "{file}:6:72: backends[1].tls.ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
                dir.join("gone.pem").display()
            ),
            format!(
                "{file}:3:17: upstream_tls.ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
                dir.join("nope.pem").display()
            ),
            format!("{file}:8:43: backends[3].tls: tls is set but the url is http:// (write https:// to use TLS)"),
            format!("{file}:9:44: backends[4].h2c: h2c is HTTP/2 without TLS; over https:// the backend chooses h2 or http/1.1 by ALPN"),
            format!("{file}:9:95: backends[4].tls.server_name: invalid server name \"bad name!\""),
            format!(
                "{file}:10:51: backends[5].tls.key: cannot read a private key from {}: no items found",
                dir.join("client.pem").display()
            ),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_ca_and_forward_client_cert() {
    let dir = temp_dir("client-ca");
    write_ca_and_cert(&dir, &["127.0.0.1"]);
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let base = format!("{TLS_BASE}backends: [{{name: a, url: 'http://127.0.0.1:2'}}]\n");
    let c = parse(
        &format!("{base}tls: {{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: X-Client-Cert-Subject }}\n"),
        &p,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = c.tls.unwrap();
    assert_eq!(t.client_ca, Some(dir.join("ca.pem")));
    assert_eq!(
        t.forward_client_cert.unwrap().as_str(),
        "x-client-cert-subject"
    );
    let c = parse(
        &format!("{base}tls: {{ cert: client.pem, key: client-key.pem }}\n"),
        &p,
    )
    .unwrap();
    let t = c.tls.unwrap();
    assert_eq!((t.client_ca, t.forward_client_cert), (None, None));

    let e = |tls: &str| -> Vec<String> {
        parse(&format!("{base}tls: {tls}\n"), &p)
            .unwrap_err()
            .0
            .iter()
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, forward_client_cert: x-subject }"),
        vec![format!("{file}:4:47: tls.forward_client_cert: needs tls.client_ca (only a verified certificate's subject is forwarded)")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: X-Forwarded-For }"),
        vec![format!("{file}:4:66: tls.forward_client_cert: \"X-Forwarded-For\" is a header the proxy itself manages; pick another name")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: 'a b' }"),
        vec![format!("{file}:4:66: tls.forward_client_cert: \"a b\" is not a valid header name")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: nope.pem }"),
        vec![format!(
            "{file}:4:47: tls.client_ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
            dir.join("nope.pem").display()
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key that is not the certificate's rejects the load with rustls' own
/// words, on the listener (`tls`) and on a backend (`...tls.key`).
#[test]
fn a_key_that_does_not_fit_its_certificate_is_a_problem() {
    let dir = temp_dir("key-mismatch");
    write_ca_and_cert(&dir, &["127.0.0.1"]);
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other-key.pem"), other.serialize_pem()).unwrap();
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let problems = |text: String| -> Vec<String> {
        parse(&text, &p)
            .unwrap_err()
            .0
            .iter()
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(
        problems(format!(
            "{TLS_BASE}backends: [{{name: a, url: 'http://127.0.0.1:2'}}]\ntls: {{ cert: client.pem, key: other-key.pem }}\n"
        )),
        vec![format!(
            "{file}:4:1: tls: certificate and key do not fit together: keys may not be consistent: KeyMismatch"
        )]
    );
    assert_eq!(
        problems(format!(
            "{TLS_BASE}backends: [{{name: a, url: 'https://127.0.0.1:2', tls: {{ ca: ca.pem, cert: client.pem, key: other-key.pem }}}}]\n"
        )),
        vec![format!(
            "{file}:3:87: backends[0].tls.key: client certificate and key do not fit together: keys may not be consistent: KeyMismatch"
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `positions` and `reads` keys from the consistency issue, verbatim.
#[test]
fn consistency_keys_parse_with_their_defaults() {
    let text = format!(
        "{ISSUE_CONFIG}positions:\n  probe: {{ path: /v2/keys/, header: X-Etcd-Index }}\n  response: {{ header: X-Etcd-Index }}\nlocal_zone: eu-1\n"
    )
    .replace(
        "reads: { policy: round_robin, fallback_to_leader: true }   # least_connections | ip_hash\n",
        "reads:\n  policy: round_robin\n  consistency: read_your_writes\n  session: { header: X-Session-Id }\n  max_lag: 10\n  after_write_window: 2s\n",
    )
    .replace(
        "- { name: n3, url: \"http://127.0.0.1:32379\" }",
        "- { name: n3, url: \"http://127.0.0.1:32379\", zone: eu-2, priority: 1 }",
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.reads.consistency, Consistency::ReadYourWrites);
    assert_eq!(
        c.reads.session,
        Some(SessionConfig {
            key: SessionKey::Header(http::HeaderName::from_static("x-session-id")),
            capacity: 100_000
        })
    );
    assert_eq!(c.reads.max_lag, Some(10));
    assert_eq!(c.reads.after_write_window, Duration::from_secs(2));
    let (probe, src) = c.positions.probe.as_ref().unwrap();
    assert_eq!(probe.path, "/v2/keys/");
    assert_eq!(probe.interval, c.leader.probe.interval);
    assert!(matches!(src, PositionSource::Header(h) if h == "x-etcd-index"));
    assert!(c.positions.response.is_some());
    assert_eq!(c.local_zone.as_deref(), Some("eu-1"));
    assert_eq!(c.backends[2].zone.as_deref(), Some("eu-2"));
    assert_eq!(c.backends[2].priority, 1);
    assert_eq!(c.backends[0].priority, 0);

    let d = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert_eq!(d.reads.consistency, Consistency::Eventual);
    assert!(d.positions.probe.is_none() && d.reads.max_lag.is_none());
}

#[test]
fn consistency_keys_that_cannot_work_are_refused() {
    let with = |reads: &str, extra: &str| {
        errs(&format!(
            "{}{extra}",
            ISSUE_CONFIG.replace(
                "reads: { policy: round_robin, fallback_to_leader: true }   # least_connections | ip_hash\n",
                &format!("reads: {reads}\n"),
            )
        ))
    };
    assert_eq!(
        with("{ max_lag: 5 }", ""),
        vec!["lp.yaml:17:10: reads.max_lag: needs positions.probe: a follower's lag is its probed position behind the leader's"]
    );
    assert_eq!(
        with("{ consistency: read_your_writes }", ""),
        vec!["lp.yaml:17:10: reads.consistency: read_your_writes needs positions.probe (to know which followers are fresh) or reads.session (to send a session's reads to the leader for reads.after_write_window after its writes)"]
    );
    assert_eq!(
        with("{ session: { client_ip: true } }", ""),
        vec!["lp.yaml:17:10: reads.session: sessions only matter with reads.consistency: read_your_writes"]
    );
    assert_eq!(
        with(
            "{ consistency: read_your_writes, session: { header: X-S, cookie: s } }",
            ""
        ),
        vec![
            "lp.yaml:17:41: reads.session: give exactly one of header, cookie and client_ip: true"
        ]
    );
    assert_eq!(
        with(
            "{ max_lag: 1 }",
            "positions: { probe: { path: /x, regex: 'offset:\\d+' } }\n"
        ),
        vec!["lp.yaml:20:33: positions.probe.regex: \"offset:\\\\d+\" has no group: put the digits in parentheses, e.g. 'offset:(\\d+)'"]
    );
    assert_eq!(
        with(
            "{ max_lag: 1 }",
            "positions: { probe: { path: /x, header: X-I }, scope: [v2, /v3/] }\n"
        ),
        vec![
            "lp.yaml:20:48: positions.scope: \"v2\" is not a path prefix (it must start with '/')"
        ]
    );
    assert_eq!(
        with("{ max_lag: 1 }", "positions: { probe: { path: /x, header: X-I }, scope: [] }\n"),
        vec!["lp.yaml:20:48: positions.scope: empty: list the path prefixes whose writes move the probed position (leave the key out for every path)"]
    );
    assert_eq!(
        with("{}", "positions: { scope: [/v2/] }\n"),
        vec!["lp.yaml:20:14: positions.scope: needs positions.probe: the scope says which requests the probed positions count"]
    );
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

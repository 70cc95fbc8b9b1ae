//! `preset:` (merge rules, error locations) and `check --explain`.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A preset and two backends; `extra` (YAML) goes after them, from line 6.
fn text(preset: &str, extra: &str) -> String {
    format!(
        "preset: {preset}\nlisten: 127.0.0.1:8080\nbackends:\n  - {{ name: a, url: \"http://127.0.0.1:2379\", tcp: \"127.0.0.1:5432\" }}\n  - {{ name: b, url: \"http://127.0.0.1:22379\", tcp: \"127.0.0.1:5433\" }}\n{extra}"
    )
}

pub(super) fn ok(t: &str) -> Config {
    parse(t, Path::new("lp.yaml")).unwrap_or_else(|e| panic!("{e}\n---\n{t}"))
}

pub(super) fn errs(t: &str) -> Vec<String> {
    match parse(t, Path::new("lp.yaml")) {
        Ok(_) => panic!("expected an error:\n{t}"),
        Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
    }
}

fn source_str(s: &PositionSource) -> String {
    match s {
        PositionSource::Header(h) => format!("header {h}"),
        PositionSource::Json(p) => format!("json {p}"),
        PositionSource::Regex(r) => format!("regex {}", r.as_str()),
        PositionSource::Native => "native".to_string(),
    }
}

/// Each preset: what it must set, read back from the validated config.
#[test]
fn every_preset_with_two_backends_is_valid_and_sets_its_probes() {
    struct Want {
        preset: &'static str,
        health: &'static str,
        leader: (&'static str, &'static str),
        term: Option<&'static str>,
        probe: Option<(&'static str, &'static str, &'static str)>,
        response: Option<&'static str>,
        /// `positions.scope` (empty: every path).
        scope: &'static [&'static str],
        not_leader: (Vec<u16>, usize, bool),
        routes: usize,
    }
    let wants = [
        Want {
            preset: "etcd",
            health: "/health",
            leader: ("GET", "/v2/stats/leader"),
            term: None,
            probe: Some(("GET", "/v2/keys/", "header x-etcd-index")),
            response: Some("header x-etcd-index"),
            scope: &["/v2/"],
            not_leader: (vec![], 0, false),
            routes: 6,
        },
        Want {
            preset: "etcd-v3",
            health: "/health",
            leader: ("POST", "/v3/maintenance/status"),
            term: Some("/header/raft_term"),
            probe: Some(("POST", "/v3/kv/range", "json /header/revision")),
            response: Some("json /header/revision"),
            scope: &["/v3/", "/etcdserverpb."],
            not_leader: (vec![], 0, false),
            routes: 6,
        },
        Want {
            preset: "rqlite",
            health: "/readyz",
            leader: ("GET", "/status"),
            term: Some("/store/raft/term"),
            probe: Some(("GET", "/status", "json /store/raft/applied_index")),
            response: None,
            scope: &["/db/"],
            not_leader: (vec![503], 0, true),
            routes: 1,
        },
        Want {
            preset: "consul",
            health: "/v1/status/leader",
            leader: ("GET", "/v1/agent/self"),
            term: Some("/Stats/raft/term"),
            probe: Some(("GET", "/v1/agent/self", "json /Stats/raft/applied_index")),
            response: None,
            scope: &[
                "/v1/kv/",
                "/v1/txn",
                "/v1/catalog/",
                "/v1/health/",
                "/v1/session/",
                "/v1/acl/",
                "/v1/config",
                "/v1/connect/",
                "/v1/query",
                "/v1/coordinate/",
            ],
            not_leader: (vec![], 0, false),
            routes: 1,
        },
        Want {
            preset: "vault",
            health: "/v1/sys/health?standbyok=true&perfstandbyok=true",
            leader: ("GET", "/v1/sys/health"),
            term: None,
            probe: None,
            response: None,
            scope: &[],
            not_leader: (vec![], 0, true),
            routes: 1,
        },
        Want {
            preset: "patroni",
            health: "/health",
            leader: ("GET", "/primary"),
            term: None,
            probe: Some((
                "GET",
                "/patroni",
                r#"regex "(?:replayed_)?location": ?(\d+)"#,
            )),
            response: None,
            scope: &[],
            not_leader: (vec![], 0, false),
            routes: 1,
        },
        Want {
            preset: "redis-webdis",
            health: "/PING",
            leader: ("GET", "/ROLE"),
            term: None,
            probe: Some(("GET", "/INFO/replication", "json /INFO/master_repl_offset")),
            response: None,
            scope: &[],
            not_leader: (vec![503], 1, false),
            routes: 5,
        },
    ];
    assert_eq!(
        wants.iter().map(|w| w.preset).collect::<Vec<_>>(),
        presets::names()
            .filter(|n| !NATIVE.contains(n))
            .collect::<Vec<_>>(),
        "every HTTP preset is checked"
    );
    for w in &wants {
        let c = ok(&text(w.preset, ""));
        let p = w.preset;
        assert_eq!(c.preset.as_deref(), Some(p));
        assert_eq!(c.backends.len(), 2, "{p}");
        assert_eq!(c.health.probe.path, w.health, "{p}");
        assert_eq!(
            (c.leader.probe.method.as_str(), c.leader.probe.path.as_str()),
            w.leader,
            "{p}"
        );
        assert!(
            c.leader.probe.timeout < c.leader.probe.interval
                && c.leader.probe.interval <= Duration::from_millis(500),
            "{p}: leader probe every {:?}",
            c.leader.probe.interval
        );
        assert_eq!(c.leader.term_pointer.as_deref(), w.term, "{p}");
        let probe = c.positions.probe.as_ref().map(|(pc, s)| {
            (
                pc.method.as_str().to_string(),
                pc.path.clone(),
                source_str(s),
            )
        });
        assert_eq!(
            probe,
            w.probe
                .map(|(m, path, s)| (m.to_string(), path.to_string(), s.to_string())),
            "{p}"
        );
        assert_eq!(
            c.positions.response.as_ref().map(source_str).as_deref(),
            w.response,
            "{p}"
        );
        assert_eq!(c.positions.scope, w.scope, "{p}");
        let nl = &c.writes.not_leader;
        assert_eq!(
            (nl.status.clone(), nl.body.len(), nl.redirect),
            w.not_leader,
            "{p}"
        );
        assert_eq!(c.routes.len(), w.routes, "{p}");
    }
}

/// The presets whose probes are native (checked by
/// [`native_presets_probe_natively`]).
const NATIVE: [&str; 3] = ["postgres", "redis-sentinel", "mariadb"];

/// The native presets: every probe of their kind, nothing of HTTP (no
/// routes, no not-leader answers), at the backends' data addresses.
#[test]
fn native_presets_probe_natively() {
    for (name, kind) in NATIVE
        .into_iter()
        .zip([ProbeKind::Postgres, ProbeKind::Redis])
    {
        let c = ok(&text(name, ""));
        for p in [
            &c.health.probe,
            &c.leader.probe,
            &c.positions.probe.as_ref().unwrap().0,
        ] {
            assert_eq!(p.native.as_ref().map(|n| n.kind), Some(kind), "{name}");
        }
        assert!(matches!(
            c.positions.probe.as_ref().unwrap().1,
            PositionSource::Native
        ));
        assert!(
            c.leader.probe.timeout < c.leader.probe.interval
                && c.leader.probe.interval <= Duration::from_millis(500),
            "{name}"
        );
        assert!(
            c.routes.is_empty() && c.writes.not_leader.status.is_empty(),
            "{name}"
        );
        // Without data addresses the preset cannot run.
        let no_tcp = text(name, "").replace(", tcp: \"127.0.0.1:5432\"", "");
        assert_eq!(
            errs(&no_tcp),
            vec![format!("lp.yaml:4:5: backends[0]: health.kind {} probes the backend's data address: set backends[0].tcp (host:port)", kind.name())],
            "{name}"
        );
    }
}

/// A preset describes a system, never a deployment; each one says what it
/// relies on.
#[test]
fn presets_never_set_backends_listen_or_admin_and_cite_their_sources() {
    for name in presets::names() {
        let doc = presets::document(name).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
        for k in presets::NEVER_FROM_PRESET {
            assert!(
                v.get(k).is_none(),
                "preset {name} sets {k}, which only the user's file may"
            );
        }
        assert!(
            doc.starts_with(&format!("# preset: {name} ")),
            "{name}: first line names it"
        );
        assert!(
            doc.contains("What this relies on"),
            "{name}: says what it relies on"
        );
        assert!(v.get("leader").is_some(), "{name}: gives the leader probe");
    }
    assert_eq!(presets::document("nope"), None);
}

/// Maps merge key by key: a partial `leader:` keeps the preset's other
/// leader keys; scalars and lists replace.
#[test]
fn explicit_keys_override_and_maps_merge_key_by_key() {
    let c = ok(&text(
        "etcd",
        "leader: { interval: 1s, timeout: 400ms }\nhealth: { expect: { status: [200, 204] } }\n",
    ));
    assert_eq!(c.leader.probe.interval, Duration::from_secs(1));
    assert_eq!(c.leader.probe.timeout, Duration::from_millis(400));
    assert_eq!(
        c.leader.probe.path, "/v2/stats/leader",
        "kept from the preset"
    );
    assert_eq!(c.leader.probe.expect.status, Some(vec![200]));
    assert_eq!(c.health.probe.expect.status, Some(vec![200, 204]));
    assert!(
        c.health.probe.expect.json.is_some(),
        "the preset's other health condition stays"
    );
    assert_eq!(c.health.fall, 5, "from the preset");
    assert_eq!(c.writes.hold, Duration::from_secs(5));

    // Lists replace: the user's routes are the only routes.
    let c = ok(&text(
        "etcd",
        "routes:\n  - { methods: [GET], path_prefix: /v2/keys/, to: read }\n",
    ));
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].path_prefix.as_deref(), Some("/v2/keys/"));
    let c = ok(&text("etcd", "routes: []\n"));
    assert!(c.routes.is_empty(), "routes: [] leaves no route at all");

    // null removes the preset's value: back to the built-in default.
    let c = ok(&text("etcd", "positions: ~\nhealth: { expect: ~ }\n"));
    assert!(c.positions.probe.is_none() && c.positions.response.is_none());
    assert!(c.health.probe.expect.json.is_none() && c.health.probe.expect.status.is_none());
    assert_eq!(c.health.probe.path, "/health");

    // One of a set of alternatives replaces the preset's: json instead of
    // header, the probe's path kept.
    let c = ok(&text(
        "etcd",
        "positions:\n  probe: { json: /node/modifiedIndex }\n  response: { regex: 'i=(\\d+)' }\n",
    ));
    let (probe, src) = c.positions.probe.as_ref().unwrap();
    assert_eq!(probe.path, "/v2/keys/");
    assert_eq!(source_str(src), "json /node/modifiedIndex");
    assert_eq!(
        source_str(c.positions.response.as_ref().unwrap()),
        r"regex i=(\d+)"
    );
    let c = ok(&text(
        "etcd-v3",
        "leader: { expect: { json: { equals: \"1\" } } }\n",
    ));
    let j = c.leader.probe.expect.json.as_ref().unwrap();
    assert_eq!(j.pointer, "/header/member_id");
    assert!(matches!(&j.want, JsonWant::Equals(v) if v == "1"));

    // Keys the preset does not know merge in as given.
    let c = ok(&text(
        "rqlite",
        "reads: { policy: round_robin, max_lag: 100, consistency: read_your_writes }\n",
    ));
    assert_eq!(c.reads.policy, Policy::RoundRobin);
    assert_eq!(c.reads.max_lag, Some(100));
    assert!(c.writes.not_leader.redirect, "from the preset");
}

#[test]
fn without_a_preset_nothing_changes() {
    let c = ok("listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n");
    assert_eq!(c.preset, None);
    assert!(c.positions.probe.is_none() && c.routes.is_empty());
}

#[test]
fn unknown_preset_names_its_line_and_the_presets() {
    assert_eq!(
        errs("listen: 127.0.0.1:1\npreset: etc\n"),
        vec!["lp.yaml:2:1: preset: unknown preset \"etc\"; the presets are etcd, etcd-v3, rqlite, consul, vault, patroni, redis-webdis, postgres, redis-sentinel, mariadb"]
    );
}

#[test]
fn leader_is_required_unless_a_preset_gives_it() {
    assert_eq!(
        errs("listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\n"),
        vec!["lp.yaml: leader: required unless a preset gives it (preset: etcd | etcd-v3 | rqlite | consul | vault | patroni | redis-webdis | postgres | redis-sentinel | mariadb)"]
    );
    // A partial leader without a preset: what is missing, at its line.
    assert_eq!(
        errs("listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: { interval: 1s }\n"),
        vec![
            "lp.yaml:3:1: leader.path: required: the path of the leader probe",
            "lp.yaml:3:1: leader.expect: give at least one condition (status, body_regex, json or header) that only the leader's answer meets",
        ]
    );
    // A preset's leader can be removed too.
    assert_eq!(
        errs(&text("vault", "leader: ~\n")),
        vec!["lp.yaml: leader: required unless a preset gives it (preset: etcd | etcd-v3 | rqlite | consul | vault | patroni | redis-webdis | postgres | redis-sentinel | mariadb)"]
    );
    // Partial maps elsewhere: the missing key is named.
    assert_eq!(
        errs("listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: { path: /l, expect: { json: { equals: 1 } } }\npositions: { probe: { header: X-Index } }\n"),
        vec![
            "lp.yaml:3:31: leader.expect.json.pointer: required: the JSON pointer of the value to compare",
            "lp.yaml:4:14: positions.probe.path: required: the path of the position probe",
        ]
    );
}

/// Type errors in the user's file keep their line and column with a preset.
#[test]
fn value_errors_keep_their_line_and_column_with_a_preset() {
    assert_eq!(
        errs(&text("etcd", "leader:\n  interval: 200\n")),
        vec!["lp.yaml:7:13: leader.interval: duration 200 has no unit: write e.g. 200ms or 200s"]
    );
    assert_eq!(
        errs(&text("rqlite", "writes: { not_leader: { redirekt: true } }\n")),
        vec!["lp.yaml:6:25: writes.not_leader: unknown field `redirekt`, expected one of `status`, `body`, `body_regex`, `redirect`"]
    );
}

/// A problem with a value only the preset gave says so; it points at the
/// user's nearest key, or at the `preset:` line.
#[test]
fn problems_with_preset_values_say_where_the_value_came_from() {
    // The user's interval against the preset's timeout.
    assert_eq!(
        errs(&text("etcd", "leader: { interval: 100ms }\n")),
        vec!["lp.yaml:6:1: leader.timeout: 150ms must be shorter than leader.interval (100ms) (from preset etcd)"]
    );
    // Both the user's: no mention of the preset.
    assert_eq!(
        errs(&text(
            "etcd",
            "leader: { interval: 100ms, timeout: 100ms }\n"
        )),
        vec!["lp.yaml:6:28: leader.timeout: 100ms must be shorter than leader.interval (100ms)"]
    );
    // Another position probe needs its own scope.
    assert_eq!(
        errs(&text("etcd", "positions: { probe: { path: /v3/kv/range, json: /header/revision } }\n")),
        vec!["lp.yaml:6:23: positions.probe.path: the preset's positions.scope names the writes its own probe counts: with another probe, set positions.scope to the path prefixes whose writes move it (/ for every path)"]
    );
    let c = ok(&text(
        "etcd",
        "positions: { probe: { path: /v3/kv/range, json: /header/revision }, scope: [/v3/] }\n",
    ));
    assert_eq!(c.positions.scope, ["/v3/"]);
    // Removing what a preset value needs.
    assert_eq!(
        errs(&text("etcd", "positions: { probe: ~ }\n")),
        vec!["lp.yaml:6:1: positions.scope: needs positions.probe: the scope says which requests the probed positions count (from preset etcd)", "lp.yaml:6:1: positions.response: needs positions.probe: a write's position is only useful against the followers' probed positions (from preset etcd)"]
    );
    let e = parse(
        &text("redis-webdis", "health: { interval: 200ms }\n"),
        Path::new("lp.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "lp.yaml:6:1: health.timeout: 300ms must be shorter than health.interval (200ms) (from preset redis-webdis)"
    );
}

/// Where a problem points: the user's key; a key only the preset has is
/// named as the preset's, at the user's nearest key or else at `preset:`;
/// a key neither has (a default) at the user's nearest key, if any.
#[test]
fn problem_locations_with_a_preset() {
    let mut v = Validator {
        file: "lp.yaml".into(),
        loc: Locator::new("preset: etcd\nlisten: 127.0.0.1:1\nleader: { interval: 1s }\n"),
        problems: Vec::new(),
        preset: Some(PresetSource {
            name: "etcd".into(),
            loc: Locator::new(presets::document("etcd").unwrap()),
            at: Some((1, 1)),
        }),
    };
    v.bad("positions.probe.header", "p");
    v.bad("leader.timeout", "t");
    v.bad("leader.interval", "i");
    v.bad("listen", "l");
    v.bad("writes.max_held", "m");
    v.bad("routes[2].path_prefix", "r");
    let shown: Vec<String> = v.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "lp.yaml:1:1: positions.probe.header: p (from preset etcd)",
            "lp.yaml:3:1: leader.timeout: t (from preset etcd)",
            "lp.yaml:3:11: leader.interval: i",
            "lp.yaml:2:1: listen: l",
            "lp.yaml: writes.max_held: m",
            "lp.yaml:1:1: routes[2].path_prefix: r (from preset etcd)",
        ]
    );
}

/// `check --explain` prints every key; read back, it is the same config.
#[test]
fn explain_round_trips_for_every_preset_and_plain_configs() {
    let mut texts: Vec<String> = presets::names()
        .filter(|n| cfg!(feature = "mysql") || *n != "mariadb")
        .map(|n| text(n, ""))
        .collect();
    texts.push(
        text(
            "etcd",
            "reads: { consistency: read_your_writes, session: { cookie: sid }, max_lag: 7 }\nleader: { interval: 1s, timeout: 400ms }\nlocal_zone: eu-1\ntrusted_proxies: [10.0.0.0/8]\n",
        )
        .replace(
            "listen: 127.0.0.1:8080",
            "listen: [{ addr: 127.0.0.1:8080, proxy_protocol: true }]",
        ),
    );
    texts.push(super::tests::ISSUE_CONFIG.to_string());
    texts.push(text(
        "etcd",
        "reads: { try_timeout: auto, try_timeout_auto: { multiplier: 2.5, max: 400ms }, hedge: { after: p95, max_percent: 5 } }\n",
    ));
    texts.push(text(
        "etcd",
        "reads: { try_timeout: 120ms, hedge: { after: 30ms } }\n",
    ));
    texts.push(
        "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2', max_connections: 7}, {name: b, url: 'http://127.0.0.1:3'}]\nleader: {path: /l, expect: {status: [200]}}\nlimits: { max_upstream_connections_per_backend: 9 }\n".to_string(),
    );
    texts.push(
        "listen: 127.0.0.1:1\nhttp_reuse: always\nleader: {path: /l, expect: {header: {name: X-Role, equals: leader}, body_regex: 'a\\d'}}\ndiscovery: { dns: { srv: _x._tcp.example.com, interval: 3s } }\nwrites: { retry_ambiguous: idempotent, replay_body_limit: 2MiB }\n".to_string(),
    );
    for t in &texts {
        let first = ok(t);
        let shown = explain_text(&first);
        assert!(
            shown.starts_with("# The effective config of lp.yaml: "),
            "{shown}"
        );
        let again = ok(&shown);
        assert_eq!(
            explain(&again),
            explain(&first),
            "explain output read back differs:\n{shown}"
        );
        // The parts that decide routing, compared on the configs themselves.
        let probe = |c: &Config| {
            [&c.health.probe, &c.leader.probe]
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {:?} {:?} {:?} {:?}",
                        p.method, p.path, p.body, p.interval, p.timeout, p.expect
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(probe(&again), probe(&first));
        assert_eq!(again.leader.term_pointer, first.leader.term_pointer);
        let routes = |c: &Config| format!("{:?}", c.routes);
        assert_eq!(routes(&again), routes(&first));
        let positions = |c: &Config| {
            (
                c.positions.probe.as_ref().map(|(p, s)| {
                    format!("{} {} {:?} {}", p.method, p.path, p.body, source_str(s))
                }),
                c.positions.response.as_ref().map(source_str),
            )
        };
        assert_eq!(positions(&again), positions(&first));
        assert_eq!(again.reads.session, first.reads.session);
        assert_eq!(again.reads.try_timeout, first.reads.try_timeout);
        assert_eq!(again.reads.hedge, first.reads.hedge);
        assert_eq!(
            again.writes.replay_body_limit,
            first.writes.replay_body_limit
        );
        assert_eq!(again.listen_proxy_protocol, first.listen_proxy_protocol);
        let limits = |c: &Config| {
            let l: Vec<usize> = c
                .backends
                .iter()
                .map(|b| c.max_upstream_connections(b))
                .collect();
            l
        };
        assert_eq!(limits(&again), limits(&first));
        assert_eq!(again.http_reuse, first.http_reuse);
        assert_eq!(again.preset, None, "the explained config names no preset");
    }
}

/// What the explained YAML looks like for one preset: every section, the
/// defaults written out, durations and sizes in their units.
#[test]
fn explain_writes_every_key_with_defaults() {
    let c = ok(&text("etcd-v3", ""));
    let v = explain(&c);
    let keys: Vec<&str> = v
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "listen",
            "tcp",
            "data_port",
            "trusted_proxies",
            "admin",
            "admin_token_file",
            "admin_insecure",
            "workers",
            "debug_headers",
            "access_log",
            "http_reuse",
            "shutdown_grace",
            "local_zone",
            "backends",
            "discovery",
            "upstream_tls",
            "health",
            "leader",
            "positions",
            "probe_auth",
            "routes",
            "reads",
            "writes",
            "timeouts",
            "limits",
            "passive",
            "tls"
        ]
    );
    let y = |p: &str| {
        p.split('.').fold(&v, |v, k| match k.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[k],
        })
    };
    assert_eq!(y("leader.interval").as_str(), Some("200ms"));
    assert_eq!(y("leader.fast_interval").as_str(), Some("25ms"));
    assert_eq!(y("leader.body").as_str(), Some("{}"));
    assert_eq!(y("leader.term.pointer").as_str(), Some("/header/raft_term"));
    assert_eq!(
        y("leader.expect.json.equals_pointer").as_str(),
        Some("/leader")
    );
    assert_eq!(y("health.expect.json.equals").as_str(), Some("true"));
    assert_eq!(y("positions.probe.method").as_str(), Some("POST"));
    assert_eq!(
        y("positions.probe.body").as_str(),
        Some(r#"{"key":"AA==","serializable":true}"#)
    );
    assert_eq!(y("routes.0.long_poll").as_bool(), Some(true));
    assert_eq!(y("routes.3.methods.0").as_str(), Some("POST"));
    assert_eq!(y("writes.replay_body_limit").as_u64(), Some(1 << 20));
    assert_eq!(y("writes.not_leader.status"), &serde_yaml::Value::Null);
    assert_eq!(y("limits.max_body_bytes").as_u64(), Some(64 << 20));
    assert_eq!(
        y("limits.max_upstream_connections_per_backend").as_u64(),
        Some(1024)
    );
    assert_eq!(y("backends.0.max_connections"), &serde_yaml::Value::Null);
    assert_eq!(y("passive.max_ejection").as_str(), Some("5m"));
    assert_eq!(y("reads.after_write_window").as_str(), Some("2s"));
    assert_eq!(y("reads.max_lag"), &serde_yaml::Value::Null);
    assert_eq!(y("backends.1.name").as_str(), Some("b"));
    assert_eq!(y("tls"), &serde_yaml::Value::Null);
    let shown = explain_text(&c);
    assert!(
        shown.starts_with("# The effective config of lp.yaml: preset etcd-v3 merged in, every default filled in.\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  equals: 'true'\n"),
        "a string stays a string:\n{shown}"
    );
}

/// webdis puts the command in the path: the preset marks the commands a
/// second application changes as not idempotent, whatever the method.
#[test]
fn redis_webdis_marks_non_idempotent_commands() {
    let c = ok(&text("redis-webdis", ""));
    let idem = |method: &str, path: &str| {
        let m: http::Method = method.parse().unwrap();
        crate::routing::classify(&c.routes, &m, path).idempotent
    };
    for path in [
        "/INCR/k",
        "/incrby/k/2",
        "/LPUSH/l/x",
        "/APPEND/k/x",
        "/SPOP/s",
        "/EVAL/x/0",
    ] {
        assert_eq!(idem("PUT", path), Some(false), "{path}");
        assert_eq!(idem("POST", path), Some(false), "{path}");
    }
    for path in ["/SET/k/v", "/DEL/k", "/SADD/s/x", "/HSET/h/f/v", "/INCRX/k"] {
        assert_eq!(idem("PUT", path), None, "{path}: the method decides");
    }
}

//! Native probe kinds and `probe_auth`: what parses, what is refused (at
//! its line and column), and what `check --explain` shows (never the
//! password).

use std::path::PathBuf;

use super::preset_tests::{errs, ok};
use super::*;

/// A password file of its own for each test (tests run in parallel).
fn password_file(name: &str, content: &str) -> PathBuf {
    let f = super::tests::temp_dir(&format!("native-{name}")).join("pw");
    std::fs::write(&f, content).unwrap();
    f
}

const BACKENDS: &str = "backends:\n  - { name: a, url: 'http://127.0.0.1:2', tcp: '127.0.0.1:6379' }\n  - { name: b, url: 'http://127.0.0.1:3', tcp: '127.0.0.1:6380' }\n";

fn redis(extra: &str) -> String {
    format!("listen: 127.0.0.1:1\ntcp: [{{ listen: 127.0.0.1:7000, to: write }}]\n{BACKENDS}health: {{ kind: redis }}\nleader: {{ kind: redis, interval: 200ms, timeout: 100ms }}\npositions: {{ kind: redis }}\n{extra}")
}

#[test]
fn native_kinds_parse_with_auth_and_explain_hides_the_password() {
    let f = password_file("redis-ok", "s3cret-pw\n");
    let c = ok(&redis(&format!(
        "probe_auth: {{ user: probe, password_file: {} }}\n",
        f.display()
    )));
    for p in [
        &c.health.probe,
        &c.leader.probe,
        &c.positions.probe.as_ref().unwrap().0,
    ] {
        assert_eq!(p.native.as_ref().unwrap().kind, ProbeKind::Redis);
    }
    assert!(matches!(
        c.positions.probe.as_ref().unwrap().1,
        PositionSource::Native
    ));
    assert_eq!(
        c.positions.probe.as_ref().unwrap().0.timeout.as_millis(),
        100
    );
    let auth = &c.leader.probe.native.as_ref().unwrap().auth;
    assert_eq!(auth.user.as_deref(), Some("probe"));
    assert_eq!(auth.password.as_ref().unwrap().expose(), "s3cret-pw");
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug shows the password"
    );
    let shown = explain_text(&c);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains(&format!("password_file: {}", f.display())),
        "{shown}"
    );
    let v = explain(&c);
    assert_eq!(v["health"]["kind"].as_str(), Some("redis"));
    assert!(v["health"]["path"].is_null() && v["leader"]["expect"].is_null());
    assert_eq!(v["positions"]["kind"].as_str(), Some("redis"));
    let again = ok(&shown);
    assert_eq!(explain(&again), v, "read back differs:\n{shown}");

    // http stays the default, and says so.
    let plain = ok("listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n");
    assert!(plain.health.probe.native.is_none());
    assert_eq!(explain(&plain)["leader"]["kind"].as_str(), Some("http"));
    assert!(explain(&plain)["probe_auth"].is_null());
}

#[test]
fn postgres_kind_takes_a_database() {
    let c = ok(&format!(
        "listen: 127.0.0.1:1\n{BACKENDS}leader: {{ kind: postgres }}\nprobe_auth: {{ user: monitor, database: app }}\n"
    ));
    assert_eq!(
        c.leader.probe.native.as_ref().unwrap().kind,
        ProbeKind::Postgres
    );
    assert!(c.health.probe.native.is_none(), "health stays http");
    assert_eq!(c.probe_auth.database.as_deref(), Some("app"));
    assert!(c.probe_auth.password.is_none());
}

#[test]
fn native_errors_name_file_line_column() {
    // No data address.
    let t = "listen: 127.0.0.1:1\nbackends:\n  - { name: a, url: 'http://127.0.0.1:2' }\nleader: { kind: redis }\n";
    assert_eq!(
        errs(t),
        vec!["lp.yaml:3:5: backends[0]: leader.kind redis probes the backend's data address: set backends[0].tcp (host:port)"]
    );
    // HTTP keys on a native probe.
    let t = format!("listen: 127.0.0.1:1\n{BACKENDS}leader: {{ kind: redis, path: /x, expect: {{ status: [200] }} }}\nhealth: {{ kind: postgres, path: /h }}\n");
    assert_eq!(
        errs(&t),
        vec![
            "lp.yaml:6:27: health.path: not with health.kind postgres: a native probe asks the backend in its own protocol (remove it, or `~` to drop a preset's)",
            "lp.yaml:5:24: leader.path: not with leader.kind redis: a native probe asks the backend in its own protocol (remove it, or `~` to drop a preset's)",
            "lp.yaml:5:34: leader.expect: not with leader.kind redis: a native probe asks the backend in its own protocol (remove it, or `~` to drop a preset's)",
        ]
    );
    // positions.probe beside a native positions.kind; database for redis; an unknown kind.
    let t = redis(
        "positions: { kind: redis, probe: { path: /p, json: /x } }\nprobe_auth: { database: d }\n",
    )
    .replace("positions: { kind: redis }\n", "");
    assert_eq!(
        errs(&t),
        vec![
            "lp.yaml:9:15: probe_auth.database: only a postgres or mysql probe names a database",
            "lp.yaml:8:27: positions.probe: not with positions.kind redis: the native probe reads the position itself (remove it, or `~` to drop a preset's)",
        ]
    );
    let t = format!("listen: 127.0.0.1:1\n{BACKENDS}leader: {{ kind: mongo }}\n");
    assert!(
        errs(&t)[0].starts_with("lp.yaml:5:17: leader.kind: unknown variant `mongo`"),
        "{:?}",
        errs(&t)
    );
    // probe_auth without a native probe.
    let t = "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\nprobe_auth: { user: u }\n";
    assert_eq!(
        errs(t),
        vec!["lp.yaml:4:1: probe_auth: only native probes log in: set health.kind, leader.kind or positions.kind to redis, postgres or mysql"]
    );
    // Discovered backends have no data address.
    let t = "listen: 127.0.0.1:1\ndiscovery: { dns: { name: db.example.com, port: 6379 } }\nleader: { kind: redis }\n";
    assert_eq!(
        errs(t),
        vec!["lp.yaml:2:1: discovery: leader.kind redis probes each backend's data address, and discovered backends have none: use static backends with `tcp`"]
    );
}

#[test]
fn password_file_errors_never_show_the_content() {
    let missing = std::env::temp_dir().join("lp-native-no-such-file");
    let e = errs(&redis(&format!(
        "probe_auth: {{ password_file: {} }}\n",
        missing.display()
    )));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "lp.yaml:9:15: probe_auth.password_file: cannot read {}",
            missing.display()
        )),
        "{e:?}"
    );
    for (name, content) in [("empty", "\n"), ("two-lines", "secret-one\nsecret-two\n")] {
        let f = password_file(name, content);
        let e = errs(&redis(&format!(
            "probe_auth: {{ password_file: {} }}\n",
            f.display()
        )));
        assert_eq!(
            e,
            vec![format!(
                "lp.yaml:9:15: probe_auth.password_file: {} must hold one non-empty line (the password)",
                f.display()
            )]
        );
    }
}

/// `mysql` needs the cargo feature `mysql`; with it, it parses like the others.
#[test]
fn mysql_kind_needs_its_feature() {
    let t = format!("listen: 127.0.0.1:1\n{BACKENDS}leader: {{ kind: mysql }}\nprobe_auth: {{ user: monitor, database: app }}\n");
    if cfg!(feature = "mysql") {
        let c = ok(&t);
        assert_eq!(
            c.leader.probe.native.as_ref().unwrap().kind,
            ProbeKind::Mysql
        );
    } else {
        assert_eq!(
            errs(&t),
            vec!["lp.yaml:5:11: leader.kind: mysql probes are not in this build: build with `cargo build --features mysql`"]
        );
    }
}

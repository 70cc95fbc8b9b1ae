//! `positions` and the consistency keys of `reads`.

use std::path::Path;
use std::time::Duration;

use super::tests::{errs, ISSUE_CONFIG};
use super::*;

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

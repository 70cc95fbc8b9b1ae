//! `reads`: try_timeout (a duration or auto), try_timeout_auto and hedge:
//! defaults and exact errors.

use std::path::Path;
use std::time::Duration;

use super::reads::AutoTimeout;
use super::tests::errs;
use super::*;

#[test]
fn a_read_try_timeout_is_more_than_zero_and_needs_retries() {
    let e = errs(
        "admin: 127.0.0.1:9901\nleader: { path: /l, expect: { status: [200] } }\nlisten: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\nreads: { retry: false, try_timeout: 0s }\n",
    );
    assert_eq!(
        e,
        [
            "lp.yaml:6:24: reads.try_timeout: must be more than 0",
            "lp.yaml:6:24: reads.try_timeout: a read whose try timed out goes to another backend: needs reads.retry",
        ]
    );
}

#[test]
fn a_hedge_waits_more_than_zero_within_a_share_of_the_reads() {
    let e = errs(
        "admin: 127.0.0.1:9901\nleader: { path: /l, expect: { status: [200] } }\nlisten: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\nreads: { retry: false, hedge: { after: 0s, max_percent: 0 } }\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].ends_with("reads.hedge.after: must be more than 0"),
        "{e:#?}"
    );
    assert!(
        e[1].ends_with("reads.hedge.max_percent: must be 1 to 100"),
        "{e:#?}"
    );
    assert!(
        e[2].ends_with("reads.hedge: a hedged read is sent twice: needs reads.retry"),
        "{e:#?}"
    );
    let c = parse(
        "admin: 127.0.0.1:9901\nleader: { path: /l, expect: { status: [200] } }\nlisten: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\nreads: { hedge: { after: 50ms } }\n",
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.reads.hedge,
        Some(Hedge {
            after: HedgeAfter::Fixed(Duration::from_millis(50)),
            max_percent: 10
        })
    );
}

const READS_BASE: &str = "admin: 127.0.0.1:9901\nleader: { path: /l, expect: { status: [200] } }\nlisten: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\n";

#[test]
fn an_auto_try_timeout_is_a_multiple_of_p99_between_min_and_max() {
    let c = parse(
        &format!("{READS_BASE}reads: {{ try_timeout: auto, hedge: {{ after: p95 }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    let a = AutoTimeout::default();
    assert_eq!(c.reads.try_timeout, Some(TryTimeout::Auto(a)));
    assert_eq!(c.reads.hedge.unwrap().after, HedgeAfter::P95);
    assert_eq!(
        a.of(None),
        Duration::from_secs(1),
        "unknown p99: the ceiling"
    );
    assert_eq!(
        a.of(Some(Duration::from_millis(2))),
        Duration::from_millis(50)
    );
    assert_eq!(
        a.of(Some(Duration::from_millis(30))),
        Duration::from_millis(120)
    );
    assert_eq!(a.of(Some(Duration::from_secs(2))), Duration::from_secs(1));
    let c = parse(
        &format!("{READS_BASE}reads: {{ try_timeout: auto, try_timeout_auto: {{ multiplier: 2.5, min: 10ms, max: 300ms }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    let Some(TryTimeout::Auto(a)) = c.reads.try_timeout else {
        panic!("{:?}", c.reads.try_timeout)
    };
    assert_eq!(
        a.of(Some(Duration::from_millis(20))),
        Duration::from_millis(50)
    );
    assert_eq!(
        a.of(Some(Duration::from_millis(2))),
        Duration::from_millis(10)
    );
}

#[test]
fn auto_try_timeout_keys_are_checked_where_they_stand() {
    let e = errs(&format!(
        "{READS_BASE}reads: {{ try_timeout: soon, hedge: {{ after: p50 }} }}\n"
    ));
    assert_eq!(
        e,
        [
            "lp.yaml:6:10: reads.try_timeout: \"soon\" is neither a duration (e.g. 100ms) nor auto",
            "lp.yaml:6:38: reads.hedge.after: \"p50\" is neither a duration (e.g. 50ms) nor p95",
        ]
    );
    let e = errs(&format!(
        "{READS_BASE}reads: {{ try_timeout: 100ms, try_timeout_auto: {{ multiplier: 0.5, min: 0s, max: 1ms }} }}\n"
    ));
    assert_eq!(
        e,
        ["lp.yaml:6:30: reads.try_timeout_auto: only with reads.try_timeout: auto"]
    );
    let e = errs(&format!(
        "{READS_BASE}reads: {{ try_timeout: auto, try_timeout_auto: {{ multiplier: 0.5, min: 20ms, max: 10ms }} }}\n"
    ));
    assert_eq!(
        e,
        [
            "lp.yaml:6:49: reads.try_timeout_auto.multiplier: must be 1 to 1000",
            "lp.yaml:6:77: reads.try_timeout_auto.max: must be at least min",
        ]
    );
}

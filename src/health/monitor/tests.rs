use super::*;
use crate::health::membership::tests::ip;
use crate::health::membership::{Found, Source};
use crate::routing::RoutingTable;

fn config(extra: &str) -> Arc<Config> {
    config_named("seed", extra)
}

/// One static backend `name` at 127.0.0.1:1, and `extra`.
fn config_named(name: &str, extra: &str) -> Arc<Config> {
    let yaml = format!(
        "listen: 127.0.0.1:0\nbackends: [ {{ name: {name}, url: 'http://127.0.0.1:1' }} ]\n\
         leader: {{ path: /l, expect: {{ status: [200] }} }}\n{extra}"
    );
    Arc::new(crate::config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap())
}

/// A monitor on `cfg` (its probes fail: nothing listens on port 1).
fn monitor(cfg: Arc<Config>) -> (MonitorHandle, Arc<Shared>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let backends = cfg
        .backends
        .iter()
        .map(|b| {
            Arc::new(Backend::new(
                b,
                &metrics,
                1,
                cfg.max_upstream_connections(b),
            ))
        })
        .collect();
    let shared = Arc::new(Shared::new(RoutingTable::empty(backends, cfg.clone())));
    (start(cfg, shared.clone(), metrics.clone()), shared, metrics)
}

fn found(host: &str) -> Vec<Found> {
    vec![ip(host, 2379)]
}

async fn names(h: &MonitorHandle) -> Vec<String> {
    h.status().await.into_iter().map(|b| b.name).collect()
}

/// A reload that renames a backend at the same address keeps it (same
/// `Backend`, drain state kept); admin and metric labels follow the name.
#[tokio::test]
async fn a_rename_at_the_same_address_keeps_the_backend() {
    let (h, shared, metrics) = monitor(config(""));
    let before = shared.load().backends[0].clone();
    assert!(h.set_drained("seed", true).await);
    h.reload(config_named("s2", "")).await;
    let after = shared.load().backends[0].clone();
    assert_eq!(after.id, before.id, "the same backend");
    assert_eq!(after.name().as_str(), "s2");
    let st = h.status().await;
    assert_eq!((st[0].name.as_str(), st[0].drained), ("s2", true));
    assert!(!h.set_drained("seed", false).await, "the old name is gone");
    let m = metrics.render();
    assert!(m.contains("backend=\"s2\""), "{m}");
    assert!(!m.contains("backend=\"seed\""), "{m}");
}

/// A discovered backend left out of answers goes only after
/// `discovery.remove_after` answers in a row; the cap leaves the rest
/// out and counts it.
#[tokio::test]
async fn discovered_backends_are_removed_after_remove_after_answers_and_capped() {
    let (h, shared, metrics) = monitor(config(
        "discovery: { dns: { name: etcd.test, port: 2379 }, max_backends: 2, remove_after: 2 }\n",
    ));
    let g = shared.load().config_gen;
    let two = [found("10.0.0.2"), found("10.0.0.3")].concat();
    h.discovered(Source::Dns, g, Some(two.clone()));
    let all = ["seed", "10.0.0.2:2379", "10.0.0.3:2379"];
    assert_eq!(names(&h).await, all);
    h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
    assert_eq!(names(&h).await, all, "one answer without it: kept");
    h.discovered(Source::Dns, g, Some(two.clone()));
    h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
    assert_eq!(names(&h).await, all, "not two in a row");
    h.discovered(Source::Dns, g, Some(found("10.0.0.2")));
    assert_eq!(names(&h).await, ["seed", "10.0.0.2:2379"], "two in a row");
    // Three addresses, two at most.
    let three = [two, found("10.0.0.4")].concat();
    assert_eq!(metrics.discovery_capped.get(), 0);
    h.discovered(Source::Dns, g, Some(three));
    assert_eq!(names(&h).await, all);
    assert_eq!(metrics.discovery_capped.get(), 1, "the cut is counted");
}

/// An answer in flight across a reload arrives after it: dropped, not
/// applied; the next answer, asked under the config in force, is.
#[tokio::test]
async fn a_discovery_answer_asked_before_a_reload_is_dropped() {
    let dns = "discovery: { dns: { name: etcd.test, port: 2379 } }\n";
    let (h, shared, _) = monitor(config(dns));
    let g0 = shared.load().config_gen;
    h.discovered(Source::Dns, g0, Some(found("10.0.0.2")));
    assert_eq!(names(&h).await, ["seed", "10.0.0.2:2379"]);

    // The reload turns DNS off; an answer asked before it comes late.
    h.reload(config("")).await;
    let g1 = shared.load().config_gen;
    assert!(g1 > g0, "a reload moves the generation");
    assert_eq!(names(&h).await, ["seed"]);
    h.discovered(Source::Dns, g0, Some(found("10.0.0.3")));
    assert_eq!(names(&h).await, ["seed"], "the stale answer is dropped");

    // DNS on again: only answers asked under the new config count.
    h.reload(config(dns)).await;
    let g2 = shared.load().config_gen;
    h.discovered(Source::Dns, g1, Some(found("10.0.0.4")));
    assert_eq!(names(&h).await, ["seed"]);
    h.discovered(Source::Dns, g2, Some(found("10.0.0.5")));
    assert_eq!(names(&h).await, ["seed", "10.0.0.5:2379"]);
}

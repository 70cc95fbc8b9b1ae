//! Every preset, unchanged, against three in-process fake nodes that answer
//! its probes the way the documented system does (tests/support/systems.rs):
//! the proxy finds the leader, writes reach only the leader, reads only the
//! followers, and after leadership moves the proxy follows. The proxy's
//! position probes, as each preset defines them, read every node's position
//! (shown in `/admin/routing`). Then what is particular to a
//! system: rqlite's 301 and Vault's 307 to the leader re-send the write
//! there, webdis's READONLY answer is a refusal, and a Vault standby that
//! answers 429 to the leader probe is a healthy follower.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/systems.rs"]
mod systems;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use fake::{wait_until, Proxy};
use leaderproxy::config::Config;
use systems::{Cluster, System};

const WITHIN: Duration = Duration::from_secs(5);

/// Waits until the healthy followers are exactly `names`.
async fn wait_followers(p: &Proxy, names: &[&str]) {
    admin::wait_followers(p, names, WITHIN).await;
}

/// Sends one of the system's requests through the proxy; it must be
/// answered 2xx.
async fn send_2xx(
    p: &Proxy,
    sys: System,
    (m, path, body): (&str, &str, String),
    when: &str,
) -> fake::Reply {
    let r = p.req(m, path, body).await;
    assert!(
        (200..300).contains(&r.status),
        "{sys:?} {when}: {m} {path} answered {} {}",
        r.status,
        r.text()
    );
    r
}

/// The proxy's position probes, sent as the preset says, read every node's
/// position: `/admin/routing` shows each node's current position, and each
/// node saw the request with the preset's method, path and body.
async fn positions_read_back(c: &Cluster, p: &Proxy, cfg: &Config) {
    let sys = c.system;
    let Some((probe, _)) = &cfg.positions.probe else {
        assert_eq!(sys, System::Vault, "only vault has no position probe");
        let r = p.routing().await;
        assert!(r["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["position"].is_null()));
        return;
    };
    wait_until(
        WITHIN,
        &format!("{sys:?}: every node's position in /admin/routing"),
        || async {
            let r = p.routing().await;
            let shown = r["backends"].as_array().unwrap().clone();
            c.nodes.iter().all(|n| {
                shown.iter().any(|b| {
                    b["name"] == n.name.as_str() && b["position"].as_u64() == Some(n.position())
                })
            })
        },
    )
    .await;
    let want_body = probe.body.clone().unwrap_or_default();
    for n in &c.nodes {
        assert!(
            n.seen().iter().any(|s| s.method == probe.method.as_str()
                && s.target == probe.path
                && s.body == want_body),
            "{sys:?} {}: saw {} {} {want_body:?}",
            n.name,
            probe.method,
            probe.path
        );
    }
}

/// Six writes reach the leader only; eight reads the followers only.
async fn writes_to_leader_reads_to_followers(
    c: &Cluster,
    p: &Proxy,
    cfg: &Config,
    leader: usize,
    when: &str,
) {
    let sys = c.system;
    let lname = c.nodes[leader].name.as_str();
    let writes: Vec<usize> = c.nodes.iter().map(|n| n.writes()).collect();
    let reads: Vec<usize> = c.nodes.iter().map(|n| n.reads()).collect();
    for i in 0..6 {
        let (m, path, body) = sys.write(i);
        let r = send_2xx(p, sys, (m, &path, body), when).await;
        assert_eq!(
            r.backend().as_deref(),
            Some(lname),
            "{sys:?} {when}: {m} {path}"
        );
        // The write's own answer tells its position, where the preset reads one.
        if let Some(src) = &cfg.positions.response {
            assert_eq!(
                src.read(&r.headers, &r.body),
                Some(c.nodes[leader].position()),
                "{sys:?} {when}: position in the answer to {m} {path}: {}",
                r.text()
            );
        }
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let want = if i == leader { 6 } else { 0 };
        assert_eq!(
            n.writes() - writes[i],
            want,
            "{sys:?} {when}: writes on {}",
            n.name
        );
    }
    for i in 0..8 {
        let (m, path, body) = sys.read(i);
        let r = send_2xx(p, sys, (m, &path, body), when).await;
        assert_ne!(
            r.backend().as_deref(),
            Some(lname),
            "{sys:?} {when}: read {path}"
        );
    }
    let on: Vec<usize> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.reads() - reads[i])
        .collect();
    assert_eq!(on[leader], 0, "{sys:?} {when}: no read on the leader");
    assert_eq!(on.iter().sum::<usize>(), 8, "{sys:?} {when}: reads {on:?}");
}

/// The whole run for one preset: leader found, writes and reads placed,
/// positions read, leadership moved from n1 to n3 and followed.
async fn preset_follows_the_leader(sys: System) {
    let c = Cluster::start(sys, 3).await;
    let yaml = c.yaml("");
    let cfg = leaderproxy::config::parse(&yaml, Path::new("preset.yaml")).unwrap();
    assert_eq!(cfg.preset.as_deref(), Some(sys.preset()));
    let p = Proxy::start(&yaml).await;
    p.wait_leader(Some("n1"), WITHIN).await;
    wait_followers(&p, &["n2", "n3"]).await;
    writes_to_leader_reads_to_followers(&c, &p, &cfg, 0, "n1 leading").await;
    positions_read_back(&c, &p, &cfg).await;

    c.set_leader(2);
    p.wait_leader(Some("n3"), WITHIN).await;
    wait_followers(&p, &["n1", "n2"]).await;
    writes_to_leader_reads_to_followers(&c, &p, &cfg, 2, "n3 leading").await;
    positions_read_back(&c, &p, &cfg).await;
}

/// One `#[tokio::test]` a preset: `name => System`, each running
/// [`preset_follows_the_leader`].
macro_rules! preset_tests {
    ($($name:ident => $sys:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            preset_follows_the_leader(System::$sys).await;
        }
    )*};
}

preset_tests! {
    etcd_preset_follows_the_leader => Etcd,
    etcd_v3_preset_follows_the_leader => EtcdV3,
    rqlite_preset_follows_the_leader => Rqlite,
    consul_preset_follows_the_leader => Consul,
    vault_preset_follows_the_leader => Vault,
    patroni_preset_follows_the_leader => Patroni,
    redis_webdis_preset_follows_the_leader => RedisWebdis,
}

/// Patroni 3.0.2 answers `/primary` 200 as soon as a node takes the
/// leader lock, 70-175 ms before its PostgreSQL leaves recovery, with
/// `"role": "replica"` in the body (docs/tcp-research.md): the preset must not
/// name that node leader (writes there fail read-only) until the role says
/// `master`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_preset_waits_for_the_role_not_just_the_lock() {
    let c = Cluster::start(System::Patroni, 3).await;
    let p = Proxy::start(&c.yaml("")).await;
    p.wait_leader(Some("n1"), WITHIN).await;
    c.nodes[2].clear();
    c.take_lock(2);
    // Probes run one after the other: once n3 has answered the third
    // `/primary` 200, the proxy has judged at least two of them.
    let lock_answers = || {
        c.nodes[2]
            .seen()
            .iter()
            .filter(|s| s.target == "/primary" && s.status == 200)
            .count()
    };
    wait_until(WITHIN, "n3 answered /primary 200 three times", || async {
        lock_answers() >= 3
    })
    .await;
    let r = p.routing().await;
    assert!(
        r["leader"]["name"].is_null(),
        "named a leader still in recovery: {}",
        r["leader"]
    );
    c.finish_promotion();
    p.wait_leader(Some("n3"), WITHIN).await;
    let (m, path, body) = System::Patroni.write(0);
    let r = send_2xx(&p, System::Patroni, (m, &path, body), "n3 promoted").await;
    assert_eq!(r.backend().as_deref(), Some("n3"));
}

/// A proxy that still takes n1 for the leader (its leader probe is slow)
/// after n2 took over; returns it once n1 leads and n2, n3 follow.
async fn stale_leader_view(c: &Cluster, extra: &str) -> Proxy {
    let p = Proxy::start(&c.yaml(&format!(
        "leader: {{ interval: 30s, timeout: 1s }}\n{extra}"
    )))
    .await;
    p.wait_leader(Some("n1"), WITHIN).await;
    wait_followers(&p, &["n2", "n3"]).await;
    c.set_leader(1);
    p
}

/// One write, sent to n1 after n2 took over: answered by n2; n1 refused it
/// with `refusal` and nobody else saw it.
async fn write_refused_by_n1_lands_on_n2(c: &Cluster, p: &Proxy, refusal: u16) -> fake::Reply {
    let sys = c.system;
    let (m, path, body) = sys.write(0);
    let r = p.req(m, &path, body.clone()).await;
    assert_eq!(r.status, 200, "{sys:?}: {}", r.text());
    assert_eq!(r.backend().as_deref(), Some("n2"), "{sys:?}");
    let on_n1: Vec<_> = c.nodes[0].requests();
    assert_eq!(on_n1.len(), 1, "{sys:?}: n1 saw {on_n1:?}");
    assert_eq!(on_n1[0].status, refusal, "{sys:?}: n1 answered");
    let on_n2: Vec<_> = c.nodes[1].requests();
    assert_eq!(on_n2.len(), 1, "{sys:?}: n2 saw {on_n2:?}");
    assert_eq!(
        (on_n2[0].target.as_str(), on_n2[0].body.as_str()),
        (path.as_str(), body.as_str()),
        "{sys:?}: the same request, query and body included"
    );
    assert!(c.nodes[2].requests().is_empty(), "{sys:?}: n3 saw none");
    r
}

/// rqlite: a follower answers a write with 301 to the leader's address
/// (same path and query); the proxy re-sends it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rqlite_follower_redirect_sends_the_write_to_the_leader() {
    let c = Cluster::start(System::Rqlite, 3).await;
    let p = stale_leader_view(&c, "").await;
    let r = write_refused_by_n1_lands_on_n2(&c, &p, 301).await;
    assert_eq!(
        r.text(),
        r#"{"results":[{"last_insert_id":1,"rows_affected":1}]}"#
    );
}

/// webdis: a replica answers a write with 200 and a READONLY error; the
/// proxy takes it for a refusal and re-sends the write to the new primary,
/// so the client never sees READONLY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_webdis_readonly_answer_is_a_refusal() {
    let c = Cluster::start(System::RedisWebdis, 3).await;
    let p = stale_leader_view(&c, "").await;
    let r = write_refused_by_n1_lands_on_n2(&c, &p, 200).await;
    assert_eq!(r.text(), r#"{"SET":[true,"OK"]}"#);
}

/// Vault: standbys answer the leader probe (`/v1/sys/health`) with 429 and
/// the health probe (`standbyok=true`) with 200: healthy followers that get
/// the reads. A sealed one (503) leaves them. A standby that cannot forward
/// answers a write with 307 to the active node, where it is re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_standby_answering_429_is_a_healthy_follower() {
    let c = Cluster::start(System::Vault, 3).await;
    // Faster health than the preset's 2s (merged: its path and expect stay).
    let p =
        Proxy::start(&c.yaml("health: { interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }\n"))
            .await;
    p.wait_leader(Some("n1"), WITHIN).await;
    wait_followers(&p, &["n2", "n3"]).await;
    let answered = |n: &systems::Node, target: &str| -> BTreeSet<u16> {
        n.seen()
            .iter()
            .filter(|s| s.target == target)
            .map(|s| s.status)
            .collect()
    };
    let health = "/v1/sys/health?standbyok=true&perfstandbyok=true";
    for n in &c.nodes[1..] {
        assert_eq!(
            answered(n, "/v1/sys/health"),
            BTreeSet::from([429]),
            "{}",
            n.name
        );
        assert_eq!(answered(n, health), BTreeSet::from([200]), "{}", n.name);
    }
    assert_eq!(
        answered(&c.nodes[0], "/v1/sys/health"),
        BTreeSet::from([200])
    );
    let mut on = BTreeSet::new();
    for i in 0..6 {
        on.insert(
            p.get(&format!("/v1/secret/data/k{i}"))
                .await
                .backend()
                .unwrap(),
        );
    }
    assert_eq!(on, BTreeSet::from(["n2".to_string(), "n3".to_string()]));

    c.nodes[2].set_sealed(true);
    wait_followers(&p, &["n2"]).await;
    for i in 0..4 {
        let r = p.get(&format!("/v1/secret/data/k{i}")).await;
        assert_eq!(r.backend().as_deref(), Some("n2"));
    }
    drop(p);

    let c = Cluster::start(System::Vault, 3).await;
    let p = stale_leader_view(&c, "").await;
    write_refused_by_n1_lands_on_n2(&c, &p, 307).await;
}

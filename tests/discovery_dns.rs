//! `discovery.dns` against an in-process DNS server on 127.0.0.1 (UDP,
//! answering A queries from a list the test changes) with fake nodes
//! behind: 3 → 5 → 2 members, one of them leader; the routing table
//! follows, unchanged backends keep their state, the leader is never
//! dropped while it answers its probes, a failing resolver keeps the last
//! set.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/table.rs"]
mod table;

#[path = "support/dns.rs"]
mod dns;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dns::{FakeDns, Mode};
use fake::{wait_until, Fake, Proxy, Role};
use table::{backend, follower_set as followers, name_set as names};
use tokio::net::TcpListener;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Five fakes on 127.0.0.1..=5, all on one port (an A record has no port).
async fn five_fakes() -> (u16, Vec<Fake>) {
    'again: loop {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for n in 2..=5 {
            match TcpListener::bind((ip(n), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'again,
            }
        }
        let fakes = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let role = if i == 0 { Role::Leader } else { Role::Follower };
                Fake::start_on(&format!("f{}", i + 1), role, l)
            })
            .collect();
        return (port, fakes);
    }
}

fn bname(n: u8, port: u16) -> String {
    format!("127.0.0.{n}:{port}")
}

fn set(names: &[String]) -> BTreeSet<String> {
    names.iter().cloned().collect()
}

/// The TCP connections (numbered per fake) that requests to `path` came on.
fn conns(f: &Fake, path: &str) -> BTreeSet<usize> {
    f.seen()
        .iter()
        .filter(|s| s.path == path)
        .map(|s| s.conn)
        .collect()
}

/// The DNS discovery errors counted so far.
fn discovery_errors(metrics: &str) -> u64 {
    admin::counter(
        metrics,
        "leaderproxy_discovery_errors_total{source=\"dns\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_3_5_2_members_keeping_state_and_the_leader() {
    let (port, f) = five_fakes().await;
    let dns = FakeDns::start("etcd.test", vec![ip(1), ip(2), ip(3)]).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\ndebug_headers: true\n\
         discovery: {{ dns: {{ name: etcd.test, port: {port}, interval: 100ms }} }}\n\
         health: {{ path: /health, interval: 100ms, timeout: 90ms, rise: 1, fall: 3 }}\n\
         leader: {{ path: /leader, interval: 50ms, timeout: 40ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ methods: [GET, HEAD, OPTIONS], to: read }} ]\n\
         timeouts: {{ upstream_idle: 60s }}\n"
    );
    let opts = leaderproxy::discovery::Options {
        nameservers: leaderproxy::discovery::Nameservers::Fixed(vec![dns.addr]),
    };
    let p = Arc::new(Proxy::start_discovering(&yaml, opts, true).await);
    let (n1, n2, n3, n4, n5) = (
        bname(1, port),
        bname(2, port),
        bname(3, port),
        bname(4, port),
        bname(5, port),
    );

    // --- 3 members: f1 leads, f2 and f3 follow.
    p.wait_leader(Some(&n1), Duration::from_secs(5)).await;
    wait_until(Duration::from_secs(5), "two followers", || async {
        followers(&p.routing().await) == set(&[n2.clone(), n3.clone()])
    })
    .await;
    assert_eq!(
        names(&p.routing().await),
        set(&[n1.clone(), n2.clone(), n3.clone()])
    );
    assert_eq!(backend(&p.routing().await, &n2)["source"], "dns");

    // A writer runs through every change below; no write may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = fake::spawn_writer(p.clone(), stop.clone());

    for _ in 0..6 {
        assert_eq!(p.get("/r").await.status, 200);
    }
    // One slow read in flight across the changes, on follower `x`; `y`
    // (the other) shows its pooled connection surviving.
    let slow = {
        let p = p.clone();
        tokio::spawn(async move { p.get("/sleep/3000").await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let x = loop {
        let r = p.routing().await;
        if let Some(n) = [&n2, &n3]
            .into_iter()
            .find(|n| backend(&r, n)["in_flight"] == 1)
        {
            break n.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow read is in flight"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (x, y, fy) = if x == n2 {
        (n2.clone(), n3.clone(), &f[2])
    } else {
        (n3.clone(), n2.clone(), &f[1])
    };
    let before_y = conns(fy, "/r");
    assert_eq!(
        before_y.len(),
        1,
        "sequential reads share one pooled connection"
    );
    let r = p.routing().await;
    let gen = r["leader_generation"].clone();
    assert_eq!(backend(&r, &y)["idle_connections"], 1);

    // --- 5 members.
    dns.set(&[ip(1), ip(2), ip(3), ip(4), ip(5)]);
    wait_until(
        Duration::from_secs(3),
        "five backends, four followers",
        || async {
            let r = p.routing().await;
            names(&r).len() == 5 && followers(&r).len() == 4
        },
    )
    .await;
    let r = p.routing().await;
    // Unchanged backends kept their state: the leader (no new generation),
    // the in-flight read, the pooled connection.
    assert_eq!(r["leader"]["name"], n1.as_str());
    assert_eq!(r["leader_generation"], gen, "the leader never changed");
    assert_eq!(backend(&r, &x)["in_flight"], 1);
    assert_eq!(backend(&r, &y)["idle_connections"], 1);
    for _ in 0..12 {
        assert_eq!(p.get("/r").await.status, 200);
    }
    for (i, who) in [(3, &n4), (4, &n5)] {
        assert!(f[i].count() > 0, "{who} gets reads");
    }
    let after_y = conns(fy, "/r");
    assert_eq!(
        after_y, before_y,
        "{y}'s reads stay on the connection pooled before the change"
    );

    // --- 2 members, and the leader is not one of them.
    dns.set(&[ip(4), ip(5)]);
    wait_until(Duration::from_secs(3), "f2 and f3 gone", || async {
        let r = p.routing().await;
        names(&r) == set(&[n1.clone(), n4.clone(), n5.clone()])
    })
    .await;
    let r = p.routing().await;
    assert_eq!(
        r["leader"]["name"],
        n1.as_str(),
        "the leader stays while it answers"
    );
    assert_eq!(backend(&r, &n1)["retiring"], true);
    assert_eq!(followers(&r), set(&[n4.clone(), n5.clone()]));
    // Removed backends get no new requests; their in-flight ones finish.
    f[1].clear();
    f[2].clear();
    for _ in 0..10 {
        let r = p.get("/r").await;
        assert_eq!(r.status, 200);
        assert!(matches!(r.backend().as_deref(), Some(b) if b == n4 || b == n5));
    }
    assert_eq!(
        f[1].count() + f[2].count(),
        0,
        "no request to removed backends"
    );
    let done = slow.await.unwrap();
    assert_eq!(done.status, 200);
    assert_eq!(
        done.backend().as_deref(),
        Some(x.as_str()),
        "the in-flight read finished where it was"
    );
    assert!(f[0].count_method("PUT") > 0, "writes still reach f1");

    // f1 stops leading, f4 takes over: only now is f1 dropped.
    f[0].set_role(Role::Follower);
    f[3].set_role(Role::Leader);
    wait_until(Duration::from_secs(3), "f4 leads, f1 removed", || async {
        let r = p.routing().await;
        r["leader"]["name"] == n4.as_str() && names(&r) == set(&[n4.clone(), n5.clone()])
    })
    .await;

    // --- The resolver fails: the last good set stays, failures are counted.
    for mode in [Mode::Empty, Mode::ServFail] {
        dns.mode(mode);
        let errors = discovery_errors(&p.metrics().await);
        let q = dns.queries.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(5), "failed lookups counted", || async {
            discovery_errors(&p.metrics().await) >= errors + 3
        })
        .await;
        assert!(dns.queries.load(Ordering::Relaxed) > q);
        let r = p.routing().await;
        assert_eq!(
            names(&r),
            set(&[n4.clone(), n5.clone()]),
            "{mode:?}: last set kept"
        );
        assert_eq!(r["leader"]["name"], n4.as_str());
    }
    // It answers again: the set follows again.
    dns.set(&[ip(2), ip(4), ip(5)]);
    wait_until(Duration::from_secs(3), "f2 back", || async {
        names(&p.routing().await) == set(&[n2.clone(), n4.clone(), n5.clone()])
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "failed writes: {failed:?}");
    assert!(ok > 20, "the writer ran ({ok} writes)");
    let leaders: usize = f.iter().map(|x| x.count_method("PUT")).sum();
    assert_eq!(leaders, ok, "every acknowledged write reached one fake");
    println!(
        "discovery_dns: 3 -> 5 -> 2 members, leader kept until it stopped leading, {ok} writes 0 failed, dns queries {}",
        dns.queries.load(Ordering::Relaxed)
    );
}

//! `discovery.members` on a real etcd 3.4: the proxy starts knowing one
//! member and discovers all three from the member list; `etcdctl member
//! add` + a fourth etcd started, it gets reads; `etcdctl member remove`, it
//! gets none — with a writer running throughout and no failed write.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

#[path = "support/table.rs"]
mod table;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd::EtcdCluster;
use procs::{free_port, http, spawn_proxy, wait_for, Proc, ProxyProc};
use table::{follower_set, name_set};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let (ok, text) = try_etcdctl(endpoint, args);
    assert!(ok, "etcdctl {args:?}: {text}");
    text
}

fn try_etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    etcd::etcdctl(endpoint, "10s", None, args)
}

/// Backend names in the proxy's routing table, and the followers.
fn table(p: &ProxyProc) -> (BTreeSet<String>, BTreeSet<String>) {
    let r = p.routing();
    (name_set(&r), follower_set(&r))
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `n` reads through the proxy (v2 GET, served by the member that gets
/// it); the backend each one went to.
fn reads(p: &ProxyProc, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = http(
                "GET",
                &p.url("/v2/keys/disc/seed"),
                &[],
                b"",
                Duration::from_secs(5),
            )
            .expect("read through the proxy");
            assert_eq!(r.status, 200, "read: {}", r.text());
            r.header("x-leaderproxy-backend").unwrap().to_string()
        })
        .collect()
}

#[test]
fn etcd_member_list_discovery_follows_member_add_and_remove_under_writes() {
    if !procs::require_binaries("discovery_etcd", &[etcd::ETCD_BIN, etcd::ETCDCTL]) {
        return;
    }
    let cluster = EtcdCluster::start(3);
    let seed = &cluster.members[0];
    // Only n1 is known; the others are found in its member list.
    let cfg = format!(
        "debug_headers: true\n\
         backends:\n  - {{ name: {}, url: \"{}\" }}\n\
         discovery: {{ members: {{ kind: etcd, interval: 200ms }} }}\n\
         health: {{ path: /health, interval: 300ms, timeout: 250ms, rise: 1, fall: 8 }}\n\
         leader: {{ path: /v2/stats/leader, interval: 200ms, timeout: 150ms, expect: {{ status: [200] }} }}\n\
         routes:\n  - {{ methods: [GET, HEAD], to: read }}\n\
         reads: {{ fallback_to_leader: true, retry: true }}\n\
         timeouts: {{ connect: 500ms, response_headers: 10s }}\n",
        seed.name,
        seed.client_url()
    );
    let t0 = Instant::now();
    let proxy = spawn_proxy(BIN, &cfg);
    wait_for(Duration::from_secs(10), "n1, n2, n3 in the table", || {
        table(&proxy).0 == set(&["n1", "n2", "n3"])
    });
    let found_all = t0.elapsed();
    let r = proxy.routing();
    for b in r["backends"].as_array().unwrap() {
        let want = if b["name"] == "n1" {
            "static"
        } else {
            "members"
        };
        assert_eq!(b["source"], want, "{b}");
    }
    let put = http(
        "PUT",
        &proxy.url("/v2/keys/disc/seed"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"value=s",
        Duration::from_secs(5),
    )
    .unwrap();
    assert!((200..300).contains(&put.status), "{}", put.text());

    // A writer through the proxy for the rest of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (proxy.url("/v2/keys/disc/w"), stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0usize, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = http(
                    "PUT",
                    &format!("{url}{i}"),
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    format!("value={i}").as_bytes(),
                    Duration::from_secs(10),
                );
                match r {
                    Ok(r) if (200..300).contains(&r.status) => ok += 1,
                    Ok(r) => failed.push(format!("{} {}", r.status, r.text())),
                    Err(e) => failed.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failed)
        })
    };

    // Member add, then start the fourth etcd.
    let endpoint = cluster.client_url(0);
    let (client4, peer4) = (free_port(), free_port());
    // etcd refuses a reconfiguration until every member has been connected
    // for 5s ("unhealthy cluster"): try again until then.
    let add = [
        "member".to_string(),
        "add".to_string(),
        "n4".to_string(),
        format!("--peer-urls=http://127.0.0.1:{peer4}"),
    ];
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let (ok, out) = try_etcdctl(&endpoint, &add);
        if ok {
            break out;
        }
        assert!(
            out.contains("unhealthy cluster") && Instant::now() < deadline,
            "etcdctl member add: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let initial_cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {out}"))
        .trim_matches('"')
        .to_string();
    let t_add = Instant::now();
    let data = cluster.dir.join("n4.etcd");
    let args = etcd::member_args(
        "n4",
        &data,
        &format!("http://127.0.0.1:{client4}"),
        peer4,
        &initial_cluster,
        "existing",
    );
    let mut n4 = Proc::spawn("n4", etcd::ETCD_BIN, &args, cluster.dir.path());
    wait_for(
        Duration::from_secs(20),
        "n4 discovered and a follower",
        || table(&proxy).1.contains("n4"),
    );
    let n4_follower_after = t_add.elapsed();
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(5), "a read served by n4", || {
        seen = reads(&proxy, 8);
        seen.iter().any(|b| b == "n4")
    });
    let n4_reads = seen.iter().filter(|b| *b == "n4").count();

    // Member remove: n4 leaves the member list, then the table.
    let list = etcdctl(&endpoint, &["member", "list"]);
    let id = list
        .lines()
        .find(|l| l.split(", ").nth(2) == Some("n4"))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("n4 not in {list}"))
        .to_string();
    let t_remove = Instant::now();
    etcdctl(&endpoint, &["member", "remove", &id]);
    wait_for(Duration::from_secs(10), "n4 out of the table", || {
        !table(&proxy).0.contains("n4")
    });
    let n4_gone_after = t_remove.elapsed();
    let after = reads(&proxy, 30);
    assert!(
        after.iter().all(|b| b != "n4"),
        "reads after member remove: {after:?}"
    );
    assert_eq!(table(&proxy).0, set(&["n1", "n2", "n3"]));

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = writer.join().unwrap();
    n4.kill();
    assert!(failed.is_empty(), "failed writes: {failed:?}");
    assert!(ok > 50, "the writer ran ({ok} writes)");
    let errors = proxy.metric_sum(
        "leaderproxy_discovery_errors_total",
        &[("source", "members")],
    );
    println!(
        "discovery_etcd: knew n1, all of n1..n3 in the table {} ms after the proxy started; member add n4 -> follower in the table after {} ms, {n4_reads}/8 reads on n4; member remove -> out of the table after {} ms, 0/30 reads on n4; writer {ok} writes, 0 failed; member-list errors {errors}",
        found_all.as_millis(),
        n4_follower_after.as_millis(),
        n4_gone_after.as_millis(),
    );
}

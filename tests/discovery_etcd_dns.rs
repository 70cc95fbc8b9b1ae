//! `discovery.dns` and `discovery.members` together on a real etcd 3.4,
//! both naming the same members: the in-process DNS server
//! (`support/dns.rs`) answers SRV records `127.0.0.1:<client port>` of each
//! member, and etcd's member list gives the same addresses with the
//! members' names. Each member must be one backend, named by its etcd
//! name (the member list renames what DNS found first, in place), and a
//! writer through the proxy must see no failed write (before backends were
//! identified by address, the leader found by DNS stayed as a second
//! claimant: 503 `split_brain` until a reload).

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

#[path = "support/fake.rs"]
mod fake;

#[path = "support/dns.rs"]
mod dns;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dns::{FakeDns, Srv};
use etcd::EtcdCluster;
use fake::{wait_until, Proxy};
use http_body_util::Full;

const SRV: &str = "_etcd-client._tcp.etcd.test";

/// Every backend in the table as (name, url, source), duplicates kept.
fn backends(r: &serde_json::Value) -> Vec<(String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut v: Vec<_> = r["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (s(&b["name"]), s(&b["url"]), s(&b["source"])))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_member_list_naming_the_same_members_make_one_backend_each() {
    if !procs::require_binaries("discovery_etcd_dns", &[etcd::ETCD_BIN]) {
        return;
    }
    let cluster = tokio::task::block_in_place(|| EtcdCluster::start(3));
    let records: Vec<Srv> = cluster
        .members
        .iter()
        .map(|m| Srv {
            target: "127.0.0.1".to_string(),
            port: m.client_port,
        })
        .collect();
    let dns = FakeDns::start_srv(SRV, records).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nworkers: 1\ndebug_headers: true\n\
         discovery: {{ dns: {{ srv: {SRV}, interval: 200ms }}, members: {{ kind: etcd, interval: 200ms }} }}\n\
         health: {{ path: /health, interval: 300ms, timeout: 250ms, rise: 1, fall: 8 }}\n\
         leader: {{ path: /v2/stats/leader, interval: 200ms, timeout: 150ms, expect: {{ status: [200] }} }}\n\
         routes: [ {{ methods: [GET, HEAD], to: read }} ]\n\
         reads: {{ fallback_to_leader: true, retry: true }}\n\
         timeouts: {{ connect: 500ms, response_headers: 10s }}\n"
    );
    let opts = leaderproxy::discovery::Options {
        nameservers: leaderproxy::discovery::Nameservers::Fixed(vec![dns.addr]),
    };
    let t0 = Instant::now();
    let p = Arc::new(Proxy::start_discovering(&yaml, opts, true).await);

    // A writer from the first ready table on: DNS names the members first,
    // the member list renames them while it runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = fake::spawn_writer_with(
        p.clone(),
        stop.clone(),
        |i, addr| {
            http::Request::put(format!("http://{addr}/v2/keys/disc/w{i}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(format!("value={i}"))))
                .unwrap()
        },
        |status| (200..300).contains(&status),
    );

    let want: Vec<(String, String, String)> = {
        let mut v: Vec<_> = cluster
            .members
            .iter()
            .map(|m| (m.name.clone(), m.client_url(), "members".to_string()))
            .collect();
        v.sort();
        v
    };
    wait_until(
        Duration::from_secs(15),
        "n1, n2, n3 once each, named by etcd",
        || async { backends(&p.routing().await) == want },
    )
    .await;
    let named_after = t0.elapsed();
    // The table stays so (and the writer keeps writing) for longer than
    // remove_after answers of both sources.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        let r = p.routing().await;
        assert_eq!(backends(&r), want, "still once each: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = p.routing().await;
    assert!(r["split_brain"].is_null(), "{r}");
    let leader = tokio::task::block_in_place(|| cluster.leader()).expect("etcd has a leader");
    assert_eq!(r["leader"]["name"], cluster.members[leader].name.as_str());

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = writer.await.unwrap();
    assert!(failed.is_empty(), "failed writes: {failed:?}");
    assert!(ok > 20, "the writer ran ({ok} writes)");
    println!(
        "discovery_etcd_dns: DNS SRV + etcd member list naming the same 3 members: one backend each, named by etcd, {} ms after the proxy started; writer {ok} writes, 0 failed; dns queries {}",
        named_after.as_millis(),
        dns.queries(),
    );
}

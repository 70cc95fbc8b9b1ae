//! gRPC through the proxy to a real etcd: `etcdctl` (the v3 gRPC client)
//! talks h2c to leaderproxy, which forwards over h2c to the members: Put to
//! the leader, Range to the followers, and the values round-trip.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/etcd.rs"]
mod etcd;

use std::time::Duration;

use etcd::EtcdCluster;
use procs::spawn_proxy;

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");

fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    etcd::etcdctl(endpoint, "5s", None, args)
}

#[test]
fn etcdctl_put_and_get_through_the_proxy_over_grpc() {
    if !procs::require_binaries("real_etcd_grpc", &[etcd::ETCD_BIN, etcd::ETCDCTL]) {
        return;
    }
    let cluster = EtcdCluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let backends = cluster.backends_yaml_with(", h2c: true");
    let cfg = format!(
        "{backends}\
         health: {{ path: /health, interval: 500ms, timeout: 400ms, rise: 1, fall: 8 }}\n\
         leader: {{ path: /v2/stats/leader, interval: 200ms, timeout: 150ms, expect: {{ status: [200] }} }}\n\
         routes:\n  - {{ path_prefix: /etcdserverpb.KV/Range, to: read }}\n  - {{ methods: [GET, HEAD], to: read }}\n\
         reads: {{ fallback_to_leader: true }}\n"
    );
    let proxy = spawn_proxy(BIN, &cfg);
    let endpoint = format!("http://{}", proxy.listen);
    let metric = |backend: &str, role: &str| -> u64 {
        proxy.metric_sum(
            "leaderproxy_requests_total",
            &[("backend", backend), ("role", role)],
        ) as u64
    };
    let leader_name = cluster.members[leader].name.clone();
    for i in 0..5 {
        let (ok, out) = etcdctl(
            &endpoint,
            &["put", &format!("grpc-key-{i}"), &format!("value-{i}")],
        );
        assert!(
            ok,
            "etcdctl put through the proxy failed: {out}\nproxy log:\n{}",
            proxy.proc.log_tail(30)
        );
        assert!(out.contains("OK"), "{out}");
    }
    assert_eq!(
        metric(&leader_name, "write"),
        5,
        "every Put went to the leader"
    );
    for i in 0..5 {
        let (ok, out) = etcdctl(
            &endpoint,
            &["get", &format!("grpc-key-{i}"), "--print-value-only"],
        );
        assert!(ok, "etcdctl get failed: {out}");
        assert_eq!(out.trim(), format!("value-{i}"));
    }
    let follower_reads: u64 = cluster
        .members
        .iter()
        .filter(|m| m.name != leader_name)
        .map(|m| metric(&m.name, "read"))
        .sum();
    assert_eq!(follower_reads, 5, "every Range went to a follower");
    // Direct check on a member: the values are really stored.
    assert_eq!(
        cluster.v3_get(leader, "grpc-key-3").as_deref(),
        Some("value-3")
    );
}

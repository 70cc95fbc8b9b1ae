//! The shipped webdis not-leader matcher against a real Redis primary + 2
//! replicas + 3 Sentinels with a webdis in front of each Redis node: a
//! successful write whose *value* looks like a refusal is delivered once and
//! never re-sent.
//!
//! Needs `/usr/bin/redis-server`, `/usr/bin/redis-sentinel`, `/usr/bin/webdis`;
//! `bash tests/run.sh` installs them. `LEADERPROXY_SKIP_REAL=1` skips the test.
//!
//! The proxy runs `config/redis-webdis.yaml` itself, parsed as YAML, with only
//! `listen`, `admin` and `backends` replaced (and `debug_headers` added), so a
//! change to the shipped health, leader, routes or `writes.not_leader` rules
//! is what this test checks.
//!
//! Asserted:
//! 1. The rule is not vacuous: a write sent straight to a replica's webdis
//!    (`GET /LPOP/k`) answers a refusal that the shipped `writes.not_leader`
//!    rules match (status and body), and the replica popped nothing.
//! 2. A success is never a refusal: with the list `k` = [`"READONLY x"`,
//!    `"y"`] on the primary (built with RESP, not through the proxy), one
//!    `GET /LPOP/k` through the proxy (a write by the shipped routes) answers
//!    the client `{"LPOP":"READONLY x"}` from the primary, and afterwards
//!    `LRANGE k 0 -1` on the primary is exactly `["y"]`: the LPOP was applied
//!    once (re-sending it would have popped `"y"` as well). The proxy counts
//!    no re-sent write.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

use std::time::Duration;

use procs::{http, spawn_proxy, wait_for, HttpResponse};
use redis::{redis_cmd, RedisCluster, Resp};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const KEY: &str = "lp-matcher-list";
const SUCCESS: &str = r#"{"LPOP":"READONLY x"}"#;

/// The shipped `writes.not_leader` as the proxy will read it: refusal
/// statuses and status-scoped body rules.
struct NotLeader {
    status: Vec<u16>,
    body: Vec<(Vec<u16>, regex::Regex)>,
}

impl NotLeader {
    fn from_config(yaml: &str) -> NotLeader {
        let cfg: serde_yaml::Value = serde_yaml::from_str(yaml).expect("config YAML");
        let nl = &cfg["writes"]["not_leader"];
        let statuses = |v: &serde_yaml::Value| -> Vec<u16> {
            v.as_sequence()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as u16)
                        .collect()
                })
                .unwrap_or_default()
        };
        let body: Vec<(Vec<u16>, regex::Regex)> = nl["body"]
            .as_sequence()
            .expect("the shipped config has writes.not_leader.body rules")
            .iter()
            .map(|r| {
                let re = r["regex"].as_str().expect("body rule has a regex");
                (
                    statuses(&r["status"]),
                    regex::Regex::new(re).expect("body rule regex"),
                )
            })
            .collect();
        NotLeader {
            status: statuses(&nl["status"]),
            body,
        }
    }

    /// Would the proxy take this answer for "not the leader"?
    fn refuses(&self, status: u16, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        self.status.contains(&status)
            || self
                .body
                .iter()
                .any(|(st, re)| st.contains(&status) && re.is_match(&text))
    }
}

fn show(r: &HttpResponse) -> String {
    format!("{} {:?} headers={:?}", r.status, r.text(), r.headers)
}

#[test]
fn shipped_webdis_matcher_never_resends_a_success() {
    if !procs::require_binaries("real_redis_matcher", &redis::BINARIES) {
        return;
    }
    let cluster = RedisCluster::start();
    let yaml = cluster.shipped_proxy_yaml("debug_headers: true\n");
    let rule = NotLeader::from_config(&yaml);
    let proxy = spawn_proxy(BIN, &yaml);
    let master = cluster.master().expect("a master");
    let names = cluster.names();
    proxy.wait_leader(&names[master], Duration::from_secs(10));

    // ---- k = ["READONLY x", "y"] on the primary, straight through RESP --------------
    let port = cluster.nodes[master].redis_port;
    redis_cmd(port, &["DEL", KEY]).expect("DEL on the primary");
    assert_eq!(
        redis_cmd(port, &["RPUSH", KEY, "READONLY x", "y"]).expect("RPUSH on the primary"),
        Resp::Int(2)
    );
    let expected = vec!["READONLY x".to_string(), "y".to_string()];
    assert_eq!(cluster.lrange(master, KEY).unwrap(), expected);

    // ---- 1. the rule matches a real refusal ------------------------------------------
    let replicas: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != master).collect();
    for &i in &replicas {
        wait_for(
            Duration::from_secs(5),
            &format!("replica {} has the list", names[i]),
            || cluster.lrange(i, KEY).ok().as_ref() == Some(&expected),
        );
        let url = format!("{}/LPOP/{KEY}", cluster.nodes[i].webdis_url());
        let r = http("GET", &url, &[], b"", Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        println!(
            "real_redis_matcher: write to replica {}: {}",
            names[i],
            show(&r)
        );
        assert!(
            rule.refuses(r.status, &r.body),
            "the shipped writes.not_leader rules do not match replica {}'s refusal of a write: {}",
            names[i],
            show(&r)
        );
        assert!(
            r.text().contains("READONLY"),
            "replica {} did not refuse the write: {}",
            names[i],
            show(&r)
        );
    }
    assert_eq!(
        cluster.lrange(master, KEY).unwrap(),
        expected,
        "a replica's refusal changed the list"
    );

    // ---- 2. one LPOP through the proxy ------------------------------------------------
    let resent_before = proxy.metric_sum("leaderproxy_writes_resent_total", &[]);
    let r = http(
        "GET",
        &proxy.url(&format!("/LPOP/{KEY}")),
        &[],
        b"",
        Duration::from_secs(10),
    )
    .expect("LPOP through the proxy");
    println!("real_redis_matcher: LPOP through the proxy: {}", show(&r));
    let resent = proxy.metric_sum("leaderproxy_writes_resent_total", &[]) - resent_before;
    let after = cluster.lrange(master, KEY).expect("LRANGE on the primary");
    println!(
        "real_redis_matcher: LRANGE {KEY} on the primary {} after: {after:?}; proxy writes_resent={resent}",
        names[master]
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, SUCCESS),
        "the client did not get the LPOP's answer: {}\nproxy log:\n{}",
        show(&r),
        proxy.log_tail(30)
    );
    assert_eq!(
        r.header("x-leaderproxy-role"),
        Some("write"),
        "{}",
        show(&r)
    );
    assert_eq!(
        r.header("x-leaderproxy-backend"),
        Some(names[master].as_str()),
        "{}",
        show(&r)
    );
    assert_eq!(
        after,
        vec!["y".to_string()],
        "the LPOP was not applied exactly once\nproxy log:\n{}",
        proxy.log_tail(30)
    );
    assert_eq!(resent, 0.0, "the proxy re-sent a write");
    assert!(
        !rule.refuses(200, SUCCESS.as_bytes()),
        "the shipped writes.not_leader rules match the success {SUCCESS}"
    );
}

use std::path::Path;

use super::members::{self, parse_consul, parse_etcd, parse_patroni, parse_rqlite};
use super::*;
use crate::config::MembersKind;
use crate::config::{parse, Config};
use crate::health::membership::tests::{ip, named, names};
use crate::health::membership::{desired, Wanted};

fn cfg(extra: &str) -> Config {
    let text =
        format!("listen: 127.0.0.1:1\nleader: {{path: /l, expect: {{status: [200]}}}}\n{extra}");
    parse(&text, Path::new("lp.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn etcd_member_list_skips_unstarted_members_and_learners() {
    // As etcd 3.4's JSON gateway answers after `member add m3` (m3 not yet
    // started: no name, no client URLs) with a learner m4.
    let body = br#"{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},"members":[
        {"ID":"11","name":"m0","peerURLs":["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},
        {"ID":"12","name":"m1","peerURLs":["http://127.0.0.1:2381"],"clientURLs":["http://127.0.0.1:22379","http://10.0.0.1:22379"]},
        {"ID":"13","peerURLs":["http://127.0.0.1:2382"]},
        {"ID":"14","name":"m4","peerURLs":["http://127.0.0.1:2383"],"clientURLs":["http://127.0.0.1:42379"],"isLearner":true}
    ]}"#;
    assert_eq!(
        parse_etcd(body).unwrap(),
        vec![
            named("m0", "127.0.0.1", 2379),
            named("m1", "127.0.0.1", 22379)
        ]
    );
    assert_eq!(
        parse_etcd(br#"{"members":[{"ID":"13"}]}"#).unwrap_err(),
        "member list names no started member"
    );
    assert_eq!(
        parse_etcd(b"{}").unwrap_err(),
        "member list has no \"members\" array"
    );
    assert!(parse_etcd(b"<html>")
        .unwrap_err()
        .starts_with("member list is not JSON: "));
}

/// The member that answered: 10.0.0.9:8500 over http.
fn asked() -> Found {
    ip("10.0.0.9", 8500)
}

#[test]
fn patroni_cluster_members_are_their_rest_api_named_by_member_name() {
    // `GET /cluster` as in Patroni's REST API docs (3.x): `host`/`port` is
    // PostgreSQL, `api_url` the REST API.
    let body = br#"{
      "members": [
        {"name": "patroni1", "role": "replica", "state": "streaming",
         "api_url": "http://10.89.0.6:8008/patroni", "host": "10.89.0.6", "port": 5432,
         "timeline": 5, "tags": {"clonefrom": true}, "lag": 0},
        {"name": "patroni2", "role": "leader", "state": "running",
         "api_url": "https://10.89.0.2:8443/patroni", "host": "10.89.0.2", "port": 5432,
         "timeline": 5, "tags": {"clonefrom": true}},
        {"name": "patroni3", "role": "replica", "state": "stopped",
         "host": "10.89.0.4", "port": 5432, "timeline": 5, "lag": "unknown"},
        {"role": "replica", "state": "starting"}
      ],
      "scope": "batman",
      "scheduled_switchover": {"at": "2023-09-24T10:36:00+02:00", "from": "patroni2"}
    }"#;
    assert_eq!(
        members::parse(MembersKind::Patroni, body, &asked()).unwrap(),
        vec![
            named("patroni1", "10.89.0.6", 8008),
            Found {
                https: true,
                ..named("patroni2", "10.89.0.2", 8443)
            },
            // No api_url: its host, the answering member's scheme and port
            // (5432 is PostgreSQL).
            named("patroni3", "10.89.0.4", 8500),
        ]
    );
    assert_eq!(
        parse_patroni(br#"{"members": [], "scope": "batman"}"#, &asked()).unwrap_err(),
        "member list names no started member"
    );
    assert_eq!(
        parse_patroni(br#"{"scope": "batman"}"#, &asked()).unwrap_err(),
        "member list has no \"members\" array"
    );
    assert!(parse_patroni(
        br#"{"members":[{"name":"a","api_url":"ftp://h:1"}]}"#,
        &asked()
    )
    .unwrap_err()
    .contains("is not http:// or https://"));
}

#[test]
fn rqlite_nodes_in_both_shapes_are_their_api_addr_named_by_node_id() {
    // rqlite 7/8 `GET /nodes`: an object keyed by node id (by default the
    // raft address); an unreachable node has an empty api_addr.
    let v1 = br#"{
      "localhost:4002": {"api_addr": "http://localhost:4001", "addr": "localhost:4002",
                         "reachable": true, "leader": true, "time": 0.000061278},
      "node2": {"api_addr": "http://10.0.0.2:4001", "addr": "10.0.0.2:4002",
                "reachable": true, "leader": false, "time": 0.000331016},
      "node3": {"api_addr": "", "addr": "10.0.0.3:4002", "reachable": false,
                "leader": false, "error": "pool get: dial tcp 10.0.0.3:4002: connect: connection refused"}
    }"#;
    let want = vec![
        named("localhost:4002", "localhost", 4001),
        named("node2", "10.0.0.2", 4001),
    ];
    assert_eq!(
        members::parse(MembersKind::Rqlite, v1, &asked()).unwrap(),
        want
    );
    // `GET /nodes?ver=2` (rqlite 8.x, the default of 9): a list with ids.
    let v2 = br#"{"nodes": [
      {"id": "localhost:4002", "api_addr": "http://localhost:4001", "addr": "localhost:4002",
       "voter": true, "reachable": true, "leader": true, "time": 0.000061278, "version": "v8.36.5"},
      {"id": "node2", "api_addr": "http://10.0.0.2:4001", "addr": "10.0.0.2:4002",
       "voter": true, "reachable": true, "leader": false, "time": 0.000331016},
      {"id": "node3", "api_addr": "", "addr": "10.0.0.3:4002", "voter": true,
       "reachable": false, "leader": false, "error": "timeout"}
    ]}"#;
    assert_eq!(parse_rqlite(v2).unwrap(), want);
    // A bare list, and https.
    assert_eq!(
        parse_rqlite(br#"[{"id":"n1","api_addr":"https://10.0.0.1:4001","addr":"10.0.0.1:4002"}]"#)
            .unwrap(),
        vec![Found {
            https: true,
            ..named("n1", "10.0.0.1", 4001)
        }]
    );
    assert_eq!(
        parse_rqlite(br#"{"nodes": []}"#).unwrap_err(),
        "member list names no started member"
    );
    assert_eq!(
        parse_rqlite(b"42").unwrap_err(),
        "node list is neither an object nor a list"
    );
}

#[test]
fn consul_raft_peers_keep_their_host_and_take_the_http_port_of_the_server_asked() {
    // `GET /v1/status/peers` as in Consul's API docs: raft (server RPC)
    // addresses on 8300.
    let body = br#"["10.1.10.12:8300","10.1.10.11:8300","10.1.10.10:8300"]"#;
    assert_eq!(
        members::parse(MembersKind::Consul, body, &asked()).unwrap(),
        vec![
            ip("10.1.10.10", 8500),
            ip("10.1.10.11", 8500),
            ip("10.1.10.12", 8500),
        ]
    );
    // The asked server's scheme too; IPv6 and names.
    let tls = Found {
        https: true,
        ..ip("consul-0.consul", 8501)
    };
    assert_eq!(
        parse_consul(br#"["[fd00::2]:8300","consul-1.consul:8300"]"#, &tls).unwrap(),
        vec![
            Found {
                https: true,
                ..ip("consul-1.consul", 8501)
            },
            Found {
                https: true,
                ..ip("fd00::2", 8501)
            },
        ]
    );
    // Named host:port, so the set holds them by address.
    let c = cfg("backends: [{name: seed, url: 'http://10.1.10.10:8500'}]\ndiscovery: {members: {kind: consul}}\n");
    let found = parse_consul(body, &ip("10.1.10.10", 8500)).unwrap();
    let Wanted {
        backends: set,
        problems,
        ..
    } = desired(&c.backends, &[Some(found), None], &c.discovery);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        names(&set),
        vec![
            ("seed", "http://10.1.10.10:8500"),
            ("10.1.10.11:8500", "http://10.1.10.11:8500"),
            ("10.1.10.12:8500", "http://10.1.10.12:8500"),
        ]
    );
    assert_eq!(
        parse_consul(b"[]", &asked()).unwrap_err(),
        "member list names no started member"
    );
    assert_eq!(
        parse_consul(br#"["10.1.10.12"]"#, &asked()).unwrap_err(),
        "peer \"10.1.10.12\" is not host:port"
    );
    assert!(parse_consul(br#"{"peers":[]}"#, &asked())
        .unwrap_err()
        .starts_with("peer list is not a JSON list of strings: "));
}

#[test]
fn jitter_stays_within_ten_percent() {
    let mut seed = 7;
    for _ in 0..1000 {
        let d = jittered(Duration::from_secs(10), &mut seed);
        assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
    }
}

#[test]
fn a_loop_logs_only_a_changed_set_or_settings() {
    let set = vec![ip("10.0.0.1", 2379)];
    let none: Sent<u8> = None;
    assert!(changed(&none, &1, &set), "first answer");
    let sent: Sent<u8> = Some((1, set.clone()));
    assert!(!changed(&sent, &1, &set), "the same answer");
    assert!(changed(&sent, &2, &set), "new settings");
    assert!(changed(&sent, &1, &[]), "new set");
}

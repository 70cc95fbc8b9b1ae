use std::path::Path;

use super::members::parse_etcd;
use super::*;
use crate::config::{parse, Config};

fn cfg(extra: &str) -> Config {
    let text =
        format!("listen: 127.0.0.1:1\nleader: {{path: /l, expect: {{status: [200]}}}}\n{extra}");
    parse(&text, Path::new("lp.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(host: &str, port: u16) -> Found {
    Found {
        name: None,
        host: host.to_string(),
        port,
        https: false,
    }
}

fn named(name: &str, host: &str, port: u16) -> Found {
    Found {
        name: Some(name.to_string()),
        ..ip(host, port)
    }
}

fn names(v: &[BackendConfig]) -> Vec<(&str, &str)> {
    v.iter()
        .map(|b| (b.name.as_str(), b.url.as_str()))
        .collect()
}

#[test]
fn dns_addresses_become_host_port_backends_beside_the_static_ones() {
    let c = cfg("backends: [{name: seed, url: 'http://10.0.0.1:2379'}]\ndiscovery: {dns: {name: etcd.example, port: 2379}}\n");
    let dns = vec![
        ip("10.0.0.1", 2379), // the seed's address: not twice
        ip("10.0.0.2", 2379),
        ip("fd00::3", 2379),
    ];
    let (set, problems) = desired(&c.backends, &[None, Some(dns)], &c.discovery);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        names(&set),
        vec![
            ("seed", "http://10.0.0.1:2379"),
            ("10.0.0.2:2379", "http://10.0.0.2:2379"),
            ("[fd00::3]:2379", "http://[fd00::3]:2379"),
        ]
    );
    assert_eq!(set[2].authority.as_str(), "[fd00::3]:2379");
}

#[test]
fn members_are_named_by_member_name_and_win_over_dns_for_the_same_address() {
    let c = cfg("discovery: {dns: {name: etcd.example, port: 2379}, members: {kind: etcd}}\n");
    let members = vec![
        named("etcd-0", "10.0.0.1", 2379),
        named("etcd-1", "10.0.0.2", 2379),
    ];
    let dns = vec![ip("10.0.0.1", 2379), ip("10.0.0.3", 2379)];
    let (set, _) = desired(&c.backends, &[Some(members), Some(dns)], &c.discovery);
    assert_eq!(
        names(&set),
        vec![
            ("etcd-0", "http://10.0.0.1:2379"),
            ("etcd-1", "http://10.0.0.2:2379"),
            ("10.0.0.3:2379", "http://10.0.0.3:2379"),
        ]
    );
}

#[test]
fn a_taken_or_invalid_member_name_falls_back_to_host_port() {
    let c = cfg(
        "backends: [{name: m1, url: 'http://10.0.0.1:1'}]\ndiscovery: {members: {kind: etcd}}\n",
    );
    let members = vec![
        named("m1", "10.0.0.9", 2379),        // a static backend has that name
        named("bad name!", "10.0.0.8", 2379), // not a valid backend name
    ];
    let (set, _) = desired(&c.backends, &[Some(members), None], &c.discovery);
    assert_eq!(
        names(&set),
        vec![
            ("m1", "http://10.0.0.1:1"),
            ("10.0.0.9:2379", "http://10.0.0.9:2379"),
            ("10.0.0.8:2379", "http://10.0.0.8:2379"),
        ]
    );
}

#[test]
fn https_finds_need_upstream_tls_and_use_their_own_host_as_server_name() {
    let c = cfg(
        "backends: [{name: s, url: 'http://10.0.0.1:1'}]\ndiscovery: {members: {kind: etcd}}\n",
    );
    let f = Found {
        https: true,
        ..named("m2", "etcd-2.example", 2379)
    };
    let (set, problems) = desired(&c.backends, &[Some(vec![f.clone()]), None], &c.discovery);
    assert_eq!(set.len(), 1);
    assert_eq!(
        problems,
        vec!["https://etcd-2.example:2379: set upstream_tls to talk TLS to discovered members"]
    );
    let c = cfg("discovery: {dns: {srv: _etcd-client-ssl._tcp.example, scheme: https}}\n");
    let (set, problems) = desired(&c.backends, &[None, Some(vec![f])], &c.discovery);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(set[0].url, "https://etcd-2.example:2379");
    let tls = set[0].tls.as_ref().expect("TLS");
    assert_eq!(
        format!("{:?}", tls.server_name),
        format!(
            "{:?}",
            crate::upstream::tls::server_name("etcd-2.example").unwrap()
        )
    );
}

#[test]
fn a_source_that_is_off_adds_nothing() {
    let c = cfg("backends: [{name: s, url: 'http://10.0.0.1:1'}]\n");
    let (set, _) = desired(&c.backends, &[None, None], &c.discovery);
    assert_eq!(names(&set), vec![("s", "http://10.0.0.1:1")]);
}

#[test]
fn client_urls_parse() {
    assert_eq!(
        Found::from_url(Some("a".into()), "http://127.0.0.1:2379").unwrap(),
        named("a", "127.0.0.1", 2379)
    );
    assert_eq!(
        Found::from_url(None, "https://[::1]:2379/").unwrap(),
        Found {
            https: true,
            ..ip("::1", 2379)
        }
    );
    assert_eq!(Found::from_url(None, "http://h").unwrap().port, 80);
    assert_eq!(
        Found::from_url(None, "ftp://h:21").unwrap_err(),
        "URL \"ftp://h:21\" is not http:// or https://"
    );
    assert_eq!(
        Found::from_url(None, "unix:///x").unwrap_err(),
        "invalid URL \"unix:///x\": invalid format"
    );
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

#[test]
fn jitter_stays_within_ten_percent() {
    let mut seed = 7;
    for _ in 0..1000 {
        let d = jittered(Duration::from_secs(10), &mut seed);
        assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
    }
}

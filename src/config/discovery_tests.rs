//! `discovery`: its keys, defaults and error locations.

use std::path::Path;
use std::time::Duration;

use super::tests::errs;
use super::*;

const DISC_BASE: &str = "listen: 127.0.0.1:1\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn discovery_keys_and_defaults() {
    // Discovery instead of backends: DNS alone is enough.
    let c = parse(
        &format!(
            "{DISC_BASE}discovery:\n  dns: {{ name: etcd.db.svc.cluster.local, port: 2379 }}\n"
        ),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert!(c.backends.is_empty());
    assert_eq!(
        c.discovery.dns,
        Some(DnsDiscovery {
            lookup: DnsLookup::Addresses {
                name: "etcd.db.svc.cluster.local".into(),
                port: 2379
            },
            scheme: Scheme::Http,
            interval: Duration::from_secs(10),
        })
    );
    assert!(c.discovery.members.is_none() && c.discovery.tls.is_none());
    assert_eq!(
        (c.discovery.max_backends, c.discovery.remove_after),
        (64, 3),
        "defaults"
    );
    let c = parse(
        &format!("{DISC_BASE}discovery: {{ dns: {{ name: a.example, port: 1 }}, max_backends: 5, remove_after: 1 }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!((c.discovery.max_backends, c.discovery.remove_after), (5, 1));
    // The keys, verbatim, beside a static seed.
    let c = parse(
        &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery:\n  dns: {{ name: etcd.db.svc.cluster.local, port: 2379, scheme: http, interval: 10s }}\n  members: {{ kind: etcd, interval: 10s }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(c.backends.len(), 1);
    assert_eq!(
        c.discovery.members,
        Some(MembersDiscovery {
            kind: MembersKind::Etcd,
            interval: Duration::from_secs(10)
        })
    );
    // SRV, https (TLS from upstream_tls, here the system roots), own interval.
    let c = parse(
        &format!("{DISC_BASE}discovery: {{ dns: {{ srv: _etcd-client-ssl._tcp.example.com, scheme: https, interval: 2s }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    let d = c.discovery.dns.unwrap();
    assert_eq!(
        d.lookup,
        DnsLookup::Srv {
            name: "_etcd-client-ssl._tcp.example.com".into()
        }
    );
    assert_eq!(
        (d.scheme, d.interval),
        (Scheme::Https, Duration::from_secs(2))
    );
    assert!(c.discovery.tls.is_some());
    // Members alone cannot start: someone must be asked first.
    let c = parse(
        &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery: {{ members: {{ kind: etcd }} }}\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.discovery.members.unwrap().interval,
        Duration::from_secs(10)
    );
    for (kind, want) in [
        ("patroni", MembersKind::Patroni),
        ("rqlite", MembersKind::Rqlite),
        ("consul", MembersKind::Consul),
    ] {
        let c = parse(
            &format!("{DISC_BASE}backends: [{{name: seed, url: 'http://127.0.0.1:2'}}]\ndiscovery: {{ members: {{ kind: {kind}, interval: 2s }} }}\n"),
            Path::new("lp.yaml"),
        )
        .unwrap();
        assert_eq!(
            c.discovery.members,
            Some(MembersDiscovery {
                kind: want,
                interval: Duration::from_secs(2)
            })
        );
    }
}

#[test]
fn discovery_errors_name_file_line_column() {
    let e = |extra: &str| errs(&format!("{DISC_BASE}{extra}"));
    assert_eq!(
        e("discovery: { members: { kind: etcd } }\n"),
        vec!["lp.yaml:3:14: discovery.members: asks the known members for the member list: give at least one of them in backends, or discovery.dns to find them"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, srv: _x._tcp.example, port: 1 }\n"),
        vec!["lp.yaml:4:3: discovery.dns: give exactly one of name (A/AAAA records, with port) and srv (SRV records)"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1 }\n  max_backends: 0\n  remove_after: 10001\n"),
        vec![
            "lp.yaml:5:3: discovery.max_backends: must be from 1 to 10000",
            "lp.yaml:6:3: discovery.remove_after: must be from 1 to 10000",
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example }\n"),
        vec!["lp.yaml:4:3: discovery.dns: port is needed with name: the port every address serves on (e.g. 2379)"]
    );
    assert_eq!(
        e("discovery:\n  dns:\n    srv: _etcd._tcp.example\n    port: 2379\n    interval: 0s\n"),
        vec![
            "lp.yaml:7:5: discovery.dns.interval: must be more than 0",
            "lp.yaml:6:5: discovery.dns.port: not with srv: the SRV records give each target's port",
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: 'bad name', port: 0 }\n"),
        vec![
            "lp.yaml:4:28: discovery.dns.port: must be more than 0",
            "lp.yaml:4:10: discovery.dns.name: invalid DNS name \"bad name\"",
        ]
    );
    assert_eq!(
        e("backends: [{name: s, url: 'http://127.0.0.1:2'}]\ndiscovery:\n  members: { kind: etcd, interval: 0s }\n"),
        vec!["lp.yaml:5:26: discovery.members.interval: must be more than 0"]
    );
    // Parse errors come from serde_yaml, with the key path.
    assert_eq!(
        e("backends: [{name: s, url: 'http://127.0.0.1:2'}]\ndiscovery:\n  members: { kind: zookeeper }\n"),
        vec!["lp.yaml:5:20: discovery.members.kind: unknown variant `zookeeper`, expected one of `etcd`, `patroni`, `rqlite`, `consul`"]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1, scheme: ftp }\n"),
        vec![
            "lp.yaml:4:44: discovery.dns.scheme: unknown variant `ftp`, expected `http` or `https`"
        ]
    );
    assert_eq!(
        e("discovery:\n  dns: { name: a.example, port: 1, servers: [1.1.1.1] }\n"),
        vec!["lp.yaml:4:36: discovery.dns: unknown field `servers`, expected one of `name`, `srv`, `port`, `scheme`, `interval`"]
    );
}

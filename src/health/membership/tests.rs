use std::path::Path;

use super::*;
use crate::config::{parse, Config};

fn cfg(extra: &str) -> Config {
    let text =
        format!("listen: 127.0.0.1:1\nleader: {{path: /l, expect: {{status: [200]}}}}\n{extra}");
    parse(&text, Path::new("lp.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn ip(host: &str, port: u16) -> Found {
    Found {
        name: None,
        host: host.to_string(),
        port,
        https: false,
    }
}

pub(crate) fn named(name: &str, host: &str, port: u16) -> Found {
    Found {
        name: Some(name.to_string()),
        ..ip(host, port)
    }
}

pub(crate) fn names(v: &[BackendConfig]) -> Vec<(&str, &str)> {
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
    let Wanted {
        backends: set,
        problems,
        ..
    } = desired(&c.backends, &[None, Some(dns)], &c.discovery);
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
    let Wanted { backends: set, .. } =
        desired(&c.backends, &[Some(members), Some(dns)], &c.discovery);
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
    let Wanted { backends: set, .. } = desired(&c.backends, &[Some(members), None], &c.discovery);
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
    let Wanted {
        backends: set,
        problems,
        ..
    } = desired(&c.backends, &[Some(vec![f.clone()]), None], &c.discovery);
    assert_eq!(set.len(), 1);
    assert_eq!(
        problems,
        vec!["https://etcd-2.example:2379: set upstream_tls to talk TLS to discovered members"]
    );
    let c = cfg("discovery: {dns: {srv: _etcd-client-ssl._tcp.example, scheme: https}}\n");
    let Wanted {
        backends: set,
        problems,
        ..
    } = desired(&c.backends, &[None, Some(vec![f])], &c.discovery);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(set[0].url, "https://etcd-2.example:2379");
    let tls = set[0].tls.as_ref().expect("TLS");
    assert_eq!(
        format!("{:?}", tls.server_name),
        format!(
            "{:?}",
            crate::config::server_name("etcd-2.example").unwrap()
        )
    );
}

#[test]
fn a_source_that_is_off_adds_nothing() {
    let c = cfg("backends: [{name: s, url: 'http://10.0.0.1:1'}]\n");
    let Wanted { backends: set, .. } = desired(&c.backends, &[None, None], &c.discovery);
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
fn the_cap_leaves_out_discovered_addresses_beyond_max_backends() {
    let c = cfg("backends: [{name: seed, url: 'http://10.0.0.1:2379'}]\ndiscovery: {dns: {name: etcd.example, port: 2379}, members: {kind: etcd}, max_backends: 2}\n");
    let members = vec![named("m2", "10.0.0.2", 2379), named("m3", "10.0.0.3", 2379)];
    let dns = vec![
        ip("10.0.0.1", 2379),
        ip("10.0.0.2", 2379),
        ip("10.0.0.4", 2379),
    ];
    let w = desired(&c.backends, &[Some(members), Some(dns)], &c.discovery);
    assert_eq!(
        names(&w.backends),
        vec![
            ("seed", "http://10.0.0.1:2379"),
            ("m2", "http://10.0.0.2:2379"),
            ("m3", "http://10.0.0.3:2379"),
        ],
        "static ones do not count; addresses already present are not capped"
    );
    assert_eq!(w.capped, 1, "10.0.0.4 left out");
    assert!(w.problems.is_empty());
}

#[test]
fn a_find_left_out_is_removed_only_after_remove_after_answers_in_a_row() {
    let (a, b, c) = (ip("10.0.0.1", 1), ip("10.0.0.2", 1), ip("10.0.0.3", 1));
    let mut h = Held::default();
    assert!(h.answer(vec![a.clone(), b.clone(), c.clone()], 3));
    // Answers alternating between subsets keep every member.
    for _ in 0..5 {
        assert!(!h.answer(vec![a.clone(), b.clone()], 3));
        assert!(!h.answer(vec![a.clone(), c.clone()], 3));
    }
    assert_eq!(h.set(), [a.clone(), b.clone(), c.clone()]);
    // Three answers in a row without c: gone at the third.
    assert!(!h.answer(vec![a.clone(), b.clone()], 3));
    assert!(!h.answer(vec![a.clone(), b.clone()], 3));
    assert!(h.answer(vec![a.clone(), b.clone()], 3));
    assert_eq!(h.set(), [a.clone(), b.clone()]);
    // A rename of the same address is a change; remove_after 1 removes at once.
    assert!(h.answer(vec![named("n1", "10.0.0.1", 1), b.clone()], 1));
    assert!(h.answer(vec![b.clone()], 1));
    assert_eq!(h.set(), [b]);
}

#[test]
fn a_reload_notes_restart_only_changes_and_keeps_them() {
    let old = cfg("backends: [{name: a, url: 'http://10.0.0.1:1'}]\n");
    let mut new = old.clone();
    new.workers = old.workers + 1;
    new.health.rise += 1;
    assert_eq!(
        restart_notes(&old, &new),
        ["workers changed: restart to apply"]
    );
    let a = applied(&old, &new);
    assert_eq!(a.workers, old.workers, "restart-only: kept");
    assert_eq!(a.health.rise, new.health.rise, "the rest: applied");
    assert!(probes_changed(&old, &a));
    assert!(!probes_changed(&old, &old));
    assert!(restart_notes(&old, &old).is_empty());
}

#[test]
fn a_backend_comes_from_the_config_else_the_first_source_listing_it() {
    let c = cfg("backends: [{name: seed, url: 'http://10.0.0.1:2379'}]\ndiscovery: {dns: {name: etcd.example, port: 2379}, members: {kind: etcd}}\n");
    let sets = [
        Some(vec![named("m2", "10.0.0.2", 2379)]),
        Some(vec![ip("10.0.0.2", 2379), ip("10.0.0.3", 2379)]),
    ];
    let w = desired(&c.backends, &sets, &c.discovery);
    let sources: Vec<_> = w
        .backends
        .iter()
        .map(|b| source_of(b, &c.backends, &sets))
        .collect();
    assert_eq!(sources, ["static", "members", "dns"]);
}

#[test]
fn only_a_discovered_leader_that_still_claims_stays_retiring() {
    assert!(keeps_retiring_leader("dns", true, true, false));
    assert!(!keeps_retiring_leader("static", true, true, false));
    assert!(!keeps_retiring_leader("members", false, true, false));
    assert!(!keeps_retiring_leader("members", true, false, false));
    assert!(!keeps_retiring_leader("dns", true, true, true));
}

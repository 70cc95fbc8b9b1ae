//! `tcp` listeners and `backends[].tcp`: defaults and exact errors.

use std::path::Path;
use std::time::Duration;

use super::tcp::RespOptions;
use super::tests::errs;
use super::*;

const BASE: &str = "admin: 127.0.0.1:9901\nleader: { path: /l, expect: { status: [200] } }\n";

fn with(rest: &str) -> String {
    format!("{BASE}{rest}")
}

#[test]
fn tcp_listeners_alone_need_no_http_listen_and_take_every_default() {
    let c = parse(
        &with(
            "backends:\n  - { name: a, url: \"http://127.0.0.1:8008\", tcp: \"127.0.0.1:5432\" }\n\
             tcp:\n  - { listen: \"127.0.0.1:5000\", to: write }\n  - { listen: \"127.0.0.1:5001\", to: read, policy: least_connections, on_unhealthy: close }\n",
        ),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert!(c.listen.is_empty());
    assert_eq!(
        c.backends[0].tcp.as_ref().unwrap().as_str(),
        "127.0.0.1:5432"
    );
    let (w, r) = (&c.tcp[0], &c.tcp[1]);
    assert_eq!(
        (w.to, w.on_unhealthy, w.idle),
        (Role::Write, OnUnhealthy::Keep, Duration::from_secs(1800))
    );
    assert_eq!(w.policy, Policy::RoundRobin, "reads.policy");
    assert!(!w.proxy_protocol && !w.send_proxy_protocol);
    assert_eq!(
        (r.to, r.policy, r.on_unhealthy),
        (Role::Read, Policy::LeastConnections, OnUnhealthy::Close)
    );
}

#[test]
fn tcp_mistakes_are_named_with_their_line() {
    let e = errs(&with(
        "listen: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\n\
         tcp:\n  - { listen: \"127.0.0.1:8080\", to: write, policy: ip_hash, on_unhealthy: close }\n  - { listen: \"nowhere\", to: read, proxy_protocol: true, idle: 0s }\n",
    ));
    assert_eq!(
        e,
        [
            "lp.yaml:7:7: tcp[0].listen: 127.0.0.1:8080 is also an HTTP listen or the admin address",
            "lp.yaml:7:44: tcp[0].policy: a write listener has one target, the leader: policy is for `to: read`",
            "lp.yaml:7:61: tcp[0].on_unhealthy: a write listener always closes connections to a former leader: on_unhealthy is for `to: read`",
            "lp.yaml:8:7: tcp[1].listen: invalid address \"nowhere\" (write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080)",
            "lp.yaml:8:36: tcp[1].proxy_protocol: needs trusted_proxies: the addresses allowed to send a PROXY protocol header",
            "lp.yaml:8:58: tcp[1].idle: must be more than 0",
            "lp.yaml:5:5: backends[0]: tcp listeners need the data address of every backend: set backends[].tcp (host:port) or data_port",
        ]
    );
}

#[test]
fn a_data_address_is_host_and_port() {
    let e = errs(&with(
        "listen: 127.0.0.1:8080\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\", tcp: \"127.0.0.1\" }\n",
    ));
    assert_eq!(
        e,
        ["lp.yaml:5:46: backends[0].tcp: invalid data address \"127.0.0.1\" (write host:port, e.g. 127.0.0.1:5432)"]
    );
}

#[test]
fn neither_listen_nor_tcp_is_an_error() {
    let e = errs(&with(
        "backends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\n",
    ));
    assert!(
        e.iter().any(|x| x.ends_with(
            "listen: at least one address is needed (or none, with `tcp` listeners only)"
        )),
        "{e:#?}"
    );
}

#[test]
fn preset_patroni_gives_postgres_on_each_urls_host_unless_a_backend_says_otherwise() {
    let c = parse(
        "admin: 127.0.0.1:9901\npreset: patroni\ntcp:\n  - { listen: \"127.0.0.1:5000\", to: write }\nbackends:\n  - { name: a, url: \"http://10.0.0.1:8008\" }\n  - { name: b, url: \"http://10.0.0.2:8008\", tcp: \"10.0.0.2:6432\" }\n",
        Path::new("lp.yaml"),
    )
    .unwrap();
    let data: Vec<String> = c
        .backends
        .iter()
        .map(|b| b.tcp.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(data, ["10.0.0.1:5432", "10.0.0.2:6432"]);
    assert_eq!(
        c.writes.hold,
        Duration::from_secs(30),
        "the preset's hold outlasts Patroni's lock ttl"
    );
    assert_eq!(
        errs(&with("listen: 127.0.0.1:8080\ndata_port: 0\nbackends:\n  - { name: a, url: \"http://127.0.0.1:8008\" }\n")),
        ["lp.yaml:4:1: data_port: must be a port, 1 to 65535"]
    );
}

#[test]
fn a_resp_listener_takes_no_target_and_bounds_its_limits() {
    let c = parse(
        &with(
            "backends:\n  - { name: a, url: \"http://127.0.0.1:8008\", tcp: \"127.0.0.1:6379\" }\n\
             tcp:\n  - { listen: \"127.0.0.1:6380\", protocol: resp }\n  - { listen: \"127.0.0.1:6381\", protocol: resp, resp: { upstream_connections: 4, max_bulk: 1MiB, max_elements: 100, max_inline: 1KiB, wait_replicas: 1, wait_timeout: 250ms } }\n",
        ),
        Path::new("lp.yaml"),
    )
    .unwrap();
    let (d, s) = (&c.tcp[0], &c.tcp[1]);
    assert_eq!(d.protocol, TcpProtocol::Resp);
    assert_eq!(d.resp, RespOptions::default());
    assert_eq!(
        (
            d.resp.upstream_connections,
            d.resp.max_bulk,
            d.resp.max_elements,
            d.resp.max_inline
        ),
        (1, 512 << 20, 1 << 20, 64 << 10)
    );
    assert_eq!(
        (
            s.resp.upstream_connections,
            s.resp.max_bulk,
            s.resp.max_elements,
            s.resp.max_inline
        ),
        (4, 1 << 20, 100, 1024)
    );
    assert_eq!(
        (d.resp.wait_replicas, d.resp.wait_timeout),
        (0, Duration::from_secs(1))
    );
    assert_eq!(
        (s.resp.wait_replicas, s.resp.wait_timeout),
        (1, Duration::from_millis(250))
    );
    let e = errs(&with(
        "backends:\n  - { name: a, url: \"http://127.0.0.1:8008\", tcp: \"127.0.0.1:6379\" }\n\
         tcp:\n  - { listen: \"127.0.0.1:6380\", protocol: resp, to: write, on_unhealthy: close, send_proxy_protocol: true, resp: { upstream_connections: 0, max_inline: 10 } }\n  - { listen: \"127.0.0.1:6381\", resp: { max_bulk: 1MiB } }\n  - { listen: \"127.0.0.1:6382\", protocol: resp, resp: { wait_replicas: 17, wait_timeout: 0s } }\n",
    ));
    assert_eq!(
        e,
        [
            "lp.yaml:6:49: tcp[0].to: a resp listener sends each command where its class says (writes to the primary, reads to the replicas): remove `to`",
            "lp.yaml:6:116: tcp[0].resp.upstream_connections: must be 1 to 64",
            "lp.yaml:6:141: tcp[0].resp.max_inline: must be 64 bytes to 1MiB",
            "lp.yaml:6:60: tcp[0].on_unhealthy: a resp listener picks a node per command: on_unhealthy is for raw `to: read` listeners",
            "lp.yaml:6:81: tcp[0].send_proxy_protocol: a resp listener shares its upstream connections between clients: no PROXY header can name one client",
            "lp.yaml:7:5: tcp[1].to: missing: `write` (the leader) or `read` (the followers)",
            "lp.yaml:7:33: tcp[1].resp: only for `protocol: resp`",
            "lp.yaml:8:57: tcp[2].resp.wait_replicas: must be 0 to 16",
            "lp.yaml:8:76: tcp[2].resp.wait_timeout: must be 1ms to 60s",
        ]
    );
}

#[test]
fn a_backend_needs_no_url_when_nothing_speaks_http_to_it() {
    let native = "preset: redis-sentinel\nadmin: 127.0.0.1:9901\n\
         tcp:\n  - { listen: \"127.0.0.1:6400\", protocol: resp }\n\
         backends:\n  - { name: a, tcp: \"127.0.0.1:6379\" }\n  - { name: b, url: \"http://127.0.0.1:7380\", tcp: \"127.0.0.1:6380\" }\n";
    let c = parse(native, Path::new("lp.yaml")).unwrap();
    assert!(!c.backends[0].has_url() && c.backends[1].has_url());
    assert_eq!(c.backends[0].authority.as_str(), "127.0.0.1:6379");
    // HTTP probes, or an HTTP listener, ask the URL; no URL and no data
    // address at all; a data address taken twice.
    let e = errs(&with(
        "listen: 127.0.0.1:8080\n\
         tcp:\n  - { listen: \"127.0.0.1:6400\", to: write }\n\
         backends:\n  - { name: a, tcp: \"127.0.0.1:6379\" }\n  - { name: b }\n  - { name: c, tcp: \"127.0.0.1:6379\" }\n",
    ));
    assert_eq!(
        e,
        [
            "lp.yaml:7:5: backends[0].url: missing: the health probes are HTTP, the leader probes are HTTP, `listen` forwards HTTP requests to it (only native probes and tcp listeners do without it)",
            "lp.yaml:8:5: backends[1].url: missing: the backend's HTTP address (http://host:port), or, with native probes and tcp listeners only, its data address in `tcp`",
            "lp.yaml:9:5: backends[2].url: missing: the health probes are HTTP, the leader probes are HTTP, `listen` forwards HTTP requests to it (only native probes and tcp listeners do without it)",
            "lp.yaml:9:16: backends[2].tcp: 127.0.0.1:6379 is already backends[0]",
        ]
    );
    let e = errs(&native.replace(
        "admin: 127.0.0.1:9901\n",
        "admin: 127.0.0.1:9901\nlisten: 127.0.0.1:8080\n",
    ));
    assert_eq!(
        e,
        ["lp.yaml:7:5: backends[0].url: missing: `listen` forwards HTTP requests to it (only native probes and tcp listeners do without it)"]
    );
}

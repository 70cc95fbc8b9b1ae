//! The edges: admin access (address, token), trusted proxies and PROXY
//! protocol listeners, TLS on the listeners and to the backends.

use std::path::Path;
use std::time::Duration;

use super::tests::{errs, temp_dir, write_ca_and_cert, ADMIN_BASE, ISSUE_CONFIG};
use super::*;

#[test]
fn admin_on_a_non_loopback_address_needs_a_token_or_admin_insecure() {
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\n");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:4:1: admin: 0.0.0.0:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true"]
    );
    let text = format!("{ADMIN_BASE}admin: '[::]:9901'\n");
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:4:1: admin: [::]:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true"]
    );
    let c = parse(
        &format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_insecure: true\n"),
        Path::new("lp.yaml"),
    )
    .unwrap();
    assert!(c.admin_insecure);
    assert!(c.admin_token.is_none());
    // Loopback, v4 (all of 127/8) and v6, needs neither.
    for a in ["127.0.0.1:9901", "127.3.2.1:0", "'[::1]:9901'"] {
        let c = parse(&format!("{ADMIN_BASE}admin: {a}\n"), Path::new("lp.yaml"))
            .unwrap_or_else(|e| panic!("{a}: {e}"));
        assert!(!c.admin_insecure && c.admin_token.is_none());
    }
}

#[test]
fn admin_token_file_is_read_trimmed_relative_to_the_config_and_never_printed() {
    let dir = temp_dir("token-ok");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/admin"), "  s3cr3t-Token_value\n\n").unwrap();
    let cfg_path = dir.join("lp.yaml");
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_token_file: secrets/admin\n");
    let c = parse(&text, &cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let t = c.admin_token.as_ref().expect("token");
    assert_eq!(t.file, dir.join("secrets/admin"));
    assert!(t.matches(b"s3cr3t-Token_value"));
    assert!(!t.matches(b"s3cr3t-Token_valuf"));
    assert!(!t.matches(b"s3cr3t-Token_value\n"));
    assert!(!t.matches(b""));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_token_file_missing_empty_or_unusable_is_an_error_with_its_line() {
    let dir = temp_dir("token-bad");
    let cfg_path = dir.join("lp.yaml");
    let file = cfg_path.display().to_string();
    let text = format!("{ADMIN_BASE}admin_token_file: tok\n");
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: cannot read {}: No such file or directory (os error 2)",
            dir.join("tok").display()
        )
    );
    std::fs::write(dir.join("tok"), " \n\t\n").unwrap();
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: {} is empty; put the admin token in it",
            dir.join("tok").display()
        )
    );
    std::fs::write(dir.join("tok"), "two words\n").unwrap();
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:4:1: admin_token_file: the token in {} must be printable ASCII without spaces (clients send it as \"Authorization: Bearer <token>\")",
            dir.join("tok").display()
        )
    );
    // On a non-loopback address, only the file's problem is reported.
    let text = format!("{ADMIN_BASE}admin: 0.0.0.0:9901\nadmin_token_file: nope\n");
    assert_eq!(
        parse(&text, &cfg_path).unwrap_err().to_string(),
        format!(
            "{file}:5:1: admin_token_file: cannot read {}: No such file or directory (os error 2)",
            dir.join("nope").display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trust_keys_defaults_and_bounds() {
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.leader.fall, 2);
    assert_eq!(c.leader.fast_interval, Duration::from_millis(25));
    assert_eq!(
        c.writes.retry_ambiguous,
        crate::config::RetryAmbiguous::Never
    );
    assert_eq!(c.limits.replay_buffer_bytes, 64 << 20);
    assert_eq!(c.timeouts.upstream_idle, Duration::from_secs(60));
    assert_eq!(c.timeouts.body_idle, Duration::from_secs(60));

    let text = ISSUE_CONFIG.replace(
        "writes: { hold: 5s }",
        "writes: { hold: 5s, replay_body_limit: 65MiB, retry_ambiguous: idempotent }\nlimits: { replay_buffer_bytes: 1MiB }",
    );
    assert_eq!(
        errs(&text),
        vec![
            "lp.yaml:18:21: writes.replay_body_limit: 68157440 bytes is more than the most allowed, 64MiB",
            "lp.yaml:18:21: writes.replay_body_limit: 68157440 bytes is more than limits.replay_buffer_bytes (1048576)",
        ]
    );
    let text = ISSUE_CONFIG
        .replace(
            "writes: { hold: 5s }",
            "writes: { retry_ambiguous: idempotent }",
        )
        .replace("request: 30s", "request: 5s, idle: 9s");
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(
        c.writes.retry_ambiguous,
        crate::config::RetryAmbiguous::Idempotent
    );
    assert_eq!(
        c.timeouts.response_headers,
        Duration::from_secs(5),
        "old name `request`"
    );
    assert_eq!(
        c.timeouts.upstream_idle,
        Duration::from_secs(9),
        "old name `idle`"
    );
}

const PP_BASE: &str = "backends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn nothing_is_trusted_by_default() {
    let c = parse(ISSUE_CONFIG, Path::new("lp.yaml")).unwrap();
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.listen_proxy_protocol, vec![false]);
}

#[test]
fn listen_entries_may_be_maps_with_proxy_protocol() {
    let text = format!(
        "listen: [ \"127.0.0.1:8080\", {{ addr: \"127.0.0.1:8443\", proxy_protocol: true }}, {{ addr: \"[::1]:8444\" }} ]\n\
         trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"::1\", 2001:db8::/32]\n{PP_BASE}"
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(
        c.listen,
        vec![
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            "[::1]:8444".parse().unwrap()
        ]
    );
    assert_eq!(c.listen_proxy_protocol, vec![false, true, false]);
    let t = &c.trusted_proxies;
    assert_eq!(
        format!("{t:?}"),
        "CidrSet([10.0.0.0/8, 192.0.2.7/32, ::1/128, 2001:db8::/32])"
    );
    assert!(t.contains("10.9.8.7".parse().unwrap()));
    assert!(t.contains("::1".parse().unwrap()));
    assert!(!t.contains("192.0.2.8".parse().unwrap()));
    // One map on its own.
    let text = format!(
        "listen: {{ addr: 127.0.0.1:1, proxy_protocol: true }}\ntrusted_proxies: [127.0.0.1]\n{PP_BASE}"
    );
    let c = parse(&text, Path::new("lp.yaml")).unwrap();
    assert_eq!(c.listen_proxy_protocol, vec![true]);
}

#[test]
fn bad_trusted_proxies_name_the_entry() {
    let text = format!(
        "listen: 127.0.0.1:1\ntrusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n  - 10.0.0.1/8\n  - lb.example\n{PP_BASE}"
    );
    assert_eq!(
        errs(&text),
        vec![
            r#"lp.yaml:4:5: trusted_proxies[1]: invalid prefix length in "10.0.0.0/33" (0 to 32 for IPv4)"#,
            r#"lp.yaml:5:5: trusted_proxies[2]: "10.0.0.1/8" has bits set after the prefix (write 10.0.0.0/8)"#,
            r#"lp.yaml:6:5: trusted_proxies[3]: invalid address or CIDR "lb.example" (write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"#,
        ]
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let text = format!(
        "listen:\n  - 127.0.0.1:1\n  - {{ addr: 127.0.0.1:2, proxy_protocol: true }}\n{PP_BASE}"
    );
    assert_eq!(
        errs(&text),
        vec!["lp.yaml:3:26: listen[1].proxy_protocol: needs trusted_proxies: list the load balancers whose PROXY headers are believed"]
    );
}

#[test]
fn bad_listen_map() {
    let text = format!("listen: [{{ addr: 127.0.0.1 }}]\n{PP_BASE}");
    assert_eq!(
        errs(&text),
        vec![
            r#"lp.yaml:1:12: listen[0].addr: invalid address "127.0.0.1" (write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080)"#
        ]
    );
    let e = errs(&format!(
        "listen: [{{ addr: 127.0.0.1:1, proxy: true }}]\n{PP_BASE}"
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("lp.yaml:"), "{e:?}");
}

const TLS_BASE: &str = "listen: 127.0.0.1:1\nleader: {path: /l, expect: {status: [200]}}\n";

#[test]
fn upstream_tls_applies_to_https_backends_with_per_backend_overrides() {
    let dir = temp_dir("upstream-tls-ok");
    write_ca_and_cert(&dir, &["client"]);
    let text = format!(
        "{TLS_BASE}upstream_tls:\n  ca: ca.pem\n  cert: client.pem\n  key: client-key.pem\n  server_name: etcd.internal\nbackends:\n  - {{ name: t1, url: \"https://127.0.0.1:2379\" }}\n  - {{ name: t2, url: \"https://10.0.0.2:2379\", tls: {{ server_name: etcd-2.internal }} }}\n  - {{ name: t3, url: \"http://10.0.0.3:2379\" }}\n  - {{ name: t4, url: \"https://[::1]:2379\", tls: {{ server_name: null, insecure_skip_verify: true }} }}\n"
    );
    let c = parse(&text, &dir.join("lp.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let t1 = c.backends[0].tls.as_ref().expect("https");
    assert_eq!(
        t1.settings.ca.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
    assert_eq!(
        t1.settings.cert.as_deref(),
        Some(dir.join("client.pem").as_path())
    );
    assert_eq!(
        t1.settings.key.as_deref(),
        Some(dir.join("client-key.pem").as_path())
    );
    assert_eq!(t1.settings.server_name.as_deref(), Some("etcd.internal"));
    assert!(!t1.settings.insecure_skip_verify);
    assert!(t1.client.client_cert_not_after.is_some());
    let t2 = c.backends[1].tls.as_ref().unwrap();
    assert_eq!(t2.settings.server_name.as_deref(), Some("etcd-2.internal"));
    assert_eq!(t2.settings.ca, t1.settings.ca);
    assert!(
        std::sync::Arc::ptr_eq(&t1.client, &t2.client),
        "the same files are read once"
    );
    assert!(c.backends[2].tls.is_none());
    // `null` is "not overridden"; the URL's host is verified when no server_name is set anywhere.
    let t4 = c.backends[3].tls.as_ref().unwrap();
    assert_eq!(t4.settings.server_name.as_deref(), Some("etcd.internal"));
    assert!(t4.settings.insecure_skip_verify);
    assert_eq!(c.warnings().len(), 1);
    assert!(
        c.warnings()[0].contains("\"t4\": insecure_skip_verify is on"),
        "{:?}",
        c.warnings()
    );
    assert!(c.backends[0].tls.is_some() && c.warnings().iter().all(|w| !w.contains("t1")));

    // No upstream_tls at all: the system roots, the URL's host.
    let text = format!("{TLS_BASE}backends: [{{name: a, url: 'https://127.0.0.1:2'}}]\n");
    if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        let c = parse(&text, &dir.join("lp.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let t = c.backends[0].tls.as_ref().unwrap();
        assert_eq!(t.settings.ca, None);
        assert_eq!(
            format!("{:?}", t.server_name),
            "IpAddress(V4(Ipv4Addr([127, 0, 0, 1])))"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn upstream_tls_problems_name_the_key_that_set_the_value() {
    let dir = temp_dir("upstream-tls-bad");
    write_ca_and_cert(&dir, &["client"]);
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let text = format!(
        "{TLS_BASE}upstream_tls: {{ ca: nope.pem, cert: client.pem }}\nbackends:\n  - {{ name: a, url: 'https://127.0.0.1:2' }}\n  - {{ name: b, url: 'https://127.0.0.1:3', tls: {{ key: client-key.pem, ca: gone.pem }} }}\n  - {{ name: c, url: 'https://127.0.0.1:4', tls: {{ key: client-key.pem }} }}\n  - {{ name: d, url: 'http://127.0.0.1:5', tls: {{ ca: ca.pem }} }}\n  - {{ name: e, url: 'https://127.0.0.1:6', h2c: true, tls: {{ key: client-key.pem, ca: ca.pem, server_name: 'bad name!' }} }}\n  - {{ name: f, url: 'https://127.0.0.1:7', tls: {{ key: client.pem, ca: ca.pem }} }}\n"
    );
    assert_eq!(
        parse(&text, &p)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        vec![
            format!("{file}:3:31: upstream_tls.cert: a client certificate needs its key (key is missing)"),
            format!(
                "{file}:6:72: backends[1].tls.ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
                dir.join("gone.pem").display()
            ),
            format!(
                "{file}:3:17: upstream_tls.ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
                dir.join("nope.pem").display()
            ),
            format!("{file}:8:43: backends[3].tls: tls is set but the url is http:// (write https:// to use TLS)"),
            format!("{file}:9:44: backends[4].h2c: h2c is HTTP/2 without TLS; over https:// the backend chooses h2 or http/1.1 by ALPN"),
            format!("{file}:9:95: backends[4].tls.server_name: invalid server name \"bad name!\""),
            format!(
                "{file}:10:51: backends[5].tls.key: cannot read a private key from {}: no items found",
                dir.join("client.pem").display()
            ),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_ca_and_forward_client_cert() {
    let dir = temp_dir("client-ca");
    write_ca_and_cert(&dir, &["127.0.0.1"]);
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let base = format!("{TLS_BASE}backends: [{{name: a, url: 'http://127.0.0.1:2'}}]\n");
    let c = parse(
        &format!("{base}tls: {{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: X-Client-Cert-Subject }}\n"),
        &p,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = c.tls.unwrap();
    assert_eq!(t.client_ca, Some(dir.join("ca.pem")));
    assert_eq!(
        t.forward_client_cert.unwrap().as_str(),
        "x-client-cert-subject"
    );
    let c = parse(
        &format!("{base}tls: {{ cert: client.pem, key: client-key.pem }}\n"),
        &p,
    )
    .unwrap();
    let t = c.tls.unwrap();
    assert_eq!((t.client_ca, t.forward_client_cert), (None, None));

    let e = |tls: &str| -> Vec<String> {
        parse(&format!("{base}tls: {tls}\n"), &p)
            .unwrap_err()
            .0
            .iter()
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, forward_client_cert: x-subject }"),
        vec![format!("{file}:4:47: tls.forward_client_cert: needs tls.client_ca (only a verified certificate's subject is forwarded)")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: X-Forwarded-For }"),
        vec![format!("{file}:4:66: tls.forward_client_cert: \"X-Forwarded-For\" is a header the proxy itself manages; pick another name")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: ca.pem, forward_client_cert: 'a b' }"),
        vec![format!("{file}:4:66: tls.forward_client_cert: \"a b\" is not a valid header name")]
    );
    assert_eq!(
        e("{ cert: client.pem, key: client-key.pem, client_ca: nope.pem }"),
        vec![format!(
            "{file}:4:47: tls.client_ca: cannot read certificates from {}: I/O error: No such file or directory (os error 2)",
            dir.join("nope.pem").display()
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key that is not the certificate's rejects the load with rustls' own
/// words, on the listener (`tls`) and on a backend (`...tls.key`).
#[test]
fn a_key_that_does_not_fit_its_certificate_is_a_problem() {
    let dir = temp_dir("key-mismatch");
    write_ca_and_cert(&dir, &["127.0.0.1"]);
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other-key.pem"), other.serialize_pem()).unwrap();
    let p = dir.join("lp.yaml");
    let file = p.display().to_string();
    let problems = |text: String| -> Vec<String> {
        parse(&text, &p)
            .unwrap_err()
            .0
            .iter()
            .map(|p| p.to_string())
            .collect()
    };
    assert_eq!(
        problems(format!(
            "{TLS_BASE}backends: [{{name: a, url: 'http://127.0.0.1:2'}}]\ntls: {{ cert: client.pem, key: other-key.pem }}\n"
        )),
        vec![format!(
            "{file}:4:1: tls: certificate and key do not fit together: keys may not be consistent: KeyMismatch"
        )]
    );
    assert_eq!(
        problems(format!(
            "{TLS_BASE}backends: [{{name: a, url: 'https://127.0.0.1:2', tls: {{ ca: ca.pem, cert: client.pem, key: other-key.pem }}}}]\n"
        )),
        vec![format!(
            "{file}:3:87: backends[0].tls.key: client certificate and key do not fit together: keys may not be consistent: KeyMismatch"
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

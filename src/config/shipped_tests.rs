//! Every config the repository ships (examples, deploy/, the Kubernetes
//! ConfigMap) is valid.

use std::path::Path;

use super::tests::{temp_dir, write_ca_and_cert};
use super::*;

/// The TLS file paths a config names, by kind: `ca` (CA bundles, also
/// `client_ca`), `cert`, `key`.
fn tls_files(text: &str) -> Vec<(&'static str, String)> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let mut sections = vec![v["tls"].clone(), v["upstream_tls"].clone()];
    if let Some(bs) = v["backends"].as_sequence() {
        sections.extend(bs.iter().map(|b| b["tls"].clone()));
    }
    let mut out = Vec::new();
    for s in sections {
        for (key, kind) in [
            ("ca", "ca"),
            ("client_ca", "ca"),
            ("cert", "cert"),
            ("key", "key"),
        ] {
            if let Some(p) = s[key].as_str() {
                out.push((kind, p.to_string()));
            }
        }
    }
    out
}

/// Every shipped config is valid. One that names TLS files (relative to
/// itself, as in production) is checked in a copy next to freshly made
/// files at those paths (one CA; one certificate and key for every
/// cert/key pair); in place, its only problems are those missing files.
#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    let mut with_tls = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        let files = tls_files(&text);
        if files.is_empty() {
            load(&p).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        with_tls += 1;
        let in_place = load(&p).expect_err("its TLS files are not in the repository");
        for problem in &in_place.0 {
            assert!(
                problem.message.contains("No such file or directory")
                    && ["tls", "upstream_tls", "backends"]
                        .iter()
                        .any(|k| problem.key.starts_with(k)),
                "{}: a problem besides the missing TLS files: {problem}",
                p.display()
            );
        }
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        let copy = temp_dir(&format!("shipped-{stem}"));
        write_ca_and_cert(&copy, &["127.0.0.1"]);
        for (kind, rel) in &files {
            let src = match *kind {
                "ca" => "ca.pem",
                "cert" => "client.pem",
                _ => "client-key.pem",
            };
            let dst = copy.join(rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(copy.join(src), &dst).unwrap();
        }
        let copied = copy.join(p.file_name().unwrap());
        std::fs::write(&copied, &text).unwrap();
        load(&copied).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&copy);
    }
    assert!(n >= 3);
    assert!(with_tls >= 1, "config/etcd-tls.yaml is checked");
}

/// The resources of a kustomization directory (`resources:` files, YAML
/// documents) and the files of its `configMapGenerator` by name.
fn kustomization(dir: &Path) -> (Vec<serde_yaml::Value>, Vec<(String, String)>) {
    use serde::Deserialize;
    let k: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut docs = Vec::new();
    for r in k["resources"].as_sequence().into_iter().flatten() {
        let p = dir.join(r.as_str().unwrap());
        if p.is_dir() {
            continue; // a base: read on its own
        }
        let text = std::fs::read_to_string(&p).unwrap();
        docs.extend(
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde_yaml::Value::deserialize(d).unwrap()),
        );
    }
    let mut files = Vec::new();
    for g in k["configMapGenerator"].as_sequence().into_iter().flatten() {
        for f in g["files"].as_sequence().unwrap() {
            let f = f.as_str().unwrap();
            files.push((f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap()));
        }
    }
    (docs, files)
}

#[test]
fn kubernetes_configmap_config_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let (docs, files) = kustomization(&root.join("base"));
    let one = |kind: &str| {
        let v: Vec<&serde_yaml::Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(v.len(), 1, "one {kind}");
        v[0]
    };
    assert_eq!(files.len(), 1, "one generated ConfigMap file");
    let (key, cfg) = (&files[0].0, files[0].1.as_str());
    assert_eq!(key, "config.yaml");
    // The overlay replaces the config: the same shape with discovery.dns.
    let (_, overlay) = kustomization(&root.join("overlays/etcd-statefulset"));
    assert_eq!(overlay.len(), 1);
    assert_eq!(overlay[0].0, "config.yaml");

    // The token file the config names is where the Deployment mounts the Secret.
    let token_path = serde_yaml::from_str::<serde_yaml::Value>(cfg).unwrap()["admin_token_file"]
        .as_str()
        .expect("admin_token_file")
        .to_string();
    let secret = one("Secret");
    let pod = &one("Deployment")["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret["metadata"]["name"])
        .expect("a volume from the admin token Secret");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == vol["name"])
        .expect("the Secret volume is mounted");
    let (dir, key) = token_path.rsplit_once('/').unwrap();
    assert_eq!(mount["mountPath"].as_str(), Some(dir));
    let shipped = secret["stringData"][key]
        .as_str()
        .expect("the Secret has the key");

    // The config is valid with a real token at that path (written to a temp
    // file here); the Secret ships empty, and an empty token fails closed.
    let tmp = temp_dir("k8s");
    let with_token = |token: &str| {
        std::fs::write(tmp.join("token"), token).unwrap();
        let cfg = cfg.replace(&token_path, &tmp.join("token").display().to_string());
        parse(&cfg, Path::new("leaderproxy.yaml (ConfigMap)"))
    };
    let c = with_token("k8s-admin-token").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.backends.len(), 3);
    assert!(!c.discovery.is_on());
    std::fs::write(tmp.join("token"), "k8s-admin-token").unwrap();
    let o = overlay[0]
        .1
        .replace(&token_path, &tmp.join("token").display().to_string());
    let o = parse(&o, Path::new("overlays/etcd-statefulset/config.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(o.backends.is_empty());
    assert_eq!(
        o.discovery.dns.as_ref().map(|d| &d.lookup),
        Some(&DnsLookup::Addresses {
            name: "etcd".into(),
            port: 2379
        })
    );
    assert_eq!(c.admin.port(), 9901);
    assert!(!c.admin.ip().is_loopback());
    assert!(c.admin_token.as_ref().unwrap().matches(b"k8s-admin-token"));
    assert!(!c.admin_insecure);
    assert_eq!(shipped, "");
    let e = with_token(shipped).unwrap_err().to_string();
    assert!(
        e.contains("admin_token_file: ") && e.ends_with("is empty; put the admin token in it"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);

    // Only Prometheus may reach the admin port; the proxy port is open.
    let np = &one("NetworkPolicy")["spec"];
    assert_eq!(
        np["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "leaderproxy"
    );
    let rules = np["ingress"].as_sequence().unwrap();
    let rule_for = |port: &str| {
        let r: Vec<_> = rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .collect();
        assert_eq!(r.len(), 1, "one rule for port {port}");
        r[0]
    };
    assert!(
        rule_for("http").get("from").is_none(),
        "clients come from anywhere"
    );
    let from = rule_for("admin")["from"]
        .as_sequence()
        .expect("admin has a from");
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
}

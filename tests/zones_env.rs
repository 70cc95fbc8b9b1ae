//! `LEADERPROXY_ZONE` overrides `local_zone` in `config::load`. The
//! environment is process-global, so this binary holds this one test only:
//! nothing else can load a config while the variable is set.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::time::Duration;

use fake::{config_with, tally, wait_until, Proxy, TempDir};
use nodes::nodes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderproxy_zone_overrides_local_zone() {
    let [l, a, b] = nodes(["l", "a", "b"]).await;
    let yaml = config_with(
        &[(&l, ""), (&a, "zone: eu-1"), (&b, "zone: eu-2")],
        "local_zone: eu-1\n",
    );
    let dir = TempDir::new();
    let path = dir.0.join("lp.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let load = || leaderproxy::config::load(&path);

    std::env::remove_var("LEADERPROXY_ZONE");
    assert_eq!(load().unwrap().local_zone.as_deref(), Some("eu-1"));
    std::env::set_var("LEADERPROXY_ZONE", "");
    assert_eq!(
        load().unwrap().local_zone.as_deref(),
        Some("eu-1"),
        "an empty variable is no override"
    );
    std::env::set_var("LEADERPROXY_ZONE", "eu 2");
    assert_eq!(
        load().unwrap_err().to_string(),
        "LEADERPROXY_ZONE: invalid zone \"eu 2\" (use letters, digits, '-', '_' and '.')"
    );
    std::env::set_var("LEADERPROXY_ZONE", "eu-2");
    assert_eq!(load().unwrap().local_zone.as_deref(), Some("eu-2"));

    // A proxy started from that file (through config::load) reads in eu-2.
    let p = Proxy::start(&yaml).await;
    std::env::remove_var("LEADERPROXY_ZONE");
    p.wait_leader(Some("l"), Duration::from_secs(5)).await;
    assert_eq!(p.routing().await["local_zone"], "eu-2");
    wait_until(Duration::from_secs(5), "read tier [b]", || async {
        p.routing().await["followers"] == serde_json::json!(["b"])
    })
    .await;
    let mut replies = Vec::new();
    for i in 0..30 {
        replies.push(p.get(&format!("/r/{i}")).await);
    }
    let t = tally(&replies);
    assert_eq!(t.get("b"), Some(&30), "{t:?}");
    assert_eq!(a.count(), 0);
}

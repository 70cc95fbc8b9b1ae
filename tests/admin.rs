//! The admin listener is not an open door (bearer token on state-changing
//! endpoints, no non-loopback address by accident, its own connection
//! limit), and shutdown keeps the monitor alive until workers have drained.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use admin::{backend_view, post_as, served_connection};
use fake::{config_for, wait_until, Fake, Proxy, Reply, Role, TempDir};
use nodes::nodes;

/// The value of one unlabelled series in Prometheus text; 0 when absent.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == name).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_held_at_shutdown_still_reaches_a_new_leader() {
    // No leader: the only node is a follower, so a write is held.
    let n = Fake::start("n", Role::Follower).await;
    let mut p = Proxy::start(&config_for(
        &[&n],
        "writes: { hold: 5s }\nshutdown_grace: 5s\n",
    ))
    .await;
    p.wait_leader(None, Duration::from_secs(3)).await;
    let running = p.running.take().unwrap();
    let write = p.put("/held");
    let drive = async {
        wait_until(Duration::from_secs(3), "the write is held", || async {
            series(&p.metrics().await, "leaderproxy_held_writes") == 1.0
        })
        .await;
        running.shutdown();
        // Only creates the timing: the leader appears after shutdown began.
        tokio::time::sleep(Duration::from_millis(300)).await;
        n.set_role(Role::Leader);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || running.join())
            .await
            .unwrap();
        started.elapsed()
    };
    let (r, joined_after) = tokio::join!(write, drive);
    assert_eq!(r.status, 200, "held write answered: {}", r.text());
    assert_eq!(r.backend().as_deref(), Some("n"));
    assert_eq!(n.count_method("PUT"), 1);
    assert!(
        joined_after < Duration::from_secs(5),
        "threads ended {joined_after:?} after the leader appeared"
    );
}

fn assert_unauthorized(r: &Reply) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.headers[http::header::WWW_AUTHENTICATE], "Bearer");
    let v = r.json();
    assert_eq!(v["error"], "unauthorized");
    assert!(v["message"].as_str().unwrap().contains("Bearer"), "{v}");
}

/// A proxy for `fakes` whose config (in its own directory) names the token
/// file `admin.token` relatively, holding `token`.
async fn with_token(fakes: &[&Fake], token: &str) -> Proxy {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("admin.token"), token).unwrap();
    let mut p = Proxy::start_in(&dir, &config_for(fakes, "admin_token_file: admin.token\n")).await;
    p.keep_dir(dir);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_admin_endpoints_need_the_token_and_the_rest_stays_open() {
    let [l, f] = nodes(["l", "f"]).await;
    let p = with_token(&[&l, &f], "  tok-123\n").await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;

    for path in ["/healthz", "/readyz", "/metrics", "/admin/routing"] {
        assert_eq!(p.admin("GET", path).await.status, 200, "GET {path}");
    }
    for path in [
        "/admin/reload",
        "/admin/backends/f/drain",
        "/admin/backends/f/enable",
        "/admin/backends/nope/drain",
    ] {
        assert_unauthorized(&p.admin("POST", path).await);
        for bad in [
            "Bearer tok-12",
            "Bearer tok-1234",
            "Bearer ",
            "Basic tok-123",
            "tok-123",
        ] {
            assert_unauthorized(&post_as(&p, path, bad).await);
        }
    }
    assert_eq!(
        p.routing().await["backends"][1]["drained"],
        false,
        "refused drain did nothing"
    );

    let r = post_as(&p, "/admin/backends/f/drain", "Bearer tok-123").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(p.routing().await["backends"][1]["drained"], true);
    let r = post_as(&p, "/admin/backends/f/enable", "bearer  tok-123").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_as(&p, "/admin/backends/nope/drain", "Bearer tok-123").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = post_as(&p, "/admin/reload", "Bearer tok-123").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_shows_each_followers_recent_read_latency_and_why_it_is_out() {
    let [l, f, g] = nodes(["l", "f", "g"]).await;
    let p = with_token(&[&l, &f, &g], "tok\n").await;
    admin::wait_followers(&p, &["f", "g"], Duration::from_secs(5)).await;
    for (name, v) in [
        ("f", backend_view(&p, "f").await),
        ("l", backend_view(&p, "l").await),
    ] {
        assert_eq!(
            v["read_p50_ms"],
            serde_json::Value::Null,
            "{name}: no read yet"
        );
        assert_eq!(v["out"], serde_json::Value::Null, "{name}: {v}");
    }
    let tier = &p.routing().await["read_tier_latency"];
    assert!(
        tier["p99_ms"].is_null() && tier["try_timeout_ms"].is_null(),
        "{tier}"
    );
    g.state
        .delay_ms
        .store(20, std::sync::atomic::Ordering::Relaxed);
    for i in 0..10 {
        assert_eq!(p.get(&format!("/k/{i}")).await.status, 200);
    }
    let (vf, vg) = (backend_view(&p, "f").await, backend_view(&p, "g").await);
    let (f50, f99) = (
        vf["read_p50_ms"].as_f64().unwrap(),
        vf["read_p99_ms"].as_f64().unwrap(),
    );
    let g50 = vg["read_p50_ms"].as_f64().unwrap();
    assert!(f50 > 0.0 && f50 <= f99, "{vf}");
    assert!(g50 >= 20.0 && g50 > f50, "g answers 20ms late: {vg}");

    let r = post_as(&p, "/admin/backends/g/drain", "Bearer tok").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = backend_view(&p, "g").await;
    assert_eq!(v["out"], "drained", "{v}");
    f.kill();
    wait_until(Duration::from_secs(5), "f down", || async {
        backend_view(&p, "f").await["out"] == "unhealthy"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_token_and_a_broken_token_file_keeps_the_old_one() {
    let l = Fake::start("l", Role::Leader).await;
    let p = with_token(&[&l], "old-token").await;
    let token_file = p.config_path.parent().unwrap().join("admin.token");

    std::fs::write(&token_file, "new-token\n").unwrap();
    // The reload itself is authorized by the token in force when it arrives.
    assert_unauthorized(&post_as(&p, "/admin/reload", "Bearer new-token").await);
    let r = post_as(&p, "/admin/reload", "Bearer old-token").await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(2), "old token refused", || async {
        post_as(&p, "/admin/backends/l/enable", "Bearer old-token")
            .await
            .status
            == 401
    })
    .await;
    let r = post_as(&p, "/admin/backends/l/enable", "Bearer new-token").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // An empty token file is a config error: the reload is refused, the token stays.
    std::fs::write(&token_file, "\n").unwrap();
    let r = post_as(&p, "/admin/reload", "Bearer new-token").await;
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    let line = 1 + std::fs::read_to_string(&p.config_path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("admin_token_file:"))
        .unwrap();
    assert_eq!(
        v["errors"],
        serde_json::json!([format!(
            "{}:{line}:1: admin_token_file: {} is empty; put the admin token in it",
            p.config_path.display(),
            token_file.display()
        )])
    );
    let r = post_as(&p, "/admin/backends/l/enable", "Bearer new-token").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A missing one too.
    std::fs::remove_file(&token_file).unwrap();
    let r = post_as(&p, "/admin/reload", "Bearer new-token").await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("admin_token_file: cannot read"),
        "{}",
        r.text()
    );
    let r = post_as(&p, "/admin/backends/l/enable", "Bearer new-token").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_needs_a_token_or_admin_insecure() {
    let l = Fake::start("l", Role::Leader).await;
    // `leaderproxy check` refuses it.
    let dir = TempDir::new();
    let path = dir.0.join("lp.yaml");
    std::fs::write(
        &path,
        config_for(&[&l], "").replace("admin: 127.0.0.1:0", "admin: 0.0.0.0:9901"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leaderproxy"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2:1: admin: 0.0.0.0:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true",
            path.display()
        )),
        "{stderr}"
    );

    // A running proxy refuses to reload into it and keeps serving.
    let p = Proxy::start(&config_for(&[&l], "")).await;
    let r = p
        .reload_with(&config_for(&[&l], "").replace("admin: 127.0.0.1:0", "admin: '[::]:9901'"))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["errors"],
        serde_json::json!([format!(
            "{}:2:1: admin: [::]:9901 is not a loopback address; set admin_token_file (recommended) or admin_insecure: true",
            p.config_path.display()
        )])
    );
    assert_eq!(p.put("/still-serving").await.status, 200);

    // admin_insecure: true opts in: an all-interfaces admin API without a token.
    let p = Proxy::start(
        &config_for(&[&l], "admin_insecure: true\n")
            .replace("admin: 127.0.0.1:0", "admin: 0.0.0.0:0"),
    )
    .await;
    assert!(p.admin.ip().is_unspecified());
    assert_eq!(
        p.admin("POST", "/admin/backends/l/enable").await.status,
        200
    );
}

/// One `GET path` on a new admin connection that asks to be closed; `None`
/// if the proxy closed it without an answer.
fn raw_get(admin: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_over_the_limit_are_closed_and_an_idle_one_gives_its_slot_back() {
    let l = Fake::start("l", Role::Leader).await;
    // No readiness polling: the test's raw connections are the only admin clients.
    let p = Proxy::start_opts(
        &config_for(&[&l], "limits: { admin_max_connections: 1 }\n"),
        false,
    )
    .await;
    let admin = p.admin;
    tokio::task::spawn_blocking(move || {
        // The first connection is served and kept alive: it holds the only slot.
        let mut first = served_connection(admin, "/healthz", Some(Duration::from_secs(15)));
        let idle_from = Instant::now();

        // A second one is closed at once, unanswered.
        assert_eq!(raw_get(admin, "/healthz"), None, "second connection served");

        // The idle first connection is closed by the server (header read timeout, 5s)...
        let mut rest = Vec::new();
        first
            .read_to_end(&mut rest)
            .expect("closed by the server, not by our read timeout");
        let idled = idle_from.elapsed();
        assert!(
            idled >= Duration::from_secs(4) && idled < Duration::from_secs(10),
            "{idled:?}"
        );

        // ...which gives its slot back.
        let deadline = Instant::now() + Duration::from_secs(3);
        let metrics = loop {
            if let Some(m) = raw_get(admin, "/metrics") {
                break m;
            }
            assert!(Instant::now() < deadline, "slot never freed");
            std::thread::sleep(Duration::from_millis(20));
        };
        let rejected = metrics
            .lines()
            .find_map(|l| l.strip_prefix("leaderproxy_admin_rejected_connections_total "))
            .expect("the counter is exported");
        assert!(rejected.trim().parse::<f64>().unwrap() >= 1.0, "{rejected}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_token_file_is_picked_up_without_an_explicit_reload() {
    let l = Fake::start("l", Role::Leader).await;
    let p = with_token(&[&l], "first-token").await;
    let token_file = p.config_path.parent().unwrap().join("admin.token");
    // Like a Kubernetes Secret update: a new file swapped in under the same name.
    std::fs::write(token_file.with_extension("new"), "second-token-longer\n").unwrap();
    std::fs::rename(token_file.with_extension("new"), &token_file).unwrap();
    wait_until(
        Duration::from_secs(5),
        "the new token is in force",
        || async {
            post_as(&p, "/admin/backends/l/enable", "Bearer second-token-longer")
                .await
                .status
                == 200
        },
    )
    .await;
    assert_unauthorized(&post_as(&p, "/admin/backends/l/enable", "Bearer first-token").await);
}

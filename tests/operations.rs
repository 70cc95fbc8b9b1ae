//! Operating the proxy: admin endpoints, drain, hot reload (admin, file
//! watch), graceful shutdown (in-process and by SIGTERM to the binary), and
//! that the dashboard and alert rules only use metrics the proxy exports.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/nodes.rs"]
mod nodes;
#[path = "support/tls_fake.rs"]
mod tls_fake;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use admin::served_connection;
use fake::{config_for, tally, wait_until, Fake, Proxy, Role};
use nodes::{led_by, nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_routing_json() {
    let [l, f] = nodes(["l", "f"]).await;
    let p = led_by(&[&l, &f], "", "l").await;
    assert_eq!(p.admin("GET", "/healthz").await.status, 200);
    let r = p.admin("GET", "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = p.routing().await;
    assert!(j["epoch"].as_u64().unwrap() >= 1);
    assert_eq!(j["leader"]["name"], "l");
    assert!(j["leader"]["since_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let b = &j["backends"][1];
    assert_eq!(b["name"], "f");
    assert_eq!(b["role"], "follower");
    assert_eq!(b["healthy"], true);
    assert_eq!(b["in_flight"], 0);
    assert_eq!(b["ejected"], false);
    assert_eq!(b["drained"], false);
    assert_eq!(b["last_probe"]["health_ok"], true);
    assert_eq!(b["last_probe"]["leader_claim"], false);
    assert!(b["last_probe"]["health_latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(p.admin("GET", "/nope").await.status, 404);
    assert_eq!(p.admin("DELETE", "/metrics").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_something_can_be_routed() {
    let l = Fake::start("l", Role::Leader).await;
    l.kill();
    let p = Proxy::start_opts(&config_for(&[&l], ""), false).await;
    wait_until(Duration::from_secs(3), "first round", || async {
        p.routing().await["ready"] == true
    })
    .await;
    let r = p.admin("GET", "/readyz").await;
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["ready"], false);
    assert_eq!(v["reason"], "no leader and no healthy follower");
    l.revive().await;
    wait_until(Duration::from_secs(3), "ready", || async {
        p.admin("GET", "/readyz").await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_gets_no_new_requests_and_in_flight_ones_finish() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    f1.state.delay_ms.store(300, Ordering::Relaxed);
    let p = led_by(&[&l, &f1, &f2], "", "l").await;
    // First read goes to f1 (slow); drain f1 while it is in flight.
    let slow = p.get("/slow");
    let drain = async {
        wait_until(Duration::from_secs(2), "in flight on f1", || async {
            f1.count() == 1
        })
        .await;
        let r = p.admin("POST", "/admin/backends/f1/drain").await;
        assert_eq!(r.status, 200);
        wait_until(Duration::from_secs(2), "f1 out of rotation", || async {
            p.routing().await["followers"] == serde_json::json!(["f2"])
        })
        .await;
    };
    let (r, _) = tokio::join!(slow, drain);
    assert_eq!(r.status, 200, "in-flight request finished");
    assert_eq!(r.backend().as_deref(), Some("f1"));
    let mut v = Vec::new();
    for i in 0..6 {
        v.push(p.get(&format!("/r{i}")).await);
    }
    assert_eq!(tally(&v).get("f2"), Some(&6));
    assert_eq!(
        p.admin("POST", "/admin/backends/f1/enable").await.status,
        200
    );
    wait_until(Duration::from_secs(2), "f1 back", || async {
        p.routing().await["followers"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        p.admin("POST", "/admin/backends/zz/drain").await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_valid_config_and_keeps_old_one_on_error() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    // One worker: pools are per worker, and the test client may open a new
    // connection that SO_REUSEPORT hands to another worker.
    let one = |fakes: &[&Fake]| config_for(fakes, "").replace("workers: 2", "workers: 1");
    let p = Proxy::start(&one(&[&l, &f1])).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    // Keep a pooled connection to the leader to show it survives.
    assert_eq!(p.put("/k").await.status, 200);
    let conns_before = l.state.accepted.load(Ordering::Relaxed);

    // Broken config: rejected, old one keeps serving.
    let r = p.reload_with("listen: 127.0.0.1:0\nbackends: []\n").await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("leaderproxy.yaml"),
        "error names the file: {}",
        r.text()
    );
    assert_eq!(p.get("/still").await.status, 200);
    let m = p.metrics().await;
    assert!(
        m.contains("leaderproxy_config_reloads_total{result=\"error\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("leaderproxy_config_last_reload_success 0"),
        "{m}"
    );

    // Valid config adding f2: it starts probing and gets reads; l keeps its state.
    let r = p.reload_with(&one(&[&l, &f1, &f2])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(3), "f2 is a follower", || async {
        p.routing().await["followers"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        p.routing().await["leader"]["name"],
        "l",
        "leader kept across reload"
    );
    let mut v = Vec::new();
    for i in 0..4 {
        v.push(p.get(&format!("/r{i}")).await);
    }
    assert_eq!(tally(&v).get("f2"), Some(&2));
    // Only probe connections were opened to l; the write reused the pooled one.
    l.clear();
    assert_eq!(p.put("/k2").await.status, 200);
    let write_conn = l.seen()[0].conn;
    assert!(
        write_conn < conns_before,
        "pooled connection to l was dropped by the reload"
    );
    let m = p.metrics().await;
    assert!(
        m.contains("leaderproxy_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );

    // Removing f1 by editing the file (watched): it stops getting reads.
    std::fs::write(&p.config_path, one(&[&l, &f2])).unwrap();
    wait_until(Duration::from_secs(5), "file watch reload", || async {
        p.routing().await["backends"].as_array().unwrap().len() == 2
    })
    .await;
    f1.clear();
    for i in 0..4 {
        assert_eq!(
            p.get(&format!("/x{i}")).await.backend().as_deref(),
            Some("f2")
        );
    }
    assert_eq!(f1.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_slow_request_finish() {
    let l = Fake::start("l", Role::Leader).await;
    l.state.delay_ms.store(500, Ordering::Relaxed);
    let mut p = led_by(&[&l], "shutdown_grace: 5s\n", "l").await;
    let running = p.running.take().unwrap();
    let addr = p.addr;
    let slow = p.put("/slow");
    let stop = async {
        wait_until(Duration::from_secs(2), "request in flight", || async {
            l.count() == 1
        })
        .await;
        running.shutdown();
        tokio::task::spawn_blocking(move || running.join())
            .await
            .unwrap();
        Instant::now()
    };
    let (r, stopped) = tokio::join!(slow, stop);
    assert_eq!(r.status, 200, "in-flight request completed: {}", r.text());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_only_use_exported_metrics() {
    let l = Fake::start("l", Role::Leader).await;
    // With TLS on the listener, so the certificate expiry gauge has a sample.
    let dir = fake::TempDir::new();
    let pki = tls_fake::Pki::new(&dir.0, "ca");
    pki.issue("proxy", "proxy", &["127.0.0.1"], false);
    let tls = "tls: { cert: proxy.pem, key: proxy-key.pem }\n";
    let p = Proxy::start_in(&dir, &config_for(&[&l], tls)).await;
    let exported = p.metrics().await;
    let names: std::collections::HashSet<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut checked = 0;
    let re = regex::Regex::new(r"leaderproxy_[a-z0-9_]+").unwrap();
    for f in [
        "grafana/leaderproxy-dashboard.json",
        "prometheus/alerts.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for m in re.find_iter(&text) {
            assert!(
                names.contains(m.as_str()),
                "{f} uses {} which the proxy does not export",
                m.as_str()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} metric references found");
}

/// The `leaderproxy` binary running with a config for `fakes`, its stderr
/// collected on a thread.
struct Bin {
    child: std::process::Child,
    port: u16,
    log: Option<std::thread::JoinHandle<String>>,
    _dir: fake::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a fresh connection; the whole answer as text.
fn raw(port: u16, req: &[u8]) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(req)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

impl Bin {
    /// Starts the binary and waits until it routes writes to a leader.
    fn start(fakes: &[&Fake], extra: &str, args: &[&str]) -> Bin {
        let (port, admin) = (free_port(), free_port());
        let dir = fake::TempDir::new();
        let cfg = config_for(fakes, extra)
            .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"))
            .replace("admin: 127.0.0.1:0", &format!("admin: 127.0.0.1:{admin}"));
        let path = dir.0.join("lp.yaml");
        std::fs::write(&path, cfg).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_leaderproxy"))
            .args(args)
            .args(["run", "--config"])
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines() {
                s.push_str(&line.unwrap_or_default());
                s.push('\n');
            }
            s
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let get = b"GET /admin/routing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if raw(admin, get).is_ok_and(|out| out.contains("\"leader\":{")) {
                break;
            }
            assert!(Instant::now() < deadline, "proxy did not find the leader");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bin {
            child,
            port,
            log: Some(log),
            _dir: dir,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit; its exit code and log.
    fn wait(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        (status.code(), self.log.take().unwrap().join().unwrap())
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_zero() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let l = rt.block_on(Fake::start("l", Role::Leader));
    l.state.delay_ms.store(700, Ordering::Relaxed);
    let bin = Bin::start(&[&l], "", &[]);
    let port = bin.port;
    let slow = std::thread::spawn(move || {
        raw(
            port,
            b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv",
        )
        .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while l.count() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    bin.signal("-TERM");
    let out = slow.join().unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "slow request answered: {out}"
    );
    let (code, log) = bin.wait();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn json_logs_and_access_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let l = rt.block_on(Fake::start("l", Role::Leader));
    let f = rt.block_on(Fake::start("f", Role::Follower));
    let bin = Bin::start(&[&l, &f], "access_log: true\n", &["--log-format", "json"]);
    let out = raw(
        bin.port,
        b"GET /some/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    bin.signal("-TERM");
    let (code, log) = bin.wait();
    assert_eq!(code, Some(0));
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["target"] == "access").collect();
    assert_eq!(access.len(), 1, "{log}");
    let a = access[0];
    assert_eq!(a["method"], "GET");
    assert_eq!(a["path"], "/some/path");
    assert_eq!(a["role"], "read");
    assert_eq!(a["backend"], "f");
    assert_eq!(a["status"], 200);
    assert!(a["duration_ms"].as_f64().unwrap() >= 0.0);
    // `client` is the client's address as trusted proxies tell it (no port);
    // `peer` is the socket (or PROXY header) address it came from.
    assert_eq!(a["client"], "127.0.0.1");
    assert!(a["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    // The leader change is logged with the backend's name.
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "leader changed" && v["leader"] == "l"),
        "{log}"
    );
}

/// The value of one series: metric `name` whose labels include all `labels`
/// (summed if several match); 0 when absent.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            let (n, rest) = s.split_once('{').unwrap_or((s, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// One series and the value it must have: `(name, labels, value)`.
type Want<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Each `(name, labels, value)`: [`series`] of `scrape` is exactly `value`.
fn assert_series(scrape: &str, want: &[Want]) {
    for (name, labels, value) in want {
        assert_eq!(series(scrape, name, labels), *value, "{name} {labels:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_what_happens() {
    let [l, f1, f2] = nodes(["l", "f1", "f2"]).await;
    // Slow leader probes: the write below learns of the dead leader itself.
    let p = led_by(
        &[&l, &f1, &f2],
        "leader: { path: /leader, interval: 1s, timeout: 300ms, expect: { status: [200] } }\n\
         health: { path: /health, interval: 1s, timeout: 300ms, rise: 1, fall: 3 }\n\
         reads: { retry: false }\npassive: { consecutive_failures: 0 }\n\
         writes: { hold: 300ms }\ntimeouts: { request: 200ms }\n",
        "l",
    )
    .await;
    let m = p.metrics().await;
    assert_series(
        &m,
        &[
            ("leaderproxy_backend_is_leader", &[("backend", "l")], 1.0),
            ("leaderproxy_backend_is_leader", &[("backend", "f1")], 0.0),
            ("leaderproxy_backend_healthy", &[("backend", "f2")], 1.0),
            ("leaderproxy_leader_known", &[], 1.0),
        ],
    );
    for kind in ["leader", "health"] {
        let probes = [("backend", "f1"), ("kind", kind)];
        let timed = series(&m, "leaderproxy_probe_duration_seconds_count", &probes);
        assert!(timed >= 1.0, "{kind} probes of f1 timed: {timed}");
    }
    assert_eq!(series(&m, "leaderproxy_build_info", &[]), 1.0);

    // Traffic by role, backend and class; durations by role.
    assert_eq!(p.put("/w").await.status, 200);
    for i in 0..4 {
        assert_eq!(p.get(&format!("/r{i}")).await.status, 200);
    }
    f2.state.fail_status.store(500, Ordering::Relaxed);
    assert_eq!(p.get("/r-f1").await.status, 200);
    assert_eq!(p.get("/r-f2").await.status, 500);
    // In flight while a request is being served; a timeout after request: 200ms.
    f1.state.delay_ms.store(400, Ordering::Relaxed);
    let slow = p.get("/slow");
    let look = async {
        wait_until(Duration::from_secs(2), "in flight on f1", || async {
            series(
                &p.metrics().await,
                "leaderproxy_backend_in_flight",
                &[("backend", "f1")],
            ) == 1.0
        })
        .await;
    };
    let (r, _) = tokio::join!(slow, look);
    assert_eq!(r.status, 504);
    f1.state.delay_ms.store(0, Ordering::Relaxed);
    let m = p.metrics().await;
    assert_series(
        &m,
        &[
            (
                "leaderproxy_requests_total",
                &[("role", "write"), ("backend", "l"), ("class", "2xx")],
                1.0,
            ),
            (
                "leaderproxy_requests_total",
                &[("role", "read"), ("class", "2xx")],
                5.0,
            ),
            (
                "leaderproxy_requests_total",
                &[("role", "read"), ("backend", "f2"), ("class", "5xx")],
                1.0,
            ),
        ],
    );
    assert_eq!(
        series(
            &m,
            "leaderproxy_requests_total",
            &[("role", "read"), ("backend", "f1"), ("class", "5xx")]
        ),
        1.0,
        "the 504 the proxy made for f1's timeout counts for f1"
    );
    assert_series(
        &m,
        &[
            ("leaderproxy_requests_total", &[("backend", "none")], 0.0),
            (
                "leaderproxy_request_duration_seconds_count",
                &[("role", "read")],
                7.0,
            ),
            (
                "leaderproxy_request_duration_seconds_count",
                &[("role", "write")],
                1.0,
            ),
            (
                "leaderproxy_upstream_timeouts_total",
                &[("backend", "f1")],
                1.0,
            ),
            ("leaderproxy_backend_in_flight", &[("backend", "f1")], 0.0),
        ],
    );
    assert!(series(&m, "leaderproxy_client_connections", &[]) >= 1.0);

    // The leader dies: a connect error, a re-sent (held) write, no leader, hold
    // histogram, leader changes, time without leader, probe failures.
    l.kill();
    // The write must find the leader dead by connecting, not race the
    // leader's FIN on a pooled connection (that write would be ambiguous).
    wait_until(
        Duration::from_secs(2),
        "pooled connections to l closed",
        || async { p.routing().await["backends"][0]["idle_connections"] == 0 },
    )
    .await;
    let r = p.put("/w2").await;
    assert_eq!(r.status, 503, "{}", r.text());
    wait_until(Duration::from_secs(3), "leader gone", || async {
        p.routing().await["leader"].is_null()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = p.metrics().await;
    assert!(
        series(
            &m,
            "leaderproxy_upstream_connect_errors_total",
            &[("backend", "l")]
        ) >= 1.0
    );
    assert_eq!(series(&m, "leaderproxy_writes_resent_total", &[]), 1.0);
    assert_eq!(
        series(&m, "leaderproxy_held_writes", &[]),
        0.0,
        "no write is held any more"
    );
    assert_series(
        &m,
        &[
            ("leaderproxy_write_hold_seconds_count", &[], 1.0),
            ("leaderproxy_leader_known", &[], 0.0),
            ("leaderproxy_backend_is_leader", &[("backend", "l")], 0.0),
        ],
    );
    assert!(
        series(&m, "leaderproxy_leader_changes_total", &[]) >= 2.0,
        "to l, then to none"
    );
    assert!(
        series(
            &m,
            "leaderproxy_probe_failures_total",
            &[("backend", "l"), ("kind", "leader")]
        ) >= 1.0
    );
    assert_eq!(
        series(&m, "leaderproxy_backend_healthy", &[("backend", "l")]),
        0.0,
        "refused connection: down at once"
    );
    let before = series(&m, "leaderproxy_no_leader_seconds_total", &[]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = series(
        &p.metrics().await,
        "leaderproxy_no_leader_seconds_total",
        &[],
    );
    assert!(
        after - before >= 0.5,
        "time without a leader is counted: {before} -> {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_counted() {
    let l = Fake::start("l", Role::Leader).await;
    let p = Proxy::start(&config_for(&[&l], "limits: { max_connections: 1 }\n")).await;
    let first = served_connection(p.addr, "/a", None);
    // The first connection stays open (keep-alive); a second is closed at once.
    let mut second = std::net::TcpStream::connect(p.addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = second.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = Vec::new();
    let n = second.read_to_end(&mut out).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "the second connection was served: {}",
        String::from_utf8_lossy(&out)
    );
    let m = p.metrics().await;
    assert_series(
        &m,
        &[
            ("leaderproxy_rejected_connections_total", &[], 1.0),
            ("leaderproxy_client_connections", &[], 1.0),
        ],
    );
    drop(first);
}

//! Criterion benchmarks of the request hot path: classification, follower
//! picking, routing-table snapshots and a full in-process round trip
//! (client -> leaderproxy -> backend) over HTTP/1.1 and h2c.
//!
//! ```text
//! cargo bench --bench hot_path
//! cargo bench --bench hot_path -- --quick
//! ```

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use leaderproxy::backend::InFlight;
use leaderproxy::balance::Picker;
use leaderproxy::config::{BackendConfig, Config, Policy};
use leaderproxy::metrics::Metrics;
use leaderproxy::routing::classify::MethodSet;
use leaderproxy::routing::{classify, Backend, Role, Route, RoutingTable, Rule, Shared};

// ------------------------------------------------------------- classify

fn rule(methods: &[Method], prefix: Option<&str>, regex: Option<&str>, to: Role) -> Rule {
    Rule {
        methods: (!methods.is_empty()).then(|| MethodSet::from_methods(methods)),
        path_prefix: prefix.map(str::to_string),
        path_regex: regex.map(|r| regex::Regex::new(r).unwrap()),
        route: Route {
            role: to,
            ..Route::DEFAULT
        },
    }
}

/// Ten rules in the spirit of the etcd/webdis presets: method sets, path
/// prefixes and one regex (without a method set, so it runs for every
/// request that gets that far).
fn ten_rules() -> Vec<Rule> {
    use Method as M;
    vec![
        rule(&[M::GET, M::HEAD], Some("/v2/keys/"), None, Role::Read),
        rule(&[], Some("/SET/"), None, Role::Write),
        rule(&[M::POST], Some("/v3/kv/range"), None, Role::Read),
        rule(&[M::POST], Some("/v3/kv/put"), None, Role::Write),
        rule(&[M::PUT, M::DELETE], Some("/v2/keys/"), None, Role::Write),
        rule(&[M::GET], Some("/GET/"), None, Role::Read),
        rule(&[M::OPTIONS], None, None, Role::Read),
        rule(
            &[],
            None,
            Some(r"^/etcdserverpb\.KV/(Range|Txn)$"),
            Role::Read,
        ),
        rule(&[M::GET], Some("/health"), None, Role::Read),
        rule(
            &[M::GET, M::HEAD],
            Some("/v3/maintenance/status"),
            None,
            Role::Read,
        ),
    ]
}

fn bench_classify(c: &mut Criterion) {
    let rules = ten_rules();
    let cases: [(&str, Method, &str, Role); 3] = [
        ("first", Method::GET, "/v2/keys/foo/bar", Role::Read),
        ("last", Method::GET, "/v3/maintenance/status", Role::Read),
        ("none", Method::POST, "/v3/lease/grant", Role::Write),
    ];
    // The cases really hit the rule they are named after.
    for (name, m, p, want) in &cases {
        assert_eq!(classify(&rules, m, p).role, *want, "case {name}");
    }
    assert_eq!(
        classify(&rules[..9], &Method::GET, cases[1].2).role,
        Role::Write
    );

    let mut g = c.benchmark_group("classify/10_rules");
    for (name, m, p, _) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| classify(black_box(&rules), black_box(m), black_box(p)))
        });
    }
    g.finish();
}

// ------------------------------------------------------------------ pick

/// `n` backends with uneven load (so least-connections has something to
/// compare); the in-flight guards are returned to keep that load.
fn backends(n: usize, metrics: &Metrics) -> (Vec<Arc<Backend>>, Vec<InFlight>) {
    let mut load = Vec::new();
    let bs = (0..n)
        .map(|i| {
            let port = 20000 + i;
            let cfg = BackendConfig {
                name: format!("b{i}"),
                authority: format!("127.0.0.1:{port}").parse().unwrap(),
                url: format!("http://127.0.0.1:{port}"),
                weight: (i % 3) as u32 + 1,
                h2c: false,
                tls: None,
                zone: None,
                priority: 0,
                max_connections: None,
                tcp: None,
            };
            let b = Arc::new(Backend::new(&cfg, metrics, 1, 1024));
            load.extend((0..(i * 7) % 5).map(|_| b.begin_request()));
            b
        })
        .collect();
    (bs, load)
}

fn bench_pick(c: &mut Criterion) {
    let metrics = Metrics::new();
    let client: IpAddr = IpAddr::from([10, 1, 2, 3]);
    let policies = [
        ("round_robin", Policy::RoundRobin),
        ("least_connections", Policy::LeastConnections),
        ("ip_hash", Policy::IpHash),
    ];
    let (sets, _load): (Vec<Vec<Arc<Backend>>>, Vec<Vec<InFlight>>) =
        [3, 30, 300].iter().map(|&n| backends(n, &metrics)).unzip();
    for (pname, policy) in policies {
        let mut g = c.benchmark_group(format!("pick/{pname}"));
        for followers in &sets {
            let picker = Picker::build(policy, followers);
            assert!(picker.pick(followers, client, None).is_some());
            g.bench_with_input(
                BenchmarkId::from_parameter(followers.len()),
                followers,
                |b, f| b.iter(|| picker.pick(black_box(f), black_box(client), None)),
            );
        }
        g.finish();
    }
}

// ----------------------------------------------------------- consistency

/// The read-your-writes additions to a read: the session lookup (in a map
/// of 100,000 sessions, sharded) and `pick_fresh` when no follower has
/// caught up (the worst case: every follower is looked at, then the leader).
fn bench_consistency(c: &mut Criterion) {
    use leaderproxy::consistency::{Sessions, Written};
    use leaderproxy::routing::Need;
    let sessions = Sessions::new(
        100_000,
        prometheus::IntCounter::new("e", "e").unwrap(),
        prometheus::IntGauge::new("s", "s").unwrap(),
    );
    for i in 0..100_000u32 {
        sessions.wrote(
            sessions.id(format!("session-{i}").as_bytes()),
            Written::At(i as u64),
        );
    }
    let mut g = c.benchmark_group("consistency");
    g.bench_function("session_lookup", |b| {
        b.iter(|| sessions.get(sessions.id(black_box(b"session-4242"))))
    });
    let cfg = Arc::new(leaderproxy::config::parse(TABLE_YAML, Path::new("bench.yaml")).unwrap());
    let metrics = Metrics::new();
    let (bs, _load) = backends(4, &metrics);
    let mut t = table(1, &bs[1..], &cfg);
    t.leader = leaderproxy::routing::LeaderState::Known(leaderproxy::routing::LeaderInfo {
        backend: bs[0].clone(),
        since: std::time::SystemTime::now(),
        term: None,
    });
    let client: IpAddr = IpAddr::from([10, 1, 2, 3]);
    let need = Need {
        min_position: Some(7),
        leader_only: false,
    };
    assert!(t
        .pick_fresh(client, need, None)
        .is_some_and(|(_, leader)| leader));
    g.bench_function("pick_fresh_3_stale_followers", |b| {
        b.iter(|| {
            t.pick_fresh(black_box(client), black_box(need), None)
                .map(|x| x.1)
        })
    });
    g.bench_function("pick_read_3_followers", |b| {
        b.iter(|| t.pick_read(black_box(client)).map(|x| x.id))
    });
    g.finish();
}

// ----------------------------------------------------------------- table

const TABLE_YAML: &str = "\
listen: 127.0.0.1:0
admin: 127.0.0.1:0
backends:
  - { name: a, url: \"http://127.0.0.1:21001\" }
  - { name: b, url: \"http://127.0.0.1:21002\" }
  - { name: c, url: \"http://127.0.0.1:21003\" }
leader: { path: /leader, expect: { status: [200] } }
routes: [ { methods: [GET], to: read } ]
";

fn table(epoch: u64, backends: &[Arc<Backend>], cfg: &Arc<Config>) -> RoutingTable {
    let mut t = RoutingTable::empty(backends.to_vec(), cfg.clone());
    t.epoch = epoch;
    t.ready = true;
    t.followers = backends.to_vec();
    t.picker = Picker::build(cfg.reads.policy, &t.followers);
    t
}

/// Stops and joins the background threads even if the bench panics.
struct Background {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Background {
    fn finish(&mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(|t| t.join().expect("background thread"))
            .collect()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.finish();
    }
}

fn bench_table(c: &mut Criterion) {
    let cfg = Arc::new(leaderproxy::config::parse(TABLE_YAML, Path::new("bench.yaml")).unwrap());
    let metrics = Metrics::new();
    let bs: Vec<Arc<Backend>> = cfg
        .backends
        .iter()
        .map(|b| Arc::new(Backend::new(b, &metrics, 1, 1024)))
        .collect();
    let shared = Arc::new(Shared::new(table(1, &bs, &cfg)));

    let mut g = c.benchmark_group("table");
    // Baseline: nobody else touches the cell.
    g.bench_function("load_uncontended", |b| b.iter(|| black_box(shared.load())));

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(shared.load());
                n += 1;
            }
            n
        })
    };
    let writer = {
        let (shared, stop, bs, cfg) = (shared.clone(), stop.clone(), bs.clone(), cfg.clone());
        std::thread::spawn(move || {
            let mut epoch = 1u64;
            while !stop.load(Ordering::Relaxed) {
                epoch += 1;
                shared.publish(table(epoch, &bs, &cfg));
            }
            epoch - 1
        })
    };
    let mut bg = Background {
        stop,
        threads: vec![reader, writer],
    };
    g.bench_function("load", |b| b.iter(|| black_box(shared.load())));
    g.finish();
    let counts = bg.finish();
    eprintln!(
        "table/load background: {} reader loads, {} publishes",
        counts[0], counts[1]
    );
    // No assertion: under `cargo test --all-targets` each bench runs once and
    // the writer may not have been scheduled yet.
}

// ------------------------------------------------------------ round trip

/// Exactly 70 bytes, like `benches/bench_backend.rs`.
const BODY: &[u8] =
    b"{\"ok\":true,\"from\":\"bench_backend\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
const _: () = assert!(BODY.len() == 70);

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Everything (including the leader probe `GET /leader` and the health
    // probe `GET /`) gets 200 and the same body.
    Ok(Response::new(Full::new(Bytes::from_static(BODY))))
}

/// A tiny HTTP/1.1 backend on its own thread; stops when the sender is dropped.
struct TinyBackend {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TinyBackend {
    fn start() -> TinyBackend {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-backend".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    loop {
                        let s = tokio::select! {
                            r = listener.accept() => match r {
                                Ok((s, _)) => s,
                                Err(_) => continue,
                            },
                            _ = &mut stop_rx => return,
                        };
                        let _ = s.set_nodelay(true);
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(s), service_fn(answer))
                                .await;
                        });
                    }
                });
                // Dropping the runtime cancels the connection tasks.
            })
            .unwrap();
        TinyBackend {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TinyBackend {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The proxy started in-process; shut down (bounded) on drop.
struct RunningProxy(Option<leaderproxy::app::Running>);

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.shutdown();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                r.join();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(10)).is_err() {
                eprintln!("round_trip: proxy threads did not stop within 10s");
            }
        }
    }
}

fn proxy_yaml(backend: SocketAddr) -> String {
    format!(
        "\
listen: 127.0.0.1:0
admin: 127.0.0.1:0
workers: 1
shutdown_grace: 2s
backends:
  - {{ name: b0, url: \"http://{backend}\" }}
health: {{ path: /, interval: 200ms, timeout: 100ms, rise: 1, fall: 1 }}
leader: {{ path: /leader, interval: 200ms, timeout: 100ms, expect: {{ status: [200] }} }}
routes: [ {{ methods: [GET], to: read }} ]
reads: {{ fallback_to_leader: true }}
"
    )
}

/// Polls `GET /bench` through the proxy until it answers 200 (10s deadline).
async fn wait_ready(proxy: SocketAddr) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{proxy}/bench").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match client.get(uri.clone()).await {
            Ok(r) if r.status() == StatusCode::OK => return,
            Ok(r) => format!("status {}", r.status()),
            Err(e) => format!("error {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "proxy not routing GET /bench within 10s (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check(resp: Response<Incoming>) {
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), BODY.len());
}

fn bench_round_trip(c: &mut Criterion) {
    let backend = TinyBackend::start();
    let cfg = leaderproxy::config::parse(&proxy_yaml(backend.addr), Path::new("bench.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = RunningProxy(Some(leaderproxy::app::start(cfg).unwrap()));
    let addr = proxy.0.as_ref().unwrap().listen[0];

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_ready(addr));

    // One keep-alive HTTP/1.1 connection.
    let h1 = rt.block_on(async {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        tokio::sync::Mutex::new(tx)
    });
    // One h2c (prior knowledge) connection.
    let h2 = rt.block_on(async {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (tx, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(s),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        tx
    });
    let h1_req = || {
        Request::get("/bench")
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let h2_uri: http::Uri = format!("http://{addr}/bench").parse().unwrap();
    let h2_req = || {
        Request::get(h2_uri.clone())
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    let mut g = c.benchmark_group("round_trip");
    g.bench_function("http1", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let h1 = &h1;
            async move {
                let mut tx = h1.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    tx.ready().await.unwrap();
                    check(tx.send_request(h1_req()).await.unwrap()).await;
                }
                start.elapsed()
            }
        })
    });
    g.bench_function("h2", |b| {
        b.to_async(&rt).iter(|| {
            let mut tx = h2.clone();
            let req = h2_req();
            async move { check(tx.send_request(req).await.unwrap()).await }
        })
    });
    g.finish();

    // Close the client connections first so the graceful shutdown has
    // nothing to wait for, then stop the proxy and the backend.
    drop(h1);
    drop(h2);
    drop(rt);
    drop(proxy);
    drop(backend);
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_classify, bench_pick, bench_consistency, bench_table, bench_round_trip
}
criterion_main!(benches);

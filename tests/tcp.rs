//! TCP listeners against in-process fake nodes: each fake answers the HTTP
//! probes at its `url`, and a line server at its data address (`tcp`)
//! greets every connection with its name and echoes lines back. Where a
//! connection goes, how a write connection waits for a leader, and when
//! the proxy closes a connection (and counts why).

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use admin::counter;
use fake::{config_with, config_with_data, wait_until, Fake, Proxy, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A data address: greets each connection with `name\n`, then echoes lines.
struct Data {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

impl Data {
    async fn start(name: &'static str) -> Data {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let count = open.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    if w.write_all(format!("{name}\n").as_bytes()).await.is_ok() {
                        while let Ok(Some(line)) = lines.next_line().await {
                            if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Data { addr, open }
    }
}

/// A client connection through a TCP listener.
struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            lines: BufReader::new(r).lines(),
            w,
        }
    }

    /// The name of the backend that answered (its greeting), within 5s.
    async fn greeting(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("a greeting or the end within 5s")
            .ok()
            .flatten()
    }

    async fn echo(&mut self, s: &str) -> Option<String> {
        self.w.write_all(format!("{s}\n").as_bytes()).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("an answer or the end within 5s")
            .ok()
            .flatten()
    }

    /// Whether the proxy closes the connection within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.lines.next_line()).await,
            Ok(Ok(None)) | Ok(Err(_))
        )
    }
}

/// Fake nodes with their data servers, and a proxy with `tcp` listeners.
struct Cluster {
    fakes: Vec<Fake>,
    data: Vec<Data>,
    proxy: Proxy,
}

impl Cluster {
    /// `names[0]` leads. `tcp`: the listeners (YAML flow list entries
    /// without `listen`, each gets 127.0.0.1:0); `extra`: more config.
    async fn start(names: &[&'static str], tcp: &[&str], extra: &str) -> Cluster {
        let mut fakes = Vec::new();
        let mut data = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let role = if i == 0 { Role::Leader } else { Role::Follower };
            fakes.push(Fake::start(n, role).await);
            data.push(Data::start(n).await);
        }
        let listeners: Vec<String> = tcp
            .iter()
            .map(|l| format!("  - {{ listen: \"127.0.0.1:0\", {l} }}\n"))
            .collect();
        let addrs: Vec<SocketAddr> = data.iter().map(|d| d.addr).collect();
        let yaml = config_with_data(
            &fakes,
            &addrs,
            &format!("tcp:\n{}{extra}", listeners.concat()),
        );
        let proxy = Proxy::start(&yaml).await;
        proxy
            .wait_leader(Some(names[0]), Duration::from_secs(3))
            .await;
        Cluster { fakes, data, proxy }
    }

    /// The bound address of the `i`th tcp listener.
    fn port(&self, i: usize) -> SocketAddr {
        self.proxy.running.as_ref().unwrap().tcp[i]
    }

    fn fake(&self, name: &str) -> &Fake {
        self.fakes.iter().find(|f| f.state.name == name).unwrap()
    }

    async fn closed(&self, reason: &str) -> u64 {
        let series = format!(
            "leaderproxy_tcp_closed_total{{listener=\"{}\",reason=\"{reason}\"}}",
            self.port(0)
        );
        counter(&self.proxy.metrics().await, &series)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_connections_reach_the_leader_and_read_connections_the_followers() {
    let c = Cluster::start(&["l", "f1", "f2"], &["to: write", "to: read"], "").await;
    for _ in 0..4 {
        let mut w = Client::connect(c.port(0)).await;
        assert_eq!(w.greeting().await.as_deref(), Some("l"));
        assert_eq!(w.echo("set a 1").await.as_deref(), Some("set a 1"));
    }
    admin::wait_followers(&c.proxy, &["f1", "f2"], Duration::from_secs(5)).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut r = Client::connect(c.port(1)).await;
        seen.push(r.greeting().await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["f1", "f1", "f2", "f2"],
        "round-robin over the followers"
    );

    let _open = Client::connect(c.port(0)).await;
    let routing = c.proxy.routing().await;
    let tcp = &routing["tcp"];
    assert_eq!(tcp[0]["listen"], c.port(0).to_string());
    assert_eq!(tcp[0]["to"], "write");
    assert_eq!(tcp[0]["targets"], serde_json::json!(["l"]));
    assert_eq!(tcp[1]["to"], "read");
    assert_eq!(tcp[1]["policy"], "round_robin");
    assert_eq!(tcp[1]["targets"], serde_json::json!(["f1", "f2"]));
    wait_until(
        Duration::from_secs(3),
        "the admin API counts the open connection",
        || async { c.proxy.routing().await["tcp"][0]["open_connections"] == 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_closes_every_connection_to_the_old_leader_and_new_ones_reach_the_new() {
    let c = Cluster::start(&["l", "f"], &["to: write"], "").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut w = Client::connect(c.port(0)).await;
        assert_eq!(w.greeting().await.as_deref(), Some("l"));
        open.push(w);
    }
    assert_eq!(c.data[0].open.load(Ordering::SeqCst), 3);
    c.fake("l").set_role(Role::Follower);
    c.fake("f").set_role(Role::Leader);
    for w in &mut open {
        assert!(
            w.closed_within(Duration::from_secs(3)).await,
            "a connection to the deposed leader stays open"
        );
    }
    wait_until(
        Duration::from_secs(3),
        "the old leader's sessions end",
        || async { c.data[0].open.load(Ordering::SeqCst) == 0 },
    )
    .await;
    assert_eq!(c.closed("leader_change").await, 3);
    c.proxy.wait_leader(Some("f"), Duration::from_secs(3)).await;
    let mut w = Client::connect(c.port(0)).await;
    assert_eq!(w.greeting().await.as_deref(), Some("f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_leader_a_write_connection_is_held_then_connected_to_the_next_one() {
    let c = Cluster::start(&["l", "f"], &["to: write"], "writes: { hold: 5s }\n").await;
    c.fake("l").set_role(Role::Follower);
    c.proxy.wait_leader(None, Duration::from_secs(3)).await;
    let port = c.port(0);
    let held = tokio::spawn(async move {
        let mut w = Client::connect(port).await;
        w.greeting().await
    });
    let scrape = format!("leaderproxy_tcp_held_connections{{listener=\"{port}\"}}");
    wait_until(Duration::from_secs(3), "the connection is held", || async {
        counter(&c.proxy.metrics().await, &scrape) == 1
    })
    .await;
    assert!(!held.is_finished(), "held, not refused");
    c.fake("f").set_role(Role::Leader);
    assert_eq!(held.await.unwrap().as_deref(), Some("f"));
    assert_eq!(c.closed("no_leader").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_connection_is_closed_when_the_hold_runs_out() {
    let c = Cluster::start(&["l", "f"], &["to: write"], "writes: { hold: 300ms }\n").await;
    c.fake("l").set_role(Role::Follower);
    c.proxy.wait_leader(None, Duration::from_secs(3)).await;
    let mut w = Client::connect(c.port(0)).await;
    assert_eq!(w.greeting().await, None, "closed, never connected");
    assert_eq!(c.closed("no_leader").await, 1);
    assert_eq!(c.data[1].open.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_connection_to_a_follower_that_turns_unhealthy_closes_only_under_on_unhealthy_close()
{
    let c = Cluster::start(
        &["l", "f"],
        &["to: read, on_unhealthy: close", "to: read"],
        "",
    )
    .await;
    admin::wait_followers(&c.proxy, &["f"], Duration::from_secs(5)).await;
    let mut closing = Client::connect(c.port(0)).await;
    let mut keeping = Client::connect(c.port(1)).await;
    assert_eq!(closing.greeting().await.as_deref(), Some("f"));
    assert_eq!(keeping.greeting().await.as_deref(), Some("f"));
    c.fake("f").kill();
    assert!(closing.closed_within(Duration::from_secs(3)).await);
    assert_eq!(c.closed("unhealthy").await, 1);
    assert_eq!(
        keeping.echo("still here").await.as_deref(),
        Some("still here"),
        "on_unhealthy: keep (the default) keeps it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_its_idle_time_and_a_busy_one_is_not() {
    let c = Cluster::start(&["l"], &["to: write, idle: 400ms"], "").await;
    let mut silent = Client::connect(c.port(0)).await;
    let mut busy = Client::connect(c.port(0)).await;
    assert_eq!(silent.greeting().await.as_deref(), Some("l"));
    assert_eq!(busy.greeting().await.as_deref(), Some("l"));
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(busy.echo(&i.to_string()).await, Some(i.to_string()));
    }
    assert!(silent.closed_within(Duration::from_secs(2)).await);
    assert_eq!(c.closed("idle").await, 1);
    assert_eq!(busy.echo("x").await.as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_count_against_limits_max_connections() {
    let c = Cluster::start(&["l"], &["to: write"], "limits: { max_connections: 2 }\n").await;
    let mut a = Client::connect(c.port(0)).await;
    let mut b = Client::connect(c.port(0)).await;
    assert_eq!(a.greeting().await.as_deref(), Some("l"));
    assert_eq!(b.greeting().await.as_deref(), Some("l"));
    let mut third = Client::connect(c.port(0)).await;
    assert_eq!(third.greeting().await, None, "the third is refused");
    let scrape = c.proxy.metrics().await;
    assert_eq!(
        counter(&scrape, "leaderproxy_rejected_connections_total"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_address_from_its_proxy_header_reaches_the_backend_in_a_proxy_v2_header() {
    let l = Fake::start("l", Role::Leader).await;
    // The data address: reads the PROXY v2 header and what follows.
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_addr = data.local_addr().unwrap();
    let got = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut s, _) = data.accept().await.unwrap();
        let mut head = [0u8; 16 + 12];
        s.read_exact(&mut head).await.unwrap();
        let mut rest = [0u8; 5];
        s.read_exact(&mut rest).await.unwrap();
        (head, rest)
    });
    let yaml = config_with(
        &[(&l, &format!("tcp: \"{data_addr}\""))],
        "trusted_proxies: [127.0.0.1]\ntcp:\n  - { listen: \"127.0.0.1:0\", to: write, proxy_protocol: true, send_proxy_protocol: true }\n",
    );
    let p = Proxy::start(&yaml).await;
    p.wait_leader(Some("l"), Duration::from_secs(3)).await;
    let port = p.running.as_ref().unwrap().tcp[0];
    let mut c = TcpStream::connect(port).await.unwrap();
    let header = format!(
        "PROXY TCP4 192.0.2.9 127.0.0.1 5555 {}\r\nhello",
        port.port()
    );
    c.write_all(header.as_bytes()).await.unwrap();
    let (head, rest) = tokio::time::timeout(Duration::from_secs(5), got)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "a v2 signature");
    assert_eq!(
        head[12..16],
        [0x21, 0x11, 0, 12],
        "PROXY, TCP over IPv4, 12 bytes"
    );
    assert_eq!(
        head[16..20],
        [192, 0, 2, 9],
        "the client from the PROXY header"
    );
    assert_eq!(head[20..24], [127, 0, 0, 1], "the address it connected to");
    assert_eq!(u16::from_be_bytes([head[24], head[25]]), 5555);
    assert_eq!(u16::from_be_bytes([head[26], head[27]]), port.port());
    assert_eq!(
        &rest, b"hello",
        "then the bytes sent after the client's header"
    );
}

//! RESP listeners (`tcp[].protocol: resp`) against in-process fake nodes:
//! each fake answers the HTTP probes at its `url` (who leads), and a fake
//! Redis at its data address (`tests/support/fake_redis.rs`) answers reads
//! with its name, takes writes only while told it leads, and can drop a
//! connection on a write. Where each command goes, the client's order,
//! pinning, the failover rules (hold, READONLY re-send, ambiguous writes),
//! shared upstream connections and bad input.

#[path = "support/admin.rs"]
mod admin;
#[path = "support/fake.rs"]
mod fake;
#[path = "support/fake_redis.rs"]
mod fake_redis;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use admin::counter;
use fake::{config_with_data, wait_until, Fake, Proxy, Role};
use fake_redis::{RedisNode, RespClient};

const UNREPLICATED: &str = "-UNREPLICATED leaderproxy: applied on the primary, but fewer than 1 replicas acknowledged it within 50ms";
const AMBIGUOUS: &str = "-ERR leaderproxy: the connection to the primary broke before the reply; the command may have been applied";

struct Cluster {
    fakes: Vec<Fake>,
    nodes: Vec<RedisNode>,
    proxy: Proxy,
}

impl Cluster {
    /// `names[0]` leads when `led`; `extra`: more config.
    async fn start(names: &[&str], led: bool, extra: &str) -> Cluster {
        Cluster::build(names, led, "", extra).await
    }

    /// `names[0]` leads; `listener`: more keys of the listener.
    async fn start_with(names: &[&str], listener: &str, extra: &str) -> Cluster {
        Cluster::build(names, true, listener, extra).await
    }

    async fn build(names: &[&str], led: bool, listener: &str, extra: &str) -> Cluster {
        let mut fakes = Vec::new();
        let mut nodes = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let leads = led && i == 0;
            let role = if leads { Role::Leader } else { Role::Follower };
            fakes.push(Fake::start(n, role).await);
            nodes.push(RedisNode::start(n, leads).await);
        }
        let addrs: Vec<SocketAddr> = nodes.iter().map(|d| d.addr).collect();
        let yaml = config_with_data(
            &fakes,
            &addrs,
            &format!(
                "tcp:\n  - {{ listen: \"127.0.0.1:0\", protocol: resp{}{listener} }}\n{extra}",
                if listener.is_empty() { "" } else { ", " }
            ),
        );
        let proxy = Proxy::start(&yaml).await;
        if led {
            proxy
                .wait_leader(Some(names[0]), Duration::from_secs(3))
                .await;
            admin::wait_followers(&proxy, &names[1..], Duration::from_secs(3)).await;
        }
        Cluster {
            fakes,
            nodes,
            proxy,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.running.as_ref().unwrap().tcp[0]
    }

    async fn client(&self) -> RespClient {
        RespClient::connect(self.addr()).await
    }

    /// Makes node `i` the leader (probes and data), the others followers.
    fn lead(&self, i: usize) {
        for (j, (f, n)) in self.fakes.iter().zip(&self.nodes).enumerate() {
            f.set_role(if i == j { Role::Leader } else { Role::Follower });
            n.leads.store(i == j, Ordering::SeqCst);
        }
    }

    /// Counter `name{listener="<this listener>",<label>}`, 0 when absent.
    async fn metric(&self, name: &str, label: &str) -> u64 {
        let series = format!("{name}{{listener=\"{}\",{label}}}", self.addr());
        counter(&self.proxy.metrics().await, &series)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_followers_writes_to_the_leader_in_the_clients_order() {
    let c = Cluster::start(&["l", "f1", "f2"], true, "").await;
    let mut cl = c.client().await;
    let replies = cl
        .pipeline(&["SET a 1", "GET a", "INCR n", "GET b", "PING", "SET c 2"])
        .await;
    assert_eq!(replies[0], "+OK");
    assert!(replies[1] == "f1" || replies[1] == "f2", "{replies:?}");
    assert_eq!(replies[2], ":1");
    assert!(replies[3] == "f1" || replies[3] == "f2", "{replies:?}");
    assert_eq!(replies[4], "+PONG");
    assert_eq!(replies[5], "+OK");
    let l = &c.nodes[0];
    assert_eq!((l.count("set"), l.count("incr"), l.count("get")), (2, 1, 0));
    // Another client's reads spread over both followers.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let mut other = c.client().await;
        seen.insert(other.cmd("GET x").await);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["f1", "f2"],
        "reads by round robin"
    );
    let scrape = c.proxy.metrics().await;
    assert!(scrape.contains("leaderproxy_resp_commands_total{backend=\"l\",class=\"write\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_readonly_goes_to_the_next_leader_and_the_client_never_sees_it() {
    let c = Cluster::start(&["l", "f1", "f2"], true, "writes: { hold: 5s }\n").await;
    let mut cl = c.client().await;
    assert_eq!(cl.cmd("SET k 1").await, "+OK");
    // The primary is demoted before the probes notice: it answers READONLY.
    c.nodes[0].leads.store(false, Ordering::SeqCst);
    let pending = tokio::spawn(async move {
        let r = cl.cmd("SET k 2").await;
        (r, cl)
    });
    wait_until(
        Duration::from_secs(3),
        "the READONLY answer counted",
        || async {
            c.metric("leaderproxy_resp_resent_total", "reason=\"readonly\"")
                .await
                >= 1
        },
    )
    .await;
    assert!(!pending.is_finished(), "held while no leader is known");
    c.lead(1);
    let (r, mut cl) = pending.await.unwrap();
    assert_eq!(r, "+OK", "sent again to the new leader");
    assert_eq!(c.nodes[1].count("set"), 1);
    assert_eq!(cl.cmd("SET k 3").await, "+OK");
    assert_eq!(
        c.nodes[1].count("set"),
        2,
        "later writes go to the new leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_connection_that_breaks_is_ambiguous_unless_idempotent_and_allowed() {
    let c = Cluster::start(&["l", "f1"], true, "").await;
    let mut cl = c.client().await;
    c.nodes[0].drop_writes.store(1, Ordering::SeqCst);
    assert_eq!(
        cl.cmd("SET k 1").await,
        AMBIGUOUS,
        "never sent twice by default"
    );
    assert_eq!(c.nodes[0].count("set"), 1);
    let allowed = Cluster::start(
        &["l", "f1"],
        true,
        "writes: { retry_ambiguous: idempotent }\n",
    )
    .await;
    let mut cl = allowed.client().await;
    allowed.nodes[0].drop_writes.store(1, Ordering::SeqCst);
    assert_eq!(cl.cmd("SET k 1").await, "+OK", "SET is idempotent");
    assert_eq!(allowed.nodes[0].count("set"), 2);
    allowed.nodes[0].drop_writes.store(1, Ordering::SeqCst);
    assert_eq!(cl.cmd("INCR n").await, AMBIGUOUS, "INCR is not");
    assert_eq!(allowed.nodes[0].count("incr"), 1);
    assert_eq!(
        allowed
            .metric(
                "leaderproxy_resp_resent_total",
                "reason=\"ambiguous_error\""
            )
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_leader_up_to_the_hold() {
    let c = Cluster::start(&["a", "b"], false, "writes: { hold: 3s }\n").await;
    let mut cl = c.client().await;
    let pending = tokio::spawn(async move { (cl.cmd("SET k 1").await, cl) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "held: no leader yet");
    c.lead(1);
    let (r, _cl) = pending.await.unwrap();
    assert_eq!(r, "+OK");
    assert_eq!(c.nodes[1].count("set"), 1);
    let short = Cluster::start(&["a", "b"], false, "writes: { hold: 200ms }\n").await;
    let mut cl = short.client().await;
    let t = std::time::Instant::now();
    assert_eq!(
        cl.cmd("SET k 1").await,
        "-TRYAGAIN leaderproxy: no primary within writes.hold; the command was not sent"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(short.nodes[0].count("set") + short.nodes[1].count("set"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_and_a_blocking_command_run_on_a_connection_of_their_own() {
    let c = Cluster::start(&["l", "f1"], true, "").await;
    let mut cl = c.client().await;
    let r = cl
        .pipeline(&["SET a 1", "MULTI", "SET b 2", "INCR n", "EXEC", "GET b"])
        .await;
    assert_eq!(r, ["+OK", "+OK", "+QUEUED", "+QUEUED", "[+OK,+OK]", "f1"]);
    let heard = c.nodes[0].heard();
    let conn_of = |w: &str| {
        heard
            .iter()
            .filter(|h| h.words[0].eq_ignore_ascii_case(w))
            .map(|h| h.conn)
            .collect::<Vec<_>>()
    };
    let tx = conn_of("multi")[0];
    assert_eq!(conn_of("exec"), [tx]);
    assert_eq!(conn_of("incr"), [tx]);
    let shared_set = conn_of("set")[0];
    assert_ne!(
        shared_set, tx,
        "the plain SET went over a shared connection"
    );
    // Another client's write meanwhile never lands inside the transaction.
    assert_eq!(cl.cmd("BLPOP q 1").await, "[q,l]");
    let blpop = conn_of_now(&c.nodes[0], "blpop");
    assert_ne!(blpop, shared_set, "a blocking command blocks nobody else");
    assert_eq!(
        c.metric("leaderproxy_resp_pinned_total", "why=\"transaction\"")
            .await,
        1
    );
    assert_eq!(
        c.metric("leaderproxy_resp_pinned_total", "why=\"blocking\"")
            .await,
        1
    );
}

fn conn_of_now(n: &RedisNode, w: &str) -> usize {
    n.heard()
        .iter()
        .find(|h| h.words[0].eq_ignore_ascii_case(w))
        .map(|h| h.conn)
        .expect("heard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_a_few_upstream_connections() {
    let c = Cluster::start(&["l", "f1"], true, "").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = c.addr();
        tasks.push(tokio::spawn(async move {
            let mut cl = RespClient::connect(addr).await;
            let r = cl.pipeline(&[&format!("SET k{i} v"), "GET x"]).await;
            assert_eq!(r, ["+OK", "f1"]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Two worker threads, one shared connection each per node and login.
    let conns = |n: &RedisNode, w: &str| {
        let mut c: Vec<usize> = n
            .heard()
            .iter()
            .filter(|h| h.words[0].eq_ignore_ascii_case(w))
            .map(|h| h.conn)
            .collect();
        c.sort();
        c.dedup();
        c.len()
    };
    assert_eq!(c.nodes[0].count("set"), 40);
    assert!(
        conns(&c.nodes[0], "set") <= 2,
        "{}",
        conns(&c.nodes[0], "set")
    );
    assert!(
        conns(&c.nodes[1], "get") <= 2,
        "{}",
        conns(&c.nodes[1], "get")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_write_is_answered_only_once_replicated() {
    let c = Cluster::start_with(
        &["l", "f1"],
        "resp: { wait_replicas: 1, wait_timeout: 50ms }",
        "",
    )
    .await;
    let l = &c.nodes[0];
    l.acks.store(1, Ordering::SeqCst);
    let mut cl = c.client().await;
    let r = cl
        .pipeline(&["SET a 1", "INCR n", "GET a", "SET b 2"])
        .await;
    assert_eq!(r, ["+OK", ":1", "f1", "+OK"]);
    // A WAIT after the writes on the same shared connection (jobs that
    // reach the connection together share one), the client never sees it;
    // reads are not followed by one.
    let mut words: Vec<(usize, String)> = l
        .heard()
        .into_iter()
        .filter(|h| !h.words[0].eq_ignore_ascii_case("command"))
        .map(|h| (h.conn, h.words.join(" ").to_ascii_uppercase()))
        .collect();
    let conn = words[0].0;
    if words.len() == 5 {
        // The two jobs came apart: each had its own WAIT.
        assert_eq!(words.remove(2), (conn, "WAIT 1 50".to_string()));
    }
    assert_eq!(
        words,
        [
            (conn, "SET A 1".to_string()),
            (conn, "INCR N".to_string()),
            (conn, "SET B 2".to_string()),
            (conn, "WAIT 1 50".to_string()),
        ]
    );
    assert_eq!(c.nodes[1].count("wait"), 0);

    // Not acknowledged in time: every write's success becomes an error
    // that says it was applied and may be lost; reads are untouched.
    l.acks.store(0, Ordering::SeqCst);
    let r = cl.pipeline(&["SET a 3", "GET a", "INCR n"]).await;
    assert!(r[0].starts_with(UNREPLICATED), "{r:?}");
    assert_eq!(r[1], "f1");
    assert!(r[2].starts_with(UNREPLICATED), "{r:?}");
    // A transaction: EXEC's array is the write.
    let r = cl.pipeline(&["MULTI", "SET t 1", "EXEC"]).await;
    assert_eq!(r[..2], ["+OK", "+QUEUED"]);
    assert!(r[2].starts_with(UNREPLICATED), "{r:?}");
    assert_eq!(
        c.metric(
            "leaderproxy_resp_resent_total",
            "reason=\"unreplicated_error\""
        )
        .await,
        3
    );
    l.acks.store(1, Ordering::SeqCst);
    let r = cl.pipeline(&["MULTI", "SET t 2", "EXEC"]).await;
    assert_eq!(r, ["+OK", "+QUEUED", "[+OK]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_redis_error_then_the_connection_closes() {
    let c = Cluster::start(&["l", "f1"], true, "").await;
    let mut cl = c.client().await;
    cl.send_raw(b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n").await;
    assert_eq!(cl.reply().await.as_deref(), Some("+PONG"));
    assert_eq!(
        cl.reply().await.as_deref(),
        Some("-ERR Protocol error: invalid bulk length")
    );
    assert_eq!(cl.reply().await, None, "closed");
    let mut cl = c.client().await;
    assert_eq!(cl.cmd("QUIT").await, "+OK");
    assert_eq!(cl.reply().await, None, "closed after QUIT");
}

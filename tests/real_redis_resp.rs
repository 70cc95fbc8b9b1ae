//! Real Redis 7 primary + 2 replicas + 3 Sentinels behind leaderproxy's
//! RESP-aware listener (`tcp: [{ listen, protocol: resp }]`), run with the
//! shipped config/redis-sentinel-resp.yaml (its listener on a free port, its
//! backends this cluster's). One cluster per test process, shared by the
//! tests one at a time (tests/support/redis_shared.rs); each test starts its
//! own proxy and uses its own keys.
//!
//! Asserted:
//! 1. routing: `SET` lands on the primary (each followed by a `WAIT`); `GET` (the nodes' own
//!    `INFO commandstats`) and `INFO server` (its `run_id`) through the
//!    listener are answered by the replicas, both of them, never the
//!    primary; the proxy counts them (`leaderproxy_resp_commands_total` per
//!    class and node); `/admin/routing` lists the listener as `protocol: resp`.
//! 2. differential: the same command sequences (strings, lists, hashes,
//!    MULTI/EXEC, WATCH with a conflicting write, BLPOP, Pub/Sub, a pipeline
//!    of 100, HELLO 3 and RESP3 replies, SELECT, AUTH, inline commands,
//!    errors, a protocol error and the close after it) give the same
//!    replies on a direct connection to the primary and through the listener.
//! 3. primary SIGKILL under `INCR` + `RPUSH <unique id>` load: no client
//!    sees `READONLY`, no acknowledged write lost (the shipped config's
//!    `wait_replicas: 1` answers a write once a replica has it: Redis
//!    replicates after it answers), none applied twice, the
//!    longest pause at most the promotion time + 0.1 s. HAProxy (TCP mode,
//!    ROLE checks) runs the same load in the same run: reported, not asserted.
//! 4. read-your-writes: with both replicas under `CLIENT PAUSE WRITE`,
//!    1,000 `SET`-then-`GET` pairs on one connection read 0 stale values.
//!
//! Needs redis-server, redis-sentinel, webdis and haproxy (`bash
//! tests/run.sh` installs them); `LEADERPROXY_SKIP_REAL=1` skips it.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/redis.rs"]
mod redis;

#[path = "support/resp.rs"]
mod resp;

#[path = "support/shell_cluster.rs"]
mod shell_cluster;

#[path = "support/redis_shared.rs"]
mod redis_shared;

#[path = "support/haproxy_redis.rs"]
mod haproxy_redis;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use haproxy_redis::Haproxy;
use procs::{free_port, spawn_proxy, wait_for, ProxyProc};
use redis::{redis_cmd, RedisCluster};
use resp::{LoadResult, LoadSpec, RespConn, Value};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const TIMEOUT: Duration = Duration::from_secs(5);

/// The shared cluster, healthy, and the shipped RESP config (with
/// `listener` merged into its listener and `overrides` on top) on it once it names the current primary the leader: the
/// proxy, its listener's port, the primary's index. None (with a notice)
/// when a binary is missing; `haproxy` asks for /usr/sbin/haproxy too.
fn begin(
    haproxy: bool,
    listener: &str,
    overrides: &str,
) -> Option<(MutexGuard<'static, RedisCluster>, ProxyProc, u16, usize)> {
    let mut bins = redis::BINARIES.to_vec();
    if haproxy {
        bins.push("/usr/sbin/haproxy");
    }
    if !procs::require_binaries("real_redis_resp", &bins) {
        return None;
    }
    let cluster = redis_shared::lock();
    let port = free_port();
    let proxy = spawn_proxy(BIN, &cluster.shipped_resp_yaml(port, listener, overrides));
    let master = cluster.master().expect("a master");
    proxy.wait_leader(&cluster.nodes[master].name, Duration::from_secs(10));
    Some((cluster, proxy, port, master))
}

/// Node index by `run_id`.
fn run_ids(cluster: &RedisCluster) -> HashMap<String, usize> {
    (0..cluster.nodes.len())
        .map(|i| (cluster.run_id(i).expect("run_id"), i))
        .collect()
}

/// Which node answered `INFO server` on a new connection to `port`.
fn info_answered_by(port: u16, ids: &HashMap<String, usize>) -> Option<usize> {
    let mut c = RespConn::connect(port, TIMEOUT).ok()?;
    let info = c.call(&["INFO", "server"]).ok()?;
    ids.get(&info.info_field("run_id")?).copied()
}

/// `INFO commandstats`' `calls` of `cmd` on node `i`.
fn calls(cluster: &RedisCluster, i: usize, cmd: &str) -> u64 {
    let info = redis_cmd(cluster.nodes[i].redis_port, &["INFO", "commandstats"]).expect("INFO");
    info.as_str()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
                .and_then(|v| v.split(',').next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until every running replica has processed the primary's whole
/// stream (up to 10 s: after a failover, Sentinel moves the other replica).
fn replicas_caught_up(cluster: &RedisCluster) {
    let master = cluster.master().expect("a master");
    let target = cluster.repl_offset(master).expect("the primary's offset");
    let master_port = cluster.nodes[master].redis_port;
    wait_for(
        Duration::from_secs(10),
        "the replicas caught up with the primary",
        || {
            (0..cluster.nodes.len())
                .filter(|&i| i != master && cluster.role(i).is_some())
                .all(|i| {
                    cluster.replica_of(i) == Some(master_port)
                        && cluster.repl_offset(i).is_some_and(|o| o >= target)
                })
        },
    );
}

/// Waits until reads through the listener reach a replica (their health
/// checks need `rise` successes after the proxy starts).
fn wait_replica_reads(cluster: &RedisCluster, port: u16, ids: &HashMap<String, usize>) {
    let master = cluster.master().expect("a master");
    wait_for(
        Duration::from_secs(10),
        "a read through the listener answered by a replica",
        || info_answered_by(port, ids).is_some_and(|i| i != master),
    );
}

// ---------------------------------------------------------------------------
// 1. routing
// ---------------------------------------------------------------------------

#[test]
fn set_lands_on_the_primary_and_reads_on_both_replicas() {
    let Some((cluster, proxy, port, master)) = begin(false, "", "") else {
        return;
    };
    let replicas: BTreeSet<usize> = (0..3).filter(|&i| i != master).collect();
    let ids = run_ids(&cluster);

    let waits = calls(&cluster, master, "wait");
    let mut c = RespConn::connect(port, TIMEOUT).unwrap();
    assert_eq!(
        c.call(&["SET", "ra:k", "v1"]).unwrap(),
        Value::Simple("OK".into())
    );
    assert_eq!(cluster.get(master, "ra:k").unwrap().as_deref(), Some("v1"));
    // redis-cli, the stock client, through the listener.
    let cli = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SET", "ra:cli", "v2"])
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), "OK");
    assert_eq!(
        cluster.get(master, "ra:cli").unwrap().as_deref(),
        Some("v2")
    );
    // The shipped `wait_replicas: 1`: each write was followed by a WAIT.
    assert_eq!(
        calls(&cluster, master, "wait") - waits,
        2,
        "WAITs after 2 SETs"
    );
    replicas_caught_up(&cluster);

    // INFO server: who answered, by run_id, over 20 new connections.
    wait_replica_reads(&cluster, port, &ids);
    let answered: Vec<Option<usize>> = (0..20).map(|_| info_answered_by(port, &ids)).collect();
    let seen: BTreeSet<usize> = answered.iter().flatten().copied().collect();
    assert_eq!(
        seen, replicas,
        "INFO server through the listener answered by {answered:?} (primary {master})"
    );

    // GET: counted by the nodes themselves.
    let before: Vec<u64> = (0..3).map(|i| calls(&cluster, i, "get")).collect();
    for _ in 0..20 {
        let mut c = RespConn::connect(port, TIMEOUT).unwrap();
        assert_eq!(
            c.call(&["GET", "ra:k"]).unwrap(),
            Value::Bulk(Some(b"v1".to_vec()))
        );
    }
    let grew: Vec<u64> = (0..3)
        .map(|i| calls(&cluster, i, "get") - before[i])
        .collect();
    assert_eq!(grew[master], 0, "GETs answered by the primary: {grew:?}");
    assert!(
        replicas.iter().all(|&i| grew[i] > 0) && grew.iter().sum::<u64>() == 20,
        "20 GETs per node: {grew:?} (primary {master})"
    );

    // The proxy's own count: commands per class and node.
    let m = proxy.metrics();
    let sent = |class: &str, i: usize| {
        let labels = [
            ("class", class),
            ("backend", cluster.nodes[i].name.as_str()),
        ];
        procs::metric_sum(&m, "leaderproxy_resp_commands_total", &labels)
    };
    assert!(
        sent("write", master) >= 1.0,
        "no write counted on the primary:\n{m}"
    );
    assert!(
        replicas.iter().all(|&i| sent("read", i) >= 1.0),
        "reads not counted on both replicas:\n{m}"
    );
    assert!(
        procs::metric_sum(&m, "leaderproxy_resp_upstream_connections", &[]) >= 1.0,
        "no shared upstream connection counted:\n{m}"
    );

    let routing = proxy.routing().to_string();
    assert!(
        routing.contains(r#""protocol":"resp""#),
        "/admin/routing does not list the RESP listener: {routing}"
    );
}

// ---------------------------------------------------------------------------
// 2. differential: direct to the primary vs through the listener
// ---------------------------------------------------------------------------

/// One step of a script, on client connection `.0` (0..4).
enum Step {
    /// Send one command and read its reply.
    Call(usize, Vec<String>),
    /// Send one command; its reply is read by a later `Read`.
    Send(usize, Vec<String>),
    /// Read one pending reply or push.
    Read(usize),
    /// Send every command at once, then read every reply.
    Pipeline(usize, Vec<Vec<String>>),
    /// Send these bytes as they are (inline commands, bad input), then read
    /// `.2` replies.
    Raw(usize, &'static str, usize),
}

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(str::to_string).collect()
}

fn call(c: usize, cmd: &str) -> Step {
    Step::Call(c, words(cmd))
}

/// The sequences, by name. Keys `d:*`; reads across connections only after
/// the write was seen through a blocking or pinned command.
fn scripts() -> Vec<(&'static str, Vec<Step>)> {
    let calls0 = |cmds: &[&str]| cmds.iter().map(|c| call(0, c)).collect::<Vec<_>>();
    let mut out = vec![
        (
            "strings",
            calls0(&[
                "SET d:s hello",
                "GET d:s",
                "APPEND d:s _world",
                "STRLEN d:s",
                "GETRANGE d:s 0 4",
                "SETNX d:s other",
                "INCR d:n",
                "INCRBY d:n 41",
                "DECR d:n",
                "GET d:n",
                "MSET d:a 1 d:b 2",
                "MGET d:a d:b d:none",
                "EXISTS d:a d:b d:none",
                "DEL d:a",
                "GET d:a",
                "SET d:x 1 NX",
                "SET d:x 2 XX GET",
                "GET d:x",
            ]),
        ),
        (
            "lists",
            calls0(&[
                "RPUSH d:l a b c",
                "LPUSH d:l z",
                "LRANGE d:l 0 -1",
                "LLEN d:l",
                "LPOP d:l",
                "RPOP d:l",
                "LINDEX d:l 1",
                "LRANGE d:l 0 -1",
                "LPOP d:l 5",
                "LLEN d:l",
                "LPOP d:l",
            ]),
        ),
        (
            "hashes",
            calls0(&[
                "HSET d:h f1 v1 f2 v2",
                "HGET d:h f1",
                "HGETALL d:h",
                "HINCRBY d:h n 3",
                "HMGET d:h f1 n nope",
                "HDEL d:h f1",
                "HLEN d:h",
                "HEXISTS d:h f2",
                "HKEYS d:h",
            ]),
        ),
        (
            "multi/exec",
            calls0(&[
                "SET d:m0 x",
                "MULTI",
                "SET d:m1 a",
                "INCR d:m2",
                "GET d:m1",
                "GET d:m0",
                "EXEC",
                "MULTI",
                "SET d:m1 b",
                "DISCARD",
                "GET d:m1",
                "MULTI",
                "SET d:m1 c",
                "NOSUCHCMD",
                "EXEC",
                "GET d:m1",
                "EXEC",
                "DISCARD",
            ]),
        ),
        (
            "watch",
            vec![
                call(0, "WATCH d:w"),
                call(0, "GET d:w"),
                call(1, "SET d:w theirs"),
                call(0, "MULTI"),
                call(0, "SET d:w mine"),
                call(0, "EXEC"),
                call(1, "GET d:w"),
                call(0, "WATCH d:w2"),
                call(0, "MULTI"),
                call(0, "SET d:w2 ok"),
                call(0, "EXEC"),
                call(0, "GET d:w2"),
                call(0, "WATCH d:w3"),
                call(0, "UNWATCH"),
                call(1, "SET d:w3 theirs"),
                call(0, "MULTI"),
                call(0, "SET d:w3 mine"),
                call(0, "EXEC"),
                call(0, "GET d:w3"),
            ],
        ),
        (
            "blpop",
            vec![
                call(0, "BLPOP d:bl 0.1"),
                Step::Send(0, words("BLPOP d:bl2 5")),
                call(1, "RPUSH d:bl2 x"),
                Step::Read(0),
                call(1, "LLEN d:bl2"),
                call(0, "RPUSH d:bl3 y"),
                call(0, "BLPOP d:bl3 1"),
                call(0, "SET d:after 1"),
                call(0, "GET d:after"),
            ],
        ),
        (
            "pubsub",
            vec![
                call(0, "SUBSCRIBE d:ch1 d:ch2"),
                Step::Read(0),
                call(1, "PUBLISH d:ch1 hi"),
                Step::Read(0),
                call(1, "PUBLISH d:ch2 there"),
                Step::Read(0),
                call(0, "PING"),
                call(0, "PSUBSCRIBE d:p*"),
                call(1, "PUBLISH d:px m"),
                Step::Read(0),
                call(0, "PUNSUBSCRIBE d:p*"),
                call(0, "UNSUBSCRIBE d:ch1 d:ch2"),
                Step::Read(0),
                call(0, "PING"),
                call(1, "PUBLISH d:ch1 gone"),
                call(0, "SET d:ps 1"),
                call(0, "GET d:ps"),
            ],
        ),
        ("pipeline", vec![Step::Pipeline(2, pipeline_100())]),
        (
            "hello 3",
            vec![
                call(3, "HELLO 3"),
                call(3, "HSET d:h3 a 1 b 2"),
                call(3, "HGETALL d:h3"),
                call(3, "ZADD d:z 1.5 m"),
                call(3, "ZSCORE d:z m"),
                call(3, "GET d:none"),
                call(3, "SADD d:set x"),
                call(3, "SMEMBERS d:set"),
                call(3, "EXISTS d:z"),
                Step::Pipeline(3, vec![words("HGETALL d:h3"), words("ZSCORE d:z m")]),
                call(3, "HELLO 2"),
                call(3, "HGETALL d:h3"),
                call(3, "GET d:none"),
            ],
        ),
        (
            "select",
            calls0(&[
                "SELECT 1",
                "SET d:db1 x",
                "GET d:db1",
                "SELECT 0",
                "GET d:db1",
                "SET d:db0 y",
                "GET d:db0",
            ]),
        ),
        (
            "errors",
            calls0(&[
                "SET d:wt x",
                "LPUSH d:wt y",
                "NOSUCHCMD a b",
                "GET",
                "INCR d:wt",
                "HGET d:wt f",
                "GET d:wt",
            ]),
        ),
        (
            "login",
            vec![
                call(0, "AUTH default any"),
                call(0, "AUTH onlyapassword"),
                call(0, "SET d:auth 1"),
                call(0, "GET d:auth"),
                call(1, "HELLO 3 AUTH default any"),
                call(1, "HGETALL d:none"),
                call(1, "GET d:auth"),
            ],
        ),
        (
            "inline and bad input",
            vec![
                Step::Raw(0, "PING\r\n", 1),
                Step::Raw(0, "SET d:in \"a b\"\r\nGET d:in\r\n", 2),
                Step::Raw(1, "*1\r\n$abc\r\n", 1),
                Step::Read(1),
            ],
        ),
    ];
    out.retain(|(_, s)| !s.is_empty());
    out
}

/// 100 commands: writes, reads of what this connection just wrote, a
/// WRONGTYPE error in the middle.
fn pipeline_100() -> Vec<Vec<String>> {
    (0..100)
        .map(|i| match i % 5 {
            0 => words(&format!("SET d:p{i} v{i}")),
            1 => words(&format!("GET d:p{}", i - 1)),
            2 => words("INCR d:pc"),
            3 => words(&format!("RPUSH d:pl {i}")),
            _ if i == 54 => words("GET d:pl"),
            _ => words("LRANGE d:pl 0 2"),
        })
        .collect()
}

/// A reply with what differs by connection blanked (`HELLO`'s client `id`).
fn normalize(v: Value) -> Value {
    let is_id = |k: &Value| k.as_str() == Some("id");
    match v {
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if is_id(&k) {
                        Value::Int(0)
                    } else {
                        normalize(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(Some(a)) => {
            let mut out = Vec::with_capacity(a.len());
            let mut after_id = false;
            for v in a {
                out.push(if after_id {
                    Value::Int(0)
                } else {
                    normalize(v)
                });
                after_id = out.last().is_some_and(is_id);
            }
            Value::Array(Some(out))
        }
        other => other,
    }
}

/// Runs `steps` against 127.0.0.1:`port`: every reply, labelled.
fn run_script(port: u16, steps: &[Step]) -> Vec<(String, Value)> {
    let mut conns: HashMap<usize, RespConn> = HashMap::new();
    let mut out = Vec::new();
    let mut pending: HashMap<usize, Vec<String>> = HashMap::new();
    for step in steps {
        // (connection, what is sent, a label per reply read)
        let (c, sends, labels): (usize, Vec<Vec<String>>, Vec<String>) = match step {
            Step::Call(c, cmd) => (*c, vec![cmd.clone()], vec![cmd.join(" ")]),
            Step::Send(c, cmd) => {
                pending.entry(*c).or_default().push(cmd.join(" "));
                (*c, vec![cmd.clone()], vec![])
            }
            Step::Read(c) => {
                let label = pending
                    .get_mut(c)
                    .and_then(|p| (!p.is_empty()).then(|| p.remove(0)))
                    .unwrap_or_else(|| "(next)".into());
                (*c, vec![], vec![format!("read: {label}")])
            }
            Step::Raw(c, bytes, n) => {
                let label = format!("raw {bytes:?}");
                (*c, vec![], vec![label; *n])
            }
            Step::Pipeline(c, cmds) => {
                let labels = cmds
                    .iter()
                    .enumerate()
                    .map(|(i, cmd)| format!("pipeline[{i}] {}", cmd.join(" ")))
                    .collect();
                (*c, cmds.clone(), labels)
            }
        };
        let conn = conns
            .entry(c)
            .or_insert_with(|| RespConn::connect(port, TIMEOUT).expect("connect"));
        let refs: Vec<Vec<&str>> = sends
            .iter()
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        let refs: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
        let raw = match step {
            Step::Raw(_, bytes, _) => bytes.as_bytes(),
            _ => b"",
        };
        if let Err(e) = conn.send(&refs).and_then(|()| conn.send_raw(raw)) {
            out.push((format!("c{c} send"), Value::Error(format!("io: {e}"))));
            conns.remove(&c);
            continue;
        }
        for label in labels {
            let label = format!("c{c} {label}");
            match conn.read() {
                Ok(v) => out.push((label, normalize(v))),
                Err(e) => {
                    out.push((label, Value::Error(format!("io: {e}"))));
                    conns.remove(&c);
                    break;
                }
            }
        }
    }
    out
}

/// FLUSHALL on the primary, directly, and the replicas caught up.
fn clean(cluster: &RedisCluster) {
    let master = cluster.master().expect("a master");
    redis_cmd(cluster.nodes[master].redis_port, &["FLUSHALL"]).expect("FLUSHALL");
    replicas_caught_up(cluster);
}

#[test]
fn the_listener_answers_like_a_direct_connection_to_the_primary() {
    let Some((cluster, proxy, port, master)) = begin(false, "", "") else {
        return;
    };
    let direct = cluster.nodes[master].redis_port;
    wait_replica_reads(&cluster, port, &run_ids(&cluster));

    let mut diffs = Vec::new();
    for (name, steps) in scripts() {
        clean(&cluster);
        let want = run_script(direct, &steps);
        clean(&cluster);
        let got = run_script(port, &steps);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w != g {
                diffs.push(format!(
                    "{name} #{i} {}:\n    direct: {:?}\n    proxy:  {:?} ({})",
                    w.0, w.1, g.1, g.0
                ));
            }
        }
        if want.len() != got.len() {
            diffs.push(format!(
                "{name}: {} replies direct, {} through the listener",
                want.len(),
                got.len()
            ));
        }
    }
    clean(&cluster);
    let m = proxy.metrics();
    let pinned =
        |why: &str| procs::metric_sum(&m, "leaderproxy_resp_pinned_total", &[("why", why)]);
    eprintln!(
        "real_redis_resp: pinned for a transaction {}, a blocking command {}, other {}",
        pinned("transaction"),
        pinned("blocking"),
        pinned("tunnel")
    );
    assert!(
        diffs.is_empty(),
        "{} replies differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 3. primary SIGKILL under load
// ---------------------------------------------------------------------------

/// Runs `spec`'s load in a thread until `stop`.
fn start_load(spec: LoadSpec, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<LoadResult> {
    let stop = stop.clone();
    std::thread::spawn(move || resp::write_load(&spec, &stop))
}

/// `spec`'s counter and list on node `i`, read directly.
fn counter_and_list(cluster: &RedisCluster, i: usize, spec: &LoadSpec) -> (u64, Vec<String>) {
    let n = cluster
        .get(i, &spec.counter)
        .unwrap()
        .map_or(0, |v| v.parse().unwrap());
    (n, cluster.lrange(i, &spec.list).unwrap())
}

/// The counter on node `i` reaches `n` within `within` (false if not).
fn counter_reaches(
    cluster: &RedisCluster,
    i: usize,
    spec: &LoadSpec,
    n: u64,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let now = cluster.get(i, &spec.counter).ok().flatten();
        if now
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= n)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// What a load left on the new primary, against what its clients saw.
struct Verdict {
    counter: u64,
    acked_incrs: u64,
    unsure_incrs: u64,
    lost: Vec<String>,
    duplicates: Vec<String>,
    never_sent: Vec<String>,
}

fn verdict(cluster: &RedisCluster, i: usize, spec: &LoadSpec, load: &LoadResult) -> Verdict {
    let (counter, list) = counter_and_list(cluster, i, spec);
    let mut seen = HashSet::new();
    let duplicates = list
        .iter()
        .filter(|id| !seen.insert(id.as_str()))
        .cloned()
        .collect();
    let sent = load.sent_ids();
    Verdict {
        counter,
        acked_incrs: load.acked_incrs(),
        unsure_incrs: load.unsure_incrs(),
        lost: load
            .acked_ids()
            .into_iter()
            .filter(|id| !seen.contains(id))
            .map(str::to_string)
            .collect(),
        duplicates,
        never_sent: list
            .iter()
            .filter(|id| !sent.contains(id.as_str()))
            .cloned()
            .collect(),
    }
}

fn report(name: &str, load: &LoadResult, v: &Verdict, killed_at: Instant) -> String {
    let (last, first) = load.acks_around(killed_at);
    format!(
        "{name}: {} writes, {} failed {:?}, longest pause {:?} (last ack {:?} before the kill, first {:?} after); \
         counter {} for {} acknowledged + {} unsure INCRs; {} acknowledged RPUSH ids lost, {} duplicated, {} never sent",
        load.writes.len(),
        load.failed(),
        load.failure_kinds(),
        load.longest_pause(killed_at - Duration::from_secs(1)),
        last.map(|t| killed_at.saturating_duration_since(t)),
        first.map(|t| t.saturating_duration_since(killed_at)),
        v.counter,
        v.acked_incrs,
        v.unsure_incrs,
        v.lost.len(),
        v.duplicates.len(),
        v.never_sent.len(),
    )
}

#[test]
fn a_primary_sigkill_under_load_loses_and_repeats_no_write() {
    let Some((mut cluster, _proxy, port, master)) = begin(true, "", "") else {
        return;
    };
    let (h_write, h_read) = (free_port(), free_port());
    let _haproxy = Haproxy::start(&cluster, h_write, h_read);
    wait_for(
        Duration::from_secs(10),
        "HAProxy's write port up",
        || matches!(redis_cmd(h_write, &["SET", "kill:h", "1"]), Ok(redis::Resp::Simple(s)) if s == "OK"),
    );

    let spec = |port: u16, tag: &str| LoadSpec {
        port,
        clients: 4,
        counter: format!("kill:{tag}:counter"),
        list: format!("kill:{tag}:list"),
        tag: tag.into(),
    };
    let (lp_spec, hp_spec) = (spec(port, "lp"), spec(h_write, "hp"));
    let stop = Arc::new(AtomicBool::new(false));
    let lp = start_load(lp_spec.clone(), &stop);
    let hp = start_load(hp_spec.clone(), &stop);
    assert!(
        counter_reaches(&cluster, master, &lp_spec, 300, Duration::from_secs(10)),
        "the load through the listener did not get going"
    );

    let (old, killed_at) = cluster.kill_master();
    let (new, promotion) = cluster.wait_for_promotion(old, killed_at, Duration::from_secs(20));
    let at_promotion = |s: &LoadSpec| counter_and_list(&cluster, new, s).0;
    let (lp_then, hp_then) = (at_promotion(&lp_spec), at_promotion(&hp_spec));
    let lp_resumed = counter_reaches(&cluster, new, &lp_spec, lp_then + 300, TIMEOUT);
    // HAProxy needs its checks to notice: reported, not asserted.
    let hp_resumed = counter_reaches(&cluster, new, &hp_spec, hp_then + 300, TIMEOUT);
    stop.store(true, Ordering::Relaxed);
    let (lp, hp) = (lp.join().unwrap(), hp.join().unwrap());
    replicas_caught_up(&cluster);

    let (lp_v, hp_v) = (
        verdict(&cluster, new, &lp_spec, &lp),
        verdict(&cluster, new, &hp_spec, &hp),
    );
    eprintln!(
        "real_redis_resp: promotion {promotion:?}\n  {} ({} UNREPLICATED)\n  {} (resumed: {hp_resumed})",
        report("leaderproxy", &lp, &lp_v, killed_at),
        lp.failed_with("UNREPLICATED"),
        report("HAProxy", &hp, &hp_v, killed_at),
    );
    assert!(lp_resumed, "writes through the listener did not resume");
    assert_eq!(lp.failed_with("READONLY"), 0, "a client saw READONLY");
    assert!(
        lp_v.lost.is_empty(),
        "acknowledged RPUSHes missing on the new primary: {:?}",
        lp_v.lost
    );
    assert!(
        lp_v.duplicates.is_empty() && lp_v.never_sent.is_empty(),
        "RPUSHes applied twice {:?} or never sent {:?}",
        lp_v.duplicates,
        lp_v.never_sent
    );
    assert!(
        lp_v.counter >= lp_v.acked_incrs && lp_v.counter <= lp_v.acked_incrs + lp_v.unsure_incrs,
        "counter {} outside [{} acknowledged, + {} unsure]",
        lp_v.counter,
        lp_v.acked_incrs,
        lp_v.unsure_incrs
    );
    let pause = lp.longest_pause(killed_at - Duration::from_secs(1));
    assert!(
        pause <= promotion + Duration::from_millis(100),
        "longest pause {pause:?} > promotion {promotion:?} + 0.1 s"
    );
}

// ---------------------------------------------------------------------------
// 4. read-your-writes
// ---------------------------------------------------------------------------

#[test]
fn read_your_writes_reads_no_stale_value_from_paused_replicas() {
    let overrides = "reads: { consistency: read_your_writes }";
    // Paused replicas acknowledge nothing: no WAIT here (it would time out).
    let listener = "resp: { wait_replicas: 0 }";
    let Some((cluster, _proxy, port, master)) = begin(false, listener, overrides) else {
        return;
    };
    let replicas: Vec<usize> = (0..3).filter(|&i| i != master).collect();
    let ids = run_ids(&cluster);
    wait_replica_reads(&cluster, port, &ids);

    for &i in &replicas {
        let r = redis_cmd(
            cluster.nodes[i].redis_port,
            &["CLIENT", "PAUSE", "5000", "WRITE"],
        );
        assert!(
            matches!(r, Ok(redis::Resp::Simple(ref s)) if s == "OK"),
            "CLIENT PAUSE: {r:?}"
        );
    }
    let paused_at = Instant::now();
    // Reads without a write of their own still go to the (paused) replicas.
    let reader = info_answered_by(port, &ids);
    assert!(
        reader.is_some_and(|i| i != master),
        "a fresh connection's read answered by {reader:?} (primary {master})"
    );

    let mut c = RespConn::connect(port, TIMEOUT).unwrap();
    let mut stale = Vec::new();
    for i in 0..1000 {
        let v = i.to_string();
        assert_eq!(
            c.call(&["SET", "ryw:k", &v]).unwrap(),
            Value::Simple("OK".into())
        );
        let got = c.call(&["GET", "ryw:k"]).unwrap();
        if got.text().as_deref() != Some(v.as_str()) {
            stale.push((i, got));
        }
    }
    let took = paused_at.elapsed();
    // The replicas were behind all along: they still miss the last write.
    let behind: Vec<Option<String>> = replicas
        .iter()
        .map(|&i| cluster.get(i, "ryw:k").unwrap())
        .collect();
    for &i in &replicas {
        let _ = redis_cmd(cluster.nodes[i].redis_port, &["CLIENT", "UNPAUSE"]);
    }
    assert!(
        behind.iter().all(|v| v.as_deref() != Some("999")),
        "the replicas were not paused throughout ({took:?}): {behind:?}"
    );
    assert!(
        stale.is_empty(),
        "{} stale reads of 1000, first: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

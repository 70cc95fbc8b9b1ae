//! Redis primary + 2 replicas + 3 Sentinels, and one webdis in front of each
//! Redis node, all on 127.0.0.1 (Debian `redis-server`, `redis-sentinel`, `webdis`).
//!
//! Needs `#[path = "support/procs.rs"] mod procs;` at the test crate root.
//!
//! Facts (Redis 7.0.15, webdis 0.1.9, checked by hand):
//! - webdis is configured by a JSON file (`/etc/webdis/webdis.json` is the
//!   Debian example): redis_host, redis_port, http_host, http_port, threads,
//!   daemonize, database, verbosity, logfile, acl.
//! - `GET /ROLE` via webdis: 200 `{"ROLE":["master",<offset>,[...]]}` or
//!   `{"ROLE":["slave","127.0.0.1",<port>,"connected",<offset>]}`.
//! - A write on a replica: HTTP **200** with body
//!   `{"SET":[false,"READONLY You can't write against a read only replica."]}`.
//! - webdis whose Redis is down answers **503 with an empty body** (fast), and
//!   reconnects by itself once Redis is back.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::{free_port, wait_for, wait_some, HttpConn, Proc, TempDir};

pub const REDIS_BIN: &str = "/usr/bin/redis-server";
pub const SENTINEL_BIN: &str = "/usr/bin/redis-sentinel";
pub const WEBDIS_BIN: &str = "/usr/bin/webdis";
/// Everything [`RedisCluster::start`] runs.
pub const BINARIES: [&str; 3] = [REDIS_BIN, SENTINEL_BIN, WEBDIS_BIN];
pub const MASTER_NAME: &str = "mymaster";

pub struct RedisNode {
    pub name: String,
    pub redis_port: u16,
    pub webdis_port: u16,
    pub redis: Proc,
    pub webdis: Proc,
}

impl RedisNode {
    /// `http://127.0.0.1:<webdis_port>`
    pub fn webdis_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.webdis_port)
    }
}

pub struct SentinelProc {
    pub port: u16,
    pub proc: Proc,
}

/// Fields drop in order: processes before the temp dir.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    pub sentinels: Vec<SentinelProc>,
    pub dir: TempDir,
}

const CMD_TIMEOUT: Duration = Duration::from_millis(500);

impl RedisCluster {
    /// The nodes' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// n1 = primary, n2/n3 = replicas, 3 Sentinels (quorum 2,
    /// down-after-milliseconds 1000, failover-timeout 3000), webdis per node.
    /// Returns once replication is connected and every Sentinel knows the
    /// 2 replicas and the 2 other Sentinels.
    pub fn start() -> RedisCluster {
        let dir = TempDir::new("redis");
        let mut nodes = Vec::new();
        let master_port = free_port();
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let redis_port = if i == 0 { master_port } else { free_port() };
            let webdis_port = free_port();
            let data = dir.join(&name);
            std::fs::create_dir_all(&data).unwrap();
            let args = server_args(redis_port, &data, (i > 0).then_some(master_port));
            let redis = Proc::spawn(&format!("redis-{name}"), REDIS_BIN, &args, dir.path());
            let cfg = serde_json::json!({
                "redis_host": "127.0.0.1",
                "redis_port": redis_port,
                "redis_auth": null,
                "http_host": "127.0.0.1",
                "http_port": webdis_port,
                "threads": 2,
                "daemonize": false,
                "database": 0,
                "verbosity": 3,
                "logfile": dir.join(&format!("webdis-{name}.log")).display().to_string(),
            });
            let cfg_path = dir.join(&format!("webdis-{name}.json"));
            std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
            let webdis = Proc::spawn(
                &format!("webdis-{name}-stdout"),
                WEBDIS_BIN,
                &[cfg_path.display().to_string()],
                dir.path(),
            );
            nodes.push(RedisNode {
                name,
                redis_port,
                webdis_port,
                redis,
                webdis,
            });
        }
        let mut c = RedisCluster {
            nodes,
            sentinels: Vec::new(),
            dir,
        };
        // replication up
        wait_for(Duration::from_secs(15), "redis replicas connected", || {
            (1..3).all(|i| {
                matches!(redis_cmd(c.nodes[i].redis_port, &["ROLE"]),
                    Ok(Resp::Array(Some(ref v))) if v.len() >= 4 && v[3].as_str() == Some("connected"))
            })
        });
        // webdis up
        for n in &c.nodes {
            let url = format!("{}/PING", n.webdis_url());
            wait_for(
                Duration::from_secs(10),
                &format!("webdis {} answers", n.name),
                || {
                    crate::procs::http_get(&url)
                        .map(|r| r.status == 200)
                        .unwrap_or(false)
                },
            );
        }
        // sentinels
        for i in 0..3 {
            let port = free_port();
            let sdir = c.dir.join(&format!("sentinel{}", i + 1));
            std::fs::create_dir_all(&sdir).unwrap();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = sdir.display()
            );
            let conf_path = sdir.join("sentinel.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let proc = Proc::spawn(
                &format!("sentinel{}", i + 1),
                SENTINEL_BIN,
                &[conf_path.display().to_string()],
                c.dir.path(),
            );
            c.sentinels.push(SentinelProc { port, proc });
        }
        wait_for(
            Duration::from_secs(20),
            "every sentinel knows 2 replicas and 2 other sentinels",
            || {
                c.sentinels.iter().all(|s| {
                    let r = redis_cmd(s.port, &["SENTINEL", "REPLICAS", MASTER_NAME]);
                    let sn = redis_cmd(s.port, &["SENTINEL", "SENTINELS", MASTER_NAME]);
                    matches!((r, sn), (Ok(Resp::Array(Some(a))), Ok(Resp::Array(Some(b))))
                        if a.len() == 2 && b.len() == 2)
                })
            },
        );
        c
    }

    /// ROLE of node `i` straight from redis-server: "master" / "slave" / None if down.
    pub fn role(&self, i: usize) -> Option<String> {
        match redis_cmd(self.nodes[i].redis_port, &["ROLE"]) {
            Ok(Resp::Array(Some(v))) => v.first().and_then(|r| r.as_str()).map(str::to_string),
            _ => None,
        }
    }

    /// The node reporting ROLE master (first one, if several).
    pub fn master(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.role(i).as_deref() == Some("master"))
    }

    /// The master's port according to Sentinel `s`.
    pub fn sentinel_master_port(&self, s: usize) -> Option<u16> {
        match redis_cmd(
            self.sentinels[s].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        ) {
            Ok(Resp::Array(Some(v))) if v.len() == 2 => v[1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// SIGKILL redis-server (not webdis) of node `i`.
    pub fn kill_redis(&mut self, i: usize) {
        self.nodes[i].redis.kill();
    }

    /// Starts node `i`'s redis-server again with its original arguments (an
    /// old primary therefore boots as a master with an empty dataset, until
    /// Sentinel reconfigures it as a replica).
    pub fn restart_redis(&mut self, i: usize) {
        self.nodes[i].redis.restart();
    }

    /// Starts node `i`'s redis-server again (after a kill) as a replica of
    /// node `master`, so it never boots as a second, empty master (Sentinel
    /// would turn it into a replica only seconds later).
    pub fn restart_as_replica(&mut self, i: usize, master: usize) {
        let node = &self.nodes[i];
        let data = self.dir.join(&node.name);
        let args = server_args(node.redis_port, &data, Some(self.nodes[master].redis_port));
        let name = format!("redis-{}", node.name);
        self.nodes[i].redis = Proc::spawn(&name, REDIS_BIN, &args, self.dir.path());
    }

    /// `INFO server`'s `run_id` of node `i` (new at every start).
    pub fn run_id(&self, i: usize) -> Option<String> {
        let info = redis_cmd(self.nodes[i].redis_port, &["INFO", "server"]).ok()?;
        info.as_str()?
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|v| v.trim().to_string())
    }

    /// `INFO replication`'s `master_repl_offset` of node `i` (on a replica:
    /// the offset it processed).
    pub fn repl_offset(&self, i: usize) -> Option<u64> {
        let info = redis_cmd(self.nodes[i].redis_port, &["INFO", "replication"]).ok()?;
        info.as_str()?
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The master port node `i` replicates from, if it is a connected replica.
    pub fn replica_of(&self, i: usize) -> Option<u16> {
        match redis_cmd(self.nodes[i].redis_port, &["ROLE"]) {
            Ok(Resp::Array(Some(v)))
                if v.len() >= 4
                    && v[0].as_str() == Some("slave")
                    && v[3].as_str() == Some("connected") =>
            {
                match &v[2] {
                    Resp::Int(p) => Some(*p as u16),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Kills the current master's redis-server; returns (index, time it was reaped).
    pub fn kill_master(&mut self) -> (usize, Instant) {
        let m = self.master().expect("no master to kill");
        self.kill_redis(m);
        (m, Instant::now())
    }

    /// Waits until a node other than `old` reports ROLE master; returns
    /// (index, time from `since`). Polls every 20ms.
    pub fn wait_for_promotion(
        &self,
        old: usize,
        since: Instant,
        timeout: Duration,
    ) -> (usize, Duration) {
        let i = wait_some(since + timeout, "sentinel promotes a replica", || {
            (0..self.nodes.len())
                .filter(|&i| i != old)
                .find(|&i| self.role(i).as_deref() == Some("master"))
        });
        (i, since.elapsed())
    }

    /// GET key directly on node `i`.
    pub fn get(&self, i: usize, key: &str) -> io::Result<Option<String>> {
        match redis_cmd(self.nodes[i].redis_port, &["GET", key])? {
            Resp::Bulk(Some(b)) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Resp::Bulk(None) => Ok(None),
            other => Err(io::Error::other(format!("GET: {other:?}"))),
        }
    }

    /// LRANGE key 0 -1 on node `i`.
    pub fn lrange(&self, i: usize, key: &str) -> io::Result<Vec<String>> {
        match redis_cmd(self.nodes[i].redis_port, &["LRANGE", key, "0", "-1"])? {
            Resp::Array(Some(v)) => Ok(v
                .iter()
                .map(|r| r.as_str().unwrap_or_default().to_string())
                .collect()),
            other => Err(io::Error::other(format!("LRANGE: {other:?}"))),
        }
    }

    /// The shipped `config/redis-webdis.yaml`, parsed as YAML, with `listen`
    /// and `admin` removed (`spawn_proxy` picks free ports) and `backends`
    /// replaced by this cluster's webdis. Every other rule (health, leader,
    /// routes, writes.not_leader, ...) is the shipped one, so a change to the
    /// shipped file is what the tests check. `overrides` is a YAML mapping
    /// merged on top (mappings key by key, anything else replaced); it must
    /// not touch `writes.not_leader`, `routes` or `leader.expect`.
    pub fn shipped_proxy_yaml(&self, overrides: &str) -> String {
        let (path, mut cfg) = shipped_config("redis-webdis.yaml");
        let map = cfg.as_mapping_mut().unwrap();
        assert!(
            map.remove("listen").is_some() && map.remove("admin").is_some(),
            "{path} has no listen/admin to replace"
        );
        assert!(
            map.insert("backends".into(), self.backends_value(false))
                .is_some(),
            "{path} has no backends to replace"
        );
        with_overrides(cfg, overrides)
    }

    /// The shipped `config/redis-sentinel-resp.yaml` for this cluster: its
    /// `admin` removed (`spawn_proxy` picks one), no HTTP `listen`, its RESP
    /// listener moved to 127.0.0.1:`port`, `backends` replaced by this
    /// cluster's nodes (Redis `tcp` only, no `url`); `overrides_listener` (a
    /// YAML mapping) merged into the listener and `overrides` (a YAML
    /// mapping) on top.
    pub fn shipped_resp_yaml(
        &self,
        port: u16,
        overrides_listener: &str,
        overrides: &str,
    ) -> String {
        let (path, mut cfg) = shipped_config("redis-sentinel-resp.yaml");
        let map = cfg.as_mapping_mut().unwrap();
        assert!(map.remove("admin").is_some(), "{path} has no admin");
        // No HTTP listener (spawn_proxy adds one where `listen` is absent):
        // nothing speaks HTTP to the nodes, which have no `url`.
        map.insert("listen".into(), serde_yaml::Value::Sequence(Vec::new()));
        let listener = map
            .get_mut("tcp")
            .and_then(|t| t.as_sequence_mut())
            .and_then(|t| t.first_mut())
            .and_then(|l| l.as_mapping_mut())
            .unwrap_or_else(|| panic!("{path} has no tcp listener"));
        listener.insert("listen".into(), format!("127.0.0.1:{port}").into());
        let listener = serde_yaml::Value::Mapping(std::mem::take(listener));
        let merged = if overrides_listener.trim().is_empty() {
            listener
        } else {
            let o = serde_yaml::from_str(overrides_listener).expect("listener overrides YAML");
            leaderproxy::config::presets::merge(listener, o)
        };
        map["tcp"][0] = merged;
        map.insert("backends".into(), self.backends_value(true));
        with_overrides(cfg, overrides)
    }

    /// This cluster's nodes as a `backends` list: name and webdis `url`, or
    /// with `tcp` name and Redis address only (the RESP config probes each
    /// node natively, so nothing needs a `url`).
    fn backends_value(&self, tcp: bool) -> serde_yaml::Value {
        let list: Vec<serde_yaml::Value> = self
            .nodes
            .iter()
            .map(|n| {
                let mut b = serde_yaml::Mapping::new();
                b.insert("name".into(), n.name.clone().into());
                if tcp {
                    b.insert("tcp".into(), format!("127.0.0.1:{}", n.redis_port).into());
                } else {
                    b.insert("url".into(), n.webdis_url().into());
                }
                serde_yaml::Value::Mapping(b)
            })
            .collect();
        list.into()
    }

    /// MGET on node `i` (one round trip for many keys).
    pub fn mget(&self, i: usize, keys: &[String]) -> io::Result<Vec<Option<String>>> {
        let mut args: Vec<&str> = vec!["MGET"];
        args.extend(keys.iter().map(|s| s.as_str()));
        match redis_cmd_timeout(self.nodes[i].redis_port, &args, Duration::from_secs(10))? {
            Resp::Array(Some(v)) => Ok(v
                .into_iter()
                .map(|r| match r {
                    Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect()),
            other => Err(io::Error::other(format!("MGET: {other:?}"))),
        }
    }
}

// ---------------------------------------------------------------------------
// webdis role watch: when could a node's webdis take writes?
// ---------------------------------------------------------------------------

/// Background threads (one per node) asking each node's *webdis* `GET /ROLE`
/// every 10ms on a keep-alive connection, recording when it answered 200
/// `{"ROLE":["master",..]}`. This is when the backend the proxy talks to can
/// take writes, which after a promotion is later than the Redis node itself
/// (`RedisCluster::wait_for_promotion`): Sentinel's promotion ends with
/// `CLIENT KILL TYPE normal` on the promoted replica, which also closes
/// webdis's Redis connection, and webdis reconnects only after a fixed 0.1s
/// timer (`pool_schedule_reconnect` in webdis's pool.c), answering 503 until then.
pub struct WebdisRoleWatch {
    stop: Arc<AtomicBool>,
    obs: Arc<Mutex<Vec<(Instant, usize)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl WebdisRoleWatch {
    pub fn start(cluster: &RedisCluster) -> WebdisRoleWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let obs = Arc::new(Mutex::new(Vec::new()));
        let threads = cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let authority = format!("127.0.0.1:{}", n.webdis_port);
                let (stop, obs) = (stop.clone(), obs.clone());
                std::thread::spawn(move || {
                    let mut conn = HttpConn::new(&authority, Duration::from_millis(300));
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(r) = conn.request("GET", "/ROLE", &[], b"") {
                            let at = Instant::now();
                            let master = r.status == 200
                                && serde_json::from_slice::<serde_json::Value>(&r.body)
                                    .is_ok_and(|v| v["ROLE"][0] == "master");
                            if master {
                                obs.lock().unwrap().push((at, i));
                            }
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        WebdisRoleWatch { stop, obs, threads }
    }

    /// Stops the threads; returns the first time after `since` that the
    /// webdis of a node other than `except` answered ROLE master.
    pub fn stop(mut self, since: Instant, except: usize) -> Option<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let obs = self.obs.lock().unwrap();
        obs.iter()
            .filter(|(at, i)| *at >= since && *i != except)
            .map(|(at, _)| *at)
            .min()
    }
}

impl Drop for WebdisRoleWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// minimal RESP client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Resp::Simple(s) => Some(s),
            Resp::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// config/`file`: its path and its YAML (a mapping).
fn shipped_config(file: &str) -> (String, serde_yaml::Value) {
    let path = format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let cfg: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    assert!(cfg.is_mapping(), "{path} is not a mapping");
    (path, cfg)
}

/// `cfg` with the YAML mapping `overrides` merged on top (the proxy's own
/// merge, the one presets use), as YAML text.
fn with_overrides(mut cfg: serde_yaml::Value, overrides: &str) -> String {
    if !overrides.trim().is_empty() {
        let o: serde_yaml::Value = serde_yaml::from_str(overrides).expect("overrides YAML");
        cfg = leaderproxy::config::presets::merge(cfg, o);
    }
    serde_yaml::to_string(&cfg).expect("serialize config")
}

/// redis-server's arguments: on 127.0.0.1 at `port`, no persistence,
/// diskless replication of `master` when given.
fn server_args(port: u16, data: &std::path::Path, master: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &data.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(m) = master {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    }
    args
}

/// The password of [`RedisReplicas`]'s `probe` user.
pub const PROBE_PASSWORD: &str = "probe-pw-7d1f";

/// Redis primary (n1) + 2 replicas for native probe tests: no Sentinel,
/// no webdis. ACLs make the login matter: the `default` user (no password:
/// replication and [`redis_cmd`]) may run everything but `ROLE`; user
/// `probe` (password [`PROBE_PASSWORD`], also in `password_file`) may run
/// only `ROLE`. So a probe that reads ROLE has logged in as `probe`.
pub struct RedisReplicas {
    pub ports: Vec<u16>,
    pub procs: Vec<Proc>,
    pub password_file: std::path::PathBuf,
    pub dir: TempDir,
}

impl RedisReplicas {
    /// Returns once both replicas' links are up.
    pub fn start() -> RedisReplicas {
        let dir = TempDir::new("redis-native");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut procs = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            let data = dir.join(&format!("n{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            let mut args = server_args(port, &data, (i > 0).then_some(ports[0]));
            for a in [
                "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-role",
            ] {
                args.push(a.into());
            }
            for a in [
                "--user",
                "probe",
                "on",
                &format!(">{PROBE_PASSWORD}"),
                "+role",
            ] {
                args.push(a.into());
            }
            procs.push(Proc::spawn(
                &format!("redis-n{}", i + 1),
                REDIS_BIN,
                &args,
                dir.path(),
            ));
        }
        let password_file = dir.join("probe-password");
        std::fs::write(&password_file, format!("{PROBE_PASSWORD}\n")).unwrap();
        let r = RedisReplicas {
            ports,
            procs,
            password_file,
            dir,
        };
        wait_for(Duration::from_secs(15), "redis replicas linked", || {
            (1..3).all(|i| r.link_up(i))
        });
        r
    }

    fn info_replication(&self, i: usize) -> String {
        redis_cmd(self.ports[i], &["INFO", "replication"])
            .ok()
            .and_then(|r| r.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Node `i` is a replica whose link to its master is up.
    pub fn link_up(&self, i: usize) -> bool {
        self.info_replication(i).contains("master_link_status:up")
    }

    /// Node `i` says `role:master`.
    pub fn is_master(&self, i: usize) -> bool {
        self.info_replication(i).contains("role:master")
    }

    /// A scripted switchover: node `i` becomes the master (`REPLICAOF NO
    /// ONE`), the others replicate from it.
    pub fn promote(&self, i: usize) {
        redis_cmd(self.ports[i], &["REPLICAOF", "NO", "ONE"]).unwrap();
        let port = self.ports[i].to_string();
        for (j, &p) in self.ports.iter().enumerate() {
            if j != i {
                redis_cmd(p, &["REPLICAOF", "127.0.0.1", &port]).unwrap();
            }
        }
    }
}

/// One command on a fresh connection to 127.0.0.1:`port` (500ms timeout).
pub fn redis_cmd(port: u16, args: &[&str]) -> io::Result<Resp> {
    redis_cmd_timeout(port, args, CMD_TIMEOUT)
}

pub fn redis_cmd_timeout(port: u16, args: &[&str], timeout: Duration) -> io::Result<Resp> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    let mut w = s.try_clone()?;
    w.write_all(&buf)?;
    let mut r = BufReader::new(s);
    read_resp(&mut r)
}

fn read_resp(r: &mut BufReader<TcpStream>) -> io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (t, rest) = line.split_at(1);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad RESP line {line:?}"),
        )
    };
    Ok(match t {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Resp::Bulk(Some(b))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(read_resp(r)?);
                }
                Resp::Array(Some(v))
            }
        }
        _ => return Err(bad()),
    })
}

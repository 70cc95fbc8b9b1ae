//! A real 3-member etcd 3.4 cluster on 127.0.0.1 (Debian `etcd-server`).
//!
//! Needs `#[path = "support/procs.rs"] mod procs;` at the test crate root.
//!
//! Facts about etcd 3.4.23 this harness relies on (checked by hand):
//! - `GET /v2/stats/leader` is 200 on the leader and 403
//!   `{"message":"not current leader"}` on followers, also while there is no leader.
//! - Followers never refuse a write: v2 `PUT /v2/keys/..` and v3 gateway
//!   `POST /v3/kv/put` are forwarded to the leader. During an election they
//!   block until a leader exists and then succeed; without quorum, v3 put
//!   answers 500 `{"error":"context deadline exceeded","code":2}` after ~7s and
//!   a v2 PUT hangs (>5s).
//! - `GET /health` is 200 `{"health":"true"}` only while the cluster has a
//!   leader (it does a quorum read); it hangs ~1s and then answers 503
//!   `{"health":"false"}` during an election, on every member.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::{
    backends_yaml_with, free_port, http, wait_some, HttpConn, HttpResponse, Proc, TempDir,
};

pub const ETCD_BIN: &str = "/usr/bin/etcd";

pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub proc: Proc,
    /// Clients must speak TLS (`EtcdCluster::start_tls`).
    pub tls: bool,
}

/// PEM files for an etcd that serves clients over TLS and demands client
/// certificates (`--cert-file --key-file --trusted-ca-file --client-cert-auth`).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// A client certificate and key the harness itself uses (leader checks).
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// Fields drop in order: members (SIGKILL) before the temp dir.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    pub dir: TempDir,
    pub tls: Option<EtcdTls>,
}

const SHORT: Duration = Duration::from_millis(300);

impl EtcdCluster {
    /// The members' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Starts `n` members named n1..nN and waits (20s) for a leader.
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, None)
    }

    /// Like [`EtcdCluster::start`], serving clients over TLS only and
    /// requiring client certificates (peers talk plain HTTP on loopback).
    pub fn start_tls(n: usize, tls: EtcdTls) -> EtcdCluster {
        Self::start_with(n, Some(tls))
    }

    fn start_with(n: usize, tls: Option<EtcdTls>) -> EtcdCluster {
        let dir = TempDir::new("etcd");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("n{}=http://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let data = dir.join(&format!("{name}.etcd"));
            let mut args = member_args(
                &name,
                &data,
                &format!("{scheme}://127.0.0.1:{client}"),
                *peer,
                &initial_cluster,
                "new",
            );
            args.extend(
                [
                    "--initial-cluster-token",
                    &format!("lp-test-{}", std::process::id()),
                    "--snapshot-count",
                    "100000",
                ]
                .map(String::from),
            );
            if let Some(t) = &tls {
                for (flag, path) in [
                    ("--cert-file", &t.cert),
                    ("--key-file", &t.key),
                    ("--trusted-ca-file", &t.ca),
                ] {
                    args.push(flag.to_string());
                    args.push(path.display().to_string());
                }
                args.push("--client-cert-auth".to_string());
            }
            let proc = Proc::spawn(&name, ETCD_BIN, &args, dir.path());
            members.push(EtcdMember {
                name,
                client_port: *client,
                peer_port: *peer,
                proc,
                tls: tls.is_some(),
            });
        }
        let c = EtcdCluster { members, dir, tls };
        c.wait_for_leader(Duration::from_secs(20));
        c
    }

    /// The `backends:` list of a leaderproxy config: every member by name
    /// at its client URL.
    pub fn backends_yaml(&self) -> String {
        self.backends_yaml_with("")
    }

    /// [`EtcdCluster::backends_yaml`] with `fields` (e.g. `", h2c: true"`)
    /// after each url.
    pub fn backends_yaml_with(&self, fields: &str) -> String {
        let members = self.members.iter();
        backends_yaml_with(members.map(|m| (m.name.as_str(), m.client_url())), fields)
    }

    /// A leaderproxy config for this cluster as the real-cluster tests and
    /// the failover bench use it (v2 leader probe every 200ms, and every
    /// `leader.fast_interval`, 25ms by default, while no leader is known;
    /// health with a fall long enough to outlast an election); `extra` is
    /// appended (YAML, e.g. `writes:` or `debug_headers:`).
    pub fn leaderproxy_yaml(&self, extra: &str) -> String {
        let mut s = self.backends_yaml();
        s.push_str(
            "health:\n  path: /health\n  interval: 500ms\n  timeout: 400ms\n  rise: 1\n  fall: 8\n  expect: { status: [200] }\n\
             leader:\n  path: /v2/stats/leader\n  interval: 200ms\n  timeout: 150ms\n  expect: { status: [200] }\n\
             routes:\n  - { methods: [GET, HEAD], to: read }\n\
             reads: { policy: round_robin, fallback_to_leader: true, retry: true }\n\
             timeouts: { connect: 500ms, response_headers: 10s }\n",
        );
        s.push_str(extra);
        s
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn client_url(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }

    /// `Some(true)` = 200 on `/v2/stats/leader`, `Some(false)` = 403, `None` = no answer.
    pub fn is_leader(&self, i: usize) -> Option<bool> {
        match &self.tls {
            None => stats_leader(&self.members[i].client_url()),
            Some(t) => stats_leader_tls(&self.members[i].client_url(), t),
        }
    }

    /// Index of a member answering 200 on `/v2/stats/leader`, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| self.is_leader(i) == Some(true))
    }

    /// Waits for a leader; panics with the members' log tails after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} ---\n{}", m.name, m.proc.log_tail(15)))
                    .collect();
                panic!("etcd: no leader within {timeout:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        self.members[i].proc.kill();
    }

    /// Starts a killed member again with the same data dir and flags.
    pub fn restart(&mut self, i: usize) {
        self.members[i].proc.restart();
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].proc.is_running()
    }

    /// Kills the current leader and measures the election: time from the
    /// moment the killed process is reaped until a surviving member answers
    /// 200 on `/v2/stats/leader` (polled every 20ms, so +-20ms).
    pub fn kill_leader_and_measure(&mut self, timeout: Duration) -> Election {
        let old = self.wait_for_leader(Duration::from_secs(10));
        let signalled_at = Instant::now();
        self.kill(old);
        let killed_at = Instant::now();
        let new = wait_some(killed_at + timeout, "etcd: new leader after kill", || {
            (0..self.members.len())
                .filter(|&i| i != old)
                .find(|&i| self.is_leader(i) == Some(true))
        });
        Election {
            old,
            new,
            signalled_at,
            killed_at,
            took: killed_at.elapsed(),
        }
    }

    // -- data helpers -------------------------------------------------------

    /// v2 `PUT /v2/keys/<key>` with form `value=<value>` on member `i`.
    pub fn v2_put(&self, i: usize, key: &str, value: &str) -> io::Result<HttpResponse> {
        http(
            "PUT",
            &format!(
                "{}/v2/keys/{}",
                self.client_url(i),
                key.trim_start_matches('/')
            ),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("value={}", form_encode(value)).as_bytes(),
            Duration::from_secs(10),
        )
    }

    /// v2 quorum read of one key (`?quorum=true` goes through Raft).
    pub fn v2_get(&self, i: usize, key: &str) -> Option<String> {
        let r = http(
            "GET",
            &format!(
                "{}/v2/keys/{}?quorum=true",
                self.client_url(i),
                key.trim_start_matches('/')
            ),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .ok()?;
        if r.status != 200 {
            return None;
        }
        r.json()["node"]["value"].as_str().map(str::to_string)
    }

    /// All keys below v2 directory `dir` (recursive quorum read) as
    /// full key ("/dir/k") -> value. Panics if the read fails.
    pub fn v2_list(&self, i: usize, dir: &str) -> BTreeMap<String, String> {
        let url = format!(
            "{}/v2/keys/{}?recursive=true&quorum=true",
            self.client_url(i),
            dir.trim_start_matches('/')
        );
        let r = http("GET", &url, &[], b"", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let mut out = BTreeMap::new();
        if r.status == 404 {
            return out;
        }
        assert_eq!(r.status, 200, "GET {url}: {}", r.text());
        flatten_v2(&r.json()["node"], &mut out);
        out
    }

    /// v3 gateway put (`POST /v3/kv/put`).
    pub fn v3_put(&self, i: usize, key: &str, value: &str) -> io::Result<HttpResponse> {
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value.as_bytes())});
        http(
            "POST",
            &format!("{}/v3/kv/put", self.client_url(i)),
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
            Duration::from_secs(10),
        )
    }

    /// v3 gateway range of one key (linearizable by default).
    pub fn v3_get(&self, i: usize, key: &str) -> Option<String> {
        let body = serde_json::json!({"key": b64(key.as_bytes())});
        let r = http(
            "POST",
            &format!("{}/v3/kv/range", self.client_url(i)),
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
            Duration::from_secs(10),
        )
        .ok()?;
        if r.status != 200 {
            return None;
        }
        let v = r.json();
        let val = v["kvs"].get(0)?["value"].as_str()?.to_string();
        Some(String::from_utf8_lossy(&unb64(&val)?).into_owned())
    }
}

/// The flags of one etcd member on 127.0.0.1: clients at `client_url`,
/// peers at plain HTTP on `peer_port`, joining `initial_cluster` in
/// `state` (`new` or `existing`), v2 API on, 100ms heartbeats, 1s election
/// timeout and pre-vote.
pub fn member_args(
    name: &str,
    data: &Path,
    client_url: &str,
    peer_port: u16,
    initial_cluster: &str,
    state: &str,
) -> Vec<String> {
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    [
        "--name",
        name,
        "--data-dir",
        &data.display().to_string(),
        "--listen-client-urls",
        client_url,
        "--advertise-client-urls",
        client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        state,
        "--enable-v2=true",
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        // a restarted member must not disrupt the running leader
        "--pre-vote=true",
    ]
    .map(String::from)
    .to_vec()
}

/// The etcd v3 command-line client (Debian `etcd-client`).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Runs `etcdctl` (API 3) against `endpoint` with a 3s dial timeout, the
/// given `--command-timeout` (e.g. `"5s"`) and, with `tls` = `[ca, cert,
/// key]`, that client certificate; whether it exited 0, and its stdout
/// followed by its stderr.
pub fn etcdctl(
    endpoint: &str,
    command_timeout: &str,
    tls: Option<[&Path; 3]>,
    args: &[&str],
) -> (bool, String) {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3").args([
        "--endpoints",
        endpoint,
        "--dial-timeout",
        "3s",
        "--command-timeout",
        command_timeout,
    ]);
    if let Some([ca, cert, key]) = tls {
        cmd.arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key);
    }
    let out = cmd.args(args).output().expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub struct Election {
    pub old: usize,
    pub new: usize,
    /// Just before SIGKILL was sent.
    pub signalled_at: Instant,
    /// Once the killed process was reaped.
    pub killed_at: Instant,
    pub took: Duration,
}

/// GET /v2/stats/leader with a short timeout.
pub fn stats_leader(base: &str) -> Option<bool> {
    match http("GET", &format!("{base}/v2/stats/leader"), &[], b"", SHORT) {
        Ok(r) if r.status == 200 => Some(true),
        Ok(r) if r.status == 403 => Some(false),
        _ => None,
    }
}

/// [`stats_leader`] over TLS with a client certificate (curl).
pub fn stats_leader_tls(base: &str, t: &EtcdTls) -> Option<bool> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "0.3",
        ])
        .arg("--cacert")
        .arg(&t.ca)
        .arg("--cert")
        .arg(&t.client_cert)
        .arg("--key")
        .arg(&t.client_key)
        .arg(format!("{base}/v2/stats/leader"))
        .output()
        .ok()?;
    match &out.stdout[..] {
        b"200" => Some(true),
        b"403" => Some(false),
        _ => None,
    }
}

fn flatten_v2(node: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    if let (Some(k), Some(v)) = (node["key"].as_str(), node["value"].as_str()) {
        out.insert(k.to_string(), v.to_string());
    }
    if let Some(children) = node["nodes"].as_array() {
        for c in children {
            flatten_v2(c, out);
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * j)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// leader watch: who answered 200 on /v2/stats/leader, when
// ---------------------------------------------------------------------------

/// One observation: member `member` answered `is_leader` at `at`.
#[derive(Clone, Copy, Debug)]
pub struct LeaderObs {
    pub at: Instant,
    pub member: usize,
    pub is_leader: bool,
}

/// Background threads (one per member) polling `/v2/stats/leader` every 20ms
/// on their own keep-alive connection.
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    obs: Arc<Mutex<Vec<LeaderObs>>>,
    threads: Vec<JoinHandle<()>>,
}

impl LeaderWatch {
    pub fn start(cluster: &EtcdCluster) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let obs = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for (i, m) in cluster.members.iter().enumerate() {
            let authority = m.authority();
            let stop = stop.clone();
            let obs = obs.clone();
            threads.push(std::thread::spawn(move || {
                let mut conn = HttpConn::new(&authority, SHORT);
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = conn.request("GET", "/v2/stats/leader", &[], b"") {
                        let at = Instant::now();
                        if r.status == 200 || r.status == 403 {
                            obs.lock().unwrap().push(LeaderObs {
                                at,
                                member: i,
                                is_leader: r.status == 200,
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        LeaderWatch { stop, obs, threads }
    }

    /// A copy of the observations so far.
    pub fn log(&self) -> LeaderLog {
        let mut v = self.obs.lock().unwrap().clone();
        v.sort_by_key(|o| o.at);
        LeaderLog { obs: v }
    }

    pub fn stop(mut self) -> LeaderLog {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.log()
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub struct LeaderLog {
    pub obs: Vec<LeaderObs>,
}

impl LeaderLog {
    /// Members observed answering 200 at some time in `[from, to]`.
    pub fn leaders_between(&self, from: Instant, to: Instant) -> BTreeSet<usize> {
        self.obs
            .iter()
            .filter(|o| o.is_leader && o.at >= from && o.at <= to)
            .map(|o| o.member)
            .collect()
    }

    /// Members observed as leader at any time.
    pub fn all_leaders(&self) -> BTreeSet<usize> {
        self.obs
            .iter()
            .filter(|o| o.is_leader)
            .map(|o| o.member)
            .collect()
    }

    /// First observation after `t` of a leader other than `except`.
    pub fn first_leader_after(&self, t: Instant, except: Option<usize>) -> Option<LeaderObs> {
        self.obs
            .iter()
            .find(|o| o.is_leader && o.at >= t && Some(o.member) != except)
            .copied()
    }

    /// Last observation of `member` being leader.
    pub fn last_seen_leader(&self, member: usize) -> Option<Instant> {
        self.obs
            .iter()
            .rev()
            .find(|o| o.is_leader && o.member == member)
            .map(|o| o.at)
    }
}

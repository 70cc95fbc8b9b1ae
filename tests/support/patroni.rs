//! The real Patroni 3 + PostgreSQL 15 + etcd cluster of
//! `tests/support/patroni.sh` from Rust, on free loopback ports, once per
//! test process ([`crate::shell_cluster`]); psql; HAProxy with Patroni's
//! documented config; the write-client loop `pg_failover_load.py`.
//!
//! Included with `#[path = "support/patroni.rs"] mod patroni;` beside
//! `mod procs;` and `mod shell_cluster;`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{MutexGuard, OnceLock};

use crate::procs;
use crate::shell_cluster::{self, LoadReport, ShellCluster};

/// The three nodes, in port order (node i: REST `rest_port + i`,
/// PostgreSQL `pg_port + i`).
pub const NODES: [&str; 3] = ["pg1", "pg2", "pg3"];

/// The binaries `patroni.sh up` needs; it installs their Debian packages
/// itself when they are missing (as root).
pub const BINARIES: [&str; 4] = [
    "/usr/bin/patroni",
    "/usr/bin/etcd",
    "/usr/bin/psql",
    "/usr/lib/postgresql/15/bin/postgres",
];

/// `PATRONI_WAIT`: the deadline, in seconds, of each wait in patroni.sh.
const WAIT_S: &str = "90";

/// One running cluster and its ports (all on 127.0.0.1).
pub struct Patroni {
    pub cluster: ShellCluster,
    /// etcd's client port (peer port + 1).
    pub etcd_port: u16,
    /// Patroni REST API of pg1 (pg2, pg3: + 1, + 2).
    pub rest_port: u16,
    /// PostgreSQL of pg1 (pg2, pg3: + 1, + 2).
    pub pg_port: u16,
    /// HAProxy's write port (read: + 1, stats: + 2).
    pub haproxy_port: u16,
}

static CLUSTER: OnceLock<Result<Patroni, String>> = OnceLock::new();

impl Patroni {
    /// The cluster of this test process: started (`patroni.sh up`) by the
    /// first caller.
    pub fn shared() -> &'static Patroni {
        shell_cluster::shared(&CLUSTER, Patroni::start)
    }

    fn start() -> Patroni {
        let (etcd_port, rest_port) = (procs::free_ports(2), procs::free_ports(3));
        let (pg_port, haproxy_port) = (procs::free_ports(3), procs::free_ports(3));
        let env = [
            ("PATRONI_ETCD_PORT", etcd_port.to_string()),
            ("PATRONI_REST_PORT", rest_port.to_string()),
            ("PATRONI_PG_PORT", pg_port.to_string()),
            ("PATRONI_HAPROXY_PORT", haproxy_port.to_string()),
            ("PATRONI_WAIT", WAIT_S.to_string()),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Patroni {
            cluster: ShellCluster::start("patroni.sh", env),
            etcd_port,
            rest_port,
            pg_port,
            haproxy_port,
        }
    }

    /// The cluster for one test at a time, with one leader and two
    /// streaming replicas (a node killed by an earlier test rejoins).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.cluster.lock()
    }

    /// `patroni.sh CMD DIR`'s output.
    pub fn script(&self, cmd: &str) -> String {
        self.cluster.script(cmd)
    }

    /// The `patroni.sh CMD DIR` command line, for a load's COMMAND.
    pub fn argv(&self, cmd: &str) -> Vec<String> {
        self.cluster.argv(cmd)
    }

    /// The leader's name by Patroni (`pg1`..`pg3`).
    pub fn leader(&self) -> String {
        self.script("leader")
    }

    /// PostgreSQL's port of node `name`.
    pub fn pg_port_of(&self, name: &str) -> u16 {
        self.pg_port + index(name)
    }

    /// The `backends:` of a leaderproxy config: each node's REST API probed,
    /// its PostgreSQL carrying the bytes (`tcp`).
    pub fn backends_yaml(&self) -> String {
        let mut s = String::from("backends:\n");
        for (i, n) in NODES.iter().enumerate() {
            let i = i as u16;
            s.push_str(&format!(
                "  - {{ name: {n}, url: \"http://127.0.0.1:{}\", tcp: \"127.0.0.1:{}\" }}\n",
                self.rest_port + i,
                self.pg_port + i
            ));
        }
        s
    }

    /// (Re)starts HAProxy with Patroni's documented config and waits until
    /// its checks agree with Patroni; its write port.
    pub fn haproxy(&self) -> u16 {
        self.script("haproxy");
        self.haproxy_port
    }
}

fn index(name: &str) -> u16 {
    NODES
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no node {name}")) as u16
}

/// `psql -At -c SQL` as postgres/postgres through 127.0.0.1:`port`: its
/// output, or its error text.
pub fn psql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-c", sql])
        .env("PGPASSWORD", "postgres")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `pg_failover_load.py PORT SECONDS CLIENTS [-- COMMAND]` (autocommit
/// INSERTs as postgres/postgres), started; see [`shell_cluster::finish_load`].
pub fn start_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> Child {
    let env = [("PGPASSWORD", "postgres")];
    shell_cluster::start_load("pg_failover_load.py", &env, port, seconds, clients, command)
}

/// Runs a load to the end; see [`start_load`].
pub fn run_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> LoadReport {
    shell_cluster::finish_load(start_load(port, seconds, clients, command))
}

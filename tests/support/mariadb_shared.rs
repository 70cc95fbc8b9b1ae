//! The real MariaDB 10.11 primary + two GTID replicas of
//! `tests/support/mariadb.sh` from Rust, on free loopback ports, once per
//! test process ([`crate::shell_cluster`]); the `mariadb` client; the
//! write-client loop `my_failover_load.py`.
//!
//! Included with `#[path = "support/mariadb_shared.rs"] mod mariadb;` beside
//! `mod procs;` and `mod shell_cluster;`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{MutexGuard, OnceLock};

use crate::procs;
use crate::shell_cluster::{self, LoadReport, ShellCluster};

/// The three nodes, in port order (node i: `port + i`); m1 is the first
/// primary.
pub const NODES: [&str; 3] = ["m1", "m2", "m3"];

/// What `mariadb.sh up` needs; it installs the Debian packages itself when
/// they are missing (as root).
pub const BINARIES: [&str; 2] = ["/usr/sbin/mariadbd", "/usr/bin/mariadb"];

/// mariadb.sh's probe user (SLAVE MONITOR, PROCESS) and its password.
pub const MONITOR: (&str, &str) = ("monitor", "monitor");

/// One running cluster (all on 127.0.0.1).
pub struct Mariadb {
    pub cluster: ShellCluster,
    /// m1's port (m2, m3: + 1, + 2).
    pub port: u16,
}

static CLUSTER: OnceLock<Result<Mariadb, String>> = OnceLock::new();

impl Mariadb {
    /// The cluster of this test process: started (`mariadb.sh up`) by the
    /// first caller.
    pub fn shared() -> &'static Mariadb {
        shell_cluster::shared(&CLUSTER, Mariadb::start)
    }

    fn start() -> Mariadb {
        let port = procs::free_ports(3);
        let env = vec![
            ("MARIADB_PORT".to_string(), port.to_string()),
            ("MARIADB_WAIT".to_string(), "90".to_string()),
        ];
        Mariadb {
            cluster: ShellCluster::start("mariadb.sh", env),
            port,
        }
    }

    /// The cluster for one test at a time, every node running and
    /// replicating from the primary.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.cluster.lock()
    }

    /// The primary's name (the one node with read_only = 0).
    pub fn primary(&self) -> String {
        self.cluster.script("primary")
    }

    /// The port of node `name`.
    pub fn port_of(&self, name: &str) -> u16 {
        let i = NODES
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no node {name}"));
        self.port + i as u16
    }

    /// `STOP SLAVE SQL_THREAD` on `name` (its replay falls behind while
    /// its IO thread still receives).
    pub fn lag(&self, name: &str) {
        self.cluster.script_with("lag", &[&name[1..]]);
    }

    /// `START SLAVE SQL_THREAD` on `name`.
    pub fn unlag(&self, name: &str) {
        self.cluster.script_with("unlag", &[&name[1..]]);
    }

    /// The `mariadb.sh switchover DIR` command line, for a load's COMMAND.
    pub fn switchover_argv(&self) -> Vec<String> {
        self.cluster.argv("switchover")
    }

    /// The `backends:` of a leaderproxy config: each node's data address,
    /// which the native probes also use (`url` is only its identity).
    pub fn backends_yaml(&self) -> String {
        let mut s = String::from("backends:\n");
        for n in NODES {
            let p = self.port_of(n);
            s.push_str(&format!(
                "  - {{ name: {n}, url: \"http://127.0.0.1:{p}\", tcp: \"127.0.0.1:{p}\" }}\n"
            ));
        }
        s
    }

    /// A file with the probe user's password, in the cluster's DIR.
    pub fn monitor_password_file(&self) -> std::path::PathBuf {
        let f = self.cluster.dir.join("monitor.pw");
        std::fs::write(&f, MONITOR.1).expect("write monitor.pw");
        f
    }
}

/// `mariadb -N -B -e SQL` as app/app, database app, through
/// 127.0.0.1:`port`: its output, or its error text.
pub fn mariadb(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-N",
            "-B",
            "-h",
            "127.0.0.1",
            "--connect-timeout=5",
        ])
        .args(["-P", &port.to_string(), "-u", "app", "-papp", "app"])
        .args(["-e", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run mariadb: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `my_failover_load.py PORT SECONDS CLIENTS [-- COMMAND]` (autocommit
/// INSERTs as app/app), started; see [`shell_cluster::finish_load`].
pub fn start_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> Child {
    shell_cluster::start_load("my_failover_load.py", &[], port, seconds, clients, command)
}

/// Runs a load to the end; see [`start_load`].
pub fn run_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> LoadReport {
    shell_cluster::finish_load(start_load(port, seconds, clients, command))
}

//! The real Patroni 3 + PostgreSQL 15 + etcd cluster of
//! `tests/support/patroni.sh`, from Rust: started once per test process on
//! free loopback ports, shared by the test functions of a file (one at a
//! time: [`Patroni::lock`]), and stopped by a detached watchdog once the
//! test process has exited (statics are never dropped). Also psql, HAProxy
//! with Patroni's documented config, and the write-client loop
//! `pg_failover_load.py` with its JSON summary.
//!
//! Included with `#[path = "support/patroni.rs"] mod patroni;` beside
//! `mod procs;` (it refers to `crate::procs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::procs::{self, TempDir};

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

/// The Python that has Debian's psycopg2 (not a pyenv shim).
const PYTHON: &str = "/usr/bin/python3";

/// One running cluster and its ports (all on 127.0.0.1).
pub struct Patroni {
    /// The script's DIR: data dirs, logs, `env`; removed by the watchdog.
    pub dir: PathBuf,
    /// etcd's client port (peer port + 1).
    pub etcd_port: u16,
    /// Patroni REST API of pg1 (pg2, pg3: + 1, + 2).
    pub rest_port: u16,
    /// PostgreSQL of pg1 (pg2, pg3: + 1, + 2).
    pub pg_port: u16,
    /// HAProxy's write port (read: + 1, stats: + 2).
    pub haproxy_port: u16,
    /// Held by the test using the cluster.
    turn: Mutex<()>,
}

/// The cluster, or why it could not start (the later tests fail at once
/// with that instead of waiting for their own start to time out).
static CLUSTER: OnceLock<Result<Patroni, String>> = OnceLock::new();

/// `PATRONI_WAIT`: the deadline, in seconds, of each wait in patroni.sh.
const WAIT_S: &str = "90";

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

impl Patroni {
    /// The cluster of this test process: started (`patroni.sh up`) by the
    /// first caller.
    pub fn shared() -> &'static Patroni {
        let started = CLUSTER.get_or_init(|| {
            std::panic::catch_unwind(Patroni::start).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the cluster did not start".into())
            })
        });
        match started {
            Ok(c) => c,
            Err(why) => panic!("{why}"),
        }
    }

    /// The cluster, for one test at a time, brought back to one leader and
    /// two streaming replicas (a node killed by an earlier test rejoins).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        let turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        self.script("up");
        turn
    }

    fn start() -> Patroni {
        // Kept by the watchdog, not by TempDir's drop (a static never drops).
        let dir = TempDir::new("patroni").path().to_path_buf();
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        let p = Patroni {
            dir,
            etcd_port: procs::free_ports(2),
            rest_port: procs::free_ports(3),
            pg_port: procs::free_ports(3),
            haproxy_port: procs::free_ports(3),
            turn: Mutex::new(()),
        };
        p.watchdog();
        p.script("up");
        p
    }

    /// A detached shell that runs `patroni.sh down DIR` and removes DIR once
    /// this test process is gone, however it ends.
    fn watchdog(&self) {
        use std::os::unix::process::CommandExt;
        let keep = std::env::var("LEADERPROXY_KEEP_TMP").is_ok_and(|v| v == "1");
        let script = r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done
bash "$1" down "$2" >>"$2/down.log" 2>&1
[ "$3" = 1 ] || rm -rf "$2""#;
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(std::process::id().to_string())
            .arg(support_dir().join("patroni.sh"))
            .arg(&self.dir)
            .arg(if keep { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the cluster's watchdog");
    }

    /// `bash tests/support/patroni.sh CMD DIR` with this cluster's ports;
    /// its stdout. Panics with its stderr when it fails.
    pub fn script(&self, cmd: &str) -> String {
        let out = self.command(cmd).output().expect("run patroni.sh");
        assert!(
            out.status.success(),
            "patroni.sh {cmd} failed ({}):\n{}",
            out.status,
            tail(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The `patroni.sh CMD DIR` command line, for a load's COMMAND.
    pub fn argv(&self, cmd: &str) -> Vec<String> {
        vec![
            "bash".into(),
            support_dir().join("patroni.sh").display().to_string(),
            cmd.into(),
            self.dir.display().to_string(),
        ]
    }

    fn command(&self, cmd: &str) -> Command {
        let argv = self.argv(cmd);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .env("PATRONI_ETCD_PORT", self.etcd_port.to_string())
            .env("PATRONI_REST_PORT", self.rest_port.to_string())
            .env("PATRONI_PG_PORT", self.pg_port.to_string())
            .env("PATRONI_HAPROXY_PORT", self.haproxy_port.to_string())
            .env("PATRONI_WAIT", WAIT_S)
            .stdin(Stdio::null());
        c
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

fn tail(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
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

/// What `pg_failover_load.py` reported.
#[derive(Debug)]
pub struct LoadReport {
    /// Its human-readable summary.
    pub text: String,
    /// Its `summary:` line.
    pub summary: serde_json::Value,
}

impl LoadReport {
    /// INSERTs acknowledged.
    pub fn acked(&self) -> u64 {
        self.summary["acked"].as_u64().unwrap_or(0)
    }

    /// INSERTs failed (any error, reconnects included).
    pub fn failed(&self) -> u64 {
        self.summary["failed"].as_u64().unwrap_or(0)
    }

    /// Failures whose kind contains `needle` (e.g. SQLSTATE `25006`).
    pub fn failed_with(&self, needle: &str) -> u64 {
        let Some(errors) = self.summary["errors"].as_object() else {
            return 0;
        };
        errors
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, n)| n.as_u64().unwrap_or(0))
            .sum()
    }

    /// The longest time with no acknowledged INSERT at all, in ms.
    pub fn longest_pause_ms(&self) -> u64 {
        self.summary["longest_pause_ms"].as_u64().unwrap_or(0)
    }

    /// The server ports that answered, in order, each once per run of
    /// acknowledgements from it.
    pub fn runs(&self) -> Vec<u16> {
        let Some(runs) = self.summary["runs"].as_array() else {
            return Vec::new();
        };
        runs.iter()
            .filter_map(|r| r[1].as_u64().and_then(|p| u16::try_from(p).ok()))
            .collect()
    }

    /// The exit status of the COMMAND run 3 s in.
    pub fn command_exit(&self) -> Option<i64> {
        self.summary["command_exit"].as_i64()
    }
}

/// `pg_failover_load.py PORT SECONDS CLIENTS [-- COMMAND]`, started; see
/// [`finish_load`].
pub fn start_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> Child {
    let mut c = Command::new(PYTHON);
    c.arg(support_dir().join("pg_failover_load.py"))
        .args([port.to_string(), seconds.to_string(), clients.to_string()])
        .env("PGPASSWORD", "postgres")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !command.is_empty() {
        c.arg("--").args(command);
    }
    c.spawn().expect("run /usr/bin/python3 pg_failover_load.py")
}

/// Waits for a load started by [`start_load`] (it ends on its own after its
/// SECONDS plus the COMMAND's run) and reads its report.
pub fn finish_load(load: Child) -> LoadReport {
    let out = load
        .wait_with_output()
        .expect("wait for pg_failover_load.py");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pg_failover_load.py failed ({}):\n{text}\n{}",
        out.status,
        tail(&out)
    );
    let summary = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("pg_failover_load.py printed no summary:\n{text}"));
    LoadReport { text, summary }
}

/// Runs a load to the end; see [`start_load`].
pub fn run_load(port: u16, seconds: u32, clients: u32, command: &[String]) -> LoadReport {
    finish_load(start_load(port, seconds, clients, command))
}

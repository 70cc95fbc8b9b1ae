//! A real cluster run by one of the shell scripts of tests/support
//! (`patroni.sh`, `mariadb.sh`: `SCRIPT up|down|... DIR`, ports from the
//! environment): started once per test process, shared by the test
//! functions of a file (one at a time: [`ShellCluster::lock`]), and stopped
//! by a detached watchdog once the test process has exited (statics are
//! never dropped). Also the write-client loops on `failover_load.py`
//! (`pg_failover_load.py`, `my_failover_load.py`) and their JSON summary.
//!
//! Included with `#[path = "support/shell_cluster.rs"] mod shell_cluster;`
//! beside `mod procs;` (it refers to `crate::procs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::procs::TempDir;

/// The Python that has Debian's client modules (not a pyenv shim).
pub const PYTHON: &str = "/usr/bin/python3";

/// tests/support.
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// One running cluster of `script`.
pub struct ShellCluster {
    /// The script's DIR: data dirs, logs, `env`; removed by the watchdog.
    pub dir: PathBuf,
    script: PathBuf,
    /// Given to every run of the script (ports, waits).
    env: Vec<(String, String)>,
    /// Held by the test using the cluster.
    turn: Mutex<()>,
}

/// `cell`'s cluster, made by `start` for the first caller; a start that
/// panicked fails every later caller at once with the same message
/// (instead of each waiting for its own start to time out).
pub fn shared<T>(cell: &'static OnceLock<Result<T, String>>, start: fn() -> T) -> &'static T {
    let started = cell.get_or_init(|| {
        std::panic::catch_unwind(start).map_err(|e| {
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

impl ShellCluster {
    /// Runs `bash tests/support/SCRIPT up DIR` with `env`, in a new DIR
    /// under the temp dir, after arming the watchdog.
    pub fn start(script: &str, env: Vec<(String, String)>) -> ShellCluster {
        let tag = script.trim_end_matches(".sh");
        // Kept by the watchdog, not by TempDir's drop (a static never drops).
        let dir = TempDir::new(tag).path().to_path_buf();
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        let c = ShellCluster {
            dir,
            script: support_dir().join(script),
            env,
            turn: Mutex::new(()),
        };
        c.watchdog();
        c.script("up");
        c
    }

    /// The cluster for one test at a time, brought back up first (`up`
    /// starts what an earlier test stopped or killed and waits for a
    /// healthy cluster).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        let turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        self.script("up");
        turn
    }

    /// A detached shell that runs `SCRIPT down DIR` and removes DIR once this
    /// test process is gone, however it ends (`LEADERPROXY_KEEP_TMP=1`
    /// keeps DIR). Never waited for: it outlives this process by design
    /// (and ends only after it, so it is never a zombie of ours).
    fn watchdog(&self) {
        let script = r#"bash "$1" down "$2" >>"$2/down.log" 2>&1
[ "$3" = 1 ] || rm -rf "$2""#;
        let dir = self.dir.display().to_string();
        after_exit(
            script,
            &[&self.script.display().to_string(), &dir, keep_tmp()],
            &self.env,
        );
    }

    /// `bash SCRIPT CMD... DIR...` (`args`: more arguments after DIR); its
    /// stdout. Panics with its stderr when it fails.
    pub fn script_with(&self, cmd: &str, args: &[&str]) -> String {
        let argv = self.argv_with(cmd, args);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.script.display()));
        assert!(
            out.status.success(),
            "{} {cmd} failed ({}):\n{}",
            self.script.display(),
            out.status,
            stderr_tail(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// [`ShellCluster::script_with`] without more arguments.
    pub fn script(&self, cmd: &str) -> String {
        self.script_with(cmd, &[])
    }

    /// The `bash SCRIPT CMD DIR ARGS...` command line, for a load's COMMAND
    /// (run by the load with the test's environment: the script reads its
    /// ports from DIR/env after `up`).
    pub fn argv_with(&self, cmd: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "bash".into(),
            self.script.display().to_string(),
            cmd.into(),
            self.dir.display().to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// [`ShellCluster::argv_with`] without more arguments.
    pub fn argv(&self, cmd: &str) -> Vec<String> {
        self.argv_with(cmd, &[])
    }
}

/// "1" when `LEADERPROXY_KEEP_TMP=1` (keep what a test leaves), else "0".
pub fn keep_tmp() -> &'static str {
    if std::env::var("LEADERPROXY_KEEP_TMP").is_ok_and(|v| v == "1") {
        "1"
    } else {
        "0"
    }
}

/// A detached `bash -c SCRIPT` that waits until this test process is gone,
/// however it ends, then runs `script` with `args` as `$1`... and `env`.
/// Never waited for: it outlives this process by design (and ends only
/// after it, so it is never a zombie of ours).
#[allow(clippy::zombie_processes)]
pub fn after_exit(script: &str, args: &[&str], env: &[(String, String)]) {
    use std::os::unix::process::CommandExt;
    let script = format!("while kill -0 \"$0\" 2>/dev/null; do sleep 1; done\n{script}");
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(std::process::id().to_string())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn a watchdog");
}

fn stderr_tail(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// What a `failover_load.py` client loop reported.
#[derive(Debug)]
pub struct LoadReport {
    /// Its human-readable summary.
    pub text: String,
    /// Its `summary:` line.
    pub summary: serde_json::Value,
}

impl LoadReport {
    /// Operations acknowledged.
    pub fn acked(&self) -> u64 {
        self.summary["acked"].as_u64().unwrap_or(0)
    }

    /// Operations failed (any error, reconnects included).
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

    /// The longest time with no acknowledged operation at all, in ms.
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

/// `tests/support/LOADER PORT SECONDS CLIENTS [-- COMMAND]` (a client loop
/// on failover_load.py), started with `env`; see [`finish_load`].
pub fn start_load(
    loader: &str,
    env: &[(&str, &str)],
    port: u16,
    seconds: u32,
    clients: u32,
    command: &[String],
) -> Child {
    let mut c = Command::new(PYTHON);
    c.arg(support_dir().join(loader))
        .args([port.to_string(), seconds.to_string(), clients.to_string()])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !command.is_empty() {
        c.arg("--").args(command);
    }
    c.spawn()
        .unwrap_or_else(|e| panic!("run {PYTHON} {loader}: {e}"))
}

/// Waits for a load started by [`start_load`] (it ends on its own after its
/// SECONDS plus the COMMAND's run) and reads its report.
pub fn finish_load(load: Child) -> LoadReport {
    let out = load.wait_with_output().expect("wait for the load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the load failed ({}):\n{text}\n{}",
        out.status,
        stderr_tail(&out)
    );
    let summary = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("the load printed no summary:\n{text}"));
    LoadReport { text, summary }
}

//! MariaDB 10.11 primary (m1) + two GTID replicas on 127.0.0.1, through
//! `tests/support/mariadb.sh` (which installs `mariadb-server` if missing,
//! creates the users `app`/`app` and `monitor`/`monitor`, and scripts the
//! switchover and the held-back replica): free ports, its own directory,
//! `down` on drop.
#![allow(dead_code)]

use std::process::Command;

use crate::procs::{free_ports, TempDir};

pub const MARIADBD: &str = "/usr/sbin/mariadbd";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mariadb.sh");

pub struct MariaDb {
    pub dir: TempDir,
    /// m1, m2, m3.
    pub ports: Vec<u16>,
}

impl MariaDb {
    /// `mariadb.sh up`: returns once both replicas have caught up.
    pub fn up() -> MariaDb {
        let dir = TempDir::new("mariadb");
        // mariadb.sh numbers m2 and m3 from m1's port: all three must be free
        // (a free base with a taken base + 1 failed a run: m2 could not bind).
        let base = free_ports(3);
        let db = MariaDb {
            ports: vec![base, base + 1, base + 2],
            dir,
        };
        db.script(&["up"], &[("MARIADB_PORT", &base.to_string())]);
        db
    }

    /// `mariadb.sh CMD DIR ARGS…`; panics with its output when it fails.
    pub fn script(&self, cmd: &[&str], env: &[(&str, &str)]) -> String {
        let dir = self.dir.path().display().to_string();
        let mut args = vec![SCRIPT, cmd[0], &dir];
        args.extend_from_slice(&cmd[1..]);
        let out = Command::new("bash")
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("run mariadb.sh");
        assert!(
            out.status.success(),
            "mariadb.sh {cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `sql` on node `i` (0-based) as `app` over TCP.
    pub fn app_sql(&self, i: usize, sql: &str) {
        let out = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-uapp", "-papp", "-N", "-e", sql])
            .args(["-P", &self.ports[i].to_string()])
            .output()
            .expect("run mariadb");
        assert!(
            out.status.success(),
            "mariadb on m{}: {sql}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let dir = self.dir.path().display().to_string();
        let _ = Command::new("bash").args([SCRIPT, "down", &dir]).output();
    }
}

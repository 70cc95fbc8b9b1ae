//! A standalone PostgreSQL 15 primary and one streaming replica on
//! 127.0.0.1 (Debian `postgresql-15`; `tests/support/patroni.sh` installs
//! it), no Patroni: for the native `postgres` probe. Password logins only
//! over TCP (`scram-sha-256`, initdb's `--auth-host`), superuser
//! `postgres` with [`PASSWORD`] (also in `password_file`). Run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root),
//! through `setpriv`, which execs: the [`Proc`] is the postmaster itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{free_port, wait_for, Proc, TempDir};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PSQL: &str = "/usr/bin/psql";
pub const PASSWORD: &str = "pg-probe-pw-41c9";

/// The binaries [`PgPair::start`] needs.
pub fn binaries() -> Vec<String> {
    ["postgres", "initdb", "pg_basebackup"]
        .iter()
        .map(|b| format!("{PG_BIN}/{b}"))
        .chain([PSQL.to_string()])
        .collect()
}

/// Whether the tests run as root (read from /proc: libc is no dependency).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// `program args` as the `postgres` user when we are root.
fn as_postgres(program: &str, args: &[String]) -> (String, Vec<String>) {
    if !root() {
        return (program.to_string(), args.to_vec());
    }
    let mut a: Vec<String> = [
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        program,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend_from_slice(args);
    ("/usr/bin/setpriv".to_string(), a)
}

/// Runs `program args` (as `postgres`) to its end; panics with its output
/// when it fails.
fn run(program: &str, args: &[String], cwd: &Path) {
    let (p, a) = as_postgres(program, args);
    let out = Command::new(&p)
        .args(&a)
        .current_dir(cwd)
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Node 0 the primary, node 1 its streaming replica (`pg_basebackup -R`).
pub struct PgPair {
    pub ports: Vec<u16>,
    pub procs: Vec<Proc>,
    pub password_file: PathBuf,
    pub dir: TempDir,
}

impl PgPair {
    /// Returns once the replica streams from the primary.
    pub fn start() -> PgPair {
        let dir = TempDir::new("pg");
        let password_file = dir.join("pw");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        if root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres", &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(ok.success(), "chown the test directory to postgres");
        }
        let ports = vec![free_port(), free_port()];
        let data: Vec<String> = (1..=2)
            .map(|i| dir.join(&format!("pg{i}")).display().to_string())
            .collect();
        let pwfile = format!("--pwfile={}", password_file.display());
        run(
            &format!("{PG_BIN}/initdb"),
            &s(&[
                "-D",
                &data[0],
                "-U",
                "postgres",
                &pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]),
            dir.path(),
        );
        let mut pair = PgPair {
            ports,
            procs: Vec::new(),
            password_file,
            dir,
        };
        pair.spawn(0);
        wait_for(Duration::from_secs(15), "the primary answers", || {
            pair.try_sql(0, "SELECT 1").as_deref() == Some("1")
        });
        run(
            &format!("{PG_BIN}/pg_basebackup"),
            &s(&[
                "-h",
                "127.0.0.1",
                "-p",
                &pair.ports[0].to_string(),
                "-U",
                "postgres",
                "-D",
                &data[1],
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ]),
            pair.dir.path(),
        );
        pair.spawn(1);
        wait_for(Duration::from_secs(15), "the replica streams", || {
            pair.try_sql(
                0,
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            )
            .as_deref()
                == Some("1")
        });
        pair
    }

    fn spawn(&mut self, i: usize) {
        let data = self.dir.join(&format!("pg{}", i + 1));
        let args = s(&[
            "-D",
            &data.display().to_string(),
            "-p",
            &self.ports[i].to_string(),
            "-k",
            &self.dir.path().display().to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]);
        let (p, a) = as_postgres(&format!("{PG_BIN}/postgres"), &args);
        self.procs.push(Proc::spawn(
            &format!("postgres-pg{}", i + 1),
            p,
            &a,
            self.dir.path(),
        ));
    }

    /// The first column of `sql`'s first row on node `i`, over TCP with the
    /// password; `None` when it cannot be asked.
    pub fn try_sql(&self, i: usize, sql: &str) -> Option<String> {
        let out = Command::new(PSQL)
            .args([
                "-X",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-p", &self.ports[i].to_string(), "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "2")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Like [`Self::try_sql`]; panics when it fails.
    pub fn sql(&self, i: usize, sql: &str) -> String {
        self.try_sql(i, sql)
            .unwrap_or_else(|| panic!("psql on pg{}: {sql}", i + 1))
    }

    /// SIGKILL node `i`'s postmaster.
    pub fn kill(&mut self, i: usize) {
        self.procs[i].kill();
    }
}

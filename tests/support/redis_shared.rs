//! One [`RedisCluster`] (3 Redis + 3 Sentinels + webdis) per test process,
//! shared by the test functions of a file one at a time: [`lock`] starts it
//! for the first caller and, for every caller, brings it back to one primary
//! with two connected replicas first (a node an earlier test killed is
//! started again as a replica of the current primary; `CLIENT PAUSE` is
//! lifted). A static never drops, so a detached watchdog kills the
//! cluster's processes (those whose working directory is in the cluster's
//! directory) and removes the directory once the test process has exited.
//!
//! Needs `mod procs;`, `mod redis;` and `mod shell_cluster;` at the test
//! crate root.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::procs::wait_for;
use crate::redis::{redis_cmd, RedisCluster};

static CLUSTER: OnceLock<Result<Mutex<RedisCluster>, String>> = OnceLock::new();

fn start() -> Mutex<RedisCluster> {
    let c = RedisCluster::start();
    watchdog(c.dir.path());
    Mutex::new(c)
}

/// The shared cluster for one test at a time, healthy (see the module doc).
pub fn lock() -> MutexGuard<'static, RedisCluster> {
    let cell = crate::shell_cluster::shared(&CLUSTER, start);
    let mut c = cell.lock().unwrap_or_else(|e| e.into_inner());
    restore(&mut c);
    c
}

/// One master, every other node running and a connected replica of it,
/// no client paused.
fn restore(c: &mut RedisCluster) {
    let master = crate::procs::wait_some(
        std::time::Instant::now() + Duration::from_secs(20),
        "a master in the shared cluster",
        || c.master(),
    );
    for i in 0..c.nodes.len() {
        if !c.nodes[i].redis.is_running() {
            c.restart_as_replica(i, master);
        }
    }
    for n in &c.nodes {
        let _ = redis_cmd(n.redis_port, &["CLIENT", "UNPAUSE"]);
    }
    let master_port = c.nodes[master].redis_port;
    wait_for(
        Duration::from_secs(30),
        "every other node a connected replica of the master",
        || (0..c.nodes.len()).all(|i| i == master || c.replica_of(i) == Some(master_port)),
    );
}

/// Once this test process is gone: SIGKILLs every process whose working
/// directory is `dir` or under it (webdis runs there, redis-server and
/// redis-sentinel in their own directories in it) and removes `dir`
/// (`LEADERPROXY_KEEP_TMP=1` keeps it).
fn watchdog(dir: &std::path::Path) {
    let script = r#"for p in /proc/[0-9]*; do
  case "$(readlink "$p/cwd" 2>/dev/null)" in
    "$1" | "$1"/*) kill -9 "${p#/proc/}" 2>/dev/null ;;
  esac
done
[ "$2" = 1 ] || rm -rf "$1""#;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    crate::shell_cluster::after_exit(
        script,
        &[&dir.display().to_string(), crate::shell_cluster::keep_tmp()],
        &[],
    );
}

//! HAProxy in TCP mode in front of tests/support/redis.rs's cluster, from
//! tests/support/haproxy-redis.cfg.tmpl (the usual `tcp-check send ROLE` /
//! `expect string master` setup) via tests/support/haproxy.sh: a write port
//! (the master) and a read port (connected replicas). Down on drop.
//!
//! Needs `mod procs;` and `mod redis;` at the test crate root.
#![allow(dead_code)]

use crate::procs::{free_port, TempDir};
use crate::redis::RedisCluster;

/// A running HAProxy; stopped on drop.
pub struct Haproxy {
    dir: TempDir,
}

impl Haproxy {
    /// HAProxy on 127.0.0.1:`write` / `read`, checks every 1 s, fall 2, rise 1.
    pub fn start(cluster: &RedisCluster, write: u16, read: u16) -> Haproxy {
        let dir = TempDir::new("haproxy-redis");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/haproxy.sh");
        let tmpl = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/haproxy-redis.cfg.tmpl"
        );
        let port = |i: usize| cluster.nodes[i].redis_port.to_string();
        let out = std::process::Command::new("bash")
            .args([script, "up", &dir.path().display().to_string(), tmpl])
            .arg(format!("WRITE_PORT={write}"))
            .arg(format!("READ_PORT={read}"))
            .arg(format!("STATS_PORT={}", free_port()))
            .arg("INTER=1s")
            .arg("FALL=2")
            .arg("RISE=1")
            .arg(format!("R1={}", port(0)))
            .arg(format!("R2={}", port(1)))
            .arg(format!("R3={}", port(2)))
            .output()
            .expect("run haproxy.sh");
        assert!(
            out.status.success(),
            "haproxy.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Haproxy { dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/haproxy.sh");
        let _ = std::process::Command::new("bash")
            .args([script, "down", &self.dir.path().display().to_string()])
            .output();
    }
}

//! Real MariaDB 10.11, a primary and two GTID replicas
//! (`tests/support/mariadb.sh`), behind leaderproxy's TCP listeners
//! (issue 18). MariaDB has no HTTP API: the proxy uses the native `mysql`
//! probe (`preset: mariadb`), which needs the cargo feature `mysql`;
//! without it these tests are ignored. `tests/run.sh` runs them with
//! `cargo test --features mysql --test real_mariadb`.
//!
//! Needs Debian's mariadb-server and mariadb-client (`mariadb.sh` installs
//! them as root) and python3-pymysql (the write clients).
//!
//! - `switchover_under_write_load`: 8 write clients
//!   (`my_failover_load.py`) through the write port across
//!   `mariadb.sh switchover` (old primary `read_only = 1`, the first replica
//!   promoted once it has applied everything, the others re-pointed).
//!   Asserted: the INSERTs ran on the old primary, then only on the new one;
//!   the write port reached the new primary within two leader-probe
//!   intervals of the switchover's end. Printed: failed INSERTs, those
//!   refused read-only (1290: sessions on the old primary between its
//!   `read_only = 1` and the proxy's next probe), the longest pause.
//! - `a_lagging_replica_leaves_the_read_set`: `STOP SLAVE SQL_THREAD` on
//!   a replica, then writes: under `reads.max_lag` the proxy stops sending
//!   it read connections (only the other replica answers the read port);
//!   after `START SLAVE SQL_THREAD` it is back.

#[path = "support/procs.rs"]
mod procs;

#[path = "support/shell_cluster.rs"]
mod shell_cluster;

#[path = "support/mariadb_shared.rs"]
mod mariadb;

use std::time::Duration;

use mariadb::{Mariadb, NODES};
use procs::{spawn_proxy, wait_for, ProxyProc};

const BIN: &str = env!("CARGO_BIN_EXE_leaderproxy");
const CLIENTS: u32 = 8;
/// Load length: the switchover runs 3 s in and takes 2-20 s under load
/// (it waits for the replicas to apply everything).
const LOAD_S: u32 = 30;
/// The preset's `leader.interval`.
const LEADER_INTERVAL: Duration = Duration::from_millis(500);
/// `reads.max_lag` in GTID sequence numbers (one per autocommit INSERT).
const MAX_LAG: u32 = 20;

/// The cluster for this test (None: skipped), its turn held.
fn cluster(test: &str) -> Option<(&'static Mariadb, std::sync::MutexGuard<'static, ()>)> {
    if !procs::require_binaries(test, &mariadb::BINARIES) {
        return None;
    }
    let c = Mariadb::shared();
    Some((c, c.lock()))
}

/// leaderproxy with a write and a read TCP listener in front of `c`, probed
/// natively as mariadb.sh's `monitor` user, once it names the primary; its
/// ports.
fn proxy(c: &Mariadb) -> (ProxyProc, u16, u16) {
    let (write, read) = (procs::free_port(), procs::free_port());
    let yaml = format!(
        "preset: mariadb\n\
         probe_auth: {{ user: {}, password_file: \"{}\" }}\n\
         reads: {{ max_lag: {MAX_LAG} }}\n\
         tcp:\n  - {{ listen: \"127.0.0.1:{write}\", to: write }}\n  - {{ listen: \"127.0.0.1:{read}\", to: read }}\n\
         {}",
        mariadb::MONITOR.0,
        c.monitor_password_file().display(),
        c.backends_yaml()
    );
    let p = spawn_proxy(BIN, &yaml);
    p.wait_leader(&c.primary(), Duration::from_secs(15));
    (p, write, read)
}

/// Whether `/admin/routing` lists `name` among the followers reads go to.
fn in_read_set(p: &ProxyProc, name: &str) -> bool {
    p.routing()["followers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|n| n == name))
}

/// The node names the read port's connections reach over `n` connections.
fn read_port_nodes(c: &Mariadb, read: u16, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let port = mariadb::mariadb(read, "SELECT @@port").expect("through the read port");
            NODES
                .iter()
                .find(|m| c.port_of(m).to_string() == port)
                .unwrap_or_else(|| panic!("the read port reached :{port}"))
                .to_string()
        })
        .collect()
}

#[test]
#[cfg_attr(not(feature = "mysql"), ignore = "needs the cargo feature mysql")]
fn switchover_under_write_load() {
    let Some((c, _turn)) = cluster("real_mariadb") else {
        return;
    };
    let (p, write, _read) = proxy(c);
    let old = c.primary();
    let ours = mariadb::run_load(write, LOAD_S, CLIENTS, &c.switchover_argv());
    let new = c.primary();
    println!(
        "real_mariadb[switchover] {old} -> {new}:\n{}\n failed {}, of which read-only (1290) {}, longest pause {} ms, closed on leader change {}",
        ours.text,
        ours.failed(),
        ours.failed_with("1290"),
        ours.longest_pause_ms(),
        p.metric_sum("leaderproxy_tcp_closed_total", &[("reason", "leader_change")])
    );
    assert_eq!(ours.command_exit(), Some(0), "mariadb.sh switchover failed");
    assert_ne!(new, old, "mariadb.sh promoted a replica");
    assert_eq!(
        ours.runs(),
        vec![c.port_of(&old), c.port_of(&new)],
        "INSERTs through leaderproxy ran on {old}, then only on {new}"
    );
    // The switchover ended before the load did: the proxy must lead to the
    // new primary by now, or within two probe intervals.
    p.wait_leader(&new, 2 * LEADER_INTERVAL);
}

#[test]
#[cfg_attr(not(feature = "mysql"), ignore = "needs the cargo feature mysql")]
fn a_lagging_replica_leaves_the_read_set() {
    let Some((c, _turn)) = cluster("real_mariadb") else {
        return;
    };
    let (p, write, read) = proxy(c);
    let primary = c.primary();
    let replicas: Vec<&str> = NODES.iter().copied().filter(|n| *n != primary).collect();
    let (lagging, fresh) = (replicas[0], replicas[1]);
    for n in &replicas {
        wait_for(
            Duration::from_secs(15),
            &format!("{n} in the read set"),
            || in_read_set(&p, n),
        );
    }

    c.lag(lagging);
    for i in 0..(2 * MAX_LAG) {
        mariadb::mariadb(write, &format!("INSERT INTO t(v) VALUES ('lag-{i}')"))
            .expect("INSERT through the write port");
    }
    wait_for(
        Duration::from_secs(10),
        &format!("{lagging} out of the read set (more than {MAX_LAG} behind)"),
        || !in_read_set(&p, lagging),
    );
    let reached = read_port_nodes(c, read, 6);
    c.unlag(lagging);
    println!("real_mariadb[lag] {lagging} held back: the read port reached {reached:?}");
    assert!(
        reached.iter().all(|n| n == fresh),
        "with {lagging} held back, reads go to {fresh} only: {reached:?}"
    );
    wait_for(
        Duration::from_secs(15),
        &format!("{lagging} back in the read set once it caught up"),
        || in_read_set(&p, lagging),
    );
}

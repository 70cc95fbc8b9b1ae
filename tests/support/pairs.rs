//! Write-then-read pairs through a leaderproxy process, for the real-cluster
//! consistency tests (`tests/real_etcd_consistency.rs`,
//! `tests/real_redis_consistency.rs`): the pair loop over sessions, what the
//! pairs saw, and the positions `/admin/routing` shows per backend.
//!
//! Needs `#[path = "support/procs.rs"] mod procs;` and
//! `#[path = "support/table.rs"] mod table;` at the test crate root.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::procs::{wait_for, HttpConn, HttpResponse, ProxyProc};
use crate::table::backend;

/// Sessions the pairs take turns in: pair `i` is in session `s<i mod 8>`.
pub const SESSIONS: usize = 8;
/// Read timeout of the pairs' connection.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long positions in `/admin/routing` may take to reach a write.
const POSITIONS_WITHIN: Duration = Duration::from_secs(3);

/// What one pair saw.
pub struct Pair {
    /// The backend that answered the read (`x-leaderproxy-backend`).
    pub backend: String,
    /// The read found the value the pair wrote.
    pub hit: bool,
    /// The write's position, where the test reads one.
    pub position: Option<u64>,
}

/// What a run of pairs saw.
pub struct Pairs {
    /// Reads that did not find their pair's write.
    pub missed: usize,
    /// Reads per backend.
    pub went: BTreeMap<String, usize>,
    /// The last write's position (0 without any).
    pub last_position: u64,
}

/// `n` pairs, one after the other on one keep-alive connection to `p`:
/// `pair(conn, i, session_headers, last_position)` writes and reads back
/// pair `i` in session `s<i mod 8>` (header `X-Session-Id`) and returns
/// what it saw; `last_position` is the previous write's.
pub fn run_pairs(
    p: &ProxyProc,
    n: usize,
    mut pair: impl FnMut(&mut HttpConn, usize, &[(&str, &str)], u64) -> Pair,
) -> Pairs {
    let mut conn = HttpConn::new(&p.listen, TIMEOUT);
    let mut out = Pairs {
        missed: 0,
        went: BTreeMap::new(),
        last_position: 0,
    };
    for i in 0..n {
        let sid = format!("s{}", i % SESSIONS);
        let seen = pair(
            &mut conn,
            i,
            &[("X-Session-Id", sid.as_str())],
            out.last_position,
        );
        *out.went.entry(seen.backend).or_default() += 1;
        if !seen.hit {
            out.missed += 1;
        }
        if let Some(pos) = seen.position {
            out.last_position = pos;
        }
    }
    out
}

/// The backend that answered (`x-leaderproxy-backend`, with `debug_headers`).
pub fn backend_of(r: &HttpResponse) -> String {
    r.header("x-leaderproxy-backend")
        .expect("x-leaderproxy-backend (debug_headers)")
        .to_string()
}

/// `name`'s position in an `/admin/routing` answer, if it has one.
fn position(routing: &serde_json::Value, name: &str) -> Option<u64> {
    backend(routing, name)["position"].as_u64()
}

/// Every one of `names` has a position in `p`'s `/admin/routing`.
pub fn assert_every_position_probed(p: &ProxyProc, names: &[String]) {
    let routing = p.routing();
    for n in names {
        assert!(
            position(&routing, n).is_some(),
            "{n} has no position in /admin/routing: {routing}"
        );
    }
}

/// `n` slow pairs in session `slow` on `conn`: pair `i` writes `w<i>`
/// (`write(conn, i, value, session_headers)` returns the write's position);
/// once a follower of `p` (one of `names` other than `leader`) shows that
/// position in `/admin/routing`, its read (`read(conn, i, session_headers)`
/// returns the value found and the backend that answered) must find `w<i>`
/// and be served by a follower.
pub fn run_slow_pairs(
    p: &ProxyProc,
    conn: &mut HttpConn,
    names: &[String],
    leader: &str,
    n: usize,
    mut write: impl FnMut(&mut HttpConn, usize, &str, &[(&str, &str)]) -> u64,
    mut read: impl FnMut(&mut HttpConn, usize, &[(&str, &str)]) -> (Option<String>, String),
) {
    let h = [("X-Session-Id", "slow")];
    for i in 0..n {
        let value = format!("w{i}");
        let pos = write(conn, i, &value, &h);
        wait_a_follower_position(
            p,
            names,
            leader,
            pos,
            "a follower's probed position reaches the write",
        );
        let (v, backend) = read(conn, i, &h);
        assert_eq!(v.as_deref(), Some(value.as_str()));
        assert_ne!(backend, leader, "a fresh follower serves the read");
    }
}

/// Waits (3s) until every one of `names` has a position of at least `at`
/// in `p`'s `/admin/routing`; `what` names the wait.
pub fn wait_every_position(p: &ProxyProc, names: &[String], at: u64, what: &str) {
    wait_for(POSITIONS_WITHIN, what, || {
        let r = p.routing();
        names
            .iter()
            .all(|n| position(&r, n).is_some_and(|pos| pos >= at))
    });
}

/// Waits (3s) until one of `names` other than `leader` has a position of at
/// least `at` in `p`'s `/admin/routing`; `what` names the wait.
pub fn wait_a_follower_position(
    p: &ProxyProc,
    names: &[String],
    leader: &str,
    at: u64,
    what: &str,
) {
    wait_for(POSITIONS_WITHIN, what, || {
        let r = p.routing();
        names
            .iter()
            .filter(|n| *n != leader)
            .any(|n| position(&r, n).is_some_and(|pos| pos >= at))
    });
}

/// Waits up to `within` until `cond(backend, routing)` holds for backend
/// `name` in `p`'s `/admin/routing`; `what` names the wait.
pub fn wait_backend(
    p: &ProxyProc,
    name: &str,
    within: Duration,
    what: &str,
    mut cond: impl FnMut(&serde_json::Value, &serde_json::Value) -> bool,
) {
    wait_for(within, what, || {
        let r = p.routing();
        cond(backend(&r, name), &r)
    });
}

//! The MySQL/MariaDB probe (cargo feature `mysql`): one query through
//! mysql_async on a connection of its own, [`QUERY`], which names only the
//! variables the server has: MariaDB has no `super_read_only` (ERROR 1193
//! on 10.11), MySQL has no `gtid_current_pos`. The leader is the server
//! with `read_only` off (and `super_read_only` off where it exists); the
//! position is the sequence of MariaDB's `gtid_current_pos` when it has one
//! domain (`0-2-11` -> 11: comparable across a switchover, where the server
//! id changes); with several domains, or on MySQL (a UUID set), there is no
//! single number.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::Reply;
use crate::backend::Backend;
use crate::config::ProbeAuth;
use crate::health::probe::ProbeFailure;

/// Default MySQL/MariaDB user of the probe.
pub(super) const DEFAULT_USER: &str = "root";

/// Every variable the decision needs, those the server lacks left out.
pub(super) const QUERY: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'super_read_only', 'gtid_current_pos')";

/// `ON`/`OFF` (SHOW VARIABLES) or `1`/`0`.
fn on(v: &str) -> Result<bool, String> {
    match v {
        "ON" | "1" => Ok(true),
        "OFF" | "0" => Ok(false),
        _ => Err(format!("not ON or OFF: {v:?}")),
    }
}

/// The GTID sequence of a single-domain `gtid_current_pos`.
pub(super) fn gtid_seq(pos: &str) -> Option<u64> {
    let pos = pos.trim();
    if pos.is_empty() || pos.contains(',') {
        return None;
    }
    let mut parts = pos.split('-');
    let (_domain, _server, seq) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    seq.parse().ok()
}

/// The rows of [`QUERY`] (name, value).
pub(super) fn rows(rows: &[(String, String)]) -> Result<Reply, String> {
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let read_only = on(get("read_only").ok_or("the server reports no read_only")?)
        .map_err(|e| format!("read_only {e}"))?;
    let super_read_only = match get("super_read_only") {
        Some(v) => on(v).map_err(|e| format!("super_read_only {e}"))?,
        None => false,
    };
    let leads = !read_only && !super_read_only;
    Ok(Reply {
        leads,
        role: if leads { "writable" } else { "read_only" }.into(),
        position: get("gtid_current_pos").and_then(gtid_seq),
        replicas: None,
    })
}

/// Logs in at `backend`'s data address, runs [`QUERY`] and disconnects.
pub(super) async fn ask(backend: &Backend, auth: &ProbeAuth) -> Result<Reply, ProbeFailure> {
    let Some(addr) = backend.tcp.as_ref() else {
        return Err(ProbeFailure::Broken(
            "no data address (backends[].tcp) to probe natively".into(),
        ));
    };
    let opts = OptsBuilder::default()
        .ip_or_hostname(addr.host())
        .tcp_port(addr.port_u16().unwrap_or(3306))
        .user(Some(auth.user.as_deref().unwrap_or(DEFAULT_USER)))
        .pass(auth.password.as_ref().map(|p| p.expose()))
        .db_name(auth.database.as_deref())
        .prefer_socket(false)
        .stmt_cache_size(0);
    let mut conn = Conn::new(opts).await.map_err(|e| match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => {
            ProbeFailure::Connect(io.to_string())
        }
        e => ProbeFailure::Broken(format!("login: {e}")),
    })?;
    let answer: Result<Vec<(String, String)>, _> = conn.query(QUERY).await;
    let _ = conn.disconnect().await;
    let answer = answer.map_err(|e| ProbeFailure::Broken(format!("query: {e}")))?;
    rows(&answer).map_err(ProbeFailure::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn mariadb_primary_and_replica() {
        // MariaDB 10.11.19 (docs/tcp-research.md): `0  0-2-11` on the primary.
        let p = rows(&r(&[("gtid_current_pos", "0-2-11"), ("read_only", "OFF")])).unwrap();
        assert_eq!(
            p,
            Reply {
                leads: true,
                role: "writable".into(),
                position: Some(11),
                replicas: None,
            }
        );
        let rep = rows(&r(&[("gtid_current_pos", "0-1-9"), ("read_only", "ON")])).unwrap();
        assert!(!rep.leads);
        assert_eq!(rep.position, Some(9));
    }

    #[test]
    fn mysql_super_read_only_and_positions_without_one_number() {
        let m = rows(&r(&[("read_only", "OFF"), ("super_read_only", "ON")])).unwrap();
        assert!(!m.leads, "super_read_only alone keeps writes out");
        assert_eq!(m.position, None);
        assert_eq!(
            gtid_seq("0-1-9,1-2-4"),
            None,
            "two domains: no single number"
        );
        assert_eq!(gtid_seq(""), None);
        assert_eq!(gtid_seq("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"), None);
        assert!(rows(&r(&[])).is_err());
        assert!(rows(&r(&[("read_only", "maybe")])).is_err());
    }
}

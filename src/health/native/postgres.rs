//! The PostgreSQL probe: one `simple_query` (text protocol, no prepare
//! round trip) through tokio-postgres, on a connection of its own, asking
//! the role and the position at once ([`QUERY`]). A primary is a server not
//! in recovery; its position is `pg_current_wal_lsn()`, a replica's is
//! `pg_last_wal_replay_lsn()` (what its reads can see, not what it has
//! received), each as bytes from `0/0`. A replica that has never replayed
//! (fresh base backup) has none. No TLS yet.

use tokio::net::TcpStream;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::Reply;
use crate::config::{ProbeAuth, DEFAULT_POSTGRES_USER};
use crate::health::probe::ProbeFailure;

/// Role and position in one round trip; the CASE evaluates only the branch
/// taken (`pg_current_wal_lsn()` fails during recovery).
pub(super) const QUERY: &str = "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0')::bigint";

/// The row of [`QUERY`] as text: `t`/`f`, and a number or NULL.
pub(super) fn row(in_recovery: Option<&str>, position: Option<&str>) -> Result<Reply, String> {
    let leads = match in_recovery {
        Some("f") => true,
        Some("t") => false,
        other => return Err(format!("pg_is_in_recovery() answered {other:?}")),
    };
    let position = match position {
        None => None,
        Some(p) => Some(
            p.parse::<u64>()
                .map_err(|_| format!("WAL position {p:?} is not a number"))?,
        ),
    };
    Ok(Reply {
        leads,
        role: if leads { "primary" } else { "replica" }.into(),
        position,
        replicas: None,
    })
}

/// The connection settings: `probe_auth`'s user (default `postgres`),
/// password and database (default `postgres`).
fn settings(auth: &ProbeAuth) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.user(auth.user.as_deref().unwrap_or(DEFAULT_POSTGRES_USER))
        .dbname(auth.database.as_deref().unwrap_or(DEFAULT_POSTGRES_USER))
        .application_name("leaderproxy-probe");
    if let Some(pw) = &auth.password {
        c.password(pw.expose());
    }
    c
}

/// An error as text: the server's own message and SQLSTATE when it sent one
/// (tokio-postgres's `Display` says only "db error"), else the error and
/// its cause. Neither ever carries the password.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Logs in on `stream`, runs [`QUERY`] and closes.
pub(super) async fn ask(stream: TcpStream, auth: &ProbeAuth) -> Result<Reply, ProbeFailure> {
    let (client, conn) = settings(auth)
        .connect_raw(stream, NoTls)
        .await
        .map_err(|e| ProbeFailure::Broken(format!("login: {}", describe(&e))))?;
    let conn = tokio::spawn(conn);
    let answer = client.simple_query(QUERY).await;
    drop(client);
    conn.abort();
    let messages = answer.map_err(|e| ProbeFailure::Broken(format!("query: {}", describe(&e))))?;
    let r = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .ok_or_else(|| ProbeFailure::Broken("query answered no row".into()))?;
    row(r.get(0), r.get(1)).map_err(ProbeFailure::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_replica_and_unknown_positions() {
        // As seen on PostgreSQL 15 (docs/tcp-research.md): f|121837640, t|119917816.
        assert_eq!(
            row(Some("f"), Some("121837640")).unwrap(),
            Reply {
                leads: true,
                role: "primary".into(),
                position: Some(121837640),
                replicas: None,
            }
        );
        let r = row(Some("t"), Some("119917816")).unwrap();
        assert!(!r.leads);
        assert_eq!(r.position, Some(119917816));
        // Never replayed: NULL.
        assert_eq!(row(Some("t"), None).unwrap().position, None);
        assert!(row(None, Some("1")).is_err());
        assert!(row(Some("f"), Some("-5")).is_err());
    }

    #[test]
    fn defaults_user_and_database_postgres() {
        let c = settings(&ProbeAuth::default());
        assert_eq!(c.get_user(), Some("postgres"));
        assert_eq!(c.get_dbname(), Some("postgres"));
        assert!(c.get_password().is_none());
    }
}

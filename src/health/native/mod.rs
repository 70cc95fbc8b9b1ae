//! Native probes (`health.kind`, `leader.kind`, `positions.kind` = `redis`,
//! `postgres`, or `mysql` with the cargo feature `mysql`): one question in the database's own protocol at the
//! backend's data address (`backends[].tcp`), on a connection of its own
//! (like the HTTP probe), logged in with `probe_auth`. The answer is the
//! same for the three probes ([`Reply`]: leads or not, and the position);
//! [`super::probe`] turns it into the HTTP probe's outcome types, so the
//! monitor, claims, lag and fencing work unchanged.
//!
//! Each protocol has its own file: the pure request and reply parsing
//! first, the I/O after it.

#[cfg(feature = "mysql")]
mod mysql;
mod postgres;
mod redis;

use std::time::Duration;

use tokio::net::TcpStream;

use super::probe::ProbeFailure;
use crate::backend::Backend;
use crate::config::{NativeProbe, ProbeKind};

/// What a database said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// It takes writes: Redis `ROLE` = `master`, PostgreSQL not in recovery.
    pub(crate) leads: bool,
    /// Its role as the database names it, for logs and the admin API.
    pub(crate) role: String,
    /// Its replication position, when it has one: Redis's replication
    /// offset, PostgreSQL's WAL position in bytes (current on a primary,
    /// replayed on a replica).
    pub(crate) position: Option<u64>,
    /// Replicas attached to it, when it is a Redis primary (`ROLE`'s list).
    pub(crate) replicas: Option<u32>,
}

/// Asks `backend` at its data address; the caller bounds the time.
pub(crate) async fn ask(
    backend: &Backend,
    probe: &NativeProbe,
    timeout: Duration,
) -> Result<Reply, ProbeFailure> {
    #[cfg(feature = "mysql")]
    if probe.kind == ProbeKind::Mysql {
        // mysql_async makes its own connection.
        return mysql::ask(backend, &probe.auth).await;
    }
    let Some(addr) = backend.tcp.as_ref() else {
        // Config validation requires `tcp` for static backends.
        return Err(ProbeFailure::Broken(
            "no data address (backends[].tcp) to probe natively".into(),
        ));
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await {
        Err(_) => return Err(ProbeFailure::Timeout(timeout)),
        Ok(Err(e)) => return Err(ProbeFailure::Connect(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    match probe.kind {
        ProbeKind::Redis => redis::ask(stream, &probe.auth).await,
        ProbeKind::Postgres => postgres::ask(stream, &probe.auth).await,
        ProbeKind::Http | ProbeKind::Mysql => Err(ProbeFailure::Broken(
            "not a native probe of this build".into(),
        )),
    }
}

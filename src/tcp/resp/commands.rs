//! The command table a RESP listener classifies by: the built-in one until
//! the primary's `COMMAND` answer is read, then that, read again each time
//! another node becomes the primary (modules and versions may differ).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::Backend;
use crate::config::ProbeAuth;
use crate::resp::command::Table;
use crate::resp::parse::{reply_len, Limits, Progress};

/// Largest `COMMAND` answer read (Redis 7's is about 200 KiB).
const MAX_ANSWER: usize = 8 << 20;

/// The table in use, and the primary it was read from.
pub(crate) struct Commands {
    table: ArcSwap<Table>,
    /// `1 + id` of the backend whose answer is (being) read; 0: none yet.
    from: AtomicU64,
}

impl Commands {
    /// The built-in table, until a primary's answer replaces it.
    pub(crate) fn new() -> Commands {
        Commands {
            table: ArcSwap::from_pointee(Table::builtin()),
            from: AtomicU64::new(0),
        }
    }

    /// The table now.
    pub(super) fn table(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Reads `primary`'s `COMMAND` answer in the background, once per
    /// primary (logging in with `probe_auth`); the built-in table stays
    /// when that fails.
    pub(super) fn refresh_from(
        self: &Arc<Self>,
        primary: &Arc<Backend>,
        auth: &Arc<ProbeAuth>,
        timeout: Duration,
    ) {
        let want = primary.id + 1;
        let was = self.from.load(Ordering::Relaxed);
        if was == want
            || self
                .from
                .compare_exchange(was, want, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Some(addr) = primary.tcp.as_ref().map(|a| a.as_str().to_string()) else {
            return;
        };
        let (me, auth, name) = (self.clone(), auth.clone(), primary.name().to_string());
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, ask(&addr, &auth)).await {
                Ok(Ok(t)) => {
                    tracing::info!(backend = %name, "resp: command table read from the primary");
                    me.table.store(Arc::new(t));
                }
                Ok(Err(e)) => {
                    tracing::warn!(backend = %name, error = %e, "resp: cannot read COMMAND; classifying by the built-in table");
                }
                Err(_) => {
                    tracing::warn!(backend = %name, "resp: COMMAND timed out; classifying by the built-in table");
                }
            }
        });
    }
}

/// `AUTH` (when `auth` has a password) and `COMMAND` at `addr`.
async fn ask(addr: &str, auth: &ProbeAuth) -> Result<Table, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut replies = 1;
    if let Some(pw) = &auth.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(u) = &auth.user {
            args.push(u.as_bytes());
        }
        args.push(pw.expose().as_bytes());
        encode(&mut out, &args);
        replies += 1;
    }
    encode(&mut out, &[b"COMMAND"]);
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    let lim = Limits {
        max_inline: 64 << 10,
        ..Limits::default()
    };
    let mut buf = BytesMut::with_capacity(256 << 10);
    let mut at = 0;
    let mut last = 0..0;
    while replies > 0 {
        match reply_len(&buf[at..], &lim).map_err(|e| e.to_string())? {
            Progress::Complete(n) => {
                if replies == 2 && buf[at] == b'-' {
                    return Err("AUTH refused (probe_auth)".into());
                }
                last = at..at + n;
                at += n;
                replies -= 1;
            }
            Progress::NeedMore => {
                if buf.len() > MAX_ANSWER {
                    return Err("COMMAND answer too large".into());
                }
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed before the answer".into());
                }
            }
        }
    }
    Table::from_command_reply(&buf[last]).map_err(|e| e.to_string())
}

/// `args` as a RESP array of bulk strings, appended to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

//! RESP listeners (`tcp[].protocol: resp`): Redis at layer 7. Each
//! command goes to the node its class calls for — reads to the replicas,
//! everything else to the primary — over connections shared by the
//! worker's clients; stateful use moves a client to its own connection to
//! the primary; a failover is held and hidden.
//!
//! - [`plan`] (pure): where a command goes, how long a transaction pins,
//!   which refusals may be sent again, which writes are idempotent.
//! - `session`: one client's batches: routing, groups, recovery,
//!   read-your-writes.
//! - `mux`: the shared, pipelined upstream connections ([`Pool`], one per
//!   worker thread).
//! - `private`: a client's own connection to the primary.
//! - `commands`: the command table, from the primary's `COMMAND`.
//! - `wait` (pure): `tcp[].resp.wait_replicas`, Redis's `WAIT` after writes.

mod commands;
mod mux;
pub(crate) mod plan;
mod private;
mod session;
mod stateful;
mod wait;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use commands::Commands;
pub(crate) use mux::Pool;
use session::{Cmd, Ctl, Session, TxVerb};
pub(crate) use wait::Wait;

use super::conn::{carry, Count, Listener};
use super::metrics::TcpMetrics;
use super::route::Close;
use crate::proxy::service::Proxy;
use crate::resp::parse::{parse_command, Limits, Progress};
use crate::resp::Span;
use crate::shutdown::until_true;

/// Commands parsed from one read at most (the rest waits for the next batch).
const MAX_BATCH: usize = 1024;

/// What a session needs of its listener and worker.
pub(super) struct Ctx<'a> {
    pub(super) proxy: &'static Proxy,
    pub(super) listener: &'a Listener,
    pub(super) pool: &'a Pool,
    pub(super) metrics: &'a TcpMetrics,
}

impl Ctx<'_> {
    fn commands(&self) -> &Arc<Commands> {
        &self.listener.commands
    }

    /// Counts a command sent again after a node refused it.
    fn resent(&self, why: plan::Refused) {
        let reason = match why {
            plan::Refused::ReadOnly => "readonly",
            plan::Refused::MasterDown => "masterdown",
            plan::Refused::Loading => "loading",
        };
        self.metrics.resp_resent(&self.listener.label, reason);
    }

    /// Counts a write answered with the ambiguous-write error.
    fn ambiguous(&self) {
        self.metrics
            .resp_resent(&self.listener.label, "ambiguous_error");
    }

    /// Counts writes answered with the unreplicated error
    /// (`tcp[].resp.wait_replicas`).
    pub(super) fn unreplicated(&self, writes: u64) {
        if writes > 0 {
            self.metrics
                .resp_resent_n(&self.listener.label, "unreplicated_error", writes);
        }
    }

    /// Counts a client moved to its own connection to the primary.
    fn pinned(&self, why: &str) {
        self.metrics.resp_pinned(&self.listener.label, why);
    }
}

/// Serves one client of RESP listener `l` until it leaves, sends bad
/// input (an error reply, then close), is idle for `tcp[].idle`, or the
/// proxy shuts down.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    proxy: &'static Proxy,
    l: &Listener,
    metrics: &TcpMetrics,
    pool: &Pool,
    mut stream: TcpStream,
    client: SocketAddr,
    early: Bytes,
    mut shutdown: watch::Receiver<bool>,
) {
    let arrived = Instant::now();
    let _open = Count::enter(&l.open);
    let ctx = Ctx {
        proxy,
        listener: l,
        pool,
        metrics,
    };
    let lim = Limits {
        max_bulk: l.cfg.resp.max_bulk,
        max_elements: l.cfg.resp.max_elements,
        max_inline: l.cfg.resp.max_inline,
        ..Limits::default()
    };
    let mut session = Session::new(ctx, client);
    let mut inbuf = BytesMut::with_capacity(early.len().max(4096));
    inbuf.extend_from_slice(&early);
    let mut out: Vec<u8> = Vec::new();
    let mut args: Vec<Span> = Vec::new();
    let mut cmds: Vec<Cmd> = Vec::new();
    loop {
        cmds.clear();
        let mut at = 0;
        let mut bad = None;
        {
            let table = session.ctx.commands().table();
            let mut argv: Vec<&[u8]> = Vec::with_capacity(8);
            while cmds.len() < MAX_BATCH {
                match parse_command(&inbuf[at..], &lim, &mut args) {
                    Ok(Progress::Complete(n)) => {
                        if !args.is_empty() {
                            argv.clear();
                            argv.extend(
                                args.iter()
                                    .map(|s| &inbuf[at + s.start as usize..at + s.end as usize]),
                            );
                            let step = plan::step(table.classify(&argv), &argv);
                            cmds.push(Cmd {
                                start: at,
                                end: at + n,
                                step,
                                idempotent: step == plan::Step::Write && plan::idempotent(&argv),
                                tx: TxVerb::of(argv[0]),
                                auth: argv[0].eq_ignore_ascii_case(b"auth"),
                            });
                        }
                        at += n;
                    }
                    Ok(Progress::NeedMore) => break,
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                }
            }
        }
        if cmds.is_empty() && bad.is_none() {
            if at > 0 {
                // Empty commands only: Redis ignores them.
                let _ = inbuf.split_to(at);
                continue;
            }
            let idle_at = Instant::now() + l.cfg.idle;
            tokio::select! {
                r = stream.read_buf(&mut inbuf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                _ = tokio::time::sleep_until(idle_at) => {
                    metrics.closed(&l.label, Close::Idle);
                    return;
                }
                _ = until_true(&mut shutdown) => {
                    metrics.closed(&l.label, Close::Shutdown);
                    return;
                }
            }
        }
        let batch = inbuf.split_to(at).freeze();
        let ctl = session.run(&batch, &cmds, &mut out).await;
        if let Some(e) = &bad {
            if matches!(ctl, Ctl::Go) {
                out.extend_from_slice(format!("-ERR {e}\r\n").as_bytes());
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match ctl {
            Ctl::Go if bad.is_none() => {}
            Ctl::Go | Ctl::Close => return,
            Ctl::Tunnel { private, from } => {
                let rest = [&batch[from..], &inbuf[..]].concat();
                tunnel(
                    &session.ctx,
                    stream,
                    private,
                    rest,
                    client,
                    shutdown,
                    arrived,
                )
                .await;
                return;
            }
        }
    }
}

/// The rest of the connection carried to the primary as it is.
async fn tunnel(
    ctx: &Ctx<'_>,
    stream: TcpStream,
    private: private::Private,
    rest: Vec<u8>,
    client: SocketAddr,
    shutdown: watch::Receiver<bool>,
    arrived: Instant,
) {
    let private::Private {
        backend,
        stream: mut upstream,
        ..
    } = private;
    let l = ctx.listener;
    let mut changes = ctx.proxy.shared.subscribe();
    changes.borrow_and_update();
    if upstream.write_all(&rest).await.is_err() {
        return;
    }
    let conn = ctx.metrics.conn(&l.label, &backend.name());
    conn.to_backend.inc_by(rest.len() as u64);
    let why = carry(
        ctx.proxy, l, &stream, &upstream, &backend, &conn, changes, shutdown, arrived,
    )
    .await;
    if let Some(why) = why {
        ctx.metrics.closed(&l.label, why);
        tracing::debug!(listener = %l.label, backend = %backend.name(), client = %client, reason = why.as_str(), "resp: tunnelled connection closed by the proxy");
    }
}

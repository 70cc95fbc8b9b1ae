//! One client connection's commands, a batch (what one read brought) at a
//! time: each command routed by its [`Step`], consecutive commands to the
//! same node sent as one job on the client's shared connection to it, the
//! replies written back in the client's order. Failures are handled one
//! command at a time ([`Session::exchange_one`]): a refusal by a node that
//! cannot take the command now is sent again to the right one, a command
//! whose connection broke under it is sent again only when that is safe.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use prometheus::IntCounter;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::mux::{Job, Login, Lost};
use super::plan::{self, Pinned, Refused, Step};
use super::private::Private;
use super::wait::Wait;
use super::Ctx;
use crate::backend::Backend;
use crate::config::{Consistency, RetryAmbiguous};
use crate::routing::{Need, RoutingTable};

/// One parsed command: its bytes' range in the batch and what to do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cmd {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) step: Step,
    /// A write whose second application changes nothing ([`plan::idempotent`]).
    pub(super) idempotent: bool,
    /// What it does to a transaction (`MULTI`, `EXEC`, …), for [`Pinned`].
    pub(super) tx: TxVerb,
    /// `AUTH` (else a `HELLO`), for [`Step::Login`].
    pub(super) auth: bool,
}

/// The transaction verbs [`Pinned`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxVerb {
    None,
    Multi,
    Watch,
    End,
    Unwatch,
}

impl TxVerb {
    pub(super) fn of(name: &[u8]) -> TxVerb {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"multi") {
            TxVerb::Multi
        } else if is(b"watch") {
            TxVerb::Watch
        } else if is(b"exec") || is(b"discard") || is(b"reset") {
            TxVerb::End
        } else if is(b"unwatch") {
            TxVerb::Unwatch
        } else {
            TxVerb::None
        }
    }

    pub(super) fn name(self) -> &'static [u8] {
        match self {
            TxVerb::None => b"",
            TxVerb::Multi => b"multi",
            TxVerb::Watch => b"watch",
            TxVerb::End => b"exec",
            TxVerb::Unwatch => b"unwatch",
        }
    }
}

/// What the connection does after a batch.
pub(super) enum Ctl {
    /// Reads the next commands.
    Go,
    /// Closes (after the replies so far).
    Close,
    /// Carries the bytes from `from` on (of the batch) to the primary as
    /// they are, both ways, for the rest of the connection.
    Tunnel { private: Private, from: usize },
}

/// Commands of a batch going to one node as one job.
struct Group {
    /// Command indexes `first..last`.
    first: usize,
    last: usize,
    backend: Option<Arc<Backend>>,
    rx: Option<oneshot::Receiver<Result<Bytes, Lost>>>,
    writes: bool,
    /// Replicas the `WAIT` sent after it asked for (`tcp[].resp.wait_replicas`), 0 for none.
    waited: u32,
}

/// A client connection's state between batches.
pub(super) struct Session<'a> {
    pub(super) ctx: Ctx<'a>,
    pub(super) client: SocketAddr,
    pub(super) login: Login,
    /// Which of the pool's connections per node this client uses.
    pub(super) pick: usize,
    /// The client's own connection to the primary, once it needed one.
    pub(super) private: Option<Private>,
    /// In a transaction on `private`.
    pub(super) pinned: Option<Pinned>,
    /// read-your-writes: a write was routed and its position is not known
    /// yet (reads go to the primary).
    pub(super) unsettled: bool,
    pub(super) after_ack: Option<oneshot::Receiver<Option<u64>>>,
    /// The position the client's reads must see (its last write's).
    pub(super) written: Option<u64>,
    /// A write's position could not be read: reads go to the primary.
    pub(super) unknown: bool,
    groups: Vec<Group>,
    /// `leaderproxy_resp_commands_total`'s read and write counters per
    /// backend id (`None`: no node) this client used.
    counters: Vec<(Option<u64>, IntCounter, IntCounter)>,
}

pub(super) const NO_PRIMARY: &[u8] =
    b"-TRYAGAIN leaderproxy: no primary within writes.hold; the command was not sent\r\n";
pub(super) const TOO_MANY_HELD: &[u8] = b"-TRYAGAIN leaderproxy: too many commands wait for a primary (writes.max_held); the command was not sent\r\n";
const AMBIGUOUS: &[u8] = b"-ERR leaderproxy: the connection to the primary broke before the reply; the command may have been applied\r\n";
const NO_NODE: &[u8] =
    b"-TRYAGAIN leaderproxy: no node can take the command now; it was not sent\r\n";

impl<'a> Session<'a> {
    pub(super) fn new(ctx: Ctx<'a>, client: SocketAddr) -> Session<'a> {
        Session {
            ctx,
            pick: usize::from(client.port()),
            client,
            login: Login::default(),
            private: None,
            pinned: None,
            unsettled: false,
            after_ack: None,
            written: None,
            unknown: false,
            groups: Vec::new(),
            counters: Vec::new(),
        }
    }

    /// Runs one batch's commands, appending their replies to `out` in order.
    pub(super) async fn run(&mut self, batch: &Bytes, cmds: &[Cmd], out: &mut Vec<u8>) -> Ctl {
        let t = self.ctx.proxy.shared.load();
        if let Some(p) = t.write_leader() {
            self.ctx
                .commands()
                .refresh_from(p, &t.cfg.probe_auth, t.cfg.timeouts.connect * 4);
        }
        let mut i = 0;
        while i < cmds.len() {
            let c = cmds[i];
            if self.pinned.is_some() || !matches!(c.step, Step::Read | Step::Write) {
                self.collect(batch, cmds, out).await;
                match self.special(batch, cmds, i, out).await {
                    Ok(next) => i = next,
                    Err(ctl) => return ctl,
                }
                continue;
            }
            self.route(&t, batch, cmds, i);
            i += 1;
        }
        self.collect(batch, cmds, out).await;
        Ctl::Go
    }

    /// Adds command `i` (a read or a write) to the batch's groups.
    fn route(&mut self, t: &RoutingTable, batch: &Bytes, cmds: &[Cmd], i: usize) {
        let c = cmds[i];
        let write = c.step == Step::Write;
        let backend = if write {
            if self.ryw() {
                self.unsettled = true;
            }
            t.write_leader().filter(|b| b.tcp.is_some()).cloned()
        } else {
            match self.groups.last() {
                // Consecutive reads go where the previous one went.
                Some(g) if g.last == i && !g.writes && g.backend.is_some() => g.backend.clone(),
                _ => self.read_target(t, None),
            }
        };
        if let Some(g) = self.groups.last_mut() {
            let same = g.last == i
                && g.rx.is_none()
                && match (&g.backend, &backend) {
                    (Some(a), Some(b)) => a.id == b.id,
                    (None, None) => true,
                    _ => false,
                };
            if same {
                g.last = i + 1;
                g.writes |= write;
                return;
            }
        }
        self.send_last(batch, cmds);
        self.groups.push(Group {
            first: i,
            last: i + 1,
            backend,
            rx: None,
            writes: write,
            waited: 0,
        });
    }

    /// Sends the last group (when it has a node and is not sent yet).
    fn send_last(&mut self, batch: &Bytes, cmds: &[Cmd]) {
        let Some(g) = self.groups.last_mut() else {
            return;
        };
        let (Some(b), None) = (&g.backend, &g.rx) else {
            return;
        };
        let Some(addr) = b.tcp.as_ref() else { return };
        let (done, rx) = oneshot::channel();
        g.waited = match &self.ctx.listener.wait {
            Some(w) if g.writes => w.want(b.replicas()),
            _ => 0,
        };
        let then = match &self.ctx.listener.wait {
            Some(w) if g.waited > 0 => w.command(g.waited),
            _ => Bytes::new(),
        };
        let job = Job {
            bytes: batch.slice(cmds[g.first].start..cmds[g.last - 1].end),
            replies: g.last - g.first + usize::from(g.waited > 0),
            then,
            done,
        };
        let mux = self
            .ctx
            .pool
            .get(b.id, addr.as_str(), &self.login, self.pick);
        if mux.send(job).is_ok() {
            g.rx = Some(rx);
        }
    }

    /// Waits for every group's replies, in order, into `out`; what failed
    /// is recovered one command at a time.
    async fn collect(&mut self, batch: &Bytes, cmds: &[Cmd], out: &mut Vec<u8>) {
        if self.groups.is_empty() {
            return;
        }
        self.send_last(batch, cmds);
        let mut groups = std::mem::take(&mut self.groups);
        for g in groups.drain(..) {
            let Group {
                first,
                last,
                backend,
                rx,
                writes,
                waited,
            } = g;
            let group = &cmds[first..last];
            self.count(backend.as_ref(), group);
            let mut replies = match rx {
                None => Err(Lost::NotSent),
                Some(rx) => rx.await.unwrap_or(Err(Lost::Ambiguous)),
            };
            if let (Ok(r), Some(w)) = (&replies, &self.ctx.listener.wait) {
                if waited > 0 {
                    replies = Ok(self.replicated(w, waited, r, group));
                }
            }
            match replies {
                Ok(r) if !plan::may_hold_refusal(&r) => out.extend_from_slice(&r),
                Ok(r) => self.sift(batch, group, backend.as_ref(), &r, out).await,
                Err(lost) => {
                    for c in group {
                        let r = self
                            .exchange_one(batch, c, Some(lost), backend.as_ref())
                            .await;
                        out.extend_from_slice(&r);
                    }
                }
            }
            if writes {
                self.wrote();
            }
        }
        self.groups = groups;
    }

    /// Counts a group's commands sent to `backend`.
    fn count(&mut self, backend: Option<&Arc<Backend>>, group: &[Cmd]) {
        let id = backend.map(|b| b.id);
        let k = match self.counters.iter().position(|c| c.0 == id) {
            Some(k) => k,
            None => {
                let name = backend.map(|b| b.name().to_string()).unwrap_or_default();
                let (r, w) = self
                    .ctx
                    .metrics
                    .resp_command_counters(&self.ctx.listener.label, &name);
                self.counters.push((id, r, w));
                self.counters.len() - 1
            }
        };
        let writes = group.iter().filter(|c| c.step == Step::Write).count();
        let (_, r, w) = &self.counters[k];
        if writes < group.len() {
            r.inc_by((group.len() - writes) as u64);
        }
        if writes > 0 {
            w.inc_by(writes as u64);
        }
    }

    /// Walks a group's replies: a refusal ([`plan::not_applied`]) is
    /// replaced by the answer of the node that can take the command.
    async fn sift(
        &mut self,
        batch: &Bytes,
        group: &[Cmd],
        backend: Option<&Arc<Backend>>,
        r: &Bytes,
        out: &mut Vec<u8>,
    ) {
        let lim = crate::resp::parse::Limits::default();
        let mut at = 0;
        for c in group {
            let n = match crate::resp::parse::reply_len(&r[at..], &lim) {
                Ok(crate::resp::parse::Progress::Complete(n)) => n,
                // The mux hands out whole replies only.
                _ => r.len() - at,
            };
            let one = &r[at..at + n];
            at += n;
            match plan::not_applied(one) {
                Some(why) => {
                    self.ctx.resent(why);
                    let again = self.refused_again(batch, c, why, backend).await;
                    out.extend_from_slice(&again);
                }
                None => out.extend_from_slice(one),
            }
        }
    }

    /// Command `c` again, after node `backend` refused it (`why`).
    async fn refused_again(
        &mut self,
        batch: &Bytes,
        c: &Cmd,
        why: Refused,
        backend: Option<&Arc<Backend>>,
    ) -> Bytes {
        if let Some(b) = backend {
            if why == Refused::ReadOnly && c.step == Step::Write {
                // A replica refused a write: that node leads no more.
                self.ctx.proxy.monitor.fence(b);
            } else {
                self.ctx.proxy.monitor.reprobe();
            }
        }
        self.exchange_one(batch, c, None, backend).await
    }

    /// Sends command `c` alone until a node that can take it answers: the
    /// primary for a write (waiting for one up to `writes.hold`), a replica
    /// or the primary for a read, never `avoid` first. `lost`: how its
    /// first try failed (a broken connection makes a write ambiguous: sent
    /// again only when idempotent under `retry_ambiguous: idempotent`).
    pub(super) async fn exchange_one(
        &mut self,
        batch: &Bytes,
        c: &Cmd,
        lost: Option<Lost>,
        avoid: Option<&Arc<Backend>>,
    ) -> Bytes {
        let cfg = self.ctx.proxy.shared.load().cfg.clone();
        let write = c.step == Step::Write;
        let mut retried = false;
        if lost == Some(Lost::Ambiguous) && write {
            let may = c.idempotent && cfg.writes.retry_ambiguous == RetryAmbiguous::Idempotent;
            if !may {
                self.ctx.ambiguous();
                return Bytes::from_static(AMBIGUOUS);
            }
            retried = true;
            self.ctx.proxy.metrics.writes_retried_ambiguous.inc();
        }
        let mut avoid = avoid.map(|b| b.id);
        let deadline = Instant::now() + cfg.writes.hold;
        let recheck = cfg.leader.probe.interval * 2;
        let mut held = None;
        let arrived = Instant::now();
        loop {
            let t = self.ctx.proxy.shared.load();
            let target = if write {
                t.write_leader()
                    .filter(|b| b.tcp.is_some() && Some(b.id) != avoid)
                    .cloned()
            } else {
                self.read_target(&t, avoid)
            };
            let Some(b) = target else {
                if held.is_none() {
                    held = self.ctx.proxy.hold(cfg.writes.max_held);
                    if held.is_none() {
                        return Bytes::from_static(TOO_MANY_HELD);
                    }
                }
                match self
                    .ctx
                    .proxy
                    .shared
                    .wait_for_leader(deadline, avoid, recheck)
                    .await
                {
                    Some(_) => {
                        avoid = None;
                        continue;
                    }
                    None if write => return Bytes::from_static(NO_PRIMARY),
                    None => return Bytes::from_static(NO_NODE),
                }
            };
            if held.take().is_some() {
                self.ctx
                    .proxy
                    .metrics
                    .hold_wait
                    .observe(arrived.elapsed().as_secs_f64());
            }
            let Some(addr) = b.tcp.as_ref() else { continue };
            let (done, rx) = oneshot::channel();
            let wait = match &self.ctx.listener.wait {
                Some(w) if write => Some((w, w.want(b.replicas()))).filter(|(_, n)| *n > 0),
                _ => None,
            };
            let job = Job {
                bytes: batch.slice(c.start..c.end),
                then: wait.map_or_else(Bytes::new, |(w, n)| w.command(n)),
                replies: 1 + usize::from(wait.is_some()),
                done,
            };
            let sent = self
                .ctx
                .pool
                .get(b.id, addr.as_str(), &self.login, self.pick)
                .send(job);
            let mut got = match sent {
                Err(_) => Err(Lost::NotSent),
                Ok(()) => rx.await.unwrap_or(Err(Lost::Ambiguous)),
            };
            if let (Some((w, n)), Ok(r)) = (wait, &got) {
                got = Ok(self.replicated(w, n, r, std::slice::from_ref(c)));
            }
            if Instant::now() >= deadline {
                // Whatever came back, no more tries after the hold.
                return match got {
                    Ok(r) if plan::not_applied(&r).is_none() => r,
                    Err(Lost::Ambiguous) if write => {
                        self.ctx.ambiguous();
                        Bytes::from_static(AMBIGUOUS)
                    }
                    _ if write => Bytes::from_static(NO_PRIMARY),
                    _ => Bytes::from_static(NO_NODE),
                };
            }
            match got {
                Ok(r) => match plan::not_applied(&r) {
                    None => return r,
                    Some(why) => {
                        self.ctx.resent(why);
                        if why == Refused::ReadOnly && write {
                            self.ctx.proxy.monitor.fence(&b);
                        } else {
                            self.ctx.proxy.monitor.reprobe();
                        }
                        avoid = Some(b.id);
                    }
                },
                Err(Lost::NotSent) => {}
                Err(Lost::Refused) => {
                    if write {
                        self.ctx.proxy.monitor.fence(&b);
                    }
                    avoid = Some(b.id);
                }
                Err(Lost::Ambiguous) => {
                    if write && (retried || !c.idempotent) {
                        self.ctx.ambiguous();
                        return Bytes::from_static(AMBIGUOUS);
                    }
                    retried = true;
                    avoid = Some(b.id);
                }
            }
        }
    }

    /// A job's replies without `WAIT`'s, each write's success turned into
    /// the unreplicated error when fewer replicas than asked acknowledged.
    fn replicated(&self, w: &Wait, n: u32, r: &Bytes, group: &[Cmd]) -> Bytes {
        let (r, acked) = w.split(r, n);
        if acked {
            return r;
        }
        let (r, replaced) = w.unreplicated(&r, n, group.iter().map(|c| c.step == Step::Write));
        self.ctx.unreplicated(replaced);
        r
    }

    /// Where a read goes now: by the listener's policy, or, when it must
    /// see the client's writes, to a replica whose position has them;
    /// the primary when no replica qualifies.
    fn read_target(&mut self, t: &RoutingTable, avoid: Option<u64>) -> Option<Arc<Backend>> {
        let need = self.need();
        let ip = self.client.ip();
        let picked = if need.is_none() && avoid.is_none() {
            self.ctx.listener.target(t, ip)
        } else {
            t.pick_for(ip, need, avoid).map(|(b, _)| b.clone())
        };
        picked
            .filter(|b| b.tcp.is_some() && Some(b.id) != avoid)
            .or_else(|| {
                t.leader()
                    .filter(|b| b.tcp.is_some() && Some(b.id) != avoid)
                    .cloned()
            })
    }

    fn ryw(&self) -> bool {
        self.ctx.proxy.shared.load().cfg.reads.consistency == Consistency::ReadYourWrites
    }

    /// What the client's next read must see (read-your-writes): the
    /// position after its last write, or only the primary while that
    /// position is being read (or could not be).
    fn need(&mut self) -> Need {
        if let Some(rx) = self.after_ack.as_mut() {
            match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {}
                Ok(Some(p)) => {
                    self.written = self.written.max(Some(p));
                    self.unknown = false;
                    self.after_ack = None;
                }
                Ok(None) | Err(oneshot::error::TryRecvError::Closed) => {
                    self.unknown = true;
                    self.after_ack = None;
                }
            }
        }
        let pending = self.unsettled || self.after_ack.is_some() || self.unknown;
        Need::after(self.written, None, pending, None)
    }

    /// A write was answered: under read-your-writes, the primary's position
    /// after it is read (batched with other clients' writes).
    fn wrote(&mut self) {
        if !self.unsettled {
            return;
        }
        self.unsettled = false;
        let t = self.ctx.proxy.shared.load();
        match (&t.cfg.positions.probe, t.write_leader()) {
            (Some(probe), Some(leader)) => {
                let (leader, probe) = (leader.clone(), probe.clone());
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let p = crate::consistency::after_ack::position(&leader, &probe).await;
                    let _ = tx.send(p);
                });
                self.after_ack = Some(rx);
            }
            _ => self.unknown = true,
        }
    }
}

/// `c` as a command for the primary.
pub(super) fn as_write(c: Cmd) -> Cmd {
    Cmd {
        step: Step::Write,
        ..c
    }
}

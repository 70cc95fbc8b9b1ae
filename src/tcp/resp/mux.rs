//! Shared upstream connections: many clients' commands pipelined over a
//! few connections per backend. Each connection is one task that writes
//! the jobs in the order they arrive and hands each job the bytes of its
//! replies (Redis answers in order on a connection). A connection first
//! replays the login (`AUTH`/`HELLO`) of the clients it serves: clients
//! share a connection only with clients of the same login.
//!
//! A broken connection tells each waiting job whether its bytes may have
//! reached the node ([`Lost::Ambiguous`]) or certainly did not
//! ([`Lost::NotSent`], [`Lost::Refused`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::resp::parse::{reply_len, Limits, Progress};

/// Commands of one client, in order, and how many replies they get.
pub(super) struct Job {
    /// The commands' bytes, as the client sent them.
    pub(super) bytes: Bytes,
    /// A command sent right after them (`WAIT`), empty for none.
    pub(super) then: Bytes,
    /// Replies expected (one per command, `then`'s included).
    pub(super) replies: usize,
    /// Gets the replies' bytes, or why not.
    pub(super) done: oneshot::Sender<Result<Bytes, Lost>>,
}

/// Why a job got no replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Not one byte of it was written: safe to send again anywhere.
    NotSent,
    /// The connection could not be made (refused, reset, timed out).
    Refused,
    /// Its bytes were (perhaps partly) written when the connection broke:
    /// the commands may have been applied.
    Ambiguous,
}

/// A handle to one shared connection.
#[derive(Clone)]
pub(super) struct Mux {
    tx: mpsc::UnboundedSender<Job>,
}

impl Mux {
    /// A handle whose connection is gone (a slot not filled yet).
    fn closed() -> Mux {
        let (tx, _) = mpsc::unbounded_channel();
        Mux { tx }
    }

    /// Queues `job`; gives it back when the connection is gone.
    pub(super) fn send(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }
}

/// The login replayed on a shared connection: the client's last `AUTH`
/// and last `HELLO`, as sent, in the order it sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Login {
    /// `AUTH …`, as sent; empty for none.
    auth: Bytes,
    /// `HELLO …` (perhaps with `AUTH`/`SETNAME`), as sent; empty for none.
    hello: Bytes,
    /// `HELLO` came after `AUTH`.
    hello_last: bool,
}

impl Login {
    /// The login after command `cmd` (its bytes), an `AUTH` (`is_auth`) or
    /// a `HELLO`.
    pub(crate) fn with(&self, cmd: Bytes, is_auth: bool) -> Login {
        let mut l = self.clone();
        if is_auth {
            l.auth = cmd;
            l.hello_last = false;
        } else {
            l.hello = cmd;
            l.hello_last = true;
        }
        l
    }

    /// The bytes replayed first on a connection, and their replies' count.
    pub(crate) fn replay(&self) -> (Bytes, usize) {
        let (first, second) = if self.hello_last {
            (&self.auth, &self.hello)
        } else {
            (&self.hello, &self.auth)
        };
        let n = usize::from(!first.is_empty()) + usize::from(!second.is_empty());
        if first.is_empty() {
            return (second.clone(), n);
        }
        if second.is_empty() {
            return (first.clone(), n);
        }
        let mut b = BytesMut::with_capacity(first.len() + second.len());
        b.extend_from_slice(first);
        b.extend_from_slice(second);
        (b.freeze(), n)
    }
}

/// One worker thread's shared connections, by backend (its id) and login.
pub(crate) struct Pool {
    conns: Mutex<HashMap<u64, Vec<(Login, Slot)>>>,
    /// Connections per backend and login (`tcp[].resp.upstream_connections`).
    per_key: usize,
    connect: Duration,
    idle: Duration,
    /// `leaderproxy_resp_upstream_connections`.
    gauge: prometheus::IntGauge,
}

#[derive(Default)]
struct Slot {
    muxes: Vec<Mux>,
}

impl Pool {
    /// An empty pool: `per_key` connections per backend and login, each
    /// closed after `idle` without a job.
    pub(crate) fn new(
        per_key: usize,
        connect: Duration,
        idle: Duration,
        gauge: prometheus::IntGauge,
    ) -> Pool {
        Pool {
            conns: Mutex::new(HashMap::new()),
            per_key: per_key.max(1),
            connect,
            idle,
            gauge,
        }
    }

    /// A shared connection to backend `id` at `addr` logged in as `login`:
    /// the `pick`-th of the `per_key` kept (made when gone). A client
    /// passes the same `pick` each time, so its commands to one node stay
    /// in order on one connection. Allocates nothing once the slot exists.
    pub(super) fn get(&self, id: u64, addr: &str, login: &Login, pick: usize) -> Mux {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() > 64 {
            // Backends gone (a reload gives a changed one a new id).
            conns.retain(|_, logins| {
                forget_closed(logins);
                !logins.is_empty()
            });
        }
        let logins = conns.entry(id).or_default();
        let at = match logins.iter().position(|(l, _)| l == login) {
            Some(at) => at,
            None => {
                if logins.len() > 16 {
                    forget_closed(logins);
                }
                logins.push((login.clone(), Slot::default()));
                logins.len() - 1
            }
        };
        let slot = &mut logins[at].1;
        if slot.muxes.len() < self.per_key {
            slot.muxes.resize_with(self.per_key, Mux::closed);
        }
        let m = &mut slot.muxes[pick % self.per_key];
        if m.tx.is_closed() {
            let (tx, rx) = mpsc::unbounded_channel();
            let (replay, n) = login.replay();
            let conn = Conn {
                addr: addr.to_string(),
                connect: self.connect,
                idle: self.idle,
                gauge: self.gauge.clone(),
            };
            tokio::spawn(conn.run(rx, replay, n));
            *m = Mux { tx };
        }
        m.clone()
    }
}

/// Forgets the logins whose connections are all gone (a slot with one
/// open keeps its places: a client's `pick` keeps naming the same one).
fn forget_closed(logins: &mut Vec<(Login, Slot)>) {
    logins.retain(|(_, s)| s.muxes.iter().any(|m| !m.tx.is_closed()));
}

/// A job waiting for its replies.
struct Waiting {
    left: usize,
    /// Offset of its first byte in the connection's output stream.
    start: u64,
    /// `None`: the login's replies, dropped.
    done: Option<oneshot::Sender<Result<Bytes, Lost>>>,
    /// What it is: a job, a job whose replies wait for the `WAIT` sent
    /// after it, or that `WAIT`.
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// Its replies are held until the next `Wait` answers (they get that
    /// answer appended, as if the job had sent its own `WAIT`).
    Held,
    /// One `WAIT` for every held job before it: jobs that arrived together
    /// share one replication round trip instead of queueing one each
    /// behind the other (Redis blocks the connection during a `WAIT`).
    Wait,
}

/// Jobs answered but waiting for their `WAIT`'s answer.
type Held = Vec<(oneshot::Sender<Result<Bytes, Lost>>, Bytes)>;

struct Conn {
    addr: String,
    connect: Duration,
    idle: Duration,
    gauge: prometheus::IntGauge,
}

/// Replies are read up to this much at a time.
const READ_CHUNK: usize = 16 << 10;

impl Conn {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>, login: Bytes, login_replies: usize) {
        let stream = match tokio::time::timeout(self.connect, TcpStream::connect(&self.addr)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(addr = %self.addr, error = %e, "resp: cannot connect");
                return fail_queued(&mut rx, Lost::Refused);
            }
            Err(_) => return fail_queued(&mut rx, Lost::Refused),
        };
        let _ = stream.set_nodelay(true);
        self.gauge.inc();
        let mut pending: VecDeque<Waiting> = VecDeque::new();
        let mut held: Held = Vec::new();
        let why = self
            .serve(
                stream,
                &mut rx,
                login,
                login_replies,
                &mut pending,
                &mut held,
            )
            .await;
        self.gauge.dec();
        if let Some(e) = why {
            tracing::debug!(addr = %self.addr, error = %e, "resp: shared connection ended");
        }
        // Everything written may have been applied (the held jobs' writes
        // were, but their WAIT never answered); the rest was not sent.
        for (d, _) in held.drain(..) {
            let _ = d.send(Err(Lost::Ambiguous));
        }
        for w in pending.drain(..) {
            if let Some(d) = w.done {
                let _ = d.send(Err(if w.start == u64::MAX {
                    Lost::NotSent
                } else {
                    Lost::Ambiguous
                }));
            }
        }
        fail_queued(&mut rx, Lost::NotSent);
    }

    /// Writes jobs and hands out replies until the connection breaks, the
    /// node says something no job asked for, or it is idle for `idle`.
    /// Jobs still wholly unwritten at the end are marked `start ==
    /// u64::MAX` (never sent).
    async fn serve(
        &self,
        stream: TcpStream,
        rx: &mut mpsc::UnboundedReceiver<Job>,
        login: Bytes,
        login_replies: usize,
        pending: &mut VecDeque<Waiting>,
        held: &mut Held,
    ) -> Option<String> {
        let (mut rd, mut wr) = stream.into_split();
        let lim = Limits::default();
        let mut out = BytesMut::new();
        // Bytes handed to the socket so far, and queued in `out` in all.
        let (mut sent, mut queued) = (0u64, 0u64);
        if login_replies > 0 {
            out.extend_from_slice(&login);
            pending.push_back(Waiting {
                left: login_replies,
                start: 0,
                done: None,
                kind: Kind::Plain,
            });
            queued += login.len() as u64;
        }
        let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
        // Bytes of `inbuf` already known to be whole replies of the head job.
        let mut parsed = 0usize;
        let mut open = true;
        let mut idle_at = Instant::now() + self.idle;
        let why = 'conn: loop {
            tokio::select! {
                r = rd.read_buf(&mut inbuf) => {
                    match r {
                        Ok(0) => break Some("closed by the node".to_string()),
                        Err(e) => break Some(e.to_string()),
                        Ok(_) => {}
                    }
                    loop {
                        let Some(head) = pending.front_mut() else {
                            if inbuf.is_empty() {
                                break;
                            }
                            break 'conn Some("a reply nobody asked for".to_string());
                        };
                        match reply_len(&inbuf[parsed..], &lim) {
                            Ok(Progress::Complete(n)) => {
                                parsed += n;
                                head.left -= 1;
                                if head.left == 0 {
                                    let replies = inbuf.split_to(parsed).freeze();
                                    parsed = 0;
                                    if let Some(w) = pending.pop_front() {
                                        answer(w, replies, held);
                                    }
                                }
                            }
                            Ok(Progress::NeedMore) => break,
                            Err(e) => break 'conn Some(format!("bad reply: {e}")),
                        }
                    }
                    if inbuf.capacity() - inbuf.len() < 512 {
                        inbuf.reserve(READ_CHUNK);
                    }
                    idle_at = Instant::now() + self.idle;
                }
                job = rx.recv(), if open => {
                    let Some(job) = job else {
                        open = false;
                        if pending.is_empty() {
                            break None;
                        }
                        continue;
                    };
                    // Every job that came with a WAIT shares the one sent
                    // after the last of them.
                    let mut wait = Bytes::new();
                    let mut next = Some(job);
                    while let Some(job) = next.take().or_else(|| rx.try_recv().ok()) {
                        out.extend_from_slice(&job.bytes);
                        let kind = if job.then.is_empty() { Kind::Plain } else { Kind::Held };
                        if kind == Kind::Held && stricter(&job.then, &wait) {
                            wait = job.then;
                        }
                        pending.push_back(Waiting {
                            left: job.replies - usize::from(kind == Kind::Held),
                            start: queued,
                            done: Some(job.done),
                            kind,
                        });
                        queued += job.bytes.len() as u64;
                    }
                    if !wait.is_empty() {
                        out.extend_from_slice(&wait);
                        pending.push_back(Waiting { left: 1, start: queued, done: None, kind: Kind::Wait });
                        queued += wait.len() as u64;
                    }
                    idle_at = Instant::now() + self.idle;
                }
                r = wr.write(&out), if !out.is_empty() => {
                    match r {
                        Ok(n) => {
                            out.advance(n);
                            sent += n as u64;
                        }
                        Err(e) => break Some(e.to_string()),
                    }
                }
                _ = tokio::time::sleep_until(idle_at), if pending.is_empty() && out.is_empty() => {
                    break None;
                }
            }
            if !open && pending.is_empty() {
                break None;
            }
        };
        if why.is_some() {
            mark_unsent(pending, sent);
        }
        let _ = wr.shutdown().await;
        why
    }
}

/// Hands a finished entry its replies: a job gets them (a held job once
/// its `WAIT` answered, with that answer appended); a `WAIT`'s answer
/// releases the held jobs.
fn answer(w: Waiting, replies: Bytes, held: &mut Held) {
    match (w.kind, w.done) {
        (Kind::Held, Some(d)) => held.push((d, replies)),
        (Kind::Wait, _) => {
            for (d, r) in held.drain(..) {
                let mut both = BytesMut::with_capacity(r.len() + replies.len());
                both.extend_from_slice(&r);
                both.extend_from_slice(&replies);
                let _ = d.send(Ok(both.freeze()));
            }
        }
        (_, Some(d)) => {
            let _ = d.send(Ok(replies));
        }
        (_, None) => {}
    }
}

/// Whether `WAIT` command `a` asks for more replicas than `b` (empty: none).
fn stricter(a: &Bytes, b: &Bytes) -> bool {
    (a.len(), &a[..]) > (b.len(), &b[..])
}

/// Marks the waiting jobs none of whose bytes reached the socket.
fn mark_unsent(pending: &mut VecDeque<Waiting>, sent: u64) {
    for w in pending.iter_mut().filter(|w| w.start >= sent) {
        w.start = u64::MAX;
    }
}

/// Answers every job still queued (never written) with `why`, and refuses
/// new ones.
fn fail_queued(rx: &mut mpsc::UnboundedReceiver<Job>, why: Lost) {
    rx.close();
    while let Ok(job) = rx.try_recv() {
        let _ = job.done.send(Err(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn pool() -> Pool {
        Pool::new(
            1,
            Duration::from_secs(1),
            Duration::from_secs(5),
            prometheus::IntGauge::new("g", "g").unwrap(),
        )
    }

    async fn ask(m: &Mux, bytes: &'static [u8], replies: usize) -> Result<Bytes, Lost> {
        let (done, rx) = oneshot::channel();
        m.send(Job {
            bytes: Bytes::from_static(bytes),
            then: Bytes::new(),
            replies,
            done,
        })
        .map_err(|_| ())
        .unwrap();
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn jobs_get_their_own_replies_in_order_after_the_login_replay() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let node = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let want = b"AUTH pw\r\nGET a\r\nGET b\r\nGET c\r\n";
            while got.len() < want.len() {
                let mut b = [0u8; 64];
                let n = s.read(&mut b).await.unwrap();
                got.extend_from_slice(&b[..n]);
            }
            assert_eq!(got, want);
            // Replies split at awkward places.
            for part in [
                &b"+OK\r\n$1\r"[..],
                b"\n1\r\n*2\r\n:1",
                b"\r\n:2\r\n$-1\r\n",
            ] {
                s.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s
        });
        let p = pool();
        let login = Login::default().with(Bytes::from_static(b"AUTH pw\r\n"), true);
        let m = p.get(1, &addr, &login, 0);
        let (a, b) = tokio::join!(ask(&m, b"GET a\r\nGET b\r\n", 2), async {
            tokio::task::yield_now().await;
            ask(&m, b"GET c\r\n", 1).await
        });
        assert_eq!(&a.unwrap()[..], b"$1\r\n1\r\n*2\r\n:1\r\n:2\r\n");
        assert_eq!(&b.unwrap()[..], b"$-1\r\n");
        drop(node.await.unwrap());
    }

    #[tokio::test]
    async fn jobs_that_arrive_together_share_one_wait() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let node = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let want = b"SET a 1\r\nGET x\r\nSET b 2\r\nWAIT 2 100\r\n";
            let mut got = Vec::new();
            while got.len() < want.len() {
                let mut b = [0u8; 64];
                let n = s.read(&mut b).await.unwrap();
                got.extend_from_slice(&b[..n]);
            }
            assert_eq!(got, want, "one WAIT, the strictest, after the last job");
            s.write_all(b"+OK\r\n$1\r\nx\r\n+OK\r\n:2\r\n")
                .await
                .unwrap();
            s
        });
        let m = pool().get(1, &addr, &Login::default(), 0);
        let job = |bytes: &'static [u8], then: &'static [u8]| {
            let (done, rx) = oneshot::channel();
            let replies = 1 + usize::from(!then.is_empty());
            let job = Job {
                bytes: Bytes::from_static(bytes),
                then: Bytes::from_static(then),
                replies,
                done,
            };
            assert!(m.send(job).is_ok());
            rx
        };
        // Queued before the connection's task runs: one batch.
        let a = job(b"SET a 1\r\n", b"WAIT 1 100\r\n");
        let r = job(b"GET x\r\n", b"");
        let b = job(b"SET b 2\r\n", b"WAIT 2 100\r\n");
        assert_eq!(&a.await.unwrap().unwrap()[..], b"+OK\r\n:2\r\n");
        assert_eq!(&r.await.unwrap().unwrap()[..], b"$1\r\nx\r\n");
        assert_eq!(&b.await.unwrap().unwrap()[..], b"+OK\r\n:2\r\n");
        drop(node.await.unwrap());
    }

    #[tokio::test]
    async fn a_held_job_whose_wait_never_answers_is_ambiguous() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).await.unwrap();
            // The write is answered, the WAIT never: the node dies.
            s.write_all(b"+OK\r\n").await.unwrap();
        });
        let m = pool().get(1, &addr, &Login::default(), 0);
        let (done, rx) = oneshot::channel();
        assert!(m
            .send(Job {
                bytes: Bytes::from_static(b"SET a 1\r\n"),
                then: Bytes::from_static(b"WAIT 1 100\r\n"),
                replies: 2,
                done,
            })
            .is_ok());
        assert_eq!(rx.await.unwrap(), Err(Lost::Ambiguous));
    }

    #[tokio::test]
    async fn a_broken_connection_tells_written_jobs_they_are_ambiguous() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).await.unwrap();
            // Closed without a reply.
        });
        let m = pool().get(1, &addr, &Login::default(), 7);
        assert_eq!(ask(&m, b"INCR k\r\n", 1).await, Err(Lost::Ambiguous));
    }

    #[tokio::test]
    async fn a_refused_connection_sends_nothing() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let m = pool().get(1, &addr, &Login::default(), 7);
        assert_eq!(ask(&m, b"SET k v\r\n", 1).await, Err(Lost::Refused));
    }
}

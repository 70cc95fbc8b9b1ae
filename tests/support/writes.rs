//! Write load for the real-cluster scenarios (`tests/real_etcd.rs`,
//! `tests/real_redis.rs`, `benches/failover.rs`): writer threads that each
//! send unique-key writes over one keep-alive connection until stopped,
//! recording when every write was sent and answered and what the answer was,
//! and the helpers that summarise those records.
//!
//! Needs `#[path = "support/procs.rs"] mod procs;` at the crate root (refers
//! to it as `crate::procs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::{HttpConn, HttpResponse};

/// Timeout of one write (connect, send, answer) on a writer's connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(12);

/// What the client saw for one write. Fields are shown through `Debug` in
/// failure messages.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The classifier accepted the answer. `backend` and `role` are the
    /// proxy's debug headers (`x-leaderproxy-backend`, `x-leaderproxy-role`),
    /// empty when absent.
    Acked { backend: String, role: String },
    /// An HTTP answer that is not an acknowledgement. `backend` is the
    /// `x-leaderproxy-backend` header: `None` when the proxy answered itself.
    Other {
        status: u16,
        body: String,
        backend: Option<String>,
    },
    /// No HTTP answer at all.
    Io(String),
}

/// One write as the client saw it.
#[derive(Debug, Clone)]
pub struct Rec {
    /// The key as the cluster names it when read back.
    pub key: String,
    pub value: String,
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

impl Rec {
    pub fn acked(&self) -> bool {
        matches!(self.outcome, Outcome::Acked { .. })
    }

    /// The key holds this write's value in `stored` (key -> value, as read back).
    pub fn stored_in(&self, stored: &BTreeMap<String, String>) -> bool {
        stored.get(&self.key) == Some(&self.value)
    }
}

/// One write to send: the key and value it writes and the HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Recorded in `Rec::key`: the key as the cluster names it when read back.
    pub key: String,
    pub value: String,
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
}

/// etcd v2: `PUT /v2/keys/<dir>/k-<t>-<n>` with the form body
/// `value=v-<t>-<n>`, recorded under the key `/<dir>/k-<t>-<n>` (as a
/// recursive listing names it).
pub fn etcd_v2_put(dir: &str, t: usize, n: u64) -> Request {
    let key = format!("{dir}/k-{t}-{n}");
    let value = format!("v-{t}-{n}");
    Request {
        body: format!("value={value}").into_bytes(),
        method: "PUT",
        path: format!("/v2/keys/{key}"),
        headers: vec![("Content-Type", "application/x-www-form-urlencoded")],
        key: format!("/{key}"),
        value,
    }
}

/// A classifier's verdict on an HTTP answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An acknowledgement: `Outcome::Acked`.
    Acked,
    /// Not an acknowledgement: `Outcome::Other` with the body as it is.
    Other,
    /// Not an acknowledgement although its status says success:
    /// `Outcome::Other` with this note and a space put before the body.
    Suspect(&'static str),
}

/// Writer `t`: sends `build(t, 1)`, `build(t, 2)`, ... one at a time over one
/// keep-alive connection to `authority` until `stop` is set, and records each
/// answer as `classify` judges it. Never retries; after a write that is not
/// acknowledged it sleeps `fail_pause` (if not zero) before the next one.
pub fn writer(
    t: usize,
    authority: &str,
    stop: &AtomicBool,
    fail_pause: Duration,
    build: impl Fn(usize, u64) -> Request,
    classify: impl Fn(&Request, &HttpResponse) -> Verdict,
) -> Vec<Rec> {
    let mut conn = HttpConn::new(authority, WRITE_TIMEOUT);
    let mut recs = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let req = build(t, n);
        let sent = Instant::now();
        let r = conn.request(req.method, &req.path, &req.headers, &req.body);
        let done = Instant::now();
        let outcome = match r {
            Ok(resp) => {
                let backend = resp.header("x-leaderproxy-backend");
                match classify(&req, &resp) {
                    Verdict::Acked => Outcome::Acked {
                        backend: backend.unwrap_or("").to_string(),
                        role: resp.header("x-leaderproxy-role").unwrap_or("").to_string(),
                    },
                    Verdict::Other => Outcome::Other {
                        status: resp.status,
                        body: resp.text(),
                        backend: backend.map(str::to_string),
                    },
                    Verdict::Suspect(note) => Outcome::Other {
                        status: resp.status,
                        body: format!("{note} {}", resp.text()),
                        backend: backend.map(str::to_string),
                    },
                }
            }
            Err(e) => Outcome::Io(e.to_string()),
        };
        let rec = Rec {
            key: req.key,
            value: req.value,
            sent,
            done,
            outcome,
        };
        let failed = !rec.acked();
        recs.push(rec);
        if failed && !fail_pause.is_zero() {
            std::thread::sleep(fail_pause);
        }
    }
    recs
}

/// `writers` writer threads (see `writer`) sharing one stop flag.
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Rec>>>,
}

impl Load {
    pub fn start<B, C>(
        writers: usize,
        authority: &str,
        fail_pause: Duration,
        build: B,
        classify: C,
    ) -> Load
    where
        B: Fn(usize, u64) -> Request + Send + Sync + 'static,
        C: Fn(&Request, &HttpResponse) -> Verdict + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let build = Arc::new(build);
        let classify = Arc::new(classify);
        let handles = (0..writers)
            .map(|t| {
                let stop = stop.clone();
                let authority = authority.to_string();
                let build = build.clone();
                let classify = classify.clone();
                std::thread::spawn(move || {
                    writer(t, &authority, &stop, fail_pause, &*build, &*classify)
                })
            })
            .collect();
        Load { stop, handles }
    }

    /// Stops the writers, waits for them (a write in flight is answered or
    /// times out first) and returns every record, sorted by `done`. Panics if
    /// a writer panicked.
    pub fn stop(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::Relaxed);
        let mut recs: Vec<Rec> = self
            .handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer thread panicked"))
            .collect();
        recs.sort_by_key(|r| r.done);
        recs
    }
}

// ---------------------------------------------------------------------------
// summaries
// ---------------------------------------------------------------------------

/// (acknowledged, not acknowledged), each in the order of `recs`.
pub fn split(recs: &[Rec]) -> (Vec<&Rec>, Vec<&Rec>) {
    recs.iter().partition(|r| r.acked())
}

/// `t` relative to `origin`: `+12ms` or `-3ms`.
pub fn rel(origin: Instant, t: Instant) -> String {
    if t >= origin {
        format!("+{}ms", t.duration_since(origin).as_millis())
    } else {
        format!("-{}ms", origin.duration_since(t).as_millis())
    }
}

/// The longest gap between two consecutive acknowledgements.
#[derive(Debug, Clone, Copy)]
pub struct Pause {
    pub gap: Duration,
    /// `done` of the acknowledgement before the gap.
    pub from: Instant,
    /// `done` of the acknowledgement after the gap.
    pub to: Instant,
}

/// The longest gap between consecutive `done`s of `acked` (sorted by `done`;
/// the first of equally long gaps). Zero at `at` with fewer than two records.
pub fn longest_pause(acked: &[&Rec], at: Instant) -> Pause {
    let mut longest = Pause {
        gap: Duration::ZERO,
        from: at,
        to: at,
    };
    for w in acked.windows(2) {
        let gap = w[1].done.duration_since(w[0].done);
        if gap > longest.gap {
            longest = Pause {
                gap,
                from: w[0].done,
                to: w[1].done,
            };
        }
    }
    longest
}

/// `recs` grouped by `kind`, each group in the order of `recs`.
pub fn tally<'a>(
    recs: &[&'a Rec],
    kind: impl Fn(&Rec) -> String,
) -> BTreeMap<String, Vec<&'a Rec>> {
    let mut kinds: BTreeMap<String, Vec<&'a Rec>> = BTreeMap::new();
    for &r in recs {
        kinds.entry(kind(r)).or_default().push(r);
    }
    kinds
}

/// `{key} sent={..} done={..} {outcome:?}`, times relative to `origin`.
pub fn describe(r: &Rec, origin: Instant) -> String {
    format!(
        "{} sent={} done={} {:?}",
        r.key,
        rel(origin, r.sent),
        rel(origin, r.done),
        r.outcome
    )
}

/// The first 10 of `v`, one indented `describe` line each.
pub fn show(v: &[&Rec], origin: Instant) -> String {
    v.iter()
        .take(10)
        .map(|r| format!("  {}", describe(r, origin)))
        .collect::<Vec<_>>()
        .join("\n")
}

//! Which follower serves a read, and the one retry: a read that failed on a
//! backend (connect failure, transport failure, timeout, 502/503 answer) is
//! tried once more on another follower — or the leader when no other
//! follower exists and `reads.fallback_to_leader` is on — never on the same
//! backend; so is a read refused because all the follower's connections
//! were in use (`upstream_busy`). Only backend-caused failures count for
//! passive health.
//!
//! Every answered try counts in its backend's recent read latency
//! ([`crate::backend::latency`]); the read tier's p99 and p95 give
//! `reads.try_timeout: auto` and `reads.hedge.after: p95`. A try that
//! times out counts toward latency-aware ejection ([`try_timed_out`]).

use std::sync::Arc;
use std::time::Duration;

use http::Request;

use super::body::Release;
use super::error::ProxyError;
use super::forward::{self, Attempt, Cause, SendOpts};
use super::service::{blame, respond, try_clone, Ctx, Proxy, Routed};
use crate::backend::Backend;
use crate::config::{Consistency, HedgeAfter};
use crate::health::ejection::Reason;
use crate::routing::freshness::{self, ReadNeed};
use crate::routing::{LeaderState, Need, RoutingTable};
use crate::upstream::body::UpBody;

/// Passive health: one more backend-caused failure.
fn passive_failure(proxy: &Proxy, t: &RoutingTable, b: &Backend) {
    if b.record_failure(t.cfg.passive.consecutive_failures) {
        proxy.monitor.eject(b.id, Reason::Failures);
    }
}

/// A try of a read on `b` timed out after `limit`: a passive failure, and
/// latency-aware ejection's evidence — `passive.consecutive_failures` in a
/// row (or the first after it came back from a latency ejection) eject it
/// for latency.
fn try_timed_out(proxy: &Proxy, t: &RoutingTable, b: &Backend, limit: Duration) {
    let n = t.cfg.passive.consecutive_failures;
    let slow = b.latency.timed_out(n);
    let failed = b.record_failure(n);
    if slow {
        proxy.monitor.eject(b.id, Reason::Latency { limit });
    } else if failed {
        proxy.monitor.eject(b.id, Reason::Failures);
    }
}

/// Counts an answer's time to its headers (`a`, of a try sent to `b` at
/// `sent`) in `b`'s recent read latency.
#[inline]
fn timed(b: &Backend, sent: std::time::Instant, a: &Attempt) {
    if let Attempt::Answered(_) = a {
        let now = std::time::Instant::now();
        b.latency.answered(now - sent, now);
    }
}

/// [`forward::send`], [`timed`].
async fn send_timed(b: &Backend, req: Request<UpBody>, o: &SendOpts) -> Attempt {
    let sent = std::time::Instant::now();
    let a = forward::send(b, req, o).await;
    timed(b, sent, &a);
    a
}

/// The read tier's recent quantiles, from `t`'s followers at `now`.
fn tier_quantiles(
    proxy: &Proxy,
    t: &RoutingTable,
    now: std::time::Instant,
) -> crate::backend::latency::Quantiles {
    proxy.tier_latency.of_tier(now, &t.followers)
}

/// Whether `b` is the leader of `t`.
fn leads(t: &RoutingTable, b: &Backend) -> bool {
    t.leader().is_some_and(|l| l.id == b.id)
}

/// The read failed on `b` with evidence about it (a new connection
/// failed, or it broke before any response byte): passive health for a
/// follower; for the leader, the same fence a write would set
/// ([`crate::routing::fence`]), so the monitor re-probes at once and the
/// hold ends at the next election.
fn evidence(proxy: &Proxy, t: &RoutingTable, b: &Backend) {
    if leads(t, b) {
        proxy.monitor.fence(b);
    } else {
        passive_failure(proxy, t, b);
    }
}

/// A read that failed on the leader `failed` with no other backend to
/// retry on in the table it was routed by (one that must see an earlier
/// write has only the leader, or `fallback_to_leader` with no follower):
/// reads are safe to send again, so it is held, like a write, up to
/// `writes.hold` after it arrived, for the next leader or a follower whose
/// position qualifies. `None`: not the leader, or nothing within the hold.
async fn hold(
    proxy: &Proxy,
    t: &RoutingTable,
    ctx: &Ctx,
    need: Need,
    failed: &Backend,
) -> Option<Arc<Backend>> {
    if !leads(t, failed) {
        return None;
    }
    let cfg = &t.cfg;
    let deadline = ctx.arrived + cfg.writes.hold;
    let recheck = cfg.leader.probe.interval * 2;
    let ip = ctx.client.client_ip;
    tracing::debug!(backend = %failed.name(), "read failed on the leader; held for the next one");
    let nt = proxy
        .shared
        .wait_for_read(deadline, Some(failed.id), recheck, ip, need)
        .await?;
    // The wait may have ended on a recheck that forgot `failed`.
    let again = nt
        .pick_for(ip, need, Some(failed.id))
        .or_else(|| nt.pick_for(ip, need, None));
    again.map(|(b, _)| b.clone())
}

fn no_read_target(t: &RoutingTable) -> ProxyError {
    match &t.leader {
        LeaderState::SplitBrain(names) if t.cfg.reads.fallback_to_leader => {
            ProxyError::SplitBrain(names.clone())
        }
        _ => ProxyError::NoBackend,
    }
}

/// Where a read goes ([`RoutingTable::pick_for`]), counting reads that had
/// to see an earlier write by where they went.
fn target<'t>(
    proxy: &Proxy,
    t: &'t RoutingTable,
    ip: std::net::IpAddr,
    need: Need,
    avoid: Option<u64>,
) -> Option<&'t Arc<Backend>> {
    let (b, fresh_on_leader) = t.pick_for(ip, need, avoid)?;
    match fresh_on_leader {
        Some(true) => proxy.metrics.fresh_reads_leader.inc(),
        Some(false) => proxy.metrics.fresh_reads_follower.inc(),
        None => {}
    }
    Some(b)
}

/// What a read must see: under `read_your_writes`, its session's writes
/// and the client's position; a read outside `positions.scope`, when
/// positions matter (`read_your_writes` or `max_lag`), goes to the leader:
/// no probed position counts the writes it might have to see.
fn read_need(proxy: &Proxy, t: &RoutingTable, ctx: &Ctx, req: &mut Request<UpBody>) -> Need {
    let cfg = &t.cfg;
    let ryw = cfg.reads.consistency == Consistency::ReadYourWrites;
    let max_lag = cfg.reads.max_lag.is_some();
    let in_scope = || cfg.positions.counts(req.uri().path());
    match freshness::read_need(ryw, max_lag, in_scope) {
        ReadNeed::Nothing => Need::default(),
        ReadNeed::Leader => {
            crate::consistency::take_client_position(req.headers_mut());
            Need::LEADER
        }
        ReadNeed::Session => proxy.need(cfg, ctx, req.headers_mut()),
    }
}

/// The first try of a read under `reads.hedge`: when it has not answered
/// `after` into it, and the hedge budget allows, a copy goes to another
/// backend (`second`, never the first's); the first answer wins and the
/// other try is dropped (its connection closed). A try that fails leaves
/// the other to answer. Returns the backend whose outcome counts, its
/// in-flight count and that outcome.
#[allow(clippy::too_many_arguments)]
async fn hedged(
    proxy: &Proxy,
    ctx: &Ctx,
    (after, max_percent): (Duration, u32),
    first: Arc<Backend>,
    req: Request<UpBody>,
    spare: Option<Request<UpBody>>,
    first_o: &SendOpts,
    o: &SendOpts,
    second: impl Fn(u64) -> Option<Arc<Backend>>,
) -> (Arc<Backend>, Release, Attempt, Option<Request<UpBody>>) {
    let rel = Release::begin(&first, ctx.worker);
    let one = send_timed(&first, req, first_o);
    tokio::pin!(one);
    tokio::select! {
        a = &mut one => return (first.clone(), rel, a, spare),
        _ = tokio::time::sleep(after) => {}
    }
    let copy = spare.as_ref().and_then(try_clone);
    let other = second(first.id);
    let (Some(copy), Some(other)) = (copy, other) else {
        return (first.clone(), rel, one.await, spare);
    };
    if !proxy.hedge_allowed(max_percent) {
        return (first.clone(), rel, one.await, spare);
    }
    proxy.metrics.read_hedges.inc();
    let rel2 = Release::begin(&other, ctx.worker);
    let two = send_timed(&other, copy, o);
    tokio::pin!(two);
    tokio::select! {
        a = &mut one => match a {
            Attempt::Answered(_) => (first.clone(), rel, a, spare),
            _ => (other.clone(), rel2, two.await, spare),
        },
        b = &mut two => match b {
            Attempt::Answered(_) => {
                proxy.metrics.read_hedges_won.inc();
                (other.clone(), rel2, b, spare)
            }
            _ => (first.clone(), rel, one.await, spare),
        },
    }
}

pub(super) async fn read(
    proxy: &Proxy,
    t: &Arc<RoutingTable>,
    ctx: &Ctx,
    mut req: Request<UpBody>,
) -> Routed {
    if !t.ready {
        return Err(ProxyError::NotReady.into());
    }
    let ip = ctx.client.client_ip;
    let need = read_need(proxy, t, ctx, &mut req);
    let Some(first) = target(proxy, t, ip, need, None).cloned() else {
        return Err(no_read_target(t).into());
    };
    let cfg = &t.cfg;
    let o = ctx.opts(cfg, 0, t.leader_gen);
    let spare = if cfg.reads.retry {
        try_clone(&req)
    } else {
        None
    };
    // The first try's own deadline (`reads.try_timeout`): only when the read
    // can go elsewhere (a copy to re-send), never on a long-poll route.
    let now = ctx.arrived.into_std();
    let per_try = cfg
        .reads
        .try_timeout
        .filter(|_| spare.is_some() && !ctx.route.long_poll)
        .map(|tt| tt.now(|| tier_quantiles(proxy, t, now).p99))
        .filter(|d| *d < o.response_timeout);
    // A copy of the options only with a per-try deadline (none otherwise).
    let per_try_o = per_try.map(|d| SendOpts {
        response_timeout: d,
        ..o
    });
    let first_o = per_try_o.as_ref().unwrap_or(&o);
    if cfg.reads.hedge.is_some() {
        // Only with hedging on: a counter shared by the workers.
        proxy.read_counted();
    }
    let hedge = cfg
        .reads
        .hedge
        .filter(|_| spare.is_some() && !ctx.route.long_poll)
        .and_then(|h| {
            let after = match h.after {
                HedgeAfter::Fixed(d) => d,
                HedgeAfter::P95 => tier_quantiles(proxy, t, now)
                    .p95?
                    .max(Duration::from_millis(1)),
            };
            Some((after, h.max_percent))
        });
    let (first, rel, attempt, spare) = match hedge {
        None => {
            let rel = Release::begin(&first, ctx.worker);
            // Timed here, not by `send_timed`: one future less to move.
            let sent = std::time::Instant::now();
            let a = forward::send(&first, req, first_o).await;
            timed(&first, sent, &a);
            (first, rel, a, spare)
        }
        Some(h) => {
            let second = |avoid| target(proxy, t, ip, need, Some(avoid)).cloned();
            Box::pin(hedged(
                proxy, ctx, h, first, req, spare, first_o, &o, second,
            ))
            .await
        }
    };
    let (err, spare) = match attempt {
        Attempt::Answered(resp) => {
            let s = resp.status().as_u16();
            if s >= 500 {
                passive_failure(proxy, t, &first);
            } else {
                first.record_success();
            }
            let retry = (s == 502 || s == 503) && spare.is_some();
            if !(retry && t.pick_for(ip, need, Some(first.id)).is_some()) {
                return Ok((respond(resp, rel, ctx.response_idle(cfg)), first));
            }
            (None, spare)
        }
        Attempt::NotSent(req, e) => {
            evidence(proxy, t, &first);
            (Some(e), spare.or(Some(req)))
        }
        // All its connections in use: another follower may have room; not
        // a failure of this one.
        Attempt::Busy(req, e) => (Some(e), spare.or(Some(req))),
        Attempt::Failed(f) => match f.cause {
            // The client's body failed: nothing to retry, nothing to blame.
            Cause::Client => return Err(blame(f.error, &first)),
            // A long-poll that timed out says nothing about the backend, and
            // repeating it would double the client's wait.
            Cause::Timeout if ctx.route.long_poll => return Err(blame(f.error, &first)),
            Cause::Timeout => {
                match per_try {
                    Some(limit) => {
                        proxy.metrics.read_try_timeouts.inc();
                        try_timed_out(proxy, t, &first, limit);
                    }
                    None => passive_failure(proxy, t, &first),
                }
                (Some(f.error), spare)
            }
            // Maybe the backend's idle close: retried, counted for nothing;
            // a probe tells whether the leader is still there.
            Cause::Reused => {
                if leads(t, &first) {
                    proxy.monitor.reprobe();
                }
                (Some(f.error), spare)
            }
            Cause::Transport => {
                evidence(proxy, t, &first);
                (Some(f.error), spare)
            }
            // Not processed, nothing against the backend: try another.
            Cause::Refused => (Some(f.error), spare),
        },
    };
    drop(rel);
    let Some(req) = spare.filter(|_| cfg.reads.retry) else {
        let err = err.unwrap_or_else(|| ProxyError::Upstream {
            backend: first.name().to_string(),
            reason: "backend answered 502/503".into(),
        });
        return Err(blame(err, &first));
    };
    let second = match target(proxy, t, ip, need, Some(first.id)) {
        Some(b) => b.clone(),
        None => match Box::pin(hold(proxy, t, ctx, need, &first)).await {
            Some(b) => b,
            None => return Err(blame(err.unwrap_or(ProxyError::NoBackend), &first)),
        },
    };
    proxy.metrics.reads_retried.inc();
    let rel = Release::begin(&second, ctx.worker);
    // Boxed: the retry is the rare path; keep the common future small.
    match Box::pin(send_timed(&second, req, &o)).await {
        Attempt::Answered(resp) => {
            if resp.status().as_u16() >= 500 {
                passive_failure(proxy, t, &second);
            } else {
                second.record_success();
            }
            Ok((respond(resp, rel, ctx.response_idle(cfg)), second))
        }
        Attempt::NotSent(_, e) => {
            passive_failure(proxy, t, &second);
            Err(blame(e, &second))
        }
        Attempt::Busy(_, e) => Err(blame(e, &second)),
        Attempt::Failed(f) => {
            let backend_caused = match f.cause {
                Cause::Client | Cause::Refused | Cause::Reused => false,
                Cause::Timeout => !ctx.route.long_poll,
                Cause::Transport => true,
            };
            if backend_caused {
                passive_failure(proxy, t, &second);
            }
            Err(blame(f.error, &second))
        }
    }
}

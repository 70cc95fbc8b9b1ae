//! Is this write held, sent, re-sent or refused? The trust rules live here:
//!
//! - A write goes to [`RoutingTable::write_leader`] of the table current when
//!   it is sent (not the one from when it arrived); without one it is held on
//!   the table's change notification up to `writes.hold`.
//! - It is sent again only when it provably did not reach the backend
//!   (`Attempt::NotSent`), when the backend refused it as not-leader, or —
//!   opt-in, `writes.retry_ambiguous: idempotent` — once, when an idempotent
//!   write failed after it may have reached the leader.
//! - A write refused because every connection to the leader is in use
//!   (`Attempt::Busy`, 503 `upstream_busy`) was not sent: it is neither
//!   re-sent nor evidence against the leader.
//! - Only evidence about the backend moves the leader: a connect failure, a
//!   new connection reset before any response byte or a not-leader answer
//!   fences it at once; a 5xx answer, a timeout or a pooled connection that
//!   broke asks the monitor for a re-probe and keeps routing; a failure of
//!   the client's body or a refused HTTP/2 stream counts for nothing
//!   (decided in [`crate::routing::fence`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::LOCATION;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::body::{DownBody, Release};

use super::error::ProxyError;
use super::forward::{self, Attempt, Cause};
use super::service::{blame, is_idempotent, respond, try_clone, Ctx, Held, Proxy, Routed};
use crate::backend::Backend;
use crate::config::{Config, Consistency, PositionSource, RetryAmbiguous};
use crate::consistency::{after_ack, Written, POSITION_HEADER};
use crate::routing::fence::{self, Failure, Reaction};
use crate::routing::freshness::{self, Recorded};
use crate::routing::{LeaderState, RoutingTable};
use crate::upstream::body::{take_conn, UpBody, UpstreamBody};

/// Largest backend answer to a write that is read to be judged by a
/// `writes.not_leader.body` rule; larger answers pass through unjudged.
pub(crate) const NOT_LEADER_SCAN_LIMIT: u64 = 64 << 10;

/// What a backend's answer to a write means.
// Made once per answer and matched at once: boxing would cost more than the move.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    /// Pass it to the client; the replication position the answer carried
    /// (`positions.response`), if asked for and there.
    Deliver(Response<DownBody>, Option<u64>),
    /// "Not the leader": re-send elsewhere; maybe a hint of who leads.
    NotLeader(Option<Arc<Backend>>),
}

/// Judges a write's answer by `writes.not_leader`, and reads the position
/// from it when `position` says where (reading a small body whole if the
/// position is in it).
async fn judge_answer(
    t: &RoutingTable,
    ctx: &Ctx,
    resp: Response<UpstreamBody>,
    mut rel: Release,
    position: Option<&PositionSource>,
) -> Verdict {
    let nl = &t.cfg.writes.not_leader;
    let status = resp.status().as_u16();
    if nl.status.contains(&status) {
        return Verdict::NotLeader(None);
    }
    if nl.redirect && resp.status().is_redirection() {
        let hint = resp
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.parse::<http::Uri>().ok())
            .and_then(|u| {
                u.authority()
                    .and_then(|a| t.backend_by_authority(a.as_str()).cloned())
            });
        if let Some(h) = hint {
            return Verdict::NotLeader(Some(h));
        }
    }
    let small = resp
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= NOT_LEADER_SCAN_LIMIT);
    let in_body = position.is_some_and(|p| p.needs_body()) && status < 500;
    if small && (nl.scans_body(status) || in_body) {
        let (mut parts, mut body) = resp.into_parts();
        // The answer broke off: pass on what the status says, with no body.
        let bytes = Box::pin(read_small(&mut body)).await.unwrap_or_default();
        // Read to the end: the connection may serve again.
        rel.finish_with(take_conn(&mut body));
        if nl.body_matches(status, &bytes) {
            return Verdict::NotLeader(None);
        }
        let pos = position.and_then(|p| p.read(&parts.headers, &bytes));
        super::headers::prepare_response(&mut parts);
        return Verdict::Deliver(
            Response::from_parts(parts, DownBody::Full(Some(bytes))),
            pos,
        );
    }
    let pos = position
        .filter(|p| !p.needs_body())
        .and_then(|p| p.read(resp.headers(), &[]));
    Verdict::Deliver(respond(resp, rel, ctx.response_idle(&t.cfg)), pos)
}

/// The position of a write `answered` acknowledged, probed after the
/// acknowledgement, on the answering backend and the current write leader
/// ([`freshness::after_ack`]).
async fn position_after_ack(
    proxy: &Proxy,
    answered: &Arc<Backend>,
    probe: &(crate::config::ProbeConfig, PositionSource),
) -> Option<u64> {
    let current = proxy
        .shared
        .load()
        .write_leader()
        .filter(|c| c.id != answered.id)
        .cloned();
    let own = after_ack::position(answered, probe);
    match current {
        Some(c) => {
            let (a, b) = tokio::join!(own, after_ack::position(&c, probe));
            freshness::after_ack(a, b)
        }
        None => own.await,
    }
}

/// Read-your-writes after a write was answered: what it records
/// ([`freshness::recorded`]) — a position from its answer or probed after
/// the acknowledgement ([`position_after_ack`]) goes back to the client in
/// `x-leaderproxy-position` and into its session; else its session's reads
/// stay on the leader until the next position round
/// ([`Written::Pending`]) or for `reads.after_write_window`.
async fn note_write(
    proxy: &Proxy,
    cfg: &Config,
    session: Option<u64>,
    leader: &Arc<Backend>,
    resp: &mut Response<DownBody>,
    pos: Option<u64>,
) {
    let ok = resp.status().is_success();
    let probe = cfg.positions.probe.as_ref();
    let pos = match probe {
        Some(probe) if freshness::probes_after_ack(pos, ok, true) => {
            position_after_ack(proxy, leader, probe).await
        }
        _ => pos,
    };
    let written = match freshness::recorded(pos, ok, probe.is_some()) {
        Recorded::At(p) => {
            resp.headers_mut()
                .insert(&POSITION_HEADER, http::HeaderValue::from(p));
            Written::At(p)
        }
        Recorded::UntilRound => Written::Pending {
            round: proxy.shared.rounds.next(),
        },
        Recorded::ForWindow => Written::Unknown {
            until: Instant::now() + cfg.reads.after_write_window,
        },
        Recorded::Nothing => return,
    };
    if let Some(id) = session {
        proxy.sessions.wrote(id, written);
    }
}

/// A whole body of at most [`NOT_LEADER_SCAN_LIMIT`] bytes; `None` if it is
/// longer or breaks off.
async fn read_small(body: &mut UpstreamBody) -> Option<Bytes> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.ok()?.into_data() {
            if (out.len() + d.len()) as u64 > NOT_LEADER_SCAN_LIMIT {
                return None;
            }
            out.extend_from_slice(&d);
        }
    }
    Some(out.freeze())
}

/// What the write's failure on `leader` asks of the monitor
/// ([`fence::reaction`]): fence it, re-probe, or nothing.
fn react(proxy: &Proxy, leader: &Backend, f: Failure, long_poll: bool) {
    match fence::reaction(f, long_poll) {
        Reaction::Fence => proxy.monitor.fence(leader),
        Reaction::Reprobe => proxy.monitor.reprobe(),
        Reaction::Nothing => {}
    }
}

/// The fencing rule's name for a failure after the request may have been sent.
fn failure(c: Cause) -> Failure {
    match c {
        Cause::Transport => Failure::Transport,
        Cause::Reused => Failure::Reused,
        Cause::Timeout => Failure::Timeout,
        Cause::Client => Failure::Client,
        Cause::Refused => Failure::Refused,
    }
}

/// Why the hold ended without a leader.
fn refusal(proxy: &Proxy, arrived: Instant) -> ProxyError {
    proxy
        .metrics
        .hold_wait
        .observe(arrived.elapsed().as_secs_f64());
    let t = proxy.shared.load();
    let e = match &t.leader {
        LeaderState::SplitBrain(n) => ProxyError::SplitBrain(n.clone()),
        _ => ProxyError::NoLeader {
            waited: arrived.elapsed(),
        },
    };
    tracing::warn!(error = %e, "held write refused: no leader within writes.hold");
    e
}

pub(super) async fn write(proxy: &Proxy, ctx: &Ctx, mut req: Request<UpBody>) -> Routed {
    // The table current now, after the body was read: a slow upload must not
    // reach a leader deposed meanwhile.
    let mut t = proxy.shared.load();
    let cfg: Arc<Config> = t.cfg.clone();
    let deadline = ctx.arrived + cfg.writes.hold;
    // Bound each wait so a leader that failed once but was not replaced is tried again.
    let recheck = cfg.leader.probe.interval * 2;
    let retry_ambiguous = cfg.writes.retry_ambiguous == RetryAmbiguous::Idempotent
        && is_idempotent(&ctx.route, req.method(), req.headers());
    let keep_copy = !cfg.writes.not_leader.is_empty() || retry_ambiguous;
    let ryw = cfg.reads.consistency == Consistency::ReadYourWrites;
    if ryw {
        req.headers_mut().remove(&POSITION_HEADER);
    }
    // A write outside `positions.scope` does not move the probed position:
    // it leaves none (reads there go to the leader, see read.rs).
    let ryw = ryw && cfg.positions.counts(req.uri().path());
    let session = if ryw {
        proxy.session_id(&cfg, ctx, req.headers())
    } else {
        None
    };
    let position = cfg.positions.response.as_ref().filter(|_| ryw);
    let mut ambiguous_retried = false;
    let mut hint_followed = false;
    let mut avoid: Option<u64> = None;
    let mut hint: Option<Arc<Backend>> = None;
    let mut held: Option<Held> = None;
    loop {
        let target = match hint.take().filter(|h| t.hint_usable(h)) {
            Some(h) => Some(h),
            None => t.write_leader().filter(|l| avoid != Some(l.id)).cloned(),
        };
        let Some(leader) = target else {
            if held.is_none() {
                held = Some(
                    proxy
                        .hold(cfg.writes.max_held)
                        .ok_or(ProxyError::HoldQueueFull(cfg.writes.max_held))?,
                );
                tracing::debug!(avoid, "write held until a leader is known");
            }
            match Box::pin(proxy.shared.wait_for_leader(deadline, avoid, recheck)).await {
                Some(nt) => {
                    avoid = None;
                    t = nt;
                    continue;
                }
                None => return Err(refusal(proxy, ctx.arrived).into()),
            }
        };
        if held.take().is_some() {
            proxy
                .metrics
                .hold_wait
                .observe(ctx.arrived.elapsed().as_secs_f64());
        }
        let spare = if keep_copy { try_clone(&req) } else { None };
        let o = ctx.opts(&cfg, t.leader_gen, t.leader_gen);
        let rel = Release::begin(&leader, ctx.worker);
        match forward::send(&leader, req, &o).await {
            Attempt::Answered(resp) => {
                let verdict = if cfg.writes.not_leader.is_empty() && position.is_none() {
                    Verdict::Deliver(respond(resp, rel, ctx.response_idle(&cfg)), None)
                } else {
                    judge_answer(&t, ctx, resp, rel, position).await
                };
                match verdict {
                    Verdict::Deliver(mut r, pos) => {
                        if ryw {
                            Box::pin(note_write(proxy, &cfg, session, &leader, &mut r, pos)).await;
                        }
                        // A 5xx from the leader (webdis whose Redis died, etcd
                        // without quorum) is passed on; it only asks for a re-probe.
                        if r.status().is_server_error() {
                            react(proxy, &leader, Failure::ServerError, ctx.route.long_poll);
                        }
                        return Ok((r, leader));
                    }
                    Verdict::NotLeader(h) => {
                        // The backend itself says it does not lead: fence it.
                        react(proxy, &leader, Failure::NotLeader, ctx.route.long_poll);
                        let Some(again) = spare else {
                            let e = ProxyError::NotLeaderUnreplayable(cfg.writes.replay_body_limit);
                            return Err(blame(e, &leader));
                        };
                        tracing::debug!(backend = %leader.name(), hint = h.as_ref().map(|b| b.name().to_string()), "write refused as not leader; re-sending");
                        proxy.metrics.writes_resent.inc();
                        req = again;
                        avoid = Some(leader.id);
                        // A redirect is followed once, and only to a backend the
                        // current table vouches for (checked at the loop's top).
                        if !hint_followed {
                            hint = h.filter(|b| b.id != leader.id);
                            hint_followed = hint.is_some();
                        }
                        if Instant::now() >= deadline {
                            let e = ProxyError::NoLeader {
                                waited: ctx.arrived.elapsed(),
                            };
                            return Err(e.into());
                        }
                    }
                }
            }
            Attempt::NotSent(back, e) => {
                // Nothing reached the backend, and it did not take a
                // connection: fence it; safe to send again once a leader is known.
                react(proxy, &leader, Failure::NotSent, ctx.route.long_poll);
                tracing::debug!(backend = %leader.name(), error = %e, "write not sent; waiting for a leader to re-send");
                if Instant::now() >= deadline {
                    return Err(blame(e, &leader));
                }
                proxy.metrics.writes_resent.inc();
                req = back;
                avoid = Some(leader.id);
            }
            // Every connection to the leader stayed in use: the write was not
            // sent and says nothing against the leader (no fence). Re-sending
            // to the same busy leader would only wait again: 503 at once.
            Attempt::Busy(_, e) => return Err(blame(e, &leader)),
            Attempt::Failed(f) => {
                react(proxy, &leader, failure(f.cause), ctx.route.long_poll);
                // The client's body failed (the backend is not to blame), or
                // the stream was not processed and nothing is against the
                // leader (a new connection was already tried): the client
                // may retry.
                if matches!(f.cause, Cause::Client | Cause::Refused) {
                    return Err(blame(f.error, &leader));
                }
                // It may have been applied: re-sent only when the operator
                // opted in for idempotent writes, once, within the hold.
                let again = spare.filter(|_| {
                    retry_ambiguous
                        && !ambiguous_retried
                        && f.cause != Cause::Client
                        && Instant::now() < deadline
                });
                let Some(again) = again else {
                    return Err(blame(f.error, &leader));
                };
                tracing::info!(backend = %leader.name(), error = %f.error, "idempotent write failed after it may have been sent; re-sending once (writes.retry_ambiguous)");
                ambiguous_retried = true;
                proxy.metrics.writes_retried_ambiguous.inc();
                req = again;
                avoid = Some(leader.id);
            }
        }
        t = proxy.shared.load();
    }
}

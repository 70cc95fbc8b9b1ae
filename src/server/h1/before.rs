//! What a request may wait for before its body goes on: an upgrade's
//! answer, the `100 Continue` written, a chunked body's first size line.
//! Few requests need any of it; the connection loop runs it boxed, with the
//! request moved in, so an idle connection's task is not sized by it.

use std::io::IoSlice;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tokio::time::Instant;

use crate::h1::framing::Framing;
use crate::h1::parse::RequestHead;
use crate::net::client_ip::ClientInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::service::Proxy;
use crate::upstream::body::ClientBody;

use super::request::{expect_answer, first_chunk_ok, Continue};
use super::respond::{write_all, write_response};
use super::upgrade::{upgrade_request, Switched, Upgrade};
use super::{write_last, Shared};

/// What the connection loop does next.
pub(super) enum Before {
    /// Forward the request.
    Go(Request<ClientBody>),
    /// Answered without forwarding (an upgrade the backend did not take);
    /// the connection waits for its next request.
    Answered,
    /// The connection closes (an answer, if any, was written).
    Close,
    /// The backend switched protocols: the connection becomes a tunnel.
    Tunnel(Switched),
}

/// What [`before_body`] reads of the connection and the request.
pub(super) struct Ctx<'a> {
    pub(super) proxy: &'static Proxy,
    pub(super) shared: &'a Shared,
    pub(super) head: &'a RequestHead,
    pub(super) raw: Bytes,
    pub(super) client: &'a ClientInfo,
    /// The connection's current head deadline.
    pub(super) deadline: Instant,
    /// `limits.header_read`: the least time a chunked body's first size
    /// line is waited for.
    pub(super) header_read: Duration,
    pub(super) keep_alive: bool,
    pub(super) client_11: bool,
}

/// An upgrade is asked for by `Upgrade` plus the `upgrade` connection
/// option (RFC 9110 §7.8); a lone `Upgrade` field is dropped as hop-by-hop.
/// One with a body goes on as a plain request (the Upgrade is dropped): the
/// body could not be told apart from the next request if the backend does
/// not switch.
fn is_upgrade(head: &RequestHead, raw: &[u8]) -> bool {
    head.upgrade
        && matches!(head.framing, Framing::None | Framing::Length(0))
        && head
            .connection
            .iter()
            .any(|n| n.get(raw).eq_ignore_ascii_case(b"upgrade"))
}

/// The request has something to wait for before its body.
pub(super) fn needed(head: &RequestHead) -> bool {
    head.upgrade || head.expect_continue || head.framing == Framing::Chunked
}

/// Runs what comes before the body, in order: the upgrade, the answer to
/// `Expect: 100-continue` (sent before waiting for any body byte, the
/// client sends none before it; a declared length past the limit gets its
/// 413 instead, with no 100), the check of a chunked body's first size
/// line (a malformed one is refused like a bad head, before anything is
/// sent upstream).
pub(super) async fn before_body(
    cx: Ctx<'_>,
    req: Request<ClientBody>,
    out: &mut Vec<u8>,
) -> Before {
    let Ctx {
        proxy,
        shared,
        head,
        raw,
        client,
        ..
    } = cx;
    if is_upgrade(head, &raw) {
        let up = upgrade_request(
            proxy,
            head,
            &raw,
            req.method(),
            req.uri().path(),
            client,
            out,
        );
        return match up.await {
            Upgrade::Switched(sw) => Before::Tunnel(sw),
            Upgrade::Refused(resp) => {
                let _ = write_last(shared, resp, out).await;
                Before::Close
            }
            Upgrade::Answered(resp) => {
                // Not switched: the connection still speaks HTTP/1.1.
                let keep = cx.client_11 && cx.keep_alive;
                match write_response(shared, resp, out, false, keep, false).await {
                    Ok(true) if cx.keep_alive => Before::Answered,
                    _ => Before::Close,
                }
            }
        };
    }
    if head.expect_continue {
        let max = proxy.shared.load().cfg.limits.max_body_bytes;
        match expect_answer(head.framing, max) {
            Continue::Nothing => {}
            Continue::TooLarge => {
                let resp = ProxyError::BodyTooLarge(max).into_response();
                let _ = write_last(shared, resp, out).await;
                return Before::Close;
            }
            Continue::Send => {
                let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
                if write_all(shared, &mut [IoSlice::new(cont)]).await.is_err() {
                    return Before::Close;
                }
            }
        }
    }
    if head.framing == Framing::Chunked {
        let by = cx.deadline.max(Instant::now() + cx.header_read);
        match tokio::time::timeout_at(by, first_chunk_ok(shared)).await {
            Ok(Ok(())) => {}
            Ok(Err(Some(e))) => {
                tracing::debug!(client = %client.peer, error = e.reason(), "refused chunked body");
                let resp =
                    ProxyError::BadHead(crate::h1::HeadError::BadTransferEncoding).into_response();
                let _ = write_last(shared, resp, out).await;
                return Before::Close;
            }
            Ok(Err(None)) | Err(_) => return Before::Close,
        }
    }
    Before::Go(req)
}

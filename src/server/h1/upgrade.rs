//! Upgrade requests (`Connection: upgrade`): sent to a backend of the
//! route's role over a fresh connection; only a 101 switches the client's
//! connection to a two-way tunnel.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;
use http::{HeaderMap, Method, Response};
use http_body_util::Either;

use crate::h1::parse::RequestHead;
use crate::net::client_ip::ClientInfo;
use crate::proxy::body::DownBody;
use crate::proxy::error::ProxyError;
use crate::proxy::service::Proxy;

use super::respond::write_fields;
use super::ClientStream;

/// A connection the backend switched (101) for an upgrade request.
pub(super) struct Switched {
    upstream: crate::upstream::connect::UpstreamStream,
    /// The 101 head for the client, then what the backend sent after it.
    down: Vec<u8>,
    backend: Arc<crate::backend::Backend>,
}

/// What became of an upgrade request.
pub(super) enum Upgrade {
    /// 101: the client connection becomes a tunnel.
    Switched(Switched),
    /// Any other answer: an ordinary response, after which the client's
    /// connection keeps speaking HTTP/1.1 (its upstream one is not pooled).
    Answered(Response<DownBody>),
    /// Not allowed here, no backend, or no answer: respond, then close.
    Refused(Response<DownBody>),
}

/// Sends an upgrade request (no body: see `serve`) to a backend of its
/// route's role over a fresh connection and reads the answer. Only a 101
/// switches; nothing the client sent after the head goes upstream before it.
pub(super) async fn upgrade_request(
    proxy: &'static Proxy,
    head: &RequestHead,
    raw: &Bytes,
    method: &Method,
    path: &str,
    client: &ClientInfo,
    out: &mut Vec<u8>,
) -> Upgrade {
    let t = proxy.shared.load();
    let route = crate::routing::classify(&t.cfg.routes, method, path);
    if !route.upgrade {
        return Upgrade::Refused(ProxyError::UpgradeNotAllowed.into_response());
    }
    let target = match route.role {
        crate::routing::Role::Read => t.pick_read(client.client_ip),
        crate::routing::Role::Write => t.write_leader(),
    };
    let Some(backend) = target.cloned() else {
        return Upgrade::Refused(ProxyError::NoBackend.into_response());
    };
    out.clear();
    let fwd = crate::h1::rewrite::ForwardOpts {
        client_ip: client.peer.ip(),
        tls: client.tls,
        allow_upgrade: true,
    };
    crate::h1::rewrite::encode_request(head, raw, &fwd, out);
    let connect = crate::upstream::connect::connect(
        &*backend,
        t.cfg.timeouts.connect,
        crate::upstream::connect::Alpn::Http1,
    );
    let upstream = match connect.await {
        Ok(u) => u,
        Err(e) => {
            let err = ProxyError::Connect {
                backend: backend.name().to_string(),
                reason: e.to_string(),
            };
            return Upgrade::Refused(err.into_response());
        }
    };
    let conn = crate::upstream::h1::Conn::new(upstream, 0);
    let sent = crate::upstream::h1::send_upgrade(conn, out);
    let answer = match tokio::time::timeout(t.cfg.timeouts.response_headers, sent).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let err = ProxyError::Upstream {
                backend: backend.name().to_string(),
                reason: e.to_string(),
            };
            return Upgrade::Refused(err.into_response());
        }
        Err(_) => {
            let err = ProxyError::Timeout {
                backend: backend.name().to_string(),
                after: t.cfg.timeouts.response_headers,
            };
            return Upgrade::Refused(err.into_response());
        }
    };
    let (mut parts, body) = answer.into_parts();
    if parts.status != http::StatusCode::SWITCHING_PROTOCOLS {
        crate::proxy::headers::prepare_response(&mut parts);
        let body = DownBody::Upstream {
            inner: Either::Left(body),
            release: None,
            idle: crate::upstream::body::IdleTimer::new(Some(t.cfg.timeouts.body_idle)),
        };
        return Upgrade::Answered(Response::from_parts(parts, body));
    }
    let Some((upstream, early)) = body.into_switched() else {
        return Upgrade::Refused(ProxyError::NoBackend.into_response());
    };
    let mut down = Vec::with_capacity(256 + early.len());
    switching_head(&mut parts.headers, &mut down);
    down.extend_from_slice(&early);
    Upgrade::Switched(Switched {
        upstream,
        down,
        backend,
    })
}

/// The 101 head for the client: the backend's fields without hop-by-hop
/// ones, then its `Upgrade` and `Connection: upgrade`.
pub(super) fn switching_head(h: &mut HeaderMap, out: &mut Vec<u8>) {
    let upgrade: Vec<HeaderValue> = h.get_all(http::header::UPGRADE).iter().cloned().collect();
    crate::proxy::headers::strip_hop_by_hop(h);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    write_fields(h, out, true);
    for v in &upgrade {
        out.extend_from_slice(b"upgrade: ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
}

/// A switched connection: the 101 head (and whatever the backend sent
/// after it) goes to the client, whatever the client sent after its
/// request to the backend, then bytes flow both ways until either side
/// closes.
pub(super) async fn run_tunnel(
    mut client_io: Box<dyn ClientStream>,
    early: BytesMut,
    sw: Switched,
    client: &ClientInfo,
) {
    use tokio::io::AsyncWriteExt;
    let Switched {
        mut upstream,
        down,
        backend,
    } = sw;
    let _in_flight = backend.begin_request();
    let start = async {
        client_io.write_all(&down).await?;
        upstream.write_all(&early).await?;
        tokio::io::copy_bidirectional(&mut client_io, &mut upstream).await
    };
    match start.await {
        Ok((up, down)) => {
            tracing::debug!(client = %client.peer, backend = %backend.name(), up, down, "upgrade tunnel closed")
        }
        Err(e) => {
            tracing::debug!(client = %client.peer, backend = %backend.name(), error = %e, "upgrade tunnel ended")
        }
    }
}

//! Opening a connection to a backend: TCP (no delay, keepalive probes) and,
//! for an `https://` backend, the TLS handshake with the backend's current
//! client config (swapped by reloads and certificate rotation). Pooled
//! connections and probes both come through [`connect`], so a handshake
//! failure is counted and logged the same way wherever it happens.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::reason_of;
use crate::config::BackendTls;
use crate::metrics::TlsReason;

/// TCP keepalive on upstream sockets: first probe after this much silence,
/// then every [`KEEPALIVE_INTERVAL`]; the kernel gives up after 3 misses.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Which protocols a TLS connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `http/1.1` only: the connection will carry HTTP/1.1 (pooled
    /// connections, probes), so the backend must not pick `h2`.
    Http1,
    /// `h2`, then `http/1.1`: for requests that arrived over HTTP/2; the
    /// backend chooses ([`UpstreamStream::is_h2`]).
    H2,
}

/// A connection to a backend, plain or TLS.
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// Whether the backend chose `h2` by ALPN (never for a plain stream).
    pub(crate) fn is_h2(&self) -> bool {
        match self {
            UpstreamStream::Plain(_) => false,
            UpstreamStream::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }

    /// The certificate the backend presented (TLS only).
    pub(crate) fn peer_certificate(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        match self {
            UpstreamStream::Plain(_) => None,
            UpstreamStream::Tls(s) => s.get_ref().1.peer_certificates()?.first(),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// TCP: refused, unreachable, … (the backend is not there right now).
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    /// TCP worked; the TLS handshake did not.
    #[error("TLS handshake failed ({reason}): {message}")]
    Tls { reason: TlsReason, message: String },
}

/// What a connection needs to know of the backend it reaches, and what it
/// tells the backend back; the backend layer implements it, so reaching a
/// backend knows nothing of its routing state.
pub(crate) trait Peer {
    /// `host:port` to connect to.
    fn authority(&self) -> &str;
    /// `https://`: the TLS settings and client config in force; `None`: plain.
    fn tls(&self) -> Option<arc_swap::Guard<std::sync::Arc<BackendTls>>>;
    /// A TLS handshake completed; `peer` is the certificate the backend presented.
    fn handshake_done(&self, peer: Option<&rustls_pki_types::CertificateDer<'_>>);
    /// A TLS handshake failed for `reason`.
    fn handshake_failed(&self, reason: TlsReason, message: &str);
    /// The backend chose `http/1.1` when offered `h2`.
    fn declined_h2(&self);
}

/// Opens a connection to `backend` within `timeout` (TCP and TLS together).
/// A TLS handshake failure is counted by reason and logged when the
/// backend's reason changes (the probes say when it works again).
pub(crate) async fn connect<P: Peer + ?Sized>(
    backend: &P,
    timeout: Duration,
    alpn: Alpn,
) -> Result<UpstreamStream, ConnectError> {
    match tokio::time::timeout(timeout, open(backend, alpn)).await {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(r) => r,
    }
}

async fn open<P: Peer + ?Sized>(backend: &P, alpn: Alpn) -> Result<UpstreamStream, ConnectError> {
    let stream = TcpStream::connect(backend.authority()).await?;
    let _ = stream.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
    let Some(tls) = backend.tls() else {
        return Ok(UpstreamStream::Plain(stream));
    };
    // Built from the certificates config validation read: cannot fail
    // for a file or a key, those rejected the (re)load.
    let client = super::tls::client(&tls.client).map_err(io::Error::other)?;
    let config = match alpn {
        Alpn::Http1 => client.http1.clone(),
        Alpn::H2 => client.h2.clone(),
    };
    match tokio_rustls::TlsConnector::from(config)
        .connect(tls.server_name.clone(), stream)
        .await
    {
        Ok(s) => {
            let s = UpstreamStream::Tls(Box::new(s));
            backend.handshake_done(s.peer_certificate());
            Ok(s)
        }
        Err(e) => {
            let reason = reason_of(&e);
            let message = e.to_string();
            backend.handshake_failed(reason, &message);
            Err(ConnectError::Tls { reason, message })
        }
    }
}

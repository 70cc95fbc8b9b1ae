//! The PROXY protocol (HAProxy's, versions 1 and 2): an L4 load balancer
//! sends the original client's address in a header before any byte of the
//! client's own stream (HTTP or a TLS ClientHello).
//!
//! [`parse`] is pure and takes any prefix of the stream; [`read_header`]
//! reads until a header is complete and hands back the bytes it read past
//! it, which [`Rewind`] puts in front of the stream again so nothing of the
//! request is lost. Only addresses are used; v2 TLVs are checked to fit
//! the header, then skipped. A v2 PROXY header must describe a stream
//! (TCP or unix stream) connection.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A v1 header is at most this long, CRLF included.
pub(crate) const V1_MAX: usize = 107;
/// The v2 signature (12 bytes).
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The largest v2 address-and-TLV part accepted (the field allows 65535).
pub(crate) const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A proxied TCP connection from `source` to `destination`.
    Proxied {
        /// The client, as the balancer saw it.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the balancer's own connection (a health check); the
    /// socket address stands.
    Local,
    /// v1 `UNKNOWN`, or v2 with an unspecified or non-IP (unix) family: the
    /// socket address stands.
    Unknown,
}

impl Header {
    /// The client address the header gives, if any.
    pub(crate) fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::Proxied { source, .. } => Some(*source),
            Header::Local | Header::Unknown => None,
        }
    }
}

/// Why a connection did not start with a usable PROXY header.
#[derive(Debug)]
pub(crate) enum Error {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    Missing,
    /// A header started but breaks the format.
    Malformed(&'static str),
    /// A v1 header without CRLF within 107 bytes, or a v2 header longer
    /// than [`V2_MAX_PAYLOAD`].
    TooLong,
    /// The peer closed the connection before the header ended.
    Closed,
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Missing => f.write_str("the connection did not start with a PROXY header"),
            Error::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
            Error::TooLong => f.write_str("PROXY header too long"),
            Error::Closed => f.write_str("connection closed before the PROXY header ended"),
            Error::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Parses a PROXY header at the start of `buf`: `Ok(None)` when `buf` is a
/// valid beginning of a header that needs more bytes, otherwise the header
/// and its length in bytes (the rest of `buf` belongs to the stream).
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == V1_PREFIX[0] {
        let n = buf.len().min(V1_PREFIX.len());
        if buf[..n] != V1_PREFIX[..n] {
            return Err(Error::Missing);
        }
        return parse_v1(buf);
    }
    if buf[0] == V2_SIGNATURE[0] {
        let n = buf.len().min(V2_SIGNATURE.len());
        if buf[..n] != V2_SIGNATURE[..n] {
            return Err(Error::Missing);
        }
        return parse_v2(buf);
    }
    Err(Error::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Error::TooLong)
        } else {
            Ok(None)
        };
    };
    if window[cr] == b'\n' {
        return Err(Error::Malformed("line ends without CR"));
    }
    match window.get(cr + 1) {
        None if buf.len() >= V1_MAX => return Err(Error::TooLong),
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::Malformed("CR not followed by LF")),
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| Error::Malformed("not ASCII"))?;
    let len = cr + 2;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line, whatever it is, is ignored.
        return Ok(Some((Header::Unknown, len)));
    }
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Error::Malformed(
            "expected TCP4|TCP6, two addresses and two ports separated by single spaces",
        ));
    };
    let (sport, dport) = (port(sport)?, port(dport)?);
    let (source, destination) = match family {
        "TCP4" => {
            let ip = |s: &str| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| Error::Malformed("invalid IPv4 address"))
            };
            (
                SocketAddr::from((ip(src)?, sport)),
                SocketAddr::from((ip(dst)?, dport)),
            )
        }
        "TCP6" => {
            let ip = |s: &str| {
                s.parse::<Ipv6Addr>()
                    .map_err(|_| Error::Malformed("invalid IPv6 address"))
            };
            (
                SocketAddr::from((ip(src)?, sport)),
                SocketAddr::from((ip(dst)?, dport)),
            )
        }
        _ => return Err(Error::Malformed("unknown protocol (TCP4, TCP6 or UNKNOWN)")),
    };
    Ok(Some((
        Header::Proxied {
            source,
            destination,
        },
        len,
    )))
}

fn port(s: &str) -> Result<u16, Error> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("invalid port"));
    }
    s.parse().map_err(|_| Error::Malformed("invalid port"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(Error::Malformed("v2 signature with a version other than 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::Malformed("unknown v2 command")),
    };
    let fam = buf[13];
    let payload = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if payload > V2_MAX_PAYLOAD {
        return Err(Error::TooLong);
    }
    if fam & 0x0f > 2 {
        return Err(Error::Malformed("unknown v2 transport protocol"));
    }
    let need = match fam >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(Error::Malformed("unknown v2 address family")),
    };
    if payload < need {
        return Err(Error::Malformed(
            "v2 length too short for its address family",
        ));
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(None);
    }
    if local {
        // The block is discarded, addresses and TLVs alike.
        return Ok(Some((Header::Local, len)));
    }
    if fam >> 4 != 0 && fam & 0x0f != 1 {
        return Err(Error::Malformed(
            "v2 PROXY over a transport other than STREAM (DGRAM or unspecified)",
        ));
    }
    let a = &buf[16..len];
    check_tlvs(&a[need..])?;
    let be16 = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let header = match fam >> 4 {
        1 => {
            let ip = |i: usize| Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]);
            Header::Proxied {
                source: SocketAddrV4::new(ip(0), be16(8)).into(),
                destination: SocketAddrV4::new(ip(4), be16(10)).into(),
            }
        }
        2 => {
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                Ipv6Addr::from(o)
            };
            Header::Proxied {
                source: SocketAddrV6::new(ip(0), be16(32), 0, 0).into(),
                destination: SocketAddrV6::new(ip(16), be16(34), 0, 0).into(),
            }
        }
        _ => Header::Unknown,
    };
    Ok(Some((header, len)))
}

/// Checks that the v2 TLVs (type: 1 byte, length: 2, value) after the
/// addresses tile `tlvs` exactly: none overruns the header. Their contents
/// are not used.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Error> {
    while !tlvs.is_empty() {
        let [_, hi, lo, rest @ ..] = tlvs else {
            return Err(Error::Malformed(
                "v2 TLV header cut by the end of the header",
            ));
        };
        let n = u16::from_be_bytes([*hi, *lo]) as usize;
        if n > rest.len() {
            return Err(Error::Malformed("v2 TLV length overruns the header"));
        }
        tlvs = &rest[n..];
    }
    Ok(())
}

/// Reads the PROXY header that starts a client connection from `peer`, by
/// `deadline`. Its source address becomes the client's address only when
/// `peer` is in `trusted` (else it is logged and ignored). Returns the bytes
/// read past the header and the client's address; `Err`: why the
/// connection is to be closed (missing, malformed or late header).
pub(crate) async fn read_client_header(
    stream: &mut tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    trusted: &super::client_ip::CidrSet,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, std::net::SocketAddr), String> {
    let (header, rest) = match tokio::time::timeout_at(deadline, read_header(stream)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(format!("bad PROXY protocol header: {e}")),
        Err(_) => return Err("no PROXY protocol header in time".into()),
    };
    let client = match header.source() {
        Some(src) if trusted.contains(peer.ip()) => src,
        Some(src) => {
            tracing::debug!(client = %peer, proxied = %src, "PROXY header from a peer not in trusted_proxies: its address is ignored");
            peer
        }
        None => peer,
    };
    Ok((rest, client))
}

/// A PROXY protocol v2 header (`PROXY` command, TCP over IPv4 or IPv6)
/// saying a connection from `src` to `dst`, for a backend that takes one.
/// Mixed families are sent as IPv6 (IPv4-mapped).
pub(crate) fn encode_v2(src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
    use std::net::{IpAddr, SocketAddr};
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        _ => {
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// Reads from `s` until a whole PROXY header arrived; returns it and the
/// bytes read past it (the start of the client's stream). Reads at most
/// [`V1_MAX`] or 16 + [`V2_MAX_PAYLOAD`] bytes plus one read's worth more,
/// then fails. The caller bounds it in time.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> Result<(Header, Bytes), Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if let Some((h, n)) = parse(&buf)? {
            return Ok((h, Bytes::from(buf).slice(n..)));
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(512);
        }
        if s.read_buf(&mut buf).await.map_err(Error::Io)? == 0 {
            return Err(Error::Closed);
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `prefix`, then `inner`.
    pub(crate) fn new(prefix: Bytes, inner: S) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;

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
pub const V1_MAX: usize = 107;
/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The largest v2 address-and-TLV part accepted (the field allows 65535).
pub const V2_MAX_PAYLOAD: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied TCP connection from `source` to `destination`.
    Proxied {
        source: SocketAddr,
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
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::Proxied { source, .. } => Some(*source),
            Header::Local | Header::Unknown => None,
        }
    }
}

/// Why a connection did not start with a usable PROXY header.
#[derive(Debug)]
pub enum Error {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    Missing,
    /// A header started but breaks the format.
    Malformed(&'static str),
    /// A v1 header without CRLF within 107 bytes, or a v2 header longer
    /// than [`V2_MAX_PAYLOAD`].
    TooLong,
    /// The peer closed the connection before the header ended.
    Closed,
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
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
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
pub async fn read_client_header(
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
pub fn encode_v2(src: std::net::SocketAddr, dst: std::net::SocketAddr) -> Vec<u8> {
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
pub async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> Result<(Header, Bytes), Error> {
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
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Bytes, inner: S) -> Rewind<S> {
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
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn done(buf: &[u8]) -> (Header, usize) {
        parse(buf).unwrap().expect("complete header")
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    fn v2(cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// Asserts that `s` is refused as malformed.
    fn bad(s: &[u8]) {
        match parse(s) {
            Err(Error::Malformed(_)) => {}
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn v2_tcp4() -> Vec<u8> {
        // 192.0.2.1:56324 -> 198.51.100.2:443, then a TLV (type 0x04 NOOP, 3 bytes).
        let mut p = vec![192, 0, 2, 1, 198, 51, 100, 2];
        p.extend_from_slice(&56324u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p.extend_from_slice(&[0x04, 0x00, 0x03, 1, 2, 3]);
        v2(1, 0x11, &p)
    }

    #[test]
    fn v1_tcp4_and_the_bytes_after_it() {
        let s = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        let (h, n) = done(s);
        assert_eq!(h, proxied("192.0.2.1:56324", "198.51.100.2:443"));
        assert_eq!(&s[n..], b"GET / HTTP/1.1\r\n");
        assert_eq!(h.source(), Some("192.0.2.1:56324".parse().unwrap()));
    }

    #[test]
    fn v1_tcp6() {
        let s = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n";
        let (h, n) = done(s);
        assert_eq!(h, proxied("[2001:db8::1]:4711", "[2001:db8::2]:80"));
        assert_eq!(n, s.len());
    }

    #[test]
    fn v1_longest_header_fits() {
        let s = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(s.len(), V1_MAX);
        assert_eq!(done(s), (Header::Unknown, V1_MAX));
        let s = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(done(s).1, s.len());
    }

    #[test]
    fn v1_unknown() {
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (Header::Unknown, 15));
        let s = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX";
        assert_eq!(done(s), (Header::Unknown, s.len() - 1));
        assert_eq!(Header::Unknown.source(), None);
    }

    #[test]
    fn v1_truncated_needs_more() {
        let full = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        for i in 0..full.len() {
            assert!(parse(&full[..i]).unwrap().is_none(), "prefix of {i} bytes");
        }
    }

    #[test]
    fn v1_malformed() {
        let bad = |s: &[u8]| match parse(s) {
            Err(Error::Malformed(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
        };
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n");
        bad(b"PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n");
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n");
        bad(b"PROXY TCP4 2001:db8::1 198.51.100.2 56324 443\r\n");
        bad(b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n");
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n");
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 443\r\n");
        bad(b"PROXY TCP4 192.0.2.256 198.51.100.2 1 443\r\n");
        bad(b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n");
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n");
        bad(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX");
        bad(b"PROXY \r\n");
    }

    #[test]
    fn v1_oversize() {
        let mut s = b"PROXY UNKNOWN ".to_vec();
        s.resize(V1_MAX, b'a');
        assert!(matches!(parse(&s), Err(Error::TooLong)));
        // CR as the 107th byte: its LF would be the 108th.
        s[V1_MAX - 1] = b'\r';
        assert!(matches!(parse(&s), Err(Error::TooLong)));
        s.push(b'\n');
        assert!(matches!(parse(&s), Err(Error::TooLong)));
    }

    #[test]
    fn not_a_proxy_header() {
        for s in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PRI * HTTP/2.0\r\n",
            b"PROXZ",
            b"\r\n\r\n\0\r\nQUIX\n",
        ] {
            assert!(matches!(parse(s), Err(Error::Missing)), "{s:?}");
        }
        // "P" alone may still become "PROXY ".
        assert!(parse(b"P").unwrap().is_none());
    }

    #[test]
    fn v2_tcp4_with_tlv() {
        let mut s = v2_tcp4();
        let len = s.len();
        s.extend_from_slice(b"\x16\x03\x01");
        let (h, n) = done(&s);
        assert_eq!(h, proxied("192.0.2.1:56324", "198.51.100.2:443"));
        assert_eq!(n, len);
        assert_eq!(&s[n..], b"\x16\x03\x01");
    }

    #[test]
    fn v2_tcp6() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut p = src.octets().to_vec();
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&4711u16.to_be_bytes());
        p.extend_from_slice(&80u16.to_be_bytes());
        let s = v2(1, 0x21, &p);
        assert_eq!(
            done(&s),
            (proxied("[2001:db8::1]:4711", "[2001:db8::2]:80"), 52)
        );
    }

    #[test]
    fn v2_local_unspec_and_unix() {
        // LOCAL: addresses (if any) are ignored.
        assert_eq!(done(&v2(0, 0x00, &[])), (Header::Local, 16));
        let mut tcp4 = v2_tcp4();
        tcp4[12] = 0x20;
        assert_eq!(done(&tcp4), (Header::Local, tcp4.len()));
        // PROXY with the unspecified family, or AF_UNIX: the socket address stands.
        assert_eq!(done(&v2(1, 0x00, &[])), (Header::Unknown, 16));
        assert_eq!(done(&v2(1, 0x31, &[0; 216])), (Header::Unknown, 232));
    }

    #[test]
    fn v2_truncated_needs_more() {
        let s = v2_tcp4();
        for i in 0..s.len() {
            assert!(parse(&s[..i]).unwrap().is_none(), "prefix of {i} bytes");
        }
    }

    #[test]
    fn v2_malformed_and_oversize() {
        let mut s = v2_tcp4();
        s[12] = 0x11; // version 1 in a v2 signature
        bad(&s);
        let mut s = v2_tcp4();
        s[12] = 0x22; // command 2
        bad(&s);
        let mut s = v2_tcp4();
        s[13] = 0x41; // family 4
        bad(&s);
        let mut s = v2_tcp4();
        s[13] = 0x13; // transport 3
        bad(&s);
        bad(&v2(1, 0x11, &[0; 11])); // too short for AF_INET
        bad(&v2(1, 0x21, &[0; 35])); // too short for AF_INET6
        let mut s = v2(1, 0x11, &[]);
        s[14..16].copy_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        assert!(matches!(parse(&s), Err(Error::TooLong)));
        // At the limit is fine: the addresses, then one TLV to the last byte.
        let mut p = vec![0; 12];
        p.extend_from_slice(&[0x04]);
        p.extend_from_slice(&((V2_MAX_PAYLOAD - 15) as u16).to_be_bytes());
        p.resize(V2_MAX_PAYLOAD, 0);
        let s = v2(1, 0x11, &p);
        assert_eq!(done(&s).1, 16 + V2_MAX_PAYLOAD);
    }

    #[test]
    fn v2_tlvs_must_fit_the_payload() {
        // The NOOP TLV at the end claims 4 bytes; 3 follow.
        let mut s = v2_tcp4();
        let n = s.len();
        s[n - 5..n - 3].copy_from_slice(&4u16.to_be_bytes());
        bad(&s);
        // A TLV header cut by the end of the payload.
        let mut p = vec![192, 0, 2, 1, 198, 51, 100, 2, 0, 1, 0, 2];
        p.extend_from_slice(&[0x04, 0x00]);
        bad(&v2(1, 0x11, &p));
        // Several TLVs, the last one ending exactly at the end: fine.
        p.truncate(12);
        p.extend_from_slice(&[0x04, 0x00, 0x00, 0x01, 0x00, 0x01, b'x']);
        assert_eq!(done(&v2(1, 0x11, &p)).1, 16 + p.len());
        // LOCAL discards the block, TLVs included.
        let mut s = v2_tcp4();
        s[12] = 0x20;
        let n = s.len();
        s[n - 5..n - 3].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(done(&s), (Header::Local, n));
    }

    #[test]
    fn v2_proxy_needs_a_stream_transport() {
        let mut s = v2_tcp4();
        s[13] = 0x12; // UDP over IPv4
        bad(&s);
        s[13] = 0x10; // IPv4, unspecified transport
        bad(&s);
        let mut s = v2(1, 0x32, &[0; 216]); // unix datagram
        bad(&s);
        // LOCAL: the family and transport are ignored.
        s[12] = 0x20;
        assert_eq!(done(&s), (Header::Local, 232));
    }

    #[tokio::test]
    async fn read_header_keeps_the_rest_of_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut msg = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec();
        msg.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let w = tokio::spawn(async move {
            // In small pieces, so the reader sees partial headers.
            for c in msg.chunks(7) {
                a.write_all(c).await.unwrap();
                tokio::task::yield_now().await;
            }
            a
        });
        let mut b = b;
        let (h, rest) = read_header(&mut b).await.unwrap();
        assert_eq!(h, proxied("192.0.2.1:56324", "198.51.100.2:443"));
        let a = w.await.unwrap();
        drop(a);
        let mut s = Rewind::new(rest, b);
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn read_header_errors() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"PROXY TCP4 192.0").await.unwrap();
        drop(a);
        assert!(matches!(read_header(&mut b).await, Err(Error::Closed)));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(read_header(&mut b).await, Err(Error::Missing)));
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[b'P'; 1]).await.unwrap();
        a.write_all(b"ROXY UNKNOWN ").await.unwrap();
        a.write_all(&[b'a'; 200]).await.unwrap();
        assert!(matches!(read_header(&mut b).await, Err(Error::TooLong)));
    }

    #[test]
    fn an_encoded_v2_header_parses_back() {
        for (src, dst) in [
            ("192.0.2.7:5000", "127.0.0.1:5432"),
            ("[2001:db8::1]:40000", "[::1]:6379"),
            ("192.0.2.7:5000", "[::1]:6379"),
        ] {
            let (src, dst): (std::net::SocketAddr, std::net::SocketAddr) =
                (src.parse().unwrap(), dst.parse().unwrap());
            let bytes = encode_v2(src, dst);
            let (h, n) = parse(&bytes).unwrap().unwrap();
            assert_eq!(n, bytes.len());
            let want = match (src, dst) {
                (std::net::SocketAddr::V6(_), _) | (_, std::net::SocketAddr::V4(_)) => src,
                _ => std::net::SocketAddr::new(
                    match src.ip() {
                        std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
                        ip => ip,
                    },
                    src.port(),
                ),
            };
            assert_eq!(h.source(), Some(want));
        }
    }
}

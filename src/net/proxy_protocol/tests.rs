//! PROXY protocol v1 and v2: parsing, limits and the prefixed stream.

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

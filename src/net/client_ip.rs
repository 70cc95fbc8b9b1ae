//! Who the client is when the proxy sits behind load balancers: the
//! `trusted_proxies` set (CIDR prefixes) and the `X-Forwarded-For` walk.
//! Pure: no I/O, no config types.
//!
//! Nothing is trusted by default. A header (or a PROXY protocol header, see
//! [`super::proxy_protocol`]) only counts when the address that sent it is in
//! the set.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// One address prefix: `10.0.0.0/8`, `192.0.2.7` (= /32), `2001:db8::/32`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cidr {
    /// An IPv4 prefix.
    V4 {
        /// The address, host bits zero.
        net: u32,
        /// Prefix length, 0 to 32.
        len: u8,
    },
    /// An IPv6 prefix.
    V6 {
        /// The address, host bits zero.
        net: u128,
        /// Prefix length, 0 to 128.
        len: u8,
    },
}

impl Cidr {
    /// Parses `ip` or `ip/len`. Host bits after the prefix must be zero, so
    /// a typo such as `10.0.0.1/8` is caught instead of silently widened.
    /// An IPv4-mapped IPv6 prefix (`::ffff:10.0.0.0/104`) is stored as IPv4.
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let (ip_s, len_s) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = ip_s.parse().map_err(|_| {
            format!(
                "invalid address or CIDR {s:?} (write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"
            )
        })?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len_s {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if l.bytes().all(|b| b.is_ascii_digit()) && n <= max => n,
                _ => {
                    return Err(format!(
                        "invalid prefix length in {s:?} (0 to {max} for {})",
                        if max == 32 { "IPv4" } else { "IPv6" }
                    ))
                }
            },
        };
        let c = match ip {
            IpAddr::V4(v4) => Cidr::V4 {
                net: u32::from(v4),
                len,
            },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if len >= 96 => Cidr::V4 {
                    net: u32::from(v4),
                    len: len - 96,
                },
                _ => Cidr::V6 {
                    net: u128::from(v6),
                    len,
                },
            },
        };
        let masked = c.masked();
        if masked != c {
            return Err(format!(
                "{s:?} has bits set after the prefix (write {masked})"
            ));
        }
        Ok(c)
    }

    fn masked(self) -> Cidr {
        match self {
            Cidr::V4 { net, len } => Cidr::V4 {
                net: net & mask32(len),
                len,
            },
            Cidr::V6 { net, len } => Cidr::V6 {
                net: net & mask128(len),
                len,
            },
        }
    }

    /// Whether `ip` is inside. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// matches as the IPv4 address it carries.
    #[inline]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (Cidr::V4 { net, len }, IpAddr::V4(a)) => u32::from(a) & mask32(*len) == *net,
            (Cidr::V6 { net, len }, IpAddr::V6(a)) => u128::from(a) & mask128(*len) == *net,
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Cidr::V4 { net, len } => write!(f, "{}/{len}", Ipv4Addr::from(net)),
            Cidr::V6 { net, len } => write!(f, "{}/{len}", Ipv6Addr::from(net)),
        }
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The `trusted_proxies` set; empty by default (nothing is trusted).
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct CidrSet(Vec<Cidr>);

impl CidrSet {
    /// The set of `cidrs`.
    pub(crate) fn new(cidrs: Vec<Cidr>) -> CidrSet {
        CidrSet(cidrs)
    }

    /// Whether nothing is trusted.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The prefixes, as written.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Cidr> {
        self.0.iter()
    }

    /// Whether `ip` is in one of the prefixes.
    #[inline]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// One `X-Forwarded-For` entry: an IP address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`, `[2001:db8::1]`), as some
/// proxies write it. Anything else (`unknown`, an empty entry, a name) is
/// malformed.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The client address for one request.
///
/// The rule, exactly:
/// 1. If `peer` (the immediate peer) is not in `trusted`, the answer is
///    `peer` and the headers are not looked at. With an empty set (the
///    default) this is the only case.
/// 2. Otherwise every `X-Forwarded-For` field line, in order, is joined
///    into one comma-separated list, which is walked from the right
///    (nearest hop first):
///    - an entry that is not an IP address (optionally with a port) stops
///      the walk: the answer is the last address the walk accepted, i.e.
///      the right-most trusted entry passed so far, or `peer` if none;
///    - an untrusted address is the answer;
///    - a trusted address is passed over, and the walk goes on.
/// 3. If every entry is trusted, the answer is the left-most one. No
///    header at all: the answer is `peer`.
///
/// So the answer is always either an address that a trusted hop vouched
/// for, or a trusted hop itself; a client can never put an arbitrary
/// address in front of a garbled or forged part of the list.
pub(crate) fn resolve(trusted: &CidrSet, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut last = peer;
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return last;
        };
        for entry in line.rsplit(',') {
            match parse_entry(entry) {
                None => return last,
                Some(ip) if !trusted.contains(ip) => return ip,
                Some(ip) => last = ip,
            }
        }
    }
    last
}

/// What the request path knows about the client connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientInfo {
    /// The immediate peer: the TCP socket's address, or the source address
    /// of a PROXY protocol header sent by a trusted load balancer (an L4
    /// balancer is not a hop). `X-Forwarded-For` sent upstream gets this
    /// address appended.
    pub(crate) peer: SocketAddr,
    /// The client as far as trusted proxies say ([`resolve`]): `ip_hash`,
    /// the access log and error logs use it. Equal to `peer`'s address until
    /// [`ClientInfo::for_request`] resolves it.
    pub(crate) client_ip: IpAddr,
    /// The connection is TLS.
    pub(crate) tls: bool,
    /// The subject (RFC 4514) of the client certificate verified at the
    /// TLS handshake (`tls.client_ca`), for `tls.forward_client_cert`.
    pub(crate) cert_subject: Option<http::HeaderValue>,
}

impl ClientInfo {
    /// A connection from `peer`, its client not resolved yet.
    pub(crate) fn new(peer: SocketAddr, tls: bool) -> ClientInfo {
        ClientInfo {
            peer,
            client_ip: peer.ip(),
            tls,
            cert_subject: None,
        }
    }

    /// This connection's info with `client_ip` resolved for one request.
    /// Costs one `is_empty` check when nothing is trusted.
    #[inline]
    pub(crate) fn for_request(self, trusted: &CidrSet, headers: &HeaderMap) -> ClientInfo {
        if trusted.is_empty() {
            return self;
        }
        ClientInfo {
            client_ip: resolve(trusted, self.peer.ip(), headers),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> CidrSet {
        CidrSet::new(list.iter().map(|s| Cidr::parse(s).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(&X_FORWARDED_FOR, l.parse().unwrap());
        }
        h
    }

    #[test]
    fn cidr_v4() {
        let s = set(&["10.0.0.0/8", "192.0.2.7"]);
        assert!(s.contains(ip("10.0.0.0")));
        assert!(s.contains(ip("10.255.255.255")));
        assert!(!s.contains(ip("11.0.0.0")));
        assert!(!s.contains(ip("9.255.255.255")));
        assert!(s.contains(ip("192.0.2.7")));
        assert!(!s.contains(ip("192.0.2.8")));
        assert!(!s.contains(ip("::1")));
        assert!(set(&["0.0.0.0/0"]).contains(ip("203.0.113.9")));
        assert!(!set(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
    }

    #[test]
    fn cidr_v6() {
        let s = set(&["::1", "2001:db8::/32"]);
        assert!(s.contains(ip("::1")));
        assert!(!s.contains(ip("::2")));
        assert!(s.contains(ip("2001:db8:ffff::1")));
        assert!(!s.contains(ip("2001:db9::1")));
        assert!(!s.contains(ip("127.0.0.1")));
        assert!(set(&["::/0"]).contains(ip("2001:db8::1")));
        assert!(set(&["2001:db8::1/128"]).contains(ip("2001:db8::1")));
    }

    #[test]
    fn v4_mapped_v6_matches_as_v4() {
        let s = set(&["10.0.0.0/8"]);
        assert!(s.contains(ip("::ffff:10.1.2.3")));
        assert!(!s.contains(ip("::ffff:11.1.2.3")));
        // A mapped prefix in the config is an IPv4 prefix.
        let m = set(&["::ffff:192.0.2.0/120"]);
        assert_eq!(format!("{m:?}"), "CidrSet([192.0.2.0/24])");
        assert!(m.contains(ip("192.0.2.9")));
        assert!(m.contains(ip("::ffff:192.0.2.9")));
        assert!(!m.contains(ip("192.0.3.9")));
    }

    #[test]
    fn cidr_errors() {
        let e = |s: &str| Cidr::parse(s).unwrap_err();
        assert_eq!(
            e("10.0.0.0/33"),
            r#"invalid prefix length in "10.0.0.0/33" (0 to 32 for IPv4)"#
        );
        assert_eq!(
            e("::/129"),
            r#"invalid prefix length in "::/129" (0 to 128 for IPv6)"#
        );
        assert_eq!(
            e("10.0.0.0/+8"),
            r#"invalid prefix length in "10.0.0.0/+8" (0 to 32 for IPv4)"#
        );
        assert_eq!(
            e("10.0.0.0/"),
            r#"invalid prefix length in "10.0.0.0/" (0 to 32 for IPv4)"#
        );
        assert_eq!(
            e("10.0.0.1/8"),
            r#""10.0.0.1/8" has bits set after the prefix (write 10.0.0.0/8)"#
        );
        assert_eq!(
            e("2001:db8::1/32"),
            r#""2001:db8::1/32" has bits set after the prefix (write 2001:db8::/32)"#
        );
        assert_eq!(
            e("lb.example"),
            r#"invalid address or CIDR "lb.example" (write e.g. 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"#
        );
        assert!(Cidr::parse("").is_err());
        assert!(Cidr::parse("10.0.0.0/8/8").is_err());
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let h = xff(&["198.51.100.1"]);
        assert_eq!(
            resolve(&CidrSet::default(), ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
        let s = set(&["10.0.0.0/8"]);
        assert_eq!(resolve(&s, ip("203.0.113.5"), &h), ip("203.0.113.5"));
        let c = ClientInfo::new("203.0.113.5:1000".parse().unwrap(), false);
        assert_eq!(c.for_request(&s, &h).client_ip, ip("203.0.113.5"));
    }

    #[test]
    fn trusted_peer_walks_from_the_right() {
        let s = set(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // The right-most untrusted entry wins, not the left-most (forgeable) one.
        let h = xff(&["1.1.1.1, 198.51.100.1, 10.0.0.2"]);
        assert_eq!(resolve(&s, peer, &h), ip("198.51.100.1"));
        let c = ClientInfo::new("10.0.0.1:1000".parse().unwrap(), false);
        let r = c.for_request(&s, &h);
        assert_eq!(r.client_ip, ip("198.51.100.1"));
        assert_eq!(r.peer, "10.0.0.1:1000".parse().unwrap());
        // No header: the peer.
        assert_eq!(resolve(&s, peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn all_trusted_takes_the_left_most() {
        let s = set(&["10.0.0.0/8"]);
        let h = xff(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(resolve(&s, ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }

    #[test]
    fn malformed_entry_stops_the_walk() {
        let s = set(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // Garbage right after the peer: the peer.
        assert_eq!(resolve(&s, peer, &xff(&["198.51.100.1, bogus"])), peer);
        // Garbage behind a trusted hop: that hop (the last good address).
        assert_eq!(
            resolve(&s, peer, &xff(&["198.51.100.1, unknown, 10.0.0.9"])),
            ip("10.0.0.9")
        );
        // Garbage left of the client does not matter.
        assert_eq!(
            resolve(&s, peer, &xff(&["junk, 198.51.100.1"])),
            ip("198.51.100.1")
        );
        // An empty entry is malformed.
        assert_eq!(resolve(&s, peer, &xff(&["198.51.100.1,"])), peer);
        // A header value that is not visible ASCII stops the walk too.
        let mut h = HeaderMap::new();
        h.append(
            &X_FORWARDED_FOR,
            http::HeaderValue::from_bytes(b"198.51.100.1, \xff").unwrap(),
        );
        assert_eq!(resolve(&s, peer, &h), peer);
    }

    #[test]
    fn several_lines_are_one_list_in_order() {
        let s = set(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let h = xff(&["198.51.100.7", "198.51.100.1, 10.0.0.5", "10.0.0.4"]);
        assert_eq!(resolve(&s, peer, &h), ip("198.51.100.1"));
        let h = xff(&["198.51.100.7", "10.0.0.5", "10.0.0.4"]);
        assert_eq!(resolve(&s, peer, &h), ip("198.51.100.7"));
    }

    #[test]
    fn entries_with_ports_and_v6() {
        let s = set(&["10.0.0.0/8", "2001:db8::/32"]);
        let peer = ip("10.0.0.1");
        assert_eq!(
            resolve(&s, peer, &xff(&["198.51.100.1:4711"])),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(&s, peer, &xff(&["[2001:db9::1]:4711, 2001:db8::5"])),
            ip("2001:db9::1")
        );
        assert_eq!(
            resolve(&s, peer, &xff(&["[2001:db9::2]"])),
            ip("2001:db9::2")
        );
        // A v4-mapped trusted hop is passed over like its v4 address.
        assert_eq!(
            resolve(&s, peer, &xff(&["198.51.100.3, ::ffff:10.9.9.9"])),
            ip("198.51.100.3")
        );
        // A trusted v6 peer.
        assert_eq!(
            resolve(&s, ip("2001:db8::9"), &xff(&["203.0.113.1"])),
            ip("203.0.113.1")
        );
    }
}

//! Read-your-writes: what a read must see, and where that leaves it.
//!
//! A write's replication position P (from its answer, or the leader's
//! position probed after it was acknowledged, `after_ack`) is remembered
//! for the client's session (`sessions`) and returned as
//! `x-leaderproxy-position`. A later read of that session, or one that
//! carries the header, may only go to a backend whose probed position is at
//! least P; the leader always qualifies. A position from a client is only a
//! lower bound that is checked against the table: it never names a backend.
//! The rule itself is decided in `crate::routing::freshness`; this layer
//! keeps the sessions and runs the after-ack probes.

pub(crate) mod after_ack;
pub(crate) mod sessions;

use std::net::IpAddr;

use crate::config::SessionKey;
use crate::routing::Need;
use http::HeaderMap;
pub use sessions::{Sessions, Written};

/// The header a write's position is returned in, and a read may carry.
pub(crate) static POSITION_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-leaderproxy-position");

// Need is what a read must see, plain data owned by routing (the table
// picks by it); this layer says how a session's writes make one.
impl Need {
    /// What a read needs, from the session's last write and the client's
    /// own `x-leaderproxy-position` (the larger position wins).
    pub(crate) fn of(session: Option<sessions::Entry>, from_client: Option<u64>) -> Need {
        let (pos, until, round) = session.map_or((None, None, None), |e| {
            (e.position, e.leader_until, e.after_round)
        });
        Need::after(pos, from_client, round.is_some(), until)
    }
}

/// The position a client sent in `x-leaderproxy-position`, taken out of
/// the request (it is the proxy's business, not the backend's); `None`
/// when absent or not an integer.
pub(crate) fn take_client_position(headers: &mut HeaderMap) -> Option<u64> {
    let v = headers.remove(&POSITION_HEADER)?;
    v.to_str().ok()?.trim().parse().ok()
}

/// The session a request belongs to: the value of the configured header or
/// cookie, or the client's address. `None` when the request carries none.
pub(crate) fn session_value<'a>(
    key: &'a SessionKey,
    headers: &'a HeaderMap,
    client_ip: &IpAddr,
    buf: &'a mut [u8; 16],
) -> Option<&'a [u8]> {
    match key {
        SessionKey::Header(name) => headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        SessionKey::Cookie(name) => cookie(headers, name),
        SessionKey::ClientIp => {
            let n = match client_ip {
                IpAddr::V4(a) => {
                    buf[..4].copy_from_slice(&a.octets());
                    4
                }
                IpAddr::V6(a) => {
                    buf.copy_from_slice(&a.octets());
                    16
                }
            };
            Some(&buf[..n])
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then_some(&v[1..])
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn session_values_from_header_cookie_and_address() {
        let mut h = HeaderMap::new();
        h.insert("x-session-id", "abc".parse().unwrap());
        h.append(http::header::COOKIE, "a=1; sid=s-42 ;b=2".parse().unwrap());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let mut buf = [0u8; 16];
        let hk = SessionKey::Header(http::HeaderName::from_static("x-session-id"));
        assert_eq!(session_value(&hk, &h, &ip, &mut buf), Some(&b"abc"[..]));
        let ck = SessionKey::Cookie("sid".into());
        assert_eq!(session_value(&ck, &h, &ip, &mut buf), Some(&b"s-42"[..]));
        let other = SessionKey::Cookie("si".into());
        assert_eq!(session_value(&other, &h, &ip, &mut buf), None);
        assert_eq!(
            session_value(&SessionKey::ClientIp, &h, &ip, &mut buf),
            Some(&[10u8, 1, 2, 3][..])
        );
        assert_eq!(session_value(&hk, &HeaderMap::new(), &ip, &mut buf), None);
    }

    #[test]
    fn need_takes_the_larger_position_and_a_live_leader_window() {
        let now = Instant::now();
        assert!(Need::of(None, None).is_none());
        let e = sessions::Entry {
            position: Some(9),
            leader_until: Some(now + std::time::Duration::from_secs(5)),
            after_round: None,
        };
        assert_eq!(
            Need::of(Some(e), Some(7)),
            Need {
                min_position: Some(9),
                leader_only: true
            }
        );
        let expired = sessions::Entry {
            position: None,
            leader_until: Some(now),
            after_round: None,
        };
        assert_eq!(
            Need::of(Some(expired), Some(11)),
            Need {
                min_position: Some(11),
                leader_only: false
            }
        );
        let pending = sessions::Entry {
            after_round: Some(3),
            ..expired
        };
        assert!(Need::of(Some(pending), None).leader_only);
    }

    #[test]
    fn the_client_position_is_taken_out_of_the_request() {
        let mut h = HeaderMap::new();
        assert_eq!(take_client_position(&mut h), None);
        h.insert(&POSITION_HEADER, " 42".parse().unwrap());
        assert_eq!(take_client_position(&mut h), Some(42));
        assert!(h.get(&POSITION_HEADER).is_none());
        h.insert(&POSITION_HEADER, "junk".parse().unwrap());
        assert_eq!(take_client_position(&mut h), None);
        assert!(h.get(&POSITION_HEADER).is_none());
    }
}

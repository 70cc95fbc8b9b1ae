//! Client-IP affinity by weighted rendezvous (highest random weight)
//! hashing: each follower scores `-weight / ln(u)` with `u` a hash of
//! (client IP, follower name) in (0, 1); the highest score wins. When one of
//! N followers leaves, only the clients that were on it move (about 1/N).

use std::net::IpAddr;
use std::sync::Arc;

use super::Pick;
use crate::backend::{mix64, Backend};

pub struct IpHash;

fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix64(u32::from(v4) as u64 ^ 0x4a4a_4a4a_0000_0000),
        IpAddr::V6(v6) => {
            // An IPv4-mapped v6 address hashes like the v4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return ip_key(IpAddr::V4(v4));
            }
            let n = u128::from(v6);
            mix64((n as u64) ^ mix64((n >> 64) as u64))
        }
    }
}

#[inline]
fn score(key: u64, b: &Backend) -> f64 {
    let h = mix64(key ^ b.name_hash);
    // u in (0, 1): top 53 bits, never 0.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    b.weight().max(1) as f64 / -u.ln()
}

impl Pick for IpHash {
    #[inline]
    fn pick(
        &self,
        followers: &[Arc<Backend>],
        client: IpAddr,
        avoid: Option<u64>,
    ) -> Option<usize> {
        let key = ip_key(client);
        let mut best: Option<(usize, f64)> = None;
        for (i, b) in followers.iter().enumerate() {
            if followers.len() > 1 && avoid == Some(b.id) {
                continue;
            }
            let s = score(key, b);
            if best.is_none_or(|(_, bs)| s > bs) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    fn clients(n: u32) -> Vec<IpAddr> {
        (0..n)
            .map(|i| IpAddr::from((0x0a00_0000u32 + i * 7919).to_be_bytes()))
            .collect()
    }

    #[test]
    fn same_client_same_follower() {
        let f = backends(&[1, 1, 1]);
        for c in clients(100) {
            let a = IpHash.pick(&f, c, None);
            assert_eq!(a, IpHash.pick(&f, c, None));
        }
    }

    #[test]
    fn spreads_roughly_evenly_and_by_weight() {
        let f = backends(&[1, 1, 2]);
        let mut counts = [0u32; 3];
        for c in clients(20_000) {
            counts[IpHash.pick(&f, c, None).unwrap()] += 1;
        }
        // Expected 5000 / 5000 / 10000.
        assert!((4500..5500).contains(&counts[0]), "{counts:?}");
        assert!((4500..5500).contains(&counts[1]), "{counts:?}");
        assert!((9300..10700).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn removing_one_of_n_moves_only_its_clients() {
        let n = 5;
        let all = backends(&vec![1; n]);
        let cs = clients(10_000);
        let before: Vec<u64> = cs
            .iter()
            .map(|c| all[IpHash.pick(&all, *c, None).unwrap()].id)
            .collect();
        let gone = all[2].id;
        let rest: Vec<_> = all.iter().filter(|b| b.id != gone).cloned().collect();
        let mut moved = 0;
        for (c, was) in cs.iter().zip(&before) {
            let now = rest[IpHash.pick(&rest, *c, None).unwrap()].id;
            if now != *was {
                assert_eq!(*was, gone, "a client not on the removed follower moved");
                moved += 1;
            }
        }
        // About 1/N of clients move: those that were on the removed one.
        let share = moved as f64 / cs.len() as f64;
        assert!((0.17..0.23).contains(&share), "moved share {share}");
    }

    #[test]
    fn ipv4_mapped_v6_hashes_like_v4() {
        let f = backends(&[1, 1, 1, 1]);
        for c in clients(50) {
            let IpAddr::V4(v4) = c else { unreachable!() };
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(IpHash.pick(&f, c, None), IpHash.pick(&f, mapped, None));
        }
    }
}

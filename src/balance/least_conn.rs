//! Least connections: the follower with the fewest in-flight requests
//! relative to its weight. Ties rotate, so idle followers share the load.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Pick;
use crate::backend::Backend;

#[derive(Default)]
pub struct LeastConn {
    next: AtomicUsize,
}

impl Pick for LeastConn {
    #[inline]
    fn pick(
        &self,
        followers: &[Arc<Backend>],
        _client: IpAddr,
        avoid: Option<u64>,
    ) -> Option<usize> {
        let n = followers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64, u64)> = None; // (index, in_flight, weight)
        for k in 0..n {
            let i = (start + k) % n;
            let b = &followers[i];
            if n > 1 && avoid == Some(b.id) {
                continue;
            }
            let load = b.in_flight() as u64;
            let w = b.weight().max(1) as u64;
            // load/w < best_load/best_w, without division.
            if best.is_none_or(|(_, bl, bw)| load * bw < bl * w) {
                best = Some((i, load, w));
            }
        }
        best.map(|(i, ..)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::InFlight;
    use crate::balance::test_support::backends;

    /// Holds `n` requests in flight on each backend.
    fn load(f: &[Arc<Backend>], n: &[usize]) -> Vec<InFlight> {
        f.iter()
            .zip(n)
            .flat_map(|(b, &k)| (0..k).map(|_| b.begin_request()))
            .collect()
    }

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn picks_fewest_in_flight() {
        let f = backends(&[1, 1, 1]);
        let _held = load(&f, &[3, 1, 2]);
        let p = LeastConn::default();
        for _ in 0..5 {
            assert_eq!(p.pick(&f, ip(), None), Some(1));
        }
        assert_eq!(p.pick(&f, ip(), Some(f[1].id)), Some(2), "avoid skips it");
    }

    #[test]
    fn ties_rotate() {
        let f = backends(&[1, 1, 1]);
        let p = LeastConn::default();
        let picks: Vec<_> = (0..6).map(|_| p.pick(&f, ip(), None).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weight_scales_load() {
        let f = backends(&[1, 4]);
        let _held = load(&f, &[1, 3]);
        let p = LeastConn::default();
        assert_eq!(p.pick(&f, ip(), None), Some(1), "3/4 < 1/1");
    }
}

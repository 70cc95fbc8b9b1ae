//! Smooth weighted round-robin. The interleaved schedule (nginx's smooth
//! algorithm: weights 5,1,1 give a a b a c a a, not a a a a a b c) is computed
//! once per routing table; picking is one atomic increment.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Pick;
use crate::backend::Backend;

pub struct RoundRobin {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl RoundRobin {
    pub(crate) fn new(weights: &[u32]) -> RoundRobin {
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let w: Vec<i64> = weights.iter().map(|w| (*w / g).max(1) as i64).collect();
        let total: i64 = w.iter().sum();
        let mut current = vec![0i64; w.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..w.len() {
                current[i] += w[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best as u32);
        }
        RoundRobin {
            schedule,
            next: AtomicUsize::new(0),
        }
    }
}

impl Pick for RoundRobin {
    #[inline]
    fn pick(
        &self,
        followers: &[Arc<Backend>],
        _client: IpAddr,
        avoid: Option<u64>,
    ) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        if let Some(avoid) = avoid {
            // A retry does not take a turn of its own: it takes the next
            // turn's backend if that is not the one that just failed.
            let at = self.next.load(Ordering::Relaxed);
            return (0..n)
                .map(|k| self.schedule[(at + k) % n] as usize)
                .find(|&i| i < followers.len() && followers[i].id != avoid)
                .or(Some(0));
        }
        let at = self.next.fetch_add(1, Ordering::Relaxed);
        let i = self.schedule[at % n] as usize;
        if i >= followers.len() {
            return None;
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn equal_weights_split_exactly() {
        let f = backends(&[1, 1]);
        let rr = RoundRobin::new(&[1, 1]);
        let mut counts = [0; 2];
        for _ in 0..20 {
            counts[rr.pick(&f, ip(), None).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 10]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let f = backends(&[1, 2]);
        let rr = RoundRobin::new(&[1, 2]);
        let seq: Vec<usize> = (0..6).map(|_| rr.pick(&f, ip(), None).unwrap()).collect();
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 4);
        assert_eq!(
            seq,
            vec![1, 0, 1, 1, 0, 1],
            "smooth: never two light picks in a row"
        );
        let rr = RoundRobin::new(&[5, 1, 1]);
        let f = backends(&[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| rr.pick(&f, ip(), None).unwrap()).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_reduced_by_gcd() {
        let rr = RoundRobin::new(&[200, 400]);
        assert_eq!(rr.schedule.len(), 3);
    }

    #[test]
    fn avoid_moves_to_another() {
        let f = backends(&[1, 1]);
        let rr = RoundRobin::new(&[1, 1]);
        for _ in 0..4 {
            let i = rr.pick(&f, ip(), Some(f[0].id)).unwrap();
            assert_eq!(i, 1);
        }
        let one = backends(&[1]);
        let rr = RoundRobin::new(&[1]);
        assert_eq!(
            rr.pick(&one, ip(), Some(one[0].id)),
            Some(0),
            "no other: same one"
        );
    }
}

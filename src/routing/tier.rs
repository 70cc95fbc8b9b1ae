//! Which of the eligible followers get reads: the read tier.
//!
//! Every eligible follower (healthy, not the leader, not drained, not
//! ejected — decided by the monitor before this runs) has a `Rank`: its
//! `priority` (0 = primary site, higher = standby), then whether it is
//! outside `local_zone`. Reads go to the followers of the best rank that
//! has any: the lowest priority with an eligible follower, and within it
//! the local zone first. The next rank is the spill tier a read retry
//! falls back to. Pure: no clock, no I/O.

/// Where a follower stands for reads; lower is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    /// `backends[].priority`: 0 = primary site.
    pub(crate) priority: u32,
    /// Outside `local_zone` (never true when no local zone is set).
    pub(crate) remote: bool,
}

impl Rank {
    /// The best rank there is: local zone (or none set) on the primary site.
    pub(crate) const HOME: Rank = Rank {
        priority: 0,
        remote: false,
    };

    /// The rank of a follower with this `priority` and `zone` as seen from
    /// a proxy in `local_zone`. Without a local zone, zones do not matter;
    /// a follower without a zone is remote to a proxy that has one.
    pub(crate) fn of(priority: u32, zone: Option<&str>, local_zone: Option<&str>) -> Rank {
        Rank {
            priority,
            remote: local_zone.is_some_and(|l| zone != Some(l)),
        }
    }
}

/// The eligible followers split by rank.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tiers {
    /// The read tier's rank; `None` when no follower is eligible.
    pub(crate) rank: Option<Rank>,
    /// Indices (into the ranks given) of the read tier, in their order.
    pub(crate) read: Vec<usize>,
    /// Indices of the next rank that has any follower: where a read retry
    /// goes when the read tier has no other follower.
    pub(crate) spill: Vec<usize>,
    /// Indices of every other eligible follower (worse ranks), in order.
    pub(crate) rest: Vec<usize>,
}

impl Tiers {
    /// Reads left home: the read tier is a standby site or outside the
    /// local zone. False when no follower is eligible at all.
    pub(crate) fn spilled(&self) -> bool {
        self.rank.is_some_and(|r| r != Rank::HOME)
    }
}

/// Splits the eligible followers, given by rank, into the read tier, the
/// spill tier and the rest. Each keeps the order of `ranks`.
pub(crate) fn tiers(ranks: &[Rank]) -> Tiers {
    let mut distinct: Vec<Rank> = ranks.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let of = |r: Option<&Rank>| -> Vec<usize> {
        r.map_or_else(Vec::new, |r| {
            (0..ranks.len()).filter(|&i| ranks[i] == *r).collect()
        })
    };
    let read = of(distinct.first());
    let spill = of(distinct.get(1));
    let rest = (0..ranks.len())
        .filter(|&i| distinct.len() > 2 && ranks[i] > distinct[1])
        .collect();
    Tiers {
        rank: distinct.first().copied(),
        read,
        spill,
        rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks(v: &[(u32, Option<&str>)], local: Option<&str>) -> Vec<Rank> {
        v.iter().map(|(p, z)| Rank::of(*p, *z, local)).collect()
    }

    #[test]
    fn local_zone_first_then_other_zones() {
        let r = ranks(
            &[(0, Some("a")), (0, Some("b")), (0, Some("a")), (0, None)],
            Some("a"),
        );
        let t = tiers(&r);
        assert_eq!(t.read, vec![0, 2]);
        assert_eq!(t.spill, vec![1, 3]);
        assert!(t.rest.is_empty());
        assert!(!t.spilled());
    }

    #[test]
    fn no_local_follower_spills_to_the_other_zones() {
        let t = tiers(&ranks(&[(0, Some("b")), (0, None)], Some("a")));
        assert_eq!(t.read, vec![0, 1]);
        assert!(t.spill.is_empty());
        assert!(t.spilled());
    }

    #[test]
    fn without_a_local_zone_zones_do_not_matter() {
        let t = tiers(&ranks(&[(0, Some("b")), (0, None), (0, Some("a"))], None));
        assert_eq!(t.read, vec![0, 1, 2]);
        assert!(t.spill.is_empty() && !t.spilled());
    }

    #[test]
    fn priority_beats_zone() {
        // A local standby follower gets nothing while a remote primary one is eligible.
        let r = ranks(
            &[
                (1, Some("a")),
                (0, Some("b")),
                (2, Some("a")),
                (1, Some("b")),
            ],
            Some("a"),
        );
        let t = tiers(&r);
        assert_eq!(
            t.rank,
            Some(Rank {
                priority: 0,
                remote: true
            })
        );
        assert_eq!(t.read, vec![1]);
        assert_eq!(t.spill, vec![0]);
        assert_eq!(t.rest, vec![2, 3]);
        assert!(t.spilled());
    }

    #[test]
    fn standby_site_only_when_no_primary_follower_is_eligible() {
        let t = tiers(&ranks(&[(1, None), (3, None), (1, None)], None));
        assert_eq!(
            t.rank,
            Some(Rank {
                priority: 1,
                remote: false
            })
        );
        assert_eq!(t.read, vec![0, 2]);
        assert_eq!(t.spill, vec![1]);
        assert!(t.spilled());
        // The lowest priority present wins, whatever its number.
        let t = tiers(&ranks(&[(7, None), (5, None)], None));
        assert_eq!((t.read, t.spill), (vec![1], vec![0]));
    }

    #[test]
    fn nothing_eligible_is_no_tier() {
        let t = tiers(&[]);
        assert_eq!(t, Tiers::default());
        assert!(!t.spilled());
    }

    #[test]
    fn every_follower_is_in_exactly_one_tier() {
        // Small exhaustive sweep: 0..=3 followers over 2 priorities x 3 zones.
        let kinds: Vec<(u32, Option<&str>)> = vec![
            (0, Some("a")),
            (0, Some("b")),
            (0, None),
            (1, Some("a")),
            (1, Some("b")),
            (1, None),
        ];
        let mut combos: Vec<Vec<(u32, Option<&str>)>> = vec![vec![]];
        let mut frontier = combos.clone();
        for _ in 0..3 {
            frontier = frontier
                .iter()
                .flat_map(|c| {
                    kinds.iter().map(move |k| {
                        let mut c = c.clone();
                        c.push(*k);
                        c
                    })
                })
                .collect();
            combos.extend(frontier.iter().cloned());
        }
        for c in &combos {
            for local in [None, Some("a")] {
                let r = ranks(c, local);
                let t = tiers(&r);
                let mut all: Vec<usize> = t
                    .read
                    .iter()
                    .chain(&t.spill)
                    .chain(&t.rest)
                    .copied()
                    .collect();
                all.sort_unstable();
                assert_eq!(all, (0..c.len()).collect::<Vec<_>>(), "{c:?} {local:?}");
                // The read tier holds the best rank; nothing better is left out.
                if let Some(best) = r.iter().min() {
                    assert!(t.read.iter().all(|&i| r[i] == *best), "{c:?}");
                    assert!(
                        t.spill.iter().chain(&t.rest).all(|&i| r[i] > *best),
                        "{c:?}"
                    );
                }
            }
        }
    }
}

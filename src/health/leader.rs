//! Who may lead: a pure decision with no I/O and no clock.
//!
//! - [`Claim`]: one backend's leadership claim with hysteresis. A claim is
//!   made by one leader probe that meets `leader.expect`; it is dropped at
//!   once by evidence (the backend answers that it is not the leader, or
//!   refuses the connection, or the request path fenced it), and by
//!   `leader.fall` consecutive failed probes (timeouts, broken answers) —
//!   one slow probe never drops a leader.
//! - [`TermFloor`]: terms only move forward; a claimant whose term is lower
//!   than one already claimed with never leads. Only answers that claim
//!   leadership move the floor: a partitioned follower campaigning with
//!   rising terms (no pre-vote) claims nothing and blocks nobody.
//! - A claim from a probe that started before the backend was last fenced
//!   is dropped ([`crate::routing::fence::stale_claim`], with the rest of
//!   the fencing rule).
//! - [`decide`]: one eligible claimant leads; among several the unique
//!   highest term does (when terms are in use); otherwise nobody does.

use super::probe::{Outcome, ProbeFailure};

/// What one leader probe says about a backend's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// The answer meets `leader.expect`.
    Claims,
    /// A valid answer that does not: the backend says it is not the leader.
    Denies,
    /// The connection was refused: the backend is not there.
    Refused,
    /// No usable answer (timeout, broken connection): maybe just slow.
    Failed,
}

impl Evidence {
    pub(crate) fn of(o: &Outcome) -> Evidence {
        match &o.result {
            Ok(()) => Evidence::Claims,
            Err(ProbeFailure::Unexpected(_)) => Evidence::Denies,
            Err(ProbeFailure::Connect(_)) => Evidence::Refused,
            Err(ProbeFailure::Timeout(_) | ProbeFailure::Broken(_)) => Evidence::Failed,
        }
    }
}

/// One backend's leadership claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claim {
    claiming: bool,
    /// Consecutive failed probes while claiming.
    misses: u32,
}

impl Claim {
    pub(crate) fn is_claiming(&self) -> bool {
        self.claiming
    }

    /// Feeds one leader probe's evidence; `fall` failed probes in a row drop
    /// a claim. Returns true if the claim changed.
    pub(crate) fn observe(&mut self, e: Evidence, fall: u32) -> bool {
        let before = self.claiming;
        match e {
            Evidence::Claims => {
                self.claiming = true;
                self.misses = 0;
            }
            Evidence::Denies | Evidence::Refused => {
                self.claiming = false;
                self.misses = 0;
            }
            Evidence::Failed => {
                if self.claiming {
                    self.misses += 1;
                    if self.misses >= fall.max(1) {
                        self.claiming = false;
                        self.misses = 0;
                    }
                }
            }
        }
        before != self.claiming
    }

    /// The request path saw transport evidence or a not-leader answer: the
    /// claim is dropped until a probe makes it again.
    pub(crate) fn withdraw(&mut self) -> bool {
        let before = self.claiming;
        self.claiming = false;
        self.misses = 0;
        before
    }
}

/// The highest term a backend claimed leadership with so far; terms only
/// move forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TermFloor {
    highest: Option<u64>,
}

impl TermFloor {
    /// Feeds one leader probe answer: only a claim (`Evidence::Claims`)
    /// moves the floor. A follower's term says nothing about who leads: one
    /// cut off from the cluster raises it with every election it starts and
    /// never wins.
    pub(crate) fn see(&mut self, e: Evidence, term: Option<u64>) {
        if e != Evidence::Claims {
            return;
        }
        if let Some(t) = term {
            self.highest = Some(self.highest.map_or(t, |h| h.max(t)));
        }
    }

    #[cfg(test)]
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether a claimant with `term` may lead: its term is not lower than
    /// one already seen. A claimant that reports no term is judged by
    /// [`decide`] (alone it leads; beside others it splits the brain).
    pub(crate) fn allows(&self, term: Option<u64>) -> bool {
        match (self.highest, term) {
            (Some(h), Some(t)) => t >= h,
            _ => true,
        }
    }
}

/// Who leads, decided from the claims of eligible backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Leader(usize),
    None,
    SplitBrain(Vec<usize>),
}

/// Pure leader choice. `claims` holds `(index, term)` of every backend that
/// is eligible (claims leadership, not down, not drained, term not behind).
/// One claimant leads; among several, a unique highest term leads when terms
/// are in use (every claimant reported one); otherwise nobody does.
pub(crate) fn decide(claims: &[(usize, Option<u64>)], use_terms: bool) -> Decision {
    match claims {
        [] => Decision::None,
        [(i, _)] => Decision::Leader(*i),
        many => {
            if use_terms && many.iter().all(|(_, t)| t.is_some()) {
                let max = many.iter().filter_map(|(_, t)| *t).max();
                let top: Vec<usize> = many
                    .iter()
                    .filter(|(_, t)| *t == max)
                    .map(|(i, _)| *i)
                    .collect();
                if let [one] = top[..] {
                    return Decision::Leader(one);
                }
            }
            Decision::SplitBrain(many.iter().map(|(i, _)| *i).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claimant_leads() {
        assert_eq!(decide(&[(2, None)], false), Decision::Leader(2));
        assert_eq!(decide(&[], true), Decision::None);
    }

    #[test]
    fn two_claimants_without_term_route_nothing() {
        assert_eq!(
            decide(&[(0, None), (1, None)], false),
            Decision::SplitBrain(vec![0, 1])
        );
        assert_eq!(
            decide(&[(0, Some(3)), (1, Some(4))], false),
            Decision::SplitBrain(vec![0, 1]),
            "terms are ignored unless configured"
        );
    }

    #[test]
    fn higher_term_wins() {
        assert_eq!(
            decide(&[(0, Some(3)), (1, Some(4))], true),
            Decision::Leader(1)
        );
        assert_eq!(
            decide(&[(0, Some(4)), (1, Some(4))], true),
            Decision::SplitBrain(vec![0, 1]),
            "equal terms: no guess"
        );
        assert_eq!(
            decide(&[(0, Some(4)), (1, None)], true),
            Decision::SplitBrain(vec![0, 1]),
            "a claimant without a term: no guess"
        );
    }

    #[test]
    fn one_slow_probe_does_not_drop_a_claim() {
        let mut c = Claim::default();
        assert!(c.observe(Evidence::Claims, 2));
        assert!(!c.observe(Evidence::Failed, 2), "one miss keeps the claim");
        assert!(c.is_claiming());
        assert!(
            !c.observe(Evidence::Claims, 2),
            "a success resets the streak"
        );
        assert!(!c.observe(Evidence::Failed, 2));
        assert!(c.observe(Evidence::Failed, 2), "fall = 2 misses drop it");
        assert!(!c.is_claiming());
    }

    #[test]
    fn evidence_drops_a_claim_at_once() {
        for e in [Evidence::Denies, Evidence::Refused] {
            let mut c = Claim::default();
            c.observe(Evidence::Claims, 5);
            assert!(c.observe(e, 5), "{e:?}");
            assert!(!c.is_claiming());
        }
        let mut c = Claim::default();
        c.observe(Evidence::Claims, 5);
        assert!(c.withdraw());
        assert!(!c.is_claiming());
        assert!(
            !c.observe(Evidence::Failed, 1),
            "failures never make a claim"
        );
    }

    #[test]
    fn terms_only_move_forward() {
        let mut f = TermFloor::default();
        assert!(f.allows(Some(1)));
        f.see(Evidence::Claims, Some(7));
        f.see(Evidence::Claims, Some(5));
        f.see(Evidence::Claims, None);
        assert_eq!(f.highest(), Some(7));
        assert!(
            !f.allows(Some(6)),
            "a claimant behind the newest term never leads"
        );
        assert!(f.allows(Some(7)));
        assert!(f.allows(Some(8)));
        assert!(f.allows(None));
    }

    #[test]
    fn only_claimants_move_the_floor() {
        let mut f = TermFloor::default();
        f.see(Evidence::Claims, Some(5));
        for e in [Evidence::Denies, Evidence::Refused, Evidence::Failed] {
            f.see(e, Some(9));
        }
        assert_eq!(f.highest(), Some(5), "a campaigning follower moved it");
        assert!(f.allows(Some(5)));
    }
}

//! Rise/fall hysteresis: a pure state machine with no I/O and no clock.
//!
//! The first observation decides the state directly (so a fresh proxy is
//! useful after one probe round); after that a backend needs `rise`
//! consecutive successes to come up and `fall` consecutive failures to go down.

/// Health of one backend as seen by its probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// No probe answered yet.
    Unknown,
    Up,
    Down,
}

/// A change of state returned by [`Counter::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    BecameUp,
    BecameDown,
}

#[derive(Debug, Clone)]
pub(crate) struct Counter {
    rise: u32,
    fall: u32,
    state: Health,
    /// Consecutive results that disagree with `state`.
    streak: u32,
}

impl Counter {
    /// `rise` and `fall` are at least 1 (config validation ensures it).
    pub(crate) fn new(rise: u32, fall: u32) -> Counter {
        Counter {
            rise: rise.max(1),
            fall: fall.max(1),
            state: Health::Unknown,
            streak: 0,
        }
    }

    pub(crate) fn state(&self) -> Health {
        self.state
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state == Health::Up
    }

    /// Changes the thresholds (config reload) and keeps the state.
    pub(crate) fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Feeds one probe result; returns the transition it caused, if any.
    pub(crate) fn observe(&mut self, ok: bool) -> Option<Transition> {
        match (self.state, ok) {
            (Health::Unknown, true) => {
                self.state = Health::Up;
                self.streak = 0;
                Some(Transition::BecameUp)
            }
            (Health::Unknown, false) => {
                self.state = Health::Down;
                self.streak = 0;
                Some(Transition::BecameDown)
            }
            (Health::Up, true) | (Health::Down, false) => {
                self.streak = 0;
                None
            }
            (Health::Up, false) => {
                self.streak += 1;
                (self.streak >= self.fall).then(|| {
                    self.state = Health::Down;
                    self.streak = 0;
                    Transition::BecameDown
                })
            }
            (Health::Down, true) => {
                self.streak += 1;
                (self.streak >= self.rise).then(|| {
                    self.state = Health::Up;
                    self.streak = 0;
                    Transition::BecameUp
                })
            }
        }
    }

    /// Forces the state down at once (a connect error to this backend is
    /// proof enough, no need to wait for `fall` probes).
    pub(crate) fn force_down(&mut self) -> Option<Transition> {
        self.streak = 0;
        (self.state != Health::Down).then(|| {
            self.state = Health::Down;
            Transition::BecameDown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides() {
        let mut c = Counter::new(2, 3);
        assert_eq!(c.state(), Health::Unknown);
        assert_eq!(c.observe(true), Some(Transition::BecameUp));
        let mut c = Counter::new(2, 3);
        assert_eq!(c.observe(false), Some(Transition::BecameDown));
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut c = Counter::new(2, 3);
        c.observe(true);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(true), None, "a success resets the streak");
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(Transition::BecameDown));
        assert!(!c.is_up());
    }

    #[test]
    fn rise_needs_consecutive_successes() {
        let mut c = Counter::new(2, 1);
        c.observe(false);
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(false), None, "a failure resets the streak");
        assert_eq!(c.observe(true), None);
        assert_eq!(c.observe(true), Some(Transition::BecameUp));
        assert_eq!(c.observe(true), None);
    }

    #[test]
    fn force_down() {
        let mut c = Counter::new(1, 5);
        c.observe(true);
        assert_eq!(c.force_down(), Some(Transition::BecameDown));
        assert_eq!(c.force_down(), None);
        assert_eq!(c.observe(true), Some(Transition::BecameUp), "rise 1");
    }
}

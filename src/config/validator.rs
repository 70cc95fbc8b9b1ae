//! The validator's state and its shared checks: every problem is reported
//! through [`Validator::bad`] at the key's line and column, with the
//! preset named when the value came from it.

use std::net::SocketAddr;

use super::{Locator, Problem};

/// Zone names: what Kubernetes topology labels and cloud zones use.
pub(super) fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && z.len() <= 63
        && z.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The preset a file named, for problem locations.
pub(super) struct PresetSource {
    pub(super) name: String,
    /// Where the preset's own document has each key.
    pub(super) loc: Locator,
    /// The `preset:` line of the user's file.
    pub(super) at: Option<(usize, usize)>,
}

pub(super) struct Validator {
    pub(super) file: String,
    pub(super) loc: Locator,
    pub(super) problems: Vec<Problem>,
    pub(super) preset: Option<PresetSource>,
}

impl Validator {
    /// Whether the user's file itself writes `key` (not only a parent of it).
    pub(super) fn user_wrote(&self, key: &str) -> bool {
        self.loc
            .nearest(key)
            .is_some_and(|(len, _)| len == key.len())
    }

    /// Whether the preset in use writes `key`.
    pub(super) fn preset_wrote(&self, key: &str) -> bool {
        self.preset
            .as_ref()
            .and_then(|p| p.loc.nearest(key))
            .is_some_and(|(len, _)| len == key.len())
    }

    /// A problem with `key`, at the line of `key` (or of its nearest parent)
    /// in the user's file. When the preset's document has `key` and the
    /// user's file does not, the value came from the preset: the message
    /// says so, and with nothing of the path in the user's file it points
    /// at the `preset:` line.
    pub(super) fn bad(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        let mut at = self.loc.find(key);
        if let Some(p) = &self.preset {
            let exact = |l: &Locator| l.nearest(key).is_some_and(|(len, _)| len == key.len());
            if exact(&p.loc) && !exact(&self.loc) {
                message = format!("{message} (from preset {})", p.name);
                at = at.or(p.at);
            }
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            at,
            key: key.to_string(),
            message,
        });
    }

    pub(super) fn addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.bad(
                    key,
                    format!(
                        "invalid address {s:?} (write ip:port, e.g. 127.0.0.1:8080 or [::1]:8080)"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn statuses(&mut self, key: &str, s: &[u16]) {
        if s.is_empty() {
            self.bad(key, "the list is empty");
        }
        for (i, code) in s.iter().enumerate() {
            if !(100..=599).contains(code) {
                self.bad(
                    &format!("{key}[{i}]"),
                    format!("{code} is not an HTTP status (100-599)"),
                );
            }
        }
    }
}

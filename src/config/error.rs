//! What a bad config file gets back: every [`Problem`] with its file,
//! line, column and key path, gathered in a [`ConfigError`].

use std::fmt;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `LEADERPROXY_ZONE`, `preset NAME`) the problem is in.
    pub(crate) file: String,
    /// 1-based line and column, where known.
    pub(crate) at: Option<(usize, usize)>,
    /// Key path such as `backends[1].url`; empty for the whole document.
    pub(crate) key: String,
    /// What is wrong, and how to write it instead.
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((l, c)) = self.at {
            write!(f, ":{l}:{c}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A serde_yaml error as a problem at its line and column.
pub(super) fn yaml_error(file: &str, e: &serde_yaml::Error) -> ConfigError {
    let at = e.location().map(|l| (l.line(), l.column()));
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; we print the location up front.
    let msg = match msg.rfind(" at line ") {
        Some(i) if at.is_some() => msg[..i].to_string(),
        _ => msg,
    };
    let (key, message) = split_key(&msg);
    ConfigError(vec![Problem {
        file: file.to_string(),
        at,
        key,
        message,
    }])
}

/// serde_yaml prefixes messages with the key path (`health.interval: ...`).
pub(super) fn split_key(msg: &str) -> (String, String) {
    if let Some((k, rest)) = msg.split_once(": ") {
        if !k.contains(' ') && !k.is_empty() {
            return (k.to_string(), rest.to_string());
        }
    }
    (String::new(), msg.to_string())
}

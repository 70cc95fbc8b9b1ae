//! Who may use the admin API: the bearer token read from `admin_token_file`,
//! and the rule that a non-loopback `admin` address needs that token (or an
//! explicit `admin_insecure: true`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

use super::Validator;

/// The admin API's bearer token. Only its SHA-256 digest is kept: `Debug`
/// cannot print the token, and a comparison takes the same time whatever
/// the presented value's content or length has in common with it.
#[derive(Clone)]
pub(crate) struct AdminToken {
    /// The file it was read from (relative paths resolved against the config file's directory).
    pub(crate) file: PathBuf,
    digest: [u8; 32],
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AdminToken {
    /// A token read from `file` (`token` already trimmed).
    pub(crate) fn new(file: PathBuf, token: &[u8]) -> AdminToken {
        AdminToken {
            file,
            digest: sha256(token),
        }
    }

    /// Whether `presented` is the token, compared in constant time.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        sha256(presented).ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("file", &self.file)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Validator {
    /// Reads the admin token (if configured) and refuses a non-loopback
    /// admin address without one unless `insecure` is set.
    pub(super) fn admin_access(
        &mut self,
        admin: Option<SocketAddr>,
        token_file: Option<PathBuf>,
        insecure: bool,
        base: &Path,
    ) -> Option<AdminToken> {
        // A given but unusable file is reported as such; "set admin_token_file" would mislead.
        let token_given = token_file.is_some();
        let token = token_file.and_then(|f| {
            let file = base.join(f);
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    self.bad(
                        "admin_token_file",
                        format!("cannot read {}: {e}", file.display()),
                    );
                    return None;
                }
            };
            let token = bytes.trim_ascii();
            if token.is_empty() {
                self.bad(
                    "admin_token_file",
                    format!("{} is empty; put the admin token in it", file.display()),
                );
                return None;
            }
            if !token.iter().all(|c| c.is_ascii_graphic()) {
                self.bad(
                    "admin_token_file",
                    format!(
                        "the token in {} must be printable ASCII without spaces (clients send it as \"Authorization: Bearer <token>\")",
                        file.display()
                    ),
                );
                return None;
            }
            Some(AdminToken::new(file, token))
        });
        if let Some(a) = admin {
            if !a.ip().is_loopback() && !token_given && !insecure {
                self.bad(
                    "admin",
                    format!("{a} is not a loopback address; set admin_token_file (recommended) or admin_insecure: true"),
                );
            }
        }
        token
    }
}

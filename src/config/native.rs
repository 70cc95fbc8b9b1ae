//! Native probes: `health.kind`, `leader.kind` and `positions.kind`
//! (`http`, the default, or a database's own protocol at each backend's
//! data address `backends[].tcp`), and the credentials they log in with
//! (`probe_auth`). The password is read from `probe_auth.password_file`
//! at every (re)load; `Debug` never prints it and `check --explain` prints
//! only the file's path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Validator;

/// `health.kind`, `leader.kind`, `positions.kind`: how a backend is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// An HTTP request to the backend's `url` (default).
    #[default]
    Http,
    /// RESP `ROLE` at the data address: leader = `master`; position = the
    /// replication offset ROLE reports.
    Redis,
    /// `pg_is_in_recovery()` at the data address: leader = false; position
    /// = the WAL position (the primary's current LSN, a replica's replayed
    /// LSN) in bytes.
    Postgres,
    /// `read_only` (and `super_read_only` where the server has it) at the
    /// data address: leader = off; position = MariaDB's single-domain
    /// `gtid_current_pos` sequence. Only in builds with the cargo feature
    /// `mysql`.
    Mysql,
}

impl ProbeKind {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Redis => "redis",
            ProbeKind::Postgres => "postgres",
            ProbeKind::Mysql => "mysql",
        }
    }

    /// Whether the probe speaks the database's protocol at `backends[].tcp`.
    pub fn is_native(self) -> bool {
        self != ProbeKind::Http
    }
}

/// A password read from a file; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A password.
    pub fn new(password: impl Into<String>) -> Secret {
        Secret(password.into())
    }

    /// The password itself: for the login only, never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `probe_auth`: how native probes log in. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeAuth {
    /// The user: Redis `AUTH user password` (none: `AUTH password`, the
    /// `default` user); PostgreSQL default `postgres`; MySQL default `root`.
    pub user: Option<String>,
    /// The file the password was read from (absolute, or relative to the
    /// config file's directory); default none (no password).
    pub password_file: Option<PathBuf>,
    /// Its content, without the trailing line break.
    pub password: Option<Secret>,
    /// PostgreSQL database (default `postgres`) or MySQL/MariaDB database
    /// (default none). Not for Redis.
    pub database: Option<String>,
}

/// Default PostgreSQL user and database of a native probe.
pub const DEFAULT_POSTGRES_USER: &str = "postgres";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbeAuth {
    user: Option<String>,
    password_file: Option<PathBuf>,
    database: Option<String>,
}

/// The three probe kinds of a config, for the checks that span them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kinds {
    pub health: ProbeKind,
    pub leader: ProbeKind,
    pub positions: ProbeKind,
}

impl Kinds {
    /// What would speak HTTP to a backend's `url`: HTTP probes (a
    /// position probe only when one is `positions_probed` explicitly, else
    /// it is the leader's), HTTP listeners. Empty: a backend may go
    /// without a URL.
    pub(super) fn http_uses(
        &self,
        positions_probed: bool,
        http_listeners: bool,
    ) -> Vec<&'static str> {
        let mut why = Vec::new();
        if !self.health.is_native() {
            why.push("the health probes are HTTP");
        }
        if !self.leader.is_native() {
            why.push("the leader probes are HTTP");
        }
        if positions_probed && !self.positions.is_native() {
            why.push("the position probes are HTTP");
        }
        if http_listeners {
            why.push("`listen` forwards HTTP requests to it");
        }
        why
    }

    /// The first native kind and the key that chose it.
    pub(super) fn first_native(&self) -> Option<(&'static str, ProbeKind)> {
        [
            ("health.kind", self.health),
            ("leader.kind", self.leader),
            ("positions.kind", self.positions),
        ]
        .into_iter()
        .find(|(_, k)| k.is_native())
    }

    fn any(&self, k: ProbeKind) -> bool {
        self.health == k || self.leader == k || self.positions == k
    }
}

impl Validator {
    /// `probe_auth`, its password read from the file; `kinds` decide which
    /// keys make sense.
    pub(super) fn probe_auth(
        &mut self,
        raw: Option<RawProbeAuth>,
        kinds: Kinds,
        base: &Path,
    ) -> ProbeAuth {
        let Some(raw) = raw else {
            return ProbeAuth::default();
        };
        if kinds.first_native().is_none() {
            self.bad(
                "probe_auth",
                "only native probes log in: set health.kind, leader.kind or positions.kind to redis, postgres or mysql",
            );
        }
        if raw.database.is_some() && !kinds.any(ProbeKind::Postgres) && !kinds.any(ProbeKind::Mysql)
        {
            self.bad(
                "probe_auth.database",
                "only a postgres or mysql probe names a database",
            );
        }
        for (key, v) in [("user", &raw.user), ("database", &raw.database)] {
            if v.as_deref()
                .is_some_and(|s| s.is_empty() || s.contains('\0'))
            {
                self.bad(&format!("probe_auth.{key}"), "must not be empty");
            }
        }
        let password_file = raw.password_file.map(|f| base.join(f));
        let password = password_file
            .as_ref()
            .and_then(|f| self.password(f).map(Secret));
        ProbeAuth {
            user: raw.user,
            password_file,
            password,
            database: raw.database,
        }
    }

    /// The password in `file`: its content without a trailing line break,
    /// not empty. Errors name the file, never its content.
    fn password(&mut self, file: &Path) -> Option<String> {
        let key = "probe_auth.password_file";
        let text = match std::fs::read(file) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => {
                    self.bad(key, format!("{} is not UTF-8 text", file.display()));
                    return None;
                }
            },
            Err(e) => {
                self.bad(key, format!("cannot read {}: {e}", file.display()));
                return None;
            }
        };
        let pw = text.strip_suffix('\n').unwrap_or(&text);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        if pw.is_empty() || pw.contains(['\n', '\0']) {
            self.bad(
                key,
                format!(
                    "{} must hold one non-empty line (the password)",
                    file.display()
                ),
            );
            return None;
        }
        Some(pw.to_string())
    }

    /// `mysql` needs a build with the cargo feature `mysql`.
    pub(super) fn kinds_built(&mut self, kinds: Kinds) {
        if cfg!(feature = "mysql") {
            return;
        }
        for (key, k) in [
            ("health.kind", kinds.health),
            ("leader.kind", kinds.leader),
            ("positions.kind", kinds.positions),
        ] {
            if k == ProbeKind::Mysql {
                self.bad(
                    key,
                    "mysql probes are not in this build: build with `cargo build --features mysql`",
                );
            }
        }
    }

    /// A native kind asks each backend at its data address: every static
    /// backend needs `tcp`, and discovered ones (which have none) are
    /// refused.
    pub(super) fn native_needs_data_addresses(
        &mut self,
        kinds: Kinds,
        backends: &[super::BackendConfig],
        discovers: bool,
    ) {
        let Some((key, kind)) = kinds.first_native() else {
            return;
        };
        for (i, b) in backends.iter().enumerate() {
            if b.tcp.is_none() {
                self.bad(
                    &format!("backends[{i}]"),
                    format!(
                        "{key} {} probes the backend's data address: set backends[{i}].tcp (host:port)",
                        kind.name()
                    ),
                );
            }
        }
        if discovers {
            self.bad(
                "discovery",
                format!(
                    "{key} {} probes each backend's data address, and discovered backends have none: use static backends with `tcp`",
                    kind.name()
                ),
            );
        }
    }
}

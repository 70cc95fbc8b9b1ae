//! `writes`: how long a write waits for a leader, what a refusal by a
//! non-leader looks like (`not_leader`), and what is re-sent.

use std::time::Duration;

use serde::Deserialize;

use super::{Dur, Re, Size, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWrites {
    hold: Option<Dur>,
    max_held: Option<usize>,
    replay_body_limit: Option<Size>,
    not_leader: Option<RawNotLeader>,
    retry_ambiguous: Option<RetryAmbiguous>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotLeader {
    status: Option<Vec<u16>>,
    body: Option<Vec<RawBodyRule>>,
    /// Removed: an unscoped body regex also matched successes. Kept in the
    /// raw form only to explain what to write instead.
    body_regex: Option<serde_yaml::Value>,
    #[serde(default)]
    redirect: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBodyRule {
    status: Vec<u16>,
    regex: Re,
}

/// Upper bound of `writes.replay_body_limit`: one request may not hold more
/// than this in memory for a re-send.
pub(crate) const MAX_REPLAY_BODY_LIMIT: u64 = 64 << 20;

/// How a backend says "I am not the leader" when refusing a write.
///
/// A refusal is re-sent to the leader, so a matcher that also matches a
/// success makes the proxy apply that write twice: body rules are scoped
/// by status and should be anchored to the refusal's exact shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct NotLeader {
    /// Answers with these statuses (never 2xx) are refusals, whatever the body.
    pub(crate) status: Vec<u16>,
    /// Answers whose status is in a rule's list and whose body (at most
    /// 64 KiB, read whole) matches its regex are refusals.
    pub(crate) body: Vec<BodyRule>,
    /// A 3xx whose Location names a configured backend is a leader hint.
    pub(crate) redirect: bool,
}

/// One status-scoped body matcher of [`NotLeader`].
#[derive(Debug, Clone)]
pub(crate) struct BodyRule {
    /// Statuses the rule applies to.
    pub(crate) status: Vec<u16>,
    /// Matched against the body (read whole, at most 64 KiB).
    pub(crate) regex: regex::Regex,
}

impl NotLeader {
    /// Whether no refusal is recognised at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.status.is_empty() && self.body.is_empty() && !self.redirect
    }

    /// Whether an answer with this status needs its body read to be judged.
    pub(crate) fn scans_body(&self, status: u16) -> bool {
        self.body.iter().any(|r| r.status.contains(&status))
    }

    /// Whether a body of an answer with `status` is a refusal.
    pub(crate) fn body_matches(&self, status: u16, body: &[u8]) -> bool {
        let text = String::from_utf8_lossy(body);
        self.body
            .iter()
            .any(|r| r.status.contains(&status) && r.regex.is_match(&text))
    }
}

/// Whether a write that failed after it may have reached the leader is
/// sent again (`writes.retry_ambiguous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RetryAmbiguous {
    /// Never: the client gets a 502/504 and decides (default).
    Never,
    /// PUT and DELETE (idempotent by RFC 9110 §9.2.2) and any request with an
    /// `Idempotency-Key` header are re-sent once to the next leader within `writes.hold`.
    Idempotent,
}

/// `writes`: waiting for a leader, refusals, re-sends.
#[derive(Debug, Clone)]
pub struct WritesConfig {
    /// How long a write waits for a leader; default 5s.
    pub hold: Duration,
    /// Most writes held at once; default 10000. Past it: 503 at once.
    pub max_held: usize,
    /// Write bodies up to this many bytes are kept for a re-send (when a
    /// re-send is possible at all); default 1 MiB, at most 64 MiB.
    pub(crate) replay_body_limit: u64,
    /// How a non-leader refuses a write; default nothing recognised.
    pub(crate) not_leader: NotLeader,
    /// Default `never`.
    pub(crate) retry_ambiguous: RetryAmbiguous,
}

impl Validator {
    pub(super) fn writes(&mut self, raw: Option<RawWrites>) -> WritesConfig {
        let raw = raw.unwrap_or(RawWrites {
            hold: None,
            max_held: None,
            replay_body_limit: None,
            not_leader: None,
            retry_ambiguous: None,
        });
        let not_leader = raw.not_leader.map_or_else(NotLeader::default, |n| {
            if let Some(s) = &n.status {
                self.statuses("writes.not_leader.status", s);
                for (i, code) in s.iter().enumerate() {
                    if (200..300).contains(code) {
                        self.bad(
                            &format!("writes.not_leader.status[{i}]"),
                            format!("{code} is a success status; match the refusal's body instead: body: [{{ status: [{code}], regex: '...' }}]"),
                        );
                    }
                }
            }
            if n.body_regex.is_some() {
                self.bad(
                    "writes.not_leader.body_regex",
                    "an unscoped body regex also matches successes whose body contains it, and such a write would be applied twice; scope it by status and anchor it to the refusal, e.g. body: [{ status: [200], regex: '^\\{\"[^\"]+\":\\[false,\"READONLY ' }]",
                );
            }
            let body = n
                .body
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    self.statuses(&format!("writes.not_leader.body[{i}].status"), &r.status);
                    BodyRule {
                        status: r.status,
                        regex: r.regex.0,
                    }
                })
                .collect();
            NotLeader {
                status: n.status.unwrap_or_default(),
                body,
                redirect: n.redirect,
            }
        });
        let max_held = raw.max_held.unwrap_or(10_000);
        let replay_body_limit = raw.replay_body_limit.map_or(1 << 20, |s| s.0);
        if replay_body_limit > MAX_REPLAY_BODY_LIMIT {
            self.bad(
                "writes.replay_body_limit",
                format!("{replay_body_limit} bytes is more than the most allowed, 64MiB"),
            );
        }
        WritesConfig {
            hold: raw.hold.map_or(Duration::from_secs(5), |d| d.0),
            max_held,
            replay_body_limit,
            not_leader,
            retry_ambiguous: raw.retry_ambiguous.unwrap_or(RetryAmbiguous::Never),
        }
    }
}

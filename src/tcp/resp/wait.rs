//! `tcp[].resp.wait_replicas` (pure): a write is answered only once that
//! many replicas acknowledged it. The listener sends Redis's own `WAIT
//! <replicas> <ms>` right after a job's writes on the same connection (it
//! covers every write sent before it there), takes its reply off the job's
//! replies, and, when fewer replicas acknowledged in time, turns each
//! write's success into [`Unreplicated`]'s error: the write is applied on
//! the primary but a failover may lose it, and the client must not count
//! on it (nor blindly send it again).

use bytes::{Bytes, BytesMut};

use crate::resp::parse::{reply_len, Limits, Progress};

/// The `WAIT`s sent after the writes of a job, and what their answers
/// must be.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    /// For 1..=`wait_replicas` replicas: `WAIT <n> <timeout ms>` in RESP,
    /// and the error that replaces a write's success when fewer acknowledged.
    per: Vec<(Bytes, Bytes)>,
}

impl Wait {
    /// `None` when `replicas` is 0 (off).
    pub(crate) fn new(replicas: u32, timeout: std::time::Duration) -> Option<Wait> {
        if replicas == 0 {
            return None;
        }
        let ms = timeout.as_millis().max(1).to_string();
        let per = (1..=replicas)
            .map(|n| {
                let n = n.to_string();
                let command = format!(
                    "*3\r\n$4\r\nWAIT\r\n${}\r\n{n}\r\n${}\r\n{ms}\r\n",
                    n.len(),
                    ms.len()
                );
                let unreplicated = format!(
                    "-UNREPLICATED leaderproxy: applied on the primary, but fewer than {n} replicas acknowledged it within {ms}ms (tcp[].resp.wait_replicas); a failover may lose it\r\n"
                );
                (Bytes::from(command), Bytes::from(unreplicated))
            })
            .collect();
        Some(Wait { per })
    }

    /// How many replicas a write to a primary with `attached` replicas
    /// (its last `ROLE`; `None`: unknown) waits for: `wait_replicas`, or
    /// all it has when fewer are attached (0: a primary alone, just
    /// promoted, answers at once, as Redis itself does).
    pub(super) fn want(&self, attached: Option<u32>) -> u32 {
        let max = self.per.len() as u32;
        attached.map_or(max, |a| a.min(max))
    }

    /// The `WAIT` for `n` (1..=`wait_replicas`) replicas.
    pub(super) fn command(&self, n: u32) -> Bytes {
        self.per[n as usize - 1].0.clone()
    }

    /// Takes `WAIT`'s reply (the last one) off `replies`: the rest, and
    /// whether enough replicas acknowledged (an error reply or anything
    /// but an integer counts as none).
    pub(super) fn split(&self, replies: &Bytes, n: u32) -> (Bytes, bool) {
        // Every reply ends with CRLF and WAIT's (an integer or an error
        // line) holds no other LF: the previous reply ends at the last LF
        // before its final CRLF.
        let body = replies.len().saturating_sub(2);
        let start = replies[..body]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let last = &replies[start..body];
        let acked = last
            .strip_prefix(b":")
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok())
            .is_some_and(|acked| acked >= u64::from(n));
        (replies.slice(..start), acked)
    }

    /// `replies` (one per entry of `writes`, in order) with each write's
    /// reply that is not an error replaced by the unreplicated error, and
    /// how many were.
    pub(super) fn unreplicated(
        &self,
        replies: &Bytes,
        n: u32,
        writes: impl Iterator<Item = bool>,
    ) -> (Bytes, u64) {
        self.replace(replies, n, writes, |r| r.first() != Some(&b'-'))
    }

    /// As [`Wait::unreplicated`], for the marked `EXEC` replies that are
    /// an array (the transaction ran; not its nil after a `WATCH`
    /// conflict, nor an error).
    pub(super) fn unreplicated_exec(
        &self,
        replies: &Bytes,
        n: u32,
        marked: impl Iterator<Item = bool>,
    ) -> (Bytes, u64) {
        self.replace(replies, n, marked, |r| {
            r.first() == Some(&b'*') && !r.starts_with(b"*-")
        })
    }

    fn replace(
        &self,
        replies: &Bytes,
        n: u32,
        writes: impl Iterator<Item = bool>,
        applied: impl Fn(&[u8]) -> bool,
    ) -> (Bytes, u64) {
        let lim = Limits::default();
        let error = &self.per[n as usize - 1].1;
        let mut out = BytesMut::with_capacity(replies.len());
        let (mut at, mut replaced) = (0, 0);
        for write in writes {
            let len = match reply_len(&replies[at..], &lim) {
                Ok(Progress::Complete(len)) => len,
                _ => replies.len() - at,
            };
            let one = &replies[at..at + len];
            at += len;
            if write && applied(one) {
                out.extend_from_slice(error);
                replaced += 1;
            } else {
                out.extend_from_slice(one);
            }
        }
        out.extend_from_slice(&replies[at..]);
        (out.freeze(), replaced)
    }

    #[cfg(test)]
    fn error(&self) -> Bytes {
        self.per[0].1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn w() -> Wait {
        Wait::new(1, Duration::from_millis(250)).unwrap()
    }

    #[test]
    fn off_at_zero_and_a_wait_command_in_resp() {
        assert!(Wait::new(0, Duration::from_secs(1)).is_none());
        assert_eq!(
            &w().command(1)[..],
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$3\r\n250\r\n"
        );
        let two = Wait::new(2, Duration::from_secs(1)).unwrap();
        assert_eq!(
            &two.command(2)[..],
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$4\r\n1000\r\n"
        );
    }

    #[test]
    fn a_primary_with_fewer_replicas_attached_waits_for_those_it_has() {
        let two = Wait::new(2, Duration::from_secs(1)).unwrap();
        assert_eq!(two.want(None), 2, "unknown: as configured");
        assert_eq!(two.want(Some(5)), 2);
        assert_eq!(two.want(Some(1)), 1);
        assert_eq!(two.want(Some(0)), 0, "alone: no WAIT");
    }

    #[test]
    fn the_wait_reply_is_taken_off_the_end() {
        let r = Bytes::from_static(b"+OK\r\n$5\r\na\nb:1\r\n:1\r\n");
        assert_eq!(
            w().split(&r, 1),
            (Bytes::from_static(b"+OK\r\n$5\r\na\nb:1\r\n"), true)
        );
        let r = Bytes::from_static(b"+OK\r\n:0\r\n");
        assert_eq!(w().split(&r, 1), (Bytes::from_static(b"+OK\r\n"), false));
        let r = Bytes::from_static(b":3\r\n-ERR WAIT cannot be used with replica instances\r\n");
        assert_eq!(w().split(&r, 1), (Bytes::from_static(b":3\r\n"), false));
        let r = Bytes::from_static(b":2\r\n");
        assert_eq!(w().split(&r, 1), (Bytes::new(), true));
    }

    #[test]
    fn only_successful_writes_become_the_error() {
        let r = Bytes::from_static(b"+OK\r\n$1\r\nx\r\n-READONLY no\r\n:5\r\n");
        let (got, n) = w().unreplicated(&r, 1, [true, false, true, true].into_iter());
        assert_eq!(n, 2);
        let e = std::str::from_utf8(&w().error()).unwrap().to_string();
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            format!("{e}$1\r\nx\r\n-READONLY no\r\n{e}")
        );
        assert!(e.starts_with("-UNREPLICATED ") && e.ends_with("may lose it\r\n"));
        // A transaction: only EXEC's array counts, not its nil (WATCH) or error.
        let r = Bytes::from_static(b"+OK\r\n+QUEUED\r\n*1\r\n:1\r\n");
        let (got, n) = w().unreplicated_exec(&r, 1, [false, false, true].into_iter());
        assert_eq!(
            (std::str::from_utf8(&got).unwrap(), n),
            (format!("+OK\r\n+QUEUED\r\n{e}").as_str(), 1)
        );
        let r = Bytes::from_static(b"*-1\r\n");
        assert_eq!(
            w().unreplicated_exec(&r, 1, [true].into_iter()),
            (r.clone(), 0)
        );
    }
}

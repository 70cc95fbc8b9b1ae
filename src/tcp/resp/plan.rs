//! What a RESP listener does with one command, and with one reply: pure
//! decisions, no I/O.
//!
//! - [`step`]: where a command goes (a replica, the primary, the client's
//!   own connection to the primary, the proxy itself), from its
//!   [`Class`] and its arguments.
//! - [`Pinned`]: how long a client stays on its own connection to the
//!   primary (a transaction, `WATCH`).
//! - [`not_applied`]: an error reply that says the command was refused
//!   by a node that cannot take it now (so it may be sent again).
//! - [`idempotent`]: a write whose second application changes nothing.

use crate::resp::command::Class;

/// What the listener does with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A replica may answer it (the primary when none qualifies).
    Read,
    /// The primary answers it, on a shared connection.
    Write,
    /// `AUTH` or `HELLO`: the client's login; replayed first on every
    /// upstream connection the client's commands use from now on.
    Login,
    /// Starts a transaction (`MULTI`, `WATCH`): the client moves to its own
    /// connection to the primary until the transaction ends ([`Pinned`]).
    Transaction,
    /// Waits for data (`BLPOP`, `XREAD … BLOCK`, …): sent on the client's
    /// own connection to the primary, so no other client waits behind it.
    Blocking,
    /// Turns the connection into something else than one reply per command
    /// (`SUBSCRIBE`, `MONITOR`, `CLIENT REPLY`, `CLIENT TRACKING`,
    /// replication, `SELECT` of another database): from here on the
    /// client's bytes go to the primary as they are, both ways.
    Tunnel,
    /// Answered by the proxy: the reply given.
    Local(&'static [u8]),
    /// `RESET`: the login is forgotten; answered by the proxy.
    Reset,
    /// `QUIT`: `+OK`, then the connection is closed.
    Quit,
}

/// Where command `args` (its name first) goes, given its class.
pub(crate) fn step(class: Class, args: &[&[u8]]) -> Step {
    let name = |n: &[u8]| args.first().is_some_and(|a| a.eq_ignore_ascii_case(n));
    let arg1 = |n: &[u8]| args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(n));
    match class {
        Class::Read => Step::Read,
        Class::Write if name(b"quit") => Step::Quit,
        // Replication streams and the old cluster switches are sessions, not commands.
        Class::Write if name(b"sync") || name(b"psync") || name(b"replconf") => Step::Tunnel,
        Class::Write => Step::Write,
        Class::Transaction if name(b"multi") || name(b"watch") => Step::Transaction,
        // EXEC, DISCARD, UNWATCH without a transaction: the primary answers
        // as Redis does (an error, or `+OK` for UNWATCH).
        Class::Transaction => Step::Write,
        // WAIT counts the replicas that have this connection's writes: the
        // shared connection the client's writes went over.
        Class::Blocking if name(b"wait") || name(b"waitaof") => Step::Write,
        Class::Blocking => Step::Blocking,
        Class::Stream => Step::Tunnel,
        Class::Connection if name(b"auth") || name(b"hello") => Step::Login,
        Class::Connection if name(b"reset") => Step::Reset,
        Class::Connection if name(b"select") => match args.get(1) {
            Some(db) if *db == b"0" => Step::Local(b"+OK\r\n"),
            _ => Step::Tunnel,
        },
        // A name and library details only label the connection: a shared
        // one keeps its own; the client is told OK.
        Class::Connection if name(b"client") && (arg1(b"setname") || arg1(b"setinfo")) => {
            Step::Local(b"+OK\r\n")
        }
        Class::Connection if name(b"readonly") || name(b"readwrite") => Step::Write,
        Class::Connection => Step::Tunnel,
    }
}

/// A client on its own connection to the primary: in a transaction
/// (`MULTI` … `EXEC`/`DISCARD`) and/or watching keys (`WATCH` …
/// `EXEC`/`DISCARD`/`UNWATCH`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pinned {
    multi: bool,
    watching: bool,
}

impl Pinned {
    /// Notes command `args` sent on the pinned connection.
    pub(crate) fn sent(&mut self, args: &[&[u8]]) {
        let Some(name) = args.first() else { return };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if is(b"multi") {
            self.multi = true;
        } else if is(b"watch") && !self.multi {
            self.watching = true;
        } else if is(b"exec") || is(b"discard") || is(b"reset") {
            self.multi = false;
            self.watching = false;
        } else if is(b"unwatch") && !self.multi {
            self.watching = false;
        }
    }

    /// Whether the transaction state is over: the client may share again.
    pub(crate) fn over(&self) -> bool {
        !self.multi && !self.watching
    }
}

/// Why a node refused a command it was not applied by, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `-READONLY`: a replica (a demoted primary) refused a write.
    ReadOnly,
    /// `-MASTERDOWN`: a replica without its primary
    /// (`replica-serve-stale-data no`).
    MasterDown,
    /// `-LOADING`: the node is loading its dataset.
    Loading,
}

/// Whether `reply` (one whole reply) is an error that says the command was
/// not applied because of the node's state, not the command's.
pub(crate) fn not_applied(reply: &[u8]) -> Option<Refused> {
    if reply.first() != Some(&b'-') {
        return None;
    }
    let code = &reply[1..];
    if code.starts_with(b"READONLY ") || code.starts_with(b"READONLY\r") {
        Some(Refused::ReadOnly)
    } else if code.starts_with(b"MASTERDOWN ") {
        Some(Refused::MasterDown)
    } else if code.starts_with(b"LOADING ") {
        Some(Refused::Loading)
    } else {
        None
    }
}

/// Whether a buffer of replies may hold a [`not_applied`] error (a fast,
/// conservative test before the replies are walked one by one).
pub(crate) fn may_hold_refusal(replies: &[u8]) -> bool {
    replies.first() == Some(&b'-')
        || replies
            .windows(3)
            .any(|w| w[0] == b'\n' && w[1] == b'-' && matches!(w[2], b'R' | b'M' | b'L'))
}

/// Writes whose second application leaves the data as the first did
/// (`writes.retry_ambiguous: idempotent` may send them again).
const IDEMPOTENT: &[&str] = &[
    "set",
    "mset",
    "del",
    "unlink",
    "hset",
    "hmset",
    "hdel",
    "sadd",
    "srem",
    "zadd",
    "zrem",
    "pfadd",
    "expireat",
    "pexpireat",
    "persist",
    "lset",
    "setrange",
    "hsetnx",
    "msetnx",
    "geoadd",
    "setbit",
];

/// Whether write `args` is idempotent ([`IDEMPOTENT`], except the forms
/// that count or answer with the old value: `SET … GET`, `ZADD … INCR`).
pub(crate) fn idempotent(args: &[&[u8]]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if !IDEMPOTENT
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
    {
        return false;
    }
    let has = |w: &[u8]| args.iter().skip(1).any(|a| a.eq_ignore_ascii_case(w));
    if name.eq_ignore_ascii_case(b"set") && has(b"get") {
        return false;
    }
    if name.eq_ignore_ascii_case(b"zadd") && has(b"incr") {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::command::Table;

    fn s(c: &'static str) -> Vec<&'static [u8]> {
        c.split(' ').map(str::as_bytes).collect()
    }

    fn a(c: &'static str) -> Vec<&'static [u8]> {
        s(c)
    }

    fn of(cmd: &str) -> Step {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        step(Table::builtin().classify(&args), &args)
    }

    #[test]
    fn each_command_goes_where_its_class_and_arguments_say() {
        assert_eq!(of("GET k"), Step::Read);
        assert_eq!(of("SET k v"), Step::Write);
        assert_eq!(of("FROBNICATE"), Step::Write, "unknown: the primary");
        assert_eq!(of("MULTI"), Step::Transaction);
        assert_eq!(of("WATCH k"), Step::Transaction);
        assert_eq!(
            of("EXEC"),
            Step::Write,
            "without MULTI: the primary's error"
        );
        assert_eq!(of("BLPOP q 1"), Step::Blocking);
        assert_eq!(of("XREAD BLOCK 10 STREAMS s $"), Step::Blocking);
        assert_eq!(of("WAIT 1 0"), Step::Write, "the writes' own connection");
        assert_eq!(of("SUBSCRIBE ch"), Step::Tunnel);
        assert_eq!(of("MONITOR"), Step::Tunnel);
        assert_eq!(of("PSYNC ? -1"), Step::Tunnel);
        assert_eq!(of("CLIENT TRACKING on"), Step::Tunnel);
        assert_eq!(of("CLIENT REPLY OFF"), Step::Tunnel);
        assert_eq!(of("CLIENT SETNAME me"), Step::Local(b"+OK\r\n"));
        assert_eq!(of("client setinfo lib-name x"), Step::Local(b"+OK\r\n"));
        assert_eq!(of("CLIENT LIST"), Step::Write);
        assert_eq!(of("SELECT 0"), Step::Local(b"+OK\r\n"));
        assert_eq!(of("SELECT 3"), Step::Tunnel);
        assert_eq!(of("AUTH pw"), Step::Login);
        assert_eq!(of("HELLO 3"), Step::Login);
        assert_eq!(of("RESET"), Step::Reset);
        assert_eq!(of("QUIT"), Step::Quit);
    }

    #[test]
    fn a_transaction_pins_until_exec_discard_or_unwatch() {
        let mut p = Pinned::default();
        p.sent(&s("WATCH k"));
        assert!(!p.over());
        p.sent(&s("GET k"));
        p.sent(&s("MULTI"));
        p.sent(&s("UNWATCH"));
        assert!(!p.over(), "UNWATCH inside MULTI is queued");
        p.sent(&s("EXEC"));
        assert!(p.over());
        p.sent(&s("WATCH k"));
        p.sent(&s("UNWATCH"));
        assert!(p.over());
        p.sent(&s("MULTI"));
        p.sent(&s("DISCARD"));
        assert!(p.over());
    }

    #[test]
    fn only_refusals_by_the_nodes_state_may_be_sent_again() {
        assert_eq!(
            not_applied(b"-READONLY You can't write against a read only replica.\r\n"),
            Some(Refused::ReadOnly)
        );
        assert_eq!(
            not_applied(b"-MASTERDOWN Link with MASTER is down\r\n"),
            Some(Refused::MasterDown)
        );
        assert_eq!(
            not_applied(b"-LOADING Redis is loading the dataset in memory\r\n"),
            Some(Refused::Loading)
        );
        assert_eq!(not_applied(b"-WRONGTYPE Operation against a key\r\n"), None);
        assert_eq!(not_applied(b"+READONLY\r\n"), None);
        assert!(may_hold_refusal(b"+OK\r\n-READONLY x\r\n"));
        assert!(!may_hold_refusal(b"+OK\r\n:1\r\n$1\r\n-\r\n"));
    }

    #[test]
    fn idempotent_writes_exclude_counting_forms() {
        assert!(idempotent(&a("SET k v")));
        assert!(idempotent(&a("del k")));
        assert!(!idempotent(&a("SET k v GET")));
        assert!(!idempotent(&a("INCR k")));
        assert!(!idempotent(&a("RPUSH l x")));
        assert!(!idempotent(&a("ZADD z INCR 1 m")));
        assert!(!idempotent(&[]));
    }
}

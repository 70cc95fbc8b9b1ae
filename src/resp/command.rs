//! Which node a Redis command may go to: its class, from the primary's
//! `COMMAND` answer (the flags `readonly`, `write`, `pubsub`, `blocking`,
//! `loading`…) or, until that is read, a built-in table; then refined by
//! its arguments (`XREAD … BLOCK`, `CLIENT` subcommands, `SELECT`).
//!
//! An unknown command is a write: it goes to the primary, which either
//! knows it or answers the error itself.

use std::collections::HashMap;

use super::parse::{reply_len, Limits, Progress, RespError};

/// What a command is, for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Reads data only: a replica may answer it.
    Read,
    /// Changes data, or is not known to only read: the primary.
    Write,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`: pins the client to
    /// the primary until the transaction ends.
    Transaction,
    /// Waits for data (`BLPOP`, `XREAD … BLOCK`, `WAIT`, …): the primary,
    /// on a connection of the client's own for as long as it waits.
    Blocking,
    /// `SUBSCRIBE` and friends, `MONITOR`: the connection becomes a stream
    /// from the primary.
    Stream,
    /// Sets state of the client's connection (`AUTH`, `HELLO`, `SELECT`,
    /// `CLIENT SETNAME`, …): replayed on every upstream connection the
    /// client uses.
    Connection,
}

/// Command name (lower case) -> class.
#[derive(Debug, Clone)]
pub struct Table {
    classes: HashMap<Vec<u8>, Class>,
}

/// Read-only commands of Redis 7 (`COMMAND` flags `readonly`), for the
/// built-in table; every command not listed and not below is a write.
const READ: &[&str] = &[
    "get",
    "mget",
    "getrange",
    "strlen",
    "substr",
    "exists",
    "type",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "dbsize",
    "randomkey",
    "keys",
    "scan",
    "dump",
    "object",
    "touch",
    "lcs",
    "hget",
    "hmget",
    "hgetall",
    "hkeys",
    "hvals",
    "hlen",
    "hstrlen",
    "hexists",
    "hscan",
    "hrandfield",
    "lrange",
    "lindex",
    "llen",
    "lpos",
    "scard",
    "smembers",
    "sismember",
    "smismember",
    "srandmember",
    "sscan",
    "sinter",
    "sintercard",
    "sunion",
    "sdiff",
    "zcard",
    "zcount",
    "zlexcount",
    "zrange",
    "zrangebylex",
    "zrevrangebylex",
    "zrangebyscore",
    "zrevrangebyscore",
    "zrank",
    "zrevrank",
    "zrevrange",
    "zscore",
    "zmscore",
    "zscan",
    "zrandmember",
    "zinter",
    "zintercard",
    "zunion",
    "zdiff",
    "xrange",
    "xrevrange",
    "xlen",
    "xinfo",
    "xpending",
    "getbit",
    "bitcount",
    "bitpos",
    "bitfield_ro",
    "pfcount",
    "geodist",
    "geohash",
    "geopos",
    "georadius_ro",
    "georadiusbymember_ro",
    "geosearch",
    "sort_ro",
    "memory",
    "echo",
    "ping",
    "time",
    "lastsave",
    "info",
    "command",
    "type",
    "evalsha_ro",
    "eval_ro",
    "fcall_ro",
    "xread",
];

/// Commands whose class is not read or write.
const OTHER: &[(&str, Class)] = &[
    ("multi", Class::Transaction),
    ("exec", Class::Transaction),
    ("discard", Class::Transaction),
    ("watch", Class::Transaction),
    ("unwatch", Class::Transaction),
    ("blpop", Class::Blocking),
    ("brpop", Class::Blocking),
    ("brpoplpush", Class::Blocking),
    ("blmove", Class::Blocking),
    ("blmpop", Class::Blocking),
    ("bzpopmin", Class::Blocking),
    ("bzpopmax", Class::Blocking),
    ("bzmpop", Class::Blocking),
    ("wait", Class::Blocking),
    ("waitaof", Class::Blocking),
    ("subscribe", Class::Stream),
    ("psubscribe", Class::Stream),
    ("ssubscribe", Class::Stream),
    ("monitor", Class::Stream),
    ("auth", Class::Connection),
    ("hello", Class::Connection),
    ("select", Class::Connection),
    ("client", Class::Connection),
    ("readonly", Class::Connection),
    ("readwrite", Class::Connection),
    ("reset", Class::Connection),
];

impl Table {
    /// The built-in table (Redis 7's read-only commands; the rest writes).
    pub fn builtin() -> Table {
        let mut classes: HashMap<Vec<u8>, Class> = READ
            .iter()
            .map(|c| (c.as_bytes().to_vec(), Class::Read))
            .collect();
        classes.extend(OTHER.iter().map(|(c, k)| (c.as_bytes().to_vec(), *k)));
        Table { classes }
    }

    /// The table from a primary's answer to `COMMAND` (an array with one
    /// entry per command: name, arity, flags, …): `readonly` without
    /// `write` is a read, `pubsub` a stream, `blocking` blocking; the
    /// built-in classes of transactions and connection state are kept.
    pub fn from_command_reply(reply: &[u8]) -> Result<Table, RespError> {
        let lim = Limits::default();
        let mut classes = HashMap::new();
        let mut r = Reader { buf: reply, at: 0 };
        let n = r.aggregate()?;
        for _ in 0..n {
            let fields = r.aggregate()?;
            let name = r.string()?.to_ascii_lowercase();
            let mut flags: Vec<Vec<u8>> = Vec::new();
            for i in 1..fields {
                if i == 2 {
                    let nf = r.aggregate()?;
                    for _ in 0..nf {
                        flags.push(r.string()?.to_ascii_lowercase());
                    }
                } else {
                    r.skip(&lim)?;
                }
            }
            let has = |f: &str| flags.iter().any(|x| x == f.as_bytes());
            let class = if has("pubsub") && name.ends_with(b"subscribe") {
                Class::Stream
            } else if has("blocking") {
                Class::Blocking
            } else if has("readonly") && !has("write") {
                Class::Read
            } else if !has("write") && READ.iter().any(|r| r.as_bytes() == name.as_slice()) {
                // INFO, PING, ECHO, TIME, … carry no `readonly` flag, yet
                // change nothing: a replica answers them as well.
                Class::Read
            } else {
                Class::Write
            };
            classes.insert(name, class);
        }
        // Transactions and connection state are the proxy's business, whatever the flags.
        classes.extend(
            OTHER
                .iter()
                .filter(|(_, k)| matches!(k, Class::Transaction | Class::Connection))
                .map(|(c, k)| (c.as_bytes().to_vec(), *k)),
        );
        Ok(Table { classes })
    }

    /// The class of the command `args` (its name first).
    pub fn classify(&self, args: &[&[u8]]) -> Class {
        let Some(name) = args.first() else {
            return Class::Write;
        };
        // Lower-cased on the stack: command names are short.
        let mut buf = [0u8; 32];
        let lower: &[u8] = if name.len() <= buf.len() {
            let b = &mut buf[..name.len()];
            b.copy_from_slice(name);
            b.make_ascii_lowercase();
            b
        } else {
            return Class::Write;
        };
        let class = self.classes.get(lower).copied().unwrap_or(Class::Write);
        let has_block = || {
            args.iter()
                .skip(1)
                .any(|a| a.eq_ignore_ascii_case(b"block"))
        };
        match lower {
            b"xread" if has_block() => Class::Blocking,
            // XREADGROUP moves entries into the pending list: a write.
            b"xreadgroup" if has_block() => Class::Blocking,
            b"xreadgroup" => Class::Write,
            // Only a few CLIENT subcommands set connection state; the rest
            // (LIST, KILL, PAUSE, …) go to the primary as commands.
            b"client" => match args.get(1).map(|s| s.to_ascii_lowercase()) {
                Some(s)
                    if matches!(
                        s.as_slice(),
                        b"setname"
                            | b"setinfo"
                            | b"reply"
                            | b"tracking"
                            | b"no-evict"
                            | b"no-touch"
                    ) =>
                {
                    Class::Connection
                }
                _ => Class::Write,
            },
            _ => class,
        }
    }
}

/// Walks a RESP reply for [`Table::from_command_reply`].
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn line(&mut self) -> Result<(u8, &'a [u8]), RespError> {
        let rest = &self.buf[self.at..];
        let t = *rest.first().ok_or(RespError::MultibulkLength)?;
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(RespError::LineTooLong)?;
        self.at += end + 2;
        Ok((t, &rest[1..end]))
    }

    fn len(line: &[u8]) -> Result<i64, RespError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(RespError::MultibulkLength)
    }

    /// An array, set or push: its number of elements.
    fn aggregate(&mut self) -> Result<u64, RespError> {
        match self.line()? {
            (b'*' | b'~' | b'>', l) => Ok(Self::len(l)?.max(0) as u64),
            (t, _) => Err(RespError::UnknownType(t)),
        }
    }

    /// A simple or bulk string.
    fn string(&mut self) -> Result<&'a [u8], RespError> {
        match self.line()? {
            (b'+', l) => Ok(l),
            (b'$', l) => {
                let n = Self::len(l)?;
                let start = self.at;
                let stop = start + n.max(0) as usize;
                if self.buf.len() < stop + 2 {
                    return Err(RespError::BulkLength);
                }
                self.at = stop + 2;
                Ok(&self.buf[start..stop])
            }
            (t, _) => Err(RespError::UnknownType(t)),
        }
    }

    /// Skips one complete value of any type.
    fn skip(&mut self, lim: &Limits) -> Result<(), RespError> {
        match reply_len(&self.buf[self.at..], lim)? {
            Progress::Complete(n) => {
                self.at += n;
                Ok(())
            }
            Progress::NeedMore => Err(RespError::MultibulkLength),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(t: &Table, cmd: &str) -> Class {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        t.classify(&args)
    }

    #[test]
    fn the_builtin_table_sends_reads_to_replicas_and_the_rest_to_the_primary() {
        let t = Table::builtin();
        assert_eq!(class(&t, "GET k"), Class::Read);
        assert_eq!(class(&t, "mget a b"), Class::Read);
        assert_eq!(class(&t, "SET k v"), Class::Write);
        assert_eq!(class(&t, "INCR k"), Class::Write);
        assert_eq!(
            class(&t, "FROBNICATE k"),
            Class::Write,
            "unknown: the primary"
        );
        assert_eq!(class(&t, "MULTI"), Class::Transaction);
        assert_eq!(class(&t, "BLPOP q 0"), Class::Blocking);
        assert_eq!(class(&t, "XREAD COUNT 1 STREAMS s 0"), Class::Read);
        assert_eq!(class(&t, "XREAD BLOCK 0 STREAMS s $"), Class::Blocking);
        assert_eq!(class(&t, "XREADGROUP GROUP g c STREAMS s >"), Class::Write);
        assert_eq!(class(&t, "SUBSCRIBE ch"), Class::Stream);
        assert_eq!(class(&t, "CLIENT SETNAME me"), Class::Connection);
        assert_eq!(class(&t, "CLIENT LIST"), Class::Write);
        assert_eq!(class(&t, "SELECT 2"), Class::Connection);
        assert_eq!(t.classify(&[]), Class::Write);
    }

    #[test]
    fn the_primarys_command_answer_decides_by_flags() {
        // Three entries as Redis 7 sends them (name, arity, flags, first
        // key, last key, step, ACL categories, tips, key specs, subcommands).
        let reply = b"*4\r\n\
*10\r\n$4\r\ninfo\r\n:-1\r\n*2\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n\
*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*2\r\n+@read\r\n+@string\r\n*0\r\n*0\r\n*0\r\n\
*10\r\n$5\r\nblpop\r\n:-3\r\n*2\r\n+write\r\n+blocking\r\n:1\r\n:-2\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n\
*10\r\n$6\r\nmyread\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*0\r\n*0\r\n";
        let t = Table::from_command_reply(reply).unwrap();
        assert_eq!(class(&t, "GET k"), Class::Read);
        assert_eq!(class(&t, "BLPOP q 0"), Class::Blocking);
        assert_eq!(
            class(&t, "INFO server"),
            Class::Read,
            "no readonly flag, no write flag, a read of the built-in table"
        );
        assert_eq!(
            class(&t, "MYREAD k"),
            Class::Read,
            "a module's read-only command"
        );
        assert_eq!(
            class(&t, "SET k v"),
            Class::Write,
            "not in the answer: the primary"
        );
        assert_eq!(
            class(&t, "MULTI"),
            Class::Transaction,
            "kept from the built-in table"
        );
        assert!(Table::from_command_reply(b"+OK\r\n").is_err());
    }
}

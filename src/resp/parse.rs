//! RESP framing over a byte buffer, without copying: a client's command
//! (a multi-bulk array of bulk strings, or an inline line) as spans of its
//! arguments, and the length of one complete reply of any RESP2 or RESP3
//! type, so it can be passed on as it is.
//!
//! Strict, with limits (Redis's own error texts where it has one): a length
//! that is not a number, a negative multi-bulk or bulk length in a command, a
//! bulk string not followed by CRLF, an unknown type byte, too many elements,
//! too long a bulk, too deep a nesting, too long an inline command. A
//! protocol error is final: the caller answers it and closes the connection.

use super::Span;

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes; default 512 MiB (Redis's `proto-max-bulk-len`).
    pub max_bulk: u64,
    /// Most elements of one aggregate (array, map, set, push); default 1,048,576.
    pub max_elements: u64,
    /// Deepest nesting of aggregates in a reply; default 32 (commands are flat).
    pub max_depth: u32,
    /// Longest inline command line, in bytes; default 64 KiB (Redis's limit).
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 512 << 20,
            max_elements: 1 << 20,
            max_depth: 32,
            max_inline: 64 << 10,
        }
    }
}

/// Parse progress: the buffer holds a complete frame of `n` bytes, or not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed (within the limits so far).
    NeedMore,
    /// A complete frame: its length in bytes.
    Complete(usize),
}

/// Why a frame is refused; its `Display` is the text of the error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A multi-bulk length that is not a number or out of range.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// A bulk length that is not a number or out of range.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// An element of a command that is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkTerminator,
    /// An inline command longer than [`Limits::max_inline`].
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline command whose quotes do not close.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A reply of a type byte RESP does not know.
    #[error("Protocol error: unknown reply type '{}'", char::from(*.0))]
    UnknownType(u8),
    /// A reply nested deeper than [`Limits::max_depth`].
    #[error("Protocol error: reply nested too deep")]
    TooDeep,
    /// A line (a simple string, error, number) without CRLF within the limits.
    #[error("Protocol error: line too long")]
    LineTooLong,
}

/// Where the line starting at `at` ends: the index of its `\r` (followed by
/// `\n`); `Ok(None)` when the CRLF has not arrived yet. A bare `\r` or a line
/// longer than `max` is refused.
fn line_end(buf: &[u8], at: usize, max: usize) -> Result<Option<usize>, RespError> {
    let window = &buf[at..buf.len().min(at + max + 2)];
    match memchr_cr(window) {
        Some(i) if i + 1 < window.len() => {
            if window[i + 1] == b'\n' {
                Ok(Some(at + i))
            } else {
                Err(RespError::LineTooLong)
            }
        }
        Some(_) => Ok(None),
        None if window.len() > max => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn memchr_cr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\r')
}

/// A decimal integer (optional `-`), or `None`.
fn number(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(if neg { -n } else { n })
}

/// Longest length line (`*<n>`, `$<n>`) accepted before its CRLF.
const LEN_LINE: usize = 24;

/// Parses one command at the start of `buf`: its arguments' spans go to
/// `args` (cleared first). A multi-bulk command (`*<n>` of `$<len>` bulk
/// strings) or an inline one (a line of space-separated words, with
/// `"..."` and `'...'` quoting, as `redis-cli` and telnet users send). An
/// empty array or an empty inline line is a complete command with no
/// arguments (Redis ignores it).
pub fn parse_command(
    buf: &[u8],
    lim: &Limits,
    args: &mut Vec<Span>,
) -> Result<Progress, RespError> {
    args.clear();
    match buf.first() {
        None => Ok(Progress::NeedMore),
        Some(b'*') => multibulk(buf, lim, args),
        Some(_) => inline(buf, lim, args),
    }
}

fn multibulk(buf: &[u8], lim: &Limits, args: &mut Vec<Span>) -> Result<Progress, RespError> {
    let Some(end) = line_end(buf, 1, LEN_LINE).map_err(|_| RespError::MultibulkLength)? else {
        return Ok(Progress::NeedMore);
    };
    let n = number(&buf[1..end]).ok_or(RespError::MultibulkLength)?;
    if n > lim.max_elements as i64 {
        return Err(RespError::MultibulkLength);
    }
    let mut at = end + 2;
    if n <= 0 {
        return Ok(Progress::Complete(at));
    }
    for _ in 0..n {
        match buf.get(at) {
            None => return Ok(Progress::NeedMore),
            Some(b'$') => {}
            Some(&c) => return Err(RespError::ExpectedBulk(c)),
        }
        let Some(e) = line_end(buf, at + 1, LEN_LINE).map_err(|_| RespError::BulkLength)? else {
            return Ok(Progress::NeedMore);
        };
        let len = number(&buf[at + 1..e]).ok_or(RespError::BulkLength)?;
        if len < 0 || len as u64 > lim.max_bulk {
            return Err(RespError::BulkLength);
        }
        let start = e + 2;
        let stop = start + len as usize;
        if buf.len() < stop + 2 {
            return Ok(Progress::NeedMore);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(RespError::BulkTerminator);
        }
        args.push(span(start, stop));
        at = stop + 2;
    }
    Ok(Progress::Complete(at))
}

fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
    }
}

fn inline(buf: &[u8], lim: &Limits, args: &mut Vec<Span>) -> Result<Progress, RespError> {
    // An inline line ends at `\n` (a `\r` before it is dropped), as in Redis.
    let window = &buf[..buf.len().min(lim.max_inline + 1)];
    let Some(nl) = window.iter().position(|&c| c == b'\n') else {
        if window.len() > lim.max_inline {
            return Err(RespError::InlineTooBig);
        }
        return Ok(Progress::NeedMore);
    };
    let line_stop = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut i = 0;
    while i < line_stop {
        match buf[i] {
            b' ' | b'\t' => i += 1,
            q @ (b'"' | b'\'') => {
                let start = i + 1;
                let close = buf[start..line_stop]
                    .iter()
                    .position(|&c| c == q)
                    .ok_or(RespError::UnbalancedQuotes)?;
                let stop = start + close;
                // A closing quote must end the word.
                if stop + 1 < line_stop && !matches!(buf[stop + 1], b' ' | b'\t') {
                    return Err(RespError::UnbalancedQuotes);
                }
                args.push(span(start, stop));
                i = stop + 1;
            }
            _ => {
                let start = i;
                while i < line_stop && !matches!(buf[i], b' ' | b'\t') {
                    i += 1;
                }
                args.push(span(start, i));
            }
        }
    }
    Ok(Progress::Complete(nl + 1))
}

/// The length of the one complete reply at the start of `buf`, of any RESP2
/// or RESP3 type (aggregates walked to their end, attributes included with
/// the reply they precede).
pub fn reply_len(buf: &[u8], lim: &Limits) -> Result<Progress, RespError> {
    let mut at = 0;
    // Elements still to read at each open aggregate level.
    let mut pending: Vec<u64> = Vec::new();
    loop {
        let Some(&t) = buf.get(at) else {
            return Ok(Progress::NeedMore);
        };
        let Some(end) = line_end(buf, at + 1, lim.max_inline)? else {
            return Ok(Progress::NeedMore);
        };
        let line = &buf[at + 1..end];
        at = end + 2;
        // Elements this item opens (an aggregate), 0 for a complete item.
        let mut opens: u64 = 0;
        let mut attribute = false;
        match t {
            // simple string, error, integer, null, boolean, double, big number
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            // bulk string, blob error, verbatim string
            b'$' | b'!' | b'=' => {
                let len = number(line).ok_or(RespError::BulkLength)?;
                if len >= 0 {
                    if len as u64 > lim.max_bulk {
                        return Err(RespError::BulkLength);
                    }
                    let stop = at + len as usize;
                    if buf.len() < stop + 2 {
                        return Ok(Progress::NeedMore);
                    }
                    if &buf[stop..stop + 2] != b"\r\n" {
                        return Err(RespError::BulkTerminator);
                    }
                    at = stop + 2;
                } else if len != -1 {
                    return Err(RespError::BulkLength);
                }
            }
            // array, set, push; map and attribute hold pairs
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(line).ok_or(RespError::MultibulkLength)?;
                if n < -1 || n > lim.max_elements as i64 {
                    return Err(RespError::MultibulkLength);
                }
                let n = n.max(0) as u64;
                opens = if matches!(t, b'%' | b'|') { n * 2 } else { n };
                attribute = t == b'|';
            }
            other => return Err(RespError::UnknownType(other)),
        }
        if opens > 0 {
            if pending.len() as u32 >= lim.max_depth {
                return Err(RespError::TooDeep);
            }
            // An attribute's pairs come first, then the reply it describes:
            // one more item to read at this level.
            pending.push(opens);
            if attribute {
                // Counted as one more element of the attribute level, read
                // after the pairs: the value the attribute belongs to.
                if let Some(top) = pending.last_mut() {
                    *top += 1;
                }
            }
            continue;
        }
        if attribute {
            // An empty attribute: the reply it describes follows.
            continue;
        }
        // One item complete: close every level it completes.
        loop {
            match pending.last_mut() {
                None => return Ok(Progress::Complete(at)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    pending.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(input: &str) -> Result<Option<(Vec<String>, usize)>, RespError> {
        let mut a = Vec::new();
        Ok(
            match parse_command(input.as_bytes(), &Limits::default(), &mut a)? {
                Progress::NeedMore => None,
                Progress::Complete(n) => Some((
                    a.iter()
                        .map(|s| String::from_utf8_lossy(s.get(input.as_bytes())).into_owned())
                        .collect(),
                    n,
                )),
            },
        )
    }

    #[test]
    fn a_multibulk_command_is_its_arguments() {
        let c = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\nx\r\n*1\r\n";
        let (a, n) = args(c).unwrap().unwrap();
        assert_eq!(a, ["SET", "k", "v\r\nx"], "a bulk string may hold CRLF");
        assert_eq!(&c[n..], "*1\r\n", "the next command starts after it");
    }

    #[test]
    fn every_prefix_of_a_command_needs_more() {
        let c = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        for i in 0..c.len() {
            assert_eq!(args(&c[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(args(c).unwrap().unwrap().1, c.len());
    }

    #[test]
    fn inline_commands_split_on_spaces_and_honour_quotes() {
        let (a, n) = args("SET k \"hello world\" 'x'\r\nPING\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(a, ["SET", "k", "hello world", "x"]);
        assert_eq!(n, "SET k \"hello world\" 'x'\r\n".len());
        assert_eq!(args("PING\n").unwrap().unwrap().0, ["PING"]);
        assert_eq!(args("\r\n").unwrap().unwrap().0, Vec::<String>::new());
        assert_eq!(args("SET \"k").unwrap(), None, "no line end yet");
        assert_eq!(args("SET \"k\n"), Err(RespError::UnbalancedQuotes));
        assert_eq!(args("SET \"k\"x\n"), Err(RespError::UnbalancedQuotes));
    }

    #[test]
    fn malformed_and_oversized_commands_are_refused_with_redis_texts() {
        assert_eq!(args("*x\r\n"), Err(RespError::MultibulkLength));
        assert_eq!(args("*1\r\n+GET\r\n"), Err(RespError::ExpectedBulk(b'+')));
        assert_eq!(args("*1\r\n$-1\r\n"), Err(RespError::BulkLength));
        assert_eq!(args("*1\r\n$3\r\nGETxx"), Err(RespError::BulkTerminator));
        assert_eq!(args("*1\r\n$99999999999\r\n"), Err(RespError::BulkLength));
        assert_eq!(args("*2000000\r\n"), Err(RespError::MultibulkLength));
        let long = "A".repeat(70 << 10);
        assert_eq!(args(&long), Err(RespError::InlineTooBig));
        assert_eq!(
            RespError::ExpectedBulk(b'+').to_string(),
            "Protocol error: expected '$', got '+'"
        );
        let small = Limits {
            max_bulk: 4,
            ..Limits::default()
        };
        let mut a = Vec::new();
        assert_eq!(
            parse_command(b"*1\r\n$5\r\nhello\r\n", &small, &mut a),
            Err(RespError::BulkLength)
        );
    }

    fn reply(input: &[u8]) -> Result<Progress, RespError> {
        reply_len(input, &Limits::default())
    }

    #[test]
    fn a_reply_of_any_type_is_measured_to_its_end() {
        for r in [
            &b"+OK\r\n"[..],
            b"-ERR no\r\n",
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",3.14\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
            b"!21\r\nSYNTAX invalid syntax\r\n",
            b"=15\r\ntxt:Some string\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
            b"~2\r\n+a\r\n+b\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b"|1\r\n+ttl\r\n:3600\r\n$3\r\nval\r\n",
        ] {
            let mut with_next = r.to_vec();
            with_next.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                reply(&with_next),
                Ok(Progress::Complete(r.len())),
                "{}",
                String::from_utf8_lossy(r)
            );
            for i in 0..r.len() {
                assert_eq!(
                    reply(&r[..i]),
                    Ok(Progress::NeedMore),
                    "prefix {i} of {}",
                    String::from_utf8_lossy(r)
                );
            }
        }
    }

    #[test]
    fn malformed_replies_are_refused() {
        assert_eq!(reply(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert_eq!(reply(b"$3\r\nabcd\r\n"), Err(RespError::BulkTerminator));
        assert_eq!(reply(b"$-2\r\n"), Err(RespError::BulkLength));
        assert_eq!(reply(b"*-2\r\n"), Err(RespError::MultibulkLength));
        let deep = "*1\r\n".repeat(40) + ":1\r\n";
        assert_eq!(reply(deep.as_bytes()), Err(RespError::TooDeep));
        let ok = "*1\r\n".repeat(10) + ":1\r\n";
        assert_eq!(reply(ok.as_bytes()), Ok(Progress::Complete(ok.len())));
        assert_eq!(reply(b"+OK\rX\n"), Err(RespError::LineTooLong));
    }

    proptest::proptest! {
        /// Any command encoded as a multi-bulk array parses back to its
        /// arguments, whole, and every shorter prefix asks for more.
        #[test]
        fn encoded_commands_parse_back(args in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..8)) {
            let mut wire = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                wire.extend_from_slice(a);
                wire.extend_from_slice(b"\r\n");
            }
            let mut spans = Vec::new();
            let got = parse_command(&wire, &Limits::default(), &mut spans).unwrap();
            proptest::prop_assert_eq!(got, Progress::Complete(wire.len()));
            let back: Vec<Vec<u8>> = spans.iter().map(|s| s.get(&wire).to_vec()).collect();
            proptest::prop_assert_eq!(&back, &args);
            for cut in 0..wire.len() {
                proptest::prop_assert_eq!(parse_command(&wire[..cut], &Limits::default(), &mut spans).unwrap(), Progress::NeedMore);
                proptest::prop_assert_eq!(reply_len(&wire[..cut], &Limits::default()).unwrap(), Progress::NeedMore);
            }
            proptest::prop_assert_eq!(reply_len(&wire, &Limits::default()).unwrap(), Progress::Complete(wire.len()));
        }
    }
}

//! A RESP2/RESP3 client on one kept connection (pipelines, replies read
//! later, pushes), and a write load of `INCR` + `RPUSH <unique id>` clients
//! that records what each write got, for the RESP listener's tests
//! (tests/real_redis_resp.rs). Standard library only; loopback only.
//!
//! redis.rs's `redis_cmd` is one command on a fresh connection and reads
//! RESP2 only; this one keeps the connection, so a client's state (HELLO 3,
//! MULTI, SUBSCRIBE, read-your-writes) carries from one command to the next.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A RESP2 or RESP3 value as read off the wire (attributes `|` are skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    /// `-` and RESP3 blob errors `!`.
    Error(String),
    Int(i64),
    /// RESP2 `$-1` is `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// RESP2 `*-1` is `Array(None)`.
    Array(Option<Vec<Value>>),
    /// RESP3 `_`.
    Null,
    /// RESP3 `,`, kept as text (`1.5`, `inf`).
    Double(String),
    Bool(bool),
    BigNum(String),
    /// RESP3 `=`: format and text.
    Verbatim(String, String),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Push(Vec<Value>),
}

impl Value {
    /// A simple string or a UTF-8 bulk string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            Value::Verbatim(_, s) => Some(s),
            _ => None,
        }
    }

    /// A bulk string's text (lossy), e.g. a `GET` answer.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Verbatim(_, s) => Some(s.clone()),
            Value::Simple(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// `key:value` of an `INFO` answer (RESP2 bulk or RESP3 verbatim).
    pub fn info_field(&self, key: &str) -> Option<String> {
        let text = self.as_str()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    }
}

/// A command's bytes as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

/// One kept client connection to 127.0.0.1:`port`.
pub struct RespConn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl RespConn {
    /// Connects with `timeout` for the connect and every read and write.
    pub fn connect(port: u16, timeout: Duration) -> io::Result<RespConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(RespConn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Sends commands without reading (a pipeline; replies come in order).
    pub fn send(&mut self, cmds: &[&[&str]]) -> io::Result<()> {
        let mut buf = Vec::new();
        for c in cmds {
            buf.extend_from_slice(&encode(c));
        }
        self.w.write_all(&buf)
    }

    /// Sends raw bytes (inline commands, malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes)
    }

    /// Reads the next value (a reply or a push).
    pub fn read(&mut self) -> io::Result<Value> {
        read_value(&mut self.r)
    }

    /// One command, its reply.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Value> {
        self.send(&[args])?;
        self.read()
    }

    /// A pipeline: every command sent at once, then every reply read.
    pub fn pipeline(&mut self, cmds: &[&[&str]]) -> io::Result<Vec<Value>> {
        self.send(cmds)?;
        cmds.iter().map(|_| self.read()).collect()
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

fn bad(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad RESP line {line:?}"),
    )
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(eof());
    }
    if !line.ends_with("\r\n") {
        return Err(bad(&line));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn read_blob(r: &mut impl BufRead, len: &str) -> io::Result<Option<Vec<u8>>> {
    let n: i64 = len.parse().map_err(|_| bad(len))?;
    if n < 0 {
        return Ok(None);
    }
    let mut b = vec![0u8; n as usize + 2];
    r.read_exact(&mut b)?;
    b.truncate(n as usize);
    Ok(Some(b))
}

fn read_n(r: &mut impl BufRead, len: &str) -> io::Result<Option<Vec<Value>>> {
    let n: i64 = len.parse().map_err(|_| bad(len))?;
    if n < 0 {
        return Ok(None);
    }
    (0..n)
        .map(|_| read_value(r))
        .collect::<io::Result<_>>()
        .map(Some)
}

/// Reads one RESP2/RESP3 value.
pub fn read_value(r: &mut impl BufRead) -> io::Result<Value> {
    let line = read_line(r)?;
    if line.is_empty() {
        return Err(bad(&line));
    }
    let (t, rest) = line.split_at(1);
    let lossy = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    Ok(match t {
        "+" => Value::Simple(rest.to_string()),
        "-" => Value::Error(rest.to_string()),
        ":" => Value::Int(rest.parse().map_err(|_| bad(&line))?),
        "$" => Value::Bulk(read_blob(r, rest)?),
        "*" => Value::Array(read_n(r, rest)?),
        "_" => Value::Null,
        "," => Value::Double(rest.to_string()),
        "#" => Value::Bool(rest == "t"),
        "(" => Value::BigNum(rest.to_string()),
        "!" => Value::Error(lossy(read_blob(r, rest)?)),
        "=" => {
            let s = lossy(read_blob(r, rest)?);
            let (fmt, text) = s.split_at(s.len().min(4));
            Value::Verbatim(fmt.trim_end_matches(':').to_string(), text.to_string())
        }
        "~" => Value::Set(read_n(r, rest)?.unwrap_or_default()),
        ">" => Value::Push(read_n(r, rest)?.unwrap_or_default()),
        "%" => {
            let n: usize = rest.parse().map_err(|_| bad(&line))?;
            let mut m = Vec::with_capacity(n);
            for _ in 0..n {
                m.push((read_value(r)?, read_value(r)?));
            }
            Value::Map(m)
        }
        "|" => {
            // An attribute map describes the value after it: skipped.
            let n: usize = rest.parse().map_err(|_| bad(&line))?;
            for _ in 0..2 * n {
                read_value(r)?;
            }
            return read_value(r);
        }
        _ => return Err(bad(&line)),
    })
}

// ---------------------------------------------------------------------------
// write load: INCR + RPUSH, every outcome recorded
// ---------------------------------------------------------------------------

/// What one write got.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Acknowledged (`INCR`'s integer, `RPUSH`'s length).
    Acked,
    /// An error reply: the text.
    Error(String),
    /// The connection broke (or timed out) with the write sent or being sent.
    Broken(String),
}

/// One write: `INCR <counter>` (`id` None) or `RPUSH <list> <id>`.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    pub started: Instant,
    pub done: Instant,
    pub id: Option<String>,
    pub outcome: Outcome,
}

/// Keys and shape of a [`write_load`].
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub port: u16,
    pub clients: usize,
    /// `INCR` target.
    pub counter: String,
    /// `RPUSH` target; ids are `<tag>-<client>-<n>`.
    pub list: String,
    pub tag: String,
}

/// Every write of every client of a load.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub writes: Vec<WriteRecord>,
}

/// Runs `spec.clients` threads until `stop`: each keeps one connection
/// (10 s read timeout) and alternates `INCR counter` and `RPUSH list id`,
/// one at a time; after an error or a broken connection it reconnects
/// 10 ms later. Returns when every client has stopped.
pub fn write_load(spec: &LoadSpec, stop: &Arc<AtomicBool>) -> LoadResult {
    let threads: Vec<_> = (0..spec.clients)
        .map(|c| {
            let (spec, stop) = (spec.clone(), stop.clone());
            std::thread::spawn(move || client_loop(&spec, c, &stop))
        })
        .collect();
    let mut writes: Vec<WriteRecord> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a load client panicked"))
        .collect();
    writes.sort_by_key(|w| w.done);
    LoadResult { writes }
}

fn client_loop(spec: &LoadSpec, client: usize, stop: &AtomicBool) -> Vec<WriteRecord> {
    let mut out = Vec::new();
    let mut conn: Option<RespConn> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = (n % 2 == 0).then(|| format!("{}-{client}-{n}", spec.tag));
        let started = Instant::now();
        let outcome = one_write(spec, &mut conn, id.as_deref());
        let failed = !matches!(outcome, Outcome::Acked);
        out.push(WriteRecord {
            started,
            done: Instant::now(),
            id,
            outcome,
        });
        if failed {
            conn = None;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    out
}

fn one_write(spec: &LoadSpec, conn: &mut Option<RespConn>, id: Option<&str>) -> Outcome {
    if conn.is_none() {
        match RespConn::connect(spec.port, Duration::from_secs(10)) {
            Ok(c) => *conn = Some(c),
            // Nothing was sent: not ambiguous, but not acknowledged either.
            Err(e) => return Outcome::Error(format!("connect: {e}")),
        }
    }
    let c = conn.as_mut().unwrap();
    let reply = match id {
        None => c.call(&["INCR", &spec.counter]),
        Some(id) => c.call(&["RPUSH", &spec.list, id]),
    };
    match reply {
        Ok(Value::Int(_)) => Outcome::Acked,
        Ok(Value::Error(e)) => Outcome::Error(e),
        Ok(other) => Outcome::Error(format!("unexpected reply {other:?}")),
        Err(e) => Outcome::Broken(e.to_string()),
    }
}

impl LoadResult {
    fn incrs(&self) -> impl Iterator<Item = &WriteRecord> {
        self.writes.iter().filter(|w| w.id.is_none())
    }

    /// Acknowledged `INCR`s.
    pub fn acked_incrs(&self) -> u64 {
        self.incrs()
            .filter(|w| matches!(w.outcome, Outcome::Acked))
            .count() as u64
    }

    /// `INCR`s that may or may not have been applied: an error reply or a
    /// broken connection (a refused connect never sent anything, but is
    /// counted too: an upper bound).
    pub fn unsure_incrs(&self) -> u64 {
        self.incrs()
            .filter(|w| !matches!(w.outcome, Outcome::Acked))
            .count() as u64
    }

    /// Ids of acknowledged `RPUSH`es.
    pub fn acked_ids(&self) -> Vec<&str> {
        self.writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Acked))
            .filter_map(|w| w.id.as_deref())
            .collect()
    }

    /// Ids of every `RPUSH` sent (acknowledged or not).
    pub fn sent_ids(&self) -> std::collections::HashSet<&str> {
        self.writes.iter().filter_map(|w| w.id.as_deref()).collect()
    }

    pub fn failed(&self) -> usize {
        self.writes
            .iter()
            .filter(|w| !matches!(w.outcome, Outcome::Acked))
            .count()
    }

    /// Error replies or broken connections whose text contains `needle`.
    pub fn failed_with(&self, needle: &str) -> usize {
        self.writes
            .iter()
            .filter(|w| match &w.outcome {
                Outcome::Error(e) | Outcome::Broken(e) => e.contains(needle),
                Outcome::Acked => false,
            })
            .count()
    }

    /// Distinct failure texts with their counts, for a report.
    pub fn failure_kinds(&self) -> Vec<(String, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for w in &self.writes {
            let k = match &w.outcome {
                Outcome::Acked => continue,
                Outcome::Error(e) => format!("error: {}", e.chars().take(60).collect::<String>()),
                Outcome::Broken(e) => format!("broken: {}", e.chars().take(60).collect::<String>()),
            };
            *m.entry(k).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }

    /// The longest time with no acknowledgement at all, over every client,
    /// between `from` and the last acknowledgement.
    pub fn longest_pause(&self, from: Instant) -> Duration {
        let mut acks: Vec<Instant> = self
            .writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Acked))
            .map(|w| w.done)
            .filter(|&t| t >= from)
            .collect();
        acks.sort();
        acks.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// (last acknowledgement before `t`, first after `t`).
    pub fn acks_around(&self, t: Instant) -> (Option<Instant>, Option<Instant>) {
        let acked = || {
            self.writes
                .iter()
                .filter(|w| matches!(w.outcome, Outcome::Acked))
                .map(|w| w.done)
        };
        (
            acked().filter(|&d| d < t).max(),
            acked().filter(|&d| d >= t).min(),
        )
    }
}

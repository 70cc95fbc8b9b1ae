//! An in-process fake Redis data address for RESP listener tests: a node
//! that answers reads with its own name, takes writes only while it is
//! told it leads (else `-READONLY`, as a demoted primary does), can drop a
//! connection on a write (a crash between receiving and answering), and
//! logs which connection each command came on.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One command as the node saw it: its connection number and its words.
#[derive(Debug, Clone)]
pub struct Heard {
    pub conn: usize,
    pub words: Vec<String>,
}

pub struct RedisNode {
    pub name: String,
    pub addr: SocketAddr,
    /// Takes writes (else answers `-READONLY`).
    pub leads: Arc<AtomicBool>,
    /// Writes still to be answered by closing the connection instead.
    pub drop_writes: Arc<AtomicUsize>,
    pub heard: Arc<Mutex<Vec<Heard>>>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// What it answers to `WAIT` (replicas that acknowledged); 0 at start.
    pub acks: Arc<AtomicUsize>,
}

const READONLY: &[u8] = b"-READONLY You can't write against a read only replica.\r\n";

impl RedisNode {
    pub async fn start(name: &str, leads: bool) -> RedisNode {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = RedisNode {
            name: name.to_string(),
            addr: l.local_addr().unwrap(),
            leads: Arc::new(AtomicBool::new(leads)),
            drop_writes: Arc::new(AtomicUsize::new(0)),
            heard: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
            acks: Arc::new(AtomicUsize::new(0)),
        };
        let (name, leads, drops, heard, accepted, acks) = (
            node.name.clone(),
            node.leads.clone(),
            node.drop_writes.clone(),
            node.heard.clone(),
            node.accepted.clone(),
            node.acks.clone(),
        );
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let conn = accepted.fetch_add(1, Ordering::SeqCst);
                let (name, leads, drops, heard, acks) = (
                    name.clone(),
                    leads.clone(),
                    drops.clone(),
                    heard.clone(),
                    acks.clone(),
                );
                tokio::spawn(serve(s, conn, name, leads, drops, heard, acks));
            }
        });
        node
    }

    /// The commands heard, as their first word in upper case, with their
    /// connection numbers.
    pub fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// How many commands named `name` it heard.
    pub fn count(&self, name: &str) -> usize {
        self.heard()
            .iter()
            .filter(|h| h.words[0].eq_ignore_ascii_case(name))
            .count()
    }
}

async fn serve(
    mut s: TcpStream,
    conn: usize,
    name: String,
    leads: Arc<AtomicBool>,
    drops: Arc<AtomicUsize>,
    heard: Arc<Mutex<Vec<Heard>>>,
    acks: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut multi: Option<usize> = None;
    loop {
        let mut chunk = [0u8; 4096];
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Some((words, used)) = command(&buf) {
            buf.drain(..used);
            heard.lock().unwrap().push(Heard {
                conn,
                words: words.clone(),
            });
            let w0 = words[0].to_ascii_lowercase();
            let write = matches!(
                w0.as_str(),
                "set" | "incr" | "rpush" | "del" | "lpush" | "flushall"
            );
            if write
                && drops
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                    .is_ok()
            {
                // Received, never answered: as a node killed mid-command.
                let _ = s.write_all(&out).await;
                return;
            }
            if let Some(q) = multi.as_mut() {
                if w0 == "exec" {
                    out.extend_from_slice(format!("*{q}\r\n").as_bytes());
                    for _ in 0..*q {
                        out.extend_from_slice(b"+OK\r\n");
                    }
                    multi = None;
                } else if w0 == "discard" {
                    out.extend_from_slice(b"+OK\r\n");
                    multi = None;
                } else {
                    *q += 1;
                    out.extend_from_slice(b"+QUEUED\r\n");
                }
                continue;
            }
            let reply: Vec<u8> = match w0.as_str() {
                "get" | "info" | "mget" => format!("${}\r\n{}\r\n", name.len(), name).into_bytes(),
                "ping" => b"+PONG\r\n".to_vec(),
                "auth" | "select" => b"+OK\r\n".to_vec(),
                "wait" if !leads.load(Ordering::SeqCst) => {
                    b"-ERR WAIT cannot be used with replica instances.\r\n".to_vec()
                }
                "wait" => format!(":{}\r\n", acks.load(Ordering::SeqCst)).into_bytes(),
                "multi" => {
                    multi = Some(0);
                    b"+OK\r\n".to_vec()
                }
                "blpop" => {
                    let _ = s.write_all(&out).await;
                    out.clear();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    format!("*2\r\n$1\r\nq\r\n${}\r\n{}\r\n", name.len(), name).into_bytes()
                }
                _ if write && !leads.load(Ordering::SeqCst) => READONLY.to_vec(),
                "incr" => b":1\r\n".to_vec(),
                _ if write => b"+OK\r\n".to_vec(),
                _ => format!("-ERR unknown command '{}'\r\n", words[0]).into_bytes(),
            };
            out.extend_from_slice(&reply);
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// One multi-bulk command at the start of `buf`: its words and length.
fn command(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    };
    let (head, mut at) = line(0)?;
    assert_eq!(
        head.first(),
        Some(&b'*'),
        "the proxy sends multi-bulk commands"
    );
    let n: usize = std::str::from_utf8(&head[1..]).ok()?.parse().ok()?;
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, next) = line(at)?;
        let len: usize = std::str::from_utf8(&len[1..]).ok()?.parse().ok()?;
        if buf.len() < next + len + 2 {
            return None;
        }
        words.push(String::from_utf8_lossy(&buf[next..next + len]).into_owned());
        at = next + len + 2;
    }
    Some((words, at))
}

/// A client of a RESP listener that sends raw bytes and reads whole replies.
pub struct RespClient {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RespClient {
    pub async fn connect(addr: SocketAddr) -> RespClient {
        RespClient {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Sends `cmds` (each a space-separated command) in one write and
    /// reads one reply per command, within 5 s.
    pub async fn pipeline(&mut self, cmds: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for c in cmds {
            let words: Vec<&str> = c.split(' ').collect();
            out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
            for w in words {
                out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
            }
        }
        self.send_raw(&out).await;
        let mut replies = Vec::new();
        for _ in cmds {
            replies.push(self.reply().await.expect("a reply within 5s"));
        }
        replies
    }

    pub async fn cmd(&mut self, c: &str) -> String {
        self.pipeline(&[c]).await.remove(0)
    }

    pub async fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    /// One reply, flattened to text (`+OK`, `$name` as `name`, arrays as
    /// `[a,b]`); `None` at the end of the stream.
    pub async fn reply(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some((r, used)) = parse_reply(&self.buf) {
                    self.buf.drain(..used);
                    return Some(r);
                }
                let mut chunk = [0u8; 4096];
                match self.s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("a reply or the end within 5s")
    }
}

fn parse_reply(buf: &[u8]) -> Option<(String, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
    let at = end + 2;
    match buf[0] {
        b'+' | b'-' | b':' => Some((format!("{}{line}", buf[0] as char), at)),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(("nil".into(), at));
            }
            let n = n as usize;
            if buf.len() < at + n + 2 {
                return None;
            }
            Some((
                String::from_utf8_lossy(&buf[at..at + n]).into_owned(),
                at + n + 2,
            ))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut at = at;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                let (r, used) = parse_reply(&buf[at..])?;
                items.push(r);
                at += used;
            }
            Some((format!("[{}]", items.join(",")), at))
        }
        _ => Some((format!("?{line}"), at)),
    }
}

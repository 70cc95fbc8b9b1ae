//! An in-process DNS server on 127.0.0.1 (UDP) that knows one name: its A
//! records and its SRV records come from lists the test changes. Enough of
//! RFC 1035 / RFC 2782 for the A, AAAA and SRV queries a stub resolver
//! sends (one question, no compression in the question, EDNS ignored).
//! Point the proxy at it with `discovery::Nameservers::Fixed(vec![dns.addr])`.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// How the fake DNS server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The records of the lists.
    Records,
    /// SERVFAIL to every query.
    ServFail,
    /// NOERROR with no records.
    Empty,
}

/// One SRV record: `target` (a host name, or an IPv4 address written as
/// a name, `127.0.0.1`) and `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub target: String,
    pub port: u16,
}

struct DnsState {
    name: String,
    a: Vec<Ipv4Addr>,
    srv: Vec<Srv>,
    mode: Mode,
}

pub struct FakeDns {
    pub addr: SocketAddr,
    state: Arc<Mutex<DnsState>>,
    /// Queries received so far.
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The question's end (after QTYPE and QCLASS), its name and QTYPE.
fn question(q: &[u8]) -> Option<(usize, String, u16)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    Some((i + 4, labels.join("."), qtype))
}

/// `name` in wire format (uncompressed labels, then the root).
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

/// The answer records' RDATA and type for a question of `qtype`.
fn records(st: &DnsState, qtype: u16) -> (u16, Vec<Vec<u8>>) {
    match qtype {
        1 => (1, st.a.iter().map(|ip| ip.octets().to_vec()).collect()),
        33 => (
            33,
            st.srv
                .iter()
                .map(|s| {
                    let mut d = vec![0, 10, 0, 10]; // priority, weight
                    d.extend_from_slice(&s.port.to_be_bytes());
                    d.extend_from_slice(&wire_name(&s.target));
                    d
                })
                .collect(),
        ),
        _ => (qtype, Vec::new()),
    }
}

fn answer(st: &DnsState, q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let (end, name, qtype) = question(q)?;
    let (rtype, rdata) = if name == st.name && st.mode == Mode::Records {
        records(st, qtype)
    } else {
        (qtype, Vec::new())
    };
    let rcode: u8 = match st.mode {
        Mode::ServFail => 2,
        _ if name != st.name => 3, // NXDOMAIN
        _ => 0,
    };
    let mut r = Vec::with_capacity(end + 32 * rdata.len());
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x80 | (q[2] & 0x01)); // QR, opcode 0, RD copied
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&[0, 1]); // QDCOUNT
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes()); // ANCOUNT
    r.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    r.extend_from_slice(&q[12..end]);
    for d in rdata {
        r.extend_from_slice(&[0xC0, 12]); // the question's name
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]); // IN
        r.extend_from_slice(&0u32.to_be_bytes()); // TTL 0
        r.extend_from_slice(&(d.len() as u16).to_be_bytes());
        r.extend_from_slice(&d);
    }
    Some(r)
}

impl FakeDns {
    /// Serves `name` with these A records (and no SRV records).
    pub async fn start(name: &str, a: Vec<Ipv4Addr>) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let state = Arc::new(Mutex::new(DnsState {
            name: name.to_string(),
            a,
            srv: Vec::new(),
            mode: Mode::Records,
        }));
        let queries = Arc::new(AtomicUsize::new(0));
        let (st, n) = (state.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let reply = answer(&st.lock().unwrap(), &buf[..len]);
                if let Some(r) = reply {
                    let _ = sock.send_to(&r, peer).await;
                }
            }
        });
        FakeDns {
            addr,
            state,
            queries,
            task,
        }
    }

    /// Serves `name` with these SRV records (and no A records).
    pub async fn start_srv(name: &str, srv: Vec<Srv>) -> FakeDns {
        let d = FakeDns::start(name, Vec::new()).await;
        d.set_srv(&srv);
        d
    }

    /// The A records from now on; answers again if it was failing.
    pub fn set(&self, a: &[Ipv4Addr]) {
        let mut st = self.state.lock().unwrap();
        st.a = a.to_vec();
        st.mode = Mode::Records;
    }

    /// The SRV records from now on; answers again if it was failing.
    pub fn set_srv(&self, srv: &[Srv]) {
        let mut st = self.state.lock().unwrap();
        st.srv = srv.to_vec();
        st.mode = Mode::Records;
    }

    pub fn mode(&self, m: Mode) {
        self.state.lock().unwrap().mode = m;
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

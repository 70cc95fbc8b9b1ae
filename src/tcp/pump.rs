//! Copying bytes both ways between a client and a backend socket, on the
//! connection's one task: both directions are polled in one future (so
//! neither can block the other), a buffer is borrowed from the worker's
//! free list only while bytes are in flight (an idle connection holds
//! none), and an end of stream in one direction is passed on as a
//! half-close (`shutdown(Write)`) while the other keeps flowing.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};

use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes one read may take (one buffer).
const BUF: usize = 16 << 10;
/// Buffers kept on a worker's free list at most.
const FREE_LIST: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn borrow() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF].into_boxed_slice())
}

fn give_back(b: Box<[u8]>) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_LIST {
            f.push(b);
        }
    });
}

/// When bytes last moved, in milliseconds since `start` (for the idle timeout).
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Starts the clock now.
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When bytes last moved (or the start).
    pub(crate) fn last(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// One direction: bytes read from one socket and not yet written to the other.
#[derive(Default)]
struct Direction {
    buf: Option<Box<[u8]>>,
    pos: usize,
    len: usize,
    eof: bool,
    done: bool,
}

impl Direction {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
        counted: &IntCounter,
        activity: &Activity,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf {
                ready!(to.poll_write_ready(cx))?;
                match to.try_write(&buf[self.pos..self.len]) {
                    Ok(n) => {
                        self.pos += n;
                        counted.inc_by(n as u64);
                        activity.touch();
                        if self.pos == self.len {
                            give_back(self.buf.take().expect("a buffer"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if self.eof {
                // Passed on as a half-close; the other direction goes on.
                let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
                self.done = true;
                continue;
            }
            ready!(from.poll_read_ready(cx))?;
            let mut buf = borrow();
            match from.try_read(&mut buf) {
                Ok(0) => {
                    give_back(buf);
                    self.eof = true;
                }
                Ok(n) => {
                    activity.touch();
                    self.buf = Some(buf);
                    self.pos = 0;
                    self.len = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => give_back(buf),
                Err(e) => {
                    give_back(buf);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            give_back(b);
        }
    }
}

/// Copies `client` ⇄ `backend` until both directions have ended (each end
/// of stream passed on as a half-close) or one fails. Bytes are counted in
/// `to_backend` / `to_client` as written; `activity` records when bytes last moved.
pub(crate) async fn pump(
    client: &TcpStream,
    backend: &TcpStream,
    to_backend: &IntCounter,
    to_client: &IntCounter,
    activity: &Activity,
) -> io::Result<()> {
    let mut up = Direction::default();
    let mut down = Direction::default();
    std::future::poll_fn(|cx| {
        let a = up.poll(cx, client, backend, to_backend, activity)?;
        let b = down.poll(cx, backend, client, to_client, activity)?;
        if a.is_ready() && b.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Both ways at once, more than a buffer each way, then a half-close
    /// from each side in turn: every byte arrives, counted, and each end
    /// of stream reaches the other side while the other direction flows.
    #[tokio::test]
    async fn copies_both_ways_and_passes_half_closes_on() {
        let (mut client, proxy_client) = pair().await;
        let (proxy_backend, mut backend) = pair().await;
        let (up, down) = (
            IntCounter::new("u", "u").unwrap(),
            IntCounter::new("d", "d").unwrap(),
        );
        let activity = Activity::new();
        let n = 300_000usize;
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let copy = pump(&proxy_client, &proxy_backend, &up, &down, &activity);
        let peers = async {
            // Both sides write everything before reading: only a copy that
            // serves both directions at once gets through this.
            let (mut cr, mut cw) = client.split();
            let (mut br, mut bw) = backend.split();
            let send_up = async {
                cw.write_all(&data).await.unwrap();
                cw.shutdown().await.unwrap();
            };
            let send_down = async {
                bw.write_all(&data).await.unwrap();
            };
            let (mut got_up, mut got_down) = (Vec::new(), vec![0u8; n]);
            let read_up = async {
                br.read_to_end(&mut got_up).await.unwrap();
            };
            let read_down = async {
                cr.read_exact(&mut got_down).await.unwrap();
            };
            tokio::join!(send_up, send_down, read_up, read_down);
            assert_eq!(
                got_up, data,
                "client -> backend, then the client's end of stream"
            );
            assert_eq!(
                got_down, data,
                "backend -> client while the client had half-closed"
            );
            bw.shutdown().await.unwrap();
            let mut rest = Vec::new();
            cr.read_to_end(&mut rest).await.unwrap();
            assert!(
                rest.is_empty(),
                "the backend's end of stream reached the client"
            );
        };
        let (r, ()) = tokio::join!(copy, peers);
        r.unwrap();
        assert_eq!(up.get(), n as u64);
        assert_eq!(down.get(), n as u64);
    }
}

//! The upstream HTTP/1.1 client against scripted backends.

use super::*;
use tokio::net::TcpStream;

fn tcp(c: &Conn) -> &TcpStream {
    match &c.io {
        UpstreamStream::Plain(s) => s,
        UpstreamStream::Tls(_) => unreachable!("plain only here"),
    }
}

/// A body of ready frames.
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

impl Pumped for Frames {}

/// What `pump` writes for `frames`, chunked.
async fn pumped(frames: Vec<Frame<Bytes>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = Frames(frames.into());
    pump(&mut out, &mut body, true).await.unwrap();
    out
}

#[tokio::test]
async fn request_trailers_carry_no_framing_or_routing_fields() {
    let mut t = http::HeaderMap::new();
    for (n, v) in [
        ("x-sum", "1"),
        ("content-length", "3"),
        ("host", "evil"),
        ("transfer-encoding", "chunked"),
        ("connection", "x-listed"),
        ("x-listed", "1"),
        ("keep-alive", "1"),
        ("te", "trailers"),
        ("trailer", "x-sum"),
        ("x-forwarded-for", "6.6.6.6"),
    ] {
        t.append(n, v.parse().unwrap());
    }
    let out = pumped(vec![
        Frame::data(Bytes::from_static(b"hello")),
        Frame::trailers(t),
    ])
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out),
        "5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n"
    );
}

/// A writer that counts the write calls it gets.
#[derive(Default)]
struct Counting {
    out: Vec<u8>,
    writes: usize,
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes += 1;
        self.out.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.writes += 1;
        let mut n = 0;
        for b in bufs {
            self.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The data and trailers of a chunked body.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut d = crate::h1::ChunkedDecoder::default();
    let mut data = Vec::new();
    loop {
        match d.decode(b).unwrap() {
            (n, crate::h1::Decoded::Data(r)) => {
                data.extend_from_slice(&b[r]);
                b = &b[n..];
            }
            (_, crate::h1::Decoded::End { trailers }) => return (data, b[trailers].to_vec()),
            (_, crate::h1::Decoded::NeedMore) => panic!("truncated"),
        }
    }
}

/// Data, then nothing there yet (`Pending`, woken at once), then the end;
/// counts the looks it was told about.
struct Gap {
    step: usize,
    looked: std::cell::Cell<usize>,
}

impl http_body::Body for Gap {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.step += 1;
        match self.step {
            1 => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"ab"))))),
            2 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Ready(None),
        }
    }
}

impl Pumped for Gap {
    fn only_looked(&self) {
        self.looked.set(self.looked.get() + 1);
    }
}

#[tokio::test]
async fn a_look_that_finds_nothing_is_not_a_wait_for_the_client() {
    let mut w = Counting::default();
    let mut body = Gap {
        step: 0,
        looked: Default::default(),
    };
    pump(&mut w, &mut body, true).await.unwrap();
    assert_eq!(w.out, b"2\r\nab\r\n0\r\n\r\n");
    assert_eq!(body.looked.get(), 1, "the look was not reported");
}

#[tokio::test]
async fn small_chunks_already_there_go_in_few_writes() {
    let n = 50_000;
    let frames = || {
        let mut f: std::collections::VecDeque<_> = (0..n)
            .map(|_| Frame::data(Bytes::from_static(b"x")))
            .collect();
        let mut t = http::HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        f.push_back(Frame::trailers(t));
        Frames(f)
    };
    for chunked in [true, false] {
        let mut w = Counting::default();
        pump(&mut w, &mut frames(), chunked).await.unwrap();
        println!(
            "{n} one-byte frames (chunked: {chunked}): {} writes",
            w.writes
        );
        assert!(w.writes <= 4, "{} writes", w.writes);
        if chunked {
            let (data, trailers) = dechunk(&w.out);
            assert_eq!(data, vec![b'x'; n]);
            assert_eq!(trailers, b"x-sum: 1\r\n");
        } else {
            assert_eq!(w.out, vec![b'x'; n]);
        }
    }
}

#[tokio::test]
async fn after_head_the_socket_itself_is_looked_at() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    for after_head in [false, true] {
        let mut c = Conn::new(
            UpstreamStream::Plain(TcpStream::connect(addr).await.unwrap()),
            0,
        );
        c.after_head = after_head;
        let (server, _) = l.accept().await.unwrap();
        assert!(c.is_reusable());
        // No await that yields between the write and the look: the
        // reactor of this single-threaded runtime has not seen the byte.
        std::io::Write::write_all(&mut server.into_std().unwrap(), b"x").unwrap();
        assert_eq!(c.is_reusable(), !after_head, "after_head: {after_head}");
    }
}

#[tokio::test]
async fn reusable_until_the_peer_closes_or_talks() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let plain = |s| UpstreamStream::Plain(s);
    let mut c = Conn::new(plain(TcpStream::connect(addr).await.unwrap()), 0);
    let (mut server, _) = l.accept().await.unwrap();
    assert!(c.is_reusable());
    server.write_all(b"x").await.unwrap();
    // Wait until the byte has arrived.
    tcp(&c).readable().await.unwrap();
    assert!(!c.is_reusable(), "unasked bytes");
    let mut c2 = Conn::new(plain(TcpStream::connect(addr).await.unwrap()), 0);
    let (server2, _) = l.accept().await.unwrap();
    drop(server2);
    tcp(&c2).readable().await.unwrap();
    assert!(!c2.is_reusable(), "closed");
    drop(server);
}

/// The response's header values are slices of the head's bytes: no
/// allocation and copy per value (issue 20: four per request before).
#[test]
fn response_header_values_share_the_head_bytes() {
    let raw = Bytes::from_static(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: n1\r\nContent-Length: 2\r\n\r\n",
    );
    let mut head = ResponseHead::default();
    let n = match parse_response(&raw, &Limits::default(), false, &mut head) {
        Ok(Progress::Complete(n)) => n,
        _ => panic!("the head parses"),
    };
    assert_eq!(n, raw.len());
    let resp = to_response(&head, &raw).expect("a valid head");
    let range = raw.as_ptr_range();
    for (name, value) in resp.headers() {
        let p = value.as_bytes().as_ptr();
        assert!(range.contains(&p), "{name}: its value was copied");
    }
    assert_eq!(resp.headers()["x-backend"], "n1");
}

/// A request-head buffer goes back to the worker's spares when dropped and
/// is the next one taken, emptied (one allocation per request before).
#[test]
fn head_buffers_are_reused_on_a_worker() {
    let mut a = HeadBuf::take();
    a.0.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let p = a.0.as_ptr();
    drop(a);
    let b = HeadBuf::take();
    assert_eq!(b.0.as_ptr(), p);
    assert!(b.0.is_empty());
}

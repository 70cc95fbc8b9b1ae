//! The request as the proxy core takes it: an `http::Request` built from
//! the parsed head (header values share the head's bytes), with a body read
//! from the client's connection as it is polled; `Expect: 100-continue`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version as HttpVersion};
use http_body::{Frame, SizeHint};

use crate::h1::body::{Left as BodyLeft, Step};
use crate::h1::framing::{ChunkedDecoder, Decoded, Framing};
use crate::h1::parse::{RequestHead, Version};
use crate::upstream::body::{BoxError, ClientBody};

use super::{lock, Shared, BODY_READ, READ_BUF};

/// The answer to `Expect: 100-continue`, from the body's framing and the
/// body limit (`limits.max_body_bytes`, bytes).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Continue {
    /// No body to ask for.
    Nothing,
    /// `100 Continue`, before any body byte is awaited.
    Send,
    /// The declared length is past the limit: 413, no 100.
    TooLarge,
}

pub(super) fn expect_answer(framing: Framing, max_body: u64) -> Continue {
    match framing {
        Framing::Length(n) if n > max_body => Continue::TooLarge,
        Framing::Length(0) | Framing::None | Framing::Close => Continue::Nothing,
        Framing::Length(_) | Framing::Chunked => Continue::Send,
    }
}

/// Reads until the buffered body starts with a whole, valid chunk-size
/// line (or more). `Err(None)`: the client went away.
pub(super) async fn first_chunk_ok(shared: &Shared) -> Result<(), Option<crate::h1::ChunkedError>> {
    loop {
        {
            let io = lock(shared);
            match ChunkedDecoder::default().decode(&io.buf) {
                Err(e) => return Err(Some(e)),
                Ok((0, Decoded::NeedMore)) => {}
                Ok(_) => return Ok(()),
            }
        }
        match std::future::poll_fn(|cx| lock(shared).poll_fill(cx, READ_BUF)).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The request as the proxy's service takes it. Header values share the
/// head's bytes (no copy).
pub(super) fn to_request(
    h: &RequestHead,
    raw: &Bytes,
) -> Result<Request<ClientBody>, crate::h1::HeadError> {
    use crate::h1::HeadError;
    let method = Method::from_bytes(h.method.get(raw)).map_err(|_| HeadError::BadMethod)?;
    let uri = Uri::from_maybe_shared(raw.slice(h.target.start as usize..h.target.end as usize))
        .map_err(|_| HeadError::BadTarget)?;
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = match h.version {
        Some(Version::Http10) => HttpVersion::HTTP_10,
        _ => HttpVersion::HTTP_11,
    };
    let map = req.headers_mut();
    // Room for the forwarding headers the proxy adds (X-Forwarded-For,
    // -Proto, -Host), so the map is not regrown on every request.
    map.reserve(h.fields.len() + 3);
    for f in &h.fields {
        let name = HeaderName::from_bytes(f.name.get(raw)).map_err(|_| HeadError::BadHeaderName)?;
        let value =
            HeaderValue::from_maybe_shared(raw.slice(f.value.start as usize..f.value.end as usize))
                .map_err(|_| HeadError::BadHeaderValue)?;
        map.append(name, value);
    }
    Ok(req)
}

/// Tells the connection loop whether the request body was read to its end.
#[derive(Clone)]
pub(super) struct BodyDone(Option<Arc<std::sync::atomic::AtomicBool>>);

impl BodyDone {
    pub(super) fn is_done(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|d| d.load(std::sync::atomic::Ordering::Acquire))
    }
}

pub(super) fn attach_body(
    mut req: Request<ClientBody>,
    head: &RequestHead,
    shared: &Shared,
) -> (Request<ClientBody>, BodyDone) {
    // A request body is never read until close (the codec says so).
    let left = match head.framing {
        Framing::Length(n) if n > 0 => BodyLeft::of(head.framing),
        Framing::Chunked => BodyLeft::of(head.framing),
        _ => return (req, BodyDone(None)),
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    *req.body_mut() = ClientBody::Boxed(Box::pin(RequestBody {
        shared: Some(shared.clone()),
        left,
        done: Some(done.clone()),
    }));
    (req, BodyDone(Some(done)))
}

/// A request body read from the client's connection as it is polled.
pub(crate) struct RequestBody {
    shared: Option<Shared>,
    left: BodyLeft,
    done: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl RequestBody {
    fn finish(&mut self) {
        self.left = BodyLeft::Done;
        if let Some(d) = &self.done {
            d.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn broken(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.left = BodyLeft::Done;
        self.shared = None;
        Poll::Ready(Some(Err(why.into())))
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(shared) = this.shared.clone() else {
            return Poll::Ready(None);
        };
        let mut io = lock(&shared);
        let step = loop {
            match this.left.step(&mut io.buf) {
                Step::Fill => match ready!(io.poll_fill(cx, BODY_READ)) {
                    Ok(0) => break this.left.at_eof(),
                    Ok(_) => {}
                    Err(e) => {
                        drop(io);
                        return this.broken(e.to_string());
                    }
                },
                step => break step,
            }
        };
        drop(io);
        match step {
            Step::Frame(f) => {
                if this.left.is_done() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Step::End => {
                this.finish();
                Poll::Ready(None)
            }
            Step::Broken(why) => this.broken(format!("invalid request body: {why}")),
            Step::Fill => unreachable!("filled above"),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.left.size_hint()
    }
}

//! Request bodies: streamed to the upstream under a size cap and a per-chunk timeout, and read
//! into memory (up to a small cap) only when a rule needs a JSON field.

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("no request body data for {0:?}")]
    Timeout(Duration),
    /// The client's body could not be read: bad chunked framing, or the connection broke.
    /// Marked as the client's, so a forward that fails on it is answered 400, not 502 as if
    /// the upstream had failed.
    #[error("request body: {0}")]
    Client(#[source] BoxError),
}

/// Wraps the client's body: errors when it exceeds `max` bytes or stalls for `timeout`, which
/// aborts the upstream request instead of letting a slow or endless upload hold it.
pub struct Guarded<B> {
    inner: B,
    seen: u64,
    max: u64,
    timeout: Duration,
    /// Armed the first time the body is not ready, and moved on by each frame after that. A
    /// body that is already whole (a form the fast path read, or one that came with its head)
    /// never touches the timer wheel: creating, re-arming and dropping a timer per request
    /// was 2 % of a flood's CPU.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, max: u64, timeout: Duration) -> Self {
        Guarded {
            inner,
            seen: 0,
            max,
            timeout,
            sleep: None,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.seen += d.len() as u64;
                    if self.seen > self.max {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(self.max).into())));
                    }
                }
                let t = self.timeout;
                if let Some(sleep) = self.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + t);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e.into()).into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let t = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(t)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout(t).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Memory for request bodies read before deciding (the bytes a JSON-field rule or the proof's
/// endpoints look at), shared by every connection and HTTP/2 stream of a listener set. Each
/// read reserves what it may hold (its cap, or less when the body declares its length) for as
/// long as it waits for the client; when slow clients hold it all, the next read waits a
/// moment and is then refused with 503. Without it, ten thousand connections each trickling a
/// 128 KiB body (times a hundred streams each on HTTP/2) could grow memory without bound.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: std::sync::Arc<tokio::sync::Semaphore>,
    total: usize,
}

/// Held while a body is read into memory; gives its bytes back to the budget when dropped.
pub type BodyReservation = tokio::sync::OwnedSemaphorePermit;

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: std::sync::Arc::new(tokio::sync::Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Reserves `n` bytes (at most the whole budget), waiting up to `wait` for other reads to
    /// finish; `None` if they did not.
    pub async fn reserve(&self, n: usize, wait: Duration) -> Option<BodyReservation> {
        let n = n.clamp(1, self.total).min(u32::MAX as usize) as u32;
        if let Ok(p) = self.bytes.clone().try_acquire_many_owned(n) {
            return Some(p);
        }
        tokio::time::timeout(wait, self.bytes.clone().acquire_many_owned(n))
            .await
            .ok()?
            .ok()
    }
}

/// What reading the start of a body gave.
pub struct Peeked {
    /// The whole body when it fit under the cap.
    pub complete: Option<Bytes>,
    /// The body to forward: the bytes already read followed by the rest of the stream.
    pub body: ProxyBody,
}

/// Reads up to `cap` bytes. If the body ends within the cap, it is returned whole for the rules;
/// otherwise what was read is chained back in front of the rest, so nothing is lost.
pub async fn peek<B>(body: B, cap: usize) -> Result<Peeked, BoxError>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin + Send + Sync + 'static,
{
    let mut body = body;
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                let b = buf.freeze();
                return Ok(Peeked {
                    complete: Some(b.clone()),
                    body: full(b),
                });
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => {
                    buf.extend_from_slice(&d);
                    if buf.len() > cap {
                        let head = buf.freeze();
                        let chained = Chained {
                            first: Some(head),
                            rest: body,
                        };
                        return Ok(Peeked {
                            complete: None,
                            body: chained.boxed(),
                        });
                    }
                }
                // Trailers before the cap: keep what we have; trailers are dropped (rare on requests).
                Err(_) => {
                    let b = buf.freeze();
                    return Ok(Peeked {
                        complete: Some(b.clone()),
                        body: full(b),
                    });
                }
            },
        }
    }
}

/// The already-read head, then the remaining frames of the body it was read from.
pub struct Chained<B> {
    first: Option<Bytes>,
    rest: B,
}

impl<B> Chained<B> {
    pub fn new(first: Bytes, rest: B) -> Self {
        Chained {
            first: Some(first),
            rest,
        }
    }
}

impl<B> Body for Chained<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

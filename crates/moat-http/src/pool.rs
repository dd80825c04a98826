//! The upstream connection pool: per thread, lock-free, HTTP/1.1 keep-alive.
//!
//! Each serving thread runs a single-threaded runtime, so its pool is a plain `RefCell` of idle
//! connections and a connection's task never leaves the thread. A connection goes back to the
//! pool only when the response body was read to the end (so it is free for the next request); a
//! response abandoned half-way drops its connection. A request that finds its pooled connection
//! closed by the upstream before it was written is retried once on a fresh connection, the way
//! hyper's own pooled client does.

use crate::body::{BoxError, ProxyBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Idle connections kept per upstream and thread.
const MAX_IDLE: usize = 512;

/// How long an idle connection may wait for reuse. Node.js (Ghost) closes idle keep-alive
/// connections after 5 s; reusing one just as the upstream closes it fails a request that was
/// already written, which cannot be retried safely. Staying under Node's default avoids that
/// race for the apps Moat is most often in front of.
const MAX_IDLE_TIME: Duration = Duration::from_secs(4);

/// One thread's idle upstream connections, per upstream, the most recently used at the back.
/// Both this hyper pool and the fast path's raw pool (`crate::fast`) keep theirs in one.
pub(crate) struct IdleConns<T> {
    by_upstream: HashMap<Arc<str>, VecDeque<(T, tokio::time::Instant)>>,
}

impl<T> Default for IdleConns<T> {
    fn default() -> Self {
        IdleConns {
            by_upstream: HashMap::new(),
        }
    }
}

impl<T> IdleConns<T> {
    /// The most recently returned connection that is still fresh and `usable`; the others
    /// met on the way are dropped.
    pub(crate) fn take(&mut self, key: &str, usable: impl Fn(&T) -> bool) -> Option<T> {
        let v = self.by_upstream.get_mut(key)?;
        while let Some((c, since)) = v.pop_back() {
            if since.elapsed() < MAX_IDLE_TIME && usable(&c) {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `conn` for reuse, unless `MAX_IDLE` are kept already.
    pub(crate) fn put(&mut self, key: &Arc<str>, conn: T) {
        let v = self.by_upstream.entry(key.clone()).or_default();
        // The oldest are at the front: one look there per return keeps the list fresh
        // without reading the clock for every idle connection.
        while v.front().is_some_and(|(_, t)| t.elapsed() >= MAX_IDLE_TIME) {
            v.pop_front();
        }
        if v.len() < MAX_IDLE {
            v.push_back((conn, tokio::time::Instant::now()));
        }
    }
}

thread_local! {
    static IDLE: RefCell<IdleConns<SendRequest<ProxyBody>>> = RefCell::new(IdleConns::default());
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connecting to the upstream {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connecting to the upstream {0} timed out")]
    ConnectTimeout(String),
    #[error("upstream: {0}")]
    Http(#[from] hyper::Error),
}

/// A connection on loan for one request, returned when its response body ends, and only if
/// the request body was sent in full too: an upstream that answers early (401, 413) while a
/// client is still uploading would otherwise hand the next request a connection stuck behind
/// that upload.
pub struct Lease {
    key: std::sync::Arc<str>,
    sender: SendRequest<ProxyBody>,
    request_sent: Arc<AtomicBool>,
}

impl Lease {
    fn give_back(self) {
        if self.sender.is_closed() || !self.request_sent.load(Ordering::Acquire) {
            return;
        }
        IDLE.with(|p| p.borrow_mut().put(&self.key, self.sender));
    }
}

fn take_idle(key: &str) -> Option<SendRequest<ProxyBody>> {
    IDLE.with(|p| p.borrow_mut().take(key, |s| !s.is_closed()))
}

async fn connect(authority: &str, timeout: Duration) -> Result<SendRequest<ProxyBody>, PoolError> {
    let stream = match tokio::time::timeout(timeout, moat_dns::connect_tcp(authority)).await {
        Err(_) => return Err(PoolError::ConnectTimeout(authority.to_string())),
        Ok(Err(e)) => return Err(PoolError::Connect(authority.to_string(), e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Sends `req` to `authority` (host:port) over a pooled or new connection.
pub async fn send(
    authority: std::sync::Arc<str>,
    req: Request<ProxyBody>,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Lease), PoolError> {
    let request_sent = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|b| SentFlag::wrap(b, request_sent.clone()));
    let mut fresh = false;
    loop {
        let mut sender = match take_idle(&authority) {
            Some(s) => s,
            None => {
                fresh = true;
                connect(&authority, connect_timeout).await?
            }
        };
        if sender.ready().await.is_err() {
            if fresh {
                return Err(PoolError::Connect(
                    authority.to_string(),
                    std::io::ErrorKind::ConnectionReset.into(),
                ));
            }
            continue;
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                return Ok((
                    resp,
                    Lease {
                        key: authority,
                        sender,
                        request_sent,
                    },
                ))
            }
            Err(mut e) => match e.take_message() {
                // Never written: the pooled connection was closed under us; try a fresh one.
                Some(back) if !fresh => req = back,
                _ => return Err(PoolError::Http(e.into_error())),
            },
        }
    }
}

/// The request body on its way upstream; sets the flag once it has ended.
pub struct SentFlag {
    inner: ProxyBody,
    sent: Arc<AtomicBool>,
}

impl SentFlag {
    fn wrap(inner: ProxyBody, sent: Arc<AtomicBool>) -> ProxyBody {
        if inner.is_end_stream() {
            sent.store(true, Ordering::Release);
            return inner;
        }
        BodyExt::boxed(SentFlag { inner, sent })
    }
}

impl Body for SentFlag {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.sent.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream's response body; returns its connection to the pool at the end.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    pub fn new(inner: Incoming, lease: Lease) -> Self {
        let mut b = PooledBody {
            inner,
            lease: Some(lease),
        };
        if b.inner.is_end_stream() {
            b.finish();
        }
        b
    }

    fn finish(&mut self) {
        if let Some(l) = self.lease.take() {
            l.give_back();
        }
    }

    pub fn boxed(self) -> ProxyBody {
        BodyExt::boxed(self)
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(f))) => {
                if self.inner.is_end_stream() {
                    self.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.lease = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

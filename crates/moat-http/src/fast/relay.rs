//! Relays a request the policy let through to the upstream over a raw keep-alive connection,
//! and the upstream's response back to the client as it comes, without parsing it into a
//! header map or a body stream. Only the response head is parsed (to drop hop-by-hop headers
//! and learn the framing); the body bytes are passed on as they are.

use super::chunked::Chunked;
use super::head::{self, Framing};
use super::respond;
use crate::pool::IdleConns;
use crate::shield::{text, Shield};
use http::request::Parts;
use http::{Method, StatusCode};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Read size for upstream responses.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static IDLE: RefCell<IdleConns<TcpStream>> = RefCell::new(IdleConns::default());
}

fn take_idle(key: &str) -> Option<TcpStream> {
    IDLE.with(|p| {
        p.borrow_mut().take(key, |s| {
            // A connection the upstream closed (or wrote to unasked) is readable: not usable.
            let mut probe = [0u8; 1];
            matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
    })
}

fn give_back(key: &Arc<str>, s: TcpStream) {
    IDLE.with(|p| p.borrow_mut().put(key, s));
}

async fn connect(authority: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = match tokio::time::timeout(timeout, moat_dns::connect_tcp(authority)).await {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The buffers one relay uses, kept per thread between requests: allocating a 16 KiB read
/// buffer per request costs more than the copy it is for. Only as many exist as requests
/// were in flight at once on the thread.
#[derive(Default)]
struct Buffers {
    req: Vec<u8>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// Free buffers kept per thread; more than this are dropped when returned.
const SPARE_BUFFERS: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Buffers>> = const { RefCell::new(Vec::new()) };
}

/// A set of buffers on loan, returned (emptied, and shrunk if a big body grew them) on drop.
struct Loan(Option<Buffers>);

impl Buffers {
    fn take() -> Loan {
        let b = SPARE
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| Buffers {
                req: Vec::with_capacity(1024),
                buf: Vec::with_capacity(READ_CHUNK),
                out: Vec::with_capacity(1024),
            });
        Loan(Some(b))
    }
}

impl std::ops::Deref for Loan {
    type Target = Buffers;
    fn deref(&self) -> &Buffers {
        self.0.as_ref().expect("buffers are on loan until drop")
    }
}

impl std::ops::DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut Buffers {
        self.0.as_mut().expect("buffers are on loan until drop")
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        let Some(mut b) = self.0.take() else { return };
        for v in [&mut b.req, &mut b.buf, &mut b.out] {
            v.clear();
            v.shrink_to(4 * READ_CHUNK);
        }
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_BUFFERS {
                s.push(b);
            }
        });
    }
}

/// What went wrong before the client saw a byte of the response: answered with 502 or 504.
enum Failed {
    Timeout,
    Upstream(String),
}

/// Sends the request `parts` (already prepared) upstream and relays the response to `client`;
/// `start` is when the request's head was parsed, for its latency. `Ok(true)`: the response
/// went out whole but the client's connection must close after it (the client asked, or the
/// body ended with the upstream's close). `Err`: it must close now (the client went away, or
/// the response was cut off after its head was sent).
pub async fn relay<C>(
    shield: &Shield,
    client: &mut C,
    parts: &Parts,
    client_close: bool,
    start: std::time::Instant,
) -> std::io::Result<bool>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let lim = &shield.cfg.limits;
    let mut bufs = Buffers::take();
    let Buffers { req, buf, out } = &mut *bufs;
    head::write_request(parts, req);
    let key = shield.upstream_authority();
    // Also when the upstream's latency starts (`Metrics::upstream_latency`).
    let sent = Instant::now();
    let deadline = sent + lim.upstream_timeout;
    let mut fresh = false;
    let (mut up, resp) = loop {
        let (mut up, reused) = match take_idle(key) {
            Some(s) => (s, true),
            None => {
                fresh = true;
                let t = lim.upstream_timeout.min(Duration::from_secs(10));
                match connect(key, t).await {
                    Ok(s) => (s, false),
                    Err(e) => {
                        let why = Failed::Upstream(e.to_string());
                        return fail(shield, client, parts, client_close, why, start).await;
                    }
                }
            }
        };
        buf.clear();
        out.clear();
        match exchange(
            &mut up,
            req,
            buf,
            out,
            client,
            &parts.method,
            client_close,
            deadline,
            lim.idle_timeout,
        )
        .await
        {
            Ok(resp) => break (up, resp),
            // A reused connection the upstream had closed before reading our request: nothing
            // reached the app, and GET and HEAD are safe to send again on a fresh one.
            Err(Exchange::Stale) if reused && !fresh => continue,
            Err(Exchange::Stale) => {
                let why = Failed::Upstream("the upstream closed the connection".into());
                return fail(shield, client, parts, client_close, why, start).await;
            }
            Err(Exchange::Timeout) => {
                return fail(shield, client, parts, client_close, Failed::Timeout, start).await
            }
            Err(Exchange::Bad(e)) => {
                let why = Failed::Upstream(e);
                return fail(shield, client, parts, client_close, why, start).await;
            }
            Err(Exchange::Client(e)) => return Err(e),
        }
    };
    shield.metrics.observe_forwarded(start, sent.into_std());
    // `out` holds the client's head; `buf[resp.len..]` whatever of the body came with it.
    let body = &buf[resp.len..];
    let idle = lim.idle_timeout;
    match resp.framing {
        Framing::Empty => {
            respond::send(client, out, idle).await?;
            // After a HEAD the connection is not kept: an app that sends the body anyway
            // (frameworks that answer HEAD as GET do) would have those bytes read as the next
            // request's response when they come late, failing someone else's request. The
            // check on taking a connection from the pool only sees bytes that already came.
            // HEAD is rare; a new connection is cheap.
            if resp.reusable && body.is_empty() && parts.method != Method::HEAD {
                give_back(key, up);
            }
        }
        Framing::Length(n) => {
            let first = body.len().min(n as usize);
            out.extend_from_slice(&body[..first]);
            respond::send(client, out, idle).await?;
            let extra = body.len() > first;
            let mut left = n - first as u64;
            while left > 0 {
                let got = read_body(&mut up, buf, lim.upstream_timeout).await?;
                let take = (got as u64).min(left) as usize;
                respond::send(client, &buf[..take], idle).await?;
                left -= take as u64;
                if got > take {
                    return Ok(resp.close_client); // the upstream sent more than it said
                }
            }
            if resp.reusable && !extra {
                give_back(key, up);
            }
        }
        Framing::Chunked => {
            let mut chunks = Chunked::default();
            let (end, rest) = match chunks.feed(body).map_err(std::io::Error::other)? {
                Some(end) => (end, body.len() > end),
                None => (body.len(), false),
            };
            out.extend_from_slice(&body[..end]);
            respond::send(client, out, idle).await?;
            while !chunks.done() {
                let got = read_body(&mut up, buf, lim.upstream_timeout).await?;
                match chunks.feed(&buf[..got]).map_err(std::io::Error::other)? {
                    Some(end) => {
                        respond::send(client, &buf[..end], idle).await?;
                        if end < got {
                            return Ok(resp.close_client);
                        }
                    }
                    None => respond::send(client, &buf[..got], idle).await?,
                }
            }
            if resp.reusable && !rest {
                give_back(key, up);
            }
        }
        Framing::UntilClose => {
            out.extend_from_slice(body);
            respond::send(client, out, idle).await?;
            loop {
                let got = read_more(&mut up, buf, lim.upstream_timeout).await?;
                if got == 0 {
                    break;
                }
                respond::send(client, &buf[..got], idle).await?;
            }
            let _ = client.shutdown().await;
            return Ok(true);
        }
    }
    Ok(resp.close_client)
}

/// Reads the next bytes of a response body into `buf`, replacing what it held; 0 at the
/// upstream's close.
async fn read_more(
    up: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<usize> {
    buf.clear();
    buf.reserve(READ_CHUNK);
    match tokio::time::timeout(timeout, up.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// [`read_more`] where the framing says more must come: the upstream's close is an error.
async fn read_body(
    up: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<usize> {
    match read_more(up, buf, timeout).await? {
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the upstream closed the connection mid-body",
        )),
        n => Ok(n),
    }
}

enum Exchange {
    /// Nothing came back on a connection that may have been closed under us.
    Stale,
    Timeout,
    Bad(String),
    /// Writing an interim response to the client failed.
    Client(std::io::Error),
}

/// Writes the request and reads the final response head into `buf`, relaying interim (1xx)
/// heads to the client on the way. Leaves the client's head for the final response in `out`.
#[allow(clippy::too_many_arguments)]
async fn exchange<C: AsyncWrite + Unpin>(
    up: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    client: &mut C,
    method: &Method,
    client_close: bool,
    deadline: Instant,
    idle: Duration,
) -> Result<head::ResponseHead, Exchange> {
    if up.write_all(req).await.is_err() {
        return Err(Exchange::Stale);
    }
    let mut received = false;
    loop {
        buf.reserve(READ_CHUNK);
        let n = match tokio::time::timeout_at(deadline, up.read_buf(buf)).await {
            Err(_) => return Err(Exchange::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) if !received => return Err(Exchange::Stale),
            Ok(Err(e)) => return Err(Exchange::Bad(e.to_string())),
            Ok(Ok(0)) => return Err(Exchange::Bad("the upstream closed mid-head".into())),
            Ok(Ok(n)) => n,
        };
        received |= n > 0;
        loop {
            out.clear();
            match head::parse_response(buf, method, client_close, out) {
                Ok(None) => break,
                Ok(Some(h)) if h.interim => {
                    respond::send(client, out, idle)
                        .await
                        .map_err(Exchange::Client)?;
                    buf.drain(..h.len);
                }
                Ok(Some(h)) => return Ok(h),
                Err(e) => return Err(Exchange::Bad(e.to_string())),
            }
        }
    }
}

/// Answers a request the upstream could not: 504 on a timeout, 502 otherwise.
async fn fail<C: AsyncWrite + Unpin>(
    shield: &Shield,
    client: &mut C,
    parts: &Parts,
    client_close: bool,
    why: Failed,
    start: std::time::Instant,
) -> std::io::Result<bool> {
    shield.note_upstream_error(start);
    let resp = match why {
        Failed::Timeout => text(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"),
        Failed::Upstream(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            text(StatusCode::BAD_GATEWAY, "Bad Gateway\n")
        }
    };
    let idle = shield.cfg.limits.idle_timeout;
    respond::write(client, resp, &parts.method, client_close, idle).await?;
    Ok(client_close)
}

//! The fast path for plain HTTP/1.1 connections.
//!
//! Nearly all requests a site gets are `GET`s and `HEAD`s without a body. For those, hyper's
//! general machinery (a header map per message on both sides, a connection task and channels
//! for the upstream, a timer reset per read) costs more CPU than the policy itself, and on a
//! small machine that CPU is the proxy's throughput. The fast path serves such requests with
//! one task per connection:
//!
//! 1. it parses the head itself (`head`), and hands the connection to hyper, with every byte
//!    read so far, at the first request it does not take (a body, an upgrade, HTTP/1.0,
//!    HTTP/2, anything malformed or oversized), before anything was decided about it;
//! 2. it runs the same policy as the hyper path (`Shield::decide`);
//! 3. it relays what the policy forwards over a raw keep-alive connection (`relay`), and
//!    writes what Moat answers itself the way hyper would (`respond`).
//!
//! Responses that must be rewritten (the page script, a decoy being learned) go through the
//! hyper client as before and are then written out by `respond`.

mod chunked;
/// Public for the differential framing check against hyper (`fuzz/fuzz_targets/framing_diff.rs`,
/// `tests/framing_diff.rs`); nothing else outside the fast path uses it.
#[doc(hidden)]
pub mod head;
mod relay;
mod respond;

use crate::live::LiveShield;
use crate::shield::{ConnInfo, Decision};
use head::Parsed;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

/// How the fast path left a connection.
pub enum Served {
    /// Closed (by either side, a timeout, or shutdown).
    Closed,
    /// Hyper takes it from here: these bytes were read and not yet served.
    Handover(Vec<u8>),
}

/// Serves requests on `io` until the connection ends or a request needs hyper.
pub async fn serve<S>(
    live: &LiveShield,
    io: &mut S,
    info: ConnInfo,
    shutdown: &mut watch::Receiver<bool>,
) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = live.current();
    let lim = &first.cfg.limits;
    let max_head = lim.max_header_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // One idle timer for the connection's life, moved only when it fires early: re-arming a
    // timer for every request costs more than the rest of the wait.
    let mut last_active = Instant::now();
    let idle = tokio::time::sleep_until(last_active + lim.idle_timeout);
    tokio::pin!(idle);
    loop {
        // Between requests: the idle timeout, and shutdown closes an idle connection.
        while buf.is_empty() {
            buf.reserve(4096);
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                _ = &mut idle => {
                    let due = last_active + lim.idle_timeout;
                    if due <= Instant::now() {
                        return Served::Closed;
                    }
                    idle.as_mut().reset(due);
                    continue;
                }
                _ = shutdown.changed() => return Served::Closed,
            };
            match read {
                Ok(0) | Err(_) => return Served::Closed,
                Ok(_) => {}
            }
        }
        // The rest of the head within the header timeout, counted from its first byte.
        let mut deadline: Option<Instant> = None;
        let (parts, len, close, body_len) = loop {
            match head::parse_request(&buf, max_head) {
                Parsed::Eligible {
                    parts,
                    len,
                    close,
                    body,
                } => break (parts, len, close, body),
                Parsed::Handover => return Served::Handover(buf),
                Parsed::Partial => {}
            }
            let d = *deadline.get_or_insert_with(|| Instant::now() + lim.header_timeout);
            buf.reserve(4096);
            match tokio::time::timeout_at(d, io.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Served::Closed,
            }
        };
        // A body over the limit is answered 413 at once, unread: hyper's path does that.
        if body_len as u64 > lim.max_body_bytes {
            return Served::Handover(buf);
        }
        // The body, whole, within the body timeout (as hyper's path bounds it): a form of a
        // few hundred bytes, so the policy reads it from memory. While the client is still
        // sending it, its bytes count against the memory budget that hyper's path reads
        // bodies under too (`limits.max_body_memory_bytes`).
        let mut held = None;
        if buf.len() < len + body_len {
            let current = live.current();
            held = Box::pin(current.reserve_body(body_len, Some(body_len as u64))).await;
            if held.is_none() {
                let busy = current.body_budget_spent();
                let _ = Box::pin(respond::write(
                    io,
                    busy,
                    &parts.method,
                    true,
                    lim.idle_timeout,
                ))
                .await;
                return Served::Closed;
            }
            let d = Instant::now() + lim.body_timeout;
            while buf.len() < len + body_len {
                buf.reserve(len + body_len - buf.len());
                match tokio::time::timeout_at(d, io.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return Served::Closed,
                    Err(_) => {
                        let stalled = crate::body::BodyError::Timeout(lim.body_timeout);
                        let late = crate::shield::body_error_kind(&stalled);
                        let _ = Box::pin(respond::write(
                            io,
                            late,
                            &parts.method,
                            true,
                            lim.idle_timeout,
                        ))
                        .await;
                        return Served::Closed;
                    }
                }
            }
        }
        let body = bytes::Bytes::copy_from_slice(&buf[len..len + body_len]);
        buf.drain(..len + body_len);
        drop(held);
        // The request's latency counts from its head parsed (`Metrics::request_latency`).
        let start = std::time::Instant::now();
        // The policy in force when this request starts (a reload applies from the next one).
        let shield = live.current();
        let method = parts.method.clone();
        // Only GET and HEAD go over the raw relay: it sends no body, and it sends a request
        // again on a fresh connection when a pooled one turns out closed, which is safe only
        // for them. A POST that passes goes through the hyper client.
        let relayable = body_len == 0 && matches!(method, http::Method::GET | http::Method::HEAD);
        let body = http_body_util::Full::new(body);
        // The policy's and the forwarding's futures are boxed: inline, they would make every
        // connection's state as large as theirs for its whole life, idle or not.
        let done = match Box::pin(shield.decide(parts, body, info)).await {
            Decision::Respond(resp) => {
                let resp = crate::decoy::release(resp).await;
                shield.metrics.observe_answered(start);
                let close = close || says_close(resp.headers());
                Box::pin(respond::write(io, resp, &method, close, lim.idle_timeout))
                    .await
                    .map(|()| close)
            }
            Decision::Forward(f) => {
                let p = shield.prepare_forward(f.parts, f.client, f.ssl, &f.host);
                if relayable && p.passes_through() && f.watch.is_empty() {
                    Box::pin(relay::relay(&shield, io, &p.parts, close, start)).await
                } else {
                    let resp = Box::pin(shield.send_forward(p, f.body, f.watch, start)).await;
                    Box::pin(respond::write(io, resp, &method, close, lim.idle_timeout))
                        .await
                        .map(|()| close)
                }
            }
        };
        match done {
            Ok(false) => last_active = Instant::now(),
            Ok(true) | Err(_) => return Served::Closed,
        }
    }
}

/// Whether one of Moat's own responses ends the connection (`Connection: close`, as a framing
/// refusal says): hyper's server closes after such a response, and so does the fast path.
fn says_close(h: &http::HeaderMap) -> bool {
    h.get_all(http::header::CONNECTION)
        .iter()
        .any(|v| head::has_token(v.as_bytes(), "close"))
}

#[cfg(test)]
mod tests {
    use super::says_close;

    #[test]
    fn a_refusal_ends_the_connection_as_on_hyper() {
        let req = |raw: &[u8]| match super::head::parse_request(raw, 8192) {
            super::head::Parsed::Eligible { parts, .. } => parts,
            other => panic!("not the fast path's: {other:?}"),
        };
        // Two Hosts, and none: requests the fast path takes and the policy refuses.
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let refused = crate::framing::refusal(&req(raw)).expect("refused");
            assert!(says_close(refused.headers()), "{raw:?}");
        }
        let mut h = http::HeaderMap::new();
        assert!(!says_close(&h));
        h.append("connection", "keep-alive".parse().unwrap());
        assert!(!says_close(&h));
        h.append("connection", "upgrade, Close".parse().unwrap());
        assert!(says_close(&h));
    }
}

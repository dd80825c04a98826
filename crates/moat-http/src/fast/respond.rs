//! Writes one of Moat's own responses (a block, a decoy, a challenge page, an error, or a
//! response that went through hyper's client to be learned or to get the page script) on a
//! fast-path connection, encoded the way hyper's server encodes it: the headers in order, then
//! `content-length` (or chunked when the length is unknown), then `date`.

use crate::body::ProxyBody;
use http::header::{self, HeaderMap};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use std::cell::RefCell;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bodies up to this size (and of a known length) go out with their head in one write.
const SINGLE_WRITE: u64 = 64 * 1024;

/// Statuses that never carry a body, whatever the request.
fn bodyless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Encodes the status line and headers. `length`: the body's exact size, if known.
fn head(
    status: StatusCode,
    headers: &HeaderMap,
    length: Option<u64>,
    close: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in headers {
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::CONTENT_LENGTH
        {
            continue; // framing is Moat's to decide on this hop
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !bodyless(status) {
        match length {
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d.as_bytes()));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The formatted date and the second it is for: formatting it per response is wasted work.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn with_date(f: impl FnOnce(&str)) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        f(&d.1);
    });
}

/// Writes `resp` to the client; `Err` when the client went away or stalled for `timeout`, or
/// the body failed half-way (the connection must then close: the client cannot tell where this
/// response ends).
pub async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: Response<ProxyBody>,
    method: &Method,
    close: bool,
    timeout: Duration,
) -> std::io::Result<()> {
    let (parts, mut body) = resp.into_parts();
    let exact = body.size_hint().exact();
    let mut out = Vec::with_capacity(512);
    head(parts.status, &parts.headers, exact, close, &mut out);
    if *method == Method::HEAD || bodyless(parts.status) {
        return send(io, &out, timeout).await;
    }
    let chunked = exact.is_none();
    if exact.is_some_and(|n| n <= SINGLE_WRITE) {
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.map_err(std::io::Error::other)?.into_data() {
                out.extend_from_slice(&d);
            }
        }
        return send(io, &out, timeout).await;
    }
    send(io, &out, timeout).await?;
    while let Some(frame) = body.frame().await {
        let Ok(d) = frame.map_err(std::io::Error::other)?.into_data() else {
            continue; // trailers are not relayed
        };
        if d.is_empty() {
            continue;
        }
        if chunked {
            out.clear();
            out.extend_from_slice(format!("{:x}\r\n", d.len()).as_bytes());
            out.extend_from_slice(&d);
            out.extend_from_slice(b"\r\n");
            send(io, &out, timeout).await?;
        } else {
            send(io, &d, timeout).await?;
        }
    }
    if chunked {
        send(io, b"0\r\n\r\n", timeout).await?;
    }
    Ok(())
}

/// Writes all of `bytes`, giving up when the peer accepts nothing for `timeout`.
pub async fn send<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    // Nearly every write fits the socket buffer at once; only one that does not needs the
    // clock read and the timer a timeout costs.
    let mut io = std::pin::Pin::new(io);
    let first = std::future::poll_fn(|cx| match io.as_mut().poll_write(cx, bytes) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await;
    let rest = match first {
        Some(Ok(0)) if !bytes.is_empty() => return Err(std::io::ErrorKind::WriteZero.into()),
        Some(Ok(n)) if n == bytes.len() => return Ok(()),
        Some(Ok(n)) => &bytes[n..],
        Some(Err(e)) => return Err(e),
        None => bytes,
    };
    match tokio::time::timeout(timeout, io.write_all(rest)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;

    #[tokio::test]
    async fn encodes_like_hyper() {
        let mut resp = Response::new(full("Created."));
        *resp.status_mut() = StatusCode::CREATED;
        resp.headers_mut()
            .insert("x-powered-by", http::HeaderValue::from_static("Express"));
        let mut out = Vec::new();
        write(&mut out, resp, &Method::GET, false, Duration::from_secs(1))
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 201 Created");
        assert_eq!(lines[1], "x-powered-by: Express");
        assert_eq!(lines[2], "content-length: 8");
        assert!(lines[3].starts_with("date: ") && lines[3].ends_with(" GMT"));
        assert_eq!(body, "Created.");
    }

    #[tokio::test]
    async fn head_requests_get_no_body_and_closing_says_so() {
        let mut out = Vec::new();
        let resp = Response::new(full("hello"));
        write(&mut out, resp, &Method::HEAD, true, Duration::from_secs(1))
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 5\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn unknown_lengths_are_chunked() {
        let stream = futures_stream(vec!["ab", "cde"]);
        let mut out = Vec::new();
        write(
            &mut out,
            Response::new(stream),
            &Method::GET,
            false,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(
            text.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );
    }

    /// A body of unknown length made of `parts`.
    fn futures_stream(parts: Vec<&'static str>) -> ProxyBody {
        Pieces(parts.into_iter().rev().collect()).boxed()
    }

    struct Pieces(Vec<&'static str>);

    impl Body for Pieces {
        type Data = bytes::Bytes;
        type Error = crate::body::BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>>
        {
            let next = self.0.pop().map(|p| Ok(hyper::body::Frame::data(p.into())));
            std::task::Poll::Ready(next)
        }
    }
}

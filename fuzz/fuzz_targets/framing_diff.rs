//! Differential framing: the fast path's request parser against hyper's HTTP/1 server on the
//! same bytes. A request the fast path takes is decided and forwarded without hyper, so where
//! the two read a stream differently a request can be smuggled past the rules. Checked:
//!
//! - every request the fast path takes (`Parsed::Eligible`) is one hyper delivers too, at the
//!   same place in the stream, with the same method, target, version, header list and body;
//! - where the fast path stops taking requests (a request it hands over, the end of the
//!   stream), what hyper then makes of the rest of the bytes is exactly what hyper makes of the
//!   same stretch of the whole stream: Moat = fast path, then hyper from the handover on, must
//!   read the stream as hyper alone does. So the fast path's head length plus body length is
//!   hyper's boundary, and a request hyper rejects is never one the fast path took;
//! - the only thing the fast path may do otherwise is stop earlier: it closes after a request
//!   whose `Connection` lists `close` even where hyper, which reads a `Connection` value only
//!   if it is all visible ASCII, would go on (a request fewer, never one more);
//! - the head the fast path writes upstream for a request it takes reads back as the same
//!   request (names lowercased), so the upstream frames it as the fast path did.
//!
//! Hyper serves the stream from memory: every byte is readable at once, then the read side
//! ends (as a client that writes its bytes and shuts down its write side), and each request is
//! answered `200` after its whole body was read. The fast path gets the same bytes split into
//! reads where the input says, as `fast::serve` gets them from a socket.
//!
//! Input: a control byte whose low two bits are a number of read splits, then that many
//! big-endian u16 split offsets, then the byte stream. The same file runs on stable as a plain
//! test (`crates/moat-http/tests/framing_diff.rs` includes it) over the seeds, the regression
//! cases and generated and mutated streams, and generates the seeds in
//! `fuzz/seeds/framing_diff` ([`seeds`]).
#![cfg_attr(not(test), no_main)]
// The seed generator and the summary are used by the stable test only.
#![cfg_attr(not(test), allow(dead_code))]

use hyper::body::{Body as _, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use moat_http::fast::head::{parse_request, write_request, Parsed};
use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// The header cap both sides get: Moat's default `limits.max_header_bytes`.
pub const MAX_HEAD: usize = 32 * 1024;

/// A request head as delivered: method, target, version, and every header in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn of(parts: &hyper::http::request::Parts) -> Head {
        Head {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            version: format!("{:?}", parts.version),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Whole(Vec<u8>),
    /// The stream ended inside it (hyper: the body is an error; the fast path: the
    /// connection closes before anything was decided).
    Cut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub head: Head,
    pub body: Body,
}

/// The stream as one read side that has everything at once and then ends; writes vanish.
struct Mock<'a> {
    data: &'a [u8],
}

impl Read for Mock<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.data.len());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl Write for Mock<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Polls `f` to the end. Nothing here ever waits on the outside world (the stream is all in
/// memory, writes always succeed), so a pending poll is only hyper yielding; a bound catches
/// a harness that would spin for ever.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("hyper's connection did not finish");
}

async fn read_body(mut b: Incoming) -> Body {
    let mut out = Vec::new();
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await {
            None => return Body::Whole(out),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    out.extend_from_slice(d);
                }
            }
            Some(Err(_)) => return Body::Cut,
        }
    }
}

/// Every request hyper's HTTP/1 server delivers from `stream`, configured as Moat's
/// (`server.rs`: keep-alive, `max_buf_size` = the header cap, at least 8192).
pub fn hyper_requests(stream: &[u8]) -> Vec<Req> {
    let seen: Rc<RefCell<Vec<Req>>> = Rc::default();
    let sink = seen.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let sink = sink.clone();
        async move {
            let (parts, body) = req.into_parts();
            let head = Head::of(&parts);
            let body = read_body(body).await;
            sink.borrow_mut().push(Req { head, body });
            Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.keep_alive(true)
        .half_close(true)
        .max_buf_size(MAX_HEAD.max(8192));
    // An error is hyper refusing something (400, 431, an incomplete message): what it
    // delivered before it is what counts.
    let _ = block_on(b.serve_connection(Mock { data: stream }, svc));
    let out = seen.borrow().clone();
    out
}

/// How the fast path left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The stream ended between requests or inside a head.
    Eof,
    /// A request it took asked to close.
    Close,
    /// The stream ended inside the body of a request it took.
    CutBody,
    /// Hyper takes the stream from this offset.
    Handover(usize),
}

/// What `fast::serve` makes of `stream` when it arrives in reads ending at `cuts` (sorted,
/// the last one the stream's length): the requests it takes, and where it stops.
pub fn fast_requests(stream: &[u8], cuts: &[usize]) -> (Vec<Req>, End) {
    let mut cuts = cuts.iter().copied();
    let mut avail = 0;
    let mut read_more = |avail: &mut usize| -> bool {
        for c in cuts.by_ref() {
            if c > *avail {
                *avail = c;
                return true;
            }
        }
        false
    };
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        if avail == pos && !read_more(&mut avail) {
            return (out, End::Eof);
        }
        let (parts, len, close, body) = loop {
            match parse_request(&stream[pos..avail], MAX_HEAD) {
                Parsed::Eligible {
                    parts,
                    len,
                    close,
                    body,
                } => break (parts, len, close, body),
                Parsed::Handover => return (out, End::Handover(pos)),
                Parsed::Partial => {
                    if !read_more(&mut avail) {
                        return (out, End::Eof);
                    }
                }
            }
        };
        let head = Head::of(&parts);
        check_written_head(&parts, body);
        while avail < pos + len + body {
            if !read_more(&mut avail) {
                out.push(Req {
                    head,
                    body: Body::Cut,
                });
                return (out, End::CutBody);
            }
        }
        out.push(Req {
            head,
            body: Body::Whole(stream[pos + len..pos + len + body].to_vec()),
        });
        pos += len + body;
        if close {
            return (out, End::Close);
        }
    }
}

/// The head the relay writes upstream (`head::write_request`) is a head the fast path reads
/// back as the same request, whole, with the same body length.
fn check_written_head(parts: &hyper::http::request::Parts, body: usize) {
    let mut out = Vec::new();
    write_request(parts, &mut out);
    let written = out.len();
    out.extend(std::iter::repeat_n(b'b', body));
    match parse_request(&out, usize::MAX) {
        Parsed::Eligible {
            parts: again,
            len,
            body: b,
            ..
        } => {
            assert_eq!(
                (len, b),
                (written, body),
                "the written head frames otherwise"
            );
            assert_eq!(
                Head::of(&again),
                Head::of(parts),
                "the written head reads otherwise"
            );
        }
        other => panic!(
            "the written head {:?} is not one the fast path takes: {other:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Whether hyper reads a `close` in these `Connection` values (as `hyper::headers`: only
/// values that are valid visible ASCII count).
fn hyper_reads_close(head: &Head) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .filter(|v| v.bytes().all(|b| b == b'\t' || (32..127).contains(&b)))
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// What a run saw, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Requests the fast path took.
    pub fast: usize,
    /// Requests hyper delivered from the whole stream.
    pub hyper: usize,
    /// The fast path handed the connection over.
    pub handover: bool,
    /// The fast path closed after a request hyper would have gone on from.
    pub closed_early: bool,
}

/// Splits the input into read cuts and the stream (see the header).
pub fn split_input(data: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let (&ctl, rest) = data.split_first()?;
    let splits = usize::from(ctl & 3);
    if rest.len() < 2 * splits {
        return None;
    }
    let (head, stream) = rest.split_at(2 * splits);
    let mut cuts: Vec<usize> = head
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    Some((cuts, stream))
}

/// The fuzz body: both readings of the stream, compared.
pub fn run(data: &[u8]) -> Seen {
    let Some((cuts, stream)) = split_input(data) else {
        return Seen::default();
    };
    let reference = hyper_requests(stream);
    let (taken, end) = fast_requests(stream, &cuts);
    let mut seen = Seen {
        fast: taken.len(),
        hyper: reference.len(),
        handover: matches!(end, End::Handover(_)),
        closed_early: false,
    };
    let shown = || String::from_utf8_lossy(stream).into_owned();
    for (i, r) in taken.iter().enumerate() {
        let Some(h) = reference.get(i) else {
            panic!(
                "the fast path took request {i} ({r:?}), which hyper does not deliver\n\
                 stream: {:?}",
                shown()
            );
        };
        assert_eq!(
            r,
            h,
            "request {i}: the fast path (left) and hyper (right) read it otherwise\n\
             stream: {:?}",
            shown()
        );
    }
    match end {
        End::Handover(at) => {
            let rest = hyper_requests(&stream[at..]);
            assert_eq!(
                &reference[taken.len()..],
                &rest[..],
                "after {} fast-path requests (handover at byte {at}), hyper reads the rest \
                 (right) otherwise than the whole stream (left)\nstream: {:?}",
                taken.len(),
                shown()
            );
        }
        End::Eof | End::CutBody => assert_eq!(
            reference.len(),
            taken.len(),
            "hyper delivers more requests than the fast path saw in the stream\nstream: {:?}",
            shown()
        ),
        End::Close => {
            if reference.len() > taken.len() {
                let last = &taken.last().expect("closed after a request").head;
                assert!(
                    !hyper_reads_close(last),
                    "hyper goes on after a close it read itself\nstream: {:?}",
                    shown()
                );
                seen.closed_early = true;
            }
        }
    }
    seen
}

/// Requests in the shapes proxies disagree on (the e2e corpus in
/// `tests/e2e/test_smuggling.py` sends them through real proxies), each as a fuzz input
/// (control byte: no splits), and a few split into reads at awkward places: the seeds in
/// `fuzz/seeds/framing_diff`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    const H: &str = "Host: a.example\r\n";
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\n{H}\r\n");
    let post = |path: &str, extra: &str, body: &str| {
        format!("POST {path} HTTP/1.1\r\n{H}{extra}\r\n{body}")
    };
    let smuggled = "GET /admin-secret HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut s: Vec<(&str, String)> = vec![
        ("get", get("/")),
        ("get-pipelined", get("/a") + &get("/b?c=d")),
        (
            "head-close",
            format!("HEAD / HTTP/1.1\r\n{H}Connection: keep-alive, Close\r\n\r\n") + &get("/x"),
        ),
        (
            "post-length",
            post("/form", "Content-Length: 5\r\n", "hello") + &get("/after"),
        ),
        ("post-no-length", post("/form", "", "") + &get("/after")),
        (
            "cl-te",
            post(
                "/",
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nG",
            ) + smuggled,
        ),
        (
            "te-cl",
            post(
                "/",
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "8\r\nSMUGGLED\r\n0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-space",
            post(
                "/",
                "Content-Length: 4\r\nTransfer-Encoding: chunked \r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-xchunked",
            post(
                "/",
                "Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-space-before-colon",
            post(
                "/",
                "Content-Length: 4\r\nTransfer-Encoding : chunked\r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-tab",
            post(
                "/",
                "Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-twice",
            post(
                "/",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "te-list",
            post("/", "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n") + smuggled,
        ),
        (
            "te-x-chunked",
            post("/", "Transfer-Encoding: x, chunked\r\n", "0\r\n\r\n") + smuggled,
        ),
        (
            "cl-twice-same",
            post("/", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello") + &get("/b"),
        ),
        (
            "cl-twice-differ",
            post("/", "Content-Length: 5\r\nContent-Length: 40\r\n", "hello") + smuggled,
        ),
        (
            "cl-list",
            post("/", "Content-Length: 5, 5\r\n", "hello") + &get("/b"),
        ),
        (
            "cl-plus",
            post("/", "Content-Length: +5\r\n", "hello") + &get("/b"),
        ),
        (
            "cl-zeros",
            post("/", "Content-Length: 0005\r\n", "hello") + &get("/b"),
        ),
        (
            "cl-on-get",
            format!(
                "GET / HTTP/1.1\r\n{H}Content-Length: {}\r\n\r\n",
                smuggled.len()
            ) + smuggled,
        ),
        (
            "bare-lf",
            "GET /a HTTP/1.1\nHost: a.example\n\nGET /b HTTP/1.1\nHost: a.example\n\n".into(),
        ),
        (
            "bare-lf-post",
            "POST /a HTTP/1.1\nHost: a.example\nContent-Length: 2\n\nhi".to_string() + smuggled,
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\n{H}X-Folded: a\r\n b\r\n\r\n") + &get("/b"),
        ),
        (
            "obs-fold-te",
            post(
                "/",
                "Content-Length: 4\r\nX: y\r\n Transfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "chunk-overflow",
            post(
                "/",
                "Transfer-Encoding: chunked\r\n",
                "ffffffffffffffff1\r\nx\r\n0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "chunk-ext",
            post(
                "/",
                "Transfer-Encoding: chunked\r\n",
                "2;a=\"b\\\"\"\r\nhi\r\n0\r\n\r\n",
            ) + &get("/b"),
        ),
        (
            "chunk-0x",
            post(
                "/",
                "Transfer-Encoding: chunked\r\n",
                "0x2\r\nhi\r\n0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "chunk-space",
            post(
                "/",
                "Transfer-Encoding: chunked\r\n",
                " 2\r\nhi\r\n0\r\n\r\n",
            ) + smuggled,
        ),
        (
            "expect-body",
            post(
                "/",
                "Expect: 100-continue\r\nContent-Length: 5\r\n",
                "hello",
            ) + &get("/b"),
        ),
        (
            "expect-no-body",
            format!("GET / HTTP/1.1\r\n{H}Expect: 100-continue\r\n\r\n") + &get("/b"),
        ),
        (
            "get-then-blocked-post",
            get("/") + &post("/admin-secret", "Content-Length: 2\r\n", "hi"),
        ),
        (
            "http10-keep-alive",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_string() + &get("/b"),
        ),
        (
            "upgrade",
            format!("GET /ws HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                + smuggled,
        ),
        (
            "two-hosts",
            "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".to_string() + &get("/b"),
        ),
        ("no-host", "GET / HTTP/1.1\r\n\r\n".to_string() + &get("/b")),
        (
            "absolute-form",
            format!("GET http://b.example/admin-secret HTTP/1.1\r\n{H}\r\n") + &get("/b"),
        ),
        (
            "nul-in-value",
            format!("GET / HTTP/1.1\r\n{H}X: a\0b\r\n\r\n") + &get("/b"),
        ),
        (
            "cr-in-value",
            format!("GET / HTTP/1.1\r\n{H}X: a\rb\r\n\r\n") + &get("/b"),
        ),
        (
            "connection-close-non-ascii",
            format!("GET / HTTP/1.1\r\n{H}Connection: close, \u{e9}\r\n\r\n") + &get("/b"),
        ),
        (
            "leading-crlf",
            "\r\n\r\n".to_string() + &get("/a") + "\r\n" + &get("/b"),
        ),
        ("cut-body", post("/", "Content-Length: 50\r\n", "short")),
        ("cut-head", format!("GET / HTTP/1.1\r\n{H}X-Half: ")),
        ("h2-preface", get("/") + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ];
    s.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (name, stream) in s {
        let stream = stream.into_bytes();
        let mut plain = vec![0u8];
        plain.extend_from_slice(&stream);
        out.push((name.to_string(), plain));
    }
    // A few split into reads: inside the request line, inside a header, inside the body.
    for name in ["post-length", "get-pipelined", "cl-twice-same"] {
        let stream = &out.iter().find(|(n, _)| n == name).unwrap().1[1..];
        let mut split = vec![3u8];
        for cut in [3usize, stream.len() / 3, stream.len() - 4] {
            split.extend_from_slice(&(cut as u16).to_be_bytes());
        }
        split.extend_from_slice(stream);
        out.push((format!("{name}-split"), split));
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (name, d))| (format!("{i:02}-{name}"), d))
        .collect()
}

//! HTTP/1.1 heads on the fast path, free of I/O: which requests the fast path may take, the
//! request head as the upstream gets it, and the response head as the client gets it together
//! with how its body is framed.
//!
//! The fast path is deliberately narrow. It takes only what nearly all traffic is (an
//! HTTP/1.1 `GET` or `HEAD` without a body, upgrade or expectation, in origin form) and what
//! scripts flood a site with (a `POST` whose small body is framed by one plain
//! `Content-Length`), and leaves everything else to hyper, which then serves the rest of the
//! connection. A request it is unsure about is never half-handled: it is handed over before
//! anything was decided, so hyper answers malformed and oversized heads (400, 431) and every
//! doubtful framing (`Transfer-Encoding`, two `Content-Length`s, a length that is not plain
//! digits) exactly as before.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

/// Header lines a request may have on the fast path; more go to hyper, which has its own cap.
pub const MAX_REQUEST_HEADERS: usize = 64;
/// Header lines accepted in an upstream response (hyper's client default).
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// The longest response head accepted from the upstream.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The largest `POST` body the fast path reads whole before deciding (a sign-up or login
/// form is a few hundred bytes); a longer one goes to hyper, which streams it.
pub const MAX_FAST_BODY: u64 = 64 * 1024;

/// What the bytes read so far hold.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per request, never stored or moved around
pub enum Parsed {
    /// Not a whole head yet, and still under the size cap.
    Partial,
    /// A request the fast path serves; its head is `len` bytes long.
    Eligible {
        parts: Parts,
        len: usize,
        /// The client asked to close the connection after this response.
        close: bool,
        /// The body's length (`Content-Length`; 0 for `GET` and `HEAD`), at most
        /// `MAX_FAST_BODY`. Its bytes follow the head.
        body: usize,
    },
    /// Anything else: hyper takes the connection from here, these bytes included.
    Handover,
}

/// Parses the request head at the start of `buf`.
pub fn parse_request(buf: &[u8], max_head: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::Handover,
    };
    // One copy of the head that every header value and the target then share, instead of
    // one allocation per value.
    let shared = bytes::Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    // The same bytes in `shared` as `part` is in `buf` (httparse's slices all point into `buf`).
    let share = |part: &[u8]| {
        let at = part.as_ptr() as usize - base;
        shared.slice(at..at + part.len())
    };
    match eligible(&req, &share) {
        Some((parts, close, body)) => Parsed::Eligible {
            parts,
            len,
            close,
            body,
        },
        None => Parsed::Handover,
    }
}

fn eligible(
    req: &httparse::Request<'_, '_>,
    share: &dyn Fn(&[u8]) -> bytes::Bytes,
) -> Option<(Parts, bool, usize)> {
    if req.version != Some(1) {
        return None;
    }
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        _ => return None,
    };
    // A POST without Content-Length (and without Transfer-Encoding, which goes to hyper) has
    // no body (RFC 9112, section 6.3).
    let mut body: Option<u64> = None;
    let path = req.path?;
    if !path.starts_with('/') {
        return None; // absolute form, `*`: rare, and hyper knows them
    }
    let mut close = false;
    // Room for the forwarding headers Moat adds, so the map is not rehashed to fit them.
    let mut map = HeaderMap::with_capacity(req.headers.len() + 6);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A POST's one plain Content-Length is ours; a second one (even if equal), one on a
        // GET or HEAD, or one that is anything but digits is hyper's to judge.
        if name == http::header::CONTENT_LENGTH {
            if method != Method::POST || body.is_some() {
                return None;
            }
            let n = plain_length(h.value)?;
            if n > MAX_FAST_BODY {
                return None;
            }
            body = Some(n);
        }
        // Chunked bodies, an upgrade or an expectation make the request hyper's.
        if name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
            || name.as_str() == "http2-settings"
        {
            return None;
        }
        if name == http::header::CONNECTION {
            close |= has_token(h.value, "close");
        }
        let value = HeaderValue::from_maybe_shared(share(h.value)).ok()?;
        map.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = Uri::from_maybe_shared(share(path.as_bytes())).ok()?;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Some((parts, close, body.unwrap_or(0) as usize))
}

/// A `Content-Length` value of 1 to 19 ASCII digits and nothing else (no sign, no spaces, no
/// list): the only spelling the fast path frames a body by.
fn plain_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a comma-separated header value (`Connection`) lists `token`.
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Appends the head of a request already rewritten for the upstream (see
/// `Shield::prepare_forward`): origin-form target, HTTP/1.1, its headers as they are.
pub fn write_request(parts: &Parts, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(&parts.headers, out);
}

fn write_headers(h: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in h {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the body after a response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    /// Chunked: relayed as it is, its end found by [`super::chunked::Chunked`].
    Chunked,
    /// Ends when the upstream closes; the client's connection is closed after it too.
    UntilClose,
}

#[derive(Debug)]
pub struct ResponseHead {
    /// Bytes of `buf` the head took.
    pub len: usize,
    pub framing: Framing,
    /// An interim response (100, 103): relayed, and the real one follows.
    pub interim: bool,
    /// The upstream connection may serve another request after this body.
    pub reusable: bool,
    /// The client's connection must close after this response.
    pub close_client: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadResponse {
    #[error("malformed response head from the upstream: {0}")]
    Malformed(String),
    #[error("response head from the upstream over {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
    #[error("conflicting Content-Length in the upstream's response")]
    Length,
    #[error("the upstream switched protocols unasked")]
    Switching,
}

/// Parses the upstream's response head at the start of `buf` and appends the head the client
/// gets to `out`: hop-by-hop headers removed (RFC 9110 §7.6.1) except the `Transfer-Encoding`
/// of a chunked body, which is relayed as it came; `Connection: close` added when the client's
/// connection ends after it. `Ok(None)`: not a whole head yet.
pub fn parse_response(
    buf: &[u8],
    request: &Method,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(BadResponse::TooLong),
        Err(e) => return Err(BadResponse::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    if status == 101 {
        return Err(BadResponse::Switching);
    }
    let interim = (100..200).contains(&status);
    let mut upstream_close = resp.version != Some(1);
    let mut chunked = false;
    let mut other_coding = false;
    let mut length: Option<u64> = None;
    let mut named: Vec<&str> = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = std::str::from_utf8(h.value).unwrap_or("");
            for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if t.eq_ignore_ascii_case("close") {
                    upstream_close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    upstream_close = false;
                }
                named.push(t);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).unwrap_or("");
            // Only a final `chunked` frames the body; any coding after it means "until close".
            let last = v.rsplit(',').next().unwrap_or("").trim();
            if last.eq_ignore_ascii_case("chunked") {
                chunked = true;
                other_coding = false;
            } else {
                other_coding = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(BadResponse::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::Length);
            }
            length = Some(n);
        }
    }
    let no_body = interim || *request == Method::HEAD || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Empty
    } else if other_coding {
        Framing::UntilClose
    } else if chunked {
        Framing::Chunked // a Content-Length beside it is ignored (RFC 9112 §6.3)
    } else if let Some(n) = length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::UntilClose
    };
    let close_client = !interim && (client_close || framing == Framing::UntilClose);
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse guarantees three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let n = h.name;
        let hop =
            crate::forward::is_hop_by_hop(n) || named.iter().any(|x| n.eq_ignore_ascii_case(x));
        let te = n.eq_ignore_ascii_case("transfer-encoding");
        let cl = n.eq_ignore_ascii_case("content-length");
        // A chunked body goes out chunked; a body delimited by the close loses its codings'
        // header only if the client could misread it, which it cannot: the close ends it.
        let length_with_chunked = chunked && cl;
        // The framing headers stay even when `Connection` names them: the body is relayed as
        // framed, and a client left without its length (and with the connection kept open)
        // would read the next response as part of this body.
        if (hop && !te && !cl) || length_with_chunked || (te && no_body) {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        framing,
        interim,
        reusable: !upstream_close && framing != Framing::UntilClose,
        close_client,
    }))
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eligible_parts(raw: &[u8]) -> (Parts, usize, bool) {
        match parse_request(raw, 16 * 1024) {
            Parsed::Eligible {
                parts,
                len,
                close,
                body: 0,
            } => (parts, len, close),
            other => panic!("not eligible without a body: {other:?}"),
        }
    }

    #[test]
    fn posts_framed_by_one_plain_length_are_taken() {
        let raw = b"POST /members/api/send-magic-link/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab";
        match parse_request(raw, 16 * 1024) {
            Parsed::Eligible {
                parts, len, body, ..
            } => {
                assert_eq!(parts.method, Method::POST);
                assert_eq!((len, body), (raw.len() - 2, 2));
                assert_eq!(parts.headers["content-length"], "2");
            }
            other => panic!("not eligible: {other:?}"),
        }
        // No Content-Length and no Transfer-Encoding: no body.
        let raw = b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            parse_request(raw, 16 * 1024),
            Parsed::Eligible { body: 0, .. }
        ));
        let at_cap =
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_FAST_BODY}\r\n\r\n");
        assert!(matches!(
            parse_request(at_cap.as_bytes(), 16 * 1024),
            Parsed::Eligible { body, .. } if body as u64 == MAX_FAST_BODY
        ));
    }

    #[test]
    fn doubtful_body_framing_is_handed_over() {
        let over = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_FAST_BODY + 1
        );
        for raw in [
            over.as_bytes(),
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
            b"POST / HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
            b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
        ] {
            assert!(
                matches!(parse_request(raw, 16 * 1024), Parsed::Handover),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn plain_gets_and_heads_are_taken() {
        let raw =
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAccept: */*\r\n\r\nGET /next";
        let (parts, len, close) = eligible_parts(raw);
        assert_eq!(len, raw.len() - b"GET /next".len());
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path(), "/a");
        assert_eq!(parts.uri.query(), Some("b=1"));
        assert_eq!(parts.headers["user-agent"], "t");
        assert!(!close);
        let (parts, _, close) =
            eligible_parts(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n");
        assert_eq!(parts.method, Method::HEAD);
        assert!(close);
    }

    #[test]
    fn everything_else_is_handed_over() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GARBAGE\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(raw, 16 * 1024), Parsed::Handover),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn partial_heads_wait_until_the_cap() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n", 1024),
            Parsed::Partial
        ));
        let mut long = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 2000));
        assert!(matches!(parse_request(&long, 1024), Parsed::Handover));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(
            matches!(parse_request(&long, 1024), Parsed::Handover),
            "a whole head over the cap goes to hyper, which answers 431"
        );
        let many: Vec<u8> = (0..80)
            .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
            .collect();
        let raw = [&b"GET / HTTP/1.1\r\n"[..], &many, b"\r\n"].concat();
        assert!(matches!(parse_request(&raw, 64 * 1024), Parsed::Handover));
    }

    #[test]
    fn request_head_round_trips() {
        let (mut parts, _, _) =
            eligible_parts(b"GET /p?q HTTP/1.1\r\nHost: x\r\nA: 1\r\nA: 2\r\n\r\n");
        parts
            .headers
            .insert("x-forwarded-for", HeaderValue::from_static("127.0.0.9"));
        let mut out = Vec::new();
        write_request(&parts, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q HTTP/1.1\r\nhost: x\r\na: 1\r\na: 2\r\nx-forwarded-for: 127.0.0.9\r\n\r\n"
        );
    }

    fn response(raw: &str, method: Method, client_close: bool) -> (ResponseHead, String) {
        let mut out = Vec::new();
        let h = parse_response(raw.as_bytes(), &method, client_close, &mut out)
            .unwrap()
            .unwrap();
        (h, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing() {
        let (h, out) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello",
            Method::GET,
            false,
        );
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(
            h.len,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\n".len()
        );
        assert!(h.reusable && !h.close_client);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");

        let (h, out) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");

        let (h, out) = response("HTTP/1.1 200 OK\r\n\r\n", Method::GET, false);
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.reusable && h.close_client);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");

        let (h, _) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
            Method::HEAD,
            false,
        );
        assert_eq!(h.framing, Framing::Empty);
        for s in ["204 No Content", "304 Not Modified"] {
            let (h, _) = response(&format!("HTTP/1.1 {s}\r\n\r\n"), Method::GET, false);
            assert_eq!(h.framing, Framing::Empty, "{s}");
            assert!(h.reusable);
        }
        let (h, out) = response(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
            Method::GET,
            true,
        );
        assert!(h.interim && !h.close_client);
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
        let (h, _) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET,
            false,
        );
        assert_eq!(h.framing, Framing::UntilClose);
    }

    #[test]
    fn upstream_connection_headers() {
        let (h, out) = response(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
            true,
        );
        assert!(!h.reusable && h.close_client);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nconnection: close\r\n\r\n"
        );
        let (h, _) = response(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
            false,
        );
        assert!(!h.reusable, "HTTP/1.0 closes unless it says keep-alive");
        let (h, _) = response(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
            false,
        );
        assert!(h.reusable);
    }

    #[test]
    fn bad_responses_are_errors() {
        let mut out = Vec::new();
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "SMTP 220 hello\r\n\r\n",
        ] {
            assert!(
                parse_response(raw.as_bytes(), &Method::GET, false, &mut out).is_err(),
                "{raw}"
            );
        }
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                &Method::GET,
                false,
                &mut out
            )
            .unwrap()
            .unwrap()
            .framing,
            Framing::Length(1)
        );
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert_eq!(
            parse_response(long.as_bytes(), &Method::GET, false, &mut out).unwrap_err(),
            BadResponse::TooLong
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n", &Method::GET, false, &mut out)
                .unwrap()
                .is_none()
        );
    }
}

//! The fast path's HTTP/1.1 heads (`crates/moat-http/src/fast/head.rs`) on arbitrary bytes: the
//! request parser that decides what the fast path takes, the request head it writes upstream,
//! and the response parser that decides how a body is framed. Beyond "never panics":
//!
//! - `parse_request`: an `Eligible` head is at most `buf.len()` and `max_head` bytes, is a
//!   `GET`/`HEAD`/`POST` in origin form without a transfer coding, upgrade or expectation, has
//!   a body of at most `MAX_FAST_BODY` (only a `POST`), and gives the same verdict from its
//!   own bytes alone; `Partial` only while the buffer is shorter than `max_head`; what
//!   `write_request` makes of it re-parses (httparse) to the same method, target and headers,
//!   and is itself `Eligible` with the same parts (a fixpoint);
//! - `parse_response`: the framing agrees with a restatement of RFC 9112 §6.3 from the headers
//!   (and `reusable` / `close_client` with the connection rules); the head it writes for the
//!   client parses back to the same framing, so the client and Moat agree on where the body
//!   ends (otherwise the next response's bytes would be read as this body).
//!
//! Input: a control byte (bits 0-1: the request method the response answers; bit 2: the
//! client asked to close; bits 3-7: `max_head`, from 32 bytes up), then the bytes, used both
//! as a request head and as a response head.
//!
//! The same file runs on stable as a plain test (`crates/moat-http/tests/parser_garbage.rs`),
//! which also checks that `fuzz/seeds/http_head` holds what [`seeds`] makes.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), allow(dead_code))]

use http::Method;
use moat_http::fast::head::{
    self, parse_request, parse_response, write_request, Framing, Parsed, MAX_FAST_BODY,
};

#[cfg(not(test))]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    run(data);
});

/// What a run reached, for the stable test to check that the seeds go where they should.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub eligible: bool,
    pub partial: bool,
    pub response: Option<Framing>,
}

pub fn run(data: &[u8]) -> Seen {
    let Some((&ctl, buf)) = data.split_first() else {
        return Seen::default();
    };
    let method =
        [Method::GET, Method::HEAD, Method::POST, Method::GET][usize::from(ctl & 3)].clone();
    let client_close = ctl & 4 != 0;
    let max_head = 32 + usize::from(ctl >> 3) * 128;
    let mut seen = Seen::default();
    match check_request(buf, max_head) {
        Some(true) => seen.eligible = true,
        Some(false) => {}
        None => seen.partial = true,
    }
    seen.response = check_response(buf, &method, client_close);
    seen
}

/// `Some(eligible)`, or `None` for `Partial`.
fn check_request(buf: &[u8], max_head: usize) -> Option<bool> {
    let (parts, len, close, body) = match parse_request(buf, max_head) {
        Parsed::Partial => {
            assert!(buf.len() < max_head, "Partial at {} bytes", buf.len());
            let mut h = [httparse::EMPTY_HEADER; head::MAX_REQUEST_HEADERS];
            assert!(matches!(
                httparse::Request::new(&mut h).parse(buf),
                Ok(httparse::Status::Partial)
            ));
            return None;
        }
        Parsed::Handover => return Some(false),
        Parsed::Eligible {
            parts,
            len,
            close,
            body,
        } => (parts, len, close, body),
    };
    assert!(len <= buf.len() && len <= max_head, "len {len}");
    assert!(body as u64 <= MAX_FAST_BODY);
    assert!(
        body == 0 || parts.method == Method::POST,
        "{} with a body",
        parts.method
    );
    assert!(matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::POST
    ));
    assert_eq!(parts.version, http::Version::HTTP_11);
    assert!(parts.uri.scheme().is_none() && parts.uri.path().starts_with('/'));
    for h in ["transfer-encoding", "upgrade", "expect", "http2-settings"] {
        assert!(!parts.headers.contains_key(h), "{h} on the fast path");
    }
    let lengths: Vec<_> = parts.headers.get_all("content-length").iter().collect();
    assert!(lengths.len() <= 1);
    assert_eq!(
        lengths
            .first()
            .map(|v| v.to_str().unwrap().parse::<usize>().unwrap()),
        (body > 0 || !lengths.is_empty()).then_some(body)
    );
    let wants_close = parts.headers.get_all("connection").iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(close, wants_close);

    // The head alone gives the same verdict as with whatever followed it.
    let same = |again: Parsed, want_len: usize| match again {
        Parsed::Eligible {
            parts: p,
            len: l,
            close: c,
            body: b,
        } => {
            assert_eq!((l, c, b), (want_len, close, body));
            assert_eq!(p.method, parts.method);
            assert_eq!(p.uri, parts.uri);
            assert_eq!(p.headers, parts.headers);
        }
        other => panic!("the head alone: {other:?}"),
    };
    same(parse_request(&buf[..len], max_head), len);

    // Written for the upstream, it parses back to the same request.
    let mut out = Vec::new();
    write_request(&parts, &mut out);
    let mut h = [httparse::EMPTY_HEADER; head::MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut h);
    let n = match req.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "written head does not parse: {other:?}: {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(n, out.len());
    assert_eq!(req.method, Some(parts.method.as_str()));
    assert_eq!(
        req.path,
        Some(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
    );
    assert_eq!(req.version, Some(1));
    assert_eq!(req.headers.len(), parts.headers.len());
    for (h, (name, value)) in req.headers.iter().zip(parts.headers.iter()) {
        assert!(h.name.eq_ignore_ascii_case(name.as_str()));
        assert_eq!(h.value, value.as_bytes());
    }
    // And the fast path would take the written head as it is.
    same(parse_request(&out, out.len()), out.len());
    Some(true)
}

/// How RFC 9112 §6.3 frames the body after `head`, restated: `Err(())` where the response
/// must be refused (a `Content-Length` that is not one plain number).
fn expected_framing(
    resp: &httparse::Response<'_, '_>,
    method: &Method,
) -> Result<(Framing, bool), ()> {
    let status = resp.code.unwrap();
    let interim = (100..200).contains(&status);
    let mut lengths = Vec::new();
    let mut codings: Option<String> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            let plain = !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
            if !plain {
                return Err(());
            }
            lengths.push(std::str::from_utf8(v).unwrap().parse::<u64>().unwrap());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding of the last Transfer-Encoding line decides (the lines are
            // one list).
            codings = Some(std::str::from_utf8(h.value).unwrap_or("").to_string());
        }
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        return Err(());
    }
    let framing = if interim || *method == Method::HEAD || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(c) = codings {
        let last = c.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match lengths.first() {
            Some(0) => Framing::Empty,
            Some(&n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok((framing, interim))
}

fn check_response(buf: &[u8], method: &Method, client_close: bool) -> Option<Framing> {
    let mut out = b"left alone".to_vec();
    let result = parse_response(buf, method, client_close, &mut out);
    let mut h = [httparse::EMPTY_HEADER; head::MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut h);
    let parsed = resp.parse(buf);
    if result.is_err() {
        assert_eq!(out, b"left alone", "a refused response wrote a head");
    }
    let r = match result {
        Ok(None) => {
            assert!(matches!(parsed, Ok(httparse::Status::Partial)));
            assert!(buf.len() < head::MAX_RESPONSE_HEAD);
            assert_eq!(out, b"left alone");
            return None;
        }
        Err(head::BadResponse::Switching) => {
            assert_eq!(resp.code, Some(101));
            return None;
        }
        Err(head::BadResponse::Length) => {
            assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
            assert_eq!(expected_framing(&resp, method), Err(()));
            return None;
        }
        Err(_) => {
            assert!(!matches!(parsed, Ok(httparse::Status::Complete(_))));
            return None;
        }
        Ok(Some(r)) => r,
    };
    let Ok(httparse::Status::Complete(n)) = parsed else {
        panic!("a head httparse does not parse: {parsed:?}");
    };
    assert_eq!(r.len, n);
    assert!(r.len <= buf.len());
    let (framing, interim) = expected_framing(&resp, method).expect("a bad length passed");
    assert_eq!(r.framing, framing);
    assert_eq!(r.interim, interim);
    assert_eq!(
        r.close_client,
        !interim && (client_close || framing == Framing::UntilClose)
    );
    if r.reusable {
        assert!(framing != Framing::UntilClose);
    }

    // The head the client gets, after what was there: one whole head that frames the body
    // the same way, and says `connection: close` exactly when the client's connection closes.
    let written = out
        .strip_prefix(b"left alone")
        .expect("out was appended to");
    let mut h2 = [httparse::EMPTY_HEADER; head::MAX_RESPONSE_HEADERS + 1];
    let mut again = httparse::Response::new(&mut h2);
    match again.parse(written) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, written.len()),
        other => panic!(
            "the client's head does not parse: {other:?}: {:?}",
            String::from_utf8_lossy(written)
        ),
    }
    assert_eq!(again.code, resp.code);
    let client_sees = expected_framing(&again, method).expect("the client's head has a bad length");
    assert!(
        client_sees.0 == framing,
        "the client frames the body as {:?}, Moat relays it as {framing:?}: upstream {:?}, client {:?}",
        client_sees.0,
        String::from_utf8_lossy(&buf[..r.len]),
        String::from_utf8_lossy(written)
    );
    let closes = again.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    assert_eq!(closes, r.close_client);
    Some(framing)
}

/// Realistic and edge heads, each as a fuzz input: the seeds in `fuzz/seeds/http_head`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    // Control byte: max_head 32 + 31 * 128 (the largest), a GET, no close; and variants.
    const BIG: u8 = 31 << 3;
    let cases: &[(&str, u8, &[u8])] = &[
        ("get", BIG, b"GET /a?b=1 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nAccept-Encoding: gzip, br\r\n\r\n"),
        ("get-pipelined", BIG, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("head-close", BIG | 1, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n"),
        ("post-form", BIG | 2, b"POST /members/api/send-magic-link/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"email\":\"bot@spam.test\"}\r\n"),
        ("post-no-length", BIG | 2, b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("post-two-lengths", BIG, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"),
        ("post-chunked", BIG, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"),
        ("post-length-list", BIG, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab"),
        ("websocket", BIG, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ("expect", BIG, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"),
        ("http10", BIG, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
        ("absolute-form", BIG, b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("h2-preface", BIG, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("partial", BIG, b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8"),
        ("over-max-head", 0, b"GET / HTTP/1.1\r\nHost: a-long-host-name.example\r\n\r\n"),
        ("obs-fold", BIG, b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
        ("bare-lf", BIG, b"GET / HTTP/1.1\nHost: x\n\n"),
        ("tls-hello", BIG, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        ("resp-length", BIG, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello"),
        ("resp-chunked-and-length", BIG, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("resp-until-close", BIG | 4, b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody"),
        ("resp-gzip-chunked", BIG, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("resp-chunked-gzip", BIG, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("resp-head", BIG | 1, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
        ("resp-204-te", BIG, b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("resp-304", BIG, b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"),
        ("resp-103", BIG | 4, b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ("resp-101", BIG, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        ("resp-connection-named", BIG, b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 1\r\n\r\nx"),
        // Was a bug: the client got no length, and no close (`Connection` named the length).
        ("resp-connection-names-length", BIG, b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"),
        ("resp-http10-keepalive", BIG, b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx"),
        ("resp-bad-lengths", BIG, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ("resp-huge-length", BIG, b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (name, ctl, bytes))| {
            let mut d = vec![*ctl];
            d.extend_from_slice(bytes);
            (format!("{i:02}-{name}"), d)
        })
        .collect()
}

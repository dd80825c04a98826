//! Request framing Moat refuses before its policy runs, on the fast path and hyper's alike:
//! what an upstream could read otherwise than Moat did is how a request gets smuggled past the
//! rules. Free of I/O.

use crate::body::ProxyBody;
use crate::shield::text;
use http::{header, HeaderValue, Response, StatusCode};

/// A request whose Host or transfer coding an upstream might read differently:
/// - HTTP/1.1 without exactly one `Host` gets 400 (RFC 9112, section 3.2). Two Hosts would
///   be forwarded as they came, and rules that read the host see only the first.
/// - Any transfer coding but a single `chunked` gets 501 (RFC 9112, section 6.1: "a server
///   that receives a request message with a transfer coding it does not understand SHOULD
///   respond with 501"). hyper decodes `x, chunked` as chunked and would pass the header on.
///
/// An HTTP/1 refusal also closes the connection (`Connection: close`, which hyper's server and
/// the fast path both obey): a request refused for its framing says that something in front
/// of Moat, or the client, may have read the stream otherwise, so the bytes after it are not
/// trusted to be the next request (RFC 9112, section 6.3 asks the same of a request with both
/// `Transfer-Encoding` and `Content-Length`). Before, Moat answered 400 and served the
/// pipelined request after it, which a strict server never reads.
pub fn refusal(req: &http::request::Parts) -> Option<Response<ProxyBody>> {
    let mut resp = refused(req)?;
    if req.version < http::Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(resp)
}

fn refused(req: &http::request::Parts) -> Option<Response<ProxyBody>> {
    if req.version == http::Version::HTTP_11
        && req.headers.get_all(header::HOST).iter().count() != 1
    {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "Bad Request: one Host header is required\n",
        ));
    }
    let mut codings = req
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    match (codings.next(), codings.next()) {
        (None, _) => None,
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => None,
        _ => Some(text(
            StatusCode::NOT_IMPLEMENTED,
            "Not Implemented: only the chunked transfer coding is accepted\n",
        )),
    }
}

/// The smallest an HTTP/1 request's head can have been on the wire: its request line and
/// header lines as written canonically (`Name: value` and CRLF). Hyper bounds a head only while
/// it is incomplete (`max_buf_size`), so one that arrives whole in a single read passes at any
/// size; this lets the hyper path refuse it with 431 as the fast path does.
pub fn head_len(req: &http::request::Parts) -> usize {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + fields + 2
}

/// 431 for an HTTP/1 head longer than `max` bytes (`limits.max_header_bytes`).
pub fn oversized(req: &http::request::Parts, max: usize) -> Option<Response<ProxyBody>> {
    if req.version >= http::Version::HTTP_2 || head_len(req) <= max {
        return None;
    }
    let mut resp = text(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Request Header Fields Too Large\n",
    );
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use http::StatusCode;

    fn refused(
        raw_headers: &[(&str, &str)],
        version: http::Version,
    ) -> Option<http::Response<crate::body::ProxyBody>> {
        let mut b = http::Request::builder().uri("/x").version(version);
        for (k, v) in raw_headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        refusal(&parts)
    }

    fn status(raw_headers: &[(&str, &str)], version: http::Version) -> Option<StatusCode> {
        refused(raw_headers, version).map(|r| r.status())
    }

    #[test]
    fn a_refusal_closes_an_http1_connection() {
        use http::Version as V;
        let closes =
            |h: &[(&str, &str)], v| refused(h, v).map(|r| r.headers().get("connection").cloned());
        for (h, v) in [
            (&[][..], V::HTTP_11),
            (&[("host", "a"), ("host", "b")][..], V::HTTP_11),
            (
                &[("host", "a"), ("transfer-encoding", "x, chunked")][..],
                V::HTTP_11,
            ),
            (&[("transfer-encoding", "gzip")][..], V::HTTP_10),
        ] {
            assert_eq!(closes(h, v), Some(Some("close".parse().unwrap())), "{h:?}");
        }
        // HTTP/2 has no Connection header (RFC 9113, section 8.2.2); its stream just ends.
        assert_eq!(
            closes(&[("transfer-encoding", "gzip")], V::HTTP_2),
            Some(None)
        );
        assert_eq!(closes(&[("host", "a")], V::HTTP_11), None);
    }

    #[test]
    fn one_host_and_only_chunked() {
        use http::Version as V;
        assert_eq!(status(&[("host", "a")], V::HTTP_11), None);
        assert_eq!(status(&[], V::HTTP_11), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(&[("host", "a"), ("host", "b")], V::HTTP_11),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(status(&[], V::HTTP_10), None, "HTTP/1.0 needs no Host");
        assert_eq!(status(&[], V::HTTP_2), None, "HTTP/2 has :authority");
        let te = |v: &str| status(&[("host", "a"), ("transfer-encoding", v)], V::HTTP_11);
        assert_eq!(te("chunked"), None);
        assert_eq!(te(" Chunked "), None);
        for bad in [
            "x, chunked",
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "",
            "chunked,",
        ] {
            assert_eq!(te(bad), Some(StatusCode::NOT_IMPLEMENTED), "{bad:?}");
        }
        assert_eq!(
            status(
                &[
                    ("host", "a"),
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked")
                ],
                V::HTTP_11
            ),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
    }

    #[test]
    fn a_head_over_the_cap_is_refused_with_431_and_the_count_is_exact() {
        let raw = b"GET /path?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Pad: 0123456789\r\n\r\n";
        let (parts, ()) = http::Request::builder()
            .uri("/path?q=1")
            .header("host", "a.example")
            .header("x-pad", "0123456789")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(super::head_len(&parts), raw.len());
        assert!(super::oversized(&parts, raw.len()).is_none());
        let r = super::oversized(&parts, raw.len() - 1).expect("one byte over");
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(r.headers()["connection"], "close");
        let mut h2 = parts;
        h2.version = http::Version::HTTP_2;
        assert!(
            super::oversized(&h2, 10).is_none(),
            "HTTP/2 is bounded by h2 itself"
        );
    }
}

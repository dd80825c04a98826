//! Request framing Moat refuses before its policy runs, on the fast path and hyper's alike:
//! what an upstream could read otherwise than Moat did is how a request gets smuggled past the
//! rules. Free of I/O.

use crate::body::ProxyBody;
use crate::shield::text;
use http::{header, Response, StatusCode};

/// A request whose Host or transfer coding an upstream might read differently:
/// - HTTP/1.1 without exactly one `Host` gets 400 (RFC 9112, section 3.2). Two Hosts would
///   be forwarded as they came, and rules that read the host see only the first.
/// - Any transfer coding but a single `chunked` gets 501 (RFC 9112, section 6.1: "a server
///   that receives a request message with a transfer coding it does not understand SHOULD
///   respond with 501"). hyper decodes `x, chunked` as chunked and would pass the header on.
pub fn refusal(req: &http::request::Parts) -> Option<Response<ProxyBody>> {
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

#[cfg(test)]
mod tests {
    use super::refusal;
    use http::StatusCode;

    fn status(raw_headers: &[(&str, &str)], version: http::Version) -> Option<StatusCode> {
        let mut b = http::Request::builder().uri("/x").version(version);
        for (k, v) in raw_headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        refusal(&parts).map(|r| r.status())
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
}

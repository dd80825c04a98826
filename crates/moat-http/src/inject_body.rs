//! The page script added to an HTML response as it streams through (see
//! `moat_proof::inject`), and the response headers that change with it.

use crate::body::{BoxError, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use moat_proof::inject::Injector;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct InjectBody {
    inner: ProxyBody,
    inj: Injector,
    out: VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl Body for InjectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let mut produced = Vec::new();
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => this.inj.push(d, &mut produced),
                    Err(f) => {
                        this.trailers = f.into_trailers().ok();
                    }
                },
                Poll::Ready(None) => {
                    this.inj.finish(&mut produced);
                    this.ended = true;
                }
            }
            this.out
                .extend(produced.into_iter().filter(|b| !b.is_empty()));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let h = self.inner.size_hint();
        match h.exact() {
            Some(n) if !self.ended => SizeHint::with_exact(n + self.inj.tag_len() as u64),
            _ => SizeHint::default(),
        }
    }
}

/// Whether a response to a GET on an injecting route is an HTML page the script can go into:
/// a 200 whose body is not compressed (the request asked for identity, but an upstream may
/// ignore that, and Moat does not decode).
pub fn injectable(resp: &Response<ProxyBody>) -> bool {
    let h = resp.headers();
    resp.status() == StatusCode::OK
        && h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .get(..9)
                    .is_some_and(|p| p.eq_ignore_ascii_case("text/html"))
            })
        && h.get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Adds `tag` to the page (after the opening head tag). The length grows by exactly the tag, so a `Content-Length` stays
/// valid; a strong `ETag` becomes weak, as the bytes are no longer the upstream's.
pub fn inject(resp: Response<ProxyBody>, tag: &'static str) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    if let Some(n) = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(n + tag.len() as u64),
        );
    }
    if let Some(etag) = h.get(header::ETAG).cloned() {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            match HeaderValue::from_bytes(&weak) {
                Ok(v) => h.insert(header::ETAG, v),
                Err(_) => h.remove(header::ETAG),
            };
        }
    }
    let body = InjectBody {
        inner: body,
        inj: Injector::new(Bytes::from_static(tag.as_bytes())),
        out: VecDeque::new(),
        trailers: None,
        ended: false,
    };
    Response::from_parts(parts, body.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;

    #[tokio::test]
    async fn the_length_and_etag_follow_the_body() {
        let page = "<html><head><title>x</title></head><body>hi</body></html>";
        let mut r = Response::new(full(page));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
        r.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        assert!(injectable(&r));
        let r = inject(r, "<script src=/s></script>");
        let len: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.headers()[header::ETAG], "W/\"abc\"");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), len);
        assert_eq!(
            &body[..],
            b"<html><head><script src=/s></script><title>x</title></head><body>hi</body></html>"
        );
    }

    #[test]
    fn compressed_or_other_responses_are_left_alone() {
        let mut r = Response::new(full("x"));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!injectable(&r));
        let mut r = Response::new(full("x"));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/rss+xml"),
        );
        assert!(!injectable(&r));
    }
}

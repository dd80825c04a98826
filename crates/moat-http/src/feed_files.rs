//! The published feed, served from the state directory where the publisher writes it
//! (`moat-feed` says what is in it): `/.well-known/moat/feed/head`, the one mutable file, with
//! an ETag and `no-cache` so subscribers poll it with `If-None-Match`; and
//! `/.well-known/moat/feed/by-hash/SHA256`, immutable, cached for a year.
//!
//! Answered before the rules and the guard: a feed is public, and a peer's poller sharing an
//! address with someone this instance banned must still get it.

use crate::body::{empty, full, ProxyBody};
use crate::shield::text;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::path::Path;

/// The answer if `path` is under the feed's URL path.
pub async fn answer(
    state_dir: &Path,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response<ProxyBody>> {
    let rest = path.strip_prefix(moat_feed::URL_PATH)?;
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    let dir = state_dir.join(moat_feed::DIR);
    let (file, etag, immutable) = if rest == moat_feed::HEAD_FILE {
        (dir.join(moat_feed::HEAD_FILE), None, false)
    } else {
        let sha = rest.strip_prefix("by-hash/").filter(|s| {
            s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        let Some(sha) = sha else {
            return Some(text(StatusCode::NOT_FOUND, "Not Found\n"));
        };
        (
            dir.join(moat_feed::BY_HASH_DIR).join(sha),
            Some(sha.to_string()),
            true,
        )
    };
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(_) => return Some(text(StatusCode::NOT_FOUND, "Not Found\n")),
    };
    let etag = format!(
        "\"{}\"",
        etag.unwrap_or_else(|| moat_feed::head::sha256_hex(&bytes))
    );
    let mut r = if etag_matches(headers, &etag) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let len = bytes.len();
        let mut r = Response::new(if method == Method::HEAD {
            empty()
        } else {
            full(bytes)
        });
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if immutable {
                "application/gzip"
            } else {
                "text/plain; charset=utf-8"
            }),
        );
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    Some(r)
}

/// Whether `If-None-Match` names `etag` (a quoted tag; weak tags compare by their value, `*`
/// matches any): the answer is then `304`.
pub fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
}

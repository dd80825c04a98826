//! Forwarding to the upstream over a keep-alive pool: hop-by-hop headers removed (RFC 9110
//! §7.6.1), forwarding headers rewritten, WebSocket upgrades spliced through.

use crate::body::{BoxError, ProxyBody};
use crate::pool::{self, PooledBody};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;

const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
];

/// Whether `name` (any case) is a hop-by-hop header by itself, whatever `Connection` names.
/// Keep-Alive and Proxy-Connection are not standard names in `http`, so they go by string.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
        || name.eq_ignore_ascii_case("keep-alive")
        || name.eq_ignore_ascii_case("proxy-connection")
}

/// Removes the hop-by-hop headers and those the Connection header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass first: most messages have none of these, and hashed removals cost more.
    if !h.keys().any(|k| is_hop_by_hop(k.as_str())) {
        return;
    }
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

/// An HTTP/1.1 upgrade request (WebSocket): `Connection: upgrade` plus an `Upgrade` protocol.
pub fn upgrade_protocol(h: &HeaderMap) -> Option<HeaderValue> {
    let conn_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if conn_upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// The request target as the upstream must see it: origin-form (`/path?query`). The upstream's
/// address goes to the pool; an absolute-form target would show apps Moat's internal URL.
pub fn origin_form(req_uri: &Uri) -> Uri {
    let pq = req_uri.path_and_query().map_or("/", |p| p.as_str());
    pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

pub enum ForwardError {
    Timeout,
    Failed(BoxError),
}

/// `host:port` of the upstream, for the pool.
pub fn authority(base: &Uri) -> String {
    let a = base.authority().map_or("127.0.0.1:80", |a| a.as_str());
    if a.contains(':') && !a.ends_with(']') {
        a.to_string()
    } else {
        format!("{a}:80")
    }
}

/// Sends `req` (already rewritten) and returns the upstream's response with hop-by-hop headers
/// removed. For an upgrade, the 101 is returned to the client and both upgraded connections
/// are joined in a background task.
pub async fn forward(
    authority: std::sync::Arc<str>,
    mut req: Request<ProxyBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    protocol: Option<HeaderValue>,
    timeout: Duration,
) -> Result<Response<ProxyBody>, ForwardError> {
    // The caller has stripped the request's hop-by-hop headers before adding its own (see
    // `Shield::forward`); only the upgrade pair is set again here.
    *req.version_mut() = Version::HTTP_11;
    if let Some(p) = &protocol {
        req.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        req.headers_mut().insert(header::UPGRADE, p.clone());
    }
    let connect_timeout = timeout.min(Duration::from_secs(10));
    let (mut resp, lease) =
        match tokio::time::timeout(timeout, pool::send(authority, req, connect_timeout)).await {
            Err(_) => return Err(ForwardError::Timeout),
            Ok(Err(e)) => return Err(ForwardError::Failed(Box::new(e))),
            Ok(Ok(r)) => r,
        };
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_side) = client_upgrade {
            let upstream_side = hyper::upgrade::on(&mut resp);
            let proto = resp.headers().get(header::UPGRADE).cloned();
            tokio::spawn(async move {
                match tokio::try_join!(client_side, upstream_side) {
                    Ok((c, u)) => {
                        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            strip_hop_by_hop(resp.headers_mut());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(p) = proto {
                resp.headers_mut().insert(header::UPGRADE, p);
            }
            // The upgraded connection belongs to the splice now, not to the pool.
            drop(lease);
            return Ok(resp.map(boxed_incoming));
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(|b| PooledBody::new(b, lease).boxed()))
}

pub fn boxed_incoming(b: Incoming) -> ProxyBody {
    b.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}

//! The upstream side of the pipeline: a request the policy forwards is rewritten for the
//! upstream (`prepare_forward`), sent through hyper's client, and its response learned as a
//! decoy or given the page script (`send_forward`). The fast path relays GET and HEAD itself
//! but prepares them here too.

use super::{text, Prepared, Shield};
use crate::body::{empty, full, BoxError, Chained, ProxyBody};
use crate::forward::{self, ForwardError};
use crate::proof;
use crate::request_view::normalize_path;
use crate::{client_addr, shield::body_error_kind, shield::find_body_error};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::net::IpAddr;

impl Shield {
    /// Rewrites a request for the upstream: origin-form target, hop-by-hop headers and Moat's
    /// own clearance cookie removed, `Host` kept, forwarding headers set from what Moat saw, and `Accept-Encoding: identity`
    /// on pages that get the script. Counts the request as forwarded.
    pub fn prepare_forward(
        &self,
        mut parts: http::request::Parts,
        client: IpAddr,
        ssl: bool,
        host: &str,
    ) -> Prepared {
        let protocol = (parts.version == http::Version::HTTP_11)
            .then(|| forward::upgrade_protocol(&parts.headers))
            .flatten();
        let client_upgrade = protocol
            .as_ref()
            .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        // Only page loads get the script: fetches of HTML fragments (htmx, Turbo) and APIs keep
        // their bytes and their compression.
        let inject = parts.method == Method::GET
            && protocol.is_none()
            && proof::is_navigation(&parts.method, &parts.headers)
            && self
                .proof
                .as_ref()
                .is_some_and(|p| p.config().injects(&normalize_path(parts.uri.path())));
        if inject {
            // Moat adds its script as the page streams by and does not decode, so it asks for
            // the page uncompressed.
            parts.headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        parts.uri = forward::origin_form(&parts.uri);
        // Hop-by-hop first: a client's `Connection: X-Forwarded-For, Host` must not be able to
        // delete the headers Moat sets below (the app would see every client as Moat).
        forward::strip_hop_by_hop(&mut parts.headers);
        proof::strip_clearance(&mut parts.headers);
        parts.headers.remove(proof::PAGE_HEADER);
        parts.headers.remove(proof::PROOF_HEADER);
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(h) = HeaderValue::from_str(host) {
                parts.headers.insert(header::HOST, h);
            }
        }
        client_addr::rewrite_forwarding(
            &mut parts.headers,
            client,
            ssl,
            (!host.is_empty()).then_some(host),
        );
        self.metrics.forwarded.inc();
        Prepared {
            parts,
            inject,
            protocol,
            client_upgrade,
        }
    }

    /// The upstream failed a request (timeout, refused, malformed answer) whose head was parsed
    /// at `start`.
    pub fn note_upstream_error(&self, start: std::time::Instant) {
        self.metrics.observe_upstream_error(start);
    }

    /// The upstream's address (`host:port`).
    pub fn upstream_authority(&self) -> &std::sync::Arc<str> {
        &self.upstream_authority
    }

    /// Sends a prepared request through hyper's client and returns the response, learning it
    /// as decoy `learn` or injecting the page script where that applies, timing a success for
    /// decoy `route`, and counting a send or click for its cohort. `start`: when the request's
    /// head was parsed, for its latency.
    pub async fn send_forward(
        &self,
        p: Prepared,
        body: ProxyBody,
        watch: super::Watch,
        start: std::time::Instant,
    ) -> Response<ProxyBody> {
        let inject = p.inject;
        let up = Request::from_parts(p.parts, body);
        let sent = std::time::Instant::now();
        let resp = match forward::forward(
            self.upstream_authority.clone(),
            up,
            p.client_upgrade,
            p.protocol,
            self.cfg.limits.upstream_timeout,
        )
        .await
        {
            Ok(r) => {
                self.metrics.observe_forwarded(start, sent);
                r
            }
            Err(ForwardError::Timeout) => {
                self.note_upstream_error(start);
                return text(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n");
            }
            Err(ForwardError::Failed(e)) => {
                if let Some(b) = find_body_error(e.as_ref()) {
                    // The client's body was too large or too slow: Moat answers.
                    self.metrics.observe_answered(start);
                    return body_error_kind(b);
                }
                self.note_upstream_error(start);
                tracing::warn!(error = %e, "upstream request failed");
                return text(StatusCode::BAD_GATEWAY, "Bad Gateway\n");
            }
        };
        if let (Some(i), true) = (watch.route, resp.status().is_success()) {
            self.decoys.time_genuine(i, start.elapsed());
        }
        if let Some(c) = watch.confirm {
            let now = proof::now_secs();
            super::confirm::settle(&self.cfg, &self.cohorts, c, &resp, now);
        }
        match watch.learn {
            Some(i) if resp.status().is_success() => self.learn_and_return(i, resp).await,
            _ if inject && crate::inject_body::injectable(&resp) => {
                crate::inject_body::inject(resp, moat_proof::assets::script_tag())
            }
            _ => resp,
        }
    }

    /// Buffers the upstream's response (capped) to record it as decoy `i`, then returns it.
    async fn learn_and_return(&self, i: usize, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        const CAP: usize = 256 * 1024;
        let (parts, body) = resp.into_parts();
        match collect_capped(body, CAP).await {
            Ok(Capped::Whole(bytes)) => {
                if self.decoys.record(i, parts.status, &parts.headers, &bytes) {
                    self.engine.learned(&self.decoys.defs()[i].id);
                }
                Response::from_parts(parts, full(bytes))
            }
            // Too large to be a decoy: not learned, but the client still gets all of it.
            Ok(Capped::Over(head, rest)) => {
                Response::from_parts(parts, Chained::new(head, rest).boxed())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not learn the decoy response");
                Response::from_parts(parts, empty())
            }
        }
    }
}

/// A body read up to a cap: whole, or the bytes read so far and the unread rest.
enum Capped {
    Whole(Bytes),
    Over(Bytes, ProxyBody),
}

/// Reads a body up to `cap` bytes. Written as a plain frame loop: with
/// `http_body_util::Limited`, rustc cannot prove the request future `Send` for every lifetime
/// of `&Shield` (its boxed-error `From` bound is not general enough).
async fn collect_capped(mut body: ProxyBody, cap: usize) -> Result<Capped, BoxError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            buf.extend_from_slice(&d);
            if buf.len() > cap {
                return Ok(Capped::Over(buf.freeze(), body));
            }
        }
    }
    Ok(Capped::Whole(buf.freeze()))
}

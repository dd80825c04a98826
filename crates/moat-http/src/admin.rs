//! The admin listener: Prometheus `/metrics`, a JSON view of bans and `POST /api/reload`, on
//! loopback, behind a bearer token. `/healthz` answers without a token so a container runtime can probe it.

use crate::body::ProxyBody;
use crate::live::LiveShield;
use crate::shield::{text, Shield};
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(
    live: Arc<LiveShield>,
    listener: TcpListener,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let token = Arc::new(token);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let live = live.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let live = live.clone();
                let token = token.clone();
                async move {
                    let r = if req.uri().path() == "/api/reload" {
                        reload(live, &token, req).await
                    } else {
                        route(&live.current(), &token, req)
                    };
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Compares without an early exit, so response timing does not reveal a token prefix.
fn token_ok(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// `POST /api/reload`: what SIGHUP does, with the outcome in the answer (`moat reload`).
async fn reload(live: Arc<LiveShield>, token: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    if !token_ok(&req, token) {
        return text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
    }
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        r.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
        return r;
    }
    let outcome = tokio::task::spawn_blocking(move || live.reload())
        .await
        .unwrap_or_else(|e| Err(format!("reload failed: {e}")));
    match outcome {
        Ok(done) => {
            log_reload(&Ok(done.clone()), "admin API");
            let body = serde_json::json!({
                "reloaded": true,
                "rules": done.rules,
                "rate_limits": done.rate_limits,
                "need_restart": done.need_restart,
            });
            json_response(StatusCode::OK, &body)
        }
        Err(e) => {
            log_reload(&Err(e.clone()), "admin API");
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &serde_json::json!({"reloaded": false, "error": e}),
            )
        }
    }
}

/// One log line per reload, whoever asked for it.
pub fn log_reload(outcome: &Result<crate::live::Reloaded, String>, by: &str) {
    match outcome {
        Ok(d) if d.need_restart.is_empty() => {
            tracing::info!(
                by,
                rules = d.rules,
                rate_limits = d.rate_limits,
                "config reloaded"
            )
        }
        Ok(d) => tracing::warn!(
            by, rules = d.rules, rate_limits = d.rate_limits, need_restart = %d.need_restart.join(", "),
            "config reloaded; some changed settings take effect only after a restart"
        ),
        Err(e) => {
            tracing::error!(by, error = %e, "config not reloaded: it has errors; the running config stays")
        }
    }
}

fn route(shield: &Shield, token: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if !token_ok(&req, token) {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "admin token required (Authorization: Bearer ...)\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let snap = shield.engine.snapshot();
            let sourced = shield.metrics.sourced();
            let mut extra = vec![
                (
                    "moat_bans_active",
                    "Active bans (addresses and prefixes).",
                    snap.ban_count() as u64,
                ),
                (
                    "moat_ratelimit_keys",
                    "Keys tracked by all rate limiters.",
                    shield.engine.limiter_keys() as u64,
                ),
                (
                    "moat_offences_dropped",
                    "Offences dropped because the decider was behind.",
                    shield
                        .engine
                        .dropped
                        .load(std::sync::atomic::Ordering::Relaxed),
                ),
            ];
            extra.extend(sourced);
            let body = shield.metrics.render(&extra);
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/api/bans" => {
            let list = shield
                .engine
                .store()
                .decisions(shield.engine.now_ms())
                .unwrap_or_default();
            let json: Vec<_> = list.iter().map(moat_store::decision_json).collect();
            let mut r = text(
                StatusCode::OK,
                serde_json::to_string_pretty(&json).unwrap_or_default(),
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = text(status, format!("{body}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

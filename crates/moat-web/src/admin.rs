//! The admin listener: Prometheus `/metrics`, the admin API ([`crate::api`]), `/api/top` and
//! `POST /api/reload`, on loopback, behind a bearer token.
//! `/healthz` answers without a token so a container runtime can probe it. CrowdSec's
//! bouncers poll the decisions here too, with their own keys (`crate::lapi`).

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use moat_http::body::ProxyBody;
use moat_http::live::LiveShield;
use moat_http::shield::{text, Shield};
use moat_listen::{Listener, Shutdown};
use std::sync::Arc;
use std::time::Duration;

/// Open connections per admin or metrics listener: an operator, a scraper and a few CLI
/// calls. More wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head, and to start the next one on a
/// keep-alive connection: a loopback client needs milliseconds, and a connection that sends
/// nothing must not hold one of the few slots for ever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 only, with the header timeout. Not hyper's auto-detecting builder: it waits for a
/// client's first bytes to tell HTTP/2 from HTTP/1.1 with no timeout at all, so a connection
/// that sent nothing held its slot for ever. Every admin client (the CLI, curl, Prometheus)
/// speaks HTTP/1.1.
fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    b
}

/// One admin connection until it ends, or until shutdown lets the request in flight finish.
async fn connection<S>(
    io: TokioIo<moat_listen::proxy::Prefixed<moat_listen::Stream>>,
    svc: S,
    shutdown: Shutdown,
) where
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder().serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The admin API's and the dashboard's routers, with what feeds them: the series recorder
/// and the digest. Started whether or not the admin listener is: the digest comes to the
/// owner's log and mail with the listener off too.
pub fn routers(
    live: &Arc<LiveShield>,
    token: &Arc<String>,
    sources: Arc<crate::api::sources::Sources>,
    shutdown: &Shutdown,
) -> (axum::Router, axum::Router) {
    let chart = Arc::new(crate::dashboard::live::Live::default());
    let series = {
        let shield = live.current();
        crate::dashboard::open_series(&shield.cfg.server.state_dir, &chart, shield.engine.now_ms())
    };
    crate::dashboard::spawn_recorder(live.clone(), chart.clone(), series.clone(), shutdown);
    let api = crate::api::router(crate::api::Api {
        live: live.clone(),
        stop: shutdown.clone(),
        sources,
        chart: chart.clone(),
        series: series.clone(),
        asn: Arc::new(crate::asn::AsnSource::new(
            &live.current().cfg.server.state_dir,
        )),
    });
    let dashboard = crate::dashboard::Dashboard::new(
        api.clone(),
        live.clone(),
        token.clone(),
        chart,
        series.clone(),
    );
    crate::dashboard::digest::spawn(
        dashboard.clone(),
        series,
        live.current().cfg.digest.clone(),
        shutdown,
    );
    (api, crate::dashboard::router(dashboard))
}

pub async fn serve(
    live: Arc<LiveShield>,
    listener: Listener,
    token: Arc<String>,
    (api, dash): (axum::Router, axum::Router),
    shutdown: Shutdown,
) {
    let streams = Arc::new(crate::lapi::Streams::default());
    let stop = shutdown.clone();
    listener
        .serve(shutdown, move |c| {
            let (live, token, streams) = (live.clone(), token.clone(), streams.clone());
            let (api, dash) = (api.clone(), dash.clone());
            let svc = service_fn(move |req| {
                let live = live.clone();
                let token = token.clone();
                let streams = streams.clone();
                let (api, dash) = (api.clone(), dash.clone());
                async move {
                    let path = req.uri().path();
                    let r = if crate::lapi::is_lapi(path) {
                        // Bouncers, with their own keys (`[crowdsec]`), not the admin token.
                        crate::lapi::route(&live.current(), &streams, &req)
                    } else if path.starts_with(crate::exports::PREFIX) {
                        let admin = token_ok(&req, &token);
                        crate::exports::route(&live.current(), admin, &req)
                    } else if path == "/api/reload" {
                        reload(live, &token, req).await
                    } else if crate::dashboard::handles(path) {
                        // Its own login: the token once, then a session cookie.
                        crate::dashboard::call(&dash, req).await
                    } else if crate::api::handles(path) {
                        if token_ok(&req, &token) {
                            crate::api::call(&api, req).await
                        } else {
                            crate::api::unauthorized()
                        }
                    } else {
                        route(&live.current(), &token, req)
                    };
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            connection(TokioIo::new(c.stream), svc, stop.clone())
        })
        .await
}

/// Compares in constant time ([`moat_core::secret::token_eq`]), so response timing does not
/// reveal a token prefix.
fn token_ok(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    moat_core::secret::token_eq(given.as_bytes(), token.as_bytes())
}

/// `POST /api/reload`: what SIGHUP does, with the outcome in the answer (`moat reload`).
async fn reload(live: Arc<LiveShield>, token: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    if !token_ok(&req, token) {
        return crate::api::unauthorized();
    }
    if req.method() != Method::POST {
        let mut r = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "use POST"}),
        );
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
pub fn log_reload(outcome: &Result<moat_http::live::Reloaded, String>, by: &str) {
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

/// 401 with the challenge a client needs to know what to send.
fn unauthorized() -> Response<ProxyBody> {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "admin token required (Authorization: Bearer ...)\n",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

fn route(shield: &Shield, token: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    if req.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if !token_ok(&req, token) {
        return unauthorized();
    }
    match req.uri().path() {
        "/metrics" => metrics_response(shield),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The OpenMetrics exposition, for the admin listener and the token-less metrics listener.
pub fn metrics_response(shield: &Shield) -> Response<ProxyBody> {
    use moat_core::metric::Sample;
    let snap = shield.engine.snapshot();
    let extra = [
        Sample::gauge(
            "moat_bans_active",
            "Active bans (addresses and prefixes).",
            snap.ban_count() as u64,
        ),
        Sample::gauge(
            "moat_ratelimit_keys",
            "Keys tracked by all rate limiters.",
            shield.limiter_keys() as u64,
        ),
        Sample::counter(
            "moat_offences_dropped_total",
            "Offences dropped because the decider was behind.",
            shield
                .engine
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
    ];
    let body = shield.metrics.render(&extra);
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

/// `admin.metrics_listen`: `/metrics` (and `/healthz`) without a token, for a scraper that
/// cannot send one; nothing else is served there.
pub async fn serve_metrics(live: Arc<LiveShield>, listener: Listener, shutdown: Shutdown) {
    let stop = shutdown.clone();
    listener
        .serve(shutdown, move |c| {
            let live = live.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => metrics_response(&live.current()),
                    (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
                    (_, "/metrics" | "/healthz") => {
                        text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                    }
                    _ => text(StatusCode::NOT_FOUND, "only /metrics here\n"),
                };
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            connection(TokioIo::new(c.stream), svc, stop.clone())
        })
        .await
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = text(status, format!("{body}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

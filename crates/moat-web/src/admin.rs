//! The admin listener: Prometheus `/metrics`, bans (`GET`/`POST /api/bans`,
//! `DELETE /api/bans/{scope}`) and `POST /api/reload`, on loopback, behind a bearer token.
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

pub async fn serve(live: Arc<LiveShield>, listener: Listener, token: String, shutdown: Shutdown) {
    let token = Arc::new(token);
    let streams = Arc::new(crate::lapi::Streams::default());
    let stop = shutdown.clone();
    listener
        .serve(shutdown, move |c| {
            let (live, token, streams) = (live.clone(), token.clone(), streams.clone());
            let svc = service_fn(move |req| {
                let live = live.clone();
                let token = token.clone();
                let streams = streams.clone();
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
                    } else if path == "/api/bans" || path.starts_with("/api/bans/") {
                        bans(live.current(), &token, req).await
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
        return unauthorized();
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
        "/api/top" if req.method() == Method::GET => {
            match crate::admin_top::parse_n(req.uri().query()) {
                Ok(n) => json_response(StatusCode::OK, &crate::admin_top::top_json(shield, n)),
                Err(e) => json_error(StatusCode::BAD_REQUEST, e),
            }
        }
        "/api/top" => not_allowed("GET"),
        // `/api/bans` is answered by `bans` (it reads request bodies).
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The largest `POST /api/bans` body read.
const MAX_BAN_BODY: usize = 16 * 1024;

/// `POST /api/bans`'s body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    /// An address or CIDR prefix.
    scope: String,
    /// How long, e.g. `1h` (default: until removed).
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `/api/bans`: `GET` lists the active bans, `POST` adds one (`{"scope": "192.0.2.1" or
/// "192.0.2.0/24", "duration": "1h", "reason": "..."}`, the last two optional),
/// `DELETE /api/bans/{scope}` (URL-encoded) lifts one. Bans are written to the store the way
/// `moat bans add|rm` writes them; the decider republishes the guard within a second.
async fn bans(shield: Arc<Shield>, token: &str, req: Request<Incoming>) -> Response<ProxyBody> {
    if !token_ok(&req, token) {
        return unauthorized();
    }
    let item = req
        .uri()
        .path()
        .strip_prefix("/api/bans/")
        .map(str::to_owned);
    let method = req.method().clone();
    match (item, method) {
        (None, Method::GET | Method::HEAD) => {
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
        (None, Method::POST) => add_ban(shield, req).await,
        (None, _) => not_allowed("GET, HEAD, POST"),
        (Some(scope), Method::DELETE) => lift_ban(shield, &scope).await,
        (Some(_), _) => not_allowed("DELETE"),
    }
}

fn json_error(status: StatusCode, error: impl std::fmt::Display) -> Response<ProxyBody> {
    json_response(status, &serde_json::json!({ "error": error.to_string() }))
}

fn not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

async fn add_ban(shield: Arc<Shield>, req: Request<Incoming>) -> Response<ProxyBody> {
    use http_body_util::BodyExt;
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BAN_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BAN_BODY} bytes"),
            )
        }
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let new: NewBan = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a JSON object {{\"scope\": ADDRESS or PREFIX, \
                     \"duration\": \"1h\" (optional), \"reason\": \"...\" (optional)}}: {e}"
                ),
            )
        }
    };
    let scope = match moat_core::Scope::parse(&new.scope) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("scope: {e}")),
    };
    let ttl = match new.duration.as_deref().map(moat_config::parse_duration) {
        None => None,
        Some(Ok(d)) if d.is_zero() => {
            return json_error(StatusCode::BAD_REQUEST, "duration: must be more than 0")
        }
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, format!("duration: {e}")),
    };
    if let moat_core::Scope::Ip(ip) = scope {
        // The guard checks the allowlist first: this ban would never apply. The store is asked
        // too, for an entry `moat allow` wrote moments ago.
        let in_store = || {
            shield
                .engine
                .store()
                .allowlist()
                .is_ok_and(|l| l.iter().any(|n| n.contains(&ip)))
        };
        if shield.engine.snapshot().is_allowlisted(ip) || in_store() {
            return json_error(
                StatusCode::CONFLICT,
                format!(
                    "{ip} is on the allowlist, so a ban would not apply; take it off first \
                     (moat allow rm {ip})"
                ),
            );
        }
    }
    let reason = new.reason.unwrap_or_else(|| "manual ban".into());
    let engine = shield.engine.clone();
    let added = tokio::task::spawn_blocking(move || {
        let now = engine.now_ms();
        moat_store::add_manual_ban(&**engine.store(), scope, ttl, &reason, now)
    })
    .await;
    match added {
        Ok(Ok(d)) => {
            tracing::info!(target: "moat::decision", scope = %d.scope, expires_ms = d.expires_ms,
                reason = %d.reason, by = "admin API", "manual ban");
            let mut r = json_response(StatusCode::CREATED, &moat_store::decision_json(&d));
            let location = format!("/api/bans/{}", d.scope.to_string().replace('/', "%2F"));
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Ok(Err(e)) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the ban: {e}"),
        ),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the ban: {e}"),
        ),
    }
}

async fn lift_ban(shield: Arc<Shield>, encoded: &str) -> Response<ProxyBody> {
    let Some(raw) = percent_decode(encoded) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("`{encoded}` is not a valid URL-encoded scope"),
        );
    };
    let scope = match moat_core::Scope::parse(&raw) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("scope: {e}")),
    };
    let engine = shield.engine.clone();
    let wanted = scope.clone();
    let lifted = tokio::task::spawn_blocking(move || {
        let store = engine.store();
        let found = store
            .decisions(engine.now_ms())?
            .into_iter()
            .find(|d| d.scope == wanted);
        Ok::<_, moat_store::StoreError>(match store.remove_decision(&wanted)? {
            true => Some(found),
            false => None,
        })
    })
    .await;
    match lifted {
        Ok(Ok(Some(d))) => {
            tracing::info!(target: "moat::decision", scope = %scope, by = "admin API", "ban lifted");
            match d {
                Some(d) => json_response(StatusCode::OK, &moat_store::decision_json(&d)),
                None => json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "scope": scope.to_string() }),
                ),
            }
        }
        Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, format!("no ban on exactly {scope}")),
        Ok(Err(e)) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("lifting the ban: {e}"),
        ),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("lifting the ban: {e}"),
        ),
    }
}

/// `%XX` escapes decoded (a prefix's `/` arrives as `%2F`); `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = text(status, format!("{body}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

//! The admin API: what the CLI can do, as JSON under `/api/`, behind the admin token, and
//! described by the OpenAPI document at `/api/openapi.json` (the tests check the server against
//! it with schemathesis). Routed with axum on the admin listener's own connections: the
//! listener ([`crate::admin`]) hands every path [`handles`] says is ours to [`call`].
//!
//! Every answer is JSON, errors too (`{"error": "..."}`), axum's own rejections included:
//! [`call`] rewrites them, so a client never has to parse two shapes.

mod decisions;
pub mod events;
mod quarantine;
mod rules;
pub mod sources;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use moat_http::body::ProxyBody;
use moat_http::live::LiveShield;
use moat_listen::Shutdown;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;

/// The document, as served. Written by hand from the handlers in this module (a generator would
/// cost a dependency tree for forty lines of routes); the schemathesis run in
/// `tests/e2e/test_admin_api.py` keeps the two honest.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest request body read (a ban, an allowlist entry).
pub const MAX_BODY: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub(crate) live: Arc<LiveShield>,
    /// Ends the event streams when Moat stops (a graceful shutdown waits for every response).
    pub(crate) stop: Shutdown,
    pub(crate) sources: Arc<sources::Sources>,
    /// The dashboard's counters: the hour in memory, the month on disk.
    pub(crate) chart: Arc<crate::dashboard::live::Live>,
    pub(crate) series: crate::dashboard::SharedSeries,
    /// The IP-to-ASN table for `/api/top`'s autonomous systems.
    pub(crate) asn: Arc<crate::asn::AsnSource>,
}

/// Whether `path` is answered by this router (the listener keeps `/api/reload`,
/// the exports and CrowdSec's paths).
pub fn handles(path: &str) -> bool {
    const OURS: [&str; 12] = [
        "/api/openapi.json",
        "/api/proof",
        "/api/series",
        "/api/top",
        "/api/feeds",
        "/api/reports",
        "/api/quarantine",
        "/api/decisions",
        "/api/bans",
        "/api/allowlist",
        "/api/rules",
        "/api/events",
    ];
    OURS.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/decisions", get(decisions::list).post(decisions::add))
        .route(
            "/api/decisions/{scope}",
            axum::routing::delete(decisions::lift),
        )
        // The first API's names, kept for `moat bans` and scripts written against them.
        .route("/api/bans", get(decisions::list_bare).post(decisions::add))
        .route("/api/bans/{scope}", axum::routing::delete(decisions::lift))
        .route(
            "/api/allowlist",
            get(decisions::allowlist).post(decisions::allow),
        )
        .route(
            "/api/allowlist/{net}",
            axum::routing::delete(decisions::unallow),
        )
        .route("/api/rules", get(rules::list))
        .route("/api/top", get(top))
        .route("/api/proof", get(proof))
        .route("/api/series", get(series))
        .route("/api/events", get(events::stream))
        .route("/api/quarantine/messages", get(quarantine::messages))
        .route("/api/quarantine/messages/{id}", get(quarantine::message))
        .route("/api/quarantine/indicators", get(quarantine::indicators))
        .route("/api/quarantine/campaigns", get(quarantine::campaigns))
        .route("/api/quarantine/logins", get(quarantine::logins))
        .route("/api/feeds", get(sources::feeds))
        .route("/api/reports", get(sources::reports))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API path") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// One request through the router, its answer in the listener's body type. Any non-JSON
/// answer of a client error (axum's own rejections: a bad path parameter, a method not
/// allowed) becomes `{"error": ...}` with its status and headers kept.
pub async fn call(router: &Router, req: Request<hyper::body::Incoming>) -> Response<ProxyBody> {
    use tower::ServiceExt;
    let r = match router.clone().oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let r = if r.status().is_client_error() && !is_json(&r) {
        let (mut parts, body) = r.into_parts();
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        let body = Body::from(json!({ "error": text }).to_string() + "\n");
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, body)
    } else {
        r
    };
    into_proxy_body(r)
}

/// An axum response in the listener's body type.
pub(crate) fn into_proxy_body(r: Response<Body>) -> Response<ProxyBody> {
    r.map(|b| {
        let hint = http_body::Body::size_hint(&b);
        SyncBody(sync_wrapper::SyncWrapper::new(b), hint)
            .map_err(|e| Box::new(e) as moat_http::body::BoxError)
            .boxed()
    })
}

/// An axum body the listener can hold: its body type must be `Sync`, axum's is only `Send`.
/// Sound because a body is only ever polled through `&mut` (which is all `SyncWrapper` lends).
struct SyncBody(sync_wrapper::SyncWrapper<Body>, http_body::SizeHint);

impl http_body::Body for SyncBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        // `Body` is `Unpin`: its pin is a plain `&mut`.
        std::pin::Pin::new(self.get_mut().0.get_mut()).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Only through `&mut` may the inner body be reached; the exact size is what lets hyper
        // send a Content-Length, so it is asked for once, when the body is made.
        self.1
    }
}

fn is_json(r: &Response<Body>) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"))
}

/// 401 for an API path: JSON as every API answer, with the challenge a client needs.
pub fn unauthorized() -> Response<ProxyBody> {
    let mut r = moat_http::shield::text(
        StatusCode::UNAUTHORIZED,
        json!({ "error": "admin token required (Authorization: Bearer ...)" }).to_string() + "\n",
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `GET /api/top?n=N`: what `moat top` shows ([`crate::admin_top`]).
async fn top(
    axum::extract::State(api): axum::extract::State<Api>,
    uri: Uri,
) -> axum::response::Response {
    let n = match crate::admin_top::parse_n(uri.query()) {
        Ok(n) => n,
        Err(e) => return ApiError::bad(e).into_response(),
    };
    let shield = api.live.current();
    let configured = shield.cfg.cohorts.asn_table.clone();
    let source = api.asn.clone();
    let table = tokio::task::spawn_blocking(move || source.current(configured.as_ref()))
        .await
        .ok();
    reply(
        StatusCode::OK,
        crate::admin_top::top_json(&shield, n, table.as_ref()),
    )
}

/// `GET /api/proof`: the browser proof's outcomes and its rescues
/// ([`moat_http::sightings::Sightings::proof_counts`]).
async fn proof(axum::extract::State(api): axum::extract::State<Api>) -> axum::response::Response {
    let shield = api.live.current();
    let mut v = serde_json::to_value(shield.sightings.proof_counts()).unwrap_or_default();
    v["active"] = shield.cfg.proof.active.into();
    reply(StatusCode::OK, v)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    #[serde(default)]
    range: Option<String>,
}

/// `GET /api/series?range=hour|month`: the dashboard's counters, per minute for the last hour
/// or per hour for the last 30 days.
async fn series(
    axum::extract::State(api): axum::extract::State<Api>,
    uri: Uri,
) -> Result<axum::response::Response, ApiError> {
    let q: SeriesQuery = query(&uri)?;
    let now = api.live.current().engine.now_ms();
    let (step, points) = match q.range.as_deref().unwrap_or("hour") {
        "hour" => (60, api.chart.series(now)),
        "month" => (
            3600,
            crate::dashboard::month(&api.series, now)
                .await
                .map_err(|e| ApiError::internal("reading the series", e))?,
        ),
        other => {
            return Err(ApiError::bad(format!(
                "range must be hour or month, not {other:?}"
            )))
        }
    };
    let mut r = axum::response::Response::new(axum::body::Body::from(
        crate::dashboard::points_json(step, &points),
    ));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn openapi() -> Response<Body> {
    let mut r = Response::new(Body::from(OPENAPI));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        ApiError {
            status,
            message: message.to_string(),
        }
    }

    pub(crate) fn bad(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "admin API: {what}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// A JSON answer with its status.
pub(crate) fn reply(status: StatusCode, v: Value) -> axum::response::Response {
    (status, axum::Json(v)).into_response()
}

/// The query string as `T`, unknown parameters refused (a typo must not pass as "no filter").
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad(e.body_text()))
}

/// A JSON body as `T`, with a message that says what was expected.
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("the body must be a JSON object {shape}: {e}")))
}

//! The dashboard, served by Moat itself on the admin listener under `/dashboard/`: what is
//! hitting the site now, who, whether a person is blocked (with one-click allow and unban),
//! what the traps caught, and what the peers share. Server-rendered HTML with no script, so
//! every page reads with JavaScript off; the live views refresh themselves every 2 or 3 seconds.
//!
//! Login is the admin token, once, in a form; then a session cookie (HttpOnly, SameSite=Strict,
//! 12 hours), and every change is a POST carrying the session's CSRF token. The pages read the
//! admin API through its own router ([`crate::api`]), so they show what the API answers.

pub mod digest;
mod html;
pub mod live;
mod pages;
pub mod series;

use axum::body::Body;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use moat_http::body::ProxyBody;
use moat_http::live::LiveShield;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie.
pub const COOKIE: &str = "moat_dashboard";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first (an operator, a few browsers).
const MAX_SESSIONS: usize = 64;

/// A logged-in browser: its cookie value maps to its CSRF token.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, (String, Instant)>>);

fn random_hex() -> String {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    fn create(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, t)| t.elapsed() < SESSION_TTL);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(id.clone(), (csrf.clone(), Instant::now()));
        (id, csrf)
    }

    /// The CSRF token of the session this cookie names, if it is live.
    fn csrf(&self, id: &str) -> Option<String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .find(|(k, (_, t))| {
                moat_core::secret::token_eq(k.as_bytes(), id.as_bytes())
                    && t.elapsed() < SESSION_TTL
            })
            .map(|(_, (c, _))| c.clone())
    }

    fn end(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[derive(Clone)]
pub struct Dashboard {
    pub(crate) api: Router,
    pub(crate) live: Arc<LiveShield>,
    pub(crate) token: Arc<String>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) chart: Arc<live::Live>,
    /// The 30 days, read directly by the Live page (not through the API's JSON: at a page
    /// every 2 s, building and parsing 720 points was most of the open dashboard's cost).
    pub(crate) series: SharedSeries,
}

impl Dashboard {
    pub fn new(
        api: Router,
        live: Arc<LiveShield>,
        token: Arc<String>,
        chart: Arc<live::Live>,
        series: SharedSeries,
    ) -> Self {
        Dashboard {
            api,
            live,
            token,
            sessions: Arc::default(),
            chart,
            series,
        }
    }

    /// The last 30 days by hour (empty when the series file could not be opened).
    pub(crate) async fn month(&self, now_ms: u64) -> Result<Vec<live::Minute>, String> {
        month(&self.series, now_ms).await
    }

    /// GETs an admin API path through the router, as JSON (`Null` on any failure: a page shows
    /// "nothing" rather than failing whole).
    pub(crate) async fn api_get(&self, path: &str) -> serde_json::Value {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let Ok(req) = Request::get(path).body(Body::empty()) else {
            return serde_json::Value::Null;
        };
        let Ok(r) = self.api.clone().oneshot(req).await;
        let Ok(b) = r.into_body().collect().await else {
            return serde_json::Value::Null;
        };
        serde_json::from_slice(&b.to_bytes()).unwrap_or_default()
    }
}

/// Whether `path` is the dashboard's.
pub fn handles(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

pub fn router(d: Dashboard) -> Router {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::to("/dashboard/live") }),
        )
        .route(
            "/dashboard/",
            get(|| async { Redirect::to("/dashboard/live") }),
        )
        .route("/dashboard/login", get(login_form).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/{page}", get(pages::show))
        .route("/dashboard/allow", post(pages::allow))
        .route("/dashboard/unban", post(pages::unban))
        .layer(axum::extract::DefaultBodyLimit::max(4096))
        .with_state(d)
}

/// One request through the dashboard's router, in the listener's body type.
pub async fn call(router: &Router, req: Request<hyper::body::Incoming>) -> Response<ProxyBody> {
    use tower::ServiceExt;
    let Ok(mut r) = router.clone().oneshot(req.map(Body::new)).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    crate::api::into_proxy_body(r)
}

/// The session cookie's value, if the request has one.
pub(crate) fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_string)
        })
}

fn html_response(status: StatusCode, body: String) -> axum::response::Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

const LOGIN: &str = "<!doctype html><html lang=en><head><meta charset=utf-8><title>Moat: log in</title></head>\
<body style=\"font:14px system-ui,sans-serif;margin:3em\"><h1>Moat</h1>{msg}\
<form method=post action=/dashboard/login><label>Admin token \
<input type=password name=token autocomplete=current-password autofocus></label> \
<button>Log in</button></form><p>The token is in <code>STATE_DIR/admin.token</code>.</p></body></html>";

async fn login_form() -> axum::response::Response {
    html_response(StatusCode::OK, LOGIN.replace("{msg}", ""))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(d): State<Dashboard>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> axum::response::Response {
    let ok = form
        .as_ref()
        .is_ok_and(|Form(f)| moat_core::secret::token_eq(f.token.as_bytes(), d.token.as_bytes()));
    if !ok {
        tracing::warn!("dashboard: a login with a wrong token");
        return html_response(
            StatusCode::UNAUTHORIZED,
            LOGIN.replace(
                "{msg}",
                "<p style=\"color:#b00\">That is not the admin token.</p>",
            ),
        );
    }
    let (id, _) = d.sessions.create();
    let mut r = Redirect::to("/dashboard/live").into_response();
    let cookie = format!(
        "{COOKIE}={id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> axum::response::Response {
    if let Some(id) = session_of(&headers) {
        d.sessions.end(&id);
    }
    let mut r = Redirect::to("/dashboard/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "moat_dashboard=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// The series database, once opened (`None` if it could not be: the dashboard then keeps
/// only the hour in memory).
pub type SharedSeries = Arc<Mutex<Option<series::Series>>>;

/// Opens `state_dir/series.sqlite` and loads the last hour of it into `chart` (a restart keeps
/// the live chart).
pub fn open_series(state_dir: &std::path::Path, chart: &live::Live, now_ms: u64) -> SharedSeries {
    let path = state_dir.join("series.sqlite");
    let opened = series::Series::open(&path).map_err(|e| {
        tracing::warn!(error = %e, "the dashboard keeps only the last hour, in memory");
    });
    let s = opened.ok();
    if let Some(s) = &s {
        let now = now_ms / 60_000;
        if let Ok(minutes) = s.minutes(now.saturating_sub(live::MINUTES as u64), now) {
            chart.restore(&minutes);
        }
    }
    Arc::new(Mutex::new(s))
}

/// Samples the shield's counters and follows the engine's events into `chart` until shutdown;
/// every 10 seconds (and at the end) the current minute, and the one just over, go to `store`.
/// The last 30 days by hour from the series file, off the async threads.
pub(crate) async fn month(series: &SharedSeries, now_ms: u64) -> Result<Vec<live::Minute>, String> {
    let store = series.clone();
    tokio::task::spawn_blocking(move || {
        let g = store.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .map(|s| s.month_by_hour(now_ms / 60_000))
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Minutes (or hours) as the API's JSON points, written directly: 720 points of 11 counters
/// through `serde_json::Value` cost a few milliseconds of maps and allocations per answer.
pub(crate) fn points_json(step_secs: u64, points: &[live::Minute]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 + points.len() * 160);
    let _ = write!(out, "{{\"step_secs\":{step_secs},\"kinds\":{{");
    for (i, (k, label)) in live::KINDS.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        // Ids and labels are this file's constants: JSON-escaped by serde all the same.
        let _ = write!(out, "{sep}\"{k}\":{}", serde_json::Value::from(*label));
    }
    out.push_str("},\"points\":[");
    for (i, m) in points.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{{\"at_ms\":{},\"counts\":{{", m.minute * 60_000);
        for (j, ((k, _), n)) in live::KINDS.iter().zip(m.counts).enumerate() {
            let sep = if j == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\"{k}\":{n}");
        }
        out.push_str("}}");
    }
    out.push_str("]}");
    out
}

pub fn spawn_recorder(
    live: Arc<LiveShield>,
    chart: Arc<live::Live>,
    store: SharedSeries,
    shutdown: &moat_listen::Shutdown,
) {
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        let engine = live.current().engine.clone();
        let mut events = engine.follow_events();
        // Bans restored from the store at start are published as added too: only those made
        // since are counted.
        let started_ms = engine.now_ms();
        let mut changes = engine.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        let save = |now_ms: u64| {
            let (chart, store) = (chart.clone(), store.clone());
            async move {
                let minutes = chart.series(now_ms);
                let _ = tokio::task::spawn_blocking(move || {
                    let g = store.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(s) = g.as_ref() {
                        for m in minutes
                            .iter()
                            .rev()
                            .take(2)
                            .filter(|m| m.counts.iter().any(|c| *c > 0))
                        {
                            if let Err(e) = s.put(m) {
                                tracing::warn!(error = %e, "cannot save the dashboard's series");
                            }
                        }
                    }
                })
                .await;
            }
        };
        loop {
            tokio::select! {
                            _ = tick.tick() => {
                                let shield = live.current();
            let totals = live::Live::totals(shield.metrics.requests.get(), &shield.metrics.hits());
                                chart.sample(engine.now_ms(), totals);
                                ticks += 1;
                                if ticks.is_multiple_of(10) {
                                    save(engine.now_ms()).await;
                                }
                            }
                            e = events.recv() => match e {
                                Ok(e) => if let Some(k) = live::kind_of(&e) {
                                    chart.event(engine.now_ms(), k);
                                },
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(_) => return,
                            },
                            c = changes.recv() => match c {
                                Ok(moat_engine::changes::Change::Added(d)) => {
                                    if live::made_here(&d, started_ms) {
                                        chart.event(engine.now_ms(), live::BANS);
                                    }
                                }
                                Ok(_) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    tracing::warn!(missed = n, "the dashboard missed decision changes; bans made are undercounted");
                                }
                                Err(_) => return,
                            },
                            _ = stop.cancelled() => {
                                save(engine.now_ms()).await;
                                return;
                            }
                        }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::live::{Minute, KINDS};

    /// The hand-written JSON is JSON, and says what the kinds and counts are.
    #[test]
    fn points_are_the_json_they_claim() {
        let mut a = Minute {
            minute: 1_000,
            ..Default::default()
        };
        a.counts[0] = 7;
        a.counts[KINDS.len() - 1] = u64::MAX;
        let b = Minute {
            minute: 1_060,
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&super::points_json(3600, &[a, b])).unwrap();
        assert_eq!(v["step_secs"], 3600);
        assert_eq!(v["kinds"].as_object().unwrap().len(), KINDS.len());
        assert_eq!(v["kinds"]["requests"], KINDS[0].1);
        let p = v["points"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["at_ms"], 60_000_000);
        assert_eq!(p[0]["counts"]["requests"], 7);
        assert_eq!(p[0]["counts"][KINDS[KINDS.len() - 1].0], u64::MAX);
        assert_eq!(p[1]["counts"].as_object().unwrap().len(), KINDS.len());
        let empty: serde_json::Value = serde_json::from_str(&super::points_json(60, &[])).unwrap();
        assert_eq!(empty["points"], serde_json::json!([]));
    }
}

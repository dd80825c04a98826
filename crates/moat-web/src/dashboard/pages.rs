//! The dashboard's pages, each from the admin API's answers, and its two actions: allow an
//! address (which lifts its bans) and lift a ban.

use super::html::{button, chart, esc, page, table, PAGES};
use super::live::KINDS;
use super::{html_response, session_of, Dashboard};
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => String::new(),
        other => esc(&other.to_string()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC from Unix milliseconds.
fn when(v: &Value) -> String {
    v.as_i64().map(moat_core::utc_text).unwrap_or_default()
}

/// The array at `key` of an API answer; empty when it is missing (a page shows "nothing").
pub(super) fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// How many bans the People page shows at once: a store under a ban storm holds a million,
/// and the page reads only the slice it shows (`?offset=`).
const BANS_PER_PAGE: usize = 200;

#[derive(serde::Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    offset: usize,
}

pub(super) async fn show(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(csrf) = session_of(&headers).and_then(|id| d.sessions.csrf(&id)) else {
        return Redirect::to("/dashboard/login").into_response();
    };
    let Some((_, title)) = PAGES.iter().find(|(id, _)| *id == name) else {
        return html_response(
            StatusCode::NOT_FOUND,
            page("", "Not found", "<p>No such page.</p>", None),
        );
    };
    let (body, refresh) = match name.as_str() {
        "live" => (live(&d).await, Some(2)),
        "who" => (who(&d, &csrf).await, Some(3)),
        "people" => (people(&d, &csrf, q.offset).await, None),
        "catch" => (catch(&d).await, None),
        _ => (peers(&d).await, None),
    };
    html_response(StatusCode::OK, page(&name, title, &body, refresh))
}

async fn live(d: &Dashboard) -> String {
    let now = d.live.current().engine.now_ms();
    let series = d.chart.series(now);
    let mut totals = [0u64; KINDS.len()];
    for m in &series {
        for (t, n) in totals.iter_mut().zip(m.counts) {
            *t += n;
        }
    }
    let last = series.last().map(|m| m.counts).unwrap_or_default();
    let rows: Vec<Vec<String>> = KINDS
        .iter()
        .enumerate()
        .map(|(k, (id, label))| {
            vec![
                format!("<span id=\"total-{id}\">{}</span>", esc(label)),
                format!("<span class=n>{}</span>", last[k]),
                format!("<span class=n>{}</span>", totals[k]),
            ]
        })
        .collect();
    let top = d.api_get("/api/top?n=5").await;
    let rules: Vec<Vec<String>> = list(&top, "rules")
        .iter()
        .map(|r| vec![s(&r["rule"]), s(&r["action"]), s(&r["count"])])
        .collect();
    let month = d.month(now).await.unwrap_or_default();
    format!(
        "{}<h2>This minute and the last hour</h2>{}<p>Active bans: <b id=bans-active>{}</b></p>\
         <h2>What decides now</h2>{}<h2>The last 30 days, by hour</h2>{}",
        chart("live-chart", &series, "-60 min"),
        table(&["", "this minute", "last hour"], &rows),
        s(&top["bans_active"]),
        table(
            &["rule", "action", "decisions (last minute or two)"],
            &rules
        ),
        chart("month-chart", &month, "-30 days")
    )
}

async fn who(d: &Dashboard, csrf: &str) -> String {
    let top = d.api_get("/api/top?n=20").await;
    let clients: Vec<Vec<String>> = list(&top, "clients")
        .iter()
        .map(|c| {
            let ip = c["client"].as_str().unwrap_or_default();
            let state = c["state"].as_str().unwrap_or_default();
            let mut actions = String::new();
            if state != "allowlisted" {
                actions.push_str(&button(
                    "/dashboard/allow?back=who",
                    "net",
                    ip,
                    csrf,
                    "Allow",
                ));
            }
            if state == "banned" {
                actions.push_str(&button(
                    "/dashboard/unban?back=who",
                    "scope",
                    ip,
                    csrf,
                    "Unban",
                ));
            }
            vec![
                format!("<span class=client>{}</span>", esc(ip)),
                s(&c["count"]),
                format!("<span class=\"{}\">{}</span>", esc(state), esc(state)),
                actions,
            ]
        })
        .collect();
    let nets: Vec<Vec<String>> = list(&top, "networks")
        .iter()
        .map(|n| vec![s(&n["network"]), s(&n["clients"]), s(&n["count"])])
        .collect();
    let seen = |key: &str| -> Vec<Vec<String>> {
        list(&top, key)
            .iter()
            .map(|a| vec![s(&a["value"]), s(&a["count"]), actions(&a["actions"])])
            .collect()
    };
    let systems: Vec<Vec<String>> = list(&top, "systems")
        .iter()
        .map(|a| {
            vec![
                format!("<span class=asn>AS{}</span>", s(&a["asn"])),
                s(&a["name"]),
                s(&a["clients"]),
                s(&a["count"]),
            ]
        })
        .collect();
    format!(
        "<p>Decisions of the last minute or two, by source.</p><h2>Addresses</h2>{}\
         <h2>Networks</h2>{}<h2>Autonomous systems</h2>{}<p class=note>From {}. The shipped \
         table: <a href=\"https://db-ip.com\">IP Geolocation by DB-IP</a>, RouteViews and NRO, \
         CC BY 4.0; <code>moat asn refresh</code> fetches a newer one.</p>\
         <h2>User agents</h2>{}<h2>Header shapes</h2>\
         <p>Which headers came, in which order, and whether they agree with the user agent \
         (<code>_y_</code>, <code>_n_</code>: they contradict it); see <code>moat.fingerprint</code> \
         in the rules.</p>{}",
        table(&["address", "decisions", "state", ""], &clients),
        table(&["network", "addresses", "decisions"], &nets),
        table(&["AS", "name", "addresses", "decisions"], &systems),
        s(&top["asn_table"]),
        table(&["user agent", "decisions", "decided"], &seen("agents")),
        table(&["header shape", "decisions", "decided"], &seen("shapes"))
    )
}

/// `{"block": 30, "log": 2}` as `block 30, log 2`.
fn actions(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(a, c)| format!("{} {}", esc(a), s(c)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The People page's proof section: what the proof passed and failed, and every client a rule
/// stopped that then passed it, with Allow.
async fn proof_section(d: &Dashboard, csrf: &str) -> String {
    let p = d.api_get("/api/proof").await;
    if p["active"] != Value::Bool(true) {
        return "<h2>The browser proof</h2><p>Not used by this policy: no request is asked \
                for it (presets with a <code>challenge</code> rule use it).</p>"
            .into();
    }
    let rows: Vec<Vec<String>> = list(&p, "rescues")
        .iter()
        .map(|r| {
            let ip = r["client"].as_str().unwrap_or_default();
            vec![
                format!("<span class=rescued>{}</span>", esc(ip)),
                s(&r["rule"]),
                when(&r["stopped_ms"]),
                when(&r["passed_ms"]),
                s(&r["proof"]),
                button("/dashboard/allow?back=people", "net", ip, csrf, "Allow"),
            ]
        })
        .collect();
    format!(
        "<h2>The browser proof</h2><p>Passed with JavaScript: <b id=proof-work>{}</b> · \
         without (after the wait): <b id=proof-nojs>{}</b> · failed: <b id=proof-failed>{}</b> \
         (since Moat started)</p><h3>Stopped by a rule, then passed the proof ({})</h3>\
         <p>A person, most likely: a script that solves the proof would show here too, so look \
         at the rule before you allow.</p>{}",
        s(&p["passed_work"]),
        s(&p["passed_nojs"]),
        s(&p["failed"]),
        s(&p["rescued"]),
        table(
            &[
                "address",
                "stopped by",
                "stopped (UTC)",
                "passed (UTC)",
                "proof",
                ""
            ],
            &rows
        )
    )
}

/// Links to the newer and older pages of bans around `offset`.
fn pager(offset: usize, total: usize) -> String {
    let mut links = Vec::new();
    if offset > 0 {
        links.push(format!(
            "<a href=\"/dashboard/people?offset={}\">newer</a>",
            offset.saturating_sub(BANS_PER_PAGE)
        ));
    }
    if offset + BANS_PER_PAGE < total {
        links.push(format!(
            "<a id=older href=\"/dashboard/people?offset={}\">older</a>",
            offset + BANS_PER_PAGE
        ));
    }
    if links.is_empty() {
        return String::new();
    }
    format!(
        "<p>Bans {} to {} of {total}, newest first: {}</p>",
        (offset + 1).min(total),
        (offset + BANS_PER_PAGE).min(total),
        links.join(" · ")
    )
}

async fn people(d: &Dashboard, csrf: &str, offset: usize) -> String {
    let bans = d
        .api_get(&format!(
            "/api/decisions?limit={BANS_PER_PAGE}&offset={offset}"
        ))
        .await;
    let rows: Vec<Vec<String>> = list(&bans, "decisions")
        .iter()
        .map(|b| {
            let scope = b["scope"].as_str().unwrap_or_default();
            let mut actions = button(
                "/dashboard/unban?back=people",
                "scope",
                scope,
                csrf,
                "Unban",
            );
            if !scope.contains('/') {
                actions.push_str(&button(
                    "/dashboard/allow?back=people",
                    "net",
                    scope,
                    csrf,
                    "Allow",
                ));
            }
            vec![
                esc(scope),
                s(&b["origin"]),
                s(&b["reason"]),
                when(&b["created_ms"]),
                if b["expires_ms"].is_null() {
                    "until lifted".into()
                } else {
                    when(&b["expires_ms"])
                },
                actions,
            ]
        })
        .collect();
    let allow = d.api_get("/api/allowlist").await;
    let allowed: Vec<Vec<String>> = list(&allow, "allowlist")
        .iter()
        .map(|a| vec![s(&a["net"]), s(&a["note"]), when(&a["created_ms"])])
        .collect();
    format!(
        "<p>If a person is here, <b>Allow</b> lets their address in from the next request and \
         lifts its bans; <b>Unban</b> lifts only the ban.</p>{}<h2>Bans ({})</h2>{}{}\
         <h2>Allowlist</h2>{}",
        proof_section(d, csrf).await,
        s(&bans["total"]),
        pager(offset, bans["total"].as_u64().unwrap_or(0) as usize),
        table(
            &[
                "scope",
                "origin",
                "reason",
                "since (UTC)",
                "until (UTC)",
                ""
            ],
            &rows
        ),
        table(&["address or network", "note", "since (UTC)"], &allowed)
    )
}

async fn catch(d: &Dashboard) -> String {
    let msgs = d.api_get("/api/quarantine/messages?limit=50").await;
    let m: Vec<Vec<String>> = list(&msgs, "messages")
        .iter()
        .map(|m| {
            vec![
                when(&m["received_ms"]),
                s(&m["client_ip"]),
                s(&m["auth_user"]),
                s(&m["auth_password"]),
                s(&m["mail_from"]),
                esc(&list(m, "rcpt_to")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")),
                s(&m["subject"]),
            ]
        })
        .collect();
    let camps = d.api_get("/api/quarantine/campaigns").await;
    let c: Vec<Vec<String>> = list(&camps, "campaigns")
        .iter()
        .map(|c| {
            let domains: Vec<&str> = list(c, "domains")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![
                s(&c["id"]),
                s(&c["messages"]),
                s(&c["subject_skeleton"]),
                esc(&domains.join(", ")),
                when(&c["last_ms"]),
            ]
        })
        .collect();
    let doms = d.api_get("/api/quarantine/indicators?kind=domain").await;
    let dm: Vec<Vec<String>> = list(&doms, "indicators")
        .iter()
        .take(50)
        .map(|i| vec![s(&i["value"]), s(&i["messages"]), when(&i["last_ms"])])
        .collect();
    let reps = d.api_get("/api/reports?limit=50").await;
    let r: Vec<Vec<String>> = list(&reps, "reports")
        .iter()
        .map(|r| {
            vec![
                when(&r["updated_ms"]),
                s(&r["target"]),
                s(&r["status"]),
                s(&r["indicator"]),
                s(&r["recipient"]),
                s(&r["answer"]),
            ]
        })
        .collect();
    format!(
        "<h2>Captured mail</h2>{}<h2>Campaigns</h2>{}<h2>Domains in the links</h2>{}<h2>Reports</h2>{}",
        table(&["received (UTC)", "client", "login", "password", "from", "to", "subject"], &m),
        table(&["campaign", "messages", "subject skeleton", "domains", "last seen (UTC)"], &c),
        table(&["domain", "messages", "last seen (UTC)"], &dm),
        table(&["updated (UTC)", "target", "status", "indicator", "to", "answer"], &r)
    )
}

async fn peers(d: &Dashboard) -> String {
    let feeds = d.api_get("/api/feeds").await;
    let rows: Vec<Vec<String>> = list(&feeds, "feeds")
        .iter()
        .map(|f| {
            vec![
                s(&f["name"]),
                s(&f["url"]),
                s(&f["weight"]),
                s(&f["seq"]),
                s(&f["indicators"]),
                s(&f["bans"]),
                s(&f["refused"]),
                when(&f["last_ok_ms"]),
                s(&f["last_error"]),
            ]
        })
        .collect();
    format!(
        "<p>The feeds this instance follows, how much each is trusted (weight), and the bans \
         their consensus made here.</p>{}",
        table(
            &[
                "feed",
                "url",
                "weight",
                "seq",
                "indicators",
                "bans here",
                "refused polls",
                "last good poll (UTC)",
                "last error"
            ],
            &rows
        )
    )
}

#[derive(serde::Deserialize)]
pub(super) struct Back {
    back: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct AllowForm {
    csrf: String,
    net: String,
}

#[derive(serde::Deserialize)]
pub(super) struct UnbanForm {
    csrf: String,
    scope: String,
}

/// The session is live and the form carries its CSRF token.
fn authorised(d: &Dashboard, headers: &HeaderMap, csrf: &str) -> bool {
    session_of(headers)
        .and_then(|id| d.sessions.csrf(&id))
        .is_some_and(|want| moat_core::secret::token_eq(csrf.as_bytes(), want.as_bytes()))
}

fn back_to(q: &Back) -> String {
    let page = q
        .back
        .as_deref()
        .filter(|b| PAGES.iter().any(|(id, _)| id == b))
        .unwrap_or("people");
    format!("/dashboard/{page}")
}

/// Sends one write to the admin API; its error, if any, as text.
async fn api_write(d: &Dashboard, req: Request<Body>) -> Result<(), String> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let Ok(r) = d.api.clone().oneshot(req).await;
    if r.status().is_success() {
        return Ok(());
    }
    let b = r
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&b).unwrap_or_default();
    Err(v["error"].as_str().unwrap_or("failed").to_string())
}

fn refused(e: &str, back: &str) -> Response {
    html_response(
        StatusCode::BAD_REQUEST,
        page(
            "",
            "Not done",
            &format!("<p>{}</p><p><a href=\"{}\">Back</a></p>", esc(e), esc(back)),
            None,
        ),
    )
}

pub(super) async fn allow(
    State(d): State<Dashboard>,
    Query(q): Query<Back>,
    headers: HeaderMap,
    Form(f): Form<AllowForm>,
) -> Response {
    if !authorised(&d, &headers, &f.csrf) {
        return (StatusCode::FORBIDDEN, "log in again\n").into_response();
    }
    let body = serde_json::json!({"net": f.net, "note": "allowed from the dashboard"}).to_string();
    let Ok(req) = Request::post("/api/allowlist")
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return refused("bad request", &back_to(&q));
    };
    match api_write(&d, req).await {
        Ok(()) => Redirect::to(&back_to(&q)).into_response(),
        Err(e) => refused(&e, &back_to(&q)),
    }
}

pub(super) async fn unban(
    State(d): State<Dashboard>,
    Query(q): Query<Back>,
    headers: HeaderMap,
    Form(f): Form<UnbanForm>,
) -> Response {
    if !authorised(&d, &headers, &f.csrf) {
        return (StatusCode::FORBIDDEN, "log in again\n").into_response();
    }
    let path = format!(
        "/api/decisions/{}",
        f.scope.replace('%', "%25").replace('/', "%2F")
    );
    let Ok(req) = Request::delete(path).body(Body::empty()) else {
        return refused("not an address or prefix", &back_to(&q));
    };
    match api_write(&d, req).await {
        Ok(()) => Redirect::to(&back_to(&q)).into_response(),
        Err(e) => refused(&e, &back_to(&q)),
    }
}

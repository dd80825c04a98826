//! Decisions and the allowlist: `GET|POST /api/decisions`, `DELETE /api/decisions/{scope}`
//! (and the same under `/api/bans`, the first API's name), `GET|POST /api/allowlist`,
//! `DELETE /api/allowlist/{net}`. Written to the store the way `moat bans` and `moat allow`
//! write; the decider republishes the guard within a second.

use super::{body, query, reply, Api, ApiError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use ipnet::IpNet;
use moat_core::Scope;
use serde_json::{json, Value};

/// The most decisions one answer lists, whatever `limit` asks.
pub const MAX_LIST: usize = 100_000;
/// The deepest page (as documented): past a store's size, an answer is empty anyway.
pub const MAX_OFFSET: usize = u32::MAX as usize;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only decisions whose origin starts with this (`manual`, `rule:`, `feed:`, `jail:sshd`).
    #[serde(default)]
    origin: Option<String>,
    /// Only scopes containing this text (`192.0.2.`, `/24`).
    #[serde(default)]
    scope: Option<String>,
    /// Only decisions made at or after this time (Unix milliseconds).
    #[serde(default)]
    since_ms: Option<u64>,
    /// How many matching decisions to skip (newest first), for the next page.
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/decisions`'s body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    /// An address or CIDR prefix.
    scope: String,
    /// How long, e.g. `1h` (default: until removed).
    #[serde(default, deserialize_with = "present")]
    duration: Option<String>,
    #[serde(default, deserialize_with = "present")]
    reason: Option<String>,
}

const BAN_SHAPE: &str = "{\"scope\": ADDRESS or PREFIX, \"duration\": \"1h\" (optional), \
                         \"reason\": \"...\" (optional)}";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAllow {
    net: String,
    #[serde(default, deserialize_with = "present")]
    note: Option<String>,
}

/// An optional string field: absent is `None`, but `null` is refused like any other value that
/// is not a string (a client that sends `null` meant something; it is told, not ignored).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    <String as serde::Deserialize>::deserialize(d).map(Some)
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, moat_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(what, e)),
        Err(e) => Err(ApiError::internal(what, e)),
    }
}

async fn active(api: &Api) -> Result<Vec<moat_core::Decision>, ApiError> {
    let engine = api.live.current().engine.clone();
    blocking("reading the decisions", move || {
        engine.store().decisions(engine.now_ms())
    })
    .await
}

/// `GET /api/decisions`: the active decisions, newest first, filtered.
pub(super) async fn list(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let q: ListQuery = query(&uri)?;
    let limit = match q.limit {
        None => 1000,
        Some(n @ 1..=MAX_LIST) => n,
        Some(n) => {
            return Err(ApiError::bad(format!(
                "limit must be from 1 to {MAX_LIST}, not {n}"
            )))
        }
    };
    if q.since_ms.is_some_and(|t| t > i64::MAX as u64) {
        return Err(ApiError::bad(format!(
            "since_ms must be at most {}",
            i64::MAX
        )));
    }
    if q.offset.is_some_and(|o| o > MAX_OFFSET) {
        return Err(ApiError::bad(format!(
            "offset must be at most {MAX_OFFSET}"
        )));
    }
    let engine = api.live.current().engine.clone();
    let page = moat_store::DecisionQuery {
        origin: q.origin,
        scope: q.scope,
        since_ms: q.since_ms,
        offset: q.offset.unwrap_or(0),
        limit,
    };
    let found = blocking("reading the decisions", move || {
        engine.store().decision_page(engine.now_ms(), &page)
    })
    .await?;
    let list: Vec<Value> = found
        .decisions
        .iter()
        .map(moat_store::decision_json)
        .collect();
    Ok(super::reply(
        StatusCode::OK,
        json!({ "total": found.total, "decisions": list }),
    ))
}

/// `GET /api/bans`: every active decision as a bare array (the first API's shape).
pub(super) async fn list_bare(State(api): State<Api>) -> Result<Response, ApiError> {
    let all = active(&api).await?;
    let list: Vec<Value> = all.iter().map(moat_store::decision_json).collect();
    Ok(reply(StatusCode::OK, Value::Array(list)))
}

/// `POST /api/decisions`: a manual ban. Refused (409) on an allowlisted address, where it
/// would never apply.
pub(super) async fn add(
    State(api): State<Api>,
    uri: Uri,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let new: NewBan = body(&bytes, BAN_SHAPE)?;
    let scope = Scope::parse(&new.scope).map_err(|e| ApiError::bad(format!("scope: {e}")))?;
    let ttl = match new.duration.as_deref().map(moat_config::parse_duration) {
        None => None,
        Some(Ok(d)) if d.is_zero() => return Err(ApiError::bad("duration: must be more than 0")),
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return Err(ApiError::bad(format!("duration: {e}"))),
    };
    let shield = api.live.current();
    if let Scope::Ip(ip) = scope {
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
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{ip} is on the allowlist, so a ban would not apply; take it off first \
                     (moat allow rm {ip})"
                ),
            ));
        }
    }
    let reason = new.reason.unwrap_or_else(|| "manual ban".into());
    let engine = shield.engine.clone();
    let d = blocking("storing the ban", move || {
        let now = engine.now_ms();
        moat_store::add_manual_ban(&**engine.store(), scope, ttl, &reason, now)
    })
    .await?;
    tracing::info!(target: "moat::decision", scope = %d.scope, expires_ms = d.expires_ms,
        reason = %d.reason, by = "admin API", "manual ban");
    let mut r = reply(StatusCode::CREATED, moat_store::decision_json(&d));
    // Under the path it was posted to (`/api/bans` for the first API's clients).
    let location = format!(
        "{}/{}",
        uri.path().trim_end_matches('/'),
        d.scope.to_string().replace('/', "%2F")
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `DELETE /api/decisions/{scope}` (a prefix's `/` as `%2F`): lifts the decision on exactly
/// that scope.
pub(super) async fn lift(
    State(api): State<Api>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let scope = Scope::parse(&raw).map_err(|e| ApiError::bad(format!("scope: {e}")))?;
    let engine = api.live.current().engine.clone();
    let wanted = scope.clone();
    let lifted = blocking("lifting the ban", move || {
        let store = engine.store();
        let same = moat_store::DecisionQuery {
            scope: Some(wanted.to_string()),
            limit: usize::MAX,
            ..Default::default()
        };
        let found = store
            .decision_page(engine.now_ms(), &same)?
            .decisions
            .into_iter()
            .find(|d| d.scope == wanted);
        Ok(match store.remove_decision(&wanted)? {
            true => Some(found),
            false => None,
        })
    })
    .await?;
    match lifted {
        Some(d) => {
            tracing::info!(target: "moat::decision", scope = %scope, by = "admin API", "ban lifted");
            Ok(reply(
                StatusCode::OK,
                match d {
                    Some(d) => moat_store::decision_json(&d),
                    None => json!({ "scope": scope.to_string() }),
                },
            ))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no ban on exactly {scope}"),
        )),
    }
}

fn net_of(raw: &str) -> Result<IpNet, ApiError> {
    match Scope::parse(raw) {
        Ok(Scope::Ip(ip)) => Ok(ip.into()),
        Ok(Scope::Prefix(n)) => Ok(n),
        Err(e) => Err(ApiError::bad(format!("net: {e}"))),
    }
}

/// An address alone, a prefix as CIDR: how `moat allow list` shows them.
fn show_net(n: &IpNet) -> String {
    match n.prefix_len() == n.max_prefix_len() {
        true => n.addr().to_string(),
        false => n.to_string(),
    }
}

/// `GET /api/allowlist`: the store's entries (the config's `bans.allow` comes first anyway).
pub(super) async fn allowlist(State(api): State<Api>) -> Result<Response, ApiError> {
    let engine = api.live.current().engine.clone();
    let entries = blocking("reading the allowlist", move || {
        engine.store().allow_entries()
    })
    .await?;
    let list: Vec<Value> = entries
        .iter()
        .map(|e| json!({"net": show_net(&e.net), "note": e.note, "created_ms": e.created_ms}))
        .collect();
    Ok(reply(StatusCode::OK, json!({ "allowlist": list })))
}

/// `POST /api/allowlist`: allows an address or prefix and lifts the bans inside it (the
/// dashboard's one click).
pub(super) async fn allow(State(api): State<Api>, bytes: Bytes) -> Result<Response, ApiError> {
    let new: NewAllow = body(
        &bytes,
        "{\"net\": ADDRESS or PREFIX, \"note\": \"...\" (optional)}",
    )?;
    let net = net_of(&new.net)?;
    let note = new
        .note
        .unwrap_or_else(|| "allowed from the admin API".into());
    let engine = api.live.current().engine.clone();
    let note2 = note.clone();
    let (lifted, now) = blocking("allowing", move || {
        let now = engine.now_ms();
        moat_store::allow_and_lift(&**engine.store(), net, &note2, now).map(|l| (l, now))
    })
    .await?;
    tracing::info!(target: "moat::decision", net = %net, by = "admin API", lifted = lifted.len(), "allowlisted");
    let lifted: Vec<String> = lifted.iter().map(|s| s.to_string()).collect();
    Ok(reply(
        StatusCode::CREATED,
        json!({"net": show_net(&net), "note": note, "created_ms": now, "lifted": lifted}),
    ))
}

/// `DELETE /api/allowlist/{net}`.
pub(super) async fn unallow(
    State(api): State<Api>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let net = net_of(&raw)?;
    let engine = api.live.current().engine.clone();
    let removed = blocking("changing the allowlist", move || {
        engine.store().unallow(net)
    })
    .await?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{} is not on the allowlist", show_net(&net)),
        ));
    }
    tracing::info!(target: "moat::decision", net = %net, by = "admin API", "taken off the allowlist");
    Ok(reply(StatusCode::OK, json!({ "net": show_net(&net) })))
}

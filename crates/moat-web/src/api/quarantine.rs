//! The quarantine, as `moat quarantine` shows it: `GET /api/quarantine/messages`,
//! `/messages/{id}`, `/indicators`, `/campaigns`, `/logins`. Read-only, through a read-only
//! connection to the index (SQLite's WAL lets the writer go on). No quarantine configured, or
//! none written yet: empty lists.

use super::{query, reply, Api, ApiError};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use moat_trap::quarantine::{files, index, index_path, views};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The most rows one answer lists.
pub const MAX_LIST: usize = 10_000;

fn quarantine_dir(api: &Api) -> Option<PathBuf> {
    let cfg = &api.live.current().cfg;
    cfg.trap
        .as_ref()
        .map(|t| t.quarantine_dir.clone())
        .or_else(|| cfg.mail.as_ref().map(|m| m.quarantine_dir.clone()))
}

/// Runs `f` on the index off the async threads; `empty` when there is no index yet.
async fn with_index(
    api: &Api,
    empty: Value,
    f: impl FnOnce(&std::path::Path, &rusqlite::Connection) -> Result<Value, ApiError> + Send + 'static,
) -> Result<Value, ApiError> {
    let Some(dir) = quarantine_dir(api) else {
        return Ok(empty);
    };
    let path = index_path(&dir);
    if !path.is_file() {
        return Ok(empty);
    }
    tokio::task::spawn_blocking(move || {
        let db = index::open_read(&path)
            .map_err(|e| ApiError::internal("opening the quarantine index", e))?;
        f(&dir, &db)
    })
    .await
    .map_err(|e| ApiError::internal("reading the quarantine", e))?
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

fn limit(uri: &Uri) -> Result<usize, ApiError> {
    let q: Limit = query(uri)?;
    match q.limit {
        None => Ok(50),
        Some(n @ 1..=MAX_LIST) => Ok(n),
        Some(n) => Err(ApiError::bad(format!(
            "limit must be from 1 to {MAX_LIST}, not {n}"
        ))),
    }
}

fn read_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("reading the quarantine", e)
}

pub(super) async fn messages(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let n = limit(&uri)?;
    let v = with_index(&api, json!({ "messages": [] }), move |dir, db| {
        let rows = moat_trap::quarantine::list(dir, db, n).map_err(read_err)?;
        Ok(json!({ "messages": rows }))
    })
    .await?;
    Ok(reply(StatusCode::OK, v))
}

pub(super) async fn message(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // An id is never a path: refused before anything is looked at.
    if !files::is_id(&id) {
        return Err(ApiError::bad(
            "not a message id (ids are letters, digits, '-' and '_')",
        ));
    }
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "no such message");
    let want = id.clone();
    let v = with_index(&api, Value::Null, move |dir, db| {
        Ok(match views::show(dir, db, &want).map_err(read_err)? {
            Some(s) => json!({ "message": s.message, "indexed": s.indexed, "iocs": s.iocs }),
            None => Value::Null,
        })
    })
    .await?;
    match v {
        Value::Null => Err(missing()),
        v => Ok(reply(StatusCode::OK, v)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Kind {
    #[serde(default)]
    kind: Option<String>,
}

pub(super) async fn indicators(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let q: Kind = query(&uri)?;
    if let Some(k) = &q.kind {
        if !index::IOC_KINDS.contains(&k.as_str()) {
            return Err(ApiError::bad(format!(
                "kind must be one of {}",
                index::IOC_KINDS.join(", ")
            )));
        }
    }
    let v = with_index(&api, json!({ "indicators": [] }), move |_, db| {
        let rows = index::ioc_summary(db, q.kind.as_deref()).map_err(read_err)?;
        Ok(json!({ "indicators": rows }))
    })
    .await?;
    Ok(reply(StatusCode::OK, v))
}

pub(super) async fn campaigns(State(api): State<Api>) -> Result<Response, ApiError> {
    let v = with_index(&api, json!({ "campaigns": [] }), |_, db| {
        Ok(json!({ "campaigns": views::campaigns(db).map_err(read_err)? }))
    })
    .await?;
    Ok(reply(StatusCode::OK, v))
}

pub(super) async fn logins(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let n = limit(&uri)?;
    let v = with_index(&api, json!({ "logins": [] }), move |_, db| {
        Ok(json!({ "logins": index::logins(db, n).map_err(read_err)? }))
    })
    .await?;
    Ok(reply(StatusCode::OK, v))
}

//! `GET /api/feeds` and `GET /api/reports`: views of parts that live in the binary (the feed
//! follower, the reporter), which the composition root hands in once they start
//! ([`Sources`]). Before that, or without them: empty lists.

use super::{query, reply, Api, ApiError};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use moat_core::Origin;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The feeds followed (as `moat feeds list --json`).
pub type FeedsView = Box<dyn Fn() -> Vec<Value> + Send + Sync>;
/// The newest `n` abuse reports (as `moat quarantine report --json`).
pub type ReportsView = Box<dyn Fn(usize) -> Result<Vec<Value>, String> + Send + Sync>;

/// Set once each, by the composition root; both are called off the async threads.
#[derive(Default)]
pub struct Sources {
    pub feeds: OnceLock<FeedsView>,
    pub reports: OnceLock<ReportsView>,
}

/// `GET /api/feeds`: each feed followed, its trust (weight), the state of its view, and what
/// it contributed: the active bans its consensus made here.
pub(super) async fn feeds(State(api): State<Api>) -> Result<Response, ApiError> {
    let (sources, engine) = (api.sources.clone(), api.live.current().engine.clone());
    let peers = tokio::task::spawn_blocking(move || {
        let Some(view) = sources.feeds.get() else {
            return Vec::new();
        };
        let mut rows = view();
        if rows.is_empty() {
            return rows;
        }
        // Counted by the store from its origin index: a ban storm's million decisions are
        // never read one by one for this.
        let mut contributed: HashMap<String, u64> = HashMap::new();
        let counts = engine
            .store()
            .origin_counts(engine.now_ms(), "feed:")
            .unwrap_or_default();
        for (origin, n) in counts {
            if let Origin::Feed(peers) = Origin::parse(&origin) {
                for p in peers.split(',') {
                    *contributed.entry(p.to_string()).or_default() += n;
                }
            }
        }
        for r in &mut rows {
            let name = r["name"].as_str().unwrap_or_default();
            r["bans"] = contributed.get(name).copied().unwrap_or(0).into();
        }
        rows
    })
    .await
    .map_err(|e| ApiError::internal("reading the feeds", e))?;
    Ok(reply(StatusCode::OK, json!({ "feeds": peers })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/reports?limit=`: what was reported (or written to the outbox in a dry run), and
/// what was answered, newest first.
pub(super) async fn reports(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let q: Limit = query(&uri)?;
    let n = match q.limit {
        None => 50,
        Some(n @ 1..=10_000) => n,
        Some(n) => {
            return Err(ApiError::bad(format!(
                "limit must be from 1 to 10000, not {n}"
            )))
        }
    };
    let sources = api.sources.clone();
    let rows = tokio::task::spawn_blocking(move || match sources.reports.get() {
        Some(view) => view(n),
        None => Ok(Vec::new()),
    })
    .await
    .map_err(|e| ApiError::internal("reading the reports", e))?
    .map_err(|e| ApiError::internal("reading the reports", e))?;
    Ok(reply(StatusCode::OK, json!({ "reports": rows })))
}

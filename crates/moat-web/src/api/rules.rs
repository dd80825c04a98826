//! `GET /api/rules`: the running policy's rules and rate limits, in order, each with how
//! often it decided since the start, by action; and the decisions of ids the policy no longer
//! has (a reload removed them) or that are not rules (`ban`: a banned client refused).

use super::{reply, Api};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub(super) async fn list(State(api): State<Api>) -> Response {
    let shield = api.live.current();
    let mut hits: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (id, action, n) in shield.metrics.hits() {
        hits.entry(id).or_default().insert(action.into(), n.into());
    }
    let mut take = |id: &str| Value::Object(hits.remove(id).unwrap_or_default());
    let policy = &shield.cfg.policy;
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "description": r.description, "action": r.action.name(),
                "offence": r.offence, "hits": take(&r.id),
            })
        })
        .collect();
    let limits: Vec<Value> = policy
        .rate_limits
        .iter()
        .map(|l| {
            json!({
                "id": l.id, "description": l.description, "action": l.action.name(),
                "key": l.key.spelling(), "requests": l.requests,
                "period_secs": l.period.as_secs(), "burst": l.burst, "ban": l.ban,
                "hits": take(&l.id),
            })
        })
        .collect();
    let other: Map<String, Value> = hits
        .into_iter()
        .map(|(id, by)| (id, Value::Object(by)))
        .collect();
    reply(
        StatusCode::OK,
        json!({ "rules": rules, "rate_limits": limits, "other": other }),
    )
}

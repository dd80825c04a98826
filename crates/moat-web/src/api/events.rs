//! `GET /api/events`: the live stream, as server-sent events. Each sensor's events (`event:
//! event`: a rule offence, a limit, enumeration, SASL failures, a trap login, a capture, a jail)
//! and each change of the decisions (`event: decision`: added, extended, removed). A client
//! that falls behind skips what it missed and is told how much (`event: lagged`). The stream
//! ends when Moat stops.

use super::Api;
use axum::extract::State;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use moat_core::{Event, EventKind};
use moat_engine::changes::Change;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// An event as the stream and the dashboard show it. The trap's passwords are never on the
/// bus, so never here.
pub fn event_json(e: &Event) -> Value {
    let (kind, detail) = match &e.kind {
        EventKind::RuleOffence { rule } => ("rule_offence", json!({ "rule": rule })),
        EventKind::RateLimited { limit } => ("rate_limited", json!({ "limit": limit })),
        EventKind::Enumeration => ("enumeration", json!({})),
        EventKind::EnumerationNetwork { net } => {
            ("enumeration_network", json!({ "net": net.to_string() }))
        }
        EventKind::AuthFailures => ("auth_failures", json!({})),
        EventKind::AuthFailuresNetwork { net } => {
            ("auth_failures_network", json!({ "net": net.to_string() }))
        }
        EventKind::TrapLogin { accepted } => ("trap_login", json!({ "accepted": accepted })),
        EventKind::Captured { id } => ("captured", json!({ "id": id })),
        EventKind::JailTripped {
            jail, scope, ttl, ..
        } => (
            "jail_tripped",
            json!({ "jail": jail, "scope": scope.to_string(), "ttl_secs": ttl.as_secs() }),
        ),
    };
    json!({
        "at_ms": e.at_ms, "sensor": e.sensor.as_str(), "ip": e.subject.ip.to_string(),
        "account": e.subject.account, "email": e.subject.email, "kind": kind, "detail": detail,
    })
}

fn change_json(c: &Change) -> Option<Value> {
    Some(match c {
        Change::Added(d) => json!({ "change": "added", "decision": moat_store::decision_json(d) }),
        Change::Extended(d) => {
            json!({ "change": "extended", "decision": moat_store::decision_json(d) })
        }
        Change::Removed { scope, expired } => {
            json!({ "change": "removed", "scope": scope.to_string(), "expired": expired })
        }
        Change::Allowlist(_) => return None,
    })
}

/// What the stream waits on.
struct Follow {
    events: Receiver<Arc<Event>>,
    changes: Receiver<Change>,
    stop: moat_listen::Shutdown,
}

fn lagged(n: u64) -> Sse {
    Sse::default()
        .event("lagged")
        .data(json!({ "missed": n }).to_string())
}

impl Follow {
    async fn next(&mut self) -> Option<Sse> {
        loop {
            tokio::select! {
                e = self.events.recv() => match e {
                    Ok(e) => return Some(Sse::default().event("event").data(event_json(&e).to_string())),
                    Err(RecvError::Lagged(n)) => return Some(lagged(n)),
                    Err(RecvError::Closed) => return None,
                },
                c = self.changes.recv() => match c {
                    Ok(c) => match change_json(&c) {
                        Some(v) => return Some(Sse::default().event("decision").data(v.to_string())),
                        None => continue,
                    },
                    Err(RecvError::Lagged(n)) => return Some(lagged(n)),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.stop.cancelled() => return None,
            }
        }
    }
}

pub(super) async fn stream(State(api): State<Api>) -> Response {
    let engine = api.live.current().engine.clone();
    let follow = Follow {
        events: engine.follow_events(),
        changes: engine.subscribe(),
        stop: api.stop.clone(),
    };
    let s = futures_util::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|e| (Ok::<_, Infallible>(e), f))
    });
    axum::response::Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

//! Decisions shared between the instances of a cluster: every ban one makes (or lifts) is
//! published on a Redis channel and kept in a hash; the others take it as it is
//! (`Engine::adopt`, `Engine::lift`). The hash is how an instance catches up after Redis or its
//! connection was away: on every (re)connection it takes what the hash holds and adds, and
//! announces, what it decided meanwhile.
//!
//! A ban taken from another instance is not announced again (that would echo between them),
//! and neither are feed bans: each instance applies its own feeds' policy.
//!
//! Learned decoys travel the same way (hash `PREFIX decoys`, first one wins): an instance that
//! never saw the app's genuine answer on a route (one just scaled up, under attack) replays the
//! one another learned, written into its store, where its decoys look while unlearned. Honey
//! accounts too ([`crate::honey`]).

use moat_core::shared_honey::HoneyAccounts;
use moat_core::{Decision, Origin, Scope, Verdict};
use moat_engine::changes::Change;
use moat_engine::Engine;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One message on the channel.
pub(crate) fn message(from: u64, op: &str, body: serde_json::Value) -> String {
    serde_json::json!({"from": from, "op": op, "d": body}).to_string()
}

/// A decision back from `moat_store::decision_json`'s shape.
pub fn decision_from_json(v: &serde_json::Value) -> Option<Decision> {
    Some(Decision {
        scope: v.get("scope")?.as_str()?.parse().ok()?,
        verdict: Verdict::parse(v.get("verdict")?.as_str()?)?,
        created_ms: v.get("created_ms")?.as_u64()?,
        expires_ms: v.get("expires_ms").and_then(|e| e.as_u64()),
        reason: v.get("reason")?.as_str()?.to_string(),
        origin: Origin::parse(v.get("origin")?.as_str()?),
        offences: v.get("offences")?.as_u64()?.min(u64::from(u32::MAX)) as u32,
    })
}

/// What this instance took from others recently, so that the change it causes here is not
/// announced back.
#[derive(Default)]
pub(crate) struct Echoes {
    adopted: HashMap<Scope, (Option<u64>, Instant)>,
    lifted: HashMap<Scope, Instant>,
    /// Every scope whose ban the cluster shares (announced here or taken from another): only
    /// their lifting is announced. A feed ban's, say, is this instance's own business.
    shared: std::collections::HashSet<Scope>,
}

const ECHO_WINDOW: Duration = Duration::from_secs(30);

impl Echoes {
    fn forget_old(&mut self) {
        self.adopted.retain(|_, (_, t)| t.elapsed() < ECHO_WINDOW);
        self.lifted.retain(|_, t| t.elapsed() < ECHO_WINDOW);
    }
}

pub struct Sync {
    pub(crate) engine: Arc<Engine>,
    pub(crate) id: u64,
    pub(crate) channel: String,
    pub(crate) hash: String,
    pub(crate) decoys: String,
    pub(crate) echoes: std::sync::Mutex<Echoes>,
    /// The mail shield, once it started (`Cluster::share_honey`); none on a web-only instance.
    pub(crate) honey: std::sync::OnceLock<Arc<dyn HoneyAccounts>>,
    pub(crate) honey_hash: String,
    pub(crate) honey_real: String,
    /// Logins found real here while Redis was away: announced at the next connection.
    pub(crate) pending_real: std::sync::Mutex<Vec<String>>,
}

impl Sync {
    pub fn new(engine: Arc<Engine>, prefix: &str) -> Sync {
        Sync {
            engine,
            id: fastrand::u64(..),
            channel: format!("{prefix}decisions"),
            hash: format!("{prefix}bans"),
            decoys: format!("{prefix}decoys"),
            echoes: Default::default(),
            honey: Default::default(),
            honey_hash: format!("{prefix}honey"),
            honey_real: format!("{prefix}honey-real"),
            pending_real: Default::default(),
        }
    }

    /// Whether this instance announces `d` (its own decision, not an echo or a feed's).
    fn announces(&self, d: &Decision) -> bool {
        if matches!(d.origin, Origin::Feed(_)) || d.verdict != Verdict::Ban {
            return false;
        }
        let mut e = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
        e.forget_old();
        e.shared.insert(d.scope.clone());
        e.adopted
            .get(&d.scope)
            .is_none_or(|(expires, _)| *expires != d.expires_ms)
    }

    /// A message from the channel.
    pub(crate) fn receive(&self, payload: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
            tracing::warn!("cluster: a message that is not JSON on the decisions channel");
            return;
        };
        if v.get("from").and_then(|f| f.as_u64()) == Some(self.id) {
            return;
        }
        let body = v.get("d").cloned().unwrap_or_default();
        match v.get("op").and_then(|o| o.as_str()) {
            Some("ban") => {
                if let Some(d) = decision_from_json(&body) {
                    self.take(d);
                }
            }
            Some("lift") => {
                if let Some(scope) = body.as_str().and_then(|s| s.parse::<Scope>().ok()) {
                    let mut e = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
                    e.lifted.insert(scope.clone(), Instant::now());
                    drop(e);
                    self.engine.lift(scope);
                }
            }
            Some("learn") => self.take_learned(&body),
            Some(op @ ("honey" | "honey-real")) => self.receive_honey(op, &body),
            _ => tracing::warn!("cluster: an unknown message on the decisions channel"),
        }
    }

    /// Another instance's learned decoy, into this instance's store unless one is there.
    fn take_learned(&self, body: &serde_json::Value) {
        let Some((id, r)) = learned_from_json(body) else {
            tracing::warn!("cluster: an unreadable learned decoy");
            return;
        };
        let store = self.engine.store();
        if matches!(store.learned(&id), Ok(None)) {
            match store.learn(&id, &r) {
                Ok(_) => {
                    tracing::info!(decoy = %id, status = r.status, "cluster: took a decoy another instance learned")
                }
                Err(e) => {
                    tracing::warn!(decoy = %id, error = %e, "cluster: cannot store a learned decoy")
                }
            }
        }
    }

    /// What to send when decoy `id` learned here.
    pub(crate) fn outgoing_learned(&self, id: &str) -> Option<redis::Pipeline> {
        let mut p = redis::pipe();
        self.share_learned(&mut p, id).then_some(p)
    }

    /// Adds the commands that share decoy `id`'s learned response to `p`; false if this
    /// instance has none.
    fn share_learned(&self, p: &mut redis::Pipeline, id: &str) -> bool {
        let Ok(Some(r)) = self.engine.store().learned(id) else {
            return false;
        };
        let body = learned_json(id, &r);
        p.hset_nx(&self.decoys, id, body.to_string())
            .ignore()
            .publish(&self.channel, message(self.id, "learn", body))
            .ignore();
        true
    }

    /// Another instance's ban, taken as it is.
    pub(crate) fn take(&self, d: Decision) {
        if self.note_taken(&d) {
            self.engine.adopt(d);
        }
    }

    /// Whether `d` is to be taken, noted as an echo if it is.
    fn note_taken(&self, d: &Decision) -> bool {
        if !d.active_at(self.engine.now_ms()) || matches!(d.origin, Origin::Feed(_)) {
            return false;
        }
        let mut e = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
        e.adopted
            .insert(d.scope.clone(), (d.expires_ms, Instant::now()));
        e.shared.insert(d.scope.clone());
        true
    }

    /// What to send to Redis for one change here: commands for the hash and the channel.
    pub(crate) fn outgoing(&self, c: &Change) -> Option<redis::Pipeline> {
        let mut p = redis::pipe();
        match c {
            Change::Added(d) | Change::Extended(d) => {
                if !self.announces(d) {
                    return None;
                }
                let j = moat_store::decision_json(d);
                p.hset(&self.hash, d.scope.to_string(), j.to_string())
                    .ignore()
                    .publish(&self.channel, message(self.id, "ban", j))
                    .ignore();
            }
            Change::Removed {
                scope,
                expired: false,
            } => {
                let mut e = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
                e.forget_old();
                let shared = e.shared.remove(scope);
                if e.lifted.remove(scope).is_some() || !shared {
                    return None;
                }
                drop(e);
                p.hdel(&self.hash, scope.to_string())
                    .ignore()
                    .publish(
                        &self.channel,
                        message(self.id, "lift", scope.to_string().into()),
                    )
                    .ignore();
            }
            Change::Removed { scope, .. } => {
                let mut e = self.echoes.lock().unwrap_or_else(|p| p.into_inner());
                e.shared.remove(scope);
                return None;
            }
            Change::Allowlist(_) => return None,
        }
        Some(p)
    }

    /// After a (re)connection: takes every ban the hash holds, removes the expired ones, and
    /// adds (and announces) this instance's own bans the hash lacks.
    pub(crate) async fn catch_up(
        &self,
        conn: &mut redis::aio::ConnectionManager,
    ) -> redis::RedisResult<usize> {
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.hash)
            .query_async(conn)
            .await?;
        let now = self.engine.now_ms();
        let mut expired = Vec::new();
        let mut taken = Vec::new();
        for (scope, text) in &all {
            let d = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| decision_from_json(&v));
            match d {
                Some(d) if d.active_at(now) => {
                    if self.note_taken(&d) {
                        taken.push(d);
                    }
                }
                _ => expired.push(scope.clone()),
            }
        }
        // The hash may hold a storm's bans: queued beside the decider's channel, not in it.
        let taken_n = taken.len();
        self.engine.adopt_all(taken);
        let mut p = redis::pipe();
        if !expired.is_empty() {
            p.hdel(&self.hash, expired).ignore();
        }
        for d in self.engine.decisions().0 {
            let known = all.get(&d.scope.to_string()).and_then(|t| {
                serde_json::from_str::<serde_json::Value>(t)
                    .ok()
                    .and_then(|v| decision_from_json(&v))
            });
            let newer = known.is_none_or(|k| match (k.expires_ms, d.expires_ms) {
                (Some(a), Some(b)) => b > a,
                (Some(_), None) => true,
                (None, _) => false,
            });
            if newer && self.announces(&d) {
                let j = moat_store::decision_json(&d);
                p.hset(&self.hash, d.scope.to_string(), j.to_string())
                    .ignore()
                    .publish(&self.channel, message(self.id, "ban", j))
                    .ignore();
            }
        }
        let _: () = p.query_async(conn).await?;
        let learned: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&self.decoys)
            .query_async(conn)
            .await?;
        for text in learned.values() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                self.take_learned(&v);
            }
        }
        // Decoys learned here that the hash lacks (learned while Redis was away, or Redis
        // restarted empty): shared now, or an instance that never saw the app's answer has
        // none to replay. The hash keeps the first one either way.
        let mut p = redis::pipe();
        let mut shared = 0;
        match self.engine.store().learned_decoys() {
            Ok(ids) => {
                for id in ids.iter().filter(|id| !learned.contains_key(*id)) {
                    shared += usize::from(self.share_learned(&mut p, id));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster: cannot list the learned decoys"),
        }
        if shared > 0 {
            let _: () = p.query_async(conn).await?;
            tracing::info!(
                decoys = shared,
                "cluster: shared decoys learned while Redis was away"
            );
        }
        self.catch_up_honey(conn).await?;
        Ok(taken_n)
    }
}

fn learned_json(id: &str, r: &moat_store::LearnedResponse) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "id": id, "status": r.status, "headers": r.headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
    })
}

fn learned_from_json(v: &serde_json::Value) -> Option<(String, moat_store::LearnedResponse)> {
    use base64::Engine as _;
    let headers = v
        .get("headers")?
        .as_array()?
        .iter()
        .map(|h| {
            Some((
                h.get(0)?.as_str()?.to_string(),
                h.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((
        v.get("id")?.as_str()?.to_string(),
        moat_store::LearnedResponse {
            status: u16::try_from(v.get("status")?.as_u64()?).ok()?,
            headers,
            body: base64::engine::general_purpose::STANDARD
                .decode(v.get("body")?.as_str()?)
                .ok()?,
        },
    ))
}

//! Moat's persistence: what must survive a restart (decisions and their escalation history, the
//! operator's allowlist, learned decoy responses). SQLite is the embedded default; the memory
//! store serves tests and `store = "memory"`.
//!
//! The store is never on the request path: the engine keeps an in-memory guard snapshot and
//! writes here from one owner thread. Other processes (`moat bans add`, `moat allow`) write the
//! same SQLite file, and the running instance notices through [`Store::changed`].

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use ipnet::IpNet;
use moat_core::{Decision, Origin, Scope, Verdict};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create state directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// Opening for reading found no database: nothing was created.
    #[error("no Moat database at {0}")]
    Missing(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An upstream response recorded to be replayed as a decoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An allowlist entry as stored: the network, why, and when it was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub net: IpNet,
    pub note: String,
    pub created_ms: u64,
}

/// A decision as the admin API and `moat bans list --json` show it: one shape for both. Times
/// are Unix milliseconds; `expires_ms` is `null` for a ban until removed.
pub fn decision_json(d: &Decision) -> serde_json::Value {
    let expires: serde_json::Value = match d.expires_ms {
        Some(ms) => ms.into(),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "scope": d.scope.to_string(), "verdict": d.verdict.as_str(), "created_ms": d.created_ms,
        "expires_ms": expires, "reason": d.reason, "origin": d.origin.to_string(),
        "offences": d.offences,
    })
}

/// Which active decisions one page of a listing holds: the admin API's `GET /api/decisions`
/// and the dashboard read pages, never the whole table (a store under a ban storm holds a
/// million rows; the page a person looks at holds a few hundred).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionQuery {
    /// Only origins starting with this (`manual`, `rule:`, `feed:`, `jail:sshd`).
    pub origin: Option<String>,
    /// Only scopes containing this text (`192.0.2.`, `/24`).
    pub scope: Option<String>,
    /// Only decisions made at or after this time.
    pub since_ms: Option<u64>,
    /// Newest first: how many matching decisions to skip, then how many to return.
    pub offset: usize,
    pub limit: usize,
}

impl DecisionQuery {
    /// Whether `d` passes the filters (not the page bounds). Stores that filter in SQL must
    /// agree with this; the memory store uses it directly.
    pub fn matches(&self, d: &Decision) -> bool {
        self.origin
            .as_deref()
            .is_none_or(|o| d.origin.to_string().starts_with(o))
            && self
                .scope
                .as_deref()
                .is_none_or(|s| d.scope.to_string().contains(s))
            && self.since_ms.is_none_or(|t| d.created_ms >= t)
    }
}

/// One page of active decisions, newest first, and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct DecisionPage {
    pub total: usize,
    pub decisions: Vec<Decision>,
}

/// How long ban history counts for escalation (an address changes hands).
pub const BAN_HISTORY: Duration = Duration::from_secs(30 * 86_400);

/// A ban by hand (`moat bans add`, `POST /api/bans`): counted in the scope's ban history like
/// any other, until `ttl` from now (`None`: until removed). A running Moat picks it up from the
/// store within a second.
pub fn add_manual_ban(
    store: &dyn Store,
    scope: Scope,
    ttl: Option<Duration>,
    reason: &str,
    now_ms: u64,
) -> Result<Decision> {
    let forget = now_ms.saturating_sub(BAN_HISTORY.as_millis() as u64);
    let offences = store.record_ban(&scope, now_ms, forget)?;
    let d = Decision {
        scope,
        verdict: Verdict::Ban,
        created_ms: now_ms,
        expires_ms: ttl.map(|t| now_ms.saturating_add(t.as_millis() as u64)),
        reason: reason.to_string(),
        origin: Origin::Manual,
        offences,
    };
    store.put_decision(&d)?;
    Ok(d)
}

/// `moat allow`: puts `net` on the allowlist and lifts the bans it makes pointless, those on
/// scopes inside `net`. A ban on a wider prefix stays: it still holds for the rest of that
/// prefix, and the allowlist already exempts `net` from it (the guard checks the allowlist
/// first). Returns the lifted scopes.
pub fn allow_and_lift(
    store: &dyn Store,
    net: IpNet,
    note: &str,
    now_ms: u64,
) -> Result<Vec<Scope>> {
    store.allow(net, note, now_ms)?;
    let mut lifted = Vec::new();
    for d in store.decisions(now_ms)? {
        let inside = match &d.scope {
            Scope::Ip(ip) => net.contains(ip),
            Scope::Prefix(p) => net.contains(p),
        };
        if inside && store.remove_decision(&d.scope)? {
            lifted.push(d.scope);
        }
    }
    Ok(lifted)
}

pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the decision for its scope.
    fn put_decision(&self, d: &Decision) -> Result<()>;
    /// Removes the decision for exactly this scope; true if there was one.
    fn remove_decision(&self, scope: &Scope) -> Result<bool>;
    /// Decisions not yet expired at `now_ms`; expired ones are purged on the way.
    fn decisions(&self, now_ms: u64) -> Result<Vec<Decision>>;
    /// Deletes the decisions over at `now_ms`, without reading the others; returns how many.
    fn purge_expired(&self, now_ms: u64) -> Result<usize>;
    /// One page of the decisions active at `now_ms` that match `q`, newest first. The default
    /// reads them all; the SQLite store asks for the page alone.
    fn decision_page(&self, now_ms: u64, q: &DecisionQuery) -> Result<DecisionPage> {
        let mut all = self.decisions(now_ms)?;
        all.retain(|d| q.matches(d));
        all.sort_by_key(|d| std::cmp::Reverse(d.created_ms));
        let total = all.len();
        let decisions = all.into_iter().skip(q.offset).take(q.limit).collect();
        Ok(DecisionPage { total, decisions })
    }
    /// How many active decisions each origin starting with `prefix` made (`feed:` for what
    /// each feed contributed), without reading the decisions themselves.
    fn origin_counts(&self, now_ms: u64, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for d in self.decisions(now_ms)? {
            let o = d.origin.to_string();
            if o.starts_with(prefix) {
                *counts.entry(o).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }
    /// How many times this scope was banned before (for escalation), forgetting bans older
    /// than `forget_before_ms`.
    fn ban_count(&self, scope: &Scope, forget_before_ms: u64) -> Result<u32>;
    /// Counts one more ban of `scope` and returns the count, starting again at 1 when the
    /// previous ban is older than `forget_before_ms` (an address changes hands; a ban from
    /// months ago says nothing about its holder today).
    fn record_ban(&self, scope: &Scope, now_ms: u64, forget_before_ms: u64) -> Result<u32>;
    fn allowlist(&self) -> Result<Vec<IpNet>>;
    /// The allowlist with each entry's note and time, oldest first.
    fn allow_entries(&self) -> Result<Vec<AllowEntry>>;
    fn allow(&self, net: IpNet, note: &str, now_ms: u64) -> Result<()>;
    fn unallow(&self, net: IpNet) -> Result<bool>;
    fn learned(&self, decoy: &str) -> Result<Option<LearnedResponse>>;
    /// Every decoy a response was learned for (a cluster shares them again after Redis was
    /// away, or restarted empty).
    fn learned_decoys(&self) -> Result<Vec<String>>;
    /// Records only the first response per decoy; returns false if one was already there.
    fn learn(&self, decoy: &str, r: &LearnedResponse) -> Result<bool>;
    /// A number that changes when the store's content changed: written by another process,
    /// or through this handle by another thread (the admin API writes bans while the decider
    /// owns the guard).
    fn changed(&self) -> Result<u64>;
    /// Runs `f` with the writes it makes grouped in one transaction where the store has them:
    /// a burst of bans then costs one commit rather than three statements' each, and reaches
    /// the guard and the kernel that much sooner.
    fn batch(&self, f: &mut dyn FnMut()) -> Result<()> {
        f();
        Ok(())
    }
}

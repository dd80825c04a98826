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
use moat_core::{Decision, Scope};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create state directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An upstream response recorded to be replayed as a decoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A decision as the admin API and `moat bans list --json` show it: one shape for both.
pub fn decision_json(d: &Decision) -> serde_json::Value {
    serde_json::json!({
        "scope": d.scope.to_string(), "verdict": d.verdict.as_str(), "created_ms": d.created_ms,
        "expires_ms": d.expires_ms, "reason": d.reason, "origin": d.origin.to_string(),
        "offences": d.offences,
    })
}

pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the decision for its scope.
    fn put_decision(&self, d: &Decision) -> Result<()>;
    /// Removes the decision for exactly this scope; true if there was one.
    fn remove_decision(&self, scope: &Scope) -> Result<bool>;
    /// Decisions not yet expired at `now_ms`; expired ones are purged on the way.
    fn decisions(&self, now_ms: u64) -> Result<Vec<Decision>>;
    /// How many times this scope was banned before (for escalation), forgetting bans older
    /// than `forget_before_ms`.
    fn ban_count(&self, scope: &Scope, forget_before_ms: u64) -> Result<u32>;
    /// Counts one more ban of `scope` and returns the count, starting again at 1 when the
    /// previous ban is older than `forget_before_ms` (an address changes hands; a ban from
    /// months ago says nothing about its holder today).
    fn record_ban(&self, scope: &Scope, now_ms: u64, forget_before_ms: u64) -> Result<u32>;
    fn allowlist(&self) -> Result<Vec<IpNet>>;
    fn allow(&self, net: IpNet, note: &str, now_ms: u64) -> Result<()>;
    fn unallow(&self, net: IpNet) -> Result<bool>;
    fn learned(&self, decoy: &str) -> Result<Option<LearnedResponse>>;
    /// Records only the first response per decoy; returns false if one was already there.
    fn learn(&self, decoy: &str, r: &LearnedResponse) -> Result<bool>;
    /// A number that changes when another process wrote to the store.
    fn changed(&self) -> Result<u64>;
}

//! An in-memory store: same contract as SQLite, nothing on disk.

use crate::{AllowEntry, LearnedResponse, Result, Store};
use ipnet::IpNet;
use moat_core::{Decision, Scope};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    decisions: HashMap<Scope, Decision>,
    history: HashMap<Scope, (u32, u64)>,
    pruned_ms: u64,
    allow: Vec<AllowEntry>,
    learned: HashMap<String, LearnedResponse>,
    /// Bumped by every change, for [`Store::changed`].
    version: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data, still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn put_decision(&self, d: &Decision) -> Result<()> {
        let mut g = self.lock();
        g.decisions.insert(d.scope.clone(), d.clone());
        g.version += 1;
        Ok(())
    }
    fn remove_decision(&self, scope: &Scope) -> Result<bool> {
        let mut g = self.lock();
        let removed = g.decisions.remove(scope).is_some();
        g.version += u64::from(removed);
        Ok(removed)
    }
    fn purge_expired(&self, now_ms: u64) -> Result<usize> {
        let mut g = self.lock();
        let before = g.decisions.len();
        g.decisions.retain(|_, d| d.active_at(now_ms));
        let purged = before - g.decisions.len();
        g.version += u64::from(purged > 0);
        Ok(purged)
    }
    fn decisions(&self, now_ms: u64) -> Result<Vec<Decision>> {
        let mut g = self.lock();
        g.decisions.retain(|_, d| d.active_at(now_ms));
        let mut out: Vec<Decision> = g.decisions.values().cloned().collect();
        out.sort_by_key(|d| d.created_ms);
        Ok(out)
    }
    fn ban_count(&self, scope: &Scope, forget_before_ms: u64) -> Result<u32> {
        Ok(self
            .lock()
            .history
            .get(scope)
            .filter(|(_, last)| *last >= forget_before_ms)
            .map_or(0, |(n, _)| *n))
    }
    fn record_ban(&self, scope: &Scope, now_ms: u64, forget_before_ms: u64) -> Result<u32> {
        let mut g = self.lock();
        // Pruned now and then (a prune walks every entry), as the SQLite store does.
        if now_ms.saturating_sub(g.pruned_ms) >= 60_000 {
            g.pruned_ms = now_ms;
            g.history.retain(|_, (_, last)| *last >= forget_before_ms);
        }
        let e = g.history.entry(scope.clone()).or_insert((0, now_ms));
        if e.1 < forget_before_ms {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now_ms;
        Ok(e.0)
    }
    fn allowlist(&self) -> Result<Vec<IpNet>> {
        Ok(self.lock().allow.iter().map(|e| e.net).collect())
    }
    fn allow_entries(&self) -> Result<Vec<AllowEntry>> {
        Ok(self.lock().allow.clone())
    }
    fn allow(&self, net: IpNet, note: &str, now_ms: u64) -> Result<()> {
        let mut g = self.lock();
        g.allow.retain(|e| e.net != net);
        g.allow.push(AllowEntry {
            net,
            note: note.to_string(),
            created_ms: now_ms,
        });
        g.version += 1;
        Ok(())
    }
    fn unallow(&self, net: IpNet) -> Result<bool> {
        let mut g = self.lock();
        let before = g.allow.len();
        g.allow.retain(|e| e.net != net);
        let removed = g.allow.len() != before;
        g.version += u64::from(removed);
        Ok(removed)
    }
    fn learned(&self, decoy: &str) -> Result<Option<LearnedResponse>> {
        Ok(self.lock().learned.get(decoy).cloned())
    }
    fn learned_decoys(&self) -> Result<Vec<String>> {
        Ok(self.lock().learned.keys().cloned().collect())
    }
    fn learn(&self, decoy: &str, r: &LearnedResponse) -> Result<bool> {
        let mut g = self.lock();
        if g.learned.contains_key(decoy) {
            return Ok(false);
        }
        g.learned.insert(decoy.to_string(), r.clone());
        g.version += 1;
        Ok(true)
    }
    fn changed(&self) -> Result<u64> {
        Ok(self.lock().version)
    }
}

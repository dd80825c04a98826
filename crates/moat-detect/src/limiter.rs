//! GCRA rate limiting with bounded memory.
//!
//! One `Limiter` per configured limit, so a flood that fills the per-address table (random IPv6
//! addresses) cannot evict the per-email or per-prefix state an attacker would like reset. Each
//! table is sharded to keep lock hold times tiny, and capped: when a shard is full, entries whose
//! theoretical arrival time has passed (state identical to "never seen") go first, then those
//! closest to it. Keys are hashed with a per-process random SipHash key, so an attacker cannot aim
//! collisions.

use crate::sharded::{Sharded, Table as Shard, SHARDS};
use std::hash::{BuildHasher, RandomState};

type Table = Shard<u64>;

pub struct Limiter {
    shards: Sharded<u64>,
    hasher: RandomState,
    /// Emission interval: one request per `t_ns` on average.
    t_ns: u64,
    /// How far ahead of now the theoretical arrival time may run: (burst - 1) intervals.
    tau_ns: u64,
    cap_per_shard: usize,
}

impl Limiter {
    /// `requests` per `period_ns`, allowing `burst` at once, tracking at most about `max_keys`.
    pub fn new(requests: u32, period_ns: u64, burst: u32, max_keys: usize) -> Self {
        let t_ns = (period_ns / u64::from(requests.max(1))).max(1);
        Limiter {
            shards: Sharded::new(),
            hasher: RandomState::new(),
            t_ns,
            tau_ns: t_ns.saturating_mul(u64::from(burst.max(1)) - 1),
            cap_per_shard: (max_keys / SHARDS).max(4),
        }
    }

    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// True if a request for `key` at `now_ns` conforms; a conforming request is counted.
    pub fn check(&self, key: &[u8], now_ns: u64) -> bool {
        self.check_hashed(self.hash_key(key), now_ns)
    }

    /// True if a request for `key` at `now_ns` would conform; nothing is counted.
    pub fn peek(&self, key: &[u8], now_ns: u64) -> bool {
        self.wait(key, now_ns) == 0
    }

    /// How long until a request for `key` would conform (zero if it does now): what a
    /// client told to come back should wait.
    pub fn wait(&self, key: &[u8], now_ns: u64) -> u64 {
        let h = self.hash_key(key);
        let t = self.shards.lock(h);
        let tat = t.get(&h).copied().unwrap_or(0).max(now_ns);
        (tat - now_ns).saturating_sub(self.tau_ns)
    }

    pub fn check_hashed(&self, h: u64, now_ns: u64) -> bool {
        let mut t = self.shards.lock(h);
        let tat = t.get(&h).copied().unwrap_or(0).max(now_ns);
        if tat - now_ns > self.tau_ns {
            return false;
        }
        if t.len() >= self.cap_per_shard && !t.contains_key(&h) {
            evict(&mut t, now_ns, self.cap_per_shard);
        }
        t.insert(h, tat + self.t_ns);
        true
    }

    /// Keys currently tracked, for metrics and the memory benchmark.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees an eighth of the shard: first entries already back to "fresh", then those closest to
/// it (smallest theoretical arrival time), so the keys nearest their limit, the ones an
/// attacker would like reset by a flood of new keys, are the last to go. Amortised
/// O(log n) per insert.
fn evict(t: &mut Table, now_ns: u64, cap: usize) {
    t.retain(|_, tat| *tat > now_ns);
    let target = cap - cap / 8;
    if t.len() > target {
        let excess = t.len() - target;
        let mut by_tat: Vec<(u64, u64)> = t.iter().map(|(k, tat)| (*tat, *k)).collect();
        by_tat.select_nth_unstable(excess - 1);
        for (_, k) in &by_tat[..excess] {
            t.remove(k);
        }
    }
}

/// What makes two rate limits the same limiter: a reload that keeps these keeps the counters.
#[derive(Debug, Clone, PartialEq)]
struct LimitSig {
    id: String,
    key: moat_config::LimitKey,
    requests: u32,
    period: std::time::Duration,
    burst: u32,
    max_keys: usize,
}

impl LimitSig {
    fn of(l: &moat_config::RateLimit) -> Self {
        LimitSig {
            id: l.id.clone(),
            key: l.key.clone(),
            requests: l.requests,
            period: l.period,
            burst: l.burst,
            max_keys: l.max_keys,
        }
    }
}

/// One policy's limiters, by the policy's rate-limit index. Held whole by whoever evaluates
/// that policy, so an index always means the limit it was compiled for, across a reload.
#[derive(Default)]
pub struct LimiterSet {
    entries: Vec<(LimitSig, std::sync::Arc<Limiter>)>,
}

impl LimiterSet {
    /// Limiters for `limits`, reusing `prev`'s where the definition is unchanged.
    pub fn build(limits: &[moat_config::RateLimit], prev: &LimiterSet) -> Self {
        let entries = limits
            .iter()
            .map(|l| {
                let sig = LimitSig::of(l);
                let limiter = prev
                    .entries
                    .iter()
                    .find(|(s, _)| *s == sig)
                    .map(|(_, lim)| lim.clone())
                    .unwrap_or_else(|| {
                        std::sync::Arc::new(Limiter::new(
                            l.requests,
                            l.period.as_nanos() as u64,
                            l.burst,
                            l.max_keys,
                        ))
                    });
                (sig, limiter)
            })
            .collect();
        LimiterSet { entries }
    }

    /// True if the request fits limit `idx` for `key` (and counts it).
    pub fn check(&self, idx: usize, key: &[u8], now_ns: u64) -> bool {
        self.entries
            .get(idx)
            .is_none_or(|(_, l)| l.check(key, now_ns))
    }

    /// True if limit `idx` has room for `key`, without counting.
    pub fn peek(&self, idx: usize, key: &[u8], now_ns: u64) -> bool {
        self.entries
            .get(idx)
            .is_none_or(|(_, l)| l.peek(key, now_ns))
    }

    /// How long until limit `idx` has room for `key` again, in nanoseconds.
    pub fn wait(&self, idx: usize, key: &[u8], now_ns: u64) -> u64 {
        self.entries
            .get(idx)
            .map_or(0, |(_, l)| l.wait(key, now_ns))
    }

    /// Keys tracked across the set.
    pub fn keys(&self) -> usize {
        self.entries.iter().map(|(_, l)| l.len()).sum()
    }

    /// Whether limit `idx` shares its limiter with `other`'s limit `j` (for tests).
    pub fn same_limiter(&self, idx: usize, other: &LimiterSet, j: usize) -> bool {
        match (self.entries.get(idx), other.entries.get(j)) {
            (Some((_, a)), Some((_, b))) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const S: u64 = 1_000_000_000;

    #[test]
    fn allows_burst_then_one_per_interval() {
        let l = Limiter::new(3, 3600 * S, 3, 1000);
        assert!(l.check(b"a@x", 0));
        assert!(l.check(b"a@x", 0));
        assert!(l.check(b"a@x", 0));
        assert!(!l.check(b"a@x", 0));
        assert!(l.check(b"b@x", 0), "keys are independent");
        assert!(!l.check(b"a@x", 1199 * S));
        assert!(
            l.check(b"a@x", 1200 * S),
            "one interval later one more is allowed"
        );
        assert!(!l.check(b"a@x", 1200 * S));
        assert_eq!(
            l.wait(b"a@x", 1200 * S),
            1200 * S,
            "one interval to the next"
        );
        assert_eq!(l.wait(b"a@x", 2000 * S), 400 * S);
        assert_eq!(l.wait(b"b@x", 0), 0, "room now");
    }

    fn limit(id: &str, requests: u32) -> moat_config::RateLimit {
        moat_config::RateLimit {
            id: id.into(),
            description: String::new(),
            expr: None,
            key: moat_config::LimitKey::Ip,
            requests,
            period: std::time::Duration::from_secs(3600),
            burst: requests,
            max_keys: 100,
            ban: false,
            action: moat_config::Action::Log,
            origin: String::new(),
        }
    }

    #[test]
    fn a_reload_keeps_the_counters_of_unchanged_limits_only() {
        let old = LimiterSet::build(&[limit("a", 2), limit("b", 2)], &LimiterSet::default());
        assert!(old.check(0, b"k", 0) && old.check(0, b"k", 0));
        assert!(!old.check(0, b"k", 0), "a is spent");
        // Reordered, `b` changed, `c` new: `a` keeps its count at its new index.
        let new = LimiterSet::build(&[limit("c", 2), limit("a", 2), limit("b", 5)], &old);
        assert!(new.same_limiter(1, &old, 0));
        assert!(!new.peek(1, b"k", 0), "a is still spent after the reload");
        assert!(!new.same_limiter(2, &old, 1), "b's definition changed");
        assert!(new.peek(0, b"k", 0) && new.peek(2, b"k", 0));
        assert!(
            new.check(7, b"k", 0),
            "an index past the end limits nothing"
        );
    }

    #[test]
    fn peek_does_not_count() {
        let l = Limiter::new(1, 60 * S, 1, 100);
        for _ in 0..5 {
            assert!(l.peek(b"k", 0));
        }
        assert!(l.check(b"k", 0));
        assert!(!l.peek(b"k", 0));
        assert!(!l.check(b"k", 0));
    }

    #[test]
    fn a_flood_of_new_keys_does_not_reset_a_key_at_its_limit() {
        let l = Limiter::new(3, 3600 * S, 3, 1000);
        for _ in 0..3 {
            assert!(l.check(b"victim@x", 0));
        }
        for i in 0u64..50_000 {
            l.check(&i.to_le_bytes(), 1);
        }
        assert!(
            !l.check(b"victim@x", 2),
            "the flood evicted the victim's state"
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let l = Limiter::new(10, 60 * S, 10, 10_000);
        for i in 0u64..200_000 {
            l.check(&i.to_le_bytes(), 0);
        }
        assert!(l.len() <= 10_000 + SHARDS * 4, "len {}", l.len());
    }
}

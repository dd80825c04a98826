//! Every change to the decisions in force, broadcast to whoever follows them (the nftables
//! enforcer; later the feed and the dashboard). The decider computes changes by comparing
//! what it publishes with what it published before, so a change is reported whatever caused
//! it: a detector's ban, `moat bans add` from another process, an unban, `moat allow`, an
//! expiry.
//!
//! A follower starts from [`crate::Engine::decisions`] and applies changes after it. The
//! channel is bounded: a follower that falls behind gets `Lagged` and starts over from the
//! decisions in force; nothing on the request path ever waits for it.

use ipnet::IpNet;
use moat_core::{Decision, Scope, Verdict};
use std::collections::HashMap;
use std::sync::Arc;

/// Changes a follower may miss before it must start over.
pub const CAPACITY: usize = 16_384;

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A scope newly banned.
    Added(Decision),
    /// A banned scope's end moved (a longer ban replaced a shorter one).
    Extended(Decision),
    /// A scope no longer banned: lifted, allowed or expired.
    Removed { scope: Scope, expired: bool },
    /// The allowlist as a whole, when it changed: never enforce a ban on these.
    Allowlist(Arc<Vec<IpNet>>),
}

/// What was last published, to compare the next publication with: each banned scope's end,
/// not its whole decision (the guard holds those; a copy here doubled the memory a million bans
/// take).
#[derive(Default)]
pub(crate) struct Published {
    bans: HashMap<Scope, Option<u64>>,
    allow: Arc<Vec<IpNet>>,
}

impl Published {
    /// The changes from what was published to `now_in_force` and `allow`, in order: the
    /// allowlist first (so a follower never enforces a ban on an address just allowed),
    /// then removals, then additions.
    pub(crate) fn update(
        &mut self,
        now_in_force: &[Decision],
        allow: &[IpNet],
        now_ms: u64,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        if self.allow.as_slice() != allow {
            self.allow = Arc::new(allow.to_vec());
            out.push(Change::Allowlist(self.allow.clone()));
        }
        let bans = now_in_force.iter().filter(|d| d.verdict == Verdict::Ban);
        let next: HashMap<&Scope, &Decision> = bans.clone().map(|d| (&d.scope, d)).collect();
        let gone: Vec<Scope> = self
            .bans
            .keys()
            .filter(|s| !next.contains_key(s))
            .cloned()
            .collect();
        for scope in gone {
            let end = self.bans.remove(&scope).flatten();
            let expired = end.is_some_and(|e| e <= now_ms);
            out.push(Change::Removed { scope, expired });
        }
        for d in bans {
            self.note(d, &mut out);
        }
        out
    }

    /// A ban in force now: added, or extended (or shortened) from what was published.
    fn note(&mut self, d: &Decision, out: &mut Vec<Change>) {
        match self.bans.get(&d.scope) {
            None => out.push(Change::Added(d.clone())),
            Some(end) if *end != d.expires_ms => out.push(Change::Extended(d.clone())),
            Some(_) => return,
        }
        self.bans.insert(d.scope.clone(), d.expires_ms);
    }

    /// The decider's own new bans, published without a read of the store: each is added, or
    /// extends (or shortens: the store replaces) what was published for its scope.
    pub(crate) fn record(&mut self, own: &[Decision], now_ms: u64) -> Vec<Change> {
        let mut out = Vec::new();
        for d in own {
            if d.verdict == Verdict::Ban && d.expires_ms.is_none_or(|e| e > now_ms) {
                self.note(d, &mut out);
            }
        }
        out
    }

    /// The decider's own lifts, published without a read of the store: a removal for each
    /// scope that was published.
    pub(crate) fn lift(&mut self, scopes: &[Scope]) -> Vec<Change> {
        scopes
            .iter()
            .filter(|s| self.bans.remove(*s).is_some())
            .map(|s| Change::Removed {
                scope: s.clone(),
                expired: false,
            })
            .collect()
    }

    /// Bans whose end has passed, as removals (the store still lists them until the next
    /// publication; a follower need not wait for it).
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Change> {
        let gone: Vec<Scope> = self
            .bans
            .iter()
            .filter(|(_, end)| end.is_some_and(|e| e <= now_ms))
            .map(|(s, _)| s.clone())
            .collect();
        gone.into_iter()
            .map(|scope| {
                self.bans.remove(&scope);
                Change::Removed {
                    scope,
                    expired: true,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Origin;

    fn ban(ip: &str, expires: u64) -> Decision {
        Decision {
            scope: Scope::Ip(ip.parse().unwrap()),
            verdict: Verdict::Ban,
            created_ms: 0,
            expires_ms: Some(expires),
            reason: String::new(),
            origin: Origin::Manual,
            offences: 1,
        }
    }

    #[test]
    fn added_extended_removed_and_expired() {
        let mut p = Published::default();
        let c = p.update(&[ban("192.0.2.1", 100)], &[], 0);
        assert!(matches!(&c[..], [Change::Added(_)]));
        assert!(p.update(&[ban("192.0.2.1", 100)], &[], 0).is_empty());
        let c = p.update(&[ban("192.0.2.1", 200)], &[], 0);
        assert!(matches!(&c[..], [Change::Extended(_)]));
        let c = p.update(&[], &["192.0.2.0/24".parse().unwrap()], 10);
        assert!(matches!(
            &c[..],
            [Change::Allowlist(_), Change::Removed { expired: false, .. }]
        ));
        p.update(
            &[ban("192.0.2.2", 50)],
            &["192.0.2.0/24".parse().unwrap()],
            10,
        );
        let c = p.expire(60);
        assert!(matches!(&c[..], [Change::Removed { expired: true, .. }]));
        assert!(p.expire(70).is_empty());
    }
}

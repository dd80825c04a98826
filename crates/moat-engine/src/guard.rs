//! The guard: an immutable snapshot of the allowlist and active bans, swapped atomically by the
//! decider, so the request path checks a client with a few hash lookups and never waits on the
//! store, a lock or the network.

use ipnet::IpNet;
use moat_core::{Decision, Scope};
/// Persistent maps: a new snapshot shares all but the changed paths with the one before, so a
/// burst of bans published while a million are in force costs microseconds, not the 100 ms a
/// copy of `std`'s map took (`cargo bench -p moat-engine --bench guard`). foldhash is keyed
/// per process, as `std`'s hasher is (the keys are the attackers' addresses), and faster.
type HashMap<K, V> =
    imbl::GenericHashMap<K, V, foldhash::fast::RandomState, imbl::shared_ptr::DefaultSharedPtr>;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    /// On the allowlist: nothing else applies.
    Allowlisted,
    Banned(Arc<Decision>),
    Clear,
}

#[derive(Debug, Default)]
pub struct GuardSnapshot {
    allow: Vec<IpNet>,
    ips: HashMap<IpAddr, Arc<Decision>>,
    /// Prefix bans by prefix length, so a lookup masks the address once per length in use.
    prefixes: Vec<(u8, HashMap<IpNet, Arc<Decision>>)>,
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl GuardSnapshot {
    /// The allowlist in force (configured and `moat allow`'s).
    pub fn allowlist(&self) -> &[IpNet] {
        &self.allow
    }

    pub fn new(allow: Vec<IpNet>, decisions: impl IntoIterator<Item = Decision>) -> Self {
        let mut s = GuardSnapshot {
            allow,
            ..Default::default()
        };
        s.insert_all(decisions);
        s
    }

    fn insert_all(&mut self, decisions: impl IntoIterator<Item = Decision>) {
        let s = self;
        for d in decisions {
            if d.verdict != moat_core::Verdict::Ban {
                continue;
            }
            match d.scope {
                Scope::Ip(ip) => {
                    s.ips.insert(normalize(ip), Arc::new(d));
                }
                Scope::Prefix(net) => {
                    let len = net.prefix_len();
                    let i = match s.prefixes.iter().position(|(l, _)| *l == len) {
                        Some(i) => i,
                        None => {
                            s.prefixes.push((len, HashMap::new()));
                            s.prefixes.len() - 1
                        }
                    };
                    s.prefixes[i].1.insert(net, Arc::new(d));
                }
            }
        }
    }

    /// This snapshot with `decisions` added (each replacing its scope's, as the store does)
    /// and the bans on `lifted` removed: the maps are shared but for the changed paths, not
    /// rebuilt from the store, so publishing a few bans or lifts costs microseconds however
    /// many are in force.
    pub fn with(&self, decisions: impl IntoIterator<Item = Decision>, lifted: &[Scope]) -> Self {
        let mut s = GuardSnapshot {
            allow: self.allow.clone(),
            ips: self.ips.clone(),
            prefixes: self.prefixes.clone(),
        };
        for scope in lifted {
            match scope {
                Scope::Ip(ip) => {
                    s.ips.remove(&normalize(*ip));
                }
                Scope::Prefix(net) => {
                    for (len, m) in &mut s.prefixes {
                        if *len == net.prefix_len() {
                            m.remove(net);
                        }
                    }
                }
            }
        }
        s.insert_all(decisions);
        s
    }

    /// This snapshot without the bans over at `now_ms`, or `None` when none is. A check
    /// already ignores them; this returns their memory.
    pub fn without_expired(&self, now_ms: u64) -> Option<Self> {
        let over = |d: &Arc<Decision>| !d.active_at(now_ms);
        let any =
            self.ips.values().any(over) || self.prefixes.iter().any(|(_, m)| m.values().any(over));
        if !any {
            return None;
        }
        // The kept paths are shared; only those to an expired ban are copied.
        fn keep<K: Copy + Eq + std::hash::Hash>(
            m: &HashMap<K, Arc<Decision>>,
            now_ms: u64,
        ) -> HashMap<K, Arc<Decision>> {
            let mut out = m.clone();
            for (k, _) in m.iter().filter(|(_, d)| !d.active_at(now_ms)) {
                out.remove(k);
            }
            out
        }
        Some(GuardSnapshot {
            allow: self.allow.clone(),
            ips: keep(&self.ips, now_ms),
            prefixes: self
                .prefixes
                .iter()
                .map(|(len, m)| (*len, keep(m, now_ms)))
                .collect(),
        })
    }

    pub fn check(&self, ip: IpAddr, now_ms: u64) -> GuardVerdict {
        let ip = normalize(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return GuardVerdict::Allowlisted;
        }
        if let Some(d) = self.ips.get(&ip).filter(|d| d.active_at(now_ms)) {
            return GuardVerdict::Banned(d.clone());
        }
        for (len, map) in &self.prefixes {
            let Ok(net) = IpNet::new(ip, *len) else {
                continue;
            };
            if let Some(d) = map.get(&net.trunc()).filter(|d| d.active_at(now_ms)) {
                return GuardVerdict::Banned(d.clone());
            }
        }
        GuardVerdict::Clear
    }

    /// The ban on exactly this scope, if one is in the snapshot.
    pub fn decision(&self, scope: &Scope) -> Option<&Arc<Decision>> {
        match scope {
            Scope::Ip(ip) => self.ips.get(&normalize(*ip)),
            Scope::Prefix(net) => self
                .prefixes
                .iter()
                .find(|(l, _)| *l == net.prefix_len())
                .and_then(|(_, m)| m.get(net)),
        }
    }

    pub fn is_allowlisted(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Every ban in the snapshot, addresses then prefixes (some may be over: see
    /// [`Self::check`]).
    pub fn bans(&self) -> impl Iterator<Item = &Arc<Decision>> {
        self.ips
            .values()
            .chain(self.prefixes.iter().flat_map(|(_, m)| m.values()))
    }

    pub fn ban_count(&self) -> usize {
        self.ips.len() + self.prefixes.iter().map(|(_, m)| m.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::{Origin, Verdict};

    fn ban(scope: &str, expires_ms: Option<u64>) -> Decision {
        Decision {
            scope: match scope.contains('/') {
                true => Scope::Prefix(scope.parse().unwrap()),
                false => Scope::Ip(scope.parse().unwrap()),
            },
            verdict: Verdict::Ban,
            created_ms: 0,
            expires_ms,
            reason: scope.into(),
            origin: Origin::Manual,
            offences: 1,
        }
    }

    fn banned(g: &GuardSnapshot, ip: &str) -> Option<String> {
        match g.check(ip.parse().unwrap(), 10) {
            GuardVerdict::Banned(d) => Some(d.reason.clone()),
            _ => None,
        }
    }

    /// Readers may still hold the snapshot before: each new one shares its maps' nodes, and
    /// neither ever sees the other's changes.
    #[test]
    fn a_new_snapshot_leaves_the_one_before_as_it_was() {
        let a = GuardSnapshot::new(
            vec!["10.9.0.0/16".parse().unwrap()],
            [ban("10.0.0.1", None), ban("10.1.0.0/24", None)],
        );
        let b = a.with(
            [ban("10.0.0.2", None), ban("::ffff:10.0.0.3", Some(20))],
            &[Scope::Prefix("10.1.0.0/24".parse().unwrap())],
        );
        assert_eq!(banned(&a, "10.0.0.2"), None);
        assert_eq!(banned(&a, "10.1.0.7").as_deref(), Some("10.1.0.0/24"));
        assert_eq!(a.ban_count(), 2);
        assert_eq!(banned(&b, "10.0.0.2").as_deref(), Some("10.0.0.2"));
        assert_eq!(banned(&b, "10.0.0.3").as_deref(), Some("::ffff:10.0.0.3"));
        assert_eq!(banned(&b, "10.1.0.7"), None);
        assert_eq!(b.ban_count(), 3);
        assert_eq!(
            b.check("10.9.1.1".parse().unwrap(), 10),
            GuardVerdict::Allowlisted
        );
        // A decision replaces its scope's.
        let c = b.with([ban("10.0.0.1", Some(5))], &[]);
        assert_eq!(
            c.decision(&Scope::Ip("10.0.0.1".parse().unwrap()))
                .unwrap()
                .expires_ms,
            Some(5)
        );
        assert_eq!(banned(&c, "10.0.0.1"), None, "over at 5, checked at 10");
        assert_eq!(banned(&b, "10.0.0.1").as_deref(), Some("10.0.0.1"));
        // Pruning at 25 drops both that and the ban over at 20, from the new snapshot only.
        let d = c.without_expired(25).unwrap();
        assert_eq!(d.ban_count(), 1);
        assert_eq!(c.ban_count(), 3);
        assert!(d.without_expired(25).is_none());
    }
}

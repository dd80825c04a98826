//! The guard: an immutable snapshot of the allowlist and active bans, swapped atomically by the
//! decider, so the request path checks a client with a few hash lookups and never waits on the
//! store, a lock or the network.

use ipnet::IpNet;
use moat_core::{Decision, Scope};
use std::collections::HashMap;
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
    /// and the bans on `lifted` removed: the maps are copied, not rebuilt from the store, so
    /// publishing a few bans or lifts costs a copy of pointers however many are in force.
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

    /// This snapshot without the bans over at `now_ms`, or `None` when none is (no copy). A
    /// check already ignores them; this returns their memory.
    pub fn without_expired(&self, now_ms: u64) -> Option<Self> {
        let over = |d: &Arc<Decision>| !d.active_at(now_ms);
        let any =
            self.ips.values().any(over) || self.prefixes.iter().any(|(_, m)| m.values().any(over));
        if !any {
            return None;
        }
        fn keep<K: Copy + Eq + std::hash::Hash>(
            m: &HashMap<K, Arc<Decision>>,
            now_ms: u64,
        ) -> HashMap<K, Arc<Decision>> {
            m.iter()
                .filter(|(_, d)| d.active_at(now_ms))
                .map(|(k, d)| (*k, d.clone()))
                .collect()
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

//! The local trust policy: which of the peers' addresses and prefixes become bans here.
//!
//! - **Quorum.** An indicator counts the weights of the distinct peers listing it; it becomes a
//!   ban only at `quorum` or more. One peer with weight 1 and a quorum of 1 is "I trust this
//!   friend"; a hub raises the quorum.
//! - **Never block.** Loopback, private, link-local, carrier-grade NAT, multicast and reserved
//!   ranges, the verified crawlers' published ranges, the allowlist and the operator's own list
//!   are never banned from a feed, whatever the peers say: an address inside one, or a prefix
//!   that overlaps one either way.
//! - **No wide prefixes.** A prefix wider than /16 (IPv4) or /32 (IPv6) from a feed is refused:
//!   one peer's mistake must not take out a provider.
//! - **Expiry.** A feed ban ends when the peers' indicators do, and never later than `max_ttl`
//!   from now.

use crate::indicator::Kind;
use crate::subscribe::PeerView;
use ipnet::IpNet;
use moat_core::Scope;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Ranges no feed may ban: not the public internet (RFC 6890's special-purpose registries,
/// as far as a ban could touch them).
pub const RESERVED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Crawler ranges their operators publish (Google's `googlebot.json`, Bing's `bingbot.json`,
/// Apple's Applebot page), as of this release: the search engines a blog wants to reach it.
/// The operator adds more with `[feeds] never_block`.
pub const CRAWLERS: &[&str] = &[
    "66.249.64.0/19",
    "2001:4860:4801::/48",
    "157.55.39.0/24",
    "207.46.13.0/24",
    "40.77.167.0/24",
    "17.0.0.0/8",
];

pub const MIN_PREFIX_V4: u8 = 16;
pub const MIN_PREFIX_V6: u8 = 32;

#[derive(Debug, Clone)]
pub struct Policy {
    pub quorum: f64,
    pub max_ttl_secs: u64,
    /// The builtin ranges, the allowlist and the operator's list.
    pub never_block: Vec<IpNet>,
}

impl Policy {
    /// The builtin never-block set plus `extra` (the allowlist, the operator's list).
    pub fn new(quorum: f64, max_ttl_secs: u64, extra: impl IntoIterator<Item = IpNet>) -> Policy {
        let mut never_block: Vec<IpNet> = RESERVED
            .iter()
            .chain(CRAWLERS)
            .map(|n| n.parse().expect("builtin ranges parse"))
            .collect();
        never_block.extend(extra);
        Policy {
            quorum,
            max_ttl_secs,
            never_block,
        }
    }

    /// Why `scope` may not be banned from a feed, if it may not.
    pub fn refuses(&self, scope: &Scope) -> Option<String> {
        let net = match scope {
            Scope::Ip(ip) => IpNet::from(ip.to_canonical()),
            Scope::Prefix(n) => {
                let min = if n.addr().is_ipv4() {
                    MIN_PREFIX_V4
                } else {
                    MIN_PREFIX_V6
                };
                if n.prefix_len() < min {
                    return Some(format!("wider than /{min}"));
                }
                *n
            }
        };
        self.never_block
            .iter()
            .find(|nb| nb.contains(&net) || net.contains(*nb))
            .map(|nb| format!("inside the never-block range {nb}"))
    }
}

/// A ban the feeds ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub scope: Scope,
    /// Unix seconds.
    pub expires: u64,
    pub peers: Vec<String>,
    pub detectors: Vec<String>,
}

/// An indicator with enough weight that the policy refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub scope: Scope,
    pub peers: Vec<String>,
    pub why: String,
}

/// One subscription as the policy sees it.
pub struct Peer<'a> {
    pub name: &'a str,
    pub weight: f64,
    pub view: &'a PeerView,
}

/// The bans the peers' live address and prefix indicators ask for, and what was refused.
pub fn decide(policy: &Policy, peers: &[Peer<'_>], now: u64) -> (Vec<Wanted>, Vec<Refused>) {
    struct Tally {
        weight: f64,
        expires: u64,
        peers: Vec<String>,
        detectors: Vec<String>,
    }
    let mut tally: BTreeMap<Scope, Tally> = BTreeMap::new();
    for p in peers {
        for ind in p.view.live(now) {
            let scope = match ind.kind {
                Kind::Ip => ind.value.parse::<IpAddr>().map(Scope::Ip).ok(),
                Kind::Prefix => ind.value.parse::<IpNet>().map(Scope::Prefix).ok(),
                Kind::Domain | Kind::UrlSha256 => None,
            };
            let Some(scope) = scope else { continue };
            let t = tally.entry(scope).or_insert(Tally {
                weight: 0.0,
                expires: 0,
                peers: Vec::new(),
                detectors: Vec::new(),
            });
            if !t.peers.iter().any(|n| n == p.name) {
                t.weight += p.weight;
                t.peers.push(p.name.to_string());
            }
            t.expires = t.expires.max(ind.expires);
            if !t.detectors.contains(&ind.detector) {
                t.detectors.push(ind.detector.clone());
            }
        }
    }
    let (mut wanted, mut refused) = (Vec::new(), Vec::new());
    let cap = now.saturating_add(policy.max_ttl_secs);
    for (scope, t) in tally {
        if t.weight + 1e-9 < policy.quorum {
            continue;
        }
        if let Some(why) = policy.refuses(&scope) {
            refused.push(Refused {
                scope,
                peers: t.peers,
                why,
            });
            continue;
        }
        wanted.push(Wanted {
            scope,
            expires: t.expires.min(cap),
            peers: t.peers,
            detectors: t.detectors,
        });
    }
    (wanted, refused)
}

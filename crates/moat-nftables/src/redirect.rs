//! Banned addresses' mail connections sent to the trap instead of being dropped: a bot that
//! keeps talking to the trap shows what it sends (its campaign, its stolen logins) and learns
//! nothing, where a drop only tells it to move on. Every other port still drops.
//!
//! The suspects are the banned addresses and networks themselves: the `nat` chain matches the
//! same sets as the drops (`ban4`/`net4`, `ban6`/`net6`) rather than copies of them. A copy
//! would double the kernel's elements and each batch (100,000 bans are 100,000 elements
//! once), and two sets updated apart could disagree for a moment, the redirect holding an
//! address the drop no longer does. The allowlist is honoured here too: an allowlisted
//! address inside a banned network reaches the real server.
//!
//! The `nat` chain runs at prerouting (priority `dstnat`, before the input chain), so a
//! redirected connection arrives at the input chain already translated; the input chain
//! accepts TCP to the trap's port whose connection was translated (`ct status dnat`) before
//! its drops. Later packets of the connection are translated by conntrack alone.

use crate::batch::{saddr_in, BAN4, BAN6, NET4, NET6};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Where a family's redirected connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `redirect`: to the address the connection came in to, for a trap listening on every
    /// address (`0.0.0.0` or `[::]`).
    Local,
    /// `dnat` to this address of the machine, for a trap listening on that address only.
    Addr(IpAddr),
}

/// Connections from banned addresses to `ports` (TCP) go to the trap's `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapRedirect {
    pub ports: Vec<u16>,
    pub port: u16,
    /// IPv4 connections; `None`: not redirected (no trap listener takes IPv4), so dropped.
    pub v4: Option<Target>,
    /// IPv6 connections; `None`: not redirected, so dropped.
    pub v6: Option<Target>,
}

/// The name of the `nat` chain.
pub const CHAIN: &str = "trap";

/// `tcp dport N` or `tcp dport { N, M }`.
fn dport(ports: &[u16]) -> Value {
    let right = match ports {
        [one] => json!(one),
        many => json!({"set": many}),
    };
    json!({"match": {"op": "==",
        "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": right}})
}

fn target(t: Target, family: &str, port: u16) -> Value {
    match t {
        Target::Local => json!({"redirect": {"port": port}}),
        Target::Addr(a) => json!({"dnat": {"family": family, "addr": a.to_string(), "port": port}}),
    }
}

/// The input chain's rule for `r`: `tcp dport PORT ct status dnat accept`.
pub(crate) fn accept_redirected(r: &TrapRedirect) -> Vec<Value> {
    vec![
        dport(&[r.port]),
        json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
        json!({"accept": null}),
    ]
}

/// The `nat` chain and its rules; nothing without redirects.
pub(crate) fn nat_chain(table: &str, redirects: &[TrapRedirect]) -> Vec<Value> {
    let redirects: Vec<&TrapRedirect> = redirects.iter().filter(|r| !r.ports.is_empty()).collect();
    if redirects.is_empty() {
        return Vec::new();
    }
    let rule = |expr: Vec<Value>| {
        json!({"add": {"rule": {
            "family": "inet", "table": table, "chain": CHAIN, "expr": expr,
        }}})
    };
    let mut cmds = vec![json!({"add": {"chain": {
        "family": "inet", "table": table, "name": CHAIN,
        "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept",
    }}})];
    for (proto, set) in [("ip", crate::batch::ALLOW4), ("ip6", crate::batch::ALLOW6)] {
        cmds.push(rule(vec![saddr_in(proto, set), json!({"return": null})]));
    }
    for r in redirects {
        for (proto, sets, to) in [("ip", [BAN4, NET4], r.v4), ("ip6", [BAN6, NET6], r.v6)] {
            let Some(to) = to else { continue };
            for set in sets {
                cmds.push(rule(vec![
                    saddr_in(proto, set),
                    dport(&r.ports),
                    target(to, proto, r.port),
                ]));
            }
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_matches_the_ban_sets_and_each_family_its_target() {
        let r = TrapRedirect {
            ports: vec![25, 587],
            port: 2525,
            v4: Some(Target::Local),
            v6: Some(Target::Addr("fd00::2".parse().unwrap())),
        };
        let cmds = nat_chain("moat", std::slice::from_ref(&r));
        assert_eq!(cmds[0]["add"]["chain"]["type"], "nat");
        assert_eq!(cmds[0]["add"]["chain"]["hook"], "prerouting");
        // The allowlist returns first, then one rule per ban set.
        let rules: Vec<&Value> = cmds[1..]
            .iter()
            .map(|c| &c["add"]["rule"]["expr"])
            .collect();
        assert_eq!(rules.len(), 6);
        assert_eq!(rules[0][0]["match"]["right"], "@allow4");
        assert_eq!(rules[0][1], json!({"return": null}));
        let sets: Vec<&Value> = rules[2..].iter().map(|e| &e[0]["match"]["right"]).collect();
        assert_eq!(sets, ["@ban4", "@net4", "@ban6", "@net6"]);
        assert_eq!(rules[2][1]["match"]["right"], json!({"set": [25, 587]}));
        assert_eq!(rules[2][2], json!({"redirect": {"port": 2525}}));
        assert_eq!(
            rules[4][2],
            json!({"dnat": {"family": "ip6", "addr": "fd00::2", "port": 2525}})
        );
        let accept = accept_redirected(&r);
        assert_eq!(accept[0]["match"]["right"], 2525);
        assert_eq!(accept[1]["match"]["right"], "dnat");
    }

    #[test]
    fn a_family_without_a_trap_listener_is_not_redirected_and_no_redirect_no_chain() {
        let r = TrapRedirect {
            ports: vec![465],
            port: 4650,
            v4: Some(Target::Addr("192.0.2.1".parse().unwrap())),
            v6: None,
        };
        let cmds = nat_chain("moat", &[r]);
        assert_eq!(cmds.len(), 1 + 2 + 2);
        assert!(cmds.iter().all(|c| !c.to_string().contains("@ban6")));
        assert_eq!(cmds[3]["add"]["rule"]["expr"][1]["match"]["right"], 465);
        assert!(nat_chain("moat", &[]).is_empty());
    }
}

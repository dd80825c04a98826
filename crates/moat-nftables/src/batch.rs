//! nftables JSON batches (`nft -j -f -`), built without I/O: the table Moat owns, its sets and
//! rules, and element changes. Each batch is one kernel transaction: it applies whole or not
//! at all.
//!
//! Sets: `ban4`/`ban6` hold banned addresses, `net4`/`net6` banned networks (interval sets:
//! an address set cannot hold a prefix, and intervals in one set must not overlap),
//! `allow4`/`allow6` the allowlist, accepted before any drop. Every element has its own
//! timeout, so a ban ends in the kernel when it ends in Moat, even if Moat is not running.

use ipnet::IpNet;
use serde_json::{json, Value};
use std::net::IpAddr;

/// The sets, by family and kind.
pub const BAN4: &str = "ban4";
pub const BAN6: &str = "ban6";
pub const NET4: &str = "net4";
pub const NET6: &str = "net6";
pub const ALLOW4: &str = "allow4";
pub const ALLOW6: &str = "allow6";

/// Builds batches for one table of family `inet`.
#[derive(Debug, Clone)]
pub struct Batch {
    table: String,
    cmds: Vec<Value>,
}

/// The set an element of `net` goes in.
pub fn set_of(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(n) if n.prefix_len() == 32 => BAN4,
        IpNet::V4(_) => NET4,
        IpNet::V6(n) if n.prefix_len() == 128 => BAN6,
        IpNet::V6(_) => NET6,
    }
}

/// An element's value as nftables JSON: an address, or `{"prefix": …}`.
fn value(net: &IpNet) -> Value {
    let full = matches!(net, IpNet::V4(n) if n.prefix_len() == 32)
        || matches!(net, IpNet::V6(n) if n.prefix_len() == 128);
    if full {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

impl Batch {
    pub fn new(table: &str) -> Self {
        Batch {
            table: table.to_string(),
            cmds: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// The table from scratch: whatever was there goes (in the same transaction, so nothing
    /// is ever unprotected), then the sets, the chain at the input hook, and its rules.
    pub fn recreate(&mut self, priority: i32) -> &mut Self {
        let t = &self.table;
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}),
            json!({"delete": {"table": {"family": "inet", "name": t}}}),
            json!({"add": {"table": {"family": "inet", "name": t}}}),
        ];
        for (name, ty, interval, timeout) in [
            (BAN4, "ipv4_addr", false, true),
            (BAN6, "ipv6_addr", false, true),
            (NET4, "ipv4_addr", true, true),
            (NET6, "ipv6_addr", true, true),
            (ALLOW4, "ipv4_addr", true, false),
            (ALLOW6, "ipv6_addr", true, false),
        ] {
            let mut flags = Vec::new();
            if interval {
                flags.push("interval");
            }
            if timeout {
                flags.push("timeout");
            }
            cmds.push(json!({"add": {"set": {
                "family": "inet", "table": t, "name": name, "type": ty, "flags": flags,
            }}}));
        }
        cmds.push(json!({"add": {"chain": {
            "family": "inet", "table": t, "name": "input",
            "type": "filter", "hook": "input", "prio": priority, "policy": "accept",
        }}}));
        for (proto, set, verdict) in [
            ("ip", ALLOW4, "accept"),
            ("ip6", ALLOW6, "accept"),
            ("ip", BAN4, "drop"),
            ("ip", NET4, "drop"),
            ("ip6", BAN6, "drop"),
            ("ip6", NET6, "drop"),
        ] {
            cmds.push(json!({"add": {"rule": {
                "family": "inet", "table": t, "chain": "input",
                "expr": [
                    {"match": {"op": "==",
                        "left": {"payload": {"protocol": proto, "field": "saddr"}},
                        "right": format!("@{set}")}},
                    {verdict: null},
                ],
            }}}));
        }
        self.cmds.extend(cmds);
        self
    }

    /// Adds a ban element; `timeout_secs` `None` stays until removed.
    pub fn add(&mut self, net: &IpNet, timeout_secs: Option<u64>) -> &mut Self {
        let mut elem = json!({"val": value(net)});
        if let Some(t) = timeout_secs {
            elem["timeout"] = json!(t.max(1));
        }
        self.cmds.push(json!({"add": {"element": {
            "family": "inet", "table": self.table, "name": set_of(net), "elem": [{"elem": elem}],
        }}}));
        self
    }

    pub fn delete(&mut self, net: &IpNet) -> &mut Self {
        self.cmds.push(json!({"delete": {"element": {
            "family": "inet", "table": self.table, "name": set_of(net), "elem": [value(net)],
        }}}));
        self
    }

    /// Replaces the allowlist sets' contents.
    pub fn allowlist(&mut self, nets: &[IpNet]) -> &mut Self {
        for (set, v4) in [(ALLOW4, true), (ALLOW6, false)] {
            self.cmds.push(json!({"flush": {"set": {
                "family": "inet", "table": self.table, "name": set,
            }}}));
            let elems: Vec<Value> = merged(nets, v4).iter().map(value).collect();
            if !elems.is_empty() {
                self.cmds.push(json!({"add": {"element": {
                    "family": "inet", "table": self.table, "name": set, "elem": elems,
                }}}));
            }
        }
        self
    }

    pub fn to_json(&self) -> String {
        json!({"nftables": self.cmds}).to_string()
    }
}

/// The networks of one family with those inside another dropped (an interval set refuses
/// overlapping elements).
fn merged(nets: &[IpNet], v4: bool) -> Vec<IpNet> {
    let mine: Vec<IpNet> = nets
        .iter()
        .map(IpNet::trunc)
        .filter(|n| matches!(n.addr(), IpAddr::V4(_)) == v4)
        .collect();
    let mut out: Vec<IpNet> = Vec::new();
    for n in &mine {
        let inside_other = mine
            .iter()
            .any(|o| o != n && o.contains(n) && (o.prefix_len() < n.prefix_len() || o < n));
        if !inside_other && !out.contains(n) {
            out.push(*n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_and_sets() {
        let mut b = Batch::new("moat");
        b.add(&"192.0.2.7/32".parse().unwrap(), Some(30))
            .add(&"2001:db8::/64".parse().unwrap(), None)
            .delete(&"198.51.100.0/24".parse().unwrap());
        let j: Value = serde_json::from_str(&b.to_json()).unwrap();
        let cmds = j["nftables"].as_array().unwrap();
        assert_eq!(cmds[0]["add"]["element"]["name"], "ban4");
        assert_eq!(cmds[0]["add"]["element"]["elem"][0]["elem"]["timeout"], 30);
        assert_eq!(cmds[1]["add"]["element"]["name"], "net6");
        assert_eq!(cmds[2]["delete"]["element"]["elem"][0]["prefix"]["len"], 24);
        let nets: Vec<IpNet> = ["10.0.0.0/8", "10.1.0.0/16", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(
            merged(&nets, true),
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
    }
}

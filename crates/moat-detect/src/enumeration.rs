//! Recipient enumeration: who is probing for valid addresses, across rotating addresses.
//!
//! Unknown-recipient probes are counted per client (an IPv4 address, or an IPv6 /64), per
//! network (/24 or /64), and per envelope sender across every address (a farm rotating through
//! addresses often keeps its `MAIL FROM`). Past a threshold the client, network or sender is
//! *judged* for a while: every recipient it names gets the same temporary refusal, valid or
//! not, so the probe learns nothing. A refusal rather than an acceptance, because a real sender
//! that mistyped an address must still learn, in the end, that it failed: its MTA retries, and
//! after the judgement lapses it gets Postfix's own `550 5.1.1`.

use crate::window::{Counter, Marks};
use ipnet::IpNet;
use moat_core::{prefix_of, PrefixLens};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
pub struct EnumConfig {
    pub window_secs: u64,
    pub per_client: u32,
    pub per_network: u32,
    pub per_sender: u32,
    pub judged_secs: u64,
    pub max_keys: usize,
}

impl Default for EnumConfig {
    fn default() -> Self {
        EnumConfig {
            window_secs: 600,
            per_client: 5,
            per_network: 15,
            per_sender: 15,
            judged_secs: 3600,
            max_keys: 200_000,
        }
    }
}

/// What a probe newly caused, for the decision log and the shared engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    pub client: bool,
    pub network: Option<IpNet>,
    pub sender: bool,
}

#[derive(Debug)]
pub struct EnumJudge {
    cfg: EnumConfig,
    lens: PrefixLens,
    by_client: Counter<IpNet>,
    by_network: Counter<IpNet>,
    by_sender: Counter<String>,
    judged_client: Marks<IpNet>,
    judged_network: Marks<IpNet>,
    judged_sender: Marks<String>,
}

/// The bounce address `<>` and postmaster are not a farm's signature; never judge them.
fn countable_sender(sender: &str) -> Option<String> {
    let s = sender.trim().to_ascii_lowercase();
    (!s.is_empty() && !s.starts_with("postmaster@") && s != "<>").then_some(s)
}

impl EnumJudge {
    pub fn new(cfg: EnumConfig, lens: PrefixLens) -> Self {
        EnumJudge {
            by_client: Counter::new(cfg.window_secs, cfg.max_keys),
            by_network: Counter::new(cfg.window_secs, cfg.max_keys),
            by_sender: Counter::new(cfg.window_secs, cfg.max_keys),
            judged_client: Marks::new(cfg.max_keys),
            judged_network: Marks::new(cfg.max_keys),
            judged_sender: Marks::new(cfg.max_keys),
            cfg,
            lens,
        }
    }

    fn client_key(&self, ip: IpAddr) -> IpNet {
        match ip.to_canonical() {
            IpAddr::V4(a) => IpNet::from(IpAddr::V4(a)),
            v6 => prefix_of(v6, self.lens),
        }
    }

    pub fn is_judged(&self, ip: IpAddr, sender: &str, now: u64) -> bool {
        let ip = ip.to_canonical();
        self.judged_client.active(&self.client_key(ip), now)
            || self.judged_network.active(&prefix_of(ip, self.lens), now)
            || countable_sender(sender).is_some_and(|s| self.judged_sender.active(&s, now))
    }

    /// Counts a probe for a recipient that does not exist.
    pub fn unknown_recipient(&mut self, ip: IpAddr, sender: &str, now: u64) -> Judged {
        let ip = ip.to_canonical();
        let until = now + self.cfg.judged_secs;
        let mut out = Judged::default();
        let client = self.client_key(ip);
        // A judgement starts the count afresh, so when it lapses the client is judged on what
        // it does next: a real sender retrying its one mistyped address then gets Postfix's
        // own 550 and learns the truth.
        if self.by_client.hit(&client, now) >= self.cfg.per_client {
            out.client = !self.judged_client.active(&client, now);
            self.judged_client.mark(client, until, now);
            self.by_client.reset(&client);
        }
        let net = prefix_of(ip, self.lens);
        if self.by_network.hit(&net, now) >= self.cfg.per_network {
            if !self.judged_network.active(&net, now) {
                out.network = Some(net);
            }
            self.judged_network.mark(net, until, now);
            self.by_network.reset(&net);
        }
        if let Some(s) = countable_sender(sender) {
            if self.by_sender.hit(&s, now) >= self.cfg.per_sender {
                out.sender = !self.judged_sender.active(&s, now);
                self.by_sender.reset(&s);
                self.judged_sender.mark(s, until, now);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_many_probes() {
        let mut j = EnumJudge::new(EnumConfig::default(), PrefixLens::default());
        for i in 0..4 {
            assert_eq!(
                j.unknown_recipient(ip("192.0.2.1"), "", i),
                Judged::default()
            );
        }
        assert!(!j.is_judged(ip("192.0.2.1"), "", 4));
        assert!(j.unknown_recipient(ip("192.0.2.1"), "", 4).client);
        assert!(j.is_judged(ip("192.0.2.1"), "", 5));
        assert!(
            !j.is_judged(ip("192.0.2.2"), "", 5),
            "its neighbours are not judged yet"
        );
        assert!(
            !j.is_judged(ip("192.0.2.1"), "", 4 + 3600),
            "judgement lapses"
        );
        // After it lapses one more mistake is just a mistake.
        let r = j.unknown_recipient(ip("192.0.2.1"), "", 4 + 3601);
        assert!(!r.client && !j.is_judged(ip("192.0.2.1"), "", 4 + 3602));
    }

    #[test]
    fn rotating_addresses_are_caught_by_network_and_by_sender() {
        let mut j = EnumJudge::new(EnumConfig::default(), PrefixLens::default());
        // One probe per address, fifteen addresses of one /24: the network is judged.
        let mut caught = None;
        for i in 0..15u8 {
            let r = j.unknown_recipient(ip(&format!("198.51.100.{i}")), "", 10);
            if r.network.is_some() {
                caught = Some(i);
            }
        }
        assert_eq!(caught, Some(14));
        assert!(j.is_judged(ip("198.51.100.200"), "", 11));
        // One probe per network, same sender every time: the sender is judged everywhere.
        for i in 0..15u8 {
            j.unknown_recipient(ip(&format!("10.{i}.0.1")), "bot@farm.example", 20);
        }
        assert!(j.is_judged(ip("172.16.9.9"), "BOT@farm.example", 21));
        assert!(!j.is_judged(ip("172.16.9.9"), "person@example.org", 21));
        // The null sender is never a signature.
        for i in 0..30u8 {
            j.unknown_recipient(ip(&format!("10.99.{i}.1")), "", 30);
        }
        assert!(!j.is_judged(ip("172.16.9.9"), "", 31));
    }

    #[test]
    fn ipv6_clients_are_their_slash_64() {
        let mut j = EnumJudge::new(EnumConfig::default(), PrefixLens::default());
        for i in 0..5u16 {
            j.unknown_recipient(ip(&format!("2001:db8:1:2::{i:x}")), "", 1);
        }
        assert!(j.is_judged(ip("2001:db8:1:2::ffff"), "", 2));
    }
}

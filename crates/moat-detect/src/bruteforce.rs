//! SASL brute force seen across rotating addresses, from Dovecot's policy reports.
//!
//! Per-IP limits fail against server farms because every tripped limit brings a new address.
//! What does not change is the target: so the state is kept **per login** (how many distinct
//! addresses and distinct passwords failed on it), next to failures per address, per network and
//! globally. A login under attack makes every attempt on it wait (Dovecot applies the delay),
//! except a password that is known to be right for it; an address or network that keeps failing
//! is reported to the shared engine, which bans it for the HTTP shield too.
//!
//! Memory is compact on purpose (see BENCHMARKS.md for one million logins and addresses):
//! logins and addresses are keyed by a 32-bit hash (a rare collision merges two logins'
//! counts, which only makes Moat slightly more cautious), times are 32-bit Unix seconds, and the
//! distinct sets keep at most [`SET`] 16-bit fingerprints, enough to know a threshold was
//! crossed.

use crate::window::{Counter, SmallCounter};
use ipnet::IpNet;
use moat_core::{prefix_of, PrefixLens};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

const SET: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct BruteConfig {
    pub window_secs: u64,
    /// Distinct failing addresses on one login before it counts as attacked.
    pub login_addresses: u32,
    /// Distinct failing passwords on one login before it counts as attacked.
    pub login_passwords: u32,
    pub attacked_secs: u64,
    pub address_failures: u32,
    pub network_failures: u32,
    pub global_failures_per_minute: u32,
    /// Seconds Dovecot holds an attempt on an attacked login.
    pub delay_secs: i32,
    pub max_logins: usize,
}

impl Default for BruteConfig {
    fn default() -> Self {
        BruteConfig {
            window_secs: 3600,
            login_addresses: 5,
            login_passwords: 8,
            attacked_secs: 3600,
            address_failures: 10,
            network_failures: 30,
            global_failures_per_minute: 600,
            delay_secs: 5,
            max_logins: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Set {
    items: [u16; SET],
    len: u8,
}

impl Set {
    fn insert(&mut self, x: u16) {
        let n = self.len as usize;
        if n < SET && !self.items[..n].contains(&x) {
            self.items[n] = x;
            self.len += 1;
        }
    }
    fn contains(&self, x: u16) -> bool {
        self.items[..self.len as usize].contains(&x)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct LoginState {
    /// Unix seconds (u32 lasts until 2106).
    window_start: u32,
    attacked_until: u32,
    addresses: Set,
    passwords: Set,
    /// Password fingerprints that succeeded on this login.
    good: [u32; 2],
    /// Where its owner logs in from: fingerprints of the networks (/24, /64) and Dovecot
    /// device ids of successful logins, newest first. Attempts from there are never held.
    homes: [u32; HOMES],
}

const HOMES: usize = 4;

/// Hashes a login case-insensitively without allocating a lowercased copy.
struct Lower<'a>(&'a str);

impl Hash for Lower<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for b in self.0.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
    }
}

/// What an allow request should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Delay(i32),
}

/// What a failure report led to, for the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Escalation {
    /// The address just reached `address_failures`: ban it (once per window).
    pub address_ban: bool,
    pub network: Option<IpNet>,
    pub login_attacked: bool,
}

pub struct BruteForce {
    cfg: BruteConfig,
    lens: PrefixLens,
    hasher: std::collections::hash_map::RandomState,
    logins: HashMap<u32, LoginState>,
    by_address: SmallCounter,
    by_network: Counter<IpNet>,
    global: Counter<()>,
}

impl BruteForce {
    pub fn new(cfg: BruteConfig, lens: PrefixLens) -> Self {
        BruteForce {
            by_address: SmallCounter::new(cfg.window_secs, cfg.max_logins),
            by_network: Counter::new(cfg.window_secs, cfg.max_logins / 4),
            global: Counter::new(60, 1),
            logins: HashMap::new(),
            hasher: Default::default(),
            cfg,
            lens,
        }
    }

    fn key(&self, login: &str) -> u32 {
        self.hasher.hash_one(Lower(login)) as u32
    }

    fn fp<T: Hash + ?Sized>(&self, x: &T) -> u32 {
        self.hasher.hash_one(x) as u32
    }

    fn fp16<T: Hash + ?Sized>(&self, x: &T) -> u16 {
        self.hasher.hash_one(x) as u16
    }

    /// Fingerprints of where an attempt comes from: its network and, if Dovecot sent one, its
    /// device id. Zero never occurs (it marks an empty slot).
    fn origins(&self, ip: Option<IpAddr>, device: &str) -> [u32; 2] {
        let net = ip.map_or(0, |ip| self.fp(&prefix_of(ip, self.lens)) | 1);
        let dev = if device.is_empty() {
            0
        } else {
            self.fp(&("device", device)) | 1
        };
        [net, dev]
    }

    /// The answer to `command=allow`. `ip` and `device` say where the attempt comes from: a
    /// network or device its owner logged in from is never held, whatever happens elsewhere.
    pub fn allow(
        &self,
        login: &str,
        pwhash: &str,
        ip: Option<IpAddr>,
        device: &str,
        now: u64,
    ) -> Verdict {
        let state = self.logins.get(&self.key(login));
        let origins = self.origins(ip, device);
        let at_home = |s: &LoginState| origins.iter().any(|&o| o != 0 && s.homes.contains(&o));
        let attacked = state.filter(|s| u64::from(s.attacked_until) > now);
        let pw = self.fp(pwhash);
        let known_good =
            |s: &LoginState| (!pwhash.is_empty() && s.good.contains(&pw)) || at_home(s);
        match attacked {
            Some(s) if !known_good(s) => Verdict::Delay(self.cfg.delay_secs),
            Some(_) => Verdict::Accept,
            None => {
                let storm = self.global.get(&(), now) >= self.cfg.global_failures_per_minute;
                let good = state.is_some_and(known_good);
                if storm && !good {
                    Verdict::Delay(self.cfg.delay_secs.min(2))
                } else {
                    Verdict::Accept
                }
            }
        }
    }

    /// A successful login: its password is remembered as good for it, and its network and
    /// device as its owner's.
    pub fn success(&mut self, login: &str, pwhash: &str, ip: Option<IpAddr>, device: &str) {
        let pw = (!pwhash.is_empty()).then(|| self.fp(pwhash));
        let origins = self.origins(ip, device);
        let key = self.key(login);
        if !self.logins.contains_key(&key) {
            self.make_room();
        }
        let s = self.logins.entry(key).or_default();
        if let Some(pw) = pw {
            if !s.good.contains(&pw) {
                s.good = [pw, s.good[0]];
            }
        }
        for o in origins.into_iter().filter(|&o| o != 0) {
            if !s.homes.contains(&o) {
                s.homes.rotate_right(1);
                s.homes[0] = o;
            }
        }
    }

    /// A failed login from `ip`.
    pub fn failure(&mut self, login: &str, pwhash: &str, ip: IpAddr, now: u64) -> Escalation {
        let mut out = Escalation::default();
        self.global.hit(&(), now);
        if self.by_address.hit(self.fp(&ip.to_canonical()), now) == self.cfg.address_failures {
            out.address_ban = true;
        }
        let net = prefix_of(ip, self.lens);
        if self.by_network.hit(&net, now) == self.cfg.network_failures {
            out.network = Some(net);
        }
        let key = self.key(login);
        let (ipf, pwf) = (self.fp16(&ip), self.fp16(pwhash));
        if !self.logins.contains_key(&key) {
            self.make_room();
        }
        let cfg = self.cfg;
        let s = self.logins.entry(key).or_default();
        let now32 = now as u32;
        if u64::from(now32.saturating_sub(s.window_start)) >= cfg.window_secs {
            s.window_start = now32;
            s.addresses = Set::default();
            s.passwords = Set::default();
        }
        s.addresses.insert(ipf);
        if !pwhash.is_empty() {
            s.passwords.insert(pwf);
        }
        if (s.addresses.len as u32 >= cfg.login_addresses
            || s.passwords.len as u32 >= cfg.login_passwords)
            && u64::from(s.attacked_until) <= now
        {
            s.attacked_until = (now + cfg.attacked_secs) as u32;
            out.login_attacked = true;
        }
        out
    }

    /// Whether `ip` already failed on `login` in this window (for logs and tests).
    pub fn failed_from(&self, login: &str, ip: IpAddr) -> bool {
        self.logins
            .get(&self.key(login))
            .is_some_and(|s| s.addresses.contains(self.fp16(&ip)))
    }

    pub fn logins(&self) -> usize {
        self.logins.len()
    }

    fn make_room(&mut self) {
        if self.logins.len() < self.cfg.max_logins {
            return;
        }
        // Keep what matters: logins under attack and logins with a known-good password.
        self.logins
            .retain(|_, s| s.attacked_until > 0 || s.good[0] != 0 || s.homes[0] != 0);
        if self.logins.len() >= self.cfg.max_logins {
            self.logins.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i * 256 + 1))
    }

    #[test]
    fn a_login_attacked_from_many_addresses_makes_everyone_wait_but_its_owner() {
        let mut b = BruteForce::new(BruteConfig::default(), PrefixLens::default());
        b.success("alice", "goodhash", None, "");
        for i in 0..4 {
            assert!(
                !b.failure("alice", &format!("bad{i}"), ip(i), 100)
                    .login_attacked
            );
            assert_eq!(b.allow("alice", "bad", None, "", 100), Verdict::Accept);
        }
        assert!(b.failure("alice", "bad4", ip(4), 100).login_attacked);
        assert_eq!(
            b.allow("alice", "whatever", None, "", 101),
            Verdict::Delay(5)
        );
        assert_eq!(b.allow("alice", "goodhash", None, "", 101), Verdict::Accept);
        assert_eq!(
            b.allow("bob", "x", None, "", 101),
            Verdict::Accept,
            "other logins are untouched"
        );
        assert_eq!(
            b.allow("alice", "x", None, "", 101 + 3600),
            Verdict::Accept,
            "it lapses"
        );
        assert!(b.failed_from("alice", ip(3)) && !b.failed_from("alice", ip(9)));
    }

    #[test]
    fn addresses_and_networks_escalate() {
        let cfg = BruteConfig::default();
        let mut b = BruteForce::new(cfg, PrefixLens::default());
        let one: IpAddr = "192.0.2.7".parse().unwrap();
        let bans: Vec<usize> = (0..12)
            .filter(|i| b.failure(&format!("user{i}"), "h", one, 5).address_ban)
            .collect();
        assert_eq!(bans, [9], "once, at the 10th failure");
        let mut nets = Vec::new();
        for i in 0..40u8 {
            let a: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            if let Some(n) = b.failure("x", "h", a, 5).network {
                nets.push(n);
            }
        }
        assert_eq!(nets, vec!["198.51.100.0/24".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn a_storm_slows_unknown_passwords_everywhere() {
        let cfg = BruteConfig {
            global_failures_per_minute: 10,
            ..Default::default()
        };
        let mut b = BruteForce::new(cfg, PrefixLens::default());
        b.success("carol", "right", None, "");
        for i in 0..10 {
            b.failure(&format!("u{i}"), "h", ip(i), 60);
        }
        assert_eq!(b.allow("dave", "h", None, "", 61), Verdict::Delay(2));
        assert_eq!(b.allow("carol", "right", None, "", 61), Verdict::Accept);
        assert_eq!(b.allow("dave", "h", None, "", 130), Verdict::Accept);
    }

    /// Issue 14: the owner, attacked from 60 addresses elsewhere, is not held on his own
    /// network or device, even with a password Moat never saw succeed; failures from there
    /// still count.
    #[test]
    fn the_owner_is_never_held_where_he_logs_in() {
        let mut b = BruteForce::new(BruteConfig::default(), PrefixLens::default());
        let home: IpAddr = "203.0.113.10".parse().unwrap();
        let neighbour: IpAddr = "203.0.113.11".parse().unwrap();
        b.success("owner", "", Some(home), "");
        b.success("owner", "", Some(ip(900)), "phone-1");
        for i in 0..60 {
            b.failure("owner", &format!("guess{i}"), ip(i), 100);
        }
        assert_eq!(
            b.allow("owner", "new-password", Some(neighbour), "", 101),
            Verdict::Accept,
            "same /24"
        );
        assert_eq!(
            b.allow("owner", "new-password", Some(ip(950)), "phone-1", 101),
            Verdict::Accept,
            "same device"
        );
        assert_eq!(
            b.allow("owner", "new-password", Some(ip(70)), "", 101),
            Verdict::Delay(5),
            "elsewhere, an unknown password waits"
        );
        let bans = (0..10)
            .filter(|i| {
                b.failure("owner", &format!("typo{i}"), neighbour, 102)
                    .address_ban
            })
            .count();
        assert_eq!(bans, 1, "failures from home still count");
    }

    #[test]
    fn memory_is_bounded() {
        let cfg = BruteConfig {
            max_logins: 100,
            ..Default::default()
        };
        let mut b = BruteForce::new(cfg, PrefixLens::default());
        for i in 0..1000 {
            b.failure(&format!("l{i}"), "h", ip(i), 1);
        }
        assert!(b.logins() <= 100);
    }
}

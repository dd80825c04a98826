//! Jails: the failures a log filter found counted per address (an IPv6 address by its /64, as fail2ban
//! cannot), and a ban when an address reaches `maxretry` failures within `findtime`. The
//! ban goes to Moat's decider, which applies the allowlist and prefix escalation as it does
//! for every other detector; a jail itself only skips its own `ignoreip`.
//!
//! `bantime.increment` follows fail2ban: the n-th ban of an address lasts
//! `bantime × factor × 2^(n-1)` (`bantime.multipliers` instead when given), at most
//! `bantime.maxtime`, plus up to `bantime.rndtime` at random.

use crate::history::Histories;
use ipnet::IpNet;
use jiff::Timestamp;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Most addresses a jail tracks at once: beyond it, the oldest failure histories go first
/// (a flood of one-off addresses must not grow memory without bound).
const MAX_TRACKED: usize = 100_000;

/// A jail's settings (fail2ban's names in the comments).
#[derive(Debug, Clone, PartialEq)]
pub struct JailConfig {
    pub name: String,
    /// `maxretry`: failures that make a ban.
    pub max_retry: u32,
    /// `findtime`: how far back failures count.
    pub find_time: Duration,
    /// `bantime`.
    pub ban_time: Duration,
    pub increment: Option<Increment>,
    /// `ignoreip`: never counted (the allowlist is applied by the decider on top).
    pub ignore: Vec<IpNet>,
    /// How many bits of an IPv6 address make one offender (64: a /64, what one host gets).
    pub ipv6_prefix: u8,
}

/// `bantime.increment = true` and its companions.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub factor: f64,
    /// `bantime.multipliers`, when set, replaces the doubling.
    pub multipliers: Vec<u64>,
    pub max_time: Option<Duration>,
    pub rnd_time: Option<Duration>,
}

impl JailConfig {
    /// fail2ban's defaults: 5 failures within 10 minutes ban for 10 minutes.
    pub fn new(name: &str) -> Self {
        JailConfig {
            name: name.to_string(),
            max_retry: 5,
            find_time: Duration::from_secs(600),
            ban_time: Duration::from_secs(600),
            increment: None,
            ignore: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

/// One failure a log filter found: who failed, and when the log line says it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub host: IpAddr,
    /// From a `<CIDR>` or `<SUBNET>` capture: the failure is about a whole network.
    pub prefix_len: Option<u8>,
    pub time: Timestamp,
}

/// A ban a jail asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct JailBan {
    pub jail: String,
    /// The address, or its /64 for IPv6 (a prefix scope).
    pub scope: IpNet,
    pub ttl: Duration,
    pub failures: u32,
    pub reason: String,
}

/// A jail at run time: the failure history and the bans so far. The filter that finds the
/// failures is the caller's: jails on one log with the same filter share one (a line is
/// matched once, whatever the number of jails).
pub struct Jail {
    pub config: JailConfig,
    /// Failure times (Unix seconds) per offender, oldest first.
    failures: Histories,
    /// Bans so far per offender and when the last one was, for `bantime.increment`; kept a
    /// day after the last ban (fail2ban's `dbpurgeage`). Only with `bantime.increment`:
    /// without, a ban's length does not depend on earlier ones, and a day of a wide attack's
    /// addresses in every jail was most of a jail's memory.
    bans: HashMap<IpNet, (u32, u32)>,
    /// When stale entries were last dropped.
    pruned: u32,
}

/// How long a jail remembers an offender's past bans.
const BANS_REMEMBERED: u32 = 86_400;

fn secs(t: Timestamp) -> u32 {
    t.as_second().clamp(0, i64::from(u32::MAX)) as u32
}

impl Jail {
    pub fn new(config: JailConfig) -> Self {
        Jail {
            config,
            failures: Histories::default(),
            bans: HashMap::new(),
            pruned: 0,
        }
    }

    /// Offenders tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// Drops failure histories that fell out of findtime and ban counts older than a day,
    /// once a minute: an address seen once must not stay forever.
    fn prune(&mut self, now: u32) {
        if now.saturating_sub(self.pruned) < 60 {
            return;
        }
        self.pruned = now;
        let find = self.config.find_time.as_secs().min(u64::from(u32::MAX)) as u32;
        self.failures.retain(|t| t.saturating_add(find) > now);
        self.bans
            .retain(|_, (_, t)| t.saturating_add(BANS_REMEMBERED) > now);
    }

    /// Counts the failures the filter found in one line; a ban when an offender reaches
    /// `maxretry`.
    pub fn count(
        &mut self,
        found: impl IntoIterator<Item = Failed>,
        now: Timestamp,
    ) -> Option<JailBan> {
        let mut ban = None;
        for f in found {
            ban = ban.or(self.failure(&f, now));
        }
        ban
    }

    /// The offender a failure counts against: the address, or its IPv6 prefix.
    pub fn offender(&self, f: &Failed) -> IpNet {
        let len = match (f.host, f.prefix_len) {
            (IpAddr::V4(_), Some(l)) => l.min(32),
            (IpAddr::V4(_), None) => 32,
            (IpAddr::V6(_), Some(l)) => l.min(128),
            (IpAddr::V6(_), None) => self.config.ipv6_prefix.min(128),
        };
        IpNet::new(f.host, len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(f.host))
    }

    fn failure(&mut self, f: &Failed, now: Timestamp) -> Option<JailBan> {
        if self.config.ignore.iter().any(|n| n.contains(&f.host)) {
            return None;
        }
        let who = self.offender(f);
        let find = jiff::SignedDuration::try_from(self.config.find_time).ok()?;
        // A failure older than findtime (a log read late) does not count, as in fail2ban.
        if now.duration_since(f.time) > find {
            return None;
        }
        let now_s = secs(now);
        self.prune(now_s);
        let find_s = self.config.find_time.as_secs().min(u64::from(u32::MAX)) as u32;
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains(&who) {
            // Full: forget what fell out of findtime; if still full, this address goes
            // uncounted (as the decider does) rather than memory growing.
            self.failures.retain(|t| t.saturating_add(find_s) > now_s);
            if self.failures.len() >= MAX_TRACKED {
                return None;
            }
        }
        let failures = self.failures.push(who, secs(f.time), find_s) as u32;
        if failures < self.config.max_retry {
            return None;
        }
        self.failures.remove(&who);
        let n = match self.config.increment {
            Some(_) => {
                let entry = self.bans.entry(who).or_insert((0, now_s));
                entry.0 += 1;
                entry.1 = now_s;
                entry.0
            }
            None => 1,
        };
        let ttl = ban_time(&self.config, n);
        Some(JailBan {
            jail: self.config.name.clone(),
            scope: who,
            ttl,
            failures,
            reason: format!(
                "jail {}: {failures} failures within {}s",
                self.config.name,
                self.config.find_time.as_secs()
            ),
        })
    }
}

/// How long the `n`-th ban (from 1) of one offender lasts.
pub fn ban_time(c: &JailConfig, n: u32) -> Duration {
    let Some(inc) = &c.increment else {
        return c.ban_time;
    };
    let base = c.ban_time.as_secs_f64();
    let secs = if inc.multipliers.is_empty() {
        base * inc.factor * 2f64.powi((n.saturating_sub(1)).min(20) as i32)
    } else {
        let i = (n as usize)
            .saturating_sub(1)
            .min(inc.multipliers.len() - 1);
        base * inc.factor * inc.multipliers[i] as f64
    };
    let mut ttl = Duration::from_secs_f64(secs.max(base).min(1e12));
    if let Some(max) = inc.max_time {
        ttl = ttl.min(max);
    }
    if let Some(rnd) = inc.rnd_time {
        ttl += Duration::from_secs_f64(rnd.as_secs_f64() * fastrand::f64());
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(ip: &str, at: i64) -> [Failed; 1] {
        [Failed {
            host: ip.parse().unwrap(),
            prefix_len: None,
            time: Timestamp::from_second(at).unwrap(),
        }]
    }

    #[test]
    fn counts_within_findtime_bans_and_forgets() {
        let mut c = JailConfig::new("sshd");
        c.max_retry = 3;
        c.find_time = Duration::from_secs(60);
        c.ignore = vec!["192.0.2.0/24".parse().unwrap()];
        let mut j = Jail::new(c);
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let t0 = 1_800_000_000;
        assert!(j.count(fail("198.51.100.1", t0), at(t0)).is_none());
        // 61 s later the first failure no longer counts.
        assert!(j
            .count(fail("198.51.100.1", t0 + 61), at(t0 + 61))
            .is_none());
        assert!(j
            .count(fail("198.51.100.1", t0 + 62), at(t0 + 62))
            .is_none());
        let ban = j.count(fail("198.51.100.1", t0 + 63), at(t0 + 63)).unwrap();
        assert_eq!(
            (ban.failures, ban.scope.to_string().as_str()),
            (3, "198.51.100.1/32")
        );
        // IPv6 counts by /64: two addresses of one host's network add up.
        j.count(fail("2001:db8::1", t0 + 63), at(t0 + 63));
        j.count(fail("2001:db8::2", t0 + 63), at(t0 + 63));
        let ban = j.count(fail("2001:db8::3", t0 + 64), at(t0 + 64)).unwrap();
        assert_eq!(ban.scope.to_string(), "2001:db8::/64");
        for _ in 0..5 {
            assert!(
                j.count(fail("192.0.2.9", t0 + 64), at(t0 + 64)).is_none(),
                "ignoreip"
            );
        }
        j.count(fail("203.0.113.5", t0 + 64), at(t0 + 64));
        assert_eq!(j.tracked(), 1);
        // Quiet for two minutes: the lone failure is forgotten at the next line.
        j.count(fail("203.0.113.6", t0 + 200), at(t0 + 200));
        assert_eq!(j.tracked(), 1, "only the new one");
    }

    #[test]
    fn an_offenders_bans_are_counted_only_for_increment() {
        let t0 = 1_800_000_000;
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let mut c = JailConfig::new("sshd");
        c.max_retry = 2;
        let ttls = |c: JailConfig| {
            let mut j = Jail::new(c);
            let mut ttls = Vec::new();
            for s in 0..6 {
                if let Some(b) = j.count(fail("198.51.100.7", t0 + s), at(t0 + s)) {
                    ttls.push(b.ttl.as_secs());
                }
            }
            (ttls, j.bans.len())
        };
        assert_eq!(ttls(c.clone()), (vec![600, 600, 600], 0));
        c.increment = Some(Increment {
            factor: 1.0,
            multipliers: vec![],
            max_time: None,
            rnd_time: None,
        });
        assert_eq!(ttls(c), (vec![600, 1200, 2400], 1));
    }

    #[test]
    fn increment_doubles_up_to_the_cap() {
        let mut c = JailConfig::new("sshd");
        c.ban_time = Duration::from_secs(600);
        c.increment = Some(Increment {
            factor: 1.0,
            multipliers: vec![],
            max_time: Some(Duration::from_secs(3000)),
            rnd_time: None,
        });
        let t: Vec<u64> = (1..=5).map(|n| ban_time(&c, n).as_secs()).collect();
        assert_eq!(t, [600, 1200, 2400, 3000, 3000]);
        c.increment.as_mut().unwrap().multipliers = vec![1, 5, 30];
        let t: Vec<u64> = (1..=4).map(|n| ban_time(&c, n).as_secs()).collect();
        assert_eq!(t, [600, 3000, 3000, 3000]);
    }
}

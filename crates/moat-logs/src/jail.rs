//! Jails: a filter's failures counted per address (an IPv6 address by its /64, as fail2ban
//! cannot), and a ban when an address reaches `maxretry` failures within `findtime`. The
//! ban goes to Moat's decider, which applies the allowlist and prefix escalation as it does
//! for every other detector; a jail itself only skips its own `ignoreip`.
//!
//! `bantime.increment` follows fail2ban: the n-th ban of an address lasts
//! `bantime × factor × 2^(n-1)` (`bantime.multipliers` instead when given), at most
//! `bantime.maxtime`, plus up to `bantime.rndtime` at random.

use crate::fail2ban::{Failure, Filter, Outcome};
use ipnet::IpNet;
use jiff::Timestamp;
use std::collections::{HashMap, VecDeque};
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

/// A jail at run time: its filter (which keeps per-stream state) and the failure history.
pub struct Jail {
    pub config: JailConfig,
    filter: Filter,
    failures: HashMap<IpNet, VecDeque<Timestamp>>,
    /// Bans so far per offender, for `bantime.increment`.
    bans: HashMap<IpNet, u32>,
}

impl Jail {
    pub fn new(config: JailConfig, filter: Filter) -> Self {
        Jail {
            config,
            filter,
            failures: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// One line from a file (its date is in the text).
    pub fn on_line(&mut self, text: &str, now: Timestamp) -> Option<JailBan> {
        let outcome = self.filter.process_line(text, now);
        self.count(outcome, now)
    }

    /// One line whose time is known (a journal record).
    pub fn on_dated(&mut self, text: &str, time: Timestamp, now: Timestamp) -> Option<JailBan> {
        let outcome = self.filter.process_dated(text, time, now);
        self.count(outcome, now)
    }

    /// The filter's journal matches, for a journal source.
    pub fn journal_matches(&self) -> &[String] {
        &self.filter.journalmatch
    }

    fn count(&mut self, outcome: Outcome, now: Timestamp) -> Option<JailBan> {
        let Outcome::Failures(found) = outcome else {
            return None;
        };
        let mut ban = None;
        for f in found {
            ban = ban.or(self.failure(&f, now));
        }
        ban
    }

    /// The offender a failure counts against: the address, or its IPv6 prefix.
    pub fn offender(&self, f: &Failure) -> IpNet {
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

    fn failure(&mut self, f: &Failure, now: Timestamp) -> Option<JailBan> {
        if self.config.ignore.iter().any(|n| n.contains(&f.host)) {
            return None;
        }
        let who = self.offender(f);
        let find = jiff::SignedDuration::try_from(self.config.find_time).ok()?;
        // A failure older than findtime (a log read late) does not count, as in fail2ban.
        if now.duration_since(f.time) > find {
            return None;
        }
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&who) {
            // Full: forget what fell out of findtime; if still full, this address goes
            // uncounted (as the decider does) rather than memory growing.
            self.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= find));
            if self.failures.len() >= MAX_TRACKED {
                return None;
            }
        }
        let q = self.failures.entry(who).or_default();
        q.push_back(f.time);
        while q.front().is_some_and(|t| f.time.duration_since(*t) > find) {
            q.pop_front();
        }
        if (q.len() as u32) < self.config.max_retry {
            return None;
        }
        let failures = q.len() as u32;
        self.failures.remove(&who);
        let n = self.bans.entry(who).or_default();
        *n += 1;
        let ttl = ban_time(&self.config, *n);
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

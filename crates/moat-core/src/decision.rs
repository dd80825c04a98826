//! Decisions: what the engine concluded about a scope, for how long, and why.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a decision applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ip(IpAddr),
    Prefix(IpNet),
}

impl Scope {
    /// An address or a CIDR; a CIDR that covers exactly one address is that address.
    pub fn parse(s: &str) -> Result<Scope, ScopeParseError> {
        s.parse()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is neither an IP address nor a CIDR prefix")]
pub struct ScopeParseError(pub String);

impl FromStr for Scope {
    type Err = ScopeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Scope::Ip(ip));
        }
        match s.parse::<IpNet>() {
            Ok(n) if n.prefix_len() == n.max_prefix_len() => Ok(Scope::Ip(n.addr())),
            Ok(n) => Ok(Scope::Prefix(n.trunc())),
            Err(_) => Err(ScopeParseError(s.to_string())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Ip(a) => write!(f, "{a}"),
            Scope::Prefix(n) => write!(f, "{n}"),
        }
    }
}

/// What happens to a client under a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Ban,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Ban => "ban",
        }
    }
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "ban" => Some(Verdict::Ban),
            _ => None,
        }
    }
}

/// Where a decision came from, so an operator can tell a local rule's ban from a manual one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Rule(String),
    Escalation,
    Manual,
    /// A log watcher jail (`moat-logs`), by name.
    Jail(String),
    /// Subscribed feeds (`moat-feed`), by the names of the peers that listed it. Never
    /// published again, reported or counted as this instance's own.
    Feed(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Rule(r) => write!(f, "rule:{r}"),
            Origin::Escalation => f.write_str("escalation"),
            Origin::Manual => f.write_str("manual"),
            Origin::Jail(j) => write!(f, "jail:{j}"),
            Origin::Feed(p) => write!(f, "feed:{p}"),
        }
    }
}

impl Origin {
    /// Whether this instance's own detectors made it (not a feed, not a hand).
    pub fn is_own_detection(&self) -> bool {
        matches!(self, Origin::Rule(_) | Origin::Escalation | Origin::Jail(_))
    }

    pub fn parse(s: &str) -> Origin {
        match s {
            "escalation" => Origin::Escalation,
            "manual" => Origin::Manual,
            other if other.starts_with("jail:") => Origin::Jail(other[5..].to_string()),
            other if other.starts_with("feed:") => Origin::Feed(other[5..].to_string()),
            other => Origin::Rule(other.strip_prefix("rule:").unwrap_or(other).to_string()),
        }
    }
}

/// A verdict on a scope until a moment in time. `offences` counts how often this scope was
/// banned before, which is what makes the next ban longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub scope: Scope,
    pub verdict: Verdict,
    pub created_ms: u64,
    /// `None` means until removed.
    pub expires_ms: Option<u64>,
    pub reason: String,
    pub origin: Origin,
    pub offences: u32,
}

impl Decision {
    pub fn active_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parses_addresses_and_prefixes() {
        assert_eq!(
            Scope::parse("10.0.0.1").unwrap(),
            Scope::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Scope::parse("10.0.0.1/32").unwrap(),
            Scope::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Scope::parse("10.0.0.7/24").unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert!(Scope::parse("nope").is_err());
    }
}

//! The compiled `[digest]`, `[cluster]`, `[feed]` and `[feeds]`: what an instance shares with
//! its owner, its siblings and its peers (re-exported by [`crate::model`]).

use ipnet::IpNet;
use std::time::Duration;

/// `[digest]`: the summary that comes to the owner: attacks stopped, top sources, what was
/// caught, who was let in by hand. Always written to the log (`moat::digest`); also POSTed as
/// JSON to `webhook` when one is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// How often, and so the period each digest covers.
    pub every: Duration,
    pub webhook: Option<String>,
    /// The owner's address: the digest comes by mail too, through the report relay
    /// (`[report.arf]`'s `from` and `[report.arf.smtp]`), which the config check requires.
    pub mail_to: Option<String>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            every: Duration::from_secs(24 * 3600),
            webhook: None,
            mail_to: None,
        }
    }
}

/// `[cluster]`: instances behind one load balancer (three Fly machines of one blog) count the
/// HTTP shield's rate limits together in Redis or Valkey and share every ban within a second.
/// Each keeps its own SQLite store; without `[cluster]` nothing of this runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `redis://[:password@]host:port/db`, or `redis+unix:///path/to/socket`.
    pub redis: String,
    /// Put before every key and channel (default `moat:`): several sites can share one Redis.
    pub prefix: String,
    /// A limit check slower than this counts as Redis unreachable (default 50ms).
    pub timeout: Duration,
    /// When Redis does not answer: `local` (default) counts with each instance's own limiters,
    /// `closed` refuses what a limit covers until it is back.
    pub on_unreachable: moat_core::shared::WhenUnreachable,
}

/// `[feed]`: this instance's signed feed, served at `/.well-known/moat/feed/` on the HTTP
/// front door: what its own detectors banned (addresses, prefixes) and what its honey
/// accounts and trap were asked to spam (domains, URL hashes). On by default; the key is made
/// at first start (`state_dir/feed.key`, 0600) or by `moat keys new`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPublish {
    pub enabled: bool,
    /// A hub: also publish the bans the followed feeds' consensus made here (`[feeds]`'s
    /// quorum and weights are the hub's policy), marked `consensus:N` with N the feeds that
    /// listed each. Off by default: what a feed brought in is not this instance's own finding.
    pub republish: bool,
    /// The key's name and the feed's origin; the host name when not given.
    pub name: Option<String>,
    /// How often what would be published is compared with what is.
    pub interval: Duration,
    /// How long a head is valid: re-signed after half of it, so a subscriber notices a
    /// frozen feed within `lifetime`.
    pub lifetime: Duration,
}

impl Default for FeedPublish {
    fn default() -> Self {
        FeedPublish {
            enabled: true,
            republish: false,
            name: None,
            interval: Duration::from_secs(5),
            lifetime: Duration::from_secs(3600),
        }
    }
}

/// `[feeds]`: the peers followed and the policy that turns their indicators into bans.
/// Subscriptions also come from `moat feeds add` (`state_dir/feeds/subscriptions.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Feeds {
    /// The summed weight of distinct peers an address needs to be banned here.
    pub quorum: f64,
    /// A feed ban lasts at most this long from when it was last confirmed.
    pub max_ttl: Duration,
    /// How often each peer's head is polled.
    pub poll: Duration,
    /// Never banned from a feed, beside the builtin ranges and the allowlist.
    pub never_block: Vec<IpNet>,
    pub subscribe: Vec<Subscription>,
}

impl Default for Feeds {
    fn default() -> Self {
        Feeds {
            quorum: 1.0,
            max_ttl: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(30),
            never_block: Vec::new(),
            subscribe: Vec::new(),
        }
    }
}

/// One followed feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Letters, digits, `.`, `_`, `-`: it names the peer in bans (`feed:NAME`) and its state file.
    pub name: String,
    /// The feed's base URL, ending in `/` (`https://host/.well-known/moat/feed/`).
    pub url: String,
    pub key: moat_feed::VerifierKey,
    pub weight: f64,
}

/// A subscription's name: what `moat feeds add` and the config accept.
pub fn valid_feed_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.')
}

/// A feed's base URL as kept: http(s), ending in `/`; a bare `https://host` is the feed's
/// usual place, `https://host/.well-known/moat/feed/`.
pub fn feed_url(url: &str) -> Result<String, String> {
    let u = url.trim();
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| format!("`{u}` is not an http(s) URL"))?;
    if rest.is_empty() || rest.starts_with('/') || u.contains(char::is_whitespace) {
        return Err(format!("`{u}` names no host"));
    }
    // A bare host means the feed's usual place.
    if rest.trim_end_matches('/').find('/').is_none() {
        return Ok(format!(
            "{}/.well-known/moat/feed/",
            u.trim_end_matches('/')
        ));
    }
    Ok(if u.ends_with('/') {
        u.to_string()
    } else {
        format!("{u}/")
    })
}

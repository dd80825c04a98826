//! The good-bot catalogue and the forward-confirmed reverse DNS verifier.
//!
//! A User-Agent costs nothing to fake, so claiming "Googlebot" must never by itself exempt a
//! client from the browser proof. The operators of the big crawlers publish a check that only
//! they can pass: the client address's PTR name lies in their zone, and that name resolves back
//! to the address. The catalogue says which zones belong to which crawler; the verifier runs the
//! check, caches the verdict per address and bounds how much DNS traffic fake claims can cause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::resolver::{ResolveError, Resolver};

/// The built-in catalogue (`presets/good-bots.toml`), embedded so that the binary verifies the
/// well-known crawlers with no configuration.
pub const BUILTIN_GOOD_BOTS: &str = include_str!("../../../presets/good-bots.toml");

/// At most this many PTR names of one address get a forward lookup. Real crawlers have one;
/// the cap stops a hostile reverse zone from turning one verification into many queries.
const MAX_CANDIDATES: usize = 4;

/// One crawler: the User-Agent substrings that claim it and the DNS zones it answers from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodBot {
    pub name: String,
    /// Case-sensitive substrings of the User-Agent, as the operators document them.
    pub user_agent: Vec<String>,
    /// Zones (lowercase, no leading or trailing dot) the PTR name must lie in.
    pub domains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    bot: Vec<GoodBot>,
}

/// Why a catalogue was refused.
#[derive(Debug, Error)]
pub enum CatalogueError {
    #[error("good-bot catalogue is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("good bot {bot:?}: {reason}")]
    Invalid { bot: String, reason: &'static str },
}

/// The list of good bots, validated so that no entry can match every request (an empty
/// User-Agent token) or every host name (a bare top-level domain).
#[derive(Debug, Clone)]
pub struct GoodBots {
    bots: Vec<GoodBot>,
    /// Every bot's User-Agent tokens in one automaton, so a request's User-Agent is scanned
    /// once rather than once per token (`str::contains` per token was 7 % of the CPU of a
    /// flood of scripted POSTs). Pattern `i` is a token of bot `owner[i]`.
    tokens: AhoCorasick,
    owner: Vec<usize>,
}

impl PartialEq for GoodBots {
    fn eq(&self, other: &Self) -> bool {
        self.bots == other.bots
    }
}

impl Eq for GoodBots {}

impl GoodBots {
    /// The embedded catalogue. A unit test parses it, so this cannot fail in a built binary.
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN_GOOD_BOTS).expect("embedded presets/good-bots.toml is valid")
    }

    /// Parses and validates a catalogue in the format of `presets/good-bots.toml`. Domains are
    /// normalised (lowercased, surrounding dots removed) so the per-request match stays a plain
    /// suffix comparison.
    pub fn from_toml(text: &str) -> Result<Self, CatalogueError> {
        let raw: RawCatalogue = toml::from_str(text)?;
        let mut bots = Vec::with_capacity(raw.bot.len());
        for mut bot in raw.bot {
            let invalid = |reason| CatalogueError::Invalid {
                bot: bot.name.clone(),
                reason,
            };
            if bot.name.is_empty() {
                return Err(invalid("empty name"));
            }
            if bots.iter().any(|b: &GoodBot| b.name == bot.name) {
                return Err(invalid("listed twice"));
            }
            if bot.user_agent.is_empty() || bot.user_agent.iter().any(|t| t.trim().is_empty()) {
                return Err(invalid("user_agent needs non-empty tokens"));
            }
            for domain in &mut bot.domains {
                *domain = domain.trim().trim_matches('.').to_ascii_lowercase();
            }
            if bot.domains.is_empty() {
                return Err(invalid("domains is empty"));
            }
            if !bot.domains.iter().all(|d| domain_ok(d)) {
                return Err(invalid(
                    "domains must be host names with at least two labels, such as googlebot.com",
                ));
            }
            bots.push(bot);
        }
        let owner: Vec<usize> = bots
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.user_agent.iter().map(move |_| i))
            .collect();
        let tokens =
            AhoCorasick::new(bots.iter().flat_map(|b| b.user_agent.iter())).map_err(|_| {
                CatalogueError::Invalid {
                    bot: String::new(),
                    reason: "user_agent tokens are too many or too long",
                }
            })?;
        Ok(GoodBots {
            bots,
            tokens,
            owner,
        })
    }

    pub fn bots(&self) -> &[GoodBot] {
        &self.bots
    }

    /// The bot this User-Agent claims to be, if any. Runs on every request, so it only scans
    /// the tokens (no allocation); the first bot with a matching token wins.
    pub fn claimed_bot(&self, user_agent: &str) -> Option<&GoodBot> {
        self.claimed_index(user_agent).map(|i| &self.bots[i])
    }

    fn claimed_index(&self, user_agent: &str) -> Option<usize> {
        // Overlapping matches: a token inside another bot's token still counts, and the
        // first bot in the catalogue among all that match wins, as the list is ordered.
        self.tokens
            .find_overlapping_iter(user_agent)
            .map(|m| self.owner[m.pattern().as_usize()])
            .min()
    }
}

/// True when `name` is one of the bot's domains or lies beneath one (`crawl-1.googlebot.com`
/// for `googlebot.com`). The dot before the suffix is required: `evilgooglebot.com` is
/// anyone's to register.
pub fn name_allowed(bot: &GoodBot, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    bot.domains.iter().any(|domain| {
        let domain = domain.as_bytes();
        if name.len() == domain.len() {
            return name.eq_ignore_ascii_case(domain);
        }
        name.len() > domain.len()
            && name[name.len() - domain.len() - 1] == b'.'
            && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
    })
}

fn domain_ok(domain: &str) -> bool {
    let mut labels = 0;
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return false;
        }
        labels += 1;
    }
    labels >= 2
}

/// Limits of the verifier; the defaults suit a public site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// How long a confirmed bot stays confirmed. Crawler addresses are stable for days, and a
    /// day bounds how long a reassigned address keeps its exemption.
    pub positive_ttl: Duration,
    /// How long a definite "no" (no PTR, wrong zone, no matching address) stands.
    pub negative_ttl: Duration,
    /// How long a failed check (timeout, SERVFAIL, network error) counts as "no". Shorter than
    /// `negative_ttl`, because a DNS outage should not cost a real crawler an hour, yet not zero,
    /// because an impostor can make its own reverse zone slow on purpose to keep lookup slots busy.
    pub error_ttl: Duration,
    /// Cache size bound (addresses × claimed bots); a flood of fake claims from many addresses
    /// must not grow memory without limit.
    pub max_entries: usize,
    /// Verifications in flight at once. When all are busy, new claims are answered "no" without
    /// a lookup, so fake "Googlebot" floods cannot become DNS floods.
    pub max_concurrent: usize,
    /// Budget for one whole verification (PTR and forward lookups).
    pub timeout: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            positive_ttl: Duration::from_secs(24 * 3600),
            negative_ttl: Duration::from_secs(3600),
            error_ttl: Duration::from_secs(300),
            max_entries: 100_000,
            max_concurrent: 32,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifierStats {
    /// Verifications that went to DNS.
    pub lookups: u64,
    /// Claims answered "no" untested because every lookup slot was busy.
    pub shed: u64,
    /// Verdicts currently cached (expired ones included until evicted).
    pub cached: usize,
}

type Key = (IpAddr, usize);

#[derive(Debug, Clone, Copy)]
struct Entry {
    verified: bool,
    inserted: Instant,
    /// `None` when the TTL is too large to represent: never expires.
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

struct Inner {
    bots: GoodBots,
    resolver: Resolver,
    config: VerifierConfig,
    cache: Mutex<HashMap<Key, Entry>>,
    permits: Semaphore,
    lookups: AtomicU64,
    shed: AtomicU64,
}

/// Decides whether a request that claims a good bot really comes from it. Cheap to clone (an
/// `Arc` inside), so each connection task can hold one.
#[derive(Clone)]
pub struct GoodBotVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GoodBotVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoodBotVerifier")
            .field("resolver", &self.inner.resolver)
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GoodBotVerifier {
    /// A verifier for the built-in catalogue that asks `resolver`.
    pub fn new(resolver: Resolver, config: VerifierConfig) -> Self {
        Self::with_bots(GoodBots::builtin(), resolver, config)
    }

    /// A verifier for a custom catalogue.
    pub fn with_bots(bots: GoodBots, resolver: Resolver, config: VerifierConfig) -> Self {
        let permits = Semaphore::new(config.max_concurrent.min(Semaphore::MAX_PERMITS));
        GoodBotVerifier {
            inner: Arc::new(Inner {
                bots,
                resolver,
                config,
                cache: Mutex::new(HashMap::new()),
                permits,
                lookups: AtomicU64::new(0),
                shed: AtomicU64::new(0),
            }),
        }
    }

    pub fn bots(&self) -> &GoodBots {
        &self.inner.bots
    }

    /// The verdict if it is known without DNS, for the hot path: `Some(false)` when the
    /// User-Agent claims no good bot, the cached verdict if there is a live one, `None` when
    /// only [`Self::verify`] can tell.
    pub fn cached(&self, ip: IpAddr, user_agent: &str) -> Option<bool> {
        let ip = ip.to_canonical();
        let Some(bot) = self.inner.bots.claimed_index(user_agent) else {
            return Some(false);
        };
        self.inner.cached((ip, bot), Instant::now())
    }

    /// True only when the User-Agent claims a known good bot and the address passes
    /// forward-confirmed reverse DNS for that bot's zones. Every failure (no claim, busy,
    /// DNS error, timeout) is `false`, since the worst outcome of a wrong "no" is a challenge,
    /// while a wrong "yes" lets a script through.
    ///
    /// IPv4-mapped IPv6 addresses (from dual-stack listeners) are checked as IPv4.
    pub async fn verify(&self, ip: IpAddr, user_agent: &str) -> bool {
        let inner = &self.inner;
        let ip = ip.to_canonical();
        let Some(index) = inner.bots.claimed_index(user_agent) else {
            return false;
        };
        let key = (ip, index);
        if let Some(verdict) = inner.cached(key, Instant::now()) {
            return verdict;
        }
        let bot = &inner.bots.bots[index];
        let Ok(_permit) = inner.permits.try_acquire() else {
            inner.shed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%ip, bot = %bot.name, "good-bot check skipped: all lookup slots busy");
            return false;
        };
        inner.lookups.fetch_add(1, Ordering::Relaxed);
        let config = &inner.config;
        let (verified, ttl) =
            match tokio::time::timeout(config.timeout, inner.fcrdns(ip, bot)).await {
                Ok(Ok(true)) => (true, config.positive_ttl),
                Ok(Ok(false)) => (false, config.negative_ttl),
                Ok(Err(error)) => {
                    tracing::debug!(%ip, bot = %bot.name, %error, "good-bot check failed");
                    (false, config.error_ttl)
                }
                Err(_) => {
                    tracing::debug!(%ip, bot = %bot.name, "good-bot check timed out");
                    (false, config.error_ttl)
                }
            };
        inner.store(key, verified, ttl, Instant::now());
        verified
    }

    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            lookups: self.inner.lookups.load(Ordering::Relaxed),
            shed: self.inner.shed.load(Ordering::Relaxed),
            cached: self.inner.lock().len(),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // The map stays consistent even if a holder panicked: every update is a single
        // insert or retain.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, key: Key, now: Instant) -> Option<bool> {
        self.lock()
            .get(&key)
            .filter(|e| e.live(now))
            .map(|e| e.verified)
    }

    fn store(&self, key: Key, verified: bool, ttl: Duration, now: Instant) {
        let max = self.config.max_entries;
        if max == 0 {
            return;
        }
        let mut cache = self.lock();
        if cache.len() >= max && !cache.contains_key(&key) {
            evict(&mut cache, now, max);
        }
        cache.insert(
            key,
            Entry {
                verified,
                inserted: now,
                expires: now.checked_add(ttl),
            },
        );
    }

    /// PTR, then the forward lookup of each PTR name in the bot's zones.
    async fn fcrdns(&self, ip: IpAddr, bot: &GoodBot) -> Result<bool, ResolveError> {
        let names = self.resolver.ptr(ip).await?;
        let mut failure = None;
        let candidates = names.iter().filter(|name| name_allowed(bot, name));
        for name in candidates.take(MAX_CANDIDATES) {
            match self.resolver.addrs(name, ip.is_ipv6()).await {
                Ok(addrs) if addrs.contains(&ip) => {
                    tracing::debug!(%ip, bot = %bot.name, %name, "good bot verified");
                    return Ok(true);
                }
                Ok(_) => {
                    tracing::debug!(%ip, bot = %bot.name, %name, "PTR name does not resolve back");
                }
                Err(e) => failure = Some(e),
            }
        }
        if names.is_empty() || failure.is_none() {
            tracing::debug!(%ip, bot = %bot.name, ?names, "good-bot claim not confirmed");
        }
        failure.map_or(Ok(false), Err)
    }
}

/// Makes room in a full cache: first drop expired verdicts; if it is still full, drop the
/// oldest tenth at once, so a flood of new addresses costs one O(n) sweep per `max / 10`
/// insertions instead of one per insertion.
fn evict(cache: &mut HashMap<Key, Entry>, now: Instant, max: usize) {
    cache.retain(|_, e| e.live(now));
    if cache.len() < max {
        return;
    }
    let mut ages: Vec<Instant> = cache.values().map(|e| e.inserted).collect();
    if ages.is_empty() {
        return;
    }
    // At least one, at most all: the index is always in bounds.
    let count = (ages.len() + 1)
        .saturating_sub(max)
        .max(max / 10)
        .clamp(1, ages.len());
    let cutoff = *ages.select_nth_unstable(count - 1).1;
    cache.retain(|_, e| e.inserted > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    const GOOGLEBOT_UA: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const BINGBOT_UA: &str =
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    const BROWSER_UA: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

    fn bot(domains: &[&str]) -> GoodBot {
        GoodBot {
            name: "test".into(),
            user_agent: vec!["TestBot".into()],
            domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn builtin_catalogue_parses() {
        let bots = GoodBots::from_toml(BUILTIN_GOOD_BOTS).unwrap();
        let names: Vec<&str> = bots.bots().iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "googlebot",
                "bingbot",
                "applebot",
                "duckduckbot",
                "yandexbot",
                "baiduspider",
                "seznambot",
                "petalbot"
            ]
        );
        for b in bots.bots() {
            // No customer-controlled cloud zone may ever slip in.
            assert!(
                !b.domains.iter().any(|d| d.contains("googleusercontent")),
                "{}",
                b.name
            );
        }
    }

    #[test]
    fn claims_are_case_sensitive_substrings() {
        let bots = GoodBots::builtin();
        let claimed = |ua| bots.claimed_bot(ua).map(|b| b.name.as_str());
        assert_eq!(claimed(GOOGLEBOT_UA), Some("googlebot"));
        assert_eq!(claimed(BINGBOT_UA), Some("bingbot"));
        assert_eq!(
            claimed("Mozilla/5.0 (compatible; YandexImages/3.0; +http://yandex.com/bots)"),
            Some("yandexbot")
        );
        assert_eq!(
            claimed("Mozilla/5.0 (Macintosh) Safari/605.1.15 (Applebot/0.1)"),
            Some("applebot")
        );
        assert_eq!(claimed(BROWSER_UA), None);
        assert_eq!(claimed("googlebot"), None);
        assert_eq!(claimed(""), None);
    }

    #[test]
    fn the_first_bot_in_the_catalogue_wins_whatever_the_order_in_the_user_agent() {
        let bots = GoodBots::from_toml(
            "[[bot]]\nname = \"a\"\nuser_agent = [\"AlphaBot\", \"Bot/2\"]\ndomains = [\"a.example\"]\n\
             [[bot]]\nname = \"b\"\nuser_agent = [\"BetaBot/2\"]\ndomains = [\"b.example\"]\n",
        )
        .unwrap();
        let claimed = |ua| bots.claimed_bot(ua).map(|b| b.name.as_str());
        assert_eq!(claimed("x BetaBot/2 y AlphaBot"), Some("a"));
        // "Bot/2" (bot a) lies inside "BetaBot/2" (bot b): overlapping matches count.
        assert_eq!(claimed("BetaBot/2"), Some("a"));
        assert_eq!(claimed("BetaBot/1"), None);
    }

    #[test]
    fn name_suffixes() {
        let google = bot(&["googlebot.com", "google.com"]);
        assert!(name_allowed(&google, "crawl-66-249-66-1.googlebot.com"));
        assert!(name_allowed(&google, "rate-limited-proxy-1.google.com."));
        assert!(name_allowed(&google, "Crawl-1.GoogleBot.COM"));
        assert!(name_allowed(&google, "googlebot.com"));
        assert!(!name_allowed(&google, "evilgooglebot.com"));
        assert!(!name_allowed(&google, "googlebot.com.evil.example"));
        assert!(!name_allowed(&google, "crawl.googlebot.co"));
        assert!(!name_allowed(&google, "com"));
        assert!(!name_allowed(&google, ""));
        assert!(!name_allowed(&google, ".googlebot.co"));
    }

    #[test]
    fn catalogue_validation() {
        let ok = "[[bot]]\nname = \"t\"\nuser_agent = [\"T\"]\ndomains = [\".Example.COM.\"]\n";
        let bots = GoodBots::from_toml(ok).unwrap();
        assert_eq!(bots.bots()[0].domains, ["example.com"]);
        assert!(GoodBots::from_toml("").unwrap().bots().is_empty());
        for bad in [
            "[[bot]]\nname = \"t\"\nuser_agent = [\"\"]\ndomains = [\"a.b\"]\n",
            "[[bot]]\nname = \"t\"\nuser_agent = []\ndomains = [\"a.b\"]\n",
            "[[bot]]\nname = \"t\"\nuser_agent = [\"T\"]\ndomains = [\"com\"]\n",
            "[[bot]]\nname = \"t\"\nuser_agent = [\"T\"]\ndomains = []\n",
            "[[bot]]\nname = \"t\"\nuser_agent = [\"T\"]\ndomains = [\"a b.c\"]\n",
            "[[bot]]\nname = \"t\"\nuser_agent = [\"T\"]\ndomains = [\"a.b\"]\nips = []\n",
            "[[bot]]\nname = \"\"\nuser_agent = [\"T\"]\ndomains = [\"a.b\"]\n",
        ] {
            assert!(GoodBots::from_toml(bad).is_err(), "{bad}");
        }
        let twice = format!("{ok}{ok}");
        assert!(matches!(
            GoodBots::from_toml(&twice),
            Err(CatalogueError::Invalid {
                reason: "listed twice",
                ..
            })
        ));
    }

    /// A verifier pointed at a UDP socket that never answers; the socket shows what was sent.
    async fn silent(config: VerifierConfig) -> (GoodBotVerifier, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = Resolver {
            server: server.local_addr().unwrap(),
            timeout: Duration::from_millis(100),
        };
        (GoodBotVerifier::new(resolver, config), server)
    }

    fn pending_datagrams(socket: &UdpSocket) -> usize {
        let mut buf = [0u8; 512];
        let mut n = 0;
        while socket.try_recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn no_claim_means_no_lookup() {
        let (verifier, server) = silent(VerifierConfig::default()).await;
        let ip: IpAddr = "66.249.66.1".parse().unwrap();
        assert_eq!(verifier.cached(ip, BROWSER_UA), Some(false));
        assert!(!verifier.verify(ip, BROWSER_UA).await);
        assert_eq!(verifier.stats(), VerifierStats::default());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pending_datagrams(&server), 0);
    }

    #[tokio::test]
    async fn timeout_is_false_and_cached_briefly() {
        let config = VerifierConfig {
            timeout: Duration::from_millis(150),
            ..VerifierConfig::default()
        };
        let (verifier, _server) = silent(config).await;
        let ip: IpAddr = "::ffff:66.249.66.1".parse().unwrap();
        assert_eq!(verifier.cached(ip, GOOGLEBOT_UA), None);
        let started = Instant::now();
        assert!(!verifier.verify(ip, GOOGLEBOT_UA).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Cached under the canonical IPv4 address, for either spelling.
        assert_eq!(
            verifier.cached("66.249.66.1".parse().unwrap(), GOOGLEBOT_UA),
            Some(false)
        );
        assert_eq!(verifier.cached(ip, GOOGLEBOT_UA), Some(false));
        // Another bot's claim from the same address is a separate question.
        assert_eq!(verifier.cached(ip, BINGBOT_UA), None);
        let key = (ip.to_canonical(), 0);
        let inner = &verifier.inner;
        assert_eq!(
            inner.cached(key, Instant::now() + Duration::from_secs(299)),
            Some(false)
        );
        assert_eq!(
            inner.cached(key, Instant::now() + Duration::from_secs(301)),
            None
        );
        assert_eq!(verifier.stats().lookups, 1);
    }

    #[tokio::test]
    async fn busy_slots_shed_without_lookup() {
        let config = VerifierConfig {
            max_concurrent: 1,
            timeout: Duration::from_millis(500),
            ..VerifierConfig::default()
        };
        let (verifier, server) = silent(config).await;
        let first = {
            let verifier = verifier.clone();
            tokio::spawn(async move {
                verifier
                    .verify("192.0.2.1".parse().unwrap(), GOOGLEBOT_UA)
                    .await
            })
        };
        while verifier.stats().lookups == 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert!(
            !verifier
                .verify("192.0.2.2".parse().unwrap(), GOOGLEBOT_UA)
                .await
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        let stats = verifier.stats();
        assert_eq!((stats.lookups, stats.shed), (1, 1));
        // The shed claim was not cached: it was never checked.
        assert_eq!(
            verifier.cached("192.0.2.2".parse().unwrap(), GOOGLEBOT_UA),
            None
        );
        assert!(!first.await.unwrap());
        // Only the first verification's PTR query (and its retry) reached the server.
        let mut buf = [0u8; 512];
        let mut names = Vec::new();
        while let Ok((len, _)) = server.try_recv_from(&mut buf) {
            names.push(buf[..len].to_vec());
        }
        assert!(!names.is_empty() && names.len() <= 2, "{}", names.len());
        let expected = crate::wire::reverse_name("192.0.2.1".parse().unwrap());
        let first_label = expected.split('.').next().unwrap();
        assert!(names
            .iter()
            .all(|q| q[13..13 + first_label.len()] == *first_label.as_bytes()));
    }

    #[test]
    fn ttls_and_bounded_cache() {
        let resolver = Resolver::new("127.0.0.1:9".parse().unwrap());
        let config = VerifierConfig {
            max_entries: 20,
            ..VerifierConfig::default()
        };
        let verifier = GoodBotVerifier::new(resolver, config);
        let inner = &verifier.inner;
        let t0 = Instant::now();
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        inner.store((ip(0), 0), true, inner.config.positive_ttl, t0);
        inner.store((ip(1), 0), false, inner.config.negative_ttl, t0);
        let hour = Duration::from_secs(3600);
        assert_eq!(inner.cached((ip(0), 0), t0 + 23 * hour), Some(true));
        assert_eq!(inner.cached((ip(0), 0), t0 + 25 * hour), None);
        assert_eq!(inner.cached((ip(1), 0), t0 + hour / 2), Some(false));
        assert_eq!(inner.cached((ip(1), 0), t0 + 2 * hour), None);

        // Fill up with live entries, inserted one second apart.
        for i in 2..20 {
            inner.store(
                (ip(i), 0),
                false,
                hour,
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        assert_eq!(verifier.stats().cached, 20);
        // Full: the oldest tenth (2 entries, inserted at t0) makes room.
        let t1 = t0 + Duration::from_secs(100);
        inner.store((ip(100), 0), true, hour, t1);
        assert_eq!(verifier.stats().cached, 19);
        assert_eq!(inner.cached((ip(0), 0), t1), None);
        assert_eq!(inner.cached((ip(1), 0), t1), None);
        assert_eq!(inner.cached((ip(2), 0), t1), Some(false));
        assert_eq!(inner.cached((ip(100), 0), t1), Some(true));
        // Once the negatives have expired, a full cache sheds them first.
        inner.store((ip(101), 0), true, hour, t1);
        let t2 = t0 + 2 * hour;
        inner.store((ip(102), 0), true, hour, t2);
        assert_eq!(verifier.stats().cached, 1);
        assert_eq!(inner.cached((ip(102), 0), t2), Some(true));
        // Overwriting an existing key never evicts.
        inner.store((ip(102), 0), false, hour, t2);
        assert_eq!(inner.cached((ip(102), 0), t2), Some(false));
    }
}

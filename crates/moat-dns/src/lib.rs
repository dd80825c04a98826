//! Verified good bots by forward-confirmed reverse DNS (fcrDNS).
//!
//! Moat's browser proof stops scripts, but search-engine crawlers are scripts too, and a site
//! that challenges them drops out of search results. Exempting every request whose User-Agent
//! says "Googlebot" would hand every scraper the exemption, since the header is free to set.
//! What an impostor cannot fake is DNS it does not control: Google, Bing and the other big
//! operators document that their crawler addresses have PTR names in their own zones which
//! resolve back to the same address. [`GoodBotVerifier`] runs that check and caches the verdict.
//!
//! The check carries its own small DNS client instead of a resolver library: three record types
//! over UDP to the host's recursive resolver is all it needs, and a strict, I/O-free parser
//! ([`wire`]) for bytes from the network is easier to audit and test than a general one.
//!
//! Outbound connections to host names are another matter: they need search domains,
//! `/etc/hosts`, several nameservers, TCP for large answers and a cache, and they must not go
//! through libc's NSS, which a static binary cannot use. [`host`] does those lookups with
//! hickory-resolver and is the one place that reads the host's DNS configuration.
//!
//! ```no_run
//! use moat_dns::{GoodBotVerifier, Resolver, VerifierConfig};
//! # async fn demo() {
//! let resolver = Resolver::new("127.0.0.1:53".parse().unwrap()); // or Resolver::from_system()
//! let verifier = GoodBotVerifier::new(resolver, VerifierConfig::default());
//! let ip = "66.249.66.1".parse().unwrap();
//! let ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
//! let good = match verifier.cached(ip, ua) {
//!     Some(known) => known,
//!     None => verifier.verify(ip, ua).await,
//! };
//! # let _ = good;
//! # }
//! ```

mod goodbots;
pub mod host;
mod resolver;
pub mod wire;

pub use goodbots::{
    name_allowed, CatalogueError, GoodBot, GoodBotVerifier, GoodBots, VerifierConfig,
    VerifierStats, BUILTIN_GOOD_BOTS,
};
pub use host::{connect_tcp, HostError, HostResolver, SystemDns};
pub use resolver::{ResolveError, Resolver};

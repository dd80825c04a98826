//! Cohorts: which groups of clients confirm the mails they ask an app to send.
//!
//! A sign-in form that mails a link (Ghost's magic link) has a signal no rate limit sees: a
//! person who asks for the link clicks it, a script validating a stolen list never does. Moat
//! sees both halves, the send (`POST /members/api/send-magic-link/`, answered 201) and the
//! click (`GET /members/?token=…`, answered with the app's session cookie), but cannot join
//! one send to its click: the token is the app's secret. So it counts per *cohort*, a group of
//! clients that look alike, and asks how many of a cohort's sends are ever followed by a click.
//!
//! A cohort is the network that announces the client (its autonomous system when an IP-to-ASN
//! table is configured, else its /16 or IPv6 /32) together with its exact user agent and
//! `Accept-Language`. These are what one browser sends alike on the form's `fetch()` and on
//! the link's navigation, while its header order and `Sec-Fetch-*` differ between the two; and
//! what a script that rotates addresses keeps constant. A script copying a browser's user
//! agent and language still lands in its own provider's cohort, apart from the people on
//! residential networks who use that browser.
//!
//! A cohort's standing is one of:
//! - **confirmed**: it has clicked (one click, however faded, at least half counts), and at
//!   least `confirmed_ratio` of its settled sends;
//! - **silent**: `silent_after` settled sends or more, and fewer than `silent_ratio` clicked;
//! - **unknown**: anything else, a new cohort above all.
//!
//! Clicks lag sends (the mail takes a minute, the person reads it later), so a send is *settled*
//! only once its cohort's current `lag` window has passed; until then it neither counts
//! against the cohort nor for it. Counts halve every `half_life`, so a cohort's standing
//! follows what it does now: a network that turns hostile loses its confirmation, one that
//! stops attacking is forgiven.
//!
//! The rules read the standing as `moat.cohort`, and rate limits can count by `key = "cohort"`;
//! the ghost preset spends its limits on silent cohorts first and keeps a share of the route's
//! budget that only confirmed cohorts may use.
//!
//! Memory: an entry is 32 bytes in a sharded map (74 MB for a million with the map's own
//! overhead, BENCHMARKS.md); `max_cohorts` bounds the table, and a full
//! shard first forgets the cohorts whose standing is just "unknown" (forgetting them changes
//! nothing), then the longest idle.
//!
//! What was learned outlives a restart: [`Cohorts::export`] writes the table (and the key its
//! cohorts are hashed under) as bytes the HTTP sensor keeps in the state directory, and
//! [`Cohorts::import`] reads them back; a deploy does not make every network a stranger.

use crate::sharded::{Sharded, Table as Shard, SHARDS};
use moat_config::CohortSettings;
use moat_core::{prefix_of, PrefixLens};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::IpAddr;

/// The first bytes of an exported table.
const MAGIC: &[u8; 8] = b"MOATCOH1";
/// An exported entry: key, sends, clicks, pending, pending_since, updated.
const RECORD: usize = 8 + 4 + 4 + 4 + 4 + 4;

/// Bytes that are not an exported cohort table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("not a cohort table (no MOATCOH1 header)")]
    NotATable,
    #[error("cut short: {0} bytes after the last whole entry")]
    Truncated(usize),
}

/// What a cohort's history says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Confirmed,
    Unknown,
    Silent,
}

impl Standing {
    /// The value `moat.cohort` compares with.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Confirmed => "confirmed",
            Standing::Unknown => "unknown",
            Standing::Silent => "silent",
        }
    }
}

/// One cohort's history. Times are seconds since the table's epoch (u32: 136 years).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Entry {
    /// Settled sends and clicks, decayed to `updated`.
    sends: f32,
    clicks: f32,
    /// Sends in the current lag window, not yet settled.
    pending: u32,
    /// When the current lag window began.
    pending_since: u32,
    updated: u32,
}

/// A cohort's counts as of now, for tests, logs and `moat rules test`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub sends: f32,
    pub clicks: f32,
    pub pending: u32,
}

type Table = Shard<Entry>;

/// Every cohort's history, shared by all of the proxy's threads and kept across reloads.
pub struct Cohorts {
    shards: Sharded<Entry>,
    /// Keys are SipHash-1-3 under a random key, kept with the exported table: a client cannot
    /// aim its user agent at another cohort's slot, nor make the map's probes collide.
    key: [u8; 16],
    settings: CohortSettings,
    cap_per_shard: usize,
}

impl Cohorts {
    pub fn new(settings: CohortSettings) -> Self {
        Cohorts {
            shards: Sharded::new(),
            key: {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
                k[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
                k
            },
            // An eighth over the even share: keys do not spread exactly evenly, and a table
            // sized for a million should hold a million.
            cap_per_shard: (settings.max_cohorts / SHARDS + settings.max_cohorts / SHARDS / 8)
                .max(4),
            settings,
        }
    }

    /// The table for a reloaded config: the history moves over (requests still in flight
    /// on the old one count there, a few at most), the new settings apply from now on. A
    /// changed grouping (another ASN table, other prefix lengths) makes new keys, and the old
    /// entries then fade out like any idle cohort.
    pub fn reloaded(&self, settings: CohortSettings) -> Cohorts {
        let next = Cohorts {
            key: self.key,
            ..Cohorts::new(settings)
        };
        for (mut old, mut new) in self.shards.each().zip(next.shards.each()) {
            *new = std::mem::take(&mut *old);
        }
        next
    }

    pub fn settings(&self) -> &CohortSettings {
        &self.settings
    }

    /// The cohort of a client at `ip` sending `user_agent` and `accept_language`.
    pub fn key(&self, ip: IpAddr, user_agent: &[u8], accept_language: &[u8]) -> u64 {
        let ip = ip.to_canonical();
        let s = &self.settings;
        let mut network = [0u8; 18];
        match s.asn_table.as_ref().and_then(|t| t.lookup(ip)) {
            Some(asn) => {
                network[0] = b'a';
                network[1..5].copy_from_slice(&asn.to_be_bytes());
            }
            None => {
                let lens = PrefixLens {
                    v4: s.prefix_v4,
                    v6: s.prefix_v6,
                };
                network[0] = b'p';
                match prefix_of(ip, lens).network() {
                    IpAddr::V4(a) => network[1..5].copy_from_slice(&a.octets()),
                    IpAddr::V6(a) => network[1..17].copy_from_slice(&a.octets()),
                }
            }
        }
        // Lengths go in first so no two different triples hash the same bytes; every byte is
        // written explicitly, so a key means the same after an upgrade.
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(&network);
        h.write(&(user_agent.len() as u64).to_le_bytes());
        h.write(user_agent);
        h.write(&(accept_language.len() as u64).to_le_bytes());
        h.write(accept_language);
        h.finish()
    }

    /// The table as bytes: a header with the hashing key, then one fixed-size record per
    /// cohort worth keeping (one that is only "unknown" is left out: forgetting it changes
    /// nothing). For the state directory; see [`Cohorts::import`].
    pub fn export(&self, now: u64) -> Vec<u8> {
        let now = secs(now);
        let mut out = Vec::with_capacity(24 + self.len() * RECORD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.key);
        for t in self.shards.each() {
            for (k, e) in t.iter() {
                let mut e = *e;
                self.age(&mut e, now);
                if e.pending == 0 && self.judge(counts(&e)) == Standing::Unknown {
                    continue;
                }
                out.extend_from_slice(&k.to_le_bytes());
                out.extend_from_slice(&e.sends.to_le_bytes());
                out.extend_from_slice(&e.clicks.to_le_bytes());
                out.extend_from_slice(&e.pending.to_le_bytes());
                out.extend_from_slice(&e.pending_since.to_le_bytes());
                out.extend_from_slice(&e.updated.to_le_bytes());
            }
        }
        out
    }

    /// A table from [`Cohorts::export`]'s bytes, under `settings`. Entries whose counts make
    /// no sense (not finite, below zero) are dropped; a table cut short keeps its whole entries
    /// and says how much was lost.
    pub fn import(
        settings: CohortSettings,
        bytes: &[u8],
        now: u64,
    ) -> (Cohorts, Result<usize, ImportError>) {
        let mut c = Cohorts::new(settings);
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return (c, Err(ImportError::NotATable));
        };
        let Some((key, records)) = rest.split_first_chunk::<16>() else {
            return (c, Err(ImportError::NotATable));
        };
        c.key = *key;
        let now = secs(now);
        let mut kept = 0;
        let mut chunks = records.chunks_exact(RECORD);
        for r in &mut chunks {
            let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            let f32_at = |i: usize| f32::from_bits(u32_at(i));
            let mut k = [0u8; 8];
            k.copy_from_slice(&r[..8]);
            // A clock set back since the export makes its times the future: they are taken
            // as now rather than the history thrown away.
            let e = Entry {
                sends: f32_at(8),
                clicks: f32_at(12),
                pending: u32_at(16),
                pending_since: u32_at(20).min(now),
                updated: u32_at(24).min(now),
            };
            let sane = |x: f32| x.is_finite() && x >= 0.0;
            if !sane(e.sends) || !sane(e.clicks) {
                continue;
            }
            let key = u64::from_le_bytes(k);
            let mut t = c.shards.lock(key);
            if t.len() < c.cap_per_shard {
                t.insert(key, e);
                kept += 1;
            }
        }
        let left = chunks.remainder().len();
        (
            c,
            if left == 0 {
                Ok(kept)
            } else {
                Err(ImportError::Truncated(left))
            },
        )
    }

    /// The standing of cohort `key` at `now` (seconds on the caller's clock).
    pub fn standing(&self, key: u64, now: u64) -> Standing {
        match self.counts(key, now) {
            Some(c) => self.judge(c),
            None => Standing::Unknown,
        }
    }

    fn judge(&self, c: Counts) -> Standing {
        let s = &self.settings;
        if c.clicks >= 0.5 && c.clicks >= s.confirmed_ratio * c.sends {
            Standing::Confirmed
        } else if c.sends >= s.silent_after as f32 && c.clicks < s.silent_ratio * c.sends {
            Standing::Silent
        } else {
            Standing::Unknown
        }
    }

    /// Cohort `key`'s counts at `now`, if it has any history.
    pub fn counts(&self, key: u64, now: u64) -> Option<Counts> {
        let now = secs(now);
        let t = self.shards.lock(key);
        let mut e = *t.get(&key)?;
        drop(t);
        self.age(&mut e, now);
        Some(counts(&e))
    }

    /// The app accepted a send from cohort `key`.
    pub fn sent(&self, key: u64, now: u64) {
        self.update(key, now, |e, now| {
            if e.pending == 0 {
                e.pending_since = now;
            }
            e.pending = e.pending.saturating_add(1);
        });
    }

    /// A client of cohort `key` followed a link the app had mailed (the app said so by
    /// answering with its session).
    pub fn clicked(&self, key: u64, now: u64) {
        self.update(key, now, |e, _| e.clicks += 1.0);
    }

    fn update(&self, key: u64, now: u64, f: impl FnOnce(&mut Entry, u32)) {
        let now = secs(now);
        let mut t = self.shards.lock(key);
        if t.len() >= self.cap_per_shard && !t.contains_key(&key) {
            self.evict(&mut t, now);
        }
        let e = t.entry(key).or_insert(Entry {
            updated: now,
            ..Entry::default()
        });
        self.age(e, now);
        f(e, now);
    }

    /// Brings an entry to `now`: a lag window that has passed settles its sends, and the
    /// settled counts decay by the half-life.
    fn age(&self, e: &mut Entry, now: u32) {
        let s = &self.settings;
        let half_life = s.half_life.as_secs().max(1) as f32;
        let fade = |secs: u32| (-(secs as f32 / half_life) * std::f32::consts::LN_2).exp();
        let elapsed = now.saturating_sub(e.updated);
        if elapsed > 0 {
            let k = fade(elapsed);
            e.sends *= k;
            e.clicks *= k;
            e.updated = now;
        }
        // Times are whole seconds, so the window began up to a second before `pending_since`
        // says: the extra second makes sure a full `lag` has passed (a send made a moment
        // before a second turns must not settle a moment later).
        let lag = u32::try_from(s.lag.as_secs()).unwrap_or(u32::MAX);
        let settled_at = e.pending_since.saturating_add(lag).saturating_add(1);
        if e.pending > 0 && now >= settled_at {
            // Settled when the window closed, and faded since.
            e.sends += e.pending as f32 * fade(now - settled_at);
            e.pending = 0;
        }
    }

    /// Makes room in a full shard: cohorts whose history makes them no different from a new
    /// one go first (one-off senders still in their lag window among them: a flood of those
    /// must not push out what was learned); if that is not enough, the eighth idle longest.
    fn evict(&self, t: &mut Table, now: u32) {
        t.retain(|_, e| {
            let mut e = *e;
            self.age(&mut e, now);
            self.judge(counts(&e)) != Standing::Unknown
        });
        let target = self.cap_per_shard - self.cap_per_shard / 8;
        if t.len() > target {
            let excess = t.len() - target;
            let mut by_age: Vec<(u32, u64)> = t.iter().map(|(k, e)| (e.updated, *k)).collect();
            by_age.select_nth_unstable(excess - 1);
            for (_, k) in &by_age[..excess] {
                t.remove(k);
            }
        }
    }

    /// Cohorts tracked (a metric, and the memory benchmark's count).
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn counts(e: &Entry) -> Counts {
    Counts {
        sends: e.sends,
        clicks: e.clicks,
        pending: e.pending,
    }
}

fn secs(now: u64) -> u32 {
    now.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> CohortSettings {
        CohortSettings {
            lag: Duration::from_secs(600),
            ..CohortSettings::default()
        }
    }

    const CHROME: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0";

    #[test]
    fn a_cohort_is_network_user_agent_and_language() {
        let c = Cohorts::new(settings());
        let k = |ip: &str, ua: &[u8], lang: &[u8]| c.key(ip.parse().unwrap(), ua, lang);
        let base = k("203.0.113.5", CHROME, b"en-US");
        assert_eq!(base, k("203.0.9.77", CHROME, b"en-US"), "same /16");
        assert_ne!(base, k("203.1.113.5", CHROME, b"en-US"), "another /16");
        assert_ne!(base, k("203.0.113.5", b"curl/8", b"en-US"));
        assert_ne!(base, k("203.0.113.5", CHROME, b"de-DE"));
        assert_ne!(k("1.2.3.4", b"ab", b"c"), k("1.2.3.4", b"a", b"bc"));
        assert_eq!(
            k("2001:db8:1::1", CHROME, b""),
            k("2001:db8:ffff::2", CHROME, b""),
            "same IPv6 /32"
        );
    }

    #[test]
    fn the_announcing_network_groups_when_a_table_is_given() {
        let table = moat_core::AsnTable::parse(
            "198.51.100.0\t198.51.100.255\t64500\tZZ\tFARM\n\
             203.0.113.0\t203.0.113.255\t64500\tZZ\tFARM\n",
        )
        .unwrap();
        let c = Cohorts::new(CohortSettings {
            asn_table: Some(std::sync::Arc::new(table)),
            ..settings()
        });
        let k = |ip: &str| c.key(ip.parse().unwrap(), CHROME, b"en");
        assert_eq!(k("198.51.100.1"), k("203.0.113.200"), "one AS, two /16s");
        assert_ne!(
            k("198.51.100.1"),
            k("198.51.7.1"),
            "outside the table: by /16"
        );
    }

    #[test]
    fn clicks_confirm_and_silence_is_learned_after_the_lag() {
        let c = Cohorts::new(settings());
        let (people, farm, fresh) = (1, 2, 3);
        let mut now = 1_000_000;
        assert_eq!(c.standing(fresh, now), Standing::Unknown);
        for _ in 0..50 {
            c.sent(farm, now);
            now += 1;
        }
        assert_eq!(
            c.standing(farm, now),
            Standing::Unknown,
            "sends still in their lag window count for nothing yet"
        );
        c.sent(people, now);
        c.clicked(people, now + 60);
        now += 601;
        assert_eq!(
            c.standing(farm, now),
            Standing::Silent,
            "50 sends, no click"
        );
        assert_eq!(c.standing(people, now), Standing::Confirmed);
        assert_eq!(c.standing(fresh, now), Standing::Unknown);
        // A cohort that clicks too seldom is not confirmed by one click.
        c.clicked(farm, now);
        assert_eq!(c.standing(farm, now), Standing::Silent, "1 click in 50");
        for _ in 0..4 {
            c.clicked(farm, now);
        }
        assert_eq!(c.standing(farm, now), Standing::Unknown, "5 in 50");
        for _ in 0..16 {
            c.clicked(farm, now);
        }
        assert_eq!(c.standing(farm, now), Standing::Confirmed, "21 in 50");
    }

    #[test]
    fn a_send_waits_a_whole_lag_though_times_are_whole_seconds() {
        let c = Cohorts::new(settings());
        let lag = settings().lag.as_secs();
        let start = 1_000;
        for _ in 0..50 {
            c.sent(9, start);
        }
        // Made at start + 0.999 s, say: at start + lag the full lag may not have passed.
        assert_eq!(c.counts(9, start + lag).unwrap().pending, 50);
        assert_eq!(c.standing(9, start + lag), Standing::Unknown);
        assert_eq!(c.standing(9, start + lag + 1), Standing::Silent);
    }

    #[test]
    fn history_fades_by_the_half_life() {
        let c = Cohorts::new(settings());
        let day = 86_400;
        let mut now = 10 * day;
        for _ in 0..12 {
            c.sent(7, now);
        }
        now += 601;
        assert_eq!(c.standing(7, now), Standing::Silent);
        let half = settings().half_life.as_secs();
        // Settled 601 s after the first send, so faded for half - 1 s by then.
        let n = c.counts(7, now - 1 + half).unwrap();
        assert!((n.sends - 6.0).abs() < 0.01, "{n:?}");
        assert_eq!(c.standing(7, now + half), Standing::Unknown, "forgiven");
    }

    #[test]
    fn what_was_learned_survives_an_export_and_import() {
        let c = Cohorts::new(settings());
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let (people, farm, passing) = (
            c.key(ip, CHROME, b"en"),
            c.key(ip, b"farm", b"en"),
            c.key(ip, b"once", b"en"),
        );
        let now = 50_000;
        c.sent(people, now);
        c.clicked(people, now + 5);
        for _ in 0..20 {
            c.sent(farm, now);
        }
        c.sent(passing, now + 700);
        let later = now + 800;
        let bytes = c.export(later);
        let (d, n) = Cohorts::import(settings(), &bytes, later);
        assert_eq!(n, Ok(3), "the pending send is kept too");
        assert_eq!(
            d.key(ip, CHROME, b"en"),
            people,
            "the same key after a restart"
        );
        assert_eq!(d.standing(people, later), Standing::Confirmed);
        assert_eq!(d.standing(farm, later), Standing::Silent);
        assert_eq!(d.counts(passing, later).map(|c| c.pending), Some(1));

        // Bytes that are not a table, or cut short, or hold nonsense, never panic.
        assert_eq!(
            Cohorts::import(settings(), b"garbage", later).1,
            Err(ImportError::NotATable)
        );
        let cut = &bytes[..bytes.len() - 5];
        assert_eq!(
            Cohorts::import(settings(), cut, later).1,
            Err(ImportError::Truncated(RECORD - 5))
        );
        let mut bad = bytes.clone();
        bad[24 + 8..24 + 12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(Cohorts::import(settings(), &bad, later).1, Ok(2));
        let (e, n) = Cohorts::import(settings(), &bytes, now);
        assert_eq!(n, Ok(3), "a clock set back keeps the history");
        assert_eq!(e.standing(farm, now + 1000), Standing::Silent);
    }

    #[test]
    fn a_full_table_forgets_the_unremarkable_first() {
        let c = Cohorts::new(CohortSettings {
            max_cohorts: SHARDS * 8,
            ..settings()
        });
        let now = 5_000;
        // Keys spread over every shard: the shard is the key's top six bits.
        let key = |i: u64| (i % SHARDS as u64) << 58 | i;
        for i in 0..SHARDS as u64 {
            for _ in 0..12 {
                c.sent(key(i), now);
            }
        }
        for i in SHARDS as u64..SHARDS as u64 * 200 {
            c.sent(key(i), now + 700);
        }
        assert!(c.len() <= SHARDS * 8, "{}", c.len());
        for i in 0..SHARDS as u64 {
            assert_eq!(
                c.standing(key(i), now + 700),
                Standing::Silent,
                "a silent cohort outlives a flood of one-off senders"
            );
        }
    }
}

//! Publishes this instance's feed: every `[feed] interval`, what its own detectors banned and
//! what its quarantine's captures were asked to spread, diffed against what is published, into
//! `state_dir/feed/` (files first, then the head, each written atomically), which the HTTP
//! front door serves as it is.
//!
//! Only this instance's own detections go out: no manual ban (an operator's reasons are
//! theirs), nothing a feed brought in (no circular reporting), no address outside the public
//! internet. Reasons are not published, since they may name a login.

use moat_core::{Decision, Origin, Scope, Verdict};
use moat_engine::Engine;
use moat_feed::indicator::{canonical, url_hash};
use moat_feed::{Head, Indicator, Kind, Publisher, SignerKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A captured domain or URL stays published this long after the last capture carrying it.
const CAPTURE_TTL: u64 = 7 * 86_400;
/// The quarantine is summarised this often (a GROUP BY over every indicator).
const QUARANTINE_EVERY: Duration = Duration::from_secs(10);
/// At most this many captured domains and URLs each, the most recent first.
const MAX_CAPTURED: usize = 10_000;
/// A ban without an end is published as lasting this long from when it was made.
const UNTIL_REMOVED: u64 = 30 * 86_400;
/// Files no head names any more are deleted after this (a subscriber that read the previous
/// head a moment ago still finds its files).
const KEEP_UNREFERENCED: Duration = Duration::from_secs(3600);

pub struct FeedPublisher {
    dir: PathBuf,
    republish: bool,
    publisher: Publisher,
    quarantine: Option<PathBuf>,
    captured: Vec<Indicator>,
    captured_at: Option<Instant>,
    /// The guard's snapshot last published from: the same one (the decider swaps in a new
    /// one for every change) with the same captures means the same feed, so a round skips
    /// turning a million bans into indicators again.
    last_guard: Option<Arc<moat_engine::GuardSnapshot>>,
}

impl FeedPublisher {
    /// Continues from the head already on disk when it is this key's.
    pub fn new(
        state_dir: &Path,
        key: SignerKey,
        lifetime: Duration,
        quarantine: Option<PathBuf>,
        republish: bool,
    ) -> FeedPublisher {
        let dir = state_dir.join(moat_feed::DIR);
        let previous = std::fs::read_to_string(dir.join(moat_feed::HEAD_FILE))
            .ok()
            .and_then(|note| {
                let text = key.verifier().open(&note).ok()?.to_string();
                Head::parse(&text).ok()
            });
        FeedPublisher {
            dir,
            republish,
            publisher: Publisher::new(key, previous, lifetime.as_secs()),
            quarantine,
            captured: Vec::new(),
            captured_at: None,
            last_guard: None,
        }
    }

    /// One round: publishes what changed; returns whether a new head was written.
    pub fn round(&mut self, engine: &Engine) -> anyhow::Result<bool> {
        let now = engine.now_ms() / 1000;
        let mut captures_changed = false;
        if self
            .captured_at
            .is_none_or(|t| t.elapsed() >= QUARANTINE_EVERY)
        {
            self.captured_at = Some(Instant::now());
            if let Some(q) = &self.quarantine {
                match captured(q, now) {
                    Ok(c) => {
                        captures_changed = c != self.captured;
                        self.captured = c;
                    }
                    Err(e) => tracing::debug!(error = %e, "feed: cannot read the quarantine yet"),
                }
            }
        }
        let guard = engine.snapshot();
        let same = self
            .last_guard
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(g, &guard));
        if same && !captures_changed && !self.publisher.due(now) {
            return Ok(false);
        }
        let mut current: Vec<Indicator> = guard
            .bans()
            .filter_map(|d| ban_indicator(d, now, self.republish))
            .collect();
        current.extend(self.captured.iter().cloned());
        let Some(out) = self.publisher.update(current, now) else {
            self.last_guard = Some(guard);
            return Ok(false);
        };
        let by_hash = self.dir.join(moat_feed::BY_HASH_DIR);
        std::fs::create_dir_all(&by_hash)?;
        for (sha, bytes) in &out.files {
            moat_http::state_file::write_atomic(&by_hash.join(sha), bytes, 0o644)?;
        }
        moat_http::state_file::write_atomic(
            &self.dir.join(moat_feed::HEAD_FILE),
            out.head.as_bytes(),
            0o644,
        )?;
        prune(&by_hash, &out.referenced);
        self.last_guard = Some(guard);
        Ok(true)
    }
}

/// A ban as an indicator, if it may be published: this instance's own findings, and on a hub
/// (`republish`) what its followed feeds' consensus banned.
fn ban_indicator(d: &Decision, now: u64, republish: bool) -> Option<Indicator> {
    let consensus = matches!(&d.origin, Origin::Feed(_)) && republish;
    if d.verdict != Verdict::Ban || !(d.origin.is_own_detection() || consensus) {
        return None;
    }
    let (kind, addr, text) = match &d.scope {
        Scope::Ip(ip) => (Kind::Ip, *ip, ip.to_string()),
        Scope::Prefix(n) => (Kind::Prefix, n.network(), n.to_string()),
    };
    if !moat_report::http::is_public(addr) {
        return None;
    }
    let value = canonical(kind, &text).ok()?;
    let made = d.created_ms / 1000;
    let expires = d.expires_ms.map_or(made + UNTIL_REMOVED, |e| e / 1000);
    if expires <= now {
        return None;
    }
    let detector = match &d.origin {
        Origin::Feed(peers) => format!("consensus:{}", peers.split(',').count()),
        other => other.to_string(),
    };
    let detector: String = detector
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    Some(Indicator {
        kind,
        value,
        detector,
        count: u64::from(d.offences.max(1)),
        first_seen: made,
        last_seen: made,
        expires,
    })
}

/// The domains and URLs (hashed) the quarantine's captures carried.
fn captured(quarantine: &Path, now: u64) -> anyhow::Result<Vec<Indicator>> {
    use moat_trap::quarantine::{index, index_path};
    let c = index::open_read(&index_path(quarantine))?;
    let mut out = Vec::new();
    for (ioc_kind, kind) in [("domain", Kind::Domain), ("url", Kind::UrlSha256)] {
        let mut rows = index::ioc_summary(&c, Some(ioc_kind))?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_ms));
        for r in rows.into_iter().take(MAX_CAPTURED) {
            let value = match kind {
                Kind::UrlSha256 => url_hash(&r.value),
                _ => match canonical(kind, &r.value) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            let last = (r.last_ms.max(0) as u64) / 1000;
            let expires = last + CAPTURE_TTL;
            if expires <= now {
                continue;
            }
            out.push(Indicator {
                kind,
                value,
                detector: "trap".into(),
                count: r.messages.max(1) as u64,
                first_seen: (r.first_ms.max(0) as u64) / 1000,
                last_seen: last,
                expires,
            });
        }
    }
    Ok(out)
}

/// Deletes the files no head names, once they are old enough.
fn prune(by_hash: &Path, referenced: &[String]) {
    let Ok(entries) = std::fs::read_dir(by_hash) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if referenced.contains(&name) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= KEEP_UNREFERENCED);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Publishes every `interval` until `stop`.
pub async fn run(
    mut publisher: FeedPublisher,
    engine: Arc<Engine>,
    interval: Duration,
    stop: moat_listen::Shutdown,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let engine = engine.clone();
        let (p, result) = match tokio::task::spawn_blocking(move || {
            let r = publisher.round(&engine);
            (publisher, r)
        })
        .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "feed publisher stopped");
                return;
            }
        };
        publisher = p;
        match result {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %format!("{e:#}"), "cannot publish the feed (retrying)");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::ManualClock;

    /// A round with nothing new (the same guard snapshot, the same captures, the head not due
    /// for re-signing) writes nothing and does not rebuild the feed; a new ban does.
    #[test]
    fn a_round_with_nothing_new_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(
            Arc::new(moat_store::MemoryStore::new()),
            Arc::new(ManualClock::new(1_800_000_000_000)),
            moat_config::Bans {
                base_ttl: Duration::from_secs(60),
                max_ttl: Duration::from_secs(600),
                factor: 2,
                offences_to_ban: 3,
                offence_window: Duration::from_secs(60),
                prefix_threshold: 3,
                prefix_window: Duration::from_secs(600),
                status: 403,
                body: String::new(),
                allow: vec![],
            },
            moat_core::PrefixLens::default(),
        );
        let key = SignerKey::generate("moat.test").unwrap();
        let mut p = FeedPublisher::new(dir.path(), key, Duration::from_secs(3600), None, false);
        let ban = |ip: &str| {
            engine.ban(
                Scope::parse(ip).unwrap(),
                Some(Duration::from_secs(600)),
                "t",
                Origin::Rule("signup".into()),
            );
            engine.flush();
        };
        ban("8.8.4.4");
        assert!(p.round(&engine).unwrap(), "the first round publishes");
        let head = dir.path().join(moat_feed::DIR).join(moat_feed::HEAD_FILE);
        let written = std::fs::metadata(&head).unwrap().modified().unwrap();
        assert!(!p.round(&engine).unwrap());
        assert!(!p.round(&engine).unwrap());
        assert_eq!(
            std::fs::metadata(&head).unwrap().modified().unwrap(),
            written
        );
        ban("9.9.9.9");
        assert!(p.round(&engine).unwrap(), "a new ban is published");
        let text = std::fs::read_to_string(&head).unwrap();
        assert!(text.contains("moat.test"), "{text}");
        engine.shutdown();
    }
}

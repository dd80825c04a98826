//! What the feeds keep in the state directory, shared by `moat run` and the `moat keys` and
//! `moat feeds` commands:
//!
//! - `feed.key`: this instance's signing key, 0600, made at first start or by `moat keys new`;
//! - `feed/head`, `feed/by-hash/SHA256`: what it publishes (served as they are);
//! - `feeds/subscriptions.json`: the subscriptions `moat feeds add` made (beside the config's);
//! - `feeds/NAME.json`: each peer's verified view and how its last poll went, so a restart
//!   still refuses a rollback below what was seen, and `moat feeds list|view` can read it.

use anyhow::Context;
use moat_config::model::Subscription;
use moat_feed::{PeerView, SignerKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(moat_feed::KEY_FILE)
}

pub fn feeds_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feeds")
}

/// The host name, as a key name: what a feed is called when `[feed] name` is not set.
pub fn default_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if name.is_empty() {
        "moat".into()
    } else {
        name
    }
}

/// Reads the signing key; a file that is there but unreadable is an error naming it (a new key
/// would silently break every subscriber's pin).
pub fn read_key(state_dir: &Path) -> anyhow::Result<Option<SignerKey>> {
    let path = key_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => SignerKey::parse(&text)
            .map(Some)
            .with_context(|| format!("{}: not a Moat feed key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a new key, 0600 from creation.
pub fn write_key(state_dir: &Path, key: &SignerKey) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let path = key_path(state_dir);
    moat_http::state_file::write_atomic(&path, key.to_secret_text().as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

/// The key, made (and logged) at first start.
pub fn load_or_create_key(state_dir: &Path, name: Option<&str>) -> anyhow::Result<SignerKey> {
    if let Some(k) = read_key(state_dir)? {
        if let Some(want) = name.filter(|n| *n != k.name()) {
            tracing::warn!(key = k.name(), config = want, "[feed] name differs from the key's name; the key's is used (`moat keys new --name` makes a new key, and every subscriber must pin it again)");
        }
        return Ok(k);
    }
    let key = SignerKey::generate(name.unwrap_or(&default_name()))?;
    write_key(state_dir, &key)?;
    tracing::info!(path = %key_path(state_dir).display(), key = %key.verifier(), "made this instance's feed key; peers pin the key shown");
    Ok(key)
}

/// A subscription as `moat feeds add` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredSubscription {
    pub name: String,
    pub url: String,
    pub key: String,
    pub weight: f64,
}

fn subscriptions_path(state_dir: &Path) -> PathBuf {
    feeds_dir(state_dir).join("subscriptions.json")
}

pub fn read_stored(state_dir: &Path) -> anyhow::Result<Vec<StoredSubscription>> {
    let path = subscriptions_path(state_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn write_stored(state_dir: &Path, subs: &[StoredSubscription]) -> anyhow::Result<()> {
    let dir = feeds_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = subscriptions_path(state_dir);
    let mut text = serde_json::to_vec_pretty(subs)?;
    text.push(b'\n');
    moat_http::state_file::write_atomic(&path, &text, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

/// The config's subscriptions and `moat feeds add`'s (a name in both: the config's). A stored
/// entry that no longer parses is logged and skipped.
pub fn subscriptions(cfg: &moat_config::Config) -> Vec<Subscription> {
    let mut all = cfg.feeds.subscribe.clone();
    let stored = read_stored(&cfg.server.state_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "cannot read the feeds added by `moat feeds add`");
        Vec::new()
    });
    for s in stored {
        if all.iter().any(|x| x.name == s.name) {
            continue;
        }
        match s.key.parse() {
            Ok(key) => all.push(Subscription {
                name: s.name,
                url: s.url,
                key,
                weight: s.weight,
            }),
            Err(e) => tracing::warn!(feed = %s.name, error = %e, "skipping a stored subscription"),
        }
    }
    all
}

/// One peer as kept between polls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerFile {
    pub url: String,
    /// The pinned key; a view kept under another key is started afresh.
    pub key: String,
    pub view: PeerView,
    pub last_poll_ms: u64,
    pub last_ok_ms: u64,
    pub last_error: Option<String>,
    /// How many polls were refused (bad signature, rollback, fork, tampering, expiry).
    pub refused: u64,
}

/// The peers with a saved view, by name: what a running instance followed, whether or not
/// the config at hand names them.
pub fn saved_peers(state_dir: &Path) -> Vec<(String, PeerFile)> {
    let Ok(entries) = std::fs::read_dir(feeds_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PeerFile)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e
                .file_name()
                .to_string_lossy()
                .strip_suffix(".json")?
                .to_string();
            if name == "subscriptions" || !moat_config::model::valid_feed_name(&name) {
                return None;
            }
            Some((name.clone(), read_peer(state_dir, &name)?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn peer_path(state_dir: &Path, name: &str) -> PathBuf {
    feeds_dir(state_dir).join(format!("{name}.json"))
}

pub fn read_peer(state_dir: &Path, name: &str) -> Option<PeerFile> {
    let path = peer_path(state_dir, name);
    let bytes = std::fs::read(&path).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "a feed's saved view is damaged; polling it afresh"))
        .ok()
}

pub fn write_peer(state_dir: &Path, name: &str, p: &PeerFile) -> anyhow::Result<()> {
    let dir = feeds_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = peer_path(state_dir, name);
    moat_http::state_file::write_atomic(&path, &serde_json::to_vec(p)?, 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

//! Follows the subscribed feeds: each peer's head is polled every `[feeds] poll` with
//! `If-None-Match`, checked (`moat_feed::subscribe`), its new files fetched and applied, and
//! its view saved. After any change, the trust policy (`moat_feed::policy`) says which bans the
//! feeds ask for; they are made with origin `feed:PEERS`, extended while the peers keep them,
//! and lifted when the peers drop them. A ban of this instance's own is never replaced.
//!
//! A refused poll (bad signature, rollback, fork, expired head, tampered file) is logged at
//! warn and changes nothing; the view stays at the last good head.

use super::state::{self, PeerFile};
use futures_util::StreamExt;
use moat_config::model::Subscription;
use moat_config::Config;
use moat_core::{Origin, Scope};
use moat_engine::bulk::FeedBan;
use moat_engine::Engine;
use moat_feed::policy::{self, Peer, Policy};
use moat_report::http::{HttpClient, Reach};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// A head is a few hundred bytes; a snapshot of a big feed some tens of MB compressed.
const MAX_FILE_BYTES: usize = 64 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);
/// The policy is applied again this often even when no feed changed (expiries, allowlist).
const REAPPLY: Duration = Duration::from_secs(30);

struct Followed {
    sub: Subscription,
    file: PeerFile,
    /// When `file` was last written (ms).
    saved_ms: u64,
}

/// Peers polled at once: a hub follows hundreds.
const CONCURRENT_POLLS: usize = 32;
/// A view that did not change is written this often, for `moat feeds list`'s poll times.
const SAVE_EVERY_MS: u64 = 10 * 60 * 1000;

pub struct Subscriber {
    cfg: Arc<Config>,
    engine: Arc<Engine>,
    client: Option<HttpClient>,
    peers: BTreeMap<String, Followed>,
    /// Refusals already logged, so a steady one is logged once.
    logged_refusals: HashSet<String>,
}

impl Subscriber {
    pub fn new(cfg: Arc<Config>, engine: Arc<Engine>) -> Subscriber {
        Subscriber {
            cfg,
            engine,
            client: None,
            peers: BTreeMap::new(),
            logged_refusals: HashSet::new(),
        }
    }

    /// Re-reads the subscriptions (config and `moat feeds add`'s): new ones start from their
    /// saved view, removed ones stop counting. True if the set changed.
    fn refresh(&mut self) -> bool {
        let subs = state::subscriptions(&self.cfg);
        let dir = &self.cfg.server.state_dir;
        let names: HashSet<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        let before = self.peers.len();
        self.peers.retain(|n, _| names.contains(n.as_str()));
        let mut changed = self.peers.len() != before;
        for sub in subs {
            let same = self
                .peers
                .get(&sub.name)
                .is_some_and(|f| f.sub.url == sub.url && f.sub.key == sub.key);
            if same {
                if let Some(f) = self.peers.get_mut(&sub.name) {
                    f.sub.weight = sub.weight;
                }
                continue;
            }
            let key = sub.key.to_string();
            let file = state::read_peer(dir, &sub.name)
                .filter(|p| p.key == key && p.url == sub.url)
                .unwrap_or(PeerFile {
                    url: sub.url.clone(),
                    key,
                    ..Default::default()
                });
            tracing::info!(feed = %sub.name, url = %sub.url, "following a feed");
            self.peers.insert(
                sub.name.clone(),
                Followed {
                    sub,
                    file,
                    saved_ms: 0,
                },
            );
            changed = true;
        }
        if changed || self.client.is_none() {
            let urls: Vec<&str> = self.peers.values().map(|f| f.sub.url.as_str()).collect();
            // The operator named these hosts: they may be on a private network.
            self.client = HttpClient::new(
                TIMEOUT,
                MAX_FILE_BYTES,
                concat!("Moat/", env!("CARGO_PKG_VERSION"), " feed"),
                Reach::naming(urls, []),
            )
            .map_err(|e| tracing::error!(error = %e, "no HTTP client for the feeds"))
            .ok();
        }
        changed
    }

    /// Polls the peers that are due, [`CONCURRENT_POLLS`] at a time; true if any view changed.
    async fn poll_due(&mut self) -> bool {
        let Some(client) = self.client.clone() else {
            return false;
        };
        let poll_ms = self.cfg.feeds.poll.as_millis() as u64;
        let now = self.engine.now_ms();
        let due: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, f)| f.file.last_poll_ms + poll_ms <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let taken: Vec<(String, Followed)> = due
            .into_iter()
            .filter_map(|n| self.peers.remove(&n).map(|f| (n, f)))
            .collect();
        let polled: Vec<(String, Followed, Result<bool, PollError>)> =
            futures_util::stream::iter(taken.into_iter().map(|(name, mut f)| {
                let client = client.clone();
                async move {
                    let outcome = poll(&client, &f.sub, &mut f.file, now / 1000).await;
                    (name, f, outcome)
                }
            }))
            .buffer_unordered(CONCURRENT_POLLS)
            .collect()
            .await;
        let mut changed = false;
        let mut to_save = Vec::new();
        for (name, mut f, outcome) in polled {
            f.file.last_poll_ms = self.engine.now_ms();
            let before = f.file.last_error.clone();
            let mut moved = false;
            match outcome {
                Ok(c) => {
                    f.file.last_ok_ms = f.file.last_poll_ms;
                    f.file.last_error = None;
                    moved = c;
                    if f.file.view.is_frozen(f.file.last_poll_ms / 1000) {
                        let why = format!("{name}: frozen");
                        if self.logged_refusals.insert(why) {
                            tracing::warn!(feed = %name, expires = f.file.view.expires, "feed refused: its head expired and was not re-signed (a frozen or replayed feed); its indicators no longer count");
                        }
                        moved = true;
                    }
                }
                Err(PollError::Refused(why)) => {
                    f.file.refused += 1;
                    if self.logged_refusals.insert(format!("{name}: {why}")) {
                        tracing::warn!(feed = %name, url = %f.sub.url, reason = %why, "feed refused");
                    }
                    f.file.last_error = Some(why);
                }
                Err(PollError::Unreachable(why)) => {
                    if f.file.last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(feed = %name, url = %f.sub.url, error = %why, "feed unreachable (retrying)");
                    }
                    f.file.last_error = Some(why);
                }
            }
            changed |= moved;
            // Saved when something changed, and now and then for `moat feeds list`'s times.
            if moved
                || before != f.file.last_error
                || f.file.last_poll_ms >= f.saved_ms + SAVE_EVERY_MS
            {
                f.saved_ms = f.file.last_poll_ms;
                to_save.push((name.clone(), f.file.clone()));
            }
            self.peers.insert(name, f);
        }
        if !to_save.is_empty() {
            let dir = self.cfg.server.state_dir.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for (name, file) in to_save {
                    if let Err(e) = state::write_peer(&dir, &name, &file) {
                        tracing::warn!(feed = %name, error = %format!("{e:#}"), "cannot save a feed's view");
                    }
                }
            })
            .await;
        }
        changed
    }

    /// Makes, extends and lifts the feed bans the policy asks for.
    fn apply_policy(&mut self) {
        let now_ms = self.engine.now_ms();
        let now = now_ms / 1000;
        // The guard's snapshot, read in place: a reapply with a million bans in force copies
        // none of them.
        let snapshot = self.engine.snapshot();
        let feeds = &self.cfg.feeds;
        // The configured allowlist and `moat allow`'s together.
        let allow = snapshot.allowlist().iter().copied();
        let never = feeds.never_block.iter().copied().chain(allow);
        let pol = Policy::new(feeds.quorum, feeds.max_ttl.as_secs(), never);
        let peers: Vec<Peer<'_>> = self
            .peers
            .iter()
            .map(|(n, f)| Peer {
                name: n,
                weight: f.sub.weight,
                view: &f.file.view,
            })
            .collect();
        let (wanted, refused) = policy::decide(&pol, &peers, now);
        for r in refused {
            if self.logged_refusals.insert(format!("policy {}", r.scope)) {
                tracing::info!(scope = %r.scope, peers = %r.peers.join(","), why = %r.why, "a feed's ban is not taken");
            }
        }
        let mut keep: HashSet<Scope> = HashSet::new();
        let (mut bans, mut lifts) = (Vec::new(), Vec::new());
        for w in wanted {
            keep.insert(w.scope.clone());
            let want_ms = w.expires.saturating_mul(1000);
            let current = snapshot.decision(&w.scope).filter(|d| d.active_at(now_ms));
            let due = match current {
                None => true,
                // Not ours to touch.
                Some(d) if !matches!(d.origin, Origin::Feed(_)) => false,
                // Extended when the peers keep it well past its end here.
                Some(d) => d.expires_ms.is_some_and(|e| e + 60_000 < want_ms),
            };
            if !due || want_ms <= now_ms {
                continue;
            }
            let ttl = Duration::from_millis(want_ms - now_ms);
            let reason = format!(
                "listed by {} ({})",
                w.peers.join(", "),
                w.detectors.join(", ")
            );
            bans.push(FeedBan {
                scope: w.scope,
                ttl,
                reason,
                origin: Origin::Feed(w.peers.join(",")),
            });
        }
        for d in snapshot.bans() {
            let ours = matches!(d.origin, Origin::Feed(_)) && d.active_at(now_ms);
            if ours && !keep.contains(&d.scope) {
                lifts.push(d.scope.clone());
            }
        }
        self.engine.reconcile_feeds(bans, lifts);
    }
}

enum PollError {
    Refused(String),
    Unreachable(String),
}

/// One poll of one peer: true when its view moved to a new head.
async fn poll(
    client: &HttpClient,
    sub: &Subscription,
    file: &mut PeerFile,
    now_secs: u64,
) -> Result<bool, PollError> {
    let mut headers = Vec::new();
    if !file.view.head_sha.is_empty() {
        headers.push((
            "if-none-match".to_string(),
            format!("\"{}\"", file.view.head_sha),
        ));
    }
    let head_url = format!("{}{}", sub.url, moat_feed::HEAD_FILE);
    let a = client
        .send(http::Method::GET, &head_url, &headers, None)
        .await
        .map_err(|e| PollError::Unreachable(e.to_string()))?;
    if a.status == 304 {
        return Ok(false);
    }
    if a.status != 200 {
        return Err(PollError::Unreachable(format!(
            "{head_url}: HTTP {}",
            a.status
        )));
    }
    let note = std::str::from_utf8(&a.body)
        .map_err(|_| PollError::Refused("the head is not UTF-8".into()))?;
    let plan = match file.view.check_head(&sub.key, note, now_secs) {
        Ok(None) => return Ok(false),
        Ok(Some(plan)) => plan,
        Err(r) => return Err(PollError::Refused(r.to_string())),
    };
    let mut files = Vec::with_capacity(plan.fetch.len());
    for r in &plan.fetch {
        let url = format!("{}{}/{}", sub.url, moat_feed::BY_HASH_DIR, r.sha256);
        let a = client
            .send(http::Method::GET, &url, &[], None)
            .await
            .map_err(|e| PollError::Unreachable(e.to_string()))?;
        if a.status != 200 {
            return Err(PollError::Unreachable(format!("{url}: HTTP {}", a.status)));
        }
        files.push(a.body.to_vec());
    }
    file.view
        .apply(plan, &files)
        .map_err(|r| PollError::Refused(r.to_string()))?;
    tracing::info!(feed = %sub.name, seq = file.view.seq, indicators = file.view.indicators.len(), "feed updated");
    Ok(true)
}

/// Polls and applies until `stop`.
pub async fn run(mut s: Subscriber, stop: moat_listen::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut applied = std::time::Instant::now();
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let resubscribed = s.refresh();
        let changed = tokio::select! {
            c = s.poll_due() => c,
            _ = stop.cancelled() => return,
        } || resubscribed;
        if changed || first || applied.elapsed() >= REAPPLY {
            first = false;
            applied = std::time::Instant::now();
            s.apply_policy();
        }
    }
}

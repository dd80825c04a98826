//! `moat keys new|show` (this instance's feed key) and `moat feeds add|list|rm|view` (the peers
//! it follows). They work on the state directory, so they work with Moat stopped; a running
//! Moat picks up `feeds add` and `feeds rm` within a second.

use crate::feeds::state::{self, StoredSubscription};
use crate::ConfigArgs;
use anyhow::{bail, Context};
use moat_config::model::{feed_url, valid_feed_name, Config};
use moat_feed::{SignerKey, VerifierKey};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// Make this instance's feed signing key (state_dir/feed.key, 0600) and print its public
    /// key for peers to pin. Refuses to replace one without --force: every peer's pin breaks.
    New {
        /// The key's name, which is the feed's origin (default: [feed] name, else the host name).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Print the public key peers pin (`moat feeds add NAME URL KEY` on their side).
    Show {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum FeedsCmd {
    /// Follow a peer's feed: NAME (yours for it), its URL (…/.well-known/moat/feed/) and the
    /// key its `moat keys show` printed.
    Add {
        name: String,
        url: String,
        key: String,
        /// How much this peer counts towards `[feeds] quorum`.
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Stop following a feed added with `moat feeds add`; its bans are lifted.
    Rm {
        name: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// The feeds followed, and how their last polls went.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// What the followed feeds list (addresses, prefixes, domains, URL hashes), by peer.
    View {
        /// Only this kind: ip, prefix, domain, url_sha256.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

/// One line of `moat feeds list`.
fn row(
    name: &str,
    url: &str,
    key: &str,
    weight: f64,
    source: &str,
    p: &state::PeerFile,
) -> serde_json::Value {
    serde_json::json!({
        "name": name, "url": url, "key": key,
        "weight": if weight.is_nan() { serde_json::Value::Null } else { weight.into() },
        "source": source, "seq": p.view.seq, "indicators": p.view.indicators.len(),
        "head_expires": p.view.expires, "last_poll_ms": p.last_poll_ms,
        "last_ok_ms": p.last_ok_ms, "last_error": p.last_error, "refused": p.refused,
    })
}

/// Every feed followed, as `moat feeds list --json` and the admin API's `/api/feeds` show
/// them: the config's and `moat feeds add`'s subscriptions with their saved views, then views a
/// running instance kept for feeds the config at hand does not name.
pub fn followed(cfg: &Config) -> Vec<serde_json::Value> {
    let dir = &cfg.server.state_dir;
    let subs = state::subscriptions(cfg);
    let saved = state::saved_peers(dir);
    let mut rows = Vec::new();
    for s in &subs {
        let p = saved
            .iter()
            .find(|(n, _)| *n == s.name)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let from_config = cfg.feeds.subscribe.iter().any(|c| c.name == s.name);
        let source = if from_config {
            "config"
        } else {
            "moat feeds add"
        };
        rows.push(row(
            &s.name,
            &s.url,
            &s.key.to_string(),
            s.weight,
            source,
            &p,
        ));
    }
    for (name, p) in &saved {
        if !subs.iter().any(|s| &s.name == name) {
            rows.push(row(name, &p.url, &p.key, f64::NAN, "state directory", p));
        }
    }
    rows
}

/// The config (for `[feed]`, `[feeds]` and the state directory) as `moat run` would read it.
pub fn config(c: &ConfigArgs) -> anyhow::Result<Config> {
    let mut ov = crate::cmd_run::overrides(c);
    ov.upstream
        .get_or_insert_with(|| "http://127.0.0.1:1".into());
    crate::cmd_run::load_or_report(c, ov).context("the config has errors")
}

pub fn keys(cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCmd::New { name, force, cfg } => {
            let cfg = config(&cfg)?;
            let dir = &cfg.server.state_dir;
            if !force {
                if let Some(k) = state::read_key(dir)? {
                    bail!(
                        "{} already holds key {}: peers pin it; --force replaces it",
                        state::key_path(dir).display(),
                        k.verifier()
                    );
                }
            }
            let name = name
                .or(cfg.feed.name.clone())
                .unwrap_or_else(state::default_name);
            let key = SignerKey::generate(&name)?;
            state::write_key(dir, &key)?;
            println!("{}", key.verifier());
            eprintln!(
                "wrote {}; peers follow this feed with: moat feeds add NAME https://THIS-HOST{} '{}'",
                state::key_path(dir).display(),
                moat_feed::URL_PATH,
                key.verifier()
            );
        }
        KeysCmd::Show { cfg } => {
            let cfg = config(&cfg)?;
            let Some(k) = state::read_key(&cfg.server.state_dir)? else {
                bail!(
                    "no key in {}: `moat run` makes one at first start, or `moat keys new`",
                    cfg.server.state_dir.display()
                );
            };
            println!("{}", k.verifier());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn feeds(cmd: FeedsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        FeedsCmd::Add {
            name,
            url,
            key,
            weight,
            cfg,
        } => {
            let cfg = config(&cfg)?;
            if !valid_feed_name(&name) {
                bail!("{name:?}: a name is 1 to 64 letters, digits, `.`, `_` or `-`");
            }
            let url = feed_url(&url).map_err(anyhow::Error::msg)?;
            let key: VerifierKey = key.parse()?;
            if !(weight > 0.0 && weight <= 1000.0) {
                bail!("--weight: above 0, e.g. 0.5 or 1");
            }
            let dir = &cfg.server.state_dir;
            let mut stored = state::read_stored(dir)?;
            if cfg.feeds.subscribe.iter().any(|s| s.name == name)
                || stored.iter().any(|s| s.name == name)
            {
                bail!("a feed named {name} is already followed");
            }
            stored.push(StoredSubscription {
                name: name.clone(),
                url: url.clone(),
                key: key.to_string(),
                weight,
            });
            state::write_stored(dir, &stored)?;
            println!("following {name} at {url} (key {})", key.name());
        }
        FeedsCmd::Rm { name, cfg } => {
            let cfg = config(&cfg)?;
            let dir = &cfg.server.state_dir;
            let mut stored = state::read_stored(dir)?;
            let before = stored.len();
            stored.retain(|s| s.name != name);
            if stored.len() == before {
                if cfg.feeds.subscribe.iter().any(|s| s.name == name) {
                    bail!(
                        "{name} is subscribed in the config ([[feeds.subscribe]]): remove it there"
                    );
                }
                bail!("no feed named {name}");
            }
            state::write_stored(dir, &stored)?;
            let _ = std::fs::remove_file(state::peer_path(dir, &name));
            println!("no longer following {name}");
        }
        FeedsCmd::List { json, cfg } => {
            let rows = followed(&config(&cfg)?);
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else if rows.is_empty() {
                println!("no feeds followed (moat feeds add NAME URL KEY)");
            } else {
                for r in rows {
                    println!(
                        "{:<20} seq {:<6} {:>7} indicators  weight {}  {}{}",
                        r["name"].as_str().unwrap_or(""),
                        r["seq"],
                        r["indicators"],
                        r["weight"],
                        r["url"].as_str().unwrap_or(""),
                        r["last_error"]
                            .as_str()
                            .map(|e| format!("\n{:<20} last poll: {e}", ""))
                            .unwrap_or_default()
                    );
                }
            }
        }
        FeedsCmd::View { kind, json, cfg } => {
            let cfg = config(&cfg)?;
            let dir = &cfg.server.state_dir;
            let mut rows = Vec::new();
            for (name, p) in state::saved_peers(dir) {
                let origin = p
                    .key
                    .parse::<VerifierKey>()
                    .map(|k| k.name().to_string())
                    .unwrap_or_default();
                for i in p.view.indicators.values() {
                    if kind.as_deref().is_some_and(|k| k != i.kind.as_str()) {
                        continue;
                    }
                    rows.push(serde_json::json!({
                        "feed": name, "origin": origin, "kind": i.kind.as_str(),
                        "value": i.value, "detector": i.detector, "count": i.count,
                        "first_seen": i.first_seen, "last_seen": i.last_seen, "expires": i.expires,
                    }));
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for r in rows {
                    println!(
                        "{:<16} {:<10} {:<40} {} ×{}",
                        r["feed"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["value"].as_str().unwrap_or(""),
                        r["detector"].as_str().unwrap_or(""),
                        r["count"]
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

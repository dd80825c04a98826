//! `moat bans list|add|rm` and `moat allow`. They write the SQLite store directly, so they work
//! with Moat stopped; a running Moat sees the change within a second.

use crate::ConfigArgs;
use anyhow::Context;
use moat_core::{Clock, Decision, Origin, Scope, SystemClock, Verdict};
use moat_store::{SqliteStore, Store};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BansCmd {
    /// List active bans.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Ban an address or prefix.
    Add {
        /// An address or CIDR prefix.
        scope: String,
        /// How long, e.g. 30m, 12h, 7d (default: until removed).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long, default_value = "manual ban")]
        reason: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Remove the ban on exactly this address or prefix.
    Rm {
        scope: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

fn state_dir(c: &ConfigArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &c.state_dir {
        return Ok(PathBuf::from(d));
    }
    if c.config.is_some() {
        let mut ov = crate::cmd_run::overrides(c);
        ov.upstream
            .get_or_insert_with(|| "http://127.0.0.1:1".into());
        let cfg = crate::cmd_run::load_or_report(c, ov).context("the config has errors")?;
        return Ok(cfg.server.state_dir);
    }
    Ok(PathBuf::from("moat-state"))
}

fn open(c: &ConfigArgs) -> anyhow::Result<SqliteStore> {
    let dir = state_dir(c)?;
    SqliteStore::open_dir(&dir).with_context(|| format!("opening the store in {}", dir.display()))
}

pub fn run(cmd: BansCmd) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    match cmd {
        BansCmd::List { json, cfg } => {
            let list = open(&cfg)?.decisions(now)?;
            if json {
                let v: Vec<_> = list.iter().map(moat_store::decision_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if list.is_empty() {
                println!("no active bans");
            } else {
                println!(
                    "{:<40} {:>10} {:>8}  {:<24} reason",
                    "scope", "expires in", "offence", "origin"
                );
                for d in &list {
                    let left = d
                        .expires_ms
                        .map_or("never".into(), |e| human((e.saturating_sub(now)) / 1000));
                    println!(
                        "{:<40} {:>10} {:>8}  {:<24} {}",
                        d.scope.to_string(),
                        left,
                        d.offences,
                        d.origin.to_string(),
                        d.reason
                    );
                }
            }
        }
        BansCmd::Add {
            scope,
            ttl,
            reason,
            cfg,
        } => {
            let scope = Scope::parse(&scope)?;
            let expires_ms = match ttl {
                Some(t) => Some(
                    now + moat_config::parse_duration(&t)
                        .map_err(anyhow::Error::msg)?
                        .as_millis() as u64,
                ),
                None => None,
            };
            let store = open(&cfg)?;
            let offences = store.record_ban(&scope, now, now.saturating_sub(30 * 86_400_000))?;
            store.put_decision(&Decision {
                scope: scope.clone(),
                verdict: Verdict::Ban,
                created_ms: now,
                expires_ms,
                reason,
                origin: Origin::Manual,
                offences,
            })?;
            println!("banned {scope}");
        }
        BansCmd::Rm { scope, cfg } => {
            let scope = Scope::parse(&scope)?;
            if open(&cfg)?.remove_decision(&scope)? {
                println!("removed the ban on {scope}");
            } else {
                println!("no ban on exactly {scope}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn allow(addr: &str, cfg: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let scope = Scope::parse(addr)?;
    let net: ipnet::IpNet = match &scope {
        Scope::Ip(ip) => (*ip).into(),
        Scope::Prefix(n) => *n,
    };
    let store = open(cfg)?;
    let now = SystemClock.now_ms();
    store.allow(net, "moat allow", now)?;
    let mut lifted = 0;
    for d in store.decisions(now)? {
        let covered = match (&d.scope, &scope) {
            (Scope::Ip(ip), _) => net.contains(ip),
            (Scope::Prefix(p), _) => net.contains(p) || p.contains(&net.network()),
        };
        if covered && store.remove_decision(&d.scope)? {
            lifted += 1;
        }
    }
    println!("allowlisted {net}; lifted {lifted} ban(s)");
    Ok(ExitCode::SUCCESS)
}

fn human(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

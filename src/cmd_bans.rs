//! `moat bans list|add|rm` and `moat allow [list|rm]`. They write the SQLite store directly, so
//! they work with Moat stopped; a running Moat sees the change within a second. The ones that
//! read (list, rm) fail where there is no store rather than create one.

use crate::ConfigArgs;
use anyhow::Context;
use ipnet::IpNet;
use moat_core::{Clock, Scope, SystemClock};
use moat_store::{SqliteStore, Store, StoreError};
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

/// The state directory, and how it was chosen (for messages about it).
pub(crate) fn state_dir(c: &ConfigArgs) -> anyhow::Result<(PathBuf, &'static str)> {
    if let Some(d) = &c.state_dir {
        return Ok((PathBuf::from(d), "--state-dir or MOAT_STATE_DIR"));
    }
    if c.config_file().is_some() {
        let mut ov = crate::cmd_run::overrides(c);
        ov.upstream
            .get_or_insert_with(|| "http://127.0.0.1:1".into());
        let cfg = crate::cmd_run::load_or_report(c, ov).context("the config has errors")?;
        return Ok((cfg.server.state_dir, "server.state_dir in the config"));
    }
    Ok((
        PathBuf::from("moat-state"),
        "the default: no --state-dir, MOAT_STATE_DIR, --config, MOAT_CONFIG or /etc/moat/moat.toml",
    ))
}

/// Opens the store to change it, creating it if Moat never ran there (bans and allowlist
/// entries may be set up before the first start); says so, since a mistyped directory would
/// otherwise go unnoticed.
fn open(c: &ConfigArgs) -> anyhow::Result<SqliteStore> {
    let (dir, why) = state_dir(c)?;
    let db = SqliteStore::path_in(&dir);
    let fresh = !db.exists();
    let store = SqliteStore::open_dir(&dir)
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    if fresh {
        eprintln!(
            "moat: created {} ({why}): no Moat state was there yet",
            db.display()
        );
    }
    Ok(store)
}

/// Opens the store to read it: a missing one is an error naming where it was looked for,
/// and nothing is created.
fn open_existing(c: &ConfigArgs) -> anyhow::Result<SqliteStore> {
    let (dir, why) = state_dir(c)?;
    match SqliteStore::open_existing(&dir) {
        Ok(s) => Ok(s),
        Err(StoreError::Missing(p)) => Err(anyhow::anyhow!(
            "no Moat state here: {p} does not exist (state directory {}: {why})",
            dir.display()
        )),
        Err(e) => Err(e).with_context(|| format!("opening the store in {}", dir.display())),
    }
}

pub fn run(cmd: BansCmd) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    match cmd {
        BansCmd::List { json, cfg } => {
            let list = open_existing(&cfg)?.decisions(now)?;
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
            let ttl = ttl
                .map(|t| moat_config::parse_duration(&t).map_err(anyhow::Error::msg))
                .transpose()?;
            let store = open(&cfg)?;
            moat_store::add_manual_ban(&store, scope.clone(), ttl, &reason, now)?;
            println!("banned {scope}");
        }
        BansCmd::Rm { scope, cfg } => {
            let scope = Scope::parse(&scope)?;
            if open_existing(&cfg)?.remove_decision(&scope)? {
                println!("removed the ban on {scope}");
            } else {
                println!("no ban on exactly {scope}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `moat allow ADDR`, `moat allow list`, `moat allow rm ADDR`.
#[derive(clap::Args)]
#[command(
    subcommand_negates_reqs = true,
    override_usage = "moat allow [OPTIONS] <ADDR>\n       moat allow list [--json] [OPTIONS]\n       moat allow rm <ADDR> [OPTIONS]"
)]
pub struct AllowArgs {
    /// An address or CIDR prefix to put on the allowlist.
    #[arg(value_name = "ADDR", required = true)]
    addr: Option<String>,
    /// Why, as `moat allow list` shows it.
    #[arg(long, default_value = "moat allow")]
    reason: String,
    #[command(flatten)]
    cfg: ConfigArgs,
    #[command(subcommand)]
    cmd: Option<AllowCmd>,
}

#[derive(clap::Subcommand)]
pub enum AllowCmd {
    /// The allowlist kept in the state directory (what `moat allow` added), with when and why.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Take exactly this address or prefix off the allowlist.
    Rm {
        /// An address or CIDR prefix, as `moat allow list` shows it.
        addr: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

/// The config flags may come before the subcommand (`moat allow --state-dir D list`) or after
/// it; the ones after win.
fn merged(outer: ConfigArgs, inner: ConfigArgs) -> ConfigArgs {
    ConfigArgs {
        config: inner.config.or(outer.config),
        presets: if inner.presets.is_empty() {
            outer.presets
        } else {
            inner.presets
        },
        rules: if inner.rules.is_empty() {
            outer.rules
        } else {
            inner.rules
        },
        state_dir: inner.state_dir.or(outer.state_dir),
    }
}

/// An allowlist entry or scope as people write it: a single address without `/32` or `/128`.
fn show_net(n: &IpNet) -> String {
    match n.prefix_len() == n.max_prefix_len() {
        true => n.addr().to_string(),
        false => n.to_string(),
    }
}

fn parse_net(addr: &str) -> anyhow::Result<IpNet> {
    Ok(match Scope::parse(addr)? {
        Scope::Ip(ip) => ip.into(),
        Scope::Prefix(n) => n,
    })
}

pub fn allow(a: AllowArgs) -> anyhow::Result<ExitCode> {
    match (a.cmd, a.addr) {
        (Some(_), Some(addr)) => anyhow::bail!(
            "give either an address (`moat allow {addr}`) or a subcommand (`moat allow list`, \
             `moat allow rm ADDR`), not both"
        ),
        (Some(AllowCmd::List { json, cfg }), None) => allow_list(&merged(a.cfg, cfg), json),
        (Some(AllowCmd::Rm { addr, cfg }), None) => allow_rm(&addr, &merged(a.cfg, cfg)),
        (None, Some(addr)) => allow_add(&addr, &a.reason, &a.cfg),
        (None, None) => {
            anyhow::bail!("give an address or prefix to allowlist (see moat allow --help)")
        }
    }
}

fn allow_add(addr: &str, reason: &str, cfg: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let net = parse_net(addr)?;
    let store = open(cfg)?;
    let now = SystemClock.now_ms();
    let lifted = moat_store::allow_and_lift(&store, net, reason, now)?;
    let shown = show_net(&net);
    match lifted.len() {
        0 => println!("allowlisted {shown}; no ban on it to lift"),
        _ => println!(
            "allowlisted {shown}; lifted the ban(s) on {}",
            lifted
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    // Wider bans stay for everyone else in them; the allowlist exempts this one.
    for d in store.decisions(now)? {
        if let Scope::Prefix(p) = &d.scope {
            if p.contains(&net) {
                println!("{p} stays banned; {shown} is exempt from it (the allowlist comes first)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn allow_list(cfg: &ConfigArgs, json: bool) -> anyhow::Result<ExitCode> {
    let entries = open_existing(cfg)?.allow_entries()?;
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "net": show_net(&e.net), "note": e.note, "created_ms": e.created_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if entries.is_empty() {
        println!("the allowlist is empty");
    } else {
        println!("{:<40} {:<20}  note", "address or prefix", "added (UTC)");
        for e in &entries {
            println!(
                "{:<40} {:<20}  {}",
                show_net(&e.net),
                crate::cmd_quarantine::utc(e.created_ms as i64),
                e.note
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn allow_rm(addr: &str, cfg: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let net = parse_net(addr)?;
    if open_existing(cfg)?.unallow(net)? {
        println!("removed {} from the allowlist", show_net(&net));
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} is not on the allowlist (exactly; see moat allow list)",
            show_net(&net)
        );
        Ok(ExitCode::from(1))
    }
}

fn human(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

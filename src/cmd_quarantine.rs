//! `moat quarantine`: read what the trap captured. Works while the trap runs (the index is
//! opened read-only; SQLite's WAL lets readers and the writer go on together).

use crate::ConfigArgs;
use anyhow::Context;
use moat_trap::quarantine::{index, index_path};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct QuarantineArgs {
    /// The quarantine directory, as `moat trap --quarantine` names it (default: from the
    /// config's [trap] or [mail], else STATE_DIR/quarantine). `--dir` is an old spelling.
    #[arg(long = "quarantine", alias = "dir", value_name = "DIR", global = true)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    cfg: ConfigArgs,
    #[command(subcommand)]
    cmd: QuarantineCmd,
}

#[derive(clap::Subcommand)]
enum QuarantineCmd {
    /// The newest deliveries.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One delivery: envelope, credentials, indicators; `--raw` prints the message as received.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
    /// Indicators across the quarantine, with how many deliveries carried each.
    Iocs {
        /// Only this kind of indicator.
        #[arg(long, value_parser = index::IOC_KINDS)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Messages grouped into campaigns (shared links, subject skeleton, body fingerprint).
    Campaigns {
        #[arg(long)]
        json: bool,
    },
    /// Abuse reports: what was sent (or written to the outbox in a dry run) and what was
    /// answered, newest first. `--run` first hands new captures to the reporter (needs a config
    /// with [report]).
    Report {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        run: bool,
    },
    /// Login attempts on the trap, newest first.
    Logins {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Where the quarantine is, how that was decided (for messages), and the config if one was
/// given (for [report] and the state directory).
struct Resolved {
    dir: PathBuf,
    why: &'static str,
    cfg: Option<moat_config::Config>,
}

fn resolve(a: &QuarantineArgs) -> Option<Resolved> {
    if a.cfg.config_file().is_none() && a.cfg.state_dir.is_none() {
        if let Some(d) = &a.dir {
            return Some(Resolved {
                dir: d.clone(),
                why: "--quarantine",
                cfg: None,
            });
        }
    }
    let mut ov = crate::cmd_run::overrides(&a.cfg);
    ov.upstream = Some("http://127.0.0.1:1".into());
    let cfg = crate::cmd_run::load_or_report(&a.cfg, ov)?;
    let (dir, why) = match (&a.dir, &cfg.trap, &cfg.mail) {
        (Some(d), _, _) => (d.clone(), "--quarantine"),
        (None, Some(t), _) => (
            t.quarantine_dir.clone(),
            "[trap] quarantine_dir in the config",
        ),
        (None, None, Some(m)) => (
            m.quarantine_dir.clone(),
            "[mail] quarantine_dir in the config",
        ),
        (None, None, None) => (
            cfg.server.state_dir.join("quarantine"),
            "STATE_DIR/quarantine, the default; pass --quarantine DIR or --config FILE",
        ),
    };
    Some(Resolved {
        dir,
        why,
        cfg: Some(cfg),
    })
}

/// Every subcommand reads a quarantine the trap (or the mail shield) made: where there is
/// none, say where it was looked for and stop, creating nothing.
fn check_exists(r: &Resolved) -> anyhow::Result<()> {
    let index = index_path(&r.dir);
    if index.is_file() {
        return Ok(());
    }
    let what = match r.dir.is_dir() {
        true => format!(
            "{} does not exist (has the trap run there?)",
            index.display()
        ),
        false => "the directory does not exist".to_string(),
    };
    anyhow::bail!(
        "no quarantine at {}: {what}; the directory came from {}",
        r.dir.display(),
        r.why
    )
}

async fn report(
    dir: &Path,
    cfg: Option<&moat_config::Config>,
    limit: usize,
    json: bool,
    run: bool,
) -> anyhow::Result<ExitCode> {
    // `moat trap` keeps the report database next to its quarantine unless told otherwise.
    let state_dir = cfg.map_or_else(|| dir.to_path_buf(), |c| c.server.state_dir.clone());
    let rcfg = cfg.and_then(|c| c.report.clone());
    if run && rcfg.is_none() {
        anyhow::bail!("--run needs a config with a [report] table (--config FILE)");
    }
    let db = crate::reporting::db_path(&state_dir);
    if !run && !db.is_file() {
        anyhow::bail!(
            "no reports here: {} does not exist (nothing was reported from this quarantine; \
             reports need a [report] table: moat quarantine --config FILE report --run)",
            db.display()
        );
    }
    let feed = crate::reporting::ReportFeed::open(&state_dir, dir, rcfg.unwrap_or_default())?;
    if run {
        feed.run_once().await?;
    }
    let rows = feed.reporter().history(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20}  {:<9}  {:<9}  {:<5}  {:<32}  {:<28}  ANSWER",
        "UPDATED (UTC)", "TARGET", "STATUS", "CODE", "INDICATOR", "TO"
    );
    for r in rows {
        let v = serde_json::to_value(&r)?;
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<20}  {:<9}  {:<9}  {:<5}  {:<32}  {:<28}  {}",
            utc(r.updated_ms as i64),
            s("target"),
            s("status"),
            r.answer_code.map(|c| c.to_string()).unwrap_or_default(),
            clip(&r.indicator, 32),
            clip(&s("recipient"), 28),
            clip(r.answer.as_deref().unwrap_or(""), 60)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn open(dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let p = index_path(dir);
    if !p.is_file() {
        anyhow::bail!(
            "{}: no quarantine index here (has the trap run?)",
            p.display()
        );
    }
    index::open_read(&p).with_context(|| format!("opening {}", p.display()))
}

pub fn run(a: QuarantineArgs) -> anyhow::Result<ExitCode> {
    // An id is never a path: refused before anything is looked at.
    if let QuarantineCmd::Show { id, .. } = &a.cmd {
        if !moat_trap::quarantine::files::is_id(id) {
            eprintln!("moat: not a message id: {id:?} (ids are letters, digits, '-' and '_', as `moat quarantine list` shows them)");
            return Ok(ExitCode::from(2));
        }
    }
    let Some(resolved) = resolve(&a) else {
        return Ok(ExitCode::from(1));
    };
    check_exists(&resolved)?;
    let Resolved { dir, cfg, .. } = resolved;
    if let QuarantineCmd::Report { limit, json, run } = a.cmd {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(report(&dir, cfg.as_ref(), limit, json, run));
    }
    let db = open(&dir)?;
    match a.cmd {
        QuarantineCmd::List { limit, json } => {
            let rows = moat_trap::quarantine::list(&dir, &db, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16}  {:<20}  {:<15}  {:<24}  {:>5}  SUBJECT",
                    "ID", "RECEIVED (UTC)", "CLIENT", "LOGIN", "RCPTS"
                );
                for r in rows {
                    println!(
                        "{:<16}  {:<20}  {:<15}  {:<24}  {:>5}  {}",
                        r.id,
                        utc(r.received_ms),
                        r.client_ip,
                        clip(r.auth_user.as_deref().unwrap_or("-"), 24),
                        r.rcpt_to.len(),
                        clip(r.subject.as_deref().unwrap_or(""), 60)
                    );
                }
            }
        }
        QuarantineCmd::Show { id, json, raw } => {
            let Some(shown) = moat_trap::quarantine::views::show(&dir, &db, &id)? else {
                eprintln!("no message {id}");
                return Ok(ExitCode::from(1));
            };
            if raw {
                use std::io::Write;
                std::io::stdout().write_all(&shown.bytes(&dir)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let r = &shown.message;
            if json {
                let v = serde_json::json!({ "message": r, "indexed": shown.indexed, "iocs": shown.iocs });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("id:        {}", r.id);
                println!("received:  {}", utc(r.received_ms));
                println!(
                    "client:    {}:{} (HELO {})",
                    r.client_ip, r.client_port, r.helo
                );
                println!(
                    "listener:  {}{}",
                    r.listener,
                    if r.tls { ", TLS" } else { "" }
                );
                if let Some(u) = &r.auth_user {
                    println!(
                        "login:     {u} / {}",
                        r.auth_password.as_deref().unwrap_or("")
                    );
                }
                println!("from:      <{}>", r.mail_from);
                for t in &r.rcpt_to {
                    println!("to:        <{t}>");
                }
                println!("size:      {} bytes, sha256 {}", r.size, r.sha256);
                println!("file:      {}", dir.join("new").join(&r.file).display());
                println!("subject:   {}", r.subject.as_deref().unwrap_or(""));
                for i in &shown.iocs {
                    match &i.detail {
                        Some(d) => println!("  {:<10} {}  ({d})", i.kind, i.value),
                        None => println!("  {:<10} {}", i.kind, i.value),
                    }
                }
            }
        }
        QuarantineCmd::Iocs { kind, json } => {
            let rows = index::ioc_summary(&db, kind.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<14}  {:>8}  {:<20}  VALUE",
                    "KIND", "MESSAGES", "LAST SEEN (UTC)"
                );
                for r in rows {
                    println!(
                        "{:<14}  {:>8}  {:<20}  {}",
                        r.kind,
                        r.messages,
                        utc(r.last_ms),
                        r.value
                    );
                }
            }
        }
        QuarantineCmd::Report { .. } => {}
        QuarantineCmd::Campaigns { json } => crate::cmd_campaigns::print(&db, json)?,
        QuarantineCmd::Logins { limit, json } => {
            let rows = index::logins(&db, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20}  {:<15}  {:<5}  {:<16}  {:<28}  PASSWORD",
                    "AT (UTC)", "CLIENT", "MECH", "VERDICT", "USER"
                );
                for r in rows {
                    println!(
                        "{:<20}  {:<15}  {:<5}  {:<16}  {:<28}  {}",
                        utc(r.at_ms as i64),
                        r.client_ip,
                        r.mechanism,
                        r.verdict,
                        clip(&r.username, 28),
                        r.password
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC from Unix milliseconds.
pub fn utc(ms: i64) -> String {
    moat_core::utc_text(ms)
}

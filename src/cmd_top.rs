//! `moat top`: the live top rules, clients and networks of the running instance, from its
//! admin API (`GET /api/top`), refreshed every few seconds like top(1); `--once` prints one
//! screen for scripts, `--json` the API's answer as it is.

use crate::admin_client::Admin;
use crate::cmd_run::{load_or_report, overrides};
use crate::ConfigArgs;
use anyhow::Context;
use http::Method;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct TopArgs {
    /// Print one screen and exit.
    #[arg(long)]
    once: bool,
    /// Print the admin API's JSON instead of tables (with --once: one document).
    #[arg(long)]
    json: bool,
    /// Entries of each kind (1 to 100).
    #[arg(short = 'n', long, default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=100))]
    n: u16,
    /// Seconds between refreshes (1 to 3600).
    #[arg(long, default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
    #[command(flatten)]
    cfg: ConfigArgs,
}

pub fn run(a: TopArgs) -> anyhow::Result<ExitCode> {
    // The config gives the state directory (admin address and token); the running instance
    // may have been started with `--upstream`, hence the stand-in.
    let mut ov = overrides(&a.cfg);
    ov.upstream = Some("http://127.0.0.1:1".into());
    let Some(cfg) = load_or_report(&a.cfg, ov) else {
        return Ok(ExitCode::from(1));
    };
    let admin = Admin::for_config(&cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let path = format!("/api/top?n={}", a.n);
    let tty = std::io::stdout().is_terminal();
    rt.block_on(async {
        loop {
            let got = fetch(&admin, &path).await;
            let screen = match (&got, a.json) {
                (Ok(v), true) => format!("{v}\n"),
                (Ok(v), false) => render(v, admin.addr),
                (Err(e), _) if a.once => return Err(anyhow::anyhow!("{e:#}")),
                // Moat restarting: say so and try again at the next tick.
                (Err(e), _) => format!("moat top: {e:#}\n"),
            };
            let mut out = std::io::stdout().lock();
            if tty && !a.once {
                // Home and clear, as top(1) redraws.
                let _ = out.write_all(b"\x1b[H\x1b[2J");
            }
            let _ = out.write_all(screen.as_bytes());
            let _ = out.flush();
            if a.once {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(a.interval)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

async fn fetch(admin: &Admin, path: &str) -> anyhow::Result<Value> {
    let (status, body) = admin
        .call(Method::GET, path, Duration::from_secs(10))
        .await?;
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("the admin API answered {status} with no JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "the admin API answered {status}: {}",
            v["error"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

/// One screen of tables from `/api/top`'s answer.
fn render(v: &Value, admin: std::net::SocketAddr) -> String {
    let now = v["now_ms"].as_u64().unwrap_or(0);
    let since = v["since_ms"].as_u64().unwrap_or(now);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "moat top: {} decisions in the last {} s, {} active bans (admin {admin})\n",
        v["decisions"].as_u64().unwrap_or(0),
        now.saturating_sub(since) / 1000,
        v["bans_active"].as_u64().unwrap_or(0),
    );
    let rows = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let _ = writeln!(o, "{:<40} {:<10} {:>10}", "RULE", "ACTION", "DECISIONS");
    for r in rows("rules") {
        let _ = writeln!(
            o,
            "{:<40} {:<10} {:>10}",
            r["rule"].as_str().unwrap_or(""),
            r["action"].as_str().unwrap_or(""),
            r["count"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(o, "\n{:<40} {:>10}  STATE", "CLIENT", "DECISIONS");
    for c in rows("clients") {
        let state = match (
            c["state"].as_str().unwrap_or(""),
            c["banned_until_ms"].as_u64(),
        ) {
            ("banned", Some(until)) => format!("banned, {} left", left(until.saturating_sub(now))),
            ("banned", None) => "banned until lifted".to_string(),
            (s, _) => s.to_string(),
        };
        let _ = writeln!(
            o,
            "{:<40} {:>10}  {state}",
            c["client"].as_str().unwrap_or(""),
            c["count"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(
        o,
        "\n{:<40} {:>10} {:>10}",
        "NETWORK", "DECISIONS", "CLIENTS"
    );
    for n in rows("networks") {
        let _ = writeln!(
            o,
            "{:<40} {:>10} {:>10}",
            n["network"].as_str().unwrap_or(""),
            n["count"].as_u64().unwrap_or(0),
            n["clients"].as_u64().unwrap_or(0)
        );
    }
    o
}

/// A duration as people read it on a screen: `42s`, `17m`, `3h`, `2d`.
fn left(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m", s / 60),
        6000..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_shows_each_table_and_ban_times_left() {
        let v = serde_json::json!({
            "now_ms": 1_000_000, "since_ms": 940_000, "decisions": 93, "bans_active": 2,
            "rules": [{"rule": "ghost-decoy", "action": "decoy", "count": 90}],
            "clients": [
                {"client": "198.51.100.1", "count": 43, "state": "banned", "banned_until_ms": 4_600_000},
                {"client": "203.0.113.9", "count": 5, "state": "clear", "banned_until_ms": null}
            ],
            "networks": [{"network": "203.0.113.0/24", "count": 50, "clients": 10}]
        });
        let s = render(&v, "127.0.0.1:9791".parse().unwrap());
        assert!(
            s.starts_with("moat top: 93 decisions in the last 60 s, 2 active bans"),
            "{s}"
        );
        assert!(s.contains("ghost-decoy"), "{s}");
        assert!(s.contains("banned, 60m left"), "{s}");
        assert!(s.contains("203.0.113.9") && s.contains("clear"), "{s}");
        assert!(s.contains("203.0.113.0/24"), "{s}");
        assert_eq!(left(42_000), "42s");
        assert_eq!(left(3 * 86_400_000), "3d");
    }
}

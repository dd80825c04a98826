//! `moat`: the command line. Parses arguments, loads and compiles the config, and hands over to
//! the library crates; no policy lives here.

mod admin_client;
mod app;
mod child;
mod cmd_asn;
mod cmd_bans;
mod cmd_campaigns;
mod cmd_completions;
mod cmd_doctor;
mod cmd_feeds;
mod cmd_quarantine;
mod cmd_reload;
mod cmd_replay;
mod cmd_rules;
mod cmd_run;
mod cmd_top;
mod cmd_trap;
mod demo;
mod feeds;
mod log_watcher;
mod nft;
mod reporting;

use clap::{Parser, Subcommand};

/// Proxying is allocation-heavy (header maps, buffers); mimalloc's thread-local free lists keep
/// that off glibc's arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "A self-hosted shield against scripted abuse: reverse proxy with rules, rate limits, decoys and bans."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the config comes from; shared by every subcommand that needs one.
#[derive(clap::Args, Clone, Default)]
pub struct ConfigArgs {
    /// TOML config file. Without it: /etc/moat/moat.toml when that exists (a packaged
    /// install), else the embedded defaults.
    #[arg(long, short = 'c', env = "MOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Embedded preset to load (repeatable).
    #[arg(
        long = "preset",
        value_parser = clap::builder::PossibleValuesParser::new(moat_config::presets::NAMES)
    )]
    pub presets: Vec<String>,
    /// Extra rule file (repeatable).
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
    /// State directory (SQLite database, admin token, ACME files); wins over the config's
    /// server.state_dir.
    #[arg(long, env = "MOAT_STATE_DIR")]
    pub state_dir: Option<String>,
}

/// Where a packaged install (the Debian package, docs/deploy-vm.md) keeps its config: read when
/// neither `--config` nor `MOAT_CONFIG` names one, so `moat bans list` on a server finds the
/// same state as the service without flags.
pub const PACKAGED_CONFIG: &str = "/etc/moat/moat.toml";

impl ConfigArgs {
    /// The config file to read, and how it was chosen (for messages); `None` means the
    /// embedded defaults.
    pub fn config_file(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(p) = &self.config {
            return Some((p.clone(), "--config or MOAT_CONFIG"));
        }
        let packaged = std::path::Path::new(PACKAGED_CONFIG);
        packaged
            .is_file()
            .then(|| (packaged.to_path_buf(), PACKAGED_CONFIG))
    }

    /// [`Self::config_file`]'s path alone.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config_file().map(|(p, _)| p)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the reverse proxy in front of an app.
    Run(cmd_run::RunArgs),
    /// Start a small sign-up site behind Moat (ghost preset), attack it from rotating loopback
    /// addresses next to real-looking sign-ups, and show what got through.
    Demo(demo::DemoArgs),
    /// Check a config (and its rule files and presets); print every error with file and line.
    Check {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Work with rules.
    Rules {
        #[command(subcommand)]
        cmd: cmd_rules::RulesCmd,
    },
    /// List, add or remove bans (works whether Moat runs or not).
    Bans {
        #[command(subcommand)]
        cmd: cmd_bans::BansCmd,
    },
    /// Run the SMTP trap on its own: bots "log in", everything they send is kept, nothing is
    /// delivered. Example: moat trap --listen 127.0.0.1:2525 --quarantine DIR
    Trap(cmd_trap::TrapArgs),
    /// Read what the trap captured: list, show, iocs, logins.
    Quarantine(cmd_quarantine::QuarantineArgs),
    /// Check how Moat is wired into other software: `moat doctor mail --config FILE`.
    Doctor {
        #[command(subcommand)]
        cmd: cmd_doctor::DoctorCmd,
    },
    /// Make the running instance re-read its config, rules and presets (as SIGHUP does); bans,
    /// counters and open connections are kept. A config with errors changes nothing.
    Reload {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Live top rules, clients and networks of the running instance (its admin API),
    /// refreshed every few seconds; `--once` prints one screen.
    Top(cmd_top::TopArgs),
    /// Put an address or prefix on the allowlist and lift the bans on it: unban yourself.
    /// `moat allow list` shows the allowlist, `moat allow rm ADDR` takes an entry off.
    Allow(cmd_bans::AllowArgs),
    /// Run a fail2ban filter over log files, as fail2ban-regex does: which lines match, the
    /// address and time taken from each, a summary. Example:
    /// moat replay /var/log/auth.log --filter sshd
    Replay(cmd_replay::ReplayArgs),
    /// This instance's feed key: `moat keys new` makes one, `moat keys show` prints the public
    /// key peers pin.
    Keys {
        #[command(subcommand)]
        cmd: cmd_feeds::KeysCmd,
    },
    /// The peers' feeds this instance follows: add, list, rm, view.
    Feeds {
        #[command(subcommand)]
        cmd: cmd_feeds::FeedsCmd,
    },
    /// The IP-to-ASN table the dashboard groups sources by: `moat asn refresh` fetches a newer
    /// one than the binary's, `moat asn show [ADDRESS]` says which is in use.
    Asn {
        #[command(subcommand)]
        cmd: cmd_asn::AsnCmd,
    },
    /// Print shell completions (bash, zsh, fish, …) to stdout.
    Completions(cmd_completions::CompletionsArgs),
    /// Write the man pages into a directory (for packaging).
    #[command(hide = true)]
    Man(cmd_completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => cmd_run::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Check { cfg } => cmd_run::check(&cfg),
        Cmd::Rules { cmd } => cmd_rules::run(cmd),
        Cmd::Bans { cmd } => cmd_bans::run(cmd),
        Cmd::Trap(a) => cmd_trap::run(a),
        Cmd::Quarantine(a) => cmd_quarantine::run(a),
        Cmd::Doctor { cmd } => cmd_doctor::run(cmd),
        Cmd::Allow(a) => cmd_bans::allow(a),
        Cmd::Reload { cfg } => cmd_reload::run(&cfg),
        Cmd::Top(a) => cmd_top::run(a),
        Cmd::Replay(a) => cmd_replay::run(a),
        Cmd::Keys { cmd } => cmd_feeds::keys(cmd),
        Cmd::Feeds { cmd } => cmd_feeds::feeds(cmd),
        Cmd::Asn { cmd } => cmd_asn::run(cmd),
        Cmd::Completions(a) => cmd_completions::completions(a),
        Cmd::Man(a) => cmd_completions::man(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("moat: {e:#}");
            ExitCode::from(2)
        }
    }
}

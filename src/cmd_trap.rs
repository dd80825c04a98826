//! `moat trap`: the SMTP trap on its own, configured from the command line.

use crate::cmd_run::{init_logging, shutdown_signal};
use anyhow::Context;
use moat_config::{trap_defaults as d, Trap, TrapListener, TrapTls};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct TrapArgs {
    /// SMTP listener with STARTTLS (repeatable).
    #[arg(long, default_value = "127.0.0.1:2525")]
    listen: Vec<String>,
    /// Listener with TLS from the first byte, port 465 style (repeatable).
    #[arg(long)]
    tls_listen: Vec<String>,
    /// Quarantine directory (Maildir files plus index.sqlite).
    #[arg(long, default_value = "moat-quarantine")]
    quarantine: PathBuf,
    /// Where the generated TLS certificate is kept (default: the quarantine directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// PEM certificate chain and key, instead of a generated self-signed pair.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name in the banner and EHLO reply.
    #[arg(long, default_value = d::HOSTNAME)]
    hostname: String,
    /// Logins succeed with one of the N most common passwords (0: never).
    #[arg(long, default_value_t = d::TOP_PASSWORDS)]
    top_passwords: u32,
    /// ...or on the K-th attempt for one user name (0: never).
    #[arg(long, default_value_t = d::KTH_ATTEMPT)]
    kth_attempt: u32,
    /// Wait before a refused login is answered, e.g. 0s (default: 2s, as Dovecot).
    #[arg(long)]
    auth_failure_delay: Option<String>,
    #[arg(long, default_value_t = d::MAX_SESSIONS)]
    max_sessions: u32,
    #[arg(long, default_value_t = d::MAX_SESSIONS_PER_IP)]
    max_sessions_per_ip: u32,
    #[arg(long, default_value_t = d::MAX_MESSAGE_MB)]
    max_message_mb: u32,
    #[arg(long, default_value_t = d::MAX_RECIPIENTS)]
    max_recipients: u32,
    /// Disk quota for captured content, MiB (0: none).
    #[arg(long, default_value_t = d::QUOTA_MB)]
    quota_mb: u64,
    /// Longest wait for a command (default: 60s).
    #[arg(long)]
    command_timeout: Option<String>,
    /// Longest session (default: 10m).
    #[arg(long)]
    session_timeout: Option<String>,
    /// A config file whose [report] table turns on abuse reports (dry run unless send = true);
    /// the report database and cursor go to the state directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How often new captures are handed to the reporter, e.g. 10s.
    #[arg(long, default_value = "10s")]
    report_every: String,
    /// Log format: json (one object per line) or text.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn duration(v: Option<&str>, flag: &str, default: Duration) -> anyhow::Result<Duration> {
    match v {
        None => Ok(default),
        Some(v) => moat_config::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}")),
    }
}

fn addr(v: &str, flag: &str) -> anyhow::Result<std::net::SocketAddr> {
    v.parse()
        .with_context(|| format!("--{flag}: `{v}` is not an address:port"))
}

pub fn run(a: TrapArgs) -> anyhow::Result<ExitCode> {
    let mut listeners = Vec::new();
    for (i, l) in a.listen.iter().enumerate() {
        listeners.push(TrapListener {
            name: if i == 0 {
                "smtp".into()
            } else {
                format!("smtp{i}")
            },
            listen: addr(l, "listen")?,
            tls: TrapTls::StartTls,
        });
    }
    for (i, l) in a.tls_listen.iter().enumerate() {
        listeners.push(TrapListener {
            name: if i == 0 {
                "smtps".into()
            } else {
                format!("smtps{i}")
            },
            listen: addr(l, "tls-listen")?,
            tls: TrapTls::Implicit,
        });
    }
    let cfg = Trap {
        quarantine_dir: a.quarantine.clone(),
        quota_bytes: a.quota_mb << 20,
        hostname: a.hostname.clone(),
        tls_files: a.tls_cert.clone().zip(a.tls_key.clone()),
        top_passwords: a.top_passwords,
        kth_attempt: a.kth_attempt,
        max_sessions: a.max_sessions.max(1),
        max_sessions_per_ip: a.max_sessions_per_ip.max(1),
        max_message_bytes: u64::from(a.max_message_mb.max(1)) << 20,
        max_recipients: a.max_recipients.max(1),
        command_timeout: duration(
            a.command_timeout.as_deref(),
            "command-timeout",
            d::COMMAND_TIMEOUT,
        )?,
        session_timeout: duration(
            a.session_timeout.as_deref(),
            "session-timeout",
            d::SESSION_TIMEOUT,
        )?,
        auth_failure_delay: duration(
            a.auth_failure_delay.as_deref(),
            "auth-failure-delay",
            d::AUTH_FAILURE_DELAY,
        )?,
        listeners,
    };
    let state_dir = a.state_dir.clone().unwrap_or_else(|| a.quarantine.clone());
    let report = match &a.config {
        Some(path) => {
            let args = crate::ConfigArgs {
                config: Some(path.clone()),
                ..Default::default()
            };
            let mut ov = crate::cmd_run::overrides(&args);
            ov.upstream = Some("http://127.0.0.1:1".into());
            let Some(c) = crate::cmd_run::load_or_report(&args, ov) else {
                return Ok(ExitCode::from(1));
            };
            c.report
        }
        None => None,
    };
    let report_every = duration(Some(&a.report_every), "report-every", Duration::ZERO)?;
    init_logging(&a.log_format);
    // Sessions get half the cores: the trap shares its machine with the services it protects,
    // and its quarantine threads (journal, index, extraction) need the rest. Measured with
    // bench/trap.sh on 2 cores: one session thread answered about 10 % more messages a second
    // than two, which contended with the journal's thread for the same cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores / 2).max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = moat_listen::Shutdown::new();
        let q = moat_trap::run::open_quarantine(&cfg)?;
        let running = moat_trap::run::start(&cfg, &state_dir, q, None, &shutdown).await?;
        for (name, addr, implicit) in &running.listeners {
            tracing::info!(listener = %name, %addr, implicit_tls = implicit,
                quarantine = %cfg.quarantine_dir.display(), "trap is listening");
        }
        if let Some(r) = report {
            tracing::info!(send = r.send, "reports are on");
            let feed = crate::reporting::ReportFeed::open(&state_dir, &cfg.quarantine_dir, r)?;
            let stop = shutdown.clone();
            shutdown.spawn(async move {
                tokio::select! {
                    _ = feed.run_forever(report_every) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.drain(moat_http::app::DRAIN_GRACE).await;
        running.trap.quarantine.flush().await;
        Ok(ExitCode::SUCCESS)
    })
}

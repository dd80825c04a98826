//! `moat run` and `moat check`.

use crate::ConfigArgs;
use moat_config::{load, Config, Overrides};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable), e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Vec<String>,
    /// The app to protect, e.g. http://127.0.0.1:2368.
    #[arg(long)]
    upstream: Option<String>,
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Log format: json (one object per line) or text.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    /// With a command after `--`: how long to wait for the upstream port before reporting
    /// ready anyway (seconds).
    #[arg(long, default_value_t = 300)]
    wait_upstream: u64,
    /// The app to run and protect: `moat run --preset ghost --upstream http://127.0.0.1:2368
    /// -- node current/index.js`. Moat passes SIGTERM and SIGINT on to it and exits with its
    /// status.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Where the client's address comes from, for the start line: the one setting that, wrong,
/// makes every visitor look like one.
fn client_ip_source(s: &moat_config::Server) -> String {
    let nets = |n: &[ipnet::IpNet]| {
        n.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if s.fly_proxy {
        return format!(
            "Fly-Client-IP from Fly's proxy ({}), because FLY_APP_NAME is set",
            nets(&s.trusted_proxies)
        );
    }
    if s.proxy_protocol {
        return "the PROXY protocol header".into();
    }
    if s.trusted_proxies.is_empty() {
        return "the connection's address (no trusted proxies)".into();
    }
    let headers: Vec<&str> = s
        .client_ip_headers
        .iter()
        .map(|h| match h {
            moat_config::ClientIpHeader::XForwardedFor => "X-Forwarded-For",
            moat_config::ClientIpHeader::Forwarded => "Forwarded",
            moat_config::ClientIpHeader::FlyClientIp => "Fly-Client-IP",
            moat_config::ClientIpHeader::CfConnectingIp => "CF-Connecting-IP",
        })
        .collect();
    format!("{} from {}", headers.join(", "), nets(&s.trusted_proxies))
}

pub fn overrides(c: &ConfigArgs) -> Overrides {
    Overrides {
        presets: c.presets.clone(),
        state_dir: c.state_dir.clone(),
        rule_files: c.rules.clone(),
        fly_app: std::env::var("FLY_APP_NAME").ok().filter(|n| !n.is_empty()),
        ..Default::default()
    }
}

/// Loads the config; on errors prints all of them and returns None.
pub fn load_or_report(c: &ConfigArgs, ov: Overrides) -> Option<Config> {
    match load(c.config_path().as_deref(), &ov) {
        Ok(cfg) => Some(cfg),
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", errs.0.len());
            None
        }
    }
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if format == "text" {
        b.init();
    } else {
        b.json().flatten_event(true).with_current_span(false).init();
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut ov = overrides(&a.cfg);
    if !a.listen.is_empty() {
        ov.listen = Some(a.listen.clone());
    }
    ov.upstream = a.upstream.clone();
    let Some(cfg) = load_or_report(&a.cfg, ov.clone()) else {
        return Ok(ExitCode::from(1));
    };
    init_logging(&a.log_format);
    // Outbound names (ACME, RDAP, report APIs, webhooks, a named upstream) go through Moat's
    // own resolver: /etc/resolv.conf, else this fallback.
    moat_dns::host::init(cfg.server.dns_fallback);
    // Reloads read the same file with the same presets and flags as this start did.
    let path = a.cfg.config_path();
    let config_shown = path.as_ref().map_or_else(
        || "embedded defaults".to_string(),
        |p| p.display().to_string(),
    );
    let source: moat_http::live::ConfigSource = Box::new(move || {
        load(path.as_deref(), &ov).map_err(|errs| {
            errs.0
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // The app first, so it boots while Moat binds its listeners.
        let mut app = if a.command.is_empty() { None } else { Some(crate::child::App::spawn(&a.command)?) };
        let reaper = app.as_ref().map(|app| tokio::spawn(crate::child::reap_orphans(app.pid())));
        let moat = crate::app::App::start(cfg, Arc::new(moat_core::SystemClock)).await?;
        let running = &moat.http;
        running.live.set_source(source);
        // Registered here, before the start line: a SIGHUP from then on must reload, never end
        // the process (its default action).
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let (live, stop) = (running.live.clone(), moat.shutdown.clone());
        moat.shutdown.spawn(async move {
            tokio::select! {
                _ = reload_on_hangup(live, hup) => {}
                _ = stop.cancelled() => {}
            }
        });
        if let Some(m) = &moat.mail {
            // Only what listens, each as Postfix or Dovecot would be told to reach it.
            let addr = |a: &Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| format!("unix:{}", p.display())).unwrap_or_default();
            tracing::info!(
                policy = %addr(&m.policy_addr), policy_socket = %path(&m.policy_socket),
                auth_policy = %addr(&m.auth_policy_addr), capture = %addr(&m.capture_addr),
                milter = %addr(&m.milter_addr), milter_socket = %path(&m.milter_socket),
                honey_passwd = %m.shield.honey_path().display(),
                dovecot_header = "auth_policy_server_api_header = Authorization: Bearer <state_dir/mail-policy.token or mail.auth_policy_token>",
                "mail shield is running"
            );
        }
        if let Some(app) = app.as_mut() {
            let upstream = &running.shield.cfg.server.upstream;
            let authority = upstream.authority().map_or_else(String::new, |a| match a.port_u16() {
                Some(_) => a.to_string(),
                None => format!("{}:80", a.host()),
            });
            let limit = std::time::Duration::from_secs(a.wait_upstream);
            let ready = crate::child::wait_for_port(&authority, limit);
            tokio::select! {
                up = ready => if !up {
                    tracing::warn!(upstream = %running.shield.cfg.server.upstream, waited_secs = a.wait_upstream,
                        "the app's port does not answer yet; serving anyway");
                },
                status = app.wait() => {
                    let code = status.map_or(1, crate::child::exit_code);
                    tracing::error!(code, "the app exited before its port answered");
                    moat.stop().await;
                    return Ok(ExitCode::from(code));
                }
            }
        }
        tracing::info!(
            http = %list(&running.http_addrs), tls = %list(&running.tls_addrs), admin = %moat.web.admin_addr.map(|a| a.to_string()).unwrap_or_default(),
            metrics = %moat.web.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
            rules = running.shield.cfg.policy.rules.len(), rate_limits = running.shield.cfg.policy.rate_limits.len(),
            upstream = %running.shield.cfg.server.upstream,
            client_ip = %client_ip_source(&running.shield.cfg.server), config = %config_shown,
            state = %running.shield.cfg.server.state_dir.display(), "moat is running"
        );
        let mut exit = ExitCode::SUCCESS;
        match app.as_mut() {
            None => {
                shutdown_signal().await;
            }
            Some(app) => {
                let status = tokio::select! {
                    sig = shutdown_signal() => {
                        tracing::info!(signal = sig, pid = app.pid(), "passing the signal on to the app");
                        app.stop(sig, crate::child::STOP_GRACE).await
                    }
                    status = app.wait() => status,
                };
                let code = status.map_or(1, crate::child::exit_code);
                tracing::info!(code, "the app exited");
                exit = ExitCode::from(code);
            }
        }
        if let Some(r) = reaper {
            r.abort();
        }
        moat.stop().await;
        Ok(exit)
    })
}

/// Addresses as a user writes them: `127.0.0.1:8080, [::1]:8080`.
fn list(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// SIGHUP re-reads the config (see `moat_http::live`); without this handler it would end the
/// process.
async fn reload_on_hangup(
    live: Arc<moat_http::live::LiveShield>,
    hup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hup) = hup else {
        tracing::warn!("cannot listen for SIGHUP: reload with `moat reload` instead");
        return;
    };
    while hup.recv().await.is_some() {
        let l = live.clone();
        let outcome = tokio::task::spawn_blocking(move || l.reload())
            .await
            .unwrap_or_else(|e| Err(format!("reload failed: {e}")));
        moat_web::admin::log_reload(&outcome, "SIGHUP");
    }
}

/// Waits for SIGTERM or SIGINT; returns which, so it can be passed on to the app.
pub async fn shutdown_signal() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
    }
}

pub fn check(c: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let mut ov = overrides(c);
    let file = c.config_file();
    if file.is_none() {
        // Without a file there is nothing to name the app; check the rest against Ghost's port.
        ov.upstream = Some("http://127.0.0.1:2368".into());
    }
    let Some(cfg) = load_or_report(c, ov) else {
        return Ok(ExitCode::from(1));
    };
    let p = &cfg.policy;
    let http = if cfg.server.listen.is_empty() {
        "http off".to_string()
    } else {
        format!(
            "listen {} -> {}",
            list(&cfg.server.listen),
            cfg.server.upstream
        )
    };
    println!(
        "ok: {} rule(s), {} rate limit(s), {} decoy(s); {http}",
        p.rules.len(),
        p.rate_limits.len(),
        p.decoys.len(),
    );
    if !p.confirms.is_empty() {
        let c = &cfg.cohorts;
        let by = match &c.asn_table {
            Some(t) => format!(
                "autonomous system ({} ranges), else /{} and /{}",
                t.len(),
                c.prefix_v4,
                c.prefix_v6
            ),
            None => format!(
                "/{} and IPv6 /{} (no [cohorts] asn_table)",
                c.prefix_v4, c.prefix_v6
            ),
        };
        println!(
            "cohorts: {} confirm route(s) ({}); clients grouped by {by}, user agent and language",
            p.confirms.len(),
            p.confirms
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &file {
        Some((path, how)) => println!("config: {} ({how})", path.display()),
        None => println!(
            "config: the embedded defaults (no --config, no MOAT_CONFIG, no {})",
            crate::PACKAGED_CONFIG
        ),
    }
    if let Some(m) = &cfg.mail {
        let addr =
            |a: &Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        let either = |a: &Option<std::net::SocketAddr>, p: &Option<std::path::PathBuf>| {
            let v: Vec<String> = a
                .iter()
                .map(|a| a.to_string())
                .chain(p.iter().map(|p| format!("unix:{}", p.display())))
                .collect();
            if v.is_empty() {
                "off".to_string()
            } else {
                v.join(" and ")
            }
        };
        println!(
            "mail: milter {}, policy {}, auth policy {}, capture {}, {} recipient(s) listed, {} map(s)",
            either(&m.milter_listen, &m.milter_socket),
            either(&m.policy_listen, &m.policy_socket),
            addr(&m.auth_policy_listen),
            addr(&m.capture_listen),
            m.recipients.len(),
            m.recipient_maps.len()
        );
    }
    if let Some(l) = &cfg.logs {
        // Reads and compiles every filter: an error names the filter file.
        let jails = crate::log_watcher::build(l)?;
        let names: Vec<&str> = jails.iter().map(|j| j.jail.config.name.as_str()).collect();
        println!("logs: {} jail(s): {}", jails.len(), names.join(", "));
    }
    if let Some(t) = &cfg.trap {
        println!(
            "trap: {} listener(s) {}, quarantine {}",
            t.listeners.len(),
            list(&t.listeners.iter().map(|l| l.listen).collect::<Vec<_>>()),
            t.quarantine_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! The composition root: every component of `moat run`, built from the compiled config in the
//! pipeline's order, under one shutdown.
//!
//! ```text
//! engine (store, detectors' decider, guard) ─┬─ HTTP shield (listeners) ── admin, metrics
//!                                            ├─ mail shield (policy, auth policy, milter, capture)
//!                                            ├─ SMTP trap ── quarantine ── reports
//!                                            ├─ log watcher (jails)
//!                                            └─ nftables enforcer (follows the decisions)
//! ```
//!
//! The sensors share the one engine, so a ban for brute-forcing mail holds at the web door, a
//! jail ban at every shield, and the allowlist wins everywhere. [`App::stop`] begins the
//! shutdown (every listener stops accepting), waits, bounded, for open connections to finish,
//! then closes what holds data: log positions, the quarantine, the decision log, the store.

use anyhow::Context;
use moat_config::Config;
use moat_engine::Engine;
use moat_listen::Shutdown;
use std::sync::Arc;

pub struct App {
    pub shutdown: Shutdown,
    pub http: moat_http::app::Running,
    pub web: moat_web::Web,
    pub mail: Option<moat_mail::server::MailRunning>,
    pub trap: Option<moat_trap::run::RunningTrap>,
    logs: Option<crate::log_watcher::LogWatcher>,
    nft: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn start(cfg: Config, clock: Arc<dyn moat_core::Clock>) -> anyhow::Result<App> {
        let shutdown = Shutdown::new();
        let engine = Engine::open(&cfg, clock).context("opening the decision store")?;
        let mut cluster = None;
        if let Some(c) = &cfg.cluster {
            let settings = moat_cluster::Settings {
                redis: c.redis.clone(),
                prefix: c.prefix.clone(),
                timeout: c.timeout,
                on_unreachable: c.on_unreachable,
            };
            cluster = Some(
                moat_cluster::start(&settings, &engine, &shutdown).context("[cluster] redis")?,
            );
            tracing::info!(prefix = %c.prefix, "cluster: limits and bans shared through Redis");
        }
        let http = moat_http::app::serve(cfg, engine.clone(), &shutdown)
            .await
            .context("starting")?;
        let web = moat_web::start(&http.live, &shutdown).await?;
        let cfg = http.shield.cfg.clone();
        // One writer per quarantine: the trap and the mail shield's capture listener share it
        // when they name the same directory.
        let trap_q = match &cfg.trap {
            Some(t) => Some(moat_trap::run::open_quarantine(t).context("opening the quarantine")?),
            None => None,
        };
        let shared_q = match (&cfg.trap, &cfg.mail, &trap_q) {
            (Some(t), Some(m), Some(q)) if t.quarantine_dir == m.quarantine_dir => Some(q.clone()),
            _ => None,
        };
        start_reports(&cfg, &shutdown)?;
        api_sources(&web, &http.live);
        crate::feeds::start(&cfg, &engine, quarantine_dir(&cfg), &shutdown);
        let mail = moat_mail::server::start(&cfg, engine.clone(), shared_q, &shutdown)
            .await
            .context("starting the mail shield")?;
        if let (Some(c), Some(m)) = (&cluster, &mail) {
            c.share_honey(m.shield.clone(), m.shield.follow_honey(), &shutdown);
        }
        let trap = match (&cfg.trap, trap_q) {
            (Some(t), Some(q)) => {
                let honey: Option<moat_trap::server::HoneyCheck> = mail.as_ref().map(|m| {
                    let shield = m.shield.clone();
                    Arc::new(move |login: &str| shield.is_honey(login))
                        as moat_trap::server::HoneyCheck
                });
                let tr = moat_trap::run::start(t, &cfg.server.state_dir, q, honey, &shutdown)
                    .await
                    .context("starting the SMTP trap")?;
                for (name, addr, implicit) in &tr.listeners {
                    tracing::info!(listener = %name, %addr, implicit_tls = implicit,
                        quarantine = %t.quarantine_dir.display(), "trap is listening");
                }
                Some(tr)
            }
            _ => None,
        };
        // Bans in the kernel too, where the machine allows it.
        let nft = crate::nft::start(&cfg, engine.clone()).await?;
        let logs = match &cfg.logs {
            Some(l) => Some(
                crate::log_watcher::start(l, engine.clone()).context("starting the log watcher")?,
            ),
            None => None,
        };
        let app = App {
            shutdown,
            http,
            web,
            mail,
            trap,
            logs,
            nft,
        };
        app.register_metrics();
        if let Some(c) = cluster {
            app.http
                .shield
                .metrics
                .add_source(Box::new(move || c.metrics()));
        }
        app.connect_events();
        Ok(app)
    }

    /// The trap and the capture listener are sensors too: their logins and captures go on
    /// the engine's event bus (they never lead to a ban).
    fn connect_events(&self) {
        let sink = |sensor: moat_core::Sensor| -> moat_trap::server::EventSink {
            let engine = self.http.shield.engine.clone();
            Arc::new(move |ip, login: Option<&str>, kind| {
                let subject = moat_core::Subject {
                    ip,
                    account: login.map(str::to_string),
                    email: None,
                };
                engine.emit(sensor, subject, kind)
            })
        };
        if let Some(t) = &self.trap {
            t.trap.set_events(sink(moat_core::Sensor::Trap));
        }
        if let Some(c) = self.mail.as_ref().and_then(|m| m.capture.as_ref()) {
            c.set_events(sink(moat_core::Sensor::Mail));
        }
    }

    /// Every component's counters on the one `/metrics`.
    fn register_metrics(&self) {
        let metrics = &self.http.shield.metrics;
        if let Some(t) = &self.trap {
            let trap = t.trap.clone();
            metrics.add_source(Box::new(move || trap.metrics()));
        }
        if let Some(m) = &self.mail {
            if let (Some(c), None) = (&m.capture, &self.trap) {
                let c = c.clone();
                metrics.add_source(Box::new(move || c.metrics()));
            }
            let shield = m.shield.clone();
            metrics.add_source(Box::new(move || shield.stats.metrics()));
            if let Some(s) = m.milter_stats.clone() {
                metrics.add_source(Box::new(move || s.metrics()));
            }
        }
    }

    /// Stops accepting everywhere, lets open connections finish (bounded), then closes what
    /// holds data.
    pub async fn stop(self) {
        tracing::info!("shutting down");
        self.shutdown.drain(moat_http::app::DRAIN_GRACE).await;
        if let Some(n) = self.nft {
            // Between batches: what is in the kernel stays, with its timeouts, and is
            // reconciled at the next start.
            n.abort();
        }
        if let Some(l) = self.logs {
            l.shutdown().await;
        }
        if let Some(t) = &self.trap {
            t.trap.quarantine.flush().await;
        }
        if let Some(m) = self.mail {
            m.shutdown();
        }
        self.http.shutdown().await;
    }
}

/// Reports from whatever fills the quarantine (the trap, or the capture listener), every 10 s
/// until shutdown.
fn start_reports(cfg: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let (Some(r), Some(q)) = (&cfg.report, quarantine_dir(cfg)) else {
        return Ok(());
    };
    let feed = crate::reporting::ReportFeed::open(&cfg.server.state_dir, &q, r.clone())
        .context("opening the reporter")?;
    tracing::info!(send = r.send, outbox = %r.outbox.display(), "reports are on");
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        tokio::select! {
            _ = feed.run_forever(std::time::Duration::from_secs(10)) => {}
            _ = stop.cancelled() => {}
        }
    });
    Ok(())
}

/// Where captured mail is kept, whichever captures it (the trap, or the mail shield's capture
/// listener or milter).
/// The admin API's views of the feeds followed and the reports sent, read from the state
/// directory at each call (as `moat feeds list` and `moat quarantine report` read them).
fn api_sources(web: &moat_web::Web, live: &Arc<moat_http::live::LiveShield>) {
    let l = live.clone();
    let _ = web.api_sources.feeds.set(Box::new(move || {
        crate::cmd_feeds::followed(&l.current().cfg)
    }));
    let l = live.clone();
    let _ = web.api_sources.reports.set(Box::new(move |n| {
        let cfg = l.current().cfg.clone();
        let db = crate::reporting::db_path(&cfg.server.state_dir);
        if !db.is_file() {
            return Ok(Vec::new());
        }
        let reporter = moat_report::Reporter::open(&db, cfg.report.clone().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let rows = reporter.history(n).map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect())
    }));
}

fn quarantine_dir(cfg: &Config) -> Option<std::path::PathBuf> {
    cfg.trap
        .as_ref()
        .map(|t| t.quarantine_dir.clone())
        .or_else(|| {
            cfg.mail.as_ref().and_then(|m| {
                (m.capture_listen.is_some()
                    || m.milter_listen.is_some()
                    || m.milter_socket.is_some())
                .then(|| m.quarantine_dir.clone())
            })
        })
}

//! Moat's admin side, beside the pipeline rather than in it: the admin API (bans, reload,
//! `moat top`'s figures), Prometheus `/metrics`, and the token that guards them. It reads the
//! shield and the engine; nothing on a request path waits on it. The dashboard
//! (`/dashboard/`) reads the admin API through its router.
//!
//! Listens on loopback by default, through the same listener component as every front door,
//! with a gate: an address the guard has banned is closed at accept.

pub mod admin;
pub mod admin_top;
pub mod api;
pub mod asn;
pub mod dashboard;
pub mod exports;
pub mod lapi;

use moat_config::Config;
use moat_http::live::LiveShield;
use moat_listen::{Listener, Settings, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;

/// In the state directory: the admin listener's address, written at start.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

#[derive(Debug, thiserror::Error)]
#[error("admin token: {0}")]
pub struct TokenError(String);

/// What started.
pub struct Web {
    /// `None`: disabled, or its port was taken (logged).
    pub admin_addr: Option<SocketAddr>,
    /// The token-less `/metrics` listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub admin_token: String,
    /// The admin API's views of the parts the composition root starts later (feeds, reports).
    pub api_sources: Arc<api::sources::Sources>,
}

/// Where the admin token is kept when the config gives none: `admin.token_file`, else
/// `state_dir/admin.token`.
pub fn admin_token_path(cfg: &Config) -> std::path::PathBuf {
    cfg.admin
        .token_file
        .clone()
        .unwrap_or_else(|| cfg.server.state_dir.join("admin.token"))
}

/// The admin token: configured, read from a file, or generated once into the state directory
/// (mode 0600) so that the admin API is never open by default.
pub fn admin_token(cfg: &Config) -> Result<String, TokenError> {
    if let Some(t) = &cfg.admin.token {
        return Ok(t.clone());
    }
    let path = admin_token_path(cfg);
    let (token, new) =
        moat_core::secret::load_or_create_token(&path).map_err(|e| TokenError(e.to_string()))?;
    if new {
        tracing::info!(path = %path.display(), "generated an admin token");
    }
    Ok(token)
}

/// Listener settings: a few connections (an operator, a scraper, CLI calls; more wait in the
/// backlog), and banned addresses closed at accept (the admin API has nothing to show them).
/// Never loopback: a ban that covered it would lock the owner's own `moat unban` out.
fn settings(name: &str, live: &Arc<LiveShield>) -> Settings {
    let mut s = Settings::new(name, admin::MAX_CONNECTIONS);
    let engine = live.current().engine.clone();
    s.gate = Some(Arc::new(move |ip| {
        !ip.to_canonical().is_loopback()
            && matches!(engine.check(ip), moat_engine::GuardVerdict::Banned(_))
    }));
    s
}

/// Starts the admin and metrics listeners the config asks for, under `shutdown`. Either is a
/// convenience: a port already taken (another program's, say a Prometheus on the same machine)
/// is logged and leaves the shields running.
pub async fn start(live: &Arc<LiveShield>, shutdown: &Shutdown) -> Result<Web, TokenError> {
    let cfg = live.current().cfg.clone();
    let admin_token = admin_token(&cfg)?;
    let mut web = Web {
        admin_addr: None,
        metrics_addr: None,
        admin_token: admin_token.clone(),
        api_sources: Arc::default(),
    };
    let token = Arc::new(admin_token);
    let routers = admin::routers(live, &token, web.api_sources.clone(), shutdown);
    let addr_file = cfg.server.state_dir.join(ADMIN_ADDR_FILE);
    if let Some(listen) = cfg.admin.listen {
        match Listener::tcp(listen, settings("admin", live)).await {
            Ok(l) => {
                web.admin_addr = l.local_addr();
                // For `moat reload` and other local tools: the port really taken.
                if let Some(addr) = web.admin_addr {
                    if let Err(e) = std::fs::write(&addr_file, format!("{addr}\n")) {
                        tracing::warn!(error = %e, "cannot record the admin address in the state directory");
                    }
                }
                shutdown.spawn(admin::serve(
                    live.clone(),
                    l,
                    token,
                    routers,
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "no admin listener (metrics, bans API, reload): the shields run without it")
            }
        }
    }
    if web.admin_addr.is_none() {
        let _ = std::fs::remove_file(&addr_file);
    }
    if let Some(listen) = cfg.admin.metrics_listen {
        match Listener::tcp(listen, settings("metrics", live)).await {
            Ok(l) => {
                web.metrics_addr = l.local_addr();
                shutdown.spawn(admin::serve_metrics(live.clone(), l, shutdown.clone()));
            }
            Err(e) => {
                tracing::error!(error = %e, "no metrics listener: the shields run without it")
            }
        }
    }
    Ok(web)
}

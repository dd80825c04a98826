//! Assembles a running HTTP shield from a compiled config: store, engine, shield, listeners,
//! TLS and ACME, admin. `moat run`, `moat demo` and the tests all start Moat through
//! [`start`], binding port 0 where they want the OS to choose.

use crate::acme::{AcmeChallenge, AcmeManager, AcmeSettings, Http01Tokens};
use crate::live::LiveShield;
use crate::proof::ProofService;
use crate::shield::Shield;
use crate::tls::{self, CertStore};
use moat_config::{AcmeChallengeKind, Config, StoreKind};
use moat_core::Clock;
use moat_engine::Engine;
use moat_store::{MemoryStore, SqliteStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Store(#[from] moat_store::StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error(transparent)]
    Proof(#[from] crate::proof::ProofError),
    #[error("admin token: {0}")]
    Token(String),
}

/// In the state directory: the admin listener's address, written at start.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    /// `None`: disabled, or its port was taken (logged).
    pub admin_addr: Option<SocketAddr>,
    /// The token-less `/metrics` listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    pub admin_token: String,
    /// The shield as started; reloads put a new one in `live`, sharing its engine and metrics.
    pub shield: Arc<Shield>,
    pub live: Arc<LiveShield>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish (bounded), and stops the decider.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // What the log held back this minute is summarised before the process ends.
        self.shield.engine.decision_log().flush();
        self.shield.engine.shutdown();
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| AppError::Bind(addr, e))
}

pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, AppError> {
    Ok(match cfg.server.store {
        StoreKind::Sqlite => Arc::new(SqliteStore::open_dir(&cfg.server.state_dir)?),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    })
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
pub fn admin_token(cfg: &Config) -> Result<String, AppError> {
    if let Some(t) = &cfg.admin.token {
        return Ok(t.clone());
    }
    let path = admin_token_path(cfg);
    let (token, new) = moat_core::secret::load_or_create_token(&path)
        .map_err(|e| AppError::Token(e.to_string()))?;
    if new {
        tracing::info!(path = %path.display(), "generated an admin token");
    }
    Ok(token)
}

/// How many serving threads: `MOAT_WORKERS`, else `server.workers`, else half the cores.
///
/// Half, not one per core as nginx's `worker_processes auto`: Moat shares its small machine
/// with the app it protects, and the kernel's TCP work for both sides of every request runs
/// there too. On two cores shared with an upstream and a load generator, one serving thread
/// did 12-16 % more requests per second than two (fewer context switches, each event-loop
/// pass handling more ready connections); see BENCHMARKS.md.
fn worker_count(configured: Option<usize>) -> usize {
    std::env::var("MOAT_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or(configured)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) / 2)
        .max(1)
}

/// Thread per core: each worker runs a single-threaded runtime with its own upstream pool, so a
/// request never crosses threads (no work-stealing wake-ups, no shared pool lock). One acceptor
/// task places each connection on the least busy worker. Returns the bound address (port 0
/// resolved).
async fn spawn_workers(
    addr: SocketAddr,
    shield: &Arc<LiveShield>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    rx: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<SocketAddr, AppError> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr().map_err(|e| AppError::Bind(addr, e))?;
    let mut handles = Vec::new();
    let cfg = shield.current().cfg.clone();
    for i in 0..worker_count(cfg.server.workers) {
        let (tx, conn_rx) = tokio::sync::mpsc::unbounded_channel();
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        handles.push(crate::server::WorkerHandle {
            tx,
            active: active.clone(),
        });
        let (shield, tls, rx) = (shield.clone(), tls.clone(), rx.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("moat-http-{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        rt.block_on(crate::server::worker_loop(shield, conn_rx, active, tls, rx))
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start a worker runtime"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| AppError::Bind(bound, e))?;
        tasks.push(tokio::spawn(async move {
            let _ = done_rx.await;
        }));
    }
    let max = cfg.limits.max_connections;
    tasks.push(tokio::spawn(crate::server::accept_loop(
        listener,
        handles,
        max,
        rx.clone(),
    )));
    Ok(bound)
}

pub async fn start(cfg: Config, clock: Arc<dyn Clock>) -> Result<Running, AppError> {
    let cfg = Arc::new(cfg);
    std::fs::create_dir_all(&cfg.server.state_dir)
        .map_err(|e| moat_store::StoreError::Dir(cfg.server.state_dir.display().to_string(), e))?;
    let store = open_store(&cfg)?;
    let engine = Engine::start(
        store,
        clock,
        cfg.bans.clone(),
        cfg.server.prefix_lens,
        &cfg.policy.rate_limits,
    );
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut acme_tokens = None;
    let mut acceptor = None;
    if let Some(t) = &cfg.tls {
        let certs = Arc::new(CertStore::new());
        if let (Some(c), Some(k)) = (&t.cert, &t.key) {
            certs.set_default(Some(tls::load_certified_key(c, k)?));
        }
        if let Some(a) = &cfg.acme {
            let mut s = AcmeSettings::new(a.domains.clone(), cfg.server.state_dir.clone());
            s.contact_email = a.email.clone();
            s.directory_url = a.directory.clone();
            s.challenge = match a.challenge {
                AcmeChallengeKind::Http01 => AcmeChallenge::Http01,
                AcmeChallengeKind::TlsAlpn01 => AcmeChallenge::TlsAlpn01,
            };
            s.renew_before = a.renew_before;
            s.extra_roots_pem = a.directory_ca.clone();
            let tokens = Http01Tokens::new();
            let mgr = AcmeManager::new(s, certs.clone(), tokens.clone())?;
            mgr.install_stored();
            acme_tokens = Some(tokens);
            tasks.push(tokio::spawn(mgr.run(rx.clone())));
        }
        acceptor = Some(tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?));
    }

    let proof = if cfg.proof.active {
        Some(Arc::new(ProofService::new(&cfg)?))
    } else {
        None
    };
    let live = Arc::new(LiveShield::new(Shield::new(
        cfg.clone(),
        engine,
        acme_tokens,
        proof,
    )));
    let shield = live.current();
    // The minute's held-back decisions are summarised even when the flood has stopped.
    let (ticker, mut stop) = (live.clone(), rx.clone());
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            let e = &ticker.current().engine;
            e.decision_log().tick(e.now_ms());
        }
    }));
    let mut http_addrs = Vec::new();
    for a in &cfg.server.listen {
        http_addrs.push(spawn_workers(*a, &live, None, &rx, &mut tasks).await?);
    }
    let mut tls_addrs = Vec::new();
    if let (Some(t), Some(acc)) = (&cfg.tls, acceptor) {
        for a in &t.listen {
            tls_addrs.push(spawn_workers(*a, &live, Some(acc.clone()), &rx, &mut tasks).await?);
        }
    }
    let admin_token = admin_token(&cfg)?;
    // The admin listener is a convenience: a port already taken (another program's, say a
    // Prometheus on the same machine) is logged and leaves the shields running.
    let mut admin_addr = None;
    if let Some(listen) = cfg.admin.listen {
        match bind(listen).await.and_then(|l| {
            let a = l.local_addr().map_err(|e| AppError::Bind(listen, e))?;
            Ok((l, a))
        }) {
            Ok((l, addr)) => {
                admin_addr = Some(addr);
                // For `moat reload` and other local tools: the port really taken.
                if let Err(e) = std::fs::write(
                    cfg.server.state_dir.join(ADMIN_ADDR_FILE),
                    format!("{addr}\n"),
                ) {
                    tracing::warn!(error = %e, "cannot record the admin address in the state directory");
                }
                tasks.push(tokio::spawn(crate::admin::serve(
                    live.clone(),
                    l,
                    admin_token.clone(),
                    rx.clone(),
                )));
            }
            Err(e) => {
                tracing::error!(error = %e, "no admin listener (metrics, bans API, reload): the shields run without it")
            }
        }
    }
    if admin_addr.is_none() {
        let _ = std::fs::remove_file(cfg.server.state_dir.join(ADMIN_ADDR_FILE));
    }
    let mut metrics_addr = None;
    if let Some(listen) = cfg.admin.metrics_listen {
        match bind(listen).await {
            Ok(l) => {
                metrics_addr = l.local_addr().ok();
                tasks.push(tokio::spawn(crate::admin::serve_metrics(
                    live.clone(),
                    l,
                    rx.clone(),
                )));
            }
            Err(e) => {
                tracing::error!(error = %e, "no metrics listener: the shields run without it")
            }
        }
    }
    Ok(Running {
        http_addrs,
        tls_addrs,
        admin_addr,
        metrics_addr,
        admin_token,
        shield,
        live,
        shutdown: tx,
        tasks,
    })
}

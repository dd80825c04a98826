//! Assembles a running HTTP shield from a compiled config: shield, listeners, TLS and ACME
//! (the admin API is `moat-web`'s, on the same shield). The binary's composition root gives it the engine and the process's shutdown
//! ([`serve`]); tests and `moat demo` use [`start`], which makes both for the shield alone.
//! Either binds port 0 where the caller wants the OS to choose.

use crate::acme::{AcmeChallenge, AcmeManager, AcmeSettings, Http01Tokens};
use crate::live::LiveShield;
use crate::proof::ProofService;
use crate::shield::Shield;
use crate::tls::{self, CertStore};
use moat_config::{AcmeChallengeKind, Config};
use moat_core::Clock;
use moat_engine::Engine;
use moat_listen::{Listener, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;

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
}

pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    /// The shield as started; reloads put a new one in `live`, sharing its engine and metrics.
    pub shield: Arc<Shield>,
    pub live: Arc<LiveShield>,
    /// Set by [`start`], which made the engine and the shutdown for this shield alone.
    owned: Option<Shutdown>,
}

/// How long open connections get to finish once shutdown begins.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// For a shield made by [`start`]: stops accepting, lets open requests finish (bounded),
    /// and stops the decider. Under a composition root, its shutdown does this.
    pub async fn shutdown(self) {
        if let Some(s) = self.owned {
            s.drain(DRAIN_GRACE).await;
        }
        // What the log held back this minute is summarised before the process ends.
        self.shield.engine.decision_log().flush();
        self.shield.engine.shutdown();
    }
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
    shutdown: &Shutdown,
) -> Result<SocketAddr, AppError> {
    let cfg = shield.current().cfg.clone();
    // No guard check at accept here: a banned person must still see the ban page and the way
    // out through the proof, and a banned script the decoy it expects; both need the request.
    // PROXY and TLS run on the worker threads, where their CPU belongs.
    let settings = moat_listen::Settings::new(
        if tls.is_some() { "https" } else { "http" },
        cfg.limits.max_connections,
    );
    let listener = Listener::tcp(addr, settings)
        .await
        .map_err(|e| AppError::Bind(addr, e.source))?;
    let bound = listener
        .local_addr()
        .ok_or_else(|| AppError::Bind(addr, std::io::ErrorKind::AddrNotAvailable.into()))?;
    let mut handles = Vec::new();
    for i in 0..worker_count(cfg.server.workers) {
        let (tx, conn_rx) = tokio::sync::mpsc::unbounded_channel();
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        handles.push(crate::server::WorkerHandle {
            tx,
            active: active.clone(),
        });
        let (shield, tls, rx) = (shield.clone(), tls.clone(), shutdown.watch());
        // The shutdown waits for the thread's connections to end.
        let held = shutdown.hold();
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
                drop(held);
            })
            .map_err(|e| AppError::Bind(bound, e))?;
    }
    shutdown.spawn(crate::server::accept_loop(
        listener,
        handles,
        shutdown.clone(),
    ));
    Ok(bound)
}

/// The shield alone, with an engine and a shutdown of its own (tests, `moat demo`).
pub async fn start(cfg: Config, clock: Arc<dyn Clock>) -> Result<Running, AppError> {
    let engine = Engine::open(&cfg, clock)?;
    let shutdown = Shutdown::new();
    let mut r = serve(cfg, engine, &shutdown).await?;
    r.owned = Some(shutdown);
    Ok(r)
}

/// The shield on the given engine, its tasks under `shutdown`.
pub async fn serve(
    cfg: Config,
    engine: Arc<Engine>,
    shutdown: &Shutdown,
) -> Result<Running, AppError> {
    let cfg = Arc::new(cfg);
    let rx = shutdown.watch();

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
            shutdown.spawn(mgr.run(rx.clone()));
        }
        acceptor = Some(tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?));
    }

    let proof = if cfg.proof.active {
        Some(Arc::new(ProofService::new(&cfg)?))
    } else {
        None
    };
    let mut first = Shield::new(cfg.clone(), engine, acme_tokens, proof);
    first.restore_cohorts();
    let live = Arc::new(LiveShield::new(first));
    let shield = live.current();
    // What was learned of the cohorts is written every few minutes and at shutdown.
    if crate::shield::cohort_file::path(&cfg).is_some() {
        let (saver, mut stop) = (live.clone(), rx.clone());
        shutdown.spawn(async move {
            let every = crate::shield::cohort_file::SAVE_EVERY;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.changed() => true,
                };
                let s = saver.current();
                let _ = tokio::task::spawn_blocking(move || s.save_cohorts()).await;
                if last {
                    return;
                }
            }
        });
    }
    // The minute's held-back decisions are summarised even when the flood has stopped.
    let (ticker, mut stop) = (live.clone(), rx.clone());
    shutdown.spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            let e = &ticker.current().engine;
            e.decision_log().tick(e.now_ms());
        }
    });
    let mut http_addrs = Vec::new();
    for a in &cfg.server.listen {
        http_addrs.push(spawn_workers(*a, &live, None, shutdown).await?);
    }
    let mut tls_addrs = Vec::new();
    if let (Some(t), Some(acc)) = (&cfg.tls, acceptor) {
        for a in &t.listen {
            tls_addrs.push(spawn_workers(*a, &live, Some(acc.clone()), shutdown).await?);
        }
    }
    Ok(Running {
        http_addrs,
        tls_addrs,
        shield,
        live,
        owned: None,
    })
}

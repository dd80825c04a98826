//! Starting a configured trap: quarantine, TLS, login policy and every listener.

use crate::login::LoginRules;
use crate::quarantine::{Quarantine, QuarantineConfig};
use crate::server::{serve, HoneyCheck, ListenerConfig, Trap, TrapLimits};
use crate::session::Limits;
use moat_config::{Trap as TrapConfig, TrapTls};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("quarantine: {0}")]
    Quarantine(#[from] crate::quarantine::QuarantineError),
    #[error("trap TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("trap cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

pub struct RunningTrap {
    pub trap: Arc<Trap>,
    /// `(name, bound address, implicit TLS)` per listener.
    pub listeners: Vec<(String, SocketAddr, bool)>,
}

/// Opens the quarantine a trap config names.
pub fn open_quarantine(cfg: &TrapConfig) -> Result<Quarantine, StartError> {
    let mut q = QuarantineConfig::new(&cfg.quarantine_dir);
    q.max_bytes = cfg.quota_bytes;
    Ok(Quarantine::open(q)?)
}

/// Binds every listener and starts serving until `shutdown`. `quarantine` may be shared with
/// the mail shield's capture listener; `honey` asks the mail shield whether a login is a honey
/// account.
pub async fn start(
    cfg: &TrapConfig,
    state_dir: &Path,
    quarantine: Quarantine,
    honey: Option<HoneyCheck>,
    shutdown: &moat_listen::Shutdown,
) -> Result<RunningTrap, StartError> {
    let needs_tls = cfg.listeners.iter().any(|l| l.tls != TrapTls::None);
    let tls = if !needs_tls {
        None
    } else if let Some((cert, key)) = &cfg.tls_files {
        Some(crate::tls::from_files(cert, key)?)
    } else {
        Some(crate::tls::self_signed(state_dir, &cfg.hostname)?)
    };
    let trap = Trap::new(
        quarantine,
        tls,
        honey,
        TrapLimits {
            max_sessions: cfg.max_sessions as usize,
            max_per_ip: cfg.max_sessions_per_ip as usize,
            login: LoginRules {
                top_passwords: cfg.top_passwords as usize,
                kth_attempt: cfg.kth_attempt,
            },
        },
    );
    let mut out = RunningTrap {
        trap: trap.clone(),
        listeners: Vec::new(),
    };
    // Every port of the trap counts its sessions under one set of caps.
    let mut caps: Option<moat_listen::Caps> = None;
    for l in &cfg.listeners {
        let listener = moat_listen::Listener::tcp(l.listen, trap.listener_settings(&l.name))
            .await
            .map_err(|e| StartError::Bind(l.listen, e.source))?;
        let listener = match &caps {
            Some(c) => listener.sharing(c),
            None => {
                caps = Some(listener.caps());
                listener
            }
        };
        let bound = listener.local_addr().unwrap_or(l.listen);
        let mut lc = ListenerConfig::trap(bound);
        lc.name = l.name.clone();
        lc.implicit_tls = l.tls == TrapTls::Implicit;
        lc.limits = Limits {
            hostname: cfg.hostname.clone(),
            max_size: cfg.max_message_bytes as usize,
            max_rcpts: cfg.max_recipients as usize,
            starttls: l.tls == TrapTls::StartTls,
            ..Limits::default()
        };
        lc.command_timeout = cfg.command_timeout;
        lc.session_timeout = cfg.session_timeout;
        lc.auth_failure_delay = cfg.auth_failure_delay;
        if cfg.auth_failure_delay.is_zero() {
            lc.auth_delay = std::time::Duration::ZERO;
        }
        // STARTTLS is only offered when the listener allows it.
        if l.tls == TrapTls::None {
            lc.limits.starttls = false;
        }
        out.listeners.push((l.name.clone(), bound, lc.implicit_tls));
        shutdown.spawn(serve(
            listener,
            Arc::new(lc),
            trap.clone(),
            shutdown.clone(),
        ));
    }
    Ok(out)
}

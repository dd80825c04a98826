//! The mail shield's listeners: Postfix policy (TCP, line protocol), Dovecot auth policy (HTTP),
//! and the capture SMTP listener. Each connection is a task; a malformed line or an idle
//! connection is logged and closed without touching any other.

use crate::authpolicy::{self, AuthRequest, Command};
use crate::policy::{reply, Parser};
use crate::shield::MailShield;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use moat_engine::Engine;
use moat_listen::{Listener, Settings, Shutdown};
use moat_trap::quarantine::{Quarantine, QuarantineConfig};
use moat_trap::server::{ListenerConfig, Trap, TrapLimits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("quarantine: {0}")]
    Quarantine(String),
    #[error("socket {0}: {1}")]
    Socket(String, std::io::Error),
    #[error("auth policy token: {0}")]
    Token(String),
    #[error("DNS resolver for sender checks: {0}")]
    Dns(String),
}

pub struct MailRunning {
    pub policy_addr: Option<SocketAddr>,
    pub policy_socket: Option<std::path::PathBuf>,
    pub auth_policy_addr: Option<SocketAddr>,
    pub capture_addr: Option<SocketAddr>,
    pub milter_addr: Option<SocketAddr>,
    pub milter_socket: Option<std::path::PathBuf>,
    pub milter_stats: Option<Arc<crate::milter::server::MilterStats>>,
    /// The capture listener's trap (for its counters).
    pub capture: Option<Arc<moat_trap::server::Trap>>,
    /// What Dovecot must send: `auth_policy_server_api_header = Authorization: Bearer TOKEN`.
    pub auth_policy_token: String,
    pub shield: Arc<MailShield>,
}

impl MailRunning {
    /// After the process's shutdown has drained the listeners: the shield's own state.
    pub fn shutdown(self) {
        self.shield.shutdown();
    }
}

/// Postfix's and Dovecot's connections: past the cap they wait in the kernel's backlog
/// (both retry on their own timeouts) rather than each one costing a task and a buffer.
async fn bind(a: SocketAddr, name: &str, cap: usize) -> Result<Listener, MailError> {
    Listener::tcp(a, Settings::new(name, cap))
        .await
        .map_err(|e| MailError::Bind(a, e.source))
}

/// Binds the configured listeners and starts serving until `shutdown`. `state_dir` holds the
/// generated token. `quarantine`: the one already opened for the SMTP trap, when it shares the
/// directory (one writer per quarantine); otherwise the capture listener opens its own.
pub async fn start(
    cfg: &moat_config::Config,
    engine: Arc<Engine>,
    quarantine: Option<Quarantine>,
    shutdown: &Shutdown,
) -> Result<Option<MailRunning>, MailError> {
    let Some(mcfg) = cfg.mail.clone() else {
        return Ok(None);
    };
    let token = match &mcfg.auth_policy_token {
        Some(t) => t.clone(),
        None => {
            let path = cfg.server.state_dir.join("mail-policy.token");
            moat_core::secret::load_or_create_token(&path)
                .map_err(|e| MailError::Token(e.to_string()))?
                .0
        }
    };
    let idle = mcfg.idle_timeout;
    let cap = mcfg.max_connections.max(1);
    let shield = Arc::new(MailShield::new(
        mcfg.clone(),
        engine,
        cfg.server.prefix_lens,
    ));
    let mut out = MailRunning {
        policy_addr: None,
        policy_socket: None,
        auth_policy_addr: None,
        capture_addr: None,
        milter_addr: None,
        milter_socket: None,
        milter_stats: None,
        capture: None,
        auth_policy_token: token.clone(),
        shield: shield.clone(),
    };
    if let Some(a) = mcfg.policy_listen {
        let l = bind(a, "policy", cap).await?;
        out.policy_addr = l.local_addr();
        let (s, stop) = (shield.clone(), shutdown.clone());
        shutdown.spawn(l.serve(shutdown.clone(), move |c| {
            policy_conn(c.stream, c.peer.to_string(), s.clone(), idle, stop.clone())
        }));
    }
    if let Some(path) = &mcfg.policy_socket {
        let l = Listener::unix(path, Settings::new("policy", cap))
            .map_err(|e| MailError::Socket(path.display().to_string(), e.source))?;
        out.policy_socket = Some(path.clone());
        let (s, stop) = (shield.clone(), shutdown.clone());
        shutdown.spawn(l.serve(shutdown.clone(), move |c| {
            policy_conn(c.stream, c.peer.to_string(), s.clone(), idle, stop.clone())
        }));
    }
    if let Some(a) = mcfg.auth_policy_listen {
        let l = bind(a, "auth-policy", cap).await?;
        out.auth_policy_addr = l.local_addr();
        let s = shield.clone();
        let expected: Arc<str> = format!("Bearer {token}").into();
        shutdown.spawn(l.serve(shutdown.clone(), move |c| {
            auth_conn(c.stream, s.clone(), expected.clone())
        }));
    }
    shield.ensure_honey_file();
    // One writer per quarantine: the capture listener and the milter share it.
    let quarantine = match quarantine {
        Some(q) => Some(q),
        None if mcfg.capture_listen.is_some()
            || mcfg.milter_listen.is_some()
            || mcfg.milter_socket.is_some() =>
        {
            Some(
                Quarantine::open(QuarantineConfig::new(&mcfg.quarantine_dir))
                    .map_err(|e| MailError::Quarantine(e.to_string()))?,
            )
        }
        None => None,
    };
    let milter_at = match (&mcfg.milter_listen, &mcfg.milter_socket, &quarantine) {
        (Some(a), _, Some(_)) => {
            // Bound here, served on the milter's own thread.
            let l = std::net::TcpListener::bind(a).map_err(|e| MailError::Bind(*a, e))?;
            out.milter_addr = l.local_addr().ok();
            Some(crate::milter::server::MilterListener::Tcp(l))
        }
        (None, Some(path), Some(_)) => {
            let l = Listener::bind_unix_std(path)
                .map_err(|e| MailError::Socket(path.display().to_string(), e.source))?;
            out.milter_socket = Some(path.clone());
            Some(crate::milter::server::MilterListener::Unix(l, path.clone()))
        }
        _ => None,
    };
    if let (Some(l), Some(q)) = (milter_at, &quarantine) {
        let dsn = match mcfg.dsn_relay {
            Some(relay) => Some(crate::milter::server::DsnSender {
                check: crate::sender_auth::SenderCheck::new(mcfg.dns_server, &mcfg.hostname)
                    .map_err(MailError::Dns)?,
                relay,
                hostname: mcfg.hostname.clone(),
            }),
            None => None,
        };
        let stats = Arc::new(crate::milter::server::MilterStats::default());
        out.milter_stats = Some(stats.clone());
        let ctx = Arc::new(crate::milter::server::MilterContext {
            policy: shield.clone(),
            quarantine: q.clone(),
            dsn,
            stats,
            idle,
            max_connections: cap,
            shutdown: shutdown.clone(),
        });
        crate::milter::server::spawn_thread(l, ctx, shutdown.clone())
            .map_err(|e| MailError::Socket("the milter's thread".into(), e))?;
    }
    if let (Some(a), Some(q)) = (mcfg.capture_listen, quarantine) {
        // Every connection comes from Postfix itself: a per-address cap would only refuse
        // Postfix's own parallel deliveries, so the total cap is the only one.
        let limits = TrapLimits::default();
        let trap = Trap::new(
            q,
            None,
            None,
            TrapLimits {
                max_per_ip: limits.max_sessions,
                ..limits
            },
        );
        let l = Listener::tcp(a, trap.listener_settings("capture"))
            .await
            .map_err(|e| MailError::Bind(a, e.source))?;
        out.capture_addr = l.local_addr();
        out.capture = Some(trap.clone());
        let lc = Arc::new(ListenerConfig::capture(a));
        shutdown.spawn(moat_trap::server::serve(l, lc, trap, shutdown.clone()));
    }
    // The first audit before any listener answers: a bot's first attempts must count
    // towards honey accounts under the gate the configuration really gives. The task then
    // audits again only on change (or after a minute), not a second time at once.
    let (s, c) = (shield.clone(), mcfg.clone());
    let seen = tokio::task::spawn_blocking(move || {
        let seen = crate::postfix_probe::config_mtimes(&c.postfix_config_dir);
        s.set_honey_gate(postfix_gate(&c));
        seen
    })
    .await
    .ok();
    let stop = shutdown.clone();
    let gate = honey_gate(shield.clone(), mcfg.clone(), seen);
    shutdown.spawn(async move {
        tokio::select! {
            _ = gate => {}
            _ = stop.cancelled() => {}
        }
    });
    // Housekeeping: recipient maps reloaded on change, honey accounts expired.
    let (s, stop) = (shield.clone(), shutdown.clone());
    shutdown.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let s2 = s.clone();
            let _ = tokio::task::spawn_blocking(move || {
                s2.reload_recipients();
                s2.expire_honey();
            })
            .await;
        }
    });
    Ok(Some(out))
}

/// Keeps the honey gate true to Postfix's configuration (`seen`: the files' times at the
/// audit made at start): audited again within two
/// seconds of a change to `main.cf` or `master.cf`, and every minute regardless (an included
/// map or a `postconf -e` by another tool may change what the files' times do not show).
async fn honey_gate(
    shield: Arc<MailShield>,
    cfg: moat_config::Mail,
    mut seen: Option<Vec<Option<std::time::SystemTime>>>,
) {
    use crate::postfix_probe::config_mtimes;
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let dir = cfg.postfix_config_dir.clone();
        let mtimes = tokio::task::spawn_blocking(move || config_mtimes(&dir))
            .await
            .ok();
        if seen.is_some() && mtimes == seen && last.elapsed() < Duration::from_secs(60) {
            continue;
        }
        seen = mtimes;
        last = tokio::time::Instant::now();
        let (s, c) = (shield.clone(), cfg.clone());
        let _ = tokio::task::spawn_blocking(move || s.set_honey_gate(postfix_gate(&c))).await;
    }
}

/// What the Postfix audit says of honey accounts (blocking: runs `postconf`).
fn postfix_gate(cfg: &moat_config::Mail) -> Result<(), String> {
    match crate::postfix_probe::audit_postfix(cfg) {
        Ok(audit) => audit.honey_safe(),
        Err(e) => Err(format!("cannot read Postfix's configuration: {e}")),
    }
}

/// Reads one line into `buf` (without the `\n`), refusing lines longer than `max`. Returns
/// false at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(false);
        }
        match memchr_nl(avail) {
            Some(i) => {
                buf.extend_from_slice(&avail[..i]);
                r.consume(i + 1);
                if buf.len() > max {
                    return Err(too_long());
                }
                return Ok(true);
            }
            None => {
                let n = avail.len();
                buf.extend_from_slice(avail);
                r.consume(n);
                if buf.len() > max {
                    return Err(too_long());
                }
            }
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn too_long() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long")
}

async fn policy_conn<S>(
    stream: S,
    peer: String,
    shield: Arc<MailShield>,
    idle: Duration,
    shutdown: Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(16 * 1024, rd);
    let mut parser = Parser::new(Default::default());
    let mut line = Vec::with_capacity(256);
    // One idle deadline per request, not a timer per line: a request is ~30 lines.
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let mut fresh = true;
    // Between requests: no line of the next one read yet.
    let mut between = true;
    loop {
        if fresh {
            sleep.as_mut().reset(tokio::time::Instant::now() + idle);
            fresh = false;
        }
        let read = tokio::select! {
            r = read_line(&mut rd, &mut line, parser.max_line()) => r,
            _ = &mut sleep => return,
            // Postfix keeps a policy connection open between mails: close it at shutdown
            // unless a request is half read (Postfix then reconnects to the next Moat).
            _ = shutdown.cancelled(), if between => return,
        };
        match read {
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "policy connection: bad input, closing");
                return;
            }
            Ok(true) => {}
        }
        match parser.line(&line) {
            Ok(None) => between = false,
            Ok(Some(req)) => {
                between = true;
                fresh = true;
                let action = shield.policy(&req);
                if wr.write_all(reply(&action).as_bytes()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "policy connection: malformed request, closing");
                return;
            }
        }
    }
}

async fn auth_conn<S>(stream: S, shield: Arc<MailShield>, expected: Arc<str>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shield, expected) = (shield.clone(), expected.clone());
        async move { Ok::<_, std::convert::Infallible>(auth_request(req, &shield, &expected).await) }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    if let Err(e) = b.serve_connection(io, svc).await {
        tracing::debug!(error = %e, "auth policy connection ended");
    }
}

async fn auth_request(
    req: Request<Incoming>,
    shield: &MailShield,
    expected: &str,
) -> Response<Full<Bytes>> {
    let answer = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| moat_core::secret::token_eq(v.as_bytes(), expected.as_bytes()));
    if !authorized {
        return answer(
            StatusCode::UNAUTHORIZED,
            authpolicy::response(0, "unauthorized"),
        );
    }
    if req.method() != Method::POST {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            authpolicy::response(0, "POST only"),
        );
    }
    let Some(cmd) = Command::from_query(req.uri().query().unwrap_or("")) else {
        return answer(
            StatusCode::BAD_REQUEST,
            authpolicy::response(0, "unknown command"),
        );
    };
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                authpolicy::response(0, "too large"),
            )
        }
    };
    let Ok(ar) = AuthRequest::parse(&body) else {
        tracing::warn!("auth policy: a body that is not Dovecot's JSON");
        return answer(
            StatusCode::BAD_REQUEST,
            authpolicy::response(0, "bad request"),
        );
    };
    tracing::debug!(command = ?cmd, login = %ar.login, remote = ?ar.remote, success = ?ar.success, "auth policy request");
    match cmd {
        Command::Allow => {
            let (status, msg) = shield.auth_allow(&ar);
            answer(StatusCode::OK, authpolicy::response(status, msg))
        }
        Command::Report => {
            shield.auth_report(&ar);
            answer(StatusCode::OK, authpolicy::response(0, ""))
        }
    }
}

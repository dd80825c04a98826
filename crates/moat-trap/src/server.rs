//! The trap's listeners: sockets, TLS, timeouts and session caps around [`Session`].
//!
//! Each connection is one task that reads into a small buffer, feeds the session, and writes the
//! replies it queued once the input runs dry (so a pipelining client gets them in one write).
//! The only I/O besides the client socket is the quarantine: nothing here opens a connection,
//! so the trap cannot relay whatever the client asks.

use crate::login::{LoginPolicy, LoginRules};
use crate::quarantine::{new_id, Login, Meta, Quarantine};
use crate::session::{Limits, Mode, Session, Step};
use moat_core::metric::Sample;
use moat_core::{Clock, SystemClock};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
type Io = moat_listen::proxy::Prefixed<moat_listen::Stream>;

/// One listener's settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Recorded with each message (`trap`, `capture`, or the configured name).
    pub name: String,
    pub listen: SocketAddr,
    /// TLS from the first byte (port 465 style) instead of STARTTLS.
    pub implicit_tls: bool,
    pub limits: Limits,
    /// Longest wait for the next command (or the next chunk of message data).
    pub command_timeout: Duration,
    /// Longest a whole session may last.
    pub session_timeout: Duration,
    /// Wait before a refused login is answered (Dovecot's `auth_failure_delay` is 2 s).
    pub auth_failure_delay: Duration,
    /// Wait before an accepted login is answered, as password hashing would take.
    pub auth_delay: Duration,
}

impl ListenerConfig {
    pub fn trap(listen: SocketAddr) -> Self {
        ListenerConfig {
            name: "trap".into(),
            listen,
            implicit_tls: false,
            limits: Limits {
                starttls: true,
                ..Limits::default()
            },
            command_timeout: Duration::from_secs(60),
            session_timeout: Duration::from_secs(600),
            auth_failure_delay: Duration::from_secs(2),
            auth_delay: Duration::from_millis(150),
        }
    }

    /// The capture listener behind Postfix: XFORWARD, no AUTH, no TLS, large messages.
    pub fn capture(listen: SocketAddr) -> Self {
        let mut c = ListenerConfig::trap(listen);
        c.name = "capture".into();
        c.limits.mode = Mode::Capture;
        c.limits.max_size = 50 << 20;
        c.limits.max_rcpts = 1000;
        c.limits.hostname = "capture.moat".into();
        c.command_timeout = Duration::from_secs(300);
        c
    }
}

/// Where the trap's observations go (the engine's event bus, set by the composition root):
/// the client, the login when there is one, and what happened.
pub type EventSink = Arc<dyn Fn(IpAddr, Option<&str>, moat_core::EventKind) + Send + Sync>;

/// Whether the mail shield made a login a honey account.
pub type HoneyCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What every listener of one trap shares: the quarantine, TLS, the login policy and the caps.
pub struct Trap {
    pub quarantine: Quarantine,
    tls: Option<tokio_rustls::TlsAcceptor>,
    honey: Option<HoneyCheck>,
    policy: Mutex<LoginPolicy>,
    sessions: AtomicUsize,
    /// The caps every listener of this trap counts its sessions under.
    pub limits: TrapLimits,
    /// The listeners' counters (refusals at the caps happen there).
    listen_stats: Mutex<Vec<Arc<moat_listen::ListenStats>>>,
    events: std::sync::OnceLock<EventSink>,
    pub stats: TrapStats,
}

#[derive(Debug, Default)]
pub struct TrapStats {
    pub sessions: AtomicU64,
    pub logins_accepted: AtomicU64,
    pub logins_refused: AtomicU64,
    pub messages: AtomicU64,
    pub closed_bad_input: AtomicU64,
    pub timeouts: AtomicU64,
}

/// Caps that apply across all listeners of a trap.
#[derive(Debug, Clone, Copy)]
pub struct TrapLimits {
    pub max_sessions: usize,
    pub max_per_ip: usize,
    pub login: LoginRules,
}

impl Default for TrapLimits {
    fn default() -> Self {
        TrapLimits {
            max_sessions: 10_000,
            max_per_ip: 20,
            login: LoginRules::default(),
        }
    }
}

impl Trap {
    pub fn new(
        quarantine: Quarantine,
        tls: Option<Arc<rustls::ServerConfig>>,
        honey: Option<HoneyCheck>,
        limits: TrapLimits,
    ) -> Arc<Self> {
        Arc::new(Trap {
            quarantine,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            honey,
            policy: Mutex::new(LoginPolicy::new(limits.login)),
            sessions: AtomicUsize::new(0),
            limits,
            listen_stats: Mutex::new(Vec::new()),
            events: std::sync::OnceLock::new(),
            stats: TrapStats::default(),
        })
    }

    /// Listener settings under this trap's caps: past them a client hears `421` at connect.
    pub fn listener_settings(&self, name: &str) -> moat_listen::Settings {
        let mut s = moat_listen::Settings::new(name, self.limits.max_sessions);
        s.max_per_ip = self.limits.max_per_ip;
        s.at_cap = moat_listen::AtCap::Refuse;
        s.refusal = b"421 4.7.0 Error: too many connections; try again later\r\n";
        s
    }

    /// Sends the trap's logins and captures to `sink` from now on (set once).
    pub fn set_events(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }

    fn emit(&self, ip: IpAddr, login: Option<&str>, kind: moat_core::EventKind) {
        if let Some(sink) = self.events.get() {
            sink(ip, login, kind);
        }
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Counters and gauges for the admin `/metrics`.
    pub fn metrics(&self) -> Vec<Sample> {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut m = vec![
            Sample::counter(
                "moat_trap_sessions_total",
                "SMTP sessions accepted by the trap",
                g(&s.sessions),
            ),
            Sample::counter(
                "moat_trap_sessions_refused_total",
                "Sessions refused by the per-address or total cap",
                self.listen_stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|l| g(&l.refused_cap))
                    .sum::<u64>(),
            ),
            Sample::gauge(
                "moat_trap_sessions_open",
                "Sessions open now",
                self.sessions.load(Ordering::Relaxed) as u64,
            ),
            Sample::counter(
                "moat_trap_logins_accepted_total",
                "Logins the trap let succeed",
                g(&s.logins_accepted),
            ),
            Sample::counter(
                "moat_trap_logins_refused_total",
                "Logins the trap refused",
                g(&s.logins_refused),
            ),
            Sample::counter(
                "moat_trap_messages_total",
                "Messages captured (durable before the 250)",
                g(&s.messages),
            ),
            Sample::counter(
                "moat_trap_bad_input_total",
                "Sessions closed for malformed input",
                g(&s.closed_bad_input),
            ),
            Sample::counter(
                "moat_trap_timeouts_total",
                "Sessions closed by a timeout",
                g(&s.timeouts),
            ),
        ];
        m.extend(self.quarantine.metrics());
        m
    }

    fn open_session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        SessionGuard { trap: self.clone() }
    }
}

/// Keeps the open-sessions gauge true however the connection ends.
struct SessionGuard {
    trap: Arc<Trap>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.trap.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a listener until shutdown; returns when its sessions have ended.
pub async fn serve(
    listener: moat_listen::Listener,
    cfg: Arc<ListenerConfig>,
    trap: Arc<Trap>,
    shutdown: moat_listen::Shutdown,
) {
    trap.listen_stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(listener.stats());
    listener
        .serve(shutdown, move |c| {
            let peer = c
                .client
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            connection(c.stream, peer, cfg.clone(), trap.clone())
        })
        .await
}

async fn connection(stream: Io, peer: SocketAddr, cfg: Arc<ListenerConfig>, trap: Arc<Trap>) {
    let _guard = trap.open_session();
    trap.stats.sessions.fetch_add(1, Ordering::Relaxed);
    let run = async {
        let mut limits = cfg.limits.clone();
        limits.starttls = cfg.limits.starttls
            && trap.tls.is_some()
            && !cfg.implicit_tls
            && cfg.limits.mode == Mode::Trap;
        let mut session = Session::new(limits);
        match (&trap.tls, cfg.implicit_tls) {
            (Some(acceptor), true) => {
                let Ok(tls) = Box::pin(moat_listen::tls::handshake(
                    acceptor,
                    stream,
                    cfg.command_timeout,
                ))
                .await
                else {
                    return;
                };
                session.set_tls();
                Box::pin(converse(tls, &mut session, peer, &cfg, &trap, true)).await;
            }
            _ => {
                if let Some(plain) = converse(stream, &mut session, peer, &cfg, &trap, true).await {
                    let Some(acceptor) = &trap.tls else { return };
                    let Ok(tls) = Box::pin(moat_listen::tls::handshake(
                        acceptor,
                        plain,
                        cfg.command_timeout,
                    ))
                    .await
                    else {
                        return;
                    };
                    session.tls_started();
                    Box::pin(converse(tls, &mut session, peer, &cfg, &trap, false)).await;
                }
            }
        }
    };
    if tokio::time::timeout(cfg.session_timeout, run)
        .await
        .is_err()
    {
        trap.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "moat::trap", peer = %peer, "session timeout");
    }
}

/// Runs the conversation on one stream. Returns the stream when the client asked for STARTTLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    s: &mut Session,
    peer: SocketAddr,
    cfg: &ListenerConfig,
    trap: &Trap,
    greet: bool,
) -> Option<S> {
    let mut out: Vec<u8> = Vec::new();
    if greet {
        out.extend_from_slice(s.greeting().as_bytes());
    }
    // Commands are read into a small buffer inside the task; message data into a larger one
    // that exists only during DATA. An idle session (most of what a bot farm leaves open) then
    // costs little more than its task and socket.
    let mut small = [0u8; 512];
    let mut big: Vec<u8> = Vec::new();
    let mut filled = 0usize;
    loop {
        let buf: &[u8] = if big.is_empty() { &small } else { &big };
        let mut input = &buf[..filled];
        let mut close = false;
        let mut starttls = false;
        while !input.is_empty() {
            match s.feed(&mut input) {
                Step::NeedMore => break,
                Step::Reply(r) => out.extend_from_slice(r.as_bytes()),
                Step::Login(c) => {
                    // Boxed: rare, and keeping them out of the idle session's future keeps
                    // each of ten thousand idle sessions small.
                    let reply = Box::pin(login(s, &c, peer, cfg, trap)).await;
                    out.extend_from_slice(reply.as_bytes());
                }
                Step::Deliver(env, data) => {
                    let reply = Box::pin(deliver(s, env, data, peer, cfg, trap)).await;
                    out.extend_from_slice(reply.as_bytes());
                }
                Step::StartTls(r) => {
                    out.extend_from_slice(r.as_bytes());
                    starttls = true;
                    break;
                }
                Step::Close(r) => {
                    if !r.starts_with("221") {
                        trap.stats.closed_bad_input.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target: "moat::trap", peer = %peer, reply = r.trim_end(), "malformed input, closing");
                    }
                    out.extend_from_slice(r.as_bytes());
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                return None;
            }
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return None;
        }
        if starttls {
            // Whatever the client pipelined after STARTTLS is dropped: it was sent in the
            // clear and must not be taken as if it came through TLS.
            return Some(stream);
        }
        if s.in_data() {
            if big.is_empty() {
                big = vec![0u8; 16 * 1024];
            }
        } else if !big.is_empty() {
            big = Vec::new();
        }
        if out.capacity() > 4096 {
            out = Vec::new();
        }
        let target: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
        match tokio::time::timeout(cfg.command_timeout, stream.read(target)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => filled = n,
            Err(_) => {
                trap.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = stream
                    .write_all(b"421 4.4.2 Error: timeout exceeded\r\n")
                    .await;
                return None;
            }
        }
    }
}

async fn login(
    s: &mut Session,
    c: &crate::sasl::Credentials,
    peer: SocketAddr,
    cfg: &ListenerConfig,
    trap: &Trap,
) -> String {
    let honey = trap.honey.as_ref().is_some_and(|h| h(&c.username));
    let verdict = trap
        .policy
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .decide(&c.username, &c.password, honey);
    let tls = s.envelope().tls;
    trap.quarantine.record_login(Login {
        at_ms: SystemClock.now_ms(),
        client_ip: peer.ip().to_string(),
        mechanism: c.mechanism.into(),
        username: c.username.clone(),
        password: c.password.clone(),
        verdict: verdict.as_str().into(),
        tls,
    });
    tracing::info!(target: "moat::trap", peer = %peer, user = %c.username,
        mechanism = c.mechanism, verdict = verdict.as_str(), tls, "login attempt");
    trap.emit(
        peer.ip(),
        Some(&c.username),
        moat_core::EventKind::TrapLogin {
            accepted: verdict.accepted(),
        },
    );
    if verdict.accepted() {
        trap.stats.logins_accepted.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(cfg.auth_delay).await;
    } else {
        trap.stats.logins_refused.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(cfg.auth_failure_delay).await;
    }
    s.login_result(c, verdict.accepted())
}

async fn deliver(
    s: &mut Session,
    env: crate::session::Envelope,
    data: Vec<u8>,
    peer: SocketAddr,
    cfg: &ListenerConfig,
    trap: &Trap,
) -> String {
    let received_ms = SystemClock.now_ms();
    // Behind Postfix (capture mode) the bot is the XFORWARD client, not the socket peer.
    let client_ip = env
        .xforward("ADDR")
        .filter(|a| a.parse::<IpAddr>().is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| peer.ip().to_string());
    let helo = env.xforward("HELO").map(str::to_string).unwrap_or(env.helo);
    let (from, rcpts, size) = (env.mail_from.clone(), env.rcpt_to.len(), data.len());
    let client: IpAddr = client_ip.parse().unwrap_or(peer.ip());
    let account = env.auth_user.clone();
    let meta = Meta {
        id: new_id(received_ms),
        received_ms,
        client_ip,
        client_port: peer.port(),
        helo,
        mail_from: env.mail_from,
        rcpt_to: env.rcpt_to,
        auth_user: env.auth_user,
        auth_password: env.auth_password,
        tls: env.tls,
        listener: cfg.name.clone(),
    };
    match trap.quarantine.store(meta, data).await {
        Ok(stored) => {
            trap.stats.messages.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "moat::trap", id = %stored.id, peer = %peer, from = %from,
                rcpts, size, duplicate = stored.duplicate, listener = %cfg.name,
                "message captured");
            trap.emit(
                client,
                account.as_deref(),
                moat_core::EventKind::Captured {
                    id: stored.id.clone(),
                },
            );
            s.delivered(&stored.id)
        }
        Err(e) => {
            let reply = s.store_failed(&e);
            tracing::error!(target: "moat::trap", error = %e, reply = reply.trim_end(),
                "could not store a message");
            reply
        }
    }
}

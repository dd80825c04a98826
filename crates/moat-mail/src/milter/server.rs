//! The milter listener: one task per Postfix connection (Postfix 3.7 opens one per SMTP
//! session, so thousands may wait at once: they share one read buffer per thread), the
//! session's outcomes written back.
//! Captured mail is on disk (the quarantine's synced journal) before the `Discard` that makes
//! Postfix answer `250`; a DSN is checked and sent off the connection's path.

use super::codec::{Decoder, Reply};
use super::session::{Bounce, MilterPolicy, Outcome, Session};
use crate::dsn;
use crate::sender_auth::SenderCheck;
use lettre::address::Envelope;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use moat_core::metric::Sample;
use moat_trap::quarantine::Quarantine;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct MilterStats {
    pub connections: AtomicU64,
    pub messages_captured: AtomicU64,
    pub capture_failures: AtomicU64,
    pub recipients_dropped: AtomicU64,
    pub dsn_sent: AtomicU64,
    pub dsn_withheld: AtomicU64,
    pub protocol_errors: AtomicU64,
}

impl MilterStats {
    pub fn metrics(&self) -> Vec<Sample> {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            Sample::counter(
                "moat_milter_connections_total",
                "Milter connections from Postfix.",
                v(&self.connections),
            ),
            Sample::counter(
                "moat_milter_captured_total",
                "Honey accounts' messages captured and discarded.",
                v(&self.messages_captured),
            ),
            Sample::counter(
                "moat_milter_capture_failures_total",
                "Honey messages that could not be stored (tempfailed).",
                v(&self.capture_failures),
            ),
            Sample::counter(
                "moat_milter_recipients_dropped_total",
                "Unknown recipients hidden at RCPT and dropped at end of message.",
                v(&self.recipients_dropped),
            ),
            Sample::counter(
                "moat_milter_dsn_sent_total",
                "DSNs sent to authentic senders for dropped recipients.",
                v(&self.dsn_sent),
            ),
            Sample::counter(
                "moat_milter_dsn_withheld_total",
                "DSNs not sent (sender not proven authentic, or the relay refused).",
                v(&self.dsn_withheld),
            ),
            Sample::counter(
                "moat_milter_protocol_errors_total",
                "Milter connections closed on malformed input.",
                v(&self.protocol_errors),
            ),
        ]
    }
}

/// What the milter needs besides the policy.
pub struct MilterContext {
    pub policy: Arc<dyn MilterPolicy + Send + Sync>,
    pub quarantine: Quarantine,
    pub dsn: Option<DsnSender>,
    pub stats: Arc<MilterStats>,
    pub idle: Duration,
    /// Open sessions at most; more wait in the kernel's backlog (`mail.max_connections`).
    pub max_connections: usize,
    pub shutdown: moat_listen::Shutdown,
}

/// Sends DSNs for dropped recipients, to authentic senders only.
#[derive(Clone)]
pub struct DsnSender {
    pub check: SenderCheck,
    pub relay: SocketAddr,
    pub hostname: String,
}

/// Where the milter listens: a loopback port or a unix socket (Postfix's `inet:` or `unix:`).
pub enum MilterListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, std::path::PathBuf),
}

/// A milter connection from Postfix, either kind: what `conn` needs of it.
trait MilterStream: tokio::io::AsyncWrite + Unpin {
    async fn readable(&self) -> std::io::Result<()>;
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl MilterStream for moat_listen::Stream {
    async fn readable(&self) -> std::io::Result<()> {
        moat_listen::Stream::readable(self).await
    }
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        moat_listen::Stream::try_read(self, buf)
    }
}

/// Serves the milter on a thread of its own with a single-threaded runtime: every Postfix
/// session is a new connection whose packets arrive one by one, and keeping accept, the
/// session and its wake-ups on one thread costs less CPU per message than a work-stealing
/// pool (measured in BENCHMARKS.md). The thread holds the process's shutdown until its
/// listener has stopped and its sessions have ended.
pub fn spawn_thread(
    l: MilterListener,
    ctx: Arc<MilterContext>,
    shutdown: moat_listen::Shutdown,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let held = shutdown.hold();
    std::thread::Builder::new()
        .name("moat-milter".into())
        .spawn(move || {
            rt.block_on(async move {
                let settings = moat_listen::Settings::new("milter", ctx.max_connections);
                let listener = match l {
                    MilterListener::Tcp(l) => moat_listen::Listener::from_std_tcp(l, settings),
                    MilterListener::Unix(l, path) => {
                        moat_listen::Listener::from_std_unix(l, path, settings)
                    }
                };
                match listener {
                    Ok(listener) => {
                        listener
                            .serve(shutdown, move |c| {
                                ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
                                let (_, stream) = c.stream.into_parts();
                                conn(stream, c.peer.to_string(), ctx.clone())
                            })
                            .await
                    }
                    Err(e) => tracing::error!(error = %e, "milter listener lost"),
                }
            });
            drop(held);
        })?;
    Ok(())
}

thread_local! {
    /// One read buffer per runtime thread, not per connection: Postfix holds a milter
    /// connection open for each SMTP session, and most of them wait most of the time.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
}

/// Reads what the socket has into the decoder, through the thread's scratch buffer. `Ok(0)`
/// at the end of the stream.
async fn fill<S: MilterStream>(stream: &S, dec: &mut Decoder) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        let got = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let n = stream.try_read(&mut s[..])?;
            dec.feed(&s[..n]);
            Ok::<_, std::io::Error>(n)
        });
        match got {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn conn<S: MilterStream>(mut stream: S, peer: String, ctx: Arc<MilterContext>) {
    let mut dec = Decoder::new();
    let mut session = Session::new();
    let mut out = Vec::new();
    // One idle deadline, moved on only when a command completes, not a timer per read.
    let idle = tokio::time::sleep(ctx.idle);
    tokio::pin!(idle);
    loop {
        let read = tokio::select! {
            r = fill(&stream, &mut dec) => r,
            _ = &mut idle => return,
            // Between packets only: Postfix then applies its milter_default_action (tempfail
            // by default), so a message in flight is retried, never lost.
            _ = ctx.shutdown.cancelled(), if dec.pending() == 0 => return,
        };
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "milter connection ended");
                return;
            }
        }
        if dec.pending() == 0 {
            idle.as_mut().reset(tokio::time::Instant::now() + ctx.idle);
        }
        loop {
            let cmd = match dec.decode() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    ctx.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %peer, error = %e, "milter: malformed packet, closing");
                    return;
                }
            };
            match session.handle(cmd, ctx.policy.as_ref()) {
                Outcome::Silent => {}
                Outcome::Reply(r) => r.encode(&mut out),
                Outcome::Close => {
                    let _ = stream.write_all(&out).await;
                    return;
                }
                Outcome::Capture(mut c) => {
                    let now = moat_core::Clock::now_ms(&moat_core::SystemClock);
                    c.meta.received_ms = now;
                    c.meta.id = moat_trap::quarantine::new_id(now);
                    let login = c.meta.auth_user.clone().unwrap_or_default();
                    let client = c.meta.client_ip.clone();
                    match ctx.quarantine.store(c.meta, c.data).await {
                        Ok(stored) => {
                            ctx.stats.messages_captured.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(target: "moat::decision", client = %client, rule = "mail-honey", action = "capture", key = %login, id = %stored.id, "decision");
                            if let Ok(ip) = client.parse() {
                                ctx.policy.captured(ip, &login, &stored.id);
                            }
                            Reply::Discard.encode(&mut out);
                        }
                        Err(e) => {
                            ctx.stats.capture_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, login = %login, "cannot store a honey message; tempfailing it");
                            Reply::TempFail.encode(&mut out);
                        }
                    }
                }
                Outcome::Drop(replies, bounce) => {
                    ctx.stats
                        .recipients_dropped
                        .fetch_add(bounce.recipients.len() as u64, Ordering::Relaxed);
                    for r in &replies {
                        r.encode(&mut out);
                    }
                    if let Some(d) = &ctx.dsn {
                        // Tracked: a shutdown waits (bounded) for the notice to go out.
                        ctx.shutdown
                            .spawn(send_dsn(d.clone(), *bounce, ctx.stats.clone()));
                    }
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        dec.shrink();
        if out.capacity() > 4096 {
            out = Vec::new();
        }
    }
}

/// Checks the sender and, if it is authentic, sends it a DSN through the relay (three tries
/// over about 20 s; the null envelope sender means it can never bounce back).
async fn send_dsn(d: DsnSender, b: Bounce, stats: Arc<MilterStats>) {
    let Some(client) = b.client else {
        stats.dsn_withheld.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let msg = b.complete.then_some(b.message.as_slice());
    let verdict = d.check.check(client, &b.helo, &b.sender, msg).await;
    if !verdict.authentic() {
        stats.dsn_withheld.fetch_add(1, Ordering::Relaxed);
        tracing::info!(sender = %b.sender, client = %client, why = %verdict, "no DSN: sender not proven authentic");
        return;
    }
    let Ok(to) = b.sender.parse::<Address>() else {
        stats.dsn_withheld.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let now = std::time::SystemTime::now();
    let id = format!(
        "<{}.{}@{}>",
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros()),
        fastrand::u32(..),
        d.hostname
    );
    let body = dsn::build(&dsn::DsnInput {
        hostname: &d.hostname,
        to: &b.sender,
        recipients: &b.recipients,
        queue_id: &b.queue_id,
        headers: dsn::header_section(&b.message),
        date: &httpdate::fmt_http_date(now).replace("GMT", "+0000"),
        message_id: &id,
    });
    let Ok(envelope) = Envelope::new(None, vec![to]) else {
        return;
    };
    let transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(d.relay.ip().to_string())
            .port(d.relay.port())
            .timeout(Some(Duration::from_secs(10)))
            .hello_name(ClientId::Domain(d.hostname.clone()))
            .build();
    for attempt in 0..3 {
        match transport.send_raw(&envelope, &body).await {
            Ok(_) => {
                stats.dsn_sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(sender = %b.sender, recipients = %b.recipients.join(", "), why = %verdict, "DSN sent for dropped recipients");
                return;
            }
            Err(e) if e.is_permanent() || attempt == 2 => {
                stats.dsn_withheld.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sender = %b.sender, relay = %d.relay, error = %e, "DSN refused by the relay");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "DSN relay trouble; retrying");
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
        }
    }
}

//! The listener every front door uses: bind (TCP or a Unix socket), a cap on open connections
//! in total and per address, a guard check at accept, the PROXY protocol from trusted peers, and
//! the process's [`Shutdown`]. The protocols (HTTP, SMTP, Postfix policy, Dovecot auth policy,
//! milter, admin) start from a [`Conn`] and never see a refused connection.
//!
//! Refusals happen before any protocol code runs and cost one write at most (`refusal`, e.g.
//! SMTP's `421`), as Stalwart checks `is_ip_blocked` at its listener.

use crate::proxy::{read_header, Prefixed};
use crate::shutdown::Shutdown;
use crate::stream::Stream;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Asked at accept with the client's address: true refuses the connection.
pub type Gate = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// What happens to the connection past the total cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCap {
    /// Stop accepting until a connection ends: the next ones wait in the kernel's backlog.
    /// For peers that retry on their own (Postfix, Dovecot, browsers).
    Wait,
    /// Accept and refuse at once (with `refusal`): an SMTP client must hear `421`.
    Refuse,
}

/// PROXY protocol headers, read only from these peers.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub trusted: Vec<IpNet>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Settings {
    /// For the log lines about this listener.
    pub name: String,
    pub max_connections: usize,
    /// `usize::MAX`: no per-address cap.
    pub max_per_ip: usize,
    pub at_cap: AtCap,
    /// Written to a refused connection before it is closed; empty: just closed.
    pub refusal: &'static [u8],
    pub proxy: Option<ProxySettings>,
    pub gate: Option<Gate>,
}

impl Settings {
    pub fn new(name: impl Into<String>, max_connections: usize) -> Self {
        Settings {
            name: name.into(),
            max_connections: max_connections.max(1),
            max_per_ip: usize::MAX,
            at_cap: AtCap::Wait,
            refusal: b"",
            proxy: None,
            gate: None,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ListenStats {
    pub accepted: AtomicU64,
    pub refused_cap: AtomicU64,
    pub refused_gate: AtomicU64,
    pub bad_proxy: AtomicU64,
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

pub struct Listener {
    bound: Bound,
    slots: Arc<Semaphore>,
    /// What a connection's task needs after accept; the socket itself is not in it, so it
    /// closes as soon as accepting stops, while connections still finish.
    admission: Arc<Admission>,
}

struct Admission {
    settings: Settings,
    per_ip: Arc<PerIp>,
    stats: Arc<ListenStats>,
}

/// The caps of a listener, to share with others (a trap's ports count one set of sessions).
#[derive(Clone)]
pub struct Caps {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
}

/// Who is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix socket: a local program (Postfix's smtpd), no address.
    Unix,
}

impl Peer {
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(a) => Some(*a),
            Peer::Unix => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// A connection's place under the caps; released when dropped, however the connection ends.
pub struct Slot {
    _total: OwnedSemaphorePermit,
    per_ip: Option<(Arc<PerIp>, IpAddr)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((p, ip)) = self.per_ip.take() {
            p.release(ip);
        }
    }
}

/// A connection past the total cap and the gate on its socket address.
pub struct Accepted {
    pub stream: Stream,
    pub peer: Peer,
    pub slot: Slot,
}

/// A connection ready for its protocol: PROXY read (from a trusted peer), per-address cap and
/// gate passed for the real client. Its [`Slot`] is kept apart, by [`Listener::serve`] or the
/// caller of [`Listener::admit`], so a handler cannot release it early by not using it.
pub struct Conn {
    pub stream: Prefixed<Stream>,
    /// The socket's peer.
    pub peer: Peer,
    /// The client: the PROXY header's source, else the socket peer (None on a Unix socket).
    pub client: Option<SocketAddr>,
}

#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn take(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                m.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }
    fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {what}: {source}")]
pub struct BindError {
    pub what: String,
    pub source: std::io::Error,
}

impl Listener {
    pub async fn tcp(addr: SocketAddr, settings: Settings) -> Result<Listener, BindError> {
        let l = TcpListener::bind(addr).await.map_err(|source| BindError {
            what: addr.to_string(),
            source,
        })?;
        Ok(Self::with(Bound::Tcp(l), settings))
    }

    /// A Unix socket for a local peer. A stale socket file from a previous run is replaced;
    /// the socket is made writable for a peer running as another user (Postfix's smtpd runs
    /// as `postfix`): keep it in a directory only that peer can enter.
    pub fn unix(path: &Path, settings: Settings) -> Result<Listener, BindError> {
        let l = Self::bind_unix_std(path)?;
        Self::from_std_unix(l, path.to_path_buf(), settings).map_err(|source| BindError {
            what: path.display().to_string(),
            source,
        })
    }

    /// A TCP listener bound earlier (before a thread with its own runtime started); call it on
    /// that runtime.
    pub fn from_std_tcp(l: std::net::TcpListener, settings: Settings) -> std::io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Self::with(Bound::Tcp(TcpListener::from_std(l)?), settings))
    }

    /// As [`Listener::from_std_tcp`], for a Unix socket bound by [`Listener::unix`]'s rules.
    pub fn from_std_unix(
        l: std::os::unix::net::UnixListener,
        path: PathBuf,
        settings: Settings,
    ) -> std::io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Self::with(
            Bound::Unix(UnixListener::from_std(l)?, path),
            settings,
        ))
    }

    /// Binds a Unix socket without a runtime (for [`Listener::from_std_unix`]).
    pub fn bind_unix_std(path: &Path) -> Result<std::os::unix::net::UnixListener, BindError> {
        let err = |source| BindError {
            what: path.display().to_string(),
            source,
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            std::fs::remove_file(path).map_err(err)?;
        }
        let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
        Ok(l)
    }

    fn with(bound: Bound, settings: Settings) -> Listener {
        Listener {
            bound,
            slots: Arc::new(Semaphore::new(settings.max_connections)),
            admission: Arc::new(Admission {
                settings,
                per_ip: Arc::default(),
                stats: Arc::default(),
            }),
        }
    }

    pub fn caps(&self) -> Caps {
        Caps {
            slots: self.slots.clone(),
            per_ip: self.admission.per_ip.clone(),
        }
    }

    /// Counts this listener's connections under `caps` (another listener's) instead of its
    /// own; `settings.max_connections` of the first listener then applies to both.
    pub fn sharing(mut self, caps: &Caps) -> Self {
        self.slots = caps.slots.clone();
        if let Some(a) = Arc::get_mut(&mut self.admission) {
            a.per_ip = caps.per_ip.clone();
        }
        self
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.bound {
            Bound::Tcp(l) => l.local_addr().ok(),
            Bound::Unix(..) => None,
        }
    }

    pub fn stats(&self) -> Arc<ListenStats> {
        self.admission.stats.clone()
    }

    async fn raw_accept(&self) -> std::io::Result<(Stream, Peer)> {
        match &self.bound {
            Bound::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Peer::Tcp(a)))
            }
            Bound::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The next connection under the total cap whose socket address passes the gate; `None`
    /// once shutdown begins. Accept errors (EMFILE and friends) back off instead of spinning.
    pub async fn accept(&self, shutdown: &Shutdown) -> Option<Accepted> {
        loop {
            let total = match self.admission.settings.at_cap {
                AtCap::Wait => tokio::select! {
                    p = self.slots.clone().acquire_owned() => Some(p.ok()?),
                    _ = shutdown.cancelled() => return None,
                },
                AtCap::Refuse => self.slots.clone().try_acquire_owned().ok(),
            };
            let (stream, peer) = tokio::select! {
                r = self.raw_accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(listener = %self.admission.settings.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return None,
            };
            let Some(total) = total else {
                self.admission
                    .stats
                    .refused_cap
                    .fetch_add(1, Ordering::Relaxed);
                self.admission.refuse(stream);
                continue;
            };
            // A trusted proxy's own address says nothing about the client: the gate then waits
            // for the PROXY header.
            if let Peer::Tcp(a) = peer {
                if !self.admission.proxied(a.ip()) && self.admission.gated(a.ip()) {
                    self.admission
                        .stats
                        .refused_gate
                        .fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
            }
            self.admission
                .stats
                .accepted
                .fetch_add(1, Ordering::Relaxed);
            return Some(Accepted {
                stream,
                peer,
                slot: Slot {
                    _total: total,
                    per_ip: None,
                },
            });
        }
    }

    /// From an accepted connection to one ready for its protocol: the PROXY header when the
    /// peer is trusted, then the per-address cap and the gate for the real client. `None`:
    /// refused (and logged when the PROXY header was bad).
    pub async fn admit(&self, a: Accepted) -> Option<(Conn, Slot)> {
        self.admission.admit(a).await
    }

    /// Serves until shutdown, then returns once every connection it started has ended: each
    /// connection is admitted and handed to `handler` in a task of its own. The handler
    /// watches the shutdown itself where a connection can outlive one exchange (keep-alive, an
    /// SMTP session, a Postfix policy connection). Spawned on the current runtime, so a thread
    /// with its own runtime (the milter's) keeps its connections there.
    pub async fn serve<H, Fut>(self, shutdown: Shutdown, handler: H)
    where
        H: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let conns = tokio_util::task::TaskTracker::new();
        while let Some(a) = self.accept(&shutdown).await {
            let (adm, handler) = (self.admission.clone(), handler.clone());
            conns.spawn(async move {
                if let Some((c, slot)) = adm.admit(a).await {
                    handler(c).await;
                    drop(slot);
                }
            });
        }
        if let Bound::Unix(_, path) = &self.bound {
            let _ = std::fs::remove_file(path);
        }
        // The socket closes now: new clients are refused by the kernel while these finish.
        drop(self);
        conns.close();
        conns.wait().await;
    }
}

impl Admission {
    fn proxied(&self, ip: IpAddr) -> bool {
        self.settings
            .proxy
            .as_ref()
            .is_some_and(|p| p.trusted.iter().any(|n| n.contains(&ip)))
    }

    fn gated(&self, ip: IpAddr) -> bool {
        self.settings.gate.as_ref().is_some_and(|g| g(ip))
    }

    /// Writes the refusal (bounded: a peer that does not read gets nothing) and closes.
    fn refuse(&self, mut stream: Stream) {
        let refusal = self.settings.refusal;
        if refusal.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(refusal)).await;
        });
    }

    async fn admit(&self, a: Accepted) -> Option<(Conn, Slot)> {
        let Accepted {
            mut stream,
            peer,
            mut slot,
        } = a;
        let mut client = peer.addr();
        let mut prefix = Vec::new();
        if let (Some(p), Some(addr)) = (&self.settings.proxy, peer.addr()) {
            if self.proxied(addr.ip()) {
                match read_header(&mut stream, p.timeout).await {
                    Ok((source, rest)) => {
                        if let Some(s) = source {
                            client = Some(s);
                        }
                        prefix = rest;
                    }
                    Err(e) => {
                        self.stats.bad_proxy.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(listener = %self.settings.name, %peer, error = %e, "bad PROXY protocol header; closing");
                        return None;
                    }
                }
                if let Some(c) = client {
                    if self.gated(c.ip()) {
                        self.stats.refused_gate.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        }
        if let Some(c) = client {
            if self.settings.max_per_ip != usize::MAX {
                let ip = c.ip();
                if !self.per_ip.take(ip, self.settings.max_per_ip) {
                    self.stats.refused_cap.fetch_add(1, Ordering::Relaxed);
                    let refusal = self.settings.refusal;
                    if !refusal.is_empty() {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), stream.write_all(refusal))
                                .await;
                    }
                    return None;
                }
                slot.per_ip = Some((self.per_ip.clone(), ip));
            }
        }
        Some((
            Conn {
                stream: Prefixed::new(prefix, stream),
                peer,
                client,
            },
            slot,
        ))
    }
}

//! Listeners and connections: accept (under a connection cap), PROXY protocol from trusted
//! peers, TLS, then hyper serving HTTP/1.1 and HTTP/2 with upgrades, all under the header and
//! idle timeouts. Malformed requests are answered 400 (431 for oversized headers) by hyper
//! itself and only ever end their own connection.

use crate::io::IdleTimeout;
use crate::live::LiveShield;
use crate::proxy_protocol::{self, Prefixed};
use crate::shield::{ConnInfo, Shield};
use crate::tls;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// A connection handed from the acceptor to a worker, holding its slot under the connection cap.
pub struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// The connection's place under the listener's cap, released when the connection ends.
    slot: moat_listen::Slot,
}

pub struct WorkerHandle {
    pub tx: mpsc::UnboundedSender<Handoff>,
    pub active: Arc<AtomicUsize>,
}

/// Places each connection the listener accepts (under its cap) on the least busy worker.
pub async fn accept_loop(
    listener: moat_listen::Listener,
    workers: Vec<WorkerHandle>,
    shutdown: moat_listen::Shutdown,
) {
    while let Some(a) = listener.accept(&shutdown).await {
        let moat_listen::Peer::Tcp(peer) = a.peer else {
            continue;
        };
        let Some(stream) = a.stream.into_tcp().and_then(|s| s.into_std().ok()) else {
            continue;
        };
        let Some(w) = workers
            .iter()
            .min_by_key(|w| w.active.load(Ordering::Relaxed))
        else {
            break;
        };
        w.active.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(h)) = w.tx.send(Handoff {
            stream,
            peer,
            slot: a.slot,
        }) {
            w.active.fetch_sub(1, Ordering::Relaxed);
            drop(h);
        }
    }
}

pub async fn worker_loop(
    shield: Arc<LiveShield>,
    mut rx: mpsc::UnboundedReceiver<Handoff>,
    active: Arc<AtomicUsize>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let watcher = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
    loop {
        let h = tokio::select! {
            h = rx.recv() => match h { Some(h) => h, None => break },
            _ = shutdown.changed() => break,
        };
        let Ok(stream) = TcpStream::from_std(h.stream) else {
            active.fetch_sub(1, Ordering::Relaxed);
            continue;
        };
        let (shield, tls, watcher, active, stop) = (
            shield.clone(),
            tls.clone(),
            watcher.clone(),
            active.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            connection(shield, stream, h.peer, tls, &watcher, stop).await;
            active.fetch_sub(1, Ordering::Relaxed);
            drop(h.slot);
        });
    }
    if let Ok(g) = Arc::try_unwrap(watcher) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), g.shutdown()).await;
    }
}

async fn connection(
    live: Arc<LiveShield>,
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    mut shutdown: watch::Receiver<bool>,
) {
    // The connection's own settings (timeouts, PROXY) from the shield in force when it came;
    // each request then takes the shield in force when it starts.
    let shield = live.current();
    let lim = &shield.cfg.limits;
    let mut real_peer = peer;
    let mut prefix = Vec::new();
    if shield.cfg.server.proxy_protocol && shield.trusts(peer.ip()) {
        match Box::pin(proxy_protocol::read_header(&mut stream, lim.header_timeout)).await {
            Ok((source, rest)) => {
                if let Some(s) = source {
                    real_peer = s;
                }
                prefix = rest;
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "bad PROXY protocol header; closing");
                return;
            }
        }
    }
    match tls {
        None => {
            let info = ConnInfo {
                peer: real_peer,
                tls: false,
            };
            let mut io = Prefixed::new(prefix, stream);
            // Plain HTTP/1.1 starts on the fast path; hyper takes over at the first request
            // the fast path leaves to it. A watcher held meanwhile makes shutdown wait for it.
            let held = graceful.watcher();
            let unread = match crate::fast::serve(&live, &mut io, info, &mut shutdown).await {
                crate::fast::Served::Closed => return,
                crate::fast::Served::Handover(unread) => unread,
            };
            drop(held);
            let io = IdleTimeout::new(Prefixed::new(unread, io), lim.idle_timeout);
            // Boxed, like every large future a connection may reach: an async fn's state is
            // as large as its largest await, and each idle connection would carry hyper's
            // connection inline (12 KB a connection before, measured by bench/decoy_memory.sh).
            Box::pin(http(&shield, live, io, info, graceful)).await
        }
        Some(acceptor) => {
            let io = IdleTimeout::new(Prefixed::new(prefix, stream), lim.idle_timeout);
            // The TLS session (rustls's state is kilobytes) lives on the heap, not in every
            // connection's future.
            let accepted = tokio::time::timeout(
                lim.header_timeout,
                Box::pin(async move { acceptor.accept(io).await.map(Box::new) }),
            )
            .await;
            match accepted {
                Ok(Ok(s)) => {
                    if tls::is_acme_tls_alpn(&s) {
                        return; // a TLS-ALPN-01 validation: the handshake was the answer
                    }
                    Box::pin(http(
                        &shield,
                        live,
                        s,
                        ConnInfo {
                            peer: real_peer,
                            tls: true,
                        },
                        graceful,
                    ))
                    .await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(
    shield: &Shield,
    live: Arc<LiveShield>,
    io: I,
    info: ConnInfo,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let lim = &shield.cfg.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lim.header_timeout)
        .max_buf_size(lim.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(lim.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(None);
    let svc = service_fn(move |req| {
        let s = live.current();
        async move { Ok::<_, std::convert::Infallible>(s.handle(req, info).await) }
    });
    let conn = b.serve_connection_with_upgrades(TokioIo::new(io), svc);
    let conn = graceful.watch(conn.into_owned());
    if let Err(e) = conn.await {
        tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
    }
}
